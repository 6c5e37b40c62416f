"""Tests of the manifest: `manifest.parse` (text -> model.Manifest, every problem located) and
`workspace.load_manifest` (the same plus the checks of the files the manifest names).

Each bad input asserts the exact located form `FILE:LINE:COL: FIELD: message`: file, line,
column and field exactly, and a key phrase of the message.
"""

from __future__ import annotations

import dataclasses
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from reconciler import errors, manifest, model, workspace

FILE = "layers.yaml"
SCHEMA = workspace.load_schema()
RUNTIMES: list[str] = SCHEMA["properties"]["defaults"]["properties"]["compatible_runtimes"][
    "items"
]["enum"]
ARN = "arn:aws:lambda:eu-west-1:123456789012:layer:foo"
BILLION_LAUGHS = [
    "version: 1",
    'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
    "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]",
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]",
    "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]",
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]",
    "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]",
    "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]",
    "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]",
    "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]",
    "layers: *i",
]


def yaml_lines(*lines: str) -> str:
    """The manifest text with one argument per line, so line N is the Nth argument."""
    return "\n".join(lines) + "\n"


def layer(*lines: str, name: str = "a", content: str = "content: {path: x}") -> list[str]:
    """Lines 2.. of a one-layer manifest: `layers:`, the layer key, its fields, then content."""
    return ["layers:", f"  {name}:", *(f"    {line}" for line in lines), f"    {content}"]


MINIMAL = yaml_lines("version: 1", *layer())


class Expected(NamedTuple):
    """One problem as it must be reported."""

    line: int
    column: int
    field: str
    phrase: str


