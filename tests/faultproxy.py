"""A fault-injection proxy: a threaded loopback HTTP server in front of the moto server, for the
end-to-end tests of what moto cannot do by itself (throttling, lost replies, resets, slow
replies, a region that is down, a store that ignores conditional headers).

Point boto3 (or the `reconcile` CLI) at `proxy.url` with AWS_ENDPOINT_URL: every request is
forwarded to the upstream server unless a rule says otherwise. A rule matches a call by its
operation (named as botocore names it: `PublishLayerVersion`, `PutObject`, ...), its service
and its signing region (read from the Authorization header's Credential scope), and acts on
the first `times` calls it matches (every call when `times` is None). Every call is recorded
(time, region, operation, status), so that tests can count calls per operation, and calls per
second per region.

It sets no environment variable and knows nothing of reconcile; it only shapes traffic.

    with faultproxy.running(moto_url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        proxy.add(faultproxy.reset_after_forward(operation="PublishLayerVersion"),
                  faultproxy.throttle(times=2, operation="ListLayerVersions", region="eu-west-1"))
        ...  # run the CLI or a store
        assert proxy.count(operation="PublishLayerVersion") == 1
        assert proxy.peak_rate(region="eu-west-1") <= 10
        assert proxy.errors == []
"""

from __future__ import annotations

import fnmatch
import http.client
import http.server
import io
import json
import re
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from typing_extensions import Unpack

# Headers that belong to one hop (RFC 9110 section 7.6.1) and must not be forwarded; `Expect`
# is answered by the proxy itself (100 Continue), and the body is re-sent with a length.
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "expect", "content-length",
})
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")

# Lambda's REST paths (botocore's service model), most specific first.
_LAMBDA_OPERATIONS: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(f"^{pattern}/?$"), operation)
    for method, pattern, operation in (
        ("POST", r"/[^/]+/layers/[^/]+/versions/\d+/policy", "AddLayerVersionPermission"),
        ("GET", r"/[^/]+/layers/[^/]+/versions/\d+/policy", "GetLayerVersionPolicy"),
        ("DELETE", r"/[^/]+/layers/[^/]+/versions/\d+/policy/[^/]+",
         "RemoveLayerVersionPermission"),
        ("GET", r"/[^/]+/layers/[^/]+/versions/\d+", "GetLayerVersion"),
        ("DELETE", r"/[^/]+/layers/[^/]+/versions/\d+", "DeleteLayerVersion"),
        ("GET", r"/[^/]+/layers/[^/]+/versions", "ListLayerVersions"),
        ("POST", r"/[^/]+/layers/[^/]+/versions", "PublishLayerVersion"),
        ("GET", r"/[^/]+/layers", "ListLayers"),
        ("GET", r"/[^/]+/functions/[^/]+/versions", "ListVersionsByFunction"),
        ("GET", r"/[^/]+/functions/[^/]+/configuration", "GetFunctionConfiguration"),
        ("PUT", r"/[^/]+/functions/[^/]+/configuration", "UpdateFunctionConfiguration"),
        ("GET", r"/[^/]+/tags/[^/]+", "ListTags"),
        ("GET", r"/[^/]+/functions/[^/]+", "GetFunction"),
        ("GET", r"/[^/]+/functions", "ListFunctions"),
    ))
_LAYER_IN_PATH = re.compile(r"^/[^/]+/layers/([^/?]+)")


