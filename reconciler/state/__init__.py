"""The state backends (ports.StateBackend): `state.local` keeps the lockfile on disk with a
lock file beside it, `state.s3` keeps it in S3 locked with conditional writes.

This package owns what both share: the holder record a lock stores (JSON) and the
StateLocked error that names it. The two backends must not import each other.
"""

from __future__ import annotations

import datetime
import getpass
import json
import os
import socket

from reconciler import __version__, errors

# How long a contender waits between two attempts at a held lock: short at first (a run
# that only records a few entries holds it briefly), never more than half a second.
FIRST_RETRY_DELAY = 0.05
MAX_RETRY_DELAY = 0.5


def new_holder(*, operation: str, path: str) -> errors.LockHolder:
    """The holder record of this process for `operation` (e.g. "apply") on the state at
    `path`; the backend fills in the lock id when it takes the lock."""
    return errors.LockHolder(
        lock_id="", who=_user(), host=socket.gethostname(), pid=os.getpid(),
        operation=operation,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        path=path)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        return "unknown"


def encode_record(holder: errors.LockHolder, *, lock_id: str) -> bytes:
    """The lock record stored for `holder` under `lock_id`: canonical JSON."""
    document = {
        "lock_id": lock_id, "who": holder.who, "host": holder.host, "pid": holder.pid,
        "operation": holder.operation, "created": holder.created, "path": holder.path,
        "version": __version__,
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")


def decode_record(data: bytes) -> errors.LockHolder | None:
    """The holder a lock record names, or None when the bytes are not a lock record."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(document, dict):
        return None
    texts = ("lock_id", "who", "host", "operation", "created", "path")
    if not all(isinstance(document.get(name), str) for name in texts) or \
            not isinstance(document.get("pid"), int):
        return None
    return errors.LockHolder(**{name: document[name] for name in (*texts, "pid")})


def locked_error(holder: errors.LockHolder, *, location: str) -> errors.StateLocked:
    """StateLocked naming who holds the lock on `location`, and how to release it."""
    return errors.StateLocked(
        f"the state {location} is locked by {holder.who} on {holder.host} (pid {holder.pid}, "
        f"{holder.operation}, since {holder.created}, lock id {holder.lock_id})",
        holder=holder,
        hint=f"wait for that run (--lock-timeout SECONDS), or, if it is gone: "
             f"reconcile force-unlock {holder.lock_id}")
