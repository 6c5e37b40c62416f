"""The `reconcile` and `reconcile-layers` console scripts' entry point (and `python -m
reconciler`'s): `main` runs the command layer (reconciler.command) and exits with its code.

Nothing else lives here: the commands, their options, views, composition and signal handling
are in `reconciler.command`, the use cases in `reconciler.run`. As the process's own entry, it
begins a plain plan's or apply's head start (command.early) before it imports the command
layer (typer and the commands), so that the layers' worker need not wait for them.
"""

from __future__ import annotations

import signal
import sys
import threading

from reconciler import gcpolicy


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; exit 0 (success), 1 (any error, usage errors included) or 2 (changes).

    As the process's own entry (`argv` None: the console scripts, `python -m reconciler`),
    the objects that live until the end are frozen out of the garbage collector
    (reconciler.gcpolicy): once its modules are imported, and before the exit, since Python's
    finalization otherwise runs full collections over all of them (botocore's models, the
    plan, a build's index), ~0.1-0.15 s of a cold plan spent after its last line was printed.
    The exit handlers still run and the streams are still flushed; every file the tool
    writes is closed (and synced) before that. A caller that runs `main(args)` in its own
    process (the tests) keeps its collector as it was."""
    own = argv is None
    try:
        if own:
            gcpolicy.own_process()
            # The layers' worker forked before typer and the command layer are imported.
            from reconciler.command import early

            early.begin(sys.argv[1:])
        from reconciler.command import app
    except KeyboardInterrupt:
        # Ctrl-C during the start-up, before the command layer handles it: nothing has been
        # changed yet (a worker begun early is stopped at the exit, and what it wrote ahead
        # removed: a second Ctrl-C must not cut that short). 1: the contract's code for
        # every error.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.stderr.write("interrupted: nothing was changed.\n")
        sys.exit(1)
    code = app.run(argv)
    if own and threading.active_count() == 1:
        # The outcome is decided and reported: a Ctrl-C during the exit must not turn it into
        # a bare exit 130 with nothing said. (Not while a thread still runs, which the exit
        # waits for: an apply's lanes cut short by a third Ctrl-C.)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    gcpolicy.settled()
    sys.exit(code)
