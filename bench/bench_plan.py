"""Benchmark of whole `reconcile` processes against a moto server, calls counted at a proxy.

    python bench/bench_plan.py [--repeats 3] [--sizes 10,100,500] [--skip fleet,tree,terraform]

It starts a moto server (a child process) and, in this process, the loopback proxy of
tests/faultproxy.py in front of it; every `reconcile` run is the installed console script in a
child process pointed at the proxy, so each figure is a real command's wall time (start-up,
imports and all), its peak RSS (the child's own VmHWM, bench/peak.py) and the API calls the proxy
saw. Measured:

- N layers (one region): cold no-change plan (no `.reconcile/`, as on a fresh CI checkout),
  warm no-change plan, calls of each; `terraform plan` of the same N layers when terraform
  and an AWS provider (a filesystem mirror, /opt/tf-plugins or --tf-plugins) are present.
- The fleet: 100 layers x 20 regions, 50 ms injected by the proxy before every reply.
- A ~100 MB tree of real installed packages copied from this interpreter's site-packages:
  cold and warm no-change plan, apply after a one-file edit with and without `.reconcile/`,
  beside `zip -r -X -6` of the same tree in the same run. (bench/bench_packaging.py measures
  the packaging library itself on the same kind of tree; this script measures the commands.)

The "server s" column is the time the server spent on the run's calls, measured at the proxy
(from forwarding a request to having its reply), and "client s" the wall time less it: the
client's own time. An apply's wall time includes moto's handling of the publish, 0.5-1.5 s for
a 40 MB zip, so the apply targets are judged on the client's own time. Setup publishes (the
applies that create the remote state) are not timed and run without the client-side rate
limit. Each timed step runs --repeats times; the table shows medians and each target beside
its figure; every sample goes to bench/results/plan-<time>.json.

It only reads what it made: it changes nothing outside its temporary folder and the results.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import faultproxy  # noqa: E402  (the tests' proxy, reused rather than copied)
import peak  # noqa: E402  (bench/peak.py, beside this script)

RESULTS_DIR = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
RECONCILE = shutil.which("reconcile", path=str(BIN)) or "reconcile"
FLEET_REGIONS = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "sa-east-1",
    "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-north-1", "eu-south-1",
    "ap-south-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1",
    "ap-southeast-2", "af-south-1", "me-south-1",
)
REAL_PACKAGES = ("numpy", "sympy", "networkx", "botocore", "moto")
# Installed in .venv by the dev extras; copied (in turn) only while the tree is below
# TREE_BYTES, so that the tree is ~100 MB where numpy is not installed.
FILLER_PACKAGES = ("mypy", "pygments", "cryptography", "pip")
TREE_BYTES = 95 * 1024 * 1024
# Older than any racy-timestamp window: the stat cache may trust these files' stat data.
SETTLED_MTIME = time.time() - 3600
MIB = 1024 * 1024


@dataclass
class Run:
    """One child process: wall seconds, peak RSS in MiB, exit code, calls the proxy saw."""

    seconds: float
    rss_mib: float
    code: int
    calls: int = 0
    get_layer_version: int = 0
    # Seconds the server (moto, behind the proxy) spent on this run's calls (server_time);
    # wall minus it is the client's own time. An apply's publish of a 40 MB zip costs moto
    # 0.5-1.5 s by itself.
    server_seconds: float = 0.0

    @property
    def client_seconds(self) -> float:
        """Wall seconds less the server's."""
        return self.seconds - self.server_seconds


@dataclass
class Step:
    """The samples of one timed step, and its target when it has one."""

    name: str
    runs: list[Run] = field(default_factory=list)
    target: str = ""
    met: bool | None = None
    note: str = ""

    def median(self, attribute: str) -> float:
        """The median of one attribute over the samples."""
        return float(statistics.median(float(getattr(run, attribute)) for run in self.runs))


