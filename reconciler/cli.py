"""The `reconcile` command line: the composition root.

The only module that prints, reads the environment, talks to the terminal or chooses an exit
code. It turns every ReconcilerError into one message on stderr and exit code 1; usage
errors exit 1 too, so that exit code 2 only ever means "plan --detailed-exitcode: changes".
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
import types
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reconciler import (
    SANDBOX_INSTALL_HINT,
    __version__,
    archive,
    errors,
    model,
    planfile,
    ports,
    ratelimit,
    render,
    savedplan,
    statefile,
)
from reconciler import state as state_package
from reconciler.state import local as local_state


def _lazy_module(name: str) -> types.ModuleType:
    """The module `name`, loaded on its first attribute access (importlib's LazyLoader)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, module)  # as the import system does: `pkg.child` works
    return module


# aws (boto3), planning and applying (deepdiff), artifacts and workspace (jsonschema, yaml)
# cost ~0.7 s to
# import: `--help` and `--version` must not pay for them, and each command pays only for
# what it touches. Loading them lazily here, rather than importing inside each command, keeps
# every command body as it is (tests/test_cli_basics.py checks that --help and --version
# import neither boto3 nor jsonschema). Type checkers and the layering test see the plain
# imports.
if TYPE_CHECKING:
    from reconciler import applying, artifacts, aws, github, planning, sandbox, workspace
else:
    applying = _lazy_module("reconciler.applying")
    artifacts = _lazy_module("reconciler.artifacts")
    aws = _lazy_module("reconciler.aws")
    github = _lazy_module("reconciler.github")  # urllib.request: only Actions runs need it
    planning = _lazy_module("reconciler.planning")
    sandbox = _lazy_module("reconciler.sandbox")  # urllib.request: only its commands need it
    workspace = _lazy_module("reconciler.workspace")

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2
# Recent typer vendors its own click; its exception base is reached through a public class
# so that this works with either (and never depends on a private module path).
_ClickException: type[Exception] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"
)

app = typer.Typer(
    name="reconcile",
    help="Declarative reconciler for AWS Lambda layers: validate, plan and apply layers.yaml.",
    no_args_is_help=True,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class PlanFormat(str, Enum):
    """Output formats of `plan`."""

    text = "text"
    json = "json"
    markdown = "markdown"


class ApplyFormat(str, Enum):
    """Output formats of `apply`."""

    text = "text"
    json = "json"


class OutputsFormat(str, Enum):
    """Output formats of `outputs`."""

    text = "text"
    json = "json"


ManifestOption = Annotated[Path, typer.Option(
    "-f", "--manifest", metavar="MANIFEST", help="The manifest.", show_default=True)]
LockfileOption = Annotated[Path | None, typer.Option(
    "--lockfile", metavar="PATH",
    help="The lockfile [default: <manifest stem>.lock.json beside the manifest].")]
TargetOption = Annotated[list[str] | None, typer.Option(
    "--target", metavar="NAME", help="Only this layer (repeatable).")]
RegionOption = Annotated[list[str] | None, typer.Option(
    "--region", metavar="REGION", help="Only this region of the manifest (repeatable).")]
ProfileOption = Annotated[str | None, typer.Option(
    "--profile", metavar="NAME", help="AWS profile (default: boto3's chain, AWS_PROFILE).")]
EndpointOption = Annotated[str | None, typer.Option(
    "--endpoint-url", metavar="URL",
    help="AWS endpoint (default: AWS_ENDPOINT_URL), e.g. a moto server.")]
AttemptsOption = Annotated[int | None, typer.Option(
    "--max-attempts", metavar="N", min=1,
    help="Attempts of each read, the first included (default: boto3's, AWS_MAX_ATTEMPTS); "
         "a publish is sent once and never retried blindly.")]
TimeoutOption = Annotated[float | None, typer.Option(
    "--timeout", metavar="SECONDS", min=0.1,
    # aws.DEFAULT_TIMEOUT, written out: --help must not import botocore (a test compares).
    help="Connect to AWS, and wait for each reply, at most this long (default 10; a "
         "publish waits longer, by its size).")]
NoSummaryOption = Annotated[bool, typer.Option(
    "--no-summary", help="Do not append the plan to GITHUB_STEP_SUMMARY.")]


def _botocore_version() -> str:
    """From the installed distribution's metadata: importing botocore would cost ~0.3 s.
    (importlib.metadata is imported here: ~25 ms that only --version needs.)"""
    from importlib import metadata

    try:
        return metadata.version("botocore")
    except metadata.PackageNotFoundError:
        return "not installed"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"reconcile {__version__}\n"
                   f"packaging format {archive.FORMAT_VERSION}\n"
                   f"botocore {_botocore_version()} (its Lambda model gives the runtime list)")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the versions of the tool, its packaging format and botocore, and exit.")
    ] = False,
) -> None:
    """Declarative reconciler for AWS Lambda layers."""


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _progress(message: str) -> None:
    """Progress goes to the live display when one is running (a terminal, not CI); debug
    lines go to stderr when RECONCILE_DEBUG is set; anything else is dropped."""
    if message.startswith("debug: "):
        if os.environ.get("RECONCILE_DEBUG"):
            _err(message)
        return
    if _LIVE is not None:
        _LIVE.update(message)


