"""The one table from botocore's failures to reconcile's errors: every botocore exception
the program meets becomes an `errors.*` (chained with `from`) here, and only here.

`classify` reads a failure once: a ClientError by AWS's code (FAULT_OF_OPERATION_CODE for a
code one operation means otherwise, then FAULT_OF_CODE), else by its HTTP status
(FAULT_OF_STATUS); a BotoCoreError by its kind (FAULT_OF_KIND). What each Fault
becomes (the error class, its message and its hint) is one row of REPLIES; the S3 state's
store replaces the rows about its bucket (STATE_REPLIES), since a state that cannot be read
is a StateError. A `Call` names the call in those words (which layer or object, in which
region, what permission a denial lacks), and every message is redacted of URL secrets.
Throttling is `errors.THROTTLING_CODES`, the one list of those codes. What a failed publish
means (refused, never sent, or an unknown outcome) is decided here too (`publish_error`,
and `change_error` for a function's update or a parameter's write); whether to send it again
is the caller's job. This module calls no AWS API.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import botocore.exceptions

from reconciler import errors, model
from reconciler.aws import answers


class Fault(enum.Enum):
    """What went wrong, whatever AWS or botocore called it."""

    STORAGE_FULL = "Lambda's code storage quota is used up"
    REJECTED = "the service refused the request's values"
    NOT_FOUND = "no such resource (layer version, policy, key, object version)"
    CONFLICT = "a conflicting resource or condition (a statement ID exists; If-Match failed)"
    STALE = "the resource changed since its revision was read (a function's RevisionId)"
    BUSY = "another update of the resource is in progress: nothing was changed"
    NO_SUCH_BUCKET = "the bucket does not exist"
    WRONG_REGION = "the bucket is in another region"
    BAD_CREDENTIALS = "the credentials themselves are refused"
    ACCESS_DENIED = "the credentials lack a permission"
    THROTTLED = "slow down: refused before any work was done"
    FAILED = "any other answer of the service"
    NO_PROFILE = "the named profile does not exist"
    NO_CREDENTIALS = "no credentials were found"
    NO_REGION = "no region was given"
    NO_REPLY = "the endpoint did not answer in time"
    UNREACHABLE = "the endpoint could not be connected to: nothing was sent"
    INVALID_PARAMETERS = "botocore refused the parameters before sending"
    BAD_ENDPOINT = "the endpoint URL is not a URL"
    BAD_CONFIGURATION = "the AWS configuration cannot be used"
    BROKEN = "any other failure"


# Codes that say the credentials themselves are bad (often with HTTP 403), not that they
# lack a permission: each with what it means (Lambda's, STS's and S3's names differ).
_UNKNOWN_KEY = "the access key ID is not known to AWS (a wrong or deleted key)"
_WRONG_SECRET = ("the request's signature does not match: the secret access key does not "
                 "belong to the access key ID (or a proxy changed the request)")
_EXPIRED = "the session token has expired"
CREDENTIAL_MEANINGS: Mapping[str, str] = {
    "InvalidAccessKeyId": _UNKNOWN_KEY, "UnrecognizedClientException": _UNKNOWN_KEY,
    "InvalidClientTokenId": _UNKNOWN_KEY,
    "SignatureDoesNotMatch": _WRONG_SECRET, "InvalidSignatureException": _WRONG_SECRET,
    "ExpiredToken": _EXPIRED, "ExpiredTokenException": _EXPIRED,
    "TokenRefreshRequired": _EXPIRED, "RequestExpired": "the request's signing time is too "
    "far from AWS's clock (check this machine's clock)",
    "InvalidToken": "the session token is malformed or not valid",
}

# AWS's error codes (Lambda's, S3's, STS's), each to what it means. S3 answers HEAD without
# a body, so botocore names those errors by their status ("404", "403").
FAULT_OF_CODE: Mapping[str, Fault] = {
    "CodeStorageExceededException": Fault.STORAGE_FULL,
    **dict.fromkeys(("InvalidParameterValueException", "ValidationException",
                     "RequestTooLargeException"), Fault.REJECTED),
    **dict.fromkeys(("ResourceNotFoundException", "NoSuchKey", "NoSuchVersion", "NotFound",
                     "404", "ParameterNotFound"), Fault.NOT_FOUND),
    **dict.fromkeys(("ResourceConflictException", "PreconditionFailed",
                     "ConditionalRequestConflict", "ParameterAlreadyExists"), Fault.CONFLICT),
    # Lambda's refusal of an update whose RevisionId is no longer the function's.
    "PreconditionFailedException": Fault.STALE,
    "NoSuchBucket": Fault.NO_SUCH_BUCKET,
    **dict.fromkeys(("PermanentRedirect", "AuthorizationHeaderMalformed",
                     "IllegalLocationConstraintException"), Fault.WRONG_REGION),
    **dict.fromkeys(CREDENTIAL_MEANINGS, Fault.BAD_CREDENTIALS),
    **dict.fromkeys(("AccessDeniedException", "AccessDenied", "AllAccessDisabled", "Forbidden",
                     "403"), Fault.ACCESS_DENIED),
    **dict.fromkeys(errors.THROTTLING_CODES, Fault.THROTTLED),
}
# A code that means something else for one operation, read before FAULT_OF_CODE: Lambda
# answers ResourceConflictException both for a statement ID that exists (a grant: it is
# there) and for a function whose last update is still in progress (an update: try later).
FAULT_OF_OPERATION_CODE: Mapping[tuple[str, str], Fault] = {
    ("UpdateFunctionConfiguration", "ResourceConflictException"): Fault.BUSY,
}
# A code not above, by its HTTP status: 403 without a credentials code is a missing
# permission; 409 and 412 are S3's refused conditional writes.
FAULT_OF_STATUS: Mapping[int, Fault] = {
    403: Fault.ACCESS_DENIED, 404: Fault.NOT_FOUND, 409: Fault.CONFLICT, 412: Fault.CONFLICT,
}
# botocore's own exceptions, by kind, first match wins.
FAULT_OF_KIND: tuple[tuple[type[Exception] | tuple[type[Exception], ...], Fault], ...] = (
    (botocore.exceptions.ProfileNotFound, Fault.NO_PROFILE),
    ((botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError),
     Fault.NO_CREDENTIALS),
    (botocore.exceptions.NoRegionError, Fault.NO_REGION),
    (botocore.exceptions.ReadTimeoutError, Fault.NO_REPLY),
    ((botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError),
     Fault.UNREACHABLE),
    (botocore.exceptions.ParamValidationError, Fault.INVALID_PARAMETERS),
)


@dataclass(frozen=True)
class Reply:
    """What a Fault becomes: the error class, its message and hint as format strings over a
    Call's words and the failure's (`code`, `message`, `meaning`)."""

    error: type[errors.ReconcilerError]
    message: str
    hint: str | None = None


_ENDPOINT_HINT = "check --endpoint-url / AWS_ENDPOINT_URL and the network"
REPLIES: Mapping[Fault, Reply] = types.MappingProxyType({
    Fault.STORAGE_FULL: Reply(
        errors.AwsError, "{label}: Lambda's code storage is full: {message}",
        "every layer version ever published counts against the 75 GB code storage quota of "
        "the region until it is deleted; delete old versions (retention) or ask AWS Support "
        "for a higher quota"),
    Fault.REJECTED: Reply(errors.AwsError, "{service} rejected {label}: {message}"),
    Fault.NOT_FOUND: Reply(errors.AwsError, "{label}: not found: {message}"),
    Fault.CONFLICT: Reply(errors.AwsError, "{label} failed ({code}): {message}"),
    Fault.STALE: Reply(errors.RevisionStale,
                       "{label} was refused: {target} changed since it was read ({code}), "
                       "and nothing was overwritten: {message}",
                       "run plan again to see the function as it is now"),
    Fault.BUSY: Reply(errors.FunctionBusy,
                      "{label} was refused: another update of {target} is in progress "
                      "({code}): {message}",
                      "wait for that update to finish, then apply again"),
    Fault.NO_SUCH_BUCKET: Reply(
        errors.AwsError, "{label}: the bucket {bucket} does not exist",
        "create it in that region, or fix `artifact_bucket` / `content.s3.bucket` in the "
        "manifest"),
    Fault.WRONG_REGION: Reply(errors.AwsError, "{label}: the bucket is in another region ({code})",
                              "set AWS_REGION to the bucket's region"),
    Fault.BAD_CREDENTIALS: Reply(
        errors.CredentialsError,
        "AWS did not accept the credentials for {action}: {meaning} ({code}: {message})",
        "refresh them (aws sso login, or new keys) or pick another --profile"),
    Fault.ACCESS_DENIED: Reply(errors.AwsError, "access denied: {label}: {message}",
                               "the credentials lack {permission}"),
    Fault.THROTTLED: Reply(errors.AwsError,
                           "{label} was throttled and retries ran out: {message}",
                           "retry later, or raise --max-attempts"),
    Fault.FAILED: Reply(errors.AwsError, "{label} failed ({code}): {message}"),
    Fault.NO_PROFILE: Reply(errors.CredentialsError, "{message}",
                            "check --profile / AWS_PROFILE against ~/.aws/config"),
    Fault.NO_CREDENTIALS: Reply(
        errors.CredentialsError, "no AWS credentials found for {action}",
        "set AWS_PROFILE (or --profile), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; "
        "`validate` needs none"),
    Fault.NO_REGION: Reply(errors.CredentialsError, "no AWS region",
                           "set `region:` in the manifest, or AWS_REGION"),
    Fault.NO_REPLY: Reply(
        errors.EndpointError, "the AWS endpoint {endpoint} did not answer {action} in time: "
        "{message}", _ENDPOINT_HINT + "; --timeout SECONDS waits longer for each reply"),
    Fault.UNREACHABLE: Reply(errors.EndpointError,
                             "cannot reach the AWS endpoint {endpoint} for {action}: {message}",
                             _ENDPOINT_HINT),
    Fault.INVALID_PARAMETERS: Reply(errors.AwsError, "{label}: invalid parameters: {message}"),
    Fault.BAD_ENDPOINT: Reply(
        errors.EndpointError, "cannot use the endpoint {endpoint}: {message}",
        "--endpoint-url / AWS_ENDPOINT_URL must be a URL like http://127.0.0.1:5000"),
    Fault.BAD_CONFIGURATION: Reply(
        errors.CredentialsError, "the AWS configuration is not usable: {message}",
        "check AWS_* environment variables, --profile and ~/.aws/config"),
    Fault.BROKEN: Reply(errors.AwsError, "{label} failed: {message}"),
})
# The S3 state's store: a bucket it cannot use is a StateError (the state, not a layer,
# is what failed), and a refused condition is errors.PreconditionFailed.
STATE_REPLIES: Mapping[Fault, Reply] = types.MappingProxyType({
    **REPLIES,
    Fault.NO_SUCH_BUCKET: Reply(
        errors.StateError, "{label}: the bucket {bucket} does not exist (at {endpoint})",
        "create the bucket, or fix `state:` in the manifest"),
    Fault.ACCESS_DENIED: Reply(errors.StateError, "access denied: {label}",
                               "the credentials lack {permission}"),
    Fault.WRONG_REGION: Reply(errors.StateError,
                              "{label}: the bucket is in another region ({code})",
                              "set AWS_REGION to the bucket's region"),
    Fault.CONFLICT: Reply(errors.PreconditionFailed,
                          "{target}: the conditional write was refused ({code})"),
})


@dataclass(frozen=True)
class Failure:
    """A botocore failure as the table reads it: its Fault, AWS's code and HTTP status
    (for an answer), and AWS's message (or botocore's words)."""

    fault: Fault
    aws_code: str | None
    status: int | None
    message: str


def classify(exc: BaseException) -> Failure:
    """Read `exc` (a ClientError, a BotoCoreError, anything else) through the table."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        status = status if isinstance(status, int) else None
        operation = str(getattr(exc, "operation_name", ""))
        fault = (FAULT_OF_OPERATION_CODE.get((operation, code)) or FAULT_OF_CODE.get(code)
                 or FAULT_OF_STATUS.get(status or 0, Fault.FAILED))
        return Failure(fault=fault, aws_code=code, status=status,
                       message=str(error.get("Message", "")).strip() or code)
    for kind, fault in FAULT_OF_KIND:
        if isinstance(exc, kind):
            return Failure(fault=fault, aws_code=None, status=None, message=str(exc))
    return Failure(fault=Fault.BROKEN, aws_code=None, status=None, message=str(exc))


