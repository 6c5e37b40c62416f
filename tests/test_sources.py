"""Tests of `content` (and `layerbuild.build`) on real files in tmp_path: the folder walk and its
safety rules, prebuilt and normalized zips, the stat cache, and building zips that are the same
bytes whatever the order, mtimes, umask, folder or timezone the files were made with."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import time
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from reconciler import archive, artifacts, errors, layerbuild, model
from reconciler import content as layer_content
from reconciler.content import statcache

LABEL = "layers.shared-utils"

# Pinned values: a change means the packaging format changed, which needs a FORMAT_VERSION
# bump (and new pinned values), never a silent update.
GOLDEN_FINGERPRINT = "efc71131abb2b9398967963578702beb2f28ae548c5d65de263a81a5686ce529"
GOLDEN_CODE_SHA256 = "PvYL56HbSlaD6NsrwSiil4pyMTWfayCJJ+QcsHXsX2U="

# zlib-ng deflates to other, equally valid bytes; zip bytes are pinned for the reference zlib.
REFERENCE_ZLIB = "ng" not in zlib.ZLIB_RUNTIME_VERSION.lower()

TREE: dict[str, bytes] = {
    "python/shared_utils/__init__.py": b'"""Shared helpers."""\n',
    "python/shared_utils/text.py": b"def shout(text: str) -> str:\n    return text.upper()\n",
    "python/shared_utils/data/table.csv": b"id,name\n1,one\n2,two\n",
    "bin/run-tool": b'#!/bin/sh\nexec python3 -m shared_utils "$@"\n',
    "README.txt": b"utilities\n",
}
EXECUTABLES = {"bin/run-tool"}
LINKS = {"python/utils": "shared_utils"}
# Never packaged: built-in excludes.
NOISE: dict[str, bytes] = {
    "python/shared_utils/__pycache__/text.cpython-312.pyc": b"\x00compiled",
    ".DS_Store": b"finder",
    ".git/HEAD": b"ref: refs/heads/main\n",
}


def _write_tree(
    root: Path,
    *,
    files: dict[str, bytes] = TREE,
    executables: set[str] = EXECUTABLES,
    links: dict[str, str] = LINKS,
    reverse: bool = False,
    mtime: float | None = None,
) -> Path:
    """Create the files under root (in the given order) and return root."""
    names = sorted(files, reverse=reverse)
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[name])
        mode = path.stat().st_mode
        path.chmod(mode | 0o111 if name in executables else mode & ~0o111)
    for name, target in sorted(links.items(), reverse=reverse):
        os.symlink(target, root / name)
    for name, data in NOISE.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if mtime is not None:
        for path in [*root.rglob("*"), root]:
            if not path.is_symlink():
                os.utime(path, (mtime, mtime))
    return root


def _content(
    path: str = "layer", *, prefix: str = "", exclude: tuple[str, ...] = ()
) -> model.ContentSpec:
    return model.ContentSpec(kind=model.SourceKind.PATH, path=path, prefix=prefix, exclude=exclude)


def _zip_content(path: str, *, normalize: bool = False) -> model.ContentSpec:
    return model.ContentSpec(kind=model.SourceKind.ZIP, zip=path, normalize=normalize)


def _identify(
    base_dir: Path, content: model.ContentSpec, cache: statcache.StatCache | None = None
) -> model.Artifact:
    return layer_content.identify(
        content,
        base_dir=base_dir,
        label=LABEL,
        cache=cache or statcache.StatCache.load(base_dir / ".reconcile" / "cache.json"),
    )


def _package(base_dir: Path, content: model.ContentSpec) -> model.Artifact:
    artifact = _identify(base_dir, content)
    return layerbuild.build(
        content, artifact, base_dir=base_dir, label=LABEL, build_dir=base_dir / "build"
    )


def _zip_files(zip_path: str | None) -> dict[str, tuple[int, bytes]]:
    """Each member's mode and bytes."""
    assert zip_path is not None
    with zipfile.ZipFile(zip_path) as zip_file:
        return {
            info.filename: (info.external_attr >> 16, zip_file.read(info))
            for info in zip_file.infolist()
        }


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@contextmanager
def _timezone(name: str) -> Iterator[None]:
    previous = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = previous
        time.tzset()


