"""A folder layer's zip written ahead by the head start's worker (headstart._folders_ahead):
only once the manifest passed its checks (a worker begun from the early build waits for
`proceed`, and one collected without it writes nothing); into `.reconcile/build/` when it
exists, else in full into the wheel cache's `prebuild/`; the run moves it into place, and it
is byte for byte the zip the run builds itself, incrementally or in full.
Through the installed CLI against a moto server, the version an apply after an edit
publishes has the CodeSha256 of a full build of the same files, and nothing is left behind.

The scenarios run in fresh interpreters: the worker is forked only from a process that has
started no thread, and pytest's may have (a moto server of another test module)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from clirun import invoke, run

# Runs in the child interpreter: identify and build the layer (a head start begun from a
# manifest not yet checked, then told it passed or not; or no worker; or a full build);
# prints what the build folder held after identify, and the zip's digests.
SCENARIO = textwrap.dedent("""
    import hashlib, json, os, shutil, sys
    from pathlib import Path
    import base64
    from reconciler import artifacts, headstart, model, uploadbody, workspace
    mode = sys.argv[1]
    space = workspace.Workspace.for_manifest(Path("layers.yaml"))
    parsed = workspace.load_manifest(space)
    code = artifacts.LocalCode(space=space, manifest=parsed)
    specs = list(parsed.layers)
    build = space.cache_dir / "build"
    elsewhere = headstart.prebuild_dir(os.environ)
    if mode.endswith("full"):
        shutil.rmtree(build)
    if mode.startswith(("proceed", "shut")):
        head_start = headstart.HeadStart.begin(space, specs, state=parsed.state, checked=False,
                                               uploads="upload" in mode)
        assert head_start.prefetch is not None, "no worker was started"
        if mode.startswith("proceed"):
            head_start.proceed()
        code._take(head_start)
    found = code.identify(specs)
    temps = sorted(path.name for folder in (build, elsewhere) if folder.is_dir()
                   for path in folder.glob("*.zip.tmp"))
    in_project = build.is_dir() and bool(list(build.glob("*.zip.tmp")))
    project_had_build = build.is_dir()
    artifact = found["tools"]
    assert isinstance(artifact, model.Artifact), artifact
    built = code.build(specs[0], artifact)
    offered = uploadbody.take(Path(built.zip_path))
    print(json.dumps({
        "offered": None if offered is None else
                   offered.read_at(0, offered.length + 1) == base64.b64encode(
                       Path(built.zip_path).read_bytes()),
        "pid": os.getpid(),
        "temps_after_identify": temps,
        "temp_in_project": in_project,
        "build_folder_after_identify": project_had_build,
        "temps_after_build": sorted(path.name for folder in (build, elsewhere)
                                    if folder.is_dir() for path in folder.glob("*.zip.tmp")),
        "elsewhere": sorted(path.name for path in elsewhere.glob("*")),
        "zip_sha256": hashlib.sha256(Path(built.zip_path).read_bytes()).hexdigest(),
        "code_sha256": built.code_sha256,
        "index": Path(built.zip_path).with_suffix(".index.json").is_file(),
    }))
""")

MANIFEST = """\
version: 1
region: us-east-1
layers:
  tools:
    compatible_runtimes: [python3.12]
    compatible_architectures: [x86_64]
    content: {path: tools, prefix: python}
