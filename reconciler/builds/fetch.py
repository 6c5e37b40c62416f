"""Getting the wheels of a build from a lock: the candidates of a requirements.txt's packages
(find_links folders first, the package index only for the packages they leave unsatisfied),
and each selected wheel's file (a local path, verified; else the wheel cache; else a download
through the index into the cache, verified as it is stored).

Shell: it reads wheel files and the index (through ports.PackageIndex, made only when a wheel
must come from it) and writes only into the wheel cache. It never trusts a digest it did not
compute: a wheel whose SHA-256 differs from the lock's is refused naming both.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from reconciler import builds, errors, ports
from reconciler.builds import cache, selection, wheels
from reconciler.content import common

DEFAULT_INDEX_URL = "https://pypi.org/simple"
# The index a layer without `index_url` uses: the first of these set, else PyPI.
INDEX_VARIABLES = ("RECONCILE_INDEX_URL", "PIP_INDEX_URL")

IndexFactory = Callable[[str], ports.PackageIndex]


def index_url(configured: str | None, environ: Mapping[str, str]) -> str:
    """The layer's `index_url`, else RECONCILE_INDEX_URL, then PIP_INDEX_URL, then PyPI."""
    if configured:
        return configured
    for variable in INDEX_VARIABLES:
        if environ.get(variable):
            return environ[variable]
    return DEFAULT_INDEX_URL


class Sources:
    """Where one run's builds get wheels: the wheel cache, and the package index, made by
    `index_for` when a wheel must first come from it (None: no index can be reached)."""

    def __init__(self, *, wheel_cache: cache.WheelCache, index_for: IndexFactory | None,
                 environ: Mapping[str, str]) -> None:
        self.wheel_cache = wheel_cache
        self._index_for = index_for
        self._environ = environ
        self._made: dict[str, ports.PackageIndex] = {}

    def index(self, configured: str | None, *, label: str) -> ports.PackageIndex:
        """The index of a layer (`configured`: its index_url), made once per URL."""
        url = index_url(configured, self._environ)
        made = self._made.get(url)
        if made is None:
            if self._index_for is None:
                raise errors.ContentError(
                    f"{label}: a wheel must come from the package index, and this run "
                    "cannot reach one", hint="put the wheels in a find_links folder")
            made = self._made[url] = self._index_for(url)
        return made


def candidates(packages: Sequence[builds.LockedPackage], *, find_links: Sequence[Path],
               index: Callable[[], ports.PackageIndex]) -> dict[str, list[builds.Wheel]]:
    """The wheels a requirements.txt's `packages` may be selected from: those in the
    find_links folders, and, for each package none of whose listed hashes a find_links
    wheel has, the index's (asked for those packages only)."""
    wanted = {package.name: package.version for package in packages if package.wheels is None}
    found = wheels.find_links_wheels(find_links, wanted) if find_links else {}
    for package in packages:
        if package.wheels is not None:
            continue
        if any(wheel.sha256 in package.hashes for wheel in found.get(package.name, ())):
            continue
        found.setdefault(package.name, []).extend(index().wheels(package.name))
    return found


def obtain(chosen: selection.Selected, *, lock_dir: Path, sources: Sources,
           index: Callable[[], ports.PackageIndex], label: str) -> Path:
    """The file of the selected wheel, its SHA-256 verified: a local path (a find_links
    file, or one the lock names relative to its folder), else the cache's copy, else
    downloaded through the index into the cache. ContentError names the wheel and both
    digests when its bytes are not the locked ones."""
    wheel = chosen.wheel
    expected = wheel.sha256
    shown = f"{label}: {chosen.package.name} {chosen.package.version}"
    if wheel.path is not None:
        path = Path(os.path.abspath(lock_dir / wheel.path))
        _check_inside_repository(path, lock_dir=lock_dir, label=label)
        if path.is_file():
            wheels.verify_sha256(path, expected=expected, label=shown)
            return path
    cached = sources.wheel_cache.get(expected)
    if cached is not None:
        return cached
    if wheel.url is None:
        raise errors.ContentError(
            f"{shown}: the wheel {wheel.filename} is neither at {wheel.path} nor in the "
            f"cache ({sources.wheel_cache.root})", hint="restore the wheel file, or lock again")
    with index().fetch(wheel.url) as stream:
        return sources.wheel_cache.put_stream(stream, sha256=expected,
                                              label=f"{shown} ({wheel.filename})")


def _check_inside_repository(path: Path, *, lock_dir: Path, label: str) -> None:
    """A wheel a lock names by path is content: it may not lead out of the repository."""
    root = common.repository_root(lock_dir)
    real = os.path.realpath(path)
    if os.path.commonpath([str(root), real]) != str(root):
        raise errors.ContentError(
            f"{label}: the lock names the wheel {path}, which resolves to {real}, outside the "
            f"repository {root}", hint="copy the wheel into the repository")
