"""A build's follower (layerbuild.Follower, the port headstart's helper process fills): the
worker's build of a folder layer copies from the previous zip at once and lets the follower
verify it meanwhile; the zip is kept only if the follower says the previous zip was what its
index says, or, when the follower could not tell, if the build's own verify says so; a
follower that cannot begin leaves the verify to the build, first. Fakes against the port, in
this process; the real helper is exercised in tests/test_prebuild_folder.py, and its loop
(headstart._follow: the offsets it reads, the verdict it says, what it encodes) here, over
pipes in this process."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_prebuild_folder import MANIFEST  # (one folder layer, `tools`)

from reconciler import artifacts, headstart, layerbuild, model, workspace, zipindex
from reconciler.content import common, statcache


@dataclass
class Told:
    """A follower that says what it was set to say, and records what it was told."""

    begins: bool = True
    verdict: bool | None = True
    events: list[tuple[str, int]] = field(default_factory=list)
    previous_given: bool = False

    def begin(self, temp: int, previous: zipindex.PreviousZip | None) -> bool:
        """Record the start; the previous zip given (unverified)."""
        self.events.append(("begin", os.fstat(temp).st_size))
        self.previous_given = previous is not None
        return self.begins

    def reached(self, offset: int) -> None:
        """Record an offset."""
        self.events.append(("reached", offset))

    def written(self, size: int) -> None:
        """Record the end."""
        self.events.append(("written", size))

    def verified(self) -> bool | None:
        """The verdict set."""
        self.events.append(("verified", 0))
        return self.verdict

    def abandon(self) -> None:
        """Record the abandon."""
        self.events.append(("abandon", 0))


def _follower(told: Told) -> layerbuild.Follower:
    """`told`, typed as the port (mypy checks that the fake fills it)."""
    return told


def _project(tmp_path: Path) -> Path:
    """A folder layer built once (its zip and index in `.reconcile/build/`), then edited."""
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    tools = project / "tools"
    tools.mkdir()
    for number in range(30):
        (tools / f"m{number}.py").write_bytes(os.urandom(40_000 + number))  # ~1.2 MB in all
    (project / "layers.yaml").write_text(MANIFEST)
    _build_in_run(project)
    (tools / "m7.py").write_text("VALUE = 'edited'\n")
    return project


def _build_in_run(project: Path) -> str:
    """The run's own build of the layer (no worker); the zip's SHA-256."""
    cwd = Path.cwd()
    os.chdir(project)
    try:
        space = workspace.Workspace.for_manifest(Path("layers.yaml"))
        parsed = workspace.load_manifest(space)
        code = artifacts.LocalCode(space=space, manifest=parsed)
        specs = list(parsed.layers)
        artifact = code.identify(specs)["tools"]
        assert isinstance(artifact, model.Artifact), artifact
        built = code.build(specs[0], artifact)
        assert built.zip_path is not None
        return hashlib.sha256(Path(built.zip_path).read_bytes()).hexdigest()
    finally:
        os.chdir(cwd)


def _prebuild(project: Path, follower: layerbuild.Follower) -> layerbuild.Prebuilt | None:
    """The worker's build of the edited layer into a folder of its own, followed."""
    space = workspace.Workspace.for_manifest(project / "layers.yaml")
    parsed = workspace.load_manifest(space)
    specs = list(parsed.layers)
    walked: dict[str, common.Collected] = {}
    cache = statcache.StatCache.load(space.stat_cache_path)
    found = headstart.identify_local(specs, space=space, cache=cache,
                                     skip=headstart.own_paths(space), walked_into=walked)
    artifact = found["tools"]
    assert isinstance(artifact, model.Artifact), artifact
    into = project.parent / "ahead"
    into.mkdir(exist_ok=True)
    return layerbuild.prebuild_folder(
        specs[0].content, artifact, collected=walked[headstart.label(specs[0])],
        base_dir=space.base_dir, label=headstart.label(specs[0]), build_dir=into,
        previous=space.cache_dir / "build", owner=os.getpid(), follower=follower)


