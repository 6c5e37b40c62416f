"""Turns a layer's content source (a folder or a zip file) into entries, digests and a zip on
disk: the folder walk with exclude pruning, the symlink and file-type safety rules, the stat
cache and atomic writes. The determinism rules themselves belong to `archive`; this module only
feeds it bytes, and it never prints, prompts or talks to AWS.

Symlinks: a link whose target stays inside the content folder is kept as a link (Lambda
extracts it as one under /opt). A link with an absolute target (it would dangle in /opt), one
that leads outside the folder (it could leak files such as ~/.aws/credentials), one that is
broken or one that points at an excluded path is an error; links to folders are not followed.
A zip with `normalize` is repacked by the same rules as a folder: its members' order, times and
permission bits are dropped, and the exclude patterns apply to them.

Containment: a content folder or zip must resolve (symlinks resolved) inside the repository
that holds the manifest (`repository_root`), so that no `../..`, absolute path or symlinked
folder can publish files from elsewhere on the machine.

Prebuilt zips, byte for byte or to normalize, are checked as strictly as folders (the rules
are `archive`'s): member names read as unzip reads them, safe names, no encryption, stored or
deflate only, no special files, no member inside a symlink, every symlink resolving inside the
zip, at least one file, the declared sizes within Lambda's limit, and every member's data
inflating (bounded) to exactly its declared size and CRC. The data check of a zip uploaded as
it is runs once per SHA-256 (the stat cache remembers it).

The tool's own files are never packaged: the `skip` paths and, beside each, the hidden files
named `.<its name>.*` (its temp and lock files). Build temp files left by a killed build are
removed by the next build into the same folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import stat
import struct
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from reconciler import archive, errors, model, zipbuild

CHUNK_BYTES = archive.CHUNK_BYTES
CACHE_FORMAT = 1
# The version of the checks a prebuilt zip's data passed; a zip verified by other checks than
# these is verified again.
ZIP_CHECKS_VERSION = 1
# A file modified within this window of the moment its stat was recorded may have changed
# again within the same timestamp tick; such entries are re-hashed (git's "racy git" rule).
RACY_WINDOW_NS = 2_000_000_000
# A longer symlink text cannot be a real one (PATH_MAX); refuse rather than read a huge member.
MAX_LINK_TEXT_BYTES = 4096

# Build temp files: `.<fingerprint[:16]>.<pid>.<random>.zip.tmp`. One not written to for this
# long is abandoned whoever wrote it (a live writer touches it with every chunk).
BUILD_TEMP_SUFFIX = ".zip.tmp"
STALE_BUILD_TEMP_SECONDS = 300

_ZIP_READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error)


@dataclass(frozen=True, slots=True)
class _CachedDigest:
    """A file's digest and the stat it was computed under."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    mode: int
    hashed_ns: int
    sha256: str

    def matches(self, st: os.stat_result) -> bool:
        return (self.size, self.mtime_ns, self.ctime_ns, self.inode, self.mode) == (
            st.st_size,
            st.st_mtime_ns,
            st.st_ctime_ns,
            st.st_ino,
            st.st_mode,
        )

    def as_json(self) -> list[int | str]:
        return [
            self.size,
            self.mtime_ns,
            self.ctime_ns,
            self.inode,
            self.mode,
            self.hashed_ns,
            self.sha256,
        ]

    @classmethod
    def from_json(cls, value: object) -> _CachedDigest | None:
        if not isinstance(value, list) or len(value) != 7:
            return None
        *numbers, sha256 = value
        if not all(type(number) is int for number in numbers) or not isinstance(sha256, str):
            return None
        size, mtime_ns, ctime_ns, inode, mode, hashed_ns = numbers
        return cls(size, mtime_ns, ctime_ns, inode, mode, hashed_ns, sha256)


