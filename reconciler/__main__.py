"""`python -m reconciler` is the same program as the `reconcile` console script."""

from reconciler import cli

if __name__ == "__main__":
    cli.main()
