"""Tests of `zipbuild`: the parallel writer gives exactly the bytes of `archive.write_zip`
(zipfile), within its in-flight memory budget, and an incremental rebuild from the previous zip
gives exactly the bytes of a full build, falling back to a full build on any doubt."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import itertools
import json
import os
import random
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import archive, errors, layerbuild, model, wheelmembers, zipbuild, zipindex
from reconciler import content as layer_content
from reconciler.content import statcache

# The same pinned value as in test_archive: the parallel writer must give these bytes too.
GOLDEN_CODE_SHA256 = "sAxozhOaCnjYU1eukQBo2McIpqCLHvHAAf6Mzux/fe8="
REFERENCE_ZLIB = "ng" not in zlib.ZLIB_RUNTIME_VERSION.lower()
GOLDEN_FILES: dict[str, bytes] = {
    "python/pkg/__init__.py": b"",
    "python/pkg/core.py": b"def answer() -> int:\n    return 42\n",
    "bin/tool": b"#!/bin/sh\necho tool\n",
    "python/pkg/data.bin": bytes(range(256)) * 8,
}


class Tree:
    """An in-memory layer: file bytes, executable paths and symlinks."""

    def __init__(
        self,
        files: dict[str, bytes],
        *,
        executables: set[str] | None = None,
        links: dict[str, str] | None = None,
    ) -> None:
        self.files = dict(files)
        self.executables = set(executables or ())
        self.links = dict(links or {})

    def copy(self) -> Tree:
        return Tree(self.files, executables=self.executables, links=self.links)

    def entries(self) -> list[model.Entry]:
        entries = [
            model.Entry(name, name, len(data), name in self.executables)
            for name, data in self.files.items()
        ]
        entries += [
            model.Entry(name, name, len(target.encode()), False, link_target=target)
            for name, target in self.links.items()
        ]
        return entries

    def open_entry(self, entry: model.Entry) -> contextlib.AbstractContextManager[io.BytesIO]:
        return contextlib.nullcontext(io.BytesIO(self.files[entry.source]))

    def sha256(self, entry: model.Entry) -> str:
        return hashlib.sha256(self.files[entry.source]).hexdigest()


def _reference_bytes(tree: Tree) -> bytes:
    out = io.BytesIO()
    archive.write_zip(tree.entries(), out=out, open_entry=tree.open_entry)
    return out.getvalue()


def _parallel(
    tree: Tree, *, workers: int | None = None,
    max_in_flight_bytes: int = zipbuild.DEFAULT_MAX_IN_FLIGHT_BYTES,
) -> tuple[bytes, zipindex.BuiltZip]:
    out = io.BytesIO()
    built = zipbuild.write_zip(
        tree.entries(), out=out, open_entry=tree.open_entry, workers=workers,
        max_in_flight_bytes=max_in_flight_bytes,
    )
    return out.getvalue(), built


@pytest.mark.skipif(not REFERENCE_ZLIB, reason="zip bytes are pinned for the reference zlib")
def test_parallel_writer_gives_the_golden_bytes() -> None:
    """The golden entries zipped on every core have the pinned CodeSha256 and the writer's
    digest is the digest of the bytes it wrote."""
    tree = Tree(GOLDEN_FILES, executables={"bin/tool"}, links={"python/current": "pkg"})
    data, built = _parallel(tree)
    assert archive.code_sha256(hashlib.sha256(data).digest()) == GOLDEN_CODE_SHA256
    assert built.sha256 == hashlib.sha256(data).digest()
    assert built.code_size == len(data)
    assert data == _reference_bytes(tree)


_NAMES = st.text(alphabet="abc/._-éü中", min_size=1, max_size=8).filter(
    lambda name: all(part not in ("", ".", "..") for part in name.split("/"))
)
_CONTENT = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda seed, size: random.Random(seed).randbytes(size),
              st.integers(0, 2**32), st.integers(0, 300_000)),
    st.builds(lambda word, count: word * count, st.binary(min_size=1, max_size=9),
              st.integers(0, 40_000)),
)


@settings(deadline=None, max_examples=60)
@given(
    files=st.dictionaries(_NAMES, _CONTENT, min_size=1, max_size=8),
    data=st.data(),
    workers=st.sampled_from([1, 2, 4]),
    max_in_flight_bytes=st.sampled_from([1, 4096, 256 * 1024, 64 * 1024 * 1024]),
)
def test_parallel_writer_equals_zipfile_for_generated_trees(
    files: dict[str, bytes], data: st.DataObject, workers: int, max_in_flight_bytes: int
) -> None:
    """Any tree (names with non-ASCII characters, empty, random and repetitive files,
    executables, links), any worker count and budget: the bytes of zipfile's writer."""
    names = sorted(files)
    executables = set(data.draw(st.lists(st.sampled_from(names), unique=True)))
    link_names = data.draw(st.lists(_NAMES.filter(lambda n: n not in files), max_size=2,
                                    unique=True))
    tree = Tree(files, executables=executables,
                links={name: data.draw(st.sampled_from(names)) for name in link_names})
    written, built = _parallel(tree, workers=workers, max_in_flight_bytes=max_in_flight_bytes)
    assert written == _reference_bytes(tree)
    assert built.sha256 == hashlib.sha256(written).digest()


