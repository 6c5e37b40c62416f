"""The zip source (`content.zip`): a prebuilt zip, uploaded byte for byte or repacked
(`normalize`) by the folder's rules, checked as strictly as a folder.

The checks (the rules are `archive`'s): member names read as unzip reads them, safe names, no
encryption, stored or deflate only, no special files, no member inside a symlink, every
symlink resolving inside the zip, at least one file, the declared sizes within Lambda's limit,
and every member's data inflating (bounded) to exactly its declared size and CRC. The data
check of a zip uploaded as it is runs once per SHA-256 (the stat cache remembers it). A zip
with `normalize` drops its members' order, times and permission bits, and the exclude
patterns apply to its members. Members in or named `.git` (common.is_git_name) refuse a zip
used as it is (the tool never changes its bytes) and are dropped from a zip to normalize,
whatever the patterns say.

Shell: it reads zips and never writes; it imports no other content kind.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reconciler import archive, errors, model, zipmembers
from reconciler.content import common, statcache

# A longer symlink text cannot be a real one (PATH_MAX); refuse rather than read a huge member.
MAX_LINK_TEXT_BYTES = 4096

def _checked_zip_path(content: model.ContentSpec, *, base_dir: Path, label: str) -> Path:
    """The absolute path of the content's zip file, which must exist, be a zip and lie inside
    the manifest's repository."""
    if content.zip is None:
        raise errors.ContentError(f"{label}: the content has no zip")
    zip_path = Path(os.path.abspath(base_dir / content.zip))
    if not zip_path.exists():
        raise errors.ContentError(f"{label}: the zip file {zip_path} does not exist")
    common.check_inside_repository(content.zip, base_dir=base_dir, label=label)
    if not zip_path.is_file():
        raise errors.ContentError(f"{label}: {zip_path} is not a file")
    zip_stat = os.stat(zip_path)
    if common.private_hard_link(zip_stat):
        raise errors.ContentError(
            f"{label}: " + common.private_hard_link_problem(
                str(zip_path), links=zip_stat.st_nlink),
            hint="copy the zip into the repository instead of linking it (cp, not ln)")
    if not zipfile.is_zipfile(zip_path):
        raise errors.ContentError(f"{label}: {zip_path} is not a zip file")
    return zip_path


@contextmanager
def _reading_zip(zip_path: Path, *, label: str) -> Iterator[zipfile.ZipFile]:
    """Open a zip, turning every way reading it can fail into a ContentError."""
    try:
        with zipfile.ZipFile(zip_path) as zip_file:
            yield zip_file
    except common.ZIP_READ_ERRORS as error:
        raise errors.ContentError(f"{label}: cannot read the zip {zip_path}: {error}") from error


@dataclass(frozen=True)
class ZipMember:
    """One member of a prebuilt zip, by the name unzip gives it (`relpath`: `/`-separated,
    without `.` or empty parts), with its kind and, for a symlink, its link text."""

    info: zipfile.ZipInfo
    relpath: str
    kind: str  # "file", "folder" or "link"
    link_text: str | None = None


