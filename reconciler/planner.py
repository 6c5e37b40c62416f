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

import base64
import binascii
import enum
import functools
import hashlib
import io
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from reconciler import errors, model


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
    POLICY = "policy"  # GetLayerVersionPolicy of the remote latest (a layer with `share`)
    # ListLayerVersions, every page: a layer with `retain` or `align_versions`, or whose
    # latest version is a filler (lists_versions())
    VERSIONS = "versions"
    FUNCTION_USES = "function_uses"  # ListFunctions (ALL versions) of the region
    # GetLayerVersion of each version retention may delete, and of each filler (its bytes)
    VERSION_SIZES = "version_sizes"
    REMOTE_CONTENT = "remote_content"  # download the remote latest's zip, fingerprint it


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
    if inputs.versions is None and lists_versions(inputs):
        # First: a filler as the observed latest is replaced by the real latest (real_latest)
        # before anything is asked about it.
        return frozenset({Evidence.VERSIONS})
    artifact = desired_artifact(inputs.artifact, lock_entry)
    if needs_remote_code(remote, lock_entry):
        needs.add(Evidence.REMOTE_CODE)
    if inputs.spec.content.kind is model.SourceKind.S3:
        pass  # no zip to build: Lambda reads the object, whose CodeSha256 S3 may not know
    elif artifact.code_sha256 is None:
        needs.add(Evidence.ZIP)
    elif inputs.artifact.zip_path is None and not needs:
        change = decide(inputs)
        if change.action in (model.Action.CREATE, model.Action.PUBLISH):
            needs.add(Evidence.ZIP)
    if needs:
        return frozenset(needs)
    if wants_remote_content(inputs):
        return frozenset({Evidence.REMOTE_CONTENT})
    return frozenset(_missing_fleet_evidence(inputs))


