"""Writes a layer's deterministic zip using every core, and rebuilds it incrementally from the
layer's previous zip. Shell: it runs the thread pool, reads the previous zip and its index, and
writes the index and the per-layer pointer in the build folder; the byte format (which members,
in what order, with which headers) is `archive`'s, and this module must not decide any of it.

How the bytes stay those of `archive.write_zip` (zipfile): members are deflated in a thread pool
(zlib releases the GIL) with `zlib.compressobj(6, DEFLATED, -15)` fed the same CHUNK_BYTES
chunks, and one writer, the calling thread, writes them in zip order with `archive`'s headers,
hashing the bytes as it writes them, so the zip is never read back for its SHA-256.
Deflating the same bytes with the same zlib and settings gives the same stream, so a member
whose file is unchanged (same SHA-256 of its bytes) can have its compressed bytes copied from
the previous zip; a rebuild is byte-identical to a full build.

A layer built from wheels (`raw_source`) takes each deflated wheel member's compressed bytes as
the wheel holds them, instead of deflating them again: the wheel's SHA-256 was checked against
the lock, so its bytes are fixed, and the layer's zip is still a pure function of the wheels
(not of this machine's zlib). A worker reads the member's bytes, inflates them to check its CRC
and size (a wheel whose headers lie is refused, never copied blind) and hashes them; the writer
writes them like a deflated result. A member an earlier build checked (the wheel cache's facts:
the same CRC and size) has nothing left to compute: the writer copies its bytes from the wheel
itself, with pread, as it copies a previous zip's member (a worker and a spool would only add
hand-offs: they made a cold build of numpy + pandas 0.35 s slower). A stored member is
deflated as any file.

Memory: compressed results waiting for the writer are held in memory only up to
`max_in_flight_bytes`; each job reserves zlib's worst-case output size before it starts. A file
whose worst case is over a quarter of that limit is deflated by a worker into an anonymous
temporary file instead (so big files also deflate in parallel), which the writer copies.

The index beside each zip (`<zip stem>.index.json`) records the zip's own SHA-256 and size,
the zlib version and settings, and for each member its path, kind, SHA-256 of its bytes, CRC,
sizes and the offset of its compressed data; and, when the build inspected its members, what
each ELF member needs (a member copied into a rebuild takes it from there). It is trusted only
when its own digest matches, the zip's SHA-256 matches it and every member's local header is
where it says; on any doubt the previous zip is not used and every file is deflated.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import IO, BinaryIO, NamedTuple

from reconciler import archive, elfcheck, errors, model, wheelmembers, zipindex

DEFAULT_MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024

OpenEntry = Callable[[model.Entry], AbstractContextManager[archive.ByteReader]]
KnownSha256 = Callable[[model.Entry], str]


def _deflate_bound(size: int) -> int:
    """zlib's compressBound: the most bytes deflating `size` bytes can give."""
    return size + (size >> 12) + (size >> 14) + (size >> 25) + 13


@dataclass
class _Deflated:
    """A worker's result: the member's CRC, SHA-256 and compressed bytes (in memory or in a
    temporary file)."""

    crc: int
    sha256: str
    compressed_size: int
    chunks: list[bytes] = field(default_factory=list)
    spool: IO[bytes] | None = None
    # What the member needs when it is an ELF file and inspection was asked for.
    elf: elfcheck.ElfInfo | elfcheck.BadElf | None = None

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()


class _ElfBytes:
    """The bytes of a member kept while it is read, once its first four show an ELF file,
    so that the binary check needs no second read (inspection is asked for per build)."""

    def __init__(self, inspect: bool) -> None:
        self._state = "head" if inspect else "off"
        self._head = b""
        self._kept: list[bytes] = []

    def feed(self, data: bytes) -> None:
        if self._state == "off" or not data:
            return
        self._kept.append(data)
        if self._state == "head":
            self._head += data[:4 - len(self._head)]
            if len(self._head) == 4:
                self._state = "elf" if elfcheck.is_elf(self._head) else "off"
                if self._state == "off":
                    self._kept = []

    def result(self) -> elfcheck.ElfInfo | elfcheck.BadElf | None:
        """What the member needs, if it is an ELF file."""
        return elfcheck.read_elf(b"".join(self._kept)) if self._state == "elf" else None


