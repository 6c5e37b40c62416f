"""What a user sees of a plan, byte for byte: one rich plan (create and publish with
align_versions fillers, a region short of its target, a grant, a retention delete, a stray
filler delete, adoptions with and without a download, an upload through the artifact bucket,
a forget, a layer in error, warnings) decided by the planner and shown as text (plain and
coloured), Markdown, the `--format json` document and a saved plan file, against files kept
in tests/golden/. A saved plan file of that shape reads back to the same plan and compares
equal to the fresh decision."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from reconciler import model, planfile, planner, render, savedplan

GOLDEN = Path(__file__).parent / "golden"
CODE_A, CODE_B = "A" * 43 + "=", "B" * 43 + "="
S1 = model.Settings.normalised(description="one", compatible_runtimes=["python3.12"],
                               compatible_architectures=["x86_64"], license_info="MIT")
S2 = model.Settings.normalised(description="two", compatible_runtimes=["python3.12",
                                                                       "python3.13"],
                               compatible_architectures=["x86_64"], license_info="MIT")
ARN = "arn:aws:lambda:{}:123456789012:layer:{}:{}"
PUBLIC = model.Grant(kind="public", principal="*")
ACCOUNT = model.Grant(kind="account", principal="111122223333")


def _spec(key: str, *, settings: model.Settings = S1, **fields: object) -> model.LayerSpec:
    content = fields.pop("content", model.ContentSpec(kind=model.SourceKind.PATH, path=key))
    return model.LayerSpec(key=key, name=f"{key}-layer", settings=settings,
                           content=content,  # type: ignore[arg-type]
                           location=model.Location(1, 1), **fields)  # type: ignore[arg-type]


def _remote(key: str, version: int, region: str = "us-east-1", *, code: str | None = CODE_A,
            settings: model.Settings = S1, size: int | None = 1000) -> model.RemoteVersion:
    return model.RemoteVersion(version=version,
                               layer_version_arn=ARN.format(region, f"{key}-layer", version),
                               settings=settings, code_sha256=code, code_size=size)


def _filler(key: str, version: int, region: str = "us-east-1") -> model.RemoteVersion:
    return model.RemoteVersion(
        version=version, layer_version_arn=ARN.format(region, f"{key}-layer", version),
        settings=model.Settings(description=planner.FILLER_DESCRIPTION),
        code_sha256=planner.filler_code_sha256(), code_size=200)


def _lock(key: str, version: int, region: str = "us-east-1", *,
          settings: model.Settings = S1, grants: tuple[model.Grant, ...] = (),
          manifest: str = "layers.yaml") -> model.LockEntry:
    return model.LockEntry(fingerprint=f"fp-{key}", content_sha256="ab" * 32,
                           code_sha256=CODE_A, code_size=1000, version=version,
                           layer_version_arn=ARN.format(region, f"{key}-layer", version),
                           settings_sha256=settings.digest(grants), manifest=manifest)


def _artifact(key: str, code: str | None = CODE_A, *, size: int = 1000,
              git_ignored: int = 0) -> model.Artifact:
    return model.Artifact(fingerprint=f"fp-{key}", code_sha256=code, content_sha256="ab" * 32,
                          code_size=size, zip_path=f"/tmp/{key}.zip", unzipped_size=size * 3,
                          git_ignored=git_ignored)


def rich_plan() -> model.Plan:
    """The planner's decision over every kind of change there is."""
    aligned = _spec("alpha", align_versions=True, share=(ACCOUNT,),
                    consumers=model.Consumers(functions=("api",)),
                    parameter="/layers/alpha-layer/latest")
    shared = _spec("beta", share=(ACCOUNT, PUBLIC), retain=1)
    far = _spec("zeta", align_versions=True, share=(ACCOUNT,))
    big = _spec("epsilon", settings=S2, upload="s3")
    s3_source = _spec("eta", content=model.ContentSpec(
        kind=model.SourceKind.S3, s3_bucket="src-bucket", s3_key="eta.zip",
        s3_object_version="v7"))
    items = [
        # alpha: new in us-east-1, changed in eu-west-1 (latest v3): v4 everywhere, after 3
        # fillers where it is new.
        planner.Inputs(spec=aligned, region="us-east-1", artifact=_artifact("alpha", CODE_B),
                       lock_entry=None, remote_latest=None),
        planner.Inputs(spec=aligned, region="eu-west-1", artifact=_artifact("alpha", CODE_B),
                       lock_entry=_lock("alpha", 3, "eu-west-1", grants=(ACCOUNT,)),
                       remote_latest=_remote("alpha", 3, "eu-west-1"),
                       versions=(_remote("alpha", 3, "eu-west-1"),)),
        # beta: unchanged v2 whose grants differ, retain 1 deletes v1, a stray filler v3.
        planner.Inputs(spec=shared, region="us-east-1", artifact=_artifact("beta"),
                       lock_entry=_lock("beta", 2, grants=(ACCOUNT, PUBLIC)),
                       remote_latest=_remote("beta", 2),
                       policy=frozenset({"reconcile-account-111122223333",
                                         "reconcile-account-999999999999"}),
                       versions=(_remote("beta", 1, size=512), _remote("beta", 2),
                                 _filler("beta", 3)),
                       function_uses={}),
        # gamma: adopted as it is; delta: adopted by its files after a download, and one
        # whose download differs (a publish).
        planner.Inputs(spec=_spec("gamma", consumers=model.Consumers(tags=(("team", "a"),))),
                       region="us-east-1", artifact=_artifact("gamma"),
                       lock_entry=None, remote_latest=_remote("gamma", 5)),
        planner.Inputs(spec=_spec("delta"), region="us-east-1",
                       artifact=_artifact("delta", CODE_B), lock_entry=None,
                       remote_latest=_remote("delta", 2), download=True,
                       remote_content=model.RemoteContent(version=2, downloaded_bytes=4096,
                                                          fingerprint="fp-delta")),
        planner.Inputs(spec=_spec("delta"), region="eu-west-1",
                       artifact=_artifact("delta", CODE_B), lock_entry=None,
                       remote_latest=_remote("delta", 2, "eu-west-1"), download=True,
                       remote_content=model.RemoteContent(version=2, downloaded_bytes=4096,
                                                          fingerprint="fp-other")),
        # epsilon: new settings and a 60 MB zip through the artifact bucket, git ignores some.
        planner.Inputs(spec=big, region="us-east-1",
                       artifact=_artifact("epsilon", CODE_B, size=60 * 1024 * 1024,
                                          git_ignored=2),
                       lock_entry=_lock("epsilon", 1), remote_latest=_remote("epsilon", 1),
                       artifact_bucket="artifacts"),
        # eta: published from its own S3 object.
        planner.Inputs(spec=s3_source, region="us-east-1",
                       artifact=model.Artifact(fingerprint="fp-eta", code_sha256=None),
                       lock_entry=None, remote_latest=None),
        # zeta: v200 in us-east-1 (not yet shared: a grant), v1 in eu-west-1: too far
        # behind to fill.
        planner.Inputs(spec=far, region="us-east-1", artifact=_artifact("zeta"),
                       lock_entry=_lock("zeta", 200, grants=(ACCOUNT,)),
                       remote_latest=_remote("zeta", 200), policy=frozenset(),
                       versions=(_remote("zeta", 200),)),
        planner.Inputs(spec=far, region="eu-west-1", artifact=_artifact("zeta"),
                       lock_entry=_lock("zeta", 1, "eu-west-1", grants=(ACCOUNT,)),
                       policy=frozenset({"reconcile-account-111122223333"}),
                       remote_latest=_remote("zeta", 1, "eu-west-1"),
                       versions=(_remote("zeta", 1, "eu-west-1"),)),
    ]
    recorded = planner.Recorded(
        lock=model.Lock(entries={("old", "us-east-1"): _lock("old", 9),
                                 ("alpha", "eu-west-1"): _lock("alpha", 3, "eu-west-1")}),
        named=planner.named_pairs([("alpha", ["us-east-1", "eu-west-1"])]),
        named_layers=frozenset({"alpha", "beta", "gamma", "delta", "epsilon", "eta", "zeta"}),
        regions_listed=True, owner="layers.yaml", own_lockfile=True,
        manifest_file="layers.yaml")
    basis = model.PlanBasis(
        plan_id="p-1", created="2026-12-02T00:00:00Z", manifest_sha256="a" * 64,
        state_location="lockfile:layers.lock.json", state_revision="r1",
        fingerprints=tuple(sorted({item.spec.key: item.artifact.fingerprint
                                   for item in items}.items())),
        targets=(), regions=(), tool_version="0.1.0", packaging_format=1,
        manifest="layers.yaml", download=True)
    return planner.plan(
        items, basis=basis, recorded=recorded,
        layer_errors=(model.LayerError(layer="broken", message="no such folder",
                                       hint="create it"),),
        storage={"us-east-1": model.CodeStorage(used=90, limit=100)},
        consumers=_consumers())