def test_golden_fingerprint_and_zip(tmp_path: Path) -> None:
    """A fixed tree has a pinned fingerprint and (for the reference zlib) pinned zip bytes."""
    _write_tree(tmp_path / "layer")
    artifact = _package(tmp_path, _content())
    assert artifact.fingerprint == GOLDEN_FINGERPRINT
    assert artifact.zip_path is not None
    zip_bytes = Path(artifact.zip_path).read_bytes()
    assert artifact.code_sha256 == archive.code_sha256(hashlib.sha256(zip_bytes).digest())
    assert artifact.content_sha256 == hashlib.sha256(zip_bytes).hexdigest()
    assert artifact.code_size == len(zip_bytes)
    if REFERENCE_ZLIB:
        assert artifact.code_sha256 == GOLDEN_CODE_SHA256


def _made_with(condition: str, root: Path) -> Path:
    """The reference tree, created under one varied condition."""
    if condition == "reverse order":
        return _write_tree(root, reverse=True)
    if condition == "other mtimes":
        return _write_tree(root, mtime=time.time() - 86_400 * 400)
    if condition == "umask 077":
        with _umask(0o077):
            return _write_tree(root)
    if condition == "umask 022":
        with _umask(0o022):
            return _write_tree(root)
    if condition == "other folder":
        return _write_tree(root / "deeper" / "elsewhere")
    return _write_tree(root)


@pytest.mark.parametrize(
    "condition",
    ["reverse order", "other mtimes", "umask 077", "umask 022", "other folder", "timezone"],
)
def test_same_files_give_same_fingerprint_and_zip(tmp_path: Path, condition: str) -> None:
    """Order, mtimes, umask, absolute folder and timezone change neither fingerprint nor zip."""
    reference = _package(_write_tree(tmp_path / "a" / "layer").parent, _content())
    base_dir = tmp_path / "b"
    folder = _made_with(condition, base_dir / "layer")
    content = _content(str(folder.relative_to(base_dir)))
    if condition == "timezone":
        with _timezone("Pacific/Kiritimati"):
            varied = _package(base_dir, content)
    else:
        varied = _package(base_dir, content)
    assert varied.fingerprint == reference.fingerprint == GOLDEN_FINGERPRINT
    assert varied.code_sha256 == reference.code_sha256
    assert varied.zip_path is not None and reference.zip_path is not None
    assert Path(varied.zip_path).read_bytes() == Path(reference.zip_path).read_bytes()


def _change(kind: str, root: Path) -> None:
    if kind == "one byte":
        path = root / "python/shared_utils/text.py"
        path.write_bytes(path.read_bytes().replace(b"upper", b"lower"))
    elif kind == "rename":
        (root / "README.txt").rename(root / "README.md")
    elif kind == "executable bit":
        (root / "README.txt").chmod(0o755)
    elif kind == "link target":
        (root / "python/utils").unlink()
        os.symlink("shared_utils/text.py", root / "python/utils")


@pytest.mark.parametrize("kind", ["one byte", "rename", "executable bit", "link target"])
def test_content_changes_change_fingerprint_and_zip(tmp_path: Path, kind: str) -> None:
    """A changed byte, name, executable bit or link target changes fingerprint and zip."""
    _change(kind, _write_tree(tmp_path / "layer"))
    artifact = _package(tmp_path, _content())
    assert artifact.fingerprint != GOLDEN_FINGERPRINT
    assert (
        artifact.code_sha256
        != _package(_write_tree(tmp_path / "ref" / "layer").parent, _content()).code_sha256
    )


def test_zip_is_valid_and_extracts_to_the_original_files(tmp_path: Path) -> None:
    """The built zip passes testzip and holds every file with its bytes and mode, and no noise."""
    _write_tree(tmp_path / "layer")
    artifact = _package(tmp_path, _content(prefix="opt-prefix"))
    assert artifact.zip_path is not None
    with zipfile.ZipFile(artifact.zip_path) as zip_file:
        assert zip_file.testzip() is None
    members = _zip_files(artifact.zip_path)
    expected = {
        f"opt-prefix/{name}": (0o100755 if name in EXECUTABLES else 0o100644, data)
        for name, data in TREE.items()
    }
    expected["opt-prefix/python/utils"] = (0o120777, b"shared_utils")
    assert members == expected


