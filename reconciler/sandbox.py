"""The embedded AWS of `reconcile sandbox`: one detached moto server per folder, on a free
loopback port, recorded under `.reconcile/sandbox/` (pid record, port, log).

Shell: it starts, finds and stops that process and returns values; it never prints (cli does).
It signals only the process it started: a recorded pid counts as the sandbox only while that
pid still has the recorded start time and runs this module, so a reused pid is never killed.
moto (the optional extra `reconcile-layers[sandbox]`) is imported only by the server process.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from reconciler import SANDBOX_INSTALL_HINT, errors

FOLDER_NAME = "sandbox"
PID_FILE = "pid.json"
PORT_FILE = "port"
LOG_FILE = "server.log"
LOCK_FILE = "start.lock"
INSTALL_HINT = SANDBOX_INSTALL_HINT
# What moto's server needs beyond moto itself; the `server` extra of moto brings them.
REQUIRED_MODULES = ("moto", "flask", "flask_cors", "werkzeug")
# moto accepts any credentials; these say plainly that they are not real ones.
FAKE_ACCESS_KEY_ID = "testing"
FAKE_SECRET_ACCESS_KEY = "testing"
SANDBOX_REGION = "us-east-1"
_SERVER_MODULE = "reconciler.sandbox"
_STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
_POLL_SECONDS = 0.05


SandboxError = errors.SandboxError
SandboxUnavailable = errors.SandboxUnavailable


@dataclass(frozen=True)
class Sandbox:
    """A running sandbox server: its process and where it listens."""

    folder: Path
    pid: int
    port: int

    @property
    def endpoint_url(self) -> str:
        """The value for AWS_ENDPOINT_URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """The server's stdout and stderr."""
        return self.folder / LOG_FILE


class StopOutcome(Enum):
    """What `stop` found and did."""

    STOPPED = "stopped"          # the sandbox process was running and has ended
    STALE_REMOVED = "stale"      # a record named a process that is gone or is another one
    NOT_RUNNING = "not_running"  # there was no record


@dataclass(frozen=True)
class StopResult:
    """The outcome of `stop`, and the pid the record named (None without a record)."""

    outcome: StopOutcome
    pid: int | None


@dataclass(frozen=True)
class StartResult:
    """The running sandbox, and whether it was already running before `start`."""

    sandbox: Sandbox
    already_running: bool


@dataclass(frozen=True)
class _Record:
    """What the pid file holds: the pid and the start time that identify the process."""

    pid: int
    process_start: str


def folder_under(cache_dir: Path) -> Path:
    """The sandbox folder inside a workspace's `.reconcile/` cache folder."""
    return cache_dir / FOLDER_NAME


def missing_requirements() -> list[str]:
    """The modules moto's server needs that cannot be imported here (empty when it can run)."""
    missing = []
    for name in REQUIRED_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def environment(sandbox: Sandbox) -> dict[str, str]:
    """The variables that point boto3 (and so reconcile) at the sandbox, in export order."""
    return {
        "AWS_ENDPOINT_URL": sandbox.endpoint_url,
        "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY,
        "AWS_REGION": SANDBOX_REGION,
        # botocore (boto3's clients, the AWS CLI before v2) reads only this one: without it
        # they raise NoRegionError in the shell that eval'd the exports.
        "AWS_DEFAULT_REGION": SANDBOX_REGION,
    }


def status(folder: Path) -> Sandbox | None:
    """The sandbox recorded in `folder` when its process is running and answers, else None.

    A stale record is left in place (`stop` removes it): status only looks.
    """
    record = _read_record(folder)
    if record is None or not _is_recorded_process(record):
        return None
    port = _read_port(folder)
    if port is None:
        return None
    sandbox = Sandbox(folder=folder, pid=record.pid, port=port)
    return sandbox if _answers(sandbox.endpoint_url) else None


def stale_pid(folder: Path) -> int | None:
    """The pid of a record whose process is gone or is not the sandbox any more."""
    record = _read_record(folder)
    if record is None or _is_recorded_process(record):
        return None
    return record.pid


