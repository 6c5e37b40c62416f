"""A saved plan is an approval, not instructions: the checks of `apply PLANFILE`. Pure: bytes
and plans in, documents and words out; the caller reads the file and decides again.

The plan file travels as a CI artifact that a pull request produced, so nothing in it is
trusted. It is read within limits (size, nesting) and checked against the shipped plan schema
before anything else (`read_document`). Apply then decides again, from the checkout, the state
and Lambda, with the plan's own selection, and `differences` compares the two decisions change
by change: every change the saved plan would make (create, publish, delete, grant, record,
forget (the version it stops recording), with
its fillers, upload route, bucket and key, settings, grants, version numbers and CodeSha256)
must be one the fresh decision makes, and the fresh decision must make no change the plan
lacks (deletes of filler versions an apply left behind excepted: the fresh decision always
makes those, after confirming each). Apply carries out the fresh decision, so no field of the
file is ever used as a path,
bucket, key, layer name, region or ARN: it is only compared. A no-op without a record is not a
change, so a plan is stale only when what its own changes depend on moved (an apply of other
layers in between leaves it applicable). A consumer change (update_function, put_parameter)
never makes the whole plan stale: one whose consumer moved since the plan (its RevisionId,
layers or value), or one the fresh decision adds, is stale for that change only
(`stale_consumers`): apply leaves it out, and the rest is applied.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from functools import cache
from importlib import resources
from typing import Any

from reconciler import errors, model

# A plan of 4,000 layers in 20 regions is ~60 MB of JSON; anything larger is not a plan.
MAX_PLAN_FILE_BYTES = 256 * 1024 * 1024
# The plan document nests 6 levels deep (changes[].desired.grants[][]); 32 leaves room for keys
# a newer reconcile adds, and keeps a hostile file far from the interpreter's recursion limit.
MAX_DEPTH = 32
# Schema violations listed before "and N more".
_MAX_LISTED = 5


@cache
def plan_schema() -> dict[str, Any]:
    """The plan document's JSON Schema shipped inside the package."""
    text = resources.files("reconciler").joinpath("schemas/plan.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


# Control characters (C0 but tab and newline, DEL, C1): no plan this tool writes holds one, and
# `show` prints a plan on a terminal and `comment` posts it, where they could hide or forge text.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _shape_problem(document: Any) -> str | None:
    """Why `document` is no plan this tool wrote, by its shape alone (walked without
    recursion): nested more than MAX_DEPTH containers, or a key or a string holding a control
    character. None when neither."""
    stack: list[tuple[Any, int, str]] = [(document, 1, "")]
    while stack:
        value, depth, where = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested more than {MAX_DEPTH} levels"
        if isinstance(value, dict):
            for key, item in value.items():
                if _CONTROL.search(str(key)):
                    return f"a key at {where or '(the document)'} holds a control character"
                stack.append((item, depth + 1, f"{where}.{key}" if where else str(key)))
        elif isinstance(value, list):
            stack.extend((item, depth + 1, f"{where}[{index}]")
                         for index, item in enumerate(value))
        elif isinstance(value, str) and _CONTROL.search(value):
            return f"{where or '(the document)'} holds a control character"
    return None


def _json_path(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(the document)"


def _error(message: str, *, hint: str) -> errors.PlanFileError:
    return errors.PlanFileError(message, hint=hint)


def read_document(data: bytes, *, file: str) -> dict[str, Any]:
    """The plan document in `data` (the bytes of `file`), checked against the plan schema
    within the size and nesting limits; PlanFileError naming the file and field otherwise."""
    hint = "make the plan again with `reconcile plan --out FILE`"
    if len(data) > MAX_PLAN_FILE_BYTES:
        raise _error(f"{file}: {len(data):,} bytes, more than a plan file can be "
                     f"({MAX_PLAN_FILE_BYTES:,})", hint=hint)
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _error(f"{file}: not a plan file (not UTF-8: {exc.reason} at byte "
                     f"{exc.start})", hint=hint) from None
    except json.JSONDecodeError as exc:
        raise _error(f"{file}:{exc.lineno}:{exc.colno}: not a plan file (not JSON: "
                     f"{exc.msg})", hint=hint) from None
    except RecursionError:
        raise _error(f"{file}: not a plan file (nested too deeply)", hint=hint) from None
    problem = _shape_problem(document)
    if problem is not None:
        raise _error(f"{file}: not a plan file ({problem})", hint=hint)
    if not isinstance(document, dict) or "changes" not in document:
        raise _error(f"{file}: not a reconcile plan (no `changes`)", hint=hint)
    if document.get("format_version") != 1:
        raise _error(f"{file}: plan format_version {document.get('format_version')!r} "
                     "is not supported (this reconcile reads version 1)",
                     hint="was it made by another reconcile? " + hint)
    import jsonschema  # only a saved plan needs it here (~50 ms to import)

    validator = jsonschema.Draft202012Validator(plan_schema())
    found = sorted(validator.iter_errors(document), key=lambda error: str(list(error.path)))
    if found:
        lines = [f"{_json_path(error.absolute_path)}: {_shorten(error.message)}"
                 for error in found[:_MAX_LISTED]]
        more = f"\n  ... and {len(found) - _MAX_LISTED} more" if len(found) > _MAX_LISTED else ""
        raise _error(f"{file}: not a valid plan file:\n  " + "\n  ".join(lines) + more,
                     hint=hint)
    return document


def _shorten(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _short(value: object) -> str:
    if value is None:
        return "none"
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 24 else text[:20] + "…"


# layer, region, action, deleted version (0: none), function or parameter ("": a layer's)
Address = tuple[str, str, str, int, str]


def _publish_facts(change: model.Change) -> dict[str, object]:
    details, current, desired = (change.details_as(model.PublishDetails), change.current,
                                 change.desired)
    location, align = details.code, details.align or model.Alignment(target=None)
    s3 = location.s3 if location is not None else None
    return {
        "current version": current.version if current else None,
        "code_sha256": desired.code_sha256, "content_sha256": desired.content_sha256,
        "code_size": desired.code_size, "fingerprint": desired.fingerprint,
        "source": desired.source.value, **desired.settings.as_dict(),
        "grants": sorted([grant.kind, grant.principal] for grant in desired.grants),
        "expected version": details.expected_version,
        "align target": align.target, "fillers": align.fillers, "shortfall": align.shortfall,
        "upload route": location.route.value if location else None,
        "upload bucket": s3.bucket if s3 else None, "upload key": s3.key if s3 else None,
        "upload object version": s3.version if s3 else None,
        # A built layer: what it is built for and from (the sizes follow from these).
        **({"build target": desired.build.target,
            "build inputs": desired.build.inputs_sha256,
            "build packages": list(desired.build.packages),
            "build left out": list(desired.build.left_out)}
           if desired.build is not None else {}),
    }


def _record_facts(change: model.Change) -> dict[str, object]:
    record = change.details_as(model.RecordDetails).record
    if record is None:
        return {}
    return {"recorded version": record.version, "recorded arn": record.layer_version_arn,
            "recorded code_sha256": record.code_sha256,
            "recorded content_sha256": record.content_sha256,
            "recorded code_size": record.code_size, "recorded fingerprint": record.fingerprint,
            "recorded settings": record.settings_sha256,
            "recorded inputs": record.inputs_sha256,
            "recorded packages": list(record.packages)}


def _grant_facts(change: model.Change) -> dict[str, object]:
    details, current = change.details_as(model.GrantDetails), change.current
    return {
        "current version": current.version if current else None,
        "version arn": current.layer_version_arn if current else None,
        "grants added": sorted([grant.kind, grant.principal] for grant in details.add),
        "grants removed": sorted(details.remove),
        # What apply then records for the version (planner.lock_entry_for).
        "fingerprint": change.desired.fingerprint,
        "content_sha256": change.desired.content_sha256,
        "settings digest": change.desired.settings.digest(change.desired.grants)}


def _delete_facts(change: model.Change) -> dict[str, object]:
    current = change.current
    return {"version arn": current.layer_version_arn if current else None,
            "reasons": sorted(reason.value for reason in change.reasons)}


def _forget_facts(change: model.Change) -> dict[str, object]:
    return {"forgotten version": change.details_as(model.ForgetDetails).version,
            "forgotten fingerprint": change.desired.fingerprint,
            "forgotten code_sha256": change.desired.code_sha256}


def _function_facts(change: model.Change) -> dict[str, object]:
    details = change.details_as(model.FunctionDetails)
    return {"function arn": details.function_arn, "layers after": list(details.after),
            # The basis: what the function was at plan (a function moved since is stale).
            "layers before": list(details.before), "revision id": details.revision_id}


def _parameter_facts(change: model.Change) -> dict[str, object]:
    details = change.details_as(model.ParameterDetails)
    return {"value": details.after,
            # The basis: the value and version at plan.
            "value before": details.before, "version before": details.version}


# What of each action must equal the fresh decision's: one entry per action.
_FACTS: dict[model.Action, Callable[[model.Change], dict[str, object]]] = {
    model.Action.CREATE: _publish_facts, model.Action.PUBLISH: _publish_facts,
    model.Action.NOOP: _record_facts, model.Action.GRANT: _grant_facts,
    model.Action.DELETE: _delete_facts, model.Action.FORGET: _forget_facts,
    model.Action.UPDATE_FUNCTION: _function_facts, model.Action.PUT_PARAMETER: _parameter_facts,
}


def _what(change: model.Change) -> dict[str, object]:
    """The parts of `change` that say what apply does: equal substance, equal calls (its
    action's entry in _FACTS says which)."""
    return {"layer name": change.layer_name, **_FACTS[change.action](change)}


def _address(change: model.Change) -> Address:
    details = change.details
    version = details.version if isinstance(
        details, model.DeleteDetails | model.ForgetDetails) else 0
    return (change.layer, change.region, change.action.value, version, change.address.thing)


def _compared(change: model.Change) -> bool:
    """Whether `change` is one the saved and the fresh decision must agree on: not a no-op
    without a record (it makes no change), and not the delete of a filler version an apply
    left behind: the fresh decision deletes those only after confirming each is the filler
    zip, whoever saved the plan and whatever it lists (a plan saved while another apply ran
    lacks them; one saved before a rerun lists some already gone)."""
    if change.action is model.Action.NOOP:
        return change.record is not None
    return not (change.action is model.Action.DELETE
                and change.reasons == (model.Reason.STRAY_FILLER,))


def substance(plan: model.Plan) -> dict[Address, dict[str, object]]:
    """Every change `plan` would make, by address (see _compared for what is left out)."""
    found: dict[Address, dict[str, object]] = {}
    for change in plan.changes:
        if not _compared(change):
            continue
        found[_address(change)] = _what(change)
    return found


def _describe(address: Address) -> str:
    layer, region, action, version, thing = address
    if action == model.Action.UPDATE_FUNCTION.value:
        return f"update function {thing} to layer {layer} in {region}"
    if action == model.Action.PUT_PARAMETER.value:
        return f"put parameter {thing} of layer {layer} in {region}"
    verb = {"create": "create", "publish": "publish", "delete": f"delete v{version} of",
            "grant": "change the grants of", "noop": "record",
            "forget": "forget"}.get(action, action)
    return f"{verb} layer {layer} in {region}"


def _fresh_action(fresh: model.Plan, layer: str, region: str) -> str:
    for change in fresh.changes:
        if (change.layer, change.region) == (layer, region) and change.action is not \
                model.Action.DELETE:
            current = f" (its latest is v{change.current.version})" if change.current else ""
            return f"{change.action.value}{current}"
    return "nothing (the layer or region is not planned now)"


def differences(saved: model.Plan, fresh: model.Plan) -> list[str]:
    """Each way the fresh decision differs from the saved plan's, in words (empty: the saved
    plan is exactly what apply would do now)."""
    lines: list[str] = []
    if fresh.errors:
        lines.extend(f"layer {error.layer} cannot be planned now: {error.message}"
                     for error in fresh.errors)
    listed = Counter(_address(change) for change in saved.changes if _compared(change))
    lines.extend(f"the plan lists {_describe(address)} {count} times"
                 for address, count in sorted(listed.items()) if count > 1)
    before, now = substance(saved), substance(fresh)
    for address in sorted(set(before) | set(now)):
        if _consumer(address):
            continue  # stale for that change only: stale_consumers()
        layer, region = address[0], address[1]
        if address not in now:
            lines.append(f"the plan would {_describe(address)}; deciding again now does not "
                         f"(now: {_fresh_action(fresh, layer, region)})")
        elif address not in before:
            lines.append(f"deciding again now would also {_describe(address)}, which the plan "
                         "does not")
        else:
            changed = [f"{name} {_short(before[address].get(name))} -> "
                       f"{_short(now[address].get(name))}"
                       for name in sorted(set(before[address]) | set(now[address]))
                       if before[address].get(name) != now[address].get(name)]
            if changed:
                lines.append(f"the plan would {_describe(address)} with other values than "
                             f"deciding again now: {'; '.join(changed)}")
    return lines


def _consumer(address: Address) -> bool:
    return address[2] in {action.value for action in model.CONSUMER_ACTIONS}


def stale_consumers(saved: model.Plan, fresh: model.Plan) -> dict[Address, str]:
    """The consumer changes of the fresh decision that apply must not carry out, each with
    why: a consumer that moved since the plan (its RevisionId, layers or value differ), or
    one the plan does not list. A saved plan is stale for such a change only: the rest of
    it is applied, and the layer's retention in that region waits (the version the consumer
    was to leave may still be used)."""
    before, now = substance(saved), substance(fresh)
    stale: dict[Address, str] = {}
    for address in sorted(now):
        if not _consumer(address):
            continue
        if address not in before:
            stale[address] = (f"the plan does not {_describe(address)}: it changed since the "
                              "plan was made; plan again to approve it")
            continue
        changed = [name for name in sorted(set(before[address]) | set(now[address]))
                   if before[address].get(name) != now[address].get(name)]
        if changed:
            stale[address] = (f"stale: {', '.join(changed)} changed since the plan was made "
                              "(never overwritten); plan again")
    return stale


def address_of(change: model.Change) -> Address:
    """How savedplan names `change` (for stale_consumers' answer)."""
    return _address(change)


def basis_differences(saved: model.PlanBasis | None, *, now: model.PlanBasis) -> list[str]:
    """What the saved basis says that must hold for the fresh decision to be comparable: the
    same tool and packaging format, and the same state."""
    if saved is None:
        return ["the plan has no basis (it was not saved by `reconcile plan --out`)"]
    lines: list[str] = []
    if saved.tool_version != now.tool_version:
        lines.append(f"the plan was made by reconcile {saved.tool_version}; this is "
                     f"reconcile {now.tool_version}")
    if saved.packaging_format != now.packaging_format:
        lines.append(f"the plan was made with packaging format {saved.packaging_format}; this "
                     f"reconcile packages with format {now.packaging_format}")
    if saved.state_location != now.state_location:
        lines.append(f"the plan recorded its state in {saved.state_location}; this apply uses "
                     f"{now.state_location}")
    return lines


def selection_differences(saved: model.PlanBasis, *, manifest: str | None,
                          targets: list[str], regions: list[str]) -> list[str]:
    """Flags given to `apply PLANFILE` that disagree with the plan's own selection (a flag
    not given agrees). `manifest` is the given manifest's path in the plan's terms; a plan
    that names none (its manifest lay outside the repository) takes the one -f gives."""
    lines: list[str] = []
    if manifest is not None and saved.manifest and manifest != saved.manifest:
        lines.append(f"the plan was made for the manifest {saved.manifest or '(unknown)'}; "
                     f"-f names {manifest}")
    if targets and sorted(set(targets)) != sorted(saved.targets):
        lines.append(f"the plan selected targets {list(saved.targets) or 'all'}; this apply "
                     f"selects {sorted(set(targets))}")
    if regions and sorted(set(regions)) != sorted(saved.regions):
        lines.append(f"the plan selected regions {list(saved.regions) or 'all'}; this apply "
                     f"selects {sorted(set(regions))}")
    return lines
