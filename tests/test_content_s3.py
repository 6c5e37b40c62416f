"""The S3 source's identity from a HeadObject answer (`content.s3`): a single-part SHA-256
checksum is the CodeSha256, a multipart one is not, a new object version is a new
fingerprint, and a missing object is a ContentError."""

from __future__ import annotations

import base64
import hashlib

import pytest

from reconciler import errors, model
from reconciler.content import s3

CONTENT = model.ContentSpec(kind=model.SourceKind.S3, s3_bucket="src", s3_key="k.zip",
                            s3_object_version="v1")
DIGEST = hashlib.sha256(b"zip").digest()
CHECKSUM = base64.b64encode(DIGEST).decode()


def test_single_part_checksum_is_the_code_sha256() -> None:
    """A single-part object's ChecksumSHA256 gives CodeSha256 and content_sha256 at once."""
    artifact = s3.identify(CONTENT, region="us-east-1", found=model.StoredObject(
        size=3, etag='"e"', version_id="v1", checksum_sha256=CHECKSUM))
    assert (artifact.code_sha256, artifact.content_sha256, artifact.code_size) == (
        CHECKSUM, DIGEST.hex(), 3)
    assert artifact.zip_path is None


def test_multipart_or_missing_checksum_leaves_code_sha256_unknown() -> None:
    """A composite checksum (or none) is not the zip's SHA-256: CodeSha256 stays unknown."""
    for found in (model.StoredObject(size=3, etag='"e-2"', checksum_sha256=CHECKSUM,
                                     multipart=True),
                  model.StoredObject(size=3, etag='"e"')):
        assert s3.identify(CONTENT, region="us-east-1", found=found).code_sha256 is None


def test_another_version_or_etag_is_another_fingerprint() -> None:
    """The fingerprint follows the object's identity: VersionId and ETag."""
    def fingerprint(version: str, etag: str) -> str:
        return s3.identify(CONTENT, region="us-east-1", found=model.StoredObject(
            size=3, etag=etag, version_id=version)).fingerprint
    assert fingerprint("v1", '"a"') == fingerprint("v1", '"a"')
    assert len({fingerprint("v1", '"a"'), fingerprint("v2", '"a"'),
                fingerprint("v1", '"b"')}) == 3


@pytest.mark.parametrize(("content", "what"), [
    pytest.param(CONTENT, "version of the object", id="pinned-version"),
    pytest.param(model.ContentSpec(kind=model.SourceKind.S3, s3_bucket="src", s3_key="k.zip"),
                 "object", id="current-version"),
])
def test_missing_object_is_a_content_error(content: model.ContentSpec, what: str) -> None:
    """No object (or no such version) is an error naming the object, never a guess."""
    with pytest.raises(errors.ContentError, match=f"the {what} s3://src/k.zip"):
        s3.identify(content, region="us-east-1", found=None)
