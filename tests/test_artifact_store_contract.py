"""The one contract of ports.ArtifactStore, run against the boto3 store on the real moto
server and the in-memory fake of the tests (so that fake cannot drift from S3): a missing
object heads as None, an uploaded zip heads with its size and recorded SHA-256, and apply's
`already_uploaded` recognises it whether it went up in one part or many."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import boto3
import pytest
from fakes import FakeArtifactStore

from reconciler import applying, aws, model, ports

REGION = "us-east-1"


@pytest.fixture(params=["boto3-moto", "fake"])
def objects(request: pytest.FixtureRequest) -> ports.ArtifactStore:
    """An ArtifactStore with an empty bucket `arts`, for each implementation."""
    if request.param == "boto3-moto":
        request.getfixturevalue("moto_url")
        boto3.client("s3", region_name=REGION).create_bucket(Bucket="arts")
        return aws.Boto3LayerStore()
    return FakeArtifactStore()


def _desired(data: bytes) -> model.Desired:
    digest = hashlib.sha256(data)
    return model.Desired(settings=model.Settings(), fingerprint="fp",
                         code_sha256=base64.b64encode(digest.digest()).decode(),
                         content_sha256=digest.hexdigest(), code_size=len(data))


def test_a_missing_object_heads_as_none(objects: ports.ArtifactStore) -> None:
    """HeadObject of a key that holds nothing is None, not an error."""
    assert objects.head_object(region=REGION, location=model.S3Object(
        bucket="arts", key="a/none.zip")) is None


@pytest.mark.parametrize("size", [1000, 17 * 1024 * 1024], ids=["single-part", "multipart"])
def test_an_uploaded_zip_is_recognised(objects: ports.ArtifactStore, tmp_path: Path,
                                       size: int) -> None:
    """After upload_file, HeadObject reports the size and the recorded SHA-256, and the
    object counts as already uploaded for that zip and not for another."""
    data = os.urandom(size)
    zip_path = tmp_path / "layer.zip"
    zip_path.write_bytes(data)
    desired = _desired(data)
    location = model.S3Object(bucket="arts", key=f"a/{desired.content_sha256}.zip")
    objects.upload_file(region=REGION, location=location, zip_path=zip_path,
                        content_sha256=desired.content_sha256 or "")
    found = objects.head_object(region=REGION, location=location)
    assert found is not None
    assert (found.size, found.content_sha256) == (size, desired.content_sha256)
    assert applying.already_uploaded(found, desired=desired)
    assert not applying.already_uploaded(found, desired=_desired(data + b"x"))