def test_relative_paths_are_read_against_base_dir_not_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The content path is relative to the manifest's folder whatever the working directory."""
    _write_tree(tmp_path / "project" / "layer")
    (tmp_path / "elsewhere" / "layer").mkdir(parents=True)
    (tmp_path / "elsewhere" / "layer" / "other.py").write_text("x = 1\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert _identify(tmp_path / "project", _content()).fingerprint == GOLDEN_FINGERPRINT


def test_collect_applies_prefix_and_kinds(tmp_path: Path) -> None:
    """collect gives one entry per packaged file or link, under the prefix, with its kind."""
    _write_tree(tmp_path / "layer")
    entries = layer_content.collect(_content(prefix="python"), base_dir=tmp_path, label=LABEL)
    kinds = {
        entry.arcname: ("link", entry.link_target) if entry.link_target else entry.executable
        for entry in entries
    }
    assert kinds == {
        "python/README.txt": False,
        "python/bin/run-tool": True,
        "python/python/shared_utils/__init__.py": False,
        "python/python/shared_utils/data/table.csv": False,
        "python/python/shared_utils/text.py": False,
        "python/python/utils": ("link", "shared_utils"),
    }


def _arcnames(tmp_path: Path, exclude: tuple[str, ...]) -> set[str]:
    entries = layer_content.collect(_content(exclude=exclude), base_dir=tmp_path, label=LABEL)
    return {entry.arcname for entry in entries}


def test_walk_prunes_excluded_folders_like_git(tmp_path: Path) -> None:
    """`!*.pyc` re-includes pyc files, but those in __pycache__ need `!__pycache__/` too."""
    root = tmp_path / "layer"
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "pkg" / "legacy.pyc").write_bytes(b"pyc")
    (root / "pkg" / "__pycache__" / "mod.cpython-312.pyc").write_bytes(b"pyc")
    assert _arcnames(tmp_path, ()) == {"pkg/mod.py"}
    assert _arcnames(tmp_path, ("!*.pyc",)) == {"pkg/mod.py", "pkg/legacy.pyc"}
    assert _arcnames(tmp_path, ("!__pycache__/",)) == {"pkg/mod.py"}
    assert _arcnames(tmp_path, ("!*.pyc", "!__pycache__/")) == {
        "pkg/mod.py",
        "pkg/legacy.pyc",
        "pkg/__pycache__/mod.cpython-312.pyc",
    }
    (root / "top.py").write_text("")
    assert _arcnames(tmp_path, ("pkg/", "!pkg/mod.py")) == {"top.py"}


def test_user_excludes_prune_folders_and_files(tmp_path: Path) -> None:
    """User patterns remove files and whole folders; a file in a pruned folder stays out."""
    _write_tree(tmp_path / "layer")
    (tmp_path / "layer" / "tests").mkdir()
    (tmp_path / "layer" / "tests" / "test_x.py").write_text("")
    (tmp_path / "layer" / "keep.py").write_text("")
    names = _arcnames(tmp_path, ("tests/", "*.txt", "*.csv", "!tests/test_x.py", "python/utils"))
    assert names == {
        "bin/run-tool",
        "keep.py",
        "python/shared_utils/__init__.py",
        "python/shared_utils/text.py",
    }


def test_inside_symlink_is_stored_as_a_link_not_followed(tmp_path: Path) -> None:
    """A link to a folder inside is stored as a link member, and its files are not doubled."""
    _write_tree(tmp_path / "layer")
    artifact = _package(tmp_path, _content())
    assert artifact.zip_path is not None
    with zipfile.ZipFile(artifact.zip_path) as zip_file:
        link = zip_file.getinfo("python/utils")
        assert stat.S_ISLNK(link.external_attr >> 16)
        assert link.compress_type == zipfile.ZIP_STORED
        assert zip_file.read(link) == b"shared_utils"
        assert not any(name.startswith("python/utils/") for name in zip_file.namelist())


def _expect_content_error(tmp_path: Path, *fragments: str) -> None:
    with pytest.raises(errors.ContentError) as raised:
        _identify(tmp_path, _content())
    for fragment in (LABEL, *fragments):
        assert fragment in raised.value.message


def test_symlink_to_a_file_outside_is_refused(tmp_path: Path) -> None:
    """A link leading outside the content folder (a credentials file, say) is a ContentError."""
    credentials = tmp_path / "home" / ".aws" / "credentials"
    credentials.parent.mkdir(parents=True)
    credentials.write_text("[default]\naws_secret_access_key = not-a-real-key\n")
    root = _write_tree(tmp_path / "layer")
    os.symlink(os.path.relpath(credentials, root / "python"), root / "python" / "creds")
    _expect_content_error(tmp_path, str(root / "python" / "creds"), "outside")


