"""The L2 forwarding table: (bridge domain, MAC) -> interface, with learning and ageing.

Keys are ``bd << 48 | mac`` in a uint64.  ``entries`` (a dict) is the truth; a
sorted copy of its keys serves vectorized lookups with one ``searchsorted`` per
vector, rebuilt only after the table changed.  Learning takes the last occurrence
of a key in a vector, as a per-packet loop would.

Learning is bounded three ways, so one port cannot fill the table for everyone:
``limit`` entries in all (static ones included), ``bd_limit[bd]`` learned entries
in a bridge domain (VPP's bridge-domain learn limit) and ``if_limit`` (or
``if_limits[sw_if_index]``) learned entries on one interface.  A new MAC that meets
a limit is not learned (the packet still goes on, as in VPP): ``limit_drops``
counts such packets and ``refused`` says on which interface and for which limit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

DEFAULT_LIMIT = 65536
#: learned MACs one interface may hold unless configured otherwise: a container
#: port rarely has more hosts behind it; 16 ports at the default fill the table.
DEFAULT_IF_LIMIT = 4096


def fib_key(bd: int | np.ndarray, mac: int | np.ndarray) -> np.ndarray:
    """The table key of (bd, mac)."""
    return (np.asarray(bd, np.uint64) << np.uint64(48)) | np.asarray(mac, np.uint64)


@dataclass
class Entry:
    """One learned or static MAC."""

    sw_if_index: int
    last_seen: float
    static: bool = False


class L2Fib:
    """MAC table shared by every bridge domain."""

    def __init__(self, limit: int = DEFAULT_LIMIT, if_limit: int = DEFAULT_IF_LIMIT) -> None:
        self.limit = limit
        self.if_limit = if_limit
        self.if_limits: dict[int, int] = {}  # sw_if_index -> its own limit
        self.bd_limit: dict[int, int] = {}  # bd -> learned entries it may hold
        self.entries: dict[int, Entry] = {}
        self._keys = np.empty(0, np.uint64)
        self._vals = np.empty(0, np.int64)
        self._stale = False
        self.limit_drops = 0
        # (sw_if_index, "table" | "bridge-domain" | "interface") -> packets refused
        self.refused: Counter[tuple[int, str]] = Counter()
        self.learned_bd: Counter[int] = Counter()  # dynamic entries per bridge domain
        self.learned_if: Counter[int] = Counter()  # dynamic entries per interface

    def interface_limit(self, sw_if_index: int) -> int:
        """Learned MACs ``sw_if_index`` may hold."""
        return self.if_limits.get(sw_if_index, self.if_limit)

    def _add(self, k: int, entry: Entry) -> None:
        self.entries[k] = entry
        if not entry.static:
            self.learned_bd[k >> 48] += 1
            self.learned_if[entry.sw_if_index] += 1

    def _delete(self, k: int) -> None:
        entry = self.entries.pop(k)
        if not entry.static:
            _decrement(self.learned_bd, k >> 48)
            _decrement(self.learned_if, entry.sw_if_index)

    def _over(self, k: int, sw_if_index: int, new: bool) -> str | None:
        """Which limit learning ``k`` on ``sw_if_index`` would break, if any."""
        if new and len(self.entries) >= self.limit:
            return "table"
        bd = k >> 48
        if new and bd in self.bd_limit and self.learned_bd[bd] >= self.bd_limit[bd]:
            return "bridge-domain"
        if self.learned_if[sw_if_index] >= self.interface_limit(sw_if_index):
            return "interface"
        return None

    def __len__(self) -> int:
        return len(self.entries)

    def _sync(self) -> None:
        if self._stale:
            keys = np.fromiter(self.entries.keys(), np.uint64, len(self.entries))
            vals = np.fromiter(
                (e.sw_if_index for e in self.entries.values()), np.int64, len(self.entries)
            )
            order = np.argsort(keys)
            self._keys, self._vals = keys[order], vals[order]
            self._stale = False

    def lookup_one(self, key: int) -> int:
        """Interface of one key, -1 if unknown: the table itself, without the sorted
        arrays' calls (what :meth:`lookup` does for a 1-packet vector)."""
        entry = self.entries.get(key)
        return -1 if entry is None else entry.sw_if_index

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Interface of each key, -1 where unknown."""
        if len(keys) == 1:
            return np.array([self.lookup_one(int(keys[0]))], np.int64)
        self._sync()
        if len(self._keys) == 0:
            return np.full(len(keys), -1, np.int64)
        pos = np.searchsorted(self._keys, keys)
        np.minimum(pos, len(self._keys) - 1, out=pos)
        return np.where(self._keys[pos] == keys, self._vals[pos], -1)

    def learn(self, keys: np.ndarray, sw_if: np.ndarray, now: float) -> int:
        """Learn or move every (key, interface); returns how many entries changed."""
        if len(keys) == 0:
            return 0
        if len(keys) == 1 and self.known_at(int(keys[0]), int(sw_if[0])):
            return 0
        current = self.lookup(keys)
        if not (current != sw_if).any():
            return 0
        # The last occurrence of each key says where it ends up (even when that is
        # where the table has it already); the first one is when a per-packet loop
        # would have added it, so new keys meet the limit in that order, and each
        # packet of a key refused for the limit counts as a drop.
        uniq, first, count = np.unique(keys, return_index=True, return_counts=True)
        _, first_rev = np.unique(keys[::-1], return_index=True)
        last = len(keys) - 1 - first_rev
        moved = current[last] != sw_if[last]
        order = np.argsort(first[moved])
        todo = zip(
            uniq[moved][order].tolist(),
            sw_if[last][moved][order].tolist(),
            count[moved][order].tolist(),
            strict=True,
        )
        n = 0
        for k, s, c in todo:
            entry = self.entries.get(k)
            if entry is not None and entry.static:
                continue
            if entry is None or entry.sw_if_index != s:  # a new MAC, or one that moved here
                over = self._over(k, s, entry is None)
                if over is not None:
                    self.limit_drops += c
                    self.refused[(s, over)] += c
                    continue
            if entry is None:
                self._add(k, Entry(s, now))
            else:
                _decrement(self.learned_if, entry.sw_if_index)
                self.learned_if[s] += 1
                entry.sw_if_index, entry.last_seen = s, now
            n += 1
        self._stale = self._stale or n > 0
        return n

    def known_at(self, key: int, sw_if_index: int) -> bool:
        """``key`` is in the table on ``sw_if_index``: learning it there changes nothing
        (a 1-packet vector's usual case: a known host where it was)."""
        entry = self.entries.get(key)
        return entry is not None and entry.sw_if_index == sw_if_index

    def touch_one(self, key: int, now: float) -> None:
        """:meth:`touch` of one key."""
        entry = self.entries.get(key)
        if entry is not None:
            entry.last_seen = now

    def touch(self, keys: np.ndarray, now: float) -> None:
        """Refresh the age of known keys (cheap: only unique keys are visited)."""
        for k in np.unique(keys).tolist():
            entry = self.entries.get(k)
            if entry is not None:
                entry.last_seen = now

    def add_static(self, bd: int, mac: int, sw_if_index: int, now: float) -> None:
        """A static entry: never learned over, never aged."""
        k = int(fib_key(bd, mac))
        if k in self.entries:
            self._delete(k)
        self._add(k, Entry(sw_if_index, now, static=True))
        self._stale = True

    def remove(self, bd: int, mac: int) -> bool:
        """``l2fib del``: forget one entry, static or learned; False if there was none."""
        k = int(fib_key(bd, mac))
        if k not in self.entries:
            return False
        self._delete(k)
        self._stale = True
        return True

    def forget_interface(self, sw_if_index: int) -> int:
        """A deleted interface: every entry behind it goes, static ones too."""
        gone = [k for k, e in self.entries.items() if e.sw_if_index == sw_if_index]
        for k in gone:
            self._delete(k)
        self._stale = self._stale or bool(gone)
        return len(gone)

    def age(self, now: float, max_age: dict[int, float]) -> int:
        """Remove dynamic entries older than their bridge domain's ``max_age`` seconds."""
        old = [
            k
            for k, e in self.entries.items()
            if not e.static and (a := max_age.get(k >> 48)) and now - e.last_seen > a
        ]
        for k in old:
            self._delete(k)
        self._stale = self._stale or bool(old)
        return len(old)

    def flush(self, bd: int | None = None, sw_if_index: int | None = None) -> int:
        """Remove dynamic entries of a bridge domain and/or an interface."""
        gone = [
            k
            for k, e in self.entries.items()
            if not e.static
            and (bd is None or k >> 48 == bd)
            and (sw_if_index is None or e.sw_if_index == sw_if_index)
        ]
        for k in gone:
            self._delete(k)
        self._stale = self._stale or bool(gone)
        return len(gone)

    def items(self) -> list[tuple[int, int, Entry]]:
        """(bd, mac, entry) for every entry, sorted."""
        return [(k >> 48, k & 0xFFFFFFFFFFFF, e) for k, e in sorted(self.entries.items())]


def _decrement(counter: Counter[int], key: int) -> None:
    left = counter[key] - 1
    if left > 0:
        counter[key] = left
    else:
        del counter[key]


def reference_learn(table: dict[int, int], keys: list[int], sw_if: list[int]) -> dict[int, int]:
    """Plain-Python learning, packet by packet: the oracle for :meth:`L2Fib.learn`."""
    out = dict(table)
    for k, s in zip(keys, sw_if, strict=True):
        out[k] = s
    return out


def reference_learn_limited(
    table: dict[int, int],
    static: set[int],
    keys: list[int],
    sw_if: list[int],
    limit: int,
) -> tuple[dict[int, int], int]:
    """:func:`reference_learn` with static keys (never moved) and a size limit.

    ``table`` holds every entry, static ones too (they count against ``limit``).
    Returns the new table and the learn-limit drops: one per packet whose new key
    found the table full.
    """
    out, drops = dict(table), 0
    for k, s in zip(keys, sw_if, strict=True):
        if k in static:
            continue
        if k not in out and len(out) >= limit:
            drops += 1
            continue
        out[k] = s
    return out, drops
