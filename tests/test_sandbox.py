"""`reconcile sandbox start|status|stop`: the installed CLI, run as a subprocess, starting a real
detached moto server, publishing to it, and ending it (and nothing else); what no process
shows (a second start, where the files go, stale records, a missing folder) runs in process.

Every test that starts a server stops it in the `sandboxes` fixture's teardown, even when the
test fails. Processes are identified by pid and /proc start time, as the sandbox does.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import clirun
import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(),
                                reason="these tests read processes from /proc")

RECONCILE = shutil.which("reconcile", path=str(Path(sys.executable).parent))
MANIFEST = """\
version: 1
region: us-east-1
layers:
  alpha:
    compatible_runtimes: [python3.12]
    content: {path: src/alpha, prefix: python}
"""


def run(cwd: Path, *args: str, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI; a user-facing error never shows a traceback."""
    assert RECONCILE, "the reconcile console script is not installed next to this Python"
    result = subprocess.run([RECONCILE, *args], cwd=cwd, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, env=env or isolated_env(),
                            timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def invoke(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in this process, in the isolated environment. A server it starts is this
    process's child: once stopped it is a zombie until `reap` collects it (the CLI counts a
    zombie as gone, as it must for a server whose starter is still running)."""
    return clirun.invoke(cwd, *args, env=isolated_env())


def reap(pid: int, *, timeout: float = 10.0) -> None:
    """Collect `pid` if it is a child of this process (a server `invoke` started) once it has
    exited, waiting up to `timeout` seconds for that; at once if it is not a child."""
    deadline = time.monotonic() + timeout
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(pid, os.WNOHANG) == (0, 0) and time.monotonic() < deadline:
            time.sleep(0.02)


def isolated_env() -> dict[str, str]:
    """The environment without the developer's AWS settings (no profile, files, metadata)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
               AWS_EC2_METADATA_DISABLED="true")
    return env


def exports_of(stdout: str) -> dict[str, str]:
    """The variables of the `export NAME=VALUE ...` lines that `sandbox start` prints."""
    variables: dict[str, str] = {}
    for line in stdout.splitlines():
        words = shlex.split(line)
        assert words and words[0] == "export", f"not an export line: {line!r}"
        for word in words[1:]:
            name, _, value = word.partition("=")
            variables[name] = value
    return variables


def process_start(pid: int) -> str | None:
    """The /proc start time of a live (non-zombie) process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    return None if fields[0] in {"Z", "X"} else fields[19]


def alive(pid: int, start: str) -> bool:
    """Whether the process with this pid and start time still runs."""
    return process_start(pid) == start


def gone(pid: int, start: str, *, timeout: float = 10.0) -> bool:
    """Whether the process ends within `timeout` seconds. A stopped server is gone for the
    CLI once its command line is empty, which happens while the kernel is still ending it;
    /proc shows it running (not a zombie) for a moment longer."""
    deadline = time.monotonic() + timeout
    while alive(pid, start):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def recorded(folder: Path) -> tuple[int, str]:
    """(pid, start time) of the sandbox recorded beside the manifest in `folder`."""
    record = json.loads((folder / ".reconcile" / "sandbox" / "pid.json").read_text())
    pid = int(record["pid"])
    start = process_start(pid)
    assert start is not None, f"the recorded sandbox pid {pid} is not running"
    return pid, start


def project(folder: Path) -> Path:
    """A manifest with one folder layer in `folder`; returns the manifest's path."""
    content = folder / "src" / "alpha"
    content.mkdir(parents=True)
    (content / "util.py").write_text("VALUE = 1\n")
    manifest = folder / "layers.yaml"
    manifest.write_text(MANIFEST)
    return manifest


class Starter(Protocol):
    """The `sandboxes` fixture's start function."""

    def __call__(self, folder: Path, *, process: bool = False
                 ) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture
def sandboxes() -> Iterator[Starter]:
    """`start(folder)` runs `reconcile sandbox start` there, in this process, or with
    `process=True` as the installed console script (where the server must outlive its
    starter); teardown stops every server started, by the CLI and then, should that fail, by
    its recorded pid."""
    started: list[tuple[Path, int, str]] = []

    def start(folder: Path, *, process: bool = False) -> subprocess.CompletedProcess[str]:
        result = (run if process else invoke)(folder, "sandbox", "start")
        if result.returncode == 0:
            started.append((folder, *recorded(folder)))
        return result

    yield start
    for folder, pid, start_time in started:
        invoke(folder, "sandbox", "stop")
        reap(pid)
        if not gone(pid, start_time):
            os.kill(pid, signal.SIGKILL)
            reap(pid)


