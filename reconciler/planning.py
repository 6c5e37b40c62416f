"""The plan use case: gather the desired state (manifest and content), the recorded state (a
state snapshot) and the observed state (Lambda), ask the planner what evidence it needs, fetch
it, and let it decide once. Never prints, never writes remote state or the recorded state; it
may write the `.reconcile/` cache.

It works local-first: every layer is identified (and zipped where the lock cannot vouch for its
content) before the first AWS call. A layer whose content cannot be packaged becomes an error
in the plan and the others are still planned.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import hashlib
import re
import uuid
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reconciler import (
    __version__,
    adoption,
    archive,
    artifacts,
    consuming,
    elfcheck,
    errors,
    model,
    planner,
    ports,
)

Progress = Callable[[str], None]
_REGION_NAME = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")  # as the manifest schema's `region`
# zip, then GetLayerVersion, then the zip of a publish or the download of adoption by
# content; then the policy or every version, then the function uses and the sizes of what
# retention may delete: 5 suffice.
_MAX_EVIDENCE_ROUNDS = 8


def _quiet(_: str) -> None:
    return None


def manifest_sha256(data: bytes) -> str:
    """The manifest's digest recorded in a plan's basis."""
    return hashlib.sha256(data).hexdigest()


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


def layer_regions(
    spec: model.LayerSpec, *, regions: list[str], parsed: model.Manifest
) -> list[str]:
    """The regions a layer is planned in: a layer named by ARN lives in its ARN's region."""
    if spec.arn_region is None:
        return regions
    if spec.arn_region not in regions and not parsed.regions:
        location = spec.location
        raise errors.ManifestError([errors.Problem(
            parsed.file, location.line, location.column, f"layers.{spec.key}",
            f"the ARN is in region {spec.arn_region}, but the target region is "
            f"{', '.join(regions)}")])
    return [region for region in regions if region == spec.arn_region]


def check_accounts(specs: list[model.LayerSpec], *, store: ports.LayerStore,
                   parsed: model.Manifest) -> None:
    """A layer named by an ARN of another account cannot be published: a located error."""
    if not any(spec.arn_account for spec in specs):
        return  # no STS call unless a layer is named by ARN
    account = store.account_id()
    for spec in specs:
        if spec.arn_account and spec.arn_account != account:
            raise errors.ManifestError([errors.Problem(
                parsed.file, spec.location.line, spec.location.column, f"layers.{spec.key}",
                f"the ARN is in account {spec.arn_account}, but the credentials are for "
                f"account {account}; a layer can only be published in your own account")])


@dataclass(frozen=True)
class Selection:
    """What one plan or apply covers: the layers, and the regions of each."""

    specs: tuple[model.LayerSpec, ...]
    regions: dict[str, list[str]]
    targets: tuple[str, ...]
    only_regions: tuple[str, ...]


def select(parsed: model.Manifest, *, default_region: str | None, targets: Sequence[str],
           regions: Sequence[str]) -> Selection:
    """The layers and regions --target and --region select."""
    specs = select_layers(parsed, targets)
    chosen = select_regions(parsed, default_region=default_region, only=regions)
    return Selection(
        specs=tuple(specs),
        regions={spec.key: layer_regions(spec, regions=chosen, parsed=parsed) for spec in specs},
        targets=tuple(sorted(set(targets))),
        only_regions=tuple(sorted(set(regions))),
    )


def basis(*, selection: Selection, manifest_digest: str, snapshot: ports.Snapshot,
          state_location: str, fingerprints: dict[str, str], manifest_path: str = "",
          download: bool = True) -> model.PlanBasis:
    """The basis of a plan made now."""
    return model.PlanBasis(
        plan_id=str(uuid.uuid4()),
        created=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        manifest_sha256=manifest_digest,
        state_location=state_location,
        state_revision=snapshot.revision,
        fingerprints=tuple(sorted(fingerprints.items())),
        targets=selection.targets,
        regions=selection.only_regions,
        tool_version=__version__,
        packaging_format=archive.FORMAT_VERSION,
        manifest=manifest_path,
        download=download,
    )


