"""The layers' code on this machine: identify each layer's content (the stat cache loaded and
saved once per run), build zips into `.reconcile/build/`, reuse them, prune them, and hand
apply a zip verified against the CodeSha256 of the plan.

Shell: it reads the content and writes only under `.reconcile/`. A saved plan holds no zip, so
`zip_for` rebuilds one from the checkout when `.reconcile/` is gone (another runner, a fresh
clone): deterministic packaging makes it byte-identical, and the check proves it.
Build temp files left by a killed build are removed by the next build into the same folder.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import tempfile
import time
import zipfile
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path

from reconciler import (
    archive,
    binaries,
    elfcheck,
    errors,
    forking,
    manifest,
    model,
    ports,
    workspace,
    zipbuild,
    zipindex,
)
from reconciler import content as layer_content
from reconciler.builds import cache as wheel_cache
from reconciler.builds import fetch
from reconciler.content import common, s3, statcache

Identified = dict[str, "model.Artifact | model.LayerError"]
# What a build read of its ELF members, by the zip's path: (ELF member -> what it needs, every
# member's name), so that the binary check of a zip just built needs no second read.
Inspected = dict[str, tuple[Mapping[str, "elfcheck.ElfInfo | elfcheck.BadElf"], list[str]]]


def _identify_local(specs: list[model.LayerSpec], *, space: workspace.Workspace,
                    cache: statcache.StatCache, skip: frozenset[str]) -> Identified:
    """Each local (folder or zip) layer's identity, or the content error that stops it."""
    identified = layer_content.identify_all(
        [(LocalCode.label(spec), spec.content) for spec in specs], base_dir=space.base_dir,
        cache=cache, skip=skip)
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
    learned (`StatCache.hand_back`: the bytes of the cache to save); this process saves the
    cache, once. Any failure of the worker (killed, an unexpected error, a result that does
    not unpickle) only means the layers are identified here instead, as without a worker.
    """

    def __init__(self, *, worker: forking.Forked[tuple[Identified, dict[str, object]]],
                 contents: dict[str, model.ContentSpec]) -> None:
        self._worker = worker
        self.contents = contents  # what the worker identifies, by layer key

    @classmethod
    def start(cls, *, space: workspace.Workspace, specs: list[model.LayerSpec],
              cache: statcache.StatCache, skip: frozenset[str]) -> Prefetch | None:
        """Fork the worker for the local layers of `specs`; None where it would not help or
        fork is not safe (nothing to identify, not Linux, a thread already running)."""
        local = [spec for spec in specs if spec.content.kind is not model.SourceKind.S3]
        if not local:
            return None
        worker = forking.Forked.start(lambda: (
            _identify_local(local, space=space, cache=cache, skip=skip), cache.hand_back()))
        if worker is None:
            return None
        started = cls(worker=worker, contents={spec.key: spec.content for spec in local})
        # A run that ends before it collects (a credentials error, a usage error) must not
        # leave its worker hashing on in the background.
        atexit.register(started.cancel)
        return started

    def cancel(self) -> None:
        """Stop the worker if it is still running and nobody collected it."""
        self._worker.cancel()

    @property
    def pid(self) -> int:
        """The worker's process ID."""
        return self._worker.pid

    def collect(self) -> tuple[Identified, dict[str, object]] | None:
        """The worker's results and what its cache hands back (waiting for them), or None if
        it failed."""
        result = self._worker.collect()
        if (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], dict)
                and isinstance(result[1], dict)):
            return result
        return None


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
    def begin(cls, space: workspace.Workspace, specs: list[model.LayerSpec]) -> HeadStart:
        """Load the stat cache and start the worker for the local layers of `specs`; it
        writes nothing (the manifest may yet prove invalid: then nothing may change)."""
        cache = statcache.StatCache.load(space.stat_cache_path)
        return cls(cache=cache, prefetch=Prefetch.start(space=space, specs=specs, cache=cache,
                                                        skip=own_paths(space)))

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
        self._inspected: Inspected = {}
        self.skip = own_paths(space)
        self._built: dict[str, model.Artifact] = {}
        # Zips whose CodeSha256 this run computed from their bytes, with their stat then.
        self._zips_read: dict[str, tuple[os.stat_result, str]] = {}
        # The run's stat cache: a rebuild takes unchanged files' digests from it (to copy
        # their compressed bytes from the layer's previous zip) instead of reading them.
        self._cache: statcache.StatCache | None = None
        self._prefetch: Prefetch | None = None
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
        self._take(HeadStart.begin(self._space, specs))

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
        if self._cache is None or not self._preloaded:
            self._cache = statcache.StatCache.load(self._space.stat_cache_path)
        cache, self._preloaded = self._cache, False
        done: Identified = {}
        if prefetched is not None and (result := prefetched.collect()) is not None:
            worker_found, handed = result
            cache.take_back(handed)
            # Only for the very contents it was asked about (a head start is begun from the
            # manifest's early build, which is the checked one: this only makes sure).
            wanted = {spec.key: spec.content for spec in specs}
            done = {key: found for key, found in worker_found.items()
                    if key in wanted and prefetched.contents.get(key) == wanted[key]}
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
        given = _is_built(artifact)
        built = build(spec.content, artifact, base_dir=self._space.base_dir,
                              label=self.label(spec), build_dir=self.build_dir, skip=self.skip,
                              cache=self._cache,
                              sources=self.sources() if spec.content.kind is
                              model.SourceKind.LOCK else None, inspected=self._inspected)
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


