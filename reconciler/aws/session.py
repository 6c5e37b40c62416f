"""The botocore session and clients of a run: the standard credential chain, the short
service loader, the timeouts and retry policies, and one client per (service, region),
rate-limited per region.

It makes clients and configures them; it calls no AWS API and decides nothing about
answers (`failures` turns a failure to make a session or client into an error).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import botocore.config
import botocore.exceptions
import botocore.loaders
import botocore.session

from reconciler import ratelimit
from reconciler.aws import failures

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

# Connect, and wait for each reply, at most this long (--timeout): an endpoint that accepts
# and never answers fails a read in 3 attempts x 10 s (botocore's 60 s made it 3 minutes).
DEFAULT_TIMEOUT = 10.0
# A publish's reply comes after Lambda has read and stored the zip: its wait grows by a second
# per MB sent (a 50 MB zip's 67 MB of base64: 67 s more), and from S3 by a fixed allowance.
_PUBLISH_BYTES_PER_SECOND = 1_000_000
S3_PUBLISH_ALLOWANCE = 120.0
_USER_AGENT = "reconcile-layers"
# SSM's PutParameter quota is a few calls per second per account and region (3 at the
# standard throughput): writes are paced below it, one at a time, whatever --max-rps says.
SSM_WRITES_PER_SECOND = 2.0
Service = Literal["lambda", "sts", "s3", "ssm", "resourcegroupstaggingapi"]


def publish_read_timeout(read_timeout: float, *, body_bytes: int) -> float:
    """How long a publish of `body_bytes` waits for its reply."""
    return read_timeout + body_bytes / _PUBLISH_BYTES_PER_SECOND


class _ServicesLoader(botocore.loaders.Loader):
    """botocore's loader of data files, told which services exist when asked for one of the
    services this tool calls.

    botocore's `load_service_model` first lists every service it knows, to refuse an unknown
    name: ~410 folders listed and ~2,000 paths looked up, once for each kind of model a client
    loads (service-2, endpoint-rule-set-1): ~25 ms of every run that makes a client. For
    lambda, s3 and sts the list is made of those alone, by the same rule over the same search
    paths (AWS_DATA_PATH, ~/.aws/models, botocore's own data), so a model placed in any of
    them is found as before. Any other name (the `sso` and `sso-oidc` clients botocore's own
    credential providers make for an IAM Identity Center profile) gets botocore's full list."""

    SERVICES = ("lambda", "s3", "sts", "ssm", "resourcegroupstaggingapi")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._asking = threading.local()  # the service being loaded, in this thread

    def load_service_model(self, service_name: str, type_name: str,
                           api_version: str | None = None) -> Any:
        self._asking.service = service_name
        try:
            return super().load_service_model(service_name, type_name, api_version)
        finally:
            self._asking.service = None

    def list_available_services(self, type_name: str) -> list[str]:
        if getattr(self._asking, "service", None) not in self.SERVICES:
            found: list[str] = super().list_available_services(type_name)
            return found
        services = set()
        for location in self.search_paths:
            for service in self.SERVICES:
                folder = os.path.join(location, service)
                if not os.path.isdir(folder):
                    continue
                if any(self.file_loader.exists(os.path.join(folder, version, type_name))
                       for version in os.listdir(folder)):
                    services.add(service)
        return sorted(services)


@functools.lru_cache(maxsize=8)
def _loader(search_path: str | None) -> _ServicesLoader:
    """The loader botocore's create_loader makes for the `data_path` setting, as _ServicesLoader,
    one per setting in a process. botocore's loader keeps every data file it parses (each
    service's model, the ~1 MB of endpoints and partitions: ~0.15 s of JSON), so every session
    of a process (the CLI run in process by the tests or by a program that imports it, a plan
    and an apply in one job) parses them once. What it keeps is shared as every session's
    clients already share it (botocore's S3 handlers edit an operation's request URI in place
    on its first use, the same edit each time); two threads asking at once for a file not yet
    kept may both parse it, which costs time, not correctness."""
    if search_path is None:
        return _ServicesLoader()
    return _ServicesLoader(extra_search_paths=[
        os.path.expanduser(os.path.expandvars(path)) for path in search_path.split(os.pathsep)])


def new_session(profile: str | None) -> botocore.session.Session:
    """A botocore session of the standard chain (AWS_PROFILE or `profile`, the environment,
    the config files), as boto3.Session makes one. Raises ProfileNotFound for a missing profile
    and a BotoCoreError for an unparsable config file now, as boto3.Session does, rather than
    at the first call. botocore, not boto3: boto3 adds nothing a client here uses and costs
    ~0.1 s of start-up (it imports s3transfer); upload_file imports it where it is needed."""
    session = botocore.session.Session(profile=profile)
    session.get_scoped_config()
    session.register_component("data_loader", _loader(session.get_config_variable("data_path")))
    return session


def opened_session(profile: str | None) -> botocore.session.Session:
    """new_session, with a missing profile or an unusable configuration an AwsError."""
    try:
        return new_session(profile)
    except botocore.exceptions.BotoCoreError as exc:
        raise failures.setup_error(exc) from exc


def client_config(*, timeout: float, read_timeout: float | None = None,
                  max_attempts: int | None = None) -> botocore.config.Config:
    """The configuration of a client: `timeout` to connect and, unless `read_timeout` says
    otherwise, for each reply; with `max_attempts`, that many attempts in standard mode."""
    config = botocore.config.Config(user_agent_extra=_USER_AGENT, connect_timeout=timeout,
                                    read_timeout=read_timeout or timeout)
    # botocore's `max_attempts` counts retries only; `total_max_attempts` counts the first
    # attempt too, as --max-attempts does. Without it, the standard chain decides
    # (AWS_MAX_ATTEMPTS, AWS_RETRY_MODE, the profile).
    if max_attempts is not None:
        config = config.merge(botocore.config.Config(
            retries={"mode": "standard", "total_max_attempts": max_attempts}))
    return config


def new_client(session: botocore.session.Session, service: Service, *,
               region: str, endpoint_url: str | None, config: botocore.config.Config) -> Any:
    """A client of `session`, with configuration mistakes turned into AwsErrors."""
    try:
        return session.create_client(service, region_name=region, endpoint_url=endpoint_url,
                                     config=config)
    except (ValueError, botocore.exceptions.BotoCoreError) as exc:
        raise failures.setup_error(exc, endpoint_url=endpoint_url) from exc


class Sending:
    """Per thread, whether the change this thread is sending reached botocore's `before-send`
    (signed and about to go on the wire): a failure before it certainly changed nothing."""

    def __init__(self) -> None:
        self._local = threading.local()

    def start(self) -> None:
        """A change begins in this thread."""
        self._local.reached = False

    def mark(self, **_: Any) -> None:
        """The before-send hook of a change client."""
        self._local.reached = True

    @property
    def reached(self) -> bool:
        """Whether the change of this thread reached the wire."""
        return bool(getattr(self._local, "reached", False))


class Clients:
    """The clients of one Boto3LayerStore (and of the consumer stores that share them): for
    each region a Lambda client for reads, one for PublishLayerVersion, one for
    UpdateFunctionConfiguration, an S3 client, SSM clients for reads and for writes, and a
    Resource Groups Tagging API client, all from one session.

    Reads are retried by botocore (429 with backoff, 5xx, connection errors): `max_attempts`
    attempts in standard mode when given, else as the standard chain says (AWS_RETRY_MODE,
    AWS_MAX_ATTEMPTS, the profile; botocore's default is standard mode, 3 attempts). A
    publish is never retried by botocore. `timeout` bounds the connect and each wait for a
    reply of every attempt; `read_timeout` overrides the latter alone. Every Lambda request
    (each attempt) takes a token from its region's bucket first, unless `max_rps` is None.
    """

    def __init__(self, *, profile: str | None, endpoint_url: str | None,
                 max_attempts: int | None, read_timeout: float | None,
                 max_rps: float | None, timeout: float | None) -> None:
        self.session = opened_session(profile)
        self.endpoint_url = endpoint_url
        timeout = timeout or DEFAULT_TIMEOUT
        self.read_timeout = read_timeout or timeout
        self._config = client_config(timeout=timeout, read_timeout=self.read_timeout)
        # The publish client sends each call once: a retry of a publish whose reply was lost
        # would make a second version (total_max_attempts also overrides AWS_MAX_ATTEMPTS).
        # The change clients (function updates, parameter writes) send once for the same
        # reason: their callers read back what a lost reply may have done.
        self._publish_config = client_config(timeout=timeout, read_timeout=self.read_timeout,
                                             max_attempts=1)
        self._read_config = client_config(timeout=timeout, read_timeout=self.read_timeout,
                                          max_attempts=max_attempts)
        self._lambda: dict[str, LambdaClient] = {}
        self._publish: dict[str, LambdaClient] = {}
        self._s3: dict[str, Any] = {}
        # By (service, region): SSM and tagging clients for reads; change clients (one attempt).
        self._others: dict[tuple[str, str], Any] = {}
        self._changes: dict[tuple[str, str], Any] = {}
        self.sending = Sending()
        # A botocore Session is not thread-safe, and its loader caches the Lambda model without
        # a lock. Every client comes from this one session, under one lock: the model is parsed
        # once and each further client costs ~5 ms (measured: 20 regions in 0.10 s in turn,
        # 0.20 s from 4 threads at once; a session per client costs ~130 ms each). Clients
        # are thread-safe, so the workers of a region share its clients.
        self._lock = threading.Lock()
        # One bucket per region and quota (an account's quota is per region): Lambda's shared by
        # the region's read, publish and update clients, SSM's reads, SSM's writes, the tagging
        # API's; None when --max-rps 0 turns the limit off.
        self._max_rps = max_rps
        self._buckets: dict[tuple[str, str], ratelimit.TokenBucket] = {}

    def default_region(self) -> str | None:
        """The region the standard chain resolves (AWS_DEFAULT_REGION, the profile's region)."""
        try:
            region: str | None = self.session.get_config_variable("region")
            return region
        except botocore.exceptions.BotoCoreError as exc:
            raise failures.setup_error(exc) from exc

    def lambda_client(self, region: str) -> LambdaClient:
        """The Lambda client for reads in `region` (created once, rate-limited per region)."""
        with self._lock:
            if region not in self._lambda:
                client: LambdaClient = self._new("lambda", region=region,
                                                 config=self._read_config)
                self._limit(client, region=region)
                self._lambda[region] = client
            return self._lambda[region]

    def publish_client(self, region: str, *,
                       prepare: Callable[[LambdaClient], None]) -> LambdaClient:
        """The Lambda client that sends PublishLayerVersion in `region`: no retries;
        `prepare` registers its event hooks once, when it is made."""
        with self._lock:
            if region not in self._publish:
                client: LambdaClient = self._new("lambda", region=region,
                                                 config=self._publish_config)
                self._limit(client, region=region)
                prepare(client)
                self._publish[region] = client
            return self._publish[region]

    def s3_client(self, region: str) -> Any:
        """The S3 client for `region` (created once; tests register event hooks on it)."""
        with self._lock:
            if region not in self._s3:
                self._s3[region] = self._new("s3", region=region, config=self._read_config)
            return self._s3[region]

    def update_client(self, region: str) -> LambdaClient:
        """The Lambda client that sends UpdateFunctionConfiguration in `region`: one attempt
        (a resend after a lost reply would be refused as stale, or undo a change made since),
        rate-limited with the region's other Lambda calls, marking `sending`."""
        with self._lock:
            client: LambdaClient | None = self._changes.get(("lambda", region))
            if client is None:
                client = self._new("lambda", region=region, config=self._publish_config)
                self._limit(client, region=region)
                client.meta.events.register("before-send.lambda", self.sending.mark)
                self._changes[("lambda", region)] = client
            return client

    def ssm_client(self, region: str) -> Any:
        """The SSM client for reads in `region` (retried; rate-limited per region)."""
        return self._other("ssm", region=region)

    def ssm_write_client(self, region: str) -> Any:
        """The SSM client that sends PutParameter in `region`: one attempt (its caller sends a
        throttled write again itself, and reads back one whose reply was lost), paced at
        SSM_WRITES_PER_SECOND, marking `sending`."""
        with self._lock:
            client = self._changes.get(("ssm", region))
            if client is None:
                client = self._new("ssm", region=region, config=self._publish_config)
                # Paced whatever --max-rps says, 0 (no client-side limit) included: SSM's
                # write quota is per account and region, and a burst of writes is throttled.
                self._limit(client, region=region, quota="ssm-writes", event="ssm",
                            rate=min(self._max_rps or SSM_WRITES_PER_SECOND,
                                     SSM_WRITES_PER_SECOND), burst=1, always=True)
                client.meta.events.register("before-send.ssm", self.sending.mark)
                self._changes[("ssm", region)] = client
            return client

    def tagging_client(self, region: str) -> Any:
        """The Resource Groups Tagging API client in `region` (retried; rate-limited)."""
        return self._other("resourcegroupstaggingapi", region=region)

    def _other(self, service: Literal["ssm", "resourcegroupstaggingapi"], *,
               region: str) -> Any:
        with self._lock:
            client = self._others.get((service, region))
            if client is None:
                client = self._new(service, region=region, config=self._read_config)
                event = "ssm" if service == "ssm" else "resource-groups-tagging-api"
                self._limit(client, region=region, quota=service, event=event)
                self._others[(service, region)] = client
            return client

    def sts_client(self) -> Any:
        """A new STS client, in the default region."""
        region = self.default_region() or "us-east-1"
        with self._lock:
            return self._new("sts", region=region, config=self._read_config)

    def _new(self, service: Service, *, region: str,
             config: botocore.config.Config) -> Any:
        return new_client(self.session, service, region=region,
                          endpoint_url=self.endpoint_url, config=config)

    def _limit(self, client: Any, *, region: str, quota: str = "lambda",
               event: str = "lambda", rate: float | None = None,
               burst: int = ratelimit.DEFAULT_BURST, always: bool = False) -> None:
        """Make every request of `client` (each attempt of each call: a retry counts against
        the quota too) take a token from the bucket of `quota` in the region first (`rate`:
        --max-rps unless given; none without --max-rps unless `always`). Called with the lock
        held."""
        limit = rate or self._max_rps
        if limit is None or (self._max_rps is None and not always):
            return
        bucket = self._buckets.get((quota, region))
        if bucket is None:
            bucket = self._buckets[(quota, region)] = ratelimit.TokenBucket(
                rate=limit, burst=burst)

        # before-send runs once per attempt, just before the request goes on the wire; a
        # handler that returns a value replaces the response, so this one returns None. On a
        # publish it runs after the publish's own before-send hook (botocore calls the more
        # specific event's handlers first); waiting for a token raises nothing, so a publish
        # marked as sending still goes on the wire.
        def take_token(**_: Any) -> None:
            bucket.acquire()

        client.meta.events.register_first(f"before-send.{event}", take_token)