@dataclass(frozen=True)
class Request:
    """One request as the proxy read it (the body fully read, chunking undone)."""

    method: str
    path: str  # without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    service: str  # from the signature's credential scope ("lambda", "s3", "sts", "")
    region: str  # the signing region ("" when the request is unsigned)

    @property
    def operation(self) -> str:
        """The operation, named as botocore's service model names it (or `METHOD /path`)."""
        target = self.headers.get("x-amz-target", "")
        if target:  # the JSON protocol's services (SSM, the tagging API): `Prefix.Operation`
            return target.rpartition(".")[2]
        if self.service == "lambda":
            if "find" in self.query:
                return "GetLayerVersionByArn"
            for method, pattern, operation in _LAMBDA_OPERATIONS:
                if method == self.method and pattern.match(self.path):
                    return operation
        elif self.service == "s3":
            return self._s3_operation()
        elif self.service == "sts":
            form = urllib.parse.parse_qs(self.body.decode("utf-8", "replace"))
            return (form.get("Action") or [f"{self.method} {self.path}"])[0]
        return f"{self.method} {self.path}"

    @property
    def key(self) -> str:
        """The S3 object key (path style: /bucket/key), or the Lambda layer name; else ""."""
        if self.service == "s3":
            _, _, key = self.path.lstrip("/").partition("/")
            return urllib.parse.unquote(key)
        found = _LAYER_IN_PATH.match(self.path)
        return urllib.parse.unquote(found.group(1)) if found else ""

    def _s3_operation(self) -> str:
        has_key = bool(self.key)
        if has_key:
            if self.method == "PUT":
                return "CopyObject" if "x-amz-copy-source" in self.headers else "PutObject"
            return {"GET": "GetObject", "HEAD": "HeadObject",
                    "DELETE": "DeleteObject"}.get(self.method, f"{self.method} {self.path}")
        if self.method == "GET":
            for marker, operation in (("versioning", "GetBucketVersioning"),
                                      ("versions", "ListObjectVersions"),
                                      ("list-type", "ListObjectsV2")):
                if marker in self.query:
                    return operation
            return "ListObjects"
        if self.method == "POST" and "delete" in self.query:
            return "DeleteObjects"
        if self.method == "PUT" and "versioning" in self.query:
            return "PutBucketVersioning"
        return {"PUT": "CreateBucket", "HEAD": "HeadBucket",
                "DELETE": "DeleteBucket"}.get(self.method, f"{self.method} {self.path}")


# --- what a rule does ----------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """Answer with this status and body without forwarding: upstream never sees the call."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"


@dataclass(frozen=True)
class ForwardThenReply:
    """Forward (upstream does the work), drop upstream's answer and reply with this instead."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"


@dataclass(frozen=True)
class Reset:
    """Reset the client's TCP connection (SO_LINGER 0) instead of replying; `forward` first or
    not (with it, upstream did the work and the client cannot know)."""

    forward: bool = True


@dataclass(frozen=True)
class Delay:
    """Forward and reply upstream's answer, but wait `seconds` first (`after_forward`: the work
    is done upstream before the wait, as with a reply slower than the client's read timeout)."""

    seconds: float
    after_forward: bool = True


@dataclass(frozen=True)
class StripHeaders:
    """Forward without these request headers (e.g. a store that ignores If-None-Match)."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class Hold:
    """Hold the call where it is (`forward`: upstream did the work first; else it has not
    seen the call) and answer nothing until the test calls `release()`: then reply upstream's
    answer (forwarding first when it had not). `arrived` is set when the call is held, so a
    test can act (kill, signal) at that exact point. When the proxy stops, a call still held
    is dropped (a reset, never forwarded)."""

    forward: bool = True
    arrived: threading.Event = field(default_factory=threading.Event, compare=False)
    released: threading.Event = field(default_factory=threading.Event, compare=False)
    abandoned: threading.Event = field(default_factory=threading.Event, compare=False)

    def release(self) -> None:
        """Let the held call go on."""
        self.released.set()

    def wait_arrived(self, timeout: float = 60) -> None:
        """Block until a call is held; AssertionError when none came within `timeout`."""
        assert self.arrived.wait(timeout), "no call reached the hold"

    def abandon(self) -> None:
        """Drop a held call (and any later one): reset, not forwarded."""
        self.abandoned.set()
        self.released.set()


@dataclass(frozen=True)
class Capture:
    """Forward as usual, keeping each matching request's body (the zip a publish sends)."""

    bodies: list[bytes] = field(default_factory=list, compare=False)


Action = Reply | ForwardThenReply | Reset | Delay | StripHeaders | Hold | Capture


