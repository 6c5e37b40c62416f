"""StateBackend.lock_holder(), on every backend (the contract's fixture): who holds the state
lock, read without taking it, so that a plan deletes stray fillers only while no apply holds
the lock. Kept beside the contract suite, not in it, while the lock code is being changed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from test_state_contract import BackendFactory, holder, new_backend

from reconciler.state import local as local_state

__all__ = ["new_backend"]  # the fixture, used by name


def test_lock_holder_names_the_run_holding_the_lock_and_nobody_after(
        new_backend: BackendFactory) -> None:
    """No lock: None; while a run holds it, another run reads that run's holder (its lock
    id); once released, None again; reading it changes nothing (the lock can still be
    released by its holder)."""
    reader = new_backend()
    assert reader.lock_holder() is None
    owner = new_backend()
    lock_id = owner.lock(holder())
    found = reader.lock_holder()
    assert found is not None
    assert (found.lock_id, found.operation, found.pid) == (lock_id, "apply", os.getpid())
    assert reader.lock_holder() == found
    owner.unlock(lock_id)
    assert reader.lock_holder() is None


def test_a_dead_runs_local_lock_is_held_by_nobody(tmp_path: Path) -> None:
    """A lock file whose record names a dead process of this host (a killed apply) is held
    by nobody: the plan may delete that run's fillers, and the next apply takes the lock
    over. A record of another host counts as held (its process cannot be seen)."""
    path = tmp_path / "layers.lock.json"
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead_pid = int(child.stdout)
    record = {"lock_id": "dead-run", "who": "ci", "host": socket.gethostname(),
              "pid": dead_pid, "operation": "apply", "created": "2026-12-06T10:00:00+00:00",
              "path": "layers.yaml", "version": "0"}
    lock_file = tmp_path / ".layers.lock.json.lock"
    lock_file.write_text(json.dumps(record))
    backend = local_state.LocalStateBackend(path)
    assert backend.lock_holder() is None
    lock_file.write_text(json.dumps({**record, "host": "another-host.example"}))
    found = backend.lock_holder()
    assert found is not None and found.lock_id == "dead-run"