def measure(command: list[str], *, cwd: Path, env: dict[str, str],
            proxy: faultproxy.FaultProxy | None = None, check: bool = True) -> Run:
    """Run `command` to its end; its wall time, peak RSS and the calls the proxy saw."""
    already = len(proxy.calls) if proxy is not None else 0
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        # The child's own VmHWM (bench/peak.py): os.wait4's ru_maxrss would include this
        # process's memory at the fork, and the proxy here holds whole request bodies.
        measured, _ = peak.run(command, cwd=cwd, env=env, stdout=out, stderr=err)
        if check and measured.exit_code not in (0, 2):
            err.seek(0)
            out.seek(0)
            raise SystemExit(f"{' '.join(command)} failed ({measured.exit_code}):\n"
                             f"{out.read().decode()[-2000:]}\n{err.read().decode()[-4000:]}")
    run = Run(seconds=measured.seconds, rss_mib=measured.peak_mib, code=measured.exit_code)
    if proxy is not None:  # every call of earlier runs was answered before they ended
        calls = proxy.calls[already:]
        run.calls = len(calls)
        run.get_layer_version = sum(call.operation == "GetLayerVersion" for call in calls)
        run.server_seconds = server_time(calls)
    return run


def server_time(calls: list[faultproxy.Call]) -> float:
    """Seconds during which the server was handling at least one of `calls`: the union of
    their times upstream (each taken from its arrival at the proxy), so that calls answered in
    parallel are not subtracted from the wall time twice."""
    total, covered_until = 0.0, float("-inf")
    for start, end in sorted((call.time, call.time + call.upstream_seconds)
                             for call in calls if call.upstream_seconds > 0):
        if end > covered_until:
            total += end - max(start, covered_until)
            covered_until = end
    return total


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto server in a child process (not in this one: the proxy's threads would share a
    GIL with it and slow every reply)."""
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("the moto server did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def reset(url: str) -> None:
    """Forget everything the moto server holds."""
    request = urllib.request.Request(f"{url}/moto-api/reset", data=b"", method="POST")
    urllib.request.urlopen(request, timeout=30).close()


def environment(endpoint: str, home: Path) -> dict[str, str]:
    """The child's environment: fake credentials, the proxy as endpoint, no user config."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
               AWS_CONFIG_FILE=str(home / "aws-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(home / "aws-credentials"),
               GITHUB_STEP_SUMMARY="")
    return env


def small_project(folder: Path, *, count: int, regions: tuple[str, ...]) -> None:
    """`count` one-file folder layers in `regions`."""
    folder.mkdir(parents=True)
    lines = [f"version: 1\nregion: [{', '.join(regions)}]\n"
             "defaults:\n  compatible_runtimes: [python3.12]\nlayers:\n"]
    for number in range(count):
        name = f"bench{number:03d}"
        (folder / name).mkdir()
        (folder / name / f"{name}.py").write_text(f"NAME = {name!r}\n")
        lines.append(f"  {name}:\n    content: {{path: {name}, prefix: python}}\n")
    (folder / "layers.yaml").write_text("".join(lines))
    settle(folder)


def settle(folder: Path) -> None:
    """Give every file an mtime an hour ago, as a checkout that is not being edited has."""
    for path in folder.rglob("*"):
        if not path.is_symlink():
            os.utime(path, (SETTLED_MTIME, SETTLED_MTIME))


def reconcile(*args: str) -> list[str]:
    """The command line of the installed CLI."""
    return [RECONCILE, *args]


def setup_apply(project: Path, env: dict[str, str]) -> None:
    """Publish everything (untimed, no client-side limit), so that plans change nothing."""
    measure(reconcile("apply", "--yes", "--max-rps", "0", "--parallelism", "8",
                      "--no-summary"), cwd=project, env=env)


def timed_plans(project: Path, *, env: dict[str, str], proxy: faultproxy.FaultProxy,
                repeats: int, label: str) -> tuple[Step, Step]:
    """Cold (no .reconcile/) and warm no-change plans, `repeats` of each."""
    cold, warm = Step(f"{label}: cold plan"), Step(f"{label}: warm plan")
    plan = reconcile("plan", "--detailed-exitcode", "--no-summary")
    for _ in range(repeats):
        shutil.rmtree(project / ".reconcile", ignore_errors=True)
        cold.runs.append(measure(plan, cwd=project, env=env, proxy=proxy))
        warm.runs.append(measure(plan, cwd=project, env=env, proxy=proxy))
    for step in (cold, warm):
        if any(run.code != 0 for run in step.runs):
            step.note = "a plan found changes (exit 2): not a no-change plan"
    return cold, warm


# ---------------------------------------------------------------------------------- terraform

TF_MAIN = """terraform {{
  required_providers {{
    aws = {{ source = "hashicorp/aws" }}
  }}
}}
provider "aws" {{
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  endpoints {{
    lambda = "{endpoint}"
    sts    = "{endpoint}"
  }}
}}
variable "names" {{ type = list(string) }}
resource "aws_lambda_layer_version" "layer" {{
  for_each            = toset(var.names)
  layer_name          = each.value
  filename            = "${{path.module}}/zips/${{each.value}}.zip"
  source_code_hash    = filebase64sha256("${{path.module}}/zips/${{each.value}}.zip")
  compatible_runtimes = ["python3.12"]
}}
"""


