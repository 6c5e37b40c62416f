"""The stat cache, `.reconcile/cache.json`: file digests reused while a file's stat is
unchanged, and the SHA-256 of each prebuilt zip whose data passed the checks.

Shell: it reads the files it is asked to hash and writes only its own cache file; it knows no
content kind.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reconciler.content import common

CACHE_FORMAT = 1
# The version of the checks a prebuilt zip's data passed; a zip verified by other checks than
# these is verified again.
ZIP_CHECKS_VERSION = 1
# A file modified within this window of the moment its stat was recorded may have changed
# again within the same timestamp tick; such entries are re-hashed (git's "racy git" rule).
RACY_WINDOW_NS = 2_000_000_000


@dataclass(frozen=True, slots=True)
class _CachedDigest:
    """A file's digest and the stat it was computed under."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    mode: int
    hashed_ns: int
    sha256: str

    def matches(self, st: os.stat_result) -> bool:
        return (self.size, self.mtime_ns, self.ctime_ns, self.inode, self.mode) == (
            st.st_size,
            st.st_mtime_ns,
            st.st_ctime_ns,
            st.st_ino,
            st.st_mode,
        )

    def as_json(self) -> list[int | str]:
        return [
            self.size,
            self.mtime_ns,
            self.ctime_ns,
            self.inode,
            self.mode,
            self.hashed_ns,
            self.sha256,
        ]

    @classmethod
    def from_json(cls, value: object) -> _CachedDigest | None:
        if not isinstance(value, list) or len(value) != 7:
            return None
        *numbers, sha256 = value
        if not all(type(number) is int for number in numbers) or not isinstance(sha256, str):
            return None
        size, mtime_ns, ctime_ns, inode, mode, hashed_ns = numbers
        return cls(size, mtime_ns, ctime_ns, inode, mode, hashed_ns, sha256)


class StatCache:
    """File digests keyed by absolute path, reused while a file's stat is unchanged.

    A cached digest is trusted only when size, mtime, ctime, inode and mode all match and the
    file's mtime is more than RACY_WINDOW_NS older than both the previous cache write and the
    moment the digest was taken: a file written in the same timestamp tick as it was hashed
    could change again without its stat changing. Changing content while restoring the mtime
    is still noticed through ctime, which no user call can set. `hits` and `misses` count
    lookups served from the cache and files read.

    It also remembers the SHA-256 of each prebuilt zip whose data passed verification (under
    ZIP_CHECKS_VERSION), so that an unchanged zip is inflated once, not on every plan; one is
    forgotten with the last cached file that has its digest.
    """

    def __init__(
        self,
        path: Path,
        *,
        entries: Mapping[str, _CachedDigest],
        written_ns: int,
        verified_zips: frozenset[str] = frozenset(),
    ) -> None:
        self.path = path
        self._entries = dict(entries)
        self._written_ns = written_ns
        self._used: set[str] = set()
        self._verified_zips = set(verified_zips)
        self.hits = 0
        self.misses = 0

    @classmethod
    def load(cls, path: Path) -> StatCache:
        """The cache stored at `path`; a missing or unreadable file gives an empty cache."""
        empty = cls(path, entries={}, written_ns=0)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return empty
        if not isinstance(document, dict) or document.get("format") != CACHE_FORMAT:
            return empty
        written_ns = document.get("written_ns")
        raw_entries = document.get("entries")
        if type(written_ns) is not int or not isinstance(raw_entries, dict):
            return empty
        entries = {
            key: cached
            for key, value in raw_entries.items()
            if (cached := _CachedDigest.from_json(value)) is not None
        }
        verified = document.get("verified_zips")
        verified_zips = frozenset(
            sha256 for sha256 in (verified if isinstance(verified, list) else [])
            if isinstance(sha256, str)
        ) if document.get("zip_checks") == ZIP_CHECKS_VERSION else frozenset()
        return cls(path, entries=entries, written_ns=written_ns, verified_zips=verified_zips)

    def zip_verified(self, sha256: str) -> bool:
        """Whether the zip with this hex SHA-256 passed the data checks before."""
        return sha256 in self._verified_zips

    def remember_verified_zip(self, sha256: str) -> None:
        """Record that the zip with this hex SHA-256 passed the data checks."""
        self._verified_zips.add(sha256)

    def file_sha256(self, path: str | Path, st: os.stat_result) -> str:
        """Hex SHA-256 of the regular file at `path`, whose stat the caller took as `st`."""
        key = os.path.abspath(path)
        self._used.add(key)
        cached = self._entries.get(key)
        if cached is not None and cached.matches(st):
            trusted_before_ns = min(self._written_ns, cached.hashed_ns) - RACY_WINDOW_NS
            if st.st_mtime_ns < trusted_before_ns:
                self.hits += 1
                return cached.sha256
        self.misses += 1
        hashed_ns = time.time_ns()
        digest, after = common.hash_regular_file(key, expected=st)
        sha256 = digest.hex()
        fresh = _CachedDigest(
            st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode, hashed_ns, sha256
        )
        # A file that changed while being read is hashed but not remembered.
        if fresh.matches(after):
            self._entries[key] = fresh
        else:
            self._entries.pop(key, None)
        return sha256

    def export(self) -> dict[str, object]:
        """What this run learned, as plain data: the entry of each file looked up (None for
        one that changed while it was read), the verified zips and the counts. A worker
        process that identified layers hands it to the run's own cache (`absorb`)."""
        return {"entries": {key: (cached.as_json() if (cached := self._entries.get(key))
                                  else None) for key in self._used},
                "verified_zips": sorted(self._verified_zips),
                "hits": self.hits, "misses": self.misses}

    def absorb(self, exported: Mapping[str, object]) -> None:
        """Take in what another copy of this cache (a worker's) learned: see `export`."""
        entries = exported.get("entries")
        if not isinstance(entries, dict):
            return
        for key, value in entries.items():
            cached = _CachedDigest.from_json(value)
            if cached is None:
                self._entries.pop(key, None)
            else:
                self._entries[key] = cached
            self._used.add(key)
        verified = exported.get("verified_zips")
        self._verified_zips.update(item for item in (verified if isinstance(verified, list)
                                                     else []) if isinstance(item, str))
        for name in ("hits", "misses"):
            count = exported.get(name)
            if type(count) is int:
                setattr(self, name, getattr(self, name) + count)

    def save(self) -> bool:
        """Write the cache atomically; False when it cannot be written (it is only a cache).

        Entries not used in this run are kept while their file exists, so that a run over
        some layers does not forget the others.
        """
        written_ns = time.time_ns()
        kept = {
            key: cached
            for key, cached in sorted(self._entries.items())
            if key in self._used or os.path.lexists(key)
        }
        digests = {cached.sha256 for cached in kept.values()}
        verified_zips = sorted(self._verified_zips & digests)
        document = {
            "format": CACHE_FORMAT,
            "written_ns": written_ns,
            "entries": {key: cached.as_json() for key, cached in kept.items()},
            "zip_checks": ZIP_CHECKS_VERSION,
            "verified_zips": verified_zips,
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            common.write_atomically(
                self.path, json.dumps(document, separators=(",", ":")).encode("utf-8")
            )
        except OSError:
            return False
        self._entries = kept
        self._written_ns = written_ns
        self._verified_zips = set(verified_zips)
        return True


