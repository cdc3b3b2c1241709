"""``memifctl``: memifd's CLI client, shaped like VPP's ``vppctl``.

* ``memifctl [-s SOCKET] [--json] show interface``: the arguments are joined into one
  command line, sent, and the reply printed; the exit status is 1 when the command
  failed (its one-line message goes to stderr, prefixed ``memifctl:``).
* No arguments, stdin a terminal: an interactive shell (``memifctl# ``) with history in
  ``~/.memifctl_history`` and tab completion of command keywords.
* No arguments, stdin not a terminal: one command per line from stdin.

The protocol is one JSON object per line each way: ``{"command", "json"}`` out,
``{"ok", "output", "data"}`` back, defined once in :mod:`memif.ctl.schema` (which memifd
imports too).  This module talks to the daemon only through the
socket: it never imports ``memif.daemon`` or ``memif.vswitch``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import Any, TextIO

from .. import __version__
from .schema import Request, SchemaError, decode_reply, encode_request, next_line
from .submode import ConfigMode

HISTORY = "~/.memifctl_history"
EXIT_FAILED = 1  # the command ran and failed
EXIT_NO_DAEMON = 2  # cannot reach memifd, or bad usage
DEFAULT_TIMEOUT = 60.0  # seconds without an answer before giving up (a stopped daemon)

__all__ = ["Client", "Completer", "CtlError", "default_runtime_dir", "default_socket", "main"]


class CtlError(Exception):
    """memifd cannot be reached or broke the protocol; the text is one line."""


class CommandFailed(CtlError):
    """memifd answered a command with an error (:meth:`Client.run`)."""


def default_runtime_dir() -> str:
    """memifd's default runtime directory (memifd uses this very rule).

    ``/run/memifd`` for root, else ``$XDG_RUNTIME_DIR/memifd`` or ``/tmp/memifd-<uid>``.
    """
    if os.geteuid() == 0:
        return "/run/memifd"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "memifd")
    return f"/tmp/memifd-{os.geteuid()}"


def default_socket() -> str:
    """memifd's default CLI socket: ``<runtime dir>/cli.sock``."""
    return os.path.join(default_runtime_dir(), "cli.sock")


def _connect(sock: socket.socket, path: str, timeout: float | None) -> None:
    """Connect, waiting up to ``timeout`` while memifd's listen backlog is full.

    A UNIX socket with a timeout fails at once (EAGAIN) when the backlog is full, where
    a blocking one would wait: retry until the timeout instead.
    """
    if timeout is None:
        sock.connect(path)
        return
    end = time.monotonic() + timeout
    sock.settimeout(timeout)
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() >= end:
                raise
            time.sleep(0.01)


class Client:
    """One connection to memifd's CLI socket."""

    def __init__(self, path: str, timeout: float | None = None) -> None:
        self.path = path
        self.timeout = timeout
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            _connect(self._sock, path, timeout)
            self._sock.settimeout(timeout)
        except OSError as exc:
            self._sock.close()
            why = exc.strerror or str(exc) or type(exc).__name__
            raise CtlError(f"cannot connect to memifd at {path}: {why}") from None
        self._buf = bytearray()

    def request(self, command: str, want_json: bool = False) -> dict[str, Any]:
        """Send one command line; the reply object ``{"ok", "output", "data"}``
        (:meth:`memif.ctl.schema.Reply.as_dict`)."""
        try:
            self._sock.sendall(encode_request(Request(command, want_json)))
            raw = next_line(self._buf)
            while raw is None:
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise CtlError(f"memifd at {self.path} closed the connection")
                self._buf += chunk
                raw = next_line(self._buf)
        except TimeoutError:
            raise CtlError(
                f"no reply from memifd at {self.path} in {self.timeout:g} s "
                "(is it stopped? --timeout S waits longer, 0 for ever)"
            ) from None
        except OSError as exc:
            raise CtlError(f"lost memifd at {self.path}: {exc.strerror or exc}") from None
        try:
            return decode_reply(raw).as_dict()
        except SchemaError as exc:
            raise CtlError(f"memifd at {self.path}: {exc}") from None

    def run(self, command: str, want_json: bool = False) -> Any:
        """Send one command line that must succeed: its JSON data (``want_json``) or its
        output text; :class:`CommandFailed` (a :class:`CtlError`) names the command and
        memifd's one-line error when memifd refused it."""
        reply = self.request(command, want_json)
        if not reply.get("ok"):
            raise CommandFailed(f"memifd: {command}: {str(reply.get('output')).strip()}")
        return reply.get("data") if want_json else reply.get("output")

    def close(self) -> None:
        """Close the connection."""
        self._sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------- completion
