"""The folder source (`content.path`): the walk with exclude pruning, the file-type and
symlink rules, and the folder's identity (its fingerprint, from the stat cache's digests).

Symlinks: a link whose target stays inside the content folder is kept as a link (Lambda
extracts it as one under /opt). A link with an absolute target (it would dangle in /opt), one
that leads outside the folder (it could leak files such as ~/.aws/credentials), one that is
broken or one that points at an excluded path is an error; links to folders are not followed.

Never walked, whatever the exclude patterns say: the tool's own files (`skip`), anything
named `.git` (common.is_git_name), and what git ignores in the manifest's repository
(content.gitignore: asked for each folder before it is descended, so an ignored folder is
never read; the same rules in a forked worker as in this process, since they are read from
the disk by the walk itself). Hard links: a file with other links is refused only when
only its owner may read it and some of its links lie outside the walk (common.private_hard_link
says why the rule stops there).

Shell: it reads the folder and never writes; it imports no other content kind.
"""

from __future__ import annotations

import operator
import os
import posixpath
import stat
from dataclasses import dataclass
from pathlib import Path

from reconciler import archive, errors, model
from reconciler.content import common, gitignore, statcache

_by_name = operator.attrgetter("name")


def _walk(
    content: model.ContentSpec, *, base_dir: Path, label: str, skip: frozenset[str]
) -> common.Collected:
    if content.path is None:
        raise errors.ContentError(f"{label}: the content has no path")
    root = os.path.abspath(base_dir / content.path)
    try:
        root_stat = os.stat(root)
    except FileNotFoundError:
        raise errors.ContentError(f"{label}: the content folder {root} does not exist") from None
    except OSError as error:
        raise errors.ContentError(f"{label}: cannot read {root}: {error.strerror}") from error
    if not stat.S_ISDIR(root_stat.st_mode):
        raise errors.ContentError(f"{label}: the content path {root} is not a folder")
    common.check_inside_repository(content.path, base_dir=base_dir, label=label)

    prefix = common.arcname_prefix(content.prefix, label=label)
    rules = archive.ExcludeRules.compile(content.exclude)
    skipped = _skipped_relpaths(skip, real_root=os.path.realpath(root))
    ignores = gitignore.Ignores.for_folder(
        os.path.realpath(root), repository=str(common.repository_root(base_dir)))
    entries: list[model.Entry] = []
    stats: dict[str, os.stat_result] = {}
    included: set[str] = set()
    links: list[tuple[str, str]] = []
    private_links: list[tuple[str, os.stat_result]] = []
    pending_dirs = [""]
    try:
        while pending_dirs:
            rel_dir = pending_dirs.pop()
            with os.scandir(os.path.join(root, rel_dir)) as scan:
                dirents = sorted(scan, key=_by_name)
            if ignores is not None:
                for dirent in dirents:
                    if dirent.name == ".gitignore" and dirent.is_file(follow_symlinks=False):
                        ignores.enter(rel_dir, dirent.path)
            for dirent in dirents:
                relpath = f"{rel_dir}/{dirent.name}" if rel_dir else dirent.name
                # Most content folders hold none of the tool's own files: no test per entry.
                if skipped and skipped.covers(relpath):
                    continue  # the tool's own files (.reconcile/, the lockfile) beside the manifest
                if common.is_git_name(dirent.name):
                    continue  # before the patterns: no `!.git/` can bring it back
                common.check_name(dirent.name, path=dirent.path, label=label)
                # Like git, a symlink is never a folder, even one that points at a folder.
                is_dir = dirent.is_dir(follow_symlinks=False)
                if ignores is not None and ignores.ignored(relpath, is_dir=is_dir):
                    continue
                if rules.excluded(relpath, is_dir=is_dir):
                    continue
                included.add(relpath)
                if dirent.is_symlink():
                    links.append((relpath, dirent.path))
                elif is_dir:
                    pending_dirs.append(relpath)
                else:
                    file_stat = dirent.stat(follow_symlinks=False)
                    if not stat.S_ISREG(file_stat.st_mode):
                        raise errors.ContentError(
                            f"{label}: {dirent.path} is a {common.file_kind(file_stat.st_mode)}; "
                            "a layer can hold only files, folders and symlinks",
                            hint="remove it or add it to the layer's exclude patterns",
                        )
                    entries.append(
                        model.Entry(
                            arcname=prefix + relpath,
                            source=dirent.path,
                            size=file_stat.st_size,
                            executable=bool(file_stat.st_mode & 0o111),
                        )
                    )
                    stats[dirent.path] = file_stat
                    if common.private_hard_link(file_stat):
                        private_links.append((dirent.path, file_stat))
        if not entries:
            raise errors.ContentError(
                f"{label}: the content folder {root} has no files to package"
                + (" once exclude patterns are applied" if content.exclude else "")
                + (" (git ignores every file in it)" if ignores is not None
                   and ignores.files_left_out + ignores.folders_left_out else "")
            )
        _check_private_links(private_links, label=label)
        for relpath, link_path in links:
            link_text = _checked_link_text(
                relpath, link_path, root=root, included=included, label=label
            )
            entries.append(common.link_entry(prefix + relpath, source=link_path,
                                             link_text=link_text))
    except OSError as error:
        raise errors.ContentError(
            f"{label}: cannot read {error.filename or root}: {error.strerror}"
        ) from error
    left_out = 0 if ignores is None else ignores.files_left_out + ignores.folders_left_out
    return common.Collected(entries, stats, git_ignored=left_out)


