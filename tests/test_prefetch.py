"""headstart.Prefetch: the layers identified in a forked worker give exactly what identifying
them in the run's own process gives, and a worker that fails costs time, never a result.

Each scenario runs in a fresh interpreter: the worker is forked only from a process that has
started no thread, and pytest's may have (a moto server of another test module)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import TypedDict

import pytest

MANIFEST = """\
version: 1
region: us-east-1
layers:
  tools:
    compatible_runtimes: [python3.12]
    content: {path: tools, prefix: python}
  more:
    compatible_runtimes: [python3.12]
    content: {path: more}
  leaky:
    compatible_runtimes: [python3.12]
    content: {path: leaky}
"""

# Runs in the child interpreter: identify through a worker (or not), print plain results.
SCENARIO = textwrap.dedent("""
    import json, os, signal, sys
    from pathlib import Path
    from reconciler import artifacts, model, workspace
    mode = sys.argv[1]
    space = workspace.Workspace.for_manifest(Path("layers.yaml"))
    parsed = workspace.load_manifest(space)
    code = artifacts.LocalCode(space=space, manifest=parsed)
    specs = list(parsed.layers)
    worker = None
    if mode != "inline":
        code.prefetch(specs)
        worker = code.prefetching
        assert worker is not None, "no worker was started"
        if mode == "killed":
            os.kill(worker.pid, signal.SIGKILL)
        if mode in ("abandoned", "run killed"):
            print(worker.pid, flush=True)
            if mode == "run killed":
                import time
                time.sleep(0.1)  # the worker is at work, past its start-up checks
                os.kill(os.getpid(), signal.SIGKILL)
            sys.exit(0)
    if mode == "held":  # let the worker finish first (43 files take it a few ms)
        import time
        time.sleep(0.5)
    identified_ns = __import__("time").time_ns()
    found = code.identify(specs)
    cache = json.loads(space.stat_cache_path.read_text())
    print(json.dumps({
        "found": {key: (value.fingerprint if isinstance(value, model.Artifact)
                        else "error: " + value.message.replace(os.getcwd(), "<project>"))
                  for key, value in found.items()},
        "cached": {key: entry[-1] for key, entry in cache["entries"].items()},
        "worker_used": worker is not None and worker.collect() is not None,
        "written_before_identify": cache["written_ns"] < identified_ns,
    }))
""")


def _project(folder: Path, *, tools: int = 40, size: int = 3000) -> Path:
    for layer, files in (("tools", tools), ("more", 3), ("leaky", 1)):
        (folder / layer).mkdir(parents=True)
        for number in range(files):
            (folder / layer / f"m{number}.py").write_bytes(os.urandom(size + number % 97))
    os.chmod(folder / "tools" / "m1.py", 0o755)
    (folder / "leaky" / "out").symlink_to("../tools/m0.py")  # leaves its folder: an error
    (folder / "layers.yaml").write_text(MANIFEST)
    return folder


class Identified(TypedDict):
    """What SCENARIO prints: each layer's fingerprint (or "error: ..."), the saved stat
    cache's digest per path, and the worker's part."""

    found: dict[str, str]
    cached: dict[str, str]
    worker_used: bool
    written_before_identify: bool


def _identify(folder: Path, mode: str) -> Identified:
    done = subprocess.run([sys.executable, "-c", SCENARIO, mode], cwd=folder, check=True,
                          capture_output=True, text=True)
    result: Identified = json.loads(done.stdout)
    return result


@pytest.fixture
def two_copies(tmp_path: Path) -> tuple[Path, Path]:
    """The same project in two folders (no shared stat cache)."""
    first = _project(tmp_path / "a")
    second = tmp_path / "b"
    subprocess.run(["cp", "-a", str(first), str(second)], check=True)
    return first, second


def test_the_worker_identifies_as_this_process_does(two_copies: tuple[Path, Path]) -> None:
    """Fingerprints, content errors and the saved stat cache's digests are the same whether
    the layers are identified by a worker or in the run's own process."""
    first, second = two_copies
    through_worker = _identify(first, "worker")
    inline = _identify(second, "inline")
    assert through_worker["worker_used"] is True
    found = through_worker["found"]
    assert isinstance(found, dict) and found == inline["found"]
    assert str(found["leaky"]).startswith("error: ") and "outside" in str(found["leaky"])
    relative = {mode: {os.path.relpath(key, folder): digest for key, digest in
                       dict(result["cached"]).items()}
                for mode, folder, result in (("worker", first, through_worker),
                                             ("inline", second, inline))}
    assert relative["worker"] == relative["inline"]
    assert len(relative["worker"]) == 43  # tools and more; leaky stops before hashing