class _LiveProgress:
    """One live display on stderr (rich) while a command works: a line per layer saying
    what it is doing (packaging, reading Lambda, publishing). Only on a terminal and outside
    CI; it disappears when the command is done, leaving the command's own result lines."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                  TimeElapsedColumn(), console=Console(stderr=True),
                                  transient=True)
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()

    def update(self, message: str) -> None:
        """Show `message` ("layer: what it does", or a region-wide line) on its row."""
        subject, _, what = message.partition(": ")
        if not what:
            subject, what = "", message
        with self._lock:
            task = self._tasks.get(subject)
            if task is None:
                self._tasks[subject] = self._progress.add_task(message)
            else:
                self._progress.update(task, description=message)

    def __enter__(self) -> _LiveProgress:
        self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.stop()


_LIVE: _LiveProgress | None = None


class _progress_display:
    """Run the live display for the duration of a command, when stderr is a terminal and
    `CI` is not set; otherwise nothing is shown."""

    def __enter__(self) -> None:
        global _LIVE
        if sys.stderr.isatty() and not os.environ.get("CI") and os.environ.get(
                "TERM") != "dumb":
            _LIVE = _LiveProgress().__enter__()

    def __exit__(self, *_: object) -> None:
        global _LIVE
        if _LIVE is not None:
            live, _LIVE = _LIVE, None
            live.__exit__()


def _use_color() -> bool:
    return (sys.stdout.isatty() and "NO_COLOR" not in os.environ
            and os.environ.get("TERM") != "dumb")


def _load(manifest_path: Path, lockfile_path: Path | None) -> tuple[
        workspace.Workspace, model.Manifest]:
    space = workspace.Workspace.for_manifest(manifest_path, lockfile_path)
    return space, workspace.load_manifest(space)


def _store(*, profile: str | None, endpoint_url: str | None,
           max_attempts: int | None, max_rps: float = ratelimit.DEFAULT_RPS,
           timeout: float | None = None) -> aws.Boto3LayerStore:
    # --max-rps 0 turns the client-side limit off (the store takes None for "no limit").
    return aws.Boto3LayerStore(profile=profile, endpoint_url=endpoint_url,
                               max_attempts=max_attempts, max_rps=max_rps or None,
                               timeout=timeout)


def _default_region(store: aws.Boto3LayerStore) -> str | None:
    """AWS_REGION wins over boto3's chain (which reads only AWS_DEFAULT_REGION and the
    profile), as in the AWS CLI and the SDKs that read it."""
    return os.environ.get("AWS_REGION") or store.default_region()


def _state_backend(space: workspace.Workspace, parsed: model.Manifest | None, *,
                   profile: str | None = None, endpoint_url: str | None = None,
                   max_attempts: int | None = None,
                   timeout: float | None = None) -> ports.StateBackend:
    """The manifest's `state: s3://...`, else the lockfile beside it (or --lockfile)."""
    if parsed is None or parsed.state is None:
        return local_state.LocalStateBackend(space.lockfile_path)
    from reconciler.state import s3 as s3_state  # only an S3 state needs it (and boto3)

    bucket, prefix = s3_state.parse_state_url(parsed.state)
    region = os.environ.get("AWS_REGION") or (parsed.regions[0] if parsed.regions else None)
    return s3_state.S3StateBackend(
        aws.Boto3ObjectStore(bucket=bucket, profile=profile, endpoint_url=endpoint_url,
                             region=region, max_attempts=max_attempts, timeout=timeout),
        prefix=prefix)


def _holder(operation: str, space: workspace.Workspace) -> errors.LockHolder:
    return state_package.new_holder(operation=operation, path=str(space.manifest_path))


@dataclass(frozen=True)
class _Session:
    """What plan and apply share: the workspace, manifest, state, stores and selection."""

    space: workspace.Workspace
    parsed: model.Manifest
    state: ports.StateBackend
    store: aws.Boto3LayerStore
    code: artifacts.LocalCode
    selection: planning.Selection


def _refuse_plan_file_in_a_layer(out: Path, *, session: _Session) -> None:
    """A plan file inside a folder layer's content would be packaged with it: `apply
    PLANFILE` would then find that layer's content changed (the plan file is new) and refuse
    the plan as stale. Refused before anything is done, unless the layer excludes it."""
    target = out.absolute().parent.resolve() / out.name
    for spec in session.selection.specs:
        if spec.content.kind is not model.SourceKind.PATH or spec.content.path is None:
            continue
        folder = (session.space.base_dir / spec.content.path).resolve()
        if not target.is_relative_to(folder):
            continue
        parts = target.relative_to(folder).parts
        rules = archive.ExcludeRules.compile(spec.content.exclude)
        if any(rules.excluded("/".join(parts[:depth]), is_dir=depth < len(parts))
               for depth in range(1, len(parts) + 1)):
            continue
        raise errors.UsageError(
            f"--out {out}: the plan file would be inside layers.{spec.key}'s content "
            f"({spec.content.path}) and packaged with it, so the plan could never be applied",
            hint="write the plan file outside the layer's folder (or exclude it in "
                 f"layers.{spec.key}.content.exclude)")


def _session(manifest: Path, lockfile_path: Path | None, *, targets: list[str] | None,
             regions: list[str] | None, profile: str | None, endpoint_url: str | None,
             max_attempts: int | None, max_rps: float = ratelimit.DEFAULT_RPS,
             timeout: float | None = None) -> _Session:
    """Validate, then (only then) reach for AWS."""
    space = workspace.Workspace.for_manifest(manifest, lockfile_path)
    # The layers' files are walked and hashed in a worker process while this one validates
    # the manifest against its schema, imports botocore and makes its clients
    # (artifacts.HeadStart, begun from the manifest's early build); with targets, only those
    # layers are identified, in this process.
    begun: list[artifacts.HeadStart] = []

    def head_start(early: model.Manifest) -> None:
        begun.append(artifacts.HeadStart.begin(space, list(early.layers)))

    try:
        parsed = workspace.load_manifest(space, head_start=None if targets else head_start)
    except BaseException:
        for started in begun:  # a manifest with problems: nothing more is read, nothing written
            started.cancel()
        raise
    code = artifacts.LocalCode(space=space, manifest=parsed,
                               head_start=begun[0] if begun else None)
    state = _state_backend(space, parsed, profile=profile, endpoint_url=endpoint_url,
                           max_attempts=max_attempts, timeout=timeout)
    store = _store(profile=profile, endpoint_url=endpoint_url, max_attempts=max_attempts,
                   max_rps=max_rps, timeout=timeout)
    selection = planning.select(parsed, default_region=_default_region(store),
                                targets=targets or (), regions=regions or ())
    # Every client up front, in this thread: the workers then only use them (see aws).
    store.prepare(sorted({region for listed in selection.regions.values() for region in listed}))
    code.use_objects(store)
    return _Session(space=space, parsed=parsed, state=state, store=store, code=code,
                    selection=selection)


def _make_plan(session: _Session, snapshot: ports.Snapshot, *,
               parallelism: int = 4, download: bool = True,
               lock_id: str | None = None) -> model.Plan:
    """`lock_id`: this run holds the state lock (an apply); else the plan reads who does
    before it plans deleting stray fillers."""
    return planning.make_plan(
        parsed=session.parsed, selection=session.selection, snapshot=snapshot,
        state_location=_state_name(session), manifest_digest=session.parsed.sha256,
        store=session.store, code=session.code, parallelism=parallelism, progress=_progress,
        download=download, state=session.state, lock_id=lock_id,
        manifest_path=_manifest_in_repository(session.space.manifest_path))


def _repository_anchor() -> Path:
    """Where a saved plan's manifest path starts: the repository holding the working
    directory (the nearest folder with `.git` at or above it), else the working directory."""
    from reconciler.content import common  # the rule content paths are checked by

    return common.repository_root(Path.cwd().resolve())


def _manifest_in_repository(manifest: Path) -> str:
    """The manifest's path below the repository anchor, as a saved plan names it ("" when
    it lies outside: `apply PLANFILE` then needs -f)."""
    try:
        return manifest.resolve().relative_to(_repository_anchor()).as_posix()
    except ValueError:
        return ""


