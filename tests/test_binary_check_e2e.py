"""End to end: the binary check of every layer a plan would publish, through the CLI in process
against moto, on libraries gcc compiles now: a wrong machine, a glibc too new for a runtime's
OS, a CPython extension for another Python and an unreadable ELF file are plan errors naming
the layer, the file and what it needs (apply publishes nothing); a library found nowhere is a
warning; `check_binaries: false` turns it off; an unchanged layer is never read."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
import wheelcraft
from clirun import invoke, valid_plan

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

FOO_SOURCE = "int foo(void) { return 1; }\n"
NEEDS_FOO_SOURCE = "int foo(void);\nint bar(void) { return foo() + 1; }\n"


@pytest.fixture(scope="module")
def libraries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """statx (GLIBC_2.28), memcpy (old glibc only), and one that needs libfoo.so.1."""
    folder = tmp_path_factory.mktemp("elf")
    wheelcraft.compile_library(folder, "libfoo.so.1", FOO_SOURCE,
                               link=["-Wl,-soname,libfoo.so.1"])
    return {
        "statx": wheelcraft.compile_library(folder, "libstatx.so",
                                            wheelcraft.STATX_SOURCE).read_bytes(),
        "memcpy": wheelcraft.compile_library(folder, "libmemcpy.so",
                                             wheelcraft.MEMCPY_SOURCE).read_bytes(),
        "needs_foo": wheelcraft.compile_library(
            folder, "libneedsfoo.so", NEEDS_FOO_SOURCE,
            link=[f"-L{folder}", "-l:libfoo.so.1"]).read_bytes(),
    }


def _project(tmp_path: Path, files: dict[str, bytes], *, runtimes: str,
             architectures: str = "[x86_64]", content: str = "{path: src}",
             extra: str = "", defaults: str = "") -> Path:
    (tmp_path / ".git").mkdir(exist_ok=True)
    for name, data in files.items():
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (tmp_path / "layers.yaml").write_text(
        "version: 1\nregion: us-east-1\n"
        + (f"defaults:\n  {defaults}\n" if defaults else "")
        + f"layers:\n  native:\n    compatible_runtimes: {runtimes}\n"
        f"    compatible_architectures: {architectures}\n    content: {content}\n"
        + (f"    {extra}\n" if extra else ""))
    return tmp_path


def _zip_of(tmp_path: Path, members: dict[str, bytes]) -> None:
    (tmp_path / "dist").mkdir(exist_ok=True)
    with zipfile.ZipFile(tmp_path / "dist" / "native.zip", "w", zipfile.ZIP_DEFLATED) as out:
        for name, data in members.items():
            out.writestr(name, data)


def layer_names() -> list[str]:
    """The layers moto holds."""
    return [layer["LayerName"] for layer in boto3.client("lambda").list_layers()["Layers"]]


Setup = Callable[[Path, dict[str, bytes]], tuple[Path, list[str]]]


def _x86_in_arm64(tmp_path: Path, libs: dict[str, bytes]) -> tuple[Path, list[str]]:
    return _project(tmp_path, {"lib/libmemcpy.so": libs["memcpy"]}, runtimes="[python3.12]",
                    architectures="[arm64]"), ["lib/libmemcpy.so", "needs x86_64", "arm64"]


def _aarch64_in_x86(tmp_path: Path, libs: dict[str, bytes]) -> tuple[Path, list[str]]:
    return _project(tmp_path, {"lib/libmemcpy.so": wheelcraft.as_aarch64(libs["memcpy"])},
                    runtimes="[python3.12]"), ["lib/libmemcpy.so", "needs aarch64", "x86_64"]


def _glibc_on_python311(tmp_path: Path, libs: dict[str, bytes]) -> tuple[Path, list[str]]:
    return _project(tmp_path, {"python/fast/libstatx.so": libs["statx"]},
                    runtimes="[python3.11]"), [
        "python/fast/libstatx.so", "GLIBC_2.28", "python3.11", "Amazon Linux 2 (glibc 2.26)"]


def _cpython311_in_312(tmp_path: Path, libs: dict[str, bytes]) -> tuple[Path, list[str]]:
    name = "python/pkg/_x.cpython-311-x86_64-linux-gnu.so"
    return _project(tmp_path, {name: libs["memcpy"]}, runtimes="[python3.12]"), [
        name, "needs cpython-311", "python3.12"]


def _truncated_in_prebuilt_zip(tmp_path: Path, libs: dict[str, bytes]) -> tuple[Path, list[str]]:
    _zip_of(tmp_path, {"python/ok.py": b"OK = 1\n", "lib/libcut.so": libs["memcpy"][:40]})
    return _project(tmp_path, {}, runtimes="[python3.12]", content="{zip: dist/native.zip}"), [
        "lib/libcut.so", "not a readable ELF file", "truncated"]


def _x86_in_normalized_zip(tmp_path: Path, libs: dict[str, bytes]) -> tuple[Path, list[str]]:
    _zip_of(tmp_path, {"lib/libmemcpy.so": libs["memcpy"]})
    return _project(tmp_path, {}, runtimes="[python3.12]", architectures="[arm64]",
                    content="{zip: dist/native.zip, normalize: true}"), [
        "lib/libmemcpy.so", "needs x86_64", "arm64"]


MISMATCHES = [
    pytest.param(_x86_in_arm64, id="x86_64-library-declared-arm64"),
    pytest.param(_aarch64_in_x86, id="aarch64-library-declared-x86_64"),
    pytest.param(_glibc_on_python311, id="glibc-2.28-on-python3.11"),
    pytest.param(_cpython311_in_312, id="cpython-311-extension-on-python3.12"),
    pytest.param(_truncated_in_prebuilt_zip, id="truncated-elf-in-prebuilt-zip"),
    pytest.param(_x86_in_normalized_zip, id="x86_64-library-in-normalized-zip"),
]


@pytest.mark.parametrize("setup", MISMATCHES)
def test_mismatch_is_a_plan_error_naming_layer_file_and_need(
        setup: Setup, tmp_path: Path, moto_url: str, libraries: dict[str, bytes]) -> None:
    """plan exits 1, naming the layer, the file and what it needs, with the hint."""
    project, named = setup(tmp_path, libraries)
    result = invoke(project, "plan")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "could not be planned: native" in result.stderr
    assert "layers.native" in result.stdout
    for text in named:
        assert text in result.stdout, result.stdout
    assert "check_binaries: false" in result.stdout


def test_every_failing_file_is_listed(tmp_path: Path, moto_url: str,
                                      libraries: dict[str, bytes]) -> None:
    """Two files that cannot run make one error of the layer listing both, in text and
    Markdown."""
    project = _project(tmp_path, {"lib/a/libstatx.so": libraries["statx"],
                                  "lib/b/libstatx.so": libraries["statx"]},
                       runtimes="[python3.11]")
    text = invoke(project, "plan")
    assert text.returncode == 1
    assert "layers.native: 2 binaries cannot run where the layer is declared to:" in text.stdout
    for path in ("lib/a/libstatx.so", "lib/b/libstatx.so"):
        assert f"  - {path}: needs GLIBC_2.28" in text.stdout
    markdown = invoke(project, "plan", "--format", "markdown")
    assert "\n  - lib/b/libstatx.so: needs GLIBC_2.28" in markdown.stdout


@pytest.mark.parametrize("setup", MISMATCHES)
def test_check_binaries_false_turns_the_check_off(
        setup: Setup, tmp_path: Path, moto_url: str, libraries: dict[str, bytes]) -> None:
    """The same layer with `check_binaries: false` plans clean (a create pending)."""
    project, _ = setup(tmp_path, libraries)
    manifest = project / "layers.yaml"
    manifest.write_text(manifest.read_text() + "    check_binaries: false\n")
    result = invoke(project, "plan", "--detailed-exitcode")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "1 to create" in result.stdout


def test_check_binaries_false_in_defaults(tmp_path: Path, moto_url: str,
                                          libraries: dict[str, bytes]) -> None:
    """`defaults: {check_binaries: false}` turns it off for every layer."""
    project = _project(tmp_path, {"python/fast/libstatx.so": libraries["statx"]},
                       runtimes="[python3.11]", defaults="check_binaries: false")
    assert invoke(project, "plan", "--detailed-exitcode").returncode == 2


def test_glibc_2_28_fits_python312(tmp_path: Path, moto_url: str,
                                   libraries: dict[str, bytes]) -> None:
    """The statx library planned for python3.12 (Amazon Linux 2023, glibc 2.34) is clean."""
    project = _project(tmp_path, {"python/fast/libstatx.so": libraries["statx"]},
                       runtimes="[python3.12]")
    result = invoke(project, "plan", "--detailed-exitcode")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "warning" not in result.stdout and "GLIBC" not in result.stdout


def test_missing_library_is_a_warning_in_every_format(tmp_path: Path, moto_url: str,
                                                      libraries: dict[str, bytes]) -> None:
    """A library needing libfoo.so.1, which is neither in the layer nor on Lambda, plans (exit
    0) with a warning in text, Markdown and JSON; shipping libfoo.so.1 silences it."""
    project = _project(tmp_path, {"lib/libneedsfoo.so": libraries["needs_foo"]},
                       runtimes="[python3.12]")
    text = invoke(project, "plan")
    assert text.returncode == 0, text.stderr
    warning = ("layer native: lib/libneedsfoo.so: needs libfoo.so.1, found neither in the "
               "layer nor among the libraries every Lambda OS has")
    assert f"warning: {warning}" in text.stdout
    markdown = invoke(project, "plan", "--format", "markdown")
    assert f":warning: {warning}" in markdown.stdout
    document = invoke(project, "plan", "--format", "json")
    assert valid_plan(json.loads(document.stdout))["warnings"] == [warning]
    (project / "src" / "lib" / "libfoo.so.1").write_bytes(libraries["memcpy"])
    assert "libfoo.so.1" not in invoke(project, "plan").stdout


def test_apply_publishes_nothing_when_the_check_fails(tmp_path: Path, moto_url: str,
                                                      libraries: dict[str, bytes]) -> None:
    """apply --yes refuses before any publish; a saved plan with the error is refused by
    apply PLANFILE, which decides (and checks) again: moto holds no layer after either."""
    project, _ = _glibc_on_python311(tmp_path, libraries)
    applied = invoke(project, "apply", "--yes")
    assert applied.returncode == 1
    assert "GLIBC_2.28" in applied.stdout + applied.stderr
    saved = invoke(project, "plan", "--out", "plan.json")
    assert saved.returncode == 1 and (project / "plan.json").exists()
    replayed = invoke(project, "apply", "plan.json")
    assert replayed.returncode == 1
    assert "GLIBC_2.28" in replayed.stderr
    assert layer_names() == []
    assert not (project / "layers.lock.json").exists()


def test_unchanged_layer_is_not_read_again(tmp_path: Path, moto_url: str,
                                           libraries: dict[str, bytes]) -> None:
    """After an apply, a plan of the unchanged layer is clean without building or reading its
    zip: with `.reconcile/build` and the verdicts removed, none comes back."""
    project = _project(tmp_path, {"python/fast/libstatx.so": libraries["statx"]},
                       runtimes="[python3.12]")
    assert invoke(project, "apply", "--yes").returncode == 0
    verdicts = project / ".reconcile" / "binaries"
    assert len(list(verdicts.glob("*.json"))) == 1
    shutil.rmtree(project / ".reconcile" / "build")
    shutil.rmtree(verdicts)
    again = invoke(project, "plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    assert not verdicts.exists()
    assert not list((project / ".reconcile").glob("build/*.zip"))


def test_settings_change_checks_the_zip_again(tmp_path: Path, moto_url: str,
                                              libraries: dict[str, bytes]) -> None:
    """A layer applied for python3.12 and then declared python3.11 (a publish of the same
    zip) is checked against the new runtime: GLIBC_2.28 is an error, nothing published."""
    project = _project(tmp_path, {"python/fast/libstatx.so": libraries["statx"]},
                       runtimes="[python3.12]")
    assert invoke(project, "apply", "--yes").returncode == 0
    manifest = project / "layers.yaml"
    manifest.write_text(manifest.read_text().replace("[python3.12]", "[python3.11]"))
    result = invoke(project, "plan")
    assert result.returncode == 1
    assert "GLIBC_2.28" in result.stdout
    assert [version["Version"] for version in boto3.client("lambda").list_layer_versions(
        LayerName="native")["LayerVersions"]] == [1]
