"""``memif monitor``: live protocol statistics and top talkers of a mirror port.

Attach to any memif interface (a SPAN port), classify every received burst with
numpy (ethertype behind up to two VLAN tags, IPv4/IPv6, transport protocol and
ports), count per protocol and per conversation, optionally write everything that
passes the filters to a pcap file, and redraw a small block in place on a terminal.
Runs until Ctrl-C (the final summary is printed and the capture closed cleanly),
``--duration`` or ``--count``.
"""

from __future__ import annotations

import argparse
import heapq
import ipaddress
import select
import shutil
import signal
import sys
import time
from dataclasses import dataclass, fields
from typing import Any, TextIO

import numpy as np

from .. import packet as pk
from ..config import format_mac, parse_mac
from ..errors import MemifError
from ..pcap import DEFAULT_SNAPLEN, PcapWriter, linktype_for_mode
from ..queue import QueueStats, RxBatch
from ..wire import Mode
from .common import LiveLine, add_connection_args, fail, open_interface, print_json

#: Bytes of each packet looked at: enough for two VLAN tags, an IPv4 header with
#: options or an IPv6 header with a few extension headers, and the ports.
HEADER_BYTES = 128
BURST = 256

# Protocol categories, one per packet.
ARP, ICMP, TCP4, UDP4, IP4_OTHER, ICMP6, TCP6, UDP6, IP6_OTHER, OTHER = range(10)
N_CATEGORIES = 10
RUNT = -1  # ethertype of a frame too short to have one
NOT_IP = -2  # ethertype given to an ip-mode packet that is neither IPv4 nor IPv6
_IPV6_EXT = (0, 43, 60)  # hop-by-hop, routing, destination options
_IPV6_FRAG = 44


