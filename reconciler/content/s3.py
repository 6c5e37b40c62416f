"""The S3 source (`content.s3`): a layer's zip that already lives in S3, identified by what
HeadObject says of it (VersionId, ETag and, when S3 has one, ChecksumSHA256), never by a
download. A single-part object's SHA-256 checksum is exactly Lambda's CodeSha256, so such an
object is compared with the published version without reading a byte of it.

Shell by place, pure in fact: it turns a HeadObject answer (asked by its caller through the
ArtifactStore port) into an Artifact or a ContentError; it imports no other content kind.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from reconciler import errors, model


def location(content: model.ContentSpec) -> model.S3Object:
    """The object the manifest names (its pinned version, if any)."""
    if not content.s3_bucket or not content.s3_key:
        raise errors.ContentError("the content names no S3 bucket and key")
    return model.S3Object(bucket=content.s3_bucket, key=content.s3_key,
                          version=content.s3_object_version)


def describe(where: model.S3Object) -> str:
    """`s3://bucket/key` (and the version), for messages."""
    text = f"s3://{where.bucket}/{where.key}"
    return f"{text} (version {where.version})" if where.version else text


def identify(content: model.ContentSpec, *, found: model.StoredObject | None,
             region: str) -> model.Artifact:
    """The artifact of the object HeadObject found in `region` (None: it found none).

    The fingerprint digests the object's identity (bucket, key, VersionId, ETag): a new
    version or new bytes under the same key change it. CodeSha256 is known when S3 holds a
    single-part SHA-256 checksum; otherwise it stays None, and the published version's
    CodeSha256 is what gets recorded.
    """
    where = location(content)
    if found is None:
        what = "version of the object" if where.version else "object"
        raise errors.ContentError(
            f"the {what} {describe(where)} does not exist in {region} (HeadObject found "
            "nothing)",
            hint="check content.s3 (bucket, key, object_version) and that the bucket is in "
                 "the layer's region; reading it needs s3:GetObject")
    identity = [where.bucket, where.key, found.version_id or where.version or "", found.etag]
    fingerprint = hashlib.sha256(json.dumps(identity).encode("utf-8")).hexdigest()
    code_sha256 = content_sha256 = None
    if found.checksum_sha256 and not found.multipart:
        try:
            content_sha256 = base64.b64decode(found.checksum_sha256, validate=True).hex()
            code_sha256 = found.checksum_sha256
        except (binascii.Error, ValueError):
            code_sha256 = content_sha256 = None
    return model.Artifact(fingerprint=fingerprint, code_sha256=code_sha256,
                          content_sha256=content_sha256, code_size=found.size)
