"""The streamed JSON body of a direct upload: PublishLayerVersion's request, with the zip's
bytes base64-encoded, never whole in this process's memory: encoded once, piece by piece, into
an unnamed temporary file (in TMPDIR: where that is a tmpfs, the file is memory too) that the
request is then read from.

It owns only the byte layout (a prefix, the base64 of a file, a suffix) and the file-like
reading of it; it knows nothing of botocore or Lambda (`aws` splices it into the request).
"""

from __future__ import annotations

import base64
import io
import os
import tempfile
from pathlib import Path
from types import TracebackType

# Bytes of the zip encoded per piece: a multiple of 3, so that the pieces' base64 joins into
# the base64 of the whole (no padding in the middle).
_ENCODE_BYTES = 3 * 1024 * 1024


class Base64JsonBody(io.RawIOBase):
    """A seekable, read-only file of `prefix + base64(file) + suffix`.

    botocore reads it twice: once in chunks for the SigV4 payload hash (then seeks back),
    once to send it. The base64 is computed once, when it is made, into an unnamed temporary
    file (gone with the process, whatever ends it); both reads are plain reads of that file
    (encoding on each read cost ~0.1 s per 40 MB zip, twice). Its length is known up front
    (`len()`), for Content-Length. A file that is not the size it had when it was opened
    once it is read (it changed meanwhile) is an OSError, before anything is sent.
    """

    def __init__(self, *, prefix: bytes, path: Path, suffix: bytes) -> None:
        super().__init__()
        self._spool = tempfile.TemporaryFile()  # noqa: SIM115 -- closed by close()
        try:
            with path.open("rb") as source:
                size = os.fstat(source.fileno()).st_size
                self._spool.write(prefix)
                read = 0
                while piece := source.read(_ENCODE_BYTES):
                    read += len(piece)
                    self._spool.write(base64.b64encode(piece))
                if read != size:
                    raise OSError(f"{path} changed while it was read for the upload")
            self._spool.write(suffix)
            self._length = self._spool.tell()
            self._spool.seek(0)
        except BaseException:
            self._spool.close()
            raise

    def __len__(self) -> int:
        return self._length

    def __enter__(self) -> Base64JsonBody:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close (and so remove) the temporary file too."""
        self._spool.close()
        super().close()

    def readable(self) -> bool:
        """Always readable."""
        return True

    def seekable(self) -> bool:
        """Always seekable (the payload hash seeks back to the start)."""
        return True

    def tell(self) -> int:
        """The position in the body."""
        return self._spool.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move to `offset` (from the start, the position or the end)."""
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._spool.tell(),
                os.SEEK_END: self._length}[whence]
        return self._spool.seek(max(0, base + offset))

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        """Fill `buffer` from the position on; 0 at the end."""
        return self._spool.readinto(buffer)

    def read(self, size: int | None = -1, /) -> bytes:
        """Up to `size` bytes from the position (all the rest for -1 or None)."""
        return self._spool.read(-1 if size is None else size)
