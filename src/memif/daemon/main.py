"""``memifd``: the switch daemon's entry point (options only; :mod:`.process` runs it)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .. import __version__
from ..access import parse_gids, parse_uids
from ..config import config_arg
from ..ctl.main import default_runtime_dir
from ..vswitch.memif_port import DEFAULT_VECTOR
from .process import LOG_LEVELS, Options, run
from .server import IDLE_TIMEOUT, MAX_CLIENTS, MAX_CLIENTS_PER_UID

EPILOG = """\
The startup file holds CLI commands, one per line (# comments and blank lines are
ignored), run before the CLI socket opens; a failing line stops memifd with its line
number.  Example:

  create memif socket id 1 filename @sw1 allow-uid 1001
  create interface memif id 0 socket-id 1 master
  set interface state memif1/0 up
  set interface l2 bridge memif1/0 1

Socket id 0 is VPP's /run/vpp/memif.sock, every memif tool's default --socket.
Every memif socket admits root and memifd's own uid; give each tenant its own socket
and allow-uid (abstract names like @sw1 have no file permissions: only this check
protects them).  Then: memifctl -s SOCKET show interface.

Signals: SIGINT or SIGTERM stops memifd cleanly (peers get DISCONNECT, socket files are
removed); SIGHUP reopens the --log file (for logrotate) and is never fatal.  Under
systemd (deploy/memifd.service, Type=notify): READY=1 once the startup file ran, WATCHDOG=1
from the main loop when WatchdogSec is set, log lines with a syslog priority and no timestamp.
"""


def build_parser() -> argparse.ArgumentParser:
    """memifd's options."""
    p = argparse.ArgumentParser(
        prog="memifd",
        description="A VPP-style L2 switch with memif ports, configured through a CLI socket.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-c", "--config", metavar="FILE", help="startup file of CLI commands")
    p.add_argument(
        "--cli-socket",
        metavar="PATH",
        help="CLI socket (default: <runtime-dir>/cli.sock)",
    )
    p.add_argument(
        "--runtime-dir",
        metavar="DIR",
        help=f"runtime directory for default sockets (default here: {default_runtime_dir()})",
    )
    p.add_argument(
        "--log", metavar="FILE", help="log to FILE instead of stderr (reopened on SIGHUP)"
    )
    p.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help=f"log messages of LEVEL and above: {', '.join(LOG_LEVELS)} (default info)",
    )
    p.add_argument(
        "--buffers",
        type=_int_in("buffers", 256, 1 << 22),
        default=32768,
        metavar="N",
        help="packet buffers in the switch's pool (default 32768)",
    )
    p.add_argument(
        "--vector-size",
        type=_int_in("vector size", 1, 1 << 16),
        default=DEFAULT_VECTOR,
        metavar="N",
        help=f"descriptors memif-input takes from one queue per turn (default {DEFAULT_VECTOR}; "
        "VPP's frames hold 256, Python wants longer vectors)",
    )
    p.add_argument(
        "--cli-group",
        metavar="GROUP",
        help="let GROUP use the CLI socket (mode 0660; default 0600, owner only); the CLI "
        "also checks each client's credentials (SO_PEERCRED): root, memifd's uid, GROUP",
    )
    p.add_argument(
        "--cli-idle-timeout",
        type=_seconds,
        default=IDLE_TIMEOUT,
        metavar="SECONDS",
        help=f"close a CLI client that sends nothing for this long (default {IDLE_TIMEOUT:g}); "
        f"one uid holds at most {MAX_CLIENTS_PER_UID} of the {MAX_CLIENTS} CLI connections",
    )
    p.add_argument(
        "--socket-mode",
        type=_mode,
        default=0o660,
        metavar="OCTAL",
        help="permissions of the memif socket files it listens on (default 0660); "
        "abstract names (@name) have no file: only the allow-lists protect them",
    )
    p.add_argument(
        "--socket-group",
        metavar="GROUP",
        help="group of the memif socket files (default: the daemon's); its members are "
        "also admitted on every memif socket, abstract ones included",
    )
    p.add_argument(
        "--socket-allow-uid",
        type=config_arg(parse_uids),
        default=frozenset(),
        metavar="U[,U..]",
        help="users (numbers or names) every memif socket admits besides root and memifd's "
        "own uid (checked with SO_PEERCRED; 'create memif socket ... allow-uid' adds per socket)",
    )
    p.add_argument(
        "--socket-allow-gid",
        type=config_arg(parse_gids),
        default=frozenset(),
        metavar="G[,G..]",
        help="groups whose members every memif socket admits",
    )
    p.add_argument(
        "--socket-unsealed-uid",
        type=config_arg(parse_uids),
        default=frozenset(),
        metavar="U[,U..]",
        help="users besides root and memifd's uid whose memory is used even when it cannot "
        "be sealed against shrinking (hugetlbfs). RISK: such a peer can kill memifd with SIGBUS",
    )
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (interfaces, memif queues, "
        "nodes, errors, buffers, the process); needs the 'metrics' extra (prometheus_client)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging (--log-level debug)")
    p.add_argument("--version", action="version", version=_version())
    return p


def _version() -> str:
    return f"memifd (memif for Python) {__version__}"


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0.1 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"{text}: expected 0.1..86400 seconds")
    return value


def _mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an octal mode: {text!r}") from None
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"{text}: expected 000..777")
    return mode


def _int_in(what: str, low: int, high: int) -> Callable[[str], int]:
    """An option type: an integer from ``low`` to ``high``, with a one-line error."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= n <= high:
            raise argparse.ArgumentTypeError(f"{what} {n}: expected {low}..{high}")
        return n

    return parse


def main(argv: list[str] | None = None) -> int:
    """Parse the options and run the daemon; returns the exit status."""
    args = build_parser().parse_args(argv)
    return run(Options(**vars(args)))  # every option's dest is an Options field


if __name__ == "__main__":
    sys.exit(main())
