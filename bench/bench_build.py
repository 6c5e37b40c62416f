"""Benchmark of a layer built from a lock file: numpy + pandas from real wheels, against pip.

    python bench/bench_build.py [--repeats 3] [--packages numpy,pandas] [--wheels DIR]

It downloads (once, into bench/.wheels/, or takes from --wheels) the manylinux x86_64 wheels
for CPython 3.12 of the packages and their dependencies, writes a hashed `requirements.txt`
of them and a manifest with one built layer, and measures whole processes (the installed
`reconcile`, a moto server behind the tests' proxy, as bench/bench_plan.py does):

- cold build: a plan with no state and no `.reconcile/`, the wheels in the cache as an earlier
  build of them leaves it (RECONCILE_CACHE_DIR: the wheels and what that build checked of their
  members, as the first-build samples below leave it), which selects, checks and zips the layer;
  against `pip install --no-index --no-compile --target` of the same wheels followed by
  `zip -r -X -6` of the result, the two run in turn. Target: at least 10x faster.
- first build of the wheels: the same plan with the cache holding the wheels alone (its facts
  removed before each sample), which inflates every member to check it: reported, no target.
- unchanged plan of the built layer after an apply (it reads the lock and nothing else),
  against an unchanged plan of a folder layer holding the same files (pip's tree), both warm.

The lock is a `pylock.toml` naming the wheels by SHA-256 (a requirements.txt would have the
build ask an index or a find_links folder for the files' names first).
  Target: no slower.

Every sample goes to bench/results/build-<time>.json. It changes nothing outside its temporary
folder, bench/.wheels/ and the results.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import bench_plan
import faultproxy  # tests/faultproxy.py, on the path bench_plan sets
from bench_plan import Step, measure, reconcile

from reconciler.builds import cache as wheel_cache

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / "bench" / ".wheels"
RESULTS_DIR = ROOT / "bench" / "results"
DEFAULT_PACKAGES = ("numpy", "pandas")


def download_wheels(packages: list[str], into: Path) -> list[Path]:
    """The wheels of `packages` and their dependencies for cp312 manylinux x86_64."""
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
                    "--platform", "manylinux2014_x86_64", "--python-version", "3.12",
                    "--implementation", "cp", "--dest", str(into), *packages], check=True)
    return sorted(into.glob("*.whl"))


def pylock(wheels: list[Path]) -> str:
    """A PEP 751 lock naming exactly these wheels, each by an address never fetched (the
    wheels are in the cache, where a build finds them by SHA-256 first)."""
    lines = ['lock-version = "1.0"\ncreated-by = "bench"\nrequires-python = ">=3.12"\n']
    for wheel in wheels:
        name, version = wheel.name.split("-")[:2]
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        lines.append(f'\n[[packages]]\nname = "{name}"\nversion = "{version}"\n'
                     f'wheels = [{{ name = "{wheel.name}", '
                     f'url = "https://files.invalid/{wheel.name}", '
                     f'hashes = {{ sha256 = "{digest}" }} }}]\n')
    return "".join(lines)


def built_project(folder: Path, wheels: list[Path]) -> None:
    """A manifest with one layer built from a pylock.toml of `wheels`."""
    folder.mkdir(parents=True)
    (folder / "pylock.toml").write_text(pylock(wheels))
    (folder / "layers.yaml").write_text(
        "version: 1\nregion: us-east-1\nlayers:\n  deps:\n"
        "    compatible_runtimes: [python3.12]\n    compatible_architectures: [x86_64]\n"
        "    content: {lock: pylock.toml}\n")
    bench_plan.settle(folder)


def folder_project(folder: Path, tree: Path) -> None:
    """A manifest with one folder layer holding `tree` (what pip installed) under python/."""
    folder.mkdir(parents=True)
    shutil.copytree(tree, folder / "layer" / "python", symlinks=True)
    (folder / "layers.yaml").write_text(
        "version: 1\nregion: us-east-1\nlayers:\n  deps:\n"
        "    compatible_runtimes: [python3.12]\n    content: {path: layer}\n")
    bench_plan.settle(folder)


def pip_and_zip(work: Path, wheels: list[Path], *, env: dict[str, str]) -> tuple[
        bench_plan.Run, Path]:
    """pip install --target of the wheels, then zip -r -X -6 of the tree: one timed run."""
    target = work / "pip-target"
    shutil.rmtree(target, ignore_errors=True)
    out = work / "pip.zip"
    out.unlink(missing_ok=True)
    # The wheels are for CPython 3.12 on Linux x86_64, whatever runs the bench: pip installs
    # them for that platform only when told so.
    script = (f"{sys.executable} -m pip install --quiet --no-index --no-compile --no-deps "
              f"--disable-pip-version-check --platform manylinux2014_x86_64 "
              f"--python-version 3.12 --implementation cp --only-binary=:all: "
              f"--target {target} "
              + " ".join(str(wheel) for wheel in wheels)
              + f" && cd {target} && zip -q -r -X -6 {out} .")
    run = measure(["sh", "-c", script], cwd=work, env=env)
    return run, target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=3, help="samples per timed step")
    parser.add_argument("--packages", default=",".join(DEFAULT_PACKAGES))
    parser.add_argument("--wheels", type=Path, default=None,
                        help="a folder of the wheels (default: download into bench/.wheels)")
    arguments = parser.parse_args()
    if shutil.which("zip") is None:
        raise SystemExit("zip is not installed: pip's side of the comparison needs it")
    packages = arguments.packages.split(",")
    wheel_folder = arguments.wheels or WHEELS / "-".join(packages)
    wheels = (sorted(wheel_folder.glob("*.whl")) if arguments.wheels
              else download_wheels(packages, wheel_folder))
    start_machine = bench_plan.machine()
    work = Path(tempfile.mkdtemp(prefix="reconcile-bench-build-"))
    home = work / "home"
    home.mkdir()
    (home / "aws-config").write_text("")
    (home / "aws-credentials").write_text("")
    cache_root = work / "cache"
    cache = wheel_cache.WheelCache(cache_root)
    for wheel in wheels:
        cache.put_file(wheel, sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
                       label="bench")
    cold = Step("built layer: cold build (plan, no state, no .reconcile/, wheels cached)")
    first = Step("built layer: first build of these wheels (the cache holds only the wheels)")
    pip = Step("pip install --no-index --no-compile --target + zip -r -X -6")
    warm_built = Step("built layer: unchanged plan after apply")
    warm_folder = Step("folder layer of the same files: unchanged plan after apply")
    plan = reconcile("plan", "--detailed-exitcode", "--no-summary")
    try:
        with bench_plan.moto_server() as moto, \
                faultproxy.running(moto) as proxy:
            env = {**bench_plan.environment(proxy.url, home),
                   "RECONCILE_CACHE_DIR": str(cache_root)}
            built = work / "built"
            built_project(built, wheels)
            tree: Path | None = None

            def cold_plan() -> bench_plan.Run:
                shutil.rmtree(built / ".reconcile", ignore_errors=True)
                (built / "layers.lock.json").unlink(missing_ok=True)
                return measure(plan, cwd=built, env=env, proxy=proxy)

            for _ in range(arguments.repeats):
                shutil.rmtree(cache_root / "facts", ignore_errors=True)
                first.runs.append(cold_plan())
            for _ in range(arguments.repeats):
                cold.runs.append(cold_plan())
                run, tree = pip_and_zip(work, wheels, env=env)
                pip.runs.append(run)
            bench_plan.setup_apply(built, env)
            for _ in range(arguments.repeats):
                warm_built.runs.append(measure(plan, cwd=built, env=env, proxy=proxy))
            assert tree is not None
            folder = work / "folder"
            folder_project(folder, tree)
            bench_plan.setup_apply(folder, env)
            for _ in range(arguments.repeats):
                warm_folder.runs.append(measure(plan, cwd=folder, env=env, proxy=proxy))
            files, size = bench_plan.tree_size(tree)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = pip.median("seconds") / cold.median("seconds")
    cold.target, cold.met = f">= 10x faster than pip + zip ({ratio:.1f}x)", ratio >= 10
    against = warm_built.median("seconds") / warm_folder.median("seconds")
    warm_built.target = f"<= 1x the folder layer's ({against:.2f}x)"
    warm_built.met = against <= 1.0
    for step in (warm_built, warm_folder):
        if any(run.code != 0 for run in step.runs):
            step.note, step.met = "a plan found changes (exit 2): not a no-change plan", False
    first.target = (f"(no target; {pip.median('seconds') / first.median('seconds'):.1f}x "
                    "faster than pip + zip)")
    steps = [cold, first, pip, warm_built, warm_folder]
    end_machine = bench_plan.machine()
    print(f"\n{end_machine['cpus']} CPUs ({end_machine['cpu_model']}), load average "
          f"{start_machine['load_average'][0]:.2f} at the start, "
          f"{end_machine['load_average'][0]:.2f} at the end; medians of {arguments.repeats} runs")
    print(f"wheels: {', '.join(wheel.name for wheel in wheels)}; installed: {files} files, "
          f"{size / bench_plan.MIB:.0f} MiB")
    bench_plan.print_table(steps)
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = RESULTS_DIR / f"build-{stamp}.json"
    path.write_text(json.dumps({"machine_start": start_machine, "machine_end": end_machine,
                                "repeats": arguments.repeats,
                                "wheels": [wheel.name for wheel in wheels],
                                "installed": {"files": files, "bytes": size},
                                "steps": [asdict(step) for step in steps]}, indent=2) + "\n")
    print(f"\nresults written to {path}")


if __name__ == "__main__":
    main()
