"""End to end: the installed `reconcile` CLI, run in process (clirun.invoke), against a real
moto server on a loopback port (AWS_ENDPOINT_URL), with real folders and zip files; the
console script runs as a subprocess only where a terminal is its stdin, stdout or stderr."""

from __future__ import annotations

import json
import os
import pty
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
from clirun import RECONCILE, invoke, plan_json, run, versions

MANIFEST = """\
version: 1
region: us-east-1
defaults:
  compatible_architectures: [x86_64]
layers:
  alpha:
    description: Alpha helpers
    compatible_runtimes: [python3.12]
    content: {path: src/alpha, prefix: python}
  beta:
    content: {path: src/beta}
  gamma:
    content: {zip: dist/gamma.zip}
"""


def drain(controller: int) -> bytes:
    """Everything a pty's controller side still has to give, once the other side closed."""
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    return output


def actions(document: dict[str, Any]) -> dict[str, str]:
    """layer -> action of a plan document."""
    changes = document["changes"]
    assert isinstance(changes, list)
    return {change["layer"]: change["action"] for change in changes}


@pytest.fixture
def project(tmp_path: Path, moto_url: str) -> Path:
    """A manifest with two folder layers and a prebuilt zip, next to a running moto server."""
    for name in ("alpha", "beta"):
        folder = tmp_path / "src" / name
        folder.mkdir(parents=True)
        (folder / f"{name}.py").write_text(f"NAME = {name!r}\n")
    (tmp_path / "dist").mkdir()
    shutil.make_archive(str(tmp_path / "dist" / "gamma"), "zip", tmp_path / "src" / "beta")
    (tmp_path / "layers.yaml").write_text(MANIFEST)
    return tmp_path


def test_the_reconcile_loop(project: Path) -> None:
    """plan -> apply -> clean plan -> edit one file -> one publish -> v2 for it, v1 for others."""
    first = invoke(project, "plan", "--detailed-exitcode")
    assert first.returncode == 2, first.stderr
    assert "Plan: 3 to create, 0 to publish, 0 unchanged." in first.stdout
    assert not (project / "layers.lock.json").exists()

    applied = invoke(project, "apply", "--yes")
    assert applied.returncode == 0, applied.stderr
    assert "arn:aws:lambda:us-east-1:123456789012:layer:alpha:1" in applied.stdout
    lock_after_first = (project / "layers.lock.json").read_bytes()

    clean = invoke(project, "plan", "--detailed-exitcode")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "No changes." in clean.stdout

    (project / "src" / "beta" / "beta.py").write_text("NAME = 'edited'\n")
    document = plan_json(project)
    assert actions(document) == {"alpha": "noop", "beta": "publish", "gamma": "noop"}
    assert document["summary"] == {"create": 0, "publish": 1, "noop": 2, "delete": 0,
                                   "grant": 0, "forget": 0, "update_function": 0,
                                   "put_parameter": 0, "record": 0}

    second = invoke(project, "apply", "--yes")
    assert second.returncode == 0, second.stderr
    assert (versions("alpha"), versions("beta"), versions("gamma")) == ([1], [1, 2], [1])
    lock = json.loads((project / "layers.lock.json").read_text())
    assert lock["layers"]["beta"]["us-east-1"]["version"] == 2
    assert lock["layers"]["alpha"]["us-east-1"] == json.loads(lock_after_first)["layers"][
        "alpha"]["us-east-1"]

    lock_before = (project / "layers.lock.json").read_bytes()
    again = invoke(project, "apply", "--yes")
    assert again.returncode == 0
    assert (versions("alpha"), versions("beta"), versions("gamma")) == ([1], [1, 2], [1])
    assert (project / "layers.lock.json").read_bytes() == lock_before


