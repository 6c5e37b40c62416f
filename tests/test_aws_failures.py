"""The one table from botocore's failures to reconcile's errors (`aws.failures`): what each
AWS code, HTTP status and botocore exception becomes, in each room's words, and that no
other module of the aws package names an AWS error code."""

from __future__ import annotations

import ast
from importlib import resources
from typing import Any

import botocore.exceptions
import pytest

from reconciler import errors, model
from reconciler.aws import failures

LOCATION = model.S3Object(bucket="artifacts", key="lib/a.zip")


def client_error(code: str | None, status: int, operation: str = "Op"
                 ) -> botocore.exceptions.ClientError:
    """A ClientError as botocore raises it for `code` (None: a body-less HEAD) and `status`."""
    error: dict[str, str] = {"Message": f"{code} message"}
    if code is not None:
        error["Code"] = code
    response: Any = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}
    return botocore.exceptions.ClientError(response, operation)


def lambda_call(operation: str = "ListLayerVersions") -> failures.Call:
    """A Lambda call on layer 'a' in us-east-1."""
    return failures.layer_call(operation, layer="a", region="us-east-1",
                               endpoint="http://user:secret@127.0.0.1:9")


def state_call() -> failures.Call:
    """A call of the S3 state's store."""
    return failures.state_call("PutObject", bucket="state", key="team/layers.json",
                               endpoint="http://127.0.0.1:9")


def test_every_fault_has_a_reply_in_every_room() -> None:
    """Each Fault is one row of REPLIES and of STATE_REPLIES: no failure falls through."""
    assert set(failures.REPLIES) == set(failures.Fault)
    assert set(failures.STATE_REPLIES) == set(failures.Fault)


@pytest.mark.parametrize("code", sorted(errors.THROTTLING_CODES))
def test_every_throttling_code_is_throttling(code: str) -> None:
    """errors.THROTTLING_CODES is the table's one list of them: each is THROTTLED, and its
    AwsError carries AWS's code while reconcile's own code stays aws_error."""
    error = failures.error_for(client_error(code, 400), lambda_call())
    assert failures.fault_of(client_error(code, 503)) is failures.Fault.THROTTLED
    assert isinstance(error, errors.AwsError)
    assert (error.code, error.aws_code) == ("aws_error", code)
    assert "throttled" in error.message


@pytest.mark.parametrize(("code", "status", "fault"), [
    ("InvalidAccessKeyId", 403, failures.Fault.BAD_CREDENTIALS),
    ("SomethingNew", 403, failures.Fault.ACCESS_DENIED),
    (None, 403, failures.Fault.ACCESS_DENIED),
    ("NoSuchBucket", 404, failures.Fault.NO_SUCH_BUCKET),
    (None, 404, failures.Fault.NOT_FOUND),
    ("OperationAborted", 409, failures.Fault.CONFLICT),
    ("ServiceException", 500, failures.Fault.FAILED),
    ("CodeStorageExceededException", 400, failures.Fault.STORAGE_FULL),
])
def test_the_code_decides_and_the_status_only_without_one(
        code: str | None, status: int, fault: failures.Fault) -> None:
    """A known code decides the fault whatever the status; an unknown one falls to the status."""
    assert failures.fault_of(client_error(code, status)) is fault


@pytest.mark.parametrize(("exc", "fault", "kind"), [
    (botocore.exceptions.NoCredentialsError(), failures.Fault.NO_CREDENTIALS,
     errors.CredentialsError),
    (botocore.exceptions.NoRegionError(), failures.Fault.NO_REGION, errors.CredentialsError),
    (botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:9"),
     failures.Fault.NO_REPLY, errors.EndpointError),
    (botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
     failures.Fault.UNREACHABLE, errors.EndpointError),
    (botocore.exceptions.ProfileNotFound(profile="gone"), failures.Fault.NO_PROFILE,
     errors.CredentialsError),
    (OSError("disk"), failures.Fault.BROKEN, errors.AwsError),
])
def test_botocore_exceptions_by_kind(exc: Exception, fault: failures.Fault,
                                     kind: type[errors.AwsError]) -> None:
    """botocore's own exceptions are read by kind, each to its error class, no AWS code."""
    error = failures.error_for(exc, lambda_call())
    assert failures.fault_of(exc) is fault
    assert type(error) is kind
    assert isinstance(error, errors.AwsError)
    assert error.aws_code is None