def _function(name: str, region: str, *layers: str) -> model.FunctionConfig:
    return model.FunctionConfig(
        name=name, arn=f"arn:aws:lambda:{region}:123456789012:function:{name}",
        layers=layers, revision_id=f"rev-{name}-{region}",
        update_status=model.UpdateStatus.SUCCESSFUL)


def _consumers() -> dict[str, planner.Seen]:
    """alpha's function `api` (without alpha in us-east-1: appended; using v3 between two
    other layers in eu-west-1: replaced in place) and its parameter (none in us-east-1, v3 in
    eu-west-1), both moving to the version alpha publishes; gamma's tagged `worker` on v4
    (drift: gamma's latest is v5)."""
    base = "arn:aws:lambda:{}:123456789012:layer:{}"
    return {
        "alpha": planner.Seen(
            layer_arns={region: base.format(region, "alpha-layer")
                        for region in ("us-east-1", "eu-west-1")},
            functions={"us-east-1": (_function("api", "us-east-1",
                                               ARN.format("us-east-1", "tools", 1)),),
                       "eu-west-1": (_function("api", "eu-west-1",
                                               ARN.format("eu-west-1", "tools", 1),
                                               ARN.format("eu-west-1", "alpha-layer", 3),
                                               ARN.format("eu-west-1", "sdk", 2)),)},
            looked_up=(("api", "us-east-1", True), ("api", "eu-west-1", True)),
            parameters={"us-east-1": None, "eu-west-1": model.ParameterValue(
                value=ARN.format("eu-west-1", "alpha-layer", 3), version=3)}),
        "gamma": planner.Seen(
            layer_arns={"us-east-1": base.format("us-east-1", "gamma-layer")},
            functions={"us-east-1": (_function("worker", "us-east-1",
                                               ARN.format("us-east-1", "gamma-layer", 4)),)}),
    }


