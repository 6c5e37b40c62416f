"""Issue 18, item 9, as a property: whatever sequence of edits (content, `retain`,
`align_versions`, `share`, two or three regions, versions published outside reconcile,
fillers a killed apply left) and applies, the plan right after each apply is clean and no
filler is left; and an apply of a saved plan (planned without the lock, as `plan --out` does,
read back through the plan file's checks, then decided again under the lock) is never refused
when nothing moved in between. The plan and apply use cases run in process, as `apply --yes`
and `apply PLANFILE` run them (under the state lock), against a moto server through the real
botocore adapter; few examples, so it stays well under a minute. The installed CLI pins
`retain: 1`. `lib` is consumed by the function `api` in every region and names its latest
version in an SSM parameter: after each apply, every api of its regions uses the latest and
the parameter names it, whatever was changed out of band (`drift`)."""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import boto3
import motoserver
import pytest
from clirun import invoke, versions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import (
    applying,
    artifacts,
    aws,
    model,
    planfile,
    planner,
    planning,
    savedplan,
    state,
    workspace,
)
from reconciler.state.local import LocalStateBackend

REGIONS = ("us-east-1", "eu-west-1", "ap-south-1")
PARTNER = "111122223333"


@dataclass(frozen=True)
class Layer:
    """What the manifest says of layer `lib` (the layer `plain` beside it never changes)."""

    content: int = 0
    retain: int | None = None
    align: bool = True
    share: bool = False
    regions: int = 2

    def manifest(self) -> str:
        """The manifest text."""
        lines = [f"version: 1\nregion: [{', '.join(REGIONS[:self.regions])}]\nlayers:",
                 "  plain:\n    content: {path: plain}",
                 "  lib:\n    content: {path: lib, prefix: python}"]
        if self.retain is not None:
            lines.append(f"    retain: {self.retain}")
        if self.align:
            lines.append("    align_versions: true")
        lines.append(f"    share: [{{account: '{PARTNER}'}}]" if self.share else "    share: []")
        lines.append("    parameter: /layers/lib/latest\n    consumers: {functions: [api]}")
        return "\n".join(lines) + "\n"


# One step: an edit of the manifest or content, or something done outside reconcile, then
# an apply.
EDITS = st.one_of(
    st.builds(lambda n: ("content", n), st.integers(1, 3)),
    st.builds(lambda n: ("retain", n), st.sampled_from([None, 1, 2])),
    st.builds(lambda b: ("align", b), st.booleans()),
    st.builds(lambda b: ("share", b), st.booleans()),
    st.builds(lambda n: ("regions", n), st.sampled_from([2, 3])),
    st.builds(lambda r: ("outside", r), st.sampled_from(REGIONS[:2])),
    st.builds(lambda r: ("fillers", r), st.sampled_from(REGIONS[:2])),
    st.builds(lambda r: ("drift", r), st.sampled_from(REGIONS[:2])),
)
ROLE = "arn:aws:iam::123456789012:role/converge"


