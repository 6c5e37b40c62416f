"""The simple API's project pages read as a package index serves them: PEP 691 JSON or PEP
503 HTML (bytes, content type and the page's own URL in; the wheels it offers with a SHA-256
out), every field checked, JSON nesting limited.

Pure: no network and no file (builds.index fetches the page); HTML is read with html.parser,
never with a pattern. A page it cannot read is a ContentError naming `where` (the index and
the project), never a KeyError.
"""

from __future__ import annotations

import html.parser
import json
import re
import urllib.parse

from reconciler import builds, errors

# pip's Accept header: JSON preferred, HTML understood (PEP 691).
ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
          "text/html;q=0.01")
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPES = frozenset({"application/vnd.pypi.simple.v1+html", "text/html"})
# A PEP 691 page nests four levels (page, files, a file, its hashes); 16 leaves room for keys
# a newer index adds and keeps a hostile page far from the interpreter's recursion limit.
MAX_JSON_DEPTH = 16
_SCHEMES = ("https", "http")
_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
_HEX_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
# A file name becomes a label, and may become a file: no separators, no control characters.
_UNSAFE_FILENAME = re.compile(r"[/\\\x00-\x1f\x7f]")


def is_project_name(name: str) -> bool:
    """Whether `name` is a valid project name (PEP 508): nothing else goes into a page URL."""
    return _NAME.match(name) is not None


def canonical_name(name: str) -> str:
    """The PEP 503 normalized form of a project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def page_wheels(body: bytes, *, content_type: str, charset: str | None, base: str,
                where: str) -> list[builds.Wheel]:
    """The wheels of a project page of `content_type` (lowercase, without parameters) found
    at `base` (relative URLs are resolved against it), each with a SHA-256 and an absolute
    http(s) URL, in page order, each file name once."""
    if content_type == JSON_TYPE:
        return _json_wheels(body, base=base, where=where)
    if content_type in HTML_TYPES:
        return _html_wheels(_decoded(body, charset, where=where), base=base, where=where)
    raise errors.ContentError(f"{where}: the page is {content_type}, not a simple API page "
                              "(PEP 691 JSON or PEP 503 HTML)",
                              hint="check that the URL is the index's simple API root")


def _decoded(body: bytes, charset: str | None, *, where: str) -> str:
    try:
        return body.decode(charset or "utf-8")
    except LookupError:
        raise errors.ContentError(f"{where}: the page's charset {charset!r} is unknown") \
            from None
    except UnicodeDecodeError as error:
        raise errors.ContentError(f"{where}: the page is not {charset or 'utf-8'} text "
                                  f"({error.reason} at byte {error.start})") from None


def _html_wheels(text: str, *, base: str, where: str) -> list[builds.Wheel]:
    """The wheels a PEP 503 page links to with a `#sha256=` fragment."""
    parser = _Anchors()
    try:
        parser.feed(text)
        parser.close()
    except (AssertionError, ValueError) as error:
        raise errors.ContentError(f"{where}: the page is not HTML ({error})") from None
    if not parser.tags:
        raise errors.ContentError(f"{where}: the page is not an HTML page (no tag at all)",
                                  hint="check that the URL is the index's simple API root")
    page_base = urllib.parse.urljoin(base, parser.base) if parser.base else base
    found: list[builds.Wheel] = []
    for href in parser.hrefs:
        location = urllib.parse.urljoin(page_base, href.strip())
        url, fragment = urllib.parse.urldefrag(location)
        name, _, digest = fragment.partition("=")
        filename = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
        if name != "sha256" or not _HEX_SHA256.match(digest):
            continue
        wheel = _wheel(filename, url=url, sha256=digest)
        if wheel is not None:
            found.append(wheel)
    return _unique(found)


class _Anchors(html.parser.HTMLParser):
    """The hrefs of a page's anchors, its first <base href>, and how many tags it has."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.base: str | None = None
        self.tags = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags += 1
        href = dict(attrs).get("href")
        if href is None:
            return
        if tag == "a":
            self.hrefs.append(href)
        elif tag == "base" and self.base is None:
            self.base = href


