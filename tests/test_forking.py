"""forking.Forked: a child's result comes back whole, and any failure of the child (an
exception, a kill, a result that cannot be pickled) is a None the caller falls back on;
a child holds none of the parent's streams and does not outlive a cancel.

Each scenario runs in a fresh interpreter: a fork is made only from a process that has
started no thread, and pytest's may have (a moto server of another test module)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCENARIO = textwrap.dedent("""
    import os, signal, sys, threading, time
    from reconciler import forking
    mode = sys.argv[1]

    def work():
        if mode == "raises":
            raise RuntimeError("the child fails")
        if mode == "unpicklable":
            return lambda: None
        if mode in ("killed", "cancelled"):
            time.sleep(3600)
        if mode == "prints":
            print("from the child", flush=True)
        return {"pid": os.getpid(), "data": list(range(100_000))}

    if mode == "thread":
        threading.Thread(target=time.sleep, args=(1,), daemon=True).start()
    child = forking.Forked.start(work)
    if child is None:
        print("no child")
        sys.exit(0)
    if mode == "killed":
        os.kill(child.pid, signal.SIGKILL)
    if mode == "cancelled":
        child.cancel()
        try:  # reaped by the cancel, while this process still lives
            os.kill(child.pid, 0)
            print("still there", flush=True)
        except ProcessLookupError:
            print("gone", flush=True)
        print(child.collect(), flush=True)
        sys.exit(0)
    result = child.collect()
    again = child.collect()
    if result is None:
        print("failed", again is None)
    else:
        print(result["pid"] != os.getpid(), result["data"] == list(range(100_000)),
              again == result)
""")


def _run(mode: str) -> str:
    done = subprocess.run([sys.executable, "-c", SCENARIO, mode], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_childs_result_comes_back_whole() -> None:
    """The child's return value (100,000 items) arrives intact, from another process, and a
    second collect gives the same value."""
    assert _run("ok") == "True True True"


@pytest.mark.parametrize("mode", ["raises", "unpicklable", "killed"])
def test_a_failed_child_is_none(mode: str) -> None:
    """An exception in the child, a result pickle refuses, or a child killed before it
    answers: collect gives None (the caller then does the work itself), and keeps giving it."""
    assert _run(mode) == "failed True"


def test_no_fork_once_a_thread_runs() -> None:
    """A process that has started a thread is not forked: start gives None."""
    assert _run("thread") == "no child"


def test_a_child_writes_nothing_to_the_parents_streams() -> None:
    """What a child prints goes nowhere: a pipe reader of the parent's stdout sees only the
    parent's own output (and is not kept waiting by the child)."""
    assert _run("prints") == "True True True"


def test_cancel_stops_the_child() -> None:
    """A cancelled child (one that would sleep for an hour) is killed and reaped by the cancel
    itself, while the parent lives on (not by the kernel as the parent exits), and collect
    after a cancel is None."""
    assert _run("cancelled").splitlines() == ["gone", "None"]
