"""Issue 18, item 3, as rules and through the use cases with the fake Lambda: a filler an
apply left behind is found by the next plan (description, then CodeSha256) and deleted as a
`delete` change with reason stray_filler unless another apply holds the lock; it is never the
latest version, never among `retain`'s kept versions, and its number stays taken, so the
rerun lands on the same number. Apply uploads before any filler and deletes its fillers on
every failure after them."""

from __future__ import annotations

from pathlib import Path, PurePath

from fakes import FakeArtifactStore, FakeLayerStore
from test_fleet_planner import ARN, CODE_A, CODE_B, S1, built, deleted, lock, numbers, remote, spec
from test_reconcile import folder_layer_space, run_apply, run_plan

from reconciler import errors, model, planner

R, A = model.Reason, model.Action
FILLER = model.Settings(description=planner.FILLER_DESCRIPTION)
HOLDER = errors.LockHolder(lock_id="6f1c", who="ci", host="runner-7", pid=4242,
                           operation="apply", created="2026-12-06T10:00:00+00:00",
                           path="layers.lock.json")


def filler(version: int, *, region: str = "us-east-1",
           code: str | None = None) -> model.RemoteVersion:
    """A filler version of utils as ListLayerVersions lists it (`code`: as GetLayerVersion
    tells it)."""
    return model.RemoteVersion(version=version, layer_version_arn=ARN.format(region, version),
                               settings=FILLER, code_sha256=code)


def confirmed(version: int, *, region: str = "us-east-1") -> model.RemoteVersion:
    """A filler whose CodeSha256 was read: the filler zip's."""
    return filler(version, region=region, code=planner.filler_code_sha256())


def inputs_with(versions: tuple[model.RemoteVersion, ...], *, latest: model.RemoteVersion | None,
                recorded: int | None, layer: model.LayerSpec | None = None,
                region: str = "us-east-1", code: str = CODE_A) -> planner.Inputs:
    """Inputs for utils in `region` that listed `versions`."""
    return planner.Inputs(spec=layer or spec(align=True), region=region, artifact=built(code),
                          lock_entry=lock(recorded, region) if recorded is not None else None,
                          remote_latest=latest, versions=versions, function_uses={})


# --- the rules -------------------------------------------------------------------------------

def test_confirmed_fillers_are_stray_filler_deletes_and_the_rest_stays() -> None:
    """Fillers above the recorded latest (an apply killed before its real publish) are
    deleted as `delete` changes with reason stray_filler; the real latest stays unchanged."""
    item = inputs_with((remote(1), confirmed(2), confirmed(3)), latest=remote(1), recorded=1)
    changes = planner.plan([item]).changes
    assert [(c.action, numbers(c)[2], c.reasons) for c in changes] == [
        (A.NOOP, None, ()), (A.DELETE, 2, (R.STRAY_FILLER,)),
        (A.DELETE, 3, (R.STRAY_FILLER,))]


def test_a_filler_is_deleted_only_once_its_code_is_the_filler_zip() -> None:
    """A version with the filler's description is read (GetLayerVersion) before it is
    deleted, and one whose bytes are not the filler zip's is no filler and stays."""
    unread = inputs_with((remote(1), filler(2)), latest=remote(1), recorded=1)
    assert planner.missing_evidence(unread) == {planner.Evidence.VERSION_SIZES}
    assert planner.versions_to_read(unread.spec, unread.versions or ()) == (filler(2),)
    other = inputs_with((remote(1), filler(2, code=CODE_B)), latest=remote(1), recorded=1)
    assert [c.action for c in planner.plan([other]).changes] == [A.NOOP]


def test_while_another_apply_holds_the_lock_the_plan_deletes_no_filler_and_says_why() -> None:
    """With an apply holding the lock, its fillers may be in use: no delete is planned, and
    the plan's warning names the holder and the layer and region."""
    item = inputs_with((remote(1), confirmed(2)), latest=remote(1), recorded=1)
    decided = planner.plan([item], lock_holder=HOLDER)
    assert [c.action for c in decided.changes] == [A.NOOP]
    assert not decided.has_changes
    [warning] = decided.warnings
    assert "utils (us-east-1)" in warning and "ci on runner-7, pid 4242" in warning
    assert "force-unlock 6f1c" in warning


def test_a_filler_listed_as_the_latest_is_replaced_by_the_real_latest() -> None:
    """A filler is never a region's latest layer: the real latest is the highest version
    that is not one (none at all when only fillers are left)."""
    assert planner.real_latest(confirmed(3), (remote(1), confirmed(2), confirmed(3))) == \
        remote(1)
    assert planner.real_latest(filler(2), (filler(1), filler(2))) is None
    assert planner.real_latest(remote(4), ()) == remote(4)


