"""The apply use case: carry out a model.Plan's actions against the stores, nothing beside
them (the Lambda store, the state backend, the local code). Never prints or prompts: progress
goes to a callback, and the outcome is an ApplyReport.

How it runs (the whole concurrency model). Every check that could fail after a publish is
made before the first one (each zip rebuilt or found and matched against the planned
CodeSha256; the state writable). Then the changes run as lanes, one per layer and region
(`lanes`): a lane runs its steps in order (its publish, create or grant; once a publish is
recorded, its fillers' deletion; then its deletions), and lanes, which do not depend on each
other, run `parallelism` at a time in a thread pool, so one failure stops nothing else. The
calling thread is the one writer of the state (`_Recorder`): a lane asks it to record each
success and waits for the answer, and it writes at once, with a revision-checked write, so a
crash at any point loses no record (the next plan adopts an unrecorded publish). The stop
rules live in one place (`_gate`, checked before each step): a stop request (SIGTERM,
Ctrl-C: the command layer sets `stop`) starts no new step but lets the steps in flight finish
and be recorded, and a filler is deleted even then; a state write that fails stops every
lane's next step; a region whose calls keep failing for reasons of the region (unreachable,
5xx, throttled out) is given up after REGION_FAILURES_TO_GIVE_UP failures in a row
(`_Regions`). What was not started is reported as not attempted, and a rerun does only what
is missing. A second Ctrl-C raises in the calling thread: the recorder closes (a lane waiting
for it learns its step is not recorded, the next plan adopts it), and the pool waits for the
calls in flight. No process is forked here.

Uploads: a change routed through the artifact bucket (its `code`) has its zip, checked in
preflight, uploaded to its key unless HeadObject finds the same zip there already
(`already_uploaded`), then published from S3; a rerun finds the object and uploads nothing.

A layer vendor's release (carried out here in its own functions). One publish, in this
order: the upload to the artifact bucket (a failure there has taken no version number),
align_versions' filler versions when the plan asks for them, the real version, its grants;
then it is recorded. Any failure after the fillers deletes them before it is reported (a
failed grant included); after the record a follow-up job deletes them. A filler left anyway
(the apply was killed, or Lambda kept refusing the delete) is found by the next plan, which
deletes it (a `delete` change, reason stray_filler) unless an apply holds the lock; the
numbers it took stay taken, and the plan counts them, so the rerun lands on the same
number. A `grant` change edits the latest version's permissions and records the new
settings digest; a `delete` change (retention, stray filler) runs once the same layer and
region's publish is recorded, and not at all when that publish failed.
"""

from __future__ import annotations

import concurrent.futures
import copy
import queue
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from reconciler import errors, model, planner, ports, publishing

Progress = Callable[[str], None]
_PUBLISHING = (model.Action.CREATE, model.Action.PUBLISH)
# After this many failures in a row in one region for reasons of the region, its remaining
# changes are not attempted: they would almost surely fail the same way.
REGION_FAILURES_TO_GIVE_UP = 2
_POLL_SECONDS = 0.1


def _quiet(_: str) -> None:
    return None


class CodeSource(Protocol):
    """Where apply gets the zip of a change (checked against the plan's CodeSha256)."""

    def zip_for(self, change: model.LayerChange) -> Path:
        """The zip to upload for `change`."""


@dataclass(frozen=True)
class Published:
    """A version apply published (or found already published after a lost reply)."""

    change: model.LayerChange
    version: model.RemoteVersion
    adopted: bool = False
    fillers: tuple[int, ...] = ()  # align_versions' filler versions, deleted next


@dataclass(frozen=True)
class Granted:
    """A `grant` change carried out on its version."""

    change: model.LayerChange


@dataclass(frozen=True)
class Deleted:
    """Versions apply deleted for one change: a retention `delete`, or a publish's fillers."""

    change: model.LayerChange
    versions: tuple[int, ...]


Outcome = Published | Granted | Deleted


@dataclass(frozen=True)
class Failed:
    """A change that failed, and why."""

    change: model.LayerChange
    error: errors.ReconcilerError


