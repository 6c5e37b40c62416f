"""The package index client (reconciler.builds.index) against real loopback HTTP servers: the
wheelcraft index (PEP 503 HTML and PEP 691 JSON), a scripted server for the faults (5xx, 429,
dropped connections, hostile pages, redirects, credentials), a tiny forward proxy, and a TLS
server whose self-signed certificate openssl makes at test time."""

from __future__ import annotations

import base64
import hashlib
import http.client
import http.server
import json
import shutil
import socket
import ssl
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import wheelcraft

from reconciler import errors, ports
from reconciler.builds import cache, index, simpleapi

SHA_A = "a" * 64
SHA_B = "b" * 64
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "text/html; charset=utf-8"

Reply = Callable[[http.server.BaseHTTPRequestHandler], None]


@dataclass
class Seen:
    """One request a scripted server answered."""

    path: str
    headers: dict[str, str]


@dataclass
class Scripted:
    """A loopback server answering each path from its script: the replies in order, the last
    one again for every later request (404 for a path with no script)."""

    url: str = ""
    script: dict[str, list[Reply]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def on(self, path: str, *replies: Reply) -> None:
        self.script[path] = list(replies)

    def count(self, path: str) -> int:
        return sum(1 for one in self.seen if one.path == path)


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that refuses the certificate or hangs up is what some tests do


@contextmanager
def scripted(*, tls: ssl.SSLContext | None = None) -> Iterator[Scripted]:
    """A Scripted server on 127.0.0.1 (https with `tls`) until the block ends."""
    state = Scripted()
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            with lock:
                state.seen.append(Seen(path, {key.lower(): value
                                              for key, value in self.headers.items()}))
                replies = state.script.get(path)
                reply = (replies.pop(0) if len(replies) > 1 else replies[0]) if replies \
                    else status(404)
            reply(self)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = _QuietServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
    state.url = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def page(body: bytes | str, content_type: str = HTML_TYPE, *, code: int = 200,
         headers: dict[str, str] | None = None) -> Reply:
    data = body.encode() if isinstance(body, str) else body

    def reply(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(code)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    return reply


def status(code: int, headers: dict[str, str] | None = None) -> Reply:
    return page(b"", "text/plain", code=code, headers=headers)


def cut(body: bytes | str, *, after: int, content_type: str = HTML_TYPE) -> Reply:
    """Declare the whole body's length, send `after` bytes of it, and hang up."""
    data = body.encode() if isinstance(body, str) else body

    def reply(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data[:after])
        handler.wfile.flush()
        handler.close_connection = True

    return reply


def endless(megabytes: int) -> Reply:
    """An HTML page of `megabytes` MB sent without a length (the connection's end ends it)."""

    def reply(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", HTML_TYPE)
        handler.end_headers()
        chunk = b" " * (1024 * 1024)
        try:
            for _ in range(megabytes):
                handler.wfile.write(chunk)
        except OSError:
            pass  # the client stopped reading at its limit
        handler.close_connection = True

    return reply


def declared(length: int) -> Reply:
    """Headers declaring a body of `length` bytes, and no body."""

    def reply(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", HTML_TYPE)
        handler.send_header("Content-Length", str(length))
        handler.end_headers()
        handler.close_connection = True

    return reply


def links(*hrefs: str) -> str:
    return "<!DOCTYPE html><html><body>" + "".join(
        f'<a href="{href}">{href.rsplit("/", 1)[-1]}</a>\n' for href in hrefs) + "</body></html>"


def client(url: str, *, environ: dict[str, str] | None = None,
           progress: Callable[[str], None] | None = None,
           retries: int = index.DEFAULT_RETRIES) -> index.IndexClient:
    """A client that waits no time between attempts."""
    return index.IndexClient(url=url, environ=environ or {}, progress=progress,
                             retries=retries, backoff=0.0)


@pytest.fixture
def wheel_root(tmp_path: Path) -> Path:
    root = tmp_path / "index"
    wheelcraft.make_wheel(root / "alpha", "alpha", "1.0", "py3-none-any")
    wheelcraft.make_wheel(root / "alpha", "alpha", "1.0", "cp312-cp312-manylinux_2_17_x86_64")
    wheelcraft.make_wheel(root / "my-pkg", "my_pkg", "2.0", "py3-none-any")
    return root


def test_the_client_is_a_package_index() -> None:
    """IndexClient declares the port the lock content kind asks for."""
    assert ports.PackageIndex in index.IndexClient.__mro__


def test_html_and_json_listings_give_the_same_wheels(wheel_root: Path) -> None:
    """A project's wheels read from a PEP 503 HTML page equal those from its PEP 691 JSON page,
    each with an absolute URL, its SHA-256, and (JSON) its size."""
    listed = {}
    for mode in ("html", "json"):
        with wheelcraft.serve_index(wheel_root, mode=mode) as served:
            wheels = client(served.url).wheels("alpha")
            assert served.requests == ["/alpha/"]
            listed[mode] = [(w.filename, w.sha256, str(w.url).replace(served.url, "<index>/"))
                            for w in wheels]
            if mode == "json":
                assert [w.size for w in wheels] == [
                    (wheel_root / "alpha" / w.filename).stat().st_size for w in wheels]
    assert listed["html"] == listed["json"]
    assert sorted(filename for filename, _, _ in listed["html"]) == [
        "alpha-1.0-cp312-cp312-manylinux_2_17_x86_64.whl", "alpha-1.0-py3-none-any.whl"]
    for filename, sha256, url in listed["html"]:
        assert sha256 == wheelcraft.sha256_of(wheel_root / "alpha" / filename)
        assert url == f"<index>/alpha/{filename}"


def test_the_page_is_asked_by_canonical_name_with_the_simple_api_accept_header(
        wheel_root: Path) -> None:
    """`My_Pkg` is asked as /my-pkg/, preferring JSON, as PEP 691 says."""
    with scripted() as server:
        server.on("/simple/my-pkg/", page(links(f"my_pkg-2.0-py3-none-any.whl#sha256={SHA_A}")))
        wheels = client(server.url + "/simple/").wheels("My_Pkg")
    assert [w.filename for w in wheels] == ["my_pkg-2.0-py3-none-any.whl"]
    assert server.seen[0].headers["accept"] == simpleapi.ACCEPT
    assert server.seen[0].headers["user-agent"].startswith("reconcile/")


def test_relative_and_absolute_hrefs_are_resolved_against_the_page() -> None:
    """Relative, root-relative and absolute hrefs, and a <base href>, give absolute URLs."""
    with scripted() as server:
        server.on("/simple/alpha/", page(links(
            f"a-1.0-py3-none-any.whl#sha256={SHA_A}",
            f"../../files/b-1.0-py3-none-any.whl#sha256={SHA_B}",
            f"/abs/c-1.0-py3-none-any.whl#sha256={SHA_A.upper()}",
            f"https://files.example.org/packages/d-1.0-py3-none-any.whl#sha256={SHA_B}")))
        server.on("/simple/beta/", page(
            '<html><head><base href="https://mirror.example.net/pkgs/"></head><body>'
            f'<a href="e-1.0-py3-none-any.whl#sha256={SHA_A}">e</a></body></html>'))
        server.on("/simple/gamma/", page(json.dumps({
            "meta": {"api-version": "1.0"}, "name": "gamma",
            "files": [{"filename": "f-1.0-py3-none-any.whl",
                       "url": "../../f/f-1.0-py3-none-any.whl",
                       "hashes": {"sha256": SHA_A}, "yanked": "broken"}]}), JSON_TYPE))
        reader = client(server.url + "/simple")
        alpha, beta, gamma = (reader.wheels(name) for name in ("alpha", "beta", "gamma"))
    root = server.url
    assert [(w.url, w.sha256) for w in alpha] == [
        (f"{root}/simple/alpha/a-1.0-py3-none-any.whl", SHA_A),
        (f"{root}/files/b-1.0-py3-none-any.whl", SHA_B),
        (f"{root}/abs/c-1.0-py3-none-any.whl", SHA_A),
        ("https://files.example.org/packages/d-1.0-py3-none-any.whl", SHA_B)]
    assert [w.url for w in beta] == ["https://mirror.example.net/pkgs/e-1.0-py3-none-any.whl"]
    assert [w.url for w in gamma] == [f"{root}/f/f-1.0-py3-none-any.whl"]


def test_a_project_the_index_lacks_has_no_wheels() -> None:
    """A 404 for the project's page is an empty list, not an error."""
    with scripted() as server:
        assert client(server.url + "/simple").wheels("absent") == []
        assert server.count("/simple/absent/") == 1


def test_only_wheels_with_a_sha256_at_an_http_url_are_kept() -> None:
    """An sdist, a wheel with only an md5 or no hash, a file: link and a repeated file are left
    out; the rest is kept."""
    with scripted() as server:
        server.on("/simple/alpha/", page(links(
            f"alpha-1.0.tar.gz#sha256={SHA_A}",
            "alpha-1.0-py3-none-any.whl#md5=0123456789abcdef0123456789abcdef",
            "alpha-1.1-py3-none-any.whl",
            f"file:///etc/alpha-1.2-py3-none-any.whl#sha256={SHA_A}",
            f"alpha-1.3-py3-none-any.whl#sha256={SHA_A}",
            f"again/alpha-1.3-py3-none-any.whl#sha256={SHA_B}")))
        server.on("/simple/beta/", page(json.dumps({
            "meta": {"api-version": "1.1"},
            "files": [{"filename": "beta-1.0-py3-none-any.whl", "url": "b.whl",
                       "hashes": {"md5": "00"}},
                      {"filename": "beta-1.0.tar.gz", "url": "b.tgz",
                       "hashes": {"sha256": SHA_A}},
                      {"filename": "beta-1.1-py3-none-any.whl", "url": "c.whl",
                       "hashes": {"sha256": SHA_B}, "size": 10}]}), JSON_TYPE))
        reader = client(server.url + "/simple")
        alpha, beta = reader.wheels("alpha"), reader.wheels("beta")
    assert [(w.filename, w.sha256) for w in alpha] == [("alpha-1.3-py3-none-any.whl", SHA_A)]
    assert [(w.filename, w.size) for w in beta] == [("beta-1.1-py3-none-any.whl", 10)]


def _json(document: object) -> Reply:
    return page(json.dumps(document), JSON_TYPE)


def _file(**fields: object) -> dict[str, object]:
    return {"filename": "alpha-1.0-py3-none-any.whl", "url": "a.whl",
            "hashes": {"sha256": SHA_A}, **fields}


BAD_PAGES: dict[str, tuple[Reply, str]] = {
    "plain text": (page("Service Unavailable, try later", HTML_TYPE), "not an HTML page"),
    "not utf-8": (page(b"<html>\xff\xfe</html>", HTML_TYPE), "not utf-8 text"),
    "unknown charset": (page("<html></html>", "text/html; charset=klingon"), "charset"),
    "wrong content type": (page(b"\x00PK", "application/octet-stream"),
                           "application/octet-stream"),
    "truncated JSON": (page('{"meta": {"api-version": "1.0"}, "files": [', JSON_TYPE),
                       "not JSON"),
    "JSON not an object": (_json([1, 2]), "not an object"),
    "no api-version": (_json({"files": []}), "api-version"),
    "api-version 2": (_json({"meta": {"api-version": "2.0"}, "files": []}), "api-version"),
    "files not a list": (_json({"meta": {"api-version": "1.0"}, "files": {}}), "`files`"),
    "file not an object": (_json({"meta": {"api-version": "1.0"}, "files": ["x"]}),
                           "files[0] is not an object"),
    "url not a string": (_json({"meta": {"api-version": "1.0"}, "files": [_file(url=3)]}),
                         "files[0].url"),
    "no filename": (_json({"meta": {"api-version": "1.0"},
                           "files": [{"url": "a.whl", "hashes": {}}]}), "files[0].filename"),
    "hashes a list": (_json({"meta": {"api-version": "1.0"}, "files": [_file(hashes=[])]}),
                      "files[0].hashes"),
    "sha256 not hex": (_json({"meta": {"api-version": "1.0"},
                              "files": [_file(hashes={"sha256": "zz"})]}), "hex SHA-256"),
    "size negative": (_json({"meta": {"api-version": "1.0"}, "files": [_file(size=-1)]}),
                      "files[0].size"),
    "yanked a number": (_json({"meta": {"api-version": "1.0"}, "files": [_file(yanked=1)]}),
                        "files[0].yanked"),
    "nested deeply": (_json({"meta": {"api-version": "1.0"},
                             "files": [_file(extra=[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]])]}),
                      "deeper than 16"),
    "nested past recursion": (page("[" * 200_000, JSON_TYPE), "nests too deeply"),
    "declared huge": (declared(10**12), "1,000,000,000,000 bytes"),
}


@pytest.mark.parametrize("case", sorted(BAD_PAGES))
def test_a_page_it_cannot_read_is_a_content_error_naming_index_and_project(case: str) -> None:
    """Each unreadable page is one ContentError naming the index and the project."""
    reply, words = BAD_PAGES[case]
    with scripted() as server:
        server.on("/simple/alpha/", reply)
        with pytest.raises(errors.ContentError) as raised:
            client(server.url + "/simple").wheels("Alpha")
    message = raised.value.message
    assert f"the index {server.url}/simple, project alpha" in message
    assert words.lower() in message.lower()


def test_a_filename_with_a_slash_is_refused_not_kept() -> None:
    """A JSON file whose filename holds a separator is not offered as a wheel."""
    with scripted() as server:
        server.on("/simple/alpha/", _json({"meta": {"api-version": "1.0"},
                                           "files": [_file(filename="../x.whl")]}))
        assert client(server.url + "/simple").wheels("alpha") == []


def test_a_page_larger_than_the_limit_is_refused_while_streaming() -> None:
    """A page sent without a length is cut off past MAX_PAGE_BYTES, naming index and project."""
    megabytes = index.MAX_PAGE_BYTES // (1024 * 1024) + 1
    with scripted() as server:
        server.on("/simple/alpha/", endless(megabytes))
        with pytest.raises(errors.ContentError) as raised:
            client(server.url + "/simple").wheels("alpha")
    assert "project alpha" in raised.value.message
    assert "more than an index page can be" in raised.value.message


def test_a_503_then_a_200_is_retried() -> None:
    """A 5xx is retried, and the second answer's wheels are returned."""
    with scripted() as server:
        server.on("/simple/alpha/", status(503),
                  page(links(f"alpha-1.0-py3-none-any.whl#sha256={SHA_A}")))
        wheels = client(server.url + "/simple").wheels("alpha")
    assert [w.filename for w in wheels] == ["alpha-1.0-py3-none-any.whl"]
    assert server.count("/simple/alpha/") == 2


def test_a_429_is_retried_after_the_wait_it_asks() -> None:
    """429 with Retry-After: 0 is retried at once."""
    with scripted() as server:
        server.on("/simple/alpha/", status(429, {"Retry-After": "0"}), page(links()))
        assert client(server.url + "/simple").wheels("alpha") == []
    assert server.count("/simple/alpha/") == 2


def test_retries_give_up_after_the_configured_attempts() -> None:
    """A 502 every time is tried 1 + retries times, then one error naming index and project."""
    with scripted() as server:
        server.on("/simple/alpha/", status(502))
        with pytest.raises(errors.ContentError) as raised:
            client(server.url + "/simple", retries=2).wheels("alpha")
    assert server.count("/simple/alpha/") == 3
    assert "project alpha" in raised.value.message
    assert "HTTP 502" in raised.value.message and "tried 3 times" in raised.value.message


@pytest.mark.parametrize("code", [400, 401, 403])
def test_a_4xx_is_not_retried(code: int) -> None:
    """A 4xx other than 404 and 429 is one request and an error naming the status."""
    with scripted() as server:
        server.on("/simple/alpha/", status(code))
        with pytest.raises(errors.ContentError) as raised:
            client(server.url + "/simple").wheels("alpha")
    assert server.count("/simple/alpha/") == 1
    assert f"HTTP {code}" in raised.value.message


def test_a_connection_dropped_mid_listing_is_retried() -> None:
    """A page cut short of its Content-Length is asked again."""
    body = links(f"alpha-1.0-py3-none-any.whl#sha256={SHA_A}")
    with scripted() as server:
        server.on("/simple/alpha/", cut(body, after=20), page(body))
        wheels = client(server.url + "/simple").wheels("alpha")
    assert [w.sha256 for w in wheels] == [SHA_A]
    assert server.count("/simple/alpha/") == 2


def test_an_index_nobody_answers_is_an_error_after_the_retries() -> None:
    """A refused connection is retried, then reported naming the index and the project."""
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    with pytest.raises(errors.ContentError) as raised:
        client(f"http://127.0.0.1:{port}/simple", retries=1).wheels("alpha")
    assert f"the index http://127.0.0.1:{port}/simple, project alpha" in raised.value.message
    assert "tried 2 times" in raised.value.message


def test_the_index_is_the_layers_then_the_environments_then_pypi() -> None:
    """index_url wins, then RECONCILE_INDEX_URL, then PIP_INDEX_URL, then PyPI."""
    both = {"RECONCILE_INDEX_URL": "https://r.example/simple",
            "PIP_INDEX_URL": "https://p.example/simple"}
    assert index.chosen_url("https://own.example/simple", both) == "https://own.example/simple"
    assert index.chosen_url(None, both) == "https://r.example/simple"
    assert index.chosen_url(None, {**both, "RECONCILE_INDEX_URL": ""}) == \
        "https://p.example/simple"
    assert index.chosen_url(None, {}) == "https://pypi.org/simple"


def test_the_index_url_must_be_http_or_https() -> None:
    """file: and ftp: index URLs are refused when the client is made."""
    for url in ("file:///srv/simple", "ftp://mirror/simple", "simple"):
        with pytest.raises(errors.ContentError, match="not an https or http URL"):
            index.IndexClient(url=url, environ={})


def test_fetch_streams_into_the_wheel_cache(wheel_root: Path, tmp_path: Path) -> None:
    """A listed wheel fetched into WheelCache.put_stream is stored by its SHA-256, with a
    progress line naming it and its size."""
    lines: list[str] = []
    store = cache.WheelCache(tmp_path / "cache")
    with wheelcraft.serve_index(wheel_root) as served:
        reader = client(served.url, progress=lines.append)
        wheel = next(w for w in reader.wheels("alpha") if w.filename.endswith("none-any.whl"))
        assert wheel.url is not None
        with reader.fetch(wheel.url) as stream:
            stored = store.put_stream(stream, sha256=wheel.sha256, label=wheel.filename)
    source = wheel_root / "alpha" / wheel.filename
    assert stored.read_bytes() == source.read_bytes()
    assert store.get(wheel.sha256) == stored
    size = f"{source.stat().st_size / 1e6:.1f}"
    assert lines[0] == f"downloading {wheel.filename} 0.0/{size} MB"
    assert lines[-1] == f"downloading {wheel.filename} {size}/{size} MB"


def test_a_fetched_wheel_with_another_digest_is_refused(wheel_root: Path,
                                                        tmp_path: Path) -> None:
    """Bytes that do not hash to the lock's SHA-256 are refused naming both, nothing stored."""
    store = cache.WheelCache(tmp_path / "cache")
    with wheelcraft.serve_index(wheel_root) as served:
        reader = client(served.url)
        wheel = reader.wheels("alpha")[0]
        assert wheel.url is not None
        with pytest.raises(errors.ContentError) as raised, reader.fetch(wheel.url) as stream:
            store.put_stream(stream, sha256=SHA_B, label=wheel.filename)
    assert wheel.sha256 in raised.value.message and SHA_B in raised.value.message
    assert store.get(SHA_B) is None


def test_fetch_of_a_missing_file_names_the_url() -> None:
    """A 404 on a wheel is an error naming its URL, not retried."""
    with scripted() as server:
        url = f"{server.url}/files/alpha-1.0-py3-none-any.whl"
        with pytest.raises(errors.ContentError) as raised, \
                client(server.url + "/simple").fetch(url):
            pass
    assert url in raised.value.message and "404" in raised.value.message
    assert server.count("/files/alpha-1.0-py3-none-any.whl") == 1


def test_fetch_retries_a_5xx_before_handing_the_stream_over() -> None:
    """A 500 then the file: the caller reads the whole file once."""
    with scripted() as server:
        server.on("/f.whl", status(500), page(b"wheel bytes", "application/octet-stream"))
        with client(server.url).fetch(server.url + "/f.whl") as stream:
            assert stream.read() == b"wheel bytes"
    assert server.count("/f.whl") == 2


def test_a_download_cut_short_is_an_error_naming_the_url() -> None:
    """A file whose connection ends before its Content-Length is a ContentError, never a
    silently short wheel."""
    with scripted() as server:
        server.on("/f.whl", cut(b"x" * 5000, after=100, content_type="application/octet-stream"))
        with pytest.raises(errors.ContentError) as raised, \
                client(server.url).fetch(server.url + "/f.whl") as stream:
            stream.read()
    assert f"{server.url}/f.whl" in raised.value.message
    assert "100 of 5,000 bytes" in raised.value.message


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://mirror.example/a.whl",
                                 "data:,hello", "/relative/a.whl"])
def test_fetch_refuses_anything_but_http_and_https(url: str) -> None:
    """A lock's URL is outside input: only https and http are fetched."""
    reader = index.IndexClient(url="https://pypi.org/simple", environ={})
    with pytest.raises(errors.ContentError, match="only https and http"):
        reader.fetch(url)


def test_a_redirect_to_another_scheme_is_refused_and_one_to_http_followed() -> None:
    """Redirects (302, 308) are followed to http(s) URLs; one to file: is refused, and so
    is a loop."""
    with scripted() as server:
        server.on("/a.whl", status(302, {"Location": "/permanent.whl"}))
        server.on("/permanent.whl", status(308, {"Location": "/b.whl"}))
        server.on("/b.whl", page(b"bee", "application/octet-stream"))
        server.on("/c.whl", status(302, {"Location": "file:///etc/passwd"}))
        server.on("/loop.whl", status(302, {"Location": "/loop.whl"}))
        reader = client(server.url)
        with reader.fetch(server.url + "/a.whl") as stream:
            assert stream.read() == b"bee"
        with pytest.raises(errors.ContentError, match="file: URL"), \
                reader.fetch(server.url + "/c.whl"):
            pass
        with pytest.raises(errors.ContentError, match="HTTP 302, a redirect that is not"), \
                reader.fetch(server.url + "/loop.whl"):
            pass


@dataclass
class Proxy:
    url: str = ""
    requests: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes one way until `source` ends, then end `sink`'s writing side."""
    with suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@contextmanager
def forward_proxy() -> Iterator[Proxy]:
    """A loopback HTTP proxy (absolute-form GETs, and CONNECT tunnels for https) that records
    each request."""
    proxy = Proxy()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            proxy.requests.append(self.path)
            proxy.authorizations.append(self.headers.get("Proxy-Authorization"))
            target = urllib.parse.urlsplit(self.path)
            upstream = http.client.HTTPConnection(target.netloc, timeout=10)
            try:
                upstream.request("GET", target.path or "/", headers={
                    key: value for key, value in self.headers.items()
                    if key.lower() not in ("proxy-connection", "connection", "host")})
                answer = upstream.getresponse()
                body = answer.read()
            finally:
                upstream.close()
            self.send_response(answer.status)
            for key in ("Content-Type", "Location"):
                if answer.getheader(key):
                    self.send_header(key, answer.getheader(key, ""))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_CONNECT(self) -> None:
            proxy.requests.append(f"CONNECT {self.path}")
            proxy.authorizations.append(self.headers.get("Proxy-Authorization"))
            host, _, port = self.path.rpartition(":")
            upstream = socket.create_connection((host, int(port)), timeout=10)
            self.send_response(200, "Connection established")
            self.end_headers()
            back = threading.Thread(target=_pump, args=(upstream, self.connection), daemon=True)
            back.start()
            _pump(self.connection, upstream)
            back.join()
            upstream.close()
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = _QuietServer(("127.0.0.1", 0), Handler)
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_proxy_from_the_given_environment_is_used(wheel_root: Path) -> None:
    """HTTP_PROXY in the environ the client is given carries the listing and the download."""
    with wheelcraft.serve_index(wheel_root) as served, forward_proxy() as proxy:
        reader = client(served.url, environ={"HTTP_PROXY": proxy.url})
        wheel = reader.wheels("alpha")[0]
        assert wheel.url is not None
        with reader.fetch(wheel.url) as stream:
            assert hashlib.sha256(stream.read()).hexdigest() == wheel.sha256
    assert proxy.requests == [served.url + "alpha/", wheel.url]
    assert served.requests == ["/alpha/", "/alpha/" + wheel.filename]


def test_the_process_environment_is_not_read(wheel_root: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the environ the client is given counts: HTTP_PROXY in os.environ alone is not
    used, and NO_PROXY in os.environ alone bypasses nothing."""
    with wheelcraft.serve_index(wheel_root) as served, forward_proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("http_proxy", proxy.url)
        assert len(client(served.url).wheels("alpha")) == 2
        assert proxy.requests == []
        monkeypatch.setenv("NO_PROXY", "*")
        assert len(client(served.url, environ={"HTTP_PROXY": proxy.url}).wheels("alpha")) == 2
    assert proxy.requests == [served.url + "alpha/"]


def test_proxy_credentials_go_to_the_proxy_and_other_proxies_are_refused(
        wheel_root: Path) -> None:
    """user:password in HTTP_PROXY is the proxy's basic auth; a socks5:// proxy is refused
    with a message naming it, its credentials left out."""
    expected = "Basic " + base64.b64encode(b"pu:pp").decode()
    with wheelcraft.serve_index(wheel_root) as served, forward_proxy() as proxy:
        address = proxy.url.removeprefix("http://")
        reader = client(served.url, environ={"HTTP_PROXY": f"http://pu:pp@{address}"})
        assert len(reader.wheels("alpha")) == 2
        socks = client(served.url, environ={"HTTP_PROXY": f"socks5://pu:pp@{address}"})
        with pytest.raises(errors.ContentError) as refused:
            socks.wheels("alpha")
    assert proxy.authorizations == [expected]
    assert f"socks5://{address}" in refused.value.message
    assert "pp@" not in refused.value.message


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "*", "localhost, .example.com,127.0.0.1"])
def test_no_proxy_bypasses_the_proxy(wheel_root: Path, no_proxy: str) -> None:
    """A host NO_PROXY names is reached directly, the proxy never asked."""
    with wheelcraft.serve_index(wheel_root) as served, forward_proxy() as proxy:
        reader = client(served.url, environ={"http_proxy": proxy.url, "NO_PROXY": no_proxy})
        assert len(reader.wheels("alpha")) == 2
    assert proxy.requests == []
    assert served.requests == ["/alpha/"]


def test_credentials_go_to_the_index_host_only_and_are_never_shown() -> None:
    """user:secret in the index URL is basic auth to that host alone (not to a file host it
    links or redirects to), and appears neither in `url` nor in any message."""
    expected = "Basic " + base64.b64encode(b"user:s3cret word").decode()

    def guarded(reply: Reply) -> Reply:
        def check(handler: http.server.BaseHTTPRequestHandler) -> None:
            if handler.headers.get("Authorization") != expected:
                status(401)(handler)
            else:
                reply(handler)
        return check

    with scripted() as files, scripted() as server:
        server.on("/simple/alpha/", guarded(page(links(
            f"/files/alpha-1.0-py3-none-any.whl#sha256={SHA_A}",
            f"{files.url}/elsewhere/alpha-1.1-py3-none-any.whl#sha256={SHA_B}"))))
        server.on("/files/alpha-1.0-py3-none-any.whl", guarded(page(b"own", "x/y")))
        server.on("/files/moved.whl", status(302, {"Location": files.url + "/moved.whl"}))
        server.on("/simple/forbidden/", status(403))
        files.on("/elsewhere/alpha-1.1-py3-none-any.whl", page(b"other", "x/y"))
        files.on("/moved.whl", page(b"moved", "x/y"))
        authority = server.url.removeprefix("http://")
        reader = client(f"http://user:s3cret%20word@{authority}/simple/")
        own, other = reader.wheels("alpha")
        read = []
        for url in (own.url, other.url, server.url + "/files/moved.whl"):
            assert url is not None
            with reader.fetch(url) as stream:
                read.append(stream.read())
        with pytest.raises(errors.ContentError) as raised:
            reader.wheels("forbidden")
        with pytest.raises(errors.ContentError) as missing, \
                reader.fetch(server.url + "/files/none.whl"):
            pass
    assert read == [b"own", b"other", b"moved"]
    assert reader.url == f"{server.url}/simple"
    assert all(one.headers.get("authorization") == expected for one in server.seen)
    assert [one.headers.get("authorization") for one in files.seen] == [None, None]
    for error in (raised.value, missing.value):
        shown = f"{error.message} {error.hint}"
        assert "s3cret" not in shown and "user:" not in shown
    assert "HTTP 403" in raised.value.message and raised.value.hint is not None


def _self_signed(folder: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    certificate, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(certificate)],
                   check=True, capture_output=True, timeout=60)
    return certificate, key


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ssl.SSLContext, Path]:
    """A server context with a self-signed certificate for 127.0.0.1, and that certificate."""
    for variable in index.CA_BUNDLE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)  # the default context reads OpenSSL's own
    certificate, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    return context, certificate


def test_tls_trusts_the_ca_bundle_of_the_environment(
        tls: tuple[ssl.SSLContext, Path]) -> None:
    """A self-signed index is read with SSL_CERT_FILE naming its certificate (or
    REQUESTS_CA_BUNDLE, or PIP_CERT), and refused without, naming the host and the variable."""
    context, certificate = tls
    with scripted(tls=context) as server:
        server.on("/simple/alpha/", page(links(f"alpha-1.0-py3-none-any.whl#sha256={SHA_A}")))
        for variable in index.CA_BUNDLE_VARIABLES:
            reader = client(server.url + "/simple", environ={variable: str(certificate)})
            assert [w.sha256 for w in reader.wheels("alpha")] == [SHA_A]
        with pytest.raises(errors.ContentError) as refused:
            client(server.url + "/simple").wheels("alpha")
    assert server.count("/simple/alpha/") == len(index.CA_BUNDLE_VARIABLES)
    assert "cannot verify the TLS certificate of 127.0.0.1" in refused.value.message
    assert "project alpha" in refused.value.message
    assert refused.value.hint is not None and "SSL_CERT_FILE" in refused.value.hint


def test_https_goes_through_the_https_proxy_as_a_tunnel(
        tls: tuple[ssl.SSLContext, Path]) -> None:
    """HTTPS_PROXY carries an https index through a CONNECT tunnel, the certificate still
    checked against the bundle end to end."""
    context, certificate = tls
    with scripted(tls=context) as server, forward_proxy() as proxy:
        server.on("/simple/alpha/", page(links(f"alpha-1.0-py3-none-any.whl#sha256={SHA_A}")))
        reader = client(server.url + "/simple",
                        environ={"HTTPS_PROXY": proxy.url, "SSL_CERT_FILE": str(certificate)})
        assert [w.sha256 for w in reader.wheels("alpha")] == [SHA_A]
    assert proxy.requests == [f"CONNECT {server.url.removeprefix('https://')}"]
    assert server.count("/simple/alpha/") == 1


def test_a_ca_bundle_that_cannot_be_loaded_names_its_variable(tmp_path: Path) -> None:
    """SSL_CERT_FILE naming a file that is no bundle is an error naming the variable."""
    bogus = tmp_path / "bundle.pem"
    bogus.write_text("not a certificate")
    reader = client("https://127.0.0.1:9/simple", environ={"SSL_CERT_FILE": str(bogus)})
    with pytest.raises(errors.ContentError, match="SSL_CERT_FILE="):
        reader.wheels("alpha")


def test_making_a_client_sends_nothing() -> None:
    """Constructing the client opens no connection (a plan that needs no wheel pays nothing)."""
    with scripted() as server:
        index.IndexClient(url=server.url + "/simple", environ={"SSL_CERT_FILE": "/absent"})
    assert server.seen == []


def test_several_threads_share_one_client(wheel_root: Path) -> None:
    """Listings asked from several threads at once all succeed on one client."""
    with wheelcraft.serve_index(wheel_root) as served:
        reader = client(served.url)
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(len(reader.wheels("alpha"))))
                   for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == [2] * 8


def test_wheelcraft_serves_json_pages(wheel_root: Path) -> None:
    """wheelcraft's JSON mode answers a project page as PEP 691 JSON with its content type."""
    with wheelcraft.serve_index(wheel_root, mode="json") as served:
        connection = http.client.HTTPConnection(served.url.removeprefix("http://").rstrip("/"))
        connection.request("GET", "/my-pkg/")
        answer = connection.getresponse()
        document = json.loads(answer.read())
        connection.close()
    assert answer.getheader("Content-Type") == wheelcraft.JSON_TYPE
    assert [file["filename"] for file in document["files"]] == ["my_pkg-2.0-py3-none-any.whl"]

