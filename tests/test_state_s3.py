"""The S3 state backend beyond the port's contract: it refuses a store that ignores
conditional writes before taking any lock, it keeps the lockfile's canonical bytes, and S3's
own failures are clear StateErrors. moto serves S3; a botocore `before-send` hook that
strips the conditional headers plays an unsafe store."""

from __future__ import annotations

import dataclasses
import datetime
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any, Literal

import pytest
from fakes_state import MemoryObjectStore

from reconciler import aws, errors, model, ports, state, statefile
from reconciler.state import s3 as s3_state

BUCKET = "state-bucket"
ENTRY = model.LockEntry(fingerprint="f" * 64, content_sha256="c" * 64, code_sha256="x" * 43 + "=",
                        code_size=123, version=4,
                        layer_version_arn="arn:aws:lambda:us-east-1:123456789012:layer:a:4",
                        settings_sha256="s" * 64)
ONE = model.Lock().with_entry("a", "us-east-1", entry=ENTRY)
LostReply = Literal["retried", "no-reply"]


def holder() -> errors.LockHolder:
    """This process's holder record."""
    return state.new_holder(operation="apply", path="layers.yaml")


@pytest.fixture
def store(moto_url: str) -> aws.Boto3ObjectStore:
    """A boto3 object store on a fresh moto bucket."""
    object_store = aws.Boto3ObjectStore(bucket=BUCKET)
    object_store.client.create_bucket(Bucket=BUCKET)
    return object_store


def keys(store: aws.Boto3ObjectStore) -> list[str]:
    """Every key in the bucket, straight from S3."""
    listing = store.client.list_objects_v2(Bucket=BUCKET)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def strip_headers(*names: str) -> Any:
    """A before-send hook that removes `names` from each request, as an unsafe store would
    ignore them."""
    def hook(request: Any, **_: Any) -> None:
        for name in names:
            if name in request.headers:
                del request.headers[name]
    return hook


@pytest.mark.parametrize("stripped", [("If-None-Match", "If-Match"), ("If-None-Match",),
                                      ("If-Match",)],
                         ids=["both", "if-none-match", "if-match"])
def test_a_store_ignoring_conditions_is_refused_before_any_lock(
        store: aws.Boto3ObjectStore, stripped: tuple[str, ...]) -> None:
    """A store that accepts what a condition should refuse is StoreUnsafe, naming the
    bucket and endpoint; no lock object is made and the probe object is gone."""
    store.client.meta.events.register("before-send.s3.PutObject", strip_headers(*stripped))
    backend = s3_state.S3StateBackend(store, prefix="team/layers")
    with pytest.raises(errors.StoreUnsafe) as refused:
        backend.lock(holder())
    assert BUCKET in refused.value.message and store.endpoint in refused.value.message
    assert stripped[0] in refused.value.message
    assert keys(store) == []
    with pytest.raises(errors.StoreUnsafe):
        backend.write(ONE, expected_revision=ports.NO_REVISION)
    assert keys(store) == []


def test_an_honest_store_passes_the_probe_once_and_keeps_no_probe(
        store: aws.Boto3ObjectStore) -> None:
    """On moto the probe passes; after lock and write only the state and lock objects exist."""
    backend = s3_state.S3StateBackend(store, prefix="team/layers")
    lock_id = backend.lock(holder())
    backend.write(ONE, expected_revision=ports.NO_REVISION)
    assert keys(store) == ["team/layers/layers.lock.json", "team/layers/layers.lock.json.lock"]
    backend.unlock(lock_id)
    assert keys(store) == ["team/layers/layers.lock.json"]


def test_the_state_object_holds_the_lockfiles_canonical_bytes(
        store: aws.Boto3ObjectStore) -> None:
    """The S3 state object is byte for byte what the local lockfile would be; its revision
    is the ETag S3 reports."""
    backend = s3_state.S3StateBackend(store, prefix="/team/layers/")
    revision = backend.write(ONE, expected_revision=ports.NO_REVISION)
    stored = store.client.get_object(Bucket=BUCKET, Key="team/layers/layers.lock.json")
    assert stored["Body"].read() == statefile.encode(ONE).encode()
    assert stored["ETag"] == revision
    assert backend.location == f"s3://{BUCKET}/team/layers/layers.lock.json"


