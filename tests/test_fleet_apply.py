"""A layer vendor's release through the plan and apply use cases, with the fake Lambda:
grants given before a version is recorded, grant changes, retention deletes after the
publish, and align_versions' fillers published and deleted by the same apply."""

from __future__ import annotations

from pathlib import Path

from fakes import FakeLayerStore, PublishFault
from test_fleet_planner import numbers
from test_reconcile import folder_layer_space, run_apply, run_plan

from reconciler import errors, model, planner
from reconciler.state.local import LocalStateBackend

S = model.Settings()


def manifest(extra: str, *, regions: str = "us-east-1") -> str:
    """A one-layer manifest (layer `a` from folder `a`) with `extra` under the layer."""
    return f"version: 1\nregion: [{regions}]\nlayers:\n  a:\n    content: {{path: a}}\n{extra}"


def test_new_version_is_granted_before_it_is_recorded_and_a_removed_grant_is_removed(
        tmp_path: Path) -> None:
    """apply grants each new version every `share` entry, then a grant dropped from the
    manifest is a `grant` change that removes just that statement and records the new
    settings digest."""
    space = folder_layer_space(tmp_path, manifest(
        "    share:\n      - account: '111122223333'\n      - organization: o-a1b2c3d4e5\n"))
    store = FakeLayerStore()
    report = run_apply(space, store)
    assert report.ok and len(report.published) == 1
    assert set(store.policies[("us-east-1", "a", 1)]) == {
        "reconcile-account-111122223333", "reconcile-organization-o-a1b2c3d4e5"}
    grants = [call for call in store.calls if call[0] == "grant"]
    assert store.calls.index(grants[0]) > store.calls.index(("publish", "us-east-1", "a"))

    (tmp_path / "layers.yaml").write_text(manifest(
        "    share:\n      - account: '111122223333'\n"))
    plan = run_plan(space, store)
    [change] = plan.changes
    assert change.action is model.Action.GRANT
    assert change.details_as(model.GrantDetails).remove == (
        "reconcile-organization-o-a1b2c3d4e5",)
    report = run_apply(space, store)
    assert report.ok and report.granted
    assert set(store.policies[("us-east-1", "a", 1)]) == {"reconcile-account-111122223333"}
    entry = LocalStateBackend(space.lockfile_path).read().lock.get("a", "us-east-1")
    assert entry is not None
    assert entry.settings_sha256 == S.digest((model.Grant("account", "111122223333"),))
    assert run_plan(space, store).changes[0].action is model.Action.NOOP


def test_retention_deletes_old_versions_after_the_publish(tmp_path: Path) -> None:
    """retain: 2 deletes all but the two newest once the new version is recorded, keeping
    one a function uses; nothing else is deleted."""
    space = folder_layer_space(tmp_path, manifest("    retain: 2\n"))
    store = FakeLayerStore()
    for number in range(4):
        store.put(region="us-east-1", layer_name="a", settings=S, zip_bytes=b"old%d" % number)
    store.functions["us-east-1"] = [("api:$LATEST", (
        "arn:aws:lambda:us-east-1:123456789012:layer:a:2",))]
    plan = run_plan(space, store)
    assert [(c.action, numbers(c)[2]) for c in plan.changes] == [
        (model.Action.PUBLISH, None), (model.Action.DELETE, 1), (model.Action.DELETE, 3)]
    assert "retention keeps v2: used by function api:$LATEST" in plan.changes[0].notes
    report = run_apply(space, store)
    assert report.ok
    assert [item.versions for item in report.deleted] == [(1,), (3,)]
    live = [version.version for version in store.all_versions(region="us-east-1",
                                                              layer_name="a")]
    assert live == [2, 4, 5]
    publish_at = store.calls.index(("publish", "us-east-1", "a"))
    assert store.calls.index(("delete", "us-east-1", "a:1")) > publish_at


def test_retention_waits_for_a_publish_that_fails(tmp_path: Path) -> None:
    """When the publish fails, its region's retention deletes are not attempted."""
    space = folder_layer_space(tmp_path, manifest("    retain: 1\n"))
    store = FakeLayerStore()
    for number in range(2):
        store.put(region="us-east-1", layer_name="a", settings=S, zip_bytes=b"old%d" % number)
    store.fail_publish["a"] = errors.PublishNotSent("refused", aws_code="InvalidParameterValue")
    report = run_apply(space, store)
    assert not report.ok and len(report.failed) == 1
    assert {item.change.action for item in report.not_attempted} == {model.Action.DELETE}
    assert not [call for call in store.calls if call[0] == "delete"]


def test_alignment_publishes_fillers_and_deletes_them(tmp_path: Path) -> None:
    """Two regions ahead: the others publish fillers and then the real version at the same
    number, and no filler is left behind."""
    space = folder_layer_space(tmp_path, manifest("    align_versions: true\n",
                                                  regions="us-east-1, eu-west-1, ap-south-1"))
    store = FakeLayerStore()
    for region, count in (("eu-west-1", 3), ("ap-south-1", 1)):
        for number in range(count):
            store.put(region=region, layer_name="a", settings=S, zip_bytes=b"x%d" % number)
    plan = run_plan(space, store)
    assert {c.region: numbers(c)[1] for c in plan.changes} == {
        "ap-south-1": 2, "eu-west-1": 0, "us-east-1": 3}
    report = run_apply(space, store, parallelism=2)
    assert report.ok, report.failed
    assert {item.version.version for item in report.published} == {4}
    for region in ("us-east-1", "eu-west-1", "ap-south-1"):
        live = store.all_versions(region=region, layer_name="a")
        assert live[-1].version == 4
        assert all(version.settings.description != planner.FILLER_DESCRIPTION
                   for version in live)
        assert ("us-east-1", "a", 1) not in store.policies
    assert not report.warnings


def test_a_filler_whose_reply_was_lost_is_found_not_published_twice(tmp_path: Path) -> None:
    """A filler publish whose reply is lost after Lambda made it is looked up and adopted:
    the region still reaches the target with one filler per number and none left behind."""
    space = folder_layer_space(tmp_path, manifest("    align_versions: true\n",
                                                  regions="eu-west-1, us-east-1"))
    store = FakeLayerStore()
    for number in range(2):
        store.put(region="eu-west-1", layer_name="a", settings=S, zip_bytes=b"x%d" % number)
    store.publish_faults["a"] = [PublishFault(
        errors.PublishOutcomeUnknown("connection reset", aws_code="ConnectionReset"),
        lands=True, region="us-east-1")]
    report = run_apply(space, store, parallelism=1)
    assert report.ok, report.failed
    assert {(item.change.region, item.version.version) for item in report.published} == {
        ("eu-west-1", 3), ("us-east-1", 3)}
    assert store.calls.count(("publish", "us-east-1", "a")) == 3
    live = store.all_versions(region="us-east-1", layer_name="a")
    assert [version.version for version in live] == [3]
