"""Reading a fully pinned, hashed `requirements.txt` (what `pip-compile --generate-hashes`,
`uv pip compile --generate-hashes` and `uv export` write) into locked packages for a target.

Pure: it parses the text it is given and names the file only in its messages. It never reads
an include (`-r`/`-c`: a lock is one file), never follows a URL, and never guesses a version:
anything unpinned, unhashed, editable, a URL, a path or a VCS requirement is a located error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from packaging.markers import InvalidMarker, Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from reconciler import errors
from reconciler.builds import LockedPackage, LockError
from reconciler.builds.target import Target

# Options that change nothing for a build from hashed pins (pip's own behaviour for them is
# what a hashed, binary-only build does anyway).
_IGNORED_FLAGS = frozenset({"--require-hashes", "--pre", "--prefer-binary", "--no-deps"})
_IGNORED_WITH_VALUE = frozenset({"--trusted-host", "--only-binary"})
_INDEX_OPTIONS = {"-i": "--index-url", "--index-url": "--index-url",
                  "--extra-index-url": "--extra-index-url",
                  "-f": "--find-links", "--find-links": "--find-links"}
# The callback a reader reports a located problem through: (line, message).
_Reporter = Callable[[int, str], None]
_REFUSED = {
    "-e": "an editable requirement is built from source; lock a released version instead",
    "--editable": "an editable requirement is built from source; lock a released version "
                  "instead",
    "-r": "includes are not followed: give the lock that lists every package (pip-compile "
          "or uv export writes one file)",
    "--requirement": "includes are not followed: give the lock that lists every package",
    "-c": "constraint files are not followed: give the lock that lists every package",
    "--constraint": "constraint files are not followed: give the lock that lists every "
                    "package",
    "--no-binary": "the build installs wheels only and never builds an sdist",
    "--no-index": "the wheels come from find_links and index_url in layers.yaml",
}


@dataclass(frozen=True)
class Pin:
    """One requirement line: `name==version`, its allowed SHA-256 digests, and its marker."""

    name: str
    version: str
    hashes: frozenset[str]
    marker: Marker | None
    line: int


@dataclass(frozen=True)
class RequirementsFile:
    """A parsed requirements.txt: its pins in file order and the index options it carries
    (recorded, for the caller to weigh against layers.yaml's own)."""

    file: str
    pins: tuple[Pin, ...]
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()

    def packages_for(self, target: Target) -> list[LockedPackage]:
        """The pins the target needs (markers true for it), each name once; raises LockError
        when a marker cannot be evaluated or two pins for one name both apply."""
        environment = target.marker_environment()
        chosen: dict[str, Pin] = {}
        problems: list[errors.Problem] = []
        for pin in self.pins:
            if pin.marker is not None:
                try:
                    applies = pin.marker.evaluate({**environment, "extra": ""})
                except (UndefinedComparison, UndefinedEnvironmentName) as error:
                    problems.append(self._problem(pin.line, f"marker of {pin.name}: {error}"))
                    continue
                if not applies:
                    continue
            earlier = chosen.get(pin.name)
            if earlier is not None:
                problems.append(self._problem(
                    pin.line, f"{pin.name} is pinned twice for {target.describe()} (line "
                              f"{earlier.line}: {earlier.version}, here: {pin.version})"))
                continue
            chosen[pin.name] = pin
        if problems:
            raise LockError(problems)
        return [LockedPackage(name=pin.name, version=pin.version, hashes=pin.hashes,
                              wheels=None, file=self.file, line=pin.line)
                for pin in chosen.values()]

    def _problem(self, line: int, message: str) -> errors.Problem:
        return errors.Problem(self.file, line, 1, "lock", message)


def parse(text: str, *, file: str) -> RequirementsFile:
    """The pins and options of requirements.txt `text` (`file` names it in messages). Raises
    LockError listing every located problem."""
    problems: list[errors.Problem] = []
    pins: list[Pin] = []
    options: dict[str, list[str]] = {"--index-url": [], "--extra-index-url": [],
                                     "--find-links": []}

    def problem(line: int, message: str) -> None:
        problems.append(errors.Problem(file, line, 1, "lock", message))

    for line_number, logical in _logical_lines(text):
        tokens = logical.split()
        if tokens[0].startswith("-"):
            _read_option(tokens, line=line_number, options=options, problem=problem)
            continue
        split = next((index for index, token in enumerate(tokens) if token.startswith("-")),
                     len(tokens))
        pin = _read_pin(" ".join(tokens[:split]), tokens[split:], line=line_number,
                        problem=problem)
        if pin is not None:
            pins.append(pin)
    if len(options["--index-url"]) > 1:
        problem(1, "more than one --index-url")
    if problems:
        raise LockError(problems)
    return RequirementsFile(
        file=file, pins=tuple(pins),
        index_url=options["--index-url"][0] if options["--index-url"] else None,
        extra_index_urls=tuple(options["--extra-index-url"]),
        find_links=tuple(options["--find-links"]))


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first physical line number, text) of each non-empty logical line: comments removed
    (`#` at the start or after whitespace, as pip reads them), `\\` continuations joined."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw if raw.startswith("#") else raw.split(" #", 1)[0].split("\t#", 1)[0]
        if line.startswith("#"):
            line = ""
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending.append(line.rstrip()[:-1])
            continue
        pending.append(line)
        joined = " ".join(part.strip() for part in pending).strip()
        pending = []
        if joined:
            yield start, joined
    joined = " ".join(part.strip() for part in pending).strip()
    if joined:
        yield start, joined


