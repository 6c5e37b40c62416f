"""A SIGKILL at any moment of an aligned, shared, retained three-region release, then a rerun:
against a moto server behind the fault-injection proxy, the installed `reconcile` command (its
own process) is killed while one of its Lambda writes is held (before Lambda saw it, or after
Lambda did it and before the reply); the rerun (in process) then leaves no filler anywhere,
every region's latest at the same number, shared, and the plan after it clean."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import faultproxy
import pytest
from clirun import invoke
from test_fillers_e2e import granted as shared_with
from test_fillers_e2e import lambda_client
from test_fillers_e2e import live as versions
from test_reliability_e2e import Cli, no_process_outlives_its_test

from reconciler import planner

REGIONS = ("eu-west-1", "us-east-1", "us-west-2")
PARTNER = "444455556666"
__all__ = ["no_process_outlives_its_test"]  # the fixture, used by every test here


def project(tmp_path: Path, moto_url: str) -> Path:
    """`lib` aligned, shared and retained (2) over three regions; us-east-1 already holds
    v1-v3 and eu-west-1 v1 (published outside reconcile), us-west-2 nothing: the first apply
    publishes v4 everywhere, with fillers in eu-west-1 and us-west-2, and retention deletes."""
    folder = tmp_path / "repo"
    (folder / "lib").mkdir(parents=True)
    (folder / "lib" / "lib.py").write_text("VALUE = 1\n")
    (folder / "layers.yaml").write_text(
        f"version: 1\nregion: [{', '.join(REGIONS)}]\nalign_versions: true\n"
        "layers:\n  lib:\n    content: {path: lib, prefix: python}\n    retain: 2\n"
        f"    share:\n      - account: '{PARTNER}'\n")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("python/old.py", "OLD = 1\n")
    for region, count in (("us-east-1", 3), ("eu-west-1", 1)):
        for _ in range(count):
            lambda_client(moto_url, region).publish_layer_version(
                LayerName="lib", Content={"ZipFile": buffer.getvalue()})
    return folder


# Each moment: the Lambda write held (its operation, which one of them in the apply's order),
# and whether Lambda did it before the process dies (forward) or never saw it.
MOMENTS = [
    ("PublishLayerVersion", 1, False),  # before the first filler
    ("PublishLayerVersion", 2, True),   # a filler made, its reply lost with the process
    ("PublishLayerVersion", 3, True),   # a real version made, not recorded
    ("PublishLayerVersion", 5, False),  # later fillers of the next region
    ("AddLayerVersionPermission", 1, True),  # the first grant, made, not recorded
    ("DeleteLayerVersion", 1, False),   # the first filler or retention delete
    ("DeleteLayerVersion", 3, True),    # a later delete, done
]


@pytest.mark.parametrize(("operation", "nth", "forward"), MOMENTS,
                         ids=[f"{op}-{nth}-{'done' if fw else 'unseen'}"
                              for op, nth, fw in MOMENTS])
def test_a_kill_at_any_moment_converges_on_one_number_with_no_filler_left(
        tmp_path: Path, proxy: faultproxy.FaultProxy, moto_url: str, operation: str,
        nth: int, forward: bool) -> None:
    """Killed at that moment, one rerun (two at most, when the first is told the numbers
    moved) leaves no filler, every region's latest at one number, shared with the partner,
    and a clean plan; retention keeps at most 2 real versions per region."""
    folder = project(tmp_path, moto_url)
    if nth > 1:
        proxy.add(faultproxy.delay_reply(seconds=0, times=nth - 1, operation=operation))
    rule = faultproxy.hold(forward=forward, operation=operation)
    proxy.add(rule)
    started = Cli(folder, "apply", "--yes", "--parallelism", "1")
    assert isinstance(rule.action, faultproxy.Hold)
    rule.action.wait_arrived()
    started.kill()
    proxy.clear()

    for _ in range(2):
        rerun = invoke(folder, "apply", "--yes")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        if invoke(folder, "plan", "--detailed-exitcode").returncode == 0:
            break
    clean = invoke(folder, "plan", "--detailed-exitcode")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    latest = {}
    for region in REGIONS:
        found = versions(moto_url, region)
        assert not [number for number, text in found if text == planner.FILLER_DESCRIPTION], \
            (region, found)
        assert len(found) <= 2, (region, found)
        latest[region] = found[-1][0]
        assert shared_with(moto_url, region, latest[region]) == [
            f"reconcile-account-{PARTNER}"]
    assert len(set(latest.values())) == 1, latest


LOST_REPLIES = [
    ("PublishLayerVersion", 1),  # a filler: looked up, not sent again
    ("PublishLayerVersion", 3),  # a real version: looked up and adopted
    ("AddLayerVersionPermission", 1),  # the grant: its retry conflicts with itself, success
    ("DeleteLayerVersion", 1),  # a filler's delete: its retry finds it gone, success
]


@pytest.mark.parametrize(("operation", "nth"), LOST_REPLIES,
                         ids=[f"{op}-{nth}" for op, nth in LOST_REPLIES])
def test_a_lost_reply_anywhere_is_looked_up_and_one_apply_converges(
        tmp_path: Path, proxy: faultproxy.FaultProxy, moto_url: str, operation: str,
        nth: int) -> None:
    """Lambda did the work and the reply was lost (a reset after forwarding): the one apply
    still succeeds, every region ends at v4 with no filler and no version made twice,
    retention keeps two, and the plan after it is clean."""
    folder = project(tmp_path, moto_url)
    if nth > 1:
        proxy.add(faultproxy.delay_reply(seconds=0, times=nth - 1, operation=operation))
    proxy.add(faultproxy.reset_after_forward(times=1, operation=operation))
    if operation == "AddLayerVersionPermission":
        # Lambda refuses a statement ID that exists (moto accepts it twice): the retry of a
        # grant whose reply was lost gets Lambda's answer.
        proxy.add(faultproxy.reject(status=409, code="ResourceConflictException", times=1,
                                    message="The statement id provided already exists",
                                    operation=operation))
    applied = invoke(folder, "apply", "--yes", "--parallelism", "1")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert {region: [number for number, _ in versions(moto_url, region)]
            for region in REGIONS} == {"eu-west-1": [1, 4], "us-east-1": [3, 4],
                                       "us-west-2": [4]}
    for region in REGIONS:
        assert shared_with(moto_url, region, 4) == [f"reconcile-account-{PARTNER}"]
    clean = invoke(folder, "plan", "--detailed-exitcode")
    assert clean.returncode == 0, clean.stdout + clean.stderr
