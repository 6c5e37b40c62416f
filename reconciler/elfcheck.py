"""The binary check of a layer: a small ELF reader (machine, needed libraries, the symbol
versions each needs) and the verdict on a layer's ELF files against what the layer declares
(architectures, the runtimes' OS and its glibc, the CPython minor of extension modules).

Pure: it reads the bytes it is handed through a slice interface (bytes, or an mmap of a file
the caller opened) and decides; it opens nothing. The reader must never raise on any input: a
truncated or hostile file is a BadElf value naming what is wrong. It reads what the dynamic
loader reads (program headers, the dynamic segment), not section headers, which a loader
ignores and a file may strip or forge.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from reconciler import lambdaos

ELF_MAGIC = b"\x7fELF"
EM_X86_64 = 62
EM_AARCH64 = 183
MACHINE_NAMES = {EM_X86_64: "x86_64", EM_AARCH64: "aarch64", 3: "i386", 40: "arm",
                 8: "mips", 20: "ppc", 21: "ppc64", 22: "s390x", 243: "riscv"}

_PT_LOAD, _PT_DYNAMIC = 1, 2
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_STRSZ, _DT_SONAME = 0, 1, 5, 10, 14
_DT_VERNEED, _DT_VERNEEDNUM = 0x6FFFFFFE, 0x6FFFFFFF
# Bounds that keep a hostile file from making the reader loop or allocate without end: no
# real library comes near them.
_MAX_PROGRAM_HEADERS = 4096
_MAX_DYNAMIC_ENTRIES = 65536
_MAX_VERSION_RECORDS = 65536
_MAX_NAME_BYTES = 4096

_EXTENSION = re.compile(
    r"\.cpython-(?P<major>\d)(?P<minor>\d+)(?P<flags>[a-z]*)-(?P<machine>[A-Za-z0-9_]+)"
    r"-linux-(?P<libc>gnu|musl)[A-Za-z0-9_]*\.so$")


class ByteSource(Protocol):
    """What the reader needs of a file's bytes: its length and slices (bytes and mmap have
    both)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: slice, /) -> bytes: ...


@dataclass(frozen=True)
class ElfInfo:
    """What an ELF file asks of the system that loads it."""

    machine: int
    bits: int
    needed: tuple[str, ...] = ()
    soname: str | None = None
    # (library, version name) for each symbol version it needs: ("libc.so.6", "GLIBC_2.28").
    version_needs: tuple[tuple[str, str], ...] = ()

    @property
    def machine_name(self) -> str:
        return MACHINE_NAMES.get(self.machine, f"ELF machine {self.machine}")

    def highest(self, prefix: str) -> tuple[int, ...] | None:
        """The highest version needed of `prefix` (`GLIBC`, `GLIBCXX`, `CXXABI`), or None."""
        found: list[tuple[int, ...]] = []
        for _, version in self.version_needs:
            name, _, number = version.partition("_")
            if name == prefix and re.fullmatch(r"\d+(\.\d+)*", number):
                found.append(tuple(int(part) for part in number.split(".")))
        return max(found, default=None)


@dataclass(frozen=True)
class BadElf:
    """A file that starts like an ELF file but cannot be read as one."""

    reason: str


def as_document(found: ElfInfo | BadElf) -> dict[str, object]:
    """What read_elf found, as JSON-able values (`from_document` reads it back)."""
    if isinstance(found, BadElf):
        return {"bad": found.reason}
    return {"machine": found.machine, "bits": found.bits, "needed": list(found.needed),
            "soname": found.soname,
            "version_needs": [list(pair) for pair in found.version_needs]}


