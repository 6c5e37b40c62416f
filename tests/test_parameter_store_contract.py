"""The one contract of ports.ParameterStore, run against every implementation: the boto3
store on the real moto server and the in-memory fake of the tests.

Throttling, pacing and lost replies (what moto cannot do) are pinned for the boto3 store
through the fault proxy in tests/test_aws_consumers.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import fakes_consumers
import pytest

from reconciler import aws, errors, model, ports

REGION = "us-east-1"
OTHER_REGION = "eu-west-1"
NAME = "/layers/shared-utils/latest"
ARN_1 = "arn:aws:lambda:us-east-1:123456789012:layer:shared-utils:1"
ARN_2 = "arn:aws:lambda:us-east-1:123456789012:layer:shared-utils:2"


@pytest.fixture(params=["fake", "boto3-moto"])
def store(request: pytest.FixtureRequest) -> Iterator[ports.ParameterStore]:
    """Each implementation of the port, on an empty account."""
    if request.param == "fake":
        yield fakes_consumers.FakeParameterStore()
        return
    request.getfixturevalue("moto_url")
    yield aws.Boto3ParameterStore(aws.Boto3LayerStore(max_rps=None).clients)


def test_a_missing_parameter_is_none(store: ports.ParameterStore) -> None:
    """get of a parameter never written is None."""
    assert store.get(region=REGION, name=NAME) is None


def test_a_written_parameter_reads_back_as_a_string(store: ports.ParameterStore) -> None:
    """The first write is version 1, and reads back with its value as a String."""
    assert store.put(region=REGION, name=NAME, value=ARN_1, overwrite=False) == 1
    assert store.get(region=REGION, name=NAME) == model.ParameterValue(
        value=ARN_1, version=1, type="String")


def test_overwrite_makes_the_next_version(store: ports.ParameterStore) -> None:
    """A write with overwrite replaces the value under the next version."""
    store.put(region=REGION, name=NAME, value=ARN_1, overwrite=False)
    assert store.put(region=REGION, name=NAME, value=ARN_2, overwrite=True) == 2
    assert store.get(region=REGION, name=NAME) == model.ParameterValue(
        value=ARN_2, version=2, type="String")


def test_overwrite_of_a_missing_parameter_creates_it(store: ports.ParameterStore) -> None:
    """overwrite=True on a name with no parameter writes version 1."""
    assert store.put(region=REGION, name=NAME, value=ARN_1, overwrite=True) == 1


def test_without_overwrite_an_existing_parameter_is_refused(
        store: ports.ParameterStore) -> None:
    """A write without overwrite over an existing parameter is an AwsError of
    ParameterAlreadyExists, and the value stays."""
    store.put(region=REGION, name=NAME, value=ARN_1, overwrite=False)
    with pytest.raises(errors.AwsError) as raised:
        store.put(region=REGION, name=NAME, value=ARN_2, overwrite=False)
    assert raised.value.aws_code == "ParameterAlreadyExists"
    assert not isinstance(raised.value, errors.OutcomeUnknown)
    found = store.get(region=REGION, name=NAME)
    assert found is not None and found.value == ARN_1


def test_regions_are_separate(store: ports.ParameterStore) -> None:
    """A parameter written in one region is not seen in another."""
    store.put(region=REGION, name=NAME, value=ARN_1, overwrite=False)
    assert store.get(region=OTHER_REGION, name=NAME) is None
    assert store.put(region=OTHER_REGION, name=NAME, value=ARN_2, overwrite=False) == 1
