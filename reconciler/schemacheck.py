"""The manifest's JSON Schema pass, in words a person acts on: each jsonschema error explained at
the field it concerns (an unknown key with its nearest known one, a wrong type named as YAML
names it, a pattern said as what it allows), never jsonschema's own wording. Pure: data and
the schema in, located explanations out; manifest places them in the file."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where it is used (schema_errors): a valid manifest never needs it
    import jsonschema

SUPPORTED_VERSION = 1


Path = tuple[str | int, ...]


def schema_errors(data: Any, schema: Mapping[str, Any]) -> Iterator[jsonschema.ValidationError]:
    import jsonschema  # here, not at the top: a manifest known to be valid never needs it

    validator = jsonschema.Draft202012Validator(schema)
    yield from sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])


_TYPE_NAMES = {
    "string": "a string", "array": "a list", "object": "a mapping", "integer": "an integer",
    "boolean": "true or false", "number": "a number", "null": "null",
}


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "an empty value"
    return f"a {type(value).__name__}"


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def explain(error: jsonschema.ValidationError, data: Any) -> list[tuple[Path, str, bool]]:
    """Turn one jsonschema error into (path, message, located-at-the-key) triples."""
    path: Path = tuple(error.absolute_path)
    leaf = path[-1] if path else None
    validator = error.validator
    expected: Any = error.validator_value
    instance: Any = error.instance
    schema: Any = error.schema
    in_property_names = "propertyNames" in error.schema_path
    if in_property_names:
        name = str(instance)
        if re.fullmatch(r"[a-zA-Z0-9_-]+", name) and len(name) > 140:
            message = f"layer name is {len(name)} characters; the limit is 140"
        else:
            message = (f"layer name '{name}' must be 1-140 letters, digits, '-' or '_', "
                       "or a layer ARN (arn:aws:lambda:REGION:ACCOUNT:layer:NAME)")
        return [((*path, name), message, True)]
    if validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        known = set(allowed)
        unexpected = sorted(key for key in instance if key not in known)
        return [((*path, key),
                 f"unknown key{_suggest(key, allowed) or ' (allowed: ' + ', '.join(allowed) + ')'}",
                 True)
                for key in unexpected]
    if validator == "required":
        missing = [key for key in expected if key not in instance]
        return [((*path, key), "is required but missing", False) for key in missing]
    if validator == "type":
        return [(path, f"expected {_TYPE_NAMES.get(str(expected), str(expected))}, "
                       f"got {type_name(instance)}", False)]
    if validator == "const" and path == ("version",):
        return [(path, f"unsupported manifest version {instance!r}; this reconcile reads "
                       f"version {SUPPORTED_VERSION}", False)]
    if validator == "enum":
        choices = [str(choice) for choice in expected]
        if isinstance(leaf, int) and len(path) >= 2 and path[-2] == "compatible_runtimes":
            hint = _suggest(str(instance), choices)
            return [(path, f"'{instance}' is not a Lambda runtime{hint}", False)]
        return [(path, f"{instance!r} is not one of: {', '.join(choices)}", False)]
    if validator == "maxItems":
        return [(path, f"has {len(instance)} items; at most {expected} allowed", False)]
    if validator == "minItems":
        return [(path, f"needs at least {expected} item(s)", False)]
    if validator == "maxLength":
        return [(path, f"is {len(instance)} characters; at most {expected} allowed", False)]
    if validator == "minLength":
        return [(path, "must not be empty" if expected == 1
                 else f"must be at least {expected} characters", False)]
    if validator == "minProperties" and path == ("layers",):
        return [(path, "declares no layers; add at least one", False)]
    if validator in ("minProperties", "maxProperties") and "share" in path:
        return [(path, "a grant names exactly one of `account` or `organization`", False)]
    if validator == "minimum":
        return [(path, f"must be at least {expected}", False)]
    if validator == "uniqueItems":
        return [(path, "lists the same value twice", False)]
    if validator == "oneOf" and path == ("region",) and isinstance(instance, (str, list)):
        # Explain the branch the value was meant for (a name, or a list of names), not the
        # oneOf as a whole: point at the bad item, or say that the list repeats a region.
        branch = 1 if isinstance(instance, list) else 0
        return [explained
                for sub_error in error.context or ()
                if sub_error.relative_schema_path and sub_error.relative_schema_path[0] == branch
                for explained in explain(sub_error, data)]
    if validator == "pattern" or (validator == "oneOf" and leaf == "region"):
        return [(path, _pattern_message(path, instance), False)]
    if path and path[0] == "region":
        return [(path, _pattern_message(("region",), instance), False)]
    return [(path, error.message, False)]


def _pattern_message(path: Path, value: Any) -> str:
    if "region" in path:
        if not isinstance(value, (str, list)):
            return f"expected a region name or a list of them, got {type_name(value)}"
        return f"'{value}' is not an AWS region name like 'us-east-1'"
    if "account" in path:
        return f"'{value}' is not a 12-digit AWS account ID (or '*' for everyone)"
    if "organization" in path:
        return f"'{value}' is not an AWS Organizations ID like 'o-a1b2c3d4e5'"
    if "state" in path:
        return f"'{value}' is not an s3://BUCKET/PREFIX location"
    return f"{value!r} is not of the expected form"