def fault_of(exc: BaseException) -> Fault:
    """The Fault of `exc` (see classify)."""
    return classify(exc).fault


@dataclass(frozen=True)
class Call:
    """One AWS call, as messages about it name it."""

    operation: str  # the API's name: "GetLayerVersion"
    label: str  # the call and its target: "GetLayerVersion for layer 'a' in us-east-1"
    action: str  # the call as a message about the set-up names it: "GetLayerVersion"
    target: str  # what it was on: "layer 'a' in us-east-1", "s3://bucket/key"
    endpoint: str | None
    permission: str  # what an access denial means the credentials lack
    service: str = "Lambda"
    bucket: str = ""
    of_state: bool = False  # the S3 state's store: its replies are STATE_REPLIES

    @property
    def replies(self) -> Mapping[Fault, Reply]:
        """The table of replies that applies to this call."""
        return STATE_REPLIES if self.of_state else REPLIES


def endpoint_of(client: Any) -> str | None:
    """The endpoint URL a botocore client talks to (None when it cannot tell)."""
    endpoint = getattr(getattr(client, "meta", None), "endpoint_url", None)
    return str(endpoint) if endpoint is not None else None


def layer_call(operation: str, *, layer: str | None, region: str | None,
               endpoint: str | None) -> Call:
    """A Lambda call (or STS's GetCallerIdentity) about `layer` in `region`."""
    target = f"layer '{layer}' in {region}" if layer else (region or "AWS")
    service = "STS" if operation == "GetCallerIdentity" else "Lambda"
    return Call(operation=operation, label=f"{operation} for {target}", action=operation,
                target=target, endpoint=endpoint, service=service,
                permission=f"{service.lower()}:{operation}")