class _RefusedZip(Exception):
    """The problems that make a zip unusable, one line each (turned into a ContentError or a
    manifest Problem by the caller, which knows how to name the layer)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _raise_refused(zip_path: Path | str, problems: list[str], *, label: str) -> None:
    if problems:
        raise errors.ContentError(
            f"{label}: the zip {zip_path} cannot be used as a layer:\n"
            + "\n".join(f"  {problem}" for problem in problems),
            hint="rebuild the zip with relative, unique UTF-8 paths, deflate or no compression, "
            "no encryption, and links to members inside it",
        )


def zip_members(zip_file: zipfile.ZipFile) -> list[ZipMember]:
    """The members of an open prebuilt zip, checked member by member (names readable and safe,
    no encryption, stored or deflate, no special file, readable link texts); raises
    _RefusedZip listing every problem. Reads the central directory and link members only."""
    members, problems = _scan_members(zip_file)
    if problems:
        raise _RefusedZip(problems)
    return members


def _scan_members(zip_file: zipfile.ZipFile) -> tuple[list[ZipMember], list[str]]:
    """The members whose names can be read, and the problems of all members."""
    problems: list[str] = []
    members: list[ZipMember] = []
    names: list[str] = []
    for info in zip_file.infolist():
        name = zipmembers.member_name(info)
        if name is None:
            problems.append(
                f"{zipmembers.raw_member_name(info)!r}: the name is not marked as UTF-8, has no "
                "Info-ZIP Unicode Path field and is not valid UTF-8, so its meaning is a guess"
            )
            continue
        names.append(name)
        header_problems = zipmembers.member_header_problems(info, name=name)
        problems += header_problems
        mode = info.external_attr >> 16
        relpath = "/".join(
            part for part in name.replace("\\", "/").split("/") if part not in ("", ".")
        )
        file_type = stat.S_IFMT(mode)
        if name.endswith(("/", "\\")) or file_type == stat.S_IFDIR:
            if relpath:
                members.append(ZipMember(info, relpath, "folder"))
            continue
        if not relpath:
            problems.append(f"{name!r} has an empty name")
        elif file_type == stat.S_IFLNK:
            link_text = None if header_problems else _read_link_text(zip_file, info, name=name,
                                                                     problems=problems)
            members.append(ZipMember(info, relpath, "link", link_text))
        elif file_type in (0, stat.S_IFREG):
            # Zips made on Windows carry no Unix mode (0): a plain, non-executable file.
            members.append(ZipMember(info, relpath, "file"))
        else:
            problems.append(
                f"{name!r} is a {common.file_kind(mode)}; a layer can hold only files, folders and "
                "symlinks"
            )
    problems += zipmembers.check_member_names(names)
    return members, problems


def _read_link_text(
    zip_file: zipfile.ZipFile, info: zipfile.ZipInfo, *, name: str, problems: list[str]
) -> str | None:
    """The link text of a symlink member, read with a bound; None (and a problem) if bad."""
    if info.file_size > MAX_LINK_TEXT_BYTES:
        problems.append(f"symlink {name!r} is too long to be a link")
        return None
    with zip_file.open(info) as member:
        data = member.read(MAX_LINK_TEXT_BYTES + 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(f"symlink {name!r} has a target that is not UTF-8")
        return None


def tree_problems(members: Sequence[ZipMember]) -> list[str]:
    """What is wrong with the tree the members extract to: a member inside a symlink member,
    a symlink that is absolute, leaves the tree or dangles, or no file at all."""
    links = {member.relpath: member.link_text or "" for member in members
             if member.kind == "link"}
    files = {member.relpath for member in members if member.kind == "file"}
    folders = {member.relpath for member in members if member.kind == "folder"}
    for member in members:
        parts = member.relpath.split("/")
        folders.update("/".join(parts[:depth]) for depth in range(1, len(parts)))
    problems: list[str] = []
    for member in members:
        parts = member.relpath.split("/")
        through = next((folder for folder in ("/".join(parts[:depth])
                                              for depth in range(1, len(parts)))
                        if folder in links), None)
        if through is not None:
            problems.append(f"{member.relpath!r} lies inside the symlink {through!r}, so "
                            "extracting it would write wherever that link points")
    tree = zipmembers.ZipTree(files=files, folders=folders, links=links)
    readable = {member.relpath for member in members
                if member.kind == "link" and member.link_text is not None}
    for relpath in sorted(readable):
        problem = zipmembers.link_problem(relpath, tree=tree)
        if problem is not None:
            problems.append(f"symlink {relpath!r} {problem}")
    if not files:
        problems.append("it holds no files")
    return problems


def _in_git(relpath: str) -> bool:
    return any(common.is_git_name(part) for part in relpath.split("/"))


def git_problems(members: Sequence[ZipMember]) -> list[str]:
    """One problem naming the members in or named `.git`, if any (for a zip used as it is)."""
    found = [member.relpath for member in members if _in_git(member.relpath)]
    if not found:
        return []
    return [f"{len(found)} member(s) lie in a .git folder or are named .git (such as "
            f"{found[0]!r}); a layer never holds git's files, which can hold credentials"]


def _declared_size_problem(members: Sequence[ZipMember]) -> str | None:
    unzipped_size = sum(member.info.file_size for member in members)
    if unzipped_size <= model.MAX_UNZIPPED_BYTES:
        return None
    return (f"its members declare {unzipped_size} bytes unzipped, over Lambda's limit of "
            f"{model.MAX_UNZIPPED_BYTES} bytes")


def zip_problems(zip_path: Path, *, check_size: bool = True,
                 refuse_git: bool = True) -> list[str]:
    """Every problem of a prebuilt zip that its central directory and link members show (no
    member data is verified: see `verify_zip_data`); empty when it is usable. `check_size`
    False skips the unzipped-size limit (a zip to normalize may exclude enough), `refuse_git`
    False the `.git` members (a zip to normalize drops them)."""
    try:
        with zipfile.ZipFile(zip_path) as zip_file:
            members, problems = _scan_members(zip_file)
    except common.ZIP_READ_ERRORS as error:
        return [f"it cannot be read: {error}"]
    problems += tree_problems(members)
    if refuse_git:
        problems += git_problems(members)
    size_problem = _declared_size_problem(members) if check_size else None
    return [*problems, *([size_problem] if size_problem else [])]


def _checked_members(zip_file: zipfile.ZipFile, zip_path: Path, *, label: str) -> list[ZipMember]:
    try:
        return zip_members(zip_file)
    except _RefusedZip as refused:
        _raise_refused(zip_path, refused.problems, label=label)
        raise  # unreachable: _raise_refused raises for any problem


def _member_data(
    zip_file: zipfile.ZipFile, member: ZipMember, *, sink: Callable[[bytes], None] | None = None
) -> None:
    """Verify one member's data against its declared sizes and CRC, reading it raw from its
    local header on (zipfile's own reader trusts the declared size, so a member that inflates
    to more would go unseen)."""
    info = member.info
    name = member.relpath
    file = zip_file.fp
    if file is None:
        raise errors.ContentError(f"{name!r}: the zip is closed")
    file.seek(info.header_offset)
    header = file.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
        raise errors.ContentError(f"{name!r}: its local header is missing")
    fields = _LOCAL_HEADER.unpack(header)
    flag_bits, name_length, extra_length = fields[2], fields[9], fields[10]
    if flag_bits & zipmembers.FLAG_ENCRYPTED:
        raise errors.ContentError(f"{name!r} is encrypted")
    if file.read(name_length) != zipmembers.raw_member_name(info):
        raise errors.ContentError(
            f"{name!r}: its local header names another file than the zip's directory")
    file.seek(extra_length, os.SEEK_CUR)
    zipmembers.check_member_data(file, name=name, info=info, sink=sink)


# The fixed part of a zip local file header (APPNOTE 4.3.7).
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")


def verify_zip_data(zip_path: Path, *, label: str) -> None:
    """Check every member of a prebuilt zip: its data inflates, within a bound, to exactly its
    declared size and CRC-32. Raises ContentError naming the layer and the member."""
    with _reading_zip(zip_path, label=label) as zip_file:
        members = _checked_members(zip_file, zip_path, label=label)
        for member in members:
            if member.kind != "folder" or member.info.file_size or member.info.compress_size:
                _verify_one(zip_file, member, zip_path=zip_path, label=label)


def _verify_one(
    zip_file: zipfile.ZipFile,
    member: ZipMember,
    *,
    zip_path: Path,
    label: str,
    sink: Callable[[bytes], None] | None = None,
) -> None:
    try:
        _member_data(zip_file, member, sink=sink)
    except errors.ContentError as error:
        raise errors.ContentError(
            f"{label}: the zip {zip_path} cannot be used as a layer: {error.message}",
            hint="rebuild the zip; its data does not match what its directory declares",
        ) from None


def _member_excluded(rules: archive.ExcludeRules, relpath: str) -> bool:
    """A member is excluded when it or any of its folders is (a zip has no walk to prune)."""
    parts = relpath.split("/")
    folders = ("/".join(parts[:depth]) for depth in range(1, len(parts)))
    return any(rules.excluded(folder, is_dir=True) for folder in folders) or rules.excluded(
        relpath, is_dir=False
    )


def _zip_members(
    content: model.ContentSpec, zip_file: zipfile.ZipFile, *, label: str
) -> tuple[list[model.Entry], dict[str, ZipMember]]:
    """The entries of a zip to normalize: its files and symlinks, by the folder's rules, and
    the member each entry's source names."""
    zip_path = Path(str(zip_file.filename))
    members = _checked_members(zip_file, zip_path, label=label)
    prefix = common.arcname_prefix(content.prefix, label=label)
    rules = archive.ExcludeRules.compile(content.exclude)
    entries: list[model.Entry] = []
    included: list[ZipMember] = []
    by_source: dict[str, ZipMember] = {}
    for member in members:
        if (member.kind == "folder" or _in_git(member.relpath)
                or _member_excluded(rules, member.relpath)):
            continue
        included.append(member)
        source = f"{zip_path}\0{member.info.filename}"
        by_source[source] = member
        if member.kind == "link":
            entries.append(common.link_entry(prefix + member.relpath, source=source,
                                       link_text=member.link_text or ""))
        else:
            mode = member.info.external_attr >> 16
            entries.append(
                model.Entry(
                    arcname=prefix + member.relpath,
                    source=source,
                    size=member.info.file_size,
                    executable=bool(mode & 0o111),
                )
            )
    # Judged on what is packaged: a link to an excluded member would dangle in the layer.
    problems = tree_problems(included)
    if problems == ["it holds no files"]:
        raise errors.ContentError(f"{label}: the zip {zip_path} has no files to package"
                                  + (" once exclude patterns are applied"
                                     if content.exclude else ""))
    _raise_refused(zip_path, problems, label=label)
    return entries, by_source