class StatCache:
    """File digests keyed by absolute path, reused while a file's stat is unchanged.

    A cached digest is trusted only when size, mtime, ctime, inode and mode all match and the
    file's mtime is more than RACY_WINDOW_NS older than both the previous cache write and the
    moment the digest was taken: a file written in the same timestamp tick as it was hashed
    could change again without its stat changing. Changing content while restoring the mtime
    is still noticed through ctime, which no user call can set. `hits` and `misses` count
    lookups served from the cache and files read.

    It also remembers the SHA-256 of each prebuilt zip whose data passed verification (under
    ZIP_CHECKS_VERSION), so that an unchanged zip is inflated once, not on every plan; one is
    forgotten with the last cached file that has its digest.
    """

    def __init__(
        self,
        path: Path,
        *,
        entries: Mapping[str, _CachedDigest],
        written_ns: int,
        verified_zips: frozenset[str] = frozenset(),
    ) -> None:
        self.path = path
        self._entries = dict(entries)
        self._written_ns = written_ns
        self._used: set[str] = set()
        self._verified_zips = set(verified_zips)
        self.hits = 0
        self.misses = 0

    @classmethod
    def load(cls, path: Path) -> StatCache:
        """The cache stored at `path`; a missing or unreadable file gives an empty cache."""
        empty = cls(path, entries={}, written_ns=0)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return empty
        if not isinstance(document, dict) or document.get("format") != CACHE_FORMAT:
            return empty
        written_ns = document.get("written_ns")
        raw_entries = document.get("entries")
        if type(written_ns) is not int or not isinstance(raw_entries, dict):
            return empty
        entries = {
            key: cached
            for key, value in raw_entries.items()
            if (cached := _CachedDigest.from_json(value)) is not None
        }
        verified = document.get("verified_zips")
        verified_zips = frozenset(
            sha256 for sha256 in (verified if isinstance(verified, list) else [])
            if isinstance(sha256, str)
        ) if document.get("zip_checks") == ZIP_CHECKS_VERSION else frozenset()
        return cls(path, entries=entries, written_ns=written_ns, verified_zips=verified_zips)

    def zip_verified(self, sha256: str) -> bool:
        """Whether the zip with this hex SHA-256 passed the data checks before."""
        return sha256 in self._verified_zips

    def remember_verified_zip(self, sha256: str) -> None:
        """Record that the zip with this hex SHA-256 passed the data checks."""
        self._verified_zips.add(sha256)

    def file_sha256(self, path: Path, st: os.stat_result) -> str:
        """Hex SHA-256 of the regular file at `path`, whose stat the caller took as `st`."""
        key = os.path.abspath(path)
        self._used.add(key)
        cached = self._entries.get(key)
        if cached is not None and cached.matches(st):
            trusted_before_ns = min(self._written_ns, cached.hashed_ns) - RACY_WINDOW_NS
            if st.st_mtime_ns < trusted_before_ns:
                self.hits += 1
                return cached.sha256
        self.misses += 1
        hashed_ns = time.time_ns()
        with _open_regular_file(path, expected=st) as file:
            sha256 = _sha256_of(file).hex()
            after = os.fstat(file.fileno())
        fresh = _CachedDigest(
            st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode, hashed_ns, sha256
        )
        # A file that changed while being read is hashed but not remembered.
        if fresh.matches(after):
            self._entries[key] = fresh
        else:
            self._entries.pop(key, None)
        return sha256

    def save(self) -> bool:
        """Write the cache atomically; False when it cannot be written (it is only a cache).

        Entries not used in this run are kept while their file exists, so that a run over
        some layers does not forget the others.
        """
        written_ns = time.time_ns()
        kept = {
            key: cached
            for key, cached in sorted(self._entries.items())
            if key in self._used or os.path.lexists(key)
        }
        digests = {cached.sha256 for cached in kept.values()}
        verified_zips = sorted(self._verified_zips & digests)
        document = {
            "format": CACHE_FORMAT,
            "written_ns": written_ns,
            "entries": {key: cached.as_json() for key, cached in kept.items()},
            "zip_checks": ZIP_CHECKS_VERSION,
            "verified_zips": verified_zips,
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(
                self.path, json.dumps(document, separators=(",", ":")).encode("utf-8")
            )
        except OSError:
            return False
        self._entries = kept
        self._written_ns = written_ns
        self._verified_zips = set(verified_zips)
        return True


def _same_file_state(first: os.stat_result, second: os.stat_result) -> bool:
    return (first.st_size, first.st_mtime_ns, first.st_ctime_ns, first.st_ino, first.st_mode) == (
        second.st_size, second.st_mtime_ns, second.st_ctime_ns, second.st_ino, second.st_mode)


def _write_atomically(path: Path, data: bytes) -> None:
    descriptor, temp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as temp_file:
            temp_file.write(data)
        os.replace(temp_name, path)
    except BaseException:
        _remove_quietly(temp_name)
        raise


def _remove_quietly(path: str | Path) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


@contextmanager
def _open_regular_file(path: Path | str, *, expected: os.stat_result) -> Iterator[BinaryIO]:
    """Open the file the walk saw at `path`, refusing anything that replaced it since.

    O_NONBLOCK keeps a FIFO swapped in after the walk from blocking the open; the inode check
    catches a file replaced by a symlink to somewhere else (such as a credentials file).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    descriptor = os.open(path, flags)
    with os.fdopen(descriptor, "rb") as file:
        opened = os.fstat(descriptor)
        # Windows' scandir leaves st_ino and st_dev at 0: nothing to compare with there.
        same_file = expected.st_ino == 0 or (opened.st_dev, opened.st_ino) == (
            expected.st_dev,
            expected.st_ino,
        )
        if not same_file or not stat.S_ISREG(opened.st_mode):
            raise errors.ContentError(
                f"{path} was replaced while it was being packaged",
                hint="run the command again once the files are stable",
            )
        yield file


def _sha256_of(file: archive.ByteReader) -> bytes:
    """The raw SHA-256 digest of everything `file` still has to give, read in chunks."""
    digest = hashlib.sha256()
    while chunk := file.read(CHUNK_BYTES):
        digest.update(chunk)
    return digest.digest()


@dataclass(frozen=True)
class _Collected:
    """A source's entries, with the stat the walk took of each file (keyed by source), or,
    for a zip to normalize, the zip and the member each entry's source names."""

    entries: list[model.Entry]
    stats: dict[str, os.stat_result]
    zip_path: Path | None = None
    zip_members: dict[str, ZipMember] = field(default_factory=dict)


def collect(
    content: model.ContentSpec, *, base_dir: Path, label: str, skip: frozenset[str] = frozenset()
) -> list[model.Entry]:
    """The entries of a folder (`path`) or of a zip to normalize, checked for safety and size.

    `base_dir` is the manifest's folder, which relative paths are read against (never the
    working directory); `label` names the layer in messages, such as "layers.shared-utils";
    `skip` holds real (symlink-free) paths never packaged (the tool's own cache folder and
    lockfile, which change on every run and would make a layer holding them never converge).
    """
    with _layer_errors(label):
        return _collect(content, base_dir=base_dir, label=label, skip=skip).entries


def _collect(
    content: model.ContentSpec, *, base_dir: Path, label: str, skip: frozenset[str]
) -> _Collected:
    if content.kind is model.SourceKind.PATH:
        collected = _walk_folder(content, base_dir=base_dir, label=label, skip=skip)
    elif content.kind is model.SourceKind.ZIP and content.normalize:
        zip_path = _checked_zip_path(content, base_dir=base_dir, label=label)
        with _reading_zip(zip_path, label=label) as zip_file:
            entries, members = _zip_members(content, zip_file, label=label)
        collected = _Collected(entries, stats={}, zip_path=zip_path, zip_members=members)
    elif content.kind is model.SourceKind.ZIP:
        raise errors.ContentError(
            f"{label}: a zip without normalize is uploaded as it is and has no entries"
        )
    else:
        raise _s3_unsupported(label)
    _check_total_size(collected.entries, label=label)
    return collected


def _s3_unsupported(label: str) -> errors.ContentError:
    return errors.ContentError(f"{label}: s3 content is not supported yet")


def _arcname_prefix(prefix: str, *, label: str) -> str:
    """The prefix as a zip folder ("" or "some/folder/"), refusing `.` and `..` parts."""
    parts = [part for part in prefix.replace("\\", "/").split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise errors.ContentError(f"{label}: prefix {prefix!r} may not contain '.' or '..'")
    return "".join(f"{part}/" for part in parts)


def _check_name(name: str, *, path: str, label: str) -> None:
    """Refuse file names that cannot be carried faithfully into a zip for Lambda."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise errors.ContentError(
            f"{label}: the name of {path!r} is not valid UTF-8", hint="rename the file"
        ) from None
    # Info-ZIP's unzip reads a backslash as a folder separator, so the file would move.
    if "\\" in name:
        raise errors.ContentError(
            f"{label}: the name of {path} contains a backslash", hint="rename the file"
        )


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    return "special file"


def _walk_folder(
    content: model.ContentSpec, *, base_dir: Path, label: str, skip: frozenset[str]
) -> _Collected:
    if content.path is None:
        raise errors.ContentError(f"{label}: the content has no path")
    root = os.path.abspath(base_dir / content.path)
    try:
        root_stat = os.stat(root)
    except FileNotFoundError:
        raise errors.ContentError(f"{label}: the content folder {root} does not exist") from None
    except OSError as error:
        raise errors.ContentError(f"{label}: cannot read {root}: {error.strerror}") from error
    if not stat.S_ISDIR(root_stat.st_mode):
        raise errors.ContentError(f"{label}: the content path {root} is not a folder")
    _check_inside_repository(content.path, base_dir=base_dir, label=label)

    prefix = _arcname_prefix(content.prefix, label=label)
    rules = archive.ExcludeRules.compile(content.exclude)
    skipped = _skipped_relpaths(skip, real_root=os.path.realpath(root))
    entries: list[model.Entry] = []
    stats: dict[str, os.stat_result] = {}
    included: set[str] = set()
    links: list[tuple[str, str]] = []
    pending_dirs = [""]
    try:
        while pending_dirs:
            rel_dir = pending_dirs.pop()
            with os.scandir(os.path.join(root, rel_dir)) as scan:
                dirents = sorted(scan, key=lambda dirent: dirent.name)
            for dirent in dirents:
                relpath = f"{rel_dir}/{dirent.name}" if rel_dir else dirent.name
                if skipped.covers(relpath):
                    continue  # the tool's own files (.reconcile/, the lockfile) beside the manifest
                _check_name(dirent.name, path=dirent.path, label=label)
                # Like git, a symlink is never a folder, even one that points at a folder.
                is_dir = dirent.is_dir(follow_symlinks=False)
                if rules.excluded(relpath, is_dir=is_dir):
                    continue
                included.add(relpath)
                if dirent.is_symlink():
                    links.append((relpath, dirent.path))
                elif is_dir:
                    pending_dirs.append(relpath)
                else:
                    file_stat = dirent.stat(follow_symlinks=False)
                    if not stat.S_ISREG(file_stat.st_mode):
                        raise errors.ContentError(
                            f"{label}: {dirent.path} is a {_file_kind(file_stat.st_mode)}; "
                            "a layer can hold only files, folders and symlinks",
                            hint="remove it or add it to the layer's exclude patterns",
                        )
                    entries.append(
                        model.Entry(
                            arcname=prefix + relpath,
                            source=dirent.path,
                            size=file_stat.st_size,
                            executable=bool(file_stat.st_mode & 0o111),
                        )
                    )
                    stats[dirent.path] = file_stat
        if not entries:
            raise errors.ContentError(
                f"{label}: the content folder {root} has no files to package"
                + (" once exclude patterns are applied" if content.exclude else "")
            )
        for relpath, link_path in links:
            link_text = _checked_link_text(
                relpath, link_path, root=root, included=included, label=label
            )
            entries.append(_link_entry(prefix + relpath, source=link_path, link_text=link_text))
    except OSError as error:
        raise errors.ContentError(
            f"{label}: cannot read {error.filename or root}: {error.strerror}"
        ) from error
    return _Collected(entries, stats)


@dataclass(frozen=True)
class _Skipped:
    """The tool's own paths inside one content folder, relative to its real root: each
    skipped path itself, and the hidden siblings named `.<its name>.` and more (the temp and
    lock files written beside it, such as `.layers.lock.json.lock`)."""

    paths: frozenset[str]
    sibling_prefixes: frozenset[tuple[str, str]]  # (folder relpath or "", name prefix)

    def covers(self, relpath: str) -> bool:
        if relpath in self.paths:
            return True
        folder, _, name = relpath.rpartition("/")
        return any(folder == skipped_folder and name.startswith(prefix)
                   for skipped_folder, prefix in self.sibling_prefixes)


def _skipped_relpaths(skip: frozenset[str], *, real_root: str) -> _Skipped:
    """`skip` holds real paths; the walk sees paths under the content root, which may be
    reached through a symlink, so they are compared relative to the real root."""
    paths: set[str] = set()
    prefixes: set[tuple[str, str]] = set()
    for path in skip:
        folder, name = os.path.split(path)
        if os.path.commonpath([real_root, folder]) != real_root:
            continue
        rel_folder = Path(os.path.relpath(folder, real_root)).as_posix()
        rel_folder = "" if rel_folder == "." else rel_folder
        prefixes.add((rel_folder, f".{name}."))
        if path != real_root:
            paths.add(f"{rel_folder}/{name}" if rel_folder else name)
    return _Skipped(frozenset(paths), frozenset(prefixes))


def _link_entry(arcname: str, *, source: str, link_text: str) -> model.Entry:
    """A symlink entry: no bytes of its own, its link text stored as its content."""
    return model.Entry(arcname=arcname, source=source, size=len(link_text.encode("utf-8")),
                       executable=False, link_target=link_text)


def _lexically_inside(relpath: str, link_text: str) -> bool:
    """Whether the link text, read from the link's folder, stays inside the content root."""
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(relpath), link_text))
    return resolved != ".." and not resolved.startswith("../")


