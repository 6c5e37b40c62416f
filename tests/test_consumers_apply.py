"""Consumers through the plan and apply use cases, with the fakes of every port (the fake
Lambda, FakeFunctionStore, FakeParameterStore): what the plan reads (in every region, tags
once per region, a function named by ARN in its region only), the placeholder resolved to
the version the apply recorded, and never twice, never lost: an update or a write whose
outcome is unknown read back before any resend, a consumer changed since the plan refused
as stale, never overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeLayerStore
from fakes_consumers import FakeFunctionStore, FakeParameterStore, UpdateFault

from reconciler import applying, artifacts, errors, model, planner, planning, workspace
from reconciler.applying import consumers as applying_consumers
from reconciler.state.local import LocalStateBackend

REGIONS = ("us-east-1", "eu-west-1")
NAME = "/layers/a/latest"


def space_of(tmp_path: Path, consumers: str) -> workspace.Workspace:
    """Layer `a` (folder `a`) in both regions with its parameter and `consumers`."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.txt").write_text("x")
    (tmp_path / "layers.yaml").write_text(
        f"version: 1\nregion: [{', '.join(REGIONS)}]\nlayers:\n  a:\n    content: {{path: a}}\n"
        f"    parameter: {NAME}\n    consumers:\n{consumers}")
    return workspace.Workspace.for_manifest(tmp_path / "layers.yaml")


