"""End to end: layers built from lock files (`content.lock`) through the CLI in process against
moto, with wheels made on the fly, served from find_links folders and a loopback PEP 503 index
(its requests counted), and uv.lock / pylock.toml written by the real uv. No network."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import wheelcraft
from clirun import invoke, plan_json, valid_plan
from lockindex import LoopbackStores

from reconciler.command import compose

PYPROJECT = """\
[project]
name = "app"
version = "0.1"
requires-python = ">=3.9"
dependencies = ["alpha==1.0", "beta==1.0"]
"""


@dataclass
class Project:
    """A repository with a wheels folder, an index folder and the three locks of one set."""

    repo: Path
    index_root: Path
    uv_cache: Path


@pytest.fixture
def stores(moto_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The CLI gets the real stores against moto and the loopback index client; the wheel
    cache is a fresh folder (yielded)."""
    cache = tmp_path / "wheel-cache"
    monkeypatch.setenv("RECONCILE_CACHE_DIR", str(cache))
    for variable in ("RECONCILE_INDEX_URL", "PIP_INDEX_URL"):
        monkeypatch.delenv(variable, raising=False)
    with compose.overridden(LoopbackStores):
        yield cache


def _wheels(folder: Path, *, alpha: str = "1.0") -> None:
    wheelcraft.make_wheel(folder, "alpha", alpha, "py3-none-any")
    wheelcraft.make_wheel(folder, "beta", "1.0", "py3-none-any",
                          requires=['gamma==1.0; platform_machine == "aarch64"'])
    wheelcraft.make_wheel(folder, "gamma", "1.0", "py3-none-any")


def _requirements(wheels: Path, *, names: tuple[str, ...] = ("alpha", "beta", "gamma")) -> str:
    lines = []
    for path in sorted(wheels.glob("*.whl")):
        name, version = path.name.split("-")[:2]
        if name not in names:
            continue
        marker = " ; platform_machine == 'aarch64'" if name == "gamma" else ""
        lines.append(f"{name}=={version}{marker} \\\n    --hash=sha256:"
                     f"{wheelcraft.sha256_of(path)}\n")
    return "".join(lines)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A repository (with `.git`) holding `wheels/` and requirements.txt for alpha, beta and
    gamma (aarch64 only), and an index folder serving the same wheels."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    _wheels(repo / "wheels")
    (repo / "requirements.txt").write_text(_requirements(repo / "wheels"))
    index_root = tmp_path / "index"
    for path in (repo / "wheels").glob("*.whl"):
        target = index_root / path.name.split("-")[0]
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / path.name)
    return Project(repo=repo, index_root=index_root, uv_cache=tmp_path / "uv-cache")


def _manifest(repo: Path, layers: dict[str, str]) -> None:
    text = "version: 1\nregion: us-east-1\nlayers:\n" + "".join(
        f"  {name}:\n    compatible_runtimes: [python3.12]\n{body}"
        for name, body in layers.items())
    (repo / "layers.yaml").write_text(text)


def _layer(content: str, *, architectures: str = "") -> str:
    extra = f"    compatible_architectures: [{architectures}]\n" if architectures else ""
    return f"{extra}    content: {content}\n"


