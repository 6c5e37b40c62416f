"""The token bucket behind --max-rps, driven by an injected clock (no test sleeps)."""

from __future__ import annotations

import threading

import pytest

from reconciler import ratelimit


class FakeClock:
    """A clock that moves only when the bucket sleeps or the test advances it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def bucket(clock: FakeClock, *, rate: float, burst: int) -> ratelimit.TokenBucket:
    """A bucket on the fake clock."""
    return ratelimit.TokenBucket(rate=rate, burst=burst, clock=clock, sleep=clock.sleep)


def test_the_burst_is_free_then_calls_are_spaced_by_the_rate() -> None:
    """`burst` calls go at once; each further one waits 1/rate."""
    clock = FakeClock()
    limited = bucket(clock, rate=10, burst=3)
    waits = [limited.acquire() for _ in range(6)]
    assert waits[:3] == [0, 0, 0]
    assert waits[3:] == pytest.approx([0.1, 0.1, 0.1])
    assert clock.now == pytest.approx(100.3)


def test_idle_time_refills_up_to_the_burst_only() -> None:
    """A long pause saves up `burst` tokens, never more."""
    clock = FakeClock()
    limited = bucket(clock, rate=5, burst=2)
    for _ in range(2):
        limited.acquire()
    clock.now += 60
    assert [limited.acquire() for _ in range(3)] == pytest.approx([0, 0, 0.2])


def test_no_window_of_a_second_holds_more_than_rate_plus_burst() -> None:
    """Over 100 calls, any 1 s window holds at most rate + burst starts."""
    clock = FakeClock()
    limited = bucket(clock, rate=10, burst=3)
    starts = []
    for _ in range(100):
        limited.acquire()
        starts.append(clock.now)
    for index, start in enumerate(starts):
        in_window = [moment for moment in starts[index:] if moment - start < 1.0]
        assert len(in_window) <= 10 + 3


def test_concurrent_callers_reserve_distinct_turns() -> None:
    """Threads that acquire at the same instant get waits 0, 0, 1/rate, 2/rate, ... each once."""
    clock = FakeClock()
    waits: list[float] = []
    lock = threading.Lock()
    limited = ratelimit.TokenBucket(rate=4, burst=2, clock=clock, sleep=lambda _: None)

    def call() -> None:
        wait = limited.acquire()
        with lock:
            waits.append(wait)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(waits) == pytest.approx([0, 0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5])


@pytest.mark.parametrize("rate, burst", [(0, 1), (-1, 1), (1, 0)])
def test_a_bucket_that_could_never_give_a_token_is_refused(rate: float, burst: int) -> None:
    """A non-positive rate or an empty burst is a programming error, said at once."""
    with pytest.raises(ValueError):
        ratelimit.TokenBucket(rate=rate, burst=burst)
