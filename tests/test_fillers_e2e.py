"""Issue 18, item 3, end to end: the installed `reconcile` CLI against a moto server behind
the fault proxy. An aligned, shared layer whose us-west-2 needs three fillers to reach
us-east-1's v4: a SIGKILL while fillers exist, a grant refused after them, their deletes
refused, and an upload refused before them each end, after a plain rerun, with no filler
left, both regions at v4 (no number burned) and a clean plan."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import boto3
import faultproxy
from clirun import invoke, plan_json
from test_reliability_e2e import Cli, no_process_outlives_its_test

from reconciler import planner

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CreateBucketConfigurationTypeDef

__all__ = ["no_process_outlives_its_test"]  # the autouse fixture: no `reconcile` outlives

REGIONS = ("us-east-1", "us-west-2")
PUBLISH = "PublishLayerVersion"
PARTNER = "111122223333"


def lambda_client(moto_url: str, region: str) -> Any:
    """A Lambda client straight to moto (not through the proxy)."""
    return boto3.client("lambda", region_name=region, endpoint_url=moto_url)


def live(moto_url: str, region: str) -> list[tuple[int, str]]:
    """(number, description) of each version of `lib` in `region`, lowest first."""
    client = lambda_client(moto_url, region)
    try:
        listed = client.list_layer_versions(LayerName="lib")["LayerVersions"]
    except client.exceptions.ResourceNotFoundException:
        return []
    return sorted((int(item["Version"]), str(item.get("Description", ""))) for item in listed)


def fillers_left(moto_url: str) -> list[tuple[str, int]]:
    """(region, number) of every filler version of `lib`."""
    return [(region, number) for region in REGIONS for number, text in live(moto_url, region)
            if text == planner.FILLER_DESCRIPTION]


def project(tmp_path: Path, moto_url: str, *, extra: str = "") -> Path:
    """`lib` aligned and shared over both regions; us-east-1 already holds v1-v3 (published
    outside reconcile), so the first apply publishes v4 there and three fillers first in
    us-west-2."""
    folder = tmp_path / "repo"
    (folder / "lib").mkdir(parents=True)
    (folder / "lib" / "lib.py").write_text("VALUE = 1\n")
    (folder / "layers.yaml").write_text(
        f"version: 1\nregion: [{', '.join(REGIONS)}]\nalign_versions: true\n{extra}"
        "layers:\n  lib:\n    content: {path: lib, prefix: python}\n"
        f"    share:\n      - account: '{PARTNER}'\n")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("python/old.py", "OLD = 1\n")
    for _ in range(3):
        lambda_client(moto_url, "us-east-1").publish_layer_version(
            LayerName="lib", Content={"ZipFile": buffer.getvalue()})
    return folder


def granted(moto_url: str, region: str, version: int) -> list[str]:
    """The statement IDs on a version of `lib`."""
    client = lambda_client(moto_url, region)
    try:
        policy = client.get_layer_version_policy(LayerName="lib", VersionNumber=version)
    except client.exceptions.ResourceNotFoundException:
        return []
    return sorted(statement["Sid"] for statement in json.loads(policy["Policy"])["Statement"])


def assert_converged(folder: Path, moto_url: str) -> None:
    """Both regions end at v4 with no filler, the new version shared, and the plan clean."""
    assert fillers_left(moto_url) == []
    assert [number for number, _ in live(moto_url, "us-west-2")] == [4]
    assert live(moto_url, "us-east-1")[-1][0] == 4
    assert granted(moto_url, "us-west-2", 4) == [f"reconcile-account-{PARTNER}"]
    again = invoke(folder, "plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes." in again.stdout


def stray_deletes(document: dict[str, Any]) -> list[tuple[str, int]]:
    """(region, version) of each stray_filler delete of a plan document."""
    return [(change["region"], change["version"]) for change in document["changes"]
            if change["action"] == "delete" and "stray_filler" in change["reasons"]]


def killed_after_three_fillers(folder: Path, proxy: faultproxy.FaultProxy) -> None:
    """An apply killed while us-west-2's real publish is held before Lambda sees it: its
    three fillers (v1-v3) exist there, us-east-1's v4 is published and recorded."""
    proxy.add(faultproxy.delay_reply(seconds=0, times=3, operation=PUBLISH,
                                     region="us-west-2"))
    rule = faultproxy.hold(forward=False, operation=PUBLISH, region="us-west-2")
    proxy.add(rule)
    started = Cli(folder, "apply", "--yes", "--parallelism", "1")
    assert isinstance(rule.action, faultproxy.Hold)
    rule.action.wait_arrived()
    started.kill()
    proxy.clear()


def test_sigkill_while_fillers_exist_then_a_rerun_lands_on_the_same_number(
        tmp_path: Path, proxy: faultproxy.FaultProxy, moto_url: str) -> None:
    """Killed with three fillers in us-west-2 and no real version: a plan shows each as a
    stray_filler delete (the dead run holds no lock), and the rerun publishes v4 there with
    no new filler and deletes the three."""
    folder = project(tmp_path, moto_url)
    killed_after_three_fillers(folder, proxy)
    assert fillers_left(moto_url) == [("us-west-2", 1), ("us-west-2", 2), ("us-west-2", 3)]

    document = plan_json(folder)
    assert stray_deletes(document) == [("us-west-2", 1), ("us-west-2", 2), ("us-west-2", 3)]
    [create] = [c for c in document["changes"] if c["action"] == "create"]
    assert (create["region"], create["expected_version"], create["align"]["fillers"]) == (
        "us-west-2", 4, 0)
    shown = invoke(folder, "plan")
    assert "delete v2 (a filler an apply left behind)" in shown.stdout

    rerun = invoke(folder, "apply", "--yes")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert proxy.count(operation=PUBLISH) == 1
    assert_converged(folder, moto_url)