def start(folder: Path, *, timeout_seconds: float = 60.0) -> StartResult:
    """Start a detached moto server recorded in `folder`, or find the one already running.

    Returns once the server answers HTTP. Raises SandboxUnavailable without moto's server,
    SandboxError when the process exits or stays silent (the log's last lines say why).
    """
    if not hasattr(os, "posix_spawn"):
        raise SandboxError("the sandbox needs a POSIX system (Linux, macOS)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = (folder / LOCK_FILE).open("a")
    except OSError as exc:
        raise SandboxError(f"cannot create {folder}: {exc.strerror}") from None
    with lock:
        # Two starts at once would each spawn a server; the second waits here and then
        # finds the first one running. The kernel drops the lock if this process dies.
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _start_locked(folder, timeout_seconds=timeout_seconds)


def _start_locked(folder: Path, *, timeout_seconds: float) -> StartResult:
    running = status(folder)
    if running is not None:
        return StartResult(sandbox=running, already_running=True)
    missing = missing_requirements()
    if missing:
        raise SandboxUnavailable(
            f"the sandbox needs moto's server, which is not installed (missing: "
            f"{', '.join(missing)})", hint=f"install the optional extra: {INSTALL_HINT}")
    record = _read_record(folder)
    if record is not None and _is_recorded_process(record):
        raise SandboxError(
            f"a sandbox process (pid {record.pid}) is recorded in {folder} but does not answer",
            hint="stop it with `reconcile sandbox stop`, then start again")
    _remove(folder / PID_FILE, folder / PORT_FILE)
    pid = _spawn_server(folder)
    process_start = _process_start(pid)
    if process_start is None:  # it died before it could be looked at
        _reap(pid)
        raise SandboxError("the sandbox server exited at once", hint=_log_hint(folder))
    _write_atomic(folder / PID_FILE,
                  json.dumps({"pid": pid, "process_start": process_start}) + "\n")
    return StartResult(sandbox=_wait_until_answering(folder, pid=pid,
                                                     timeout_seconds=timeout_seconds),
                       already_running=False)


def stop(folder: Path, *, timeout_seconds: float = 10.0) -> StopResult:
    """End the sandbox process recorded in `folder`, and only that one; remove its record.

    A record whose pid is gone, or now names another process, is removed and nothing is
    signalled. A server that ignores SIGTERM for `timeout_seconds` gets SIGKILL.
    """
    record = _read_record(folder)
    if record is None:
        _remove(folder / PORT_FILE)
        return StopResult(outcome=StopOutcome.NOT_RUNNING, pid=None)
    if not _is_recorded_process(record):
        _remove(folder / PID_FILE, folder / PORT_FILE)
        return StopResult(outcome=StopOutcome.STALE_REMOVED, pid=record.pid)
    _signal(record.pid, signal.SIGTERM)
    if not _wait_gone(record, timeout_seconds=timeout_seconds):
        _signal(record.pid, signal.SIGKILL)
        if not _wait_gone(record, timeout_seconds=timeout_seconds):
            raise SandboxError(f"the sandbox server (pid {record.pid}) does not exit",
                               hint=f"its record stays in {folder}; end it by hand")
    _remove(folder / PID_FILE, folder / PORT_FILE)
    return StopResult(outcome=StopOutcome.STOPPED, pid=record.pid)


def serve(folder: Path) -> int:
    """The server process: run moto on a free loopback port, write the port, wait for a signal.

    The port is chosen by the kernel here and reported through the port file, so that no
    other process can take it between choosing and binding.
    """
    # Blocked before moto's threads start, so that they inherit the mask and only sigwait
    # below sees the stop signals.
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    folder = folder.resolve()
    os.chdir(folder)  # hold no other folder busy while it runs
    from moto.server import ThreadedMotoServer  # the optional extra: only this process needs it

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    _write_atomic(folder / PORT_FILE, f"{port}\n")
    signal.sigwait(_STOP_SIGNALS)
    server.stop()
    return 0


def _spawn_server(folder: Path) -> int:
    """Start `python -m reconciler.sandbox FOLDER` in a new session, its output in the log.

    posix_spawn rather than subprocess.Popen: the server outlives this process, and a Popen
    object would warn at exit that its child still runs. stdin is /dev/null and stdout and
    stderr go to the log, so `$(reconcile sandbox start)` does not wait for the server.
    """
    log_path = folder / LOG_FILE
    try:
        return os.posix_spawn(
            sys.executable,
            [sys.executable, "-m", _SERVER_MODULE, str(folder)],
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(log_path),
                 os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),  # one log per start
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,
        )
    except OSError as exc:
        raise SandboxError(f"cannot start the sandbox server: {exc.strerror}") from None


