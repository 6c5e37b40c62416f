"""publishing.publish_exactly_once against the in-memory FakeLayerStore: how many sends each
failure earns, when a version found after an unknown outcome is adopted, and that a failed
look never leads to a blind send."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from fakes import FakeLayerStore, PublishFault

from reconciler import applying, artifacts, errors, model, planning, publishing, workspace
from reconciler.state.local import LocalStateBackend

REGION = "us-east-1"
LAYER = "shared-utils"
SETTINGS = model.Settings.normalised(description="helpers", compatible_runtimes=["python3.12"],
                                     compatible_architectures=None, license_info="MIT")
THROTTLED = errors.PublishNotSent("throttled (it was refused and made no version)",
                                  aws_code="TooManyRequestsException")
REJECTED = errors.PublishNotSent("rejected (it was refused and made no version)",
                                 aws_code="InvalidParameterValueException")
UNKNOWN = errors.PublishOutcomeUnknown("sent, no reply", aws_code="ServiceException")


@pytest.fixture
def zip_path(tmp_path: Path) -> Path:
    """Some zip bytes (the fake store only hashes them)."""
    path = tmp_path / "layer.zip"
    path.write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    return path


def sha(path: Path) -> str:
    """CodeSha256 as Lambda reports it."""
    return base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


class Sleeps:
    """A sleep that records each wait instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def publish(store: FakeLayerStore, zip_path: Path, *, above_version: int = 0,
            attempts: int = 3, sleep: Sleeps | None = None,
            settings: model.Settings = SETTINGS) -> publishing.Published:
    """publish_exactly_once for LAYER in REGION with the desired SETTINGS."""
    return publishing.publish_exactly_once(
        store, region=REGION, layer_name=LAYER, settings=settings, zip_path=zip_path,
        code_sha256=sha(zip_path), above_version=above_version, attempts=attempts,
        sleep=sleep or Sleeps())


def versions(store: FakeLayerStore) -> list[int]:
    """The live version numbers of LAYER in REGION."""
    return [s.version.version for s in store.layers.get((REGION, LAYER), []) if not s.deleted]


def test_success_is_one_send_and_not_adopted(zip_path: Path) -> None:
    """A publish that succeeds is sent once, and nothing is looked up or adopted."""
    store = FakeLayerStore()

    result = publish(store, zip_path)

    assert (result.version.version, result.adopted, result.sends) == (1, False, 1)
    assert [call[0] for call in store.calls] == ["publish"]


def test_throttled_publish_waits_and_is_sent_again(zip_path: Path) -> None:
    """Two throttles then success: three sends, two jittered waits under a doubling bound."""
    store = FakeLayerStore(publish_faults={LAYER: [PublishFault(THROTTLED)] * 2})
    sleeps = Sleeps()

    result = publish(store, zip_path, sleep=sleeps)

    assert (result.sends, result.adopted, versions(store)) == (3, False, [1])
    assert len(sleeps.waits) == 2
    assert 0 <= sleeps.waits[0] <= publishing.backoff_bound(0)
    assert 0 <= sleeps.waits[1] <= publishing.backoff_bound(1)
    assert publishing.backoff_bound(1) == 2 * publishing.backoff_bound(0)


def test_throttling_beyond_attempts_raises_not_sent(zip_path: Path) -> None:
    """Throttled on every send: exactly `attempts` sends, then PublishNotSent saying no version."""
    store = FakeLayerStore(publish_faults={LAYER: [PublishFault(THROTTLED)] * 5})

    with pytest.raises(errors.PublishNotSent) as raised:
        publish(store, zip_path, attempts=3)

    assert store.writes() == [("publish", REGION, LAYER)] * 3
    assert "made no version" in raised.value.message
    assert "sent 3 times, each refused" in raised.value.message
    assert raised.value.aws_code == "TooManyRequestsException"
    assert versions(store) == []


def test_rejected_publish_is_not_sent_again(zip_path: Path) -> None:
    """A refusal other than throttling is raised at once: one send, no wait, no lookup."""
    store = FakeLayerStore(publish_faults={LAYER: [PublishFault(REJECTED)]})
    sleeps = Sleeps()

    with pytest.raises(errors.PublishNotSent) as raised:
        publish(store, zip_path, sleep=sleeps)

    assert raised.value is REJECTED
    assert [call[0] for call in store.calls] == ["publish"]
    assert sleeps.waits == []


