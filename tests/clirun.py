"""Running the installed `reconcile` console script as a subprocess, for the end-to-end tests:
no terminal on stdin, no traceback allowed, and every plan document it prints checked against
the shipped plan schema."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import boto3
import jsonschema

RECONCILE = shutil.which("reconcile", path=str(Path(sys.executable).parent))
PLAN_SCHEMA = json.loads(resources.files("reconciler").joinpath("schemas/plan.schema.json")
                         .read_text("utf-8"))


def run(cwd: Path, *args: str, stdin: int | None = subprocess.DEVNULL,
        env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI (no terminal on stdin unless given one)."""
    assert RECONCILE, "the reconcile console script is not installed next to this Python"
    result = subprocess.run([RECONCILE, *args], cwd=cwd, stdin=stdin, capture_output=True,
                            text=True, env=env or dict(os.environ), timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def valid_plan(document: Any) -> dict[str, Any]:
    """`document`, after checking it against schemas/plan.schema.json."""
    jsonschema.Draft202012Validator(PLAN_SCHEMA).validate(document)
    assert isinstance(document, dict)
    return document


def plan_json(cwd: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`plan --format json` parsed and schema-checked; stdout must be the document alone."""
    result = run(cwd, "plan", "--format", "json", *args, env=env)
    assert result.returncode == 0, result.stderr
    return valid_plan(json.loads(result.stdout))


def versions(layer: str, region: str | None = None) -> list[int]:
    """The versions the server behind AWS_ENDPOINT_URL holds for `layer`."""
    client = boto3.client("lambda", region_name=region)
    listed = client.list_layer_versions(LayerName=layer)["LayerVersions"]
    return sorted(version["Version"] for version in listed)
