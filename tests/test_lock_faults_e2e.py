"""Lost replies on the S3 state's lock and store probe, end to end: the installed `reconcile`
CLI against a real moto server, with the fault proxy in front of it resetting the connection
after S3 did the work (or answering 500 after it), so that botocore's retry of the
conditional create is answered 412 by the object its first attempt made. The run must read
the object back, hold its own lock, pass its own probe, and leave nothing behind; a probe
left by a killed run is removed by the next run."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import faultproxy
import pytest
from clirun import RECONCILE, invoke

from reconciler import statefile

REGION = "us-east-1"
BUCKET = "team-state"
LOCK_KEY = "team/layers.lock.json.lock"
STATE_KEY = "team/layers.lock.json"
PROBES = "team/.reconcile-probe-*"


@pytest.fixture
def proxy(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[faultproxy.FaultProxy]:
    """A fault proxy in front of the freshly reset moto server, with the state bucket; the
    CLI talks to the proxy."""
    boto3.client("s3", region_name=REGION, endpoint_url=moto_url).create_bucket(Bucket=BUCKET)
    with faultproxy.running(moto_url) as running_proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", running_proxy.url)
        yield running_proxy
        assert running_proxy.errors == []


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout of two folder layers whose state is in S3."""
    folder = tmp_path / "repo"
    lines = ["version: 1", f"region: {REGION}", f"state: s3://{BUCKET}/team", "layers:"]
    for name in ("x", "y"):
        source = folder / "src" / name
        source.mkdir(parents=True)
        (source / f"{name}.py").write_text(f"NAME = {name!r}\n")
        lines += [f"  {name}:", f"    content: {{path: src/{name}, prefix: python}}"]
    (folder / "layers.yaml").write_text("\n".join(lines) + "\n")
    return folder


def s3_keys(moto_url: str) -> list[str]:
    """Every key of the state bucket, asked of moto directly."""
    listing = boto3.client("s3", region_name=REGION, endpoint_url=moto_url).list_objects_v2(
        Bucket=BUCKET)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def recorded(moto_url: str) -> dict[str, int]:
    """layer -> recorded version in the S3 state."""
    body = boto3.client("s3", region_name=REGION, endpoint_url=moto_url).get_object(
        Bucket=BUCKET, Key=STATE_KEY)["Body"].read()
    lock = statefile.decode(body.decode("utf-8"), file=STATE_KEY)
    return {layer: entry.version for (layer, _), entry in lock.entries.items()}


# How a reply is lost: a reset after S3 did the work, retried by botocore (its retry meets
# the object: 412); the same with no retry (--max-attempts 1: the run sees no answer at all);
# a 500 after the work, retried (412 again).
# fault name -> (the rule for a key, the extra apply options)
LOST_REPLIES: dict[str, tuple[Callable[[str], faultproxy.Rule], tuple[str, ...]]] = {
    "reset-then-retry": (lambda key: faultproxy.reset_after_forward(
        operation="PutObject", key=key), ()),
    "reset-no-retry": (lambda key: faultproxy.reset_after_forward(
        operation="PutObject", key=key), ("--max-attempts", "1")),
    "500-then-retry": (lambda key: faultproxy.server_error_after_forward(
        operation="PutObject", key=key), ()),
}


@pytest.mark.parametrize("fault", sorted(LOST_REPLIES))
def test_a_lost_reply_on_the_lock_create_does_not_lock_the_run_out(
        checkout: Path, proxy: faultproxy.FaultProxy, moto_url: str, fault: str) -> None:
    """The lock object was made but its reply lost: the apply reads it back, holds its own
    lock, publishes and records both layers, releases the lock (no lock object left), and
    the next apply is not refused."""
    rule, extra = LOST_REPLIES[fault]
    proxy.add(rule(LOCK_KEY))

    applied = invoke(checkout, "apply", "--yes", *extra)

    assert applied.returncode == 0, applied.stderr
    assert "is locked by" not in applied.stderr
    assert proxy.rules[0].used == 1  # the fault did hit the lock's create
    assert recorded(moto_url) == {"x": 1, "y": 1}
    assert s3_keys(moto_url) == [STATE_KEY]
    again = invoke(checkout, "apply", "--yes")
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("fault", sorted(LOST_REPLIES))
def test_a_lost_reply_on_the_probe_does_not_fail_the_apply(
        checkout: Path, proxy: faultproxy.FaultProxy, moto_url: str, fault: str) -> None:
    """The probe object was made but its reply lost: the apply passes the probe from the
    object it reads back, publishes and records, and no probe object is left."""
    rule, extra = LOST_REPLIES[fault]
    proxy.add(rule(PROBES))

    applied = invoke(checkout, "apply", "--yes", *extra)

    assert applied.returncode == 0, applied.stderr
    assert "conditional write was refused" not in applied.stderr
    assert proxy.rules[0].used == 1
    assert recorded(moto_url) == {"x": 1, "y": 1}
    assert s3_keys(moto_url) == [STATE_KEY]


def test_a_lost_reply_on_a_state_write_is_not_a_conflict(
        checkout: Path, proxy: faultproxy.FaultProxy, moto_url: str) -> None:
    """The state object was written but the reply lost (the retry met the new ETag): the
    apply reads its own bytes back and succeeds rather than reporting a conflict."""
    proxy.add(faultproxy.reset_after_forward(operation="PutObject", key=STATE_KEY))

    applied = invoke(checkout, "apply", "--yes")

    assert applied.returncode == 0, applied.stderr
    assert proxy.rules[0].used == 1
    assert recorded(moto_url) == {"x": 1, "y": 1}
    assert s3_keys(moto_url) == [STATE_KEY]


def test_a_probe_left_by_a_killed_run_is_removed_by_the_next(
        checkout: Path, proxy: faultproxy.FaultProxy, moto_url: str) -> None:
    """A run SIGKILLed while its probe object exists leaves it in the state prefix; the
    next apply removes it (its pid is dead on this host) and leaves only the state, while a
    fresh probe of another host is left alone."""
    other_host = "team/.reconcile-probe-h00000000-p1-0123abcd"
    boto3.client("s3", region_name=REGION, endpoint_url=moto_url).put_object(
        Bucket=BUCKET, Key=other_host, Body=b"probe\n")
    held = faultproxy.hold(forward=True, operation="PutObject", key=PROBES)
    proxy.add(held)
    assert RECONCILE
    killed = subprocess.Popen([RECONCILE, "apply", "--yes"], cwd=checkout,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=dict(os.environ))
    try:
        assert isinstance(held.action, faultproxy.Hold)
        held.action.wait_arrived()
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=60)
    leftovers = [key for key in s3_keys(moto_url)
                 if key.startswith("team/.reconcile-probe-") and key != other_host]
    assert len(leftovers) == 1 and f"-p{killed.pid}-" in leftovers[0]

    applied = invoke(checkout, "apply", "--yes")

    assert applied.returncode == 0, applied.stderr
    assert s3_keys(moto_url) == sorted([STATE_KEY, other_host])
