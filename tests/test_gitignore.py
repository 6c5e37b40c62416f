"""content.gitignore through the folder walk: what git ignores in the manifest's repository is
left out, with git's precedence, and nothing extra outside a repository or inside a content
folder git ignores itself."""

from __future__ import annotations

from pathlib import Path

from reconciler import content, model
from reconciler.content import common, folder, statcache


def walk(base: Path, path: str) -> common.Collected:
    spec = model.ContentSpec(kind=model.SourceKind.PATH, path=path)
    return folder.collect(spec, base_dir=base, label="layers.x", skip=frozenset())


def names(collected: common.Collected) -> list[str]:
    return sorted(entry.arcname for entry in collected.entries)


def files(root: Path, *paths: str) -> None:
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(path)


def test_deeper_rules_win_and_ignored_folders_count_once(tmp_path: Path) -> None:
    """A nested .gitignore re-includes what the root one ignores; info/exclude ranks below
    every .gitignore; an ignored folder counts once and its files are never listed."""
    (tmp_path / ".git" / "info").mkdir(parents=True)
    (tmp_path / ".git" / "info" / "exclude").write_text("*.txt\n")
    (tmp_path / ".gitignore").write_text("*.tmp\nbuild/\n!notes.txt\n")
    files(tmp_path / "layer", "a.py", "x.tmp", "notes.txt", "other.txt", "build/b.py",
          "deep/.gitignore", "deep/y.tmp", "deep/z.py")
    (tmp_path / "layer" / "deep" / ".gitignore").write_text("!y.tmp\nz.py\n")

    found = walk(tmp_path, "layer")

    assert names(found) == ["a.py", "deep/.gitignore", "deep/y.tmp", "notes.txt"]
    assert found.git_ignored == 4  # x.tmp, other.txt, build/, deep/z.py


def test_outside_a_repository_nothing_extra_is_ignored(tmp_path: Path) -> None:
    """Without a `.git` above the manifest, a .gitignore is just a file: nothing is left
    out and the identity is the same as without it."""
    files(tmp_path / "layer", "a.py", "x.tmp")
    (tmp_path / ".gitignore").write_text("*.tmp\n")
    found = walk(tmp_path, "layer")
    assert names(found) == ["a.py", "x.tmp"] and found.git_ignored == 0


def test_a_content_folder_git_ignores_itself_is_packaged_whole(tmp_path: Path) -> None:
    """A build output the manifest names (`build/layer`, under an ignored `build/`) is
    packaged as it is: git's rules do not describe it."""
    (tmp_path / ".git").mkdir()
    (tmp_path / ".gitignore").write_text("build/\n*.tmp\n")
    files(tmp_path / "build" / "layer", "a.py", "x.tmp")
    found = walk(tmp_path, "build/layer")
    assert names(found) == ["a.py", "x.tmp"] and found.git_ignored == 0


def test_ignoring_a_file_changes_the_fingerprint_only_when_it_was_packaged(
        tmp_path: Path) -> None:
    """Ignoring a file the layer had changes its identity; ignoring one it never had (an
    excluded file) does not."""
    (tmp_path / ".git").mkdir()
    files(tmp_path / "layer", "a.py", "secret.env", "skip.me")
    spec = model.ContentSpec(kind=model.SourceKind.PATH, path="layer", exclude=("skip.me",))
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()

    def identity() -> str:
        cache = statcache.StatCache.load(cache_dir / "cache.json")
        return content.identify(spec, base_dir=tmp_path, label="layers.x",
                                cache=cache).fingerprint

    before = identity()
    (tmp_path / ".gitignore").write_text("skip.me\n")
    unchanged = identity()
    (tmp_path / ".gitignore").write_text("skip.me\n*.env\n")
    changed = identity()
    assert unchanged == before and changed != before
