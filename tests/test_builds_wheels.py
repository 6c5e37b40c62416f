"""Selected wheels -> layer entries (what is kept, dropped, refused), the SHA-256 check and the
content-addressed wheel cache."""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path

import pytest
import wheelcraft

from reconciler import errors
from reconciler.builds import cache, wheels


def _entries(*paths: Path, prefix: str = "python") -> dict[str, tuple[str, bool]]:
    found = wheels.layer_entries([(path.name, path) for path in paths], prefix=prefix,
                                 label="layer deps")
    return {entry.arcname: (entry.source.rsplit("\0", 1)[1], entry.executable)
            for entry in found}


def test_unpack_keeps_site_packages_files_only(tmp_path: Path) -> None:
    """purelib and platlib are merged under the prefix; scripts, headers, data, bytecode and
    the installer's own files are dropped; the .dist-info is kept as shipped."""
    wheel = wheelcraft.make_wheel(tmp_path, "demo", "1.0", "cp312-cp312-manylinux_2_17_x86_64",
                                  files={
                                      "demo/__init__.py": b"",
                                      "demo/__pycache__/x.cpython-311.pyc": b"\0",
                                      "demo/tool.so": b"\x7fELF",
                                      "demo-1.0.data/purelib/demo_extra.py": b"",
                                      "demo-1.0.data/platlib/demo_native/core.so": b"",
                                      "demo-1.0.data/scripts/demo": b"#!python\n",
                                      "demo-1.0.data/headers/demo.h": b"",
                                      "demo-1.0.data/data/share/demo.txt": b"",
                                      "demo-1.0.dist-info/INSTALLER": b"pip\n",
                                      "demo-1.0.dist-info/REQUESTED": b"",
                                      "demo-1.0.dist-info/direct_url.json": b"{}",
                                      "demo-1.0.dist-info/licenses/LICENSE": b"MIT",
                                  }, executable=["demo/tool.so"])
    found = _entries(wheel)
    assert sorted(found) == [
        "python/demo-1.0.dist-info/METADATA", "python/demo-1.0.dist-info/RECORD",
        "python/demo-1.0.dist-info/WHEEL", "python/demo-1.0.dist-info/licenses/LICENSE",
        "python/demo/__init__.py", "python/demo/tool.so", "python/demo_extra.py",
        "python/demo_native/core.so"]
    assert found["python/demo_extra.py"][0] == "demo-1.0.data/purelib/demo_extra.py"
    assert found["python/demo/tool.so"][1] is True
    assert found["python/demo/__init__.py"][1] is False


def test_unpack_is_the_same_whatever_the_wheel_order(tmp_path: Path) -> None:
    """The entries depend on the wheels, not on the order they are given in."""
    first = wheelcraft.make_wheel(tmp_path, "aaa", "1.0", "py3-none-any")
    second = wheelcraft.make_wheel(tmp_path, "bbb", "1.0", "py3-none-any")
    forward = wheels.layer_entries([(first.name, first), (second.name, second)],
                                   prefix="python", label="x")
    backward = wheels.layer_entries([(second.name, second), (first.name, first)],
                                    prefix="python", label="x")
    assert forward == backward
    assert [entry.arcname for entry in forward] == sorted(entry.arcname for entry in forward)


def test_path_shipped_by_two_wheels_names_both(tmp_path: Path) -> None:
    """Two wheels installing one path is an error naming the path and both wheels."""
    one = wheelcraft.make_wheel(tmp_path, "one", "1.0", "py3-none-any",
                                files={"shared/util.py": b"1"})
    two = wheelcraft.make_wheel(tmp_path, "two", "1.0", "py3-none-any",
                                files={"shared/util.py": b"2"})
    with pytest.raises(errors.ContentError) as caught:
        _entries(one, two)
    assert ("python/shared/util.py is shipped by both one-1.0-py3-none-any.whl and "
            "two-1.0-py3-none-any.whl") in caught.value.message


