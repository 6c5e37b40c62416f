"""Benchmark of apply's peak memory: the peak RSS of real `reconcile apply --yes` processes
against a moto server this script starts, beside the peak RSS of `reconcile --version` (the
imports alone). It only measures and reports; it must not be imported by the tests.

    python bench/bench_memory.py [--zip-mb 40] [--folder-mb 240] [--keep]

Two applies are measured:
- a direct upload (PublishLayerVersion with the zip in the request) of a prebuilt zip of
  random (incompressible) bytes, so the zip is as large as its content; target: peak RSS
  under 3x the zip's size + 60 MB;
- an apply through the artifact bucket of a folder of ~250 MB unzipped (half random, half
  zeros, so its zip is over the 50 MB direct limit and goes through S3 by itself), packaged,
  uploaded with the transfer manager and published from S3; target: peak RSS under 150 MB.

Each measurement is one child process, whose own peak RSS is its VmHWM (bench/peak.py: not
os.wait4's ru_maxrss, which on Linux keeps the RSS the child had before exec, a copy of this
process: a moto server holding a published 40 MiB zip in this process made the next apply
read 400 MB). The moto server runs in a process of its own as well. It prints a table and
writes the figures as JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import peak  # bench/peak.py, beside this script

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024
TARGET_FACTOR = 3
TARGET_ALLOWANCE_MB = 60
ARTIFACT_TARGET_MB = 150
ARTIFACT_BUCKET = "reconcile-bench-artifacts"


@dataclass(frozen=True)
class Measurement:
    """One child process: what it ran, how long it took, its peak RSS and its exit code."""

    name: str
    seconds: float
    peak_rss_mb: float
    exit_code: int


def _peak_rss_of(command: list[str], *, env: dict[str, str], cwd: Path, name: str) -> Measurement:
    """Run `command` as one child and read its own peak RSS (VmHWM; see bench/peak.py)."""
    measured, stderr = peak.run(command, env=env, cwd=cwd)
    if measured.exit_code != 0:
        sys.stderr.write(stderr.decode(errors="replace"))
    return Measurement(name=name, seconds=round(measured.seconds, 2),
                       peak_rss_mb=round(measured.peak_mib, 1), exit_code=measured.exit_code)


def _random_zip(path: Path, *, size_mb: int) -> int:
    """A stored zip of random files, about `size_mb` MiB; its size in bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for index in range(size_mb):
            archive.writestr(f"python/blob_{index:03d}.bin", os.urandom(MIB))
    return path.stat().st_size


def _half_random_folder(path: Path, *, size_mb: int) -> int:
    """A folder of 1 MiB files, each half random and half zeros; its unzipped size in bytes."""
    half = MIB // 2
    for index in range(size_mb):
        target = path / "python" / f"part_{index:03d}.bin"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(os.urandom(half) + bytes(half))
    return size_mb * MIB


