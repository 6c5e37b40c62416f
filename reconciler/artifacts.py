"""The layers' code on this machine: identify each layer's content (the stat cache loaded and
saved once per run), have their zips built into `.reconcile/build/` (by `layerbuild`), reuse
them, prune them, and hand apply a zip verified against the CodeSha256 of the plan.

Shell: it reads the content and writes only under `.reconcile/`, but for the zips of built
layers its start-up worker writes ahead into the wheel cache's `prebuild/` (moved into
`.reconcile/build/` or removed by the run); the worker writes a folder layer's zip ahead into
`.reconcile/build/` (a temp file the run moves into place or removes) only once the manifest
passed its checks. A saved plan holds no zip, so
`zip_for` rebuilds one from the checkout when `.reconcile/` is gone (another runner, a fresh
clone): deterministic packaging makes it byte-identical, and the check proves it.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path

from reconciler import (
    archive,
    binaries,
    errors,
    forking,
    layerbuild,
    manifest,
    model,
    ports,
    statefile,
    workspace,
    zipindex,
)
from reconciler import content as layer_content
from reconciler.builds import cache as wheel_cache
from reconciler.builds import fetch
from reconciler.content import common, s3, statcache

Identified = dict[str, "model.Artifact | model.LayerError"]


Prebuilts = dict[str, layerbuild.Prebuilt]
# What the worker hands back: the identities, its stat cache's bytes, the zips it wrote ahead,
# and the walks (common.pack_walk) of the folder layers the run will build that it did not
# build itself, by layer key.
_Found = tuple[Identified, dict[str, object], Prebuilts, dict[str, bytes]]


def prebuild_dir(environ: Mapping[str, str]) -> Path | None:
    """Where the head start's worker writes built layers' zips ahead of the run: under the
    wheel cache's root, outside the project (the manifest may yet be refused); None when
    there is no such root (no RECONCILE_CACHE_DIR and no home directory: nothing is built
    ahead, and a build that needs the cache says so)."""
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
    # The wheel cache whose root `temp_dir` is under; no index: nothing is downloaded ahead.
    sources = fetch.Sources(wheel_cache=wheel_cache.WheelCache(temp_dir.parent),
                            index_for=None, environ=os.environ)
    done: set[str] = set()
    for spec, artifact in candidates:
        if artifact.fingerprint in done:
            continue
        done.add(artifact.fingerprint)
        made = layerbuild.prebuild(spec.content, artifact, base_dir=space.base_dir,
                                   label=LocalCode.label(spec), temp_dir=temp_dir,
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
    try:
        lock = statefile.decode(text, file=str(space.lockfile_path))
    except errors.ReconcilerError:
        return None
    return frozenset(entry.fingerprint for entry in lock.entries.values())


def _folders_ahead(specs: list[model.LayerSpec], found: Identified,
                   walked: Mapping[str, common.Collected], *, space: workspace.Workspace,
                   recorded: Recorded, owner: int,
                   go: Callable[[], bool]) -> tuple[Prebuilts, dict[str, bytes]]:
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
    handled once (the run's build of the second reuses the first's zip)."""
    prebuilt: Prebuilts = {}
    walks: dict[str, bytes] = {}
    to_build = [(spec, artifact, collected)
                for spec, artifact in _to_build(specs, found, kind=model.SourceKind.PATH,
                                                space=space, recorded=recorded)
                if (collected := walked.get(LocalCode.label(spec))) is not None]
    into = (_folder_prebuild_dir(space) if to_build and go() else None)
    done: set[str] = set()
    for spec, artifact, collected in to_build:
        if artifact.fingerprint in done:
            continue
        done.add(artifact.fingerprint)
        made = layerbuild.prebuild_folder(
            spec.content, artifact, collected=collected, label=LocalCode.label(spec),
            build_dir=into, previous=space.cache_dir / "build",
            owner=owner) if into is not None else None
        if made is not None:
            prebuilt[spec.key] = made
        else:
            walks[spec.key] = common.pack_walk(collected)
    return prebuilt, walks


