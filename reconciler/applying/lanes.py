"""How apply runs (the concurrency model is the package docstring's): lanes of steps in a
bounded pool, the calling thread the one recorder, the stop and give-up rules in `_gate`."""

from __future__ import annotations

import concurrent.futures
import queue
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from reconciler import errors, model, planner, ports, statefile
from reconciler.applying.consumers import WAIT_SECONDS, Coordination, Moved, Written
from reconciler.applying.report import (
    ApplyReport,
    Deleted,
    Failed,
    Granted,
    NotAttempted,
    Published,
)
from reconciler.applying.steps import (
    PUBLISHING,
    CodeSource,
    Progress,
    Steps,
    alignment_warnings,
    preflight,
    quiet,
    through_s3,
)

# After this many failures in a row in one region for reasons of the region, its remaining
# changes are not attempted: they would almost surely fail the same way.
REGION_FAILURES_TO_GIVE_UP = 2


_POLL_SECONDS = 0.1
# AWS's codes that say the region is in trouble: throttled (errors' one list), or failing.
_REGION_TROUBLE_CODES = errors.THROTTLING_CODES | {"ServiceException", "ServiceUnavailable",
                                                   "InternalFailure"}


def region_trouble(error: errors.ReconcilerError) -> bool:
    """Whether a failure says more about the region than about the change."""
    if isinstance(error, errors.EndpointError):
        return True
    if isinstance(error, errors.PublishOutcomeUnknown):
        return True
    return isinstance(error, errors.AwsError) and error.aws_code in _REGION_TROUBLE_CODES


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
    progress: Progress = quiet,
    owner: str = "",
    functions: ports.FunctionStore | None = None,
    parameters: ports.ParameterStore | None = None,
    refused: Sequence[tuple[model.Change, str]] = (),
    wait_seconds: float = WAIT_SECONDS,
) -> ApplyReport:
    """Carry out `plan` on top of `snapshot` (the state as read under the lock). Raises only
    before the first change (preflight); after that every outcome is in the report.
    `objects` serves the changes whose code goes through S3 (none: a plan that has one is
    refused before anything is done). `owner` is the manifest (its path below the
    repository root) every entry written is recorded as managed by. `functions` and
    `parameters` move the consumers; `refused` are consumer changes not to carry out (a
    saved plan stale for them), reported as not attempted, with their region's retention;
    `wait_seconds` bounds the wait for each function's update."""
    stop = stop or threading.Event()
    zips = preflight(plan, state=state, code=code)
    if objects is None and any(through_s3(change) for change in plan.changes):
        raise errors.ApplyRefused("refusing to apply: the plan uploads through S3 and this "
                                  "apply was given no S3 store; this is a bug")
    if (functions is None or parameters is None) and any(
            change.action in model.CONSUMER_ACTIONS for change in plan.changes):
        raise errors.ApplyRefused("refusing to apply: the plan moves consumers and this "
                                  "apply was given no function or parameter store; this is "
                                  "a bug")
    report = ApplyReport(lock=snapshot.lock, revision=snapshot.revision)
    recorder = _Recorder(state=state, report=report, owner=owner)
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
        filler_zip.write_bytes(planner.filler_zip_bytes())
        steps = Steps(store=store, objects=objects, zips=zips, filler_zip=filler_zip,
                      progress=progress, functions=functions, parameters=parameters,
                      wait_seconds=wait_seconds,
                      coordination=Coordination(plan.changes))
        results = _run_lanes(lanes_of(plan, refused=refused), steps=steps,
                             recorder=recorder, stop=stop, parallelism=parallelism)
    for result in results:
        result.merge_into(report)
    report.sort()
    report.interrupted = stop.is_set()
    return report


@dataclass(frozen=True)
class Lane:
    """One layer in one region: its publish, create, grant or forget (`head`, if any), then
    its consumers (functions, then the parameter) once the head is recorded, then its
    deletions (retention, stray fillers), oldest version first, unless a consumer was not
    moved. A lane runs its steps in order; lanes run side by side. `refused` are consumer
    changes not to carry out, and why."""

    layer: str
    region: str
    head: model.Change | None
    deletes: tuple[model.Change, ...]
    consumers: tuple[model.Change, ...] = ()
    refused: tuple[tuple[model.Change, str], ...] = ()


