"""A built zip's index and the pointer to a layer's latest zip in .reconcile/builds: what an
incremental rebuild needs to copy unchanged members' compressed bytes from the previous zip
(each member's name, kind, digests, offsets: BuiltZip, IndexedMember), and what each ELF
member needs (so that the binary check of a rebuilt zip reads no copied member again), saved
beside the zip, and verified against the zip itself before any byte of it is reused
(PreviousZip). Shell: it
reads and writes those files; deciding what to rebuild, and writing zips, is zipbuild's."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

from reconciler import __version__, archive, elfcheck, errors
from reconciler.content import common

# 2: the ELF facts of an inspected build ("elf"), so a rebuild that copies members knows them.
INDEX_FORMAT = 2


# The deflate settings zipfile uses for a ZIP_DEFLATED member: raw deflate, 32 KiB window.
WINDOW_BITS = -15


_INDEX_SUFFIX = ".index.json"


_MAX_INDEX_BYTES = 64 * 1024 * 1024


_POINTER_PREFIX = "latest-"


SYMLINK = "symlink"  # the kind `archive.entry_kind` gives a link


class IndexedMember(NamedTuple):
    """One member of a built zip, as its index records it. (A named tuple, not a frozen
    dataclass: a rebuild reads one per member of the previous zip and writes one per member
    of the new, and a tuple is made faster.)"""

    arcname: str
    kind: str
    sha256: str
    crc: int
    compress_type: int
    compressed_size: int
    size: int
    data_offset: int

    def header(self) -> bytes:
        """The member's local header, which must sit right before its data (a local header
        holds neither the member's offset nor its mode)."""
        return archive.local_header_of(self.arcname, compress_type=self.compress_type,
                                       crc=self.crc, compressed_size=self.compressed_size,
                                       size=self.size)


@dataclass(frozen=True)
class CheckedMember:
    """A wheel member a build inflated: its CRC and size as checked, what it needs if ELF."""

    wheel: str
    name: str
    crc: int
    size: int
    elf: elfcheck.ElfInfo | elfcheck.BadElf | None


@dataclass(frozen=True)
class BuiltZip:
    """What writing a zip produced: its raw SHA-256 and size, its members, and counters
    (members copied from the previous zip, members deflated, peak bytes reserved in flight)."""

    sha256: bytes
    code_size: int
    members: tuple[IndexedMember, ...]
    reused: int
    deflated: int
    peak_in_flight_bytes: int
    # With inspection asked for, what each ELF member needs, read from the bytes the build
    # read anyway or, for a member copied from the previous zip, from that zip's index (None:
    # not asked, or a member was copied from a zip whose index recorded no ELF facts).
    elf_files: Mapping[str, elfcheck.ElfInfo | elfcheck.BadElf] | None = None
    # With inspection, the wheel members this build inflated and checked (for the wheel
    # cache's facts, so the next build copies them unread).
    checked: tuple[CheckedMember, ...] = ()

    def file_sha256(self) -> dict[str, str]:
        """Hex SHA-256 of each member's bytes by path ("" for a symlink, as `fingerprint`
        takes it)."""
        return {
            member.arcname: "" if member.kind == SYMLINK else member.sha256
            for member in self.members
        }


# How often a followed output says how far it has written (see HashingOutput).
REPORT_BYTES = 1024 * 1024


class HashingOutput:
    """The zip being written: every byte goes to the file and into its SHA-256. Given
    `reached`, it is called with the offset up to which the bytes are in the file (the file
    flushed first) every REPORT_BYTES or so: one who reads the file by offset while it is
    written (headstart's helper) reads only bytes written."""

    def __init__(self, out: BinaryIO, *, reached: Callable[[int], None] | None = None) -> None:
        self._out = out
        self.digest = hashlib.sha256()
        self.offset = 0
        self._reached = reached
        self._report_at = REPORT_BYTES

    def write(self, data: bytes) -> None:
        self._out.write(data)
        self.digest.update(data)
        self.offset += len(data)
        if self._reached is not None and self.offset >= self._report_at:
            self._out.flush()
            self._reached(self.offset)
            self._report_at = self.offset + REPORT_BYTES


def copy_bytes(descriptor: int, position: int, end: int, *, into: HashingOutput,
               shrank: str) -> None:
    """Copy the bytes of the open file from `position` to `end` into `into`, with pread in
    chunks; a ContentError saying `shrank` if the file ends before."""
    while position < end:
        chunk = os.pread(descriptor, min(archive.CHUNK_BYTES, end - position), position)
        if not chunk:
            raise errors.ContentError(shrank)
        into.write(chunk)
        position += len(chunk)


