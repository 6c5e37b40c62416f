"""The recorded state's canonical bytes: `layers.lock.json` encode/decode and its revision.

Canonical means sorted keys, 2-space indent and a trailing newline, so the same Lock always
gives the same bytes, git diffs stay small, and the local lockfile and the S3 state object
hold the same bytes. Core: works on strings and bytes only; where the bytes are kept (and
how they are written safely) belongs to the state backends.

Lineage and serial (after Terraform's state): a state gets a `lineage`, a UUID, on its first
write and keeps it; its `serial` is raised by every write (`next_write`, which every writer
calls on the Lock it is about to write). A lockfile older than them reads as lineage unknown
("") and serial 0, and gets both on its next write; until then its bytes are left alone, so
that an apply that changes nothing rewrites nothing. `push_refusal` is the rule `state push`
follows. An entry's owner (`manifest`) is written only when known, for the same reason, and
so are a built layer's `inputs_sha256` and `packages` (a folder or zip layer's entry keeps
its bytes).
"""

from __future__ import annotations

import hashlib
import json
import uuid
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
        written = {name: getattr(entry, name) for name in _FIELDS}
        if entry.manifest:
            written["manifest"] = entry.manifest
        if entry.inputs_sha256:
            written["inputs_sha256"] = entry.inputs_sha256
            written["packages"] = [[name, version] for name, version in entry.packages]
        layers.setdefault(layer, {})[region] = written
    document: dict[str, Any] = {"lockfile_version": LOCKFILE_VERSION, "layers": layers}
    if lock.lineage:
        document["lineage"] = lock.lineage
        document["serial"] = lock.serial
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def next_write(lock: model.Lock) -> model.Lock:
    """`lock` as its next write stores it: the serial raised by one, and a new lineage when
    it has none yet (its first write, or the first since lineages were introduced)."""
    return model.Lock(entries=lock.entries, lineage=lock.lineage or str(uuid.uuid4()),
                      serial=lock.serial + 1)


def push_refusal(pushed: model.Lock, *, current: model.Lock, file: str,
                 location: str) -> str | None:
    """Why `state push` must not replace `current` (at `location`) with `pushed` (read from
    `file`) without --force: another lineage (another state altogether), or a lower serial
    (an older copy of this one: pushing it would undo the writes since). None: it may. An
    unknown lineage on either side (a lockfile older than lineages) is no conflict."""
    if pushed.lineage and current.lineage and pushed.lineage != current.lineage:
        return (f"{file} is of another state (lineage {pushed.lineage}) than {location} "
                f"(lineage {current.lineage})")
    if pushed.serial < current.serial:
        return (f"{file} is older (serial {pushed.serial}) than {location} "
                f"(serial {current.serial}): pushing it would undo the writes since")
    return None


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
    lineage, serial = document.get("lineage", ""), document.get("serial", 0)
    if not isinstance(lineage, str):
        raise errors.LockfileError(f"{file}: `lineage` must be a string")
    _writable(lineage, file=file, where="lineage")
    if type(serial) is not int or serial < 0:
        raise errors.LockfileError(f"{file}: `serial` must be a whole number, 0 or more")
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
            owner = raw.get("manifest", "")
            if not isinstance(owner, str):
                raise errors.LockfileError(f"{file}: {where}.manifest is not a str")
            _writable(owner, file=file, where=f"{where}.manifest")
            entries[(layer, region)] = model.LockEntry(
                **values, manifest=owner, **_build_fields(raw, file=file, where=where))
    return model.Lock(entries=entries, lineage=lineage, serial=serial)


def _build_fields(raw: dict[str, Any], *, file: str, where: str) -> dict[str, Any]:
    """A built layer's `inputs_sha256` (hex) and `packages` ([name, version] pairs), checked;
    none for an entry of another kind."""
    if "inputs_sha256" not in raw and "packages" not in raw:
        return {}
    digest, packages = raw.get("inputs_sha256"), raw.get("packages")
    if not isinstance(digest, str) or len(digest) != 64 or any(
            char not in "0123456789abcdef" for char in digest):
        raise errors.LockfileError(f"{file}: {where}.inputs_sha256 is not a hex SHA-256")
    if not isinstance(packages, list) or not all(
            isinstance(pair, list) and len(pair) == 2
            and all(isinstance(part, str) for part in pair) for pair in packages):
        raise errors.LockfileError(f"{file}: {where}.packages is not a list of "
                                   "[name, version] pairs")
    for name, version in packages:
        _writable(name, file=file, where=f"{where}.packages")
        _writable(version, file=file, where=f"{where}.packages")
    return {"inputs_sha256": digest,
            "packages": tuple((name, version) for name, version in packages)}


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