def test_the_run_saves_the_cache_the_worker_encoded(two_copies: tuple[Path, Path]) -> None:
    """The stat cache the run saves is the worker's bytes as they are (their write time is
    the worker's, before the run even asked for them), with the digests an inline identify
    saves."""
    first, second = two_copies
    held = _identify(first, "held")
    inline = _identify(second, "inline")
    assert held["worker_used"] is True and held["written_before_identify"] is True
    assert inline["written_before_identify"] is False
    assert held["found"] == inline["found"]
    assert sorted(dict(held["cached"]).values()) == \
        sorted(dict(inline["cached"]).values())


def test_a_killed_worker_costs_time_not_a_result(tmp_path: Path) -> None:
    """A worker killed as soon as it starts (3,000 files keep it busy far longer than the
    kill takes): the layers are identified in the run's own process instead, alike."""
    first = _project(tmp_path / "a", tools=3000)
    second = tmp_path / "b"
    subprocess.run(["cp", "-a", str(first), str(second)], check=True)
    killed = _identify(first, "killed")
    assert killed["worker_used"] is False
    assert killed["found"] == _identify(second, "inline")["found"]


def test_a_same_size_rewrite_with_its_mtime_restored_is_seen(tmp_path: Path) -> None:
    """Warm (the stat cache holds every file), a file rewritten with other bytes of the same
    size and its mtime put back is still seen through the worker: its ctime changed."""
    folder = _project(tmp_path / "p")
    victim = folder / "tools" / "m5.py"
    old = os.stat(victim)
    os.utime(folder / "tools", ns=(old.st_atime_ns, old.st_mtime_ns - 10**10))
    for path in (folder / "tools").iterdir():  # settled files, older than the racy window
        os.utime(path, ns=(old.st_atime_ns - 10**10, old.st_mtime_ns - 10**10))
    before = _identify(folder, "worker")
    settled = os.stat(victim)
    victim.write_bytes(os.urandom(settled.st_size))
    os.utime(victim, ns=(settled.st_atime_ns, settled.st_mtime_ns))
    after = _identify(folder, "worker")
    assert os.stat(victim).st_mtime_ns == settled.st_mtime_ns
    found_before, found_after = dict(before["found"]), dict(after["found"])
    assert found_before["tools"] != found_after["tools"]
    assert found_before["more"] == found_after["more"]


def _alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie nobody reaped yet is not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.fixture(scope="module")
def busy_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project of 40,000 small files, made once for the tests that only read it."""
    return _project(tmp_path_factory.mktemp("busy") / "p", tools=40000, size=64)


@pytest.mark.parametrize("how", ["abandoned", "run killed"])
def test_a_run_that_ends_before_collecting_leaves_no_worker(busy_project: Path,
                                                            how: str) -> None:
    """A run that exits without collecting its worker (an early error) stops it before it
    exits, and a run killed by SIGKILL takes its worker with it at once: nothing goes on
    hashing in the background (40,000 files keep a worker busy for most of a second)."""
    done = subprocess.run([sys.executable, "-c", SCENARIO, how], cwd=busy_project,
                          capture_output=True, text=True)
    pid = int(done.stdout.split()[0])
    if how == "run killed":  # the kernel signals the worker as the run dies; let it land
        deadline = time.monotonic() + 0.3
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
    assert not _alive(pid)


def _session_members(session: int) -> list[int]:
    """The live processes of the session led by `session` (zombies excluded)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X") and int(fields[3]) == session:  # state, ..., session
            members.append(int(entry))
    return members


def _listing(folder: Path) -> list[tuple[str, int, int]]:
    """Every path under `folder` (the 40,000 layer files aside) with its size and mtime."""
    return sorted((str(path.relative_to(folder)), path.lstat().st_size, path.lstat().st_mtime_ns)
                  for path in folder.rglob("*") if path.parent.name != "tools")


