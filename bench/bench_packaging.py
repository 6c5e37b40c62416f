"""Benchmark of layer packaging: fingerprinting (cold and warm stat cache), building the zip with
`layerbuild.build`, its peak memory, and Info-ZIP on the same folder for comparison; then, on the
generated folder and on a folder of real installed packages, the parallel full build against
the sequential zipfile writer and `zip -r -X -6`, and a rebuild after a one-file edit with and
without the layer's previous zip.

    python bench/bench_packaging.py [--size-mb 200] [--repeats 3] [--keep]
        [--real-packages numpy,sympy,networkx,botocore,moto] [--site-packages DIR ...]

It generates a folder of mixed files in a temporary directory (many small Python-like sources,
medium text and binary files, large random and compressible files; sizes are deterministic,
random bytes are not), measures, prints tables and removes the folder unless --keep. All runs
read the files from a warm page cache (they were just written). Peak memory is measured in
child processes, each reporting its own peak RSS: one that only imports the modules (the
baseline) and one that identifies and packages; the table shows both and the difference.
Timed steps run --repeats times and the tables show medians; every sample is written as JSON
to bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from reconciler import archive, layerbuild, model
from reconciler import content as layer_content
from reconciler.content import statcache

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_REAL_PACKAGES = ("numpy", "sympy", "networkx", "botocore", "moto")

MIB = 1024 * 1024
SEED = 20240601
LABEL = "layers.bench"
# Files are dated in the past, outside the stat cache's racy window, so a warm run can hit.
SETTLED_MTIME = time.time() - 3600

_WORDS = (
    *("layer", "value", "result", "config", "client", "region", "handler", "request"),
    *("response", "payload", "record", "items", "index", "count", "name", "path", "data"),
    *("cache", "token", "bucket", "version", "digest", "manifest", "plan"),
)


def _python_corpus(rng: random.Random, size: int) -> bytes:
    """Python-like source text, from which the small files are cut."""
    lines: list[str] = []
    length = 0
    while length < size:
        name, other, third = rng.sample(_WORDS, 3)
        default = rng.randint(0, 99)
        block = (
            f"def {name}_{other}({third}: dict[str, object], *, {other}: int = {default})"
            f" -> list[str]:\n"
            f'    """Return the {other} of every {name} in {third}."""\n'
            f"    {name}s = [str(item) for item in {third}.get('{other}', [])]\n"
            f"    if len({name}s) > {rng.randint(1, 500)}:\n"
            f"        raise ValueError(f'too many {name}s: {{len({name}s)}}')\n"
            f"    return sorted({name}s)[:{other}]\n\n\n"
        )
        lines.append(block)
        length += len(block)
    return "".join(lines).encode()[:size]


def _json_like(rng: random.Random, size: int) -> bytes:
    """Compressible structured data, like a vendored dataset or a translation table."""
    rows = []
    length = 0
    while length < size:
        row = json.dumps(
            {"id": rng.randint(0, 10**9), "name": rng.choice(_WORDS), "score": rng.random()}
        )
        rows.append(row)
        length += len(row) + 1
    return ("\n".join(rows) + "\n").encode()[:size]


def _write_random(path: Path, size: int) -> None:
    with open(path, "wb") as file:
        remaining = size
        while remaining:
            chunk = min(remaining, 4 * MIB)
            file.write(os.urandom(chunk))
            remaining -= chunk


def _write_compressible(path: Path, size: int, block: bytes) -> None:
    """Repeated text blocks with a counter, so that deflate finds matches but not only zeros."""
    with open(path, "wb") as file:
        written = 0
        counter = 0
        while written < size:
            piece = f"# block {counter}\n".encode() + block
            piece = piece[: size - written]
            file.write(piece)
            written += len(piece)
            counter += 1


def generate(folder: Path, *, total_bytes: int) -> tuple[int, int]:
    """Fill `folder` with about `total_bytes` of mixed files; returns (file count, bytes)."""
    rng = random.Random(SEED)
    corpus = _python_corpus(rng, 512 * 1024)
    small_budget = total_bytes * 30 // 100
    medium_budget = total_bytes * 20 // 100
    large_budget = total_bytes - small_budget - medium_budget
    count = 0
    written = 0

    used = 0
    while used < small_budget:
        size = min(rng.randint(300, 12_000), small_budget - used)
        path = folder / "python" / f"pkg_{count // 200:03d}" / f"module_{count:05d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        start = rng.randrange(0, len(corpus) - size)
        path.write_bytes(f"# module {count}\n".encode() + corpus[start : start + size])
        used += size
        count += 1
    written += used

    used = 0
    medium_index = 0
    while used < medium_budget:
        size = min(rng.randint(64 * 1024, MIB), medium_budget - used)
        if medium_index % 2:
            path = folder / "python" / "vendor_data" / f"table_{medium_index:04d}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_json_like(rng, size))
        else:
            path = folder / "lib" / f"libpart_{medium_index:04d}.so"
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_random(path, size)
        used += size
        medium_index += 1
        count += 1
    written += used

    used = 0
    large_index = 0
    while used < large_budget:
        size = min(rng.randint(8 * MIB, 24 * MIB), large_budget - used)
        if large_index % 2:
            path = folder / "share" / f"model_{large_index:02d}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_compressible(path, size, corpus[: 64 * 1024])
        else:
            path = folder / "bin" / f"engine_{large_index:02d}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_random(path, size)
            path.chmod(0o755)
        used += size
        large_index += 1
        count += 1
    written += used

    for path in folder.rglob("*"):
        os.utime(path, (SETTLED_MTIME, SETTLED_MTIME))
    return count, written


def _peak_rss_bytes() -> int:
    """This process's peak resident set size.

    Linux's VmHWM belongs to the process's own memory map; ru_maxrss would also count the
    parent's RSS, because exec folds the old map's high-water mark into it. Elsewhere
    ru_maxrss is the best there is (macOS reports it in bytes, others in KiB).
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _content() -> model.ContentSpec:
    return model.ContentSpec(kind=model.SourceKind.PATH, path="layer")


