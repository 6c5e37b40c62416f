"""The use cases: make_plan() gathers desired, recorded and observed state and asks the planner;
apply() carries out a plan's actions. Never prints or prompts: progress goes to a callback.

make_plan() works local-first: every layer is identified (and, where needed, zipped) before the
first AWS call, so a content mistake stops the run before anything remote is asked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reconciler import aws, errors, lockfile, model, planner, sources, workspace

Progress = Callable[[str], None]


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
    unknown = [region for region in only if region not in regions]
    if unknown:
        raise errors.UsageError(
            f"--region {', '.join(unknown)} is not a region of {parsed.file}",
            hint=f"its regions are: {', '.join(regions)}",
        )
    return [region for region in regions if not only or region in only]


def _layer_regions(spec: model.LayerSpec, regions: list[str], parsed: model.Manifest) -> list[str]:
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


def _check_accounts(specs: list[model.LayerSpec], store: aws.LayerStore,
                    parsed: model.Manifest) -> None:
    accounts = {spec.arn_account for spec in specs if spec.arn_account}
    if not accounts:
        return
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
    layer_regions = {spec.key: _layer_regions(spec, chosen_regions, parsed) for spec in specs}

    # Local first: identify every layer, and zip those whose desired CodeSha256 is unknown.
    cache = sources.StatCache.load(space.cache_dir / "cache.json")
    artifacts: dict[str, model.Artifact] = {}
    for spec in specs:
        label = f"layers.{spec.key}"
        progress(f"{spec.key}: reading content")
        artifact = sources.identify(spec.content, base_dir=space.base_dir, label=label,
                                    cache=cache)
        if any(planner.needs_zip(artifact, lock.get(spec.key, region))
               for region in layer_regions[spec.key]):
            progress(f"{spec.key}: packaging")
            artifact = sources.build(spec.content, artifact, base_dir=space.base_dir,
                                     label=label, build_dir=space.cache_dir / "build")
        artifacts[spec.key] = artifact
    cache.save()
    if not targets:
        sources.prune_builds(space.cache_dir / "build", keep={
            artifact.zip_path for artifact in artifacts.values() if artifact.zip_path})

    _check_accounts(specs, store, parsed)
    inputs: list[planner.Inputs] = []
    for spec in specs:
        for region in layer_regions[spec.key]:
            progress(f"{spec.key}: reading Lambda in {region}")
            lock_entry = lock.get(spec.key, region)
            remote = store.latest_version(region=region, layer_name=spec.name)
            if remote is not None and planner.needs_remote_code(remote, lock_entry):
                remote = store.with_code(region=region, layer_name=spec.name, version=remote)
            inputs.append(planner.Inputs(spec=spec, region=region, artifact=artifacts[spec.key],
                                         lock_entry=lock_entry, remote_latest=remote))
    plan = planner.plan(inputs)
    _check_upload_sizes(plan, parsed)
    return PlanResult(plan=plan, artifacts=artifacts)


def _check_upload_sizes(plan: model.Plan, parsed: model.Manifest) -> None:
    """A zip over Lambda's direct-upload limit cannot be published with Content.ZipFile."""
    for change in plan.changes:
        size = change.desired.code_size or 0
        if change.action in (model.Action.CREATE, model.Action.PUBLISH) and \
                size > model.MAX_DIRECT_UPLOAD_BYTES:
            location = parsed.locate(("layers", change.layer, "content"))
            hint = ("set `artifact_bucket:` in the manifest to upload through S3"
                    if parsed.artifact_bucket is None else
                    "uploading through artifact_bucket is not supported by this version yet")
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
    failure (ApplyFailed), with every earlier success already in the lockfile."""
    published: list[tuple[model.LayerChange, model.RemoteVersion]] = []
    recorded: list[model.LayerChange] = []
    for change in result.plan.changes:
        if change.action in (model.Action.CREATE, model.Action.PUBLISH):
            zip_path = result.artifacts[change.layer].zip_path
            if zip_path is None:
                raise errors.ReconcilerError(f"no zip was built for {change.layer}")
            progress(f"{change.layer}: publishing in {change.region}")
            try:
                version = store.publish(region=change.region, layer_name=change.layer_name,
                                        settings=change.desired.settings,
                                        zip_path=Path(zip_path))
            except errors.AwsError as exc:
                raise _stopped(change, exc, published) from exc
            if version.code_sha256 != change.desired.code_sha256:
                raise _stopped(change, errors.AwsError(
                    f"Lambda reports CodeSha256 {version.code_sha256} for "
                    f"{version.layer_version_arn}, but the uploaded zip has "
                    f"{change.desired.code_sha256}"), published)
            lock = lock.with_entry(change.layer, change.region,
                                   planner.lock_entry_for(change, version))
            lockfile.write_atomic(space.lockfile_path, lock)
            published.append((change, version))
        elif change.action is model.Action.NOOP:
            if change.record is not None:
                lock = lock.with_entry(change.layer, change.region, change.record)
                lockfile.write_atomic(space.lockfile_path, lock)
                recorded.append(change)
        else:
            # The planner makes no DELETE change until retention is supported.
            raise errors.ReconcilerError(f"{change.action.value} is not supported yet")
    return ApplyReport(published=tuple(published), recorded=tuple(recorded), lock=lock)


def _stopped(change: model.LayerChange, cause: errors.AwsError,
             published: list[tuple[model.LayerChange, model.RemoteVersion]]) -> errors.ApplyFailed:
    done = ", ".join(f"{c.layer} ({c.region}) v{v.version}" for c, v in published) or "nothing"
    return errors.ApplyFailed(
        f"apply stopped at {change.layer} ({change.region}): {cause.message}\n"
        f"published before the failure, and recorded in the lockfile: {done}",
        hint=cause.hint)

