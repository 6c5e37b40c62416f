"""align_versions: one target version number over a layer's regions, and the fillers each
region needs to reach it (`align`, with its table). Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from reconciler import model
from reconciler.planner.fillers import is_filler
from reconciler.planner.inputs import PUBLISHING, Inputs, highest_number

# A region this many versions or more behind the alignment target is not filled: it is
# reported short of the target instead (each filler is a real, if brief, publish).
MAX_FILLERS = 100


@dataclass(frozen=True)
class RegionStanding:
    """One region of an aligned layer, as the alignment target needs it: whether it
    publishes anyway, its latest version number (0: none) and the number its next publish
    is expected to get."""

    publishing: bool
    latest: int
    next_version: int


def alignment_target(standings: Iterable[RegionStanding]) -> int | None:
    """The version number every region's latest is to have: the highest next number of the
    regions that publish, or the highest latest of those that do not, whichever is higher.
    A region that already holds the desired content at the target needs nothing; one below
    it publishes (after fillers). None when no region has or gets a version.

    A region below the target publishes too; when its next number is past the target (the
    numbers of fillers an apply left are taken), the target rises to it, and so on until
    no region below the target would land above it."""
    listed = list(standings)
    target = max((standing.next_version if standing.publishing else standing.latest
                  for standing in listed), default=0)
    while True:
        raised = max((standing.next_version for standing in listed
                      if not standing.publishing and standing.latest < target), default=0)
        if raised <= target:
            return target or None
        target = raised


def fillers_needed(*, target: int, next_version: int) -> int:
    """How many filler versions take a region from its next number to `target`."""
    return max(0, target - next_version)


def _next_version(item: Inputs, change: model.Change) -> int:
    if isinstance(change.details, model.PublishDetails) \
            and change.details.expected_version is not None:
        return change.details.expected_version
    return highest_number(item) + 1


def _aligned(change: model.Change, alignment: model.Alignment, *, notes: tuple[str, ...] = ()
             ) -> model.Change:
    """`change` (a create, publish or noop) with its alignment, and `notes` added."""
    details = change.details
    if isinstance(details, model.PublishDetails | model.RecordDetails):
        details = replace(details, align=alignment)
    return replace(change, details=details, notes=(*change.notes, *notes))


def _fillers_on_top(item: Inputs, *, regions: int) -> bool:
    """Whether fillers sit above the latest real version of a layer aligned over `regions`
    regions (in one region there is nothing to keep in line)."""
    latest = item.remote_latest.version if item.remote_latest else 0
    return regions > 1 and any(is_filler(version) and version.version > latest
                               for version in item.versions or ())


def align(decided: list[tuple[Inputs, model.Change]]
          ) -> list[tuple[Inputs, model.Change]]:
    """Apply align_versions to each region's own decision.

    | region                          | becomes                                         |
    |---------------------------------|-------------------------------------------------|
    | publishes, next == target       | publish, no filler                              |
    | publishes, next < target        | publish after target - next fillers             |
    | unchanged, latest == target     | unchanged                                       |
    | unchanged, latest < target      | publish (align_versions) after fillers          |
    | unchanged, fillers above latest | publish (align_versions): see below             |
    | more than MAX_FILLERS behind    | as decided, `shortfall` says by how much        |

    A region whose latest real version has fillers above it (an apply left them) counts as
    publishing: once they are deleted, their numbers stay taken where nobody can see them,
    and the region's next publish would land past every other region's. Publishing above
    them now keeps every number in sight.
    """
    targets: dict[str, int | None] = {}
    regions: dict[str, int] = {}
    for item, _ in decided:
        regions[item.spec.key] = regions.get(item.spec.key, 0) + 1
    for spec_key in {item.spec.key for item, _ in decided if item.spec.align_versions}:
        targets[spec_key] = alignment_target(
            RegionStanding(publishing=change.action in PUBLISHING or _fillers_on_top(
                               item, regions=regions[spec_key]),
                           latest=item.remote_latest.version if item.remote_latest else 0,
                           next_version=_next_version(item, change))
            for item, change in decided if item.spec.key == spec_key)
    aligned: list[tuple[Inputs, model.Change]] = []
    for item, change in decided:
        target = targets.get(item.spec.key)
        if target is None:
            aligned.append((item, change))
            continue
        next_version = _next_version(item, change)
        latest = item.remote_latest.version if item.remote_latest else 0
        publishing = change.action in PUBLISHING
        if not publishing and not _fillers_on_top(item, regions=regions[item.spec.key]) \
                and latest >= target:
            aligned.append((item, _aligned(change, model.Alignment(target=target))))
            continue
        needed = fillers_needed(target=target, next_version=next_version)
        if needed > MAX_FILLERS:
            gap = target - (next_version if publishing else latest)
            aligned.append((item, _aligned(
                change, model.Alignment(target=target, shortfall=gap), notes=(
                    f"align_versions: cannot reach v{target} here: it would take {needed} "
                    f"filler versions, more than {MAX_FILLERS}; this region stays {gap} "
                    "version(s) short",))))
            continue
        alignment = model.Alignment(target=target, fillers=needed)
        if publishing:
            aligned.append((item, replace(change, details=replace(
                change.details_as(model.PublishDetails), align=alignment,
                expected_version=target))))
            continue
        # An unchanged region behind the target publishes: its record goes (the publish is
        # recorded), what it downloaded stays; its code goes direct (code None).
        kept = change.details_as(model.RecordDetails)
        aligned.append((item, replace(
            change, action=model.Action.PUBLISH,
            reasons=(*change.reasons, model.Reason.ALIGN_VERSIONS),
            details=model.PublishDetails(expected_version=target, align=alignment,
                                         download=kept.download))))
    return aligned
