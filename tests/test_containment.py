"""Tests that content cannot leak out of the repository and that the tool's own files are never
packaged, on real folders in tmp_path: `content.path`/`content.zip` must resolve inside the
repository of the manifest (content and the validate checks of workspace), the lockfile's temp
and lock files are skipped, and abandoned build temp files are removed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zipcraft

from reconciler import content as layer_content
from reconciler import errors, layerbuild, model, workspace
from reconciler.content import common, statcache

LABEL = "layers.leaky"


def _repo(tmp_path: Path, *, git_file: bool = False) -> Path:
    """A repository folder (with a `.git` folder, or the `.git` file of a worktree)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    if git_file:
        (repo / ".git").write_text("gitdir: /elsewhere/.git/worktrees/repo\n")
    else:
        (repo / ".git").mkdir()
    return repo


def _secrets(tmp_path: Path) -> Path:
    """A folder outside the repository holding a credentials file."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "credentials").write_text("[default]\naws_secret_access_key = not-real\n")
    return outside


def _identify(base_dir: Path, content: model.ContentSpec) -> model.Artifact:
    return layer_content.identify(content, base_dir=base_dir, label=LABEL,
                            cache=statcache.StatCache.load(base_dir / ".reconcile" / "c.json"))


def _path(path: str) -> model.ContentSpec:
    return model.ContentSpec(kind=model.SourceKind.PATH, path=path)


def test_repository_root_is_the_nearest_folder_with_git(tmp_path: Path) -> None:
    """The root is the nearest `.git` (folder or worktree file) at or above the manifest's
    folder, and the manifest's own folder when there is none."""
    repo = _repo(tmp_path, git_file=True)
    (repo / "deploy" / "prod").mkdir(parents=True)
    assert common.repository_root(repo / "deploy" / "prod") == repo.resolve()
    assert common.repository_root(repo) == repo.resolve()
    lone = tmp_path / "lone"
    lone.mkdir()
    assert common.repository_root(lone) == lone.resolve()


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlinked-folder"])
def test_content_path_outside_the_repository_is_refused(tmp_path: Path, how: str) -> None:
    """`../..`, an absolute path and a symlink to a folder outside are refused, naming both."""
    repo = _repo(tmp_path)
    outside = _secrets(tmp_path)
    if how == "dotdot":
        relpath = "../outside"
    elif how == "absolute":
        relpath = str(outside)
    else:
        os.symlink(outside, repo / "vendored")
        relpath = "vendored"
    with pytest.raises(errors.ContentError) as raised:
        _identify(repo, _path(relpath))
    message = raised.value.message
    assert LABEL in message and relpath in message and "outside the repository" in message
    assert str(outside.resolve()) in message


def test_content_above_the_manifest_but_inside_the_repository_is_allowed(tmp_path: Path) -> None:
    """A manifest in deploy/ may name ../layers/a: the repository, not its folder, is the fence."""
    repo = _repo(tmp_path)
    (repo / "layers" / "a").mkdir(parents=True)
    (repo / "layers" / "a" / "m.py").write_text("X = 1\n")
    (repo / "deploy").mkdir()
    assert _identify(repo / "deploy", _path("../layers/a")).fingerprint


def test_zip_outside_the_repository_is_refused(tmp_path: Path) -> None:
    """A content.zip that resolves outside the repository is refused before it is read."""
    repo = _repo(tmp_path)
    zipcraft.write(tmp_path / "stolen.zip", [zipcraft.Member("python/a.py", b"x")])
    content = model.ContentSpec(kind=model.SourceKind.ZIP, zip="../stolen.zip")
    with pytest.raises(errors.ContentError, match="outside the repository") as raised:
        _identify(repo, content)
    assert LABEL in raised.value.message and "../stolen.zip" in raised.value.message


def _validate(repo: Path, content_line: str) -> list[errors.Problem]:
    manifest_path = repo / "layers.yaml"
    manifest_path.write_text(f"version: 1\nlayers:\n  leaky:\n    content: {content_line}\n")
    try:
        workspace.load_manifest(workspace.Workspace.for_manifest(manifest_path))
    except errors.ManifestError as invalid:
        return invalid.problems
    return []