def _verified_member_digests(
    entries: Sequence[model.Entry], members: dict[str, ZipMember], *, zip_path: Path, label: str
) -> list[tuple[model.Entry, str]]:
    """Each entry of a zip to normalize with the SHA-256 of its data, which is verified
    against its declared size and CRC in the same single, bounded read."""
    file_digests: list[tuple[model.Entry, str]] = []
    with _reading_zip(zip_path, label=label) as zip_file:
        for entry in entries:
            digest = hashlib.sha256()
            _verify_one(zip_file, members[entry.source], zip_path=zip_path,
                        label=label, sink=digest.update)
            file_digests.append((entry, "" if entry.link_target is not None
                                 else digest.hexdigest()))
    return file_digests


def _prebuilt_artifact(
    content: model.ContentSpec, *, base_dir: Path, label: str, cache: statcache.StatCache
) -> model.Artifact:
    """A zip used as it is: checked as strictly as a folder (names, links, methods, sizes),
    its data verified once per SHA-256 (remembered in `cache`), then hashed byte for byte."""
    if content.exclude or content.prefix:
        raise errors.ContentError(
            f"{label}: exclude and prefix apply only to a folder or a zip to normalize",
            hint="set normalize: true to repack the zip by the tool's rules",
        )
    zip_path = _checked_zip_path(content, base_dir=base_dir, label=label)
    with _reading_zip(zip_path, label=label) as zip_file:
        members = _checked_members(zip_file, zip_path, label=label)
    size_problem = _declared_size_problem(members)
    _raise_refused(zip_path, [*tree_problems(members), *git_problems(members),
                              *([size_problem] if size_problem else [])], label=label)
    zip_stat = os.stat(zip_path)
    content_sha256 = cache.file_sha256(zip_path, zip_stat)
    if not cache.zip_verified(content_sha256):
        verify_zip_data(zip_path, label=label)
        # Remembered only if the file did not change while it was verified.
        if common.same_file_state(os.stat(zip_path), zip_stat):
            cache.remember_verified_zip(content_sha256)
    return model.Artifact(
        fingerprint=content_sha256,
        code_sha256=archive.code_sha256(bytes.fromhex(content_sha256)),
        content_sha256=content_sha256,
        code_size=zip_stat.st_size,
        zip_path=str(zip_path),
        unzipped_size=sum(member.info.file_size for member in members),
    )


