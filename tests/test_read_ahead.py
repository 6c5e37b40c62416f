"""StatCache.reading_ahead: the files a forked helper hashes give exactly the digests, the
errors and the remembered entries that hashing them in the run's own process gives.

Each scenario runs in a fresh interpreter: a helper is forked only from a process that has
started no thread, and pytest's may have (a moto server of another test module)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Runs in the child interpreter: stat every file, let `mode` disturb one of the last ones (in
# the helper's share), then look each up inside reading_ahead (or without it), print plain data.
SCENARIO = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    from reconciler import errors
    from reconciler.content import statcache
    folder, mode, ahead = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "ahead"
    names = sorted(os.listdir(folder))
    files = [(str(folder / name), os.stat(folder / name)) for name in names]
    victim = folder / names[-3]
    if mode == "rewritten":  # other bytes, same size, mtime put back: only ctime tells
        old = files[-3][1]
        victim.write_bytes(bytes(255 - byte for byte in victim.read_bytes()))
        os.utime(victim, ns=(old.st_atime_ns, old.st_mtime_ns))
    elif mode == "replaced":  # another file (another inode: made while the old one lives)
        other = folder.parent / "other"
        other.write_bytes(b"replaced")
        os.replace(other, victim)
    cache = statcache.StatCache(folder.parent / "cache.json", entries={}, written_ns=0)
    digests, error = {}, None
    try:
        if ahead:
            with cache.reading_ahead(files):
                for path, st in files:
                    digests[os.path.basename(path)] = cache.file_sha256(path, st)
        else:
            for path, st in files:
                digests[os.path.basename(path)] = cache.file_sha256(path, st)
    except errors.ContentError as failure:
        error = failure.message.replace(str(folder), "<folder>")
    snapshot = cache.snapshot()
    saved = json.loads(snapshot)["entries"] if snapshot else {}
    print(json.dumps({
        "digests": digests, "error": error, "read_ahead": cache.read_ahead,
        "misses": cache.misses, "remembered": sorted(os.path.basename(key) for key in saved),
    }))
""")


def _folder(root: Path, count: int) -> Path:
    folder = root / "files"
    folder.mkdir(parents=True)
    for number in range(count):
        (folder / f"f{number:04d}").write_bytes(os.urandom(100 + number % 300))
    return folder


def _run(folder: Path, mode: str, how: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", SCENARIO, str(folder), mode, how],
                          capture_output=True, text=True, check=True, timeout=120)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_digests_read_ahead_are_the_files_digests(tmp_path: Path) -> None:
    """600 files: the helper reads a share of them, and every digest is the SHA-256 of the
    file's bytes, each remembered."""
    folder = _folder(tmp_path, 600)
    found = _run(folder, "clean", "ahead")
    digests = found["digests"]
    assert isinstance(digests, dict)
    assert digests == {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
                       for path in folder.iterdir()}
    read_ahead = found["read_ahead"]
    assert isinstance(read_ahead, int) and 100 < read_ahead < 500
    assert found["misses"] == 600 and found["error"] is None
    assert found["remembered"] == sorted(digests)


def test_few_files_are_read_in_this_process(tmp_path: Path) -> None:
    """Below AHEAD_MIN_FILES (256) a fork costs more than it saves: no helper reads any."""
    found = _run(_folder(tmp_path, 200), "clean", "ahead")
    assert found["read_ahead"] == 0 and found["misses"] == 200


@pytest.mark.parametrize("mode", ["rewritten", "replaced"])
def test_a_file_changed_after_its_stat_is_handled_as_without_a_helper(
        tmp_path: Path, mode: str) -> None:
    """A file in the helper's share rewritten with its mtime restored (its digest is that of
    its new bytes, and it is not remembered), or replaced by another file (the run stops on
    it): the same digests, error and remembered entries as with no helper."""
    with_helper = _run(_folder(tmp_path / "a", 600), mode, "ahead")
    without = _run(_folder(tmp_path / "b", 600), mode, "inline")
    # The two folders hold different random bytes: compare what does not depend on them.
    assert with_helper["error"] == without["error"]
    assert with_helper["remembered"] == without["remembered"]
    assert isinstance(with_helper["read_ahead"], int) and with_helper["read_ahead"] > 0
    remembered = with_helper["remembered"]
    assert isinstance(remembered, list)
    if mode == "rewritten":
        assert with_helper["error"] is None and "f0597" not in remembered
        assert len(remembered) == 599
    else:
        assert "was replaced while it was being packaged" in str(with_helper["error"])


def test_a_rewritten_files_digest_is_of_its_new_bytes(tmp_path: Path) -> None:
    """The rewritten file's digest, read ahead or not, is the SHA-256 of the bytes it holds
    once rewritten (the same folder, run twice from the same bytes)."""
    folder = _folder(tmp_path, 600)
    saved = {path.name: path.read_bytes() for path in folder.iterdir()}
    found = _run(folder, "rewritten", "ahead")
    digests = found["digests"]
    assert isinstance(digests, dict)
    assert digests["f0597"] == hashlib.sha256((folder / "f0597").read_bytes()).hexdigest()
    assert digests["f0597"] != hashlib.sha256(saved["f0597"]).hexdigest()


# Runs in the child interpreter: identify_all over every layer folder of the project (or each
# layer alone with identify), print each identity or error and the helper's share.
MANY = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    from reconciler import content, errors, model
    from reconciler.content import statcache
    base, how = Path(sys.argv[1]), sys.argv[2]
    names = sorted(os.listdir(base / "layers"))
    specs = [(f"layers.{name}", model.ContentSpec(kind=model.SourceKind.PATH,
                                                  path=f"layers/{name}")) for name in names]
    specs.append(("layers.gone", model.ContentSpec(kind=model.SourceKind.PATH,
                                                   path="layers/gone")))
    cache = statcache.StatCache(base / "cache.json", entries={}, written_ns=0)
    if how == "all":
        found = content.identify_all(specs, base_dir=base, cache=cache)
    else:
        found = {}
        for label, spec in specs:
            try:
                found[label] = content.identify(spec, base_dir=base, label=label, cache=cache)
            except errors.ContentError as error:
                found[label] = error
    print(json.dumps({
        "found": {label: (value.fingerprint if isinstance(value, model.Artifact)
                          else "error: " + value.message.replace(str(base), "<base>"))
                  for label, value in found.items()},
        "read_ahead": cache.read_ahead, "misses": cache.misses,
    }))
""")


def test_many_small_layers_are_read_in_two_processes(tmp_path: Path) -> None:
    """Twelve layers of 50 files (each below AHEAD_MIN_FILES alone): identify_all has a
    helper read a share of all 600 files, and gives every layer the identity identify gives
    it alone; a layer whose folder is missing is an error of that layer only."""
    for layer in range(12):
        folder = tmp_path / "layers" / f"l{layer:02d}"
        folder.mkdir(parents=True)
        for number in range(50):
            (folder / f"m{number}.py").write_bytes(os.urandom(200 + number))
    runs = {}
    for how in ("all", "one by one"):
        done = subprocess.run([sys.executable, "-c", MANY, str(tmp_path), how],
                              capture_output=True, text=True, check=True, timeout=120)
        runs[how] = json.loads(done.stdout)
    together, alone = runs["all"], runs["one by one"]
    assert together["found"] == alone["found"]
    assert list(together["found"]) == [*(f"layers.l{n:02d}" for n in range(12)), "layers.gone"]
    assert str(together["found"]["layers.gone"]).startswith("error: ")
    assert together["misses"] == alone["misses"] == 600
    assert alone["read_ahead"] == 0 and 100 < together["read_ahead"] < 500
