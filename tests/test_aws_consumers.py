"""The consumer stores (aws.Boto3FunctionStore, aws.Boto3ParameterStore) where moto alone
cannot show what Lambda and SSM do: a stale RevisionId, an update in progress, an update
that fails or never settles, a lost reply, throttling and pacing, answers no service would
give. Faults come from the fault proxy in front of moto; the wait's clock is the test's.
"""

from __future__ import annotations

import io
import itertools
import json
import time
import zipfile
from typing import Any

import boto3
import botocore.exceptions
import faultproxy
import pytest

from reconciler import aws, errors, model
from reconciler.aws import failures

REGION = "us-east-1"
UPDATE = "UpdateFunctionConfiguration"
READ = "GetFunctionConfiguration"


class Clock:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.py", "def handler(event, context):\n    return None\n")
    return buffer.getvalue()


def _layer(name: str) -> str:
    published = boto3.client("lambda", region_name=REGION).publish_layer_version(
        LayerName=name, Content={"ZipFile": _zip()})
    return str(published["LayerVersionArn"])


def _function(name: str, layers: list[str]) -> None:
    role = f"arn:aws:iam::123456789012:role/{name}"
    boto3.client("iam", region_name=REGION).create_role(
        RoleName=name, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17",
                                                            "Statement": []}))
    boto3.client("lambda", region_name=REGION).create_function(
        FunctionName=name, Runtime="python3.12", Role=role, Handler="x.handler",
        Code={"ZipFile": _zip()}, Layers=layers)


def _layers_of(name: str) -> list[str]:
    found = boto3.client("lambda", region_name=REGION).get_function_configuration(
        FunctionName=name)
    return [layer["Arn"] for layer in found.get("Layers", [])]


def _functions(*, max_rps: float | None = None,
               clock: Clock | None = None) -> aws.Boto3FunctionStore:
    clients = aws.Boto3LayerStore(max_rps=max_rps).clients
    clock = clock or Clock()
    return aws.Boto3FunctionStore(clients, poll_seconds=1.0, clock=clock, sleep=clock.sleep)


def _configuration(status: str, reason: str = "") -> faultproxy.Reply:
    body: dict[str, Any] = {
        "FunctionName": "api", "LastUpdateStatus": status, "Layers": [],
        "FunctionArn": f"arn:aws:lambda:{REGION}:123456789012:function:api"}
    if reason:
        body["LastUpdateStatusReason"] = reason
    return faultproxy.Reply(200, json.dumps(body).encode())


@pytest.fixture
def moved(proxy: faultproxy.FaultProxy) -> tuple[str, str]:
    """A function `api` using version 1 of `shared`, and version 2's ARN: (old, new)."""
    old = _layer("shared")
    _function("api", [old])
    return old, _layer("shared")


# --- updates ------------------------------------------------------------------------------


def test_a_stale_revision_is_refused_once(proxy: faultproxy.FaultProxy,
                                          moved: tuple[str, str]) -> None:
    """Lambda's 412 PreconditionFailedException is errors.RevisionStale, sent once, and the
    function keeps its layers."""
    old, new = moved
    proxy.add(faultproxy.reject(status=412, code="PreconditionFailedException",
                                operation=UPDATE))
    with pytest.raises(errors.RevisionStale) as raised:
        _functions().update_layers(region=REGION, name="api", layers=(new,),
                                   revision_id="seen-at-plan")
    assert raised.value.aws_code == "PreconditionFailedException"
    assert "function 'api' in us-east-1" in raised.value.message
    assert proxy.count(operation=UPDATE) == 1
    assert _layers_of("api") == [old]


def test_an_update_in_progress_is_function_busy(proxy: faultproxy.FaultProxy,
                                                moved: tuple[str, str]) -> None:
    """ResourceConflictException on an update is errors.FunctionBusy, sent once."""
    proxy.add(faultproxy.reject(status=409, code="ResourceConflictException",
                                operation=UPDATE))
    with pytest.raises(errors.FunctionBusy) as raised:
        _functions().update_layers(region=REGION, name="api", layers=(moved[1],),
                                   revision_id=None)
    assert raised.value.hint is not None and "in progress" in raised.value.message
    assert proxy.count(operation=UPDATE) == 1


