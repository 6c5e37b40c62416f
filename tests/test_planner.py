"""The decision table of planner.decide, row by row, and the helpers that say what evidence
(a zip, a GetLayerVersion) the plan needs."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import model, planner

CODE_A, CODE_B = "A" * 43 + "=", "B" * 43 + "="
S1 = model.Settings.normalised(description="one", compatible_runtimes=["python3.12"],
                               compatible_architectures=["x86_64"], license_info="MIT")
S2 = model.Settings.normalised(description="two", compatible_runtimes=["python3.13", "python3.12"],
                               compatible_architectures=["x86_64"], license_info="MIT")
ARN = "arn:aws:lambda:us-east-1:123456789012:layer:utils:{}"
C, P, N = model.Action.CREATE, model.Action.PUBLISH, model.Action.NOOP
R = model.Reason


def spec(settings: model.Settings = S1) -> model.LayerSpec:
    """A layer spec named utils."""
    return model.LayerSpec(key="utils", name="utils", settings=settings,
                           content=model.ContentSpec(kind=model.SourceKind.PATH, path="x"),
                           location=model.Location(1, 1))


def remote(version: int, code: str | None = CODE_A,
           settings: model.Settings = S1) -> model.RemoteVersion:
    """A remote version (code None: as listed, before GetLayerVersion)."""
    return model.RemoteVersion(version=version, layer_version_arn=ARN.format(version),
                               settings=settings, code_sha256=code, code_size=10)


def lock(version: int, code: str = CODE_A, fingerprint: str = "fp-a",
         settings: model.Settings = S1) -> model.LockEntry:
    """A lock entry for `version`."""
    return model.LockEntry(fingerprint=fingerprint, content_sha256="hex", code_sha256=code,
                           code_size=10, version=version, layer_version_arn=ARN.format(version),
                           settings_sha256=settings.digest())


def built(code: str, fingerprint: str = "fp-a") -> model.Artifact:
    """An artifact whose zip was built."""
    return model.Artifact(fingerprint=fingerprint, code_sha256=code, content_sha256="hex",
                          code_size=10, zip_path="/tmp/x.zip")


UNZIPPED = model.Artifact(fingerprint="fp-a")

TABLE = [
    # id, remote latest, lock entry, artifact, desired settings, action, reasons, records
    ("new layer", None, None, built(CODE_A), S1, C, [R.NEW_LAYER], False),
    ("all deleted out of band", None, lock(3), built(CODE_A), S1, C,
     [R.NEW_LAYER, R.REMOTE_DRIFT], False),
    ("adopt identical", remote(2), None, built(CODE_A), S1, N, [R.ADOPTED], True),
    ("no lock, content differs", remote(2, CODE_B), None, built(CODE_A), S1, P,
     [R.CONTENT_CHANGED], False),
    ("no lock, settings differ", remote(2), None, built(CODE_A), S2, P,
     [R.SETTINGS_CHANGED], False),
    ("in sync, nothing zipped", remote(2, None), lock(2), UNZIPPED, S1, N, [], False),
    ("content changed", remote(2, None), lock(2), built(CODE_B, "fp-b"), S1, P,
     [R.CONTENT_CHANGED], False),
    ("settings changed", remote(2, None), lock(2), UNZIPPED, S2, P, [R.SETTINGS_CHANGED], False),
    ("both changed", remote(2, None), lock(2), built(CODE_B, "fp-b"), S2, P,
     [R.CONTENT_CHANGED, R.SETTINGS_CHANGED], False),
    ("published out of band, same", remote(3, CODE_A), lock(2), UNZIPPED, S1, N,
     [R.REMOTE_DRIFT], True),
    ("published out of band, differs", remote(3, CODE_B), lock(2), UNZIPPED, S1, P,
     [R.REMOTE_DRIFT, R.CONTENT_CHANGED], False),
    ("recorded version deleted, older is same", remote(1, CODE_A), lock(2), UNZIPPED, S1, N,
     [R.REMOTE_DRIFT], True),
    ("recorded version deleted, older differs", remote(1, CODE_B), lock(2), UNZIPPED, S1, P,
     [R.REMOTE_DRIFT, R.CONTENT_CHANGED], False),
    ("same version number, another ARN", model.RemoteVersion(
        version=2, layer_version_arn="arn:aws:lambda:us-east-1:999999999999:layer:utils:2",
        settings=S1, code_sha256=CODE_A, code_size=10), lock(2), UNZIPPED, S1, N,
     [R.REMOTE_DRIFT], True),
]


@pytest.mark.parametrize(
    ("remote_latest", "lock_entry", "artifact", "settings", "action", "reasons", "records"),
    [row[1:] for row in TABLE], ids=[row[0] for row in TABLE],
)
def test_decision_table(remote_latest: model.RemoteVersion | None,
                        lock_entry: model.LockEntry | None, artifact: model.Artifact,
                        settings: model.Settings, action: model.Action,
                        reasons: list[model.Reason], records: bool) -> None:
    """Each row of decide()'s docstring table gives its action, reasons and lock record."""
    change = planner.decide(planner.Inputs(spec=spec(settings), region="us-east-1",
                                           artifact=artifact, lock_entry=lock_entry,
                                           remote_latest=remote_latest))
    assert change.action is action
    assert list(change.reasons) == reasons
    assert (change.record is not None) is records
    if records:
        assert change.record is not None and remote_latest is not None
        assert change.record.version == remote_latest.version
        assert change.record.layer_version_arn == remote_latest.layer_version_arn
        assert change.record.fingerprint == artifact.fingerprint


