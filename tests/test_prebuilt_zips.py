"""Tests of prebuilt zips in `content.zipsource`, uploaded byte for byte or normalized, on real
zip files written byte by byte (tests/zipcraft.py) and by Info-ZIP's `zip`: every unsafe or
lying zip is refused with a ContentError naming the layer and the member, names are read as
unzip reads them, and a verified zip is remembered by its SHA-256."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import zipcraft
from zipcraft import Member

from reconciler import content as layer_content
from reconciler import errors, layerbuild, model
from reconciler.content import statcache, zipsource

LABEL = "layers.vendor"
FILE = Member("python/ok.py", b"OK = 1\n")


def _zip_content(path: str = "vendor.zip", *, normalize: bool) -> model.ContentSpec:
    return model.ContentSpec(kind=model.SourceKind.ZIP, zip=path, normalize=normalize)


def _cache(base_dir: Path) -> statcache.StatCache:
    return statcache.StatCache.load(base_dir / ".reconcile" / "cache.json")


def _identify(base_dir: Path, content: model.ContentSpec,
              cache: statcache.StatCache | None = None) -> model.Artifact:
    return layer_content.identify(content, base_dir=base_dir, label=LABEL,
                            cache=cache or _cache(base_dir))


def _package(base_dir: Path, content: model.ContentSpec) -> model.Artifact:
    artifact = _identify(base_dir, content)
    return layerbuild.build(content, artifact, base_dir=base_dir, label=LABEL,
                         build_dir=base_dir / ".reconcile" / "build")


def _link(name: str | bytes, target: str) -> Member:
    return Member(name, target.encode(), mode=zipcraft.LINK_MODE, method=zipcraft.STORED)


REFUSED = [
    pytest.param([FILE, _link("python/passwd", "/etc/passwd")],
                 ["python/passwd", "absolute"], id="absolute-link"),
    pytest.param([FILE, _link("python/passwd", "../../../../etc/passwd")],
                 ["python/passwd", "outside the zip"], id="escaping-link"),
    pytest.param([FILE, _link("python/gone", "missing.py")],
                 ["python/gone", "broken"], id="broken-link"),
    pytest.param([FILE, _link("python/d", "sub"), Member("python/sub/y.py", b""),
                  Member("python/d/x.py", b"")],
                 ["python/d/x.py", "inside the symlink"], id="member-inside-a-link"),
    pytest.param([FILE, Member("python/secret.py", b"x", flags=zipcraft.FLAG_ENCRYPTED)],
                 ["python/secret.py", "encrypted"], id="encrypted"),
    pytest.param([FILE, Member("python/b.py", b"x", method=zipcraft.BZIP2)],
                 ["python/b.py", "method 12"], id="bzip2"),
    pytest.param([FILE, Member("python/b.py", b"x", method=99)],
                 ["python/b.py", "method 99"], id="aes-method"),
    pytest.param([], ["no files"], id="empty-zip"),
    pytest.param([Member("python/", mode=zipcraft.DIR_MODE, method=zipcraft.STORED)],
                 ["no files"], id="folders-only"),
    pytest.param([FILE, Member("python/big.py", b"x" * 1000, declared_size=10)],
                 ["python/big.py", "more data than its declared size"], id="size-too-small"),
    pytest.param([FILE, Member("python/big.py", b"x" * 1000, declared_size=5000)],
                 ["python/big.py", "not its declared size"], id="size-too-large"),
    pytest.param([FILE, Member("python/big.py", b"x" * 1000, declared_crc=1)],
                 ["python/big.py", "CRC-32"], id="wrong-crc"),
    pytest.param([FILE, Member(b"python/donn\x82es.txt", b"x")],
                 ["donn\\x82es.txt", "not valid UTF-8"], id="undecodable-name"),
]


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize(("members", "fragments"), REFUSED)
def test_unsafe_prebuilt_zip_is_refused(tmp_path: Path, members: list[Member],
                                        fragments: list[str], normalize: bool) -> None:
    """Each unsafe or lying zip is a ContentError naming the layer and the member, both ways."""
    zipcraft.write(tmp_path / "vendor.zip", members)
    with pytest.raises(errors.ContentError) as raised:
        _package(tmp_path, _zip_content(normalize=normalize))
    for fragment in (LABEL, *fragments):
        assert fragment in raised.value.message
    assert not (tmp_path / ".reconcile" / "build").exists()


@pytest.mark.parametrize("normalize", [False, True])
def test_declared_sizes_over_lambdas_limit_are_refused(tmp_path: Path, normalize: bool) -> None:
    """Declared sizes summing past 262,144,000 bytes are refused before any data is read."""
    zipcraft.write(tmp_path / "vendor.zip", [
        FILE, Member("python/huge.bin", b"x", declared_size=model.MAX_UNZIPPED_BYTES)])
    with pytest.raises(errors.ContentError) as raised:
        _identify(tmp_path, _zip_content(normalize=normalize))
    assert LABEL in raised.value.message
    assert str(model.MAX_UNZIPPED_BYTES) in raised.value.message


def test_validate_lists_the_same_problems(tmp_path: Path) -> None:
    """zip_problems (what validate reports) names the central-directory problems too."""
    zipcraft.write(tmp_path / "vendor.zip", [
        FILE, _link("python/passwd", "../../../../etc/passwd"),
        Member("python/secret.py", b"x", flags=zipcraft.FLAG_ENCRYPTED)])
    problems = zipsource.zip_problems(tmp_path / "vendor.zip")
    assert any("python/passwd" in problem and "outside" in problem for problem in problems)
    assert any("python/secret.py" in problem and "encrypted" in problem for problem in problems)


def test_verified_zip_is_remembered_by_its_sha256(tmp_path: Path) -> None:
    """A zip that passed the data checks is recorded in the cache under its SHA-256."""
    zipcraft.write(tmp_path / "vendor.zip", [FILE, Member("python/data.bin", b"d" * 5000)])
    cache = _cache(tmp_path)
    artifact = _identify(tmp_path, _zip_content(normalize=False), cache)
    assert artifact.content_sha256 is not None
    assert cache.zip_verified(artifact.content_sha256)
    assert cache.save()
    assert _cache(tmp_path).zip_verified(artifact.content_sha256)


def test_remembered_zip_is_not_inflated_again(tmp_path: Path) -> None:
    """A zip whose SHA-256 the cache vouches for skips the data checks (they ran for it)."""
    zipcraft.write(tmp_path / "vendor.zip", [FILE, Member("python/x.py", b"x", declared_crc=7)])
    with pytest.raises(errors.ContentError, match="CRC-32"):
        _identify(tmp_path, _zip_content(normalize=False))
    cache = _cache(tmp_path)
    sha256 = cache.file_sha256(tmp_path / "vendor.zip", os.stat(tmp_path / "vendor.zip"))
    assert not cache.zip_verified(sha256)
    cache.remember_verified_zip(sha256)
    assert _identify(tmp_path, _zip_content(normalize=False), cache).content_sha256 == sha256


def test_failed_verification_is_not_remembered(tmp_path: Path) -> None:
    """A zip that fails the data checks leaves no verified record, so it fails every time."""
    zipcraft.write(tmp_path / "vendor.zip", [FILE, Member("python/x.py", b"xy", declared_size=1)])
    cache = _cache(tmp_path)
    for _ in range(2):
        with pytest.raises(errors.ContentError, match="declared size"):
            _identify(tmp_path, _zip_content(normalize=False), cache)
    cache.save()
    assert "verified_zips\":[]" in (tmp_path / ".reconcile" / "cache.json").read_text()


# A folder with non-ASCII names and a link to one: what Info-ZIP zips garbled before.
NON_ASCII = {
    "python/données.txt": b"bonjour\n",
    "python/日本/モジュール.py": b"X = 1\n",
    "python/plain.py": b"Y = 2\n",
}
NON_ASCII_LINKS = {"python/lien": "données.txt", "python/リンク": "日本/モジュール.py"}


def _non_ascii_folder(root: Path) -> Path:
    for name, data in NON_ASCII.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    for name, target in NON_ASCII_LINKS.items():
        os.symlink(target, root / name)
    return root


def _folder_code_sha256(tmp_path: Path) -> str:
    _non_ascii_folder(tmp_path / "layer")
    content = model.ContentSpec(kind=model.SourceKind.PATH, path="layer")
    code_sha256 = _package(tmp_path, content).code_sha256
    assert code_sha256 is not None
    return code_sha256


def _hand_made_info_zip(path: Path, *, unicode_path_field: bool) -> Path:
    """What Debian's zip writes: UTF-8 names without the UTF-8 flag. With the Unicode Path
    field, the raw names are given in cp437 (as an old DOS tool would) and only the field
    carries the real name, so the test shows the field is what is read."""
    members = []
    for name, data in NON_ASCII.items():
        raw = name.encode("cp437", "replace") if unicode_path_field else name.encode()
        members.append(Member(raw, data, unicode_path=name if unicode_path_field else None))
    for name, target in NON_ASCII_LINKS.items():
        raw = name.encode("cp437", "replace") if unicode_path_field else name.encode()
        members.append(Member(raw, target.encode(), mode=zipcraft.LINK_MODE,
                              method=zipcraft.STORED,
                              unicode_path=name if unicode_path_field else None))
    return zipcraft.write(path, members)


@pytest.mark.parametrize("unicode_path_field", [False, True])
def test_info_zip_names_normalize_to_the_folders_zip(tmp_path: Path,
                                                     unicode_path_field: bool) -> None:
    """A hand-made Info-ZIP zip of the folder, normalized, has the folder's code_sha256."""
    expected = _folder_code_sha256(tmp_path)
    _hand_made_info_zip(tmp_path / "vendor.zip", unicode_path_field=unicode_path_field)
    assert _package(tmp_path, _zip_content(normalize=True)).code_sha256 == expected