@pytest.mark.parametrize("problem", [
    ("compatible_runtimes: [python3.12]", "compatible_runtimes: [python9]"),  # the schema's
    ("content: {path: tools, prefix: python}", "content: {path: gone, prefix: python}"),
])
def test_a_manifest_refused_after_the_head_start_leaves_nothing(
        busy_project: Path, problem: tuple[str, str]) -> None:
    """The layers' files start being read before the schema pass and the checks on disk; a
    manifest refused by either (a runtime the schema does not know, a folder that does not
    exist) still exits 1 with the located problem, writes nothing, and leaves no worker
    reading the 40,000 files in the background."""
    old, new = problem
    refused = busy_project / "refused.yaml"
    refused.write_text(MANIFEST.replace(old, new, 1))
    before = _listing(busy_project)
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL="http://127.0.0.1:9")
    script = Path(sys.executable).parent / "reconcile"
    try:
        run = subprocess.Popen([str(script), "plan", "-f", "refused.yaml"], cwd=busy_project,
                               env=env, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True)
        _, err = run.communicate(timeout=60)
        after = _listing(busy_project)
    finally:
        refused.unlink()
    assert run.returncode == 1, err
    assert err.startswith("refused.yaml:") and "Traceback" not in err
    assert "1 problem found; nothing was changed." in err
    assert ("python9" in err) if "python9" in new else ("'gone' does not exist" in err)
    assert _session_members(run.pid) == []
    assert after == before


# Runs in the child interpreter: identify the `tools` layer (through a worker, under the given
# state), add a file, then build; prints the zip's names or the build's error.
BUILD_AFTER_AN_ADDED_FILE = textwrap.dedent("""
    import json, sys, zipfile
    from pathlib import Path
    from reconciler import artifacts, errors, headstart, model, workspace
    mode = sys.argv[1]
    space = workspace.Workspace.for_manifest(Path("layers.yaml"))
    parsed = workspace.load_manifest(space)
    code = artifacts.LocalCode(space=space, manifest=parsed)
    specs = [spec for spec in parsed.layers if spec.key == "tools"]
    if mode != "inline":
        code._take(headstart.HeadStart.begin(
            space, specs, state="s3://bucket/state.json" if mode == "s3 state" else None,
            checked=True))
    artifact = code.identify(specs)["tools"]
    assert isinstance(artifact, model.Artifact), artifact
    Path("tools/added.py").write_text("added after the identify\\n")
    try:
        built = code.build(specs[0], artifact)
    except errors.ContentError as error:
        print(json.dumps({"error": error.message}))
    else:
        with zipfile.ZipFile(built.zip_path) as archive:
            print(json.dumps({"names": sorted(archive.namelist()),
                              "fingerprint": built.fingerprint == artifact.fingerprint}))
""")


@pytest.mark.parametrize("mode", ["worker", "inline", "s3 state"])
def test_a_build_uses_the_walk_its_identify_fingerprinted(tmp_path: Path, mode: str) -> None:
    """A folder layer the run will build (not recorded in the local lockfile) is not walked
    again: the worker hands its walk over, and the zip holds what was identified, a file added
    since left for the next run. Identified in this process, or under an S3 state (where the
    worker cannot tell what is recorded, so hands nothing over), the build walks again and
    refuses the change."""
    folder = _project(tmp_path / "project", tools=3)
    done = subprocess.run([sys.executable, "-c", BUILD_AFTER_AN_ADDED_FILE, mode], cwd=folder,
                          check=True, capture_output=True, text=True)
    result = json.loads(done.stdout)
    if mode == "worker":
        assert result == {"names": ["python/m0.py", "python/m1.py", "python/m2.py"],
                          "fingerprint": True}
    else:
        assert "changed while planning" in result["error"]


def test_a_packed_walk_comes_back_whole(tmp_path: Path) -> None:
    """pack_walk / unpack_walk: the entries (a symlink, an executable), every stat field the
    build compares (nanosecond times, inode, device, mode, size) and the digests come back
    equal."""
    from reconciler import model
    from reconciler.content import common, folder

    project = _project(tmp_path / "project", tools=4)
    (project / "tools" / "alias.py").symlink_to("m0.py")
    walked = folder.collect(model.ContentSpec(kind=model.SourceKind.PATH, path="tools"),
                            base_dir=project,
                            label="layers.tools", skip=frozenset())
    digests = {entry.source: f"{index:064x}" for index, entry in enumerate(walked.entries)}
    packed = common.pack_walk(dataclasses.replace(walked, sha256=digests))
    back = common.unpack_walk(packed)
    assert back.entries == walked.entries
    assert any(entry.link_target for entry in back.entries)
    assert any(entry.executable for entry in back.entries)
    assert back.sha256 == digests and back.git_ignored == walked.git_ignored
    fields = ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size",
              "st_atime_ns", "st_mtime_ns", "st_ctime_ns", "st_mtime")
    assert back.stats.keys() == walked.stats.keys()
    for source, found in walked.stats.items():
        assert [getattr(back.stats[source], name) for name in fields] == \
            [getattr(found, name) for name in fields]