def _folder_prebuild_dir(space: workspace.Workspace) -> Path | None:
    """Where the worker writes folder layers' zips ahead: `.reconcile/build/` if it exists,
    else the wheel cache's `prebuild/` (made if needed; None when there is none)."""
    build_dir = space.cache_dir / "build"
    if build_dir.is_dir():
        return build_dir
    elsewhere = prebuild_dir(os.environ)
    if elsewhere is None:
        return None
    try:
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
        if not self._decided:
            self._decided = True
            with suppress(OSError):
                os.write(self._writer, b"1")
            with suppress(OSError):
                os.close(self._writer)

    def shut(self) -> None:
        """In the parent: the worker writes nothing in the project."""
        if not self._decided:
            self._decided = True
            with suppress(OSError):
                os.close(self._writer)


def _identify_local(specs: list[model.LayerSpec], *, space: workspace.Workspace,
                    cache: statcache.StatCache, skip: frozenset[str],
                    walked_into: dict[str, common.Collected] | None = None) -> Identified:
    """Each local (folder or zip) layer's identity, or the content error that stops it
    (`walked_into`: see content.identify_all)."""
    identified = layer_content.identify_all(
        [(LocalCode.label(spec), spec.content) for spec in specs], base_dir=space.base_dir,
        cache=cache, skip=skip, walked_into=walked_into)
    found: Identified = {}
    for spec in specs:
        result = identified[LocalCode.label(spec)]
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
                 gate: _Gate | None = None) -> None:
        self._worker = worker
        self.contents = contents  # what the worker identifies, by layer key
        # Where it writes zips ahead, named by this process's pid: the wheel cache's
        # `prebuild/` (prebuild_dir) and the run's build folder.
        self._build_dir = build_dir
        self._gate = gate  # what it waits on before writing in the project (None: nothing)
        self._collected = False

    @classmethod
    def start(cls, *, space: workspace.Workspace, specs: list[model.LayerSpec],
              cache: statcache.StatCache, skip: frozenset[str],
              state: str | None, checked: bool = True) -> Prefetch | None:
        """Fork the worker for the local layers of `specs`; None where it would not help or
        fork is not safe (nothing to identify, not Linux, a thread already running). The
        worker also writes ahead the zips of the layers the run will build (see `_prebuild`
        and `_folders_ahead`; `state` is the manifest's, None for the local lockfile): a
        folder layer's only once the manifest is `checked`, or, when it is not yet, once
        `proceed` says it passed."""
        local = [spec for spec in specs if spec.content.kind is not model.SourceKind.S3]
        if not local:
            return None
        owner = os.getpid()
        temp_dir = prebuild_dir(os.environ) if any(
            spec.content.kind is model.SourceKind.LOCK for spec in local) else None
        if temp_dir is not None:
            # What a killed run's worker left there (named by that run's pid, now gone).
            with suppress(OSError):
                layerbuild.remove_stale_build_temps(temp_dir)
        gate = None if checked or not any(
            spec.content.kind is model.SourceKind.PATH for spec in local) else _Gate()

        def work() -> _Found:
            if gate is not None:
                gate.forked()
            walked: dict[str, common.Collected] = {}
            found = _identify_local(local, space=space, cache=cache, skip=skip,
                                    walked_into=walked)
            handed = cache.hand_back()
            recorded = functools.cache(lambda: _recorded_fingerprints(space, state=state))
            prebuilt = {} if temp_dir is None else _prebuild(
                local, found, space=space, recorded=recorded, temp_dir=temp_dir, owner=owner)
            folders, walks = _folders_ahead(local, found, walked, space=space,
                                            recorded=recorded, owner=owner,
                                            go=gate.wait if gate is not None else lambda: True)
            return found, handed, {**prebuilt, **folders}, walks

        try:
            worker = forking.Forked.start(work)
        finally:
            if gate is not None:
                gate.parted()
        if worker is None:
            if gate is not None:
                gate.shut()
            return None
        started = cls(worker=worker, contents={spec.key: spec.content for spec in local},
                      build_dir=space.cache_dir / "build", gate=gate)
        # A run that ends before it collects (a credentials error, a usage error) must not
        # leave its worker hashing on in the background, nor a zip it wrote ahead.
        atexit.register(started.cancel)
        return started

    def proceed(self) -> None:
        """The manifest passed its checks: the worker may write in the project."""
        if self._gate is not None:
            self._gate.open()

    def cancel(self) -> None:
        """Stop the worker if it is still running and nobody collected it, and remove the
        zips it wrote ahead (named by this run's pid)."""
        if self._gate is not None:
            self._gate.shut()
        if self._collected:
            return
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
        return None

    def _remove_temps(self) -> None:
        for temp_dir in (self._build_dir, prebuild_dir(os.environ)):
            if temp_dir is not None:
                layerbuild.remove_temps_of(temp_dir, pid=os.getpid())