def test_unknown_outcome_that_landed_is_adopted(zip_path: Path) -> None:
    """A publish that made its version but lost its reply is found and adopted: one send."""
    store = FakeLayerStore(publish_faults={LAYER: [PublishFault(UNKNOWN, lands=True)]})

    result = publish(store, zip_path)

    assert (result.version.version, result.adopted, result.sends) == (1, True, 1)
    assert result.version.code_sha256 == sha(zip_path)
    assert versions(store) == [1]
    assert [call[0] for call in store.calls] == ["publish", "versions_above"]


def test_unknown_outcome_on_every_send_that_landed_once(zip_path: Path) -> None:
    """Unknown outcome on each send, the first of them landed: adopted, never sent twice."""
    store = FakeLayerStore(publish_faults={
        LAYER: [PublishFault(UNKNOWN, lands=True), PublishFault(UNKNOWN, lands=True)]})

    result = publish(store, zip_path)

    assert (result.adopted, result.sends, versions(store)) == (True, 1, [1])


def test_unknown_outcome_that_did_not_land_is_sent_again(zip_path: Path) -> None:
    """An unknown outcome with no version found is sent again; the second send succeeds."""
    store = FakeLayerStore(publish_faults={LAYER: [PublishFault(UNKNOWN, lands=False)]})

    result = publish(store, zip_path)

    assert (result.version.version, result.adopted, result.sends) == (1, False, 2)
    assert [call[0] for call in store.calls] == ["publish", "versions_above", "publish"]


def test_unknown_outcomes_beyond_attempts_raise_unknown(zip_path: Path) -> None:
    """Unknown and never found, `attempts` times: PublishOutcomeUnknown saying it was sent,
    what was looked for, and that the next plan will adopt a version that appears."""
    store = FakeLayerStore(publish_faults={LAYER: [PublishFault(UNKNOWN)] * 5})

    with pytest.raises(errors.PublishOutcomeUnknown) as raised:
        publish(store, zip_path, attempts=2, above_version=0)

    assert store.writes() == [("publish", REGION, LAYER)] * 2
    message = raised.value.message
    assert "was sent 2 times and its outcome is unknown" in message
    assert "above v0" in message and sha(zip_path) in message
    assert raised.value.hint is not None and "adopts" in raised.value.hint


def test_adoption_needs_the_same_settings(zip_path: Path) -> None:
    """A version above with the desired CodeSha256 but other settings is not adopted."""
    store = FakeLayerStore(publish_faults={LAYER: [PublishFault(UNKNOWN)]})
    other = model.Settings(description="someone else's")
    store.put(region=REGION, layer_name=LAYER, settings=other, zip_bytes=zip_path.read_bytes())

    result = publish(store, zip_path)

    assert (result.adopted, result.sends, result.version.version) == (False, 2, 2)
    assert result.version.settings == SETTINGS


def test_adoption_needs_the_same_code(zip_path: Path) -> None:
    """A version above with the desired settings but other content is not adopted."""
    store = FakeLayerStore(publish_faults={LAYER: [PublishFault(UNKNOWN)]})
    store.put(region=REGION, layer_name=LAYER, settings=SETTINGS, zip_bytes=b"other bytes")

    result = publish(store, zip_path)

    assert (result.adopted, result.sends, result.version.version) == (False, 2, 2)


def test_version_at_or_below_the_planned_latest_is_never_adopted(zip_path: Path) -> None:
    """An equal version that already existed when the plan was made (at or below
    above_version) is not what the lost publish made: it is sent again."""
    store = FakeLayerStore(publish_faults={LAYER: [PublishFault(UNKNOWN)]})
    for _ in range(2):
        store.put(region=REGION, layer_name=LAYER, settings=SETTINGS,
                  zip_bytes=zip_path.read_bytes())

    result = publish(store, zip_path, above_version=2)

    assert (result.adopted, result.sends, result.version.version) == (False, 2, 3)


