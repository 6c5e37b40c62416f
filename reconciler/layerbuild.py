"""Build one layer's zip into `.reconcile/build/<fingerprint>.zip`: reuse one already built,
or collect the content again, write the zip into a temp file (incrementally from the layer's
previous zip, a built layer's members copied from its wheels), check that what was zipped
still has the planned fingerprint, and move it into place with its index.

Shell: it reads the content and writes only into the build folder (and, for the head start's
worker, zips ahead of the run, as temp files the run moves into the build folder: a built
layer's into the wheel cache's `prebuild/`, `prebuild`; a folder layer's into the build
folder, or `prebuild/` without one, `prebuild_folder`). Build temp files left by a killed
build (`*.zip.tmp`, named by the writer's pid) are removed by the next build into the same
folder, and by the next run's identify (artifacts, headstart). `artifacts.LocalCode` is
the one caller that decides when and what to build.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from reconciler import archive, elfcheck, errors, model, wheelmembers, zipbuild, zipindex
from reconciler import content as layer_content
from reconciler.builds import cache as wheel_cache
from reconciler.content import common, statcache

if TYPE_CHECKING:  # (the wheel fetching machinery: a folder layer's build never needs it)
    from reconciler.builds import fetch

# What a build read of its ELF members, by the zip's path: (ELF member -> what it needs, every
# member's name), so that the binary check of a zip just built needs no second read.
Inspected = dict[str, tuple[Mapping[str, "elfcheck.ElfInfo | elfcheck.BadElf"], list[str]]]

# Build temp files: `.<fingerprint[:16]>.<pid>.<random>.zip.tmp`. One not written to for this
# long is abandoned whoever wrote it (a live writer touches it with every chunk).
BUILD_TEMP_SUFFIX = common.BUILD_TEMP_SUFFIX
STALE_BUILD_TEMP_SECONDS = 300


class Follower(Protocol):
    """Who follows a zip while `_write_temp` writes it, in another process (the head start's
    helper): it verifies the previous zip meanwhile (the build copies from it at once, and
    throws its zip away unless it was what its index says) and reads the new zip's bytes as
    they are written (for the upload's base64)."""

    def begin(self, temp: int, previous: zipindex.PreviousZip | None) -> bool:
        """The temp file is open at `temp` (nothing written yet) and `previous` (not
        verified) is open: start following; False when it cannot (the build then verifies
        the previous zip itself, first)."""

    def reached(self, offset: int) -> None:
        """The zip's bytes up to `offset` are in the file."""

    def written(self, size: int) -> None:
        """The whole zip, `size` bytes, is in the file."""

    def verified(self) -> bool | None:
        """Once written: whether the previous zip was what its index says (waiting for the
        follower); None when the follower failed to tell."""

    def abandon(self) -> None:
        """The build failed or stopped: stop following."""


def is_built(artifact: model.Artifact) -> bool:
    """Whether the artifact's zip is known: its path and every digest (a prebuilt zip's, or
    one built before)."""
    return None not in (
        artifact.zip_path,
        artifact.code_sha256,
        artifact.content_sha256,
        artifact.code_size,
    )


def build(
    content: model.ContentSpec,
    artifact: model.Artifact,
    *,
    base_dir: Path,
    label: str,
    build_dir: Path,
    skip: frozenset[str] = frozenset(),
    previous_zip: Path | None = None,
    cache: statcache.StatCache | None = None,
    sources: fetch.Sources | None = None,
    inspected: Inspected | None = None,
    prebuilt: Prebuilt | None = None,
    collected: common.Collected | None = None,
) -> model.Artifact:
    """The artifact with its zip built: `build_dir/<fingerprint>.zip` and its digests.

    A zip already built for the fingerprint is reused (only re-hashed). Otherwise the content is
    collected again, zipped on every core into a temporary file and moved into place; if what
    was zipped no longer has the fingerprint that was planned, the content changed since and a
    ContentError says so. A prebuilt zip (all digests known) is returned unchanged. The 50 MB
    direct-upload limit is the caller's to apply.

    The zip is rebuilt incrementally from `previous_zip` (default: the layer's latest zip in
    `build_dir`, found by `label`): unchanged files, known by their digests (from `cache`, or
    read again without one), have their compressed bytes copied; the bytes are those of a
    full build (see `zipbuild`). A layer built from a lock takes its wheels from `sources`;
    its zip written ahead by the head start's worker (`prebuilt`, for this fingerprint) is
    moved into place instead of being written again. A folder whose walk the identify that
    fingerprinted it handed over (`collected`, with its files' digests) is not walked again.
    """
    if is_built(artifact):
        return artifact
    with common.layer_errors(label):
        return _build(
            content, artifact, base_dir=base_dir, label=label, build_dir=build_dir, skip=skip,
            previous_zip=previous_zip, cache=cache, sources=sources, inspected=inspected,
            prebuilt=prebuilt, collected=collected,
        )


@dataclasses.dataclass(frozen=True)
class Written:
    """A zip written into a temp file whose content had the planned fingerprint, with what
    moving it into place needs: its index, the wheels' digests (for the wheel cache's facts),
    every member's name (for the binary check), and a built layer's summary."""

    temp_path: str
    # The temp file as it was once written and synced (inode, size, mtime, ctime): one that
    # differs when it is to be moved into place was changed by something else, and is not
    # used.
    written_as: tuple[int, int, int, int]
    built: zipindex.BuiltZip
    wheel_sha256: Mapping[str, str]
    arcnames: list[str]
    build: model.BuildInfo | None
    unzipped_size: int | None
    # The index's bytes (zipindex.index_bytes), when `built` was handed over without its
    # members: a worker's zip (`handed`).
    index: bytes | None = None

    def handed(self) -> Written:
        """This, as a worker hands it to the run: the index encoded here, and no member list
        (7,660 members pickled and unpickled cost ~0.1 s; the bytes, nothing)."""
        return dataclasses.replace(self, built=dataclasses.replace(self.built, members=()),
                                   index=zipindex.index_bytes(self.built))


@dataclasses.dataclass(frozen=True)
class Prebuilt:
    """A layer's zip written ahead by the head start's worker into a temp file (a built
    layer's outside the project: `prebuild`; a folder layer's, once the manifest passed its
    checks, in the build folder, or outside the project without one: `prebuild_folder`), for
    the run to move into place (`build`) or remove."""

    fingerprint: str
    written: Written
    # Its base64 was written into the run's encoding file too (headstart), for its upload.
    encoded: bool = False

    def discard(self) -> None:
        """Remove the temp file (the run did not need it); best effort."""
        with suppress(OSError):
            os.unlink(self.written.temp_path)


def prebuild(content: model.ContentSpec, artifact: model.Artifact, *, base_dir: Path,
             label: str, temp_dir: Path, sources: fetch.Sources, owner: int) -> Prebuilt | None:
    """In the head start's worker: a built layer's zip written into `temp_dir` (named by
    `owner`, the run it is for, so that another run's build removes it only once that run is
    gone), inspected as a run's build is; None when it cannot be written here and now (a
    wheel to download, a damaged wheel, any error: the run then builds it itself, and
    reports what stops it)."""
    if content.kind is not model.SourceKind.LOCK:
        return None
    try:
        temp_dir.mkdir(parents=True, exist_ok=True)
        written = _write_temp(content, artifact, base_dir=base_dir, label=label,
                              temp_dir=temp_dir, previous_zip=None, skip=frozenset(),
                              cache=None, sources=sources, inspect=True, owner=owner)
    except Exception:  # whatever stops it here, the run meets again and reports
        return None
    return Prebuilt(fingerprint=artifact.fingerprint, written=written.handed())


def prebuild_folder(content: model.ContentSpec, artifact: model.Artifact, *,
                    collected: common.Collected, base_dir: Path, label: str, build_dir: Path,
                    previous: Path, owner: int,
                    follower: Follower | None = None) -> Prebuilt | None:
    """In the head start's worker, once the manifest passed its checks: a folder layer's zip
    written into a temp file in `build_dir` (named by `owner`, the run it is for) from the
    walk its identify fingerprinted (`collected`, with every file's digest), incrementally
    from the layer's latest zip in the run's build folder `previous` (if any; verified by
    the `follower`, when given, while the zip is written), and inspected, as the run's own
    build would write it; None when it cannot be written here (any error: the run then
    builds it itself, from the same walk, and reports what stops it)."""
    if content.kind is not model.SourceKind.PATH:
        return None
    try:
        written = _write_temp(content, artifact, base_dir=base_dir, label=label,
                              temp_dir=build_dir, skip=frozenset(),
                              previous_zip=zipindex.latest_zip(previous, layer=label),
                              cache=None, sources=None, inspect=True, owner=owner,
                              collected=collected, follower=follower)
    except Exception:  # whatever stops it here, the run meets again and reports
        return None
    return Prebuilt(fingerprint=artifact.fingerprint, written=written.handed())


def _build(
    content: model.ContentSpec,
    artifact: model.Artifact,
    *,
    base_dir: Path,
    label: str,
    build_dir: Path,
    skip: frozenset[str],
    previous_zip: Path | None,
    cache: statcache.StatCache | None,
    sources: fetch.Sources | None = None,
    inspected: Inspected | None = None,
    prebuilt: Prebuilt | None = None,
    collected: common.Collected | None = None,
) -> model.Artifact:
    if content.kind is model.SourceKind.ZIP and not content.normalize:
        # Only the fingerprint was given: the prebuilt zip is hashed again, uncached.
        uncached = statcache.StatCache(build_dir / "unused", entries={}, written_ns=0)
        given = layer_content.identify(content, base_dir=base_dir, label=label, cache=uncached)
        if given.fingerprint != artifact.fingerprint:
            raise _changed_while_planning(
                label, planned=artifact.fingerprint, found=given.fingerprint
            )
        return given
    zip_path = build_dir / f"{artifact.fingerprint}.zip"
    build_dir.mkdir(parents=True, exist_ok=True)
    if prebuilt is not None and prebuilt.fingerprint != artifact.fingerprint:
        prebuilt.discard()
        prebuilt = None
    if zip_path.is_file() and zipfile.is_zipfile(zip_path):
        if prebuilt is not None:
            prebuilt.discard()
        built = _built_artifact(artifact.fingerprint, zip_path)
    elif prebuilt is not None and (placed := _place_prebuilt(
            prebuilt, artifact, zip_path=zip_path, sources=sources,
            inspected=inspected)) is not None:
        built = placed
    else:
        written = _write_temp(
            content, artifact, base_dir=base_dir, label=label, temp_dir=build_dir, skip=skip,
            previous_zip=previous_zip or zipindex.latest_zip(build_dir, layer=label),
            cache=cache, sources=sources, inspect=inspected is not None, collected=collected)
        built = _place(written, artifact, zip_path=zip_path, sources=sources,
                       inspected=inspected)
    zipindex.remember_latest(build_dir, layer=label, zip_path=zip_path)
    return built


def _place_prebuilt(prebuilt: Prebuilt, artifact: model.Artifact, *, zip_path: Path,
                    sources: fetch.Sources | None,
                    inspected: Inspected | None) -> model.Artifact | None:
    """The worker's zip moved into place; None when it is gone (another run's clean-up of
    temps over STALE_BUILD_TEMP_SECONDS old took it) or is not the file the worker wrote and
    synced (another inode, size or mtime): the caller then builds."""
    try:
        if _identity(os.stat(prebuilt.written.temp_path)) != prebuilt.written.written_as:
            prebuilt.discard()
            return None
        return _place(prebuilt.written, artifact, zip_path=zip_path, sources=sources,
                      inspected=inspected)
    except FileNotFoundError:
        return None


def _identity(found: os.stat_result) -> tuple[int, int, int, int]:
    return found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns


def _write_temp(
    content: model.ContentSpec,
    artifact: model.Artifact,
    *,
    base_dir: Path,
    label: str,
    temp_dir: Path,
    skip: frozenset[str],
    previous_zip: Path | None,
    cache: statcache.StatCache | None,
    sources: fetch.Sources | None,
    inspect: bool,
    owner: int | None = None,
    collected: common.Collected | None = None,
    follower: Follower | None = None,
) -> Written:
    """Collect the content again (unless given `collected`, the walk whose fingerprint was
    planned) and write its zip into a temp file in `temp_dir`, named by the `owner` process
    (default: this one); the content must still have the planned fingerprint (ContentError
    otherwise, temp removed). With a `follower`, the previous zip is verified by it while
    the zip is written (a ContentError, temp removed, if it was not what its index says)."""
    if collected is None:
        collected = layer_content.collected(content, base_dir=base_dir, label=label,
                                            skip=skip, sources=sources)
    if collected.build is not None and collected.build.inputs_sha256 != artifact.fingerprint:
        # A built layer's fingerprint is its inputs digest: the lock changed since the plan.
        raise _changed_while_planning(label, planned=artifact.fingerprint,
                                      found=collected.build.inputs_sha256)
    remove_stale_build_temps(temp_dir)
    # The writer's pid in the name lets a later build tell an abandoned temp file.
    known_sha256: zipbuild.KnownSha256 | None = None
    if content.kind is model.SourceKind.PATH:
        # Without the caller's cache, a file is read once more to be hashed: still far
        # cheaper than deflating it again.
        digests = cache or statcache.StatCache(temp_dir / "unused", entries={}, written_ns=0)
        handed = collected.sha256  # (a handed walk's: what its identify found)

        def known_sha256(entry: model.Entry) -> str:
            found = handed.get(entry.source)
            return found if found is not None else digests.file_sha256(
                entry.source, collected.stats[entry.source])

    descriptor, temp_name = tempfile.mkstemp(
        dir=temp_dir, prefix=f".{artifact.fingerprint[:16]}.{owner or os.getpid()}.",
        suffix=BUILD_TEMP_SUFFIX,
    )
    following = False
    try:
        with (
            os.fdopen(descriptor, "w+b") as temp_file,
            common.EntryReader(collected.stats) as reader,
            zipindex.open_previous(previous_zip, verified=follower is None) as previous,
        ):
            following = follower is not None and follower.begin(temp_file.fileno(), previous)
            if previous is not None and not following and not previous.verify():
                previous = None  # (closed by open_previous)
            facts = _wheel_facts(collected, sources=sources)
            raw_source = _wheel_members(collected.entries, facts=facts) \
                if content.kind is model.SourceKind.LOCK else None
            built = zipbuild.write_zip(
                collected.entries, out=temp_file, open_entry=reader.open, previous=previous,
                known_sha256=known_sha256, raw_source=raw_source, inspect=inspect,
                # Members of one zip are read through one shared ZipFile: one worker (a
                # wheel's are read by their offsets, from any thread).
                workers=None if content.kind in (model.SourceKind.PATH, model.SourceKind.LOCK)
                else 1, reached=follower.reached if follower is not None and following
                else None,
            )
            temp_file.flush()
            if follower is not None and following:
                follower.written(built.code_size)
            os.fsync(temp_file.fileno())
            synced = os.fstat(temp_file.fileno())
            file_sha256 = built.file_sha256()
            zipped = collected.build.inputs_sha256 if collected.build is not None else (
                archive.fingerprint(
                    (entry, file_sha256[entry.arcname]) for entry in collected.entries))
            if zipped != artifact.fingerprint:
                raise _changed_while_planning(label, planned=artifact.fingerprint,
                                              found=zipped)
            if follower is not None and following and previous is not None:
                # (Its members were copied meanwhile: the zip is kept only if it was.)
                verdict = follower.verified()
                if not (previous.verify() if verdict is None else verdict):
                    raise errors.ContentError(
                        f"{label}: the previous zip in the build folder is not what its "
                        "index says")
    except BaseException:
        if follower is not None and following:
            follower.abandon()
        common.remove_quietly(temp_name)
        raise
    return Written(
        temp_path=temp_name, written_as=_identity(synced), built=built,
        wheel_sha256=dict(collected.wheel_sha256),
        arcnames=[entry.arcname for entry in collected.entries], build=collected.build,
        unzipped_size=(sum(entry.size for entry in collected.entries)
                       if collected.build is not None else None))


def _place(written: Written, artifact: model.Artifact, *, zip_path: Path,
           sources: fetch.Sources | None, inspected: Inspected | None) -> model.Artifact:
    """Move a written zip into place, with its index, and keep what it checked."""
    try:
        try:
            os.replace(written.temp_path, zip_path)
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
            # A worker's zip written on another file system (the wheel cache's): copied.
            _copy_into_place(written.temp_path, zip_path)
    except BaseException:
        common.remove_quietly(written.temp_path)
        raise
    built = written.built
    zipindex.save_index(zip_path, built, encoded=written.index)
    _keep_wheel_facts(built, wheel_sha256=written.wheel_sha256, sources=sources)
    if inspected is not None and built.elf_files is not None:
        inspected[os.path.abspath(zip_path)] = (built.elf_files, written.arcnames)
    return model.Artifact(
        fingerprint=artifact.fingerprint,
        code_sha256=archive.code_sha256(built.sha256),
        content_sha256=built.sha256.hex(),
        code_size=built.code_size,
        zip_path=os.path.abspath(zip_path),
        unzipped_size=written.unzipped_size,
        build=written.build,
    )


def _copy_into_place(source: str, zip_path: Path) -> None:
    """Copy `source` to `zip_path` through a temp file beside it (durably, then renamed), and
    remove `source`."""
    descriptor, temp_name = tempfile.mkstemp(
        dir=zip_path.parent, prefix=f".{zip_path.stem[:16]}.{os.getpid()}.",
        suffix=BUILD_TEMP_SUFFIX)
    try:
        with os.fdopen(descriptor, "wb") as out, open(source, "rb") as given:
            shutil.copyfileobj(given, out, archive.CHUNK_BYTES)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp_name, zip_path)
    except BaseException:
        common.remove_quietly(temp_name)
        raise
    common.remove_quietly(source)


