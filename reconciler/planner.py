"""The decision: desired x recorded x observed -> model.LayerChange, one small pure function
per layer (`decide`) and the whole plan (`plan`). The only importer of deepdiff.

Why planning from the fingerprint can never miss a change: a layer's zip is a pure function
of its entries (path, bytes, executable bit) and the packaging format version, and the
fingerprint hashes exactly those inputs. Equal fingerprints therefore mean equal zips, so a
lock entry whose fingerprint equals the local one tells us the zip's CodeSha256 without
building it. Any change to any input changes the fingerprint, and then the zip is built and
its real CodeSha256 compared with Lambda's; a version number is immutable, so a remote
latest version equal to the recorded one has the recorded CodeSha256.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from deepdiff import DeepDiff

from reconciler import model


@dataclass(frozen=True)
class Inputs:
    """Everything decide() needs for one layer in one region."""

    spec: model.LayerSpec
    region: str
    artifact: model.Artifact
    lock_entry: model.LockEntry | None
    remote_latest: model.RemoteVersion | None


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


class Evidence(enum.Enum):
    """What the planner may ask for before it can decide a layer in a region."""

    ZIP = "zip"  # build the zip: its CodeSha256 is unknown, or it is about to be uploaded
    REMOTE_CODE = "remote_code"  # GetLayerVersion: the remote latest's CodeSha256


def missing_evidence(inputs: Inputs) -> frozenset[Evidence]:
    """The evidence decide() still needs for `inputs` (empty: it can decide).

    The caller fulfils what is asked and asks again, so the planner decides once, from
    complete evidence: the remote latest's CodeSha256 when the lock cannot vouch for it
    (a version it did not record), and the zip when its digest is unknown (new or changed
    content) or when the layer will be published (its settings changed, or Lambda drifted):
    the plan then shows exactly the CodeSha256 that apply uploads.
    """
    needs: set[Evidence] = set()
    lock_entry, remote = inputs.lock_entry, inputs.remote_latest
    artifact = desired_artifact(inputs.artifact, lock_entry)
    if needs_remote_code(remote, lock_entry):
        needs.add(Evidence.REMOTE_CODE)
    if artifact.code_sha256 is None:
        needs.add(Evidence.ZIP)
    elif inputs.artifact.zip_path is None and not needs:
        change = decide(inputs)
        if change.action in (model.Action.CREATE, model.Action.PUBLISH):
            needs.add(Evidence.ZIP)
    return frozenset(needs)


def decide(inputs: Inputs) -> model.LayerChange:
    """Decide the action for one layer in one region.

    Decision table (R = latest remote version, L = lock entry, "same" = R's CodeSha256 and
    settings equal the desired zip's CodeSha256 and settings):

    | R      | L                   | same | action  | reasons                                  |
    |--------|---------------------|------|---------|------------------------------------------|
    | none   | none                |  -   | create  | new_layer                                |
    | none   | recorded            |  -   | create  | new_layer, remote_drift (deleted)        |
    | exists | none                | yes  | noop    | adopted (apply records R in the lock)    |
    | exists | none                | no   | publish | content_changed and/or settings_changed  |
    | exists | L.version == R      | yes  | noop    | (none)                                   |
    | exists | L.version == R      | no   | publish | content_changed and/or settings_changed  |
    | exists | L.version != R      | yes  | noop    | remote_drift (apply records R)           |
    | exists | L.version != R      | no   | publish | remote_drift + what changed              |

    remote_drift says whether a version was published outside reconcile (R newer than L) or
    the recorded version was deleted (R older than L, or no version at all). A reason never
    changes the action: the action depends on R and the desired layer alone.
    """
    spec, region, lock_entry, remote = (
        inputs.spec, inputs.region, inputs.lock_entry, inputs.remote_latest
    )
    artifact = desired_artifact(inputs.artifact, lock_entry)
    desired = model.Desired(
        settings=spec.settings,
        fingerprint=artifact.fingerprint,
        code_sha256=artifact.code_sha256,
        content_sha256=artifact.content_sha256,
        code_size=artifact.code_size,
        grants=spec.grants,
        source=spec.content.kind,
        unzipped_size=artifact.unzipped_size,
    )
    reasons: list[model.Reason] = []
    notes: list[str] = []
    drift = _drift_note(remote, lock_entry)
    known_versions = [v.version for v in (remote, lock_entry) if v is not None]
    expected_version = max(known_versions, default=0) + 1

    if remote is None:
        reasons.append(model.Reason.NEW_LAYER)
        if drift:
            reasons.append(model.Reason.REMOTE_DRIFT)
            notes.append(drift)
        return model.LayerChange(
            layer=spec.key, layer_name=spec.name, region=region, action=model.Action.CREATE,
            reasons=tuple(reasons), current=None, desired=desired,
            diff=(model.FieldChange(field="code_sha256", before=None,
                                    after=desired.code_sha256),
                  *settings_diff(model.Settings(), spec.settings)),
            notes=tuple(notes), expected_version=expected_version,
        )

    remote_code = remote_code_sha256(remote, lock_entry)
    current = model.RemoteVersion(
        version=remote.version, layer_version_arn=remote.layer_version_arn,
        settings=remote.settings, code_sha256=remote_code, code_size=remote.code_size,
    )
    diff: list[model.FieldChange] = []
    content_changed = desired.code_sha256 is None or desired.code_sha256 != remote_code
    if content_changed:
        reasons.append(model.Reason.CONTENT_CHANGED)
        diff.append(model.FieldChange(field="code_sha256", before=remote_code,
                                      after=desired.code_sha256))
    field_changes = settings_diff(remote.settings, spec.settings)
    if field_changes:
        reasons.append(model.Reason.SETTINGS_CHANGED)
        diff.extend(field_changes)
    if drift:
        reasons.insert(0, model.Reason.REMOTE_DRIFT)
        notes.append(drift)

    if diff:
        return model.LayerChange(
            layer=spec.key, layer_name=spec.name, region=region, action=model.Action.PUBLISH,
            reasons=tuple(reasons), current=current, desired=desired, diff=tuple(diff),
            notes=tuple(notes), expected_version=expected_version,
        )

    record = _observed_entry(desired, current)
    if lock_entry is None:
        reasons.append(model.Reason.ADOPTED)
        notes.append(f"version {remote.version} already matches; apply records it in the "
                     "lockfile without publishing")
    elif record != lock_entry:
        notes.append(f"version {remote.version} already matches; apply updates its lockfile "
                     "entry without publishing")
    return model.LayerChange(
        layer=spec.key, layer_name=spec.name, region=region, action=model.Action.NOOP,
        reasons=tuple(reasons), current=current, desired=desired, notes=tuple(notes),
        record=record if record != lock_entry else None,
    )


def plan(
    inputs: Iterable[Inputs],
    *,
    layer_errors: Iterable[model.LayerError] = (),
    basis: model.PlanBasis | None = None,
) -> model.Plan:
    """Decide every layer and region; changes sorted by layer, then region. Layers that
    could not be planned are carried as errors, sorted by layer."""
    changes = [decide(item) for item in inputs]
    return model.Plan(changes=tuple(sorted(changes, key=lambda c: (c.layer, c.region))),
                      errors=tuple(sorted(layer_errors, key=lambda error: error.layer)),
                      basis=basis)


def lock_entry_for(
    change: model.LayerChange, published: model.RemoteVersion
) -> model.LockEntry:
    """The lock entry recording that `published` is `change`'s desired layer."""
    return _observed_entry(change.desired, published)


def settings_diff(before: model.Settings, after: model.Settings) -> tuple[model.FieldChange, ...]:
    """Field-level changes from `before` to `after`, lists compared as sets."""
    difference = DeepDiff(before.as_dict(), after.as_dict(), ignore_order=True, view="tree")
    scalars: dict[str, model.FieldChange] = {}
    added: dict[str, list[str]] = {}
    removed: dict[str, list[str]] = {}
    for kind, levels in difference.items():
        for level in levels:
            path: list[Any] = level.path(output_format="list")
            name = str(path[0])
            if kind == "iterable_item_added":
                added.setdefault(name, []).append(str(level.t2))
            elif kind == "iterable_item_removed":
                removed.setdefault(name, []).append(str(level.t1))
            else:
                old, new = getattr(before, name), getattr(after, name)
                if isinstance(old, tuple) and isinstance(new, tuple):
                    added.setdefault(name, []).extend(sorted(set(new) - set(old)))
                    removed.setdefault(name, []).extend(sorted(set(old) - set(new)))
                else:
                    scalars[name] = model.FieldChange(field=name, before=old, after=new)
    changes = list(scalars.values())
    for name in sorted(set(added) | set(removed)):
        changes.append(model.FieldChange(
            field=name,
            before=list(getattr(before, name)),
            after=list(getattr(after, name)),
            added=tuple(sorted(set(added.get(name, ())))),
            removed=tuple(sorted(set(removed.get(name, ())))),
        ))
    order = list(model.Settings().as_dict())
    return tuple(sorted(changes, key=lambda change: order.index(change.field)))


def _observed_entry(desired: model.Desired, version: model.RemoteVersion) -> model.LockEntry:
    return model.LockEntry(
        fingerprint=desired.fingerprint,
        content_sha256=desired.content_sha256 or "",
        code_sha256=version.code_sha256 or desired.code_sha256 or "",
        code_size=version.code_size if version.code_size is not None else desired.code_size or 0,
        version=version.version,
        layer_version_arn=version.layer_version_arn,
        settings_sha256=desired.settings.digest(desired.grants),
    )


def _drift_note(
    remote: model.RemoteVersion | None, lock_entry: model.LockEntry | None
) -> str | None:
    if lock_entry is None:
        return None
    if remote is None:
        return (f"every version was deleted outside reconcile (the lockfile recorded "
                f"version {lock_entry.version})")
    if remote.version > lock_entry.version:
        return (f"version {remote.version} was published outside reconcile (the lockfile "
                f"recorded version {lock_entry.version})")
    if remote.version < lock_entry.version:
        return (f"version {lock_entry.version}, which the lockfile recorded, was deleted "
                f"outside reconcile; the latest is version {remote.version}")
    if remote.layer_version_arn != lock_entry.layer_version_arn:
        return (f"the latest version is {remote.layer_version_arn}, not the lockfile's "
                f"{lock_entry.layer_version_arn}")
    return None