def make_plan(
    *,
    parsed: model.Manifest,
    selection: Selection,
    snapshot: ports.Snapshot,
    state_location: str,
    manifest_digest: str,
    store: ports.LayerStore,
    code: artifacts.LocalCode,
    parallelism: int = 4,
    progress: Progress = _quiet,
    download: bool = True,
    manifest_path: str = "",
    state: ports.StateBackend | None = None,
    lock_id: str | None = None,
    owner: str | None = None,
    consumers: Consumers | None = None,
) -> model.Plan:
    """Plan the selection against the snapshot and Lambda (regions read `parallelism` at
    a time). `download` False never downloads a remote zip (no adoption by content).
    `manifest_path` names the manifest in the basis (its path below the repository root).
    `owner` names it in the state entries it owns (its path below its own repository root,
    whatever the working directory; default `manifest_path`).

    Stray fillers (planner.stray_fillers) are deleted only where no apply may still be
    using them: `lock_id` says this run holds the state lock (an apply); otherwise `state`'s
    lock is read once every version has been listed, so that a filler seen then was made
    by an apply that has ended if nobody holds the lock now. Given neither, the caller
    vouches that no apply runs. `consumers` reads the functions and parameters of the layers
    that declare them (required when one does)."""
    owner = manifest_path if owner is None else owner
    specs = list(selection.specs)
    found = _Evidence(parsed=parsed, selection=selection, lock=snapshot.lock, code=code,
                      download=download, progress=progress,
                      identified=code.identify(specs, regions=selection.regions))
    # A layer whose entry another manifest owns is refused before any AWS call.
    for refused in planner.owned_elsewhere(
            snapshot.lock, owner=owner,
            planned={spec.key: selection.regions[spec.key] for spec in found.planned(specs)}):
        found.layer_errors.append(refused)
        del found.artifacts[refused.layer]
    # Local first: the zips whose CodeSha256 the lock cannot tell, before any AWS call (an
    # S3 source has no zip to build: Lambda reads its object).
    for spec in found.planned(specs):
        if spec.content.kind is not model.SourceKind.S3 and any(
                planner.needs_zip(found.artifacts[spec.key], snapshot.lock.get(spec.key, region))
               for region in selection.regions[spec.key]):
            found.fulfil_zip(spec)
    check_accounts(found.planned(specs), store=store, parsed=parsed)
    found.remote = observe(found.planned(specs), selection=selection, store=store,
                           parallelism=parallelism, progress=progress)
    for _ in range(_MAX_EVIDENCE_ROUNDS):
        if not found.fetch_round(found.planned(specs), store=store, parallelism=parallelism):
            break
    else:  # pragma: no cover - the planner asks for at most three kinds of evidence in turn
        raise errors.ReconcilerError("the planner kept asking for evidence; this is a bug")
    if not selection.targets:
        code.prune()
    seen = observe_consumers(found.planned(specs), selection=selection, remote=found.remote,
                             consumers=consumers, store=store, parallelism=parallelism,
                             progress=progress, manifest_regions=parsed.regions)
    fingerprints = {key: artifact.fingerprint for key, artifact in found.artifacts.items()}
    # The lock is read only when there is a stray filler to delete or not.
    holder = lock_holder(state, lock_id=lock_id) if any(
        planner.stray_fillers(listed) for listed in found.versions.values()) else None
    decided = planner.plan(found.all_inputs(found.planned(specs)), lock_holder=holder,
                           consumers=seen)
    storage_regions = planner.storage_regions(decided)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
        storage = {region: used for region, used in zip(storage_regions, pool.map(
            lambda region: store.code_storage(region=region), storage_regions), strict=True)
            if used is not None}
    # A layer too large to publish is an error, and so not also a change to make (it was
    # counted as "1 to create" besides): out of the plan, like a layer whose content failed.
    size_errors = _upload_size_errors(decided, parsed=parsed)
    # Before anything is published, each zip to publish is checked against what its layer
    # declares; a layer whose binaries cannot run there is out of the plan, like a too large
    # one (an unchanged layer has no zip built and is not read).
    binary_errors, binary_warnings = binary_check(decided, built=found.artifacts, parsed=parsed,
                                                  code=code)
    left_out = {error.layer for error in [*size_errors, *binary_errors]}
    final = planner.plan(
        found.all_inputs([spec for spec in found.planned(specs) if spec.key not in left_out]),
        storage=storage, lock_holder=holder, consumers=seen,
        recorded=recorded(parsed, selection=selection, lock=snapshot.lock, owner=owner,
                          own_lockfile=not state_location.startswith("s3://")),
        layer_errors=[*found.layer_errors, *size_errors, *binary_errors],
        basis=basis(selection=selection, manifest_digest=manifest_digest, snapshot=snapshot,
                    state_location=state_location, fingerprints=fingerprints,
                    manifest_path=manifest_path, download=download),
    )
    if not binary_warnings:
        return final
    return dataclasses.replace(final, warnings=(*final.warnings, *binary_warnings))


