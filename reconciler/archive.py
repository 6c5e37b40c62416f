"""The determinism rules of a layer's content: exclude patterns, the content fingerprint and the
zip byte format. Pure rules over `model.Entry` values: this module never touches the file
system (bytes arrive through the caller's `open_entry`) and imports no other reconciler module
than `model` and `errors`.

Determinism rules (FORMAT_VERSION 1). The same files give the same fingerprint and the same zip
bytes in any folder, under any umask, timezone, file order or modification time:

- Entries are sorted by the UTF-8 bytes of their path in the zip; paths use `/`; no directory
  entries are written.
- Every entry has the timestamp 1980-01-01 00:00:00 (the earliest a zip can hold) and is
  marked as made on Unix; there are no extra fields and no comments.
- A file has mode 0755 if it has any executable bit, else 0644: other permission bits, owners
  and timestamps of the source files are ignored. Files are deflated at level 6.
- A symbolic link is stored uncompressed, its link text as content, with mode 0120777 (as
  Info-ZIP stores links, and as Lambda extracts them).
- The fingerprint is the SHA-256 of a header naming FORMAT_VERSION, then for each entry in the
  same order: its path, its kind (regular, executable or symlink) and the SHA-256 of its bytes
  (for a link: its link text), each field ended by a NUL byte. It needs no zip, and does not
  depend on zlib; the zip bytes (so Lambda's CodeSha256) are the same wherever zlib is the
  same (zlib-ng, used by some distributions, deflates to other valid bytes).
- Exclude patterns follow .gitignore: the built-ins `__pycache__/`, `*.pyc`, `.git/` and
  `.DS_Store` come first, then the layer's own; blank lines and `#` comments are ignored; the
  last matching pattern wins and `!pattern` re-includes; a trailing `/` matches folders only; a
  pattern with a `/` elsewhere is anchored to the content folder, otherwise it matches a name
  at any depth; `*` and `?` stay within one folder, `**` spans folders; a file inside an
  excluded folder cannot be re-included (so `!__pycache__/` is needed to bring pyc files in
  `__pycache__` back, besides `!*.pyc`). Anything named `.git` never reaches these patterns
  (the content package leaves it out, as it does the tool's own files), so `!.git/` brings
  nothing back; that selection is not part of FORMAT_VERSION (it changes no zip of a layer
  without git's files).
- A prebuilt zip is refused if a member name is absolute (`/x`, `C:x`), has a `..` part (with
  `/` or `\\` separators) or appears twice.
- A prebuilt zip's member names are read as Info-ZIP's unzip reads them: UTF-8 when the
  member's UTF-8 flag (bit 11) is set; otherwise the UTF-8 name of its Unicode Path extra field
  (0x7075, version 1) when that field's CRC-32 matches the raw name bytes; otherwise the raw
  bytes when they are valid UTF-8 (Debian's `zip` writes UTF-8 names without the flag);
  otherwise the member is refused (no code page is guessed).
- A prebuilt zip is refused if a member is encrypted (flag bit 0), compressed by a method other
  than stored (0) or deflate (8), or a special file; if a member lies inside a symlink member;
  if a symlink member's target is empty, absolute, leaves the zip's tree or does not exist in
  it (resolved component by component, following other links, as the kernel resolves them);
  if it holds no file; or if a member's data disagrees with its declared size or CRC-32.

Any change to these rules changes FORMAT_VERSION, which is part of every fingerprint. The
checks of prebuilt zips (the last three rules) refuse zips and never change the bytes of one
they accept, so they are not part of FORMAT_VERSION; reading Info-ZIP names right changed
only the zips of layers whose non-ASCII names used to be garbled.
The checks of a zip's members themselves (names, headers, links, data) live in zipmembers;
the rules they enforce are listed here, with the format they belong to.

Besides `write_zip` (zipfile, one file after another), this module holds the zip records
themselves (`local_header`, `central_directory`) as pure functions of a member's sizes and
CRC, byte for byte as zipfile writes them, so that `zipbuild` can deflate members on every core
and still write these bytes.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
import zipfile
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, BinaryIO, NamedTuple, Protocol

from reconciler import errors, model

FORMAT_VERSION: int = 1

BUILTIN_EXCLUDES: tuple[str, ...] = ("__pycache__/", "*.pyc", ".git/", ".DS_Store")

# 1980-01-01 is the earliest timestamp the zip format (MS-DOS date) can hold.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
DEFLATE_LEVEL = 6
CHUNK_BYTES = 1024 * 1024

_UNIX_CREATE_SYSTEM = 3
_REGULAR_MODE = 0o100644
_EXECUTABLE_MODE = 0o100755
_SYMLINK_MODE = 0o120777

_KIND_REGULAR = "regular"
_KIND_EXECUTABLE = "executable"
_KIND_SYMLINK = "symlink"


class ByteReader(Protocol):
    """What `write_zip` needs from an opened entry: chunked reads (any binary file has it)."""

    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class _Rule:
    """One compiled exclude pattern."""

    pattern: str
    regex: re.Pattern[str]
    negated: bool
    dir_only: bool


class ExcludeRules:
    """Compiled gitignore-style patterns: the built-ins first, then the layer's own.

    `excluded` judges one path on its own; like git, the walker must not descend into an
    excluded folder, which is why a file inside one cannot be re-included.
    """

    def __init__(self, rules: Sequence[_Rule]) -> None:
        self._rules = tuple(rules)
        # With no negated pattern a path is excluded as soon as any rule matches it, so one
        # alternation of the rules for files (those not dir-only) and one for folders (all)
        # judge a path in one match instead of one per rule (a walk asks ~9,000 times).
        self._either: tuple[re.Pattern[str] | None, re.Pattern[str] | None] | None = None
        if not any(rule.negated for rule in self._rules):
            self._either = (_alternation([rule for rule in self._rules if not rule.dir_only]),
                            _alternation(self._rules))

    @classmethod
    def compile(cls, patterns: Sequence[str]) -> ExcludeRules:
        """Compile the built-in patterns followed by `patterns` (later patterns win)."""
        rules = [
            rule
            for line in (*BUILTIN_EXCLUDES, *patterns)
            if (rule := _compile_pattern(line)) is not None
        ]
        return cls(rules)

    def excluded(self, relpath: str, *, is_dir: bool) -> bool:
        """Whether `relpath` (POSIX, relative to the content folder) is excluded."""
        if self._either is not None:
            either = self._either[1] if is_dir else self._either[0]
            return either is not None and either.match(relpath) is not None
        for rule in reversed(self._rules):
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.match(relpath):
                return not rule.negated
        return False


def _alternation(rules: Sequence[_Rule]) -> re.Pattern[str] | None:
    """One regex that matches what any of `rules` matches (None for no rule)."""
    if not rules:
        return None
    return re.compile("|".join(f"(?:{rule.regex.pattern})" for rule in rules), re.DOTALL)


def _compile_pattern(line: str) -> _Rule | None:
    """One gitignore line as a rule, or None for a blank line or a comment."""
    # Trailing spaces are ignored unless escaped with a backslash, as in git.
    text = re.sub(r"(?<!\\) +$", "", line)
    if not text or text.startswith("#"):
        return None
    negated = text.startswith("!")
    if negated:
        text = text[1:]
    dir_only = text.endswith("/")
    text = text.rstrip("/")
    # A slash at the start or in the middle anchors the pattern to the content folder.
    anchored = "/" in text
    text = text.lstrip("/")
    if not text:
        return None
    body = _glob_to_regex(text)
    regex = f"^{body}$" if anchored else f"^(?:.*/)?{body}$"
    return _Rule(
        pattern=line, regex=re.compile(regex, re.DOTALL), negated=negated, dir_only=dir_only
    )


def _glob_to_regex(glob: str) -> str:
    """Translate a slash-separated glob; `**` as a whole segment spans folders."""
    segments = glob.split("/")
    last = len(segments) - 1
    parts: list[str] = []
    separator = ""
    for index, segment in enumerate(segments):
        if segment == "**":
            if index == 0 and index == last:
                parts.append(".*")
            elif index == 0:
                parts.append("(?:.*/)?")
            elif index == last:
                parts.append("/.+")
            else:
                parts.append("/(?:.*/)?")
            separator = ""
            continue
        parts.append(separator + _segment_to_regex(segment))
        separator = "/"
    return "".join(parts)


def _segment_to_regex(segment: str) -> str:
    """Translate one path segment: `*` and `?` never match `/`, `[...]` is a class."""
    out: list[str] = []
    index = 0
    while index < len(segment):
        char = segment[index]
        if char == "*":
            while index + 1 < len(segment) and segment[index + 1] == "*":
                index += 1
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\" and index + 1 < len(segment):
            index += 1
            out.append(re.escape(segment[index]))
        elif char == "[":
            translated, index = _bracket_to_regex(segment, index)
            out.append(translated)
            continue
        else:
            out.append(re.escape(char))
        index += 1
    return "".join(out)


def _bracket_to_regex(segment: str, start: int) -> tuple[str, int]:
    """Translate the class opening at `start`; returns the regex and the index after it.

    An unclosed `[` is a literal bracket, as in fnmatch.
    """
    index = start + 1
    negated = index < len(segment) and segment[index] in "!^"
    if negated:
        index += 1
    members_start = index
    # A `]` right after the opening bracket is a member, not the end of the class.
    if index < len(segment) and segment[index] == "]":
        index += 1
    while index < len(segment) and segment[index] != "]":
        index += 1
    if index >= len(segment):
        return re.escape("["), start + 1
    members = "".join(
        "\\" + char if char in "\\^[]" else char for char in segment[members_start:index]
    )
    regex = f"[^/{members}]" if negated else f"[{members}]"
    return regex, index + 1


def entry_kind(entry: model.Entry) -> str:
    """The entry's kind as the fingerprint names it: regular, executable or symlink."""
    if entry.link_target is not None:
        return _KIND_SYMLINK
    return _KIND_EXECUTABLE if entry.executable else _KIND_REGULAR


