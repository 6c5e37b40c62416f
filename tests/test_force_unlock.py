"""`force-unlock`: it refuses to release a lock whose holder is alive on this host (same host,
pid running and, for the lockfile, its flock held) unless `--force`, naming the holder and
why; for a lock held from another host it shows the lock's age before asking. The rule is
tested as a function, then through the installed CLI against moto (an apply held at the
fault proxy, in a process of its own, is the live holder) with both state backends."""

from __future__ import annotations

import datetime
import json
import os
import pty
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import faultproxy
import pytest
from clirun import RECONCILE, invoke, run

from reconciler import errors, ports, state

REGION = "us-east-1"
BUCKET = "team-state"
LOCK_KEY = "team/layers.lock.json.lock"
NOW = datetime.datetime(2026, 12, 2, 10, 0, 0, tzinfo=datetime.timezone.utc)


def holder_of(*, host: str, created: datetime.datetime = NOW, pid: int = 4242,
              lock_id: str = "6f1c") -> errors.LockHolder:
    """A holder record of `host`."""
    return errors.LockHolder(lock_id=lock_id, who="ci", host=host, pid=pid,
                             operation="apply", created=created.isoformat(timespec="seconds"),
                             path="layers.yaml")


# --- the rule --------------------------------------------------------------------------------


@pytest.mark.parametrize(("ago", "words"), [
    (datetime.timedelta(seconds=42), "42 s"),
    (datetime.timedelta(minutes=5, seconds=3), "5 min 3 s"),
    (datetime.timedelta(hours=3, minutes=12, seconds=9), "3 h 12 min"),
    (datetime.timedelta(days=2, hours=4, minutes=1), "2 d 4 h"),
])
def test_the_age_of_a_lock_is_told_in_words(ago: datetime.timedelta, words: str) -> None:
    """A lock's age reads as its two largest units, from the record's created time."""
    assert state.lock_age(holder_of(host="h", created=NOW - ago), now=NOW) == words


def test_a_lock_without_a_readable_time_has_no_age() -> None:
    """An unreadable, naive or future created time gives no age rather than a wrong one."""
    for created in ("unknown", "2026-12-02T10:00:00", "2026-12-02T11:00:00+00:00"):
        record = errors.LockHolder(lock_id="i", who="w", host="h", pid=1, operation="apply",
                                   created=created, path="p")
        assert state.lock_age(record, now=NOW) is None


def test_a_holder_alive_here_is_refused_without_force() -> None:
    """A live holder on this host: StateLocked naming it and why, with --force in the hint;
    with force the question says that it is alive."""
    alive = ports.HeldLock(holder=holder_of(host="this-host"),
                           alive_here="pid 4242 is running")
    with pytest.raises(errors.StateLocked) as refused:
        state.force_unlock_question(alive, lock_id="6f1c", location="s3://b/k", force=False)
    assert "pid 4242" in refused.value.message and "ci on this-host" in refused.value.message
    assert "alive on this host" in refused.value.message
    assert "--force" in (refused.value.hint or "")
    question = state.force_unlock_question(alive, lock_id="6f1c", location="s3://b/k",
                                           force=True)
    assert "alive on this host" in question and "--force" in question


def test_another_hosts_lock_is_asked_about_with_its_age() -> None:
    """A lock of another host is not refused; the question names that host and how old the
    lock is."""
    created = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(
        hours=3, minutes=5, seconds=10)
    held = ports.HeldLock(holder=holder_of(host="ci-runner-7", created=created),
                          alive_here=None)
    question = state.force_unlock_question(held, lock_id="6f1c", location="s3://b/k",
                                           force=False)
    assert "another host" in question and "ci-runner-7" in question
    assert "3 h 5 min ago" in question


@pytest.mark.parametrize("held", [None, ports.HeldLock(holder=holder_of(host="h"),
                                                       alive_here=None)],
                         ids=["not-locked", "another-id"])
def test_a_lock_that_is_not_there_is_an_error(held: ports.HeldLock | None) -> None:
    """No lock, or a lock of another id, is a StateError before any question."""
    with pytest.raises(errors.StateError) as failed:
        state.force_unlock_question(held, lock_id="not-it", location="s3://b/k", force=True)
    assert not isinstance(failed.value, errors.StateLocked)


# --- through the CLI --------------------------------------------------------------------------