@dataclass(frozen=True)
class NotAttempted:
    """A change apply did not start, and why."""

    change: model.LayerChange
    why: str


@dataclass
class ApplyReport:
    """What apply did: versions published, records written, failures, changes not tried."""

    published: list[Published] = field(default_factory=list)
    recorded: list[model.LayerChange] = field(default_factory=list)
    granted: list[model.LayerChange] = field(default_factory=list)
    deleted: list[Deleted] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    not_attempted: list[NotAttempted] = field(default_factory=list)
    unchanged: int = 0
    interrupted: bool = False
    lock: model.Lock = field(default_factory=model.Lock)
    revision: str = ""

    def sort(self) -> None:
        """Each list in the plan's order (layer, region, version), whatever order the lanes
        finished in."""
        def by_change(item: Published | Failed | NotAttempted | Deleted) -> tuple[str, str, int]:
            change = item.change
            return (change.layer, change.region, change.version or 0)

        self.published.sort(key=by_change)
        self.failed.sort(key=by_change)
        self.not_attempted.sort(key=by_change)
        self.deleted.sort(key=by_change)
        self.granted.sort(key=lambda change: (change.layer, change.region))

    @property
    def ok(self) -> bool:
        """True when every change was carried out."""
        return not (self.failed or self.not_attempted or self.interrupted)

    def failure_summary(self, *, state_location: str) -> str:
        """What failed and what was done before, in words that never claim more than is
        known: after a publish whose outcome is unknown, "nothing" is a claim nobody can
        make, so the message says that publish may have made an unrecorded version."""
        done = ", ".join(f"{item.change.layer} ({item.change.region}) v{item.version.version}"
                         for item in self.published)
        unknown = [item for item in self.failed
                   if isinstance(item.error, errors.PublishOutcomeUnknown)]
        failed = "; ".join(f"{item.change.layer} ({item.change.region}): {item.error.message}"
                           for item in self.failed)
        lines = [f"apply incomplete: {len(self.failed)} failed, {len(self.not_attempted)} not "
                 f"attempted" + (f" ({failed})" if failed else "")]
        if unknown:
            lines.append(
                f"recorded in {state_location} before the failure: {done or 'no version'}; "
                + "; ".join(f"the failed publish of {item.change.layer} ({item.change.region}) "
                            "may have made a version that is not recorded" for item in unknown))
        else:
            lines.append(f"published before the failure, and recorded in the lockfile "
                         f"({state_location}): {done or 'nothing'}")
        return "\n".join(lines)


def preflight(plan: model.Plan, *, state: ports.StateBackend,
              code: CodeSource) -> dict[tuple[str, str], Path]:
    """The checks that could fail after a publish, made before the first one: no layer in
    error, every zip at hand with its planned CodeSha256, the state writable."""
    if plan.errors:
        listed = "\n".join(f"  {error.layer}: {error.message}" for error in plan.errors)
        raise errors.ApplyRefused(
            f"refusing to apply: {len(plan.errors)} layer(s) could not be planned:\n{listed}",
            hint="fix them (or leave them out with --target) and plan again")
    zips: dict[tuple[str, str], Path] = {}
    for change in plan.changes:
        if change.action in _PUBLISHING and not _from_s3_source(change):
            try:
                zips[(change.layer, change.region)] = code.zip_for(change)
            except errors.ContentError as error:
                raise errors.ApplyFailed(f"nothing was published: {error.message}",
                                         hint=error.hint) from error
    if zips or plan.records or any(change.action is model.Action.GRANT
                                   for change in plan.changes):
        try:
            state.check_writable()
        except errors.StateError as error:
            raise errors.StateError(f"nothing was published: {error.message}",
                                    hint=error.hint) from error
    return zips


def _through_s3(change: model.LayerChange) -> bool:
    return (change.action in _PUBLISHING and change.code is not None
            and change.code.route is model.UploadRoute.ARTIFACT_BUCKET)


