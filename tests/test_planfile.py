"""The plan document: every plan shape round-trips through planfile, every document is valid
against the shipped plan schema, and a saved plan is compared with the fresh decision: each
difference named, files read within limits."""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import resources
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import errors, model, planfile, savedplan

SCHEMA = json.loads(resources.files("reconciler").joinpath("schemas/plan.schema.json")
                    .read_text("utf-8"))
CODE = "A" * 43 + "="
S1 = model.Settings.normalised(description="one", compatible_runtimes=["python3.12"],
                               compatible_architectures=["x86_64"], license_info="MIT")


def validate(document: dict[str, Any]) -> None:
    """Fail unless `document` is valid against schemas/plan.schema.json."""
    jsonschema.Draft202012Validator(SCHEMA).validate(document)


_text = st.text(alphabet="abcdefghij-_0123456789", min_size=1, max_size=12)
_codes = st.one_of(st.none(), st.sampled_from([CODE, "B" * 43 + "="]))
_settings = st.builds(
    model.Settings.normalised,
    description=st.one_of(st.none(), _text),
    compatible_runtimes=st.lists(st.sampled_from(["python3.12", "python3.13", "nodejs22.x"]),
                                 max_size=3),
    compatible_architectures=st.lists(st.sampled_from(["x86_64", "arm64"]), max_size=2),
    license_info=st.one_of(st.none(), _text),
)
_remote = st.builds(model.RemoteVersion, version=st.integers(1, 500), layer_version_arn=_text,
                    settings=_settings, code_sha256=_codes,
                    code_size=st.one_of(st.none(), st.integers(0, 10**8)))
_lock_entry = st.builds(model.LockEntry, fingerprint=_text, content_sha256=_text,
                        code_sha256=st.just(CODE), code_size=st.integers(0, 10**8),
                        version=st.integers(1, 500), layer_version_arn=_text,
                        settings_sha256=_text)
_desired = st.builds(
    model.Desired, settings=_settings, fingerprint=_text, code_sha256=_codes,
    content_sha256=st.one_of(st.none(), _text), code_size=st.one_of(st.none(),
                                                                     st.integers(0, 10**8)),
    grants=st.lists(st.builds(model.Grant, kind=st.sampled_from(["account", "organization"]),
                              principal=_text), max_size=2).map(tuple),
    source=st.sampled_from(list(model.SourceKind)),
    unzipped_size=st.one_of(st.none(), st.integers(0, 10**9)))
_field_change = st.one_of(
    st.builds(model.FieldChange, field=st.just("code_sha256"), before=_codes, after=_codes),
    st.builds(model.FieldChange, field=st.just("description"), before=_text, after=_text),
    st.builds(model.FieldChange, field=st.just("compatible_runtimes"),
              before=st.lists(_text, max_size=2), after=st.lists(_text, max_size=2),
              added=st.lists(_text, min_size=1, max_size=2).map(tuple),
              removed=st.lists(_text, max_size=2).map(tuple)),
)
_code = st.one_of(
    st.none(),
    st.just(model.CodeLocation(route=model.UploadRoute.DIRECT)),
    st.builds(model.CodeLocation, route=st.sampled_from(
        [model.UploadRoute.ARTIFACT_BUCKET, model.UploadRoute.S3_SOURCE]),
        s3=st.builds(model.S3Object, bucket=_text, key=_text,
                     version=st.one_of(st.none(), _text))))
_grants = st.lists(st.builds(model.Grant, kind=st.sampled_from(
    ["account", "organization", "public"]), principal=_text), max_size=2).map(tuple)
_align = st.one_of(st.none(), st.builds(
    model.Alignment, target=st.one_of(st.none(), st.integers(1, 500)),
    fillers=st.integers(0, 100), shortfall=st.integers(0, 300)))
_download = st.one_of(st.none(), st.builds(
    model.RemoteContent, version=st.integers(1, 500), downloaded_bytes=st.integers(0, 10**8),
    fingerprint=st.one_of(st.none(), _text), problem=st.one_of(st.none(), _text)))
