"""The binary check of a layer's zip (README "Binary compatibility"): read the ELF members of
the zip a plan is about to publish, ask `elfcheck` for the verdicts against the layer's
declared runtimes and architectures, and remember each verdict in `.reconcile/binaries/` by
(CodeSha256, runtimes, architectures), so that a warm plan (or the apply of a saved plan on the
same machine) does not read the zip again.

Shell: it reads zips and writes only its own verdict files; it decides nothing about a plan
(planning turns the errors into a layer error and the warnings into the plan's warnings).
Reading is cheap and bounded: only a member whose first four bytes are `\\x7fELF` is read
further, a small one whole and a large one through a block cache over the member's
decompressed stream (the reader asks for a few slices: headers, the dynamic segment, names).
Nothing a zip holds makes it raise: an unreadable member is a bad ELF file, named.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import IO

from reconciler import __version__, elfcheck
from reconciler.content import common

# Bump when what is checked changes; the tool's version is in the key too (the OS table).
CHECK_FORMAT = 1
# An ELF member up to this size is read whole; a larger one through _MemberBytes.
WHOLE_READ_BYTES = 16 * 1024 * 1024
_BLOCK_BYTES = 64 * 1024
_CACHED_BLOCKS = 64
# Verdict files kept (each a few hundred bytes); the oldest go first.
_MAX_VERDICTS = 256
_READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError,
                NotImplementedError, ValueError)


class _MemberBytes:
    """A ByteSource over one zip member's decompressed bytes, read in blocks on demand (a
    seek back restarts the member's decompression, so the blocks read are kept)."""

    def __init__(self, member: IO[bytes], size: int) -> None:
        self._member = member
        self._size = size
        self._blocks: OrderedDict[int, bytes] = OrderedDict()

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: slice, /) -> bytes:
        start, stop, _ = index.indices(self._size)
        if stop <= start:
            return b""
        out = bytearray()
        for number in range(start // _BLOCK_BYTES, (stop - 1) // _BLOCK_BYTES + 1):
            base = number * _BLOCK_BYTES
            out += self._block(number)[max(start - base, 0):stop - base]
        return bytes(out)

    def _block(self, number: int) -> bytes:
        if number in self._blocks:
            self._blocks.move_to_end(number)
            return self._blocks[number]
        try:
            self._member.seek(number * _BLOCK_BYTES)
            data = self._member.read(_BLOCK_BYTES)
        except _READ_ERRORS as error:
            # read_elf turns a ValueError into a BadElf naming it.
            raise ValueError(f"the member cannot be read from the zip: {error}") from error
        self._blocks[number] = data
        if len(self._blocks) > _CACHED_BLOCKS:
            self._blocks.popitem(last=False)
        return data


def _is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _read_member(zip_file: zipfile.ZipFile, info: zipfile.ZipInfo, *,
                 whole_read_bytes: int) -> elfcheck.ElfInfo | elfcheck.BadElf | None:
    """What the member needs, if it is an ELF file (None: it is not one)."""
    try:
        with zip_file.open(info) as member:
            head = member.read(4)
            if not elfcheck.is_elf(head):
                return None
            if info.file_size <= whole_read_bytes:
                return elfcheck.read_elf(head + member.read(info.file_size - len(head)))
            return elfcheck.read_elf(_MemberBytes(member, info.file_size))
    except _READ_ERRORS as error:
        return elfcheck.BadElf(f"it cannot be read from the zip: {error}")


def check_zip(zip_path: Path | str, *, runtimes: Sequence[str], architectures: Sequence[str],
              whole_read_bytes: int = WHOLE_READ_BYTES) -> list[elfcheck.Finding]:
    """The verdicts on the ELF files and extension modules of the zip at `zip_path` (raises
    OSError or zipfile.BadZipFile only when the zip itself cannot be opened). An ELF member
    up to `whole_read_bytes` is read whole, a larger one in slices."""
    elf_files: dict[str, elfcheck.ElfInfo | elfcheck.BadElf] = {}
    layer_files: list[str] = []
    with zipfile.ZipFile(zip_path) as zip_file:
        for info in zip_file.infolist():
            if info.is_dir():
                continue
            layer_files.append(info.filename)
            if _is_link(info) or info.file_size < 4:
                continue
            found = _read_member(zip_file, info, whole_read_bytes=whole_read_bytes)
            if found is not None:
                elf_files[info.filename] = found
    return elfcheck.check_layer(elf_files, layer_files=layer_files, runtimes=runtimes,
                                architectures=architectures)


class Verdicts:
    """The binary check with its verdicts kept in `folder` (`.reconcile/binaries/`): one JSON
    file per (CodeSha256, runtimes, architectures, check format, tool version). Deleting
    the folder only costs a re-read; a file that does not read back is ignored."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def check(self, zip_path: Path | str, *, code_sha256: str, runtimes: Sequence[str],
              architectures: Sequence[str]) -> list[elfcheck.Finding]:
        """The verdicts on the zip whose CodeSha256 is `code_sha256`, read from the zip at
        `zip_path` unless already known."""
        key, path = self._place(code_sha256, runtimes=runtimes, architectures=architectures)
        known = self._load(path, key=key)
        if known is not None:
            return known
        findings = check_zip(zip_path, runtimes=runtimes, architectures=architectures)
        self._save(path, key=key, findings=findings)
        return findings

    def remember(self, *, code_sha256: str, elf_files: Mapping[str, elfcheck.ElfInfo
                                                                | elfcheck.BadElf],
                 layer_files: Sequence[str], runtimes: Sequence[str],
                 architectures: Sequence[str]) -> None:
        """Keep the verdicts on a zip from what its build read of it (every ELF member, and
        every member's name), so that `check` does not open the zip again."""
        key, path = self._place(code_sha256, runtimes=runtimes, architectures=architectures)
        self._save(path, key=key, findings=elfcheck.check_layer(
            elf_files, layer_files=layer_files, runtimes=runtimes,
            architectures=architectures))

    def _place(self, code_sha256: str, *, runtimes: Sequence[str],
               architectures: Sequence[str]) -> tuple[str, Path]:
        key = json.dumps([CHECK_FORMAT, __version__, code_sha256, sorted(runtimes),
                          sorted(architectures)])
        return key, self.folder / f"{hashlib.sha256(key.encode()).hexdigest()}.json"

    @staticmethod
    def _load(path: Path, *, key: str) -> list[elfcheck.Finding] | None:
        try:
            document = json.loads(path.read_bytes())
            if document["key"] != key:
                return None
            return [elfcheck.Finding(str(item["path"]), str(item["message"]),
                                     error=bool(item["error"]))
                    for item in document["findings"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _save(self, path: Path, *, key: str, findings: list[elfcheck.Finding]) -> None:
        document = {"key": key, "findings": [
            {"path": finding.path, "message": finding.message, "error": finding.error}
            for finding in findings]}
        with suppress(OSError):  # best effort: it is only a cache
            self.folder.mkdir(parents=True, exist_ok=True)
            common.write_atomically(path, json.dumps(document, sort_keys=True).encode())
            self._prune()

    def _prune(self) -> None:
        kept = list(self.folder.glob("*.json"))
        if len(kept) <= _MAX_VERDICTS:
            return
        kept.sort(key=lambda found: found.stat().st_mtime_ns)
        for old in kept[:len(kept) - _MAX_VERDICTS]:
            with suppress(OSError):
                os.unlink(old)