def _read_option(tokens: list[str], *, line: int, options: dict[str, list[str]],
                 problem: _Reporter) -> None:
    name, _, inline_value = tokens[0].partition("=")
    values = [inline_value] if inline_value else tokens[1:2]
    if name in _REFUSED:
        problem(line, f"{name} is not supported: {_REFUSED[name]}")
    elif name in _IGNORED_FLAGS:
        return
    elif name in _IGNORED_WITH_VALUE or name in _INDEX_OPTIONS:
        if not values:
            problem(line, f"{name} needs a value")
        elif name in _INDEX_OPTIONS:
            options[_INDEX_OPTIONS[name]].append(values[0])
    elif name == "--hash":
        problem(line, "--hash must follow a requirement on its line (or its continuation)")
    else:
        problem(line, f"unknown option {name}")


def _read_pin(requirement_text: str, option_tokens: list[str], *, line: int,
              problem: _Reporter) -> Pin | None:
    looks_like_location = ("://" in requirement_text or requirement_text.startswith((".", "/"))
                           or requirement_text.endswith((".whl", ".tar.gz", ".zip")))
    if looks_like_location and "@" not in requirement_text:
        problem(line, f"{requirement_text!r} is a path or URL, not a pinned requirement; "
                      "lock a released version from an index")
        return None
    try:
        requirement = Requirement(requirement_text)
    except (InvalidRequirement, InvalidMarker) as error:
        problem(line, f"cannot read the requirement {requirement_text!r}: {error}")
        return None
    name = canonicalize_name(requirement.name)
    if requirement.url:
        kind = "a VCS" if "+" in requirement.url.split("://", 1)[0] else "a URL"
        problem(line, f"{name} is {kind} requirement ({requirement.url}); lock a released "
                      "version from an index")
        return None
    specifiers = list(requirement.specifier)
    if (len(specifiers) != 1 or specifiers[0].operator not in ("==", "===")
            or specifiers[0].version.endswith(".*")):
        found = str(requirement.specifier) or "no version"
        problem(line, f"{name} is not pinned with == (found {found}); every requirement of a "
                      "lock names one version")
        return None
    hashes = _read_hashes(option_tokens, name=name, line=line, problem=problem)
    if hashes is None:
        return None
    return Pin(name=name, version=specifiers[0].version, hashes=hashes,
               marker=requirement.marker, line=line)


def _read_hashes(tokens: list[str], *, name: str, line: int,
                 problem: _Reporter) -> frozenset[str] | None:
    digests: set[str] = set()
    position = 0
    while position < len(tokens):
        option, _, value = tokens[position].partition("=")
        if option != "--hash":
            problem(line, f"{option} is not supported on a requirement line")
            return None
        if not value:
            position += 1
            value = tokens[position] if position < len(tokens) else ""
        position += 1
        algorithm, _, digest = value.partition(":")
        if algorithm != "sha256":
            problem(line, f"{name}: only sha256 hashes are accepted (found {value!r})")
            return None
        digest = digest.lower()
        if len(digest) != 64 or any(char not in "0123456789abcdef" for char in digest):
            problem(line, f"{name}: {value!r} is not a SHA-256 digest")
            return None
        digests.add(digest)
    if not digests:
        problem(line, f"{name} has no --hash; generate the lock with hashes "
                      "(pip-compile --generate-hashes, uv pip compile --generate-hashes)")
        return None
    return frozenset(digests)