def test_more_than_65535_members_get_zip64_end_records_like_zipfile() -> None:
    """Past zipfile's member-count limit the zip64 end records are written as zipfile does."""
    # Links are stored, not deflated: the cheapest members to have many of.
    tree = Tree({"target": b"x"}, links={f"l/{index:05d}": "../target" for index in range(65_540)})
    written, _ = _parallel(tree)
    assert b"PK\x06\x06" in written[-200:]
    assert written == _reference_bytes(tree)


@pytest.mark.parametrize("actual", [b"short", b"longer than declared"], ids=["shrunk", "grew"])
def test_a_file_whose_size_changed_is_refused(actual: bytes) -> None:
    """A file whose byte count differs from its entry's size changed: ContentError."""
    entry = model.Entry("f", "f", 10, False)
    with pytest.raises(errors.ContentError, match="changed while it was being packaged"):
        zipbuild.write_zip(
            [entry, model.Entry("g", "g", 10, False)],
            out=io.BytesIO(),
            open_entry=lambda _: contextlib.nullcontext(io.BytesIO(actual)),
        )


@pytest.mark.parametrize(
    "entries",
    [
        [model.Entry("a\0b", "a", 1, False)],
        [model.Entry("link", "l", 1, False, link_target="a\0b")],
        [model.Entry("same", "one", 1, False), model.Entry("same", "two", 1, False)],
    ],
    ids=["nul-in-name", "nul-in-link", "duplicate"],
)
def test_ambiguous_names_are_refused(entries: list[model.Entry]) -> None:
    """Names with NUL and duplicate names are refused, as by archive.write_zip."""
    with pytest.raises(errors.ContentError):
        zipbuild.write_zip(
            entries, out=io.BytesIO(),
            open_entry=lambda _: contextlib.nullcontext(io.BytesIO(b"x")),
        )


def test_compressed_bytes_in_flight_stay_within_the_budget() -> None:
    """Bytes reserved for results waiting for the writer never pass the budget; a file too big
    for a quarter of it is deflated to a temporary file; the bytes are still zipfile's."""
    rng = random.Random(7)
    files = {f"small/{index:03d}": rng.randbytes(200_000) for index in range(40)}
    files["big"] = rng.randbytes(3 * 1024 * 1024)
    tree = Tree(files)
    budget = 4 * 1024 * 1024
    written, built = _parallel(tree, workers=4, max_in_flight_bytes=budget)
    assert written == _reference_bytes(tree)
    # Several files were in flight at once, and never more than the budget allows.
    assert 4 * 200_000 < built.peak_in_flight_bytes <= budget


def _build_file(
    tree: Tree, zip_path: Path, *, previous: Path | None = None
) -> zipindex.BuiltZip:
    """Build `tree` into `zip_path` (from `previous` if given) and index it."""
    known: Callable[[model.Entry], str] = tree.sha256
    with open(zip_path, "wb") as out, zipindex.open_previous(previous) as opened:
        built = zipbuild.write_zip(
            tree.entries(), out=out, open_entry=tree.open_entry, previous=opened,
            known_sha256=known,
        )
    assert zipindex.save_index(zip_path, built)
    return built