def test_the_numbers_fillers_took_stay_taken() -> None:
    """A region whose unchanged latest is v1 with stray fillers v2, v3 above it publishes
    next at v4, and a region ahead at v3 is aligned up to v4 with it (the alignment target
    rises to the number a publish below it would get), with no filler needed anywhere."""
    behind = inputs_with((remote(1, "us-west-2"), confirmed(2, region="us-west-2"),
                          confirmed(3, region="us-west-2")),
                         latest=remote(1, "us-west-2"), recorded=1, region="us-west-2")
    ahead = inputs_with((remote(1), remote(2), remote(3)), latest=remote(3), recorded=3)
    changes = planner.plan([ahead, behind]).changes
    publishes = {c.region: (c.action, *numbers(c)[:2]) for c in changes
                 if c.action is not A.DELETE}
    assert publishes == {"us-east-1": (A.PUBLISH, 4, 0), "us-west-2": (A.PUBLISH, 4, 0)}
    assert deleted(changes) == [2, 3]


def test_a_create_over_fillers_only_expects_the_number_after_them() -> None:
    """A region holding only fillers (a first release killed before its real version) is a
    create whose expected version is above them, and the fillers are deleted."""
    item = inputs_with((confirmed(1), confirmed(2)), latest=None, recorded=None,
                       layer=spec())
    changes = planner.plan([item]).changes
    assert [(c.action, numbers(c)[0] or numbers(c)[2]) for c in changes] == [
        (A.CREATE, 3), (A.DELETE, 1), (A.DELETE, 2)]


def test_fillers_never_count_among_the_versions_retain_keeps() -> None:
    """retain: 2 keeps the two newest real versions; the fillers between them are deleted
    as stray fillers, not counted as kept."""
    versions = (remote(1), remote(2), confirmed(3), confirmed(4), remote(5))
    item = inputs_with(versions, latest=remote(5), recorded=5, layer=spec(retain=2))
    changes = planner.plan([item]).changes
    assert [(numbers(c)[2], c.reasons) for c in changes if c.action is A.DELETE] == [
        (1, (R.RETENTION,)), (3, (R.STRAY_FILLER,)), (4, (R.STRAY_FILLER,))]


def test_a_layer_with_align_versions_lists_its_versions_first() -> None:
    """An aligned layer (or one whose latest is a filler) lists every version before
    anything else is asked, so a filler is never compared as if it were the layer."""
    aligned = planner.Inputs(spec=spec(align=True), region="us-east-1", artifact=built(CODE_A),
                             lock_entry=None, remote_latest=remote(2, code=None))
    assert planner.missing_evidence(aligned) == {planner.Evidence.VERSIONS}
    plain = planner.Inputs(spec=spec(), region="us-east-1", artifact=built(CODE_A),
                           lock_entry=None, remote_latest=filler(2))
    assert planner.missing_evidence(plain) == {planner.Evidence.VERSIONS}
    unaligned = planner.Inputs(spec=spec(), region="us-east-1", artifact=built(CODE_A),
                               lock_entry=lock(2), remote_latest=remote(2))
    assert planner.missing_evidence(unaligned) == frozenset()


# --- through plan and apply, with the fake Lambda ------------------------------------------

def manifest(extra: str = "", *, regions: str = "us-east-1, eu-west-1") -> str:
    """Layer `a` from folder `a`, aligned over `regions`, with `extra` under the layer."""
    return (f"version: 1\nregion: [{regions}]\nlayers:\n  a:\n    content: {{path: a}}\n"
            f"    align_versions: true\n{extra}")


def put_fillers(store: FakeLayerStore, *, region: str, count: int) -> None:
    """Fillers as a killed apply leaves them."""
    for _ in range(count):
        store.put(region=region, layer_name="a", settings=FILLER,
                  zip_bytes=planner.filler_zip_bytes())


def live(store: FakeLayerStore, region: str) -> list[tuple[int, str | None]]:
    """(number, description) of each live version of `a` in `region`."""
    return [(version.version, version.settings.description)
            for version in store.all_versions(region=region, layer_name="a")]


def test_an_apply_deletes_fillers_a_killed_apply_left_and_lands_on_the_same_number(
        tmp_path: Path) -> None:
    """eu-west-1 is at v3 (published elsewhere) and us-east-1 holds fillers v2, v3 that a
    killed apply left above its v1: the rerun publishes v4 in both (no filler: the numbers
    are taken), deletes the two fillers, and the plan after it is clean."""
    space = folder_layer_space(tmp_path, manifest())
    store = FakeLayerStore()
    first = run_apply(space, store)
    assert first.ok
    (tmp_path / "a" / "f.txt").write_text("y")
    for _ in range(2):
        store.put(region="eu-west-1", layer_name="a", settings=S1, zip_bytes=b"other")
    put_fillers(store, region="us-east-1", count=2)  # v2, v3 in us-east-1
    report = run_apply(space, store)
    assert report.ok, report.failed
    assert {(item.change.region, item.version.version) for item in report.published} == {
        ("eu-west-1", 4), ("us-east-1", 4)}
    assert sorted(item.versions for item in report.deleted) == [(2,), (3,)]
    assert [number for number, _ in live(store, "us-east-1")] == [1, 4]
    assert not report.warnings
    assert not run_plan(space, store).has_changes


