"""The AWS adapter: `aws.Boto3LayerStore` against a real moto server (the contract), and, for
what moto cannot emulate (pagination, server-side rejections, throttling, unreachable
endpoints, missing credentials), botocore's Stubber and `before-send` event hooks."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.awsrequest
import botocore.compat
import botocore.exceptions
import botocore.stub
import pytest
from bototyping import before_send, options

from reconciler import aws, errors, model

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
LAYER = "shared-utils"

SETTINGS = model.Settings.normalised(
    description="Shared helpers",
    compatible_runtimes=["python3.13", "python3.12"],
    compatible_architectures=["x86_64", "arm64"],
    license_info="MIT",
)


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    """Write a zip holding `files` (arcname -> bytes) at `path` and return the path."""
    with zipfile.ZipFile(path, "w") as archive:
        for arcname, data in files.items():
            archive.writestr(arcname, data)
    return path


def code_sha256(path: Path) -> str:
    """What Lambda reports as CodeSha256: base64 of the SHA-256 of the zip's bytes."""
    return base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode("ascii")


def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def layer_arn(name: str, version: int) -> str:
    """The LayerVersionArn moto gives `name`'s `version` in REGION."""
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{name}:{version}"


@pytest.fixture
def zips(tmp_path: Path) -> tuple[Path, Path]:
    """Two different layer zips."""
    first = make_zip(tmp_path / "one.zip", {"python/util.py": b"VALUE = 1\n"})
    second = make_zip(tmp_path / "two.zip", {"python/util.py": b"VALUE = 2\n",
                                             "python/extra.py": b"X = 'x' * 100\n"})
    return first, second


@pytest.fixture
def offline(aws_isolated: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a region, and an endpoint nothing listens on: a request that
    escapes a stub fails fast instead of reaching real AWS."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")


@pytest.fixture
def stubs(offline: None) -> Iterator[tuple[aws.Boto3LayerStore, botocore.stub.Stubber,
                                          botocore.stub.Stubber]]:
    """A store whose us-east-1 read client and publish client answer from Stubbers
    (store, reads, publishes); every queued answer must be used."""
    store = aws.Boto3LayerStore()
    with botocore.stub.Stubber(store.client(REGION)) as reads, \
            botocore.stub.Stubber(store.publish_client(REGION)) as publishes:
        yield store, reads, publishes
        reads.assert_no_pending_responses()
        publishes.assert_no_pending_responses()


@pytest.fixture
def stubbed(stubs: tuple[aws.Boto3LayerStore, botocore.stub.Stubber, botocore.stub.Stubber]
            ) -> tuple[aws.Boto3LayerStore, botocore.stub.Stubber]:
    """A store whose us-east-1 read client answers from a Stubber."""
    return stubs[0], stubs[1]


# --- (a) the contract, against moto -------------------------------------------------------


def test_latest_version_of_unknown_layer_is_none(moto_url: str) -> None:
    """A layer that was never published has no latest version."""
    assert aws.Boto3LayerStore().latest_version(region=REGION, layer_name="nothing") is None


def test_latest_version_after_two_publishes(moto_url: str, zips: tuple[Path, Path]) -> None:
    """After two publishes the latest is version 2 with its ARN and normalised settings."""
    store = aws.Boto3LayerStore()
    store.publish(region=REGION, layer_name=LAYER, settings=model.Settings(), zip_path=zips[0])
    store.publish(region=REGION, layer_name=LAYER, settings=SETTINGS, zip_path=zips[1])

    latest = store.latest_version(region=REGION, layer_name=LAYER)

    assert latest == model.RemoteVersion(
        version=2,
        layer_version_arn=layer_arn(LAYER, 2),
        settings=model.Settings(
            description="Shared helpers",
            compatible_runtimes=("python3.12", "python3.13"),
            compatible_architectures=("arm64", "x86_64"),
            license_info="MIT",
        ),
    )


