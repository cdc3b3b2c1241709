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
transmit buffer go out chained.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import select
import signal
import struct
import sys
import time
from collections.abc import Iterator
from typing import Any, NoReturn

import numpy as np

from .. import packet as pkt
from ..config import format_mac, parse_mac, random_mac
from ..errors import ConfigError, MemifError
from ..interface import Interface
from ..queue import RxBatch, RxQueue, TxQueue
from ..sock import Socket
from ..wire import Mode
from .common import LiveLine, add_connection_args, fail, open_interface, print_json

APP_NAME = "memif-responder"
DEFAULT_IP = "192.168.1.2"  # libmemif's icmp_responder answers on this address
BURST = 256

_ARP = struct.Struct("!HHBBH6s4s6s4s")
_IP = struct.Struct("!BBHHHBBH4s4s")
_ARP_REQUEST_HDR = (1, pkt.ETH_P_IP, 6, 4, pkt.ARP_REQUEST)

# Reply kinds.
ARP, ICMP, REFLECT = 1, 2, 3

EPILOG = f"""\
examples:
  # answer 192.168.1.2 as a client of VPP's default socket (VPP is the server)
  memif responder --ip 192.168.1.2

  # be the server, so that `memif ping` or a VPP client connects to us
  memif responder --role server --socket @pingme --ip 10.0.0.1
  memif ping --socket @pingme 10.0.0.1 -c 3

  # echo every frame back with the MAC addresses swapped
  memif responder --role server --socket @pingme --reflect

The default address is {DEFAULT_IP}, libmemif's icmp_responder's, and the default role is
client, as icmp_responder connects to VPP.  Runs until interrupted (Ctrl-C, SIGTERM) or for
--duration seconds and keeps serving across reconnects.  Live counters go to stderr; --json
prints a final summary object on stdout.  It waits for its peer as long as it runs unless
--connect-timeout is given (exit status 1 if the peer did not come in time; an interrupt
while waiting is a normal stop, exit status 0).
"""


def _ip(text: str) -> bytes:
    try:
        return ipaddress.IPv4Address(text).packed
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad IPv4 address {text!r}") from None


