"""The recorded state's canonical bytes: `layers.lock.json` encode/decode and its revision.

Canonical means sorted keys, 2-space indent and a trailing newline, so the same Lock always
gives the same bytes, git diffs stay small, and the local lockfile and the S3 state object
hold the same bytes. Core: works on strings and bytes only; where the bytes are kept (and
how they are written safely) belongs to the state backends.
"""

from __future__ import annotations

import hashlib
import json
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
    except ValueError:  # not a JSONDecodeError: an integer of over 4,300 digits
        raise errors.LockfileError(
            f"{file}: not a reconcile lockfile (it holds a number of thousands of digits)",
            hint="restore it from git, or delete it: the next plan adopts what is published",
        ) from None
    except RecursionError:
        # json's decoder recurses once per nested array or object; a lockfile is four levels
        # deep, so this is never one, whatever else it is.
        raise errors.LockfileError(
            f"{file}: not a reconcile lockfile (its JSON nests deeper than Python can read)",
            hint="restore it from git, or delete it: the next plan adopts what is published",
        ) from None
    if not isinstance(document, dict) or "lockfile_version" not in document:
        raise errors.LockfileError(f"{file}: not a reconcile lockfile (no lockfile_version)")
    version = document["lockfile_version"]
    if type(version) is not int or version != LOCKFILE_VERSION:  # `true` == 1 in Python
        raise errors.LockfileError(
            f"{file}: lockfile_version {_shown(version)} is not supported "
            f"(this reconcile reads version {LOCKFILE_VERSION})",
            hint="upgrade reconcile to the version that wrote it",
        )
    entries: dict[tuple[str, str], model.LockEntry] = {}
    layers = document.get("layers", {})
    if not isinstance(layers, dict):
        raise errors.LockfileError(f"{file}: `layers` must be an object")
    for layer, regions in layers.items():
        _writable(layer, file=file, where=f"the layer name {_shown(layer)}")
        if not isinstance(regions, dict):
            raise errors.LockfileError(f"{file}: layers.{_shown(layer)} must be an object")
        for region, raw in regions.items():
            where = f"layers.{_shown(layer)}.{_shown(region)}"
            _writable(region, file=file, where=where)
            if not isinstance(raw, dict):
                raise errors.LockfileError(f"{file}: {where} must be an object")
            values: dict[str, Any] = {}
            for name, kind in _FIELDS.items():
                value = raw.get(name)
                if not isinstance(value, kind) or isinstance(value, bool):
                    raise errors.LockfileError(
                        f"{file}: {where}.{name} is missing or not a {kind.__name__}"
                    )
                if isinstance(value, str):
                    _writable(value, file=file, where=f"{where}.{name}")
                values[name] = value
            entries[(layer, region)] = model.LockEntry(**values)
    return model.Lock(entries=entries)


def _shown(value: object) -> str:
    """`value` as a message quotes it: a name as is, anything else by its repr, and neither
    longer than a line (a lockfile is not ours to print whole)."""
    if isinstance(value, (list, dict)):
        return "a list" if isinstance(value, list) else "an object"
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= 80 else text[:77] + "..."


def _writable(text: str, *, file: str, where: str) -> None:
    """Refuse a string that cannot be written back as UTF-8 (JSON's `\\ud800` decodes to a lone
    surrogate): the apply that rewrites the lockfile would fail after it published."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise errors.LockfileError(
            f"{file}: {where} holds a lone surrogate (\\ud800-\\udfff), which is not text",
            hint="restore it from git, or delete it: the next plan adopts what is published",
        ) from None


def revision_of(data: bytes) -> str:
    """The revision of a state stored as `data`: its hex SHA-256."""
    return hashlib.sha256(data).hexdigest()
