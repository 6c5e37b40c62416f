"""reconcile: a declarative reconciler for AWS Lambda layers.

The package is a functional core (errors, model, manifest, archive, planner, render, ports,
statefile) and an imperative shell (workspace, content, artifacts, state, aws, planning,
applying, cli); see each module's docstring.
"""

__version__ = "0.1.0"