def _from_s3_source(change: model.LayerChange) -> bool:
    return (change.action in _PUBLISHING and change.code is not None
            and change.code.route is model.UploadRoute.S3_SOURCE)


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


def upload_once(change: model.LayerChange, s3_object: model.S3Object, *, zip_path: Path,
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


def _region_trouble(error: errors.ReconcilerError) -> bool:
    """Whether a failure says more about the region than about the change."""
    if isinstance(error, errors.EndpointError):
        return True
    if isinstance(error, errors.PublishOutcomeUnknown):
        return True
    return isinstance(error, errors.AwsError) and error.aws_code in (
        "TooManyRequestsException", "ThrottlingException", "ServiceException",
        "ServiceUnavailable", "InternalFailure")


def apply(
    plan: model.Plan,
    *,
    store: ports.LayerStore,
    state: ports.StateBackend,
    code: CodeSource,
    snapshot: ports.Snapshot,
    objects: ports.ArtifactStore | None = None,
    parallelism: int = 4,
    stop: threading.Event | None = None,
    progress: Progress = _quiet,
) -> ApplyReport:
    """Carry out `plan` on top of `snapshot` (the state as read under the lock). Raises only
    before the first change (preflight); after that every outcome is in the report.
    `objects` serves the changes whose code goes through S3 (none: a plan that has one is
    refused before anything is done)."""
    stop = stop or threading.Event()
    zips = preflight(plan, state=state, code=code)
    if objects is None and any(_through_s3(change) for change in plan.changes):
        raise errors.ApplyRefused("refusing to apply: the plan uploads through S3 and this "
                                  "apply was given no S3 store; this is a bug")
    report = ApplyReport(lock=snapshot.lock, revision=snapshot.revision)
    recorder = _Recorder(state=state, report=report)
    for change in plan.changes:
        if change.action is model.Action.NOOP:
            if change.record is None:
                report.unchanged += 1
            elif recorder.record(change, change.record, published=False):
                report.recorded.append(change)
    if recorder.broken:
        report.not_attempted.extend(NotAttempted(change, "the state cannot be written")
                                    for change in plan.changes
                                    if change.action is not model.Action.NOOP)
        return report
    with tempfile.TemporaryDirectory(prefix="reconcile-filler-") as folder:
        filler_zip = Path(folder) / "filler.zip"
        filler_zip.write_bytes(filler_zip_bytes())
        steps = _Steps(store=store, objects=objects, zips=zips, filler_zip=filler_zip,
                       progress=progress)
        results = _run_lanes(lanes(plan), steps=steps, recorder=recorder, stop=stop,
                             parallelism=parallelism)
    for result in results:
        result.merge_into(report)
    report.sort()
    report.interrupted = stop.is_set()
    return report


@dataclass(frozen=True)
class Lane:
    """One layer in one region: its publish, create or grant (`head`, if any), then its
    deletions (retention, stray fillers), oldest version first. A lane runs its steps in
    order; lanes run side by side."""

    layer: str
    region: str
    head: model.LayerChange | None
    deletes: tuple[model.LayerChange, ...]


def lanes(plan: model.Plan) -> list[Lane]:
    """The plan's changes (no-ops aside) as lanes, in the plan's order."""
    grouped: dict[tuple[str, str], list[model.LayerChange]] = {}
    for change in plan.changes:
        if change.action is not model.Action.NOOP:
            grouped.setdefault((change.layer, change.region), []).append(change)
    found: list[Lane] = []
    for (layer, region), changes in grouped.items():
        heads = [change for change in changes if change.action is not model.Action.DELETE]
        deletes = sorted((change for change in changes if change.action is model.Action.DELETE),
                         key=lambda change: change.version or 0)
        found.append(Lane(layer=layer, region=region, head=heads[0] if heads else None,
                          deletes=tuple(deletes)))
    return found


class _Recorder:
    """The one writer of the state: the thread that made it (apply's caller) writes every
    record, each with a revision-checked write the moment it is asked for; a lane on a worker
    thread asks and waits for the answer. After a write fails, the state is `broken`: no lane
    starts another step. `close()` (the caller stops at once) answers every request after it
    with False, so no lane waits for a writer that is gone."""

    def __init__(self, *, state: ports.StateBackend, report: ApplyReport) -> None:
        self._state, self._report = state, report
        self._owner = threading.get_ident()
        self._requests: queue.Queue[tuple[model.LayerChange, model.LockEntry, bool,
                                          concurrent.futures.Future[bool]]] = queue.Queue()
        self._closed = threading.Event()
        self.broken = False

    def record(self, change: model.LayerChange, entry: model.LockEntry, *,
               published: bool) -> bool:
        """Write `entry` for `change` (from any thread); whether it is recorded."""
        if threading.get_ident() == self._owner:
            return self._write(change, entry, published=published)
        answer: concurrent.futures.Future[bool] = concurrent.futures.Future()
        self._requests.put((change, entry, published, answer))
        if self._closed.is_set():  # closed meanwhile: nobody serves the queue any more
            self.close()
        return answer.result()

    def serve(self, until: Callable[[], bool]) -> None:
        """Write what lanes ask for until `until()` holds and nothing is asked (the owner)."""
        try:
            while True:
                try:
                    change, entry, published, answer = self._requests.get(
                        timeout=_POLL_SECONDS)
                except queue.Empty:
                    if until():
                        return
                    continue
                answer.set_result(self._write(change, entry, published=published))
        finally:
            self.close()

    def close(self) -> None:
        """Answer every request, now and later, with "not recorded" (any thread may drain)."""
        self._closed.set()
        while True:
            try:
                *_, answer = self._requests.get_nowait()
            except queue.Empty:
                return
            if not answer.done():
                answer.set_result(False)

    def _write(self, change: model.LayerChange, entry: model.LockEntry, *,
               published: bool) -> bool:
        report = self._report
        updated = report.lock.with_entry(change.layer, change.region, entry=entry)
        try:
            report.revision = self._state.write(updated, expected_revision=report.revision)
        except errors.ReconcilerError as error:
            what = (f"{entry.layer_version_arn} is published but not recorded (the next plan "
                    "adopts it)" if published else
                    f"{entry.layer_version_arn} could not be recorded")
            report.failed.append(Failed(change, errors.StateError(
                f"cannot record in {self._state.location}: {error.message}; {what}",
                hint=error.hint)))
            self.broken = True
            return False
        report.lock = updated
        return True


class _Regions:
    """The give-up rule, shared by the lanes: after REGION_FAILURES_TO_GIVE_UP failures in a
    row for reasons of the region, its steps not yet started are not attempted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, int] = {}
        self._given_up: dict[str, str] = {}

    def failed(self, region: str, error: errors.ReconcilerError) -> None:
        if not _region_trouble(error):
            return
        with self._lock:
            self._failures[region] = self._failures.get(region, 0) + 1
            if self._failures[region] >= REGION_FAILURES_TO_GIVE_UP:
                self._given_up.setdefault(region, error.message)

    def succeeded(self, region: str) -> None:
        with self._lock:
            self._failures[region] = 0

    def given_up(self, region: str) -> str | None:
        with self._lock:
            return self._given_up.get(region)


@dataclass
class _LaneResult:
    """What one lane did, merged into the report by the calling thread."""

    published: list[Published] = field(default_factory=list)
    granted: list[model.LayerChange] = field(default_factory=list)
    deleted: list[Deleted] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    not_attempted: list[NotAttempted] = field(default_factory=list)

    def merge_into(self, report: ApplyReport) -> None:
        report.published += self.published
        report.granted += self.granted
        report.deleted += self.deleted
        report.warnings += self.warnings
        report.failed += self.failed
        report.not_attempted += self.not_attempted


@dataclass(frozen=True)
class _Steps:
    """The calls one step of a lane makes, against the stores."""

    store: ports.LayerStore
    objects: ports.ArtifactStore | None
    zips: dict[tuple[str, str], Path]
    filler_zip: Path
    progress: Progress

    def publish(self, change: model.LayerChange) -> Published:
        """Upload (through S3), fillers, the real version, its CodeSha256 check and grants;
        any failure after the fillers deletes them."""
        store, progress = self.store, self.progress
        zip_path = self.zips.get((change.layer, change.region))
        s3_object = change.code.s3 if change.code and (
            _through_s3(change) or _from_s3_source(change)) else None
        # The upload first: one that fails has taken no version number (no filler yet).
        if _through_s3(change) and s3_object and zip_path and self.objects is not None:
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
        return Published(change, version, adopted=outcome.adopted, fillers=fillers)

    def grant(self, change: model.LayerChange) -> Granted:
        """Add and remove the statements a `grant` change names."""
        self.progress(f"{change.layer}: updating grants in {change.region}")
        update_grants(change, store=self.store)
        return Granted(change)

    def delete(self, change: model.LayerChange) -> Deleted:
        """Delete the version a `delete` change names."""
        self.progress(f"{change.layer}: deleting v{change.version} in {change.region}")
        self.store.delete_version(region=change.region, layer_name=change.layer_name,
                                  version=change.version or 0)
        return Deleted(change, (change.version or 0,))

    def delete_fillers(self, change: model.LayerChange, fillers: tuple[int, ...]) -> Deleted:
        """Delete a recorded publish's fillers; a failure says what the next plan does."""
        try:
            delete_fillers(change, fillers, store=self.store)
        except errors.ReconcilerError as error:
            raise _reworded(error, (
                f"{error.message}; the filler version(s) {_numbers(fillers)} of "
                f"{change.layer_name} in {change.region} could not all be deleted: the "
                "next plan deletes what is left (reason stray_filler)")) from error
        return Deleted(change, fillers)


def _run_lanes(found: list[Lane], *, steps: _Steps, recorder: _Recorder,
               stop: threading.Event, parallelism: int) -> list[_LaneResult]:
    """Run the lanes `parallelism` at a time while this thread records for them."""
    regions = _Regions()
    with concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, parallelism), thread_name_prefix="reconcile-apply") as pool:
        futures = [pool.submit(_run_lane, lane, steps=steps, recorder=recorder,
                               regions=regions, stop=stop) for lane in found]
        recorder.serve(until=lambda: all(future.done() for future in futures))
        return [future.result() for future in futures]