def _saved_manifest(saved: model.PlanBasis, plan_file: Path) -> Path:
    """The manifest a saved plan names, found below this checkout's repository anchor; never
    a path outside it (the plan file is not trusted)."""
    from pathlib import PurePosixPath

    named = PurePosixPath(saved.manifest)
    if not saved.manifest or named.is_absolute() or ".." in named.parts or "\\" in saved.manifest:
        raise errors.UsageError(
            f"{plan_file}: the plan does not name a manifest inside the repository "
            f"({saved.manifest or 'none'})",
            hint="pass -f MANIFEST: the manifest the plan was made for")
    return _repository_anchor() / Path(*named.parts)


def _saved_selection(saved: model.Plan, *, plan_file: Path, manifest: Path | None,
                     targets: list[str] | None, regions: list[str] | None,
                     no_download: bool) -> tuple[Path, list[str], list[str], bool]:
    """The manifest, targets, regions and download choice a saved plan was made with; flags
    given again must agree with them (UsageError naming each difference)."""
    basis = saved.basis
    if basis is None:
        raise errors.StalePlan(["the plan has no basis (it was not saved by "
                                "`reconcile plan --out`)"],
                               hint="make a new plan with `reconcile plan --out`")
    given = _manifest_in_repository(manifest) if manifest is not None else None
    if manifest is not None and given == "":
        given = str(manifest)
    differences = savedplan.selection_differences(basis, manifest=given,
                                                  targets=targets or [], regions=regions or [])
    if no_download and basis.download:
        differences.append("the plan was made allowing downloads; this apply passes "
                           "--no-download")
    if differences:
        raise errors.UsageError(
            f"{plan_file}: the options disagree with the plan's own selection:\n"
            + "\n".join(f"  - {line}" for line in differences),
            hint="`reconcile apply PLANFILE` needs no -f, --target or --region: the plan "
                 "carries its selection")
    chosen = manifest if manifest is not None else _saved_manifest(basis, plan_file)
    return chosen, list(basis.targets), list(basis.regions), basis.download


def _state_name(session: _Session) -> str:
    """How a plan's basis names the state: stable across checkouts (relative to the manifest
    folder when it lies inside it)."""
    location = session.state.location
    if location.startswith("s3://"):
        return location
    try:
        return "lockfile:" + Path(location).resolve().relative_to(
            session.space.base_dir).as_posix()
    except ValueError:
        return "lockfile:" + Path(location).resolve().as_posix()


@dataclass
class _Run:
    """What GitHub Actions is told about a plan or apply, whatever its outcome: the step
    summary (once per run) and the step outputs, written by main() on the way out."""

    command: str
    manifest: str
    summary: bool
    summarised: bool = False
    changes: bool = False
    plan_file: str | None = None


_RUN: _Run | None = None


def _begin(command: str, manifest: Path, *, no_summary: bool) -> None:
    global _RUN
    _RUN = _Run(command=command, manifest=_manifest_in_repository(manifest) or str(manifest),
                summary=not no_summary)


def _summary_title() -> str:
    return (github.heading(_RUN.command, _RUN.manifest) if _RUN is not None
            else "reconcile")


def _step_summary(markdown: str) -> None:
    """Append to GitHub Actions' job summary when running there (and not --no-summary)."""
    run = _RUN
    actions = github.Actions.from_environment(os.environ)
    if run is None or not run.summary or actions.step_summary is None:
        return
    run.summarised = True
    try:
        github.append_step_summary(actions.step_summary, markdown, run_url=actions.run_url)
    except errors.ReconcilerError as error:
        _err(f"warning: {error.message}")


def _finish_github(code: int, failure: errors.ReconcilerError | None) -> None:
    """On every outcome of plan or apply: a summary for a run that wrote none (an invalid
    manifest, a refusal, an error), and the step outputs."""
    run = _RUN
    if run is None:
        return
    if failure is not None and not run.summarised:
        lines = [f"### {_summary_title()}", "", f":x: **{run.command} failed**: "
                 f"{_markdown_text(failure.message)}"]
        if isinstance(failure, errors.ManifestError):
            lines += [f"- `{_markdown_text(str(problem))}`" for problem in failure.problems]
        if failure.hint:
            lines += ["", f"Hint: {_markdown_text(failure.hint)}"]
        _step_summary(errors.redact_urls("\n".join(lines) + "\n"))
    actions = github.Actions.from_environment(os.environ)
    if actions.output is None:
        return
    values = {"exitcode": str(code), "changes": "true" if run.changes else "false"}
    if run.plan_file is not None:
        values["plan-file"] = run.plan_file
    try:
        github.write_outputs(actions.output, values)
    except errors.ReconcilerError as error:
        _err(f"warning: {error.message}")


def _markdown_text(text: str) -> str:
    return text.replace("\n", " ").replace("|", "\\|")


def _plan_json(plan: model.Plan) -> str:
    return json.dumps(planfile.to_document(plan), indent=2, sort_keys=True)


def _echo_plan(plan: model.Plan, output_format: PlanFormat) -> None:
    """Print the plan on stdout in the chosen format (JSON: the plan document alone)."""
    if output_format is PlanFormat.json:
        typer.echo(_plan_json(plan))
    elif output_format is PlanFormat.markdown:
        typer.echo(render.markdown(plan), nl=False)
    else:
        typer.echo(render.text(plan, color=_use_color()), nl=False)


def _write_plan_file(path: Path, document: dict[str, Any]) -> None:
    """Write a plan file atomically (a temp file beside it, then a rename)."""
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                                 dir=path.parent)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise errors.UsageError(f"cannot write the plan file {path}: {exc.strerror or exc}"
                                ) from exc


