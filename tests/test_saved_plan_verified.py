"""A saved plan is an approval, not instructions: through the installed CLI against a moto
server, `apply PLANFILE` decides again with the plan's own selection and applies only when the
fresh decision makes exactly the plan's changes. Crafted plan files (each an edit a hostile
pull request could make) are refused naming the difference, with nothing published, deleted,
granted or recorded; two plans of other layers both apply, one after the other; a lock that
cannot be released still leaves the report of what was done."""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import faultproxy
import pytest
from clirun import invoke, valid_plan, versions

MANIFEST = """\
version: 1
region: us-east-1
{state}layers:
  alpha:
    description: Alpha helpers
    content: {{path: src/alpha, prefix: python}}
    retain: 5
  beta:
    content: {{path: src/beta}}
"""
Document = dict[str, Any]


def make_checkout(root: Path, *, state: str = "") -> Path:
    """A checkout with two folder layers (alpha keeps 5 versions)."""
    for name in ("alpha", "beta"):
        (root / "src" / name).mkdir(parents=True)
        (root / "src" / name / f"{name}.py").write_text(f"NAME = {name!r}\n")
    (root / "layers.yaml").write_text(MANIFEST.format(state=state))
    return root


@pytest.fixture
def checkout(tmp_path: Path, moto_url: str) -> Path:
    """A checkout next to a freshly reset moto server, local state."""
    return make_checkout(tmp_path / "repo")


def save_plan(checkout: Path, plan_file: Path, *args: str) -> Document:
    """`plan --out` in `checkout`; the saved document, schema-checked."""
    result = invoke(checkout, "plan", "--out", str(plan_file), *args)
    assert result.returncode == 0, result.stderr
    return valid_plan(json.loads(plan_file.read_text()))


def change_of(document: Document, layer: str) -> Document:
    """The first change of `layer` in a plan document."""
    found: Document = next(item for item in document["changes"] if item["layer"] == layer)
    return found


def _retention_delete(document: Document) -> None:
    """The issue's one-liner: a delete of v1, which `retain: 5` keeps."""
    extra = copy.deepcopy(change_of(document, "alpha"))
    extra.update(action="delete", reasons=["retention"], version=1)
    document["changes"].append(extra)


def _outside_zip(document: Document) -> None:
    change_of(document, "alpha")["desired"]["fingerprint"] = "../../docs/evil"


def _attacker_bucket(document: Document) -> None:
    change_of(document, "alpha")["upload"] = {
        "route": "s3_source", "s3": {"bucket": "attacker", "key": "evil.zip", "version": None}}


def _public_grant(document: Document) -> None:
    change_of(document, "alpha")["desired"]["grants"] = [["public", "*"]]


def _other_region(document: Document) -> None:
    change_of(document, "alpha")["region"] = "eu-west-1"


def _ghost_layer(document: Document) -> None:
    extra = copy.deepcopy(change_of(document, "alpha"))
    extra.update(layer="ghost", layer_name="ghost")
    document["changes"].append(extra)


def _other_name(document: Document) -> None:
    change_of(document, "alpha")["layer_name"] = "beta"


def _settings(document: Document) -> None:
    change_of(document, "alpha")["desired"]["compatible_runtimes"] = ["python3.12"]


def _twice(document: Document) -> None:
    document["changes"].append(copy.deepcopy(change_of(document, "alpha")))


def _fillers(document: Document) -> None:
    change_of(document, "alpha")["align"] = {"target": 11, "fillers": 10, "shortfall": 0}


def _version_number(document: Document) -> None:
    change_of(document, "alpha")["expected_version"] = 7


def _dropped_change(document: Document) -> None:
    document["changes"] = [item for item in document["changes"] if item["layer"] != "beta"]


def _foreign_record(document: Document) -> None:
    change = change_of(document, "beta")
    change.update(action="noop", reasons=["adopted"], record=True, record_entry={
        "fingerprint": "f" * 64, "content_sha256": "0" * 64,
        "code_sha256": "A" * 43 + "=", "code_size": 1, "version": 1,
        "layer_version_arn": "arn:aws:lambda:us-east-1:999999999999:layer:evil:1",
        "settings_sha256": "0" * 64})
    change.pop("upload", None)


def _wrong_type_grants(document: Document) -> None:
    change_of(document, "alpha")["grants"] = "ab"


def _string_diff(document: Document) -> None:
    change_of(document, "alpha")["diff"] = "everything"


DEEP = "(5,000 nested lists)"


def _deep(document: Document) -> None:
    document["warnings"] = DEEP  # written out as text: json.dumps cannot nest that deep


