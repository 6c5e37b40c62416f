"""The codecs of a built layer's record: the state entry's inputs digest and package list
(written only for built layers, read back checked), and the plan document's desired.build
(round-tripped, schema-valid), and the text the plan shows of a build."""

from __future__ import annotations

import json

import pytest
from clirun import valid_plan

from reconciler import errors, model, planfile, render, statefile

BUILD = model.BuildInfo(target="python3.12 arm64 (Amazon Linux 2023, glibc 2.34)",
                        inputs_sha256="a" * 64, packages=(("alpha", "1.1"), ("beta", "1.0")),
                        left_out=(("boto3", "exclude_packages"),),
                        sizes=(("alpha", 2048), ("beta", 10)),
                        recorded=(("alpha", "1.0"), ("six", "1.16")))
ENTRY = model.LockEntry(fingerprint="a" * 64, content_sha256="b" * 64,
                        code_sha256="B" * 43 + "=", code_size=10, version=2,
                        layer_version_arn="arn", settings_sha256="d",
                        inputs_sha256="a" * 64, packages=(("alpha", "1.0"),))


def test_a_built_entry_round_trips_and_a_folder_entry_keeps_its_bytes() -> None:
    """inputs_sha256 and packages are written for a built layer's entry and read back; an
    entry of another kind is written without them."""
    plain = model.LockEntry(fingerprint="f", content_sha256="b", code_sha256="c=", code_size=1,
                            version=1, layer_version_arn="arn", settings_sha256="d")
    lock = model.Lock(entries={("built", "us-east-1"): ENTRY, ("folder", "us-east-1"): plain})
    text = statefile.encode(lock)
    assert statefile.decode(text, file="x").entries == lock.entries
    assert "inputs_sha256" not in json.dumps(json.loads(text)["layers"]["folder"])


@pytest.mark.parametrize("packages", ["alpha", [["alpha"]], [[1, "2"]]])
def test_a_malformed_package_list_is_a_lockfile_error(packages: object) -> None:
    """A recorded package list that is not [name, version] pairs is refused by name."""
    document = json.loads(statefile.encode(model.Lock(entries={("built", "r"): ENTRY})))
    document["layers"]["built"]["r"]["packages"] = packages
    with pytest.raises(errors.LockfileError, match="packages"):
        statefile.decode(json.dumps(document), file="x")


def _change() -> model.Change:
    desired = model.Desired(settings=model.Settings(compatible_runtimes=("python3.12",)),
                            fingerprint="a" * 64, code_sha256="A" * 43 + "=",
                            content_sha256="0" * 64,
                            code_size=1, source=model.SourceKind.LOCK, build=BUILD)
    return model.Change(address=model.Address.of_layer("deps", "us-east-1"),
                        layer_name="deps", action=model.Action.PUBLISH,
                        reasons=(model.Reason.CONTENT_CHANGED,), current=None,
                        desired=desired, details=model.PublishDetails(expected_version=2))


def test_desired_build_round_trips_through_the_plan_document() -> None:
    """desired.build and a record entry's packages survive to_document/from_document, and
    the document is valid against the shipped plan schema."""
    plan = model.Plan(changes=(_change(), model.Change(
        address=model.Address.of_layer("other", "us-east-1"), layer_name="other",
        action=model.Action.NOOP, reasons=(), current=None, desired=_change().desired,
        details=model.RecordDetails(record=ENTRY))))
    document = planfile.to_document(plan)
    valid_plan(json.loads(json.dumps(document)))
    assert planfile.from_document(document) == plan


def test_the_plan_text_shows_the_build() -> None:
    """The text shows the target, `alpha 1.0 -> 1.1`, added and removed packages, the
    largest unzipped and what is left out."""
    shown = render.text(model.Plan(changes=(_change(),)))
    assert "build: python3.12 arm64 (Amazon Linux 2023, glibc 2.34), 2 packages" in shown
    assert "packages: + beta 1.0, - six 1.16, alpha 1.0 -> 1.1" in shown
    assert "largest unzipped: alpha 2.0 KB, beta 10 bytes" in shown
    assert "left out: boto3 (exclude_packages)" in shown
