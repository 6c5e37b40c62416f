"""End to end, a layer vendor's release: the installed `reconcile` CLI against one moto
server, many layers in many regions with align_versions and sharing, retention keeping what a
function uses, and the Lambda behaviour alignment relies on (numbers are never reused)."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import boto3
import faultproxy
import pytest
from clirun import invoke, plan_json, run

REGIONS = ("us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-central-1",
           "ap-south-1", "ap-northeast-1")
LAYERS = tuple(f"lib{number:02d}" for number in range(12))
FILLER = "reconcile filler for align_versions; deleted by the apply that made it"
PARTNER = "111122223333"


def small_zip(text: str) -> bytes:
    """A one-file zip, for versions published outside reconcile."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("python/x.py", text)
    return buffer.getvalue()


_CLIENTS: dict[tuple[str, str], Any] = {}


def lambda_client(region: str) -> Any:
    """One Lambda client per region and server (making a client costs more than a call)."""
    key = (os.environ["AWS_ENDPOINT_URL"], region)
    if key not in _CLIENTS:
        _CLIENTS[key] = boto3.client("lambda", region_name=region)
    return _CLIENTS[key]


def live(layer: str, region: str) -> list[dict[str, object]]:
    """The versions moto holds for `layer` in `region`, lowest first."""
    client = lambda_client(region)
    listed = client.list_layer_versions(LayerName=layer)["LayerVersions"]
    return sorted(listed, key=lambda item: int(str(item["Version"])))


def statement_ids(layer: str, region: str, version: int) -> list[str]:
    """The statement IDs of a version's policy (none without one)."""
    client = lambda_client(region)
    try:
        policy = client.get_layer_version_policy(LayerName=layer, VersionNumber=version)
    except client.exceptions.ResourceNotFoundException:
        return []
    return sorted(statement["Sid"] for statement in json.loads(policy["Policy"])["Statement"])


def aligned_project(tmp_path: Path, *, names: tuple[str, ...], regions: tuple[str, ...],
                    defaults: str = "") -> Path:
    """One one-file folder layer per name, in `regions`, aligned, with `defaults`."""
    layers = []
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.py").write_text(f"NAME = {name!r}\n")
        layers.append(f"  {name}:\n    content: {{path: {name}, prefix: python}}\n")
    (tmp_path / "layers.yaml").write_text(
        f"version: 1\nregion: [{', '.join(regions)}]\nalign_versions: true\n"
        f"defaults:\n  compatible_runtimes: [python3.12]\n{defaults}layers:\n"
        + "".join(layers))
    return tmp_path


def fleet_project(tmp_path: Path, *, share: str) -> Path:
    """12 folder layers in 8 regions, aligned, shared as `share` says."""
    return aligned_project(tmp_path, names=LAYERS, regions=REGIONS, defaults=share)