@dataclass
class Rule:
    """Which calls to act on and what to do. Unset match fields match anything; `key` is a
    glob on the S3 object key or the Lambda layer name. Acts on the first `times` matching
    calls (None: all of them), counted in `used`."""

    action: Action
    operation: str | None = None
    service: str | None = None
    region: str | None = None
    method: str | None = None
    key: str | None = None
    times: int | None = 1
    used: int = field(default=0, init=False)

    def matches(self, request: Request) -> bool:
        """True when this rule applies to `request` and has not run out."""
        if self.times is not None and self.used >= self.times:
            return False
        return ((self.operation is None or self.operation == request.operation)
                and (self.service is None or self.service == request.service)
                and (self.region is None or self.region == request.region)
                and (self.method is None or self.method == request.method)
                and (self.key is None or fnmatch.fnmatchcase(request.key, self.key)))


class Match(TypedDict, total=False):
    """The match fields of a Rule, as keyword arguments of the rule helpers below."""

    operation: str
    service: str
    region: str
    method: str
    key: str


def _aws_json_error(code: str, message: str) -> bytes:
    return json.dumps({"__type": code, "message": message, "Message": message}).encode()


def throttle(*, times: int | None = 2, **match: Unpack[Match]) -> Rule:
    """Reply 429 TooManyRequestsException (Lambda's throttling) without forwarding."""
    return Rule(Reply(429, _aws_json_error("TooManyRequestsException", "Rate exceeded")),
                times=times, **match)


def reject(*, status: int = 400, code: str = "InvalidParameterValueException",
           message: str = "rejected by the fault proxy", times: int | None = None,
           **match: Unpack[Match]) -> Rule:
    """Reply a 4xx AWS JSON error without forwarding (a request Lambda refuses)."""
    return Rule(Reply(status, _aws_json_error(code, message)), times=times, **match)


def server_error_after_forward(*, times: int | None = 1, **match: Unpack[Match]) -> Rule:
    """Forward (the work is done), then reply 500 ServiceException."""
    return Rule(ForwardThenReply(500, _aws_json_error("ServiceException", "internal error")),
                times=times, **match)


def reset_after_forward(*, times: int | None = 1, **match: Unpack[Match]) -> Rule:
    """Forward (the work is done), then reset the connection instead of replying."""
    return Rule(Reset(forward=True), times=times, **match)


def delay_reply(*, seconds: float, times: int | None = 1, **match: Unpack[Match]) -> Rule:
    """Forward (the work is done), then wait `seconds` before replying."""
    return Rule(Delay(seconds, after_forward=True), times=times, **match)


def strip_headers(*names: str, times: int | None = None, **match: Unpack[Match]) -> Rule:
    """Forward every matching call without the named request headers."""
    return Rule(StripHeaders(tuple(name.lower() for name in names)), times=times, **match)


def hold(*, forward: bool = True, times: int | None = 1, **match: Unpack[Match]) -> Rule:
    """Hold the matching calls until released (see Hold); `rule.action` is the Hold."""
    return Rule(Hold(forward=forward), times=times, **match)


def region_down(region: str, *, status: int = 503, times: int | None = None) -> Rule:
    """Every call signed for `region` fails with `status`, never forwarded."""
    body = _aws_json_error("ServiceUnavailableException", f"{region} is down (fault proxy)")
    return Rule(Reply(status, body), region=region, times=times)