def test_publish_reports_version_settings_and_code(
        moto_url: str, zips: tuple[Path, Path]) -> None:
    """publish returns the version, its settings, CodeSha256 = b64(sha256(zip)) and CodeSize."""
    store = aws.Boto3LayerStore()

    published = store.publish(region=REGION, layer_name=LAYER, settings=SETTINGS,
                              zip_path=zips[1])

    assert published == model.RemoteVersion(
        version=1,
        layer_version_arn=layer_arn(LAYER, 1),
        settings=SETTINGS,
        code_sha256=code_sha256(zips[1]),
        code_size=zips[1].stat().st_size,
    )


def test_publish_with_empty_settings_reads_back_as_empty(
        moto_url: str, zips: tuple[Path, Path]) -> None:
    """Default (empty) settings publish and read back equal to model.Settings()."""
    store = aws.Boto3LayerStore()

    published = store.publish(region=REGION, layer_name=LAYER, settings=model.Settings(),
                              zip_path=zips[0])
    latest = store.latest_version(region=REGION, layer_name=LAYER)

    assert published.settings == model.Settings()
    assert latest is not None
    assert latest.settings == model.Settings()


def test_with_code_fills_code_sha256_and_size(moto_url: str, zips: tuple[Path, Path]) -> None:
    """with_code adds GetLayerVersion's CodeSha256 and CodeSize and keeps the rest."""
    store = aws.Boto3LayerStore()
    store.publish(region=REGION, layer_name=LAYER, settings=SETTINGS, zip_path=zips[0])
    store.publish(region=REGION, layer_name=LAYER, settings=SETTINGS, zip_path=zips[1])
    listed = store.latest_version(region=REGION, layer_name=LAYER)
    assert listed is not None

    full = store.with_code(region=REGION, layer_name=LAYER, version=listed)

    assert full == model.RemoteVersion(
        version=2,
        layer_version_arn=listed.layer_version_arn,
        settings=listed.settings,
        code_sha256=code_sha256(zips[1]),
        code_size=zips[1].stat().st_size,
    )


def test_endpoint_comes_from_aws_endpoint_url(moto_url: str, zips: tuple[Path, Path]) -> None:
    """Without endpoint_url the store talks to AWS_ENDPOINT_URL (here: the moto server)."""
    store = aws.Boto3LayerStore()

    store.publish(region=REGION, layer_name=LAYER, settings=SETTINGS, zip_path=zips[0])

    assert store.client(REGION).meta.endpoint_url == moto_url
    seen_by_moto = boto3.client("lambda", region_name=REGION, endpoint_url=moto_url)
    listed = seen_by_moto.list_layer_versions(LayerName=LAYER)["LayerVersions"]
    assert [item["Version"] for item in listed] == [1]