def function_call(operation: str, *, function: str, region: str,
                  endpoint: str | None) -> Call:
    """A Lambda call about the function `function` in `region`."""
    target = f"function '{function}' in {region}"
    return Call(operation=operation, label=f"{operation} for {target}", action=operation,
                target=target, endpoint=endpoint, permission=f"lambda:{operation}")


def tagging_call(*, region: str, endpoint: str | None) -> Call:
    """The Resource Groups Tagging API's GetResources for Lambda functions in `region`."""
    target = f"the functions in {region}"
    return Call(operation="GetResources", label=f"GetResources for {target}",
                action="GetResources", target=target, endpoint=endpoint,
                service="Resource Groups Tagging", permission="tag:GetResources")


def parameter_call(operation: str, *, name: str, region: str, endpoint: str | None) -> Call:
    """An SSM call about the parameter `name` in `region`."""
    target = f"SSM parameter '{name}' in {region}"
    return Call(operation=operation, label=f"{operation} for {target}", action=operation,
                target=target, endpoint=endpoint, service="SSM",
                permission=f"ssm:{operation}")


def artifact_call(operation: str, *, location: model.S3Object, region: str,
                  endpoint: str | None) -> Call:
    """An S3 call on an object of layer code (the artifact bucket, a `content.s3` source)."""
    where = f"s3://{location.bucket}/{location.key}"
    action = "s3:PutObject" if operation == "PutObject" else "s3:GetObject"
    return Call(operation=operation, label=f"{operation} {where} in {region}",
                action=f"{operation} {where}", target=f"{where} in {region}",
                endpoint=endpoint, service="S3", permission=f"{action} on that bucket",
                bucket=location.bucket)


