"""gcpolicy: the tool's own process runs without collections until its long-lived objects are
built, then freezes them and collects again; a caller that runs the CLI in its own process (as
these tests do) keeps its collector as it was. Each case runs in a fresh interpreter, since
freezing would keep this process's objects for good."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCENARIO = textwrap.dedent("""
    import gc, json, sys
    from reconciler import gcpolicy
    seen = {}
    if sys.argv[1] == "own":
        gcpolicy.own_process()
        seen["enabled after own_process"] = gc.isenabled()
        seen["frozen after own_process"] = gc.get_freeze_count()
    held = [[index] for index in range(20_000)]  # lists: objects the collector tracks
    gcpolicy.settled()
    seen["enabled after settled"] = gc.isenabled()
    seen["frozen after settled"] = gc.get_freeze_count()
    print(json.dumps(seen))
""")


def _run(mode: str) -> dict[str, object]:
    """The scenario in a fresh interpreter: what it saw of its collector."""
    done = subprocess.run([sys.executable, "-c", SCENARIO, mode], capture_output=True,
                          text=True, timeout=60, check=True)
    seen: dict[str, object] = json.loads(done.stdout)
    return seen


def test_the_own_process_collects_nothing_until_settled_then_freezes() -> None:
    """From own_process to settled the collector is off; settled freezes what was made (the
    lists among it) and turns it back on."""
    seen = _run("own")
    assert seen["enabled after own_process"] is False
    assert seen["enabled after settled"] is True
    frozen_before, frozen_after = seen["frozen after own_process"], seen["frozen after settled"]
    assert isinstance(frozen_before, int) and isinstance(frozen_after, int)
    assert frozen_after >= frozen_before + 20_000


def test_another_caller_keeps_its_collector() -> None:
    """Without own_process (the CLI run in a caller's process), settled changes nothing."""
    assert _run("caller") == {"enabled after settled": True, "frozen after settled": 0}
