"""Saved plans end to end, through the installed CLI against a moto server: `plan --out` in
one checkout, `apply PLANFILE` in another (another folder, other mtimes, no `.reconcile/`)
uploads exactly the planned CodeSha256; apply decides again and refuses a plan whose changes
are no longer what it would do, naming each difference, with nothing published; a plan file
is applied once; `show` renders it (tests/test_saved_plan_verified.py: crafted plan files)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import boto3
import pytest
from clirun import invoke, valid_plan, versions

MANIFEST = """\
version: 1
region: us-east-1
layers:
  alpha:
    description: Alpha helpers
    content: {path: src/alpha, prefix: python}
  beta:
    content: {path: src/beta}
"""


@pytest.fixture
def checkout(tmp_path: Path, moto_url: str) -> Path:
    """A checkout with two folder layers, next to a running moto server."""
    root = tmp_path / "pr-job"
    for name in ("alpha", "beta"):
        (root / "src" / name).mkdir(parents=True)
        (root / "src" / name / f"{name}.py").write_text(f"NAME = {name!r}\n")
    (root / "layers.yaml").write_text(MANIFEST)
    return root


def copy_checkout(source: Path, target: Path) -> Path:
    """The same commit checked out elsewhere: other folder, other mtimes, no .reconcile/."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".reconcile", "*.json"))
    for folder, _, files in os.walk(target):
        for name in files:
            os.utime(Path(folder) / name, (1_000_000_000, 1_000_000_000))
    return target


def saved_plan(checkout: Path, plan_file: Path) -> dict[str, Any]:
    """`plan --out` in `checkout`; the saved document, schema-checked."""
    result = invoke(checkout, "plan", "--out", str(plan_file))
    assert result.returncode == 0, result.stderr
    assert f"reconcile apply {plan_file}" in result.stdout
    return valid_plan(json.loads(plan_file.read_text()))


def test_saved_plan_applies_on_another_checkout(checkout: Path, tmp_path: Path) -> None:
    """The merge job's fresh checkout applies the PR job's plan: the uploaded CodeSha256 are
    exactly the planned ones, without a question, and the state is written there."""
    plan_file = tmp_path / "plan.json"
    document = saved_plan(checkout, plan_file)
    planned = {change["layer"]: change["desired"]["code_sha256"]
               for change in document["changes"]}
    merge_job = copy_checkout(checkout, tmp_path / "merge-job")
    applied = invoke(merge_job, "apply", str(plan_file))
    assert applied.returncode == 0, applied.stderr
    client = boto3.client("lambda")
    for layer, code_sha256 in planned.items():
        published = client.get_layer_version(LayerName=layer, VersionNumber=1)
        assert published["Content"]["CodeSha256"] == code_sha256
    assert (merge_job / "layers.lock.json").exists()
    clean = invoke(merge_job, "plan", "--detailed-exitcode")
    assert clean.returncode == 0, clean.stdout + clean.stderr


def test_a_plan_file_is_applied_once(checkout: Path, tmp_path: Path) -> None:
    """Applying the same plan file twice is refused the second time; nothing more is
    published."""
    plan_file = tmp_path / "plan.json"
    saved_plan(checkout, plan_file)
    assert invoke(checkout, "apply", str(plan_file)).returncode == 0
    again = invoke(checkout, "apply", str(plan_file))
    assert again.returncode == 1
    assert "applied already" in again.stderr
    assert versions("alpha") == [1]


def test_a_copy_of_an_applied_plan_is_stale(checkout: Path, tmp_path: Path) -> None:
    """A copy of a plan file that was applied elsewhere is refused too: deciding again, the
    layers it creates exist already."""
    plan_file = tmp_path / "plan.json"
    saved_plan(checkout, plan_file)
    copy = tmp_path / "copy.json"
    shutil.copy(plan_file, copy)
    assert invoke(checkout, "apply", str(plan_file)).returncode == 0
    again = invoke(checkout, "apply", str(copy))
    assert again.returncode == 1
    assert ("the plan would create layer alpha in us-east-1; deciding again now does not "
            "(now: noop (its latest is v1))") in again.stderr
    assert versions("alpha") == [1]


