"""The use cases against the in-memory FakeLayerStore: plan makes no write, apply makes exactly
the needed publishes and records each in the lockfile as it goes, a second apply does nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeLayerStore

from reconciler import errors, model, reconcile, workspace
from reconciler.state import local as local_state

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


def recorded(space: workspace.Workspace) -> model.Lock:
    """The lock recorded in the workspace's lockfile."""
    return local_state.LocalStateBackend(space.lockfile_path).read().lock


def run_plan(space: workspace.Workspace, store: FakeLayerStore,
             **options: list[str]) -> reconcile.PlanResult:
    """Plan the workspace as the CLI does."""
    return reconcile.make_plan(parsed=workspace.load_manifest(space),
                               lock=recorded(space), store=store, space=space,
                               default_region=None, **options)


def run_apply(space: workspace.Workspace, store: FakeLayerStore) -> reconcile.ApplyReport:
    """Plan and apply the workspace as `apply --yes` does."""
    result = run_plan(space, store)
    return reconcile.apply(result=result, lock=recorded(space), store=store,
                           space=space)


def test_plan_makes_no_write_and_no_lockfile(space: workspace.Workspace) -> None:
    """Planning lists the layers and writes nothing remote and no lockfile."""
    store = FakeLayerStore()
    result = run_plan(space, store)
    assert [c.action for c in result.plan.changes] == [model.Action.CREATE] * 2
    assert store.writes() == []
    assert not space.lockfile_path.exists()


def test_apply_publishes_each_new_layer_once(space: workspace.Workspace) -> None:
    """The first apply publishes each layer exactly once and records both in the lockfile."""
    store = FakeLayerStore()
    report = run_apply(space, store)
    assert store.writes() == [("publish", "us-east-1", "alpha"), ("publish", "us-east-1", "beta")]
    lock = recorded(space)
    assert {key for key in lock.entries} == {("alpha", "us-east-1"), ("beta", "us-east-1")}
    assert [version.version for _, version in report.published] == [1, 1]
    entry = lock.get("alpha", "us-east-1")
    assert entry is not None and entry.code_sha256 == report.published[0][1].code_sha256


def test_second_apply_publishes_nothing_and_keeps_lockfile_bytes(
        space: workspace.Workspace) -> None:
    """Apply twice: the second makes no write call and leaves the lockfile byte-identical."""
    store = FakeLayerStore()
    run_apply(space, store)
    before = space.lockfile_path.read_bytes()
    store.calls.clear()
    report = run_apply(space, store)
    assert store.writes() == []
    assert report.published == () and report.recorded == ()
    assert space.lockfile_path.read_bytes() == before
    # In sync: only ListLayerVersions, no GetLayerVersion (the lock knows the CodeSha256).
    assert [call[0] for call in store.calls] == ["list", "list"]


def test_changed_file_publishes_only_that_layer(space: workspace.Workspace) -> None:
    """Editing one file publishes exactly that layer, as version 2."""
    store = FakeLayerStore()
    run_apply(space, store)
    (space.base_dir / "src" / "beta" / "beta.py").write_text("NAME = 'changed'\n")
    store.calls.clear()
    report = run_apply(space, store)
    assert store.writes() == [("publish", "us-east-1", "beta")]
    assert [(c.layer, v.version) for c, v in report.published] == [("beta", 2)]
    entry = recorded(space).get("beta", "us-east-1")
    assert entry is not None and entry.version == 2


def test_settings_change_publishes(space: workspace.Workspace) -> None:
    """A changed description publishes a new version with settings_changed."""
    store = FakeLayerStore()
    run_apply(space, store)
    space.manifest_path.write_text(MANIFEST.replace("description: first", "description: 1st"))
    result = run_plan(space, store)
    alpha = result.plan.changes[0]
    assert (alpha.action, alpha.reasons) == (model.Action.PUBLISH,
                                             (model.Reason.SETTINGS_CHANGED,))


def test_deleted_lockfile_adopts_instead_of_republishing(space: workspace.Workspace) -> None:
    """Without the lockfile, identical published versions are adopted: no publish, lock rebuilt."""
    store = FakeLayerStore()
    run_apply(space, store)
    original = space.lockfile_path.read_bytes()
    space.lockfile_path.unlink()
    store.calls.clear()
    report = run_apply(space, store)
    assert store.writes() == []
    assert [change.reasons for change in report.recorded] == [(model.Reason.ADOPTED,)] * 2
    assert space.lockfile_path.read_bytes() == original


def test_partial_failure_keeps_what_succeeded(space: workspace.Workspace) -> None:
    """When the second publish fails, the first is in the lockfile and apply says so."""
    store = FakeLayerStore(fail_publish={"beta": errors.AwsError("boom", code="ServiceException")})
    with pytest.raises(errors.ApplyFailed) as failure:
        run_apply(space, store)
    assert "apply stopped at beta" in failure.value.message
    assert "alpha (us-east-1) v1" in failure.value.message
    lock = recorded(space)
    assert set(lock.entries) == {("alpha", "us-east-1")}


def test_out_of_band_publish_is_drift(space: workspace.Workspace) -> None:
    """A version published outside reconcile with other content is drift, and gets replaced."""
    store = FakeLayerStore()
    run_apply(space, store)
    store.put(region="us-east-1", layer_name="alpha", settings=model.Settings(),
              zip_bytes=b"not ours")
    result = run_plan(space, store)
    alpha = result.plan.changes[0]
    assert alpha.action is model.Action.PUBLISH
    assert alpha.reasons[0] is model.Reason.REMOTE_DRIFT
    assert ("get", "us-east-1", "alpha") in store.calls


