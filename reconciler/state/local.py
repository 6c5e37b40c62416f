"""The local state backend: the lockfile on disk, revision-checked atomic writes, and a lock
file beside it. Must not import `state.s3`; never prints.

Files. Every file the tool keeps beside the lockfile is named `.<lockfile name>.*`
(`tool_file_prefix()`), so the packager can skip them: `.<name>.lock` (the run lock,
there only while a run holds it) and `.<name>.<host tag>.<pid>.<random>.tmp` (a write or a
lock in flight). None stays behind after a run that ends normally. A temp
file left by a killed run (same host tag, that pid dead) is removed by the next lock or
write. A lockfile that is a symlink is written through the link: all these files live
beside the link's target and are named after it, so every path to one state shares them.

Writes. `write()` takes an in-process mutex and `flock` on the lockfile's folder (held
for the moment of a compare-and-swap; a folder keeps its inode, so the flock is stable
where a lock on the renamed-over lockfile would not be), compares the
SHA-256 of the current bytes with `expected_revision`, and only then writes a temp file,
fsyncs it, renames it over the lockfile and fsyncs the folder: a reader (and a run killed
at any instant) sees the old bytes or the new, never a mix.

The run lock, and why no two runs can both hold it. A run holds the lock exactly when it
holds `flock(LOCK_EX)` on the inode that the name `.<name>.lock` currently names.
- To create it, a run writes its record into a fresh temp file, flocks it, and `link()`s
  it to the name (atomic, and fails if the name exists: the O_CREAT|O_EXCL of link, with
  the advantage that the record is complete and flocked before the name appears).
- A lock left by a dead process on this host: the kernel released its flock when the
  process died. A contender opens the name, gets LOCK_EX|LOCK_NB on that inode, checks the
  name still names that same inode (else it lost a race and starts again), checks the
  record names this host and a dead pid, and renames its own flocked record over the name.
- The name only ever moves to a new inode by link() (only when there is none), by a
  rename from a run holding the flock of the inode the name names (only one run can hold
  it, and it keeps it until after the rename), or by unlink from that same run (unlock).
  So at every instant at most one run holds the flock of the named inode. Only
  `force_unlock` (a person's decision, as in Terraform) removes a lock without the flock;
  `current_lock` tells it first whether the holder is alive here (its record names this
  host and a running pid, and the flock is held), which force-unlock refuses.
A record naming a live pid, or another host (whose processes this kernel cannot see),
raises StateLocked naming the holder.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from reconciler import errors, model, ports, state, statefile

# One threading lock per lockfile (by real path): flock excludes other processes, this
# excludes the other threads of this one, whatever open file each uses.
_PROCESS_MUTEXES: dict[str, threading.Lock] = {}
_PROCESS_MUTEXES_GUARD = threading.Lock()


def tool_file_prefix(path: Path) -> str:
    """The prefix (`.<lockfile name>.`) of every file the tool keeps beside the lockfile at
    `path`: the packager skips files whose name starts with it."""
    return f".{path.name}."


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable; a file system that cannot do that loses nothing else."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError:
        pass


class _Busy(Exception):
    """Internal: the lock is held by `holder`."""

    def __init__(self, holder: errors.LockHolder) -> None:
        super().__init__(holder.lock_id)
        self.holder = holder


class LocalStateBackend:
    """ports.StateBackend over a lockfile at `path` (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        # lock id -> (descriptor holding the flock, the lock file's path)
        self._held: dict[str, tuple[int, Path]] = {}

    @property
    def location(self) -> str:
        """The lockfile's path, as given."""
        return str(self._path)

    def _target(self) -> Path:
        """The file the bytes live in: the lockfile, or the end of its chain of symlinks."""
        return Path(os.path.realpath(self._path))

    def _lock_path(self) -> Path:
        target = self._target()
        return target.with_name(f".{target.name}.lock")

    def read(self) -> ports.Snapshot:
        """The lockfile and the SHA-256 of its bytes; an absent file is an empty lock.

        No lock needed: the file is only ever replaced whole, by rename."""
        try:
            data = _bytes_or_none(self._target())
        except OSError as exc:
            raise errors.LockfileError(
                f"{self._path}: cannot read: {exc.strerror or exc}") from None
        if data is None:
            return ports.Snapshot(lock=model.Lock(), revision=ports.NO_REVISION)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise errors.LockfileError(f"{self._path}: cannot read: {exc}") from None
        return ports.Snapshot(lock=statefile.decode(text, file=str(self._path)),
                              revision=statefile.revision_of(data))

    def write(self, lock: model.Lock, *, expected_revision: str) -> str:
        """Replace the lockfile with `lock`'s canonical bytes if its bytes still have
        `expected_revision` (the compare and the rename happen under the mutex)."""
        data = statefile.encode(lock).encode("utf-8")
        target = self._target()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._write_error(exc) from exc
        with self._mutex(target):
            self._remove_leftovers(target)
            try:
                current = _bytes_or_none(target)
            except OSError as exc:
                raise self._write_error(exc) from exc
            current_revision = (ports.NO_REVISION if current is None
                                else statefile.revision_of(current))
            if current_revision != expected_revision:
                raise errors.StateConflict(
                    f"{self._path} changed since it was read (another run wrote it); "
                    f"nothing was written",
                    hint="run plan again: it reads the state as it is now")
            if current != data:  # an unchanged state keeps its file (and mtime) as it is
                self._replace(target, data)
        return statefile.revision_of(data)

    def _write_error(self, exc: OSError) -> errors.StateError:
        return errors.StateError(f"cannot write {self._path}: {exc.strerror or exc}",
                                 hint="make the lockfile and its folder writable, or pass "
                                      "another --lockfile")

    @contextmanager
    def _mutex(self, target: Path) -> Iterator[None]:
        """Exclusive against every other thread and process writing this lockfile: the
        in-process lock, then flock on the lockfile's folder (a folder can be flocked like a
        file; it leaves no extra file in the user's repository)."""
        with _PROCESS_MUTEXES_GUARD:
            in_process = _PROCESS_MUTEXES.setdefault(str(target), threading.Lock())
        with in_process:
            try:
                descriptor = os.open(target.parent, os.O_RDONLY)
            except OSError as exc:
                raise self._write_error(exc) from exc
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                yield
            finally:
                os.close(descriptor)  # releases the flock

    def _new_temp(self, target: Path) -> tuple[Path, int]:
        """A new temp file beside `target`, named so that a later run can tell it is ours
        and whether its writer is still alive; (path, open descriptor)."""
        while True:
            temp = target.with_name(f".{target.name}.{state.host_tag()}.{os.getpid()}."
                                    f"{secrets.token_hex(6)}.tmp")
            try:
                return temp, os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue

    def _replace(self, target: Path, data: bytes) -> None:
        try:
            temp, descriptor = self._new_temp(target)
        except OSError as exc:
            raise self._write_error(exc) from exc
        try:
            try:
                _write_all(descriptor, data)
                os.fsync(descriptor)
                os.fchmod(descriptor, 0o644)
            finally:
                os.close(descriptor)
            os.replace(temp, target)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise self._write_error(exc) from exc
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_folder(target.parent)

    def _remove_leftovers(self, target: Path) -> None:
        """Remove the temp files that killed runs of this host left beside `target`."""
        pattern = re.compile(rf"^\.{re.escape(target.name)}\.([0-9a-f]{{8}})\.(\d+)\."
                             rf"[0-9a-f]+\.tmp$")
        host_tag = state.host_tag()
        try:
            names = os.listdir(target.parent)
        except OSError:
            return
        for name in names:
            found = pattern.match(name)
            if found and found.group(1) == host_tag and \
                    not state.process_alive(int(found.group(2))):
                (target.parent / name).unlink(missing_ok=True)

    def check_writable(self) -> None:
        """StateError unless the lockfile can be replaced: its folder exists (or can be
        made) and takes new files, and an existing lockfile is writable."""
        target = self._target()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir():
                raise IsADirectoryError(errno.EISDIR, "it is a folder")
            if target.exists() and not os.access(target, os.W_OK):
                raise PermissionError(errno.EACCES, "the lockfile is read-only")
            temp, descriptor = self._new_temp(target)
            os.close(descriptor)
            temp.unlink()
        except OSError as exc:
            raise errors.StateError(
                f"cannot write the lockfile {self._path}: {exc.strerror or exc}",
                hint="pass a writable --lockfile") from exc

    def lock(self, holder: errors.LockHolder, *, timeout: float = 0.0) -> str:
        """Take the run lock, polling until `timeout` seconds have passed while another
        live run holds it. The record names this process's real pid and host, whatever
        `holder` says, since taking over a dead run's lock relies on them."""
        target = self._target()
        lock_path = self._lock_path()
        lock_id = str(uuid.uuid4())
        record = state.encode_record(
            replace(holder, lock_id=lock_id, pid=os.getpid(), host=socket.gethostname()),
            lock_id=lock_id)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._lock_error(exc) from exc
        self._remove_leftovers(target)
        deadline = time.monotonic() + max(timeout, 0.0)
        delay = state.FIRST_RETRY_DELAY
        while True:
            try:
                descriptor = self._try_lock(target, lock_path=lock_path, record=record)
            except _Busy as busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise state.locked_error(busy.holder, location=self.location) from None
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, state.MAX_RETRY_DELAY)
                continue
            except OSError as exc:
                raise self._lock_error(exc) from exc
            if descriptor is not None:
                self._held[lock_id] = (descriptor, lock_path)
                return lock_id

    def _lock_error(self, exc: OSError) -> errors.StateError:
        return errors.StateError(
            f"cannot lock {self._path}: {exc.strerror or exc}",
            hint="the lockfile's folder must be writable: the lock file lives beside it")

    def _try_lock(self, target: Path, *, lock_path: Path, record: bytes) -> int | None:
        """One attempt: the descriptor holding the lock, None to try again at once (a race
        was lost to a run that released or replaced the lock), or _Busy."""
        temp, descriptor = self._new_temp(target)
        won = False
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new inode: never busy
            _write_all(descriptor, record)
            os.fsync(descriptor)
            try:
                os.link(temp, lock_path)
            except FileExistsError:
                won = self._take_over(temp, lock_path=lock_path)
            else:
                won = True
            if won:
                _fsync_folder(lock_path.parent)
                return descriptor
            return None
        finally:
            temp.unlink(missing_ok=True)  # after a link, the name stays; after a rename, gone
            if not won:
                os.close(descriptor)

    def _take_over(self, temp: Path, *, lock_path: Path) -> bool:
        """Replace a lock left by a dead run of this host with ours (`temp`, flocked);
        False when the name moved meanwhile; _Busy when its holder may be alive."""
        try:
            existing = os.open(lock_path, os.O_RDONLY)
        except FileNotFoundError:  # released meanwhile
            return False
        try:
            try:
                fcntl.flock(existing, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise _Busy(self._holder_of(existing, lock_path=lock_path)) from None
            try:
                named = os.stat(lock_path)
            except FileNotFoundError:
                return False
            opened = os.fstat(existing)
            if (named.st_dev, named.st_ino) != (opened.st_dev, opened.st_ino):
                return False
            holder = state.decode_record(_read_all(existing))
            # An unreadable record is no live run's: a run's record is complete before the
            # name appears. A record of this host whose pid is gone (or is this process,
            # which holds no flock on it) is a dead run's.
            if holder is not None and (
                    holder.host != socket.gethostname()
                    or (holder.pid != os.getpid() and state.process_alive(holder.pid))):
                raise _Busy(holder)
            os.rename(temp, lock_path)
            return True
        finally:
            os.close(existing)

    def _holder_of(self, descriptor: int, *, lock_path: Path) -> errors.LockHolder:
        holder = state.decode_record(_read_all(descriptor))
        if holder is None:
            return errors.LockHolder(lock_id="(unreadable)", who="unknown", host="unknown",
                                     pid=0, operation="unknown", created="unknown",
                                     path=str(lock_path))
        return holder

    def unlock(self, lock_id: str) -> None:
        """Release the lock this backend took as `lock_id` (the name is removed before the
        flock is let go, so a contender never takes a lock that is being released)."""
        held = self._held.pop(lock_id, None)
        if held is None:
            raise errors.StateError(f"this run holds no lock {lock_id} on {self._path}")
        descriptor, lock_path = held
        try:
            opened = os.fstat(descriptor)
            try:
                named = os.stat(lock_path)
            except FileNotFoundError:
                named = None
            if named is None or (named.st_dev, named.st_ino) != (opened.st_dev, opened.st_ino):
                raise errors.StateError(
                    f"the lock on {self._path} was removed (force-unlock) while this run "
                    f"held it", hint="check that no other run changed the state meanwhile")
            os.unlink(lock_path)
        except OSError as exc:
            raise self._lock_error(exc) from exc
        finally:
            os.close(descriptor)

    def force_unlock(self, lock_id: str) -> errors.LockHolder:
        """Remove the lock file if its record has `lock_id`; the holder it named."""
        lock_path = self._lock_path()
        try:
            descriptor = os.open(lock_path, os.O_RDONLY)
        except FileNotFoundError:
            raise errors.StateError(f"{self._path} is not locked") from None
        except OSError as exc:
            raise self._lock_error(exc) from exc
        try:
            holder = state.decode_record(_read_all(descriptor))
            if holder is None or holder.lock_id != lock_id:
                raise errors.StateError(
                    f"the lock on {self._path} has another id than {lock_id}",
                    hint="copy the lock id from the lock refusal message")
            named = os.stat(lock_path)
            opened = os.fstat(descriptor)
            if (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino):
                os.unlink(lock_path)
        except OSError as exc:
            raise self._lock_error(exc) from exc
        finally:
            os.close(descriptor)
        held = self._held.pop(lock_id, None)
        if held is not None:
            os.close(held[0])
        return holder

    def current_lock(self) -> ports.HeldLock | None:
        """The lock file's holder; alive here when its record names this host and a running
        pid and its flock is held (a pid reused after the holder died holds no flock)."""
        lock_path = self._lock_path()
        try:
            descriptor = os.open(lock_path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._lock_error(exc) from exc
        try:
            holder = self._holder_of(descriptor, lock_path=lock_path)
            alive = state.alive_on_this_host(holder)
            if alive is not None:
                try:
                    # Shared and not waiting: it fails only while a holder has LOCK_EX.
                    fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    alive = f"{alive} and holds the lock file's flock"
                else:
                    alive = None
        finally:
            os.close(descriptor)  # releases a shared flock taken above
        return ports.HeldLock(holder=holder, alive_here=alive)

    def lock_holder(self) -> errors.LockHolder | None:
        """The holder the lock file's record names, unless it is a dead run's of this host
        (None then, and when there is no lock file). Read from the record alone, never by
        trying the flock: even a shared flock held for an instant would make a contender's
        take-over see the lock busy. A record of another host, or an unreadable one, counts
        as held (this kernel cannot see that run); a pid reused by another process too."""
        try:
            data = _bytes_or_none(self._lock_path())
        except OSError as exc:
            raise self._lock_error(exc) from exc
        if data is None:
            return None
        holder = state.decode_record(data)
        if holder is None:
            return errors.LockHolder(lock_id="(unreadable)", who="unknown", host="unknown",
                                     pid=0, operation="unknown", created="unknown",
                                     path=str(self._lock_path()))
        if holder.host == socket.gethostname() and not state.process_alive(holder.pid):
            return None
        return holder


def _bytes_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view):]


def _read_all(descriptor: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while chunk := os.pread(descriptor, 65536, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)
