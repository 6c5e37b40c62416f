"""The one contract of ports.FunctionStore, run against every implementation: the boto3 store
on the real moto server (functions made in two regions, with real layer versions) and the
in-memory fake of the tests, so that the fake the consumer planner and apply tests trust
cannot drift from Lambda.

What moto cannot show (it reports every update Successful at once and ignores RevisionId)
is pinned for the boto3 store through the fault proxy in tests/test_aws_consumers.py.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import boto3
import fakes_consumers
import pytest

from reconciler import aws, errors, model, ports

REGION = "us-east-1"
OTHER_REGION = "eu-west-1"
STACK_TAG = model.CLOUDFORMATION_STACK_TAG


@dataclass
class World:
    """One FunctionStore implementation and the means to set up what Lambda would hold."""

    store: ports.FunctionStore
    # (region, layer name) -> the ARN of a new version of that layer
    layer: Callable[[str, str], str]
    # (region, function name, layer ARNs, tags): a function using those layers
    make: Callable[[str, str, tuple[str, ...], dict[str, str]], None]
    checks_revisions: bool  # moto ignores RevisionId (and reports none)


def _fake_world() -> World:
    fake = fakes_consumers.FakeFunctionStore()
    versions: dict[tuple[str, str], int] = {}

    def layer(region: str, name: str) -> str:
        versions[(region, name)] = versions.get((region, name), 0) + 1
        return (f"arn:aws:lambda:{region}:{fakes_consumers.ACCOUNT}:layer:{name}:"
                f"{versions[(region, name)]}")

    def make(region: str, name: str, layers: tuple[str, ...], tags: dict[str, str]) -> None:
        fake.add(region=region, name=name, layers=layers, tags=tags)

    return World(store=fake, layer=layer, make=make, checks_revisions=True)


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.py", "def handler(event, context):\n    return None\n")
    return buffer.getvalue()


def _moto_world() -> World:
    # No rate limit: the limit has its own tests; these pin what the calls answer.
    store = aws.Boto3FunctionStore(aws.Boto3LayerStore(max_rps=None).clients)
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="fn", AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": []}))["Role"]["Arn"]

    def layer(region: str, name: str) -> str:
        published = boto3.client("lambda", region_name=region).publish_layer_version(
            LayerName=name, Content={"ZipFile": _zip()})
        return str(published["LayerVersionArn"])

    def make(region: str, name: str, layers: tuple[str, ...], tags: dict[str, str]) -> None:
        boto3.client("lambda", region_name=region).create_function(
            FunctionName=name, Runtime="python3.12", Role=role, Handler="x.handler",
            Code={"ZipFile": _zip()}, Layers=list(layers), Tags=tags)

    return World(store=store, layer=layer, make=make, checks_revisions=False)


@pytest.fixture(params=["fake", "boto3-moto"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    """Each implementation of the port, on an empty account."""
    if request.param == "fake":
        yield _fake_world()
        return
    request.getfixturevalue("moto_url")
    yield _moto_world()


def test_a_function_reads_with_its_layers_in_order_and_its_tags(world: World) -> None:
    """function() reports the name, ARN, layer ARNs in their order, a settled update and the
    tags (a CloudFormation stack's tag names the stack)."""
    first, second = world.layer(REGION, "zeta"), world.layer(REGION, "alpha")
    world.make(REGION, "api", (first, second), {"team": "core", STACK_TAG: "orders"})
    config = world.store.function(region=REGION, name="api")
    assert config is not None
    assert (config.name, config.layers, config.update_status) == (
        "api", (first, second), model.UpdateStatus.SUCCESSFUL)
    assert config.arn == fakes_consumers.function_arn(REGION, "api")
    assert config.tags == (("aws:cloudformation:stack-name", "orders"), ("team", "core"))
    assert config.stack == "orders"


def test_a_function_without_layers_or_tags(world: World) -> None:
    """A function using no layer reads with none, and one without tags with no stack."""
    world.make(REGION, "bare", (), {})
    config = world.store.function(region=REGION, name="bare")
    assert config is not None
    assert (config.layers, config.tags, config.stack) == ((), (), None)


def test_a_missing_function_is_none_and_regions_are_separate(world: World) -> None:
    """A name no function has is None; a function of one region is not seen in another."""
    world.make(REGION, "api", (), {})
    assert world.store.function(region=REGION, name="nothing") is None
    assert world.store.function(region=OTHER_REGION, name="api") is None


def test_functions_tagged_carry_every_tag(world: World) -> None:
    """functions_tagged names, sorted, the region's functions carrying every asked tag with
    its value; none for no tags; none in another region."""
    world.make(REGION, "b-worker", (), {"uses": "shared", "env": "prod"})
    world.make(REGION, "a-api", (), {"uses": "shared", "env": "prod", "extra": "x"})
    world.make(REGION, "c-dev", (), {"uses": "shared", "env": "dev"})
    world.make(REGION, "d-none", (), {})
    world.make(OTHER_REGION, "e-elsewhere", (), {"uses": "shared", "env": "prod"})
    wanted = (("env", "prod"), ("uses", "shared"))
    assert world.store.functions_tagged(region=REGION, tags=wanted) == ["a-api", "b-worker"]
    assert world.store.functions_tagged(region=REGION, tags=(("uses", "shared"),)) == [
        "a-api", "b-worker", "c-dev"]
    assert world.store.functions_tagged(region=REGION, tags=()) == []
    assert world.store.functions_tagged(region=OTHER_REGION, tags=wanted) == ["e-elsewhere"]


def test_update_layers_sets_them_in_order_and_settles(world: World) -> None:
    """update_layers replaces the function's layers by the list given, in its order; it
    reads back so, and the wait returns once the update is Successful."""
    old, other = world.layer(REGION, "shared"), world.layer(REGION, "other")
    new = world.layer(REGION, "shared")
    world.make(REGION, "api", (other, old), {})
    before = world.store.function(region=REGION, name="api")
    assert before is not None
    revision = world.store.update_layers(region=REGION, name="api", layers=(other, new),
                                         revision_id=before.revision_id)
    world.store.wait_updated(region=REGION, name="api", timeout=5)
    after = world.store.function(region=REGION, name="api")
    assert after is not None
    assert after.layers == (other, new)
    assert after.revision_id == revision
    if world.checks_revisions:
        assert revision is not None and revision != before.revision_id


def test_update_layers_appends_in_the_given_order(world: World) -> None:
    """A layer appended after the others is last."""
    first, added = world.layer(REGION, "first"), world.layer(REGION, "added")
    world.make(REGION, "api", (first,), {})
    world.store.update_layers(region=REGION, name="api", layers=(first, added),
                              revision_id=None)
    after = world.store.function(region=REGION, name="api")
    assert after is not None
    assert after.layers == (first, added)


def test_updating_one_region_leaves_the_other(world: World) -> None:
    """A function of the same name in another region keeps its layers."""
    here, there = world.layer(REGION, "shared"), world.layer(OTHER_REGION, "shared")
    moved = world.layer(REGION, "shared")
    world.make(REGION, "api", (here,), {})
    world.make(OTHER_REGION, "api", (there,), {})
    world.store.update_layers(region=REGION, name="api", layers=(moved,), revision_id=None)
    elsewhere = world.store.function(region=OTHER_REGION, name="api")
    assert elsewhere is not None
    assert elsewhere.layers == (there,)


def test_a_stale_revision_is_refused_and_nothing_changes(world: World) -> None:
    """An update carrying a RevisionId the function no longer has is errors.RevisionStale,
    and the function keeps its layers."""
    if not world.checks_revisions:
        pytest.skip("moto ignores RevisionId: test_aws_consumers pins it through the proxy")
    old = world.layer(REGION, "shared")
    world.make(REGION, "api", (old,), {})
    read = world.store.function(region=REGION, name="api")
    assert read is not None
    world.store.update_layers(region=REGION, name="api", layers=(),
                              revision_id=read.revision_id)
    with pytest.raises(errors.RevisionStale) as raised:
        world.store.update_layers(region=REGION, name="api", layers=(old,),
                                  revision_id=read.revision_id)
    assert raised.value.aws_code == "PreconditionFailedException"
    after = world.store.function(region=REGION, name="api")
    assert after is not None and after.layers == ()


def test_updating_a_missing_function_is_not_found(world: World) -> None:
    """update_layers of a function that does not exist is an AwsError of ResourceNotFound."""
    with pytest.raises(errors.AwsError) as raised:
        world.store.update_layers(region=REGION, name="nothing", layers=(), revision_id=None)
    assert raised.value.aws_code == "ResourceNotFoundException"
    assert not isinstance(raised.value, errors.OutcomeUnknown)


def test_waiting_on_a_missing_function_is_an_error(world: World) -> None:
    """wait_updated of a function that does not exist is an AwsError, not a wait."""
    with pytest.raises(errors.AwsError, match="gone"):
        world.store.wait_updated(region=REGION, name="nothing", timeout=1)
