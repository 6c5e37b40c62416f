"""The build target of a Python layer: (Python minor, machine, glibc) from the layer's declared
runtimes and architectures; the wheel tags such a target accepts, most specific first; and the
PEP 508 marker environment a lock's markers are evaluated in.

Pure: nothing here looks at the machine that runs the build (its Python, its glibc, its
architecture never leak into a target: every marker variable is given, none defaulted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from packaging import tags

from reconciler import lambdaos

# The oldest manylinux each machine has: manylinux1 (glibc 2.5) was x86_64/i686 only, aarch64
# wheels start at manylinux2014 (glibc 2.17).
_OLDEST_GLIBC_MINOR = {"x86_64": 5, "aarch64": 17}
# PEP 600's legacy aliases, accepted right after the manylinux_2_Y tag they stand for.
_LEGACY_ALIASES = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


class TargetError(ValueError):
    """The declared runtimes and architectures give no buildable target."""


@dataclass(frozen=True, order=True)
class Target:
    """What the built layer runs on: CPython `python` (major, minor), `machine` (`x86_64` or
    `aarch64`, the wheel and ELF name) and the glibc of the runtime's OS."""

    python: tuple[int, int]
    machine: str
    glibc: tuple[int, int]
    os_name: str = ""

    @property
    def runtime(self) -> str:
        return f"python{self.python[0]}.{self.python[1]}"

    @property
    def architecture(self) -> str:
        """The Lambda name of the machine (`arm64` for aarch64)."""
        return next(name for name, machine in lambdaos.MACHINES.items()
                    if machine == self.machine)

    def describe(self) -> str:
        """`python3.11 x86_64 (Amazon Linux 2, glibc 2.26)`."""
        return (f"{self.runtime} {self.architecture} ({self.os_name}, "
                f"glibc {self.glibc[0]}.{self.glibc[1]})")

    def platforms(self) -> list[str]:
        """The platform tags, newest glibc first: manylinux_2_Y down to the machine's oldest,
        each legacy alias right after its manylinux_2_Y. No `linux_*` (not portable) and no
        musllinux (Lambda's OS is glibc)."""
        found: list[str] = []
        for minor in range(self.glibc[1], _OLDEST_GLIBC_MINOR[self.machine] - 1, -1):
            found.append(f"manylinux_{self.glibc[0]}_{minor}_{self.machine}")
            if minor in _LEGACY_ALIASES:
                found.append(f"{_LEGACY_ALIASES[minor]}_{self.machine}")
        return found

    def accepted_tags(self) -> list[tags.Tag]:
        """Every wheel tag the target accepts, most specific first (the order pip and uv use):
        cpXY-cpXY, then abi3 (this minor, then older), `none`, then the pure `py3` tags and
        finally `py3-none-any`."""
        interpreter = f"cp{self.python[0]}{self.python[1]}"
        platforms = self.platforms()
        return [
            *tags.cpython_tags(self.python, abis=[interpreter], platforms=platforms),
            *tags.compatible_tags(self.python, interpreter=interpreter, platforms=platforms),
        ]

    def tag_priority(self) -> dict[tags.Tag, int]:
        """Accepted tag -> rank (0 is the most specific)."""
        ranks: dict[tags.Tag, int] = {}
        for rank, tag in enumerate(self.accepted_tags()):
            ranks.setdefault(tag, rank)
        return ranks

    def marker_environment(self) -> dict[str, str]:
        """PEP 508 marker variables for the target, every one given so that nothing of the
        building machine leaks in. The patch release of a Lambda runtime moves under the
        layer (AWS updates it), so `python_full_version` is the minor's `.0`, and the
        kernel's `platform_release`/`platform_version` are unknown (empty)."""
        version = f"{self.python[0]}.{self.python[1]}"
        return {
            "implementation_name": "cpython",
            "implementation_version": f"{version}.0",
            "os_name": "posix",
            "platform_machine": self.machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": f"{version}.0",
            "python_version": version,
            "sys_platform": "linux",
        }


def targets_for(runtimes: Sequence[str], architectures: Sequence[str]) -> list[Target]:
    """One target per declared Python runtime and architecture (none declared: x86_64), in a
    stable order. Raises TargetError when no Python runtime is declared or one is unknown."""
    pythons: list[tuple[tuple[int, int], lambdaos.OperatingSystem]] = []
    for runtime in runtimes:
        python = lambdaos.python_minor(runtime)
        if python is None:
            continue
        system = lambdaos.runtime_os(runtime)
        if system is None:
            raise TargetError(f"{runtime} has no known Lambda operating system")
        pythons.append((python, system))
    if not pythons:
        raise TargetError("a layer built from a lock needs a Python runtime in "
                          "compatible_runtimes (such as python3.12)")
    machines: list[str] = []
    for architecture in architectures or [lambdaos.DEFAULT_ARCHITECTURE]:
        machine = lambdaos.MACHINES.get(architecture)
        if machine is None:
            raise TargetError(f"unknown architecture {architecture!r}")
        machines.append(machine)
    return sorted({Target(python, machine, system.glibc, system.name)
                   for python, system in pythons for machine in machines})
