"""``memif demo``: the switch daemon and its peers on a small topology, with live counters.

::

    peer A ── memif1/0 ┐                 ┌ memif2/0 ── peer C
                       └ bridge-domain 1 ┘
                         │ SPAN (rx) of memif1/0 and memif2/0
                       memif3/0 ── memif monitor B

The command starts memifd (the switch) with three memif ports on sockets in a temporary
directory, ``memif monitor`` on the mirror port B, and peers A and C: DPDK testpmd when it
is installed, else ``memif gen``.  A sends a paced stream to C's MAC address and C reflects
every frame back; the switch's counters (read through its CLI socket, as ``memifctl`` does)
and the monitor's count are shown live; after ``--duration`` seconds everything is stopped
in order and a summary says whether every frame crossed the bridge both ways and reached the
monitor.

``memif demo --pair`` is the first demo: two processes exchanging checked traffic directly
(:mod:`.demo_pair`).  The pieces: :mod:`.demo_run` (the run), :mod:`.demo_topo` (memifd, the
monitor, the CLI), :mod:`.demo_peers` (the peers), :mod:`.demo_view` (the screen),
:mod:`.demo_proc` (child processes); :mod:`.demo_traffic` and :mod:`.demo_echo` (``--pair``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ...errors import MemifError
from .echo import Echo, run_peer
from .pair import Peer, run_demo
from .proc import DemoError
from .run import run_topology
from .traffic import (
    CLIENT_MAC,
    SEQ_AT,
    SERVER_MAC,
    SIZES,
    Client,
    FrameBank,
    seq_bytes,
)

__all__ = [
    "CLIENT_MAC",
    "SEQ_AT",
    "SERVER_MAC",
    "SIZES",
    "Client",
    "DemoError",
    "Echo",
    "FrameBank",
    "Peer",
    "add_parser",
    "main",
    "run_demo",
    "run_topology",
    "seq_bytes",
]

DEFAULT_DURATION = 8.0
DEFAULT_PAIR_DURATION = 5.0
DEFAULT_RATE = 20000.0
PAIR_DEFAULTS = {"ring_size": 1024, "buffer_size": 2048}
TOPOLOGY_ONLY = ("peers", "rate", "keep")

EPILOG = """\
examples:
  memif demo                     the switch, two peers and a monitor: 8 s, live counters
  memif demo --peers python      Python peers (memif gen) even where testpmd is installed
  memif demo --duration 30       run longer (Ctrl-C stops early and still summarises)
  memif demo --json              the summary as one JSON object on stdout
  memif demo --keep              leave memifd running afterwards, to explore with memifctl
  memif demo --pair              the first demo: two processes, every frame checked

The exit status is 0 only when traffic flowed both ways, nothing was lost on the bridge
(no drop, every frame that entered the switch left it) and the monitor saw every frame;
130 after Ctrl-C.

With --pair, a second process echoes every frame back with its MAC addresses swapped and
this one checks each (length, addresses, order, every byte); the exit status is 0 only
when every frame came back intact and in order.
"""


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value

    return parse


def _usage(args: argparse.Namespace) -> str:
    """What is wrong with this combination of options ("" if nothing)."""
    if args.pair or args.peer:
        given = [o for o in TOPOLOGY_ONLY if getattr(args, o) not in (None, False)]
        if given and not args.peer:
            return f"--{given[0]} is not an option of --pair"
        return ""
    given = [o for o in (*PAIR_DEFAULTS, "socket") if getattr(args, o) is not None]
    if given:
        return f"--{given[0].replace('_', '-')} is an option of --pair only"
    return ""


def main(args: argparse.Namespace) -> int:
    """Entry point of ``memif demo``."""
    problem = _usage(args)
    if problem:
        print(f"memif: demo: {problem} (see memif demo --help)", file=sys.stderr)
        return 2
    if args.pair or args.peer:
        for key, value in PAIR_DEFAULTS.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
        if args.duration is None:
            args.duration = DEFAULT_PAIR_DURATION
    if args.peer:
        return run_peer(args)
    try:
        if args.pair:
            return run_demo(args)
        if args.duration is None:
            args.duration = DEFAULT_DURATION
        if args.rate is None:
            args.rate = DEFAULT_RATE
        if args.peers is None:
            args.peers = "auto"
        return run_topology(args)
    except (OSError, DemoError, MemifError) as exc:
        print(f"memif demo: {exc}", file=sys.stderr)
        return 1


def add_parser(subparsers: Any) -> None:
    """Register ``memif demo``."""
    p = subparsers.add_parser(
        "demo",
        help="the switch and its peers: live traffic through memifd, then a summary (start here)",
        description=(
            "Start memifd, the switch daemon, with three memif ports in a temporary directory: "
            "A and C bridged, B a mirror (SPAN) of both with memif monitor attached.  Peers A "
            "and C are DPDK testpmd when it is installed, else memif gen: A sends a paced "
            "stream to C and C reflects every frame back.  Live counters show each switch "
            "port's packets, rates and drops and the monitor's count; after --duration "
            "seconds everything stops in order and a summary checks that every frame crossed "
            "the bridge both ways and reached the monitor.  With --pair: the first demo, two "
            "processes over one memif connection, where the server echoes every frame back "
            "and the client checks every byte."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--duration",
        type=_positive(float),
        default=None,
        metavar="SECONDS",
        help=f"how long to send (default {DEFAULT_DURATION:g}; {DEFAULT_PAIR_DURATION:g} "
        "with --pair)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument(
        "--connect-timeout",
        type=_positive(float),
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for each process to come up (default 10)",
    )
    g = p.add_argument_group("the switch demo")
    g.add_argument(
        "--peers",
        choices=("auto", "testpmd", "python"),
        default=None,
        help="peers A and C: DPDK testpmd, memif gen (python), or testpmd if it is "
        "installed (auto, the default)",
    )
    g.add_argument(
        "--rate",
        type=_positive(float),
        default=None,
        metavar="PPS",
        help=f"frames per second A sends to C (default {DEFAULT_RATE:,.0f}; testpmd's rounds "
        "are paced to it too)",
    )
    g.add_argument(
        "--keep",
        action="store_true",
        help="leave memifd running at the end and print how to reach it with memifctl",
    )
    g = p.add_argument_group("--pair: two processes, every frame checked")
    g.add_argument(
        "--pair", action="store_true", help="run the two-process demo instead of the switch"
    )
    g.add_argument(
        "--socket",
        default=None,
        help="socket for the two peers (default: a fresh abstract name, @memif-demo-...)",
    )
    g.add_argument(
        "--ring-size", type=_positive(int), default=None, help="ring slots (default 1024)"
    )
    g.add_argument(
        "--buffer-size",
        type=_positive(int),
        default=None,
        help="buffer bytes (default 2048; a jumbo frame takes several)",
    )
    p.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=main)
