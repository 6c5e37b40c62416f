"""The plan document: every plan shape round-trips through planfile, every document is valid
against the shipped plan schema, and each kind of staleness is named."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import model, planfile

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
_change = st.builds(
    model.LayerChange, layer=_text, layer_name=_text, region=st.sampled_from(
        ["us-east-1", "eu-west-1"]), action=st.sampled_from(list(model.Action)),
    reasons=st.lists(st.sampled_from(list(model.Reason)), max_size=3, unique=True).map(tuple),
    current=st.one_of(st.none(), _remote), desired=_desired,
    diff=st.lists(_field_change, max_size=3, unique_by=lambda change: change.field).map(
        lambda changes: tuple(sorted(changes, key=lambda c: planfile._field_order(c.field)))),
    notes=st.lists(_text, max_size=2).map(tuple), record=st.one_of(st.none(), _lock_entry),
    expected_version=st.one_of(st.none(), st.integers(1, 500)),
    version=st.one_of(st.none(), st.integers(1, 500)),
    grants_add=st.lists(st.builds(model.Grant, kind=st.sampled_from(
        ["account", "organization", "public"]), principal=_text), max_size=2).map(tuple),
    grants_remove=st.lists(_text, max_size=2).map(tuple),
    align_target=st.one_of(st.none(), st.integers(1, 500)),
    fillers=st.integers(0, 100), shortfall=st.integers(0, 300), code=_code,
    download=st.one_of(st.none(), st.builds(
        model.RemoteContent, version=st.integers(1, 500),
        downloaded_bytes=st.integers(0, 10**8),
        fingerprint=st.one_of(st.none(), _text), problem=st.one_of(st.none(), _text))))
_basis = st.builds(
    model.PlanBasis, plan_id=_text, created=_text,
    manifest_sha256=st.just("0" * 64), state_location=_text, state_revision=_text,
    fingerprints=st.dictionaries(_text, _text, max_size=3).map(
        lambda found: tuple(sorted(found.items()))),
    targets=st.lists(_text, max_size=2).map(tuple), regions=st.lists(_text, max_size=2).map(
        tuple), tool_version=_text, packaging_format=st.integers(1, 3))
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


CHANGE = model.LayerChange(
    layer="alpha", layer_name="alpha", region="us-east-1", action=model.Action.PUBLISH,
    reasons=(model.Reason.CONTENT_CHANGED,),
    current=model.RemoteVersion(version=5, layer_version_arn="arn:5", settings=S1),
    desired=model.Desired(settings=S1, fingerprint="f" * 64, code_sha256=CODE,
                          content_sha256="c", code_size=1))
SAVED = model.Plan(changes=(CHANGE,), basis=basis())


@pytest.mark.parametrize(("now", "remote", "expected"), [
    (basis(), {("alpha", "us-east-1"): 5}, []),
    (basis(plan_id="other", created="later"), {("alpha", "us-east-1"): 5}, []),
    (basis(manifest_sha256="b" * 64), {}, ["the manifest changed since the plan"]),
    (basis(fingerprints=(("alpha", "e" * 64),)), {},
     ["layer alpha's content changed (fingerprint ffffffffffff… -> eeeeeeeeeeee…)"]),
    (basis(state_revision="r2"), {}, ["the recorded state (lockfile:layers.lock.json) "
                                      "changed since the plan"]),
    (basis(), {("alpha", "us-east-1"): 7},
     ["layer alpha's remote latest in us-east-1 is now v7 (the plan saw v5)"]),
    (basis(), {("alpha", "us-east-1"): None},
     ["layer alpha's remote latest in us-east-1 is now no version (the plan saw v5)"]),
    (basis(tool_version="0.2.0"), {}, ["the plan was made by reconcile 0.1.0"]),
    (basis(packaging_format=2), {}, ["the plan was made with packaging format 1"]),
    (basis(targets=("alpha",)), {}, ["the plan selected targets all"]),
], ids=["fresh", "new-id", "manifest", "content", "state", "published", "deleted", "tool",
        "format", "selection"])
def test_each_kind_of_staleness_is_named(now: model.PlanBasis,
                                         remote: dict[tuple[str, str], int | None],
                                         expected: list[str]) -> None:
    """stale_reasons names each difference from the world the plan was made against."""
    reasons = planfile.stale_reasons(SAVED, now=now, remote_latest=remote)
    assert len(reasons) == len(expected)
    for reason, start in zip(reasons, expected, strict=True):
        assert reason.startswith(start), reason


def test_several_differences_are_all_named() -> None:
    """Every difference is listed, not only the first."""
    now = basis(manifest_sha256="b" * 64, state_revision="r9")
    reasons = planfile.stale_reasons(SAVED, now=now, remote_latest={("alpha", "us-east-1"): 6})
    assert len(reasons) == 3


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
