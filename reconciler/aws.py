"""The one seam to AWS: the botocore implementations of the `LayerStore` and `ArtifactStore`
ports (Lambda, and the S3 objects layer code is uploaded to or published from) and of the S3
state's `ObjectStore`.

The only module that imports boto3 or botocore. Every botocore exception is turned into an
`errors.AwsError` (chained with `from`) with a message that names the layer, the region and
what to do about it; nothing else in the program ever sees a botocore type.

PublishLayerVersion has no idempotency token: every call Lambda accepts is a new, permanent
version. So reads keep botocore's retries, but a publish is sent exactly once, through a
client of its own whose retries are off, and its failure says what is known: errors.
PublishNotSent (it certainly made no version) or errors.PublishOutcomeUnknown (it was sent
and got no clear answer). Deciding whether to send it again is `publishing`'s job, not this
module's. A publish streams the zip from disk (`uploadbody`), never holding it in memory.

It also downloads a version's zip from GetLayerVersion's presigned Content.Location (for
adoption by content): streamed to a file, size-capped, checked against CodeSha256, and named
in messages without the URL's query string, which holds a signature.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import math
import os
import threading
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import botocore.config
import botocore.exceptions
import botocore.loaders
import botocore.session

from reconciler import errors, model, ports, ratelimit, uploadbody

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

PAGE_SIZE = 50  # ListLayerVersions' and ListLayers' maximum MaxItems
# The object metadata key (x-amz-meta-...) an uploaded zip's hex SHA-256 is recorded under: a
# multipart object's ChecksumSHA256 is a checksum of part checksums, not the zip's.
CONTENT_SHA256_METADATA = "reconcile-content-sha256"
# Parts of 16 MiB: a 250 MB zip in 16 parts, each read from the file as it is sent.
_PART_BYTES = 16 * 1024 * 1024

# What a publish's ZipFile is serialized as before the zip is streamed in its place: bytes
# whose base64 cannot occur elsewhere in the JSON (a layer name or a description).
_PLACEHOLDER = b"\x00reconcile-streamed-zip-placeholder\x00"
_PLACEHOLDER_JSON = b'"' + base64.b64encode(_PLACEHOLDER) + b'"'


# Lambda's and AWS's codes for "slow down": the request was refused, nothing was done.
THROTTLING_CODES = errors.THROTTLING_CODES


# --- reading answers ------------------------------------------------------------------------
# Every field read from an AWS answer is checked: an endpoint that answers what Lambda or S3
# never would (an emulator, a proxy, a cut body) is an AwsError naming the call and the field
# (for a publish, an unknown outcome), never a KeyError or a TypeError.

# What botocore's response parser raises on a body of another shape than its model's (a list
# where an object belongs, `"x"` where a number does): it parses without catching anything.
_PARSER_ERRORS = (TypeError, AttributeError, ValueError, KeyError, IndexError)
_Value = TypeVar("_Value")
_KINDS = {str: "a string", int: "an integer", dict: "an object", list: "a list"}


class _BadAnswer(Exception):
    """An answer lacks a field the code reads, or holds it with another type."""


def _shown(value: object) -> str:
    """A value from an answer as a message quotes it: its repr, at most a line long."""
    text = repr(value) if not isinstance(value, (dict, list)) else _KINDS[type(value)]
    return text if len(text) <= 80 else text[:77] + "..."


def _may(answer: Any, name: str, kind: type[_Value]) -> _Value | None:
    """The field `name` (dotted: `Content.CodeSha256`) of `answer`, None when it is absent;
    _BadAnswer when it, or an object on its way, has another type."""
    value = answer
    walked: list[str] = []
    for part in name.split("."):
        if value is None:
            return None
        if not isinstance(value, dict):
            where = ".".join(walked) or "answer"
            raise _BadAnswer(f"its {where} is {_shown(value)}, not an object")
        value = value.get(part)
        walked.append(part)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _BadAnswer(f"its {name} is {_shown(value)}, not {_KINDS.get(kind, kind.__name__)}")
    return value


def _need(answer: Any, name: str, kind: type[_Value]) -> _Value:
    """The field `name` of `answer`; _BadAnswer when it is absent or of another type."""
    value = _may(answer, name, kind)
    if value is None:
        raise _BadAnswer(f"it has no {name}")
    return value


def _names(answer: Any, name: str) -> list[str] | None:
    """A list of strings (runtimes, architectures), None when absent."""
    values = _may(answer, name, list)
    if values is not None and not all(isinstance(value, str) for value in values):
        raise _BadAnswer(f"its {name} holds something other than names")
    return values


def _settings(item: Any) -> model.Settings:
    return model.Settings.normalised(
        description=_may(item, "Description", str),
        compatible_runtimes=_names(item, "CompatibleRuntimes"),
        compatible_architectures=_names(item, "CompatibleArchitectures"),
        license_info=_may(item, "LicenseInfo", str),
    )


def _remote_version(item: Any, *, layer_name: str, with_code: bool = False
                    ) -> model.RemoteVersion:
    """A layer version as a listing, GetLayerVersion or a publish answers it: a version
    number of 1 or more, the ARN of that version of `layer_name`, its settings, and with
    `with_code` its Content.CodeSha256 and Content.CodeSize."""
    version = _need(item, "Version", int)
    if version < 1:
        raise _BadAnswer(f"its Version {version} is not a version number")
    arn = _need(item, "LayerVersionArn", str)
    if not arn.endswith(f":layer:{layer_name}:{version}"):
        raise _BadAnswer(f"its LayerVersionArn {_shown(arn)} is not that of version {version} "
                         f"of layer '{layer_name}'")
    return model.RemoteVersion(
        version=version, layer_version_arn=arn, settings=_settings(item),
        code_sha256=_need(item, "Content.CodeSha256", str) if with_code else None,
        code_size=_need(item, "Content.CodeSize", int) if with_code else None)


def _unusable(problem: _BadAnswer, *, operation: str, where: str,
              endpoint: str | None) -> errors.AwsError:
    """The AwsError for an answer the code cannot use."""
    return _redacted(errors.AwsError(
        f"{operation} for {where}: the answer cannot be used: {problem}",
        hint=f"the endpoint {endpoint or ''} answered what AWS never does; check "
             "--endpoint-url / AWS_ENDPOINT_URL, and any proxy on the way"))


class _answer:
    """Turn a _BadAnswer raised while reading an answer inside the block into an AwsError."""

    def __init__(self, operation: str, *, layer: str | None, region: str | None,
                 client: Any, where: str | None = None) -> None:
        self.operation, self.client = operation, client
        self.where = where or (f"layer '{layer}' in {region}" if layer else (region or "AWS"))

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        if isinstance(exc, _BadAnswer):
            raise _unusable(exc, operation=self.operation, where=self.where,
                            endpoint=_endpoint_of(self.client)) from exc


def _endpoint_of(client: Any) -> str | None:
    endpoint = getattr(getattr(client, "meta", None), "endpoint_url", None)
    return str(endpoint) if endpoint is not None else None


class _ServicesLoader(botocore.loaders.Loader):
    """botocore's loader of data files, told which services exist when asked for one of the
    services this tool calls.

    botocore's `load_service_model` first lists every service it knows, to refuse an unknown
    name: ~410 folders listed and ~2,000 paths looked up, once for each kind of model a client
    loads (service-2, endpoint-rule-set-1): ~25 ms of every run that makes a client. For
    lambda, s3 and sts the list is made of those alone, by the same rule over the same search
    paths (AWS_DATA_PATH, ~/.aws/models, botocore's own data), so a model placed in any of
    them is found as before. Any other name (the `sso` and `sso-oidc` clients botocore's own
    credential providers make for an IAM Identity Center profile) gets botocore's full list."""

    SERVICES = ("lambda", "s3", "sts")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._asking = threading.local()  # the service being loaded, in this thread

    def load_service_model(self, service_name: str, type_name: str,
                           api_version: str | None = None) -> Any:
        self._asking.service = service_name
        try:
            return super().load_service_model(service_name, type_name, api_version)
        finally:
            self._asking.service = None

    def list_available_services(self, type_name: str) -> list[str]:
        if getattr(self._asking, "service", None) not in self.SERVICES:
            found: list[str] = super().list_available_services(type_name)
            return found
        services = set()
        for location in self.search_paths:
            for service in self.SERVICES:
                folder = os.path.join(location, service)
                if not os.path.isdir(folder):
                    continue
                if any(self.file_loader.exists(os.path.join(folder, version, type_name))
                       for version in os.listdir(folder)):
                    services.add(service)
        return sorted(services)


def _loader(search_path: str | None) -> _ServicesLoader:
    """The loader botocore's create_loader makes for the `data_path` setting, as _ServicesLoader."""
    if search_path is None:
        return _ServicesLoader()
    return _ServicesLoader(extra_search_paths=[
        os.path.expanduser(os.path.expandvars(path)) for path in search_path.split(os.pathsep)])


def _session(profile: str | None) -> botocore.session.Session:
    """A botocore session of the standard chain (AWS_PROFILE or `profile`, the environment,
    the config files), as boto3.Session makes one. Raises ProfileNotFound for a missing profile
    and a BotoCoreError for an unparsable config file now, as boto3.Session does, rather than
    at the first call. botocore, not boto3: boto3 adds nothing a client here uses and costs
    ~0.1 s of start-up (it imports s3transfer); upload_file imports it where it is needed."""
    session = botocore.session.Session(profile=profile)
    session.get_scoped_config()
    session.register_component("data_loader", _loader(session.get_config_variable("data_path")))
    return session


# Connect, and wait for each reply, at most this long (--timeout): an endpoint that accepts
# and never answers fails a read in 3 attempts x 10 s (botocore's 60 s made it 3 minutes).
DEFAULT_TIMEOUT = 10.0
# A publish's reply comes after Lambda has read and stored the zip: its wait grows by a second
# per MB sent (a 50 MB zip's 67 MB of base64: 67 s more), and from S3 by a fixed allowance.
_PUBLISH_BYTES_PER_SECOND = 1_000_000
_S3_PUBLISH_ALLOWANCE = 120.0


def publish_read_timeout(read_timeout: float, *, body_bytes: int) -> float:
    """How long a publish of `body_bytes` waits for its reply."""
    return read_timeout + body_bytes / _PUBLISH_BYTES_PER_SECOND


class Boto3LayerStore:
    """LayerStore over botocore, with two Lambda clients per region: one for reads, one for
    PublishLayerVersion.

    Credentials, profile and endpoint come from the standard chain (`AWS_PROFILE`,
    `AWS_ENDPOINT_URL`, ...); `endpoint_url` overrides the endpoint when given. Reads are
    retried by botocore (429 with backoff, 5xx, connection errors): `max_attempts` attempts
    in standard mode when given, else as the standard chain says (AWS_RETRY_MODE, AWS_MAX_ATTEMPTS,
    the profile; botocore's default is standard mode, 3 attempts). A publish is never retried
    by botocore. `timeout` (seconds, default DEFAULT_TIMEOUT) bounds the connect and each
    wait for a reply of every attempt; `read_timeout` overrides the latter alone. A publish
    waits longer for its reply, by its body's size (see publish_read_timeout).
    """

    def __init__(self, *, profile: str | None = None, endpoint_url: str | None = None,
                 max_attempts: int | None = None, read_timeout: float | None = None,
                 max_rps: float | None = ratelimit.DEFAULT_RPS,
                 timeout: float | None = None) -> None:
        try:
            self._session = _session(profile)
        except botocore.exceptions.ProfileNotFound as exc:
            raise errors.CredentialsError(
                str(exc), hint="check --profile / AWS_PROFILE against ~/.aws/config"
            ) from exc
        except botocore.exceptions.BotoCoreError as exc:  # e.g. an unparsable config file
            raise _configuration_error(exc) from exc
        self._endpoint_url = endpoint_url
        self._timeout = timeout or DEFAULT_TIMEOUT
        self._read_timeout = read_timeout or self._timeout
        self._config = botocore.config.Config(user_agent_extra="reconcile-layers",
                                              connect_timeout=self._timeout,
                                              read_timeout=self._read_timeout)
        # The publish client sends each call once: a retry of a publish whose reply was lost
        # would make a second version (total_max_attempts also overrides AWS_MAX_ATTEMPTS).
        self._publish_config = self._config.merge(botocore.config.Config(
            retries={"mode": "standard", "total_max_attempts": 1}))
        # botocore's `max_attempts` counts retries only; `total_max_attempts` counts the first
        # attempt too, as --max-attempts does. Without it, the standard chain decides
        # (AWS_MAX_ATTEMPTS, AWS_RETRY_MODE, the profile).
        if max_attempts is not None:
            self._config = self._config.merge(botocore.config.Config(
                retries={"mode": "standard", "total_max_attempts": max_attempts}))
        self._clients: dict[str, LambdaClient] = {}
        self._publish_clients: dict[str, LambdaClient] = {}
        # A botocore Session is not thread-safe, and its loader caches the Lambda model without a
        # lock. Every client comes from this one session, under one lock: the model is parsed
        # once and each further client costs ~5 ms (measured: 20 regions in 0.10 s in turn,
        # 0.20 s from 4 threads at once; a session per client costs ~130 ms each). Clients
        # are thread-safe, so the workers of a region share its clients.
        self._client_lock = threading.Lock()
        # One bucket per region (an account's quota is per region), shared by the region's read
        # and publish clients; None when --max-rps 0 turns the limit off.
        self._max_rps = max_rps
        self._buckets: dict[str, ratelimit.TokenBucket] = {}
        self._s3_clients: dict[str, Any] = {}
        # S3 clients come from the same session, so under the same lock (see above).
        self._s3_lock = self._client_lock
        # Per thread: did the publish being made reach botocore's `before-send` (signed and
        # about to go on the wire)? A failure before it certainly sent nothing.
        self._sending = threading.local()

    def default_region(self) -> str | None:
        """The region the standard chain resolves (AWS_DEFAULT_REGION, the profile's region).

        botocore does not read AWS_REGION; the CLI, which owns the environment, applies it."""
        try:
            region: str | None = self._session.get_config_variable("region")
            return region
        except botocore.exceptions.BotoCoreError as exc:
            raise _configuration_error(exc) from exc

    def prepare(self, regions: Sequence[str]) -> None:
        """Create the read clients of `regions` up front, in the calling thread, so that the
        workers that then use them in parallel never wait for one another. (Publish clients
        are made on first use, under the same lock: a plan needs none, and an apply only
        where it publishes.)"""
        for region in regions:
            self.client(region)

    def client(self, region: str) -> LambdaClient:
        """The Lambda client for `region` (created once, rate-limited per region)."""
        with self._client_lock:
            if region not in self._clients:
                client: LambdaClient = self._new_client("lambda", region=region)
                self._limit(client, region=region)
                self._clients[region] = client
            return self._clients[region]

    def publish_client(self, region: str) -> LambdaClient:
        """The Lambda client that sends PublishLayerVersion in `region`: no retries."""
        with self._client_lock:
            if region not in self._publish_clients:
                client: LambdaClient = self._new_client("lambda", region=region,
                                                        config=self._publish_config)
                self._limit(client, region=region)
                client.meta.events.register("before-send.lambda.PublishLayerVersion",
                                            self._mark_sending)
                client.meta.events.register("before-sign.lambda.PublishLayerVersion",
                                            self._stream_zip)
                self._publish_clients[region] = client
            return self._publish_clients[region]

    def _limit(self, client: LambdaClient, *, region: str) -> None:
        """Make every request of `client` (each attempt of each Lambda call: a retry counts
        against the quota too) take a token from the region's bucket first. Called with
        _client_lock held."""
        if self._max_rps is None:
            return
        bucket = self._buckets.get(region)
        if bucket is None:
            bucket = self._buckets[region] = ratelimit.TokenBucket(rate=self._max_rps)

        # before-send runs once per attempt, just before the request goes on the wire; a
        # handler that returns a value replaces the response, so this one returns None. On a
        # publish it runs after _mark_sending (botocore calls the more specific event's
        # handlers first); waiting for a token raises nothing, so a publish marked as sending
        # still goes on the wire.
        def take_token(**_: Any) -> None:
            bucket.acquire()

        client.meta.events.register_first("before-send.lambda", take_token)

    def _mark_sending(self, **_: Any) -> None:
        self._sending.reached = True

    def s3_client(self, region: str) -> Any:
        """The S3 client for `region` (created once; tests register event hooks on it)."""
        with self._s3_lock:
            if region not in self._s3_clients:
                self._s3_clients[region] = self._new_client("s3", region=region)
            return self._s3_clients[region]

    def head_object(self, *, region: str,
                    location: model.S3Object) -> model.StoredObject | None:
        """HeadObject with ChecksumMode ENABLED; None for a missing key or version (404, or
        400 for a version ID S3 cannot parse)."""
        client = self.s3_client(region)
        kwargs: dict[str, Any] = {"Bucket": location.bucket, "Key": location.key,
                                  "ChecksumMode": "ENABLED"}
        if location.version:
            kwargs["VersionId"] = location.version
        try:
            response = client.head_object(**kwargs)
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NoSuchVersion", "NotFound") or (
                    location.version and code in ("400", "InvalidArgument")):
                return None
            raise _s3_error(exc, operation="HeadObject", location=location, region=region,
                            client=client) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise _s3_error(exc, operation="HeadObject", location=location, region=region,
                            client=client) from exc
        except _PARSER_ERRORS as exc:
            raise _unusable(_BadAnswer(f"botocore could not parse it ({exc})"),
                            operation="HeadObject", where=_s3_where(location, region),
                            endpoint=_endpoint_of(client)) from exc
        with _answer("HeadObject", layer=None, region=region, client=client,
                     where=_s3_where(location, region)):
            metadata = _may(response, "Metadata", dict) or {}
            etag = _may(response, "ETag", str) or ""
            checksum = _may(response, "ChecksumSHA256", str)
            content_sha256 = metadata.get(CONTENT_SHA256_METADATA)
            return model.StoredObject(
                size=_need(response, "ContentLength", int), etag=etag,
                version_id=_may(response, "VersionId", str), checksum_sha256=checksum,
                content_sha256=content_sha256 if isinstance(content_sha256, str) else None,
                multipart=("-" in etag.strip('"') or "-" in (checksum or "")
                           or response.get("ChecksumType") == "COMPOSITE"))

    def upload_file(self, *, region: str, location: model.S3Object, zip_path: PurePath,
                    content_sha256: str) -> None:
        """boto3's transfer manager from the file on disk: multipart above 16 MiB, each part
        with its SHA-256 checksum; the zip's own SHA-256 goes into the object's metadata."""
        # boto3 is imported here, for its transfer manager only: the clients are botocore's
        # own (importing boto3 costs ~0.1 s of every command's start-up, s3transfer included).
        import boto3.exceptions
        import boto3.s3.transfer

        client = self.s3_client(region)
        config = boto3.s3.transfer.TransferConfig(multipart_threshold=_PART_BYTES,
                                                  multipart_chunksize=_PART_BYTES)
        try:
            # (boto3-stubs type `config` as botocore's Config; boto3 takes this TransferConfig)
            with boto3.s3.transfer.S3Transfer(client, config) as transfer:  # type: ignore[arg-type]
                transfer.upload_file(
                    str(zip_path), location.bucket, location.key,
                    extra_args={"ChecksumAlgorithm": "SHA256",
                                "Metadata": {CONTENT_SHA256_METADATA: content_sha256}})
        except boto3.exceptions.S3UploadFailedError as exc:
            cause = exc.__cause__ or exc.__context__
            raise _s3_error(cause if isinstance(cause, Exception) else exc,
                            operation="PutObject", location=location, region=region,
                            client=client) from exc
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise _s3_error(exc, operation="PutObject", location=location, region=region,
                            client=client) from exc

    def _stream_zip(self, request: Any, **_: Any) -> None:
        """Swap the placeholder ZipFile of the serialized request for the zip itself,
        streamed from disk (botocore would hold the bytes and their base64 in memory: a
        37 MB zip peaked at 256 MB). The JSON around it is botocore's own, byte for byte."""
        zip_path: Path | None = getattr(self._sending, "zip_path", None)
        if zip_path is None:
            # From S3: Lambda reads the object, of a size not known here, before answering.
            request.context["read_timeout"] = self._read_timeout + _S3_PUBLISH_ALLOWANCE
            return
        body = bytes(request.data)
        before, found, after = body.partition(_PLACEHOLDER_JSON)
        if not found:  # pragma: no cover - botocore serialized the blob another way
            raise errors.ReconcilerError("the PublishLayerVersion body has no ZipFile "
                                         "placeholder; this is a bug")
        streamed = uploadbody.Base64JsonBody(prefix=before + b'"', path=zip_path,
                                             suffix=b'"' + after)
        self._sending.body = streamed
        request.data = streamed
        request.headers["Content-Length"] = str(len(streamed))
        # botocore's per-request override of the client's read timeout (connect unchanged).
        request.context["read_timeout"] = publish_read_timeout(self._read_timeout,
                                                               body_bytes=len(streamed))

    def _new_client(self, service: Literal["lambda", "sts", "s3"], *, region: str,
                    config: botocore.config.Config | None = None) -> Any:
        """A client of the standard chain, with configuration mistakes turned into AwsErrors."""
        try:
            return self._session.create_client(service, region_name=region,
                                               endpoint_url=self._endpoint_url,
                                               config=config or self._config)
        except ValueError as exc:
            if str(exc).startswith("Invalid endpoint"):
                raise errors.EndpointError(
                    f"cannot use the endpoint {self._endpoint_url or '(from AWS_ENDPOINT_URL)'}: "
                    f"{exc}", hint="--endpoint-url / AWS_ENDPOINT_URL must be a URL like "
                                   "http://127.0.0.1:5000") from exc
            raise _configuration_error(exc) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise _configuration_error(exc) from exc

    def _listed(self, *, region: str, layer_name: str) -> list[model.RemoteVersion]:
        """Every version on every page of ListLayerVersions (without CodeSha256)."""
        client = self.client(region)
        found: list[model.RemoteVersion] = []
        marker: str | None = None
        while True:
            kwargs: dict[str, Any] = {"LayerName": layer_name, "MaxItems": PAGE_SIZE}
            if marker:
                kwargs["Marker"] = marker
            with _translated("ListLayerVersions", layer=layer_name, region=region, client=client):
                page = client.list_layer_versions(**kwargs)
            with _answer("ListLayerVersions", layer=layer_name, region=region, client=client):
                found.extend(_remote_version(item, layer_name=layer_name)
                             for item in _may(page, "LayerVersions", list) or [])
                marker = _may(page, "NextMarker", str)
            if not marker:
                return found

    def latest_version(self, *, region: str, layer_name: str) -> model.RemoteVersion | None:
        """Every page of ListLayerVersions; the API promises no order, so take the max."""
        listed = self._listed(region=region, layer_name=layer_name)
        return max(listed, key=lambda item: item.version) if listed else None

    def versions_above(self, *, region: str, layer_name: str,
                       version: int) -> list[model.RemoteVersion]:
        """Every page of ListLayerVersions, the versions numbered above `version`, each with
        its CodeSha256 (one GetLayerVersion each: the listing carries none), lowest first."""
        above = sorted((item for item in self._listed(region=region, layer_name=layer_name)
                        if item.version > version), key=lambda item: item.version)
        return [self.with_code(region=region, layer_name=layer_name, version=item)
                for item in above]

    def latest_versions(self, *, region: str, layer_names: Sequence[str]) -> ports.Observed:
        """The latest version of each layer, from ListLayers pages (50 layers each) while that
        is cheaper than one ListLayerVersions per layer still unseen.

        Why this cannot miss a version: ListLayers lists every layer of the account and region
        that has a version, each once, and its LatestMatchingVersion (no runtime or
        architecture filter) is the layer's latest version. A layer on no page has none.
        Paging stops early only once every asked layer was seen; when the account holds far
        more layers than the manifest (few of ours per page), the rest are read one by one.
        """
        wanted = set(layer_names)
        latest: dict[str, model.RemoteVersion | None] = {}
        if len(wanted) <= 1:
            for name in wanted:
                latest[name] = self.latest_version(region=region, layer_name=name)
            return ports.Observed(latest=latest, how="ListLayerVersions per layer",
                                  calls=len(wanted))
        client = self.client(region)
        calls = pages = 0
        marker: str | None = None
        how = "ListLayers"
        while True:
            kwargs: dict[str, Any] = {"MaxItems": PAGE_SIZE}
            if marker:
                kwargs["Marker"] = marker
            with _translated("ListLayers", layer=None, region=region, client=client):
                page = client.list_layers(**kwargs)
            calls += 1
            pages += 1
            with _answer("ListLayers", layer=None, region=region, client=client):
                for item in _may(page, "Layers", list) or []:
                    listed_name = _may(item, "LayerName", str) or ""
                    found = _may(item, "LatestMatchingVersion", dict)
                    if listed_name in wanted and found:
                        latest[listed_name] = _remote_version(found, layer_name=listed_name)
                marker = _may(page, "NextMarker", str)
            unseen = wanted - latest.keys()
            if not marker or not unseen:
                break
            hits_per_page = len(latest) / pages
            pages_left = math.ceil(len(unseen) / hits_per_page) if hits_per_page else math.inf
            if pages_left > len(unseen):
                how = (f"ListLayers ({pages} page{'s' if pages != 1 else ''}), then "
                       f"ListLayerVersions for {len(unseen)} layer(s): the account holds "
                       "many more layers than the manifest")
                for name in sorted(unseen):
                    latest[name] = self.latest_version(region=region, layer_name=name)
                    calls += 1
                return ports.Observed(latest=latest, how=how, calls=calls)
        for name in wanted - latest.keys():
            latest[name] = None
        plural = "s" if pages != 1 else ""
        return ports.Observed(latest=latest, how=f"{how} ({pages} page{plural})", calls=calls)

    def with_code(self, *, region: str, layer_name: str,
                  version: model.RemoteVersion) -> model.RemoteVersion:
        """GetLayerVersion: the only call that reports a version's CodeSha256."""
        client = self.client(region)
        with _translated("GetLayerVersion", layer=layer_name, region=region, client=client):
            response = client.get_layer_version(LayerName=layer_name,
                                                VersionNumber=version.version)
        with _answer("GetLayerVersion", layer=layer_name, region=region, client=client):
            return model.RemoteVersion(
                version=version.version,
                layer_version_arn=version.layer_version_arn,
                settings=version.settings,
                code_sha256=_need(response, "Content.CodeSha256", str),
                code_size=_need(response, "Content.CodeSize", int),
            )

    def publish(self, *, region: str, layer_name: str, settings: model.Settings,
                zip_path: PurePath | None,
                s3_object: model.S3Object | None = None) -> model.RemoteVersion:
        """PublishLayerVersion, sent once: with Content.ZipFile (the zip is <= 50 MB by
        then), or from `s3_object` with S3Bucket/S3Key (and S3ObjectVersion when pinned).

        Raises errors.PublishNotSent when it certainly made no version, and
        errors.PublishOutcomeUnknown when it was sent without a clear answer."""
        client = self.publish_client(region)
        content: dict[str, Any]
        if s3_object is not None:
            content = {"S3Bucket": s3_object.bucket, "S3Key": s3_object.key}
            if s3_object.version:
                content["S3ObjectVersion"] = s3_object.version
        elif zip_path is not None:
            # Serialized as a marker that _stream_zip replaces with the zip, streamed.
            content = {"ZipFile": _PLACEHOLDER}
        else:
            raise ValueError("a publish needs a zip or an S3 object")
        kwargs: dict[str, Any] = {
            "LayerName": layer_name,
            "Content": content,
            "Description": settings.description,
            "LicenseInfo": settings.license_info,
        }
        if settings.compatible_runtimes:
            kwargs["CompatibleRuntimes"] = list(settings.compatible_runtimes)
        if settings.compatible_architectures:
            kwargs["CompatibleArchitectures"] = list(settings.compatible_architectures)
        self._sending.reached = False
        # Streamed in only when the zip travels in the request (not when published from S3).
        self._sending.zip_path = (Path(zip_path) if zip_path is not None and s3_object is None
                                  else None)
        self._sending.body = None
        try:
            response = client.publish_layer_version(**kwargs)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise publish_error(exc, layer=layer_name, region=region,
                                endpoint=client.meta.endpoint_url,
                                sent=bool(getattr(self._sending, "reached", False))) from exc
        except OSError as exc:  # the zip could not be read while it was streamed
            raise publish_error(exc, layer=layer_name, region=region,
                                endpoint=client.meta.endpoint_url,
                                sent=bool(getattr(self._sending, "reached", False))) from exc
        except _PARSER_ERRORS as exc:
            if not getattr(self._sending, "reached", False):
                raise  # before the request was sent: not an answer, a bug
            raise self._unknown(_BadAnswer(f"botocore could not parse it ({exc})"),
                                layer_name=layer_name, region=region, client=client) from exc
        finally:
            self._sending.zip_path = None
            if self._sending.body is not None:
                self._sending.body.close()
        try:
            return _remote_version(response, layer_name=layer_name, with_code=True)
        except _BadAnswer as problem:
            raise self._unknown(problem, layer_name=layer_name, region=region,
                                client=client) from problem

    @staticmethod
    def _unknown(problem: _BadAnswer, *, layer_name: str, region: str,
                 client: Any) -> errors.PublishOutcomeUnknown:
        """A publish that got an answer it cannot use: Lambda received it and may have made a
        version, so its outcome is unknown (publishing looks for the version, never a blind
        second send)."""
        return _redacted(errors.PublishOutcomeUnknown(
            f"PublishLayerVersion for layer '{layer_name}' in {region} was sent, but its "
            f"outcome is unknown: the answer cannot be used: {problem}",
            hint=f"the endpoint {_endpoint_of(client) or ''} answered what Lambda never does; "
                 "run plan: it adopts the version if one was made"))

    def download_code(self, *, region: str, layer_name: str, version: int,
                      destination: PurePath, max_bytes: int) -> int:
        """GetLayerVersion's Content.Location (a presigned URL), streamed to `destination`.

        Refused (errors.AwsError) unless the location is https (or http to a loopback
        host: a local emulator), the zip is at most `max_bytes` and its bytes have the
        version's CodeSha256. Messages name the URL without its query string, which holds
        a signature."""
        client = self.client(region)
        with _translated("GetLayerVersion", layer=layer_name, region=region, client=client):
            response = client.get_layer_version(LayerName=layer_name, VersionNumber=version)
        with _answer("GetLayerVersion", layer=layer_name, region=region, client=client):
            location = _may(response, "Content.Location", str) or ""
            expected = _may(response, "Content.CodeSha256", str)
            size = _may(response, "Content.CodeSize", int)
        where = f"version {version} of layer '{layer_name}' in {region}"
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
        if expected is not None and base64.b64encode(digest.digest()).decode() != expected:
            raise errors.AwsError(f"the zip downloaded for {where} from {shown} does not have "
                                  "the version's CodeSha256")
        return received

    def all_versions(self, *, region: str, layer_name: str) -> list[model.RemoteVersion]:
        """Every page of ListLayerVersions, lowest first (without CodeSha256)."""
        return sorted(self._listed(region=region, layer_name=layer_name),
                      key=lambda item: item.version)

    def delete_version(self, *, region: str, layer_name: str, version: int) -> None:
        """DeleteLayerVersion (Lambda answers success for a version already gone)."""
        client = self.client(region)
        with _translated("DeleteLayerVersion", layer=layer_name, region=region, client=client):
            client.delete_layer_version(LayerName=layer_name, VersionNumber=version)

    def policy_statements(self, *, region: str, layer_name: str,
                          version: int) -> frozenset[str]:
        """GetLayerVersionPolicy's statement IDs; a version without a policy has none
        (Lambda says ResourceNotFoundException)."""
        client = self.client(region)
        try:
            response = client.get_layer_version_policy(LayerName=layer_name,
                                                       VersionNumber=version)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return frozenset()
            raise translate(exc, operation="GetLayerVersionPolicy", layer=layer_name,
                            region=region, endpoint=client.meta.endpoint_url) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise translate(exc, operation="GetLayerVersionPolicy", layer=layer_name,
                            region=region, endpoint=client.meta.endpoint_url) from exc
        except _PARSER_ERRORS as exc:
            raise _unusable(_BadAnswer(f"botocore could not parse it ({exc})"),
                            operation="GetLayerVersionPolicy",
                            where=f"layer '{layer_name}' in {region}",
                            endpoint=_endpoint_of(client)) from exc
        with _answer("GetLayerVersionPolicy", layer=layer_name, region=region, client=client):
            try:
                policy = json.loads(_may(response, "Policy", str) or "{}")
            except (ValueError, RecursionError) as exc:  # a policy document is short JSON
                raise _BadAnswer("its Policy is not a JSON document") from exc
            statements = _may(policy, "Statement", object) or []
        if isinstance(statements, dict):
            statements = [statements]
        if not isinstance(statements, list):
            statements = []
        return frozenset(str(statement["Sid"]) for statement in statements
                         if isinstance(statement, dict) and isinstance(statement.get("Sid"), str))

    def add_permission(self, *, region: str, layer_name: str, version: int,
                       grant: model.Grant) -> None:
        """AddLayerVersionPermission; ResourceConflictException (the statement ID exists:
        an earlier, maybe unanswered, attempt made it) is success, never a second one."""
        client = self.client(region)
        kwargs: dict[str, Any] = {
            "LayerName": layer_name, "VersionNumber": version,
            "StatementId": grant.statement_id, "Action": "lambda:GetLayerVersion",
            "Principal": grant.principal if grant.kind == "account" else "*",
        }
        if grant.kind == "organization":
            kwargs["OrganizationId"] = grant.principal
        with _translated("AddLayerVersionPermission", layer=layer_name, region=region,
                         client=client, tolerate=frozenset({"ResourceConflictException"})):
            client.add_layer_version_permission(**kwargs)

    def remove_permission(self, *, region: str, layer_name: str, version: int,
                          statement_id: str) -> None:
        """RemoveLayerVersionPermission; a statement already gone is no error."""
        client = self.client(region)
        with _translated("RemoveLayerVersionPermission", layer=layer_name, region=region,
                         client=client, tolerate=frozenset({"ResourceNotFoundException"})):
            client.remove_layer_version_permission(LayerName=layer_name, VersionNumber=version,
                                                   StatementId=statement_id)

    def function_uses(self, *, region: str) -> dict[str, tuple[str, ...]]:
        """ListFunctions with FunctionVersion=ALL, every page: each configuration's Layers."""
        client = self.client(region)
        uses: dict[str, set[str]] = {}
        marker: str | None = None
        while True:
            kwargs: dict[str, Any] = {"FunctionVersion": "ALL", "MaxItems": PAGE_SIZE}
            if marker:
                kwargs["Marker"] = marker
            with _translated("ListFunctions", layer=None, region=region, client=client):
                page = client.list_functions(**kwargs)
            with _answer("ListFunctions", layer=None, region=region, client=client):
                for function in _may(page, "Functions", list) or []:
                    name = (f"{_need(function, 'FunctionName', str)}:"
                            f"{_may(function, 'Version', str) or '$LATEST'}")
                    for layer in _may(function, "Layers", list) or []:
                        uses.setdefault(_need(layer, "Arn", str), set()).add(name)
                marker = _may(page, "NextMarker", str)
            if not marker:
                return {arn: tuple(sorted(names)) for arn, names in uses.items()}

    def code_storage(self, *, region: str) -> model.CodeStorage | None:
        """GetAccountSettings: AccountUsage.TotalCodeSize against AccountLimit.TotalCodeSize.

        None when the endpoint will not say (moto and some emulators do not implement it;
        credentials may lack lambda:GetAccountSettings): the storage warning is only
        advice, so its absence must not stop a plan."""
        client = self.client(region)
        try:
            response = client.get_account_settings()
        except botocore.exceptions.ClientError:
            return None
        except botocore.exceptions.BotoCoreError as exc:
            raise translate(exc, operation="GetAccountSettings", layer=None, region=region,
                            endpoint=client.meta.endpoint_url) from exc
        except _PARSER_ERRORS:
            return None  # only advice, as above
        try:
            return model.CodeStorage(used=_need(response, "AccountUsage.TotalCodeSize", int),
                                     limit=_need(response, "AccountLimit.TotalCodeSize", int))
        except _BadAnswer:
            return None  # only advice, as above

    def account_id(self) -> str:
        """STS GetCallerIdentity (only called when the manifest names a layer by ARN)."""
        client = self._new_client("sts", region=self.default_region() or "us-east-1")
        with _translated("GetCallerIdentity", layer=None, region=None, client=client):
            identity = client.get_caller_identity()
        with _answer("GetCallerIdentity", layer=None, region=None, client=client):
            return _need(identity, "Account", str)