@dataclass(frozen=True)
class _Skipped:
    """The tool's own paths inside one content folder, relative to its real root: each
    skipped path itself, and the hidden siblings named `.<its name>.` and more (the temp and
    lock files written beside it, such as `.layers.lock.json.lock`)."""

    paths: frozenset[str]
    sibling_prefixes: frozenset[tuple[str, str]]  # (folder relpath or "", name prefix)

    def __bool__(self) -> bool:
        return bool(self.paths or self.sibling_prefixes)

    def covers(self, relpath: str) -> bool:
        if relpath in self.paths:
            return True
        folder, _, name = relpath.rpartition("/")
        return any(folder == skipped_folder and name.startswith(prefix)
                   for skipped_folder, prefix in self.sibling_prefixes)


def _skipped_relpaths(skip: frozenset[str], *, real_root: str) -> _Skipped:
    """`skip` holds real paths; the walk sees paths under the content root, which may be
    reached through a symlink, so they are compared relative to the real root."""
    paths: set[str] = set()
    prefixes: set[tuple[str, str]] = set()
    for path in skip:
        folder, name = os.path.split(path)
        if os.path.commonpath([real_root, folder]) != real_root:
            continue
        rel_folder = Path(os.path.relpath(folder, real_root)).as_posix()
        rel_folder = "" if rel_folder == "." else rel_folder
        prefixes.add((rel_folder, f".{name}."))
        if path != real_root:
            paths.add(f"{rel_folder}/{name}" if rel_folder else name)
    return _Skipped(frozenset(paths), frozenset(prefixes))


def _check_private_links(found: list[tuple[str, os.stat_result]], *, label: str) -> None:
    """Refuse a private hard-linked file unless the walk saw every one of its links."""
    seen: dict[tuple[int, int], int] = {}
    for _, file_stat in found:
        inode = (file_stat.st_dev, file_stat.st_ino)
        seen[inode] = seen.get(inode, 0) + 1
    for path, file_stat in found:
        names = seen[(file_stat.st_dev, file_stat.st_ino)]
        if names < file_stat.st_nlink:
            raise errors.ContentError(
                f"{label}: " + common.private_hard_link_problem(
                    path, links=file_stat.st_nlink, seen=names),
                hint="copy the file into the content folder instead of linking it (cp, not ln), "
                     "or exclude it")


