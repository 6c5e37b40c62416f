"""The details of a change: one value per action, holding what that action, and no other,
carries (model.DETAILS names the one type of each action). Values only, like model, which
names them too (`model.PublishDetails`); a change kind to come adds its details here, and its
codec and view entries in planfile and render.

Why one value per action rather than fields every change has: each action used its own
subset of them (a version for a delete, grants for a grant, the upload and the alignment for a
publish, the record for a noop), so that a reader had to know which were meaningful; now the
type says it, and a new kind cannot add fields every change carries. A noop's download and
alignment travel on with it when align_versions makes it a publish or sharing makes it a
grant, so those details hold them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: model imports this module
    from reconciler.model import (
        CodeLocation,
        FieldChange,
        Grant,
        LockEntry,
        RemoteContent,
    )


@dataclass(frozen=True)
class Alignment:
    """align_versions in one region: the number every region's latest is to have, the
    throwaway versions published first to get there, and by how many numbers the region
    stays short of it when it cannot (then no filler is published)."""

    target: int | None
    fillers: int = 0
    shortfall: int = 0


@dataclass(frozen=True)
class PublishDetails:
    """A create or publish: the number it expects, where its code comes from (None: direct),
    the fields that differ from `current`, and, as a noop would, download and alignment."""

    expected_version: int | None = None
    code: CodeLocation | None = None
    diff: tuple[FieldChange, ...] = ()
    align: Alignment | None = None
    download: RemoteContent | None = None


@dataclass(frozen=True)
class RecordDetails:
    """A noop: the lock entry apply writes when it differs from the recorded one (adoption,
    drift to a matching version), the remote zip downloaded to compare files, alignment."""

    record: LockEntry | None = None
    download: RemoteContent | None = None
    align: Alignment | None = None


@dataclass(frozen=True)
class GrantDetails:
    """A grant on `current`: the grants added, the statement IDs removed, and what its noop
    carried (download, alignment). A publish grants `desired.grants` instead."""

    add: tuple[Grant, ...] = ()
    remove: tuple[str, ...] = ()
    download: RemoteContent | None = None
    align: Alignment | None = None


@dataclass(frozen=True)
class DeleteDetails:
    """A delete (retention, a stray filler): the version it deletes."""

    version: int


@dataclass(frozen=True)
class ForgetDetails:
    """A forget: the version the state recorded and stops recording (Lambda keeps it)."""

    version: int


@dataclass(frozen=True)
class FunctionDetails:
    """An update_function: the function's ARN, its `Layers` as read at plan (`before`) and as
    apply sets them (`after`: the layer's entry replaced in place, or appended, the others
    and their order kept), and the RevisionId the update is guarded by (None: the endpoint
    reports none). When the layer is published in the same apply, its entry in `after` is
    the layer's ARN with the version `$PUBLISHED` (model.PUBLISHED), which apply replaces
    by the version it publishes and records."""

    function_arn: str
    before: tuple[str, ...]
    after: tuple[str, ...]
    revision_id: str | None = None


@dataclass(frozen=True)
class ParameterDetails:
    """A put_parameter: the value read at plan (None: no such parameter) and its version
    (the basis a saved plan is compared on), and the value apply writes (a LayerVersionArn,
    or the `$PUBLISHED` placeholder of a version published in the same apply)."""

    before: str | None
    after: str
    version: int | None = None


Details = (PublishDetails | RecordDetails | GrantDetails | DeleteDetails | ForgetDetails
           | FunctionDetails | ParameterDetails)
