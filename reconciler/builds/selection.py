"""Choosing, for each locked package, the one wheel a target accepts: the most specific by the
target's tag priority, never an sdist; and, for a layer declared for several runtimes or
architectures, the check that one wheel set fits them all.

Pure: it looks at wheel file names and digests, never at files. A package without a fitting
wheel is a SelectionError naming the package, the target and the files that exist, with why
each does not fit ("only manylinux_2_28, but python3.11 has glibc 2.26"). (Named `selection`,
not `select`, so as not to shadow the standard library's module of that name.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from packaging import tags
from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_wheel_filename,
)

from reconciler import errors
from reconciler.builds import LockedPackage, Wheel
from reconciler.builds.target import Target

_MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)_(.+)")
_LEGACY = {"manylinux2014": (2, 17), "manylinux2010": (2, 12), "manylinux1": (2, 5)}


class SelectionError(errors.ContentError):
    """Some packages have no wheel the target accepts, or the targets of one layer need
    different wheels; `problems` has one line per package (or per difference)."""

    def __init__(self, problems: list[str], *, hint: str | None = None) -> None:
        super().__init__("\n".join(problems), hint=hint)
        self.problems = problems


@dataclass(frozen=True)
class Selected:
    """The wheel chosen for a package, and the accepted tag it was chosen by."""

    package: LockedPackage
    wheel: Wheel
    tag: str


def select(packages: Sequence[LockedPackage], *, target: Target,
           found: Mapping[str, Sequence[Wheel]] | None = None) -> list[Selected]:
    """One wheel per package, sorted by package name. A package whose `wheels` is None
    (requirements.txt) takes its candidates from `found[name]` (find_links, the index),
    only those whose SHA-256 it lists. Raises SelectionError naming every package without
    a fitting wheel."""
    ranks = target.tag_priority()
    chosen: list[Selected] = []
    problems: list[str] = []
    for package in packages:
        candidates = _candidates(package, found or {})
        best: tuple[tuple[int, tuple[int, ...], str], Selected] | None = None
        for wheel in candidates:
            parsed = _tags_of(wheel)
            if parsed is None:
                continue
            build, wheel_tags = parsed
            matched = [(ranks[tag], str(tag)) for tag in wheel_tags if tag in ranks]
            if not matched:
                continue
            rank, tag = min(matched)
            # Equal tags: the highest build number, then the name, so the choice is stable.
            key = (rank, tuple(-part for part in build), wheel.filename)
            if best is None or key < best[0]:
                best = (key, Selected(package, wheel, tag))
        if best is None:
            problems.append(_no_fit(package, candidates, target=target))
        else:
            chosen.append(best[1])
    if problems:
        raise SelectionError(problems, hint="pin a version that ships a wheel for the target, "
                                            "or declare the runtime the wheels are made for")
    return sorted(chosen, key=lambda selected: selected.package.name)


def select_for_targets(packages: Mapping[Target, Sequence[LockedPackage]], *,
                       found: Mapping[str, Sequence[Wheel]] | None = None) -> list[Selected]:
    """The wheel set of a layer declared for several targets: each target selects its own,
    and they must be the same set (so several Python runtimes only when every wheel fits all
    of them, two architectures only when no wheel is platform-specific and the markers
    agree). Raises SelectionError saying how to split the layer otherwise."""
    results: dict[Target, list[Selected]] = {}
    problems: list[str] = []
    for target in sorted(packages):
        try:
            results[target] = select(packages[target], target=target, found=found)
        except SelectionError as error:
            problems += [f"{target.describe()}: {line}" for line in error.problems]
    if problems:
        raise SelectionError(problems)
    targets = list(results)
    first = targets[0]
    differences: list[str] = []
    for other in targets[1:]:
        mine = {item.package.name: item.wheel.filename for item in results[first]}
        theirs = {item.package.name: item.wheel.filename for item in results[other]}
        for name in sorted(mine.keys() | theirs.keys()):
            if mine.get(name) != theirs.get(name):
                differences.append(
                    f"{name}: {mine.get(name, 'not needed')} for {first.describe()}, "
                    f"{theirs.get(name, 'not needed')} for {other.describe()}")
    if differences:
        raise SelectionError(
            ["the declared runtimes and architectures need different wheels:", *differences],
            hint="split the layer: one built layer per Python runtime and architecture "
                 "(each with one compatible_runtimes and one compatible_architectures entry)")
    return results[first]


def _candidates(package: LockedPackage, found: Mapping[str, Sequence[Wheel]]) -> list[Wheel]:
    if package.wheels is not None:
        return list(package.wheels)
    version = canonicalize_version(package.version)
    matching: list[Wheel] = []
    for wheel in found.get(package.name, ()):
        if wheel.sha256 not in package.hashes:
            continue
        try:
            name, wheel_version, _, _ = parse_wheel_filename(wheel.filename)
        except InvalidWheelFilename:
            continue
        if canonicalize_name(name) == package.name and canonicalize_version(
                str(wheel_version)) == version:
            matching.append(wheel)
    return matching


def _tags_of(wheel: Wheel) -> tuple[tuple[int, ...], frozenset[tags.Tag]] | None:
    try:
        _, _, build, wheel_tags = parse_wheel_filename(wheel.filename)
    except InvalidWheelFilename:
        return None
    return (tuple(int(part) for part in build[:1]), wheel_tags)


def _no_fit(package: LockedPackage, wheels: Sequence[Wheel], *, target: Target) -> str:
    head = f"{package.name} {package.version} has no wheel for {target.describe()}"
    if not wheels:
        if package.has_sdist:
            return f"{head}: only an sdist, and sdists are never built"
        if package.wheels is None:
            return f"{head}: no wheel with a listed --hash in find_links or the index"
        return f"{head}: the lock lists no file for it"
    reasons = {wheel.filename: _why_not(wheel, target=target) for wheel in wheels}
    distinct = sorted(set(reasons.values()))
    sdist = "; an sdist, which is never built" if package.has_sdist else ""
    if len(distinct) == 1:
        return f"{head}: only {distinct[0]}{sdist}"
    listed = "; ".join(f"{filename}: {reason}" for filename, reason in sorted(reasons.items()))
    return f"{head}: {listed}{sdist}"


def _why_not(wheel: Wheel, *, target: Target) -> str:
    """Why a wheel does not fit, the closest miss first: a glibc too new for a tag that is
    otherwise right, then another machine, then another Python."""
    parsed = _tags_of(wheel)
    if parsed is None:
        return "a file name that is not a wheel's"
    accepted = target.accepted_tags()
    interpreters = {(tag.interpreter, tag.abi) for tag in accepted}
    for tag in sorted(parsed[1], key=str):
        glibc, machine = _manylinux(tag.platform)
        if ((tag.interpreter, tag.abi) in interpreters and machine == target.machine
                and glibc is not None and glibc > target.glibc):
            return (f"manylinux_{glibc[0]}_{glibc[1]}, but {target.runtime} has glibc "
                    f"{target.glibc[0]}.{target.glibc[1]} ({target.os_name})")
    platforms = sorted({tag.platform for tag in parsed[1]})
    if all((tag.interpreter, tag.abi) in interpreters for tag in parsed[1]):
        return f"{', '.join(platforms)} (not {target.machine} glibc Linux)"
    pythons = sorted({f"{tag.interpreter}-{tag.abi}" for tag in parsed[1]})
    return f"{', '.join(pythons)} (not {target.runtime})"


def _manylinux(platform: str) -> tuple[tuple[int, int] | None, str | None]:
    """(glibc, machine) of a manylinux platform tag, legacy aliases included."""
    found = _MANYLINUX.fullmatch(platform)
    if found:
        return (int(found.group(1)), int(found.group(2))), found.group(3)
    for alias, glibc in _LEGACY.items():
        if platform.startswith(f"{alias}_"):
            return glibc, platform[len(alias) + 1:]
    return None, None