def _random_tree(seed: int) -> Tree:
    rng = random.Random(seed)
    files: dict[str, bytes] = {}
    for index in range(rng.randint(5, 30)):
        folder = rng.choice(["python/pkg", "python/pkg/sub", "bin", "données"])
        kind = rng.random()
        if kind < 0.4:
            data = b"".join(b"line %d of %d\n" % (n, index) for n in range(rng.randint(0, 900)))
        elif kind < 0.8:
            data = rng.randbytes(rng.randint(0, 30_000))
        else:
            data = rng.choice([b"", b"x", b"same text\n" * 50])
        files[f"{folder}/f{index:02d}.dat"] = data
    names = sorted(files)
    return Tree(files, executables={names[0]}, links={"python/link": "pkg"})


EDITS = ["change", "add", "delete", "chmod +x", "rename", "symlink", "link to file", "all new"]


def _edited(tree: Tree, edit: str, rng: random.Random) -> Tree:
    edited = tree.copy()
    name = rng.choice(sorted(edited.files))
    if edit == "change":
        edited.files[name] = edited.files[name] + b"changed"
    elif edit == "add":
        edited.files["python/pkg/new.py"] = b"print('new')\n" * 30
    elif edit == "delete":
        del edited.files[name]
    elif edit == "chmod +x":
        edited.executables.add(name)
    elif edit == "rename":
        edited.files["renamed/" + name] = edited.files.pop(name)
    elif edit == "symlink":
        edited.links["bin/alias"] = name.rsplit("/", 1)[-1]
    elif edit == "link to file":
        del edited.links["python/link"]
        edited.files["python/link"] = b"pkg"
    elif edit == "all new":
        edited.files = {key: value + b"!" for key, value in edited.files.items()}
    return edited


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("edit", EDITS)
def test_incremental_rebuild_equals_a_full_build(tmp_path: Path, edit: str, seed: int) -> None:
    """After any edit, a rebuild from the previous zip has the bytes of a full build and
    deflates only files whose bytes the previous zip does not hold."""
    tree = _random_tree(seed)
    _build_file(tree, tmp_path / "v1.zip")
    edited = _edited(tree, edit, random.Random(seed))
    full = _build_file(edited, tmp_path / "full.zip")
    incremental = _build_file(edited, tmp_path / "v2.zip", previous=tmp_path / "v1.zip")
    assert (tmp_path / "v2.zip").read_bytes() == (tmp_path / "full.zip").read_bytes()
    assert incremental.sha256 == full.sha256
    old_digests = {hashlib.sha256(data).digest() for data in tree.files.values()}
    unchanged = sum(hashlib.sha256(data).digest() in old_digests
                    for data in edited.files.values())
    assert (incremental.reused, incremental.deflated) == (unchanged, len(edited.files) - unchanged)
    assert full.reused == 0


def _rewrite_index(zip_path: Path, change: Callable[[dict[str, object]], None]) -> None:
    """Edit the index and give it a matching digest (the documented rule), so that only the
    later checks can catch the lie."""
    path = zipindex.index_path(zip_path)
    document = json.loads(path.read_text())
    change(document)
    body = {key: value for key, value in document.items() if key != "index_sha256"}
    document["index_sha256"] = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    path.write_text(json.dumps(document))


def _shift_first_offset(document: dict[str, object]) -> None:
    members = document["members"]
    assert isinstance(members, list)
    members[0][7] += 1


def _tamper_a_digest(index: Path) -> None:
    """Change one member's SHA-256 in the index's bytes, its own digest kept: only that digest
    can tell (no local header holds a member's SHA-256)."""
    written = index.read_bytes()
    members = json.loads(written)["members"]
    sha256 = next(member[2] for member in members if len(member[2]) == 64)
    assert written.count(sha256.encode()) >= 1
    index.write_bytes(written.replace(sha256.encode(), b"0" * 64, 1))


def _flip_zip_byte(zip_path: Path) -> None:
    data = bytearray(zip_path.read_bytes())
    data[40] ^= 0xFF
    zip_path.write_bytes(bytes(data))


