"""Test helpers for built layers: wheels written on the fly with zipfile (METADATA, WHEEL with
its Tag lines, RECORD), tiny shared libraries compiled with the machine's gcc, a simple-API index
served on a loopback port (PEP 503 HTML, or PEP 691 JSON with `mode="json"`; its requests
counted), and real uv locks made against it."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import socket
import socketserver
import subprocess
import threading
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uv


def make_wheel(folder: Path, name: str, version: str, tag: str, *,
               files: Mapping[str, bytes] | None = None, requires: Sequence[str] = (),
               extra_members: Mapping[str, bytes] | None = None,
               executable: Sequence[str] = ()) -> Path:
    """Write `{name}-{version}-{tag}.whl` into `folder`: `files` (default: the package's
    `__init__.py`, naming the tag so that every wheel's bytes differ), the .dist-info with
    METADATA, WHEEL and RECORD, and `extra_members` written as given (for hostile names)."""
    folder.mkdir(parents=True, exist_ok=True)
    dist_info = f"{name}-{version}.dist-info"
    members = dict(files if files is not None
                   else {f"{name}/__init__.py": f"TAG = {tag!r}\n".encode()})
    members[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {requirement}\n" for requirement in requires)).encode()
    members[f"{dist_info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: wheelcraft\nRoot-Is-Purelib: "
        f"{'true' if tag.endswith('-any') else 'false'}\n"
        + "".join(f"Tag: {one}\n" for one in _expand(tag))).encode()
    record = "".join(f"{member},sha256={_record_digest(data)},{len(data)}\n"
                     for member, data in members.items())
    members[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    path = folder / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for member, data in {**members, **(extra_members or {})}.items():
            info = zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100755 if member in executable else 0o100644) << 16
            wheel.writestr(info, data)
    return path


def _record_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def _expand(tag: str) -> list[str]:
    interpreters, abis, platforms = tag.split("-")
    return [f"{one}-{abi}-{platform}" for one in interpreters.split(".")
            for abi in abis.split(".") for platform in platforms.split(".")]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


STATX_SOURCE = """
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
int probe(const char *path) { struct statx s; return statx(AT_FDCWD, path, 0, STATX_SIZE, &s); }
"""
MEMCPY_SOURCE = """
#include <string.h>
void copy(char *to, const char *from, size_t size) { memcpy(to, from, size); }
"""
E_MACHINE_OFFSET = 18


def compile_library(folder: Path, name: str, source: str, *,
                    link: Sequence[str] = ()) -> Path:
    """A shared library built now by gcc from C `source`."""
    folder.mkdir(parents=True, exist_ok=True)
    c_file = folder / f"{name}.c"
    c_file.write_text(source)
    out = folder / name
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(out), str(c_file), *link],
                   check=True, capture_output=True)
    return out


def as_aarch64(data: bytes) -> bytes:
    """The same ELF file with its header's e_machine set to EM_AARCH64 (183)."""
    return data[:E_MACHINE_OFFSET] + (183).to_bytes(2, "little") + data[E_MACHINE_OFFSET + 2:]


@dataclass
class Index:
    """A simple-API index of a folder of files (`<root>/<project>/<file>`), on a loopback
    port."""

    root: Path
    url: str = ""
    requests: list[str] = field(default_factory=list)


JSON_PAGE = "index.json"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
_PAGES = frozenset({"index.html", JSON_PAGE})


def write_index_pages(root: Path) -> None:
    """An index.html (PEP 503) and an index.json (PEP 691, with sizes) per project folder, each
    naming every file by a relative URL with its sha256."""
    for project in sorted(path for path in root.iterdir() if path.is_dir()):
        files = sorted(file for file in project.iterdir() if file.name not in _PAGES)
        links = "".join(f'<a href="{file.name}#sha256={sha256_of(file)}">{file.name}</a>\n'
                        for file in files)
        (project / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>")
        page = {"meta": {"api-version": "1.1"}, "name": project.name,
                "files": [{"filename": file.name, "url": file.name,
                           "hashes": {"sha256": sha256_of(file)},
                           "size": file.stat().st_size} for file in files]}
        (project / JSON_PAGE).write_text(json.dumps(page))


@contextmanager
def serve_index(root: Path, *, mode: str = "html") -> Iterator[Index]:
    """Serve `root` on 127.0.0.1 at a free port until the block ends, its project pages as
    PEP 503 HTML (`mode="html"`) or PEP 691 JSON (`mode="json"`); every request's path is
    recorded in the Index."""
    if mode not in ("html", "json"):
        raise ValueError(f"mode is html or json, not {mode!r}")
    write_index_pages(root)
    index = Index(root)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, request: socket.socket | tuple[bytes, socket.socket],
                     client_address: tuple[str, int], server: socketserver.BaseServer) -> None:
            super().__init__(request, client_address, server, directory=str(root))

        def do_GET(self) -> None:
            index.requests.append(self.path)
            page = root / self.path.split("?")[0].strip("/") / JSON_PAGE
            if mode == "json" and self.path.endswith("/") and page.is_file():
                body = page.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", JSON_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    index.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield index
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def uv_run(project: Path, *arguments: str, index_url: str, cache: Path) -> str:
    """Run the real uv (the test dependency) in `project` against only the loopback index."""
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("UV_", "PIP_"))}
    environment.update(UV_NO_CONFIG="1", UV_CACHE_DIR=str(cache), UV_PYTHON_DOWNLOADS="never",
                       UV_DEFAULT_INDEX=index_url, NO_COLOR="1")
    done = subprocess.run([uv.find_uv_bin(), *arguments], cwd=project, env=environment,
                          check=True, capture_output=True, text=True, timeout=120)
    return done.stdout
