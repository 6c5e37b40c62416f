"""The files around a manifest: reading it (size-capped), the bundled schema, where the
lockfile and the `.reconcile/` cache live, and the validation checks that need the disk.

Shell: it reads files and writes one, a cache: `.reconcile/manifest-valid`, the record of
the last manifest that passed the JSON Schema. Paths in the manifest are relative to the
manifest's folder, never to the working directory. (A module of its own: it keeps the
disk out of the pure `manifest` module without making `content` also own manifest I/O.)
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from reconciler import __version__, errors, manifest, model
from reconciler import content as layer_content
from reconciler.content import common

# The zip and lock kinds' checks import their modules where a layer of theirs is met (see
# reconciler.content): a manifest of folders never pays for the lock readers.

CACHE_DIR_NAME = ".reconcile"


@dataclass(frozen=True)
class Workspace:
    """Where one manifest's companions live."""

    manifest_path: Path
    lockfile_path: Path

    @classmethod
    def for_manifest(cls, manifest_path: Path, lockfile_path: Path | None = None) -> Workspace:
        """The default lockfile is `<manifest stem>.lock.json` beside the manifest. A path
        that cannot name a file (`.`, `/`, `..`) is a ReconcilerError, as a folder is when
        the manifest is read."""
        if manifest_path.name in ("", ".."):
            raise errors.ReconcilerError(f"{manifest_path}: is a folder, not a manifest file")
        lock = lockfile_path or manifest_path.with_name(f"{manifest_path.stem}.lock.json")
        return cls(manifest_path=manifest_path, lockfile_path=lock)

    @property
    def base_dir(self) -> Path:
        """The folder relative content paths are resolved against."""
        return self.manifest_path.resolve().parent

    @property
    def cache_dir(self) -> Path:
        """`.reconcile/` beside the manifest: safe to delete at any time."""
        return self.base_dir / CACHE_DIR_NAME

    @property
    def stat_cache_path(self) -> Path:
        """The stat cache of the layers' files, `.reconcile/cache.json`."""
        return self.cache_dir / "cache.json"

    @property
    def validation_record_path(self) -> Path:
        """`.reconcile/manifest-valid`: the key of the last manifest that passed the schema."""
        return self.cache_dir / "manifest-valid"

    @property
    def tool_paths(self) -> frozenset[str]:
        """The real paths never packaged (the `skip` of content.identify/collect and
        layerbuild.build): the `.reconcile/` folder and the lockfile; beside the lockfile,
        content also skips its temp and lock files (`.<lockfile name>.*`)."""
        return frozenset({os.path.realpath(self.cache_dir),
                          os.path.realpath(self.lockfile_path)})


@cache
def _schema_text() -> bytes:
    return resources.files("reconciler").joinpath("schemas/layers.schema.json").read_bytes()


@cache
def load_schema() -> dict[str, Any]:
    """The manifest JSON Schema shipped inside the package."""
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


def _validator_stamp() -> bytes:
    """Name, size and mtime of each module of the installed jsonschema (found, not imported):
    another release, or a changed file, is another validator, which may judge otherwise."""
    spec = importlib.util.find_spec("jsonschema")
    folders = spec.submodule_search_locations if spec is not None else None
    if not folders:
        return b"no jsonschema"
    stamp: list[str] = []
    for folder in folders:
        with os.scandir(folder) as found:
            stamp.extend(f"{item.name}:{item.stat().st_size}:{item.stat().st_mtime_ns}"
                         for item in found if item.name.endswith(".py"))
    return "\n".join(sorted(stamp)).encode()


def _validation_key(data: bytes) -> str:
    """What a manifest's schema verdict depends on: its bytes, the schema, the validator and
    this tool (which turns the bytes into data). Equal keys, equal verdicts."""
    digest = hashlib.sha256(b"reconcile manifest-valid 1\0")
    for part in (__version__.encode(), _schema_text(), _validator_stamp(), data):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def _recorded_valid(workspace: Workspace, key: str) -> bool:
    try:
        return workspace.validation_record_path.read_text("ascii").strip() == key
    except (OSError, UnicodeDecodeError):
        return False


def _record_valid(workspace: Workspace, key: str) -> None:
    """Best effort, as every cache here: a run that cannot write it validates again next time."""
    try:
        workspace.cache_dir.mkdir(exist_ok=True)
        common.write_atomically(workspace.validation_record_path, f"{key}\n".encode())
    except OSError:
        pass