# --------------------------------------------------------------------------- classify
@dataclass
class Fields:
    """Per-packet header fields of one burst, one numpy array each."""

    length: np.ndarray  # int64
    ethertype: np.ndarray  # int32; RUNT (too short to have one), NOT_IP (ip mode)
    vlan: np.ndarray  # bool: carried at least one VLAN tag
    category: np.ndarray  # int8, one of ARP .. OTHER
    mac: np.ndarray  # (n, 12) uint8: destination then source (zeros in ip mode)
    has_mac: np.ndarray  # bool
    ip4: np.ndarray  # (n, 8) uint8: source then destination
    is_ip4: np.ndarray  # bool: a complete IPv4 header
    ip6: np.ndarray  # (n, 32) uint8: source then destination
    is_ip6: np.ndarray  # bool: a complete IPv6 header
    arp_ip: np.ndarray  # (n, 8) uint8: sender then target protocol address
    is_arp_ip: np.ndarray  # bool: an IPv4-over-Ethernet ARP body
    l4proto: np.ndarray  # int16, -1 when not IP
    sport: np.ndarray  # int32, -1 when unknown
    dport: np.ndarray  # int32

    def __len__(self) -> int:
        return len(self.length)

    def take(self, index: np.ndarray) -> Fields:
        """The rows ``index`` (an index array or bool mask)."""
        return Fields(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def _u16(hdr: np.ndarray, rows: np.ndarray, off: np.ndarray) -> np.ndarray:
    off = np.minimum(off, hdr.shape[1] - 2)
    return (hdr[rows, off].astype(np.int32) << 8) | hdr[rows, off + 1]


def _cols(hdr: np.ndarray, rows: np.ndarray, off: np.ndarray, width: int) -> np.ndarray:
    idx = np.minimum(off[:, None] + np.arange(width), hdr.shape[1] - 1)
    return hdr[rows[:, None], idx]


def classify(hdr: np.ndarray, lengths: np.ndarray, ethernet: bool = True) -> Fields:
    """Decode the headers of a burst: ``hdr`` holds each packet's first bytes, one per row.

    ``lengths`` are the packets' real lengths; a field is only trusted when the
    packet is long enough to hold it (bytes of ``hdr`` past a length are ignored).
    ``ethernet=False`` reads rows as bare IP packets (an ip-mode interface).
    """
    n, width = hdr.shape
    rows = np.arange(n)
    length = np.asarray(lengths, dtype=np.int64)
    vlan = np.zeros(n, bool)
    if ethernet:
        has_mac = length >= 12
        mac = hdr[:, :12] if width >= 12 else np.zeros((n, 12), np.uint8)
        l3 = np.full(n, pk.ETH_HLEN, np.int64)
        et = _u16(hdr, rows, np.full(n, 12))
        for _ in range(2):  # up to two VLAN tags (QinQ)
            tagged = (et == pk.ETH_P_8021Q) | (et == pk.ETH_P_8021AD) | (et == pk.ETH_P_QINQ)
            tagged &= length >= l3 + 4
            if not tagged.any():
                break
            vlan |= tagged
            l3 = l3 + 4 * tagged
            et = np.where(tagged, _u16(hdr, rows, l3 - 2), et)
        et = np.where(length >= l3, et, RUNT)
    else:
        has_mac = np.zeros(n, bool)
        mac = np.zeros((n, 12), np.uint8)
        l3 = np.zeros(n, np.int64)
        version = hdr[:, 0] >> 4 if width else np.zeros(n, np.uint8)
        et = np.where(version == 4, pk.ETH_P_IP, np.where(version == 6, pk.ETH_P_IPV6, NOT_IP))
        et = np.where(length >= 1, et, RUNT)

    category = np.full(n, OTHER, np.int8)
    l4proto = np.full(n, -1, np.int16)
    l4 = np.zeros(n, np.int64)
    no_ports = np.zeros(n, bool)  # fragments after the first

    # ARP
    arp = et == pk.ETH_P_ARP
    is_arp_ip = arp & (length >= l3 + 28)
    if arp.any():
        category[arp] = ARP
        is_arp_ip &= (_u16(hdr, rows, l3 + 2) == pk.ETH_P_IP) & (
            hdr[rows, np.minimum(l3 + 4, width - 1)] == 6
        )
        arp_ip = np.concatenate(
            (_cols(hdr, rows, l3 + 14, 4), _cols(hdr, rows, l3 + 24, 4)), axis=1
        )
    else:
        arp_ip = np.zeros((n, 8), np.uint8)

    # IPv4
    v4 = et == pk.ETH_P_IP
    category[v4] = IP4_OTHER
    first = hdr[rows, np.minimum(l3, width - 1)]
    ihl = (first & 0xF).astype(np.int64) * 4
    is_ip4 = v4 & (length >= l3 + 20) & (ihl >= 20)
    if not ethernet:
        is_ip4 &= first >> 4 == 4
    proto4 = hdr[rows, np.minimum(l3 + 9, width - 1)].astype(np.int16)
    l4proto = np.where(is_ip4, proto4, l4proto)
    l4 = np.where(is_ip4, l3 + ihl, l4)
    no_ports |= is_ip4 & ((_u16(hdr, rows, l3 + 6) & 0x1FFF) != 0)
    ip4 = _cols(hdr, rows, l3 + 12, 8)
    category[is_ip4 & (proto4 == pk.PROTO_ICMP)] = ICMP
    category[is_ip4 & (proto4 == pk.PROTO_TCP)] = TCP4
    category[is_ip4 & (proto4 == pk.PROTO_UDP)] = UDP4

    # IPv6, skipping up to three extension headers that fit in the bytes looked at
    v6 = et == pk.ETH_P_IPV6
    category[v6] = IP6_OTHER
    is_ip6 = v6 & (length >= l3 + 40)
    ip6 = np.zeros((n, 32), np.uint8)
    if is_ip6.any():
        ip6 = _cols(hdr, rows, l3 + 8, 32)
        nh = hdr[rows, np.minimum(l3 + 6, width - 1)].astype(np.int16)
        off = l3 + 40
        for _ in range(3):
            ext = is_ip6 & np.isin(nh, (*_IPV6_EXT, _IPV6_FRAG)) & (off + 8 <= length)
            ext &= off + 8 <= width
            if not ext.any():
                break
            frag = ext & (nh == _IPV6_FRAG)
            no_ports |= frag & ((_u16(hdr, rows, off + 2) & 0xFFF8) != 0)
            step = np.where(
                frag, 8, (hdr[rows, np.minimum(off + 1, width - 1)].astype(np.int64) + 1) * 8
            )
            nh = np.where(ext, hdr[rows, np.minimum(off, width - 1)], nh)
            off = np.where(ext, off + step, off)
        l4proto = np.where(is_ip6, nh, l4proto)
        l4 = np.where(is_ip6, off, l4)
        category[is_ip6 & (nh == pk.PROTO_ICMPV6)] = ICMP6
        category[is_ip6 & (nh == pk.PROTO_TCP)] = TCP6
        category[is_ip6 & (nh == pk.PROTO_UDP)] = UDP6

    # Ports
    has_ports = (
        ((l4proto == pk.PROTO_TCP) | (l4proto == pk.PROTO_UDP))
        & ~no_ports
        & (length >= l4 + 4)
        & (l4 + 4 <= width)
    )
    sport = np.where(has_ports, _u16(hdr, rows, l4), -1)
    dport = np.where(has_ports, _u16(hdr, rows, l4 + 2), -1)
    return Fields(
        length=length,
        ethertype=et.astype(np.int32),
        vlan=vlan,
        category=category,
        mac=mac,
        has_mac=has_mac,
        ip4=ip4,
        is_ip4=is_ip4,
        ip6=ip6,
        is_ip6=is_ip6,
        arp_ip=arp_ip,
        is_arp_ip=is_arp_ip,
        l4proto=l4proto,
        sport=sport,
        dport=dport,
    )


def burst_headers(batch: RxBatch, width: int = HEADER_BYTES) -> np.ndarray:
    """The first ``width`` bytes of every packet of ``batch``, one row each (zero padded)."""
    n = len(batch)
    out = np.zeros((n, width), np.uint8)
    if n == 0:
        return out
    if batch.first is None:
        batch.gather(width=min(width, int(batch.lengths.max())), out=out)
        return out
    for i in range(n):  # chained: only as many segments as the header needs
        pos = 0
        for seg in batch.segments(i):
            take = min(len(seg), width - pos)
            out[i, pos : pos + take] = seg[:take]
            pos += take
            if pos >= width:
                break
    return out


# --------------------------------------------------------------------------- filters
_PROTO_ETHERTYPES = {
    "arp": pk.ETH_P_ARP,
    "ip": pk.ETH_P_IP,
    "ip4": pk.ETH_P_IP,
    "ipv4": pk.ETH_P_IP,
    "ip6": pk.ETH_P_IPV6,
    "ipv6": pk.ETH_P_IPV6,
    "lldp": pk.ETH_P_LLDP,
    "mpls": pk.ETH_P_MPLS,
}
_PROTO_NUMBERS = {name: num for num, name in pk.IP_PROTO_NAMES.items()} | {"icmp6": 58}
PROTO_NAMES = sorted({*_PROTO_ETHERTYPES, *_PROTO_NUMBERS, "vlan"})


@dataclass
class Filter:
    """What ``--filter-*`` asked for: values of one option are ORed, options ANDed."""

    macs: list[bytes]
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address]
    protos: list[tuple[str, int]]  # ("ethertype"|"ipproto"|"vlan", value)
    ports: list[int]

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Filter:
        """Parse the options; raises ValueError with a message naming the bad value."""
        macs = [parse_mac(m) for m in _split(args.filter_mac)]
        ips = []
        for text in _split(args.filter_ip):
            try:
                ips.append(ipaddress.ip_address(text))
            except ValueError:
                raise ValueError(
                    f"bad --filter-ip {text!r}: expected an IPv4 or IPv6 address"
                ) from None
        protos = [_parse_proto(p) for p in _split(args.filter_proto)]
        ports = []
        for text in _split(args.filter_port):
            if not text.isdigit() or not 0 <= int(text) <= 0xFFFF:
                raise ValueError(f"bad --filter-port {text!r}: expected 0..65535")
            ports.append(int(text))
        return cls(macs, ips, protos, ports)

    @property
    def active(self) -> bool:
        """True when any filter is set."""
        return bool(self.macs or self.ips or self.protos or self.ports)

    def describe(self) -> str:
        """``proto udp,tcp and port 53`` style text."""
        parts = []
        if self.macs:
            parts.append("mac " + ",".join(format_mac(m) for m in self.macs))
        if self.ips:
            parts.append("ip " + ",".join(str(a) for a in self.ips))
        if self.protos:
            parts.append("proto " + ",".join(_proto_text(p) for p in self.protos))
        if self.ports:
            parts.append("port " + ",".join(map(str, self.ports)))
        return " and ".join(parts)

    def as_json(self) -> dict[str, list]:
        """The filters as lists of strings/numbers."""
        return {
            "mac": [format_mac(m) for m in self.macs],
            "ip": [str(a) for a in self.ips],
            "proto": [_proto_text(p) for p in self.protos],
            "port": list(self.ports),
        }

    def mask(self, f: Fields) -> np.ndarray | None:
        """Bool mask of the packets that pass, or None when every packet does."""
        if not self.active:
            return None
        keep = np.ones(len(f), bool)
        if self.macs:
            hit = np.zeros(len(f), bool)
            for m in self.macs:
                mac = np.frombuffer(m, np.uint8)
                hit |= (f.mac[:, :6] == mac).all(1) | (f.mac[:, 6:12] == mac).all(1)
            keep &= hit & f.has_mac
        if self.ips:
            hit = np.zeros(len(f), bool)
            for a in self.ips:
                raw = np.frombuffer(a.packed, np.uint8)
                if a.version == 4:
                    hit |= f.is_ip4 & ((f.ip4[:, :4] == raw).all(1) | (f.ip4[:, 4:] == raw).all(1))
                    hit |= f.is_arp_ip & (
                        (f.arp_ip[:, :4] == raw).all(1) | (f.arp_ip[:, 4:] == raw).all(1)
                    )
                else:
                    hit |= f.is_ip6 & (
                        (f.ip6[:, :16] == raw).all(1) | (f.ip6[:, 16:] == raw).all(1)
                    )
            keep &= hit
        if self.protos:
            hit = np.zeros(len(f), bool)
            for kind, value in self.protos:
                if kind == "ethertype":
                    hit |= f.ethertype == value
                elif kind == "vlan":
                    hit |= f.vlan
                else:
                    hit |= f.l4proto == value
            keep &= hit
        if self.ports:
            hit = np.isin(f.sport, self.ports) | np.isin(f.dport, self.ports)
            keep &= hit
        return keep


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or () for v in item.split(",") if v.strip()]