def _deflate(entry: model.Entry, *, open_entry: OpenEntry, spooled: bool,
             expected_crc: int | None = None, inspect: bool = False) -> _Deflated:
    """Read, hash and deflate one file exactly as zipfile does (same chunks, same settings);
    with `expected_crc` (a stored wheel member's), refuse bytes that do not have it."""
    compressor = zlib.compressobj(archive.DEFLATE_LEVEL, zlib.DEFLATED, zipindex.WINDOW_BITS)
    digest = hashlib.sha256()
    result = _Deflated(crc=0, sha256="", compressed_size=0)
    if spooled:
        result.spool = tempfile.TemporaryFile()  # noqa: SIM115 -- closed by the writer

    def keep(data: bytes) -> None:
        if not data:
            return
        result.compressed_size += len(data)
        if result.spool is not None:
            result.spool.write(data)
        else:
            result.chunks.append(data)

    elf = _ElfBytes(inspect)
    try:
        copied = 0
        with open_entry(entry) as source:
            while chunk := source.read(archive.CHUNK_BYTES):
                copied += len(chunk)
                # Stop early: a file that keeps growing would otherwise be read without end.
                if copied > entry.size:
                    break
                result.crc = zlib.crc32(chunk, result.crc)
                digest.update(chunk)
                elf.feed(chunk)
                keep(compressor.compress(chunk))
        if copied != entry.size:
            raise archive.size_changed(entry, copied=copied)
        if expected_crc is not None and result.crc != expected_crc:
            raise errors.ContentError(
                f"{entry.arcname}: the wheel's data for it does not match its header "
                "(size or CRC): the wheel is damaged")
        keep(compressor.flush())
    except BaseException:
        result.close()
        raise
    result.sha256 = digest.hexdigest()
    result.elf = elf.result()
    return result


def _copy_raw(entry: model.Entry, raw: wheelmembers.RawMember, *, spooled: bool,
              inspect: bool = False) -> _Deflated:
    """Read a wheel member's compressed bytes, checking them by inflating them: the CRC and
    size its header gives must be those of what they inflate to."""
    result = _Deflated(crc=0, sha256="", compressed_size=0)
    if spooled:
        result.spool = tempfile.TemporaryFile()  # noqa: SIM115 -- closed by the writer
    digest = hashlib.sha256()
    inflater = zlib.decompressobj(zipindex.WINDOW_BITS)
    inflated = 0
    elf = _ElfBytes(inspect)
    try:
        with open(raw.path, "rb") as file:
            position, end = raw.data_offset, raw.data_offset + raw.compressed_size
            while position < end:
                chunk = os.pread(file.fileno(), min(archive.CHUNK_BYTES, end - position),
                                 position)
                if not chunk:
                    raise errors.ContentError(f"{entry.arcname}: its wheel shrank while it "
                                              "was being read")
                position += len(chunk)
                if result.spool is not None:
                    result.spool.write(chunk)
                else:
                    result.chunks.append(chunk)
                # Bounded output per call, so a deflate bomb cannot fill memory.
                data = inflater.decompress(chunk, archive.CHUNK_BYTES)
                while True:
                    inflated += len(data)
                    if inflated > raw.size:
                        break
                    result.crc = zlib.crc32(data, result.crc)
                    digest.update(data)
                    elf.feed(data)
                    if not inflater.unconsumed_tail:
                        break
                    data = inflater.decompress(inflater.unconsumed_tail, archive.CHUNK_BYTES)
                if inflated > raw.size:
                    break
        result.compressed_size = raw.compressed_size
        if (inflated != raw.size or inflated != entry.size or result.crc != raw.crc
                or not inflater.eof or inflater.unused_data):
            raise errors.ContentError(
                f"{entry.arcname}: the wheel's data for it does not match its header "
                "(size or CRC): the wheel is damaged")
    except zlib.error as error:
        result.close()
        raise errors.ContentError(f"{entry.arcname}: the wheel's data for it cannot be "
                                  f"inflated: {error}") from error
    except BaseException:
        result.close()
        raise
    result.sha256 = digest.hexdigest()
    result.elf = elf.result()
    return result