def _fingerprints_files(content: model.ContentSpec) -> bool:
    """A folder's or a zip to normalize's fingerprint is of its files; a zip used as it is
    is identified by its bytes, so other bytes are other content."""
    return content.kind is model.SourceKind.PATH or (
        content.kind is model.SourceKind.ZIP and content.normalize)


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
    return (_fingerprints_files(inputs.spec.content) and artifact.code_sha256 is not None
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


def _hex_of(code_sha256: str) -> str | None:
    """The hex SHA-256 of a base64 CodeSha256 (None when it is not one)."""
    try:
        return base64.b64decode(code_sha256, validate=True).hex()
    except (binascii.Error, ValueError):
        return None


def _missing_fleet_evidence(inputs: Inputs) -> set[Evidence]:
    """What sharing and retention still need once the main decision can be made: the
    policy of a latest version that is not replaced (alignment may still replace it; the
    read is then merely unused), every version, and, for the versions retention could
    delete (counted as if a version were published, the most it can delete), the functions
    that use them and their sizes, and the CodeSha256 of each filler (a region whose only
    versions are fillers has no latest, but has those)."""
    needs: set[Evidence] = set()
    remote, spec = inputs.remote_latest, inputs.spec
    if remote is not None and spec.share is not None and inputs.policy is None and \
            decide(inputs).action not in (model.Action.CREATE, model.Action.PUBLISH):
        needs.add(Evidence.POLICY)
    if inputs.versions is None:
        return needs  # lists_versions() said no: no retention, no filler to look for
    if spec.retain is not None and inputs.function_uses is None and retention_candidates(
            retain=spec.retain, versions=real_versions(inputs.versions), publishing=True):
        needs.add(Evidence.FUNCTION_USES)
    if versions_to_read(spec, inputs.versions):
        needs.add(Evidence.VERSION_SIZES)
    return needs


# align_versions' throwaway versions: a minimal valid zip, described as what it is. The
# description is how a plan finds fillers an apply left behind (stray fillers); the zip's
# CodeSha256 confirms one before it is deleted.
FILLER_DESCRIPTION = ("reconcile filler for align_versions; deleted by the apply that "
                      "made it")


def filler_zip_bytes() -> bytes:
    """A minimal valid layer zip (one small text file, fixed metadata): a few hundred
    bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        info = zipfile.ZipInfo("reconcile-filler.txt", date_time=(1980, 1, 1, 0, 0, 0))
        archive.writestr(info, FILLER_DESCRIPTION + "\n")
    return buffer.getvalue()


@functools.cache
def filler_code_sha256() -> str:
    """Lambda's CodeSha256 of the filler zip: how a filler is told from any other version."""
    return base64.b64encode(hashlib.sha256(filler_zip_bytes()).digest()).decode("ascii")


def is_filler(version: model.RemoteVersion) -> bool:
    """A filler version by its description (and by its CodeSha256, once that is known): no
    other version carries the filler's description and bytes."""
    return (version.settings.description == FILLER_DESCRIPTION
            and version.code_sha256 in (None, filler_code_sha256()))


def real_versions(versions: Iterable[model.RemoteVersion]) -> tuple[model.RemoteVersion, ...]:
    """The versions that are not fillers: what retention keeps or deletes, and where a
    region's real latest version is found."""
    return tuple(version for version in versions if not is_filler(version))


def real_latest(observed: model.RemoteVersion | None,
                versions: Iterable[model.RemoteVersion]) -> model.RemoteVersion | None:
    """The latest version that is not a filler: `observed` (the latest as Lambda lists it)
    unless it is a filler, then the highest real one of `versions` (None: none)."""
    if observed is not None and not is_filler(observed):
        return observed
    return max(real_versions(versions), key=lambda version: version.version, default=None)


def lists_versions(inputs: Inputs) -> bool:
    """Whether the plan reads every version of the layer in the region: for `retain`, and
    for the filler versions an apply may have left (a layer with `align_versions`, or one
    whose latest version is a filler); a layer without any version has none to read."""
    remote = inputs.remote_latest
    if remote is None:
        return False
    return (inputs.spec.retain is not None or inputs.spec.align_versions
            or is_filler(remote))


def versions_to_read(spec: model.LayerSpec,
                     versions: Iterable[model.RemoteVersion]) -> tuple[model.RemoteVersion, ...]:
    """The listed versions whose GetLayerVersion the plan still needs: each one retention
    may delete (its size, for the plan), each filler (its CodeSha256 confirms it)."""
    listed = tuple(versions)
    candidates = retention_candidates(retain=spec.retain, versions=real_versions(listed),
                                      publishing=True) if spec.retain is not None else ()
    return tuple(sorted(
        {version.version: version for version in (
            *(version for version in candidates if version.code_size is None),
            *(version for version in listed
              if is_filler(version) and version.code_sha256 is None))}.values(),
        key=lambda version: version.version))


def stray_fillers(versions: Iterable[model.RemoteVersion]) -> tuple[model.RemoteVersion, ...]:
    """The confirmed fillers (description and CodeSha256) among `versions`, oldest first."""
    return tuple(sorted((version for version in versions if is_filler(version)
                         and version.code_sha256 == filler_code_sha256()),
                        key=lambda version: version.version))


# A region this many versions or more behind the alignment target is not filled: it is
# reported short of the target instead (each filler is a real, if brief, publish).
MAX_FILLERS = 100
# The share of the account's code storage above which the plan warns.
STORAGE_WARNING_RATIO = 0.8


def grants_diff(desired: tuple[model.Grant, ...],
                existing: frozenset[str]) -> tuple[tuple[model.Grant, ...], tuple[str, ...]]:
    """The grants to add to a version whose policy holds the statement IDs `existing`, and
    the statement IDs to remove from it, so that it holds exactly `desired` (a managed
    `share` is the whole truth: a statement it does not name is removed). Both sorted."""
    wanted = {grant.statement_id: grant for grant in desired}
    add = tuple(wanted[sid] for sid in sorted(set(wanted) - existing))
    remove = tuple(sorted(existing - set(wanted)))
    return add, remove


def retention_candidates(*, retain: int, versions: Iterable[model.RemoteVersion],
                         publishing: bool) -> tuple[model.RemoteVersion, ...]:
    """The versions outside the `retain` newest, newest first; a version about to be
    published counts as one of the newest."""
    newest_first = sorted(versions, key=lambda version: version.version, reverse=True)
    keep = max(0, retain - 1) if publishing else retain
    return tuple(newest_first[keep:])


@dataclass(frozen=True)
class Retention:
    """What retention does in one region: the versions to delete (oldest first) and the
    ones it keeps though they are old enough to go, each with why."""

    delete: tuple[model.RemoteVersion, ...]
    kept: tuple[tuple[int, str], ...]


def retention(*, retain: int, versions: Iterable[model.RemoteVersion], publishing: bool,
              recorded_version: int | None,
              function_uses: Mapping[str, tuple[str, ...]]) -> Retention:
    """Keep the `retain` newest versions (the one being published among them) and, of the
    older ones, the version the state records as current and every version a function
    uses (`$LATEST` or a published function version); delete the rest."""
    delete: list[model.RemoteVersion] = []
    kept: list[tuple[int, str]] = []
    for version in retention_candidates(retain=retain, versions=versions,
                                        publishing=publishing):
        users = function_uses.get(version.layer_version_arn, ())
        if version.version == recorded_version:
            kept.append((version.version, "the recorded version"))
        elif users:
            kept.append((version.version, f"used by function {', '.join(sorted(users))}"))
        else:
            delete.append(version)
    return Retention(delete=tuple(sorted(delete, key=lambda version: version.version)),
                     kept=tuple(sorted(kept)))


@dataclass(frozen=True)
class RegionStanding:
    """One region of an aligned layer, as the alignment target needs it: whether it
    publishes anyway, its latest version number (0: none) and the number its next publish
    is expected to get."""

    publishing: bool
    latest: int
    next_version: int


def alignment_target(standings: Iterable[RegionStanding]) -> int | None:
    """The version number every region's latest is to have: the highest next number of the
    regions that publish, or the highest latest of those that do not, whichever is higher.
    A region that already holds the desired content at the target needs nothing; one below
    it publishes (after fillers). None when no region has or gets a version.

    A region below the target publishes too; when its next number is past the target (the
    numbers of fillers an apply left are taken), the target rises to it, and so on until
    no region below the target would land above it."""
    listed = list(standings)
    target = max((standing.next_version if standing.publishing else standing.latest
                  for standing in listed), default=0)
    while True:
        raised = max((standing.next_version for standing in listed
                      if not standing.publishing and standing.latest < target), default=0)
        if raised <= target:
            return target or None
        target = raised


def fillers_needed(*, target: int, next_version: int) -> int:
    """How many filler versions take a region from its next number to `target`."""
    return max(0, target - next_version)


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


def decide(inputs: Inputs) -> model.LayerChange:
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
    )
    reasons: list[model.Reason] = []
    notes: list[str] = []
    drift = _drift_note(remote, lock_entry)
    expected_version = _highest_number(inputs) + 1

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
            code=code_location(spec=spec, desired=desired,
                               artifact_bucket=inputs.artifact_bucket),
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
        return model.LayerChange(
            layer=spec.key, layer_name=spec.name, region=region, action=model.Action.PUBLISH,
            reasons=tuple(reasons), current=current, desired=desired, diff=tuple(diff),
            notes=tuple(notes), expected_version=expected_version,
            code=code_location(spec=spec, desired=desired,
                               artifact_bucket=inputs.artifact_bucket),
            download=downloaded,
        )

    record = _observed_entry(desired, current)
    if same_files:
        # The lock records the remote zip (its digests), which the local fingerprint now
        # vouches for: the next plan is a noop without a download.
        record = replace(record, content_sha256=_hex_of(remote_code or "") or "")
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
        record=record if record != lock_entry else None, download=downloaded,
    )


