"""Never publish twice: PublishLayerVersion through the fault proxy in front of a real moto
server. In process, the store's classification of each failure (PublishNotSent: no version;
PublishOutcomeUnknown: sent, no clear answer) and publish_exactly_once's look-then-adopt; end
to end, the installed `reconcile` CLI (run in process) makes exactly one version whatever
fault hits the publish, and records it."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
import zipfile
from pathlib import Path

import boto3
import clirun
import faultproxy
import pytest

from reconciler import aws, errors, model, publishing

REGION = "us-east-1"
LAYER = "shared-utils"
PUBLISH = "PublishLayerVersion"
SETTINGS = model.Settings.normalised(description="Shared helpers",
                                     compatible_runtimes=["python3.12"],
                                     compatible_architectures=["x86_64"], license_info="MIT")


def versions(moto_url: str, layer: str = LAYER) -> list[int]:
    """The versions moto holds for `layer`, asked directly (not through the proxy)."""
    client = boto3.client("lambda", region_name=REGION, endpoint_url=moto_url)
    return sorted(item["Version"]
                  for item in client.list_layer_versions(LayerName=layer)["LayerVersions"])


@pytest.fixture
def layer_zip(tmp_path: Path) -> Path:
    """A small layer zip."""
    path = tmp_path / "layer.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("python/util.py", "VALUE = 1\n")
    return path


def code_sha256(path: Path) -> str:
    """CodeSha256 as Lambda reports it."""
    return base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


def publish_once(store: aws.Boto3LayerStore, zip_path: Path) -> model.RemoteVersion:
    """One store.publish of LAYER in REGION."""
    return store.publish(region=REGION, layer_name=LAYER, settings=SETTINGS, zip_path=zip_path)


# --- the store: one send, and what its failure means --------------------------------------


def test_throttled_publish_is_not_retried_by_botocore(
        proxy: faultproxy.FaultProxy, moto_url: str, layer_zip: Path) -> None:
    """A 429 on a publish: one request, PublishNotSent with AWS's code, saying no version."""
    proxy.add(faultproxy.throttle(times=5, operation=PUBLISH))

    with pytest.raises(errors.PublishNotSent) as raised:
        publish_once(aws.Boto3LayerStore(), layer_zip)

    assert proxy.count(operation=PUBLISH) == 1
    assert raised.value.aws_code == "TooManyRequestsException"
    assert "made no version" in raised.value.message
    assert versions(moto_url) == []


@pytest.mark.parametrize("rule", [
    pytest.param(faultproxy.server_error_after_forward(operation=PUBLISH, times=None),
                 id="500-after-forward"),
    pytest.param(faultproxy.reset_after_forward(operation=PUBLISH, times=None),
                 id="reset-after-forward"),
])
def test_publish_without_a_clear_answer_is_sent_once_and_unknown(
        proxy: faultproxy.FaultProxy, moto_url: str, layer_zip: Path,
        monkeypatch: pytest.MonkeyPatch, rule: faultproxy.Rule) -> None:
    """A 500 or a reset after Lambda did the work: one request even with AWS_MAX_ATTEMPTS=5
    and --max-attempts 5, PublishOutcomeUnknown, and exactly the one version it made."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "5")
    proxy.add(rule)

    with pytest.raises(errors.PublishOutcomeUnknown) as raised:
        publish_once(aws.Boto3LayerStore(max_attempts=5), layer_zip)

    assert proxy.count(operation=PUBLISH) == 1
    assert "outcome is unknown" in raised.value.message
    assert versions(moto_url) == [1]


def test_rejected_publish_made_no_version(
        proxy: faultproxy.FaultProxy, moto_url: str, layer_zip: Path) -> None:
    """A 400 rejection: PublishNotSent, one request, no version."""
    proxy.add(faultproxy.reject(operation=PUBLISH, message="no such runtime"))

    with pytest.raises(errors.PublishNotSent) as raised:
        publish_once(aws.Boto3LayerStore(), layer_zip)

    assert raised.value.aws_code == "InvalidParameterValueException"
    assert "no such runtime" in raised.value.message
    assert "made no version" in raised.value.message
    assert proxy.count(operation=PUBLISH) == 1
    assert versions(moto_url) == []


def test_unreachable_endpoint_means_never_sent(aws_isolated: None,
                                               monkeypatch: pytest.MonkeyPatch,
                                               layer_zip: Path) -> None:
    """Nothing listens at the endpoint: PublishNotSent, "never sent"."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(errors.PublishNotSent) as raised:
        publish_once(aws.Boto3LayerStore(endpoint_url=f"http://127.0.0.1:{port}"), layer_zip)

    assert "never sent" in raised.value.message


