"""The state codec: canonical bytes, a faithful round trip, clear errors, the revision digest."""

from __future__ import annotations

import hashlib
import json

import pytest

from reconciler import errors, model, statefile

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
    text = statefile.encode(one)
    assert text == statefile.encode(two)
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
    assert statefile.decode(statefile.encode(lock), file="x") == lock


@pytest.mark.parametrize(
    ("text", "phrase"),
    [("{not json", "not valid JSON"), ("[]", "not a reconcile lockfile"),
     ('{"lockfile_version": 9}', "lockfile_version 9 is not supported"),
     ('{"lockfile_version": 1, "layers": {"a": {"r": {"version": "1"}}}}',
      "layers.a.r.fingerprint is missing")],
    ids=["bad json", "not an object", "future version", "missing field"],
)
def test_bad_state_text_is_a_clear_error(text: str, phrase: str) -> None:
    """Damaged state text is a LockfileError naming the file and what is wrong."""
    with pytest.raises(errors.LockfileError) as failure:
        statefile.decode(text, file="some/layers.lock.json")
    assert phrase in failure.value.message
    assert "some/layers.lock.json" in failure.value.message


def test_revision_is_the_hex_sha256_of_the_bytes() -> None:
    """revision_of() is the hex SHA-256 of exactly the bytes given: one changed byte moves it."""
    data = statefile.encode(model.Lock().with_entry("a", "us-east-1", entry=ENTRY)).encode()
    assert statefile.revision_of(data) == hashlib.sha256(data).hexdigest()
    assert statefile.revision_of(data + b" ") != statefile.revision_of(data)