def parse(text: str | bytes, *, file: str = FILE) -> model.Manifest:
    """Parse manifest text with the shipped schema."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return manifest.parse(data, file=file, schema=SCHEMA)


def problems_of(text: str | bytes) -> list[errors.Problem]:
    """The problems parse() reports for an invalid manifest."""
    with pytest.raises(errors.ManifestError) as raised:
        parse(text)
    return raised.value.problems


def assert_problems(
    problems: list[errors.Problem], expected: list[Expected], *, file: str = FILE
) -> None:
    """Each problem is exactly where and what `expected` says, in the same order."""
    shown = "\n".join(str(problem) for problem in problems)
    assert len(problems) == len(expected), shown
    for problem, want in zip(problems, expected, strict=True):
        assert (problem.file, problem.line, problem.column, problem.field) == (
            file, want.line, want.column, want.field,
        ), shown
        assert want.phrase in problem.message, shown
        assert str(problem) == (
            f"{file}:{want.line}:{want.column}: {want.field}: {problem.message}"
        )


# ---------------------------------------------------------------------------- valid manifests

DEFAULTS_MANIFEST = yaml_lines(
    "version: 1",
    "defaults:",
    "  compatible_runtimes: [python3.13, python3.12]",
    "  compatible_architectures: [x86_64, arm64]",
    "  license_info: MIT",
    "  description: from defaults",
    "layers:",
    "  own:",
    "    description: my own",
    "    compatible_runtimes: [python3.12]",
    "    license_info: Apache-2.0",
    "    content: {path: x}",
    "  inherits:",
    "    content: {path: y}",
)

VALID_CASES = [
    pytest.param(
        MINIMAL,
        lambda m: (m.file, m.version, m.regions, m.artifact_bucket, m.state,
                   [spec.key for spec in m.layers]),
        (FILE, 1, (), None, None, ["a"]),
        id="minimal",
    ),
    pytest.param(
        MINIMAL,
        lambda m: m.layers[0],
        model.LayerSpec(
            key="a", name="a", settings=model.Settings(),
            content=model.ContentSpec(kind=model.SourceKind.PATH, path="x"),
            location=model.Location(3, 3),
        ),
        id="minimal-layer-spec",
    ),
    pytest.param(
        DEFAULTS_MANIFEST,
        lambda m: m.layer("own").settings,
        model.Settings(description="my own", compatible_runtimes=("python3.12",),
                       compatible_architectures=("arm64", "x86_64"), license_info="Apache-2.0"),
        id="defaults-layer-value-wins",
    ),
    pytest.param(
        DEFAULTS_MANIFEST,
        lambda m: m.layer("inherits").settings,
        model.Settings(description="from defaults",
                       compatible_runtimes=("python3.12", "python3.13"),
                       compatible_architectures=("arm64", "x86_64"), license_info="MIT"),
        id="defaults-merged-under-layer",
    ),
    pytest.param(
        yaml_lines("version: 1", "region: us-east-1", *layer()),
        lambda m: m.regions,
        ("us-east-1",),
        id="region-string",
    ),
    pytest.param(
        yaml_lines("version: 1", "region: [us-east-1, eu-west-1]", *layer()),
        lambda m: m.regions,
        ("us-east-1", "eu-west-1"),
        id="region-list",
    ),
    pytest.param(
        yaml_lines("version: 1", "region: [us-east-1, eu-west-1]", *layer(name=ARN)),
        lambda m: [(s.key, s.name, s.arn_region, s.arn_account) for s in m.layers],
        [(ARN, "foo", "eu-west-1", "123456789012")],
        id="arn-key",
    ),
    pytest.param(
        yaml_lines("version: 1", "layers:", "  zeta:", "    content: {path: z}",
                   "  alpha:", "    content: {path: a}", "  mid:", "    content: {path: m}"),
        lambda m: [spec.key for spec in m.layers],
        ["alpha", "mid", "zeta"],
        id="layers-sorted-by-key",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer(content="content: {path: x, prefix: python/lib/}")),
        lambda m: m.layers[0].content.prefix,
        "python/lib",
        id="prefix-trailing-slash-stripped",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer(content="content: {zip: dist/a.zip, normalize: true}")),
        lambda m: m.layers[0].content,
        model.ContentSpec(kind=model.SourceKind.ZIP, zip="dist/a.zip", normalize=True),
        id="zip-source",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer(
            content="content: {s3: {bucket: my-bucket, key: k.zip, object_version: v1}}")),
        lambda m: m.layers[0].content,
        model.ContentSpec(kind=model.SourceKind.S3, s3_bucket="my-bucket", s3_key="k.zip",
                          s3_object_version="v1"),
        id="s3-source",
    ),
    pytest.param(
        yaml_lines("version: 1", "artifact_bucket: my-artifacts", *layer(
            "share:", "  - account: '123456789012'", "  - organization: o-a1b2c3d4e5",
            "retain: 3", "upload: s3")),
        lambda m: (m.layers[0].share, m.layers[0].retain, m.layers[0].upload),
        ((model.Grant("account", "123456789012"), model.Grant("organization", "o-a1b2c3d4e5")),
         3, "s3"),
        id="share-retain-upload",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer(name="n" * 140)),
        lambda m: len(m.layers[0].name),
        140,
        id="name-140-chars",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer(f"compatible_runtimes: [{', '.join(RUNTIMES[:15])}]")),
        lambda m: len(m.layers[0].settings.compatible_runtimes),
        15,
        id="15-runtimes",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer("description: " + "d" * 256)),
        lambda m: len(m.layers[0].settings.description),
        256,
        id="description-256-chars",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer("license_info: " + "l" * 512)),
        lambda m: len(m.layers[0].settings.license_info),
        512,
        id="license-512-chars",
    ),
    pytest.param(
        "\ufeff" + MINIMAL,
        lambda m: [spec.key for spec in m.layers],
        ["a"],
        id="utf8-bom",
    ),
]


@pytest.mark.parametrize(("text", "get", "expected"), VALID_CASES)
def test_valid_manifest(text: str, get: Callable[[model.Manifest], Any], expected: Any) -> None:
    """A valid manifest parses into the model values it describes."""
    assert get(parse(text)) == expected


def test_manifest_of_exactly_the_size_limit_is_accepted() -> None:
    """A manifest of exactly MAX_MANIFEST_BYTES (padded with comments) is not refused by size."""
    body = MINIMAL.encode()
    padding = manifest.MAX_MANIFEST_BYTES - len(body)
    comment = b"#" + b"x" * 98 + b"\n"
    data = body + comment * (padding // 100) + b"#" * (padding % 100 - 1) + b"\n"
    assert len(data) == manifest.MAX_MANIFEST_BYTES
    assert [spec.key for spec in parse(data).layers] == ["a"]


# ------------------------------------------------------------------------------ bad manifests

BAD_CASES = [
    pytest.param(
        yaml_lines("version: 1", "layers:", "  a:", "    content:", "      path: x",
                   "     zip: y"),
        [Expected(6, 6, "(root)", "invalid YAML")],
        id="yaml-bad-indentation",
    ),
    pytest.param(
        yaml_lines("version: 1", "layers: {a: {content: {path: x}"),
        [Expected(3, 1, "(root)", "invalid YAML")],
        id="yaml-unclosed-bracket",
    ),
    pytest.param(
        yaml_lines("- version: 1", "- layers: {}"),
        [Expected(1, 1, "(root)", "must be a mapping with `version` and `layers`, not a list")],
        id="manifest-is-a-list",
    ),
    pytest.param("", [Expected(1, 1, "(root)", "the manifest is empty")], id="empty-file"),
    pytest.param(
        yaml_lines("# just a comment", "# and another"),
        [Expected(1, 1, "(root)", "the manifest is empty")],
        id="comment-only-file",
    ),
    pytest.param(
        yaml_lines(*layer()),
        [Expected(1, 1, "version", "required")],
        id="missing-version",
    ),
    pytest.param(
        yaml_lines("version: 1", "region: us-east-1"),
        [Expected(1, 1, "layers", "required")],
        id="missing-layers",
    ),
    pytest.param(
        yaml_lines("version: 1", "layers: {}"),
        [Expected(2, 9, "layers", "declares no layers")],
        id="no-layers",
    ),
    pytest.param(
        yaml_lines("version: 2", *layer()),
        [Expected(1, 10, "version", "unsupported manifest version 2")],
        id="version-2",
    ),
    pytest.param(
        yaml_lines('version: "1"', *layer()),
        [Expected(1, 10, "version", "unsupported manifest version '1'")],
        id="version-string",
    ),
    pytest.param(
        yaml_lines("version: 1", "regoin: us-east-1", *layer()),
        [Expected(2, 1, "regoin", "unknown key (did you mean 'region'?)")],
        id="unknown-top-level-key-suggested",
    ),
    pytest.param(
        yaml_lines("version: 1", "colour: blue", *layer()),
        [Expected(2, 1, "colour",
                  "unknown key (allowed: align_versions, artifact_bucket, defaults, layers")],
        id="unknown-top-level-key-lists-allowed",
    ),
    pytest.param(
        yaml_lines("version: 1", "defaults:", "  licence_info: MIT", *layer()),
        [Expected(3, 3, "defaults.licence_info", "unknown key (did you mean 'license_info'?)")],
        id="unknown-key-in-defaults",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer("descripton: x")),
        [Expected(4, 5, "layers.a.descripton", "unknown key (did you mean 'description'?)")],
        id="unknown-key-in-layer",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer(content="content: {path: x, exlude: ['*.md']}")),
        [Expected(4, 24, "layers.a.content.exlude", "unknown key (did you mean 'exclude'?)")],
        id="unknown-key-in-content",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer(content="content:"), "      s3:",
                   "        bucket: my-bucket", "        key: k.zip",
                   "        object_versoin: v1"),
        [Expected(8, 9, "layers.a.content.s3.object_versoin",
                  "unknown key (did you mean 'object_version'?)")],
        id="unknown-key-in-s3",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer("share:", "  - acount: '123456789012'")),
        [Expected(5, 9, "layers.a.share[0].acount", "unknown key (did you mean 'account'?)")],
        id="unknown-key-in-share-grant",
    ),
    pytest.param(
        yaml_lines("version: 1", "layers:", "  a:", "    content: {path: x}", "  a:",
                   "    content: {path: y}"),
        [Expected(5, 3, "layers.a", "duplicate key 'a' (first defined at line 3)")],
        id="duplicate-layer-name",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer("description: one", "description: two")),
        [Expected(5, 5, "layers.a.description",
                  "duplicate key 'description' (first defined at line 4)")],
        id="duplicate-key-in-layer",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer("compatible_runtimes: python3.12")),
        [Expected(4, 26, "layers.a.compatible_runtimes", "expected a list, got a string")],
        id="runtimes-string-not-list",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer("description: [a, b]")),
        [Expected(4, 18, "layers.a.description", "expected a string, got a list")],
        id="description-list-not-string",
    ),
    pytest.param(
        yaml_lines("version: 1", "layers:", "  - a:", "      content: {path: x}"),
        [Expected(3, 3, "layers", "expected a mapping, got a list")],
        id="layers-list-not-mapping",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer(name="my.layer")),
        [Expected(3, 3, "layers.my.layer", "must be 1-140 letters, digits, '-' or '_'")],
        id="name-breaks-pattern",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer(name="n" * 141)),
        [Expected(3, 3, "layers." + "n" * 141, "141 characters; the limit is 140")],
        id="name-141-chars",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer(f"compatible_runtimes: [{', '.join(RUNTIMES[:16])}]")),
        [Expected(4, 26, "layers.a.compatible_runtimes", "has 16 items; at most 15 allowed")],
        id="16-runtimes",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer("compatible_runtimes: [python3.12, pyhton3.13]")),
        [Expected(4, 39, "layers.a.compatible_runtimes[1]",
                  "'pyhton3.13' is not a Lambda runtime (did you mean 'python3.13'?)")],
        id="unknown-runtime-suggested",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer("compatible_runtimes: [python3.12, python3.12]")),
        [Expected(4, 39, "layers.a.compatible_runtimes[1]", "'python3.12' is listed twice")],
        id="duplicate-runtimes",
    ),
    pytest.param(
        yaml_lines("version: 1", "defaults:", "  compatible_runtimes: [python3.12, python3.12]",
                   *layer()),
        [Expected(3, 37, "defaults.compatible_runtimes[1]", "'python3.12' is listed twice")],
        id="duplicate-runtimes-in-defaults",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer("compatible_architectures: [arm64, arm64]")),
        [Expected(4, 39, "layers.a.compatible_architectures[1]", "'arm64' is listed twice")],
        id="duplicate-architectures",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer("compatible_architectures: [arm64, x86_64, arm64]")),
        [Expected(4, 31, "layers.a.compatible_architectures", "has 3 items; at most 2 allowed"),
         Expected(4, 47, "layers.a.compatible_architectures[2]", "'arm64' is listed twice")],
        id="3-architectures",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer("compatible_architectures: [amd64]")),
        [Expected(4, 32, "layers.a.compatible_architectures[0]",
                  "'amd64' is not one of: arm64, x86_64")],
        id="unknown-architecture",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer("description: " + "d" * 257)),
        [Expected(4, 18, "layers.a.description", "is 257 characters; at most 256 allowed")],
        id="description-257-chars",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer("license_info: " + "l" * 513)),
        [Expected(4, 19, "layers.a.license_info", "is 513 characters; at most 512 allowed")],
        id="license-513-chars",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer(content="content:"), "      path: x",
                   "      zip: x.zip"),
        [Expected(4, 5, "layers.a.content",
                  "needs exactly one of path, zip, s3 or lock (found path, zip)")],
        id="two-content-sources",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer(content="content:"), "      exclude: ['*.md']"),
        [Expected(4, 5, "layers.a.content", "needs exactly one of path, zip, s3 or lock")],
        id="no-content-source",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer(content="description: no content")),
        [Expected(4, 5, "layers.a.content", "is required but missing")],
        id="content-missing",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer(content="content: {zip: a.zip, prefix: python}")),
        [Expected(4, 27, "layers.a.content.prefix", "only applies to a `path` or `lock` source")],
        id="prefix-on-zip-source",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer(content="content: {path: x, normalize: true}")),
        [Expected(4, 24, "layers.a.content.normalize", "only applies to a `zip` source")],
        id="normalize-on-path-source",
    ),
    pytest.param(
        b"version: 1\nlayers:\n  a:\n    description: caf\xe9\n    content: {path: x}\n",
        [Expected(4, 21, "(root)", "not UTF-8 text (byte 0xe9)")],
        id="non-utf8-byte",
    ),
    pytest.param(
        yaml_lines(*BILLION_LAUGHS),
        [Expected(1, 1, "(root)", "expands to more than")],
        id="yaml-alias-bomb",
    ),
    pytest.param(
        yaml_lines("version: 1", "layers: &loop", "  a: *loop"),
        [Expected(1, 1, "(root)", "nests deeper than")],
        id="yaml-recursive-alias",
    ),
    pytest.param(
        "version: 1\nlayers: " + "[" * 10_000 + "]" * 10_000 + "\n",
        [Expected(2, 73, "(root)", "nests deeper than 64 levels")],
        id="ten-thousand-nested-lists",
    ),
    pytest.param(
        "version: 1\nlayers: " + "{a: " * 50_000 + "1" + "}" * 50_000 + "\n",
        [Expected(2, 262, "(root)", "nests deeper than 64 levels")],
        id="fifty-thousand-nested-flow-maps",
    ),
    pytest.param(
        "version: 1\nlayers:\n" + "".join("  " * depth + f"k{depth}:\n"
                                         for depth in range(1, 600)) + "  " * 600 + "x\n",
        [Expected(66, 129, "(root)", "nests deeper than 64 levels")],
        id="six-hundred-nested-block-maps",
    ),
    pytest.param(
        yaml_lines("version: 1", "region: useast1", *layer()),
        [Expected(2, 9, "region", "'useast1' is not an AWS region name")],
        id="bad-region",
    ),
    pytest.param(
        yaml_lines("version: 1", "region: [us-east-1, nowhere]", *layer()),
        [Expected(2, 21, "region[1]", "'nowhere' is not an AWS region name")],
        id="bad-region-in-list",
    ),
    pytest.param(
        yaml_lines("version: 1", "region: [us-east-1, us-east-1]", *layer()),
        [Expected(2, 9, "region", "twice")],
        id="duplicate-regions",
    ),
    pytest.param(
        yaml_lines("version: 1", "region: []", *layer()),
        [Expected(2, 9, "region", "at least 1")],
        id="empty-region-list",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer("share:", "  - account: '12345'")),
        [Expected(5, 18, "layers.a.share[0].account", "'12345' is not a 12-digit AWS account")],
        id="bad-share-account",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer("retain: 0")),
        [Expected(4, 13, "layers.a.retain", "must be at least 1")],
        id="retain-0",
    ),
    pytest.param(
        yaml_lines("version: 1", "region: us-east-1", *layer(name=ARN)),
        [Expected(4, 3, f"layers.{ARN}",
                  "the ARN is in region eu-west-1, which is not among the manifest's regions")],
        id="arn-region-not-in-manifest",
    ),
    pytest.param(
        yaml_lines("version: 1", "layers:", "  foo:", "    content: {path: x}", f"  {ARN}:",
                   "    content: {path: y}"),
        [Expected(5, 3, f"layers.{ARN}", "names the same Lambda layer 'foo' as layers.foo")],
        id="name-and-arn-same-layer",
    ),
    pytest.param(
        yaml_lines("version: 1", *layer(name="arn:aws:lambda:eu-west-1:12345678901:layer:foo")),
        [Expected(3, 3, "layers.arn:aws:lambda:eu-west-1:12345678901:layer:foo",
                  "or a layer ARN")],
        id="arn-11-digit-account",
    ),
    pytest.param(
        yaml_lines("version: 1", "layers:", "  foo:", "    content: {path: x}",
                   "    upload: s3"),
        [Expected(5, 5, "layers.foo.upload", "names no `artifact_bucket`")],
        id="upload-s3-without-artifact-bucket",
    ),
    pytest.param(
        yaml_lines("version: 1", "defaults:", "  upload: s3", "layers:", "  foo:",
                   "    content: {path: x}"),
        [Expected(3, 3, "defaults.upload", "names no `artifact_bucket`")],
        id="default-upload-s3-without-artifact-bucket",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CASES)
def test_bad_manifest_is_located(text: str | bytes, expected: list[Expected]) -> None:
    """A bad manifest raises ManifestError with each problem at its exact file:line:col: field."""
    assert_problems(problems_of(text), expected)


def test_all_problems_reported_at_once_sorted_by_line() -> None:
    """Five different mistakes in one manifest give five problems, in line order."""
    text = yaml_lines(
        "version: 2",                                           # 1: unsupported version
        "layers:",
        "  a:",
        "    compatible_runtimes: [pyhton3.12]",                # 4: unknown runtime
        "    content: {path: x, normalize: true}",              # 5: normalize on a path
        "  b:",
        "    description: [x]",                                 # 7: not a string
        "    content: {zip: b.zip}",
        "regoin: us-east-1",                                    # 9: unknown key
    )
    problems = problems_of(text)
    assert_problems(problems, [
        Expected(1, 10, "version", "unsupported manifest version 2"),
        Expected(4, 27, "layers.a.compatible_runtimes[0]", "is not a Lambda runtime"),
        Expected(5, 24, "layers.a.content.normalize", "only applies to a `zip` source"),
        Expected(7, 18, "layers.b.description", "expected a string"),
        Expected(9, 1, "regoin", "unknown key"),
    ])


def test_manifest_error_message_lists_every_problem() -> None:
    """ManifestError's message is the located problems, one per line."""
    with pytest.raises(errors.ManifestError) as raised:
        parse(yaml_lines("version: 2", "colour: blue", *layer()))
    assert str(raised.value).splitlines() == [str(p) for p in raised.value.problems]
    assert len(raised.value.problems) == 2