def _gate(region: str, *, recorder: _Recorder, regions: _Regions,
          stop: threading.Event) -> str | None:
    """Why a lane may not start its next step (None: it may)."""
    if stop.is_set():
        return "apply was interrupted"
    if recorder.broken:
        return "the state cannot be written"
    given_up = regions.given_up(region)
    return f"{region} kept failing: {given_up}" if given_up is not None else None


def _run_lane(lane: Lane, *, steps: _Steps, recorder: _Recorder, regions: _Regions,
              stop: threading.Event) -> _LaneResult:
    """One lane's steps in order: its head, then (after a publish, only once it is
    recorded, and after its fillers are deleted) its deletions."""
    result = _LaneResult()
    head, deletes = lane.head, list(lane.deletes)
    if head is not None:
        blocked = _run_head(head, steps=steps, recorder=recorder, regions=regions, stop=stop,
                            result=result)
        if blocked is not None:
            result.not_attempted += [NotAttempted(change, blocked) for change in deletes]
            return result
    for change in deletes:
        why = _gate(lane.region, recorder=recorder, regions=regions, stop=stop)
        if why is not None:
            result.not_attempted.append(NotAttempted(change, why))
            continue
        try:
            result.deleted.append(steps.delete(change))
        except errors.ReconcilerError as error:
            result.failed.append(Failed(change, error))
            regions.failed(lane.region, error)
            continue
        regions.succeeded(lane.region)
    return result