def _parse_proto(text: str) -> tuple[str, int]:
    key = text.lower()
    if key == "vlan":
        return ("vlan", 0)
    if key in _PROTO_ETHERTYPES:
        return ("ethertype", _PROTO_ETHERTYPES[key])
    if key in _PROTO_NUMBERS:
        return ("ipproto", _PROTO_NUMBERS[key])
    try:
        if key.startswith("0x"):
            value = int(key, 16)
            if 0x600 <= value <= 0xFFFF:
                return ("ethertype", value)
        elif 0 <= int(key) <= 255:
            return ("ipproto", int(key))
    except ValueError:
        pass
    raise ValueError(
        f"bad --filter-proto {text!r}: expected one of {', '.join(PROTO_NAMES)}, "
        "an ethertype like 0x88cc or an IP protocol number"
    )


def _proto_text(p: tuple[str, int]) -> str:
    kind, value = p
    if kind == "vlan":
        return "vlan"
    if kind == "ethertype":
        names = {v: k for k, v in _PROTO_ETHERTYPES.items() if k not in ("ip", "ip4", "ip6")}
        return names.get(value, f"0x{value:04x}")
    return pk.IP_PROTO_NAMES.get(value, str(value))


# --------------------------------------------------------------------------- statistics
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
            _ethertype_key(k): {"packets": p, "bytes": b} for k, p, b in self.ethertypes.top()
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