ElfFacts = Mapping[str, "elfcheck.ElfInfo | elfcheck.BadElf"]


class PreviousZip:
    """An earlier zip of the layer, open for copying members, and its well-formed index;
    with `elf`, what each of its ELF members needs (every member not in it is no ELF file),
    as the build that wrote it found. `open_previous` gives one verified (the zip is what its
    index says), or, asked to, one still to `verify`: a build may copy from it meanwhile,
    and must throw its zip away if it is not."""

    def __init__(self, file: BinaryIO, members: Sequence[IndexedMember], *,
                 elf: ElfFacts | None = None, document: Mapping[str, object] | None = None
                 ) -> None:
        self._file = file
        self._elf = elf
        self._members = members
        self._document = document
        deflated = [member for member in members
                    if member.kind != SYMLINK and member.compress_type == zipfile.ZIP_DEFLATED]
        self._by_sha256 = {member.sha256: member for member in deflated}
        self._by_name = {member.arcname: member for member in deflated}

    def elf_of(self, member: IndexedMember) -> tuple[bool, elfcheck.ElfInfo | elfcheck.BadElf
                                                     | None]:
        """(known, what it needs) of one of its members: (False, None) when the build that
        wrote this zip did not inspect it, (True, None) for a member that is no ELF file."""
        if self._elf is None:
            return False, None
        return True, self._elf.get(member.arcname)

    def deflated_member(self, sha256: str, *, arcname: str = "") -> IndexedMember | None:
        """A deflated member whose bytes have that SHA-256, if the zip holds one: the one named
        `arcname` when it has them (the writer then copies it with its local header, in one
        run with its unchanged neighbours), else any."""
        named = self._by_name.get(arcname)
        if named is not None and named.sha256 == sha256:
            return named
        return self._by_sha256.get(sha256)

    def copy_data(self, member: IndexedMember, *, into: HashingOutput) -> None:
        """Copy the member's compressed bytes, in chunks."""
        self.copy_range(member.data_offset, member.data_offset + member.compressed_size,
                        into=into)

    def copy_range(self, position: int, end: int, *, into: HashingOutput) -> None:
        """Copy the zip's bytes from `position` to `end`, in chunks (a run of members, their
        local headers included, whose bytes the new zip holds unchanged)."""
        copy_bytes(self._file.fileno(), position, end, into=into,
                   shrank="the previous zip shrank while it was being read")

    def verify(self) -> bool:
        """Whether the zip is what its index says: its size, its SHA-256 and each member's
        header where the index puts it (read by offset: another process may do this on the
        same open file while this one copies from it). True for a zip verified on opening."""
        verdict = False
        for step in self.verifying():
            verdict = bool(step)
        return verdict

    def verifying(self) -> Iterator[bool | None]:
        """`verify` a piece at a time: None after each CHUNK_BYTES read, then the verdict,
        last (a follower verifies between the pieces of its other work)."""
        if self._document is None:
            yield True
            return
        matches = False
        try:
            for step in _matching_index(self._file.fileno(), document=self._document,
                                        members=self._members):
                if step is None:
                    yield None
                else:
                    matches = step
        except OSError:
            matches = False
        if matches:
            self._document = None  # (verified: not read again)
        yield matches

    def close(self) -> None:
        self._file.close()


def index_path(zip_path: Path) -> Path:
    """Where the index of the zip at `zip_path` lives: beside it, `<stem>.index.json`."""
    return zip_path.with_name(zip_path.stem + _INDEX_SUFFIX)


def _index_document(built: BuiltZip) -> dict[str, object]:
    document: dict[str, object] = {
        "format": INDEX_FORMAT,
        "zip_format": archive.FORMAT_VERSION,
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        "deflate": [archive.DEFLATE_LEVEL, WINDOW_BITS],
        "zip_sha256": built.sha256.hex(),
        "zip_size": built.code_size,
        "members": [
            [m.arcname, m.kind, m.sha256, m.crc, m.compress_type, m.compressed_size, m.size,
             m.data_offset]
            for m in built.members
        ],
        # What each ELF member needs, when the build knew it of every member (read, or taken
        # from the previous zip's index; else null): a rebuild that copies members from this
        # zip then knows theirs without reading them. Kept with the version of the tool that
        # read them, so that another version's reader reads them again.
        "elf": None if built.elf_files is None else {
            "version": __version__,
            "files": {name: elfcheck.as_document(found)
                      for name, found in built.elf_files.items()}},
    }
    return document