def child(mode: str, *, base_dir: Path, build_dir: Path) -> None:
    """Run in a child process: import only (baseline) or package; print a JSON report."""
    report: dict[str, object] = {}
    if mode == "package":
        cache = statcache.StatCache(build_dir / "unused-cache.json", entries={}, written_ns=0)
        started = time.perf_counter()
        artifact = layer_content.identify(_content(), base_dir=base_dir, label=LABEL, cache=cache)
        identified = time.perf_counter()
        built = layerbuild.build(
            _content(), artifact, base_dir=base_dir, label=LABEL, build_dir=build_dir
        )
        finished = time.perf_counter()
        report = {
            "identify_seconds": identified - started,
            "build_seconds": finished - identified,
            "code_size": built.code_size,
            "code_sha256": built.code_sha256,
        }
    report["peak_rss_bytes"] = _peak_rss_bytes()
    print(json.dumps(report))


def _run_child(mode: str, *, base_dir: Path, build_dir: Path) -> dict[str, object]:
    completed = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--base-dir",
            str(base_dir),
            "--build-dir",
            str(build_dir),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    report: dict[str, object] = json.loads(completed.stdout)
    return report


def _number(report: dict[str, object], key: str) -> float:
    value = report[key]
    assert isinstance(value, (int, float))
    return float(value)


def _fingerprint_seconds(base_dir: Path, cache: statcache.StatCache) -> float:
    started = time.perf_counter()
    layer_content.identify(_content(), base_dir=base_dir, label=LABEL, cache=cache)
    return time.perf_counter() - started


def _info_zip(folder: Path, out: Path) -> tuple[float, int] | None:
    if shutil.which("zip") is None:
        return None
    started = time.perf_counter()
    subprocess.run(["zip", "-r", "-X", "-6", "-q", str(out), "."], cwd=folder, check=True)
    return time.perf_counter() - started, out.stat().st_size


def _row(cells: list[str], widths: list[int]) -> str:
    """Names and notes (first and last cells) left-aligned, numbers right-aligned."""
    last = len(cells) - 1
    return "  ".join(
        cell.ljust(width) if index in (0, last) else cell.rjust(width)
        for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
    ).rstrip()


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    print(_row(rows[0], widths))
    print("  ".join("-" * width for width in widths))
    for row in rows[1:]:
        print(_row(row, widths))