def _ethertype_key(et: int) -> str:
    return {RUNT: "runt", NOT_IP: "not-ip"}.get(et) or f"0x{et:04x}"


def _mac_pair(key: bytes) -> tuple[str, str]:
    return format_mac(key[:6]), format_mac(key[6:])


def _ip_pair(key: bytes) -> tuple[str, str]:
    half = len(key) // 2
    return str(ipaddress.ip_address(key[:half])), str(ipaddress.ip_address(key[half:]))


# --------------------------------------------------------------------------- display
def _si(value: float, unit: str = "") -> str:
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.1f} {prefix}{unit}"
    return f"{value:.0f} {unit}".rstrip()


def render(
    stats: Stats,
    *,
    title: str,
    status: str,
    received: tuple[int, int],
    rates: tuple[float, float],
    drops: int,
    top: int,
    ethernet: bool,
    filter_text: str = "",
    writer: PcapWriter | None = None,
) -> list[str]:
    """The lines of the live block."""
    pps, bps = rates
    lines = [
        f"{title}  {status}",
        f"received {received[0]} packets {_si(received[1], 'B')}   "
        f"matched {stats.packets} packets {_si(stats.bytes, 'B')}   "
        f"{_si(pps, 'pps')} {_si(bps * 8, 'bit/s')}   drops {drops}",
    ]
    if filter_text:
        lines.append(f"filter: {filter_text}")
    if writer is not None:
        lines.append(f"writing {writer.name}: {writer.packets} packets")
    # The table: (name, packets, bytes) rows; None for a blank line.
    table: list[tuple[str, Any, Any] | None] = [("protocol", "packets", "bytes")]
    p = stats.protocols()
    table.append(("ARP", p["arp"]["packets"], p["arp"]["bytes"]))
    for ver, subs in (
        ("ipv4", (("icmp", "ICMP"), ("tcp", "TCP"), ("udp", "UDP"), ("other", "other"))),
        ("ipv6", (("icmpv6", "ICMPv6"), ("tcp", "TCP"), ("udp", "UDP"), ("other", "other"))),
    ):
        table.append((ver.replace("ip", "IP"), p[ver]["packets"], p[ver]["bytes"]))
        table.extend(
            (f"  {name}", p[ver][key]["packets"], p[ver][key]["bytes"]) for key, name in subs
        )
    table.append(("other", p["other"]["packets"], p["other"]["bytes"]))
    for k, pkts, b in stats.ethertypes.top(top):
        name = _ethertype_key(k) if k < 0 else pk.ethertype_name(k)
        table.append((f"  {name}", pkts, b))
    talkers = stats.top_talkers(top, ethernet)
    sections = []
    if ethernet:
        sections.append(
            ("top MAC pairs", [(f"{t['a']} <-> {t['b']}", t) for t in talkers["mac_pairs"]])
        )
    sections.append(("top IP pairs", [(f"{t['a']} <-> {t['b']}", t) for t in talkers["ip_pairs"]]))
    sections.append(("top ports", [(f"{t['proto']}/{t['port']}", t) for t in talkers["ports"]]))
    for heading, entries in sections:
        if entries:
            table.append(None)
            table.append((heading, "packets", "bytes"))
            table.extend((f"  {name}", t["packets"], t["bytes"]) for name, t in entries)
    width = max(len(r[0]) for r in table if r) + 2
    lines.append("")
    for r in table:
        lines.append("" if r is None else f"{r[0]:<{width}}{r[1]:>12}{r[2]:>16}")
    return lines