def _json_wheels(body: bytes, *, base: str, where: str) -> list[builds.Wheel]:
    """The wheels of a PEP 691 page that carry a sha256, every field checked."""
    try:
        page = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise errors.ContentError(f"{where}: the JSON page is not UTF-8 ({error.reason} at "
                                  f"byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise errors.ContentError(f"{where}: the page is not JSON ({error.msg} at line "
                                  f"{error.lineno}, column {error.colno})") from None
    except RecursionError:
        raise errors.ContentError(f"{where}: the JSON page nests too deeply") from None
    if _depth_exceeds(page, MAX_JSON_DEPTH):
        raise errors.ContentError(f"{where}: the JSON page nests deeper than "
                                  f"{MAX_JSON_DEPTH} levels")
    if not isinstance(page, dict):
        raise errors.ContentError(f"{where}: the JSON page is not an object")
    meta = page.get("meta")
    version = meta.get("api-version") if isinstance(meta, dict) else None
    if not isinstance(version, str) or version.split(".")[0] != "1":
        raise errors.ContentError(f"{where}: the JSON page's meta.api-version is "
                                  f"{version!r}, not a 1.x simple API this tool reads")
    files = page.get("files")
    if not isinstance(files, list):
        raise errors.ContentError(f"{where}: the JSON page's `files` is not a list")
    found: list[builds.Wheel] = []
    for number, entry in enumerate(files):
        wheel = _json_file(entry, base=base, where=f"{where}: files[{number}]")
        if wheel is not None:
            found.append(wheel)
    return _unique(found)


def _json_file(entry: object, *, base: str, where: str) -> builds.Wheel | None:
    """One `files` entry checked field by field; the wheel it names, None for another kind
    of file or one without a sha256."""
    if not isinstance(entry, dict):
        raise errors.ContentError(f"{where} is not an object")
    filename, url, hashes = entry.get("filename"), entry.get("url"), entry.get("hashes")
    if not isinstance(filename, str) or not filename:
        raise errors.ContentError(f"{where}.filename is missing or not a string")
    if not isinstance(url, str) or not url:
        raise errors.ContentError(f"{where}.url is missing or not a string")
    if not isinstance(hashes, dict) or not all(isinstance(value, str)
                                               for value in hashes.values()):
        raise errors.ContentError(f"{where}.hashes is not an object of strings")
    yanked = entry.get("yanked", False)
    if not isinstance(yanked, (bool, str)):
        raise errors.ContentError(f"{where}.yanked is neither a boolean nor a string")
    size = entry.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise errors.ContentError(f"{where}.size is not a whole number of bytes")
    digest = hashes.get("sha256")
    if digest is None:
        return None
    if not _HEX_SHA256.match(digest):
        raise errors.ContentError(f"{where}.hashes.sha256 is not a hex SHA-256")
    return _wheel(filename, url=urllib.parse.urljoin(base, url.strip()), sha256=digest,
                  size=size)


def _wheel(filename: str, *, url: str, sha256: str, size: int | None = None) -> \
        builds.Wheel | None:
    """A Wheel for a `.whl` file at an http(s) URL with a plain file name; None otherwise (an
    sdist, or a link elsewhere: a listing's URL is fetched, never opened as a file)."""
    if not filename.endswith(".whl") or _UNSAFE_FILENAME.search(filename):
        return None
    if urllib.parse.urlsplit(url).scheme.lower() not in _SCHEMES:
        return None
    return builds.Wheel(filename=filename, sha256=sha256.lower(), url=url, size=size)


def _unique(wheels: list[builds.Wheel]) -> list[builds.Wheel]:
    """The first of each file name (an index lists a file once; a page that repeats one
    must not make it count twice)."""
    seen: set[str] = set()
    kept: list[builds.Wheel] = []
    for wheel in wheels:
        if wheel.filename not in seen:
            seen.add(wheel.filename)
            kept.append(wheel)
    return kept


def _depth_exceeds(document: object, limit: int) -> bool:
    """Whether `document` nests more than `limit` containers (walked without recursion)."""
    stack: list[tuple[object, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values()
                         if isinstance(item, (dict, list)))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value if isinstance(item, (dict, list)))
    return False
