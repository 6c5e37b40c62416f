"""End to end through the installed `reconcile` CLI against a moto server: `validate` runs the
checks of plan's walk (an empty folder, special files, links and hard links out, git's files)
and reports each at the layer's content line, exit 1 and no traceback, as plan refuses it; and
`.git` is never packaged, whatever the exclude patterns say."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
import zipcraft
from clirun import invoke

Setup = Callable[[Path], str]
TOKEN = "AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW46c2VjcmV0"


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "config").write_text(f'[http "https://github.com/"]\n'
                                          f"\textraheader = {TOKEN}\n")
    return repo


def _src(repo: Path) -> Path:
    (repo / "src" / "python").mkdir(parents=True)
    (repo / "src" / "python" / "m.py").write_text("X = 1\n")
    return repo / "src"


def _empty(repo: Path) -> str:
    (repo / "src").mkdir()
    return "{path: src}"


def _emptied_by_excludes(repo: Path) -> str:
    _src(repo)
    return "{path: src, exclude: ['python/']}"


def _fifo(repo: Path) -> str:
    os.mkfifo(_src(repo) / "python" / "pipe")
    return "{path: src}"


def _socket(repo: Path) -> str:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(_src(repo) / "python" / "s.sock"))
    listener.close()
    return "{path: src}"


def _device(repo: Path) -> str:
    os.mknod(_src(repo) / "python" / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    return "{path: src}"


def _link_out_of_folder(repo: Path) -> str:
    os.symlink("../../.git/config", _src(repo) / "python" / "cfg")
    return "{path: src}"


def _broken_link(repo: Path) -> str:
    os.symlink("gone.py", _src(repo) / "python" / "g.py")
    return "{path: src}"


def _private_hard_link(repo: Path) -> str:
    secret = repo.parent / "credentials"
    secret.write_text("[default]\naws_secret_access_key = not-real\n")
    secret.chmod(0o600)
    os.link(secret, _src(repo) / "python" / "creds")
    return "{path: src}"


def _git_folder(repo: Path) -> str:
    return "{path: .git}"


def _link_to_git(repo: Path) -> str:
    os.symlink(".git", repo / "meta")
    return "{path: meta}"


def _zip_with_git(repo: Path) -> str:
    zipcraft.write(repo / "vendor.zip", [zipcraft.Member("python/ok.py", b"OK = 1\n"),
                                         zipcraft.Member(".git/config", TOKEN.encode())])
    return "{zip: vendor.zip}"


def _normalized_git_only(repo: Path) -> str:
    zipcraft.write(repo / "vendor.zip", [zipcraft.Member(".git/config", TOKEN.encode())])
    return "{zip: vendor.zip, normalize: true}"


ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="making a device file needs root")
# (setup, the field, what the message says)
CASES = [
    pytest.param(_empty, "path", "has no files to package", id="empty-folder"),
    pytest.param(_emptied_by_excludes, "path", "once exclude patterns are applied",
                 id="emptied-by-excludes"),
    pytest.param(_fifo, "path", "is a FIFO", id="fifo"),
    pytest.param(_socket, "path", "is a socket", id="socket"),
    pytest.param(_device, "path", "is a device file", id="device", marks=ROOT_ONLY),
    pytest.param(_link_out_of_folder, "path", "points outside the content folder",
                 id="link-out"),
    pytest.param(_broken_link, "path", "is broken", id="broken-link"),
    pytest.param(_private_hard_link, "path", "is a hard link to a file only its owner may read",
                 id="private-hard-link"),
    pytest.param(_git_folder, "path", "inside a .git folder", id="git-folder"),
    pytest.param(_link_to_git, "path", "inside a .git folder", id="link-to-git"),
    pytest.param(_zip_with_git, "zip", "1 member(s) lie in a .git folder", id="zip-with-git"),
    pytest.param(_normalized_git_only, "zip", "has no files to package",
                 id="normalized-zip-of-git-only"),
]


@pytest.mark.parametrize(("setup", "field", "fragment"), CASES)
def test_validate_locates_what_plan_refuses(tmp_path: Path, moto_url: str, setup: Setup,
                                            field: str, fragment: str) -> None:
    """validate exits 1 with the problem at `file:line:col: layers.leaky.content.<field>`
    (no AWS call: it runs without an endpoint), and plan refuses the same layer."""
    repo = _repo(tmp_path)
    content = setup(repo)
    (repo / "layers.yaml").write_text("version: 1\nregion: us-east-1\nlayers:\n  leaky:\n"
                        f"    content: {content}\n")
    offline = {name: value for name, value in os.environ.items()
               if not name.startswith("AWS_")}
    validated = invoke(repo, "validate", env=offline)
    assert validated.returncode == 1, validated.stdout
    column = 21 if field == "path" else 20
    lines = validated.stderr.splitlines()
    assert lines[0].startswith(f"layers.yaml:5:{column}: layers.leaky.content.{field}: "), lines
    assert fragment in lines[0], lines
    assert lines[1:] == ["1 problem found; nothing was changed."]
    planned = invoke(repo, "plan")
    assert planned.returncode == 1, planned.stdout
    assert "layers.leaky" in planned.stderr + planned.stdout
    assert fragment in planned.stderr + planned.stdout
    assert boto3.client("lambda").list_layers()["Layers"] == []


def test_git_re_included_by_patterns_is_not_published(tmp_path: Path, moto_url: str) -> None:
    """`path: .` with `!.git/` and `!.git/**` validates and publishes a zip without any `.git`
    member or the token of `.git/config`; the zip built is the one Lambda holds."""
    repo = _repo(tmp_path)
    _src(repo)
    (repo / "layers.yaml").write_text(
        "version: 1\nregion: us-east-1\nlayers:\n  dot:\n"
        "    content: {path: ., exclude: ['!.git/', '!.git/**']}\n")
    assert invoke(repo, "validate").returncode == 0
    applied = invoke(repo, "apply", "--yes")
    assert applied.returncode == 0, applied.stderr
    (built,) = (repo / ".reconcile" / "build").glob("*.zip")
    with zipfile.ZipFile(built) as zip_file:
        assert zip_file.namelist() == ["layers.yaml", "src/python/m.py"]
    assert TOKEN.encode() not in built.read_bytes()
    published = boto3.client("lambda").get_layer_version(LayerName="dot", VersionNumber=1)
    assert published["Content"]["CodeSha256"] == base64.b64encode(
        hashlib.sha256(built.read_bytes()).digest()).decode()
