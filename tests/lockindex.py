"""A small package index client for the built-layer tests (ports.PackageIndex over urllib, the
PEP 503 pages tests/wheelcraft.serve_index writes), and the command stores that hand it to the
CLI: the real boto3 stores otherwise (compose.Boto3Stores), so that plan and apply run against
moto. The project's own HTTP client (reconciler.builds.index) is another module's work; this
one reads only what the loopback index serves."""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import BinaryIO

from reconciler import builds, errors, ports
from reconciler.command import compose

_LINK = re.compile(r'<a href="([^"#]+)#sha256=([0-9a-f]{64})">([^<]+)</a>')


class LoopbackIndex(ports.PackageIndex):
    """The PEP 503 index at `url` (a loopback server); every page and file read through it."""

    def __init__(self, url: str) -> None:
        self._url = url.rstrip("/") + "/"

    @property
    def url(self) -> str:
        return self._url

    def wheels(self, name: str) -> list[builds.Wheel]:
        page_url = urllib.parse.urljoin(self._url, f"{name}/")
        try:
            with urllib.request.urlopen(page_url, timeout=10) as response:
                page = response.read().decode("utf-8")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return []
            raise errors.ContentError(f"{page_url}: HTTP {error.code}") from None
        except OSError as error:
            raise errors.ContentError(f"{page_url}: {error}") from None
        return [builds.Wheel(filename=filename, sha256=digest,
                             url=urllib.parse.urljoin(page_url, href))
                for href, digest, filename in _LINK.findall(page)
                if filename.endswith(".whl")]

    def fetch(self, url: str) -> AbstractContextManager[BinaryIO]:
        return self._fetching(url)

    @contextmanager
    def _fetching(self, url: str) -> Iterator[BinaryIO]:
        try:
            response = urllib.request.urlopen(url, timeout=10)
        except OSError as error:
            raise errors.ContentError(f"{url}: {error}") from None
        with response:
            yield response


class LoopbackStores(compose.Boto3Stores):
    """The real stores, with the loopback index client for layers built from locks."""

    def package_index(self, url: str) -> ports.PackageIndex:
        return LoopbackIndex(url)