def test_missing_credentials_mean_never_sent(
        proxy: faultproxy.FaultProxy, monkeypatch: pytest.MonkeyPatch, layer_zip: Path) -> None:
    """No credentials: PublishNotSent with the credentials hint, and no request at all."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    with pytest.raises(errors.PublishNotSent) as raised:
        publish_once(aws.Boto3LayerStore(), layer_zip)

    assert "never sent" in raised.value.message
    assert raised.value.hint is not None and "AWS_PROFILE" in raised.value.hint
    assert proxy.calls == []


def test_reads_keep_botocores_default_retries(
        proxy: faultproxy.FaultProxy, moto_url: str, layer_zip: Path) -> None:
    """Without --max-attempts, reads are retried in botocore's standard mode (3 attempts):
    two 429s on ListLayerVersions are retried away."""
    publish_once(aws.Boto3LayerStore(), layer_zip)
    proxy.add(faultproxy.throttle(times=2, operation="ListLayerVersions"))

    latest = aws.Boto3LayerStore().latest_version(region=REGION, layer_name=LAYER)

    assert latest is not None and latest.version == 1
    assert proxy.count(operation="ListLayerVersions", status=429) == 2
    assert proxy.count(operation="ListLayerVersions", status=200) == 1


def test_versions_above_lists_every_version_above_with_its_code(
        moto_url: str, tmp_path: Path) -> None:
    """versions_above(version=1) gives versions 2 and 3, lowest first, with CodeSha256."""
    store = aws.Boto3LayerStore()
    zips = []
    for number in range(3):
        path = tmp_path / f"{number}.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("python/v.py", f"V = {number}\n")
        zips.append(path)
        publish_once(store, path)

    above = store.versions_above(region=REGION, layer_name=LAYER, version=1)

    assert [(item.version, item.code_sha256, item.settings) for item in above] == [
        (2, code_sha256(zips[1]), SETTINGS), (3, code_sha256(zips[2]), SETTINGS)]
    assert store.versions_above(region=REGION, layer_name=LAYER, version=3) == []
    assert store.versions_above(region=REGION, layer_name="never-published", version=0) == []


# --- publish_exactly_once over the real store ---------------------------------------------


def exactly_once(store: aws.Boto3LayerStore, zip_path: Path,
                 above_version: int = 0) -> publishing.Published:
    """publish_exactly_once of LAYER in REGION, without real waits."""
    return publishing.publish_exactly_once(
        store, region=REGION, layer_name=LAYER, settings=SETTINGS, zip_path=zip_path,
        code_sha256=code_sha256(zip_path), above_version=above_version, sleep=lambda _: None)


def test_reply_slower_than_the_read_timeout_makes_one_version(
        proxy: faultproxy.FaultProxy, moto_url: str, layer_zip: Path) -> None:
    """A publish whose reply comes after the read timeout: the version it made is found and
    adopted; no second send."""
    proxy.add(faultproxy.delay_reply(seconds=2.0, operation=PUBLISH))
    store = aws.Boto3LayerStore(read_timeout=0.5)

    result = exactly_once(store, layer_zip)

    assert (result.adopted, result.sends, result.version.version) == (True, 1, 1)
    assert proxy.count(operation=PUBLISH) == 1
    assert versions(moto_url) == [1]


def test_failed_lookup_never_sends_blind(
        proxy: faultproxy.FaultProxy, moto_url: str, layer_zip: Path) -> None:
    """A reset publish, then every ListLayerVersions fails: PublishOutcomeUnknown, and the
    publish was sent once only."""
    proxy.add(faultproxy.reset_after_forward(operation=PUBLISH, times=None),
              faultproxy.reject(status=500, code="ServiceException",
                                operation="ListLayerVersions"))

    with pytest.raises(errors.PublishOutcomeUnknown) as raised:
        exactly_once(aws.Boto3LayerStore(max_attempts=1), layer_zip)

    assert proxy.count(operation=PUBLISH) == 1
    assert proxy.count(operation="ListLayerVersions") == 1
    assert "not sent again" in raised.value.message
    assert versions(moto_url) == [1]


def test_version_already_there_is_not_adopted(
        proxy: faultproxy.FaultProxy, moto_url: str, layer_zip: Path) -> None:
    """An identical version at the planned latest (v1) is not what a lost publish made: after
    a 500 that did not reach Lambda, the publish is sent again and makes v2."""
    publish_once(aws.Boto3LayerStore(), layer_zip)
    proxy.add(faultproxy.reject(status=500, code="ServiceException", operation=PUBLISH,
                                times=1))

    result = exactly_once(aws.Boto3LayerStore(), layer_zip, above_version=1)

    assert (result.adopted, result.sends, result.version.version) == (False, 2, 2)
    assert versions(moto_url) == [1, 2]


# --- end to end: the installed CLI --------------------------------------------------------

MANIFEST = f"""\
version: 1
region: {REGION}
layers:
  {LAYER}:
    description: Shared helpers
    compatible_runtimes: [python3.12]
    content: {{path: src, prefix: python}}
