"""The stat cache, `.reconcile/cache.json`: file digests reused while a file's stat is
unchanged, and the SHA-256 of each prebuilt zip whose data passed the checks.

Shell: it reads the files it is asked to hash and writes only its own cache file; it knows no
content kind.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from reconciler import forking
from reconciler.content import common

CACHE_FORMAT = 1
# The version of the checks a prebuilt zip's data passed; a zip verified by other checks than
# these is verified again.
ZIP_CHECKS_VERSION = 1
# A file modified within this window of the moment its stat was recorded may have changed
# again within the same timestamp tick; such entries are re-hashed (git's "racy git" rule).
RACY_WINDOW_NS = 2_000_000_000
# Reading ahead in a helper process pays from this many files to read: a fork and the hand-back
# cost ~5 ms, what ~250 small files take to hash.
AHEAD_MIN_FILES = 256
# What one more file costs to hash beside its bytes (~25 us of system calls and bookkeeping,
# what SHA-256 takes over ~32 KiB): the halves are balanced on bytes plus this per file.
FILE_COST_BYTES = 32 * 1024
# The helper's share of that cost. It also pickles what it read, and this process has each
# file's lookup besides: identifying in the run's own process, 0.4 measured the fastest of
# 0.35-0.5. In the head start's worker, which shares the cores with the run's start-up, the
# helper finished 0.05-0.1 s before it: an even split took the cold identify of the tree from
# ~0.35 s to ~0.30 s (6 runs each; 0.6 was slower again), a cold plan 0.98x (20 pairs).
AHEAD_SHARE = 0.5


class _CachedDigest(NamedTuple):
    """A file's digest and the stat it was computed under. (A named tuple, not a frozen
    dataclass: one is made per file of every walk, and a tuple is made faster.)"""

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
        # Spelled out rather than a loop over the fields: a warm run reads one entry per file
        # (7,660 of the bench's tree) once or twice, and the generator cost ~45 ms per read.
        if type(value) is not list or len(value) != 7:
            return None
        size, mtime_ns, ctime_ns, inode, mode, hashed_ns, sha256 = value
        if (type(size) is int and type(mtime_ns) is int and type(ctime_ns) is int
                and type(inode) is int and type(mode) is int and type(hashed_ns) is int
                and type(sha256) is str):
            return cls(size, mtime_ns, ctime_ns, inode, mode, hashed_ns, sha256)
        return None


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
        # Keys whose entry this run set or dropped, and whether a verified zip was added: a
        # run that changed neither writes nothing (a warm plan's ~40 ms of JSON).
        self._changed: set[str] = set()
        self._zips_added = False
        self._verified_zips = set(verified_zips)
        # Digests a helper process is reading ahead (`reading_ahead`): the files it was given
        # and, once collected, the digests it took.
        self._helper: forking.Forked[list[list[int | str]]] | None = None
        self._ahead_keys: frozenset[str] = frozenset()
        self._ahead: dict[str, _CachedDigest] = {}
        # A worker's snapshot taken in by `take_back`, read only when it is needed; and
        # whether the worker said its copy had nothing to save (nor has this one since).
        self._pending: bytes | None = None
        self._pending_written = False
        self._saved_by_worker = False
        # The file at `path` not read yet (`deferred`): read when the cache is first used.
        self._unread = False
        self.hits = 0
        self.misses = 0
        self.read_ahead = 0  # of the misses, the files a helper read (`reading_ahead`)

    @classmethod
    def load(cls, path: Path) -> StatCache:
        """The cache stored at `path`; a missing or unreadable file gives an empty cache."""
        try:
            data = path.read_bytes()
        except OSError:
            data = b""
        entries, written_ns, verified_zips = _parsed(data)
        return cls(path, entries=entries, written_ns=written_ns, verified_zips=verified_zips)

    @classmethod
    def deferred(cls, path: Path) -> StatCache:
        """The cache stored at `path`, read only when it is first used: a run's head start
        forks its worker before reading it (decoding 7,660 entries is ~25 ms of JSON, which
        the worker then spends while the run starts up), and the run itself never reads it
        when the worker hands back what to save."""
        cache = cls(path, entries={}, written_ns=0)
        cache._unread = True
        return cache

    def _ready(self) -> None:
        """Read the file if it is still unread, or take in the snapshot taken back, if any,
        before the cache is read or changed."""
        if self._unread:
            self._unread = False
            if self._pending is None:
                loaded = StatCache.load(self.path)
                self._entries, self._written_ns = loaded._entries, loaded._written_ns
                self._verified_zips = loaded._verified_zips
        if self._pending is None:
            return
        self._entries, self._written_ns, verified = _parsed(self._pending)
        self._verified_zips = set(verified)
        self._used = set(self._entries)
        # Not yet written: everything in it is this run's to save.
        self._changed = set() if self._pending_written else set(self._entries)
        self._zips_added = not self._pending_written and bool(verified)
        self._pending = None

    def hand_back(self) -> dict[str, object]:
        """What a worker's copy of this cache (forked from the run's) hands back to the run's
        own (`take_back`): the bytes `save` would write now (None: nothing), and the counts."""
        return {"snapshot": self.snapshot(), "hits": self.hits, "misses": self.misses,
                "read_ahead": self.read_ahead}

    def take_back(self, handed: Mapping[str, object]) -> bool:
        """Take what a worker's copy handed back (`hand_back`) as this cache's state: `save`
        writes the worker's bytes as they are, and any other use reads them first, so the
        run does not decode and encode again what the worker encoded (~80 ms of a cold plan
        of 7,660 files). Refused (False: the worker's lessons are lost, which costs time
        only) once this copy has changed, since the snapshot would lose those changes. The
        snapshot's write time is the worker's, a little before the file is written: that
        only trusts a digest later, never sooner. A copy still unread has not changed, and
        stays unread (the snapshot, if any, replaces what it would read)."""
        if not self._unread:
            self._ready()
        snapshot = handed.get("snapshot")
        if self._changed or self._zips_added or not isinstance(snapshot, (bytes, type(None))):
            return False
        if snapshot is not None:
            self._pending, self._pending_written = snapshot, False
        else:  # the worker's copy, this one's and more, had nothing to save
            self._saved_by_worker = True
        for name in ("hits", "misses", "read_ahead"):
            count = handed.get(name)
            if type(count) is int:
                setattr(self, name, getattr(self, name) + count)
        return True

    def zip_verified(self, sha256: str) -> bool:
        """Whether the zip with this hex SHA-256 passed the data checks before."""
        self._ready()
        return sha256 in self._verified_zips

    def remember_verified_zip(self, sha256: str) -> None:
        """Record that the zip with this hex SHA-256 passed the data checks."""
        self._ready()
        if sha256 not in self._verified_zips:
            self._verified_zips.add(sha256)
            self._zips_added = True

    def _trusted(self, key: str, st: os.stat_result) -> _CachedDigest | None:
        """The cached digest of `key` if it may be given for a file whose stat is `st`."""
        cached = self._entries.get(key)
        if cached is not None and cached.matches(st):
            trusted_before_ns = min(self._written_ns, cached.hashed_ns) - RACY_WINDOW_NS
            if st.st_mtime_ns < trusted_before_ns:
                return cached
        return None

    def file_sha256(self, path: str | Path, st: os.stat_result) -> str:
        """Hex SHA-256 of the regular file at `path`, whose stat the caller took as `st`."""
        self._ready()
        key = _key(path)
        self._used.add(key)
        cached = self._trusted(key, st)
        if cached is not None:
            self.hits += 1
            return cached.sha256
        self.misses += 1
        if key in self._ahead_keys:
            self._collect_ahead()
        ahead = self._ahead.pop(key, None)
        self._changed.add(key)
        if ahead is not None and ahead.matches(st):
            self._entries[key] = ahead
            self.read_ahead += 1
            return ahead.sha256
        fresh, sha256 = _hash_one(key, st)
        # A file that changed while being read is hashed but not remembered.
        if fresh is not None:
            self._entries[key] = fresh
        else:
            self._entries.pop(key, None)
        return sha256

    @contextmanager
    def reading_ahead(self, files: Sequence[tuple[str, os.stat_result]]) -> Iterator[None]:
        """Within it, the last files of `files` that this cache cannot answer for (AHEAD_SHARE
        of them, by bytes plus FILE_COST_BYTES each) are hashed in a forked helper process
        while this one hashes the others through `file_sha256`, when there are
        AHEAD_MIN_FILES or more: a cold identify of a 7,660-file tree reads in two processes.

        Why it cannot change a digest: the helper hashes each file as `file_sha256` would
        (the same checks that the opened file is the one of `st`, and a digest kept only when
        the file's stat after the read is still `st`), and `file_sha256` gives a digest read
        ahead only to a caller whose stat is the one it was taken under; any other file, and
        every file when the helper fails, is read here as without a helper. What the helper
        read and nobody asked for is forgotten when the block ends. Not nested: within a
        block, another reads nothing ahead."""
        if not files or self._helper is not None or self._ahead_keys:
            yield  # nothing to read (the cache is left as it is), or a block already open
            return
        self._ready()
        misses = [(key, st) for path, st in files
                  if self._trusted(key := _key(path), st) is None]
        if len(misses) >= AHEAD_MIN_FILES and forking.can_fork():
            costs = [st.st_size + FILE_COST_BYTES for _, st in misses]
            kept, split = sum(costs) * (1 - AHEAD_SHARE), 0
            while split < len(misses) and kept > 0:
                kept -= costs[split]
                split += 1
            later = misses[split:]
            if later:
                self._helper = forking.Forked.start(lambda: _hash_many(later))
                if self._helper is not None:
                    self._ahead_keys = frozenset(key for key, _ in later)
        try:
            yield
        finally:
            if self._helper is not None:
                self._helper.cancel()
            self._helper = None
            self._ahead_keys = frozenset()
            self._ahead = {}

    def _collect_ahead(self) -> None:
        """Take the helper's digests (waiting for them); none when it failed."""
        helper, self._helper, self._ahead_keys = self._helper, None, frozenset()
        found = helper.collect() if helper is not None else None
        if not isinstance(found, list):
            return
        for item in found:
            if isinstance(item, list) and len(item) == 8 and isinstance(item[0], str):
                cached = _CachedDigest.from_json(item[1:])
                if cached is not None:
                    self._ahead[item[0]] = cached

    def _document(self) -> tuple[bytes, dict[str, _CachedDigest], int, list[str]] | None:
        """What `save` writes now, with what the cache then holds; None when nothing is to
        be written: no entry set or dropped, no new verified zip, nothing to forget."""
        self._ready()
        kept = {
            key: cached
            for key, cached in sorted(self._entries.items())
            if key in self._used or os.path.lexists(key)
        }
        digests = {cached.sha256 for cached in kept.values()}
        verified_zips = sorted(self._verified_zips & digests)
        if (not self._changed and not self._zips_added and len(kept) == len(self._entries)
                and len(verified_zips) == len(self._verified_zips) and self.path.exists()):
            return None
        written_ns = time.time_ns()
        document = {
            "format": CACHE_FORMAT,
            "written_ns": written_ns,
            # (A digest is a tuple of its fields in as_json's order: json writes it as that
            # list, with no list made per file.)
            "entries": kept,
            "zip_checks": ZIP_CHECKS_VERSION,
            "verified_zips": verified_zips,
        }
        encoded = json.dumps(document, separators=(",", ":"), check_circular=False).encode()
        return encoded, kept, written_ns, verified_zips

    def snapshot(self) -> bytes | None:
        """The bytes `save` would write now (None: it would write nothing), for a worker to
        hand back to the run's own copy of this cache (`take_back`)."""
        found = self._document()
        return found[0] if found is not None else None

    def save(self) -> bool:
        """Write the cache atomically; False when it cannot be written (it is only a cache).

        Entries not used in this run are kept while their file exists, so that a run over
        some layers does not forget the others. A run that set no entry, dropped none and
        verified no new zip writes nothing: every lookup was a trusted hit, and the file on
        disk already says all it would say (a new write time would only trust sooner
        entries that no lookup of this run needed).
        """
        if self._pending is not None:  # a snapshot taken back, still as the worker encoded it
            if not self._pending_written:
                if not self._write(self._pending):
                    return False
                self._pending_written = True
            return True
        if self._saved_by_worker and not self._changed and not self._zips_added:
            return True  # nothing since the worker found nothing to write (no lstat each)
        found = self._document()
        if found is None:
            return True
        encoded, kept, written_ns, verified_zips = found
        if not self._write(encoded):
            return False
        self._entries = kept
        self._written_ns = written_ns
        self._verified_zips = set(verified_zips)
        self._changed.clear()
        self._zips_added = False
        return True

    def _write(self, encoded: bytes) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            common.write_atomically(self.path, encoded)
        except OSError:
            return False
        return True


def _parsed(data: bytes) -> tuple[dict[str, _CachedDigest], int, frozenset[str]]:
    """The entries, write time and verified zips of a cache file's bytes; empty for bytes
    that are not a cache of this format."""
    empty: tuple[dict[str, _CachedDigest], int, frozenset[str]] = ({}, 0, frozenset())
    try:
        document = json.loads(data)
    except ValueError:
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
    return entries, written_ns, verified_zips


def _key(path: str | Path) -> str:
    """The cache's key for `path`: its absolute form. A walk's paths are absolute already,
    and abspath on each costs ~3 us (~25 ms of a cold 7,660-file identify, twice); a path
    that is absolute but not normal only gets an entry of its own."""
    text = os.fspath(path)
    return text if os.path.isabs(text) else os.path.abspath(text)


def _hash_one(key: str, st: os.stat_result) -> tuple[_CachedDigest | None, str]:
    """Read the file at `key` whose stat was `st`: its digest entry (None when the file
    changed while it was read, so that it is not remembered) and its hex SHA-256."""
    hashed_ns = time.time_ns()
    digest, after = common.hash_regular_file(key, expected=st)
    sha256 = digest.hex()
    fresh = _CachedDigest(
        st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode, hashed_ns, sha256
    )
    return (fresh if fresh.matches(after) else None), sha256


def _hash_many(files: list[tuple[str, os.stat_result]]) -> list[list[int | str]]:
    """In a helper process: `[key, *entry]` of each file of `files` that reads cleanly and is
    unchanged by the read. Any other (a file gone, replaced, changing) is left out: the run
    reads it itself and reports it as it would without a helper."""
    found: list[list[int | str]] = []
    for key, st in files:
        try:
            fresh, _ = _hash_one(key, st)
        except Exception:  # any failure: the run reads this file itself
            continue
        if fresh is not None:
            found.append([key, *fresh.as_json()])
    return found