@pytest.mark.parametrize("kind", ["path", "zip"])
def test_validate_locates_content_outside_the_repository(tmp_path: Path, kind: str) -> None:
    """The disk checks report an escaping path or zip at its line and column, field named."""
    repo = _repo(tmp_path)
    _secrets(tmp_path)
    zipcraft.write(tmp_path / "outside" / "x.zip", [zipcraft.Member("a.py", b"x")])
    target = "../outside" if kind == "path" else "../outside/x.zip"
    problems = _validate(repo, f"{{{kind}: {target}}}")
    assert [(problem.line, problem.field) for problem in problems] == [
        (4, f"layers.leaky.content.{kind}")]
    assert "outside the repository" in problems[0].message


def test_validate_reports_unsafe_zip_members(tmp_path: Path) -> None:
    """validate names a prebuilt zip's escaping link and encrypted member in one problem."""
    repo = _repo(tmp_path)
    zipcraft.write(repo / "v.zip", [
        zipcraft.Member("python/a.py", b"x"),
        zipcraft.Member("python/passwd", b"../../../../etc/passwd", mode=zipcraft.LINK_MODE),
        zipcraft.Member("python/s.py", b"x", flags=zipcraft.FLAG_ENCRYPTED)])
    problems = _validate(repo, "{zip: v.zip}")
    assert len(problems) == 1
    assert "python/passwd" in problems[0].message and "encrypted" in problems[0].message
    assert str(problems[0]).startswith(f"{repo / 'layers.yaml'}:4:")


def test_validate_checks_declared_size_only_of_zips_used_as_they_are(tmp_path: Path) -> None:
    """Declared sizes over the limit fail validate for a byte-for-byte zip, not for one to
    normalize (its excludes may bring it under; plan checks what is packaged)."""
    repo = _repo(tmp_path)
    zipcraft.write(repo / "v.zip", [
        zipcraft.Member("python/a.py", b"x"),
        zipcraft.Member("python/huge.bin", b"x", declared_size=model.MAX_UNZIPPED_BYTES)])
    problems = _validate(repo, "{zip: v.zip}")
    assert len(problems) == 1 and str(model.MAX_UNZIPPED_BYTES) in problems[0].message
    assert _validate(repo, "{zip: v.zip, normalize: true}") == []


def test_lockfile_temp_and_lock_files_are_never_packaged(tmp_path: Path) -> None:
    """With `path: .`, the lockfile and every `.<lockfile name>.*` beside it are skipped."""
    (tmp_path / "python").mkdir()
    (tmp_path / "python" / "m.py").write_text("X = 1\n")
    space = workspace.Workspace.for_manifest(tmp_path / "layers.yaml")
    tool_files = ["layers.lock.json", ".layers.lock.json.lock",
                  ".layers.lock.json.123.ab12.tmp", "python/.layers.lock.json.lock"]
    for name in tool_files:
        (tmp_path / name).write_text("changes on every run\n")
    (tmp_path / ".layers.lockfile").write_text("not the tool's\n")
    entries = layer_content.collect(_path("."), base_dir=tmp_path, label=LABEL,
                              skip=space.tool_paths)
    # Only the lockfile's own folder is fenced: a same-named file elsewhere is user content.
    assert sorted(entry.arcname for entry in entries) == [
        ".layers.lockfile", "python/.layers.lock.json.lock", "python/m.py"]


def test_tool_paths_name_the_cache_and_the_lockfile(tmp_path: Path) -> None:
    """Workspace.tool_paths holds the real paths of .reconcile/ and the lockfile."""
    space = workspace.Workspace.for_manifest(tmp_path / "layers.yaml", tmp_path / "x.lock.json")
    assert space.tool_paths == frozenset({
        os.path.realpath(tmp_path / ".reconcile"), os.path.realpath(tmp_path / "x.lock.json")})


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    return int(finished.stdout)


