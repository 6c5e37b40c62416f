"""The use cases (planning, applying) against the in-memory FakeLayerStore: plan makes no write,
apply makes exactly the needed publishes and records each in the lockfile as it goes, one
failure stops nothing else, a second apply does nothing."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path, PurePath

import pytest
from fakes import FakeLayerStore

from reconciler import applying, artifacts, errors, model, planning, workspace
from reconciler.state.local import LocalStateBackend

MANIFEST = """\
version: 1
region: us-east-1
defaults:
  compatible_runtimes: [python3.12]
layers:
  alpha:
    description: first
    content: {path: src/alpha, prefix: python}
  beta:
    content: {path: src/beta}
"""


@pytest.fixture
def space(tmp_path: Path) -> workspace.Workspace:
    """A manifest with two folder layers."""
    for name in ("alpha", "beta"):
        folder = tmp_path / "src" / name
        folder.mkdir(parents=True)
        (folder / f"{name}.py").write_text(f"NAME = {name!r}\n")
    (tmp_path / "layers.yaml").write_text(MANIFEST)
    return workspace.Workspace.for_manifest(tmp_path / "layers.yaml")


def folder_layer_space(tmp_path: Path, manifest_text: str) -> workspace.Workspace:
    """A workspace whose manifest is `manifest_text`, beside a folder `a` with one file."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.txt").write_text("x")
    (tmp_path / "layers.yaml").write_text(manifest_text)
    return workspace.Workspace.for_manifest(tmp_path / "layers.yaml")


def run_plan(space: workspace.Workspace, store: FakeLayerStore, *,
             targets: tuple[str, ...] = (), regions: tuple[str, ...] = (),
             default_region: str | None = None) -> model.Plan:
    """Plan the workspace as the CLI does."""
    parsed = workspace.load_manifest(space)
    state = LocalStateBackend(space.lockfile_path)
    selection = planning.select(parsed, default_region=default_region, targets=targets,
                                regions=regions)
    return planning.make_plan(parsed=parsed, selection=selection, snapshot=state.read(),
                              state_location="lockfile:layers.lock.json",
                              manifest_digest=parsed.sha256, store=store,
                              code=artifacts.LocalCode(space=space, manifest=parsed,
                                                       objects=store.objects))


def run_apply(space: workspace.Workspace, store: FakeLayerStore, *,
              parallelism: int = 1) -> applying.ApplyReport:
    """Plan and apply the workspace as `apply --yes` does."""
    parsed = workspace.load_manifest(space)
    state = LocalStateBackend(space.lockfile_path)
    snapshot = state.read()
    selection = planning.select(parsed, default_region=None, targets=(), regions=())
    code = artifacts.LocalCode(space=space, manifest=parsed, objects=store.objects)
    plan = planning.make_plan(parsed=parsed, selection=selection, snapshot=snapshot,
                              state_location="lockfile:layers.lock.json",
                              manifest_digest=parsed.sha256, store=store, code=code)
    return applying.apply(plan, store=store, state=state, code=code, snapshot=snapshot,
                          objects=store.objects, parallelism=parallelism)


def test_plan_makes_no_write_and_no_lockfile(space: workspace.Workspace) -> None:
    """Planning lists the layers and writes nothing remote and no lockfile."""
    store = FakeLayerStore()
    result = run_plan(space, store)
    assert [c.action for c in result.changes] == [model.Action.CREATE] * 2
    assert store.writes() == []
    assert not space.lockfile_path.exists()


def test_apply_publishes_each_new_layer_once(space: workspace.Workspace) -> None:
    """The first apply publishes each layer exactly once and records both in the lockfile."""
    store = FakeLayerStore()
    report = run_apply(space, store)
    assert store.writes() == [("publish", "us-east-1", "alpha"), ("publish", "us-east-1", "beta")]
    lock = LocalStateBackend(space.lockfile_path).read().lock
    assert {key for key in lock.entries} == {("alpha", "us-east-1"), ("beta", "us-east-1")}
    assert [item.version.version for item in report.published] == [1, 1]
    entry = lock.get("alpha", "us-east-1")
    assert entry is not None and entry.code_sha256 == report.published[0].version.code_sha256


