"""IPv4 adjacencies: what ip4-lookup's result means (VPP's ``ip_adjacency_t``).

The FIB maps a prefix to an adjacency index; the :class:`AdjacencyTable` maps the index
to what to do with the packet, in numpy arrays the nodes index by vector:

* ``DROP``: a special route (network and broadcast addresses, multicast): dropped;
* ``RECEIVE``: one of the switch's addresses: ip4-local;
* ``GLEAN``: a connected or attached subnet: the packet's own destination is the next
  hop, resolved with ARP (ip4-glean) until a neighbour's /32 covers it;
* ``NEIGHBOR``: a next hop on an interface: ip4-rewrite when its MAC is known
  (``complete``), else ip4-arp.

Adjacencies on ``mode ip`` interfaces need no MAC: they are complete at once and their
rewrite is empty.  Neighbour adjacencies are shared and counted: a next hop used by
several routes and by its own /32 is one adjacency, freed with its last user.  Index 0
is never used (the FIB's miss).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from .. import packet

__all__ = ["AdjKind", "Adjacency", "AdjacencyTable", "Next"]


class AdjKind(enum.IntEnum):
    """What an adjacency does."""

    DROP = 0
    RECEIVE = 1
    GLEAN = 2
    NEIGHBOR = 3


class Next(enum.IntEnum):
    """The ip4-lookup next node of an adjacency (``AdjacencyTable.next``)."""

    MISS = 0  # no route: ip4-icmp-error (destination unreachable)
    DROP = 1
    LOCAL = 2
    ARP = 3
    GLEAN = 4
    REWRITE = 5


@dataclass
class Adjacency:
    """One adjacency's facts (the arrays mirror them for the nodes)."""

    kind: AdjKind
    sw_if_index: int = 0
    next_hop: bytes | None = None  # NEIGHBOR: the address to reach
    mac: bytes | None = None  # NEIGHBOR: resolved MAC (None: incomplete)
    refs: int = 0


ETH_IP = packet.ETH_P_IP.to_bytes(2, "big")


