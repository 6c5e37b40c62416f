"""A plan or apply session: the workspace, the validated manifest, the state backend, the
stores and the selection, opened in the order that keeps a bad manifest from reaching AWS.

The stores come from the command layer's composition through the `Stores` protocol
(command.compose builds the boto3 ones; a test may give others). This module reads no
option and prints nothing: progress goes to the callable it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from reconciler import errors, gcpolicy, headstart, model, ports, workspace
from reconciler import state as state_package

if TYPE_CHECKING:
    from reconciler import artifacts, planning


@dataclass(frozen=True)
class Remote:
    """The AWS side of a session: the Lambda store, the S3 objects of layer code, the region
    a manifest without `regions` uses, and `prepare`, which makes the clients of the given
    regions up front in the calling thread (the workers then only use them)."""

    layers: ports.LayerStore
    objects: ports.ArtifactStore
    default_region: str | None
    prepare: Callable[[Sequence[str]], None]
    # The functions and SSM parameters that consume the layers (None: not given, so a
    # manifest whose layers have consumers cannot be planned).
    functions: ports.FunctionStore | None = None
    parameters: ports.ParameterStore | None = None


class Stores(Protocol):
    """What a command's composition provides: the workspace, and the state backend and the
    AWS stores, each built only when asked (validate reaches no AWS)."""

    @property
    def space(self) -> workspace.Workspace:
        """The manifest's workspace (its folder, lockfile and cache)."""

    def state_backend(self, parsed: model.Manifest | None) -> ports.StateBackend:
        """The manifest's `state: s3://...`, else the lockfile beside it (or --lockfile)."""

    def remote(self) -> Remote:
        """The Lambda and S3 stores, and the default region."""

    def package_index(self, url: str) -> ports.PackageIndex:
        """The package index at `url` (a simple API root), for layers built from locks;
        called only when a wheel must come from an index."""


@dataclass(frozen=True)
class Session:
    """What plan and apply share: the workspace, manifest, state, stores and selection."""

    space: workspace.Workspace
    parsed: model.Manifest
    state: ports.StateBackend
    store: ports.LayerStore
    objects: ports.ArtifactStore
    code: artifacts.LocalCode
    selection: planning.Selection
    consumers: planning.Consumers | None = None


@dataclass(frozen=True)
class _Early:
    """A head start begun before the command line was parsed in full (`begin_early`)."""

    space: workspace.Workspace
    uploads: bool
    ahead: workspace.ReadAhead
    started: headstart.HeadStart


_early: list[_Early] = []


def begin_early(manifest: Path, lockfile: Path | None, *, uploads: bool) -> None:
    """Begin the head start of a plan (an apply: `uploads`) of `manifest` from its bytes
    before the command's options are parsed in full (reconciler.cli, before typer and the
    command layer are imported, so that the worker need not wait for them). It is only a
    guess at the session to come: `open_session` takes it up if it opens that manifest's
    session with that lockfile and the file still holds the same bytes, and cancels it
    otherwise (an exit before any session cancels it too: headstart). Nothing is begun on
    any problem."""
    space = workspace.Workspace.for_manifest(manifest, lockfile)
    ahead = workspace.read_ahead(space)
    early = ahead.unchecked.early if ahead is not None else None
    if ahead is None or early is None:
        return
    _early.append(_Early(space=space, uploads=uploads, ahead=ahead,
                         started=headstart.HeadStart.begin(
                             space, list(early.layers), state=early.state, checked=False,
                             uploads=uploads)))


def _take_early(space: workspace.Workspace, *, uploads: bool,
                targets: Sequence[str] | None) -> _Early | None:
    """The head start begun early, if it is this session's (cancelled if not)."""
    pending = _early.pop() if _early else None
    if pending is None:
        return None
    if pending.space == space and pending.uploads == uploads and not targets:
        return pending
    pending.started.cancel()
    return None