def _canonical(document: dict[str, object]) -> bytes:
    """The bytes `index_sha256` is the SHA-256 of: the document without it, keys sorted, no
    spaces."""
    body = {key: value for key, value in document.items() if key != "index_sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")


def _document_sha256(document: dict[str, object]) -> str:
    return hashlib.sha256(_canonical(document)).hexdigest()


# How `save_index` ends the canonical bytes: the digest as the last key, so that a reader
# checks the digest over the bytes as read (`_digest_as_written`) without encoding them again.
# An index is accepted when either holds: its bytes before that key, closed, have the digest
# (the layout save_index writes), or its document without the key, encoded canonically, has it
# (the documented rule, whatever the layout). Either way the digest covers every field read.
_DIGEST_KEY = b',"index_sha256":"'


def _index_bytes(built: BuiltZip) -> bytes:
    """The index file: the canonical bytes with `index_sha256` added as the last key."""
    canonical = _canonical(_index_document(built))
    digest = hashlib.sha256(canonical).hexdigest()
    return canonical[:-1] + _DIGEST_KEY + digest.encode("ascii") + b'"}'


def _digest_as_written(raw: bytes, document: dict[str, object]) -> bool:
    """Whether `raw` is an index as `save_index` writes it, whose digest holds: the bytes
    before the last key, closed, are the canonical bytes. Any other layout is checked by
    encoding the document again (`_document_sha256`)."""
    digest = document.get("index_sha256")
    at = raw.rfind(_DIGEST_KEY)
    if not isinstance(digest, str) or at < 0 or raw[at + len(_DIGEST_KEY):] != (
            digest.encode("ascii", "replace") + b'"}'):
        return False
    return hashlib.sha256(raw[:at] + b"}").hexdigest() == digest


def index_bytes(built: BuiltZip) -> bytes:
    """The bytes of the index `save_index` writes for `built` (for a process that wrote the
    zip to hand them to the one that moves it into place, rather than every member)."""
    return _index_bytes(built)


def save_index(zip_path: Path, built: BuiltZip, *, encoded: bytes | None = None) -> bool:
    """Write the index of the zip just built at `zip_path` (`encoded`: its bytes, as
    `index_bytes` gave them); False if it cannot be written (it only speeds up the next
    build). Indexes whose zip is gone are removed on the way."""
    try:
        common.write_atomically(index_path(zip_path),
                                encoded if encoded is not None else _index_bytes(built))
        for other in zip_path.parent.glob(f"*{_INDEX_SUFFIX}"):
            if not other.with_name(other.name.removesuffix(_INDEX_SUFFIX) + ".zip").exists():
                other.unlink()
    except OSError:
        return False
    return True


def _pointer_path(build_dir: Path, layer: str) -> Path:
    # Named by a digest of the layer's label, so that any label makes a safe file name.
    return build_dir / f"{_POINTER_PREFIX}{hashlib.sha256(layer.encode()).hexdigest()[:16]}.json"


def remember_latest(build_dir: Path, *, layer: str, zip_path: Path) -> None:
    """Record `zip_path` (in `build_dir`) as the layer's latest zip; best effort."""
    document = {"layer": layer, "zip": zip_path.name}
    with contextlib.suppress(OSError):
        common.write_atomically(_pointer_path(build_dir, layer),
                                json.dumps(document).encode("utf-8"))


def latest_zip(build_dir: Path, *, layer: str) -> Path | None:
    """The layer's latest zip in `build_dir` as `remember_latest` recorded it, if it exists."""
    try:
        document = json.loads(_pointer_path(build_dir, layer).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("layer") != layer:
        return None
    name = document.get("zip")
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".zip"):
        return None
    zip_path = build_dir / name
    return zip_path if zip_path.is_file() else None


@contextlib.contextmanager
def open_previous(zip_path: Path | None, *, verified: bool = True
                  ) -> Iterator[PreviousZip | None]:
    """The verified previous zip at `zip_path`, or None when there is none or any check
    fails (then the build deflates every file). Not `verified`: its index is checked, the
    zip itself is left to its `verify`."""
    previous = _opened_previous(zip_path, verified=verified) if zip_path is not None else None
    try:
        yield previous
    finally:
        if previous is not None:
            previous.close()


