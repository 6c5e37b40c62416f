"""End to end, through the installed CLI, a moto server and the fault proxy in front of it:
a zip over Lambda's direct-upload limit goes through the artifact bucket (uploaded once, then
published from S3, never inline), and without a bucket it is refused at plan time, naming
`artifact_bucket`."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import faultproxy
import pytest
from clirun import invoke, plan_json

BUCKET = "layer-artifacts"
# Incompressible bytes: the zip stays over the 50 MB direct-upload limit.
BIG_BYTES = 60 * 1024 * 1024


def _big_project(folder: Path, *, bucket: str | None) -> Path:
    """A manifest with one layer whose zip is about 60 MB (random bytes, so deflate cannot
    shrink it), with or without an artifact bucket."""
    content = folder / "layers" / "big" / "python"
    content.mkdir(parents=True)
    with (content / "blob.bin").open("wb") as blob:
        for _ in range(BIG_BYTES // (4 * 1024 * 1024)):
            blob.write(os.urandom(4 * 1024 * 1024))
    lines = ["version: 1", "region: us-east-1"]
    if bucket:
        lines.append(f"artifact_bucket: {bucket}")
    lines += ["layers:", "  big:", "    content: {path: layers/big}"]
    (folder / "layers.yaml").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def big_project(tmp_path: Path, moto_url: str) -> Path:
    """The 60 MB layer with an artifact bucket that exists in moto."""
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    return _big_project(tmp_path, bucket=BUCKET)


def test_large_zip_goes_through_the_artifact_bucket_once(
        big_project: Path, monkeypatch: pytest.MonkeyPatch, moto_url: str) -> None:
    """A 60 MB zip is uploaded to `<layer>/<content_sha256>.zip` and published with S3Bucket
    (a small request, not the zip inline); after a failed publish, the rerun finds the
    object and uploads nothing."""
    document = plan_json(big_project)
    change = document["changes"][0]
    assert change["action"] == "create"
    content_sha256 = change["desired"]["content_sha256"]
    assert change["upload"] == {"route": "artifact_bucket", "s3": {
        "bucket": BUCKET, "key": f"big/{content_sha256}.zip", "version": None}}
    assert "upload: through the artifact bucket" in invoke(big_project, "plan").stdout

    with faultproxy.running(moto_url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        proxy.add(faultproxy.reject(times=1, operation="PublishLayerVersion",
                                    code="ServiceException", status=400))
        failed = invoke(big_project, "apply", "--yes", timeout=300)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        uploads = proxy.count(operation="PutObject")
        assert uploads >= 1  # the parts of a multipart upload are PUTs too

        applied = invoke(big_project, "apply", "--yes", timeout=300)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert proxy.count(operation="PutObject") == uploads, "uploaded a second time"
        publishes = [call for call in proxy.calls
                     if call.operation == "PublishLayerVersion" and call.forwarded]
        assert len(publishes) == 1
        assert publishes[0].request_bytes < 10_000, "the zip went inline, not from S3"

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    head = boto3.client("s3", region_name="us-east-1").head_object(
        Bucket=BUCKET, Key=f"big/{content_sha256}.zip")
    assert head["ContentLength"] == change["desired"]["code_size"]
    version = boto3.client("lambda", region_name="us-east-1").get_layer_version(
        LayerName="big", VersionNumber=1)
    assert version["Content"]["CodeSha256"] == change["desired"]["code_sha256"]
    assert plan_json(big_project)["summary"]["noop"] == 1


def test_large_zip_without_a_bucket_is_refused_naming_artifact_bucket(
        tmp_path: Path, moto_url: str) -> None:
    """Without an artifact bucket, a zip over the direct limit is a plan error that names
    `artifact_bucket`, and apply publishes nothing."""
    project = _big_project(tmp_path, bucket=None)
    planned = invoke(project, "plan")
    assert "artifact_bucket" in planned.stdout + planned.stderr
    applied = invoke(project, "apply", "--yes", timeout=300)
    assert applied.returncode == 1
    assert "artifact_bucket" in applied.stdout + applied.stderr
    layers = boto3.client("lambda", region_name="us-east-1").list_layers()["Layers"]
    assert layers == []


def test_upload_s3_sends_a_small_layer_through_the_bucket(
        tmp_path: Path, moto_url: str) -> None:
    """`upload: s3` in defaults routes even a small zip through the artifact bucket."""
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "mod.py").write_text("X = 1\n")
    (tmp_path / "layers.yaml").write_text(
        f"version: 1\nregion: us-east-1\nartifact_bucket: {BUCKET}\n"
        "defaults: {upload: s3}\nlayers:\n  small:\n    content: {path: small}\n")
    applied = invoke(tmp_path, "apply", "--yes")
    assert applied.returncode == 0, applied.stderr
    listed = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=BUCKET)
    assert [item["Key"].split("/")[0] for item in listed.get("Contents", [])] == ["small"]


ZIP_BYTES_NAME = "python/from_s3.py"


def _s3_source_project(folder: Path, *, key: str, version: str | None) -> Path:
    """A manifest whose one layer's content is an S3 object (pinned to `version`)."""
    pinned = f", object_version: '{version}'" if version else ""
    (folder / "layers.yaml").write_text(
        "version: 1\nregion: us-east-1\nlayers:\n  from-s3:\n"
        f"    content: {{s3: {{bucket: sources, key: {key}{pinned}}}}}\n")
    return folder


