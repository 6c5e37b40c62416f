"""Tests of the determinism rules in `archive`: exclude patterns, the fingerprint, the zip byte
format and the zip-slip checks, all on in-memory entries (no file system)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import stat
import zipfile
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import archive, errors, model, zipmembers

# Pinned values: a change to any of them changes what users publish, so it needs a
# FORMAT_VERSION bump (and a new pinned value), never a silent update.
GOLDEN_FINGERPRINT = "1f0b14fb41bab5338275c5c5e558be217beeebec07697997b9b8348d1f2b18ce"
GOLDEN_CODE_SHA256 = "sAxozhOaCnjYU1eukQBo2McIpqCLHvHAAf6Mzux/fe8="

# zlib-ng (the system zlib on some distributions) deflates to other, equally valid bytes, so
# zip bytes are pinned only for the reference zlib; the fingerprint does not depend on zlib.
REFERENCE_ZLIB = "ng" not in zlib.ZLIB_RUNTIME_VERSION.lower()

GOLDEN_FILES: dict[str, bytes] = {
    "python/pkg/__init__.py": b"",
    "python/pkg/core.py": b"def answer() -> int:\n    return 42\n",
    "bin/tool": b"#!/bin/sh\necho tool\n",
    "python/pkg/data.bin": bytes(range(256)) * 8,
}
GOLDEN_EXECUTABLES = {"bin/tool"}
GOLDEN_LINKS = {"python/current": "pkg"}


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entries(
    files: dict[str, bytes],
    *,
    executables: set[str] | frozenset[str] = frozenset(),
    links: dict[str, str] | None = None,
) -> list[model.Entry]:
    entries = [
        model.Entry(arcname=name, source=name, size=len(data), executable=name in executables)
        for name, data in files.items()
    ]
    for name, target in (links or {}).items():
        entries.append(
            model.Entry(
                arcname=name,
                source=name,
                size=len(target.encode()),
                executable=False,
                link_target=target,
            )
        )
    return entries


def _digests(entries: list[model.Entry], files: dict[str, bytes]) -> list[tuple[model.Entry, str]]:
    return [
        (entry, "" if entry.link_target is not None else _sha256_hex(files[entry.source]))
        for entry in entries
    ]


def _zip_bytes(entries: list[model.Entry], files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()

    def open_entry(entry: model.Entry) -> contextlib.AbstractContextManager[io.BytesIO]:
        return contextlib.nullcontext(io.BytesIO(files[entry.source]))

    archive.write_zip(entries, out=out, open_entry=open_entry)
    return out.getvalue()


def _golden_entries() -> list[model.Entry]:
    return _entries(GOLDEN_FILES, executables=GOLDEN_EXECUTABLES, links=GOLDEN_LINKS)


def test_fingerprint_golden() -> None:
    """The fingerprint of a fixed set of entries is pinned (format version 1)."""
    assert archive.FORMAT_VERSION == 1
    assert archive.fingerprint(_digests(_golden_entries(), GOLDEN_FILES)) == GOLDEN_FINGERPRINT


@pytest.mark.skipif(not REFERENCE_ZLIB, reason="zip bytes are pinned for the reference zlib")
def test_zip_bytes_golden() -> None:
    """The zip of a fixed set of entries has pinned bytes (format version 1)."""
    data = _zip_bytes(_golden_entries(), GOLDEN_FILES)
    assert archive.code_sha256(hashlib.sha256(data).digest()) == GOLDEN_CODE_SHA256


def test_fingerprint_ignores_input_order_and_sources() -> None:
    """The fingerprint depends on paths, kinds and digests, not on order or where bytes live."""
    entries = _golden_entries()
    moved = [
        model.Entry(e.arcname, f"/elsewhere/{e.source}", e.size, e.executable, e.link_target)
        for e in reversed(entries)
    ]
    reversed_digests = [
        (moved_entry, digest)
        for moved_entry, (_, digest) in zip(
            moved, reversed(_digests(entries, GOLDEN_FILES)), strict=True
        )
    ]
    assert archive.fingerprint(reversed_digests) == GOLDEN_FINGERPRINT


def _changed(kind: str) -> tuple[dict[str, bytes], set[str], dict[str, str]]:
    files = dict(GOLDEN_FILES)
    executables = set(GOLDEN_EXECUTABLES)
    links = dict(GOLDEN_LINKS)
    if kind == "one byte":
        files["python/pkg/core.py"] = files["python/pkg/core.py"].replace(b"42", b"43")
    elif kind == "rename":
        files["python/pkg/main.py"] = files.pop("python/pkg/core.py")
    elif kind == "executable bit":
        executables.add("python/pkg/core.py")
    elif kind == "link target":
        links["python/current"] = "pkg/core.py"
    elif kind == "link becomes file":
        files["python/current"] = b"pkg"
        del links["python/current"]
    return files, executables, links


@pytest.mark.parametrize(
    "kind", ["one byte", "rename", "executable bit", "link target", "link becomes file"]
)
def test_any_content_change_changes_fingerprint_and_zip(kind: str) -> None:
    """Changing a byte, a name, the executable bit or a link changes fingerprint and zip."""
    files, executables, links = _changed(kind)
    entries = _entries(files, executables=executables, links=links)
    assert archive.fingerprint(_digests(entries, files)) != GOLDEN_FINGERPRINT
    assert _zip_bytes(entries, files) != _zip_bytes(_golden_entries(), GOLDEN_FILES)


def test_fingerprint_fields_cannot_run_together() -> None:
    """Two trees whose fields concatenate to the same text still get different fingerprints."""
    digest = _sha256_hex(b"x")
    one = [(model.Entry("ab", "ab", 1, False), digest)]
    other = [(model.Entry("a", "a", 1, False), digest), (model.Entry("b", "b", 1, False), digest)]
    assert archive.fingerprint(one) != archive.fingerprint(other)


@pytest.mark.parametrize(
    "entries",
    [
        [model.Entry("a\0b", "a", 1, False)],
        [model.Entry("link", "l", 1, False, link_target="a\0b")],
        [model.Entry("same", "one", 1, False), model.Entry("same", "two", 1, False)],
    ],
    ids=["nul-in-name", "nul-in-link", "duplicate"],
)
def test_fingerprint_and_zip_refuse_ambiguous_names(entries: list[model.Entry]) -> None:
    """Names with NUL and duplicate names are refused rather than given an ambiguous identity."""
    with pytest.raises(errors.ContentError):
        archive.fingerprint((entry, _sha256_hex(b"x")) for entry in entries)
    with pytest.raises(errors.ContentError):
        _zip_bytes(entries, {"one": b"x", "two": b"x", "a": b"x", "l": b""})


def test_zip_metadata_is_fixed() -> None:
    """Every member has the fixed timestamp, Unix origin, no extra field, and one of 3 modes."""
    data = _zip_bytes(_golden_entries(), GOLDEN_FILES)
    with zipfile.ZipFile(io.BytesIO(data)) as zip_file:
        assert zip_file.comment == b""
        infos = zip_file.infolist()
        names = [info.filename for info in infos]
        assert names == sorted([*GOLDEN_FILES, *GOLDEN_LINKS], key=lambda name: name.encode())
        modes = {}
        for info in infos:
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.create_system == 3
            assert info.extra == b""
            assert info.comment == b""
            assert not info.is_dir()
            modes[info.filename] = (info.external_attr >> 16, info.compress_type)
    assert modes == {
        "bin/tool": (0o100755, zipfile.ZIP_DEFLATED),
        "python/current": (0o120777, zipfile.ZIP_STORED),
        "python/pkg/__init__.py": (0o100644, zipfile.ZIP_DEFLATED),
        "python/pkg/core.py": (0o100644, zipfile.ZIP_DEFLATED),
        "python/pkg/data.bin": (0o100644, zipfile.ZIP_DEFLATED),
    }


def test_zip_is_valid_and_extracts_to_the_entries() -> None:
    """The zip passes testzip, files extract to their bytes and a link member holds its target."""
    data = _zip_bytes(_golden_entries(), GOLDEN_FILES)
    with zipfile.ZipFile(io.BytesIO(data)) as zip_file:
        assert zip_file.testzip() is None
        for name, content in GOLDEN_FILES.items():
            assert zip_file.read(name) == content
        link = zip_file.getinfo("python/current")
        assert stat.S_ISLNK(link.external_attr >> 16)
        assert zip_file.read(link) == b"pkg"


def test_zip_is_deflated_at_level_6() -> None:
    """File members are deflated at level 6, which fixes their compressed bytes for one zlib."""
    content = b"".join(b"line %d of some compressible text\n" % n for n in range(2000))
    entries = _entries({"f.txt": content})
    data = _zip_bytes(entries, {"f.txt": content})
    with zipfile.ZipFile(io.BytesIO(data)) as zip_file:
        info = zip_file.getinfo("f.txt")
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    expected = compressor.compress(content) + compressor.flush()
    assert data[info.header_offset + 30 + len("f.txt") :][: info.compress_size] == expected


def test_write_zip_returns_total_uncompressed_size() -> None:
    """write_zip returns the sum of member sizes, link texts included."""
    out = io.BytesIO()
    total = archive.write_zip(
        _golden_entries(),
        out=out,
        open_entry=lambda entry: contextlib.nullcontext(io.BytesIO(GOLDEN_FILES[entry.source])),
    )
    assert total == sum(len(data) for data in GOLDEN_FILES.values()) + len("pkg")


class _RecordingReader:
    """A reader that records the size of every read request."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)
        self.requests: list[int] = []

    def read(self, size: int = -1, /) -> bytes:
        self.requests.append(size)
        return self._inner.read(size)


