"""Stop on a signal around the state lock: SIGTERM and Ctrl-C, from the moment a run starts
taking the lock until it has released it, either ask the run to stop at its next safe point
or stop it at once, and the lock is always released on the way out.

It owns the process's SIGTERM/SIGINT handlers for that span (only the main thread may
install them) and the messages a signal prints; what a stop means for the work is the use
cases' (apply's `stop` event, state.take_lock's wait).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from reconciler import errors
from reconciler.command import views


class _SignalStop(BaseException):
    """Raised by the signal handler where the main thread is, to stop at once. A
    BaseException, so that no `except ReconcilerError` on the way (a planning step that
    turns errors into layer errors, apply's loop) takes it for a failure and goes on;
    `StopOnSignal.__exit__` turns it into Interrupted once the lock is released."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StopOnSignal:
    """SIGTERM and Ctrl-C, from the moment a run starts taking the state lock until it has
    released it: the lock is always released (a SIGTERM's default action would end the
    process at once, leaving an S3 lock object behind for a force-unlock).

    - While the lock is being taken, or while apply publishes, a signal only asks to stop
      (`event`): a wait for the lock ends (state.take_lock), a lock taken meanwhile is
      released at once (`raise_if_stopped`), apply starts no new publish and awaits and
      records those in flight.
    - While planning and asking (`interrupt_now(True)`), nothing has changed yet: a signal
      stops the run where it is (_SignalStop), and the lock is released on the way out.
    A second Ctrl-C stops at once (_SignalStop), the lock still released on the way."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, Any] = {}
        self._interrupt_now = False

    def _handle(self, signum: int, _frame: object) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            # Not KeyboardInterrupt: typer would turn it into a silent exit 130.
            self._interrupt_now = False
            views.err("stopping at once: a publish in flight is not recorded (the next apply "
                      "adopts it)")
            raise _SignalStop(
                "interrupted at once: a publish that was in flight may have made a version "
                "that is not recorded; the next apply adopts it instead of publishing it again")
        self.event.set()
        if self._interrupt_now:
            self._interrupt_now = False
            views.err("stopping: nothing was changed; releasing the state lock")
            raise _SignalStop(self._interrupted().message)
        views.err("stopping at the next safe point: no new publish starts; those in flight "
                  "are awaited and recorded (Ctrl-C again to stop at once)")

    @staticmethod
    def _interrupted() -> errors.Interrupted:
        return errors.Interrupted("apply was interrupted before any change: nothing was "
                                  "published or recorded",
                                  hint="run apply again")

    def raise_if_stopped(self) -> None:
        """Interrupted if a signal came while the lock was being taken."""
        if self.event.is_set():
            raise self._interrupted()

    def interrupt_now(self, enabled: bool) -> None:
        """From now on a signal raises Interrupted at once (True), or only asks to stop."""
        self._interrupt_now = enabled
        if enabled:
            self.raise_if_stopped()

    def __enter__(self) -> StopOnSignal:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, kind: object, error: BaseException | None, _: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        if isinstance(error, _SignalStop):
            raise errors.Interrupted(error.message, hint="run apply again") from None