class Completer:
    """Tab completion from the command list ``help --json`` gives: keywords, then arguments.

    Words already typed may be abbreviations, as the daemon accepts them.  After a command's
    keywords, its usage says what comes next: literal words and alternatives (``up|down``,
    ``detail``) are offered as they are, a placeholder (``<interface>``) by asking
    ``values(placeholder)``, which the shell answers from the daemon (interface names,
    bridge-domain ids, node names); a placeholder it does not know offers nothing.
    """

    def __init__(
        self,
        commands: Iterable[dict[str, Any]],
        values: Callable[[str], list[str]] | None = None,
    ) -> None:
        self.tree: dict[str, Any] = {}
        self.usage: dict[tuple[str, ...], list[list[str]]] = {}
        for cmd in commands:
            node = self.tree
            path = tuple(cmd.get("path", []))
            for word in path:
                node = node.setdefault(word, {})
            self.usage[path] = _usage_slots(str(cmd.get("usage", "")))
        self.values = values or (lambda _placeholder: [])

    def candidates(self, line: str) -> list[str]:
        """Keywords or arguments that complete the last (partial) word of ``line``."""
        words = line.split()
        partial = "" if not words or line.endswith(" ") else words.pop()
        node = self.tree
        path: list[str] = []
        args: list[str] = []
        for w in words:
            if args or not node:
                args.append(w)
                continue
            found = [w] if w in node else [k for k in node if k.startswith(w)]
            if len(found) != 1:
                if tuple(path) not in self.usage:
                    return []
                args.append(w)  # the command's first argument
                continue
            path.append(found[0])
            node = node[found[0]]
        out = set() if args else {k for k in node if k.startswith(partial)}
        for word in self._argument(tuple(path), len(args)):
            if word.startswith(partial):
                out.add(word)
        return sorted(out)

    def _argument(self, path: tuple[str, ...], position: int) -> list[str]:
        slots = self.usage.get(path)
        if not slots:
            return []
        if ["..."] in slots[: position + 1] or position >= len(slots):
            if ["..."] not in slots:
                return []
            position = slots.index(["..."]) - 1  # "<interface> ...": more of the same
        out: list[str] = []
        for alternative in slots[position]:
            if alternative.startswith("<"):
                with contextlib.suppress(CtlError, OSError, ValueError):
                    out += self.values(alternative)
            elif alternative != "...":
                out.append(alternative)
        return out

    def readline_hook(self, text: str, state: int) -> str | None:
        """The function ``readline.set_completer`` takes."""
        import readline

        if state == 0:
            line = readline.get_line_buffer()[: readline.get_endidx()]
            self._matches = [c + " " for c in self.candidates(line)]
        return self._matches[state] if state < len(self._matches) else None


def _usage_slots(usage: str) -> list[list[str]]:
    """``"<interface> up|down"`` -> ``[["<interface>"], ["up", "down"]]``: what each
    argument position accepts (brackets dropped: optional words are offered too)."""
    slots = []
    for token in usage.replace("[", " ").replace("]", " ").split():
        alternatives = [t for t in token.split("|") if t]
        if alternatives:
            slots.append(alternatives)
    return slots


INTERFACE_ARGS = ("<interface>", "<peer>", "<src>", "<dst>")


def daemon_values(client: Client) -> Callable[[str], list[str]]:
    """Placeholder values the daemon knows, asked for at each completion."""

    def values(placeholder: str) -> list[str]:
        if placeholder in INTERFACE_ARGS:
            data = client.request("show interface", want_json=True).get("data") or []
            return [str(d["name"]) for d in data]
        if placeholder == "<bd>":
            data = client.request("show bridge-domain", want_json=True).get("data") or []
            return [str(d["bd_id"]) for d in data if isinstance(d, dict) and "bd_id" in d]
        if placeholder == "<node>":
            data = client.request("show runtime", want_json=True).get("data") or {}
            return [str(n["name"]) for n in data.get("nodes", [])]
        return []

    return values


# ---------------------------------------------------------------------- running
def show(reply: dict[str, Any], want_json: bool, where: str = "") -> bool:
    """Print a reply (output on stdout, an error on stderr); True if it succeeded."""
    if not reply.get("ok"):
        message = str(reply.get("output") or "command failed").replace("\n", " ")
        print(f"memifctl: {where}{message}", file=sys.stderr, flush=True)
        return False
    data = reply.get("data")
    if want_json and data is not None:
        print(json.dumps(data, indent=2), flush=True)
    elif reply.get("output"):
        print(reply["output"], flush=True)
    return True


