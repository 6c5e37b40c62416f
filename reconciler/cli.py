"""The `reconcile` and `reconcile-layers` console scripts' entry point (and `python -m
reconciler`'s): `main` runs the command layer (reconciler.command) and exits with its code.

Nothing else lives here: the commands, their options, views, composition and signal handling
are in `reconciler.command`, the use cases in `reconciler.run`.
"""

from __future__ import annotations

import sys

from reconciler.command import app


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; exit 0 (success), 1 (any error, usage errors included) or 2 (changes)."""
    sys.exit(app.run(argv))