def test_endpoint_url_argument_overrides_environment(
        moto_url: str, zips: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """endpoint_url= wins over AWS_ENDPOINT_URL."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    store = aws.Boto3LayerStore(endpoint_url=moto_url, max_attempts=1)

    store.publish(region=REGION, layer_name=LAYER, settings=SETTINGS, zip_path=zips[0])

    assert store.client(REGION).meta.endpoint_url == moto_url
    latest = store.latest_version(region=REGION, layer_name=LAYER)
    assert latest is not None
    assert latest.version == 1


def test_version_numbers_never_go_back(moto_url: str, zips: tuple[Path, Path]) -> None:
    """After deleting versions 1 and 2 there is no latest, and the next publish is version 3."""
    store = aws.Boto3LayerStore()
    store.publish(region=REGION, layer_name=LAYER, settings=SETTINGS, zip_path=zips[0])
    store.publish(region=REGION, layer_name=LAYER, settings=SETTINGS, zip_path=zips[1])
    other_client = boto3.client("lambda", region_name=REGION)
    for number in (1, 2):
        other_client.delete_layer_version(LayerName=LAYER, VersionNumber=number)

    assert store.latest_version(region=REGION, layer_name=LAYER) is None
    published = store.publish(region=REGION, layer_name=LAYER, settings=SETTINGS,
                              zip_path=zips[0])
    assert (published.version, published.layer_version_arn) == (3, layer_arn(LAYER, 3))
    latest = store.latest_version(region=REGION, layer_name=LAYER)
    assert latest is not None
    assert latest.version == 3


def test_regions_are_separate(moto_url: str, zips: tuple[Path, Path]) -> None:
    """A layer published in one region does not exist in another; each has its own client."""
    store = aws.Boto3LayerStore()
    store.publish(region=REGION, layer_name=LAYER, settings=SETTINGS, zip_path=zips[0])

    assert store.latest_version(region="eu-west-1", layer_name=LAYER) is None
    assert store.client("eu-west-1") is not store.client(REGION)
    assert store.client(REGION) is store.client(REGION)


def test_account_id_is_the_callers_account(moto_url: str) -> None:
    """account_id() is STS GetCallerIdentity's account (moto's 123456789012)."""
    assert aws.Boto3LayerStore().account_id() == ACCOUNT


# --- default region -----------------------------------------------------------------------


def test_default_region_reads_aws_default_region(
        aws_isolated: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """default_region() is AWS_DEFAULT_REGION when it is the only region variable set."""
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")

    assert aws.Boto3LayerStore().default_region() == "eu-central-1"


def test_default_region_is_none_without_any_region(
        aws_isolated: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """default_region() is None when neither variable nor profile names a region."""
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)

    assert aws.Boto3LayerStore().default_region() is None


# --- (b) what moto cannot emulate: Stubber ------------------------------------------------


def listed(version: int, **extra: Any) -> dict[str, Any]:
    """A ListLayerVersions item for LAYER's `version`."""
    return {"LayerVersionArn": layer_arn(LAYER, version), "Version": version,
            "CreatedDate": "2024-01-01T00:00:00.000+0000", **extra}


def test_latest_version_reads_every_page_and_takes_the_highest(
        stubbed: tuple[aws.Boto3LayerStore, botocore.stub.Stubber]) -> None:
    """latest_version follows NextMarker (MaxItems=50) and takes the highest version of any page."""
    store, stubber = stubbed
    first_request = {"LayerName": LAYER, "MaxItems": 50}
    stubber.add_response("list_layer_versions",
                         {"LayerVersions": [listed(3), listed(7)], "NextMarker": "page-2"},
                         expected_params=first_request)
    stubber.add_response("list_layer_versions",
                         {"LayerVersions": [listed(1), listed(9, Description="nine",
                                                              CompatibleRuntimes=["python3.12"])],
                          "NextMarker": "page-3"},
                         expected_params={**first_request, "Marker": "page-2"})
    stubber.add_response("list_layer_versions", {"LayerVersions": [listed(5)]},
                         expected_params={**first_request, "Marker": "page-3"})

    latest = store.latest_version(region=REGION, layer_name=LAYER)

    assert latest == model.RemoteVersion(
        version=9, layer_version_arn=layer_arn(LAYER, 9),
        settings=model.Settings(description="nine", compatible_runtimes=("python3.12",)))


def test_listed_version_has_no_code_sha256(
        stubbed: tuple[aws.Boto3LayerStore, botocore.stub.Stubber]) -> None:
    """A listed version has no code_sha256/code_size: ListLayerVersions items carry none."""
    store, stubber = stubbed
    stubber.add_response("list_layer_versions", {"LayerVersions": [listed(4)]},
                         expected_params={"LayerName": LAYER, "MaxItems": 50})

    latest = store.latest_version(region=REGION, layer_name=LAYER)

    assert latest is not None
    assert (latest.version, latest.code_sha256, latest.code_size) == (4, None, None)


def test_empty_page_with_no_marker_means_no_versions(
        stubbed: tuple[aws.Boto3LayerStore, botocore.stub.Stubber]) -> None:
    """An empty first page without NextMarker means the layer has no version."""
    store, stubber = stubbed
    stubber.add_response("list_layer_versions", {"LayerVersions": []},
                         expected_params={"LayerName": LAYER, "MaxItems": 50})

    assert store.latest_version(region=REGION, layer_name=LAYER) is None


