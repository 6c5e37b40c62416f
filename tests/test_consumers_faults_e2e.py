"""Consumers under the faults moto never shows (it always reports Successful and ignores
RevisionId), through the fault-injection proxy in front of it, the CLI in process: an update
that fails or never settles, ResourceConflictException, PreconditionFailedException, SSM
throttling, a lost reply. A failed update is reported for its function and blocks nothing
else; retention waits in its region; the next apply finishes the job."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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

from reconciler import aws
from reconciler.command import compose
from reconciler.run import session

UPDATE, READ = "UpdateFunctionConfiguration", "GetFunctionConfiguration"
NAME = "/layers/shared/latest"


class Clock:
    """A clock that moves only when the wait sleeps (the wait's bound, without waiting)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class QuickWaitStores(compose.Boto3Stores):
    """The real stores, the function store's wait on a clock of its own (one read a
    minute: the 300 s bound in six reads, at once)."""

    def remote(self) -> session.Remote:
        """botocore's stores; the function store waits on the test's clock."""
        remote = super().remote()
        assert isinstance(remote.layers, aws.Boto3LayerStore)
        clock = Clock()
        return dataclasses.replace(remote, functions=aws.Boto3FunctionStore(
            remote.layers.clients, poll_seconds=60, clock=clock, sleep=clock.sleep))


@pytest.fixture
def quick_wait() -> Iterator[None]:
    """Commands run with QuickWaitStores."""
    with compose.overridden(QuickWaitStores):
        yield


@pytest.fixture
def project(tmp_path: Path, proxy: faultproxy.FaultProxy) -> Path:
    """`shared` v1 in us-east-1 (published outside), used by `api` and `worker`; retain: 1;
    the parameter per layer. The proxy fronts moto."""
    return retained_project(tmp_path, parameter_name=NAME)


def apply_json(project: Path) -> tuple[int, dict[str, Any]]:
    """`apply --yes --format json` (no client-side rate limit): exit code and report."""
    result = invoke(project, "apply", "--yes", "--format", "json", "--max-rps", "0")
    return result.returncode, json.loads(result.stdout)


def failures(report: dict[str, Any]) -> dict[str, str]:
    """function -> the code of its failure."""
    return {item["function"]: item["code"] for item in report["failed"] if "function" in item}


def skip_reads(count: int) -> faultproxy.Rule:
    """A rule that lets the first `count` reads of a function through untouched."""
    return faultproxy.delay_reply(seconds=0, times=count, operation=READ)


def configuration(status: str, reason: str = "") -> faultproxy.Reply:
    """A GetFunctionConfiguration answer whose LastUpdateStatus is `status`."""
    body = {"FunctionName": "api", "LastUpdateStatus": status, "Layers": [],
            "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:api"}
    if reason:
        body["LastUpdateStatusReason"] = reason
    return faultproxy.Reply(200, json.dumps(body).encode())


def test_a_failed_update_is_reported_for_its_function_and_blocks_nothing_else(
        project: Path, proxy: faultproxy.FaultProxy) -> None:
    """LastUpdateStatus Failed on api: api's failure carries Lambda's reason; worker and the
    parameter move; retention waits (v1 stays); the next apply deletes it."""
    # Reads: the plan's two, then api's read before its update; the wait's read fails.
    proxy.add(skip_reads(3), faultproxy.Rule(configuration("Failed", "the layer is broken"),
                                             operation=READ, times=1))
    code, report = apply_json(project)
    assert code != 0
    assert failures(report) == {"api": "function_update_failed"}
    assert "the layer is broken" in report["failed"][0]["error"]
    assert [item["function"] for item in report["functions"]] == ["worker"]
    assert parameter("us-east-1", NAME) == latest("us-east-1")
    assert numbers("us-east-1") == [1, 2]
    assert any("retention there waits" in item["why"] for item in report["not_attempted"])
    proxy.clear()
    code, report = apply_json(project)
    assert code == 0, report
    assert numbers("us-east-1") == [2]


def test_an_update_that_never_settles_times_out_and_the_rerun_finishes(
        project: Path, proxy: faultproxy.FaultProxy, quick_wait: None) -> None:
    """InProgress at every read of api's wait: a timeout after the bound, for api alone;
    the rerun finds api moved (Lambda did it) and deletes what it left."""
    proxy.add(skip_reads(3), faultproxy.Rule(configuration("InProgress"), operation=READ,
                                             times=6))
    code, report = apply_json(project)
    assert code != 0
    assert failures(report) == {"api": "function_update_timeout"}
    assert layers_of("us-east-1", "api") == [latest("us-east-1")]
    proxy.clear()
    code, report = apply_json(project)
    assert code == 0, report
    assert report["functions"] == []
    assert numbers("us-east-1") == [2]


@pytest.mark.parametrize(("status", "aws_code", "code"), [
    (409, "ResourceConflictException", "function_busy"),
    (412, "PreconditionFailedException", "revision_stale")])
def test_a_refused_update_is_sent_once_and_reported(
        project: Path, proxy: faultproxy.FaultProxy, status: int, aws_code: str,
        code: str) -> None:
    """Lambda refuses api's update: sent once, reported for api with its code, api keeps
    its layers; worker moves."""
    old = layers_of("us-east-1", "api")
    proxy.add(faultproxy.reject(status=status, code=aws_code, operation=UPDATE, times=1))
    exit_code, report = apply_json(project)
    assert exit_code != 0
    assert failures(report) == {"api": code}
    assert layers_of("us-east-1", "api") == old
    assert layers_of("us-east-1", "worker") == [latest("us-east-1")]
    assert proxy.count(operation=UPDATE) == 2


def test_a_lost_update_reply_is_read_back_not_sent_again(
        project: Path, proxy: faultproxy.FaultProxy) -> None:
    """A reset after Lambda made api's update: apply reads api back, finds it moved, and
    reports it moved (found after a lost reply) with no second send."""
    proxy.add(faultproxy.reset_after_forward(operation=UPDATE, times=1))
    exit_code, report = apply_json(project)
    assert exit_code == 0, report
    assert proxy.count(operation=UPDATE) == 2  # api once, worker once
    moved = {item["function"]: item["adopted"] for item in report["functions"]}
    assert moved == {"api": True, "worker": False}


def test_a_throttled_parameter_write_is_sent_again_after_a_wait(
        project: Path, proxy: faultproxy.FaultProxy) -> None:
    """SSM throttles the first two PutParameter: the write goes through on the third."""
    proxy.add(faultproxy.Rule(faultproxy.Reply(400, json.dumps(
        {"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()),
        operation="PutParameter", times=2))
    exit_code, report = apply_json(project)
    assert exit_code == 0, report
    assert proxy.count(operation="PutParameter") == 3
    assert parameter("us-east-1", NAME) == latest("us-east-1")
    assert report["parameters"][0]["parameter"] == NAME
