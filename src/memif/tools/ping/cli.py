"""``memif ping``: ICMP echo over a memif interface, with ping(8)'s output and exit status.

The tool is a tiny IPv4 host on the memif: it has a source address (``--source-ip``) and a
MAC address (``--mac``), resolves the target's MAC with ARP (``--arp-tries`` broadcast
requests, ``--timeout`` apart), answers ARP requests for its own address (a router on the
other side may ask before replying), then sends one echo request every ``--interval`` seconds
and prints each reply as ping(8) does.  In ``--mode ip`` there is no Ethernet header and no
ARP.

Exit status, as ping(8): 0 when at least one reply came back, 1 when none did (including no
ARP answer: ping(8) exits 1 for an unreachable neighbour too), 2 on any other error (bad
options, no memif connection).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any, TextIO

from ... import packet as pkt
from ...config import format_mac
from ...errors import MemifError
from ...interface import Interface
from ...poller import Poller
from ...sock import Socket
from ...wire import Mode
from ..common import (
    add_connection_args,
    fail,
    host_mode,
    interface_error,
    ipv4_arg,
    mac_arg,
    one_line_errors,
    open_interface,
    print_json,
    wait_rx,
)
from .stats import PingResult, format_ms

APP_NAME = "memif-ping"
MAX_SIZE = 65535 - pkt.IP_HLEN - pkt.ICMP_ECHO_HLEN

EPILOG = """\
examples:
  # VPP (server) at 192.168.1.1 on its default socket; we are a client
  memif ping 192.168.1.1 -c 3

  # against `memif responder --role server --socket @pingme --ip 10.0.0.1`
  memif ping --socket @pingme 10.0.0.1 -c 5 -i 0.2

output:
  64 bytes from 10.0.0.1: icmp_seq=1 ttl=64 time=0.123 ms
  ...
  --- 10.0.0.1 ping statistics ---
  5 packets transmitted, 5 received, 0% packet loss, time 804ms
  rtt min/avg/max/mdev = 0.101/0.130/0.170/0.023 ms