def _s3_where(location: model.S3Object, region: str) -> str:
    return f"s3://{location.bucket}/{location.key} in {region}"


def _s3_error(exc: Exception, *, operation: str, location: model.S3Object, region: str,
              client: Any) -> errors.AwsError:
    """The AwsError for a failed S3 call on `location`, with the permission it needs."""
    where = f"s3://{location.bucket}/{location.key}"
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", "")).strip() or code
        if code in _CREDENTIAL_ERROR_CODES:
            return translate(exc, operation=f"{operation} {where}", layer=None, region=region,
                             endpoint=_endpoint_of(client))
        if code in ("NoSuchBucket",):
            return errors.AwsError(f"{operation} {where} in {region}: the bucket "
                                   f"{location.bucket} does not exist", aws_code=code,
                                   hint="create it in that region, or fix `artifact_bucket` / "
                                        "`content.s3.bucket` in the manifest")
        if code in ("AccessDenied", "403", "Forbidden"):
            action = "s3:PutObject" if operation == "PutObject" else "s3:GetObject"
            return errors.AwsError(f"access denied: {operation} {where} in {region}: {message}",
                                   hint=f"the credentials lack {action} on that bucket",
                                   aws_code=code)
        return errors.AwsError(f"{operation} {where} in {region} failed ({code}): {message}",
                               aws_code=code)
    return translate(exc, operation=f"{operation} {where}", layer=None, region=region,
                     endpoint=getattr(getattr(client, "meta", None), "endpoint_url", None))


