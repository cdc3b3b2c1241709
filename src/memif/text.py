"""Showing text a peer chose (app names, interface names, DISCONNECT reasons) safely.

A peer's string goes into log files and CLI output.  Unescaped, a newline in it
forges a log line and a terminal control sequence rewrites the operator's screen.
:func:`escape` is the one rule, used everywhere such a string is shown: printable
characters stay as they are; backslash, control characters, newlines and other
non-printables become Python-style escapes (``\\n``, ``\\x1b``, ``\\u2028``); and
the result is cut at ``limit`` characters with a count of what was left out.
"""

from __future__ import annotations

__all__ = ["MAX_SHOWN", "escape"]

MAX_SHOWN = 256
"""Characters of one peer-supplied string shown by default."""


def _escape_char(c: str) -> str:
    if c == "\\":
        return "\\\\"
    return c.encode("unicode_escape").decode("ascii")


def escape(text: str | bytes, limit: int = MAX_SHOWN) -> str:
    """``text`` with every non-printable character escaped, at most ``limit`` characters
    of it (then ``...(N more)``); bytes are decoded as UTF-8, invalid bytes escaped."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", "backslashreplace")
    shown = text[:limit]
    if shown.isprintable() and "\\" not in shown:
        out = shown
    else:
        out = "".join(c if c.isprintable() and c != "\\" else _escape_char(c) for c in shown)
    if len(text) > limit:
        out += f"...({len(text) - limit} more)"
    return out
