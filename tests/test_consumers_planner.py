"""The consumers' decision (planner.consumers, through planner.plan): which functions and
parameters change, their layers and values after, the plan errors (five layers, a function
found nowhere, one CloudFormation manages) and notes, and retention freeing the version the
consumers leave. Pure: the planner's inputs are values."""

from __future__ import annotations

import pytest

from reconciler import model, planner

REGION, OTHER = "us-east-1", "eu-west-1"
CODE_A, CODE_B = "A" * 43 + "=", "B" * 43 + "="
LAYER = "arn:aws:lambda:{}:123456789012:layer:shared"
S = model.Settings()


def arn(version: int, region: str = REGION, name: str = "shared") -> str:
    """The ARN of version `version` of layer `name` in `region`."""
    return f"arn:aws:lambda:{region}:123456789012:layer:{name}:{version}"


def spec(*, functions: tuple[str, ...] = ("api",), parameter: str | None = None,
         allow_managed: bool = False, retain: int | None = None) -> model.LayerSpec:
    """Layer `shared` consumed by `functions`, with `parameter`."""
    return model.LayerSpec(
        key="shared", name="shared", settings=S,
        content=model.ContentSpec(kind=model.SourceKind.PATH, path="shared"),
        location=model.Location(1, 1), retain=retain, parameter=parameter,
        consumers=model.Consumers(functions=functions, allow_managed=allow_managed))


def item(layer: model.LayerSpec, *, region: str = REGION, changed: bool = False,
         versions: int = 3,
         uses: dict[str, tuple[str, ...]] | None = None) -> planner.Inputs:
    """`layer` in `region` at v`versions` (recorded), its content changed when `changed`."""
    latest = model.RemoteVersion(version=versions, layer_version_arn=arn(versions, region),
                                 settings=S, code_sha256=CODE_A, code_size=10)
    entry = model.LockEntry(fingerprint="fp", content_sha256="ab", code_sha256=CODE_A,
                            code_size=10, version=versions,
                            layer_version_arn=arn(versions, region),
                            settings_sha256=S.digest())
    listed = tuple(model.RemoteVersion(version=number, layer_version_arn=arn(number, region),
                                       settings=S, code_sha256=CODE_A, code_size=10)
                   for number in range(1, versions + 1))
    return planner.Inputs(
        spec=layer, region=region,
        artifact=model.Artifact(fingerprint="fp2" if changed else "fp",
                                code_sha256=CODE_B if changed else CODE_A,
                                content_sha256="cd", code_size=10, zip_path="/z.zip"),
        lock_entry=entry, remote_latest=latest,
        versions=listed if layer.retain is not None else None,
        function_uses=uses if layer.retain is not None else None)


def function(name: str, *layers: str, region: str = REGION,
             tags: tuple[tuple[str, str], ...] = ()) -> model.FunctionConfig:
    """A function `name` using `layers`."""
    return model.FunctionConfig(name=name,
                                arn=f"arn:aws:lambda:{region}:123456789012:function:{name}",
                                layers=layers, revision_id=f"rev-{name}",
                                update_status=model.UpdateStatus.SUCCESSFUL, tags=tags)


def seen(*configs: model.FunctionConfig, region: str = REGION,
         parameter: model.ParameterValue | str | None = "unread") -> planner.Seen:
    """What the shell read in `region`: `configs`, each named function found there."""
    return planner.Seen(
        layer_arns={region: LAYER.format(region)}, functions={region: configs},
        looked_up=tuple((config.name, region, True) for config in configs),
        parameters={} if parameter == "unread" else {region: parameter}  # type: ignore[dict-item]
    )


def consumer_changes(plan: model.Plan) -> list[model.Change]:
    """The plan's update_function and put_parameter changes."""
    return [change for change in plan.changes if change.action in model.CONSUMER_ACTIONS]


@pytest.mark.parametrize(("before", "after"), [
    # in place, whatever its version, the others and their order kept
    ((arn(1, name="a"), arn(1), arn(2, name="b")), (arn(1, name="a"), "NEW", arn(2, name="b"))),
    ((arn(2),), ("NEW",)),
    # appended when absent
    ((arn(1, name="a"),), (arn(1, name="a"), "NEW")),
    ((), ("NEW",)),
    # a second entry of the layer (Lambda refuses one anyway) is dropped
    ((arn(1), arn(1, name="a"), arn(2)), ("NEW", arn(1, name="a"))),
])
def test_layers_after_replaces_in_place_or_appends(before: tuple[str, ...],
                                                   after: tuple[str, ...]) -> None:
    """The layer's entry is replaced where it stands, or appended; the others keep order."""
    assert planner.layers_after(before, layer_arn=LAYER.format(REGION), latest="NEW") == after