def test_second_apply_publishes_nothing_and_keeps_lockfile_bytes(
        space: workspace.Workspace) -> None:
    """Apply twice: the second makes no write call and leaves the lockfile byte-identical."""
    store = FakeLayerStore()
    run_apply(space, store)
    before = space.lockfile_path.read_bytes()
    store.calls.clear()
    report = run_apply(space, store)
    assert store.writes() == []
    assert report.published == [] and report.recorded == []
    assert space.lockfile_path.read_bytes() == before
    # In sync: one ListLayers for the region, no GetLayerVersion (the lock knows the
    # CodeSha256 of the versions it recorded).
    assert store.calls == [("list_layers", "us-east-1", "alpha,beta")]


def test_changed_file_publishes_only_that_layer(space: workspace.Workspace) -> None:
    """Editing one file publishes exactly that layer, as version 2."""
    store = FakeLayerStore()
    run_apply(space, store)
    (space.base_dir / "src" / "beta" / "beta.py").write_text("NAME = 'changed'\n")
    store.calls.clear()
    report = run_apply(space, store)
    assert store.writes() == [("publish", "us-east-1", "beta")]
    assert [(item.change.layer, item.version.version) for item in report.published] == [
        ("beta", 2)]
    entry = LocalStateBackend(space.lockfile_path).read().lock.get("beta", "us-east-1")
    assert entry is not None and entry.version == 2


def test_settings_change_publishes(space: workspace.Workspace) -> None:
    """A changed description publishes a new version with settings_changed."""
    store = FakeLayerStore()
    run_apply(space, store)
    space.manifest_path.write_text(MANIFEST.replace("description: first", "description: 1st"))
    result = run_plan(space, store)
    alpha = result.changes[0]
    assert (alpha.action, alpha.reasons) == (model.Action.PUBLISH,
                                             (model.Reason.SETTINGS_CHANGED,))


def test_deleted_lockfile_adopts_instead_of_republishing(space: workspace.Workspace) -> None:
    """Without the lockfile, identical published versions are adopted: no publish, the same
    entries rebuilt (under a new lineage: it is a new state)."""
    store = FakeLayerStore()
    run_apply(space, store)
    original = space.lockfile_path.read_bytes()
    space.lockfile_path.unlink()
    store.calls.clear()
    report = run_apply(space, store)
    assert store.writes() == []
    assert [change.reasons for change in report.recorded] == [(model.Reason.ADOPTED,)] * 2
    rebuilt = json.loads(space.lockfile_path.read_bytes())
    before = json.loads(original)
    assert rebuilt["layers"] == before["layers"] and rebuilt["serial"] == before["serial"]
    assert rebuilt["lineage"] != before["lineage"]


def test_partial_failure_keeps_what_succeeded(space: workspace.Workspace) -> None:
    """A failed publish stops nothing else: the other layer lands, is recorded, and the
    report names the failure and its cause."""
    store = FakeLayerStore(fail_publish={"alpha": errors.AwsError("boom",
                                                                  aws_code="InvalidParameter")})
    report = run_apply(space, store)
    assert not report.ok
    assert [(item.change.layer, item.error.message) for item in report.failed] == [
        ("alpha", "boom")]
    assert [item.change.layer for item in report.published] == ["beta"]
    lock = LocalStateBackend(space.lockfile_path).read().lock
    assert set(lock.entries) == {("beta", "us-east-1")}
    store.fail_publish.clear()
    store.calls.clear()
    rerun = run_apply(space, store)
    assert rerun.ok and store.writes() == [("publish", "us-east-1", "alpha")]


