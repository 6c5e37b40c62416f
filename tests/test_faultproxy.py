"""The fault-injection proxy itself (tests/faultproxy.py), in front of a real moto server: it
forwards and records every call by region and operation, and each rule does what it says to
the calls it matches and to no others."""

from __future__ import annotations

import http.client
import urllib.parse
from collections.abc import Iterator

import boto3
import botocore.config
import botocore.exceptions
import faultproxy
import pytest

EMPTY_ZIP = b"PK\x05\x06" + b"\x00" * 18
NO_RETRIES = botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 1})


@pytest.fixture
def proxy(moto_url: str) -> Iterator[faultproxy.FaultProxy]:
    """A proxy in front of the freshly reset moto server; it must end with no error of its own."""
    with faultproxy.running(moto_url) as running_proxy:
        yield running_proxy
        assert running_proxy.errors == []


def test_calls_are_forwarded_and_recorded_by_region_and_operation(
        proxy: faultproxy.FaultProxy, moto_url: str) -> None:
    """Without rules every call reaches moto; each is recorded with its signing region,
    operation (botocore's name) and status."""
    east = boto3.client("lambda", region_name="us-east-1", endpoint_url=proxy.url)
    west = boto3.client("lambda", region_name="eu-west-1", endpoint_url=proxy.url)

    east.publish_layer_version(LayerName="one", Content={"ZipFile": EMPTY_ZIP})
    west.list_layer_versions(LayerName="one")
    east.get_layer_version(LayerName="one", VersionNumber=1)

    seen = [(call.region, call.operation, call.status, call.key) for call in proxy.calls]
    assert seen == [("us-east-1", "PublishLayerVersion", 201, "one"),
                    ("eu-west-1", "ListLayerVersions", 200, "one"),
                    ("us-east-1", "GetLayerVersion", 200, "one")]
    direct = boto3.client("lambda", region_name="us-east-1", endpoint_url=moto_url)
    assert len(direct.list_layer_versions(LayerName="one")["LayerVersions"]) == 1


def test_a_rule_acts_on_its_first_calls_only(proxy: faultproxy.FaultProxy) -> None:
    """throttle(times=2) answers the first two matching calls with 429 and lets the third
    through; calls of another operation are untouched."""
    client = boto3.client("lambda", region_name="us-east-1", endpoint_url=proxy.url,
                          config=NO_RETRIES)
    proxy.add(faultproxy.throttle(times=2, operation="ListLayerVersions"))

    client.list_layers()
    for _ in range(2):
        with pytest.raises(botocore.exceptions.ClientError) as raised:
            client.list_layer_versions(LayerName="x")
        assert raised.value.response["Error"]["Code"] == "TooManyRequestsException"
    client.list_layer_versions(LayerName="x")

    assert proxy.count(operation="ListLayerVersions", status=429, forwarded=False) == 2
    assert proxy.count(operation="ListLayerVersions", status=200) == 1
    assert proxy.count(operation="ListLayers", status=200) == 1


def test_reset_after_forward_does_the_work_and_resets(
        proxy: faultproxy.FaultProxy, moto_url: str) -> None:
    """A reset rule forwards the publish (moto makes the version) and the client sees its
    connection reset, not a reply."""
    proxy.add(faultproxy.reset_after_forward(operation="PublishLayerVersion"))
    client = boto3.client("lambda", region_name="us-east-1", endpoint_url=proxy.url,
                          config=NO_RETRIES)

    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        client.publish_layer_version(LayerName="one", Content={"ZipFile": EMPTY_ZIP})

    assert proxy.count(operation="PublishLayerVersion", status=None, forwarded=True) == 1
    direct = boto3.client("lambda", region_name="us-east-1", endpoint_url=moto_url)
    assert len(direct.list_layer_versions(LayerName="one")["LayerVersions"]) == 1


def test_reset_is_a_tcp_reset(proxy: faultproxy.FaultProxy) -> None:
    """The reset is an RST (SO_LINGER 0): a raw client reading the reply gets
    ConnectionResetError, not an orderly end of stream."""
    proxy.add(faultproxy.Rule(faultproxy.Reset(forward=False)))
    host, port = proxy.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", "/2018-10-31/layers")
        with pytest.raises(ConnectionResetError):
            connection.getresponse().read()
    finally:
        connection.close()


def test_server_error_after_forward(proxy: faultproxy.FaultProxy, moto_url: str) -> None:
    """server_error_after_forward lets moto do the work and replies 500 ServiceException."""
    proxy.add(faultproxy.server_error_after_forward(operation="PublishLayerVersion"))
    client = boto3.client("lambda", region_name="us-east-1", endpoint_url=proxy.url,
                          config=NO_RETRIES)

    with pytest.raises(botocore.exceptions.ClientError) as raised:
        client.publish_layer_version(LayerName="one", Content={"ZipFile": EMPTY_ZIP})

    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert raised.value.response["Error"]["Code"] == "ServiceException"
    direct = boto3.client("lambda", region_name="us-east-1", endpoint_url=moto_url)
    assert len(direct.list_layer_versions(LayerName="one")["LayerVersions"]) == 1