def test_huge_manifest_bytes_refused_by_size_without_parsing() -> None:
    """parse() refuses 50 MB of bytes at once, by size, before decoding or parsing them."""
    data = MINIMAL.encode() + (b"# " + b"x" * 97 + b"\n") * 500_000
    problems = problems_of(data)
    assert_problems(problems, [Expected(1, 1, "(root)", "1,048,576 bytes")])


def test_alias_bomb_refused_without_expanding() -> None:
    """A "billion laughs" manifest is refused once the node budget is spent, instead of
    expanding (the budget bounds the work, not a clock)."""
    problems = problems_of(yaml_lines(*BILLION_LAUGHS))
    assert len(problems) == 1
    assert f"more than {manifest.MAX_NODES:,} values" in problems[0].message
    assert "through YAML aliases" in problems[0].message


# ----------------------------------------------------------------------------- on the disk


def write_manifest(folder: Path, *content_lines: str) -> Path:
    """A one-layer manifest `folder/layers.yaml` whose content block is `content_lines`."""
    path = folder / "layers.yaml"
    path.write_text(yaml_lines("version: 1", "layers:", "  a:", "    content:",
                               *(f"      {line}" for line in content_lines)), encoding="utf-8")
    return path


def load(path: Path) -> model.Manifest:
    """workspace.load_manifest for the manifest at `path`."""
    return workspace.load_manifest(workspace.Workspace.for_manifest(path))


