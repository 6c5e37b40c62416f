"""Observed state: values as AWS reports them, and where a layer's code is kept on its way to
Lambda. Frozen dataclasses and enums, and nothing that does I/O.

Lambda's layer versions (RemoteVersion) and what a downloaded one holds (RemoteContent); a
consumer function's configuration (FunctionConfig, UpdateStatus) and an SSM parameter
(ParameterValue); the account's code storage (CodeStorage); S3 objects and the route a
publish takes its code by (S3Object, StoredObject, UploadRoute, CodeLocation). model names
every one of them too (`model.RemoteVersion`), as it names the details of a change: one room
of values, over three files, so that model stays a size one can read.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: model imports this module
    from reconciler.model import Settings


class UploadRoute(enum.Enum):
    """How a publish hands Lambda its code: the zip in the request (`direct`, up to
    MAX_DIRECT_UPLOAD_BYTES), the zip uploaded to the artifact bucket first
    (`artifact_bucket`), or the layer's own S3 object (`s3_source`)."""

    DIRECT = "direct"
    ARTIFACT_BUCKET = "artifact_bucket"
    S3_SOURCE = "s3_source"


@dataclass(frozen=True)
class S3Object:
    """An S3 object Lambda reads a layer's code from; `version` None: the current one."""

    bucket: str
    key: str
    version: str | None = None


@dataclass(frozen=True)
class CodeLocation:
    """Where one publish takes its code from, and how it gets to Lambda.

    The local zip itself is named by the change's `desired` (fingerprint, CodeSha256, size:
    apply rebuilds it from the checkout and checks it, since a plan holds no zips); `s3` is
    the object Lambda reads, the artifact bucket's key the zip is uploaded to, or the
    layer's S3 source. A direct upload has none.
    """

    route: UploadRoute
    s3: S3Object | None = None


@dataclass(frozen=True)
class StoredObject:
    """An S3 object as HeadObject reports it. `checksum_sha256` is S3's base64 ChecksumSHA256:
    the object's own SHA-256 for a single-part object, a checksum of its parts' checksums
    when `multipart` (told by the ETag's or the checksum's `-<parts>` suffix, or
    ChecksumType COMPOSITE); `content_sha256` is the hex SHA-256 reconcile records in the
    object's metadata when it uploads a zip (None on objects it did not upload)."""

    size: int
    etag: str
    version_id: str | None = None
    checksum_sha256: str | None = None
    content_sha256: str | None = None
    multipart: bool = False


def artifact_key(*, layer_name: str, content_sha256: str) -> str:
    """The artifact bucket's key for a zip: `<layer>/<content_sha256>.zip`. The digest in the
    key makes an object there the zip itself, so a rerun finds it instead of uploading."""
    return f"{layer_name}/{content_sha256}.zip"


@dataclass(frozen=True)
class RemoteVersion:
    """A published layer version as Lambda reports it. `code_sha256` is None when it was
    listed (ListLayerVersions carries no CodeSha256) and not fetched."""

    version: int
    layer_version_arn: str
    settings: Settings
    code_sha256: str | None = None
    code_size: int | None = None


@dataclass(frozen=True)
class RemoteContent:
    """What the downloaded zip of a remote version holds, for adoption by content: the
    version, the bytes downloaded, and the fingerprint of its files by the rules of a local
    layer's (None, with `problem`, when it could not be downloaded or read)."""

    version: int
    downloaded_bytes: int
    fingerprint: str | None
    problem: str | None = None


# The tag CloudFormation puts on every function of a stack: such a function is the stack's to
# change (allow_managed says otherwise).
CLOUDFORMATION_STACK_TAG = "aws:cloudformation:stack-name"


class UpdateStatus(enum.Enum):
    """A function's LastUpdateStatus: where its last configuration update stands."""

    SUCCESSFUL = "Successful"
    IN_PROGRESS = "InProgress"
    FAILED = "Failed"


@dataclass(frozen=True)
class FunctionConfig:
    """A function's $LATEST configuration as GetFunctionConfiguration reports it (with its
    tags from ListTags): its name and ARN, the layer version ARNs it uses in order, the
    RevisionId an update must carry (None when the endpoint reports none, as moto), where its
    last update stands (and why, when it failed), and its tags."""

    name: str
    arn: str
    layers: tuple[str, ...]
    revision_id: str | None
    update_status: UpdateStatus
    update_reason: str = ""
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def stack(self) -> str | None:
        """The CloudFormation stack that manages the function (None: none does)."""
        return dict(self.tags).get(CLOUDFORMATION_STACK_TAG)


@dataclass(frozen=True)
class ParameterValue:
    """An SSM parameter as GetParameter reports it: its value, version and type (`String`,
    `StringList`, `SecureString`)."""

    value: str
    version: int
    type: str = "String"


@dataclass(frozen=True)
class CodeStorage:
    """The account's Lambda code storage in one region (GetAccountSettings), in bytes."""

    used: int
    limit: int
