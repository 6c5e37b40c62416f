"""`make demo`: the main job on layers.yaml.example against a local moto server.

Starts a moto server on a free loopback port as the embedded AWS (no account, no network),
runs `reconcile validate`, `plan`, `apply --yes` and `plan` again (which must show no
changes), then stops the server. The lockfile goes to a temporary folder, so the demo leaves
the working tree as it found it (but for the gitignored `.reconcile/` cache).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parents[1]
RECONCILE = str(Path(sys.executable).parent / "reconcile")


def step(title: str, *args: str, env: dict[str, str], expect: int = 0) -> None:
    """Run one reconcile command, show it, and stop the demo if it exits unexpectedly."""
    print(f"\n\033[1m$ reconcile {' '.join(args)}\033[0m", flush=True)
    print(f"# {title}", flush=True)
    code = subprocess.run([RECONCILE, *args], cwd=ROOT, env=env, check=False).returncode
    if code != expect:
        print(f"demo: `reconcile {' '.join(args)}` exited {code}, expected {expect}",
              file=sys.stderr)
        raise SystemExit(1)


def main() -> int:
    """Run the demo; exit 0 when every step did what it should."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log between the steps
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    print(f"moto server (the embedded AWS) listening on {endpoint}")
    try:
        with tempfile.TemporaryDirectory(prefix="reconcile-demo-") as scratch:
            lock = str(Path(scratch) / "layers.lock.json")
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
                "AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo",
                "AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            }
            manifest = ["-f", "layers.yaml.example"]
            step("check the manifest and the files it names (no AWS call)",
                 "validate", *manifest, env=env)
            step("what would be published, and why", "plan", *manifest, "--lockfile", lock,
                 env=env)
            step("publish exactly that, recording each version in the lockfile",
                 "apply", *manifest, "--lockfile", lock, "--yes", env=env)
            step("nothing left to do: exit 0 with --detailed-exitcode",
                 "plan", *manifest, "--lockfile", lock, "--detailed-exitcode", env=env)
            step("what function deploys use", "outputs", *manifest, "--lockfile", lock,
                 env=env)
    finally:
        server.stop()
        print(f"\nmoto server on {endpoint} stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
