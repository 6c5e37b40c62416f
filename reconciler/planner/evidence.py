"""What the planner asks for before it decides (`missing_evidence`): the zip, the remote latest's
code, its policy, every version, function uses, sizes, a download to compare files. The caller
fetches what is asked and asks again, so a layer is decided once, from complete evidence.
Pure."""

from __future__ import annotations

import enum

from reconciler import model
from reconciler.planner.fillers import lists_versions, real_versions
from reconciler.planner.inputs import Inputs, desired_artifact, needs_remote_code
from reconciler.planner.layers import decide, wants_remote_content
from reconciler.planner.retention import retention_candidates, versions_to_read


class Evidence(enum.Enum):
    """What the planner may ask for before it can decide a layer in a region."""

    ZIP = "zip"  # build the zip: its CodeSha256 is unknown, or it is about to be uploaded
    REMOTE_CODE = "remote_code"  # GetLayerVersion: the remote latest's CodeSha256
    POLICY = "policy"  # GetLayerVersionPolicy of the remote latest (a layer with `share`)
    # ListLayerVersions, every page: a layer with `retain` or `align_versions`, or whose
    # latest version is a filler (lists_versions())
    VERSIONS = "versions"
    FUNCTION_USES = "function_uses"  # ListFunctions (ALL versions) of the region
    # GetLayerVersion of each version retention may delete, and of each filler (its bytes)
    VERSION_SIZES = "version_sizes"
    REMOTE_CONTENT = "remote_content"  # download the remote latest's zip, fingerprint it


def missing_evidence(inputs: Inputs) -> frozenset[Evidence]:
    """The evidence decide() still needs for `inputs` (empty: it can decide).

    The caller fulfils what is asked and asks again, so the planner decides once, from
    complete evidence: the remote latest's CodeSha256 when the lock cannot vouch for it
    (a version it did not record), and the zip when its digest is unknown (new or changed
    content) or when the layer will be published (its settings changed, or Lambda drifted):
    the plan then shows exactly the CodeSha256 that apply uploads.
    """
    needs: set[Evidence] = set()
    lock_entry, remote = inputs.lock_entry, inputs.remote_latest
    if inputs.versions is None and lists_versions(inputs):
        # First: a filler as the observed latest is replaced by the real latest (real_latest)
        # before anything is asked about it.
        return frozenset({Evidence.VERSIONS})
    artifact = desired_artifact(inputs.artifact, lock_entry)
    if needs_remote_code(remote, lock_entry):
        needs.add(Evidence.REMOTE_CODE)
    if inputs.spec.content.kind is model.SourceKind.S3:
        pass  # no zip to build: Lambda reads the object, whose CodeSha256 S3 may not know
    elif artifact.code_sha256 is None:
        needs.add(Evidence.ZIP)
    elif inputs.artifact.zip_path is None and not needs:
        change = decide(inputs)
        if change.action in (model.Action.CREATE, model.Action.PUBLISH):
            needs.add(Evidence.ZIP)
    if needs:
        return frozenset(needs)
    if wants_remote_content(inputs):
        return frozenset({Evidence.REMOTE_CONTENT})
    return frozenset(_missing_fleet_evidence(inputs))


def _missing_fleet_evidence(inputs: Inputs) -> set[Evidence]:
    """What sharing and retention still need once the main decision can be made: the
    policy of a latest version that is not replaced (alignment may still replace it; the
    read is then merely unused), every version, and, for the versions retention could
    delete (counted as if a version were published, the most it can delete), the functions
    that use them and their sizes, and the CodeSha256 of each filler (a region whose only
    versions are fillers has no latest, but has those)."""
    needs: set[Evidence] = set()
    remote, spec = inputs.remote_latest, inputs.spec
    if remote is not None and spec.share is not None and inputs.policy is None and \
            decide(inputs).action not in (model.Action.CREATE, model.Action.PUBLISH):
        needs.add(Evidence.POLICY)
    if inputs.versions is None:
        return needs  # lists_versions() said no: no retention, no filler to look for
    if spec.retain is not None and inputs.function_uses is None and retention_candidates(
            retain=spec.retain, versions=real_versions(inputs.versions), publishing=True):
        needs.add(Evidence.FUNCTION_USES)
    if versions_to_read(spec, inputs.versions):
        needs.add(Evidence.VERSION_SIZES)
    return needs