def test_a_failed_grant_after_fillers_deletes_them(tmp_path: Path) -> None:
    """The new version's grant fails after its fillers: the fillers are deleted before the
    failure is reported; the version itself stays unrecorded for the next plan to adopt."""
    space = folder_layer_space(tmp_path, manifest("    share:\n      - account: '111122223333'\n"))
    store = FakeLayerStore()
    for _ in range(3):
        store.put(region="eu-west-1", layer_name="a", settings=S1, zip_bytes=b"old")
    failing = GrantFailingStore.of(store, region="us-east-1")
    report = run_apply(space, failing)
    assert [item.change.region for item in report.failed] == ["us-east-1"]
    assert "granting it to account 111122223333 failed" in report.failed[0].error.message
    assert [number for number, _ in live(failing, "us-east-1")] == [4]
    assert all(text != planner.FILLER_DESCRIPTION for _, text in live(failing, "us-east-1"))
    assert ("delete", "us-east-1", "a:1") in failing.calls


def test_a_failed_upload_makes_no_filler(tmp_path: Path) -> None:
    """A publish through the artifact bucket uploads before any filler: an upload that
    fails has published nothing, so the rerun lands on the number planned."""
    space = folder_layer_space(tmp_path, manifest(
        "    upload: s3\n").replace("version: 1\n", "version: 1\nartifact_bucket: zips\n"))
    objects = UploadFailingObjects()
    store = FakeLayerStore(objects=objects)
    for _ in range(3):
        store.put(region="eu-west-1", layer_name="a", settings=S1, zip_bytes=b"old")
    objects.failing = True
    report = run_apply(space, store)
    assert sorted(item.change.region for item in report.failed) == ["eu-west-1", "us-east-1"]
    assert not [call for call in store.calls if call[0] == "publish"]
    objects.failing = False
    report = run_apply(space, store)
    assert report.ok, report.failed
    assert {item.version.version for item in report.published} == {4}
    assert not report.warnings


class GrantFailingStore(FakeLayerStore):
    """The fake Lambda whose AddLayerVersionPermission fails in one region."""

    failing_region: str = ""

    @classmethod
    def of(cls, store: FakeLayerStore, *, region: str) -> GrantFailingStore:
        """A copy of `store` that fails grants in `region`."""
        copied = cls(layers=store.layers, counters=store.counters)
        copied.failing_region = region
        return copied

    def add_permission(self, *, region: str, layer_name: str, version: int,
                       grant: model.Grant) -> None:
        """Refused in the failing region, as AccessDenied."""
        if region == self.failing_region:
            raise errors.AwsError("AddLayerVersionPermission: access denied",
                                  aws_code="AccessDeniedException")
        super().add_permission(region=region, layer_name=layer_name, version=version,
                               grant=grant)


class UploadFailingObjects(FakeArtifactStore):
    """The fake S3 whose uploads fail while `failing` is set."""

    failing = False

    def upload_file(self, *, region: str, location: model.S3Object, zip_path: PurePath,
                    content_sha256: str) -> None:
        """Refused as AccessDenied while failing, else stored."""
        if self.failing:
            raise errors.AwsError("PutObject: access denied", aws_code="AccessDenied")
        super().upload_file(region=region, location=location, zip_path=zip_path,
                            content_sha256=content_sha256)


def test_fillers_on_top_of_an_unchanged_aligned_region_are_published_over() -> None:
    """Both regions unchanged at v1, us-west-2 with fillers v2, v3 above (an apply killed,
    then its change reverted): us-west-2 publishes v4 over them and us-east-1 aligns up to
    it, since once the fillers are deleted their numbers would be taken unseen and the next
    change would land out of line."""
    behind = inputs_with((remote(1, "us-west-2"), confirmed(2, region="us-west-2"),
                          confirmed(3, region="us-west-2")),
                         latest=remote(1, "us-west-2"), recorded=1, region="us-west-2")
    other = inputs_with((remote(1),), latest=remote(1), recorded=1)
    changes = planner.plan([other, behind]).changes
    assert [(c.region, c.action, *numbers(c)) for c in changes] == [
        ("us-east-1", A.PUBLISH, 4, 2, None), ("us-west-2", A.PUBLISH, 4, 0, None),
        ("us-west-2", A.DELETE, None, 0, 2), ("us-west-2", A.DELETE, None, 0, 3)]
    assert all(R.ALIGN_VERSIONS in c.reasons for c in changes if c.action is A.PUBLISH)
