"""The one contract of ports.LayerStore, run against every implementation: the boto3 store
on the real moto server, and the in-memory fake of the tests (so that the fake, which the
planner and apply tests trust, cannot drift from Lambda).

Each test states what Lambda does; a `World` sets up what a test needs around the store
(an S3 object to publish from, a function that uses a layer) the way each one allows.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import fakes
import pytest

from reconciler import aws, errors, model, ports

REGION = "us-east-1"
OTHER_REGION = "eu-west-1"
LAYER = "shared-utils"
SETTINGS = model.Settings.normalised(
    description="Shared helpers", compatible_runtimes=["python3.13", "python3.12"],
    compatible_architectures=["x86_64", "arm64"], license_info="MIT")
PARTNER = model.Grant(kind="account", principal="210987654321")
BUCKET = "layer-artifacts"


@dataclass
class World:
    """One LayerStore implementation and the means to set up what Lambda would see."""

    store: ports.LayerStore
    artifacts: ports.ArtifactStore
    # region, function name, layer version ARNs: a function whose $LATEST and version 1
    # use those layers (as CreateFunction with Publish=True makes it).
    use_layers: Callable[[str, str, tuple[str, ...]], None]
    # Where a version's Content.Location leads, path -> zip bytes (see _ZipServer).
    served: dict[str, bytes] = field(default_factory=dict)


class _ZipServer(http.server.ThreadingHTTPServer):
    """A loopback HTTP server of zips, standing in for the presigned S3 URL that Lambda's
    GetLayerVersion answers with (moto's Content.Location is an s3:// URL)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = files.get(self.path.split("?")[0])
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *_: Any) -> None:
                return None

        super().__init__(("127.0.0.1", 0), Handler)


def _fake_world() -> World:
    fake = fakes.FakeLayerStore()

    def use_layers(region: str, function: str, arns: tuple[str, ...]) -> None:
        fake.functions.setdefault(region, []).extend(
            [(f"{function}:$LATEST", arns), (f"{function}:1", arns)])

    return World(store=fake, artifacts=fake.objects, use_layers=use_layers)


