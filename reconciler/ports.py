"""The protocols between the use cases and the outside world: Lambda's layers (LayerStore),
the S3 objects layer code is uploaded to or read from (ArtifactStore), where the state is
kept (StateBackend), the object store an S3 state lives in (ObjectStore), the Python
package index a built layer's wheels come from (PackageIndex), the functions that consume a
layer (FunctionStore) and the SSM parameters that name its latest version (ParameterStore).
Core: types only, no implementation and no I/O.

Each port has one contract test suite run against every implementation (the fakes of the
tests included), so that a fake cannot drift from the real thing.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import PurePath
from typing import BinaryIO, Protocol

from reconciler import builds, errors, model

# The revision of a state that does not exist yet: a first write must find none.
NO_REVISION = ""


@dataclass(frozen=True)
class Snapshot:
    """The recorded state and the revision it was read at (NO_REVISION: there is none)."""

    lock: model.Lock
    revision: str


@dataclass(frozen=True)
class HeldLock:
    """A state lock as force-unlock inspects it: the holder its record names, and, when this
    host can tell that the holder is alive, how it can tell (words for the refusal: "pid 42
    is running and holds the lock file's flock"); None when it cannot tell."""

    holder: errors.LockHolder
    alive_here: str | None


@dataclass(frozen=True)
class StoredKey:
    """One object of an ObjectStore listing: its key and when the store last wrote it (the
    store's clock, timezone-aware)."""

    key: str
    last_modified: datetime.datetime


@dataclass(frozen=True)
class Observed:
    """The latest version of each asked layer in one region (None: it has no version), and
    how it was found (for the plan's debug output)."""

    latest: dict[str, model.RemoteVersion | None]
    how: str
    calls: int


class LayerStore(Protocol):
    """What reconcile needs from Lambda, per region. Implementations are safe to call from
    several threads at once."""

    def latest_version(self, *, region: str, layer_name: str) -> model.RemoteVersion | None:
        """The highest-numbered version of the layer (None when it has none)."""

    def latest_versions(self, *, region: str, layer_names: Sequence[str]) -> Observed:
        """The latest version of each layer, in as few calls as the region allows."""

    def with_code(self, *, region: str, layer_name: str,
                  version: model.RemoteVersion) -> model.RemoteVersion:
        """`version` with its CodeSha256 and CodeSize filled in (GetLayerVersion)."""

    def publish(self, *, region: str, layer_name: str, settings: model.Settings,
                zip_path: PurePath | None,
                s3_object: model.S3Object | None = None) -> model.RemoteVersion:
        """Publish a new version from a local zip (Content.ZipFile), or, when `s3_object` is
        given, from that S3 object (S3Bucket/S3Key/S3ObjectVersion, in the same region);
        return it as Lambda reports it."""

    def download_code(self, *, region: str, layer_name: str, version: int,
                      destination: PurePath, max_bytes: int) -> int:
        """Download the version's zip to `destination` (streamed; refused past `max_bytes`
        or when its bytes are not the version's CodeSha256); the bytes downloaded."""

    def versions_above(self, *, region: str, layer_name: str,
                       version: int) -> list[model.RemoteVersion]:
        """Every version numbered above `version`, lowest first, with its CodeSha256 (the
        lookup after a publish whose outcome is unknown)."""

    def account_id(self) -> str:
        """The AWS account of the credentials in use."""

    def all_versions(self, *, region: str, layer_name: str) -> list[model.RemoteVersion]:
        """Every live version of the layer (every page; no CodeSha256), lowest first."""

    def delete_version(self, *, region: str, layer_name: str, version: int) -> None:
        """DeleteLayerVersion (a version already gone is no error: the outcome is the same)."""

    def policy_statements(self, *, region: str, layer_name: str,
                          version: int) -> frozenset[str]:
        """The statement IDs of the version's permissions policy (none: no policy)."""

    def add_permission(self, *, region: str, layer_name: str, version: int,
                       grant: model.Grant) -> None:
        """Grant lambda:GetLayerVersion on the version to `grant`'s principal, under
        `grant.statement_id`; a statement of that ID already there counts as granted."""

    def remove_permission(self, *, region: str, layer_name: str, version: int,
                          statement_id: str) -> None:
        """Remove the statement (one already gone is no error)."""

    def function_uses(self, *, region: str) -> dict[str, tuple[str, ...]]:
        """Every layer version ARN a function of the account in `region` uses ($LATEST and
        each published function version), mapped to the functions (`name:qualifier`)."""

    def code_storage(self, *, region: str) -> model.CodeStorage | None:
        """The account's code storage use and quota in `region` (GetAccountSettings);
        None when the endpoint does not tell."""


class FunctionStore(Protocol):
    """Lambda's functions as a layer's consumers need them, per region: read one, find them
    by tags, move one to other layers, wait for that to finish. Safe to call from several
    threads at once.

    An update is sent once and never retried blindly: errors.RevisionStale when the function
    changed since `revision_id` was read, errors.FunctionBusy when another update is in
    progress (both: nothing was changed), errors.OutcomeUnknown when it was sent and got no
    clear answer (read the function back before sending it again); any other refusal is an
    errors.AwsError.
    """

    def function(self, *, region: str, name: str) -> model.FunctionConfig | None:
        """The function's $LATEST configuration and tags (None: no such function there)."""

    def functions_tagged(self, *, region: str, tags: Sequence[tuple[str, str]]) -> list[str]:
        """The names of the functions in `region` that carry every one of `tags` (each key
        with that value), sorted; none when `tags` is empty."""

    def update_layers(self, *, region: str, name: str, layers: Sequence[str],
                      revision_id: str | None) -> str | None:
        """Set the function's Layers to `layers` (in that order), only if its RevisionId is
        still `revision_id` (None: unguarded, for endpoints that report none); the new
        RevisionId (None when the endpoint reports none)."""

    def wait_updated(self, *, region: str, name: str, timeout: float) -> None:
        """Wait, at most `timeout` seconds, until the function's LastUpdateStatus is
        Successful; errors.FunctionUpdateFailed (with LastUpdateStatusReason) when it is
        Failed, errors.FunctionUpdateTimeout when it is still in progress at the end,
        errors.AwsError when the function is gone."""


class ParameterStore(Protocol):
    """SSM Parameter Store's String parameters, per region. Safe to call from several
    threads at once. Writes are paced (SSM allows a few per second per account and region)
    and a throttled write is sent again after a wait; a write sent without a clear answer is
    errors.OutcomeUnknown (read it back before sending it again)."""

    def get(self, *, region: str, name: str) -> model.ParameterValue | None:
        """The parameter's value, version and type (None: no such parameter)."""

    def put(self, *, region: str, name: str, value: str, overwrite: bool) -> int:
        """Write `value` as a String parameter; its new version. Without `overwrite`, a
        parameter that exists already is an errors.AwsError (ParameterAlreadyExists)."""


class ArtifactStore(Protocol):
    """The S3 objects of layer code, per region: the artifact bucket apply uploads zips to,
    and the objects `content.s3` names. Safe to call from several threads at once."""

    def head_object(self, *, region: str,
                    location: model.S3Object) -> model.StoredObject | None:
        """HeadObject with its checksum (None: no such object, or no such version)."""

    def upload_file(self, *, region: str, location: model.S3Object, zip_path: PurePath,
                    content_sha256: str) -> None:
        """Upload the file at `zip_path` to `location` (multipart when large, streamed from
        the file, with a SHA-256 checksum), recording `content_sha256` in its metadata."""


class PackageIndex(Protocol):
    """A Python package index's simple API (PEP 691 JSON or PEP 503 HTML), as a build from a
    lock asks it: the wheels a project offers, and the bytes of a file. Every answer is
    checked (a page it cannot read is a ContentError naming the index and the project, never
    a KeyError). Safe to call from several threads at once."""

    @property
    def url(self) -> str:
        """The index's simple API root, for messages (credentials removed)."""

    def wheels(self, name: str) -> list[builds.Wheel]:
        """The wheel files of the project `name` (canonical, PEP 503) that carry a SHA-256,
        each with its absolute `url`; [] when the index has no such project. Raises
        ContentError when the index cannot be reached or answers what cannot be read."""

    def fetch(self, url: str) -> AbstractContextManager[BinaryIO]:
        """The bytes of the file at `url` (a wheel this index or a lock names), as a stream
        read once; retried on a dropped connection or a 5xx before it is handed over. Raises
        ContentError naming the URL when it cannot be had."""


class StateBackend(Protocol):
    """Where the recorded state lives, with revisions and a lock (after Terraform's
    statemgr: Lock(info) -> id, Unlock(id); a write names the revision it replaces).

    - `read()` returns the state and its revision.
    - `write(lock, expected_revision=...)` replaces the state only if it is still at
      `expected_revision` (NO_REVISION: only if there is none), and returns the new
      revision; otherwise it raises errors.StateConflict and changes nothing.
    - `lock(holder, timeout=...)` takes the exclusive lock, waiting up to `timeout`
      seconds, and returns the lock id; a lock held by another run raises
      errors.StateLocked naming its holder. `unlock(lock_id)` releases it.
    - `force_unlock(lock_id)` releases a lock another run left, if `lock_id` is its id,
      and returns its holder; errors.StateError otherwise. `current_lock()` says who holds
      the lock now and whether that holder is alive on this host, for force-unlock to
      refuse a live one (the local backend may try the flock for an instant to tell).
    - `lock_holder()` reads who holds the lock from its record alone, changing nothing and
      never touching the flock: a plan asks it, often, and must never make a contending
      apply see the lock busy (so it is not derived from `current_lock()`).
    - A lock or write whose reply was lost (the store did it, the client's retry was
      refused by the condition it set, or no answer came) is read back: finding its own
      lock id, or its own bytes, it succeeded.
    """

    @property
    def location(self) -> str:
        """Where the state is, for messages: a path or an s3:// URL."""

    def read(self) -> Snapshot:
        """The current state and its revision."""

    def write(self, lock: model.Lock, *, expected_revision: str) -> str:
        """Replace the state if it is still at `expected_revision`; the new revision."""

    def check_writable(self) -> None:
        """Raise errors.StateError unless a write could succeed (checked before the first
        publish, so that no publish is left unrecorded for want of a writable state)."""

    def lock(self, holder: errors.LockHolder, *, timeout: float = 0.0) -> str:
        """Take the lock (holder.lock_id is ignored; the backend makes the id)."""

    def unlock(self, lock_id: str) -> None:
        """Release the lock this run holds."""

    def force_unlock(self, lock_id: str) -> errors.LockHolder:
        """Release a lock left by another run, if `lock_id` is its id."""

    def current_lock(self) -> HeldLock | None:
        """The lock as it is now (None: not locked); reads only."""

    def lock_holder(self) -> errors.LockHolder | None:
        """Who holds the lock now, read without taking it (None: nobody does, or only a
        run known to be dead). Read-only: a plan asks it before deleting stray fillers."""


class ObjectStore(Protocol):
    """One S3 bucket as the S3 state backend needs it: whole objects, ETags and conditional
    writes. Keys are full object keys; an ETag is returned exactly as the store sends it.

    - `get(key)` returns (bytes, etag), or None when there is no such object.
    - `put(key, data, if_match=..., if_none_match=...)` writes the object and returns its new
      ETag. With `if_match` it writes only over an object of that ETag; with
      `if_none_match` only where there is no object. A refused condition raises
      errors.PreconditionFailed and changes nothing.
    - `delete(key)` removes the object (no error when there is none).
    - `listing(prefix)` lists the keys that start with `prefix`, with their write times.
    Every other failure is an errors.StateError or errors.AwsError with a hint.
    """

    @property
    def bucket(self) -> str:
        """The bucket's name."""

    @property
    def endpoint(self) -> str:
        """Where the store is reached, for messages (an endpoint URL, or "AWS S3")."""

    def get(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag, or None."""

    def put(self, key: str, data: bytes, *, if_match: str | None = None,
            if_none_match: bool = False) -> str:
        """Write the object if the condition holds; its new ETag."""

    def delete(self, key: str) -> None:
        """Remove the object, if there is one."""

    def listing(self, prefix: str) -> list[StoredKey]:
        """Every object whose key starts with `prefix` (all pages)."""
