"""What a zip's members may be, read without trusting the zip: their names (as Info-ZIP's unzip
reads them: UTF-8 when flagged, else the Unicode Path extra field, else CP437), their headers
(no encryption, a known method), their links (resolving inside the zip, within MAX_LINK_HOPS)
and their data (inflating, bounded, to exactly the declared size and CRC-32). Pure: bytes and
zipfile.ZipInfo in, problems out; the writing side, and the deterministic format, is archive's."""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass

from reconciler import archive, errors

_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")


# General-purpose flag bits and the extra field of prebuilt zips that the checks read.
FLAG_ENCRYPTED = 0x1


FLAG_UTF8 = 0x800


UNICODE_PATH_EXTRA_ID = 0x7075


# The methods Lambda's extraction and the tool's own bounded inflate both handle.
ALLOWED_COMPRESSION: Mapping[int, str] = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
}


# As Linux's MAXSYMLINKS: more hops than this is a loop to the kernel too.
MAX_LINK_HOPS = 40


def check_member_names(names: Sequence[str]) -> list[str]:
    """Zip-slip rules for a prebuilt zip: one message per unsafe member; empty means safe.

    Unsafe: an absolute path (leading `/` or a drive letter), a `..` component (with `/` or
    `\\` separators), or a name that appears twice once `\\` is read as `/`.
    """
    problems: list[str] = []
    seen: set[str] = set()
    for name in names:
        normalised = name.replace("\\", "/")
        if normalised.startswith("/") or _DRIVE_LETTER.match(normalised):
            problems.append(f"{name!r} is an absolute path")
        if ".." in normalised.split("/"):
            problems.append(f"{name!r} has a '..' component that escapes the layer folder")
        if normalised in seen:
            problems.append(f"{name!r} appears more than once")
        seen.add(normalised)
    return problems


def raw_member_name(info: zipfile.ZipInfo) -> bytes:
    """The bytes of a member's name as the zip stores them (zipfile decoded them as UTF-8 when
    the UTF-8 flag is set, else as cp437, which maps every byte and so round-trips)."""
    encoding = "utf-8" if info.flag_bits & FLAG_UTF8 else "cp437"
    return info.orig_filename.encode(encoding)


def _unicode_path_field(extra: bytes, *, raw_name: bytes) -> str | None:
    """The name in an Info-ZIP Unicode Path extra field (0x7075) that vouches for `raw_name`:
    version 1, the CRC-32 of the raw name bytes, then the UTF-8 name. None when absent, of
    another version, stale (its CRC is of another name) or not UTF-8."""
    offset = 0
    while offset + 4 <= len(extra):
        field_id, size = struct.unpack_from("<HH", extra, offset)
        data = extra[offset + 4:offset + 4 + size]
        offset += 4 + size
        if field_id != UNICODE_PATH_EXTRA_ID or len(data) < 5 or data[0] != 1:
            continue
        (name_crc,) = struct.unpack_from("<I", data, 1)
        if name_crc != zlib.crc32(raw_name):
            return None
        try:
            return data[5:].decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def member_name(info: zipfile.ZipInfo) -> str | None:
    """A prebuilt zip member's name as unzip reads it (see the module doc), or None when it can
    be read only by guessing a code page."""
    if info.flag_bits & FLAG_UTF8:
        return info.orig_filename
    raw_name = raw_member_name(info)
    unicode_path = _unicode_path_field(info.extra, raw_name=raw_name)
    if unicode_path is not None:
        return unicode_path
    try:
        return raw_name.decode("utf-8")
    except UnicodeDecodeError:
        return None


def member_header_problems(info: zipfile.ZipInfo, *, name: str) -> list[str]:
    """What the central directory alone says is wrong with one member: encryption, a
    compression method other than stored or deflate, a NUL in its name."""
    problems: list[str] = []
    if "\0" in name:
        problems.append(f"{name!r} has a NUL character in its name")
    if info.flag_bits & FLAG_ENCRYPTED:
        problems.append(f"{name!r} is encrypted, and Lambda cannot extract an encrypted member")
    if info.compress_type not in ALLOWED_COMPRESSION:
        problems.append(
            f"{name!r} uses compression method {info.compress_type}; only stored (0) and "
            "deflate (8) are accepted"
        )
    return problems


