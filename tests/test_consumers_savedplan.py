"""A saved plan's consumer changes against the fresh decision (savedplan): a consumer that
moved since the plan, or one the plan lacks, is stale for that change only; the layer
changes still decide whether the whole plan is stale; the plan document round-trips them.
Pure."""

from __future__ import annotations

from dataclasses import replace

from reconciler import model, planfile, savedplan

ARN = "arn:aws:lambda:us-east-1:123456789012:layer:shared:{}"
DESIRED = model.Desired(settings=model.Settings(), fingerprint="fp", code_sha256=None,
                        content_sha256=None, code_size=None)


def update(name: str, *, before: tuple[str, ...], revision: str | None = "rev-1",
           after: tuple[str, ...] = (ARN.format("$PUBLISHED"),)) -> model.Change:
    """An update_function change of function `name`."""
    return model.Change(
        address=model.Address(kind=model.ChangeKind.FUNCTION, layer="shared",
                              region="us-east-1", function=name),
        layer_name="shared", action=model.Action.UPDATE_FUNCTION,
        reasons=(model.Reason.LAYER_PUBLISHED,), current=None, desired=DESIRED,
        details=model.FunctionDetails(function_arn=f"arn:fn:{name}", before=before,
                                      after=after, revision_id=revision))


def put(value: str | None) -> model.Change:
    """A put_parameter change of /p whose value at plan was `value`."""
    return model.Change(
        address=model.Address(kind=model.ChangeKind.PARAMETER, layer="shared",
                              region="us-east-1", parameter="/p"),
        layer_name="shared", action=model.Action.PUT_PARAMETER,
        reasons=(model.Reason.LAYER_PUBLISHED,), current=None, desired=DESIRED,
        details=model.ParameterDetails(before=value, after=ARN.format("$PUBLISHED"),
                                       version=1 if value else None))


def test_an_unmoved_consumer_is_approved() -> None:
    """The same consumer changes: nothing differs, nothing is stale."""
    plan = model.Plan(changes=(update("api", before=(ARN.format(1),)), put(ARN.format(1))))
    assert savedplan.differences(plan, plan) == []
    assert savedplan.stale_consumers(plan, plan) == {}


def test_a_moved_consumer_is_stale_for_its_change_only() -> None:
    """A function whose RevisionId moved, a parameter whose value moved, a function the plan
    lacks: each stale alone, the plan as a whole not stale."""
    saved = model.Plan(changes=(update("api", before=(ARN.format(1),)), put(ARN.format(1))))
    fresh = model.Plan(changes=(update("api", before=(ARN.format(1),), revision="rev-2"),
                                put(ARN.format(0)), update("new", before=())))
    assert savedplan.differences(saved, fresh) == []
    stale = savedplan.stale_consumers(saved, fresh)
    assert sorted(address[4] for address in stale) == ["/p", "api", "new"]
    assert "revision id" in stale[savedplan.address_of(fresh.changes[0])]
    assert "plan again to approve it" in stale[savedplan.address_of(fresh.changes[2])]


def test_consumer_changes_round_trip_through_the_plan_document() -> None:
    """A plan with both consumer kinds reads back from its document equal."""
    plan = model.Plan(changes=(update("api", before=(ARN.format(1),), revision=None),
                               replace(put(None), notes=("a note",))))
    document = planfile.to_document(plan)
    assert document["changes"][0]["kind"] == "function"
    assert document["changes"][1]["value"]["before"] is None
    assert planfile.from_document(document) == plan