class _translated:
    """Turn botocore exceptions raised inside the block into errors.AwsError."""

    def __init__(self, operation: str, *, layer: str | None, region: str | None,
                 client: Any, tolerate: frozenset[str] = frozenset()) -> None:
        self.operation, self.layer, self.region, self.client = operation, layer, region, client
        # AWS error codes that mean the call's goal already holds: swallowed, not raised.
        self.tolerate = tolerate

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> bool:
        if isinstance(exc, _PARSER_ERRORS):  # the block holds one client call: botocore's
            where = (f"layer '{self.layer}' in {self.region}" if self.layer
                     else (self.region or "AWS"))
            raise _unusable(_BadAnswer(f"botocore could not parse it ({exc})"),
                            operation=self.operation, where=where,
                            endpoint=_endpoint_of(self.client)) from exc
        if exc is None or not isinstance(exc, botocore.exceptions.BotoCoreError
                                         | botocore.exceptions.ClientError):
            return False
        if isinstance(exc, botocore.exceptions.ClientError) and \
                exc.response.get("Error", {}).get("Code") in self.tolerate:
            return True
        raise translate(exc, operation=self.operation, layer=self.layer, region=self.region,
                        endpoint=getattr(getattr(self.client, "meta", None), "endpoint_url",
                                         None)) from exc