def _lexically_inside(relpath: str, link_text: str) -> bool:
    """Whether the link text, read from the link's folder, stays inside the content root."""
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(relpath), link_text))
    return resolved != ".." and not resolved.startswith("../")


def _checked_link_text(
    relpath: str, link_path: str, *, root: str, included: set[str], label: str
) -> str:
    """The text of a symlink that is safe to keep as a link, or a ContentError."""
    link_text = os.readlink(link_path)
    try:
        link_text.encode("utf-8")
    except UnicodeEncodeError:
        raise errors.ContentError(
            f"{label}: symlink {link_path!r} has a target that is not valid UTF-8"
        ) from None
    if posixpath.isabs(link_text) or os.path.isabs(link_text):
        raise errors.ContentError(
            f"{label}: symlink {link_path} has the absolute target {link_text!r}, "
            "which would not exist inside Lambda's /opt",
            hint="make it a relative link to a file inside the content folder",
        )
    real_root = os.path.realpath(root)
    real_target = os.path.realpath(link_path)
    inside = os.path.commonpath([real_root, real_target]) == real_root
    if not inside or not _lexically_inside(relpath, link_text):
        raise errors.ContentError(
            f"{label}: symlink {link_path} points outside the content folder (to {real_target})",
            hint="copy the file into the content folder or exclude the link",
        )
    if not os.path.exists(link_path):
        raise errors.ContentError(
            f"{label}: symlink {link_path} is broken (its target {link_text!r} does not exist)",
            hint="fix or remove the link, or exclude it",
        )
    target_relpath = Path(os.path.relpath(real_target, real_root)).as_posix()
    if target_relpath != "." and target_relpath not in included:
        raise errors.ContentError(
            f"{label}: symlink {link_path} points to {target_relpath}, which is excluded "
            "and so would dangle in the layer",
        )
    return link_text


def collect(
    content: model.ContentSpec, *, base_dir: Path, label: str, skip: frozenset[str]
) -> common.Collected:
    """The folder's entries (files and kept links), checked for safety and total size."""
    collected = _walk(content, base_dir=base_dir, label=label, skip=skip)
    common.check_total_size(collected.entries, label=label)
    return collected


def files_of(collected: common.Collected) -> list[tuple[str, os.stat_result]]:
    """The regular files of a walk with the stat it took of each: what `fingerprint` reads
    (for StatCache.reading_ahead)."""
    return [(entry.source, collected.stats[entry.source]) for entry in collected.entries
            if entry.link_target is None]


def fingerprint(collected: common.Collected, *, cache: statcache.StatCache,
                digests_into: dict[str, str] | None = None) -> model.Artifact:
    """The identity of a walked folder: its entries with their files' digests, taken from
    `cache` when a file is unchanged (and put in `digests_into`, by source, when given)."""
    file_digests: list[tuple[model.Entry, str]] = []
    for entry in collected.entries:
        if entry.link_target is not None:
            file_digests.append((entry, ""))
        else:
            file_stat = collected.stats[entry.source]
            digest = cache.file_sha256(entry.source, file_stat)
            file_digests.append((entry, digest))
            if digests_into is not None:
                digests_into[entry.source] = digest
    return model.Artifact(fingerprint=archive.fingerprint(file_digests),
                          unzipped_size=sum(entry.size for entry in collected.entries),
                          git_ignored=collected.git_ignored)


def identify(
    content: model.ContentSpec, *, base_dir: Path, label: str, cache: statcache.StatCache,
    skip: frozenset[str],
) -> model.Artifact:
    """The folder's fingerprint (no zip): its entries with their files' digests, taken from
    `cache` when a file is unchanged."""
    collected = collect(content, base_dir=base_dir, label=label, skip=skip)
    with cache.reading_ahead(files_of(collected)):  # a cold tree is read in two processes
        return fingerprint(collected, cache=cache)