def test_failed_lookup_never_sends_again(zip_path: Path) -> None:
    """When looking for the version fails, nothing more is sent: PublishOutcomeUnknown."""
    store = FakeLayerStore(publish_faults={LAYER: [PublishFault(UNKNOWN)]},
                           fail_lookup=errors.AwsError("ListLayerVersions failed: boom"))

    with pytest.raises(errors.PublishOutcomeUnknown) as raised:
        publish(store, zip_path)

    assert store.writes() == [("publish", REGION, LAYER)]
    assert "outcome is unknown" in raised.value.message
    assert "boom" in raised.value.message and "not sent again" in raised.value.message


def test_refusal_after_an_unknown_outcome_stays_unknown(zip_path: Path) -> None:
    """Unknown, none found, then refused: the error is still PublishOutcomeUnknown, since the
    first send may yet show a version."""
    store = FakeLayerStore(publish_faults={LAYER: [PublishFault(UNKNOWN), PublishFault(REJECTED)]})

    with pytest.raises(errors.PublishOutcomeUnknown) as raised:
        publish(store, zip_path)

    assert store.writes() == [("publish", REGION, LAYER)] * 2
    assert "the last send was refused" in raised.value.message


def test_throttled_send_after_an_unknown_outcome_looks_again_first(zip_path: Path) -> None:
    """Unknown (none found), then throttled: before the third send it looks again, and
    adopts the first send's version once it shows up (here: it appears during the second
    call, as a lagging listing would show it)."""
    store = FakeLayerStore(publish_faults={
        LAYER: [PublishFault(UNKNOWN), PublishFault(THROTTLED, lands=True)]})
    sleeps = Sleeps()

    result = publish(store, zip_path, sleep=sleeps)

    assert (result.adopted, result.sends, result.version.version) == (True, 2, 1)
    assert [call[0] for call in store.calls] == [
        "publish", "versions_above", "publish", "versions_above"]
    assert len(sleeps.waits) == 1  # between the first look and the second send


def test_unknown_then_throttled_then_success(zip_path: Path) -> None:
    """Unknown (none found), throttled, then success: three sends, each resend after a look."""
    store = FakeLayerStore(publish_faults={
        LAYER: [PublishFault(UNKNOWN), PublishFault(THROTTLED)]})

    result = publish(store, zip_path)

    assert (result.adopted, result.sends, versions(store)) == (False, 3, [1])
    assert [call[0] for call in store.calls] == [
        "publish", "versions_above", "publish", "versions_above", "publish"]


def test_attempts_must_allow_one_send(zip_path: Path) -> None:
    """attempts < 1 is a programming error, refused before any send."""
    store = FakeLayerStore()

    with pytest.raises(ValueError, match="attempts"):
        publish(store, zip_path, attempts=0)

    assert store.calls == []


# --- apply() uses it ----------------------------------------------------------------------

MANIFEST = """\
version: 1
region: us-east-1
layers:
  alpha:
    content: {path: src/alpha}
  beta:
    content: {path: src/beta}
"""


@pytest.fixture
def space(tmp_path: Path) -> workspace.Workspace:
    """A manifest with two folder layers."""
    for name in ("alpha", "beta"):
        (tmp_path / "src" / name).mkdir(parents=True)
        (tmp_path / "src" / name / f"{name}.py").write_text(f"NAME = {name!r}\n")
    (tmp_path / "layers.yaml").write_text(MANIFEST)
    return workspace.Workspace.for_manifest(tmp_path / "layers.yaml")


def plan_and_apply(space: workspace.Workspace, store: FakeLayerStore) -> applying.ApplyReport:
    """Plan and apply as `apply --yes` does (one change at a time)."""
    parsed = workspace.load_manifest(space)
    state = LocalStateBackend(space.lockfile_path)
    snapshot = state.read()
    code = artifacts.LocalCode(space=space, manifest=parsed)
    plan = planning.make_plan(
        parsed=parsed, selection=planning.select(parsed, default_region=None, targets=(),
                                                 regions=()),
        snapshot=snapshot, state_location="lockfile", manifest_digest=parsed.sha256,
        store=store, code=code)
    return applying.apply(plan, store=store, state=state, code=code, snapshot=snapshot,
                          parallelism=1)


