"""The IPv4 routes behind the FIB: who asked for each prefix, and which wins (VPP's sources).

Several sources may want the same prefix: an interface address (its local /32 and its
connected subnet), the special routes every table has, the operator (``ip route``) and
the neighbour table (a resolved neighbour's /32, VPP's adj-fib).  :class:`Ip4Routes`
keeps every source's adjacency per prefix and installs the best one in the
:class:`~.ip4_fib.Ip4Fib` (lower :class:`Source` wins, as VPP's interface routes beat its
CLI ones); when a source withdraws, the next one takes over.  It holds a reference on
each adjacency it uses and releases it when the source goes.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

from .adjacency import AdjacencyTable
from .ip4_fib import FibError, Ip4Fib

__all__ = ["Ip4Routes", "Path", "Source", "prefix_str"]


class Source(enum.IntEnum):
    """Who installed a route; the lowest present is the one used."""

    LOCAL = 0  # an interface's own address (/32, receive)
    CONNECTED = 1  # an interface address's subnet (glean)
    SPECIAL = 2  # drop routes: network/broadcast of a subnet, 0/32, multicast, 255.../32
    CLI = 3  # ip route add
    ADJ = 4  # a resolved neighbour's /32


#: the special routes every table has (VPP's): prefix, length
SPECIAL_ROUTES = (
    (0, 32),
    (0xE0000000, 4),  # multicast
    (0xF0000000, 4),  # class E
    (0xFFFFFFFF, 32),  # limited broadcast
)


@dataclass
class Path:
    """One source's way to a prefix."""

    adj: int
    owner: int = 0  # the interface for LOCAL/CONNECTED/SPECIAL/ADJ (several may share)


def prefix_str(prefix: int, length: int) -> str:
    """``10.0.0.0/24``."""
    return f"{ipaddress.IPv4Address(prefix)}/{length}"


