"""The steps of a lane, against the stores: the checks before the first publish (`preflight`),
the upload to the artifact bucket, align_versions' fillers (published exactly once, deleted
after any failure), the real publish with its CodeSha256 check and grants, a `grant` change and
a `delete` change. Each step is one call sequence; where it runs and how it is recorded is
lanes'."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from reconciler import errors, model, planner, ports, publishing, render
from reconciler.applying import consumers
from reconciler.applying.report import Deleted, Granted, Published

Progress = Callable[[str], None]


PUBLISHING = (model.Action.CREATE, model.Action.PUBLISH)


def quiet(_: str) -> None:
    return None


class CodeSource(Protocol):
    """Where apply gets the zip of a change (checked against the plan's CodeSha256)."""

    def zip_for(self, change: model.Change) -> Path:
        """The zip to upload for `change`."""


def preflight(plan: model.Plan, *, state: ports.StateBackend,
              code: CodeSource) -> dict[tuple[str, str], Path]:
    """The checks that could fail after a publish, made before the first one: no layer in
    error, every zip at hand with its planned CodeSha256, the state writable."""
    if plan.errors:
        listed = "\n".join(f"  {error.layer}: {error.message}" for error in plan.errors)
        raise errors.ApplyRefused(
            f"refusing to apply: {len(render.error_layers(plan))} layer(s) could not be "
            f"planned:\n{listed}",
            hint="fix them (or leave them out with --target) and plan again")
    zips: dict[tuple[str, str], Path] = {}
    for change in plan.changes:
        if change.action in PUBLISHING and not from_s3_source(change):
            try:
                zips[(change.layer, change.region)] = code.zip_for(change)
            except errors.ContentError as error:
                raise errors.ApplyFailed(f"nothing was published: {error.message}",
                                         hint=error.hint) from error
    if zips or plan.records or any(change.action in (model.Action.GRANT, model.Action.FORGET)
                                   for change in plan.changes):
        try:
            state.check_writable()
        except errors.StateError as error:
            raise errors.StateError(f"nothing was published: {error.message}",
                                    hint=error.hint) from error
    return zips


def _route(change: model.Change) -> model.UploadRoute | None:
    if change.action not in PUBLISHING:
        return None
    code = change.details_as(model.PublishDetails).code
    return code.route if code is not None else None


def through_s3(change: model.Change) -> bool:
    return _route(change) is model.UploadRoute.ARTIFACT_BUCKET


def from_s3_source(change: model.Change) -> bool:
    return _route(change) is model.UploadRoute.S3_SOURCE


def already_uploaded(found: model.StoredObject | None, *, desired: model.Desired) -> bool:
    """Whether the object at a zip's artifact key already is that zip: the same size, and
    either a single-part ChecksumSHA256 equal to its CodeSha256 (S3 computed it over the
    whole object) or, for a multipart object (whose checksum is one of part checksums), the
    zip's SHA-256 that reconcile recorded in its metadata. Lambda's CodeSha256 of the
    published version is checked against the plan either way."""
    if found is None or desired.code_size is None or found.size != desired.code_size:
        return False
    if found.checksum_sha256 and not found.multipart:
        return found.checksum_sha256 == desired.code_sha256
    return found.content_sha256 is not None and found.content_sha256 == desired.content_sha256


def upload_once(change: model.Change, s3_object: model.S3Object, *, zip_path: Path,
                objects: ports.ArtifactStore, progress: Progress) -> bool:
    """Upload the change's zip to its artifact key unless it is there already; whether it
    uploaded."""
    where = f"s3://{s3_object.bucket}/{s3_object.key}"
    found = objects.head_object(region=change.region, location=s3_object)
    if already_uploaded(found, desired=change.desired):
        progress(f"{change.layer}: {where} already holds the zip; not uploaded again")
        return False
    progress(f"{change.layer}: uploading {change.desired.code_size or 0:,} bytes to {where}")
    objects.upload_file(region=change.region, location=s3_object, zip_path=zip_path,
                        content_sha256=change.desired.content_sha256 or "")
    return True


@dataclass(frozen=True)
class Steps:
    """The calls one step of a lane makes, against the stores."""

    store: ports.LayerStore
    objects: ports.ArtifactStore | None
    zips: dict[tuple[str, str], Path]
    filler_zip: Path
    progress: Progress
    functions: ports.FunctionStore | None = None
    parameters: ports.ParameterStore | None = None
    wait_seconds: float = consumers.WAIT_SECONDS
    coordination: consumers.Coordination = field(
        default_factory=lambda: consumers.Coordination(()))

    def consumer(self, change: model.Change, *,
                 latest: str | None) -> consumers.Moved | consumers.Written:
        """Move a consumer (update_function, put_parameter) to `latest`, the version the
        lane published and recorded (None: it published none, and the plan names the
        version)."""
        if change.action is model.Action.UPDATE_FUNCTION and self.functions is not None:
            return consumers.update_function(change, latest=latest, functions=self.functions,
                                             wait_seconds=self.wait_seconds,
                                             progress=self.progress,
                                             coordination=self.coordination)
        if change.action is model.Action.PUT_PARAMETER and self.parameters is not None:
            return consumers.put_parameter(change, latest=latest, parameters=self.parameters,
                                           progress=self.progress)
        raise errors.ApplyFailed(f"no store to carry out a {change.action.value} change; "
                                 "this is a bug")

    def publish(self, change: model.Change) -> Published:
        """Upload (through S3), fillers, the real version, its CodeSha256 check and grants;
        any failure after the fillers deletes them."""
        store, progress = self.store, self.progress
        zip_path = self.zips.get((change.layer, change.region))
        code = change.details_as(model.PublishDetails).code
        s3_object = code.s3 if code and (through_s3(change) or from_s3_source(change)) else None
        # The upload first: one that fails has taken no version number (no filler yet).
        if through_s3(change) and s3_object and zip_path and self.objects is not None:
            upload_once(change, s3_object, zip_path=zip_path, objects=self.objects,
                        progress=progress)
        fillers = publish_fillers(change, store=store, zip_path=self.filler_zip,
                                  progress=progress)
        try:
            progress(f"{change.layer}: publishing in {change.region}")
            # Sent once; after an unknown outcome the version is looked for before any resend.
            outcome = publishing.publish_exactly_once(
                store, region=change.region, layer_name=change.layer_name,
                settings=change.desired.settings, zip_path=zip_path,
                code_sha256=change.desired.code_sha256 or "",  # preflight checked the zip
                above_version=change.current.version if change.current else 0,
                s3_object=s3_object)
            version = outcome.version
            if outcome.adopted:
                progress(f"{change.layer}: the publish's reply was lost; found "
                         f"v{version.version} in {change.region}")
            # An S3 object without a SHA-256 checksum has no CodeSha256 to check against.
            if change.desired.code_sha256 is not None \
                    and version.code_sha256 != change.desired.code_sha256:
                raise errors.AwsError(
                    f"{version.layer_version_arn} was published, but Lambda reports its "
                    f"CodeSha256 as {version.code_sha256} while the uploaded zip has "
                    f"{change.desired.code_sha256}; it is not recorded")
            grant_new_version(change, version, store=store)
        except errors.ReconcilerError as error:
            # Every failure after the fillers deletes them (a failed grant included).
            raise without_fillers(error, change=change, fillers=fillers,
                                  store=store) from error
        except Exception:
            # Not a failure the tool knows (a bug, an unmapped error): the fillers still go,
            # and what happened is raised as it is.
            with contextlib.suppress(errors.ReconcilerError):
                delete_fillers(change, fillers, store=store)
            raise
        return Published(change, version, adopted=outcome.adopted, fillers=fillers)

    def grant(self, change: model.Change) -> Granted:
        """Add and remove the statements a `grant` change names."""
        self.progress(f"{change.layer}: updating grants in {change.region}")
        update_grants(change, store=self.store)
        return Granted(change)

    def delete(self, change: model.Change) -> Deleted:
        """Delete the version a `delete` change names."""
        version = change.details_as(model.DeleteDetails).version
        self.progress(f"{change.layer}: deleting v{version} in {change.region}")
        self.store.delete_version(region=change.region, layer_name=change.layer_name,
                                  version=version)
        return Deleted(change, (version,))

    def delete_fillers(self, change: model.Change, fillers: tuple[int, ...]) -> Deleted:
        """Delete a recorded publish's fillers; a failure says what the next plan does."""
        try:
            delete_fillers(change, fillers, store=self.store)
        except errors.ReconcilerError as error:
            raise _reworded(error, (
                f"{error.message}; the filler version(s) {_numbers(fillers)} of "
                f"{change.layer_name} in {change.region} could not all be deleted: the "
                "next plan deletes what is left (reason stray_filler)")) from error
        return Deleted(change, fillers)


def publish_fillers(change: model.Change, *, store: ports.LayerStore, zip_path: Path,
                    progress: Progress = quiet) -> tuple[int, ...]:
    """Publish the change's filler versions (never granted), each exactly once: a filler
    whose reply was lost is looked for (by its CodeSha256 and description) before it is sent
    again, so no filler is made twice. On a failure, delete the fillers made so far, and any
    filler an unknown outcome may have left above them, then raise."""
    made: list[int] = []
    settings = model.Settings(description=planner.FILLER_DESCRIPTION)
    code_sha256 = planner.filler_code_sha256()
    details = change.details_as(model.PublishDetails)
    count = details.align.fillers if details.align else 0
    # Above every number the plan saw taken (fillers an earlier apply left included, which
    # a lost reply's look-up must not take for this apply's own).
    base = max(change.current.version if change.current else 0,
               (details.expected_version or 0) - count - 1)
    for _ in range(count):
        progress(f"{change.layer}: filler {len(made) + 1}/{count} in {change.region}")
        try:
            outcome = publishing.publish_exactly_once(
                store, region=change.region, layer_name=change.layer_name, settings=settings,
                zip_path=zip_path, code_sha256=code_sha256,
                above_version=made[-1] if made else base)
        except errors.ReconcilerError:
            delete_fillers(change, tuple(made) + _stray_fillers(change, store=store,
                                                                above=made[-1] if made
                                                                else base),
                           store=store)
            raise
        made.append(outcome.version.version)
    return tuple(made)


def _stray_fillers(change: model.Change, *, store: ports.LayerStore,
                   above: int) -> tuple[int, ...]:
    """Fillers above `above` that a publish of unknown outcome made in this apply (the lock
    keeps any other apply out, and a filler's bytes and description are this tool's own).
    When even the look fails, nothing more is deleted: the next plan shows the filler as
    the latest version and publishes over it."""
    try:
        found = store.versions_above(region=change.region, layer_name=change.layer_name,
                                     version=above)
    except errors.ReconcilerError:
        return ()
    return tuple(version.version for version in found
                 if version.code_sha256 == planner.filler_code_sha256()
                 and version.settings.description == planner.FILLER_DESCRIPTION)


def delete_fillers(change: model.Change, fillers: tuple[int, ...], *,
                   store: ports.LayerStore) -> None:
    """Delete the filler versions this apply made (and only those): each is tried, and the
    first failure is raised once all were."""
    failures: list[errors.ReconcilerError] = []
    for version in fillers:
        try:
            store.delete_version(region=change.region, layer_name=change.layer_name,
                                 version=version)
        except errors.ReconcilerError as error:
            failures.append(error)
    if failures:
        raise failures[0]


def without_fillers(error: errors.ReconcilerError, *, change: model.Change,
                    fillers: tuple[int, ...],
                    store: ports.LayerStore) -> errors.ReconcilerError:
    """Delete the change's fillers after `error` (a failure after they were made), and
    return the error to raise: `error` itself, or, when a delete fails too, `error` saying
    which fillers are left (the next plan deletes them as stray fillers)."""
    if not fillers:
        return error
    try:
        delete_fillers(change, fillers, store=store)
    except errors.ReconcilerError as failed:
        message = (f"{error.message}; deleting its filler version(s) {_numbers(fillers)} "
                   f"failed too ({failed.message}): the next plan deletes what is left "
                   "(reason stray_filler)")
        # The same kind of error, with what is known about the fillers added.
        return _reworded(error, message)
    return error


def _reworded(error: errors.ReconcilerError, message: str) -> errors.ReconcilerError:
    """A copy of `error` with another message (its kind, hint and codes kept)."""
    copied = copy.copy(error)
    copied.message = message
    copied.args = (message,)
    return copied


def _numbers(versions: tuple[int, ...]) -> str:
    return ", ".join(f"v{version}" for version in versions)


def grant_new_version(change: model.Change, version: model.RemoteVersion, *,
                      store: ports.LayerStore) -> None:
    """Give a newly published version the managed grants, before it is recorded. A failure
    leaves it unrecorded: the next plan adopts it and grants what is missing."""
    for grant in change.desired.grants:
        try:
            store.add_permission(region=change.region, layer_name=change.layer_name,
                                 version=version.version, grant=grant)
        except errors.ReconcilerError as error:
            raise errors.AwsError(
                f"{version.layer_version_arn} was published, but granting it to "
                f"{grant.kind} {grant.principal} failed: {error.message}; it is not "
                "recorded (the next plan adopts it and grants it)",
                hint=error.hint,
                aws_code=error.aws_code if isinstance(error, errors.AwsError) else None,
            ) from error


def update_grants(change: model.Change, *, store: ports.LayerStore) -> None:
    """Add and remove the statements a `grant` change names on its version."""
    if change.current is None:
        return
    details = change.details_as(model.GrantDetails)
    for grant in details.add:
        store.add_permission(region=change.region, layer_name=change.layer_name,
                             version=change.current.version, grant=grant)
    for statement_id in details.remove:
        store.remove_permission(region=change.region, layer_name=change.layer_name,
                                version=change.current.version, statement_id=statement_id)


def alignment_warnings(change: model.Change, version: model.RemoteVersion) -> list[str]:
    """A region whose new version missed the align_versions target (versions deleted out of
    band make Lambda skip their numbers): said, and the next plan aligns again."""
    align = change.details_as(model.PublishDetails).align
    if align is None or align.target is None or version.version == align.target:
        return []
    return [f"{change.layer} ({change.region}): published v{version.version}, not the "
            f"align_versions target v{align.target}; the next plan aligns again"]