@dataclasses.dataclass(frozen=True)
class Consumers:
    """The stores a plan reads the layers' consumers through."""

    functions: ports.FunctionStore
    parameters: ports.ParameterStore


def observe_consumers(planned: list[model.LayerSpec], *, selection: Selection,
                      remote: dict[tuple[str, str], model.RemoteVersion | None],
                      consumers: Consumers | None, store: ports.LayerStore, parallelism: int,
                      progress: Progress,
                      manifest_regions: Sequence[str] = ()) -> dict[str, planner.Seen]:
    """What the planner needs of the consumers of `planned` (consuming.observe;
    `manifest_regions`: the manifest's, of which --region may select some)."""
    if not any(spec.consumers is not None or spec.parameter is not None for spec in planned):
        return {}
    if consumers is None:
        raise errors.ReconcilerError("a layer has consumers, but the plan was given no "
                                     "function or parameter store; this is a bug")
    progress("reading the layers' consumer functions and parameters")
    return consuming.observe(planned, regions=selection.regions, remote=remote,
                             functions=consumers.functions, parameters=consumers.parameters,
                             account=store.account_id, parallelism=parallelism,
                             partial=bool(selection.only_regions),
                             manifest_regions=manifest_regions)


def recorded(parsed: model.Manifest, *, selection: Selection, lock: model.Lock, owner: str,
             own_lockfile: bool) -> planner.Recorded:
    """What the forget decision reads: the layers and regions the whole manifest names (not
    only the selection's), and the selection."""
    listed = list(parsed.regions)
    return planner.Recorded(
        lock=lock,
        named=planner.named_pairs(
            (spec.key, layer_regions(spec, regions=listed, parsed=parsed) if listed else ())
            for spec in parsed.layers),
        named_layers=frozenset(spec.key for spec in parsed.layers),
        regions_listed=bool(listed), owner=owner, own_lockfile=own_lockfile,
        targeted=bool(selection.targets), only_regions=selection.only_regions,
        manifest_file=owner or parsed.file)


