"""Layers that left the manifest, and who owns a state entry: the `forget` changes (`forgets`)
and the refusal of an entry another manifest owns (`owned_elsewhere`). Pure: the recorded
state and the manifest's names in, changes, errors and warnings out; it reads no Lambda (a
forget changes nothing there: the versions stay).

Which entries a manifest may forget. An entry records the manifest that manages it (its
path below the repository root, `LockEntry.manifest`). A manifest forgets the entries of
layers and regions it no longer names that it owns; an entry without an owner (written
before owners were recorded) only when the state is the manifest's own local lockfile,
which no other manifest writes. In a shared (S3) state an unowned entry may be another
manifest's that has not applied since: forgetting it would make that manifest adopt or
republish its layer, so the plan warns and names `reconcile state rm` instead. An entry
owned by another manifest is that manifest's business, and left alone without a word.

Which layers and regions count as no longer named: a layer key the manifest does not have,
or, when the manifest lists its `regions`, a region it no longer lists for the layer. With no
`regions:` (the AWS default region is used) only layers count: a change of AWS_REGION must
not forget every entry of the other region. `--target` plans forget nothing (the plan is
about the targets); `--region` forgets in those regions only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from reconciler import model


@dataclass(frozen=True)
class Recorded:
    """What the forget decision reads: the recorded state, the (layer, region) pairs the
    manifest names (`named`; a layer in `named_layers` counts as named in every region when
    `regions_listed` is False), this manifest's path (`owner`), whether the state is the
    manifest's own local lockfile, and the selection (`targeted`: --target was given;
    `only_regions`: --region, empty for all)."""

    lock: model.Lock
    named: frozenset[tuple[str, str]]
    named_layers: frozenset[str]
    regions_listed: bool
    owner: str
    own_lockfile: bool
    targeted: bool = False
    only_regions: tuple[str, ...] = ()
    manifest_file: str = "the manifest"


def layer_name_of(arn: str, *, default: str) -> str:
    """The Lambda layer name in a LayerVersionArn (`arn:aws:lambda:R:A:layer:NAME:V`)."""
    parts = arn.split(":")
    return parts[6] if len(parts) >= 8 and parts[5] == "layer" else default


def _named(recorded: Recorded, layer: str, region: str) -> bool:
    if layer not in recorded.named_layers:
        return False
    return not recorded.regions_listed or (layer, region) in recorded.named


def forget_change(layer: str, region: str, entry: model.LockEntry, *,
                  manifest_file: str) -> model.Change:
    """The `forget` of `layer` in `region`: the recorded version is carried in its details
    and `desired` (fingerprint, digests, size), so that a saved plan is compared on it."""
    return model.Change(
        address=model.Address.of_layer(layer, region),
        layer_name=layer_name_of(entry.layer_version_arn, default=layer),
        action=model.Action.FORGET, reasons=(model.Reason.NOT_IN_MANIFEST,),
        current=None,
        desired=model.Desired(settings=model.Settings(), fingerprint=entry.fingerprint,
                              code_sha256=entry.code_sha256,
                              content_sha256=entry.content_sha256,
                              code_size=entry.code_size),
        details=model.ForgetDetails(version=entry.version),
        notes=(f"{manifest_file} no longer names it: apply removes it from the state; its "
               f"versions stay in Lambda (the state recorded {entry.layer_version_arn})",),
    )


def forgets(recorded: Recorded) -> tuple[tuple[model.Change, ...], tuple[str, ...]]:
    """The `forget` changes of the entries this manifest may forget (see the module
    docstring), sorted by layer and region, and a warning naming the unowned entries of a
    shared state that it leaves alone."""
    if recorded.targeted:
        return (), ()
    changes: list[model.Change] = []
    unowned: list[tuple[str, str]] = []
    for (layer, region), entry in sorted(recorded.lock.entries.items()):
        if recorded.only_regions and region not in recorded.only_regions:
            continue
        if _named(recorded, layer, region):
            continue
        if entry.manifest == recorded.owner and entry.manifest:
            changes.append(forget_change(layer, region, entry,
                                         manifest_file=recorded.manifest_file))
        elif not entry.manifest:
            if recorded.own_lockfile:
                changes.append(forget_change(layer, region, entry,
                                             manifest_file=recorded.manifest_file))
            else:
                unowned.append((layer, region))
    warnings: tuple[str, ...] = ()
    if unowned:
        listed = ", ".join(f"{layer} ({region})" for layer, region in unowned)
        names = " ".join(sorted({layer for layer, _ in unowned}))
        warnings = (
            f"the shared state records {listed}, which {recorded.manifest_file} does not "
            "name and no manifest owns yet (written before owners were recorded): not "
            "forgotten, since another manifest may manage it; if none does, remove it with "
            f"`reconcile state rm {names}` (its versions stay in Lambda)",)
    return tuple(changes), warnings


def owned_elsewhere(lock: model.Lock, *, owner: str,
                    planned: Mapping[str, Sequence[str]]) -> list[model.LayerError]:
    """A plan error for each planned layer (key -> its regions) whose entry in one of its
    regions another manifest owns: two manifests publishing the same layer over each other
    is refused, naming the owner. Unowned entries are anybody's (the first apply owns
    them)."""
    found: list[model.LayerError] = []
    for layer, regions in sorted(planned.items()):
        others = sorted({(region, entry.manifest) for region in regions
                         if (entry := lock.get(layer, region)) is not None
                         and entry.manifest and entry.manifest != owner})
        if not others:
            continue
        where = ", ".join(f"{region} by {manifest}" for region, manifest in others)
        found.append(model.LayerError(
            layer=layer,
            message=f"the state's entry of layer {layer} is owned by another manifest "
                    f"({where}); {owner or 'this manifest'} may not publish over it",
            hint="rename the layer key in one of the manifests, or remove it from the other "
                 "manifest and apply that first (it then forgets the layer)"))
    return found


def named_pairs(specs: Iterable[tuple[str, Sequence[str]]]) -> frozenset[tuple[str, str]]:
    """The (layer, region) pairs of layers with their regions."""
    return frozenset((layer, region) for layer, regions in specs for region in regions)