def open_session(stores: Stores, *, targets: Sequence[str] | None,
                 regions: Sequence[str] | None, uploads: bool = False) -> Session:
    """Validate, then (only then) reach for AWS. `uploads`: an apply's session (the head
    start then also encodes the first zip it writes ahead, for its upload)."""
    space = stores.space
    # The layers' files are walked and hashed in a worker process while this one validates
    # the manifest against its schema, imports botocore and makes its clients
    # (headstart.HeadStart, begun from the manifest's early build, or before, from its bytes:
    # begin_early); with targets, only those layers are identified, in this process.
    begun: list[headstart.HeadStart] = []
    early = _take_early(space, uploads=uploads, targets=targets)

    def head_start(manifest: model.Manifest) -> None:
        if early is not None and manifest is early.ahead.unchecked.early:
            begun.append(early.started)  # (the same bytes: the same early build)
        else:
            if early is not None:  # (stopped before its successor starts: one worker at once)
                early.started.cancel()
            begun.append(headstart.HeadStart.begin(space, list(manifest.layers),
                                                   state=manifest.state, checked=False,
                                                   uploads=uploads))

    try:
        parsed = workspace.load_manifest(space, head_start=None if targets else head_start,
                                         ahead=early.ahead if early is not None else None)
    except BaseException:
        for started in begun:  # a manifest with problems: nothing more is read, nothing written
            started.cancel()
        raise
    finally:
        if early is not None and not any(started is early.started for started in begun):
            early.started.cancel()  # (not this session's; once cancelled, a no-op)
    for started in begun:  # the manifest passed: the worker may build into .reconcile/build/
        started.proceed()
    # Imported once the worker is forked (this module is imported before: the command layer
    # names the manifest through it): the build machinery and the planner are ~45 ms of
    # imports, which the run then makes while the worker identifies.
    from reconciler import artifacts, planning

    code = artifacts.LocalCode(space=space, manifest=parsed,
                               head_start=begun[0] if begun else None,
                               package_index=stores.package_index)
    state = stores.state_backend(parsed)
    remote = stores.remote()
    selection = planning.select(parsed, default_region=remote.default_region,
                                targets=targets or (), regions=regions or ())
    # Every client up front, in this thread: the workers then only use them (see aws).
    remote.prepare(sorted({region for listed in selection.regions.values()
                           for region in listed}))
    code.use_objects(remote.objects)
    consumers = (planning.Consumers(functions=remote.functions, parameters=remote.parameters)
                 if remote.functions is not None and remote.parameters is not None else None)
    # The modules, the manifest and the clients live until the end (gcpolicy).
    gcpolicy.settled()
    return Session(space=space, parsed=parsed, state=state, store=remote.layers,
                   objects=remote.objects, code=code, selection=selection,
                   consumers=consumers)


def make_plan(session: Session, snapshot: ports.Snapshot, *, parallelism: int = 4,
              download: bool = True, progress: Callable[[str], None],
              lock_id: str | None = None) -> model.Plan:
    """The session's plan against `snapshot`, its basis naming the state and manifest.
    `lock_id`: this run holds the state lock (an apply, which deletes the stray fillers it
    finds); else the plan reads who holds it before it plans deleting any."""
    from reconciler import planning  # (imported by open_session already)

    return planning.make_plan(
        parsed=session.parsed, selection=session.selection, snapshot=snapshot,
        state_location=state_name(session), manifest_digest=session.parsed.sha256,
        store=session.store, code=session.code, parallelism=parallelism, progress=progress,
        download=download, state=session.state, lock_id=lock_id,
        manifest_path=manifest_in_repository(session.space.manifest_path),
        owner=manifest_owner(session.space), consumers=session.consumers)


def holder(operation: str, space: workspace.Workspace) -> errors.LockHolder:
    """This process's lock holder record for `operation` on the manifest of `space`."""
    return state_package.new_holder(operation=operation, path=str(space.manifest_path))


def manifest_owner(space: workspace.Workspace) -> str:
    """How a state entry names the manifest that manages it: its path below its own
    repository (the nearest folder with `.git` above it, else its own folder), so that the
    same manifest is the same owner from any working directory."""
    from reconciler.content import common

    manifest = space.manifest_path.resolve()
    return manifest.relative_to(common.repository_root(manifest.parent)).as_posix()


def repository_anchor() -> Path:
    """Where a saved plan's manifest path starts: the repository holding the working
    directory (the nearest folder with `.git` at or above it), else the working directory."""
    from reconciler.content import common  # the rule content paths are checked by

    return common.repository_root(Path.cwd().resolve())


def manifest_in_repository(manifest: Path) -> str:
    """The manifest's path below the repository anchor, as a saved plan names it ("" when
    it lies outside: `apply PLANFILE` then needs -f)."""
    try:
        return manifest.resolve().relative_to(repository_anchor()).as_posix()
    except ValueError:
        return ""


def state_name(session: Session) -> str:
    """How a plan's basis names the state: stable across checkouts (relative to the manifest
    folder when it lies inside it)."""
    location = session.state.location
    if location.startswith("s3://"):
        return location
    try:
        return "lockfile:" + Path(location).resolve().relative_to(
            session.space.base_dir).as_posix()
    except ValueError:
        return "lockfile:" + Path(location).resolve().as_posix()