class _CheckedCopies:
    """The writer's copies of wheel members an earlier build checked: their compressed bytes
    as they are, read with pread straight into the zip (no worker, no spool: there is nothing
    to compute), each wheel opened once."""

    def __init__(self) -> None:
        self._files: dict[str, int] = {}

    def copy(self, raw: wheelmembers.RawMember, *, into: zipindex.HashingOutput) -> None:
        descriptor = self._files.get(raw.path)
        if descriptor is None:
            descriptor = self._files[raw.path] = os.open(raw.path, os.O_RDONLY)
        zipindex.copy_bytes(descriptor, raw.data_offset, raw.data_offset + raw.compressed_size,
                            into=into, shrank=f"{raw.name}: its wheel shrank while it was being "
                                              "read")

    def close(self) -> None:
        for descriptor in self._files.values():
            os.close(descriptor)
        self._files.clear()


class _Job(NamedTuple):
    """How one member's data is obtained: a link's text, a copy from the previous zip, a
    wheel member's compressed bytes (`raw`), or a deflate job; a pool job reserves
    `reserved` bytes of the in-flight budget."""

    entry: model.Entry
    link_bytes: bytes | None = None
    copy_from: zipindex.IndexedMember | None = None
    known_sha256: str = ""
    reserved: int = 0
    spooled: bool = False
    raw: wheelmembers.RawMember | None = None