CORRUPTIONS: dict[str, Callable[[Path], object]] = {
    "zip byte flipped": _flip_zip_byte,
    "zip truncated": lambda p: p.write_bytes(p.read_bytes()[:-10]),
    "index missing": lambda p: zipindex.index_path(p).unlink(),
    "index not json": lambda p: zipindex.index_path(p).write_text("{"),
    "index digest wrong": lambda p: _tamper_a_digest(zipindex.index_path(p)),
    "index offset lies": lambda p: _rewrite_index(p, _shift_first_offset),
    "other zlib": lambda p: _rewrite_index(p, lambda d: d.update(zlib="0.0.1")),
    "other zip sha256": lambda p: _rewrite_index(p, lambda d: d.update(zip_sha256="0" * 64)),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_doubtful_previous_zip_gives_a_full_build(tmp_path: Path, corruption: str) -> None:
    """A corrupted previous zip or index is not used: the rebuild deflates everything and
    has the bytes of a full build."""
    tree = _random_tree(11)
    _build_file(tree, tmp_path / "v1.zip")
    CORRUPTIONS[corruption](tmp_path / "v1.zip")
    with zipindex.open_previous(tmp_path / "v1.zip") as opened:
        assert opened is None
    edited = _edited(tree, "change", random.Random(11))
    rebuilt = _build_file(edited, tmp_path / "v2.zip", previous=tmp_path / "v1.zip")
    full = _build_file(edited, tmp_path / "full.zip")
    assert rebuilt.reused == 0
    assert (tmp_path / "v2.zip").read_bytes() == (tmp_path / "full.zip").read_bytes()
    assert rebuilt.sha256 == full.sha256


# What leaves the index well formed: only the zip itself can tell (its verify).
ZIP_LEVEL = {"zip byte flipped", "zip truncated", "index offset lies", "other zip sha256"}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_previous_zip_opened_unverified_is_caught_by_its_verify(
        tmp_path: Path, corruption: str) -> None:
    """Opened to be verified later (by a follower, while the build copies from it), a
    previous zip with a doubtful index is still not opened, and one that is not what its
    well-formed index says fails its verify."""
    _build_file(_random_tree(11), tmp_path / "v1.zip")
    CORRUPTIONS[corruption](tmp_path / "v1.zip")
    with zipindex.open_previous(tmp_path / "v1.zip", verified=False) as opened:
        if corruption in ZIP_LEVEL:
            assert opened is not None and opened.verify() is False
        else:
            assert opened is None


def test_an_intact_previous_zip_opened_unverified_passes_its_verify(tmp_path: Path) -> None:
    """The intact zip passes its later verify (so the cases above fail for the corruption
    alone), however far its file was read before (the verify reads by offset)."""
    tree = _random_tree(11)
    _build_file(tree, tmp_path / "v1.zip")
    edited = _edited(tree, "change", random.Random(11))
    with zipindex.open_previous(tmp_path / "v1.zip", verified=False) as opened, \
            open(tmp_path / "v2.zip", "wb") as out:
        assert opened is not None
        zipbuild.write_zip(edited.entries(), out=out, open_entry=edited.open_entry,
                           previous=opened, known_sha256=edited.sha256)
        assert opened.verify() is True


def test_a_previous_zip_is_verified_a_piece_at_a_time(tmp_path: Path) -> None:
    """`verifying` gives None after each chunk read, then the verdict, last: an intact zip's
    is True (and the next verify needs no read), a damaged one's False."""
    rng = random.Random(3)
    tree = Tree({f"f{index}": rng.randbytes(400_000) for index in range(8)}, executables=set(),
                links={})
    _build_file(tree, tmp_path / "v1.zip")
    pieces = -(-(tmp_path / "v1.zip").stat().st_size // archive.CHUNK_BYTES)
    with zipindex.open_previous(tmp_path / "v1.zip", verified=False) as opened:
        assert opened is not None
        assert list(opened.verifying()) == [None] * pieces + [True]
        assert list(opened.verifying()) == [True]
    _flip_zip_byte(tmp_path / "v1.zip")
    with zipindex.open_previous(tmp_path / "v1.zip", verified=False) as opened:
        assert opened is not None
        steps = list(opened.verifying())
        assert steps[-1] is False and set(steps[:-1]) <= {None}


def test_a_followed_output_tells_how_far_the_bytes_are_in_the_file(tmp_path: Path) -> None:
    """Given `reached`, the output says, every REPORT_BYTES or so, an offset up to which the
    bytes are in the file already (flushed), never past what was written."""
    told: list[tuple[int, int]] = []
    with open(tmp_path / "out", "wb") as out:
        output = zipindex.HashingOutput(
            out, reached=lambda offset: told.append((offset, os.fstat(out.fileno()).st_size)))
        for size in [1000, 700_000, 700_000, 3 * 1024 * 1024, 1_500_000, 10]:
            output.write(b"x" * size)
    offsets = [offset for offset, _ in told]
    assert len(told) >= 3 and offsets == sorted(offsets)
    assert all(in_file >= offset for offset, in_file in told)
    assert all(later - earlier >= zipindex.REPORT_BYTES
               for earlier, later in itertools.pairwise(offsets))
    assert offsets[-1] <= output.offset


def test_a_copy_is_taken_from_the_member_of_the_same_name(tmp_path: Path) -> None:
    """Of the previous zip's members holding a file's bytes, the one of the file's own name
    is copied (with its header, in one run with its neighbours); another name's only when
    the file's own holds other bytes."""
    tree = Tree({"a/one.txt": b"same\n" * 40, "b/two.txt": b"same\n" * 40,
                 "c/three.txt": b"other\n" * 40}, executables=set(), links={})
    _build_file(tree, tmp_path / "v1.zip")
    same = hashlib.sha256(b"same\n" * 40).hexdigest()
    with zipindex.open_previous(tmp_path / "v1.zip") as previous:
        assert previous is not None
        for name in ("a/one.txt", "b/two.txt"):
            found = previous.deflated_member(same, arcname=name)
            assert found is not None and found.arcname == name
        elsewhere = previous.deflated_member(same, arcname="c/three.txt")
        assert elsewhere is not None and elsewhere.arcname in {"a/one.txt", "b/two.txt"}
        assert previous.deflated_member("0" * 64, arcname="a/one.txt") is None


def test_an_intact_previous_zip_is_opened(tmp_path: Path) -> None:
    """The previous zip and the index written with it pass every check (so the corruption
    cases above fail for the corruption alone)."""
    _build_file(_random_tree(11), tmp_path / "v1.zip")
    with zipindex.open_previous(tmp_path / "v1.zip") as opened:
        assert opened is not None


def test_an_index_in_another_layout_with_its_digest_is_opened(tmp_path: Path) -> None:
    """The digest is checked over the bytes as save_index writes them; an index laid out
    otherwise (spaces, another key order) whose digest follows the documented rule is still
    opened, and one whose bytes were changed under its digest is not."""
    _build_file(_random_tree(11), tmp_path / "v1.zip")
    _rewrite_index(tmp_path / "v1.zip", lambda document: None)
    assert b'"index_sha256": "' in zipindex.index_path(tmp_path / "v1.zip").read_bytes()
    with zipindex.open_previous(tmp_path / "v1.zip") as opened:
        assert opened is not None
    _build_file(_random_tree(11), tmp_path / "v2.zip")
    _tamper_a_digest(zipindex.index_path(tmp_path / "v2.zip"))
    with zipindex.open_previous(tmp_path / "v2.zip") as opened:
        assert opened is None


def test_indexes_of_removed_zips_are_cleaned_up(tmp_path: Path) -> None:
    """Saving an index removes the indexes whose zip is gone (pruned builds)."""
    tree = _random_tree(5)
    _build_file(tree, tmp_path / "old.zip")
    (tmp_path / "old.zip").unlink()
    _build_file(tree, tmp_path / "new.zip")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["new.index.json", "new.zip"]


def test_latest_zip_is_remembered_per_layer(tmp_path: Path) -> None:
    """The pointer names each layer's latest zip; a missing zip or another layer gives None."""
    zip_path = tmp_path / "abc.zip"
    zip_path.write_bytes(b"zip")
    zipindex.remember_latest(tmp_path, layer="layers.one", zip_path=zip_path)
    assert zipindex.latest_zip(tmp_path, layer="layers.one") == zip_path
    assert zipindex.latest_zip(tmp_path, layer="layers.two") is None
    os.unlink(zip_path)
    assert zipindex.latest_zip(tmp_path, layer="layers.one") is None


LABEL = "layers.incremental"
# Files dated well before the stat cache's racy window, so that a warm cache trusts them.
SETTLED_MTIME = 1_600_000_000


def _layer_content() -> model.ContentSpec:
    return model.ContentSpec(kind=model.SourceKind.PATH, path="layer")


def _write_disk_tree(root: Path, tree: Tree) -> None:
    for name, data in tree.files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o755 if name in tree.executables else 0o644)
        os.utime(path, (SETTLED_MTIME, SETTLED_MTIME))
    for name, target in tree.links.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, root / name)


