"""A layer's consumers: the `update_function` change of each function whose `Layers` would
change and the `put_parameter` change of each parameter whose value would, in one region, and
the plan errors and notes about them over all the layer's regions. Pure: the shell reads the
functions and parameters (`Seen`) and this decides.

A function's layers after: this layer's entry (any version of it) replaced in place by the
latest, or the latest appended when it has none; the other layers and their order kept. The
latest is the version the layer's own change leaves: the remote latest of a noop or grant,
and, when the layer is published in the same apply, its ARN with the version
`model.PUBLISHED`, which apply replaces by the version it publishes (the number is not known
before Lambda gives it: align_versions, a version published meanwhile). A consumer that
already uses the latest is no change; one changed out of band shows as `remote_drift` and is
put back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler import model
from reconciler.planner.inputs import PUBLISHING

# Lambda's limit on the layers of one function.
MAX_LAYERS = 5


@dataclass(frozen=True)
class Seen:
    """What the shell read of one layer's consumers: in each region, the layer's ARN without
    a version (`layer_arns`), the functions found (named or tagged, by name), each named
    function looked for and whether it was there (reference, region, found), and the
    parameter's value (None: no such parameter; absent: not read). `partial`: --region
    selected some of the layer's regions only, so a function found in none of them may be in
    another (a note, not an error)."""

    layer_arns: Mapping[str, str] = field(default_factory=dict)
    functions: Mapping[str, tuple[model.FunctionConfig, ...]] = field(default_factory=dict)
    looked_up: tuple[tuple[str, str, bool], ...] = ()
    parameters: Mapping[str, model.ParameterValue | None] = field(default_factory=dict)
    partial: bool = False
    # Functions named by a full ARN whose region is not one of the layer's planned regions
    # (reference, region, deselected: --region left that region of the manifest out): never
    # looked up, since the layer has no version there to move them to.
    outside: tuple[tuple[str, str, bool], ...] = ()


def latest_arn(change: model.Change, *, layer_arn: str) -> str | None:
    """The LayerVersionArn a consumer is to use once `change` (the layer's own change in the
    region) is applied: the placeholder of the version it publishes, or the remote latest
    (None: the layer has no version there and publishes none)."""
    if change.action in PUBLISHING:
        return f"{layer_arn}:{model.PUBLISHED}"
    if change.current is not None:
        return change.current.layer_version_arn
    return None


def layers_after(before: tuple[str, ...], *, layer_arn: str, latest: str) -> tuple[str, ...]:
    """`before` with the layer's entry (any version of it) replaced in place by `latest`, or
    `latest` appended when it has none; the other layers and their order kept (a second
    entry of the same layer, which Lambda refuses anyway, is dropped)."""
    after: list[str] = []
    placed = False
    for entry in before:
        if model.unversioned(entry) != layer_arn:
            after.append(entry)
        elif not placed:
            after.append(latest)
            placed = True
    if not placed:
        after.append(latest)
    return tuple(after)


def _reasons(change: model.Change, *, appended: bool) -> tuple[model.Reason, ...]:
    if appended:
        return (model.Reason.CONSUMER_ADDED,)
    if change.action in PUBLISHING:
        return (model.Reason.LAYER_PUBLISHED,)
    return (model.Reason.REMOTE_DRIFT,)


def function_change(change: model.Change, config: model.FunctionConfig, *, layer_arn: str,
                    latest: str) -> model.Change | model.LayerError | None:
    """The update_function change that moves `config` to `latest` (None: it uses it already),
    or the plan error when it cannot be made (more than MAX_LAYERS layers)."""
    after = layers_after(config.layers, layer_arn=layer_arn, latest=latest)
    if after == config.layers:
        return None
    where = f"function '{config.name}' in {change.region}"
    if len(after) > MAX_LAYERS:
        return model.LayerError(
            layer=change.layer,
            message=f"{where} would use {len(after)} layers, more than Lambda's "
                    f"{MAX_LAYERS}: {', '.join(after)}",
            hint="remove a layer from the function, or take it out of `consumers`")
    appended = not any(model.unversioned(entry) == layer_arn for entry in config.layers)
    return model.Change(
        address=model.Address(kind=model.ChangeKind.FUNCTION, layer=change.layer,
                              region=change.region, function=config.name),
        layer_name=change.layer_name, action=model.Action.UPDATE_FUNCTION,
        reasons=_reasons(change, appended=appended), current=change.current,
        desired=change.desired,
        details=model.FunctionDetails(function_arn=config.arn, before=config.layers,
                                      after=after, revision_id=config.revision_id))


def parameter_change(change: model.Change, *, name: str, found: model.ParameterValue | None,
                     latest: str) -> model.Change | model.LayerError | None:
    """The put_parameter change that makes `name` hold `latest` (None: it does already), or
    the plan error when the parameter exists with another type: reconcile writes String
    parameters, and never turns a SecureString or StringList someone made into one."""
    if found is not None and found.type != "String":
        return model.LayerError(
            layer=change.layer,
            message=f"parameter '{name}' in {change.region} is a {found.type}, not a String: "
                    "reconcile writes the latest version's ARN as a String parameter and "
                    "does not replace a parameter of another type",
            hint="delete the parameter or name another one in `parameter`")
    if found is not None and found.value == latest:
        return None
    reasons = ((model.Reason.CONSUMER_ADDED,) if found is None
               else _reasons(change, appended=False))
    return model.Change(
        address=model.Address(kind=model.ChangeKind.PARAMETER, layer=change.layer,
                              region=change.region, parameter=name),
        layer_name=change.layer_name, action=model.Action.PUT_PARAMETER, reasons=reasons,
        current=change.current, desired=change.desired,
        details=model.ParameterDetails(before=found.value if found else None, after=latest,
                                       version=found.version if found else None))


def _managed_error(change: model.Change, config: model.FunctionConfig) -> model.LayerError:
    return model.LayerError(
        layer=change.layer,
        message=f"function '{config.name}' in {change.region} is managed by the "
                f"CloudFormation stack '{config.stack}' (tag {model.CLOUDFORMATION_STACK_TAG}):"
                " an update here would be undone by the stack's next deployment",
        hint="set the layer's version in the stack instead, or set `consumers: "
             "{allow_managed: true}`")


def region_changes(spec: model.LayerSpec, change: model.Change, seen: Seen
                   ) -> tuple[list[model.Change], list[model.LayerError]]:
    """The consumer changes of `spec` in `change`'s region (`change` is the layer's own
    there): each function that would change, then the parameter; and the plan errors."""
    region = change.region
    layer_arn = seen.layer_arns.get(region)
    latest = latest_arn(change, layer_arn=layer_arn) if layer_arn else None
    if layer_arn is None or latest is None:
        return [], []
    changes: list[model.Change] = []
    problems: list[model.LayerError] = []
    allow_managed = spec.consumers is not None and spec.consumers.allow_managed
    for config in sorted(seen.functions.get(region, ()), key=lambda found: found.name):
        if config.stack is not None and not allow_managed:
            problems.append(_managed_error(change, config))
            continue
        decided = function_change(change, config, layer_arn=layer_arn, latest=latest)
        if isinstance(decided, model.LayerError):
            problems.append(decided)
        elif decided is not None:
            changes.append(decided)
    if spec.parameter is not None and region in seen.parameters:
        put = parameter_change(change, name=spec.parameter, found=seen.parameters[region],
                               latest=latest)
        if isinstance(put, model.LayerError):
            problems.append(put)
        elif put is not None:
            changes.append(put)
    return changes, problems


def lookup_findings(spec: model.LayerSpec, seen: Seen
                    ) -> tuple[list[model.LayerError], dict[str, list[str]]]:
    """Over all the layer's regions: a named function found in none is a plan error; one
    found in some only gets a note in each region it is not in (region -> notes)."""
    regions_of: dict[str, dict[str, bool]] = {}
    for reference, region, found in seen.looked_up:
        regions_of.setdefault(reference, {})[region] = found
    problems: list[model.LayerError] = []
    notes: dict[str, list[str]] = {}
    for reference, region, deselected in seen.outside:
        if deselected:
            continue  # --region left its region out: nothing is planned there anyway
        problems.append(model.LayerError(
            layer=spec.key,
            message=f"consumers: function '{reference}' is in {region}, which is not one of "
                    f"the layer's regions ({', '.join(sorted(seen.layer_arns))})",
            hint="add the region to the layer's `region`, or take the function out of "
                 "`consumers.functions`"))
    for reference, found_in in sorted(regions_of.items()):
        present = sorted(region for region, found in found_in.items() if found)
        if not present and seen.partial:
            for region in sorted(found_in):
                notes.setdefault(region, []).append(
                    f"consumer function '{reference}' is not in {region} (nor in the other "
                    "selected regions; --region left some out)")
            continue
        if not present:
            account = " or not in the account its ARN names" if ":function:" in reference \
                else ""
            problems.append(model.LayerError(
                layer=spec.key,
                message=f"consumers: function '{reference}' is in none of the layer's regions "
                        f"({', '.join(sorted(found_in))}){account}",
                hint="check its name and the manifest's regions, or take it out of "
                     "`consumers.functions`"))
            continue
        for region in sorted(found_in):
            if not found_in[region]:
                notes.setdefault(region, []).append(
                    f"consumer function '{reference}' is not in {region} (found in "
                    f"{', '.join(present)})")
    return problems, notes


def moved_functions(changes: list[model.Change]) -> frozenset[str]:
    """The `name:$LATEST` of each function the changes move (retention's bystander rule then
    no longer counts their $LATEST as using the version they leave)."""
    return frozenset(f"{change.address.function}:$LATEST" for change in changes
                     if change.action is model.Action.UPDATE_FUNCTION)
