"""The head start: a run's local layers identified in a forked worker process from the
manifest's early build, while the run validates the manifest, imports botocore and makes its
clients, with the zips the run will build written ahead (`HeadStart`, `Prefetch`).

Shell: it forks a worker (forking) that reads the layers' content and the local lockfile and
writes only zips ahead: a built layer's into the wheel cache's `prebuild/` folder, a folder
layer's, once the manifest passed its checks, into `.reconcile/build/` (or `prebuild/`
without one). The run's `artifacts.LocalCode` takes what it hands back. A module of its own,
with few imports, so that the worker is forked as early in a run as the manifest allows: the
build machinery (layerbuild, the builds package, the lockfile's codec) is imported by the
worker when it builds, not before the fork.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import os
import select
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from reconciler import content as layer_content
from reconciler import errors, forking, model, workspace
from reconciler.content import common, statcache

if TYPE_CHECKING:
    from reconciler import layerbuild, zipindex


def label(spec: model.LayerSpec) -> str:
    """How messages name a layer: `layers.<key>`."""
    return f"layers.{spec.key}"


Identified = dict[str, "model.Artifact | model.LayerError"]


Prebuilts = dict[str, "layerbuild.Prebuilt"]
# What the worker hands back: the identities, its stat cache's bytes, the zips it wrote ahead,
# and the walks (common.pack_walk) of the folder layers the run will build that it did not
# build itself, by layer key.
_Found = tuple[Identified, dict[str, object], Prebuilts, dict[str, bytes]]


def prebuild_dir(environ: Mapping[str, str]) -> Path | None:
    """Where the head start's worker writes ahead of the run the zips of built layers (and of
    folder layers, in a checkout without `.reconcile/build/`): under the wheel cache's root,
    outside the project (a built layer's is written before the manifest is checked); None
    when there is no such root (no RECONCILE_CACHE_DIR and no home directory: nothing is
    written there, and a build that needs the cache says so)."""
    from reconciler.builds import cache as wheel_cache

    try:
        return wheel_cache.default_root(environ) / "prebuild"
    except errors.ContentError:  # the run's own build reports it, for its layer
        return None


# The fingerprints the local lockfile records, read at most once by a worker and only when asked
# (see _recorded_fingerprints).
Recorded = Callable[[], "frozenset[str] | None"]


def _to_build(specs: list[model.LayerSpec], found: Identified, *, kind: model.SourceKind,
              space: workspace.Workspace,
              recorded: Recorded) -> list[tuple[model.LayerSpec, model.Artifact]]:
    """The layers of `kind` that this run will build: identified, no zip for their
    fingerprint in `.reconcile/build/`, and a fingerprint the local lockfile does not record
    (none when that cannot be told: `recorded` gives None). The lockfile is read only when
    there is such a layer."""
    candidates = [(spec, artifact) for spec in specs
                  if spec.content.kind is kind
                  and isinstance(artifact := found.get(spec.key), model.Artifact)
                  and not (space.cache_dir / "build" / f"{artifact.fingerprint}.zip").exists()]
    known = recorded() if candidates else None
    if known is None:
        return []
    return [(spec, artifact) for spec, artifact in candidates
            if artifact.fingerprint not in known]


def _prebuild(specs: list[model.LayerSpec], found: Identified, *, space: workspace.Workspace,
              recorded: Recorded, temp_dir: Path, owner: int) -> Prebuilts:
    """In the worker: the zips of the layers built from locks that this run will build
    (`_to_build`), written ahead (layerbuild.prebuild) into `temp_dir`, named by the run's pid
    (`owner`); a fingerprint two layers share is built once."""
    candidates = _to_build(specs, found, kind=model.SourceKind.LOCK, space=space,
                           recorded=recorded)
    prebuilt: Prebuilts = {}
    if not candidates:
        return prebuilt
    from reconciler import layerbuild
    from reconciler.builds import cache as wheel_cache
    from reconciler.builds import fetch

    # The wheel cache whose root `temp_dir` is under; no index: nothing is downloaded ahead.
    sources = fetch.Sources(wheel_cache=wheel_cache.WheelCache(temp_dir.parent),
                            index_for=None, environ=os.environ)
    done: set[str] = set()
    for spec, artifact in candidates:
        if artifact.fingerprint in done:
            continue
        done.add(artifact.fingerprint)
        made = layerbuild.prebuild(spec.content, artifact, base_dir=space.base_dir,
                                   label=label(spec), temp_dir=temp_dir,
                                   sources=sources, owner=owner)
        if made is not None:
            prebuilt[spec.key] = made
    return prebuilt


def _recorded_fingerprints(space: workspace.Workspace, *,
                           state: str | None) -> frozenset[str] | None:
    """The fingerprints the local lockfile records (none without one); None when that cannot
    be told here (an S3 state, an unreadable lockfile): the worker then builds nothing ahead,
    since an unchanged built layer must not read its wheels."""
    if state is not None:
        return None
    try:
        text = space.lockfile_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return frozenset()
    except (OSError, UnicodeDecodeError):
        return None
    from reconciler import statefile

    try:
        lock = statefile.decode(text, file=str(space.lockfile_path))
    except errors.ReconcilerError:
        return None
    return frozenset(entry.fingerprint for entry in lock.entries.values())


def _folders_ahead(specs: list[model.LayerSpec], found: Identified,
                   walked: Mapping[str, common.Collected], *, space: workspace.Workspace,
                   recorded: Recorded, owner: int, go: Callable[[], bool],
                   spool: int | None = None) -> tuple[Prebuilts, dict[str, bytes]]:
    """In the worker: what it does for the folder layers this run will build (`_to_build`;
    none under an S3 state, where what is recorded cannot be told here), from the walk that
    fingerprinted each. Once `go()` says the manifest passed its checks (waiting for it),
    their zips are written ahead (layerbuild.prebuild_folder): into `.reconcile/build/` when
    it exists (incrementally from each layer's previous zip there), else in full into the
    wheel cache's `prebuild/` folder, outside the project, which the worker never changes;
    the run moves them into place. A layer not built ahead has its walk packed with its
    files' digests, so that the run's build neither walks the folder again (~0.1 s for
    7,660 files) nor looks up each file in its stat cache. Either way the zip holds the
    planned bytes, checked against this walk's fingerprint: a file whose planned bytes the
    previous zip holds is copied from it, and one that must be read but changed since
    (another file at its path, other bytes) is refused. A fingerprint two layers share is
    built ahead once (the run's build of the second reuses the first's zip, in place by
    then); each layer not built ahead has its walk handed back. Given the run's `spool` (an
    apply's), the first zip written ahead is also base64-encoded into it as it is written
    (`_Follower`)."""
    prebuilt: Prebuilts = {}
    walks: dict[str, bytes] = {}
    to_build = [(spec, artifact, collected)
                for spec, artifact in _to_build(specs, found, kind=model.SourceKind.PATH,
                                                space=space, recorded=recorded)
                if (collected := walked.get(label(spec))) is not None]
    if not to_build:  # (an unchanged layer: the build machinery is not even imported)
        return prebuilt, walks
    from reconciler import layerbuild

    into = _folder_prebuild_dir(space) if go() else None
    built: set[str] = set()
    encoded = False  # the spool holds one zip's encoding at most
    for spec, artifact, collected in to_build:
        if artifact.fingerprint in built:
            continue
        # The first zip bound for an inline upload is encoded for it as it is written (one
        # bound for the artifact bucket needs no base64, nor one too large to go inline: the
        # helper stops once the zip passes that size, and the spool is emptied for the next).
        follower = _Follower(spool if spool is not None and not encoded
                             and spec.upload != "s3" else None,
                             limit=model.MAX_DIRECT_UPLOAD_BYTES)
        made = layerbuild.prebuild_folder(
            spec.content, artifact, collected=collected, base_dir=space.base_dir,
            label=label(spec), build_dir=into, previous=space.cache_dir / "build",
            owner=owner, follower=follower) if into is not None else None
        if follower.whole() and made is not None:
            made = dataclasses.replace(made, encoded=True)
            encoded = True
        if made is not None:
            prebuilt[spec.key] = made
            built.add(artifact.fingerprint)
        else:
            walks[spec.key] = common.pack_walk(collected)
    return prebuilt, walks


class _Follower:
    """layerbuild.Follower: a helper process, forked once the worker's temp file is open,
    that verifies the previous zip off the build's path and, given the run's `spool` (an
    apply's), writes the base64 of the zip into it as the worker writes the zip
    (uploadbody.encode_range), so that the upload encodes nothing (see `_follow`). The worker
    says how far it has written through a pipe (9-byte records: b"R" or, once whole, b"E",
    and the offset); the helper reads only bytes written. It says whether the previous zip
    was what its index says through another pipe (one byte) as soon as it knows, so that the
    worker waits for the encoding only once it has handed its zip (`whole`). Any failure of
    the helper only means the worker verifies the previous zip itself and the spool holds no
    encoding (the upload then encodes the zip itself, and the spool is emptied, so that it
    takes no room in TMPDIR)."""

    def __init__(self, spool: int | None, *, limit: int) -> None:
        self._spool = spool
        self._limit = limit  # (a zip larger than this is not encoded: it goes through S3)
        self._helper: forking.Forked[int] | None = None
        self._writer: int | None = None  # the offsets' pipe
        self._verdict: int | None = None  # the verdict's pipe
        self._size: int | None = None
        self._encoded: int | None = None

    def begin(self, temp: int, previous: zipindex.PreviousZip | None) -> bool:
        spool = self._spool
        if previous is None and spool is None:
            return False  # nothing to do
        try:
            reader, writer = os.pipe()
        except OSError:
            return False
        try:
            verdict_reader, verdict_writer = os.pipe()
        except OSError:
            os.close(reader)
            os.close(writer)
            return False

        def work() -> int:
            # (The worker's ends: this one sees the end of the offsets when the worker
            # closes its own.)
            os.close(writer)
            os.close(verdict_reader)
            return _follow(temp, progress=reader, spool=spool, limit=self._limit,
                           verdict_to=verdict_writer,
                           verifying=previous.verifying() if previous is not None
                           else iter((True,)))

        try:
            self._helper = forking.Forked.start(work)
        finally:
            os.close(reader)
            os.close(verdict_writer)
        if self._helper is None:
            os.close(writer)
            os.close(verdict_reader)
            return False
        self._writer, self._verdict = writer, verdict_reader
        return True

    def reached(self, offset: int) -> None:
        if self._spool is not None:  # (a helper that only verifies reads no offsets)
            self._send(b"R", offset)

    def written(self, size: int) -> None:
        self._size = size
        self._send(b"E", size)
        self._end_offsets()

    def verified(self) -> bool | None:
        if self._verdict is None:
            return None
        try:
            said = os.read(self._verdict, 1)
        except OSError:
            said = b""
        finally:
            os.close(self._verdict)
            self._verdict = None
        return {b"1": True, b"0": False}.get(said)  # (b"": the helper died first)

    def whole(self) -> bool:
        """Whether the spool holds the base64 of the whole zip (emptied if not: a zip too
        large to upload inline, a helper that failed, a build that failed)."""
        from reconciler import uploadbody

        encoded = self._collect()
        whole = self._size is not None and encoded == uploadbody.encoded_length(self._size)
        if not whole and self._spool is not None:
            with suppress(OSError):
                os.ftruncate(self._spool, 0)
        return whole

    def abandon(self) -> None:
        self._close()
        if self._helper is not None:
            self._helper.cancel()  # (nothing once collected: it was waited for)
            self._helper = None
        self._size = None

    def _send(self, kind: bytes, offset: int) -> None:
        if self._writer is not None:
            try:
                os.write(self._writer, kind + offset.to_bytes(8, "little"))
            except OSError:  # the helper is gone: it tells nothing whole
                self._end_offsets()

    def _end_offsets(self) -> None:
        if self._writer is not None:
            with suppress(OSError):
                os.close(self._writer)
            self._writer = None

    def _close(self) -> None:
        for descriptor in (self._writer, self._verdict):
            if descriptor is not None:
                with suppress(OSError):
                    os.close(descriptor)
        self._writer = self._verdict = None

    def _collect(self) -> int | None:
        self._close()
        if self._helper is not None:
            self._encoded = self._helper.collect()
            self._helper = None
        return self._encoded


def _follow(source: int, *, progress: int, spool: int | None, limit: int, verdict_to: int,
            verifying: Iterator[bool | None]) -> int:
    """In the helper: verify the previous zip (`verifying`, a piece at a time) and say the
    verdict through `verdict_to` once known; given a `spool`, write the base64 of the file
    open at `source` into it piece by piece as the `progress` pipe says the bytes are in the
    file, unless the file passes `limit` bytes. The bytes written are encoded first, and the
    verify goes on whenever the encoding has caught up, so that both end soon after the zip.
    The count of bytes of base64 written once the file is whole (0 without a spool, with a
    "no", or past the limit; -1: the worker stopped before it said the file was whole)."""
    from reconciler import uploadbody

    verdict: bool | None = None
    pending, done, encoded = b"", 0, 0
    reached, size = 0, None  # how far the bytes are in the file; its size, once whole
    ended = spool is None  # (no offsets to read: it only verifies)
    waiting = select.poll()
    waiting.register(progress, select.POLLIN)
    while True:
        if spool is not None and max(reached, size or 0) > limit:
            spool, ended, encoded = None, True, 0  # (too large to go inline: it only verifies)
        # (Up to a multiple of 3 until the end: the pieces' base64 joins into the whole's.)
        end = size if size is not None else reached // 3 * 3
        if spool is not None and end > done:
            encoded += uploadbody.encode_range(source, done, end, into=spool)
            done = end
            continue
        if verdict is None:
            step = next(verifying, False)
            if step is not None:
                verdict = step
                os.write(verdict_to, b"1" if verdict else b"0")
                if not verdict:
                    return 0
        elif spool is None or (size is not None and done >= size):
            return encoded if spool is not None else 0
        elif ended:
            return -1  # (the worker stopped before the zip was whole)
        if ended or (verdict is None and not waiting.poll(0)):
            continue  # (nothing said yet: on with the verify)
        data = os.read(progress, 4096)
        if not data:
            ended = True
            continue
        pending += data
        while len(pending) >= 9:
            kind, offset, pending = pending[:1], int.from_bytes(pending[1:9], "little"), \
                pending[9:]
            if kind == b"E":
                size = offset
            else:
                reached = max(reached, offset)


def _folder_prebuild_dir(space: workspace.Workspace) -> Path | None:
    """Where the worker writes folder layers' zips ahead: `.reconcile/build/` if it exists,
    else the wheel cache's `prebuild/` (made if needed); None when neither can be used (the
    run then builds them itself)."""
    build_dir = space.cache_dir / "build"
    elsewhere = prebuild_dir(os.environ)
    try:
        if build_dir.is_dir():
            return build_dir
        if elsewhere is not None:
            elsewhere.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return elsewhere


class _Gate:
    """What a worker forked before the manifest's checks waits on before it writes in the
    project: a pipe its parent writes one byte to once the manifest passed (`open`), or
    closes (`shut`: the run ends or goes on without it); a parent that dies closes it too."""

    def __init__(self) -> None:
        self._reader, self._writer = os.pipe()
        self._decided = False

    def forked(self) -> None:
        """In the worker, first: its copy of the parent's end closed, so that the parent's
        going away is an end of file."""
        os.close(self._writer)

    def wait(self) -> bool:
        """In the worker: whether the parent opened the gate (waiting for it to decide)."""
        try:
            return os.read(self._reader, 1) == b"1"
        except OSError:
            return False

    def parted(self) -> None:
        """In the parent, once the worker is forked: its copy of the worker's end closed."""
        with suppress(OSError):
            os.close(self._reader)

    def open(self) -> None:
        """In the parent: let the worker write."""
        self._decide(b"1")

    def shut(self) -> None:
        """In the parent: the worker writes nothing in the project."""
        self._decide(b"")

    def _decide(self, verdict: bytes) -> None:
        """Say `verdict` (nothing: an end of file), once; later calls change nothing."""
        if self._decided:
            return
        self._decided = True
        if verdict:
            with suppress(OSError):
                os.write(self._writer, verdict)
        with suppress(OSError):
            os.close(self._writer)


def identify_local(specs: list[model.LayerSpec], *, space: workspace.Workspace,
                    cache: statcache.StatCache, skip: frozenset[str],
                    walked_into: dict[str, common.Collected] | None = None) -> Identified:
    """Each local (folder or zip) layer's identity, or the content error that stops it
    (`walked_into`: see content.identify_all)."""
    identified = layer_content.identify_all(
        [(label(spec), spec.content) for spec in specs], base_dir=space.base_dir,
        cache=cache, skip=skip, walked_into=walked_into)
    found: Identified = {}
    for spec in specs:
        result = identified[label(spec)]
        found[spec.key] = result if isinstance(result, model.Artifact) else model.LayerError(
            layer=spec.key, message=result.message, hint=result.hint)
    return found


class Prefetch:
    """The local layers' identities computed in a forked worker process (forking.Forked)
    while this one goes on (it imports botocore and makes its clients, ~0.2 s, then reads the
    state): on a cold plan of a ~100 MB tree the walk and the hashing, ~0.3 s, then cost
    nothing more. Threads cannot do this: under the GIL, hashing 7,660 small files beside an
    import measured no faster than the two in turn; two processes take the longer of the two.

    Why it cannot change a plan: the worker runs the very identify code on a copy of this
    run's stat cache (fork), and hands back plain data, its results and what its cache
    learned (`StatCache.hand_back`: the bytes of the cache to save), with the zips it wrote
    ahead and the walks of the folder layers the run will build; this process saves the
    cache, once. Any failure of the worker (killed, an unexpected error, a result that does
    not unpickle) only means the layers are identified here instead, as without a worker.
    """

    def __init__(self, *, worker: forking.Forked[_Found],
                 contents: dict[str, model.ContentSpec], build_dir: Path,
                 gate: _Gate | None = None, spool: BinaryIO | None = None,
                 temp_dirs: tuple[Path, ...] | None = None) -> None:
        self._worker = worker
        self.contents = contents  # what the worker identifies, by layer key
        # Where it writes zips ahead, named by this process's pid: the wheel cache's
        # `prebuild/` (prebuild_dir) and the run's build folder.
        self._build_dir = build_dir
        self._gate = gate  # what it waits on before writing in the project (None: nothing)
        # An apply's: the unnamed temporary file the worker writes the base64 of the first
        # zip it writes ahead into (its Prebuilt says `encoded`), for that zip's upload.
        self.spool = spool
        # Whether the worker may have written a temp file yet, and where (see _remove_temps):
        # `temp_dirs` given, it may write from the start.
        self._may_write = temp_dirs is not None
        self._temp_dirs: tuple[Path, ...] = temp_dirs or ()
        self._collected = False
        self._cancelled = False

    @classmethod
    def start(cls, *, space: workspace.Workspace, specs: list[model.LayerSpec],
              cache: statcache.StatCache, skip: frozenset[str],
              state: str | None, checked: bool, uploads: bool = False) -> Prefetch | None:
        """Fork the worker for the local layers of `specs`; None where it would not help or
        fork is not safe (nothing to identify, not Linux, a thread already running). The
        worker also writes ahead the zips of the layers the run will build (see `_prebuild`
        and `_folders_ahead`; `state` is the manifest's, None for the local lockfile): a
        folder layer's only once the manifest is `checked`, or, when it is not yet, once
        `proceed` says it passed. For a run that `uploads` (an apply), it also encodes the
        first of those for its upload (`spool`)."""
        local = [spec for spec in specs if spec.content.kind is not model.SourceKind.S3]
        if not local:
            return None
        owner = os.getpid()
        temp_dir = prebuild_dir(os.environ) if any(
            spec.content.kind is model.SourceKind.LOCK for spec in local) else None
        if temp_dir is not None:
            # What a killed run's worker left there (named by that run's pid, now gone).
            from reconciler import layerbuild

            with suppress(OSError):
                layerbuild.remove_stale_build_temps(temp_dir)
        try:
            gate = None if checked or not any(
                spec.content.kind is model.SourceKind.PATH for spec in local) else _Gate()
        except OSError:  # out of descriptors: no worker, rather than one nothing can stop
            return None
        spool: BinaryIO | None = None
        if uploads and any(spec.content.kind is model.SourceKind.PATH for spec in local):
            with suppress(OSError):
                spool = tempfile.TemporaryFile()  # noqa: SIM115 -- the run's, to its end

        def work() -> _Found:
            if gate is not None:
                gate.forked()
            walked: dict[str, common.Collected] = {}
            found = identify_local(local, space=space, cache=cache, skip=skip,
                                   walked_into=walked)
            handed = cache.hand_back()
            recorded = functools.cache(lambda: _recorded_fingerprints(space, state=state))
            prebuilt = {} if temp_dir is None else _prebuild(
                local, found, space=space, recorded=recorded, temp_dir=temp_dir, owner=owner)
            folders, walks = _folders_ahead(
                local, found, walked, space=space, recorded=recorded, owner=owner,
                go=gate.wait if gate is not None else lambda: True,
                spool=spool.fileno() if spool is not None else None)
            return found, handed, {**prebuilt, **folders}, walks

        # Where a worker that may write from the start writes: found before the fork (an
        # import), so that nothing between the fork and the exit handler's registration can
        # fail.
        temp_dirs = _temp_dirs(space.cache_dir / "build") \
            if gate is None or temp_dir is not None else None
        try:
            worker = forking.Forked.start(work)
        finally:
            if gate is not None:
                gate.parted()
        if worker is None:
            if gate is not None:
                gate.shut()
            if spool is not None:
                spool.close()
            return None
        started = cls(worker=worker, contents={spec.key: spec.content for spec in local},
                      build_dir=space.cache_dir / "build", gate=gate, spool=spool,
                      temp_dirs=temp_dirs)
        # A run that ends before it collects (a credentials error, a usage error) must not
        # leave its worker hashing on in the background, nor a zip it wrote ahead.
        atexit.register(started.cancel)
        return started

    def proceed(self) -> None:
        """The manifest passed its checks: the worker may write in the project."""
        self._allow_writes()  # (first: the worker may write the moment the gate opens)
        if self._gate is not None:
            self._gate.open()

    def _allow_writes(self) -> None:
        """From now on the worker may write temp files: where they go is found now (an
        import), so that the exit's clean-up imports nothing (see _remove_temps)."""
        if not self._may_write:
            self._temp_dirs = _temp_dirs(self._build_dir)
            self._may_write = True

    def cancel(self) -> None:
        """Stop the worker if it is still running and nobody collected it, and remove the
        zips written ahead for this run (named by its pid) that are still temp files: the
        run's exit calls it, so that none is left however the run ends, even one collected
        and not yet moved into place (those moved are no temp files any more). Once only: a
        second call (the exit's, after the run's own) does nothing, so that it cannot remove
        what a later worker of the same run writes (named by the same pid)."""
        if self._cancelled:
            return
        self._cancelled = True
        if self._gate is not None:
            self._gate.shut()
        if not self._collected:
            self._worker.cancel()
        self._remove_temps()

    @property
    def pid(self) -> int:
        """The worker's process ID."""
        return self._worker.pid

    def collect(self) -> _Found | None:
        """The worker's results, what its cache hands back, the zips it wrote ahead and the
        walks it handed over (waiting for them), or None if it failed (then no zip of it is
        left). Without `proceed` first, it writes nothing in the project."""
        if self._gate is not None:
            self._gate.shut()
        result = self._worker.collect()
        if (isinstance(result, tuple) and len(result) == 4
                and all(isinstance(part, dict) for part in result)):
            self._collected = True
            return result
        self._remove_temps()
        if self.spool is not None:  # nothing the worker wrote in it is of use
            self.spool.close()
            self.spool = None
        return None

    def _remove_temps(self) -> None:
        """Remove the temp files written ahead for this run, if the worker may have written
        any: it writes a built layer's zip at once, a folder layer's only once `proceed` (or a
        checked manifest) let it. Never raises: it runs at the exit too, where a run
        interrupted during its start-up may not be able to import anything more."""
        if not self._may_write:
            return
        for temp_dir in self._temp_dirs:
            with suppress(Exception):
                common.remove_temps_of(temp_dir, pid=os.getpid())


def _temp_dirs(build_dir: Path) -> tuple[Path, ...]:
    """Where a worker writes zips ahead: the run's build folder, and the wheel cache's
    `prebuild/` (if there is a cache root)."""
    return tuple(folder for folder in (build_dir, prebuild_dir(os.environ))
                 if folder is not None)


def own_paths(space: workspace.Workspace) -> frozenset[str]:
    """The tool's own files, never packaged (real paths): they change on every run, and a
    layer whose folder holds them (`path: .`) would never converge."""
    return frozenset({os.path.realpath(space.cache_dir), os.path.realpath(space.lockfile_path)})


@dataclasses.dataclass(frozen=True)
class HeadStart:
    """A run's stat cache (deferred: read once, at its first use), and the worker identifying
    its local layers on a copy of it (None where none could be forked): begun as soon as the
    layers are known, from the manifest's early build (manifest.Unchecked.early) while the
    schema pass and the rest of the start-up go on, then handed to the run's LocalCode
    (artifacts)."""

    cache: statcache.StatCache
    prefetch: Prefetch | None

    @classmethod
    def begin(cls, space: workspace.Workspace, specs: list[model.LayerSpec], *,
              state: str | None, checked: bool, uploads: bool = False) -> HeadStart:
        """Open the stat cache (deferred) and start the worker for the local layers of
        `specs`. From a manifest not yet `checked` (the early build), it writes nothing in the
        project until `proceed` says the manifest passed (it may yet prove invalid: then
        nothing may change), only the zips it builds ahead outside it; a cancel removes what it
        wrote. `checked` has no default: a worker begun from an unchecked manifest must wait.
        `uploads`: the run is an apply (see Prefetch.start)."""
        cache = statcache.StatCache.deferred(space.stat_cache_path)
        return cls(cache=cache, prefetch=Prefetch.start(space=space, specs=specs, cache=cache,
                                                        skip=own_paths(space), state=state,
                                                        checked=checked, uploads=uploads))

    def proceed(self) -> None:
        """The manifest passed its checks: the worker may write in the project."""
        if self.prefetch is not None:
            self.prefetch.proceed()

    def cancel(self) -> None:
        """Stop the worker, if any (the run ends before it needs the layers)."""
        if self.prefetch is not None:
            self.prefetch.cancel()



def remove_stale_prebuilds(environ: Mapping[str, str]) -> None:
    """Remove from the wheel cache's `prebuild/` the zips a killed run's worker wrote ahead
    (their writer, named in the file, is gone; or they are STALE_BUILD_TEMP_SECONDS old),
    whichever run next identifies layers: a killed run's folder layer may have been written
    there. Best effort: a cache root that cannot be read (another user's home) is left alone."""
    folder = prebuild_dir(environ)
    if folder is None:
        return
    from reconciler import layerbuild

    with suppress(OSError):  # (is_dir raises for a folder that cannot be entered)
        if folder.is_dir():
            layerbuild.remove_stale_build_temps(folder)
