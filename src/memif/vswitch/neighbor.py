"""The switch's IPv4 neighbour (ARP) table: bounded, solicited-only, aged.

The switch resolves addresses for its own ``ping`` and for the next hops it routes to
(ip4-arp, ip4-glean).  It learns from an ARP reply only when it asked:
:meth:`NeighborTable.request` notes the (interface, address) of each ARP request it
sends, and a reply that matches no outstanding request is refused (``not-requested``),
however many a peer sends.  On top of that the table holds at most ``limit`` entries,
``per_interface`` of them on one interface (``limit``), entries older than ``max_age``
seconds are removed, and an
interface's entries go when it goes down or is deleted.  The operator's entries
(``set ip neighbor``) need no request; ``static`` ones never age and stay while the
interface is down.  Every change is told to the ``listeners`` (the routes: a resolved
neighbour completes its adjacency and gets its /32).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Neighbor", "NeighborTable"]

DEFAULT_LIMIT = 4096
DEFAULT_PER_INTERFACE = 512
DEFAULT_MAX_AGE = 300.0  # seconds, as VPP's ip neighbor age default when set
REQUEST_TTL = 10.0  # seconds an ARP request of ours waits for its reply


@dataclass
class Neighbor:
    """One resolved address."""

    mac: bytes
    updated: float
    static: bool = False


#: told (sw_if_index, ip, mac) when a neighbour is learned or changes, mac None when it goes
Listener = Callable[[int, bytes, "bytes | None"], None]


class NeighborTable:
    """(sw_if_index, IPv4 address) -> MAC of the neighbours the switch asked for."""

    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        per_interface: int = DEFAULT_PER_INTERFACE,
        max_age: float = DEFAULT_MAX_AGE,
    ) -> None:
        self.limit = limit
        self.per_interface = per_interface
        self.max_age = max_age
        self.entries: dict[tuple[int, bytes], Neighbor] = {}
        self._requested: dict[tuple[int, bytes], float] = {}  # -> deadline
        self._per_if: dict[int, int] = {}
        self.listeners: list[Listener] = []

    def _tell(self, sw_if_index: int, ip: bytes, mac: bytes | None) -> None:
        for listener in self.listeners:
            listener(sw_if_index, ip, mac)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, sw_if_index: int, ip: bytes) -> bytes | None:
        """The MAC of ``ip`` on the interface, or None."""
        entry = self.entries.get((sw_if_index, ip))
        return entry.mac if entry is not None else None

    def request(self, sw_if_index: int, ip: bytes, now: float) -> None:
        """Note an ARP request we sent: its reply may be learned until the deadline."""
        if len(self._requested) >= self.limit:
            self._expire_requests(now)
        if len(self._requested) < self.limit:
            self._requested[(sw_if_index, ip)] = now + REQUEST_TTL

    def learn(self, sw_if_index: int, ip: bytes, mac: bytes, now: float) -> str | None:
        """Learn an ARP reply; None when learned, else the refusal (an error name)."""
        key = (sw_if_index, ip)
        entry = self.entries.get(key)
        if entry is not None:  # a refresh of a known neighbour (its MAC may change)
            if entry.static:
                return None  # the operator's word stands
            changed, entry.mac, entry.updated = entry.mac != mac, mac, now
            if changed:
                self._tell(sw_if_index, ip, mac)
            return None
        deadline = self._requested.pop(key, None)
        if deadline is None or deadline < now:
            return "not-requested"
        full = len(self.entries) >= self.limit
        if full or self._per_if.get(sw_if_index, 0) >= self.per_interface:
            return "limit"
        self._insert(key, Neighbor(mac, now))
        return None

    def _insert(self, key: tuple[int, bytes], entry: Neighbor) -> None:
        self.entries[key] = entry
        self._per_if[key[0]] = self._per_if.get(key[0], 0) + 1
        self._tell(key[0], key[1], entry.mac)

    def add(self, sw_if_index: int, ip: bytes, mac: bytes, now: float, static: bool) -> None:
        """``set ip neighbor``: the operator's entry, replacing a learned one (within the
        table's limit; ``ValueError`` names it when full)."""
        key = (sw_if_index, ip)
        entry = self.entries.get(key)
        if entry is not None:
            changed = entry.mac != mac
            entry.mac, entry.updated, entry.static = mac, now, static
            if changed:
                self._tell(sw_if_index, ip, mac)
            return
        if len(self.entries) >= self.limit:
            raise ValueError(f"the neighbour table is full ({self.limit} entries)")
        self._insert(key, Neighbor(mac, now, static))

    def delete(self, sw_if_index: int, ip: bytes) -> bool:
        """``set ip neighbor del``: False when there was no such entry."""
        if (sw_if_index, ip) not in self.entries:
            return False
        self._remove([(sw_if_index, ip)])
        return True

    def _remove(self, keys: list[tuple[int, bytes]]) -> int:
        for key in keys:
            del self.entries[key]
            left = self._per_if[key[0]] - 1
            if left:
                self._per_if[key[0]] = left
            else:
                del self._per_if[key[0]]
            self._tell(key[0], key[1], None)
        return len(keys)

    def _expire_requests(self, now: float) -> None:
        for key in [k for k, t in self._requested.items() if t < now]:
            del self._requested[key]

    def age(self, now: float) -> int:
        """Remove entries not refreshed for ``max_age`` seconds; returns how many."""
        self._expire_requests(now)
        if not self.max_age:
            return 0
        old = [
            k for k, e in self.entries.items() if now - e.updated > self.max_age and not e.static
        ]
        return self._remove(old)

    def flush(self, sw_if_index: int, static: bool = False) -> int:
        """Forget an interface's neighbours and requests (it went down: static entries
        stay; or away: ``static`` too)."""
        for key in [k for k in self._requested if k[0] == sw_if_index]:
            del self._requested[key]
        keys = [
            k for k, e in self.entries.items() if k[0] == sw_if_index and (static or not e.static)
        ]
        return self._remove(keys)

    def items(self) -> list[tuple[int, bytes, Neighbor]]:
        """(sw_if_index, ip, entry) for every entry, sorted."""
        return [(i, ip, e) for (i, ip), e in sorted(self.entries.items())]