def own_paths(space: workspace.Workspace) -> frozenset[str]:
    """The tool's own files, never packaged (real paths): they change on every run, and a
    layer whose folder holds them (`path: .`) would never converge."""
    return frozenset({os.path.realpath(space.cache_dir), os.path.realpath(space.lockfile_path)})


@dataclasses.dataclass(frozen=True)
class HeadStart:
    """A run's stat cache, loaded once, and the worker identifying its local layers on a
    copy of it (None where none could be forked): begun as soon as the layers are known,
    from the manifest's early build (manifest.Unchecked.early) while the schema pass and
    the rest of the start-up go on, then handed to the run's LocalCode."""

    cache: statcache.StatCache
    prefetch: Prefetch | None

    @classmethod
    def begin(cls, space: workspace.Workspace, specs: list[model.LayerSpec], *,
              state: str | None, checked: bool = True) -> HeadStart:
        """Load the stat cache and start the worker for the local layers of `specs`. From a
        manifest not yet `checked` (the early build), it writes nothing in the project until
        `proceed` says the manifest passed (it may yet prove invalid: then nothing may
        change), only the zips it builds ahead outside it; a cancel removes what it wrote."""
        cache = statcache.StatCache.deferred(space.stat_cache_path)
        return cls(cache=cache, prefetch=Prefetch.start(space=space, specs=specs, cache=cache,
                                                        skip=own_paths(space), state=state,
                                                        checked=checked))

    def proceed(self) -> None:
        """The manifest passed its checks: the worker may write in the project."""
        if self.prefetch is not None:
            self.prefetch.proceed()

    def cancel(self) -> None:
        """Stop the worker, if any (the run ends before it needs the layers)."""
        if self.prefetch is not None:
            self.prefetch.cancel()


