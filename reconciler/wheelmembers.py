"""The members of a built layer's wheels, read by their offsets: where each deflated or stored
member's data starts in its wheel and what the wheel's central directory says of it
(RawMember), found once per wheel (`raw_members`), and handed to `zipbuild.write_zip` by entry
(`wheel_source`, a RawSource). Shell: it opens the wheels; checking the bytes against their
CRC and size is `zipbuild`'s, when it copies them.
"""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reconciler import elfcheck, errors, model


@dataclass(frozen=True)
class RawMember:
    """A member of another zip (a wheel) that a build reads by its offsets: the file, where
    the member's data starts in it, and what its central directory says. A `deflated`
    member's compressed bytes are copied; a stored one is deflated as any file (both checked
    against the CRC). Read with pread, so any thread may read any member."""

    path: str
    data_offset: int
    compressed_size: int
    crc: int
    size: int
    deflated: bool = True
    name: str = ""
    # Checked by an earlier build (the wheel cache's facts, for this CRC and size): its
    # bytes are copied without inflating them, and `elf` is what an ELF member needs.
    checked: bool = False
    elf: elfcheck.ElfInfo | elfcheck.BadElf | None = None


RawSource = Callable[[model.Entry], "RawMember | None"]


def raw_members(zip_path: str) -> dict[str, RawMember]:
    """The deflated or stored, unencrypted members of the zip at `zip_path` by name, each
    with the offset of its data (read from its local header, whose name and extra lengths may
    differ from the central directory's). Raises ContentError for a zip whose headers do not
    add up."""
    # (Imported here: a folder layer's build imports this module, and never reads a wheel.)
    from reconciler.builds import wheels

    found: dict[str, RawMember] = {}
    infos = wheels.central_directory(zip_path)
    with open(zip_path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        for info in infos:
            if info.compress_type not in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED) \
                    or info.flag_bits & 0x1:
                continue
            header = os.pread(file.fileno(), _LOCAL_HEADER_SIZE, info.header_offset)
            if len(header) != _LOCAL_HEADER_SIZE or header[:4] != b"PK\x03\x04":
                raise errors.ContentError(
                    f"{os.path.basename(zip_path)}: {info.filename} has no local header "
                    "where its central directory says")
            name_length, extra_length = struct.unpack("<2H", header[26:30])
            data_offset = info.header_offset + _LOCAL_HEADER_SIZE + name_length + extra_length
            if data_offset + info.compress_size > size:
                raise errors.ContentError(
                    f"{os.path.basename(zip_path)}: {info.filename} runs past the end of "
                    "the file")
            found[info.filename] = RawMember(
                path=zip_path, data_offset=data_offset, compressed_size=info.compress_size,
                crc=info.CRC, size=info.file_size,
                deflated=info.compress_type == zipfile.ZIP_DEFLATED, name=info.filename)
    return found


_LOCAL_HEADER_SIZE = 30


def wheel_source(entries: Sequence[model.Entry], *,
                 known: Callable[[RawMember], RawMember] | None = None) -> RawSource:
    """The RawSource of a layer built from wheels (entries `<wheel>\\0<member>`): each
    member by its wheel's offsets, as `known` (what earlier builds checked) adjusts it."""
    members: dict[str, dict[str, RawMember]] = {}
    for entry in entries:
        wheel, separator, _ = entry.source.partition("\0")
        if separator and wheel not in members:
            found = raw_members(wheel)
            members[wheel] = found if known is None else {
                name: known(raw) for name, raw in found.items()}

    def raw_source(entry: model.Entry) -> RawMember | None:
        wheel, separator, member = entry.source.partition("\0")
        return members[wheel].get(member) if separator else None

    return raw_source


class _StoredReader:
    """A stored member's bytes, read with pread from its own file handle."""

    def __init__(self, raw: RawMember) -> None:
        self._file = open(raw.path, "rb")  # noqa: SIM115 -- closed by __exit__
        self._position = raw.data_offset
        self._end = raw.data_offset + raw.compressed_size

    def __enter__(self) -> _StoredReader:
        return self

    def __exit__(self, *_: object) -> None:
        self._file.close()

    def read(self, size: int = -1, /) -> bytes:
        left = self._end - self._position
        wanted = left if size < 0 else min(size, left)
        data = os.pread(self._file.fileno(), wanted, self._position) if wanted > 0 else b""
        self._position += len(data)
        return data


def stored_member(raw: RawMember, _: model.Entry) -> _StoredReader:
    """An OpenEntry for one stored wheel member."""
    return _StoredReader(raw)