def test_symlink_that_leaves_and_reenters_the_folder_is_refused(tmp_path: Path) -> None:
    """`../layer/x` reaches a file inside only through the folder's own name: refused."""
    root = _write_tree(tmp_path / "layer")
    os.symlink("../layer/README.txt", root / "readme-link")
    _expect_content_error(tmp_path, str(root / "readme-link"), "outside")


def test_broken_symlink_is_refused(tmp_path: Path) -> None:
    """A link whose target does not exist is a ContentError naming it."""
    root = _write_tree(tmp_path / "layer")
    os.symlink("missing.py", root / "python" / "dangling")
    _expect_content_error(tmp_path, str(root / "python" / "dangling"), "broken")


def test_absolute_symlink_text_is_refused_even_when_inside(tmp_path: Path) -> None:
    """An absolute link text would dangle in Lambda's /opt, so it is refused even if inside."""
    root = _write_tree(tmp_path / "layer")
    os.symlink(root / "README.txt", root / "readme-link")
    _expect_content_error(tmp_path, str(root / "readme-link"), "absolute")


def test_symlink_to_an_excluded_file_is_refused(tmp_path: Path) -> None:
    """A link to a file the excludes leave out would dangle in the layer: refused."""
    root = _write_tree(tmp_path / "layer")
    os.symlink(".DS_Store", root / "finder")
    _expect_content_error(tmp_path, str(root / "finder"), "excluded")


def test_excluded_symlink_is_not_checked(tmp_path: Path) -> None:
    """An excluded link is skipped, even one that would be refused."""
    root = _write_tree(tmp_path / "layer")
    os.symlink("/etc/passwd", root / "passwd")
    assert _identify(tmp_path, _content(exclude=("/passwd",))).fingerprint == GOLDEN_FINGERPRINT


def test_fifo_is_refused_unless_excluded(tmp_path: Path) -> None:
    """A FIFO in the folder is a ContentError naming it; excluded, it is simply left out."""
    root = _write_tree(tmp_path / "layer")
    os.mkfifo(root / "python" / "pipe")
    _expect_content_error(tmp_path, str(root / "python" / "pipe"), "FIFO")
    excluded = _identify(tmp_path, _content(exclude=("pipe",)))
    assert excluded.fingerprint == GOLDEN_FINGERPRINT


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    """A content path that does not exist is a ContentError."""
    _expect_content_error(tmp_path, "does not exist")


def test_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    """A content path that is a file, not a folder, is a ContentError."""
    (tmp_path / "layer").write_text("not a folder")
    _expect_content_error(tmp_path, "not a folder")


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    """A folder with no files, or none left after excludes, is a ContentError."""
    (tmp_path / "layer" / "empty-subfolder").mkdir(parents=True)
    _expect_content_error(tmp_path, "no files")
    (tmp_path / "layer" / "__pycache__").mkdir()
    (tmp_path / "layer" / "__pycache__" / "x.pyc").write_bytes(b"pyc")
    _expect_content_error(tmp_path, "no files")


def test_unzipped_size_over_lambda_limit_is_refused(tmp_path: Path) -> None:
    """Content over Lambda's unzipped limit is a ContentError with the size and the limit."""
    root = _write_tree(tmp_path / "layer")
    with open(root / "huge.bin", "wb") as sparse:  # sparse: costs no disk and is never read
        sparse.truncate(model.MAX_UNZIPPED_BYTES)
    total = model.MAX_UNZIPPED_BYTES + sum(map(len, TREE.values())) + len("shared_utils")
    _expect_content_error(tmp_path, str(total), str(model.MAX_UNZIPPED_BYTES))


def test_s3_content_has_no_local_identity(tmp_path: Path) -> None:
    """The local content package refuses an S3 source with a ContentError, not a crash: its
    identity comes from HeadObject (artifacts and content.s3)."""
    content = model.ContentSpec(kind=model.SourceKind.S3, s3_bucket="bucket", s3_key="key")
    with pytest.raises(errors.ContentError, match="identified by HeadObject"):
        _identify(tmp_path, content)


def _write_zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with warnings.catch_warnings():
        # Writing a name twice makes zipfile warn; the duplicate is what these tests need.
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(path, "w") as zip_file:
            for name, data in members:
                zip_file.writestr(name, data)
    return path