class Block:
    """A block of lines redrawn in place on a terminal (ANSI cursor-up), appended otherwise."""

    def __init__(self, stream: TextIO, period: float) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.period = period
        self._height = 0
        self._last = 0.0 if self.tty else time.monotonic()  # a terminal shows the block at once

    def due(self, now: float) -> bool:
        """True when the next refresh is due."""
        return now - self._last >= self.period

    def show(self, lines: list[str], now: float | None = None) -> None:
        """Draw ``lines`` (over the previous block on a terminal)."""
        self._last = time.monotonic() if now is None else now
        out = self.stream
        if self.tty:
            cols, rows = shutil.get_terminal_size()
            lines = lines[: max(rows - 1, 1)]  # cursor-up cannot reach above the screen
            if self._height:
                out.write(f"\x1b[{self._height}A\r")
            out.write("".join(line[: cols - 1] + "\x1b[K\n" for line in lines) + "\x1b[J")
            self._height = len(lines)
        else:
            out.write("\n".join(lines) + "\n\n")
        out.flush()


# --------------------------------------------------------------------------- the tool
class Monitor:
    """The receive loop: bursts in, classified, filtered, counted and written."""

    def __init__(
        self,
        ethernet: bool,
        flt: Filter,
        writer: PcapWriter | None = None,
        count: int | None = None,
    ) -> None:
        self.ethernet = ethernet
        self.filter = flt
        self.writer = writer
        self.count = count
        self.stats = Stats()
        self.received = 0
        self.received_bytes = 0
        self.queue_stats: dict[int, QueueStats] = {}

    @property
    def done(self) -> bool:
        """True once ``count`` packets passed the filters."""
        return self.count is not None and self.stats.packets >= self.count

    def process(self, batch: RxBatch) -> int:
        """Classify, filter, count and write one burst; returns how many passed."""
        n = len(batch)
        if n == 0:
            return 0
        ts = time.time_ns()
        self.received += n
        self.received_bytes += batch.nbytes
        f = classify(burst_headers(batch), batch.lengths, self.ethernet)
        keep = self.filter.mask(f)
        index = None if keep is None else np.flatnonzero(keep)
        if self.count is not None:
            left = self.count - self.stats.packets
            if (n if index is None else len(index)) > left:
                index = (np.arange(n) if index is None else index)[:left]
        if index is not None:
            f = f.take(index)
        self.stats.add(f)
        if self.writer is not None:
            self.writer.write_batch(batch, ts, index)
        return len(f)

    def drops(self) -> int:
        """Receive descriptors dropped as invalid, over every connection so far."""
        return sum(s.drops for s in self.queue_stats.values())


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``memif monitor``."""
    p = subparsers.add_parser(
        "monitor",
        help="live protocol statistics and top talkers of a mirror port; pcap capture",
        description=(
            "Attach to a memif interface (a mirror/SPAN port) and show live per-protocol "
            "statistics and top talkers; --write saves every packet that passes the filters "
            "in pcap format. Runs until Ctrl-C, --duration or --count. Filter values of "
            "one option are ORed (comma separated or repeated), different options ANDed."
        ),
    )
    add_connection_args(p, role="client")
    p.add_argument(
        "--write",
        "-w",
        metavar="FILE.pcap",
        help="write every packet that passes the filters to a pcap file",
    )
    p.add_argument(
        "--snaplen",
        type=int,
        default=DEFAULT_SNAPLEN,
        help=f"bytes of each packet to write (default {DEFAULT_SNAPLEN})",
    )
    p.add_argument(
        "--nanosecond", action="store_true", help="write nanosecond timestamps (pcap ns magic)"
    )
    p.add_argument("--filter-mac", action="append", metavar="MAC", help="source or destination MAC")
    p.add_argument(
        "--filter-ip",
        action="append",
        metavar="ADDR",
        help="source or destination IPv4/IPv6 address (ARP sender/target too)",
    )
    p.add_argument(
        "--filter-proto",
        action="append",
        metavar="PROTO",
        help="arp, ipv4, ipv6, icmp, icmpv6, tcp, udp, vlan, lldp, ..., 0xETHERTYPE or IP proto",
    )
    p.add_argument(
        "--filter-port", action="append", metavar="PORT", help="TCP/UDP source or destination port"
    )
    p.add_argument("--duration", type=float, metavar="S", help="stop S seconds after connecting")
    p.add_argument("--count", type=int, metavar="N", help="stop after N packets passed the filters")
    p.add_argument("--top", type=int, default=5, metavar="N", help="top talkers shown (default 5)")
    p.add_argument(
        "--interval",
        type=float,
        metavar="S",
        help="seconds between refreshes (default 0.5 on a terminal, 5 otherwise)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``memif monitor``."""
    try:
        mode = Mode.parse(args.mode)
        flt = Filter.from_args(args)
    except (ValueError, MemifError) as exc:
        return fail(str(exc))
    ethernet = mode is Mode.ETHERNET
    if flt.macs and not ethernet:
        return fail(f"--filter-mac needs an ethernet-mode interface (this one is {args.mode})")
    if args.count is not None and args.count <= 0:
        return fail("--count must be positive")
    if args.snaplen <= 0:
        return fail("--snaplen must be positive")
    if args.interval is not None and not args.interval > 0:
        return fail("--interval must be positive")
    writer = None
    if args.write:
        try:
            writer = PcapWriter(
                args.write,
                linktype_for_mode(mode),
                snaplen=args.snaplen,
                nanosecond=args.nanosecond,
            )
        except OSError as exc:
            return fail(f"cannot write {args.write}: {exc.strerror or exc}")
    try:
        try:
            sock, iface = open_interface(args, "memif-monitor")
        except (TimeoutError, MemifError, OSError) as exc:
            return fail(str(exc))
        mon = Monitor(ethernet, flt, writer, args.count)
        try:
            stopped_by, elapsed = _loop(args, sock, iface, mon)
        finally:
            sock.close()
    finally:
        if writer is not None:
            writer.close()
    return _report(args, mon, stopped_by, elapsed, flt)


