"""Reading AWS answers: every field read from a Lambda or S3 answer is checked here.

An endpoint that answers what Lambda or S3 never would (an emulator, a proxy, a cut body)
raises BadAnswer naming the field; `failures` turns that into an AwsError naming the call
(for a publish, an unknown outcome). Nothing here calls AWS or imports botocore: it reads
plain dicts, and never lets a KeyError or a TypeError out.
"""

from __future__ import annotations

from typing import Any, TypeVar

from reconciler import model

# What botocore's response parser raises on a body of another shape than its model's (a list
# where an object belongs, `"x"` where a number does, `Infinity` where an integer does, which
# its int() turns into an OverflowError): it parses without catching anything.
PARSER_ERRORS = (TypeError, AttributeError, ValueError, KeyError, IndexError, OverflowError)
_Value = TypeVar("_Value")
_KINDS = {str: "a string", int: "an integer", dict: "an object", list: "a list"}


class BadAnswer(Exception):
    """An answer lacks a field the code reads, or holds it with another type."""


def shown(value: object) -> str:
    """A value from an answer as a message quotes it: its repr, at most a line long."""
    text = repr(value) if not isinstance(value, (dict, list)) else _KINDS[type(value)]
    return text if len(text) <= 80 else text[:77] + "..."


def may(answer: Any, name: str, kind: type[_Value]) -> _Value | None:
    """The field `name` (dotted: `Content.CodeSha256`) of `answer`, None when it is absent;
    BadAnswer when it, or an object on its way, has another type."""
    value = answer
    walked: list[str] = []
    for part in name.split("."):
        if value is None:
            return None
        if not isinstance(value, dict):
            where = ".".join(walked) or "answer"
            raise BadAnswer(f"its {where} is {shown(value)}, not an object")
        value = value.get(part)
        walked.append(part)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadAnswer(f"its {name} is {shown(value)}, not {_KINDS.get(kind, kind.__name__)}")
    return value


def need(answer: Any, name: str, kind: type[_Value]) -> _Value:
    """The field `name` of `answer`; BadAnswer when it is absent or of another type."""
    value = may(answer, name, kind)
    if value is None:
        raise BadAnswer(f"it has no {name}")
    return value


def names(answer: Any, name: str) -> list[str] | None:
    """A list of strings (runtimes, architectures), None when absent."""
    values = may(answer, name, list)
    if values is not None and not all(isinstance(value, str) for value in values):
        raise BadAnswer(f"its {name} holds something other than names")
    return values


def settings(item: Any) -> model.Settings:
    """A layer version's settings as a listing, GetLayerVersion or a publish answers them."""
    return model.Settings.normalised(
        description=may(item, "Description", str),
        compatible_runtimes=names(item, "CompatibleRuntimes"),
        compatible_architectures=names(item, "CompatibleArchitectures"),
        license_info=may(item, "LicenseInfo", str),
    )


def remote_version(item: Any, *, layer_name: str, with_code: bool = False
                   ) -> model.RemoteVersion:
    """A layer version as a listing, GetLayerVersion or a publish answers it: a version
    number of 1 or more, the ARN of that version of `layer_name`, its settings, and with
    `with_code` its Content.CodeSha256 and Content.CodeSize."""
    version = need(item, "Version", int)
    if version < 1:
        raise BadAnswer(f"its Version {version} is not a version number")
    arn = need(item, "LayerVersionArn", str)
    if not arn.endswith(f":layer:{layer_name}:{version}"):
        raise BadAnswer(f"its LayerVersionArn {shown(arn)} is not that of version {version} "
                        f"of layer '{layer_name}'")
    return model.RemoteVersion(
        version=version, layer_version_arn=arn, settings=settings(item),
        code_sha256=need(item, "Content.CodeSha256", str) if with_code else None,
        code_size=need(item, "Content.CodeSize", int) if with_code else None)