def test_a_failing_region_is_given_up_and_others_land(tmp_path: Path) -> None:
    """A region whose publishes keep failing (unreachable) is given up after a few failures;
    every other region's publishes land; the rest of that region is reported not attempted."""
    manifest = "version: 1\nregion: [eu-west-1, us-east-1]\nlayers:\n" + "".join(
        f"  l{index}:\n    content: {{path: a}}\n" for index in range(4))
    space = folder_layer_space(tmp_path, manifest)
    store = FakeLayerStore(fail_region={"eu-west-1": errors.EndpointError("unreachable")})
    report = run_apply(space, store)
    assert sorted(item.change.region for item in report.published) == ["us-east-1"] * 4
    assert len(report.failed) == applying.REGION_FAILURES_TO_GIVE_UP
    assert len(report.not_attempted) == 4 - applying.REGION_FAILURES_TO_GIVE_UP
    assert all("eu-west-1 kept failing" in item.why for item in report.not_attempted)


def test_stop_request_starts_no_new_publish(space: workspace.Workspace) -> None:
    """Once stop is asked (SIGTERM, Ctrl-C), no new publish starts; the report says so."""
    parsed = workspace.load_manifest(space)
    state = LocalStateBackend(space.lockfile_path)
    store = FakeLayerStore()
    code = artifacts.LocalCode(space=space, manifest=parsed)
    selection = planning.select(parsed, default_region=None, targets=(), regions=())
    plan = planning.make_plan(parsed=parsed, selection=selection, snapshot=state.read(),
                              state_location="x", manifest_digest="", store=store, code=code)
    stop = threading.Event()
    stop.set()
    report = applying.apply(plan, store=store, state=state, code=code, snapshot=state.read(),
                            stop=stop)
    assert report.interrupted and store.writes() == []
    assert [item.change.layer for item in report.not_attempted] == ["alpha", "beta"]


def test_plan_with_a_layer_in_error_is_refused_by_apply(space: workspace.Workspace) -> None:
    """A layer whose content fails is shown as an error; the others are planned; apply
    refuses to start while any layer has an error."""
    (space.base_dir / "src" / "beta" / "beta.py").unlink()
    store = FakeLayerStore()
    plan = run_plan(space, store)
    assert [change.layer for change in plan.changes] == ["alpha"]
    assert [error.layer for error in plan.errors] == ["beta"]
    state = LocalStateBackend(space.lockfile_path)
    parsed = workspace.load_manifest(space)
    with pytest.raises(errors.ApplyRefused, match="beta"):
        applying.apply(plan, store=store, state=state,
                       code=artifacts.LocalCode(space=space, manifest=parsed),
                       snapshot=state.read())
    assert store.writes() == []


def test_out_of_band_publish_is_drift(space: workspace.Workspace) -> None:
    """A version published outside reconcile with other content is drift, and gets replaced."""
    store = FakeLayerStore()
    run_apply(space, store)
    store.put(region="us-east-1", layer_name="alpha", settings=model.Settings(),
              zip_bytes=b"not ours")
    result = run_plan(space, store)
    alpha = result.changes[0]
    assert alpha.action is model.Action.PUBLISH
    assert alpha.reasons[0] is model.Reason.REMOTE_DRIFT
    assert ("get", "us-east-1", "alpha") in store.calls


def test_target_limits_the_plan(space: workspace.Workspace) -> None:
    """--target plans only the named layers; an unknown name is a usage error."""
    store = FakeLayerStore()
    result = run_plan(space, store, targets=("beta",))
    assert [c.layer for c in result.changes] == ["beta"]
    with pytest.raises(errors.UsageError, match="nope"):
        run_plan(space, store, targets=("nope",))
    # beta is created, so the plan reads the region's code storage too (for its warning).
    assert store.calls == [("list_layers", "us-east-1", "beta"),
                           ("account_settings", "us-east-1", "")]


def test_unknown_region_is_a_usage_error(space: workspace.Workspace) -> None:
    """--region must name a region of the manifest."""
    with pytest.raises(errors.UsageError, match="eu-west-1"):
        run_plan(space, FakeLayerStore(), regions=("eu-west-1",))


