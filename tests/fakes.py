"""An in-memory LayerStore and ArtifactStore for the tests that are not about AWS itself
(pip-tools' FakeRepository, httpx's MockTransport): they behave like Lambda's layer API and S3
objects and record every call, so tests can assert exactly which calls a plan or an apply
made."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from reconciler import errors, model, ports

ACCOUNT = "123456789012"


@dataclass
class _Stored:
    version: model.RemoteVersion
    deleted: bool = False
    zip_bytes: bytes = b""


@dataclass(frozen=True)
class PublishFault:
    """What one publish call does instead of succeeding: raise `error`, after making the
    version when `lands` (a reply lost after Lambda did the work)."""

    error: errors.AwsError
    lands: bool = False
    region: str | None = None  # None: the layer's next publish in any region


@dataclass
class FakeArtifactStore(ports.ArtifactStore):
    """S3 objects per region, bucket and key (single-part: ChecksumSHA256 is the object's
    SHA-256); `calls` records ("head"|"upload", region, "bucket/key")."""

    objects: dict[tuple[str, str, str], tuple[bytes, dict[str, str]]] = field(
        default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)

    def head_object(self, *, region: str,
                    location: model.S3Object) -> model.StoredObject | None:
        """The object's size, checksum and metadata, or None."""
        self.calls.append(("head", region, f"{location.bucket}/{location.key}"))
        found = self.objects.get((region, location.bucket, location.key))
        if found is None:
            return None
        data, metadata = found
        return model.StoredObject(
            size=len(data), etag=hashlib.md5(data).hexdigest(),
            checksum_sha256=base64.b64encode(hashlib.sha256(data).digest()).decode(),
            content_sha256=metadata.get("reconcile-content-sha256"))

    def upload_file(self, *, region: str, location: model.S3Object, zip_path: PurePath,
                    content_sha256: str) -> None:
        """Store the file's bytes under the key."""
        self.calls.append(("upload", region, f"{location.bucket}/{location.key}"))
        self.objects[(region, location.bucket, location.key)] = (
            Path(zip_path).read_bytes(), {"reconcile-content-sha256": content_sha256})

    def read(self, *, region: str, location: model.S3Object) -> bytes:
        """An object's bytes, as Lambda reads them for a publish from S3."""
        found = self.objects.get((region, location.bucket, location.key))
        if found is None:
            raise errors.PublishNotSent(
                f"PublishLayerVersion: s3://{location.bucket}/{location.key} does not exist",
                aws_code="InvalidParameterValueException")
        return found[0]


