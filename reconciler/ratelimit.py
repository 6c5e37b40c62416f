"""A thread-safe token bucket: the client-side limit of calls per second per account and region.

Lambda's control plane allows about 15 requests per second per account and region; going over
it gets calls throttled (and retried, which costs more time than waiting). `aws` gives every
Lambda client of a region the same bucket and takes one token before each call it sends.

This module owns only the arithmetic of the bucket and the wait. It knows nothing of AWS,
makes no call and reads no clock of its own choosing: the clock and the sleep are injected,
so that tests drive it without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

DEFAULT_RPS = 10.0  # below Lambda's ~15 requests/s per region, with room for other callers
DEFAULT_BURST = 3  # a few calls at once, as the pool's first workers start together


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up. `acquire()` takes one, waiting for it
    when none is left; over any interval of t seconds at most `burst + rate * t` are taken."""

    def __init__(self, *, rate: float, burst: int = DEFAULT_BURST,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate, self.burst = rate, burst
        self._clock, self._sleep = clock, sleep
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def _reserve(self) -> float:
        """Take a token now (the balance may go negative: a reservation) and return how long
        the caller must wait before it is its turn. Reserving under the lock, then sleeping
        outside it, keeps waiters in order without holding the lock while asleep."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst),
                               self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self) -> float:
        """Take one token, sleeping until it is available; return the seconds waited."""
        wait = self._reserve()
        if wait > 0:
            self._sleep(wait)
        return wait
