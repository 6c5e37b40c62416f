"""The layers' code on this machine: identify each layer's content (the stat cache loaded and
saved once per run), build zips into `.reconcile/build/`, reuse them, prune them, and hand
apply a zip verified against the CodeSha256 of the plan.

Shell: it reads the content and writes only under `.reconcile/`. A saved plan holds no zip, so
`zip_for` rebuilds one from the checkout when `.reconcile/` is gone (another runner, a fresh
clone): deterministic packaging makes it byte-identical, and the check proves it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from reconciler import errors, model, sources, workspace, zipbuild


class LocalCode:
    """The content of one manifest's layers, read relative to the manifest's folder."""

    def __init__(self, *, space: workspace.Workspace, manifest: model.Manifest) -> None:
        self._space = space
        self._manifest = manifest
        self.build_dir = space.cache_dir / "build"
        # Remote zips downloaded for adoption by content, each removed once compared.
        self.downloads_dir = space.cache_dir / "downloads"
        # Never packaged: the tool's own files change on every run, and a layer whose folder
        # holds them (`path: .`) would never converge.
        self.skip = frozenset({os.path.realpath(space.cache_dir),
                               os.path.realpath(space.lockfile_path)})
        self._built: dict[str, model.Artifact] = {}
        # The run's stat cache: a rebuild takes unchanged files' digests from it (to copy
        # their compressed bytes from the layer's previous zip) instead of reading them.
        self._cache: sources.StatCache | None = None

    @staticmethod
    def label(spec: model.LayerSpec) -> str:
        """How messages name a layer: `layers.<key>`."""
        return f"layers.{spec.key}"

    def identify(
        self, specs: list[model.LayerSpec]
    ) -> dict[str, model.Artifact | model.LayerError]:
        """Each layer's content identity (no zip), or the error that stops it from being
        planned; the stat cache is loaded and saved once."""
        cache = self._cache = sources.StatCache.load(self._space.stat_cache_path)
        found: dict[str, model.Artifact | model.LayerError] = {}
        for spec in specs:
            try:
                found[spec.key] = sources.identify(
                    spec.content, base_dir=self._space.base_dir, label=self.label(spec),
                    cache=cache, skip=self.skip)
            except errors.ContentError as error:
                found[spec.key] = model.LayerError(layer=spec.key, message=error.message,
                                                   hint=error.hint)
        cache.save()
        return found

    def build(self, spec: model.LayerSpec, artifact: model.Artifact) -> model.Artifact:
        """`artifact` with its zip built (or reused from `.reconcile/build/`)."""
        built = sources.build(spec.content, artifact, base_dir=self._space.base_dir,
                              label=self.label(spec), build_dir=self.build_dir, skip=self.skip,
                              cache=self._cache)
        built = dataclasses.replace(built, unzipped_size=artifact.unzipped_size)
        self._built[spec.key] = built
        return built

    def zip_for(self, change: model.LayerChange) -> Path:
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
                or not sources.zip_matches(Path(artifact.zip_path),
                                           code_sha256=planned.code_sha256):
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
            latest = zipbuild.latest_zip(self.build_dir, layer=self.label(spec))
            if latest is not None:
                keep.add(os.path.abspath(latest))
        sources.prune_builds(self.build_dir, keep=keep)
