"""The package index client (ports.PackageIndex): a Python package index's simple API over
HTTP(S) with the standard library alone, as pip reads it: a project's page (read within a size
limit, then by builds.simpleapi), and a file's bytes streamed, behind the standard proxy and CA
bundle variables, retried with backoff.

Shell: it owns the network conversation with an index and nothing else; it never stores a
wheel (builds.cache does) and never trusts a digest (the caller verifies every byte against
its lock). Credentials in the index URL are sent as basic auth to that URL's origin alone and
never appear in `url` or in any message. Nothing is set up until the first request, so a plan
that needs no wheel pays nothing for the client.
"""

from __future__ import annotations

import base64
import http.client
import io
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, BinaryIO, NoReturn, TypeVar

import reconciler
from reconciler import builds, errors, model, ports
from reconciler.builds import simpleapi

DEFAULT_URL = "https://pypi.org/simple"
# After a layer's own `index_url`, in this order (the README's "Where wheels come from").
URL_VARIABLES = ("RECONCILE_INDEX_URL", "PIP_INDEX_URL")
# PyPI's largest project pages are a few MB; a page past this is not an index page.
MAX_PAGE_BYTES = 64 * 1024 * 1024
# A wheel's compressed bytes cannot exceed the unzipped size a layer may have (with room for
# the zip's own records): anything longer is not a wheel a layer could hold.
MAX_FETCH_BYTES = model.MAX_UNZIPPED_BYTES + 16 * 1024 * 1024
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
# The first wait between attempts, doubled each time up to the cap; a Retry-After the index
# sends is honoured up to MAX_RETRY_AFTER seconds.
DEFAULT_BACKOFF = 0.5
_MAX_BACKOFF = 8.0
MAX_RETRY_AFTER = 30.0
# Where the CA bundle comes from, first set wins (OpenSSL's, requests' and pip's variables).
CA_BUNDLE_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT")
_CA_HINT = ("give the CA bundle that signs the index's certificate in SSL_CERT_FILE (or "
            "REQUESTS_CA_BUNDLE, or PIP_CERT)")
_SCHEMES = ("https", "http")
_PROGRESS_INTERVAL = 0.5
_READ_BYTES = 1024 * 1024

_T = TypeVar("_T")


def chosen_url(index_url: str | None, environ: Mapping[str, str]) -> str:
    """The index a requirements.txt layer reads: its own `index_url`, else the first of
    URL_VARIABLES set in `environ`, else PyPI."""
    if index_url:
        return index_url
    return next((environ[name] for name in URL_VARIABLES if environ.get(name)), DEFAULT_URL)


def shown(url: str) -> str:
    """`url` fit for a message: no user information, no query string (a signed URL's token),
    no fragment."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _without_userinfo(url: str) -> str:
    """`url` as requested: its user information (sent as a header instead) and its fragment
    removed, its query kept."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(netloc=urllib.parse.urlsplit(shown(url)).netloc,
                                                  fragment=""))