def _loop(args: argparse.Namespace, sock: Any, iface: Any, mon: Monitor) -> tuple[str, float]:
    """Receive until stopped; returns (what stopped it, seconds)."""
    stop: list[str] = []
    out = sys.stdout
    tty = out.isatty()
    period = args.interval if args.interval else (0.5 if tty else 5.0)
    block = None if args.json else Block(out, period)
    line = LiveLine(sys.stderr, period=period, enabled=args.json)
    title = f"memif monitor  {args.socket} {args.role} id {args.id} {args.mode}"
    start = time.monotonic()
    deadline = None if args.duration is None else start + args.duration
    last = (start, 0, 0)

    def on_signal(signum: int, _frame: object) -> None:
        if stop and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: give up at once
        stop.append("signal")

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def draw(now: float, final: bool = False) -> None:
        nonlocal last
        t0, p0, b0 = (start, 0, 0) if final else last  # the final block shows the average
        dt = max(now - t0, 1e-9)
        rates = ((mon.stats.packets - p0) / dt, (mon.stats.bytes - b0) / dt)
        last = (now, mon.stats.packets, mon.stats.bytes)
        if block is not None:
            status = iface.state if iface.connected else f"{iface.state} (waiting for the peer)"
            block.show(
                render(
                    mon.stats,
                    title=title,
                    status=f"{status}  {now - start:.1f} s",
                    received=(mon.received, mon.received_bytes),
                    rates=rates,
                    drops=mon.drops(),
                    top=args.top,
                    ethernet=mon.ethernet,
                    filter_text=mon.filter.describe(),
                    writer=mon.writer,
                ),
                now,
            )
        else:
            line.update(
                f"monitor: {mon.stats.packets} packets {_si(mon.stats.bytes, 'B')} "
                f"{_si(rates[0], 'pps')}"
                + (f" written {mon.writer.packets}" if mon.writer else ""),
                force=True,
            )

    next_control = 0.0
    try:
        while not stop:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                stop.append("duration")
                break
            got = 0
            for q in iface.rx_queues:
                mon.queue_stats[id(q.stats)] = q.stats
                batch = q.rx_burst(BURST)
                if len(batch):
                    got += len(batch)
                    mon.process(batch)
                    q.refill()
                    if mon.done:
                        break
            if mon.done:
                stop.append("count")
                break
            if now >= next_control:
                sock.poll(0)
                next_control = now + 0.1
            if (block is not None and block.due(now)) or (
                block is None and now - last[0] >= period
            ):
                draw(now)
            if not got:
                timeout = min(0.1, max(0.0, next_control - now))
                if deadline is not None:
                    timeout = min(timeout, max(0.0, deadline - now))
                _wait(sock, iface, timeout)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    end = time.monotonic()
    if block is not None:
        draw(end, final=True)
    line.close()
    return stop[0] if stop else "signal", end - start