def test_start_apply_status_stop_leaves_no_process(
        tmp_path: Path, sandboxes: Starter) -> None:
    """A started sandbox serves plan and apply through its printed exports; status reports it;
    stop ends exactly that process and removes its record."""
    project(tmp_path)
    started = sandboxes(tmp_path, process=True)
    assert started.returncode == 0, started.stderr
    variables = exports_of(started.stdout)
    assert variables["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert variables["AWS_REGION"] == "us-east-1"
    assert variables["AWS_DEFAULT_REGION"] == "us-east-1"
    assert variables["AWS_ACCESS_KEY_ID"] and variables["AWS_SECRET_ACCESS_KEY"]
    pid, start_time = recorded(tmp_path)
    env = {**isolated_env(), **variables}

    planned = run(tmp_path, "plan", "--detailed-exitcode", env=env)
    assert planned.returncode == 2, planned.stderr
    applied = run(tmp_path, "apply", "--yes", env=env)
    assert applied.returncode == 0, applied.stderr
    assert "published alpha (us-east-1)" in applied.stdout
    clean = run(tmp_path, "plan", "--detailed-exitcode", env=env)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    status = run(tmp_path, "sandbox", "status")
    assert status.returncode == 0, status.stderr
    assert f"pid {pid}" in status.stdout
    assert variables["AWS_ENDPOINT_URL"] in status.stdout

    stopped = run(tmp_path, "sandbox", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped (pid {pid})" in stopped.stdout
    assert gone(pid, start_time)
    assert not (tmp_path / ".reconcile" / "sandbox" / "pid.json").exists()
    after = run(tmp_path, "sandbox", "status")
    assert after.returncode == 1
    assert "not running" in after.stderr


def test_eval_of_start_works_in_a_shell(tmp_path: Path) -> None:
    """`eval "$(reconcile sandbox start)"` returns (the server holds no pipe of the shell) and
    sets up the shell so that plan reaches the sandbox, and a boto3 client made in that shell
    finds its region (botocore reads AWS_DEFAULT_REGION, not AWS_REGION)."""
    project(tmp_path)
    script = ('set -e; eval "$("$RECONCILE" sandbox start)"; '
              '"$RECONCILE" plan; echo "endpoint=$AWS_ENDPOINT_URL"; '
              '"$PYTHON" -c "import boto3; print(\'client region=\' + '
              'boto3.client(\'lambda\').meta.region_name)"')
    try:
        result = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True,
                                text=True, stdin=subprocess.DEVNULL, timeout=120,
                                env={**isolated_env(), "RECONCILE": str(RECONCILE),
                                     "PYTHON": sys.executable})
    finally:
        # The shell started the server, so this test stops it (and only it) itself.
        if (tmp_path / ".reconcile" / "sandbox" / "pid.json").exists():
            pid, start_time = recorded(tmp_path)
            run(tmp_path, "sandbox", "stop")
            if not gone(pid, start_time):
                os.kill(pid, signal.SIGKILL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alpha" in result.stdout
    assert "endpoint=http://127.0.0.1:" in result.stdout
    assert "client region=us-east-1" in result.stdout


def test_start_when_running_reports_the_same_server(
        tmp_path: Path, sandboxes: Starter) -> None:
    """A second start says the sandbox is already running, prints the same exports, exit 0,
    and starts no second server."""
    first = sandboxes(tmp_path)
    assert first.returncode == 0, first.stderr
    pid, _ = recorded(tmp_path)
    second = invoke(tmp_path, "sandbox", "start")
    assert second.returncode == 0, second.stderr
    assert "already running" in second.stderr
    assert second.stdout == first.stdout
    assert recorded(tmp_path)[0] == pid


def test_concurrent_starts_share_one_server(
        tmp_path: Path, sandboxes: Starter) -> None:
    """Two starts at the same time end with one server: both print the same endpoint."""
    assert RECONCILE
    racers = [subprocess.Popen([RECONCILE, "sandbox", "start"], cwd=tmp_path, text=True,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=isolated_env())
              for _ in range(2)]
    outputs = [racer.communicate(timeout=120) for racer in racers]
    # Registered with the fixture (a start of a running sandbox), so teardown stops it.
    third = sandboxes(tmp_path)
    assert [racer.returncode for racer in racers] == [0, 0], outputs
    assert outputs[0][0] == outputs[1][0] == third.stdout
    assert sorted("already running" in stderr for _, stderr in outputs) == [False, True]


def test_sandbox_lives_beside_the_manifest(
        tmp_path: Path, sandboxes: Starter) -> None:
    """With -f, the pid, port and log are under `.reconcile/sandbox/` in the manifest's folder,
    not the working directory."""
    manifest = project(tmp_path / "repo")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = invoke(elsewhere, "sandbox", "start", "-f", str(manifest))
    try:
        assert result.returncode == 0, result.stderr
        folder = manifest.parent / ".reconcile" / "sandbox"
        assert sorted(path.name for path in folder.iterdir()) == [
            "pid.json", "port", "server.log", "start.lock"]
        assert not (elsewhere / ".reconcile").exists()
        port = (folder / "port").read_text().strip()
        assert exports_of(result.stdout)["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{port}"
    finally:
        pid, start_time = recorded(manifest.parent)
        stopped = invoke(elsewhere, "sandbox", "stop", "-f", str(manifest))
        assert f"stopped (pid {pid})" in stopped.stdout, stopped.stdout + stopped.stderr
        reap(pid)
        assert gone(pid, start_time)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not a sandbox (its pid goes into forged records)."""
    process = subprocess.Popen(["sleep", "300"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def write_record(folder: Path, *, pid: int, process_start: str) -> Path:
    """Forge a sandbox record in `folder`; returns the pid file's path."""
    sandbox_folder = folder / ".reconcile" / "sandbox"
    sandbox_folder.mkdir(parents=True)
    (sandbox_folder / "port").write_text("1\n")
    pid_file = sandbox_folder / "pid.json"
    pid_file.write_text(json.dumps({"pid": pid, "process_start": process_start}))
    return pid_file


def test_stop_with_a_reused_pid_kills_nothing(
        tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    """A record whose pid now names another process (other start time) is removed, and that
    process is not signalled."""
    pid_file = write_record(tmp_path, pid=sleeper.pid, process_start="1")
    result = invoke(tmp_path, "sandbox", "stop")
    assert result.returncode == 0, result.stderr
    assert f"stale record of pid {sleeper.pid}" in result.stdout
    assert sleeper.poll() is None, "stop signalled a process it did not start"
    assert not pid_file.exists()


def test_stop_spares_a_process_with_the_recorded_start_but_another_command(
        tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    """Even with a matching pid and start time, a process that is not the sandbox server is
    left alone (the command line is checked too)."""
    start_time = process_start(sleeper.pid)
    assert start_time is not None
    write_record(tmp_path, pid=sleeper.pid, process_start=start_time)
    status = invoke(tmp_path, "sandbox", "status")
    assert status.returncode == 1
    assert f"stale record names pid {sleeper.pid}" in status.stderr
    result = invoke(tmp_path, "sandbox", "stop")
    assert result.returncode == 0, result.stderr
    assert "stale record" in result.stdout
    assert sleeper.poll() is None, "stop signalled a process it did not start"


def test_stop_with_a_dead_pid_removes_the_record(tmp_path: Path) -> None:
    """A record naming a process that has exited is removed; stop exits 0."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    pid_file = write_record(tmp_path, pid=gone.pid, process_start="1")
    result = invoke(tmp_path, "sandbox", "stop")
    assert result.returncode == 0, result.stderr
    assert not pid_file.exists()
    assert not (pid_file.parent / "port").exists()


def test_status_and_stop_without_a_sandbox(tmp_path: Path) -> None:
    """Without a record, status exits 1 saying it is not running, and stop exits 0 saying so."""
    status = invoke(tmp_path, "sandbox", "status")
    assert status.returncode == 1
    assert "sandbox not running" in status.stderr
    stop = invoke(tmp_path, "sandbox", "stop")
    assert stop.returncode == 0
    assert stop.stdout.strip() == "sandbox not running."


def test_start_without_moto_says_how_to_install_it(tmp_path: Path) -> None:
    """Where moto cannot be imported, start exits 1 with the pip command, no traceback, and
    starts nothing."""
    program = ("import sys\n"
               "sys.modules['moto'] = None  # what an environment without moto looks like\n"
               "from reconciler import cli\n"
               "cli.main(['sandbox', 'start'])\n")
    result = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, timeout=120,
                            env=isolated_env())
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "pip install 'reconcile-layers[sandbox]'" in result.stderr
    assert not (tmp_path / ".reconcile" / "sandbox" / "pid.json").exists()


def test_start_in_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    """A manifest path whose folder does not exist is one clear error, exit 1."""
    result = invoke(tmp_path, "sandbox", "start", "-f", str(tmp_path / "nowhere" / "layers.yaml"))
    assert result.returncode == 1
    assert "no such folder" in result.stderr