def test_apply_adopts_and_records_a_publish_whose_reply_was_lost(
        space: workspace.Workspace) -> None:
    """A lost reply to a publish that landed: apply records that version, sends no second."""
    store = FakeLayerStore(publish_faults={"alpha": [PublishFault(UNKNOWN, lands=True)]})

    report = plan_and_apply(space, store)

    assert [(item.change.layer, item.version.version) for item in report.published] == [
        ("alpha", 1), ("beta", 1)]
    assert report.published[0].adopted
    assert store.writes().count(("publish", REGION, "alpha")) == 1
    entry = LocalStateBackend(space.lockfile_path).read().lock.get("alpha", REGION)
    assert entry is not None and entry.version == 1


def test_apply_failure_with_unknown_outcome_never_claims_nothing(
        space: workspace.Workspace) -> None:
    """When the failed publish's outcome is unknown, the message does not say "nothing" was
    published: it says that publish may have made an unrecorded version."""
    store = FakeLayerStore(publish_faults={"alpha": [PublishFault(UNKNOWN)] * 3})

    report = plan_and_apply(space, store)

    message = report.failure_summary(state_location="layers.lock.json")
    assert "nothing" not in message
    assert "may have made a version" in message
    assert [item.change.layer for item in report.published] == ["beta"]


def test_apply_failure_never_sent_says_nothing_published(space: workspace.Workspace) -> None:
    """A publish that certainly made no version, first in the plan: "nothing" is true."""
    store = FakeLayerStore(publish_faults={"alpha": [PublishFault(REJECTED)]},
                           fail_publish={"beta": errors.PublishNotSent("refused: made no version")})

    report = plan_and_apply(space, store)

    message = report.failure_summary(state_location="layers.lock.json")
    assert "recorded in the lockfile (layers.lock.json): nothing" in message
    assert "made no version" in message


def test_unknown_outcome_with_unknown_code_is_never_sent_twice(zip_path: Path) -> None:
    """Without a CodeSha256 to compare (an S3 object with no SHA-256 checksum), a lost reply
    whose version landed is not sent again: PublishOutcomeUnknown names that version."""
    store = FakeLayerStore(publish_faults={LAYER: [PublishFault(UNKNOWN, lands=True)]})

    with pytest.raises(errors.PublishOutcomeUnknown) as raised:
        publishing.publish_exactly_once(
            store, region=REGION, layer_name=LAYER, settings=SETTINGS, zip_path=zip_path,
            code_sha256="", above_version=0, sleep=Sleeps())

    assert "v1 has the desired settings" in raised.value.message
    assert versions(store) == [1]
    assert [call[0] for call in store.calls] == ["publish", "versions_above"]


class _StopAtOnce(BaseException):
    """What a second Ctrl-C raises in the calling thread (a BaseException, not an error)."""


def test_a_stop_at_once_during_a_state_write_never_hangs_the_lanes(tmp_path: Path) -> None:
    """The calling thread is stopped at once in the middle of recording a lane's publish: the
    lane waiting for that record learns it is not recorded, the pool ends, and the stop
    propagates (it would hang for good if the waiting lane were never answered)."""
    import threading

    from test_reconcile import folder_layer_space

    class StoppedWhileWriting(LocalStateBackend):
        """A lockfile backend whose write is interrupted by the stop."""

        def write(self, lock: model.Lock, *, expected_revision: str) -> str:
            raise _StopAtOnce()

    space = folder_layer_space(tmp_path, "version: 1\nregion: us-east-1\nlayers:\n"
                                         "  a:\n    content: {path: a}\n")
    store = FakeLayerStore()
    parsed = workspace.load_manifest(space)
    state = StoppedWhileWriting(space.lockfile_path)
    snapshot = state.read()
    code = artifacts.LocalCode(space=space, manifest=parsed, objects=store.objects)
    plan = planning.make_plan(
        parsed=parsed, selection=planning.select(parsed, default_region=None, targets=(),
                                                 regions=()),
        snapshot=snapshot, state_location="lockfile:layers.lock.json",
        manifest_digest=parsed.sha256, store=store, code=code)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            applying.apply(plan, store=store, state=state, code=code, snapshot=snapshot,
                           objects=store.objects)
        except _StopAtOnce as stopped:
            outcome.append(stopped)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "apply hung after a stop in the middle of a state write"
    assert len(outcome) == 1
    assert [version.version for version in store.all_versions(region="us-east-1",
                                                               layer_name="a")] == [1]