def _edit_on_disk(root: Path, edit: str) -> None:
    name = "python/pkg/f03.dat"
    path = root / name
    if edit == "change":
        path.write_bytes(path.read_bytes() + b"changed")
    elif edit == "add":
        (root / "python/pkg/new.py").write_bytes(b"print('new')\n" * 30)
    elif edit == "delete":
        path.unlink()
    elif edit == "chmod +x":
        path.chmod(0o755)
    elif edit == "rename":
        path.rename(root / "python/pkg/renamed.dat")
    elif edit == "symlink":
        os.symlink("f03.dat", root / "python/pkg/alias")
    elif edit == "same size, mtime restored":
        before = path.stat()
        path.write_bytes(bytes(byte ^ 0x55 for byte in path.read_bytes()))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _disk_layer(tmp_path: Path) -> Path:
    tree = _random_tree(21)
    tree.files["python/pkg/f03.dat"] = b"the file the edits touch\n" * 100
    _write_disk_tree(tmp_path / "layer", tree)
    return tmp_path / "layer"


def _build_layer(
    tmp_path: Path,
    build_dir: Path,
    *,
    cache: statcache.StatCache | None = None,
    previous_zip: Path | None = None,
) -> tuple[model.Artifact, int]:
    """Identify and build the layer (with an empty cache if none is given); returns the
    artifact and the stat-cache lookups the build made (it makes them only to compare files
    with a verified previous zip)."""
    digests = cache or statcache.StatCache(tmp_path / "no-cache.json", entries={}, written_ns=0)
    artifact = layer_content.identify(_layer_content(), base_dir=tmp_path, label=LABEL,
                                      cache=digests)
    lookups_before = digests.hits + digests.misses
    built = layerbuild.build(
        _layer_content(), artifact, base_dir=tmp_path, label=LABEL, build_dir=build_dir,
        cache=digests, previous_zip=previous_zip,
    )
    return built, digests.hits + digests.misses - lookups_before


