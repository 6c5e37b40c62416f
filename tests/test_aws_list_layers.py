"""How the adapter finds each layer's latest version in few calls: ListLayers pages (which moto
does not paginate, so a Stubber plays them), stopping early once every asked layer was seen,
and switching to one ListLayerVersions per layer when the account holds far more layers than
the manifest; and, against moto, that ListLayers agrees with ListLayerVersions."""

from __future__ import annotations

import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.stub
import pytest

from reconciler import aws, model

REGION = "us-east-1"
ARN = "arn:aws:lambda:us-east-1:123456789012:layer:{}:{}"


def listed(name: str, version: int) -> dict[str, Any]:
    """One ListLayers item whose latest version is `version`."""
    return {"LayerName": name, "LayerArn": ARN.format(name, "").rstrip(":"),
            "LatestMatchingVersion": {"LayerVersionArn": ARN.format(name, version),
                                      "Version": version, "Description": f"{name} v{version}"}}


@pytest.fixture
def stubbed(aws_isolated: None, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[tuple[aws.Boto3LayerStore, botocore.stub.Stubber]]:
    """A store whose us-east-1 client answers from a Stubber (an endpoint nothing listens
    on behind it); every queued answer must be used."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", REGION),
                        ("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")):
        monkeypatch.setenv(name, value)
    store = aws.Boto3LayerStore()
    with botocore.stub.Stubber(store.client(REGION)) as stubber:
        yield store, stubber
        stubber.assert_no_pending_responses()


def test_pages_until_every_asked_layer_is_seen(
        stubbed: tuple[aws.Boto3LayerStore, botocore.stub.Stubber]) -> None:
    """Two pages give both layers; paging stops there although a marker remains."""
    store, stubber = stubbed
    stubber.add_response("list_layers", {"Layers": [listed("a", 3), listed("other", 1)],
                                         "NextMarker": "m1"}, {"MaxItems": 50})
    stubber.add_response("list_layers", {"Layers": [listed("b", 7)], "NextMarker": "m2"},
                         {"MaxItems": 50, "Marker": "m1"})
    observed = store.latest_versions(region=REGION, layer_names=["a", "b"])
    assert observed.calls == 2
    assert {name: v.version if v else None for name, v in observed.latest.items()} == {
        "a": 3, "b": 7}
    latest_a = observed.latest["a"]
    assert latest_a is not None and latest_a.settings.description == "a v3"


def test_a_layer_on_no_page_has_no_version(
        stubbed: tuple[aws.Boto3LayerStore, botocore.stub.Stubber]) -> None:
    """After the last page, an asked layer that was never listed has no version."""
    store, stubber = stubbed
    stubber.add_response("list_layers", {"Layers": [listed("a", 1)]}, {"MaxItems": 50})
    observed = store.latest_versions(region=REGION, layer_names=["a", "new"])
    assert observed.latest["new"] is None and observed.calls == 1


def test_many_foreign_layers_switch_to_one_call_per_layer(
        stubbed: tuple[aws.Boto3LayerStore, botocore.stub.Stubber]) -> None:
    """A first page full of other layers (with more to come) means paging would cost more
    than asking each of ours: the rest are read with ListLayerVersions, and it says so."""
    store, stubber = stubbed
    stubber.add_response("list_layers", {"Layers": [listed(f"x{i}", 1) for i in range(50)],
                                         "NextMarker": "m1"}, {"MaxItems": 50})
    stubber.add_response("list_layer_versions", {"LayerVersions": [
        {"LayerVersionArn": ARN.format("a", 2), "Version": 2}]},
        {"LayerName": "a", "MaxItems": 50})
    stubber.add_response("list_layer_versions", {"LayerVersions": []},
                         {"LayerName": "b", "MaxItems": 50})
    observed = store.latest_versions(region=REGION, layer_names=["a", "b"])
    assert observed.calls == 3
    assert "ListLayerVersions for 2 layer(s)" in observed.how
    latest_a = observed.latest["a"]
    assert latest_a is not None and latest_a.version == 2
    assert observed.latest["b"] is None


def test_list_layers_agrees_with_list_layer_versions(moto_url: str, tmp_path: Path) -> None:
    """Against moto, the latest found through ListLayers equals ListLayerVersions' for every
    layer, and a layer never published is None."""
    zip_path = tmp_path / "a.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("python/a.py", "A = 1\n")
    store = aws.Boto3LayerStore()
    settings = model.Settings.normalised(description="d", compatible_runtimes=["python3.12"],
                                         compatible_architectures=None, license_info="MIT")
    for name, count in (("one", 1), ("two", 3)):
        for _ in range(count):
            store.publish(region=REGION, layer_name=name, settings=settings,
                          zip_path=zip_path)
    observed = store.latest_versions(region=REGION, layer_names=["one", "two", "none"])
    for name in ("one", "two", "none"):
        assert observed.latest[name] == store.latest_version(region=REGION, layer_name=name)