def make_zip(path: Path, members: dict[str, str]) -> None:
    """A zip at `path` holding `members` (name -> text), names written as given."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)


def _nothing(folder: Path) -> None:
    return None


FS_CASES = [
    pytest.param(
        "path: missing", _nothing,
        Expected(5, 13, "layers.a.content.path", "folder 'missing' does not exist"),
        id="path-does-not-exist",
    ),
    pytest.param(
        "path: file.txt", lambda folder: (folder / "file.txt").write_text("x"),
        Expected(5, 13, "layers.a.content.path", "'file.txt' is a file, not a folder"),
        id="path-is-a-file",
    ),
    pytest.param(
        "zip: fake.zip", lambda folder: (folder / "fake.zip").write_text("not a zip"),
        Expected(5, 12, "layers.a.content.zip", "'fake.zip' is not a valid zip file"),
        id="zip-not-a-zip",
    ),
    pytest.param(
        "zip: missing.zip", _nothing,
        Expected(5, 12, "layers.a.content.zip", "zip 'missing.zip' does not exist"),
        id="zip-does-not-exist",
    ),
    pytest.param(
        "zip: folder.zip", lambda folder: (folder / "folder.zip").mkdir(),
        Expected(5, 12, "layers.a.content.zip", "'folder.zip' is not a file"),
        id="zip-is-a-folder",
    ),
    pytest.param(
        "zip: slip.zip",
        lambda folder: make_zip(folder / "slip.zip", {"ok.txt": "x", "/etc/cron.d/evil": "y"}),
        Expected(5, 12, "layers.a.content.zip", "'/etc/cron.d/evil' is an absolute path"),
        id="zip-absolute-member",
    ),
    pytest.param(
        "zip: slip.zip",
        lambda folder: make_zip(folder / "slip.zip", {"python/../../evil.py": "y"}),
        Expected(5, 12, "layers.a.content.zip", "'..' component"),
        id="zip-dotdot-member",
    ),
]


@pytest.mark.parametrize(("source", "setup", "expected"), FS_CASES)
def test_content_file_problems_are_located(
    tmp_path: Path, source: str, setup: Callable[[Path], object], expected: Expected
) -> None:
    """A content path or zip that is missing, of the wrong kind or unsafe is a located problem."""
    setup(tmp_path)
    path = write_manifest(tmp_path, source)
    with pytest.raises(errors.ManifestError) as raised:
        load(path)
    assert_problems(raised.value.problems, [expected], file=str(path))


def test_existing_folder_and_safe_zip_validate(tmp_path: Path) -> None:
    """A content folder that exists and a zip with safe member names pass the disk checks."""
    (tmp_path / "layers" / "a").mkdir(parents=True)
    make_zip(tmp_path / "b.zip", {"python/b.py": "print()"})
    path = tmp_path / "layers.yaml"
    path.write_text(yaml_lines("version: 1", "layers:", "  a:", "    content: {path: layers/a}",
                               "  b:", "    content: {zip: b.zip}"), encoding="utf-8")
    assert [spec.content.kind for spec in load(path).layers] == [
        model.SourceKind.PATH, model.SourceKind.ZIP,
    ]


def test_content_path_is_relative_to_manifest_folder_not_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative content path resolves against the manifest's folder, wherever the cwd is."""
    project = tmp_path / "project"
    (project / "layers" / "a").mkdir(parents=True)
    path = write_manifest(project, "path: layers/a")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load(path).layers[0].content.path == "layers/a"
    monkeypatch.chdir(tmp_path)
    assert load(Path("project/layers.yaml")).layers[0].content.path == "layers/a"


