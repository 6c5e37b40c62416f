"""In-memory FunctionStore and ParameterStore for the tests that are not about AWS itself: they
behave as Lambda's functions and SSM's parameters do for a layer's consumers (the contract
suites hold them to it) and record every call, so that a test can assert which calls a plan
or an apply made. What AWS does only under load (an update still in progress, a failed one, a
lost reply, throttling) is scripted, one fault per call."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from reconciler import errors, model, ports

ACCOUNT = "123456789012"


def function_arn(region: str, name: str) -> str:
    """The ARN of the function `name` of the test account in `region`."""
    return f"arn:aws:lambda:{region}:{ACCOUNT}:function:{name}"


@dataclass
class _Function:
    layers: tuple[str, ...]
    revision_id: str | None  # None: an endpoint that reports none (as moto)
    tags: dict[str, str]
    status: model.UpdateStatus = model.UpdateStatus.SUCCESSFUL
    reason: str = ""


@dataclass(frozen=True)
class UpdateFault:
    """What one update of a function does instead of succeeding: raise `error`, after making
    the change when `lands` (a reply lost after Lambda did the work)."""

    error: errors.AwsError
    lands: bool = False


@dataclass
class FakeFunctionStore(ports.FunctionStore):
    """Functions per (region, name). `add` makes one. After an update a function's
    LastUpdateStatus is the next of `settles[(region, name)]` at each read (InProgress, then
    Successful or Failed), Successful when none is scripted; `update_faults` scripts the next
    updates of a function name. `calls` records (operation, region, name)."""

    functions: dict[tuple[str, str], _Function] = field(default_factory=dict)
    settles: dict[tuple[str, str], list[tuple[model.UpdateStatus, str]]] = field(
        default_factory=dict)
    update_faults: dict[str, list[UpdateFault]] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    _revisions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add(self, *, region: str, name: str, layers: Sequence[str] = (),
            tags: dict[str, str] | None = None) -> None:
        """A function of `name` in `region` using `layers`, carrying `tags`."""
        self.functions[(region, name)] = _Function(layers=tuple(layers),
                                                   revision_id=self._next_revision(),
                                                   tags=dict(tags or {}))

    def _next_revision(self) -> str:
        return f"rev-{next(self._revisions)}"

    def _config(self, region: str, name: str, found: _Function) -> model.FunctionConfig:
        return model.FunctionConfig(name=name, arn=function_arn(region, name),
                                    layers=found.layers, revision_id=found.revision_id,
                                    update_status=found.status, update_reason=found.reason,
                                    tags=tuple(sorted(found.tags.items())))

    def _settle(self, region: str, name: str, found: _Function) -> None:
        """A read moves a scripted update on by one step."""
        script = self.settles.get((region, name))
        if script and found.status is model.UpdateStatus.IN_PROGRESS:
            found.status, found.reason = script.pop(0)

    def function(self, *, region: str, name: str) -> model.FunctionConfig | None:
        """The function's configuration and tags, or None."""
        self.calls.append(("function", region, name))
        found = self.functions.get((region, name))
        if found is None:
            return None
        self._settle(region, name, found)
        return self._config(region, name, found)

    def functions_tagged(self, *, region: str, tags: Sequence[tuple[str, str]]) -> list[str]:
        """The names of the region's functions carrying every one of `tags`, sorted."""
        self.calls.append(("functions_tagged", region, ""))
        if not tags:
            return []
        return sorted(name for (where, name), found in self.functions.items()
                      if where == region and all(found.tags.get(key) == value
                                                 for key, value in tags))

    def update_layers(self, *, region: str, name: str, layers: Sequence[str],
                      revision_id: str | None) -> str | None:
        """Set the function's layers, refused when stale or busy; scripted faults first."""
        self.calls.append(("update_layers", region, name))
        found = self.functions.get((region, name))
        if found is None:
            raise errors.AwsError(f"UpdateFunctionConfiguration for function '{name}' in "
                                  f"{region}: not found", aws_code="ResourceNotFoundException")
        if revision_id is not None and revision_id != found.revision_id:
            raise errors.RevisionStale(f"function '{name}' in {region} changed since it was "
                                       "read", aws_code="PreconditionFailedException")
        if found.status is model.UpdateStatus.IN_PROGRESS:
            raise errors.FunctionBusy(f"an update of function '{name}' in {region} is in "
                                      "progress", aws_code="ResourceConflictException")
        faults = self.update_faults.get(name)
        fault = faults.pop(0) if faults else None
        if fault is None or fault.lands:
            found.layers = tuple(layers)
            found.revision_id = self._next_revision()
            scripted = self.settles.get((region, name))
            found.status = (model.UpdateStatus.IN_PROGRESS if scripted
                            else model.UpdateStatus.SUCCESSFUL)
            found.reason = ""
        if fault is not None:
            raise fault.error
        return found.revision_id

    def wait_updated(self, *, region: str, name: str, timeout: float) -> None:
        """Read until the status settles; still in progress when the script runs out is a
        timeout (the fake has no clock: the script is its time)."""
        self.calls.append(("wait_updated", region, name))
        while True:
            found = self.functions.get((region, name))
            if found is None:
                raise errors.AwsError(f"function '{name}' in {region} is gone while its "
                                      "update was awaited")
            self._settle(region, name, found)
            if found.status is model.UpdateStatus.SUCCESSFUL:
                return
            if found.status is model.UpdateStatus.FAILED:
                raise errors.FunctionUpdateFailed(
                    f"the update of function '{name}' in {region} failed: {found.reason}",
                    reason=found.reason)
            if not self.settles.get((region, name)):
                raise errors.FunctionUpdateTimeout(
                    f"the update of function '{name}' in {region} was still in progress "
                    f"after {timeout:g} s")


@dataclass
class FakeParameterStore(ports.ParameterStore):
    """String parameters per (region, name), versions counting up from 1. `put_faults`
    scripts the next writes of a name: each raises its error, after writing when `lands`.
    `calls` records (operation, region, name)."""

    parameters: dict[tuple[str, str], model.ParameterValue] = field(default_factory=dict)
    put_faults: dict[str, list[UpdateFault]] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)

    def get(self, *, region: str, name: str) -> model.ParameterValue | None:
        """The parameter, or None."""
        self.calls.append(("get", region, name))
        return self.parameters.get((region, name))

    def put(self, *, region: str, name: str, value: str, overwrite: bool) -> int:
        """Write a String parameter; an existing one only with `overwrite`."""
        self.calls.append(("put", region, name))
        current = self.parameters.get((region, name))
        if current is not None and not overwrite:
            raise errors.AwsError(f"PutParameter for SSM parameter '{name}' in {region} "
                                  "failed (ParameterAlreadyExists)",
                                  aws_code="ParameterAlreadyExists")
        faults = self.put_faults.get(name)
        fault = faults.pop(0) if faults else None
        version = (current.version if current else 0) + 1
        if fault is None or fault.lands:
            self.parameters[(region, name)] = model.ParameterValue(value=value,
                                                                   version=version)
        if fault is not None:
            raise fault.error
        return version
