"""How an error message names the value at fault: its repr, cut short.

A study file's value can be as long as the file (a study symlinked to /etc/passwd is one long
string), and error lines go to terminals, logs and CI output: they name the value at fault, never
quote a file's contents at length.
"""

from __future__ import annotations

from typing import Any

MAX_QUOTED = 80  # characters of a value's repr an error line shows


def brief(value: Any, limit: int = MAX_QUOTED) -> str:
    """`repr(value)`, or its first characters and its length when longer than `limit`."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 30]}... ({len(text):,} characters)"
