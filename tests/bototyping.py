"""Typed bridges for the tests where botocore-stubs is narrower than botocore itself, so that
the tests type-check without `type: ignore`. Test helper only: no behaviour of its own, each
function returns its argument as it is.

- botocore sets each Config option (connect_timeout, retries, ...) as an instance attribute
  in Config.__init__; the stubs declare them only as __init__ parameters.
- A before-send event handler may return a response, which botocore then uses instead of
  sending the request; the stubs type every handler as returning None."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast

import botocore.awsrequest
from botocore.config import Config


class ClientOptions(Protocol):
    """The Config options the tests read back (as botocore holds them after merging)."""

    connect_timeout: float
    read_timeout: float
    retries: dict[str, Any]


def options(config: Config) -> ClientOptions:
    """`config` itself, typed with the options the tests read."""
    return cast(ClientOptions, config)


def before_send(handler: Callable[..., botocore.awsrequest.AWSResponse | None]
                ) -> Callable[..., None]:
    """`handler` itself, typed as the stubs' `register` wants it."""
    return cast(Callable[..., None], handler)
