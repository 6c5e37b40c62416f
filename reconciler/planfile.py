"""model.Plan <-> the plan document (`plan --format json`, and the body of `plan --out`), and
the stale check of a saved plan. Pure: dicts in, dicts out; the caller reads and writes files.

The document is the contract's plan JSON with more keys, so that it round-trips: every change
carries the Lambda layer name, the lock entry apply records, the remote version it was decided
against (with its settings) and everything about the desired version (fingerprint, digests,
size, settings, grants). A saved plan also carries its basis (what it was made against, and its
selection) and, once applied, an `applied` record. What `apply PLANFILE` checks lives in
savedplan. `from_document(to_document(plan)) == plan` for every plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler import errors, model

FORMAT_VERSION = 1
_SETTINGS_ORDER = ("code_sha256", *model.Settings().as_dict())


PlanFileError = errors.PlanFileError


def _settings(values: Mapping[str, Any]) -> model.Settings:
    return model.Settings.normalised(
        description=values.get("description"),
        compatible_runtimes=values.get("compatible_runtimes"),
        compatible_architectures=values.get("compatible_architectures"),
        license_info=values.get("license_info"),
    )


def _lock_entry(entry: model.LockEntry) -> dict[str, Any]:
    return {
        "fingerprint": entry.fingerprint, "content_sha256": entry.content_sha256,
        "code_sha256": entry.code_sha256, "code_size": entry.code_size,
        "version": entry.version, "layer_version_arn": entry.layer_version_arn,
        "settings_sha256": entry.settings_sha256,
        **({"inputs_sha256": entry.inputs_sha256,
            "packages": [[name, version] for name, version in entry.packages]}
           if entry.inputs_sha256 else {}),
    }


def _build(build: model.BuildInfo) -> dict[str, Any]:
    """A built layer's summary: what the plan shows of the build."""
    return {
        "target": build.target,
        "inputs_sha256": build.inputs_sha256,
        "packages": [[name, version] for name, version in build.packages],
        "left_out": [[name, why] for name, why in build.left_out],
        "sizes": [[name, size] for name, size in build.sizes],
        "recorded": (None if build.recorded is None
                     else [[name, version] for name, version in build.recorded]),
    }


def _read_build(raw: Any, *, where: str) -> model.BuildInfo | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise PlanFileError(f"the plan file's `{where}` is not an object")

    def pairs(key: str, kind: type) -> tuple[tuple[str, Any], ...]:
        value = raw.get(key) or []
        if not isinstance(value, list) or not all(
                isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)
                and isinstance(pair[1], kind) for pair in value):
            raise PlanFileError(f"the plan file's `{where}.{key}` is not a list of pairs")
        return tuple((pair[0], pair[1]) for pair in value)

    recorded = None if raw.get("recorded") is None else pairs("recorded", str)
    return model.BuildInfo(
        target=str(_require(raw, "target", str, where=where + ".")),
        inputs_sha256=str(_require(raw, "inputs_sha256", str, where=where + ".")),
        packages=pairs("packages", str), left_out=pairs("left_out", str),
        sizes=pairs("sizes", int), recorded=recorded)


def _current(version: model.RemoteVersion | None) -> dict[str, Any] | None:
    if version is None:
        return None
    return {
        "version": version.version,
        "layer_version_arn": version.layer_version_arn,
        "code_sha256": version.code_sha256,
        "code_size": version.code_size,
        **version.settings.as_dict(),
    }


def _desired(desired: model.Desired) -> dict[str, Any]:
    return {
        "code_sha256": desired.code_sha256,
        "code_size": desired.code_size,
        "content_sha256": desired.content_sha256,
        "fingerprint": desired.fingerprint,
        "source": desired.source.value,
        "unzipped_size": desired.unzipped_size,
        "grants": [[grant.kind, grant.principal] for grant in desired.grants],
        **desired.settings.as_dict(),
        **({"build": _build(desired.build)} if desired.build is not None else {}),
    }


def _diff(change: model.LayerChange) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for field_change in change.diff:
        entry: dict[str, Any] = {"from": field_change.before, "to": field_change.after}
        if field_change.added or field_change.removed:
            entry["added"] = list(field_change.added)
            entry["removed"] = list(field_change.removed)
        result[field_change.field] = entry
    return result


