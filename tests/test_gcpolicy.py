"""gcpolicy: the tool's own process runs without collections until its long-lived objects are
built, then freezes them and collects again; a caller that runs the CLI in its own process (as
these tests do) keeps its collector as it was. Each case runs in a fresh interpreter, since
freezing would keep this process's objects for good."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCENARIO = textwrap.dedent("""
    import gc, json, sys
    from reconciler import gcpolicy
    seen = {"frozen at start": gc.get_freeze_count()}  # (not 0 on every Python: 3.12.1)
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
    seen = _run("caller")
    assert seen["enabled after settled"] is True
    assert seen["frozen after settled"] == seen["frozen at start"]


SESSION = textwrap.dedent("""
    import gc, json, os
    from pathlib import Path
    from reconciler import forking, gcpolicy
    from reconciler.command import compose
    from reconciler.run import session
    gcpolicy.own_process()
    child = forking.Forked.start(lambda: [gc.isenabled(), gc.get_freeze_count() > 0])
    in_child = child.collect() if child is not None else None
    stores = compose.compose(compose.Options(manifest=Path("layers.yaml")))
    before = gc.isenabled()
    opened = session.open_session(stores, targets=None, regions=None)
    opened.code.identify(list(opened.parsed.layers))
    print(json.dumps({"before": before, "after": gc.isenabled(),
                      "frozen": gc.get_freeze_count(), "child": in_child}))
""")


def test_a_session_settles_and_a_forked_worker_collects(tmp_path: Path) -> None:
    """In the tool's own process the collector is off until a plan's session is open, on
    after it with what was made frozen; a worker forked meanwhile freezes what it inherited
    and collects what it makes (no AWS call is made: clients are only created)."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "x.py").write_text("X = 1\n")
    (tmp_path / "layers.yaml").write_text(
        "version: 1\nregion: us-east-1\nlayers:\n  tools:\n    content: {path: tools}\n")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
           "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    done = subprocess.run([sys.executable, "-c", SESSION], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(done.stdout)
    assert seen["before"] is False and seen["after"] is True
    assert seen["frozen"] > 10_000  # the modules, botocore's models and the clients
    assert seen["child"] == [True, True]
