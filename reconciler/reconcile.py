"""The use cases: make_plan() gathers desired, recorded and observed state and asks the planner;
apply() carries out a plan's actions. Never prints or prompts: progress goes to a callback.

make_plan() works local-first: every layer is identified, and zipped where the lockfile cannot
vouch for its content, before the first AWS call, so a content mistake stops the run before
anything remote is asked. A layer that turns out to need publishing only for its settings or
for drift is zipped after Lambda was read, and decided again with the zip's real digests.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reconciler import aws, errors, lockfile, model, planner, publishing, sources, workspace

Progress = Callable[[str], None]
_REGION_NAME = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")  # as the manifest schema's `region`


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class PlanResult:
    """A plan and the local artifacts (zips) that apply needs for it, by layer key."""

    plan: model.Plan
    artifacts: dict[str, model.Artifact] = field(default_factory=dict)


@dataclass(frozen=True)
class ApplyReport:
    """What apply did: versions published and versions recorded without publishing."""

    published: tuple[tuple[model.LayerChange, model.RemoteVersion], ...]
    recorded: tuple[model.LayerChange, ...]
    lock: model.Lock


def select_layers(parsed: model.Manifest, targets: Sequence[str]) -> list[model.LayerSpec]:
    """The layers --target names (all when none); an unknown name is a UsageError."""
    if not targets:
        return list(parsed.layers)
    known = {spec.key for spec in parsed.layers}
    unknown = [name for name in targets if name not in known]
    if unknown:
        raise errors.UsageError(
            f"--target names no layer of {parsed.file}: {', '.join(unknown)}",
            hint=f"the layers are: {', '.join(sorted(known))}",
        )
    return [spec for spec in parsed.layers if spec.key in set(targets)]


def select_regions(
    parsed: model.Manifest, *, default_region: str | None, only: Sequence[str]
) -> list[str]:
    """The manifest's regions (else the AWS default region), limited by --region."""
    regions = list(parsed.regions) or ([default_region] if default_region else [])
    if not regions:
        raise errors.CredentialsError(
            "no AWS region: the manifest has no `region:` and none is configured",
            hint="add `region: us-east-1` to the manifest, or set AWS_REGION",
        )
    if not parsed.regions and not _REGION_NAME.match(regions[0]):
        raise errors.CredentialsError(
            f"the configured AWS region {regions[0]!r} is not a region name",
            hint="fix AWS_REGION / AWS_DEFAULT_REGION or the profile's region, or add "
                 "`region:` to the manifest",
        )
    unknown = [region for region in only if region not in regions]
    if unknown:
        raise errors.UsageError(
            f"--region {', '.join(unknown)} is not a region of {parsed.file}",
            hint=f"its regions are: {', '.join(regions)}",
        )
    return [region for region in regions if not only or region in only]


def _layer_regions(
    spec: model.LayerSpec, *, regions: list[str], parsed: model.Manifest
) -> list[str]:
    """A layer named by ARN lives in its ARN's region only."""
    if spec.arn_region is None:
        return regions
    if spec.arn_region not in regions and not parsed.regions:
        location = spec.location
        raise errors.ManifestError([errors.Problem(
            parsed.file, location.line, location.column, f"layers.{spec.key}",
            f"the ARN is in region {spec.arn_region}, but the target region is "
            f"{', '.join(regions)}")])
    return [region for region in regions if region == spec.arn_region]


def _check_accounts(specs: list[model.LayerSpec], *, store: aws.LayerStore,
                    parsed: model.Manifest) -> None:
    if not any(spec.arn_account for spec in specs):
        return  # no STS call unless a layer is named by ARN
    account = store.account_id()
    for spec in specs:
        if spec.arn_account and spec.arn_account != account:
            raise errors.ManifestError([errors.Problem(
                parsed.file, spec.location.line, spec.location.column, f"layers.{spec.key}",
                f"the ARN is in account {spec.arn_account}, but the credentials are for "
                f"account {account}; a layer can only be published in your own account")])


