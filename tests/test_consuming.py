"""What a plan reads of the consumers (consuming.observe) over the ports' fakes: a function
named by ARN is looked for in its ARN's region and account only, and one whose region is not
the layer's is reported as outside."""

from __future__ import annotations

from fakes_consumers import FakeFunctionStore, FakeParameterStore

from reconciler import consuming, model, planner

REGION, OTHER = "us-east-1", "eu-west-1"
SETTINGS = model.Settings()


def layer(*functions: str) -> model.LayerSpec:
    """Layer `shared` consumed by `functions`."""
    return model.LayerSpec(
        key="shared", name="shared", settings=SETTINGS,
        content=model.ContentSpec(kind=model.SourceKind.PATH, path="shared"),
        location=model.Location(1, 1), consumers=model.Consumers(functions=functions))


def observe(spec: model.LayerSpec, store: FakeFunctionStore, *,
            regions: tuple[str, ...] = (REGION,), partial: bool = False,
            manifest_regions: tuple[str, ...] = (REGION,)) -> planner.Seen:
    """consuming.observe of `spec` in `regions` (no remote version: the account is asked)."""
    seen = consuming.observe([spec], regions={spec.key: regions}, remote={},
                             functions=store, parameters=FakeParameterStore(),
                             account=lambda: "123456789012", parallelism=2,
                             partial=partial, manifest_regions=manifest_regions)
    return seen[spec.key]


def test_a_function_arn_of_another_account_is_not_the_same_name_here() -> None:
    """An ARN naming account 999999999999 does not find the credentials' account's function
    of that name: it is looked up, not found, and nothing of it is moved."""
    store = FakeFunctionStore()
    store.add(region=REGION, name="bystander")
    reference = "arn:aws:lambda:us-east-1:999999999999:function:bystander"
    seen = observe(layer(reference), store)
    assert seen.looked_up == ((reference, REGION, False),)
    assert seen.functions == {}
    mine = "arn:aws:lambda:us-east-1:123456789012:function:bystander"
    found = observe(layer(mine), store)
    assert found.looked_up == ((mine, REGION, True),)
    assert [config.name for config in found.functions[REGION]] == ["bystander"]


def test_a_function_arn_outside_the_layers_regions_is_reported() -> None:
    """An ARN in a region the layer is not in is never looked up, and is reported as
    outside (the planner makes it a plan error), as left out only when --region left that
    region of the manifest out."""
    store = FakeFunctionStore()
    store.add(region=OTHER, name="api")
    reference = "arn:aws:lambda:eu-west-1:123456789012:function:api"
    seen = observe(layer(reference), store)
    assert seen.outside == ((reference, OTHER, False),)
    assert seen.looked_up == () and store.calls == []
    # --region us-east-1 of a manifest in both regions: its region was only left out.
    left_out = observe(layer(reference), store, partial=True,
                       manifest_regions=(REGION, OTHER))
    assert left_out.outside == ((reference, OTHER, True),)
    # --region us-east-1 of a manifest in us-east-1 only: still outside the layer's regions.
    assert observe(layer(reference), store, partial=True).outside == (
        (reference, OTHER, False),)


def test_reference_account_reads_full_and_partial_arns() -> None:
    """The account of a full or partial ARN; none for a plain name."""
    assert consuming.reference_account(
        "arn:aws:lambda:us-east-1:123456789012:function:api") == "123456789012"
    assert consuming.reference_account("123456789012:function:api") == "123456789012"
    assert consuming.reference_account("api") is None