def _read_plan_file(path: Path) -> dict[str, Any]:
    """A saved plan's document, within limits and checked against the plan schema."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise errors.UsageError(f"{path}: no such plan file",
                                hint="make one with `reconcile plan --out FILE`") from None
    except OSError as exc:
        raise errors.UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return savedplan.read_document(data, file=str(path))


@app.command()
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
    space, parsed = _load(manifest, None)
    walked = workspace.walk_problems(space, parsed)  # what plan's walk would refuse
    if walked:
        raise errors.ManifestError(walked)
    kinds: dict[str, int] = {}
    for spec in parsed.layers:
        kinds[spec.content.kind.value] = kinds.get(spec.content.kind.value, 0) + 1
    sources = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
    regions = ", ".join(parsed.regions) or "the AWS default region"
    count = len(parsed.layers)
    typer.echo(f"{manifest}: valid: {count} layer{'s' if count != 1 else ''} "
               f"({sources}), region {regions}.")


LockTimeoutOption = Annotated[float, typer.Option(
    "--lock-timeout", metavar="SECONDS", min=0,
    help="Wait this long for a state lock held by another run.")]
ParallelismOption = Annotated[int, typer.Option(
    "--parallelism", metavar="N", min=1, help="Layers and regions worked on at once.")]
NoDownloadOption = Annotated[bool, typer.Option(
    "--no-download", help="Never download a published zip to compare its files (no "
                          "adoption by content).")]
MaxRpsOption = Annotated[float, typer.Option(
    "--max-rps", metavar="N", min=0,
    help=f"Lambda calls per second per region, at most (default {ratelimit.DEFAULT_RPS:g}, "
         "under Lambda's ~15/s quota; 0: no limit).")]


@app.command()
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
    _begin("plan", manifest, no_summary=no_summary)
    session = _session(manifest, lockfile_path, targets=target, regions=region,
                       profile=profile, endpoint_url=endpoint_url, max_attempts=max_attempts,
                       max_rps=max_rps, timeout=timeout)
    if out is not None:
        _refuse_plan_file_in_a_layer(out, session=session)
    with _progress_display():
        the_plan = _make_plan(session, session.state.read(), parallelism=parallelism,
                              download=not no_download)
    _echo_plan(the_plan, output_format)
    if _RUN is not None:
        _RUN.changes = the_plan.has_changes
    if out is not None:
        _write_plan_file(out, planfile.to_document(the_plan))
        if _RUN is not None:
            _RUN.plan_file = str(out)
        if output_format is PlanFormat.text:
            manifest_flag = ("" if the_plan.basis is None or the_plan.basis.manifest
                             else f" -f {shlex.quote(str(manifest))}")
            typer.echo(f"\nSaved the plan to {out}. Apply exactly this plan with:\n"
                       f"  reconcile apply {shlex.quote(str(out))}{manifest_flag}")
    _step_summary(render.markdown(the_plan, title=_summary_title()))
    if the_plan.errors:
        raise errors.ReconcilerError(
            f"{len(the_plan.errors)} layer(s) could not be planned: "
            + ", ".join(error.layer for error in the_plan.errors),
            hint="the plan above shows each error; the other layers were planned")
    if detailed_exitcode and the_plan.has_changes:
        raise typer.Exit(EXIT_CHANGES)


def _confirm(plan: model.Plan, *, yes: bool, as_json: bool) -> None:
    """Ask before any change, a lockfile record included; a plan with none needs no answer."""
    if yes or not plan.has_changes:
        return
    if as_json:
        raise errors.ApplyRefused(
            "apply --format json does not show the plan, so it cannot ask for confirmation",
            hint="review `reconcile plan`, then run apply --format json --yes")
    if not sys.stdin.isatty():
        raise errors.ApplyRefused(
            "refusing to apply without confirmation: stdin is not a terminal",
            hint="review the plan, then pass --yes (as CI pipelines do)")
    typer.echo("\nDo you want to perform these actions? Only 'yes' will be accepted.")
    answer = input("  Enter a value: ").strip()
    if answer != "yes":
        raise errors.ApplyRefused("apply cancelled: nothing was published")


def _report_document(report: applying.ApplyReport, *, session: _Session,
                     plan: model.Plan) -> dict[str, Any]:
    """The apply report, as `apply --format json` prints it."""
    return {
        "ok": report.ok,
        "interrupted": report.interrupted,
        "state": session.state.location,
        "published": [
            {"layer": item.change.layer, "region": item.change.region,
             "version": item.version.version,
             "layer_version_arn": item.version.layer_version_arn,
             "code_sha256": item.version.code_sha256, "adopted": item.adopted}
            for item in report.published],
        "recorded": [
            {"layer": change.layer, "region": change.region,
             "version": change.record.version if change.record else None,
             "layer_version_arn": change.record.layer_version_arn if change.record else None}
            for change in report.recorded],
        "failed": [
            {"layer": item.change.layer, "region": item.change.region,
             "action": item.change.action.value,
             "error": errors.redact_urls(item.error.message), "code": item.error.code,
             "hint": errors.redact_urls(item.error.hint) if item.error.hint else None}
            for item in report.failed],
        "not_attempted": [
            {"layer": item.change.layer, "region": item.change.region,
             "action": item.change.action.value, "why": item.why}
            for item in report.not_attempted],
        "granted": [
            {"layer": change.layer, "region": change.region,
             "version": change.current.version if change.current else None,
             "layer_version_arn": change.current.layer_version_arn if change.current else None}
            for change in report.granted],
        "forgotten": [{"layer": change.layer, "region": change.region}
                      for change in report.forgotten],
        "deleted": [
            {"layer": item.change.layer, "region": item.change.region,
             "versions": list(item.versions),
             "filler": item.change.action is not model.Action.DELETE}
            for item in report.deleted],
        "warnings": list(report.warnings),
        "unchanged": report.unchanged,
        "plan": planfile.to_document(plan),
    }


class _SignalStop(BaseException):
    """Raised by the signal handler where the main thread is, to stop at once. A
    BaseException, so that no `except ReconcilerError` on the way (a planning step that
    turns errors into layer errors, apply's loop) takes it for a failure and goes on;
    `_StopOnSignal.__exit__` turns it into Interrupted once the lock is released."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _StopOnSignal:
    """SIGTERM and Ctrl-C, from the moment a run starts taking the state lock until it has
    released it: the lock is always released (a SIGTERM's default action would end the
    process at once, leaving an S3 lock object behind for a force-unlock).

    - While the lock is being taken, or while apply publishes, a signal only asks to stop
      (`event`): a wait for the lock ends (_take_lock), a lock taken meanwhile is released
      at once (`raise_if_stopped`), apply starts no new publish and awaits and records those
      in flight.
    - While planning and asking (`interrupt_now(True)`), nothing has changed yet: a signal
      stops the run where it is (_SignalStop), and the lock is released on the way out.
    A second Ctrl-C stops at once (_SignalStop), the lock still released on the way."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, Any] = {}
        self._interrupt_now = False

    def _handle(self, signum: int, _frame: object) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            # Not KeyboardInterrupt: typer would turn it into a silent exit 130.
            self._interrupt_now = False
            _err("stopping at once: a publish in flight is not recorded (the next apply "
                 "adopts it)")
            raise _SignalStop(
                "interrupted at once: a publish that was in flight may have made a version "
                "that is not recorded; the next apply adopts it instead of publishing it again")
        self.event.set()
        if self._interrupt_now:
            self._interrupt_now = False
            _err("stopping: nothing was changed; releasing the state lock")
            raise _SignalStop(self._interrupted().message)
        _err("stopping at the next safe point: no new publish starts; those in flight are "
             "awaited and recorded (Ctrl-C again to stop at once)")

    @staticmethod
    def _interrupted() -> errors.Interrupted:
        return errors.Interrupted("apply was interrupted before any change: nothing was "
                                  "published or recorded",
                                  hint="run apply again")

    def raise_if_stopped(self) -> None:
        """Interrupted if a signal came while the lock was being taken."""
        if self.event.is_set():
            raise self._interrupted()

    def interrupt_now(self, enabled: bool) -> None:
        """From now on a signal raises Interrupted at once (True), or only asks to stop."""
        self._interrupt_now = enabled
        if enabled:
            self.raise_if_stopped()

    def __enter__(self) -> _StopOnSignal:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, kind: object, error: BaseException | None, _: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        if isinstance(error, _SignalStop):
            raise errors.Interrupted(error.message, hint="run apply again") from None


@app.command()
def apply(
    plan_file: Annotated[Path | None, typer.Argument(
        metavar="[PLANFILE]", help="A plan saved by `plan --out`: apply exactly it.")] = None,
    manifest: Annotated[Path | None, typer.Option(
        "-f", "--manifest", metavar="MANIFEST",
        help="The manifest [default: layers.yaml; with PLANFILE, the plan's own].")] = None,
    lockfile_path: LockfileOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")
                   ] = False,
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
    _begin("apply", manifest or Path("layers.yaml"), no_summary=no_summary)
    as_json = output_format is ApplyFormat.json
    saved: model.Plan | None = None
    document: dict[str, Any] = {}
    download = not no_download
    if plan_file is not None:
        # Checked before anything else: the file is an artifact a pull request produced.
        document = _read_plan_file(plan_file)
        saved = planfile.from_document(document)
        applied = document.get("applied")
        if applied:
            at = applied.get("at", "earlier") if isinstance(applied, dict) else "earlier"
            raise errors.StalePlan(
                [f"this plan file was applied already ({at}); a plan is applied once"],
                hint="make a new plan with `reconcile plan --out`")
        manifest, target, region, download = _saved_selection(
            saved, plan_file=plan_file, manifest=manifest, targets=target, regions=region,
            no_download=no_download)
        _begin("apply", manifest, no_summary=no_summary)
    session = _session(manifest or Path("layers.yaml"), lockfile_path, targets=target,
                       regions=region, profile=profile, endpoint_url=endpoint_url,
                       max_attempts=max_attempts, max_rps=max_rps, timeout=timeout)
    with _StopOnSignal() as stopping:
        lock_id = _take_lock(session.state, _holder("apply", session.space),
                             timeout=lock_timeout, stopping=stopping)
        outcome: tuple[applying.ApplyReport, model.Plan] | None = None
        try:
            stopping.interrupt_now(True)
            outcome = _apply_locked(
                session, saved=saved, plan_file=plan_file, document=document, yes=yes,
                as_json=as_json, parallelism=parallelism, stopping=stopping,
                download=download, lock_id=lock_id)
        finally:
            stopping.interrupt_now(False)
            unlock_error = _unlock(session.state, lock_id)
            if unlock_error is not None and outcome is None:
                # The error on its way out says what happened; this says what is left.
                _err(errors.redact_urls(_unlock_failure(session, lock_id, unlock_error)))
    report, the_plan = outcome
    _finish_apply(report, session=session, the_plan=the_plan, as_json=as_json,
                  no_summary=no_summary, lock_id=lock_id, unlock_error=unlock_error)


def _unlock(backend: ports.StateBackend, lock_id: str) -> errors.ReconcilerError | None:
    """Release the state lock; its failure is returned, so that it never hides what the
    apply did (the report is still printed and written)."""
    try:
        backend.unlock(lock_id)
    except errors.ReconcilerError as error:
        return error
    return None


def _unlock_failure(session: _Session, lock_id: str, error: errors.ReconcilerError) -> str:
    return (f"error: could not release the state lock {lock_id} on {session.state.location}: "
            f"{error.message}\nhint: once no apply runs, release it with "
            f"`reconcile force-unlock {lock_id}`")


def _take_lock(backend: ports.StateBackend, holder: errors.LockHolder, *,
               timeout: float, stopping: _StopOnSignal) -> str:
    """The state lock; while another run holds it and `timeout` allows, say so and wait.

    The waiting is done here, one attempt (`timeout=0`) at a time, so that a signal ends the
    wait at once: between two attempts this run holds nothing, while an attempt cut off by
    an exception could leave an S3 lock object that nobody would release."""
    deadline = time.monotonic() + timeout
    delay = state_package.FIRST_RETRY_DELAY
    announced = False
    while True:
        try:
            return backend.lock(holder, timeout=0.0)
        except errors.StateLocked as locked:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
            if not announced:
                _err(f"waiting up to {timeout:g} s for the state lock: {locked.message}")
                announced = True
        if stopping.event.wait(min(delay, remaining)):
            raise errors.Interrupted(
                "interrupted while waiting for the state lock: nothing was changed")
        delay = min(delay * 2, state_package.MAX_RETRY_DELAY)


def _apply_locked(session: _Session, *, saved: model.Plan | None, plan_file: Path | None,
                  document: dict[str, Any], yes: bool, as_json: bool, parallelism: int,
                  stopping: _StopOnSignal, download: bool,
                  lock_id: str) -> tuple[applying.ApplyReport, model.Plan]:
    """Apply's work under the lock: plan (or check the saved plan), confirm, apply. A signal
    raises Interrupted until the first change, then only asks apply to stop."""
    snapshot = session.state.read()
    if saved is None:
        with _progress_display():
            the_plan = _make_plan(session, snapshot, parallelism=parallelism,
                                  download=download, lock_id=lock_id)
        if not as_json:
            typer.echo(render.text(the_plan, color=_use_color()), nl=False)
        _confirm(the_plan, yes=yes, as_json=as_json)
    else:
        # Decided again: what runs is this fresh plan, and only if it is the saved one.
        with _progress_display():
            the_plan = _make_plan(session, snapshot, parallelism=parallelism,
                                  download=download)
        assert the_plan.basis is not None  # make_plan always gives one
        stale = [*savedplan.basis_differences(saved.basis, now=the_plan.basis),
                 *savedplan.differences(saved, the_plan)]
        if stale:
            raise errors.StalePlan(stale, hint="make a new plan with `reconcile plan "
                                               "--out` and review it again")
        if not as_json:
            typer.echo(render.text(the_plan, color=_use_color()), nl=False)
        # Marked before the first change: a plan file is applied once, even when the
        # apply stops half way (its state moved: it is stale from then on anyway).
        stopping.interrupt_now(False)
        _write_plan_file(plan_file or Path(), {**document, "applied": {
            "at": datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ"), "state_revision": snapshot.revision}})
    stopping.interrupt_now(False)
    with _progress_display():
        try:
            report = applying.apply(the_plan, store=session.store, state=session.state,
                                    code=session.code, snapshot=snapshot,
                                    objects=session.store,
                                    parallelism=parallelism, stop=stopping.event,
                                    progress=_progress,
                                    owner=_manifest_in_repository(session.space.manifest_path))
        except errors.ReconcilerError as error:
            if as_json:
                typer.echo(json.dumps({"ok": False,
                                       "error": errors.redact_urls(error.message),
                                       "code": error.code, "published": [],
                                       "recorded": [], "failed": [], "not_attempted": []},
                                      indent=2, sort_keys=True))
            raise
    return report, the_plan


def _finish_apply(report: applying.ApplyReport, *, session: _Session, the_plan: model.Plan,
                  as_json: bool, no_summary: bool, lock_id: str,
                  unlock_error: errors.ReconcilerError | None) -> None:
    """Report what apply did (a lock that could not be released included), and raise for
    an interrupted or incomplete apply, or a lock left behind."""
    result = _report_document(report, session=session, plan=the_plan)
    result["lock"] = {"id": lock_id, "released": unlock_error is None,
                      "error": (errors.redact_urls(unlock_error.message)
                                if unlock_error is not None else None)}
    if _RUN is not None:
        _RUN.changes = bool(report.published or report.recorded or report.granted
                            or report.deleted or report.forgotten)
    _step_summary(render.apply_markdown(result, title=_summary_title()))
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        typer.echo(("\n" if report.published or report.recorded or report.failed else "")
                   + render.apply_text(result), nl=False)
    if unlock_error is not None:
        if report.interrupted or not report.ok:
            _err(errors.redact_urls(_unlock_failure(session, lock_id, unlock_error)))
        else:
            raise errors.StateError(
                f"every change above was made and recorded, but the state lock {lock_id} on "
                f"{session.state.location} could not be released: {unlock_error.message}",
                hint=f"once no apply runs, release it with `reconcile force-unlock {lock_id}`")
    if report.interrupted:
        raise errors.Interrupted(
            "apply was interrupted: every publish that finished is recorded; "
            f"{len(report.not_attempted)} change(s) were not started",
            hint="run apply again to do what is missing")
    if not report.ok:
        unknown = any(isinstance(item.error, errors.PublishOutcomeUnknown)
                      for item in report.failed)
        raise errors.ApplyFailed(
            report.failure_summary(state_location=session.state.location),
            hint=("run apply again: the next plan adopts a version a lost publish made, "
                  "instead of publishing it again, and does only what is missing") if unknown
            else "see each failure above; run apply again to do only what is missing")


@app.command()
def show(
    plan_file: Annotated[Path, typer.Argument(metavar="PLANFILE", help="A saved plan.")],
    output_format: Annotated[PlanFormat, typer.Option(
        "--format", help="Output format.")] = PlanFormat.text,
) -> None:
    """Render a plan saved by `plan --out`. Makes no AWS call.

    Example:

      reconcile show plan.json --format markdown
    """
    _echo_plan(planfile.from_document(_read_plan_file(plan_file)), output_format)


@app.command()
def comment(
    plan_file: Annotated[Path, typer.Argument(metavar="PLANFILE", help="A saved plan.")],
) -> None:
    """Post the saved plan's Markdown on the pull request, as one comment per manifest that
    every later run updates. Reads GITHUB_API_URL, GITHUB_TOKEN, GITHUB_REPOSITORY and the
    event at GITHUB_EVENT_PATH, as GitHub Actions sets them; outside a pull request it posts
    nothing. Makes no AWS call.

    Example:

      reconcile comment plan.json
    """
    saved = planfile.from_document(_read_plan_file(plan_file))
    environment = os.environ
    number = github.pull_request_number(environment.get("GITHUB_EVENT_PATH"))
    if number is None:
        event = environment.get("GITHUB_EVENT_NAME") or "no GitHub event"
        typer.echo(f"not a pull request ({event}): no comment posted.")
        return
    token = environment.get("GITHUB_TOKEN")
    repository = environment.get("GITHUB_REPOSITORY")
    if not token or not repository:
        missing = [name for name, value in (("GITHUB_TOKEN", token),
                                            ("GITHUB_REPOSITORY", repository)) if not value]
        raise errors.UsageError(f"{' and '.join(missing)} not set: cannot post the comment",
                                hint="in a workflow, pass `GITHUB_TOKEN: ${{ github.token }}` "
                                     "in the step's env")
    manifest = (saved.basis.manifest if saved.basis is not None and saved.basis.manifest
                else "layers.yaml")
    actions = github.Actions.from_environment(environment)
    body = github.comment_body(render.markdown(saved, title=github.heading("plan", manifest)),
                               manifest=manifest, run_url=actions.run_url)
    client = github.CommentClient(
        api_url=environment.get("GITHUB_API_URL") or "https://api.github.com", token=token,
        repository=repository)
    posted = github.post_comment(client, number=number, body=body, manifest=manifest)
    typer.echo(f"{'posted' if posted.created else 'updated'} the plan comment on pull request "
               f"#{number}: {posted.url}")


@app.command()
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
    space = workspace.Workspace.for_manifest(manifest, lockfile_path)
    parsed = workspace.load_manifest(space) if space.manifest_path.exists() else None
    backend = _state_backend(space, parsed, profile=profile, endpoint_url=endpoint_url,
                             max_attempts=max_attempts, timeout=timeout)
    snapshot = backend.read()
    if snapshot.revision == ports.NO_REVISION:
        what = "no state yet" if backend.location.startswith("s3://") else "no such lockfile"
        raise errors.LockfileError(f"{backend.location}: {what}",
                                   hint="run `reconcile apply` first, or pass --lockfile")
    lock = snapshot.lock
    managed = None if parsed is None else {spec.key for spec in parsed.layers}
    rows = sorted((layer, region, entry.layer_version_arn)
                  for (layer, region), entry in lock.entries.items()
                  if managed is None or layer in managed)
    if output_format is OutputsFormat.json:
        document: dict[str, dict[str, str]] = {}
        for layer, region, arn in rows:
            document.setdefault(layer, {})[region] = arn
        typer.echo(json.dumps(document, indent=2, sort_keys=True))
        return
    for layer, region, arn in rows:
        typer.echo(f"{layer} {region} {arn}")


def _ask(question: str, *, yes: bool, refusal: str) -> None:
    """Ask for 'yes' on a terminal; --yes answers it; without a terminal, refuse."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise errors.ApplyRefused(f"{refusal}: stdin is not a terminal",
                                  hint="pass --yes to confirm")
    typer.echo(f"{question} Only 'yes' will be accepted.")
    if input("  Enter a value: ").strip() != "yes":
        raise errors.ApplyRefused(f"{refusal}: not confirmed")


