"""What git ignores below a folder layer's content: the repository's `.gitignore` files at every
level and `.git/info/exclude`, matched by pathspec's gitignore mode (git's own rules, kept by
others: negation, anchoring, `**`, folder-only patterns), so that a local apply and CI's
checkout package the same files.

Precedence as git's: a deeper `.gitignore` wins over a shallower one, every `.gitignore` over
`info/exclude`, and within a file the last matching pattern wins. A folder git ignores is
never descended (the walk asks for folders first), which is also git's rule that a file in an
ignored folder cannot be brought back. The user's global excludes (core.excludesFile) are not
read: they differ from one machine to the next, which is what this module exists to avoid.

Outside a git repository (no `.git` above the manifest) nothing extra is ignored. A content
folder that git ignores itself (a build output such as `build/layer`) is a folder the
manifest names on purpose: git's rules do not describe it, so none is applied inside it.

Shell: it reads ignore files and never writes; the walk (content.folder) owns the traversal.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pathspec

# Parsed ignore files, by path and the stat they were read under: a plan of a hundred layers
# reads the repository's root `.gitignore` once, and a changed file is read again.
_PARSED: dict[str, tuple[tuple[int, int], _Rules | None]] = {}
_NAMED_GROUP = re.compile(r"\(\?P<[A-Za-z_][A-Za-z0-9_]*>")


@dataclass(frozen=True)
class _Rules:
    """One ignore file's patterns, and one regex that matches whatever any of them matches:
    most paths match no pattern, and one search says so for all of them at once (pathspec
    tries each pattern in turn, which doubled the walk of a 7,680-file tree)."""

    spec: pathspec.GitIgnoreSpec
    any_pattern: re.Pattern[str]

    def decide(self, path: str) -> bool | None:
        """True: ignored, False: re-included (`!`), None: no pattern speaks of `path`."""
        if self.any_pattern.match(path) is None:
            return None
        return self.spec.check_file(path).include


def _spec(path: str) -> _Rules | None:
    """The patterns of the ignore file at `path` (None: no such file, or no pattern)."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    key = (found.st_mtime_ns, found.st_size)
    cached = _PARSED.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    import pathspec  # only once an ignore file is met (~10 ms to import)

    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    sources = [_NAMED_GROUP.sub("(?:", pattern.regex.pattern) for pattern in spec.patterns
               if pattern.include is not None and isinstance(pattern, pathspec.RegexPattern)
               and pattern.regex is not None]
    parsed = _Rules(spec, re.compile("|".join(f"(?:{source})" for source in sources))
                    ) if sources else None
    _PARSED[path] = (key, parsed)
    return parsed


def _git_dir(repository: str) -> str | None:
    """The git directory of the repository at `repository` (a worktree's `.git` is a file
    naming it); `info/exclude` lives in the common one (`commondir`)."""
    dot_git = os.path.join(repository, ".git")
    if os.path.isdir(dot_git):
        return dot_git
    try:
        with open(dot_git, encoding="utf-8") as handle:
            line = handle.readline().strip()
    except OSError:
        return None
    if not line.startswith("gitdir:"):
        return None
    git_dir = os.path.join(repository, line.removeprefix("gitdir:").strip())
    try:
        with open(os.path.join(git_dir, "commondir"), encoding="utf-8") as handle:
            return os.path.join(git_dir, handle.readline().strip())
    except OSError:
        return git_dir


@dataclass
class Ignores:
    """The ignore rules that apply below one content folder, as the walk descends it.

    `levels` holds (the folder of an ignore file as a path below the repository root, ""
    or ending in "/"; its patterns), least specific first: `info/exclude`, the `.gitignore`
    files above the content folder from the root down, then those the walk enters. `prefix`
    is the content folder's path below the repository root. `files_left_out` and
    `folders_left_out` count what `ignored` said yes to."""

    prefix: str
    levels: list[tuple[str, _Rules]] = field(default_factory=list)
    files_left_out: int = 0
    folders_left_out: int = 0

    @classmethod
    def for_folder(cls, real_root: str, *, repository: str) -> Ignores | None:
        """The rules for the content folder at `real_root` (a real path) from the
        repository at `repository` (None: not a git repository, the folder lies outside it,
        or git ignores the folder itself). The walk adds the folder's own `.gitignore` and
        those below it (`enter`)."""
        git_dir = _git_dir(repository)
        relative = os.path.relpath(real_root, repository)
        if git_dir is None or relative.startswith(".."):
            return None
        parts = [part for part in relative.replace(os.sep, "/").split("/")
                 if part and part != "."]
        found = cls(prefix="".join(f"{part}/" for part in parts))
        exclude = _spec(os.path.join(git_dir, "info", "exclude"))
        if exclude is not None:
            found.levels.append(("", exclude))
        for depth in range(len(parts)):  # the folders above the content folder, root first
            spec = _spec(os.path.join(repository, *parts[:depth], ".gitignore"))
            if spec is not None:
                found.levels.append(("".join(f"{part}/" for part in parts[:depth]), spec))
        if any(found._decided("".join(f"{part}/" for part in parts[:depth]))
               for depth in range(1, len(parts) + 1)):
            return None  # a build output the manifest names on purpose: see the docstring
        return found

    def _decided(self, path: str) -> bool:
        """Whether the rules ignore `path` (below the repository root; a folder ends in
        "/"): the most specific level that matches it decides."""
        for base, rules in reversed(self.levels):
            if path.startswith(base):
                include = rules.decide(path[len(base):])
                if include is not None:
                    return include
        return False

    def enter(self, rel_dir: str, gitignore_path: str) -> None:
        """The walk found folder `rel_dir`'s `.gitignore` (at `gitignore_path`) before
        looking at that folder's entries."""
        spec = _spec(gitignore_path)
        if spec is not None:
            self.levels.append((self.prefix + (f"{rel_dir}/" if rel_dir else ""), spec))

    def ignored(self, relpath: str, *, is_dir: bool) -> bool:
        """Whether git ignores `relpath` (below the content folder; counted if so)."""
        if not self._decided(self.prefix + relpath + ("/" if is_dir else "")):
            return False
        if is_dir:
            self.folders_left_out += 1
        else:
            self.files_left_out += 1
        return True
