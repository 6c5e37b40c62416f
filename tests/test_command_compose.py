"""The command layer's seam: commands take their parts from `command.compose`, and a test can
give them others (`compose.overridden`), so that plan and apply run in process against the
in-memory Lambda (tests/fakes.py) with no AWS endpoint and no credentials at all."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import clirun
import pytest
from fakes import FakeLayerStore

from reconciler import model, ports, workspace
from reconciler.command import compose
from reconciler.run import session
from reconciler.state import local as local_state

MANIFEST = """\
version: 1
region: us-east-1
layers:
  alpha:
    compatible_runtimes: [python3.12]
    content: {path: src, prefix: python}
"""


class FakeStores:
    """session.Stores over the in-memory Lambda and the lockfile beside the manifest."""

    def __init__(self, options: compose.Options, lambda_store: FakeLayerStore) -> None:
        self.options = options
        self._space = workspace.Workspace.for_manifest(options.manifest, options.lockfile)
        self._lambda = lambda_store

    @property
    def space(self) -> workspace.Workspace:
        """The manifest's workspace."""
        return self._space

    def state_backend(self, parsed: model.Manifest | None) -> ports.StateBackend:
        """The lockfile beside the manifest."""
        return local_state.LocalStateBackend(self._space.lockfile_path)

    def remote(self) -> session.Remote:
        """The in-memory Lambda (and its S3 objects)."""
        return session.Remote(layers=self._lambda, objects=self._lambda.objects,
                              default_region="us-east-1", prepare=lambda regions: None)

    def package_index(self, url: str) -> ports.PackageIndex:
        """No index: these tests build no layer from a lock."""
        raise AssertionError(f"no package index in these tests ({url})")


@pytest.fixture
def fake_lambda(aws_isolated: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLayerStore]:
    """The in-memory Lambda every command run inside the test gets; an endpoint that would
    refuse any connection, so that a call past the seam fails the test."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    store = FakeLayerStore()
    with compose.overridden(lambda options: FakeStores(options, store)):
        yield store


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A one-layer manifest with its folder."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "util.py").write_text("VALUE = 1\n")
    (tmp_path / "layers.yaml").write_text(MANIFEST)
    return tmp_path


def test_plan_and_apply_run_on_the_parts_compose_gives(project: Path,
                                                       fake_lambda: FakeLayerStore) -> None:
    """plan and apply use the overridden parts: the plan creates alpha, apply publishes it
    into the in-memory Lambda and records it, and the next plan has nothing to do."""
    planned = clirun.plan_json(project)
    assert [(change["layer"], change["action"]) for change in planned["changes"]] == [
        ("alpha", "create")]

    applied = clirun.invoke(project, "apply", "--yes", "--format", "json")

    assert applied.returncode == 0, applied.stderr
    assert [item["layer_version_arn"] for item in json.loads(applied.stdout)["published"]] == [
        "arn:aws:lambda:us-east-1:123456789012:layer:alpha:1"]
    assert [call[0] for call in fake_lambda.writes()] == ["publish"]
    lock = json.loads((project / "layers.lock.json").read_text())
    assert lock["layers"]["alpha"]["us-east-1"]["version"] == 1
    again = clirun.invoke(project, "plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr


def test_outside_the_override_the_boto3_parts_come_back(project: Path) -> None:
    """Leaving `overridden` restores the boto3 composition."""
    with compose.overridden(lambda options: FakeStores(options, FakeLayerStore())):
        pass
    assert isinstance(compose.compose(compose.Options(manifest=project / "layers.yaml")),
                      compose.Boto3Stores)
