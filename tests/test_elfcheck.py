"""The ELF reader on libraries gcc compiles now (and on truncated, mutated and forged bytes),
and every verdict of the binary check."""

from __future__ import annotations

import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import wheelcraft
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import elfcheck
from reconciler.builds import wheels

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


@pytest.fixture(scope="module")
def libraries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """libstatx.so (statx: GLIBC_2.28) and libmemcpy.so (memcpy only), compiled now."""
    folder = tmp_path_factory.mktemp("elf")
    return {
        "statx": wheelcraft.compile_library(folder, "libstatx.so",
                                            wheelcraft.STATX_SOURCE).read_bytes(),
        "memcpy": wheelcraft.compile_library(folder, "libmemcpy.so",
                                             wheelcraft.MEMCPY_SOURCE).read_bytes(),
        "needs_m": wheelcraft.compile_library(folder, "libneedsm.so", wheelcraft.MEMCPY_SOURCE,
                                              link=["-Wl,--no-as-needed", "-lm"]).read_bytes(),
    }


def _read(data: bytes) -> elfcheck.ElfInfo:
    info = elfcheck.read_elf(data)
    assert isinstance(info, elfcheck.ElfInfo), info
    return info


def test_reader_finds_machine_needed_and_glibc(libraries: dict[str, bytes]) -> None:
    """statx needs GLIBC_2.28 from libc.so.6; memcpy needs far less; both are x86_64."""
    statx = _read(libraries["statx"])
    assert statx.machine == elfcheck.EM_X86_64 and statx.bits == 64
    assert "libc.so.6" in statx.needed
    assert ("libc.so.6", "GLIBC_2.28") in statx.version_needs
    assert statx.highest("GLIBC") == (2, 28)
    memcpy = _read(libraries["memcpy"])
    memcpy_glibc = memcpy.highest("GLIBC")
    assert memcpy_glibc is not None and memcpy_glibc <= (2, 17)
    assert _read(libraries["needs_m"]).needed[:1] == ("libm.so.6",)


def test_reader_sees_patched_machine(libraries: dict[str, bytes]) -> None:
    """e_machine 183 reads as aarch64."""
    info = _read(wheelcraft.as_aarch64(libraries["memcpy"]))
    assert (info.machine, info.machine_name) == (elfcheck.EM_AARCH64, "aarch64")


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x7fELF", "truncated"),
    (b"\x7fELF\x03\x01" + b"\0" * 58, "unknown ELF class 3"),
    (b"\x7fELF\x02\x09" + b"\0" * 58, "unknown ELF data encoding 9"),
    (b"MZ" + b"\0" * 100, "not an ELF file"),
])
def test_bad_headers_are_values_not_exceptions(data: bytes, reason: str) -> None:
    """A truncated or foreign header gives a BadElf naming what is wrong."""
    result = elfcheck.read_elf(data)
    assert isinstance(result, elfcheck.BadElf) and reason in result.reason


def test_truncated_library_is_bad(libraries: dict[str, bytes]) -> None:
    """A library cut short before its dynamic segment is a BadElf, never an exception."""
    result = elfcheck.read_elf(libraries["statx"][:400])
    assert isinstance(result, elfcheck.BadElf) and "truncated" in result.reason


def test_forged_header_count_is_refused(libraries: dict[str, bytes]) -> None:
    """A forged header count (65535 program headers) is refused, not walked."""
    data = bytearray(libraries["memcpy"])
    struct.pack_into("<H", data, 56, 65535)  # e_phnum of a 64-bit header
    result = elfcheck.read_elf(bytes(data))
    assert isinstance(result, elfcheck.BadElf)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_bytes_never_raise(libraries: dict[str, bytes], data: st.DataObject) -> None:
    """Any truncation or byte mutation of a real library reads as ElfInfo or BadElf."""
    original = libraries[data.draw(st.sampled_from(sorted(libraries)))]
    mutated = bytearray(original[:data.draw(st.integers(0, len(original)))])
    for _ in range(data.draw(st.integers(0, 8))):
        if not mutated:
            break
        position = data.draw(st.integers(0, len(mutated) - 1))
        mutated[position] = data.draw(st.integers(0, 255))
    result = elfcheck.read_elf(bytes(mutated))
    assert isinstance(result, elfcheck.ElfInfo | elfcheck.BadElf)


def _verdicts(files: dict[str, bytes], *, runtimes: list[str],
              architectures: list[str]) -> list[str]:
    findings = elfcheck.check_layer(
        {path: elfcheck.read_elf(data) for path, data in files.items()
         if elfcheck.is_elf(data[:4])},
        layer_files=files, runtimes=runtimes, architectures=architectures)
    return [f"{'error' if finding.error else 'warning'}: {finding}" for finding in findings]


