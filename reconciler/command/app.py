"""The `reconcile` typer app: the root (--version), every command registered from `layers`
and `admin`, and `run`, which runs one command line and turns its outcome into an exit code.

Exit codes: 0 success, 1 any error (usage errors included, each a ReconcilerError reported
as one message on stderr, never a traceback), 2 only for `plan --detailed-exitcode` with
changes. `run` starts from a clean slate (no live display, no GitHub run record), so that a
process may run several command lines (the in-process tests do).
"""

from __future__ import annotations

from typing import Annotated

import typer

from reconciler import SANDBOX_INSTALL_HINT, __version__, archive, errors
from reconciler.command import admin, layers, views, workflow

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, layers.EXIT_CHANGES
# Recent typer vendors its own click; its exception base is reached through a public class
# so that this works with either (and never depends on a private module path).
_ClickException: type[Exception] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"
)
# typer turns a Ctrl-C outside apply's own handling (plan, validate, show...) into this.
_TYPER_INTERRUPTED = 130

app = typer.Typer(
    name="reconcile",
    help="Declarative reconciler for AWS Lambda layers: validate, plan and apply layers.yaml.",
    no_args_is_help=True,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


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
        views.version(tool=__version__, packaging_format=archive.FORMAT_VERSION,
                      botocore=_botocore_version())
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the versions of the tool, its packaging format and botocore, and exit.")
    ] = False,
) -> None:
    """Declarative reconciler for AWS Lambda layers."""


app.command()(layers.validate)
app.command()(layers.plan)
app.command()(layers.apply)
app.command()(layers.show)
app.command()(admin.comment)
app.command()(layers.outputs)
app.command("force-unlock")(admin.force_unlock)

state_app = typer.Typer(help="Copy the shared S3 state to or from a local lockfile, or "
                             "remove layers from the state.",
                        no_args_is_help=True)
app.add_typer(state_app, name="state")
state_app.command("pull")(admin.state_pull)
state_app.command("push")(admin.state_push)
state_app.command("rm")(admin.state_rm)

app.command()(admin.schema)

sandbox_app = typer.Typer(
    name="sandbox",
    help="A local moto server (the embedded AWS) for trying reconcile: no account, no network. "
         f"Needs the optional extra: {SANDBOX_INSTALL_HINT}",
    no_args_is_help=True,
)
app.add_typer(sandbox_app)
sandbox_app.command("start")(admin.sandbox_start)
sandbox_app.command("status")(admin.sandbox_status)
sandbox_app.command("stop")(admin.sandbox_stop)


def run(argv: list[str] | None = None) -> int:
    """Run one command line; its exit code: 0 (success), 1 (any error, usage errors
    included) or 2 (changes)."""
    views.reset()
    workflow.reset()
    failure: errors.ReconcilerError | None = None
    try:
        # (Inside: typer builds the commands here, long enough for a Ctrl-C to land in it.)
        command = typer.main.get_command(app)
        code = command.main(args=argv, prog_name="reconcile", standalone_mode=False)
    except errors.ReconcilerError as error:
        views.error(error)
        failure = error
        code = EXIT_ERROR
    except _ClickException as error:
        error.show()  # type: ignore[attr-defined]
        code = EXIT_ERROR
    except typer.Abort:
        views.err("aborted: nothing more was changed.")
        code = EXIT_ERROR
    except KeyboardInterrupt:
        views.err("interrupted: every publish that finished is recorded in the lockfile.")
        code = EXIT_ERROR
    if code == _TYPER_INTERRUPTED:
        # A silent exit 130 from typer; the contract has one code for every error. (An
        # apply's own handling stops at its report: a Ctrl-C after it lands here too.)
        views.err("interrupted: every publish that finished is recorded in the lockfile."
                  if workflow.running("apply") else "interrupted: nothing was changed.")
        code = EXIT_ERROR
    code = code if isinstance(code, int) else EXIT_OK
    if code == EXIT_ERROR and failure is None:
        failure = errors.ReconcilerError("interrupted or refused (see the job's log)")
    workflow.finish(code, failure)
    return code