# Every action's details, each with every field it can carry.
_details: dict[type[model.Details], st.SearchStrategy[Any]] = {
    model.PublishDetails: st.builds(
        model.PublishDetails, expected_version=st.one_of(st.none(), st.integers(1, 500)),
        code=_code, diff=st.lists(_field_change, max_size=3,
                                  unique_by=lambda change: change.field).map(
            lambda changes: tuple(sorted(changes,
                                         key=lambda c: planfile._field_order(c.field)))),
        align=_align, download=_download),
    model.RecordDetails: st.builds(model.RecordDetails, record=st.one_of(st.none(), _lock_entry),
                                   download=_download, align=_align),
    model.GrantDetails: st.builds(model.GrantDetails, add=_grants,
                                  remove=st.lists(_text, max_size=2).map(tuple),
                                  download=_download, align=_align),
    model.DeleteDetails: st.builds(model.DeleteDetails, version=st.integers(1, 500)),
    model.ForgetDetails: st.builds(model.ForgetDetails, version=st.integers(1, 500)),
    model.FunctionDetails: st.builds(
        model.FunctionDetails, function_arn=_text,
        before=st.lists(_text, max_size=5).map(tuple),
        after=st.lists(_text, min_size=1, max_size=5).map(tuple),
        revision_id=st.one_of(st.none(), _text)),
    model.ParameterDetails: st.builds(
        model.ParameterDetails, before=st.one_of(st.none(), _text), after=_text,
        version=st.one_of(st.none(), st.integers(1, 500))),
}
_regions = st.sampled_from(["us-east-1", "eu-west-1"])
# The address of each action: a consumer change names its function or parameter.
_addresses: dict[model.Action, st.SearchStrategy[model.Address]] = {
    model.Action.UPDATE_FUNCTION: st.builds(model.Address, kind=st.just(
        model.ChangeKind.FUNCTION), layer=_text, region=_regions, function=_text),
    model.Action.PUT_PARAMETER: st.builds(model.Address, kind=st.just(
        model.ChangeKind.PARAMETER), layer=_text, region=_regions, parameter=_text),
}
_change = st.sampled_from(list(model.Action)).flatmap(lambda action: st.builds(
    model.Change,
    address=_addresses.get(action, st.builds(model.Address.of_layer, _text, _regions)),
    layer_name=_text, action=st.just(action),
    reasons=st.lists(st.sampled_from(list(model.Reason)), max_size=3, unique=True).map(tuple),
    current=st.one_of(st.none(), _remote), desired=_desired,
    details=_details[model.DETAILS[action]], notes=st.lists(_text, max_size=2).map(tuple)))
_basis = st.builds(
    model.PlanBasis, plan_id=_text, created=_text,
    manifest_sha256=st.just("0" * 64), state_location=_text, state_revision=_text,
    fingerprints=st.dictionaries(_text, _text, max_size=3).map(
        lambda found: tuple(sorted(found.items()))),
    targets=st.lists(_text, max_size=2).map(tuple), regions=st.lists(_text, max_size=2).map(
        tuple), tool_version=_text, packaging_format=st.integers(1, 3),
    manifest=st.one_of(st.just(""), _text), download=st.booleans())
_plans = st.builds(model.Plan, changes=st.lists(_change, max_size=4).map(tuple),
                   errors=st.lists(st.builds(model.LayerError, layer=_text, message=_text,
                                             hint=st.one_of(st.none(), _text)),
                                   max_size=2).map(tuple),
                   basis=st.one_of(st.none(), _basis),
                   warnings=st.lists(_text, max_size=2).map(tuple))


@settings(max_examples=300, deadline=None)
@given(_plans)
def test_every_plan_round_trips_through_the_document(plan: model.Plan) -> None:
    """from_document(to_document(plan)) == plan, through real JSON text, and the document is
    valid against the plan schema."""
    document = json.loads(json.dumps(planfile.to_document(plan), sort_keys=True))
    assert planfile.from_document(document) == plan
    validate(document)