_DOWNLOAD_CHUNK = 1024 * 1024
_DOWNLOAD_TIMEOUT = 60.0
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _without_query(url: str) -> str:
    """`url` without its query string and fragment (a presigned URL's signature)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _downloadable(url: str) -> bool:
    """An https URL, or http to a loopback host (LocalStack, a test's server)."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http"
                                       and parts.hostname in _LOOPBACK_HOSTS)


# Failures that happen before a byte of the request is sent: nothing reached Lambda.
_NOT_SENT_ERRORS = (botocore.exceptions.EndpointConnectionError,
                    botocore.exceptions.ConnectTimeoutError)


def publish_error(exc: Exception, *, layer: str, region: str, endpoint: str | None,
                  sent: bool) -> errors.AwsError:
    """What is known about a failed PublishLayerVersion (`sent`: it reached the wire), with
    no secret of a URL in its words (see _publish_error)."""
    return _redacted(_publish_error(exc, layer=layer, region=region, endpoint=endpoint,
                                    sent=sent))


_Error = TypeVar("_Error", bound=errors.ReconcilerError)


def _redacted(error: _Error) -> _Error:
    """`error` with the userinfo and presigned query strings of every URL in its message and
    hint redacted: endpoint URLs and botocore's own messages quote them."""
    error.message = errors.redact_urls(error.message)
    error.args = (error.message,)
    if error.hint is not None:
        error.hint = errors.redact_urls(error.hint)
    return error


