"""Python layers built from lock files: the values every step shares (a locked package, its
wheels, a located lock error). The steps are modules of this package: `target` (what the
Lambda platform accepts), the readers `requirements`, `pylock` and `uvlock` (lock text ->
locked packages for a target), `selection` (one wheel per package), `simpleapi` and `index`
(a package index's pages and its HTTP client), `cache` and `wheels` (wheel files -> layer
entries).

Values only here: no I/O, no reading of any format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from reconciler import errors


class LockError(errors.ContentError):
    """A lock file the build cannot use; `problems` locates each mistake (file, line, field),
    in file order, for `validate` to report beside the manifest's own."""

    def __init__(self, problems: list[errors.Problem]) -> None:
        ordered = sorted(set(problems),
                         key=lambda p: (p.file, p.line, p.column, p.field, p.message))
        super().__init__("\n".join(str(problem) for problem in ordered),
                         hint="regenerate the lock with hashes and pinned versions "
                              "(uv lock, uv export, pip-compile --generate-hashes)")
        self.problems = ordered


@dataclass(frozen=True)
class Wheel:
    """One wheel file a lock lists for a package: its file name (which carries its tags), where
    it is (`url` or a `path` relative to the lock's folder) and its SHA-256 (lowercase hex)."""

    filename: str
    sha256: str
    url: str | None = None
    path: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class LockedPackage:
    """A package the lock pins and the target needs. `name` is canonical (PEP 503).

    `wheels` is the lock's own list (pylock.toml, uv.lock); None for a requirements.txt, whose
    wheels are found by their SHA-256 (`hashes`) in find_links folders or an index.
    `has_sdist` tells the error for a package with no fitting wheel. `line` is where the lock
    names it (1-based, 0 when unknown)."""

    name: str
    version: str
    hashes: frozenset[str]
    wheels: tuple[Wheel, ...] | None
    has_sdist: bool = False
    file: str = ""
    line: int = 0


class Problems:
    """The located problems a reader finds in one lock file, raised together as a LockError."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.found: list[errors.Problem] = []

    def add(self, line: int, message: str, *, column: int = 1) -> None:
        self.found.append(errors.Problem(self.file, line, column, "lock", message))

    def raise_any(self) -> None:
        if self.found:
            raise LockError(self.found)


def wheel_location(entry: Mapping[str, Any], *, name_key: str) -> tuple[str | None, str | None]:
    """A lock's wheel entry read as both formats write it: its location (`url`, else `path`)
    and its file name (the `name_key` field, else the location's last part)."""
    url, path = entry.get("url"), entry.get("path")
    location = url if isinstance(url, str) else path if isinstance(path, str) else None
    filename = entry.get(name_key)
    if not isinstance(filename, str):
        filename = unquote(urlsplit(location).path.rsplit("/", 1)[-1]) if location else None
    return location, filename