def test_prebuilt_zip_is_the_artifact_byte_for_byte(tmp_path: Path) -> None:
    """A zip without normalize is used as it is: its digests are those of the file's bytes."""
    zip_path = _write_zip(tmp_path / "layer.zip", [("python/a.py", b"a = 1\n")])
    artifact = _identify(tmp_path, _zip_content("layer.zip"))
    data = zip_path.read_bytes()
    assert artifact == model.Artifact(
        fingerprint=hashlib.sha256(data).hexdigest(),
        code_sha256=base64.b64encode(hashlib.sha256(data).digest()).decode(),
        content_sha256=hashlib.sha256(data).hexdigest(),
        code_size=len(data),
        zip_path=str(zip_path),
        unzipped_size=len(b"a = 1\n"),
    )
    built = layerbuild.build(
        _zip_content("layer.zip"), artifact, base_dir=tmp_path, label=LABEL, build_dir=tmp_path
    )
    assert built is artifact


def test_not_a_zip_is_refused(tmp_path: Path) -> None:
    """A zip path whose file is not a zip is a ContentError."""
    (tmp_path / "layer.zip").write_bytes(b"PK but not really a zip")
    with pytest.raises(errors.ContentError, match="not a zip file"):
        _identify(tmp_path, _zip_content("layer.zip"))


@pytest.mark.parametrize("normalize", [False, True])
def test_zip_with_unsafe_members_is_refused_listing_them(tmp_path: Path, normalize: bool) -> None:
    """Absolute, `..` and duplicate members are each listed in one ContentError."""
    _write_zip(
        tmp_path / "evil.zip",
        [
            ("python/ok.py", b""),
            ("/etc/cron.d/evil", b""),
            ("python/../../escape.sh", b""),
            ("python/twice.py", b"1"),
            ("python/twice.py", b"2"),
        ],
    )
    with pytest.raises(errors.ContentError) as raised:
        _identify(tmp_path, _zip_content("evil.zip", normalize=normalize))
    message = raised.value.message
    assert "/etc/cron.d/evil" in message
    assert "python/../../escape.sh" in message
    assert "python/twice.py" in message
    assert "python/ok.py" not in message


def test_normalized_zip_repacks_to_the_same_bytes_as_the_folder(tmp_path: Path) -> None:
    """normalize=True gives the same fingerprint and zip as packaging the equivalent folder."""
    folder_artifact = _package(_write_tree(tmp_path / "layer").parent, _content())
    messy_path = tmp_path / "messy.zip"
    with zipfile.ZipFile(messy_path, "w", compression=zipfile.ZIP_DEFLATED) as messy:
        # Other order, timestamps, modes, directory entries and compression than the tool's.
        messy.writestr(zipfile.ZipInfo("python/", (2024, 5, 6, 7, 8, 10)), b"")
        for name, data in sorted(TREE.items(), reverse=True):
            info = zipfile.ZipInfo(name, (2024, 5, 6, 7, 8, 10))
            info.external_attr = (0o100700 if name in EXECUTABLES else 0o100600) << 16
            # Stored or deflate at another level than the tool's 6 (other methods are refused).
            stored = name.endswith(".csv")
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            messy.writestr(info, data, compresslevel=1)
        link = zipfile.ZipInfo("python/utils", (2001, 1, 1, 0, 0, 0))
        link.external_attr = 0o120755 << 16
        messy.writestr(link, b"shared_utils")
        messy.writestr("python/shared_utils/__pycache__/text.cpython-312.pyc", b"\x00compiled")
    content = _zip_content("messy.zip", normalize=True)
    normalized = layerbuild.build(
        content,
        _identify(tmp_path, content),
        base_dir=tmp_path,
        label=LABEL,
        build_dir=tmp_path / "build2",
    )
    assert normalized.fingerprint == folder_artifact.fingerprint == GOLDEN_FINGERPRINT
    assert normalized.code_sha256 == folder_artifact.code_sha256
    assert normalized.zip_path is not None and folder_artifact.zip_path is not None
    assert Path(normalized.zip_path).read_bytes() == Path(folder_artifact.zip_path).read_bytes()


def test_normalized_zip_refuses_link_members_leading_outside(tmp_path: Path) -> None:
    """A symlink member pointing out of the zip's root is a ContentError."""
    with zipfile.ZipFile(tmp_path / "links.zip", "w") as zip_file:
        zip_file.writestr("python/a.py", b"")
        link = zipfile.ZipInfo("python/creds")
        link.external_attr = 0o120777 << 16
        zip_file.writestr(link, b"../../home/.aws/credentials")
    with pytest.raises(errors.ContentError, match="points outside"):
        _identify(tmp_path, _zip_content("links.zip", normalize=True))


def _cache(tmp_path: Path) -> statcache.StatCache:
    return statcache.StatCache.load(tmp_path / ".reconcile" / "cache.json")


