"""The state codec: canonical bytes, a faithful round trip, clear errors, the revision digest."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
      "layers.a.r.fingerprint is missing"),
     ("[" * 100_000 + "]" * 100_000, "nests deeper"),
     ('{"lockfile_version": 1, "layers": {"a": {"r": {"version": ' + "9" * 5000 + "}}}}",
      "a number of thousands of digits"),
     ('{"lockfile_version": true}', "lockfile_version True is not supported"),
     ('{"lockfile_version": 1, "layers": {"\\ud800": {}}}', "lone surrogate"),
     ('{"lockfile_version": 1, "layers": {"a": ' + "[" * 500 + "]" * 500 + "}}",
      "layers.a must be an object")],
    ids=["bad json", "not an object", "future version", "missing field", "100,000 nested lists",
         "huge integer", "boolean version", "lone surrogate", "nested value"],
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


_names = st.one_of(st.text(max_size=8), st.sampled_from(["a", "us-east-1", "version"]))
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
_json = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_names, inner, max_size=3)), max_leaves=12)
_entry_values = {"fingerprint": "f", "content_sha256": "c", "code_sha256": "x", "code_size": 1,
                 "version": 2, "layer_version_arn": "arn", "settings_sha256": "s"}


def _decoded_or_refused(text: str) -> None:
    try:
        lock = statefile.decode(text, file="layers.lock.json")
    except errors.LockfileError as refused:
        assert refused.message.startswith("layers.lock.json")
    else:
        # What was read can be written back (the apply after it rewrites the file).
        statefile.encode(lock).encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_names, _json, max_size=4))
def test_any_json_document_decodes_or_is_refused(document: dict[str, object]) -> None:
    """Any JSON object, however wrong, decodes to a Lock or is a LockfileError naming the file."""
    _decoded_or_refused(json.dumps(document))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_names, _json | st.just(_entry_values), max_size=3),
       st.dictionaries(_names, _json, max_size=3))
def test_near_lockfiles_decode_or_are_refused(regions: dict[str, object],
                                              extra: dict[str, object]) -> None:
    """A lockfile of the right shape with wrong leaves decodes or is a LockfileError."""
    _decoded_or_refused(json.dumps({"lockfile_version": 1, "layers": {"a": regions}, **extra}))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='{}[]",:0123456789.eE+-truefalsn\\u\n ', max_size=120))
def test_json_punctuation_soup_decodes_or_is_refused(text: str) -> None:
    """Text made of JSON's own punctuation never raises anything but LockfileError."""
    _decoded_or_refused(text)
