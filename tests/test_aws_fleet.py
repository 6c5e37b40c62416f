"""The Lambda store's calls for sharing, retention and alignment: against moto where it
emulates them, and with a Stubber where it does not (a conflicting statement ID,
ListFunctions pages, GetAccountSettings)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

import boto3
import botocore.stub
import pytest
import test_aws
from test_aws import REGION, make_zip

from reconciler import aws, model

ACCOUNT_GRANT = model.Grant(kind="account", principal="111122223333")
ORG_GRANT = model.Grant(kind="organization", principal="o-a1b2c3d4e5")


class Where(TypedDict):
    """The keyword arguments that name one layer version in a store call."""

    region: str
    layer_name: str
    version: int


@pytest.fixture
def published(moto_url: str, tmp_path: Path) -> tuple[aws.Boto3LayerStore, int]:
    """A store on moto and a version it published of layer `fleet`."""
    store = aws.Boto3LayerStore()
    zip_path = make_zip(tmp_path / "x.zip", {"python/x.py": b"X = 1\n"})
    version = store.publish(region=REGION, layer_name="fleet", settings=model.Settings(),
                            zip_path=zip_path)
    return store, version.version


def test_grants_are_added_read_and_removed(
        published: tuple[aws.Boto3LayerStore, int]) -> None:
    """A version without a policy has no statements; added grants show up by statement ID
    (an organization as Principal * with its OrganizationId); removing one leaves the other,
    and removing one already gone is no error."""
    store, version = published
    where: Where = {"region": REGION, "layer_name": "fleet", "version": version}
    assert store.policy_statements(**where) == frozenset()
    store.add_permission(**where, grant=ACCOUNT_GRANT)
    store.add_permission(**where, grant=ORG_GRANT)
    assert store.policy_statements(**where) == {ACCOUNT_GRANT.statement_id,
                                                ORG_GRANT.statement_id}
    policy = json.loads(boto3.client("lambda", region_name=REGION).get_layer_version_policy(
        LayerName="fleet", VersionNumber=version)["Policy"])
    org = next(s for s in policy["Statement"] if s["Sid"] == ORG_GRANT.statement_id)
    assert "o-a1b2c3d4e5" in json.dumps(org)
    store.remove_permission(**where, statement_id=ORG_GRANT.statement_id)
    store.remove_permission(**where, statement_id=ORG_GRANT.statement_id)
    assert store.policy_statements(**where) == {ACCOUNT_GRANT.statement_id}


def test_all_versions_and_delete(published: tuple[aws.Boto3LayerStore, int],
                                 tmp_path: Path) -> None:
    """all_versions lists every live version lowest first; a deleted one is gone."""
    store, first = published
    second = store.publish(region=REGION, layer_name="fleet", settings=model.Settings(),
                           zip_path=make_zip(tmp_path / "y.zip", {"y.py": b"Y = 1\n"}))
    assert [v.version for v in store.all_versions(region=REGION, layer_name="fleet")] == [
        first, second.version]
    store.delete_version(region=REGION, layer_name="fleet", version=first)
    assert [v.version for v in store.all_versions(region=REGION, layer_name="fleet")] == [
        second.version]


# Fake credentials and an endpoint nothing listens on (test_aws's fixture).
offline = test_aws.offline


@pytest.fixture
def stubbed(offline: None) -> Iterator[tuple[aws.Boto3LayerStore, botocore.stub.Stubber]]:
    """A store whose us-east-1 read client answers from a Stubber (all answers used)."""
    store = aws.Boto3LayerStore()
    with botocore.stub.Stubber(store.client(REGION)) as reads:
        yield store, reads
        reads.assert_no_pending_responses()


def test_a_statement_that_exists_is_a_granted_grant(
        stubbed: tuple[aws.Boto3LayerStore, botocore.stub.Stubber]) -> None:
    """ResourceConflictException (the statement ID exists: an earlier attempt made it) is
    success, never a second statement under another ID."""
    store, stubber = stubbed
    stubber.add_client_error("add_layer_version_permission",
                             service_error_code="ResourceConflictException",
                             http_status_code=409, expected_params={
                                 "LayerName": "fleet", "VersionNumber": 3,
                                 "StatementId": ACCOUNT_GRANT.statement_id,
                                 "Action": "lambda:GetLayerVersion",
                                 "Principal": "111122223333"})
    store.add_permission(region=REGION, layer_name="fleet", version=3, grant=ACCOUNT_GRANT)


def test_function_uses_reads_every_page_of_all_versions(
        stubbed: tuple[aws.Boto3LayerStore, botocore.stub.Stubber]) -> None:
    """ListFunctions is asked for every function version, page after page; each layer
    version ARN maps to the functions (name:version) using it."""
    store, stubber = stubbed
    arn = "arn:aws:lambda:us-east-1:123456789012:layer:fleet:{}"
    stubber.add_response("list_functions", {"Functions": [
        {"FunctionName": "api", "Version": "$LATEST", "Layers": [{"Arn": arn.format(3)}]}],
        "NextMarker": "m"}, expected_params={"FunctionVersion": "ALL", "MaxItems": 50})
    stubber.add_response("list_functions", {"Functions": [
        {"FunctionName": "api", "Version": "2", "Layers": [{"Arn": arn.format(1)}]},
        {"FunctionName": "job", "Version": "5", "Layers": [{"Arn": arn.format(3)}]}]},
        expected_params={"FunctionVersion": "ALL", "MaxItems": 50, "Marker": "m"})
    assert store.function_uses(region=REGION) == {
        arn.format(3): ("api:$LATEST", "job:5"), arn.format(1): ("api:2",)}


def test_code_storage_reads_account_settings_or_says_nothing(
        stubbed: tuple[aws.Boto3LayerStore, botocore.stub.Stubber]) -> None:
    """GetAccountSettings gives the storage used and its quota; an endpoint that refuses
    it (moto, missing permission) gives None instead of failing the plan."""
    store, stubber = stubbed
    stubber.add_response("get_account_settings", {
        "AccountUsage": {"TotalCodeSize": 90, "FunctionCount": 1},
        "AccountLimit": {"TotalCodeSize": 100, "CodeSizeUnzipped": 1, "CodeSizeZipped": 1,
                         "ConcurrentExecutions": 1}})
    stubber.add_client_error("get_account_settings", service_error_code="AccessDenied",
                             http_status_code=403)
    assert store.code_storage(region=REGION) == model.CodeStorage(used=90, limit=100)
    assert store.code_storage(region=REGION) is None
