"""Consumers end to end: the CLI in process (clirun.invoke) against a moto server, with
functions in two regions. A layer's consumers by name and by tag move to its new version in
place or appended, other layers' order kept, a function that did not opt in untouched, the
parameter per region; a clean plan after; drift repaired; retention deleting what the
consumers left and keeping what a bystander uses; a saved plan applied on another checkout;
the five-layer limit and a missing function as plan errors."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from clirun import invoke, plan_json, valid_plan

REGIONS = ("us-east-1", "eu-west-1")
ROLE = "arn:aws:iam::123456789012:role/consumer"


def _zip(text: str = "def handler(event, context):\n    return None\n") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.py", text)
    return buffer.getvalue()


def lambda_in(region: str) -> Any:
    """A Lambda client of `region` (moto, through AWS_ENDPOINT_URL)."""
    return boto3.client("lambda", region_name=region)


def publish(region: str, name: str, text: str = "OLD = 1\n") -> str:
    """A version of layer `name` published outside reconcile; its ARN."""
    answer = lambda_in(region).publish_layer_version(LayerName=name,
                                                     Content={"ZipFile": _zip(text)})
    return str(answer["LayerVersionArn"])


def make_function(region: str, name: str, layers: list[str],
                  tags: dict[str, str] | None = None) -> None:
    """A function `name` in `region` using `layers`, carrying `tags`."""
    iam = boto3.client("iam", region_name="us-east-1")
    with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
        iam.create_role(RoleName="consumer", AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": []}))
    lambda_in(region).create_function(
        FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="x.handler",
        Code={"ZipFile": _zip()}, Layers=layers, Tags=tags or {})


def retained_project(tmp_path: Path, *, parameter_name: str) -> Path:
    """`shared` v1 in us-east-1 (published outside), used by `api` and `worker`; retain: 1;
    the parameter `parameter_name`; the folder's content changed, so a plan publishes v2."""
    old = publish("us-east-1", "shared")
    make_function("us-east-1", "api", [old])
    make_function("us-east-1", "worker", [old])
    root = tmp_path / "repo"
    (root / "shared").mkdir(parents=True)
    (root / "shared" / "shared.py").write_text("VALUE = 2\n")
    (root / "layers.yaml").write_text(
        "version: 1\nregion: us-east-1\nlayers:\n  shared:\n"
        "    content: {path: shared, prefix: python}\n    retain: 1\n"
        f"    parameter: {parameter_name}\n    consumers:\n      functions: [api, worker]\n")
    return root


def layers_of(region: str, name: str) -> list[str]:
    """The layer ARNs function `name` in `region` uses, in order."""
    found = lambda_in(region).get_function_configuration(FunctionName=name)
    return [layer["Arn"] for layer in found.get("Layers", [])]


def parameter(region: str, name: str) -> str | None:
    """The SSM parameter's value in `region` (None: none)."""
    client = boto3.client("ssm", region_name=region)
    try:
        return str(client.get_parameter(Name=name)["Parameter"]["Value"])
    except client.exceptions.ParameterNotFound:
        return None


def latest(region: str, name: str = "shared") -> str:
    """The latest version ARN of layer `name` in `region`."""
    listed = lambda_in(region).list_layer_versions(LayerName=name)["LayerVersions"]
    return str(max(listed, key=lambda version: version["Version"])["LayerVersionArn"])


def numbers(region: str, name: str = "shared") -> list[int]:
    """The live version numbers of layer `name` in `region`."""
    listed = lambda_in(region).list_layer_versions(LayerName=name)["LayerVersions"]
    return sorted(version["Version"] for version in listed)


def write_project(root: Path, *, layer_extra: str = "", consumers: str = "") -> Path:
    """A checkout with layer `shared` (folder) in both regions, consumed as `consumers`
    says (default: function api by name, functions tagged uses=shared), its parameter named
    in defaults with `{layer}`."""
    (root / "shared").mkdir(parents=True, exist_ok=True)
    (root / "shared" / "shared.py").write_text("VALUE = 2\n")
    consumers = consumers or ("    consumers:\n      functions: [api]\n"
                              "      tags: {uses: shared}\n")
    (root / "layers.yaml").write_text(
        f"version: 1\nregion: [{', '.join(REGIONS)}]\n"
        "defaults:\n  parameter: /layers/{layer}/latest\n"
        "layers:\n  shared:\n    content: {path: shared, prefix: python}\n"
        f"{consumers}{layer_extra}")
    return root