@pytest.mark.parametrize(("member", "problem"), [
    ("../escape.py", "'..' component"),
    ("/etc/passwd", "absolute path"),
    ("C:/windows.py", "absolute path"),
])
def test_unsafe_wheel_members_are_refused(tmp_path: Path, member: str, problem: str) -> None:
    """A wheel member with an absolute or escaping name is refused, naming the wheel."""
    wheel = wheelcraft.make_wheel(tmp_path, "bad", "1.0", "py3-none-any",
                                  extra_members={member: b"x"})
    with pytest.raises(errors.ContentError) as caught:
        _entries(wheel)
    assert "bad-1.0-py3-none-any.whl cannot be installed" in caught.value.message
    assert problem in caught.value.message


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    """A wheel member stored as a symlink is refused (an installer writes regular files)."""
    wheel = wheelcraft.make_wheel(tmp_path, "link", "1.0", "py3-none-any")
    with zipfile.ZipFile(wheel, "a") as archive:
        info = zipfile.ZipInfo("link/secret")
        info.external_attr = 0o120777 << 16
        archive.writestr(info, "/etc/shadow")
    with pytest.raises(errors.ContentError, match="is a symlink"):
        _entries(wheel)


def test_wheel_without_its_dist_info_is_refused(tmp_path: Path) -> None:
    """A file named as a wheel but without the matching .dist-info is refused."""
    fake = tmp_path / "ghost-1.0-py3-none-any.whl"
    fake.write_bytes(wheelcraft.make_wheel(tmp_path / "other", "real", "1.0",
                                           "py3-none-any").read_bytes())
    with pytest.raises(errors.ContentError, match=r"no \.dist-info folder"):
        _entries(fake)


def test_sha256_mismatch_names_both_digests(tmp_path: Path) -> None:
    """A wheel whose SHA-256 is not the lock's is refused, naming both digests."""
    wheel = wheelcraft.make_wheel(tmp_path, "demo", "1.0", "py3-none-any")
    actual = wheelcraft.sha256_of(wheel)
    wheels.verify_sha256(wheel, expected=actual, label="layer x")
    with pytest.raises(errors.ContentError) as caught:
        wheels.verify_sha256(wheel, expected="0" * 64, label="layer x")
    assert actual in caught.value.message and "0" * 64 in caught.value.message


def test_cache_stores_by_digest_and_verifies_on_use(tmp_path: Path) -> None:
    """A stored wheel is found by its SHA-256; a damaged one is removed and reported missing;
    bytes that hash to another digest are refused and not stored."""
    wheel = wheelcraft.make_wheel(tmp_path, "demo", "1.0", "py3-none-any")
    digest = wheelcraft.sha256_of(wheel)
    store = cache.WheelCache(tmp_path / "cache")
    assert store.get(digest) is None
    stored = store.put_file(wheel, sha256=digest, label="x")
    assert store.get(digest) == stored and stored.read_bytes() == wheel.read_bytes()
    stored.write_bytes(b"damaged")
    assert store.get(digest) is None and not stored.exists()
    with pytest.raises(errors.ContentError, match=r"0{64}"):
        store.put_stream(io.BytesIO(b"other bytes"), sha256="0" * 64, label="x")
    assert not (store.path_for("0" * 64)).exists()
    assert list(stored.parent.parent.rglob("*.tmp")) == []


def test_cache_is_safe_for_two_runs_at_once(tmp_path: Path) -> None:
    """Several runs storing the same wheel at once leave one whole, verified file."""
    wheel = wheelcraft.make_wheel(tmp_path, "demo", "1.0", "py3-none-any")
    digest = wheelcraft.sha256_of(wheel)
    store = cache.WheelCache(tmp_path / "cache")
    failures: list[BaseException] = []

    def put() -> None:
        try:
            for _ in range(20):
                store.put_file(wheel, sha256=digest, label="x")
                assert store.get(digest) is not None
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=put) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert [path.name for path in (tmp_path / "cache").rglob("*") if path.is_file()] == [
        f"{digest}.whl"]


def test_cache_root_from_environment(tmp_path: Path) -> None:
    """RECONCILE_CACHE_DIR names the cache; without it, ~/.cache/reconcile."""
    assert cache.default_root({"RECONCILE_CACHE_DIR": str(tmp_path)}) == tmp_path
    assert cache.default_root({}) == Path.home() / ".cache" / "reconcile"
    with pytest.raises(ValueError):
        cache.WheelCache(tmp_path).path_for("../../etc/passwd")