def test_a_write_after_the_state_was_deleted_is_a_conflict(
        store: aws.Boto3ObjectStore) -> None:
    """A write at a revision whose object is gone (If-Match answered 404) is StateConflict."""
    backend = s3_state.S3StateBackend(store, prefix="p")
    revision = backend.write(ONE, expected_revision=ports.NO_REVISION)
    store.client.delete_object(Bucket=BUCKET, Key="p/layers.lock.json")
    with pytest.raises(errors.StateConflict):
        backend.write(ONE, expected_revision=revision)
    assert keys(store) == []


def test_the_lock_object_names_the_holder(store: aws.Boto3ObjectStore) -> None:
    """The lock object is the holder record: another run's refusal names who holds it."""
    lock_id = s3_state.S3StateBackend(store, prefix="p").lock(holder())
    record = state.decode_record(
        store.client.get_object(Bucket=BUCKET, Key="p/layers.lock.json.lock")["Body"].read())
    assert record is not None and record.lock_id == lock_id
    with pytest.raises(errors.StateLocked) as refused:
        s3_state.S3StateBackend(store, prefix="p").lock(holder())
    assert refused.value.holder == record


def test_the_probe_runs_once_per_backend() -> None:
    """The store is proven once; later locks and writes send no more probes."""
    memory = MemoryObjectStore()
    backend = s3_state.S3StateBackend(memory, prefix="p")
    backend.check_writable()
    backend.unlock(backend.lock(holder()))
    backend.write(ONE, expected_revision=ports.NO_REVISION)
    probes = [key for verb, key in memory.calls if verb == "put" and "probe" in key]
    assert len(probes) == 3  # create, create again (refused), write on a wrong ETag (refused)
    assert sorted(memory.objects) == ["p/layers.lock.json"]


def test_an_unsafe_memory_store_is_refused_too() -> None:
    """The fake store that ignores conditions is refused the same way, state untouched."""
    memory = MemoryObjectStore(honours_conditions=False)
    with pytest.raises(errors.StoreUnsafe, match="If-None-Match"):
        s3_state.S3StateBackend(memory, prefix="p").check_writable()
    assert memory.objects == {}


def test_a_missing_bucket_is_a_clear_state_error(moto_url: str) -> None:
    """A state bucket that does not exist is a StateError naming it, with a hint."""
    backend = s3_state.S3StateBackend(aws.Boto3ObjectStore(bucket="no-such-bucket"),
                                      prefix="p")
    with pytest.raises(errors.StateError) as failure:
        backend.lock(holder())
    assert "no-such-bucket" in failure.value.message
    assert failure.value.hint and "create the bucket" in failure.value.hint
    with pytest.raises(errors.StateError, match="no-such-bucket"):
        backend.read()


@pytest.mark.parametrize(("url", "parsed"), [
    ("s3://my-state/layers", ("my-state", "layers")),
    ("s3://my-state/team/layers/", ("my-state", "team/layers")),
    ("s3://my-state", ("my-state", "")),
])
def test_state_urls_parse_into_bucket_and_prefix(url: str, parsed: tuple[str, str]) -> None:
    """`state: s3://bucket/prefix` gives the bucket and the prefix without slashes."""
    assert s3_state.parse_state_url(url) == parsed


def test_a_state_url_that_is_not_s3_is_refused() -> None:
    """A state location that is not s3://BUCKET[/PREFIX] is a StateError."""
    with pytest.raises(errors.StateError):
        s3_state.parse_state_url("https://example.com/state")


# --- lost replies: the outcome is read back ---------------------------------------------------


@pytest.mark.parametrize("how", ["retried", "no-reply"])
def test_a_lost_reply_on_the_lock_create_still_holds_the_lock(how: LostReply) -> None:
    """The lock's create made the object but its reply was lost (botocore's retry answered
    412, or no answer came): lock() reads it back, holds the lock, and unlock removes it."""
    memory = MemoryObjectStore(lose_replies={"p/layers.lock.json.lock": (1, how)})
    backend = s3_state.S3StateBackend(memory, prefix="p")
    lock_id = backend.lock(holder())
    record = state.decode_record(memory.objects["p/layers.lock.json.lock"][0])
    assert record is not None and record.lock_id == lock_id
    backend.unlock(lock_id)
    assert sorted(memory.objects) == []


