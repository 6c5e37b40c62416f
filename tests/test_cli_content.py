"""End to end: content that would leak or lie is refused by the installed `reconcile` CLI (run
in process) against a real moto server, before any AWS call: validate, plan and apply exit 1
with one message naming the layer and the path or member, no traceback, nothing published and
nothing written. Also: Info-ZIP zips normalize to the folder's zip, and the lockfile's temp and
lock files never make a `path: .` layer republish."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
import zipcraft
from clirun import invoke
from zipcraft import Member

from reconciler import model

GOOD = Member("python/ok.py", b"OK = 1\n")


def layer_names() -> list[str]:
    """The layers moto holds."""
    return [layer["LayerName"] for layer in boto3.client("lambda").list_layers()["Layers"]]


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    return repo


def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    (outside / "python").mkdir(parents=True)
    (outside / "python" / "credentials").write_text("aws_secret_access_key = not-real\n")
    return outside


def _zip(*members: Member) -> Callable[[Path, Path], str]:
    def make(repo: Path, _tmp_path: Path) -> str:
        zipcraft.write(repo / "vendor.zip", list(members))
        return "{zip: vendor.zip}"
    return make


def _normalized_zip(*members: Member) -> Callable[[Path, Path], str]:
    def make(repo: Path, _tmp_path: Path) -> str:
        zipcraft.write(repo / "vendor.zip", list(members))
        return "{zip: vendor.zip, normalize: true}"
    return make


def _dotdot(repo: Path, tmp_path: Path) -> str:
    _outside(tmp_path)
    return "{path: ../outside}"


def _absolute(repo: Path, tmp_path: Path) -> str:
    return f"{{path: '{_outside(tmp_path)}'}}"


def _symlinked_folder(repo: Path, tmp_path: Path) -> str:
    os.symlink(_outside(tmp_path), repo / "vendored")
    return "{path: vendored}"


def _link(name: str, target: str) -> Member:
    return Member(name, target.encode(), mode=zipcraft.LINK_MODE, method=zipcraft.STORED)


# (setup, what the message names, whether validate sees it: data checks run in plan/apply)
CASES = [
    pytest.param(_dotdot, ["layers.leaky.content.path", "outside the repository"], True,
                 id="path-dotdot"),
    pytest.param(_absolute, ["layers.leaky.content.path", "outside the repository"], True,
                 id="path-absolute"),
    pytest.param(_symlinked_folder, ["layers.leaky.content.path", "outside the repository"],
                 True, id="path-symlinked-folder"),
    pytest.param(_zip(GOOD, _link("python/passwd", "../../../../etc/passwd")),
                 ["layers.leaky.content.zip", "python/passwd", "outside the zip"], True,
                 id="zip-escaping-link"),
    pytest.param(_zip(GOOD, _link("python/passwd", "/etc/passwd")),
                 ["layers.leaky.content.zip", "python/passwd", "absolute"], True,
                 id="zip-absolute-link"),
    pytest.param(_zip(GOOD, _link("python/gone", "missing.py")),
                 ["layers.leaky.content.zip", "python/gone", "broken"], True,
                 id="zip-broken-link"),
    pytest.param(_zip(GOOD, Member("python/s.py", b"x", flags=zipcraft.FLAG_ENCRYPTED)),
                 ["layers.leaky.content.zip", "python/s.py", "encrypted"], True,
                 id="zip-encrypted"),
    pytest.param(_zip(GOOD, Member("python/b.py", b"x", method=zipcraft.BZIP2,
                                   declared_size=10)),
                 ["layers.leaky.content.zip", "python/b.py", "method 12"], True,
                 id="zip-bzip2-false-size"),
    pytest.param(_zip(), ["layers.leaky.content.zip", "no files"], True, id="zip-empty"),
    pytest.param(_zip(GOOD, Member("python/huge.bin", b"x",
                                   declared_size=model.MAX_UNZIPPED_BYTES)),
                 ["layers.leaky.content.zip", str(model.MAX_UNZIPPED_BYTES)], True,
                 id="zip-declared-over-limit"),
    pytest.param(_zip(GOOD, Member(b"python/donn\x82es.txt", b"x")),
                 ["layers.leaky.content.zip", "donn\\x82es.txt", "not valid UTF-8"], True,
                 id="zip-undecodable-name"),
    pytest.param(_zip(GOOD, Member("python/big.py", b"x" * 5000, declared_size=10)),
                 ["layers.leaky", "python/big.py", "more data than its declared size"], False,
                 id="zip-size-lie"),
    pytest.param(_zip(GOOD, Member("python/big.py", b"x" * 50, declared_crc=3)),
                 ["layers.leaky", "python/big.py", "CRC-32"], False, id="zip-crc-lie"),
    pytest.param(_normalized_zip(GOOD, Member("python/s.py", b"x",
                                              flags=zipcraft.FLAG_ENCRYPTED)),
                 ["layers.leaky.content.zip", "python/s.py", "encrypted"], True,
                 id="normalize-encrypted"),
    pytest.param(_normalized_zip(GOOD, Member("python/d.py", b"x", method=99)),
                 ["layers.leaky.content.zip", "python/d.py", "method 99"], True,
                 id="normalize-unknown-method"),
]


def _snapshot(folder: Path) -> dict[str, float]:
    """Every file below `folder` with its mtime, to show that nothing was written (folders
    are left out: creating the allowed `.reconcile/` cache changes its parent's mtime)."""
    return {str(path): path.lstat().st_mtime for path in folder.rglob("*")
            if not path.is_dir() or path.is_symlink()}


@pytest.mark.parametrize(("setup", "fragments", "validate_sees_it"), CASES)
def test_leaking_or_lying_content_is_refused_end_to_end(
    tmp_path: Path, moto_url: str, setup: Callable[[Path, Path], str], fragments: list[str],
    validate_sees_it: bool,
) -> None:
    """validate/plan/apply exit 1 naming layer and member; nothing is published or written."""
    repo = _repo(tmp_path)
    content = setup(repo, tmp_path)
    manifest = repo / "layers.yaml"
    manifest.write_text(f"version: 1\nregion: us-east-1\nlayers:\n  leaky:\n"
                        f"    content: {content}\n")
    before = _snapshot(tmp_path)
    # Apply plans first, so `plan` on its own is run only where the brief of each rule names
    # it (content paths); each CLI run costs seconds of interpreter start-up.
    commands = [["plan"], ["apply", "--yes"]] if "content.path" in fragments[0] else [
        ["apply", "--yes"]]
    if validate_sees_it:
        commands.insert(0, ["validate"])
    else:
        assert invoke(repo, "validate").returncode == 0
    for command in commands:
        result = invoke(repo, *command)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        for fragment in fragments:
            assert fragment in result.stderr, (command, result.stderr)
        if validate_sees_it:
            assert "layers.yaml:5:" in result.stderr, result.stderr
    assert layer_names() == []
    assert not (repo / "layers.lock.json").exists()
    # plan and apply may leave the stat cache, never a zip; the content itself is untouched.
    after = {path: mtime for path, mtime in _snapshot(tmp_path).items()
             if "/.reconcile" not in path}
    assert after == before
    assert not list(repo.glob(".reconcile/build/*.zip"))


def test_info_zip_zip_normalizes_to_the_folders_code_sha256(tmp_path: Path,
                                                           moto_url: str) -> None:
    """A hand-made Info-ZIP zip (UTF-8 names, no flag) of a folder, normalized, plans the same
    CodeSha256 as the folder, and both publish."""
    repo = _repo(tmp_path)
    folder = repo / "src"
    (folder / "python").mkdir(parents=True)
    (folder / "python" / "données.txt").write_bytes(b"bonjour\n")
    os.symlink("données.txt", folder / "python" / "lien")
    zipcraft.write(repo / "vendor.zip", [
        Member("python/données.txt".encode(), b"bonjour\n"),
        Member(b"python/lien", "données.txt".encode(), mode=zipcraft.LINK_MODE,
               method=zipcraft.STORED)])
    (repo / "layers.yaml").write_text(
        "version: 1\nregion: us-east-1\nlayers:\n  folder:\n    content: {path: src}\n"
        "  zipped:\n    content: {zip: vendor.zip, normalize: true}\n")
    planned = invoke(repo, "plan", "--format", "json")
    assert planned.returncode == 0, planned.stderr
    desired = {change["layer"]: change["desired"]["code_sha256"]
               for change in json.loads(planned.stdout)["changes"]}
    assert desired["folder"] == desired["zipped"]
    assert invoke(repo, "apply", "--yes").returncode == 0
    assert sorted(layer_names()) == ["folder", "zipped"]


def test_lockfile_companions_never_make_a_dot_layer_republish(tmp_path: Path,
                                                              moto_url: str) -> None:
    """With `path: .`, lock and temp files beside the lockfile appear between runs and the
    second apply still publishes nothing."""
    (tmp_path / "python").mkdir()
    (tmp_path / "python" / "m.py").write_text("X = 1\n")
    (tmp_path / "layers.yaml").write_text(
        "version: 1\nregion: us-east-1\nlayers:\n  dot:\n    content: {path: .}\n")
    assert invoke(tmp_path, "apply", "--yes").returncode == 0
    (tmp_path / ".layers.lock.json.lock").write_text('{"holder": "another run"}\n')
    (tmp_path / ".layers.lock.json.123.ab12.tmp").write_text("half written\n")
    assert invoke(tmp_path, "plan", "--detailed-exitcode").returncode == 0
    assert invoke(tmp_path, "apply", "--yes").returncode == 0
    versions = boto3.client("lambda").list_layer_versions(LayerName="dot")["LayerVersions"]
    assert [version["Version"] for version in versions] == [1]