def test_content_error_asks_lambda_nothing_about_that_layer(
        space: workspace.Workspace) -> None:
    """A layer whose folder is empty is an error of the plan, and Lambda is asked nothing
    about it."""
    (space.base_dir / "src" / "beta" / "beta.py").unlink()
    store = FakeLayerStore()
    plan = run_plan(space, store)
    assert "has no files to package" in plan.errors[0].message
    assert store.calls == [("list_layers", "us-east-1", "alpha"),
                           ("account_settings", "us-east-1", "")]


def test_multi_region_plans_each_region(tmp_path: Path) -> None:
    """A list of regions plans every layer in each, sorted by layer then region."""
    space = folder_layer_space(tmp_path,
        "version: 1\nregion: [us-west-2, eu-west-1]\nlayers:\n  a:\n    content: {path: a}\n")
    result = run_plan(space, FakeLayerStore())
    assert [(c.layer, c.region) for c in result.changes] == [
        ("a", "eu-west-1"), ("a", "us-west-2")]


def test_upload_s3_without_a_bucket_is_refused_before_aws(tmp_path: Path) -> None:
    """`upload: s3` with no artifact_bucket to upload through is refused by plan, naming the
    line, before any AWS call."""
    space = folder_layer_space(tmp_path,
        "version: 1\nregion: us-east-1\nlayers:\n  a:\n"
        "    content: {path: a}\n    upload: s3\n")
    store = FakeLayerStore()
    with pytest.raises(errors.ManifestError) as failure:
        run_plan(space, store)
    assert failure.value.problems[0].field == "layers.a.upload"
    assert failure.value.problems[0].line == 6
    assert store.calls == []


def test_arn_key_in_another_account_is_refused(tmp_path: Path) -> None:
    """A layer named by an ARN of another account cannot be published: a located error."""
    arn = "arn:aws:lambda:us-east-1:999999999999:layer:shared"
    space = folder_layer_space(tmp_path,
        f"version: 1\nregion: us-east-1\nlayers:\n  {arn}:\n    content: {{path: a}}\n")
    store = FakeLayerStore()
    with pytest.raises(errors.ManifestError, match="account 999999999999"):
        run_plan(space, store)
    assert store.writes() == []


def test_arn_key_is_planned_by_name(tmp_path: Path) -> None:
    """A layer named by an ARN of this account is listed and published by its name."""
    arn = "arn:aws:lambda:us-east-1:123456789012:layer:shared"
    space = folder_layer_space(tmp_path,
        f"version: 1\nlayers:\n  {arn}:\n    content: {{path: a}}\n")
    store = FakeLayerStore()
    result = run_plan(space, store, default_region="us-east-1")
    assert ("list_layers", "us-east-1", "shared") in store.calls
    assert result.changes[0].layer == arn
    assert result.changes[0].layer_name == "shared"


def test_unchanged_layer_is_never_zipped(space: workspace.Workspace) -> None:
    """After an apply, planning builds no zip; a changed layer gets exactly its own zip."""
    store = FakeLayerStore()
    run_apply(space, store)
    build_dir = space.cache_dir / "build"
    for zip_path in build_dir.glob("*.zip"):
        zip_path.unlink()
    run_plan(space, store)
    assert list(build_dir.glob("*.zip")) == []
    (space.base_dir / "src" / "beta" / "beta.py").write_text("NAME = 'changed'\n")
    result = run_plan(space, store)
    assert result.basis is not None
    beta = result.basis.fingerprint("beta")
    assert [path.name for path in build_dir.glob("*.zip")] == [f"{beta}.zip"]