def _moto_world(server: _ZipServer) -> World:
    # No rate limit: the contract publishes dozens of versions (ratelimit has its own tests).
    store = aws.Boto3LayerStore(max_rps=None)
    host, port = str(server.server_address[0]), int(server.server_address[1])

    def to_loopback(parsed: dict[str, Any], **_: Any) -> None:
        content = parsed.get("Content")
        if content and "Location" in content:
            name = parsed["LayerVersionArn"].split(":")[-2]
            content["Location"] = f"http://{host}:{port}/{name}/{parsed['Version']}.zip"

    store.client(REGION).meta.events.register("after-call.lambda.GetLayerVersion",
                                              to_loopback)
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    role = boto3.client("iam").create_role(
        RoleName="fn", AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": []}))["Role"]["Arn"]

    def use_layers(region: str, function: str, arns: tuple[str, ...]) -> None:
        boto3.client("lambda", region_name=region).create_function(
            FunctionName=function, Runtime="python3.12", Role=role, Handler="x.handler",
            Code={"ZipFile": _zip_bytes({"x.py": b"def handler(e, c): pass\n"})},
            Publish=True, Layers=list(arns))

    return World(store=store, artifacts=store, use_layers=use_layers, served=server.files)


@pytest.fixture(params=["fake", "boto3-moto"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    """Each implementation of the port, on an empty account."""
    if request.param == "fake":
        yield _fake_world()
        return
    request.getfixturevalue("moto_url")
    server = _ZipServer({})
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield _moto_world(server)
    finally:
        server.shutdown()
        server.server_close()


def _zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def zips(tmp_path: Path) -> list[Path]:
    """Three different layer zips."""
    made = []
    for number in range(3):
        path = tmp_path / f"layer{number}.zip"
        source = f"VALUE = {number}\n".encode() * (number + 1)
        path.write_bytes(_zip_bytes({"python/util.py": source}))
        made.append(path)
    return made


def code_sha256(data: bytes) -> str:
    """What Lambda reports as CodeSha256: base64 of the SHA-256 of the zip's bytes."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def arn(name: str, version: int, region: str = REGION) -> str:
    """The LayerVersionArn of `name`'s `version` in the test account."""
    return f"arn:aws:lambda:{region}:{fakes.ACCOUNT}:layer:{name}:{version}"


def publish(world: World, zip_path: Path, *, layer: str = LAYER, region: str = REGION,
            settings: model.Settings = SETTINGS) -> model.RemoteVersion:
    """Publish `zip_path` as the next version of `layer`."""
    return world.store.publish(region=region, layer_name=layer, settings=settings,
                               zip_path=zip_path)


# --- publish and read back ---------------------------------------------------------------


def test_publish_returns_the_version_with_its_code(world: World, zips: list[Path]) -> None:
    """A publish returns version 1, its ARN, its settings, CodeSha256 and CodeSize."""
    assert publish(world, zips[0]) == model.RemoteVersion(
        version=1, layer_version_arn=arn(LAYER, 1), settings=SETTINGS,
        code_sha256=code_sha256(zips[0].read_bytes()), code_size=zips[0].stat().st_size)


def test_settings_read_back_normalised(world: World, zips: list[Path]) -> None:
    """Settings given in any order read back sorted, as the listing reports them."""
    raw = model.Settings(description="d", compatible_runtimes=("python3.13", "python3.12"),
                         compatible_architectures=("x86_64", "arm64"), license_info="")
    published = publish(world, zips[0], settings=raw)
    latest = world.store.latest_version(region=REGION, layer_name=LAYER)
    expected = model.Settings.normalised(
        description="d", compatible_runtimes=list(raw.compatible_runtimes),
        compatible_architectures=list(raw.compatible_architectures), license_info=None)
    assert latest is not None
    assert (published.settings, latest.settings) == (expected, expected)


def test_a_layer_never_published_has_no_versions(world: World) -> None:
    """An unknown layer has no latest and no versions; deleting one of its versions or a
    statement of one is no error, and its policy has no statements."""
    assert world.store.latest_version(region=REGION, layer_name="nothing") is None
    assert world.store.all_versions(region=REGION, layer_name="nothing") == []
    assert world.store.versions_above(region=REGION, layer_name="nothing", version=0) == []
    world.store.delete_version(region=REGION, layer_name="nothing", version=1)
    world.store.remove_permission(region=REGION, layer_name="nothing", version=1,
                                  statement_id=PARTNER.statement_id)
    assert world.store.policy_statements(region=REGION, layer_name="nothing",
                                         version=1) == frozenset()


def test_latest_version_is_the_highest_without_code(world: World, zips: list[Path]) -> None:
    """After two publishes the latest is version 2, listed without CodeSha256."""
    publish(world, zips[0])
    publish(world, zips[1])
    assert world.store.latest_version(region=REGION, layer_name=LAYER) == model.RemoteVersion(
        version=2, layer_version_arn=arn(LAYER, 2), settings=SETTINGS)


def test_latest_versions_names_every_asked_layer(world: World, zips: list[Path]) -> None:
    """latest_versions maps each asked layer to its latest (no code), None when it has none."""
    publish(world, zips[0], layer="a")
    publish(world, zips[1], layer="a")
    publish(world, zips[2], layer="b")
    publish(world, zips[0], layer="not-asked")
    observed = world.store.latest_versions(region=REGION, layer_names=["a", "b", "none"])
    assert observed.latest == {
        "a": model.RemoteVersion(version=2, layer_version_arn=arn("a", 2), settings=SETTINGS),
        "b": model.RemoteVersion(version=1, layer_version_arn=arn("b", 1), settings=SETTINGS),
        "none": None,
    }
    assert observed.calls >= 1


def test_all_versions_reads_every_page_lowest_first(world: World, zips: list[Path]) -> None:
    """More versions than one ListLayerVersions page (50) are all listed, lowest first."""
    for number in range(aws.PAGE_SIZE + 2):
        publish(world, zips[number % 3])
    listed = world.store.all_versions(region=REGION, layer_name=LAYER)
    assert [item.version for item in listed] == list(range(1, aws.PAGE_SIZE + 3))
    assert all(item.code_sha256 is None for item in listed)


def test_with_code_fills_code_sha256_and_size(world: World, zips: list[Path]) -> None:
    """with_code adds the version's CodeSha256 and CodeSize to a listed version."""
    publish(world, zips[0])
    publish(world, zips[1])
    listed = world.store.all_versions(region=REGION, layer_name=LAYER)[0]
    assert world.store.with_code(region=REGION, layer_name=LAYER, version=listed) == (
        model.RemoteVersion(version=1, layer_version_arn=arn(LAYER, 1), settings=SETTINGS,
                            code_sha256=code_sha256(zips[0].read_bytes()),
                            code_size=zips[0].stat().st_size))


def test_with_code_of_a_missing_version_is_not_found(world: World, zips: list[Path]) -> None:
    """with_code of a version that does not exist is an AwsError of ResourceNotFound."""
    publish(world, zips[0])
    missing = model.RemoteVersion(version=7, layer_version_arn=arn(LAYER, 7),
                                  settings=SETTINGS)
    with pytest.raises(errors.AwsError) as raised:
        world.store.with_code(region=REGION, layer_name=LAYER, version=missing)
    assert raised.value.aws_code == "ResourceNotFoundException"


def test_versions_above_come_with_code_lowest_first(world: World, zips: list[Path]) -> None:
    """versions_above(1) is every later version, lowest first, each with its CodeSha256."""
    for path in zips:
        publish(world, path)
    above = world.store.versions_above(region=REGION, layer_name=LAYER, version=1)
    assert [(item.version, item.code_sha256) for item in above] == [
        (2, code_sha256(zips[1].read_bytes())), (3, code_sha256(zips[2].read_bytes()))]


def test_regions_are_separate(world: World, zips: list[Path]) -> None:
    """A version published in one region is not seen in another."""
    publish(world, zips[0])
    assert world.store.latest_version(region=OTHER_REGION, layer_name=LAYER) is None
    assert publish(world, zips[1], region=OTHER_REGION).layer_version_arn == arn(
        LAYER, 1, OTHER_REGION)


def test_publish_from_s3_reads_the_object(world: World, zips: list[Path]) -> None:
    """A publish from an S3 object has that object's CodeSha256 and size."""
    location = model.S3Object(bucket=BUCKET, key="lib/layer.zip")
    data = zips[1].read_bytes()
    world.artifacts.upload_file(region=REGION, location=location, zip_path=zips[1],
                                content_sha256=hashlib.sha256(data).hexdigest())
    published = world.store.publish(region=REGION, layer_name=LAYER, settings=SETTINGS,
                                    zip_path=None, s3_object=location)
    assert (published.version, published.code_sha256, published.code_size) == (
        1, code_sha256(data), len(data))


def test_download_code_writes_the_versions_zip(world: World, zips: list[Path],
                                               tmp_path: Path) -> None:
    """download_code writes the version's zip and returns its size; past max_bytes it is
    refused."""
    publish(world, zips[2])
    world.served[f"/{LAYER}/1.zip"] = zips[2].read_bytes()
    size = zips[2].stat().st_size
    target = tmp_path / "down.zip"
    assert world.store.download_code(region=REGION, layer_name=LAYER, version=1,
                                     destination=target, max_bytes=size) == size
    assert target.read_bytes() == zips[2].read_bytes()
    with pytest.raises(errors.AwsError):
        world.store.download_code(region=REGION, layer_name=LAYER, version=1,
                                  destination=tmp_path / "small.zip", max_bytes=size - 1)


# --- delete --------------------------------------------------------------------------------


def test_delete_version_removes_it_and_numbers_never_go_back(world: World,
                                                             zips: list[Path]) -> None:
    """A deleted version is gone from every read; deleting it again is no error; after
    deleting every version the next publish takes the next number, never an old one."""
    publish(world, zips[0])
    publish(world, zips[1])
    world.store.delete_version(region=REGION, layer_name=LAYER, version=2)
    world.store.delete_version(region=REGION, layer_name=LAYER, version=2)
    assert [item.version for item in world.store.all_versions(
        region=REGION, layer_name=LAYER)] == [1]
    latest = world.store.latest_version(region=REGION, layer_name=LAYER)
    assert latest is not None
    assert latest.version == 1
    world.store.delete_version(region=REGION, layer_name=LAYER, version=1)
    assert world.store.latest_version(region=REGION, layer_name=LAYER) is None
    assert world.store.latest_versions(region=REGION, layer_names=[LAYER, "x"]).latest == {
        LAYER: None, "x": None}
    assert publish(world, zips[2]).version == 3


# --- permissions ---------------------------------------------------------------------------


def test_a_version_without_a_policy_has_no_statements(world: World, zips: list[Path]) -> None:
    """policy_statements of a version never granted is empty."""
    publish(world, zips[0])
    assert world.store.policy_statements(region=REGION, layer_name=LAYER,
                                         version=1) == frozenset()


def test_add_and_remove_permission(world: World, zips: list[Path]) -> None:
    """A grant adds its statement ID (twice is once); removing it (twice) leaves none."""
    publish(world, zips[0])
    for _ in range(2):
        world.store.add_permission(region=REGION, layer_name=LAYER, version=1, grant=PARTNER)
    assert world.store.policy_statements(region=REGION, layer_name=LAYER, version=1) == {
        PARTNER.statement_id}
    for _ in range(2):
        world.store.remove_permission(region=REGION, layer_name=LAYER, version=1,
                                      statement_id=PARTNER.statement_id)
    assert world.store.policy_statements(region=REGION, layer_name=LAYER,
                                         version=1) == frozenset()


def test_policy_of_a_missing_version_is_empty(world: World, zips: list[Path]) -> None:
    """Lambda answers ResourceNotFound alike for no policy and no version: no statements."""
    publish(world, zips[0])
    assert world.store.policy_statements(region=REGION, layer_name=LAYER,
                                         version=5) == frozenset()


def test_granting_a_missing_version_is_not_found(world: World, zips: list[Path]) -> None:
    """add_permission on a version that does not exist is an AwsError of ResourceNotFound."""
    publish(world, zips[0])
    with pytest.raises(errors.AwsError) as raised:
        world.store.add_permission(region=REGION, layer_name=LAYER, version=5, grant=PARTNER)
    assert raised.value.aws_code == "ResourceNotFoundException"


# --- the account ---------------------------------------------------------------------------


def test_function_uses_names_each_configuration(world: World, zips: list[Path]) -> None:
    """function_uses maps each layer version ARN to the functions ($LATEST and published
    versions) that use it, in its region only."""
    first, second = publish(world, zips[0]), publish(world, zips[1], layer="other")
    world.use_layers(REGION, "api", (first.layer_version_arn, second.layer_version_arn))
    assert world.store.function_uses(region=REGION) == {
        first.layer_version_arn: ("api:$LATEST", "api:1"),
        second.layer_version_arn: ("api:$LATEST", "api:1")}
    assert world.store.function_uses(region=OTHER_REGION) == {}


def test_code_storage_is_unknown_or_within_the_quota(world: World, zips: list[Path]) -> None:
    """code_storage is None (the endpoint will not say) or a use within a positive quota."""
    publish(world, zips[0])
    storage = world.store.code_storage(region=REGION)
    assert storage is None or (0 <= storage.used <= storage.limit and storage.limit > 0)


def test_account_id_is_the_callers_account(world: World) -> None:
    """account_id is the account of the credentials (moto's and the fake's 123456789012)."""
    assert world.store.account_id() == fakes.ACCOUNT