def _publish_error(exc: Exception, *, layer: str, region: str, endpoint: str | None,
                   sent: bool) -> errors.AwsError:
    """What is known about a failed PublishLayerVersion (`sent`: it reached the wire).

    A reply of 4xx (429 throttling included) means Lambda refused it: no version. A
    failure before the request was sent (no credentials, invalid parameters) or while
    connecting made none either. Anything else after sending (5xx, a read timeout, a reset
    or closed connection, an unreadable reply) leaves the outcome unknown."""
    known = translate(exc, operation="PublishLayerVersion", layer=layer, region=region,
                      endpoint=endpoint)
    refused = False
    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        # Throttling means "not processed" whatever the status (S3's SlowDown is a 503).
        refused = (isinstance(status, int) and 400 <= status < 500) or (
            known.aws_code in THROTTLING_CODES)
    if refused or (not isinstance(exc, botocore.exceptions.ClientError)
                   and (not sent or isinstance(exc, _NOT_SENT_ERRORS))):
        what = ("it was refused and made no version" if refused
                else "it was never sent and made no version")
        message, hint = known.message, known.hint
        if known.aws_code in THROTTLING_CODES:
            # The publish client makes one attempt: no "retries ran out", no --max-attempts.
            message = (f"PublishLayerVersion for layer '{layer}' in {region} was throttled: "
                       f"{_describe(exc)}")
            hint = "retry later: Lambda throttles PublishLayerVersion per account and region"
        return errors.PublishNotSent(f"{message} ({what})", hint=hint, aws_code=known.aws_code)
    return errors.PublishOutcomeUnknown(
        f"PublishLayerVersion for layer '{layer}' in {region} was sent, but its outcome is "
        f"unknown: {_describe(exc)}", hint="run plan: it adopts the version if one was made",
        aws_code=known.aws_code)