def change_document(change: model.LayerChange) -> dict[str, Any]:
    """One change as in the plan document."""
    document: dict[str, Any] = {
        "layer": change.layer,
        "layer_name": change.layer_name,
        "region": change.region,
        "action": change.action.value,
        "reasons": [reason.value for reason in change.reasons],
        "record": change.record is not None,
        "record_entry": _lock_entry(change.record) if change.record is not None else None,
        "current": _current(change.current),
        "desired": _desired(change.desired),
        "diff": _diff(change),
        "notes": list(change.notes),
        "limits": {"direct_upload_bytes": model.MAX_DIRECT_UPLOAD_BYTES,
                   "unzipped_bytes": model.MAX_UNZIPPED_BYTES},
    }
    if change.expected_version is not None:
        document["expected_version"] = change.expected_version
    if change.version is not None:
        document["version"] = change.version
    if change.grants_add or change.grants_remove:
        document["grants"] = {
            "add": [[grant.kind, grant.principal] for grant in change.grants_add],
            "remove": list(change.grants_remove)}
    if change.align_target is not None or change.fillers or change.shortfall:
        document["align"] = {"target": change.align_target, "fillers": change.fillers,
                             "shortfall": change.shortfall}
    if change.code is not None:
        document["upload"] = _code_location(change.code)
    if change.download is not None:
        document["download"] = {
            "version": change.download.version, "bytes": change.download.downloaded_bytes,
            "fingerprint": change.download.fingerprint, "problem": change.download.problem,
            "same_files": (change.download.fingerprint is not None
                           and change.download.fingerprint == change.desired.fingerprint)}
    return document


def _code_location(code: model.CodeLocation) -> dict[str, Any]:
    s3 = code.s3
    return {"route": code.route.value,
            "s3": None if s3 is None else {"bucket": s3.bucket, "key": s3.key,
                                           "version": s3.version}}


def _read_code_location(raw: Any, *, where: str) -> model.CodeLocation | None:
    if raw is None:
        return None
    try:
        route = model.UploadRoute(_require(raw, "route", str, where=where))
    except ValueError as exc:
        raise PlanFileError(f"the plan file's `{where}route` is unknown: {exc}",
                            hint="was it made by a newer reconcile?") from None
    s3_raw = raw.get("s3")
    s3 = None
    if s3_raw is not None:
        version = s3_raw.get("version") if isinstance(s3_raw, dict) else None
        s3 = model.S3Object(bucket=_require(s3_raw, "bucket", str, where=where + "s3."),
                            key=_require(s3_raw, "key", str, where=where + "s3."),
                            version=version if isinstance(version, str) else None)
    return model.CodeLocation(route=route, s3=s3)


def _basis(basis: model.PlanBasis) -> dict[str, Any]:
    return {
        "plan_id": basis.plan_id,
        "created": basis.created,
        "manifest_sha256": basis.manifest_sha256,
        "state_location": basis.state_location,
        "state_revision": basis.state_revision,
        "fingerprints": dict(basis.fingerprints),
        "targets": list(basis.targets),
        "regions": list(basis.regions),
        "tool_version": basis.tool_version,
        "packaging_format": basis.packaging_format,
        "manifest": basis.manifest,
        "download": basis.download,
    }


def to_document(plan: model.Plan) -> dict[str, Any]:
    """The plan document: the contract's keys, plus what a saved plan needs."""
    document: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "changes": [change_document(change) for change in plan.changes],
        "summary": plan.summary(),
        "errors": [{"layer": error.layer, "message": error.message, "hint": error.hint}
                   for error in plan.errors],
        "warnings": list(plan.warnings),
    }
    if plan.basis is not None:
        document["basis"] = _basis(plan.basis)
    return document


