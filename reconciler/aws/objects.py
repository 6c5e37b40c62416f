"""S3 objects: the head of an object of layer code (the artifact bucket, a `content.s3`
source), and `Boto3ObjectStore`, the botocore implementation of `ports.ObjectStore` that
the S3 state keeps its objects in.

What a failure means comes from `failures`' table (a state's bucket it cannot use is a
StateError there); nothing here names an AWS error code.
"""

from __future__ import annotations

import datetime
from typing import Any

import botocore.exceptions

from reconciler import errors, model, ports
from reconciler.aws import answers, failures, session, transfer


def head_object(client: Any, *, region: str,
                location: model.S3Object) -> model.StoredObject | None:
    """HeadObject with ChecksumMode ENABLED; None for a missing key or version (404, or
    400 for a version ID S3 cannot parse)."""
    call = failures.artifact_call("HeadObject", location=location, region=region,
                                  endpoint=failures.endpoint_of(client))
    kwargs: dict[str, Any] = {"Bucket": location.bucket, "Key": location.key,
                              "ChecksumMode": "ENABLED"}
    if location.version:
        kwargs["VersionId"] = location.version
    try:
        response = client.head_object(**kwargs)
    except botocore.exceptions.ClientError as exc:
        failure = failures.classify(exc)
        # A HEAD's error has no body: a version ID S3 cannot parse is a bare 400.
        if failure.fault is failures.Fault.NOT_FOUND or (
                location.version and failure.status == 400):
            return None
        raise failures.aws_error_for(exc, call) from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise failures.aws_error_for(exc, call) from exc
    except answers.PARSER_ERRORS as exc:
        raise failures.unparsable(exc, call) from exc
    with failures.reading(call):
        metadata = answers.may(response, "Metadata", dict) or {}
        etag = answers.may(response, "ETag", str) or ""
        checksum = answers.may(response, "ChecksumSHA256", str)
        content_sha256 = metadata.get(transfer.CONTENT_SHA256_METADATA)
        return model.StoredObject(
            size=answers.need(response, "ContentLength", int), etag=etag,
            version_id=answers.may(response, "VersionId", str), checksum_sha256=checksum,
            content_sha256=content_sha256 if isinstance(content_sha256, str) else None,
            multipart=("-" in etag.strip('"') or "-" in (checksum or "")
                       or response.get("ChecksumType") == "COMPOSITE"))


class Boto3ObjectStore:
    """ports.ObjectStore over botocore's S3 client, for the one bucket of an S3 state.

    Credentials, profile and endpoint come from the standard chain, as for
    Boto3LayerStore. Conditional writes are sent as PutObject's IfMatch / IfNoneMatch; S3
    refuses them with 412 PreconditionFailed (409 ConditionalRequestConflict when two race),
    which become errors.PreconditionFailed. Other failures become StateError (the bucket is
    missing, access is denied) or AwsError, with hints; no message ever holds a credential.
    """

    def __init__(self, *, bucket: str, profile: str | None = None,
                 endpoint_url: str | None = None, region: str | None = None,
                 max_attempts: int | None = None, timeout: float | None = None) -> None:
        opened = session.opened_session(profile)
        try:
            default_region = opened.get_config_variable("region")
        except botocore.exceptions.BotoCoreError as exc:
            raise failures.setup_error(exc) from exc
        self._client: Any = session.new_client(
            opened, "s3", region=region or default_region or "us-east-1",
            endpoint_url=endpoint_url,
            config=session.client_config(timeout=timeout or session.DEFAULT_TIMEOUT,
                                         max_attempts=max_attempts))
        self._bucket = bucket

    @property
    def client(self) -> Any:
        """The S3 client (tests register botocore event hooks on it)."""
        return self._client

    @property
    def bucket(self) -> str:
        """The bucket's name."""
        return self._bucket

    @property
    def endpoint(self) -> str:
        """The endpoint URL the client talks to."""
        return str(self._client.meta.endpoint_url)

    def _call(self, operation: str, key: str) -> failures.Call:
        return failures.state_call(operation, bucket=self._bucket, key=key,
                                   endpoint=self.endpoint)

    def get(self, key: str) -> tuple[bytes, str] | None:
        """GetObject: (bytes, ETag), or None when there is no such key."""
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=key)
            return bytes(response["Body"].read()), self._etag(response, "GetObject", key)
        except botocore.exceptions.ClientError as exc:
            if failures.fault_of(exc) is failures.Fault.NOT_FOUND:
                return None
            raise failures.error_for(exc, self._call("GetObject", key)) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise failures.error_for(exc, self._call("GetObject", key)) from exc

    def put(self, key: str, data: bytes, *, if_match: str | None = None,
            if_none_match: bool = False) -> str:
        """PutObject with the conditions given; the new ETag."""
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Key": key, "Body": data,
                                  "ContentType": "application/json"}
        if if_match is not None:
            kwargs["IfMatch"] = if_match
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        try:
            return self._etag(self._client.put_object(**kwargs), "PutObject", key)
        except botocore.exceptions.ClientError as exc:
            fault = failures.fault_of(exc)
            # If-Match on an object that is gone is refused with 404 NoSuchKey: the object
            # is not at that ETag, which is all a caller of a conditional write asks.
            if if_match is not None and fault is failures.Fault.NOT_FOUND:
                fault = failures.Fault.CONFLICT
            raise failures.error_for(exc, self._call("PutObject", key), as_fault=fault) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise failures.error_for(exc, self._call("PutObject", key)) from exc

    def _etag(self, response: Any, operation: str, key: str) -> str:
        """The answer's ETag, the revision every conditional write names: an answer without
        one is a failed call (a write's caller reads the object back), never a KeyError."""
        etag = response.get("ETag") if isinstance(response, dict) else None
        if not isinstance(etag, str) or not etag:
            raise errors.StateError(
                f"s3://{self._bucket}/{key}: S3 answered {operation} without an ETag",
                hint="the state store must answer as S3 does (ETag on every GetObject and "
                     "PutObject)")
        return etag

    def delete(self, key: str) -> None:
        """DeleteObject (S3 answers 204 whether or not the key existed)."""
        try:
            self._client.delete_object(Bucket=self._bucket, Key=key)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise failures.error_for(exc, self._call("DeleteObject", key)) from exc

    def listing(self, prefix: str) -> list[ports.StoredKey]:
        """ListObjectsV2 under `prefix`, every page."""
        found: list[ports.StoredKey] = []
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix}
        try:
            while True:
                response = self._client.list_objects_v2(**kwargs)
                for item in response.get("Contents", []):
                    key, modified = item.get("Key"), item.get("LastModified")
                    if isinstance(key, str) and isinstance(modified, datetime.datetime):
                        found.append(ports.StoredKey(key=key, last_modified=modified))
                token = response.get("NextContinuationToken")
                if not response.get("IsTruncated") or not token:
                    return found
                kwargs["ContinuationToken"] = token
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise failures.error_for(exc, self._call("ListBucket", prefix)) from exc
