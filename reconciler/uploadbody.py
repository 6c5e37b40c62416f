"""The streamed JSON body of a direct upload: PublishLayerVersion's request, with the zip's
bytes base64-encoded piece by piece from the file on disk, never whole in memory.

It owns only the byte layout (a prefix, the base64 of a file, a suffix) and the file-like
reading of it; it knows nothing of botocore or Lambda (`aws` splices it into the request).
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from types import TracebackType

# Bytes of the zip encoded per read: a multiple of 3, so that the pieces' base64 joins into
# the base64 of the whole (no padding in the middle).
_ENCODE_BYTES = 3 * 256 * 1024


def base64_length(size: int) -> int:
    """The length of the padded base64 of `size` bytes."""
    return 4 * ((size + 2) // 3)


class Base64JsonBody(io.RawIOBase):
    """A seekable, read-only file of `prefix + base64(file) + suffix`.

    botocore reads it twice: once in chunks for the SigV4 payload hash (then seeks back),
    once to send it. Its length is known up front (`len()`), for Content-Length. Reading
    holds at most one piece of the file (about 1 MiB of base64) at a time.
    """

    def __init__(self, *, prefix: bytes, path: Path, suffix: bytes) -> None:
        super().__init__()
        self._prefix, self._suffix = prefix, suffix
        self._file = path.open("rb")
        self._size = os.fstat(self._file.fileno()).st_size
        self._encoded = base64_length(self._size)
        self._length = len(prefix) + self._encoded + len(suffix)
        self._position = 0

    def __len__(self) -> int:
        return self._length

    def __enter__(self) -> Base64JsonBody:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the zip file too."""
        self._file.close()
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
                raise OSError(f"{self._file.name} got shorter while it was uploaded")
            pieces.append(piece)
            self._position += len(piece)
            wanted -= len(piece)
        return b"".join(pieces)

    def _piece_at(self, position: int, *, limit: int) -> bytes:
        """The bytes from `position` on, at most `limit`, from one part of the body."""
        start_encoded = len(self._prefix)
        end_encoded = start_encoded + self._encoded
        if position < start_encoded:
            return self._prefix[position:position + limit]
        if position >= end_encoded:
            offset = position - end_encoded
            return self._suffix[offset:offset + limit]
        into = position - start_encoded
        # Base64 maps each 3 input bytes to 4 output bytes: start at the group `into` is in.
        group = into // 4
        self._file.seek(group * 3)
        raw = self._file.read(min(_ENCODE_BYTES, 3 * ((limit + (into % 4) + 3) // 4)))
        encoded = base64.b64encode(raw)
        return encoded[into % 4:into % 4 + limit]