def _require(mapping: Any, key: str, kind: type | tuple[type, ...], *, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise PlanFileError(f"the plan file has no `{where}{key}`",
                            hint="make it again with `reconcile plan --out FILE`")
    value = mapping[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise PlanFileError(f"the plan file's `{where}{key}` has the wrong type",
                            hint="make it again with `reconcile plan --out FILE`")
    return value


def _optional_int(mapping: Mapping[str, Any], key: str) -> int | None:
    value = mapping.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _read_change(raw: Any, index: int) -> model.LayerChange:
    where = f"changes[{index}]."
    try:
        action = model.Action(_require(raw, "action", str, where=where))
        reasons = tuple(model.Reason(reason)
                        for reason in _require(raw, "reasons", list, where=where))
    except ValueError as exc:
        raise PlanFileError(f"the plan file's `{where}` has an unknown value: {exc}",
                            hint="was it made by a newer reconcile?") from None
    desired_raw = _require(raw, "desired", dict, where=where)
    try:
        source = model.SourceKind(desired_raw.get("source", "path"))
    except ValueError:
        raise PlanFileError(f"the plan file's `{where}desired.source` is unknown") from None
    desired = model.Desired(
        settings=_settings(desired_raw),
        fingerprint=str(desired_raw.get("fingerprint") or ""),
        code_sha256=desired_raw.get("code_sha256"),
        content_sha256=desired_raw.get("content_sha256"),
        code_size=_optional_int(desired_raw, "code_size"),
        grants=tuple(model.Grant(kind=str(kind), principal=str(principal))
                     for kind, principal in desired_raw.get("grants", [])),
        source=source,
        unzipped_size=_optional_int(desired_raw, "unzipped_size"),
        build=_read_build(desired_raw.get("build"), where=f"{where}desired.build"),
    )
    current_raw = raw.get("current")
    current = None
    if isinstance(current_raw, dict):
        current = model.RemoteVersion(
            version=_require(current_raw, "version", int, where=where + "current."),
            layer_version_arn=str(current_raw.get("layer_version_arn", "")),
            settings=_settings(current_raw),
            code_sha256=current_raw.get("code_sha256"),
            code_size=_optional_int(current_raw, "code_size"),
        )
    record_raw = raw.get("record_entry")
    record = None
    if isinstance(record_raw, dict):
        try:
            record = model.LockEntry(**{name: record_raw[name] for name in (
                "fingerprint", "content_sha256", "code_sha256", "code_size", "version",
                "layer_version_arn", "settings_sha256")},
                inputs_sha256=str(record_raw.get("inputs_sha256") or ""),
                packages=tuple((str(name), str(version))
                               for name, version in record_raw.get("packages") or ()))
        except KeyError as exc:
            raise PlanFileError(f"the plan file's `{where}record_entry` lacks {exc}") from None
    diff_raw = raw.get("diff") or {}
    diff = tuple(
        model.FieldChange(field=name, before=value.get("from"), after=value.get("to"),
                          added=tuple(value.get("added", ())),
                          removed=tuple(value.get("removed", ())))
        for name, value in sorted(diff_raw.items(), key=lambda item: _field_order(item[0]))
    )
    grants_raw = raw.get("grants") if isinstance(raw.get("grants"), dict) else {}
    align_raw = raw.get("align") if isinstance(raw.get("align"), dict) else {}
    download_raw = raw.get("download")
    download = None
    if isinstance(download_raw, dict):
        fingerprint, problem = download_raw.get("fingerprint"), download_raw.get("problem")
        download = model.RemoteContent(
            version=_require(download_raw, "version", int, where=where + "download."),
            downloaded_bytes=_optional_int(download_raw, "bytes") or 0,
            fingerprint=None if fingerprint is None else str(fingerprint),
            problem=None if problem is None else str(problem))
    return model.LayerChange(
        layer=_require(raw, "layer", str, where=where),
        layer_name=str(raw.get("layer_name") or raw["layer"]),
        region=_require(raw, "region", str, where=where),
        action=action,
        reasons=reasons,
        current=current,
        desired=desired,
        diff=diff,
        notes=tuple(str(note) for note in raw.get("notes", ())),
        record=record,
        expected_version=_optional_int(raw, "expected_version"),
        version=_optional_int(raw, "version"),
        grants_add=tuple(model.Grant(kind=str(kind), principal=str(principal))
                         for kind, principal in grants_raw.get("add", [])),
        grants_remove=tuple(str(sid) for sid in grants_raw.get("remove", [])),
        align_target=_optional_int(align_raw, "target"),
        fillers=_optional_int(align_raw, "fillers") or 0,
        shortfall=_optional_int(align_raw, "shortfall") or 0,
        code=_read_code_location(raw.get("upload"), where=where + "upload."),
        download=download,
    )


def _field_order(name: str) -> int:
    return _SETTINGS_ORDER.index(name) if name in _SETTINGS_ORDER else len(_SETTINGS_ORDER)


def _read_basis(raw: Any) -> model.PlanBasis:
    where = "basis."
    fingerprints = _require(raw, "fingerprints", dict, where=where)
    return model.PlanBasis(
        plan_id=_require(raw, "plan_id", str, where=where),
        created=_require(raw, "created", str, where=where),
        manifest_sha256=_require(raw, "manifest_sha256", str, where=where),
        state_location=_require(raw, "state_location", str, where=where),
        state_revision=_require(raw, "state_revision", str, where=where),
        fingerprints=tuple(sorted((str(k), str(v)) for k, v in fingerprints.items())),
        targets=tuple(_require(raw, "targets", list, where=where)),
        regions=tuple(_require(raw, "regions", list, where=where)),
        tool_version=_require(raw, "tool_version", str, where=where),
        packaging_format=_require(raw, "packaging_format", int, where=where),
        manifest=str(raw.get("manifest") or ""),
        download=raw.get("download") is not False,
    )


def from_document(document: Any) -> model.Plan:
    """The Plan a document describes; PlanFileError when it is not one."""
    if not isinstance(document, dict) or "changes" not in document:
        raise PlanFileError("the file is not a reconcile plan (no `changes`)",
                            hint="make one with `reconcile plan --out FILE`")
    if document.get("format_version") != FORMAT_VERSION:
        raise PlanFileError(
            f"plan format_version {document.get('format_version')!r} is not supported "
            f"(this reconcile reads version {FORMAT_VERSION})")
    changes = tuple(_read_change(raw, index)
                    for index, raw in enumerate(_require(document, "changes", list, where="")))
    plan_errors = tuple(
        model.LayerError(layer=str(raw.get("layer")), message=str(raw.get("message")),
                         hint=raw.get("hint"))
        for raw in document.get("errors", ()) if isinstance(raw, dict))
    basis = _read_basis(document["basis"]) if "basis" in document else None
    warnings = tuple(str(warning) for warning in document.get("warnings", ()))
    return model.Plan(changes=changes, errors=plan_errors, basis=basis, warnings=warnings)
