"""planner.forget: which recorded layers and regions a manifest forgets, which it leaves to
another manifest, and the refusal of a layer another manifest owns. Pure values."""

from __future__ import annotations

import dataclasses

import pytest

from reconciler import model, planner, savedplan

ARN = "arn:aws:lambda:us-east-1:123456789012:layer:lambda-name:4"
ENTRY = model.LockEntry(fingerprint="f" * 64, content_sha256="c" * 64, code_sha256="x" * 43 + "=",
                        code_size=12, version=4, layer_version_arn=ARN, settings_sha256="s" * 64)


def owned(by: str) -> model.LockEntry:
    return dataclasses.replace(ENTRY, manifest=by)


def recorded(entries: dict[tuple[str, str], model.LockEntry], *, named: tuple[str, ...] = (),
             regions: tuple[str, ...] = ("us-east-1",), own_lockfile: bool = False,
             targeted: bool = False, only_regions: tuple[str, ...] = ()) -> planner.Recorded:
    return planner.Recorded(
        lock=model.Lock(entries=entries),
        named=planner.named_pairs((layer, regions) for layer in named),
        named_layers=frozenset(named), regions_listed=bool(regions), owner="layers.yaml",
        own_lockfile=own_lockfile, targeted=targeted, only_regions=only_regions)


@pytest.mark.parametrize(("owner", "own_lockfile", "forgotten", "warned"), [
    ("layers.yaml", False, True, False),   # ours, in a shared state
    ("layers.yaml", True, True, False),    # ours, in our lockfile
    ("", True, True, False),               # unowned, in our own lockfile
    ("", False, False, True),              # unowned, in a shared state: a warning
    ("teams/b/layers.yaml", False, False, False),  # another manifest's: not ours to judge
    ("teams/b/layers.yaml", True, False, False),
])
def test_who_may_forget_an_entry(owner: str, own_lockfile: bool, forgotten: bool,
                                 warned: bool) -> None:
    """The decision table of forget: own entries, and unowned ones only in the manifest's
    own lockfile; an unowned entry of a shared state is a warning naming `state rm`."""
    changes, warnings = planner.forgets(recorded({("old", "us-east-1"): owned(owner)},
                                                 own_lockfile=own_lockfile))
    assert bool(changes) is forgotten
    assert bool(warnings) is warned
    if warned:
        assert "reconcile state rm old" in warnings[0]


def test_a_forget_carries_the_recorded_version_and_says_lambda_keeps_it() -> None:
    """The change names the Lambda layer (from the ARN), the recorded version and digests,
    reason not_in_manifest, and a note that the versions stay in Lambda."""
    (change,), _ = planner.forgets(recorded({("old", "us-east-1"): owned("layers.yaml")}))
    assert (change.action, change.layer, change.layer_name,
            change.details_as(model.ForgetDetails).version) == (
        model.Action.FORGET, "old", "lambda-name", 4)
    assert change.reasons == (model.Reason.NOT_IN_MANIFEST,)
    assert change.desired.fingerprint == ENTRY.fingerprint
    assert "versions stay in Lambda" in change.notes[0] and ARN in change.notes[0]
    plan = model.Plan(changes=(change,))
    assert plan.has_changes and not plan.has_remote_changes
    assert plan.summary()["forget"] == 1


def test_a_named_layer_is_kept_and_a_dropped_region_is_forgotten() -> None:
    """A layer the manifest names is kept in its regions; a region it no longer lists is
    forgotten; without listed regions (the default region) only whole layers are."""
    entries = {("a", "us-east-1"): owned("layers.yaml"), ("a", "eu-west-1"): owned("layers.yaml")}
    listed, _ = planner.forgets(recorded(entries, named=("a",)))
    unlisted, _ = planner.forgets(recorded(entries, named=("a",), regions=()))
    assert [(change.layer, change.region) for change in listed] == [("a", "eu-west-1")]
    assert unlisted == ()


def test_target_forgets_nothing_and_region_limits_it() -> None:
    """--target plans forget nothing; --region forgets only in those regions."""
    entries = {("old", "us-east-1"): owned("layers.yaml"),
               ("old", "eu-west-1"): owned("layers.yaml")}
    assert planner.forgets(recorded(entries, targeted=True)) == ((), ())
    only, _ = planner.forgets(recorded(entries, only_regions=("eu-west-1",)))
    assert [change.region for change in only] == ["eu-west-1"]


def test_a_layer_another_manifest_owns_is_a_plan_error_naming_it() -> None:
    """Planning a layer whose entry another manifest owns is an error naming the owner and
    the region; an own or unowned entry is not."""
    lock = model.Lock(entries={("x", "us-east-1"): owned("teams/b/layers.yaml"),
                               ("y", "us-east-1"): owned("layers.yaml"),
                               ("z", "us-east-1"): owned("")})
    found = planner.owned_elsewhere(lock, owner="layers.yaml", planned={
        "x": ["us-east-1"], "y": ["us-east-1"], "z": ["us-east-1"]})
    assert [error.layer for error in found] == ["x"]
    assert "owned by another manifest (us-east-1 by teams/b/layers.yaml)" in found[0].message


def test_compose_adds_forgets_and_their_warnings() -> None:
    """planner.plan with `recorded` carries the forget changes and the shared-state warning."""
    plan = planner.plan([], recorded=recorded({("old", "us-east-1"): owned("layers.yaml"),
                                               ("older", "us-east-1"): owned("")}))
    assert [(change.layer, change.action) for change in plan.changes] == [
        ("old", model.Action.FORGET)]
    assert any("state rm older" in warning for warning in plan.warnings)


def test_a_saved_forget_must_equal_the_fresh_decision() -> None:
    """savedplan compares a forget by its recorded version and digests: another version or
    fingerprint, or no forget now, is a difference in words."""
    saved = model.Plan(changes=(planner.forget_change("old", "us-east-1", ENTRY,
                                                      manifest_file="layers.yaml"),))
    moved = model.Plan(changes=(planner.forget_change(
        "old", "us-east-1", dataclasses.replace(ENTRY, version=5),
        manifest_file="layers.yaml"),))
    assert savedplan.differences(saved, saved) == []
    assert any("deciding again now would also forget layer old in us-east-1" in line
               for line in savedplan.differences(saved, moved))
    fingerprint = model.Plan(changes=(planner.forget_change(
        "old", "us-east-1", dataclasses.replace(ENTRY, fingerprint="e" * 64),
        manifest_file="layers.yaml"),))
    assert any("forgotten fingerprint" in line
               for line in savedplan.differences(saved, fingerprint))
    assert any("the plan would forget layer old in us-east-1" in line
               for line in savedplan.differences(saved, model.Plan(changes=())))
