"""Issue 7's promises, end to end: the installed `reconcile` CLI against a real moto server
(a real subprocess for every run that is held, signalled or killed; in process otherwise),
with the fault proxy in front of it to hold a call at an exact point and a kill point
(tests/killhook) for the instants no proxy can reach. Killed, signalled, raced, refused and
failed applies each leave a state that parses, no temp file to be packaged, no held lock,
and a rerun that publishes nothing twice and loses no record."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import boto3
import faultproxy
import pytest
from clirun import RECONCILE, invoke

from reconciler import statefile

REGION = "us-east-1"
PUBLISH = "PublishLayerVersion"
LIST = "ListLayerVersions"
BUCKET = "team-state"
KILLHOOK = Path(__file__).parent / "killhook"
# The `path: .` layer sorts first, so that it is published (and recorded) before any kill
# point of the other layers: leftovers of a killed run must not make it republish.
LAYERS = ("dot", "x", "y", "z")


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_process_outlives_its_test() -> Iterator[None]:
    """A test that failed half way must not leave a `reconcile` process behind: it could
    talk to a later test's proxy (a port is soon reused) and publish into its moto server."""
    yield
    while Cli.running:
        process = Cli.running.pop()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=60)


def make_checkout(folder: Path, *, state: str | None = None,
                  layers: tuple[str, ...] = LAYERS) -> Path:
    """A checkout: one folder layer per name (`dot` is `path: .`), optionally S3 state."""
    folder.mkdir(parents=True)
    lines = ["version: 1", f"region: {REGION}"]
    if state:
        lines.append(f"state: {state}")
    lines.append("layers:")
    for name in layers:
        if name == "dot":
            lines += [f"  {name}:", "    content: {path: .}"]
            continue
        source = folder / "src" / name
        source.mkdir(parents=True)
        (source / f"{name}.py").write_text(f"NAME = {name!r}\n")
        lines += [f"  {name}:", f"    content: {{path: src/{name}, prefix: python}}"]
    (folder / "layers.yaml").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def checkout(tmp_path: Path, proxy: faultproxy.FaultProxy) -> Path:
    """A four-layer checkout (one of them `path: .`) with local state."""
    return make_checkout(tmp_path / "repo")


class Cli:
    """One `reconcile` process, its output in files outside every checkout."""

    count = 0
    running: ClassVar[list[subprocess.Popen[bytes]]] = []

    def __init__(self, cwd: Path, *args: str, kill_at: str | None = None) -> None:
        assert RECONCILE, "the reconcile console script is not installed next to this Python"
        Cli.count += 1
        logs = cwd.parent / "logs"
        logs.mkdir(exist_ok=True)
        self._out = logs / f"{Cli.count}.out"
        self._err = logs / f"{Cli.count}.err"
        env = dict(os.environ)
        if kill_at:
            env["PYTHONPATH"] = str(KILLHOOK)
            env["RECONCILE_TEST_KILL_AT"] = kill_at
        with self._out.open("w") as out, self._err.open("w") as err:
            self.process = subprocess.Popen([RECONCILE, *args], cwd=cwd,
                                            stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                            env=env)
        Cli.running.append(self.process)

    @property
    def stdout(self) -> str:
        """What it printed on stdout so far."""
        return self._out.read_text()

    @property
    def stderr(self) -> str:
        """What it printed on stderr so far."""
        return self._err.read_text()

    def wait(self) -> int:
        """Its exit status (negative: the signal that ended it); never a traceback."""
        code = self.process.wait(timeout=120)
        assert "Traceback" not in self.stderr, self.stderr
        return code

    def wait_for_stderr(self, text: str) -> None:
        """Block until `text` appears on its stderr (it must still be running meanwhile)."""
        for _ in range(6000):
            ended = self.process.poll() is not None  # before the read: nothing is missed
            if text in self.stderr:
                return
            assert not ended, self.stderr
            time.sleep(0.01)
        raise AssertionError(f"{text!r} never appeared: {self.stderr}")

    def kill(self) -> None:
        """SIGKILL it and reap it."""
        self.process.send_signal(signal.SIGKILL)
        assert self.wait() == -signal.SIGKILL