class LocalCode:
    """The content of one manifest's layers, read relative to the manifest's folder."""

    def __init__(self, *, space: workspace.Workspace, manifest: model.Manifest,
                 objects: ports.ArtifactStore | None = None,
                 head_start: HeadStart | None = None,
                 package_index: fetch.IndexFactory | None = None) -> None:
        self._space = space
        # Layers built from locks: the index their wheels may come from (made only when a
        # wheel must be downloaded), and the wheel cache (made when a build needs it).
        self._package_index = package_index
        self._sources: fetch.Sources | None = None
        self._manifest = manifest
        # S3 sources are identified by HeadObject through it (None: no S3 access, as in
        # `validate`; an S3 source is then an error of its layer).
        self._objects = objects
        self.build_dir = space.cache_dir / "build"
        # Remote zips downloaded for adoption by content, each removed once compared.
        self.downloads_dir = space.cache_dir / "downloads"
        # The binary check's verdicts on the zips a plan is about to publish.
        self.verdicts = binaries.Verdicts(space.cache_dir / "binaries")
        self._inspected: layerbuild.Inspected = {}
        self.skip = own_paths(space)
        self._built: dict[str, model.Artifact] = {}
        # Zips whose CodeSha256 this run computed from their bytes, with their stat then.
        self._zips_read: dict[str, tuple[os.stat_result, str]] = {}
        # The run's stat cache: a rebuild takes unchanged files' digests from it (to copy
        # their compressed bytes from the layer's previous zip) instead of reading them.
        self._cache: statcache.StatCache | None = None
        self._prefetch: Prefetch | None = None
        # Built layers' zips the worker wrote ahead, by layer key, until `build` takes them.
        self._prebuilt: Prebuilts = {}
        # Folder layers' walks the worker handed back (packed), by layer key, for `build`.
        self._walks: dict[str, bytes] = {}
        self._preloaded = False  # the stat cache was loaded by a head start, for identify()
        if head_start is not None:
            self._take(head_start)

    def _take(self, head_start: HeadStart) -> None:
        self._cache, self._prefetch = head_start.cache, head_start.prefetch
        self._preloaded = True

    def prefetch(self, specs: list[model.LayerSpec]) -> None:
        """Start identifying the local layers of `specs` in a worker process (HeadStart);
        the next `identify` takes its results. Loads the run's stat cache (once: the
        worker uses a copy of it)."""
        self._take(HeadStart.begin(self._space, specs, state=self._manifest.state))

    @property
    def prefetching(self) -> Prefetch | None:
        """The worker started by `prefetch` and not yet collected by `identify`, if any."""
        return self._prefetch

    def use_objects(self, objects: ports.ArtifactStore) -> None:
        """The store S3 sources are looked up in (made after `prefetch` has started)."""
        self._objects = objects

    @staticmethod
    def label(spec: model.LayerSpec) -> str:
        """How messages name a layer: `layers.<key>`."""
        return f"layers.{spec.key}"

    def identify(
        self, specs: list[model.LayerSpec], *, regions: dict[str, list[str]] | None = None
    ) -> dict[str, model.Artifact | model.LayerError]:
        """Each layer's content identity (no zip), or the error that stops it from being
        planned; the stat cache is loaded and saved once. An S3 source is looked up with
        HeadObject in the first of its `regions` (Lambda reads code from its own region)."""
        prefetched, self._prefetch = self._prefetch, None
        remove_cache_temps(self._space.cache_dir)
        remove_stale_prebuilds(os.environ)
        if self._cache is None or not self._preloaded:
            self._cache = statcache.StatCache.load(self._space.stat_cache_path)
        cache, self._preloaded = self._cache, False
        done: Identified = {}
        if prefetched is not None and (result := prefetched.collect()) is not None:
            worker_found, handed, prebuilt, walks = result
            cache.take_back(handed)
            # Only for the very contents it was asked about (a head start is begun from the
            # manifest's early build, which is the checked one: this only makes sure).
            wanted = {spec.key: spec.content for spec in specs}
            done = {key: found for key, found in worker_found.items()
                    if key in wanted and prefetched.contents.get(key) == wanted[key]}
            self._take_prebuilt({key: made for key, made in prebuilt.items() if key in done})
            self._walks = {key: packed for key, packed in walks.items() if key in done}
            for key, made in prebuilt.items():
                if key not in done:
                    made.discard()
        local = [spec for spec in specs
                 if spec.content.kind is not model.SourceKind.S3 and spec.key not in done]
        if local:  # (none when the worker did them all: the cache it handed back stays as is)
            done.update(_identify_local(local, space=self._space, cache=cache, skip=self.skip))
        found: Identified = {}
        for spec in specs:
            if spec.content.kind is model.SourceKind.S3:
                found[spec.key] = self._identify_s3(spec, regions=(regions or {}).get(spec.key))
            else:
                found[spec.key] = done[spec.key]
        cache.save()
        return found

    def _take_prebuilt(self, prebuilt: Prebuilts) -> None:
        """Keep the zips the worker wrote ahead for `build` to move into place; those still
        here when the run ends were not needed and are removed."""
        if prebuilt and not self._prebuilt:
            atexit.register(self._discard_prebuilt)
        self._prebuilt.update(prebuilt)

    def _discard_prebuilt(self) -> None:
        for made in self._prebuilt.values():
            made.discard()
        self._prebuilt.clear()

    def _identify_s3(self, spec: model.LayerSpec,
                     regions: list[str] | None) -> model.Artifact | model.LayerError:
        path = ("layers", spec.key, "content", "s3")
        where = self._manifest.locate(path)
        located = (f"{self._manifest.file}:{where.line}:{where.column}: "
                   f"{manifest.field_name(path)}")
        if self._objects is None or not regions:
            return model.LayerError(layer=spec.key, message=f"{located}: an S3 source is "
                                    "read only by plan and apply, in a region")
        try:
            region = regions[0]
            found = self._objects.head_object(region=region,
                                              location=s3.location(spec.content))
            return s3.identify(spec.content, found=found, region=region)
        except errors.ContentError as error:
            return model.LayerError(layer=spec.key, message=f"{located}: {error.message}",
                                    hint=error.hint)
        except errors.AwsError as error:
            return model.LayerError(layer=spec.key, message=f"{located}: {error.message}",
                                    hint=error.hint)

    def sources(self) -> fetch.Sources:
        """Where this run's builds from locks get wheels (RECONCILE_CACHE_DIR's cache)."""
        if self._sources is None:
            self._sources = fetch.Sources(
                wheel_cache=wheel_cache.WheelCache(wheel_cache.default_root(os.environ)),
                index_for=self._package_index, environ=os.environ)
        return self._sources

    def build(self, spec: model.LayerSpec, artifact: model.Artifact) -> model.Artifact:
        """`artifact` with its zip built (or reused from `.reconcile/build/`)."""
        given = layerbuild.is_built(artifact)
        prebuilt = self._prebuilt.pop(spec.key, None)
        packed = self._walks.pop(spec.key, None)
        try:
            built = layerbuild.build(
                spec.content, artifact, base_dir=self._space.base_dir, label=self.label(spec),
                build_dir=self.build_dir, skip=self.skip, cache=self._cache,
                sources=self.sources() if spec.content.kind is model.SourceKind.LOCK else None,
                inspected=self._inspected, prebuilt=prebuilt,
                collected=common.unpack_walk(packed) if packed is not None else None)
        finally:
            if prebuilt is not None:  # moved into place, or not needed: gone either way
                prebuilt.discard()
        # A built layer's size and package sizes are known once its wheels are unpacked.
        built = dataclasses.replace(
            built, unzipped_size=(artifact.unzipped_size if artifact.unzipped_size is not None
                                  else built.unzipped_size),
            build=built.build or artifact.build)
        self._built[spec.key] = built
        found = self._inspected.pop(built.zip_path, None) if built.zip_path else None
        if found is not None and built.code_sha256 is not None:
            # The build read every member: the binary check's verdicts, without a re-read.
            self.verdicts.remember(code_sha256=built.code_sha256, elf_files=found[0],
                                   layer_files=found[1],
                                   runtimes=spec.settings.compatible_runtimes,
                                   architectures=spec.settings.compatible_architectures)
        if not given and built.zip_path is not None and built.code_sha256 is not None:
            # Its CodeSha256 comes from the bytes this run just wrote or read.
            self._remember_zip(built.zip_path, built.code_sha256)
        return built

    def _remember_zip(self, zip_path: str, code_sha256: str) -> None:
        with suppress(OSError):
            self._zips_read[zip_path] = (os.stat(zip_path), code_sha256)

    def _zip_has(self, zip_path: str, code_sha256: str) -> bool:
        """Whether the zip at `zip_path` has that CodeSha256. Known without reading it again
        when this run wrote or read it and its stat (size, mtime, ctime, inode) is the same
        since: a fleet's layer goes to every region from one zip, which was re-read for each
        (~30 ms a region for 37 MB). Any other is read. A change that kept the whole stat
        (a same-size rewrite within one timestamp tick of the build, on a file system with
        coarse timestamps) would still be caught after the publish: Lambda's CodeSha256 is
        compared with the plan's, and a version that differs is not recorded."""
        known = self._zips_read.get(zip_path)
        if known is not None and known[1] == code_sha256:
            with suppress(OSError):
                if common.same_file_state(os.stat(zip_path), known[0]):
                    return True
        if not zip_matches(Path(zip_path), code_sha256=code_sha256):
            return False
        self._remember_zip(zip_path, code_sha256)
        return True

    def zip_for(self, change: model.Change) -> Path:
        """The zip to upload for `change`, built from this checkout if needed and checked
        against the plan: the same fingerprint and the same CodeSha256, or ContentError."""
        spec = self._manifest.layer(change.layer)
        planned = change.desired
        artifact = self._built.get(change.layer)
        if artifact is None or artifact.fingerprint != planned.fingerprint:
            artifact = self.build(spec, model.Artifact(fingerprint=planned.fingerprint,
                                                       unzipped_size=planned.unzipped_size))
        if artifact.zip_path is None or planned.code_sha256 is None \
                or artifact.code_sha256 != planned.code_sha256 \
                or not self._zip_has(artifact.zip_path, planned.code_sha256):
            raise errors.ContentError(
                f"{self.label(spec)}: the zip built from this checkout has CodeSha256 "
                f"{artifact.code_sha256}, not the planned {planned.code_sha256}",
                hint="is this the commit the plan was made on? plan again")
        return Path(artifact.zip_path)

    def prune(self) -> None:
        """Keep in `.reconcile/build/` the zips this run built or reused, and each layer's
        latest zip (the base of its next incremental rebuild); remove the others."""
        keep = {artifact.zip_path for artifact in self._built.values() if artifact.zip_path}
        for spec in self._manifest.layers:
            latest = zipindex.latest_zip(self.build_dir, layer=self.label(spec))
            if latest is not None:
                keep.add(os.path.abspath(latest))
        prune_builds(self.build_dir, keep=keep)