def _wait_until_answering(folder: Path, *, pid: int, timeout_seconds: float) -> Sandbox:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if _reap(pid):
            _remove(folder / PID_FILE, folder / PORT_FILE)
            raise SandboxError("the sandbox server exited before it answered",
                               hint=_log_hint(folder))
        port = _read_port(folder)
        if port is not None:
            sandbox = Sandbox(folder=folder, pid=pid, port=port)
            if _answers(sandbox.endpoint_url):
                return sandbox
        time.sleep(_POLL_SECONDS)
    _signal(pid, signal.SIGKILL)
    _reap(pid, block=True)
    _remove(folder / PID_FILE, folder / PORT_FILE)
    raise SandboxError(f"the sandbox server did not answer within {timeout_seconds:g} s",
                       hint=_log_hint(folder))


def _reap(pid: int, *, block: bool = False) -> bool:
    """Whether our child `pid` has exited (collecting it, so that it leaves no zombie)."""
    try:
        done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid


def _log_hint(folder: Path) -> str:
    log_path = folder / LOG_FILE
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    tail = "\n  ".join(lines[-5:])
    return f"see {log_path}" + (f"; it ends with:\n  {tail}" if tail else "")


def _answers(endpoint_url: str) -> bool:
    """Whether an HTTP server answers at the URL (any status counts as an answer)."""
    try:
        with urllib.request.urlopen(f"{endpoint_url}/moto-api/", timeout=2) as response:
            response.read()
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
    return True


def _read_record(folder: Path) -> _Record | None:
    try:
        document = json.loads((folder / PID_FILE).read_text(encoding="utf-8"))
        record = _Record(pid=int(document["pid"]), process_start=str(document["process_start"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if record.pid > 0 else None


def _read_port(folder: Path) -> int | None:
    try:
        port = int((folder / PORT_FILE).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    return port if 0 < port < 65536 else None


def _is_recorded_process(record: _Record) -> bool:
    """Whether the pid still names the process that was recorded: same start time, still
    running this module (a pid reused by another process fails both)."""
    return (_process_start(record.pid) == record.process_start
            and _SERVER_MODULE in _process_command(record.pid))


def _process_start(pid: int) -> str | None:
    """The start time of a live (non-zombie) process, as the kernel reports it, or None."""
    proc_stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            text = proc_stat.read_text(encoding="ascii", errors="replace")
        except OSError:
            return None
        # The command name (field 2) may hold spaces and parentheses: split after its end.
        fields = text[text.rfind(")") + 2:].split()
        state, start_ticks = fields[0], fields[19]
        return None if state in {"Z", "X"} else start_ticks
    output = _ps(pid, "stat=,lstart=")
    if not output or output.startswith("Z"):
        return None
    return output.split(None, 1)[1] if " " in output else None


def _process_command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return _ps(pid, "command=") or ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _ps(pid: int, columns: str) -> str | None:
    """`ps` where there is no /proc (macOS): one column set of one process, or None."""
    try:
        result = subprocess.run(["ps", "-o", columns, "-p", str(pid)], capture_output=True,
                                text=True, check=False, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    output = result.stdout.strip()
    return output if result.returncode == 0 and output else None


def _wait_gone(record: _Record, *, timeout_seconds: float) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while _is_recorded_process(record):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)
    return True


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _remove(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1])))
