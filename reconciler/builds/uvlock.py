"""Reading uv's own lock (`uv.lock`, version 1) into locked packages for a target: the
dependency graph walked from the root project (the package whose source is `editable = "."`
or `virtual = "."`), each dependency's marker evaluated for the target, the extras a
dependency asks for followed, and each reached package's wheels with their SHA-256.

Pure: it parses the text it is given. The layer holds the project's runtime dependencies:
not the root project itself (its code is the function's), not its development groups. A
reached package that is not a wheel from an index, a URL or a file (git, a directory, an
editable workspace member) is a located error, as is a lock version other than 1.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
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

SUPPORTED_VERSION = 1
_ROOT_SOURCES = ("editable", "virtual")
_WHEEL_SOURCES = ("registry", "url", "path")


@dataclass(frozen=True)
class _Node:
    index: int
    line: int
    name: str
    table: dict[str, Any]


def read(text: str, *, file: str, target: Target) -> list[LockedPackage]:
    """The packages `target` needs, reached from the root project, in lock order. Raises
    LockError with every located problem."""
    document = tomlfile.load(text, file=file)
    problems = Problems(file)
    if document.get("version") != SUPPORTED_VERSION:
        problems.add(1, f"uv.lock version {document.get('version')!r} is not supported "
                        f"(this reader knows version {SUPPORTED_VERSION})")
        problems.raise_any()
    tables = document.get("package", [])
    lines = tomlfile.table_lines(text, "package")
    nodes: list[_Node] = []
    for index, table in enumerate(tables if isinstance(tables, list) else []):
        line = lines[index] if index < len(lines) else 1
        if not isinstance(table, dict) or not isinstance(table.get("name"), str):
            problems.add(line, "a package without a name")
            continue
        nodes.append(_Node(index, line, canonicalize_name(table["name"]), table))
    problems.raise_any()
    roots = [node for node in nodes if _source_kind(node.table) in _ROOT_SOURCES
             and node.table["source"][_source_kind(node.table)] == "."]
    if not roots:
        problems.add(1, "no root project (a package with source editable = \".\" or "
                        "virtual = \".\"): was this lock written by `uv lock`?")
        problems.raise_any()
    reached = _walk(nodes, roots, environment=target.marker_environment(), problems=problems)
    root_indexes = {root.index for root in roots}
    found = [_locked(node, problems=problems, file=file) for node in nodes
             if node.index in reached and node.index not in root_indexes]
    problems.raise_any()
    return [package for package in found if package is not None]


def _source_kind(table: dict[str, Any]) -> str | None:
    source = table.get("source")
    if not isinstance(source, dict) or len(source) == 0:
        return None
    kind: str = next(iter(source))
    return kind


def _walk(nodes: list[_Node], roots: list[_Node], *, environment: dict[str, str],
          problems: Problems) -> set[int]:
    """The indexes of the packages reached from `roots` through dependencies whose markers
    hold for the target (and the optional dependencies of the extras asked for)."""
    by_name: dict[str, list[_Node]] = {}
    for node in nodes:
        by_name.setdefault(node.name, []).append(node)
    reached: set[int] = set()
    seen: set[tuple[int, str]] = set()
    queue: deque[tuple[_Node, str]] = deque((root, "") for root in roots)
    while queue:
        node, extra = queue.popleft()
        if (node.index, extra) in seen:
            continue
        seen.add((node.index, extra))
        reached.add(node.index)
        if extra:
            optional = node.table.get("optional-dependencies", {})
            dependencies = optional.get(extra, []) if isinstance(optional, dict) else []
        else:
            dependencies = node.table.get("dependencies", [])
        for dependency in dependencies if isinstance(dependencies, list) else []:
            target_node = _dependency_node(dependency, owner=node, by_name=by_name,
                                           environment=environment, problems=problems)
            if target_node is None:
                continue
            queue.append((target_node, ""))
            extras = dependency.get("extra", [])
            queue.extend((target_node, str(name)) for name in
                         (extras if isinstance(extras, list) else []))
    return reached


def _dependency_node(dependency: Any, *, owner: _Node, by_name: dict[str, list[_Node]],
                     environment: dict[str, str], problems: Problems) -> _Node | None:
    """The package a dependency entry names, when its marker holds; None otherwise (and a
    problem when it names nothing or several packages)."""
    if not isinstance(dependency, dict) or not isinstance(dependency.get("name"), str):
        problems.add(owner.line, f"{owner.name}: a dependency without a name")
        return None
    name = canonicalize_name(dependency["name"])
    marker = dependency.get("marker")
    if marker is not None:
        try:
            if not Marker(str(marker)).evaluate({**environment, "extra": ""}):
                return None
        except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName) as error:
            problems.add(owner.line, f"{owner.name}: cannot evaluate the marker {marker!r} of "
                                     f"its dependency {name}: {error}")
            return None
    candidates = [node for node in by_name.get(name, [])
                  if ("version" not in dependency
                      or node.table.get("version") == dependency["version"])
                  and ("source" not in dependency
                       or node.table.get("source") == dependency["source"])]
    if len(candidates) != 1:
        what = "no package" if not candidates else f"{len(candidates)} packages"
        problems.add(owner.line, f"{owner.name}: its dependency {name} matches {what} in the "
                                 "lock")
        return None
    return candidates[0]


def _locked(node: _Node, *, problems: Problems, file: str) -> LockedPackage | None:
    kind = _source_kind(node.table)
    if kind == "virtual":
        return None  # a workspace member with no files of its own: its dependencies count
    if kind not in _WHEEL_SOURCES:
        problems.add(node.line, f"{node.name} comes from {kind or 'an unknown source'}; only "
                                "wheels from an index, a URL or a file are built into a layer")
        return None
    version = node.table.get("version")
    if not isinstance(version, str):
        problems.add(node.line, f"{node.name} has no version")
        return None
    wheels: list[Wheel] = []
    for entry in node.table.get("wheels", []) or []:
        wheel = _wheel(entry, node=node, problems=problems)
        if wheel is None:
            return None
        wheels.append(wheel)
    return LockedPackage(name=node.name, version=version,
                         hashes=frozenset(wheel.sha256 for wheel in wheels),
                         wheels=tuple(wheels), has_sdist="sdist" in node.table,
                         file=file, line=node.line)


def _wheel(entry: Any, *, node: _Node, problems: Problems) -> Wheel | None:
    if not isinstance(entry, dict):
        problems.add(node.line, f"{node.name}: a wheel entry is not a table")
        return None
    url, path = entry.get("url"), entry.get("path")
    location, filename = wheel_location(entry, name_key="filename")
    if not filename:
        problems.add(node.line, f"{node.name}: a wheel without a url, path or filename")
        return None
    if location is None and _source_kind(node.table) == "path":
        # uv writes a local wheel as the package's `source = { path = ... }` and names the
        # file only in the wheel entry.
        path = node.table["source"]["path"]
    algorithm, _, digest = str(entry.get("hash", "")).partition(":")
    if algorithm != "sha256" or len(digest) != 64:
        problems.add(node.line, f"{node.name}: the wheel {filename} has no sha256 hash")
        return None
    size = entry.get("size")
    return Wheel(filename=filename, sha256=digest.lower(),
                 url=url if isinstance(url, str) else None,
                 path=path if isinstance(path, str) else None,
                 size=size if isinstance(size, int) else None)
