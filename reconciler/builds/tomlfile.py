"""TOML lock files read with their locations: the standard library's parser (tomli before
Python 3.11), its syntax errors turned into located problems, and the line of each
`[[table]]` header, so that a problem in the n-th package names its line.

Pure: text in, values out; it knows no lock format.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from reconciler import errors
from reconciler.builds import LockError

# `sys` only for its version: mypy checks the branch of the floor (3.10) this way, where a
# try/except import would make it look for a tomllib that 3.10 lacks.
if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, before it joined the standard library
    import tomli as tomllib

_ERROR_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


def load(text: str, *, file: str) -> dict[str, Any]:
    """The document of TOML `text`; a syntax error is a LockError at its line and column."""
    try:
        document: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        found = _ERROR_POSITION.search(str(error))
        line, column = (int(found.group(1)), int(found.group(2))) if found else (1, 1)
        message = _ERROR_POSITION.sub("", str(error)).strip()
        raise LockError([errors.Problem(file, line, column, "lock",
                                        f"not valid TOML: {message}")]) from None
    return document


def table_lines(text: str, header: str) -> list[int]:
    """The 1-based line of each `[[header]]` in `text`, in order: the n-th element of the
    array of tables `header` starts there."""
    pattern = re.compile(rf"^\s*\[\[\s*{re.escape(header)}\s*\]\]\s*(#.*)?$")
    return [number for number, line in enumerate(text.splitlines(), start=1)
            if pattern.match(line)]
