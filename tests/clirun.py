"""Running `reconcile` for the behaviour tests: `invoke` runs the installed package's CLI in
this process (the default: no process start-up, ~0.5 s each), `run` the installed console
script as a subprocess (only where a process shows the behaviour: exit codes of the entry
point, signals and kills, the sandbox, --help's imports, tty prompts). Both give no terminal
on stdin, allow no traceback, and answer with the same CompletedProcess; every plan document
printed is checked against the shipped plan schema."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import boto3
import jsonschema

RECONCILE = shutil.which("reconcile", path=str(Path(sys.executable).parent))
PLAN_SCHEMA = json.loads(resources.files("reconciler").joinpath("schemas/plan.schema.json")
                         .read_text("utf-8"))


def run(cwd: Path, *args: str, stdin: int | None = subprocess.DEVNULL,
        env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI (no terminal on stdin unless given one)."""
    assert RECONCILE, "the reconcile console script is not installed next to this Python"
    result = subprocess.run([RECONCILE, *args], cwd=cwd, stdin=stdin, capture_output=True,
                            text=True, env=env or dict(os.environ), timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def invoke(cwd: Path, *args: str, stdin: int | str | None = subprocess.DEVNULL,
           env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `reconcile ARGS` in this process, as `run` does in a subprocess: in `cwd`, with
    exactly `env` as the environment (default: this one), stdin not a terminal (empty, or
    the text given), stdout and stderr captured; SystemExit becomes the return code and any
    other exception fails the test. Everything is restored afterwards. (`timeout` is
    accepted for `run`'s signature; an in-process run cannot be cut off.)"""
    from reconciler import cli

    assert stdin is None or isinstance(stdin, str) or stdin == subprocess.DEVNULL, (
        "a terminal on stdin needs a real process: use run()")
    stdout, stderr = _Stream(), _Stream()
    with _process_state(cwd, env=env, stdin=stdin if isinstance(stdin, str) else "",
                        stdout=stdout, stderr=stderr):
        try:
            cli.main(list(args))
        except SystemExit as done:
            code = _exit_code(done.code, stderr)
        except Exception as escaped:
            raise AssertionError(f"reconcile {' '.join(args)} raised {escaped!r}; stderr:\n"
                                 f"{stderr.text()}") from escaped
        else:
            code = 0
    result = subprocess.CompletedProcess(["reconcile", *args], code, stdout.text(),
                                         stderr.text())
    assert "Traceback" not in result.stderr, result.stderr
    return result


class _Stream(io.TextIOWrapper):
    """A captured stdout or stderr: UTF-8 text over bytes, not a terminal (as a pipe)."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8", errors="backslashreplace",
                         write_through=True)

    def text(self) -> str:
        """What was written, newlines translated as subprocess.run(text=True) does."""
        self.flush()
        assert isinstance(self.buffer, io.BytesIO)
        written = self.buffer.getvalue().decode("utf-8")
        return written.replace("\r\n", "\n").replace("\r", "\n")


def _exit_code(code: object, stderr: _Stream) -> int:
    """sys.exit's argument as a process exit status (a message: printed, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=stderr)
    return 1


@contextlib.contextmanager
def _process_state(cwd: Path, *, env: dict[str, str] | None, stdin: str, stdout: _Stream,
                   stderr: _Stream) -> Iterator[None]:
    """The working directory, environment and standard streams of one in-process run.

    Without COLUMNS the help is wrapped at 80 columns, as a process whose stdout is a pipe
    sees it (in here, sys.__stdout__ may be a terminal under `pytest -s`)."""
    environment = dict(os.environ if env is None else env)
    environment.setdefault("COLUMNS", "80")
    saved_environment = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    os.environ.clear()
    os.environ.update(environment)
    os.chdir(cwd)
    sys.stdin, sys.stdout, sys.stderr = io.StringIO(stdin), stdout, stderr
    try:
        yield
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_environment)


def valid_plan(document: Any) -> dict[str, Any]:
    """`document`, after checking it against schemas/plan.schema.json."""
    jsonschema.Draft202012Validator(PLAN_SCHEMA).validate(document)
    assert isinstance(document, dict)
    return document


def plan_json(cwd: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`plan --format json` parsed and schema-checked; stdout must be the document alone."""
    result = invoke(cwd, "plan", "--format", "json", *args, env=env)
    assert result.returncode == 0, result.stderr
    return valid_plan(json.loads(result.stdout))


def versions(layer: str, region: str | None = None) -> list[int]:
    """The versions the server behind AWS_ENDPOINT_URL holds for `layer`."""
    client = boto3.client("lambda", region_name=region)
    listed = client.list_layer_versions(LayerName=layer)["LayerVersions"]
    return sorted(version["Version"] for version in listed)
