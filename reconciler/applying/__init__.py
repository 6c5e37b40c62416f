"""The apply use case: carry out a model.Plan's actions against the stores, nothing beside
them (the Lambda store, the state backend, the local code). Never prints or prompts: progress
goes to a callback, and the outcome is an ApplyReport.

How it runs (the whole concurrency model). Every check that could fail after a publish is
made before the first one (each zip rebuilt or found and matched against the planned
CodeSha256; the state writable). Then the changes run as lanes, one per layer and region
(`lanes_of`): a lane runs its steps in order (its publish, create or grant; once a publish is
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

A `forget` change is a lane of its own that only asks the recorder to remove its entry
(Lambda keeps every version). The recorder stamps every entry it writes with the manifest
that owns it (`owner`) and raises the state's serial with each write (statefile.next_write).

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

Consumers (update_function, put_parameter) run in their layer's lane after its head: a
region's functions move only once that region's publish is recorded (to the version it
recorded, which replaces the plan's `$PUBLISHED`), or, with no publish, to the version the
plan names; each on its own (a failure is reported for its function or parameter and stops
no other), then the parameter; the lane's deletions run only when every consumer moved.

The package: `report` (the values), `steps` (the calls of each step), `consumers` (a
function's update and a parameter's write), `lanes` (how they run).
"""

from __future__ import annotations

from reconciler.applying.lanes import (
    REGION_FAILURES_TO_GIVE_UP,
    Lane,
    apply,
    lanes_of,
    region_trouble,
)
from reconciler.applying.report import (
    ApplyReport,
    Deleted,
    Failed,
    Granted,
    NotAttempted,
    Outcome,
    Published,
)
from reconciler.applying.steps import (
    PUBLISHING,
    CodeSource,
    Progress,
    Steps,
    alignment_warnings,
    already_uploaded,
    delete_fillers,
    from_s3_source,
    grant_new_version,
    preflight,
    publish_fillers,
    quiet,
    through_s3,
    update_grants,
    upload_once,
    without_fillers,
)

__all__ = [
    "PUBLISHING",
    "REGION_FAILURES_TO_GIVE_UP",
    "ApplyReport",
    "CodeSource",
    "Deleted",
    "Failed",
    "Granted",
    "Lane",
    "NotAttempted",
    "Outcome",
    "Progress",
    "Published",
    "Steps",
    "alignment_warnings",
    "already_uploaded",
    "apply",
    "delete_fillers",
    "from_s3_source",
    "grant_new_version",
    "lanes_of",
    "preflight",
    "publish_fillers",
    "quiet",
    "region_trouble",
    "through_s3",
    "update_grants",
    "upload_once",
    "without_fillers",
]