def _sort_key(entry: model.Entry) -> bytes:
    return entry.arcname.encode("utf-8")


def _check_arcnames(entries: Iterable[model.Entry]) -> None:
    """Reject names the format cannot hold unambiguously: NUL bytes and duplicates."""
    seen: set[str] = set()
    for entry in entries:
        if "\0" in entry.arcname or (entry.link_target is not None and "\0" in entry.link_target):
            raise errors.ContentError(f"{entry.arcname!r} contains a NUL character")
        if entry.arcname in seen:
            raise errors.ContentError(f"{entry.arcname!r} appears twice in the layer")
        seen.add(entry.arcname)


def fingerprint(files: Iterable[tuple[model.Entry, str]]) -> str:
    """Hex SHA-256 identifying the content: paths, kinds and file digests (see module doc).

    Each tuple is an entry and the hex SHA-256 of its bytes (ignored for a symlink, whose link
    text is hashed instead).
    """
    ordered = sorted(files, key=lambda pair: _sort_key(pair[0]))
    _check_arcnames(entry for entry, _ in ordered)
    digest = hashlib.sha256()
    digest.update(f"reconcile-layer-fingerprint\0format={FORMAT_VERSION}\0".encode())
    for entry, file_sha256 in ordered:
        kind = entry_kind(entry)
        identity = entry.link_target if entry.link_target is not None else file_sha256
        # NUL cannot occur in a path, a kind or a digest, so the fields cannot run together.
        digest.update(f"{entry.arcname}\0{kind}\0{identity}\0".encode())
    return digest.hexdigest()


