"""Lock files -> locked packages -> selected wheels: requirements.txt, pylock.toml and uv.lock
written by the real uv against a loopback index, read for several Lambda targets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import wheelcraft

from reconciler.builds import (
    LockedPackage,
    LockError,
    Wheel,
    pylock,
    requirements,
    selection,
    target,
    uvlock,
    wheels,
)

BETA_TAGS = ("cp311-cp311-manylinux2014_x86_64", "cp311-cp311-manylinux_2_28_x86_64",
             "cp311-cp311-manylinux2014_aarch64",
             "cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64",
             "cp312-cp312-manylinux_2_28_aarch64")


@dataclass(frozen=True)
class Locks:
    folder: Path
    wheel_folder: Path
    texts: dict[str, str]


@pytest.fixture(scope="module")
def locks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Locks]:
    """One project locked by uv three ways (uv.lock, pylock.toml, requirements.txt): alpha
    (pure) needs beta (binary wheels for cp311/cp312, x86_64/aarch64) and, on aarch64 only,
    gamma."""
    root = tmp_path_factory.mktemp("index")
    wheelcraft.make_wheel(root / "alpha", "alpha", "1.0", "py3-none-any",
                          requires=["beta==2.0", 'gamma==1.0; platform_machine == "aarch64"'])
    for tag in BETA_TAGS:
        wheelcraft.make_wheel(root / "beta", "beta", "2.0", tag)
    wheelcraft.make_wheel(root / "gamma", "gamma", "1.0", "py3-none-any")
    project = tmp_path_factory.mktemp("project")
    (project / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "0.1.0"\nrequires-python = ">=3.10"\n'
        'dependencies = ["alpha==1.0"]\n')
    cache = tmp_path_factory.mktemp("uv-cache")
    with wheelcraft.serve_index(root) as index:
        wheelcraft.uv_run(project, "lock", index_url=index.url, cache=cache)
        wheelcraft.uv_run(project, "export", "--format", "pylock.toml", "-o", "pylock.toml",
                          index_url=index.url, cache=cache)
        wheelcraft.uv_run(project, "export", "--format", "requirements-txt", "-o",
                          "requirements.txt", index_url=index.url, cache=cache)
    wheel_folder = tmp_path_factory.mktemp("find-links")
    for wheel in root.glob("*/*.whl"):
        (wheel_folder / wheel.name).write_bytes(wheel.read_bytes())
    yield Locks(project, wheel_folder, {name: (project / name).read_text()
                                        for name in ("uv.lock", "pylock.toml",
                                                     "requirements.txt")})


def _selected(locks: Locks, name: str, build_target: target.Target) -> list[tuple[str, str]]:
    text = locks.texts[name]
    if name == "uv.lock":
        packages = uvlock.read(text, file=name, target=build_target)
        found = None
    elif name == "pylock.toml":
        packages = pylock.read(text, file=name, target=build_target)
        found = None
    else:
        packages = requirements.parse(text, file=name).packages_for(build_target)
        found = wheels.find_links_wheels([locks.wheel_folder],
                                         {package.name: package.version for package in packages})
    chosen = selection.select(packages, target=build_target, found=found)
    return [(item.package.name, item.wheel.filename) for item in chosen]


def _target(runtime: str, architecture: str) -> target.Target:
    (only,) = target.targets_for([runtime], [architecture])
    return only


@pytest.mark.parametrize(("runtime", "architecture"), [
    ("python3.11", "x86_64"), ("python3.11", "arm64"),
    ("python3.12", "x86_64"), ("python3.12", "arm64")])
def test_three_lock_formats_select_the_same_wheels(locks: Locks, runtime: str,
                                                   architecture: str) -> None:
    """uv.lock, pylock.toml and requirements.txt (with find_links) of one project give one
    wheel set for each target."""
    build_target = _target(runtime, architecture)
    from_uv = _selected(locks, "uv.lock", build_target)
    assert from_uv == _selected(locks, "pylock.toml", build_target)
    assert from_uv == _selected(locks, "requirements.txt", build_target)
    assert [name for name, _ in from_uv][:2] == ["alpha", "beta"]


def test_marker_dependency_only_on_its_architecture(locks: Locks) -> None:
    """gamma (`platform_machine == "aarch64"`) is in the arm64 layer and not the x86_64 one,
    whatever machine runs the build."""
    for name in ("uv.lock", "pylock.toml", "requirements.txt"):
        arm = dict(_selected(locks, name, _target("python3.12", "arm64")))
        intel = dict(_selected(locks, name, _target("python3.12", "x86_64")))
        assert "gamma" in arm, name
        assert "gamma" not in intel, name


def test_glibc_226_takes_manylinux2014_not_2_28(locks: Locks) -> None:
    """python3.11 (Amazon Linux 2, glibc 2.26) gets the manylinux2014 wheel though a
    manylinux_2_28 one exists; python3.12 (glibc 2.34) takes the manylinux_2_28 aarch64 one."""
    old = dict(_selected(locks, "uv.lock", _target("python3.11", "x86_64")))
    assert old["beta"] == "beta-2.0-cp311-cp311-manylinux2014_x86_64.whl"
    new = dict(_selected(locks, "uv.lock", _target("python3.12", "arm64")))
    assert new["beta"] == "beta-2.0-cp312-cp312-manylinux_2_28_aarch64.whl"


def test_two_targets_that_need_different_wheels_say_how_to_split(locks: Locks) -> None:
    """A layer declared for arm64 and x86_64 whose wheels differ is refused, naming the
    packages and saying to split the layer."""
    targets = target.targets_for(["python3.11"], ["x86_64", "arm64"])
    with pytest.raises(selection.SelectionError) as caught:
        selection.select_for_targets(
            {one: uvlock.read(locks.texts["uv.lock"], file="uv.lock", target=one)
             for one in targets})
    assert "beta:" in caught.value.message and "gamma:" in caught.value.message
    assert caught.value.hint is not None and "split the layer" in caught.value.hint


def test_two_targets_with_pure_wheels_share_one_set() -> None:
    """Two architectures and two runtimes are accepted when every selected wheel is pure."""
    pure = LockedPackage("six", "1.0", frozenset({"a" * 64}),
                         (Wheel("six-1.0-py2.py3-none-any.whl", "a" * 64),))
    targets = target.targets_for(["python3.11", "python3.12"], ["x86_64", "arm64"])
    chosen = selection.select_for_targets({one: [pure] for one in targets})
    assert [item.wheel.filename for item in chosen] == ["six-1.0-py2.py3-none-any.whl"]


def _package(*filenames: str, sdist: bool = False) -> LockedPackage:
    wheel_list = tuple(Wheel(name, f"{index:064x}") for index, name in enumerate(filenames))
    return LockedPackage("confluent-kafka", "2.6.0", frozenset(), wheel_list, has_sdist=sdist)


@pytest.mark.parametrize(("package", "expected"), [
    (_package(sdist=True), "only an sdist, and sdists are never built"),
    (_package("confluent_kafka-2.6.0-cp311-cp311-manylinux_2_28_x86_64.whl"),
     "only manylinux_2_28, but python3.11 has glibc 2.26 (Amazon Linux 2)"),
    (_package("confluent_kafka-2.6.0-cp311-cp311-manylinux_2_28_aarch64.whl"),
     "only manylinux_2_28_aarch64 (not x86_64 glibc Linux)"),
    (_package("confluent_kafka-2.6.0-cp313-cp313-manylinux2014_x86_64.whl",
              "confluent_kafka-2.6.0-cp311-cp311-macosx_11_0_arm64.whl"),
     "cp311-cp311-macosx_11_0_arm64.whl: macosx_11_0_arm64 (not x86_64 glibc Linux); "
     "confluent_kafka-2.6.0-cp313-cp313-manylinux2014_x86_64.whl: cp313-cp313 (not "
     "python3.11)"),
])
def test_no_fitting_wheel_names_package_target_and_files(package: LockedPackage,
                                                         expected: str) -> None:
    """A package without a fitting wheel is an error naming it, the target and why each file
    that exists does not fit."""
    with pytest.raises(selection.SelectionError) as caught:
        selection.select([package], target=_target("python3.11", "x86_64"))
    assert caught.value.message.startswith(
        "confluent-kafka 2.6.0 has no wheel for python3.11 x86_64 (Amazon Linux 2, glibc 2.26)")
    assert expected in caught.value.message


def test_most_specific_tag_wins() -> None:
    """cp311 beats abi3, abi3 beats py3-none-any, a newer manylinux beats an older one."""
    package = _package("confluent_kafka-2.6.0-py3-none-any.whl",
                       "confluent_kafka-2.6.0-cp39-abi3-manylinux2014_x86_64.whl",
                       "confluent_kafka-2.6.0-cp311-cp311-manylinux_2_17_x86_64.whl",
                       "confluent_kafka-2.6.0-cp311-cp311-manylinux_2_24_x86_64.whl")
    for remaining in range(4, 0, -1):
        candidates = LockedPackage(package.name, package.version, frozenset(),
                                   (package.wheels or ())[:remaining])
        (chosen,) = selection.select([candidates], target=_target("python3.11", "x86_64"))
        assert chosen.wheel == (package.wheels or ())[remaining - 1]


def test_requirements_errors_are_located() -> None:
    """Unpinned, unhashed, editable, URL, VCS, path, include and bad-hash lines are errors
    naming the file and line."""
    text = ("# a comment\n"
            "a>=1 --hash=sha256:" + "0" * 64 + "\n"
            "b==1\n"
            "-e ./local\n"
            "c==1 \\\n    --hash=md5:00\n"
            "git+https://example.invalid/d.git\n"
            "e @ https://example.invalid/e-1-py3-none-any.whl\n"
            "-r more.txt\n"
            "./f-1.0-py3-none-any.whl\n"
            "g==1.*  --hash=sha256:" + "1" * 64 + "\n")
    with pytest.raises(LockError) as caught:
        requirements.parse(text, file="reqs.txt")
    located = {(problem.line, problem.message.split(" ", 1)[0])
               for problem in caught.value.problems}
    assert located == {(2, "a"), (3, "b"), (4, "-e"), (5, "c:"),
                       (7, "'git+https://example.invalid/d.git'"), (8, "e"), (9, "-r"),
                       (10, "'./f-1.0-py3-none-any.whl'"), (11, "g")}
    assert all(problem.file == "reqs.txt" for problem in caught.value.problems)


def test_requirements_options_are_recorded() -> None:
    """Index options are recorded (not followed); continuations and comments are read as pip
    reads them."""
    digest = "ab" * 32
    parsed = requirements.parse(
        "--index-url https://index.example/simple\n--extra-index-url=https://more.example\n"
        f"--find-links wheels\nsix==1.16.0 \\\n  --hash=sha256:{digest}  # pinned\n",
        file="r.txt")
    assert parsed.index_url == "https://index.example/simple"
    assert parsed.extra_index_urls == ("https://more.example",)
    assert parsed.find_links == ("wheels",)
    assert [(pin.name, pin.version, pin.hashes, pin.line) for pin in parsed.pins] == [
        ("six", "1.16.0", frozenset({digest}), 4)]


def test_unreadable_uv_lock_is_located() -> None:
    """A TOML syntax error, an unknown lock version and a git dependency are located errors."""
    build_target = _target("python3.12", "x86_64")
    with pytest.raises(LockError) as caught:
        uvlock.read('version = 1\n[[package]\nname = "x"\n', file="uv.lock", target=build_target)
    assert (caught.value.problems[0].line, caught.value.problems[0].column) == (2, 10)
    with pytest.raises(LockError, match=r"uv\.lock:1:1: lock: uv\.lock version 2"):
        uvlock.read("version = 2\n", file="uv.lock", target=build_target)
    with pytest.raises(LockError, match=r"uv\.lock:7:1: lock: dep comes from git"):
        uvlock.read('version = 1\n[[package]]\nname = "app"\nversion = "1"\n'
                    'source = { virtual = "." }\ndependencies = [{ name = "dep" }]\n'
                    '[[package]]\nname = "dep"\nversion = "1"\n'
                    'source = { git = "https://example.invalid/dep?rev=1#abc" }\n',
                    file="uv.lock", target=build_target)


def test_pylock_rejects_vcs_and_unhashed_wheels() -> None:
    """A needed pylock package from a VCS, or a wheel without sha256, is a located error; a
    package whose marker excludes the target is not read at all."""
    text = ('lock-version = "1.0"\ncreated-by = "hand"\n'
            '[[packages]]\nname = "skipped"\nmarker = "sys_platform == \'win32\'"\n'
            'vcs = { type = "git", url = "https://example.invalid" }\n'
            '[[packages]]\nname = "fromgit"\nvcs = { type = "git", url = "https://x.invalid" }\n'
            '[[packages]]\nname = "nohash"\nversion = "1"\n'
            'wheels = [{ url = "https://x.invalid/nohash-1-py3-none-any.whl", hashes = {} }]\n')
    with pytest.raises(LockError) as caught:
        pylock.read(text, file="pylock.toml", target=_target("python3.12", "x86_64"))
    assert [(problem.line, problem.message.split(" ", 1)[0])
            for problem in caught.value.problems] == [(7, "fromgit"), (10, "nohash:")]


def test_uv_lock_follows_extras_and_skips_dev_groups() -> None:
    """A dependency's extras pull in that package's optional dependencies; the root's dev
    group is not part of the layer."""
    wheel = '[{ url = "https://x.invalid/{0}-1-py3-none-any.whl", hash = "sha256:' + "c" * 64
    def package(name: str, extra: str = "") -> str:
        return (f'[[package]]\nname = "{name}"\nversion = "1"\n'
                f'source = {{ registry = "https://x.invalid" }}\n'
                f'wheels = {wheel.replace("{0}", name)}" }}]\n{extra}')
    text = ('version = 1\n[[package]]\nname = "app"\nversion = "1"\nsource = { virtual = "." }\n'
            'dependencies = [{ name = "web", extra = ["fast"] }]\n'
            '[package.dev-dependencies]\ndev = [{ name = "pytest" }]\n'
            + package("web", '[package.optional-dependencies]\nfast = [{ name = "speedup" }]\n')
            + package("speedup") + package("pytest"))
    found = uvlock.read(text, file="uv.lock", target=_target("python3.12", "x86_64"))
    assert [item.name for item in found] == ["web", "speedup"]
