"""The fault proxy's hold: a call stopped at an exact point (before or after upstream did the
work) until the test releases it, which the end-to-end kill and signal tests rely on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import faultproxy
import pytest

BUCKET = "hold-bucket"


@pytest.fixture
def s3(moto_url: str) -> Iterator[tuple[faultproxy.FaultProxy, Any]]:
    """A proxy in front of moto and an S3 client talking to it, with one bucket."""
    with faultproxy.running(moto_url) as proxy:
        client = boto3.client("s3", region_name="us-east-1", endpoint_url=proxy.url)
        client.create_bucket(Bucket=BUCKET)
        yield proxy, client
        assert proxy.errors == []


def held(rule: faultproxy.Rule) -> faultproxy.Hold:
    """The Hold a `faultproxy.hold` rule carries."""
    assert isinstance(rule.action, faultproxy.Hold)
    return rule.action


@pytest.mark.parametrize("forward", [True, False], ids=["after-forward", "before-forward"])
def test_a_held_call_waits_for_release(s3: tuple[faultproxy.FaultProxy, Any],
                                       moto_url: str, forward: bool) -> None:
    """A held PutObject has (or has not) reached upstream while held, and completes with
    upstream's answer once released."""
    proxy, client = s3
    rule = faultproxy.hold(forward=forward, operation="PutObject")
    proxy.add(rule)
    done = threading.Event()

    def put() -> None:
        client.put_object(Bucket=BUCKET, Key="k", Body=b"v")
        done.set()

    worker = threading.Thread(target=put)
    worker.start()
    held(rule).wait_arrived()
    direct = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_url)
    listed = direct.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    assert [item["Key"] for item in listed] == (["k"] if forward else [])
    assert not done.is_set()

    held(rule).release()
    worker.join(timeout=60)

    assert done.is_set()
    assert proxy.count(operation="PutObject", status=200) == 1