def test_glibc_too_new_for_amazon_linux_2(libraries: dict[str, bytes]) -> None:
    """GLIBC_2.28 is an error for python3.11 (Amazon Linux 2, glibc 2.26), fine for 3.12."""
    files = {"python/x/libstatx.so": libraries["statx"]}
    assert _verdicts(files, runtimes=["python3.11"], architectures=["x86_64"]) == [
        "error: python/x/libstatx.so: needs GLIBC_2.28, but python3.11 runs on Amazon Linux 2 "
        "(glibc 2.26)"]
    assert _verdicts(files, runtimes=["python3.12"], architectures=["x86_64"]) == []
    assert _verdicts({"python/x/libmemcpy.so": libraries["memcpy"]}, runtimes=["python3.11"],
                     architectures=["x86_64"]) == []


def test_machine_must_match_every_architecture(libraries: dict[str, bytes]) -> None:
    """An x86_64 library in an arm64 layer, or an aarch64 one in a layer declaring both, is
    an error naming what it needs."""
    intel = {"lib/libmemcpy.so": libraries["memcpy"]}
    assert _verdicts(intel, runtimes=[], architectures=["arm64"]) == [
        "error: lib/libmemcpy.so: needs x86_64, but the layer declares arm64"]
    arm = {"lib/libmemcpy.so": wheelcraft.as_aarch64(libraries["memcpy"])}
    assert _verdicts(arm, runtimes=[], architectures=["arm64", "x86_64"]) == [
        "error: lib/libmemcpy.so: needs aarch64, but the layer declares x86_64"]
    assert _verdicts(arm, runtimes=[], architectures=["arm64"]) == []


def test_extension_tag_must_fit_every_python_runtime() -> None:
    """A cpython-311 x86_64 extension is an error for python3.12 and for arm64; abi3 fits."""
    files = {"python/m/_core.cpython-311-x86_64-linux-gnu.so": b"",
             "python/m/_stable.abi3.so": b""}
    assert _verdicts(files, runtimes=["python3.11"], architectures=["x86_64"]) == []
    assert _verdicts(files, runtimes=["python3.11", "python3.12"], architectures=["arm64"]) == [
        "error: python/m/_core.cpython-311-x86_64-linux-gnu.so: needs cpython-311, but the "
        "layer declares python3.12",
        "error: python/m/_core.cpython-311-x86_64-linux-gnu.so: needs x86_64, but the layer "
        "declares arm64"]
    musl = {"python/m/_core.cpython-311-x86_64-linux-musl.so": b""}
    assert _verdicts(musl, runtimes=["python3.11"], architectures=["x86_64"]) == [
        "error: python/m/_core.cpython-311-x86_64-linux-musl.so: needs musl libc, but "
        "Lambda's OS has glibc"]


def test_unknown_needed_library_is_a_warning(libraries: dict[str, bytes],
                                             tmp_path: Path) -> None:
    """A needed library neither in the layer nor on every Lambda OS is a warning; shipping it
    in the layer silences it; a bad ELF file is an error naming it."""
    # The linker records the soname of the library it links against.
    wheelcraft.compile_library(tmp_path, "libfakegl.so", "int gl(void) { return 1; }\n",
                               link=["-Wl,-soname,libfakegl.so.1"])
    needs_gl = wheelcraft.compile_library(
        tmp_path, "libwantsgl.so", wheelcraft.MEMCPY_SOURCE,
        link=["-Wl,--no-as-needed", f"-L{tmp_path}", "-lfakegl"])
    files = {"lib/libwantsgl.so": needs_gl.read_bytes()}
    assert _verdicts(files, runtimes=["python3.12"], architectures=["x86_64"]) == [
        "warning: lib/libwantsgl.so: needs libfakegl.so.1, found neither in the layer nor among "
        "the libraries every Lambda OS has"]
    files["lib/libfakegl.so.1"] = b"not an elf"
    assert _verdicts(files, runtimes=["python3.12"], architectures=["x86_64"]) == []
    files["lib/broken.so"] = b"\x7fELF\x02\x01"
    assert _verdicts(files, runtimes=["python3.12"], architectures=["x86_64"])[0].startswith(
        "error: lib/broken.so: not a readable ELF file: truncated")


def test_manylinux2014_wheel_whose_library_needs_glibc_228(libraries: dict[str, bytes],
                                                           tmp_path: Path) -> None:
    """A wheel tagged manylinux2014 (so selected for python3.11) whose library needs
    GLIBC_2.28 is caught by the binary check, whatever its tag says."""
    wheel = wheelcraft.make_wheel(
        tmp_path, "liar", "1.0", "cp311-cp311-manylinux2014_x86_64",
        files={"liar/__init__.py": b"", "liar/_native.cpython-311-x86_64-linux-gnu.so":
               libraries["statx"]})
    entries = wheels.layer_entries([(wheel.name, wheel)], prefix="python", label="layer x")
    with zipfile.ZipFile(wheel) as archive:
        files = {entry.arcname: archive.read(entry.source.rsplit("\0", 1)[1])
                 for entry in entries}
    assert _verdicts(files, runtimes=["python3.11"], architectures=["x86_64"]) == [
        "error: python/liar/_native.cpython-311-x86_64-linux-gnu.so: needs GLIBC_2.28, but "
        "python3.11 runs on Amazon Linux 2 (glibc 2.26)"]
