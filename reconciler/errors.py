"""The error tree of reconcile: every failure a user can cause is one of these.

Only `cli` turns a ReconcilerError into a message and an exit code; only `aws` wraps
botocore's exceptions (chained with `from`). Anything else escaping is a bug.

    ReconcilerError                 one clear message, optional hint
    ├── ManifestError               invalid layers.yaml: carries every located Problem
    ├── ContentError                a layer's files: missing, unsafe, too large, bad zip
    ├── LockfileError               unreadable or unsupported layers.lock.json
    ├── UsageError                  a flag or argument that cannot be honoured (--target)
    ├── ApplyRefused                apply without confirmation (no terminal, no --yes)
    ├── ApplyFailed                 a publish failed part way; what was done is recorded
    └── AwsError                    an AWS call failed (code is the AWS error code, if any)
        ├── CredentialsError        no credentials or no region
        └── EndpointError           the endpoint cannot be reached
"""

from __future__ import annotations

from dataclasses import dataclass


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

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ManifestError(ReconcilerError):
    """The manifest is invalid; `problems` lists every mistake found, in file order."""

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


class LockfileError(ReconcilerError):
    """The lockfile cannot be read or is of an unsupported version."""


class UsageError(ReconcilerError):
    """A command-line argument cannot be honoured."""


class ApplyRefused(ReconcilerError):
    """Apply was not confirmed."""


class ApplyFailed(ReconcilerError):
    """An apply stopped part way; the lockfile records every publish that succeeded."""


class AwsError(ReconcilerError):
    """An AWS API call failed."""

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class CredentialsError(AwsError):
    """No usable credentials or region."""


class EndpointError(AwsError):
    """The AWS endpoint could not be reached."""
