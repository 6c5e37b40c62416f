"""The error tree of reconcile: every failure a user can cause is one of these.

Only `cli` turns a ReconcilerError into a message and an exit code; only `aws` wraps
botocore's exceptions (chained with `from`). Anything else escaping is a bug.

    ReconcilerError                 one clear message, optional hint       code
    ├── ManifestError               invalid layers.yaml: every located Problem  manifest_invalid
    ├── ContentError                a layer's files: missing, unsafe, too large content_invalid
    ├── LockfileError               unreadable or unsupported recorded state    state_unreadable
    ├── StateError                  the state backend cannot do what is asked  state_error
    │   ├── StateLocked             another run holds the lock (`holder`)      state_locked
    │   ├── StateConflict           the state moved since it was read          state_conflict
    │   ├── StoreUnsafe             the store ignores conditional writes       store_unsafe
    │   └── PreconditionFailed      an object store refused a conditional write precondition_failed
    │                               (ports.ObjectStore; the S3 backend turns it into the above)
    ├── UsageError                  a flag or argument that cannot be honoured usage
    ├── ApplyRefused                apply without confirmation (no terminal)   apply_refused
    ├── StalePlan                   a saved plan no longer matches (`differences`) plan_stale
    ├── ApplyFailed                 some changes failed; what was done is recorded apply_failed
    ├── Interrupted                 stopped by a signal at a safe point        interrupted
    ├── SandboxError                the sandbox cannot be started or stopped   sandbox
    │   └── SandboxUnavailable      moto is not installed (the optional extra) sandbox_unavailable
    └── AwsError                    an AWS call failed (`aws_code`: AWS's own) aws_error
        ├── CredentialsError        no credentials or no region                credentials
        ├── EndpointError           the endpoint cannot be reached             endpoint
        ├── PublishNotSent          a publish certainly made no version        publish_not_sent
        ├── OutcomeUnknown          a change was sent and got no clear answer: read it back
        │   │                       before sending it again                    outcome_unknown
        │   └── PublishOutcomeUnknown  a publish was sent; whether it made a version is unknown
        │                           (next step: look for it, then adopt or retry) publish_unknown
        ├── RevisionStale           an update was refused: the function changed since its
        │                           RevisionId was read (PreconditionFailedException) revision_stale
        ├── FunctionBusy            an update was refused: another update of the function is
        │                           in progress (ResourceConflictException)    function_busy
        ├── FunctionUpdateFailed    the function's LastUpdateStatus is Failed (`reason`)
        │                                                            function_update_failed
        └── FunctionUpdateTimeout   the update did not finish within the wait
                                                                     function_update_timeout

`code` is stable: tests and scripts match it, never the message text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# AWS's error codes for "slow down": the request was refused before any work was done.
THROTTLING_CODES = frozenset({
    "TooManyRequestsException", "ThrottlingException", "Throttling", "ThrottledException",
    "RequestLimitExceeded", "SlowDown",
    # SSM's PutParameter: concurrent updates of one parameter, refused before any work.
    "TooManyUpdates",
})


# `scheme://user:password@host`: the userinfo of a URL (an endpoint URL may carry one).
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@'\"<>]+@")
# A URL's query string; presigned URLs carry their signature and credential in it.
_URL_QUERY = re.compile(r"(?P<url>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#'\"<>]+)\?[^\s#'\"<>]*")
_SECRET_QUERY_KEYS = re.compile(
    r"(?i)(x-amz-(signature|credential|security-token)|signature|awsaccesskeyid|"
    r"security-token|token|password|secret)=")
REDACTED = "***"


def redact_urls(text: str) -> str:
    """`text` with every URL's userinfo (`user:password@`) and every secret-bearing query
    string (a presigned URL's signature, credential or token) replaced by `***`: messages
    quote endpoint URLs and AWS errors, and no secret may reach the terminal or a file."""

    def query(found: re.Match[str]) -> str:
        whole = found.group(0)
        if _SECRET_QUERY_KEYS.search(whole):
            return f"{found.group('url')}?{REDACTED}"
        return whole

    return _URL_QUERY.sub(query, _URL_USERINFO.sub(rf"\g<scheme>{REDACTED}@", text))


@dataclass(frozen=True)
class Problem:
    """One located mistake: `file:line:col: field: message`."""

    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.field}: {self.message}"


class ReconcilerError(Exception):
    """A failure the user can act on; `hint` says how, when there is something to say."""

    code = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ManifestError(ReconcilerError):
    """The manifest is invalid; `problems` lists every mistake found, in file order."""

    code = "manifest_invalid"

    def __init__(self, problems: list[Problem], *, content_refs: tuple[object, ...] = ()) -> None:
        # One mistake can surface through several rules (jsonschema reports a missing key
        # once per `required` list); each distinct problem is reported once.
        ordered = sorted(set(problems),
                         key=lambda p: (p.file, p.line, p.column, p.field, p.message))
        super().__init__("\n".join(str(problem) for problem in ordered))
        self.problems = ordered
        # The model.ContentRef values of the layers whose content was well formed, so that
        # the checks on disk can still report their problems alongside these.
        self.content_refs = content_refs


class ContentError(ReconcilerError):
    """A layer's content cannot be packaged safely."""

    code = "content_invalid"


class LockfileError(ReconcilerError):
    """The lockfile cannot be read or is of an unsupported version."""

    code = "state_unreadable"


class UsageError(ReconcilerError):
    """A command-line argument cannot be honoured."""

    code = "usage"


class ApplyRefused(ReconcilerError):
    """Apply was not confirmed."""

    code = "apply_refused"


class ApplyFailed(ReconcilerError):
    """An apply stopped part way; the lockfile records every publish that succeeded."""

    code = "apply_failed"


class StateError(ReconcilerError):
    """The state backend (lockfile or S3 state) cannot do what was asked."""

    code = "state_error"


@dataclass(frozen=True)
class LockHolder:
    """Who holds a state lock, as its lock record says."""

    lock_id: str
    who: str
    host: str
    pid: int
    operation: str
    created: str
    path: str


class StateLocked(StateError):
    """Another run holds the state lock; `holder` names it."""

    code = "state_locked"

    def __init__(self, message: str, *, holder: LockHolder, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.holder = holder


class StateConflict(StateError):
    """The state changed since it was read: a write was refused rather than lose a record."""

    code = "state_conflict"


class StoreUnsafe(StateError):
    """The state store accepted a conditional write it should have refused."""

    code = "store_unsafe"


class PreconditionFailed(StateError):
    """An object store refused a conditional write (HTTP 412, or 409 for a concurrent
    conditional write): the object is not at the ETag, or exists, as the write required."""

    code = "precondition_failed"


class PlanFileError(ReconcilerError):
    """A plan file that is not a plan document this reconcile can read."""

    code = "plan_unreadable"


class StalePlan(ReconcilerError):
    """A saved plan no longer matches the world it was made against; `differences` lists
    each one, in words."""

    code = "plan_stale"

    def __init__(self, differences: list[str], *, hint: str | None = None) -> None:
        super().__init__("the saved plan is stale, nothing was changed:\n"
                         + "\n".join(f"  - {line}" for line in differences), hint=hint)
        self.differences = list(differences)


class Interrupted(ReconcilerError):
    """A signal stopped the run at a safe point; what finished is recorded."""

    code = "interrupted"


class SandboxError(ReconcilerError):
    """The sandbox server cannot be started or stopped."""

    code = "sandbox"


class SandboxUnavailable(SandboxError):
    """moto's server is not installed (the optional extra is missing)."""

    code = "sandbox_unavailable"


class AwsError(ReconcilerError):
    """An AWS API call failed; `aws_code` is AWS's own error code, when there is one."""

    code = "aws_error"

    def __init__(self, message: str, *, hint: str | None = None,
                 aws_code: str | None = None) -> None:
        super().__init__(message, hint=hint)
        # Never `code`: that is reconcile's own (aws_error, publish_unknown, ...), and a
        # caller that passed one for the other made a throttled grant look like no throttling.
        self.aws_code = aws_code


class CredentialsError(AwsError):
    """No usable credentials or region."""

    code = "credentials"


class EndpointError(AwsError):
    """The AWS endpoint could not be reached."""

    code = "endpoint"


class PublishNotSent(AwsError):
    """A PublishLayerVersion that certainly made no version (refused before or on arrival:
    unreachable, throttled, rejected): sending it again cannot duplicate anything."""

    code = "publish_not_sent"


class OutcomeUnknown(AwsError):
    """A change (an UpdateFunctionConfiguration, a PutParameter) that was sent and got no
    clear answer (5xx, timeout, reset): it may or may not have been made. Read it back before
    sending it again."""

    code = "outcome_unknown"


class PublishOutcomeUnknown(OutcomeUnknown):
    """A PublishLayerVersion that was sent and got no clear answer (5xx, timeout, reset):
    a version may or may not exist. Look for it before sending it again."""

    code = "publish_unknown"


class RevisionStale(AwsError):
    """An UpdateFunctionConfiguration refused because the function's RevisionId is no longer
    the one it carried (PreconditionFailedException): the function changed since it was read,
    and nothing was overwritten."""

    code = "revision_stale"


class FunctionBusy(AwsError):
    """An UpdateFunctionConfiguration refused because another update of the function is still
    in progress (ResourceConflictException): nothing was changed; it may be sent later."""

    code = "function_busy"


class FunctionUpdateFailed(AwsError):
    """A function's update ended with LastUpdateStatus Failed; `reason` is Lambda's
    LastUpdateStatusReason (empty when it gave none)."""

    code = "function_update_failed"

    def __init__(self, message: str, *, reason: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


class FunctionUpdateTimeout(AwsError):
    """A function's update was still in progress when the wait for it ran out."""

    code = "function_update_timeout"