def _run_head(head: model.LayerChange, *, steps: _Steps, recorder: _Recorder,
              regions: _Regions, stop: threading.Event, result: _LaneResult) -> str | None:
    """Run a lane's publish, create or grant and record it; why the deletions after a
    publish may not run (None: they may)."""
    why = _gate(head.region, recorder=recorder, regions=regions, stop=stop)
    if why is not None:
        result.not_attempted.append(NotAttempted(head, why))
        return f"{head.region} kept failing" if regions.given_up(head.region) else why
    publishing_head = head.action in _PUBLISHING
    try:
        outcome: Published | Granted = (steps.publish(head) if publishing_head
                                        else steps.grant(head))
    except errors.ReconcilerError as error:
        result.failed.append(Failed(head, error))
        regions.failed(head.region, error)
        return f"the {head.action.value} before it failed" if publishing_head else None
    regions.succeeded(head.region)
    if isinstance(outcome, Granted):
        if head.current is not None and recorder.record(
                head, planner.lock_entry_for(head, head.current), published=False):
            result.granted.append(head)
        return None
    recorded = recorder.record(head, planner.lock_entry_for(head, outcome.version),
                               published=True)
    if recorded:
        result.published.append(outcome)
        result.warnings += alignment_warnings(head, outcome.version)
    if outcome.fillers:  # deleted even after a stop request: a filler is never left behind
        try:
            result.deleted.append(steps.delete_fillers(head, outcome.fillers))
        except errors.ReconcilerError as error:
            result.failed.append(Failed(head, error))
    return None if recorded else "its publish could not be recorded"


