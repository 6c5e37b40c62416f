"""`make demo`: the main job on layers.yaml.example against `reconcile sandbox`.

Starts the sandbox (a local moto server: no account, no network) with `reconcile sandbox
start`, runs `reconcile validate`, `plan`, `apply --yes`, `plan --detailed-exitcode` (which
must show no changes) and `outputs` with the environment it prints, then `reconcile sandbox
stop`, even when a step fails (a sandbox that was running before the demo is used and left
running). The lockfile goes to a temporary folder, so the demo leaves
the working tree as it found it (but for the gitignored `.reconcile/` folder).

The example's `shared-utils` names a consumer, `orders-api`: the demo makes that function in
the sandbox (boto3, against the sandbox's endpoint) using no layer, so that the apply appends
the new version to it and writes each layer's SSM parameter, and then shows its layers.

The example's built layer (`api-deps`) is made from a wheel the demo writes itself
(`example_wheel`: a few lines of zipfile, no network) into `examples/wheels/`; its bytes are
fixed (fixed dates and order), so they are those `examples/requirements.txt` pins, and the demo
stops if they are not.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECONCILE = str(Path(sys.executable).parent / "reconcile")
MANIFEST = ["-f", "layers.yaml.example"]


EXAMPLE_WHEEL = ROOT / "examples" / "wheels" / "tinyutil-1.0-py3-none-any.whl"
EXAMPLE_FILES = {
    "tinyutil/__init__.py": b'"""A tiny package the example layer is built from."""\n\n'
                            b'def greet(name: str) -> str:\n    return f"hello, {name}"\n',
    "tinyutil-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinyutil\nVersion: 1.0\n",
    "tinyutil-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: wheelcraft\n"
                                    b"Root-Is-Purelib: true\nTag: py3-none-any\n",
}


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


def example_wheel(path: Path = EXAMPLE_WHEEL) -> str:
    """Write the example's wheel (its files, then a RECORD of their digests, with fixed
    dates and modes, so the bytes are always the same); its hex SHA-256."""
    record = "".join(
        f"{name},sha256="
        f"{base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
        f"{len(data)}\n" for name, data in EXAMPLE_FILES.items())
    record += "tinyutil-1.0.dist-info/RECORD,,\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(temp, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in [*EXAMPLE_FILES.items(), ("tinyutil-1.0.dist-info/RECORD",
                                                    record.encode())]:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(info, data)
    temp.replace(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_wheels() -> None:
    """The wheel of the built layer, made here; stop unless the lock pins exactly it."""
    print("\n\033[1m# the wheel the api-deps layer is built from, written by the demo itself "
          "(no network)\033[0m", flush=True)
    digest = example_wheel()
    pinned = re.findall(r"sha256:([0-9a-f]{64})",
                        (ROOT / "examples" / "requirements.txt").read_text())
    print(f"{EXAMPLE_WHEEL.relative_to(ROOT)}  sha256:{digest}", flush=True)
    if digest not in pinned:
        raise StepFailed(f"{EXAMPLE_WHEEL.name} has SHA-256 {digest}, which "
                         "examples/requirements.txt does not pin")


FUNCTION = "orders-api"


def _lambda(env: dict[str, str]) -> Any:
    """A Lambda client of the sandbox (its endpoint and fake credentials, from `env`)."""
    import boto3  # only the demo's own sandbox calls need it

    return boto3.client("lambda", region_name=env.get("AWS_REGION", "us-east-1"),
                        endpoint_url=env["AWS_ENDPOINT_URL"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def sandbox_function(env: dict[str, str]) -> None:
    """The example's consumer, `orders-api`, in the sandbox, using no layer yet (made once:
    a sandbox that was running keeps it)."""
    import boto3

    print(f"\n\033[1m# a sandbox function, {FUNCTION}, that uses no layer yet\033[0m",
          flush=True)
    client = _lambda(env)
    if FUNCTION in {found["FunctionName"] for found in client.list_functions()["Functions"]}:
        return
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=env["AWS_ENDPOINT_URL"],
                       aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    role = iam.create_role(RoleName=f"{FUNCTION}-demo", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": []}))["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
    client.create_function(FunctionName=FUNCTION, Runtime="python3.12", Role=role,
                           Handler="handler.handler", Code={"ZipFile": code.getvalue()})


def show_function(env: dict[str, str]) -> None:
    """The layers the example's consumer uses now."""
    found = _lambda(env).get_function_configuration(FunctionName=FUNCTION)
    print(f"\n\033[1m# {FUNCTION} now uses\033[0m", flush=True)
    for layer in found.get("Layers", []):
        print(f"  {layer['Arn']}", flush=True)


def run_steps(env: dict[str, str], *, lock: str, plan_file: str) -> None:
    """The main job, in the order a pipeline runs it, then the saved-plan cycle of CI."""
    step("check the manifest and the files it names (no AWS call)",
         "validate", *MANIFEST, env=env)
    step("what would be published, and why", "plan", *MANIFEST, "--lockfile", lock, env=env)
    step("publish exactly that, recording each version in the lockfile, then move the "
         "consumer functions to it and write each layer's SSM parameter",
         "apply", *MANIFEST, "--lockfile", lock, "--yes", env=env)
    show_function(env)
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
        make_wheels()
        sandbox_env = {**env, **start_sandbox(env)}
        sandbox_function(sandbox_env)
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
