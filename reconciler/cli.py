"""The `reconcile` command line: the composition root.

The only module that prints, reads the environment, talks to the terminal or chooses an exit
code. It turns every ReconcilerError into one message on stderr and exit code 1; usage
errors exit 1 too, so that exit code 2 only ever means "plan --detailed-exitcode: changes".
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import sys
import types
from dataclasses import dataclass
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reconciler import (
    __version__,
    archive,
    errors,
    lockfile,
    model,
    render,
    sandbox,
)


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


# aws (boto3), reconcile (boto3, deepdiff) and workspace (jsonschema, yaml) cost ~0.7 s to
# import: `--help` and `--version` must not pay for them, and each command pays only for
# what it touches. Loading them lazily here, rather than importing inside each command, keeps
# every command body as it is (tests/test_cli_basics.py checks that --help and --version
# import neither boto3 nor jsonschema). Type checkers and the layering test see the plain
# imports.
if TYPE_CHECKING:
    from reconciler import aws, reconcile, workspace
else:
    aws = _lazy_module("reconciler.aws")
    reconcile = _lazy_module("reconciler.reconcile")
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
    help="Attempts per AWS call, retries included (default: boto3's, AWS_MAX_ATTEMPTS).")]
NoSummaryOption = Annotated[bool, typer.Option(
    "--no-summary", help="Do not append the plan to GITHUB_STEP_SUMMARY.")]


def _botocore_version() -> str:
    """From the installed distribution's metadata: importing botocore would cost ~0.3 s."""
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
    if sys.stderr.isatty():
        _err(f"  … {message}")


def _use_color() -> bool:
    return (sys.stdout.isatty() and "NO_COLOR" not in os.environ
            and os.environ.get("TERM") != "dumb")


def _load(manifest_path: Path, lockfile_path: Path | None) -> tuple[
        workspace.Workspace, model.Manifest]:
    space = workspace.Workspace.for_manifest(manifest_path, lockfile_path)
    return space, workspace.load_manifest(space)


def _store(*, profile: str | None, endpoint_url: str | None,
           max_attempts: int | None) -> aws.Boto3LayerStore:
    return aws.Boto3LayerStore(profile=profile, endpoint_url=endpoint_url,
                               max_attempts=max_attempts)


def _default_region(store: aws.Boto3LayerStore) -> str | None:
    """AWS_REGION wins over boto3's chain (which reads only AWS_DEFAULT_REGION and the
    profile), as in the AWS CLI and the SDKs that read it."""
    return os.environ.get("AWS_REGION") or store.default_region()


@dataclass(frozen=True)
class _Planned:
    """What plan and apply share: the workspace, the lock read and the plan made."""

    space: workspace.Workspace
    lock: model.Lock
    store: aws.Boto3LayerStore
    result: reconcile.PlanResult


def _planned(manifest: Path, lockfile_path: Path | None, *, targets: list[str] | None,
             regions: list[str] | None, profile: str | None, endpoint_url: str | None,
             max_attempts: int | None) -> _Planned:
    """Validate, read the lock, then (only then) reach for AWS and plan."""
    space, parsed = _load(manifest, lockfile_path)
    lock = lockfile.read(space.lockfile_path)
    store = _store(profile=profile, endpoint_url=endpoint_url, max_attempts=max_attempts)
    result = reconcile.make_plan(
        parsed=parsed, lock=lock, store=store, space=space,
        default_region=_default_region(store), targets=targets or (), regions=regions or (),
        progress=_progress,
    )
    return _Planned(space=space, lock=lock, store=store, result=result)


