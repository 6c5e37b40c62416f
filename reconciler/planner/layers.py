"""The decision of a layer version in one region (`decide`, with its table): create, publish or
noop, with reasons, the field-level diff (the only importer of deepdiff), the code location of
a publish and the lock entry apply records. Pure: values in, values out."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

from reconciler import model
from reconciler.planner.inputs import (
    Inputs,
    desired_artifact,
    fingerprints_files,
    hex_of,
    highest_number,
    remote_code_sha256,
)


def wants_remote_content(inputs: Inputs) -> bool:
    """True when only the remote latest's files can tell whether it already is the desired
    layer (adoption by content): downloads are allowed, nothing is recorded for the layer,
    the remote latest's settings are the desired ones but its CodeSha256 is not, and the
    local content is fingerprinted by its files. Asked once: its answer is kept."""
    remote, lock_entry = inputs.remote_latest, inputs.lock_entry
    if not inputs.download or lock_entry is not None or remote is None:
        return False
    if inputs.remote_content is not None and inputs.remote_content.version == remote.version:
        return False
    artifact = desired_artifact(inputs.artifact, lock_entry)
    remote_code = remote_code_sha256(remote, lock_entry)
    return (fingerprints_files(inputs.spec.content) and artifact.code_sha256 is not None
            and remote_code is not None and remote_code != artifact.code_sha256
            and not settings_diff(remote.settings, inputs.spec.settings))


def _same_files(inputs: Inputs, fingerprint: str) -> bool:
    """True when the remote latest's downloaded zip holds the desired files."""
    found, remote = inputs.remote_content, inputs.remote_latest
    return (found is not None and remote is not None and found.version == remote.version
            and found.fingerprint is not None and found.fingerprint == fingerprint
            and inputs.lock_entry is None)


def _download_note(found: model.RemoteContent, *, same: bool) -> str:
    size = f"{found.downloaded_bytes:,} bytes"
    if found.fingerprint is None:
        return (f"could not compare the files of version {found.version} "
                f"({found.problem or 'unreadable'}); publishing")
    if same:
        return (f"same files, other zip bytes: downloaded version {found.version}'s zip "
                f"({size}) and its files equal the local content")
    return (f"downloaded version {found.version}'s zip ({size}) to compare: its files "
            "differ from the local content")


def code_location(*, spec: model.LayerSpec, desired: model.Desired,
                  artifact_bucket: str | None) -> model.CodeLocation:
    """How a publish of `desired` reaches Lambda.

    | source          | zip size  | upload: s3 | artifact bucket | route                 |
    |-----------------|-----------|------------|-----------------|-----------------------|
    | s3              | -         | -          | -               | s3_source             |
    | folder or zip   | <= 50 MB  | no         | -               | direct                |
    | folder or zip   | > 50 MB   | -          | yes             | artifact_bucket       |
    | folder or zip   | any       | yes        | yes             | artifact_bucket       |
    | folder or zip   | > 50 MB   | -          | no              | direct (a plan error) |

    Through the artifact bucket the zip goes to `<layer>/<content_sha256>.zip`; a zip whose
    digest is not known yet stays direct until it is (the planner asks for the zip first).
    """
    content = spec.content
    if content.kind is model.SourceKind.S3 and content.s3_bucket and content.s3_key:
        return model.CodeLocation(route=model.UploadRoute.S3_SOURCE, s3=model.S3Object(
            bucket=content.s3_bucket, key=content.s3_key, version=content.s3_object_version))
    too_large = (desired.code_size or 0) > model.MAX_DIRECT_UPLOAD_BYTES
    if (spec.upload == "s3" or too_large) and artifact_bucket and desired.content_sha256:
        return model.CodeLocation(route=model.UploadRoute.ARTIFACT_BUCKET, s3=model.S3Object(
            bucket=artifact_bucket,
            key=model.artifact_key(layer_name=spec.name, content_sha256=desired.content_sha256)))
    return model.CodeLocation(route=model.UploadRoute.DIRECT)


