"""The layering rules of DESIGN.md (rule 8), read from each installed module's imports with ast.

Core modules (errors, model, manifest, archive, planner, render) import no shell module, no
I/O module and no core sibling except `model` and `errors`. Some third-party packages belong
to one module alone (boto3/botocore to aws, deepdiff to planner, typer/click to cli).
`io`, `zipfile`, `hashlib` and `json` stay allowed in the core: they work on in-memory bytes
there, and the file system, processes and the network are what the rules keep out.
Every import counts, including those inside functions and under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
from importlib import resources
from importlib.abc import Traversable

import pytest

PACKAGE = "reconciler"
CORE = frozenset({"errors", "model", "manifest", "archive", "planner", "render", "ports"})
SHELL = frozenset({"workspace", "sources", "zipbuild", "lockfile", "aws", "reconcile", "cli"})
ENTRY_POINTS = frozenset({"__init__", "__main__"})

# The reconciler modules each module may import. Importing the package itself (its
# `__version__`) is always allowed. cli is the composition root: only `__main__` imports it.
ALLOWED_INTERNAL: dict[str, frozenset[str]] = {
    "__init__": frozenset(),
    "__main__": frozenset({"cli"}),
    "errors": frozenset(),
    "model": frozenset({"errors"}),
    "manifest": frozenset({"errors", "model"}),
    "archive": frozenset({"errors", "model"}),
    "planner": frozenset({"errors", "model"}),
    "render": frozenset({"errors", "model"}),
    "ports": frozenset({"errors", "model"}),
    **{shell: (CORE | SHELL) - {"cli", shell} for shell in SHELL},
}
# Top-level modules no core module may import: the file system, processes, the network, AWS
# and the terminal belong to the shell.
IO_MODULES = frozenset({
    "os", "pathlib", "shutil", "subprocess", "sys", "socket", "tempfile",
    "boto3", "botocore", "typer", "click",
})
# Third-party packages that exactly one module may import.
OWNERS = {
    "boto3": "aws", "botocore": "aws", "deepdiff": "planner", "typer": "cli", "click": "cli",
}


def _python_files(folder: Traversable, prefix: str = "") -> dict[str, str]:
    """Module name (dotted below the package) -> source, for every .py file of the package."""
    found: dict[str, str] = {}
    for entry in folder.iterdir():
        if entry.is_dir() and entry.joinpath("__init__.py").is_file():
            found.update(_python_files(entry, f"{prefix}{entry.name}."))
        elif entry.name.endswith(".py"):
            found[prefix + entry.name.removesuffix(".py")] = entry.read_text(encoding="utf-8")
    return found


SOURCES = _python_files(resources.files(PACKAGE))
MODULES = sorted(SOURCES)


def imports_of(source: str) -> tuple[set[str], set[str]]:
    """(reconciler modules, top-level external modules) that `source` imports, anywhere in it."""
    internal: set[str] = set()
    external: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top, _, rest = alias.name.partition(".")
                if top == PACKAGE:
                    internal.add(rest.partition(".")[0] or "__init__")
                else:
                    external.add(top)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                top, _, rest = node.module.partition(".")
                if top != PACKAGE:
                    external.add(top)
                    continue
            else:  # a relative import: `from . import x` or `from .x import y`
                rest = node.module or ""
            if rest:
                internal.add(rest.partition(".")[0])
            else:  # `from reconciler import a, b`: each name is a module or a package attribute
                internal.update(alias.name if alias.name in SOURCES else "__init__"
                                for alias in node.names)
    return internal, external


def test_every_module_is_placed_in_a_layer() -> None:
    """Each module of the package is listed as core, shell or entry point (no unplaced module)."""
    placed = CORE | SHELL | ENTRY_POINTS
    assert not set(MODULES) - placed, f"modules in no layer: {sorted(set(MODULES) - placed)}"
    assert not placed - set(MODULES), f"listed but not found: {sorted(placed - set(MODULES))}"


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_follow_the_layering(module: str) -> None:
    """A module imports only the reconciler modules and third-party packages its layer allows."""
    internal, external = imports_of(SOURCES[module])
    allowed = ALLOWED_INTERNAL.get(module, frozenset()) | {"__init__"}
    violations = [f"{module} imports reconciler.{name}: not allowed for "
                  f"{'a core' if module in CORE else 'this'} module"
                  for name in sorted(internal - allowed)]
    if module in CORE:
        violations += [f"{module} imports {name}: core modules do no I/O"
                       for name in sorted(external & IO_MODULES)]
    violations += [f"{module} imports {name}: only {owner}.py may import it"
                   for name, owner in sorted(OWNERS.items())
                   if name in external and module != owner]
    assert not violations, "\n".join(violations)


@pytest.mark.parametrize("module", MODULES)
def test_module_has_a_docstring(module: str) -> None:
    """Every module opens with a docstring saying what it owns."""
    docstring = ast.get_docstring(ast.parse(SOURCES[module]))
    assert docstring and docstring.strip(), f"{module}.py has no module docstring"


def test_import_reader_sees_every_import_form() -> None:
    """imports_of() resolves absolute, dotted, relative and function-local imports."""
    source = (
        "import os.path\n"
        "from reconciler import model, __version__\n"
        "from reconciler.errors import Problem\n"
        "from . import planner\n"
        "from .render import text\n"
        "import reconciler.aws\n"
        "if TYPE_CHECKING:\n"
        "    from mypy_boto3_lambda import LambdaClient\n"
        "def f():\n"
        "    import boto3\n"
        "    from deepdiff import DeepDiff\n"
    )
    assert imports_of(source) == (
        {"model", "__init__", "errors", "planner", "render", "aws"},
        {"os", "mypy_boto3_lambda", "boto3", "deepdiff"},
    )