def plan(
    inputs: Iterable[Inputs],
    *,
    layer_errors: Iterable[model.LayerError] = (),
    basis: model.PlanBasis | None = None,
    storage: Mapping[str, model.CodeStorage] | None = None,
    lock_holder: errors.LockHolder | None = None,
) -> model.Plan:
    """Decide every layer and region; changes sorted by layer, then region (in a region,
    the layer's own change first, then its deletions, oldest first). Layers that could not
    be planned are carried as errors, sorted by layer.

    After each region's own decision: align_versions sets one target number over a layer's
    regions (align()); a latest version that stays gets its grants reconciled (a `grant`
    change); retention adds a `delete` change per version it removes, and each filler an
    apply left behind (stray_fillers()) is a `delete` change too, unless `lock_holder`, an
    apply that holds the state lock now (not this run), may still be using it: then a note
    says so. `storage` is the code storage of the regions storage_regions() named, for the
    warning."""
    items = list(inputs)
    decided = align([(item, decide(item)) for item in items])
    changes: list[model.LayerChange] = []
    warnings: list[str] = []
    held: list[str] = []  # where stray fillers wait for the apply that holds the lock
    for item, change in decided:
        change = _with_grants(item, change)
        deletions: tuple[model.LayerChange, ...] = ()
        if item.spec.retain is not None and item.versions is not None:
            change, deletions = _with_retention(item, change)
        change, strays = _with_stray_fillers(item, change, lock_holder=lock_holder)
        changes.append(change)
        changes.extend(sorted((*deletions, *strays), key=lambda deletion: deletion.version or 0))
        if lock_holder is not None and stray_fillers(item.versions or ()):
            held.append(f"{item.spec.key} ({item.region})")
    if held and lock_holder is not None:
        warnings.append(
            f"filler versions left by an apply are not deleted by this plan in "
            f"{', '.join(held)}: an apply holds the state lock ({lock_holder.who} on "
            f"{lock_holder.host}, pid {lock_holder.pid}, since {lock_holder.created}) and "
            "may still be using them; plan again once it ends (if that run is gone: "
            f"reconcile force-unlock {lock_holder.lock_id})")
    for spec in sorted({item.spec.key: item.spec for item in items}.values(),
                       key=lambda spec: spec.key):
        if any(grant.kind == "public" for grant in spec.grants):
            warnings.append(f"layer {spec.key} is shared publicly: every AWS account may use "
                            "its versions")
    for region, found in sorted((storage or {}).items()):
        if found.limit and found.used > STORAGE_WARNING_RATIO * found.limit:
            warnings.append(
                f"{region}: Lambda code storage is {100 * found.used / found.limit:.0f}% full "
                f"({found.used:,} of {found.limit:,} bytes); old versions count until they "
                "are deleted (`retain:`)")
    return model.Plan(changes=tuple(sorted(changes, key=lambda c: (c.layer, c.region))),
                      errors=tuple(sorted(layer_errors, key=lambda error: error.layer)),
                      basis=basis, warnings=tuple(warnings))


