"""The CLI's basics: --version, -h, shell completion, `reconcile schema`, what --help and
--version import, and the pre-commit hook the repository ships. What only a process shows
(the console script's output and exit code, `python -m`, completion, the imports of a fresh
interpreter, the hook's command) runs as real subprocesses of the installed console script
(or of this Python running `reconciler.cli.main`); the rest runs in process."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from clirun import invoke

from reconciler import __version__, archive

RECONCILE = shutil.which("reconcile", path=str(Path(sys.executable).parent))
REPO = Path(__file__).resolve().parents[1]
HEAVY_MODULES = ("boto3", "botocore", "jsonschema", "urllib.request")


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI; a user-facing error never shows a traceback."""
    assert RECONCILE, "the reconcile console script is not installed next to this Python"
    result = subprocess.run([RECONCILE, *args], cwd=cwd, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def shipped_schema() -> dict[str, Any]:
    """The manifest schema inside the installed package."""
    text = resources.files("reconciler").joinpath("schemas/layers.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def test_version_names_tool_format_and_botocore(tmp_path: Path) -> None:
    """--version prints the tool's version, the packaging format version and botocore's."""
    result = invoke(tmp_path, "--version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"reconcile {__version__}"
    assert lines[1] == f"packaging format {archive.FORMAT_VERSION}"
    assert lines[2].startswith(f"botocore {metadata.version('botocore')} ")


def test_the_console_script_and_python_m_are_one_program(tmp_path: Path) -> None:
    """The installed `reconcile` script and `python -m reconciler` print what the CLI prints
    in process, with its exit code, for --version, a valid manifest and an invalid one (which
    also shows that the lazily loaded modules load when a command needs them: validate's
    jsonschema reports the problem as usual)."""
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "layers.yaml").write_text("version: 1\nlayers: {}\nbogus: 1\n")
    cases = [(("--version",), 0, f"reconcile {__version__}"),
             (("validate", "-f", str(REPO / "layers.yaml.example")), 0, "valid: 4 layers"),
             (("validate", "-f", "bad/layers.yaml"), 1, "layers.yaml:3:1: bogus: unknown key")]
    for args, code, says in cases:
        script = run(tmp_path, *args)
        module = subprocess.run([sys.executable, "-m", "reconciler", *args], cwd=tmp_path,
                                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=120, check=False)
        in_process = invoke(tmp_path, *args)
        outcomes = {(done.returncode, done.stdout, done.stderr)
                    for done in (script, module, in_process)}
        assert len(outcomes) == 1, outcomes
        assert script.returncode == code, script.stderr
        assert says in script.stdout + script.stderr


@pytest.mark.parametrize("args", [
    ("-h",), ("plan", "-h"), ("apply", "-h"), ("sandbox", "-h"), ("sandbox", "start", "-h"),
    ("schema", "-h"),
])
def test_short_help_works_everywhere(tmp_path: Path, args: tuple[str, ...]) -> None:
    """-h prints the same help as --help, for the root and for every (sub)command."""
    short = invoke(tmp_path, *args)
    assert short.returncode == 0, short.stderr
    assert short.stdout.startswith("Usage: reconcile")
    assert short.stdout == invoke(tmp_path, *args[:-1], "--help").stdout


def test_status_help_says_its_exit_codes(tmp_path: Path) -> None:
    """`sandbox status --help` says it exits 0 when running and 1 when not."""
    result = invoke(tmp_path, "sandbox", "status", "-h")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "exit 0" in text
    assert "exit 1 when it does not" in text


def test_shell_completion_is_offered(tmp_path: Path) -> None:
    """--show-completion prints a completion script, and completing `sandbox s` offers the
    three sandbox commands."""
    # typer finds the shell from $SHELL, which a CI runner may not set.
    script = invoke(tmp_path, "--show-completion", "bash",
                    env={**os.environ, "SHELL": "/bin/bash"})
    assert script.returncode == 0, script.stderr
    assert "_RECONCILE_COMPLETE" in script.stdout
    assert RECONCILE
    completion = subprocess.run(
        [RECONCILE], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "_RECONCILE_COMPLETE": "complete_bash",
             "COMP_WORDS": "reconcile sandbox s", "COMP_CWORD": "2"})
    assert completion.returncode == 0, completion.stderr
    assert completion.stdout.split() == ["start", "status", "stop"]


def test_help_and_version_import_neither_boto3_nor_jsonschema() -> None:
    """--help and --version stay fast: they import neither boto3, botocore, jsonschema nor
    urllib.request (only the sandbox commands need it). One fresh interpreter runs each in
    turn and reports, after each, the heavy modules loaded so far."""
    commands = [["--version"], ["--help"], ["-h"], ["plan", "--help"]]
    program = (
        "import json, sys\n"
        "from reconciler import cli\n"
        f"for args in {commands!r}:\n"
        "    code = 0\n"
        "    try:\n"
        "        cli.main(args)\n"
        "    except SystemExit as done:\n"
        "        code = done.code\n"
        f"    heavy = [name for name in {HEAVY_MODULES!r} if name in sys.modules]\n"
        "    print(json.dumps({'args': args, 'code': code, 'heavy': heavy}), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            timeout=120, check=False)
    reports = [json.loads(line) for line in result.stderr.strip().splitlines()
               if line.startswith("{")]
    assert reports == [{"args": args, "code": 0, "heavy": []} for args in commands]


def test_a_deferred_module_runs_when_loaded() -> None:
    """command.lazy: a module named by `lazy.module` is not executed until `lazy.load` (or a
    first use), then it is the whole module (apply loads its machinery while the worker is
    still at work). In a fresh interpreter, where nothing has imported it yet."""
    program = (
        "import json, sys\n"
        "from reconciler.command import lazy\n"
        "deferred = lazy.module('reconciler.applying')\n"
        "before = 'reconciler.applying.lanes' in sys.modules\n"
        "lazy.load(deferred)\n"
        "print(json.dumps([before, 'reconciler.applying.lanes' in sys.modules,\n"
        "                  callable(deferred.apply)]))\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            timeout=120, check=True)
    assert json.loads(result.stdout) == [False, True, True]


def test_schema_prints_the_shipped_schema(tmp_path: Path) -> None:
    """`reconcile schema` prints the package's manifest schema as JSON, nothing else."""
    result = invoke(tmp_path, "schema")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == shipped_schema()


def test_schema_out_writes_a_copy_editors_can_use(tmp_path: Path) -> None:
    """`schema --out FILE` writes the shipped schema byte for byte, and the copy validates
    the repository's example manifest."""
    target = tmp_path / "layers.schema.json"
    result = invoke(tmp_path, "schema", "--out", str(target))
    assert result.returncode == 0, result.stderr
    assert f"$schema={target}" in result.stdout
    copy = json.loads(target.read_text(encoding="utf-8"))
    assert copy == shipped_schema()
    assert target.read_bytes() == (REPO / "schemas" / "layers.schema.json").read_bytes()
    example = yaml.safe_load((REPO / "layers.yaml.example").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(copy).validate(example)


def test_schema_out_makes_missing_folders(tmp_path: Path) -> None:
    """`schema --out a/b/c.json` creates the folders a/ and a/b/ and writes the schema."""
    target = tmp_path / "schemas" / "that" / "do-not-exist" / "layers.schema.json"
    result = invoke(tmp_path, "schema", "--out", str(target.relative_to(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == (REPO / "schemas" / "layers.schema.json").read_bytes()


def test_schema_out_under_a_file_is_one_error(tmp_path: Path) -> None:
    """A --out path that cannot be written (its folder is a file) is one message on stderr
    and exit 1."""
    (tmp_path / "file").write_text("x", encoding="utf-8")
    result = invoke(tmp_path, "schema", "--out", str(tmp_path / "file" / "schema.json"))
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "cannot write" in result.stderr


def test_pre_commit_hook_runs_validate(tmp_path: Path) -> None:
    """The shipped `reconcile-validate` pre-commit hook runs `reconcile validate` once on
    layers.yaml (not per file), and its entry passes a valid and fails an invalid manifest."""
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    hook = next(hook for hook in hooks if hook["id"] == "reconcile-validate")
    assert hook["entry"] == "reconcile validate"
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is False
    pattern = re.compile(hook["files"])
    assert pattern.search("layers.yaml")
    assert not pattern.search("services/layers.yaml")  # validate would not look there
    command, *args = shlex.split(hook["entry"])
    assert command == "reconcile"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("A = 1\n")
    manifest = tmp_path / "layers.yaml"
    manifest.write_text("version: 1\nlayers:\n  a:\n    content: {path: src}\n")
    # The entry's command is the console script pinned above; its arguments run in process.
    assert invoke(tmp_path, *args).returncode == 0
    manifest.write_text("version: 1\nlayers:\n  a:\n    content: {path: missing}\n")
    assert invoke(tmp_path, *args).returncode == 1