def test_fleet_release_aligned_and_shared_in_every_region(tmp_path: Path,
                                                          moto_url: str) -> None:
    """12 layers x 8 regions: with lib00 ahead in two regions before the first apply, every
    region ends at the same number with no filler left, every new version carries the
    grant, lost records are adopted without a second statement, and a removed grant is
    removed."""
    project = fleet_project(tmp_path, share=f"  share:\n    - account: '{PARTNER}'\n")
    for region, count in (("eu-west-1", 3), ("ap-south-1", 1)):
        client = boto3.client("lambda", region_name=region)
        for number in range(count):
            client.publish_layer_version(LayerName="lib00",
                                         Content={"ZipFile": small_zip(f"v{number}")})

    document = plan_json(project)
    lib00 = {c["region"]: c for c in document["changes"] if c["layer"] == "lib00"}
    assert {c["align"]["target"] for c in lib00.values()} == {4}
    assert lib00["us-east-1"]["align"]["fillers"] == 3
    assert lib00["ap-south-1"]["align"]["fillers"] == 2
    assert lib00["eu-west-1"]["align"]["fillers"] == 0

    applied = invoke(project, "apply", "--yes", "--parallelism", "8")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    for name in LAYERS:
        latest = {region: live(name, region)[-1] for region in REGIONS}
        assert {int(str(item["Version"])) for item in latest.values()} == (
            {4} if name == "lib00" else {1}), name
        for region, item in latest.items():
            assert statement_ids(name, region, int(str(item["Version"]))) == [
                f"reconcile-account-{PARTNER}"]
    for region in REGIONS:
        assert all(item.get("Description") != FILLER for item in live("lib00", region))
    assert [int(str(item["Version"])) for item in live("lib00", "us-east-1")] == [4]

    # The records lost (as after a crash between grant and record) and lib02 no longer
    # shared: the plan adopts every version without a second grant, and lib02's eight
    # latest versions lose their statement in `grant` changes, nothing published.
    (project / "layers.lock.json").unlink()
    text = (project / "layers.yaml").read_text().replace(
        "  lib02:\n    content:", "  lib02:\n    share: []\n    content:")
    (project / "layers.yaml").write_text(text)
    document = plan_json(project)
    by_action: dict[str, set[str]] = {}
    for change in document["changes"]:
        by_action.setdefault(change["action"], set()).add(change["layer"])
    assert by_action == {"grant": {"lib02"}, "noop": set(LAYERS) - {"lib02"}}
    assert all(c["record"] for c in document["changes"] if c["action"] == "noop")
    assert document["summary"]["grant"] == len(REGIONS)
    assert invoke(project, "apply", "--yes", "--parallelism", "8").returncode == 0
    assert all(statement_ids("lib02", region, 1) == [] for region in REGIONS)
    assert statement_ids("lib01", "eu-west-1", 1) == [f"reconcile-account-{PARTNER}"]
    clean = invoke(project, "plan", "--detailed-exitcode")
    assert clean.returncode == 0, clean.stdout


