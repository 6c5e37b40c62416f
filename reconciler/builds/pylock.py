"""Reading a PEP 751 lock (`pylock.toml`, `pylock.NAME.toml`) into locked packages for a
target: each package's marker evaluated for the target, its wheels with their SHA-256.

Pure: it parses the text it is given. Only wheels are used: a package that the target needs
and that comes from a VCS, a directory or an archive is a located error, as is a wheel without
a SHA-256 or a lock version this reader does not know.
"""

from __future__ import annotations

from typing import Any

from packaging.markers import (
    InvalidMarker,
    Marker,
    UndefinedComparison,
    UndefinedEnvironmentName,
)
from packaging.utils import canonicalize_name

from reconciler.builds import LockedPackage, Problems, Wheel, tomlfile, wheel_location
from reconciler.builds.target import Target

SUPPORTED_MAJOR = "1"


def read(text: str, *, file: str, target: Target) -> list[LockedPackage]:
    """The packages of pylock `text` that `target` needs, in lock order. Raises LockError with
    every located problem."""
    document = tomlfile.load(text, file=file)
    lines = tomlfile.table_lines(text, "packages")
    problems = Problems(file)

    version = document.get("lock-version")
    if not isinstance(version, str) or version.split(".", 1)[0] != SUPPORTED_MAJOR:
        problems.add(1, f"lock-version {version!r} is not supported (this reader knows 1.x)")
        problems.raise_any()
    environment = target.marker_environment()
    environments = document.get("environments")
    if isinstance(environments, list) and environments and not any(
            _marker_true(text, environment) for text in environments
            if isinstance(text, str)):
        problems.add(1, f"the lock's environments do not include {target.describe()}")
    packages = document.get("packages", [])
    if not isinstance(packages, list):
        problems.add(1, "packages is not an array of tables")
        problems.raise_any()
        return []
    found: list[LockedPackage] = []
    for index, package in enumerate(packages):
        line = lines[index] if index < len(lines) else 1
        locked = _read_package(package, line=line, file=file, environment=environment,
                               problems=problems)
        if locked is not None:
            found.append(locked)
    problems.raise_any()
    return found


def _marker_true(text: str, environment: dict[str, str]) -> bool:
    try:
        return Marker(text).evaluate(environment)
    except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName):
        return False


def _read_package(package: Any, *, line: int, file: str, environment: dict[str, str],
                  problems: Problems) -> LockedPackage | None:
    if not isinstance(package, dict) or not isinstance(package.get("name"), str):
        problems.add(line, "a package without a name")
        return None
    name = canonicalize_name(package["name"])
    marker_text = package.get("marker")
    if marker_text is not None:
        try:
            # PEP 751: `extras` and `dependency_groups` are sets in a lock's markers; a layer
            # installs no extra and only the default groups (none named).
            applies = Marker(str(marker_text)).evaluate(
                {**environment, "extra": "", "extras": frozenset(),
                 "dependency_groups": frozenset()})
        except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName) as error:
            problems.add(line, f"{name}: cannot evaluate its marker {marker_text!r}: {error}")
            return None
        if not applies:
            return None
    for unsupported in ("vcs", "directory", "archive"):
        if unsupported in package:
            problems.add(line, f"{name} comes from a {unsupported}; only wheels from an index or "
                          "a file are built into a layer")
            return None
    version = package.get("version")
    if not isinstance(version, str):
        problems.add(line, f"{name} has no version")
        return None
    wheels: list[Wheel] = []
    for wheel in package.get("wheels", []) or []:
        read_wheel = _read_wheel(wheel, name=name, line=line, problems=problems)
        if read_wheel is None:
            return None
        wheels.append(read_wheel)
    return LockedPackage(name=name, version=version,
                         hashes=frozenset(wheel.sha256 for wheel in wheels),
                         wheels=tuple(wheels), has_sdist="sdist" in package,
                         file=file, line=line)


def _read_wheel(wheel: Any, *, name: str, line: int, problems: Problems) -> Wheel | None:
    if not isinstance(wheel, dict):
        problems.add(line, f"{name}: a wheel entry is not a table")
        return None
    url, path = wheel.get("url"), wheel.get("path")
    location, filename = wheel_location(wheel, name_key="name")
    hashes = wheel.get("hashes")
    digest = hashes.get("sha256") if isinstance(hashes, dict) else None
    if location is None or not filename:
        problems.add(line, f"{name}: a wheel without a url or path")
        return None
    if not isinstance(digest, str) or len(digest) != 64:
        problems.add(line, f"{name}: the wheel {filename} has no sha256 hash")
        return None
    size = wheel.get("size")
    return Wheel(filename=filename, sha256=digest.lower(),
                 url=url if isinstance(url, str) else None,
                 path=path if isinstance(path, str) else None,
                 size=size if isinstance(size, int) else None)