WheelFacts = dict[str, dict[str, wheel_cache.MemberFacts]]


def _wheel_facts(collected: common.Collected, *,
                 sources: fetch.Sources | None) -> WheelFacts:
    """What earlier builds found of the wheels' members, by wheel path (the wheel cache's
    facts, by each wheel's verified SHA-256)."""
    if sources is None:
        return {}
    return {path: sources.wheel_cache.facts(sha256)
            for path, sha256 in collected.wheel_sha256.items()}


def _keep_wheel_facts(built: zipindex.BuiltZip, *, wheel_sha256: Mapping[str, str],
                      sources: fetch.Sources | None) -> None:
    """Keep in the wheel cache what this build checked of the wheels' members."""
    if sources is None or not built.checked:
        return
    found: WheelFacts = {}
    for member in built.checked:
        found.setdefault(member.wheel, {})[member.name] = wheel_cache.MemberFacts(
            crc=member.crc, size=member.size, elf=member.elf)
    for path, facts in found.items():
        sha256 = wheel_sha256.get(path)
        if sha256 is not None:
            sources.wheel_cache.put_facts(sha256, facts)


def _wheel_members(entries: list[model.Entry], *, facts: WheelFacts) -> wheelmembers.RawSource:
    """A built layer's entries by their wheels' offsets (wheelmembers.wheel_source); a member an
    earlier build checked (the same CRC and size in the central directory) is copied without
    inflating it again."""
    def known(raw: wheelmembers.RawMember) -> wheelmembers.RawMember:
        fact = facts.get(raw.path, {}).get(raw.name)
        if fact is None or not raw.deflated or (fact.crc, fact.size) != (raw.crc, raw.size):
            return raw
        # Spelled out rather than dataclasses.replace: ~3x faster, for ~4,000 members a build.
        return wheelmembers.RawMember(
            path=raw.path, data_offset=raw.data_offset, compressed_size=raw.compressed_size,
            crc=raw.crc, size=raw.size, deflated=raw.deflated, name=raw.name, checked=True,
            elf=fact.elf)

    return wheelmembers.wheel_source(entries, known=known)