def _zip_info(entry: model.Entry) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(filename=entry.arcname, date_time=ZIP_TIMESTAMP)
    info.create_system = _UNIX_CREATE_SYSTEM
    # Telling zipfile the size up front lets it decide zip64 correctly before streaming.
    info.file_size = entry.size
    if entry.link_target is not None:
        info.compress_type = zipfile.ZIP_STORED
        info.external_attr = _SYMLINK_MODE << 16
    else:
        info.compress_type = zipfile.ZIP_DEFLATED
        # ZipFile.open(info, "w") compresses at the ZipInfo's own level, public only from
        # Python 3.13 (as compress_level, which keeps `_compresslevel` as an alias).
        info._compresslevel = DEFLATE_LEVEL  # type: ignore[attr-defined]
        info.external_attr = (_EXECUTABLE_MODE if entry.executable else _REGULAR_MODE) << 16
    return info


def checked_order(entries: Iterable[model.Entry]) -> list[model.Entry]:
    """The entries in zip order (by the UTF-8 bytes of their path), refusing NUL characters and
    duplicate names with a ContentError."""
    ordered = sorted(entries, key=_sort_key)
    _check_arcnames(ordered)
    return ordered


def write_zip(
    entries: Sequence[model.Entry],
    *,
    out: BinaryIO,
    open_entry: Callable[[model.Entry], AbstractContextManager[ByteReader]],
) -> int:
    """Write the deterministic zip of `entries` to `out` (a seekable binary file), one file
    after another with zipfile. `zipbuild.write_zip` writes the same bytes on every core; this
    writer stays as the reference its tests compare it with.

    File bytes are streamed in chunks of at most CHUNK_BYTES, never whole. Returns the total
    uncompressed size. Raises ContentError when a file's size differs from `entry.size`, which
    means it changed while being packaged.
    """
    ordered = sorted(entries, key=_sort_key)
    _check_arcnames(ordered)
    total_size = 0
    with zipfile.ZipFile(out, mode="w") as zip_file:
        for entry in ordered:
            with zip_file.open(_zip_info(entry), mode="w") as member:
                if entry.link_target is not None:
                    link_bytes = entry.link_target.encode("utf-8")
                    member.write(link_bytes)
                    total_size += len(link_bytes)
                    continue
                total_size += _copy_entry(entry, into=member, open_entry=open_entry)
    return total_size