def basis(**overrides: Any) -> model.PlanBasis:
    """A basis, with some fields replaced."""
    values: dict[str, Any] = {
        "plan_id": "p", "created": "2026-12-02T00:00:00Z", "manifest_sha256": "a" * 64,
        "state_location": "lockfile:layers.lock.json", "state_revision": "r1",
        "fingerprints": (("alpha", "f" * 64),), "targets": (), "regions": (),
        "tool_version": "0.1.0", "packaging_format": 1,
    }
    values.update(overrides)
    return model.PlanBasis(**values)


CHANGE = model.Change(
    address=model.Address.of_layer("alpha", "us-east-1"), layer_name="alpha",
    action=model.Action.PUBLISH, reasons=(model.Reason.CONTENT_CHANGED,),
    details=model.PublishDetails(),
    current=model.RemoteVersion(version=5, layer_version_arn="arn:5", settings=S1),
    desired=model.Desired(settings=S1, fingerprint="f" * 64, code_sha256=CODE,
                          content_sha256="c", code_size=1))
SAVED = model.Plan(changes=(CHANGE,), basis=basis())


def _with(change: model.Change, **fields: Any) -> model.Plan:
    return model.Plan(changes=(replace(change, **fields),), basis=basis(plan_id="fresh"))


@pytest.mark.parametrize(("fresh", "expected"), [
    (model.Plan(changes=(CHANGE,), basis=basis(plan_id="other", created="later")), []),
    (_with(CHANGE, notes=("other words",), reasons=(model.Reason.REMOTE_DRIFT,)), []),
    (_with(CHANGE, desired=replace(CHANGE.desired, code_sha256="B" * 43 + "=")),
     ["the plan would publish layer alpha in us-east-1 with other values than deciding "
      "again now: code_sha256 AAAAAAAAAAAAAAAAAAAA… -> BBBBBBBBBBBBBBBBBBBB…"]),
    (_with(CHANGE, current=model.RemoteVersion(version=7, layer_version_arn="arn:5",
                                               settings=S1)),
     ["the plan would publish layer alpha in us-east-1 with other values than deciding "
      "again now: current version 5 -> 7"]),
    (_with(CHANGE, action=model.Action.NOOP, details=model.RecordDetails()),
     ["the plan would publish layer alpha in us-east-1; deciding again now does not (now: "
      "noop (its latest is v5))"]),
    (model.Plan(changes=(CHANGE, replace(CHANGE, action=model.Action.DELETE,
                                         details=model.DeleteDetails(version=2),
                                         reasons=(model.Reason.RETENTION,))), basis=basis()),
     ["deciding again now would also delete v2 of layer alpha in us-east-1, which the plan "
      "does not"]),
    (_with(CHANGE, details=model.PublishDetails(code=model.CodeLocation(
        route=model.UploadRoute.S3_SOURCE, s3=model.S3Object(bucket="b", key="k")))),
     ["the plan would publish layer alpha in us-east-1 with other values than deciding again "
      "now: upload bucket none -> b; upload key none -> k; upload route none -> s3_source"]),
    (model.Plan(changes=(), errors=(model.LayerError(layer="alpha", message="gone"),)),
     ["layer alpha cannot be planned now: gone", "the plan would publish layer alpha"]),
], ids=["new-id", "words", "content", "latest", "now-noop", "extra-delete", "route", "error"])
def test_each_difference_from_the_fresh_decision_is_named(fresh: model.Plan,
                                                          expected: list[str]) -> None:
    """savedplan.differences names each way the fresh decision differs from the saved plan's
    changes; notes, reasons of a publish and the plan's id are not differences."""
    found = savedplan.differences(SAVED, fresh)
    assert len(found) == len(expected), found
    for line, start in zip(found, expected, strict=True):
        assert line.startswith(start), line


def test_a_noop_without_a_record_is_not_a_change() -> None:
    """A layer the plan leaves alone may have moved since (another apply): no difference."""
    noop = replace(CHANGE, address=model.Address.of_layer("beta", "us-east-1"),
                   action=model.Action.NOOP, details=model.RecordDetails())
    saved = model.Plan(changes=(CHANGE, noop), basis=basis())
    moved = replace(noop, current=model.RemoteVersion(version=9, layer_version_arn="arn:9",
                                                      settings=S1))
    assert savedplan.differences(saved, model.Plan(changes=(CHANGE, moved))) == []