class _InFlight:
    """Bytes reserved for compressed results the writer has not written yet."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.reserved = 0
        self.peak = 0

    def fits(self, size: int) -> bool:
        # With nothing in flight any one job may start, or the build could never go on.
        return self.reserved == 0 or self.reserved + size <= self.limit

    def reserve(self, size: int) -> None:
        self.reserved += size
        self.peak = max(self.peak, self.reserved)

    def release(self, size: int) -> None:
        self.reserved -= size


# Small files are deflated in batches, so that a thread hand-off is paid per batch rather
# than per file (a layer of Python sources holds thousands of files of a few KiB).
_BATCH_INPUT_BYTES = 1024 * 1024
_BATCH_FILES = 256


def _plan_tasks(
    ordered: Sequence[model.Entry],
    *,
    previous: zipindex.PreviousZip | None,
    known_sha256: KnownSha256 | None,
    spool_over: int,
    raw_source: wheelmembers.RawSource | None = None,
) -> list[_Task]:
    """The members in zip order, grouped into tasks: each link or copy alone, consecutive
    small files (to deflate, or wheel members to check) into batches for the pool, each big
    (spooled) file alone."""
    tasks: list[_Task] = []
    batch: list[_Job] = []
    batch_bytes = batch_reserved = 0

    def close_batch() -> None:
        nonlocal batch_bytes, batch_reserved
        if batch:
            tasks.append(_Task(tuple(batch)))
            batch.clear()
        batch_bytes = batch_reserved = 0

    for entry in ordered:
        if archive.needs_zip64(entry.size):
            raise errors.ContentError(f"{entry.arcname} is too large for a layer zip")
        if entry.link_target is not None:
            close_batch()
            tasks.append(_Task((_Job(entry, link_bytes=entry.link_target.encode("utf-8")),)))
            continue
        # A wheel member's own bytes come first: a previous zip's copy of the same file may be
        # another deflate stream, and the zip must depend on the wheels alone.
        raw = raw_source(entry) if raw_source is not None else None
        if raw is not None and raw.deflated and raw.checked:
            close_batch()
            tasks.append(_Task((_Job(entry, raw=raw),)))
            continue
        if raw is not None and raw.deflated and raw.compressed_size > spool_over:
            close_batch()
            tasks.append(_Task((_Job(entry, raw=raw, spooled=True,
                                     reserved=min(raw.compressed_size, archive.CHUNK_BYTES)),)))
            continue
        if raw is None and previous is not None and known_sha256 is not None:
            sha256 = known_sha256(entry)
            old = previous.deflated_member(sha256, arcname=entry.arcname)
            if old is not None and old.size == entry.size:
                close_batch()
                tasks.append(_Task((_Job(entry, copy_from=old, known_sha256=sha256),)))
                continue
        copied = raw is not None and raw.deflated
        bound = raw.compressed_size if raw is not None and copied else \
            _deflate_bound(entry.size)
        if not copied and bound > spool_over:
            close_batch()
            # A spooled job holds one chunk's compressed output in memory at a time.
            reserved = _deflate_bound(min(entry.size, archive.CHUNK_BYTES))
            tasks.append(_Task((_Job(entry, reserved=reserved, spooled=True, raw=raw),)))
            continue
        if batch and (
            batch_bytes + entry.size > _BATCH_INPUT_BYTES
            or len(batch) >= _BATCH_FILES
            or batch_reserved + bound > spool_over
        ):
            close_batch()
        batch.append(_Job(entry, reserved=bound, raw=raw))
        batch_bytes += entry.size
        batch_reserved += bound
    close_batch()
    return tasks


class _Task(NamedTuple):
    """Consecutive members handled together: one deflate batch for the pool, or one member
    the writer handles itself (a link, a copy from the previous zip or a checked wheel
    member's copy)."""

    jobs: tuple[_Job, ...]

    @property
    def deflates(self) -> bool:
        first = self.jobs[0]
        return first.link_bytes is None and first.copy_from is None and not _copies_checked(first)

    @property
    def reserved(self) -> int:
        return sum(job.reserved for job in self.jobs)


def _copies_checked(job: _Job) -> bool:
    """Whether the job copies a wheel member an earlier build checked (the writer's own)."""
    return job.raw is not None and job.raw.deflated and job.raw.checked


def _deflate_batch(jobs: tuple[_Job, ...], *, open_entry: OpenEntry,
                   inspect: bool = False) -> list[_Deflated]:
    results: list[_Deflated] = []
    try:
        for job in jobs:
            if job.raw is not None and job.raw.deflated:
                results.append(_copy_raw(job.entry, job.raw, spooled=job.spooled,
                                         inspect=inspect))
            elif job.raw is not None:
                results.append(_deflate(job.entry, open_entry=functools.partial(
                    wheelmembers.stored_member, job.raw), spooled=job.spooled,
                    expected_crc=job.raw.crc, inspect=inspect))
            else:
                results.append(_deflate(job.entry, open_entry=open_entry,
                                        spooled=job.spooled, inspect=inspect))
    except BaseException:
        for result in results:
            result.close()
        raise
    return results


def write_zip(
    entries: Sequence[model.Entry],
    *,
    out: BinaryIO,
    open_entry: OpenEntry,
    previous: zipindex.PreviousZip | None = None,
    known_sha256: KnownSha256 | None = None,
    workers: int | None = None,
    max_in_flight_bytes: int = DEFAULT_MAX_IN_FLIGHT_BYTES,
    raw_source: wheelmembers.RawSource | None = None,
    inspect: bool = False,
    reached: Callable[[int], None] | None = None,
) -> zipindex.BuiltZip:
    """Write the deterministic zip of `entries` to `out` (a new, empty file): the bytes of
    `archive.write_zip`, deflated by `workers` threads (default: one per CPU). `reached` is
    told, now and then, the offset up to which the bytes are in the file (HashingOutput).

    With `previous` and `known_sha256` (the hex SHA-256 of a file's bytes, from the stat
    cache), a file whose digest the previous zip holds is copied from it, not deflated.
    With `raw_source`, an entry it names a RawMember for (see wheelmembers) has that
    member's compressed bytes, checked, instead of this zlib's (a layer built from wheels).
    With `inspect`, each ELF member the build reads is parsed from those bytes, and a member
    copied from the previous zip takes what its index recorded of it (`BuiltZip.elf_files`;
    None when that index recorded nothing: the previous build did not inspect).
    `open_entry` is called from worker threads. Raises ContentError when a file's size differs
    from its entry's (it changed while being packaged), for NUL characters and duplicates.
    """
    ordered = archive.checked_order(entries)
    tasks = _plan_tasks(
        ordered, previous=previous, known_sha256=known_sha256,
        spool_over=max(max_in_flight_bytes // 4, 1), raw_source=raw_source,
    )
    writer = _Writer(out, previous=previous, inspect=inspect, reached=reached)
    in_flight = _InFlight(max_in_flight_bytes)
    pending: dict[int, Future[list[_Deflated]]] = {}
    pool = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1)
    try:
        next_to_submit = 0
        for position, task in enumerate(tasks):
            # Keep the workers busy ahead of the writer, within the in-flight budget.
            while next_to_submit < len(tasks):
                ahead = tasks[next_to_submit]
                if ahead.deflates:
                    if not in_flight.fits(ahead.reserved):
                        break
                    in_flight.reserve(ahead.reserved)
                    pending[next_to_submit] = pool.submit(
                        _deflate_batch, ahead.jobs, open_entry=open_entry, inspect=inspect
                    )
                next_to_submit += 1
            if not task.deflates:
                writer.write_member(task.jobs[0], None)
                continue
            results = pending.pop(position).result()
            try:
                for job, deflated in zip(task.jobs, results, strict=True):
                    writer.write_member(job, deflated)
            finally:
                for deflated in results:
                    deflated.close()
            in_flight.release(task.reserved)
        writer.finish()
    finally:
        writer.copies.close()
        pool.shutdown(wait=True, cancel_futures=True)
        for future in pending.values():
            if future.done() and not future.cancelled() and future.exception() is None:
                for deflated in future.result():
                    deflated.close()
    return zipindex.BuiltZip(
        sha256=writer.output.digest.digest(),
        code_size=writer.output.offset,
        members=tuple(writer.indexed),
        reused=writer.reused,
        deflated=writer.deflated,
        peak_in_flight_bytes=in_flight.peak,
        elf_files=dict(writer.elf) if inspect and not writer.elf_unknown else None,
        checked=tuple(writer.checked) if inspect else (),
    )


class _Writer:
    """The one writer: members in zip order, then the central directory."""

    def __init__(self, out: BinaryIO, *, previous: zipindex.PreviousZip | None,
                 inspect: bool = False, reached: Callable[[int], None] | None = None) -> None:
        self.output = zipindex.HashingOutput(out, reached=reached)
        self._previous = previous
        self._inspect = inspect
        self.copies = _CheckedCopies()
        self._members: list[archive.ZipMember] = []
        self.indexed: list[zipindex.IndexedMember] = []
        self.reused = 0
        self.deflated = 0
        self.elf: dict[str, elfcheck.ElfInfo | elfcheck.BadElf] = {}
        # A member copied from a previous zip whose index has no ELF facts: `elf` is partial.
        self.elf_unknown = False
        # Wheel members this build inflated and checked: (wheel, member, crc, size, elf).
        self.checked: list[zipindex.CheckedMember] = []
        # The previous zip's bytes [start, end) still to be copied: consecutive members copied
        # whole (local header and data), written in a few large reads when the run ends.
        self._run: tuple[int, int] | None = None

    def _offset(self) -> int:
        """Where the next member starts in the new zip (the pending run included)."""
        pending = self._run[1] - self._run[0] if self._run is not None else 0
        return self.output.offset + pending

    def _flush_run(self) -> None:
        """Copy the pending run of the previous zip's bytes, if any."""
        if self._run is not None and self._previous is not None:
            start, end = self._run
            self._run = None
            self._previous.copy_range(start, end, into=self.output)

    def _copy_whole(self, job: _Job, old: zipindex.IndexedMember, *,
                    previous: zipindex.PreviousZip, compress_type: int,
                    external_attr: int) -> None:
        """A member copied with its local header from the previous zip: the same name, kind of
        compression, CRC and sizes give the same header bytes (the previous zip's headers
        are checked against its index: when it was opened, or, for the head start's worker,
        by its follower before the zip is kept), so consecutive such members are one range
        of the previous zip's bytes."""
        header_size = archive.local_header_size(old.arcname)
        start, end = old.data_offset - header_size, old.data_offset + old.compressed_size
        header_offset = self._offset()
        if self._run is not None and self._run[1] == start:
            self._run = (self._run[0], end)
        else:
            self._flush_run()
            self._run = (start, end)
        self._note_copied(old, arcname=old.arcname, previous=previous)
        self._add(archive.ZipMember(
            arcname=old.arcname, compress_type=compress_type, external_attr=external_attr,
            crc=old.crc, compressed_size=old.compressed_size, size=old.size,
            header_offset=header_offset,
        ), entry=job.entry, sha256=old.sha256, data_offset=header_offset + header_size)

    def _add(self, member: archive.ZipMember, *, entry: model.Entry, sha256: str,
             data_offset: int) -> None:
        """Note a member written (or to be copied) for the central directory and the index."""
        self._members.append(member)
        self.indexed.append(
            zipindex.IndexedMember(
                arcname=member.arcname, kind=archive.entry_kind(entry), sha256=sha256,
                crc=member.crc, compress_type=member.compress_type,
                compressed_size=member.compressed_size, size=member.size,
                data_offset=data_offset,
            )
        )

    def _note_copied(self, old: zipindex.IndexedMember, *, arcname: str,
                     previous: zipindex.PreviousZip) -> None:
        """Count a member copied from the previous zip, and take what its index recorded it
        needs: its bytes are those of the previous zip's member (the same SHA-256), and so is
        what it needs, when the build that wrote that zip read it."""
        self.reused += 1
        known, elf = previous.elf_of(old)
        self.elf_unknown = self.elf_unknown or not known
        if elf is not None:
            self.elf[arcname] = elf

    def write_member(self, job: _Job, deflated: _Deflated | None) -> None:
        """Write one member: its local header, then its data from where the job says."""
        compress_type, external_attr = archive.member_format(job.entry)
        old, previous = job.copy_from, self._previous
        if (old is not None and previous is not None and old.arcname == job.entry.arcname
                and old.compress_type == compress_type and old.size == job.entry.size):
            self._copy_whole(job, old, previous=previous, compress_type=compress_type,
                             external_attr=external_attr)
            return
        self._flush_run()
        if job.link_bytes is not None:
            crc, compressed_size = zlib.crc32(job.link_bytes), len(job.link_bytes)
            sha256 = hashlib.sha256(job.link_bytes).hexdigest()
        elif job.copy_from is not None:
            crc, compressed_size = job.copy_from.crc, job.copy_from.compressed_size
            sha256 = job.known_sha256
        elif job.raw is not None and _copies_checked(job):
            # Its bytes' SHA-256 is not known ("" in the index): a built layer's zip is never
            # the base of an incremental rebuild, which is what the index's digests serve.
            crc, compressed_size, sha256 = job.raw.crc, job.raw.compressed_size, ""
        elif deflated is not None:
            crc, compressed_size, sha256 = (
                deflated.crc, deflated.compressed_size, deflated.sha256
            )
        else:
            raise AssertionError("a deflate job reached the writer without its result")
        member = archive.ZipMember(
            arcname=job.entry.arcname, compress_type=compress_type, external_attr=external_attr,
            crc=crc, compressed_size=compressed_size, size=job.entry.size,
            header_offset=self.output.offset,
        )
        self.output.write(archive.local_header(member))
        data_offset = self.output.offset
        if job.link_bytes is not None:
            self.output.write(job.link_bytes)
        elif job.copy_from is not None and self._previous is not None:
            # (Another name for the same bytes: the data alone, after this member's header.)
            self._previous.copy_data(job.copy_from, into=self.output)
            self._note_copied(job.copy_from, arcname=member.arcname, previous=self._previous)
        elif job.raw is not None and _copies_checked(job):
            self.copies.copy(job.raw, into=self.output)
            self.deflated += 1
            if self._inspect and job.raw.elf is not None:
                self.elf[member.arcname] = job.raw.elf
        elif deflated is not None:
            _write_deflated(deflated, into=self.output)
            self.deflated += 1
            if deflated.elf is not None:
                self.elf[member.arcname] = deflated.elf
            raw = job.raw
            if raw is not None and raw.deflated and not raw.checked:
                self.checked.append(zipindex.CheckedMember(
                    wheel=raw.path, name=raw.name, crc=deflated.crc, size=raw.size,
                    elf=deflated.elf))
        self._add(member, entry=job.entry, sha256=sha256, data_offset=data_offset)

    def finish(self) -> None:
        self._flush_run()
        self.output.write(archive.central_directory(self._members, offset=self.output.offset))


def _write_deflated(deflated: _Deflated, *, into: zipindex.HashingOutput) -> None:
    if deflated.spool is None:
        for chunk in deflated.chunks:
            into.write(chunk)
        return
    deflated.spool.seek(0)
    while chunk := deflated.spool.read(archive.CHUNK_BYTES):
        into.write(chunk)
