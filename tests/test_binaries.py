"""The binary check of a zip (reconciler.binaries) on libraries gcc compiles now: only ELF
members are read, a large member read in slices gives the verdicts a whole read gives, a
member that lies about its bytes is a bad ELF file and never an exception, and verdicts are
kept in `.reconcile/binaries/` by (CodeSha256, runtimes, architectures)."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import wheelcraft
import zipcraft
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zipcraft import Member

from reconciler import binaries, elfcheck, model, wheelmembers, zipbuild, zipindex

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


@pytest.fixture(scope="module")
def libraries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """libstatx.so (GLIBC_2.28) and libneedsm.so (needs libm.so.6 and libz9.so.1)."""
    folder = tmp_path_factory.mktemp("elf")
    wheelcraft.compile_library(folder, "libz9.so.1", "int z9(void) { return 9; }\n",
                               link=["-Wl,-soname,libz9.so.1"])
    return {
        "statx": wheelcraft.compile_library(folder, "libstatx.so",
                                            wheelcraft.STATX_SOURCE).read_bytes(),
        "needs": wheelcraft.compile_library(
            folder, "libneeds.so", "int z9(void);\nint f(void) { return z9(); }\n",
            link=["-Wl,--no-as-needed", "-lm", f"-L{folder}", "-l:libz9.so.1"]).read_bytes(),
    }


def _strings(findings: list[elfcheck.Finding]) -> list[str]:
    return [f"{'error' if finding.error else 'warning'}: {finding}" for finding in findings]


@pytest.mark.parametrize("method", [zipcraft.STORED, zipcraft.DEFLATED])
def test_slices_give_the_verdicts_of_a_whole_read(tmp_path: Path, libraries: dict[str, bytes],
                                                  method: int) -> None:
    """Every ELF member read through slices (whole_read_bytes=0) gives the same verdicts as
    read whole, stored or deflated; a non-ELF member gives none."""
    path = zipcraft.write(tmp_path / "layer.zip", [
        Member("python/fast/libstatx.so", libraries["statx"], method=method),
        Member("lib/libneeds.so", libraries["needs"], method=method),
        Member("lib/arm.so", wheelcraft.as_aarch64(libraries["statx"]), method=method),
        Member("python/x.py", b"\x7fEL", method=method),
        Member("python/readme.txt", b"MZ not an ELF file" * 100, method=method)])
    whole = binaries.check_zip(path, runtimes=["python3.11"], architectures=["x86_64"])
    sliced = binaries.check_zip(path, runtimes=["python3.11"], architectures=["x86_64"],
                                whole_read_bytes=0)
    assert whole == sliced
    assert _strings(whole) == [
        "error: lib/arm.so: needs aarch64, but the layer declares x86_64",
        "error: lib/arm.so: needs GLIBC_2.28, but python3.11 runs on Amazon Linux 2 "
        "(glibc 2.26)",
        "warning: lib/libneeds.so: needs libz9.so.1, found neither in the layer nor among "
        "the libraries every Lambda OS has",
        "error: python/fast/libstatx.so: needs GLIBC_2.28, but python3.11 runs on Amazon "
        "Linux 2 (glibc 2.26)"]


@pytest.mark.parametrize("whole_read_bytes", [binaries.WHOLE_READ_BYTES, 0])
@pytest.mark.parametrize("lie", [
    pytest.param({"declared_crc": 1}, id="crc"),
    pytest.param({"declared_size": 3000}, id="size-smaller"),
    pytest.param({"method": zipcraft.BZIP2}, id="unsupported-method"),
])
def test_a_member_that_lies_is_a_bad_elf_not_an_exception(
        tmp_path: Path, libraries: dict[str, bytes], whole_read_bytes: int,
        lie: dict[str, int]) -> None:
    """An ELF member whose CRC, size or method lies is an error naming it; nothing raises
    (the reader stops at the declared size)."""
    member = Member("lib/liar.so", libraries["statx"], **lie)  # type: ignore[arg-type]
    path = zipcraft.write(tmp_path / "layer.zip", [member])
    findings = binaries.check_zip(path, runtimes=["python3.12"], architectures=["x86_64"],
                                  whole_read_bytes=whole_read_bytes)
    assert [finding.path for finding in findings if finding.error] == ["lib/liar.so"]
    assert "not a readable ELF file" in findings[0].message


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_truncated_members_never_raise(tmp_path: Path, libraries: dict[str, bytes],
                                       data: st.DataObject) -> None:
    """Any truncation of a library inside a zip, read whole or in slices, gives verdicts."""
    original = libraries["statx"]
    cut = original[:data.draw(st.integers(4, len(original)))]
    path = tmp_path / "cut.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("lib/cut.so", cut)
    for whole_read_bytes in (binaries.WHOLE_READ_BYTES, 0):
        findings = binaries.check_zip(path, runtimes=["python3.12"], architectures=["x86_64"],
                                      whole_read_bytes=whole_read_bytes)
        assert all(finding.path == "lib/cut.so" for finding in findings)


def test_verdicts_are_kept_by_code_sha256_runtimes_and_architectures(
        tmp_path: Path, libraries: dict[str, bytes]) -> None:
    """A second check of the same CodeSha256, runtimes and architectures does not read the
    zip (it may be gone); other runtimes read it again; an unreadable verdict is ignored."""
    path = tmp_path / "layer.zip"
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("lib/libstatx.so", libraries["statx"])
    verdicts = binaries.Verdicts(tmp_path / ".reconcile" / "binaries")
    first = verdicts.check(path, code_sha256="abc=", runtimes=["python3.11"],
                           architectures=["x86_64"])
    assert [finding.error for finding in first] == [True]
    moved = tmp_path / "moved.zip"
    path.rename(moved)
    assert verdicts.check(path, code_sha256="abc=", runtimes=["python3.11"],
                          architectures=["x86_64"]) == first
    with pytest.raises(FileNotFoundError):
        verdicts.check(path, code_sha256="abc=", runtimes=["python3.12"],
                       architectures=["x86_64"])
    for kept in verdicts.folder.glob("*.json"):
        kept.write_text("{not json")
    assert verdicts.check(moved, code_sha256="abc=", runtimes=["python3.11"],
                          architectures=["x86_64"]) == first


@pytest.mark.parametrize("from_wheel", [False, True])
def test_the_build_reads_the_verdicts_a_re_read_of_its_zip_gives(
        tmp_path: Path, libraries: dict[str, bytes], from_wheel: bool) -> None:
    """The ELF members a build reads anyway (a folder's files deflated, or a wheel's members
    copied or deflated) give the verdicts that reading the finished zip gives, so that the
    check of a zip just built needs no second read."""
    files = {"python/fast/libstatx.so": libraries["statx"],
             "python/fast/libneeds.so": libraries["needs"],
             "python/arm/libarm.so": wheelcraft.as_aarch64(libraries["statx"]),
             "python/fast/_x.cpython-311-x86_64-linux-gnu.so": libraries["statx"],
             "python/fast/tiny.bin": b"\x7fE", "python/fast/__init__.py": b"x = 1\n"}
    entries, raw_source = [], None
    if from_wheel:
        wheel = tmp_path / "w.zip"
        with zipfile.ZipFile(wheel, "w") as wheel_file:
            for name, data in files.items():
                # One ELF member stored, the others deflated: both paths are inspected.
                wheel_file.writestr(name, data, compress_type=zipfile.ZIP_STORED
                             if name.endswith("libneeds.so") else zipfile.ZIP_DEFLATED)
        members = wheelmembers.raw_members(str(wheel))
        entries = [model.Entry(arcname=name, source=f"{wheel}\0{name}", size=len(data),
                               executable=False) for name, data in files.items()]

        def raw_source(entry: model.Entry) -> wheelmembers.RawMember | None:
            return members[entry.source.split("\0")[1]]
    else:
        for name, data in files.items():
            path = tmp_path / "src" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            entries.append(model.Entry(arcname=name, source=str(path), size=len(data),
                                       executable=False))
    out_path = tmp_path / "layer.zip"
    with out_path.open("wb") as out:
        built = zipbuild.write_zip(
            entries, out=out, open_entry=lambda entry: Path(entry.source).open("rb"),  # noqa: SIM115 -- write_zip closes it
            raw_source=raw_source, inspect=True)
    assert built.elf_files is not None
    assert set(built.elf_files) == {name for name in files if name.endswith(".so")}
    for runtimes, architectures in ((["python3.11"], ["x86_64"]), (["python3.12"], ["arm64"])):
        fused = elfcheck.check_layer(built.elf_files, layer_files=list(files),
                                     runtimes=runtimes, architectures=architectures)
        reread = binaries.check_zip(out_path, runtimes=runtimes, architectures=architectures)
        assert _strings(fused) == _strings(reread)
        assert any(finding.error for finding in fused)


def _folder_build(files: dict[str, bytes], src: Path, out_path: Path, *,
                  previous: Path | None, inspect: bool) -> zipindex.BuiltZip:
    """Write `files` into `src` and build them into `out_path` (incrementally from
    `previous`, each file's digest known as the stat cache would know it), then index it."""
    entries = []
    for name, data in files.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        entries.append(model.Entry(arcname=name, source=str(path), size=len(data),
                                   executable=False))
    with out_path.open("wb") as out, zipindex.open_previous(previous) as opened:
        built = zipbuild.write_zip(
            entries, out=out, open_entry=lambda entry: Path(entry.source).open("rb"),  # noqa: SIM115 -- write_zip closes it
            previous=opened, inspect=inspect,
            known_sha256=lambda entry: hashlib.sha256(Path(entry.source).read_bytes())
            .hexdigest())
    assert zipindex.save_index(out_path, built)
    return built


def test_a_rebuild_knows_the_elf_files_it_copied_from_the_previous_zip(
        tmp_path: Path, libraries: dict[str, bytes]) -> None:
    """After a one-file edit, the ELF members copied unread from the previous zip take what
    its index recorded of them: the rebuild's verdicts are those of re-reading its zip, so the
    binary check of a rebuilt layer needs no second read."""
    files = {"python/fast/libstatx.so": libraries["statx"],
             "python/arm/libarm.so": wheelcraft.as_aarch64(libraries["statx"]),
             "python/fast/_x.cpython-311-x86_64-linux-gnu.so": libraries["needs"],
             "python/fast/__init__.py": b"x = 1\n" * 50}
    first = _folder_build(files, tmp_path / "src", tmp_path / "v1.zip", previous=None,
                          inspect=True)
    files["python/fast/__init__.py"] += b"y = 2\n"
    rebuilt = _folder_build(files, tmp_path / "src", tmp_path / "v2.zip",
                            previous=tmp_path / "v1.zip", inspect=True)

    assert rebuilt.reused == 3 and rebuilt.deflated == 1
    assert rebuilt.elf_files == first.elf_files
    assert rebuilt.elf_files is not None and set(rebuilt.elf_files) == {
        name for name in files if name.endswith(".so")}
    for runtimes, architectures in ((["python3.11"], ["x86_64"]), (["python3.12"], ["arm64"])):
        fused = elfcheck.check_layer(rebuilt.elf_files, layer_files=list(files),
                                     runtimes=runtimes, architectures=architectures)
        reread = binaries.check_zip(tmp_path / "v2.zip", runtimes=runtimes,
                                    architectures=architectures)
        assert _strings(fused) == _strings(reread)


def test_a_rebuild_from_an_uninspected_zip_leaves_its_elf_files_unknown(
        tmp_path: Path, libraries: dict[str, bytes]) -> None:
    """A previous zip whose build did not inspect its members gives a rebuild no ELF facts
    (None: the check reads the zip), never partial ones; so do facts another version of the
    tool wrote; and an index edited without its digest is not trusted at all (every member
    read again)."""
    files = {"python/fast/libstatx.so": libraries["statx"], "python/a.py": b"a = 1\n" * 50}
    _folder_build(files, tmp_path / "src", tmp_path / "v1.zip", previous=None, inspect=False)
    files["python/a.py"] += b"b = 2\n"
    rebuilt = _folder_build(files, tmp_path / "src", tmp_path / "v2.zip",
                            previous=tmp_path / "v1.zip", inspect=True)
    assert rebuilt.reused == 1 and rebuilt.elf_files is None

    index = zipindex.index_path(tmp_path / "v2.zip")
    _folder_build(files, tmp_path / "src", tmp_path / "v2.zip", previous=None, inspect=True)
    document = json.loads(index.read_text())
    document["elf"]["version"] = "0.0.1"  # another version's reader, the digest made again
    body = {key: value for key, value in document.items() if key != "index_sha256"}
    document["index_sha256"] = hashlib.sha256(json.dumps(
        body, sort_keys=True, separators=(",", ":")).encode("ascii")).hexdigest()
    index.write_text(json.dumps(document))
    files["python/a.py"] += b"d = 4\n"
    older = _folder_build(files, tmp_path / "src", tmp_path / "v2b.zip",
                          previous=tmp_path / "v2.zip", inspect=True)
    assert older.reused == 1 and older.elf_files is None

    _folder_build(files, tmp_path / "src", tmp_path / "v2.zip", previous=None, inspect=True)
    document = json.loads(index.read_text())
    document["elf"]["files"]["python/fast/libstatx.so"] = {"machine": "x86_64"}  # a lie
    index.write_text(json.dumps(document))
    files["python/a.py"] += b"c = 3\n"
    tampered = _folder_build(files, tmp_path / "src", tmp_path / "v3.zip",
                             previous=tmp_path / "v2.zip", inspect=True)
    assert tampered.reused == 0 and tampered.elf_files is not None
