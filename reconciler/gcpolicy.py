"""The garbage collector of the tool's own process (the console scripts, `python -m reconciler`).

A plan or apply first builds a large graph of objects that live until the process ends: the
modules, botocore's service models and clients, the manifest. Each full collection walks all of
them again; a warm apply of a 7,660-file layer spent ~0.06-0.09 s in them, ~0.04 s of it in one
collection while botocore was imported. So the collector is off from the start until such a
graph is built (`settled`), which is then frozen out of it (`gc.freeze`) before it is turned
back on: later collections walk only what was made after. This only leaves garbage cycles
among those objects uncollected, which a process that ends within seconds does not miss. The
commands that open no session (all but plan and apply: validate, show, outputs, state,
force-unlock, comment, schema, sandbox) run without collections to their end: they make few
objects, even where they wait (a state lock, the sandbox's start). A worker forked from this
process (forking) freezes what it inherits and collects what it makes.

Only the process's own entry (`own_process`, from `cli.main` without arguments) does this: a
caller that runs `cli.main(args)` in its own long-lived process (the tests) keeps its collector
as it was.
"""

from __future__ import annotations

import gc

_own = False


def own_process() -> None:
    """This process runs the tool and then ends: no collections until it has `settled`."""
    global _own
    _own = True
    gc.disable()


def settled() -> None:
    """A graph of objects that live until the end has been built (see the module's doc):
    frozen, and the collector on again."""
    if _own:
        gc.freeze()
        gc.enable()
