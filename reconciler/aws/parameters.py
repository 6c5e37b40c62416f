"""`Boto3ParameterStore`: the botocore implementation of the `ParameterStore` port (SSM
Parameter Store's String parameters), per region.

Reads go through a retried SSM client, rate-limited per region (--max-rps). PutParameter is
sent through a client of its own without botocore's retries, paced below SSM's write quota
(session.SSM_WRITES_PER_SECOND): a throttled write (ThrottlingException, TooManyUpdates:
refused, nothing written) is sent again here after a jittered wait, within `attempts`; a write
sent without a clear answer is errors.OutcomeUnknown, never resent blind (without Overwrite
a resend of a write that landed would be refused as existing). Every answer is read through
`answers` and every failure through `failures`' table.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import botocore.exceptions

from reconciler import errors, model
from reconciler.aws import answers, failures, session
from reconciler.aws.failures import Fault

# The sends of one write when SSM throttles it, and the waits between them: the first at most
# BACKOFF_BASE_SECONDS, doubled after each further one, capped, drawn below that bound.
ATTEMPTS = 5
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 8.0


class Boto3ParameterStore:
    """ParameterStore over botocore, with the clients of a run (`session.Clients`).

    `sleep` is the wait after a throttled write (tests give their own)."""

    def __init__(self, clients: session.Clients, *, attempts: int = ATTEMPTS,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._clients = clients
        self._attempts = attempts
        self._sleep = sleep

    def get(self, *, region: str, name: str) -> model.ParameterValue | None:
        """GetParameter; None when SSM says ParameterNotFound."""
        client = self._clients.ssm_client(region)
        call = failures.parameter_call("GetParameter", name=name, region=region,
                                       endpoint=failures.endpoint_of(client))
        answer: Any = None
        with failures.calling(call, tolerate=frozenset({Fault.NOT_FOUND})):
            answer = client.get_parameter(Name=name)
        if answer is None:
            return None
        with failures.reading(call):
            version = answers.need(answer, "Parameter.Version", int)
            if version < 1:
                raise answers.BadAnswer(f"its Parameter.Version {version} is not a version")
            return model.ParameterValue(value=answers.need(answer, "Parameter.Value", str),
                                        version=version,
                                        type=answers.need(answer, "Parameter.Type", str))

    def put(self, *, region: str, name: str, value: str, overwrite: bool) -> int:
        """PutParameter of a String, paced; a throttled write is sent again after a wait,
        within `attempts`. Its new version."""
        client = self._clients.ssm_write_client(region)
        call = failures.parameter_call("PutParameter", name=name, region=region,
                                       endpoint=failures.endpoint_of(client))
        sending = self._clients.sending
        for attempt in range(self._attempts):
            sending.start()
            try:
                answer = client.put_parameter(Name=name, Value=value, Type="String",
                                              Overwrite=overwrite)
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                error = failures.change_error(exc, call, sent=sending.reached)
                throttled = (not isinstance(error, errors.OutcomeUnknown)
                             and error.aws_code in errors.THROTTLING_CODES)
                if throttled and attempt + 1 < self._attempts:
                    self._sleep(random.uniform(0, min(BACKOFF_CAP_SECONDS,
                                                      BACKOFF_BASE_SECONDS * 2 ** attempt)))
                    continue
                raise error from exc
            except answers.PARSER_ERRORS as exc:
                if not sending.reached:
                    raise  # before the request was sent: not an answer, a bug
                raise failures.change_unknown(
                    answers.BadAnswer(f"botocore could not parse it ({exc})"), call) from exc
            try:
                return answers.need(answer, "Version", int)
            except answers.BadAnswer as problem:
                raise failures.change_unknown(problem, call) from problem
        raise AssertionError("unreachable: the last attempt returns or raises")