@pytest.fixture
def versioned_source(tmp_path: Path, moto_url: str) -> tuple[str, str]:
    """A versioned bucket `sources` holding layer.zip twice; (the current version, its
    checksum). moto publishes a layer from an object's current version whatever
    S3ObjectVersion says, so the pinned version is the current one."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="sources")
    s3.put_bucket_versioning(Bucket="sources", VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket="sources", Key="layer.zip", Body=_zip_bytes(b"FIRST = 1\n"),
                  ChecksumAlgorithm="SHA256")
    put = s3.put_object(Bucket="sources", Key="layer.zip", Body=_zip_bytes(b"SECOND = 2\n"),
                        ChecksumAlgorithm="SHA256")
    return str(put["VersionId"]), str(put["ChecksumSHA256"])


def _zip_bytes(data: bytes) -> bytes:
    """A one-file zip made in memory."""
    import io
    import zipfile
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(ZIP_BYTES_NAME, data)
    return buffer.getvalue()


def test_s3_source_from_a_versioned_bucket(
        tmp_path: Path, versioned_source: tuple[str, str]) -> None:
    """A pinned object version is identified by HeadObject (its checksum is the CodeSha256),
    published with S3Bucket/S3Key/S3ObjectVersion, and then plans as a noop."""
    version, checksum = versioned_source
    project = _s3_source_project(tmp_path, key="layer.zip", version=version)
    change = plan_json(project)["changes"][0]
    assert change["action"] == "create"
    assert change["desired"]["code_sha256"] == checksum
    assert change["upload"] == {"route": "s3_source", "s3": {
        "bucket": "sources", "key": "layer.zip", "version": version}}
    applied = invoke(project, "apply", "--yes")
    assert applied.returncode == 0, applied.stderr
    published = boto3.client("lambda", region_name="us-east-1").get_layer_version(
        LayerName="from-s3", VersionNumber=1)
    assert published["Content"]["CodeSha256"] == checksum
    assert plan_json(project)["summary"]["noop"] == 1


@pytest.mark.parametrize(("key", "version"), [
    pytest.param("missing.zip", None, id="missing-key"),
    pytest.param("layer.zip", "no-such-version-id", id="missing-version"),
])
def test_missing_s3_object_is_refused_at_plan_time(
        tmp_path: Path, versioned_source: tuple[str, str], key: str,
        version: str | None) -> None:
    """A missing key or version is a located plan error (exit 1), and apply publishes
    nothing."""
    project = _s3_source_project(tmp_path, key=key, version=version)
    planned = invoke(project, "plan")
    assert planned.returncode == 1
    assert "layers.yaml:5:" in planned.stdout + planned.stderr
    assert "does not exist" in planned.stdout + planned.stderr
    applied = invoke(project, "apply", "--yes")
    assert applied.returncode == 1
    assert boto3.client("lambda", region_name="us-east-1").list_layers()["Layers"] == []