def _checked_link_text(
    relpath: str, link_path: str, *, root: str, included: set[str], label: str
) -> str:
    """The text of a symlink that is safe to keep as a link, or a ContentError."""
    link_text = os.readlink(link_path)
    try:
        link_text.encode("utf-8")
    except UnicodeEncodeError:
        raise errors.ContentError(
            f"{label}: symlink {link_path!r} has a target that is not valid UTF-8"
        ) from None
    if posixpath.isabs(link_text) or os.path.isabs(link_text):
        raise errors.ContentError(
            f"{label}: symlink {link_path} has the absolute target {link_text!r}, "
            "which would not exist inside Lambda's /opt",
            hint="make it a relative link to a file inside the content folder",
        )
    real_root = os.path.realpath(root)
    real_target = os.path.realpath(link_path)
    inside = os.path.commonpath([real_root, real_target]) == real_root
    if not inside or not _lexically_inside(relpath, link_text):
        raise errors.ContentError(
            f"{label}: symlink {link_path} points outside the content folder (to {real_target})",
            hint="copy the file into the content folder or exclude the link",
        )
    if not os.path.exists(link_path):
        raise errors.ContentError(
            f"{label}: symlink {link_path} is broken (its target {link_text!r} does not exist)",
            hint="fix or remove the link, or exclude it",
        )
    target_relpath = Path(os.path.relpath(real_target, real_root)).as_posix()
    if target_relpath != "." and target_relpath not in included:
        raise errors.ContentError(
            f"{label}: symlink {link_path} points to {target_relpath}, which is excluded "
            "and so would dangle in the layer",
        )
    return link_text