def test_lockfile_deleted_gives_adopted_noops(project: Path) -> None:
    """Without the lockfile the plan adopts what is published; apply rebuilds the same
    entries (a new state: a new lineage)."""
    assert invoke(project, "apply", "--yes").returncode == 0
    original = (project / "layers.lock.json").read_bytes()
    (project / "layers.lock.json").unlink()

    document = plan_json(project)
    assert set(actions(document).values()) == {"noop"}
    changes = document["changes"]
    assert isinstance(changes, list)
    assert all(change["reasons"] == ["adopted"] for change in changes)
    pending = invoke(project, "plan", "--detailed-exitcode")
    assert pending.returncode == 2, "recording an adopted version is a pending change"
    assert "(3 to record in the lockfile)" in pending.stdout
    assert "Nothing to publish" in pending.stdout

    refused = invoke(project, "apply")  # recording is a change: no terminal, no --yes, refused
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert not (project / "layers.lock.json").exists()
    applied = invoke(project, "apply", "--yes")
    assert applied.returncode == 0, applied.stderr
    rebuilt = json.loads((project / "layers.lock.json").read_text())
    before = json.loads(original)
    assert rebuilt["layers"] == before["layers"] and rebuilt["serial"] == before["serial"]
    assert rebuilt["lineage"] != before["lineage"]
    assert versions("alpha") == [1]
    assert invoke(project, "plan", "--detailed-exitcode").returncode == 0


def test_plan_json_matches_the_contract(project: Path) -> None:
    """The JSON document carries the contract's keys and Lambda's CodeSha256 after apply."""
    document = plan_json(project)
    assert document["format_version"] == 1
    changes = document["changes"]
    assert isinstance(changes, list)
    gamma = next(change for change in changes if change["layer"] == "gamma")
    assert gamma["current"] is None and gamma["reasons"] == ["new_layer"]
    assert invoke(project, "apply", "--yes").returncode == 0
    published = boto3.client("lambda").get_layer_version(LayerName="gamma", VersionNumber=1)
    assert published["Content"]["CodeSha256"] == gamma["desired"]["code_sha256"]
    assert published["Content"]["CodeSize"] == gamma["desired"]["code_size"]


def test_apply_without_terminal_or_yes_refuses(project: Path) -> None:
    """No --yes and no terminal: exit 1, says to pass --yes, publishes nothing, no lockfile."""
    result = invoke(project, "apply")
    assert result.returncode == 1
    assert "--yes" in result.stderr
    assert versions("alpha") == []
    assert not (project / "layers.lock.json").exists()


@pytest.mark.parametrize(("answer", "code", "published"), [("yes", 0, [1]), ("no", 1, [])],
                         ids=["confirmed", "declined"])
def test_apply_asks_on_a_terminal(project: Path, answer: str, code: int,
                                  published: list[int]) -> None:
    """On a terminal apply asks; only 'yes' publishes."""
    controller, terminal = pty.openpty()
    try:
        os.write(controller, f"{answer}\n".encode())
        result = run(project, "apply", stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == code, result.stdout + result.stderr
    assert "Only 'yes' will be accepted" in result.stdout
    assert versions("alpha") == published


def test_invalid_manifest_makes_no_aws_call(project: Path) -> None:
    """plan and apply stop at an invalid manifest: located error, exit 1, nothing published."""
    (project / "layers.yaml").write_text(MANIFEST.replace("python3.12", "python9"))
    for command in (["plan"], ["apply", "--yes"]):
        result = invoke(project, *command)
        assert result.returncode == 1
        assert "layers.yaml:8:27: layers.alpha.compatible_runtimes[0]:" in result.stderr
    assert versions("alpha") == []
    assert not (project / "layers.lock.json").exists()


def test_unknown_target_is_an_error(project: Path) -> None:
    """--target with an unknown layer exits 1 and lists the layers."""
    result = invoke(project, "plan", "--target", "nope")
    assert result.returncode == 1
    assert "nope" in result.stderr and "alpha, beta, gamma" in result.stderr


def test_target_applies_only_that_layer(project: Path) -> None:
    """apply --target publishes only the named layer."""
    assert invoke(project, "apply", "--yes", "--target", "beta").returncode == 0
    assert (versions("alpha"), versions("beta")) == ([], [1])


def test_unreachable_endpoint_is_a_clear_error(project: Path) -> None:
    """A closed endpoint gives one message naming it, exit 1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = invoke(project, "plan", "--endpoint-url", f"http://127.0.0.1:{port}",
                    "--max-attempts", "1")
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr
    assert "hint:" in result.stderr


def test_missing_credentials_are_a_clear_error(project: Path) -> None:
    """No credentials anywhere: exit 1 with a hint on how to set them."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    result = invoke(project, "plan", env=env)
    assert result.returncode == 1
    assert "no AWS credentials" in result.stderr and "AWS_PROFILE" in result.stderr


def test_missing_region_is_a_clear_error(project: Path) -> None:
    """No region in the manifest or the environment: exit 1 saying where to set one."""
    (project / "layers.yaml").write_text(MANIFEST.replace("region: us-east-1\n", ""))
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    result = invoke(project, "plan", env=env)
    assert result.returncode == 1
    assert "no AWS region" in result.stderr and "AWS_REGION" in result.stderr


def test_step_summary_and_no_summary(project: Path) -> None:
    """plan appends Markdown to GITHUB_STEP_SUMMARY, unless --no-summary."""
    summary = project / "summary.md"
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary)}
    assert invoke(project, "plan", env=env).returncode == 0
    assert "| + | `alpha` | us-east-1 | create v1 |" in summary.read_text()
    summary.unlink()
    assert invoke(project, "plan", "--no-summary", env=env).returncode == 0
    assert not summary.exists()


