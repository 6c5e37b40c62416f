"""Everything the commands print or ask: plans, apply reports and outputs on stdout, the
live progress display and messages on stderr, colour choice, the confirmation prompts, and
how an error is reported (one message on stderr, never a traceback).

The one module of the command layer that writes to the terminal; it decides nothing about
the run (what to print comes in as values) and builds no store.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from reconciler import errors, model, planfile, render
from reconciler.command import lazy
from reconciler.command.options import PlanFormat

if TYPE_CHECKING:
    from reconciler import github, sandbox
else:
    github = lazy.module("reconciler.github")  # urllib.request: only Actions runs need it
    sandbox = lazy.module("reconciler.sandbox")


def err(message: str) -> None:
    """One line on stderr."""
    typer.echo(message, err=True)


def progress(message: str) -> None:
    """Progress goes to the live display when one is running (a terminal, not CI); debug
    lines go to stderr when RECONCILE_DEBUG is set; anything else is dropped."""
    if message.startswith("debug: "):
        if os.environ.get("RECONCILE_DEBUG"):
            err(message)
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


class progress_display:
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


def reset() -> None:
    """Forget a live display left by an earlier run in this process (a command run in
    process, as the tests do, starts with none)."""
    global _LIVE
    _LIVE = None


def use_color() -> bool:
    """Colour on a terminal, unless NO_COLOR is set or the terminal is dumb."""
    return (sys.stdout.isatty() and "NO_COLOR" not in os.environ
            and os.environ.get("TERM") != "dumb")


def version(*, tool: str, packaging_format: int, botocore: str) -> None:
    """--version's three lines."""
    typer.echo(f"reconcile {tool}\n"
               f"packaging format {packaging_format}\n"
               f"botocore {botocore} (its Lambda model gives the runtime list)")


def plan(the_plan: model.Plan, output_format: PlanFormat) -> None:
    """Print the plan on stdout in the chosen format (JSON: the plan document alone)."""
    if output_format is PlanFormat.json:
        typer.echo(json.dumps(planfile.to_document(the_plan), indent=2, sort_keys=True))
    elif output_format is PlanFormat.markdown:
        typer.echo(render.markdown(the_plan), nl=False)
    else:
        plan_text(the_plan)


def plan_text(the_plan: model.Plan) -> None:
    """The plan as text (coloured on a terminal), as plan and apply show it."""
    typer.echo(render.text(the_plan, color=use_color()), nl=False)


def left_out(refused: Sequence[tuple[model.Change, str]]) -> None:
    """Under the plan apply PLANFILE shows: the consumer changes it leaves out, and why."""
    shown = render.left_out_text(refused)
    if shown:
        typer.echo("\n" + shown, nl=False)


def saved_plan(out: Path, *, manifest: Path | None) -> None:
    """How to apply the plan just saved to `out` (-f MANIFEST when the plan names none)."""
    manifest_flag = "" if manifest is None else f" -f {shlex.quote(str(manifest))}"
    typer.echo(f"\nSaved the plan to {out}. Apply exactly this plan with:\n"
               f"  reconcile apply {shlex.quote(str(out))}{manifest_flag}")


def apply_result(result: dict[str, Any], *, as_json: bool, spaced: bool) -> None:
    """What apply did: the report document, or its text (after a blank line when `spaced`)."""
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        typer.echo(("\n" if spaced else "") + render.apply_text(result), nl=False)


def json_document(document: dict[str, Any]) -> None:
    """A JSON document on stdout (sorted keys, indented)."""
    typer.echo(json.dumps(document, indent=2, sort_keys=True))


def line(text: str) -> None:
    """One line of a command's result on stdout."""
    typer.echo(text)


def text(value: str) -> None:
    """`value` on stdout as it is (no newline added)."""
    typer.echo(value, nl=False)


def confirm(the_plan: model.Plan, *, yes: bool, as_json: bool) -> None:
    """Ask before any change, a lockfile record included; a plan with none needs no answer."""
    if yes or not the_plan.has_changes:
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


def ask(question: str, *, yes: bool, refusal: str) -> None:
    """Ask for 'yes' on a terminal; --yes answers it; without a terminal, refuse."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise errors.ApplyRefused(f"{refusal}: stdin is not a terminal",
                                  hint="pass --yes to confirm")
    typer.echo(f"{question} Only 'yes' will be accepted.")
    if input("  Enter a value: ").strip() != "yes":
        raise errors.ApplyRefused(f"{refusal}: not confirmed")


def sandbox_exports(running: sandbox.Sandbox) -> None:
    """The shell exports that point reconcile at a running sandbox."""
    variables = sandbox.environment(running)
    endpoint = variables.pop("AWS_ENDPOINT_URL")
    typer.echo(f"export AWS_ENDPOINT_URL={shlex.quote(endpoint)}")
    typer.echo("export " + " ".join(f"{name}={shlex.quote(value)}"
                                    for name, value in variables.items()))


def error(failure: errors.ReconcilerError) -> None:
    """One message on stderr (a manifest's problems one a line, as workflow annotations too
    in GitHub Actions), its hint after it."""
    if isinstance(failure, errors.ManifestError):
        annotate = github.Actions.from_environment(os.environ).annotations
        for problem in failure.problems:
            err(errors.redact_urls(str(problem)))
            if annotate:  # workflow commands are read from stdout
                typer.echo(errors.redact_urls(github.annotation(problem)))
        count = len(failure.problems)
        err(f"{count} problem{'s' if count != 1 else ''} found; nothing was changed.")
        return
    # Every message passes here: no URL's userinfo or presigned query is ever printed, even
    # from a message that quotes an endpoint URL as the user gave it.
    err(errors.redact_urls(f"error: {failure.message}"))
    if failure.hint:
        err(errors.redact_urls(f"hint: {failure.hint}"))
