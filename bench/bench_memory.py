"""Benchmark of apply's peak memory: the peak RSS of a real `reconcile apply --yes` process
that uploads a layer directly (PublishLayerVersion with the zip in the request), against a
moto server this script starts, beside the peak RSS of `reconcile --version` (the imports
alone).

    python bench/bench_memory.py [--zip-mb 40] [--keep]

The layer is a prebuilt zip of random (incompressible) bytes, so the zip is as large as its
content. Each measurement is one child process, whose own peak RSS comes from os.wait4 (the
moto server runs in this process and is not counted). The target is the README's guarantee
for a direct upload: peak RSS under 3x the zip's size + 60 MB. It prints a table and writes
the figures as JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from moto.server import ThreadedMotoServer

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024
TARGET_FACTOR = 3
TARGET_ALLOWANCE_MB = 60


@dataclass(frozen=True)
class Measurement:
    """One child process: what it ran, how long it took, its peak RSS and its exit code."""

    name: str
    seconds: float
    peak_rss_mb: float
    exit_code: int


def _peak_rss_of(command: list[str], *, env: dict[str, str], cwd: Path, name: str) -> Measurement:
    """Run `command` as one child and read its own peak RSS (Linux reports ru_maxrss in KiB)."""
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if child.returncode != 0 and child.stderr is not None:
        sys.stderr.write(child.stderr.read().decode(errors="replace"))
    return Measurement(name=name, seconds=round(seconds, 2),
                       peak_rss_mb=round(usage.ru_maxrss / 1024, 1), exit_code=child.returncode)


def _random_zip(path: Path, *, size_mb: int) -> int:
    """A stored zip of random files, about `size_mb` MiB; its size in bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for index in range(size_mb):
            archive.writestr(f"python/blob_{index:03d}.bin", os.urandom(MIB))
    return path.stat().st_size


def bench(*, zip_mb: int, keep: bool) -> dict[str, object]:
    """Measure, print the table and return the figures."""
    work_dir = Path(tempfile.mkdtemp(prefix="reconcile-bench-memory-"))
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log: one per call
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        zip_size = _random_zip(work_dir / "big.zip", size_mb=zip_mb)
        (work_dir / "layers.yaml").write_text(
            "version: 1\nregion: us-east-1\nlayers:\n  big-direct:\n"
            "    content:\n      zip: big.zip\n", encoding="utf-8")
        env = {**{name: value for name, value in os.environ.items()
                  if not name.startswith("AWS_")},
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": f"http://{host}:{port}",
               "AWS_CONFIG_FILE": str(work_dir / "no-config"),
               "AWS_SHARED_CREDENTIALS_FILE": str(work_dir / "no-credentials"),
               "AWS_EC2_METADATA_DISABLED": "true"}
        program = [sys.executable, "-m", "reconciler"]
        baseline = _peak_rss_of([*program, "--version"], env=env, cwd=work_dir,
                                name="reconcile --version (imports only)")
        direct = _peak_rss_of([*program, "apply", "--yes", "--no-summary"], env=env,
                              cwd=work_dir, name=f"apply: direct upload of a {zip_mb} MiB zip")
    finally:
        server.stop()
    zip_mb_exact = zip_size / MIB
    target_mb = TARGET_FACTOR * zip_mb_exact + TARGET_ALLOWANCE_MB
    met = direct.exit_code == 0 and direct.peak_rss_mb < target_mb
    print(f"{'measurement':<48} {'seconds':>8} {'peak RSS MB':>12} {'exit':>5}")
    for item in (baseline, direct):
        print(f"{item.name:<48} {item.seconds:>8.2f} {item.peak_rss_mb:>12.1f} "
              f"{item.exit_code:>5}")
    print(f"\ndirect upload: zip {zip_mb_exact:.1f} MiB, peak RSS {direct.peak_rss_mb:.1f} MB, "
          f"target < {TARGET_FACTOR} x zip + {TARGET_ALLOWANCE_MB} MB = {target_mb:.1f} MB: "
          f"{'met' if met else 'MISSED'}")
    if keep:
        print(f"kept {work_dir}")
    else:
        for child in sorted(work_dir.rglob("*"), reverse=True):
            child.unlink() if child.is_file() or child.is_symlink() else child.rmdir()
        work_dir.rmdir()
    return {"zip_bytes": zip_size, "measurements": [asdict(baseline), asdict(direct)],
            "direct_target_mb": round(target_mb, 1), "direct_target_met": met,
            "python": sys.version.split()[0]}


def main() -> None:
    """Parse the options, measure, write bench/results/memory-<time>.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip-mb", type=int, default=40, help="the zip's size in MiB")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    options = parser.parse_args()
    result = bench(zip_mb=options.zip_mb, keep=options.keep)
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    result_path = RESULTS_DIR / f"memory-{stamp}.json"
    result_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {result_path}")
    if not result["direct_target_met"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
