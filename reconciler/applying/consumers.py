"""The steps that move a layer's consumers, against the function and parameter stores: a
function's Layers set (`update_function`), guarded by the RevisionId seen at plan and waited
on until Lambda says Successful, and the SSM parameter written (`put_parameter`). Where they
run (after the lane's publish is recorded, before its retention) is lanes'.

Never twice, never lost: an update or a write is sent once; when its outcome is unknown, the
function or parameter is read back, and only a consumer found exactly as the plan saw it is
sent again (once). A consumer found neither as planned nor as wanted changed meanwhile: it is
refused as stale, never overwritten. Where the endpoint reports no RevisionId (moto), the
function is read before the update and refused as stale unless its Layers are still the
plan's `before`. A function two layers of the plan move (two lanes) is updated one at a
time (`Coordination`): the second update starts from the layers the first one left, and only
the entries of layers this apply moves may differ from the plan's `before`; any other change
makes it stale.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from reconciler import errors, model, planner, ports

# How long apply waits for one function's update to be Successful (Lambda takes seconds;
# a function in a VPC or with a large image, longer).
WAIT_SECONDS = 300.0


@dataclass(frozen=True)
class Moved:
    """A function apply moved: its Layers now, and whether it was found so instead of being
    updated (an update that landed though its reply was lost, or someone else's)."""

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


def own_layer(details: model.FunctionDetails) -> str:
    """The layer's ARN (no version) a function change moves: its entry in `after` is the one
    `before` does not hold."""
    new = next((arn for arn in details.after if arn not in details.before), details.after[-1])
    return model.unversioned(new)


class Coordination:
    """The functions of one apply, shared by its lanes: each function's updates run one at a
    time (a lock per function), and a function that two layers of the plan move (two lanes)
    is told apart, so that the second update starts from the first one's layers instead of
    being refused as stale: only the entries of layers this apply moves may differ from what
    the plan read, and every other entry must be as it was (else it is stale)."""

    def __init__(self, changes: Iterable[model.Change]) -> None:
        moving: dict[tuple[str, str], set[str]] = {}
        for change in changes:
            if change.action is model.Action.UPDATE_FUNCTION:
                moving.setdefault((change.region, change.address.function or ""), set()).add(
                    own_layer(change.details_as(model.FunctionDetails)))
        self._moving = {key: frozenset(layers) for key, layers in moving.items()}
        self._locks = {key: threading.Lock() for key in moving}
        self._moved: set[tuple[str, str]] = set()
        self._guard = threading.Lock()

    def lock(self, region: str, name: str) -> threading.Lock:
        """The lock the updates of function `name` in `region` hold."""
        return self._locks.setdefault((region, name), threading.Lock())

    def others(self, region: str, name: str, layers: tuple[str, ...]) -> list[str]:
        """`layers` without the entries of the layers this apply moves on the function."""
        moving = self._moving.get((region, name), frozenset())
        return [arn for arn in layers if model.unversioned(arn) not in moving]

    def moved(self, region: str, name: str) -> bool:
        """Whether an update of this apply landed on the function already."""
        with self._guard:
            return (region, name) in self._moved

    def mark(self, region: str, name: str) -> None:
        """An update of this apply landed on the function."""
        with self._guard:
            self._moved.add((region, name))


def update_function(change: model.Change, *, latest: str | None,
                    functions: ports.FunctionStore, progress: Callable[[str], None],
                    coordination: Coordination | None = None,
                    wait_seconds: float = WAIT_SECONDS) -> Moved:
    """Set the function's Layers to the plan's `after` (the placeholder resolved), guarded,
    then wait for Successful (the whole under the function's lock)."""
    coordination = coordination or Coordination((change,))
    with coordination.lock(change.region, change.address.function or ""):
        return _update_locked(change, latest=latest, functions=functions, progress=progress,
                              coordination=coordination, wait_seconds=wait_seconds)


def _update_locked(change: model.Change, *, latest: str | None,
                   functions: ports.FunctionStore, progress: Callable[[str], None],
                   coordination: Coordination, wait_seconds: float) -> Moved:
    details = change.details_as(model.FunctionDetails)
    name, region = change.address.function or "", change.region
    where = f"function '{name}' in {region}"
    layers = tuple(resolved(arn, latest=latest) for arn in details.after)
    before, revision = details.before, details.revision_id
    sibling = coordination.moved(region, name)
    if revision is None or sibling:
        seen = functions.function(region=region, name=name)
        if seen is None:
            raise _stale(change, where)
        if seen.layers == layers and not sibling:
            # Already what this apply would set (someone moved it meanwhile): done, as a
            # parameter already naming the latest is.
            coordination.mark(region, name)
            functions.wait_updated(region=region, name=name, timeout=wait_seconds)
            return Moved(change, layers, adopted=True)
        if seen.layers != details.before:
            # Only another layer of this apply may have moved it since the plan: the other
            # layers' entries, and this layer's own, must be as the plan saw them.
            mine = own_layer(details)
            if not sibling or coordination.others(region, name, seen.layers) != \
                    coordination.others(region, name, details.before) or \
                    _entry(seen.layers, mine) != _entry(details.before, mine):
                raise _stale(change, where)
            layers = planner.layers_after(seen.layers, layer_arn=mine, latest=next(
                arn for arn in layers if model.unversioned(arn) == mine))
        before = seen.layers
        if sibling and revision is not None:
            revision = seen.revision_id  # the one this apply's own update left
    progress(f"{change.layer}: updating {where}")
    try:
        adopted = _send_once(functions, region=region, name=name, layers=layers,
                             before=before, revision_id=revision)
    except errors.RevisionStale:
        # Refused for its RevisionId: changed since the plan. Already what this apply would
        # set (someone moved it meanwhile) is done, as on the read-first path; else stale.
        found = functions.function(region=region, name=name)
        if found is None or found.layers != layers:
            raise
        adopted = True
    coordination.mark(region, name)
    functions.wait_updated(region=region, name=name, timeout=wait_seconds)
    return Moved(change, layers, adopted=adopted)


def _entry(layers: tuple[str, ...], layer_arn: str) -> str | None:
    """The entry of the layer `layer_arn` (unversioned) in `layers`, if any."""
    return next((arn for arn in layers if model.unversioned(arn) == layer_arn), None)


def _send_once(functions: ports.FunctionStore, *, region: str, name: str,
               layers: tuple[str, ...], before: tuple[str, ...],
               revision_id: str | None) -> bool:
    """Send the update; after an unknown outcome, read it back: done (True: adopted), as it
    was (sent once more), else the unknown outcome is raised."""
    try:
        functions.update_layers(region=region, name=name, layers=layers,
                                revision_id=revision_id)
    except errors.OutcomeUnknown:
        found = functions.function(region=region, name=name)
        if found is not None and found.layers == layers:
            return True  # it landed; its reply was lost
        if found is None or found.layers != before or (
                revision_id is not None and found.revision_id != revision_id):
            raise
        functions.update_layers(region=region, name=name, layers=layers,
                                revision_id=revision_id)
    return False


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
    if found is not None and found.type != "String":
        raise _stale(change, where)  # made another type since the plan: never replaced
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
