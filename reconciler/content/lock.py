"""The built layer (`content.lock`): a Python layer the tool builds itself from a pinned and
hashed `requirements.txt`, a PEP 751 `pylock.toml` or a `uv.lock`, for the target the layer
declares (builds.target), from wheels only.

identify() reads the lock and nothing else (no index, no download, no wheel): its fingerprint
is the digest of the build's inputs (BUILDER_VERSION, the targets, the prefix, the sorted
exclude_packages, and each needed package's name, version and hashes: the SHA-256 of the
wheel selected from the lock's own list for a pylock.toml or uv.lock, which is pure, or the
lock's listed hashes for a requirements.txt), never the index URL or the find_links folders.
The zip is a pure function of the selected wheels, the target, the prefix and
exclude_packages, so equal inputs give equal zips: the planner's "fingerprint equals the
recorded one" then stands for "the zip is the recorded one" as for every kind. collect()
selects, obtains (builds.fetch) and unpacks (builds.wheels) the wheels: the build.

Shell: it reads the lock, and in collect() wheel files, the wheel cache and the index. It
uses content.common and the builds package, never another content kind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from reconciler import builds, errors, model, ports
from reconciler.builds import fetch, pylock, requirements, selection, target, tomlfile, uvlock
from reconciler.builds import wheels as wheel_files
from reconciler.content import common

# What a built layer's bytes depend on besides its wheels, target, prefix and
# exclude_packages: how wheels are unpacked (builds.wheels), which wheel is selected
# (builds.selection, builds.target), and how members are encoded (archive's headers; a
# deflated wheel member's compressed bytes copied as the wheel holds them, a stored one
# deflated at level 6: zipbuild's raw_source). Raise it when any changes, so that every built
# layer's inputs digest changes and the layer is built again.
BUILDER_VERSION = 1
_PYLOCK_NAME = re.compile(r"^pylock\.([^.]+\.)?toml$")
_MAX_LOCK_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class _Read:
    """A lock read for the layer's targets: the packages each target needs (those in
    exclude_packages removed), what the layer leaves out and why, and the selection from the
    lock's own wheel lists (None for a requirements.txt, whose wheels are found at build)."""

    lock_path: Path
    targets: tuple[target.Target, ...]
    needed: dict[target.Target, list[builds.LockedPackage]]
    left_out: tuple[tuple[str, str], ...]
    selected: list[selection.Selected] | None


def lock_format(path: Path) -> str:
    """`uv.lock`, `pylock` (pylock.toml, pylock.NAME.toml) or `requirements` (any other)."""
    if path.name == "uv.lock":
        return "uv.lock"
    if _PYLOCK_NAME.match(path.name):
        return "pylock"
    return "requirements"


def _shown(path: Path) -> str:
    """The lock's path as messages name it: relative to the working directory when below
    it (as the manifest's own path is given), else absolute."""
    relative = os.path.relpath(path)
    return path.as_posix() if relative.startswith("..") else Path(relative).as_posix()


def _lock_path(content: model.ContentSpec, *, base_dir: Path, label: str) -> Path:
    if content.lock is None:
        raise errors.ContentError(f"{label}: the content has no lock")
    path = Path(os.path.abspath(base_dir / content.lock))
    if not path.exists():
        raise errors.ContentError(f"{label}: the lock file {content.lock} does not exist "
                                  f"(relative to {base_dir})")
    common.check_inside_repository(content.lock, base_dir=base_dir, label=label)
    if not path.is_file():
        raise errors.ContentError(f"{label}: the lock {content.lock} is not a file")
    return path


def _targets(content: model.ContentSpec, *, label: str) -> tuple[target.Target, ...]:
    try:
        return tuple(target.targets_for(content.build_runtimes, content.build_architectures))
    except target.TargetError as error:
        raise errors.ContentError(f"{label}: {error}") from None


def _listed_names(text: str, *, kind: str, file: str) -> list[str]:
    """Every package the lock lists (its root project aside), whatever its markers say."""
    if kind == "requirements":
        return [pin.name for pin in requirements.parse(text, file=file).pins]
    document = tomlfile.load(text, file=file)
    tables = document.get("packages" if kind == "pylock" else "package", [])
    names: list[str] = []
    for table in tables if isinstance(tables, list) else []:
        if not isinstance(table, dict) or not isinstance(table.get("name"), str):
            continue
        source = table.get("source")
        if kind == "uv.lock" and isinstance(source, dict) and "." in (
                source.get("editable"), source.get("virtual")):
            continue
        names.append(canonicalize_name(table["name"]))
    return names