def remove_stale_build_temps(build_dir: Path, *, now_ns: int | None = None) -> list[Path]:
    """Remove the `*.zip.tmp` files a build left in `build_dir` when it was killed: those
    whose writer (the pid in the name) is gone, and any not written to for
    STALE_BUILD_TEMP_SECONDS (a live writer keeps its file's mtime fresh). Returns them."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    removed: list[Path] = []
    for temp_path in build_dir.glob(f"*{BUILD_TEMP_SUFFIX}"):
        try:
            modified_ns = temp_path.stat().st_mtime_ns
        except OSError:
            continue
        writer_gone = _writer_gone(temp_path.name)
        too_old = now_ns - modified_ns > STALE_BUILD_TEMP_SECONDS * 1_000_000_000
        if writer_gone or too_old:
            with suppress(OSError):  # best effort: another run may be removing it too
                temp_path.unlink()
                removed.append(temp_path)
    return removed


def _writer_gone(temp_name: str) -> bool:
    """Whether the process named in `.<stem>.<pid>.<random>.zip.tmp` no longer exists (False
    when the name carries no pid, or the answer is unknown)."""
    parts = temp_name.split(".")
    if len(parts) < 6 or not parts[2].isdigit():
        return False
    pid = int(parts[2])
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists but is another user's, or signals are not supported here
        return False
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether process `pid` has ended and only awaits its parent's wait (Linux's /proc; False
    where that cannot be told): a run just killed is one for a moment, and what it wrote is
    as abandoned as if it were gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as status:
            # "pid (comm) state ...": the command may hold spaces and parentheses.
            return status.read().rpartition(b")")[2].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def _changed_while_planning(label: str, *, planned: str, found: str) -> errors.ContentError:
    return errors.ContentError(
        f"{label}: the content changed while planning "
        f"(planned fingerprint {planned[:12]}, found {found[:12]})",
        hint="run the command again once the files are stable",
    )


def _built_artifact(fingerprint: str, zip_path: Path) -> model.Artifact:
    with open(zip_path, "rb") as zip_file:
        digest = common.sha256_of(zip_file)
        code_size = os.fstat(zip_file.fileno()).st_size
    return model.Artifact(
        fingerprint=fingerprint,
        code_sha256=archive.code_sha256(digest),
        content_sha256=digest.hex(),
        code_size=code_size,
        zip_path=os.path.abspath(zip_path),
    )