def test_abandoned_build_temp_files_are_removed(tmp_path: Path) -> None:
    """Temp zips of a dead writer, or untouched for minutes, go; a live writer's fresh one stays."""
    build_dir = tmp_path / "build"
    build_dir.mkdir()
    dead = build_dir / f".0123456789abcdef.{_dead_pid()}.x1y2.zip.tmp"
    old = build_dir / ".0123456789abcdef.r4nd.zip.tmp"  # no pid: judged by age alone
    live = build_dir / f".0123456789abcdef.{os.getpid()}.z9.zip.tmp"
    unrelated = build_dir / "notes.tmp"
    for path in (dead, old, live, unrelated):
        path.write_bytes(b"partial")
    long_ago = time.time() - layerbuild.STALE_BUILD_TEMP_SECONDS - 60
    os.utime(old, (long_ago, long_ago))
    os.utime(unrelated, (long_ago, long_ago))
    removed = layerbuild.remove_stale_build_temps(build_dir)
    assert sorted(removed) == sorted([dead, old])
    assert sorted(path.name for path in build_dir.iterdir()) == sorted([live.name, "notes.tmp"])


def test_build_removes_abandoned_temp_files_in_its_folder(tmp_path: Path) -> None:
    """A build into a folder clears what a killed build left there, and leaves only its zip
    (with the zip's index and the layer's latest-zip pointer, for incremental rebuilds)."""
    (tmp_path / "layer").mkdir()
    (tmp_path / "layer" / "m.py").write_text("X = 1\n")
    build_dir = tmp_path / "build"
    build_dir.mkdir()
    leftover = build_dir / f".0123456789abcdef.{_dead_pid()}.q.zip.tmp"
    leftover.write_bytes(b"partial")
    artifact = _identify(tmp_path, _path("layer"))
    built = layerbuild.build(_path("layer"), artifact, base_dir=tmp_path, label=LABEL,
                          build_dir=build_dir)
    assert not leftover.exists()
    assert [path.name for path in build_dir.glob("*.zip*")] == [f"{built.fingerprint}.zip"]



def _folder_with_git(repo: Path) -> None:
    """Files beside the repository's `.git`, whose config holds a token as actions/checkout
    leaves it, and git's names elsewhere: a worktree's `.git` file, a `.GIT` folder."""
    (repo / ".git" / "config").write_text(
        '[http "https://github.com/"]\n\textraheader = AUTHORIZATION: basic c2VjcmV0\n')
    (repo / "python" / "sub").mkdir(parents=True)
    (repo / "python" / "m.py").write_text("X = 1\n")
    (repo / "python" / "sub" / ".git").write_text("gitdir: ../../.git/modules/sub\n")
    (repo / "python" / ".GIT").mkdir()
    (repo / "python" / ".GIT" / "config").write_text("[core]\n")


@pytest.mark.parametrize("exclude", [(), ("!.git/", "!.git/**"), ("!.git", "!**/.git/**"),
                                     ("!*",)])
def test_git_is_never_packaged_whatever_the_patterns(tmp_path: Path,
                                                     exclude: tuple[str, ...]) -> None:
    """`.git` folders and files, in any case and at any depth, are left out even when a negated
    pattern re-includes them."""
    repo = _repo(tmp_path)
    _folder_with_git(repo)
    content = model.ContentSpec(kind=model.SourceKind.PATH, path=".", exclude=exclude)
    entries = layer_content.collect(content, base_dir=repo, label=LABEL)
    assert [entry.arcname for entry in entries] == ["python/m.py"]


@pytest.mark.parametrize("relpath", [".git", ".git/hooks", "python/sub/../../.git", ".GIT",
                                     "via-link"])
