"""The commands on a manifest's layers: validate, plan, apply, show and outputs. Each parses
its options, asks the composition for its parts, calls the use cases and hands what they
return to the views; apply also holds the state lock and the signal handling around it.

Wiring only: what a plan is, how a saved plan is checked and what an apply report says
belong to the use cases (`reconciler.run`, planning, applying).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from reconciler import errors, model, planfile, ports, ratelimit, render
from reconciler import state as state_package
from reconciler.command import lazy, views, workflow
from reconciler.command.options import (
    ApplyFormat,
    AttemptsOption,
    EndpointOption,
    LockfileOption,
    LockTimeoutOption,
    ManifestOption,
    MaxRpsOption,
    NoDownloadOption,
    NoSummaryOption,
    OutputsFormat,
    ParallelismOption,
    PlanFormat,
    ProfileOption,
    RegionOption,
    TargetOption,
    TimeoutOption,
    YesOption,
)
from reconciler.command.signals import StopOnSignal

if TYPE_CHECKING:
    from reconciler import applying, workspace
    from reconciler.command import compose
    from reconciler.run import report as run_report
    from reconciler.run import savedplans
    from reconciler.run import session as run_session
else:
    applying = lazy.module("reconciler.applying")
    compose = lazy.module("reconciler.command.compose")
    run_report = lazy.module("reconciler.run.report")
    run_session = lazy.module("reconciler.run.session")
    savedplans = lazy.module("reconciler.run.savedplans")
    workspace = lazy.module("reconciler.workspace")

EXIT_CHANGES = 2


def validate(
    manifest: ManifestOption = Path("layers.yaml"),
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    max_attempts: AttemptsOption = None,
    timeout: TimeoutOption = None,
    no_summary: NoSummaryOption = False,
) -> None:
    """Check the manifest and the files it names. Makes no AWS call (the AWS options are
    accepted, so a pipeline can pass the same ones to every command, and unused)."""
    space = compose.compose(compose.Options(manifest=manifest)).space
    parsed = workspace.load_manifest(space)
    walked = workspace.walk_problems(space, parsed)  # what plan's walk would refuse
    if walked:
        raise errors.ManifestError(walked)
    kinds: dict[str, int] = {}
    for spec in parsed.layers:
        kinds[spec.content.kind.value] = kinds.get(spec.content.kind.value, 0) + 1
    sources = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
    regions = ", ".join(parsed.regions) or "the AWS default region"
    count = len(parsed.layers)
    views.line(f"{manifest}: valid: {count} layer{'s' if count != 1 else ''} "
               f"({sources}), region {regions}.")


def plan(
    manifest: ManifestOption = Path("layers.yaml"),
    lockfile_path: LockfileOption = None,
    output_format: Annotated[PlanFormat, typer.Option(
        "--format", help="Output format.")] = PlanFormat.text,
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="PLANFILE",
        help="Also save the plan, for `reconcile apply PLANFILE` (holds no zips).")] = None,
    detailed_exitcode: Annotated[bool, typer.Option(
        "--detailed-exitcode", help="Exit 2 when changes are pending, 0 when none.")] = False,
    target: TargetOption = None,
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    max_attempts: AttemptsOption = None,
    timeout: TimeoutOption = None,
    parallelism: ParallelismOption = 4,
    max_rps: MaxRpsOption = ratelimit.DEFAULT_RPS,
    no_summary: NoSummaryOption = False,
    no_download: NoDownloadOption = False,
) -> None:
    """Show what apply would publish, and why. Changes nothing remote and no state.

    Examples:

      reconcile plan

      reconcile plan --out plan.json --format markdown   # in a pull-request job

      reconcile plan --detailed-exitcode || [ $? -eq 2 ]
    """
    workflow.begin("plan", manifest, no_summary=no_summary)
    session = run_session.open_session(compose.compose(compose.Options(
        manifest=manifest, lockfile=lockfile_path, profile=profile, endpoint_url=endpoint_url,
        max_attempts=max_attempts, timeout=timeout, max_rps=max_rps)),
        targets=target, regions=region)
    if out is not None:
        savedplans.refuse_inside_a_layer(out, session=session)
    with views.progress_display():
        the_plan = run_session.make_plan(session, session.state.read(),
                                         parallelism=parallelism, download=not no_download,
                                         progress=views.progress)
    views.plan(the_plan, output_format)
    workflow.record_changes(the_plan.has_changes)
    if out is not None:
        savedplans.write(out, planfile.to_document(the_plan))
        workflow.record_plan_file(str(out))
        if output_format is PlanFormat.text:
            views.saved_plan(out, manifest=None if the_plan.basis is None
                             or the_plan.basis.manifest else manifest)
    workflow.step_summary(render.markdown(the_plan, title=workflow.summary_title()))
    if the_plan.errors:
        raise errors.ReconcilerError(
            f"{len(render.error_layers(the_plan))} layer(s) could not be planned: "
            + ", ".join(render.error_layers(the_plan)),
            hint="the plan above shows each error; the other layers were planned")
    if detailed_exitcode and the_plan.has_changes:
        raise typer.Exit(EXIT_CHANGES)


def apply(
    plan_file: Annotated[Path | None, typer.Argument(
        metavar="[PLANFILE]", help="A plan saved by `plan --out`: apply exactly it.")] = None,
    manifest: Annotated[Path | None, typer.Option(
        "-f", "--manifest", metavar="MANIFEST",
        help="The manifest [default: layers.yaml; with PLANFILE, the plan's own].")] = None,
    lockfile_path: LockfileOption = None,
    yes: YesOption = False,
    output_format: Annotated[ApplyFormat, typer.Option(
        "--format", help="Output format.")] = ApplyFormat.text,
    target: TargetOption = None,
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    max_attempts: AttemptsOption = None,
    timeout: TimeoutOption = None,
    lock_timeout: LockTimeoutOption = 0.0,
    parallelism: ParallelismOption = 4,
    max_rps: MaxRpsOption = ratelimit.DEFAULT_RPS,
    no_summary: NoSummaryOption = False,
    no_download: NoDownloadOption = False,
) -> None:
    """Publish exactly the layers that changed and record them: plan and confirm first, or
    apply a saved PLANFILE (not asked again: it was reviewed). With PLANFILE, apply decides
    again with the plan's own selection and refuses, naming each difference, unless the
    fresh decision makes exactly the plan's changes.

    Examples:

      reconcile apply                 # plan, show it, ask

      reconcile apply --yes           # in CI, without a saved plan

      reconcile apply plan.json       # exactly the plan saved by `plan --out plan.json`
    """
    # Until the plan file is read, its manifest is not known: a refused plan file's summary
    # names the file.
    workflow.begin("apply", manifest or plan_file or Path("layers.yaml"), no_summary=no_summary)
    as_json = output_format is ApplyFormat.json
    saved: savedplans.Loaded | None = None
    download = not no_download
    if plan_file is not None:
        saved = savedplans.load_for_apply(plan_file)
        chosen = savedplans.saved_selection(
            saved.plan, plan_file=plan_file, manifest=manifest, targets=target,
            regions=region, no_download=no_download)
        manifest, target, region, download = (chosen.manifest, chosen.targets,
                                              chosen.regions, chosen.download)
        workflow.begin("apply", manifest, no_summary=no_summary)
    session = run_session.open_session(compose.compose(compose.Options(
        manifest=manifest or Path("layers.yaml"), lockfile=lockfile_path, profile=profile,
        endpoint_url=endpoint_url, max_attempts=max_attempts, timeout=timeout,
        max_rps=max_rps)), targets=target, regions=region, uploads=True)
    # The apply machinery's modules, loaded now (~10 ms) rather than after the plan: the
    # head start's worker is still identifying and building, and the plan waits for it.
    lazy.load(applying)
    with StopOnSignal() as stopping:
        lock_id = state_package.take_lock(
            session.state, run_session.holder("apply", session.space), timeout=lock_timeout,
            stop=stopping.event, announce=views.err)
        outcome: tuple[applying.ApplyReport, model.Plan] | None = None
        try:
            stopping.interrupt_now(True)
            outcome = _apply_locked(session, saved=saved, plan_file=plan_file, yes=yes,
                                    as_json=as_json, parallelism=parallelism,
                                    stopping=stopping, download=download, lock_id=lock_id)
        finally:
            stopping.interrupt_now(False)
            unlock_error = _unlock(session.state, lock_id)
            if unlock_error is not None and outcome is None:
                # The error on its way out says what happened; this says what is left.
                views.err(errors.redact_urls(run_report.unlock_failure(
                    location=session.state.location, lock_id=lock_id, error=unlock_error)))
    report, the_plan = outcome
    _finish_apply(report, session=session, the_plan=the_plan, as_json=as_json,
                  lock_id=lock_id, unlock_error=unlock_error)


def _unlock(backend: ports.StateBackend, lock_id: str) -> errors.ReconcilerError | None:
    """Release the state lock; its failure is returned, so that it never hides what the
    apply did (the report is still printed and written)."""
    try:
        backend.unlock(lock_id)
    except errors.ReconcilerError as error:
        return error
    return None


def _apply_locked(session: run_session.Session, *, saved: savedplans.Loaded | None,
                  plan_file: Path | None, yes: bool, as_json: bool, parallelism: int,
                  stopping: StopOnSignal, download: bool,
                  lock_id: str) -> tuple[applying.ApplyReport, model.Plan]:
    """Apply's work under the lock: plan (or check the saved plan), confirm, apply. A signal
    raises Interrupted until the first change, then only asks apply to stop."""
    snapshot = session.state.read()
    # Decided again even for a saved plan: what runs is this fresh plan, and only if it is
    # the saved one.
    with views.progress_display():
        the_plan = run_session.make_plan(session, snapshot, parallelism=parallelism,
                                         download=download, progress=views.progress,
                                         lock_id=lock_id)
    refused: list[tuple[model.Change, str]] = []
    if saved is None:
        if not as_json:
            views.plan_text(the_plan)
        views.confirm(the_plan, yes=yes, as_json=as_json)
    else:
        refused = savedplans.refuse_stale(saved.plan, the_plan)
        if not as_json:
            views.plan_text(the_plan)
            views.left_out(refused)
        stopping.interrupt_now(False)
        savedplans.mark_applied(plan_file or Path(), saved, snapshot=snapshot)
    stopping.interrupt_now(False)
    consumers = session.consumers
    with views.progress_display():
        try:
            report = applying.apply(the_plan, store=session.store, state=session.state,
                                    code=session.code, snapshot=snapshot,
                                    objects=session.objects, parallelism=parallelism,
                                    stop=stopping.event, progress=views.progress,
                                    owner=run_session.manifest_owner(session.space),
                                    functions=consumers.functions if consumers else None,
                                    parameters=consumers.parameters if consumers else None,
                                    refused=refused)
        except errors.ReconcilerError as error:
            if as_json:
                views.json_document(run_report.failed_before_any_change(error))
            raise
    return report, the_plan


def _finish_apply(report: applying.ApplyReport, *, session: run_session.Session,
                  the_plan: model.Plan, as_json: bool, lock_id: str,
                  unlock_error: errors.ReconcilerError | None) -> None:
    """Report what apply did (a lock that could not be released included), and raise for
    an interrupted or incomplete apply, or a lock left behind."""
    location = session.state.location
    result = run_report.document(report, state_location=location, plan=the_plan,
                                 lock_id=lock_id, unlock_error=unlock_error)
    workflow.record_changes(run_report.changed(report))
    workflow.step_summary(render.apply_markdown(result, title=workflow.summary_title()))
    views.apply_result(result, as_json=as_json,
                       spaced=bool(report.published or report.recorded or report.failed))
    if unlock_error is not None:
        if report.interrupted or not report.ok:
            views.err(errors.redact_urls(run_report.unlock_failure(
                location=location, lock_id=lock_id, error=unlock_error)))
        else:
            raise run_report.lock_left_behind(location=location, lock_id=lock_id,
                                              error=unlock_error)
    failure = run_report.outcome_error(report, state_location=location)
    if failure is not None:
        raise failure


def show(
    plan_file: Annotated[Path, typer.Argument(metavar="PLANFILE", help="A saved plan.")],
    output_format: Annotated[PlanFormat, typer.Option(
        "--format", help="Output format.")] = PlanFormat.text,
) -> None:
    """Render a plan saved by `plan --out`. Makes no AWS call.

    Example:

      reconcile show plan.json --format markdown
    """
    views.plan(planfile.from_document(savedplans.read(plan_file)), output_format)


def outputs(
    manifest: ManifestOption = Path("layers.yaml"),
    lockfile_path: LockfileOption = None,
    output_format: Annotated[OutputsFormat, typer.Option(
        "--format", help="Output format.")] = OutputsFormat.text,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    max_attempts: AttemptsOption = None,
    timeout: TimeoutOption = None,
    no_summary: NoSummaryOption = False,
) -> None:
    """Print each layer's latest published LayerVersionArn, from the recorded state (the
    lockfile, or the manifest's S3 state: the only case that calls AWS): the layers the
    manifest manages (all that the state records when there is no manifest).

    Examples:

      reconcile outputs

      reconcile outputs --format json > layer-arns.json
    """
    stores = compose.compose(compose.Options(
        manifest=manifest, lockfile=lockfile_path, profile=profile, endpoint_url=endpoint_url,
        max_attempts=max_attempts, timeout=timeout))
    space = stores.space
    parsed = workspace.load_manifest(space) if space.manifest_path.exists() else None
    backend = stores.state_backend(parsed)
    snapshot = backend.read()
    if snapshot.revision == ports.NO_REVISION:
        what = "no state yet" if backend.location.startswith("s3://") else "no such lockfile"
        raise errors.LockfileError(f"{backend.location}: {what}",
                                   hint="run `reconcile apply` first, or pass --lockfile")
    managed = None if parsed is None else {spec.key for spec in parsed.layers}
    rows = sorted((layer, region, entry.layer_version_arn)
                  for (layer, region), entry in snapshot.lock.entries.items()
                  if managed is None or layer in managed)
    if output_format is OutputsFormat.json:
        document: dict[str, dict[str, str]] = {}
        for layer, region, arn in rows:
            document.setdefault(layer, {})[region] = arn
        views.json_document(document)
        return
    for layer, region, arn in rows:
        views.line(f"{layer} {region} {arn}")
