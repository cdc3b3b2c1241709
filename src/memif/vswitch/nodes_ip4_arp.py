"""ip4-arp and ip4-glean: resolve a next hop with ARP, rate-limited; the packet is dropped.

As in VPP, the packet that finds an unresolved next hop is not held: its buffer becomes
the ARP request (``ARP requests sent``) or, when the request is throttled, it is dropped
(``ARP requests throttled``).  ip4-arp asks for a route's next hop (a neighbour
adjacency without a MAC), ip4-glean for the packet's own destination on a connected or
attached subnet.  The neighbour table notes each request (:meth:`NeighborTable.request`),
so the reply is learned and completes the adjacency; nothing else is learned.

Requests are limited twice, so a peer sending to many unresolved addresses gets a
bounded request rate whatever it sends: one per (interface, address) per
:data:`ARP_THROTTLE` seconds (a bounded set of keys), and :data:`ARP_RATE` per second in
all (a token bucket of :data:`ARP_BURST`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import packet
from .graph import DROP
from .ip4_route import network
from .nodes_ip4_fwd import l3_offset
from .nodes_l2 import SwitchNode
from .pool import INDEX
from .tables import SwInterface

if TYPE_CHECKING:
    from .runtime import Runtime

ARP_THROTTLE = 1.0  # seconds between requests for one address
ARP_RATE = 100.0  # requests per second, over all addresses
ARP_BURST = 50
THROTTLE_KEYS = 4096  # addresses remembered for the per-address throttle
ARP_FRAME = packet.ETH_HLEN + packet.ARP_LEN


class TokenBucket:
    """``rate`` events per second, at most ``burst`` at once, on the runtime's clock."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.at = 0.0

    def take(self, now: float) -> bool:
        """True when one event may happen now (and counts it)."""
        if now > self.at:
            self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def ready(self, now: float) -> bool:
        """True when :meth:`take` would allow an event now (nothing counted)."""
        tokens = self.tokens
        if now > self.at:
            tokens = min(float(self.burst), tokens + (now - self.at) * self.rate)
        return tokens >= 1.0


def source_address(sw: SwInterface, target: bytes) -> bytes | None:
    """The interface's address on ``target``'s subnet, else its first (None: none)."""
    for ip, plen in sw.ip4:
        if network(target, plen) == network(ip, plen):
            return ip
    return sw.ip4[0][0] if sw.ip4 else None


class Ip4Arp(SwitchNode):
    """Turn each packet into an ARP request for its adjacency's next hop (throttled)."""

    name = "ip4-arp"
    errors = {
        "request-sent": "ARP requests sent",
        "throttled": "ARP requests throttled",
        "no-source-address": "no source address for ARP request",
    }
    next_nodes = ("l2-output", DROP)
    OUTPUT = 0

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.bucket = TokenBucket(ARP_RATE, ARP_BURST)
        self.last: dict[tuple[int, bytes], float] = {}  # (interface, address) -> last request

    def target(self, i: int, adj: int) -> bytes:
        """The address to resolve for buffer ``i``: its adjacency's next hop."""
        return int(self.rt.adjacencies.next_hop[adj]).to_bytes(4, "big")

    def process(self, idx: np.ndarray) -> None:
        rt, meta, pool = self.rt, self.meta, self.rt.pool
        sent, throttled, nosrc = [], [], []
        for i in idx.tolist():
            adj = int(meta.adj[i])
            sw = self.tables.interfaces.get(int(rt.adjacencies.sw_if[adj]))
            target = self.target(i, adj)
            if sw is None or not self._may_ask(sw.sw_if_index, target):
                throttled.append(i)
                continue
            src = source_address(sw, target)
            if src is None:
                nosrc.append(i)
                continue
            frame = packet.arp_request(sw.mac, src, target)
            pool.data[i, :ARP_FRAME] = np.frombuffer(frame, np.uint8)
            pool.length[i] = ARP_FRAME
            meta.rx_if[i] = 0  # local0: the switch's own frame
            meta.tx_if[i] = sw.sw_if_index
            rt.neighbors.request(sw.sw_if_index, target, rt.now)
            sent.append(i)
        self.error_counts["request-sent"] += len(sent)
        self.graph.enqueue(self.next[self.OUTPUT], np.array(sent, INDEX))
        self.drop(np.array(throttled, INDEX), "throttled")
        self.drop(np.array(nosrc, INDEX), "no-source-address")

    def _may_ask(self, sw_if_index: int, target: bytes) -> bool:
        now, key = self.rt.now, (sw_if_index, target)
        last = self.last.get(key)
        if last is not None and 0.0 <= now - last < ARP_THROTTLE:
            return False
        if len(self.last) >= THROTTLE_KEYS:
            self.last = {k: t for k, t in self.last.items() if 0.0 <= now - t < ARP_THROTTLE}
            if len(self.last) >= THROTTLE_KEYS:
                return False
        if not self.bucket.take(now):
            return False
        self.last[key] = now
        return True

    def format_trace(self, i: int) -> str:
        """``ip4-arp: who-has 10.0.2.2 on memif2/0 from 10.0.2.1: request sent`` (or
        ``throttled`` and why, or no source address): the address to resolve and what
        the node will do with the packet, decided as :meth:`process` decides from the
        state as the packet enters (a second packet to one address in the same vector
        finds it asked already: its error-drop line says ``throttled``)."""
        rt = self.rt
        adj = int(self.meta.adj[i])
        sw = self.tables.interfaces.get(int(rt.adjacencies.sw_if[adj]))
        target = self.target(i, adj)
        if sw is None:
            return f"{self.name}: who-has {packet.ip4_str(target)}: interface gone: throttled"
        src = source_address(sw, target)
        asked = self.last.get((sw.sw_if_index, target))
        if asked is not None and 0.0 <= rt.now - asked < ARP_THROTTLE:
            what = f"throttled (asked {rt.now - asked:.3f} s ago)"
        elif not self.bucket.ready(rt.now):
            what = f"throttled (over {ARP_RATE:g} requests/s)"
        elif src is None:
            what = "no-source-address (the interface has no IPv4 address)"
        else:
            what = "request sent"
        tell = f" from {packet.ip4_str(src)}" if src else ""
        return f"{self.name}: who-has {packet.ip4_str(target)} on {sw.name}{tell}: {what}"


class Ip4Glean(Ip4Arp):
    """ip4-arp for a connected or attached subnet: the packet's destination is the next hop."""

    name = "ip4-glean"

    def target(self, i: int, adj: int) -> bytes:
        """The packet's destination address."""
        off = l3_offset(self, i)
        return self.rt.pool.data[i, off + 16 : off + 20].tobytes()
