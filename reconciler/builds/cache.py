"""The wheel cache: wheel files stored by their SHA-256, shared by every run on the machine
(RECONCILE_CACHE_DIR, default ~/.cache/reconcile).

Shell: it owns the cache folder and nothing else. A wheel is verified on every use (a file
whose bytes no longer hash to its name is removed and reported missing), and stored through a
temp file and a rename, so two runs storing or reading the same wheel at once each see a whole
file or none.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from reconciler import errors
from reconciler.content import common

ENVIRONMENT_VARIABLE = "RECONCILE_CACHE_DIR"


def default_root(environ: Mapping[str, str]) -> Path:
    """RECONCILE_CACHE_DIR, else ~/.cache/reconcile."""
    configured = environ.get(ENVIRONMENT_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "reconcile"


class WheelCache:
    """Wheels under `<root>/wheels/sha256/<first two hex digits>/<sha256>.whl`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        _check_digest(sha256)
        return self.root / "wheels" / "sha256" / sha256[:2] / f"{sha256}.whl"

    def get(self, sha256: str) -> Path | None:
        """The cached wheel with this SHA-256, verified now; None when absent or damaged (a
        damaged file is removed, so the next run fetches it again)."""
        path = self.path_for(sha256)
        try:
            with path.open("rb") as file:
                actual = _sha256_of(file)
        except FileNotFoundError:
            return None
        if actual != sha256:
            common.remove_quietly(path)
            return None
        return path

    def put_stream(self, source: BinaryIO, *, sha256: str, label: str) -> Path:
        """Store the bytes read from `source` as the wheel `sha256`; refuses (naming both
        digests, storing nothing) when they hash to anything else."""
        path = self.path_for(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{sha256[:16]}.",
                                                 suffix=".tmp")
        try:
            digest = hashlib.sha256()
            with os.fdopen(descriptor, "wb") as temp_file:
                while chunk := source.read(common.CHUNK_BYTES):
                    digest.update(chunk)
                    temp_file.write(chunk)
            if digest.hexdigest() != sha256:
                raise errors.ContentError(
                    f"{label}: the downloaded wheel has SHA-256 {digest.hexdigest()}, but the "
                    f"lock says {sha256}", hint="the index served another file than the one "
                                                "locked: check the index, or lock again")
            # Another run may have stored the same wheel meanwhile: the rename replaces equal
            # bytes with equal bytes.
            os.replace(temp_name, path)
        except BaseException:
            common.remove_quietly(temp_name)
            raise
        return path

    def put_file(self, source: Path, *, sha256: str, label: str) -> Path:
        """Store a copy of the wheel file at `source` (a find_links file) as `sha256`."""
        with source.open("rb") as file:
            return self.put_stream(file, sha256=sha256, label=label)


def _sha256_of(file: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := file.read(common.CHUNK_BYTES):
        digest.update(chunk)
    return digest.hexdigest()


def _check_digest(sha256: str) -> None:
    # The digest names a file: anything but 64 hex digits could name a path elsewhere.
    if len(sha256) != 64 or any(char not in "0123456789abcdef" for char in sha256):
        raise ValueError(f"not a lowercase hex SHA-256: {sha256!r}")