def storage_regions(decided: model.Plan) -> list[str]:
    """The regions whose code storage the plan reads: those where it publishes or deletes
    (a plan that changes nothing reads none)."""
    return sorted({change.region for change in decided.changes
                   if change.action in (*_PUBLISHING, model.Action.DELETE)})


_PUBLISHING = (model.Action.CREATE, model.Action.PUBLISH)


def _highest_number(item: Inputs) -> int:
    """The highest version number known to be taken in the region (0: none): the latest,
    the recorded one, and any listed version, fillers included (Lambda never reuses a
    number, so the next publish gets a higher one)."""
    known = [v.version for v in (item.remote_latest, item.lock_entry) if v is not None]
    known.extend(version.version for version in item.versions or ())
    return max(known, default=0)


def _next_version(item: Inputs, change: model.LayerChange) -> int:
    if change.expected_version is not None:
        return change.expected_version
    return _highest_number(item) + 1


def _fillers_on_top(item: Inputs, *, regions: int) -> bool:
    """Whether fillers sit above the latest real version of a layer aligned over `regions`
    regions (in one region there is nothing to keep in line)."""
    latest = item.remote_latest.version if item.remote_latest else 0
    return regions > 1 and any(is_filler(version) and version.version > latest
                               for version in item.versions or ())


def align(decided: list[tuple[Inputs, model.LayerChange]]
          ) -> list[tuple[Inputs, model.LayerChange]]:
    """Apply align_versions to each region's own decision.

    | region                          | becomes                                         |
    |---------------------------------|-------------------------------------------------|
    | publishes, next == target       | publish, no filler                              |
    | publishes, next < target        | publish after target - next fillers             |
    | unchanged, latest == target     | unchanged                                       |
    | unchanged, latest < target      | publish (align_versions) after fillers          |
    | unchanged, fillers above latest | publish (align_versions): see below             |
    | more than MAX_FILLERS behind    | as decided, `shortfall` says by how much        |

    A region whose latest real version has fillers above it (an apply left them) counts as
    publishing: once they are deleted, their numbers stay taken where nobody can see them,
    and the region's next publish would land past every other region's. Publishing above
    them now keeps every number in sight.
    """
    targets: dict[str, int | None] = {}
    regions: dict[str, int] = {}
    for item, _ in decided:
        regions[item.spec.key] = regions.get(item.spec.key, 0) + 1
    for spec_key in {item.spec.key for item, _ in decided if item.spec.align_versions}:
        targets[spec_key] = alignment_target(
            RegionStanding(publishing=change.action in _PUBLISHING or _fillers_on_top(
                               item, regions=regions[spec_key]),
                           latest=item.remote_latest.version if item.remote_latest else 0,
                           next_version=_next_version(item, change))
            for item, change in decided if item.spec.key == spec_key)
    aligned: list[tuple[Inputs, model.LayerChange]] = []
    for item, change in decided:
        target = targets.get(item.spec.key)
        if target is None:
            aligned.append((item, change))
            continue
        next_version = _next_version(item, change)
        latest = item.remote_latest.version if item.remote_latest else 0
        publishing = change.action in _PUBLISHING
        if not publishing and not _fillers_on_top(item, regions=regions[item.spec.key]) \
                and latest >= target:
            aligned.append((item, replace(change, align_target=target)))
            continue
        needed = fillers_needed(target=target, next_version=next_version)
        if needed > MAX_FILLERS:
            gap = target - (next_version if publishing else latest)
            aligned.append((item, replace(change, align_target=target, shortfall=gap, notes=(
                *change.notes, f"align_versions: cannot reach v{target} here: it would take "
                               f"{needed} filler versions, more than {MAX_FILLERS}; this region "
                               f"stays {gap} version(s) short"))))
            continue
        if publishing:
            aligned.append((item, replace(change, align_target=target, fillers=needed,
                                          expected_version=target)))
            continue
        aligned.append((item, replace(
            change, action=model.Action.PUBLISH,
            reasons=(*change.reasons, model.Reason.ALIGN_VERSIONS), record=None,
            align_target=target, fillers=needed, expected_version=target)))
    return aligned