def _full_build(project: Path, tmp_path: Path) -> str:
    """The SHA-256 of a full build of the same files (a copy without `.reconcile/`)."""
    fresh = tmp_path / "fresh"
    shutil.copytree(project, fresh, symlinks=True)
    shutil.rmtree(fresh / ".reconcile")
    return _build_in_run(fresh)


def _damage_previous(project: Path) -> None:
    """Flip a byte inside a member's data of the previous zip: its index stays well formed,
    only the zip's digest can tell."""
    zip_path = next((project / ".reconcile" / "build").glob("*.zip"))
    data = bytearray(zip_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    zip_path.write_bytes(bytes(data))


def _zip_sha256(made: layerbuild.Prebuilt) -> str:
    """The hex SHA-256 of the zip a prebuild wrote."""
    return hashlib.sha256(Path(made.written.temp_path).read_bytes()).hexdigest()


def test_a_followed_build_tells_its_follower_each_step_and_keeps_a_verified_zip(
        tmp_path: Path) -> None:
    """The follower is begun on the empty temp file with the previous zip, told offsets that
    only grow up to the zip's size, then the size, and asked its verdict once; the zip kept
    is byte for byte a full build's."""
    project = _project(tmp_path)
    told = Told()
    made = _prebuild(project, _follower(told))
    assert made is not None and told.previous_given
    kinds = [kind for kind, _ in told.events]
    assert kinds[0] == "begin" and told.events[0][1] == 0
    assert kinds[-2:] == ["written", "verified"] and "abandon" not in kinds
    offsets = [offset for kind, offset in told.events if kind == "reached"]
    size = made.written.built.code_size
    assert offsets and offsets == sorted(offsets) and offsets[-1] <= size
    assert told.events[-2] == ("written", size)
    assert _zip_sha256(made) == _full_build(project, tmp_path)


def test_a_follower_that_says_no_throws_the_zip_away(tmp_path: Path) -> None:
    """A follower's "no" is obeyed (even over an intact previous zip): no zip, no temp file
    left, the follower abandoned (the run then builds the layer itself)."""
    project = _project(tmp_path)
    told = Told(verdict=False)
    assert _prebuild(project, _follower(told)) is None
    assert [kind for kind, _ in told.events][-1] == "abandon"
    assert list((tmp_path / "ahead").iterdir()) == []


def test_when_the_follower_cannot_tell_the_build_verifies_itself(tmp_path: Path) -> None:
    """A follower that died before its verdict (None): the build verifies the previous zip
    itself; an intact one keeps the zip (a full build's bytes), a damaged one throws it
    away."""
    project = _project(tmp_path)
    made = _prebuild(project, _follower(Told(verdict=None)))
    assert made is not None and _zip_sha256(made) == _full_build(project, tmp_path)
    Path(made.written.temp_path).unlink()
    _damage_previous(project)
    assert _prebuild(project, _follower(Told(verdict=None))) is None
    assert list((tmp_path / "ahead").iterdir()) == []


def test_a_follower_that_cannot_begin_leaves_the_verify_to_the_build_first(
        tmp_path: Path) -> None:
    """A follower that cannot begin (no fork) is told nothing more; the build verifies the
    previous zip before copying from it, so a damaged one gives a full build's bytes, every
    file deflated."""
    project = _project(tmp_path)
    _damage_previous(project)
    told = Told(begins=False, verdict=True)
    made = _prebuild(project, _follower(told))
    assert made is not None
    assert [kind for kind, _ in told.events] == ["begin"]
    assert made.written.built.reused == 0
    assert _zip_sha256(made) == _full_build(project, tmp_path)


def _run_follow(tmp_path: Path, *, data: bytes, records: list[bytes], steps: list[bool | None],
                spool: bool = True, limit: int = 1 << 30,
                piecemeal: bool = False) -> tuple[int, bytes, bytes]:
    """headstart._follow over a file holding `data`, told `records` through a pipe (closed
    after them; `piecemeal`: a few bytes at a time, from a thread, so that records arrive
    split across reads): what it returns, the verdict it said, what it wrote into the spool."""
    source = tmp_path / "zip"
    source.write_bytes(data)
    spool_path = tmp_path / "spool"
    spool_path.write_bytes(b"")
    progress_reader, progress_writer = os.pipe()
    verdict_reader, verdict_writer = os.pipe()
    message = b"".join(records)

    def send() -> None:
        for start in range(0, len(message), 4 if piecemeal else len(message) or 1):
            os.write(progress_writer, message[start:start + (4 if piecemeal else len(message))])
            if piecemeal:
                time.sleep(0.001)
        os.close(progress_writer)

    sender = threading.Thread(target=send)
    sender.start()
    with open(source, "rb") as source_file, open(spool_path, "r+b") as spool_file:
        try:
            result = headstart._follow(
                source_file.fileno(), progress=progress_reader, limit=limit,
                spool=spool_file.fileno() if spool else None, verdict_to=verdict_writer,
                verifying=iter(steps))
        finally:
            sender.join()
            os.close(progress_reader)
            os.close(verdict_writer)
    said = os.read(verdict_reader, 8)
    os.close(verdict_reader)
    return result, said, spool_path.read_bytes()


def _record(kind: bytes, offset: int) -> bytes:
    """One record of the offsets' pipe."""
    return kind + offset.to_bytes(8, "little")


@pytest.mark.parametrize("piecemeal", [False, True], ids=["whole records", "split records"])
def test_the_helper_encodes_what_it_is_told_is_written(tmp_path: Path, piecemeal: bool) -> None:
    """Told offsets, then the end, the helper writes the base64 of the whole file into the
    spool (records split across reads included), verifies between pieces and says "1"."""
    data = os.urandom(3 * 1024 * 1024 + 5)
    records = [_record(b"R", offset) for offset in (1000, 1_000_001, 2_500_000)]
    result, said, spool = _run_follow(
        tmp_path, data=data, records=[*records, _record(b"E", len(data))],
        steps=[None, None, None, True], piecemeal=piecemeal)
    assert said == b"1"
    assert spool == base64.b64encode(data) and result == len(spool)


def test_a_helper_told_no_end_gives_no_whole_encoding(tmp_path: Path) -> None:
    """The worker stopped before it said the zip was whole: -1, never a full count."""
    data = os.urandom(100_000)
    result, said, _ = _run_follow(tmp_path, data=data, records=[_record(b"R", 60_000)],
                                  steps=[True])
    assert (result, said) == (-1, b"1")


def test_a_helper_that_finds_the_previous_zip_wrong_says_no(tmp_path: Path) -> None:
    """A "no" from the verify is said at once and the helper encodes nothing more (0)."""
    data = os.urandom(100_000)
    result, said, _ = _run_follow(tmp_path, data=data, records=[_record(b"E", len(data))],
                                  steps=[None, False])
    assert (result, said) == (0, b"0")


def test_a_helper_without_a_spool_only_verifies(tmp_path: Path) -> None:
    """Without a spool (a plan), the helper reads no offsets: it says its verdict, gives 0
    and writes nothing."""
    data = os.urandom(100_000)
    result, said, spool = _run_follow(tmp_path, data=data, records=[], steps=[None, True],
                                      spool=False)
    assert (result, said, spool) == (0, b"1", b"")


def test_a_zip_past_the_inline_limit_is_not_encoded(tmp_path: Path) -> None:
    """A zip that passes the limit (too large to upload inline) stops the encoding: 0, so
    the worker keeps no encoding; the verdict is still said."""
    data = os.urandom(300_000)
    result, said, _ = _run_follow(
        tmp_path, data=data, records=[_record(b"R", 150_000), _record(b"E", len(data))],
        steps=[True], limit=200_000)
    assert (result, said) == (0, b"1")
