"""Moving a layer's bytes: a publish's zip streamed into its request from disk, an upload to
S3 through boto3's transfer manager, and the download of a version's zip from its presigned
Content.Location.

No zip is ever held in memory whole. It decides nothing about what a failure means: upload
failures go to `failures`, and a download's refusals are AwsErrors naming the URL without
its query string (which holds a signature).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import urllib.parse
import urllib.request
import weakref
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from reconciler import errors, model, uploadbody
from reconciler.aws import failures, session

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

# The object metadata key (x-amz-meta-...) an uploaded zip's hex SHA-256 is recorded under: a
# multipart object's ChecksumSHA256 is a checksum of part checksums, not the zip's.
CONTENT_SHA256_METADATA = "reconcile-content-sha256"
# Parts of 16 MiB: a 250 MB zip in 16 parts, each read from the file as it is sent.
PART_BYTES = 16 * 1024 * 1024

# What a publish's ZipFile is serialized as before the zip is streamed in its place: bytes
# whose base64 cannot occur elsewhere in the JSON (a layer name or a description).
PLACEHOLDER = b"\x00reconcile-streamed-zip-placeholder\x00"
_PLACEHOLDER_JSON = b'"' + base64.b64encode(PLACEHOLDER) + b'"'


class PublishSending:
    """Per thread, the publish being sent: the zip to stream into it (None: it is published
    from S3), and whether it reached botocore's `before-send` (signed and about to go on the
    wire; a failure before it certainly sent nothing). Each zip is base64-encoded once for all
    the publishes that send it (a fleet's regions, in parallel), and again only once the file
    changed; the encodings are removed when this object is gone (uploadbody.EncodedZip)."""

    def __init__(self, *, read_timeout: float) -> None:
        self._read_timeout = read_timeout
        self._local = threading.local()
        self._encoding = threading.Lock()
        self._encoded: dict[Path, uploadbody.EncodedZip] = {}
        # Every encoding made, replaced ones too (a body may still read one): all closed then.
        self._made: list[uploadbody.EncodedZip] = []
        weakref.finalize(self, _close_all, self._made)

    def prepare(self, client: LambdaClient) -> None:
        """Register the hooks of a publish client (once, when it is made)."""
        client.meta.events.register("before-send.lambda.PublishLayerVersion", self._mark_sent)
        client.meta.events.register("before-sign.lambda.PublishLayerVersion", self._stream_zip)

    def start(self, zip_path: PurePath | None) -> None:
        """A publish begins in this thread, streaming `zip_path` when given."""
        self._local.reached = False
        self._local.zip_path = Path(zip_path) if zip_path is not None else None
        self._local.body = None

    @property
    def reached(self) -> bool:
        """Whether the publish of this thread reached the wire."""
        return bool(getattr(self._local, "reached", False))

    def finish(self) -> None:
        """The publish of this thread is over: close its streamed body."""
        self._local.zip_path = None
        body: uploadbody.Base64JsonBody | None = getattr(self._local, "body", None)
        if body is not None:
            body.close()
        self._local.body = None

    def _mark_sent(self, **_: Any) -> None:
        self._local.reached = True

    def _stream_zip(self, request: Any, **_: Any) -> None:
        """Swap the placeholder ZipFile of the serialized request for the zip itself,
        streamed from disk (botocore would hold the bytes and their base64 in memory: a
        37 MB zip peaked at 256 MB). The JSON around it is botocore's own, byte for byte."""
        zip_path: Path | None = getattr(self._local, "zip_path", None)
        if zip_path is None:
            # From S3: Lambda reads the object, of a size not known here, before answering.
            request.context["read_timeout"] = self._read_timeout + session.S3_PUBLISH_ALLOWANCE
            return
        body = bytes(request.data)
        before, found, after = body.partition(_PLACEHOLDER_JSON)
        if not found:  # pragma: no cover - botocore serialized the blob another way
            raise errors.ReconcilerError("the PublishLayerVersion body has no ZipFile "
                                         "placeholder; this is a bug")
        previous: uploadbody.Base64JsonBody | None = getattr(self._local, "body", None)
        if previous is not None:  # (botocore signs a request again for each attempt)
            previous.close()
        streamed = uploadbody.Base64JsonBody(prefix=before + b'"', suffix=b'"' + after,
                                             encoded=self._encoding_of(zip_path))
        self._local.body = streamed
        request.data = streamed
        request.headers["Content-Length"] = str(len(streamed))
        # botocore's per-request override of the client's read timeout (connect unchanged).
        request.context["read_timeout"] = session.publish_read_timeout(
            self._read_timeout, body_bytes=len(streamed))


    def _encoding_of(self, zip_path: Path) -> uploadbody.EncodedZip:
        """The zip's encoding: made once (other threads wanting it wait, then share it), and
        again when the file is no longer the one encoded."""
        with self._encoding:
            known = self._encoded.get(zip_path)
            if known is None or not known.encodes(zip_path):
                # One made ahead while the zip was built (artifacts), else made here.
                known = uploadbody.take(zip_path) or uploadbody.EncodedZip(zip_path)
                self._encoded[zip_path] = known
                self._made.append(known)
            return known


def _close_all(encodings: list[uploadbody.EncodedZip]) -> None:
    for encoded in encodings:
        encoded.close()


def upload_file(client: Any, *, region: str, location: model.S3Object, zip_path: PurePath,
                content_sha256: str) -> None:
    """boto3's transfer manager from the file on disk: multipart above 16 MiB, each part
    with its SHA-256 checksum; the zip's own SHA-256 goes into the object's metadata."""
    # boto3 is imported here, for its transfer manager only: the clients are botocore's
    # own (importing boto3 costs ~0.1 s of every command's start-up, s3transfer included).
    import boto3.exceptions
    import boto3.s3.transfer
    import botocore.exceptions

    call = failures.artifact_call("PutObject", location=location, region=region,
                                  endpoint=failures.endpoint_of(client))
    config = boto3.s3.transfer.TransferConfig(multipart_threshold=PART_BYTES,
                                              multipart_chunksize=PART_BYTES)
    try:
        # (boto3-stubs type `config` as botocore's Config; boto3 takes this TransferConfig)
        with boto3.s3.transfer.S3Transfer(client, config) as transfer:  # type: ignore[arg-type]
            transfer.upload_file(
                str(zip_path), location.bucket, location.key,
                extra_args={"ChecksumAlgorithm": "SHA256",
                            "Metadata": {CONTENT_SHA256_METADATA: content_sha256}})
    except boto3.exceptions.S3UploadFailedError as exc:
        cause = exc.__cause__ or exc.__context__
        raise failures.aws_error_for(cause if isinstance(cause, Exception) else exc,
                                     call) from exc
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise failures.aws_error_for(exc, call) from exc


_DOWNLOAD_CHUNK = 1024 * 1024
_DOWNLOAD_TIMEOUT = 60.0
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def download(location: str, *, where: str, destination: PurePath, max_bytes: int,
             size: int | None, code_sha256: str | None) -> int:
    """The zip at `location` (a presigned URL) streamed to `destination`; the bytes received.

    Refused (errors.AwsError) unless the location is https (or http to a loopback host: a
    local emulator), the zip is at most `max_bytes` and its bytes have `code_sha256` (when
    known). `where` names the version in messages."""
    shown = _without_query(location)
    if not _downloadable(location):
        raise errors.AwsError(f"cannot download {where}: its location {shown} is not an "
                              "https URL")
    if isinstance(size, int) and size > max_bytes:
        raise errors.AwsError(f"will not download {where}: its zip is {size:,} bytes, "
                              f"over {max_bytes:,}")
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(location, timeout=_DOWNLOAD_TIMEOUT) as reply, \
                open(destination, "wb") as out:
            while chunk := reply.read(_DOWNLOAD_CHUNK):
                received += len(chunk)
                if received > max_bytes:
                    raise errors.AwsError(f"stopped downloading {where} from {shown}: "
                                          f"more than {max_bytes:,} bytes")
                digest.update(chunk)
                out.write(chunk)
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        reason = getattr(exc, "reason", None) or getattr(exc, "code", None) or \
            type(exc).__name__
        raise errors.AwsError(f"cannot download {where} from {shown}: {reason}") from None
    if code_sha256 is not None and base64.b64encode(digest.digest()).decode() != code_sha256:
        raise errors.AwsError(f"the zip downloaded for {where} from {shown} does not have "
                              "the version's CodeSha256")
    return received


def _without_query(url: str) -> str:
    """`url` without its query string and fragment (a presigned URL's signature)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _downloadable(url: str) -> bool:
    """An https URL, or http to a loopback host (LocalStack, a test's server)."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http"
                                       and parts.hostname in _LOOPBACK_HOSTS)
