"""Manifest text -> model.Manifest: YAML with line numbers, the JSON Schema, then the rules a
schema cannot express, reporting ALL problems at once as located `errors.Problem`s.

Pure: it is given the file's bytes and the schema, and never touches the filesystem (the
checks that need it, such as "the content folder exists", live in `workspace`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from reconciler import consumerspec, errors, model, schemacheck

MAX_MANIFEST_BYTES = 1024 * 1024
# A YAML alias may point at a big node many times over ("billion laughs"); counting every
# node visited through aliases bounds the work whatever the file holds.
MAX_NODES = 200_000
MAX_DEPTH = 64
SETTINGS_FIELDS = ("description", "compatible_runtimes", "compatible_architectures", "license_info")
CONTENT_SOURCES = ("path", "zip", "s3", "lock")
# A content option -> the sources it applies to.
_CONTENT_OPTIONS = {"prefix": ("path", "lock"), "exclude": ("path",), "normalize": ("zip",),
                    "find_links": ("lock",), "index_url": ("lock",),
                    "exclude_packages": ("lock",)}
LAYER_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-zA-Z-]*):lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12})"
    r":layer:(?P<name>[a-zA-Z0-9_-]{1,140})$"
)


@dataclass
class _Document:
    """The plain data of a YAML document and where each value and mapping key stands."""

    data: Any
    values: dict[schemacheck.Path, model.Location] = field(default_factory=dict)
    keys: dict[schemacheck.Path, model.Location] = field(default_factory=dict)
    # Values already reported as bad YAML (an unsupported tag); no further rule repeats it.
    invalid: set[schemacheck.Path] = field(default_factory=set)


class _TooLarge(Exception):
    """The document expands past MAX_NODES or MAX_DEPTH."""


class _TooDeep(Exception):
    """The YAML nests deeper than MAX_DEPTH where `mark` stands (found while composing)."""

    def __init__(self, mark: Any) -> None:
        super().__init__(f"the manifest nests deeper than {MAX_DEPTH} levels")
        self.mark = mark


class _DepthLimitedLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses a node nested deeper than MAX_DEPTH: PyYAML composes
    recursively, so ten thousand nested `[` would exhaust Python's stack (RecursionError)
    before _convert's own depth check ever saw the tree."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH + 1:  # _convert allows MAX_DEPTH below the root
                raise _TooDeep(self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def field_name(path: schemacheck.Path) -> str:
    """`("layers", "x", "compatible_runtimes", 2)` -> `layers.x.compatible_runtimes[2]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(root)"


@dataclass(frozen=True)
class Unchecked:
    """A manifest read and held to every rule but the JSON Schema pass, which `check` makes.

    `early` is what `check` will return if the bytes pass that pass: built before it (the
    pass needs jsonschema, ~50 ms to import on a run that has no record of these bytes), so
    that a run can start reading the layers' files meanwhile. It is only a guess until then:
    None when a rule already failed or the build broke on data the schema would refuse."""

    file: str
    sha256: str
    document: _Document
    leading: tuple[errors.Problem, ...]  # before the schema's (YAML the tool refuses)
    trailing: tuple[errors.Problem, ...]  # after them (the rules a schema cannot express)
    content_refs: tuple[model.ContentRef, ...]
    early: model.Manifest | None


def _problem_adder(file: str, problems: list[errors.Problem]
                   ) -> Callable[[model.Location, schemacheck.Path, str], None]:
    """A function that appends a located problem of `file` to `problems`."""
    def problem(location: model.Location, path: schemacheck.Path, message: str) -> None:
        # Messages quote values, and a value may be a URL with a password in it.
        problems.append(errors.Problem(file, location.line, location.column, field_name(path),
                                       errors.redact_urls(message)))
    return problem


def read(data: bytes, *, file: str) -> Unchecked:
    """Read a manifest's bytes: ManifestError if they are not a YAML mapping at all, else
    everything `check` needs, with the manifest they would give (see Unchecked.early)."""
    problems: list[errors.Problem] = []
    problem = _problem_adder(file, problems)
    start = model.Location(1, 1)
    if len(data) > MAX_MANIFEST_BYTES:
        problem(start, (), f"the manifest is larger than {MAX_MANIFEST_BYTES:,} bytes, the "
                          "limit (is this the right file?)")
        raise errors.ManifestError(problems)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        problem(model.Location(line, column), (),
                f"the manifest is not UTF-8 text (byte 0x{data[exc.start]:02x})")
        raise errors.ManifestError(problems) from None

    document = _load_yaml(text, problem)
    if document is None:
        raise errors.ManifestError(problems)
    if not isinstance(document.data, dict):
        kind = schemacheck.type_name(document.data)
        problem(start, (), f"the manifest must be a mapping with `version` and `layers`, "
                           f"not {kind}")
        raise errors.ManifestError(problems)
    leading = tuple(problems)
    trailing: list[errors.Problem] = []
    add_trailing = _problem_adder(file, trailing)
    for path, message in _semantic_problems(document.data):
        add_trailing(_nearest(document.keys, path, document=document), path, message)
    for path in _credential_paths(document.data):
        add_trailing(document.values.get(path, start), path, CREDENTIALS_IN_URL)
        document.invalid.add(path)  # the schema's words would quote the value
    refs = _content_refs(document)
    sha256 = hashlib.sha256(data).hexdigest()
    early = None
    if not leading and not trailing:
        try:
            early = _build(document, file=file, content_refs=refs, sha256=sha256)
        except Exception:  # data the schema pass would refuse can break the build anywhere
            early = None
    return Unchecked(file=file, sha256=sha256, document=document, leading=leading,
                     trailing=tuple(trailing), content_refs=refs, early=early)


def check(unchecked: Unchecked, *, schema: Mapping[str, Any],
          schema_checked: bool = False) -> model.Manifest:
    """The JSON Schema pass over a manifest read by `read`, then every problem found at
    once (ManifestError), or the manifest.

    `schema_checked`: the caller knows that these very bytes passed this very schema before
    (workspace keeps that record); the JSON Schema pass, the one that needs jsonschema (~50 ms
    to import), is skipped and every other rule still runs. Validation is a pure function of
    the bytes and the schema, so a record of both cannot let a mistake through."""
    document = unchecked.document
    problems = list(unchecked.leading)
    problem = _problem_adder(unchecked.file, problems)
    for error in () if schema_checked else schemacheck.schema_errors(document.data, schema):
        for path, message, at_key in schemacheck.explain(error, document.data):
            if path in document.invalid:
                continue
            table = document.keys if at_key else document.values
            problem(_nearest(table, path, document=document), path, message)
    problems.extend(unchecked.trailing)
    if problems:
        raise errors.ManifestError(problems, content_refs=unchecked.content_refs)
    if unchecked.early is not None:
        return unchecked.early
    return _build(document, file=unchecked.file, content_refs=unchecked.content_refs,
                  sha256=unchecked.sha256)


def parse(data: bytes, *, file: str, schema: Mapping[str, Any],
          schema_checked: bool = False) -> model.Manifest:
    """Parse and validate a manifest (`read`, then `check`); raise ManifestError listing
    every problem found."""
    return check(read(data, file=file), schema=schema, schema_checked=schema_checked)


def _content_refs(document: _Document) -> tuple[model.ContentRef, ...]:
    """The local paths named by every layer whose `content` is a mapping with one string
    `path` or `zip`, whatever else is wrong in the manifest."""
    layers = document.data.get("layers")
    refs: list[model.ContentRef] = []
    for key, layer in (layers.items() if isinstance(layers, dict) else ()):
        content = layer.get("content") if isinstance(layer, dict) else None
        if not isinstance(content, dict):
            continue
        named = [source for source in ("path", "zip", "lock")
                 if isinstance(content.get(source), str)]
        if len(named) != 1 or "s3" in content:
            continue
        field_path: schemacheck.Path = ("layers", key, "content", named[0])
        refs.append(model.ContentRef(field_path=field_path, kind=model.SourceKind(named[0]),
                                     relpath=content[named[0]],
                                     location=document.values[field_path]))
        folders = content.get("find_links") if named == ["lock"] else None
        # A lock's wheel folders are content too: each must be a folder in the repository.
        for index, folder in enumerate(folders if isinstance(folders, list) else []):
            folder_path: schemacheck.Path = ("layers", key, "content", "find_links", index)
            if isinstance(folder, str) and folder_path in document.values:
                refs.append(model.ContentRef(field_path=folder_path,
                                             kind=model.SourceKind.PATH, relpath=folder,
                                             location=document.values[folder_path]))
    return tuple(refs)


def _load_yaml(text: str, problem: Any) -> _Document | None:
    """Compose the YAML (no object construction) and convert it with locations; None on error."""
    try:
        root = yaml.compose(text, Loader=_DepthLimitedLoader)
    except _TooDeep as exc:
        problem(model.Location(exc.mark.line + 1, exc.mark.column + 1), (), str(exc))
        return None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        location = model.Location(mark.line + 1, mark.column + 1) if mark else model.Location(1, 1)
        reason = " ".join(part for part in (exc.context, exc.problem) if part)
        problem(location, (), f"invalid YAML: {reason}")
        return None
    except yaml.YAMLError as exc:
        problem(model.Location(1, 1), (), f"invalid YAML: {exc}")
        return None
    if root is None:
        problem(model.Location(1, 1), (), "the manifest is empty; it needs `version: 1` and "
                                          "`layers:`")
        return None
    document = _Document(data=None)
    found: list[tuple[model.Location, schemacheck.Path, str]] = []
    try:
        document.data = _convert(root, (), document=document, found=found, budget=[MAX_NODES])
    except _TooLarge as exc:
        problem(model.Location(1, 1), (), str(exc))
        return None
    for location, path, message in found:
        problem(location, path, message)
    return document


# The tags plain YAML data resolves to; anything else (`!foo`, `!!python/...`) is refused.
_PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in (
    "str", "int", "float", "bool", "null", "seq", "map", "timestamp"))


def _convert(
    node: yaml.Node, path: schemacheck.Path, *, document: _Document,
    found: list[tuple[model.Location, schemacheck.Path, str]], budget: list[int],
) -> Any:
    """Plain data from a composed node, recording locations and the problems `found`
    (duplicate or non-scalar keys, merge keys, unsupported tags)."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLarge(f"the manifest expands to more than {MAX_NODES:,} values "
                        "(through YAML aliases?)")
    if len(path) > MAX_DEPTH:
        raise _TooLarge(f"the manifest nests deeper than {MAX_DEPTH} levels")
    location = model.Location(node.start_mark.line + 1, node.start_mark.column + 1)
    document.values.setdefault(path, location)
    if node.tag not in _PLAIN_TAGS:
        found.append((location, path, f"the YAML tag {node.tag!r} is not supported; write "
                                      "plain values"))
        document.invalid.add(path)
        return None
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_location = model.Location(key_node.start_mark.line + 1,
                                          key_node.start_mark.column + 1)
            if not isinstance(key_node, yaml.ScalarNode):
                found.append((key_location, path, "a key must be a plain name, not a list or "
                                                  "a mapping"))
                continue
            key = str(key_node.value)
            key_path = (*path, key)
            if key_node.tag == "tag:yaml.org,2002:merge":
                found.append((key_location, key_path, "YAML merge keys (<<) are not supported; "
                                                      "use `defaults:` for shared settings"))
                continue
            if key in result:
                first = document.keys[key_path]
                found.append((key_location, key_path,
                              f"duplicate key '{key}' (first defined at line {first.line})"))
                continue
            document.keys[key_path] = key_location
            result[key] = _convert(value_node, key_path, document=document, found=found,
                                   budget=budget)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(item, (*path, index), document=document, found=found, budget=budget)
            for index, item in enumerate(node.value)
        ]
    try:
        return yaml.constructor.SafeConstructor().construct_object(node)
    except (yaml.YAMLError, ValueError) as exc:  # e.g. `!!int x`
        kind = node.tag.rsplit(":", 1)[-1]
        found.append((location, path, f"{node.value!r} is not a valid {kind} ({exc})"))
        document.invalid.add(path)
        return None


def _nearest(
    table: dict[schemacheck.Path, model.Location], path: schemacheck.Path, *, document: _Document
) -> model.Location:
    """The location of `path` in `table`, else of it or its nearest ancestor as a value."""
    if path in table:
        return table[path]
    if path in document.values:
        return document.values[path]
    while path:
        path = path[:-1]
        if path in document.values:
            return document.values[path]
    return model.Location(1, 1)


def parse_layer_arn(key: str) -> re.Match[str] | None:
    """Match a layer ARN (`arn:aws:lambda:REGION:ACCOUNT:layer:NAME`), or None."""
    return LAYER_ARN.match(key)


NO_ARTIFACT_BUCKET = ("`upload: s3` uploads through the artifact bucket, and the manifest names "
                      "no `artifact_bucket`")


CREDENTIALS_IN_URL = (
    "must not hold credentials (`user:password@`): name the bucket alone; reconcile takes "
    "credentials from the AWS chain only (AWS_PROFILE or --profile, the environment)")


def _credential_paths(data: dict[str, Any]) -> Iterator[schemacheck.Path]:
    """The `state` and `artifact_bucket` values that carry a URL's userinfo: refused, and
    never quoted (an S3 bucket name holds no `@`, so any `@` before the key is one)."""
    state = data.get("state")
    if isinstance(state, str):
        authority = state.removeprefix("s3://").partition("/")[0]
        if "@" in authority:
            yield ("state",)
    buckets = data.get("artifact_bucket")
    if isinstance(buckets, str) and "@" in buckets:
        yield ("artifact_bucket",)
    if isinstance(buckets, dict):
        for region, bucket in buckets.items():
            if isinstance(bucket, str) and "@" in bucket:
                yield ("artifact_bucket", region)


def _semantic_problems(data: dict[str, Any]) -> Iterator[tuple[schemacheck.Path, str]]:
    """The rules the schema cannot express, for the parts whose shape is right."""
    if isinstance(data.get("version"), float) and data["version"] == schemacheck.SUPPORTED_VERSION:
        yield (("version",), f"write `version: {schemacheck.SUPPORTED_VERSION}` (a whole number)")
    layers = data.get("layers")
    if not isinstance(layers, dict):
        return
    names: dict[str, str] = {}
    defaults = data.get("defaults") if isinstance(data.get("defaults"), dict) else {}
    if defaults and defaults.get("upload") == "s3" and not data.get("artifact_bucket"):
        yield (("defaults", "upload"), NO_ARTIFACT_BUCKET)
    for key, layer in layers.items():
        name = key
        if key.startswith("arn:"):
            match = parse_layer_arn(key)
            if match is None:
                continue  # the schema's name pattern has reported it
            name = match["name"]
            regions = data.get("region")
            region_list = [regions] if isinstance(regions, str) else regions
            if isinstance(region_list, list) and match["region"] not in region_list:
                listed = ", ".join(map(str, region_list))
                yield (("layers", key), f"the ARN is in region {match['region']}, which is not "
                                        f"among the manifest's regions ({listed})")
        if name in names:
            yield (("layers", key), f"names the same Lambda layer '{name}' as "
                                    f"layers.{names[name]}")
        names[name] = key
        if not isinstance(layer, dict):
            continue
        if layer.get("upload") == "s3" and not data.get("artifact_bucket"):
            yield (("layers", key, "upload"), NO_ARTIFACT_BUCKET)
        for list_field in ("compatible_runtimes", "compatible_architectures"):
            values = layer.get(list_field, defaults.get(list_field) if defaults else None)
            if isinstance(values, list):
                seen: set[str] = set()
                for index, value in enumerate(values):
                    if not isinstance(value, str):
                        continue  # the schema names a value of the wrong type
                    if value in seen and list_field in layer:
                        yield (("layers", key, list_field, index), f"'{value}' is listed twice")
                    seen.add(value)
        content = layer.get("content")
        if not isinstance(content, dict):
            continue
        sources = [source for source in CONTENT_SOURCES if source in content]
        if len(sources) != 1:
            found = f" (found {', '.join(sources)})" if sources else ""
            yield (("layers", key, "content"),
                   f"needs exactly one of path, zip, s3 or lock{found}")
            continue
        listed_regions = data.get("region")
        if sources == ["s3"] and isinstance(listed_regions, list) and len(listed_regions) > 1:
            yield (("layers", key, "content", "s3"),
                   f"Lambda reads an S3 object from its own region only, and this manifest "
                   f"lists {len(listed_regions)} regions: a layer with content.s3 is published "
                   "to one region (use `path` or `zip` with an artifact_bucket map for many)")
        for option, owners in _CONTENT_OPTIONS.items():
            if option in content and not set(owners) & set(sources):
                yield (("layers", key, "content", option),
                       f"only applies to a {' or '.join(f'`{owner}`' for owner in owners)} "
                       "source")
        prefix = content.get("prefix")
        if isinstance(prefix, str) and (
                prefix.startswith("/") or "\\" in prefix
                or any(part in (".", "..") for part in prefix.strip("/").split("/"))):
            yield (("layers", key, "content", "prefix"),
                   "must be a relative folder like `python`, without '.', '..' or '\\'")
    yield from _consumer_problems(data, layers=layers, defaults=defaults or {})
    for list_field in ("compatible_runtimes", "compatible_architectures"):
        values = defaults.get(list_field) if defaults else None
        if isinstance(values, list):
            seen_default: set[str] = set()
            for index, value in enumerate(values):
                if not isinstance(value, str):
                    continue  # the schema names a value of the wrong type
                if value in seen_default:
                    yield (("defaults", list_field, index), f"'{value}' is listed twice")
                seen_default.add(value)


def _consumer_problems(data: dict[str, Any], *, layers: dict[str, Any],
                       defaults: dict[str, Any]) -> Iterator[tuple[schemacheck.Path, str]]:
    """The rules of `consumers` and `parameter` past the schema: named functions, at least
    one function or tag, valid parameter names once `{layer}` is replaced, and no parameter
    named by two layers."""
    for owner, holder in (("defaults",), defaults), *((("layers", key), layer)
                                                        for key, layer in layers.items()):
        consumers = holder.get("consumers") if isinstance(holder, dict) else None
        if not isinstance(consumers, dict):
            continue
        where = (*owner, "consumers")
        if "functions" not in consumers and "tags" not in consumers:
            yield (where, "names no `functions` and no `tags`: list the functions that use "
                          "the layer, or the tags that find them")
        functions = consumers.get("functions")
        seen: set[str] = set()
        for index, reference in enumerate(functions if isinstance(functions, list) else ()):
            if not isinstance(reference, str):
                continue  # the schema names a value of the wrong type
            if reference in seen:
                yield ((*where, "functions", index), f"'{reference}' is listed twice")
            seen.add(reference)
            problem = consumerspec.function_problem(reference, regions=data.get("region"))
            if problem:
                yield ((*where, "functions", index), problem)
    named: dict[str, str] = {}
    for key, layer in layers.items():
        if not isinstance(layer, dict):
            continue
        own = "parameter" in layer
        template = layer["parameter"] if own else defaults.get("parameter")
        if not isinstance(template, str) or not template:
            continue  # the schema names a value of the wrong type, or an empty one
        match = parse_layer_arn(key)
        name = consumerspec.parameter_name(template, layer_name=match["name"] if match else key)
        field: schemacheck.Path = ("layers", key, "parameter") if own else (
            "defaults", "parameter")
        for_layer = "" if own else f"for layer '{key}': "
        problem = consumerspec.parameter_problem(name)
        if problem:
            yield (field, for_layer + problem)
        elif name in named:
            yield (field, f"{for_layer}names the parameter '{name}', as layer "
                          f"'{named[name]}' does: each layer needs its own (use "
                          f"`{consumerspec.LAYER_PLACEHOLDER}`)")
        named.setdefault(name, key)


def _parameter_of(template: Any, *, layer_name: str) -> str | None:
    """The layer's parameter name, `{layer}` replaced (None: it has none)."""
    if template is None:
        return None
    return consumerspec.parameter_name(template, layer_name=layer_name)


def _grants(raw: Any) -> tuple[model.Grant, ...] | None:
    """The `share` list as grants (None: the layer does not manage its grants). An
    `account: '*'` is the same as `public: true`."""
    if raw is None:
        return None
    grants: set[model.Grant] = set()
    for entry in raw:
        for kind, principal in entry.items():
            if kind == "public" or (kind == "account" and principal == "*"):
                grants.add(model.Grant(kind="public", principal="*"))
            else:
                grants.add(model.Grant(kind=kind, principal=str(principal)))
    return tuple(sorted(grants, key=lambda grant: (grant.kind, grant.principal)))


def _build(document: _Document, *, file: str, content_refs: tuple[model.ContentRef, ...],
           sha256: str) -> model.Manifest:
    """The validated data as a model.Manifest (defaults merged, layers sorted by key)."""
    data = document.data
    region = data.get("region")
    regions = (region,) if isinstance(region, str) else tuple(region or ())
    defaults: dict[str, Any] = data.get("defaults") or {}
    layers = []
    for key, layer in sorted(data["layers"].items()):
        merged = {name: layer.get(name, defaults.get(name)) for name in SETTINGS_FIELDS}
        content = layer["content"]
        kind = next(model.SourceKind(source) for source in CONTENT_SOURCES if source in content)
        s3 = content.get("s3") or {}
        built = kind is model.SourceKind.LOCK
        match = parse_layer_arn(key)
        layers.append(model.LayerSpec(
            key=key,
            name=match["name"] if match else key,
            arn_region=match["region"] if match else None,
            arn_account=match["account"] if match else None,
            settings=model.Settings.normalised(**merged),
            content=model.ContentSpec(
                kind=kind,
                path=content.get("path"),
                prefix=content.get("prefix", "python" if built else "").strip("/"),
                exclude=tuple(content.get("exclude", ())),
                zip=content.get("zip"),
                normalize=bool(content.get("normalize", False)),
                s3_bucket=s3.get("bucket"),
                s3_key=s3.get("key"),
                s3_object_version=s3.get("object_version"),
                lock=content.get("lock"),
                find_links=tuple(content.get("find_links", ())),
                index_url=content.get("index_url"),
                exclude_packages=tuple(content.get("exclude_packages", ())),
                build_runtimes=tuple(merged["compatible_runtimes"] or ()) if built else (),
                build_architectures=(tuple(merged["compatible_architectures"] or ())
                                     if built else ()),
            ),
            location=document.keys[("layers", key)],
            upload=layer.get("upload", defaults.get("upload")),
            share=_grants(layer["share"] if "share" in layer else defaults.get("share")),
            retain=layer.get("retain", defaults.get("retain")),
            align_versions=bool(layer.get("align_versions", defaults.get(
                "align_versions", data.get("align_versions", False)))),
            check_binaries=bool(layer.get("check_binaries", defaults.get(
                "check_binaries", True))),
            consumers=consumerspec.consumers(layer.get("consumers", defaults.get("consumers"))),
            parameter=_parameter_of(layer.get("parameter", defaults.get("parameter")),
                                    layer_name=match["name"] if match else key),
        ))
    locations = dict(document.values)
    buckets = data.get("artifact_bucket")
    return model.Manifest(
        file=file,
        version=data["version"],
        regions=regions,
        layers=tuple(layers),
        artifact_bucket=buckets if isinstance(buckets, str) else None,
        artifact_buckets=tuple(sorted(buckets.items())) if isinstance(buckets, dict) else (),
        state=data.get("state"),
        locations=locations,
        content_refs=content_refs,
        sha256=sha256,
    )
