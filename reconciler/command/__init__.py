"""The command layer: `reconcile`'s commands as wiring, after Terraform's `command` and
`views` packages. It parses options, asks the composition (`compose`) for its stores, calls
the use cases (`reconciler.run`, planning, applying), hands their results to the views and
chooses the exit code; it decides nothing about layers, plans or state itself.

- `app`: the typer app, the root callback and `run` (exit codes, error reporting on the way out)
- `layers`: the commands on a manifest's layers (validate, plan, apply, show, outputs)
- `admin`: the other commands (force-unlock, state pull/push, schema, comment, sandbox)
- `options`: the shared option types; `compose`: the one composition function
- `views`: everything printed or asked; `workflow`: what GitHub Actions is told about a run
- `signals`: stop-on-signal around the state lock; `lazy`: deferred imports for a fast --help

The commands are split in two modules (rather than one `app.py`) so that no module passes
600 lines; `app` still is the one place that assembles them.
Only this package and `reconciler.cli` (the entry point) import typer.
"""
