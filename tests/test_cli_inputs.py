"""Every input is an error, never a traceback, through the installed CLI: manifests and
lockfiles nested past what a recursive reader survives, and credentials written into the
manifest's URLs (refused at validate, never echoed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from clirun import invoke, run

LAYER = "layers:\n  a:\n    content: {path: src}\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with one content folder `src` (and no AWS setting in the environment)."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f.py").write_text("x = 1\n", encoding="utf-8")
    return tmp_path


def _env() -> dict[str, str]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    clean["AWS_EC2_METADATA_DISABLED"] = "true"
    return clean


@pytest.mark.parametrize("nested", ["[" * 10_000 + "]" * 10_000,
                                    "{a: " * 50_000 + "1" + "}" * 50_000],
                         ids=["10,000 nested lists", "50,000 nested flow maps"])
def test_deeply_nested_manifest_is_a_located_error(project: Path, nested: str) -> None:
    """validate of a manifest nested tens of thousands deep exits 1 with a located problem."""
    (project / "layers.yaml").write_text(f"version: 1\ndescription: {nested}\n{LAYER}",
                                         encoding="utf-8")
    result = invoke(project, "validate", env=_env())
    assert result.returncode == 1
    assert "layers.yaml:2:" in result.stderr
    assert "nests deeper than 64 levels" in result.stderr


@pytest.mark.parametrize("command", [("outputs",), ("plan",)])
def test_deeply_nested_lockfile_is_a_clear_error(project: Path, command: tuple[str, ...]) -> None:
    """A lockfile of 100,000 nested lists is a message naming it, exit 1 (plan: before AWS)."""
    (project / "layers.yaml").write_text(f"version: 1\nregion: us-east-1\n{LAYER}",
                                         encoding="utf-8")
    (project / "layers.lock.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    env = _env() | {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
                    "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    result = invoke(project, *command, env=env)
    assert result.returncode == 1
    assert "layers.lock.json: not a reconcile lockfile (its JSON nests deeper" in result.stderr


@pytest.mark.parametrize(("lines", "located"), [
    ("state: s3://user:PASS@bucket/x\n", ["layers.yaml:2:8: state: must not hold credentials"]),
    ("state: user:PASS@bucket/x\n", ["layers.yaml:2:8: state: must not hold credentials"]),
    ("artifact_bucket: 'u:PASS@bucket'\n",
     ["layers.yaml:2:18: artifact_bucket: must not hold credentials"]),
    ("artifact_bucket: {us-east-1: 's3://k:PASS@b', eu-west-1: ok-bucket}\n",
     ["layers.yaml:2:30: artifact_bucket.us-east-1: must not hold credentials"]),
], ids=["state URL", "state without scheme", "artifact bucket", "artifact bucket map"])
def test_credentials_in_a_url_are_refused_at_validate_without_echo(
        project: Path, lines: str, located: list[str]) -> None:
    """`state` or `artifact_bucket` with `user:password@` is a located error at validate, and
    the password appears nowhere in the output."""
    (project / "layers.yaml").write_text(f"version: 1\n{lines}{LAYER}", encoding="utf-8")
    result = invoke(project, "validate", env=_env())
    assert result.returncode == 1
    for line in located:
        assert line in result.stderr, result.stderr
    assert "PASS" not in result.stderr + result.stdout


def test_a_password_in_a_state_url_never_reaches_aws(project: Path) -> None:
    """plan refuses the manifest before any AWS call: the password is in no message."""
    (project / "layers.yaml").write_text(
        f"version: 1\nregion: us-east-1\nstate: s3://AKIA:PASS@bucket/x\n{LAYER}",
        encoding="utf-8")
    env = _env() | {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
                    "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    result = invoke(project, "plan", env=env)
    assert result.returncode == 1
    assert "state: must not hold credentials" in result.stderr
    assert "PASS" not in result.stderr + result.stdout


def test_state_push_of_a_file_that_is_not_utf8_is_one_error(tmp_path: Path,
                                                            moto_url: str) -> None:
    """`state push` of a file that is not UTF-8 is one located message, exit 1, and the S3
    state is not touched."""
    import boto3

    boto3.client("s3").create_bucket(Bucket="pushed-state")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("A = 1\n")
    (tmp_path / "layers.yaml").write_text(
        "version: 1\nregion: us-east-1\nstate: s3://pushed-state/x\nlayers:\n"
        "  alpha: {content: {path: src}}\n")
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe{}")
    result = invoke(tmp_path, "state", "push", "bad.json")
    assert result.returncode == 1
    assert "bad.json: not a lockfile (not UTF-8" in result.stderr
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket="pushed-state")


@pytest.mark.parametrize("path", [".", "/", ".."])
def test_a_manifest_path_that_names_no_file_is_one_message(tmp_path: Path, path: str) -> None:
    """`-f .`, `-f /` or `-f ..` (the installed CLI: the command line is read ahead before
    typer parses it) ends in one message saying it is a folder, exit 1, no traceback."""
    for command in (["plan"], ["apply", "--yes"], ["validate"]):
        result = run(tmp_path, *command, "-f", path, env=_env())
        assert result.returncode == 1, result.stderr
        assert f"{path}: is a folder, not a manifest file" in result.stderr
