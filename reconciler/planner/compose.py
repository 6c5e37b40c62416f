"""The whole plan: every layer and region decided, then aligned, given its grants, its
consumers' changes, retention and stray-filler deletes, with the forgets of layers that left
the manifest, sorted, with the plan's warnings (`plan`). Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from reconciler import errors, model
from reconciler.planner.align import align
from reconciler.planner.consumers import Seen, lookup_findings, moved_functions, region_changes
from reconciler.planner.fillers import stray_fillers, with_stray_fillers
from reconciler.planner.forget import Recorded, forgets
from reconciler.planner.grants import with_grants
from reconciler.planner.inputs import PUBLISHING, Inputs
from reconciler.planner.layers import decide
from reconciler.planner.retention import with_retention

# The share of the account's code storage above which the plan warns.
STORAGE_WARNING_RATIO = 0.8


def plan(
    inputs: Iterable[Inputs],
    *,
    layer_errors: Iterable[model.LayerError] = (),
    basis: model.PlanBasis | None = None,
    storage: Mapping[str, model.CodeStorage] | None = None,
    lock_holder: errors.LockHolder | None = None,
    recorded: Recorded | None = None,
    consumers: Mapping[str, Seen] | None = None,
) -> model.Plan:
    """Decide every layer and region; changes sorted by layer, then region (in a region,
    the layer's own change first, then its deletions, oldest first). Layers that could not
    be planned are carried as errors, sorted by layer.

    After each region's own decision: align_versions sets one target number over a layer's
    regions (align()); a latest version that stays gets its grants reconciled (a `grant`
    change); retention adds a `delete` change per version it removes, and each filler an
    apply left behind (stray_fillers()) is a `delete` change too, unless `lock_holder`, an
    apply that holds the state lock now (not this run), may still be using it: then a note
    says so. `storage` is the code storage of the regions storage_regions() named, for the
    warning.

    `consumers` is what was read of each layer's consumers (by layer key): their changes
    follow the layer's own in each region (planner.consumers), and retention no longer
    counts a function they move as using the version it leaves."""
    items = list(inputs)
    decided = align([(item, decide(item)) for item in items])
    changes: list[model.Change] = []
    warnings: list[str] = []
    held: list[str] = []  # where stray fillers wait for the apply that holds the lock
    consumer_errors: list[model.LayerError] = []
    findings = {key: lookup_findings(spec, (consumers or {})[key])
                for key, spec in {item.spec.key: item.spec for item in items}.items()
                if key in (consumers or {})}
    for problems, _ in findings.values():
        consumer_errors.extend(problems)
    for item, change in decided:
        change = with_grants(item, change)
        if item.artifact.git_ignored:
            count = item.artifact.git_ignored
            change = replace(change, notes=(
                *change.notes, f"git ignores {count} of its files and folders: left out of "
                               "the layer (a folder counts once)"))
        moves: list[model.Change] = []
        if item.spec.key in findings:
            moves, problems = region_changes(item.spec, change,
                                             (consumers or {})[item.spec.key])
            consumer_errors.extend(problems)
            change = replace(change, notes=(
                *change.notes, *findings[item.spec.key][1].get(item.region, ())))
            item = _without_moved(item, moved_functions(moves))
        deletions: tuple[model.Change, ...] = ()
        if item.spec.retain is not None and item.versions is not None:
            change, deletions = with_retention(item, change)
        change, strays = with_stray_fillers(item, change, lock_holder=lock_holder)
        changes.append(change)
        changes.extend(sorted((*deletions, *strays), key=lambda deletion: deletion.details_as(
            model.DeleteDetails).version))
        changes.extend(moves)
        if lock_holder is not None and stray_fillers(item.versions or ()):
            held.append(f"{item.spec.key} ({item.region})")
    if held and lock_holder is not None:
        warnings.append(
            f"filler versions left by an apply are not deleted by this plan in "
            f"{', '.join(held)}: an apply holds the state lock ({lock_holder.who} on "
            f"{lock_holder.host}, pid {lock_holder.pid}, since {lock_holder.created}) and "
            "may still be using them; plan again once it ends (if that run is gone: "
            f"reconcile force-unlock {lock_holder.lock_id})")
    if recorded is not None:
        forgotten, forget_warnings = forgets(recorded)
        changes.extend(forgotten)
        warnings.extend(forget_warnings)
    for spec in sorted({item.spec.key: item.spec for item in items}.values(),
                       key=lambda spec: spec.key):
        if any(grant.kind == "public" for grant in spec.grants):
            warnings.append(f"layer {spec.key} is shared publicly: every AWS account may use "
                            "its versions")
    for region, found in sorted((storage or {}).items()):
        if found.limit and found.used > STORAGE_WARNING_RATIO * found.limit:
            warnings.append(
                f"{region}: Lambda code storage is {100 * found.used / found.limit:.0f}% full "
                f"({found.used:,} of {found.limit:,} bytes); old versions count until they "
                "are deleted (`retain:`)")
    return model.Plan(changes=tuple(sorted(changes, key=lambda c: (c.layer, c.region))),
                      errors=tuple(sorted((*layer_errors, *consumer_errors),
                                          key=lambda error: error.layer)),
                      basis=basis, warnings=tuple(warnings))


def storage_regions(decided: model.Plan) -> list[str]:
    """The regions whose code storage the plan reads: those where it publishes or deletes
    (a plan that changes nothing reads none)."""
    return sorted({change.region for change in decided.changes
                   if change.action in (*PUBLISHING, model.Action.DELETE)})


def _without_moved(item: Inputs, moved: frozenset[str]) -> Inputs:
    """`item` with the functions its consumer changes move taken out of its function uses:
    once moved, their $LATEST no longer uses the version they leave, so retention may
    delete it (a published function version still using it keeps it)."""
    if not moved or item.function_uses is None:
        return item
    return replace(item, function_uses={
        arn: tuple(name for name in users if name not in moved)
        for arn, users in item.function_uses.items()})