def terraform_dir(folder: Path, *, endpoint: str, names: list[str]) -> None:
    """A Terraform configuration of the same layers (one small zip each)."""
    import zipfile

    (folder / "zips").mkdir(parents=True)
    for name in names:
        with zipfile.ZipFile(folder / "zips" / f"{name}.zip", "w") as archive:
            archive.writestr(f"python/{name}.py", f"NAME = {name!r}\n")
    (folder / "main.tf").write_text(TF_MAIN.format(endpoint=endpoint))
    (folder / "terraform.tfvars.json").write_text(json.dumps({"names": names}))


def terraform_env(env: dict[str, str], *, plugins: Path, home: Path) -> dict[str, str]:
    """Terraform with its provider from the filesystem mirror, no network, no telemetry."""
    config = home / "terraformrc"
    config.write_text('provider_installation {\n  filesystem_mirror {\n'
                      f'    path = "{plugins}"\n    include = ["registry.terraform.io/*/*"]\n'
                      '  }\n}\n')
    return {**env, "TF_CLI_CONFIG_FILE": str(config), "CHECKPOINT_DISABLE": "1",
            "TF_IN_AUTOMATION": "1"}


def terraform_step(*, work: Path, count: int, endpoint: str, env: dict[str, str],
                   proxy: faultproxy.FaultProxy, repeats: int, plugins: Path | None,
                   home: Path) -> Step:
    """`terraform plan` (refresh included, as in CI) of `count` layers it applied itself."""
    step = Step(f"N={count}: terraform plan")
    terraform = shutil.which("terraform")
    if terraform is None or plugins is None or not plugins.is_dir():
        step.note = ("skipped: terraform is not installed" if terraform is None else
                     "skipped: no AWS provider mirror (pass --tf-plugins DIR)")
        return step
    folder = work / f"tf-{count}"
    names = [f"tf{number:03d}" for number in range(count)]
    terraform_dir(folder, endpoint=endpoint, names=names)
    tf_env = terraform_env(env, plugins=plugins, home=home)
    measure([terraform, "init", "-input=false", "-no-color"], cwd=folder, env=tf_env)
    measure([terraform, "apply", "-auto-approve", "-input=false", "-no-color",
             "-parallelism=16"], cwd=folder, env=tf_env)
    for _ in range(repeats):
        step.runs.append(measure([terraform, "plan", "-input=false", "-no-color",
                                  "-detailed-exitcode", "-lock=false"],
                                 cwd=folder, env=tf_env, proxy=proxy))
    if any(run.code != 0 for run in step.runs):
        step.note = "terraform found changes (exit 2)"
    return step


# -------------------------------------------------------------------------------- the real tree

