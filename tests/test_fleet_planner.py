"""A layer vendor's release, as pure rules: the grants diff, retention's choices, the
align_versions target and fillers, and the evidence the planner asks for them."""

from __future__ import annotations

import pytest

from reconciler import model, planner

CODE_A, CODE_B = "A" * 43 + "=", "B" * 43 + "="
S1 = model.Settings.normalised(description="one", compatible_runtimes=["python3.12"],
                               compatible_architectures=None, license_info=None)
ARN = "arn:aws:lambda:{}:123456789012:layer:utils:{}"
ACCOUNT = model.Grant(kind="account", principal="111122223333")
ORG = model.Grant(kind="organization", principal="o-a1b2c3d4e5")
R, A = model.Reason, model.Action


def spec(*, share: tuple[model.Grant, ...] | None = None, retain: int | None = None,
         align: bool = False) -> model.LayerSpec:
    """A layer spec named utils with the fleet settings given."""
    return model.LayerSpec(key="utils", name="utils", settings=S1,
                           content=model.ContentSpec(kind=model.SourceKind.PATH, path="x"),
                           location=model.Location(1, 1), share=share, retain=retain,
                           align_versions=align)


def remote(version: int, region: str = "us-east-1", code: str | None = CODE_A,
           size: int | None = 10) -> model.RemoteVersion:
    """A remote version of utils."""
    return model.RemoteVersion(version=version, layer_version_arn=ARN.format(region, version),
                               settings=S1, code_sha256=code, code_size=size)


def lock(version: int, region: str = "us-east-1") -> model.LockEntry:
    """A lock entry for `version` with content A."""
    return model.LockEntry(fingerprint="fp-a", content_sha256="hex", code_sha256=CODE_A,
                           code_size=10, version=version,
                           layer_version_arn=ARN.format(region, version),
                           settings_sha256=S1.digest())


def built(code: str) -> model.Artifact:
    """An artifact whose zip was built."""
    return model.Artifact(fingerprint="fp-a", code_sha256=code, content_sha256="hex",
                          code_size=10, zip_path="/tmp/x.zip")


def inputs(layer: model.LayerSpec, *, region: str = "us-east-1", latest: int | None = None,
           code: str = CODE_A, recorded: int | None = None,
           policy: frozenset[str] | None = None,
           versions: tuple[model.RemoteVersion, ...] | None = None,
           uses: dict[str, tuple[str, ...]] | None = None) -> planner.Inputs:
    """Inputs for utils in `region` whose latest is `latest` with content A."""
    return planner.Inputs(
        spec=layer, region=region, artifact=built(code),
        lock_entry=lock(recorded, region) if recorded is not None else None,
        remote_latest=remote(latest, region) if latest is not None else None,
        policy=policy, versions=versions, function_uses=uses)


def deleted(changes: tuple[model.Change, ...]) -> list[int]:
    """The versions the delete changes among `changes` delete, in order."""
    return [c.details_as(model.DeleteDetails).version for c in changes if c.action is A.DELETE]


def aligned(change: model.Change) -> tuple[int | None, int, int, int | None]:
    """A create or publish's alignment target, fillers, shortfall and expected version."""
    details = change.details_as(model.PublishDetails)
    align = details.align or model.Alignment(target=None)
    return (align.target, align.fillers, align.shortfall, details.expected_version)


def numbers(change: model.Change) -> tuple[int | None, int, int | None]:
    """The version a change expects to publish, its fillers and the version it deletes
    (None, 0 and None where its action has none)."""
    details = change.details
    if isinstance(details, model.PublishDetails):
        return (details.expected_version, details.align.fillers if details.align else 0, None)
    return (None, 0, details.version if isinstance(details, model.DeleteDetails) else None)


# --- grants --------------------------------------------------------------------------------

def test_grants_diff_adds_missing_and_removes_unmanaged_statements() -> None:
    """The diff adds each desired grant whose statement is absent and removes every
    statement the share does not name."""
    add, remove = planner.grants_diff((ACCOUNT, ORG),
                                      frozenset({ACCOUNT.statement_id, "someone-else"}))
    assert add == (ORG,)
    assert remove == ("someone-else",)


def test_unchanged_version_with_a_removed_grant_is_a_grant_change() -> None:
    """A latest version that stays but holds a statement the share no longer names is a
    `grant` change (no publish) that removes it."""
    item = inputs(spec(share=(ACCOUNT,)), latest=3, recorded=3,
                  policy=frozenset({ACCOUNT.statement_id, ORG.statement_id}))
    [change] = planner.plan([item]).changes
    assert change.action is A.GRANT
    assert R.GRANTS_CHANGED in change.reasons
    assert change.details == model.GrantDetails(add=(), remove=(ORG.statement_id,))


