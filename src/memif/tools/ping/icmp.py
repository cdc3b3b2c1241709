"""The responder's packet logic, after libmemif's ``icmp_proto.c``: answer ARP and ICMP echo.

:class:`Responder` takes a received burst, decides per frame whether and how to answer, and
writes the replies straight into transmit buffers in shared memory, published once per burst
(the one copy is the request into the reply buffer; replies larger than one buffer go out
chained).  It opens nothing and never waits: :mod:`memif.tools.ping.responder` runs the loop.
"""

from __future__ import annotations

import numpy as np

from ... import packet as pkt
from ...queue import RxBatch, RxQueue, TxQueue
from ..burst import echo_burst

BURST = 256

_ARP_REQUEST_HDR = (1, pkt.ETH_P_IP, 6, 4, pkt.ARP_REQUEST)

# Reply kinds.
ARP, ICMP, REFLECT = 1, 2, 3


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
                f = pkt.ARP_HDR.unpack_from(head, pkt.ETH_HLEN)
                if f[:5] != _ARP_REQUEST_HDR or f[8] != self.ip:
                    return no
                reply = pkt.arp_reply(self.mac, self.ip, f[5], f[6])
                return ARP, len(reply), reply
            if ethertype != pkt.ETH_P_IP:
                return no
        if size < off + pkt.IP_HLEN:
            return no
        vihl, _, total, _, frag, ttl, proto, ip_sum, src, dst = pkt.IPV4_HDR.unpack_from(head, off)
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
        done = echo_burst(batch, txq, swap=bool(self.l2))
        self.reflected += done
        if done == n:
            return
        if not txq.free_slots():  # the ring is full: no need to look at the rest
            self.tx_dropped += n - done
            return
        lengths = batch.lengths  # chained or larger than a buffer: one by one
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
