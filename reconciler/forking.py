"""Work done in a forked child process while this one goes on, for the plain data it hands back.

Shell: it forks processes and knows nothing of the project. headstart.Prefetch identifies the
layers in one while the run imports botocore; the stat cache has one hash a share of the files
of a cold identify while this process hashes the others (StatCache.reading_ahead).

A child never returns into the caller's code: it runs `work`, writes its pickled result to a
pipe and leaves with os._exit (no atexit handler, no buffered stream of the parent's is
flushed twice). It holds none of the parent's streams: a pipe reader (`reconcile plan | tee`,
CI) waits for every writer to close, and a child writes nothing there. It dies with its parent,
even one killed by SIGKILL (Linux's PR_SET_PDEATHSIG), so nothing goes on reading files in the
background. Any failure of the child (killed, an exception, a result that does not unpickle)
is a `collect()` of None: the caller then does the work itself, so a child can cost time,
never a result. A fork is made only where it is safe: on Linux, in a process that has started
no thread (a fork copies one thread, and locks another held would stay held in the child).
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Generic, TypeVar

T = TypeVar("T")

_FAILED = object()


def can_fork() -> bool:
    """Whether this process may fork a child: Linux, and no thread but this one."""
    return sys.platform == "linux" and threading.active_count() == 1


def _die_with_parent(parent: int) -> None:
    """In a child: be killed when the parent dies (even by SIGKILL), through Linux's
    PR_SET_PDEATHSIG; exit at once if it has died already."""
    import ctypes  # the children's only: ~5 ms the run itself never pays

    with suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


class Forked(Generic[T]):
    """One child process running `work`; `collect` waits for what it returns (None when the
    child failed, so `work` should not return None itself), `cancel` stops it."""

    def __init__(self, *, pid: int, reader: int) -> None:
        self._pid = pid
        self._reader = reader
        self._result: object = _FAILED
        self._collected = False  # collect() gave its answer, or cancel() was called
        self._reaped = False  # the child was waited for (its pipe end is closed)

    @classmethod
    def start(cls, work: Callable[[], T]) -> Forked[T] | None:
        """Fork a child that runs `work`; None where no fork is safe or none can be made."""
        if not can_fork():
            return None
        try:
            reader, writer = os.pipe()
        except OSError:  # out of descriptors
            return None
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            os.close(reader)
            os.close(writer)
            return None
        if pid == 0:  # the child: never returns into the caller's code
            status = 1
            try:
                os.close(reader)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                _die_with_parent(parent)
                # What it inherited lives until it exits: frozen out of the collector, which
                # is on (the parent's may be off: gcpolicy) for what the child makes itself.
                gc.freeze()
                gc.enable()
                quiet = os.open(os.devnull, os.O_RDWR)
                for stream in (0, 1, 2):
                    os.dup2(quiet, stream)
                payload = pickle.dumps(work())
                with os.fdopen(writer, "wb") as out:
                    out.write(payload)
                status = 0
            except BaseException:
                pass
            finally:
                os._exit(status)
        os.close(writer)
        return cls(pid=pid, reader=reader)

    @property
    def pid(self) -> int:
        """The child's process ID."""
        return self._pid

    def collect(self) -> T | None:
        """What `work` returned (waiting for it), or None if the child failed."""
        if not self._collected:
            try:
                with os.fdopen(self._reader, "rb") as source:
                    payload = source.read()
                _, status = os.waitpid(self._pid, 0)
                self._reaped = True
                if status == 0:
                    self._result = pickle.loads(payload)
            except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError,
                    AttributeError, ImportError):
                self._result = _FAILED
            finally:  # even when interrupted (KeyboardInterrupt): cancel() still reaps it
                self._collected = True
        if self._result is _FAILED:
            return None
        result: T = self._result  # type: ignore[assignment]
        return result

    def cancel(self) -> None:
        """Stop the child if it has not been waited for yet; collect then gives None."""
        if self._reaped:
            return
        reader_open = not self._collected  # collect() closes it, even when interrupted
        self._collected = self._reaped = True
        self._result = _FAILED
        with suppress(OSError):
            os.kill(self._pid, signal.SIGKILL)
        with suppress(OSError):
            os.waitpid(self._pid, 0)
        if reader_open:
            with suppress(OSError):
                os.close(self._reader)