@dataclass(frozen=True)
class ZipTree:
    """The paths a zip extracts to: files, folders (explicit or implied by a member's path)
    and symlinks with their link text. Paths are relative, `/`-separated, without `.` parts."""

    files: Set[str]
    folders: Set[str]
    links: Mapping[str, str]


def link_problem(link: str, *, tree: ZipTree) -> str | None:
    """Why the symlink member `link` would not resolve inside the extracted tree, or None.

    The link text is resolved component by component from the link's folder, as the kernel
    does: another link met on the way is followed, and `..` climbs the folders actually
    reached (so `a/..` through a link `a` to `x/y` lands in `x`). The answer names the first
    failure: an empty or absolute text, leaving the tree, a missing path, a loop.
    """
    text = tree.links[link]
    if not text:
        return "has an empty target"
    resolved = link.split("/")[:-1]
    pending = text.split("/")
    hops = 0
    if _is_absolute(text):
        return f"has the absolute target {text!r}, which would not resolve inside Lambda's /opt"
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                return f"points outside the zip ({text!r})"
            resolved.pop()
            continue
        candidate = "/".join([*resolved, part])
        next_text = tree.links.get(candidate)
        if next_text is not None:
            hops += 1
            if hops > MAX_LINK_HOPS:
                return f"is part of a symlink loop ({text!r})"
            if not next_text or _is_absolute(next_text):
                return f"leads through {candidate!r}, whose target {next_text!r} is not in the zip"
            pending[:0] = next_text.split("/")
            continue
        if candidate in tree.folders:
            resolved.append(part)
            continue
        # A file ends the path: anything after it (even `.`) treats it as a folder.
        if candidate in tree.files and not any(pending):
            resolved.append(part)
            continue
        return f"is broken (its target {text!r} is not in the zip)"
    return None


def _is_absolute(text: str) -> bool:
    normalised = text.replace("\\", "/")
    return normalised.startswith("/") or bool(_DRIVE_LETTER.match(normalised))


def check_member_data(
    raw: archive.ByteReader,
    *,
    name: str,
    info: zipfile.ZipInfo,
    sink: Callable[[bytes], None] | None = None,
) -> None:
    """Read one member's compressed bytes from `raw` (positioned at its data) and check that
    they inflate to exactly the declared size with the declared CRC-32, handing the data to
    `sink`. Inflating is bounded: it stops one byte past the declared size, so a member that
    lies about its size costs no more than the size it declares. Raises ContentError.
    """
    declared_size = info.file_size
    compressed_left = info.compress_size
    deflated = info.compress_type == zipfile.ZIP_DEFLATED
    inflater = zlib.decompressobj(-zlib.MAX_WBITS) if deflated else None
    produced = 0
    running_crc = 0
    pending = b""
    finished = False
    while not finished:
        if not pending:
            if compressed_left == 0:
                break
            pending = raw.read(min(archive.CHUNK_BYTES, compressed_left))
            if not pending:
                raise errors.ContentError(f"{name!r}: the zip ends inside this member's data")
            compressed_left -= len(pending)
        if inflater is None:
            data, pending = pending, b""
        else:
            data = inflater.decompress(pending, declared_size - produced + 1)
            pending = inflater.unconsumed_tail
            if inflater.eof:
                finished = True
                if pending or inflater.unused_data or compressed_left:
                    raise errors.ContentError(
                        f"{name!r}: its declared compressed size ({info.compress_size}) is "
                        "larger than its compressed data"
                    )
        produced += len(data)
        if produced > declared_size:
            raise errors.ContentError(
                f"{name!r} holds more data than its declared size ({declared_size} bytes)"
            )
        running_crc = zlib.crc32(data, running_crc)
        if sink is not None:
            sink(data)
    if inflater is not None and not inflater.eof:
        raise errors.ContentError(
            f"{name!r}: its compressed data ends before the end of its deflate stream"
        )
    if produced != declared_size:
        raise errors.ContentError(
            f"{name!r} holds {produced} bytes, not its declared size ({declared_size} bytes)"
        )
    if running_crc != info.CRC:
        raise errors.ContentError(f"{name!r}: its data does not match its CRC-32")