def _describe(exc: Exception) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = error.get("Code", "Unknown")
        return f"HTTP {status} {code}: {str(error.get('Message', '')).strip() or code}"
    if isinstance(exc, botocore.exceptions.ReadTimeoutError):
        return f"no reply within the read timeout ({exc})"
    if isinstance(exc, botocore.exceptions.ConnectionClosedError):
        return f"the connection was closed or reset before the reply ({exc})"
    return str(exc)


# Codes that say the credentials themselves are bad (often with HTTP 403), not that they
# lack a permission: each with what it means (Lambda's, STS's and S3's names differ).
_UNKNOWN_KEY = "the access key ID is not known to AWS (a wrong or deleted key)"
_WRONG_SECRET = ("the request's signature does not match: the secret access key does not "
                 "belong to the access key ID (or a proxy changed the request)")
_EXPIRED = "the session token has expired"
_CREDENTIAL_ERRORS = {
    "InvalidAccessKeyId": _UNKNOWN_KEY, "UnrecognizedClientException": _UNKNOWN_KEY,
    "InvalidClientTokenId": _UNKNOWN_KEY,
    "SignatureDoesNotMatch": _WRONG_SECRET, "InvalidSignatureException": _WRONG_SECRET,
    "ExpiredToken": _EXPIRED, "ExpiredTokenException": _EXPIRED,
    "TokenRefreshRequired": _EXPIRED, "RequestExpired": "the request's signing time is too "
    "far from AWS's clock (check this machine's clock)",
    "InvalidToken": "the session token is malformed or not valid",
}
_CREDENTIAL_ERROR_CODES = frozenset(_CREDENTIAL_ERRORS)


