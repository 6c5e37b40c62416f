"""What GitHub Actions is told about a plan or apply, whatever its outcome: the step summary
(once per run) and the step outputs, written on the way out (`finish`).

The run record is this process's (one command per process, or one per in-process call:
`begin` and `reset` start it afresh). The formats are github's; this module only decides
when each is written, and warns on stderr when one cannot be.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler import errors
from reconciler.command import lazy, views

if TYPE_CHECKING:
    from reconciler import github
    from reconciler.run import session as run_session
else:
    github = lazy.module("reconciler.github")  # urllib.request: only Actions runs need it
    run_session = lazy.module("reconciler.run.session")


@dataclass
class _Run:
    """The record of the plan or apply this process runs."""

    command: str
    manifest: str
    summary: bool
    summarised: bool = False
    changes: bool = False
    plan_file: str | None = None


_RUN: _Run | None = None


def reset() -> None:
    """No run recorded (a command that is neither plan nor apply tells Actions nothing)."""
    global _RUN
    _RUN = None


def begin(command: str, manifest: Path, *, no_summary: bool) -> None:
    """Record that `command` runs on `manifest` (named as a saved plan names it)."""
    global _RUN
    _RUN = _Run(command=command,
                manifest=run_session.manifest_in_repository(manifest) or str(manifest),
                summary=not no_summary)


def running(command: str) -> bool:
    """Whether the run recorded is of `command`."""
    return _RUN is not None and _RUN.command == command


def record_changes(changes: bool) -> None:
    """Record whether the run changed (or, for plan, would change) anything."""
    if _RUN is not None:
        _RUN.changes = changes


def record_plan_file(plan_file: str) -> None:
    """Record the plan file the run saved."""
    if _RUN is not None:
        _RUN.plan_file = plan_file


def summary_title() -> str:
    """The heading of the run's step summary."""
    return github.heading(_RUN.command, _RUN.manifest) if _RUN is not None else "reconcile"


def step_summary(markdown: str) -> None:
    """Append to GitHub Actions' job summary when running there (and not --no-summary)."""
    run = _RUN
    actions = github.Actions.from_environment(os.environ)
    if run is None or not run.summary or actions.step_summary is None:
        return
    run.summarised = True
    try:
        github.append_step_summary(actions.step_summary, markdown, run_url=actions.run_url)
    except errors.ReconcilerError as error:
        views.err(f"warning: {error.message}")


def finish(code: int, failure: errors.ReconcilerError | None) -> None:
    """On every outcome of plan or apply: a summary for a run that wrote none (an invalid
    manifest, a refusal, an error), and the step outputs."""
    run = _RUN
    if run is None:
        return
    if failure is not None and not run.summarised:
        lines = [f"### {summary_title()}", "", f":x: **{run.command} failed**: "
                 f"{_markdown_text(failure.message)}"]
        if isinstance(failure, errors.ManifestError):
            lines += [f"- `{_markdown_text(str(problem))}`" for problem in failure.problems]
        if failure.hint:
            lines += ["", f"Hint: {_markdown_text(failure.hint)}"]
        step_summary(errors.redact_urls("\n".join(lines) + "\n"))
    actions = github.Actions.from_environment(os.environ)
    if actions.output is None:
        return
    values = {"exitcode": str(code), "changes": "true" if run.changes else "false"}
    if run.plan_file is not None:
        values["plan-file"] = run.plan_file
    try:
        github.write_outputs(actions.output, values)
    except errors.ReconcilerError as error:
        views.err(f"warning: {error.message}")


def _markdown_text(text: str) -> str:
    return text.replace("\n", " ").replace("|", "\\|")
