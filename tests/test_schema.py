"""Tests of the manifest JSON Schema: generated from, and in step with, the installed botocore's
Lambda model; a valid 2020-12 schema; and the example manifest validates against it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import botocore.session
import jsonschema
import pytest
import yaml

from reconciler import workspace

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "layers.yaml.example"
SCHEMA_COMMENT = "# yaml-language-server: $schema="


def publish_layer_version_members() -> dict[str, Any]:
    """botocore's input members of Lambda's PublishLayerVersion."""
    service = botocore.session.get_session().get_service_model("lambda")
    input_shape = service.operation_model("PublishLayerVersion").input_shape
    assert input_shape is not None, "PublishLayerVersion takes input"
    members: dict[str, Any] = dict(input_shape.members)
    return members


def settings_schemas(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The two places layer settings are declared: under `defaults` and under each layer."""
    properties = schema["properties"]
    return {
        "defaults": properties["defaults"]["properties"],
        "layer": properties["layers"]["additionalProperties"]["properties"],
    }


def test_checked_in_schema_matches_installed_botocore() -> None:
    """`tools/gen_schema.py --check` exits 0: the checked-in schema is what botocore gives."""
    result = subprocess.run(
        [sys.executable, "tools/gen_schema.py", "--check"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("where", ["defaults", "layer"])
def test_schema_limits_equal_botocore_model(where: str) -> None:
    """Runtimes, architectures and length limits in the shipped schema equal botocore's model."""
    members = publish_layer_version_members()
    settings = settings_schemas(workspace.load_schema())[where]
    runtimes = members["CompatibleRuntimes"]
    architectures = members["CompatibleArchitectures"]
    assert set(settings["compatible_runtimes"]["items"]["enum"]) == set(runtimes.member.enum)
    assert len(settings["compatible_runtimes"]["items"]["enum"]) == len(runtimes.member.enum)
    assert settings["compatible_runtimes"]["maxItems"] == runtimes.metadata["max"]
    assert set(settings["compatible_architectures"]["items"]["enum"]) == set(
        architectures.member.enum
    )
    assert settings["compatible_architectures"]["maxItems"] == architectures.metadata["max"]
    assert settings["description"]["maxLength"] == members["Description"].metadata["max"]
    assert settings["license_info"]["maxLength"] == members["LicenseInfo"].metadata["max"]


def test_layer_name_rule_equals_botocore_model() -> None:
    """The layer key's length and pattern are botocore's LayerName limits, fully anchored."""
    name = publish_layer_version_members()["LayerName"].metadata
    names = workspace.load_schema()["properties"]["layers"]["propertyNames"]
    assert names["maxLength"] == name["max"]
    assert names["minLength"] == name["min"]
    assert names["pattern"] == "^(?:" + name["pattern"] + ")$"


def test_schema_is_a_valid_2020_12_schema() -> None:
    """The shipped schema is itself valid JSON Schema draft 2020-12 and declares that draft."""
    schema = workspace.load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_example_manifest_validates() -> None:
    """layers.yaml.example at the repo root passes full validation, the disk checks included."""
    parsed = workspace.load_manifest(workspace.Workspace.for_manifest(EXAMPLE))
    assert parsed.layers


def test_example_manifest_points_at_an_existing_schema() -> None:
    """The example's first line is a `$schema` comment naming the shipped schema file."""
    first_line = EXAMPLE.read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith(SCHEMA_COMMENT), first_line
    target = (EXAMPLE.parent / first_line.removeprefix(SCHEMA_COMMENT).strip()).resolve()
    assert target.is_file(), target
    schema = json.loads(target.read_text(encoding="utf-8"))
    assert schema == workspace.load_schema()
    document = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(document)
