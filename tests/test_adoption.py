"""Adoption by content: a layer with no record whose remote latest holds the same files in
other zip bytes is adopted (recorded, not published) after one bounded download; other files,
or `--no-download`, publish. The planner's rule against the fake store, the real boto3 store
against a moto server (the zip served from a loopback HTTP server, since moto's
Content.Location is an s3:// URL), and the CLI flag end to end."""

from __future__ import annotations

import http.server
import io
import json
import shutil
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import clirun
import pytest
from fakes import FakeLayerStore

from reconciler import (
    applying,
    artifacts,
    aws,
    model,
    planfile,
    planner,
    planning,
    ports,
    render,
    workspace,
)
from reconciler.state.local import LocalStateBackend

REGION = "us-east-1"
MANIFEST = """\
version: 1
region: us-east-1
layers:
  utils:
    description: shared
    content: {path: src}
"""
SETTINGS = model.Settings.normalised(description="shared", compatible_runtimes=None,
                                     compatible_architectures=None, license_info=None)


def downloaded(change: model.Change) -> model.RemoteContent | None:
    """The remote latest's zip a change's plan downloaded (a publish's or a noop's)."""
    details = change.details
    if isinstance(details, model.PublishDetails | model.RecordDetails):
        return details.download
    raise AssertionError(f"a {change.action.value} change carries no download")


