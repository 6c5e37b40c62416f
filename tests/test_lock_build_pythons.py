"""A layer built from a lock is the same zip whatever Python builds it: the build (content.lock's
collect, then zipbuild's writer, as artifacts runs them) in separate processes of other Python
versions, from other folders with other wheel caches, gives the CodeSha256 this process gets.

The other interpreters (pyenv's 3.10, the declared floor, and 3.13) run the installed package's
source with only its pure-Python dependencies on their path (packaging, pathspec, and for 3.10
tomli, which is this interpreter's standard `tomllib` under its old name: the same parser): the
build imports nothing else."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import packaging
import pathspec
import pytest
import wheelcraft

import reconciler
from reconciler import archive, model, wheelmembers, zipbuild
from reconciler.builds import cache, fetch
from reconciler.content import common, lock

# The TOML parser the readers import as `tomli` on 3.10: tomli itself, or 3.11's `tomllib`.
if sys.version_info >= (3, 11):
    import tomllib as toml_parser
else:
    import tomli as toml_parser

PYTHONS = [Path(f"/root/.pyenv/versions/{version}/bin/python") for version in
           ("3.10.13", "3.13.0")]
BUILD = """
import sys, tempfile
from pathlib import Path
from reconciler import archive, model, wheelmembers, zipbuild
from reconciler.builds import cache, fetch
from reconciler.content import common, lock

repo, wheel_cache = Path(sys.argv[1]), Path(sys.argv[2])
content = model.ContentSpec(kind=model.SourceKind.LOCK, lock="requirements.txt",
                            find_links=("wheels",), prefix="python",
                            build_runtimes=("python3.12",), build_architectures=("arm64",))
sources = fetch.Sources(wheel_cache=cache.WheelCache(wheel_cache), index_for=None, environ={})
collected = lock.collect(content, base_dir=repo, label="layers.deps", sources=sources)
with tempfile.TemporaryFile() as out, common.EntryReader(collected.stats) as reader:
    built = zipbuild.write_zip(collected.entries, out=out, open_entry=reader.open, workers=1,
                               raw_source=wheelmembers.wheel_source(collected.entries))
print(archive.code_sha256(built.sha256))
"""


def _build_here(repo: Path, wheel_cache: Path) -> str:
    content = model.ContentSpec(kind=model.SourceKind.LOCK, lock="requirements.txt",
                                find_links=("wheels",), prefix="python",
                                build_runtimes=("python3.12",), build_architectures=("arm64",))
    sources = fetch.Sources(wheel_cache=cache.WheelCache(wheel_cache), index_for=None,
                            environ={})
    collected = lock.collect(content, base_dir=repo, label="layers.deps", sources=sources)
    with tempfile.TemporaryFile() as out, common.EntryReader(collected.stats) as reader:
        built = zipbuild.write_zip(collected.entries, out=out, open_entry=reader.open,
                                   workers=1,
                                   raw_source=wheelmembers.wheel_source(collected.entries))
    return archive.code_sha256(built.sha256)


@pytest.mark.skipif(not all(python.exists() for python in PYTHONS),
                    reason="pyenv's Python 3.10 and 3.13 are not on this machine")
def test_two_other_pythons_build_the_same_code_sha256(tmp_path: Path) -> None:
    """Python 3.10 and 3.13, each from its own copy of the repository with its own wheel
    cache, build the zip this Python builds, byte for byte."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    wheelcraft.make_wheel(repo / "wheels", "alpha", "1.0", "py3-none-any",
                          executable=["alpha/__init__.py"])
    wheelcraft.make_wheel(repo / "wheels", "beta", "1.0", "cp312-cp312-manylinux_2_17_aarch64")
    (repo / "requirements.txt").write_text("".join(
        f"{path.name.split('-')[0]}=={path.name.split('-')[1]} "
        f"--hash=sha256:{wheelcraft.sha256_of(path)}\n"
        for path in sorted((repo / "wheels").glob("*.whl"))))
    deps = tmp_path / "deps"
    for module in (reconciler, packaging, pathspec):
        shutil.copytree(Path(str(module.__file__)).parent, deps / module.__name__)
    shutil.copytree(Path(str(toml_parser.__file__)).parent, deps / "tomli")
    expected = _build_here(repo, tmp_path / "cache-here")
    found = {}
    for python in PYTHONS:
        copy = tmp_path / f"repo-{python.parent.parent.name}"
        shutil.copytree(repo, copy)
        environment = {**os.environ, "PYTHONPATH": str(deps)}
        done = subprocess.run([str(python), "-c", BUILD, str(copy),
                               str(tmp_path / f"cache-{python.parent.parent.name}")],
                              capture_output=True, text=True, env=environment, timeout=120,
                              cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        found[str(python)] = done.stdout.strip()
    assert set(found.values()) == {expected}, (expected, found, sys.version)
