"""`retain: N`: which old versions go (never the one being published, the one the state will
record, or one a function uses), the `delete` changes for them, and which versions a plan must
read to know. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from reconciler import model
from reconciler.planner.fillers import is_filler, real_versions
from reconciler.planner.inputs import PUBLISHING, Inputs


def versions_to_read(spec: model.LayerSpec,
                     versions: Iterable[model.RemoteVersion]) -> tuple[model.RemoteVersion, ...]:
    """The listed versions whose GetLayerVersion the plan still needs: each one retention
    may delete (its size, for the plan), each filler (its CodeSha256 confirms it)."""
    listed = tuple(versions)
    candidates = retention_candidates(retain=spec.retain, versions=real_versions(listed),
                                      publishing=True) if spec.retain is not None else ()
    return tuple(sorted(
        {version.version: version for version in (
            *(version for version in candidates if version.code_size is None),
            *(version for version in listed
              if is_filler(version) and version.code_sha256 is None))}.values(),
        key=lambda version: version.version))


def retention_candidates(*, retain: int, versions: Iterable[model.RemoteVersion],
                         publishing: bool) -> tuple[model.RemoteVersion, ...]:
    """The versions outside the `retain` newest, newest first; a version about to be
    published counts as one of the newest."""
    newest_first = sorted(versions, key=lambda version: version.version, reverse=True)
    keep = max(0, retain - 1) if publishing else retain
    return tuple(newest_first[keep:])


@dataclass(frozen=True)
class Retention:
    """What retention does in one region: the versions to delete (oldest first) and the
    ones it keeps though they are old enough to go, each with why."""

    delete: tuple[model.RemoteVersion, ...]
    kept: tuple[tuple[int, str], ...]


def retention(*, retain: int, versions: Iterable[model.RemoteVersion], publishing: bool,
              recorded_version: int | None,
              function_uses: Mapping[str, tuple[str, ...]]) -> Retention:
    """Keep the `retain` newest versions (the one being published among them) and, of the
    older ones, the version the state records as current and every version a function
    uses (`$LATEST` or a published function version); delete the rest."""
    delete: list[model.RemoteVersion] = []
    kept: list[tuple[int, str]] = []
    for version in retention_candidates(retain=retain, versions=versions,
                                        publishing=publishing):
        users = function_uses.get(version.layer_version_arn, ())
        if version.version == recorded_version:
            kept.append((version.version, "the recorded version"))
        elif users:
            kept.append((version.version, f"used by function {', '.join(sorted(users))}"))
        else:
            delete.append(version)
    return Retention(delete=tuple(sorted(delete, key=lambda version: version.version)),
                     kept=tuple(sorted(kept)))


def with_retention(item: Inputs, change: model.Change
                    ) -> tuple[model.Change, tuple[model.Change, ...]]:
    """`change` noting the old versions retention keeps, and a `delete` change for each it
    removes."""
    retain = item.spec.retain or 0
    chosen = retention(retain=retain, versions=real_versions(item.versions or ()),
                       publishing=change.action in PUBLISHING,
                       recorded_version=recorded_after(item, change),
                       function_uses=item.function_uses or {})
    notes = tuple(f"retention keeps v{version}: {why}" for version, why in chosen.kept)
    deletions = tuple(
        model.Change(
            address=change.address, layer_name=change.layer_name,
            action=model.Action.DELETE, reasons=(model.Reason.RETENTION,), current=version,
            desired=change.desired, details=model.DeleteDetails(version=version.version),
            notes=(f"retain: {retain} keeps the {retain} newest versions",))
        for version in chosen.delete)
    return replace(change, notes=(*change.notes, *notes)), deletions


def recorded_after(item: Inputs, change: model.Change) -> int | None:
    """The version the state records once `change` is applied: a publish's new version
    (not among the live ones: None), a record's version, else the recorded one. Retention
    keeps this one, so the plan right after an apply keeps what that apply kept."""
    if change.action in PUBLISHING:
        return None
    if change.record is not None:
        return change.record.version
    if change.action is model.Action.GRANT and change.current is not None:
        return change.current.version
    return item.lock_entry.version if item.lock_entry else None
