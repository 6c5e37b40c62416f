"""Selected wheels -> the entries of a built layer, deterministically: each wheel's files under
`prefix` (`.data/purelib` and `.data/platlib` merged into it; scripts, headers and data
dropped), its `.dist-info` as shipped less INSTALLER, REQUESTED and direct_url.json, no
bytecode. Every member passes the checks a prebuilt zip's do; a path two wheels ship is an
error naming both; a wheel whose SHA-256 is not the lock's is refused naming both digests.

Shell: it reads wheel files (central directories, and whole files to hash them) and writes
nothing. The entries point into the wheels (`<wheel path>\\0<member>`, as
content.common.EntryReader opens them); what is written to the zip is decided elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_wheel_filename,
)

from reconciler import errors, model, zipmembers
from reconciler.builds import Wheel
from reconciler.content import common

# Files an installer writes about the install, not the wheel's (PEP 376, PEP 610): they would
# make the layer depend on how it was built.
INSTALLER_FILES = frozenset({"INSTALLER", "REQUESTED", "direct_url.json"})
_KEPT_DATA = frozenset({"purelib", "platlib"})
_BYTECODE = (".pyc", ".pyo")


def verify_sha256(path: Path, *, expected: str, label: str) -> None:
    """Refuse the wheel at `path` unless its SHA-256 is `expected` (lowercase hex)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(common.CHUNK_BYTES):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise errors.ContentError(
            f"{label}: {path.name} has SHA-256 {digest.hexdigest()}, but the lock says "
            f"{expected}", hint="the wheel is not the one that was locked: lock it again, or "
                                "remove the wrong file from find_links or the cache")


def find_links_wheels(folders: Sequence[Path],
                      wanted: Mapping[str, str]) -> dict[str, list[Wheel]]:
    """The wheels in `folders` (not recursive) of the packages `wanted` (canonical name ->
    version), hashed: only files whose name and version match are read. Unreadable names
    are skipped (they may be anything a folder holds)."""
    found: dict[str, list[Wheel]] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.whl")):
            try:
                name, version, _, _ = parse_wheel_filename(path.name)
            except InvalidWheelFilename:
                continue
            name = canonicalize_name(name)
            if (name not in wanted or canonicalize_version(str(version))
                    != canonicalize_version(wanted[name])):
                continue
            digest = hashlib.sha256()
            with path.open("rb") as file:
                while chunk := file.read(common.CHUNK_BYTES):
                    digest.update(chunk)
            found.setdefault(name, []).append(Wheel(filename=path.name,
                                                    sha256=digest.hexdigest(),
                                                    path=str(path),
                                                    size=path.stat().st_size))
    return found


def layer_entries(wheels: Sequence[tuple[str, Path]], *, prefix: str,
                  label: str) -> list[model.Entry]:
    """The entries of a layer made of `wheels` ((wheel file name, path to it)), sorted by
    arcname. Raises ContentError listing every unsafe member and every path shipped twice."""
    arc_prefix = common.arcname_prefix(prefix, label=label)
    owner: dict[str, str] = {}
    entries: list[model.Entry] = []
    problems: list[str] = []
    for filename, path in sorted(wheels):
        for entry in wheel_entries(path, filename=filename, arc_prefix=arc_prefix, label=label):
            shipped_by = owner.get(entry.arcname)
            if shipped_by is not None:
                problems.append(f"{entry.arcname} is shipped twice by {filename}"
                                if shipped_by == filename else
                                f"{entry.arcname} is shipped by both {shipped_by} and "
                                f"{filename}")
                continue
            owner[entry.arcname] = filename
            entries.append(entry)
    if problems:
        raise errors.ContentError(
            f"{label}: the wheels cannot be merged into one layer:\n"
            + "\n".join(f"  {problem}" for problem in problems),
            hint="two packages install the same file: exclude one of them "
                 "(exclude_packages) or lock versions that do not collide")
    common.check_total_size(entries, label=label)
    return sorted(entries, key=lambda entry: entry.arcname)


_CENTRAL_DIRECTORIES: dict[tuple[str, int, int, int], list[zipfile.ZipInfo]] = {}