def from_document(document: object) -> ElfInfo | BadElf | None:
    """What `as_document` wrote; None for anything else (a damaged cache entry)."""
    if not isinstance(document, dict):
        return None
    if set(document) == {"bad"} and isinstance(document["bad"], str):
        return BadElf(document["bad"])
    try:
        machine, bits, soname = document["machine"], document["bits"], document["soname"]
        needed, needs = document["needed"], document["version_needs"]
        if not (isinstance(machine, int) and isinstance(bits, int)
                and (soname is None or isinstance(soname, str))
                and isinstance(needed, list) and all(isinstance(n, str) for n in needed)
                and isinstance(needs, list) and all(
                    isinstance(pair, list) and len(pair) == 2
                    and all(isinstance(part, str) for part in pair) for pair in needs)):
            return None
        return ElfInfo(machine=machine, bits=bits, needed=tuple(needed), soname=soname,
                       version_needs=tuple((pair[0], pair[1]) for pair in needs))
    except KeyError:
        return None


class _Malformed(Exception):
    pass


def is_elf(head: bytes) -> bool:
    """Whether a file whose first bytes are `head` is an ELF file (to be read and checked)."""
    return head[:4] == ELF_MAGIC


def read_elf(data: ByteSource) -> ElfInfo | BadElf:
    """What the ELF file `data` needs; a BadElf for anything that cannot be read. Never
    raises."""
    try:
        return _Parser(data).parse()
    except _Malformed as error:
        return BadElf(str(error))
    except (struct.error, ValueError, IndexError, OverflowError) as error:
        return BadElf(f"malformed ({error})")