def _settled_tree(tmp_path: Path) -> Path:
    """The reference tree with mtimes 10 s in the past, outside the racy window."""
    return _write_tree(tmp_path / "layer", mtime=time.time() - 10)


def test_stat_cache_spares_reading_an_unchanged_tree(tmp_path: Path) -> None:
    """A second identify of an unchanged tree reads no file: every digest is a cache hit."""
    _settled_tree(tmp_path)
    first = _cache(tmp_path)
    assert _identify(tmp_path, _content(), first).fingerprint == GOLDEN_FINGERPRINT
    assert (first.hits, first.misses) == (0, len(TREE))
    assert first.save()
    second = _cache(tmp_path)
    assert _identify(tmp_path, _content(), second).fingerprint == GOLDEN_FINGERPRINT
    assert (second.hits, second.misses) == (len(TREE), 0)


def test_stat_cache_notices_same_size_same_mtime_edit(tmp_path: Path) -> None:
    """An edit that keeps the size and restores the mtime is still noticed (through ctime)."""
    root = _settled_tree(tmp_path)
    cache = _cache(tmp_path)
    _identify(tmp_path, _content(), cache)
    cache.save()
    path = root / "python/shared_utils/text.py"
    before = path.stat()
    time.sleep(0.05)  # let the ctime clock tick past the one recorded
    path.write_bytes(path.read_bytes().replace(b"upper", b"lower"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    again = _cache(tmp_path)
    assert _identify(tmp_path, _content(), again).fingerprint != GOLDEN_FINGERPRINT
    assert again.misses == 1


def test_stat_cache_rehashes_files_modified_near_the_cache_write(tmp_path: Path) -> None:
    """A file whose mtime is within 2 s of the cache write is re-read (racy-git rule)."""
    _write_tree(tmp_path / "layer")  # mtimes: now
    cache = _cache(tmp_path)
    _identify(tmp_path, _content(), cache)
    cache.save()
    again = _cache(tmp_path)
    assert _identify(tmp_path, _content(), again).fingerprint == GOLDEN_FINGERPRINT
    assert again.misses == len(TREE)


@pytest.mark.parametrize(
    "text", ["{not json", "[]", '{"format": 99, "written_ns": 0, "entries": {}}', "\udcff"]
)
def test_corrupt_stat_cache_is_ignored(tmp_path: Path, text: str) -> None:
    """An unreadable or foreign cache file gives an empty cache, never an error."""
    cache_path = (tmp_path / ".reconcile" / "cache.json")
    cache_path.parent.mkdir()
    cache_path.write_bytes(text.encode("utf-8", "surrogateescape"))
    _settled_tree(tmp_path)
    cache = statcache.StatCache.load(cache_path)
    assert _identify(tmp_path, _content(), cache).fingerprint == GOLDEN_FINGERPRINT
    assert cache.misses == len(TREE)
    assert cache.save()


def test_stat_cache_ignores_malformed_entries(tmp_path: Path) -> None:
    """A cache entry of the wrong shape is dropped, and the file is hashed instead."""
    root = _settled_tree(tmp_path)
    cache_path = (tmp_path / ".reconcile" / "cache.json")
    cache_path.parent.mkdir()
    key = str(root / "README.txt")
    document = {"format": 1, "written_ns": time.time_ns(), "entries": {key: [1, 2, "three"]}}
    cache_path.write_text(json.dumps(document))
    cache = statcache.StatCache.load(cache_path)
    assert _identify(tmp_path, _content(), cache).fingerprint == GOLDEN_FINGERPRINT
    assert cache.misses == len(TREE)


def test_stat_cache_save_is_atomic_and_creates_its_folder(tmp_path: Path) -> None:
    """save creates the folder and leaves exactly the cache file, no temporary file."""
    _settled_tree(tmp_path)
    cache_path = tmp_path / "deep" / ".reconcile" / "cache.json"
    cache = statcache.StatCache.load(cache_path)
    _identify(tmp_path, _content(), cache)
    assert cache.save()
    assert [path.name for path in cache_path.parent.iterdir()] == ["cache.json"]


def test_stat_cache_forgets_deleted_files(tmp_path: Path) -> None:
    """Entries of files that no longer exist are dropped on save; others are kept."""
    root = _settled_tree(tmp_path)
    cache = _cache(tmp_path)
    _identify(tmp_path, _content(), cache)
    cache.save()
    (root / "README.txt").unlink()
    unrelated = _cache(tmp_path)  # a run that identifies nothing, then saves
    unrelated.save()
    again = _cache(tmp_path)
    _identify(tmp_path, _content(), again)
    assert (again.hits, again.misses) == (len(TREE) - 1, 0)


def test_a_run_of_trusted_hits_leaves_the_cache_file_alone(tmp_path: Path) -> None:
    """A run whose every lookup is a trusted hit writes nothing (the file keeps its inode and
    bytes); a run that reads one changed file writes the cache again, with its new digest."""
    root = _settled_tree(tmp_path)
    cache_path = tmp_path / ".reconcile" / "cache.json"
    first = _cache(tmp_path)
    _identify(tmp_path, _content(), first)
    assert first.save()
    written = cache_path.stat()
    saved = cache_path.read_bytes()
    warm = _cache(tmp_path)
    assert _identify(tmp_path, _content(), warm).fingerprint == GOLDEN_FINGERPRINT
    assert warm.misses == 0 and warm.save()
    assert cache_path.stat().st_ino == written.st_ino and cache_path.read_bytes() == saved
    edited = root / "README.txt"
    edited.write_bytes(edited.read_bytes() + b"more\n")
    os.utime(edited, (time.time() - 10, time.time() - 10))
    changed = _cache(tmp_path)
    _identify(tmp_path, _content(), changed)
    assert changed.misses == 1 and changed.save()
    entries = json.loads(cache_path.read_text())["entries"]
    assert entries[str(edited)][-1] == hashlib.sha256(edited.read_bytes()).hexdigest()


def test_a_workers_cache_is_taken_back_whole(tmp_path: Path) -> None:
    """What a worker's copy of the cache hands back is what the run's copy saves, byte for
    byte, and what its later lookups are served from (every one a hit); a run's copy that
    changed since refuses it, and then saves only its own entries."""
    root = _settled_tree(tmp_path)
    cache_path = tmp_path / ".reconcile" / "cache.json"
    worker, run = _cache(tmp_path), _cache(tmp_path)
    assert _identify(tmp_path, _content(), worker).fingerprint == GOLDEN_FINGERPRINT
    handed = worker.hand_back()
    assert isinstance(handed["snapshot"], bytes) and handed["misses"] == len(TREE)
    assert run.take_back(handed) and run.misses == len(TREE)
    assert run.save() and cache_path.read_bytes() == handed["snapshot"]
    assert _identify(tmp_path, _content(), run).fingerprint == GOLDEN_FINGERPRINT
    assert run.hits == len(TREE)
    changed, late = _cache(tmp_path), _cache(tmp_path)
    edited = root / "README.txt"
    edited.write_bytes(b"edited\n")
    os.utime(edited, (time.time() - 10, time.time() - 10))
    _identify(tmp_path, _content(), changed)
    _identify(tmp_path, _content(), late)
    assert late.misses == 1
    assert not late.take_back(changed.hand_back())
    assert late.save()
    assert json.loads(cache_path.read_text())["entries"][str(edited)][-1] == \
        hashlib.sha256(b"edited\n").hexdigest()


def test_a_deferred_cache_reads_its_file_at_first_use(tmp_path: Path) -> None:
    """A cache opened deferred (a head start's) reads its file when first used, not when
    opened: one saved in between serves every lookup. One that takes back a worker's
    snapshot before any use saves it as handed, and its lookups are then served from it."""
    root = _settled_tree(tmp_path)
    cache_path = tmp_path / ".reconcile" / "cache.json"
    deferred = statcache.StatCache.deferred(cache_path)
    first = _cache(tmp_path)
    _identify(tmp_path, _content(), first)
    assert first.save()
    assert _identify(tmp_path, _content(), deferred).fingerprint == GOLDEN_FINGERPRINT
    assert (deferred.hits, deferred.misses) == (len(TREE), 0)
    edited = root / "README.txt"
    edited.write_bytes(b"edited\n")
    os.utime(edited, (time.time() - 10, time.time() - 10))
    worker, unread = _cache(tmp_path), statcache.StatCache.deferred(cache_path)
    _identify(tmp_path, _content(), worker)
    handed = worker.hand_back()
    assert unread.take_back(handed) and unread.save()
    assert cache_path.read_bytes() == handed["snapshot"]
    counted = (unread.hits, unread.misses)  # the worker's, taken back with its snapshot
    _identify(tmp_path, _content(), unread)
    assert (unread.hits - counted[0], unread.misses - counted[1]) == (len(TREE), 0)


def test_build_reuses_a_zip_already_built_for_the_fingerprint(tmp_path: Path) -> None:
    """A second build of the same fingerprint reuses the zip file instead of rewriting it."""
    _write_tree(tmp_path / "layer")
    first = _package(tmp_path, _content())
    assert first.zip_path is not None
    before = os.stat(first.zip_path)
    second = _package(tmp_path, _content())
    after = os.stat(first.zip_path)
    assert second == first
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    built_files = sorted(path.name for path in (tmp_path / "build").iterdir())
    assert built_files[:2] == [f"{GOLDEN_FINGERPRINT}.index.json", f"{GOLDEN_FINGERPRINT}.zip"]
    assert len(built_files) == 3 and built_files[2].startswith("latest-")  # the layer's pointer


def test_build_detects_content_changed_since_identify(tmp_path: Path) -> None:
    """Files changed between identify and build make build fail, leaving no zip behind."""
    root = _write_tree(tmp_path / "layer")
    artifact = _identify(tmp_path, _content())
    (root / "README.txt").write_bytes(b"UTILITIES\n")  # same size, other bytes
    with pytest.raises(errors.ContentError, match="changed while planning"):
        layerbuild.build(
            _content(), artifact, base_dir=tmp_path, label=LABEL, build_dir=tmp_path / "build"
        )
    assert list((tmp_path / "build").iterdir()) == []


def test_file_swapped_for_a_symlink_after_the_walk_is_refused(tmp_path: Path) -> None:
    """A file replaced by a link to elsewhere after it was stat'ed is refused, not read."""
    secret = tmp_path / "secret"
    secret.write_text("aws_secret_access_key = not-a-real-key\n")
    victim = tmp_path / "module.py"
    victim.write_text("x = 1\n")
    walked_stat = victim.stat()
    victim.unlink()
    os.symlink(secret, victim)
    with pytest.raises(errors.ContentError, match="replaced"):
        _cache(tmp_path).file_sha256(victim, walked_stat)


def _create_change(region: str, artifact: model.Artifact) -> model.Change:
    """A create of layer `tools` in `region` with `artifact`'s digests as the plan's."""
    return model.Change(
        address=model.Address.of_layer("tools", region), layer_name="tools",
        action=model.Action.CREATE, reasons=(model.Reason.NEW_LAYER,), current=None,
        details=model.PublishDetails(),
        desired=model.Desired(settings=model.Settings.normalised(
            description=None, compatible_runtimes=["python3.12"], compatible_architectures=None,
            license_info=None),
                              fingerprint=artifact.fingerprint,
                              code_sha256=artifact.code_sha256,
                              content_sha256=artifact.content_sha256,
                              code_size=artifact.code_size))


def test_zip_for_checks_the_zip_of_every_region_against_the_plan(tmp_path: Path) -> None:
    """The zip one layer goes to several regions from is handed out for each while it has the
    planned CodeSha256, and refused once it is rewritten, even with its size and mtime put
    back (its ctime tells), as it is when another checkout builds other bytes."""
    from reconciler import workspace

    _settled_tree(tmp_path)
    (tmp_path / "layers.yaml").write_text(
        "version: 1\nregion: [us-east-1, eu-west-1]\nlayers:\n"
        "  tools:\n    compatible_runtimes: [python3.12]\n    content: {path: layer}\n")
    space = workspace.Workspace.for_manifest(tmp_path / "layers.yaml")
    parsed = workspace.load_manifest(space)
    code = artifacts.LocalCode(space=space, manifest=parsed)
    (identified,) = code.identify(list(parsed.layers)).values()
    assert isinstance(identified, model.Artifact)
    built = code.build(parsed.layer("tools"), identified)
    assert built.zip_path is not None
    changes = [_create_change(region, built) for region in ("us-east-1", "eu-west-1")]
    assert [code.zip_for(change) for change in changes] == [Path(built.zip_path)] * 2
    zip_path = Path(built.zip_path)
    before = zip_path.stat()
    time.sleep(0.05)  # let the ctime clock tick past the one recorded
    data = bytearray(zip_path.read_bytes())
    data[-30] ^= 0xFF  # a byte of the central directory's end record (its comment length)
    zip_path.write_bytes(bytes(data))
    os.utime(zip_path, ns=(before.st_atime_ns, before.st_mtime_ns))
    for change in changes:
        with pytest.raises(errors.ContentError, match="not the planned"):
            code.zip_for(change)