def run_lines(client: Client, lines: Iterable[str], want_json: bool, name: str) -> int:
    """Commands read from a file or pipe; the status is 1 if any failed."""
    status = 0
    mode = ConfigMode()  # TNSR's config-memif sub-mode
    for lineno, line in enumerate(lines, 1):
        step = mode.feed(line)
        if step.command is None:
            continue
        if show(client.request(step.command, want_json), want_json, f"{name}:{lineno}: "):
            mode.accepted(step)
        else:
            status = EXIT_FAILED
    return status


def interactive(client: Client, want_json: bool) -> int:
    """The ``memifctl# `` shell: history and tab completion; ``quit`` or EOF leaves."""
    try:
        import readline
    except ImportError:  # pragma: no cover - readline is missing on some builds
        readline = None  # type: ignore[assignment]
    history = os.path.expanduser(HISTORY)
    if readline is not None:
        with contextlib.suppress(OSError):
            readline.read_history_file(history)
        readline.set_history_length(1000)
        try:
            commands = client.request("help", want_json=True).get("data") or []
        except CtlError:
            commands = []
        completer = Completer(commands, daemon_values(client))
        readline.set_completer_delims(" \t")
        readline.set_completer(completer.readline_hook)
        readline.parse_and_bind("tab: complete")
    mode = ConfigMode()  # TNSR's config-memif sub-mode: its prompt, its exit
    try:
        while True:
            try:
                line = input(mode.prompt).strip()
            except EOFError:
                print()
                return 0
            except KeyboardInterrupt:
                print()
                continue
            if mode.prefix is None and line in ("quit", "exit", "q"):
                return 0
            step = mode.feed(line)
            if step.command is not None and show(client.request(step.command, want_json),
                                                 want_json):  # fmt: skip
                mode.accepted(step)
    finally:
        if readline is not None:
            with contextlib.suppress(OSError):
                readline.write_history_file(history)


def build_parser() -> argparse.ArgumentParser:
    """memifctl's options."""
    p = argparse.ArgumentParser(
        prog="memifctl",
        description="Send CLI commands to memifd (like vppctl); no command: interactive.",
        epilog="examples: memifctl show interface; memifctl --json show memif; "
        "memifctl set int state memif1/0 up; memifctl --commands lists every command "
        "(no daemon needed; man 8 memifctl too)",
    )
    p.add_argument(
        "-s", "--socket", default=None, metavar="PATH", help=f"CLI socket ({default_socket()})"
    )
    p.add_argument("--json", action="store_true", help="print show commands' data as JSON")
    p.add_argument(
        "--timeout",
        type=_timeout,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"give up when memifd has not answered for S seconds (default {DEFAULT_TIMEOUT:g}; "
        "0: wait for ever)",
    )
    p.add_argument(
        "--version", action="version", version=f"memifctl (memif for Python) {__version__}"
    )
    p.add_argument(
        "--commands",
        action="store_true",
        help="list memifd's commands with their usage and exit (works without a daemon)",
    )
    p.add_argument("words", nargs=argparse.REMAINDER, help="the command, e.g. show interface")
    return p


def command_reference() -> list[dict[str, Any]]:
    """memifd's commands (``path``, ``usage``, ``help``) as shipped with this package:
    ``commands.json``, generated from the daemon's registry by scripts/reference.py."""
    text = resources.files(__package__).joinpath("commands.json").read_text(encoding="utf-8")
    return list(json.loads(text))


def print_reference(want_json: bool) -> int:
    """``memifctl --commands``: every command, its usage and help."""
    ref = command_reference()
    if want_json:
        print(json.dumps(ref, indent=2))
        return 0
    for c in ref:
        print(" ".join([*c["path"], c["usage"]]).rstrip())
        print(f"    {c['help']}")
    return 0


def _timeout(text: str) -> float | None:
    """``--timeout``: seconds >= 0 (0: none)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 86400:  # nan and inf fail here too
        raise argparse.ArgumentTypeError(f"{text}: expected 0..86400 seconds (0: wait for ever)")
    return value


def main(argv: Sequence[str] | None = None, stdin: TextIO | None = None) -> int:
    """Run memifctl; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.commands:
        return print_reference(args.json)
    stdin = stdin or sys.stdin
    path = args.socket or default_socket()
    try:
        with Client(path, args.timeout or None) as client:
            if args.words:
                ok = show(client.request(" ".join(args.words), args.json), args.json)
                return 0 if ok else EXIT_FAILED
            if stdin.isatty():
                return interactive(client, args.json)
            return run_lines(client, stdin, args.json, "<stdin>")
    except CtlError as exc:
        print(f"memifctl: {exc}", file=sys.stderr)
        return EXIT_NO_DAEMON
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # stdout closed early (| head)
        return 0


if __name__ == "__main__":
    sys.exit(main())