def test_resource_conflict_means_busy_only_for_an_update() -> None:
    """The table reads ResourceConflictException as BUSY for an update and as CONFLICT for a
    grant (whose statement exists: AddLayerVersionPermission tolerates it)."""
    answer: Any = {"Error": {"Code": "ResourceConflictException", "Message": "m"},
                   "ResponseMetadata": {"HTTPStatusCode": 409}}
    update = botocore.exceptions.ClientError(answer, UPDATE)
    grant = botocore.exceptions.ClientError(answer, "AddLayerVersionPermission")
    assert failures.fault_of(update) is failures.Fault.BUSY
    assert failures.fault_of(grant) is failures.Fault.CONFLICT


def test_a_lost_reply_on_an_update_is_outcome_unknown(proxy: faultproxy.FaultProxy,
                                                      moved: tuple[str, str]) -> None:
    """A reset after Lambda did the update is errors.OutcomeUnknown, never a second send;
    reading the function back shows the update landed."""
    proxy.add(faultproxy.reset_after_forward(operation=UPDATE))
    with pytest.raises(errors.OutcomeUnknown) as raised:
        _functions().update_layers(region=REGION, name="api", layers=(moved[1],),
                                   revision_id=None)
    assert "outcome is unknown" in raised.value.message
    assert proxy.count(operation=UPDATE) == 1
    assert _layers_of("api") == [moved[1]]


def test_a_server_error_after_an_update_is_outcome_unknown(proxy: faultproxy.FaultProxy,
                                                           moved: tuple[str, str]) -> None:
    """A 500 after the update was forwarded is errors.OutcomeUnknown, sent once."""
    proxy.add(faultproxy.server_error_after_forward(operation=UPDATE))
    with pytest.raises(errors.OutcomeUnknown):
        _functions().update_layers(region=REGION, name="api", layers=(moved[1],),
                                   revision_id=None)
    assert proxy.count(operation=UPDATE) == 1


def test_a_throttled_update_was_refused_not_unknown(proxy: faultproxy.FaultProxy,
                                                   moved: tuple[str, str]) -> None:
    """A 429 on an update is a refusal (an AwsError that is no OutcomeUnknown), sent once."""
    proxy.add(faultproxy.throttle(times=1, operation=UPDATE))
    with pytest.raises(errors.AwsError) as raised:
        _functions().update_layers(region=REGION, name="api", layers=(moved[1],),
                                   revision_id=None)
    assert not isinstance(raised.value, errors.OutcomeUnknown)
    assert raised.value.aws_code == "TooManyRequestsException"
    assert proxy.count(operation=UPDATE) == 1
    assert _layers_of("api") == [moved[0]]


def test_an_update_answer_without_the_layers_is_outcome_unknown(
        proxy: faultproxy.FaultProxy, moved: tuple[str, str]) -> None:
    """An update answered with a body that does not show the layers sent cannot be trusted:
    errors.OutcomeUnknown, not a KeyError."""
    proxy.add(faultproxy.Rule(faultproxy.ForwardThenReply(200, b"{}"), operation=UPDATE))
    with pytest.raises(errors.OutcomeUnknown, match="cannot be used"):
        _functions().update_layers(region=REGION, name="api", layers=(moved[1],),
                                   revision_id=None)


def test_a_revision_is_sent_when_given(proxy: faultproxy.FaultProxy,
                                       moved: tuple[str, str]) -> None:
    """update_layers carries the RevisionId it is given, and none when given None."""
    capture = faultproxy.Capture()
    proxy.add(faultproxy.Rule(capture, operation=UPDATE, times=None))
    store = _functions()
    store.update_layers(region=REGION, name="api", layers=(moved[1],), revision_id=None)
    store.update_layers(region=REGION, name="api", layers=(moved[0],), revision_id=None)
    bodies = [json.loads(body) for body in capture.bodies]
    assert [body.get("RevisionId") for body in bodies] == [None, None]
    assert bodies[0]["Layers"] == [moved[1]]


# --- the wait -----------------------------------------------------------------------------


def test_a_failed_update_is_reported_with_its_reason(proxy: faultproxy.FaultProxy,
                                                     moved: tuple[str, str]) -> None:
    """LastUpdateStatus Failed ends the wait with errors.FunctionUpdateFailed and Lambda's
    LastUpdateStatusReason."""
    proxy.add(faultproxy.Rule(_configuration("Failed", "the layer is too large"),
                              operation=READ))
    with pytest.raises(errors.FunctionUpdateFailed) as raised:
        _functions().wait_updated(region=REGION, name="api", timeout=30)
    assert raised.value.reason == "the layer is too large"
    assert "the layer is too large" in raised.value.message


