"""The layering rules of DESIGN.md (rule 8), read from each installed module's imports with ast.

Core modules (errors, model, manifest, archive, planner, render, ports, statefile) import no
shell module, no I/O module and no core sibling except `model` and `errors` (ports also
`errors`' types only; `model` and `details`, a change's details, each other). A subpackage's
modules are named by their dotted path below the package (`state`, `state.local`,
`state.s3`); `state.local` and `state.s3` are unaware of each other, as kopf's storage kinds
are, and so are the content kinds (`content.folder`, `content.zipsource`, `content.s3`): they
share only `content.common` and `content.statcache`, and the `content` package itself is the
one place that chooses a kind. The command layer
(`command.*`: typer app, options, views, signals, composition) may import everything below it;
the use cases (`run.*`) and the rest of the shell never import the command layer, and only
`cli` (the entry point) imports it from outside. Some third-party packages belong to one
module or package alone (boto3/botocore to the `aws` package, deepdiff to planner.layers,
typer/click to the command layer and cli). The `aws` package's rooms form a chain (answers,
failures, session, transfer, objects, layers, functions, parameters: each imports only
those before it), and the rest of the program reaches them through the package alone
(`aws.Boto3LayerStore`).
`io`, `zipfile`, `hashlib` and `json` stay allowed in the core: they work on in-memory bytes
there, and the file system, processes and the network are what the rules keep out.
Every import counts, including those inside functions and under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
import sys
from importlib import resources
from pathlib import Path

import pytest

# Its home since Python 3.11; importlib.abc's name warns from 3.13 (gone in 3.14).
if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:
    from importlib.abc import Traversable

PACKAGE = "reconciler"
# Built layers: the readers, the target and the selection are pure (text in, values out); the
# wheel cache and the unpacking of wheels read files.
BUILDS_PURE = frozenset({"builds", "builds.target", "builds.tomlfile", "builds.requirements",
                         "builds.pylock", "builds.uvlock", "builds.selection",
                         "builds.simpleapi"})
BUILDS_SHELL = frozenset({"builds.wheels", "builds.cache", "builds.index", "builds.fetch"})
# The decision, one module per concern (the package re-exports them): each knows its siblings,
# never the package that gathers them.
PLANNER_PARTS = frozenset({"planner.inputs", "planner.layers", "planner.align", "planner.grants",
                           "planner.retention", "planner.fillers", "planner.evidence",
                           "planner.compose", "planner.forget", "planner.consumers"})
CORE = frozenset({"errors", "model", "details", "observed", "manifest", "consumerspec",
                  "schemacheck",
                  "archive", "zipmembers",
                  "planner", *PLANNER_PARTS, "render", "ports", "planfile", "savedplan",
                  "statefile", "ratelimit", "lambdaos", "elfcheck", *BUILDS_PURE})
CONTENT_KINDS = frozenset({"content.folder", "content.zipsource", "content.s3",
                           "content.lock"})
# The aws package's modules, each allowed to import only the ones before it.
AWS_CHAIN = ("aws.answers", "aws.failures", "aws.session", "aws.transfer", "aws.objects",
             "aws.layers", "aws.functions", "aws.parameters")
AWS_ROOMS = frozenset(AWS_CHAIN)
CONTENT_SHARED = frozenset({"content.common", "content.statcache", "content.gitignore"})
# The command layer: wiring only; nothing below it imports it.
COMMAND = frozenset({"command", "command.app", "command.layers", "command.admin",
                     "command.options", "command.views", "command.workflow", "command.signals",
                     "command.compose", "command.lazy", "command.early"})
# The use cases the commands call (planning and applying are use cases too, still top level).
RUN = frozenset({"run", "run.session", "run.savedplans", "run.report"})
SHELL = frozenset({"workspace", "content", *CONTENT_KINDS, *CONTENT_SHARED, *BUILDS_SHELL,
                   "zipbuild", "wheelmembers", "zipindex", "state", "binaries",
                   "uploadbody", "adoption", "layerbuild", "consuming", "applying.consumers",
                   "state.local", "state.s3", "aws", *AWS_ROOMS, "artifacts", "planning",
                   "headstart", "applying", "applying.report", "applying.steps",
                   "applying.lanes",
                   "publishing", "sandbox", "forking", "gcpolicy", "github", "cli", *COMMAND,
                   *RUN})
# Shell modules below the command layer.
BELOW_COMMAND = SHELL - COMMAND - {"cli"}
ENTRY_POINTS = frozenset({"__init__", "__main__"})

# The reconciler modules each module may import. Importing the package itself (its
# `__version__`) is always allowed. cli is the entry point: only `__main__` imports it, and
# only cli imports the command layer from outside it.
ALLOWED_INTERNAL: dict[str, frozenset[str]] = {
    "__init__": frozenset(),
    "__main__": frozenset({"cli"}),
    "errors": frozenset(),
    # model names the details of a change (`model.PublishDetails`) and what AWS reports
    # (`model.RemoteVersion`, see observed), which name model's values in their annotations
    # alone: one room of values, over three files.
    "model": frozenset({"errors", "details", "observed"}),
    "details": frozenset({"errors", "model"}),
    "observed": frozenset({"model"}),
    "manifest": frozenset({"errors", "model", "schemacheck", "consumerspec"}),
    # The rules and values of a layer's consumers and parameter, for manifest.
    "consumerspec": frozenset({"errors", "model"}),
    "schemacheck": frozenset(),
    "archive": frozenset({"errors", "model"}),
    # The reading side of the zip format builds on the writing side's constants.
    "zipmembers": frozenset({"errors", "model", "archive"}),
    "planner": frozenset({"errors", "model"}) | PLANNER_PARTS,
    **{part: frozenset({"errors", "model"}) | PLANNER_PARTS - {part} for part in PLANNER_PARTS},
    "render": frozenset({"errors", "model"}),
    # The package index's port speaks in the build's values (builds.Wheel).
    "ports": frozenset({"errors", "model", "builds"}),
    "planfile": frozenset({"errors", "model"}),
    "savedplan": frozenset({"errors", "model"}),
    "statefile": frozenset({"errors", "model"}),
    "ratelimit": frozenset(),
    "lambdaos": frozenset(),
    "elfcheck": frozenset({"lambdaos"}),
    **{module: frozenset({"errors", "model", "lambdaos"}) | BUILDS_PURE - {module}
       for module in BUILDS_PURE},
    **{shell: (CORE | BELOW_COMMAND) - {shell} - AWS_ROOMS for shell in BELOW_COMMAND},
    "cli": CORE | COMMAND | {"gcpolicy"},
    **{command: (CORE | SHELL) - {"cli", command} - AWS_ROOMS for command in COMMAND},
    # The aws package's rooms: the core, the streamed body, and the rooms before them.
    **{room: CORE | {"uploadbody"} | set(AWS_CHAIN[:AWS_CHAIN.index(room)])
       for room in AWS_CHAIN},
    "aws": CORE | AWS_ROOMS,
    # The state backends share only their package; neither knows the other exists.
    "state": (CORE | {"__init__"}),
    "state.local": (CORE | BELOW_COMMAND) - {"state.local", "state.s3"} - AWS_ROOMS,
    "state.s3": (CORE | BELOW_COMMAND) - {"state.s3", "state.local"} - AWS_ROOMS,
    # A content kind knows the shared pieces and the core, never another kind or the package
    # that dispatches to it; the shared pieces know no kind.
    **{kind: CORE | CONTENT_SHARED - {kind} for kind in CONTENT_KINDS},
    # The built layer's kind uses the builds package (its shell: the wheels, their fetching).
    "content.lock": CORE | CONTENT_SHARED | BUILDS_SHELL,
    "content.common": CORE,
    # git's ignore rules: it reads ignore files and knows no content kind.
    "content.gitignore": frozenset(),
    # Forks a child for a callable and hands its result back: it knows nothing of the project.
    "forking": frozenset(),
    # The tool's own process's garbage collector: it knows nothing of the project.
    "gcpolicy": frozenset(),
    "content.statcache": CORE | {"content.common", "forking"},
}
# Top-level modules no core module may import: the file system, processes, the network, AWS
# and the terminal belong to the shell.
IO_MODULES = frozenset({
    "os", "pathlib", "shutil", "subprocess", "sys", "socket", "tempfile",
    "boto3", "botocore", "typer", "click",
})
# Narrow exceptions: ports names pathlib.PurePath in a protocol's signature (a pure path does
# no I/O; the protocol only types the zip a store is handed).
TYPE_ONLY_IO = {"ports": frozenset({"pathlib"}),
                # only sys.version_info, to choose tomllib or the floor's tomli
                "builds.tomlfile": frozenset({"sys"})}
# Third-party packages that only these modules (and a package's own modules) may import.
OWNERS: dict[str, frozenset[str]] = {
    "boto3": frozenset({"aws"}), "botocore": frozenset({"aws"}),
    "deepdiff": frozenset({"planner.layers"}),
    "typer": COMMAND | {"cli"}, "click": COMMAND | {"cli"},
    "pathspec": frozenset({"content.gitignore"}),
    # the optional extra: only the sandbox's server process may need it
    "moto": frozenset({"sandbox"}),
}


def _python_files(folder: Traversable, prefix: str = "") -> dict[str, str]:
    """Module name (dotted below the package) -> source, for every .py file of the package;
    a subpackage's `__init__.py` is named after the subpackage (`state`)."""
    found: dict[str, str] = {}
    for entry in folder.iterdir():
        if entry.is_dir() and entry.joinpath("__init__.py").is_file():
            found.update(_python_files(entry, f"{prefix}{entry.name}."))
        elif entry.name.endswith(".py"):
            name = prefix + entry.name.removesuffix(".py")
            if prefix and name.endswith(".__init__"):
                name = name.removesuffix(".__init__")
            found[name] = entry.read_text(encoding="utf-8")
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
                    internal.add(_module_of(rest))
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
            # `from reconciler[.sub] import a, b`: each name is a module or an attribute of
            # the (sub)package; `from reconciler.mod import name`: the module itself.
            for alias in node.names:
                dotted = f"{rest}.{alias.name}" if rest else alias.name
                internal.add(dotted if dotted in SOURCES else _module_of(rest))
    return internal, external


