"""model.Plan <-> the plan document (`plan --format json`, and the body of `plan --out`), and
the stale check of a saved plan. Pure: dicts in, dicts out; the caller reads and writes files.

The document is the contract's plan JSON with more keys, so that it round-trips: every change
carries the Lambda layer name, the lock entry apply records, the remote version it was decided
against (with its settings) and everything about the desired version (fingerprint, digests,
size, settings, grants). The keys of a change's details come from one codec entry per action
(`_CODECS`: encoder and decoder); the keys every change has, from change_document and
_read_change. A saved plan also carries its basis (what it was made against, and its
selection) and, once applied, an `applied` record. What `apply PLANFILE` checks lives in
savedplan. `from_document(to_document(plan)) == plan` for every plan.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
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


def _diff(diff: tuple[model.FieldChange, ...]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for field_change in diff:
        entry: dict[str, Any] = {"from": field_change.before, "to": field_change.after}
        if field_change.added or field_change.removed:
            entry["added"] = list(field_change.added)
            entry["removed"] = list(field_change.removed)
        result[field_change.field] = entry
    return result


def _align(align: model.Alignment | None) -> dict[str, Any]:
    if align is None:
        return {}
    return {"align": {"target": align.target, "fillers": align.fillers,
                      "shortfall": align.shortfall}}


def _download(found: model.RemoteContent | None, *, desired: model.Desired) -> dict[str, Any]:
    if found is None:
        return {}
    return {"download": {
        "version": found.version, "bytes": found.downloaded_bytes,
        "fingerprint": found.fingerprint, "problem": found.problem,
        "same_files": found.fingerprint is not None and found.fingerprint == desired.fingerprint}}


def _encode_publish(details: model.PublishDetails, change: model.Change) -> dict[str, Any]:
    return {
        "diff": _diff(details.diff),
        **({} if details.expected_version is None
           else {"expected_version": details.expected_version}),
        **_align(details.align),
        **({} if details.code is None else {"upload": _code_location(details.code)}),
        **_download(details.download, desired=change.desired),
    }


def _encode_record(details: model.RecordDetails, change: model.Change) -> dict[str, Any]:
    record = details.record
    return {"record": record is not None,
            "record_entry": _lock_entry(record) if record is not None else None,
            **_align(details.align), **_download(details.download, desired=change.desired)}


def _encode_grant(details: model.GrantDetails, change: model.Change) -> dict[str, Any]:
    grants = {"grants": {"add": [[grant.kind, grant.principal] for grant in details.add],
                         "remove": list(details.remove)}} if details.add or details.remove else {}
    return {**grants, **_align(details.align),
            **_download(details.download, desired=change.desired)}


def _encode_version(details: model.DeleteDetails | model.ForgetDetails,
                    change: model.Change) -> dict[str, Any]:
    return {"version": details.version}


def _decode_publish(raw: dict[str, Any], where: str) -> model.PublishDetails:
    return model.PublishDetails(
        expected_version=_optional_int(raw, "expected_version"),
        code=_read_code_location(raw.get("upload"), where=where + "upload."),
        diff=_read_diff(raw), align=_read_align(raw), download=_read_download(raw, where))


def _decode_record(raw: dict[str, Any], where: str) -> model.RecordDetails:
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
    return model.RecordDetails(record=record, download=_read_download(raw, where),
                               align=_read_align(raw))


def _decode_grant(raw: dict[str, Any], where: str) -> model.GrantDetails:
    grants_raw = raw.get("grants")
    if not isinstance(grants_raw, dict):
        grants_raw = {}
    return model.GrantDetails(
        add=tuple(model.Grant(kind=str(kind), principal=str(principal))
                  for kind, principal in grants_raw.get("add", [])),
        remove=tuple(str(sid) for sid in grants_raw.get("remove", [])),
        download=_read_download(raw, where), align=_read_align(raw))


def _decode_delete(raw: dict[str, Any], where: str) -> model.DeleteDetails:
    return model.DeleteDetails(version=_optional_int(raw, "version") or 0)


def _decode_forget(raw: dict[str, Any], where: str) -> model.ForgetDetails:
    return model.ForgetDetails(version=_optional_int(raw, "version") or 0)


def _encode_function(details: model.FunctionDetails, change: model.Change) -> dict[str, Any]:
    return {"kind": model.ChangeKind.FUNCTION.value, "function": change.address.function,
            "function_arn": details.function_arn,
            "layers": {"before": list(details.before), "after": list(details.after)},
            "revision_id": details.revision_id}


def _encode_parameter(details: model.ParameterDetails, change: model.Change) -> dict[str, Any]:
    return {"kind": model.ChangeKind.PARAMETER.value, "parameter": change.address.parameter,
            "value": {"before": details.before, "after": details.after},
            "parameter_version": details.version}


def _strings(raw: Any, key: str, *, where: str) -> tuple[str, ...]:
    value = _require(raw, key, list, where=where)
    if not all(isinstance(item, str) for item in value):
        raise PlanFileError(f"the plan file's `{where}{key}` is not a list of strings")
    return tuple(value)


def _decode_function(raw: dict[str, Any], where: str) -> model.FunctionDetails:
    layers = _require(raw, "layers", dict, where=where)
    revision = raw.get("revision_id")
    return model.FunctionDetails(
        function_arn=_require(raw, "function_arn", str, where=where),
        before=_strings(layers, "before", where=where + "layers."),
        after=_strings(layers, "after", where=where + "layers."),
        revision_id=revision if isinstance(revision, str) else None)


def _decode_parameter(raw: dict[str, Any], where: str) -> model.ParameterDetails:
    value = _require(raw, "value", dict, where=where)
    before = value.get("before")
    return model.ParameterDetails(
        before=before if isinstance(before, str) else None,
        after=_require(value, "after", str, where=where + "value."),
        version=_optional_int(raw, "parameter_version"))


def _read_address(raw: dict[str, Any], *, where: str) -> model.Address:
    """A change's address: its layer and region, and for a consumer change its kind and the
    function or parameter it names (a change without `kind` is a layer's)."""
    layer = _require(raw, "layer", str, where=where)
    region = _require(raw, "region", str, where=where)
    try:
        kind = model.ChangeKind(raw.get("kind", model.ChangeKind.LAYER.value))
    except ValueError:
        raise PlanFileError(f"the plan file's `{where}kind` is unknown",
                            hint="was it made by a newer reconcile?") from None
    if kind is model.ChangeKind.LAYER:
        return model.Address.of_layer(layer, region)
    name = _require(raw, kind.value, str, where=where)
    return model.Address(kind=kind, layer=layer, region=region,
                         function=name if kind is model.ChangeKind.FUNCTION else None,
                         parameter=name if kind is model.ChangeKind.PARAMETER else None)


@dataclass(frozen=True)
class _Codec:
    """One action's details <-> the keys they add to a change's document (beside the keys
    every change has; a key the encoder writes replaces the common default)."""

    encode: Callable[[Any, model.Change], dict[str, Any]]
    decode: Callable[[dict[str, Any], str], model.Details]


_PUBLISH = _Codec(_encode_publish, _decode_publish)
# One entry per action: a new kind or action adds its own (model.DETAILS names its type).
_CODECS: dict[model.Action, _Codec] = {
    model.Action.CREATE: _PUBLISH, model.Action.PUBLISH: _PUBLISH,
    model.Action.NOOP: _Codec(_encode_record, _decode_record),
    model.Action.GRANT: _Codec(_encode_grant, _decode_grant),
    model.Action.DELETE: _Codec(_encode_version, _decode_delete),
    model.Action.FORGET: _Codec(_encode_version, _decode_forget),
    model.Action.UPDATE_FUNCTION: _Codec(_encode_function, _decode_function),
    model.Action.PUT_PARAMETER: _Codec(_encode_parameter, _decode_parameter),
}


# The address kind of each consumer action (every other action's is a layer).
_KIND_OF = {model.Action.UPDATE_FUNCTION: model.ChangeKind.FUNCTION,
            model.Action.PUT_PARAMETER: model.ChangeKind.PARAMETER}


def change_document(change: model.Change) -> dict[str, Any]:
    """One change as in the plan document: the keys every change has, then its action's."""
    document: dict[str, Any] = {
        "layer": change.layer,
        "layer_name": change.layer_name,
        "region": change.region,
        "action": change.action.value,
        "reasons": [reason.value for reason in change.reasons],
        "record": False,
        "record_entry": None,
        "current": _current(change.current),
        "desired": _desired(change.desired),
        "diff": {},
        "notes": list(change.notes),
        "limits": {"direct_upload_bytes": model.MAX_DIRECT_UPLOAD_BYTES,
                   "unzipped_bytes": model.MAX_UNZIPPED_BYTES},
    }
    document.update(_CODECS[change.action].encode(change.details, change))
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


def _read_diff(raw: dict[str, Any]) -> tuple[model.FieldChange, ...]:
    diff_raw = raw.get("diff") or {}
    return tuple(
        model.FieldChange(field=name, before=value.get("from"), after=value.get("to"),
                          added=tuple(value.get("added", ())),
                          removed=tuple(value.get("removed", ())))
        for name, value in sorted(diff_raw.items(), key=lambda item: _field_order(item[0])))


def _read_align(raw: dict[str, Any]) -> model.Alignment | None:
    align_raw = raw.get("align")
    if not isinstance(align_raw, dict):
        return None
    return model.Alignment(target=_optional_int(align_raw, "target"),
                           fillers=_optional_int(align_raw, "fillers") or 0,
                           shortfall=_optional_int(align_raw, "shortfall") or 0)


def _read_download(raw: dict[str, Any], where: str) -> model.RemoteContent | None:
    download_raw = raw.get("download")
    if not isinstance(download_raw, dict):
        return None
    fingerprint, problem = download_raw.get("fingerprint"), download_raw.get("problem")
    return model.RemoteContent(
        version=_require(download_raw, "version", int, where=where + "download."),
        downloaded_bytes=_optional_int(download_raw, "bytes") or 0,
        fingerprint=None if fingerprint is None else str(fingerprint),
        problem=None if problem is None else str(problem))


def _read_change(raw: Any, index: int) -> model.Change:
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
    _refuse_foreign(raw, action=action, where=where)
    details = _CODECS[action].decode(raw, where)
    address = _read_address(raw, where=where)
    if address.kind is not _KIND_OF.get(action, model.ChangeKind.LAYER):
        raise PlanFileError(f"the plan file's `{where}kind` does not fit a {action.value} "
                            "change", hint="make it again with `reconcile plan --out FILE`")
    return model.Change(
        address=address,
        layer_name=str(raw.get("layer_name") or raw["layer"]),
        action=action,
        reasons=reasons,
        current=current,
        desired=desired,
        details=details,
        notes=tuple(str(note) for note in raw.get("notes", ())),
    )


def _refuse_foreign(raw: dict[str, Any], *, action: model.Action, where: str) -> None:
    """A recorded entry or a version number on a change whose action carries none: no
    reconcile writes one, and a saved plan is compared on both (dropping it would make the
    plan agree where it does not)."""
    foreign = [key for key, own in (("record_entry", (model.Action.NOOP,)),
                                    ("version", (model.Action.DELETE, model.Action.FORGET)))
               if action not in own and (isinstance(raw.get(key), dict)
                                         or _optional_int(raw, key))]
    if foreign:
        raise PlanFileError(f"the plan file's `{where}{foreign[0]}` does not belong to a "
                            f"{action.value} change",
                            hint="make it again with `reconcile plan --out FILE`")


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