def test_matching_grants_are_a_noop_and_unmanaged_layers_never_ask_for_a_policy() -> None:
    """Grants that match make no change; a layer without `share` never asks for the
    policy, one with `share` asks for it only when its latest version stays."""
    managed = inputs(spec(share=(ACCOUNT,)), latest=3, recorded=3,
                     policy=frozenset({ACCOUNT.statement_id}))
    assert planner.plan([managed]).changes[0].action is A.NOOP
    unread = inputs(spec(share=(ACCOUNT,)), latest=3, recorded=3)
    assert planner.Evidence.POLICY in planner.missing_evidence(unread)
    assert planner.missing_evidence(inputs(spec(), latest=3, recorded=3)) == frozenset()
    publishing = inputs(spec(share=(ACCOUNT,)), latest=3, recorded=3, code=CODE_B)
    assert planner.Evidence.POLICY not in planner.missing_evidence(publishing)


def test_public_share_warns() -> None:
    """A public grant makes the plan warn."""
    public = model.Grant(kind="public", principal="*")
    plan = planner.plan([inputs(spec(share=(public,)), latest=None)])
    assert any("publicly" in warning for warning in plan.warnings)


# --- retention -----------------------------------------------------------------------------

VERSIONS = tuple(remote(number) for number in range(1, 7))  # v1..v6, v6 the latest


def test_retention_keeps_the_newest_and_deletes_the_rest_oldest_first() -> None:
    """retain: 3 with nothing published keeps v4-v6 and deletes v1-v3, each a `delete`
    change naming its version and size."""
    item = inputs(spec(retain=3), latest=6, recorded=6, versions=VERSIONS, uses={})
    changes = planner.plan([item]).changes
    assert [c.action for c in changes] == [A.NOOP, A.DELETE, A.DELETE, A.DELETE]
    assert deleted(changes) == [1, 2, 3]
    assert all(c.reasons == (R.RETENTION,) and c.current and c.current.code_size == 10
               for c in changes[1:])


def test_retention_counts_the_version_being_published() -> None:
    """A publish counts as one of the N newest: retain: 3 then keeps only two old ones."""
    item = inputs(spec(retain=3), latest=6, recorded=6, code=CODE_B, versions=VERSIONS,
                  uses={})
    changes = planner.plan([item]).changes
    assert changes[0].action is A.PUBLISH
    assert deleted(changes) == [1, 2, 3, 4]


def test_retention_keeps_a_version_a_function_uses_and_names_it() -> None:
    """A version any function uses is kept, and the plan names the function."""
    uses: dict[str, tuple[str, ...]] = {ARN.format("us-east-1", 2): ("api:$LATEST", "api:7")}
    item = inputs(spec(retain=3), latest=6, recorded=6, versions=VERSIONS, uses=uses)
    changes = planner.plan([item]).changes
    assert deleted(changes) == [1, 3]
    assert "retention keeps v2: used by function api:$LATEST, api:7" in changes[0].notes


def test_retention_keeps_the_recorded_version() -> None:
    """The version the state records as current is never deleted, even when old."""
    chosen = planner.retention(retain=2, versions=VERSIONS, publishing=False,
                               recorded_version=3, function_uses={})
    assert [version.version for version in chosen.delete] == [1, 2, 4]
    assert chosen.kept == ((3, "the recorded version"),)


def test_retention_counts_the_version_the_apply_records() -> None:
    """Retention keeps the version the state records once the apply is done, not the one
    it records before: an adopted newer version replaces the recorded one, which goes with
    the other old ones, so the plan after the apply has no delete left."""
    item = inputs(spec(retain=2), latest=6, recorded=3, versions=VERSIONS, uses={})
    changes = planner.plan([item]).changes
    assert changes[0].record is not None and changes[0].record.version == 6
    assert deleted(changes) == [1, 2, 3, 4]
    after = inputs(spec(retain=2), latest=6, recorded=6,
                   versions=tuple(remote(number) for number in (5, 6)), uses={})
    assert [c.action for c in planner.plan([after]).changes] == [A.NOOP]


def test_without_retain_nothing_is_deleted_or_asked() -> None:
    """A layer without `retain` asks for no version list and deletes nothing."""
    item = inputs(spec(), latest=6, recorded=6)
    assert planner.missing_evidence(item) == frozenset()
    assert [c.action for c in planner.plan([item]).changes] == [A.NOOP]


