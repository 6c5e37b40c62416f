"""The wheel cache's facts: a build of a layer from cached wheels keeps what it checked of each
member (CRC, size, what an ELF member needs), and the next build copies those members without
inflating them, with the same zip and the same binary verdicts; facts that do not match a
member's central directory are ignored, and damaged facts are no facts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import wheelcraft

from reconciler import content as layer_content
from reconciler import elfcheck, layerbuild, model
from reconciler.builds import cache, fetch
from reconciler.content import statcache

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    library = wheelcraft.compile_library(tmp_path / "lib", "libstatx.so",
                                         wheelcraft.STATX_SOURCE).read_bytes()
    wheelcraft.make_wheel(repo / "wheels", "fast", "1.0", "cp311-cp311-manylinux_2_17_x86_64",
                          files={"fast/__init__.py": b"", "fast/libstatx.so": library})
    wheelcraft.make_wheel(repo / "wheels", "pure", "1.0", "py3-none-any")
    (repo / "requirements.txt").write_text("".join(
        f"{path.name.split('-')[0]}=={path.name.split('-')[1]} "
        f"--hash=sha256:{wheelcraft.sha256_of(path)}\n"
        for path in sorted((repo / "wheels").glob("*.whl"))))
    return repo


def _build(repo: Path, *, wheel_cache: cache.WheelCache, build_dir: Path) -> tuple[
        model.Artifact, layerbuild.Inspected]:
    content = model.ContentSpec(kind=model.SourceKind.LOCK, lock="requirements.txt",
                                find_links=("wheels",), prefix="python",
                                build_runtimes=("python3.11",), build_architectures=("x86_64",))
    identified = layer_content.identify(
        content, base_dir=repo, label="layers.deps",
        cache=statcache.StatCache(build_dir / "stat", entries={}, written_ns=0))
    inspected: layerbuild.Inspected = {}
    built = layerbuild.build(content, identified, base_dir=repo, label="layers.deps",
                            build_dir=build_dir,
                            sources=fetch.Sources(wheel_cache=wheel_cache, index_for=None,
                                                  environ={}),
                            inspected=inspected)
    return built, inspected


def _verdicts(inspected: layerbuild.Inspected) -> list[str]:
    (elf_files, layer_files), = inspected.values()
    return [str(finding) for finding in elfcheck.check_layer(
        elf_files, layer_files=layer_files, runtimes=["python3.11"], architectures=["x86_64"])]


def test_facts_let_the_next_build_copy_members_unread(tmp_path: Path) -> None:
    """The first build keeps facts of both wheels; a second build (fresh build folder) reads
    them, gives the same zip bytes and the same verdicts (GLIBC_2.28 on python3.11)."""
    repo, wheel_cache = _repo(tmp_path), cache.WheelCache(tmp_path / "cache")
    first, first_seen = _build(repo, wheel_cache=wheel_cache, build_dir=tmp_path / "b1")
    shas = [wheelcraft.sha256_of(path) for path in sorted((repo / "wheels").glob("*.whl"))]
    kept = {sha: wheel_cache.facts(sha) for sha in shas}
    assert all(kept.values())
    assert any(fact.elf is not None for facts in kept.values() for fact in facts.values())
    second, second_seen = _build(repo, wheel_cache=wheel_cache, build_dir=tmp_path / "b2")
    assert first.code_sha256 == second.code_sha256
    assert Path(str(first.zip_path)).read_bytes() == Path(str(second.zip_path)).read_bytes()
    assert _verdicts(first_seen) == _verdicts(second_seen)
    assert any("GLIBC_2.28" in verdict for verdict in _verdicts(second_seen))


def test_facts_that_do_not_match_or_do_not_read_are_ignored(tmp_path: Path) -> None:
    """A fact whose CRC is not the member's, or a damaged facts file, is not used: the
    member is inflated and checked again, and the verdicts still come out right."""
    repo, wheel_cache = _repo(tmp_path), cache.WheelCache(tmp_path / "cache")
    _, expected = _build(repo, wheel_cache=wheel_cache, build_dir=tmp_path / "b1")
    for path in (tmp_path / "cache" / "facts").rglob("*.json"):
        document = json.loads(path.read_text())
        for member in document["members"].values():
            member["crc"] ^= 1
            member["elf"] = None  # a lie: were it used, the ELF file would go unchecked
        path.write_text(json.dumps(document))
    _, lied_to = _build(repo, wheel_cache=wheel_cache, build_dir=tmp_path / "b2")
    assert _verdicts(lied_to) == _verdicts(expected)
    for path in (tmp_path / "cache" / "facts").rglob("*.json"):
        path.write_text("{not json")
    _, damaged = _build(repo, wheel_cache=wheel_cache, build_dir=tmp_path / "b3")
    assert _verdicts(damaged) == _verdicts(expected)
