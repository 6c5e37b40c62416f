"""The S3 state backend (`state: s3://bucket/prefix`): the lockfile's canonical bytes in one
object, revision-checked by ETag, and a lock object created only where there is none
(Terraform's S3 backend `use_lockfile`). Talks to S3 only through a ports.ObjectStore; must
not import `state.local`; never prints.

Objects: `<prefix>/layers.lock.json` (the state) and `<prefix>/layers.lock.json.lock` (the
holder record, JSON). The revision is the state object's ETag as read; a write sends
`If-Match` with it (`If-None-Match: *` when there was none), and a lock is a PutObject with
`If-None-Match: *`. All of that is only as safe as the store's honouring of those headers,
so before the first lock or write the backend proves it: a probe object created with
`If-None-Match: *` must be refused the second time, and a write with `If-Match` on a wrong
ETag must be refused; a store that accepts either is refused (StoreUnsafe) before anything
else happens. An S3 lock has no process to watch: a lock left by a killed run stays until
`force_unlock` removes it.

Lost replies. botocore retries a request whose reply was lost (a reset, a timeout, a 5xx);
a conditional create retried after S3 made the object is answered 412, and a request whose
retries ran out may have been done all the same. So the outcome of the lock's create, the
probe's create and a state write is never taken from the reply alone when it is a refusal or
no reply: the object is read back. The lock object naming this run's lock id (a fresh UUID)
means this run holds the lock; a probe object at this run's probe key (a fresh UUID too) is
this run's; a state object holding exactly the bytes written is this run's write.

Probe objects are named `<prefix>/.reconcile-probe-h<host tag>-p<pid>-<random>` and deleted
when the proof ends, however it ends. One left by a killed run (its delete never sent, or
failed) is deleted by the next run that proves the store: at once when its key names this
host and a pid that is not running, otherwise once it is older than STALE_PROBE_SECONDS (no
proof lasts that long). Only keys of that shape directly under the prefix are ever listed or
deleted that way; the state and the lock object never are.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import time
import uuid

from reconciler import errors, model, ports, state, statefile

STATE_NAME = "layers.lock.json"
_MAX_REFUSALS_WITHOUT_HOLDER = 20
_STATE_URL = re.compile(r"^s3://(?P<bucket>[^/]+)(?:/(?P<prefix>.*))?$")
PROBE_NAME = ".reconcile-probe-"
_PROBE_KEY = re.compile(r"^\.reconcile-probe-h(?P<host>[0-9a-f]{8})-p(?P<pid>\d+)-[0-9a-f]+$")
# A proof is four requests; a probe this old is no live run's. The store's write time is
# compared with this host's clock, which SigV4 keeps within 15 minutes of S3's.
STALE_PROBE_SECONDS = 3600


def parse_state_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of a manifest's `state: s3://bucket/prefix` (the prefix without
    surrounding slashes; "" for the bucket's root)."""
    found = _STATE_URL.match(url)
    if not found:
        raise errors.StateError(f"'{url}' is not an s3://BUCKET/PREFIX location")
    return found.group("bucket"), (found.group("prefix") or "").strip("/")