def _wait(sock: Any, iface: Any, timeout: float) -> None:
    """Sleep until a queue is kicked, the control socket has work, or ``timeout``."""
    queues = iface.rx_queues if iface.connected else []
    if queues and all(q.polling for q in queues):
        return  # polling mode: spin
    fds = [q.fd for q in queues if not q.polling]
    try:
        ready, _, _ = select.select([sock.fileno(), *fds], [], [], timeout)
    except (OSError, ValueError):
        return
    for q in queues:
        if q.fd in ready:
            q.clear_interrupt()
    if sock.fileno() in ready:
        sock.poll(0)


def _report(
    args: argparse.Namespace, mon: Monitor, stopped_by: str, elapsed: float, flt: Filter
) -> int:
    stats = mon.stats
    if args.json:
        print_json(
            {
                "socket": args.socket,
                "role": args.role,
                "id": args.id,
                "mode": args.mode,
                "duration": round(elapsed, 6),
                "stopped_by": stopped_by,
                "received": {"packets": mon.received, "bytes": mon.received_bytes},
                "packets": stats.packets,
                "bytes": stats.bytes,
                "protocols": stats.protocols(),
                "top_talkers": stats.top_talkers(args.top, mon.ethernet),
                "filter": flt.as_json(),
                "written": mon.writer.packets if mon.writer else 0,
                "file": args.write,
                "rx_drops": mon.drops(),
            }
        )
        return 0
    summary = (
        f"monitor: {stats.packets} packets, {stats.bytes} bytes matched "
        f"({mon.received} received) in {elapsed:.1f} s, stopped by {stopped_by}"
    )
    if mon.writer is not None:
        summary += f"; wrote {mon.writer.packets} packets to {args.write}"
    print(summary, flush=True)
    return 0