class _Evidence:
    """What one plan has found so far, layer by layer and region by region: the local
    artifacts (and the layers in error), the remote latest versions, and the evidence the
    planner asked for (policies, every version, function uses, downloaded contents)."""

    def __init__(self, *, parsed: model.Manifest, selection: Selection, lock: model.Lock,
                 code: artifacts.LocalCode, download: bool, progress: Progress,
                 identified: dict[str, model.Artifact | model.LayerError]) -> None:
        self._parsed, self._selection, self._lock = parsed, selection, lock
        self._code, self._download, self._progress = code, download, progress
        self.layer_errors = [item for item in identified.values()
                             if isinstance(item, model.LayerError)]
        self.artifacts = {key: item for key, item in identified.items()
                          if isinstance(item, model.Artifact)}
        self.remote: dict[tuple[str, str], model.RemoteVersion | None] = {}
        self.policies: dict[tuple[str, str], frozenset[str]] = {}
        self.versions: dict[tuple[str, str], tuple[model.RemoteVersion, ...]] = {}
        self.function_uses: dict[str, dict[str, tuple[str, ...]]] = {}
        self.contents: dict[tuple[str, str], model.RemoteContent] = {}

    def planned(self, specs: list[model.LayerSpec]) -> list[model.LayerSpec]:
        """The layers of `specs` still planned (not in error)."""
        return [spec for spec in specs if spec.key in self.artifacts]

    def fulfil_zip(self, spec: model.LayerSpec) -> None:
        """Build the layer's zip; a content error takes the layer out of the plan."""
        self._progress(f"{spec.key}: packaging")
        identified = self.artifacts[spec.key]
        try:
            self.artifacts[spec.key] = dataclasses.replace(
                self._code.build(spec, identified), git_ignored=identified.git_ignored)
        except errors.ContentError as error:
            self.layer_errors.append(model.LayerError(layer=spec.key, message=error.message,
                                                      hint=error.hint))
            del self.artifacts[spec.key]

    def inputs(self, spec: model.LayerSpec, region: str) -> planner.Inputs:
        """What the planner decides `spec` in `region` from, as found so far."""
        key = (spec.key, region)
        return planner.Inputs(spec=spec, region=region, artifact=self.artifacts[spec.key],
                              lock_entry=self._lock.get(spec.key, region),
                              remote_latest=self.remote[key], policy=self.policies.get(key),
                              versions=self.versions.get(key),
                              function_uses=self.function_uses.get(region),
                              artifact_bucket=artifact_bucket(self._parsed, region=region),
                              download=self._download, remote_content=self.contents.get(key))

    def all_inputs(self, specs: list[model.LayerSpec]) -> list[planner.Inputs]:
        """The inputs of every layer of `specs` in each of its regions."""
        return [self.inputs(spec, region) for spec in specs
                for region in self._selection.regions[spec.key]]

    def fetch_round(self, planned: list[model.LayerSpec], *, store: ports.LayerStore,
                    parallelism: int) -> bool:
        """Ask the planner what it misses and fetch it (in a pool); False when it asked for
        nothing, so that it can decide."""
        regions = self._selection.regions
        asked = {(spec.key, region): planner.missing_evidence(self.inputs(spec, region))
                 for spec in planned for region in regions[spec.key]}
        if not any(asked.values()):
            return False

        def wanted(kind: planner.Evidence) -> list[tuple[model.LayerSpec, str,
                                                         model.RemoteVersion]]:
            return [(spec, region, latest) for spec in planned for region in regions[spec.key]
                    if kind in asked[(spec.key, region)]
                    and (latest := self.remote[(spec.key, region)]) is not None]

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
            fetch = wanted(planner.Evidence.REMOTE_CODE)
            fetched = pool.map(lambda item: store.with_code(
                region=item[1], layer_name=item[0].name, version=item[2]), fetch)
            for (spec, region, _), version in zip(fetch, list(fetched), strict=True):
                self.remote[(spec.key, region)] = version
            fetch_fleet_evidence(asked, planned=planned, remote=self.remote,
                                 policies=self.policies, versions=self.versions,
                                 function_uses=self.function_uses, store=store, pool=pool)
            downloads = wanted(planner.Evidence.REMOTE_CONTENT)
            for spec, region, _ in downloads:
                self._progress(f"{spec.key}: downloading the latest version in {region} to "
                               "compare its files")
            found_contents = pool.map(lambda item: adoption.remote_content(
                store=store, spec=item[0], region=item[1], version=item[2].version,
                downloads_dir=self._code.downloads_dir), downloads)
            for (spec, region, _), content in zip(downloads, list(found_contents), strict=True):
                self.contents[(spec.key, region)] = content
        for spec in planned:
            if any(planner.Evidence.ZIP in asked[(spec.key, region)]
                   for region in regions[spec.key]):
                self.fulfil_zip(spec)
        return True


_PUBLISHING = (model.Action.CREATE, model.Action.PUBLISH)


def lock_holder(state: ports.StateBackend | None, *,
                lock_id: str | None) -> errors.LockHolder | None:
    """The apply that holds the state lock now, when it is not this run (None: nobody, or
    this run, or no state to ask)."""
    if lock_id is not None or state is None:
        return None
    return state.lock_holder()


