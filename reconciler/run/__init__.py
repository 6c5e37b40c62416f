"""The use cases the commands run, below the command layer: opening a session (manifest,
state, stores, selection), saved plans (reading, writing, the applied mark, the saved
selection and staleness) and the apply report document.

`planning` and `applying` stay top-level modules for now (they are use cases too). Nothing
here prints, prompts, reads options or imports the command layer (`reconciler.command`) or
typer: the commands hand in what they parsed and print what comes back.
"""