def prune_builds(build_dir: Path, *, keep: set[str]) -> None:
    """Remove the zips in `build_dir` other than those in `keep` (absolute paths), so that the
    build folder holds what the latest plan needs rather than every zip ever built."""
    if not build_dir.is_dir():
        return
    for zip_path in build_dir.glob("*.zip"):
        if os.path.abspath(zip_path) not in keep:
            with suppress(OSError):  # best effort: it is only a cache
                os.unlink(zip_path)
                os.unlink(zipindex.index_path(zip_path))


def zip_matches(zip_path: Path, *, code_sha256: str) -> bool:
    """Whether the file at `zip_path` exists and has that CodeSha256 (checked right before an
    upload, since `.reconcile/` may be cleaned at any time)."""
    try:
        with open(zip_path, "rb") as zip_file:
            return archive.code_sha256(common.sha256_of(zip_file)) == code_sha256
    except OSError:
        return False


def remove_stale_prebuilds(environ: Mapping[str, str]) -> None:
    """Remove from the wheel cache's `prebuild/` the zips a killed run's worker wrote ahead
    (their writer, named in the file, is gone; or they are STALE_BUILD_TEMP_SECONDS old),
    whichever run next identifies layers: a killed run's folder layer may have been written
    there. Best effort."""
    folder = prebuild_dir(environ)
    if folder is not None and folder.is_dir():
        with suppress(OSError):
            layerbuild.remove_stale_build_temps(folder)


def remove_cache_temps(cache_dir: Path) -> list[Path]:
    """Remove the temp files a killed run left while saving the stat cache or a build's
    index or pointer (`.<name>.<random>.tmp` under `.reconcile/`); returns them. Their names
    carry no pid, but every such save is best effort: a live run whose temp is removed only
    fails to save that file (it costs time, never a record), so all found at the start of a
    run go. The zips' own temps (`*.zip.tmp`, named by pid) are left to the build clean-up."""
    removed: list[Path] = []
    for folder in (cache_dir, cache_dir / "build", cache_dir / "binaries"):
        for temp_path in folder.glob(".*.tmp"):
            if (temp_path.name.endswith(layerbuild.BUILD_TEMP_SUFFIX)
                    or not temp_path.is_file()):
                continue
            try:
                temp_path.unlink()
            except OSError:
                continue  # another run removed it first, or the folder is read-only
            removed.append(temp_path)
    return removed
