"""The composition of a command: ONE function, `compose`, builds what a command works with
(the workspace, the state backend, the Lambda store and the S3 object store) from its
options, and nothing else in the command layer builds a store.

It reads the AWS part of the environment the boto3 chain does not (AWS_REGION). Tests give
the commands other parts with `overridden` (as Terraform's `testingOverrides` does), never by
patching: `compose` asks the factory in force, the boto3 one unless overridden.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler import model, ports, ratelimit
from reconciler.command import lazy
from reconciler.state import local as local_state

if TYPE_CHECKING:
    from reconciler import aws, workspace
    from reconciler.run import session
else:
    aws = lazy.module("reconciler.aws")
    session = lazy.module("reconciler.run.session")
    workspace = lazy.module("reconciler.workspace")


@dataclass(frozen=True)
class Options:
    """What the command line says about where things are: the manifest, the lockfile, and
    how to reach AWS."""

    manifest: Path
    lockfile: Path | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    max_rps: float = ratelimit.DEFAULT_RPS


class Boto3Stores:
    """The real parts (session.Stores): the lockfile or S3 state, and botocore's stores."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._space = workspace.Workspace.for_manifest(options.manifest, options.lockfile)

    @property
    def space(self) -> workspace.Workspace:
        """The manifest's workspace."""
        return self._space

    def state_backend(self, parsed: model.Manifest | None) -> ports.StateBackend:
        """The manifest's `state: s3://...`, else the lockfile beside it (or --lockfile)."""
        if parsed is None or parsed.state is None:
            return local_state.LocalStateBackend(self._space.lockfile_path)
        from reconciler.state import s3 as s3_state  # only an S3 state needs it (and boto3)

        bucket, prefix = s3_state.parse_state_url(parsed.state)
        region = os.environ.get("AWS_REGION") or (parsed.regions[0] if parsed.regions else None)
        given = self.options
        return s3_state.S3StateBackend(
            aws.Boto3ObjectStore(bucket=bucket, profile=given.profile,
                                 endpoint_url=given.endpoint_url, region=region,
                                 max_attempts=given.max_attempts, timeout=given.timeout),
            prefix=prefix)

    def remote(self) -> session.Remote:
        """botocore's Lambda store (also the S3 store of layer code); the default region is
        AWS_REGION, else boto3's chain (which reads only AWS_DEFAULT_REGION and the profile),
        as in the AWS CLI and the SDKs that read it."""
        given = self.options
        # --max-rps 0 turns the client-side limit off (the store takes None for "no limit").
        store = aws.Boto3LayerStore(profile=given.profile, endpoint_url=given.endpoint_url,
                                    max_attempts=given.max_attempts,
                                    max_rps=given.max_rps or None, timeout=given.timeout)
        # The consumer stores share the layer store's clients: one rate limit per region.
        return session.Remote(layers=store, objects=store,
                              default_region=os.environ.get("AWS_REGION")
                              or store.default_region(),
                              prepare=store.prepare,
                              functions=aws.Boto3FunctionStore(store.clients),
                              parameters=aws.Boto3ParameterStore(store.clients))


    def package_index(self, url: str) -> ports.PackageIndex:
        """The HTTP client of the package index at `url` (reconciler.builds.index), with
        the environment's proxies and CA bundle."""
        # Imported here: only a build that downloads needs it (and urllib.request).
        from reconciler.builds import index
        from reconciler.command import views

        # Download lines join the live display on a terminal (dropped elsewhere).
        client: ports.PackageIndex = index.IndexClient(url=url, environ=os.environ,
                                                       progress=views.progress)
        return client


Factory = Callable[[Options], "session.Stores"]
_factory: Factory = Boto3Stores


def compose(options: Options) -> session.Stores:
    """The parts a command works with, for its options (the factory in force)."""
    return _factory(options)


@contextmanager
def overridden(factory: Factory) -> Iterator[None]:
    """Commands run inside this block get their parts from `factory` (a test's fakes, or
    stores of its own), restored on the way out."""
    global _factory
    previous, _factory = _factory, factory
    try:
        yield
    finally:
        _factory = previous