def make_folder(root: Path) -> Path:
    """A layer folder with a nested file, an executable and a symlink."""
    folder = root / "src"
    (folder / "python" / "pkg").mkdir(parents=True)
    (folder / "python" / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    tool = folder / "python" / "tool.sh"
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(0o755)
    (folder / "python" / "link.py").symlink_to("pkg/__init__.py")
    (root / "layers.yaml").write_text(MANIFEST)
    return folder


def info_zip(folder: Path, out: Path) -> bytes:
    """A `zip -r -X -y` of the folder's contents (other bytes than reconcile's zip)."""
    subprocess.run(["zip", "-q", "-r", "-X", "-y", str(out), "."], cwd=folder, check=True)
    return out.read_bytes()


needs_zip = pytest.mark.skipif(shutil.which("zip") is None, reason="Info-ZIP zip is missing")


def plan_with(space: workspace.Workspace, store: ports.LayerStore, *,
              download: bool = True) -> model.Plan:
    """Plan the workspace as the CLI does."""
    parsed = workspace.load_manifest(space)
    state = LocalStateBackend(space.lockfile_path)
    selection = planning.select(parsed, default_region=None, targets=(), regions=())
    return planning.make_plan(parsed=parsed, selection=selection, snapshot=state.read(),
                              state_location="lockfile:layers.lock.json",
                              manifest_digest=parsed.sha256, store=store,
                              code=artifacts.LocalCode(space=space, manifest=parsed),
                              download=download)


def apply_plan(space: workspace.Workspace, store: ports.LayerStore,
               the_plan: model.Plan) -> applying.ApplyReport:
    """Apply `the_plan` as `apply --yes` does."""
    parsed = workspace.load_manifest(space)
    state = LocalStateBackend(space.lockfile_path)
    return applying.apply(the_plan, store=store, state=state, snapshot=state.read(),
                          code=artifacts.LocalCode(space=space, manifest=parsed))


@needs_zip
def test_same_files_in_other_zip_bytes_are_adopted(tmp_path: Path) -> None:
    """An Info-ZIP zip of the layer's folder, published out of band, is adopted after one
    download: noop, reason adopted, recorded, no publish; the next plan downloads nothing."""
    folder = make_folder(tmp_path)
    space = workspace.Workspace.for_manifest(tmp_path / "layers.yaml")
    store = FakeLayerStore()
    store.put(region=REGION, layer_name="utils", settings=SETTINGS,
              zip_bytes=info_zip(folder, tmp_path / "other.zip"))

    the_plan = plan_with(space, store)

    (change,) = the_plan.changes
    assert change.action is model.Action.NOOP
    assert change.reasons == (model.Reason.ADOPTED,)
    assert change.record is not None and change.record.version == 1
    found = downloaded(change)
    assert found is not None and found.downloaded_bytes > 0
    assert any("same files, other zip bytes" in note for note in change.notes)
    assert ("download", REGION, "utils:1") in store.calls
    assert not list((space.cache_dir / "downloads").iterdir())
    apply_plan(space, store, the_plan)
    assert store.writes() == []
    store.calls.clear()
    again = plan_with(space, store)
    assert [c.action for c in again.changes] == [model.Action.NOOP]
    assert not again.has_changes
    assert not [call for call in store.calls if call[0] == "download"]


@needs_zip
def test_one_differing_byte_is_published(tmp_path: Path) -> None:
    """A remote zip whose files differ by one byte is not adopted: the plan publishes and says
    it downloaded the zip and found other files."""
    folder = make_folder(tmp_path)
    space = workspace.Workspace.for_manifest(tmp_path / "layers.yaml")
    (folder / "python" / "pkg" / "__init__.py").write_text("VALUE = 2\n")
    other = info_zip(folder, tmp_path / "other.zip")
    (folder / "python" / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    store = FakeLayerStore()
    store.put(region=REGION, layer_name="utils", settings=SETTINGS, zip_bytes=other)

    (change,) = plan_with(space, store).changes

    assert change.action is model.Action.PUBLISH
    assert model.Reason.CONTENT_CHANGED in change.reasons
    found = downloaded(change)
    assert found is not None and found.fingerprint is not None
    assert any("its files differ" in note for note in change.notes)


@needs_zip
def test_no_download_publishes(tmp_path: Path) -> None:
    """With downloads off, the same files in other bytes are published, and nothing is
    downloaded."""
    folder = make_folder(tmp_path)
    space = workspace.Workspace.for_manifest(tmp_path / "layers.yaml")
    store = FakeLayerStore()
    store.put(region=REGION, layer_name="utils", settings=SETTINGS,
              zip_bytes=info_zip(folder, tmp_path / "other.zip"))

    (change,) = plan_with(space, store, download=False).changes

    assert change.action is model.Action.PUBLISH
    found = downloaded(change)
    assert found is None
    assert not [call for call in store.calls if call[0] == "download"]


def test_an_unreadable_remote_zip_is_published(tmp_path: Path) -> None:
    """A remote version whose bytes are no zip cannot be compared: it is published, and the
    note says why."""
    make_folder(tmp_path)
    space = workspace.Workspace.for_manifest(tmp_path / "layers.yaml")
    store = FakeLayerStore()
    store.put(region=REGION, layer_name="utils", settings=SETTINGS, zip_bytes=b"not a zip")

    (change,) = plan_with(space, store).changes

    assert change.action is model.Action.PUBLISH
    found = downloaded(change)
    assert found is not None and found.fingerprint is None
    assert any("could not compare" in note for note in change.notes)


# --- the planner's rule, pure --------------------------------------------------------------

_SPEC = model.LayerSpec(key="utils", name="utils", settings=SETTINGS,
                        content=model.ContentSpec(kind=model.SourceKind.PATH, path="src"),
                        location=model.Location(1, 1))
_ARTIFACT = model.Artifact(fingerprint="f" * 64, code_sha256="LOCAL=", content_sha256="a" * 64,
                           code_size=10, zip_path="/x.zip")
_REMOTE = model.RemoteVersion(version=3, layer_version_arn="arn:...:utils:3", settings=SETTINGS,
                              code_sha256="REMOTE=", code_size=12)
_LOCK = model.LockEntry(fingerprint="0" * 64, content_sha256="", code_sha256="OLD=",
                        code_size=1, version=3, layer_version_arn="arn:...:utils:3",
                        settings_sha256="")


@pytest.mark.parametrize(("changes", "asks"), [
    ({}, True),
    ({"download": False}, False),
    ({"lock_entry": _LOCK}, False),
    ({"remote_latest": None}, False),
    ({"remote_latest": model.RemoteVersion(version=3, layer_version_arn="arn:...:utils:3",
                                           settings=SETTINGS, code_sha256="LOCAL=")}, False),
    ({"remote_latest": model.RemoteVersion(version=3, layer_version_arn="arn:...:utils:3",
                                           settings=model.Settings(description="other"),
                                           code_sha256="REMOTE=")}, False),
    ({"spec": model.LayerSpec(key="utils", name="utils", settings=SETTINGS,
                              content=model.ContentSpec(kind=model.SourceKind.ZIP, zip="a.zip"),
                              location=model.Location(1, 1))}, False),
    ({"remote_content": model.RemoteContent(version=3, downloaded_bytes=12,
                                            fingerprint=None, problem="x")}, False),
])
def test_planner_asks_for_the_download_only_when_it_can_adopt(
        changes: dict[str, Any], asks: bool) -> None:
    """The download is asked for only with downloads on, no record, a remote latest of the
    desired settings but another CodeSha256, a file-fingerprinted source, and once."""
    values: dict[str, Any] = {"spec": _SPEC, "region": REGION, "artifact": _ARTIFACT,
                              "lock_entry": None, "remote_latest": _REMOTE, "download": True}
    values.update(changes)
    inputs = planner.Inputs(**values)

    wanted = planner.Evidence.REMOTE_CONTENT in planner.missing_evidence(inputs)

    assert wanted is asks


def test_planner_adopts_equal_files_and_records_the_remote_zip() -> None:
    """Equal fingerprints make a noop that records the remote version with the remote zip's
    digests, so that the next plan trusts the lock."""
    inputs = planner.Inputs(spec=_SPEC, region=REGION, artifact=_ARTIFACT, lock_entry=None,
                            remote_latest=_REMOTE, download=True,
                            remote_content=model.RemoteContent(
                                version=3, downloaded_bytes=12, fingerprint="f" * 64))

    change = planner.decide(inputs)

    assert change.action is model.Action.NOOP
    assert change.reasons == (model.Reason.ADOPTED,)
    assert change.record is not None
    assert change.record.code_sha256 == "REMOTE="
    assert change.record.fingerprint == "f" * 64
    assert change.record.code_size == 12
    assert planner.missing_evidence(inputs) == frozenset()


# --- the boto3 store against moto, the zip served over loopback HTTP ----------------------


class _ZipServer(http.server.ThreadingHTTPServer):
    """Serves `files` (URL path -> bytes) on a loopback port; counts the requests."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ZipHandler)
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []


class _ZipHandler(http.server.BaseHTTPRequestHandler):
    server: _ZipServer

    def do_GET(self) -> None:  # the name is http.server's API
        self.server.requests.append(self.path)
        data = self.server.files.get(self.path.split("?")[0])
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        return None


@pytest.fixture
def zip_server() -> Iterator[_ZipServer]:
    """A loopback HTTP server for layer zips, stopped after the test."""
    server = _ZipServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def served_store(server: _ZipServer) -> aws.Boto3LayerStore:
    """A boto3 store whose GetLayerVersion replies point Content.Location at `server`, as a
    presigned URL would (moto's is an s3:// URL)."""
    store = aws.Boto3LayerStore()
    host, port = str(server.server_address[0]), int(server.server_address[1])

    def to_loopback(parsed: dict[str, Any], **_: Any) -> None:
        content = parsed.get("Content")
        if content and "Location" in content:
            name = parsed["LayerVersionArn"].split(":")[-2]
            version = parsed["Version"]
            content["Location"] = (f"http://{host}:{port}/{name}/{version}.zip"
                                   "?X-Amz-Signature=secret-signature")

    store.client(REGION).meta.events.register("after-call.lambda.GetLayerVersion",
                                              to_loopback)
    return store


def publish_out_of_band(zip_bytes: bytes, server: _ZipServer) -> None:
    """Publish `zip_bytes` as the AWS CLI would, and serve them for the new version."""
    client = boto3.client("lambda", region_name=REGION)
    published = client.publish_layer_version(LayerName="utils", Description="shared",
                                             Content={"ZipFile": zip_bytes})
    server.files[f"/utils/{published['Version']}.zip"] = zip_bytes


@needs_zip
def test_moto_zip_r_of_the_folder_is_adopted(
        moto_url: str, tmp_path: Path, zip_server: _ZipServer) -> None:
    """Against moto, a `zip -r -X` of the same folder published out of band is adopted
    through the real store's download, and apply records it without publishing."""
    folder = make_folder(tmp_path)
    space = workspace.Workspace.for_manifest(tmp_path / "layers.yaml")
    publish_out_of_band(info_zip(folder, tmp_path / "other.zip"), zip_server)
    store = served_store(zip_server)

    the_plan = plan_with(space, store)

    (change,) = the_plan.changes
    assert change.action is model.Action.NOOP
    assert change.reasons == (model.Reason.ADOPTED,)
    found = downloaded(change)
    assert found is not None
    assert found.downloaded_bytes == (tmp_path / "other.zip").stat().st_size
    assert zip_server.requests == ["/utils/1.zip?X-Amz-Signature=secret-signature"]
    assert "secret-signature" not in render.text(the_plan)
    assert "secret-signature" not in json.dumps(planfile.to_document(the_plan))
    apply_plan(space, store, the_plan)
    lock = json.loads(space.lockfile_path.read_text())
    assert "utils" in json.dumps(lock)
    versions = boto3.client("lambda", region_name=REGION).list_layer_versions(
        LayerName="utils")["LayerVersions"]
    assert [item["Version"] for item in versions] == [1]


@needs_zip
def test_moto_one_differing_byte_is_not_adopted(
        moto_url: str, tmp_path: Path, zip_server: _ZipServer) -> None:
    """Against moto, a zip of the folder with one byte changed is downloaded, compared and
    published over."""
    folder = make_folder(tmp_path)
    space = workspace.Workspace.for_manifest(tmp_path / "layers.yaml")
    (folder / "python" / "pkg" / "__init__.py").write_text("VALUE = 7\n")
    other = info_zip(folder, tmp_path / "other.zip")
    (folder / "python" / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    publish_out_of_band(other, zip_server)

    (change,) = plan_with(space, served_store(zip_server)).changes

    assert change.action is model.Action.PUBLISH
    found = downloaded(change)
    assert found is not None and found.fingerprint is not None


def test_a_failed_download_names_the_url_without_its_signature(
        moto_url: str, tmp_path: Path, zip_server: _ZipServer) -> None:
    """A presigned URL that answers 404 makes a publish whose note names the URL without its
    query string (the signature)."""
    make_folder(tmp_path)
    space = workspace.Workspace.for_manifest(tmp_path / "layers.yaml")
    publish_out_of_band(_tiny_zip(), zip_server)
    zip_server.files.clear()

    the_plan = plan_with(space, served_store(zip_server))

    (change,) = the_plan.changes
    assert change.action is model.Action.PUBLISH
    found = downloaded(change)
    assert found is not None and found.problem is not None
    assert f"127.0.0.1:{zip_server.server_address[1]}/utils/1.zip" in found.problem
    assert "secret-signature" not in render.text(the_plan)
    assert "secret-signature" not in json.dumps(planfile.to_document(the_plan))


def test_moto_location_is_not_downloaded_and_never_printed_with_its_query(
        moto_url: str, tmp_path: Path) -> None:
    """moto's s3:// Content.Location is refused as not https: the plan publishes, says why,
    and `--no-download` skips the download altogether (the CLI end to end)."""
    make_folder(tmp_path)
    client = boto3.client("lambda", region_name=REGION)
    client.publish_layer_version(LayerName="utils", Description="shared",
                                 Content={"ZipFile": _tiny_zip()})

    default = clirun.invoke(tmp_path, "plan", "--format", "json")
    skipped = clirun.invoke(tmp_path, "plan", "--format", "json", "--no-download")

    assert default.returncode == 0, default.stderr
    (change,) = clirun.valid_plan(json.loads(default.stdout))["changes"]
    assert change["action"] == "publish"
    assert change["download"]["bytes"] == 0
    assert "not an https URL" in change["download"]["problem"]
    assert skipped.returncode == 0, skipped.stderr
    (plain,) = clirun.valid_plan(json.loads(skipped.stdout))["changes"]
    assert plain["action"] == "publish"
    assert "download" not in plain


def _tiny_zip() -> bytes:
    """A small zip other than the layer's."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("python/other.py", "X = 1\n")
    return buffer.getvalue()