def test_a_lock_create_that_failed_without_an_object_is_reported() -> None:
    """A lock create that failed and made nothing (read back: no lock object) raises the
    store's own error rather than claiming the lock."""
    class RefusingStore(MemoryObjectStore):
        def put(self, key: str, data: bytes, *, if_match: str | None = None,
                if_none_match: bool = False) -> str:
            if key.endswith(".lock"):
                raise errors.AwsError("PutObject: the connection was reset")
            return super().put(key, data, if_match=if_match, if_none_match=if_none_match)

    memory = RefusingStore()
    with pytest.raises(errors.AwsError, match="reset"):
        s3_state.S3StateBackend(memory, prefix="p").lock(holder())
    assert sorted(memory.objects) == []


@pytest.mark.parametrize("how", ["retried", "no-reply"])
def test_a_lost_reply_on_the_probe_create_passes_the_probe(how: LostReply) -> None:
    """The probe's create was done but its reply lost: the proof goes on from the object it
    reads back, the store is proven, and no probe object is left."""
    memory = MemoryObjectStore(lose_replies={"p/.reconcile-probe-*": (1, how)})
    backend = s3_state.S3StateBackend(memory, prefix="p")
    backend.check_writable()
    assert memory.lose_replies["p/.reconcile-probe-*"][0] == 0  # the fault did happen
    assert sorted(memory.objects) == []
    backend.unlock(backend.lock(holder()))


@pytest.mark.parametrize("how", ["retried", "no-reply"])
def test_a_lost_reply_on_a_state_write_returns_the_new_revision(how: LostReply) -> None:
    """A state write done whose reply was lost (the retry refused by its own new ETag) is
    this run's write: it returns the ETag read back, not a StateConflict."""
    memory = MemoryObjectStore()
    backend = s3_state.S3StateBackend(memory, prefix="p")
    first = backend.write(ONE, expected_revision=ports.NO_REVISION)
    two = ONE.with_entry("b", "eu-west-1", entry=ENTRY)
    memory.lose_replies["p/layers.lock.json"] = (1, how)
    second = backend.write(two, expected_revision=first)
    assert backend.read() == ports.Snapshot(lock=two, revision=second)
    with pytest.raises(errors.StateConflict):  # a real conflict is still one
        backend.write(ONE, expected_revision=first)


# --- probe objects that killed runs left ------------------------------------------------------