def lanes_of(plan: model.Plan, *,
             refused: Sequence[tuple[model.Change, str]] = ()) -> list[Lane]:
    """The plan's changes (no-ops aside) as lanes, in the plan's order; the `refused`
    consumer changes set aside in their lanes."""
    grouped: dict[tuple[str, str], list[model.Change]] = {}
    for change in plan.changes:
        if change.action is not model.Action.NOOP:
            grouped.setdefault((change.layer, change.region), []).append(change)
    found: list[Lane] = []
    for (layer, region), changes in grouped.items():
        heads = [change for change in changes if change.action is not model.Action.DELETE
                 and change.action not in model.CONSUMER_ACTIONS]
        deletes = sorted((change for change in changes if change.action is model.Action.DELETE),
                         key=lambda change: change.details_as(model.DeleteDetails).version)
        set_aside = tuple((change, why) for change, why in refused if change in changes)
        moving = tuple(change for change in changes if change.action in model.CONSUMER_ACTIONS
                       and all(change != other for other, _ in set_aside))
        found.append(Lane(layer=layer, region=region, head=heads[0] if heads else None,
                          deletes=tuple(deletes), consumers=moving, refused=set_aside))
    return found


class _Recorder:
    """The one writer of the state: the thread that made it (apply's caller) writes every
    record, each with a revision-checked write the moment it is asked for; a lane on a worker
    thread asks and waits for the answer. After a write fails, the state is `broken`: no lane
    starts another step. `close()` (the caller stops at once) answers every request after it
    with False, so no lane waits for a writer that is gone."""

    def __init__(self, *, state: ports.StateBackend, report: ApplyReport,
                 owner: str = "") -> None:
        self._state, self._report, self._manifest = state, report, owner
        self._owner = threading.get_ident()
        # A record to write, or None: a lane ended (`wake`), so `serve` looks at once whether
        # all have, instead of at its next poll (up to _POLL_SECONDS after the last one).
        self._requests: queue.Queue[tuple[model.Change, model.LockEntry | None, bool,
                                          concurrent.futures.Future[bool]] | None] = \
            queue.Queue()
        self._closed = threading.Event()
        self.broken = False

    def record(self, change: model.Change, entry: model.LockEntry | None, *,
               published: bool) -> bool:
        """Write `entry` for `change` (None: remove the change's entry) from any thread;
        whether it is recorded."""
        if threading.get_ident() == self._owner:
            return self._write(change, entry, published=published)
        answer: concurrent.futures.Future[bool] = concurrent.futures.Future()
        self._requests.put((change, entry, published, answer))
        if self._closed.is_set():  # closed meanwhile: nobody serves the queue any more
            self.close()
        return answer.result()

    def wake(self) -> None:
        """Have `serve` look at its `until` now (a lane ended; from any thread)."""
        self._requests.put(None)

    def serve(self, until: Callable[[], bool]) -> None:
        """Write what lanes ask for until `until()` holds and nothing is asked (the owner)."""
        try:
            while True:
                try:
                    request = self._requests.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    request = None
                if request is None:
                    if until():
                        return
                    continue
                change, entry, published, answer = request
                try:
                    recorded = self._write(change, entry, published=published)
                except BaseException:
                    # A second Ctrl-C (or a bug) in the middle of a write: the lane waiting for
                    # this answer learns it is not recorded, so that the pool can end.
                    self.broken = True
                    answer.set_result(False)
                    raise
                answer.set_result(recorded)
        finally:
            self.close()

    def close(self) -> None:
        """Answer every request, now and later, with "not recorded" (any thread may drain)."""
        self._closed.set()
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                return
            if request is None:
                continue
            *_, answer = request
            if not answer.done():
                answer.set_result(False)

    def _write(self, change: model.Change, entry: model.LockEntry | None, *,
               published: bool) -> bool:
        report = self._report
        updated = statefile.next_write(
            report.lock.without(change.layer, change.region) if entry is None else
            report.lock.with_entry(change.layer, change.region,
                                   entry=replace(entry, manifest=self._manifest)))
        try:
            report.revision = self._state.write(updated, expected_revision=report.revision)
        except errors.ReconcilerError as error:
            what = (f"{change.layer} ({change.region}) could not be removed from it"
                    if entry is None else
                    f"{entry.layer_version_arn} is published but not recorded (the next plan "
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
        if not region_trouble(error):
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
    granted: list[model.Change] = field(default_factory=list)
    forgotten: list[model.Change] = field(default_factory=list)
    deleted: list[Deleted] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    not_attempted: list[NotAttempted] = field(default_factory=list)
    moved: list[Moved] = field(default_factory=list)
    written: list[Written] = field(default_factory=list)
    # The version the lane's publish recorded: its consumers move to it.
    latest: str | None = None

    def merge_into(self, report: ApplyReport) -> None:
        report.moved += self.moved
        report.written += self.written
        report.published += self.published
        report.granted += self.granted
        report.forgotten += self.forgotten
        report.deleted += self.deleted
        report.warnings += self.warnings
        report.failed += self.failed
        report.not_attempted += self.not_attempted


def _run_lanes(found: list[Lane], *, steps: Steps, recorder: _Recorder,
               stop: threading.Event, parallelism: int) -> list[_LaneResult]:
    """Run the lanes `parallelism` at a time while this thread records for them."""
    regions = _Regions()
    with concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, parallelism), thread_name_prefix="reconcile-apply") as pool:
        futures = [pool.submit(_run_lane, lane, steps=steps, recorder=recorder,
                               regions=regions, stop=stop) for lane in found]
        for future in futures:
            future.add_done_callback(lambda _: recorder.wake())
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