@pytest.fixture
def proxy(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[faultproxy.FaultProxy]:
    """A fault proxy in front of moto (with the state bucket); the CLI talks to the proxy."""
    boto3.client("s3", region_name=REGION, endpoint_url=moto_url).create_bucket(Bucket=BUCKET)
    with faultproxy.running(moto_url) as running_proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", running_proxy.url)
        yield running_proxy
        assert running_proxy.errors == []


def make_checkout(folder: Path, *, s3_state: bool) -> Path:
    """A checkout of one folder layer, its state in S3 or in the lockfile."""
    source = folder / "src" / "x"
    source.mkdir(parents=True)
    (source / "x.py").write_text("X = 1\n")
    lines = ["version: 1", f"region: {REGION}"]
    if s3_state:
        lines.append(f"state: s3://{BUCKET}/team")
    lines += ["layers:", "  x:", "    content: {path: src/x, prefix: python}"]
    (folder / "layers.yaml").write_text("\n".join(lines) + "\n")
    return folder


def s3_keys(moto_url: str) -> list[str]:
    """Every key of the state bucket, asked of moto directly."""
    listing = boto3.client("s3", region_name=REGION, endpoint_url=moto_url).list_objects_v2(
        Bucket=BUCKET)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def lock_record(checkout: Path, moto_url: str, *, s3_state: bool) -> bytes | None:
    """The lock record's bytes as stored (None: not locked)."""
    if not s3_state:
        path = checkout / ".layers.lock.json.lock"
        return path.read_bytes() if path.exists() else None
    client = boto3.client("s3", region_name=REGION, endpoint_url=moto_url)
    try:
        return bytes(client.get_object(Bucket=BUCKET, Key=LOCK_KEY)["Body"].read())
    except client.exceptions.NoSuchKey:
        return None


@pytest.mark.parametrize("s3_state", [True, False], ids=["s3", "lockfile"])
def test_a_live_holder_on_this_host_is_refused_unless_forced(
        tmp_path: Path, proxy: faultproxy.FaultProxy, moto_url: str, s3_state: bool) -> None:
    """While an apply on this host holds the lock (held at its publish), `force-unlock ID
    --yes` is refused (exit 1) naming its pid and that it is alive, and the lock stays;
    `--force --yes` releases it."""
    checkout = make_checkout(tmp_path / "repo", s3_state=s3_state)
    rule = faultproxy.hold(forward=False, operation="PublishLayerVersion")
    proxy.add(rule)
    assert RECONCILE and isinstance(rule.action, faultproxy.Hold)
    applying = subprocess.Popen([RECONCILE, "apply", "--yes"], cwd=checkout,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=dict(os.environ))
    try:
        rule.action.wait_arrived()
        record = lock_record(checkout, moto_url, s3_state=s3_state)
        assert record is not None
        lock_id = json.loads(record)["lock_id"]

        refused = invoke(checkout, "force-unlock", lock_id, "--yes")

        assert refused.returncode == 1
        assert f"pid {applying.pid}" in refused.stderr
        assert "alive on this host" in refused.stderr and "--force" in refused.stderr
        if not s3_state:
            assert "flock" in refused.stderr
        assert lock_record(checkout, moto_url, s3_state=s3_state) == record

        forced = invoke(checkout, "force-unlock", lock_id, "--yes", "--force")

        assert forced.returncode == 0, forced.stderr
        assert f"Released the lock {lock_id}" in forced.stdout
        assert lock_record(checkout, moto_url, s3_state=s3_state) is None
    finally:
        applying.kill()
        applying.wait(timeout=60)


def put_foreign_lock(moto_url: str, *, ago: datetime.timedelta) -> str:
    """A lock object as a run on another host left it `ago`; its lock id."""
    created = datetime.datetime.now(datetime.timezone.utc) - ago
    record = state.encode_record(holder_of(host="ci-runner-7", created=created),
                                 lock_id="6f1c-elsewhere")
    boto3.client("s3", region_name=REGION, endpoint_url=moto_url).put_object(
        Bucket=BUCKET, Key=LOCK_KEY, Body=record)
    return "6f1c-elsewhere"


def test_another_hosts_lock_shows_its_age_in_the_question(
        tmp_path: Path, proxy: faultproxy.FaultProxy, moto_url: str) -> None:
    """On a terminal, the question about another host's lock names that host and the
    lock's age; answering yes releases it."""
    checkout = make_checkout(tmp_path / "repo", s3_state=True)
    lock_id = put_foreign_lock(moto_url, ago=datetime.timedelta(hours=3, minutes=5, seconds=9))
    controller, terminal = pty.openpty()
    try:
        os.write(controller, b"yes\n")
        answered = run(checkout, "force-unlock", lock_id, stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)

    assert answered.returncode == 0, answered.stderr
    question = answered.stdout.split("Enter a value")[0]
    assert "ci-runner-7" in question and "another host" in question
    assert "3 h 5 min ago" in question
    assert LOCK_KEY not in s3_keys(moto_url)


def test_another_hosts_lock_with_yes_prints_its_age_and_without_it_is_refused(
        tmp_path: Path, proxy: faultproxy.FaultProxy, moto_url: str) -> None:
    """Without a terminal and without --yes the release is refused and the lock stays;
    with --yes it is released and the output names the host and the lock's age."""
    checkout = make_checkout(tmp_path / "repo", s3_state=True)
    lock_id = put_foreign_lock(moto_url, ago=datetime.timedelta(days=1, hours=2, minutes=3))

    refused = invoke(checkout, "force-unlock", lock_id)

    assert refused.returncode == 1
    assert "--yes" in refused.stderr
    assert LOCK_KEY in s3_keys(moto_url)

    released = invoke(checkout, "force-unlock", lock_id, "--yes")

    assert released.returncode == 0, released.stderr
    assert "ci-runner-7" in released.stdout and "1 d 2 h ago" in released.stdout
    assert LOCK_KEY not in s3_keys(moto_url)