def test_stale_unicode_path_field_is_not_trusted(tmp_path: Path) -> None:
    """A 0x7075 field whose CRC is of another name is ignored; cp437 bytes are then refused."""
    raw = "python/données.txt".encode("cp437")
    zipcraft.write(tmp_path / "vendor.zip", [
        FILE, Member(raw, b"x", unicode_path="python/other.txt", unicode_path_crc_of=b"old")])
    with pytest.raises(errors.ContentError, match="not valid UTF-8"):
        _identify(tmp_path, _zip_content(normalize=True))


@pytest.mark.parametrize("unicode_path_field", [False, True])
def test_info_zip_with_link_to_non_ascii_name_is_accepted_as_is(
        tmp_path: Path, unicode_path_field: bool) -> None:
    """Byte for byte, links to non-ASCII names resolve (they would dangle if names were cp437)."""
    zip_path = _hand_made_info_zip(tmp_path / "vendor.zip",
                                   unicode_path_field=unicode_path_field)
    artifact = _identify(tmp_path, _zip_content(normalize=False))
    assert artifact.zip_path == str(zip_path)


@pytest.mark.skipif(shutil.which("zip") is None, reason="Info-ZIP's zip is not installed")
def test_zip_binary_output_normalizes_to_the_folders_zip(tmp_path: Path) -> None:
    """`zip -r -X -y` of the folder (the real Info-ZIP), normalized, gives the folder's zip."""
    expected = _folder_code_sha256(tmp_path)
    subprocess.run(["zip", "-q", "-r", "-X", "-y", str(tmp_path / "vendor.zip"), "."],
                   cwd=tmp_path / "layer", check=True)
    assert _package(tmp_path, _zip_content(normalize=True)).code_sha256 == expected
    assert _identify(tmp_path, _zip_content(normalize=False)).zip_path is not None