def test_a_change_listed_twice_is_named() -> None:
    """A publish listed twice in the file is refused even though the fresh plan has it."""
    saved = model.Plan(changes=(CHANGE, CHANGE), basis=basis())
    assert savedplan.differences(saved, SAVED) == [
        "the plan lists publish layer alpha in us-east-1 2 times"]


@pytest.mark.parametrize(("now", "expected"), [
    (basis(), []),
    (basis(manifest_sha256="b" * 64, state_revision="r2", fingerprints=()), []),
    (basis(tool_version="0.2.0"), ["the plan was made by reconcile 0.1.0"]),
    (basis(packaging_format=2), ["the plan was made with packaging format 1"]),
    (basis(state_location="s3://b/x"), ["the plan recorded its state in lockfile:"]),
], ids=["same", "other-manifest-and-state", "tool", "format", "state-location"])
def test_the_basis_must_name_the_same_tool_and_state(now: model.PlanBasis,
                                                     expected: list[str]) -> None:
    """Only the tool, its packaging format and the state's location must agree; another
    manifest digest or state revision is judged by the fresh decision instead."""
    found = savedplan.basis_differences(SAVED.basis, now=now)
    assert [line[:len(start)] for line, start in zip(found, expected, strict=True)] == expected
    assert len(found) == len(expected)


@settings(max_examples=150, deadline=None)
@given(_plans)
def test_a_plan_decided_again_the_same_has_no_difference(plan: model.Plan) -> None:
    """Every plan compared with itself read back from its document differs in nothing but
    its changes listed twice (which the comparison names)."""
    document = json.loads(json.dumps(planfile.to_document(plan)))
    again = planfile.from_document(savedplan.read_document(
        json.dumps(document).encode(), file="plan.json"))
    found = savedplan.differences(plan, replace(again, errors=()))
    assert all(line.startswith("the plan lists ") for line in found), found


@pytest.mark.parametrize(("data", "message"), [
    (b"\xff\xfe", "not UTF-8"),
    (b"{not json", "plan.json:1:2: not a plan file (not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nested"),
    (b'{"format_version": 1, "changes": [], "warnings": ' + b"[" * 40 + b"]" * 40 + b"}",
     "nested more than 32 levels"),
    (b'{"format_version": 1, "changes": [{"layer": 1}], "summary": {}}',
     "plan.json: not a valid plan file:\n  changes[0]"),
    (b'{"format_version": 3, "changes": []}', "format_version 3 is not supported"),
    (b'{"format_version": 1, "changes": [], "warnings": ["\\u001b]8;;evil\\u0007x"]}',
     "plan.json: not a plan file (warnings[0] holds a control character)"),
], ids=["utf8", "json", "deep-json", "deep-document", "schema", "version", "control"])
def test_a_plan_file_is_read_within_limits_and_checked(data: bytes, message: str) -> None:
    """read_document refuses, with one PlanFileError naming the file, bytes that are not a
    plan document, too deep, or against the schema; never a RecursionError."""
    with pytest.raises(errors.PlanFileError) as refused:
        savedplan.read_document(data, file="plan.json")
    assert message in refused.value.message


@pytest.mark.parametrize("document", [
    [], {"format_version": 1}, {"format_version": 2, "changes": []},
    {"format_version": 1, "changes": [{"layer": "a"}]},
    {"format_version": 1, "changes": [{"layer": "a", "region": "r", "action": "explode",
                                       "reasons": [], "desired": {}}]},
], ids=["list", "no-changes", "version", "partial-change", "unknown-action"])
def test_what_is_not_a_plan_is_refused(document: Any) -> None:
    """A document that is not a plan of this format is one PlanFileError, never a crash."""
    with pytest.raises(planfile.PlanFileError):
        planfile.from_document(document)


_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 10**6), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `value` (the root included)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_paths(item, (*prefix, index)))
    return found


