"""The direct upload streams the zip: the body it sends is byte for byte the JSON botocore
would have built from the zip's bytes, it is signed over its real SHA-256, and a publish
through a moto server gets the zip's CodeSha256."""

from __future__ import annotations

import base64
import contextlib
import gc
import hashlib
import io
import json
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.compat
import botocore.credentials
import pytest
from bototyping import before_send
from test_aws import CannedBody

from reconciler import aws, model, uploadbody

if TYPE_CHECKING:
    from mypy_boto3_lambda.literals import ArchitectureType, RuntimeType

REGION = "us-east-1"
SETTINGS = model.Settings.normalised(description="streamed \u00e9 \"quoted\"",
                                     compatible_runtimes=["python3.12"],
                                     compatible_architectures=["arm64"], license_info="MIT")


class Capture:
    """A before-send handler that keeps the request's body and headers and answers as
    PublishLayerVersion would, without a server."""

    def __init__(self) -> None:
        self.body = b""
        self.headers: dict[str, str] = {}
        self.url = ""

    def __call__(self, request: botocore.awsrequest.AWSPreparedRequest,
                 **_: Any) -> botocore.awsrequest.AWSResponse:
        body = request.body
        if hasattr(body, "read"):
            # A streamed body: reconcile's binary file object (the stubs allow IO[str] too).
            self.body = cast(IO[bytes], body).read()
        else:
            # botocore serializes JSON to bytes; a str body never reaches a before-send here.
            self.body = bytes(cast("bytes | bytearray | None", body) or b"")
        self.url = request.url
        self.headers = {name: value.decode() if isinstance(value, bytes) else value
                        for name, value in request.headers.items()}
        reply = json.dumps({"Version": 1, "LayerVersionArn": "arn:aws:lambda:us-east-1:"
                            "123456789012:layer:x:1", "Content": {"CodeSha256": "x",
                                                                 "CodeSize": 1}}).encode()
        return botocore.awsrequest.AWSResponse(
            request.url, 201,
            botocore.compat.HTTPHeaders.from_dict({"Content-Type": "application/json"}),
            CannedBody(reply))


@pytest.fixture
def offline(aws_isolated: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a region; every request is answered by a Capture."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 1000, 3 * 256 * 1024 + 1, 2_000_003])
def test_streamed_body_is_the_json_botocore_would_send(
        offline: None, tmp_path: Path, size: int) -> None:
    """For zips of every size mod 3 and across read pieces, the streamed body equals the body
    botocore serializes from the zip's bytes, and Content-Length is its length."""
    zip_path = tmp_path / "layer.zip"
    zip_path.write_bytes(os.urandom(size))
    plain = boto3.client("lambda", region_name=REGION)
    expected = Capture()
    plain.meta.events.register("before-send.lambda.PublishLayerVersion",
                              before_send(expected))
    plain.publish_layer_version(
        LayerName="x", Content={"ZipFile": zip_path.read_bytes()},
        Description=SETTINGS.description, LicenseInfo=SETTINGS.license_info,
        # The settings hold plain strings; boto3-stubs wants its literal names.
        CompatibleRuntimes=cast("list[RuntimeType]", list(SETTINGS.compatible_runtimes)),
        CompatibleArchitectures=cast("list[ArchitectureType]",
                                     list(SETTINGS.compatible_architectures)))
    store = aws.Boto3LayerStore()
    streamed = Capture()
    store.publish_client(REGION).meta.events.register(
        "before-send.lambda.PublishLayerVersion", before_send(streamed))

    store.publish(region=REGION, layer_name="x", settings=SETTINGS, zip_path=zip_path)

    assert streamed.body == expected.body
    assert streamed.headers["Content-Length"] == str(len(expected.body))
    assert streamed.headers["Authorization"] == signature_over(expected.body, sent=streamed)


def signature_over(body: bytes, *, sent: Capture) -> str:
    """The SigV4 Authorization header of the request `sent` captured, were its body `body`
    (the same date, headers and credentials): equal only if it was signed over `body`."""
    request = botocore.awsrequest.AWSRequest(method="POST", url=sent.url, data=body,
                                             headers={name: value for name, value in
                                                      sent.headers.items()
                                                      # botocore adds amz-sdk-* after
                                                      # signing: they are not signed.
                                                      if name != "Authorization"
                                                      and not name.startswith("amz-sdk-")})
    timestamp = sent.headers["X-Amz-Date"]
    request.context["timestamp"] = timestamp
    credentials = botocore.credentials.Credentials("testing", "testing")
    signer = botocore.auth.SigV4Auth(credentials, "lambda", REGION)
    canonical = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical)
    signature = signer.signature(string_to_sign, request)
    scope = f"testing/{timestamp[:8]}/{REGION}/lambda/aws4_request"
    return (f"AWS4-HMAC-SHA256 Credential={scope}, "
            f"SignedHeaders={signer.signed_headers(signer.headers_to_sign(request))}, "
            f"Signature={signature}")