def test_an_update_that_never_settles_times_out(proxy: faultproxy.FaultProxy,
                                                moved: tuple[str, str]) -> None:
    """InProgress at every read ends the wait after `timeout` seconds of the clock with
    errors.FunctionUpdateTimeout, asking once per second."""
    proxy.add(faultproxy.Rule(_configuration("InProgress"), operation=READ, times=None))
    clock = Clock()
    with pytest.raises(errors.FunctionUpdateTimeout, match="still in progress after 5 s"):
        _functions(clock=clock).wait_updated(region=REGION, name="api", timeout=5)
    assert sum(clock.slept) == pytest.approx(5)
    assert proxy.count(operation=READ) == 6


def test_the_wait_returns_once_the_update_settles(proxy: faultproxy.FaultProxy,
                                                  moved: tuple[str, str]) -> None:
    """Two reads InProgress, then moto's Successful: the wait returns after two sleeps."""
    proxy.add(faultproxy.Rule(_configuration("InProgress"), operation=READ, times=2))
    clock = Clock()
    _functions(clock=clock).wait_updated(region=REGION, name="api", timeout=30)
    assert (clock.slept, proxy.count(operation=READ)) == ([1.0, 1.0], 3)


# --- answers ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    {},
    {"FunctionName": "api", "FunctionArn": "a", "LastUpdateStatus": "Sideways"},
    {"FunctionName": "api", "FunctionArn": "a", "LastUpdateStatus": "Successful",
     "Layers": [{"CodeSize": 1}]},
])
def test_a_configuration_that_cannot_be_used_is_an_aws_error(
        proxy: faultproxy.FaultProxy, body: dict[str, Any]) -> None:
    """A GetFunctionConfiguration answer missing a field, or with a status Lambda never
    reports, is an AwsError naming the call, never a KeyError."""
    proxy.add(faultproxy.Rule(faultproxy.Reply(200, json.dumps(body).encode()),
                              operation=READ))
    with pytest.raises(errors.AwsError, match=r"GetFunctionConfiguration .*cannot be used"):
        _functions().function(region=REGION, name="api")


def test_a_tagged_resource_that_is_no_function_is_an_aws_error(
        proxy: faultproxy.FaultProxy) -> None:
    """GetResources listing an ARN that is not a function's is an AwsError, not a name."""
    body = {"ResourceTagMappingList": [{"ResourceARN": "arn:aws:s3:::bucket",
                                        "Tags": [{"Key": "k", "Value": "v"}]}]}
    proxy.add(faultproxy.Rule(faultproxy.Reply(200, json.dumps(body).encode()),
                              operation="GetResources"))
    with pytest.raises(errors.AwsError, match="not a function's ARN"):
        _functions().functions_tagged(region=REGION, tags=(("k", "v"),))


def test_tag_lookups_are_rate_limited(proxy: faultproxy.FaultProxy) -> None:
    """GetResources takes tokens of its own bucket: 6 calls at 5 per second (3 at once) take
    at least 0.6 s."""
    store = _functions(max_rps=5)
    started = time.monotonic()
    for _ in range(6):
        store.functions_tagged(region=REGION, tags=(("k", "v"),))
    assert time.monotonic() - started >= 0.55
    assert proxy.count(operation="GetResources") == 6


def test_function_calls_share_the_regions_lambda_bucket(proxy: faultproxy.FaultProxy,
                                                       moved: tuple[str, str]) -> None:
    """A layer store's reads, a function's reads and its updates take tokens from one bucket
    per region (--max-rps counts every Lambda call): 6 calls at 4 a second (3 at once) take
    at least 0.75 s."""
    layers = aws.Boto3LayerStore(max_rps=4)
    store = aws.Boto3FunctionStore(layers.clients)
    started = time.monotonic()
    layers.latest_version(region=REGION, layer_name="shared")  # ListLayerVersions
    store.function(region=REGION, name="api")  # GetFunctionConfiguration, ListTags
    for arn in (moved[1], moved[0], moved[1]):
        store.update_layers(region=REGION, name="api", layers=(arn,), revision_id=None)
    assert time.monotonic() - started >= 0.7
    assert proxy.count(operation=UPDATE) == 3


# --- parameters ---------------------------------------------------------------------------


def _parameters(*, max_rps: float | None = None,
                slept: list[float] | None = None) -> aws.Boto3ParameterStore:
    waits = slept if slept is not None else []
    return aws.Boto3ParameterStore(aws.Boto3LayerStore(max_rps=max_rps).clients,
                                   sleep=waits.append)