def _module_of(dotted: str) -> str:
    """The longest prefix of `dotted` (below the package) that names a module; the package
    itself ("__init__") when none does."""
    parts = dotted.split(".") if dotted else []
    while parts:
        if ".".join(parts) in SOURCES:
            return ".".join(parts)
        parts.pop()
    return "__init__"


def test_import_reader_resolves_subpackage_modules() -> None:
    """Imports of a subpackage's modules name those modules, not just the subpackage."""
    source = (
        "from reconciler.state import new_holder\n"
        "from reconciler.state.local import LocalStateBackend\n"
        "import reconciler.state\n"
    )
    assert imports_of(source)[0] == {"state.local", "state"}


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
                       for name in sorted(external & IO_MODULES
                                          - TYPE_ONLY_IO.get(module, frozenset()))]
    violations += [f"{module} imports {name}: only {', '.join(sorted(owners))} may import it"
                   for name, owners in sorted(OWNERS.items())
                   if name in external and module not in owners
                   and not any(module.startswith(f"{owner}.") for owner in owners)]
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


def test_every_test_file_has_a_tier() -> None:
    """Each test file is placed in exactly one tier of tests/conftest.py (so that `-m` selects
    it), and every placed file exists."""
    import conftest

    folder = Path(__file__).parent
    files = {path.stem for path in folder.glob("test_*.py")}
    placed = [module for modules in conftest.TIERS.values() for module in modules]
    assert len(placed) == len(set(placed)), "a file is in two tiers"
    assert not files - set(placed), f"test files in no tier: {sorted(files - set(placed))}"
    assert not set(placed) - files, f"placed but not found: {sorted(set(placed) - files)}"