def test_build_folder_keeps_only_what_the_plan_needs(space: workspace.Workspace) -> None:
    """Zips of earlier contents are pruned by the next full plan."""
    store = FakeLayerStore()
    run_plan(space, store)
    (space.base_dir / "src" / "beta" / "beta.py").write_text("NAME = 'changed'\n")
    result = run_plan(space, store)
    kept = sorted(path.name for path in (space.cache_dir / "build").glob("*.zip"))
    assert result.basis is not None
    assert kept == sorted(f"{fingerprint}.zip" for _, fingerprint in result.basis.fingerprints)


def test_zip_over_direct_upload_limit_is_refused_before_upload(tmp_path: Path) -> None:
    """A zip over 50 MB without artifact_bucket fails the plan, naming the option; no publish."""
    import os
    import zipfile

    (tmp_path / "dist").mkdir()
    with zipfile.ZipFile(tmp_path / "dist" / "big.zip", "w", zipfile.ZIP_STORED) as big:
        big.writestr("python/blob.bin", os.urandom(model.MAX_DIRECT_UPLOAD_BYTES + 1))
    (tmp_path / "layers.yaml").write_text(
        "version: 1\nregion: us-east-1\nlayers:\n  big:\n    content: {zip: dist/big.zip}\n")
    space = workspace.Workspace.for_manifest(tmp_path / "layers.yaml")
    store = FakeLayerStore()
    plan = run_plan(space, store)
    (failure,) = plan.errors
    assert plan.changes == ()  # an error, not also a change to make
    assert "over Lambda's 52,428,800-byte limit" in failure.message
    assert "layers.yaml:5:14: layers.big" in failure.message
    assert failure.hint is not None and "artifact_bucket" in failure.hint
    assert store.writes() == []


def test_zip_that_no_longer_matches_stops_apply_before_any_publish(
        space: workspace.Workspace) -> None:
    """Content edited between plan and apply stops apply before its first publish: the
    rebuilt zip does not have the planned CodeSha256."""
    store = FakeLayerStore()
    plan = run_plan(space, store)
    for zip_path in (space.cache_dir / "build").glob("*.zip"):
        zip_path.unlink()
    (space.base_dir / "src" / "beta" / "beta.py").write_text("NAME = 'edited'\n")
    state = LocalStateBackend(space.lockfile_path)
    parsed = workspace.load_manifest(space)
    with pytest.raises(errors.ApplyFailed, match="nothing was published"):
        applying.apply(plan, store=store, state=state,
                       code=artifacts.LocalCode(space=space, manifest=parsed),
                       snapshot=state.read())
    assert store.writes() == []
    assert not space.lockfile_path.exists()


def test_saved_plan_applies_from_a_fresh_code_cache(space: workspace.Workspace) -> None:
    """With no .reconcile/ at all, apply rebuilds each planned zip and uploads exactly the
    planned CodeSha256."""
    store = FakeLayerStore()
    plan = run_plan(space, store)
    shutil.rmtree(space.cache_dir)
    state = LocalStateBackend(space.lockfile_path)
    parsed = workspace.load_manifest(space)
    report = applying.apply(plan, store=store, state=state,
                            code=artifacts.LocalCode(space=space, manifest=parsed),
                            snapshot=state.read())
    assert report.ok
    assert {item.version.code_sha256 for item in report.published} == {
        change.desired.code_sha256 for change in plan.changes}


class LockfileSabotagingStore(FakeLayerStore):
    """A store whose publish turns the lockfile's path into a folder, so the write after it
    fails (a disk that fills up, a checkout made read-only, in miniature)."""

    lockfile_path: Path = Path()

    def publish(self, *, region: str, layer_name: str, settings: model.Settings,
                zip_path: PurePath | None,
                s3_object: model.S3Object | None = None) -> model.RemoteVersion:
        """Publish, then make the lockfile unwritable."""
        version = super().publish(region=region, layer_name=layer_name, settings=settings,
                                  zip_path=zip_path, s3_object=s3_object)
        self.lockfile_path.mkdir(exist_ok=True)
        return version