def _mac(text: str) -> bytes:
    try:
        return parse_mac(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
        type=_ip,
        default=_ip(DEFAULT_IP),
        metavar="A.B.C.D",
        help=f"IPv4 address to answer for (default {DEFAULT_IP})",
    )
    p.add_argument(
        "--mac",
        type=_mac,
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
    add_connection_args(p)
    for action in p._actions:  # a responder waits for its peer as long as it runs
        if action.dest == "connect_timeout":
            action.default = None
            action.help = "seconds to wait for the peer (default: as long as it runs)"
    p.set_defaults(func=run)
    _one_line_errors(p)


class Responder:
    """The packet logic: classify a burst, write replies into transmit buffers.

    Counters: ``rx`` (frames received), ``arp_replies``, ``icmp_replies``, ``reflected``,
    ``ignored`` (frames not answered) and ``tx_dropped`` (replies the transmit ring had no
    room for).
    """

    def __init__(self, ip: bytes, mac: bytes, *, reflect: bool = False, l2: bool = True):
        self.ip = ip
        self.mac = mac
        self.reflect = reflect
        self.l2 = pkt.ETH_HLEN if l2 else 0
        self.rx = self.arp_replies = self.icmp_replies = self.reflected = 0
        self.ignored = self.tx_dropped = 0

    def counters(self) -> dict[str, int]:
        """Every counter by name."""
        return {
            "rx": self.rx,
            "arp_replies": self.arp_replies,
            "icmp_replies": self.icmp_replies,
            "reflected": self.reflected,
            "ignored": self.ignored,
            "tx_dropped": self.tx_dropped,
        }

    def status(self) -> str:
        """The live counter line."""
        if self.reflect:
            text = f"rx {self.rx}  reflected {self.reflected}"
        else:
            text = (
                f"rx {self.rx}  arp replies {self.arp_replies}  "
                f"icmp replies {self.icmp_replies}  ignored {self.ignored}"
            )
        return text + (f"  tx dropped {self.tx_dropped}" if self.tx_dropped else "")

    # ------------------------------------------------------------------ per burst
    def process(self, rxq: RxQueue, txq: TxQueue, burst: int = BURST) -> int:
        """Receive one burst on ``rxq``, answer on ``txq``, refill; returns frames taken."""
        batch = rxq.rx_burst(burst)
        n = len(batch)
        if n == 0:
            return 0
        self.rx += n
        try:
            if self.reflect:
                self._reflect(batch, txq)
            else:
                jobs = []
                for i in range(n):
                    p = batch[i]  # a view into shared memory (a copy only if chained)
                    kind, length, head = self._classify(p)
                    if kind:
                        jobs.append((p, kind, length, head))
                    else:
                        self.ignored += 1
                if jobs:
                    self._send(txq, jobs)
        finally:
            rxq.refill()  # the views die here, after every reply was written
        return n

    def _classify(self, p: np.ndarray) -> tuple[int, int, bytes]:
        """``(kind, reply length, reply head)`` for a frame to answer, ``(0, 0, b"")`` if not.

        The reply head is the whole ARP reply, or an echo reply's Ethernet, IP and first four
        ICMP bytes (the rest is the request's, copied as is).
        """
        no = 0, 0, b""
        size = len(p)
        off = self.l2
        head = p[: off + 68].tobytes()  # Ethernet, IP with any options, ICMP header
        if off:
            if size < pkt.ETH_HLEN:
                return no
            if head[0:6] != self.mac and not head[0] & 1:
                return no  # unicast to somebody else
            ethertype = head[12] << 8 | head[13]
            if ethertype == pkt.ETH_P_ARP:
                if size < pkt.ETH_HLEN + pkt.ARP_LEN:
                    return no
                f = _ARP.unpack_from(head, pkt.ETH_HLEN)
                if f[:5] != _ARP_REQUEST_HDR or f[8] != self.ip:
                    return no
                reply = pkt.arp_reply(self.mac, self.ip, f[5], f[6])
                return ARP, len(reply), reply
            if ethertype != pkt.ETH_P_IP:
                return no
        if size < off + pkt.IP_HLEN:
            return no
        vihl, _, total, _, frag, ttl, proto, ip_sum, src, dst = _IP.unpack_from(head, off)
        ihl = (vihl & 0xF) * 4
        icmp = off + ihl
        if (
            vihl >> 4 != 4
            or ihl < pkt.IP_HLEN
            or proto != pkt.PROTO_ICMP
            or dst != self.ip
            or frag & 0x3FFF  # a fragment: not reassembled here
            or total < ihl + pkt.ICMP_ECHO_HLEN
            or off + total > size
            or head[icmp] != pkt.ICMP_ECHO_REQUEST
            or head[icmp + 1] != 0
            or not _verifies(head[off:icmp])
            or not _verifies(p[icmp : off + total].tobytes())
        ):
            return no
        # Both checksums verified: update them for the changed words only (RFC 1624).
        ip_sum = _adjust(ip_sum, ttl << 8 | proto, 64 << 8 | proto)
        icmp_sum = _adjust(head[icmp + 2] << 8 | head[icmp + 3], pkt.ICMP_ECHO_REQUEST << 8, 0)
        reply = b"".join(
            (
                head[6:12] + self.mac + head[12:off] if off else b"",
                head[off : off + 8],
                bytes((64, proto)),
                ip_sum.to_bytes(2, "big"),
                dst,
                src,
                head[off + pkt.IP_HLEN : icmp],  # options, unchanged
                bytes((pkt.ICMP_ECHO_REPLY, 0)),
                icmp_sum.to_bytes(2, "big"),
            )
        )
        return ICMP, off + total, reply

    def _write(self, buf: np.ndarray, p: np.ndarray, kind: int, length: int, head: bytes) -> None:
        """Write the reply to ``p`` into ``buf`` (a transmit buffer of >= ``length`` bytes)."""
        if kind == REFLECT:
            buf[:length] = p[:length]
            if self.l2 and length >= 12:
                buf[0:6] = p[6:12]
                buf[6:12] = p[0:6]
            return
        n = len(head)
        buf[:n] = np.frombuffer(head, np.uint8)
        if length > n:
            buf[n:length] = p[n:length]

    def _count(self, kind: int, n: int = 1) -> None:
        if kind == ICMP:
            self.icmp_replies += n
        elif kind == ARP:
            self.arp_replies += n
        else:
            self.reflected += n

    def _send(self, txq: TxQueue, jobs: list[tuple[np.ndarray, int, int, bytes]]) -> None:
        """Write replies into allocated slots, publish once per contiguous run, in order."""
        k, total = 0, len(jobs)
        while k < total:
            tx = txq.alloc(total - k)
            if tx.count == 0:
                break
            lengths: list[int] = []
            while len(lengths) < tx.count and k < total:
                p, kind, length, head = jobs[k]
                if length > tx.capacity:
                    break
                self._write(tx.buffer(len(lengths)), p, kind, length, head)
                lengths.append(length)
                self._count(kind)
                k += 1
            if lengths:
                txq.tx_burst(tx, np.array(lengths, np.uint32), len(lengths))
            if k < total and jobs[k][2] > tx.capacity:  # larger than a buffer: chained
                p, kind, length, head = jobs[k]
                buf = np.empty(length, np.uint8)
                self._write(buf, p, kind, length, head)
                if not txq.send([buf]):
                    break
                self._count(kind)
                k += 1
        self.tx_dropped += total - k

    def _reflect(self, batch: RxBatch, txq: TxQueue) -> None:
        """Every frame back with its MACs swapped; whole-burst numpy copies when possible."""
        n = len(batch)
        lengths = batch.lengths
        mat = batch.matrix if batch.first is None else None
        done = 0
        while done < n and mat is not None:
            tx = txq.alloc(n - done)
            k = tx.count
            if k == 0:
                self.tx_dropped += n - done
                return
            lens = lengths[done : done + k]
            width = int(lens.max())
            if tx.buffers is None or width > tx.capacity:
                break  # unevenly posted buffers or a frame too large: one by one
            bufs = tx.buffers[:k]
            bufs[:, :width] = mat[done : done + k, :width]
            if self.l2:
                rows = slice(None) if int(lens.min()) >= 12 else lens >= 12
                dst = bufs[rows, 0:6].copy()
                bufs[rows, 0:6] = bufs[rows, 6:12]
                bufs[rows, 6:12] = dst
            txq.tx_burst(tx, lens)
            self.reflected += k
            done += k
        if done < n:
            self._send(txq, [(batch[i], REFLECT, int(lengths[i]), b"") for i in range(done, n)])


def _verifies(data: bytes) -> bool:
    """True when the Internet checksum over ``data`` (checksum field included) verifies.

    The one's-complement sum of 16-bit words is the number ``data`` spells modulo 0xFFFF
    (2**16 = 1 mod 0xFFFF): one big-integer operation instead of a loop.  (All-zero data
    passes too; the callers have rejected it before: version 0, ICMP type 0.)
    """
    if len(data) & 1:
        data += b"\0"
    return int.from_bytes(data, "big") % 0xFFFF == 0


def _adjust(checksum: int, old: int, new: int) -> int:
    """The checksum after one 16-bit word changed from ``old`` to ``new`` (RFC 1624 eqn 3)."""
    s = (~checksum & 0xFFFF) + (~old & 0xFFFF) + new
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


# ---------------------------------------------------------------------- the loop


class _Stop(BaseException):
    """SIGTERM arrived."""


@contextlib.contextmanager
def _sigterm_stops() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise _Stop

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def serve(
    sock: Socket,
    iface: Interface,
    responder: Responder,
    *,
    until: float | None = None,
    live: LiveLine | None = None,
) -> None:
    """Answer on every queue of ``iface`` until ``time.monotonic()`` reaches ``until``.

    Busy bursts are processed back to back; when every queue is empty the loop sleeps in
    ``select`` on the control socket and the queues' interrupt eventfds (or, for queues in
    polling mode, spins with a short timeout).
    """
    sfd = sock.fileno()
    last_ctl = 0.0
    was_up = iface.connected
    while True:
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
        polling = any(q.polling for q in rxqs)
        if got or polling:
            if now - last_ctl >= 0.05:  # keep the control plane alive while busy
                last_ctl = now
                sock.poll(0)
            if not got and polling:
                select.select([sfd], [], [], 0.0005)
        else:
            wait = 0.25 if until is None else max(0.0, min(0.25, until - now))
            fds = [sfd] + [q.fd for q in rxqs]
            ready, _, _ = select.select(fds, [], [], wait)
            for fd in ready:
                if fd != sfd:
                    with contextlib.suppress(OSError):
                        os.eventfd_read(fd)
            last_ctl = time.monotonic()
            sock.poll(0)
        if iface.connected != was_up:
            was_up = iface.connected
            if was_up:
                _note(live, f"responder: connected to {iface.remote_app_name or 'peer'}")
            else:
                reason = iface.remote_disc_reason or iface.local_disc_reason or "?"
                _note(live, f"responder: disconnected ({reason})")


def _note(live: LiveLine | None, text: str) -> None:
    if live is not None:
        live.close()
    print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """``memif responder``: returns the exit status."""
    try:
        mode = Mode.parse(args.mode)
    except ValueError as exc:
        return fail(str(exc))
    if mode is Mode.PUNT_INJECT:
        return fail("responder supports --mode ethernet and ip, not punt-inject")
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
    _note(
        None,
        f"responder: {what} from {format_mac(mac)} on {args.socket} "
        f"({args.role}, id {args.id}); waiting for the peer",
    )
    live = LiveLine()
    connects = 0
    with _sigterm_stops():
        try:
            sock, iface = open_interface(args, APP_NAME)
        except (TimeoutError, MemifError, OSError) as exc:
            return fail(_error_text(exc, args.socket))
        except (KeyboardInterrupt, _Stop):
            pass  # stopped before any peer came: a normal stop, with zero counters
        else:
            try:
                iface.config.mac = mac
                _note(
                    None,
                    f"responder: connected to {iface.remote_app_name or 'peer'} "
                    f"({len(iface.rx_queues)} rx queues)",
                )
                with contextlib.suppress(KeyboardInterrupt, _Stop):
                    serve(sock, iface, responder, until=until, live=live)
                live.update(responder.status(), force=True)
                live.close()
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


def _one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Usage errors as one ``memif: ...`` line, exit status 2 (instead of argparse's usage)."""

    def error(message: str) -> NoReturn:
        print(f"memif: responder: {message} (see memif responder --help)", file=sys.stderr)
        sys.exit(2)

    parser.error = error  # type: ignore[method-assign]


def _error_text(exc: BaseException, socket: str) -> str:
    """One line for a failure to set up the interface."""
    if isinstance(exc, OSError) and not isinstance(exc, TimeoutError) and exc.strerror:
        return f"cannot use socket {socket}: {exc.strerror}"
    return str(exc)
