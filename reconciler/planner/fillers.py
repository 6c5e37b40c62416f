"""align_versions' filler versions: their description and bytes (the one definition: apply
publishes them, a plan finds the ones an apply left behind by them), which versions are
fillers, the real latest beside them, and the `delete` changes (reason stray_filler) for the
ones no apply holds the lock for. Pure."""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import zipfile
from collections.abc import Iterable
from dataclasses import replace

from reconciler import errors, model
from reconciler.planner.inputs import Inputs

# align_versions' throwaway versions: a minimal valid zip, described as what it is. The
# description is how a plan finds fillers an apply left behind (stray fillers); the zip's
# CodeSha256 confirms one before it is deleted.
FILLER_DESCRIPTION = ("reconcile filler for align_versions; deleted by the apply that "
                      "made it")


def filler_zip_bytes() -> bytes:
    """A minimal valid layer zip (one small text file, fixed metadata): a few hundred
    bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        info = zipfile.ZipInfo("reconcile-filler.txt", date_time=(1980, 1, 1, 0, 0, 0))
        archive.writestr(info, FILLER_DESCRIPTION + "\n")
    return buffer.getvalue()


@functools.cache
def filler_code_sha256() -> str:
    """Lambda's CodeSha256 of the filler zip: how a filler is told from any other version."""
    return base64.b64encode(hashlib.sha256(filler_zip_bytes()).digest()).decode("ascii")


def is_filler(version: model.RemoteVersion) -> bool:
    """A filler version by its description (and by its CodeSha256, once that is known): no
    other version carries the filler's description and bytes."""
    return (version.settings.description == FILLER_DESCRIPTION
            and version.code_sha256 in (None, filler_code_sha256()))


def real_versions(versions: Iterable[model.RemoteVersion]) -> tuple[model.RemoteVersion, ...]:
    """The versions that are not fillers: what retention keeps or deletes, and where a
    region's real latest version is found."""
    return tuple(version for version in versions if not is_filler(version))


def real_latest(observed: model.RemoteVersion | None,
                versions: Iterable[model.RemoteVersion]) -> model.RemoteVersion | None:
    """The latest version that is not a filler: `observed` (the latest as Lambda lists it)
    unless it is a filler, then the highest real one of `versions` (None: none)."""
    if observed is not None and not is_filler(observed):
        return observed
    return max(real_versions(versions), key=lambda version: version.version, default=None)


def lists_versions(inputs: Inputs) -> bool:
    """Whether the plan reads every version of the layer in the region: for `retain`, and
    for the filler versions an apply may have left (a layer with `align_versions`, or one
    whose latest version is a filler); a layer without any version has none to read."""
    remote = inputs.remote_latest
    if remote is None:
        return False
    return (inputs.spec.retain is not None or inputs.spec.align_versions
            or is_filler(remote))


def stray_fillers(versions: Iterable[model.RemoteVersion]) -> tuple[model.RemoteVersion, ...]:
    """The confirmed fillers (description and CodeSha256) among `versions`, oldest first."""
    return tuple(sorted((version for version in versions if is_filler(version)
                         and version.code_sha256 == filler_code_sha256()),
                        key=lambda version: version.version))


def with_stray_fillers(item: Inputs, change: model.Change, *,
                        lock_holder: errors.LockHolder | None
                        ) -> tuple[model.Change, tuple[model.Change, ...]]:
    """A `delete` change (reason stray_filler) for each filler an apply left in the region;
    none, and a note instead, while another apply holds the lock (they may be its own)."""
    strays = stray_fillers(item.versions or ())
    if not strays:
        return change, ()
    numbers = ", ".join(f"v{version.version}" for version in strays)
    if lock_holder is not None:
        return replace(change, notes=(
            *change.notes,
            f"filler version(s) {numbers} not deleted now: an apply holds the state lock "
            f"({lock_holder.who} on {lock_holder.host}, pid {lock_holder.pid}, since "
            f"{lock_holder.created}) and may still be using them; a plan made after it ends "
            "deletes any it leaves")), ()
    return change, tuple(
        model.Change(
            address=change.address, layer_name=change.layer_name,
            action=model.Action.DELETE, reasons=(model.Reason.STRAY_FILLER,), current=version,
            desired=change.desired, details=model.DeleteDetails(version=version.version),
            notes=("an align_versions filler that an apply left (killed, or its delete "
                   "failed); no apply holds the state lock",))
        for version in strays)
