"""The composite action (`action.yml` at the repository root), run as GitHub Actions runs it:
its `run` step under bash with the inputs' expressions evaluated into the step's env, the
GITHUB_* variables an Actions runner sets (a pull-request event, GITHUB_OUTPUT,
GITHUB_STEP_SUMMARY, GITHUB_API_URL at a loopback stand-in), and the action's outputs read from
the step's outputs. The install step is not run here (it needs the package index); `make
dist-check` installs the same way from a fresh virtualenv."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import githubstandin
import pytest
import yaml
from clirun import versions
from githubstandin import outputs_of

ACTION = Path(__file__).resolve().parent.parent / "action.yml"
TOKEN = "ghs_actionTokenNeverPrinted"
_EXPRESSION = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")


def load_action() -> dict[str, Any]:
    """action.yml, parsed."""
    document: dict[str, Any] = yaml.safe_load(ACTION.read_text())
    return document


def evaluate(text: str, context: dict[str, str]) -> str:
    """`text` with each `${{ name }}` replaced as Actions would (an unknown name fails)."""
    return _EXPRESSION.sub(lambda found: context[found.group(1)], text)


class Runner:
    """One job's workspace and runner folders, and the way it runs the action's main step."""

    def __init__(self, root: Path, api_url: str) -> None:
        self.workspace = root / "workspace"
        self.temp = root / "runner-temp"
        self.temp.mkdir(parents=True)
        self.api_url = api_url
        self.steps = 0

    def run(self, inputs: dict[str, str]) -> tuple[subprocess.CompletedProcess[str],
                                                   dict[str, str]]:
        """Run the `run` step with `inputs` (defaults for the rest); the action's outputs."""
        action = load_action()
        values = {f"inputs.{name}": str(spec.get("default", ""))
                  for name, spec in action["inputs"].items()}
        values["inputs.github-token"] = TOKEN  # `${{ github.token }}`, as the runner fills it
        values.update({f"inputs.{name}": value for name, value in inputs.items()})
        step = next(item for item in action["runs"]["steps"] if item.get("id") == "run")
        self.steps += 1
        output = self.temp / f"output-{self.steps}"
        event = self.temp / "event.json"
        event.write_text(json.dumps({"pull_request": {"number": 12}}))
        env = {**os.environ, "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(self.workspace),
               "GITHUB_ACTION_PATH": str(ACTION.parent), "RUNNER_TEMP": str(self.temp),
               "GITHUB_OUTPUT": str(output),
               "GITHUB_STEP_SUMMARY": str(self.temp / "summary.md"),
               "GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event),
               "GITHUB_API_URL": self.api_url, "GITHUB_REPOSITORY": "acme/layers",
               "GITHUB_SERVER_URL": "https://github.example", "GITHUB_RUN_ID": "77",
               # what the install step's GITHUB_PATH line adds: the installed commands
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        env.update({name: evaluate(str(value), values) for name, value in step["env"].items()})
        cwd = self.workspace / evaluate(step["working-directory"], values)
        result = subprocess.run([step["shell"], "-c", step["run"]], cwd=cwd, env=env,
                                capture_output=True, text=True, timeout=300, check=False)
        assert "Traceback" not in result.stderr, result.stderr
        step_outputs = {f"steps.run.outputs.{name}": value
                        for name, value in outputs_of(output).items()}
        context = {key: step_outputs.get(key, "") for key in (
            f"steps.run.outputs.{name}" for name in action["outputs"])}
        return result, {name: evaluate(spec["value"], context)
                        for name, spec in action["outputs"].items()}


@pytest.fixture
def runner(tmp_path: Path, moto_url: str) -> Iterator[tuple[Runner, githubstandin.GitHubStandIn]]:
    """A job workspace holding a repository with one layer (in a subfolder), a GitHub API
    stand-in, next to a freshly reset moto server."""
    with githubstandin.running(TOKEN) as api:
        job = Runner(tmp_path, api.url)
        repo = job.workspace / "infra"
        (repo / ".git").mkdir(parents=True)
        (repo / "src" / "alpha").mkdir(parents=True)
        (repo / "src" / "alpha" / "alpha.py").write_text("NAME = 'alpha'\n")
        (repo / "layers.yaml").write_text("version: 1\nregion: us-east-1\nlayers:\n  alpha:\n"
                                          "    content: {path: src/alpha, prefix: python}\n")
        yield job, api


def test_the_action_declares_the_contracted_inputs_and_outputs() -> None:
    """action.yml is a composite action with the inputs and outputs users rely on."""
    action = load_action()
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) == {"command", "manifest", "working-directory", "plan-file",
                                     "comment", "github-token"}
    assert set(action["outputs"]) == {"exitcode", "changes", "plan-file"}
    install = action["runs"]["steps"][0]["run"]
    assert 'pip install' in install and '"$GITHUB_ACTION_PATH"' in install


def test_plan_comments_and_apply_applies_the_plan_file(
        runner: tuple[Runner, githubstandin.GitHubStandIn]) -> None:
    """plan: exit 2 is a success, the outputs say 2 / true / the plan file, the plan is
    commented once on the pull request; apply of that plan file publishes; the token is never
    printed."""
    job, api = runner
    planned, outputs = job.run({"command": "plan", "working-directory": "infra"})
    assert planned.returncode == 0, planned.stderr
    plan_file = job.temp / "reconcile.plan.json"
    assert outputs == {"exitcode": "2", "changes": "true", "plan-file": str(plan_file)}
    assert plan_file.exists()
    assert api.count("POST") == 1 and "reconcile-plan manifest=layers.yaml" \
        in api.comments[12][0]["body"]
    assert "### reconcile plan: `layers.yaml`" in (job.temp / "summary.md").read_text()
    applied, outputs = job.run({"command": "apply", "working-directory": "infra"})
    assert applied.returncode == 0, applied.stderr
    assert outputs["exitcode"] == "0" and outputs["changes"] == "true"
    assert versions("alpha") == [1]
    for result in (planned, applied):
        assert TOKEN not in result.stdout + result.stderr


def test_apply_without_a_plan_file_and_an_unknown_command_fail(
        runner: tuple[Runner, githubstandin.GitHubStandIn]) -> None:
    """apply needs the reviewed plan file; an unknown command is an error; both exit 1 with
    a workflow error line, and nothing is published."""
    job, _ = runner
    missing, _ = job.run({"command": "apply", "working-directory": "infra"})
    assert missing.returncode == 1
    assert "::error::no plan file at" in missing.stdout
    unknown, _ = job.run({"command": "destroy", "working-directory": "infra"})
    assert unknown.returncode == 1
    assert "the command input must be plan or apply, not 'destroy'" in unknown.stdout
    assert versions("alpha") == []


def test_a_failing_plan_fails_the_step_with_its_outputs(
        runner: tuple[Runner, githubstandin.GitHubStandIn]) -> None:
    """A plan that fails (a missing manifest) fails the step with exit 1, exitcode output 1,
    and posts no comment."""
    job, api = runner
    failed, outputs = job.run({"command": "plan", "working-directory": "infra",
                               "manifest": "missing.yaml"})
    assert failed.returncode == 1
    assert outputs["exitcode"] == "1" and outputs["changes"] == "false"
    assert api.requests == []
