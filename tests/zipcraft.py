"""Test helper: writes zip files byte by byte, so that tests can make the zips other tools make
(Info-ZIP's UTF-8 names without the UTF-8 flag, its Unicode Path extra field) and the zips an
attacker makes (encrypted flags, unknown methods, sizes and CRCs that lie), which Python's
zipfile refuses to write. Not part of the package; no reconciler import.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

STORED = 0
DEFLATED = 8
BZIP2 = 12
FLAG_ENCRYPTED = 0x1
FLAG_UTF8 = 0x800
FILE_MODE = 0o100644
LINK_MODE = 0o120777
DIR_MODE = 0o040755
_DOS_DATE_1980 = 0x21  # 1980-01-01


@dataclass(frozen=True)
class Member:
    """One member as it is to be written; None fields take the honest value."""

    name: str | bytes  # str: written as UTF-8 bytes; bytes: written as they are
    data: bytes = b""
    mode: int = FILE_MODE
    method: int = DEFLATED
    flags: int = 0
    unicode_path: str | None = None  # an Info-ZIP 0x7075 field with this UTF-8 name
    unicode_path_crc_of: bytes | None = None  # the CRC's input, when it should be stale
    declared_size: int | None = None
    declared_crc: int | None = None


def unicode_path_extra(name: str, *, raw_name: bytes) -> bytes:
    """Info-ZIP's Unicode Path extra field: id 0x7075, version 1, CRC-32 of the raw name."""
    body = b"\x01" + struct.pack("<I", zlib.crc32(raw_name)) + name.encode("utf-8")
    return struct.pack("<HH", 0x7075, len(body)) + body


def _compressed(member: Member) -> bytes:
    if member.method == DEFLATED:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        return compressor.compress(member.data) + compressor.flush()
    return member.data  # stored, or a method the tests only declare


def write(path: Path, members: list[Member]) -> Path:
    """Write `members` as a zip at `path` (local headers, central directory, end record)."""
    body = bytearray()
    central = bytearray()
    for member in members:
        raw_name = member.name if isinstance(member.name, bytes) else member.name.encode()
        extra = b""
        if member.unicode_path is not None:
            extra = unicode_path_extra(member.unicode_path,
                                       raw_name=member.unicode_path_crc_of or raw_name)
        data = _compressed(member)
        crc = zlib.crc32(member.data) if member.declared_crc is None else member.declared_crc
        size = len(member.data) if member.declared_size is None else member.declared_size
        offset = len(body)
        body += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, member.flags, member.method, 0,
                            _DOS_DATE_1980, crc, len(data), size, len(raw_name), len(extra))
        body += raw_name + extra + data
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", (3 << 8) | 20, 20,
                               member.flags, member.method, 0, _DOS_DATE_1980, crc, len(data),
                               size, len(raw_name), len(extra), 0, 0, 0, member.mode << 16,
                               offset)
        central += raw_name + extra
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members),
                      len(central), len(body), 0)
    path.write_bytes(bytes(body + central + end))
    return path