def _run_lane(lane: Lane, *, steps: Steps, recorder: _Recorder, regions: _Regions,
              stop: threading.Event) -> _LaneResult:
    """One lane's steps in order: its head, then (after a publish, only once it is
    recorded, and after its fillers are deleted) its consumers, then its deletions; its
    retention deletes wait when a consumer was not moved (the version it was to leave may
    still be in use)."""
    result = _LaneResult()
    head, deletes = lane.head, list(lane.deletes)
    result.not_attempted += [NotAttempted(change, why) for change, why in lane.refused]
    if head is not None:
        blocked = _run_head(head, steps=steps, recorder=recorder, regions=regions, stop=stop,
                            result=result)
        if blocked is not None:
            result.not_attempted += [NotAttempted(change, blocked)
                                     for change in (*lane.consumers, *deletes)]
            return result
    if not _run_consumers(lane, steps=steps, recorder=recorder, regions=regions, stop=stop,
                          result=result) or lane.refused:
        # Retention waits; a stray filler (no consumer ever uses one) still goes.
        waits = (f"a consumer of {lane.layer} in {lane.region} was not moved: retention "
                 "there waits for the apply that moves it")
        result.not_attempted += [NotAttempted(change, waits) for change in deletes
                                 if model.Reason.STRAY_FILLER not in change.reasons]
        deletes = [change for change in deletes
                   if model.Reason.STRAY_FILLER in change.reasons]
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


def _run_head(head: model.Change, *, steps: Steps, recorder: _Recorder,
              regions: _Regions, stop: threading.Event, result: _LaneResult) -> str | None:
    """Run a lane's publish, create or grant and record it; why the deletions after a
    publish may not run (None: they may)."""
    why = _gate(head.region, recorder=recorder, regions=regions, stop=stop)
    if why is not None:
        result.not_attempted.append(NotAttempted(head, why))
        return f"{head.region} kept failing" if regions.given_up(head.region) else why
    if head.action is model.Action.FORGET:  # the state only: Lambda keeps every version
        if recorder.record(head, None, published=False):
            result.forgotten.append(head)
        return None
    publishing_head = head.action in PUBLISHING
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
        result.latest = outcome.version.layer_version_arn
        result.warnings += alignment_warnings(head, outcome.version)
    if outcome.fillers:  # deleted even after a stop request: a filler is never left behind
        try:
            result.deleted.append(steps.delete_fillers(head, outcome.fillers))
        except errors.ReconcilerError as error:
            result.failed.append(Failed(head, error))
    return None if recorded else "its publish could not be recorded"


def _run_consumers(lane: Lane, *, steps: Steps, recorder: _Recorder, regions: _Regions,
                   stop: threading.Event, result: _LaneResult) -> bool:
    """Move the lane's consumers to the version its head recorded (or the plan names), each
    on its own: a failure is reported for its function or parameter and stops no other.
    Whether every one moved."""
    moved_all = True
    for change in lane.consumers:
        why = _gate(lane.region, recorder=recorder, regions=regions, stop=stop)
        if why is not None:
            result.not_attempted.append(NotAttempted(change, why))
            moved_all = False
            continue
        try:
            outcome = steps.consumer(change, latest=result.latest)
        except errors.ReconcilerError as error:
            result.failed.append(Failed(change, error))
            regions.failed(lane.region, error)
            moved_all = False
            continue
        regions.succeeded(lane.region)
        if isinstance(outcome, Moved):
            result.moved.append(outcome)
        else:
            result.written.append(outcome)
    return moved_all
