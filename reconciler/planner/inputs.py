"""What one decision reads (Inputs: the desired layer, its lock entry, the remote latest and
the evidence asked for) and what follows from it alone: the desired artifact's digests vouched
for by the lock, the remote latest's CodeSha256 when the lock vouches for it, the next version
number. Pure: values in, values out."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass

from reconciler import model


@dataclass(frozen=True)
class Inputs:
    """Everything decide() needs for one layer in one region."""

    spec: model.LayerSpec
    region: str
    artifact: model.Artifact
    lock_entry: model.LockEntry | None
    remote_latest: model.RemoteVersion | None
    # Evidence asked for only when the layer needs it (None: not read).
    policy: frozenset[str] | None = None  # statement IDs on the remote latest version
    versions: tuple[model.RemoteVersion, ...] | None = None  # every live version
    function_uses: Mapping[str, tuple[str, ...]] | None = None  # version ARN -> functions
    # The manifest's artifact bucket for this region (None: the manifest names none).
    artifact_bucket: str | None = None
    # Adoption by content: whether the remote latest's zip may be downloaded, and what it
    # was found to hold.
    download: bool = False
    remote_content: model.RemoteContent | None = None


def desired_artifact(
    artifact: model.Artifact, lock_entry: model.LockEntry | None
) -> model.Artifact:
    """The artifact with its zip digests filled in from the lock when the fingerprint matches.

    Equal fingerprints mean equal zips (see the module docstring), so the zip need not be built.
    """
    if artifact.code_sha256 is not None or lock_entry is None:
        return artifact
    if lock_entry.fingerprint != artifact.fingerprint:
        return artifact
    return model.Artifact(
        fingerprint=artifact.fingerprint,
        code_sha256=lock_entry.code_sha256,
        content_sha256=lock_entry.content_sha256,
        code_size=lock_entry.code_size,
        zip_path=artifact.zip_path,
        unzipped_size=artifact.unzipped_size,
        build=artifact.build,
    )


def needs_zip(artifact: model.Artifact, lock_entry: model.LockEntry | None) -> bool:
    """True when the zip must be built to know the desired CodeSha256: the content is new or
    changed since the lock, so it is either about to be published or must be compared."""
    return desired_artifact(artifact, lock_entry).code_sha256 is None


def remote_code_sha256(
    remote_latest: model.RemoteVersion, lock_entry: model.LockEntry | None
) -> str | None:
    """The remote latest's CodeSha256 if known without GetLayerVersion (versions are
    immutable: the version the lock recorded still has the recorded CodeSha256)."""
    if remote_latest.code_sha256 is not None:
        return remote_latest.code_sha256
    if (lock_entry is not None and lock_entry.version == remote_latest.version
            and lock_entry.layer_version_arn == remote_latest.layer_version_arn):
        return lock_entry.code_sha256
    return None


def needs_remote_code(
    remote_latest: model.RemoteVersion | None, lock_entry: model.LockEntry | None
) -> bool:
    """True when GetLayerVersion must be called to learn the latest version's CodeSha256."""
    return remote_latest is not None and remote_code_sha256(remote_latest, lock_entry) is None


def fingerprints_files(content: model.ContentSpec) -> bool:
    """A folder's or a zip to normalize's fingerprint is of its files; a zip used as it is
    is identified by its bytes, so other bytes are other content."""
    return content.kind is model.SourceKind.PATH or (
        content.kind is model.SourceKind.ZIP and content.normalize)


def hex_of(code_sha256: str) -> str | None:
    """The hex SHA-256 of a base64 CodeSha256 (None when it is not one)."""
    try:
        return base64.b64decode(code_sha256, validate=True).hex()
    except (binascii.Error, ValueError):
        return None


PUBLISHING = (model.Action.CREATE, model.Action.PUBLISH)


def highest_number(item: Inputs) -> int:
    """The highest version number known to be taken in the region (0: none): the latest,
    the recorded one, and any listed version, fillers included (Lambda never reuses a
    number, so the next publish gets a higher one)."""
    known = [v.version for v in (item.remote_latest, item.lock_entry) if v is not None]
    known.extend(version.version for version in item.versions or ())
    return max(known, default=0)
