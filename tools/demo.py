"""`make demo`: the main job on layers.yaml.example against `reconcile sandbox`.

Starts the sandbox (a local moto server: no account, no network) with `reconcile sandbox
start`, runs `reconcile validate`, `plan`, `apply --yes`, `plan --detailed-exitcode` (which
must show no changes) and `outputs` with the environment it prints, then `reconcile sandbox
stop`, even when a step fails (a sandbox that was running before the demo is used and left
running). The lockfile goes to a temporary folder, so the demo leaves
the working tree as it found it (but for the gitignored `.reconcile/` folder).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECONCILE = str(Path(sys.executable).parent / "reconcile")
MANIFEST = ["-f", "layers.yaml.example"]


class StepFailed(Exception):
    """A demo step exited with another code than expected."""


def step(title: str, *args: str, env: dict[str, str], expect: int = 0) -> None:
    """Run one reconcile command, show it, and stop the demo if it exits unexpectedly."""
    print(f"\n\033[1m$ reconcile {' '.join(args)}\033[0m", flush=True)
    print(f"# {title}", flush=True)
    code = subprocess.run([RECONCILE, *args], cwd=ROOT, env=env, check=False).returncode
    if code != expect:
        raise StepFailed(f"`reconcile {' '.join(args)}` exited {code}, expected {expect}")


def exports_of(stdout: str) -> dict[str, str]:
    """The variables of the `export NAME=VALUE ...` lines `reconcile sandbox start` prints."""
    variables: dict[str, str] = {}
    for line in stdout.splitlines():
        words = shlex.split(line)
        if words[:1] == ["export"]:
            for word in words[1:]:
                name, _, value = word.partition("=")
                variables[name] = value
    return variables


def start_sandbox(env: dict[str, str]) -> dict[str, str]:
    """`reconcile sandbox start`, shown; returns the variables it exports."""
    print(f"\033[1m$ eval \"$(reconcile sandbox start {' '.join(MANIFEST)})\"\033[0m", flush=True)
    print("# the embedded AWS: a moto server on a free loopback port", flush=True)
    started = subprocess.run([RECONCILE, "sandbox", "start", *MANIFEST], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, text=True, check=False)
    if started.returncode != 0:
        raise StepFailed(f"`reconcile sandbox start` exited {started.returncode}")
    print(started.stdout, end="", flush=True)
    return exports_of(started.stdout)


def run_steps(env: dict[str, str], *, lock: str, plan_file: str) -> None:
    """The main job, in the order a pipeline runs it, then the saved-plan cycle of CI."""
    step("check the manifest and the files it names (no AWS call)",
         "validate", *MANIFEST, env=env)
    step("what would be published, and why", "plan", *MANIFEST, "--lockfile", lock, env=env)
    step("publish exactly that, recording each version in the lockfile",
         "apply", *MANIFEST, "--lockfile", lock, "--yes", env=env)
    step("nothing left to do: exit 0 with --detailed-exitcode",
         "plan", *MANIFEST, "--lockfile", lock, "--detailed-exitcode", env=env)
    step("what function deploys use", "outputs", *MANIFEST, "--lockfile", lock, env=env)
    # The CI split: the pull-request job saves a reviewed plan, the merge job applies
    # exactly it. A fresh lockfile makes the saved plan one that adopts what is published.
    fresh_lock = f"{lock}.saved-plan"
    step("the pull-request job: save the plan for review (a fresh lockfile: adopt)",
         "plan", *MANIFEST, "--lockfile", fresh_lock, "--out", plan_file, env=env)
    step("what reviewers read", "show", plan_file, "--format", "markdown", env=env)
    step("the merge job: apply exactly the reviewed plan (no question: it was reviewed)",
         "apply", *MANIFEST, "--lockfile", fresh_lock, plan_file, env=env)
    step("a plan is applied once: the second time is refused", "apply", *MANIFEST,
         "--lockfile", fresh_lock, plan_file, env=env, expect=1)
    step("nothing left to do", "plan", *MANIFEST, "--lockfile", fresh_lock,
         "--detailed-exitcode", env=env)


def main() -> int:
    """Run the demo; exit 0 when every step did what it should."""
    # No AWS setting of the developer's (profile, real endpoint) may reach the demo.
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("AWS_")},
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    # A sandbox the developer started themselves is used, and left running.
    was_running = subprocess.run([RECONCILE, "sandbox", "status", *MANIFEST], cwd=ROOT, env=env,
                                 capture_output=True, check=False).returncode == 0
    try:
        sandbox_env = {**env, **start_sandbox(env)}
        with tempfile.TemporaryDirectory(prefix="reconcile-demo-") as scratch:
            run_steps(sandbox_env, lock=str(Path(scratch) / "layers.lock.json"),
                      plan_file=str(Path(scratch) / "plan.json"))
    except StepFailed as failure:
        print(f"demo: {failure}", file=sys.stderr)
        return 1
    finally:
        if not was_running:
            print(f"\n\033[1m$ reconcile sandbox stop {' '.join(MANIFEST)}\033[0m",
                  flush=True)
            subprocess.run([RECONCILE, "sandbox", "stop", *MANIFEST], cwd=ROOT, env=env,
                           check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