def one_layer(tmp_path: Path, extra: str) -> workspace.Workspace:
    """A folder layer `a` in us-east-1, its manifest entry ending with `extra`."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.txt").write_text("x")
    (tmp_path / "layers.yaml").write_text(
        "version: 1\nregion: us-east-1\nlayers:\n  a:\n    content: {path: a}\n" + extra)
    return workspace.Workspace.for_manifest(tmp_path / "layers.yaml")


class World:
    """The fakes of one test and the use cases run against them."""

    def __init__(self, space: workspace.Workspace) -> None:
        self.space = space
        self.layers = FakeLayerStore()
        self.functions = FakeFunctionStore()
        self.parameters = FakeParameterStore()

    def plan(self) -> model.Plan:
        """Plan as the CLI does."""
        parsed = workspace.load_manifest(self.space)
        state = LocalStateBackend(self.space.lockfile_path)
        return planning.make_plan(
            parsed=parsed, selection=planning.select(parsed, default_region=None, targets=(),
                                                     regions=()),
            snapshot=state.read(), state_location="lockfile:layers.lock.json",
            manifest_digest=parsed.sha256, store=self.layers,
            code=artifacts.LocalCode(space=self.space, manifest=parsed,
                                     objects=self.layers.objects),
            consumers=planning.Consumers(functions=self.functions, parameters=self.parameters))

    def apply(self, plan: model.Plan | None = None) -> applying.ApplyReport:
        """Apply `plan` (default: a fresh one) as `apply --yes` does."""
        parsed = workspace.load_manifest(self.space)
        state = LocalStateBackend(self.space.lockfile_path)
        snapshot = state.read()
        plan = plan or self.plan()
        return applying.apply(
            plan, store=self.layers, state=state, snapshot=snapshot,
            code=artifacts.LocalCode(space=self.space, manifest=parsed,
                                     objects=self.layers.objects),
            objects=self.layers.objects, functions=self.functions,
            parameters=self.parameters)

    def latest(self, region: str) -> str:
        """The latest version ARN of layer `a` in `region`."""
        found = self.layers.latest_version(region=region, layer_name="a")
        assert found is not None
        return found.layer_version_arn


def two_layers(tmp_path: Path) -> tuple[World, dict[str, str]]:
    """Layers `a` and `b` (folders), both consumed by `api`, each with a v1 published
    outside (their ARNs by key): a plan publishes both."""
    for key in ("a", "b"):
        (tmp_path / key).mkdir()
        (tmp_path / key / "f.txt").write_text(key)
    (tmp_path / "layers.yaml").write_text(
        "version: 1\nregion: us-east-1\ndefaults:\n  consumers:\n    functions: [api]\n"
        "layers:\n  a:\n    content: {path: a}\n  b:\n    content: {path: b}\n")
    world = World(workspace.Workspace.for_manifest(tmp_path / "layers.yaml"))
    old = {key: world.layers.put(region="us-east-1", layer_name=key, settings=model.Settings(),
                                 zip_bytes=b"old").layer_version_arn for key in ("a", "b")}
    return world, old


def test_the_plan_reads_each_region_and_tags_once_per_region(tmp_path: Path) -> None:
    """Functions by name are read in every region, one named by ARN only in its own, the
    tagged ones found once per region; the apply moves them all to the version it records."""
    world = World(space_of(tmp_path, "      functions: [api, "
                                     "'arn:aws:lambda:eu-west-1:123456789012:function:eu']\n"
                                     "      tags: {team: a}\n"))
    for region in REGIONS:
        world.functions.add(region=region, name="api")
    world.functions.add(region="eu-west-1", name="eu")
    world.functions.add(region="us-east-1", name="tagged", tags={"team": "a"})
    plan = world.plan()
    reads = [(operation, region, name) for operation, region, name in world.functions.calls]
    assert sorted(reads) == sorted([
        ("functions_tagged", "us-east-1", ""), ("functions_tagged", "eu-west-1", ""),
        ("function", "us-east-1", "api"), ("function", "eu-west-1", "api"),
        ("function", "eu-west-1", "eu"), ("function", "us-east-1", "tagged")])
    assert {change.address.thing for change in plan.changes
            if change.action is model.Action.UPDATE_FUNCTION} == {"api", "eu", "tagged"}
    report = world.apply(plan)
    assert report.ok, report.failed
    for region, name in (("us-east-1", "api"), ("eu-west-1", "api"), ("eu-west-1", "eu"),
                         ("us-east-1", "tagged")):
        found = world.functions.function(region=region, name=name)
        assert found is not None and found.layers == (world.latest(region),)
    for region in REGIONS:
        assert world.parameters.parameters[(region, NAME)].value == world.latest(region)
    assert [change for change in world.plan().changes if change.action is not
            model.Action.NOOP] == []


def test_an_update_lost_before_lambda_made_it_is_read_back_then_sent_once_more(
        tmp_path: Path) -> None:
    """An update whose outcome is unknown and that did not land: read back, found as the
    plan saw it, sent once more; one that landed: read back, not sent again."""
    world = World(space_of(tmp_path, "      functions: [api, web]\n"))
    world.functions.add(region="us-east-1", name="api")
    world.functions.add(region="eu-west-1", name="web")
    unknown = errors.OutcomeUnknown("lost")
    world.functions.update_faults["api"] = [UpdateFault(unknown, lands=False)]
    world.functions.update_faults["web"] = [UpdateFault(unknown, lands=True)]
    report = world.apply()
    assert report.ok, report.failed
    updates = [call for call in world.functions.calls if call[0] == "update_layers"]
    assert len(updates) == 3  # the lost one sent again; the landed one not
    assert sorted(moved.adopted for moved in report.moved) == [False, True]


def test_a_parameter_write_of_unknown_outcome_is_read_back(tmp_path: Path) -> None:
    """A PutParameter whose reply was lost after SSM wrote it: read back, not sent again."""
    world = World(space_of(tmp_path, "      tags: {team: none}\n"))
    world.parameters.put_faults[NAME] = [UpdateFault(errors.OutcomeUnknown("lost"),
                                                     lands=True)]
    report = world.apply()
    assert report.ok, report.failed
    puts = [call for call in world.parameters.calls if call[0] == "put"]
    assert len(puts) == 2  # one per region, none twice
    for region in REGIONS:
        assert world.parameters.parameters[(region, NAME)].value == world.latest(region)


def test_consumers_changed_since_the_plan_are_refused_not_overwritten(tmp_path: Path) -> None:
    """A function updated and a parameter written by someone else between plan and apply:
    both refused as stale, left as they are; the rest of the apply goes on."""
    world = World(space_of(tmp_path, "      functions: [api]\n"))
    for region in REGIONS:
        world.functions.add(region=region, name="api")
    plan = world.plan()
    world.functions.update_layers(region="us-east-1", name="api", layers=("mine",),
                                  revision_id=None)
    world.parameters.put(region="us-east-1", name=NAME, value="theirs", overwrite=False)
    report = world.apply(plan)
    stale = sorted((item.change.action.value, item.change.region) for item in report.failed)
    assert stale == [("put_parameter", "us-east-1"), ("update_function", "us-east-1")]
    assert all(isinstance(item.error, errors.RevisionStale) for item in report.failed)
    assert world.functions.function(region="us-east-1", name="api") is not None
    assert world.functions.functions[("us-east-1", "api")].layers == ("mine",)
    assert world.parameters.parameters[("us-east-1", NAME)].value == "theirs"
    found = world.functions.function(region="eu-west-1", name="api")
    assert found is not None and found.layers == (world.latest("eu-west-1"),)


def test_a_function_two_published_layers_move_gets_both_in_one_apply(tmp_path: Path) -> None:
    """Layers `a` and `b`, both published, both consumed by `api` (on their old versions,
    between two other layers): one apply moves api to both new versions, the other entries
    and the order kept; the second update starts from the first one's layers, not refused
    as stale."""
    world, old = two_layers(tmp_path)
    world.functions.add(region="us-east-1", name="api",
                        layers=("x:1", old["a"], "y:1", old["b"]))
    report = world.apply()
    assert report.ok, report.failed
    found = world.functions.function(region="us-east-1", name="api")
    assert found is not None
    new = {key: world.layers.latest_version(region="us-east-1", layer_name=key)
           for key in ("a", "b")}
    assert [version.version if version else None for version in new.values()] == [2, 2]
    assert found.layers == ("x:1", new["a"].layer_version_arn,  # type: ignore[union-attr]
                            "y:1", new["b"].layer_version_arn)  # type: ignore[union-attr]
    assert len(report.moved) == 2


def test_a_consumer_not_moved_holds_back_retention_but_not_a_stray_fillers_delete(
        tmp_path: Path) -> None:
    """api's update refused (busy): its failure reported, retention's delete of v1 waits,
    and the filler an earlier apply left (v2) is deleted all the same."""
    world = World(one_layer(tmp_path, "    retain: 1\n    consumers: {functions: [api]}\n"))
    old = world.layers.put(region="us-east-1", layer_name="a", settings=model.Settings(),
                           zip_bytes=b"old")
    world.layers.put(region="us-east-1", layer_name="a",
                     settings=model.Settings(description=planner.FILLER_DESCRIPTION),
                     zip_bytes=planner.filler_zip_bytes())
    world.functions.add(region="us-east-1", name="api", layers=(old.layer_version_arn,))
    world.functions.update_faults["api"] = [UpdateFault(errors.FunctionBusy(
        "busy", aws_code="ResourceConflictException"))]
    report = world.apply()
    assert [item.change.address.function for item in report.failed] == ["api"]
    assert [deleted.versions for deleted in report.deleted] == [(2,)]
    assert [item.change.details_as(model.DeleteDetails).version
            for item in report.not_attempted] == [1]
    assert [version.version for version in world.layers.all_versions(
        region="us-east-1", layer_name="a")] == [1, 3]


def test_a_second_layers_update_is_stale_when_its_own_entry_moved_since_the_plan(
        tmp_path: Path) -> None:
    """Of two layers moving one function, the second update starts from what the first left,
    but only if its own entry is still the plan's: one changed out of band in between is
    refused as stale, never overwritten."""

    world, old = two_layers(tmp_path)
    world.functions.add(region="us-east-1", name="api", layers=(old["a"], old["b"]))
    moves = {change.layer: change for change in world.plan().changes
             if change.action is model.Action.UPDATE_FUNCTION}
    coordination = applying_consumers.Coordination(tuple(moves.values()))
    new = {key: old[key][:-1] + "2" for key in ("a", "b")}
    applying_consumers.update_function(moves["a"], latest=new["a"], functions=world.functions,
                                       progress=lambda _: None, coordination=coordination)
    theirs = old["b"][:-1] + "7"
    world.functions.functions[("us-east-1", "api")].layers = (new["a"], theirs)
    with pytest.raises(errors.RevisionStale):
        applying_consumers.update_function(moves["b"], latest=new["b"],
                                           functions=world.functions,
                                           progress=lambda _: None, coordination=coordination)
    assert world.functions.functions[("us-east-1", "api")].layers == (new["a"], theirs)


@pytest.mark.parametrize("revisions", [False, True], ids=["no-revision-id", "revision-id"])
def test_a_function_already_on_the_target_is_done_not_stale(tmp_path: Path,
                                                            revisions: bool) -> None:
    """A function someone moved to exactly the plan's layers since the plan is done (found
    so), not refused as stale: where the endpoint reports no RevisionId (read first), and
    where the update carrying the plan's RevisionId is refused (read back)."""
    world = World(one_layer(tmp_path, "    consumers:\n      functions: [api]\n"))
    world.functions.add(region="us-east-1", name="api")
    assert world.apply().ok
    function = world.functions.functions[("us-east-1", "api")]
    function.layers = ()  # drift
    if not revisions:
        function.revision_id = None  # an endpoint like moto
    plan = world.plan()
    [move] = [change for change in plan.changes
              if change.action is model.Action.UPDATE_FUNCTION]
    world.functions.update_layers(region="us-east-1", name="api",
                                  layers=(world.latest("us-east-1"),), revision_id=None)
    if not revisions:
        function.revision_id = None
    report = world.apply(plan)
    assert report.ok, report.failed
    assert [moved.adopted for moved in report.moved] == [True]
    assert move.details_as(model.FunctionDetails).after == (world.latest("us-east-1"),)


def test_a_parameter_made_another_type_since_the_plan_is_stale(tmp_path: Path) -> None:
    """A parameter someone recreated as a StringList between plan and apply, holding the very
    value the plan saw, is refused as stale and left as it is (not replaced by a String)."""
    world = World(space_of(tmp_path, "      functions: [api]\n"))
    for region in REGIONS:
        world.functions.add(region=region, name="api")
        world.parameters.put(region=region, name=NAME, value="old", overwrite=False)
    plan = world.plan()
    [put, *_] = [change for change in plan.changes
                 if change.action is model.Action.PUT_PARAMETER]
    region = put.region
    assert put.details_as(model.ParameterDetails).before == "old"
    world.parameters.parameters[(region, NAME)] = model.ParameterValue(
        value="old", version=2, type="StringList")
    report = world.apply(plan)
    stale = [item for item in report.failed if item.change.region == region
             and item.change.action is model.Action.PUT_PARAMETER]
    assert len(stale) == 1 and isinstance(stale[0].error, errors.RevisionStale)
    assert world.parameters.parameters[(region, NAME)].type == "StringList"