def _read(content: model.ContentSpec, *, base_dir: Path, label: str) -> _Read:
    """The lock read for every target of the layer. Raises LockError (located in the lock)
    or ContentError (the lock cannot be had, the targets, a package without a wheel)."""
    path = _lock_path(content, base_dir=base_dir, label=label)
    targets = _targets(content, label=label)
    with path.open("rb") as file:
        data = file.read(_MAX_LOCK_BYTES + 1)
    if len(data) > _MAX_LOCK_BYTES:
        raise errors.ContentError(f"{label}: the lock {content.lock} is over "
                                  f"{_MAX_LOCK_BYTES:,} bytes: not a lock")
    shown = _shown(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise builds.LockError([errors.Problem(shown, 1, 1, "lock", f"not UTF-8 text: "
                                                                    f"{error.reason}")]) from None
    kind = lock_format(path)
    excluded = {canonicalize_name(name) for name in content.exclude_packages}
    needed: dict[target.Target, list[builds.LockedPackage]] = {}
    parsed = requirements.parse(text, file=shown) if kind == "requirements" else None
    left_out: dict[str, str] = {}
    for each in targets:
        if parsed is not None:
            found = parsed.packages_for(each)
        elif kind == "pylock":
            found = pylock.read(text, file=shown, target=each)
        else:
            found = uvlock.read(text, file=shown, target=each)
        needed[each] = [package for package in found if package.name not in excluded]
        left_out.update({package.name: "exclude_packages"
                         for package in found if package.name in excluded})
    in_layer = {package.name for packages in needed.values() for package in packages}
    where = ", ".join(f"{each.runtime} {each.architecture}" for each in targets)
    for name in _listed_names(text, kind=kind, file=shown):
        if name not in in_layer and name not in left_out:
            left_out[name] = f"not needed on {where} (markers)"
    chosen = (None if kind == "requirements"
              else _select(needed, label=label))
    return _Read(lock_path=path, targets=targets, needed=needed,
                 left_out=tuple(sorted(left_out.items())), selected=chosen)


def _select(needed: dict[target.Target, list[builds.LockedPackage]], *, label: str,
            found: dict[str, list[builds.Wheel]] | None = None) -> list[selection.Selected]:
    try:
        return selection.select_for_targets(needed, found=found)
    except selection.SelectionError as error:
        raise errors.ContentError(f"{label}: " + "\n  ".join(error.problems),
                                  hint=error.hint) from None


def _packages(read: _Read) -> list[tuple[str, str, list[str]]]:
    """(name, version, sorted hashes) of every package the layer holds, for the digest."""
    if read.selected is not None:
        return sorted((item.package.name, item.package.version, [item.wheel.sha256])
                      for item in read.selected)
    unique = {(package.name, package.version, tuple(sorted(package.hashes)))
              for packages in read.needed.values() for package in packages}
    return [(name, version, list(hashes)) for name, version, hashes in sorted(unique)]


def _build_info(content: model.ContentSpec, read: _Read) -> model.BuildInfo:
    packages = _packages(read)
    document = {
        "builder": BUILDER_VERSION,
        "targets": [[list(each.python), each.machine, list(each.glibc)]
                    for each in read.targets],
        "prefix": content.prefix,
        "exclude_packages": sorted({canonicalize_name(name)
                                    for name in content.exclude_packages}),
        "packages": [list(package) for package in packages],
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return model.BuildInfo(
        target="; ".join(each.describe() for each in read.targets),
        inputs_sha256=hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        packages=tuple(sorted({(name, version) for name, version, _ in packages})),
        left_out=read.left_out)


def identify(content: model.ContentSpec, *, base_dir: Path, label: str) -> model.Artifact:
    """The layer's identity from its lock alone: the inputs digest as its fingerprint, and
    what the build will hold (no zip, no wheel, no request to any index)."""
    common.arcname_prefix(content.prefix, label=label)
    read = _read(content, base_dir=base_dir, label=label)
    info = _build_info(content, read)
    return model.Artifact(fingerprint=info.inputs_sha256, build=info)


def collect(content: model.ContentSpec, *, base_dir: Path, label: str,
            sources: fetch.Sources | None) -> common.Collected:
    """The build: the lock read again, a wheel selected per package (for a requirements.txt
    from the find_links folders, then the index), each wheel obtained and verified, and the
    layer's entries (pointing into the wheels), with the build's summary and each package's
    size unzipped. Raises ContentError for a package without a fitting wheel, a wheel that is
    not the locked one, and two wheels shipping one path."""
    read = _read(content, base_dir=base_dir, label=label)
    info = _build_info(content, read)
    if sources is None:
        raise errors.ContentError(f"{label}: this run cannot build a layer from a lock")
    index: Callable[[], ports.PackageIndex] = lambda: sources.index(  # noqa: E731
        content.index_url, label=label)
    chosen = read.selected
    if chosen is None:
        folders = [Path(os.path.abspath(base_dir / folder)) for folder in content.find_links]
        for folder, relpath in zip(folders, content.find_links, strict=True):
            common.check_inside_repository(relpath, base_dir=base_dir, label=label)
            if not folder.is_dir():
                raise errors.ContentError(f"{label}: find_links folder {relpath} does not "
                                          "exist")
        every = [package for packages in read.needed.values() for package in packages]
        found = fetch.candidates(every, find_links=folders, index=index)
        chosen = _select(read.needed, label=label, found=found)
    obtained = [(item, fetch.obtain(item, lock_dir=read.lock_path.parent, sources=sources,
                                    index=index, label=label)) for item in chosen]
    entries = wheel_files.layer_entries(
        [(item.wheel.filename, path) for item, path in obtained], prefix=content.prefix,
        label=label)
    by_wheel = {str(path): item.package.name for item, path in obtained}
    sizes: dict[str, int] = {}
    for entry in entries:
        owner = by_wheel[entry.source.partition("\0")[0]]
        sizes[owner] = sizes.get(owner, 0) + entry.size
    built = model.BuildInfo(target=info.target, inputs_sha256=info.inputs_sha256,
                            packages=info.packages, left_out=info.left_out,
                            sizes=tuple(sorted(sizes.items())))
    return common.Collected(entries, stats={}, build=built, wheel_sha256={
        str(path): item.wheel.sha256 for item, path in obtained})