def fetch_fleet_evidence(
    asked: dict[tuple[str, str], frozenset[planner.Evidence]],
    *,
    planned: list[model.LayerSpec],
    remote: dict[tuple[str, str], model.RemoteVersion | None],
    policies: dict[tuple[str, str], frozenset[str]],
    versions: dict[tuple[str, str], tuple[model.RemoteVersion, ...]],
    function_uses: dict[str, dict[str, tuple[str, ...]]],
    store: ports.LayerStore,
    pool: concurrent.futures.ThreadPoolExecutor,
) -> None:
    """Fetch what sharing, retention and the look for stray fillers asked for, in the pool,
    into the dicts given: the latest version's policy, every version (a filler listed as
    the latest is then replaced in `remote` by the real latest), the region's function uses
    (once per region), the sizes of the versions retention may delete and the CodeSha256
    of each filler."""
    names = {spec.key: spec for spec in planned}
    policy_jobs: list[tuple[tuple[str, str], model.LayerSpec, int]] = []
    version_jobs: list[tuple[tuple[str, str], model.LayerSpec]] = []
    size_jobs: list[tuple[tuple[str, str], model.LayerSpec, model.RemoteVersion]] = []
    regions_for_uses: set[str] = set()
    for (key, region), needs in sorted(asked.items()):
        spec, latest = names[key], remote.get((key, region))
        if planner.Evidence.POLICY in needs and latest is not None:
            policy_jobs.append(((key, region), spec, latest.version))
        if planner.Evidence.VERSIONS in needs:
            version_jobs.append(((key, region), spec))
        if planner.Evidence.FUNCTION_USES in needs and region not in function_uses:
            regions_for_uses.add(region)
        if planner.Evidence.VERSION_SIZES in needs:
            size_jobs.extend(((key, region), spec, version) for version in
                             planner.versions_to_read(spec, versions.get((key, region), ())))
    found_policies = pool.map(lambda job: store.policy_statements(
        region=job[0][1], layer_name=job[1].name, version=job[2]), policy_jobs)
    found_versions = pool.map(lambda job: store.all_versions(
        region=job[0][1], layer_name=job[1].name), version_jobs)
    found_sizes = pool.map(lambda job: store.with_code(
        region=job[0][1], layer_name=job[1].name, version=job[2]), size_jobs)
    found_uses = pool.map(lambda region: store.function_uses(region=region),
                          sorted(regions_for_uses))
    for (policy_key, _, _), statements in zip(policy_jobs, list(found_policies), strict=True):
        policies[policy_key] = statements
    for (listed_key, _), listed in zip(version_jobs, list(found_versions), strict=True):
        versions[listed_key] = tuple(listed)
        # A filler listed as the latest (an apply left it) is not the region's latest layer.
        remote[listed_key] = planner.real_latest(remote.get(listed_key), listed)
    for (sized_key, _, _), sized in zip(size_jobs, list(found_sizes), strict=True):
        versions[sized_key] = tuple(sized if version.version == sized.version else version
                                    for version in versions[sized_key])
    for region, uses in zip(sorted(regions_for_uses), list(found_uses), strict=True):
        function_uses[region] = uses


def observe(
    planned: list[model.LayerSpec],
    *,
    selection: Selection,
    store: ports.LayerStore,
    parallelism: int,
    progress: Progress = _quiet,
) -> dict[tuple[str, str], model.RemoteVersion | None]:
    """The latest remote version of every planned layer in every region, the regions read
    in parallel (a bounded pool), each in as few calls as the store can manage."""
    by_region: dict[str, list[model.LayerSpec]] = {}
    for spec in planned:
        for region in selection.regions[spec.key]:
            by_region.setdefault(region, []).append(spec)

    def read(region: str) -> tuple[str, ports.Observed]:
        progress(f"reading Lambda in {region}")
        return region, store.latest_versions(
            region=region, layer_names=sorted({spec.name for spec in by_region[region]}))

    remote: dict[tuple[str, str], model.RemoteVersion | None] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
        for region, observed in pool.map(read, sorted(by_region)):
            progress(f"debug: {region}: {observed.how} ({observed.calls} call"
                     f"{'s' if observed.calls != 1 else ''})")
            for spec in by_region[region]:
                remote[(spec.key, region)] = observed.latest.get(spec.name)
    return remote


def artifact_bucket(parsed: model.Manifest, *, region: str) -> str | None:
    """The manifest's artifact bucket for `region`: the one bucket, or the map's entry (a
    bucket serves its own region only, as Lambda reads code from its own region)."""
    if parsed.artifact_buckets:
        return dict(parsed.artifact_buckets).get(region)
    return parsed.artifact_bucket


