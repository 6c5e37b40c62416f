"""A kill point for the end-to-end tests: put this folder on a child's PYTHONPATH and set
RECONCILE_TEST_KILL_AT to `EVENT|GLOB|N`; the child then SIGKILLs itself at the N-th audit
event EVENT (`os.rename`, `os.link`, `open`, ...) one of whose string arguments matches GLOB.

It is how a test stops a real `reconcile` process at an exact point no proxy can reach (the
instant before the lockfile's rename, before a zip's rename): the process dies as it would
under `kill -9`, and nothing of the tool is changed or patched. Unset, it does nothing.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import sys

_SPEC = os.environ.get("RECONCILE_TEST_KILL_AT", "")


def _install(spec: str) -> None:
    event_name, pattern, nth = spec.split("|")
    seen = [0]

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event != event_name:
            return
        if not any(isinstance(arg, str | bytes | os.PathLike)
                   and fnmatch.fnmatchcase(os.fsdecode(arg), pattern) for arg in args):
            return
        seen[0] += 1
        if seen[0] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)


if _SPEC:
    _install(_SPEC)