def test_write_zip_streams_files_in_bounded_chunks() -> None:
    """A file is read in chunks of at most 1 MiB, never whole."""
    content = bytes(range(256)) * (3 * 4096 + 7)  # a little over 3 MiB
    reader = _RecordingReader(content)

    @contextlib.contextmanager
    def open_entry(entry: model.Entry) -> Iterator[_RecordingReader]:
        yield reader

    out = io.BytesIO()
    archive.write_zip(_entries({"big": content}), out=out, open_entry=open_entry)
    assert len(reader.requests) >= 4
    assert all(0 < size <= archive.CHUNK_BYTES for size in reader.requests)
    with zipfile.ZipFile(out) as zip_file:
        assert zip_file.read("big") == content


@pytest.mark.parametrize("actual", [b"short", b"longer than declared"], ids=["shrunk", "grew"])
def test_write_zip_refuses_a_file_whose_size_changed(actual: bytes) -> None:
    """A file whose byte count differs from its entry's size means it changed: ContentError."""
    entry = model.Entry("f", "f", 10, False)
    with pytest.raises(errors.ContentError, match="changed while it was being packaged"):
        archive.write_zip(
            [entry],
            out=io.BytesIO(),
            open_entry=lambda _: contextlib.nullcontext(io.BytesIO(actual)),
        )