"""


@pytest.fixture
def project(tmp_path: Path, proxy: faultproxy.FaultProxy) -> Path:
    """A one-layer manifest, with the CLI's AWS_ENDPOINT_URL at the fault proxy."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "util.py").write_text("VALUE = 1\n")
    (tmp_path / "layers.yaml").write_text(MANIFEST)
    return tmp_path


def reconcile_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI in process with the test's environment; never a traceback."""
    return clirun.invoke(cwd, *args)


def recorded_version(project: Path) -> int:
    """The version the lockfile records for the layer."""
    lock = json.loads((project / "layers.lock.json").read_text())
    version: int = lock["layers"][LAYER][REGION]["version"]
    return version


def assert_converged(project: Path) -> None:
    """The next plan has nothing to do (the version made is recorded, nothing pending)."""
    again = reconcile_cli(project, "plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes." in again.stdout


def test_cli_throttled_publish_then_success(
        project: Path, proxy: faultproxy.FaultProxy, moto_url: str) -> None:
    """Two 429s on the publish, then success: exit 0, exactly one version, three sends."""
    proxy.add(faultproxy.throttle(times=2, operation=PUBLISH))

    applied = reconcile_cli(project, "apply", "--yes")

    assert applied.returncode == 0, applied.stderr
    assert versions(moto_url) == [1]
    assert proxy.count(operation=PUBLISH) == 3
    assert recorded_version(project) == 1


@pytest.mark.parametrize("rule", [
    pytest.param(faultproxy.server_error_after_forward(operation=PUBLISH), id="500-once"),
    pytest.param(faultproxy.reset_after_forward(operation=PUBLISH), id="reset-once"),
    pytest.param(faultproxy.reset_after_forward(operation=PUBLISH, times=None),
                 id="reset-every-time"),
    pytest.param(faultproxy.server_error_after_forward(operation=PUBLISH, times=None),
                 id="500-every-time"),
])
def test_cli_publish_that_lost_its_reply_makes_one_version(
        project: Path, proxy: faultproxy.FaultProxy, moto_url: str,
        rule: faultproxy.Rule) -> None:
    """Lambda made the version but the reply was a 500 or a reset (once, or on every send):
    exit 0, exactly one version, one send, recorded in the lockfile, and the next plan has
    no changes."""
    proxy.add(rule)

    applied = reconcile_cli(project, "apply", "--yes")

    assert applied.returncode == 0, applied.stderr
    assert versions(moto_url) == [1]
    assert proxy.count(operation=PUBLISH) == 1
    assert recorded_version(project) == 1
    assert_converged(project)


def test_cli_reads_throttled_twice_then_succeed(
        project: Path, proxy: faultproxy.FaultProxy, moto_url: str) -> None:
    """Two 429s on ListLayerVersions are retried by botocore: exit 0, one version."""
    proxy.add(faultproxy.throttle(times=2, operation="ListLayerVersions"))

    applied = reconcile_cli(project, "apply", "--yes")

    assert applied.returncode == 0, applied.stderr
    assert proxy.count(operation="ListLayerVersions", status=429) == 2
    assert versions(moto_url) == [1]
    assert_converged(project)


def test_cli_rejected_publish_says_it_made_no_version(
        project: Path, proxy: faultproxy.FaultProxy, moto_url: str) -> None:
    """A permanent 400 on the publish: exit 1, one send, a message that it made no version,
    no lockfile."""
    proxy.add(faultproxy.reject(operation=PUBLISH, message="Layers are limited"))

    applied = reconcile_cli(project, "apply", "--yes")

    assert applied.returncode == 1
    assert "made no version" in applied.stderr
    assert "Layers are limited" in applied.stderr
    assert "recorded in the lockfile (" in applied.stderr and "): nothing" in applied.stderr
    assert proxy.count(operation=PUBLISH) == 1
    assert versions(moto_url) == []
    assert not (project / "layers.lock.json").exists()


def test_cli_unknown_outcome_that_made_nothing_is_said_honestly(
        project: Path, proxy: faultproxy.FaultProxy, moto_url: str) -> None:
    """Every publish answered 500 without reaching Lambda: exit 1 after the bounded sends,
    and the message says the outcome is unknown, never that nothing was published."""
    proxy.add(faultproxy.reject(status=500, code="ServiceException", operation=PUBLISH))

    applied = reconcile_cli(project, "apply", "--yes")

    assert applied.returncode == 1
    assert "outcome is unknown" in applied.stderr
    assert "nothing" not in applied.stderr
    assert "adopts" in applied.stderr
    assert proxy.count(operation=PUBLISH) == 3
    assert versions(moto_url) == []
