"""`Boto3LayerStore`: the botocore implementation of the `LayerStore` port (Lambda's layer
versions, their permissions, the functions that use them) and of the `ArtifactStore` port
(the S3 objects layer code is uploaded to or published from), per region.

PublishLayerVersion has no idempotency token: every call Lambda accepts is a new, permanent
version. So reads keep botocore's retries, but a publish is sent exactly once, through a
client of its own whose retries are off, and its failure says what is known: errors.
PublishNotSent (it certainly made no version) or errors.PublishOutcomeUnknown (it was sent
and got no clear answer). Deciding whether to send it again is `publishing`'s job, not this
module's. A publish streams the zip from disk (`transfer`), never holding it in memory.
Every answer is read through `answers` and every failure through `failures`' table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import botocore.exceptions

from reconciler import model, ports, ratelimit
from reconciler.aws import answers, failures, objects, session, transfer
from reconciler.aws.failures import Fault

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

PAGE_SIZE = 50  # ListLayerVersions' and ListLayers' maximum MaxItems


class Boto3LayerStore:
    """LayerStore and ArtifactStore over botocore, with two Lambda clients per region (one
    for reads, one for PublishLayerVersion) and an S3 client (see session.Clients).

    Credentials, profile and endpoint come from the standard chain (`AWS_PROFILE`,
    `AWS_ENDPOINT_URL`, ...); `endpoint_url` overrides the endpoint when given. Reads are
    retried by botocore (429 with backoff, 5xx, connection errors): `max_attempts`
    attempts in standard mode when given, else as the standard chain says (AWS_RETRY_MODE,
    AWS_MAX_ATTEMPTS, the profile; botocore's default is standard mode, 3 attempts). A
    publish is never retried by botocore. `timeout` (seconds, default DEFAULT_TIMEOUT)
    bounds the connect and each wait for a reply of every attempt; `read_timeout`
    overrides the latter alone. A publish waits longer for its reply, by its body's size
    (see session.publish_read_timeout).
    """

    def __init__(self, *, profile: str | None = None, endpoint_url: str | None = None,
                 max_attempts: int | None = None, read_timeout: float | None = None,
                 max_rps: float | None = ratelimit.DEFAULT_RPS,
                 timeout: float | None = None) -> None:
        self._clients = session.Clients(profile=profile, endpoint_url=endpoint_url,
                                        max_attempts=max_attempts, read_timeout=read_timeout,
                                        max_rps=max_rps, timeout=timeout)
        self._sending = transfer.PublishSending(read_timeout=self._clients.read_timeout)

    @property
    def clients(self) -> session.Clients:
        """The clients of this store, for the consumer stores to share (one session, and
        one --max-rps bucket per region for every Lambda call)."""
        return self._clients

    def default_region(self) -> str | None:
        """The region the standard chain resolves (AWS_DEFAULT_REGION, the profile's region).

        botocore does not read AWS_REGION; the CLI, which owns the environment, applies it."""
        return self._clients.default_region()

    def prepare(self, regions: Sequence[str]) -> None:
        """Create the read clients of `regions` up front, in the calling thread, so that the
        workers that then use them in parallel never wait for one another. (Publish clients
        are made on first use, under the same lock: a plan needs none, and an apply only
        where it publishes.)"""
        for region in regions:
            self.client(region)

    def client(self, region: str) -> LambdaClient:
        """The Lambda client for `region` (created once, rate-limited per region)."""
        return self._clients.lambda_client(region)

    def publish_client(self, region: str) -> LambdaClient:
        """The Lambda client that sends PublishLayerVersion in `region`: no retries."""
        return self._clients.publish_client(region, prepare=self._sending.prepare)

    def s3_client(self, region: str) -> Any:
        """The S3 client for `region` (created once; tests register event hooks on it)."""
        return self._clients.s3_client(region)

    # --- ArtifactStore ---------------------------------------------------------------------

    def head_object(self, *, region: str,
                    location: model.S3Object) -> model.StoredObject | None:
        """HeadObject with ChecksumMode ENABLED; None for a missing key or version."""
        return objects.head_object(self.s3_client(region), region=region, location=location)

    def upload_file(self, *, region: str, location: model.S3Object, zip_path: PurePath,
                    content_sha256: str) -> None:
        """Upload the zip (multipart above 16 MiB, each part with its SHA-256 checksum),
        its own SHA-256 in the object's metadata (see transfer.upload_file)."""
        transfer.upload_file(self.s3_client(region), region=region, location=location,
                             zip_path=zip_path, content_sha256=content_sha256)

    # --- LayerStore ------------------------------------------------------------------------

    @staticmethod
    def _call(operation: str, *, layer: str | None, region: str | None,
              client: Any) -> failures.Call:
        return failures.layer_call(operation, layer=layer, region=region,
                                   endpoint=failures.endpoint_of(client))

    def _listed(self, *, region: str, layer_name: str) -> list[model.RemoteVersion]:
        """Every version on every page of ListLayerVersions (without CodeSha256)."""
        client = self.client(region)
        call = self._call("ListLayerVersions", layer=layer_name, region=region, client=client)
        found: list[model.RemoteVersion] = []
        marker: str | None = None
        while True:
            kwargs: dict[str, Any] = {"LayerName": layer_name, "MaxItems": PAGE_SIZE}
            if marker:
                kwargs["Marker"] = marker
            with failures.calling(call):
                page = client.list_layer_versions(**kwargs)
            with failures.reading(call):
                found.extend(answers.remote_version(item, layer_name=layer_name)
                             for item in answers.may(page, "LayerVersions", list) or [])
                marker = answers.may(page, "NextMarker", str)
            if not marker:
                return found

    def latest_version(self, *, region: str, layer_name: str) -> model.RemoteVersion | None:
        """Every page of ListLayerVersions; the API promises no order, so take the max."""
        listed = self._listed(region=region, layer_name=layer_name)
        return max(listed, key=lambda item: item.version) if listed else None

    def versions_above(self, *, region: str, layer_name: str,
                       version: int) -> list[model.RemoteVersion]:
        """Every page of ListLayerVersions, the versions numbered above `version`, each with
        its CodeSha256 (one GetLayerVersion each: the listing carries none), lowest first."""
        above = sorted((item for item in self._listed(region=region, layer_name=layer_name)
                        if item.version > version), key=lambda item: item.version)
        return [self.with_code(region=region, layer_name=layer_name, version=item)
                for item in above]

    def latest_versions(self, *, region: str, layer_names: Sequence[str]) -> ports.Observed:
        """The latest version of each layer, from ListLayers pages (50 layers each) while that
        is cheaper than one ListLayerVersions per layer still unseen.

        Why this cannot miss a version: ListLayers lists every layer of the account and region
        that has a version, each once, and its LatestMatchingVersion (no runtime or
        architecture filter) is the layer's latest version. A layer on no page has none.
        Paging stops early only once every asked layer was seen; when the account holds far
        more layers than the manifest (few of ours per page), the rest are read one by one.
        """
        wanted = set(layer_names)
        latest: dict[str, model.RemoteVersion | None] = {}
        if len(wanted) <= 1:
            for name in wanted:
                latest[name] = self.latest_version(region=region, layer_name=name)
            return ports.Observed(latest=latest, how="ListLayerVersions per layer",
                                  calls=len(wanted))
        client = self.client(region)
        call = self._call("ListLayers", layer=None, region=region, client=client)
        calls = pages = 0
        marker: str | None = None
        how = "ListLayers"
        while True:
            kwargs: dict[str, Any] = {"MaxItems": PAGE_SIZE}
            if marker:
                kwargs["Marker"] = marker
            with failures.calling(call):
                page = client.list_layers(**kwargs)
            calls += 1
            pages += 1
            with failures.reading(call):
                for item in answers.may(page, "Layers", list) or []:
                    listed_name = answers.may(item, "LayerName", str) or ""
                    found = answers.may(item, "LatestMatchingVersion", dict)
                    if listed_name in wanted and found:
                        latest[listed_name] = answers.remote_version(found,
                                                                     layer_name=listed_name)
                marker = answers.may(page, "NextMarker", str)
            unseen = wanted - latest.keys()
            if not marker or not unseen:
                break
            hits_per_page = len(latest) / pages
            pages_left = math.ceil(len(unseen) / hits_per_page) if hits_per_page else math.inf
            if pages_left > len(unseen):
                how = (f"ListLayers ({pages} page{'s' if pages != 1 else ''}), then "
                       f"ListLayerVersions for {len(unseen)} layer(s): the account holds "
                       "many more layers than the manifest")
                for name in sorted(unseen):
                    latest[name] = self.latest_version(region=region, layer_name=name)
                    calls += 1
                return ports.Observed(latest=latest, how=how, calls=calls)
        for name in wanted - latest.keys():
            latest[name] = None
        plural = "s" if pages != 1 else ""
        return ports.Observed(latest=latest, how=f"{how} ({pages} page{plural})", calls=calls)

    def with_code(self, *, region: str, layer_name: str,
                  version: model.RemoteVersion) -> model.RemoteVersion:
        """GetLayerVersion: the only call that reports a version's CodeSha256."""
        client = self.client(region)
        call = self._call("GetLayerVersion", layer=layer_name, region=region, client=client)
        with failures.calling(call):
            response = client.get_layer_version(LayerName=layer_name,
                                                VersionNumber=version.version)
        with failures.reading(call):
            return model.RemoteVersion(
                version=version.version,
                layer_version_arn=version.layer_version_arn,
                settings=version.settings,
                code_sha256=answers.need(response, "Content.CodeSha256", str),
                code_size=answers.need(response, "Content.CodeSize", int),
            )

    def publish(self, *, region: str, layer_name: str, settings: model.Settings,
                zip_path: PurePath | None,
                s3_object: model.S3Object | None = None) -> model.RemoteVersion:
        """PublishLayerVersion, sent once: with Content.ZipFile (the zip is <= 50 MB by
        then), or from `s3_object` with S3Bucket/S3Key (and S3ObjectVersion when pinned).

        Raises errors.PublishNotSent when it certainly made no version, and
        errors.PublishOutcomeUnknown when it was sent without a clear answer."""
        client = self.publish_client(region)
        content: dict[str, Any]
        if s3_object is not None:
            content = {"S3Bucket": s3_object.bucket, "S3Key": s3_object.key}
            if s3_object.version:
                content["S3ObjectVersion"] = s3_object.version
        elif zip_path is not None:
            # Serialized as a marker that the publish hook replaces with the zip, streamed.
            content = {"ZipFile": transfer.PLACEHOLDER}
        else:
            raise ValueError("a publish needs a zip or an S3 object")
        kwargs: dict[str, Any] = {
            "LayerName": layer_name,
            "Content": content,
            "Description": settings.description,
            "LicenseInfo": settings.license_info,
        }
        if settings.compatible_runtimes:
            kwargs["CompatibleRuntimes"] = list(settings.compatible_runtimes)
        if settings.compatible_architectures:
            kwargs["CompatibleArchitectures"] = list(settings.compatible_architectures)
        endpoint = failures.endpoint_of(client)
        # Streamed in only when the zip travels in the request (not when published from S3).
        self._sending.start(zip_path if s3_object is None else None)
        try:
            response = client.publish_layer_version(**kwargs)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError,
                OSError) as exc:  # OSError: the zip could not be read while it was streamed
            raise failures.publish_error(exc, layer=layer_name, region=region,
                                         endpoint=endpoint, sent=self._sending.reached) from exc
        except answers.PARSER_ERRORS as exc:
            if not self._sending.reached:
                raise  # before the request was sent: not an answer, a bug
            raise failures.publish_unknown(
                answers.BadAnswer(f"botocore could not parse it ({exc})"), layer=layer_name,
                region=region, endpoint=endpoint) from exc
        finally:
            self._sending.finish()
        try:
            return answers.remote_version(response, layer_name=layer_name, with_code=True)
        except answers.BadAnswer as problem:
            raise failures.publish_unknown(problem, layer=layer_name, region=region,
                                           endpoint=endpoint) from problem

    def download_code(self, *, region: str, layer_name: str, version: int,
                      destination: PurePath, max_bytes: int) -> int:
        """GetLayerVersion's Content.Location (a presigned URL), streamed to `destination`
        (see transfer.download: https only, at most `max_bytes`, checked against the
        version's CodeSha256, named without its signature)."""
        client = self.client(region)
        call = self._call("GetLayerVersion", layer=layer_name, region=region, client=client)
        with failures.calling(call):
            response = client.get_layer_version(LayerName=layer_name, VersionNumber=version)
        with failures.reading(call):
            location = answers.may(response, "Content.Location", str) or ""
            expected = answers.may(response, "Content.CodeSha256", str)
            size = answers.may(response, "Content.CodeSize", int)
        return transfer.download(location, where=f"version {version} of layer '{layer_name}' "
                                                 f"in {region}",
                                 destination=destination, max_bytes=max_bytes, size=size,
                                 code_sha256=expected)

    def all_versions(self, *, region: str, layer_name: str) -> list[model.RemoteVersion]:
        """Every page of ListLayerVersions, lowest first (without CodeSha256)."""
        return sorted(self._listed(region=region, layer_name=layer_name),
                      key=lambda item: item.version)

    def delete_version(self, *, region: str, layer_name: str, version: int) -> None:
        """DeleteLayerVersion. Lambda answers success for a version already gone; a not
        found (moto's answer for a layer it does not know) means the same: it is gone."""
        client = self.client(region)
        with failures.calling(self._call("DeleteLayerVersion", layer=layer_name,
                                         region=region, client=client),
                              tolerate=frozenset({Fault.NOT_FOUND})):
            client.delete_layer_version(LayerName=layer_name, VersionNumber=version)

    def policy_statements(self, *, region: str, layer_name: str,
                          version: int) -> frozenset[str]:
        """GetLayerVersionPolicy's statement IDs; a version without a policy has none
        (Lambda says ResourceNotFoundException)."""
        client = self.client(region)
        call = self._call("GetLayerVersionPolicy", layer=layer_name, region=region,
                          client=client)
        response: Any = {}
        with failures.calling(call, tolerate=frozenset({Fault.NOT_FOUND})):
            response = client.get_layer_version_policy(LayerName=layer_name,
                                                       VersionNumber=version)
        with failures.reading(call):
            try:
                policy = json.loads(answers.may(response, "Policy", str) or "{}")
            except (ValueError, RecursionError) as exc:  # a policy document is short JSON
                raise answers.BadAnswer("its Policy is not a JSON document") from exc
            statements = answers.may(policy, "Statement", object) or []
        if isinstance(statements, dict):
            statements = [statements]
        if not isinstance(statements, list):
            statements = []
        return frozenset(str(statement["Sid"]) for statement in statements
                         if isinstance(statement, dict) and isinstance(statement.get("Sid"), str))

    def add_permission(self, *, region: str, layer_name: str, version: int,
                       grant: model.Grant) -> None:
        """AddLayerVersionPermission; a conflict (the statement ID exists: an earlier, maybe
        unanswered, attempt made it) is success, never a second one."""
        client = self.client(region)
        kwargs: dict[str, Any] = {
            "LayerName": layer_name, "VersionNumber": version,
            "StatementId": grant.statement_id, "Action": "lambda:GetLayerVersion",
            "Principal": grant.principal if grant.kind == "account" else "*",
        }
        if grant.kind == "organization":
            kwargs["OrganizationId"] = grant.principal
        with failures.calling(self._call("AddLayerVersionPermission", layer=layer_name,
                                         region=region, client=client),
                              tolerate=frozenset({Fault.CONFLICT})):
            client.add_layer_version_permission(**kwargs)

    def remove_permission(self, *, region: str, layer_name: str, version: int,
                          statement_id: str) -> None:
        """RemoveLayerVersionPermission; a statement already gone is no error."""
        client = self.client(region)
        with failures.calling(self._call("RemoveLayerVersionPermission", layer=layer_name,
                                         region=region, client=client),
                              tolerate=frozenset({Fault.NOT_FOUND})):
            client.remove_layer_version_permission(LayerName=layer_name, VersionNumber=version,
                                                   StatementId=statement_id)

    def function_uses(self, *, region: str) -> dict[str, tuple[str, ...]]:
        """ListFunctions with FunctionVersion=ALL, every page: each configuration's Layers."""
        client = self.client(region)
        call = self._call("ListFunctions", layer=None, region=region, client=client)
        uses: dict[str, set[str]] = {}
        marker: str | None = None
        while True:
            kwargs: dict[str, Any] = {"FunctionVersion": "ALL", "MaxItems": PAGE_SIZE}
            if marker:
                kwargs["Marker"] = marker
            with failures.calling(call):
                page = client.list_functions(**kwargs)
            with failures.reading(call):
                for function in answers.may(page, "Functions", list) or []:
                    name = (f"{answers.need(function, 'FunctionName', str)}:"
                            f"{answers.may(function, 'Version', str) or '$LATEST'}")
                    for layer in answers.may(function, "Layers", list) or []:
                        uses.setdefault(answers.need(layer, "Arn", str), set()).add(name)
                marker = answers.may(page, "NextMarker", str)
            if not marker:
                return {arn: tuple(sorted(names)) for arn, names in uses.items()}

    def code_storage(self, *, region: str) -> model.CodeStorage | None:
        """GetAccountSettings: AccountUsage.TotalCodeSize against AccountLimit.TotalCodeSize.

        None when the endpoint will not say (moto and some emulators do not implement it;
        credentials may lack lambda:GetAccountSettings): the storage warning is only
        advice, so its absence must not stop a plan."""
        client = self.client(region)
        try:
            response = client.get_account_settings()
        except botocore.exceptions.ClientError:
            return None
        except botocore.exceptions.BotoCoreError as exc:
            raise failures.error_for(exc, self._call("GetAccountSettings", layer=None,
                                                     region=region, client=client)) from exc
        except answers.PARSER_ERRORS:
            return None  # only advice, as above
        try:
            return model.CodeStorage(
                used=answers.need(response, "AccountUsage.TotalCodeSize", int),
                limit=answers.need(response, "AccountLimit.TotalCodeSize", int))
        except answers.BadAnswer:
            return None  # only advice, as above

    def account_id(self) -> str:
        """STS GetCallerIdentity (only called when the manifest names a layer by ARN)."""
        client = self._clients.sts_client()
        call = self._call("GetCallerIdentity", layer=None, region=None, client=client)
        with failures.calling(call):
            identity = client.get_caller_identity()
        with failures.reading(call):
            return answers.need(identity, "Account", str)

