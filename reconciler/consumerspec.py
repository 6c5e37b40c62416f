"""A layer's consumers and parameter as the manifest states them: what makes a function
reference or an SSM parameter name acceptable (the rules past the schema, which botocore's
models cannot express), `{layer}` replaced, and the `consumers` mapping as a model value.

Pure: strings and plain data in, messages and values out; `manifest` locates the problems.
"""

from __future__ import annotations

import re
from typing import Any

from reconciler import model

# SSM's parameter names (its documentation; the model gives only a length): letters, digits,
# `_ . -`, and `/` between the levels of a hierarchy, which then begins with `/`; at most 15
# levels; no name may begin with `aws` or `ssm`, whatever their case.
PARAMETER_CHARACTERS = re.compile(r"^[a-zA-Z0-9_.\-/]+$")
PARAMETER_MAX_LEVELS = 15
LAYER_PLACEHOLDER = "{layer}"
# Lambda's limit on a function's own name (an ARN may be longer: the schema says how long).
FUNCTION_NAME_MAX = 64


def parameter_name(template: str, *, layer_name: str) -> str:
    """The parameter a layer's `parameter` names: `{layer}` replaced by the layer's name."""
    return template.replace(LAYER_PLACEHOLDER, layer_name)


def parameter_problem(name: str) -> str | None:
    """Why `name` (placeholder replaced) cannot be an SSM parameter's name, or None."""
    if "{" in name or "}" in name:
        return f"only `{LAYER_PLACEHOLDER}` may be replaced in a parameter name"
    if not PARAMETER_CHARACTERS.match(name):
        return (f"'{name}' is not an SSM parameter name: use letters, digits, `_`, `.`, `-`, "
                "and `/` between levels")
    if "/" in name and (not name.startswith("/") or name.endswith("/") or "//" in name):
        return (f"'{name}' is not an SSM parameter name: a hierarchy begins with `/` and "
                "has a name at every level, like /layers/shared-utils/latest")
    if name.lstrip("/").lower().startswith(("aws", "ssm")):
        return f"'{name}': SSM reserves names that begin with `aws` or `ssm`"
    if name.count("/") > PARAMETER_MAX_LEVELS:
        return f"'{name}' has more than {PARAMETER_MAX_LEVELS} levels, SSM's limit"
    return None


def function_problem(reference: str, *, regions: Any) -> str | None:
    """Why a consumer's function `reference` (a name, ARN or partial ARN the schema let
    through) cannot be one, or None."""
    parts = reference.split(":")
    if "function" in parts:
        at = parts.index("function")
        if len(parts) > at + 2:
            return (f"'{reference}' names a version or alias: name the function (an update "
                    "changes its $LATEST)")
        region = parts[3] if parts[0] == "arn" and len(parts) > 3 else None
        listed = [regions] if isinstance(regions, str) else regions
        if region and isinstance(listed, list) and region not in listed:
            return (f"the ARN is in region {region}, which is not among the manifest's "
                    f"regions ({', '.join(map(str, listed))})")
        return None
    if len(parts) > 1:
        return (f"'{reference}' names a version or alias: name the function (an update changes "
                "its $LATEST)")
    if len(reference) > FUNCTION_NAME_MAX:
        return f"a function's name is at most {FUNCTION_NAME_MAX} characters"
    return None


def consumers(raw: Any) -> model.Consumers | None:
    """A `consumers` mapping as the model's value (None: the layer has none)."""
    if raw is None:
        return None
    return model.Consumers(functions=tuple(raw.get("functions", ())),
                           tags=tuple(sorted((str(key), str(value))
                                             for key, value in raw.get("tags", {}).items())),
                           allow_managed=bool(raw.get("allow_managed", False)))