def state_call(operation: str, *, bucket: str, key: str, endpoint: str) -> Call:
    """An S3 call of the S3 state's store on `key` of its bucket."""
    where = f"s3://{bucket}/{key}"
    return Call(operation=operation, label=f"{operation} {where}", action=operation,
                target=where, endpoint=endpoint, service="S3",
                permission=f"s3:{operation} on arn:aws:s3:::{bucket}/{key}", bucket=bucket,
                of_state=True)


def error_for(exc: BaseException, call: Call, *,
              as_fault: Fault | None = None) -> errors.ReconcilerError:
    """The error (with a hint) that `exc`, raised by `call`, is: its row of the table (the
    row of `as_fault` when the caller knows better), in the call's words, redacted."""
    failure = classify(exc)
    return _made(call.replies[as_fault or failure.fault], failure=failure, call=call)


def aws_error_for(exc: BaseException, call: Call) -> errors.AwsError:
    """error_for a Lambda or artifact call, whose replies are all AwsErrors."""
    error = error_for(exc, call)
    assert isinstance(error, errors.AwsError), "the state's replies are not AwsErrors"
    return error


def _made(reply: Reply, *, failure: Failure, call: Call) -> errors.ReconcilerError:
    words = {
        "label": call.label, "action": call.action, "target": call.target,
        "operation": call.operation, "service": call.service, "bucket": call.bucket,
        "permission": call.permission, "endpoint": call.endpoint or "",
        "code": failure.aws_code or failure.status, "message": failure.message,
        "meaning": CREDENTIAL_MEANINGS.get(failure.aws_code or "", ""),
    }
    message = reply.message.format(**words)
    hint = reply.hint.format(**words) if reply.hint is not None else None
    if issubclass(reply.error, errors.AwsError):
        return redacted(reply.error(message, hint=hint, aws_code=failure.aws_code))
    return redacted(reply.error(message, hint=hint))


