"""What a plan reads of the layers' consumers (`observe`): in every region of a layer with
`consumers` or `parameter`, the functions it names (GetFunctionConfiguration and ListTags)
and those its tags find (GetResources), and its SSM parameter (GetParameter), read in a
bounded pool through the ports, so that the stores' clients count every call in --max-rps.
It decides nothing (planner.consumers does) and never writes.

A function named by ARN is looked for in its ARN's region only (one of the layer's regions:
another is a plan error), and must be in the ARN's account; by name, in every region of the
layer. The layer's ARN in a region is the remote latest's without its version, or, when
the layer has none there yet, made from the account (one STS call, only then).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Mapping, Sequence

from reconciler import model, planner, ports


def reference_name(reference: str) -> tuple[str, str | None]:
    """A consumer's function reference as (name, region): the region of a full ARN, None
    for a name or a partial ARN (looked for in every region)."""
    parts = reference.split(":")
    if "function" not in parts:
        return reference, None
    name = parts[parts.index("function") + 1]
    return name, parts[3] if parts[0] == "arn" and len(parts) > 3 else None


def reference_account(reference: str) -> str | None:
    """The account a function reference names (a full or partial ARN: the part before
    `function`), None for a plain name."""
    parts = reference.split(":")
    if "function" not in parts or parts.index("function") == 0:
        return None
    return parts[parts.index("function") - 1] or None


def _arn_account(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 else ""


def partition(region: str) -> str:
    """The ARN partition of `region`."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def _layer_arns(spec: model.LayerSpec, regions: Sequence[str], *,
                remote: Mapping[tuple[str, str], model.RemoteVersion | None],
                account: Callable[[], str]) -> dict[str, str]:
    arns: dict[str, str] = {}
    for region in regions:
        latest = remote.get((spec.key, region))
        arns[region] = (model.unversioned(latest.layer_version_arn) if latest is not None
                        else f"arn:{partition(region)}:lambda:{region}:{account()}:layer:"
                             f"{spec.name}")
    return arns


def observe(specs: Sequence[model.LayerSpec], *, regions: Mapping[str, Sequence[str]],
            remote: Mapping[tuple[str, str], model.RemoteVersion | None],
            functions: ports.FunctionStore, parameters: ports.ParameterStore,
            account: Callable[[], str], parallelism: int,
            partial: bool = False,
            manifest_regions: Sequence[str] = ()) -> dict[str, planner.Seen]:
    """What the planner needs of each consumed layer of `specs` (by key), in its `regions`
    (`partial`: --region selected only some of the `manifest_regions`)."""
    consumed = [spec for spec in specs
                if spec.consumers is not None or spec.parameter is not None]
    if not consumed:
        return {}
    known: list[str] = []

    def account_once() -> str:
        if not known:
            known.append(account())
        return known[0]

    tag_jobs = [(spec, region) for spec in consumed for region in regions[spec.key]
                if spec.consumers is not None and spec.consumers.tags]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
        tagged = dict(zip(((spec.key, region) for spec, region in tag_jobs), pool.map(
            lambda job: functions.functions_tagged(
                region=job[1], tags=job[0].consumers.tags if job[0].consumers else ()),
            tag_jobs), strict=True))
        lookups: list[tuple[model.LayerSpec, str, str, str | None]] = []
        for spec in consumed:
            for region in regions[spec.key]:
                lookups.extend((spec, region, name, reference) for name, reference in
                               _wanted(spec, region, tagged.get((spec.key, region), ())))
        configs = [
            # A function named by ARN is that account's: one of the same name in another
            # account (the credentials') is not it.
            config if config is None or reference is None
            or reference_account(reference) in (None, _arn_account(config.arn)) else None
            for (_, _, _, reference), config in zip(lookups, pool.map(
                lambda job: functions.function(region=job[1], name=job[2]), lookups),
                strict=True)]
        parameter_jobs = [(spec, region) for spec in consumed if spec.parameter is not None
                          for region in regions[spec.key]]
        values = list(pool.map(lambda job: parameters.get(
            region=job[1], name=job[0].parameter or ""), parameter_jobs))
    seen: dict[str, planner.Seen] = {}
    for spec in consumed:
        found: dict[str, list[model.FunctionConfig]] = {}
        looked_up: list[tuple[str, str, bool]] = []
        for (owner, region, _, reference), config in zip(lookups, configs, strict=True):
            if owner.key != spec.key:
                continue
            if config is not None and config.name not in {
                    known.name for known in found.get(region, [])}:
                found.setdefault(region, []).append(config)
            if reference is not None:
                looked_up.append((reference, region, config is not None))
        seen[spec.key] = planner.Seen(
            outside=tuple(
                (reference, arn_region, partial and arn_region in manifest_regions)
                for reference in (spec.consumers.functions if spec.consumers else ())
                if (arn_region := reference_name(reference)[1]) is not None
                and arn_region not in regions[spec.key]),
            layer_arns=_layer_arns(spec, regions[spec.key], remote=remote,
                                   account=account_once),
            functions={region: tuple(listed) for region, listed in found.items()},
            looked_up=tuple(looked_up),
            parameters={region: value for (owner, region), value
                        in zip(parameter_jobs, values, strict=True) if owner.key == spec.key},
            partial=partial)
    return seen


def _wanted(spec: model.LayerSpec, region: str,
            tagged: Sequence[str]) -> list[tuple[str, str | None]]:
    """The functions to read in `region`: (name, the reference that named it, None for one
    found by tags), each name once."""
    wanted: dict[str, str | None] = {}
    for reference in spec.consumers.functions if spec.consumers else ():
        name, arn_region = reference_name(reference)
        if arn_region is None or arn_region == region:
            wanted.setdefault(name, reference)
    for name in tagged:
        wanted.setdefault(name, None)
    return sorted(wanted.items())