def test_content_path_at_or_inside_git_is_refused(tmp_path: Path, relpath: str) -> None:
    """A content folder that is a `.git`, lies in one, or reaches one through a symlink is
    refused at validate (located) and at plan's identify (naming the layer)."""
    repo = _repo(tmp_path)
    _folder_with_git(repo)
    (repo / ".git" / "hooks").mkdir()
    (repo / ".git" / "hooks" / "pre-commit").write_text("#!/bin/sh\n")
    (repo / ".GIT").mkdir()
    (repo / ".GIT" / "f").write_text("x\n")
    os.symlink(".git", repo / "via-link")
    problems = _validate(repo, f"{{path: '{relpath}'}}")
    assert [(problem.line, problem.field) for problem in problems] == [
        (4, "layers.leaky.content.path")]
    assert "inside a .git folder" in problems[0].message
    with pytest.raises(errors.ContentError, match=r"inside a \.git folder") as raised:
        _identify(repo, _path(relpath))
    assert raised.value.message.startswith(f"{LABEL}: '{relpath}'")


def test_a_folder_named_like_git_is_still_content(tmp_path: Path) -> None:
    """Only `.git` itself is git's: `.github`, `git` and `x.git` are packaged as usual."""
    repo = _repo(tmp_path)
    for name in (".github", "git", "x.git"):
        (repo / "src" / name).mkdir(parents=True)
        (repo / "src" / name / "f").write_text("x\n")
    entries = layer_content.collect(_path("src"), base_dir=repo, label=LABEL)
    assert sorted(entry.arcname for entry in entries) == [".github/f", "git/f", "x.git/f"]
    assert _validate(repo, "{path: src/.github}") == []


def test_prebuilt_zip_with_git_members_is_refused(tmp_path: Path) -> None:
    """A zip uploaded as it is may hold no `.git` member (validate and identify refuse it,
    counting them); a zip to normalize drops them."""
    repo = _repo(tmp_path)
    zipcraft.write(repo / "v.zip", [
        zipcraft.Member("python/a.py", b"x"),
        zipcraft.Member(".git/config", b"extraheader = AUTHORIZATION: basic c2VjcmV0\n"),
        zipcraft.Member("python/.Git/HEAD", b"ref: refs/heads/main\n")])
    problems = _validate(repo, "{zip: v.zip}")
    assert len(problems) == 1 and problems[0].field == "layers.leaky.content.zip"
    assert "2 member(s) lie in a .git folder" in problems[0].message
    assert "'.git/config'" in problems[0].message
    with pytest.raises(errors.ContentError, match=r"2 member\(s\) lie in a .git folder"):
        _identify(repo, model.ContentSpec(kind=model.SourceKind.ZIP, zip="v.zip"))
    normalized = model.ContentSpec(kind=model.SourceKind.ZIP, zip="v.zip", normalize=True)
    assert _validate(repo, "{zip: v.zip, normalize: true}") == []
    entries = layer_content.collect(normalized, base_dir=repo, label=LABEL)
    assert [entry.arcname for entry in entries] == ["python/a.py"]


def _private_file(path: Path) -> Path:
    path.write_text("[default]\naws_secret_access_key = not-real\n")
    path.chmod(0o600)
    return path


def test_private_hard_link_leaving_the_folder_is_refused(tmp_path: Path) -> None:
    """A hard link to a file only its owner may read, whose other link lies outside the
    content folder, is refused naming the path and the links the walk saw."""
    repo = _repo(tmp_path)
    (repo / "src").mkdir()
    os.link(_private_file(_secrets(tmp_path) / "private"), repo / "src" / "creds")
    with pytest.raises(errors.ContentError, match="hard link") as raised:
        _identify(repo, _path("src"))
    message = raised.value.message
    assert message.startswith(f"{LABEL}: {repo / 'src' / 'creds'} is a hard link")
    assert "(2 links, 1 of them in the content folder)" in message
    assert raised.value.hint is not None and "cp, not ln" in raised.value.hint


