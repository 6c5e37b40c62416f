"""An in-memory ports.ObjectStore for the S3 state backend's tests that are not about S3
itself: it keeps whole objects with MD5 ETags and honours If-Match / If-None-Match as S3
does (412 -> errors.PreconditionFailed), atomically under one lock. With
`honours_conditions=False` it ignores them, as an unsafe store would. Each object keeps its
write time from `clock` (a test sets it to age objects). `lose_replies` plays a reply lost
on the way back, for the keys matching a glob: the put is done, then raises what the
client would see (`"retried"`: the 412 of botocore's retry; `"no-reply"`: an AwsError once
the retries ran out)."""

from __future__ import annotations

import datetime
import fnmatch
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from reconciler import errors, ports


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@dataclass
class MemoryObjectStore(ports.ObjectStore):
    """One bucket's objects by key: (bytes, ETag)."""

    bucket: str = "state-bucket"
    endpoint: str = "memory://"
    honours_conditions: bool = True
    objects: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    clock: Callable[[], datetime.datetime] = _utc_now
    modified: dict[str, datetime.datetime] = field(default_factory=dict)
    # glob of keys -> how many more puts lose their reply, and how it looks to the client
    lose_replies: dict[str, tuple[int, Literal["retried", "no-reply"]]] = field(
        default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def get(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag, or None."""
        with self._guard:
            self.calls.append(("get", key))
            return self.objects.get(key)

    def put(self, key: str, data: bytes, *, if_match: str | None = None,
            if_none_match: bool = False) -> str:
        """Store the object if the conditions hold (or are ignored); its new ETag."""
        with self._guard:
            self.calls.append(("put", key))
            current = self.objects.get(key)
            if self.honours_conditions:
                if if_none_match and current is not None:
                    raise errors.PreconditionFailed(f"{key}: exists")
                if if_match is not None and (current is None or current[1] != if_match):
                    raise errors.PreconditionFailed(f"{key}: not at {if_match}")
            etag = f'"{hashlib.md5(data).hexdigest()}"'
            self.objects[key] = (data, etag)
            self.modified[key] = self.clock()
            for pattern, (left, how) in self.lose_replies.items():
                if left > 0 and fnmatch.fnmatchcase(key, pattern):
                    self.lose_replies[pattern] = (left - 1, how)
                    if how == "retried":
                        raise errors.PreconditionFailed(f"{key}: exists (a retry)")
                    raise errors.AwsError(f"PutObject {key}: the connection was reset")
            return etag

    def delete(self, key: str) -> None:
        """Forget the object, if there is one."""
        with self._guard:
            self.calls.append(("delete", key))
            self.objects.pop(key, None)
            self.modified.pop(key, None)

    def listing(self, prefix: str) -> list[ports.StoredKey]:
        """The keys under `prefix` with their write times, sorted as S3 lists them."""
        with self._guard:
            self.calls.append(("list", prefix))
            return [ports.StoredKey(key=key, last_modified=self.modified[key])
                    for key in sorted(self.objects) if key.startswith(prefix)]
