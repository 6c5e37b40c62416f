"""The commands around the layers: force-unlock, state pull/push, schema, comment and the
sandbox's start/status/stop. Each parses its options, asks the composition for its parts,
calls the package that does the work (state, statefile, github, sandbox) and prints the
result through the views.

Wiring only; `app` registers these functions as commands.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from reconciler import errors, model, planfile, ports, render, statefile
from reconciler import state as state_package
from reconciler.command import lazy, views
from reconciler.command.options import (
    AttemptsOption,
    EndpointOption,
    LockfileOption,
    LockTimeoutOption,
    ManifestOption,
    ProfileOption,
    TimeoutOption,
    YesOption,
)
from reconciler.command.signals import StopOnSignal

if TYPE_CHECKING:
    from reconciler import github, sandbox, workspace
    from reconciler.command import compose
    from reconciler.run import savedplans
    from reconciler.run import session as run_session
else:
    compose = lazy.module("reconciler.command.compose")
    github = lazy.module("reconciler.github")  # urllib.request: only its commands need it
    run_session = lazy.module("reconciler.run.session")
    sandbox = lazy.module("reconciler.sandbox")  # urllib.request: only its commands need it
    savedplans = lazy.module("reconciler.run.savedplans")
    workspace = lazy.module("reconciler.workspace")

EXIT_ERROR = 1


def force_unlock(
    lock_id: Annotated[str, typer.Argument(metavar="LOCK_ID",
                                           help="The lock id a refusal printed.")],
    manifest: ManifestOption = Path("layers.yaml"),
    lockfile_path: LockfileOption = None,
    yes: YesOption = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Release it even when its holder is alive on this host.")] = False,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    max_attempts: AttemptsOption = None,
    timeout: TimeoutOption = None,
) -> None:
    """Release a state lock left by a run that is gone (killed, crashed runner). Only the
    lock with that id is released; make sure its run is really gone. A lock whose holder is
    alive on this host is refused unless --force; one held from another host is shown with
    its age before the question.

    Example:

      reconcile force-unlock 6f1c2d3e-...
    """
    stores = compose.compose(compose.Options(
        manifest=manifest, lockfile=lockfile_path, profile=profile, endpoint_url=endpoint_url,
        max_attempts=max_attempts, timeout=timeout))
    backend = stores.state_backend(workspace.load_manifest(stores.space))
    question = state_package.force_unlock_question(
        backend.current_lock(), lock_id=lock_id, location=backend.location, force=force)
    views.ask(question, yes=yes, refusal="not releasing the lock")
    holder = backend.force_unlock(lock_id)
    views.line(f"Released the lock {lock_id} on {backend.location} (held by "
               f"{state_package.describe_holder(holder)}).")


def _s3_backend(manifest: Path, *, profile: str | None, endpoint_url: str | None,
                max_attempts: int | None, timeout: float | None = None
                ) -> tuple[workspace.Workspace, ports.StateBackend]:
    stores = compose.compose(compose.Options(
        manifest=manifest, profile=profile, endpoint_url=endpoint_url,
        max_attempts=max_attempts, timeout=timeout))
    space = stores.space
    parsed = workspace.load_manifest(space)
    if parsed.state is None:
        raise errors.UsageError(
            f"{manifest} keeps its state in the lockfile {space.lockfile_path}, not in S3",
            hint="state pull/push copy the state a manifest's `state: s3://...` names")
    return space, stores.state_backend(parsed)


def state_pull(
    file: Annotated[Path | None, typer.Argument(
        metavar="[FILE]", help="Where to write it [default: the lockfile beside the manifest]")
    ] = None,
    manifest: ManifestOption = Path("layers.yaml"),
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    max_attempts: AttemptsOption = None,
    timeout: TimeoutOption = None,
) -> None:
    """Copy the S3 state into a local lockfile (canonical bytes), to read or edit it.

    Example:

      reconcile state pull backup.lock.json
    """
    space, backend = _s3_backend(manifest, profile=profile, endpoint_url=endpoint_url,
                                 max_attempts=max_attempts, timeout=timeout)
    snapshot = backend.read()
    target = file or space.lockfile_path
    if snapshot.revision == ports.NO_REVISION:
        raise errors.LockfileError(f"{backend.location}: no state yet",
                                   hint="run `reconcile apply` first")
    try:
        target.write_text(statefile.encode(snapshot.lock), encoding="utf-8")
    except OSError as exc:
        raise errors.UsageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    views.line(f"Wrote {backend.location} to {target}.")


def state_push(
    file: Annotated[Path | None, typer.Argument(
        metavar="[FILE]", help="The lockfile to push [default: the lockfile beside the "
                               "manifest]")] = None,
    manifest: ManifestOption = Path("layers.yaml"),
    lock_timeout: LockTimeoutOption = 0.0,
    force: Annotated[bool, typer.Option(
        "--force", help="Push even a file of another lineage or an older serial.")] = False,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    max_attempts: AttemptsOption = None,
    timeout: TimeoutOption = None,
) -> None:
    """Replace the S3 state with a local lockfile, under the state lock and checked against
    the revision read under it (a concurrent apply can never be overwritten half way). A
    file of another lineage, or older (a lower serial) than the state, is refused unless
    --force.

    Example:

      reconcile state push layers.lock.json
    """
    space, backend = _s3_backend(manifest, profile=profile, endpoint_url=endpoint_url,
                                 max_attempts=max_attempts, timeout=timeout)
    source = file or space.lockfile_path
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.UsageError(f"cannot read {source}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise errors.LockfileError(f"{source}: not a lockfile (not UTF-8: {exc.reason} at "
                                   f"byte {exc.start})") from None
    lock = statefile.decode(text, file=str(source))

    def push(current: ports.Snapshot) -> model.Lock:
        refusal = statefile.push_refusal(lock, current=current.lock, file=str(source),
                                         location=backend.location)
        if refusal is not None and not force:
            raise errors.StateError(f"not pushing: {refusal}",
                                    hint="`reconcile state pull` the state and edit that copy, "
                                         "or pass --force to replace it anyway")
        return model.Lock(entries=lock.entries, lineage=lock.lineage or current.lock.lineage,
                          serial=max(lock.serial, current.lock.serial))

    written = _write_under_lock(backend, space=space, operation="state push",
                                lock_timeout=lock_timeout, change=push)
    views.line(f"Pushed {source} to {backend.location} (serial {written.serial}).")


def state_rm(
    names: Annotated[list[str], typer.Argument(
        metavar="NAME...", help="Layer keys to remove from the state.")],
    region: Annotated[list[str] | None, typer.Option(
        "--region", metavar="REGION",
        help="Only in this region (repeatable) [default: every region].")] = None,
    manifest: ManifestOption = Path("layers.yaml"),
    lockfile_path: LockfileOption = None,
    lock_timeout: LockTimeoutOption = 0.0,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    max_attempts: AttemptsOption = None,
    timeout: TimeoutOption = None,
) -> None:
    """Remove layers from the recorded state (the lockfile or the S3 state) without a plan,
    under the state lock: `outputs` stops listing them, and their versions stay in Lambda.

    Example:

      reconcile state rm old-utils --region eu-west-1
    """
    stores = compose.compose(compose.Options(
        manifest=manifest, lockfile=lockfile_path, profile=profile, endpoint_url=endpoint_url,
        max_attempts=max_attempts, timeout=timeout))
    backend = stores.state_backend(workspace.load_manifest(stores.space))
    only = set(region or ())
    chosen: list[tuple[str, str]] = []

    def remove(current: ports.Snapshot) -> model.Lock:
        recorded = current.lock.entries
        chosen.extend(sorted(key for key in recorded
                             if key[0] in names and (not only or key[1] in only)))
        missing = [name for name in dict.fromkeys(names)
                   if not any(layer == name for layer, _ in chosen)]
        if missing:
            where = f" in {', '.join(sorted(only))}" if only else ""
            known = sorted({layer for layer, entry_region in recorded
                            if not only or entry_region in only})
            raise errors.UsageError(f"{backend.location} records no {', '.join(missing)}{where}",
                                    hint=f"it records: {', '.join(known) or 'nothing'}")
        updated = current.lock
        for layer, entry_region in chosen:
            updated = updated.without(layer, entry_region)
        return updated

    _write_under_lock(backend, space=stores.space, operation="state rm",
                      lock_timeout=lock_timeout, change=remove)
    for layer, entry_region in chosen:
        views.line(f"Removed {layer} ({entry_region}) from {backend.location}; its versions "
                   "stay in Lambda.")


def _write_under_lock(backend: ports.StateBackend, *, space: workspace.Workspace,
                      operation: str, lock_timeout: float,
                      change: Callable[[ports.Snapshot], model.Lock]) -> model.Lock:
    """Under the state lock, write what `change` makes of the state read under it (its serial
    raised); a failure to release the lock never hides the write's own error."""
    # A signal only asks to stop: it is one write, and the lock is released after it.
    with StopOnSignal() as stopping:
        lock_id = state_package.take_lock(
            backend, run_session.holder(operation, space), timeout=lock_timeout,
            stop=stopping.event, announce=views.err)
        try:
            current = backend.read()
            written = statefile.next_write(change(current))
            backend.write(written, expected_revision=current.revision)
        except BaseException:
            with contextlib.suppress(errors.ReconcilerError):
                backend.unlock(lock_id)
            raise
        backend.unlock(lock_id)
    return written


