"""A moto server on a free loopback port, for the adapter's contract tests and the CLI tests.

moto's backends are process-global, so a test that shares a server must `reset()` it first.
This module only starts, stops and resets the server; it sets no environment variables.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from moto.server import ThreadedMotoServer


@contextmanager
def running_moto_server() -> Iterator[str]:
    """Run a moto server on 127.0.0.1 (a free port) and yield its `http://127.0.0.1:PORT` URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def reset(url: str) -> None:
    """Forget every resource the server at `url` holds (all services, all regions)."""
    request = urllib.request.Request(f"{url}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