# Build temp files: `.<fingerprint[:16]>.<pid>.<random>.zip.tmp`. One not written to for this
# long is abandoned whoever wrote it (a live writer touches it with every chunk).
BUILD_TEMP_SUFFIX = ".zip.tmp"
STALE_BUILD_TEMP_SECONDS = 300


def _is_built(artifact: model.Artifact) -> bool:
    return None not in (
        artifact.zip_path,
        artifact.code_sha256,
        artifact.content_sha256,
        artifact.code_size,
    )


def build(
    content: model.ContentSpec,
    artifact: model.Artifact,
    *,
    base_dir: Path,
    label: str,
    build_dir: Path,
    skip: frozenset[str] = frozenset(),
    previous_zip: Path | None = None,
    cache: statcache.StatCache | None = None,
    sources: fetch.Sources | None = None,
    inspected: Inspected | None = None,
) -> model.Artifact:
    """The artifact with its zip built: `build_dir/<fingerprint>.zip` and its digests.

    A zip already built for the fingerprint is reused (only re-hashed). Otherwise the content is
    collected again, zipped on every core into a temporary file and moved into place; if what
    was zipped no longer has the fingerprint that was planned, the content changed since and a
    ContentError says so. A prebuilt zip (all digests known) is returned unchanged. The 50 MB
    direct-upload limit is the caller's to apply.

    The zip is rebuilt incrementally from `previous_zip` (default: the layer's latest zip in
    `build_dir`, found by `label`): unchanged files, known by their digests (from `cache`, or
    read again without one), have their compressed bytes copied; the bytes are those of a
    full build (see `zipbuild`). A layer built from a lock takes its wheels from `sources`.
    """
    if _is_built(artifact):
        return artifact
    with common.layer_errors(label):
        return _build(
            content, artifact, base_dir=base_dir, label=label, build_dir=build_dir, skip=skip,
            previous_zip=previous_zip, cache=cache, sources=sources, inspected=inspected,
        )


def _build(
    content: model.ContentSpec,
    artifact: model.Artifact,
    *,
    base_dir: Path,
    label: str,
    build_dir: Path,
    skip: frozenset[str],
    previous_zip: Path | None,
    cache: statcache.StatCache | None,
    sources: fetch.Sources | None = None,
    inspected: Inspected | None = None,
) -> model.Artifact:
    if content.kind is model.SourceKind.ZIP and not content.normalize:
        # Only the fingerprint was given: the prebuilt zip is hashed again, uncached.
        uncached = statcache.StatCache(build_dir / "unused", entries={}, written_ns=0)
        prebuilt = layer_content.identify(content, base_dir=base_dir, label=label, cache=uncached)
        if prebuilt.fingerprint != artifact.fingerprint:
            raise _changed_while_planning(
                label, planned=artifact.fingerprint, found=prebuilt.fingerprint
            )
        return prebuilt
    zip_path = build_dir / f"{artifact.fingerprint}.zip"
    build_dir.mkdir(parents=True, exist_ok=True)
    if zip_path.is_file() and zipfile.is_zipfile(zip_path):
        built = _built_artifact(artifact.fingerprint, zip_path)
    else:
        built = _build_zip(
            content, artifact, base_dir=base_dir, label=label, zip_path=zip_path, skip=skip,
            previous_zip=previous_zip or zipindex.latest_zip(build_dir, layer=label),
            cache=cache, sources=sources, inspected=inspected,
        )
    zipindex.remember_latest(build_dir, layer=label, zip_path=zip_path)
    return built


