"""The build target: runtimes and architectures -> (Python, machine, glibc), its accepted wheel
tags in priority order, and a marker environment that nothing of the build machine leaks into."""

from __future__ import annotations

import pytest
from packaging.markers import Marker, default_environment

from reconciler import lambdaos
from reconciler.builds import target


def test_runtime_os_table() -> None:
    """python3.9-3.11 run on Amazon Linux 2 (glibc 2.26), python3.12+ on Amazon Linux 2023
    (glibc 2.34), a future python3.x too."""
    glibc = {runtime: target.targets_for([runtime], [])[0].glibc
             for runtime in ("python3.9", "python3.11", "python3.12", "python3.13", "python3.19")}
    assert glibc == {"python3.9": (2, 26), "python3.11": (2, 26), "python3.12": (2, 34),
                     "python3.13": (2, 34), "python3.19": (2, 34)}
    assert "Lambda runtimes" in lambdaos.SOURCE


def test_targets_are_the_product_of_runtimes_and_architectures() -> None:
    """Each Python runtime times each architecture (none declared: x86_64); other runtimes are
    not build targets."""
    found = target.targets_for(["nodejs20.x", "python3.12", "python3.11"], ["arm64", "x86_64"])
    assert [one.describe() for one in found] == [
        "python3.11 arm64 (Amazon Linux 2, glibc 2.26)",
        "python3.11 x86_64 (Amazon Linux 2, glibc 2.26)",
        "python3.12 arm64 (Amazon Linux 2023, glibc 2.34)",
        "python3.12 x86_64 (Amazon Linux 2023, glibc 2.34)"]
    assert [one.machine for one in target.targets_for(["python3.12"], [])] == ["x86_64"]
    with pytest.raises(target.TargetError, match="needs a Python runtime"):
        target.targets_for(["nodejs20.x"], [])


def test_tag_priority() -> None:
    """cpXY-cpXY from the newest manylinux down (each legacy alias after its glibc), then
    abi3, then none, then pure py3; never linux_* or a glibc newer than the target's."""
    tags = [str(tag) for tag in target.targets_for(["python3.11"], ["x86_64"])[0]
            .accepted_tags()]
    assert tags[0] == "cp311-cp311-manylinux_2_26_x86_64"
    position = tags.index
    assert (position("cp311-cp311-manylinux_2_17_x86_64")
            < position("cp311-cp311-manylinux2014_x86_64")
            < position("cp311-cp311-manylinux_2_16_x86_64"))
    assert position("cp311-cp311-manylinux2010_x86_64") == position(
        "cp311-cp311-manylinux_2_12_x86_64") + 1
    assert (position("cp311-cp311-manylinux1_x86_64")
            < position("cp311-abi3-manylinux_2_26_x86_64"))
    assert position("cp311-abi3-manylinux1_x86_64") < position("cp39-abi3-manylinux_2_26_x86_64")
    assert position("cp39-abi3-manylinux1_x86_64") < position("py3-none-manylinux_2_26_x86_64")
    assert tags[-1] != "py3-none-any" and position("py3-none-any") > position("cp311-none-any")
    assert not [tag for tag in tags if "linux_x86_64" in tag and "manylinux" not in tag]
    assert "cp311-cp311-manylinux_2_28_x86_64" not in tags
    assert not [tag for tag in tags if "aarch64" in tag or "musllinux" in tag]
    arm = [str(tag) for tag in target.targets_for(["python3.12"], ["arm64"])[0].accepted_tags()]
    assert "cp312-cp312-manylinux2014_aarch64" in arm
    assert not [tag for tag in arm if "manylinux1" in tag or "manylinux2010" in tag]


def test_marker_environment_is_the_targets_alone() -> None:
    """Every marker variable is given (none falls back to the build machine), and markers read
    the target's machine and Python."""
    environment = target.targets_for(["python3.12"], ["arm64"])[0].marker_environment()
    assert set(default_environment()) <= set(environment)
    assert Marker('platform_machine == "aarch64" and python_version >= "3.12"').evaluate(
        environment)
    assert Marker('sys_platform == "linux" and implementation_name == "cpython"').evaluate(
        environment)
    assert not Marker('python_version < "3.12"').evaluate(environment)
