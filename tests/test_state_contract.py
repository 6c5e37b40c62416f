"""The one contract of ports.StateBackend, run against every implementation: the local
lockfile (tmp_path), the S3 backend on the real moto server, and the S3 backend over the
in-memory object store of the tests (so that fake cannot drift from S3)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fakes_state import MemoryObjectStore

from reconciler import aws, errors, model, ports, state
from reconciler.state import local as local_state
from reconciler.state import s3 as s3_state

ENTRY = model.LockEntry(fingerprint="f" * 64, content_sha256="c" * 64, code_sha256="x" * 43 + "=",
                        code_size=123, version=4,
                        layer_version_arn="arn:aws:lambda:us-east-1:123456789012:layer:a:4",
                        settings_sha256="s" * 64)
ONE = model.Lock().with_entry("a", "us-east-1", entry=ENTRY)
TWO = ONE.with_entry("b", "eu-west-1", entry=ENTRY)
THREE = TWO.with_entry("c", "eu-west-1", entry=ENTRY)

# A new backend on the same state each call: another run, with its own client and handles.
BackendFactory = Callable[[], ports.StateBackend]


@pytest.fixture(params=["local", "s3-moto", "s3-memory"])
def new_backend(request: pytest.FixtureRequest, tmp_path: Path) -> BackendFactory:
    """A factory of backends that all keep one state, for each implementation."""
    if request.param == "local":
        return lambda: local_state.LocalStateBackend(tmp_path / "layers.lock.json")
    if request.param == "s3-moto":
        request.getfixturevalue("moto_url")
        aws.Boto3ObjectStore(bucket="state-bucket").client.create_bucket(Bucket="state-bucket")
        return lambda: s3_state.S3StateBackend(aws.Boto3ObjectStore(bucket="state-bucket"),
                                               prefix="team/layers")
    store = MemoryObjectStore()
    return lambda: s3_state.S3StateBackend(store, prefix="team/layers")


def holder(operation: str = "apply") -> errors.LockHolder:
    """This process's holder record for `operation`."""
    return state.new_holder(operation=operation, path="layers.yaml")


def test_a_new_state_reads_empty_with_no_revision(new_backend: BackendFactory) -> None:
    """A state never written reads as an empty lock at NO_REVISION."""
    assert new_backend().read() == ports.Snapshot(lock=model.Lock(), revision=ports.NO_REVISION)


def test_write_then_read_round_trips_with_the_new_revision(new_backend: BackendFactory) -> None:
    """What one run writes, another reads back, at the revision the write returned."""
    writer = new_backend()
    first = writer.write(ONE, expected_revision=ports.NO_REVISION)
    assert first != ports.NO_REVISION
    assert new_backend().read() == ports.Snapshot(lock=ONE, revision=first)
    second = writer.write(TWO, expected_revision=first)
    assert second != first
    assert new_backend().read() == ports.Snapshot(lock=TWO, revision=second)


def test_rewriting_the_same_lock_keeps_a_readable_revision(new_backend: BackendFactory) -> None:
    """Writing an unchanged lock succeeds and returns the revision read() then reports."""
    backend = new_backend()
    first = backend.write(ONE, expected_revision=ports.NO_REVISION)
    again = backend.write(ONE, expected_revision=first)
    assert backend.read() == ports.Snapshot(lock=ONE, revision=again)


def test_a_stale_revision_is_refused_and_nothing_changes(new_backend: BackendFactory) -> None:
    """A write naming a revision the state has moved past raises StateConflict, state kept."""
    first_run, second_run = new_backend(), new_backend()
    base = first_run.write(ONE, expected_revision=ports.NO_REVISION)
    read_by_second = second_run.read()
    moved = first_run.write(TWO, expected_revision=base)
    with pytest.raises(errors.StateConflict):
        second_run.write(THREE, expected_revision=read_by_second.revision)
    assert new_backend().read() == ports.Snapshot(lock=TWO, revision=moved)


def test_a_first_write_is_refused_when_a_state_appeared(new_backend: BackendFactory) -> None:
    """A write at NO_REVISION is refused once another run created the state."""
    new_backend().write(ONE, expected_revision=ports.NO_REVISION)
    with pytest.raises(errors.StateConflict):
        new_backend().write(TWO, expected_revision=ports.NO_REVISION)
    assert new_backend().read().lock == ONE


