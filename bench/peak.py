"""Run one command as a child process and measure its wall time and its own peak RSS.

The peak is the child's VmHWM from /proc/<pid>/status, read every few milliseconds until it
exits (the high-water mark only grows, so the last read holds every earlier peak), and that
of each process it forks (reconcile identifies layers in a forked worker): the figure is the
largest single process's, as their pages are shared, not summed. Not
os.wait4's ru_maxrss: on Linux, exec keeps the larger of the parent's memory at the fork and
the child's own, so a benchmark whose own process is large (a moto server, a proxy holding a
40 MB request) would be reported as the child's peak. Elsewhere than Linux it falls back to
ru_maxrss, with that caveat.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

_POLL_SECONDS = 0.005


@dataclass(frozen=True)
class Measured:
    """A finished child: wall seconds, peak RSS in MiB, exit code."""

    seconds: float
    peak_mib: float
    exit_code: int


def _vm_hwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _descendants(pid: int) -> list[int]:
    """`pid` and every live process below it (Linux's /proc/<pid>/task/<tid>/children)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as kids:
                    pending.extend(int(kid) for kid in kids.read().split())
        except (OSError, ValueError):
            continue
    return found


def run(command: list[str], *, cwd: Path, env: dict[str, str],
        stdout: int | IO[bytes] | None = subprocess.DEVNULL,
        stderr: int | IO[bytes] | None = subprocess.PIPE) -> tuple[Measured, bytes]:
    """Run `command` to its end; its measurements and its stderr (when piped)."""
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                             stdout=stdout, stderr=stderr)
    peak_kib = 0
    captured = b""
    if sys.platform.startswith("linux"):
        while True:
            if child.poll() is not None:
                break
            for pid in _descendants(child.pid):
                found = _vm_hwm_kib(pid)
                if found is not None:
                    peak_kib = max(peak_kib, found)
            time.sleep(_POLL_SECONDS)
        seconds = time.perf_counter() - started
        if child.stderr is not None:
            captured = child.stderr.read()
        return Measured(seconds=seconds, peak_mib=peak_kib / 1024,
                        exit_code=child.returncode), captured
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.stderr is not None:
        captured = child.stderr.read()
    scale = 1 if sys.platform == "darwin" else 1024
    return Measured(seconds=seconds, peak_mib=usage.ru_maxrss * scale / 1024 / 1024,
                    exit_code=child.returncode), captured