def test_content_path_beside_cwd_only_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder that exists relative to the cwd but not to the manifest's folder is missing."""
    (tmp_path / "project").mkdir()
    (tmp_path / "layers" / "a").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    path = write_manifest(Path("project"), "path: layers/a")
    with pytest.raises(errors.ManifestError) as raised:
        load(path)
    assert_problems(raised.value.problems,
                    [Expected(5, 13, "layers.a.content.path", "does not exist")],
                    file=str(path))


def test_huge_manifest_file_refused_quickly_by_size(tmp_path: Path) -> None:
    """A 50 MB manifest file is refused at once by size, with the limit named and no false size."""
    path = tmp_path / "layers.yaml"
    with path.open("wb") as handle:
        handle.write(MINIMAL.encode())
        handle.write((b"# " + b"x" * 97 + b"\n") * 500_000)
    size = path.stat().st_size
    with pytest.raises(errors.ManifestError) as raised:
        load(path)
    assert_problems(raised.value.problems, [Expected(1, 1, "(root)", "1,048,576 bytes")],
                    file=str(path))
    # Every byte count the message states must be true: the real size or the limit.
    stated = set(re.findall(r"\d{1,3}(?:,\d{3})+", raised.value.problems[0].message))
    assert stated <= {f"{size:,}", f"{manifest.MAX_MANIFEST_BYTES:,}"}, stated


