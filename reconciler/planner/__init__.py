"""The decision: desired x recorded x observed -> model.Change, pure functions, one module
per concern, composed in `compose.plan`:

- `inputs`: what one decision reads, and what follows from it alone;
- `layers`: a layer version in one region (`decide`, with its decision table);
- `align`: align_versions' target number and fillers (`align`, with its table);
- `grants`: `share` on a latest version that stays (a `grant` change);
- `retention`: `retain: N`'s `delete` changes;
- `fillers`: the filler versions' identity, and stray fillers' `delete` changes;
- `forget`: layers that left the manifest (`forget` changes), and who owns a state entry;
- `consumers`: a layer's consumer functions and parameter (`update_function` and
  `put_parameter` changes), and the plan errors about them;
- `evidence`: what the planner asks for before it decides;
- `compose`: the whole plan.

A package rather than DESIGN.md's `plans/`: every caller and test already says `planner.X`,
and this keeps that true while each concern gets its room; a new kind of change adds a module
here and one line in `compose`.

Why planning from the fingerprint can never miss a change: a layer's zip is a pure function
of its entries (path, bytes, executable bit) and the packaging format version, and the
fingerprint hashes exactly those inputs. Equal fingerprints therefore mean equal zips, so a
lock entry whose fingerprint equals the local one tells us the zip's CodeSha256 without
building it. Any change to any input changes the fingerprint, and then the zip is built and
its real CodeSha256 compared with Lambda's; a version number is immutable, so a remote
latest version equal to the recorded one has the recorded CodeSha256.
"""

from __future__ import annotations

from reconciler.planner.align import (
    MAX_FILLERS,
    RegionStanding,
    align,
    alignment_target,
    fillers_needed,
)
from reconciler.planner.compose import (
    STORAGE_WARNING_RATIO,
    plan,
    storage_regions,
)
from reconciler.planner.consumers import (
    MAX_LAYERS,
    Seen,
    latest_arn,
    layers_after,
)
from reconciler.planner.evidence import (
    Evidence,
    missing_evidence,
)
from reconciler.planner.fillers import (
    FILLER_DESCRIPTION,
    filler_code_sha256,
    filler_zip_bytes,
    is_filler,
    lists_versions,
    real_latest,
    real_versions,
    stray_fillers,
)
from reconciler.planner.forget import (
    Recorded,
    forget_change,
    forgets,
    layer_name_of,
    named_pairs,
    owned_elsewhere,
)
from reconciler.planner.grants import (
    grants_diff,
)
from reconciler.planner.inputs import (
    Inputs,
    desired_artifact,
    needs_remote_code,
    needs_zip,
    remote_code_sha256,
)
from reconciler.planner.layers import (
    code_location,
    decide,
    lock_entry_for,
    settings_diff,
    wants_remote_content,
)
from reconciler.planner.retention import (
    Retention,
    recorded_after,
    retention,
    retention_candidates,
    versions_to_read,
)

__all__ = [
    "FILLER_DESCRIPTION",
    "MAX_FILLERS",
    "MAX_LAYERS",
    "STORAGE_WARNING_RATIO",
    "Evidence",
    "Inputs",
    "Recorded",
    "RegionStanding",
    "Retention",
    "Seen",
    "align",
    "alignment_target",
    "code_location",
    "decide",
    "desired_artifact",
    "filler_code_sha256",
    "filler_zip_bytes",
    "fillers_needed",
    "forget_change",
    "forgets",
    "grants_diff",
    "is_filler",
    "latest_arn",
    "layer_name_of",
    "layers_after",
    "lists_versions",
    "lock_entry_for",
    "missing_evidence",
    "named_pairs",
    "needs_remote_code",
    "needs_zip",
    "owned_elsewhere",
    "plan",
    "real_latest",
    "real_versions",
    "recorded_after",
    "remote_code_sha256",
    "retention",
    "retention_candidates",
    "settings_diff",
    "storage_regions",
    "stray_fillers",
    "versions_to_read",
    "wants_remote_content",
]