def bench(size_mb: int, *, keep: bool) -> None:
    """Generate the folder, measure every step and print the table."""
    work_dir = Path(tempfile.mkdtemp(prefix="reconcile-bench-"))
    try:
        folder = work_dir / "layer"
        started = time.perf_counter()
        file_count, total_bytes = generate(folder, total_bytes=size_mb * MIB)
        total_mb = total_bytes / MIB
        print(
            f"generated {file_count} files, {total_mb:.1f} MiB in {folder} "
            f"({time.perf_counter() - started:.1f} s); Python {sys.version.split()[0]}, "
            f"{os.cpu_count()} CPUs"
        )

        baseline = _run_child("baseline", base_dir=work_dir, build_dir=work_dir / "build")
        packaged = _run_child("package", base_dir=work_dir, build_dir=work_dir / "build")
        rss_above_baseline = _number(packaged, "peak_rss_bytes") - _number(
            baseline, "peak_rss_bytes"
        )

        cache = statcache.StatCache.load(work_dir / "cache" / "cache.json")
        cold_seconds = _fingerprint_seconds(work_dir, cache)
        cache.save()
        warm_cache = statcache.StatCache.load(work_dir / "cache" / "cache.json")
        warm_seconds = _fingerprint_seconds(work_dir, warm_cache)

        build_seconds = _number(packaged, "build_seconds")
        code_size = int(_number(packaged, "code_size"))
        rows = [
            ["step", "seconds", "MiB/s", "output MiB", "notes"],
            [
                "fingerprint, cold cache",
                f"{cold_seconds:.2f}",
                f"{total_mb / cold_seconds:.0f}",
                "-",
                f"{cache.misses} files read",
            ],
            [
                "fingerprint, warm cache",
                f"{warm_seconds:.2f}",
                f"{total_mb / warm_seconds:.0f}",
                "-",
                f"{warm_cache.hits} hits, {warm_cache.misses} files read",
            ],
            [
                "layerbuild.build (zip)",
                f"{build_seconds:.2f}",
                f"{total_mb / build_seconds:.0f}",
                f"{code_size / MIB:.1f}",
                f"peak RSS {_number(packaged, 'peak_rss_bytes') / MIB:.1f} MiB, "
                f"+{rss_above_baseline / MIB:.1f} MiB over an import-only child",
            ],
        ]
        info_zip = _info_zip(folder, work_dir / "info-zip.zip")
        if info_zip is None:
            rows.append(["zip -r -X -6", "-", "-", "-", "skipped: Info-ZIP `zip` not installed"])
        else:
            zip_seconds, zip_size = info_zip
            rows.append(
                [
                    "zip -r -X -6 (Info-ZIP)",
                    f"{zip_seconds:.2f}",
                    f"{total_mb / zip_seconds:.0f}",
                    f"{zip_size / MIB:.1f}",
                    "same folder, same run",
                ]
            )
        print()
        _print_table(rows)
        print(f"\nCodeSha256 of the built zip: {packaged['code_sha256']}")
    finally:
        if keep:
            print(f"kept {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)


def _median_seconds(samples: list[float]) -> float:
    return statistics.median(samples)


def _timed(step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def _warm_cache(work_dir: Path) -> statcache.StatCache:
    """A stat cache that has seen every file of the layer (as after a previous plan)."""
    cache_path = work_dir / "cache" / "cache.json"
    cache = statcache.StatCache.load(cache_path)
    layer_content.identify(_content(), base_dir=work_dir, label=LABEL, cache=cache)
    cache.save()
    return statcache.StatCache.load(cache_path)


def _sequential_zipfile_build(work_dir: Path, out: Path) -> None:
    """The writer before this change: archive.write_zip (zipfile), one file after another."""
    entries = layer_content.collect(_content(), base_dir=work_dir, label=LABEL)
    with open(out, "wb") as out_file:

        def open_entry(entry: model.Entry) -> contextlib.AbstractContextManager[archive.ByteReader]:
            return open(entry.source, "rb")

        archive.write_zip(entries, out=out_file, open_entry=open_entry)


def _edit_one_file(folder: Path, round_number: int) -> None:
    """Append a line to one Python file in the middle of the tree (its fingerprint changes)."""
    python_files = sorted(path for path in folder.rglob("*.py") if path.is_file())
    target = python_files[len(python_files) // 2]
    with open(target, "ab") as file:
        file.write(f"# edited in round {round_number}\n".encode())


def _build_seconds(
    work_dir: Path, build_dir: Path, *, cache: statcache.StatCache
) -> tuple[float, float, model.Artifact]:
    """(identify seconds, build seconds, artifact) of one plan's packaging."""
    started = time.perf_counter()
    artifact = layer_content.identify(_content(), base_dir=work_dir, label=LABEL, cache=cache)
    identified = time.perf_counter()
    built = layerbuild.build(
        _content(), artifact, base_dir=work_dir, label=LABEL, build_dir=build_dir, cache=cache
    )
    return identified - started, time.perf_counter() - identified, built


def measure_builds(work_dir: Path, *, tree: str, repeats: int) -> BuildReport:
    """Full builds (parallel, sequential zipfile, Info-ZIP) and one-file-edit rebuilds of the
    layer in `work_dir/layer`; every sample in seconds."""
    folder = work_dir / "layer"
    files = [path for path in folder.rglob("*") if path.is_file()]
    samples: dict[str, list[float]] = {
        "full build, parallel": [],
        "full build, sequential zipfile": [],
        "zip -r -X -6": [],
        "one-file edit, rebuild with previous zip": [],
        "one-file edit, identify + rebuild with previous zip": [],
        "one-file edit, full rebuild": [],
    }
    # CPU seconds (this process and its children) of the full builds: on a shared machine the
    # wall time of a parallel build depends on what else runs, its CPU time much less.
    cpu_samples: dict[str, list[float]] = {name: [] for name in samples}
    code_size = 0
    cache = _warm_cache(work_dir)
    sequential = work_dir / "sequential.zip"
    for round_number in range(repeats):
        build_dir = work_dir / f"full-{round_number}"
        cpu_before = _cpu_seconds()
        _, seconds, built = _build_seconds(work_dir, build_dir, cache=cache)
        cpu_samples["full build, parallel"].append(_cpu_seconds() - cpu_before)
        samples["full build, parallel"].append(seconds)
        code_size = built.code_size or 0
        shutil.rmtree(build_dir)
        cpu_before = _cpu_seconds()
        samples["full build, sequential zipfile"].append(
            _timed(lambda: _sequential_zipfile_build(work_dir, sequential))
        )
        cpu_samples["full build, sequential zipfile"].append(_cpu_seconds() - cpu_before)
        sequential.unlink()
        cpu_before = _cpu_seconds()
        info_zip = _info_zip(folder, work_dir / "info-zip.zip")
        if info_zip is not None:
            cpu_samples["zip -r -X -6"].append(_cpu_seconds() - cpu_before)
            samples["zip -r -X -6"].append(info_zip[0])
            (work_dir / "info-zip.zip").unlink()
    incremental_dir = work_dir / "incremental"
    _build_seconds(work_dir, incremental_dir, cache=cache)
    for round_number in range(repeats):
        _edit_one_file(folder, round_number)
        identify_seconds, seconds, _ = _build_seconds(work_dir, incremental_dir, cache=cache)
        samples["one-file edit, rebuild with previous zip"].append(seconds)
        samples["one-file edit, identify + rebuild with previous zip"].append(
            identify_seconds + seconds
        )
        # The same edit again, built where there is no previous zip.
        _edit_one_file(folder, round_number + 1000)
        fresh_dir = work_dir / f"fresh-{round_number}"
        _, seconds, _ = _build_seconds(work_dir, fresh_dir, cache=cache)
        samples["one-file edit, full rebuild"].append(seconds)
        shutil.rmtree(fresh_dir)
    return BuildReport(
        tree=tree,
        files=len(files),
        total_bytes=sum(path.stat().st_size for path in files),
        code_size=code_size,
        samples={name: values for name, values in samples.items() if values},
        cpu_samples={name: values for name, values in cpu_samples.items() if values},
        load_average=os.getloadavg()[0],
    )


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclasses.dataclass(frozen=True)
class BuildReport:
    """The build measurements of one tree: its size and every timed sample, in seconds."""

    tree: str
    files: int
    total_bytes: int
    code_size: int
    samples: dict[str, list[float]]
    cpu_samples: dict[str, list[float]]
    load_average: float

    def medians(self) -> dict[str, float]:
        return {name: _median_seconds(values) for name, values in self.samples.items()}


def _print_build_table(report: BuildReport) -> None:
    samples = report.samples
    total_bytes = report.total_bytes
    reference = samples.get("zip -r -X -6")
    rows = [["step", "median s", "MiB/s", "x zip -r", "median CPU s", "samples"]]
    for name, values in samples.items():
        median = _median_seconds(values)
        ratio = f"{median / _median_seconds(reference):.2f}" if reference else "-"
        cpu = report.cpu_samples.get(name)
        rows.append([name, f"{median:.2f}", f"{total_bytes / MIB / median:.0f}", ratio,
                     f"{_median_seconds(cpu):.2f}" if cpu else "-",
                     " ".join(f"{value:.2f}" for value in values)])
    print(
        f"\n{report.tree}: {report.files} files, {total_bytes / MIB:.1f} MiB, "
        f"zip {report.code_size / MIB:.1f} MiB, {os.cpu_count()} CPUs, "
        f"load average {report.load_average:.1f} at the end"
    )
    _print_table(rows)


def _copy_real_packages(
    target: Path, *, packages: list[str], search: list[Path]
) -> list[str]:
    """Copy the named installed packages (without __pycache__) into `target`; returns those
    found."""
    found: list[str] = []
    for package in packages:
        for site in search:
            source = site / package
            if source.is_dir():
                shutil.copytree(source, target / "python" / package, symlinks=True,
                                ignore=shutil.ignore_patterns("__pycache__"))
                found.append(package)
                break
    for path in target.rglob("*"):
        if not path.is_symlink():
            os.utime(path, (SETTLED_MTIME, SETTLED_MTIME))
    return found


def bench_builds(
    size_mb: int, *, repeats: int, packages: list[str], search: list[Path], keep: bool
) -> None:
    """Full and incremental builds on a generated tree and on real packages; JSON results."""
    reports: list[BuildReport] = []
    work_dir = Path(tempfile.mkdtemp(prefix="reconcile-bench-builds-"))
    try:
        generated = work_dir / "generated"
        generate(generated / "layer", total_bytes=size_mb * MIB)
        reports.append(measure_builds(generated, tree=f"generated {size_mb} MiB", repeats=repeats))
        _print_build_table(reports[-1])
        real = work_dir / "real"
        found = _copy_real_packages(real / "layer", packages=packages, search=search)
        if found:
            reports.append(measure_builds(real, tree=f"real packages ({', '.join(found)})",
                                          repeats=repeats))
            _print_build_table(reports[-1])
        else:
            print("\nno real packages found: skipped")
    finally:
        if keep:
            print(f"kept {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    RESULTS_DIR.mkdir(exist_ok=True)
    result = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "repeats": repeats,
        "medians": [{"tree": report.tree, **report.medians()} for report in reports],
        "reports": [dataclasses.asdict(report) for report in reports],
    }
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    result_path = RESULTS_DIR / f"packaging-{stamp}.json"
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresults written to {result_path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mb", type=int, default=200, help="folder size (default 200)")
    parser.add_argument("--keep", action="store_true", help="keep the generated folder")
    parser.add_argument("--repeats", type=int, default=3, help="samples per timed step")
    parser.add_argument(
        "--real-packages", default=",".join(DEFAULT_REAL_PACKAGES),
        help="installed packages to copy into the real-packages tree",
    )
    parser.add_argument(
        "--site-packages", type=Path, action="append", default=[],
        help="where to look for them (besides this interpreter's site-packages)",
    )
    parser.add_argument("--child", choices=["baseline", "package"], help=argparse.SUPPRESS)
    parser.add_argument("--base-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--build-dir", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments.child, base_dir=arguments.base_dir, build_dir=arguments.build_dir)
    else:
        bench(arguments.size_mb, keep=arguments.keep)
        search = [
            *arguments.site_packages,
            *{Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")},
        ]
        bench_builds(
            arguments.size_mb, repeats=arguments.repeats, search=search, keep=arguments.keep,
            packages=[name for name in arguments.real_packages.split(",") if name],
        )


if __name__ == "__main__":
    main()