def test_hard_links_that_are_readable_or_all_inside_are_packaged(tmp_path: Path) -> None:
    """A readable hard-linked file (as uv and pnpm link from their caches) is packaged, and so
    is a private one whose every link is inside the content folder."""
    repo = _repo(tmp_path)
    (repo / "src").mkdir()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "six.py").write_text("X = 1\n")
    (cache / "six.py").chmod(0o644)
    os.link(cache / "six.py", repo / "src" / "six.py")
    os.link(_private_file(repo / "src" / "a.cfg"), repo / "src" / "b.cfg")
    entries = layer_content.collect(_path("src"), base_dir=repo, label=LABEL)
    assert sorted(entry.arcname for entry in entries) == ["a.cfg", "b.cfg", "six.py"]
    # Excluding one of the private pair hides a link from the walk: then it is refused.
    content = model.ContentSpec(kind=model.SourceKind.PATH, path="src", exclude=("b.cfg",))
    with pytest.raises(errors.ContentError, match="hard link"):
        layer_content.collect(content, base_dir=repo, label=LABEL)


def test_private_hard_linked_zip_is_refused(tmp_path: Path) -> None:
    """A content.zip that is a hard link to a private file is refused at validate and plan."""
    repo = _repo(tmp_path)
    zipcraft.write(tmp_path / "outside.zip", [zipcraft.Member("python/a.py", b"x")])
    (tmp_path / "outside.zip").chmod(0o600)
    os.link(tmp_path / "outside.zip", repo / "v.zip")
    problems = _validate(repo, "{zip: v.zip}")
    assert len(problems) == 1 and "'v.zip' is a hard link" in problems[0].message
    with pytest.raises(errors.ContentError, match="is a hard link"):
        _identify(repo, model.ContentSpec(kind=model.SourceKind.ZIP, zip="v.zip"))


def _walk_problems(repo: Path, content_line: str) -> list[errors.Problem]:
    """What validate reports for one layer: the manifest's checks, then plan's walk."""
    problems = _validate(repo, content_line)
    if problems:
        return problems
    space = workspace.Workspace.for_manifest(repo / "layers.yaml")
    return workspace.walk_problems(space, workspace.load_manifest(space))


def test_walk_problems_locate_what_plan_refuses(tmp_path: Path) -> None:
    """validate's walk reports an empty folder and a FIFO at the layer's content line, with the
    hint, and nothing for a sound folder, a zip used as it is or an S3 source."""
    repo = _repo(tmp_path)
    (repo / "empty").mkdir()
    (repo / "fifo").mkdir()
    (repo / "fifo" / "m.py").write_text("X = 1\n")
    os.mkfifo(repo / "fifo" / "pipe")
    empty = _walk_problems(repo, "{path: empty}")
    assert [str(problem) for problem in empty] == [
        f"{repo / 'layers.yaml'}:4:21: layers.leaky.content.path: the content folder "
        f"{repo / 'empty'} has no files to package"]
    fifo = _walk_problems(repo, "{path: fifo}")
    assert len(fifo) == 1 and fifo[0].field == "layers.leaky.content.path"
    assert fifo[0].message.endswith(
        "is a FIFO; a layer can hold only files, folders and symlinks; remove it or add it to "
        "the layer's exclude patterns")
    assert _walk_problems(repo, "{path: fifo, exclude: [pipe]}") == []
    zipcraft.write(repo / "v.zip", [zipcraft.Member("python/a.py", b"x")])
    assert _walk_problems(repo, "{zip: v.zip}") == []
    assert _walk_problems(repo, "{s3: {bucket: my-bucket, key: k.zip}}") == []


def test_walk_problems_of_a_zip_to_normalize(tmp_path: Path) -> None:
    """A zip to normalize whose only file is git's has nothing left to package: validate says
    so at its content line."""
    repo = _repo(tmp_path)
    zipcraft.write(repo / "v.zip", [zipcraft.Member(".git/config", b"[core]\n")])
    problems = _walk_problems(repo, "{zip: v.zip, normalize: true}")
    assert [(problem.line, problem.field) for problem in problems] == [
        (4, "layers.leaky.content.zip")]
    assert "has no files to package" in problems[0].message