def views() -> dict[str, str]:
    """Each view of the rich plan, by the golden file that holds it."""
    plan = rich_plan()
    document = planfile.to_document(plan)
    return {
        "plan.txt": render.text(plan),
        "plan-color.txt": render.text(plan, color=True),
        "plan.md": render.markdown(plan),
        # What `plan --format json` prints, and the body `plan --out` saves (command.views,
        # run.savedplans.write).
        "plan.json": json.dumps(document, indent=2, sort_keys=True) + "\n",
    }


@pytest.mark.parametrize("name", ["plan.txt", "plan-color.txt", "plan.md", "plan.json"])
def test_every_view_of_a_rich_plan_is_unchanged(name: str) -> None:
    """The text, coloured text, Markdown and JSON of the rich plan equal the golden files."""
    assert views()[name] == (GOLDEN / name).read_text("utf-8")


def test_the_golden_saved_plan_reads_back_and_equals_the_fresh_decision() -> None:
    """The golden plan file (a saved plan) passes the schema, reads back to the planner's
    plan, and the fresh decision's changes differ from it in nothing."""
    data = (GOLDEN / "plan.json").read_bytes()
    saved = planfile.from_document(savedplan.read_document(data, file="plan.json"))
    fresh = rich_plan()
    assert saved == fresh
    # The layer in error is a difference of its own; every change compares equal.
    assert savedplan.differences(saved, replace(fresh, errors=())) == []
    assert {change.action for change in fresh.changes} == set(model.Action)


if __name__ == "__main__":  # regenerate: python tests/test_plan_golden.py (review the diff)
    GOLDEN.mkdir(exist_ok=True)
    for file_name, text in views().items():
        (GOLDEN / file_name).write_text(text, "utf-8")