class _Parser:
    def __init__(self, data: ByteSource) -> None:
        self.data = data
        self.size = len(data)
        self.endian = "<"

    def read(self, offset: int, length: int, what: str) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise _Malformed(f"truncated: {what} at offset {offset} lies past the end of "
                             f"the file ({self.size} bytes)")
        return self.data[offset:offset + length]

    def unpack(self, layout: str, offset: int, what: str) -> tuple[int, ...]:
        fmt = self.endian + layout
        return struct.unpack(fmt, self.read(offset, struct.calcsize(fmt), what))

    def parse(self) -> ElfInfo:
        ident = self.read(0, 16, "the ELF identification")
        if ident[:4] != ELF_MAGIC:
            raise _Malformed("not an ELF file (no \\x7fELF magic)")
        if ident[4] not in (1, 2):
            raise _Malformed(f"unknown ELF class {ident[4]}")
        if ident[5] not in (1, 2):
            raise _Malformed(f"unknown ELF data encoding {ident[5]}")
        bits = 64 if ident[4] == 2 else 32
        self.endian = "<" if ident[5] == 1 else ">"
        if bits == 64:
            (_, machine, _, _, phoff, _, _, _, phentsize, phnum, *_rest) = self.unpack(
                "HHIQQQIHHHHHH", 16, "the ELF header")
        else:
            (_, machine, _, _, phoff, _, _, _, phentsize, phnum, *_rest) = self.unpack(
                "HHIIIIIHHHHHH", 16, "the ELF header")
        segments = self._segments(phoff=phoff, phentsize=phentsize, phnum=phnum, bits=bits)
        dynamic = [segment for segment in segments if segment[0] == _PT_DYNAMIC]
        if not dynamic:
            return ElfInfo(machine=machine, bits=bits)  # static: needs nothing of the system
        loads = [segment for segment in segments if segment[0] == _PT_LOAD]
        return self._dynamic(dynamic[0], loads=loads, machine=machine, bits=bits)

    def _segments(self, *, phoff: int, phentsize: int, phnum: int,
                  bits: int) -> list[tuple[int, int, int, int]]:
        """(type, offset, vaddr, filesz) of each program header."""
        layout = "IIQQQQQQ" if bits == 64 else "IIIIIIII"
        if phnum == 0:
            return []
        if phnum > _MAX_PROGRAM_HEADERS or phentsize < struct.calcsize(self.endian + layout):
            raise _Malformed(f"implausible program headers ({phnum} of {phentsize} bytes)")
        segments: list[tuple[int, int, int, int]] = []
        for index in range(phnum):
            fields = self.unpack(layout, phoff + index * phentsize, "a program header")
            if bits == 64:
                kind, _, offset, vaddr, _, filesz, _, _ = fields
            else:
                kind, offset, vaddr, _, filesz, _, _, _ = fields
            segments.append((kind, offset, vaddr, filesz))
        return segments

    def _dynamic(self, dynamic: tuple[int, int, int, int], *,
                 loads: Sequence[tuple[int, int, int, int]], machine: int, bits: int) -> ElfInfo:
        _, offset, _, filesz = dynamic
        layout = "qQ" if bits == 64 else "iI"
        entry_size = struct.calcsize(self.endian + layout)
        tags: list[tuple[int, int]] = []
        for index in range(min(filesz // entry_size, _MAX_DYNAMIC_ENTRIES)):
            tag, value = self.unpack(layout, offset + index * entry_size, "a dynamic entry")
            if tag == _DT_NULL:
                break
            tags.append((tag, value))
        values = dict(tags)
        if _DT_STRTAB not in values:
            if any(tag in (_DT_NEEDED, _DT_VERNEED) for tag, _ in tags):
                raise _Malformed("the dynamic segment names libraries but has no string table")
            return ElfInfo(machine=machine, bits=bits)
        strtab = self._file_offset(values[_DT_STRTAB], loads=loads, what="the string table")
        strsz = values.get(_DT_STRSZ, self.size - strtab)
        strings = _StringTable(self, start=strtab, size=min(strsz, self.size - strtab))
        needed = tuple(strings.get(value) for tag, value in tags if tag == _DT_NEEDED)
        soname = next((strings.get(value) for tag, value in tags if tag == _DT_SONAME), None)
        version_needs: tuple[tuple[str, str], ...] = ()
        if _DT_VERNEED in values:
            start = self._file_offset(values[_DT_VERNEED], loads=loads,
                                      what="the version needs")
            version_needs = self._version_needs(start, count=values.get(_DT_VERNEEDNUM, 0),
                                                strings=strings)
        return ElfInfo(machine=machine, bits=bits, needed=needed, soname=soname,
                       version_needs=version_needs)

    def _file_offset(self, address: int, *, loads: Sequence[tuple[int, int, int, int]],
                     what: str) -> int:
        for _, offset, vaddr, filesz in loads:
            if vaddr <= address < vaddr + filesz:
                return offset + (address - vaddr)
        raise _Malformed(f"{what} (address {address:#x}) lies in no loaded segment")

    def _version_needs(self, start: int, *, count: int,
                       strings: _StringTable) -> tuple[tuple[str, str], ...]:
        """Walk the Verneed records (each with its Vernaux list) from `start`."""
        found: list[tuple[str, str]] = []
        records = 0
        offset = start
        for _ in range(min(count, _MAX_VERSION_RECORDS)):
            _, aux_count, file_name, aux_offset, next_offset = self.unpack(
                "HHIII", offset, "a version need")
            library = strings.get(file_name)
            aux = offset + aux_offset
            for _ in range(aux_count):
                records += 1
                if records > _MAX_VERSION_RECORDS:
                    raise _Malformed("too many symbol version records")
                _, _, _, name, aux_next = self.unpack("IHHII", aux, "a version need entry")
                found.append((library, strings.get(name)))
                if aux_next == 0:
                    break
                aux += aux_next
            if next_offset == 0:
                break
            offset += next_offset
        return tuple(found)


class _StringTable:
    def __init__(self, parser: _Parser, *, start: int, size: int) -> None:
        self.parser = parser
        self.start = start
        self.size = max(size, 0)

    def get(self, index: int) -> str:
        if index < 0 or index >= self.size:
            raise _Malformed(f"a name at {index} lies outside the string table")
        length = min(self.size - index, _MAX_NAME_BYTES)
        raw = self.parser.read(self.start + index, length, "a name")
        end = raw.find(b"\0")
        if end < 0:
            raise _Malformed("a name in the string table is not terminated")
        return raw[:end].decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Finding:
    """One verdict on one file: an error (the layer would fail to load it) or a warning."""

    path: str
    message: str
    error: bool = True

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def check_layer(elf_files: Mapping[str, ElfInfo | BadElf], *, layer_files: Iterable[str],
                runtimes: Sequence[str], architectures: Sequence[str]) -> list[Finding]:
    """The verdicts on a layer's ELF files (`elf_files`: path -> what read_elf found) and
    extension module names (among `layer_files`, every path in the layer), against the
    layer's declared runtimes and architectures. Sorted by path; errors and warnings
    both (see Finding.error)."""
    all_files = sorted(set(layer_files) | set(elf_files))
    in_layer = {path.rsplit("/", 1)[-1] for path in all_files}
    machines = [lambdaos.MACHINES.get(name, name)
                for name in architectures or [lambdaos.DEFAULT_ARCHITECTURE]]
    systems = [(runtime, system) for runtime in runtimes
               if (system := lambdaos.runtime_os(runtime)) is not None]
    pythons = [(runtime, minor) for runtime in runtimes
               if (minor := lambdaos.python_minor(runtime)) is not None]
    findings: list[Finding] = []
    for path in all_files:
        findings += _extension_findings(path, pythons=pythons, machines=machines)
        info = elf_files.get(path)
        if isinstance(info, BadElf):
            findings.append(Finding(path, f"not a readable ELF file: {info.reason}"))
        elif info is not None:
            findings += _elf_findings(path, info, machines=machines, systems=systems,
                                      in_layer=in_layer)
    return findings


def _extension_findings(path: str, *, pythons: Sequence[tuple[str, tuple[int, int]]],
                        machines: Sequence[str]) -> list[Finding]:
    found = _EXTENSION.search(path)
    if found is None:
        return []
    tag = f"cpython-{found['major']}{found['minor']}{found['flags']}"
    findings = [Finding(path, f"needs {tag}, but the layer declares {runtime}")
                for runtime, minor in pythons
                if (int(found["major"]), int(found["minor"])) != minor or found["flags"]]
    if found["libc"] == "musl":
        findings.append(Finding(path, "needs musl libc, but Lambda's OS has glibc"))
    findings += [Finding(path, f"needs {found['machine']}, but the layer declares "
                               f"{_architecture(machine)}")
                 for machine in machines if found["machine"] != machine]
    return findings


def _elf_findings(path: str, info: ElfInfo, *, machines: Sequence[str],
                  systems: Sequence[tuple[str, lambdaos.OperatingSystem]],
                  in_layer: set[str]) -> list[Finding]:
    findings = [Finding(path, f"needs {info.machine_name}, but the layer declares "
                              f"{_architecture(machine)}")
                for machine in machines if info.machine_name != machine]
    glibc = info.highest("GLIBC")
    ships_libstdcxx = "libstdc++.so.6" in in_layer
    for runtime, system in systems:
        if glibc is not None and glibc > system.glibc:
            findings.append(Finding(path, f"needs GLIBC_{_dotted(glibc)}, but {runtime} runs "
                                          f"on {system.describe()}"))
        if ships_libstdcxx:
            continue
        for prefix, provided in (("GLIBCXX", system.glibcxx), ("CXXABI", system.cxxabi)):
            needed = info.highest(prefix)
            if needed is not None and needed > provided:
                findings.append(Finding(
                    path, f"needs {prefix}_{_dotted(needed)}, but {runtime} runs on "
                          f"{system.name}, whose libstdc++ has {prefix}_{_dotted(provided)}"))
    for library in info.needed:
        name = library.rsplit("/", 1)[-1]
        if name not in in_layer and name not in lambdaos.PROVIDED_LIBRARIES:
            findings.append(Finding(path, f"needs {library}, found neither in the layer nor "
                                          "among the libraries every Lambda OS has",
                                    error=False))
    return findings


def _architecture(machine: str) -> str:
    return next((name for name, known in lambdaos.MACHINES.items() if known == machine),
                machine)


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)
