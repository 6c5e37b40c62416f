"""The local state backend beyond the port's contract: real processes contending for the lock,
a killed holder taken over, kills during writes never tearing the lockfile, leftover temp
files cleaned, symlinked lockfiles, clear errors, and the tool's file names."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from reconciler import errors, model, ports, state, statefile
from reconciler.state import local as local_state

ENTRY = model.LockEntry(fingerprint="f" * 64, content_sha256="c" * 64, code_sha256="x" * 43 + "=",
                        code_size=123, version=4,
                        layer_version_arn="arn:aws:lambda:us-east-1:123456789012:layer:a:4",
                        settings_sha256="s" * 64)
OLD = model.Lock().with_entry("a", "us-east-1", entry=ENTRY)
NEW = OLD.with_entry("b", "eu-west-1", entry=ENTRY)

# A child run of the installed package: `hold` takes the lock and waits for stdin to close;
# `contend` waits for "go", tries the lock once, says whether it won, then waits likewise;
# `write` alternates OLD and NEW in the lockfile forever; `add N TAG` records N entries,
# re-reading on each conflict.
CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from reconciler import errors, model, state
    from reconciler.state import local

    mode, path = sys.argv[1], Path(sys.argv[2])
    backend = local.LocalStateBackend(path)
    entry = model.LockEntry(fingerprint="f" * 64, content_sha256="c" * 64,
                            code_sha256="x" * 43 + "=", code_size=123, version=4,
                            layer_version_arn="arn:aws:lambda:us-east-1:123456789012:layer:a:4",
                            settings_sha256="s" * 64)
    holder = state.new_holder(operation="apply", path=str(path))
    if mode == "hold":
        print("locked", backend.lock(holder), flush=True)
        sys.stdin.read()
    elif mode == "contend":
        sys.stdin.readline()
        try:
            backend.lock(holder)
            print("won", flush=True)
        except errors.StateLocked:
            print("locked", flush=True)
        sys.stdin.read()
    elif mode == "write":
        old = model.Lock().with_entry("a", "us-east-1", entry=entry)
        locks = [old, old.with_entry("b", "eu-west-1", entry=entry)]
        count = 0
        while True:
            snapshot = backend.read()
            backend.write(locks[count % 2], expected_revision=snapshot.revision)
            count += 1
            if count == 3:
                print("writing", flush=True)
    elif mode == "add":
        for number in range(int(sys.argv[3])):
            while True:
                snapshot = backend.read()
                updated = snapshot.lock.with_entry(f"{sys.argv[4]}{number}", "us-east-1",
                                                   entry=entry)
                try:
                    backend.write(updated, expected_revision=snapshot.revision)
                    break
                except errors.StateConflict:
                    continue
""")


