"""What every ``memif`` tool shares: options, connecting, waiting, signals, live counters."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, NoReturn, TextIO

from .. import AccessPolicy, Interface, RxQueue, Socket
from ..access import parse_gids, parse_uids
from ..config import DEFAULT_SOCKET, Role, config_arg, parse_mac
from ..loop import EventLoop
from ..wire import Mode

_role = config_arg(lambda text: Role.parse(text).value)


def ipv4_arg(text: str) -> bytes:
    """An argparse type: a dotted-quad IPv4 address to its 4 bytes."""
    try:
        return ipaddress.IPv4Address(text).packed
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad IPv4 address {text!r}") from None


mac_arg = config_arg(parse_mac)
"""An argparse type: ``aa:bb:cc:dd:ee:ff`` to its 6 bytes."""


def one_line_errors(parser: argparse.ArgumentParser, command: str) -> None:
    """Usage errors as one ``memif: COMMAND: ...`` line, exit status 2 (not argparse's usage)."""

    def error(message: str) -> NoReturn:
        print(f"memif: {command}: {message} (see memif {command} --help)", file=sys.stderr)
        sys.exit(2)

    parser.error = error  # type: ignore[method-assign]


def add_connection_args(
    parser: argparse.ArgumentParser, *, role: str = "client", connect_timeout: float | None = 10.0
) -> None:
    """The options every tool takes to reach its peer.

    ``connect_timeout`` None: by default the tool waits for its peer as long as it runs.
    """
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
    wait = ": as long as it runs" if connect_timeout is None else f" {connect_timeout:g}"
    g.add_argument(
        "--connect-timeout",
        type=float,
        default=connect_timeout,
        help=f"seconds to wait for the peer (default{wait})",
    )
    add_access_args(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


ACCESS_OPTIONS: tuple[tuple[str, Callable[[str], frozenset[int]], str, str], ...] = (
    (
        "--allow-uid",
        parse_uids,
        "U[,U..]",
        "also admit these users (numbers or names): as server, clients run by them; "
        "as client, a listener run by them (e.g. a container's uid)",
    ),
    (
        "--allow-gid",
        parse_gids,
        "G[,G..]",
        "also admit members of these groups (numbers or names; primary or supplementary)",
    ),
    (
        "--unsealed-uid",
        parse_uids,
        "U[,U..]",
        "use memory from these users (besides root and ours) even when it cannot be sealed "
        "against shrinking (hugetlbfs memfds of VPP or DPDK zero-copy). RISK: such a peer can "
        "shrink it under us and kill this tool with SIGBUS",
    ),
)
"""The access options of every tool: flag, parser, metavar, help."""


def add_access_args(parser: argparse.ArgumentParser) -> None:
    """Who the tool's memif socket admits besides root and the tool's own uid (both roles)."""
    g = parser.add_argument_group(
        "access",
        "Every peer's credentials are checked (SO_PEERCRED): as server, each client's; as "
        "client, the listener's. Root and this tool's own uid are always admitted.",
    )
    for flag, parse, metavar, text in ACCESS_OPTIONS:
        g.add_argument(
            flag, type=config_arg(parse), default=frozenset(), metavar=metavar, help=text
        )


def access_policy(args: argparse.Namespace) -> AccessPolicy:
    """The :class:`AccessPolicy` the ``--allow-uid/--allow-gid/--unsealed-uid`` options describe."""
    return AccessPolicy.of(args.allow_uid, args.allow_gid, args.unsealed_uid)


def host_mode(args: argparse.Namespace, command: str) -> Mode:
    """The ``--mode`` of a tool that is an IPv4 host: ethernet or ip (ValueError otherwise)."""
    mode = Mode.parse(args.mode)
    if mode is Mode.PUNT_INJECT:
        raise ValueError(f"{command} supports --mode ethernet and ip, not punt-inject")
    return mode


def open_interface(
    args: argparse.Namespace, app_name: str, stop: StopRequest | None = None
) -> tuple[Socket, Interface]:
    """Create the socket and interface the options describe and wait until connected
    (or until ``stop`` turns true: then the interface is returned unconnected).

    Raises TimeoutError with the last disconnect reason if the peer never comes.
    """
    sock = Socket(args.socket, app_name=app_name, access=access_policy(args))
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
        control_loop(sock).run(
            until=lambda: iface.connected or bool(stop), duration=args.connect_timeout
        )
        if not iface.connected and not stop:
            reason = iface.remote_disc_reason or iface.local_disc_reason or "no peer"
            raise TimeoutError(
                f"not connected after {args.connect_timeout:g} s on {args.socket} ({reason})"
            )
    except BaseException:
        sock.close()
        raise
    return sock, iface


def interface_error(exc: BaseException, socket: str) -> str:
    """One line for a failure of :func:`open_interface`."""
    if isinstance(exc, OSError) and not isinstance(exc, TimeoutError) and exc.strerror:
        return f"cannot use socket {socket}: {exc.strerror}"
    return str(exc)


def control_loop(sock: Socket, clock: Callable[[], float] = time.monotonic) -> EventLoop:
    """A tool's :class:`~memif.loop.EventLoop`, serving ``sock``'s control plane (for
    :func:`wait_rx`); ``clock`` is the one the tool's deadlines are on."""
    loop = EventLoop(clock=clock)
    loop.add_socket(sock)
    return loop


def wait_rx(loop: EventLoop, rxqs: Sequence[RxQueue], timeout: float, work: int = 0) -> None:
    """A turn of a tool that receives by itself, and its sleep when idle.

    ``loop`` is the tool's :class:`~memif.loop.EventLoop`, kept from call to call, with
    the tool's socket added (:meth:`~memif.loop.EventLoop.add_socket`).  ``rxqs`` are the
    interface's queues of the moment, each served in the mode its flag says (a polling
    queue never lets the loop sleep); ``work`` is what the caller just received: a busy
    turn does not sleep, and serves the control plane every
    :data:`~memif.loop.CONTROL_PERIOD`.  Idle, it sleeps until a queue is kicked, the
    control socket is readable, a timer of the socket is due, or ``timeout`` seconds,
    and then serves the control plane once.
    """
    loop.update_rx(rxqs)
    deadline = loop.run_once(work=work)
    if deadline > loop.now:
        loop.sleep(min(deadline, loop.now + timeout))
        loop.run_once()


class StopRequest:
    """SIGINT/SIGTERM handler: the first signal asks the loops to stop cleanly (the object
    turns true); a second one of ``escalate`` raises KeyboardInterrupt, to give up at once."""

    def __init__(self, escalate: Collection[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self.signal: int | None = None
        self.escalate = frozenset(escalate)

    def __bool__(self) -> bool:
        return self.signal is not None

    def __call__(self, signum: int, frame: object) -> None:
        if self.signal is None:
            self.signal = signum
        elif signum in self.escalate:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGINT and SIGTERM for the duration of the block."""
        old = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)


class LiveLine:
    """A status line refreshed in place on a terminal, once per ``period`` otherwise.

    Every tool's live line is one of these: each update shows the seconds since the run
    started (:meth:`restart`) before the tool's running totals, and :meth:`finish`
    shows the run's totals as its last state (``12.3 s (done)  ...``).
    """

    def __init__(
        self,
        stream: TextIO = sys.stderr,
        period: float = 1.0,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.period = period
        self.enabled = enabled
        self.tty = stream.isatty()
        self.clock = clock
        self.started = clock()
        self._last = 0.0
        self._width = 0

    @property
    def interval(self) -> float:
        """Seconds between refreshes: 0.2 on a terminal, ``period`` otherwise."""
        return 0.2 if self.tty else self.period

    def restart(self) -> None:
        """The run starts now: elapsed time counts from here."""
        self.started = self.clock()

    @property
    def elapsed(self) -> float:
        """Seconds since the run started."""
        return self.clock() - self.started

    def update(self, text: str, force: bool = False) -> None:
        """Show the elapsed time and ``text`` (running totals) if a refresh is due (every
        :attr:`interval` seconds) or ``force``."""
        self._show(f"{self.elapsed:.1f} s  {text}", force)

    def finish(self, text: str, seconds: float | None = None, note: str = "done") -> None:
        """Show the run's totals as the last state (``seconds``: the run's own measure
        of its length, else the elapsed time), then end the line."""
        self._show(f"{self.elapsed if seconds is None else seconds:.1f} s ({note})  {text}", True)
        self.close()

    def _show(self, text: str, force: bool) -> None:
        now = self.clock()
        if not self.enabled or (not force and now - self._last < self.interval):
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
            self._width = 0


def add_reconnect_args(parser: argparse._ActionsContainer) -> None:
    """``--reconnect``/``--no-reconnect``: whether a disconnect ends the run (every tool
    that runs until stopped takes it, with one default: :func:`reconnect_wanted`)."""
    parser.add_argument(
        "--reconnect",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep running across a disconnect (a port flap), waiting for the peer to come "
        "back (until --duration ends, if given); counters continue (default: on, off with "
        "--count)",
    )


def reconnect_wanted(args: argparse.Namespace) -> bool:
    """``--reconnect`` as given, else on unless the run counts its packets (``--count``):
    such a run ends at its count or when the peer leaves; a ``--duration`` still ends a
    run that waits for its peer."""
    if args.reconnect is not None:
        return bool(args.reconnect)
    return not getattr(args, "count", None)


def package_root() -> str:
    """The directory the ``memif`` package is imported from (``src`` in a checkout)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def child_env() -> dict[str, str]:
    """The environment of a child process: it must import this very package, however this
    process found it (:func:`package_root` first on ``PYTHONPATH``)."""
    env = dict(os.environ)
    paths = [package_root(), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def print_json(obj: Any) -> None:
    """One JSON object on stdout."""
    print(json.dumps(obj), flush=True)


def fail(message: str) -> int:
    """Print a one-line error and return the exit status for failures."""
    print(f"memif: {message}", file=sys.stderr)
    return 1
