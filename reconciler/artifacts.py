"""The layers' code on this machine: identify each layer's content (the stat cache loaded and
saved once per run), have their zips built into `.reconcile/build/` (by `layerbuild`), reuse
them, prune them, and hand apply a zip verified against the CodeSha256 of the plan.

Shell: it reads the content and writes only under `.reconcile/`; the zips the head start's
worker wrote ahead (`headstart`: in `.reconcile/build/` or the wheel cache's `prebuild/`) it
moves into place or removes. A saved plan holds no zip, so
`zip_for` rebuilds one from the checkout when `.reconcile/` is gone (another runner, a fresh
clone): deterministic packaging makes it byte-identical, and the check proves it.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

from reconciler import (
    archive,
    binaries,
    errors,
    headstart,
    layerbuild,
    manifest,
    model,
    ports,
    uploadbody,
    workspace,
    zipindex,
)
from reconciler.builds import cache as wheel_cache
from reconciler.builds import fetch
from reconciler.content import common, s3, statcache


class LocalCode:
    """The content of one manifest's layers, read relative to the manifest's folder."""

    def __init__(self, *, space: workspace.Workspace, manifest: model.Manifest,
                 objects: ports.ArtifactStore | None = None,
                 head_start: headstart.HeadStart | None = None,
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
        self.skip = headstart.own_paths(space)
        self._built: dict[str, model.Artifact] = {}
        # Zips whose CodeSha256 this run computed from their bytes, with their stat then.
        self._zips_read: dict[str, tuple[os.stat_result, str]] = {}
        # The run's stat cache: a rebuild takes unchanged files' digests from it (to copy
        # their compressed bytes from the layer's previous zip) instead of reading them.
        self._cache: statcache.StatCache | None = None
        self._prefetch: headstart.Prefetch | None = None
        # The zips the worker wrote ahead (built and folder layers'), by layer key, until
        # `build` takes them.
        self._prebuilt: headstart.Prebuilts = {}
        # Folder layers' walks the worker handed back (packed), by layer key, for `build`.
        self._walks: dict[str, bytes] = {}
        # An apply's: the file the worker wrote the base64 of a zip it wrote ahead into (the
        # one whose Prebuilt says `encoded`), for `build` to offer to that zip's upload.
        self._spool: BinaryIO | None = None
        # The stat cache is a head start's (deferred: read at first use), for identify().
        self._preloaded = False
        if head_start is not None:
            self._take(head_start)

    def _take(self, head_start: headstart.HeadStart) -> None:
        self._cache, self._prefetch = head_start.cache, head_start.prefetch
        self._preloaded = True

    def prefetch(self, specs: list[model.LayerSpec]) -> None:
        """Start identifying the local layers of `specs` of this (checked) manifest in a
        worker process (headstart.HeadStart); the next `identify` takes its results. The
        run's stat cache is then read once, by the worker, whose copy's lessons it takes."""
        self._take(headstart.HeadStart.begin(self._space, specs, state=self._manifest.state,
                                             checked=True))

    @property
    def prefetching(self) -> headstart.Prefetch | None:
        """The worker started by `prefetch` and not yet collected by `identify`, if any."""
        return self._prefetch

    def use_objects(self, objects: ports.ArtifactStore) -> None:
        """The store S3 sources are looked up in (made after `prefetch` has started)."""
        self._objects = objects

    @staticmethod
    def label(spec: model.LayerSpec) -> str:
        """How messages name a layer: `layers.<key>`."""
        return headstart.label(spec)

    def identify(
        self, specs: list[model.LayerSpec], *, regions: dict[str, list[str]] | None = None
    ) -> dict[str, model.Artifact | model.LayerError]:
        """Each layer's content identity (no zip), or the error that stops it from being
        planned; the stat cache is loaded and saved once. An S3 source is looked up with
        HeadObject in the first of its `regions` (Lambda reads code from its own region)."""
        prefetched, self._prefetch = self._prefetch, None
        remove_cache_temps(self._space.cache_dir)
        headstart.remove_stale_prebuilds(os.environ)
        with suppress(OSError):  # a killed run's zip, written ahead there by its worker
            layerbuild.remove_stale_build_temps(self.build_dir)
        if self._cache is None or not self._preloaded:
            self._cache = statcache.StatCache.load(self._space.stat_cache_path)
        cache, self._preloaded = self._cache, False
        done: headstart.Identified = {}
        if prefetched is not None and (result := prefetched.collect()) is not None:
            worker_found, handed, prebuilt, walks = result
            cache.take_back(handed)
            # Only for the very contents it was asked about (a head start is begun from the
            # manifest's early build, which is the checked one: this only makes sure).
            wanted = {spec.key: spec.content for spec in specs}
            done = {key: found for key, found in worker_found.items()
                    if key in wanted and prefetched.contents.get(key) == wanted[key]}
            self._take_prebuilt({key: made for key, made in prebuilt.items() if key in done})
            if any(made.encoded for made in self._prebuilt.values()):
                self._spool = prefetched.spool
            elif prefetched.spool is not None:  # nothing was encoded into it
                prefetched.spool.close()
            self._walks = {key: packed for key, packed in walks.items() if key in done}
            for key, made in prebuilt.items():
                if key not in done:
                    made.discard()
        local = [spec for spec in specs
                 if spec.content.kind is not model.SourceKind.S3 and spec.key not in done]
        if local:  # (none when the worker did them all: the cache it handed back stays as is)
            done.update(headstart.identify_local(local, space=self._space, cache=cache,
                                                 skip=self.skip))
        found: headstart.Identified = {}
        for spec in specs:
            if spec.content.kind is model.SourceKind.S3:
                found[spec.key] = self._identify_s3(spec, regions=(regions or {}).get(spec.key))
            else:
                found[spec.key] = done[spec.key]
        cache.save()
        return found

    def _take_prebuilt(self, prebuilt: headstart.Prebuilts) -> None:
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
        if prebuilt is not None and prebuilt.encoded and built.zip_path is not None:
            self._offer_encoding(prebuilt, Path(built.zip_path))
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

    def _offer_encoding(self, prebuilt: layerbuild.Prebuilt, zip_path: Path) -> None:
        """Offer the base64 the worker wrote of `prebuilt` to the upload of the zip now at
        `zip_path`, when that zip is the very file it encoded (moved into place: the same
        inode, size and mtime); the file is the run's once (none for a zip built here
        instead)."""
        spool, self._spool = self._spool, None
        if spool is None:
            return
        inode, size, mtime_ns, _ = prebuilt.written.written_as
        encoded = uploadbody.EncodedZip.adopted(spool, path=zip_path, size=size, inode=inode,
                                                mtime_ns=mtime_ns)
        if encoded is not None:
            uploadbody.offer(zip_path, encoded)

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
