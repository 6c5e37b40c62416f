"""A SIGKILL between a layer's publish and its consumers' updates, then a rerun: the installed
`reconcile` (its own process) is killed while its first UpdateFunctionConfiguration, or its
PutParameter, is held by the fault proxy (before the service saw it, or after it made it);
the publish is recorded,
so the rerun (in process) publishes nothing, moves what is left, writes the parameter,
deletes the version the consumers left, and the plan after it is clean."""

from __future__ import annotations

import json
from pathlib import Path

import faultproxy
import pytest
from clirun import invoke
from test_consumers_e2e import (
    latest,
    layers_of,
    numbers,
    parameter,
    retained_project,
)
from test_reliability_e2e import Cli, no_process_outlives_its_test

__all__ = ["no_process_outlives_its_test"]  # the fixture, used by every test here
NAME = "/layers/shared/latest"


MOMENTS = [("UpdateFunctionConfiguration", False), ("UpdateFunctionConfiguration", True),
           ("PutParameter", False), ("PutParameter", True)]


@pytest.mark.parametrize(("operation", "forward"), MOMENTS,
                         ids=[f"{op}-{'done' if fw else 'unseen'}" for op, fw in MOMENTS])
def test_a_kill_before_the_consumers_move_is_finished_by_the_next_apply(
        tmp_path: Path, proxy: faultproxy.FaultProxy, operation: str, forward: bool) -> None:
    """Killed at the first function update, or at the parameter's write: v2 is published
    and recorded; the rerun moves what is left of the functions (once each), writes the
    parameter unless it was, deletes v1 (retain: 1)."""
    root = retained_project(tmp_path, parameter_name=NAME)
    rule = faultproxy.hold(forward=forward, operation=operation)
    proxy.add(rule)
    started = Cli(root, "apply", "--yes")
    assert isinstance(rule.action, faultproxy.Hold)
    rule.action.wait_arrived()
    started.kill()
    proxy.clear()
    recorded = json.loads((root / "layers.lock.json").read_text())
    assert latest("us-east-1").endswith(":shared:2")
    assert latest("us-east-1") in json.dumps(recorded)
    written = operation == "PutParameter" and forward
    assert (parameter("us-east-1", NAME) is not None) == written

    rerun = invoke(root, "apply", "--yes", "--format", "json")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["published"] == []
    moved = sorted(item["function"] for item in report["functions"])
    if operation == "PutParameter":
        assert moved == []
        assert len(report["parameters"]) == (0 if written else 1)
    else:
        assert moved == (["worker"] if forward else ["api", "worker"])
    new = latest("us-east-1")
    assert layers_of("us-east-1", "api") == [new]
    assert layers_of("us-east-1", "worker") == [new]
    assert parameter("us-east-1", NAME) == new
    assert numbers("us-east-1") == [2]
    clean = invoke(root, "plan", "--detailed-exitcode")
    assert clean.returncode == 0, clean.stdout + clean.stderr