def _build_zip(
    content: model.ContentSpec,
    artifact: model.Artifact,
    *,
    base_dir: Path,
    label: str,
    zip_path: Path,
    skip: frozenset[str],
    previous_zip: Path | None,
    cache: statcache.StatCache | None,
    sources: fetch.Sources | None = None,
    inspected: Inspected | None = None,
) -> model.Artifact:
    collected = layer_content.collected(content, base_dir=base_dir, label=label, skip=skip,
                                        sources=sources)
    if collected.build is not None and collected.build.inputs_sha256 != artifact.fingerprint:
        # A built layer's fingerprint is its inputs digest: the lock changed since the plan.
        raise _changed_while_planning(label, planned=artifact.fingerprint,
                                      found=collected.build.inputs_sha256)
    remove_stale_build_temps(zip_path.parent)
    # The writer's pid in the name lets a later build tell an abandoned temp file.
    known_sha256: zipbuild.KnownSha256 | None = None
    if content.kind is model.SourceKind.PATH:
        # Without the caller's cache, a file is read once more to be hashed: still far
        # cheaper than deflating it again.
        digests = cache or statcache.StatCache(zip_path.parent / "unused", entries={}, written_ns=0)

        def known_sha256(entry: model.Entry) -> str:
            return digests.file_sha256(entry.source, collected.stats[entry.source])

    descriptor, temp_name = tempfile.mkstemp(
        dir=zip_path.parent, prefix=f".{zip_path.stem[:16]}.{os.getpid()}.",
        suffix=BUILD_TEMP_SUFFIX,
    )
    try:
        with (
            os.fdopen(descriptor, "w+b") as temp_file,
            common.EntryReader(collected.stats) as reader,
            zipindex.open_previous(previous_zip) as previous,
        ):
            facts = _wheel_facts(collected, sources=sources)
            raw_source = _wheel_members(collected.entries, facts=facts) \
                if content.kind is model.SourceKind.LOCK else None
            built = zipbuild.write_zip(
                collected.entries, out=temp_file, open_entry=reader.open, previous=previous,
                known_sha256=known_sha256, raw_source=raw_source,
                inspect=inspected is not None,
                # Members of one zip are read through one shared ZipFile: one worker (a
                # wheel's are read by their offsets, from any thread).
                workers=None if content.kind in (model.SourceKind.PATH, model.SourceKind.LOCK)
                else 1,
            )
            temp_file.flush()
            os.fsync(temp_file.fileno())
        file_sha256 = built.file_sha256()
        zipped = collected.build.inputs_sha256 if collected.build is not None else (
            archive.fingerprint(
                (entry, file_sha256[entry.arcname]) for entry in collected.entries))
        if zipped != artifact.fingerprint:
            raise _changed_while_planning(label, planned=artifact.fingerprint, found=zipped)
        os.replace(temp_name, zip_path)
    except BaseException:
        common.remove_quietly(temp_name)
        raise
    zipindex.save_index(zip_path, built)
    _keep_wheel_facts(built, collected=collected, sources=sources)
    if inspected is not None and built.elf_files is not None:
        inspected[os.path.abspath(zip_path)] = (
            built.elf_files, [entry.arcname for entry in collected.entries])
    return model.Artifact(
        fingerprint=artifact.fingerprint,
        code_sha256=archive.code_sha256(built.sha256),
        content_sha256=built.sha256.hex(),
        code_size=built.code_size,
        zip_path=os.path.abspath(zip_path),
        unzipped_size=(sum(entry.size for entry in collected.entries)
                       if collected.build is not None else None),
        build=collected.build,
    )


WheelFacts = dict[str, dict[str, wheel_cache.MemberFacts]]


def _wheel_facts(collected: common.Collected, *,
                 sources: fetch.Sources | None) -> WheelFacts:
    """What earlier builds found of the wheels' members, by wheel path (the wheel cache's
    facts, by each wheel's verified SHA-256)."""
    if sources is None:
        return {}
    return {path: sources.wheel_cache.facts(sha256)
            for path, sha256 in collected.wheel_sha256.items()}