def translate(exc: Exception, *, operation: str, layer: str | None, region: str | None,
              endpoint: str | None) -> errors.AwsError:
    """The AwsError (with a hint) for a botocore exception raised by the Lambda (or STS)
    call `operation`, with no secret of a URL (userinfo, presigned query) in its words."""
    return aws_error_for(exc, layer_call(operation, layer=layer, region=region,
                                         endpoint=endpoint))


def setup_error(exc: Exception, *, endpoint_url: str | None = None) -> errors.AwsError:
    """The error for a session or client that cannot be made: a missing profile, an
    endpoint that is not a URL, an unusable configuration (files, environment, region)."""
    fault = fault_of(exc)
    if isinstance(exc, ValueError) and str(exc).startswith("Invalid endpoint"):
        fault = Fault.BAD_ENDPOINT
    elif fault is not Fault.NO_PROFILE:
        fault = Fault.BAD_CONFIGURATION
    call = Call(operation="", label="", action="", target="", permission="",
                endpoint=endpoint_url or "(from AWS_ENDPOINT_URL)")
    error = _made(REPLIES[fault], failure=Failure(fault=fault, aws_code=None, status=None,
                                                  message=str(exc)), call=call)
    assert isinstance(error, errors.AwsError)
    return error


# --- answers that cannot be used -------------------------------------------------------------


def unusable(problem: answers.BadAnswer, call: Call) -> errors.AwsError:
    """The AwsError for an answer the code cannot use."""
    return redacted(errors.AwsError(
        f"{call.operation} for {call.target}: the answer cannot be used: {problem}",
        hint=f"the endpoint {call.endpoint or ''} answered what AWS never does; check "
             "--endpoint-url / AWS_ENDPOINT_URL, and any proxy on the way"))


def unparsable(exc: Exception, call: Call) -> errors.AwsError:
    """The AwsError for an answer botocore's parser choked on (see answers.PARSER_ERRORS)."""
    return unusable(answers.BadAnswer(f"botocore could not parse it ({exc})"), call)


class reading:
    """Turn a BadAnswer raised while reading an answer inside the block into an AwsError."""

    def __init__(self, call: Call) -> None:
        self.call = call

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        if isinstance(exc, answers.BadAnswer):
            raise unusable(exc, self.call) from exc


class calling:
    """Turn botocore exceptions raised by the one client call inside the block into
    errors (error_for); a Fault in `tolerate` means the call's goal already holds, and is
    swallowed."""

    def __init__(self, call: Call, *, tolerate: frozenset[Fault] = frozenset()) -> None:
        self.call, self.tolerate = call, tolerate

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> bool:
        if isinstance(exc, answers.PARSER_ERRORS):  # the block holds one client call
            raise unparsable(exc, self.call) from exc
        if not isinstance(exc, botocore.exceptions.BotoCoreError
                          | botocore.exceptions.ClientError):
            return False
        if isinstance(exc, botocore.exceptions.ClientError) and fault_of(exc) in self.tolerate:
            return True
        raise error_for(exc, self.call) from exc


# --- publishes -------------------------------------------------------------------------------


