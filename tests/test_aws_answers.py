"""Every field read from an AWS answer is checked: an answer missing any field (a botocore
Stubber, one field removed at a time) or holding any JSON where a field belongs (a
`before-send` hook answering raw bytes, fuzzed with hypothesis) gives a result or a
ReconcilerError naming the call, never a KeyError or a TypeError; a publish whose answer
cannot be used is an unknown outcome (publishing looks for the version, then adopts it)."""

from __future__ import annotations

import copy
import json
import socket
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.awsrequest
import botocore.compat
import botocore.stub
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reconciler import aws, errors, model

REGION = "us-east-1"
LAYER = "lib"
ARN = f"arn:aws:lambda:{REGION}:123456789012:layer:{LAYER}"
SETTINGS = model.Settings.normalised(description="d", compatible_runtimes=["python3.12"],
                                     compatible_architectures=["arm64"], license_info="MIT")
S3 = model.S3Object(bucket="bucket", key="lib/x.zip", version=None)

Path_ = tuple[str | int, ...]


def _version(number: int) -> dict[str, Any]:
    return {"LayerVersionArn": f"{ARN}:{number}", "Version": number, "Description": "d",
            "CompatibleRuntimes": ["python3.12"], "CompatibleArchitectures": ["arm64"],
            "LicenseInfo": "MIT", "CreatedDate": "2024-01-01T00:00:00.000+0000"}


_CONTENT = {"Location": "https://example.invalid/x.zip", "CodeSha256": "c2hh",
            "CodeSize": 12}

# Each Lambda answer the store reads: (client method, complete answer, the store call, the
# fields whose absence must be an error, not a default).
ANSWERS: dict[str, tuple[str, dict[str, Any], Callable[[aws.Boto3LayerStore, Path], object],
                         set[Path_]]] = {
    "ListLayerVersions": (
        "list_layer_versions", {"LayerVersions": [_version(3)]},
        lambda store, _: store.latest_version(region=REGION, layer_name=LAYER),
        {("LayerVersions", 0, "Version"), ("LayerVersions", 0, "LayerVersionArn")}),
    "ListLayers": (
        "list_layers", {"Layers": [{"LayerName": LAYER, "LayerArn": ARN,
                                    "LatestMatchingVersion": _version(3)}]},
        lambda store, _: store.latest_versions(region=REGION, layer_names=[LAYER, "other"]),
        {("Layers", 0, "LatestMatchingVersion", "Version"),
         ("Layers", 0, "LatestMatchingVersion", "LayerVersionArn")}),
    "GetLayerVersion": (
        "get_layer_version", {**_version(3), "Content": _CONTENT},
        lambda store, _: store.with_code(region=REGION, layer_name=LAYER, version=model.
                                         RemoteVersion(3, f"{ARN}:3", SETTINGS)),
        {("Content",), ("Content", "CodeSha256"), ("Content", "CodeSize")}),
    "PublishLayerVersion": (
        "publish_layer_version", {**_version(4), "Content": _CONTENT},
        lambda store, zip_path: store.publish(region=REGION, layer_name=LAYER,
                                              settings=SETTINGS, zip_path=zip_path),
        {("Version",), ("LayerVersionArn",), ("Content",), ("Content", "CodeSha256"),
         ("Content", "CodeSize")}),
    "GetLayerVersionPolicy": (
        "get_layer_version_policy", {"Policy": json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Sid": "reconcile-1", "Effect": "Allow"}]}),
            "RevisionId": "r"},
        lambda store, _: store.policy_statements(region=REGION, layer_name=LAYER, version=3),
        set()),
    "ListFunctions": (
        "list_functions", {"Functions": [{"FunctionName": "f", "Version": "$LATEST",
                                          "Layers": [{"Arn": f"{ARN}:3", "CodeSize": 1}]}]},
        lambda store, _: store.function_uses(region=REGION),
        {("Functions", 0, "FunctionName"), ("Functions", 0, "Layers", 0, "Arn")}),
    "GetAccountSettings": (
        "get_account_settings", {"AccountLimit": {"TotalCodeSize": 80},
                                 "AccountUsage": {"TotalCodeSize": 10, "FunctionCount": 1}},
        lambda store, _: store.code_storage(region=REGION),
        set()),  # only advice: an unusable answer is no storage warning
}


def paths(value: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    """Every key and list index path inside `value`."""
    items: Any = (value.items() if isinstance(value, dict)
                  else enumerate(value) if isinstance(value, list) else ())
    for key, inner in items:
        yield (*prefix, key)
        yield from paths(inner, (*prefix, key))


def without(answer: dict[str, Any], path: Path_) -> dict[str, Any]:
    """A deep copy of `answer` without the key (or list item) at `path`."""
    changed = copy.deepcopy(answer)
    parent: Any = changed
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]
    return changed


def replaced(answer: dict[str, Any], path: Path_, value: object) -> dict[str, Any]:
    """A deep copy of `answer` with `value` at `path`."""
    changed = copy.deepcopy(answer)
    parent: Any = changed
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return changed


def closed_port() -> int:
    """A loopback port nothing listens on: a request that escapes a stub fails fast."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def store() -> Iterator[aws.Boto3LayerStore]:
    """One store (making one loads the Lambda model) with fake credentials and an endpoint
    that nothing listens on."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
                            "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": "/nonexistent",
                            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed_port()}"}.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        made = aws.Boto3LayerStore(max_attempts=1, max_rps=None)
        made.prepare([REGION])
        made.publish_client(REGION)
        yield made


