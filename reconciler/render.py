"""Plan -> text (Terraform-like, optionally coloured), a JSON-able dict (the plan document of
the contract) or Markdown (for pull requests and GitHub step summaries).

Returns strings and dicts; never prints, never decides about terminals (the caller passes
`color`).
"""

from __future__ import annotations

from typing import Any

from reconciler import model

FORMAT_VERSION = 1
_SYMBOLS = {
    model.Action.CREATE: "+", model.Action.PUBLISH: "~",
    model.Action.NOOP: "=", model.Action.DELETE: "-",
}
_COLORS = {
    model.Action.CREATE: "\033[32m", model.Action.PUBLISH: "\033[33m",
    model.Action.NOOP: "\033[2m", model.Action.DELETE: "\033[31m",
}
_BOLD, _RESET = "\033[1m", "\033[0m"


def short(code_sha256: object) -> str:
    """A CodeSha256 shortened for people: the first 12 characters."""
    if not code_sha256:
        return "(none)"
    text = str(code_sha256)
    return text if len(text) <= 12 else text[:12] + "…"


def _version_text(change: model.LayerChange) -> str:
    if change.action is model.Action.CREATE:
        return f"create v{change.expected_version}"
    if change.action is model.Action.PUBLISH:
        current = change.current.version if change.current else "?"
        return f"publish v{change.expected_version}, replacing v{current}"
    if change.action is model.Action.DELETE:
        return f"delete v{change.version}"
    return f"unchanged at v{change.current.version}" if change.current else "unchanged"


def _field_lines(field_change: model.FieldChange) -> list[str]:
    name = field_change.field
    if name == "code_sha256":
        return [f"{name}: {short(field_change.before)} -> {short(field_change.after)}"]
    if field_change.added or field_change.removed:
        parts = [f"+ {value}" for value in field_change.added]
        parts += [f"- {value}" for value in field_change.removed]
        return [f"{name}: {', '.join(parts)}"]
    return [f"{name}: {field_change.before!r} -> {field_change.after!r}"]


def summary_line(plan: model.Plan) -> str:
    """`Plan: 1 to create, 1 to publish, 3 unchanged.` (and deletions when there are any)."""
    counts = plan.summary()
    parts = [f"{counts['create']} to create", f"{counts['publish']} to publish"]
    if counts["delete"]:
        parts.append(f"{counts['delete']} to delete")
    parts.append(f"{counts['noop']} unchanged")
    records = len(plan.records)
    to_record = f" ({records} to record in the lockfile)" if records else ""
    return f"Plan: {', '.join(parts)}{to_record}."


def text(plan: model.Plan, *, color: bool = False) -> str:
    """The human view: one line per layer and region, then reasons and field changes."""
    def paint(value: str, code: str) -> str:
        return f"{code}{value}{_RESET}" if color else value

    lines: list[str] = []
    width = max((len(change.layer) for change in plan.changes), default=0)
    for change in plan.changes:
        symbol = paint(_SYMBOLS[change.action], _COLORS[change.action])
        name = paint(change.layer.ljust(width), _BOLD)
        lines.append(f"  {symbol} {name}  {change.region}  {_version_text(change)}")
        details: list[str] = []
        if change.reasons:
            details.append("reasons: " + ", ".join(reason.value for reason in change.reasons))
        for field_change in change.diff:
            details.extend(_field_lines(field_change))
        details.extend(f"note: {note}" for note in change.notes)
        lines.extend(f"      {detail}" for detail in details)
    if not plan.changes:
        lines.append("  (no layers selected)")
    lines.append("")
    if not plan.has_changes:
        lines.append("No changes. The published layers match the manifest.")
    elif not plan.has_remote_changes:
        lines.append("Nothing to publish: the published layers match the manifest. Apply "
                     "records them in the lockfile.")
    lines.append(summary_line(plan))
    return "\n".join(lines) + "\n"


def _diff_dict(change: model.LayerChange) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for field_change in change.diff:
        entry: dict[str, Any] = {"from": field_change.before, "to": field_change.after}
        if field_change.added or field_change.removed:
            entry["added"] = list(field_change.added)
            entry["removed"] = list(field_change.removed)
        result[field_change.field] = entry
    return result


def change_dict(change: model.LayerChange) -> dict[str, Any]:
    """One change as in the contract's plan document."""
    current = None
    if change.current is not None:
        current = {
            "version": change.current.version,
            "layer_version_arn": change.current.layer_version_arn,
            "code_sha256": change.current.code_sha256,
        }
    desired: dict[str, Any] = {
        "code_sha256": change.desired.code_sha256,
        "code_size": change.desired.code_size,
        **change.desired.settings.as_dict(),
    }
    document: dict[str, Any] = {
        "layer": change.layer,
        "region": change.region,
        "action": change.action.value,
        "reasons": [reason.value for reason in change.reasons],
        "current": current,
        "desired": desired,
        "diff": _diff_dict(change),
        "notes": list(change.notes),
    }
    if change.expected_version is not None:
        document["expected_version"] = change.expected_version
    if change.version is not None:
        document["version"] = change.version
    return document


def plan_dict(plan: model.Plan) -> dict[str, Any]:
    """The plan document (`plan --format json`)."""
    return {
        "format_version": FORMAT_VERSION,
        "changes": [change_dict(change) for change in plan.changes],
        "summary": plan.summary(),
    }


def markdown(plan: model.Plan, *, title: str = "reconcile plan") -> str:
    """A Markdown table of the plan with the details of each change below it."""
    lines = [f"### {title}", "", summary_line(plan), ""]
    if plan.changes:
        lines += ["| | Layer | Region | Action | Reasons |", "|---|---|---|---|---|"]
        for change in plan.changes:
            reasons = ", ".join(f"`{reason.value}`" for reason in change.reasons) or "—"
            lines.append(f"| {_SYMBOLS[change.action]} | `{change.layer}` | {change.region} | "
                         f"{_version_text(change)} | {reasons} |")
        details = [change for change in plan.changes if change.diff or change.notes]
        if details:
            lines += ["", "<details><summary>Details</summary>", ""]
            for change in details:
                lines.append(f"- `{change.layer}` ({change.region})")
                lines += [f"  - `{line}`" for fc in change.diff for line in _field_lines(fc)]
                lines += [f"  - {note}" for note in change.notes]
            lines += ["", "</details>"]
    return "\n".join(lines) + "\n"
