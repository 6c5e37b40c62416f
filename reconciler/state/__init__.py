"""The state backends (ports.StateBackend): `state.local` keeps the lockfile on disk with a
lock file beside it, `state.s3` keeps it in S3 locked with conditional writes.

This package owns what both share: the holder record a lock stores (JSON), the
StateLocked error that names it, and force-unlock's rule (a holder alive on this host is not
released without --force; another host's lock is shown with its age before the question).
It also owns the wait for a held lock (`take_lock`), one attempt at a time, which every
command that takes the lock goes through. The two backends must not import each other.
"""

from __future__ import annotations

import datetime
import getpass
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable

from reconciler import __version__, errors, ports

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


def host_tag() -> str:
    """A short, file-name-safe digest of this host's name, for the names of temp files and
    probe objects (a later run of this host can then tell which are its own host's)."""
    return hashlib.sha256(socket.gethostname().encode("utf-8")).hexdigest()[:8]


def alive_on_this_host(holder: errors.LockHolder) -> str | None:
    """Why `holder` is known to be alive here ("pid 42 is running"), or None when
    its record names another host (whose processes this kernel cannot see) or a pid that
    is not running."""
    if holder.host != socket.gethostname() or holder.pid <= 0 or \
            holder.pid == os.getpid() or not process_alive(holder.pid):
        return None
    return f"pid {holder.pid} is running"


def process_alive(pid: int) -> bool:
    """Whether a process of this host has id `pid` (this process included)."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def lock_age(holder: errors.LockHolder, *,
             now: datetime.datetime | None = None) -> str | None:
    """How long ago `holder` took the lock, in words ("3 h 12 min"), from the record's
    `created`; None when that is no time (an unreadable record, or a future one)."""
    try:
        created = datetime.datetime.fromisoformat(holder.created)
    except ValueError:
        return None
    if created.tzinfo is None:
        return None
    seconds = int(((now or datetime.datetime.now(datetime.timezone.utc)) - created)
                  .total_seconds())
    if seconds < 0:
        return None
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if days:
        return f"{days} d {hours % 24} h"
    if hours:
        return f"{hours} h {minutes % 60} min"
    if minutes:
        return f"{minutes} min {seconds % 60} s"
    return f"{seconds} s"


def describe_holder(holder: errors.LockHolder, *,
                    now: datetime.datetime | None = None) -> str:
    """`who on host (pid N, operation, since CREATED, AGE ago)` for messages."""
    age = lock_age(holder, now=now)
    since = f"since {holder.created}" + (f", {age} ago" if age else "")
    return f"{holder.who} on {holder.host} (pid {holder.pid}, {holder.operation}, {since})"


def force_unlock_question(held: ports.HeldLock | None, *, lock_id: str, location: str,
                          force: bool) -> str:
    """The question force-unlock asks before releasing `lock_id` on `location`, given the
    lock the backend holds now. StateError when nothing is locked or the lock has another
    id; StateLocked, naming the holder and why, when the holder is alive on this host and
    `force` is not given: releasing it would let a second run publish beside it."""
    if held is None:
        raise errors.StateError(f"{location} is not locked")
    holder = held.holder
    if holder.lock_id != lock_id:
        raise errors.StateError(f"the lock on {location} has another id than {lock_id}",
                                hint="copy the lock id from the lock refusal message")
    described = describe_holder(holder)
    if held.alive_here is not None:
        if not force:
            raise errors.StateLocked(
                f"not releasing the lock {lock_id} on {location}: its holder "
                f"{described} is alive on this host ({held.alive_here})",
                holder=holder,
                hint="wait for that run to finish, or stop it; pass --force only if you are "
                     "sure it no longer changes the state")
        why = (f"Its holder {described} is alive on this host ({held.alive_here}); "
               "--force releases it anyway.")
    elif holder.host == socket.gethostname():
        why = f"Its holder {described} is no longer running on this host."
    else:
        why = (f"It is held from another host: {described}; this host cannot tell whether "
               "that run is still alive.")
    return (f"Release the lock {lock_id} on {location}? {why} A run that still holds it "
            "could then publish beside another.")


def take_lock(backend: ports.StateBackend, holder: errors.LockHolder, *, timeout: float,
              stop: threading.Event, announce: Callable[[str], None]) -> str:
    """The state lock; while another run holds it and `timeout` allows, `announce` it once
    and wait. `stop` set (a signal) ends the wait with Interrupted.

    The waiting is done here, one attempt (`timeout=0`) at a time, so that a signal ends the
    wait at once: between two attempts this run holds nothing, while an attempt cut off by
    an exception could leave an S3 lock object that nobody would release."""
    deadline = time.monotonic() + timeout
    delay = FIRST_RETRY_DELAY
    announced = False
    while True:
        try:
            return backend.lock(holder, timeout=0.0)
        except errors.StateLocked as locked:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
            if not announced:
                announce(f"waiting up to {timeout:g} s for the state lock: {locked.message}")
                announced = True
        if stop.wait(min(delay, remaining)):
            raise errors.Interrupted(
                "interrupted while waiting for the state lock: nothing was changed")
        delay = min(delay * 2, MAX_RETRY_DELAY)