def test_drift_notes_say_published_or_deleted() -> None:
    """remote_drift says whether a version was published or the recorded one deleted."""
    published = planner.decide(planner.Inputs(spec=spec(), region="r", artifact=UNZIPPED,
                                              lock_entry=lock(2), remote_latest=remote(3)))
    deleted = planner.decide(planner.Inputs(spec=spec(), region="r", artifact=UNZIPPED,
                                            lock_entry=lock(2), remote_latest=remote(1)))
    gone = planner.decide(planner.Inputs(spec=spec(), region="r", artifact=built(CODE_A),
                                         lock_entry=lock(2), remote_latest=None))
    assert "version 3 was published outside reconcile" in published.notes[0]
    assert "version 2, which the lockfile recorded, was deleted" in deleted.notes[0]
    assert "every version was deleted" in gone.notes[0]


def test_expected_version_never_goes_back() -> None:
    """The version a publish would create is one above every version known, deleted included."""
    change = planner.decide(planner.Inputs(spec=spec(), region="r", artifact=built(CODE_A),
                                           lock_entry=lock(7), remote_latest=None))
    assert change.details_as(model.PublishDetails).expected_version == 8
    publish = planner.decide(planner.Inputs(spec=spec(S2), region="r", artifact=UNZIPPED,
                                            lock_entry=lock(2), remote_latest=remote(2, None)))
    assert publish.details_as(model.PublishDetails).expected_version == 3


@pytest.mark.parametrize(
    ("artifact", "lock_entry", "expected"),
    [(UNZIPPED, None, True), (model.Artifact(fingerprint="fp-b"), lock(2), True),
     (UNZIPPED, lock(2), False), (built(CODE_A), None, False)],
    ids=["no lock", "fingerprint changed", "fingerprint recorded", "already built"],
)
def test_needs_zip(artifact: model.Artifact, lock_entry: model.LockEntry | None,
                   expected: bool) -> None:
    """The zip is built only when the desired CodeSha256 is not known from the lock."""
    assert planner.needs_zip(artifact, lock_entry) is expected


@pytest.mark.parametrize(
    ("remote_latest", "lock_entry", "expected"),
    [(None, None, False), (remote(2, None), None, True), (remote(3, None), lock(2), True),
     (remote(2, None), lock(2), False), (remote(2, CODE_A), None, False)],
    ids=["no remote", "no lock", "drifted", "recorded", "already fetched"],
)
def test_needs_remote_code(remote_latest: model.RemoteVersion | None,
                           lock_entry: model.LockEntry | None, expected: bool) -> None:
    """GetLayerVersion is called only when the latest version is not the recorded one."""
    assert planner.needs_remote_code(remote_latest, lock_entry) is expected


def test_settings_diff_is_field_level() -> None:
    """Lists show what was added and removed; scalars show before and after."""
    changes = {change.field: change for change in planner.settings_diff(S1, S2)}
    assert set(changes) == {"description", "compatible_runtimes"}
    assert (changes["description"].before, changes["description"].after) == ("one", "two")
    assert changes["compatible_runtimes"].added == ("python3.13",)
    assert changes["compatible_runtimes"].removed == ()
    assert changes["compatible_runtimes"].before == ["python3.12"]
    assert changes["compatible_runtimes"].after == ["python3.12", "python3.13"]