def test_piped_output_has_no_colour(project: Path) -> None:
    """Output to a pipe carries no ANSI escape codes."""
    assert "\033[" not in invoke(project, "plan").stdout


def test_outputs_lists_published_arns(project: Path) -> None:
    """outputs prints each layer's latest ARN from the lockfile, as text and as JSON."""
    assert invoke(project, "apply", "--yes").returncode == 0
    text = invoke(project, "outputs")
    assert "alpha us-east-1 arn:aws:lambda:us-east-1:123456789012:layer:alpha:1" in text.stdout
    document = json.loads(invoke(project, "outputs", "--format", "json").stdout)
    assert document["beta"]["us-east-1"].endswith(":layer:beta:1")


def test_manifest_from_another_folder(project: Path, tmp_path_factory: pytest.TempPathFactory
                                      ) -> None:
    """-f from another cwd resolves content beside the manifest and the lockfile beside it."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    assert invoke(elsewhere, "apply", "--yes", "-f", str(project / "layers.yaml")).returncode == 0
    assert (project / "layers.lock.json").exists()
    assert not any(elsewhere.iterdir())


def test_aws_region_wins_over_aws_default_region(project: Path) -> None:
    """Without a manifest region, AWS_REGION is used, before AWS_DEFAULT_REGION."""
    (project / "layers.yaml").write_text(MANIFEST.replace("region: us-east-1\n", ""))
    env = {**os.environ, "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-east-1"}
    document = json.loads(invoke(project, "plan", "--format", "json", env=env).stdout)
    changes = document["changes"]
    assert {change["region"] for change in changes} == {"eu-west-1"}


@pytest.mark.parametrize(("extra_env", "coloured"), [({}, True), ({"NO_COLOR": "1"}, False)],
                         ids=["terminal", "NO_COLOR"])
def test_colour_on_a_terminal_unless_no_color(project: Path, extra_env: dict[str, str],
                                              coloured: bool) -> None:
    """On a terminal the plan is coloured; NO_COLOR turns it off."""
    controller, terminal = pty.openpty()
    env = {key: value for key, value in os.environ.items() if key != "NO_COLOR"}
    env.update(TERM="xterm", **extra_env)
    try:
        process = subprocess.run([str(RECONCILE), "plan"], cwd=project, stdout=terminal,
                                 stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
                                 timeout=120, check=False)
        os.close(terminal)
        output = drain(controller)
    finally:
        os.close(controller)
    assert process.returncode == 0, process.stderr
    assert b"create v1" in output
    assert (b"\033[" in output) is coloured


def test_apply_json_reports_what_was_published(project: Path) -> None:
    """apply --format json prints one JSON document with the plan and the published ARNs."""
    result = invoke(project, "apply", "--yes", "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["plan"]["summary"]["create"] == 3
    published = {item["layer"]: item for item in document["published"]}
    assert published["alpha"]["layer_version_arn"].endswith(":layer:alpha:1")
    assert published["alpha"]["version"] == 1


def test_settings_edit_publishes_with_the_same_content(project: Path) -> None:
    """Changing only a description publishes v2 with the same CodeSha256 and the new setting."""
    assert invoke(project, "apply", "--yes").returncode == 0
    (project / "layers.yaml").write_text(MANIFEST.replace("Alpha helpers", "Alpha utilities"))
    document = plan_json(project)
    alpha = next(c for c in document["changes"] if c["layer"] == "alpha")
    assert (alpha["action"], alpha["reasons"]) == ("publish", ["settings_changed"])
    assert alpha["diff"]["description"] == {"from": "Alpha helpers", "to": "Alpha utilities"}
    applied = invoke(project, "apply", "--yes")
    assert applied.returncode == 0, applied.stderr
    client = boto3.client("lambda")
    first = client.get_layer_version(LayerName="alpha", VersionNumber=1)
    second = client.get_layer_version(LayerName="alpha", VersionNumber=2)
    assert second["Description"] == "Alpha utilities"
    assert second["Content"]["CodeSha256"] == first["Content"]["CodeSha256"]
    assert invoke(project, "plan", "--detailed-exitcode").returncode == 0


def test_out_of_band_publish_is_replaced(project: Path, tmp_path: Path) -> None:
    """A version published by hand with other content is drift: apply publishes ours again."""
    assert invoke(project, "apply", "--yes").returncode == 0
    other = tmp_path / "other.zip"
    shutil.make_archive(str(other.with_suffix("")), "zip", project / "src" / "alpha")
    boto3.client("lambda").publish_layer_version(LayerName="beta",
                                                 Content={"ZipFile": other.read_bytes()})
    document = plan_json(project)
    beta = next(c for c in document["changes"] if c["layer"] == "beta")
    assert beta["action"] == "publish"
    assert beta["reasons"][0] == "remote_drift"
    assert "version 2 was published outside reconcile" in beta["notes"][0]
    applied = invoke(project, "apply", "--yes")
    assert applied.returncode == 0, applied.stderr
    assert versions("beta") == [1, 2, 3]
    assert invoke(project, "plan", "--detailed-exitcode").returncode == 0


def test_every_version_deleted_is_recreated(project: Path) -> None:
    """With every version deleted out of band, apply publishes again, at a higher number."""
    assert invoke(project, "apply", "--yes").returncode == 0
    boto3.client("lambda").delete_layer_version(LayerName="gamma", VersionNumber=1)
    document = plan_json(project)
    gamma = next(c for c in document["changes"] if c["layer"] == "gamma")
    assert (gamma["action"], gamma["reasons"]) == ("create", ["new_layer", "remote_drift"])
    applied = invoke(project, "apply", "--yes")
    assert applied.returncode == 0, applied.stderr
    assert versions("gamma") == [2]
    lock = json.loads((project / "layers.lock.json").read_text())
    assert lock["layers"]["gamma"]["us-east-1"]["version"] == 2


def test_adoption_after_drift_to_identical_version(project: Path) -> None:
    """A hand-published version identical to ours is recorded without publishing."""
    assert invoke(project, "apply", "--yes").returncode == 0
    zip_bytes = (project / "dist" / "gamma.zip").read_bytes()
    boto3.client("lambda").publish_layer_version(
        LayerName="gamma", Content={"ZipFile": zip_bytes},
        CompatibleArchitectures=["x86_64"])
    document = plan_json(project)
    gamma = next(c for c in document["changes"] if c["layer"] == "gamma")
    assert (gamma["action"], gamma["reasons"]) == ("noop", ["remote_drift"])
    assert invoke(project, "plan", "--detailed-exitcode").returncode == 2
    assert invoke(project, "apply", "--yes").returncode == 0
    assert versions("gamma") == [1, 2]
    lock = json.loads((project / "layers.lock.json").read_text())
    assert lock["layers"]["gamma"]["us-east-1"]["version"] == 2


def test_layer_folder_holding_the_manifest_converges(tmp_path: Path, moto_url: str) -> None:
    """`path: .` never packages .reconcile/ or the lockfile, so a second apply publishes nothing."""
    (tmp_path / "python").mkdir()
    (tmp_path / "python" / "m.py").write_text("X = 1\n")
    (tmp_path / "layers.yaml").write_text(
        "version: 1\nregion: us-east-1\nlayers:\n  dot:\n    content: {path: .}\n")
    assert invoke(tmp_path, "apply", "--yes").returncode == 0
    assert invoke(tmp_path, "apply", "--yes").returncode == 0
    assert versions("dot") == [1]
    assert invoke(tmp_path, "plan", "--detailed-exitcode").returncode == 0


def test_invalid_endpoint_url_is_a_clear_error(project: Path) -> None:
    """A malformed --endpoint-url is one message with a hint, exit 1."""
    result = invoke(project, "plan", "--endpoint-url", "not-a-url")
    assert result.returncode == 1
    assert "not-a-url" in result.stderr and "hint:" in result.stderr


def test_unwritable_lockfile_is_refused_before_any_publish(project: Path) -> None:
    """A lockfile whose folder cannot be written stops apply before anything: the state
    lock, taken first, cannot be made there."""
    result = invoke(project, "apply", "--yes", "--lockfile", "/proc/reconcile.lock.json")
    assert result.returncode == 1
    assert "cannot lock /proc/reconcile.lock.json" in result.stderr
    assert versions("alpha") == []


def test_apply_json_without_yes_refuses(project: Path) -> None:
    """apply --format json cannot show the plan for review, so it needs --yes."""
    result = invoke(project, "apply", "--format", "json")
    assert result.returncode == 1
    assert "--yes" in result.stderr
    assert versions("alpha") == []


def test_outputs_without_lockfile_is_an_error(project: Path) -> None:
    """outputs before any apply says there is no lockfile, exit 1."""
    result = invoke(project, "outputs")
    assert result.returncode == 1
    assert "no such lockfile" in result.stderr


def test_manifest_errors_come_before_profile_errors(project: Path) -> None:
    """An invalid manifest is reported even when the AWS profile does not exist."""
    (project / "layers.yaml").write_text(MANIFEST.replace("description:", "descripton:"))
    result = invoke(project, "plan", "--profile", "nosuch")
    assert result.returncode == 1
    assert "layers.alpha.descripton: unknown key" in result.stderr


def test_malformed_default_region_is_a_clear_error(project: Path) -> None:
    """A malformed AWS_REGION (no manifest region) is one message naming it, exit 1."""
    (project / "layers.yaml").write_text(MANIFEST.replace("region: us-east-1\n", ""))
    result = invoke(project, "plan", env={**os.environ, "AWS_REGION": "bogus_region"})
    assert result.returncode == 1
    assert "'bogus_region' is not a region name" in result.stderr


def arn_keyed_project(folder: Path, arn: str) -> None:
    """A manifest in `folder` with one folder layer keyed by `arn`."""
    (folder / "src").mkdir()
    (folder / "src" / "m.py").write_text("X = 1\n")
    (folder / "layers.yaml").write_text(
        f"version: 1\nregion: us-east-1\nlayers:\n  {arn}:\n    content: {{path: src}}\n")


def test_layer_named_by_arn_is_published_by_name(tmp_path: Path, moto_url: str) -> None:
    """A layer keyed by its ARN is published under its name (moto would take the ARN as a
    new name), recorded under the ARN key, and converges."""
    arn = "arn:aws:lambda:us-east-1:123456789012:layer:by-arn"
    arn_keyed_project(tmp_path, arn)
    applied = invoke(tmp_path, "apply", "--yes")
    assert applied.returncode == 0, applied.stderr
    assert versions("by-arn") == [1]
    lock = json.loads((tmp_path / "layers.lock.json").read_text())
    assert lock["layers"][arn]["us-east-1"]["layer_version_arn"] == f"{arn}:1"
    assert invoke(tmp_path, "plan", "--detailed-exitcode").returncode == 0


def test_layer_arn_of_another_account_is_refused(tmp_path: Path, moto_url: str) -> None:
    """An ARN key in another account is a located error before any publish."""
    arn = "arn:aws:lambda:us-east-1:999999999999:layer:theirs"
    arn_keyed_project(tmp_path, arn)
    result = invoke(tmp_path, "apply", "--yes")
    assert result.returncode == 1
    assert f"layers.yaml:4:3: layers.{arn}:" in result.stderr
    assert "account 999999999999" in result.stderr
    assert versions("theirs") == []


def test_reordered_runtimes_change_nothing(project: Path) -> None:
    """Runtimes are a set: listing them in another order publishes nothing, lockfile intact."""
    two_runtimes = MANIFEST.replace("[python3.12]", "[python3.12, python3.13]")
    (project / "layers.yaml").write_text(two_runtimes)
    assert invoke(project, "apply", "--yes").returncode == 0
    before = (project / "layers.lock.json").read_bytes()
    (project / "layers.yaml").write_text(MANIFEST.replace("[python3.12]",
                                                          "[python3.13, python3.12]"))
    assert invoke(project, "plan", "--detailed-exitcode").returncode == 0
    assert invoke(project, "apply", "--yes").returncode == 0
    assert (project / "layers.lock.json").read_bytes() == before
    assert versions("alpha") == [1]


def test_region_flag_limits_a_multi_region_manifest(project: Path) -> None:
    """--region plans and applies only that region of a multi-region manifest."""
    (project / "layers.yaml").write_text(
        MANIFEST.replace("region: us-east-1", "region: [us-east-1, eu-west-1]"))
    document = plan_json(project)
    assert {(c["layer"], c["region"]) for c in document["changes"]} == {
        (layer, region) for layer in ("alpha", "beta", "gamma")
        for region in ("eu-west-1", "us-east-1")}
    assert invoke(project, "apply", "--yes", "--region", "eu-west-1").returncode == 0
    lock = json.loads((project / "layers.lock.json").read_text())
    assert set(lock["layers"]["alpha"]) == {"eu-west-1"}
    assert versions("alpha") == []  # us-east-1, the client's default region, is untouched
    eu = boto3.client("lambda", region_name="eu-west-1")
    assert len(eu.list_layer_versions(LayerName="alpha")["LayerVersions"]) == 1
    assert invoke(project, "plan", "--region", "nowhere-1").returncode == 1


def test_markdown_plan_on_stdout(project: Path) -> None:
    """plan --format markdown prints the table, for pull request comments."""
    result = invoke(project, "plan", "--format", "markdown")
    assert result.returncode == 0
    assert result.stdout.startswith("### reconcile plan")
    assert "| + | `beta` | us-east-1 | create v1 | `new_layer` |" in result.stdout


def test_apply_with_nothing_to_do_needs_no_confirmation(project: Path) -> None:
    """When nothing would change, apply without --yes and without a terminal succeeds."""
    assert invoke(project, "apply", "--yes").returncode == 0
    before = (project / "layers.lock.json").read_bytes()
    result = invoke(project, "apply")
    assert result.returncode == 0, result.stderr
    assert "No changes." in result.stdout
    assert (project / "layers.lock.json").read_bytes() == before


@pytest.mark.parametrize(("ci", "shown"), [(None, True), ("true", False)], ids=["tty", "CI"])
def test_live_progress_only_on_a_terminal_outside_ci(project: Path, ci: str | None,
                                                      shown: bool) -> None:
    """With stderr on a terminal, plan shows a live display naming what it does; with CI set
    (or stderr piped, as in every other test) nothing of it is printed."""
    controller, terminal = pty.openpty()
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["TERM"] = "xterm"
    if ci:
        env["CI"] = ci
    try:
        process = subprocess.run([str(RECONCILE), "plan"], cwd=project, stdout=subprocess.PIPE,
                                 stderr=terminal, stdin=subprocess.DEVNULL, env=env,
                                 timeout=120, check=False)
        os.close(terminal)
        output = drain(controller)
    finally:
        os.close(controller)
    assert process.returncode == 0
    assert (b"reading Lambda in us-east-1" in output) is shown, output
