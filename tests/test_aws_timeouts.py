"""The store's timeouts: `timeout` sets the connect and read timeouts of every client, and
a publish waits for its reply longer by the size of its body (botocore's per-request
read_timeout), against a real moto server."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from bototyping import options
from clirun import invoke

from reconciler import aws, model

SETTINGS = model.Settings.normalised(description="d", compatible_runtimes=None,
                                     compatible_architectures=None, license_info=None)


def test_timeout_sets_connect_and_read_of_every_client(moto_url: str) -> None:
    """timeout=3 is the connect and read timeout of the read, publish and S3 clients; without
    it, DEFAULT_TIMEOUT (botocore's 60 s is never used)."""
    store = aws.Boto3LayerStore(timeout=3)
    for client in (store.client("us-east-1"), store.publish_client("us-east-1"),
                   store.s3_client("us-east-1")):
        config = options(client.meta.config)
        assert (config.connect_timeout, config.read_timeout) == (3, 3)
    default = options(aws.Boto3LayerStore().client("us-east-1").meta.config)
    assert (default.connect_timeout, default.read_timeout) == (aws.DEFAULT_TIMEOUT,) * 2
    objects = options(aws.Boto3ObjectStore(bucket="b", timeout=4).client.meta.config)
    assert (objects.connect_timeout, objects.read_timeout) == (4, 4)


def test_a_publish_waits_longer_by_its_size(moto_url: str, tmp_path: Path) -> None:
    """A publish of a 3 MB zip waits for its reply 1 s per MB of its body longer than the
    store's read timeout (the request's own read_timeout, which botocore honours)."""
    zip_path = tmp_path / "big.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("python/blob.bin", os.urandom(3_000_000))
    store = aws.Boto3LayerStore(timeout=5)
    seen: list[tuple[float, int]] = []

    def capture(request: Any, **_: Any) -> None:
        seen.append((request.context.get("read_timeout"), len(request.body)))

    store.publish_client("us-east-1").meta.events.register(
        "before-send.lambda.PublishLayerVersion", capture)
    published = store.publish(region="us-east-1", layer_name="big", settings=SETTINGS,
                              zip_path=zip_path)
    assert published.version == 1
    [(read_timeout, body_bytes)] = seen
    assert body_bytes > 4_000_000  # the zip, base64-encoded, in the JSON
    assert read_timeout == aws.publish_read_timeout(5, body_bytes=body_bytes)
    assert read_timeout > 5 + 4


def test_help_states_the_default_timeout(tmp_path: Path) -> None:
    """`plan --help` documents --timeout with the default the store uses."""
    result = invoke(tmp_path, "plan", "--help")
    assert result.returncode == 0
    assert "--timeout" in result.stdout
    assert f"default {aws.DEFAULT_TIMEOUT:g};" in " ".join(result.stdout.split())