@dataclass
class FakeLayerStore(ports.LayerStore):
    """Lambda's layer versions per region and name; version numbers never go back.

    `fail_publish` fails every publish of a layer name; `publish_faults` scripts the next
    publishes of a layer name, one fault per call, then publishes succeed again;
    `fail_lookup` makes versions_above raise."""

    layers: dict[tuple[str, str], list[_Stored]] = field(default_factory=dict)
    counters: dict[tuple[str, str], int] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    fail_publish: dict[str, errors.AwsError] = field(default_factory=dict)
    fail_region: dict[str, errors.AwsError] = field(default_factory=dict)
    publish_faults: dict[str, list[PublishFault]] = field(default_factory=dict)
    fail_lookup: errors.AwsError | None = None
    # (region, layer name, version) -> statement ID -> grant, as a version's policy.
    policies: dict[tuple[str, str, int], dict[str, model.Grant]] = field(default_factory=dict)
    # region -> (function name:qualifier, layer version ARNs it uses).
    functions: dict[str, list[tuple[str, tuple[str, ...]]]] = field(default_factory=dict)
    storage: dict[str, model.CodeStorage] = field(default_factory=dict)
    # Where a publish from S3 reads its object (the same fake apply uploads to).
    objects: FakeArtifactStore = field(default_factory=FakeArtifactStore)
    # (region, layer name, "zip" | "s3") per publish: how each one carried its code.
    publish_routes: list[tuple[str, str, str]] = field(default_factory=list)

    def latest_version(self, *, region: str, layer_name: str) -> model.RemoteVersion | None:
        """The highest live version, without its CodeSha256 (as ListLayerVersions)."""
        self.calls.append(("list", region, layer_name))
        live = [s.version for s in self.layers.get((region, layer_name), []) if not s.deleted]
        if not live:
            return None
        latest = max(live, key=lambda v: v.version)
        return model.RemoteVersion(version=latest.version,
                                   layer_version_arn=latest.layer_version_arn,
                                   settings=latest.settings)

    def latest_versions(self, *, region: str,
                        layer_names: Sequence[str]) -> ports.Observed:
        """Each layer's latest, as one ListLayers page would tell (no CodeSha256)."""
        self.calls.append(("list_layers", region, ",".join(layer_names)))
        latest: dict[str, model.RemoteVersion | None] = {}
        for name in layer_names:
            live = [s.version for s in self.layers.get((region, name), []) if not s.deleted]
            newest = max(live, key=lambda v: v.version) if live else None
            latest[name] = None if newest is None else model.RemoteVersion(
                version=newest.version, layer_version_arn=newest.layer_version_arn,
                settings=newest.settings)
        return ports.Observed(latest=latest, how="ListLayers (fake)", calls=1)

    def with_code(self, *, region: str, layer_name: str,
                  version: model.RemoteVersion) -> model.RemoteVersion:
        """The stored version with its CodeSha256 (as GetLayerVersion)."""
        self.calls.append(("get", region, layer_name))
        for stored in self.layers.get((region, layer_name), []):
            if stored.version.version == version.version and not stored.deleted:
                return stored.version
        raise errors.AwsError(f"GetLayerVersion: {layer_name}:{version.version} not found",
                              aws_code="ResourceNotFoundException")

    def publish(self, *, region: str, layer_name: str, settings: model.Settings,
                zip_path: PurePath | None,
                s3_object: model.S3Object | None = None) -> model.RemoteVersion:
        """A new version from the zip's bytes, or from the S3 object's."""
        self.calls.append(("publish", region, layer_name))
        self.publish_routes.append((region, layer_name, "s3" if s3_object else "zip"))
        if layer_name in self.fail_publish:
            raise self.fail_publish[layer_name]
        if region in self.fail_region:
            raise self.fail_region[region]
        faults = [fault for fault in self.publish_faults.get(layer_name, [])
                  if fault.region in (None, region)]
        if faults:
            fault = faults[0]
            self.publish_faults[layer_name].remove(fault)
            if fault.lands:
                self.put(region=region, layer_name=layer_name, settings=settings,
                         zip_bytes=self._code(region, zip_path, s3_object))
            raise fault.error
        return self.put(region=region, layer_name=layer_name, settings=settings,
                        zip_bytes=self._code(region, zip_path, s3_object))

    def _code(self, region: str, zip_path: PurePath | None,
              s3_object: model.S3Object | None) -> bytes:
        if s3_object is not None:
            return self.objects.read(region=region, location=s3_object)
        assert zip_path is not None, "a publish needs a zip or an S3 object"
        return Path(zip_path).read_bytes()

    def versions_above(self, *, region: str, layer_name: str,
                       version: int) -> list[model.RemoteVersion]:
        """The live versions numbered above `version`, lowest first, with their CodeSha256."""
        self.calls.append(("versions_above", region, layer_name))
        if self.fail_lookup is not None:
            raise self.fail_lookup
        return sorted((s.version for s in self.layers.get((region, layer_name), [])
                       if not s.deleted and s.version.version > version),
                      key=lambda v: v.version)

    def download_code(self, *, region: str, layer_name: str, version: int,
                      destination: PurePath, max_bytes: int) -> int:
        """The version's zip bytes, written to `destination` (as a download of its
        Content.Location); refused past `max_bytes`."""
        self.calls.append(("download", region, f"{layer_name}:{version}"))
        stored = self._live(region, layer_name, version)
        if len(stored.zip_bytes) > max_bytes:
            raise errors.AwsError(f"{layer_name}:{version} is over {max_bytes} bytes")
        Path(destination).write_bytes(stored.zip_bytes)
        return len(stored.zip_bytes)

    def account_id(self) -> str:
        """The fake account."""
        self.calls.append(("account", "", ""))
        return ACCOUNT

    def _live(self, region: str, layer_name: str, version: int) -> _Stored:
        for stored in self.layers.get((region, layer_name), []):
            if stored.version.version == version and not stored.deleted:
                return stored
        raise errors.AwsError(f"{layer_name}:{version} not found",
                              aws_code="ResourceNotFoundException")

    def all_versions(self, *, region: str, layer_name: str) -> list[model.RemoteVersion]:
        """Every live version, lowest first, without CodeSha256 (as ListLayerVersions)."""
        self.calls.append(("list_versions", region, layer_name))
        return [model.RemoteVersion(version=s.version.version,
                                    layer_version_arn=s.version.layer_version_arn,
                                    settings=s.version.settings)
                for s in self.layers.get((region, layer_name), []) if not s.deleted]

    def delete_version(self, *, region: str, layer_name: str, version: int) -> None:
        """DeleteLayerVersion: success whether or not the version is there."""
        self.calls.append(("delete", region, f"{layer_name}:{version}"))
        self.delete(region=region, layer_name=layer_name, version=version)

    def policy_statements(self, *, region: str, layer_name: str,
                          version: int) -> frozenset[str]:
        """The version's statement IDs: none without a policy, and none for a version that
        does not exist (Lambda answers ResourceNotFoundException to both)."""
        self.calls.append(("policy", region, f"{layer_name}:{version}"))
        if not any(stored.version.version == version and not stored.deleted
                   for stored in self.layers.get((region, layer_name), [])):
            return frozenset()
        return frozenset(self.policies.get((region, layer_name, version), {}))

    def add_permission(self, *, region: str, layer_name: str, version: int,
                       grant: model.Grant) -> None:
        """Add the statement; one of the same ID already there is kept as it is."""
        self.calls.append(("grant", region, f"{layer_name}:{version}:{grant.statement_id}"))
        self._live(region, layer_name, version)
        self.policies.setdefault((region, layer_name, version), {}).setdefault(
            grant.statement_id, grant)

    def remove_permission(self, *, region: str, layer_name: str, version: int,
                          statement_id: str) -> None:
        """Remove the statement, if there."""
        self.calls.append(("revoke", region, f"{layer_name}:{version}:{statement_id}"))
        self.policies.get((region, layer_name, version), {}).pop(statement_id, None)

    def function_uses(self, *, region: str) -> dict[str, tuple[str, ...]]:
        """The layer version ARNs the region's functions use."""
        self.calls.append(("list_functions", region, ""))
        uses: dict[str, set[str]] = {}
        for name, arns in self.functions.get(region, []):
            for arn in arns:
                uses.setdefault(arn, set()).add(name)
        return {arn: tuple(sorted(names)) for arn, names in uses.items()}

    def code_storage(self, *, region: str) -> model.CodeStorage | None:
        """The region's code storage (sum of live versions against 75 GB unless set)."""
        self.calls.append(("account_settings", region, ""))
        if region in self.storage:
            return self.storage[region]
        used = sum(s.version.code_size or 0 for (where, _), stored in self.layers.items()
                   if where == region for s in stored if not s.deleted)
        return model.CodeStorage(used=used, limit=75 * 1024**3)

    # Out-of-band changes, as another tool or a person would make them.
    def put(self, *, region: str, layer_name: str, settings: model.Settings,
            zip_bytes: bytes) -> model.RemoteVersion:
        """Publish without recording a call (a publish made outside reconcile)."""
        number = self.counters.get((region, layer_name), 0) + 1
        self.counters[(region, layer_name)] = number
        version = model.RemoteVersion(
            version=number,
            layer_version_arn=f"arn:aws:lambda:{region}:{ACCOUNT}:layer:{layer_name}:{number}",
            # Lambda keeps the lists as sent; every read of them (listing, GetLayerVersion,
            # the publish's answer) comes back through Settings.normalised.
            settings=model.Settings.normalised(
                description=settings.description,
                compatible_runtimes=settings.compatible_runtimes,
                compatible_architectures=settings.compatible_architectures,
                license_info=settings.license_info),
            code_sha256=base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode(),
            code_size=len(zip_bytes),
        )
        self.layers.setdefault((region, layer_name), []).append(
            _Stored(version, zip_bytes=zip_bytes))
        return version

    def delete(self, *, region: str, layer_name: str, version: int) -> None:
        """Delete a version outside reconcile."""
        for stored in self.layers.get((region, layer_name), []):
            if stored.version.version == version:
                stored.deleted = True

    def writes(self) -> list[tuple[str, str, str]]:
        """The write calls made so far."""
        return [call for call in self.calls
                if call[0] in ("publish", "delete", "grant", "revoke")]