def copy_real_packages(target: Path) -> list[str]:
    """The installed packages of REAL_PACKAGES (without __pycache__), copied under python/,
    then FILLER_PACKAGES until the tree holds TREE_BYTES."""
    found: list[str] = []
    sites = {Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")}
    for package in REAL_PACKAGES + FILLER_PACKAGES:
        if package in FILLER_PACKAGES and found and tree_size(target)[1] >= TREE_BYTES:
            break
        for site in sites:
            if (site / package).is_dir():
                shutil.copytree(site / package, target / "python" / package, symlinks=True,
                                ignore=shutil.ignore_patterns("__pycache__"))
                found.append(package)
                break
    return found


def tree_size(folder: Path) -> tuple[int, int]:
    """Files and bytes under `folder`."""
    files = [path for path in folder.rglob("*") if path.is_file() and not path.is_symlink()]
    return len(files), sum(path.stat().st_size for path in files)


def tree_steps(work: Path, *, env: dict[str, str], proxy: faultproxy.FaultProxy,
               repeats: int) -> tuple[list[Step], dict[str, Any]]:
    """The real tree: plans, applies after a one-file edit, and zip -6 of the same tree."""
    project = work / "tree"
    found = copy_real_packages(project / "layer")
    files, size = tree_size(project / "layer")
    # No runtimes declared: the tree is this interpreter's packages (built for it and this
    # machine's glibc, not a Lambda runtime), so a declared runtime would fail the binary
    # check; with none, every ELF file is still checked (as x86_64), only the glibc
    # and CPython-tag rules have nothing to hold it to.
    (project / "layers.yaml").write_text(
        "version: 1\nregion: us-east-1\nlayers:\n  packages:\n    content: {path: layer}\n")
    settle(project)
    info = {"packages": found, "files": files, "bytes": size}
    setup_apply(project, env)
    cold, warm = timed_plans(project, env=env, proxy=proxy, repeats=repeats, label="tree")
    zip_step = Step("tree: zip -r -X -6")
    edit_warm = Step("tree: apply after a one-file edit, with .reconcile/")
    edit_cold = Step("tree: apply after a one-file edit, without .reconcile/")
    edited = project / "layer" / "python" / "networkx" / "__init__.py"
    if not edited.exists():
        edited = next(path for path in (project / "layer").rglob("*.py"))
    original = edited.read_bytes()
    apply = reconcile("apply", "--yes", "--no-summary")
    # Untimed: the cold plans above removed .reconcile/, so that the first apply "with
    # .reconcile/" would find no earlier zip of the layer to rebuild from (a full build, which
    # the step "without .reconcile/" measures). An apply of an edit puts one back, as the last
    # apply on a runner that keeps .reconcile/ leaves it.
    edited.write_bytes(original + b"\n# bench edit: setup\n")
    measure(apply, cwd=project, env=env)
    zip_binary = shutil.which("zip")
    for number in range(repeats):
        if zip_binary:
            out = work / "tree.zip"
            out.unlink(missing_ok=True)
            zip_step.runs.append(measure([zip_binary, "-q", "-r", "-X", "-6", str(out), "."],
                                         cwd=project / "layer", env=env))
        for step, keep in ((edit_warm, True), (edit_cold, False)):
            if not keep:
                shutil.rmtree(project / ".reconcile", ignore_errors=True)
            edited.write_bytes(original + f"\n# bench edit {number} {keep}\n".encode())
            step.runs.append(measure(apply, cwd=project, env=env, proxy=proxy))
    if not zip_binary:
        zip_step.note = "skipped: zip is not installed"
    return [cold, warm, zip_step, edit_warm, edit_cold], info


# ------------------------------------------------------------------------------------ the table

def judge(steps: dict[str, Step]) -> None:
    """Set each target and whether the median meets it."""
    def ratio_target(step: str, base: str, *, times: float, faster: bool, label: str) -> None:
        if step not in steps or base not in steps or not steps[step].runs \
                or not steps[base].runs:
            return
        ours, theirs = steps[step].median("seconds"), steps[base].median("seconds")
        if faster:
            steps[step].target = f">= {times:g}x faster than {label} ({theirs / ours:.1f}x)"
            steps[step].met = theirs / ours >= times
        else:
            # An apply's target is the client's own time: the wall time less what the server
            # (moto, behind the proxy) spent on its calls, which no client change can remove.
            client = steps[step].median("client_seconds")
            steps[step].target = (f"client's own time <= {times:g}x {label} "
                                  f"({client / theirs:.2f}x; wall {ours / theirs:.2f}x)")
            steps[step].met = client / theirs <= times

    if "N=100: warm plan" in steps:
        step = steps["N=100: warm plan"]
        step.target, step.met = "<= 3 calls", step.median("calls") <= 3
        ratio_target("N=100: warm plan", "N=100: terraform plan", times=20, faster=True,
                     label="terraform plan")
        if "N=100: terraform plan" in steps and steps["N=100: terraform plan"].runs:
            step.target = f"<= 3 calls; {step.target}"
            step.met = step.met and step.median("calls") <= 3
    if "fleet: plan" in steps and steps["fleet: plan"].runs:
        step = steps["fleet: plan"]
        step.target = "<= 3 s, <= 62 calls, no GetLayerVersion"
        step.met = (step.median("seconds") <= 3 and step.median("calls") <= 62
                    and max(run.get_layer_version for run in step.runs) == 0)
    ratio_target("tree: cold plan", "tree: zip -r -X -6", times=5, faster=True, label="zip -6")
    ratio_target("tree: apply after a one-file edit, with .reconcile/", "tree: zip -r -X -6",
                 times=0.3, faster=False, label="zip -6")
    ratio_target("tree: apply after a one-file edit, without .reconcile/",
                 "tree: zip -r -X -6", times=1, faster=False, label="zip -6")
    for name in ("tree: cold plan", "tree: warm plan"):
        if name in steps and steps[name].runs:
            step = steps[name]
            rss = f"peak RSS <= 150 MiB ({step.median('rss_mib'):.0f})"
            step.target = f"{step.target}; {rss}" if step.target else rss
            step.met = (step.met is not False) and step.median("rss_mib") <= 150


def print_table(steps: list[Step]) -> None:
    """Medians, one row a step, the target and met / missed beside it."""
    rows = [["step", "wall s", "server s", "client s", "calls", "peak RSS MiB", "target", ""]]
    for step in steps:
        if not step.runs:
            rows.append([step.name, "-", "-", "-", "-", "-", step.note, ""])
            continue
        verdict = "" if step.met is None else ("met" if step.met else "MISSED")
        rows.append([step.name, f"{step.median('seconds'):.2f}",
                     f"{step.median('server_seconds'):.2f}",
                     f"{step.median('client_seconds'):.2f}",
                     f"{step.median('calls'):.0f}", f"{step.median('rss_mib'):.0f}",
                     step.target or step.note, verdict])
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))


