"""The three views of a plan: Terraform-like text, the contract's JSON document, Markdown."""

from __future__ import annotations

import json

from reconciler import model, planfile, render

S = model.Settings.normalised(description="d", compatible_runtimes=["python3.12"],
                              compatible_architectures=None, license_info=None)
DESIRED = model.Desired(settings=S, fingerprint="fp", code_sha256="NEWCODE" * 6 + "A=",
                        content_sha256="hex", code_size=99)
CURRENT = model.RemoteVersion(version=3, layer_version_arn="arn:aws:lambda:r:1:layer:b:3",
                              settings=S, code_sha256="OLDCODE" * 6 + "A=", code_size=90)
PLAN = model.Plan(changes=(
    model.Change(address=model.Address.of_layer("a", "us-east-1"), layer_name="a",
                 action=model.Action.CREATE, reasons=(model.Reason.NEW_LAYER,), current=None,
                 desired=DESIRED, details=model.PublishDetails(expected_version=1)),
    model.Change(address=model.Address.of_layer("b", "us-east-1"), layer_name="b",
                 action=model.Action.PUBLISH,
                 reasons=(model.Reason.CONTENT_CHANGED, model.Reason.SETTINGS_CHANGED),
                 current=CURRENT, desired=DESIRED, details=model.PublishDetails(
                     expected_version=4,
                     diff=(model.FieldChange("code_sha256", CURRENT.code_sha256,
                                             DESIRED.code_sha256),
                           model.FieldChange("compatible_runtimes", ["python3.12"],
                                             ["python3.12", "python3.13"],
                                             added=("python3.13",))))),
    model.Change(address=model.Address.of_layer("c", "us-east-1"), layer_name="c",
                 action=model.Action.NOOP, reasons=(), current=CURRENT, desired=DESIRED,
                 details=model.RecordDetails()),
))


def test_text_has_one_line_per_layer_and_the_summary() -> None:
    """Symbols, versions, reasons, field diffs and the closing Plan line."""
    text = render.text(PLAN)
    assert "  + a  us-east-1  create v1" in text
    assert "  ~ b  us-east-1  publish v4, replacing v3" in text
    assert "  = c  us-east-1  unchanged at v3" in text
    assert "reasons: content_changed, settings_changed" in text
    assert "code_sha256: OLDCODEOLDCO… -> NEWCODENEWCO…" in text
    assert "compatible_runtimes: + python3.13" in text
    assert text.rstrip().endswith("Plan: 1 to create, 1 to publish, 1 unchanged.")
    assert "\033[" not in text


def test_color_only_when_asked() -> None:
    """ANSI colour codes appear only with color=True."""
    assert "\033[32m+" in render.text(PLAN, color=True)


def test_no_changes_says_so() -> None:
    """A plan of noops says that nothing changes."""
    quiet = model.Plan(changes=(PLAN.changes[2],))
    assert "No changes." in render.text(quiet)


def test_json_document_follows_the_contract() -> None:
    """format_version, changes with the contract's keys, and the summary."""
    document = json.loads(json.dumps(planfile.to_document(PLAN)))
    assert document["format_version"] == 1
    assert document["summary"] == {"create": 1, "publish": 1, "noop": 1, "delete": 0,
                                   "grant": 0, "forget": 0, "update_function": 0,
                                   "put_parameter": 0, "record": 0}
    create, publish, _ = document["changes"]
    assert create["current"] is None
    assert create["desired"]["code_sha256"] == DESIRED.code_sha256
    assert create["desired"]["code_size"] == 99
    assert create["desired"]["compatible_runtimes"] == ["python3.12"]
    assert {key: publish["current"][key] for key in (
        "version", "layer_version_arn", "code_sha256")} == {
        "version": 3, "layer_version_arn": CURRENT.layer_version_arn,
        "code_sha256": CURRENT.code_sha256}
    assert publish["reasons"] == ["content_changed", "settings_changed"]
    assert publish["diff"]["code_sha256"] == {"from": CURRENT.code_sha256,
                                              "to": DESIRED.code_sha256}
    assert publish["diff"]["compatible_runtimes"]["to"] == ["python3.12", "python3.13"]
    assert publish["diff"]["compatible_runtimes"]["added"] == ["python3.13"]


def test_markdown_is_a_table() -> None:
    """Markdown has a header row and one row per change."""
    text = render.markdown(PLAN)
    assert "| | Layer | Region | Action | Reasons |" in text
    assert "| ~ | `b` | us-east-1 | publish v4, replacing v3 |" in text


def test_sizes_read_as_bytes_kb_or_mb() -> None:
    """A few hundred bytes read as bytes, not `0.0 MB`; larger sizes as KB or MB."""
    assert render.byte_size(294) == "294 bytes"
    assert render.byte_size(5 * 1024) == "5.0 KB"
    assert render.byte_size(37 * 1024 * 1024) == "37.0 MB"


def test_a_layer_with_several_errors_counts_once() -> None:
    """A layer with errors in two places (two consumers, or two regions) is one layer that
    could not be planned, in the text's closing line and its summary."""
    errors = tuple(model.LayerError(layer="a", message=message, hint="")
                   for message in ("consumer one", "consumer two"))
    plan = model.Plan(changes=(PLAN.changes[2],),
                      errors=(*errors, model.LayerError(layer="b", message="x", hint="")))
    assert render.error_layers(plan) == ["a", "b"]
    text = render.text(plan)
    assert "2 layer(s) could not be planned; apply refuses to start" in text
    assert "; 2 in error." in text