@pytest.fixture(scope="module")
def zip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small layer zip to publish."""
    path = tmp_path_factory.mktemp("zips") / "layer.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("python/x.py", "X = 1\n")
    return path


def _client_for(store: aws.Boto3LayerStore, operation: str) -> Any:
    return store.publish_client(REGION) if operation == "PublishLayerVersion" \
        else store.client(REGION)


def _outcome(call: Callable[[], object], *, operation: str) -> object:
    """The call's result, or the ReconcilerError it raised (anything else fails the test)."""
    try:
        return call()
    except errors.ReconcilerError as error:
        assert operation in error.message, error.message
        if operation == "PublishLayerVersion":
            assert isinstance(error, errors.PublishOutcomeUnknown), error
        return error


MISSING = [pytest.param(operation, path, id=f"{operation}-{'.'.join(map(str, path))}")
           for operation, (_, answer, _, _) in ANSWERS.items() for path in paths(answer)]


@pytest.mark.parametrize(("operation", "path"), MISSING)
def test_an_answer_missing_any_field_is_a_result_or_a_clear_error(
        store: aws.Boto3LayerStore, zip_path: Path, operation: str, path: Path_) -> None:
    """An answer without the field at `path` is read, or is an error naming the call and the
    field when the code needs it (a publish: an unknown outcome), never a KeyError."""
    method, answer, call, required = ANSWERS[operation]
    with botocore.stub.Stubber(_client_for(store, operation)) as stubber:
        stubber.add_response(method, without(answer, path))
        outcome = _outcome(lambda: call(store, zip_path), operation=operation)
        stubber.assert_no_pending_responses()
    if path in required:
        assert isinstance(outcome, errors.ReconcilerError), outcome
        named = str(path[-1]) if isinstance(path[-1], str) else str(path[-2])
        assert named in outcome.message, outcome.message


@pytest.mark.parametrize("operation", list(ANSWERS))
def test_complete_answers_are_read(store: aws.Boto3LayerStore, zip_path: Path,
                                   operation: str) -> None:
    """The complete answer of each call gives a result (the checks refuse nothing Lambda says)."""
    method, answer, call, _ = ANSWERS[operation]
    with botocore.stub.Stubber(_client_for(store, operation)) as stubber:
        stubber.add_response(method, answer)
        outcome = call(store, zip_path)
    assert outcome is not None and not isinstance(outcome, Exception)


class _Canned:
    """The raw body of a canned botocore response."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data

    def read(self, *_: Any) -> bytes:
        return self._data


def _answering(store: aws.Boto3LayerStore, operation: str, body: bytes,
               status: int = 200) -> Callable[[], None]:
    """Make the next `operation` call get `body` as its answer; returns the undo."""
    client = _client_for(store, operation)

    def answer(request: botocore.awsrequest.AWSPreparedRequest,
               **_: Any) -> botocore.awsrequest.AWSResponse:
        return botocore.awsrequest.AWSResponse(
            request.url, status,
            botocore.compat.HTTPHeaders.from_dict({"Content-Type": "application/json"}),
            _Canned(body))

    event = f"before-send.lambda.{operation}"
    client.meta.events.register(event, answer, unique_id="canned-answer")
    return lambda: client.meta.events.unregister(event, unique_id="canned-answer")


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-2, max_value=2**70),
              st.floats(allow_nan=False), st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=2),
                            st.dictionaries(st.text(max_size=4), inner, max_size=2)),
    max_leaves=4)
_FIELDS = [(operation, path) for operation, (_, answer, _, _) in ANSWERS.items()
           for path in paths(answer)]


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(_FIELDS), _json)
@example(("ListFunctions", ("Functions", 0, "Layers", 0, "CodeSize")), float("inf"))
def test_any_json_where_a_field_belongs_is_a_result_or_a_clear_error(
        store: aws.Boto3LayerStore, zip_path: Path, field: tuple[str, Path_],
        value: object) -> None:
    """Any JSON value in place of any field of any answer (what botocore's parser chokes on
    included) gives a result or an error naming the call: never a TypeError or a KeyError."""
    operation, path = field
    _, answer, call, _ = ANSWERS[operation]
    undo = _answering(store, operation, json.dumps(replaced(answer, path, value)).encode())
    try:
        _outcome(lambda: call(store, zip_path), operation=operation)
    finally:
        undo()


@pytest.mark.parametrize("body", [b"not json", b"[1]", b"", b'{"Version": "x"}', b"null",
                                  b'{"Version": 4, "LayerVersionArn": "arn:aws:lambda:us-east-1:'
                                  b'123456789012:layer:other:4", "Content": {"CodeSha256": "x",'
                                  b' "CodeSize": 1}}'],
                         ids=["text", "a list", "empty", "a string version", "null",
                              "another layer's ARN"])
def test_a_publish_answered_201_with_an_unusable_body_is_an_unknown_outcome(
        store: aws.Boto3LayerStore, zip_path: Path, body: bytes) -> None:
    """A 201 whose body is not Lambda's answer: PublishOutcomeUnknown (look, then adopt or
    send again), naming what is wrong with the answer."""
    undo = _answering(store, "PublishLayerVersion", body, status=201)
    try:
        with pytest.raises(errors.PublishOutcomeUnknown) as unknown:
            store.publish(region=REGION, layer_name=LAYER, settings=SETTINGS, zip_path=zip_path)
    finally:
        undo()
    assert "the answer cannot be used" in unknown.value.message


def test_head_object_without_a_length_is_a_clear_error(store: aws.Boto3LayerStore) -> None:
    """A HeadObject answer without ContentLength is an error naming the object and the field."""
    with botocore.stub.Stubber(store.s3_client(REGION)) as stubber:
        stubber.add_response("head_object", {"ETag": '"e"'})
        with pytest.raises(errors.AwsError) as failure:
            store.head_object(region=REGION, location=S3)
    assert "HeadObject for s3://bucket/lib/x.zip" in failure.value.message
    assert "ContentLength" in failure.value.message