def test_missing_manifest_file_is_a_clear_error(tmp_path: Path) -> None:
    """A manifest path that does not exist raises ReconcilerError naming it, with a hint."""
    path = tmp_path / "nope.yaml"
    with pytest.raises(errors.ReconcilerError) as raised:
        load(path)
    assert not isinstance(raised.value, errors.ManifestError)
    assert raised.value.message == f"{path}: no such manifest"
    assert raised.value.hint is not None
    assert "-f" in raised.value.hint


def test_manifest_path_that_is_a_folder_is_a_clear_error(tmp_path: Path) -> None:
    """A manifest path that is a folder raises ReconcilerError saying so."""
    with pytest.raises(errors.ReconcilerError) as raised:
        load(tmp_path)
    assert raised.value.message == f"{tmp_path}: is a folder, not a manifest file"


def test_missing_keys_are_reported_once_each() -> None:
    """An empty mapping reports `version` and `layers` missing, once each."""
    with pytest.raises(errors.ManifestError) as failure:
        manifest.parse(b"{}\n", file="layers.yaml", schema=workspace.load_schema())
    assert [(p.field, p.message) for p in failure.value.problems] == [
        ("layers", "is required but missing"), ("version", "is required but missing")]


@pytest.mark.parametrize("prefix", ["./x", ".", "a/../b", "a\\\\b"])
def test_prefix_with_dot_parts_is_refused(prefix: str) -> None:
    """A prefix with '.', '..' or a backslash is refused by validate, not only by packaging."""
    text = f'version: 1\nlayers:\n  a:\n    content: {{path: x, prefix: "{prefix}"}}\n'
    with pytest.raises(errors.ManifestError) as failure:
        manifest.parse(text.encode(), file="layers.yaml", schema=workspace.load_schema())
    assert [p.field for p in failure.value.problems] == ["layers.a.content.prefix"]