def _configuration_error(exc: Exception) -> errors.CredentialsError:
    """A mistake in the AWS configuration (files, environment, region) rather than a call."""
    return errors.CredentialsError(
        f"the AWS configuration is not usable: {exc}",
        hint="check AWS_* environment variables, --profile and ~/.aws/config")


def translate(exc: Exception, *, operation: str, layer: str | None, region: str | None,
              endpoint: str | None) -> errors.AwsError:
    """The AwsError (with a hint) for a botocore exception raised by `operation`, with no
    secret of a URL (userinfo, presigned query) in its words."""
    return _redacted(_translate(exc, operation=operation, layer=layer, region=region,
                                endpoint=endpoint))


def _translate(exc: Exception, *, operation: str, layer: str | None, region: str | None,
               endpoint: str | None) -> errors.AwsError:
    where = f"layer '{layer}' in {region}" if layer else (region or "AWS")
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", "")).strip() or code
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "CodeStorageExceededException":
            return errors.AwsError(
                f"{operation} for {where}: Lambda's code storage is full: {message}",
                hint="every layer version ever published counts against the 75 GB code "
                     "storage quota of the region until it is deleted; delete old versions "
                     "(retention) or ask AWS Support for a higher quota",
                aws_code=code)
        if code in ("InvalidParameterValueException", "ValidationException",
                    "RequestTooLargeException"):
            return errors.AwsError(f"Lambda rejected {operation} for {where}: {message}",
                                   aws_code=code)
        if code == "ResourceNotFoundException":
            return errors.AwsError(f"{operation} for {where}: not found: {message}", aws_code=code)
        if code in _CREDENTIAL_ERROR_CODES:
            return errors.CredentialsError(
                f"AWS did not accept the credentials for {operation}: {_CREDENTIAL_ERRORS[code]} "
                f"({code}: {message})",
                hint="refresh them (aws sso login, or new keys) or pick another --profile",
                aws_code=code)
        if code in ("AccessDeniedException", "AccessDenied") or status == 403:
            return errors.AwsError(
                f"access denied: {operation} for {where}: {message}",
                hint=f"the credentials lack lambda:{operation}" if operation != "GetCallerIdentity"
                else "the credentials lack sts:GetCallerIdentity",
                aws_code=code)
        if code in ("TooManyRequestsException", "ThrottlingException", "Throttling"):
            return errors.AwsError(
                f"{operation} for {where} was throttled and retries ran out: {message}",
                hint="retry later, or raise --max-attempts", aws_code=code)
        return errors.AwsError(f"{operation} for {where} failed ({code}): {message}", aws_code=code)
    if isinstance(exc, (botocore.exceptions.NoCredentialsError,
                        botocore.exceptions.PartialCredentialsError)):
        return errors.CredentialsError(
            f"no AWS credentials found for {operation}",
            hint="set AWS_PROFILE (or --profile), or AWS_ACCESS_KEY_ID and "
                 "AWS_SECRET_ACCESS_KEY; `validate` needs none")
    if isinstance(exc, botocore.exceptions.NoRegionError):
        return errors.CredentialsError(
            "no AWS region", hint="set `region:` in the manifest, or AWS_REGION")
    if isinstance(exc, botocore.exceptions.ReadTimeoutError):
        return errors.EndpointError(
            f"the AWS endpoint {endpoint or ''} did not answer {operation} in time: {exc}",
            hint="check --endpoint-url / AWS_ENDPOINT_URL and the network; --timeout SECONDS "
                 "waits longer for each reply")
    if isinstance(exc, (botocore.exceptions.EndpointConnectionError,
                        botocore.exceptions.ConnectTimeoutError)):
        return errors.EndpointError(
            f"cannot reach the AWS endpoint {endpoint or ''} for {operation}: {exc}",
            hint="check --endpoint-url / AWS_ENDPOINT_URL and the network")
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        return errors.AwsError(f"{operation} for {where}: invalid parameters: {exc}")
    return errors.AwsError(f"{operation} for {where} failed: {exc}")