@pytest.mark.parametrize("code", ["ThrottlingException", "TooManyUpdates"])
def test_a_throttled_write_is_sent_again_after_a_wait(proxy: faultproxy.FaultProxy,
                                                      code: str) -> None:
    """SSM's throttling of PutParameter (refused, nothing written) is sent again after a
    wait: two refusals, three sends, one version."""
    proxy.add(faultproxy.reject(code=code, times=2, operation="PutParameter"))
    slept: list[float] = []
    assert _parameters(slept=slept).put(region=REGION, name="/p", value="v",
                                        overwrite=True) == 1
    assert proxy.count(operation="PutParameter") == 3
    assert len(slept) == 2


def test_a_write_throttled_to_the_end_is_refused(proxy: faultproxy.FaultProxy) -> None:
    """Throttled at every attempt: an AwsError with SSM's code (no OutcomeUnknown) after
    `attempts` sends."""
    proxy.add(faultproxy.reject(code="ThrottlingException", times=None,
                                operation="PutParameter"))
    with pytest.raises(errors.AwsError) as raised:
        _parameters().put(region=REGION, name="/p", value="v", overwrite=True)
    assert raised.value.aws_code == "ThrottlingException"
    assert not isinstance(raised.value, errors.OutcomeUnknown)
    assert proxy.count(operation="PutParameter") == aws.parameters.ATTEMPTS


def test_a_lost_reply_on_a_write_is_outcome_unknown(proxy: faultproxy.FaultProxy) -> None:
    """A reset after SSM wrote the parameter is errors.OutcomeUnknown, sent once; reading it
    back shows the write landed."""
    proxy.add(faultproxy.reset_after_forward(operation="PutParameter"))
    store = _parameters()
    with pytest.raises(errors.OutcomeUnknown):
        store.put(region=REGION, name="/p", value="v", overwrite=False)
    assert proxy.count(operation="PutParameter") == 1
    assert store.get(region=REGION, name="/p") == model.ParameterValue(value="v", version=1)


def test_a_throttled_read_is_retried(proxy: faultproxy.FaultProxy) -> None:
    """GetParameter throttled twice is retried by botocore and answers."""
    _parameters().put(region=REGION, name="/p", value="v", overwrite=False)
    proxy.add(faultproxy.reject(code="ThrottlingException", times=2,
                                operation="GetParameter"))
    found = _parameters().get(region=REGION, name="/p")
    assert found is not None and found.value == "v"
    assert proxy.count(operation="GetParameter") == 3


@pytest.mark.parametrize("max_rps", [50, None], ids=["max-rps-50", "max-rps-0"])
def test_writes_are_paced_below_ssms_quota(proxy: faultproxy.FaultProxy,
                                           max_rps: float | None) -> None:
    """PutParameter calls of a region leave at most SSM_WRITES_PER_SECOND a second, one at a
    time, even with --max-rps far above it or off (0: the store's None)."""
    layers = aws.Boto3LayerStore(max_rps=max_rps)
    slept: list[float] = []
    store = aws.Boto3ParameterStore(layers.clients, sleep=slept.append)
    # When each request leaves the client (its arrival at the proxy jitters with the load):
    # after the pacing hook, which is the first of this event's handlers.
    sent: list[float] = []
    layers.clients.ssm_write_client(REGION).meta.events.register(
        "before-send.ssm", lambda **_: sent.append(time.monotonic()))
    for number in range(4):
        store.put(region=REGION, name=f"/p{number}", value="v", overwrite=True)
    assert [call.operation for call in proxy.calls].count("PutParameter") == 4
    # The bucket schedules each send from the previous one's turn, not from when that one
    # woke: one gap can be short by a late wake-up, the span of the four cannot.
    period = 1 / aws.session.SSM_WRITES_PER_SECOND
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
    assert len(gaps) == 3
    assert sent[-1] - sent[0] >= 3 * period - 0.02
    assert min(gaps) >= period / 2


def test_a_parameter_answer_that_cannot_be_used_is_an_aws_error(
        proxy: faultproxy.FaultProxy) -> None:
    """A GetParameter answer without a Version is an AwsError naming the call."""
    body = {"Parameter": {"Name": "/p", "Value": "v", "Type": "String"}}
    proxy.add(faultproxy.Rule(faultproxy.Reply(200, json.dumps(body).encode()),
                              operation="GetParameter"))
    with pytest.raises(errors.AwsError, match=r"GetParameter for SSM parameter '/p'.*Version"):
        _parameters().get(region=REGION, name="/p")
