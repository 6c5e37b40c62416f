"""The wheel cache: wheel files stored by their SHA-256, shared by every run on the machine
(RECONCILE_CACHE_DIR, default ~/.cache/reconcile).

Shell: it owns the cache folder and nothing else. A wheel is verified on every use (a file
whose bytes no longer hash to its name is removed and reported missing), and stored through a
temp file and a rename, so two runs storing or reading the same wheel at once each see a whole
file or none.

Beside each wheel it keeps what builds found of its members (`facts`: each member's checked CRC
and size, and what an ELF member needs), so that a build from cached wheels copies their
compressed bytes without inflating them again; facts are only used for a member whose
central directory still says that CRC and size.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from reconciler import elfcheck, errors
from reconciler.content import common

ENVIRONMENT_VARIABLE = "RECONCILE_CACHE_DIR"
# Raise when what a member's facts hold, or how they are found, changes.
FACTS_FORMAT = 1


@dataclass(frozen=True)
class MemberFacts:
    """What a build found of one wheel member: the CRC and size its bytes were inflated and
    checked to have, and, for an ELF file, what it needs (None: not an ELF file)."""

    crc: int
    size: int
    elf: elfcheck.ElfInfo | elfcheck.BadElf | None = None


def default_root(environ: Mapping[str, str]) -> Path:
    """RECONCILE_CACHE_DIR, else ~/.cache/reconcile; ContentError when there is neither (no
    home directory: a container running as a user without one)."""
    configured = environ.get(ENVIRONMENT_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    try:
        home = Path.home()
    except (RuntimeError, KeyError) as error:  # no HOME, and no passwd entry for the user
        raise errors.ContentError(
            "the wheel cache has no folder: there is no home directory",
            hint=f"set {ENVIRONMENT_VARIABLE} to a folder the builds may use") from error
    return home / ".cache" / "reconcile"


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

    def facts(self, sha256: str) -> dict[str, MemberFacts]:
        """What earlier builds found of the wheel `sha256`'s members by name: the CRC and
        size their bytes were checked to have, and what each ELF member needs (facts of
        content addressed by its digest, so they cannot go stale); {} when none are kept or
        the file does not read back."""
        try:
            document = json.loads(self._facts_path(sha256).read_bytes())
            if document.get("format") != FACTS_FORMAT:
                return {}
            found: dict[str, MemberFacts] = {}
            for name, item in document["members"].items():
                crc, size, elf = item["crc"], item["size"], item.get("elf")
                info = None if elf is None else elfcheck.from_document(elf)
                if not isinstance(crc, int) or not isinstance(size, int) or (
                        elf is not None and info is None):
                    return {}
                found[str(name)] = MemberFacts(crc=crc, size=size, elf=info)
            return found
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}

    def put_facts(self, sha256: str, facts: Mapping[str, MemberFacts]) -> None:
        """Keep `facts` of the wheel `sha256` beside the ones already kept (best effort: a
        cache that cannot be written only costs the next build a check)."""
        merged = {**self.facts(sha256), **facts}
        document = {"format": FACTS_FORMAT, "members": {
            name: {"crc": fact.crc, "size": fact.size,
                   "elf": None if fact.elf is None else elfcheck.as_document(fact.elf)}
            for name, fact in sorted(merged.items())}}
        path = self._facts_path(sha256)
        with suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            common.write_atomically(path, json.dumps(document, sort_keys=True).encode())

    def _facts_path(self, sha256: str) -> Path:
        _check_digest(sha256)
        return self.root / "facts" / "sha256" / sha256[:2] / f"{sha256}.json"

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