class Boto3ObjectStore:
    """ports.ObjectStore over botocore's S3 client, for the one bucket of an S3 state.

    Credentials, profile and endpoint come from the standard chain, as for
    Boto3LayerStore. Conditional writes are sent as PutObject's IfMatch / IfNoneMatch; S3
    refuses them with 412 PreconditionFailed (409 ConditionalRequestConflict when two race),
    which become errors.PreconditionFailed. Other failures become StateError (the bucket is
    missing, access is denied) or AwsError, with hints; no message ever holds a credential.
    """

    def __init__(self, *, bucket: str, profile: str | None = None,
                 endpoint_url: str | None = None, region: str | None = None,
                 max_attempts: int | None = None, timeout: float | None = None) -> None:
        try:
            session = _session(profile)
            config = botocore.config.Config(user_agent_extra="reconcile-layers",
                                            connect_timeout=timeout or DEFAULT_TIMEOUT,
                                            read_timeout=timeout or DEFAULT_TIMEOUT)
            if max_attempts is not None:
                config = config.merge(botocore.config.Config(
                    retries={"mode": "standard", "total_max_attempts": max_attempts}))
            self._client: Any = session.create_client(
                "s3", region_name=region or session.get_config_variable("region") or "us-east-1",
                endpoint_url=endpoint_url, config=config)
        except botocore.exceptions.ProfileNotFound as exc:
            raise errors.CredentialsError(
                str(exc), hint="check --profile / AWS_PROFILE against ~/.aws/config"
            ) from exc
        except ValueError as exc:
            raise errors.EndpointError(
                f"cannot use the endpoint {endpoint_url or '(from AWS_ENDPOINT_URL)'}: {exc}",
                hint="--endpoint-url / AWS_ENDPOINT_URL must be a URL like "
                     "http://127.0.0.1:5000") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise _configuration_error(exc) from exc
        self._bucket = bucket

    @property
    def client(self) -> Any:
        """The S3 client (tests register botocore event hooks on it)."""
        return self._client

    @property
    def bucket(self) -> str:
        """The bucket's name."""
        return self._bucket

    @property
    def endpoint(self) -> str:
        """The endpoint URL the client talks to."""
        return str(self._client.meta.endpoint_url)

    def get(self, key: str) -> tuple[bytes, str] | None:
        """GetObject: (bytes, ETag), or None when there is no such key."""
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=key)
            return bytes(response["Body"].read()), self._etag(response, "GetObject", key)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise self._error(exc, operation="GetObject", key=key) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error(exc, operation="GetObject", key=key) from exc

    def put(self, key: str, data: bytes, *, if_match: str | None = None,
            if_none_match: bool = False) -> str:
        """PutObject with the conditions given; the new ETag."""
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Key": key, "Body": data,
                                  "ContentType": "application/json"}
        if if_match is not None:
            kwargs["IfMatch"] = if_match
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        try:
            return self._etag(self._client.put_object(**kwargs), "PutObject", key)
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            # If-Match on an object that is gone is refused with 404 NoSuchKey: the object
            # is not at that ETag, which is all a caller of a conditional write asks.
            if error.get("Code") in ("PreconditionFailed", "ConditionalRequestConflict") \
                    or status in (409, 412) or (if_match is not None
                                                and error.get("Code") == "NoSuchKey"):
                raise errors.PreconditionFailed(
                    f"s3://{self._bucket}/{key}: the conditional write was refused "
                    f"({error.get('Code', status)})") from exc
            raise self._error(exc, operation="PutObject", key=key) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error(exc, operation="PutObject", key=key) from exc

    def _etag(self, response: Any, operation: str, key: str) -> str:
        """The answer's ETag, the revision every conditional write names: an answer without
        one is a failed call (a write's caller reads the object back), never a KeyError."""
        etag = response.get("ETag") if isinstance(response, dict) else None
        if not isinstance(etag, str) or not etag:
            raise errors.StateError(
                f"s3://{self._bucket}/{key}: S3 answered {operation} without an ETag",
                hint="the state store must answer as S3 does (ETag on every GetObject and "
                     "PutObject)")
        return etag

    def delete(self, key: str) -> None:
        """DeleteObject (S3 answers 204 whether or not the key existed)."""
        try:
            self._client.delete_object(Bucket=self._bucket, Key=key)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error(exc, operation="DeleteObject", key=key) from exc

    def listing(self, prefix: str) -> list[ports.StoredKey]:
        """ListObjectsV2 under `prefix`, every page."""
        found: list[ports.StoredKey] = []
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix}
        try:
            while True:
                response = self._client.list_objects_v2(**kwargs)
                for item in response.get("Contents", []):
                    key, modified = item.get("Key"), item.get("LastModified")
                    if isinstance(key, str) and isinstance(modified, datetime.datetime):
                        found.append(ports.StoredKey(key=key, last_modified=modified))
                token = response.get("NextContinuationToken")
                if not response.get("IsTruncated") or not token:
                    return found
                kwargs["ContinuationToken"] = token
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error(exc, operation="ListBucket", key=prefix) from exc

    def _error(self, exc: Exception, *, operation: str, key: str) -> errors.ReconcilerError:
        """The StateError or AwsError (with a hint) for a failed S3 call on `key`."""
        where = f"s3://{self._bucket}/{key}"
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "Unknown"))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                return errors.StateError(
                    f"{operation} {where}: the bucket {self._bucket} does not exist "
                    f"(at {self.endpoint})",
                    hint="create the bucket, or fix `state:` in the manifest")
            if code in ("AccessDenied", "AllAccessDisabled") or (
                    status == 403 and code not in _CREDENTIAL_ERROR_CODES):
                return errors.StateError(
                    f"access denied: {operation} {where}",
                    hint=f"the credentials lack s3:{operation} on "
                         f"arn:aws:s3:::{self._bucket}/{key}")
            if code in ("PermanentRedirect", "AuthorizationHeaderMalformed",
                        "IllegalLocationConstraintException"):
                return errors.StateError(
                    f"{operation} {where}: the bucket is in another region ({code})",
                    hint="set AWS_REGION to the bucket's region")
        return translate(exc, operation=operation, layer=None, region=None,
                         endpoint=self.endpoint)