def make_plan(
    *,
    parsed: model.Manifest,
    lock: model.Lock,
    store: aws.LayerStore,
    space: workspace.Workspace,
    default_region: str | None,
    targets: Sequence[str] = (),
    regions: Sequence[str] = (),
    progress: Progress = _quiet,
) -> PlanResult:
    """Plan the manifest (limited to targets and regions). Never writes remote state or the
    lockfile; it may write the `.reconcile/` cache."""
    unsupported = workspace.unsupported_problems(parsed)
    if unsupported:
        raise errors.ManifestError(unsupported)
    specs = select_layers(parsed, targets)
    chosen_regions = select_regions(parsed, default_region=default_region, only=regions)
    layer_regions = {spec.key: _layer_regions(spec, regions=chosen_regions, parsed=parsed)
                     for spec in specs}
    specs_by_key = {spec.key: spec for spec in specs}
    skip = frozenset({os.path.realpath(space.cache_dir),
                      os.path.realpath(space.lockfile_path)})
    build_dir = space.cache_dir / "build"

    def build(key: str, artifact: model.Artifact) -> model.Artifact:
        progress(f"{key}: packaging")
        return sources.build(specs_by_key[key].content, artifact, base_dir=space.base_dir,
                             label=f"layers.{key}", build_dir=build_dir, skip=skip)

    # Local first: identify every layer, and zip those whose desired CodeSha256 the lock
    # cannot tell (new or changed content), before any AWS call.
    cache = sources.StatCache.load(space.stat_cache_path)
    artifacts: dict[str, model.Artifact] = {}
    for spec in specs:
        progress(f"{spec.key}: reading content")
        artifact = sources.identify(spec.content, base_dir=space.base_dir,
                                    label=f"layers.{spec.key}", cache=cache, skip=skip)
        if any(planner.needs_zip(artifact, lock.get(spec.key, region))
               for region in layer_regions[spec.key]):
            artifact = build(spec.key, artifact)
        artifacts[spec.key] = artifact
    cache.save()

    _check_accounts(specs, store=store, parsed=parsed)
    observed: list[tuple[model.LayerSpec, str, model.RemoteVersion | None]] = []
    for spec in specs:
        for region in layer_regions[spec.key]:
            progress(f"{spec.key}: reading Lambda in {region}")
            remote = store.latest_version(region=region, layer_name=spec.name)
            if remote is not None and planner.needs_remote_code(remote, lock.get(spec.key,
                                                                                 region)):
                remote = store.with_code(region=region, layer_name=spec.name, version=remote)
            observed.append((spec, region, remote))

    def decide() -> model.Plan:
        return planner.plan(
            planner.Inputs(spec=spec, region=region, artifact=artifacts[spec.key],
                           lock_entry=lock.get(spec.key, region), remote_latest=remote)
            for spec, region, remote in observed)

    plan = decide()
    # A layer whose content the lock vouches for can still be published (its settings
    # changed, or Lambda drifted): apply needs its zip too. Decide again with the zip's real
    # digests, so that the plan shows exactly what will be uploaded.
    unbuilt = sorted({change.layer for change in plan.changes if change.action in _PUBLISHING
                      and artifacts[change.layer].zip_path is None})
    if unbuilt:
        for key in unbuilt:
            artifacts[key] = build(key, artifacts[key])
        plan = decide()
    _check_upload_sizes(plan, parsed=parsed)
    if not targets:
        sources.prune_builds(build_dir, keep={
            artifact.zip_path for artifact in artifacts.values() if artifact.zip_path})
    return PlanResult(plan=plan, artifacts=artifacts)


_PUBLISHING = (model.Action.CREATE, model.Action.PUBLISH)


def _check_upload_sizes(plan: model.Plan, *, parsed: model.Manifest) -> None:
    """A zip over Lambda's direct-upload limit cannot be published with Content.ZipFile."""
    for change in plan.changes:
        size = change.desired.code_size or 0
        if change.action in _PUBLISHING and size > model.MAX_DIRECT_UPLOAD_BYTES:
            location = parsed.locate(("layers", change.layer, "content"))
            hint = ("Lambda takes a larger zip only through S3, from the bucket the manifest's "
                    "`artifact_bucket:` names, and this version of reconcile cannot upload "
                    "through it yet; make the layer smaller (exclude what it does not need)")
            raise errors.ContentError(
                f"{parsed.file}:{location.line}:{location.column}: layers.{change.layer}: the "
                f"zip is {size:,} bytes, over Lambda's {model.MAX_DIRECT_UPLOAD_BYTES:,}-byte "
                "limit for a direct upload", hint=hint)