_REAL = planfile.to_document(model.Plan(
    changes=(replace(CHANGE, details=model.PublishDetails(
        code=model.CodeLocation(route=model.UploadRoute.DIRECT))),
             replace(CHANGE, address=model.Address.of_layer("beta", "us-east-1"),
                     action=model.Action.NOOP, details=model.RecordDetails(
                         record=model.LockEntry(
                             fingerprint="f", content_sha256="c", code_sha256=CODE,
                             code_size=1, version=5, layer_version_arn="arn:5",
                             settings_sha256="s")))),
    basis=basis()))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_mutated_plan_file_is_a_plan_or_one_plan_file_error(data: st.DataObject) -> None:
    """Any subtree of a real plan document replaced by any JSON value reads as a plan or
    fails with one PlanFileError: never a KeyError, TypeError or RecursionError."""
    document = json.loads(json.dumps(_REAL))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(document)))
        value = data.draw(_json_values)
        if not path:
            document = value
            continue
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = value
    try:
        plan = planfile.from_document(savedplan.read_document(
            json.dumps(document).encode(), file="plan.json"))
    except errors.PlanFileError as refused:
        assert refused.message.startswith("plan.json: ") or "plan file" in refused.message
    else:
        assert isinstance(plan, model.Plan)


def test_stray_filler_deletes_are_housekeeping_not_a_difference() -> None:
    """A stray-filler delete only the fresh decision makes, or only the saved plan lists, is
    no difference (apply deletes confirmed fillers whoever planned); a retention delete is."""
    stray = replace(CHANGE, action=model.Action.DELETE, details=model.DeleteDetails(version=9),
                    reasons=(model.Reason.STRAY_FILLER,))
    with_stray = model.Plan(changes=(CHANGE, stray), basis=basis())
    assert savedplan.differences(SAVED, with_stray) == []
    assert savedplan.differences(with_stray, SAVED) == []
    retention = replace(stray, reasons=(model.Reason.RETENTION,))
    assert savedplan.differences(SAVED, model.Plan(changes=(CHANGE, retention))) == [
        "deciding again now would also delete v9 of layer alpha in us-east-1, which the plan "
        "does not"]


def test_a_grant_compares_what_apply_then_records() -> None:
    """A grant change whose recorded entry would differ (another fingerprint or settings
    digest) is a difference, though its statements are the same."""
    grant = replace(CHANGE, action=model.Action.GRANT, reasons=(model.Reason.GRANTS_CHANGED,),
                    details=model.GrantDetails(
                        add=(model.Grant(kind="account", principal="111122223333"),)))
    saved = model.Plan(changes=(grant,), basis=basis())
    other = replace(grant, desired=replace(grant.desired, fingerprint="e" * 64))
    found = savedplan.differences(saved, model.Plan(changes=(other,)))
    assert len(found) == 1 and "fingerprint ffffffffffffffffffff… -> eeeeeeeeeeeeeeeeeeee…" \
        in found[0]
    assert savedplan.differences(saved, model.Plan(changes=(grant,))) == []


@pytest.mark.parametrize(("index", "key", "value"), [
    (0, "version", 3),
    (0, "record_entry", {"fingerprint": "f", "content_sha256": "c", "code_sha256": CODE,
                         "code_size": 1, "version": 5, "layer_version_arn": "arn:5",
                         "settings_sha256": "s"}),
    (1, "version", 5),
], ids=["version-on-a-publish", "record-on-a-publish", "version-on-a-noop"])
def test_a_key_its_action_cannot_carry_is_refused(index: int, key: str, value: Any) -> None:
    """A version number or a recorded entry on a change whose action carries none (no
    reconcile writes one) is refused by name, not dropped: the saved plan is compared on
    both."""
    document = json.loads(json.dumps(_REAL))
    document["changes"][index][key] = value
    with pytest.raises(errors.PlanFileError, match=f"changes\\[{index}\\].{key}` does not "
                                                   "belong to a"):
        planfile.from_document(document)


def test_a_change_carries_the_details_of_its_action() -> None:
    """A change whose details are not its action's type cannot be made."""
    with pytest.raises(TypeError, match="a delete change has PublishDetails"):
        replace(CHANGE, action=model.Action.DELETE)
    assert replace(CHANGE, action=model.Action.CREATE).action is model.Action.CREATE