The default source address is the target's with the last octet changed to 1 (to 2 if the
target ends in .1): pinging 192.168.1.2 sends from 192.168.1.1.  Without --count it runs until
interrupted (Ctrl-C prints the summary).  --json prints only a summary object on stdout.
Exit status: 0 if any reply came back, 1 if none did (also when ARP gets no answer), 2 on
other errors.
"""


def _number(kind: type, low: float, high: float | None = None, what: str = "value") -> Any:
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad {what} {text!r}") from None
        if value < low or (high is not None and value > high) or value != value:
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"{what} {text} out of range ({bound})")
        return value

    return convert


def default_source(target: bytes) -> bytes:
    """The target with its last octet set to 1, or to 2 when it already is 1."""
    return target[:3] + bytes([2 if target[3] == 1 else 1])


def add_parser(subparsers: Any) -> None:
    """Register ``memif ping``."""
    p = subparsers.add_parser(
        "ping",
        help="send ICMP echo requests over a memif interface, like ping(8)",
        description=(
            "Resolve the target's MAC address with ARP, then send ICMP echo requests over a "
            "memif interface and report replies and round-trip times like ping(8)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", type=ipv4_arg, metavar="IP", help="IPv4 address to ping")
    p.add_argument(
        "-c",
        "--count",
        type=_number(int, 1, what="count"),
        default=None,
        metavar="N",
        help="stop after N echo requests (default: until interrupted)",
    )
    p.add_argument(
        "-i",
        "--interval",
        type=_number(float, 0.0, what="interval"),
        default=1.0,
        metavar="S",
        help="seconds between requests (default 1)",
    )
    p.add_argument(
        "-s",
        "--size",
        type=_number(int, 0, MAX_SIZE, what="size"),
        default=56,
        metavar="N",
        help="ICMP data bytes (default 56: 64 ICMP bytes, 98-byte frames)",
    )
    p.add_argument(
        "-W",
        "--timeout",
        type=_number(float, 0.001, what="timeout"),
        default=1.0,
        metavar="S",
        help="seconds to wait for each ARP answer and, after the last request, for the "
        "outstanding replies (default 1)",
    )
    p.add_argument(
        "-I",
        "--source-ip",
        type=ipv4_arg,
        default=None,
        metavar="A.B.C.D",
        help="our IPv4 address (default: the target's with last octet 1, or 2 if it is 1)",
    )
    p.add_argument(
        "--mac",
        type=mac_arg,
        default=None,
        metavar="MAC",
        help="our MAC address (default: random 02:fe:xx:xx:xx:xx)",
    )
    p.add_argument(
        "--arp-tries",
        type=_number(int, 1, what="ARP tries"),
        default=3,
        metavar="N",
        help="ARP requests before giving up (default 3)",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only the first line and the summary",
    )
    add_connection_args(p)
    p.set_defaults(func=run)
    one_line_errors(p, "ping")


class Pinger:
    """ARP and ICMP echo over one connected interface (the sockets stay the caller's)."""

    def __init__(
        self,
        sock: Socket,
        iface: Interface,
        *,
        target: bytes,
        source: bytes,
        mac: bytes,
        l2: bool = True,
        size: int = 56,
        out: TextIO | None = None,
        quiet: bool = False,
    ) -> None:
        self.sock = sock
        self.iface = iface
        self.poller = Poller()  # what wait() sleeps on: the control socket, the rx eventfds
        self.target = target
        self.source = source
        self.mac = mac
        self.l2 = l2
        self.out = out
        self.quiet = quiet
        self.ident = random.randrange(1, 0x10000)
        self.data = bytes(i & 0xFF for i in range(size))
        self.target_mac: bytes | None = None
        self.sent: dict[int, float] = {}  # seq -> send time (perf_counter)
        self.got: set[int] = set()
        self.result = PingResult(pkt.ip4_str(target), pkt.ip4_str(source))

    # ------------------------------------------------------------------ I/O
    def _say(self, line: str) -> None:
        if self.out is not None:
            print(line, file=self.out, flush=True)

    def can_send(self) -> bool:
        """True when the interface is up and its first transmit ring has a free slot."""
        return self.iface.connected and self.iface.tx_queues[0].free_slots() > 0

    def _send(self, frame: bytes) -> bool:
        if not self.iface.connected:
            return False
        return bool(self.iface.tx_queues[0].send([frame]))

    def wait(self, deadline: float, until: Any = None) -> None:
        """Handle arriving frames until ``deadline`` (perf_counter) or ``until()`` holds."""
        while True:
            self._receive()
            if until is not None and until():
                return
            left = deadline - time.perf_counter()
            if left <= 0:
                return
            rxqs = self.iface.rx_queues if self.iface.connected else []
            if any(q.polling for q in rxqs):
                left = min(left, 0.0002)
            wait_rx(self.poller, self.sock, rxqs, min(left, 0.25))

    def _receive(self) -> None:
        if not self.iface.connected:
            return
        for rxq in self.iface.rx_queues:
            while True:
                batch = rxq.rx_burst(256)
                if not len(batch):
                    break
                now = time.perf_counter()
                try:
                    for frame in batch.tolist():
                        self._frame(frame, now)
                finally:
                    rxq.refill()

    def _frame(self, frame: bytes, now: float) -> None:
        if self.l2:
            p = pkt.parse(frame)
            if p is None or (p.dst != self.mac and not pkt.is_group(p.dst)):
                return
            if p.arp is not None:
                self._arp(p.arp)
                return
        else:
            p = pkt.parse_ip(frame)
            if p is None:
                return
        if p.proto != pkt.PROTO_ICMP or p.ip_src != self.target or p.ip_dst != self.source:
            return
        echo = pkt.parse_icmp_echo(p.l4)
        if echo is None:
            return
        kind, _, ident, seq, data = echo
        if kind != pkt.ICMP_ECHO_REPLY or ident != self.ident or seq not in self.sent:
            return
        rtt = (now - self.sent[seq]) * 1000.0
        notes = ""
        if pkt.checksum(p.l4):
            notes += " (BAD CHECKSUM!)"
        if seq in self.got:
            self.result.duplicates += 1
            notes += " (DUP!)"
        elif data != self.data[: len(data)] or len(data) != len(self.data):
            self.result.corrupted += 1
            notes += " (BAD DATA!)"
        else:
            self.got.add(seq)
            self.result.received += 1
            self.result.rtts.append(rtt)
        if not self.quiet:
            self._say(
                f"{len(p.l4)} bytes from {self.result.target}: icmp_seq={seq} ttl={p.ttl} "
                f"time={format_ms(rtt)} ms{notes}"
            )

    def _arp(self, fields: tuple) -> None:
        op, sha, spa, _, tpa = fields
        # An answer from the target, or the target asking for us, tells its MAC.
        if spa == self.target and (
            op == pkt.ARP_REPLY or (op == pkt.ARP_REQUEST and tpa == self.source)
        ):
            self.target_mac = self.target_mac or sha
        if op == pkt.ARP_REQUEST and tpa == self.source:
            self._send(pkt.arp_reply(self.mac, self.source, sha, spa))

    # ------------------------------------------------------------------ steps
    def resolve(self, tries: int, timeout: float) -> bytes | None:
        """The target's MAC from ARP: up to ``tries`` requests ``timeout`` apart."""
        request = pkt.arp_request(self.mac, self.source, self.target)
        for _ in range(tries):
            self._send(request)
            self.wait(time.perf_counter() + timeout, until=lambda: self.target_mac is not None)
            if self.target_mac is not None:
                self.result.target_mac = format_mac(self.target_mac)
                return self.target_mac
        return None

    def echo_request(self, seq: int) -> bytes:
        """The frame (or bare IP packet) of echo request ``seq``."""
        icmp = pkt.icmp_echo(pkt.ICMP_ECHO_REQUEST, self.ident, seq & 0xFFFF, self.data)
        ip = pkt.ipv4(self.source, self.target, pkt.PROTO_ICMP, icmp, ident=seq & 0xFFFF)
        if not self.l2:
            return ip
        assert self.target_mac is not None
        return pkt.ethernet(self.target_mac, self.mac, pkt.ETH_P_IP, ip)

    def run(self, count: int | None, interval: float, timeout: float) -> PingResult:
        """Send ``count`` requests (None: until interrupted) and collect the replies."""
        res = self.result
        start = time.perf_counter()
        seq = 0
        try:
            while count is None or seq < count:
                seq += 1
                wire_seq = seq & 0xFFFF
                self.sent.pop(wire_seq, None)
                self.got.discard(wire_seq)
                frame = self.echo_request(wire_seq)
                res.transmitted += 1
                self.sent[wire_seq] = time.perf_counter()
                if not self._send(frame):
                    why = "memif is down" if not self.iface.connected else "transmit ring full"
                    print(f"memif: icmp_seq={wire_seq} not sent: {why}", file=sys.stderr)
                if count is not None and seq >= count:
                    break
                self.wait(self.sent[wire_seq] + interval)
            last = time.perf_counter()
            self.wait(last + timeout, until=lambda: res.received >= res.transmitted)
        except KeyboardInterrupt:
            pass
        res.time_ms = (time.perf_counter() - start) * 1000.0
        return res


def ping(
    args: argparse.Namespace, sock: Socket, iface: Interface, out: TextIO | None = None
) -> int:
    """Run ``memif ping`` over an interface ``open_interface`` connected; returns the status.

    Prints to ``out`` (default stdout) and leaves the socket open.
    """
    out = out or sys.stdout
    l2 = iface.config.mode is Mode.ETHERNET
    mac = args.mac or iface.config.mac
    iface.config.mac = mac
    source = args.source_ip or default_source(args.target)
    pinger = Pinger(
        sock,
        iface,
        target=args.target,
        source=source,
        mac=mac,
        l2=l2,
        size=args.size,
        out=None if args.json else out,
        quiet=args.quiet,
    )
    res = pinger.result
    target = res.target
    pinger._say(
        f"PING {target} ({target}) from {res.source} {iface.name}: "
        f"{args.size}({args.size + pkt.IP_HLEN + pkt.ICMP_ECHO_HLEN}) bytes of data."
    )
    # A server may transmit only once the client posted its buffers, just after connecting.
    pinger.wait(time.perf_counter() + 1.0, until=pinger.can_send)
    if l2:
        try:
            found = pinger.resolve(args.arp_tries, args.timeout)
        except KeyboardInterrupt:
            found = None
        if found is None:
            res.error = (
                f"no ARP reply from {target} (asked {args.arp_tries} "
                f"time{'s' if args.arp_tries > 1 else ''} from {res.source}, "
                f"{args.timeout:g} s apart)"
            )
            if args.json:
                print_json(res.summary())
            fail(res.error)
            return 1
    pinger.run(args.count, args.interval, args.timeout)
    if args.json:
        print_json(res.summary())
    else:
        print("", file=out)
        for line in res.lines():
            print(line, file=out, flush=True)
    return 0 if res.received else 1


def run(args: argparse.Namespace) -> int:
    """``memif ping``: returns ping(8)'s exit status."""
    try:
        host_mode(args, "ping")
    except ValueError as exc:
        fail(str(exc))
        return 2
    if args.target == (args.source_ip or default_source(args.target)):
        fail(f"source and target are both {pkt.ip4_str(args.target)}: give another --source-ip")
        return 2
    try:
        sock, iface = open_interface(args, APP_NAME)
    except (TimeoutError, MemifError, OSError) as exc:
        fail(interface_error(exc, args.socket))
        return 2
    except KeyboardInterrupt:
        fail("interrupted before the peer connected")
        return 2
    try:
        return ping(args, sock, iface)
    finally:
        sock.close()
