"""The streamed JSON body of a direct upload: PublishLayerVersion's request, with the zip's
bytes base64-encoded, never whole in this process's memory: encoded once, piece by piece, into
an unnamed temporary file (in TMPDIR: where that is a tmpfs, the file is memory too) that the
request is then read from (`EncodedZip`). One encoding serves every request that sends the
same zip (a fleet's regions), each read at its own position.

An encoding can also be made ahead, into a temporary file the run opened, by the head start's
worker once it has written a zip (`encode_range`, in two processes, a half each), then taken up
by the run (`EncodedZip.adopted`) and offered to the upload of that zip (`offer`, `take`).

It owns only the byte layout (a prefix, the base64 of a file, a suffix) and the file-like
reading of it; it knows nothing of botocore or Lambda (`aws` splices it into the request).
"""

from __future__ import annotations

import base64
import io
import os
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

# Bytes of the zip encoded per piece: a multiple of 3, so that the pieces' base64 joins into
# the base64 of the whole (no padding in the middle).
_ENCODE_BYTES = 3 * 1024 * 1024


def _identity(found: os.stat_result) -> tuple[int, int, int, int]:
    return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns


def encoded_length(size: int) -> int:
    """The length of the base64 of `size` bytes."""
    return 4 * ((size + 2) // 3)


def encode_range(source: int, start: int, end: int, *, into: int) -> int:
    """Write the base64 of bytes `start` to `end` of the open file `source` into the open file
    `into`, where the base64 of the whole file has them (`start` a multiple of 3, and so is
    `end` unless it is the file's end); the count of bytes written. Files are read and written
    by offset (pread, pwrite): two processes can encode two ranges of one file at once."""
    if start % 3:
        raise ValueError("a range starts at a multiple of 3")
    at, written = start, encoded_length(start)
    while at < end:
        piece = os.pread(source, min(_ENCODE_BYTES, end - at), at)
        if not piece or (len(piece) % 3 and at + len(piece) < end):
            raise OSError("the file ended before the range did")
        encoded = base64.b64encode(piece)
        done = 0
        while done < len(encoded):
            done += os.pwrite(into, encoded[done:], written + done)
        at += len(piece)
        written += len(encoded)
    return written - encoded_length(start)


class EncodedZip:
    """The base64 of one file, encoded once into an unnamed temporary file (gone with the
    process, whatever ends it) that any number of bodies read at once, each by offset.

    A file that is not the size it had when it was opened once it is read (it changed
    meanwhile) is an OSError, and no temporary file is left open."""

    _identity: tuple[int, int, int, int] | None

    def __init__(self, path: Path) -> None:
        self._spool: BinaryIO = tempfile.TemporaryFile()  # noqa: SIM115 -- closed by close()
        try:
            with path.open("rb") as source:
                opened = os.fstat(source.fileno())
                try:
                    encode_range(source.fileno(), 0, opened.st_size,
                                 into=self._spool.fileno())
                    grown = bool(os.pread(source.fileno(), 1, opened.st_size))
                except OSError:  # it ended before its size
                    grown = True
                if grown:
                    raise OSError(f"{path} changed while it was read for the upload")
        except BaseException:
            self._spool.close()
            raise
        self.length = encoded_length(opened.st_size)
        self._identity = _identity(opened)

    @classmethod
    def adopted(cls, spool: BinaryIO, *, path: Path, size: int, inode: int,
                mtime_ns: int) -> EncodedZip | None:
        """The encoding already in `spool` (written by encode_range) of the zip now at
        `path`, which must be the file that was encoded: its inode, size (`size` bytes) and
        mtime (which a rename keeps); None otherwise (`spool` is then closed)."""
        try:
            found = os.stat(path)
        except OSError:
            found = None
        if found is None or (found.st_ino, found.st_size, found.st_mtime_ns) != (
                inode, size, mtime_ns):
            spool.close()
            return None
        encoded = cls.__new__(cls)
        encoded._spool = spool
        encoded.length = encoded_length(size)
        encoded._identity = _identity(found)
        return encoded

    def encodes(self, path: Path) -> bool:
        """Whether the file at `path` is still the one encoded (device, inode, size, mtime)."""
        try:
            return _identity(os.stat(path)) == self._identity
        except OSError:
            return False

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes of the base64 from `offset` (from any thread)."""
        return os.pread(self._spool.fileno(), size, offset)

    def close(self) -> None:
        """Close (and so remove) the temporary file."""
        self._spool.close()


# Encodings made ahead, by the absolute path of the zip each encodes, until an upload of that
# zip takes it (`take`).
_OFFERED: dict[str, EncodedZip] = {}
_OFFERED_LOCK = threading.Lock()


def offer(path: Path, encoded: EncodedZip) -> None:
    """Offer `encoded`, an encoding of the zip at `path`, to the next upload of that zip
    (one offered before for the same path is closed)."""
    with _OFFERED_LOCK:
        earlier = _OFFERED.pop(os.path.abspath(path), None)
        _OFFERED[os.path.abspath(path)] = encoded
    if earlier is not None:
        earlier.close()


def take(path: Path) -> EncodedZip | None:
    """The encoding offered for the zip at `path` (no longer offered), if it still encodes
    that file; None otherwise (a stale one is closed)."""
    with _OFFERED_LOCK:
        found = _OFFERED.pop(os.path.abspath(path), None)
    if found is not None and not found.encodes(path):
        found.close()
        return None
    return found


class Base64JsonBody(io.RawIOBase):
    """A seekable, read-only file of `prefix + base64(file) + suffix`.

    botocore reads it twice: once in chunks for the SigV4 payload hash (then seeks back),
    once to send it. The base64 is the `encoded` one given (shared with other bodies, which
    read it at their own positions), or, given `path`, one this body encodes and owns; both
    reads are plain reads of the encoding (encoding on each read cost ~0.1 s per 40 MB zip,
    twice). Its length is known up front (`len()`), for Content-Length.
    """

    def __init__(self, *, prefix: bytes, suffix: bytes, path: Path | None = None,
                 encoded: EncodedZip | None = None) -> None:
        super().__init__()
        self._owned: EncodedZip | None = None
        if path is not None and encoded is None:
            self._owned = encoded = EncodedZip(path)
        elif encoded is None or path is not None:
            raise ValueError("a body is given a path or an encoding, one of the two")
        self._encoded = encoded
        self._prefix, self._suffix = prefix, suffix
        self._length = len(prefix) + self._encoded.length + len(suffix)
        self._position = 0

    def __len__(self) -> int:
        return self._length

    def __enter__(self) -> Base64JsonBody:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the encoding too when this body owns it."""
        if self._owned is not None:
            self._owned.close()
        super().close()

    def readable(self) -> bool:
        """Always readable."""
        return True

    def seekable(self) -> bool:
        """Always seekable (the payload hash seeks back to the start)."""
        return True

    def tell(self) -> int:
        """The position in the body."""
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move to `offset` (from the start, the position or the end)."""
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._length}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        """Fill `buffer` from the position on; 0 at the end."""
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def read(self, size: int | None = -1, /) -> bytes:
        """Up to `size` bytes from the position (all the rest for -1 or None)."""
        if size is None or size < 0:
            size = self._length - self._position
        pieces: list[bytes] = []
        wanted = min(size, self._length - self._position)
        while wanted > 0:
            piece = self._piece_at(self._position, limit=wanted)
            if not piece:
                raise OSError("the encoded upload ended early")
            pieces.append(piece)
            self._position += len(piece)
            wanted -= len(piece)
        return b"".join(pieces)

    def _piece_at(self, position: int, *, limit: int) -> bytes:
        """The bytes from `position` on, at most `limit`, from one part of the body."""
        start_encoded = len(self._prefix)
        end_encoded = start_encoded + self._encoded.length
        if position < start_encoded:
            return self._prefix[position:position + limit]
        if position >= end_encoded:
            offset = position - end_encoded
            return self._suffix[offset:offset + limit]
        return self._encoded.read_at(position - start_encoded,
                                     min(limit, end_encoded - position))
