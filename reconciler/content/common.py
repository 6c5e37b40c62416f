"""What every content kind shares: opening a file the walk saw (and only that file), hashing
in chunks, atomic writes, the naming and containment rules, the entries a source collects and
the reader that opens their bytes (files, or members of a zip to normalize).

Shell: it reads files and writes only what its callers ask (the stat cache). It knows no
content kind's rules of its own and imports none of the kind modules.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from reconciler import archive, errors, model

CHUNK_BYTES = archive.CHUNK_BYTES
ZIP_READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error)


def same_file_state(first: os.stat_result, second: os.stat_result) -> bool:
    return (first.st_size, first.st_mtime_ns, first.st_ctime_ns, first.st_ino, first.st_mode) == (
        second.st_size, second.st_mtime_ns, second.st_ctime_ns, second.st_ino, second.st_mode)


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file beside it (`.<name[:24]>.<random>.tmp`,
    a bounded name) and a rename: readers see the old bytes or the new, never a part."""
    descriptor, temp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name[:24]}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as temp_file:
            temp_file.write(data)
        os.replace(temp_name, path)
    except BaseException:
        remove_quietly(temp_name)
        raise


def remove_quietly(path: str | Path) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


@contextmanager
def open_regular_file(path: Path | str, *, expected: os.stat_result) -> Iterator[BinaryIO]:
    """Open the file the walk saw at `path`, refusing anything that replaced it since.

    O_NONBLOCK keeps a FIFO swapped in after the walk from blocking the open; the inode check
    catches a file replaced by a symlink to somewhere else (such as a credentials file).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    descriptor = os.open(path, flags)
    with os.fdopen(descriptor, "rb") as file:
        _check_still_the_file(path, os.fstat(descriptor), expected=expected)
        yield file


def _check_still_the_file(path: Path | str, opened: os.stat_result, *,
                          expected: os.stat_result) -> None:
    """ContentError unless the opened file is the regular file the walk saw at `path`."""
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


def hash_regular_file(path: str, *, expected: os.stat_result) -> tuple[bytes, os.stat_result]:
    """The raw SHA-256 of the file the walk saw at `path` and its stat once read (the caller
    compares it with `expected` to know whether the file changed while it was read), refusing
    anything that replaced the file since, as open_regular_file does.

    open_regular_file's work on bare descriptors: a cold plan of a 7,660-file tree spent ~60%
    of its hashing time in the file objects, the context manager and pathlib around ~20 us of
    system calls per file. A read shorter than asked is the end of a regular file; a file that
    grows after it shows in the returned stat's size."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    descriptor = os.open(path, flags)
    try:
        _check_still_the_file(path, os.fstat(descriptor), expected=expected)
        digest = hashlib.sha256()
        while True:
            chunk = os.read(descriptor, CHUNK_BYTES)
            digest.update(chunk)
            if len(chunk) < CHUNK_BYTES:
                break
        return digest.digest(), os.fstat(descriptor)
    finally:
        os.close(descriptor)


def sha256_of(file: archive.ByteReader) -> bytes:
    """The raw SHA-256 digest of everything `file` still has to give, read in chunks."""
    digest = hashlib.sha256()
    while chunk := file.read(CHUNK_BYTES):
        digest.update(chunk)
    return digest.digest()


@dataclass(frozen=True)
class Collected:
    """A source's entries, with the stat the walk took of each file (keyed by source), or,
    for a zip to normalize, the zip whose members the entries' sources name
    (`<zip path>\0<member name>`)."""

    entries: list[model.Entry]
    stats: dict[str, os.stat_result]
    zip_path: Path | None = None
    git_ignored: int = 0  # files and folders git ignores, left out (content.gitignore)
    build: model.BuildInfo | None = None  # a layer built from a lock: what it holds
    # A layer built from a lock: each wheel file's SHA-256 (verified), by its path.
    wheel_sha256: Mapping[str, str] = field(default_factory=dict)
    # A folder's walk handed back by the head start's worker (`pack_walk`): each file's hex
    # SHA-256 as the identify that fingerprinted this walk found it, by source.
    sha256: Mapping[str, str] = field(default_factory=dict)


def pack_walk(collected: Collected) -> bytes:
    """A folder's walk as compact bytes (marshal: ~3x cheaper to hand between processes than
    its pickle, whose stat results carry a dict each), with its files' digests; a forked
    worker of this very interpreter hands it to its parent (`unpack_walk`)."""
    return marshal.dumps((
        [(entry.arcname, entry.source, entry.size, entry.executable, entry.link_target)
         for entry in collected.entries],
        {source: (tuple(found), found.st_atime, found.st_mtime, found.st_ctime,
                  found.st_atime_ns, found.st_mtime_ns, found.st_ctime_ns)
         for source, found in collected.stats.items()},
        collected.git_ignored, dict(collected.sha256)))


def unpack_walk(packed: bytes) -> Collected:
    """The walk `pack_walk` packed."""
    entries, stats, git_ignored, sha256 = marshal.loads(packed)
    return Collected(
        entries=[model.Entry(arcname=arcname, source=source, size=size, executable=executable,
                             link_target=link_target)
                 for arcname, source, size, executable, link_target in entries],
        stats={source: os.stat_result(fields, {
            "st_atime": atime, "st_mtime": mtime, "st_ctime": ctime, "st_atime_ns": atime_ns,
            "st_mtime_ns": mtime_ns, "st_ctime_ns": ctime_ns})
            for source, (fields, atime, mtime, ctime, atime_ns, mtime_ns, ctime_ns)
            in stats.items()},
        git_ignored=git_ignored, sha256=sha256)


