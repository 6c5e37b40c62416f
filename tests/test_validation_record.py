"""The record of the last manifest that passed the JSON Schema (`.reconcile/manifest-valid`):
it spares a warm run jsonschema's import and pass, and can never let an invalid manifest by."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reconciler import errors, workspace

VALID = ("version: 1\nregion: us-east-1\nlayers:\n  tools:\n"
         "    compatible_runtimes: [python3.12]\n    content: {path: tools}\n")


def _project(folder: Path, text: str = VALID) -> workspace.Workspace:
    (folder / "tools").mkdir(exist_ok=True)
    (folder / "tools" / "a.py").write_text("A = 1\n")
    (folder / "layers.yaml").write_text(text)
    return workspace.Workspace.for_manifest(folder / "layers.yaml")


def test_a_valid_manifest_is_recorded(tmp_path: Path) -> None:
    """A manifest that passes is recorded by a key of its bytes, the schema and the tool."""
    space = _project(tmp_path)
    workspace.load_manifest(space)
    recorded = space.validation_record_path.read_text().strip()
    assert len(recorded) == 64
    (tmp_path / "layers.yaml").write_text(VALID + "# a comment\n")
    workspace.load_manifest(space)
    assert space.validation_record_path.read_text().strip() not in ("", recorded)


def test_an_edit_after_the_record_is_validated_again(tmp_path: Path) -> None:
    """A manifest edited after it was recorded as valid is checked against the schema again:
    a runtime Lambda does not know is still a located error."""
    space = _project(tmp_path)
    workspace.load_manifest(space)
    (tmp_path / "layers.yaml").write_text(VALID.replace("python3.12", "python9.9"))
    with pytest.raises(errors.ManifestError) as raised:
        workspace.load_manifest(space)
    [problem] = raised.value.problems
    assert (problem.line, problem.field) == (5, "layers.tools.compatible_runtimes[0]")


def test_a_forged_record_of_other_bytes_skips_nothing(tmp_path: Path) -> None:
    """A record holding any other key (another manifest's, garbage) does not spare the check."""
    space = _project(tmp_path, VALID.replace("python3.12", "python9.9"))
    space.cache_dir.mkdir()
    space.validation_record_path.write_text("0" * 64 + "\n")
    with pytest.raises(errors.ManifestError):
        workspace.load_manifest(space)
    assert space.validation_record_path.read_text() == "0" * 64 + "\n"


def test_a_recorded_manifest_does_not_import_jsonschema(tmp_path: Path) -> None:
    """The second load of the same manifest, in a fresh interpreter, never imports
    jsonschema; the first does (the record is what spares it)."""
    _project(tmp_path)
    probe = ("import sys; from pathlib import Path; from reconciler import workspace; "
             "space = workspace.Workspace.for_manifest(Path('layers.yaml')); "
             "workspace.load_manifest(space); print('jsonschema' in sys.modules)")
    runs = [subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                           text=True, check=True).stdout.strip() for _ in range(2)]
    assert runs == ["True", "False"]


def test_an_unwritable_cache_folder_only_costs_the_check(tmp_path: Path) -> None:
    """When `.reconcile` cannot be made (a file is in its way), loading still works."""
    space = _project(tmp_path)
    space.cache_dir.write_text("not a folder")
    assert workspace.load_manifest(space).layers[0].key == "tools"
    assert workspace.load_manifest(space).layers[0].key == "tools"
