"""The S3 state backend beyond the port's contract: it refuses a store that ignores
conditional writes before taking any lock, it keeps the lockfile's canonical bytes, and S3's
own failures are clear StateErrors. moto serves S3; a botocore `before-send` hook that
strips the conditional headers plays an unsafe store."""

from __future__ import annotations

from typing import Any

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
