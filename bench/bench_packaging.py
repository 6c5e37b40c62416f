"""Benchmark of layer packaging: fingerprinting (cold and warm stat cache), building the zip with
`sources.build`, its peak memory, and Info-ZIP on the same folder for comparison.

    python bench/bench_packaging.py [--size-mb 200] [--keep]

It generates a folder of mixed files in a temporary directory (many small Python-like sources,
medium text and binary files, large random and compressible files; sizes are deterministic,
random bytes are not), measures, prints a table and removes the folder unless --keep. All runs
read the files from a warm page cache (they were just written). Peak memory is measured in
child processes, each reporting its own peak RSS: one that only imports the modules (the
baseline) and one that identifies and packages; the table shows both and the difference.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reconciler import model, sources

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
        cache = sources.StatCache(build_dir / "unused-cache.json", entries={}, written_ns=0)
        started = time.perf_counter()
        artifact = sources.identify(_content(), base_dir=base_dir, label=LABEL, cache=cache)
        identified = time.perf_counter()
        built = sources.build(
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


def _fingerprint_seconds(base_dir: Path, cache: sources.StatCache) -> float:
    started = time.perf_counter()
    sources.identify(_content(), base_dir=base_dir, label=LABEL, cache=cache)
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

        cache = sources.StatCache.load(work_dir / "cache" / "cache.json")
        cold_seconds = _fingerprint_seconds(work_dir, cache)
        cache.save()
        warm_cache = sources.StatCache.load(work_dir / "cache" / "cache.json")
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
                "sources.build (zip)",
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mb", type=int, default=200, help="folder size (default 200)")
    parser.add_argument("--keep", action="store_true", help="keep the generated folder")
    parser.add_argument("--child", choices=["baseline", "package"], help=argparse.SUPPRESS)
    parser.add_argument("--base-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--build-dir", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments.child, base_dir=arguments.base_dir, build_dir=arguments.build_dir)
    else:
        bench(arguments.size_mb, keep=arguments.keep)


if __name__ == "__main__":
    main()