def _keep_wheel_facts(built: zipindex.BuiltZip, *, collected: common.Collected,
                      sources: fetch.Sources | None) -> None:
    """Keep in the wheel cache what this build checked of the wheels' members."""
    if sources is None or not built.checked:
        return
    found: WheelFacts = {}
    for member in built.checked:
        found.setdefault(member.wheel, {})[member.name] = wheel_cache.MemberFacts(
            crc=member.crc, size=member.size, elf=member.elf)
    for path, facts in found.items():
        sha256 = collected.wheel_sha256.get(path)
        if sha256 is not None:
            sources.wheel_cache.put_facts(sha256, facts)


def _wheel_members(entries: list[model.Entry], *, facts: WheelFacts) -> zipbuild.RawSource:
    """A built layer's entries by their wheels' offsets (zipbuild.wheel_source); a member an
    earlier build checked (the same CRC and size in the central directory) is copied without
    inflating it again."""
    def known(raw: zipbuild.RawMember) -> zipbuild.RawMember:
        fact = facts.get(raw.path, {}).get(raw.name)
        if fact is None or not raw.deflated or (fact.crc, fact.size) != (raw.crc, raw.size):
            return raw
        return dataclasses.replace(raw, checked=True, elf=fact.elf)

    return zipbuild.wheel_source(entries, known=known)


def remove_stale_build_temps(build_dir: Path, *, now_ns: int | None = None) -> list[Path]:
    """Remove the `*.zip.tmp` files a build left in `build_dir` when it was killed: those
    whose writer (the pid in the name) is gone, and any not written to for
    STALE_BUILD_TEMP_SECONDS (a live writer keeps its file's mtime fresh). Returns them."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    removed: list[Path] = []
    for temp_path in build_dir.glob(f"*{BUILD_TEMP_SUFFIX}"):
        try:
            modified_ns = temp_path.stat().st_mtime_ns
        except OSError:
            continue
        writer_gone = _writer_gone(temp_path.name)
        too_old = now_ns - modified_ns > STALE_BUILD_TEMP_SECONDS * 1_000_000_000
        if writer_gone or too_old:
            with suppress(OSError):  # best effort: another run may be removing it too
                temp_path.unlink()
                removed.append(temp_path)
    return removed


def _writer_gone(temp_name: str) -> bool:
    """Whether the process named in `.<stem>.<pid>.<random>.zip.tmp` no longer exists (False
    when the name carries no pid, or the answer is unknown)."""
    parts = temp_name.split(".")
    if len(parts) < 6 or not parts[2].isdigit():
        return False
    pid = int(parts[2])
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists but is another user's, or signals are not supported here
        return False
    return False


def _changed_while_planning(label: str, *, planned: str, found: str) -> errors.ContentError:
    return errors.ContentError(
        f"{label}: the content changed while planning "
        f"(planned fingerprint {planned[:12]}, found {found[:12]})",
        hint="run the command again once the files are stable",
    )


def _built_artifact(fingerprint: str, zip_path: Path) -> model.Artifact:
    with open(zip_path, "rb") as zip_file:
        digest = common.sha256_of(zip_file)
        code_size = os.fstat(zip_file.fileno()).st_size
    return model.Artifact(
        fingerprint=fingerprint,
        code_sha256=archive.code_sha256(digest),
        content_sha256=digest.hex(),
        code_size=code_size,
        zip_path=os.path.abspath(zip_path),
    )


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


def remove_cache_temps(cache_dir: Path) -> list[Path]:
    """Remove the temp files a killed run left while saving the stat cache or a build's
    index or pointer (`.<name>.<random>.tmp` under `.reconcile/`); returns them. Their names
    carry no pid, but every such save is best effort: a live run whose temp is removed only
    fails to save that file (it costs time, never a record), so all found at the start of a
    run go. The zips' own temps (`*.zip.tmp`, named by pid) are left to the build clean-up."""
    removed: list[Path] = []
    for folder in (cache_dir, cache_dir / "build", cache_dir / "binaries"):
        for temp_path in folder.glob(".*.tmp"):
            if temp_path.name.endswith(BUILD_TEMP_SUFFIX) or not temp_path.is_file():
                continue
            try:
                temp_path.unlink()
            except OSError:
                continue  # another run removed it first, or the folder is read-only
            removed.append(temp_path)
    return removed
