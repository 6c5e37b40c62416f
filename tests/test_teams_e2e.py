"""Many teams on one account, through the installed CLI against a moto server: layers that leave
the manifest (`forget`, `state rm`), ownership of a shared state, `.gitignore` honoured in
folder layers, and `state push` checked by lineage and serial."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import boto3
import faultproxy
import pytest
from clirun import invoke, plan_json, versions

REGION = "us-east-1"
BUCKET = "team-state"


def repository(folder: Path) -> Path:
    """A folder that is a git repository as reconcile sees one (it has a `.git` folder)."""
    (folder / ".git" / "info").mkdir(parents=True)
    return folder


def write_manifest(path: Path, layers: tuple[str, ...], *, state: str | None = None) -> Path:
    """A manifest at `path` with one folder layer per name (src/<name>, beside it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["version: 1", f"region: {REGION}"]
    if state:
        lines.append(f"state: {state}")
    lines.append("layers:")
    for name in layers:
        source = path.parent / "src" / name
        source.mkdir(parents=True, exist_ok=True)
        (source / f"{name}.py").write_text(f"NAME = {name!r}\n")
        lines += [f"  {name}:", f"    content: {{path: src/{name}, prefix: python}}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def lockfile(folder: Path) -> dict[str, Any]:
    """The lockfile beside layers.yaml, parsed."""
    document: dict[str, Any] = json.loads((folder / "layers.lock.json").read_text())
    return document


def applied(cwd: Path, *args: str) -> None:
    """`apply --yes` that must succeed."""
    result = invoke(cwd, "apply", "--yes", *args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_layer_that_left_the_manifest_is_forgotten_and_stays_in_lambda(
        tmp_path: Path, moto_url: str) -> None:
    """A layer removed from the manifest is a `forget` (plan says its versions stay);
    `outputs` stops listing it at once; apply drops it from the lockfile, not from Lambda;
    an apply that then changes nothing leaves the lockfile byte for byte."""
    repo = repository(tmp_path / "repo")
    write_manifest(repo / "layers.yaml", ("keep", "gone"))
    applied(repo)
    first = lockfile(repo)
    assert first["layers"]["gone"][REGION]["manifest"] == "layers.yaml"
    assert first["serial"] == 2 and len(first["lineage"]) == 36
    write_manifest(repo / "layers.yaml", ("keep",))

    listed = invoke(repo, "outputs")
    document = plan_json(repo)
    text = invoke(repo, "plan")
    applied(repo)

    assert listed.returncode == 0 and "gone" not in listed.stdout and "keep" in listed.stdout
    forgets = [change for change in document["changes"] if change["action"] == "forget"]
    assert [(change["layer"], change["region"], change["version"]) for change in forgets] == [
        ("gone", REGION, 1)]
    assert document["summary"]["forget"] == 1
    assert "versions stay in Lambda" in forgets[0]["notes"][0]
    assert "1 to forget" in text.stdout and "x gone" in text.stdout
    after = lockfile(repo)
    assert set(after["layers"]) == {"keep"}
    assert after["lineage"] == first["lineage"] and after["serial"] == 3
    assert versions("gone") == [1]
    before = (repo / "layers.lock.json").read_bytes()
    applied(repo)
    assert (repo / "layers.lock.json").read_bytes() == before


def test_state_rm_removes_entries_without_a_plan(tmp_path: Path, moto_url: str) -> None:
    """`state rm NAME --region R` removes the entry under the lock (outputs no longer lists
    it, the version stays in Lambda); a name the state does not record is refused naming
    those it does, and changes nothing."""
    repo = repository(tmp_path / "repo")
    write_manifest(repo / "layers.yaml", ("a", "b"))
    applied(repo)
    serial = lockfile(repo)["serial"]

    refused = invoke(repo, "state", "rm", "nope", "b")
    unchanged = lockfile(repo)
    removed = invoke(repo, "state", "rm", "b", "--region", REGION)

    assert refused.returncode == 1
    assert "records no nope" in refused.stderr and "it records: a, b" in refused.stderr
    assert unchanged["serial"] == serial and set(unchanged["layers"]) == {"a", "b"}
    assert removed.returncode == 0, removed.stderr
    assert "stay in Lambda" in removed.stdout
    assert set(lockfile(repo)["layers"]) == {"a"}
    assert lockfile(repo)["serial"] == serial + 1
    assert [line.split()[0] for line in invoke(repo, "outputs").stdout.splitlines()] == ["a"]
    assert versions("b") == [1]


@pytest.fixture
def state_bucket(moto_url: str) -> str:
    """An S3 bucket for a state that several manifests share."""
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    return f"s3://{BUCKET}/shared"


def stored_state() -> dict[str, Any]:
    """The shared state object, parsed."""
    body = boto3.client("s3", region_name=REGION).get_object(
        Bucket=BUCKET, Key="shared/layers.lock.json")["Body"].read()
    document: dict[str, Any] = json.loads(body)
    return document


def test_a_second_manifest_naming_an_owned_layer_is_refused(
        tmp_path: Path, moto_url: str, state_bucket: str) -> None:
    """Two manifests share an S3 state: the second naming the first's layer is refused at
    plan, naming the owner, and publishes nothing; its own layers plan as usual, and it
    forgets nothing of the first's."""
    repo = repository(tmp_path / "repo")
    write_manifest(repo / "layers.yaml", ("shared",), state=state_bucket)
    write_manifest(repo / "teams" / "b" / "layers.yaml", ("shared", "b-only"),
                   state=state_bucket)
    applied(repo)

    refused = invoke(repo, "plan", "--format", "json", "-f", "teams/b/layers.yaml")
    apply_refused = invoke(repo, "apply", "--yes", "-f", "teams/b/layers.yaml")

    assert refused.returncode == 1
    document = json.loads(refused.stdout)
    assert [error["layer"] for error in document["errors"]] == ["shared"]
    assert "owned by another manifest (us-east-1 by layers.yaml)" in \
        document["errors"][0]["message"]
    assert [change["layer"] for change in document["changes"]] == ["b-only"]
    assert apply_refused.returncode == 1
    assert versions("shared") == [1] and versions("b-only") == []
    assert stored_state()["layers"]["shared"][REGION]["manifest"] == "layers.yaml"


def test_unowned_entries_of_a_shared_state_are_not_forgotten(
        tmp_path: Path, moto_url: str, state_bucket: str) -> None:
    """An entry without an owner (written before owners) in a shared state that this
    manifest does not name is left alone, with a warning that names `state rm`."""
    repo = repository(tmp_path / "repo")
    write_manifest(repo / "layers.yaml", ("mine", "old"), state=state_bucket)
    applied(repo)
    state = stored_state()
    del state["layers"]["old"][REGION]["manifest"]
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=BUCKET, Key="shared/layers.lock.json",
        Body=(json.dumps(state, indent=2, sort_keys=True) + "\n").encode())
    write_manifest(repo / "layers.yaml", ("mine",), state=state_bucket)

    document = plan_json(repo)

    assert document["summary"]["forget"] == 0
    assert any("reconcile state rm old" in warning for warning in document["warnings"])


def test_gitignored_files_are_not_published(tmp_path: Path,
                                            proxy: faultproxy.FaultProxy) -> None:
    """Files git ignores (the root .gitignore, a nested one, .git/info/exclude) are absent
    from the zip sent to PublishLayerVersion, a negated pattern brings one back, and the plan
    says how many were left out."""
    repo = repository(tmp_path / "repo")
    write_manifest(repo / "layers.yaml", ("shared",))
    source = repo / "src" / "shared"
    (repo / ".gitignore").write_text(".env\n__pycache__/\n*.log\n!keep.log\n")
    (repo / ".git" / "info" / "exclude").write_text("local-notes.txt\n")
    (source / ".env").write_text("PASSWORD=hunter2\n")
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "shared.cpython-312.pyc").write_bytes(b"\0")
    (source / "debug.log").write_text("noise\n")
    (source / "keep.log").write_text("kept\n")
    (source / "local-notes.txt").write_text("mine\n")
    (source / "sub").mkdir()
    (source / "sub" / ".gitignore").write_text("generated.py\n")
    (source / "sub" / "generated.py").write_text("X = 1\n")
    (source / "sub" / "real.py").write_text("Y = 1\n")
    captured = faultproxy.Capture()
    proxy.add(faultproxy.Rule(captured, operation="PublishLayerVersion", times=None))

    document = plan_json(repo)
    applied(repo)

    notes = [note for change in document["changes"] for note in change["notes"]]
    assert "git ignores 5 of its files and folders: left out of the layer (a folder counts " \
           "once)" in notes
    assert len(captured.bodies) == 1
    sent = base64.b64decode(json.loads(captured.bodies[0])["Content"]["ZipFile"])
    names = sorted(zipfile.ZipFile(io.BytesIO(sent)).namelist())
    assert names == ["python/keep.log", "python/shared.py", "python/sub/.gitignore",
                     "python/sub/real.py"]


def test_state_push_of_an_older_file_is_refused_then_forced(
        tmp_path: Path, moto_url: str, state_bucket: str) -> None:
    """`state push` of a file pulled before a later apply is refused naming both serials,
    and changes nothing; `--force` pushes it (its serial then above the state's)."""
    repo = repository(tmp_path / "repo")
    write_manifest(repo / "layers.yaml", ("x",), state=state_bucket)
    applied(repo)
    old = tmp_path / "old.lock.json"
    assert invoke(repo, "state", "pull", str(old)).returncode == 0
    (repo / "src" / "x" / "x.py").write_text("NAME = 'x2'\n")
    applied(repo)
    newer = stored_state()

    refused = invoke(repo, "state", "push", str(old))
    after_refusal = stored_state()
    forced = invoke(repo, "state", "push", str(old), "--force")

    assert refused.returncode == 1
    assert f"serial {json.loads(old.read_text())['serial']}" in refused.stderr
    assert f"serial {newer['serial']}" in refused.stderr
    assert after_refusal == newer
    assert forced.returncode == 0, forced.stderr
    pushed = stored_state()
    assert pushed["layers"]["x"][REGION]["version"] == 1
    assert pushed["serial"] == newer["serial"] + 1
    assert pushed["lineage"] == newer["lineage"]


def test_a_saved_plan_with_a_forget_applies_and_goes_stale_when_it_moves(
        tmp_path: Path, moto_url: str) -> None:
    """`apply PLANFILE` of a plan that forgets a layer removes it from the lockfile; a plan
    whose forget no longer matches the state (the layer removed meanwhile) is refused."""
    repo = repository(tmp_path / "repo")
    write_manifest(repo / "layers.yaml", ("keep", "gone", "also"))
    applied(repo)
    write_manifest(repo / "layers.yaml", ("keep",))
    saved = tmp_path / "plan.json"
    stale = tmp_path / "stale.json"
    assert invoke(repo, "plan", "--out", str(saved)).returncode == 0
    assert invoke(repo, "plan", "--out", str(stale)).returncode == 0

    result = invoke(repo, "apply", str(saved))
    refused = invoke(repo, "apply", str(stale))

    assert result.returncode == 0, result.stderr
    assert "forgotten gone" in result.stdout
    assert set(lockfile(repo)["layers"]) == {"keep"}
    assert refused.returncode == 1
    assert "the plan would forget layer also in us-east-1" in refused.stderr


def test_the_owner_is_the_same_manifest_from_any_working_directory(
        tmp_path: Path, moto_url: str) -> None:
    """Outside any git repository, a manifest applied from its folder and planned from its
    parent (or applied from elsewhere) is the same owner: no refusal, no forget, a clean plan;
    the entries name it by its path in its own folder."""
    project = tmp_path / "outside-git" / "team"
    write_manifest(project / "layers.yaml", ("a",))
    applied(project)
    assert {entry["manifest"] for entry in lockfile(project)["layers"]["a"].values()} == {
        "layers.yaml"}
    from_parent = invoke(project.parent, "plan", "-f", "team/layers.yaml",
                         "--detailed-exitcode")
    assert from_parent.returncode == 0, from_parent.stdout + from_parent.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    applied(elsewhere, "-f", str(project / "layers.yaml"))
    assert {entry["manifest"] for entry in lockfile(project)["layers"]["a"].values()} == {
        "layers.yaml"}