def _by_layer(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {change["layer"]: change for change in document["changes"]}


def test_three_lock_formats_and_two_wheel_sources_give_one_code_sha256(
        project: Project, stores: Path) -> None:
    """uv.lock and pylock.toml made by the real uv, and requirements.txt from the loopback
    index and from a find_links folder, build byte-identical zips of the same wheels."""
    uv_project = project.repo / "app"
    uv_project.mkdir()
    (uv_project / "pyproject.toml").write_text(PYPROJECT)
    with wheelcraft.serve_index(project.index_root) as index:
        for arguments in (("lock",),
                          ("export", "--format", "pylock.toml", "--no-emit-project",
                           "-o", "pylock.toml")):
            wheelcraft.uv_run(uv_project, *arguments, index_url=index.url,
                              cache=project.uv_cache)
        _manifest(project.repo, {
            "from-uv": _layer("{lock: app/uv.lock}"),
            "from-pylock": _layer("{lock: app/pylock.toml}"),
            "from-index": _layer(f"{{lock: requirements.txt, index_url: '{index.url}'}}"),
            "from-folder": _layer("{lock: requirements.txt, find_links: [wheels]}"),
        })
        document = plan_json(project.repo)
        assert any("/alpha/" in request for request in index.requests)
    changes = _by_layer(document)
    digests = {name: change["desired"]["code_sha256"] for name, change in changes.items()}
    assert len(set(digests.values())) == 1, digests
    for change in changes.values():
        build = change["desired"]["build"]
        assert build["packages"] == [["alpha", "1.0"], ["beta", "1.0"]]
        assert build["target"] == "python3.12 x86_64 (Amazon Linux 2023, glibc 2.34)"
        assert ["gamma", "not needed on python3.12 x86_64 (markers)"] in build["left_out"]
        assert change["desired"]["source"] == "lock"


def test_an_aarch64_only_dependency_is_in_the_arm64_layer_and_not_the_x86_64_one(
        project: Project, stores: Path) -> None:
    """Markers are evaluated for each layer's target, not the building machine."""
    _manifest(project.repo, {
        "arm": _layer("{lock: requirements.txt, find_links: [wheels]}", architectures="arm64"),
        "intel": _layer("{lock: requirements.txt, find_links: [wheels]}",
                        architectures="x86_64"),
    })
    changes = _by_layer(plan_json(project.repo))
    assert changes["arm"]["desired"]["build"]["packages"] == [
        ["alpha", "1.0"], ["beta", "1.0"], ["gamma", "1.0"]]
    assert changes["intel"]["desired"]["build"]["packages"] == [["alpha", "1.0"], ["beta", "1.0"]]
    assert changes["arm"]["desired"]["code_sha256"] != changes["intel"]["desired"]["code_sha256"]


def test_an_unchanged_plan_after_apply_reads_the_lock_and_nothing_else(
        project: Project, stores: Path) -> None:
    """After an apply from the index, a plan with the index stopped, the wheel cache and
    .reconcile/ emptied is clean (exit 0) and asks the index for nothing; the state records
    the inputs digest and the packages."""
    with wheelcraft.serve_index(project.index_root) as index:
        _manifest(project.repo, {"deps": _layer(
            f"{{lock: requirements.txt, index_url: '{index.url}'}}")})
        applied = invoke(project.repo, "apply", "--yes")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        asked = len(index.requests)
        assert asked > 0
    shutil.rmtree(stores)
    shutil.rmtree(project.repo / ".reconcile")
    again = invoke(project.repo, "plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(index.requests) == asked
    entry = json.loads((project.repo / "layers.lock.json").read_text())["layers"]["deps"][
        "us-east-1"]
    assert entry["packages"] == [["alpha", "1.0"], ["beta", "1.0"]]
    assert entry["inputs_sha256"] == entry["fingerprint"]


def test_a_changed_pin_shows_the_old_and_new_version(project: Project, stores: Path) -> None:
    """After an apply, pinning alpha 1.1 instead of 1.0 plans a publish that shows
    `alpha 1.0 -> 1.1`, the target and the largest packages unzipped."""
    _manifest(project.repo, {"deps": _layer("{lock: requirements.txt, find_links: [wheels]}")})
    assert invoke(project.repo, "apply", "--yes").returncode == 0
    (project.repo / "wheels" / "alpha-1.0-py3-none-any.whl").unlink()
    wheelcraft.make_wheel(project.repo / "wheels", "alpha", "1.1", "py3-none-any")
    (project.repo / "requirements.txt").write_text(_requirements(project.repo / "wheels"))
    planned = invoke(project.repo, "plan", "--detailed-exitcode")
    assert planned.returncode == 2, planned.stdout + planned.stderr
    assert "packages: alpha 1.0 -> 1.1" in planned.stdout
    assert "build: python3.12 x86_64 (Amazon Linux 2023, glibc 2.34), 2 packages" in \
        planned.stdout
    assert "largest unzipped: " in planned.stdout
    markdown = invoke(project.repo, "plan", "--format", "markdown")
    assert "alpha 1.0 -> 1.1" in markdown.stdout


def test_an_unhashed_requirement_is_a_located_error_at_validate(
        project: Project, stores: Path) -> None:
    """validate reads the lock: an unpinned line and an unhashed one are errors at their
    lines of requirements.txt, exit 1, no traceback."""
    (project.repo / "requirements.txt").write_text("alpha>=1.0\nbeta==1.0\n")
    _manifest(project.repo, {"deps": _layer("{lock: requirements.txt, find_links: [wheels]}")})
    validated = invoke(project.repo, "validate")
    assert validated.returncode == 1
    assert "requirements.txt:1:" in validated.stderr
    assert "requirements.txt:2:" in validated.stderr


def test_a_missing_lock_is_an_error_at_its_manifest_line(project: Project, stores: Path) -> None:
    """A lock that does not exist is located at the manifest's content.lock."""
    _manifest(project.repo, {"deps": _layer("{lock: missing.txt}")})
    validated = invoke(project.repo, "validate")
    assert validated.returncode == 1
    assert "layers.yaml:6:21: layers.deps.content.lock" in validated.stderr
    assert "missing.txt" in validated.stderr


def test_no_home_and_no_cache_dir_is_a_plan_error_naming_the_variable(
        project: Project, stores: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without RECONCILE_CACHE_DIR and without a home directory (a container's user with
    none), the built layer is a plan error saying to set the variable: no traceback."""
    _manifest(project.repo, {"deps": _layer("{lock: requirements.txt, find_links: [wheels]}")})
    monkeypatch.delenv("RECONCILE_CACHE_DIR")

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    planned = invoke(project.repo, "plan", "--format", "json")
    assert planned.returncode == 1, planned.stderr
    errors = valid_plan(json.loads(planned.stdout))["errors"]
    assert [error["layer"] for error in errors] == ["deps"]
    assert "the wheel cache has no folder: there is no home directory" in errors[0]["message"]
    assert "RECONCILE_CACHE_DIR" in errors[0]["hint"]


def test_a_lock_outside_the_repository_is_refused(project: Project, stores: Path) -> None:
    """A lock file is content: one that leads out of the repository is refused."""
    (project.repo.parent / "outside.txt").write_text(_requirements(project.repo / "wheels"))
    _manifest(project.repo, {"deps": _layer("{lock: ../outside.txt}")})
    validated = invoke(project.repo, "validate")
    assert validated.returncode == 1
    assert "outside the repository" in validated.stderr


def _write_only(folder: Path, *wheels: tuple[str, str, str]) -> None:
    shutil.rmtree(folder)
    for name, version, tag in wheels:
        wheelcraft.make_wheel(folder, name, version, tag)


def test_a_package_with_only_a_too_new_manylinux_wheel_is_a_plan_error(
        project: Project, stores: Path) -> None:
    """python3.11 runs on glibc 2.26: a package with only a manylinux_2_28 wheel is a plan
    error naming the package, the target and why the file does not fit."""
    _write_only(project.repo / "wheels",
                ("alpha", "1.0", "cp311-cp311-manylinux_2_28_x86_64"))
    (project.repo / "requirements.txt").write_text(
        _requirements(project.repo / "wheels", names=("alpha",)))
    (project.repo / "layers.yaml").write_text(
        "version: 1\nregion: us-east-1\nlayers:\n  deps:\n"
        "    compatible_runtimes: [python3.11]\n"
        "    content: {lock: requirements.txt, find_links: [wheels]}\n")
    planned = invoke(project.repo, "plan")
    assert planned.returncode == 1
    output = planned.stdout + planned.stderr
    assert "alpha 1.0 has no wheel for python3.11 x86_64 (Amazon Linux 2, glibc 2.26)" in output
    assert "only manylinux_2_28, but python3.11 has glibc 2.26" in output


def test_two_runtimes_needing_different_wheels_say_how_to_split(
        project: Project, stores: Path) -> None:
    """A layer for python3.11 and python3.12 whose package has a cp312-only wheel and a
    cp311 one is a plan error that says to split the layer."""
    _write_only(project.repo / "wheels",
                ("alpha", "1.0", "cp311-cp311-manylinux_2_17_x86_64"),
                ("alpha", "1.0", "cp312-cp312-manylinux_2_17_x86_64"))
    (project.repo / "requirements.txt").write_text(
        "alpha==1.0 " + " ".join(f"--hash=sha256:{wheelcraft.sha256_of(path)}"
                                 for path in sorted((project.repo / "wheels").glob("*.whl")))
        + "\n")
    (project.repo / "layers.yaml").write_text(
        "version: 1\nregion: us-east-1\nlayers:\n  deps:\n"
        "    compatible_runtimes: [python3.11, python3.12]\n"
        "    content: {lock: requirements.txt, find_links: [wheels]}\n")
    planned = invoke(project.repo, "plan")
    assert planned.returncode == 1
    output = planned.stdout + planned.stderr
    assert "need different wheels" in output and "split the layer" in output


def test_two_wheels_shipping_one_path_are_a_plan_error_naming_both(
        project: Project, stores: Path) -> None:
    """Two packages that install the same file cannot share a layer."""
    shutil.rmtree(project.repo / "wheels")
    for name in ("alpha", "beta"):
        wheelcraft.make_wheel(project.repo / "wheels", name, "1.0", "py3-none-any",
                              files={"shared/__init__.py": name.encode()})
    (project.repo / "requirements.txt").write_text(
        _requirements(project.repo / "wheels", names=("alpha", "beta")))
    _manifest(project.repo, {"deps": _layer("{lock: requirements.txt, find_links: [wheels]}")})
    planned = invoke(project.repo, "plan")
    assert planned.returncode == 1
    output = planned.stdout + planned.stderr
    assert "python/shared/__init__.py is shipped by both alpha-1.0-py3-none-any.whl and " \
           "beta-1.0-py3-none-any.whl" in output


def test_a_wheel_whose_sha256_is_not_the_locked_one_is_refused_naming_both(
        project: Project, stores: Path) -> None:
    """A pylock.toml naming a wheel by path with another SHA-256 than the file's: the plan
    refuses it, naming both digests."""
    wheel = project.repo / "wheels" / "alpha-1.0-py3-none-any.whl"
    actual = wheelcraft.sha256_of(wheel)
    locked = hashlib.sha256(b"another wheel").hexdigest()
    (project.repo / "pylock.toml").write_text(
        'lock-version = "1.0"\ncreated-by = "test"\n\n[[packages]]\nname = "alpha"\n'
        f'version = "1.0"\nwheels = [{{ path = "wheels/{wheel.name}", '
        f'hashes = {{ sha256 = "{locked}" }} }}]\n')
    _manifest(project.repo, {"deps": _layer("{lock: pylock.toml}")})
    planned = invoke(project.repo, "plan")
    assert planned.returncode == 1
    output = planned.stdout + planned.stderr
    assert actual in output and locked in output


def test_a_saved_plan_rebuilds_and_applies_from_another_checkout(
        project: Project, stores: Path, tmp_path: Path) -> None:
    """plan --out in one checkout; apply PLANFILE in a copy without .reconcile/ and with an
    empty wheel cache rebuilds the same zip (its CodeSha256 checked) and publishes it."""
    _manifest(project.repo, {"deps": _layer("{lock: requirements.txt, find_links: [wheels]}")})
    saved = invoke(project.repo, "plan", "--out", "plan.json")
    assert saved.returncode == 0, saved.stdout + saved.stderr
    planned = json.loads((project.repo / "plan.json").read_text())
    other = tmp_path / "other"
    shutil.copytree(project.repo, other, ignore=shutil.ignore_patterns(".reconcile"))
    shutil.rmtree(stores, ignore_errors=True)
    applied = invoke(other, "apply", "plan.json", "--yes", "--format", "json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    published = json.loads(applied.stdout)["published"]
    assert [item["layer"] for item in published] == ["deps"]
    code = planned["changes"][0]["desired"]["code_sha256"]
    entry = json.loads((other / "layers.lock.json").read_text())["layers"]["deps"]["us-east-1"]
    assert entry["code_sha256"] == code