# --- what happened -------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One call the proxy saw: when it arrived (time.monotonic()), where, what, and what the
    client got (`status` None: the connection was reset); `forwarded`: upstream saw it."""

    time: float
    region: str
    service: str
    operation: str
    method: str
    path: str
    key: str
    status: int | None
    forwarded: bool
    action: str  # "forward" or the rule action's class name
    request_bytes: int = 0  # the request body's length (a zip sent inline is megabytes)
    # Seconds from sending the request upstream to having its whole reply: the server's own
    # time (a benchmark subtracts it to show the client's); 0 when it was not forwarded.
    upstream_seconds: float = 0.0


@dataclass
class FaultProxy:
    """A running proxy: add rules, read the calls. Thread safe."""

    upstream: str
    url: str = ""
    rules: list[Rule] = field(default_factory=list)
    _calls: list[Call] = field(default_factory=list)
    _errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, *rules: Rule) -> None:
        """Append rules (the first matching rule acts on a call)."""
        with self._lock:
            self.rules.extend(rules)

    def clear(self) -> None:
        """Drop every rule and every recorded call."""
        with self._lock:
            self.rules.clear()
            self._calls.clear()

    @property
    def calls(self) -> list[Call]:
        """A copy of the calls so far, in the order they were answered."""
        with self._lock:
            return list(self._calls)

    def count(self, *, operation: str | None = None, region: str | None = None,
              status: int | str | None = "any", forwarded: bool | None = None) -> int:
        """How many calls match (status "any": whatever it was; None: reset)."""
        return sum(1 for call in self.calls
                   if (operation is None or call.operation == operation)
                   and (region is None or call.region == region)
                   and (status == "any" or call.status == status)
                   and (forwarded is None or call.forwarded == forwarded))

    def peak_rate(self, *, region: str | None = None, window: float = 1.0,
                  operation: str | None = None) -> int:
        """The most calls (of `region`, of `operation`) that started within any `window`
        seconds: the calls per second a region saw at its busiest."""
        times = sorted(call.time for call in self.calls
                       if (region is None or call.region == region)
                       and (operation is None or call.operation == operation))
        peak, start = 0, 0
        for end, moment in enumerate(times):
            while moment - times[start] >= window:
                start += 1
            peak = max(peak, end - start + 1)
        return peak

    def _take_action(self, request: Request) -> Action | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(request):
                    rule.used += 1
                    return rule.action
        return None

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    @property
    def errors(self) -> list[str]:
        """What went wrong inside the proxy itself (a test can assert there was nothing)."""
        with self._lock:
            return list(self._errors)

    def _failed(self, what: str) -> None:
        with self._lock:
            self._errors.append(what)


def _signature_scope(headers: dict[str, str]) -> tuple[str, str]:
    """(region, service) of a SigV4 Authorization header; ("", "") when there is none."""
    found = _CREDENTIAL_SCOPE.search(headers.get("authorization", ""))
    return (found.group(1), found.group(2)) if found else ("", "")


def _handler_for(proxy: FaultProxy) -> type[http.server.BaseHTTPRequestHandler]:
    upstream = urllib.parse.urlsplit(proxy.upstream)

    class Handler(http.server.BaseHTTPRequestHandler):
        # HTTP/1.1 keeps botocore's pooled connections alive across calls, as AWS does, so
        # that a reset hits a connection the client believes healthy.
        protocol_version = "HTTP/1.1"
        # The reply's headers and body are two writes: with Nagle's algorithm the body waited
        # for the client's delayed ACK of the headers (~40 ms on Linux), which a benchmark
        # then counted as the client's own time (AWS's endpoints do not make clients wait so).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:
            return None  # the calls are recorded; stderr stays quiet

        def _read_body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline().strip():
                            pass  # trailers
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _request(self) -> Request:
            headers = {name.lower(): value for name, value in self.headers.items()}
            split = urllib.parse.urlsplit(self.path)
            region, service = _signature_scope(headers)
            return Request(method=self.command, path=split.path,
                           query=urllib.parse.parse_qs(split.query, keep_blank_values=True),
                           headers=headers, body=self._read_body(), service=service,
                           region=region)

        def _forward(self, request: Request, *, strip: tuple[str, ...] = ()) -> tuple[
                int, list[tuple[str, str]], bytes]:
            connection = http.client.HTTPConnection(upstream.hostname or "127.0.0.1",
                                                    upstream.port, timeout=60)
            started = time.monotonic()
            try:
                headers = {name: value for name, value in self.headers.items()
                           if name.lower() not in _HOP_BY_HOP and name.lower() not in strip}
                headers["Content-Length"] = str(len(request.body))
                connection.request(self.command, self.path, body=request.body,
                                   headers=headers)
                response = connection.getresponse()
                body = response.read()
                self.upstream_seconds += time.monotonic() - started
                return response.status, response.getheaders(), body
            finally:
                connection.close()

        def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in _HOP_BY_HOP and name.lower() != "server" \
                        and name.lower() != "date":
                    self.send_header(name, value)
            length = str(len(body))
            if self.command == "HEAD":  # a HEAD reply tells the length of the body it omits
                length = next((value for name, value in headers
                               if name.lower() == "content-length"), length)
            self.send_header("Content-Length", length)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()

        def _reset(self) -> None:
            """Close with SO_LINGER 0: the kernel sends RST, not FIN (a dropped connection)."""
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            # The socket only closes once the file objects made from it are closed too.
            self.rfile.close()
            self.wfile.close()
            self.connection.close()
            self.close_connection = True
            # http.server flushes wfile after every request: give it something harmless.
            self.wfile = io.BytesIO()

        def _handle(self) -> None:
            try:
                self._proxy_one()
            except ConnectionError:
                self.close_connection = True  # the client hung up: nothing to answer
            except Exception as exc:
                # A proxy bug must fail the test that met it, not vanish into a thread.
                proxy._failed(f"{self.command} {self.path}: {exc!r}")
                raise

        upstream_seconds = 0.0  # this request's time upstream (see Call)

        def _proxy_one(self) -> None:
            arrived = time.monotonic()
            self.upstream_seconds = 0.0
            request = self._request()
            action = proxy._take_action(request)

            def record(status: int | None, *, forwarded: bool) -> None:
                # Recorded before the client hears anything, so that a test that has seen
                # its call fail also sees it counted.
                proxy._record(Call(time=arrived, region=request.region,
                                   service=request.service, operation=request.operation,
                                   method=request.method, path=request.path, key=request.key,
                                   status=status, forwarded=forwarded,
                                   action=type(action).__name__ if action else "forward",
                                   request_bytes=len(request.body),
                                   upstream_seconds=self.upstream_seconds))

            if isinstance(action, Reply | ForwardThenReply):
                forwarded = isinstance(action, ForwardThenReply)
                if forwarded:
                    self._forward(request)
                record(action.status, forwarded=forwarded)
                self._reply(action.status, [("Content-Type", action.content_type),
                                            ("x-amzn-RequestId", "fault-proxy")], action.body)
            elif isinstance(action, Hold):
                self._hold(request, action, record)
            elif isinstance(action, Reset):
                if action.forward:
                    self._forward(request)
                record(None, forwarded=action.forward)
                self._reset()
            else:
                if isinstance(action, Capture):
                    action.bodies.append(request.body)
                if isinstance(action, Delay) and not action.after_forward:
                    time.sleep(action.seconds)
                strip = action.names if isinstance(action, StripHeaders) else ()
                status, headers, body = self._forward(request, strip=strip)
                record(status, forwarded=True)
                if isinstance(action, Delay) and action.after_forward:
                    time.sleep(action.seconds)
                try:
                    self._reply(status, headers, body)
                except OSError:
                    # The client gave up waiting (its read timeout) and closed the socket.
                    self.close_connection = True

        def _hold(self, request: Request, action: Hold,
                  record: Callable[..., None]) -> None:
            answer = self._forward(request) if action.forward else None
            action.arrived.set()
            action.released.wait()
            if action.abandoned.is_set():
                record(None, forwarded=action.forward)
                self._reset()
                return
            status, headers, body = answer or self._forward(request)
            record(status, forwarded=True)
            try:
                self._reply(status, headers, body)
            except OSError:
                self.close_connection = True  # the client is gone (killed while held)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle

    return Handler


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return None  # a client that hung up is expected; the handler records real errors


@contextmanager
def running(upstream: str) -> Iterator[FaultProxy]:
    """Run a proxy on 127.0.0.1 (a free port) in front of `upstream` (an http:// URL)."""
    proxy = FaultProxy(upstream=upstream.rstrip("/"))
    server = _Server(("127.0.0.1", 0), _handler_for(proxy))
    host, port = server.server_address[:2]
    proxy.url = f"http://{host!s}:{port}"
    thread = threading.Thread(target=server.serve_forever, name="fault-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        for rule in proxy.rules:
            if isinstance(rule.action, Hold):
                rule.action.abandon()
        server.shutdown()
        server.server_close()
        thread.join()