def _check_total_size(entries: Sequence[model.Entry], *, label: str) -> None:
    total_size = sum(entry.size for entry in entries)
    if total_size > model.MAX_UNZIPPED_BYTES:
        raise errors.ContentError(
            f"{label}: the content is {total_size} bytes unzipped, over Lambda's limit of "
            f"{model.MAX_UNZIPPED_BYTES} bytes",
            hint="exclude what the functions do not need, or split the layer",
        )


def repository_root(base_dir: Path) -> Path:
    """The real path of the repository that holds a manifest in `base_dir`: the nearest folder
    at or above it with a `.git` (a folder, or the file of a worktree), else `base_dir`."""
    real_base = Path(os.path.realpath(base_dir))
    for folder in (real_base, *real_base.parents):
        if os.path.lexists(folder / ".git"):
            return folder
    return real_base


def outside_repository(relpath: str, *, base_dir: Path) -> str | None:
    """Why the manifest's `relpath` may not be packaged, when its real path (every symlink
    resolved) leaves the repository of the manifest; None when it stays inside."""
    root = repository_root(base_dir)
    real_target = os.path.realpath(base_dir / relpath)
    if os.path.commonpath([root, real_target]) == str(root):
        return None
    return (
        f"'{relpath}' resolves to {real_target}, outside the repository {root}; content must "
        "stay inside the repository that holds the manifest"
    )