def test_check_writable_passes_for_a_writable_state(new_backend: BackendFactory) -> None:
    """check_writable() accepts a fresh state and leaves it unwritten."""
    backend = new_backend()
    backend.check_writable()
    assert backend.read().revision == ports.NO_REVISION


def test_a_second_lock_is_refused_naming_the_holder(new_backend: BackendFactory) -> None:
    """While one run holds the lock, another's lock raises StateLocked naming the first."""
    first_run, second_run = new_backend(), new_backend()
    lock_id = first_run.lock(holder("apply"))
    with pytest.raises(errors.StateLocked) as refused:
        second_run.lock(holder("plan"))
    assert refused.value.holder.lock_id == lock_id
    assert refused.value.holder.operation == "apply"
    assert refused.value.holder.who == holder().who
    assert lock_id in (refused.value.hint or "")
    first_run.unlock(lock_id)
    second_run.unlock(second_run.lock(holder("plan")))


def test_unlock_of_a_lock_not_held_is_an_error(new_backend: BackendFactory) -> None:
    """unlock() of an id this run does not hold raises StateError and releases nothing."""
    first_run, second_run = new_backend(), new_backend()
    lock_id = first_run.lock(holder())
    with pytest.raises(errors.StateError):
        second_run.unlock("not-" + lock_id)
    with pytest.raises(errors.StateLocked):
        second_run.lock(holder())


def test_lock_with_timeout_waits_for_a_release(new_backend: BackendFactory) -> None:
    """A lock with a timeout waits while another run holds it and gets it once released."""
    first_run, second_run, third_run = new_backend(), new_backend(), new_backend()
    first_id = first_run.lock(holder())
    waiting = threading.Event()
    released: list[str] = []

    def release_when_waited_for() -> None:
        waiting.wait(timeout=30)
        time.sleep(0.3)  # let the contender start polling first (a delay, not an assertion)
        first_run.unlock(first_id)
        released.append(first_id)

    releaser = threading.Thread(target=release_when_waited_for)
    releaser.start()
    try:
        with pytest.raises(errors.StateLocked):  # not yet released: no wait, refused
            second_run.lock(holder(), timeout=0)
        waiting.set()
        second_id = second_run.lock(holder(), timeout=60)
    finally:
        waiting.set()
        releaser.join()
    assert released == [first_id]
    assert second_id != first_id
    with pytest.raises(errors.StateLocked) as refused:
        third_run.lock(holder())
    assert refused.value.holder.lock_id == second_id


def test_force_unlock_needs_the_right_id(new_backend: BackendFactory) -> None:
    """force_unlock() with a wrong id changes nothing; with the right id it releases the
    lock and returns the holder it named."""
    stuck_run, rescuer = new_backend(), new_backend()
    lock_id = stuck_run.lock(holder("apply"))
    with pytest.raises(errors.StateError):
        rescuer.force_unlock("0" * 8)
    with pytest.raises(errors.StateLocked):
        rescuer.lock(holder())
    released = rescuer.force_unlock(lock_id)
    assert released.lock_id == lock_id and released.operation == "apply"
    rescuer.unlock(rescuer.lock(holder()))


def test_force_unlock_without_a_lock_is_an_error(new_backend: BackendFactory) -> None:
    """force_unlock() when nothing is locked raises StateError."""
    with pytest.raises(errors.StateError):
        new_backend().force_unlock("0" * 8)


def test_current_lock_names_the_holder_and_reads_only(new_backend: BackendFactory) -> None:
    """current_lock() is None while nothing is locked and names the holder's lock id while
    one run holds it, without taking or releasing anything."""
    inspector = new_backend()
    assert inspector.current_lock() is None
    holding = new_backend()
    lock_id = holding.lock(holder("apply"))
    current = inspector.current_lock()
    assert current is not None
    assert current.holder.lock_id == lock_id and current.holder.operation == "apply"
    with pytest.raises(errors.StateLocked):
        inspector.lock(holder())
    holding.unlock(lock_id)
    assert inspector.current_lock() is None
