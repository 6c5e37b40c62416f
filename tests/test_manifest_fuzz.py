"""Property: whatever bytes a manifest holds, parsing it gives a Manifest or a ManifestError
with located problems, never another exception (a user mistake never shows a traceback)."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import errors, manifest, model, workspace

SCHEMA = workspace.load_schema()

_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                     st.text(max_size=20),
                     st.sampled_from(["python3.12", "x86_64", "us-east-1", "s3://b/k", "1"]))
_keys = st.one_of(st.text(max_size=10),
                  st.sampled_from(["version", "layers", "region", "defaults", "content", "path",
                                   "zip", "s3", "prefix", "exclude", "normalize", "share",
                                   "retain", "description", "compatible_runtimes",
                                   "compatible_architectures", "license_info", "upload"]))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=4)), max_leaves=20)


def _parse(data: bytes) -> None:
    try:
        result = manifest.parse(data, file="layers.yaml", schema=SCHEMA)
    except errors.ManifestError as invalid:
        assert invalid.problems
        assert all(problem.line >= 1 and problem.column >= 1 for problem in invalid.problems)
    else:
        assert isinstance(result, model.Manifest)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_keys, _values, max_size=5))
def test_any_yaml_document_is_parsed_or_located(document: dict[str, object]) -> None:
    """Any YAML mapping, however wrong, parses or gives located problems."""
    _parse(yaml.safe_dump(document, allow_unicode=True).encode("utf-8"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_parsed_or_located(data: bytes) -> None:
    """Arbitrary bytes (bad UTF-8, bad YAML, anything) never raise anything but ManifestError."""
    _parse(data)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="version:1layers\n a-{}[],&*!|>'\"#?:", max_size=120))
def test_yaml_punctuation_soup_is_parsed_or_located(text: str) -> None:
    """Text made of YAML's own punctuation never raises anything but ManifestError."""
    _parse(text.encode("utf-8"))


_openers = st.sampled_from(["[", "{a: ", "- ", "{? ", "[{b: ", "&x [", "!!seq ["])


@settings(max_examples=60, deadline=None)
@given(st.lists(_openers, min_size=1, max_size=4), st.integers(min_value=1, max_value=20_000),
       st.sampled_from(["layers: ", "version: 1\nlayers: ", "version: 1\nregion: "]))
def test_deep_nesting_is_located(openers: list[str], depth: int, lead: str) -> None:
    """Nesting of any depth and any mix of flow lists and maps (closed or not) parses or gives
    located problems: PyYAML composes recursively, and no depth may reach Python's limit."""
    opened = "".join(openers[level % len(openers)] for level in range(depth))
    _parse((lead + opened + "1").encode("utf-8"))
