"""An in-memory ports.ObjectStore for the S3 state backend's tests that are not about S3
itself: it keeps whole objects with MD5 ETags and honours If-Match / If-None-Match as S3
does (412 -> errors.PreconditionFailed), atomically under one lock. With
`honours_conditions=False` it ignores them, as an unsafe store would."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

from reconciler import errors


@dataclass
class MemoryObjectStore:
    """One bucket's objects by key: (bytes, ETag)."""

    bucket: str = "state-bucket"
    endpoint: str = "memory://"
    honours_conditions: bool = True
    objects: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
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
            return etag

    def delete(self, key: str) -> None:
        """Forget the object, if there is one."""
        with self._guard:
            self.calls.append(("delete", key))
            self.objects.pop(key, None)