def test_settings_order_does_not_matter() -> None:
    """Runtimes listed in another order are the same settings: no diff."""
    reordered = model.Settings.normalised(description="two",
                                          compatible_runtimes=["python3.12", "python3.13"],
                                          compatible_architectures=["x86_64"], license_info="MIT")
    assert planner.settings_diff(S2, reordered) == ()
    assert S2.digest() == reordered.digest()


@pytest.mark.parametrize("field, value", [
    ("description", "other"), ("compatible_runtimes", ("python3.13",)),
    ("compatible_architectures", ("arm64",)), ("license_info", "Apache-2.0"),
    ("compatible_runtimes", ()),
])
def test_the_equal_settings_shortcut_still_sees_every_one_field_change(
        field: str, value: object) -> None:
    """settings_diff skips DeepDiff only for equal settings: one changed field is named."""
    # The field is named at run time, so its value's type cannot be checked statically.
    one_field: dict[str, Any] = {field: value}
    changed = dataclasses.replace(S2, **one_field)
    assert [change.field for change in planner.settings_diff(S2, changed)] == [field]
    assert planner.settings_diff(S2, dataclasses.replace(S2)) == ()


_WORDS = st.lists(st.sampled_from(["python3.12", "python3.13", "arm64", "x86_64", "a b"]),
                  max_size=4)


@settings(max_examples=200, deadline=None)
@given(description=st.text(max_size=5), runtimes=_WORDS, architectures=_WORDS,
       license_info=st.sampled_from(["", "MIT", "Apache-2.0"]))
def test_a_new_layers_settings_diff_is_what_deepdiff_finds(
        description: str, runtimes: list[str], architectures: list[str],
        license_info: str) -> None:
    """From no settings (a new layer), the spelled-out diff is exactly DeepDiff's."""
    after = model.Settings.normalised(description=description, compatible_runtimes=runtimes,
                                      compatible_architectures=architectures,
                                      license_info=license_info)
    expected = planner.layers.deepdiff_changes(model.Settings(), after) \
        if after != model.Settings() else ()
    assert planner.settings_diff(model.Settings(), after) == expected


def test_plan_sorts_by_layer_then_region() -> None:
    """Changes come sorted by layer, then region, whatever the input order."""
    def item(key: str, region: str) -> planner.Inputs:
        layer = model.LayerSpec(key=key, name=key, settings=S1,
                                content=model.ContentSpec(kind=model.SourceKind.PATH, path="x"),
                                location=model.Location(1, 1))
        return planner.Inputs(spec=layer, region=region, artifact=built(CODE_A),
                              lock_entry=None, remote_latest=None)

    result = planner.plan([item("b", "us-west-2"), item("a", "us-west-2"), item("b", "eu-west-1")])
    assert [(c.layer, c.region) for c in result.changes] == [
        ("a", "us-west-2"), ("b", "eu-west-1"), ("b", "us-west-2")]
    assert result.summary() == {"create": 3, "publish": 0, "noop": 0, "delete": 0, "grant": 0,
                                "forget": 0, "update_function": 0,
                                "put_parameter": 0, "record": 0}


_contents = st.sampled_from(["a", "b"])
_settings = st.sampled_from([S1, S2])
_CODE = {"a": CODE_A, "b": CODE_B}


@settings(max_examples=400, deadline=None)
@given(local=_contents, desired_settings=_settings,
       lock_state=st.one_of(st.none(), st.tuples(st.integers(1, 4), _contents)),
       remote_state=st.one_of(st.none(), st.tuples(st.integers(1, 4), _contents, _settings)))
