"""Plan -> text (Terraform-like, optionally coloured) or Markdown (for pull requests and GitHub
step summaries); the outcome of an apply -> text and Markdown. The plan document (JSON) is
`planfile`'s.

Each action has one view (`_VIEWS`: its headline, field changes and detail lines), which the
text and the Markdown lay out alike. Returns strings; never prints, never decides about
terminals (the caller passes `color`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler import model

_SYMBOLS = {
    model.Action.CREATE: "+", model.Action.PUBLISH: "~",
    model.Action.NOOP: "=", model.Action.DELETE: "-", model.Action.GRANT: "*",
    model.Action.FORGET: "x", model.Action.UPDATE_FUNCTION: ">",
    model.Action.PUT_PARAMETER: ">",
}
_COLORS = {
    model.Action.CREATE: "\033[32m", model.Action.PUBLISH: "\033[33m",
    model.Action.NOOP: "\033[2m", model.Action.DELETE: "\033[31m",
    model.Action.GRANT: "\033[36m", model.Action.FORGET: "\033[35m",
    model.Action.UPDATE_FUNCTION: "\033[34m", model.Action.PUT_PARAMETER: "\033[34m",
}
_MB = 1024 * 1024
_BOLD, _RESET = "\033[1m", "\033[0m"


def error_layers(plan: model.Plan) -> list[str]:
    """The layers with a plan error, each once, in the order of their first error (a layer
    can have several: one per region, or per consumer)."""
    return list(dict.fromkeys(error.layer for error in plan.errors))


def short(code_sha256: object) -> str:
    """A CodeSha256 shortened for people: the first 12 characters."""
    if not code_sha256:
        return "(none)"
    text = str(code_sha256)
    return text if len(text) <= 12 else text[:12] + "…"


def _field_lines(field_change: model.FieldChange) -> list[str]:
    name = field_change.field
    if name == "code_sha256":
        return [f"{name}: {short(field_change.before)} -> {short(field_change.after)}"]
    if field_change.added or field_change.removed:
        parts = [f"+ {value}" for value in field_change.added]
        parts += [f"- {value}" for value in field_change.removed]
        return [f"{name}: {', '.join(parts)}"]
    return [f"{name}: {field_change.before!r} -> {field_change.after!r}"]


_LARGEST_SHOWN = 5


def build_lines(change: model.Change) -> list[str]:
    """What a create or publish of a layer built from a lock builds: the target, the
    packages added, removed and changed against the recorded list (`numpy 2.1.0 -> 2.2.6`;
    every package when none is recorded), the largest packages unzipped, and what the lock
    lists but the layer leaves out, and why."""
    build = change.desired.build
    if build is None or change.action not in (model.Action.CREATE, model.Action.PUBLISH):
        return []
    count = len(build.packages)
    lines = [f"build: {build.target}, {count} package{'s' if count != 1 else ''}"]
    if build.recorded is None:
        if build.packages:
            lines.append("packages: " + ", ".join(f"{name} {version}"
                                                  for name, version in build.packages))
    else:
        before, after = dict(build.recorded), dict(build.packages)
        parts = [f"+ {name} {after[name]}" for name in sorted(after.keys() - before.keys())]
        parts += [f"- {name} {before[name]}" for name in sorted(before.keys() - after.keys())]
        parts += [f"{name} {before[name]} -> {after[name]}" for name in sorted(
            after.keys() & before.keys()) if before[name] != after[name]]
        lines.append("packages: " + (", ".join(parts) if parts else "the same as recorded"))
    if build.sizes:
        largest = sorted(build.sizes, key=lambda item: (-item[1], item[0]))[:_LARGEST_SHOWN]
        lines.append("largest unzipped: " + ", ".join(f"{name} {byte_size(size)}"
                                                      for name, size in largest))
    if build.left_out:
        lines.append("left out: " + ", ".join(f"{name} ({why})"
                                              for name, why in build.left_out))
    return lines


def summary_line(plan: model.Plan) -> str:
    """`Plan: 1 to create, 1 to publish, 3 unchanged.` (and deletions, grants, records and
    layers in error when there are any)."""
    counts = plan.summary()
    parts = [f"{counts['create']} to create", f"{counts['publish']} to publish"]
    if counts["delete"]:
        parts.append(f"{counts['delete']} to delete")
    if counts["grant"]:
        parts.append(f"{counts['grant']} to grant")
    if counts["forget"]:
        parts.append(f"{counts['forget']} to forget")
    if counts["update_function"]:
        parts.append(f"{counts['update_function']} function(s) to update")
    if counts["put_parameter"]:
        parts.append(f"{counts['put_parameter']} parameter(s) to put")
    parts.append(f"{counts['noop']} unchanged")
    records = len(plan.records)
    to_record = f" ({records} to record in the lockfile)" if records else ""
    in_error = f"; {len(error_layers(plan))} in error" if plan.errors else ""
    return f"Plan: {', '.join(parts)}{to_record}{in_error}."


def byte_size(size: int) -> str:
    """A size as people read it: bytes, KB or MB (binary units, as Lambda's limits are)."""
    if size < 1024:
        return f"{size:,} bytes"
    if size < _MB:
        return f"{size / 1024:.1f} KB"
    return f"{size / _MB:.1f} MB"


def _share(part: int, whole: int) -> str:
    """`part` as a percentage of `whole`; a small non-zero share is `<1%`, not `0%`."""
    percent = 100 * part / whole
    return "<1%" if 0 < percent < 1 else f"{percent:.0f}%"


def _fillers(count: int) -> str:
    return f" after {count} filler version{'s' if count != 1 else ''}" if count else ""


def _align_lines(align: model.Alignment | None) -> list[str]:
    if align is None or align.target is None:
        return []
    text = f"align_versions: v{align.target} in every region"
    if align.fillers:
        text += (f"; {align.fillers} filler version(s) first, deleted once "
                 f"v{align.target} is published")
    if align.shortfall:
        text += f"; cannot reach it here: {align.shortfall} version(s) short"
    return [text]


def size_text(desired: model.Desired) -> str | None:
    """The zip's size and how close it is to Lambda's limits, for a change that uploads."""
    size, unzipped = desired.code_size, desired.unzipped_size
    if size is None:
        return None
    text = (f"zip: {byte_size(size)}, {_share(size, model.MAX_DIRECT_UPLOAD_BYTES)} of "
            "the 50 MB direct-upload limit")
    if unzipped is not None:
        text += (f"; {byte_size(unzipped)} unzipped, "
                 f"{_share(unzipped, model.MAX_UNZIPPED_BYTES)} of the 262,144,000-byte "
                 "limit")
    return text


def upload_text(code: model.CodeLocation | None) -> str | None:
    """How a create or publish hands Lambda its code, for people."""
    if code is None:
        return None
    if code.route is model.UploadRoute.DIRECT or code.s3 is None:
        return "upload: direct (the zip in the publish request)"
    where = f"s3://{code.s3.bucket}/{code.s3.key}"
    if code.s3.version:
        where += f" (version {code.s3.version})"
    if code.route is model.UploadRoute.ARTIFACT_BUCKET:
        return f"upload: through the artifact bucket, {where} (skipped if already there)"
    return f"upload: none, published from {where}"


@dataclass(frozen=True)
class _Lines:
    """What one change shows beside its reasons and notes: the headline after its layer and
    region, its field changes, the lines about its alignment and grants (`fleet`), and
    those only the text view shows (sizes and upload route)."""

    headline: str
    diff: tuple[model.FieldChange, ...] = ()
    fleet: tuple[str, ...] = ()
    text_only: tuple[str, ...] = ()


def _publish(change: model.Change) -> _Lines:
    details = change.details_as(model.PublishDetails)
    fillers = _fillers(details.align.fillers if details.align else 0)
    if change.action is model.Action.CREATE:
        headline = f"create v{details.expected_version}{fillers}"
    else:
        current = change.current.version if change.current else "?"
        headline = f"publish v{details.expected_version}{fillers}, replacing v{current}"
    grants = [("grants on the new version: " + ", ".join(
        f"{grant.kind} {grant.principal}" for grant in change.desired.grants))
        ] if change.desired.grants else []
    return _Lines(headline, diff=details.diff,
                  fleet=(*_align_lines(details.align), *grants, *build_lines(change)),
                  text_only=tuple(line for line in (size_text(change.desired),
                                                    upload_text(details.code)) if line))


def _noop(change: model.Change) -> _Lines:
    details = change.details_as(model.RecordDetails)
    return _Lines(f"unchanged at v{change.current.version}" if change.current else "unchanged",
                  fleet=tuple(_align_lines(details.align)))


def _grant(change: model.Change) -> _Lines:
    details = change.details_as(model.GrantDetails)
    parts = [f"+ {grant.kind} {grant.principal}" for grant in details.add]
    parts += [f"- {statement_id}" for statement_id in details.remove]
    return _Lines(f"update grants of v{change.current.version if change.current else '?'}",
                  fleet=(*_align_lines(details.align),
                         *([f"grants: {', '.join(parts)}"] if parts else [])))


def _delete(change: model.Change) -> _Lines:
    version = change.details_as(model.DeleteDetails).version
    if model.Reason.STRAY_FILLER in change.reasons:
        return _Lines(f"delete v{version} (a filler an apply left behind)")
    size = change.current.code_size if change.current else None
    return _Lines(f"delete v{version}" + (f" ({size:,} bytes)" if size is not None else ""))


def _forget(change: model.Change) -> _Lines:
    version = change.details_as(model.ForgetDetails).version
    return _Lines(f"forget (the state stops recording v{version}; its versions stay in "
                  "Lambda)")


def version_of(layer_version_arn: str | None) -> str:
    """A layer version ARN's version for people: `v4`, `the new version` for the
    placeholder of the version this apply publishes, `none` for no ARN."""
    if layer_version_arn is None:
        return "none"
    version = layer_version_arn.rsplit(":", 1)[-1]
    if version == model.PUBLISHED:
        return "the new version"
    return f"v{version}" if version.isdigit() else layer_version_arn


def short_layers(layers: tuple[str, ...]) -> str:
    """A function's Layers for people: `name:version` each, in order."""
    return "[" + ", ".join(":".join(arn.rsplit(":", 2)[-2:]) for arn in layers) + "]"


def _function(change: model.Change) -> _Lines:
    details = change.details_as(model.FunctionDetails)
    # The layer's entry is the one `after` holds and `before` does not.
    new = next((arn for arn in details.after if arn not in details.before), None)
    old = None if new is None else next(
        (arn for arn in details.before if model.unversioned(arn) == model.unversioned(new)),
        None)
    how = (f"{version_of(old)} -> {version_of(new)}" if old is not None
           else f"{version_of(new)} appended")
    return _Lines(f"update function {change.address.function}: {how}",
                  fleet=(f"layers: {short_layers(details.before)} -> "
                         f"{short_layers(details.after)}",))


def _parameter(change: model.Change) -> _Lines:
    details = change.details_as(model.ParameterDetails)
    before = "none" if details.before is None else version_of(details.before)
    return _Lines(f"put parameter {change.address.parameter}: {before} -> "
                  f"{version_of(details.after)}",
                  fleet=(f"value: {details.before or '(no parameter)'} -> {details.after}",))


# One view per action: a new kind or action adds its own.
_VIEWS: dict[model.Action, Callable[[model.Change], _Lines]] = {
    model.Action.CREATE: _publish, model.Action.PUBLISH: _publish, model.Action.NOOP: _noop,
    model.Action.GRANT: _grant, model.Action.DELETE: _delete, model.Action.FORGET: _forget,
    model.Action.UPDATE_FUNCTION: _function, model.Action.PUT_PARAMETER: _parameter,
}


def _view_of(change: model.Change) -> _Lines:
    """What `change` shows, by its action's view."""
    return _VIEWS[change.action](change)


def text(plan: model.Plan, *, color: bool = False) -> str:
    """The human view: one line per layer and region, then reasons and field changes."""
    def paint(value: str, code: str) -> str:
        return f"{code}{value}{_RESET}" if color else value

    lines: list[str] = []
    width = max((len(change.layer) for change in plan.changes), default=0)
    for change in plan.changes:
        symbol = paint(_SYMBOLS[change.action], _COLORS[change.action])
        name = paint(change.layer.ljust(width), _BOLD)
        shown = _view_of(change)
        lines.append(f"  {symbol} {name}  {change.region}  {shown.headline}")
        details: list[str] = []
        if change.reasons:
            details.append("reasons: " + ", ".join(reason.value for reason in change.reasons))
        for field_change in shown.diff:
            details.extend(_field_lines(field_change))
        details.extend(shown.fleet)
        details.extend(shown.text_only)
        details.extend(f"note: {note}" for note in change.notes)
        lines.extend(f"      {detail}" for detail in details)
    for error in plan.errors:
        lines.append(f"  {paint('!', _COLORS[model.Action.DELETE])} "
                     f"{paint(error.layer.ljust(width), _BOLD)}  error: {error.message}")
        if error.hint:
            lines.append(f"      hint: {error.hint}")
    if not plan.changes and not plan.errors:
        lines.append("  (no layers selected)")
    lines.extend(f"  {paint('warning:', _COLORS[model.Action.PUBLISH])} {warning}"
                 for warning in plan.warnings)
    lines.append("")
    if plan.errors:
        lines.append(f"{len(error_layers(plan))} layer(s) could not be planned; apply refuses to "
                     "start until they are fixed.")
    elif not plan.has_changes:
        lines.append("No changes. The published layers match the manifest.")
    elif not plan.has_remote_changes:
        lines.append("Nothing to publish: the published layers match the manifest. Apply "
                     + ("records them in the lockfile." if not plan.summary()["forget"] else
                        "changes only the state; Lambda keeps every version."))
    lines.append(summary_line(plan))
    return "\n".join(lines) + "\n"


def markdown(plan: model.Plan, *, title: str = "reconcile plan") -> str:
    """A Markdown table of the plan with the details of each change below it."""
    lines = [f"### {title}", "", summary_line(plan), ""]
    shown = [change for change in plan.changes
             if change.action is not model.Action.NOOP or change.record or change.reasons]
    unchanged = len(plan.changes) - len(shown)
    if plan.errors:
        lines += [f"- :x: `{error.layer}`: {error.message}" for error in plan.errors] + [""]
    if plan.warnings:
        lines += [f"- :warning: {warning}" for warning in plan.warnings] + [""]
    if shown:
        lines += ["| | Layer | Region | Action | Reasons |", "|---|---|---|---|---|"]
        for change in shown:
            reasons = ", ".join(f"`{reason.value}`" for reason in change.reasons) or "—"
            lines.append(f"| {_SYMBOLS[change.action]} | `{change.layer}` | {change.region} | "
                         f"{_view_of(change).headline} | {reasons} |")
    if unchanged:
        lines += ["", f"{unchanged} unchanged layer version(s) not shown."]
    if plan.changes:
        details = [(change, _view_of(change)) for change in shown]
        details = [(change, view) for change, view in details
                   if view.diff or change.notes or view.fleet]
        if details:
            lines += ["", "<details><summary>Details</summary>", ""]
            for change, view in details:
                thing = change.address.thing
                lines.append(f"- `{change.layer}` ({change.region})"
                             + (f" {change.address.kind.value} `{thing}`" if thing else ""))
                lines += [f"  - `{line}`" for fc in view.diff for line in _field_lines(fc)]
                lines += [f"  - {line}" for line in view.fleet]
                lines += [f"  - {note}" for note in change.notes]
            lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def _thing(item: dict[str, Any]) -> str:
    """` function NAME` or ` parameter NAME` for a report entry of a consumer change."""
    if item.get("function"):
        return f" function {item['function']}"
    if item.get("parameter"):
        return f" parameter {item['parameter']}"
    return ""


def left_out_text(refused: Sequence[tuple[model.Change, str]]) -> str:
    """The consumer changes of the plan shown above that an apply of a saved plan leaves out
    (the saved plan is stale for them), each with why; "" when there is none."""
    if not refused:
        return ""
    lines = ["Left out of this apply (the saved plan is stale for them; the rest is applied):"]
    for change, why in refused:
        address = change.address
        thing = (f" function {address.function}" if address.function
                 else f" parameter {address.parameter}" if address.parameter else "")
        lines.append(f"  ! {change.layer} ({change.region}){thing}: {why}")
    return "\n".join(lines) + "\n"


def apply_text(report: dict[str, Any]) -> str:
    """The outcome of an apply (its JSON report) for people: one line per layer and region."""
    lines: list[str] = []
    for item in report["published"]:
        how = " (found published after a lost reply)" if item.get("adopted") else ""
        lines.append(f"published {item['layer']} ({item['region']}): "
                     f"{item['layer_version_arn']}{how}")
    for item in report["recorded"]:
        lines.append(f"recorded  {item['layer']} ({item['region']}): {item['layer_version_arn']}")
    for item in report.get("granted", []):
        lines.append(f"granted   {item['layer']} ({item['region']}): {item['layer_version_arn']}")
    for item in report.get("forgotten", []):
        lines.append(f"forgotten {item['layer']} ({item['region']}): out of the state; its "
                     "versions stay in Lambda")
    for item in report.get("deleted", []):
        what = "filler" if item.get("filler") else "deleted"
        lines.append(f"{what:<9} {item['layer']} ({item['region']}): "
                     + ", ".join(f"v{version}" for version in item["versions"]))
    for item in report.get("functions", []):
        how = " (found already updated)" if item.get("adopted") else ""
        lines.append(f"updated   {item['layer']} ({item['region']}): function "
                     f"{item['function']} uses {short_layers(tuple(item['layers']))}{how}")
    for item in report.get("parameters", []):
        lines.append(f"written   {item['layer']} ({item['region']}): parameter "
                     f"{item['parameter']} = {item['value']}")
    for item in report["failed"]:
        lines.append(f"FAILED    {item['layer']} ({item['region']}){_thing(item)}: "
                     f"{item['error']}")
        if item.get("hint"):
            lines.append(f"          hint: {item['hint']}")
    for item in report["not_attempted"]:
        lines.append(f"not tried {item['layer']} ({item['region']}){_thing(item)}: "
                     f"{item['why']}")
    lines.extend(f"warning:  {warning}" for warning in report.get("warnings", []))
    counts = (f"{len(report['published'])} published, {len(report['recorded'])} recorded "
              f"without publishing, {report['unchanged']} unchanged")
    if report.get("functions") or report.get("parameters"):
        counts += (f", {len(report.get('functions', []))} function(s) updated, "
                   f"{len(report.get('parameters', []))} parameter(s) written")
    if report["ok"]:
        lines.append(f"\nApply complete: {counts}; {report['state']} is up to date.")
    else:
        lines.append(f"\nApply incomplete: {counts}, {len(report['failed'])} failed, "
                     f"{len(report['not_attempted'])} not attempted. Every success is "
                     "recorded.")
    return "\n".join(lines) + "\n"


def apply_markdown(report: dict[str, Any], *, title: str = "reconcile apply") -> str:
    """The outcome of an apply for a GitHub step summary: what was published (ARNs) and
    recorded, and on failure what failed, why, and what was done before."""
    status = "complete" if report["ok"] else "**incomplete**"
    lines = [f"### {title}", "",
             f"Apply {status}: {len(report['published'])} published, "
             f"{len(report['recorded'])} recorded, {report['unchanged']} unchanged, "
             f"{len(report['failed'])} failed, {len(report['not_attempted'])} not attempted.",
             ""]
    rows = [(item, "published") for item in report["published"]]
    rows += [(item, "recorded") for item in report["recorded"]]
    rows += [({**item, "layer_version_arn": "(stays in Lambda)"}, "forgotten")
             for item in report.get("forgotten", [])]
    rows += [({**item, "layer_version_arn": ", ".join(item["layers"])},
              f"function {item['function']} updated") for item in report.get("functions", [])]
    rows += [({**item, "layer_version_arn": item["value"]},
              f"parameter {item['parameter']} written") for item in report.get("parameters", [])]
    if rows:
        lines += ["| Layer | Region | Done | LayerVersionArn |", "|---|---|---|---|"]
        lines += [f"| `{item['layer']}` | {item['region']} | {done} | "
                  f"`{item['layer_version_arn']}` |" for item, done in rows]
        lines.append("")
    if report["failed"]:
        lines += ["**Failed:**", ""]
        lines += [f"- `{item['layer']}` ({item['region']}){_thing(item)}: {item['error']}"
                  for item in report["failed"]]
        lines.append("")
    if report["not_attempted"]:
        lines += ["**Not attempted:**", ""]
        lines += [f"- `{item['layer']}` ({item['region']}){_thing(item)}: {item['why']}"
                  for item in report["not_attempted"]]
        lines.append("")
    lock = report.get("lock")
    if isinstance(lock, dict) and not lock.get("released", True):
        lines += [f"**The state lock `{lock['id']}` could not be released:** {lock['error']}. "
                  f"Once no apply runs: `reconcile force-unlock {lock['id']}`", ""]
    return "\n".join(lines) + "\n"