def _opened_previous(zip_path: Path, *, verified: bool) -> PreviousZip | None:
    try:
        with open(index_path(zip_path), "rb") as index_file:
            raw_index = index_file.read(_MAX_INDEX_BYTES + 1)
        document = json.loads(raw_index)
        members = _indexed_members(document, raw=raw_index) \
            if len(raw_index) <= _MAX_INDEX_BYTES else None
    except (OSError, ValueError):
        return None
    if members is None:
        return None
    try:
        zip_file = open(zip_path, "rb")  # noqa: SIM115 -- PreviousZip owns and closes it
    except OSError:
        return None
    previous = PreviousZip(zip_file, members, elf=_elf_facts(document.get("elf")),
                           document=document)
    if verified and not previous.verify():
        zip_file.close()
        return None
    return previous


def _indexed_members(document: object, *, raw: bytes = b"") -> list[IndexedMember] | None:
    """The members of a well-formed index written by this zlib and format (`raw`: the file's
    bytes, whose digest is checked as written when it has save_index's layout), else
    None."""
    if not isinstance(document, dict):
        return None
    expected = {
        "format": INDEX_FORMAT,
        "zip_format": archive.FORMAT_VERSION,
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        "deflate": [archive.DEFLATE_LEVEL, WINDOW_BITS],
    }
    if any(document.get(key) != value for key, value in expected.items()):
        return None
    if not _digest_as_written(raw, document) and \
            document.get("index_sha256") != _document_sha256(document):
        return None
    raw_members = document.get("members")
    if not isinstance(raw_members, list):
        return None
    members: list[IndexedMember] = []
    append = members.append
    for item in raw_members:
        # (One flat test per field: this runs for every member of a 7,660-file layer.)
        if type(item) is not list or len(item) != 8:
            return None
        arcname, kind, sha256, crc, compress_type, compressed_size, size, data_offset = item
        if (type(arcname) is not str or type(kind) is not str or type(sha256) is not str
                or type(crc) is not int or type(compress_type) is not int
                or type(compressed_size) is not int or type(size) is not int
                or type(data_offset) is not int
                or min(crc, compress_type, compressed_size, size, data_offset) < 0):
            return None
        append(IndexedMember(arcname, kind, sha256, crc, compress_type, compressed_size, size,
                             data_offset))
    return members


def _elf_facts(document: object) -> ElfFacts | None:
    """The index's ELF facts; None when it has none, another version of the tool wrote them,
    or any of them does not read back."""
    if not isinstance(document, dict) or document.get("version") != __version__:
        return None
    files = document.get("files")
    if not isinstance(files, dict):
        return None
    facts: dict[str, elfcheck.ElfInfo | elfcheck.BadElf] = {}
    for name, found in files.items():
        info = elfcheck.from_document(found)
        if not isinstance(name, str) or info is None:
            return None
        facts[name] = info
    return facts


def _matching_index(
    descriptor: int, *, document: Mapping[str, object], members: Sequence[IndexedMember]
) -> Iterator[bool | None]:
    """Whether the zip open at `descriptor` has the index's size and SHA-256, and each
    member's header where it says (read by offset): None after each chunk read, then the
    verdict, last."""
    zip_size = os.fstat(descriptor).st_size
    if zip_size != document.get("zip_size"):
        yield False
        return
    # Each member's expected header and where it must start, in the order of the file: each
    # is compared within the chunk read for the digest that holds it (a header across two
    # chunks is read on its own).
    expected: list[tuple[int, bytes]] = []
    for member in members:
        try:
            header = member.header()
        except errors.ContentError:
            yield False
            return
        start = member.data_offset - len(header)
        if start < 0 or member.data_offset + member.compressed_size > zip_size:
            yield False
            return
        expected.append((start, header))
    expected.sort(key=lambda pair: pair[0])
    digest = hashlib.sha256()
    position, waiting = 0, 0
    while chunk := os.pread(descriptor, archive.CHUNK_BYTES, position):
        digest.update(chunk)
        end = position + len(chunk)
        while waiting < len(expected) and expected[waiting][0] < end:
            start, header = expected[waiting]
            if start + len(header) <= end:
                found = chunk[start - position:start - position + len(header)]
            else:
                found = os.pread(descriptor, len(header), start)
            if found != header:
                yield False
                return
            waiting += 1
        position = end
        yield None
    yield waiting == len(expected) and digest.hexdigest() == document.get("zip_sha256")
