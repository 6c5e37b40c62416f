"""Deferred imports for the command layer: `--help` and `--version` must not pay for boto3,
jsonschema or urllib.request (tests/test_cli_basics.py checks it), and each command pays
only for what it touches.

aws (botocore), planning and applying (deepdiff), artifacts and workspace (jsonschema, yaml)
and the use cases that import them cost ~0.7 s to import. A command module names them as
`aws = lazy.module("reconciler.aws")` (plain imports under TYPE_CHECKING, which the type
checker and the layering test read), so that every command body reads as ordinary code.
This module must not import any of them itself.
"""

from __future__ import annotations

import importlib.util
import sys
import types


def module(name: str) -> types.ModuleType:
    """The module `name`, loaded on its first attribute access (importlib's LazyLoader)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    loader.exec_module(loaded)
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, loaded)  # as the import system does: `pkg.child` works
    return loaded


def load(loaded: types.ModuleType) -> None:
    """Execute a module `module` gave, now rather than at its first use (at a moment the
    process would otherwise wait): any attribute read runs it."""
    importlib.import_module(loaded.__name__)