def decide(inputs: Inputs) -> model.Change:
    """Decide the action for one layer in one region.

    Decision table (R = latest remote version, L = lock entry, "same" = R's CodeSha256 and
    settings equal the desired zip's CodeSha256 and settings):

    | R      | L                   | same | action  | reasons                                  |
    |--------|---------------------|------|---------|------------------------------------------|
    | none   | none                |  -   | create  | new_layer                                |
    | none   | recorded            |  -   | create  | new_layer, remote_drift (deleted)        |
    | exists | none                | yes  | noop    | adopted (apply records R in the lock)    |
    | exists | none                | files| noop    | adopted: R's downloaded zip holds the    |
    |        |                     |      |         | desired files ("same files, other zip    |
    |        |                     |      |         | bytes"; see wants_remote_content)        |
    | exists | none                | no   | publish | content_changed and/or settings_changed  |
    | exists | L.version == R      | yes  | noop    | (none)                                   |
    | exists | L.version == R      | no   | publish | content_changed and/or settings_changed  |
    | exists | L.version != R      | yes  | noop    | remote_drift (apply records R)           |
    | exists | L.version != R      | no   | publish | remote_drift + what changed              |

    remote_drift says whether a version was published outside reconcile (R newer than L) or
    the recorded version was deleted (R older than L, or no version at all). A reason never
    changes the action: the action depends on R and the desired layer alone. A create or
    publish carries its code location (code_location()).
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
        build=_with_recorded(artifact.build, lock_entry),
    )
    reasons: list[model.Reason] = []
    notes: list[str] = []
    drift = _drift_note(remote, lock_entry)
    expected_version = highest_number(inputs) + 1

    if remote is None:
        reasons.append(model.Reason.NEW_LAYER)
        if drift:
            reasons.append(model.Reason.REMOTE_DRIFT)
            notes.append(drift)
        return model.Change(
            address=model.Address.of_layer(spec.key, region), layer_name=spec.name,
            action=model.Action.CREATE, reasons=tuple(reasons), current=None, desired=desired,
            details=model.PublishDetails(
                expected_version=expected_version,
                code=code_location(spec=spec, desired=desired,
                                   artifact_bucket=inputs.artifact_bucket),
                diff=(model.FieldChange(field="code_sha256", before=None,
                                        after=desired.code_sha256),
                      *settings_diff(model.Settings(), spec.settings))),
            notes=tuple(notes),
        )

    remote_code = remote_code_sha256(remote, lock_entry)
    current = model.RemoteVersion(
        version=remote.version, layer_version_arn=remote.layer_version_arn,
        settings=remote.settings, code_sha256=remote_code, code_size=remote.code_size,
    )
    diff: list[model.FieldChange] = []
    downloaded = inputs.remote_content if (
        inputs.remote_content is not None
        and inputs.remote_content.version == remote.version) else None
    same_files = _same_files(inputs, desired.fingerprint)
    content_changed = not same_files and (
        desired.code_sha256 is None or desired.code_sha256 != remote_code)
    if downloaded is not None:
        notes.append(_download_note(downloaded, same=same_files))
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
        return model.Change(
            address=model.Address.of_layer(spec.key, region), layer_name=spec.name,
            action=model.Action.PUBLISH, reasons=tuple(reasons), current=current,
            desired=desired,
            details=model.PublishDetails(
                expected_version=expected_version,
                code=code_location(spec=spec, desired=desired,
                                   artifact_bucket=inputs.artifact_bucket),
                diff=tuple(diff), download=downloaded),
            notes=tuple(notes),
        )

    record = _observed_entry(desired, current)
    if same_files:
        # The lock records the remote zip (its digests), which the local fingerprint now
        # vouches for: the next plan is a noop without a download.
        record = replace(record, content_sha256=hex_of(remote_code or "") or "")
    if lock_entry is None:
        reasons.append(model.Reason.ADOPTED)
        notes.append(f"version {remote.version} already matches; apply records it in the "
                     "lockfile without publishing")
    elif record != lock_entry:
        notes.append(f"version {remote.version} already matches; apply updates its lockfile "
                     "entry without publishing")
    return model.Change(
        address=model.Address.of_layer(spec.key, region), layer_name=spec.name,
        action=model.Action.NOOP, reasons=tuple(reasons), current=current, desired=desired,
        details=model.RecordDetails(record=record if record != lock_entry else None,
                                    download=downloaded),
        notes=tuple(notes),
    )


def lock_entry_for(
    change: model.Change, published: model.RemoteVersion
) -> model.LockEntry:
    """The lock entry recording that `published` is `change`'s desired layer."""
    return _observed_entry(change.desired, published)