def test_region_down_fails_only_that_region(proxy: faultproxy.FaultProxy) -> None:
    """region_down answers every call signed for that region with 503, never forwarded;
    another region works."""
    proxy.add(faultproxy.region_down("eu-west-1"))
    west = boto3.client("lambda", region_name="eu-west-1", endpoint_url=proxy.url,
                        config=NO_RETRIES)
    east = boto3.client("lambda", region_name="us-east-1", endpoint_url=proxy.url,
                        config=NO_RETRIES)

    for _ in range(3):
        with pytest.raises(botocore.exceptions.ClientError) as raised:
            west.list_layers()
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    east.list_layers()

    assert proxy.count(region="eu-west-1", status=503, forwarded=False) == 3
    assert proxy.count(region="us-east-1", status=200) == 1


def test_stripped_conditional_header_is_ignored_upstream(proxy: faultproxy.FaultProxy) -> None:
    """With If-None-Match stripped, a conditional PutObject that moto would refuse (412)
    overwrites the object: a store that ignores conditional writes."""
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=proxy.url, config=NO_RETRIES)
    s3.create_bucket(Bucket="state-bucket")
    s3.put_object(Bucket="state-bucket", Key="state/lock.json", Body=b"first")
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        s3.put_object(Bucket="state-bucket", Key="state/lock.json", Body=b"second",
                      IfNoneMatch="*")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412

    proxy.add(faultproxy.strip_headers("If-None-Match", operation="PutObject", key="state/*"))
    s3.put_object(Bucket="state-bucket", Key="state/lock.json", Body=b"second",
                  IfNoneMatch="*")

    assert s3.get_object(Bucket="state-bucket", Key="state/lock.json")["Body"].read() == b"second"
    assert [call.operation for call in proxy.calls] == [
        "CreateBucket", "PutObject", "PutObject", "PutObject", "GetObject"]


def test_s3_objects_round_trip_through_the_proxy(proxy: faultproxy.FaultProxy) -> None:
    """A large PutObject, HeadObject (its Content-Length) and GetObject pass unchanged."""
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=proxy.url, config=NO_RETRIES)
    s3.create_bucket(Bucket="artifacts")
    payload = bytes(range(256)) * 8192  # 2 MiB

    s3.put_object(Bucket="artifacts", Key="layers/a.zip", Body=payload)

    assert s3.head_object(Bucket="artifacts", Key="layers/a.zip")["ContentLength"] == len(payload)
    assert s3.get_object(Bucket="artifacts", Key="layers/a.zip")["Body"].read() == payload
    assert [call.operation for call in proxy.calls] == [
        "CreateBucket", "PutObject", "HeadObject", "GetObject"]


def test_peak_rate_counts_calls_within_any_window() -> None:
    """peak_rate is the most calls of a region that arrived within any one window."""
    proxy = faultproxy.FaultProxy(upstream="http://unused")
    for moment, region in [(0.0, "a"), (0.5, "a"), (0.9, "a"), (1.2, "a"), (1.3, "b"),
                           (5.0, "a")]:
        proxy._record(faultproxy.Call(time=moment, region=region, service="lambda",
                                      operation="ListLayerVersions", method="GET", path="/",
                                      key="", status=200, forwarded=True, action="forward"))

    assert proxy.peak_rate(region="a") == 3  # 0.5, 0.9, 1.2 (0.0 is a full second before 1.2)
    assert proxy.peak_rate(region="b") == 1
    assert proxy.peak_rate() == 4  # 0.5, 0.9, 1.2, 1.3
    assert proxy.peak_rate(region="c") == 0


@pytest.mark.parametrize(("method", "path", "query", "service", "operation"), [
    ("POST", "/2018-10-31/layers/x/versions", "", "lambda", "PublishLayerVersion"),
    ("GET", "/2018-10-31/layers/x/versions", "", "lambda", "ListLayerVersions"),
    ("GET", "/2018-10-31/layers/x/versions/3", "", "lambda", "GetLayerVersion"),
    ("DELETE", "/2018-10-31/layers/x/versions/3", "", "lambda", "DeleteLayerVersion"),
    ("POST", "/2018-10-31/layers/x/versions/3/policy", "", "lambda",
     "AddLayerVersionPermission"),
    ("DELETE", "/2018-10-31/layers/x/versions/3/policy/sid", "", "lambda",
     "RemoveLayerVersionPermission"),
    ("GET", "/2015-03-31/functions/", "", "lambda", "ListFunctions"),
    ("GET", "/2015-03-31/functions/f/versions", "", "lambda", "ListVersionsByFunction"),
    ("PUT", "/bucket/key/a.zip", "", "s3", "PutObject"),
    ("HEAD", "/bucket/key/a.zip", "", "s3", "HeadObject"),
    ("GET", "/bucket", "list-type=2", "s3", "ListObjectsV2"),
    ("GET", "/bucket", "versioning", "s3", "GetBucketVersioning"),
])
def test_operations_are_named_as_botocore_names_them(
        method: str, path: str, query: str, service: str, operation: str) -> None:
    """The REST method and path (and S3 query) map to botocore's operation name."""
    request = faultproxy.Request(
        method=method, path=path, query=urllib.parse.parse_qs(query, keep_blank_values=True),
        headers={}, body=b"", service=service, region="us-east-1")

    assert request.operation == operation