def _check_inside_repository(relpath: str, *, base_dir: Path, label: str) -> None:
    problem = outside_repository(relpath, base_dir=base_dir)
    if problem is not None:
        raise errors.ContentError(
            f"{label}: {problem}", hint="copy the content into the repository"
        )


def _checked_zip_path(content: model.ContentSpec, *, base_dir: Path, label: str) -> Path:
    """The absolute path of the content's zip file, which must exist, be a zip and lie inside
    the manifest's repository."""
    if content.zip is None:
        raise errors.ContentError(f"{label}: the content has no zip")
    zip_path = Path(os.path.abspath(base_dir / content.zip))
    if not zip_path.exists():
        raise errors.ContentError(f"{label}: the zip file {zip_path} does not exist")
    _check_inside_repository(content.zip, base_dir=base_dir, label=label)
    if not zip_path.is_file():
        raise errors.ContentError(f"{label}: {zip_path} is not a file")
    if not zipfile.is_zipfile(zip_path):
        raise errors.ContentError(f"{label}: {zip_path} is not a zip file")
    return zip_path


@contextmanager
def _reading_zip(zip_path: Path, *, label: str) -> Iterator[zipfile.ZipFile]:
    """Open a zip, turning every way reading it can fail into a ContentError."""
    try:
        with zipfile.ZipFile(zip_path) as zip_file:
            yield zip_file
    except _ZIP_READ_ERRORS as error:
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
        name = archive.member_name(info)
        if name is None:
            problems.append(
                f"{archive.raw_member_name(info)!r}: the name is not marked as UTF-8, has no "
                "Info-ZIP Unicode Path field and is not valid UTF-8, so its meaning is a guess"
            )
            continue
        names.append(name)
        header_problems = archive.member_header_problems(info, name=name)
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
                f"{name!r} is a {_file_kind(mode)}; a layer can hold only files, folders and "
                "symlinks"
            )
    problems += archive.check_member_names(names)
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
    tree = archive.ZipTree(files=files, folders=folders, links=links)
    readable = {member.relpath for member in members
                if member.kind == "link" and member.link_text is not None}
    for relpath in sorted(readable):
        problem = archive.link_problem(relpath, tree=tree)
        if problem is not None:
            problems.append(f"symlink {relpath!r} {problem}")
    if not files:
        problems.append("it holds no files")
    return problems


def _declared_size_problem(members: Sequence[ZipMember]) -> str | None:
    unzipped_size = sum(member.info.file_size for member in members)
    if unzipped_size <= model.MAX_UNZIPPED_BYTES:
        return None
    return (f"its members declare {unzipped_size} bytes unzipped, over Lambda's limit of "
            f"{model.MAX_UNZIPPED_BYTES} bytes")


