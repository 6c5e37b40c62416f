"""The one contract of ports.PackageIndex, run against every implementation over the same folder
of wheels: the real client (builds.index) on a loopback index serving PEP 503 HTML and one
serving PEP 691 JSON. A fake of the port (for the lock content kind's use-case tests) belongs
in the `package_index` fixture's params, so that it cannot drift from the real thing.

The contract: a project's wheels carry a lowercase SHA-256 and an absolute http(s) URL whose
bytes hash to it; a name is found in any spelling PEP 503 folds together; an absent project is
[]; a missing file is a ContentError naming its URL; `url` names no credentials; calls from
several threads at once are safe."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import wheelcraft

from reconciler import errors, ports
from reconciler.builds import index

TAGS = ("py3-none-any", "cp312-cp312-manylinux_2_17_x86_64")


@pytest.fixture(params=["client-html", "client-json"])
def package_index(request: pytest.FixtureRequest,
                  tmp_path: Path) -> Iterator[ports.PackageIndex]:
    """A PackageIndex offering `alpha` 1.0 (two wheels and an sdist) and `my_pkg` 2.0, for
    each implementation; given credentials where it takes them."""
    root = tmp_path / "index"
    for tag in TAGS:
        wheelcraft.make_wheel(root / "alpha", "alpha", "1.0", tag)
    (root / "alpha" / "alpha-1.0.tar.gz").write_bytes(b"an sdist")
    wheelcraft.make_wheel(root / "my-pkg", "my_pkg", "2.0", "py3-none-any")
    mode = str(request.param).removeprefix("client-")
    with wheelcraft.serve_index(root, mode=mode) as served:
        authority = served.url.removeprefix("http://")
        yield index.IndexClient(url=f"http://reader:pa55word@{authority}", environ={},
                                backoff=0.0)


def test_wheels_carry_a_digest_and_a_url_whose_bytes_match(
        package_index: ports.PackageIndex) -> None:
    """Every wheel listed has a lowercase hex SHA-256 and an absolute http(s) URL, and fetch
    of that URL yields bytes with that digest; sdists are not listed."""
    wheels = package_index.wheels("alpha")
    assert sorted(wheel.filename for wheel in wheels) == sorted(
        f"alpha-1.0-{tag}.whl" for tag in TAGS)
    for wheel in wheels:
        assert re.fullmatch(r"[0-9a-f]{64}", wheel.sha256)
        assert wheel.url is not None and re.match(r"https?://", wheel.url)
        with package_index.fetch(wheel.url) as stream:
            assert hashlib.sha256(stream.read()).hexdigest() == wheel.sha256


@pytest.mark.parametrize("spelling", ["my-pkg", "my_pkg", "My.Pkg", "MY__PKG"])
def test_a_name_is_found_in_any_spelling(package_index: ports.PackageIndex,
                                         spelling: str) -> None:
    """Names that PEP 503 folds together find the same project."""
    assert [wheel.filename for wheel in package_index.wheels(spelling)] == [
        "my_pkg-2.0-py3-none-any.whl"]


def test_an_absent_project_has_no_wheels(package_index: ports.PackageIndex) -> None:
    """A project the index lacks is [], not an error."""
    assert package_index.wheels("absent") == []


def test_a_missing_file_is_an_error_naming_its_url(package_index: ports.PackageIndex) -> None:
    """fetch of a URL with no file behind it is a ContentError naming the URL."""
    wheel = package_index.wheels("alpha")[0]
    assert wheel.url is not None
    missing = wheel.url.rsplit("/", 1)[0] + "/alpha-9.9-py3-none-any.whl"
    with pytest.raises(errors.ContentError) as raised, package_index.fetch(missing):
        pass
    assert missing in raised.value.message


def test_the_url_names_no_credentials(package_index: ports.PackageIndex) -> None:
    """`url` is fit for messages: no user information."""
    assert "@" not in package_index.url and "pa55word" not in package_index.url


def test_several_threads_at_once(package_index: ports.PackageIndex) -> None:
    """Listings and downloads from eight threads at once all succeed."""
    digests: list[bool] = []

    def work() -> None:
        for wheel in package_index.wheels("alpha"):
            assert wheel.url is not None
            with package_index.fetch(wheel.url) as stream:
                digests.append(hashlib.sha256(stream.read()).hexdigest() == wheel.sha256)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert digests == [True] * 16
