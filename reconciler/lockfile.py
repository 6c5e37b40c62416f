"""The lockfile `layers.lock.json`: canonical JSON encode/decode and the atomic write.

Canonical means sorted keys, 2-space indent and a trailing newline, so the same Lock always
gives the same bytes and git diffs stay small. Only `apply` writes it, always atomically
(temp file in the same folder, fsync, os.replace), so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from reconciler import errors, model

LOCKFILE_VERSION = 1
_FIELDS = {
    "fingerprint": str, "content_sha256": str, "code_sha256": str, "code_size": int,
    "version": int, "layer_version_arn": str, "settings_sha256": str,
}


def encode(lock: model.Lock) -> str:
    """The canonical JSON text of `lock`."""
    layers: dict[str, dict[str, dict[str, Any]]] = {}
    for (layer, region), entry in lock.entries.items():
        layers.setdefault(layer, {})[region] = {name: getattr(entry, name) for name in _FIELDS}
    document = {"lockfile_version": LOCKFILE_VERSION, "layers": layers}
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def decode(text: str, *, file: str) -> model.Lock:
    """Parse lockfile text; LockfileError names the file and what is wrong."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.LockfileError(
            f"{file}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}",
            hint="restore it from git, or delete it: the next plan adopts what is published",
        ) from None
    if not isinstance(document, dict) or "lockfile_version" not in document:
        raise errors.LockfileError(f"{file}: not a reconcile lockfile (no lockfile_version)")
    if document["lockfile_version"] != LOCKFILE_VERSION:
        raise errors.LockfileError(
            f"{file}: lockfile_version {document['lockfile_version']!r} is not supported "
            f"(this reconcile reads version {LOCKFILE_VERSION})",
            hint="upgrade reconcile to the version that wrote it",
        )
    entries: dict[tuple[str, str], model.LockEntry] = {}
    layers = document.get("layers", {})
    if not isinstance(layers, dict):
        raise errors.LockfileError(f"{file}: `layers` must be an object")
    for layer, regions in layers.items():
        if not isinstance(regions, dict):
            raise errors.LockfileError(f"{file}: layers.{layer} must be an object")
        for region, raw in regions.items():
            where = f"layers.{layer}.{region}"
            if not isinstance(raw, dict):
                raise errors.LockfileError(f"{file}: {where} must be an object")
            values: dict[str, Any] = {}
            for name, kind in _FIELDS.items():
                value = raw.get(name)
                if not isinstance(value, kind) or isinstance(value, bool):
                    raise errors.LockfileError(
                        f"{file}: {where}.{name} is missing or not a {kind.__name__}"
                    )
                values[name] = value
            entries[(layer, region)] = model.LockEntry(**values)
    return model.Lock(entries=entries)


def read(path: Path) -> model.Lock:
    """The lock at `path`; an absent file is an empty lock."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return model.Lock()
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.LockfileError(f"{path}: cannot read: {exc}") from None
    return decode(text, file=str(path))


def write_atomic(path: Path, lock: model.Lock) -> None:
    """Replace `path` with `lock`'s canonical text, atomically and durably: a temp file beside
    it, fsynced, then renamed over it."""
    text = encode(lock)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                             dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    # The rename is done: the entry is recorded. Syncing the folder makes the rename itself
    # durable across a power cut; a file system that cannot do that loses nothing else.
    try:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError:
        pass


def check_writable(path: Path) -> None:
    """Raise OSError unless a lockfile can be written at `path` (checked before an apply
    publishes anything, so that a publish is never left unrecorded for want of a folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe",
                                             dir=path.parent)
    os.close(descriptor)
    os.unlink(temp_name)