@dataclass(frozen=True)
class Finished:
    """A finished `reconcile` run, made in this process (no signal or kill meets it)."""

    process: subprocess.CompletedProcess[str]

    @property
    def stdout(self) -> str:
        """What it printed on stdout."""
        return self.process.stdout

    @property
    def stderr(self) -> str:
        """What it printed on stderr."""
        return self.process.stderr


def run(cwd: Path, *args: str) -> Finished:
    """A finished `reconcile` run (in process: clirun.invoke)."""
    return Finished(invoke(cwd, *args))


def apply(cwd: Path, *args: str, kill_at: str | None = None) -> Cli:
    """`reconcile apply --yes --parallelism 1` started (one change at a time: each kill point
    is then one exact place in the order dot, x, y, z)."""
    return Cli(cwd, "apply", "--yes", "--parallelism", "1", *args, kill_at=kill_at)


def started_and_held(proxy: faultproxy.FaultProxy, start: Callable[[], Cli],
                     **hold: Any) -> tuple[Cli, faultproxy.Hold]:
    """Hold the first call matching `hold` at the proxy, start a run, and return it once
    that call has arrived (the run is then stopped at that exact point)."""
    rule = faultproxy.hold(**hold)
    proxy.add(rule)
    started = start()
    assert isinstance(rule.action, faultproxy.Hold)
    rule.action.wait_arrived()
    return started, rule.action


def moto_versions(moto_url: str, layer: str) -> list[int]:
    """The versions moto holds for `layer`, asked directly (not through the proxy)."""
    client = boto3.client("lambda", region_name=REGION, endpoint_url=moto_url)
    try:
        listed = client.list_layer_versions(LayerName=layer)["LayerVersions"]
    except client.exceptions.ResourceNotFoundException:
        return []
    return sorted(item["Version"] for item in listed)


def recorded(checkout: Path) -> dict[str, int]:
    """layer -> recorded version, from the lockfile (which must parse); {} without one."""
    path = checkout / "layers.lock.json"
    if not path.exists():
        return {}
    text = path.read_text()
    lock = statefile.decode(text, file=str(path))  # parses, and is the tool's own format
    return {layer: entry.version for (layer, region), entry in lock.entries.items()
            if region == REGION}


def temp_files(checkout: Path) -> list[str]:
    """Every temp file under the checkout, `.reconcile/` included."""
    return sorted(str(path.relative_to(checkout)) for path in checkout.rglob("*.tmp"))


def assert_clean(checkout: Path) -> None:
    """No temp file and no held lock file left in the checkout."""
    assert temp_files(checkout) == []
    assert not (checkout / ".layers.lock.json.lock").exists()


def assert_converged(checkout: Path, moto_url: str, *,
                     layers: tuple[str, ...] = LAYERS) -> None:
    """Each layer has exactly one version, recorded, and the next plan has nothing to do."""
    assert {layer: moto_versions(moto_url, layer) for layer in layers} == {
        layer: [1] for layer in layers}
    assert recorded(checkout) == dict.fromkeys(layers, 1)
    again = run(checkout, "plan", "--detailed-exitcode")
    assert again.process.returncode == 0, again.stdout + again.stderr
    assert "No changes." in again.stdout


def rerun_converges(checkout: Path, proxy: faultproxy.FaultProxy, moto_url: str, *,
                    missing: int) -> None:
    """A plain rerun succeeds, sends exactly `missing` publishes, and leaves all converged
    and clean."""
    proxy.clear()
    rerun = run(checkout, "apply", "--yes")
    assert rerun.process.returncode == 0, rerun.stderr
    assert proxy.count(operation=PUBLISH) == missing
    assert_converged(checkout, moto_url)
    assert_clean(checkout)


# --- 1. SIGKILL at five points ---------------------------------------------------------------


