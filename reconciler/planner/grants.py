"""Sharing: the grants a version holds against the managed `share`, and the `grant` change for a
latest version that stays. Pure."""

from __future__ import annotations

from dataclasses import replace

from reconciler import model
from reconciler.planner.inputs import Inputs


def grants_diff(desired: tuple[model.Grant, ...],
                existing: frozenset[str]) -> tuple[tuple[model.Grant, ...], tuple[str, ...]]:
    """The grants to add to a version whose policy holds the statement IDs `existing`, and
    the statement IDs to remove from it, so that it holds exactly `desired` (a managed
    `share` is the whole truth: a statement it does not name is removed). Both sorted."""
    wanted = {grant.statement_id: grant for grant in desired}
    add = tuple(wanted[sid] for sid in sorted(set(wanted) - existing))
    remove = tuple(sorted(existing - set(wanted)))
    return add, remove


def with_grants(item: Inputs, change: model.Change) -> model.Change:
    """A latest version that stays gets exactly the managed grants: a `grant` change."""
    if (item.spec.share is None or item.policy is None or change.action is not model.Action.NOOP
            or change.current is None):
        return change
    add, remove = grants_diff(item.spec.grants, item.policy)
    if not (add or remove):
        return change
    kept = change.details_as(model.RecordDetails)  # its record goes: apply records the grant
    return replace(change, action=model.Action.GRANT,
                   reasons=(*change.reasons, model.Reason.GRANTS_CHANGED),
                   details=model.GrantDetails(add=add, remove=remove, download=kept.download,
                                              align=kept.align))