class AdjacencyTable:
    """Adjacencies by index, with per-index arrays for ip4-lookup and ip4-rewrite."""

    def __init__(self, capacity: int = 64) -> None:
        self.adjs: dict[int, Adjacency] = {}
        self._free: list[int] = []
        self._size = 1  # index 0: the miss
        self._neighbors: dict[tuple[int, bytes], int] = {}
        self._gleans: dict[int, int] = {}
        self._grow(capacity)
        #: (sw_if_index -> (MAC, mode ip)) the rewrites were built with
        self._ifs: dict[int, tuple[bytes, bool]] = {}
        self.drop = self._new(Adjacency(AdjKind.DROP, refs=1))
        self.receive = self._new(Adjacency(AdjKind.RECEIVE, refs=1))

    def _grow(self, n: int) -> None:
        """Arrays for ``n`` adjacencies, keeping what they hold."""

        def grown(a: np.ndarray | None, dtype: type, *shape: int) -> np.ndarray:
            out: np.ndarray = np.zeros((n, *shape), dtype)
            if a is not None:
                out[: len(a)] = a
            return out

        had = self.__dict__.get
        self.next = grown(had("next"), np.int8)  # Next per adjacency
        self.sw_if = grown(had("sw_if"), np.int64)
        self.next_hop = grown(had("next_hop"), np.uint32)
        self.l2_len = grown(had("l2_len"), np.int64)  # rewrite bytes: 14, or 0 on mode ip
        self.rewrite = grown(had("rewrite"), np.uint8, packet.ETH_HLEN)
        #: ``rewrite`` as the host-order 64-bit words of a frame's first 16 bytes (the
        #: last two zero): what ip4-rewrite ORs into a row's words
        self.rewrite_words = grown(had("rewrite_words"), np.uint64, 2)

    def __len__(self) -> int:
        return len(self.adjs)

    def _new(self, adj: Adjacency) -> int:
        if self._free:
            i = self._free.pop()
        else:
            i = self._size
            self._size += 1
            if i >= len(self.next):
                self._grow(2 * len(self.next))
        self.adjs[i] = adj
        self._mirror(i)
        return i

    def _mirror(self, i: int) -> None:
        adj = self.adjs[i]
        self.sw_if[i] = adj.sw_if_index
        nh = adj.next_hop
        self.next_hop[i] = int.from_bytes(nh, "big") if nh else 0
        mac, ip_mode = self._ifs.get(adj.sw_if_index, (bytes(6), False))
        self.l2_len[i] = 0  # until a rewrite is complete
        if adj.kind is AdjKind.DROP:
            self.next[i] = Next.DROP
        elif adj.kind is AdjKind.RECEIVE:
            self.next[i] = Next.LOCAL
        elif ip_mode:  # no MAC to learn: the packet goes as it is
            self.next[i] = Next.REWRITE
        elif adj.kind is AdjKind.GLEAN:
            self.next[i] = Next.GLEAN
        elif adj.mac is None:
            self.next[i] = Next.ARP
        else:
            self.next[i] = Next.REWRITE
            self.l2_len[i] = packet.ETH_HLEN
            head = adj.mac + mac + ETH_IP
            self.rewrite[i] = np.frombuffer(head, np.uint8)
            self.rewrite_words[i] = np.frombuffer(head + bytes(2), np.uint64)

    # ------------------------------------------------------------------ users
    def glean(self, sw_if_index: int) -> int:
        """The glean adjacency of an interface (one each), with a reference taken."""
        i = self._gleans.get(sw_if_index)
        if i is None:
            i = self._gleans[sw_if_index] = self._new(Adjacency(AdjKind.GLEAN, sw_if_index))
        self.adjs[i].refs += 1
        return i

    def neighbor(self, sw_if_index: int, ip: bytes, mac: bytes | None = None) -> int:
        """The adjacency of next hop ``ip`` on the interface, with a reference taken
        (``mac``: already known)."""
        key = (sw_if_index, ip)
        i = self._neighbors.get(key)
        if i is None:
            i = self._neighbors[key] = self._new(Adjacency(AdjKind.NEIGHBOR, sw_if_index, ip, mac))
        self.adjs[i].refs += 1
        return i

    def release(self, i: int) -> None:
        """Drop one reference; the adjacency goes with its last."""
        adj = self.adjs[i]
        adj.refs -= 1
        if adj.refs > 0 or adj.kind in (AdjKind.DROP, AdjKind.RECEIVE):
            return
        if adj.kind is AdjKind.GLEAN:
            del self._gleans[adj.sw_if_index]
        else:
            assert adj.next_hop is not None
            del self._neighbors[(adj.sw_if_index, adj.next_hop)]
        del self.adjs[i]
        self.next[i], self.l2_len[i] = Next.DROP, 0
        self._free.append(i)

    def find(self, sw_if_index: int, ip: bytes) -> int | None:
        """The neighbour adjacency of ``ip`` on the interface, if any."""
        return self._neighbors.get((sw_if_index, ip))

    # ------------------------------------------------------------------ resolution
    def resolve(self, sw_if_index: int, ip: bytes, mac: bytes | None) -> None:
        """A neighbour's MAC became known (None: forgotten): its adjacency follows."""
        i = self._neighbors.get((sw_if_index, ip))
        if i is not None and self.adjs[i].mac != mac:
            self.adjs[i].mac = mac
            self._mirror(i)

    def interface(self, sw_if_index: int, mac: bytes, ip_mode: bool) -> None:
        """An interface's MAC or mode (as its rewrites use them), when new or changed."""
        if self._ifs.get(sw_if_index) == (mac, ip_mode):
            return
        self._ifs[sw_if_index] = (mac, ip_mode)
        for i, adj in self.adjs.items():
            if adj.sw_if_index == sw_if_index and adj.kind >= AdjKind.GLEAN:
                self._mirror(i)

    def forget_interface(self, sw_if_index: int) -> None:
        """The interface is gone (its routes were removed first)."""
        self._ifs.pop(sw_if_index, None)

    def is_glean(self, i: int) -> bool:
        """True for a glean adjacency."""
        adj = self.adjs.get(i)
        return adj is not None and adj.kind is AdjKind.GLEAN