def zip_problems(zip_path: Path, *, check_size: bool = True) -> list[str]:
    """Every problem of a prebuilt zip that its central directory and link members show (no
    member data is verified: see `verify_zip_data`); empty when it is usable. `check_size`
    False skips the unzipped-size limit (a zip to normalize may exclude enough)."""
    try:
        with zipfile.ZipFile(zip_path) as zip_file:
            members, problems = _scan_members(zip_file)
    except _ZIP_READ_ERRORS as error:
        return [f"it cannot be read: {error}"]
    problems += tree_problems(members)
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
    if flag_bits & archive.FLAG_ENCRYPTED:
        raise errors.ContentError(f"{name!r} is encrypted")
    if file.read(name_length) != archive.raw_member_name(info):
        raise errors.ContentError(
            f"{name!r}: its local header names another file than the zip's directory")
    file.seek(extra_length, os.SEEK_CUR)
    archive.check_member_data(file, name=name, info=info, sink=sink)


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
    prefix = _arcname_prefix(content.prefix, label=label)
    rules = archive.ExcludeRules.compile(content.exclude)
    entries: list[model.Entry] = []
    included: list[ZipMember] = []
    by_source: dict[str, ZipMember] = {}
    for member in members:
        if member.kind == "folder" or _member_excluded(rules, member.relpath):
            continue
        included.append(member)
        source = f"{zip_path}\0{member.info.filename}"
        by_source[source] = member
        if member.kind == "link":
            entries.append(_link_entry(prefix + member.relpath, source=source,
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


class _EntryReader:
    """Opens the bytes of entries: files by path (checked against the walk's stat) and
    members of zips (each zip opened once). Files may be opened from several threads at once;
    members of zips from one thread only (a ZipFile is not shared safely)."""

    def __init__(self, stats: Mapping[str, os.stat_result]) -> None:
        self._stats = stats
        self._open_zips: dict[str, zipfile.ZipFile] = {}
        self._exit_stack = ExitStack()

    def __enter__(self) -> _EntryReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._exit_stack.close()

    def sha256(self, entry: model.Entry) -> str:
        """Hex SHA-256 of `entry`'s bytes."""
        with self.open(entry) as file:
            return _sha256_of(file).hex()

    def open(self, entry: model.Entry) -> AbstractContextManager[archive.ByteReader]:
        """Open `entry`'s bytes for reading."""
        zip_path, separator, member = entry.source.partition("\0")
        if not separator:
            return _open_regular_file(entry.source, expected=self._stats[entry.source])
        zip_file = self._open_zips.get(zip_path)
        if zip_file is None:
            zip_file = self._exit_stack.enter_context(zipfile.ZipFile(zip_path))
            self._open_zips[zip_path] = zip_file
        return zip_file.open(member)


def identify(
    content: model.ContentSpec,
    *,
    base_dir: Path,
    label: str,
    cache: StatCache,
    skip: frozenset[str] = frozenset(),
) -> model.Artifact:
    """The content identity of a layer, computed without zipping.

    For a folder or a zip to normalize, only the fingerprint is known (file digests come from
    `cache` when a file is unchanged). A zip without normalize is the artifact itself, byte for
    byte, so every digest is known at once.
    """
    with _layer_errors(label):
        return _identify(content, base_dir=base_dir, label=label, cache=cache, skip=skip)


def _identify(
    content: model.ContentSpec, *, base_dir: Path, label: str, cache: StatCache,
    skip: frozenset[str],
) -> model.Artifact:
    if content.kind is model.SourceKind.S3:
        raise _s3_unsupported(label)
    if content.kind is model.SourceKind.ZIP and not content.normalize:
        return _prebuilt_artifact(content, base_dir=base_dir, label=label, cache=cache)
    collected = _collect(content, base_dir=base_dir, label=label, skip=skip)
    if collected.zip_path is not None:
        return model.Artifact(
            fingerprint=archive.fingerprint(
                _verified_member_digests(collected, zip_path=collected.zip_path, label=label)),
            unzipped_size=sum(entry.size for entry in collected.entries))
    file_digests: list[tuple[model.Entry, str]] = []
    for entry in collected.entries:
        if entry.link_target is not None:
            file_digests.append((entry, ""))
        else:
            file_stat = collected.stats[entry.source]
            file_digests.append((entry, cache.file_sha256(Path(entry.source), file_stat)))
    return model.Artifact(fingerprint=archive.fingerprint(file_digests),
                          unzipped_size=sum(entry.size for entry in collected.entries))


def _verified_member_digests(
    collected: _Collected, *, zip_path: Path, label: str
) -> list[tuple[model.Entry, str]]:
    """Each entry of a zip to normalize with the SHA-256 of its data, which is verified
    against its declared size and CRC in the same single, bounded read."""
    file_digests: list[tuple[model.Entry, str]] = []
    with _reading_zip(zip_path, label=label) as zip_file:
        for entry in collected.entries:
            digest = hashlib.sha256()
            _verify_one(zip_file, collected.zip_members[entry.source], zip_path=zip_path,
                        label=label, sink=digest.update)
            file_digests.append((entry, "" if entry.link_target is not None
                                 else digest.hexdigest()))
    return file_digests


@contextmanager
def _layer_errors(label: str) -> Iterator[None]:
    """Report every failure to read the layer's content as a ContentError naming the layer."""
    try:
        yield
    except errors.ContentError as error:
        if error.message.startswith(f"{label}: "):
            raise
        raise errors.ContentError(f"{label}: {error.message}", hint=error.hint) from error
    except OSError as error:
        raise errors.ContentError(
            f"{label}: cannot read {error.filename or 'the content'}: {error.strerror or error}"
        ) from error
    except (EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise errors.ContentError(f"{label}: a zip cannot be read: {error}") from error


def _prebuilt_artifact(
    content: model.ContentSpec, *, base_dir: Path, label: str, cache: StatCache
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
    _raise_refused(zip_path, [*tree_problems(members), *([size_problem] if size_problem else [])],
                   label=label)
    zip_stat = os.stat(zip_path)
    content_sha256 = cache.file_sha256(zip_path, zip_stat)
    if not cache.zip_verified(content_sha256):
        verify_zip_data(zip_path, label=label)
        # Remembered only if the file did not change while it was verified.
        if _same_file_state(os.stat(zip_path), zip_stat):
            cache.remember_verified_zip(content_sha256)
    return model.Artifact(
        fingerprint=content_sha256,
        code_sha256=archive.code_sha256(bytes.fromhex(content_sha256)),
        content_sha256=content_sha256,
        code_size=zip_stat.st_size,
        zip_path=str(zip_path),
        unzipped_size=sum(member.info.file_size for member in members),
    )


def _is_built(artifact: model.Artifact) -> bool:
    return None not in (
        artifact.zip_path,
        artifact.code_sha256,
        artifact.content_sha256,
        artifact.code_size,
    )


def build(
    content: model.ContentSpec,
    artifact: model.Artifact,
    *,
    base_dir: Path,
    label: str,
    build_dir: Path,
    skip: frozenset[str] = frozenset(),
    previous_zip: Path | None = None,
    cache: StatCache | None = None,
) -> model.Artifact:
    """The artifact with its zip built: `build_dir/<fingerprint>.zip` and its digests.

    A zip already built for the fingerprint is reused (only re-hashed). Otherwise the content is
    collected again, zipped on every core into a temporary file and moved into place; if what
    was zipped no longer has the fingerprint that was planned, the content changed since and a
    ContentError says so. A prebuilt zip (all digests known) is returned unchanged. The 50 MB
    direct-upload limit is the caller's to apply.

    The zip is rebuilt incrementally from `previous_zip` (default: the layer's latest zip in
    `build_dir`, found by `label`): unchanged files, known by their digests (from `cache`, or
    read again without one), have their compressed bytes copied; the bytes are those of a
    full build (see `zipbuild`).
    """
    if _is_built(artifact):
        return artifact
    with _layer_errors(label):
        return _build(
            content, artifact, base_dir=base_dir, label=label, build_dir=build_dir, skip=skip,
            previous_zip=previous_zip, cache=cache,
        )


def _build(
    content: model.ContentSpec,
    artifact: model.Artifact,
    *,
    base_dir: Path,
    label: str,
    build_dir: Path,
    skip: frozenset[str],
    previous_zip: Path | None,
    cache: StatCache | None,
) -> model.Artifact:
    if content.kind is model.SourceKind.S3:
        raise _s3_unsupported(label)
    if content.kind is model.SourceKind.ZIP and not content.normalize:
        # Only the fingerprint was given: the prebuilt zip is hashed again, uncached.
        uncached = StatCache(build_dir / "unused", entries={}, written_ns=0)
        prebuilt = _prebuilt_artifact(content, base_dir=base_dir, label=label, cache=uncached)
        if prebuilt.fingerprint != artifact.fingerprint:
            raise _changed_while_planning(
                label, planned=artifact.fingerprint, found=prebuilt.fingerprint
            )
        return prebuilt
    zip_path = build_dir / f"{artifact.fingerprint}.zip"
    build_dir.mkdir(parents=True, exist_ok=True)
    if zip_path.is_file() and zipfile.is_zipfile(zip_path):
        built = _built_artifact(artifact.fingerprint, zip_path)
    else:
        built = _build_zip(
            content, artifact, base_dir=base_dir, label=label, zip_path=zip_path, skip=skip,
            previous_zip=previous_zip or zipbuild.latest_zip(build_dir, layer=label),
            cache=cache,
        )
    zipbuild.remember_latest(build_dir, layer=label, zip_path=zip_path)
    return built


def _build_zip(
    content: model.ContentSpec,
    artifact: model.Artifact,
    *,
    base_dir: Path,
    label: str,
    zip_path: Path,
    skip: frozenset[str],
    previous_zip: Path | None,
    cache: StatCache | None,
) -> model.Artifact:
    collected = _collect(content, base_dir=base_dir, label=label, skip=skip)
    remove_stale_build_temps(zip_path.parent)
    # The writer's pid in the name lets a later build tell an abandoned temp file.
    known_sha256: zipbuild.KnownSha256 | None = None
    if content.kind is model.SourceKind.PATH:
        # Without the caller's cache, a file is read once more to be hashed: still far
        # cheaper than deflating it again.
        digests = cache or StatCache(zip_path.parent / "unused", entries={}, written_ns=0)

        def known_sha256(entry: model.Entry) -> str:
            return digests.file_sha256(Path(entry.source), collected.stats[entry.source])

    descriptor, temp_name = tempfile.mkstemp(
        dir=zip_path.parent, prefix=f".{zip_path.stem[:16]}.{os.getpid()}.",
        suffix=BUILD_TEMP_SUFFIX,
    )
    try:
        with (
            os.fdopen(descriptor, "w+b") as temp_file,
            _EntryReader(collected.stats) as reader,
            zipbuild.open_previous(previous_zip) as previous,
        ):
            built = zipbuild.write_zip(
                collected.entries, out=temp_file, open_entry=reader.open, previous=previous,
                known_sha256=known_sha256,
                # Members of one zip are read through one shared ZipFile: one worker.
                workers=None if content.kind is model.SourceKind.PATH else 1,
            )
            temp_file.flush()
            os.fsync(temp_file.fileno())
        file_sha256 = built.file_sha256()
        zipped = archive.fingerprint(
            (entry, file_sha256[entry.arcname]) for entry in collected.entries
        )
        if zipped != artifact.fingerprint:
            raise _changed_while_planning(label, planned=artifact.fingerprint, found=zipped)
        os.replace(temp_name, zip_path)
    except BaseException:
        _remove_quietly(temp_name)
        raise
    zipbuild.save_index(zip_path, built)
    return model.Artifact(
        fingerprint=artifact.fingerprint,
        code_sha256=archive.code_sha256(built.sha256),
        content_sha256=built.sha256.hex(),
        code_size=built.code_size,
        zip_path=os.path.abspath(zip_path),
    )


def remove_stale_build_temps(build_dir: Path, *, now_ns: int | None = None) -> list[Path]:
    """Remove the `*.zip.tmp` files a build left in `build_dir` when it was killed: those
    whose writer (the pid in the name) is gone, and any not written to for
    STALE_BUILD_TEMP_SECONDS (a live writer keeps its file's mtime fresh). Returns them."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    removed: list[Path] = []
    for temp_path in build_dir.glob(f"*{BUILD_TEMP_SUFFIX}"):
        try:
            modified_ns = temp_path.stat().st_mtime_ns
        except OSError:
            continue
        writer_gone = _writer_gone(temp_path.name)
        too_old = now_ns - modified_ns > STALE_BUILD_TEMP_SECONDS * 1_000_000_000
        if writer_gone or too_old:
            with suppress(OSError):  # best effort: another run may be removing it too
                temp_path.unlink()
                removed.append(temp_path)
    return removed


def _writer_gone(temp_name: str) -> bool:
    """Whether the process named in `.<stem>.<pid>.<random>.zip.tmp` no longer exists (False
    when the name carries no pid, or the answer is unknown)."""
    parts = temp_name.split(".")
    if len(parts) < 6 or not parts[2].isdigit():
        return False
    pid = int(parts[2])
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists but is another user's, or signals are not supported here
        return False
    return False


def _changed_while_planning(label: str, *, planned: str, found: str) -> errors.ContentError:
    return errors.ContentError(
        f"{label}: the content changed while planning "
        f"(planned fingerprint {planned[:12]}, found {found[:12]})",
        hint="run the command again once the files are stable",
    )


def _built_artifact(fingerprint: str, zip_path: Path) -> model.Artifact:
    with open(zip_path, "rb") as zip_file:
        digest = _sha256_of(zip_file)
        code_size = os.fstat(zip_file.fileno()).st_size
    return model.Artifact(
        fingerprint=fingerprint,
        code_sha256=archive.code_sha256(digest),
        content_sha256=digest.hex(),
        code_size=code_size,
        zip_path=os.path.abspath(zip_path),
    )


def prune_builds(build_dir: Path, *, keep: set[str]) -> None:
    """Remove the zips in `build_dir` other than those in `keep` (absolute paths), so that the
    build folder holds what the latest plan needs rather than every zip ever built."""
    if not build_dir.is_dir():
        return
    for zip_path in build_dir.glob("*.zip"):
        if os.path.abspath(zip_path) not in keep:
            with suppress(OSError):  # best effort: it is only a cache
                os.unlink(zip_path)
                os.unlink(zipbuild.index_path(zip_path))


def zip_matches(zip_path: Path, *, code_sha256: str) -> bool:
    """Whether the file at `zip_path` exists and has that CodeSha256 (checked right before an
    upload, since `.reconcile/` may be cleaned at any time)."""
    try:
        with open(zip_path, "rb") as zip_file:
            return archive.code_sha256(_sha256_of(zip_file)) == code_sha256
    except OSError:
        return False