"""


def _project(folder: Path) -> Path:
    """A repository with one folder layer of 40 modules (some large enough to deflate)."""
    (folder / ".git").mkdir(parents=True)
    tools = folder / "tools"
    tools.mkdir()
    for number in range(40):
        (tools / f"m{number}.py").write_text(f"VALUE = {number}\n" + "# padding\n" * number * 50)
    (tools / "empty.py").write_text("")
    (folder / "layers.yaml").write_text(MANIFEST)
    return folder


def _run(folder: Path, mode: str) -> dict[str, Any]:
    """The scenario in a fresh interpreter in `folder`, with a wheel cache of its own."""
    env = {**os.environ, "RECONCILE_CACHE_DIR": str(folder.parent / f"cache-{folder.name}")}
    done = subprocess.run([sys.executable, "-c", SCENARIO, mode], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[0])
    return result


def _edited_copies(tmp_path: Path, modes: list[str], *, big: bool = False,
                   manifest: str = MANIFEST) -> dict[str, Path]:
    """One project (`big`: with 5 MB that do not compress), built once (its previous zip in
    `.reconcile/build/`), then a copy per mode with the same file edited the same way."""
    base = _project(tmp_path / "base")
    (base / "layers.yaml").write_text(manifest)
    if big:
        (base / "tools" / "blob.bin").write_bytes(os.urandom(5 * 1024 * 1024))
    _run(base, "inline")
    copies = {}
    for mode in modes:
        copy = tmp_path / mode
        shutil.copytree(base, copy, symlinks=True)
        (copy / "tools" / "m7.py").write_text("VALUE = 'edited'\n")
        copies[mode] = copy
    return copies


def test_the_worker_builds_the_edited_layer_once_the_manifest_passed(tmp_path: Path) -> None:
    """Told the manifest passed, the worker writes the edited layer's zip into the build
    folder during identify (a temp named by the run's pid), and the run moves it into place
    with its index; it is byte for byte the zip built by the run itself (incrementally) and
    by a full build."""
    copies = _edited_copies(tmp_path, ["proceed", "inline", "full"])
    ahead = _run(copies["proceed"], "proceed")
    assert [name.split(".")[2] for name in ahead["temps_after_identify"]] == [str(ahead["pid"])]
    assert ahead["temp_in_project"] is True
    assert ahead["temps_after_build"] == [] and ahead["index"]
    inline = _run(copies["inline"], "inline")
    full = _run(copies["full"], "full")
    assert inline["temps_after_identify"] == full["temps_after_identify"] == []
    assert ahead["zip_sha256"] == inline["zip_sha256"] == full["zip_sha256"]
    assert ahead["code_sha256"] == inline["code_sha256"] == full["code_sha256"]


@pytest.mark.parametrize("big", [False, True])
def test_an_apply_gets_the_zip_written_ahead_already_encoded(tmp_path: Path, big: bool) -> None:
    """For an apply (`uploads`), the worker's helper also writes the base64 of the zip the
    worker writes ahead into the run's temporary file, following the writing (a zip of 5 MB:
    many pieces); once the zip is in place, its upload is offered exactly that encoding. A
    plan is offered none."""
    copies = _edited_copies(tmp_path, ["proceed upload", "proceed"], big=big)
    upload = _run(copies["proceed upload"], "proceed upload")
    assert upload["offered"] is True
    assert _run(copies["proceed"], "proceed")["offered"] is None


def test_a_previous_zip_not_what_its_index_says_is_caught_while_the_worker_copies(
        tmp_path: Path) -> None:
    """The worker copies from the previous zip while its helper verifies it: one whose bytes
    are not what its index says (a byte flipped inside a member) makes the worker throw its
    zip away (no temp left, nothing offered to the upload); the run's own build, which finds
    it so too, has a full build's bytes."""
    copies = _edited_copies(tmp_path, ["proceed upload", "full"], big=True)
    zip_path = next((copies["proceed upload"] / ".reconcile" / "build").glob("*.zip"))
    data = bytearray(zip_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    zip_path.write_bytes(bytes(data))
    ahead = _run(copies["proceed upload"], "proceed upload")
    full = _run(copies["full"], "full")
    assert ahead["temps_after_identify"] == [] and ahead["offered"] is None
    assert ahead["zip_sha256"] == full["zip_sha256"]


def test_a_zip_uploaded_through_the_artifact_bucket_is_not_encoded_ahead(
        tmp_path: Path) -> None:
    """A layer whose zip goes through the artifact bucket (`upload: s3`) needs no base64:
    the worker writes its zip ahead but encodes none, and nothing is offered to an upload."""
    copies = _edited_copies(tmp_path, ["proceed upload"], manifest=MANIFEST.replace(
        "layers:\n", "artifact_bucket: artifacts\nlayers:\n").replace(
        "    content: {path: tools, prefix: python}\n",
        "    content: {path: tools, prefix: python}\n    upload: s3\n"))
    upload = _run(copies["proceed upload"], "proceed upload")
    assert upload["temp_in_project"] is True and upload["offered"] is None


def test_without_a_build_folder_the_worker_builds_in_full_outside_the_project(
        tmp_path: Path) -> None:
    """With no `.reconcile/build/` (a fresh checkout), the worker writes the whole zip into
    the wheel cache's `prebuild/` (named by the run's pid), never creating a folder in the
    project, and the run moves it into place: byte for byte a full build's."""
    copies = _edited_copies(tmp_path, ["proceed full", "full"])
    ahead = _run(copies["proceed full"], "proceed full")
    assert [name.split(".")[2] for name in ahead["temps_after_identify"]] == [str(ahead["pid"])]
    assert ahead["temp_in_project"] is False and ahead["build_folder_after_identify"] is False
    assert ahead["temps_after_build"] == ahead["elsewhere"] == [] and ahead["index"]
    assert ahead["zip_sha256"] == _run(copies["full"], "full")["zip_sha256"]


@pytest.mark.parametrize("mode", ["shut", "shut full"])
def test_a_worker_not_told_the_manifest_passed_writes_nothing(tmp_path: Path,
                                                              mode: str) -> None:
    """A worker begun from a manifest not yet checked, collected without `proceed`, writes
    nothing, in the project or outside it: no temp after identify, with a build folder or
    without one; the run builds the same zip itself."""
    copies = _edited_copies(tmp_path, [mode, "inline"])
    shut = _run(copies[mode], mode)
    assert shut["temps_after_identify"] == shut["temps_after_build"] == []
    assert shut["zip_sha256"] == _run(copies["inline"], "inline")["zip_sha256"]


def _published_zip_sha256(moto_url: str) -> str:
    """The base64 SHA-256 Lambda (moto) reports for version 2 of `tools`."""
    client = boto3.client("lambda", region_name="us-east-1", endpoint_url=moto_url)
    answer = client.get_layer_version(LayerName="tools", VersionNumber=2)
    sha256: str = answer["Content"]["CodeSha256"]
    return sha256


def test_an_apply_after_an_edit_publishes_what_a_full_build_makes(tmp_path: Path,
                                                                 moto_url: str) -> None:
    """Through the installed CLI (its own process, so its worker builds the edited layer):
    apply, edit one file, apply again. The version published has the CodeSha256 of a full
    build of the same files in a fresh checkout, and the build folder holds no temp file."""
    project = _project(tmp_path / "repo")
    env = {**os.environ, "AWS_ENDPOINT_URL": moto_url}
    first = run(project, "apply", "--yes", "--no-summary", env=env)
    assert first.returncode == 0, first.stderr
    (project / "tools" / "m7.py").write_text("VALUE = 'edited'\n")
    second = run(project, "apply", "--yes", "--no-summary", env=env)
    assert second.returncode == 0, second.stderr
    assert "arn:aws:lambda:us-east-1:123456789012:layer:tools:2" in second.stdout
    assert sorted((project / ".reconcile" / "build").glob("*.zip.tmp")) == []
    fresh = tmp_path / "fresh"
    shutil.copytree(project, fresh, symlinks=True,
                    ignore=shutil.ignore_patterns(".reconcile", "layers.lock.json"))
    full = _run(fresh, "inline")
    assert full["code_sha256"] == _published_zip_sha256(moto_url)
    lock = json.loads((project / "layers.lock.json").read_text())
    assert lock["layers"]["tools"]["us-east-1"]["code_sha256"] == full["code_sha256"]


def test_a_cache_root_that_cannot_be_read_leaves_the_plan_alone(tmp_path: Path,
                                                              moto_url: str) -> None:
    """A wheel cache root whose `prebuild/` cannot even be looked at (here a name too long
    for the file system: ENAMETOOLONG, as another user's home gives EACCES) is no error for
    a plan of folder layers, which never needs the cache: it exits as without it."""
    project = _project(tmp_path / "repo")
    env = {**os.environ, "AWS_ENDPOINT_URL": moto_url,
           "RECONCILE_CACHE_DIR": str(tmp_path / ("x" * 300))}
    planned = invoke(project, "plan", "--detailed-exitcode", "--no-summary", env=env)
    assert planned.returncode == 2, planned.stderr
    assert "Plan: 1 to create" in planned.stdout
    # Its own process (a worker, and the exit's clean-up of what it wrote ahead): no
    # traceback, not even an ignored one at the exit.
    applied = run(project, "apply", "--yes", "--no-summary", env=env)
    assert applied.returncode == 0 and applied.stderr == "", applied.stderr


def test_a_killed_runs_zip_in_the_build_folder_is_removed_by_the_next_plan(
        tmp_path: Path, moto_url: str) -> None:
    """A zip temp left in `.reconcile/build/` by a run killed while its worker wrote ahead
    (named by that run's pid, now gone) is removed by the next plan, even one that builds
    nothing; one of a live process is left to it."""
    project = _project(tmp_path / "repo")
    env = {**os.environ, "AWS_ENDPOINT_URL": moto_url}
    applied = invoke(project, "apply", "--yes", "--no-summary", env=env)
    assert applied.returncode == 0, applied.stderr
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    build = project / ".reconcile" / "build"
    dead = build / f".0123456789abcdef.{gone.stdout.strip()}.x1y2z3.zip.tmp"
    live = build / f".0123456789abcdef.{os.getpid()}.a1b2c3.zip.tmp"
    dead.write_bytes(b"half a zip")
    live.write_bytes(b"being written")
    planned = invoke(project, "plan", "--detailed-exitcode", "--no-summary", env=env)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert not dead.exists() and live.exists()


def test_a_temp_of_a_process_that_ended_but_was_not_waited_for_is_stale(
        tmp_path: Path) -> None:
    """A zip temp named by a process that has ended but not yet been waited for by its parent
    (a zombie: a run just killed, for a moment) is abandoned: the clean-up removes it, as one
    of a process gone; one of a live process stays."""
    from reconciler import layerbuild

    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        for _ in range(200):  # until it has ended (it stays a zombie: not waited for yet)
            with open(f"/proc/{pid}/stat", "rb") as status:
                if status.read().rpartition(b")")[2].split()[0] == b"Z":
                    break
            time.sleep(0.01)
        ended = tmp_path / f".0123456789abcdef.{pid}.x1y2z3.zip.tmp"
        alive = tmp_path / f".0123456789abcdef.{os.getppid()}.a1b2c3.zip.tmp"
        ended.write_bytes(b"half a zip")
        alive.write_bytes(b"being written")
        assert layerbuild.remove_stale_build_temps(tmp_path) == [ended]
        assert alive.exists()
    finally:
        os.waitpid(pid, 0)


EXIT_WITHOUT_IMPORTS = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from reconciler import headstart, workspace
    space = workspace.Workspace.for_manifest(Path("layers.yaml"))
    early = workspace.read_ahead(space).unchecked.early
    started = headstart.HeadStart.begin(space, list(early.layers), state=None, checked=False)
    started.proceed()
    prebuild = headstart.prebuild_dir(os.environ)
    for _ in range(500):  # the worker writes the zip ahead into prebuild/ (no build folder)
        if prebuild.is_dir() and list(prebuild.glob("*.zip.tmp")):
            break
        time.sleep(0.01)
    print(len(list(prebuild.glob("*.zip.tmp"))), flush=True)
    sys.modules["reconciler.layerbuild"] = None  # what an import cut short by Ctrl-C leaves
    sys.exit(0)
""")


def test_the_exit_removes_the_zip_written_ahead_without_importing_anything(
        tmp_path: Path) -> None:
    """A run that exits once its worker wrote a zip ahead removes it at the exit even when no
    module can be imported any more (Ctrl-C cut an import short): the clean-up knows its
    folders from when the worker was let write, and imports nothing."""
    project = _project(tmp_path / "project")
    cache = tmp_path / "cache"
    done = subprocess.run([sys.executable, "-c", EXIT_WITHOUT_IMPORTS], cwd=project,
                          env={**os.environ, "RECONCILE_CACHE_DIR": str(cache)},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stdout.split() == ["1"]
    assert list((cache / "prebuild").glob("*.zip.tmp")) == []


SECOND_CANCEL = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from reconciler import headstart, workspace
    space = workspace.Workspace.for_manifest(Path("layers.yaml"))
    early = workspace.read_ahead(space).unchecked.early
    prebuild = headstart.prebuild_dir(os.environ)

    def written_ahead(started):
        started.proceed()
        for _ in range(500):  # the worker writes its zip ahead into prebuild/
            found = list(prebuild.glob("*.zip.tmp")) if prebuild.is_dir() else []
            if found:
                return found
            time.sleep(0.01)
        return []

    first = headstart.HeadStart.begin(space, list(early.layers), state=None, checked=False)
    print(len(written_ahead(first)))
    first.cancel()  # (the run's own cancel: what it wrote ahead is removed)
    print(len(list(prebuild.glob("*.zip.tmp"))))
    second = headstart.HeadStart.begin(space, list(early.layers), state=None, checked=False)
    print(len(written_ahead(second)))
    first.cancel()  # (the exit's, again: the second worker's zip, same pid, must stay)
    print(len(list(prebuild.glob("*.zip.tmp"))), flush=True)
    second.cancel()
""")


def test_a_second_cancel_leaves_a_later_workers_zip_alone(tmp_path: Path) -> None:
    """A head start cancelled once (an early worker not taken up) and again at the exit does
    nothing the second time: the zip a later worker of the same run wrote ahead (named by the
    same pid) stays."""
    project = _project(tmp_path / "project")
    done = subprocess.run([sys.executable, "-c", SECOND_CANCEL], cwd=project,
                          env={**os.environ, "RECONCILE_CACHE_DIR": str(tmp_path / "cache")},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stdout.split() == ["1", "0", "1", "1"]