_NAMES = st.text(alphabet="abc/._-é", min_size=1, max_size=6).filter(
    lambda name: all(part not in ("", ".", "..") for part in name.split("/"))
)


@settings(deadline=None, max_examples=40)
@given(
    tree=st.dictionaries(_NAMES, st.binary(max_size=40), min_size=1, max_size=6),
    data=st.data(),
)
def test_zip_and_fingerprint_ignore_entry_order(
    tree: dict[str, bytes], data: st.DataObject
) -> None:
    """Any permutation of the same entries gives the same fingerprint and the same zip bytes."""
    entries = _entries(tree)
    shuffled = data.draw(st.permutations(entries))
    assert archive.fingerprint(_digests(shuffled, tree)) == archive.fingerprint(
        _digests(entries, tree)
    )
    assert _zip_bytes(shuffled, tree) == _zip_bytes(entries, tree)


@pytest.mark.parametrize(
    ("patterns", "relpath", "is_dir", "excluded"),
    [
        # Built-ins.
        ((), "__pycache__", True, True),
        ((), "pkg/sub/__pycache__", True, True),
        ((), "__pycache__", False, False),
        ((), "pkg/module.pyc", False, True),
        ((), ".git", True, True),
        ((), ".git", False, False),
        ((), "pkg/.DS_Store", False, True),
        ((), "pkg/module.py", False, False),
        # Negation: the last matching pattern wins.
        (("!*.pyc",), "pkg/module.pyc", False, False),
        (("!__pycache__/",), "__pycache__", True, False),
        (("*.txt", "!keep.txt"), "docs/keep.txt", False, False),
        (("*.txt", "!keep.txt"), "docs/other.txt", False, True),
        (("!keep.txt", "*.txt"), "keep.txt", False, True),
        # Directory-only patterns.
        (("docs/",), "docs", True, True),
        (("docs/",), "pkg/docs", True, True),
        (("docs/",), "docs", False, False),
        # Anchored patterns.
        (("/build",), "build", True, True),
        (("/build",), "pkg/build", True, False),
        (("pkg/tests",), "pkg/tests", True, True),
        (("pkg/tests",), "lib/pkg/tests", True, False),
        (("pkg/*.py",), "pkg/a.py", False, True),
        (("pkg/*.py",), "pkg/sub/a.py", False, False),
        # Unanchored patterns match the name at any depth.
        (("tests",), "a/b/tests", True, True),
        (("*.md",), "a/b/README.md", False, True),
        (("?.md",), "a.md", False, True),
        (("?.md",), "ab.md", False, False),
        # `**` spans folders.
        (("**/tests",), "tests", True, True),
        (("**/tests",), "a/b/tests", True, True),
        (("pkg/**",), "pkg/a/b.py", False, True),
        (("pkg/**",), "pkg", True, False),
        (("a/**/b",), "a/b", False, True),
        (("a/**/b",), "a/x/y/b", False, True),
        (("a/**/b",), "a/xb", False, False),
        # Classes, escapes, comments and blanks.
        (("[ab].txt",), "a.txt", False, True),
        (("[!ab].txt",), "a.txt", False, False),
        (("[!ab].txt",), "c.txt", False, True),
        (("\\#notes",), "#notes", False, True),
        (("# a comment", ""), "# a comment", False, False),
        (("keep.txt   ",), "keep.txt", False, True),
    ],
)
def test_exclude_rules(
    patterns: tuple[str, ...], relpath: str, is_dir: bool, excluded: bool
) -> None:
    """gitignore semantics: built-ins, negation, dir-only, anchoring, `**`, last match wins."""
    rules = archive.ExcludeRules.compile(patterns)
    assert rules.excluded(relpath, is_dir=is_dir) is excluded


