"""Saved plans as files: reading one (within limits, schema-checked), writing one
atomically, the applied-once mark, the selection a saved plan carries (and the flags that
must agree with it), and the check that a fresh decision is still the saved plan.

A saved plan is an approval, not instructions: no field of it is used as a path outside the
repository anchor. The comparisons themselves are `savedplan`'s (pure); this module adds
the files and the working directory. It prints nothing.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from reconciler import archive, errors, model, planfile, ports, savedplan
from reconciler.run import session as run_session


def read(path: Path) -> dict[str, Any]:
    """A saved plan's document, within limits and checked against the plan schema."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise errors.UsageError(f"{path}: no such plan file",
                                hint="make one with `reconcile plan --out FILE`") from None
    except OSError as exc:
        raise errors.UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return savedplan.read_document(data, file=str(path))


def write(path: Path, document: dict[str, Any]) -> None:
    """Write a plan file atomically (a temp file beside it, then a rename)."""
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                                 dir=path.parent)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise errors.UsageError(f"cannot write the plan file {path}: {exc.strerror or exc}"
                                ) from exc


@dataclass(frozen=True)
class Loaded:
    """A saved plan read for apply: the plan and its document as read (kept to be written
    back with the applied mark)."""

    plan: model.Plan
    document: dict[str, Any]


def load_for_apply(path: Path) -> Loaded:
    """The saved plan at `path`, refused (StalePlan) when it was applied already. Checked
    before anything else: the file is an artifact a pull request produced."""
    document = read(path)
    saved = planfile.from_document(document)
    applied = document.get("applied")
    if applied:
        at = applied.get("at", "earlier") if isinstance(applied, dict) else "earlier"
        raise errors.StalePlan(
            [f"this plan file was applied already ({at}); a plan is applied once"],
            hint="make a new plan with `reconcile plan --out`")
    return Loaded(plan=saved, document=document)


def mark_applied(path: Path, loaded: Loaded, *, snapshot: ports.Snapshot) -> None:
    """Write the plan file back marked applied, before the first change: a plan file is
    applied once, even when the apply stops half way (its state moved: it is stale from
    then on anyway)."""
    write(path, {**loaded.document, "applied": {
        "at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "state_revision": snapshot.revision}})


def refuse_stale(saved: model.Plan, fresh: model.Plan) -> list[tuple[model.Change, str]]:
    """StalePlan naming each difference, unless the fresh decision is exactly the saved plan
    but for consumer changes: those of the fresh decision the saved plan does not approve
    as they are now (savedplan.stale_consumers) are returned, each with why, for apply to
    leave out (the plan is stale for them only)."""
    assert fresh.basis is not None  # make_plan always gives one
    stale = [*savedplan.basis_differences(saved.basis, now=fresh.basis),
             *savedplan.differences(saved, fresh)]
    if stale:
        raise errors.StalePlan(stale, hint="make a new plan with `reconcile plan "
                                           "--out` and review it again")
    refused = savedplan.stale_consumers(saved, fresh)
    return [(change, refused[savedplan.address_of(change)]) for change in fresh.changes
            if savedplan.address_of(change) in refused]


def saved_manifest(saved: model.PlanBasis, plan_file: Path) -> Path:
    """The manifest a saved plan names, found below this checkout's repository anchor; never
    a path outside it (the plan file is not trusted)."""
    named = PurePosixPath(saved.manifest)
    if not saved.manifest or named.is_absolute() or ".." in named.parts or "\\" in saved.manifest:
        raise errors.UsageError(
            f"{plan_file}: the plan does not name a manifest inside the repository "
            f"({saved.manifest or 'none'})",
            hint="pass -f MANIFEST: the manifest the plan was made for")
    anchor = run_session.repository_anchor()
    found = anchor / Path(*named.parts)
    # A symlink on the way may lead elsewhere: the manifest read is the one inside.
    if not found.resolve().is_relative_to(anchor.resolve()):
        raise errors.UsageError(
            f"{plan_file}: the plan's manifest {saved.manifest} leads outside the repository",
            hint="pass -f MANIFEST: the manifest the plan was made for")
    return found


@dataclass(frozen=True)
class Selection:
    """The manifest, targets, regions and download choice a saved plan was made with."""

    manifest: Path
    targets: list[str]
    regions: list[str]
    download: bool


def saved_selection(saved: model.Plan, *, plan_file: Path, manifest: Path | None,
                    targets: list[str] | None, regions: list[str] | None,
                    no_download: bool) -> Selection:
    """The selection a saved plan was made with; flags given again must agree with it
    (UsageError naming each difference)."""
    basis = saved.basis
    if basis is None:
        raise errors.StalePlan(["the plan has no basis (it was not saved by "
                                "`reconcile plan --out`)"],
                               hint="make a new plan with `reconcile plan --out`")
    given = run_session.manifest_in_repository(manifest) if manifest is not None else None
    if manifest is not None and given == "":
        given = str(manifest)
    differences = savedplan.selection_differences(basis, manifest=given,
                                                  targets=targets or [], regions=regions or [])
    if no_download and basis.download:
        differences.append("the plan was made allowing downloads; this apply passes "
                           "--no-download")
    if differences:
        raise errors.UsageError(
            f"{plan_file}: the options disagree with the plan's own selection:\n"
            + "\n".join(f"  - {line}" for line in differences),
            hint="`reconcile apply PLANFILE` needs no -f, --target or --region: the plan "
                 "carries its selection")
    chosen = manifest if manifest is not None else saved_manifest(basis, plan_file)
    return Selection(manifest=chosen, targets=list(basis.targets),
                     regions=list(basis.regions), download=basis.download)


def refuse_inside_a_layer(out: Path, *, session: run_session.Session) -> None:
    """A plan file inside a folder layer's content would be packaged with it: `apply
    PLANFILE` would then find that layer's content changed (the plan file is new) and refuse
    the plan as stale. Refused before anything is done, unless the layer excludes it."""
    target = out.absolute().parent.resolve() / out.name
    for spec in session.selection.specs:
        if spec.content.kind is not model.SourceKind.PATH or spec.content.path is None:
            continue
        folder = (session.space.base_dir / spec.content.path).resolve()
        if not target.is_relative_to(folder):
            continue
        parts = target.relative_to(folder).parts
        rules = archive.ExcludeRules.compile(spec.content.exclude)
        if any(rules.excluded("/".join(parts[:depth]), is_dir=depth < len(parts))
               for depth in range(1, len(parts) + 1)):
            continue
        raise errors.UsageError(
            f"--out {out}: the plan file would be inside layers.{spec.key}'s content "
            f"({spec.content.path}) and packaged with it, so the plan could never be applied",
            hint="write the plan file outside the layer's folder (or exclude it in "
                 f"layers.{spec.key}.content.exclude)")