def collect(content: model.ContentSpec, *, base_dir: Path, label: str) -> common.Collected:
    """The entries of a zip to normalize (its files and symlinks, by the folder's rules)."""
    zip_path, entries, _members = _normalized(content, base_dir=base_dir, label=label)
    return common.Collected(entries, stats={}, zip_path=zip_path)


def _normalized(
    content: model.ContentSpec, *, base_dir: Path, label: str
) -> tuple[Path, list[model.Entry], dict[str, ZipMember]]:
    if not content.normalize:
        raise errors.ContentError(
            f"{label}: a zip without normalize is uploaded as it is and has no entries"
        )
    zip_path = _checked_zip_path(content, base_dir=base_dir, label=label)
    with _reading_zip(zip_path, label=label) as zip_file:
        entries, members = _zip_members(content, zip_file, label=label)
    common.check_total_size(entries, label=label)
    return zip_path, entries, members


def identify(
    content: model.ContentSpec, *, base_dir: Path, label: str, cache: statcache.StatCache
) -> model.Artifact:
    """A zip used as it is is the artifact itself (every digest known at once); a zip to
    normalize has only its fingerprint, from its members' verified data."""
    if not content.normalize:
        return _prebuilt_artifact(content, base_dir=base_dir, label=label, cache=cache)
    zip_path, entries, members = _normalized(content, base_dir=base_dir, label=label)
    return model.Artifact(
        fingerprint=archive.fingerprint(_verified_member_digests(
            entries, members, zip_path=zip_path, label=label)),
        unzipped_size=sum(entry.size for entry in entries))
