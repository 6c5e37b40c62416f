"""reconcile: a declarative reconciler for AWS Lambda layers.

The package is a functional core (errors, model, manifest, archive, planner, render, ports,
statefile) and an imperative shell (workspace, content, artifacts, state, aws, planning,
applying, cli); see each module's docstring.
"""

__version__ = "0.1.0"
# How to install the `sandbox` command's optional extra: said in its help (which must not
# import the sandbox module and its HTTP client) and in its errors.
SANDBOX_INSTALL_HINT = "pip install 'reconcile-layers[sandbox]'"