@app.command("force-unlock")
def force_unlock(
    lock_id: Annotated[str, typer.Argument(metavar="LOCK_ID",
                                           help="The lock id a refusal printed.")],
    manifest: ManifestOption = Path("layers.yaml"),
    lockfile_path: LockfileOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")
                   ] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Release it even when its holder is alive on this host.")] = False,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    max_attempts: AttemptsOption = None,
    timeout: TimeoutOption = None,
) -> None:
    """Release a state lock left by a run that is gone (killed, crashed runner). Only the
    lock with that id is released; make sure its run is really gone. A lock whose holder is
    alive on this host is refused unless --force; one held from another host is shown with
    its age before the question.

    Example:

      reconcile force-unlock 6f1c2d3e-...
    """
    space, parsed = _load(manifest, lockfile_path)
    backend = _state_backend(space, parsed, profile=profile, endpoint_url=endpoint_url,
                             max_attempts=max_attempts, timeout=timeout)
    question = state_package.force_unlock_question(
        backend.current_lock(), lock_id=lock_id, location=backend.location, force=force)
    _ask(question, yes=yes, refusal="not releasing the lock")
    holder = backend.force_unlock(lock_id)
    typer.echo(f"Released the lock {lock_id} on {backend.location} (held by "
               f"{state_package.describe_holder(holder)}).")