def test_target_limits_the_plan(space: workspace.Workspace) -> None:
    """--target plans only the named layers; an unknown name is a usage error."""
    store = FakeLayerStore()
    result = run_plan(space, store, targets=["beta"])
    assert [c.layer for c in result.plan.changes] == ["beta"]
    with pytest.raises(errors.UsageError, match="nope"):
        run_plan(space, store, targets=["nope"])
    assert store.calls == [("list", "us-east-1", "beta")]


def test_unknown_region_is_a_usage_error(space: workspace.Workspace) -> None:
    """--region must name a region of the manifest."""
    with pytest.raises(errors.UsageError, match="eu-west-1"):
        run_plan(space, FakeLayerStore(), regions=["eu-west-1"])


def test_content_error_stops_before_any_aws_call(space: workspace.Workspace) -> None:
    """A layer whose folder is empty fails the plan before Lambda is asked anything."""
    (space.base_dir / "src" / "beta" / "beta.py").unlink()
    store = FakeLayerStore()
    with pytest.raises(errors.ContentError):
        run_plan(space, store)
    assert store.calls == []


def test_multi_region_plans_each_region(tmp_path: Path) -> None:
    """A list of regions plans every layer in each, sorted by layer then region."""
    space = folder_layer_space(tmp_path,
        "version: 1\nregion: [us-west-2, eu-west-1]\nlayers:\n  a:\n    content: {path: a}\n")
    result = run_plan(space, FakeLayerStore())
    assert [(c.layer, c.region) for c in result.plan.changes] == [
        ("a", "eu-west-1"), ("a", "us-west-2")]


def test_unsupported_feature_is_refused_before_aws(tmp_path: Path) -> None:
    """A manifest using sharing (not built yet) is refused by plan, naming the line."""
    space = folder_layer_space(tmp_path,
        "version: 1\nregion: us-east-1\nlayers:\n  a:\n    content: {path: a}\n"
        "    share:\n      - account: '123456789012'\n")
    store = FakeLayerStore()
    with pytest.raises(errors.ManifestError) as failure:
        run_plan(space, store)
    assert failure.value.problems[0].field == "layers.a.share"
    assert failure.value.problems[0].line == 7
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
    result = reconcile.make_plan(parsed=workspace.load_manifest(space), lock=model.Lock(),
                                 store=store, space=space, default_region="us-east-1")
    assert ("list", "us-east-1", "shared") in store.calls
    assert result.plan.changes[0].layer == arn
    assert result.plan.changes[0].layer_name == "shared"


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
    beta = result.artifacts["beta"]
    assert [path.name for path in build_dir.glob("*.zip")] == [f"{beta.fingerprint}.zip"]
    assert result.artifacts["alpha"].zip_path is None


def test_build_folder_keeps_only_what_the_plan_needs(space: workspace.Workspace) -> None:
    """Zips of earlier contents are pruned by the next full plan."""
    store = FakeLayerStore()
    run_plan(space, store)
    (space.base_dir / "src" / "beta" / "beta.py").write_text("NAME = 'changed'\n")
    result = run_plan(space, store)
    kept = sorted(path.name for path in (space.cache_dir / "build").glob("*.zip"))
    assert kept == sorted(f"{a.fingerprint}.zip" for a in result.artifacts.values())


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
    with pytest.raises(errors.ContentError) as failure:
        run_plan(space, store)
    assert "over Lambda's 52,428,800-byte limit" in failure.value.message
    assert "layers.yaml:5:14: layers.big" in failure.value.message
    assert failure.value.hint is not None and "artifact_bucket" in failure.value.hint
    assert store.writes() == []


def test_missing_zip_stops_apply_before_any_publish(space: workspace.Workspace) -> None:
    """A build zip removed between plan and apply stops apply before its first publish."""
    store = FakeLayerStore()
    result = run_plan(space, store)
    zip_path = result.artifacts["beta"].zip_path
    assert zip_path is not None
    Path(zip_path).unlink()
    with pytest.raises(errors.ApplyFailed, match="nothing was published"):
        reconcile.apply(result=result, lock=model.Lock(), store=store, space=space)
    assert store.writes() == []
    assert not space.lockfile_path.exists()


class LockfileSabotagingStore(FakeLayerStore):
    """A store whose publish turns the lockfile's path into a folder, so the write after it
    fails (a disk that fills up, a checkout made read-only, in miniature)."""

    lockfile_path: Path = Path()

    def publish(self, *, region: str, layer_name: str, settings: model.Settings,
                zip_path: Path) -> model.RemoteVersion:
        """Publish, then make the lockfile unwritable."""
        version = super().publish(region=region, layer_name=layer_name, settings=settings,
                                  zip_path=zip_path)
        self.lockfile_path.mkdir(exist_ok=True)
        return version


def test_lockfile_write_failure_after_publish_names_the_version(
        space: workspace.Workspace) -> None:
    """When the lockfile cannot be written after a publish, the error names that version."""
    store = LockfileSabotagingStore()
    store.lockfile_path = space.lockfile_path
    with pytest.raises(errors.ApplyFailed) as failure:
        run_apply(space, store)
    assert "arn:aws:lambda:us-east-1:123456789012:layer:alpha:1 is published but not recorded" \
        in failure.value.message
    assert store.writes() == [("publish", "us-east-1", "alpha")]


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
    assert [c.action for c in result.plan.changes] == [model.Action.CREATE] * 2