def _copy_entry(
    entry: model.Entry,
    *,
    into: IO[bytes],
    open_entry: Callable[[model.Entry], AbstractContextManager[ByteReader]],
) -> int:
    """Stream one file's bytes into its zip member; returns the byte count."""
    copied = 0
    with open_entry(entry) as source:
        while chunk := source.read(CHUNK_BYTES):
            copied += len(chunk)
            # Stop early: a file that keeps growing would otherwise be read without end.
            if copied > entry.size:
                break
            into.write(chunk)
    if copied != entry.size:
        raise size_changed(entry, copied=copied)
    return copied


def size_changed(entry: model.Entry, *, copied: int) -> errors.ContentError:
    """The error for a file that gave `copied` bytes where its entry said `entry.size`."""
    return errors.ContentError(
        f"{entry.arcname} changed while it was being packaged "
        f"(expected {entry.size} bytes, read {'more' if copied > entry.size else copied})",
        hint="run the command again once the files are stable",
    )


# The zip records below are the ones zipfile writes for `write_zip`'s members (seekable
# output: sizes in the local header, no data descriptor). `zipbuild` writes members itself,
# in parallel, and must give the same bytes; the tests compare both on every Python.
ZIP64_LIMIT = (1 << 31) - 1
_ZIP_FILECOUNT_LIMIT = (1 << 16) - 1
_ZIP_VERSION = 20
_ZIP64_VERSION = 45
_UTF8_NAME_FLAG = 0x800
_DOS_DATE = (ZIP_TIMESTAMP[0] - 1980) << 9 | ZIP_TIMESTAMP[1] << 5 | ZIP_TIMESTAMP[2]
_DOS_TIME = ZIP_TIMESTAMP[3] << 11 | ZIP_TIMESTAMP[4] << 5 | ZIP_TIMESTAMP[5] // 2
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_CENTRAL_HEADER = struct.Struct("<4s4B4HL2L5H2L")
_END_RECORD = struct.Struct("<4s4H2LH")
_ZIP64_END_RECORD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")


class ZipMember(NamedTuple):
    """One member as its headers record it: where its local header starts and what follows.
    (A named tuple, not a frozen dataclass: a build makes one per member, and a tuple is made
    faster.)"""

    arcname: str
    compress_type: int
    external_attr: int
    crc: int
    compressed_size: int
    size: int
    header_offset: int