state_app = typer.Typer(help="Copy the shared S3 state to or from a local lockfile, or "
                             "remove layers from the state.",
                        no_args_is_help=True)
app.add_typer(state_app, name="state")


def _s3_backend(manifest: Path, *, profile: str | None, endpoint_url: str | None,
                max_attempts: int | None, timeout: float | None = None
                ) -> tuple[workspace.Workspace, ports.StateBackend]:
    space, parsed = _load(manifest, None)
    if parsed.state is None:
        raise errors.UsageError(
            f"{manifest} keeps its state in the lockfile {space.lockfile_path}, not in S3",
            hint="state pull/push copy the state a manifest's `state: s3://...` names")
    return space, _state_backend(space, parsed, profile=profile, endpoint_url=endpoint_url,
                                 max_attempts=max_attempts, timeout=timeout)


@state_app.command("pull")
def state_pull(
    file: Annotated[Path | None, typer.Argument(
        metavar="[FILE]", help="Where to write it [default: the lockfile beside the manifest]")
    ] = None,
    manifest: ManifestOption = Path("layers.yaml"),
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    max_attempts: AttemptsOption = None,
    timeout: TimeoutOption = None,
) -> None:
    """Copy the S3 state into a local lockfile (canonical bytes), to read or edit it.

    Example:

      reconcile state pull backup.lock.json
    """
    space, backend = _s3_backend(manifest, profile=profile, endpoint_url=endpoint_url,
                                 max_attempts=max_attempts, timeout=timeout)
    snapshot = backend.read()
    target = file or space.lockfile_path
    if snapshot.revision == ports.NO_REVISION:
        raise errors.LockfileError(f"{backend.location}: no state yet",
                                   hint="run `reconcile apply` first")
    try:
        target.write_text(statefile.encode(snapshot.lock), encoding="utf-8")
    except OSError as exc:
        raise errors.UsageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    typer.echo(f"Wrote {backend.location} to {target}.")


