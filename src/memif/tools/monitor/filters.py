"""``memif monitor``'s filters over the header fields of a burst.

:func:`burst_headers` gathers the header rows that :func:`memif.classify.classify` decodes
into :class:`~memif.classify.Fields`, one array per field; :class:`Filter` turns
``--filter-*`` options into a mask over those fields.
"""

from __future__ import annotations

import argparse
import ipaddress
from dataclasses import dataclass

import numpy as np

from ... import packet as pk
from ...classify import (
    HEADER_BYTES,
    Fields,
)
from ...config import format_mac, parse_mac
from ...queue import RxBatch

__all__ = ["PROTO_NAMES", "Filter", "burst_headers"]


# --------------------------------------------------------------------------- headers
def burst_headers(batch: RxBatch, width: int = HEADER_BYTES) -> np.ndarray:
    """The first ``width`` bytes of every packet of ``batch``, one row each (zero padded)."""
    n = len(batch)
    out = np.zeros((n, width), np.uint8)
    if n:
        batch.headers(min(width, int(batch.lengths.max())), out)
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