def test_lockfile_write_failure_after_publish_names_the_version(
        space: workspace.Workspace) -> None:
    """When the lockfile cannot be written after a publish, the error names that version."""
    store = LockfileSabotagingStore()
    store.lockfile_path = space.lockfile_path
    report = run_apply(space, store)
    assert "arn:aws:lambda:us-east-1:123456789012:layer:alpha:1 is published but not recorded" \
        in report.failed[0].error.message
    assert store.writes() == [("publish", "us-east-1", "alpha")]
    assert [item.change.layer for item in report.not_attempted] == ["beta"]


def test_content_reached_through_a_symlink_still_skips_tool_files(tmp_path: Path) -> None:
    """A content path that reaches the manifest's folder through a symlink converges too."""
    project = tmp_path / "project"
    (project / "python").mkdir(parents=True)
    (project / "python" / "m.py").write_text("X = 1\n")
    (tmp_path / "link").symlink_to(project)
    (project / "layers.yaml").write_text(
        f"version: 1\nregion: us-east-1\nlayers:\n  dot:\n    content: {{path: {tmp_path}/link}}\n")
    space = workspace.Workspace.for_manifest(project / "layers.yaml")
    store = FakeLayerStore()
    run_apply(space, store)
    run_apply(space, store)
    assert store.writes() == [("publish", "us-east-1", "dot")]


def test_unremovable_build_leftovers_do_not_fail_the_plan(space: workspace.Workspace) -> None:
    """Pruning the build cache is best effort: an odd leftover never fails a plan."""
    (space.cache_dir / "build" / "stale.zip").mkdir(parents=True)
    result = run_plan(space, FakeLayerStore())
    assert [c.action for c in result.changes] == [model.Action.CREATE] * 2


def test_upload_s3_goes_through_the_bucket_once(tmp_path: Path) -> None:
    """`upload: s3` uploads the zip to the artifact bucket and publishes from S3; when the
    version is gone and the layer is published again, the object is found, not re-uploaded."""
    space = folder_layer_space(tmp_path,
        "version: 1\nregion: us-east-1\nartifact_bucket: arts\nlayers:\n  a:\n"
        "    content: {path: a}\n    upload: s3\n")
    store = FakeLayerStore()
    report = run_apply(space, store)
    assert not report.failed
    assert store.publish_routes == [("us-east-1", "a", "s3")]
    store.delete_version(region="us-east-1", layer_name="a", version=1)
    report = run_apply(space, store)
    assert not report.failed
    assert store.publish_routes[-1] == ("us-east-1", "a", "s3")
    uploads = [call for call in store.objects.calls if call[0] == "upload"]
    assert len(uploads) == 1 and uploads[0][2].startswith("arts/a/")


def test_s3_source_is_planned_from_head_object_and_a_missing_one_is_an_error(
        tmp_path: Path) -> None:
    """An S3 source's CodeSha256 comes from HeadObject (no download) and it is published from
    the object; a missing object is a located error of its layer, and nothing is published."""
    (tmp_path / "layers.yaml").write_text(
        "version: 1\nregion: us-east-1\nlayers:\n  a:\n"
        "    content: {s3: {bucket: src, key: a.zip}}\n"
        "  b:\n    content: {s3: {bucket: src, key: missing.zip}}\n")
    space = workspace.Workspace.for_manifest(tmp_path / "layers.yaml")
    store = FakeLayerStore()
    store.objects.objects[("us-east-1", "src", "a.zip")] = (b"PK-zip-bytes", {})
    plan = run_plan(space, store)
    [change] = plan.changes
    assert change.details_as(model.PublishDetails).code == model.CodeLocation(
        route=model.UploadRoute.S3_SOURCE, s3=model.S3Object(bucket="src", key="a.zip"))
    assert change.desired.code_size == len(b"PK-zip-bytes")
    [error] = plan.errors
    assert error.layer == "b"
    assert error.message.startswith(f"{tmp_path / 'layers.yaml'}:7:")
    assert "does not exist" in error.message
    assert store.writes() == []