def test_body_reads_and_seeks_like_a_file(tmp_path: Path) -> None:
    """Reads of any size from any position give the bytes of prefix + base64 + suffix."""
    data = os.urandom(10_007)
    path = tmp_path / "blob"
    path.write_bytes(data)
    whole = b'{"a":"' + base64.b64encode(data) + b'"}'
    with uploadbody.Base64JsonBody(prefix=b'{"a":"', path=path, suffix=b'"}') as body:
        assert len(body) == len(whole)
        assert body.read() == whole
        for start, size in [(0, 1), (5, 7), (6, 4), (7, 5), (100, 3333), (len(whole) - 3, 10)]:
            body.seek(start)
            assert body.read(size) == whole[start:start + size]
        assert body.seek(0, io.SEEK_END) == len(whole)
        assert body.read(5) == b""


def test_a_file_read_to_another_size_than_it_had_is_refused(tmp_path: Path) -> None:
    """A file whose bytes read are not the size it had when it was opened (it changed
    meanwhile; /proc's files say 0 and hold more) is an OSError before anything is sent, and
    the body's temporary file is gone with it."""
    before = _open_files()
    with pytest.raises(OSError, match="changed while it was read"):
        uploadbody.Base64JsonBody(prefix=b"{", path=Path("/proc/self/status"), suffix=b"}")
    assert _open_files() == before


def _open_files() -> set[str]:
    """What this process's descriptors point at."""
    found = set()
    for link in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            found.add(os.readlink(link))
    return found


def test_publish_through_moto_gets_the_zips_code_sha256(moto_url: str, tmp_path: Path) -> None:
    """A streamed publish through a moto server makes a version whose CodeSha256 and size
    are the zip's."""
    zip_path = tmp_path / "layer.zip"
    zip_path.write_bytes(os.urandom(300_001))

    published = aws.Boto3LayerStore().publish(region=REGION, layer_name="streamed",
                                              settings=SETTINGS, zip_path=zip_path)

    assert published.code_sha256 == base64.b64encode(
        hashlib.sha256(zip_path.read_bytes()).digest()).decode()
    assert published.code_size == 300_001


def test_bodies_sharing_one_encoding_read_it_each_at_its_own_place(tmp_path: Path) -> None:
    """Two bodies over one EncodedZip, read in turn in pieces of any size, each give
    prefix + base64 + suffix whole; closing them leaves the encoding to its owner."""
    data = os.urandom(100_003)
    path = tmp_path / "blob"
    path.write_bytes(data)
    encoded = uploadbody.EncodedZip(path)
    first = uploadbody.Base64JsonBody(prefix=b'{"a":"', suffix=b'"}', encoded=encoded)
    second = uploadbody.Base64JsonBody(prefix=b'{"bb":"', suffix=b'"}}', encoded=encoded)
    got: dict[int, list[bytes]] = {1: [], 2: []}
    for size in (1, 7, 4096, 50_000, 200_000):
        got[1].append(first.read(size))
        got[2].append(second.read(size + 3))
    assert b"".join(got[1]) == b'{"a":"' + base64.b64encode(data) + b'"}'
    assert b"".join(got[2]) == b'{"bb":"' + base64.b64encode(data) + b'"}}'
    first.close()
    second.close()
    assert encoded.read_at(0, 4) == base64.b64encode(data)[:4]
    assert encoded.encodes(path)
    path.write_bytes(data + b"!")
    assert not encoded.encodes(path)
    encoded.close()