def test_versions_above_reads_every_page_and_fetches_each_code(
        stubbed: tuple[aws.Boto3LayerStore, botocore.stub.Stubber]) -> None:
    """versions_above follows NextMarker, keeps only versions above the given one (lowest
    first, whatever the page order) and asks GetLayerVersion for each one's CodeSha256."""
    store, stubber = stubbed
    first_request = {"LayerName": LAYER, "MaxItems": 50}
    stubber.add_response("list_layer_versions",
                         {"LayerVersions": [listed(7), listed(2)], "NextMarker": "page-2"},
                         expected_params=first_request)
    stubber.add_response("list_layer_versions", {"LayerVersions": [listed(5), listed(3)]},
                         expected_params={**first_request, "Marker": "page-2"})
    for number in (5, 7):
        stubber.add_response(
            "get_layer_version",
            {"Version": number, "LayerVersionArn": layer_arn(LAYER, number),
             "Content": {"CodeSha256": f"sha-{number}", "CodeSize": number}},
            expected_params={"LayerName": LAYER, "VersionNumber": number})

    above = store.versions_above(region=REGION, layer_name=LAYER, version=3)

    assert [(item.version, item.code_sha256, item.code_size) for item in above] == [
        (5, "sha-5", 5), (7, "sha-7", 7)]


def test_publish_client_never_retries_and_reads_keep_the_default(offline: None) -> None:
    """The publish client makes one attempt; the read client keeps botocore's standard mode
    (AWS_RETRY_MODE unset), or --max-attempts in standard mode when given."""
    default = aws.Boto3LayerStore()
    chosen = aws.Boto3LayerStore(max_attempts=7)

    assert options(default.publish_client(REGION).meta.config).retries == {
        "mode": "standard", "total_max_attempts": 1}
    assert options(default.client(REGION).meta.config).retries["mode"] == "standard"
    assert options(chosen.client(REGION).meta.config).retries == {
        "mode": "standard", "total_max_attempts": 7}
    assert options(chosen.publish_client(REGION).meta.config).retries == {
        "mode": "standard", "total_max_attempts": 1}