def _file_count(root: Path) -> int:
    return sum(1 for path in root.rglob("*") if path.is_file() and not path.is_symlink())


@pytest.mark.parametrize("warm", [True, False], ids=["warm cache", "cold cache"])
@pytest.mark.parametrize(
    "edit",
    ["change", "add", "delete", "chmod +x", "rename", "symlink", "same size, mtime restored"],
)
def test_sources_build_rebuilds_from_the_layers_previous_zip(
    tmp_path: Path, edit: str, warm: bool
) -> None:
    """After an edit (the fingerprint changed), build finds the layer's previous zip, compares
    every file with it and gives the bytes of a full build in an empty build folder."""
    root = _disk_layer(tmp_path)
    cache_path = tmp_path / "cache.json"
    first_cache = statcache.StatCache.load(cache_path)
    first, _ = _build_layer(tmp_path, tmp_path / "build", cache=first_cache)
    first_cache.save()
    _edit_on_disk(root, edit)
    cache = statcache.StatCache.load(cache_path) if warm else None
    rebuilt, lookups = _build_layer(tmp_path, tmp_path / "build", cache=cache)
    full, full_lookups = _build_layer(tmp_path, tmp_path / "fresh-build")
    assert rebuilt.fingerprint != first.fingerprint
    assert rebuilt.zip_path is not None and full.zip_path is not None
    assert Path(rebuilt.zip_path).read_bytes() == Path(full.zip_path).read_bytes()
    assert (rebuilt.code_sha256, rebuilt.code_size) == (full.code_sha256, full.code_size)
    assert lookups == _file_count(root)
    assert full_lookups == 0


