"""Layer content by kind: a ContentSpec's kind chooses its module (`folder`, `zipsource`, `lock`:
a layer built from a lock file), and
this package's functions are the one place that dispatches on it for local content. An S3
source (`s3`) has no local entries: `artifacts` asks HeadObject through the ArtifactStore port
and `s3` turns the answer into its identity. Shared pieces live in `common` and the stat cache
in `statcache`.

Shell: it reads the layers' content and writes nothing but the stat cache; it never prints,
prompts or talks to AWS. The kind modules are unaware of each other (tests/test_layering.py);
building zips into `.reconcile/build` is `artifacts`'.

Containment: a content folder or zip must resolve (symlinks resolved) inside the repository
that holds the manifest (`common.repository_root`), so that no `../..`, absolute path or
symlinked folder can publish files from elsewhere on the machine. The tool's own files are
never packaged: the `skip` paths and, beside each, the hidden files named `.<its name>.*` (its
temp and lock files). Nor is anything named `.git` (common.is_git_name), whatever the patterns
say: a content path at or in one is refused, a zip used as it is that holds one is refused, and
folders and zips to normalize leave it out. A hard link cannot be followed to its other names,
so only a private one (only its owner may read it) with links out of sight is refused
(common.private_hard_link).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler import errors, model
from reconciler.content import common, folder, statcache

if TYPE_CHECKING:
    from reconciler.builds import fetch

# The zip and lock kinds are imported where a layer of theirs is met: the lock readers bring
# packaging and the builds package (~25 ms), which a manifest of folders never needs, and a
# plan's head start forks its worker only once this package is imported.


def collect(
    content: model.ContentSpec, *, base_dir: Path, label: str, skip: frozenset[str] = frozenset()
) -> list[model.Entry]:
    """The entries of a folder (`path`) or of a zip to normalize, checked for safety and size.

    `base_dir` is the manifest's folder, which relative paths are read against (never the
    working directory); `label` names the layer in messages, such as "layers.shared-utils";
    `skip` holds real (symlink-free) paths never packaged (the tool's own cache folder and
    lockfile, which change on every run and would make a layer holding them never converge).
    """
    with common.layer_errors(label):
        return collected(content, base_dir=base_dir, label=label, skip=skip).entries


def collected(
    content: model.ContentSpec, *, base_dir: Path, label: str, skip: frozenset[str],
    sources: fetch.Sources | None = None,
) -> common.Collected:
    """The entries of a folder or a zip to normalize, with what reading their bytes needs;
    for a layer built from a lock, the build's (its wheels come from `sources`)."""
    if content.kind is model.SourceKind.PATH:
        return folder.collect(content, base_dir=base_dir, label=label, skip=skip)
    if content.kind is model.SourceKind.ZIP:
        from reconciler.content import zipsource

        return zipsource.collect(content, base_dir=base_dir, label=label)
    if content.kind is model.SourceKind.LOCK:
        from reconciler.content import lock

        return lock.collect(content, base_dir=base_dir, label=label, sources=sources)
    raise _s3_unsupported(label)


def _s3_unsupported(label: str) -> errors.ContentError:
    return errors.ContentError(f"{label}: an S3 source has no local files; it is identified "
                               "by HeadObject in plan and apply")


def identify(
    content: model.ContentSpec,
    *,
    base_dir: Path,
    label: str,
    cache: statcache.StatCache,
    skip: frozenset[str] = frozenset(),
) -> model.Artifact:
    """The content identity of a layer, computed without zipping.

    For a folder or a zip to normalize, only the fingerprint is known (file digests come from
    `cache` when a file is unchanged). A zip without normalize is the artifact itself, byte for
    byte, so every digest is known at once.
    """
    with common.layer_errors(label):
        if content.kind is model.SourceKind.PATH:
            return folder.identify(content, base_dir=base_dir, label=label, cache=cache,
                                   skip=skip)
        if content.kind is model.SourceKind.ZIP:
            from reconciler.content import zipsource

            return zipsource.identify(content, base_dir=base_dir, label=label, cache=cache)
        if content.kind is model.SourceKind.LOCK:
            from reconciler.content import lock

            return lock.identify(content, base_dir=base_dir, label=label)
        raise _s3_unsupported(label)


def identify_all(
    layers: Sequence[tuple[str, model.ContentSpec]],
    *,
    base_dir: Path,
    cache: statcache.StatCache,
    skip: frozenset[str] = frozenset(),
    walked_into: dict[str, common.Collected] | None = None,
) -> dict[str, model.Artifact | errors.ContentError]:
    """`identify` for several layers (label -> its identity, or the ContentError that stops
    it): the folders are walked first, then all their files are read within one
    StatCache.reading_ahead, so that a helper process reads a share of them even when each
    layer alone is too small for one (a hundred layers of a hundred files). Each layer's
    result is the one `identify` gives it alone: a problem in one stops only that layer.
    `walked_into` receives the walk of each folder identified, with its files' digests, by
    label."""
    found: dict[str, model.Artifact | errors.ContentError] = {}
    walked: list[tuple[str, common.Collected]] = []
    for label, content in layers:
        try:
            with common.layer_errors(label):
                if content.kind is model.SourceKind.PATH:
                    walked.append((label, folder.collect(content, base_dir=base_dir,
                                                         label=label, skip=skip)))
                else:
                    found[label] = identify(content, base_dir=base_dir, label=label,
                                            cache=cache, skip=skip)
        except errors.ContentError as error:
            found[label] = error
    files = [item for _, collected in walked for item in folder.files_of(collected)]
    with cache.reading_ahead(files):
        for label, collected in walked:
            try:
                with common.layer_errors(label):
                    digests: dict[str, str] = {}
                    found[label] = folder.fingerprint(collected, cache=cache,
                                                      digests_into=digests)
                if walked_into is not None:
                    walked_into[label] = dataclasses.replace(collected, sha256=digests)
            except errors.ContentError as error:
                found[label] = error
    return {label: found[label] for label, _ in layers}