def test_a_fleet_encodes_its_zip_once_and_removes_it_with_the_store(
        moto_url: str, tmp_path: Path) -> None:
    """Publishing one zip in two regions through one store encodes it once (one temporary
    file more is open after both), and that file is gone with the store."""
    zip_path = tmp_path / "layer.zip"
    zip_path.write_bytes(os.urandom(200_001))
    before = _open_files()
    store = aws.Boto3LayerStore()
    for region in (REGION, "eu-west-1"):
        store.publish(region=region, layer_name="fleet", settings=SETTINGS, zip_path=zip_path)
    added = [name for name in _open_files() - before if "(deleted)" in name]
    assert len(added) == 1
    del store
    gc.collect()
    assert not [name for name in _open_files() - before if "(deleted)" in name]


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 3 * 1024 * 1024 + 1, 7 * 1024 * 1024 + 2])
def test_an_encoding_made_by_ranges_is_the_files_base64(tmp_path: Path, size: int) -> None:
    """encode_range: the base64 of a file written range by range, each at its place (two
    ranges split at a multiple of 3, written in the other order, one of them in a forked
    process as the head start's helper does), is the base64 of the whole file; a range that
    does not start at a multiple of 3 is refused."""
    data = os.urandom(size)
    (tmp_path / "layer.zip").write_bytes(data)
    half = (size // 2) // 3 * 3
    with open(tmp_path / "layer.zip", "rb") as source, open(tmp_path / "spool", "w+b") as spool:
        pid = os.fork()
        if pid == 0:  # the second range, from another process
            try:
                written = uploadbody.encode_range(source.fileno(), half, size,
                                                  into=spool.fileno())
                os._exit(0 if written == uploadbody.encoded_length(size) -
                         uploadbody.encoded_length(half) else 3)
            except BaseException:
                os._exit(4)
        first = uploadbody.encode_range(source.fileno(), 0, half, into=spool.fileno())
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert first == uploadbody.encoded_length(half)
        spool.seek(0)
        assert spool.read() == base64.b64encode(data)
        with pytest.raises(ValueError, match="multiple of 3"):
            uploadbody.encode_range(source.fileno(), 1, size, into=spool.fileno())


def test_an_encoding_made_ahead_is_offered_once_and_only_for_its_file(tmp_path: Path) -> None:
    """EncodedZip.adopted takes an encoding made ahead for the zip at a path only when that
    zip is the file encoded (its inode, size and mtime); `take` gives an offered encoding to
    one upload, and none once the zip at that path was rewritten (the same inode and size, a
    new mtime)."""
    zip_path = tmp_path / "layer.zip"
    zip_path.write_bytes(b"zip bytes " * 1000)
    found = zip_path.stat()

    def spool_of(path: Path) -> BinaryIO:
        spool = open(tmp_path / f"spool-{path.stat().st_size}", "w+b")  # noqa: SIM115
        with open(path, "rb") as source:
            uploadbody.encode_range(source.fileno(), 0, path.stat().st_size,
                                    into=spool.fileno())
        return spool

    for inode, size, mtime_ns in ((found.st_ino + 1, found.st_size, found.st_mtime_ns),
                                  (found.st_ino, found.st_size + 3, found.st_mtime_ns),
                                  (found.st_ino, found.st_size, found.st_mtime_ns - 1)):
        assert uploadbody.EncodedZip.adopted(spool_of(zip_path), path=zip_path, size=size,
                                             inode=inode, mtime_ns=mtime_ns) is None
    encoded = uploadbody.EncodedZip.adopted(spool_of(zip_path), path=zip_path,
                                            size=found.st_size, inode=found.st_ino,
                                            mtime_ns=found.st_mtime_ns)
    assert encoded is not None
    assert encoded.read_at(0, encoded.length) == base64.b64encode(zip_path.read_bytes())
    uploadbody.offer(zip_path, encoded)
    assert uploadbody.take(zip_path) is encoded and uploadbody.take(zip_path) is None
    uploadbody.offer(zip_path, encoded)
    with open(zip_path, "r+b") as rewritten:  # the same inode and size, other bytes
        rewritten.write(b"ZIP")
    os.utime(zip_path, ns=(found.st_atime_ns, found.st_mtime_ns + 1_000_000))
    assert uploadbody.take(zip_path) is None