def test_sources_build_takes_an_explicit_previous_zip(tmp_path: Path) -> None:
    """A previous zip passed by the caller is used even from another build folder."""
    root = _disk_layer(tmp_path)
    first, _ = _build_layer(tmp_path, tmp_path / "build")
    _edit_on_disk(root, "change")
    assert first.zip_path is not None
    rebuilt, lookups = _build_layer(
        tmp_path, tmp_path / "other", previous_zip=Path(first.zip_path)
    )
    full, _ = _build_layer(tmp_path, tmp_path / "fresh-build")
    assert rebuilt.code_sha256 == full.code_sha256
    assert lookups == _file_count(root)


@pytest.mark.parametrize("damage", ["zip byte flipped", "index not json"])
def test_sources_build_ignores_a_damaged_previous_zip(tmp_path: Path, damage: str) -> None:
    """A damaged previous zip or index is not used; the build is full and has the same bytes."""
    root = _disk_layer(tmp_path)
    first, _ = _build_layer(tmp_path, tmp_path / "build")
    assert first.zip_path is not None
    CORRUPTIONS[damage](Path(first.zip_path))
    _edit_on_disk(root, "change")
    rebuilt, lookups = _build_layer(tmp_path, tmp_path / "build")
    full, _ = _build_layer(tmp_path, tmp_path / "fresh-build")
    assert rebuilt.code_sha256 == full.code_sha256
    assert lookups == 0


def _wheel_like(path: Path, files: dict[str, bytes], *, level: int) -> None:
    """A zip deflated at `level` (not the layer's 6), with one stored member."""
    with zipfile.ZipFile(path, "w") as out:
        for name, data in files.items():
            out.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=level)
        out.writestr("stored.txt", b"stored as is\n", compress_type=zipfile.ZIP_STORED)


def _wheel_build(wheel: Path, *, max_in_flight_bytes: int = zipbuild.DEFAULT_MAX_IN_FLIGHT_BYTES,
                 workers: int | None = None) -> bytes:
    with zipfile.ZipFile(wheel) as source:
        entries = [model.Entry(arcname=f"python/{info.filename}",
                               source=f"{wheel}\0{info.filename}", size=info.file_size,
                               executable=False) for info in source.infolist()]
        members = wheelmembers.raw_members(str(wheel))

        def open_entry(entry: model.Entry) -> contextlib.AbstractContextManager[io.BytesIO]:
            return contextlib.nullcontext(io.BytesIO(source.read(entry.source.split("\0")[1])))

        out = io.BytesIO()
        zipbuild.write_zip(entries, out=out, open_entry=open_entry, workers=workers,
                           max_in_flight_bytes=max_in_flight_bytes,
                           raw_source=lambda entry: members.get(entry.source.split("\0")[1]))
        return out.getvalue()


def _random_wheel(tmp_path: Path, *, seed: int, modules: int) -> tuple[Path, dict[str, bytes]]:
    """A wheel-like zip deflated at level 9: `modules` small modules of repeated lines, one
    300 KB random member (big enough to be spooled) and a stored member; and its files."""
    rng = random.Random(seed)
    files = {f"pkg/m{index}.py": (b"value = %d\n" % index) * rng.randint(1, 4000)
             for index in range(modules)}
    files["pkg/big.bin"] = bytes(rng.getrandbits(8) for _ in range(300_000))
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    _wheel_like(wheel, files, level=9)
    return wheel, files