CRAFTED: list[tuple[str, Callable[[Document], None], str]] = [
    ("retention_delete", _retention_delete,
     "the plan would delete v1 of layer alpha in us-east-1; deciding again now does not"),
    ("outside_zip", _outside_zip, "fingerprint ../../docs/evil -> "),
    ("attacker_bucket", _attacker_bucket, "upload bucket attacker -> none"),
    ("public_grant", _public_grant, 'grants [["public", "*"]] -> []'),
    ("other_region", _other_region, "the plan would create layer alpha in eu-west-1"),
    ("ghost_layer", _ghost_layer, "the plan would create layer ghost in us-east-1"),
    ("other_name", _other_name, "layer name beta -> alpha"),
    ("settings", _settings, 'compatible_runtimes ["python3.12"] -> []'),
    ("twice", _twice, "the plan lists create layer alpha in us-east-1 2 times"),
    ("fillers", _fillers, "fillers 10 -> 0"),
    ("version_number", _version_number, "expected version 7 -> 1"),
    ("dropped_change", _dropped_change,
     "deciding again now would also create layer beta in us-east-1, which the plan does not"),
    ("foreign_record", _foreign_record, "the plan would record layer beta in us-east-1"),
    ("wrong_type_grants", _wrong_type_grants,
     "changes[0].grants: 'ab' is not of type 'object'"),
    ("string_diff", _string_diff, "changes[0].diff: 'everything' is not of type 'object'"),
    ("deep", _deep, "nested"),
]


@pytest.mark.parametrize(("edit", "refusal"), [(edit, refusal) for _, edit, refusal in CRAFTED],
                         ids=[name for name, _, _ in CRAFTED])
def test_a_crafted_plan_file_is_refused_naming_the_difference(
        checkout: Path, tmp_path: Path, edit: Callable[[Document], None], refusal: str) -> None:
    """Each edit a hostile pull request could make to a real plan is refused, naming the
    difference; nothing is published, granted or recorded, and the plan file stays
    unapplied."""
    plan_file = tmp_path / "plan.json"
    document = save_plan(checkout, plan_file)
    edit(document)
    plan_file.write_text(json.dumps(document).replace(json.dumps(DEEP),
                                                      "[" * 5000 + "]" * 5000))
    refused = invoke(checkout, "apply", str(plan_file))
    assert refused.returncode == 1, refused.stdout
    assert refusal in refused.stderr, refused.stderr
    assert versions("alpha") == [] and versions("beta") == [] and versions("ghost") == []
    assert not (checkout / "layers.lock.json").exists()
    assert "Traceback" not in refused.stderr


def test_a_delete_of_a_kept_version_is_refused(checkout: Path, tmp_path: Path) -> None:
    """The issue's reproduction: a publish planned over v1, plus a crafted delete of v1
    (which `retain: 5` keeps): refused, and v1 is still there; the honest plan then applies."""
    assert invoke(checkout, "apply", "--yes").returncode == 0
    (checkout / "src" / "alpha" / "alpha.py").write_text("NAME = 'two'\n")
    plan_file = tmp_path / "plan.json"
    document = save_plan(checkout, plan_file)
    honest = json.dumps(document)
    _retention_delete(document)
    plan_file.write_text(json.dumps(document))
    refused = invoke(checkout, "apply", str(plan_file))
    assert refused.returncode == 1
    assert "delete v1 of layer alpha in us-east-1; deciding again now does not" in refused.stderr
    assert versions("alpha") == [1]
    plan_file.write_text(honest)
    applied = invoke(checkout, "apply", str(plan_file))
    assert applied.returncode == 0, applied.stderr
    assert versions("alpha") == [1, 2]


@pytest.fixture
def state_bucket(moto_url: str) -> str:
    """An S3 bucket for shared state, so that separate checkouts share one state."""
    boto3.client("s3").create_bucket(Bucket="team-state")
    return "s3://team-state/layers"


def test_plans_of_other_layers_both_apply_one_after_the_other(
        tmp_path: Path, state_bucket: str) -> None:
    """Two pull requests planned from the same main, one editing alpha and one beta: the
    first merges and applies; the second's plan, applied on the merge commit (both edits),
    still applies, because what its own changes depend on did not move."""
    main = make_checkout(tmp_path / "main", state=f"state: {state_bucket}\n")
    assert invoke(main, "apply", "--yes").returncode == 0
    first = tmp_path / "pr-1"
    second = tmp_path / "pr-2"
    shutil.copytree(main, first, ignore=shutil.ignore_patterns(".reconcile"))
    shutil.copytree(main, second, ignore=shutil.ignore_patterns(".reconcile"))
    (first / "src" / "alpha" / "alpha.py").write_text("NAME = 'alpha 2'\n")
    (second / "src" / "beta" / "beta.py").write_text("NAME = 'beta 2'\n")
    save_plan(first, tmp_path / "first.json")
    save_plan(second, tmp_path / "second.json")
    assert invoke(first, "apply", str(tmp_path / "first.json")).returncode == 0
    merged = tmp_path / "merged"
    shutil.copytree(second, merged, ignore=shutil.ignore_patterns(".reconcile"))
    shutil.copy(first / "src" / "alpha" / "alpha.py", merged / "src" / "alpha" / "alpha.py")
    applied = invoke(merged, "apply", str(tmp_path / "second.json"))
    assert applied.returncode == 0, applied.stderr
    assert versions("alpha") == [1, 2] and versions("beta") == [1, 2]
    assert invoke(merged, "plan", "--detailed-exitcode").returncode == 0