@state_app.command("push")
def state_push(
    file: Annotated[Path | None, typer.Argument(
        metavar="[FILE]", help="The lockfile to push [default: the lockfile beside the "
                               "manifest]")] = None,
    manifest: ManifestOption = Path("layers.yaml"),
    lock_timeout: LockTimeoutOption = 0.0,
    force: Annotated[bool, typer.Option(
        "--force", help="Push even a file of another lineage or an older serial.")] = False,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    max_attempts: AttemptsOption = None,
    timeout: TimeoutOption = None,
) -> None:
    """Replace the S3 state with a local lockfile, under the state lock and checked against
    the revision read under it (a concurrent apply can never be overwritten half way). A
    file of another lineage, or older (a lower serial) than the state, is refused unless
    --force.

    Example:

      reconcile state push layers.lock.json
    """
    space, backend = _s3_backend(manifest, profile=profile, endpoint_url=endpoint_url,
                                 max_attempts=max_attempts, timeout=timeout)
    source = file or space.lockfile_path
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.UsageError(f"cannot read {source}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise errors.LockfileError(f"{source}: not a lockfile (not UTF-8: {exc.reason} at "
                                   f"byte {exc.start})") from None
    lock = statefile.decode(text, file=str(source))
    # A signal only asks to stop: the push is one write, and the lock is released after it.
    with _StopOnSignal() as stopping:
        lock_id = _take_lock(backend, _holder("state push", space), timeout=lock_timeout,
                             stopping=stopping)
        try:
            current = backend.read()
            refusal = statefile.push_refusal(lock, current=current.lock, file=str(source),
                                             location=backend.location)
            if refusal is not None and not force:
                raise errors.StateError(f"not pushing: {refusal}",
                                        hint="`reconcile state pull` the state and edit that "
                                             "copy, or pass --force to replace it anyway")
            written = statefile.next_write(model.Lock(
                entries=lock.entries, lineage=lock.lineage or current.lock.lineage,
                serial=max(lock.serial, current.lock.serial)))
            backend.write(written, expected_revision=current.revision)
        finally:
            backend.unlock(lock_id)
    typer.echo(f"Pushed {source} to {backend.location} (serial {written.serial}).")


@state_app.command("rm")
def state_rm(
    names: Annotated[list[str], typer.Argument(
        metavar="NAME...", help="Layer keys to remove from the state.")],
    region: Annotated[list[str] | None, typer.Option(
        "--region", metavar="REGION",
        help="Only in this region (repeatable) [default: every region].")] = None,
    manifest: ManifestOption = Path("layers.yaml"),
    lockfile_path: LockfileOption = None,
    lock_timeout: LockTimeoutOption = 0.0,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    max_attempts: AttemptsOption = None,
    timeout: TimeoutOption = None,
) -> None:
    """Remove layers from the recorded state (the lockfile or the S3 state) without a plan,
    under the state lock: `outputs` stops listing them, and their versions stay in Lambda.

    Example:

      reconcile state rm old-utils --region eu-west-1
    """
    space, parsed = _load(manifest, lockfile_path)
    backend = _state_backend(space, parsed, profile=profile, endpoint_url=endpoint_url,
                             max_attempts=max_attempts, timeout=timeout)
    only = set(region or ())
    with _StopOnSignal() as stopping:
        lock_id = _take_lock(backend, _holder("state rm", space), timeout=lock_timeout,
                             stopping=stopping)
        try:
            current = backend.read()
            recorded = current.lock.entries
            chosen = sorted(key for key in recorded
                            if key[0] in names and (not only or key[1] in only))
            missing = [name for name in dict.fromkeys(names)
                       if not any(layer == name for layer, _ in chosen)]
            if missing:
                where = f" in {', '.join(sorted(only))}" if only else ""
                known = sorted({layer for layer, entry_region in recorded
                                if not only or entry_region in only})
                raise errors.UsageError(
                    f"{backend.location} records no {', '.join(missing)}{where}",
                    hint=f"it records: {', '.join(known) or 'nothing'}")
            updated = current.lock
            for layer, entry_region in chosen:
                updated = updated.without(layer, entry_region)
            backend.write(statefile.next_write(updated), expected_revision=current.revision)
        finally:
            backend.unlock(lock_id)
    for layer, entry_region in chosen:
        typer.echo(f"Removed {layer} ({entry_region}) from {backend.location}; its versions "
                   "stay in Lambda.")
@app.command()
def schema(
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="FILE", help="Write the schema to FILE instead of stdout.")] = None,
) -> None:
    """Print the manifest's JSON Schema (the one shipped in this package), for editors: point
    `# yaml-language-server: $schema=FILE` in layers.yaml at a copy written with --out."""
    # The shipped file's own layout (tools/gen_schema.py), so that a copy diffs cleanly.
    text = json.dumps(workspace.load_schema(), indent=2, sort_keys=True) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        # `--out schemas/layers.schema.json` in a repository that has no schemas/ yet.
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise errors.UsageError(f"{out}: cannot write: {exc.strerror}") from None
    typer.echo(f"wrote {out}; in layers.yaml: # yaml-language-server: $schema={out}")