@settings(deadline=None, max_examples=60)
@given(
    folder=st.text(alphabet="ab", min_size=1, max_size=3), name=st.text(alphabet="ab", max_size=3)
)
def test_single_star_never_crosses_a_slash(folder: str, name: str) -> None:
    """`*` matches within one path segment only."""
    rules = archive.ExcludeRules.compile(["/*.py"])
    assert rules.excluded(f"{name}.py", is_dir=False)
    assert not rules.excluded(f"{folder}/{name}.py", is_dir=False)


@settings(deadline=None, max_examples=200)
@given(
    patterns=st.lists(st.sampled_from(["*.txt", "docs/", "/build", "a/**/b", "pkg/*.py",
                                       "[ab].md", "tests", "**/x", "?.c", "b/"]), max_size=4),
    relpath=st.lists(st.sampled_from(["a", "b", "x", "docs", "build", "pkg", "tests", "a.txt",
                                      "b.md", "y.c", "m.py"]), min_size=1, max_size=4),
    is_dir=st.booleans(),
)
def test_rules_without_negation_judge_as_one_rule_at_a_time(
        patterns: list[str], relpath: list[str], is_dir: bool) -> None:
    """Without a negated pattern, the rules judge a path in one combined match: the same
    verdict as rule by rule (which a negated pattern that matches nothing forces)."""
    path = "/".join(relpath)
    combined = archive.ExcludeRules.compile(patterns)
    one_by_one = archive.ExcludeRules.compile([*patterns, "!never\x01matched"])
    assert combined.excluded(path, is_dir=is_dir) is one_by_one.excluded(path, is_dir=is_dir)


@pytest.mark.parametrize(
    ("names", "offenders"),
    [
        (["python/a.py", "python/b/c.py", "python/"], []),
        (["/etc/passwd"], ["/etc/passwd"]),
        (["C:\\Windows\\x.dll"], ["C:\\\\Windows\\\\x.dll"]),
        (["c:/x"], ["c:/x"]),
        (["../evil.sh"], ["../evil.sh"]),
        (["python/../../evil.sh"], ["python/../../evil.sh"]),
        (["python\\..\\..\\evil.sh"], ["python\\\\..\\\\..\\\\evil.sh"]),
        (["a/b.py", "a\\b.py"], ["a\\\\b.py"]),
        (["a.py", "a.py"], ["a.py"]),
    ],
)
def test_check_member_names(names: list[str], offenders: list[str]) -> None:
    """Absolute names, `..` components and duplicates get one message each; safe names none."""
    problems = zipmembers.check_member_names(names)
    assert len(problems) == len(offenders)
    for problem, offender in zip(problems, offenders, strict=True):
        assert offender in problem


