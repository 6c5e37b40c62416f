"""Generate schemas/layers.schema.json from botocore's Lambda and SSM service models.

The API limits in the manifest schema (layer name pattern and length, the runtime list and
its maximum, architectures, description and license lengths, a consumer function's name or
ARN, tag key and value lengths, an SSM parameter name's length) are read from the installed
botocore, never typed by hand, so the schema cannot lag AWS. `--check` exits 1 when the
checked-in schema differs from what the installed botocore gives (the test suite runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import botocore.session

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "reconciler" / "schemas" / "layers.schema.json"
SCHEMA_ID = "https://github.com/reconcile-layers/reconcile/schemas/layers.schema.json"


def api_limits() -> dict[str, Any]:
    """The PublishLayerVersion parameter limits from botocore's Lambda model, and those of a
    layer's consumers (UpdateFunctionConfiguration, TagResource, SSM's PutParameter)."""
    session = botocore.session.get_session()
    model = session.get_service_model("lambda")
    input_shape = model.operation_model("PublishLayerVersion").input_shape
    assert input_shape is not None
    members: dict[str, Any] = dict(input_shape.members)
    name = members["LayerName"].metadata
    runtimes = members["CompatibleRuntimes"]
    architectures = members["CompatibleArchitectures"]
    return {
        "layer_name_pattern": "^(?:" + name["pattern"] + ")$",
        "layer_name_max": name["max"],
        "runtimes": sorted(runtimes.member.enum),
        "runtimes_max": runtimes.metadata["max"],
        "architectures": sorted(architectures.member.enum),
        "architectures_max": architectures.metadata["max"],
        "description_max": members["Description"].metadata["max"],
        "license_max": members["LicenseInfo"].metadata["max"],
        **consumer_limits(session),
    }


def consumer_limits(session: botocore.session.Session) -> dict[str, Any]:
    """A function name as UpdateFunctionConfiguration takes it (name, ARN or partial ARN),
    TagResource's tag key and value lengths (their patterns use \\p{L} classes that JSON
    Schema's regular expressions do not have), and PutParameter's name length (SSM's model
    gives no pattern: the rules past it are manifest's)."""
    lambda_model = session.get_service_model("lambda")
    update = lambda_model.operation_model("UpdateFunctionConfiguration").input_shape
    tag = lambda_model.operation_model("TagResource").input_shape
    put = session.get_service_model("ssm").operation_model("PutParameter").input_shape
    assert update is not None and tag is not None and put is not None
    function = update.members["FunctionName"].metadata
    tags: Any = tag.members["Tags"]
    parameter = put.members["Name"].metadata
    return {
        "function_pattern": "^(?:" + function["pattern"] + ")$",
        "function_max": function["max"],
        "tag_key_max": tags.key.metadata["max"],
        "tag_value_max": tags.value.metadata["max"],
        "parameter_min": parameter["min"],
        "parameter_max": parameter["max"],
    }


def build_schema(limits: dict[str, Any]) -> dict[str, Any]:
    """The manifest schema (JSON Schema 2020-12) with `limits` filled in."""
    runtimes = {
        "type": "array",
        "items": {"enum": limits["runtimes"]},
        "maxItems": limits["runtimes_max"],
        "description": "Lambda runtimes the layer is compatible with.",
    }
    architectures = {
        "type": "array",
        "items": {"enum": limits["architectures"]},
        "maxItems": limits["architectures_max"],
        "description": "Instruction set architectures the layer is compatible with.",
    }
    description = {"type": "string", "maxLength": limits["description_max"]}
    license_info = {"type": "string", "maxLength": limits["license_max"]}
    region = {"type": "string", "pattern": "^[a-z]{2}(-[a-z]+)+-\\d$"}
    bucket = {"type": "string", "minLength": 3, "maxLength": 63}
    settings = {
        "description": description,
        "compatible_runtimes": runtimes,
        "compatible_architectures": architectures,
        "license_info": license_info,
    }
    content = {
        "type": "object",
        "description": "Exactly one of path, zip, s3 or lock.",
        "additionalProperties": False,
        "properties": {
            "path": {"type": "string", "minLength": 1,
                     "description": "A folder, zipped deterministically by the tool."},
            "prefix": {"type": "string",
                       "description": "Put the folder's files (or a built layer's packages: "
                                      "default `python`) under this folder in the zip."},
            "exclude": {"type": "array", "items": {"type": "string"},
                        "description": "gitignore-style patterns, on top of built-in ones."},
            "zip": {"type": "string", "minLength": 1,
                    "description": "A zip built elsewhere, uploaded byte for byte."},
            "normalize": {"type": "boolean",
                          "description": "Repack the zip by the tool's deterministic rules."},
            "lock": {"type": "string", "minLength": 1,
                     "description": "A pinned, hashed requirements.txt, a pylock.toml or a "
                                    "uv.lock: the tool builds the layer from its wheels."},
            "find_links": {"type": "array", "items": {"type": "string", "minLength": 1},
                           "description": "Folders of wheels, looked in before the index."},
            "index_url": {"type": "string", "pattern": "^https?://",
                          "description": "The package index's simple API (for "
                                         "requirements.txt); default RECONCILE_INDEX_URL, "
                                         "then PIP_INDEX_URL, then PyPI."},
            "exclude_packages": {"type": "array",
                                 "items": {"type": "string", "minLength": 1},
                                 "description": "Packages the runtime provides, left out of "
                                                "the layer."},
            "s3": {
                "type": "object",
                "additionalProperties": False,
                "required": ["bucket", "key"],
                "properties": {
                    "bucket": {"type": "string", "minLength": 3, "maxLength": 63},
                    "key": {"type": "string", "minLength": 1, "maxLength": 1024},
                    "object_version": {"type": "string", "minLength": 1, "maxLength": 1024},
                },
            },
        },
    }
    grant = {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "maxProperties": 1,
        "properties": {
            "account": {"type": "string", "pattern": "^(\\d{12}|\\*)$"},
            "organization": {"type": "string", "pattern": "^o-[a-z0-9]{10,32}$"},
            "public": {"const": True, "description": "Anyone may use each version."},
        },
    }
    sharing = {
        "upload": {"enum": ["s3"],
                   "description": "Always upload through artifact_bucket."},
        "share": {"type": "array", "items": grant,
                  "description": "Who may use each published version (GetLayerVersion)."},
        "retain": {"type": "integer", "minimum": 1,
                   "description": "Keep this many newest versions; apply deletes older ones."},
        "align_versions": {"type": "boolean",
                           "description": "The same version number in every region."},
        "check_binaries": {"type": "boolean",
                           "description": "Check the layer's ELF files against its runtimes "
                                          "and architectures before publishing (default "
                                          "true)."},
    }
    consumers = {
        "consumers": {
            "type": "object",
            "additionalProperties": False,
            "description": "Functions that must use this layer's latest version in every "
                           "region of the layer.",
            "properties": {
                "functions": {
                    "type": "array", "minItems": 1,
                    "items": {"type": "string", "minLength": 1,
                              "maxLength": limits["function_max"],
                              "pattern": limits["function_pattern"]},
                    "description": "Function names (or ARNs), looked up in every region.",
                },
                "tags": {
                    "type": "object", "minProperties": 1,
                    "propertyNames": {"minLength": 1, "maxLength": limits["tag_key_max"]},
                    "additionalProperties": {"type": "string",
                                             "maxLength": limits["tag_value_max"]},
                    "description": "And every function carrying all of these tags.",
                },
                "allow_managed": {
                    "type": "boolean",
                    "description": "Also move functions a CloudFormation stack manages.",
                },
            },
        },
        "parameter": {
            "type": "string", "minLength": limits["parameter_min"],
            "maxLength": limits["parameter_max"],
            "description": "An SSM String parameter holding the latest LayerVersionArn in "
                           "each region; `{layer}` is replaced by the layer's name.",
        },
    }
    layer = {
        "type": "object",
        "additionalProperties": False,
        "required": ["content"],
        "properties": {
            **settings,
            **sharing,
            **consumers,
            "content": content,
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "reconcile manifest (layers.yaml)",
        "description": (
            "Lambda layers to reconcile. The API limits are generated from botocore's "
            "Lambda model by tools/gen_schema.py; do not edit by hand."
        ),
        "type": "object",
        "additionalProperties": False,
        "required": ["version", "layers"],
        "properties": {
            "version": {"const": 1, "description": "The manifest format version."},
            "region": {
                "oneOf": [
                    region,
                    {"type": "array", "items": region, "minItems": 1, "uniqueItems": True},
                ]
            },
            "artifact_bucket": {
                "oneOf": [
                    bucket,
                    {"type": "object", "minProperties": 1, "additionalProperties": bucket,
                     "propertyNames": region},
                ],
                "description": "S3 bucket for uploads too large for a direct upload, or a "
                               "map {region: bucket} (a bucket serves its own region only).",
            },
            "align_versions": sharing["align_versions"],
            "state": {"type": "string", "pattern": "^s3://[^/]+(/.*)?$"},
            "defaults": {
                "type": "object",
                "additionalProperties": False,
                "properties": {**settings, **sharing, **consumers},
            },
            "layers": {
                "type": "object",
                "minProperties": 1,
                "propertyNames": {
                    "minLength": 1,
                    "maxLength": limits["layer_name_max"],
                    "pattern": limits["layer_name_pattern"],
                },
                "additionalProperties": layer,
            },
        },
    }


def render(schema: dict[str, Any]) -> str:
    """Canonical JSON text of the schema."""
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the schema, or with --check compare it with the checked-in one."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    text = render(build_schema(api_limits()))
    if args.check:
        if SCHEMA_PATH.read_text(encoding="utf-8") != text:
            print(f"{SCHEMA_PATH} is out of date: run `make schema`", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
