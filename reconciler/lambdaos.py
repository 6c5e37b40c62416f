"""What the Lambda platform provides to a layer's binaries, kept as data with its sources: the
operating system (and so the glibc and libstdc++) each runtime runs on, and the shared
libraries every Lambda OS holds.

Pure data and lookups: no I/O, no knowledge of layers, wheels or ELF files. When AWS adds a
runtime, add a row here (a runtime missing from the table is simply not checked).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Source: AWS Lambda Developer Guide, "Lambda runtimes" (the table of supported runtimes with
# their operating system), and the glibc/GCC versions of those OS releases: Amazon Linux 2
# ships glibc 2.26 and GCC 7.3 (libstdc++ GLIBCXX_3.4.24, CXXABI_1.3.11); Amazon Linux 2023
# ships glibc 2.34 and GCC 11 (libstdc++ GLIBCXX_3.4.29, CXXABI_1.3.13).
SOURCE = ("AWS Lambda Developer Guide, 'Lambda runtimes' (runtime -> operating system); "
          "Amazon Linux 2: glibc 2.26, GCC 7.3; Amazon Linux 2023: glibc 2.34, GCC 11")


@dataclass(frozen=True)
class OperatingSystem:
    """One Lambda operating system and the symbol versions its C and C++ runtimes define."""

    name: str
    glibc: tuple[int, int]
    glibcxx: tuple[int, ...]
    cxxabi: tuple[int, ...]

    def describe(self) -> str:
        return f"{self.name} (glibc {self.glibc[0]}.{self.glibc[1]})"


AMAZON_LINUX_2 = OperatingSystem("Amazon Linux 2", (2, 26), (3, 4, 24), (1, 3, 11))
AMAZON_LINUX_2023 = OperatingSystem("Amazon Linux 2023", (2, 34), (3, 4, 29), (1, 3, 13))

# Runtime identifier -> the OS it runs on (deprecated runtimes included while layers may still
# declare them).
RUNTIME_OS: dict[str, OperatingSystem] = {
    "python3.8": AMAZON_LINUX_2,
    "python3.9": AMAZON_LINUX_2,
    "python3.10": AMAZON_LINUX_2,
    "python3.11": AMAZON_LINUX_2,
    "python3.12": AMAZON_LINUX_2023,
    "python3.13": AMAZON_LINUX_2023,
    "python3.14": AMAZON_LINUX_2023,
    "nodejs16.x": AMAZON_LINUX_2,
    "nodejs18.x": AMAZON_LINUX_2,
    "nodejs20.x": AMAZON_LINUX_2023,
    "nodejs22.x": AMAZON_LINUX_2023,
    "nodejs24.x": AMAZON_LINUX_2023,
    "java8.al2": AMAZON_LINUX_2,
    "java11": AMAZON_LINUX_2,
    "java17": AMAZON_LINUX_2,
    "java21": AMAZON_LINUX_2023,
    "java25": AMAZON_LINUX_2023,
    "dotnet6": AMAZON_LINUX_2,
    "dotnet8": AMAZON_LINUX_2023,
    "dotnet10": AMAZON_LINUX_2023,
    "ruby3.2": AMAZON_LINUX_2,
    "ruby3.3": AMAZON_LINUX_2023,
    "ruby3.4": AMAZON_LINUX_2023,
    "provided.al2": AMAZON_LINUX_2,
    "provided.al2023": AMAZON_LINUX_2023,
}

_PYTHON_RUNTIME = re.compile(r"python3\.(\d+)")


def runtime_os(runtime: str) -> OperatingSystem | None:
    """The OS `runtime` runs on; a Python runtime newer than the table runs on Amazon Linux
    2023 (every Python since 3.12 does), any other unknown runtime is None (not checked)."""
    known = RUNTIME_OS.get(runtime)
    if known is not None:
        return known
    python = python_minor(runtime)
    if python is not None and python >= (3, 12):
        return AMAZON_LINUX_2023
    return None


def python_minor(runtime: str) -> tuple[int, int] | None:
    """`python3.12` -> (3, 12); None for a runtime that is not CPython."""
    found = _PYTHON_RUNTIME.fullmatch(runtime)
    return (3, int(found.group(1))) if found else None


# Lambda's architecture names -> the ELF/wheel name of the machine.
MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}
DEFAULT_ARCHITECTURE = "x86_64"

# Source: the system libraries the manylinux policies (PEP 599, PEP 600's
# auditwheel policy.json) allow a wheel to link without vendoring, less those the Lambda
# images do not hold (libX11, libXext, libXrender, libICE, libSM, libGL, glib and gobject:
# opencv-python #1019; libnsl and libcrypt.so.1, dropped by Amazon Linux 2023), plus zlib,
# which every Lambda image holds (the Python runtimes' own zlib module links it).
# A library missing from this list is only a warning.
PROVIDED_LIBRARIES_SOURCE = ("manylinux policy system libraries (PEP 599/600) held by both "
                             "Amazon Linux 2 and 2023 Lambda images, plus zlib")
PROVIDED_LIBRARIES = frozenset({
    "libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0", "libutil.so.1",
    "libresolv.so.2", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "libgcc_s.so.1",
    "libstdc++.so.6", "libz.so.1",
})
