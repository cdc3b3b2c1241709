"""``memif monitor``'s packet classification and filters, one burst at a time with numpy.

:func:`classify` decodes the headers of a whole burst (ethertype behind up to two VLAN tags,
IPv4/IPv6 with extension headers, transport protocol and ports) into :class:`Fields`, one
array per field; :class:`Filter` turns ``--filter-*`` options into a mask over those fields.
"""

from __future__ import annotations

import argparse
import ipaddress
from dataclasses import dataclass, fields

import numpy as np

from ... import packet as pk
from ...config import format_mac, parse_mac
from ...queue import RxBatch
from ..burst import heads

#: Bytes of each packet looked at: enough for two VLAN tags, an IPv4 header with
#: options or an IPv6 header with a few extension headers, and the ports.
HEADER_BYTES = 128

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
    if n:
        heads(batch, min(width, int(batch.lengths.max())), out)
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