sandbox_app = typer.Typer(
    name="sandbox",
    help="A local moto server (the embedded AWS) for trying reconcile: no account, no network. "
         f"Needs the optional extra: {SANDBOX_INSTALL_HINT}",
    no_args_is_help=True,
)
app.add_typer(sandbox_app)


def _sandbox_folder(manifest: Path) -> Path:
    """`.reconcile/sandbox/` beside the manifest (the cwd for the default, absent manifest)."""
    space = workspace.Workspace.for_manifest(manifest)
    if not space.base_dir.is_dir():
        raise errors.UsageError(f"{space.base_dir}: no such folder (the manifest's folder)")
    return sandbox.folder_under(space.cache_dir)


def _echo_exports(running: sandbox.Sandbox) -> None:
    variables = sandbox.environment(running)
    endpoint = variables.pop("AWS_ENDPOINT_URL")
    typer.echo(f"export AWS_ENDPOINT_URL={shlex.quote(endpoint)}")
    typer.echo("export " + " ".join(f"{name}={shlex.quote(value)}"
                                    for name, value in variables.items()))


@sandbox_app.command("start")
def sandbox_start(manifest: ManifestOption = Path("layers.yaml")) -> None:
    """Start the sandbox (or find it running) and print the exports that point reconcile
    at it, with fake credentials: eval "$(reconcile sandbox start)". Its pid, port and
    log live in .reconcile/sandbox/ beside the manifest."""
    result = sandbox.start(_sandbox_folder(manifest))
    running = result.sandbox
    state = "already running" if result.already_running else "started"
    _err(f"sandbox {state}: moto server pid {running.pid} on {running.endpoint_url} "
         f"(log: {running.log_path}); `reconcile sandbox stop` ends it.")
    _echo_exports(running)


@sandbox_app.command("status")
def sandbox_status(manifest: ManifestOption = Path("layers.yaml")) -> None:
    """Say whether the sandbox runs: exit 0 and its pid, port and endpoint when it does,
    exit 1 when it does not."""
    folder = _sandbox_folder(manifest)
    running = sandbox.status(folder)
    if running is None:
        stale = sandbox.stale_pid(folder)
        note = (f" (a stale record names pid {stale}; `reconcile sandbox stop` removes it)"
                if stale is not None else "")
        _err(f"sandbox not running{note}; start it with `reconcile sandbox start`.")
        raise typer.Exit(EXIT_ERROR)
    typer.echo(f"sandbox running: pid {running.pid}, port {running.port}, "
               f"endpoint {running.endpoint_url} (log: {running.log_path})")


@sandbox_app.command("stop")
def sandbox_stop(manifest: ManifestOption = Path("layers.yaml")) -> None:
    """Stop the sandbox this folder started, and only that process. A stale record (its
    process gone, or its pid now another process's) is removed without signalling anything."""
    result = sandbox.stop(_sandbox_folder(manifest))
    if result.outcome is sandbox.StopOutcome.STOPPED:
        typer.echo(f"sandbox stopped (pid {result.pid}).")
    elif result.outcome is sandbox.StopOutcome.STALE_REMOVED:
        typer.echo(f"sandbox not running: removed the stale record of pid {result.pid} "
                   "(that process, if any, was left alone).")
    else:
        typer.echo("sandbox not running.")


def _report(error: errors.ReconcilerError) -> None:
    if isinstance(error, errors.ManifestError):
        annotate = github.Actions.from_environment(os.environ).annotations
        for problem in error.problems:
            _err(errors.redact_urls(str(problem)))
            if annotate:  # workflow commands are read from stdout
                typer.echo(errors.redact_urls(github.annotation(problem)))
        count = len(error.problems)
        _err(f"{count} problem{'s' if count != 1 else ''} found; nothing was changed.")
        return
    # Every message passes here: no URL's userinfo or presigned query is ever printed, even
    # from a message that quotes an endpoint URL as the user gave it.
    _err(errors.redact_urls(f"error: {error.message}"))
    if error.hint:
        _err(errors.redact_urls(f"hint: {error.hint}"))


_TYPER_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; exit 0 (success), 1 (any error, usage errors included) or 2 (changes)."""
    command = typer.main.get_command(app)
    failure: errors.ReconcilerError | None = None
    try:
        code = command.main(args=argv, prog_name="reconcile", standalone_mode=False)
    except errors.ReconcilerError as error:
        _report(error)
        failure = error
        code = EXIT_ERROR
    except _ClickException as error:
        error.show()  # type: ignore[attr-defined]
        code = EXIT_ERROR
    except typer.Abort:
        _err("aborted: nothing more was changed.")
        code = EXIT_ERROR
    except KeyboardInterrupt:
        _err("interrupted: every publish that finished is recorded in the lockfile.")
        code = EXIT_ERROR
    if code == _TYPER_INTERRUPTED:
        # typer turns a Ctrl-C outside apply's own handling (plan, validate, show...) into a
        # silent exit 130; the contract has one code for every error.
        _err("interrupted: nothing was changed.")
        code = EXIT_ERROR
    code = code if isinstance(code, int) else EXIT_OK
    if code == EXIT_ERROR and failure is None:
        failure = errors.ReconcilerError("interrupted or refused (see the job's log)")
    _finish_github(code, failure)
    sys.exit(code)