def test_changed_manifest_and_content_are_named(checkout: Path, tmp_path: Path) -> None:
    """An edited setting and an edited file are both named with their values; nothing is
    published."""
    plan_file = tmp_path / "plan.json"
    saved_plan(checkout, plan_file)
    (checkout / "layers.yaml").write_text(MANIFEST.replace("Alpha helpers", "Alpha tools"))
    (checkout / "src" / "beta" / "beta.py").write_text("NAME = 'edited'\n")
    refused = invoke(checkout, "apply", str(plan_file))
    assert refused.returncode == 1
    assert "the saved plan is stale" in refused.stderr
    assert ("the plan would create layer alpha in us-east-1 with other values than deciding "
            "again now: description Alpha helpers -> Alpha tools") in refused.stderr
    assert "the plan would create layer beta in us-east-1 with other values" in refused.stderr
    assert "code_sha256 " in refused.stderr and "fingerprint " in refused.stderr
    assert versions("alpha") == [] and versions("beta") == []
    assert not (checkout / "layers.lock.json").exists()


def test_out_of_band_publish_makes_the_plan_stale(checkout: Path, tmp_path: Path) -> None:
    """A version published since the plan is named, and nothing is published."""
    plan_file = tmp_path / "plan.json"
    saved_plan(checkout, plan_file)
    boto3.client("lambda").publish_layer_version(LayerName="beta",
                                                 Content={"ZipFile": b"PK\x05\x06" + b"\0" * 18})
    refused = invoke(checkout, "apply", str(plan_file))
    assert refused.returncode == 1
    assert ("the plan would create layer beta in us-east-1; deciding again now does not (now: "
            "publish (its latest is v1))") in refused.stderr
    assert "deciding again now would also publish layer beta in us-east-1" in refused.stderr
    assert versions("beta") == [1] and versions("alpha") == []


def test_other_selection_is_stale(checkout: Path, tmp_path: Path) -> None:
    """Applying a plan with another --target than it was made with is refused: the plan
    carries its own selection."""
    plan_file = tmp_path / "plan.json"
    saved_plan(checkout, plan_file)
    refused = invoke(checkout, "apply", str(plan_file), "--target", "alpha")
    assert refused.returncode == 1
    assert "the plan selected targets all; this apply selects ['alpha']" in refused.stderr
    assert versions("alpha") == []


def test_show_renders_a_saved_plan(checkout: Path, tmp_path: Path) -> None:
    """show prints the saved plan as text, JSON (schema-valid) and Markdown, with no AWS."""
    plan_file = tmp_path / "plan.json"
    saved_plan(checkout, plan_file)
    offline = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    text = invoke(tmp_path, "show", str(plan_file), env=offline)
    assert text.returncode == 0 and "Plan: 2 to create" in text.stdout
    as_json = invoke(tmp_path, "show", str(plan_file), "--format", "json", env=offline)
    assert valid_plan(json.loads(as_json.stdout))["summary"]["create"] == 2
    markdown = invoke(tmp_path, "show", str(plan_file), "--format", "markdown", env=offline)
    assert markdown.stdout.startswith("### reconcile plan")


def test_not_a_plan_file_is_a_clear_error(checkout: Path, tmp_path: Path) -> None:
    """A file that is not a plan gives one message naming it, exit 1, nothing published."""
    bogus = tmp_path / "bogus.json"
    bogus.write_text("{not json")
    result = invoke(checkout, "apply", str(bogus))
    assert result.returncode == 1 and "bogus.json:1:2: not a plan file" in result.stderr
    assert versions("alpha") == []


def test_a_plan_file_inside_a_layer_folder_is_refused_unless_excluded(checkout: Path) -> None:
    """`plan --out` into a folder layer's content is refused before anything is done (it would
    be packaged, and the saved plan then always stale); an excluded path is accepted."""
    refused = invoke(checkout, "plan", "--out", "src/beta/plan.json")
    assert refused.returncode == 1
    assert "layers.beta's content" in refused.stderr and "Traceback" not in refused.stderr
    assert not (checkout / "src" / "beta" / "plan.json").exists()
    assert versions("beta") == []
    (checkout / "layers.yaml").write_text(MANIFEST.replace(
        "content: {path: src/beta}", "content: {path: src/beta, exclude: ['*.plan']}"))
    accepted = invoke(checkout, "plan", "--out", "src/beta/saved.plan")
    assert accepted.returncode == 0, accepted.stderr
    assert invoke(checkout, "apply", "src/beta/saved.plan").returncode == 0
    assert versions("beta") == [1]