def arcname_prefix(prefix: str, *, label: str) -> str:
    """The prefix as a zip folder ("" or "some/folder/"), refusing `.` and `..` parts."""
    parts = [part for part in prefix.replace("\\", "/").split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise errors.ContentError(f"{label}: prefix {prefix!r} may not contain '.' or '..'")
    return "".join(f"{part}/" for part in parts)


def check_name(name: str, *, path: str, label: str) -> None:
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


def file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    return "special file"


def link_entry(arcname: str, *, source: str, link_text: str) -> model.Entry:
    """A symlink entry: no bytes of its own, its link text stored as its content."""
    return model.Entry(arcname=arcname, source=source, size=len(link_text.encode("utf-8")),
                       executable=False, link_target=link_text)



def check_total_size(entries: Sequence[model.Entry], *, label: str) -> None:
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


def check_inside_repository(relpath: str, *, base_dir: Path, label: str) -> None:
    problem = outside_repository(relpath, base_dir=base_dir)
    if problem is not None:
        raise errors.ContentError(
            f"{label}: {problem}", hint="copy the content into the repository"
        )
    problem = inside_git_folder(relpath, base_dir=base_dir)
    if problem is not None:
        raise errors.ContentError(f"{label}: {problem}")


def is_git_name(name: str) -> bool:
    """Whether a file or folder name is git's own `.git`, in any case: on a case-insensitive
    file system `.GIT` is the same folder (git refuses such names in a tree for that reason).
    Nothing so named is ever packaged, whatever the exclude patterns say: it can hold
    credentials (actions/checkout leaves the job's token in `.git/config`)."""
    return len(name) == 4 and name.lower() == ".git"


def inside_git_folder(relpath: str, *, base_dir: Path) -> str | None:
    """Why the manifest's `relpath` may not be packaged when it is a `.git` or lies inside one,
    by its path as written or by its real path in the repository; None otherwise."""
    written = Path(os.path.normpath(relpath)).parts
    real = Path(os.path.realpath(base_dir / relpath))
    root = repository_root(base_dir)
    in_repository = real.relative_to(root).parts if real.is_relative_to(root) else ()
    if not any(is_git_name(part) for part in (*written, *in_repository)):
        return None
    return (f"'{relpath}' is or lies inside a .git folder, and git's files are never "
            "packaged (they can hold credentials, such as the token actions/checkout leaves "
            "in .git/config)")


def private_hard_link(file_stat: os.stat_result) -> bool:
    """Whether a regular file has other hard links and only its owner may read it: the shape
    of a link to a secret such as ~/.aws/credentials (0600). A hard link has no target to
    follow, so where its other names lie cannot be known; the files that pip, uv or pnpm link
    from their caches are readable by all, and so are not refused."""
    return file_stat.st_nlink > 1 and not file_stat.st_mode & (stat.S_IRGRP | stat.S_IROTH)


def private_hard_link_problem(shown: str, *, links: int, seen: int | None = None) -> str:
    """The message for a private hard-linked file whose other links lie out of sight (`seen`:
    how many of its links the walk of the content folder found)."""
    where = "" if seen is None else f", {seen} of them in the content folder"
    return (f"{shown} is a hard link to a file only its owner may read ({links} links{where}); "
            "where its other links lie cannot be checked, and a hard link to a secret such as "
            "~/.aws/credentials looks the same")


class EntryReader:
    """Opens the bytes of entries: files by path (checked against the walk's stat) and
    members of zips (each zip opened once). Files may be opened from several threads at once;
    members of zips from one thread only (a ZipFile is not shared safely)."""

    def __init__(self, stats: Mapping[str, os.stat_result]) -> None:
        self._stats = stats
        self._open_zips: dict[str, zipfile.ZipFile] = {}
        self._exit_stack = ExitStack()

    def __enter__(self) -> EntryReader:
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
            return sha256_of(file).hex()

    def open(self, entry: model.Entry) -> AbstractContextManager[archive.ByteReader]:
        """Open `entry`'s bytes for reading."""
        zip_path, separator, member = entry.source.partition("\0")
        if not separator:
            return open_regular_file(entry.source, expected=self._stats[entry.source])
        zip_file = self._open_zips.get(zip_path)
        if zip_file is None:
            zip_file = self._exit_stack.enter_context(zipfile.ZipFile(zip_path))
            self._open_zips[zip_path] = zip_file
        return zip_file.open(member)


@contextmanager
def layer_errors(label: str) -> Iterator[None]:
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




# Build temp files: `.<fingerprint[:16]>.<pid>.<random>.zip.tmp` (layerbuild writes them).
BUILD_TEMP_SUFFIX = ".zip.tmp"


def remove_temps_of(temp_dir: Path, *, pid: int) -> None:
    """Remove the build temp files in `temp_dir` written for process `pid` (a worker stopped
    or done with: what it wrote ahead is not needed). Here, among what the head start
    imports before it forks, so that a run's exit can call it without importing anything
    (an import interrupted by Ctrl-C leaves the module it was importing unusable)."""
    for temp_path in temp_dir.glob(f".*.{pid}.*{BUILD_TEMP_SUFFIX}"):
        with suppress(OSError):  # best effort: a run's last clean-up
            temp_path.unlink()