def test_version_written_as_float_is_refused() -> None:
    """`version: 1.0` is not `version: 1`."""
    with pytest.raises(errors.ManifestError) as failure:
        manifest.parse(b"version: 1.0\nlayers:\n  a:\n    content: {path: x}\n",
                       file="layers.yaml", schema=workspace.load_schema())
    assert failure.value.problems[0].field == "version"


def test_complex_key_is_a_clear_problem() -> None:
    """A list used as a layer name is reported as such, without a Python repr."""
    text = b"version: 1\nlayers:\n  ? [a, b]\n  : {content: {path: x}}\n"
    with pytest.raises(errors.ManifestError) as failure:
        manifest.parse(text, file="layers.yaml", schema=workspace.load_schema())
    messages = [problem.message for problem in failure.value.problems]
    assert any("a key must be a plain name" in message for message in messages), messages
    assert "Node" not in str(failure.value)


def test_disk_checks_run_even_when_the_schema_fails(tmp_path: Path) -> None:
    """A typo elsewhere does not hide a missing content folder or zip: all are reported."""
    (tmp_path / "layers.yaml").write_text(
        "version: 1\nlayers:\n  a:\n    descripton: x\n    content: {path: nope}\n"
        "  b:\n    content: {zip: nope.zip}\n")
    with pytest.raises(errors.ManifestError) as failure:
        workspace.load_manifest(workspace.Workspace.for_manifest(tmp_path / "layers.yaml"))
    assert [p.field for p in failure.value.problems] == [
        "layers.a.descripton", "layers.a.content.path", "layers.b.content.zip"]


@pytest.mark.parametrize("value", ["!foo bar", "!!python/name:os.system", "!!int x"],
                         ids=["custom-tag", "python-tag", "bad-int"])
def test_yaml_tags_are_located_problems(value: str) -> None:
    """Tags other than plain YAML data are one located problem, never a traceback."""
    text = f"version: 1\nlayers:\n  a:\n    description: {value}\n    content: {{path: x}}\n"
    with pytest.raises(errors.ManifestError) as failure:
        manifest.parse(text.encode(), file="layers.yaml", schema=workspace.load_schema())
    assert [(p.line, p.column, p.field) for p in failure.value.problems] == [
        (4, 18, "layers.a.description")]


def test_merge_keys_say_to_use_defaults() -> None:
    """A YAML merge key is refused with a pointer to `defaults:`."""
    text = b"version: 1\nlayers:\n  a:\n    <<: {description: x}\n    content: {path: x}\n"
    with pytest.raises(errors.ManifestError) as failure:
        manifest.parse(text, file="layers.yaml", schema=workspace.load_schema())
    assert "use `defaults:`" in failure.value.problems[0].message


def test_fleet_settings_merge_from_defaults_and_top_level() -> None:
    """share/retain/upload come from defaults unless the layer sets them; align_versions
    from the layer, else defaults, else the top level; `account: '*'` is `public`."""
    parsed = parse(yaml_lines(
        "version: 1", "region: [us-east-1, eu-west-1]", "align_versions: true",
        "artifact_bucket: {us-east-1: b-use1, eu-west-1: b-euw1}",
        "defaults:", "  share: [{account: '123456789012'}]", "  retain: 3",
        "layers:",
        "  a:", "    content: {path: a}",
        "  b:", "    content: {path: b}", "    share: [{public: true}, {account: '*'}]",
        "    align_versions: false", "    upload: s3",
        "  c:", "    content: {path: c}", "    share: []"))
    a, b, c = parsed.layers
    assert a.share == (model.Grant(kind="account", principal="123456789012"),)
    assert (a.retain, a.align_versions, a.upload) == (3, True, None)
    assert b.share == (model.Grant(kind="public", principal="*"),)
    assert (b.align_versions, b.upload) == (False, "s3")
    assert c.share == () and c.grants == ()
    assert dict(parsed.artifact_buckets) == {"us-east-1": "b-use1", "eu-west-1": "b-euw1"}