def publish_error(exc: Exception, *, layer: str, region: str, endpoint: str | None,
                  sent: bool) -> errors.AwsError:
    """What is known about a failed PublishLayerVersion (`sent`: it reached the wire).

    A reply of 4xx (429 throttling included) means Lambda refused it: no version. A
    failure before the request was sent (no credentials, invalid parameters) or while
    connecting made none either. Anything else after sending (5xx, a read timeout, a reset
    or closed connection, an unreadable reply) leaves the outcome unknown."""
    call = layer_call("PublishLayerVersion", layer=layer, region=region, endpoint=endpoint)
    failure = classify(exc)
    known = aws_error_for(exc, call)
    # Throttling means "not processed" whatever the status (S3's SlowDown is a 503).
    refused = isinstance(exc, botocore.exceptions.ClientError) and (
        (failure.status is not None and 400 <= failure.status < 500)
        or failure.fault is Fault.THROTTLED)
    never_sent = not isinstance(exc, botocore.exceptions.ClientError) and (
        not sent or failure.fault is Fault.UNREACHABLE)
    if refused or never_sent:
        what = ("it was refused and made no version" if refused
                else "it was never sent and made no version")
        message, hint = known.message, known.hint
        if failure.fault is Fault.THROTTLED:
            # The publish client makes one attempt: no "retries ran out", no --max-attempts.
            message = f"{call.label} was throttled: {describe(exc)}"
            hint = "retry later: Lambda throttles PublishLayerVersion per account and region"
        return redacted(errors.PublishNotSent(f"{message} ({what})", hint=hint,
                                              aws_code=known.aws_code))
    return redacted(errors.PublishOutcomeUnknown(
        f"{call.label} was sent, but its outcome is unknown: {describe(exc)}",
        hint="run plan: it adopts the version if one was made", aws_code=known.aws_code))


def publish_unknown(problem: answers.BadAnswer, *, layer: str, region: str,
                    endpoint: str | None) -> errors.PublishOutcomeUnknown:
    """A publish that got an answer it cannot use: Lambda received it and may have made a
    version, so its outcome is unknown (publishing looks for the version, never a blind
    second send)."""
    return redacted(errors.PublishOutcomeUnknown(
        f"PublishLayerVersion for layer '{layer}' in {region} was sent, but its "
        f"outcome is unknown: the answer cannot be used: {problem}",
        hint=f"the endpoint {endpoint or ''} answered what Lambda never does; "
             "run plan: it adopts the version if one was made"))


def describe(exc: Exception) -> str:
    """A failure in a few words, with the HTTP status of an answer."""
    if isinstance(exc, botocore.exceptions.ClientError):
        failure = classify(exc)
        return f"HTTP {failure.status} {failure.aws_code}: {failure.message}"
    if isinstance(exc, botocore.exceptions.ReadTimeoutError):
        return f"no reply within the read timeout ({exc})"
    if isinstance(exc, botocore.exceptions.ConnectionClosedError):
        return f"the connection was closed or reset before the reply ({exc})"
    return str(exc)


_Error = TypeVar("_Error", bound=errors.ReconcilerError)


def redacted(error: _Error) -> _Error:
    """`error` with the userinfo and presigned query strings of every URL in its message and
    hint redacted: endpoint URLs and botocore's own messages quote them."""
    error.message = errors.redact_urls(error.message)
    error.args = (error.message,)
    if error.hint is not None:
        error.hint = errors.redact_urls(error.hint)
    return error


# --- changes other than publishes -----------------------------------------------------------


def change_error(exc: Exception, call: Call, *, sent: bool) -> errors.AwsError:
    """What is known about a failed change (UpdateFunctionConfiguration, PutParameter) sent
    once (`sent`: it reached the wire), as publish_error decides it for a publish.

    A reply of 4xx (throttling included, whatever its status) means it was refused: the
    table's error (RevisionStale, FunctionBusy, an AwsError). A failure before the request was
    sent, or while connecting, changed nothing either: the table's error. Anything else after
    sending (5xx, a read timeout, a reset or closed connection) leaves the outcome unknown:
    errors.OutcomeUnknown, so that the caller reads the resource back before sending again."""
    failure = classify(exc)
    refused = isinstance(exc, botocore.exceptions.ClientError) and (
        (failure.status is not None and 400 <= failure.status < 500)
        or failure.fault is Fault.THROTTLED)
    never_sent = not isinstance(exc, botocore.exceptions.ClientError) and (
        not sent or failure.fault is Fault.UNREACHABLE)
    if refused or never_sent:
        return aws_error_for(exc, call)
    return redacted(errors.OutcomeUnknown(
        f"{call.label} was sent, but its outcome is unknown: {describe(exc)}",
        hint=f"read {call.target} back before sending it again (run plan)",
        aws_code=failure.aws_code))


def change_unknown(problem: answers.BadAnswer, call: Call) -> errors.OutcomeUnknown:
    """A change that got an answer it cannot use: AWS received it and may have made it."""
    return redacted(errors.OutcomeUnknown(
        f"{call.label} was sent, but its outcome is unknown: the answer cannot be used: "
        f"{problem}",
        hint=f"the endpoint {call.endpoint or ''} answered what AWS never does; read "
             f"{call.target} back before sending it again (run plan)"))