def central_directory(path: Path | str) -> list[zipfile.ZipInfo]:
    """The members of the zip at `path` as its central directory lists them, read once per
    version of the file in a process: a build reads a wheel's for its entries, then for the
    members' offsets (~8 ms a large wheel each time). Raises what zipfile raises."""
    with open(path, "rb") as file:
        found = os.fstat(file.fileno())
        key = (os.path.abspath(path), found.st_ino, found.st_size, found.st_mtime_ns)
        known = _CENTRAL_DIRECTORIES.get(key)
        if known is None:
            with zipfile.ZipFile(file) as archive_file:
                known = archive_file.infolist()
            if len(_CENTRAL_DIRECTORIES) >= 64:
                _CENTRAL_DIRECTORIES.clear()
            _CENTRAL_DIRECTORIES[key] = known
    return known


def wheel_entries(path: Path, *, filename: str, arc_prefix: str,
                  label: str) -> list[model.Entry]:
    """The entries one wheel contributes, in member order. Raises ContentError listing every
    problem of the wheel (unreadable, unsafe names, links, special files, no .dist-info)."""
    try:
        infos = central_directory(path)
    except common.ZIP_READ_ERRORS as error:
        raise errors.ContentError(f"{label}: the wheel {filename} cannot be read: "
                                  f"{error}") from error
    problems: list[str] = []
    named: list[tuple[zipfile.ZipInfo, str]] = []
    for info in infos:
        name = zipmembers.member_name(info)
        if name is None:
            problems.append(f"{zipmembers.raw_member_name(info)!r}: the name is not UTF-8")
            continue
        problems += zipmembers.member_header_problems(info, name=name)
        named.append((info, name))
    problems += zipmembers.check_member_names([name for _, name in named])
    dist_info = _dist_info_folder(filename, [name for _, name in named])
    if dist_info is None:
        problems.append("it has no .dist-info folder named after the wheel")
    if problems:
        _refuse(filename, problems, label=label)
    assert dist_info is not None
    data_folder = dist_info.removesuffix(".dist-info") + ".data"
    entries: list[model.Entry] = []
    for info, name in named:
        relpath = _installed_path(name, dist_info=dist_info, data_folder=data_folder)
        if relpath is None:
            continue
        common.check_name(relpath, path=f"{filename}:{name}", label=label)
        mode = info.external_attr >> 16
        file_type = stat.S_IFMT(mode)
        if file_type not in (0, stat.S_IFREG):
            kind = "symlink" if file_type == stat.S_IFLNK else common.file_kind(mode)
            problems.append(f"{name!r} is a {kind}; a wheel installs regular files only")
            continue
        entries.append(model.Entry(arcname=arc_prefix + relpath,
                                   source=f"{path}\0{info.filename}", size=info.file_size,
                                   executable=bool(mode & 0o111)))
    if problems:
        _refuse(filename, problems, label=label)
    return entries


def _refuse(filename: str, problems: list[str], *, label: str) -> None:
    raise errors.ContentError(
        f"{label}: the wheel {filename} cannot be installed into a layer:\n"
        + "\n".join(f"  {problem}" for problem in problems),
        hint="the wheel is malformed or unsafe; lock another version")


def _dist_info_folder(filename: str, names: Sequence[str]) -> str | None:
    """The wheel's `{name}-{version}.dist-info` folder: the one top-level .dist-info whose
    name matches the file name's distribution (compared case- and separator-insensitively)."""
    distribution = filename.split("-", 1)[0].lower().replace(".", "_")
    folders = {name.split("/", 1)[0] for name in names if "/" in name}
    matching = sorted(folder for folder in folders if folder.endswith(".dist-info")
                      and folder.split("-", 1)[0].lower().replace(".", "_").replace("-", "_")
                      == distribution.replace("-", "_"))
    return matching[0] if len(matching) == 1 else None


def _installed_path(name: str, *, dist_info: str, data_folder: str) -> str | None:
    """Where member `name` goes below the prefix, or None when the layer leaves it out."""
    if name.endswith("/"):
        return None
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or parts[-1].endswith(_BYTECODE):
        return None
    if parts[0] == data_folder:
        # Scripts would carry the building interpreter's shebang, headers and data go
        # outside site-packages: a layer holds only what lands on sys.path.
        if len(parts) < 3 or parts[1] not in _KEPT_DATA:
            return None
        parts = parts[2:]
    elif parts[0] == dist_info and len(parts) == 2 and parts[1] in INSTALLER_FILES:
        return None
    return "/".join(parts)