def settings_diff(before: model.Settings, after: model.Settings) -> tuple[model.FieldChange, ...]:
    """Field-level changes from `before` to `after`, lists compared as sets."""
    # Equal settings have no field change, whatever DeepDiff would do with them: the shortcut
    # cannot hide a change, and it spares a fleet plan ~0.5 ms per layer and region (DeepDiff
    # hashes every list), most of a no-change plan's CPU time.
    if before == after:
        return ()
    if before == _NO_SETTINGS:
        # A new layer's: every field set is a change, each list's items all added. Spelled out
        # because DeepDiff's import (and the pydantic it loads) costs a cold plan ~0.1 s, and
        # the test pins this equal to what DeepDiff gives.
        return from_no_settings(after)
    return deepdiff_changes(before, after)


_NO_SETTINGS = model.Settings()


def from_no_settings(after: model.Settings) -> tuple[model.FieldChange, ...]:
    """The field changes from empty settings to `after`, as `deepdiff_changes` finds them."""
    changes: list[model.FieldChange] = []
    for name in after.as_dict():
        old, new = getattr(_NO_SETTINGS, name), getattr(after, name)
        if new == old:
            continue
        if isinstance(new, tuple):
            changes.append(model.FieldChange(field=name, before=[], after=list(new),
                                             added=tuple(sorted(set(new))), removed=()))
        else:
            changes.append(model.FieldChange(field=name, before=old, after=new))
    return tuple(changes)


def deepdiff_changes(before: model.Settings,
                     after: model.Settings) -> tuple[model.FieldChange, ...]:
    """Field-level changes from `before` to `after` found by DeepDiff, lists as sets."""
    # Imported here, not at the top: deepdiff (and the pydantic it loads) costs ~40-90 ms of
    # start-up, and a no-change plan, which never gets here, must not pay for it.
    from deepdiff import DeepDiff

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


def _with_recorded(build: model.BuildInfo | None,
                   lock_entry: model.LockEntry | None) -> model.BuildInfo | None:
    """A built layer's summary with the package list the state recorded (for the plan's
    `numpy 2.1.0 -> 2.2.6`); None when the state records none."""
    if build is None:
        return None
    recorded = lock_entry.packages if lock_entry is not None and lock_entry.inputs_sha256 \
        else None
    return replace(build, recorded=recorded)


def _observed_entry(desired: model.Desired, version: model.RemoteVersion) -> model.LockEntry:
    code_sha256 = version.code_sha256 or desired.code_sha256 or ""
    # An S3 object without a SHA-256 checksum: its digest is the one Lambda computed.
    content_sha256 = desired.content_sha256 or (
        base64.b64decode(code_sha256).hex() if code_sha256 else "")
    return model.LockEntry(
        fingerprint=desired.fingerprint,
        content_sha256=content_sha256,
        code_sha256=version.code_sha256 or desired.code_sha256 or "",
        code_size=version.code_size if version.code_size is not None else desired.code_size or 0,
        version=version.version,
        layer_version_arn=version.layer_version_arn,
        settings_sha256=desired.settings.digest(desired.grants),
        inputs_sha256=desired.build.inputs_sha256 if desired.build else "",
        packages=desired.build.packages if desired.build else (),
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
