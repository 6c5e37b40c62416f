"""What an apply did, as the document `apply --format json` prints (and the text and
Markdown renderings are made from), and the error that the outcome ends the command with.

Values in, values out: it prints nothing, and every message that may quote an endpoint
passes errors.redact_urls.
"""

from __future__ import annotations

from typing import Any

from reconciler import applying, errors, model, planfile


def document(report: applying.ApplyReport, *, state_location: str, plan: model.Plan,
             lock_id: str, unlock_error: errors.ReconcilerError | None) -> dict[str, Any]:
    """The apply report, as `apply --format json` prints it (the lock's release included)."""
    result = {
        "ok": report.ok,
        "interrupted": report.interrupted,
        "state": state_location,
        "published": [
            {"layer": item.change.layer, "region": item.change.region,
             "version": item.version.version,
             "layer_version_arn": item.version.layer_version_arn,
             "code_sha256": item.version.code_sha256, "adopted": item.adopted}
            for item in report.published],
        "recorded": [
            {"layer": change.layer, "region": change.region,
             "version": change.record.version if change.record else None,
             "layer_version_arn": change.record.layer_version_arn if change.record else None}
            for change in report.recorded],
        "failed": [
            {"layer": item.change.layer, "region": item.change.region,
             "action": item.change.action.value, **_consumer_of(item.change),
             "error": errors.redact_urls(item.error.message), "code": item.error.code,
             "hint": errors.redact_urls(item.error.hint) if item.error.hint else None}
            for item in report.failed],
        "not_attempted": [
            {"layer": item.change.layer, "region": item.change.region,
             "action": item.change.action.value, **_consumer_of(item.change), "why": item.why}
            for item in report.not_attempted],
        "functions": [
            {"layer": item.change.layer, "region": item.change.region,
             "function": item.change.address.function, "layers": list(item.layers),
             "adopted": item.adopted}
            for item in report.moved],
        "parameters": [
            {"layer": item.change.layer, "region": item.change.region,
             "parameter": item.change.address.parameter, "value": item.value,
             "version": item.version}
            for item in report.written],
        "forgotten": [{"layer": change.layer, "region": change.region}
                      for change in report.forgotten],
        "granted": [
            {"layer": change.layer, "region": change.region,
             "version": change.current.version if change.current else None,
             "layer_version_arn": change.current.layer_version_arn if change.current else None}
            for change in report.granted],
        "deleted": [
            {"layer": item.change.layer, "region": item.change.region,
             "versions": list(item.versions),
             "filler": item.change.action is not model.Action.DELETE}
            for item in report.deleted],
        "warnings": list(report.warnings),
        "unchanged": report.unchanged,
        "plan": planfile.to_document(plan),
    }
    result["lock"] = {"id": lock_id, "released": unlock_error is None,
                      "error": (errors.redact_urls(unlock_error.message)
                                if unlock_error is not None else None)}
    return result


def _consumer_of(change: model.Change) -> dict[str, str]:
    """The function or parameter a consumer change names, as a report entry's key."""
    if change.address.function is not None:
        return {"function": change.address.function}
    if change.address.parameter is not None:
        return {"parameter": change.address.parameter}
    return {}


def failed_before_any_change(error: errors.ReconcilerError) -> dict[str, Any]:
    """The document `apply --format json` prints when apply refused before any change."""
    return {"ok": False, "error": errors.redact_urls(error.message), "code": error.code,
            "published": [], "recorded": [], "failed": [], "not_attempted": []}


def changed(report: applying.ApplyReport) -> bool:
    """Whether the apply changed anything (a publish, a record, a grant, a delete, a
    forget, a function moved or a parameter written)."""
    return bool(report.published or report.recorded or report.granted or report.deleted
                or report.forgotten or report.moved or report.written)


def unlock_failure(*, location: str, lock_id: str, error: errors.ReconcilerError) -> str:
    """What is left when the state lock could not be released, and how to release it."""
    return (f"error: could not release the state lock {lock_id} on {location}: "
            f"{error.message}\nhint: once no apply runs, release it with "
            f"`reconcile force-unlock {lock_id}`")


def lock_left_behind(*, location: str, lock_id: str,
                     error: errors.ReconcilerError) -> errors.StateError:
    """The error of an apply that did everything but could not release the lock."""
    return errors.StateError(
        f"every change above was made and recorded, but the state lock {lock_id} on "
        f"{location} could not be released: {error.message}",
        hint=f"once no apply runs, release it with `reconcile force-unlock {lock_id}`")


def outcome_error(report: applying.ApplyReport, *,
                  state_location: str) -> errors.ReconcilerError | None:
    """The error an interrupted or incomplete apply ends with (None: it did everything)."""
    if report.interrupted:
        return errors.Interrupted(
            "apply was interrupted: every publish that finished is recorded; "
            f"{len(report.not_attempted)} change(s) were not started",
            hint="run apply again to do what is missing")
    if not report.ok:
        unknown = any(isinstance(item.error, errors.PublishOutcomeUnknown)
                      for item in report.failed)
        return errors.ApplyFailed(
            report.failure_summary(state_location=state_location),
            hint=("run apply again: the next plan adopts a version a lost publish made, "
                  "instead of publishing it again, and does only what is missing") if unknown
            else "see each failure above; run apply again to do only what is missing")
    return None
