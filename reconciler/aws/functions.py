"""`Boto3FunctionStore`: the botocore implementation of the `FunctionStore` port (the Lambda
functions that consume a layer), per region.

Reads go through the region's Lambda read client (retried, and counted in --max-rps with the
layer calls); functions are found by tags through the Resource Groups Tagging API's
GetResources, one paged call per region whatever the account holds (moto serves it for
`lambda:function` too; ListFunctions and a ListTags per function would cost a call per
function of the account). UpdateFunctionConfiguration is sent once, through a client of its
own without retries: a resend after a lost reply would be refused as stale (its RevisionId
is spent) or undo a change made since, so a failure says what is known (refused: the
table's error; sent without a clear answer: errors.OutcomeUnknown). The wait polls
GetFunctionConfiguration's LastUpdateStatus rather than botocore's `function_updated_v2`
waiter: that waiter calls GetFunction (another permission, and a presigned URL of the code
this tool never needs), bounds its time by attempts rather than a clock, and says "Failed"
and "timed out" in one exception. Every answer is read through `answers` and every failure
through `failures`' table; whether to send an update again is the caller's decision.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import botocore.exceptions

from reconciler import errors, model
from reconciler.aws import answers, failures, session
from reconciler.aws.failures import Fault

# How often the wait for an update asks again (botocore's waiter asks every second).
POLL_SECONDS = 1.0
# A function's ARN as the tagging API lists it: the name is what follows `function:`.
_FUNCTION_ARN = re.compile(r"^arn:[a-z-]+:lambda:[a-z0-9-]+:\d{12}:function:([A-Za-z0-9_-]+)$")
_STATUSES = {status.value: status for status in model.UpdateStatus}


class Boto3FunctionStore:
    """FunctionStore over botocore, with the clients of a run (`session.Clients`: share the
    layer store's, so that the region's Lambda calls take their tokens from one bucket).

    `clock` and `sleep` drive the wait for an update (tests give their own)."""

    def __init__(self, clients: session.Clients, *, poll_seconds: float = POLL_SECONDS,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._clients = clients
        self._poll_seconds = poll_seconds
        self._clock, self._sleep = clock, sleep

    def function(self, *, region: str, name: str) -> model.FunctionConfig | None:
        """GetFunctionConfiguration, then ListTags of the function it names; None when there
        is no such function in `region`."""
        config = self._read(region=region, name=name)
        if config is None:
            return None
        client = self._clients.lambda_client(region)
        call = failures.function_call("ListTags", function=name, region=region,
                                      endpoint=failures.endpoint_of(client))
        with failures.calling(call):
            listed = client.list_tags(Resource=config.arn)
        with failures.reading(call):
            tags = _tags(answers.may(listed, "Tags", dict) or {})
        return model.FunctionConfig(
            name=config.name, arn=config.arn, layers=config.layers,
            revision_id=config.revision_id, update_status=config.update_status,
            update_reason=config.update_reason, tags=tags)

    def functions_tagged(self, *, region: str, tags: Sequence[tuple[str, str]]) -> list[str]:
        """GetResources of type `lambda:function` carrying every one of `tags`, every page;
        each listed function's own tags are checked again (the API also lists resources
        that were tagged once), and the names returned sorted."""
        if not tags:
            return []
        wanted = dict(tags)
        client = self._clients.tagging_client(region)
        call = failures.tagging_call(region=region, endpoint=failures.endpoint_of(client))
        names: set[str] = set()
        token = ""
        while True:
            kwargs: dict[str, Any] = {
                "ResourceTypeFilters": ["lambda:function"],
                "TagFilters": [{"Key": key, "Values": [value]}
                               for key, value in sorted(wanted.items())],
            }
            if token:
                kwargs["PaginationToken"] = token
            with failures.calling(call):
                page = client.get_resources(**kwargs)
            with failures.reading(call):
                for item in answers.may(page, "ResourceTagMappingList", list) or []:
                    arn = answers.need(item, "ResourceARN", str)
                    found = _FUNCTION_ARN.match(arn)
                    if found is None:
                        raise answers.BadAnswer(f"its ResourceARN {answers.shown(arn)} is not "
                                                "a function's ARN")
                    carried = {answers.need(tag, "Key", str): answers.may(tag, "Value", str)
                               or "" for tag in answers.may(item, "Tags", list) or []}
                    if all(carried.get(key) == value for key, value in wanted.items()):
                        names.add(found.group(1))
                token = answers.may(page, "PaginationToken", str) or ""
            if not token:
                return sorted(names)

    def update_layers(self, *, region: str, name: str, layers: Sequence[str],
                      revision_id: str | None) -> str | None:
        """UpdateFunctionConfiguration with Layers (and RevisionId when given), sent once.

        Raises errors.RevisionStale (PreconditionFailedException) and errors.FunctionBusy
        (ResourceConflictException): refused, nothing changed; errors.OutcomeUnknown when it
        was sent without a clear answer, or with an answer that does not show `layers`."""
        client = self._clients.update_client(region)
        call = failures.function_call("UpdateFunctionConfiguration", function=name,
                                      region=region, endpoint=failures.endpoint_of(client))
        kwargs: dict[str, Any] = {"FunctionName": name, "Layers": list(layers)}
        if revision_id is not None:
            kwargs["RevisionId"] = revision_id
        sending = self._clients.sending
        sending.start()
        try:
            answer = client.update_function_configuration(**kwargs)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise failures.change_error(exc, call, sent=sending.reached) from exc
        except answers.PARSER_ERRORS as exc:
            if not sending.reached:
                raise  # before the request was sent: not an answer, a bug
            raise failures.change_unknown(
                answers.BadAnswer(f"botocore could not parse it ({exc})"), call) from exc
        try:
            shown = _layer_arns(answer)
            if shown != tuple(layers):
                raise answers.BadAnswer(f"its Layers are {list(shown)}, not the ones sent")
            return answers.may(answer, "RevisionId", str)
        except answers.BadAnswer as problem:
            raise failures.change_unknown(problem, call) from problem

    def wait_updated(self, *, region: str, name: str, timeout: float) -> None:
        """Ask GetFunctionConfiguration every `poll_seconds` until LastUpdateStatus is
        Successful, at most `timeout` seconds: errors.FunctionUpdateFailed (with its
        LastUpdateStatusReason) when it is Failed, errors.FunctionUpdateTimeout when the time
        ran out, errors.AwsError when the function is gone."""
        deadline = self._clock() + timeout
        target = f"function '{name}' in {region}"
        while True:
            config = self._read(region=region, name=name)
            if config is None:
                raise errors.AwsError(f"{target} is gone while its update was awaited")
            if config.update_status is model.UpdateStatus.SUCCESSFUL:
                return
            if config.update_status is model.UpdateStatus.FAILED:
                because = f": {config.update_reason}" if config.update_reason else ""
                raise errors.FunctionUpdateFailed(
                    f"the update of {target} failed (LastUpdateStatus Failed){because}",
                    reason=config.update_reason,
                    hint="fix what the reason names, then apply again")
            left = deadline - self._clock()
            if left <= 0:
                raise errors.FunctionUpdateTimeout(
                    f"the update of {target} was still in progress after {timeout:g} s",
                    hint="it may still finish: run plan to see where it stands")
            self._sleep(min(self._poll_seconds, left))

    def _read(self, *, region: str, name: str) -> model.FunctionConfig | None:
        """GetFunctionConfiguration, checked field by field (tags not read); None when there
        is no such function."""
        client = self._clients.lambda_client(region)
        call = failures.function_call("GetFunctionConfiguration", function=name, region=region,
                                      endpoint=failures.endpoint_of(client))
        answer: Any = None
        with failures.calling(call, tolerate=frozenset({Fault.NOT_FOUND})):
            answer = client.get_function_configuration(FunctionName=name)
        if answer is None:
            return None
        with failures.reading(call):
            status = answers.need(answer, "LastUpdateStatus", str)
            if status not in _STATUSES:
                raise answers.BadAnswer(f"its LastUpdateStatus {answers.shown(status)} is not "
                                        "one Lambda reports")
            return model.FunctionConfig(
                name=answers.need(answer, "FunctionName", str),
                arn=answers.need(answer, "FunctionArn", str),
                layers=_layer_arns(answer),
                revision_id=answers.may(answer, "RevisionId", str),
                update_status=_STATUSES[status],
                update_reason=answers.may(answer, "LastUpdateStatusReason", str) or "")


def _layer_arns(answer: Any) -> tuple[str, ...]:
    """The ARNs of an answer's Layers, in order."""
    return tuple(answers.need(layer, "Arn", str)
                 for layer in answers.may(answer, "Layers", list) or [])


def _tags(raw: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """ListTags' Tags as sorted (key, value) pairs; BadAnswer for a value not a string."""
    for key, value in raw.items():
        if not isinstance(value, str):
            raise answers.BadAnswer(f"its Tags.{key} is {answers.shown(value)}, not a string")
    return tuple(sorted(raw.items()))