def test_code_sha256_is_base64_of_the_raw_digest() -> None:
    """code_sha256 is what Lambda reports as CodeSha256: base64 of the raw SHA-256 digest."""
    digest = hashlib.sha256(b"").digest()
    assert archive.code_sha256(digest) == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    assert base64.b64decode(archive.code_sha256(digest)) == digest


def _info(name: str, *, flags: int = 0, extra: bytes = b"") -> zipfile.ZipInfo:
    """A ZipInfo as zipfile builds it when reading: the name decoded per the UTF-8 flag."""
    info = zipfile.ZipInfo(name)
    info.flag_bits = flags
    info.extra = extra
    return info


def _unicode_path(name: str, *, raw_name: bytes, version: int = 1) -> bytes:
    body = bytes([version]) + zlib.crc32(raw_name).to_bytes(4, "little") + name.encode()
    return (0x7075).to_bytes(2, "little") + len(body).to_bytes(2, "little") + body


NAME = "python/données.txt"
RAW_UTF8 = NAME.encode()
RAW_CP437 = NAME.encode("cp437")  # an old tool's code page: é is 0x82 there


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        pytest.param(_info(NAME, flags=zipmembers.FLAG_UTF8), NAME, id="utf8-flag"),
        pytest.param(_info(RAW_UTF8.decode("cp437")), NAME, id="raw-utf8-no-flag"),
        pytest.param(_info(RAW_CP437.decode("cp437"),
                           extra=_unicode_path(NAME, raw_name=RAW_CP437)), NAME,
                     id="unicode-path-field"),
        pytest.param(_info(RAW_UTF8.decode("cp437"),
                           extra=_unicode_path("other.txt", raw_name=b"stale")), NAME,
                     id="stale-field-ignored"),
        pytest.param(_info(RAW_CP437.decode("cp437"),
                           extra=_unicode_path(NAME, raw_name=RAW_CP437, version=2)), None,
                     id="unknown-field-version-ignored"),
        pytest.param(_info(RAW_CP437.decode("cp437")), None, id="cp437-bytes-refused"),
        pytest.param(_info("python/plain.txt"), "python/plain.txt", id="ascii"),
    ],
)
def test_member_name_reads_names_as_unzip_does(info: zipfile.ZipInfo,
                                               expected: str | None) -> None:
    """UTF-8 flag, then a Unicode Path field whose CRC matches, then raw UTF-8, else None."""
    assert zipmembers.member_name(info) == expected


def test_member_header_problems_name_encryption_and_methods() -> None:
    """Encrypted members and methods other than stored/deflate are each named; those pass."""
    encrypted = _info("a.txt", flags=zipmembers.FLAG_ENCRYPTED)
    bzip2 = _info("b.txt")
    bzip2.compress_type = zipfile.ZIP_BZIP2
    deflate64 = _info("c.txt")
    deflate64.compress_type = 9
    assert zipmembers.member_header_problems(encrypted, name="a.txt") == [
        "'a.txt' is encrypted, and Lambda cannot extract an encrypted member"]
    assert "method 12" in zipmembers.member_header_problems(bzip2, name="b.txt")[0]
    assert "method 9" in zipmembers.member_header_problems(deflate64, name="c.txt")[0]
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        fine = _info("d.txt")
        fine.compress_type = method
        assert zipmembers.member_header_problems(fine, name="d.txt") == []


TREE_FILES = {"python/pkg/mod.py", "python/data.txt", "top.txt"}
TREE_FOLDERS = {"python", "python/pkg", "python/sub"}


