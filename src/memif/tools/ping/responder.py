"""``memif responder``: answer ARP and ping on a memif, like libmemif's ``icmp_responder``.

The responder owns one IPv4 address (``--ip``) and one MAC address (``--mac``).  On every
receive queue it takes whole bursts and answers, on the transmit queue of the same index:

* ARP requests for its address (htype Ethernet, ptype IPv4) with an ARP reply from its MAC;
* ICMP echo requests to its address (valid IP and ICMP checksums, not fragmented) with an
  echo reply: addresses swapped, TTL 64, both checksums recomputed, data echoed unchanged.

Everything else is counted as ignored, including unicast frames for another MAC and packets
with bad checksums.  ``--reflect`` turns it into libmemif's Release-build behaviour
(protocol notes §14 item 18): every frame goes back with its MAC addresses swapped.

In ``--mode ip`` there is no Ethernet header: no ARP, ICMP echo is answered on bare IPv4
packets, and ``--reflect`` sends every packet back unchanged.

Replies are written straight into the transmit buffers in shared memory and published once
per burst; the one copy is the request into the reply buffer.  Replies larger than one
transmit buffer go out chained.  Which frames are answered, and the replies' headers, are
:mod:`memif.arp_icmp`'s (the answerer memifd's ``arp-input`` and ``ip4-input`` use too);
:mod:`memif.tools.ping.icmp` writes the replies into transmit buffers; this module is the
loop and the command.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from typing import Any

from ... import packet as pkt
from ...config import format_mac, random_mac
from ...errors import MemifError
from ...interface import Interface
from ...sock import Socket
from ...wire import Mode
from ..common import (
    LiveLine,
    StopRequest,
    add_connection_args,
    add_reconnect_args,
    control_loop,
    fail,
    host_mode,
    interface_error,
    ipv4_arg,
    mac_arg,
    one_line_errors,
    open_interface,
    print_json,
    reconnect_wanted,
    wait_rx,
)
from .icmp import Responder

APP_NAME = "memif-responder"
DEFAULT_IP = "192.168.1.2"  # memif ping's default target (its own address: 192.168.1.1)

EPILOG = f"""\
examples:
  # answer 192.168.1.2 as a client of VPP's default socket (VPP is the server)
  memif responder --ip 192.168.1.2

  # be the server, so that `memif ping` or a VPP client connects to us
  memif responder --role server --socket @pingme --ip 10.0.0.1
  memif ping --socket @pingme 10.0.0.1 -c 3

  # let a container running as uid 1000 ping it (root and our own uid are always admitted)
  memif responder --role server --socket @pingme --ip 10.0.0.1 --allow-uid 1000

  # echo every frame back with the MAC addresses swapped
  memif responder --role server --socket @pingme --reflect

