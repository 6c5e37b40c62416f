"""The small fixes of issue 18, through the installed CLI against moto: a throttled grant
counts toward giving up on a failing region (AWS's error code, not reconcile's), and the
answers moto cannot give (a publish answered 201 with a body that is not Lambda's) are an
unknown outcome that is looked up and adopted, never a KeyError."""

from __future__ import annotations

import json
import os
import socket
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import faultproxy
import pytest
from clirun import invoke

NAMES = ("alpha", "beta", "gamma", "delta")


def project(tmp_path: Path, *, regions: tuple[str, ...], names: tuple[str, ...] = NAMES,
            extra: str = "") -> Path:
    """One one-file folder layer per name, in `regions`, with `extra` in every layer."""
    layers = []
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.py").write_text(f"NAME = {name!r}\n", encoding="utf-8")
        layers.append(f"  {name}:\n    content: {{path: {name}}}\n{extra}")
    (tmp_path / "layers.yaml").write_text(
        f"version: 1\nregion: [{', '.join(regions)}]\nlayers:\n" + "".join(layers),
        encoding="utf-8")
    return tmp_path


def test_throttled_grants_give_up_on_their_region(tmp_path: Path, moto_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Every grant in eu-west-1 throttled: after two such failures the region is given up
    (its other layers not attempted), because the failure carries AWS's throttling code."""
    project(tmp_path, regions=("us-east-1", "eu-west-1"),
            extra="    share: [{account: '111122223333'}]\n")
    with faultproxy.running(moto_url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        proxy.add(faultproxy.throttle(times=None, operation="AddLayerVersionPermission",
                                      region="eu-west-1"))
        result = invoke(tmp_path, "apply", "--yes", "--format", "json", "--parallelism", "1",
                        "--max-attempts", "1")
        assert result.returncode == 1, result.stdout + result.stderr
        report = json.loads(result.stdout)
        assert {item["region"] for item in report["published"]} == {"us-east-1"}
        assert [item["region"] for item in report["failed"]] == ["eu-west-1"] * 2
        assert [item["region"] for item in report["not_attempted"]] == ["eu-west-1"] * 2
        assert all("eu-west-1 kept failing" in item["why"] for item in report["not_attempted"])
        assert proxy.count(operation="AddLayerVersionPermission", region="eu-west-1") == 2


@pytest.mark.parametrize("body", [b"<html>bad gateway</html>", b'{"LayerArn": "x"}'],
                         ids=["not JSON", "JSON without Version"])
def test_a_publish_answered_201_with_another_body_is_looked_up_and_adopted(
        tmp_path: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch, body: bytes) -> None:
    """Lambda made the version but its 201 answer is not Lambda's JSON: the apply looks for
    the version, adopts and records it (no second version, no KeyError), exit 0."""
    project(tmp_path, regions=("us-east-1",), names=("alpha",))
    with faultproxy.running(moto_url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        proxy.add(faultproxy.Rule(faultproxy.ForwardThenReply(201, body),
                                  operation="PublishLayerVersion"))
        result = invoke(tmp_path, "apply", "--yes")
        assert result.returncode == 0, result.stdout + result.stderr
        assert proxy.count(operation="PublishLayerVersion") == 1
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    listed = boto3.client("lambda").list_layer_versions(LayerName="alpha")["LayerVersions"]
    assert [item["Version"] for item in listed] == [1]
    lock = json.loads((tmp_path / "layers.lock.json").read_text(encoding="utf-8"))
    assert lock["layers"]["alpha"]["us-east-1"]["version"] == 1
    again = invoke(tmp_path, "plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr


def _s3_error(code: str, message: str) -> bytes:
    return (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>{message}</Message><RequestId>r</RequestId></Error>").encode()


@pytest.mark.parametrize(("code", "service", "meaning"), [
    ("InvalidAccessKeyId", "s3", "the access key ID is not known to AWS"),
    ("SignatureDoesNotMatch", "s3", "the secret access key does not belong to the access key"),
    ("ExpiredToken", "s3", "the session token has expired"),
    ("UnrecognizedClientException", "lambda", "the access key ID is not known to AWS"),
    ("InvalidSignatureException", "lambda", "the secret access key does not belong"),
    ("ExpiredTokenException", "lambda", "the session token has expired"),
])
def test_bad_credentials_are_named_for_what_they_are(
        tmp_path: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch, code: str,
        service: str, meaning: str) -> None:
    """S3's and Lambda's answers to bad credentials say what is wrong with them (not "access
    denied ... lacks s3:GetObject"), exit 1."""
    boto3.client("s3").create_bucket(Bucket="state-bucket")
    project(tmp_path, regions=("us-east-1",), names=("alpha",))
    manifest = tmp_path / "layers.yaml"
    manifest.write_text(manifest.read_text(encoding="utf-8").replace(
        "version: 1\n", "version: 1\nstate: s3://state-bucket/layers\n"), encoding="utf-8")
    if service == "s3":
        rule = faultproxy.Rule(faultproxy.Reply(403, _s3_error(code, "no"), "application/xml"),
                               service="s3", times=None)
    else:
        rule = faultproxy.reject(status=403, code=code, message="no", service="lambda")
    with faultproxy.running(moto_url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        proxy.add(rule)
        result = invoke(tmp_path, "plan")
    assert result.returncode == 1
    assert "AWS did not accept the credentials for " in result.stderr
    assert meaning in result.stderr and code in result.stderr, result.stderr
    assert "access denied" not in result.stderr and "lacks" not in result.stderr


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A loopback endpoint that accepts every connection (the kernel's backlog does) and
    never answers a byte."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(128)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def _silent_env(endpoint: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    return env | {"AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "k",
                  "AWS_SECRET_ACCESS_KEY": "s", "AWS_CONFIG_FILE": os.devnull,
                  "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_ENDPOINT_URL": endpoint}


@pytest.mark.parametrize("state", ["", "state: s3://state-bucket/layers\n"],
                         ids=["lockfile", "S3 state"])
def test_timeout_bounds_a_silent_endpoint(tmp_path: Path, silent_endpoint: str,
                                          state: str) -> None:
    """`--timeout 1` with an endpoint that never answers: plan fails in seconds (Lambda's
    client and the S3 state's alike), exit 1, naming the endpoint and the way to wait longer."""
    project(tmp_path, regions=("us-east-1",), names=("alpha",))
    manifest = tmp_path / "layers.yaml"
    manifest.write_text(manifest.read_text(encoding="utf-8").replace(
        "version: 1\n", f"version: 1\n{state}"), encoding="utf-8")
    started = time.monotonic()
    result = invoke(tmp_path, "plan", "--timeout", "1", "--max-attempts", "2",
                    env=_silent_env(silent_endpoint))
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"the AWS endpoint {silent_endpoint} did not answer" in result.stderr, result.stderr
    assert "--timeout" in result.stderr
    assert elapsed < 15, elapsed


def test_a_silent_endpoint_fails_within_a_minute_by_default(tmp_path: Path,
                                                            silent_endpoint: str) -> None:
    """Without --timeout or --max-attempts (botocore's 3 attempts), a silent endpoint fails a
    plan within a minute, naming it (botocore's own 60 s read timeout made it 3 minutes)."""
    project(tmp_path, regions=("us-east-1",), names=("alpha",))
    started = time.monotonic()
    result = invoke(tmp_path, "plan", env=_silent_env(silent_endpoint))
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"the AWS endpoint {silent_endpoint} did not answer" in result.stderr, result.stderr
    assert elapsed < 60, elapsed


def test_an_oversized_zip_is_counted_once_as_an_error(tmp_path: Path, moto_url: str) -> None:
    """A zip over 50 MB without an artifact_bucket is one error in text, JSON and Markdown,
    and no "to create" besides; a small layer beside it is still planned."""
    project(tmp_path, regions=("us-east-1",), names=("small",))
    with zipfile.ZipFile(tmp_path / "big.zip", "w", zipfile.ZIP_STORED) as big:
        big.writestr("python/blob.bin", os.urandom(52_428_800 + 1))
    manifest = tmp_path / "layers.yaml"
    manifest.write_text(manifest.read_text(encoding="utf-8")
                        + "  big:\n    content: {zip: big.zip}\n", encoding="utf-8")
    text = invoke(tmp_path, "plan")
    document = json.loads(invoke(tmp_path, "plan", "--format", "json").stdout)
    markdown = invoke(tmp_path, "plan", "--format", "markdown").stdout
    assert "1 to create" in text.stdout and "1 in error" in text.stdout, text.stdout
    assert "over Lambda's 52,428,800-byte limit" in text.stdout + text.stderr
    assert [change["layer"] for change in document["changes"]] == ["small"]
    assert document["summary"]["create"] == 1
    assert [error["layer"] for error in document["errors"]] == ["big"]
    assert "1 to create" in markdown and "`big`" in markdown