@pytest.mark.parametrize(
    ("links", "link", "phrase"),
    [
        ({"python/l": "data.txt"}, "python/l", None),
        ({"python/l": "pkg"}, "python/l", None),
        ({"python/l": "../top.txt"}, "python/l", None),
        ({"python/a": "pkg", "python/b": "a/mod.py"}, "python/b", None),
        ({"python/l": "/etc/passwd"}, "python/l", "absolute"),
        ({"python/l": "../../../../etc/passwd"}, "python/l", "outside the zip"),
        ({"python/l": "missing.txt"}, "python/l", "broken"),
        ({"python/l": "data.txt/x"}, "python/l", "broken"),
        ({"python/l": ""}, "python/l", "empty"),
        ({"python/a": "b", "python/b": "a"}, "python/a", "loop"),
        # `..` climbs from where a link leads, not from its name: sub/up is the root, so
        # sub/up/.. is outside although `sub/up/../..` looks like `.` as text.
        ({"python/sub/up": "../..", "python/l": "sub/up/../../x"}, "python/l", "outside"),
        ({"python/sub/abs": "/etc", "python/l": "sub/abs/passwd"}, "python/l", "not in the zip"),
    ],
)
def test_link_problem_resolves_like_the_kernel(links: dict[str, str], link: str,
                                               phrase: str | None) -> None:
    """A link resolving inside the tree passes; absolute, escaping, broken and looping fail."""
    tree = zipmembers.ZipTree(files=TREE_FILES, folders=TREE_FOLDERS, links=links)
    problem = zipmembers.link_problem(link, tree=tree)
    if phrase is None:
        assert problem is None
    else:
        assert problem is not None and phrase in problem


def _deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def _member_info(*, method: int, raw: bytes, file_size: int, crc: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("m.bin")
    info.compress_type = method
    info.compress_size = len(raw)
    info.file_size = file_size
    info.CRC = crc
    return info


DATA = b"layer bytes " * 100


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_check_member_data_accepts_honest_members(method: int) -> None:
    """Data matching its declared size and CRC passes, and the sink gets exactly the data."""
    raw = DATA if method == zipfile.ZIP_STORED else _deflated(DATA)
    info = _member_info(method=method, raw=raw, file_size=len(DATA), crc=zlib.crc32(DATA))
    received = bytearray()
    zipmembers.check_member_data(io.BytesIO(raw), name="m.bin", info=info, sink=received.extend)
    assert bytes(received) == DATA


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
@pytest.mark.parametrize(
    ("size_delta", "crc_delta", "phrase"),
    [(-1, 0, "more data than its declared size"), (1, 0, "not its declared size"),
     (0, 1, "CRC-32")],
)
def test_check_member_data_refuses_lying_members(method: int, size_delta: int, crc_delta: int,
                                                 phrase: str) -> None:
    """A declared size too small or too large, or a wrong CRC, is a ContentError naming it."""
    raw = DATA if method == zipfile.ZIP_STORED else _deflated(DATA)
    info = _member_info(method=method, raw=raw, file_size=len(DATA) + size_delta,
                        crc=(zlib.crc32(DATA) + crc_delta) & 0xFFFFFFFF)
    with pytest.raises(errors.ContentError, match=phrase) as raised:
        zipmembers.check_member_data(io.BytesIO(raw), name="m.bin", info=info)
    assert "'m.bin'" in raised.value.message


def test_check_member_data_stops_inflating_past_the_declared_size() -> None:
    """A bomb declaring 100 bytes yields at most 101 before it is refused, however big it is."""
    bomb = bytes(64 * 1024 * 1024)
    raw = _deflated(bomb)
    info = _member_info(method=zipfile.ZIP_DEFLATED, raw=raw, file_size=100,
                        crc=zlib.crc32(bomb[:100]))
    received = bytearray()
    with pytest.raises(errors.ContentError, match="more data than its declared size"):
        zipmembers.check_member_data(io.BytesIO(raw), name="m.bin", info=info,
                                  sink=received.extend)
    assert len(received) <= 100


def test_check_member_data_refuses_truncated_data() -> None:
    """Compressed data shorter than declared, or a deflate stream cut short, is refused."""
    raw = _deflated(DATA)
    info = _member_info(method=zipfile.ZIP_DEFLATED, raw=raw, file_size=len(DATA),
                        crc=zlib.crc32(DATA))
    with pytest.raises(errors.ContentError, match="ends inside"):
        zipmembers.check_member_data(io.BytesIO(raw[:-5]), name="m.bin", info=info)
    cut = _member_info(method=zipfile.ZIP_DEFLATED, raw=raw[:-5], file_size=len(DATA),
                       crc=zlib.crc32(DATA))
    with pytest.raises(errors.ContentError, match="ends before the end of its deflate stream"):
        zipmembers.check_member_data(io.BytesIO(raw[:-5]), name="m.bin", info=cut)
