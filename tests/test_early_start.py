"""The head start begun from the command line before typer parses it (command.early,
run.session.begin_early): the reading ahead of plan's and apply's arguments (a whitelist,
checked here against the commands' own options), and the session that takes the early worker
up only when it opens the same manifest the same way, cancelling it otherwise.

The session scenarios run in fresh interpreters: the worker is forked only from a process that
has started no thread, and pytest's may have."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import typer
from test_prebuild_folder import MANIFEST  # (one folder layer, `tools`)

from reconciler.command import app, early


@pytest.mark.parametrize(("args", "expected"), [
    (["plan"], ("plan", "layers.yaml", None)),
    (["apply", "--yes"], ("apply", "layers.yaml", None)),
    (["apply", "-f", "other.yaml", "--lockfile", "x.lock.json"],
     ("apply", "other.yaml", "x.lock.json")),
    (["plan", "--manifest=m.yaml", "--lockfile=l.json", "--region", "eu-west-1",
      "--format=json", "--no-summary", "--parallelism", "8", "--max-rps", "0"],
     ("plan", "m.yaml", "l.json")),
    (["plan", "--out", "-f", "-f", "m.yaml"], ("plan", "m.yaml", None)),
])
def test_a_plain_plan_or_apply_is_read_ahead(args: list[str],
                                             expected: tuple[str, str, str | None]) -> None:
    """Plan and apply with the options the table knows give their command, manifest and
    lockfile (an option's value is never taken for an option)."""
    found = early.early_run(args)
    assert found is not None
    assert (found.command, str(found.manifest),
            None if found.lockfile is None else str(found.lockfile)) == expected


@pytest.mark.parametrize("args", [
    [], ["validate"], ["show", "plan.json"], ["apply", "plan.json"], ["plan", "--target", "a"],
    ["plan", "--help"], ["plan", "--bogus"], ["plan", "-fm.yaml"], ["plan", "--yes=1"],
    ["plan", "-f"], ["apply", "--lockfile"], ["--version"], ["plan", "--manifest="],
])
def test_anything_else_begins_nothing(args: list[str]) -> None:
    """A saved plan, --target, --help, an unknown, glued or valueless option, another
    command: nothing is read ahead (the run's own parsing then decides everything)."""
    assert early.early_run(args) is None


def _options(command: str) -> tuple[set[str], set[str]]:
    """The names of the options of `command` that take a value, and of its flags."""
    group: Any = typer.main.get_command(app.app)  # (typer's own copy of click's Group)
    values: set[str] = set()
    flags: set[str] = set()
    for parameter in group.commands[command].params:
        if parameter.param_type_name == "option":
            names = {*parameter.opts, *parameter.secondary_opts}
            (flags if parameter.is_flag else values).update(names)
    return values, flags


@pytest.mark.parametrize("command", early.COMMANDS)
def test_the_tables_are_the_commands_own_options(command: str) -> None:
    """Every option of plan and apply is in the early tables, as a value option or a flag
    as the command has it, or stops the early start; no table names an option neither has."""
    values, flags = _options(command)
    known_values = early.MANIFEST_OPTIONS | early.LOCKFILE_OPTIONS | early.VALUE_OPTIONS
    assert values - early.STOPPERS <= known_values
    assert flags - early.STOPPERS <= early.FLAGS
    plan_values, plan_flags = _options("plan")
    apply_values, apply_flags = _options("apply")
    assert known_values <= plan_values | apply_values
    assert early.FLAGS.issubset(plan_flags | apply_flags)
    assert early.STOPPERS - {"--help"} <= plan_values | apply_values | plan_flags | apply_flags


# Runs in the child interpreter: read the command line ahead (the early worker, if any, is
# this process's one child), then open the session the case says; print which worker the
# session holds and whether the early one still runs.
SCENARIO = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    from reconciler.command import compose, early
    from reconciler.run import session as run_session
    case, args = sys.argv[1], json.loads(sys.argv[2])

    def children():
        me = os.getpid()
        with open(f"/proc/{me}/task/{me}/children") as listed:
            return [int(pid) for pid in listed.read().split()]

    early.begin(args)
    before = children()
    if case == "edited":
        Path("layers.yaml").write_text(Path("layers.yaml").read_text() + "# edited\\n")
    stores = compose.compose(compose.Options(manifest=Path("layers.yaml"),
                                             endpoint_url="http://127.0.0.1:9", max_rps=0))
    session = run_session.open_session(stores, targets=["tools"] if case == "target" else None,
                                       regions=None, uploads=case != "plan session")
    worker = session.code.prefetching
    found = session.code.identify(list(session.parsed.layers))
    print(json.dumps({"before": before, "after": children(),
                      "worker": None if worker is None else worker.pid,
                      "fingerprint": found["tools"].fingerprint}))
""")


def _scenario(tmp_path: Path, case: str, args: list[str]) -> dict[str, Any]:
    """The scenario in a fresh interpreter, in a project of one folder layer."""
    project = tmp_path / case.replace(" ", "-")
    (project / ".git").mkdir(parents=True)
    (project / "tools").mkdir()
    for number in range(20):
        (project / "tools" / f"m{number}.py").write_text(f"VALUE = {number}\n")
    (project / "layers.yaml").write_text(MANIFEST)
    env = {**os.environ, "RECONCILE_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", SCENARIO, case, json.dumps(args)],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0 and done.stdout, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_the_session_of_the_same_manifest_takes_the_early_worker_up(tmp_path: Path) -> None:
    """Read ahead as `apply`, the apply's session of the same manifest holds the worker begun
    early (no second one is forked), and identifies what a run without it identifies."""
    taken = _scenario(tmp_path, "same", ["apply", "--yes"])
    assert len(taken["before"]) == 1 and taken["worker"] == taken["before"][0]
    alone = _scenario(tmp_path, "alone", ["validate"])
    assert alone["before"] == [] and alone["worker"] is not None
    assert taken["fingerprint"] == alone["fingerprint"]


@pytest.mark.parametrize(("case", "args"), [
    ("edited", ["apply"]),
    ("plan session", ["apply"]),
    ("other lockfile", ["apply", "--lockfile", "other.lock.json"]),
    ("target", ["apply"]),
])
def test_another_session_cancels_the_early_worker(tmp_path: Path, case: str,
                                                  args: list[str]) -> None:
    """A session not of what was read ahead (the manifest edited since, a plan's session for
    an apply's command line, another lockfile, --target) cancels the early worker (it is
    gone: reaped) and begins its own (none with --target); what it identifies is the same."""
    result = _scenario(tmp_path, case, args)
    assert len(result["before"]) == 1
    assert result["before"][0] not in result["after"]
    assert result["worker"] != result["before"][0]
    assert (result["worker"] is None) == (case == "target")
    assert result["fingerprint"] == _scenario(tmp_path, "alone", ["validate"])["fingerprint"]


BEGIN_ONLY = textwrap.dedent("""
    import json, os, sys
    from reconciler.command import early
    early.begin(json.loads(sys.argv[1]))
    me = os.getpid()
    with open(f"/proc/{me}/task/{me}/children") as listed:
        print(json.dumps(listed.read().split()))
""")


@pytest.mark.parametrize(("case", "args"), [
    ("no manifest", ["plan", "-f", "missing.yaml"]),
    ("a folder", ["plan", "-f", "."]),
    ("the root", ["apply", "-f", "/"]),
    ("not YAML", ["plan", "-f", "broken.yaml"]),
    ("a pipe", ["plan", "-f", "pipe.yaml"]),
])
def test_a_manifest_that_cannot_be_read_ahead_begins_nothing(tmp_path: Path, case: str,
                                                              args: list[str]) -> None:
    """A manifest path that names no readable regular file, or bytes that are no manifest:
    nothing is begun and nothing is raised (the run's own reading reports it); a named pipe
    is not read ahead (it would be drained before the run reads it)."""
    (tmp_path / "broken.yaml").write_text("layers: [unclosed\n")
    os.mkfifo(tmp_path / "pipe.yaml")
    done = subprocess.run([sys.executable, "-c", BEGIN_ONLY, json.dumps(args)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert json.loads(done.stdout) == []


INTERRUPTED_EARLY = textwrap.dedent("""
    import signal, sys
    from reconciler import cli  # (first: the interrupt is to land in cli.main)
    delay = float(sys.argv[1])
    def interrupt(*_):
        raise KeyboardInterrupt  # what Ctrl-C's default handler raises
    signal.signal(signal.SIGALRM, interrupt)
    sys.argv = ["reconcile", "plan"]
    signal.setitimer(signal.ITIMER_REAL, delay)
    cli.main()
""")


@pytest.mark.parametrize("delay", [0.002, 0.01, 0.03])
def test_an_interrupt_during_the_start_up_is_one_message(tmp_path: Path, delay: float) -> None:
    """Ctrl-C while the entry point reads the command line ahead or imports the commands
    (a timer raising KeyboardInterrupt, as Ctrl-C's handler does): one message, exit 1, no
    traceback."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "m.py").write_text("VALUE = 1\n")
    (tmp_path / "layers.yaml").write_text(MANIFEST)
    env = {**os.environ, "RECONCILE_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", INTERRUPTED_EARLY, str(delay)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1
    assert "interrupted:" in done.stderr
