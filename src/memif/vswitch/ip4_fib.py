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
The default route (0.0.0.0/0) is not written into the tables: an entry of depth 0
holds ``MISS`` and a lookup that finds ``MISS`` answers the default route, so adding
or deleting it costs nothing and backs no memory.

The tables are anonymous memory the kernel backs page by page as entries are written
(:func:`lazy_zeros`): an empty table costs almost nothing, 1,000 scattered routes about
8 MB, a full one 80 MB for tbl24 plus 1.25 KB per tbl8 group in use.  Huge pages make
random lookups in a large table 1.5 to 4 times faster (fewer TLB misses) but back 2 MB
at the first write in each: a table of 1,000 routes would hold 84 MB.  So the tables
start in 4 KB pages and move into huge pages once (``hugepages_at`` routes, by when
small pages back most of tbl24 anyway).  Two bounds stop a peer or a startup file
from growing it further: ``max_routes`` and ``max_tbl8`` (a group is freed when the
last route longer than /24 under its /24 goes).
The routes themselves are one dict entry each in ``_rules`` (about 40 bytes, 70 with its int).

Addresses are host-order ints (``int.from_bytes(addr, "big")``); :func:`ip4_dst`
turns packet bytes into such a vector.
"""

from __future__ import annotations

import heapq
import ipaddress
import mmap
from collections.abc import Iterable
from typing import ClassVar

import numpy as np

__all__ = [
    "FibError",
    "FibFullError",
    "Ip4Fib",
    "ip4_dst",
    "lazy_zeros",
    "reference_lookup",
]

DEFAULT_MAX_ROUTES = 1_250_000  # a full Internet table (about 1 M routes) and room to spare
DEFAULT_MAX_TBL8 = 65_536  # groups of 256: /24s holding a route longer than /24
#: routes at which the tables move into huge pages: 4 KB pages then back about 70% of
#: what huge pages would (for scattered routes), and the copy takes tens of milliseconds
HUGEPAGES_AT = 16_384
MAX_ADJ = 2**31 - 1
_EXT = np.uint32(1 << 31)  # a tbl24 entry with this bit names a tbl8 group
_GROUP = 256
#: tbl24 entries a short prefix's add or delete handles at a time: its temporaries stay
#: in cache: a /1 (2**23 entries) over a 1M-route table costs about 11 ms, a /8 50 us
_CHUNK = 1 << 16


def _text(prefix: int, length: int) -> str:
    try:
        return f"{ipaddress.IPv4Address(prefix)}/{length}"
    except (ipaddress.AddressValueError, ValueError, TypeError):
        return f"{prefix!r}/{length!r}"


_MASKS = tuple((0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF for n in range(33))


class FibError(ValueError):
    """A route that cannot be added or deleted; the message names it and what is accepted."""


class FibFullError(FibError):
    """A bound of the table was reached (routes, or tbl8 groups for routes longer than /24)."""


class Ip4Fib:
    """IPv4 routes (prefix/length -> adjacency index) with vectorized longest-prefix match."""

    #: the lookup result for an address no route covers
    MISS: ClassVar[int] = 0

    def __init__(
        self,
        max_routes: int = DEFAULT_MAX_ROUTES,
        max_tbl8: int = DEFAULT_MAX_TBL8,
        hugepages_at: int | None = HUGEPAGES_AT,
    ) -> None:
        """``hugepages_at``: the number of routes at which the tables move into huge
        pages (0: they start there; None: never)."""
        if not 1 <= max_tbl8 <= 1 << 16:
            raise ValueError(f"max_tbl8 {max_tbl8}: accepted 1..65536")
        self.max_routes = max_routes
        self.max_tbl8 = max_tbl8
        self.hugepages_at = hugepages_at
        #: the tables are in huge pages (asked for: the kernel may still refuse)
        self.hugepages = hugepages_at == 0
        self._tbl24 = lazy_zeros(1 << 24, np.uint32, self.hugepages)
        self._tbl24_depth = lazy_zeros(1 << 24, np.uint8, self.hugepages)
        self._tbl8 = lazy_zeros(max_tbl8 * _GROUP, np.uint32, self.hugepages)
        self._tbl8_depth = lazy_zeros(max_tbl8 * _GROUP, np.uint8, self.hugepages)
        self._rules: list[dict[int, int]] = [{} for _ in range(33)]  # [length] prefix -> adj
        self._n_routes = 0
        self._default = self.MISS  # 0.0.0.0/0's adjacency: kept here, not in 2**24 entries
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
        prefix, length = self._check(prefix, length)
        if not isinstance(adj, int | np.integer) or not 1 <= adj <= MAX_ADJ:
            raise FibError(f"{_text(prefix, length)}: adjacency {adj} (accepted 1..{MAX_ADJ})")
        rules = self._rules[length]
        new = prefix not in rules
        if new and self._n_routes >= self.max_routes:
            raise FibFullError(
                f"{_text(prefix, length)}: the FIB holds its maximum of {self.max_routes} routes"
            )
        if length == 0:
            self._default = int(adj)
        elif length <= 24:
            self._set24(prefix, length, adj, length, length)
        else:
            group = self._group_of(prefix)
            self._set8(group, prefix, length, adj, length, length)
        rules[prefix] = int(adj)
        self._n_routes += new
        if self._n_routes == self.hugepages_at and not self.hugepages:
            self._move_to_hugepages()

    def delete(self, prefix: int, length: int) -> None:
        """Delete ``prefix/length``; the addresses it covered go to the next-longest route."""
        prefix, length = self._check(prefix, length)
        if prefix not in self._rules[length]:
            raise FibError(f"{_text(prefix, length)}: no such route")
        del self._rules[length][prefix]
        self._n_routes -= 1
        adj, depth = self._parent(prefix, length)
        if length == 0:
            self._default = self.MISS
            return
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

    def length_counts(self) -> dict[int, int]:
        """Routes per prefix length, the lengths that have any (``show ip fib summary``)."""
        return {n: len(rules) for n, rules in enumerate(self._rules) if rules}

    def routes(self) -> list[tuple[int, int, int]]:
        """Every route as (prefix, length, adj), sorted by prefix then length."""
        n = self._n_routes
        prefixes = np.fromiter((p for rules in self._rules for p in rules), np.uint32, n)
        lengths = np.repeat(np.arange(33, dtype=np.uint8), [len(r) for r in self._rules])
        adjs = np.fromiter((a for rules in self._rules for a in rules.values()), np.uint32, n)
        order = np.lexsort((lengths, prefixes))
        return list(
            zip(
                prefixes[order].tolist(),
                lengths[order].tolist(),
                adjs[order].tolist(),
                strict=True,
            )
        )

    # -- lookup ---------------------------------------------------------------

    def lookup(self, dst: np.ndarray) -> np.ndarray:
        """The adjacency of each destination (uint32, host order), ``MISS`` where none."""
        dst = np.asarray(dst, np.uint32)
        out = self._tbl24.take(dst >> 8)
        if not len(out):
            return out
        lowest = out.min()
        if lowest >= _EXT:  # every /24 has longer prefixes: no selecting
            out = self._tbl8.take((out & ~_EXT) << 8 | (dst & 0xFF))
            lowest = out.min()
        elif out.max() >= _EXT:
            ext = np.flatnonzero(out >= _EXT)
            entry = out[ext] & ~_EXT
            out[ext] = self._tbl8.take((entry << 8) | (dst[ext] & 0xFF))
            lowest = out.min()
        if self._default and lowest == self.MISS:  # only where some destination missed
            np.putmask(out, out == self.MISS, self._default)
        return out

    def lookup_one(self, dst: int) -> int:
        """The adjacency of one destination (the path of 1..4-packet vectors)."""
        entry: int = self._tbl24.item(dst >> 8)
        if entry & (1 << 31):
            entry = self._tbl8.item(((entry & MAX_ADJ) << 8) | (dst & 0xFF))
        return entry or self._default

    def covering(self, dst: int) -> tuple[int, int, int] | None:
        """The route that ``dst`` matches, as (prefix, length, adj); None if none does."""
        dst = int(dst)
        entry: int = self._tbl24.item(dst >> 8)
        if entry & (1 << 31):
            i = ((entry & MAX_ADJ) << 8) | (dst & 0xFF)
            entry, depth = self._tbl8.item(i), self._tbl8_depth.item(i)
        else:
            depth = self._tbl24_depth.item(dst >> 8)
        entry = entry or self._default  # depth 0: the default route's, if there is one
        if entry == self.MISS:
            return None
        return dst & _MASKS[depth], depth, entry

    # -- internals ------------------------------------------------------------

    @staticmethod
    def _check(prefix: int, length: int) -> tuple[int, int]:
        """(prefix, length) as Python ints, or the FibError that says what is wrong."""
        if not isinstance(length, int | np.integer) or not 0 <= length <= 32:
            raise FibError(f"{_text(prefix, length)}: prefix length (accepted 0..32)")
        if not isinstance(prefix, int | np.integer) or not 0 <= prefix <= 0xFFFFFFFF:
            raise FibError(f"{_text(prefix, length)}: address (accepted 0.0.0.0..255.255.255.255)")
        prefix, length = int(prefix), int(length)
        if prefix & ~_MASKS[length] & 0xFFFFFFFF:
            net = _text(prefix & _MASKS[length], length)
            raise FibError(f"{_text(prefix, length)}: host bits set (the network is {net})")
        return prefix, length

    def _parent(self, prefix: int, length: int) -> tuple[int, int]:
        """(adj, length) of the longest route strictly covering ``prefix/length`` as
        the tables hold it; (MISS, 0) when there is none but the default route."""
        for n in range(length - 1, 0, -1):
            adj = self._rules[n].get(prefix & _MASKS[n])
            if adj is not None:
                return adj, n
        return self.MISS, 0

    def _set24(self, prefix: int, length: int, adj: int, depth: int, upto: int) -> None:
        """Set the /24 entries of ``prefix/length`` whose depth is at most ``upto``
        to (adj, depth), and likewise inside the tbl8 groups under them."""
        lo = prefix >> 8
        hi = lo + (1 << (24 - length))
        if hi - lo == 1:  # a /24, most of a routing table: one entry, no masks
            entry = self._tbl24.item(lo)
            if entry & (1 << 31):
                self._set8(entry & MAX_ADJ, 0, 24, adj, depth, upto)
            elif self._tbl24_depth.item(lo) <= upto:
                self._tbl24[lo] = adj
                self._tbl24_depth[lo] = depth
            return
        for start in range(lo, hi, _CHUNK):
            self._set24_range(start, min(start + _CHUNK, hi), adj, depth, upto)

    def _set24_range(self, lo: int, hi: int, adj: int, depth: int, upto: int) -> None:
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

    def _move_to_hugepages(self) -> None:
        """Copy the tables into huge pages (tbl8 as far as groups were ever used)."""
        used = self._tbl8_high * _GROUP
        for name, n in (
            ("_tbl24", 1 << 24),
            ("_tbl24_depth", 1 << 24),
            ("_tbl8", used),
            ("_tbl8_depth", used),
        ):
            old: np.ndarray = getattr(self, name)
            new = lazy_zeros(len(old), old.dtype.type, hugepages=True)
            new[:n] = old[:n]
            setattr(self, name, new)
        self.hugepages = True

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


def lazy_zeros(count: int, dtype: type[np.generic], hugepages: bool = False) -> np.ndarray:
    """A zeroed array in private anonymous memory that the kernel backs as it is written.

    np.zeros would do the same, except that where transparent huge pages are "always"
    (as on many distributions) every first write backs 2 MB; here the choice is explicit:
    ``hugepages`` asks for them (MADV_HUGEPAGE), otherwise they are refused.
    """
    size = max(count * np.dtype(dtype).itemsize, 1)
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    advice = getattr(mmap, "MADV_HUGEPAGE" if hugepages else "MADV_NOHUGEPAGE", None)
    if advice is not None:
        buf.madvise(advice)
    return np.frombuffer(buf, dtype, count)


def reference_lookup(routes: Iterable[tuple[int, int, int]], dst: int) -> int:
    """The longest-prefix match of ``dst`` over (prefix, length, adj) routes, plain
    Python, one route at a time: the oracle the table is tested against."""
    best_len, best_adj = -1, Ip4Fib.MISS
    for prefix, length, adj in routes:
        if length > best_len and dst & _MASKS[length] == prefix:
            best_len, best_adj = length, adj
    return best_adj


def ip4_dst(octets: np.ndarray) -> np.ndarray:
    """Host-order uint32 addresses from network-order bytes: an (n, 4) uint8 array
    (the destination field of n packets) or a flat uint8 array of 4*n bytes."""
    raw = np.ascontiguousarray(octets, np.uint8).reshape(-1)
    if len(raw) % 4:
        raise ValueError(f"{len(raw)} bytes: accepted a multiple of 4 (one address each)")
    return raw.view(">u4").astype(np.uint32)