def dead_pid() -> int:
    """The pid of a process of this host that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def probe(prefix: str, *, host: str | None = None, pid: int) -> str:
    """A probe key as a run of `host` (this one's tag by default) and `pid` names it."""
    return f"{prefix}.reconcile-probe-h{host or state.host_tag()}-p{pid}-0123abcd"


def stopped_at(moment: datetime.datetime) -> Callable[[], datetime.datetime]:
    """A clock that always reads `moment`."""
    return lambda: moment


def test_leftover_probes_are_removed_only_when_stale() -> None:
    """Proving the store removes the probes of dead runs of this host and probes older than
    an hour; a fresh probe of another host or of a live process, the lock, the state and
    anything below another folder are kept."""
    now = datetime.datetime.now(datetime.timezone.utc)
    memory = MemoryObjectStore()
    old = now - datetime.timedelta(seconds=s3_state.STALE_PROBE_SECONDS + 60)
    gone = {probe("p/", pid=dead_pid()): now,
            probe("p/", host="0badc0de", pid=1): old,
            "p/.reconcile-probe-2f0e3a52-9a7c-4f4e-8e8b-4b1a1d6c0c11": old}  # older format
    kept = {probe("p/", pid=os.getppid()): now,
            probe("p/", host="0badc0de", pid=1): now,
            "p/.reconcile-probe-2f0e3a52-0000-4f4e-8e8b-4b1a1d6c0c11": now,
            probe("p/sub/", pid=dead_pid()): old,
            "p/layers.lock.json": old, "p/layers.lock.json.lock": old}
    for key, when in {**gone, **kept}.items():
        memory.clock = stopped_at(when)
        memory.put(key, b"x")
    memory.clock = lambda: now

    s3_state.S3StateBackend(memory, prefix="p").check_writable()

    assert sorted(memory.objects) == sorted(kept)


def test_a_refused_listing_does_not_fail_the_run() -> None:
    """A store that refuses the listing (no s3:ListBucket) keeps its leftovers, and the
    proof, lock and write go on."""
    class NoListing(MemoryObjectStore):
        def listing(self, prefix: str) -> list[ports.StoredKey]:
            raise errors.StateError(f"access denied: ListBucket {prefix}")

    memory = NoListing()
    leftover = probe("p/", pid=dead_pid())
    memory.put(leftover, b"x")
    backend = s3_state.S3StateBackend(memory, prefix="p")
    backend.unlock(backend.lock(holder()))
    assert sorted(memory.objects) == [leftover]


def test_leftover_probes_are_listed_and_removed_on_s3(store: aws.Boto3ObjectStore) -> None:
    """On moto: a dead run's probe beside the state is removed by the next proof, through
    ListObjectsV2 under the probe prefix."""
    leftover = probe("team/", pid=dead_pid())
    store.client.put_object(Bucket=BUCKET, Key=leftover, Body=b"probe\n")
    backend = s3_state.S3StateBackend(store, prefix="team")
    backend.write(ONE, expected_revision=ports.NO_REVISION)
    assert keys(store) == ["team/layers.lock.json"]


# --- who holds the lock, for force-unlock -----------------------------------------------------


def record_of(*, host: str, pid: int, lock_id: str = "the-id") -> bytes:
    """A lock record naming `host` and `pid`."""
    return state.encode_record(
        dataclasses.replace(holder(), host=host, pid=pid), lock_id=lock_id)


def test_current_lock_says_whether_its_holder_is_alive_here() -> None:
    """A lock naming this host and a running pid is alive here; a dead pid, or another host
    (whose processes this host cannot see), is not; no lock object is None."""
    memory = MemoryObjectStore()
    backend = s3_state.S3StateBackend(memory, prefix="p")
    assert backend.current_lock() is None
    here, live = socket.gethostname(), os.getppid()
    for host, pid, alive in ((here, live, True), (here, dead_pid(), False),
                             ("ci-runner-7", live, False)):
        memory.objects["p/layers.lock.json.lock"] = (record_of(host=host, pid=pid), '"e"')
        current = backend.current_lock()
        assert current is not None and current.holder.pid == pid
        assert (current.alive_here is not None) is alive, (host, pid)
        if alive:
            assert f"pid {pid}" in (current.alive_here or "")


def drop_etag(operation: str) -> Any:
    """A botocore after-call hook that removes the ETag from `operation`'s parsed answer."""

    def hook(parsed: dict[str, Any], **_: Any) -> None:
        parsed.pop("ETag", None)

    return f"after-call.s3.{operation}", hook


def test_an_answer_without_an_etag_is_a_state_error_not_a_key_error(
        store: aws.Boto3ObjectStore) -> None:
    """GetObject and PutObject answers without an ETag are one StateError naming the call;
    a state write whose answer lost it is read back and counts as done."""
    store.put("x.json", b"{}\n")
    event, hook = drop_etag("GetObject")
    store.client.meta.events.register(event, hook)
    with pytest.raises(errors.StateError, match="S3 answered GetObject without an ETag"):
        store.get("x.json")
    store.client.meta.events.unregister(event, hook)
    event, hook = drop_etag("PutObject")
    store.client.meta.events.register(event, hook)
    with pytest.raises(errors.StateError, match="S3 answered PutObject without an ETag"):
        store.put("y.json", b"{}\n")
    backend = s3_state.S3StateBackend(store, prefix="team")
    lock = model.Lock()
    revision = backend.write(lock, expected_revision=ports.NO_REVISION)
    store.client.meta.events.unregister(event, hook)
    assert revision == store.get("team/layers.lock.json")[1]  # type: ignore[index]