def test_wheel_members_keep_the_wheels_own_compressed_bytes(tmp_path: Path) -> None:
    """A member deflated in the wheel is copied as the wheel holds it (here level 9, not the
    layer's 6), a stored one is deflated, and the zip reads back to the same files whatever
    the workers or the in-flight budget (spooled copies included)."""
    wheel, files = _random_wheel(tmp_path, seed=7, modules=40)
    built = _wheel_build(wheel)
    assert built == _wheel_build(wheel, workers=1, max_in_flight_bytes=64 * 1024)
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(io.BytesIO(built)) as layer:
        assert layer.testzip() is None
        for name in files:
            assert layer.read(f"python/{name}") == files[name]
            assert (layer.getinfo(f"python/{name}").compress_size
                    == source.getinfo(name).compress_size)
        assert layer.read("python/stored.txt") == b"stored as is\n"
        assert layer.getinfo("python/stored.txt").compress_type == zipfile.ZIP_DEFLATED


def _checked_build(wheel: Path, members: dict[str, wheelmembers.RawMember]) -> bytes:
    """The zip of the wheel's `members`, every deflated one marked as checked by an earlier
    build (copied by the writer without inflating it; a stored one is read by its offsets)."""
    checked = {name: dataclasses.replace(raw, checked=True) if raw.deflated else raw
               for name, raw in members.items()}
    entries = [model.Entry(arcname=f"python/{name}", source=f"{wheel}\0{name}", size=raw.size,
                           executable=False) for name, raw in members.items()]

    def open_entry(entry: model.Entry) -> contextlib.AbstractContextManager[io.BytesIO]:
        raise AssertionError(f"{entry.arcname} is a wheel member: it is read by its offsets")

    out = io.BytesIO()
    zipbuild.write_zip(entries, out=out, open_entry=open_entry,
                       raw_source=lambda entry: checked.get(entry.source.split("\0")[1]))
    return out.getvalue()


def test_checked_wheel_members_are_copied_as_the_unchecked_build_wrote_them(
        tmp_path: Path) -> None:
    """Members an earlier build checked are copied by the writer: the zip is byte for byte
    the one a build that inflates and checks them writes (the big member included)."""
    wheel, _ = _random_wheel(tmp_path, seed=11, modules=30)
    assert _checked_build(wheel, wheelmembers.raw_members(str(wheel))) == _wheel_build(wheel)


def test_a_checked_member_past_the_end_of_its_wheel_is_refused(tmp_path: Path) -> None:
    """A wheel that shrank after it was verified (a checked member's data now runs past its
    end) is a ContentError naming the member, not a short zip."""
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    _wheel_like(wheel, {"pkg/a.py": b"print('a')\n" * 1000}, level=9)
    members = wheelmembers.raw_members(str(wheel))
    with wheel.open("r+b") as file:
        file.truncate(members["pkg/a.py"].data_offset + 10)
    with pytest.raises(errors.ContentError, match=r"pkg/a\.py: its wheel shrank"):
        _checked_build(wheel, members)


def test_a_wheel_member_whose_crc_lies_is_refused(tmp_path: Path) -> None:
    """A wheel member whose central directory CRC does not match its data is refused, not
    copied blind."""
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    _wheel_like(wheel, {"pkg/a.py": b"print('a')\n" * 100}, level=9)
    data = bytearray(wheel.read_bytes())
    with zipfile.ZipFile(wheel) as source:
        crc = source.getinfo("pkg/a.py").CRC
    position = data.find(b"PK\x01\x02")
    assert position >= 0
    # The first central record is pkg/a.py's: its CRC is at offset 16 of the record.
    assert int.from_bytes(data[position + 16:position + 20], "little") == crc
    data[position + 16:position + 20] = (crc ^ 1).to_bytes(4, "little")
    wheel.write_bytes(bytes(data))
    with pytest.raises(errors.ContentError, match="does not match its header"):
        _wheel_build(wheel)


def test_the_build_machinery_imports_no_wheel_machinery() -> None:
    """A folder layer's build (the head start's worker imports it after identifying, on the
    apply's critical path) imports neither `packaging` nor the wheel fetching: those load
    when a wheel is read. In a fresh interpreter, where nothing has imported them yet."""
    program = (
        "import json, sys\n"
        "from reconciler import layerbuild, wheelmembers, zipbuild\n"
        "print(json.dumps(sorted(name for name in sys.modules if name == 'packaging'\n"
        "                        or name.startswith(('packaging.', 'reconciler.builds.'))\n"
        "                        and name != 'reconciler.builds.cache')))\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            timeout=120, check=True)
    assert json.loads(result.stdout) == []
