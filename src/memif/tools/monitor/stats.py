"""``memif monitor``'s counters: per protocol, per conversation and per port, by bytes."""

from __future__ import annotations

import heapq
import ipaddress
from typing import Any

import numpy as np

from ... import packet as pk
from ...classify import (
    ARP,
    ICMP,
    ICMP6,
    IP4_OTHER,
    IP6_OTHER,
    N_CATEGORIES,
    NOT_IP,
    OTHER,
    RUNT,
    TCP4,
    TCP6,
    UDP4,
    UDP6,
    Fields,
)
from ...config import format_mac


class Talkers:
    """Packets and bytes per key (a conversation or a port), pruned when it grows large."""

    def __init__(self, limit: int = 100_000) -> None:
        self.table: dict[Any, list[int]] = {}  # key -> [packets, bytes]
        self.limit = limit

    def __len__(self) -> int:
        return len(self.table)

    def add(self, keys: np.ndarray, lengths: np.ndarray) -> None:
        """Count one burst: ``keys`` is one packed key per packet."""
        if len(keys) == 0:
            return
        uniq, inv = np.unique(keys, return_inverse=True)
        inv = inv.ravel()
        packets = np.bincount(inv).tolist()
        nbytes = np.bincount(inv, weights=lengths).astype(np.int64).tolist()
        table = self.table
        for k, p, b in zip(uniq.tolist(), packets, nbytes, strict=True):
            entry = table.get(k)
            if entry is None:
                table[k] = [p, b]
            else:
                entry[0] += p
                entry[1] += b
        if len(table) > self.limit:  # keep the heavy half: approximate from here on
            self.table = dict(heapq.nlargest(self.limit // 2, table.items(), key=_by_bytes))

    def top(self, n: int | None = None) -> list[tuple[Any, int, int]]:
        """The ``n`` (default all) keys with the most bytes: (key, packets, bytes)."""
        items = self.table.items()
        best = (
            sorted(items, key=_by_bytes, reverse=True)
            if n is None
            else heapq.nlargest(n, items, key=_by_bytes)
        )
        return [(k, p, b) for k, (p, b) in best]


def _by_bytes(item: tuple[Any, list[int]]) -> int:
    return item[1][1]


def pair_keys(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One key per row for the unordered pair of byte strings (a, b) (``V{2k}`` dtype)."""
    n, k = a.shape
    if n == 0:
        return np.empty(0, f"V{2 * k}")
    differ = a != b
    first = differ.argmax(1)
    rows = np.arange(n)
    swap = (a[rows, first] > b[rows, first])[:, None]
    pair = np.concatenate((np.where(swap, b, a), np.where(swap, a, b)), axis=1)
    return np.ascontiguousarray(pair).view(f"V{2 * k}").ravel()


class Stats:
    """Per-protocol and per-conversation counters of the packets that passed the filters."""

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0
        self.cat_packets = np.zeros(N_CATEGORIES, np.int64)
        self.cat_bytes = np.zeros(N_CATEGORIES, np.int64)
        self.ethertypes = Talkers()  # the OTHER category by ethertype (RUNT, NOT_IP too)
        self.mac_pairs = Talkers()
        self.ip_pairs = Talkers()
        self.ports = Talkers()

    def add(self, f: Fields) -> None:
        """Count one (filtered) burst."""
        n = len(f)
        if n == 0:
            return
        length = f.length
        self.packets += n
        self.bytes += int(length.sum())
        self.cat_packets += np.bincount(f.category, minlength=N_CATEGORIES)
        self.cat_bytes += np.bincount(f.category, weights=length, minlength=N_CATEGORIES).astype(
            np.int64
        )
        other = f.category == OTHER
        if other.any():
            self.ethertypes.add(f.ethertype[other], length[other])
        if f.has_mac.any():
            m = f.has_mac
            self.mac_pairs.add(pair_keys(f.mac[m, 6:12], f.mac[m, :6]), length[m])
        if f.is_ip4.any():
            m = f.is_ip4
            self.ip_pairs.add(pair_keys(f.ip4[m, :4], f.ip4[m, 4:]), length[m])
        if f.is_ip6.any():
            m = f.is_ip6
            self.ip_pairs.add(pair_keys(f.ip6[m, :16], f.ip6[m, 16:]), length[m])
        m = f.sport >= 0
        if m.any():
            port = np.minimum(f.sport[m], f.dport[m]).astype(np.int64)
            self.ports.add((f.l4proto[m].astype(np.int64) << 16) | port, length[m])

    # -- reports
    def _pb(self, *cats: int) -> dict[str, int]:
        idx = list(cats)
        return {
            "packets": int(self.cat_packets[idx].sum()),
            "bytes": int(self.cat_bytes[idx].sum()),
        }

    def protocols(self) -> dict[str, Any]:
        """The per-protocol tree: arp, ipv4 (icmp/tcp/udp/other), ipv6 (...), other."""
        ethertypes = {
            ethertype_key(k): {"packets": p, "bytes": b} for k, p, b in self.ethertypes.top()
        }
        return {
            "arp": self._pb(ARP),
            "ipv4": {
                **self._pb(ICMP, TCP4, UDP4, IP4_OTHER),
                "icmp": self._pb(ICMP),
                "tcp": self._pb(TCP4),
                "udp": self._pb(UDP4),
                "other": self._pb(IP4_OTHER),
            },
            "ipv6": {
                **self._pb(ICMP6, TCP6, UDP6, IP6_OTHER),
                "icmpv6": self._pb(ICMP6),
                "tcp": self._pb(TCP6),
                "udp": self._pb(UDP6),
                "other": self._pb(IP6_OTHER),
            },
            "other": {**self._pb(OTHER), "ethertypes": ethertypes},
        }

    def top_talkers(self, n: int, ethernet: bool = True) -> dict[str, list[dict[str, Any]]]:
        """The ``n`` busiest MAC pairs, IP pairs and ports, by bytes."""
        out: dict[str, list[dict[str, Any]]] = {}
        if ethernet:
            out["mac_pairs"] = [
                {"a": a, "b": b, "packets": p, "bytes": by}
                for (a, b), p, by in ((_mac_pair(k), p, b) for k, p, b in self.mac_pairs.top(n))
            ]
        out["ip_pairs"] = [
            {"a": a, "b": b, "packets": p, "bytes": by}
            for (a, b), p, by in ((_ip_pair(k), p, b) for k, p, b in self.ip_pairs.top(n))
        ]
        out["ports"] = [
            {"proto": pk.IP_PROTO_NAMES.get(k >> 16, str(k >> 16)), "port": k & 0xFFFF}
            | {"packets": p, "bytes": b}
            for k, p, b in self.ports.top(n)
        ]
        return out


def ethertype_key(et: int) -> str:
    """The name of an OTHER-category ethertype in reports: ``0x88cc``, ``runt``, ``not-ip``."""
    return {RUNT: "runt", NOT_IP: "not-ip"}.get(et) or f"0x{et:04x}"


def _mac_pair(key: bytes) -> tuple[str, str]:
    return format_mac(key[:6]), format_mac(key[6:])


def _ip_pair(key: bytes) -> tuple[str, str]:
    half = len(key) // 2
    return str(ipaddress.ip_address(key[:half])), str(ipaddress.ip_address(key[half:]))
