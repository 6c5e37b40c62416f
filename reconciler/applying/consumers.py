"""The steps that move a layer's consumers, against the function and parameter stores: a
function's Layers set (`update_function`), guarded by the RevisionId seen at plan and waited
on until Lambda says Successful, and the SSM parameter written (`put_parameter`). Where they
run (after the lane's publish is recorded, before its retention) is lanes'.

Never twice, never lost: an update or a write is sent once; when its outcome is unknown, the
function or parameter is read back, and only a consumer found exactly as the plan saw it is
sent again (once). A consumer found neither as planned nor as wanted changed meanwhile: it is
refused as stale, never overwritten. Where the endpoint reports no RevisionId (moto), the
function is read before the update and refused as stale unless its Layers are still the
plan's `before`, so that two layers moving one function in the same apply never undo each
other's entry (the second is refused; the next apply moves it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reconciler import errors, model, ports

# How long apply waits for one function's update to be Successful (Lambda takes seconds;
# a function in a VPC or with a large image, longer).
WAIT_SECONDS = 300.0


@dataclass(frozen=True)
class Moved:
    """A function apply moved: its Layers now, and whether the update was found landed after
    a lost reply."""

    change: model.Change
    layers: tuple[str, ...]
    adopted: bool = False


@dataclass(frozen=True)
class Written:
    """A parameter apply wrote (or found written after a lost reply): its value and version
    (None: found written, version not read)."""

    change: model.Change
    value: str
    version: int | None = None


def resolved(arn: str, *, latest: str | None) -> str:
    """`arn` with the placeholder version (model.PUBLISHED) replaced by the version the
    lane published and recorded (`latest`)."""
    if not arn.endswith(":" + model.PUBLISHED):
        return arn
    if latest is None or model.unversioned(latest) != model.unversioned(arn):
        raise errors.ApplyFailed(f"{arn} names the version this apply publishes, and none "
                                 "was recorded for the layer; nothing was changed")
    return latest


def _stale(change: model.Change, what: str) -> errors.RevisionStale:
    return errors.RevisionStale(
        f"{what} changed since the plan was made: not updated (never overwritten)",
        hint="run plan again: it shows the consumer as it is now")


def update_function(change: model.Change, *, latest: str | None,
                    functions: ports.FunctionStore, wait_seconds: float = WAIT_SECONDS,
                    progress: Callable[[str], None]) -> Moved:
    """Set the function's Layers to the plan's `after` (the placeholder resolved), guarded,
    then wait for Successful."""
    details = change.details_as(model.FunctionDetails)
    name, region = change.address.function or "", change.region
    where = f"function '{name}' in {region}"
    layers = tuple(resolved(arn, latest=latest) for arn in details.after)
    if details.revision_id is None:
        seen = functions.function(region=region, name=name)
        if seen is None or seen.layers != details.before:
            raise _stale(change, where)
    progress(f"{change.layer}: updating {where}")
    adopted = False
    try:
        functions.update_layers(region=region, name=name, layers=layers,
                                revision_id=details.revision_id)
    except errors.OutcomeUnknown:
        found = functions.function(region=region, name=name)
        if found is not None and found.layers == layers:
            adopted = True  # it landed; its reply was lost
        elif found is not None and found.layers == details.before and (
                details.revision_id is None or found.revision_id == details.revision_id):
            functions.update_layers(region=region, name=name, layers=layers,
                                    revision_id=details.revision_id)
        else:
            raise
    functions.wait_updated(region=region, name=name, timeout=wait_seconds)
    return Moved(change, layers, adopted=adopted)


def put_parameter(change: model.Change, *, latest: str | None,
                  parameters: ports.ParameterStore,
                  progress: Callable[[str], None]) -> Written:
    """Write the parameter's new value, unless it changed since the plan (stale) or holds
    it already."""
    details = change.details_as(model.ParameterDetails)
    name, region = change.address.parameter or "", change.region
    value = resolved(details.after, latest=latest)
    where = f"SSM parameter '{name}' in {region}"
    found = parameters.get(region=region, name=name)
    if found is not None and found.value == value:
        return Written(change, value, found.version)
    if (found.value if found else None) != details.before:
        raise _stale(change, where)
    progress(f"{change.layer}: writing {where}")
    try:
        version = parameters.put(region=region, name=name, value=value,
                                 overwrite=found is not None)
    except errors.OutcomeUnknown:
        again = parameters.get(region=region, name=name)
        if again is not None and again.value == value:
            return Written(change, value, again.version)
        if (again.value if again else None) != details.before:
            raise
        version = parameters.put(region=region, name=name, value=value,
                                 overwrite=again is not None)
    return Written(change, value, version)