def test_a_plan_carries_its_own_selection(tmp_path: Path, moto_url: str) -> None:
    """A plan made with -f, --target and --region is applied with none of them; given again,
    they must agree, or the apply is refused naming the difference."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    team = make_checkout(repo / "teams" / "a")
    plan_file = tmp_path / "plan.json"
    result = invoke(repo, "plan", "-f", "teams/a/layers.yaml", "--target", "beta",
                    "--region", "us-east-1", "--out", str(plan_file))
    assert result.returncode == 0, result.stderr
    assert f"reconcile apply {plan_file}\n" in result.stdout
    document = valid_plan(json.loads(plan_file.read_text()))
    assert document["basis"]["manifest"] == "teams/a/layers.yaml"
    disagrees = invoke(repo, "apply", str(plan_file), "--target", "alpha")
    assert disagrees.returncode == 1
    assert "the plan selected targets ['beta']; this apply selects ['alpha']" \
        in disagrees.stderr
    other = invoke(repo, "apply", str(plan_file), "-f", "layers.yaml")
    assert other.returncode == 1
    assert "the plan was made for the manifest teams/a/layers.yaml; -f names layers.yaml" \
        in other.stderr
    inside = invoke(team / "src", "apply", str(plan_file))  # anywhere in the repository
    assert inside.returncode == 0, inside.stderr
    assert versions("beta") == [1] and versions("alpha") == []


def test_a_plan_naming_a_manifest_outside_the_repository_is_refused(
        checkout: Path, tmp_path: Path) -> None:
    """The plan's manifest path is confined to the repository: `..` or an absolute path is
    refused, nothing read from there."""
    plan_file = tmp_path / "plan.json"
    document = save_plan(checkout, plan_file)
    for crafted in ("../elsewhere/layers.yaml", "/etc/layers.yaml"):
        document["basis"]["manifest"] = crafted
        plan_file.write_text(json.dumps(document))
        refused = invoke(checkout, "apply", str(plan_file))
        assert refused.returncode == 1
        assert "the plan does not name a manifest inside the repository" in refused.stderr
    assert versions("alpha") == []


def test_a_lock_that_cannot_be_released_still_reports_what_was_done(
        tmp_path: Path, state_bucket: str, proxy: faultproxy.FaultProxy) -> None:
    """S3 refuses the lock's delete: the apply still prints and writes (JSON, step summary)
    every version it published and recorded, names the lock id and the way out, exit 1."""
    repo = make_checkout(tmp_path / "repo", state=f"state: {state_bucket}\n")
    proxy.add(faultproxy.reject(status=500, code="InternalError", operation="DeleteObject",
                                key="layers/layers.lock.json.lock"))
    summary = tmp_path / "summary.md"
    result = invoke(repo, "apply", "--yes", "--format", "json", "--max-attempts", "1",
                    env={**os.environ, "GITHUB_STEP_SUMMARY": str(summary)})
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert {item["layer"] for item in report["published"]} == {"alpha", "beta"}
    assert report["lock"]["released"] is False
    lock_id = report["lock"]["id"]
    assert f"reconcile force-unlock {lock_id}" in result.stderr
    assert "every change above was made and recorded" in result.stderr
    text = summary.read_text()
    assert "arn:aws:lambda:us-east-1:" in text and f"force-unlock {lock_id}" in text
    proxy.clear()
    assert invoke(repo, "force-unlock", lock_id, "--yes").returncode == 0
    assert invoke(repo, "plan", "--detailed-exitcode").returncode == 0


def test_a_manifest_outside_the_repository_needs_f_again(checkout: Path, tmp_path: Path) -> None:
    """A plan made from a folder that does not hold the manifest prints a next step with -f,
    and that command works; without -f the apply asks for it, changing nothing."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / ".git").mkdir(parents=True)
    plan_file = tmp_path / "plan.json"
    manifest = checkout / "layers.yaml"
    result = invoke(elsewhere, "plan", "-f", str(manifest), "--out", str(plan_file))
    assert result.returncode == 0, result.stderr
    assert f"reconcile apply {plan_file} -f {manifest}\n" in result.stdout
    needs_f = invoke(elsewhere, "apply", str(plan_file))
    assert needs_f.returncode == 1
    assert "the plan does not name a manifest inside the repository (none)" in needs_f.stderr
    assert "pass -f MANIFEST" in needs_f.stderr
    assert versions("alpha") == []
    applied = invoke(elsewhere, "apply", str(plan_file), "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr
    assert versions("alpha") == [1] and versions("beta") == [1]