def member_format(entry: model.Entry) -> tuple[int, int]:
    """(compress type, external attributes) of the entry's member, by the rules above."""
    if entry.link_target is not None:
        return zipfile.ZIP_STORED, _SYMLINK_MODE << 16
    mode = _EXECUTABLE_MODE if entry.executable else _REGULAR_MODE
    return zipfile.ZIP_DEFLATED, mode << 16


def needs_zip64(size: int) -> bool:
    """Whether zipfile would write a member of `size` bytes with zip64 extra fields (a case
    `local_header` does not write: such a file is far beyond Lambda's limits anyway)."""
    return size * 1.05 > ZIP64_LIMIT


def _encoded_name(arcname: str) -> tuple[bytes, int]:
    """The name's bytes and flag bits: ASCII as is, otherwise UTF-8 with the UTF-8 flag."""
    try:
        return arcname.encode("ascii"), 0
    except UnicodeEncodeError:
        return arcname.encode("utf-8"), _UTF8_NAME_FLAG


def local_header_size(arcname: str) -> int:
    """The length of `local_header` for a member named `arcname` (no extra field)."""
    return _LOCAL_HEADER.size + len(_encoded_name(arcname)[0])


def local_header(member: ZipMember) -> bytes:
    """The local file header written before the member's data (sizes known, no extra)."""
    return local_header_of(member.arcname, compress_type=member.compress_type, crc=member.crc,
                           compressed_size=member.compressed_size, size=member.size)


def local_header_of(arcname: str, *, compress_type: int, crc: int, compressed_size: int,
                    size: int) -> bytes:
    """`local_header` of a member with these fields (no ZipMember to make)."""
    if needs_zip64(size) or compressed_size > ZIP64_LIMIT:
        raise errors.ContentError(f"{arcname} is too large for a layer zip")
    name, flags = _encoded_name(arcname)
    header = _LOCAL_HEADER.pack(
        b"PK\x03\x04", _ZIP_VERSION, 0, flags, compress_type, _DOS_TIME, _DOS_DATE,
        crc, compressed_size, size, len(name), 0,
    )
    return header + name


def central_directory(members: Sequence[ZipMember], *, offset: int) -> bytes:
    """The central directory and end records of `members`, the directory starting at `offset`.

    Zip64 end records are added, as zipfile adds them, when there are more than 65,535
    members; offsets and sizes past 2 GiB are refused (a layer zip cannot reach them).
    """
    records: list[bytes] = []
    for member in members:
        if member.header_offset > ZIP64_LIMIT:
            raise errors.ContentError("the layer zip is too large for its format")
        name, flags = _encoded_name(member.arcname)
        records.append(
            _CENTRAL_HEADER.pack(
                b"PK\x01\x02", _ZIP_VERSION, _UNIX_CREATE_SYSTEM, _ZIP_VERSION, 0, flags,
                member.compress_type, _DOS_TIME, _DOS_DATE, member.crc, member.compressed_size,
                member.size, len(name), 0, 0, 0, 0, member.external_attr, member.header_offset,
            )
            + name
        )
    directory = b"".join(records)
    count = len(members)
    if offset > ZIP64_LIMIT or len(directory) > ZIP64_LIMIT:
        raise errors.ContentError("the layer zip is too large for its format")
    if count > _ZIP_FILECOUNT_LIMIT:
        end64_offset = offset + len(directory)
        directory += _ZIP64_END_RECORD.pack(
            b"PK\x06\x06", 44, _ZIP64_VERSION, _ZIP64_VERSION, 0, 0, count, count,
            len(directory), offset,
        ) + _ZIP64_LOCATOR.pack(b"PK\x06\x07", 0, end64_offset, 1)
        count = _ZIP_FILECOUNT_LIMIT
        central_size = end64_offset - offset
    else:
        central_size = len(directory)
    return directory + _END_RECORD.pack(b"PK\x05\x06", 0, 0, count, count, central_size, offset, 0)


def code_sha256(digest: bytes) -> str:
    """Base64 of a raw SHA-256 digest: the form Lambda reports as CodeSha256."""
    return base64.b64encode(digest).decode("ascii")