def schema(
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="FILE", help="Write the schema to FILE instead of stdout.")] = None,
) -> None:
    """Print the manifest's JSON Schema (the one shipped in this package), for editors: point
    `# yaml-language-server: $schema=FILE` in layers.yaml at a copy written with --out."""
    # The shipped file's own layout (tools/gen_schema.py), so that a copy diffs cleanly.
    text = json.dumps(workspace.load_schema(), indent=2, sort_keys=True) + "\n"
    if out is None:
        views.text(text)
        return
    try:
        # `--out schemas/layers.schema.json` in a repository that has no schemas/ yet.
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise errors.UsageError(f"{out}: cannot write: {exc.strerror}") from None
    views.line(f"wrote {out}; in layers.yaml: # yaml-language-server: $schema={out}")


def comment(
    plan_file: Annotated[Path, typer.Argument(metavar="PLANFILE", help="A saved plan.")],
) -> None:
    """Post the saved plan's Markdown on the pull request, as one comment per manifest that
    every later run updates. Reads GITHUB_API_URL, GITHUB_TOKEN, GITHUB_REPOSITORY and the
    event at GITHUB_EVENT_PATH, as GitHub Actions sets them; outside a pull request it posts
    nothing. Makes no AWS call.

    Example:

      reconcile comment plan.json
    """
    saved = planfile.from_document(savedplans.read(plan_file))
    environment = os.environ
    number = github.pull_request_number(environment.get("GITHUB_EVENT_PATH"))
    if number is None:
        event = environment.get("GITHUB_EVENT_NAME") or "no GitHub event"
        views.line(f"not a pull request ({event}): no comment posted.")
        return
    token = environment.get("GITHUB_TOKEN")
    repository = environment.get("GITHUB_REPOSITORY")
    if not token or not repository:
        missing = [name for name, value in (("GITHUB_TOKEN", token),
                                            ("GITHUB_REPOSITORY", repository)) if not value]
        raise errors.UsageError(f"{' and '.join(missing)} not set: cannot post the comment",
                                hint="in a workflow, pass `GITHUB_TOKEN: ${{ github.token }}` "
                                     "in the step's env")
    manifest = (saved.basis.manifest if saved.basis is not None and saved.basis.manifest
                else "layers.yaml")
    actions = github.Actions.from_environment(environment)
    body = github.comment_body(render.markdown(saved, title=github.heading("plan", manifest)),
                               manifest=manifest, run_url=actions.run_url)
    client = github.CommentClient(
        api_url=environment.get("GITHUB_API_URL") or "https://api.github.com", token=token,
        repository=repository)
    posted = github.post_comment(client, number=number, body=body, manifest=manifest)
    views.line(f"{'posted' if posted.created else 'updated'} the plan comment on pull request "
               f"#{number}: {posted.url}")