def test_a_missing_bucket_is_a_state_error_only_for_the_state() -> None:
    """NoSuchBucket is a StateError naming `state:` for the state's store, and an AwsError
    naming the manifest's buckets for an artifact."""
    exc = client_error("NoSuchBucket", 404)
    state = failures.error_for(exc, state_call())
    artifact = failures.error_for(exc, failures.artifact_call(
        "PutObject", location=LOCATION, region="eu-west-1", endpoint=None))
    assert type(state) is errors.StateError
    assert state.hint is not None and "`state:`" in state.hint
    assert type(artifact) is errors.AwsError
    assert artifact.message.startswith("PutObject s3://artifacts/lib/a.zip in eu-west-1: ")
    assert artifact.hint is not None and "artifact_bucket" in artifact.hint


def test_a_refused_condition_is_precondition_failed_for_the_state() -> None:
    """A 412 on the state's PutObject is errors.PreconditionFailed naming the object."""
    error = failures.error_for(client_error("PreconditionFailed", 412), state_call())
    assert type(error) is errors.PreconditionFailed
    assert error.message == ("s3://state/team/layers.json: the conditional write was refused "
                             "(PreconditionFailed)")


def test_access_denied_names_the_missing_permission_per_room() -> None:
    """A denial's hint names the permission the call needed, in each room's words."""
    exc = client_error("AccessDenied", 403)
    hints = [failures.error_for(exc, call).hint for call in (
        lambda_call("GetLayerVersion"),
        failures.layer_call("GetCallerIdentity", layer=None, region=None, endpoint=None),
        failures.artifact_call("HeadObject", location=LOCATION, region="us-east-1",
                               endpoint=None),
        state_call())]
    assert hints == ["the credentials lack lambda:GetLayerVersion",
                     "the credentials lack sts:GetCallerIdentity",
                     "the credentials lack s3:GetObject on that bucket",
                     "the credentials lack s3:PutObject on arn:aws:s3:::state/team/layers.json"]


def test_messages_never_hold_an_endpoints_secret() -> None:
    """An endpoint URL's userinfo is redacted from every message the table makes."""
    error = failures.error_for(
        botocore.exceptions.EndpointConnectionError(endpoint_url="http://user:secret@h:9"),
        lambda_call())
    assert "secret" not in error.message
    assert "***@" in error.message


@pytest.mark.parametrize(("exc", "sent", "kind"), [
    (client_error("TooManyRequestsException", 429), True, errors.PublishNotSent),
    (client_error("SlowDown", 503), True, errors.PublishNotSent),
    (client_error("InvalidParameterValueException", 400), True, errors.PublishNotSent),
    (client_error("ServiceException", 500), True, errors.PublishOutcomeUnknown),
    (botocore.exceptions.ReadTimeoutError(endpoint_url="http://h"), True,
     errors.PublishOutcomeUnknown),
    (botocore.exceptions.ReadTimeoutError(endpoint_url="http://h"), False,
     errors.PublishNotSent),
    (botocore.exceptions.EndpointConnectionError(endpoint_url="http://h"), True,
     errors.PublishNotSent),
])
def test_what_a_failed_publish_means(exc: Exception, sent: bool,
                                     kind: type[errors.AwsError]) -> None:
    """Refused (4xx, throttled whatever its status) or never sent: no version; anything
    else after sending: an unknown outcome. AWS's code rides along in aws_code."""
    error = failures.publish_error(exc, layer="a", region="us-east-1", endpoint=None,
                                   sent=sent)
    assert type(error) is kind
    code = exc.response["Error"]["Code"] if isinstance(
        exc, botocore.exceptions.ClientError) else None
    assert error.aws_code == code


def _string_constants(source: str) -> set[str]:
    return {node.value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_no_other_aws_module_names_an_aws_error_code() -> None:
    """Only the table names AWS's error codes: every other module of the package asks it
    for a Fault, so a code is classified in one place."""
    codes = set(failures.FAULT_OF_CODE) | set(failures.CREDENTIAL_MEANINGS)
    package = resources.files("reconciler") / "aws"
    named = {entry.name: sorted(_string_constants(entry.read_text(encoding="utf-8")) & codes)
             for entry in package.iterdir()
             if entry.name.endswith(".py") and entry.name != "failures.py"}
    assert {name: found for name, found in named.items() if found} == {}