The default address is {DEFAULT_IP} (libmemif's icmp_responder answers on 192.168.1.1:
--ip 192.168.1.1 stands in for it), and the default role is client, as icmp_responder
connects to VPP.  Runs until interrupted (Ctrl-C, SIGTERM) or for
--duration seconds and keeps serving across reconnects (--no-reconnect: the peer leaving
ends it).  Live counters go to stderr; --json
prints a final summary object on stdout.  It waits for its peer as long as it runs unless
--connect-timeout is given (exit status 1 if the peer did not come in time; an interrupt
while waiting is a normal stop, exit status 0).
"""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text!r}")
    return value


def add_parser(subparsers: Any) -> None:
    """Register ``memif responder``."""
    p = subparsers.add_parser(
        "responder",
        help="answer ARP and ping (ICMP echo) like libmemif's icmp_responder",
        description=(
            "Answer ARP requests and ICMP echo requests (ping) for one IPv4 address on a "
            "memif interface, on every queue; count and ignore everything else."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--ip",
        type=ipv4_arg,
        default=ipv4_arg(DEFAULT_IP),
        metavar="A.B.C.D",
        help=f"IPv4 address to answer for (default {DEFAULT_IP})",
    )
    p.add_argument(
        "--mac",
        type=mac_arg,
        default=None,
        metavar="MAC",
        help="MAC address replies come from (default: random 02:fe:xx:xx:xx:xx)",
    )
    p.add_argument(
        "--reflect",
        action="store_true",
        help="echo every frame back with the MAC addresses swapped (no ARP/ICMP logic)",
    )
    p.add_argument(
        "--duration",
        type=_seconds,
        default=None,
        metavar="S",
        help="stop after S seconds (default: run until interrupted)",
    )
    add_connection_args(p, connect_timeout=None)  # a responder waits as long as it runs
    add_reconnect_args(p)
    p.set_defaults(func=run)
    one_line_errors(p, "responder")


# ---------------------------------------------------------------------- the loop


def serve(
    sock: Socket,
    iface: Interface,
    responder: Responder,
    *,
    until: float | None = None,
    live: LiveLine | None = None,
    stop: StopRequest | None = None,
    reconnect: bool = True,
) -> None:
    """Answer on every queue of ``iface`` until ``time.monotonic()`` reaches ``until``.

    Busy bursts are processed back to back, the control plane served every 50 ms; when
    every queue is empty the loop sleeps on the control socket and the queues' interrupt
    eventfds (queues in polling mode: it spins).  See :func:`~memif.tools.common.wait_rx`.
    Without ``reconnect`` the peer leaving ends it.
    """
    loop = control_loop(sock)
    was_up = iface.connected
    while not stop:
        now = time.monotonic()
        if until is not None and now >= until:
            return
        got = 0
        rxqs = iface.rx_queues if iface.connected else []
        if rxqs:
            txqs = iface.tx_queues
            for qi, rxq in enumerate(rxqs):
                got += responder.process(rxq, txqs[qi % len(txqs)])
        if live is not None:
            live.update(responder.status())
        wait_rx(loop, rxqs, 0.25 if until is None else max(0.0, min(0.25, until - now)), got)
        if iface.connected != was_up:
            was_up = iface.connected
            if was_up:
                _note(live, f"responder: connected to {iface.remote_app_name or 'peer'}")
            else:
                reason = iface.remote_disc_reason or iface.local_disc_reason or "?"
                then = "waiting for it to come back" if reconnect else "stopping"
                _note(live, f"responder: disconnected ({reason}); {then}")
                if not reconnect:
                    return


def _note(live: LiveLine | None, text: str) -> None:
    if live is not None:
        live.close()
    print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """``memif responder``: returns the exit status."""
    try:
        mode = host_mode(args, "responder")
    except ValueError as exc:
        return fail(str(exc))
    start = time.monotonic()
    until = None if args.duration is None else start + args.duration
    wait = args.connect_timeout
    if wait is None or wait <= 0:
        wait = float("inf")
    if args.duration is not None:
        wait = min(wait, args.duration)
    args.connect_timeout = wait
    mac = args.mac or random_mac()
    responder = Responder(args.ip, mac, reflect=args.reflect, l2=mode is Mode.ETHERNET)
    what = "reflecting every frame" if args.reflect else f"answering {pkt.ip4_str(args.ip)}"
    live = LiveLine()
    connects = 0
    # SIGINT/SIGTERM set a flag the loops look at (a second one raises KeyboardInterrupt):
    # an exception raised wherever the signal lands could be swallowed (a finalizer's).
    stop = StopRequest()
    iface: Interface | None = None
    with stop.installed():  # before saying we wait: a signal from then on stops us
        try:
            _note(
                None,
                f"responder: {what} from {format_mac(mac)} on {args.socket} "
                f"({args.role}, id {args.id}); waiting for the peer",
            )
            sock, iface = open_interface(args, APP_NAME, stop)
        except (TimeoutError, MemifError, OSError) as exc:
            return fail(interface_error(exc, args.socket))
        except KeyboardInterrupt:
            pass  # stopped before any peer came: a normal stop, with zero counters
        if iface is not None and not iface.connected:  # stopped before any peer came
            sock.close()
        elif iface is not None:
            try:
                iface.config.mac = mac
                _note(
                    None,
                    f"responder: connected to {iface.remote_app_name or 'peer'} "
                    f"({len(iface.rx_queues)} rx queues)",
                )
                with contextlib.suppress(KeyboardInterrupt):
                    serve(
                        sock, iface, responder, until=until, live=live, stop=stop,
                        reconnect=reconnect_wanted(args),
                    )  # fmt: skip
                live.finish(responder.status())
            finally:
                sock.close()
            connects = iface.connect_count
    if args.json:
        print_json(
            {
                **responder.counters(),
                "ip": pkt.ip4_str(args.ip),
                "mac": format_mac(mac),
                "connects": connects,
                "seconds": round(time.monotonic() - start, 3),
            }
        )
    return 0