def test_a_plan_while_another_apply_holds_the_lock_leaves_its_fillers(
        tmp_path: Path, proxy: faultproxy.FaultProxy, moto_url: str) -> None:
    """Fillers exist while an apply holds the lock (held at its first Lambda call): a plan
    then plans no stray_filler delete and warns naming the lock's holder; that apply, once
    let go, deletes them itself."""
    folder = project(tmp_path, moto_url)
    killed_after_three_fillers(folder, proxy)
    rule = faultproxy.hold(forward=False, operation="ListLayerVersions")
    proxy.add(rule)
    holding = Cli(folder, "apply", "--yes")
    assert isinstance(rule.action, faultproxy.Hold)
    rule.action.wait_arrived()

    document = plan_json(folder)
    assert stray_deletes(document) == []
    shown = invoke(folder, "plan")
    assert "an apply holds the state lock" in shown.stdout
    assert f"pid {holding.process.pid}" in shown.stdout

    rule.action.release()
    assert holding.wait() == 0, holding.stderr
    assert_converged(folder, moto_url)


def test_a_refused_grant_after_fillers_deletes_them(
        tmp_path: Path, proxy: faultproxy.FaultProxy, moto_url: str) -> None:
    """us-west-2's new v4 cannot be shared (AddLayerVersionPermission refused): the apply
    fails, its three fillers are deleted all the same, and the rerun adopts v4 and shares it
    without publishing again."""
    folder = project(tmp_path, moto_url)
    proxy.add(faultproxy.reject(status=403, code="AccessDeniedException",
                                operation="AddLayerVersionPermission", region="us-west-2"))
    failed = invoke(folder, "apply", "--yes")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "granting it to account" in failed.stderr
    assert fillers_left(moto_url) == []
    assert [number for number, _ in live(moto_url, "us-west-2")] == [4]

    proxy.clear()
    rerun = invoke(folder, "apply", "--yes")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert proxy.count(operation=PUBLISH) == 0
    assert_converged(folder, moto_url)


def test_refused_filler_deletes_are_left_to_the_next_plan(
        tmp_path: Path, proxy: faultproxy.FaultProxy, moto_url: str) -> None:
    """Lambda refuses every delete in us-west-2: v4 is published and recorded, the apply
    fails saying the fillers are left for the next plan; that plan deletes them as
    stray_filler and the rerun leaves none."""
    folder = project(tmp_path, moto_url)
    proxy.add(faultproxy.reject(status=500, code="ServiceException",
                                operation="DeleteLayerVersion", region="us-west-2"))
    failed = invoke(folder, "apply", "--yes")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "the next plan deletes what is left (reason stray_filler)" in failed.stderr
    assert fillers_left(moto_url) == [("us-west-2", 1), ("us-west-2", 2), ("us-west-2", 3)]

    proxy.clear()
    assert stray_deletes(plan_json(folder)) == [
        ("us-west-2", 1), ("us-west-2", 2), ("us-west-2", 3)]
    rerun = invoke(folder, "apply", "--yes")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert proxy.count(operation=PUBLISH) == 0
    assert_converged(folder, moto_url)


def test_a_refused_upload_burns_no_number(
        tmp_path: Path, proxy: faultproxy.FaultProxy, moto_url: str) -> None:
    """Through the artifact bucket, the upload comes before any filler: refused in
    us-west-2, that region published nothing, and the rerun lands it on v4 with three
    fillers (not v7), aligned with us-east-1 without republishing there."""
    buckets = {"us-east-1": "zips-east", "us-west-2": "zips-west"}
    for region, bucket in buckets.items():
        s3 = boto3.client("s3", region_name=region, endpoint_url=moto_url)
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            # The stubs list the region names as literals; these are strings from a table.
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration=cast(
                "CreateBucketConfigurationTypeDef", {"LocationConstraint": region}))
    extra = "artifact_bucket:\n" + "".join(f"  {region}: {bucket}\n"
                                           for region, bucket in buckets.items())
    folder = project(tmp_path, moto_url, extra=extra)
    text = (folder / "layers.yaml").read_text().replace(
        "    content:", "    upload: s3\n    content:")
    (folder / "layers.yaml").write_text(text)
    proxy.add(faultproxy.reject(status=403, code="AccessDenied", operation="PutObject",
                                region="us-west-2"))
    failed = invoke(folder, "apply", "--yes")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert proxy.count(operation=PUBLISH, region="us-west-2") == 0
    assert live(moto_url, "us-west-2") == []

    proxy.clear()
    rerun = invoke(folder, "apply", "--yes")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert proxy.count(operation=PUBLISH, region="us-east-1") == 0
    assert proxy.count(operation=PUBLISH, region="us-west-2") == 4
    assert "not the align_versions target" not in rerun.stdout + rerun.stderr
    assert_converged(folder, moto_url)