def test_a_function_on_an_old_version_moves_to_the_published_placeholder() -> None:
    """A layer published in this apply: the function's entry becomes the layer's ARN with
    the $PUBLISHED version, reason layer_published, guarded by the RevisionId read."""
    layer = spec()
    plan = planner.plan([item(layer, changed=True)],
                        consumers={"shared": seen(function("api", arn(1, name="a"), arn(3)))})
    [change] = consumer_changes(plan)
    details = change.details_as(model.FunctionDetails)
    assert change.address == model.Address(kind=model.ChangeKind.FUNCTION, layer="shared",
                                           region=REGION, function="api")
    assert details.after == (arn(1, name="a"), f"{LAYER.format(REGION)}:$PUBLISHED")
    assert details.before == (arn(1, name="a"), arn(3))
    assert details.revision_id == "rev-api"
    assert change.reasons == (model.Reason.LAYER_PUBLISHED,)


def test_a_function_on_the_latest_is_no_change_and_drift_is_put_back() -> None:
    """A function already on the latest makes no change; one moved out of band to another
    version is moved back (remote_drift); one without the layer gets it (consumer_added)."""
    layer = spec(functions=("api", "old", "new"))
    plan = planner.plan([item(layer)], consumers={"shared": seen(
        function("api", arn(3)), function("old", arn(2)), function("new"))})
    moved = {change.address.function: change for change in consumer_changes(plan)}
    assert set(moved) == {"old", "new"}
    assert moved["old"].reasons == (model.Reason.REMOTE_DRIFT,)
    assert moved["old"].details_as(model.FunctionDetails).after == (arn(3),)
    assert moved["new"].reasons == (model.Reason.CONSUMER_ADDED,)


def test_more_than_five_layers_is_a_plan_error() -> None:
    """A function that would have six layers is an error of the layer naming it."""
    others = tuple(arn(1, name=f"l{number}") for number in range(5))
    plan = planner.plan([item(spec())], consumers={"shared": seen(function("api", *others))})
    assert consumer_changes(plan) == []
    [error] = plan.errors
    assert "function 'api' in us-east-1 would use 6 layers" in error.message


def test_a_function_cloudformation_manages_is_an_error_unless_allowed() -> None:
    """The stack tag makes a plan error naming the stack; allow_managed moves it."""
    managed = function("api", arn(2), tags=((model.CLOUDFORMATION_STACK_TAG, "orders"),))
    refused = planner.plan([item(spec())], consumers={"shared": seen(managed)})
    assert consumer_changes(refused) == []
    assert "CloudFormation stack 'orders'" in refused.errors[0].message
    allowed = planner.plan([item(spec(allow_managed=True))],
                           consumers={"shared": seen(managed)})
    assert allowed.errors == () and len(consumer_changes(allowed)) == 1


def test_a_function_found_in_no_region_is_an_error_and_in_some_a_note() -> None:
    """Named and found nowhere: a plan error; found in one region of two: a note on the
    layer's change where it is not."""
    layer = spec(functions=("api", "ghost"))
    read = planner.Seen(
        layer_arns={REGION: LAYER.format(REGION), OTHER: LAYER.format(OTHER)},
        functions={REGION: (function("api", arn(3)),)},
        looked_up=(("api", REGION, True), ("api", OTHER, False), ("ghost", REGION, False),
                   ("ghost", OTHER, False)))
    plan = planner.plan([item(layer), item(layer, region=OTHER)], consumers={"shared": read})
    [error] = plan.errors
    assert "function 'ghost' is in none of the layer's regions" in error.message
    [there] = [change for change in plan.changes if change.region == OTHER]
    assert "consumer function 'api' is not in eu-west-1 (found in us-east-1)" in there.notes


def test_the_parameter_is_put_where_absent_or_behind_and_left_when_current() -> None:
    """No parameter: put (consumer_added); another value: put; the latest: nothing."""
    layer = spec(functions=(), parameter="/layers/shared")
    for found, expected in ((None, (None, arn(3))),
                            (model.ParameterValue(value=arn(2), version=4), (arn(2), arn(3))),
                            (model.ParameterValue(value=arn(3), version=5), None)):
        plan = planner.plan([item(layer)], consumers={"shared": seen(parameter=found)})
        changes = consumer_changes(plan)
        if expected is None:
            assert changes == []
            continue
        [change] = changes
        details = change.details_as(model.ParameterDetails)
        assert change.address.parameter == "/layers/shared"
        assert (details.before, details.after) == expected
        assert details.version == (found.version if found else None)


