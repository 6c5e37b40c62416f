"""End-to-end tests of `reconcile validate` without AWS credentials: exit codes, where the
messages go, and that validate writes nothing. Run in process (clirun.invoke): the console
script and `python -m reconciler` are pinned as processes in test_cli_basics.py (here the
script is only checked to be installed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import clirun
import pytest

from reconciler import __version__

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "layers.yaml.example"
BAD_MANIFEST = "\n".join([
    "version: 1",
    "layers:",
    "  a:",
    "    descripton: typo",
    "    compatible_runtimes: [pyhton3.12]",
    "    content: {path: x}",
    "",
])


def console_script() -> str:
    """The `reconcile` script installed beside this interpreter."""
    script = shutil.which("reconcile", path=str(Path(sys.executable).parent))
    assert script is not None, "the reconcile console script is not installed"
    return script


@pytest.fixture
def env() -> dict[str, str]:
    """The environment without any AWS setting, and with the instance metadata lookup off."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    clean["AWS_EC2_METADATA_DISABLED"] = "true"
    return clean


def run(args: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `reconcile ARGS` in this process."""
    return clirun.invoke(cwd, *args, env=env)


def tree(folder: Path) -> set[Path]:
    """Every path below `folder`."""
    return set(folder.rglob("*"))


def test_console_script_is_installed() -> None:
    """The `reconcile` console script is installed beside the interpreter running the tests."""
    assert Path(console_script()).is_file()


def test_validate_example_from_unrelated_cwd(tmp_path: Path, env: dict[str, str]) -> None:
    """validate of the example manifest from an unrelated cwd exits 0 with one summary line."""
    result = run(["validate", "-f", str(EXAMPLE)], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    assert lines[0].startswith(f"{EXAMPLE}: valid: 4 layers")
    assert tree(tmp_path) == set()


def test_validate_bad_manifest_reports_each_problem(tmp_path: Path, env: dict[str, str]) -> None:
    """A bad manifest exits 1, prints every located problem (disk checks too) and writes nothing."""
    manifest = tmp_path / "layers.yaml"
    manifest.write_text(BAD_MANIFEST, encoding="utf-8")
    before = tree(tmp_path)
    result = run(["validate", "-f", str(manifest)], cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    for located in [
        f"{manifest}:4:5: layers.a.descripton: unknown key",
        f"{manifest}:5:27: layers.a.compatible_runtimes[0]: 'pyhton3.12' is not a Lambda runtime",
        f"{manifest}:6:21: layers.a.content.path: folder 'x' does not exist",
    ]:
        assert located in result.stderr, result.stderr
    assert "3 problems found" in result.stderr
    assert tree(tmp_path) == before
    assert not (tmp_path / "layers.lock.json").exists()
    assert not (tmp_path / ".reconcile").exists()


def test_validate_reports_missing_content_folder(tmp_path: Path, env: dict[str, str]) -> None:
    """A content folder that does not exist is a located problem on stderr and exit 1."""
    manifest = tmp_path / "layers.yaml"
    manifest.write_text("version: 1\nlayers:\n  a:\n    content: {path: missing}\n",
                        encoding="utf-8")
    result = run(["validate", "-f", str(manifest)], cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert f"{manifest}:4:21: layers.a.content.path: folder 'missing' does not exist" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_validate_missing_manifest_file(tmp_path: Path, env: dict[str, str]) -> None:
    """`-f` naming a file that does not exist exits 1 with a clear message, no traceback."""
    result = run(["validate", "-f", "nope.yaml"], cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "nope.yaml: no such manifest" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        pytest.param(["frobnicate"], "No such command", id="unknown-command"),
        pytest.param(["validate", "--bogus"], "No such option", id="unknown-option"),
        pytest.param(["--bogus"], "No such option", id="unknown-root-option"),
        pytest.param(["validate", "extra"], "unexpected extra argument", id="extra-argument"),
    ],
)
def test_usage_errors_exit_1(
    tmp_path: Path, env: dict[str, str], args: list[str], phrase: str
) -> None:
    """A usage error exits 1 (never 2) with a message on stderr and no traceback."""
    result = run(args, cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert phrase in result.stderr
    assert "Traceback" not in result.stderr


def test_version(tmp_path: Path, env: dict[str, str]) -> None:
    """`reconcile --version` exits 0 and prints the package version first (the format and
    botocore lines that follow are pinned in test_cli_basics.py)."""
    result = run(["--version"], cwd=tmp_path, env=env)
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == f"reconcile {__version__}"


def test_default_manifest_is_layers_yaml_in_cwd(tmp_path: Path, env: dict[str, str]) -> None:
    """Without -f, validate reads `layers.yaml` in the working directory."""
    (tmp_path / "layers" / "a").mkdir(parents=True)
    (tmp_path / "layers" / "a" / "m.py").write_text("X = 1\n")  # an empty folder is refused
    (tmp_path / "layers.yaml").write_text(
        "version: 1\nlayers:\n  a:\n    content: {path: layers/a}\n", encoding="utf-8")
    result = run(["validate"], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("layers.yaml: valid: 1 layer ")


def test_default_manifest_missing_is_a_clear_error(tmp_path: Path, env: dict[str, str]) -> None:
    """Without -f and without `layers.yaml` in the cwd, validate exits 1 naming layers.yaml."""
    result = run(["validate"], cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "layers.yaml: no such manifest" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_accepts_the_common_aws_options(tmp_path: Path, env: dict[str, str]) -> None:
    """validate takes --profile and friends (a pipeline passes them everywhere) and ignores them."""
    result = run(["validate", "-f", str(EXAMPLE), "--profile", "nosuch", "--endpoint-url",
                  "not-a-url", "--max-attempts", "3", "--no-summary"], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "valid: 4 layers" in result.stdout


def test_validate_warns_of_unsupported_features_in_line_order(
        tmp_path: Path, env: dict[str, str]) -> None:
    """Features plan would refuse are warnings from validate (exit 0), sorted by line."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f.txt").write_text("x")
    (tmp_path / "layers.yaml").write_text(
        "version: 1\nlayers:\n  b:\n    content: {path: src}\n    retain: 2\n"
        "  a:\n    content: {path: src}\n    share: [{account: '123456789012'}]\n")
    result = run(["validate"], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == []  # sharing and retention are built: nothing left to warn about


def test_validate_refuses_content_outside_the_repository_and_unsafe_zips(
        tmp_path: Path, env: dict[str, str]) -> None:
    """Without AWS settings, validate locates a path leaving the repository and a zip whose
    link leaves it, exits 1 and writes nothing."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "credentials").write_text("aws_secret_access_key = not-real\n")
    with zipfile.ZipFile(repo / "vendor.zip", "w") as zip_file:
        zip_file.writestr("python/ok.py", "OK = 1\n")
        link = zipfile.ZipInfo("python/passwd")
        link.external_attr = 0o120777 << 16
        zip_file.writestr(link, "../../../../etc/passwd")
    manifest = repo / "layers.yaml"
    manifest.write_text("version: 1\nlayers:\n  leak:\n    content: {path: ../outside}\n"
                        "  slip:\n    content: {zip: vendor.zip}\n", encoding="utf-8")
    before = tree(tmp_path)
    result = run(["validate", "-f", str(manifest)], cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{manifest}:4:21: layers.leak.content.path: '../outside' resolves to" in (
        result.stderr), result.stderr
    assert "outside the repository" in result.stderr
    assert f"{manifest}:6:20: layers.slip.content.zip: 'vendor.zip' is unsafe: symlink " \
           "'python/passwd' points outside the zip" in result.stderr, result.stderr
    assert tree(tmp_path) == before