def test_retention_asks_for_versions_then_uses_and_sizes() -> None:
    """Retention asks for every version first, then the function uses and the sizes of the
    versions it may delete (none when nothing is old enough)."""
    assert planner.missing_evidence(inputs(spec(retain=3), latest=6, recorded=6)) == {
        planner.Evidence.VERSIONS}
    unsized = tuple(remote(number, size=None) for number in range(1, 7))
    assert planner.missing_evidence(inputs(spec(retain=3), latest=6, recorded=6,
                                           versions=unsized)) == {
        planner.Evidence.FUNCTION_USES, planner.Evidence.VERSION_SIZES}
    assert planner.missing_evidence(inputs(spec(retain=10), latest=6, recorded=6,
                                           versions=unsized)) == frozenset()


# --- align_versions ------------------------------------------------------------------------

@pytest.mark.parametrize(("standings", "target"), [
    ([(True, 3, 4), (True, 5, 6)], 6),  # both publish: the highest next number
    ([(False, 7, 8), (True, 3, 4)], 7),  # one stays at 7 with the content: 7
    ([(False, 4, 5), (False, 4, 5)], 4),  # already aligned: nothing to do
    ([(True, 0, 1), (True, 0, 1)], 1),  # new everywhere
])
def test_alignment_target(standings: list[tuple[bool, int, int]], target: int) -> None:
    """The target is the highest next number of the publishing regions, or the highest
    latest of those that keep theirs."""
    assert planner.alignment_target(
        planner.RegionStanding(publishing=publishing, latest=latest, next_version=next_)
        for publishing, latest, next_ in standings) == target


def test_regions_behind_get_fillers_and_unchanged_ones_behind_publish() -> None:
    """With a region two versions ahead, the others publish after fillers so that every
    region's new latest has the same number; an unchanged region behind publishes too."""
    layer = spec(align=True)
    plan = planner.plan([
        inputs(layer, region="eu-west-1", latest=5, recorded=5, code=CODE_B),
        inputs(layer, region="us-east-1", latest=3, recorded=3, code=CODE_B),
        inputs(layer, region="us-west-2", latest=3, recorded=3),  # content already there
    ])
    by_region = {c.region: c for c in plan.changes}
    assert {aligned(c)[0] for c in plan.changes} == {6}
    assert {aligned(c)[3] for c in plan.changes} == {6}
    assert aligned(by_region["eu-west-1"])[1] == 0
    assert aligned(by_region["us-east-1"])[1] == 2
    west = by_region["us-west-2"]
    assert west.action is A.PUBLISH and R.ALIGN_VERSIONS in west.reasons
    assert aligned(west)[1] == 2


def test_region_at_the_target_with_the_content_needs_nothing() -> None:
    """A region whose latest already is the target with the desired content stays."""
    layer = spec(align=True)
    plan = planner.plan([inputs(layer, region="eu-west-1", latest=6, recorded=6),
                         inputs(layer, region="us-east-1", latest=3, recorded=3,
                                code=CODE_B)])
    by_region = {c.region: c for c in plan.changes}
    assert by_region["eu-west-1"].action is A.NOOP
    assert aligned(by_region["us-east-1"]) == (6, 2, 0, 6)


def test_region_too_far_behind_reports_its_shortfall() -> None:
    """A region more than MAX_FILLERS behind gets no filler: the plan says by how much it
    stays short."""
    layer = spec(align=True)
    far = planner.MAX_FILLERS + 50
    plan = planner.plan([inputs(layer, region="eu-west-1", latest=far, recorded=far),
                         inputs(layer, region="us-east-1", latest=1, recorded=1,
                                code=CODE_B)])
    behind = next(c for c in plan.changes if c.region == "us-east-1")
    assert behind.action is A.PUBLISH and aligned(behind)[1] == 0
    assert aligned(behind)[2] == far - 2
    assert any("cannot reach" in note for note in behind.notes)


def test_unaligned_layer_gets_no_target() -> None:
    """Without align_versions, regions keep their own numbers."""
    plan = planner.plan([inputs(spec(), region="eu-west-1", latest=5, code=CODE_B),
                         inputs(spec(), region="us-east-1", latest=2, code=CODE_B)])
    assert [aligned(c) for c in plan.changes] == [(None, 0, 0, 6), (None, 0, 0, 3)]


def test_storage_warning_above_eighty_percent_only() -> None:
    """The plan warns for a region whose code storage is above 80% full, and only there;
    storage is read only in regions that publish or delete."""
    items = [inputs(spec(), region="eu-west-1", latest=2, code=CODE_B),
             inputs(spec(), region="us-east-1", latest=2, recorded=2)]
    assert planner.storage_regions(planner.plan(items)) == ["eu-west-1"]
    plan = planner.plan(items, storage={"eu-west-1": model.CodeStorage(used=81, limit=100),
                                        "us-east-1": model.CodeStorage(used=80, limit=100)})
    assert len(plan.warnings) == 1 and plan.warnings[0].startswith("eu-west-1")