@pytest.fixture
def fleet(tmp_path: Path, moto_url: str) -> dict[str, str]:
    """In us-east-1: `shared` v1 (published outside), layer `other` v1, function `api` on
    [other:1] (named: appended), `worker` tagged uses=shared on [shared:1, other:1] (in
    place, order kept), `bystander` on [shared:1] (not opted in); in eu-west-1 `api` with no
    layers. The ARNs by name."""
    old = publish("us-east-1", "shared")
    other = publish("us-east-1", "other")
    make_function("us-east-1", "api", [other])
    make_function("us-east-1", "worker", [old, other], tags={"uses": "shared"})
    make_function("us-east-1", "bystander", [old])
    make_function("eu-west-1", "api", [])
    return {"old": old, "other": other}


def consumer_rows(document: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(action, region, function or parameter) of a plan document's consumer changes."""
    return {(change["action"], change["region"],
             change.get("function") or change.get("parameter") or "")
            for change in document["changes"]
            if change["action"] in ("update_function", "put_parameter")}


def test_consumers_move_in_every_region_and_the_next_plan_is_clean(
        tmp_path: Path, fleet: dict[str, str]) -> None:
    """By name and by tag, appended and in place (order kept), the bystander untouched,
    the parameter written per region; the plan after apply is clean; a function moved back
    out of band shows as drift and apply puts it back."""
    project = write_project(tmp_path / "repo")
    document = plan_json(project)
    assert consumer_rows(document) == {
        ("update_function", "us-east-1", "api"), ("update_function", "us-east-1", "worker"),
        ("update_function", "eu-west-1", "api"),
        ("put_parameter", "us-east-1", "/layers/shared/latest"),
        ("put_parameter", "eu-west-1", "/layers/shared/latest")}
    text = invoke(project, "plan")
    assert "update function worker: v1 -> the new version" in text.stdout, text.stdout
    applied = invoke(project, "apply", "--yes", "--format", "json")
    assert applied.returncode == 0, applied.stderr
    report = json.loads(applied.stdout)
    assert {(item["region"], item["function"]) for item in report["functions"]} == {
        ("us-east-1", "api"), ("us-east-1", "worker"), ("eu-west-1", "api")}
    new_east, new_west = latest("us-east-1"), latest("eu-west-1")
    assert new_east.endswith(":shared:2") and new_west.endswith(":shared:1")
    assert layers_of("us-east-1", "api") == [fleet["other"], new_east]
    assert layers_of("us-east-1", "worker") == [new_east, fleet["other"]]
    assert layers_of("us-east-1", "bystander") == [fleet["old"]]
    assert layers_of("eu-west-1", "api") == [new_west]
    assert parameter("us-east-1", "/layers/shared/latest") == new_east
    assert parameter("eu-west-1", "/layers/shared/latest") == new_west
    clean = invoke(project, "plan", "--detailed-exitcode")
    assert clean.returncode == 0, clean.stdout + clean.stderr

    lambda_in("us-east-1").update_function_configuration(FunctionName="worker",
                                                         Layers=[fleet["old"]])
    drift = plan_json(project)
    [change] = [change for change in drift["changes"] if change["action"] == "update_function"]
    assert change["reasons"] == ["remote_drift"]
    assert change["layers"]["after"] == [new_east]
    assert invoke(project, "apply", "--yes").returncode == 0
    assert layers_of("us-east-1", "worker") == [new_east]


def test_retention_deletes_what_the_consumers_left_and_keeps_a_bystanders(
        tmp_path: Path, moto_url: str) -> None:
    """retain: 1: v1, used only by the worker this apply moves, is deleted in the same
    apply; v2, which a function that did not opt in uses, is kept."""
    first, second = publish("us-east-1", "shared"), publish("us-east-1", "shared", "X = 2\n")
    make_function("us-east-1", "worker", [first], tags={"uses": "shared"})
    make_function("us-east-1", "bystander", [second])
    project = write_project(tmp_path / "repo", layer_extra="    retain: 1\n",
                            consumers="    consumers:\n      tags: {uses: shared}\n")
    applied = invoke(project, "apply", "--yes", "--region", "us-east-1")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "updated   shared (us-east-1): function worker uses [shared:3]" in applied.stdout
    assert "deleted   shared (us-east-1): v1" in applied.stdout
    assert numbers("us-east-1") == [2, 3]
    assert layers_of("us-east-1", "worker") == [latest("us-east-1")]
    assert layers_of("us-east-1", "bystander") == [second]


@pytest.mark.parametrize("output", ["json", "text"])
def test_a_saved_plan_with_consumers_applies_on_another_checkout(
        tmp_path: Path, fleet: dict[str, str], output: str) -> None:
    """`plan --out` in one checkout, `apply PLANFILE` in a copy: the consumers move there;
    a function that moved since the plan is stale for its change only (not updated, the rest
    applied), and the text output marks it as left out right under the plan it shows."""
    project = write_project(tmp_path / "pr-job")
    plan_file = tmp_path / "plan.json"
    saved = invoke(project, "plan", "--out", str(plan_file))
    assert saved.returncode == 0, saved.stderr
    valid_plan(json.loads(plan_file.read_text()))
    merge_job = tmp_path / "merge-job"
    shutil.copytree(project, merge_job, ignore=shutil.ignore_patterns(".reconcile", "*.json"))
    # `api` in eu-west-1 moves meanwhile.
    lambda_in("eu-west-1").update_function_configuration(FunctionName="api",
                                                         Layers=[publish("eu-west-1", "x")])
    applied = invoke(merge_job, "apply", str(plan_file), "--format", output)
    assert applied.returncode != 0
    if output == "json":
        report = json.loads(applied.stdout)
        assert [(item["region"], item.get("function")) for item in report["not_attempted"]] \
            == [("eu-west-1", "api")]
        assert "stale" in report["not_attempted"][0]["why"]
    else:
        shown, _, outcome = applied.stdout.partition("Left out of this apply")
        assert "function api" in shown  # the fresh plan still lists the change...
        left_out = outcome.splitlines()[1]  # ...and the line under it says it is left out
        assert left_out.startswith("  ! shared (eu-west-1) function api: stale: "), left_out
        assert "not tried shared (eu-west-1) function api: stale" in outcome
    assert layers_of("us-east-1", "worker") == [latest("us-east-1"), fleet["other"]]
    assert layers_of("eu-west-1", "api")[0].endswith(":layer:x:1")
    assert parameter("eu-west-1", "/layers/shared/latest") == latest("eu-west-1")


def test_five_layers_and_a_missing_function_are_plan_errors(
        tmp_path: Path, moto_url: str) -> None:
    """A function that would use six layers, and a named function in no region: each an
    error of the layer, and apply refuses."""
    others = [publish("us-east-1", f"l{number}") for number in range(5)]
    make_function("us-east-1", "full", others)
    project = write_project(tmp_path / "repo", consumers=(
        "    consumers:\n      functions: [full, ghost]\n"))
    result = invoke(project, "plan", "--format", "json")
    document = valid_plan(json.loads(result.stdout))
    messages = [error["message"] for error in document["errors"]]
    assert any("function 'full' in us-east-1 would use 6 layers" in text for text in messages)
    assert any("function 'ghost' is in none of the layer's regions" in text
               for text in messages)
    refused = invoke(project, "apply", "--yes")
    assert refused.returncode != 0
    assert layers_of("us-east-1", "full") == others


def test_a_function_cloudformation_manages_is_a_plan_error_naming_its_stack(
        tmp_path: Path, moto_url: str) -> None:
    """A named function tagged aws:cloudformation:stack-name: a plan error naming the stack;
    with allow_managed it moves."""
    make_function("us-east-1", "managed", [],
                  tags={"aws:cloudformation:stack-name": "orders-stack"})
    project = write_project(tmp_path / "repo", consumers=(
        "    consumers:\n      functions: [managed]\n"))
    refused = invoke(project, "plan", "--region", "us-east-1")
    assert refused.returncode != 0
    assert "CloudFormation stack 'orders-stack'" in refused.stdout + refused.stderr
    write_project(tmp_path / "repo", consumers=(
        "    consumers:\n      functions: [managed]\n      allow_managed: true\n"))
    applied = invoke(project, "apply", "--yes", "--region", "us-east-1")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert layers_of("us-east-1", "managed") == [latest("us-east-1")]