def _sandbox_folder(manifest: Path) -> Path:
    """`.reconcile/sandbox/` beside the manifest (the cwd for the default, absent manifest)."""
    space = compose.compose(compose.Options(manifest=manifest)).space
    if not space.base_dir.is_dir():
        raise errors.UsageError(f"{space.base_dir}: no such folder (the manifest's folder)")
    return sandbox.folder_under(space.cache_dir)


def sandbox_start(manifest: ManifestOption = Path("layers.yaml")) -> None:
    """Start the sandbox (or find it running) and print the exports that point reconcile
    at it, with fake credentials: eval "$(reconcile sandbox start)". Its pid, port and
    log live in .reconcile/sandbox/ beside the manifest."""
    result = sandbox.start(_sandbox_folder(manifest))
    running = result.sandbox
    state = "already running" if result.already_running else "started"
    views.err(f"sandbox {state}: moto server pid {running.pid} on {running.endpoint_url} "
              f"(log: {running.log_path}); `reconcile sandbox stop` ends it.")
    views.sandbox_exports(running)


def sandbox_status(manifest: ManifestOption = Path("layers.yaml")) -> None:
    """Say whether the sandbox runs: exit 0 and its pid, port and endpoint when it does,
    exit 1 when it does not."""
    folder = _sandbox_folder(manifest)
    running = sandbox.status(folder)
    if running is None:
        stale = sandbox.stale_pid(folder)
        note = (f" (a stale record names pid {stale}; `reconcile sandbox stop` removes it)"
                if stale is not None else "")
        views.err(f"sandbox not running{note}; start it with `reconcile sandbox start`.")
        raise typer.Exit(EXIT_ERROR)
    views.line(f"sandbox running: pid {running.pid}, port {running.port}, "
               f"endpoint {running.endpoint_url} (log: {running.log_path})")


def sandbox_stop(manifest: ManifestOption = Path("layers.yaml")) -> None:
    """Stop the sandbox this folder started, and only that process. A stale record (its
    process gone, or its pid now another process's) is removed without signalling anything."""
    result = sandbox.stop(_sandbox_folder(manifest))
    if result.outcome is sandbox.StopOutcome.STOPPED:
        views.line(f"sandbox stopped (pid {result.pid}).")
    elif result.outcome is sandbox.StopOutcome.STALE_REMOVED:
        views.line(f"sandbox not running: removed the stale record of pid {result.pid} "
                   "(that process, if any, was left alone).")
    else:
        views.line("sandbox not running.")
