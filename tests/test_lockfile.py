"""The lockfile: canonical bytes, a faithful round trip, clear errors, atomic replacement."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reconciler import errors, lockfile, model

ENTRY = model.LockEntry(fingerprint="f" * 64, content_sha256="c" * 64, code_sha256="x" * 43 + "=",
                        code_size=123, version=4,
                        layer_version_arn="arn:aws:lambda:us-east-1:123456789012:layer:a:4",
                        settings_sha256="s" * 64)


def test_canonical_text_is_sorted_indented_and_newline_terminated() -> None:
    """The same lock gives the same bytes whatever the insertion order."""
    one = model.Lock().with_entry("b", "us-east-1", entry=ENTRY)
    one = one.with_entry("a", "eu-west-1", entry=ENTRY)
    two = model.Lock().with_entry("a", "eu-west-1", entry=ENTRY)
    two = two.with_entry("b", "us-east-1", entry=ENTRY)
    text = lockfile.encode(one)
    assert text == lockfile.encode(two)
    assert text.endswith("}\n") and "\n  \"layers\": {\n" in text
    document = json.loads(text)
    assert document["lockfile_version"] == 1
    assert list(document["layers"]) == ["a", "b"]
    assert set(document["layers"]["a"]["eu-west-1"]) == {
        "fingerprint", "content_sha256", "code_sha256", "code_size", "version",
        "layer_version_arn", "settings_sha256"}


def test_round_trip() -> None:
    """decode(encode(lock)) is the same lock."""
    lock = model.Lock().with_entry("a", "us-east-1", entry=ENTRY)
    assert lockfile.decode(lockfile.encode(lock), file="x") == lock


def test_missing_file_is_an_empty_lock(tmp_path: Path) -> None:
    """No lockfile yet means nothing recorded."""
    assert lockfile.read(tmp_path / "layers.lock.json") == model.Lock()


@pytest.mark.parametrize(
    ("text", "phrase"),
    [("{not json", "not valid JSON"), ("[]", "not a reconcile lockfile"),
     ('{"lockfile_version": 9}', "lockfile_version 9 is not supported"),
     ('{"lockfile_version": 1, "layers": {"a": {"r": {"version": "1"}}}}',
      "layers.a.r.fingerprint is missing")],
    ids=["bad json", "not an object", "future version", "missing field"],
)
def test_bad_lockfile_is_a_clear_error(tmp_path: Path, text: str, phrase: str) -> None:
    """A damaged lockfile names the file and what is wrong."""
    path = tmp_path / "layers.lock.json"
    path.write_text(text)
    with pytest.raises(errors.LockfileError) as failure:
        lockfile.read(path)
    assert phrase in failure.value.message
    assert str(path) in failure.value.message


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    """write_atomic replaces the file and leaves nothing else behind."""
    path = tmp_path / "layers.lock.json"
    path.write_text("old")
    lockfile.write_atomic(path, model.Lock().with_entry("a", "us-east-1", entry=ENTRY))
    assert [p.name for p in tmp_path.iterdir()] == ["layers.lock.json"]
    assert lockfile.read(path).get("a", "us-east-1") == ENTRY


def test_failed_write_keeps_the_old_lockfile(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails part way (here: fsync) leaves the old bytes and no temp file."""
    path = tmp_path / "layers.lock.json"
    lockfile.write_atomic(path, model.Lock().with_entry("a", "us-east-1", entry=ENTRY))
    before = path.read_bytes()

    def failing_fsync(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space left"):
        lockfile.write_atomic(path, model.Lock().with_entry("b", "us-east-1", entry=ENTRY))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["layers.lock.json"]