def test_sigkill_during_packaging(checkout: Path, proxy: faultproxy.FaultProxy,
                                  moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed the instant a zip is complete but not yet renamed (under the lock, before any
    publish): the leftover zip temp (in `.reconcile/build/`, or in the wheel cache's
    `prebuild/` where the run's worker wrote it ahead) and the lock are cleaned by the rerun,
    which publishes each layer once."""
    prebuilds = checkout.parent / "wheel-cache" / "prebuild"
    monkeypatch.setenv("RECONCILE_CACHE_DIR", str(prebuilds.parent))
    killed = apply(checkout, kill_at="os.rename|*.zip.tmp|1")
    assert killed.wait() == -signal.SIGKILL
    # A fresh checkout: the worker wrote the zips ahead outside it, and the run was killed
    # moving the first into place.
    assert list(prebuilds.glob("*.zip.tmp"))
    assert list((checkout / ".reconcile" / "build").glob("*.zip.tmp")) == []
    assert recorded(checkout) == {}
    assert proxy.count(operation=PUBLISH) == 0

    rerun_converges(checkout, proxy, moto_url, missing=4)
    assert list(prebuilds.glob("*")) == []


def test_sigkill_while_saving_the_stat_cache(checkout: Path, proxy: faultproxy.FaultProxy,
                                            moto_url: str) -> None:
    """Killed the instant the stat cache's new copy is written but not yet renamed: the temp
    file under .reconcile/ is removed by the rerun, which publishes each layer once."""
    killed = apply(checkout, kill_at="os.rename|*/.reconcile/cache.json|1")
    assert killed.wait() == -signal.SIGKILL
    assert list((checkout / ".reconcile").glob(".cache.json.*.tmp"))

    rerun_converges(checkout, proxy, moto_url, missing=4)


def test_sigkill_right_after_a_publish_before_its_record(
        checkout: Path, proxy: faultproxy.FaultProxy, moto_url: str) -> None:
    """Killed while Lambda has made x's version but its reply is held: x is not recorded;
    the rerun adopts it (no second publish of x) and publishes only y and z."""
    killed, _held = started_and_held(proxy, lambda: apply(checkout),
                                    forward=True, operation=PUBLISH, key="x")
    killed.kill()
    assert moto_versions(moto_url, "x") == [1]
    assert recorded(checkout) == {"dot": 1}

    rerun_converges(checkout, proxy, moto_url, missing=2)


def test_sigkill_at_the_lockfile_rename(checkout: Path, proxy: faultproxy.FaultProxy,
                                        moto_url: str) -> None:
    """Killed between writing the new lockfile and renaming it over the old (x's record):
    the lockfile is the old one, the temp file beside it is never packaged (the `path: .`
    layer stays unchanged, even to a plan that runs before any cleanup), and the rerun
    removes it, adopts x and publishes y and z."""
    killed = apply(checkout, kill_at="os.rename|*/layers.lock.json|2")
    assert killed.wait() == -signal.SIGKILL
    assert recorded(checkout) == {"dot": 1}
    assert [name for name in temp_files(checkout) if name.startswith(".layers.lock.json.")]
    assert moto_versions(moto_url, "x") == [1]

    planned = run(checkout, "plan", "--format", "json")
    assert planned.process.returncode == 0, planned.stderr
    actions = {change["layer"]: change["action"]
               for change in json.loads(planned.stdout)["changes"]}
    assert actions["dot"] == "noop"

    rerun_converges(checkout, proxy, moto_url, missing=2)


def test_sigkill_while_taking_the_lock(checkout: Path, proxy: faultproxy.FaultProxy,
                                       moto_url: str) -> None:
    """Killed between writing its lock record and linking it into place: the record's temp
    file is removed by the next run, which takes the lock and publishes each layer once."""
    killed = apply(checkout, kill_at="os.link|*/.layers.lock.json.lock|1")
    assert killed.wait() == -signal.SIGKILL
    assert temp_files(checkout)
    assert proxy.count() == 0

    rerun_converges(checkout, proxy, moto_url, missing=4)


def test_sigkill_between_layers(checkout: Path, proxy: faultproxy.FaultProxy,
                                moto_url: str) -> None:
    """Killed after dot and x are recorded, with y's publish not yet sent (held before
    Lambda sees it): the lock left by the dead run is taken over, and the rerun publishes
    only y and z."""
    killed, _held = started_and_held(proxy, lambda: apply(checkout),
                                    forward=False, operation=PUBLISH, key="y")
    killed.kill()
    assert recorded(checkout) == {"dot": 1, "x": 1}
    assert (checkout / ".layers.lock.json.lock").exists()  # a dead run's: taken over
    assert moto_versions(moto_url, "y") == []

    rerun_converges(checkout, proxy, moto_url, missing=2)


# --- 2. SIGTERM and SIGINT during apply ------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_apply_stops_at_a_safe_point(
        checkout: Path, proxy: faultproxy.FaultProxy, moto_url: str,
        signum: signal.Signals) -> None:
    """A signal while x's publish is in flight: x is awaited and recorded, no later publish
    starts, exit 1 (interrupted), the lock is released and no temp file is left."""
    applying, held = started_and_held(proxy, lambda: apply(checkout),
                                    forward=True, operation=PUBLISH, key="x")
    applying.process.send_signal(signum)
    applying.wait_for_stderr("stopping at the next safe point")
    held.release()

    assert applying.wait() == 1
    assert "interrupted" in applying.stderr
    assert recorded(checkout) == {"dot": 1, "x": 1}
    assert proxy.count(operation=PUBLISH) == 2
    assert_clean(checkout)

    rerun_converges(checkout, proxy, moto_url, missing=2)


def test_a_second_ctrl_c_stops_at_once_and_the_rerun_adopts(
        checkout: Path, proxy: faultproxy.FaultProxy, moto_url: str) -> None:
    """Ctrl-C twice while x's publish is in flight: exit 1 without recording x, saying so
    (never that everything finished is recorded), the lock released; the rerun adopts x."""
    applying, held = started_and_held(proxy, lambda: apply(checkout),
                                    forward=True, operation=PUBLISH, key="x")
    applying.process.send_signal(signal.SIGINT)
    applying.wait_for_stderr("stopping at the next safe point")
    applying.process.send_signal(signal.SIGINT)
    applying.wait_for_stderr("stopping at once")
    held.release()

    assert applying.wait() == 1
    assert "may have made a version that is not recorded" in applying.stderr
    assert recorded(checkout) == {"dot": 1}
    assert moto_versions(moto_url, "x") == [1]
    assert_clean(checkout)

    rerun_converges(checkout, proxy, moto_url, missing=2)


# --- 3. two applies at once on one checkout --------------------------------------------------


def lock_id_in(stderr: str) -> str:
    """The lock id a refusal names (and offers to force-unlock)."""
    found = re.search(r"reconcile force-unlock (\S+)", stderr)
    assert found, stderr
    return found.group(1)


def test_a_second_apply_is_refused_naming_the_holder(
        checkout: Path, proxy: faultproxy.FaultProxy, moto_url: str) -> None:
    """While one apply holds the lock, a second is refused at once (exit 1) naming the
    holder's pid and operation and the force-unlock command; it calls no AWS API and
    publishes nothing."""
    first, held = started_and_held(proxy, lambda: apply(checkout),
                                    forward=False, operation=PUBLISH, key="dot")
    calls_before = proxy.count()

    second = run(checkout, "apply", "--yes")

    assert second.process.returncode == 1
    assert f"pid {first.process.pid}" in second.stderr and "apply" in second.stderr
    assert "is locked by" in second.stderr
    lock_id_in(second.stderr)
    assert proxy.count() == calls_before
    held.release()
    assert first.wait() == 0, first.stderr
    assert_converged(checkout, moto_url)


@pytest.mark.parametrize("targets", [(), (("--target", "dot", "--target", "x"),
                                          ("--target", "y", "--target", "z"))],
                         ids=["same-set", "disjoint-targets"])
def test_a_second_apply_with_lock_timeout_waits(
        checkout: Path, proxy: faultproxy.FaultProxy, moto_url: str,
        targets: tuple[tuple[str, ...], ...]) -> None:
    """With --lock-timeout the second apply waits for the first: one set of publishes, no
    duplicate version, and (with disjoint --target sets) every record of both kept."""
    first_args, second_args = targets or ((), ())
    first_layer = "dot"
    first, held = started_and_held(proxy, lambda: apply(checkout, *first_args),
                                    forward=False, operation=PUBLISH, key=first_layer)
    second = Cli(checkout, "apply", "--yes", "--lock-timeout", "60", *second_args)
    second.wait_for_stderr("waiting")
    held.release()

    assert first.wait() == 0, first.stderr
    assert second.wait() == 0, second.stderr
    assert proxy.count(operation=PUBLISH) == 4
    assert_converged(checkout, moto_url)
    assert_clean(checkout)


def test_a_signal_ends_a_wait_for_the_lock(checkout: Path, proxy: faultproxy.FaultProxy,
                                          moto_url: str) -> None:
    """SIGTERM to an apply waiting (--lock-timeout) for another run's lock ends the wait at
    once: exit 1, nothing changed by it, and the holder goes on undisturbed."""
    first, held = started_and_held(proxy, lambda: apply(checkout),
                                    forward=False, operation=PUBLISH, key="dot")
    waiting = Cli(checkout, "apply", "--yes", "--lock-timeout", "3600")
    waiting.wait_for_stderr("waiting")
    waiting.process.send_signal(signal.SIGTERM)

    assert waiting.wait() == 1
    assert "interrupted while waiting for the state lock" in waiting.stderr
    held.release()
    assert first.wait() == 0, first.stderr
    assert proxy.count(operation=PUBLISH) == 4
    assert_converged(checkout, moto_url)
    assert_clean(checkout)


# --- 4. shared S3 state from two checkouts ---------------------------------------------------


@pytest.fixture
def state_bucket(moto_url: str) -> str:
    """A bucket for the shared state, made straight on moto."""
    boto3.client("s3", region_name=REGION, endpoint_url=moto_url).create_bucket(Bucket=BUCKET)
    return f"s3://{BUCKET}/team"


def s3_keys(moto_url: str) -> list[str]:
    """Every key of the state bucket."""
    listing = boto3.client("s3", region_name=REGION, endpoint_url=moto_url).list_objects_v2(
        Bucket=BUCKET)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def test_two_checkouts_share_s3_state(tmp_path: Path, proxy: faultproxy.FaultProxy,
                                      moto_url: str, state_bucket: str) -> None:
    """A second checkout sharing the S3 state sees the first's records and publishes
    nothing; neither writes a local lockfile, and no lock object is left."""
    first = make_checkout(tmp_path / "one", state=state_bucket)
    second = make_checkout(tmp_path / "two", state=state_bucket, layers=LAYERS)
    # The `path: .` layer differs between the folders only in nothing: same files.
    assert run(first, "apply", "--yes").process.returncode == 0
    publishes = proxy.count(operation=PUBLISH)
    assert publishes == 4

    again = run(second, "apply", "--yes")

    assert again.process.returncode == 0, again.stderr
    assert proxy.count(operation=PUBLISH) == publishes
    assert not (first / "layers.lock.json").exists()
    assert not (second / "layers.lock.json").exists()
    assert s3_keys(moto_url) == ["team/layers.lock.json"]


def test_a_killed_s3_apply_is_named_force_unlocked_and_adopted(
        tmp_path: Path, proxy: faultproxy.FaultProxy, moto_url: str, state_bucket: str
) -> None:
    """Killed with x published but unrecorded: its lock object stays; the next apply is
    refused naming it; `force-unlock LOCK_ID --yes` clears it; the apply after adopts x."""
    checkout = make_checkout(tmp_path / "repo", state=state_bucket)
    killed, _held = started_and_held(proxy, lambda: apply(checkout),
                                    forward=True, operation=PUBLISH, key="x")
    killed.kill()
    assert "team/layers.lock.json.lock" in s3_keys(moto_url)

    refused = run(checkout, "apply", "--yes")
    assert refused.process.returncode == 1
    assert f"pid {killed.process.pid}" in refused.stderr
    lock_id = lock_id_in(refused.stderr)
    unlocked = run(checkout, "force-unlock", lock_id, "--yes")
    assert unlocked.process.returncode == 0, unlocked.stderr
    assert "team/layers.lock.json.lock" not in s3_keys(moto_url)

    proxy.clear()
    rerun = run(checkout, "apply", "--yes")
    assert rerun.process.returncode == 0, rerun.stderr
    assert proxy.count(operation=PUBLISH) == 2
    assert {layer: moto_versions(moto_url, layer) for layer in LAYERS} == {
        layer: [1] for layer in LAYERS}
    assert s3_keys(moto_url) == ["team/layers.lock.json"]


def test_state_push_takes_the_s3_lock(tmp_path: Path, proxy: faultproxy.FaultProxy,
                                      moto_url: str, state_bucket: str) -> None:
    """`state push` while an apply holds the S3 lock is refused naming it, and overwrites
    nothing; once the apply is done, a pulled state pushes back byte for byte."""
    checkout = make_checkout(tmp_path / "repo", state=state_bucket, layers=("x",))
    applying, held = started_and_held(proxy, lambda: apply(checkout),
                                    forward=False, operation=PUBLISH, key="x")
    backup = tmp_path / "backup.lock.json"
    backup.write_text('{\n  "layers": {},\n  "lockfile_version": 1\n}\n')

    refused = run(checkout, "state", "push", str(backup))

    assert refused.process.returncode == 1
    assert f"pid {applying.process.pid}" in refused.stderr
    held.release()
    assert applying.wait() == 0, applying.stderr
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_url)
    stored = s3.get_object(Bucket=BUCKET, Key="team/layers.lock.json")["Body"].read()
    assert recorded_of(stored) == {"x": 1}
    assert run(checkout, "state", "pull", str(backup)).process.returncode == 0
    assert backup.read_bytes() == stored
    pushed = run(checkout, "state", "push", str(backup))
    assert pushed.process.returncode == 0, pushed.stderr
    assert s3_keys(moto_url) == ["team/layers.lock.json"]


def recorded_of(data: bytes) -> dict[str, int]:
    """layer -> recorded version of a state's bytes."""
    lock = statefile.decode(data.decode("utf-8"), file="state")
    return {layer: entry.version for (layer, _), entry in lock.entries.items()}


# --- 5. unsafe stores and stale writes -------------------------------------------------------


def test_a_store_ignoring_conditional_writes_is_refused(
        tmp_path: Path, proxy: faultproxy.FaultProxy, moto_url: str, state_bucket: str
) -> None:
    """A store that drops If-None-Match/If-Match (the proxy strips them): StoreUnsafe before
    any lock or publish, exit 1, nothing left in the bucket."""
    checkout = make_checkout(tmp_path / "repo", state=state_bucket)
    proxy.add(faultproxy.strip_headers("If-None-Match", "If-Match", service="s3"))

    refused = run(checkout, "apply", "--yes")

    assert refused.process.returncode == 1
    assert "ignores If-None-Match" in refused.stderr
    assert proxy.count(operation=PUBLISH) == 0
    assert s3_keys(moto_url) == []


def test_a_stale_etag_write_is_refused_and_loses_nothing(
        tmp_path: Path, proxy: faultproxy.FaultProxy, moto_url: str, state_bucket: str
) -> None:
    """Someone rewrites the S3 state behind the lock while x's publish is in flight: the
    record of x is refused (StateConflict), that other write survives, exit 1; the next
    apply adopts x rather than publishing it again."""
    checkout = make_checkout(tmp_path / "repo", state=state_bucket, layers=("x",))
    applying, held = started_and_held(proxy, lambda: apply(checkout),
                                    forward=True, operation=PUBLISH, key="x")
    other = b'{\n  "layers": {},\n  "lockfile_version": 1\n}\n'
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_url)
    s3.put_object(Bucket=BUCKET, Key="team/layers.lock.json", Body=other)
    held.release()

    assert applying.wait() == 1
    assert "changed since it was read" in applying.stderr
    assert s3.get_object(Bucket=BUCKET, Key="team/layers.lock.json")["Body"].read() == other
    assert "team/layers.lock.json.lock" not in s3_keys(moto_url)

    proxy.clear()
    rerun = run(checkout, "apply", "--yes")
    assert rerun.process.returncode == 0, rerun.stderr
    assert proxy.count(operation=PUBLISH) == 0
    assert moto_versions(moto_url, "x") == [1]


# --- 6. one permanent failure of five ---------------------------------------------------------


def test_one_rejected_layer_of_five_blocks_no_other(
        tmp_path: Path, proxy: faultproxy.FaultProxy, moto_url: str) -> None:
    """A permanent 400 on layer c of five: the other four publish and are recorded, exit 1
    with a summary naming c and its cause; the rerun publishes only c."""
    layers = ("a", "b", "c", "d", "e")
    checkout = make_checkout(tmp_path / "repo", layers=layers)
    proxy.add(faultproxy.reject(operation=PUBLISH, key="c", message="c is refused for good"))

    failed = run(checkout, "apply", "--yes")

    assert failed.process.returncode == 1
    assert "c (us-east-1): " in failed.stderr and "c is refused for good" in failed.stderr
    assert recorded(checkout) == {"a": 1, "b": 1, "d": 1, "e": 1}
    assert moto_versions(moto_url, "c") == []
    proxy.clear()
    rerun = run(checkout, "apply", "--yes")
    assert rerun.process.returncode == 0, rerun.stderr
    assert proxy.count(operation=PUBLISH) == 1
    assert_converged(checkout, moto_url, layers=layers)


# --- 7. no secret out --------------------------------------------------------------------


SECRETS = {"AWS_ACCESS_KEY_ID": "AKIASECRETKEYID12345",
           "AWS_SECRET_ACCESS_KEY": "very-secret-access-key-0123456789",
           "AWS_SESSION_TOKEN": "session-token-secret-abcdef"}
USERINFO = "user:url-password-secret"


def test_no_secret_in_any_output_or_file(tmp_path: Path, proxy: faultproxy.FaultProxy,
                                         moto_url: str, state_bucket: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """With credentials, a session token and an endpoint URL holding userinfo: no secret in
    stdout/stderr of plan, apply (succeeding, failing, unreachable, unsafe store), the plan
    file, the lockfile, the step summary or any file under the checkout."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    endpoint = proxy.url.replace("http://", f"http://{USERINFO}@")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    checkout = make_checkout(tmp_path / "repo", layers=("dot", "x"))
    shared = make_checkout(tmp_path / "shared", state=state_bucket, layers=("x",))
    runs = [run(checkout, "plan", "--out", str(tmp_path / "plan.json"))]
    proxy.add(faultproxy.reject(operation=PUBLISH, key="x", times=1))
    runs.append(run(checkout, "apply", "--yes"))
    runs.append(run(checkout, "apply", "--yes"))
    runs.append(run(shared, "apply", "--yes", "--format", "json"))
    proxy.add(faultproxy.strip_headers("If-None-Match", "If-Match", service="s3"))
    unsafe_plan = run(shared, "plan")  # a plan reads the state; the store is unsafe
    runs.append(unsafe_plan)
    runs.append(run(checkout, "apply", "--yes", "--endpoint-url",
                    "http://user:url-password-secret@127.0.0.1:9/"))
    runs.append(run(shared, "force-unlock", "no-such-lock", "--yes"))
    texts = [cli.stdout + cli.stderr for cli in runs]
    files = [path for folder in (checkout, shared) for path in folder.rglob("*")
             if path.is_file()] + [tmp_path / "plan.json", summary]
    texts += [path.read_bytes().decode("utf-8", "replace") for path in files]
    assert any("cannot reach" in text for text in texts)  # the unreachable case ran
    for secret in [*SECRETS.values(), "url-password-secret"]:
        leaks = [text[max(0, text.find(secret) - 80):text.find(secret) + 40]
                 for text in texts if secret in text]
        assert leaks == [], leaks


# --- 8. a signal while planning under an S3 lock ----------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_planning_releases_the_s3_lock(
        tmp_path: Path, proxy: faultproxy.FaultProxy, moto_url: str, state_bucket: str,
        signum: signal.Signals) -> None:
    """A signal while apply plans under the S3 lock (a Lambda read held): exit 1, nothing
    published, and the lock object is deleted (the next apply is not refused)."""
    checkout = make_checkout(tmp_path / "repo", state=state_bucket, layers=("x",))
    applying, held = started_and_held(proxy, lambda: apply(checkout),
                                    forward=False, operation=LIST)
    assert "team/layers.lock.json.lock" in s3_keys(moto_url)
    applying.process.send_signal(signum)
    applying.wait_for_stderr("stopping")
    held.release()

    assert applying.wait() == 1
    assert "interrupted" in applying.stderr
    assert proxy.count(operation=PUBLISH) == 0
    assert "team/layers.lock.json.lock" not in s3_keys(moto_url)
    assert run(checkout, "apply", "--yes").process.returncode == 0


def test_ctrl_c_during_plan_exits_1_with_a_message(
        checkout: Path, proxy: faultproxy.FaultProxy) -> None:
    """Ctrl-C while plan waits on Lambda: exit 1 (the contract's one error code, not typer's
    130) with a message, and no temp file left."""
    planning, held = started_and_held(proxy, lambda: Cli(checkout, "plan"),
                                    forward=False, operation="ListLayers")
    planning.process.send_signal(signal.SIGINT)
    held.release()  # the call in flight ends; the exit does not wait for a timeout
    code = planning.wait()
    assert code == 1, planning.stderr
    assert "interrupted" in planning.stderr
    assert temp_files(checkout) == []