@dataclass(frozen=True)
class ReadAhead:
    """The manifest's bytes read before the command line was parsed in full, and what they
    gave (run.session.begin_early): `load_manifest` takes it up if the file still holds
    them."""

    data: bytes
    unchecked: manifest.Unchecked


def read_ahead(workspace: Workspace) -> ReadAhead | None:
    """The manifest read and parsed ahead; None on any problem (the run's own reading then
    reports it), and for anything but a regular file (a pipe read ahead would be drained
    before the run's own reading)."""
    try:
        if not stat.S_ISREG(os.stat(workspace.manifest_path).st_mode):
            return None
        with workspace.manifest_path.open("rb") as handle:
            data = handle.read(manifest.MAX_MANIFEST_BYTES + 1)
        return ReadAhead(data, manifest.read(data, file=str(workspace.manifest_path)))
    except Exception:  # whatever it is, the run's own reading meets it again and reports
        return None


def load_manifest(workspace: Workspace, *,
                  head_start: Callable[[model.Manifest], None] | None = None,
                  ahead: ReadAhead | None = None) -> model.Manifest:
    """Read, parse and validate the manifest, including the checks of the files it names.

    Raises ManifestError with every problem, or ReconcilerError when the file is unreadable.
    `head_start` is called with the manifest the bytes give if they pass the schema, before
    the schema pass and the checks on disk (see manifest.Unchecked.early); a run that stops on
    a problem found after it must undo what it began. Given what was read `ahead`, the bytes
    are not parsed again if they are the same (the same `early` is then handed on).
    """
    path = workspace.manifest_path
    try:
        with path.open("rb") as handle:
            data = handle.read(manifest.MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise errors.ReconcilerError(
            f"{path}: no such manifest",
            hint="run in the folder that holds layers.yaml, or pass -f PATH",
        ) from None
    except IsADirectoryError:
        raise errors.ReconcilerError(f"{path}: is a folder, not a manifest file") from None
    except OSError as exc:
        raise errors.ReconcilerError(f"{path}: cannot read: {exc.strerror}") from None
    # The schema pass is skipped when the record says these very bytes passed it before
    # (~60 ms of a warm plan: jsonschema's import and the validation); see _validation_key.
    key = _validation_key(data)
    known_valid = _recorded_valid(workspace, key)
    try:
        unchecked = ahead.unchecked if ahead is not None and ahead.data == data else \
            manifest.read(data, file=str(path))
        if head_start is not None and unchecked.early is not None:
            head_start(unchecked.early)
        parsed = manifest.check(unchecked, schema=load_schema(), schema_checked=known_valid)
    except errors.ManifestError as invalid:
        refs = tuple(ref for ref in invalid.content_refs if isinstance(ref, model.ContentRef))
        on_disk = content_problems(refs, file=str(path), base_dir=workspace.base_dir)
        raise errors.ManifestError([*invalid.problems, *on_disk]) from None
    prebuilt = frozenset(spec.key for spec in parsed.layers
                         if spec.content.kind is model.SourceKind.ZIP
                         and not spec.content.normalize)
    problems = content_problems(parsed.content_refs, file=parsed.file,
                                base_dir=workspace.base_dir, prebuilt_layers=prebuilt)
    if problems:
        raise errors.ManifestError(problems)
    if not known_valid:
        _record_valid(workspace, key)
    return parsed


def content_problems(refs: tuple[model.ContentRef, ...], *, file: str, base_dir: Path,
                     prebuilt_layers: frozenset[str] | None = None) -> list[errors.Problem]:
    """Problems with the local files the manifest names: each resolves (symlinks resolved)
    inside the manifest's repository, folders exist, zips are safe zips.

    A zip is checked by its central directory and link members (zipsource.zip_problems); its
    data is verified when it is identified (plan, apply). The unzipped-size limit is checked
    for the layers in `prebuilt_layers` (zips uploaded as they are; None: not known), since a
    zip to normalize may exclude enough to fit.
    """
    problems: list[errors.Problem] = []
    for ref in refs:
        target = base_dir / ref.relpath
        outside = (common.outside_repository(ref.relpath, base_dir=base_dir)
                   or common.inside_git_folder(ref.relpath, base_dir=base_dir))
        if outside is not None:
            message: str | None = outside
        elif ref.kind is model.SourceKind.LOCK:
            message = (f"lock file '{ref.relpath}' does not exist (relative to {base_dir})"
                       if not target.exists() else
                       f"'{ref.relpath}' is not a file" if not target.is_file() else None)
        elif ref.kind is model.SourceKind.PATH:
            if not target.exists():
                message = (f"folder '{ref.relpath}' does not exist (relative to "
                           f"{base_dir})")
            elif not target.is_dir():
                message = f"'{ref.relpath}' is a file, not a folder (use `zip:` for a prebuilt zip)"
            else:
                message = None
        else:
            layer_key = str(ref.field_path[1])
            as_is = prebuilt_layers is not None and layer_key in prebuilt_layers
            message = _zip_problem(target, shown=ref.relpath, as_is=as_is)
        if message:
            problems.append(errors.Problem(file, ref.location.line, ref.location.column,
                                           manifest.field_name(ref.field_path), message))
    return problems


def _zip_problem(zip_path: Path, *, shown: str, as_is: bool) -> str | None:
    """`as_is`: the zip is known to be uploaded as it is (not normalized), so its declared
    size must fit and it may hold no `.git` member (a zip to normalize drops them)."""
    if not zip_path.exists():
        return f"zip '{shown}' does not exist"
    if not zip_path.is_file():
        return f"'{shown}' is not a file"
    try:
        zip_stat = zip_path.stat()
    except OSError:
        return f"'{shown}' cannot be read"
    if common.private_hard_link(zip_stat):
        return common.private_hard_link_problem(f"'{shown}'", links=zip_stat.st_nlink)
    try:
        if not zipfile.is_zipfile(zip_path):
            return f"'{shown}' is not a valid zip file"
    except OSError:
        return f"'{shown}' is not a valid zip file"
    from reconciler.content import zipsource

    unsafe = zipsource.zip_problems(zip_path, check_size=as_is, refuse_git=as_is)
    if unsafe:
        return f"'{shown}' is unsafe: " + "; ".join(unsafe)
    return None


def _lock_problems(spec: model.LayerSpec, *, ref: model.ContentRef, file: str,
                   base_dir: Path) -> list[errors.Problem]:
    """What reading a built layer's lock for its targets finds: every located problem of the
    lock itself (its file and line), and anything else (the target, a package without a
    wheel in a lock's own list) located at the layer's `content.lock`. Nothing is fetched."""
    from reconciler import builds
    from reconciler.content import lock

    label = f"layers.{spec.key}"
    try:
        lock.identify(spec.content, base_dir=base_dir, label=label)
    except builds.LockError as refused:
        return list(refused.problems)
    except errors.ContentError as refused:
        message = refused.message.removeprefix(f"{label}: ")
        if refused.hint:
            message += f"; {refused.hint}"
        return [errors.Problem(file, ref.location.line, ref.location.column,
                               manifest.field_name(ref.field_path), message)]
    except OSError as unreadable:
        return [errors.Problem(file, ref.location.line, ref.location.column,
                               manifest.field_name(ref.field_path),
                               f"cannot read {ref.relpath}: {unreadable.strerror}")]
    return []


def walk_problems(space: Workspace, parsed: model.Manifest) -> list[errors.Problem]:
    """What the walk that `plan` makes of each folder layer and zip to normalize refuses (an
    empty folder, a link or a hard link out, a FIFO, a device, a name a zip cannot hold, the
    size limit...), located at the layer's `content.path` or `content.zip`. The same walk as
    plan's (content.collect, with the same skipped paths), without reading any file's bytes:
    for `validate`, which makes no AWS call and so runs no plan. A zip used as it is was
    checked by load_manifest; its data is verified at plan, once per SHA-256."""
    refs = {ref.field_path[1]: ref for ref in parsed.content_refs if len(ref.field_path) == 4}
    problems: list[errors.Problem] = []
    for spec in parsed.layers:
        ref = refs.get(spec.key)
        if ref is not None and spec.content.kind is model.SourceKind.LOCK:
            problems += _lock_problems(spec, ref=ref, file=parsed.file, base_dir=space.base_dir)
            continue
        walked = spec.content.kind is model.SourceKind.PATH or (
            spec.content.kind is model.SourceKind.ZIP and spec.content.normalize)
        if ref is None or not walked:
            continue
        label = f"layers.{spec.key}"
        try:
            layer_content.collect(spec.content, base_dir=space.base_dir, label=label,
                                  skip=space.tool_paths)
        except errors.ContentError as refused:
            message = refused.message.removeprefix(f"{label}: ")
            if refused.hint:
                message += f"; {refused.hint}"
            problems.append(errors.Problem(parsed.file, ref.location.line, ref.location.column,
                                           manifest.field_name(ref.field_path), message))
    return problems