def test_retention_keeps_what_a_function_uses(tmp_path: Path, moto_url: str) -> None:
    """retain: 2 after several publishes deletes exactly the versions outside the two
    newest, keeping the one a function's published version uses; the plan names it."""
    client = boto3.client("lambda", region_name="us-east-1")
    for number in range(3):
        client.publish_layer_version(LayerName="tools",
                                     Content={"ZipFile": small_zip(f"old {number}")})
    role = boto3.client("iam").create_role(
        RoleName="fn", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17",
                                                           "Statement": []}))["Role"]["Arn"]
    client.create_function(
        FunctionName="api", Runtime="python3.12", Role=role, Handler="x.handler",
        Code={"ZipFile": small_zip("def handler(e, c): pass")}, Publish=True,
        Layers=["arn:aws:lambda:us-east-1:123456789012:layer:tools:1"])
    client.update_function_configuration(FunctionName="api", Layers=[])
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "t.py").write_text("T = 1\n")
    (tmp_path / "layers.yaml").write_text(
        "version: 1\nregion: us-east-1\nlayers:\n  tools:\n    content: {path: tools}\n"
        "    retain: 2\n")

    document = plan_json(project := tmp_path)
    deletes = [c for c in document["changes"] if c["action"] == "delete"]
    assert [c["version"] for c in deletes] == [2]
    assert all(c["current"]["code_size"] > 0 for c in deletes)
    assert any("used by function api:1" in note for note in document["changes"][0]["notes"])
    applied = invoke(project, "apply", "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert [int(str(item["Version"])) for item in live("tools", "us-east-1")] == [1, 3, 4]

    (tmp_path / "tools" / "t.py").write_text("T = 2\n")
    assert invoke(project, "apply", "--yes").returncode == 0
    # v5 and v4 are the two newest; v3 goes; v1 stays for the function.
    assert [int(str(item["Version"])) for item in live("tools", "us-east-1")] == [1, 4, 5]


def test_lambda_never_reuses_a_deleted_version_number(moto_url: str) -> None:
    """The assumption align_versions rests on: after the latest version is deleted, the
    next publish gets a new number, never the deleted one."""
    client = boto3.client("lambda", region_name="eu-west-1")
    for number in range(3):
        client.publish_layer_version(LayerName="pin", Content={"ZipFile": small_zip(str(number))})
    client.delete_layer_version(LayerName="pin", VersionNumber=3)
    client.delete_layer_version(LayerName="pin", VersionNumber=2)
    again = client.publish_layer_version(LayerName="pin", Content={"ZipFile": small_zip("x")})
    assert again["Version"] == 4


def test_plan_is_quiet_about_storage_when_the_endpoint_cannot_tell(
        tmp_path: Path, moto_url: str) -> None:
    """moto has no GetAccountSettings: the plan still succeeds, without a storage warning."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "a.py").write_text("A = 1\n")
    (tmp_path / "layers.yaml").write_text(
        f"version: 1\nregion: us-east-1\nlayers:\n  a:\n    content: {{path: a}}\n"
        f"    share:\n      - account: '{PARTNER}'\n")
    document = plan_json(tmp_path)
    assert document["warnings"] == []
    assert document["changes"][0]["action"] == "create"


def test_a_region_whose_publishes_fail_blocks_no_other(tmp_path: Path, moto_url: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Publishes signed for eu-west-1 fail for good (503 at the proxy): the other regions
    land and are recorded, the summary names the region, exit 1; the rerun publishes only
    eu-west-1's layers, at the number the others have."""
    regions = ("us-east-1", "eu-west-1", "ap-south-1")
    names = ("alpha", "beta", "gamma")
    aligned_project(tmp_path, names=names, regions=regions)
    with faultproxy.running(moto_url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        proxy.add(faultproxy.reject(status=503, code="ServiceUnavailableException",
                                    operation="PublishLayerVersion", region="eu-west-1"))
        failed = invoke(tmp_path, "apply", "--yes", "--format", "json")
        assert failed.returncode == 1, failed.stdout + failed.stderr
        report = json.loads(failed.stdout)
        assert {(item["layer"], item["region"]) for item in report["published"]} == {
            (name, region) for name in names for region in ("us-east-1", "ap-south-1")}
        assert {item["region"] for item in report["failed"] + report["not_attempted"]} == {
            "eu-west-1"}
        assert "eu-west-1" in failed.stderr
        lock = json.loads((tmp_path / "layers.lock.json").read_text())
        assert "eu-west-1" not in json.dumps(lock)

        proxy.clear()
        rerun = invoke(tmp_path, "apply", "--yes")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        publishes = [call for call in proxy.calls if call.operation == "PublishLayerVersion"]
        assert sorted(call.region for call in publishes) == ["eu-west-1"] * len(names)
        assert proxy.errors == []
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    for name in names:
        assert {int(str(live(name, region)[-1]["Version"])) for region in regions} == {1}


def test_max_rps_holds_per_region_over_every_second_of_a_fleet_apply_and_plan(
        tmp_path: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No region sees more than --max-rps calls plus the burst in any 1 s, measured at the
    proxy by signing region, while the pool works on every region at once (without the limit
    this fleet reaches 11 calls/s per region on a 2-core machine). The installed command runs
    as a process of its own: the proxy stamps each call's arrival in this process, and a CLI
    run here would delay that stamp by whole switch intervals under load (a call counted in
    the next second: 10 in one run)."""
    regions = ("us-east-1", "eu-west-1", "ap-south-1")
    names = tuple(f"rate{number:02d}" for number in range(10))
    aligned_project(tmp_path, names=names, regions=regions)
    limit, burst = 6, 3  # burst: reconciler.ratelimit.DEFAULT_BURST
    with faultproxy.running(moto_url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        applied = run(tmp_path, "apply", "--yes", "--max-rps", str(limit), "--parallelism", "8")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        planned = run(tmp_path, "plan", "--max-rps", str(limit), "--parallelism", "8")
        assert planned.returncode == 0, planned.stderr
        for region in regions:
            assert proxy.count(operation="PublishLayerVersion", region=region) == len(names)
            assert proxy.peak_rate(region=region) <= limit + burst, region
        assert proxy.errors == []
