"""Just enough Ethernet, ARP, IPv4 and ICMP to build and parse frames for the tools.

Builders and parsers work on ``bytes``; :func:`checksum` also takes numpy arrays.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

import numpy as np

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ETH_HLEN = 14
IP_HLEN = 20
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8
ARP_REQUEST = 1
ARP_REPLY = 2
BROADCAST = b"\xff" * 6

_ETH = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_IP = struct.Struct("!BBHHHBBH4s4s")
_ICMP_ECHO = struct.Struct("!BBHHH")


def ip4(text: str | bytes) -> bytes:
    """``"10.0.0.1"`` (or 4 bytes) to 4 bytes."""
    return text if isinstance(text, bytes) else ipaddress.IPv4Address(text).packed


def ip4_str(raw: bytes) -> str:
    """4 bytes to dotted quad."""
    return str(ipaddress.IPv4Address(bytes(raw)))


def checksum(data: bytes | np.ndarray) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    a = np.frombuffer(bytes(data), np.uint8) if not isinstance(data, np.ndarray) else data
    if len(a) % 2:
        a = np.append(a, np.uint8(0))
    words = a.view(">u2").astype(np.uint32)
    total = int(words.sum())
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ethernet(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    """An Ethernet II frame."""
    return _ETH.pack(dst, src, ethertype) + payload


def arp(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    """An ARP packet for IPv4 over Ethernet (no Ethernet header)."""
    return _ARP.pack(1, ETH_P_IP, 6, 4, op, sha, spa, tha, tpa)


def ipv4(
    src: bytes, dst: bytes, proto: int, payload: bytes, ttl: int = 64, ident: int = 0
) -> bytes:
    """An IPv4 packet with a correct header checksum."""
    hdr = _IP.pack(0x45, 0, IP_HLEN + len(payload), ident, 0x4000, ttl, proto, 0, src, dst)
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:] + payload


def icmp_echo(kind: int, ident: int, seq: int, data: bytes) -> bytes:
    """An ICMP echo request or reply with a correct checksum."""
    body = _ICMP_ECHO.pack(kind, 0, 0, ident, seq) + data
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


@dataclass(frozen=True)
class Parsed:
    """The fields the tools look at; absent layers are None."""

    dst: bytes
    src: bytes
    ethertype: int
    arp: tuple | None = None  # (op, sha, spa, tha, tpa)
    ip_src: bytes | None = None
    ip_dst: bytes | None = None
    proto: int | None = None
    ttl: int | None = None
    l4: bytes = b""  # the IP payload
    sport: int | None = None
    dport: int | None = None


def parse(frame: bytes) -> Parsed | None:
    """Parse an Ethernet frame; None when it is shorter than an Ethernet header."""
    if len(frame) < ETH_HLEN:
        return None
    dst, src, et = _ETH.unpack_from(frame)
    if et == ETH_P_ARP and len(frame) >= ETH_HLEN + _ARP.size:
        f = _ARP.unpack_from(frame, ETH_HLEN)
        return Parsed(dst, src, et, arp=(f[4], f[5], f[6], f[7], f[8]))
    if et == ETH_P_IP and len(frame) >= ETH_HLEN + IP_HLEN:
        vihl, _, total, _, _, ttl, proto, _, s, d = _IP.unpack_from(frame, ETH_HLEN)
        ihl = (vihl & 0xF) * 4
        end = min(len(frame), ETH_HLEN + max(total, ihl))
        l4 = bytes(frame[ETH_HLEN + ihl : end])
        sport = dport = None
        if proto in (PROTO_TCP, PROTO_UDP) and len(l4) >= 4:
            sport, dport = struct.unpack_from("!HH", l4)
        return Parsed(
            dst, src, et, ip_src=s, ip_dst=d, proto=proto, ttl=ttl, l4=l4, sport=sport, dport=dport
        )
    return Parsed(dst, src, et)