def _basic_auth(url: str) -> str | None:
    """The Authorization header for the user information in `url`, if it has any."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return None
    pair = (f"{urllib.parse.unquote(parts.username)}:"
            f"{urllib.parse.unquote(parts.password or '')}")
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port or {"https": 443, "http": 80}.get(scheme)


class _Transient(Exception):
    """A failure worth another attempt (a dropped connection, a timeout, 429, 5xx); `wait` is
    the index's Retry-After, when it sent one."""

    def __init__(self, reason: str, *, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


class _NotFound(Exception):
    """HTTP 404 (or 410): the index has no such page or file."""


class _Refused(Exception):
    """A request this client will not make (a redirect to another scheme)."""


class IndexClient(ports.PackageIndex):
    """One package index's simple API root (`url`, e.g. https://pypi.org/simple), with the
    proxies and CA bundle of `environ`. `progress`, when given, gets a line now and then
    while a file downloads. Safe to use from several threads at once."""

    def __init__(self, *, url: str, environ: Mapping[str, str],
                 progress: Callable[[str], None] | None = None,
                 retries: int = DEFAULT_RETRIES, timeout: float = DEFAULT_TIMEOUT,
                 backoff: float = DEFAULT_BACKOFF) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme.lower() not in _SCHEMES or not parts.hostname:
            raise errors.ContentError(f"the package index URL {shown(url)!r} is not an https "
                                      "or http URL", hint="give the index's simple API root, "
                                                          f"such as {DEFAULT_URL}")
        self._root = shown(url).rstrip("/")
        self._environ = dict(environ)
        self._progress = progress
        self._retries = max(0, retries)
        self._timeout = timeout
        self._backoff = backoff
        # Origin -> Authorization header; read by _Auth on every request, redirects included.
        self._credentials: dict[tuple[str, str, int | None], str] = {}
        header = _basic_auth(url)
        if header is not None:
            self._credentials[_origin(url)] = header
        self._opener: urllib.request.OpenerDirector | None = None
        self._opener_lock = threading.Lock()

    @property
    def url(self) -> str:
        return self._root

    def wheels(self, name: str) -> list[builds.Wheel]:
        if not simpleapi.is_project_name(name):
            raise errors.ContentError(f"the index {self.url}: {name!r} is not a project name")
        project = simpleapi.canonical_name(name)
        where = f"the index {self.url}, project {project}"
        page_url = f"{self._root}/{urllib.parse.quote(project)}/"

        def attempt() -> tuple[str, str, str | None, bytes] | None:
            try:
                response = self._open(page_url, accept=simpleapi.ACCEPT, where=where)
            except _NotFound:
                return None
            with response:
                headers = response.headers
                body = _read_within(response, limit=MAX_PAGE_BYTES, where=where)
                return (response.url, headers.get_content_type(),
                        headers.get_content_charset(), body)

        page = self._retrying(attempt, where=where)
        if page is None:
            return []
        final_url, content_type, charset, body = page
        return simpleapi.page_wheels(body, content_type=content_type, charset=charset,
                                     base=final_url, where=where)

    def fetch(self, url: str) -> AbstractContextManager[BinaryIO]:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme.lower() not in _SCHEMES or not parts.hostname:
            raise errors.ContentError(f"will not fetch {shown(url)!r}: only https and http "
                                      "URLs are fetched")
        return self._fetching(url)

    @contextmanager
    def _fetching(self, url: str) -> Iterator[BinaryIO]:
        target = shown(url)
        header = _basic_auth(url)
        if header is not None:
            # Credentials written into a file's URL go to that file's origin only.
            self._credentials.setdefault(_origin(url), header)

        def attempt() -> http.client.HTTPResponse:
            try:
                return self._open(_without_userinfo(url), accept=None, where=target)
            except _NotFound:
                raise errors.ContentError(f"{target}: the index has no such file (HTTP 404)",
                                          hint="the lock names a file the index no longer "
                                               "serves: check the index, or lock again") \
                    from None

        response = self._retrying(attempt, where=target)
        with response:
            total = _content_length(response)
            if total is not None and total > MAX_FETCH_BYTES:
                raise errors.ContentError(f"{target}: {total:,} bytes, more than a wheel for "
                                          f"a layer can be ({MAX_FETCH_BYTES:,})")
            label = urllib.parse.unquote(target.rsplit("/", 1)[-1]) or target
            body = _Body(response, target=target, label=label, total=total,
                         progress=self._progress)
            with io.BufferedReader(body, buffer_size=_READ_BYTES) as stream:
                yield stream

    def _retrying(self, attempt: Callable[[], _T], *, where: str) -> _T:
        """`attempt()`, again after a _Transient failure, up to the retries, waiting longer
        each time; ContentError naming `where` when every attempt failed."""
        delay = self._backoff
        for number in range(1, self._retries + 2):
            try:
                return attempt()
            except _Transient as failure:
                if number > self._retries:
                    tries = f" (tried {number} times)" if number > 1 else ""
                    raise errors.ContentError(
                        f"{where}: {failure.reason}{tries}",
                        hint="check the network, the proxy variables (HTTPS_PROXY, "
                             "HTTP_PROXY, NO_PROXY) and the index") from None
                wait = failure.wait if failure.wait is not None else delay
                time.sleep(min(wait, MAX_RETRY_AFTER))
                delay = min(delay * 2, _MAX_BACKOFF)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _open(self, url: str, *, accept: str | None, where: str) -> http.client.HTTPResponse:
        """The answer to GET `url` (a 2xx), or _NotFound, _Transient or ContentError (its
        message opening with `where`)."""
        headers = {"User-Agent": f"reconcile/{reconciler.__version__}"}
        if accept is not None:
            headers["Accept"] = accept
        request = urllib.request.Request(url, headers=headers)
        target = shown(url)
        try:
            response: http.client.HTTPResponse = self._director().open(
                request, timeout=self._timeout)
            return response
        except urllib.error.HTTPError as error:
            _http_error(error, target=target, where=where)
        except _Refused as refused:
            raise errors.ContentError(f"{where}: {target} {refused}") from None
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise _tls_error(url, reason, where=where) from None
            raise _Transient(f"cannot reach {target}: {_reason(reason)}") from None
        except ssl.SSLCertVerificationError as reason:
            raise _tls_error(url, reason, where=where) from None
        except (OSError, http.client.HTTPException) as error:
            raise _Transient(f"the connection to {target} failed: {_reason(error)}") from None
        except ValueError as error:  # a URL urllib cannot even send
            raise errors.ContentError(f"{where}: cannot request {target} "
                                      f"({_reason(error)})") from None

    def _director(self) -> urllib.request.OpenerDirector:
        with self._opener_lock:
            if self._opener is None:
                self._opener = urllib.request.build_opener(
                    _Proxies(self._environ),
                    urllib.request.HTTPSHandler(context=_ssl_context(self._environ)),
                    _Redirects(), _Auth(self._credentials))
            return self._opener


def _http_error(error: urllib.error.HTTPError, *, target: str, where: str) -> NoReturn:
    """Raise what an HTTP error status means here."""
    code = error.code
    wait = _retry_after(error.headers.get("Retry-After") if error.headers else None)
    error.close()  # it holds the connection open until closed
    if code in (404, 410):
        raise _NotFound() from None
    if code == 429 or 500 <= code < 600:
        raise _Transient(f"{target} answered HTTP {code} {error.reason}", wait=wait) from None
    if 300 <= code < 400:
        raise errors.ContentError(f"{where}: {target} answered HTTP {code}, a redirect that "
                                  "is not followed (a loop, too many, or no Location)") \
            from None
    hint = ("the index refused the credentials: give them in the index URL "
            "(https://USER:TOKEN@host/simple)" if code in (401, 403) else None)
    raise errors.ContentError(f"{where}: {target} answered HTTP {code} {error.reason}",
                              hint=hint) from None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP date: the usual backoff is as good
    return max(0.0, seconds)


def _reason(error: object) -> str:
    """A failure in words, without anything a header or URL could carry."""
    if isinstance(error, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(error, http.client.HTTPException):
        return type(error).__name__
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _tls_error(url: str, reason: ssl.SSLCertVerificationError, *,
               where: str) -> errors.ContentError:
    host = urllib.parse.urlsplit(url).hostname or shown(url)
    detail = reason.verify_message or reason.reason or "certificate verify failed"
    return errors.ContentError(f"{where}: cannot verify the TLS certificate of {host} "
                               f"({detail})", hint=_CA_HINT)


def _ssl_context(environ: Mapping[str, str]) -> ssl.SSLContext:
    """The default context, or one trusting only the first CA bundle the variables name."""
    for variable in CA_BUNDLE_VARIABLES:
        value = environ.get(variable)
        if not value:
            continue
        try:
            if os.path.isdir(value):
                return ssl.create_default_context(capath=value)
            return ssl.create_default_context(cafile=value)
        except (OSError, ssl.SSLError) as error:
            raise errors.ContentError(f"{variable}={value}: cannot load a CA bundle from it "
                                      f"({_reason(error)})", hint=_CA_HINT) from None
    return ssl.create_default_context()


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def _read_within(response: http.client.HTTPResponse, *, limit: int, where: str) -> bytes:
    """The whole body, refused past `limit` bytes; a body cut short is _Transient."""
    declared = _content_length(response)
    if declared is not None and declared > limit:
        raise errors.ContentError(f"{where}: the page is {declared:,} bytes, more than an "
                                  f"index page can be ({limit:,})")
    chunks: list[bytes] = []
    received = 0
    try:
        while chunk := response.read(_READ_BYTES):
            received += len(chunk)
            if received > limit:
                raise errors.ContentError(f"{where}: the page is more than an index page can "
                                          f"be ({limit:,} bytes)")
            chunks.append(chunk)
    except (OSError, http.client.HTTPException) as error:
        raise _Transient(f"the connection dropped while reading the page: "
                         f"{_reason(error)}") from None
    if declared is not None and received < declared:
        raise _Transient(f"the connection dropped after {received:,} of {declared:,} bytes "
                         "of the page")
    return b"".join(chunks)


class _Body(io.RawIOBase):
    """A download as a raw stream: cut off past MAX_FETCH_BYTES, a connection that drops
    (or ends short of Content-Length) a ContentError naming the URL, progress reported."""

    def __init__(self, response: http.client.HTTPResponse, *, target: str, label: str,
                 total: int | None, progress: Callable[[str], None] | None) -> None:
        super().__init__()
        self._response = response
        self._target = target
        self._label = label
        self._total = total
        self._progress = progress
        self._received = 0
        self._reported_at = 0.0
        self._report(force=True)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            count = self._response.readinto(buffer)
        except (OSError, http.client.HTTPException) as error:
            raise errors.ContentError(f"{self._target}: the download failed after "
                                      f"{self._received:,} bytes ({_reason(error)})",
                                      hint="run again: wheels already stored are kept") \
                from None
        self._received += count
        if self._received > MAX_FETCH_BYTES:
            raise errors.ContentError(f"{self._target}: more than {MAX_FETCH_BYTES:,} bytes, "
                                      "more than a wheel for a layer can be")
        if count == 0 and self._total is not None and self._received < self._total:
            raise errors.ContentError(f"{self._target}: the connection closed after "
                                      f"{self._received:,} of {self._total:,} bytes",
                                      hint="run again: wheels already stored are kept")
        self._report(force=count == 0)
        return count

    def _report(self, *, force: bool) -> None:
        if self._progress is None:
            return
        now = time.monotonic()
        if not force and now - self._reported_at < _PROGRESS_INTERVAL:
            return
        self._reported_at = now
        done = f"{self._received / 1e6:.1f}"
        size = f"{done}/{self._total / 1e6:.1f} MB" if self._total is not None else f"{done} MB"
        self._progress(f"downloading {self._label} {size}")


class _Proxies(urllib.request.ProxyHandler):
    """HTTPS_PROXY and HTTP_PROXY (lower case first, as curl and urllib read them) from the
    given environment, bypassed for the hosts NO_PROXY names: urllib's own bypass reads
    os.environ, which a test or a caller's environment must be able to replace."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        def variable(name: str) -> str:
            return environ.get(name.lower()) or environ.get(name.upper()) or ""

        proxies = {scheme: value for scheme in _SCHEMES
                   if (value := variable(f"{scheme}_proxy"))}
        self._no_proxy = [entry.strip().lower() for entry in variable("no_proxy").split(",")
                          if entry.strip()]
        super().__init__(proxies)

    def proxy_open(self, req: urllib.request.Request, proxy: str, type: str) -> Any:
        # urllib's own proxy_open asks os.environ's NO_PROXY first: replaced, not extended.
        if self._bypassed(req.host):
            return None
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if parts.scheme.lower() != "http" or not parts.hostname:
            raise _Refused(f"is to go through the proxy {shown(proxy)!r}, which is not an "
                           "http:// proxy (the only kind supported)")
        header = _basic_auth(proxy if "://" in proxy else f"http://{proxy}")
        if header is not None:
            req.add_header("Proxy-Authorization", header)
        # An https request goes through a CONNECT tunnel; an http one to the proxy itself.
        req.set_proxy(urllib.parse.urlsplit(shown(f"http://{parts.netloc}")).netloc, "http")
        return None

    def _bypassed(self, hostport: str) -> bool:
        host, port = _host_and_port(hostport)
        for entry in self._no_proxy:
            if entry == "*":
                return True
            name, entry_port = _host_and_port(entry.lstrip("."))
            if entry_port is not None and entry_port != port:
                continue
            if name and (host == name or host.endswith("." + name)):
                return True
        return False


def _host_and_port(hostport: str) -> tuple[str, int | None]:
    """`host[:port]` (an IPv6 address in brackets) as a lowercase host and a port."""
    parts = urllib.parse.urlsplit("//" + hostport)
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.hostname or "").lower(), port


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Redirects are followed (urllib's limits: 10 in all, 4 to one URL) to https and http
    URLs only (urllib itself would follow one to ftp:)."""

    def http_error_302(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                       headers: Any) -> Any:
        location = headers.get("location") or headers.get("uri")
        if location:
            scheme = urllib.parse.urlsplit(
                urllib.parse.urljoin(req.full_url, location)).scheme.lower()
            if scheme not in _SCHEMES:
                raise _Refused(f"redirects to a {scheme}: URL, which is not fetched")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        # Python 3.10's urllib knows no 308; for a GET it means what 307 means.
        return super().redirect_request(req, fp, 307 if code == 308 else code, msg, headers,
                                        newurl)


class _Auth(urllib.request.BaseHandler):
    """Basic auth for the origins credentials were given for, added to each request (the
    first and every redirect) as a header urllib never carries over to a redirect."""

    def __init__(self, credentials: Mapping[tuple[str, str, int | None], str]) -> None:
        self._credentials = credentials

    def http_request(self, request: urllib.request.Request) -> urllib.request.Request:
        header = self._credentials.get(_origin(request.full_url))
        if header is not None:
            request.add_unredirected_header("Authorization", header)
        return request

    https_request = http_request