def test_retention_deletes_the_version_the_consumers_leave_but_not_a_bystanders() -> None:
    """retain: 1 with a publish: v2, used only by the $LATEST of a function this plan moves,
    is deleted; v1, which a published function version uses, is kept."""
    layer = spec(retain=1)
    uses: dict[str, tuple[str, ...]] = {arn(2): ("api:$LATEST",), arn(1): ("pinned:3",)}
    plan = planner.plan([item(layer, changed=True, versions=2, uses=uses)],
                        consumers={"shared": seen(function("api", arn(2)))})
    deleted = [change.details_as(model.DeleteDetails).version for change in plan.changes
               if change.action is model.Action.DELETE]
    assert deleted == [2]
    [layer_change] = [change for change in plan.changes
                      if change.action is model.Action.PUBLISH]
    assert "retention keeps v1: used by function pinned:3" in layer_change.notes


def test_consumer_changes_follow_their_layer_change_in_the_plan() -> None:
    """In a region the layer's own change comes first, then its deletions, then its
    functions (by name), then its parameter."""
    layer = spec(functions=("b", "a"), parameter="/p", retain=1)
    plan = planner.plan([item(layer, changed=True, versions=1, uses={})],
                        consumers={"shared": seen(function("b"), function("a"),
                                                  parameter=None)})
    assert [(change.action.value, change.address.thing) for change in plan.changes] == [
        ("publish", ""), ("delete", ""), ("update_function", "a"), ("update_function", "b"),
        ("put_parameter", "/p")]


def test_with_some_regions_selected_a_function_found_in_none_is_a_note() -> None:
    """--region left regions out: a named function found in none of the selected ones may be
    in another, so the plan notes it instead of failing."""
    layer = spec(functions=("elsewhere",))
    read = planner.Seen(layer_arns={REGION: LAYER.format(REGION)},
                        looked_up=(("elsewhere", REGION, False),), partial=True)
    plan = planner.plan([item(layer)], consumers={"shared": read})
    assert plan.errors == ()
    assert any("consumer function 'elsewhere' is not in us-east-1" in note
               for note in plan.changes[0].notes)


def test_a_parameter_of_another_type_is_an_error_never_replaced() -> None:
    """An existing SecureString or StringList parameter is a plan error naming its type; the
    plan never turns it into a String."""
    layer = spec(functions=(), parameter="/layers/shared")
    for kind in ("SecureString", "StringList"):
        found = model.ParameterValue(value="kms:ciphertext", version=2, type=kind)
        plan = planner.plan([item(layer)], consumers={"shared": seen(parameter=found)})
        assert consumer_changes(plan) == []
        [error] = plan.errors
        assert f"parameter '/layers/shared' in us-east-1 is a {kind}, not a String" \
            in error.message


def test_a_function_arn_outside_the_layers_regions_is_an_error() -> None:
    """A function named by an ARN of a region the layer is not in cannot be moved: a plan
    error naming the region; nothing only when --region left that region of the manifest
    out."""
    reference = "arn:aws:lambda:eu-west-1:123456789012:function:api"
    layer = spec(functions=(reference,))
    for deselected in (False, True):
        # --region with the ARN's region outside the manifest's is still the error.
        read = planner.Seen(layer_arns={REGION: LAYER.format(REGION)},
                            outside=((reference, OTHER, False),), partial=deselected)
        [error] = planner.plan([item(layer)], consumers={"shared": read}).errors
        assert f"function '{reference}' is in eu-west-1, which is not one of the layer's " \
            "regions (us-east-1)" in error.message
    left_out = planner.Seen(layer_arns={REGION: LAYER.format(REGION)},
                            outside=((reference, OTHER, True),), partial=True)
    assert planner.plan([item(layer)], consumers={"shared": left_out}).errors == ()


def test_a_function_arn_found_nowhere_may_be_in_another_account() -> None:
    """A function named by ARN and not found: the error says it may be the ARN's account
    that differs, not only the region."""
    reference = "arn:aws:lambda:us-east-1:999999999999:function:api"
    read = planner.Seen(layer_arns={REGION: LAYER.format(REGION)},
                        looked_up=((reference, REGION, False),))
    [error] = planner.plan([item(spec(functions=(reference,)))],
                           consumers={"shared": read}).errors
    assert error.message.endswith("(us-east-1) or not in the account its ARN names")