def _step_summary(markdown: str, *, disabled: bool) -> None:
    """Append to GitHub Actions' job summary when running there."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if disabled or not target:
        return
    try:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(markdown + "\n")
    except OSError as exc:
        _err(f"warning: cannot write GITHUB_STEP_SUMMARY ({target}): {exc.strerror}")


@app.command()
def validate(
    manifest: ManifestOption = Path("layers.yaml"),
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    max_attempts: AttemptsOption = None,
    no_summary: NoSummaryOption = False,
) -> None:
    """Check the manifest and the files it names. Makes no AWS call (the AWS options are
    accepted, so a pipeline can pass the same ones to every command, and unused)."""
    _, parsed = _load(manifest, None)
    unsupported = workspace.unsupported_problems(parsed)
    if unsupported:
        for problem in errors.ManifestError(unsupported).problems:  # sorted, as errors are
            _err(f"warning: {problem}")
    kinds: dict[str, int] = {}
    for spec in parsed.layers:
        kinds[spec.content.kind.value] = kinds.get(spec.content.kind.value, 0) + 1
    sources = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
    regions = ", ".join(parsed.regions) or "the AWS default region"
    count = len(parsed.layers)
    typer.echo(f"{manifest}: valid: {count} layer{'s' if count != 1 else ''} "
               f"({sources}), region {regions}.")


@app.command()
def plan(
    manifest: ManifestOption = Path("layers.yaml"),
    lockfile_path: LockfileOption = None,
    output_format: Annotated[PlanFormat, typer.Option(
        "--format", help="Output format.")] = PlanFormat.text,
    detailed_exitcode: Annotated[bool, typer.Option(
        "--detailed-exitcode", help="Exit 2 when changes are pending, 0 when none.")] = False,
    target: TargetOption = None,
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    max_attempts: AttemptsOption = None,
    no_summary: NoSummaryOption = False,
) -> None:
    """Show what apply would publish, and why. Changes nothing."""
    result = _planned(manifest, lockfile_path, targets=target, regions=region, profile=profile,
                      endpoint_url=endpoint_url, max_attempts=max_attempts).result
    if output_format is PlanFormat.json:
        typer.echo(json.dumps(render.plan_dict(result.plan), indent=2, sort_keys=True))
    elif output_format is PlanFormat.markdown:
        typer.echo(render.markdown(result.plan), nl=False)
    else:
        typer.echo(render.text(result.plan, color=_use_color()), nl=False)
    _step_summary(render.markdown(result.plan), disabled=no_summary)
    if detailed_exitcode and result.plan.has_changes:
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


@app.command()
def apply(
    manifest: ManifestOption = Path("layers.yaml"),
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
    no_summary: NoSummaryOption = False,
) -> None:
    """Plan, confirm, then publish exactly the layers that changed and record them."""
    run = _planned(manifest, lockfile_path, targets=target, regions=region, profile=profile,
                   endpoint_url=endpoint_url, max_attempts=max_attempts)
    space, lock, store, result = run.space, run.lock, run.store, run.result
    as_json = output_format is ApplyFormat.json
    if not as_json:
        typer.echo(render.text(result.plan, color=_use_color()), nl=False)
    _confirm(result.plan, yes=yes, as_json=as_json)
    report = reconcile.apply(result=result, lock=lock, store=store, space=space,
                             progress=_progress)
    _step_summary(render.markdown(result.plan, title="reconcile apply"), disabled=no_summary)
    unchanged = sum(1 for change in result.plan.changes
                    if change.action is model.Action.NOOP and change.record is None)
    if as_json:
        document: dict[str, Any] = {
            "plan": render.plan_dict(result.plan),
            "published": [
                {"layer": change.layer, "region": change.region, "version": version.version,
                 "layer_version_arn": version.layer_version_arn,
                 "code_sha256": version.code_sha256}
                for change, version in report.published
            ],
            "recorded": [
                {"layer": change.layer, "region": change.region,
                 "version": change.record.version if change.record else None}
                for change in report.recorded
            ],
        }
        typer.echo(json.dumps(document, indent=2, sort_keys=True))
        return
    if report.published or report.recorded:
        typer.echo("")
    for change, version in report.published:
        typer.echo(f"published {change.layer} ({change.region}): {version.layer_version_arn}")
    for change in report.recorded:
        arn = change.record.layer_version_arn if change.record else ""
        typer.echo(f"recorded  {change.layer} ({change.region}): {arn}")
    typer.echo(f"\nApply complete: {len(report.published)} published, "
               f"{len(report.recorded)} recorded in {space.lockfile_path.name}, "
               f"{unchanged} unchanged.")


@app.command()
def outputs(
    manifest: ManifestOption = Path("layers.yaml"),
    lockfile_path: LockfileOption = None,
    output_format: Annotated[OutputsFormat, typer.Option(
        "--format", help="Output format.")] = OutputsFormat.text,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    max_attempts: AttemptsOption = None,
    no_summary: NoSummaryOption = False,
) -> None:
    """Print each layer's latest published LayerVersionArn, from the lockfile. Makes no AWS
    call (the AWS options are accepted, like validate's, and unused)."""
    space = workspace.Workspace.for_manifest(manifest, lockfile_path)
    if not space.lockfile_path.exists():
        raise errors.LockfileError(f"{space.lockfile_path}: no such lockfile",
                                   hint="run `reconcile apply` first, or pass --lockfile")
    lock = lockfile.read(space.lockfile_path)
    rows = sorted((layer, region, entry.layer_version_arn)
                  for (layer, region), entry in lock.entries.items())
    if output_format is OutputsFormat.json:
        document: dict[str, dict[str, str]] = {}
        for layer, region, arn in rows:
            document.setdefault(layer, {})[region] = arn
        typer.echo(json.dumps(document, indent=2, sort_keys=True))
        return
    for layer, region, arn in rows:
        typer.echo(f"{layer} {region} {arn}")


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
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise errors.UsageError(f"{out}: cannot write: {exc.strerror}") from None
    typer.echo(f"wrote {out}; in layers.yaml: # yaml-language-server: $schema={out}")


sandbox_app = typer.Typer(
    name="sandbox",
    help="A local moto server (the embedded AWS) for trying reconcile: no account, no network. "
         f"Needs the optional extra: {sandbox.INSTALL_HINT}",
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
        for problem in error.problems:
            _err(str(problem))
        count = len(error.problems)
        _err(f"{count} problem{'s' if count != 1 else ''} found; nothing was changed.")
        return
    _err(f"error: {error.message}")
    if error.hint:
        _err(f"hint: {error.hint}")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; exit 0 (success), 1 (any error, usage errors included) or 2 (changes)."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="reconcile", standalone_mode=False)
    except errors.ReconcilerError as error:
        _report(error)
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
    sys.exit(code if isinstance(code, int) else EXIT_OK)
