"""The state codec: canonical bytes, a faithful round trip, clear errors, the revision digest."""

from __future__ import annotations

import dataclasses
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


# --- lineage, serial and owners ---------------------------------------------------------------


def test_lineage_serial_and_owner_round_trip_in_the_canonical_format() -> None:
    """A written lock keeps its lineage, serial and each entry's owner, as sorted, indented
    JSON with a trailing newline; decoding gives them back."""
    lock = model.Lock(entries={("a", "us-east-1"): dataclasses.replace(
        ENTRY, manifest="teams/b/layers.yaml")}, lineage="l-1", serial=7)
    text = statefile.encode(lock)
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    back = statefile.decode(text, file="x")
    assert (back.lineage, back.serial) == ("l-1", 7)
    assert back.entries[("a", "us-east-1")].manifest == "teams/b/layers.yaml"


def test_an_older_lockfile_reads_as_lineage_unknown_serial_0_and_keeps_its_bytes() -> None:
    """A lockfile without lineage, serial or owners decodes to lineage "" and serial 0, and
    encodes back to the very same bytes (nothing is added until a write)."""
    old = statefile.encode(model.Lock().with_entry("a", "us-east-1", entry=ENTRY))
    assert "lineage" not in old and "serial" not in old and "manifest" not in old
    lock = statefile.decode(old, file="x")
    assert (lock.lineage, lock.serial) == ("", 0)
    assert statefile.encode(lock) == old


def test_next_write_makes_the_lineage_once_and_raises_the_serial() -> None:
    """The first write makes a lineage (a UUID); every write raises the serial by one and
    keeps the lineage."""
    first = statefile.next_write(model.Lock())
    second = statefile.next_write(first.with_entry("a", "us-east-1", entry=ENTRY))
    assert len(first.lineage) == 36 and first.serial == 1
    assert second.lineage == first.lineage and second.serial == 2
    assert second.without("a", "us-east-1").serial == 2


def test_an_entry_owner_is_not_part_of_its_equality() -> None:
    """Two entries that differ only in their owner are equal: a plan never records an entry
    again only to write its owner."""
    assert dataclasses.replace(ENTRY, manifest="a.yaml") == ENTRY


@pytest.mark.parametrize(("pushed", "current", "words"), [
    (model.Lock(lineage="L", serial=3), model.Lock(lineage="L", serial=5),
     "older (serial 3) than s3://b/k (serial 5)"),
    (model.Lock(lineage="M", serial=9), model.Lock(lineage="L", serial=5),
     "another state (lineage M) than s3://b/k (lineage L)"),
    (model.Lock(serial=0), model.Lock(lineage="L", serial=1), "older (serial 0)"),
    (model.Lock(lineage="L", serial=5), model.Lock(lineage="L", serial=5), None),
    (model.Lock(lineage="L", serial=6), model.Lock(), None),
])
def test_push_refusal(pushed: model.Lock, current: model.Lock, words: str | None) -> None:
    """`state push` refuses another lineage or a lower serial, naming both; the same or a
    higher serial of the same (or an unknown) lineage may be pushed."""
    refusal = statefile.push_refusal(pushed, current=current, file="f.json",
                                     location="s3://b/k")
    assert (refusal is None) if words is None else (refusal is not None and words in refusal)


@pytest.mark.parametrize(("field", "value", "words"), [
    ("lineage", 3, "`lineage` must be a string"),
    ("serial", -1, "`serial` must be a whole number"),
    ("serial", True, "`serial` must be a whole number"),
])
def test_a_bad_lineage_or_serial_is_a_lockfile_error(field: str, value: object,
                                                     words: str) -> None:
    """A lineage that is not text or a serial that is not a whole number is named."""
    document = {"lockfile_version": 1, "layers": {}, field: value}
    with pytest.raises(errors.LockfileError, match=words):
        statefile.decode(json.dumps(document), file="x")
