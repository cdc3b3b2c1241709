"""ip4-icmp-error: time exceeded and destination unreachable, rate-limited (RFC 1812 4.3.2).

A packet that cannot be forwarded (its TTL ran out in ip4-rewrite, no route covered it in
ip4-lookup: ``meta.icmp`` says which) becomes, in its own buffer, the ICMP error to its
source: from the receiving interface's address, back out of that interface to the MAC it
came from, quoting the original header and 8 bytes.  Never in answer to an ICMP error, a
non-first fragment, a broadcast or multicast (IPv4 or Ethernet) destination or a source
that is not a unicast host; at most :data:`ICMP_RATE` per second
(:data:`ICMP_BURST` at once).  Each packet not answered is counted.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np

from .. import packet
from . import decode
from .graph import DROP
from .nodes_ip4_arp import TokenBucket, source_address
from .nodes_ip4_fwd import HEADER, ICMP_NET_UNREACHABLE, ICMP_TIME_EXCEEDED, l3_offset
from .nodes_l2 import SwitchNode
from .pool import INDEX
from .tables import SwInterface

if TYPE_CHECKING:
    from .runtime import Runtime

ICMP_RATE = 100.0  # errors per second
ICMP_BURST = 50
ERROR_TYPES = frozenset({3, 4, 5, 11, 12})  # ICMP messages that are errors themselves
QUOTE = HEADER + 8  # the most an error quotes: the longest header and 8 bytes past it
ETH = packet.ETH_HLEN
#: meta.icmp (type << 8 | code) -> what ip4-icmp-error's trace calls it
ICMP_NAMES = {
    ICMP_TIME_EXCEEDED: "time-exceeded (ttl exceeded in transit)",
    ICMP_NET_UNREACHABLE: "destination-unreachable (network unreachable)",
}


def may_answer(ip: bytes, l2_group: bool) -> bool:
    """RFC 1812 4.3.2.7: False for what must never get an ICMP error (``ip``: the original
    packet from its IPv4 header, ``l2_group``: it came to a group MAC)."""
    ihl = (ip[0] & 15) * 4
    src, dst = ip[12], ip[16]
    if l2_group or dst >= 224 or ip[16:20] == b"\xff" * 4:
        return False
    if src == 0 or src == 127 or src >= 224:
        return False
    if int.from_bytes(ip[6:8], "big") & 0x1FFF:  # not the first fragment
        return False
    return not (ip[9] == packet.PROTO_ICMP and len(ip) > ihl and ip[ihl] in ERROR_TYPES)


class Ip4IcmpError(SwitchNode):
    """Answer with the ICMP error ``meta.icmp`` names, in place, or drop (counted)."""

    name = "ip4-icmp-error"
    errors = {
        "ttl-expire-sent": "hop limit exceeded response sent",
        "dest-unreach-sent": "destination unreachable response sent",
        "drop": "error message dropped (in answer to an error, a broadcast, a fragment)",
        "rate-limited": "error message rate limited",
    }
    next_nodes = ("l2-output", DROP)
    OUTPUT = 0

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.bucket = TokenBucket(ICMP_RATE, ICMP_BURST)

    def process(self, idx: np.ndarray) -> None:
        sent: list[int] = []
        dropped: list[int] = []
        limited: list[int] = []
        for i in idx.tolist():
            verdict = self._answer(i)
            (sent if verdict is None else dropped if verdict == "drop" else limited).append(i)
        self.graph.enqueue(self.next[self.OUTPUT], np.array(sent, INDEX))
        self.drop(np.array(dropped, INDEX), "drop")
        self.drop(np.array(limited, INDEX), "rate-limited")

    def _addressee(self, i: int) -> tuple[SwInterface, bytes, bytes] | None:
        """Buffer ``i``'s receiving interface, IPv4 packet (its first :data:`QUOTE`
        bytes: all an error quotes) and the address its error comes from; None when it
        must not be answered (RFC 1812 4.3.2.7, no address)."""
        pool = self.rt.pool
        sw = self.tables.interfaces.get(int(self.meta.rx_if[i]))
        if sw is None:
            return None
        off = 0 if sw.ip_mode else ETH
        ip = pool.data[i, off : min(int(pool.length[i]), off + QUOTE)].tobytes()
        group = not sw.ip_mode and bool(pool.data[i, 0] & 1)
        src = source_address(sw, ip[12:16])
        if src is None or not may_answer(ip, group):
            return None
        return sw, ip, src

    def _answer(self, i: int) -> str | None:
        """Write buffer ``i``'s ICMP error over it; None when sent, else the error name."""
        rt, meta, pool = self.rt, self.meta, self.rt.pool
        to = self._addressee(i)
        if to is None:
            return "drop"
        sw, ip, src = to
        if not self.bucket.take(rt.now):
            return "rate-limited"
        kind = int(meta.icmp[i])
        quoted = ip[: (ip[0] & 15) * 4 + 8]
        body = struct.pack("!BBHI", kind >> 8, kind & 0xFF, 0, 0) + quoted
        body = body[:2] + packet.checksum(body).to_bytes(2, "big") + body[4:]
        reply = packet.ipv4(src, ip[12:16], packet.PROTO_ICMP, body, ttl=64, df=False)
        if not sw.ip_mode:
            peer = pool.data[i, 6:12].tobytes()
            reply = packet.ethernet(peer, sw.mac, packet.ETH_P_IP, reply)
        pool.data[i, : len(reply)] = np.frombuffer(reply, np.uint8)
        pool.length[i] = len(reply)
        meta.tx_if[i] = sw.sw_if_index
        self.error_counts["ttl-expire-sent" if kind >> 8 == 11 else "dest-unreach-sent"] += 1
        return None

    def format_trace(self, i: int) -> str:
        """``ip4-icmp-error: time-exceeded (ttl exceeded in transit) to 10.0.1.2 from
        10.0.1.1 out memif1/0`` or why none is sent (drop, rate-limited), decided as the
        packet enters from the state then; then the IPv4 header of the packet answered."""
        kind = int(self.meta.icmp[i])
        name = ICMP_NAMES.get(kind, f"type {kind >> 8} code {kind & 0xFF}")
        to = self._addressee(i)
        if to is None:
            what = f"{name}: not sent: drop ({self.errors['drop']})"
            ip = decode.head(self.rt.pool, i)[l3_offset(self, i) :]
        else:
            sw, ip, src = to
            dst = packet.ip4_str(ip[12:16])
            sent = "sent" if self.bucket.ready(self.rt.now) else "not sent: rate-limited"
            what = f"{name} to {dst} from {packet.ip4_str(src)} out {sw.name}: {sent}"
        return f"ip4-icmp-error: {what}\n{decode.ip4(ip)}"