def child(mode: str, path: Path, *args: str) -> subprocess.Popen[str]:
    """Start a child run of `mode` on the lockfile at `path`."""
    return subprocess.Popen([sys.executable, "-c", CHILD, mode, str(path), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def kill(process: subprocess.Popen[str]) -> None:
    """SIGKILL the child and reap it (a zombie's pid would still look alive)."""
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.stdout is not None
    process.stdout.close()
    if process.stdin is not None:
        process.stdin.close()


def holder() -> errors.LockHolder:
    """This process's holder record."""
    return state.new_holder(operation="apply", path="layers.yaml")


def leftover_name(lockfile: Path, *, pid: int) -> str:
    """The name a temp file of process `pid` on this host has beside `lockfile`."""
    host_tag = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
    return f".{lockfile.name}.{host_tag}.{pid}.0123456789ab.tmp"


def test_missing_lockfile_is_an_empty_lock(tmp_path: Path) -> None:
    """No lockfile yet means nothing recorded, at NO_REVISION."""
    snapshot = local_state.LocalStateBackend(tmp_path / "layers.lock.json").read()
    assert snapshot == ports.Snapshot(lock=model.Lock(), revision=ports.NO_REVISION)


def test_revision_is_the_sha256_of_the_file(tmp_path: Path) -> None:
    """The local revision is the hex SHA-256 of the lockfile's bytes, which are canonical."""
    path = tmp_path / "layers.lock.json"
    backend = local_state.LocalStateBackend(path)
    revision = backend.write(OLD, expected_revision=ports.NO_REVISION)
    assert path.read_text() == statefile.encode(OLD)
    assert revision == hashlib.sha256(path.read_bytes()).hexdigest() == backend.read().revision


@pytest.mark.parametrize(
    ("text", "phrase"),
    [("{not json", "not valid JSON"), ('{"lockfile_version": 9}', "is not supported")],
    ids=["bad json", "future version"],
)
def test_bad_lockfile_is_a_clear_error(tmp_path: Path, text: str, phrase: str) -> None:
    """A damaged lockfile is a LockfileError naming the file and what is wrong."""
    path = tmp_path / "layers.lock.json"
    path.write_text(text)
    with pytest.raises(errors.LockfileError) as failure:
        local_state.LocalStateBackend(path).read()
    assert phrase in failure.value.message and str(path) in failure.value.message


def test_write_leaves_no_other_file(tmp_path: Path) -> None:
    """A write replaces the lockfile and leaves nothing else beside it."""
    path = tmp_path / "layers.lock.json"
    path.write_text("old")
    backend = local_state.LocalStateBackend(path)
    backend.write(NEW, expected_revision=hashlib.sha256(b"old").hexdigest())
    assert [p.name for p in tmp_path.iterdir()] == ["layers.lock.json"]
    assert backend.read().lock == NEW


def test_failed_write_keeps_the_old_lockfile(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails part way (here: fsync) is a StateError; old bytes, no temp file."""
    path = tmp_path / "layers.lock.json"
    backend = local_state.LocalStateBackend(path)
    revision = backend.write(OLD, expected_revision=ports.NO_REVISION)
    before = path.read_bytes()

    def failing_fsync(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(errors.StateError, match="No space left"):
        backend.write(NEW, expected_revision=revision)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["layers.lock.json"]


def test_a_symlinked_lockfile_is_written_through_the_link(tmp_path: Path) -> None:
    """A lockfile that is a symlink stays a link; its target gets the new bytes, and the
    temp files went beside the target."""
    (tmp_path / "real").mkdir()
    (tmp_path / "work").mkdir()
    target = tmp_path / "real" / "shared.lock.json"
    link = tmp_path / "work" / "layers.lock.json"
    link.symlink_to(Path("..") / "real" / "shared.lock.json")
    backend = local_state.LocalStateBackend(link)
    first = backend.write(OLD, expected_revision=ports.NO_REVISION)
    backend.write(NEW, expected_revision=first)
    assert link.is_symlink() and target.read_text() == statefile.encode(NEW)
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["layers.lock.json"]
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["shared.lock.json"]
    assert local_state.LocalStateBackend(target).read().lock == NEW


def test_a_lock_through_a_symlink_is_the_targets_lock(tmp_path: Path) -> None:
    """Two paths to one lockfile (the link and its target) share one lock."""
    target = tmp_path / "layers.lock.json"
    link = tmp_path / "other.lock.json"
    link.symlink_to(target.name)
    lock_id = local_state.LocalStateBackend(link).lock(holder())
    with pytest.raises(errors.StateLocked) as refused:
        local_state.LocalStateBackend(target).lock(holder())
    assert refused.value.holder.lock_id == lock_id


def test_check_writable_refuses_a_folder_under_a_file(tmp_path: Path) -> None:
    """A lockfile whose folder cannot exist (its parent is a file) is a StateError."""
    (tmp_path / "plain-file").write_text("x")
    backend = local_state.LocalStateBackend(tmp_path / "plain-file" / "layers.lock.json")
    with pytest.raises(errors.StateError, match="cannot write the lockfile"):
        backend.check_writable()


def test_check_writable_refuses_a_lockfile_that_is_a_folder(tmp_path: Path) -> None:
    """A lockfile path that is a folder is a StateError, checked before anything is written."""
    (tmp_path / "layers.lock.json").mkdir()
    with pytest.raises(errors.StateError, match="folder"):
        local_state.LocalStateBackend(tmp_path / "layers.lock.json").check_writable()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write read-only files")
def test_check_writable_refuses_a_read_only_lockfile(tmp_path: Path) -> None:
    """An existing lockfile without write permission is a StateError."""
    path = tmp_path / "layers.lock.json"
    path.write_text("{}")
    path.chmod(0o444)
    with pytest.raises(errors.StateError, match="read-only"):
        local_state.LocalStateBackend(path).check_writable()


def test_tool_files_share_the_prefix_the_packager_skips(tmp_path: Path) -> None:
    """While a run holds the lock, every extra file beside the lockfile starts with
    tool_file_prefix(); once unlocked, none is left."""
    path = tmp_path / "layers.lock.json"
    backend = local_state.LocalStateBackend(path)
    assert local_state.tool_file_prefix(path) == ".layers.lock.json."
    lock_id = backend.lock(holder())
    backend.write(OLD, expected_revision=ports.NO_REVISION)
    others = [p.name for p in tmp_path.iterdir() if p.name != "layers.lock.json"]
    assert others == [".layers.lock.json.lock"]
    assert all(name.startswith(local_state.tool_file_prefix(path)) for name in others)
    record = json.loads((tmp_path / ".layers.lock.json.lock").read_text())
    assert record["lock_id"] == lock_id and record["pid"] == os.getpid()
    assert set(record) == {"lock_id", "who", "host", "pid", "operation", "created", "path",
                           "version"}
    backend.unlock(lock_id)
    assert [p.name for p in tmp_path.iterdir()] == ["layers.lock.json"]


def test_two_processes_contending_exactly_one_wins(tmp_path: Path) -> None:
    """Two real processes try the lock at the same moment: exactly one gets it."""
    path = tmp_path / "layers.lock.json"
    for _ in range(5):
        runs = [child("contend", path) for _ in range(2)]
        try:
            for run in runs:
                assert run.stdin is not None
                run.stdin.write("go\n")
                run.stdin.flush()
            outcomes = sorted(run.stdout.readline().strip() for run in runs if run.stdout)
        finally:
            for run in runs:
                kill(run)
        assert outcomes == ["locked", "won"]


def test_a_live_holder_process_is_named_in_the_refusal(tmp_path: Path) -> None:
    """A lock held by a live process of this host is refused, naming that pid and lock id."""
    path = tmp_path / "layers.lock.json"
    run = child("hold", path)
    try:
        assert run.stdout is not None
        word, lock_id = run.stdout.readline().split()
        assert word == "locked"
        with pytest.raises(errors.StateLocked) as refused:
            local_state.LocalStateBackend(path).lock(holder())
        assert refused.value.holder.pid == run.pid
        assert refused.value.holder.lock_id == lock_id
        assert f"reconcile force-unlock {lock_id}" in (refused.value.hint or "")
    finally:
        kill(run)


def test_a_killed_holders_lock_is_taken_over(tmp_path: Path) -> None:
    """A lock whose holder was SIGKILLed is taken by the next run, which then holds it."""
    path = tmp_path / "layers.lock.json"
    run = child("hold", path)
    assert run.stdout is not None
    assert run.stdout.readline().startswith("locked ")
    kill(run)
    backend = local_state.LocalStateBackend(path)
    lock_id = backend.lock(holder())
    record = json.loads((tmp_path / ".layers.lock.json.lock").read_text())
    assert record["lock_id"] == lock_id and record["pid"] == os.getpid()
    with pytest.raises(errors.StateLocked):
        local_state.LocalStateBackend(path).lock(holder())
    backend.unlock(lock_id)
    assert not (tmp_path / ".layers.lock.json.lock").exists()


def test_a_lock_of_another_host_is_never_taken_over(tmp_path: Path) -> None:
    """A lock record naming another host is refused (its process cannot be seen from here)."""
    path = tmp_path / "layers.lock.json"
    other = errors.LockHolder(lock_id="id-elsewhere", who="ci", host="build-agent-7", pid=1,
                              operation="apply", created="2026-01-01T00:00:00+00:00",
                              path="layers.yaml")
    (tmp_path / ".layers.lock.json.lock").write_bytes(
        state.encode_record(other, lock_id="id-elsewhere"))
    with pytest.raises(errors.StateLocked) as refused:
        local_state.LocalStateBackend(path).lock(holder())
    assert refused.value.holder == other
    assert "build-agent-7" in refused.value.message
    assert local_state.LocalStateBackend(path).force_unlock("id-elsewhere") == other
    local_state.LocalStateBackend(path).lock(holder())


def test_kills_during_writes_never_tear_the_lockfile(tmp_path: Path) -> None:
    """A writer SIGKILLed at any moment leaves the old bytes or the new, never a mix; the
    temp files it leaves are removed by the next write."""
    path = tmp_path / "layers.lock.json"
    whole = {statefile.encode(OLD).encode(), statefile.encode(NEW).encode()}
    for attempt in range(8):
        run = child("write", path)
        assert run.stdout is not None
        assert run.stdout.readline().strip() == "writing"
        time.sleep(0.003 * attempt)  # kill at varying points of the write loop
        dead_pid = run.pid
        kill(run)
        assert path.read_bytes() in whole
        (tmp_path / leftover_name(path, pid=dead_pid)).write_text("half a write")
        backend = local_state.LocalStateBackend(path)
        backend.write(OLD, expected_revision=backend.read().revision)
        assert [p.name for p in tmp_path.iterdir()] == ["layers.lock.json"]


def test_a_live_processs_temp_file_is_left_alone(tmp_path: Path) -> None:
    """Only temp files of dead processes are removed: one of a live process stays."""
    path = tmp_path / "layers.lock.json"
    live = tmp_path / leftover_name(path, pid=os.getpid())
    live.write_text("in flight")
    local_state.LocalStateBackend(path).write(OLD, expected_revision=ports.NO_REVISION)
    assert live.exists()


def test_concurrent_processes_lose_no_record(tmp_path: Path) -> None:
    """Two processes recording entries with read-then-write at a revision never lose one:
    the compare-and-swap is atomic across processes."""
    path = tmp_path / "layers.lock.json"
    runs = [child("add", path, "25", tag) for tag in ("p", "q")]
    for run in runs:
        assert run.stdin is not None
        run.stdin.close()
        assert run.wait(timeout=120) == 0
        assert run.stdout is not None
        run.stdout.close()
    lock = local_state.LocalStateBackend(path).read().lock
    assert sorted(layer for layer, _ in lock.entries) == sorted(
        [f"p{n}" for n in range(25)] + [f"q{n}" for n in range(25)])


def test_current_lock_is_alive_while_a_process_holds_its_flock(tmp_path: Path) -> None:
    """A lock held by a live process of this host (its flock held) is alive here, naming
    the pid and the flock; once that process is killed it no longer is."""
    path = tmp_path / "layers.lock.json"
    assert local_state.LocalStateBackend(path).current_lock() is None
    run = child("hold", path)
    try:
        assert run.stdout is not None
        lock_id = run.stdout.readline().split()[1]
        current = local_state.LocalStateBackend(path).current_lock()
        assert current is not None and current.holder.lock_id == lock_id
        assert f"pid {run.pid}" in (current.alive_here or "")
        assert "flock" in (current.alive_here or "")
        with pytest.raises(errors.StateLocked):  # inspecting took nothing from the holder
            local_state.LocalStateBackend(path).lock(holder())
    finally:
        kill(run)
    after = local_state.LocalStateBackend(path).current_lock()
    assert after is not None and after.holder.lock_id == lock_id
    assert after.alive_here is None


def test_a_live_pid_without_the_flock_is_not_alive_here(tmp_path: Path) -> None:
    """A record naming this host and a running pid whose flock nobody holds (the pid was
    reused after its holder died) is not alive here: force-unlock may release it."""
    other = state.new_holder(operation="apply", path="layers.yaml")
    record = state.encode_record(
        errors.LockHolder(lock_id="reused", who=other.who, host=socket.gethostname(),
                          pid=os.getppid(), operation="apply", created=other.created,
                          path="layers.yaml"), lock_id="reused")
    (tmp_path / ".layers.lock.json.lock").write_bytes(record)
    current = local_state.LocalStateBackend(tmp_path / "layers.lock.json").current_lock()
    assert current is not None and current.holder.pid == os.getppid()
    assert current.alive_here is None
