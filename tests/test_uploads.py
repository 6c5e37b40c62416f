"""The artifact bucket's upload rules, with the in-memory fakes: when an object at a zip's
key already is that zip, and that apply uploads a zip once and publishes it from S3."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from pathlib import Path

import pytest
from fakes import FakeArtifactStore

from reconciler import applying, model

CODE = "A" * 43 + "="
DESIRED = model.Desired(settings=model.Settings(), fingerprint="fp", code_sha256=CODE,
                        content_sha256="ab" * 32, code_size=100)
OBJECT = model.S3Object(bucket="arts", key="utils/" + "ab" * 32 + ".zip")


@pytest.mark.parametrize(("found", "same"), [
    pytest.param(None, False, id="no-object"),
    pytest.param(model.StoredObject(size=100, etag="e", checksum_sha256=CODE), True,
                 id="single-part-same-checksum"),
    pytest.param(model.StoredObject(size=100, etag="e", checksum_sha256="B" * 43 + "="), False,
                 id="single-part-other-checksum"),
    pytest.param(model.StoredObject(size=99, etag="e", checksum_sha256=CODE), False,
                 id="other-size"),
    pytest.param(model.StoredObject(size=100, etag="e-4", checksum_sha256="C" * 43 + "=",
                                    content_sha256="ab" * 32, multipart=True), True,
                 id="multipart-same-recorded-digest"),
    pytest.param(model.StoredObject(size=100, etag="e-4", checksum_sha256="C" * 43 + "=",
                                    multipart=True), False,
                 id="multipart-without-recorded-digest"),
])
def test_already_uploaded(found: model.StoredObject | None, same: bool) -> None:
    """An object is the zip when the size matches and its single-part checksum is the
    CodeSha256, or, multipart, the digest reconcile recorded is the zip's."""
    assert applying.already_uploaded(found, desired=DESIRED) is same


def test_upload_once_uploads_then_finds_the_object(tmp_path: Path) -> None:
    """The first call uploads the zip to its key; the next finds it there and uploads nothing."""
    data = b"z" * 100
    zip_path = tmp_path / "x.zip"
    zip_path.write_bytes(data)
    digest = hashlib.sha256(data)
    desired = dataclasses.replace(
        DESIRED, code_sha256=base64.b64encode(digest.digest()).decode(),
        content_sha256=digest.hexdigest(), code_size=len(data))
    location = model.S3Object(bucket="arts", key=f"utils/{digest.hexdigest()}.zip")
    change = model.Change(
        address=model.Address.of_layer("utils", "us-east-1"), layer_name="utils",
        action=model.Action.CREATE, reasons=(model.Reason.NEW_LAYER,), current=None,
        desired=desired, details=model.PublishDetails(
            code=model.CodeLocation(route=model.UploadRoute.ARTIFACT_BUCKET, s3=location)))
    objects = FakeArtifactStore()
    seen: list[str] = []
    assert applying.upload_once(change, location, zip_path=zip_path, objects=objects,
                                progress=seen.append)
    assert not applying.upload_once(change, location, zip_path=zip_path, objects=objects,
                                    progress=seen.append)
    uploads = [call for call in objects.calls if call[0] == "upload"]
    assert uploads == [("upload", "us-east-1", f"arts/{location.key}")]
    assert "not uploaded again" in seen[-1]