def _mask(length: int) -> int:
    return (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF


def network(addr: bytes, length: int) -> int:
    """The network of an address as a host-order int."""
    return int.from_bytes(addr, "big") & _mask(length)


class Ip4Routes:
    """Prefix -> {(source, owner): path}; the best path of each is in ``fib``."""

    def __init__(self, fib: Ip4Fib, adjacencies: AdjacencyTable) -> None:
        self.fib = fib
        self.adj = adjacencies
        self.paths: dict[tuple[int, int], dict[tuple[Source, int], Path]] = {}
        #: sw_if_index -> its connected subnets (prefix, length)
        self.subnets: dict[int, set[tuple[int, int]]] = {}
        for prefix, length in SPECIAL_ROUTES:
            self.add(prefix, length, Source.SPECIAL, self.adj.drop, take=True)

    def add(
        self, prefix: int, length: int, source: Source, adj: int, owner: int = 0, take: bool = False
    ) -> None:
        """Set ``source``'s path to the prefix (a reference on ``adj`` is the caller's,
        now this table's; ``take``: the shared drop/receive adjacencies, not counted).
        A :class:`~.ip4_fib.FibError` (the FIB is full) leaves everything as it was."""
        paths = self.paths.setdefault((prefix, length), {})
        old = paths.get((source, owner))
        paths[(source, owner)] = Path(adj, owner)
        try:
            self._install(prefix, length)
        except FibError:
            if old is not None:
                paths[(source, owner)] = old
            else:
                del paths[(source, owner)]
                if not paths:
                    del self.paths[(prefix, length)]
            raise
        if old is not None and not take:
            self.adj.release(old.adj)

    def remove(self, prefix: int, length: int, source: Source, owner: int = 0) -> bool:
        """Withdraw ``source``'s path; False when it had none."""
        paths = self.paths.get((prefix, length))
        old = paths.pop((source, owner), None) if paths else None
        if old is None:
            return False
        self.adj.release(old.adj)
        self._install(prefix, length)
        return True

    def best(self, prefix: int, length: int) -> tuple[Source, Path] | None:
        """The path in use for the prefix, and its source."""
        paths = self.paths.get((prefix, length))
        if not paths:
            return None
        key = min(paths)
        return key[0], paths[key]

    def _install(self, prefix: int, length: int) -> None:
        found = self.best(prefix, length)
        if found is None:
            self.paths.pop((prefix, length), None)
            if self.fib.get(prefix, length) is not None:
                self.fib.delete(prefix, length)
        else:
            self.fib.add(prefix, length, found[1].adj)

    def owned_by(self, sw_if_index: int) -> list[tuple[int, int, Source]]:
        """Every (prefix, length, source) path an interface owns or goes through."""
        out = []
        for (prefix, length), paths in self.paths.items():
            for (source, owner), path in paths.items():
                if owner == sw_if_index or (
                    path.adj in self.adj.adjs and self.adj.adjs[path.adj].sw_if_index == sw_if_index
                    and source is Source.CLI
                ):  # fmt: skip
                    out.append((prefix, length, source))
        return out

    # ------------------------------------------------------------------ interface addresses
    def address_add(self, sw_if_index: int, addr: bytes, length: int) -> None:
        """An interface address: its local /32 (receive), its subnet (glean) and, below
        /31, the subnet's network and broadcast addresses (drop), as VPP installs them."""
        a = int.from_bytes(addr, "big")
        self.add(a, 32, Source.LOCAL, self.adj.receive, sw_if_index, take=True)
        if length < 32:
            net = network(addr, length)
            glean = self.adj.glean(sw_if_index)
            try:
                self.add(net, length, Source.CONNECTED, glean, sw_if_index)
            except FibError:
                self.adj.release(glean)
                raise
            self.subnets.setdefault(sw_if_index, set()).add((net, length))
            if length < 31:
                bcast = net | (0xFFFFFFFF >> length)
                for host in (net, bcast):
                    self.add(host, 32, Source.SPECIAL, self.adj.drop, sw_if_index, take=True)

    def address_del(self, sw_if_index: int, addr: bytes, length: int) -> None:
        """Undo :meth:`address_add`; the neighbours' /32s in the subnet go too (they
        are reached through it), their adjacencies stay for the routes that use them."""
        a = int.from_bytes(addr, "big")
        self._withdraw_shared(a, 32, Source.LOCAL, sw_if_index)
        if length < 32:
            net = network(addr, length)
            hosts = [
                p
                for (p, n), paths in self.paths.items()
                if n == 32 and (Source.ADJ, sw_if_index) in paths and p & _mask(length) == net
            ]
            for host in hosts:
                self.remove(host, 32, Source.ADJ, sw_if_index)
            self.remove(net, length, Source.CONNECTED, sw_if_index)
            subnets = self.subnets.get(sw_if_index, set())
            subnets.discard((net, length))
            if not subnets:
                self.subnets.pop(sw_if_index, None)
            if length < 31:
                for host in (net, net | (0xFFFFFFFF >> length)):
                    self._withdraw_shared(host, 32, Source.SPECIAL, sw_if_index)

    def _withdraw_shared(self, prefix: int, length: int, source: Source, owner: int) -> None:
        """Remove a path on the shared drop/receive adjacency (not reference-counted)."""
        paths = self.paths.get((prefix, length))
        if paths and paths.pop((source, owner), None) is not None:
            self._install(prefix, length)

    def connected(self, sw_if_index: int, ip: bytes) -> bool:
        """True when one of the interface's connected subnets holds ``ip``."""
        a = int.from_bytes(ip, "big")
        return any(
            network(ip, length) == prefix and (a != prefix or length >= 31)
            for prefix, length in self.subnets.get(sw_if_index, ())
        )

    # ------------------------------------------------------------------ neighbours
    def neighbor_learned(self, sw_if_index: int, ip: bytes, mac: bytes) -> None:
        """A neighbour resolved: its adjacency is complete and, on a connected subnet of
        its interface, its /32 points at it (VPP's adj-fib)."""
        self.adj.resolve(sw_if_index, ip, mac)
        a = int.from_bytes(ip, "big")
        paths = self.paths.get((a, 32), {})
        if (Source.ADJ, sw_if_index) not in paths and self.connected(sw_if_index, ip):
            adj = self.adj.neighbor(sw_if_index, ip, mac)
            try:
                self.add(a, 32, Source.ADJ, adj, sw_if_index)
            except FibError:  # a full FIB: the subnet's glean still reaches it
                self.adj.release(adj)

    def neighbor_forgotten(self, sw_if_index: int, ip: bytes) -> None:
        """A neighbour aged out or was deleted: its /32 goes, its adjacency is incomplete."""
        self.remove(int.from_bytes(ip, "big"), 32, Source.ADJ, sw_if_index)
        self.adj.resolve(sw_if_index, ip, None)