def test_users_retry_mode_governs_reads_not_publishes(
        offline: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_RETRY_MODE / AWS_MAX_ATTEMPTS from the environment shape the reads; the publish
    client still makes exactly one attempt."""
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "6")
    store = aws.Boto3LayerStore()

    assert options(store.client(REGION).meta.config).retries == {
        "mode": "adaptive", "total_max_attempts": 6}
    assert options(store.publish_client(REGION).meta.config).retries["total_max_attempts"] == 1


def test_read_timeout_applies_to_both_clients(offline: None) -> None:
    """read_timeout= sets the read timeout of the read and the publish clients."""
    store = aws.Boto3LayerStore(read_timeout=2.5)

    assert options(store.client(REGION).meta.config).read_timeout == 2.5
    assert options(store.publish_client(REGION).meta.config).read_timeout == 2.5


def _call(store: aws.Boto3LayerStore, operation: str, zip_path: Path) -> object:
    """Run the store method that makes the Lambda call `operation`."""
    if operation == "list_layer_versions":
        return store.latest_version(region=REGION, layer_name=LAYER)
    if operation == "get_layer_version":
        version = model.RemoteVersion(version=2, layer_version_arn=layer_arn(LAYER, 2),
                                      settings=SETTINGS)
        return store.with_code(region=REGION, layer_name=LAYER, version=version)
    assert operation == "publish_layer_version"
    return store.publish(region=REGION, layer_name=LAYER, settings=SETTINGS, zip_path=zip_path)


ERROR_CASES = [
    pytest.param(
        "publish_layer_version", "CodeStorageExceededException", 400,
        "Code storage limit exceeded.", errors.PublishNotSent,
        ["storage", LAYER, REGION], ["75 GB", "delete old versions"],
        id="code-storage-exceeded"),
    pytest.param(
        "publish_layer_version", "InvalidParameterValueException", 400,
        "Layers are limited to 15 compatible runtimes.", errors.PublishNotSent,
        ["Layers are limited to 15 compatible runtimes.", f"'{LAYER}'", REGION], [],
        id="invalid-parameter"),
    pytest.param(
        "get_layer_version", "ResourceNotFoundException", 404,
        "The resource you requested does not exist.", errors.AwsError,
        ["not found", "The resource you requested does not exist.", f"'{LAYER}'"], [],
        id="not-found"),
    pytest.param(
        "publish_layer_version", "AccessDeniedException", 403,
        "User is not authorized to perform: lambda:PublishLayerVersion", errors.PublishNotSent,
        ["access denied", f"'{LAYER}'"], ["lambda:PublishLayerVersion"],
        id="access-denied-publish"),
    pytest.param(
        "list_layer_versions", "AccessDeniedException", 403,
        "User is not authorized to perform: lambda:ListLayerVersions", errors.AwsError,
        ["access denied", f"'{LAYER}'"], ["lambda:ListLayerVersions"],
        id="access-denied-list"),
    pytest.param(
        "list_layer_versions", "UnrecognizedClientException", 403,
        "The security token included in the request is invalid.", errors.CredentialsError,
        ["The security token included in the request is invalid."], ["--profile"],
        id="unrecognized-client"),
    pytest.param(
        "list_layer_versions", "TooManyRequestsException", 429,
        "Rate exceeded", errors.AwsError,
        ["throttled", "Rate exceeded", f"'{LAYER}'"], ["--max-attempts"],
        id="too-many-requests"),
    pytest.param(
        "publish_layer_version", "TooManyRequestsException", 429,
        "Rate exceeded", errors.PublishNotSent,
        ["throttled", "Rate exceeded", f"'{LAYER}'"], ["retry later"],
        id="publish-throttled"),
    pytest.param(
        "publish_layer_version", "ServiceException", 500,
        "internal error", errors.PublishOutcomeUnknown,
        ["was sent, but its outcome is unknown", "HTTP 500 ServiceException", f"'{LAYER}'"],
        ["adopts"],
        id="publish-server-error"),
]


@pytest.mark.parametrize(
    ("operation", "code", "status", "aws_message", "error_type", "in_message", "in_hint"),
    ERROR_CASES)
def test_client_errors_become_aws_errors(
        stubs: tuple[aws.Boto3LayerStore, botocore.stub.Stubber, botocore.stub.Stubber],
        tmp_path: Path, operation: str, code: str, status: int, aws_message: str,
        error_type: type[errors.AwsError], in_message: list[str], in_hint: list[str]) -> None:
    """Each Lambda error code becomes the right AwsError (code, message, hint), chained from it;
    a refused publish is a PublishNotSent that says it made no version."""
    store, reads, publishes = stubs
    stubber = publishes if operation == "publish_layer_version" else reads
    stubber.add_client_error(operation, service_error_code=code, service_message=aws_message,
                             http_status_code=status)
    zip_path = make_zip(tmp_path / "layer.zip", {"python/a.py": b"A = 1\n"})

    with pytest.raises(errors.AwsError) as raised:
        _call(store, operation, zip_path)

    error = raised.value
    assert type(error) is error_type
    assert error.aws_code == code
    for fragment in in_message:
        assert fragment in error.message
    for fragment in in_hint:
        assert error.hint is not None
        assert fragment in error.hint
    assert isinstance(error.__cause__, botocore.exceptions.ClientError)
    assert error.__cause__.response["Error"]["Code"] == code
    if error_type is errors.PublishNotSent:
        assert "made no version" in error.message


def client_error(code: str, status: int, operation: str) -> botocore.exceptions.ClientError:
    """A ClientError as botocore raises it for `code` with HTTP `status`."""
    response: Any = {"Error": {"Code": code, "Message": f"{code} message"},
                     "ResponseMetadata": {"HTTPStatusCode": status}}
    return botocore.exceptions.ClientError(response, operation)


@pytest.mark.parametrize(("code", "operation"), [
    ("UnrecognizedClientException", "ListLayerVersions"),
    ("InvalidSignatureException", "ListLayerVersions"),
    ("ExpiredTokenException", "PublishLayerVersion"),
    ("ExpiredToken", "GetCallerIdentity"),
    ("InvalidClientTokenId", "GetCallerIdentity"),
])
def test_rejected_credentials_are_credentials_errors(code: str, operation: str) -> None:
    """A 403 saying the credentials are bad (not short of a permission) is a CredentialsError."""
    error = aws.translate(client_error(code, 403, operation), operation=operation,
                          layer=LAYER, region=REGION, endpoint=None)

    assert type(error) is errors.CredentialsError
    assert error.aws_code == code
    assert error.hint is not None
    assert "--profile" in error.hint


def test_access_denied_on_sts_names_sts_permission() -> None:
    """AccessDenied from GetCallerIdentity hints at sts:GetCallerIdentity, not a lambda one."""
    error = aws.translate(client_error("AccessDenied", 403, "GetCallerIdentity"),
                          operation="GetCallerIdentity", layer=None, region=None, endpoint=None)

    assert type(error) is errors.AwsError
    assert error.hint == "the credentials lack sts:GetCallerIdentity"


# --- (c) throttling and retries: a before-send hook in front of moto ----------------------


class CannedBody:
    """The raw body of a canned botocore response: `stream()` and `read()` over bytes."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data

    def read(self, *_: Any) -> bytes:
        return self._data


class Throttler:
    """A before-send handler: answers the first `throttles` requests with 429 Rate exceeded
    and lets the rest through; counts every attempt."""

    def __init__(self, throttles: int) -> None:
        self.throttles = throttles
        self.attempts = 0

    def __call__(self, request: botocore.awsrequest.AWSPreparedRequest,
                 **_: Any) -> botocore.awsrequest.AWSResponse | None:
        self.attempts += 1
        if self.attempts > self.throttles:
            return None
        body = json.dumps({"__type": "TooManyRequestsException",
                           "message": "Rate exceeded"}).encode()
        headers = botocore.compat.HTTPHeaders.from_dict(
            {"Content-Type": "application/json", "x-amzn-RequestId": "throttled"})
        return botocore.awsrequest.AWSResponse(request.url, 429, headers, CannedBody(body))


def throttled_store(*, max_attempts: int, throttles: int) -> tuple[aws.Boto3LayerStore, Throttler]:
    """A store whose ListLayerVersions calls go through a Throttler."""
    store = aws.Boto3LayerStore(max_attempts=max_attempts)
    throttler = Throttler(throttles)
    store.client(REGION).meta.events.register("before-send.lambda.ListLayerVersions",
                                              before_send(throttler))
    return store, throttler


def test_throttled_call_is_retried_until_it_succeeds(
        moto_url: str, zips: tuple[Path, Path]) -> None:
    """Two throttles with max_attempts=3 are retried away: the third attempt reaches Lambda."""
    aws.Boto3LayerStore().publish(region=REGION, layer_name=LAYER, settings=SETTINGS,
                                  zip_path=zips[0])
    store, throttler = throttled_store(max_attempts=3, throttles=2)

    latest = store.latest_version(region=REGION, layer_name=LAYER)

    assert latest is not None
    assert latest.version == 1
    assert throttler.attempts == 3


def test_throttling_beyond_max_attempts_is_an_aws_error(moto_url: str) -> None:
    """Throttled on every attempt: AwsError TooManyRequestsException hinting at --max-attempts."""
    store, throttler = throttled_store(max_attempts=2, throttles=5)

    with pytest.raises(errors.AwsError) as raised:
        store.latest_version(region=REGION, layer_name=LAYER)

    assert type(raised.value) is errors.AwsError
    assert raised.value.aws_code == "TooManyRequestsException"
    assert "Rate exceeded" in raised.value.message
    assert raised.value.hint is not None
    assert "--max-attempts" in raised.value.hint
    assert isinstance(raised.value.__cause__, botocore.exceptions.ClientError)
    assert throttler.attempts < 5


@pytest.mark.parametrize("max_attempts", [1, 2])
def test_max_attempts_counts_the_first_attempt(moto_url: str, max_attempts: int) -> None:
    """max_attempts is the number of attempts per call, the first one included."""
    store, throttler = throttled_store(max_attempts=max_attempts, throttles=5)

    with pytest.raises(errors.AwsError):
        store.latest_version(region=REGION, layer_name=LAYER)

    assert throttler.attempts == max_attempts


# --- (d) unreachable endpoint, missing credentials, unknown profile -----------------------


def test_unreachable_endpoint_is_an_endpoint_error(offline: None) -> None:
    """A closed endpoint gives EndpointError naming the endpoint, chained from botocore."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    store = aws.Boto3LayerStore(endpoint_url=endpoint, max_attempts=1)

    started = time.monotonic()
    with pytest.raises(errors.EndpointError) as raised:
        store.latest_version(region=REGION, layer_name=LAYER)

    assert endpoint in raised.value.message
    assert raised.value.hint is not None
    assert "--endpoint-url" in raised.value.hint
    assert isinstance(raised.value.__cause__, botocore.exceptions.EndpointConnectionError)
    assert time.monotonic() - started < 5


def test_missing_credentials_are_a_credentials_error(
        offline: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials anywhere in the chain: CredentialsError whose hint mentions AWS_PROFILE."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = aws.Boto3LayerStore(max_attempts=1)

    with pytest.raises(errors.CredentialsError) as raised:
        store.latest_version(region=REGION, layer_name=LAYER)

    assert raised.value.hint is not None
    assert "AWS_PROFILE" in raised.value.hint
    assert isinstance(raised.value.__cause__, botocore.exceptions.NoCredentialsError)


def test_unknown_profile_argument_is_a_credentials_error(aws_isolated: None) -> None:
    """profile= naming a profile that does not exist raises CredentialsError at once."""
    with pytest.raises(errors.CredentialsError) as raised:
        aws.Boto3LayerStore(profile="no-such-profile")

    assert "no-such-profile" in raised.value.message
    assert isinstance(raised.value.__cause__, botocore.exceptions.ProfileNotFound)


def test_unknown_aws_profile_variable_is_a_credentials_error(
        aws_isolated: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_PROFILE naming a profile that does not exist raises CredentialsError too."""
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")

    with pytest.raises(errors.CredentialsError) as raised:
        aws.Boto3LayerStore()

    assert "no-such-profile" in raised.value.message


def test_publish_from_s3_sends_bucket_key_and_version_not_the_zip(
        moto_url: str, zips: tuple[Path, Path]) -> None:
    """A publish from an S3 object sends S3Bucket/S3Key/S3ObjectVersion and no ZipFile, and
    HeadObject reports the object's size, version and single-part SHA-256 checksum."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="sources")
    s3.put_bucket_versioning(Bucket="sources", VersioningConfiguration={"Status": "Enabled"})
    put = s3.put_object(Bucket="sources", Key="layer.zip", Body=zips[1].read_bytes(),
                        ChecksumAlgorithm="SHA256")
    store = aws.Boto3LayerStore()
    location = model.S3Object(bucket="sources", key="layer.zip", version=put["VersionId"])
    found = store.head_object(region=REGION, location=location)
    assert found is not None
    assert (found.size, found.version_id, found.multipart) == (
        zips[1].stat().st_size, put["VersionId"], False)
    assert found.checksum_sha256 == code_sha256(zips[1])
    assert store.head_object(region=REGION, location=model.S3Object(
        bucket="sources", key="missing.zip")) is None
    sent: list[dict[str, Any]] = []
    store.publish_client(REGION).meta.events.register(
        "before-call.lambda.PublishLayerVersion",
        lambda params, **_: sent.append(json.loads(params["body"])))
    published = store.publish(region=REGION, layer_name=LAYER, settings=SETTINGS,
                              zip_path=None, s3_object=location)
    assert sent[0]["Content"] == {"S3Bucket": "sources", "S3Key": "layer.zip",
                                  "S3ObjectVersion": put["VersionId"]}
    assert published.code_sha256 == code_sha256(zips[1])


def test_workers_asking_at_once_share_one_client_per_region(aws_isolated: None) -> None:
    """Clients made concurrently from one store are one per region, whoever asks first."""
    import concurrent.futures

    store = aws.Boto3LayerStore(endpoint_url="http://127.0.0.1:1")
    regions = ["us-east-1", "eu-west-1", "ap-south-1"] * 8
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        clients = list(pool.map(store.client, regions))
    assert len({id(client) for client in clients}) == 3
    for region, client in zip(regions, clients, strict=True):
        assert client is store.client(region)
        assert client.meta.region_name == region
    store.prepare(["us-east-1", "us-west-2"])
    assert store.client("us-east-1") is clients[0]


def test_every_call_in_a_region_takes_a_token_of_its_bucket(moto_url: str) -> None:
    """At 1 request/s with a burst of 3, five calls in one region cannot end before 2 s have
    passed (3 + t tokens by time t): a lower bound that the limit guarantees, not a speed."""
    store = aws.Boto3LayerStore(max_rps=1.0)
    start = time.monotonic()
    for _ in range(5):
        store.latest_version(region=REGION, layer_name="nothing")
    assert time.monotonic() - start >= 1.9


def test_the_loader_knows_the_services_botocores_knows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sessions' data loader loads each kind of model a client loads for lambda, s3 and
    sts as botocore's own loader does (it lists only those three to check the name), still
    makes clients of other services (the `sso` and `sso-oidc` clients an IAM Identity Center
    profile needs), and still refuses a service botocore does not know."""
    monkeypatch.delenv("AWS_DATA_PATH", raising=False)
    import botocore.loaders

    session = aws.session.new_session(None)
    # A loader of the sessions' class, as new as botocore's: the process's shared loader holds
    # models botocore's S3 handlers have since edited in place (as they do every session's).
    ours = type(session.get_component("data_loader"))()
    theirs = botocore.loaders.create_loader()
    for service in ("lambda", "s3", "sts"):
        for kind in ("service-2", "endpoint-rule-set-1", "paginators-1"):
            assert ours.load_service_model(service, kind) == \
                theirs.load_service_model(service, kind)
    for service in ("sso", "sso-oidc"):
        assert session.create_client(service, region_name=REGION).meta.service_model
    with pytest.raises(botocore.exceptions.UnknownServiceError):
        ours.load_service_model("no-such-service", "service-2")


def test_sessions_of_one_process_share_one_loader_per_data_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sessions of one process (the CLI run twice in one process) share one data loader,
    so botocore's models and endpoints are parsed once; another AWS_DATA_PATH gets its own."""
    monkeypatch.delenv("AWS_DATA_PATH", raising=False)
    first, second = aws.session.new_session(None), aws.session.new_session(None)
    assert first.get_component("data_loader") is second.get_component("data_loader")
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    elsewhere = aws.session.new_session(None).get_component("data_loader")
    assert elsewhere is not first.get_component("data_loader")
    assert str(tmp_path) in elsewhere.search_paths


def test_the_loader_reads_models_from_aws_data_path(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A Lambda model of a later API version folder put under AWS_DATA_PATH is the one a
    session loads, as with botocore's own loader."""
    import botocore.loaders

    real = botocore.loaders.create_loader().load_service_model("lambda", "service-2")
    real["metadata"]["serviceFullName"] = "Lambda from AWS_DATA_PATH"
    folder = tmp_path / "models" / "lambda" / "2099-01-01"
    folder.mkdir(parents=True)
    (folder / "service-2.json").write_text(json.dumps(real))
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path / "models"))
    model_found = aws.session.new_session(None).get_service_model("lambda")
    assert model_found.metadata["serviceFullName"] == "Lambda from AWS_DATA_PATH"