def machine() -> dict[str, Any]:
    """Where the figures come from: CPUs, CPU model, load."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu_model": model, "load_average": os.getloadavg(),
            "python": sys.version.split()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=3, help="samples per timed step")
    parser.add_argument("--sizes", default="10,100,500", help="layer counts of the N rows")
    parser.add_argument("--skip", default="", help="comma list of: sizes,fleet,tree,terraform")
    parser.add_argument("--tf-plugins", type=Path, default=Path("/opt/tf-plugins"),
                        help="a Terraform provider filesystem mirror holding hashicorp/aws")
    arguments = parser.parse_args()
    skip = set(filter(None, arguments.skip.split(",")))
    repeats = arguments.repeats
    start_machine = machine()
    steps: list[Step] = []
    extra: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="reconcile-bench-plan-"))
    home = work / "home"
    home.mkdir()
    (home / "aws-config").write_text("")
    (home / "aws-credentials").write_text("")
    try:
        with moto_server() as moto, faultproxy.running(moto) as proxy:
            env = environment(proxy.url, home)
            for count in ([] if "sizes" in skip else
                          [int(size) for size in arguments.sizes.split(",")]):
                reset(moto)
                project = work / f"n{count}"
                small_project(project, count=count, regions=("us-east-1",))
                setup_apply(project, env)
                steps.extend(timed_plans(project, env=env, proxy=proxy, repeats=repeats,
                                         label=f"N={count}"))
                if "terraform" not in skip:
                    steps.append(terraform_step(
                        work=work, count=count, endpoint=proxy.url, env=env, proxy=proxy,
                        repeats=repeats, plugins=arguments.tf_plugins, home=home))
                print(f"N={count} done", file=sys.stderr)
            if "fleet" not in skip:
                reset(moto)
                project = work / "fleet"
                small_project(project, count=100, regions=FLEET_REGIONS)
                setup_apply(project, env)
                proxy.add(faultproxy.delay_reply(seconds=0.05, times=None))
                fleet = Step("fleet: plan")
                plan = reconcile("plan", "--detailed-exitcode", "--no-summary")
                for _ in range(repeats):
                    fleet.runs.append(measure(plan, cwd=project, env=env, proxy=proxy))
                proxy.clear()
                steps.append(fleet)
                print("fleet done", file=sys.stderr)
            if "tree" not in skip:
                reset(moto)
                tree, extra["tree"] = tree_steps(work, env=env, proxy=proxy, repeats=repeats)
                steps.extend(tree)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    judge({step.name: step for step in steps})
    end_machine = machine()
    print(f"\n{end_machine['cpus']} CPUs ({end_machine['cpu_model']}), load average "
          f"{start_machine['load_average'][0]:.2f} at the start, "
          f"{end_machine['load_average'][0]:.2f} at the end; medians of {repeats} runs")
    if "tree" in extra:
        tree_info = extra["tree"]
        print(f"tree: {', '.join(tree_info['packages'])}: {tree_info['files']} files, "
              f"{tree_info['bytes'] / MIB:.0f} MiB")
    print_table(steps)
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = RESULTS_DIR / f"plan-{stamp}.json"
    path.write_text(json.dumps({"machine_start": start_machine, "machine_end": end_machine,
                                "repeats": repeats, **extra,
                                "steps": [asdict(step) for step in steps]}, indent=2) + "\n")
    print(f"\nresults written to {path}")


if __name__ == "__main__":
    main()
