"""The head start begun from the command line before typer parses it (reconciler.cli): the
worker that identifies a plan's or an apply's layers is forked before typer and the command
layer are imported (run.session.begin_early).

Only a guess: the arguments are read here only as far as a whitelist of plan's and apply's
options allows (`early_run`); anything else (a saved plan, --target, --help, an unknown or
abbreviated option) begins nothing, and the session to come takes the head start up only if
it opens the same manifest the same way; otherwise, and at an exit before any session, it is
cancelled, having written nothing in the project (what it wrote ahead outside it, a built
layer's zip in the wheel cache's `prebuild/`, is removed by the cancel).
tests/test_early_start.py checks these tables against the commands' own options.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

COMMANDS = ("plan", "apply")
MANIFEST_OPTIONS = frozenset({"-f", "--manifest"})
LOCKFILE_OPTIONS = frozenset({"--lockfile"})
# The other options of plan and apply that take a value, and their flags.
VALUE_OPTIONS = frozenset({"--format", "--out", "--region", "--profile", "--endpoint-url",
                           "--max-attempts", "--timeout", "--lock-timeout", "--parallelism",
                           "--max-rps"})
FLAGS = frozenset({"--yes", "-y", "--detailed-exitcode", "--no-summary", "--no-download"})
# Options that stop the early start: a run of some layers only identifies them itself.
STOPPERS = frozenset({"--target", "--help"})


@dataclass(frozen=True)
class EarlyRun:
    """What the command line says, read ahead: the command, the manifest, the lockfile."""

    command: str
    manifest: Path
    lockfile: Path | None


def early_run(args: list[str]) -> EarlyRun | None:
    """The plan or apply `args` (the command line after the program's name) ask for, if
    every argument is one this module knows; None otherwise."""
    if not args or args[0] not in COMMANDS:
        return None
    manifest, lockfile = "layers.yaml", None
    position = 1
    while position < len(args):
        argument = args[position]
        name, equals, value = argument.partition("=") if argument.startswith("--") else (
            argument, "", "")
        if name in FLAGS and not equals:
            position += 1
            continue
        if name not in MANIFEST_OPTIONS | LOCKFILE_OPTIONS | VALUE_OPTIONS:
            return None  # a saved plan, --target, --help, anything unknown
        if not equals:
            if position + 1 >= len(args):
                return None
            position += 1
            value = args[position]
        if name in MANIFEST_OPTIONS:
            manifest = value
        elif name in LOCKFILE_OPTIONS:
            lockfile = value
        position += 1
    if not manifest:
        return None
    return EarlyRun(command=args[0], manifest=Path(manifest),
                    lockfile=Path(lockfile) if lockfile else None)


def begin(args: list[str]) -> None:
    """Begin the head start of the plan or apply `args` ask for, if they can be read here.
    It never fails: whatever stops it (a manifest path that names no file), the run's own
    parsing and reading meet again and report."""
    run = early_run(args)
    if run is None:
        return
    from reconciler.run import session

    try:
        session.begin_early(run.manifest, run.lockfile, uploads=run.command == "apply")
    except Exception:  # (nothing was begun: begin_early forks last)
        return
