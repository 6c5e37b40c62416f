"""A built layer's zip written ahead by the head start's worker (headstart._prebuild): the run
moves it into place and it is byte for byte the zip the run builds itself (one changed since
the worker wrote it is not used); nothing is built ahead for a layer the state records (an
unchanged built layer reads no wheel) or under an S3 state; a refused manifest, a cancelled
worker and a killed run leave no zip behind in the wheel cache's `prebuild/` folder (the next
run's head start removes a killed run's).

Each scenario runs in a fresh interpreter: the worker is forked only from a process that has
started no thread, and pytest's may have (a moto server of another test module)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import wheelcraft

from reconciler import model, statefile

# Runs in the child interpreter: a run's LocalCode, with a head start or without; prints what
# the prebuild folder held after identify and after build, and the zip's digest.
SCENARIO = textwrap.dedent("""
    import hashlib, json, os, signal, sys, time
    from pathlib import Path
    from reconciler import artifacts, errors, headstart, model, workspace
    mode = sys.argv[1]
    prebuilds = headstart.prebuild_dir(os.environ)

    def held():
        return sorted(path.name for path in prebuilds.glob("*")) if prebuilds.is_dir() else []

    def ready():  # the worker's zip is written when its temp stops growing
        deadline = time.monotonic() + 30
        last = None
        while time.monotonic() < deadline:
            sizes = [path.stat().st_size for path in prebuilds.glob("*")] \\
                if prebuilds.is_dir() else []
            if sizes and sizes == last:
                return
            last = sizes
            time.sleep(0.2)

    space = workspace.Workspace.for_manifest(Path("layers.yaml"))
    if mode == "refused":
        begun, before = [], []
        try:
            workspace.load_manifest(space, head_start=lambda early: (
                begun.append(headstart.HeadStart.begin(space, list(early.layers),
                                                       state=early.state, checked=False)),
                ready(),
                before.extend(held())))
        except errors.ReconcilerError as refused:
            for started in begun:
                started.cancel()
            print(json.dumps({"refused": refused.message, "before": before, "held": held(),
                              "pid": os.getpid()}))
        sys.exit(0)
    parsed = workspace.load_manifest(space)
    code = artifacts.LocalCode(space=space, manifest=parsed)
    specs = list(parsed.layers)
    if mode != "inline":
        code._take(headstart.HeadStart.begin(space, specs, state=parsed.state, checked=True))
        assert code.prefetching is not None, "no worker was started"
    if mode in ("cancelled", "run killed"):
        ready()
        if mode == "run killed":
            print(json.dumps({"held": held(), "pid": os.getpid()}), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        before = held()
        code.prefetching.cancel()
        print(json.dumps({"before": before, "held": held(), "pid": os.getpid()}))
        sys.exit(0)
    found = code.identify(specs)
    after_identify = held()
    identities = [[(prebuilds / name).stat().st_ino, (prebuilds / name).stat().st_mtime_ns]
                  for name in after_identify]
    if mode == "tampered":  # the same size, other bytes: not the file the worker wrote
        for name in after_identify:
            path = prebuilds / name
            path.write_bytes(b"x" * path.stat().st_size)
    artifact = found[specs[0].key]
    assert isinstance(artifact, model.Artifact), artifact
    built = code.build(specs[0], artifact)
    print(json.dumps({
        "pid": os.getpid(),
        "after_identify": after_identify,
        "prebuilt": identities,
        "zip": [Path(built.zip_path).stat().st_ino, Path(built.zip_path).stat().st_mtime_ns],
        "after_build": held(),
        "code_sha256": built.code_sha256,
        "zip_sha256": hashlib.sha256(Path(built.zip_path).read_bytes()).hexdigest(),
        "fingerprint": artifact.fingerprint,
        "build_folder": sorted(path.name for path in space.cache_dir.joinpath("build").glob("*")
                               if not path.name.startswith("latest-")),
    }))
""")

MANIFEST = """\
version: 1
region: us-east-1
{state}layers:
  deps:
    compatible_runtimes: [python3.12]
    compatible_architectures: [x86_64]
    content: {{lock: requirements.txt, find_links: [wheels]}}
"""


def _project(folder: Path, *, state: str = "", extra: str = "") -> Path:
    """A repository with one layer built from a hashed requirements.txt of two wheels (one
    with a 200 KB module, so that the build takes a moment) in a find_links folder."""
    (folder / ".git").mkdir(parents=True)
    wheels = folder / "wheels"
    wheelcraft.make_wheel(wheels, "big", "1.0", "py3-none-any",
                          files={"big/__init__.py": b"", "big/data.py": os.urandom(200_000)})
    wheelcraft.make_wheel(wheels, "small", "2.0", "py3-none-any")
    (folder / "requirements.txt").write_text("".join(
        f"{path.name.split('-')[0]}=={path.name.split('-')[1]} "
        f"--hash=sha256:{wheelcraft.sha256_of(path)}\n" for path in sorted(wheels.glob("*.whl"))))
    (folder / "layers.yaml").write_text(MANIFEST.format(state=state) + extra)
    return folder


def _run(folder: Path, mode: str, *, cache: Path) -> dict[str, Any]:
    """The scenario in a fresh interpreter in `folder`, with `cache` as RECONCILE_CACHE_DIR."""
    env = {**os.environ, "RECONCILE_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", SCENARIO, mode], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[0])
    return result


def _listing(folder: Path) -> list[tuple[str, int]]:
    """Every path under `folder`, with its size."""
    return sorted((str(path.relative_to(folder)), path.lstat().st_size)
                  for path in folder.rglob("*"))


def test_the_zip_built_ahead_is_moved_into_place_and_is_the_runs_own(tmp_path: Path) -> None:
    """With a head start, the worker's zip (named by the run's pid) is in `prebuild/` after
    identify and moved into `.reconcile/build/` by build, leaving nothing; it is byte for
    byte the zip a run without a worker builds."""
    project = _project(tmp_path / "repo")
    inline = _run(project, "inline", cache=tmp_path / "cache1")
    assert inline["after_identify"] == inline["after_build"] == []
    shutil.rmtree(project / ".reconcile")
    ahead = _run(project, "ahead", cache=tmp_path / "cache2")
    assert [name.split(".")[2] for name in ahead["after_identify"]] == [str(ahead["pid"])]
    assert ahead["prebuilt"] == [ahead["zip"]]  # moved (inode and mtime kept), not rebuilt
    assert ahead["after_build"] == []
    assert ahead["zip_sha256"] == inline["zip_sha256"]
    assert ahead["code_sha256"] == inline["code_sha256"]
    assert ahead["build_folder"] == [f"{ahead['fingerprint']}.index.json",
                                     f"{ahead['fingerprint']}.zip"]


def test_a_zip_changed_after_the_worker_wrote_it_is_not_used(tmp_path: Path) -> None:
    """A zip in `prebuild/` that is no longer the file the worker wrote and synced (rewritten
    with other bytes of the same size) is removed, and the run builds the layer itself."""
    project = _project(tmp_path / "repo")
    inline = _run(project, "inline", cache=tmp_path / "cache1")
    shutil.rmtree(project / ".reconcile")
    tampered = _run(project, "tampered", cache=tmp_path / "cache2")
    assert len(tampered["after_identify"]) == 1
    assert tampered["after_build"] == []
    assert tampered["zip_sha256"] == inline["zip_sha256"]


def _lockfile_recording(fingerprint: str) -> str:
    entry = model.LockEntry(fingerprint=fingerprint, content_sha256="0" * 64,
                            code_sha256="c2hh", code_size=1, version=1,
                            layer_version_arn="arn:aws:lambda:us-east-1:123456789012:layer:deps:1",
                            settings_sha256="0" * 64, inputs_sha256=fingerprint)
    return statefile.encode(model.Lock(entries={("deps", "us-east-1"): entry}))


def test_nothing_is_built_ahead_for_a_recorded_layer_or_an_s3_state(tmp_path: Path) -> None:
    """A layer whose fingerprint the lockfile records is not built ahead (an unchanged built
    layer reads no wheel), nor is any under an S3 state, which the worker cannot read."""
    recorded = _project(tmp_path / "recorded")
    first = _run(recorded, "inline", cache=tmp_path / "cache")
    (recorded / "layers.lock.json").write_text(_lockfile_recording(first["fingerprint"]))
    (recorded / ".reconcile").rename(tmp_path / "gone")
    assert _run(recorded, "ahead", cache=tmp_path / "cache")["after_identify"] == []
    s3 = _project(tmp_path / "s3", state="state: s3://bucket/team/layers.lock.json\n")
    assert _run(s3, "ahead", cache=tmp_path / "cache")["after_identify"] == []


def test_a_refused_manifest_leaves_no_zip_built_ahead(tmp_path: Path) -> None:
    """A manifest refused after the worker wrote its zip (a second layer's folder does not
    exist): the zip is removed with the worker, and the project is as it was."""
    project = _project(tmp_path / "repo", extra="  gone:\n    content: {path: nowhere}\n")
    before = _listing(project)
    refused = _run(project, "refused", cache=tmp_path / "cache")
    assert "'nowhere' does not exist" in refused["refused"]
    assert [name.split(".")[2] for name in refused["before"]] == [str(refused["pid"])]
    assert refused["held"] == []
    assert _listing(project) == before


def test_a_cancelled_worker_leaves_no_zip_and_a_killed_runs_is_removed_next(
        tmp_path: Path) -> None:
    """A head start cancelled once its zip is written removes it; a run killed then leaves
    it (named by its pid), and the next run's head start removes it, even one that builds
    nothing ahead (its layer is now recorded)."""
    project = _project(tmp_path / "repo")
    cache = tmp_path / "cache"
    fingerprint = _run(project, "inline", cache=tmp_path / "other")["fingerprint"]
    shutil.rmtree(project / ".reconcile")
    cancelled = _run(project, "cancelled", cache=cache)
    assert [name.split(".")[2] for name in cancelled["before"]] == [str(cancelled["pid"])]
    assert cancelled["held"] == []
    killed = _run(project, "run killed", cache=cache)
    assert [name.split(".")[2] for name in killed["held"]] == [str(killed["pid"])]
    (project / "layers.lock.json").write_text(_lockfile_recording(fingerprint))
    assert _run(project, "ahead", cache=cache)["after_identify"] == []