def test_a_layer_without_share_leaves_grants_alone() -> None:
    """No `share` anywhere: the layer's grants are unmanaged (None), not an empty list."""
    parsed = parse(MINIMAL)
    assert parsed.layers[0].share is None


def test_a_list_where_a_runtime_belongs_is_located_not_a_crash() -> None:
    """`compatible_runtimes: [[]]` (found by the fuzz test) is a located schema error, in
    defaults and in a layer, never a TypeError from the duplicate check."""
    for text in ("version: 1\nregion: us-east-1\ndefaults:\n  compatible_runtimes: [[]]\n"
                 "layers:\n  a:\n    content: {path: a}\n",
                 "version: 1\nregion: us-east-1\nlayers:\n  a:\n    compatible_runtimes: [[]]\n"
                 "    content: {path: a}\n"):
        with pytest.raises(errors.ManifestError) as raised:
            manifest.parse(text.encode(), file="layers.yaml", schema=SCHEMA)
        assert "compatible_runtimes" in str(raised.value)


def test_s3_content_in_a_manifest_of_many_regions_is_located() -> None:
    """content.s3 with several regions is refused at the s3 key: Lambda reads an S3 object
    from its own region only."""
    text = ("version: 1\nregion: [us-east-1, eu-west-1]\nlayers:\n  a:\n"
            "    content: {s3: {bucket: b, key: a.zip}}\n")
    with pytest.raises(errors.ManifestError) as raised:
        manifest.parse(text.encode(), file="layers.yaml", schema=SCHEMA)
    assert "layers.a.content.s3" in str(raised.value)
    assert "its own region only" in str(raised.value)


EARLY_VALID = """\
version: 1
region: [us-east-1, eu-west-1]
defaults: {compatible_runtimes: [python3.12]}
layers:
  tools: {content: {path: tools, prefix: python, exclude: ["*.pyc"]}, description: Tools}
  vendor: {content: {zip: vendor.zip}}
"""


def parsed_content(parsed: model.Manifest) -> dict[str, tuple[str, str | None, str,
                                                              tuple[str, ...]]]:
    """Each layer's content as (kind, path or zip, prefix, exclude)."""
    return {spec.key: (spec.content.kind.value,
                       spec.content.path or spec.content.zip, spec.content.prefix,
                       spec.content.exclude) for spec in parsed.layers}


def test_the_early_manifest_is_the_checked_one() -> None:
    """`read` builds, before the schema pass, exactly the manifest `check` returns for
    bytes that pass it (what a run starts reading layer files from meanwhile)."""
    unchecked = manifest.read(EARLY_VALID.encode(), file=FILE)
    assert unchecked.early is not None
    # Built after the schema pass from the same document, as without an early build:
    built_late = manifest.check(dataclasses.replace(unchecked, early=None), schema=SCHEMA)
    assert built_late is not unchecked.early and built_late == unchecked.early
    assert [spec.key for spec in built_late.layers] == ["tools", "vendor"]
    assert parsed_content(built_late) == {"tools": ("path", "tools", "python", ("*.pyc",)),
                                          "vendor": ("zip", "vendor.zip", "", ())}


@pytest.mark.parametrize("text", [
    "version: 1\nlayers: {tools: {content: 5}}\n",             # the build would index an int
    "version: 1\nlayers: {tools: {content: {path: [a]}}}\n",   # a path that is no string
    "version: 1\nlayers: [tools]\n",                           # layers that are no mapping
    "version: 1\nlayers: {tools: {content: {path: t}, compatible_runtimes: 3}}\n",
])
def test_bytes_the_schema_refuses_give_no_manifest(text: str) -> None:
    """Bytes that break the build before the schema pass give no early manifest (or one
    nobody may use: `check` refuses the bytes), and never an exception from `read`."""
    unchecked = manifest.read(text.encode(), file=FILE)
    with pytest.raises(errors.ManifestError):
        manifest.check(unchecked, schema=SCHEMA)


def test_every_problem_message_redacts_a_url_password() -> None:
    """A value quoted by any rule's message (here the region pattern's) has the userinfo of
    every URL in it replaced by `***`."""
    found = problems_of(yaml_lines("version: 1", "region: 'https://me:PASS@example.com'",
                                   *layer()))
    assert [problem.field for problem in found] == ["region"]
    assert "PASS" not in found[0].message and "https://***@example.com" in found[0].message