def consumers_everywhere() -> None:
    """The function `api` in every region, using no layer."""
    boto3.client("iam", region_name="us-east-1").create_role(
        RoleName="converge", AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": []}))
    for region in REGIONS:
        boto3.client("lambda", region_name=region).create_function(
            FunctionName="api", Runtime="python3.12", Role=ROLE, Handler="x.handler",
            Code={"ZipFile": small_zip("def handler(event, context):\n    return None\n")})


def consumers_follow(layer: Layer) -> None:
    """In each region of `lib`, api uses exactly lib's latest version and the parameter
    names it."""
    for region in REGIONS[:layer.regions]:
        client = boto3.client("lambda", region_name=region)
        listed = client.list_layer_versions(LayerName="lib")["LayerVersions"]
        latest = max((item for item in listed
                      if item.get("Description") != planner.FILLER_DESCRIPTION),
                     key=lambda item: item["Version"])["LayerVersionArn"]
        used = [item["Arn"] for item in client.get_function_configuration(
            FunctionName="api").get("Layers", [])]
        assert used == [latest], (region, used, latest)
        value = boto3.client("ssm", region_name=region).get_parameter(
            Name="/layers/lib/latest")["Parameter"]["Value"]
        assert value == latest, (region, value, latest)


def small_zip(text: str) -> bytes:
    """A one-file zip, for versions published outside reconcile."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("python/outside.py", text)
    return buffer.getvalue()


def edit(folder: Path, layer: Layer, step: tuple[str, object], *, serial: int) -> Layer:
    """Carry out one edit; the layer as the manifest now says."""
    kind, value = step
    client = boto3.client("lambda", region_name=str(value)) if kind in (
        "outside", "fillers", "drift") else None
    if kind == "content":
        layer = Layer(content=int(str(value)), retain=layer.retain, align=layer.align,
                      share=layer.share, regions=layer.regions)
    elif kind == "retain":
        layer = Layer(content=layer.content, retain=value if value is None else int(str(value)),
                      align=layer.align, share=layer.share, regions=layer.regions)
    elif kind == "align":
        layer = Layer(content=layer.content, retain=layer.retain, align=bool(value),
                      share=layer.share, regions=layer.regions)
    elif kind == "share":
        layer = Layer(content=layer.content, retain=layer.retain, align=layer.align,
                      share=bool(value), regions=layer.regions)
    elif kind == "regions":
        layer = Layer(content=layer.content, retain=layer.retain, align=layer.align,
                      share=layer.share, regions=int(str(value)))
    elif kind == "outside" and client is not None:
        client.publish_layer_version(LayerName="lib",
                                     Content={"ZipFile": small_zip(f"outside {serial}")})
    elif kind == "drift" and client is not None:  # api moved off lib out of band
        client.update_function_configuration(FunctionName="api", Layers=[])
    elif kind == "fillers" and client is not None:  # as a killed apply leaves them
        for _ in range(2):
            client.publish_layer_version(LayerName="lib",
                                         Description=planner.FILLER_DESCRIPTION,
                                         Content={"ZipFile": planner.filler_zip_bytes()})
    (folder / "layers.yaml").write_text(layer.manifest())
    (folder / "lib" / "lib.py").write_text(f"VALUE = {layer.content}\n")
    return layer


def plan_and_apply(folder: Path, *, apply: bool, saved: bool = False
                   ) -> tuple[model.Plan, applying.ApplyReport | None]:
    """Plan (and apply, under the state lock, as `apply --yes` does) the checkout. With
    `saved`, first a plan without the lock, through the plan file's codec and checks, which
    the fresh decision under the lock must equal (as `apply PLANFILE` requires)."""
    space = workspace.Workspace.for_manifest(folder / "layers.yaml")
    parsed = workspace.load_manifest(space)
    backend = LocalStateBackend(space.lockfile_path)
    store = aws.Boto3LayerStore(max_rps=None)
    selection = planning.select(parsed, default_region=None, targets=(), regions=())
    code = artifacts.LocalCode(space=space, manifest=parsed, objects=store)
    consumers = planning.Consumers(functions=aws.Boto3FunctionStore(store.clients),
                                   parameters=aws.Boto3ParameterStore(store.clients))
    approved = None
    if saved:
        unlocked = planning.make_plan(
            parsed=parsed, selection=selection, snapshot=backend.read(),
            state_location="lockfile:layers.lock.json", manifest_digest=parsed.sha256,
            store=store, code=code, state=backend, consumers=consumers)
        approved = planfile.from_document(savedplan.read_document(
            json.dumps(planfile.to_document(unlocked)).encode(), file="plan.json"))
    lock_id = backend.lock(state.new_holder(operation="apply", path="layers.yaml")) \
        if apply else None
    try:
        snapshot = backend.read()
        decided = planning.make_plan(
            parsed=parsed, selection=selection, snapshot=snapshot,
            state_location="lockfile:layers.lock.json", manifest_digest=parsed.sha256,
            store=store, code=code, state=backend, lock_id=lock_id, consumers=consumers)
        if lock_id is None:
            return decided, None
        if approved is not None:
            assert decided.basis is not None
            refused = [*savedplan.basis_differences(approved.basis, now=decided.basis),
                       *savedplan.differences(approved, decided)]
            assert refused == [], refused
            assert savedplan.stale_consumers(approved, decided) == {}
        return decided, applying.apply(decided, store=store, state=backend, code=code,
                                       snapshot=snapshot, objects=store,
                                       functions=consumers.functions,
                                       parameters=consumers.parameters)
    finally:
        if lock_id is not None:
            backend.unlock(lock_id)


def fillers_left() -> list[tuple[str, int]]:
    """(region, number) of every filler version of `lib` on the server."""
    found: list[tuple[str, int]] = []
    for region in REGIONS:
        client = boto3.client("lambda", region_name=region)
        try:
            listed = client.list_layer_versions(LayerName="lib")["LayerVersions"]
        except client.exceptions.ResourceNotFoundException:
            continue
        found.extend((region, int(item["Version"])) for item in listed
                     if item.get("Description") == planner.FILLER_DESCRIPTION)
    return found


@pytest.mark.usefixtures("moto_url")
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(EDITS, st.booleans()), min_size=1, max_size=3))
def test_the_plan_right_after_any_apply_is_clean(
        moto_server: str, steps: list[tuple[tuple[str, object], bool]]) -> None:
    """After every apply (of a saved plan or not) of any sequence of edits, the apply
    succeeded without a warning, a saved plan was not refused, the next plan has no change at
    all, no filler version is left in any region, and the consumers follow the latest."""
    motoserver.reset(moto_server)
    consumers_everywhere()
    with tempfile.TemporaryDirectory(prefix="converge-") as name:
        folder = Path(name)
        for layer_folder in ("lib", "plain"):
            (folder / layer_folder).mkdir()
        (folder / "plain" / "plain.txt").write_text("plain\n")
        layer = edit(folder, Layer(), ("content", 0), serial=0)
        for serial, (step, saved) in enumerate([(("content", 0), False), *steps], start=1):
            layer = edit(folder, layer, step, serial=serial)
            _, report = plan_and_apply(folder, apply=True, saved=saved)
            assert report is not None
            assert report.ok, (step, report.failed, report.not_attempted)
            assert not report.warnings, (step, report.warnings)
            after, _ = plan_and_apply(folder, apply=False)
            pending = [(c.layer, c.region, c.action.value, [r.value for r in c.reasons],
                        c.details) for c in after.changes
                       if c.action is not model.Action.NOOP or c.record is not None]
            assert not after.has_changes, (step, layer, pending)
            assert fillers_left() == [], (step, layer)
            consumers_follow(layer)


def test_retain_one_keeps_one_version_after_each_apply_through_the_cli(
        tmp_path: Path, moto_url: str) -> None:
    """The installed CLI with `retain: 1`: after each of three applies of a new content the
    layer holds exactly its newest version, and the plan right after is clean (it used to
    keep the previously recorded version and plan its delete next time)."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "layers.yaml").write_text(
        "version: 1\nregion: us-east-1\nlayers:\n  lib:\n    content: {path: lib}\n"
        "    retain: 1\n")
    for number in range(1, 4):
        (tmp_path / "lib" / "lib.py").write_text(f"VALUE = {number}\n")
        applied = invoke(tmp_path, "apply", "--yes")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert versions("lib", "us-east-1") == [number]
        again = invoke(tmp_path, "plan", "--detailed-exitcode")
        assert again.returncode == 0, again.stdout + again.stderr
