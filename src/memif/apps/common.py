"""What every ``memif`` tool shares: connection options, connecting, live counters."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from .. import Interface, Socket, testing
from ..config import Role
from ..errors import ConfigError

DEFAULT_SOCKET = "/run/vpp/memif.sock"


def _role(text: str) -> str:
    try:
        return Role.parse(text).value
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_connection_args(parser: argparse.ArgumentParser, *, role: str = "client") -> None:
    """The options every tool takes to reach its peer."""
    g = parser.add_argument_group("connection")
    g.add_argument(
        "--socket",
        default=DEFAULT_SOCKET,
        help=f"socket path, @name or abstract:name (default {DEFAULT_SOCKET})",
    )
    g.add_argument(
        "--role",
        type=_role,
        default=role,
        help=f"client (slave) or server (master) (default {role})",
    )
    g.add_argument("--id", type=int, default=0, help="interface id (default 0)")
    g.add_argument("--secret", default="", help="shared secret, up to 23 characters")
    g.add_argument("--mode", default="ethernet", help="ethernet, ip or punt-inject")
    g.add_argument("--queues", type=int, default=1, help="queues per direction (default 1)")
    g.add_argument("--ring-size", type=int, default=1024, help="ring slots (default 1024)")
    g.add_argument("--buffer-size", type=int, default=2048, help="buffer bytes (default 2048)")
    g.add_argument("--polling", action="store_true", help="poll receive queues (no interrupts)")
    g.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the peer (default 10)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def open_interface(args: argparse.Namespace, app_name: str) -> tuple[Socket, Interface]:
    """Create the socket and interface the options describe and wait until connected.

    Raises TimeoutError with the last disconnect reason if the peer never comes.
    """
    sock = Socket(args.socket, app_name=app_name)
    try:
        iface = sock.create_interface(
            role=args.role,
            id=args.id,
            secret=args.secret,
            mode=args.mode,
            rx_queues=args.queues,
            tx_queues=args.queues,
            ring_size=args.ring_size,
            buffer_size=args.buffer_size,
            polling=args.polling,
            reconnect_interval=0.2,
        )
        if not testing.drive(sock, until=lambda: iface.connected, timeout=args.connect_timeout):
            reason = iface.remote_disc_reason or iface.local_disc_reason or "no peer"
            raise TimeoutError(
                f"not connected after {args.connect_timeout:g} s on {args.socket} ({reason})"
            )
    except BaseException:
        sock.close()
        raise
    return sock, iface


class LiveLine:
    """A status line refreshed in place on a terminal, once per ``period`` otherwise."""

    def __init__(
        self, stream: TextIO = sys.stderr, period: float = 1.0, enabled: bool = True
    ) -> None:
        self.stream = stream
        self.period = period
        self.enabled = enabled
        self.tty = stream.isatty()
        self._last = 0.0
        self._width = 0

    def update(self, text: str, force: bool = False) -> None:
        """Show ``text`` if a refresh is due (every 0.2 s on a tty)."""
        now = time.monotonic()
        if not self.enabled or (
            not force and now - self._last < (0.2 if self.tty else self.period)
        ):
            return
        self._last = now
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the line on a terminal."""
        if self.enabled and self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()


def print_json(obj: Any) -> None:
    """One JSON object on stdout."""
    print(json.dumps(obj), flush=True)


def fail(message: str) -> int:
    """Print a one-line error and return the exit status for failures."""
    print(f"memif: {message}", file=sys.stderr)
    return 1
