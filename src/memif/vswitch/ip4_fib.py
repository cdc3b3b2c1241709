"""The IPv4 FIB: longest-prefix match over a DIR-24-8 table (DPDK rte_lpm's layout).

``tbl24`` has one uint32 entry per /24 (2**24 of them).  An entry is either an
adjacency index (``MISS``, 0, when no route covers the /24) or, with bit 31 set,
the number of a ``tbl8`` group: 256 entries, one per address of that /24, used
only where a route longer than /24 starts.  A lookup is one read, or two for
addresses under such a /24, whatever the number of routes.

Each entry also records the length of the route it came from (``depth``, in
``tbl24_depth`` and ``tbl8_depth``), so adding or deleting nested prefixes is
exact: an add overwrites only the entries no longer than itself, a delete hands
its entries back to the next-longest route covering it.  The routes themselves
(``_rules``, one dict per length) are the truth; the tables are derived from them.

np.zeros is backed lazily by the kernel: an empty table costs almost nothing, a
full one 80 MB for tbl24 plus 1.25 KB per tbl8 group in use.  Two bounds stop a
peer or a startup file from growing it further: ``max_routes`` and ``max_tbl8``
(a group is freed when the last route longer than /24 under its /24 goes).

Addresses are host-order ints (``int.from_bytes(addr, "big")``); :func:`ip4_dst`
turns packet bytes into such a vector.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections.abc import Iterable
from typing import ClassVar

import numpy as np

__all__ = [
    "FibError",
    "FibFullError",
    "Ip4Fib",
    "ip4_dst",
    "reference_lookup",
]

DEFAULT_MAX_ROUTES = 1_250_000  # a full Internet table (about 1 M routes) and room to spare
DEFAULT_MAX_TBL8 = 65_536  # groups of 256: /24s holding a route longer than /24
MAX_ADJ = 2**31 - 1
_EXT = np.uint32(1 << 31)  # a tbl24 entry with this bit names a tbl8 group
_GROUP = 256


def _text(prefix: int, length: int) -> str:
    try:
        return f"{ipaddress.IPv4Address(prefix)}/{length}"
    except (ipaddress.AddressValueError, ValueError, TypeError):
        return f"{prefix!r}/{length!r}"


def _mask(length: int) -> int:
    return (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF


class FibError(ValueError):
    """A route that cannot be added or deleted; the message names it and what is accepted."""


class FibFullError(FibError):
    """A bound of the table was reached (routes, or tbl8 groups for routes longer than /24)."""


class Ip4Fib:
    """IPv4 routes (prefix/length -> adjacency index) with vectorized longest-prefix match."""

    #: the lookup result for an address no route covers
    MISS: ClassVar[int] = 0

    def __init__(
        self, max_routes: int = DEFAULT_MAX_ROUTES, max_tbl8: int = DEFAULT_MAX_TBL8
    ) -> None:
        if not 1 <= max_tbl8 <= 1 << 16:
            raise ValueError(f"max_tbl8 {max_tbl8}: accepted 1..65536")
        self.max_routes = max_routes
        self.max_tbl8 = max_tbl8
        self._tbl24 = np.zeros(1 << 24, np.uint32)
        self._tbl24_depth = np.zeros(1 << 24, np.uint8)
        self._tbl8 = np.zeros(max_tbl8 * _GROUP, np.uint32)
        self._tbl8_depth = np.zeros(max_tbl8 * _GROUP, np.uint8)
        self._rules: list[dict[int, int]] = [{} for _ in range(33)]  # [length] prefix -> adj
        self._n_routes = 0
        self._free_tbl8: list[int] = []  # a heap: the lowest free group is reused first
        self._tbl8_high = 0  # groups ever handed out

    # -- configuration --------------------------------------------------------

    def __len__(self) -> int:
        return self._n_routes

    @property
    def tbl8_in_use(self) -> int:
        """tbl8 groups holding routes longer than /24."""
        return self._tbl8_high - len(self._free_tbl8)

    def get(self, prefix: int, length: int) -> int | None:
        """The adjacency of exactly ``prefix/length``, None if there is no such route."""
        if not 0 <= length <= 32:
            return None
        return self._rules[length].get(prefix)

    def add(self, prefix: int, length: int, adj: int) -> None:
        """Add ``prefix/length`` -> ``adj``, or replace the adjacency of an existing route."""
        self._check(prefix, length)
        if not 1 <= adj <= MAX_ADJ:
            raise FibError(f"{_text(prefix, length)}: adjacency {adj} (accepted 1..{MAX_ADJ})")
        rules = self._rules[length]
        new = prefix not in rules
        if new and self._n_routes >= self.max_routes:
            raise FibFullError(
                f"{_text(prefix, length)}: the FIB holds its maximum of {self.max_routes} routes"
            )
        if length <= 24:
            self._set24(prefix, length, adj, length, length)
        else:
            group = self._group_of(prefix)
            self._set8(group, prefix, length, adj, length, length)
        rules[prefix] = adj
        self._n_routes += new

    def delete(self, prefix: int, length: int) -> None:
        """Delete ``prefix/length``; the addresses it covered go to the next-longest route."""
        self._check(prefix, length)
        if prefix not in self._rules[length]:
            raise FibError(f"{_text(prefix, length)}: no such route")
        del self._rules[length][prefix]
        self._n_routes -= 1
        adj, depth = self._parent(prefix, length)
        if length <= 24:
            self._set24(prefix, length, adj, depth, length)
            return
        entry = int(self._tbl24[prefix >> 8])
        group = entry & ~int(_EXT)
        self._set8(group, prefix, length, adj, depth, length)
        base = group * _GROUP
        if not (self._tbl8_depth[base : base + _GROUP] > 24).any():
            # no route longer than /24 left here: the /24 is one entry again
            self._tbl24[prefix >> 8] = self._tbl8[base]
            self._tbl24_depth[prefix >> 8] = self._tbl8_depth[base]
            heapq.heappush(self._free_tbl8, group)

    def routes(self) -> list[tuple[int, int, int]]:
        """Every route as (prefix, length, adj), sorted by prefix then length."""
        out = [(p, n, a) for n, rules in enumerate(self._rules) for p, a in rules.items()]
        out.sort()
        return out

    # -- lookup ---------------------------------------------------------------

    def lookup(self, dst: np.ndarray) -> np.ndarray:
        """The adjacency of each destination (uint32, host order), ``MISS`` where none."""
        dst = np.asarray(dst, np.uint32)
        out = self._tbl24.take(dst >> 8)
        if len(out) and out.max() >= _EXT:
            ext = np.flatnonzero(out >= _EXT)
            entry = out[ext] & ~_EXT
            out[ext] = self._tbl8.take((entry << 8) | (dst[ext] & 0xFF))
        return out

    def lookup_one(self, dst: int) -> int:
        """The adjacency of one destination (the path of 1..4-packet vectors)."""
        entry: int = self._tbl24.item(dst >> 8)
        if entry & (1 << 31):
            entry = self._tbl8.item(((entry & MAX_ADJ) << 8) | (dst & 0xFF))
        return entry

    def covering(self, dst: int) -> tuple[int, int, int] | None:
        """The route that ``dst`` matches, as (prefix, length, adj); None if none does."""
        entry: int = self._tbl24.item(dst >> 8)
        if entry & (1 << 31):
            i = ((entry & MAX_ADJ) << 8) | (dst & 0xFF)
            entry, depth = self._tbl8.item(i), self._tbl8_depth.item(i)
        else:
            depth = self._tbl24_depth.item(dst >> 8)
        if entry == self.MISS:
            return None
        return dst & _mask(depth), depth, entry

    # -- internals ------------------------------------------------------------

    def _check(self, prefix: int, length: int) -> None:
        if not isinstance(length, int) or not 0 <= length <= 32:
            raise FibError(f"{_text(prefix, length)}: prefix length (accepted 0..32)")
        if not isinstance(prefix, int) or not 0 <= prefix <= 0xFFFFFFFF:
            raise FibError(f"{_text(prefix, length)}: address (accepted 0.0.0.0..255.255.255.255)")
        if prefix & ~_mask(length) & 0xFFFFFFFF:
            net = _text(prefix & _mask(length), length)
            raise FibError(f"{_text(prefix, length)}: host bits set (the network is {net})")

    def _parent(self, prefix: int, length: int) -> tuple[int, int]:
        """(adj, length) of the longest route strictly covering ``prefix/length``;
        (MISS, 0) when there is none."""
        for n in range(length - 1, -1, -1):
            adj = self._rules[n].get(prefix & _mask(n))
            if adj is not None:
                return adj, n
        return self.MISS, 0

    def _set24(self, prefix: int, length: int, adj: int, depth: int, upto: int) -> None:
        """Set the /24 entries of ``prefix/length`` whose depth is at most ``upto``
        to (adj, depth), and likewise inside the tbl8 groups under them."""
        lo = prefix >> 8
        hi = lo + (1 << (24 - length))
        entries, depths = self._tbl24[lo:hi], self._tbl24_depth[lo:hi]
        ext = entries >= _EXT
        mine = ~ext & (depths <= upto)
        entries[mine] = adj
        depths[mine] = depth
        groups = entries[ext] & ~_EXT
        if len(groups):
            idx = ((groups.astype(np.intp) << 8)[:, None] + np.arange(_GROUP)).ravel()
            idx = idx[self._tbl8_depth[idx] <= upto]
            self._tbl8[idx] = adj
            self._tbl8_depth[idx] = depth

    def _set8(self, group: int, prefix: int, length: int, adj: int, depth: int, upto: int) -> None:
        """Set the entries of ``prefix/length`` (longer than /24) in ``group`` whose
        depth is at most ``upto`` to (adj, depth)."""
        lo = group * _GROUP + (prefix & 0xFF)
        hi = lo + (1 << (32 - length))
        entries, depths = self._tbl8[lo:hi], self._tbl8_depth[lo:hi]
        mine = depths <= upto
        entries[mine] = adj
        depths[mine] = depth

    def _group_of(self, prefix: int) -> int:
        """The tbl8 group of the /24 holding ``prefix``, made from its entry if needed."""
        i = prefix >> 8
        entry = int(self._tbl24[i])
        if entry & (1 << 31):
            return entry & MAX_ADJ
        if self._free_tbl8:
            group = heapq.heappop(self._free_tbl8)
        elif self._tbl8_high < self.max_tbl8:
            group = self._tbl8_high
            self._tbl8_high += 1
        else:
            raise FibFullError(
                f"{_text(prefix & 0xFFFFFF00, 24)}: all {self.max_tbl8} tbl8 groups in use"
                " (each /24 holding a route longer than /24 takes one)"
            )
        base = group * _GROUP
        self._tbl8[base : base + _GROUP] = entry
        self._tbl8_depth[base : base + _GROUP] = self._tbl24_depth[i]
        self._tbl24[i] = _EXT | np.uint32(group)
        return group


def reference_lookup(routes: Iterable[tuple[int, int, int]], dst: int) -> int:
    """The longest-prefix match of ``dst`` over (prefix, length, adj) routes, plain
    Python, one route at a time: the oracle the table is tested against."""
    best_len, best_adj = -1, Ip4Fib.MISS
    for prefix, length, adj in routes:
        if length > best_len and dst & _mask(length) == prefix:
            best_len, best_adj = length, adj
    return best_adj


def ip4_dst(octets: np.ndarray) -> np.ndarray:
    """Host-order uint32 addresses from network-order bytes: an (n, 4) uint8 array
    (the destination field of n packets) or a flat uint8 array of 4*n bytes."""
    raw = np.ascontiguousarray(octets, np.uint8).reshape(-1)
    if len(raw) % 4:
        raise ValueError(f"{len(raw)} bytes: accepted a multiple of 4 (one address each)")
    return raw.view(">u4").astype(np.uint32)