def _start_moto() -> tuple[subprocess.Popen[bytes], str]:
    """A moto server in its own process on a free loopback port, once it answers; its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                               "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                return server, endpoint
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise SystemExit("the moto server did not start") from None
            time.sleep(0.2)


def _create_bucket(endpoint: str) -> None:
    """The artifact bucket, made in the moto server the applies talk to."""
    import boto3  # only here: the bench's own setup call, not the measured process

    client = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=ARTIFACT_BUCKET)


def bench(*, zip_mb: int, folder_mb: int, keep: bool) -> dict[str, object]:
    """Measure, print the table and return the figures."""
    work_dir = Path(tempfile.mkdtemp(prefix="reconcile-bench-memory-"))
    server, endpoint = _start_moto()
    try:
        zip_size = _random_zip(work_dir / "big.zip", size_mb=zip_mb)
        (work_dir / "layers.yaml").write_text(
            "version: 1\nregion: us-east-1\nlayers:\n  big-direct:\n"
            "    content:\n      zip: big.zip\n", encoding="utf-8")
        env = {**{name: value for name, value in os.environ.items()
                  if not name.startswith("AWS_")},
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": endpoint,
               "AWS_CONFIG_FILE": str(work_dir / "no-config"),
               "AWS_SHARED_CREDENTIALS_FILE": str(work_dir / "no-credentials"),
               "AWS_EC2_METADATA_DISABLED": "true"}
        program = [sys.executable, "-m", "reconciler"]
        baseline = _peak_rss_of([*program, "--version"], env=env, cwd=work_dir,
                                name="reconcile --version (imports only)")
        direct = _peak_rss_of([*program, "apply", "--yes", "--no-summary"], env=env,
                              cwd=work_dir, name=f"apply: direct upload of a {zip_mb} MiB zip")
        artifact_dir = work_dir / "artifact"
        artifact_dir.mkdir()
        unzipped = _half_random_folder(artifact_dir / "big", size_mb=folder_mb)
        _create_bucket(endpoint)
        (artifact_dir / "layers.yaml").write_text(
            f"version: 1\nregion: us-east-1\nartifact_bucket: {ARTIFACT_BUCKET}\n"
            "layers:\n  big-artifact:\n    content:\n      path: big\n", encoding="utf-8")
        artifact = _peak_rss_of([*program, "apply", "--yes", "--no-summary"], env=env,
                                cwd=artifact_dir,
                                name=f"apply: artifact bucket, {folder_mb} MiB unzipped")
    finally:
        server.terminate()
        server.wait(timeout=30)
    zip_mb_exact = zip_size / MIB
    target_mb = TARGET_FACTOR * zip_mb_exact + TARGET_ALLOWANCE_MB
    met = direct.exit_code == 0 and direct.peak_rss_mb < target_mb
    print(f"{'measurement':<48} {'seconds':>8} {'peak RSS MB':>12} {'exit':>5}")
    artifact_met = artifact.exit_code == 0 and artifact.peak_rss_mb < ARTIFACT_TARGET_MB
    for item in (baseline, direct, artifact):
        print(f"{item.name:<48} {item.seconds:>8.2f} {item.peak_rss_mb:>12.1f} "
              f"{item.exit_code:>5}")
    print(f"\ndirect upload: zip {zip_mb_exact:.1f} MiB, peak RSS {direct.peak_rss_mb:.1f} MB, "
          f"target < {TARGET_FACTOR} x zip + {TARGET_ALLOWANCE_MB} MB = {target_mb:.1f} MB: "
          f"{'met' if met else 'MISSED'}")
    print(f"artifact bucket: {unzipped / 1e6:.0f} MB unzipped, peak RSS "
          f"{artifact.peak_rss_mb:.1f} MB, target < {ARTIFACT_TARGET_MB} MB: "
          f"{'met' if artifact_met else 'MISSED'}")
    if keep:
        print(f"kept {work_dir}")
    else:
        for child in sorted(work_dir.rglob("*"), reverse=True):
            child.unlink() if child.is_file() or child.is_symlink() else child.rmdir()
        work_dir.rmdir()
    return {"zip_bytes": zip_size, "artifact_unzipped_bytes": unzipped,
            "measurements": [asdict(baseline), asdict(direct), asdict(artifact)],
            "direct_target_mb": round(target_mb, 1), "direct_target_met": met,
            "artifact_target_mb": ARTIFACT_TARGET_MB, "artifact_target_met": artifact_met,
            "python": sys.version.split()[0]}


def main() -> None:
    """Parse the options, measure, write bench/results/memory-<time>.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip-mb", type=int, default=40, help="the zip's size in MiB")
    parser.add_argument("--folder-mb", type=int, default=240,
                        help="the artifact-bucket layer's unzipped size in MiB (<= 250)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    options = parser.parse_args()
    result = bench(zip_mb=options.zip_mb, folder_mb=options.folder_mb, keep=options.keep)
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    result_path = RESULTS_DIR / f"memory-{stamp}.json"
    result_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {result_path}")
    if not (result["direct_target_met"] and result["artifact_target_met"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