def test_publish_exactly_when_something_differs(
        local: str, desired_settings: model.Settings,
        lock_state: tuple[int, str] | None,
        remote_state: tuple[int, str, model.Settings] | None) -> None:
    """In any consistent world, and gathering evidence as make_plan does, the action is noop
    exactly when the latest remote version has the local zip's CodeSha256 and the desired
    settings, create when there is no version, and publish otherwise."""
    lock_entry = None
    if lock_state is not None:
        lock_entry = lock(lock_state[0], _CODE[lock_state[1]], fingerprint=f"fp-{lock_state[1]}")
    remote_latest = None
    if remote_state is not None:
        version, content, remote_settings = remote_state
        if lock_state is not None and version == lock_state[0]:
            content = lock_state[1]  # a version number names one immutable content
        remote_state = (version, content, remote_settings)
        remote_latest = remote(version, None, remote_settings)  # as ListLayerVersions gives it
        if planner.needs_remote_code(remote_latest, lock_entry):
            remote_latest = remote(version, _CODE[content], remote_settings)  # GetLayerVersion
    artifact = model.Artifact(fingerprint=f"fp-{local}")
    if planner.needs_zip(artifact, lock_entry):
        artifact = built(_CODE[local], f"fp-{local}")
    change = planner.decide(planner.Inputs(spec=spec(desired_settings), region="r",
                                           artifact=artifact, lock_entry=lock_entry,
                                           remote_latest=remote_latest))
    assert change.desired.code_sha256 == _CODE[local]
    if remote_state is None:
        assert change.action is model.Action.CREATE
    elif remote_state[1] == local and remote_state[2] == desired_settings:
        assert change.action is model.Action.NOOP
    else:
        assert change.action is model.Action.PUBLISH
        assert change.reasons and change.details_as(model.PublishDetails).diff


BIG = model.MAX_DIRECT_UPLOAD_BYTES + 1
ROUTE = model.UploadRoute
ROUTES = [
    # id, zip size, layer's upload, artifact bucket, route, key in the bucket
    ("small, no bucket", 10, None, None, ROUTE.DIRECT, None),
    ("small, a bucket", 10, None, "arts", ROUTE.DIRECT, None),
    ("small, upload s3", 10, "s3", "arts", ROUTE.ARTIFACT_BUCKET, "utils/hex.zip"),
    ("large, a bucket", BIG, None, "arts", ROUTE.ARTIFACT_BUCKET, "utils/hex.zip"),
    ("large, no bucket", BIG, None, None, ROUTE.DIRECT, None),
]


@pytest.mark.parametrize(("size", "upload", "bucket", "route", "key"),
                         [row[1:] for row in ROUTES], ids=[row[0] for row in ROUTES])
def test_publish_route_follows_size_upload_and_bucket(
        size: int, upload: str | None, bucket: str | None, route: model.UploadRoute,
        key: str | None) -> None:
    """A create goes direct unless its zip is too large or `upload: s3` asks, and a bucket
    is there to take it (at `<layer>/<content_sha256>.zip`)."""
    layer = model.LayerSpec(key="utils", name="utils", settings=S1, upload=upload,
                            content=model.ContentSpec(kind=model.SourceKind.PATH, path="x"),
                            location=model.Location(1, 1))
    artifact = model.Artifact(fingerprint="fp-a", code_sha256=CODE_A, content_sha256="hex",
                              code_size=size, zip_path="/tmp/x.zip")
    change = planner.decide(planner.Inputs(spec=layer, region="us-east-1", artifact=artifact,
                                           lock_entry=None, remote_latest=None,
                                           artifact_bucket=bucket))
    code = change.details_as(model.PublishDetails).code
    assert code is not None
    assert code.route is route
    assert (code.s3.key if code.s3 else None) == key
    assert (code.s3.bucket if code.s3 else None) == (bucket if key else None)


def test_s3_source_publishes_from_its_own_object() -> None:
    """A layer whose content is an S3 object is published from that object, version pinned."""
    layer = model.LayerSpec(key="utils", name="utils", settings=S1, location=model.Location(1, 1),
                            content=model.ContentSpec(kind=model.SourceKind.S3, s3_bucket="src",
                                                      s3_key="k.zip", s3_object_version="v1"))
    code = planner.code_location(spec=layer, desired=planner.decide(planner.Inputs(
        spec=layer, region="us-east-1", artifact=built(CODE_A), lock_entry=None,
        remote_latest=None)).desired, artifact_bucket="arts")
    assert code == model.CodeLocation(route=ROUTE.S3_SOURCE,
                                      s3=model.S3Object(bucket="src", key="k.zip", version="v1"))


def test_noop_carries_no_code_location() -> None:
    """Only a create or publish says how its code travels; a noop uploads nothing."""
    change = planner.decide(planner.Inputs(spec=spec(), region="us-east-1",
                                           artifact=built(CODE_A), lock_entry=lock(2),
                                           remote_latest=remote(2), artifact_bucket="arts"))
    assert change.action is N
    assert isinstance(change.details, model.RecordDetails)  # no code location to carry