# align_versions' throwaway versions (the planner owns their description and bytes: a plan
# finds the fillers an apply left behind by them).
FILLER_DESCRIPTION = planner.FILLER_DESCRIPTION
filler_zip_bytes = planner.filler_zip_bytes
filler_code_sha256 = planner.filler_code_sha256


def publish_fillers(change: model.LayerChange, *, store: ports.LayerStore, zip_path: Path,
                    progress: Progress = _quiet) -> tuple[int, ...]:
    """Publish the change's filler versions (never granted), each exactly once: a filler
    whose reply was lost is looked for (by its CodeSha256 and description) before it is sent
    again, so no filler is made twice. On a failure, delete the fillers made so far, and any
    filler an unknown outcome may have left above them, then raise."""
    made: list[int] = []
    settings = model.Settings(description=FILLER_DESCRIPTION)
    code_sha256 = filler_code_sha256()
    # Above every number the plan saw taken (fillers an earlier apply left included, which
    # a lost reply's look-up must not take for this apply's own).
    base = max(change.current.version if change.current else 0,
               (change.expected_version or 0) - change.fillers - 1)
    for _ in range(change.fillers):
        progress(f"{change.layer}: filler {len(made) + 1}/{change.fillers} in {change.region}")
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


def _stray_fillers(change: model.LayerChange, *, store: ports.LayerStore,
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
                 if version.code_sha256 == filler_code_sha256()
                 and version.settings.description == FILLER_DESCRIPTION)


def delete_fillers(change: model.LayerChange, fillers: tuple[int, ...], *,
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


def without_fillers(error: errors.ReconcilerError, *, change: model.LayerChange,
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


def grant_new_version(change: model.LayerChange, version: model.RemoteVersion, *,
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


def update_grants(change: model.LayerChange, *, store: ports.LayerStore) -> None:
    """Add and remove the statements a `grant` change names on its version."""
    if change.current is None:
        return
    for grant in change.grants_add:
        store.add_permission(region=change.region, layer_name=change.layer_name,
                             version=change.current.version, grant=grant)
    for statement_id in change.grants_remove:
        store.remove_permission(region=change.region, layer_name=change.layer_name,
                                version=change.current.version, statement_id=statement_id)


def alignment_warnings(change: model.LayerChange, version: model.RemoteVersion) -> list[str]:
    """A region whose new version missed the align_versions target (versions deleted out of
    band make Lambda skip their numbers): said, and the next plan aligns again."""
    if change.align_target is None or version.version == change.align_target:
        return []
    return [f"{change.layer} ({change.region}): published v{version.version}, not the "
            f"align_versions target v{change.align_target}; the next plan aligns again"]


def _order(change: model.LayerChange) -> tuple[str, str]:
    return (change.layer, change.region)
