"""The CLI's wire schema: what memifctl and memifd send each other over the CLI socket.

One JSON object per line each way (the line ends with ``\\n``; UTF-8):

* a request, client to memifd: ``{"command": "show interface", "json": false}``:
  ``command`` is one CLI command line; ``json`` asks for ``data`` in the reply;
* a reply, memifd to client, one per request and in order:
  ``{"ok": true, "output": "...", "data": null}``: ``ok`` says whether the command
  succeeded, ``output`` is its text (the one-line error when it failed), ``data`` what
  ``--json`` shows (``null`` unless the request asked for it).

memifd refuses a request line longer than :data:`MAX_REQUEST` bytes or nested deeper
than :data:`MAX_DEPTH`, before parsing it, with an ``ok: false`` reply naming the limit.

Both ends encode and decode through this module only: memifd (``memif.daemon``) imports
it, and memifctl keeps importing nothing of the daemon.  Every decode error is a
:class:`SchemaError` whose text is one line saying what was wrong and what is accepted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "MAX_DEPTH",
    "MAX_REQUEST",
    "NEWLINE",
    "Reply",
    "Request",
    "SchemaError",
    "decode_reply",
    "decode_request",
    "encode_reply",
    "encode_request",
    "next_line",
    "request_problem",
]

NEWLINE = b"\n"  # ends every request and every reply
MAX_REQUEST = 64 << 10  # bytes of one request line; a longer one is refused unparsed
MAX_DEPTH = 8  # JSON nesting of a request ({"command": ...} is 1)

BAD_REQUEST = (
    'bad request: expected one JSON object per line, {"command": "<cli command>", "json": false}'
)
TOO_LONG = f"bad request: longer than {MAX_REQUEST} bytes (a request is one line of JSON)"
BAD_REPLY = 'bad reply: expected one JSON object per line, {"ok": <bool>, "output": "<text>", ...}'

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_OPEN, _CLOSE = np.frombuffer(b"{[", np.uint8), np.frombuffer(b"}]", np.uint8)


class SchemaError(ValueError):
    """A line that is not a valid request or reply; the text is one line."""


@dataclass(frozen=True)
class Request:
    """One CLI command line, and whether the reply should carry ``data``."""

    command: str
    json: bool = False


@dataclass(frozen=True)
class Reply:
    """One answer: ``ok``, ``output`` text, and ``data`` (what ``--json`` shows)."""

    ok: bool = True
    output: str = ""
    data: Any = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON object sent on the wire: ``{"ok", "output", "data"}``."""
        return {"ok": self.ok, "output": self.output, "data": self.data}


# ---------------------------------------------------------------------- framing
def next_line(buf: bytearray) -> bytes | None:
    """Remove the first complete line from ``buf`` and return it without its newline,
    or None (``buf`` untouched) while no line is complete."""
    nl = buf.find(NEWLINE)
    if nl < 0:
        return None
    line = bytes(buf[:nl])
    del buf[: nl + 1]
    return line


# ---------------------------------------------------------------------- requests
def encode_request(request: Request) -> bytes:
    """The request's line, newline included."""
    return json.dumps({"command": request.command, "json": request.json}).encode() + NEWLINE


def request_problem(raw: bytes) -> str | None:
    """Why a request line is refused before it is parsed (too long, nested too deep), or None.

    The nesting is measured on the line with its strings blanked out, in one vector
    pass: no parser recursion is ever reached by a hostile line.
    """
    if len(raw) > MAX_REQUEST:
        return TOO_LONG
    bare = np.frombuffer(_STRING.sub(b"", raw), np.uint8)
    step = np.isin(bare, _OPEN).astype(np.int32) - np.isin(bare, _CLOSE).astype(np.int32)
    depth = int(np.cumsum(step).max()) if len(step) else 0
    if depth > MAX_DEPTH:
        return f"bad request: JSON nested {depth} deep (at most {MAX_DEPTH})"
    return None


def decode_request(raw: bytes) -> Request:
    """The request of one line (without its newline); :class:`SchemaError` if refused.

    The size and nesting limits are checked first, before any parsing.  ``json`` may be
    missing (false) and is read for its truth value.
    """
    problem = request_problem(raw)
    if problem is not None:
        raise SchemaError(problem)
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        obj = None
    if not isinstance(obj, dict) or not isinstance(obj.get("command"), str):
        raise SchemaError(BAD_REQUEST)
    return Request(obj["command"], bool(obj.get("json", False)))


# ---------------------------------------------------------------------- replies
def encode_reply(reply: Reply) -> bytes:
    """The reply's line, newline included; :class:`SchemaError` if ``data`` is not JSON."""
    try:
        return json.dumps(reply.as_dict()).encode() + NEWLINE
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"reply not serialisable: {exc}") from exc


def decode_reply(raw: bytes) -> Reply:
    """The reply of one line (without its newline); :class:`SchemaError` if malformed."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise SchemaError(f"{BAD_REPLY}; got a line that is not JSON") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("ok"), bool):
        raise SchemaError(f"{BAD_REPLY}; got no boolean ok")
    output = obj.get("output") or ""
    if not isinstance(output, str):
        raise SchemaError(f"{BAD_REPLY}; got output of type {type(output).__name__}")
    return Reply(obj["ok"], output, obj.get("data"))