def _upload_size_errors(plan: model.Plan, *, parsed: model.Manifest) -> list[model.LayerError]:
    """A zip over Lambda's direct-upload limit with no artifact bucket to go through cannot be
    published (Content.ZipFile refuses it): an error of that layer, naming `artifact_bucket`."""
    found: dict[str, model.LayerError] = {}
    for change in plan.changes:
        if change.action not in _PUBLISHING:
            continue
        size, code = change.desired.code_size or 0, change.details_as(model.PublishDetails).code
        direct = code is None or code.route is model.UploadRoute.DIRECT
        if direct and size > model.MAX_DIRECT_UPLOAD_BYTES:
            location = parsed.locate(("layers", change.layer, "content"))
            found[change.layer] = model.LayerError(
                layer=change.layer,
                message=f"{parsed.file}:{location.line}:{location.column}: "
                        f"layers.{change.layer}: the zip is {size:,} bytes, over Lambda's "
                        f"{model.MAX_DIRECT_UPLOAD_BYTES:,}-byte limit for a direct upload, "
                        f"and the manifest names no `artifact_bucket` for {change.region}",
                hint="Lambda takes a larger zip only from S3: add `artifact_bucket: "
                     "<bucket in that region>` to the manifest (reconcile uploads the zip "
                     "there), or make the layer smaller")
    return list(found.values())


# A layer error lists this many files at most (the rest are counted), and the plan warns about
# this many files of one layer.
_MAX_FINDINGS_SHOWN = 20
_MAX_WARNINGS_SHOWN = 10
BINARY_HINT = ("declare the runtimes and architectures the files are built for, use wheels "
               "built for the layer's target, or set `check_binaries: false` on the layer")


def binary_check(plan: model.Plan, *, built: dict[str, model.Artifact],
                 parsed: model.Manifest,
                 code: artifacts.LocalCode) -> tuple[list[model.LayerError], list[str]]:
    """The binary check (README "Binary compatibility") of every layer the plan would
    publish (create or publish) from a zip this run built or was given: each ELF file
    against the layer's runtimes and architectures. A mismatch is an error of the layer; a
    library needed and found nowhere is a warning. A layer with `check_binaries: false`, or
    an S3 source (never downloaded), is not checked."""
    publishing = sorted({change.layer for change in plan.changes if change.action in _PUBLISHING})
    layer_errors: list[model.LayerError] = []
    warnings: list[str] = []
    for key in publishing:
        spec, artifact = parsed.layer(key), built.get(key)
        if (not spec.check_binaries or artifact is None or artifact.zip_path is None
                or artifact.code_sha256 is None):
            continue
        label = artifacts.LocalCode.label(spec)
        try:
            findings = code.verdicts.check(
                artifact.zip_path, code_sha256=artifact.code_sha256,
                runtimes=spec.settings.compatible_runtimes,
                architectures=spec.settings.compatible_architectures)
        except (OSError, zipfile.BadZipFile) as error:
            layer_errors.append(model.LayerError(
                layer=key, message=f"{label}: the zip {artifact.zip_path} cannot be read "
                                   f"for the binary check: {error}"))
            continue
        failed = [finding for finding in findings if finding.error]
        if failed:
            layer_errors.append(_binary_error(spec, failed))
        missing = [finding for finding in findings if not finding.error]
        warnings += [f"layer {key}: {finding}" for finding in missing[:_MAX_WARNINGS_SHOWN]]
        if len(missing) > _MAX_WARNINGS_SHOWN:
            warnings.append(f"layer {key}: {len(missing) - _MAX_WARNINGS_SHOWN} more "
                            "libraries needed and found neither in the layer nor on Lambda")
    return layer_errors, warnings


def _binary_error(spec: model.LayerSpec,
                  failed: Sequence[elfcheck.Finding]) -> model.LayerError:
    label = artifacts.LocalCode.label(spec)
    if len(failed) == 1:
        message = f"{label}: a binary cannot run where the layer is declared to: {failed[0]}"
    else:
        shown = "".join(f"\n  - {finding}" for finding in failed[:_MAX_FINDINGS_SHOWN])
        more = (f"\n  - and {len(failed) - _MAX_FINDINGS_SHOWN} more"
                if len(failed) > _MAX_FINDINGS_SHOWN else "")
        message = (f"{label}: {len(failed)} binaries cannot run where the layer is declared "
                   f"to:{shown}{more}")
    return model.LayerError(layer=spec.key, message=message, hint=BINARY_HINT)