def _with_grants(item: Inputs, change: model.LayerChange) -> model.LayerChange:
    """A latest version that stays gets exactly the managed grants: a `grant` change."""
    if (item.spec.share is None or item.policy is None or change.action is not model.Action.NOOP
            or change.current is None):
        return change
    add, remove = grants_diff(item.spec.grants, item.policy)
    if not (add or remove):
        return change
    return replace(change, action=model.Action.GRANT,
                   reasons=(*change.reasons, model.Reason.GRANTS_CHANGED), record=None,
                   grants_add=add, grants_remove=remove)


def _with_retention(item: Inputs, change: model.LayerChange
                    ) -> tuple[model.LayerChange, tuple[model.LayerChange, ...]]:
    """`change` noting the old versions retention keeps, and a `delete` change for each it
    removes."""
    retain = item.spec.retain or 0
    chosen = retention(retain=retain, versions=real_versions(item.versions or ()),
                       publishing=change.action in _PUBLISHING,
                       recorded_version=recorded_after(item, change),
                       function_uses=item.function_uses or {})
    notes = tuple(f"retention keeps v{version}: {why}" for version, why in chosen.kept)
    deletions = tuple(
        model.LayerChange(
            layer=change.layer, layer_name=change.layer_name, region=change.region,
            action=model.Action.DELETE, reasons=(model.Reason.RETENTION,), current=version,
            desired=change.desired, version=version.version,
            notes=(f"retain: {retain} keeps the {retain} newest versions",))
        for version in chosen.delete)
    return replace(change, notes=(*change.notes, *notes)), deletions


def recorded_after(item: Inputs, change: model.LayerChange) -> int | None:
    """The version the state records once `change` is applied: a publish's new version
    (not among the live ones: None), a record's version, else the recorded one. Retention
    keeps this one, so the plan right after an apply keeps what that apply kept."""
    if change.action in _PUBLISHING:
        return None
    if change.record is not None:
        return change.record.version
    if change.action is model.Action.GRANT and change.current is not None:
        return change.current.version
    return item.lock_entry.version if item.lock_entry else None


def _with_stray_fillers(item: Inputs, change: model.LayerChange, *,
                        lock_holder: errors.LockHolder | None
                        ) -> tuple[model.LayerChange, tuple[model.LayerChange, ...]]:
    """A `delete` change (reason stray_filler) for each filler an apply left in the region;
    none, and a note instead, while another apply holds the lock (they may be its own)."""
    strays = stray_fillers(item.versions or ())
    if not strays:
        return change, ()
    numbers = ", ".join(f"v{version.version}" for version in strays)
    if lock_holder is not None:
        return replace(change, notes=(
            *change.notes,
            f"filler version(s) {numbers} not deleted now: an apply holds the state lock "
            f"({lock_holder.who} on {lock_holder.host}, pid {lock_holder.pid}, since "
            f"{lock_holder.created}) and may still be using them; a plan made after it ends "
            "deletes any it leaves")), ()
    return change, tuple(
        model.LayerChange(
            layer=change.layer, layer_name=change.layer_name, region=change.region,
            action=model.Action.DELETE, reasons=(model.Reason.STRAY_FILLER,), current=version,
            desired=change.desired, version=version.version,
            notes=("an align_versions filler that an apply left (killed, or its delete "
                   "failed); no apply holds the state lock",))
        for version in strays)


def lock_entry_for(
    change: model.LayerChange, published: model.RemoteVersion
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
