"""reconcile: a declarative reconciler for AWS Lambda layers.

The package is a functional core (errors, model, manifest, archive, planner, render) and an
imperative shell (workspace, sources, lockfile, aws, reconcile, cli); see each module's docstring.
"""

__version__ = "0.1.0"
