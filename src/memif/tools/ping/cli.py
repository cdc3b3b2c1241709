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
from ...arp_icmp import Answers, ArpIcmpAnswerer, Verdict
from ...config import format_mac
from ...errors import MemifError
from ...interface import Interface
from ...pingsession import PingSession
from ...sock import Socket
from ...wire import Mode
from ..common import (
    add_connection_args,
    control_loop,
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
    """ARP and ICMP echo over one connected interface (the sockets stay the caller's).

    The packet logic is the core's: a :class:`~memif.pingsession.PingSession` says what to
    send when and matches the replies; an :class:`~memif.arp_icmp.ArpIcmpAnswerer` for our
    address reads each received burst (ARP requests for us are answered, ARP from the target
    tells its MAC, echo replies go to the session).  This class does the I/O and prints.
    """

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
        self.loop = control_loop(sock, time.perf_counter)  # what wait() turns and sleeps in
        self.target = target
        self.source = source
        self.mac = mac
        self.l2 = l2
        self.size = size
        self.out = out
        self.quiet = quiet
        self.ident = random.randrange(1, 0x10000)
        self.answerer = ArpIcmpAnswerer(mac, [source], ethernet=l2)
        self.session: PingSession | None = None
        self.target_mac: bytes | None = None
        self.result = PingResult(pkt.ip4_str(target), pkt.ip4_str(source))

    # ------------------------------------------------------------------ I/O
    def say(self, line: str) -> None:
        """Print ``line`` to the output (none with --json)."""
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
            work = self._receive()
            if until is not None and until():
                return
            left = deadline - time.perf_counter()
            if left <= 0:
                return
            rxqs = self.iface.rx_queues if self.iface.connected else []
            wait_rx(self.loop, rxqs, min(left, 0.25), work)  # busy or polling: no sleep

    def _receive(self) -> int:
        """One burst from each receive queue, never more (a peer that keeps them full must
        not keep the session from sending or ending); returns the frames taken."""
        if not self.iface.connected:
            return 0
        taken = 0
        for rxq in self.iface.rx_queues:
            with rxq.receive(256) as batch:
                if not len(batch):
                    continue
                taken += len(batch)
                now = time.perf_counter()
                frames = batch.tolist()  # a ping's bursts are small: copies, whole
                answers = self.answerer.answer_frames(frames)
                self._arp(frames, answers)
                for i in answers.where(Verdict.ECHO_REPLY).tolist():
                    self._echo_reply(frames[i], now)
        return taken

    def _arp(self, frames: list[bytes], answers: Answers) -> None:
        """ARP requests for our address are answered; the target's ARP tells its MAC."""
        e = pkt.ETH_HLEN
        for i in answers.where(Verdict.ARP_REPLY).tolist():
            if frames[i][e + 14 : e + 18] == self.target:
                self._resolved(frames[i][e + 8 : e + 14])
        for j, i in enumerate(answers.answered.tolist()):
            if answers.verdict[i] != Verdict.ANSWER_ARP:
                continue  # (echo requests to us are not answered here)
            if frames[i][e + 14 : e + 18] == self.target:  # the target asks for us
                self._resolved(frames[i][e + 8 : e + 14])
            self._send(answers.head[j, : answers.head_length[j]].tobytes())

    def _resolved(self, mac: bytes) -> None:
        self.target_mac = self.target_mac or mac
        if self.session is not None:
            self.session.resolved(self.target_mac, time.perf_counter())

    def _echo_reply(self, frame: bytes, now: float) -> None:
        """An echo reply to our address (the answerer's verdict) goes to the session."""
        session = self.session
        p = pkt.parse(frame) if self.l2 else pkt.parse_ip(frame)
        echo = None if p is None else pkt.parse_icmp_echo(p.l4)
        if session is None or p is None or p.ip_src is None or echo is None:
            return
        _, _, ident, seq, data = echo
        got = session.echo_reply(ident, seq, p.ip_src, now, data)
        if got is None or self.quiet:
            return
        notes = " (BAD CHECKSUM!)" if pkt.checksum(p.l4) else ""
        notes += " (DUP!)" if got.duplicate else " (BAD DATA!)" if got.corrupted else ""
        self.say(
            f"{len(p.l4)} bytes from {self.result.target}: icmp_seq={got.seq} ttl={p.ttl} "
            f"time={format_ms(got.rtt * 1000.0)} ms{notes}"
        )

    # ------------------------------------------------------------------ steps
    def run(self, session: PingSession) -> PingResult:
        """Drive ``session`` (ARP, then its echo requests) until it is done or interrupted."""
        self.session = session
        if self.target_mac is not None:  # the target asked for us while we waited
            session.resolved(self.target_mac, time.perf_counter())
        res = self.result
        start: float | None = None
        try:
            while not session.done:
                now = time.perf_counter()
                for sent in session.poll(now):
                    if sent.seq is None:  # ARP
                        self._send(sent.frame)
                        continue
                    if start is None:
                        start = now
                    at = time.perf_counter()  # the RTT starts at the send, as ping(8)'s
                    if self._send(sent.frame):
                        session.sent_at(sent.seq, at)
                    else:
                        why = "memif is down" if not self.iface.connected else "transmit ring full"
                        print(f"memif: icmp_seq={sent.seq} not sent: {why}", file=sys.stderr)
                deadline = session.next_deadline()
                if deadline is not None:
                    self.wait(deadline, until=lambda: _due(session))
        except KeyboardInterrupt:
            session.stop()
        st = session.stats
        res.transmitted, res.received = st.transmitted, st.received
        res.duplicates, res.corrupted = st.duplicates, st.corrupted
        res.rtts = [t * 1000.0 for t in st.rtts]
        if self.target_mac is not None:
            res.target_mac = format_mac(self.target_mac)
        res.time_ms = 0.0 if start is None else (time.perf_counter() - start) * 1000.0
        return res


def _due(session: PingSession) -> bool:
    """True when the session has something to do now (or ended)."""
    deadline = session.next_deadline()
    return deadline is None or deadline <= time.perf_counter()


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
    pinger.say(
        f"PING {target} ({target}) from {res.source} {iface.name}: "
        f"{args.size}({args.size + pkt.IP_HLEN + pkt.ICMP_ECHO_HLEN}) bytes of data."
    )
    # A server may transmit only once the client posted its buffers, just after connecting.
    pinger.wait(time.perf_counter() + 1.0, until=pinger.can_send)
    session = PingSession(
        source,
        args.target,
        ident=pinger.ident,
        mac=mac if l2 else None,
        count=args.count,
        interval=args.interval,
        linger=args.timeout,
        size=args.size,
        arp_tries=args.arp_tries,
        arp_timeout=args.timeout,
    )
    pinger.run(session)
    if l2 and pinger.target_mac is None:
        res.error = (
            f"no ARP reply from {target} (asked {args.arp_tries} "
            f"time{'s' if args.arp_tries > 1 else ''} from {res.source}, "
            f"{args.timeout:g} s apart)"
        )
        if args.json:
            print_json(res.summary())
        fail(res.error)
        return 1
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