class S3StateBackend:
    """ports.StateBackend over an object store (see the module docstring)."""

    def __init__(self, store: ports.ObjectStore, *, prefix: str) -> None:
        self._store = store
        prefix = prefix.strip("/")
        self._state_key = f"{prefix}/{STATE_NAME}" if prefix else STATE_NAME
        self._lock_key = f"{self._state_key}.lock"
        self._probe_prefix = f"{prefix}/" if prefix else ""
        self._proven_safe = False

    @property
    def location(self) -> str:
        """The state object's s3:// URL."""
        return f"s3://{self._store.bucket}/{self._state_key}"

    def read(self) -> ports.Snapshot:
        """The state object and its ETag; no object is an empty lock."""
        found = self._store.get(self._state_key)
        if found is None:
            return ports.Snapshot(lock=model.Lock(), revision=ports.NO_REVISION)
        data, etag = found
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise errors.LockfileError(f"{self.location}: cannot read: {exc}") from None
        return ports.Snapshot(lock=statefile.decode(text, file=self.location), revision=etag)

    def write(self, lock: model.Lock, *, expected_revision: str) -> str:
        """PutObject conditional on `expected_revision`; the new ETag."""
        self._prove_safe()
        data = statefile.encode(lock).encode("utf-8")
        try:
            if expected_revision == ports.NO_REVISION:
                return self._store.put(self._state_key, data, if_none_match=True)
            return self._store.put(self._state_key, data, if_match=expected_revision)
        except errors.PreconditionFailed:
            # A retry of our own write, whose reply was lost, is refused by the new ETag.
            written = self._stored_etag_of(data)
            if written is not None:
                return written
            raise errors.StateConflict(
                f"{self.location} changed since it was read (another run wrote it); "
                f"nothing was written",
                hint="run plan again: it reads the state as it is now") from None
        except (errors.StateError, errors.AwsError):
            written = self._stored_etag_of(data)
            if written is not None:  # done, though no reply said so
                return written
            raise

    def _stored_etag_of(self, data: bytes) -> str | None:
        """The state object's ETag when it holds exactly `data`; None otherwise, and when it
        cannot be read (the caller then reports its own failure)."""
        try:
            found = self._store.get(self._state_key)
        except (errors.StateError, errors.AwsError):
            return None
        return found[1] if found is not None and found[0] == data else None

    def check_writable(self) -> None:
        """The safety probe writes and deletes an object beside the state: it proves the
        credentials may write there, as well as the store's conditional writes."""
        self._prove_safe()

    def _prove_safe(self) -> None:
        """StoreUnsafe unless the store refuses the conditional writes it must refuse; then
        remove the probes that killed runs left."""
        if self._proven_safe:
            return
        probe_key = (f"{self._probe_prefix}{PROBE_NAME}h{state.host_tag()}-p{os.getpid()}-"
                     f"{uuid.uuid4().hex}")
        where = f"the state store s3://{self._store.bucket} at {self._store.endpoint}"
        hint = ("use AWS S3 or a store that honours conditional writes (If-None-Match and "
                "If-Match on PutObject); without them two runs could both take the lock")
        try:
            self._create_probe(probe_key)
            try:
                self._store.put(probe_key, b"probe again\n", if_none_match=True)
            except errors.PreconditionFailed:
                pass
            else:
                raise errors.StoreUnsafe(
                    f"{where} ignores If-None-Match: a second create of {probe_key} was "
                    f"accepted; the state was not touched", hint=hint)
            try:
                self._store.put(probe_key, b"probe\n", if_match='"0-wrong-etag"')
            except errors.PreconditionFailed:
                pass
            else:
                raise errors.StoreUnsafe(
                    f"{where} ignores If-Match: a write on a wrong ETag of {probe_key} was "
                    f"accepted; the state was not touched", hint=hint)
        finally:
            self._delete_quietly(probe_key)
        self._proven_safe = True
        self._remove_stale_probes(own=probe_key)

    def _create_probe(self, probe_key: str) -> None:
        """Create the probe object where there is none. A refusal or a failure is read back:
        an object at this fresh key can only be this run's (its reply was lost)."""
        try:
            self._store.put(probe_key, b"probe\n", if_none_match=True)
        except (errors.StateError, errors.AwsError):
            try:
                found = self._store.get(probe_key)
            except (errors.StateError, errors.AwsError):
                found = None
            if found is None:
                raise

    def _delete_quietly(self, key: str) -> None:
        """Delete a probe object; a failure leaves it to the next run (see the docstring)
        rather than failing this one, whose proof is already decided."""
        with contextlib.suppress(errors.StateError, errors.AwsError):
            self._store.delete(key)

    def _remove_stale_probes(self, *, own: str) -> None:
        """Delete the probe objects that killed runs left beside the state (best effort: a
        store that refuses the listing keeps them, and the run goes on)."""
        try:
            listed = self._store.listing(f"{self._probe_prefix}{PROBE_NAME}")
        except (errors.StateError, errors.AwsError):
            return
        now = datetime.datetime.now(datetime.timezone.utc)
        for item in listed:
            if item.key != own and probe_is_stale(item.key.removeprefix(self._probe_prefix),
                                                  last_modified=item.last_modified, now=now):
                self._delete_quietly(item.key)

    def lock(self, holder: errors.LockHolder, *, timeout: float = 0.0) -> str:
        """Create the lock object where there is none, polling up to `timeout` seconds while
        another run holds it."""
        self._prove_safe()
        lock_id = str(uuid.uuid4())
        record = state.encode_record(holder, lock_id=lock_id)
        deadline = time.monotonic() + max(timeout, 0.0)
        delay = state.FIRST_RETRY_DELAY
        refusals_without_holder = 0
        while True:
            try:
                self._store.put(self._lock_key, record, if_none_match=True)
            except errors.PreconditionFailed:
                pass
            except (errors.StateError, errors.AwsError):
                # No reply (reset, timeout, 5xx past the retries): S3 may have made it.
                if self._holds(lock_id):
                    return lock_id
                raise
            else:
                return lock_id
            current = self._holder()
            if current is not None and current.lock_id == lock_id:
                # Our own create: its reply was lost, and botocore's retry was refused (412)
                # by the very object it had made.
                return lock_id
            if current is None:
                # Released between the two calls (or a 409 from a concurrent create): try
                # again soon; a store that keeps refusing with no lock object is broken.
                refusals_without_holder += 1
                if refusals_without_holder > _MAX_REFUSALS_WITHOUT_HOLDER:
                    raise errors.StateError(
                        f"cannot create the lock object s3://{self._store.bucket}/"
                        f"{self._lock_key}: the store refuses it, yet there is none")
                time.sleep(state.FIRST_RETRY_DELAY)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise state.locked_error(current, location=self.location)
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, state.MAX_RETRY_DELAY)

    def _holds(self, lock_id: str) -> bool:
        """Whether the lock object names `lock_id` (False when it cannot be read)."""
        try:
            current = self._holder()
        except (errors.StateError, errors.AwsError):
            return False
        return current is not None and current.lock_id == lock_id

    def _holder(self) -> errors.LockHolder | None:
        """The holder the lock object names; None when there is no lock object."""
        found = self._store.get(self._lock_key)
        if found is None:
            return None
        holder = state.decode_record(found[0])
        if holder is None:
            return errors.LockHolder(lock_id="(unreadable)", who="unknown", host="unknown",
                                     pid=0, operation="unknown", created="unknown",
                                     path=self.location)
        return holder

    def unlock(self, lock_id: str) -> None:
        """Delete the lock object after checking that it is still this run's (between the
        check and the delete only a force-unlock and a new lock could intervene)."""
        current = self._holder()
        if current is None or current.lock_id != lock_id:
            raise errors.StateError(
                f"the lock {lock_id} on {self.location} is no longer this run's "
                f"(removed by force-unlock?)",
                hint="check that no other run changed the state meanwhile")
        self._store.delete(self._lock_key)

    def force_unlock(self, lock_id: str) -> errors.LockHolder:
        """Delete the lock object if its record has `lock_id`; the holder it named."""
        current = self._holder()
        if current is None:
            raise errors.StateError(f"{self.location} is not locked")
        if current.lock_id != lock_id:
            raise errors.StateError(
                f"the lock on {self.location} has another id than {lock_id}",
                hint="copy the lock id from the lock refusal message")
        self._store.delete(self._lock_key)
        return current

    def current_lock(self) -> ports.HeldLock | None:
        """The lock object's holder; alive here when it names this host and a running pid
        (an S3 lock has no flock to ask)."""
        holder = self._holder()
        if holder is None:
            return None
        return ports.HeldLock(holder=holder, alive_here=state.alive_on_this_host(holder))

    def lock_holder(self) -> errors.LockHolder | None:
        """The holder the lock object names (None: there is none). An S3 lock has no process
        to watch, so a lock a killed run left counts as held until force-unlock."""
        return self._holder()


def probe_is_stale(name: str, *, last_modified: datetime.datetime,
                   now: datetime.datetime) -> bool:
    """Whether the probe object `name` (its key below the prefix) is no live run's: it names
    this host and a pid that is not running, or it is older than STALE_PROBE_SECONDS. A name
    that is not a probe's is never stale."""
    if not name.startswith(PROBE_NAME) or "/" in name:
        return False
    found = _PROBE_KEY.match(name)
    if found and found.group("host") == state.host_tag() and \
            not state.process_alive(int(found.group("pid"))):
        return True
    return (now - last_modified).total_seconds() > STALE_PROBE_SECONDS
