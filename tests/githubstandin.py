"""A stand-in for the part of GitHub's REST API that `reconcile comment` uses (list, create and
update issue comments), on a free loopback port, for the end-to-end tests. It keeps comments
in memory, pages the list as GitHub does (`per_page`, `page`), checks the bearer token, and
records every request (method, path, Authorization header) so that tests can count calls."""

from __future__ import annotations

import http.server
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_LIST = re.compile(r"^/repos/([^/]+/[^/]+)/issues/(\d+)/comments$")
_ONE = re.compile(r"^/repos/([^/]+/[^/]+)/issues/comments/(\d+)$")


@dataclass
class GitHubStandIn:
    """The stand-in's state: comments per pull request, the token it accepts, the requests
    it saw, and a status to answer every request with instead (`fail_with`)."""

    token: str
    url: str = ""
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    fail_with: int | None = None
    _next_id: int = 1000

    def add_comment(self, number: int, body: str, *, login: str = "someone") -> None:
        """A comment by somebody else on pull request `number`."""
        self._next_id += 1
        self.comments.setdefault(number, []).append(
            {"id": self._next_id, "body": body, "user": {"login": login},
             "html_url": f"https://github.example/pr/{number}#issuecomment-{self._next_id}"})

    def count(self, method: str) -> int:
        """How many requests of `method` it answered."""
        return sum(1 for seen, _ in self.requests if seen == method)

    def answer(self, method: str, target: str, token: str, body: bytes) -> tuple[int, Any]:
        """The status and JSON of one request."""
        path, _, query = target.partition("?")
        self.requests.append((method, path))
        if self.fail_with is not None:
            return self.fail_with, {"message": "failing on purpose"}
        if token != f"Bearer {self.token}":
            return 401, {"message": "Bad credentials"}
        listed, one = _LIST.match(path), _ONE.match(path)
        if listed and method == "GET":
            params = urllib.parse.parse_qs(query)
            size, page = int(params["per_page"][0]), int(params["page"][0])
            items = self.comments.get(int(listed.group(2)), [])
            return 200, items[(page - 1) * size:page * size]
        if listed and method == "POST":
            number = int(listed.group(2))
            self.add_comment(number, json.loads(body)["body"], login="github-actions[bot]")
            return 201, self.comments[number][-1]
        if one and method == "PATCH":
            for items in self.comments.values():
                for item in items:
                    if item["id"] == int(one.group(2)):
                        item["body"] = json.loads(body)["body"]
                        return 200, item
            return 404, {"message": "Not Found"}
        return 404, {"message": "Not Found"}


@contextmanager
def running(token: str) -> Iterator[GitHubStandIn]:
    """A stand-in serving on a free loopback port until the block ends."""
    stand_in = GitHubStandIn(token=token)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return None

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status, document = stand_in.answer(
                self.command, self.path, self.headers.get("Authorization", ""),
                self.rfile.read(length))
            data = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _serve

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def outputs_of(path: Path) -> dict[str, str]:
    """The step outputs a step wrote to GITHUB_OUTPUT, in the runner's `name<<DELIMITER` form
    (a file that does not exist holds none)."""
    values: dict[str, str] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    index = 0
    while index < len(lines):
        name, _, delimiter = lines[index].partition("<<")
        end = lines.index(delimiter, index + 1)
        values[name] = "\n".join(lines[index + 1:end])
        index = end + 1
    return values