def apply(
    *,
    result: PlanResult,
    lock: model.Lock,
    store: aws.LayerStore,
    space: workspace.Workspace,
    progress: Progress = _quiet,
) -> ApplyReport:
    """Carry out the plan: publish each create/publish change and record each in the lockfile
    right after it succeeds; record noops that the plan says to record. Stops at the first
    failure (ApplyFailed), with every earlier success already in the lockfile.

    Before the first publish it checks what could fail after one: every zip is still there
    with its planned CodeSha256, and the lockfile's folder is writable.
    """
    to_publish = [change for change in result.plan.changes if change.action in _PUBLISHING]
    for change in to_publish:
        zip_path = result.artifacts[change.layer].zip_path
        if zip_path is None or change.desired.code_sha256 is None or not \
                sources.zip_matches(Path(zip_path), code_sha256=change.desired.code_sha256):
            raise errors.ApplyFailed(
                f"nothing was published: the zip built for {change.layer} at plan time "
                f"({zip_path}) is gone or changed",
                hint="was .reconcile/ cleaned during the apply? run apply again")
    if to_publish or result.plan.records:
        try:
            lockfile.check_writable(space.lockfile_path)
        except OSError as exc:
            raise errors.LockfileError(
                f"nothing was published: cannot write the lockfile {space.lockfile_path}: "
                f"{exc.strerror or exc}", hint="pass a writable --lockfile") from exc

    published: list[tuple[model.LayerChange, model.RemoteVersion]] = []
    recorded: list[model.LayerChange] = []

    def record(change: model.LayerChange, entry: model.LockEntry, *, new: bool) -> model.Lock:
        updated = lock.with_entry(change.layer, change.region, entry=entry)
        try:
            lockfile.write_atomic(space.lockfile_path, updated)
        except OSError as exc:
            what = (f"{entry.layer_version_arn} is published but not recorded" if new
                    else f"{entry.layer_version_arn} could not be recorded")
            raise errors.ApplyFailed(
                f"cannot write {space.lockfile_path}: {exc.strerror or exc}; {what}",
                hint="make the lockfile writable and run apply again: the plan will adopt the "
                     "published version instead of publishing it again") from exc
        return updated

    for change in result.plan.changes:
        if change.action in _PUBLISHING:
            upload = Path(result.artifacts[change.layer].zip_path or "")  # checked above
            progress(f"{change.layer}: publishing in {change.region}")
            try:
                outcome = publishing.publish_exactly_once(
                    store, region=change.region, layer_name=change.layer_name,
                    settings=change.desired.settings, zip_path=upload,
                    code_sha256=change.desired.code_sha256 or "",  # checked above
                    above_version=change.current.version if change.current else 0)
            except errors.AwsError as exc:
                raise _stopped(change, cause=exc, published=published) from exc
            version = outcome.version
            if outcome.adopted:
                progress(f"{change.layer}: the publish's reply was lost; found and adopted "
                         f"v{version.version} in {change.region}")
            if version.code_sha256 != change.desired.code_sha256:
                raise _stopped(change, cause=errors.AwsError(
                    f"{version.layer_version_arn} was published, but Lambda reports its "
                    f"CodeSha256 as {version.code_sha256} while the uploaded zip has "
                    f"{change.desired.code_sha256}; it is not recorded in the lockfile"),
                    published=published)
            lock = record(change, planner.lock_entry_for(change, version), new=True)
            published.append((change, version))
        elif change.action is model.Action.NOOP:
            if change.record is not None:
                lock = record(change, change.record, new=False)
                recorded.append(change)
        else:
            # The planner makes no DELETE change until retention is supported.
            raise errors.ReconcilerError(f"{change.action.value} is not supported yet")
    return ApplyReport(published=tuple(published), recorded=tuple(recorded), lock=lock)


def _stopped(change: model.LayerChange, *, cause: errors.ReconcilerError,
             published: list[tuple[model.LayerChange, model.RemoteVersion]]) -> errors.ApplyFailed:
    done = ", ".join(f"{c.layer} ({c.region}) v{v.version}" for c, v in published)
    if isinstance(cause, errors.PublishOutcomeUnknown):
        # The failed call may have made a version: "nothing" would be a claim nobody can make.
        summary = (f"recorded in the lockfile before the failure: {done or 'no version'}; the "
                   f"failed publish of {change.layer} ({change.region}) may have made a version "
                   "that is not recorded")
    else:
        summary = f"published before the failure, and recorded in the lockfile: {done or 'nothing'}"
    return errors.ApplyFailed(
        f"apply stopped at {change.layer} ({change.region}): {cause.message}\n{summary}",
        hint=cause.hint)
