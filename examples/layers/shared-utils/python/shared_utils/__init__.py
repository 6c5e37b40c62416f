"""Shared helpers for all services (an example layer for reconcile's demo)."""


def greet(name: str) -> str:
    """Return a friendly greeting."""
    return f"hello, {name}"
