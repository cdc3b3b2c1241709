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
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
ETH_P_QINQ = 0x9100  # the pre-802.1ad outer tag some switches still use
ETH_P_MPLS = 0x8847
ETH_P_LLDP = 0x88CC
#: Tag protocol identifiers of VLAN tags (a frame may carry two: QinQ).
VLAN_TPIDS = (ETH_P_8021Q, ETH_P_8021AD, ETH_P_QINQ)
ETH_HLEN = 14
IP_HLEN = 20
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58
ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8
ICMP_ECHO_HLEN = 8
ARP_REQUEST = 1
ARP_REPLY = 2
ARP_LEN = 28
BROADCAST = b"\xff" * 6
ZERO_MAC = b"\x00" * 6

_ETH = struct.Struct("!6s6sH")
#: An ARP body for IPv4 over Ethernet: htype, ptype, hlen, plen, op, sha, spa, tha, tpa.
ARP_HDR = struct.Struct("!HHBBH6s4s6s4s")
#: An IPv4 header without options: version/IHL, TOS, total length, id, flags/fragment
#: offset, TTL, protocol, checksum, source, destination.
IPV4_HDR = struct.Struct("!BBHHHBBH4s4s")
_ICMP_ECHO = struct.Struct("!BBHHH")


#: Names of common ethertypes and IP protocol numbers, for display.
ETHERTYPE_NAMES = {
    ETH_P_IP: "IPv4",
    ETH_P_ARP: "ARP",
    ETH_P_IPV6: "IPv6",
    ETH_P_8021Q: "802.1Q",
    ETH_P_8021AD: "802.1ad",
    ETH_P_QINQ: "QinQ",
    ETH_P_MPLS: "MPLS",
    0x8848: "MPLS-mc",
    0x8863: "PPPoE-disc",
    0x8864: "PPPoE",
    0x888E: "EAPOL",
    0x88F7: "PTP",
    ETH_P_LLDP: "LLDP",
    0x8809: "slow-proto",
    0x88E5: "MACsec",
    0x8035: "RARP",
    0x22F0: "AVTP",
    0x9000: "loopback",
}
IP_PROTO_NAMES = {
    PROTO_ICMP: "icmp",
    2: "igmp",
    4: "ipip",
    PROTO_TCP: "tcp",
    PROTO_UDP: "udp",
    41: "ipv6",
    47: "gre",
    50: "esp",
    51: "ah",
    PROTO_ICMPV6: "icmpv6",
    89: "ospf",
    103: "pim",
    112: "vrrp",
    132: "sctp",
}


def ethertype_name(ethertype: int) -> str:
    """``0x88cc`` style hex, followed by a name when one is known: ``0x88cc LLDP``."""
    name = ETHERTYPE_NAMES.get(ethertype)
    return f"0x{ethertype:04x}" + (f" {name}" if name else "")


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


def update_checksum(checksum: int, old: int, new: int) -> int:
    """An Internet checksum after one 16-bit word of its data changed from ``old`` to ``new``
    (RFC 1624 eqn 3), without summing the data again."""
    s = (~checksum & 0xFFFF) + (~old & 0xFFFF) + new
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ethernet(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    """An Ethernet II frame."""
    return _ETH.pack(dst, src, ethertype) + payload


def arp(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    """An ARP packet for IPv4 over Ethernet (no Ethernet header)."""
    return ARP_HDR.pack(1, ETH_P_IP, 6, 4, op, sha, spa, tha, tpa)


def arp_request(sha: bytes, spa: bytes, tpa: bytes) -> bytes:
    """A broadcast Ethernet frame asking who has ``tpa``, from ``sha``/``spa``."""
    return ethernet(BROADCAST, sha, ETH_P_ARP, arp(ARP_REQUEST, sha, spa, ZERO_MAC, tpa))


def arp_reply(sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    """An Ethernet frame to ``tha`` telling that ``spa`` is at ``sha``."""
    return ethernet(tha, sha, ETH_P_ARP, arp(ARP_REPLY, sha, spa, tha, tpa))


def is_group(mac: bytes) -> bool:
    """True for a broadcast or multicast MAC address (the I/G bit is set)."""
    return bool(mac[0] & 1)


def ipv4(
    src: bytes,
    dst: bytes,
    proto: int,
    payload: bytes,
    ttl: int = 64,
    ident: int = 0,
    df: bool = True,
) -> bytes:
    """An IPv4 packet with a correct header checksum (``df``: the Don't Fragment flag)."""
    flags = 0x4000 if df else 0
    hdr = IPV4_HDR.pack(0x45, 0, IP_HLEN + len(payload), ident, flags, ttl, proto, 0, src, dst)
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:] + payload


def icmp_echo(kind: int, ident: int, seq: int, data: bytes) -> bytes:
    """An ICMP echo request or reply with a correct checksum."""
    body = _ICMP_ECHO.pack(kind, 0, 0, ident, seq) + data
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


def parse_icmp_echo(l4: bytes) -> tuple[int, int, int, int, bytes] | None:
    """``(type, code, ident, seq, data)`` of an ICMP message; None if shorter than 8 bytes.

    Any ICMP type parses; the caller checks for echo request or reply.
    """
    if len(l4) < ICMP_ECHO_HLEN:
        return None
    kind, code, _, ident, seq = _ICMP_ECHO.unpack_from(l4)
    return kind, code, ident, seq, bytes(l4[ICMP_ECHO_HLEN:])


@dataclass(frozen=True)
class Parsed:
    """The fields the tools look at; absent layers are None.

    This is the scalar reference of the vectorized :func:`memif.classify.classify`.
    """

    dst: bytes
    src: bytes
    ethertype: int  # behind any VLAN tags
    arp: tuple[int, bytes, bytes, bytes, bytes] | None = None  # (op, sha, spa, tha, tpa)
    ip_src: bytes | None = None
    ip_dst: bytes | None = None
    proto: int | None = None
    ttl: int | None = None
    l4: bytes = b""  # the IP payload, up to the IP total length
    sport: int | None = None
    dport: int | None = None
    vlans: tuple[int, ...] = ()  # the tags' TCIs, outer first
    ihl: int | None = None  # the IPv4 header length, in bytes
    total: int | None = None  # the IPv4 total length
    frag: int | None = None  # the IPv4 flags and fragment offset


#: How many VLAN tags :func:`parse` looks through (QinQ).
MAX_VLAN_TAGS = 2
_ARP_IP4_ETH = (1, ETH_P_IP, 6, 4)  # htype, ptype, hlen, plen of ARP for IPv4 over Ethernet


def parse(frame: bytes) -> Parsed | None:
    """Parse an Ethernet frame; None when it is shorter than an Ethernet header.

    Up to two VLAN tags are looked through.  ARP is decoded when it is ARP for IPv4 over
    Ethernet; IPv4 when the header is whole and its IHL at least 5; transport ports when
    the packet is not a later fragment and holds them.
    """
    if len(frame) < ETH_HLEN:
        return None
    dst, src, et = _ETH.unpack_from(frame)
    off = ETH_HLEN
    vlans: tuple[int, ...] = ()
    while et in VLAN_TPIDS and len(vlans) < MAX_VLAN_TAGS and len(frame) >= off + 4:
        tci, et = struct.unpack_from("!HH", frame, off)
        vlans, off = (*vlans, tci), off + 4
    if et == ETH_P_ARP and len(frame) >= off + ARP_HDR.size:
        f = ARP_HDR.unpack_from(frame, off)
        if f[:4] == _ARP_IP4_ETH:
            return Parsed(dst, src, et, arp=(f[4], f[5], f[6], f[7], f[8]), vlans=vlans)
    if et == ETH_P_IP and len(frame) >= off + IP_HLEN and frame[off] & 0xF >= 5:
        return _parse_ip(frame, off, dst, src, vlans)
    return Parsed(dst, src, et, vlans=vlans)


def parse_ip(packet: bytes) -> Parsed | None:
    """Parse a bare IPv4 packet (memif ``ip`` mode: no Ethernet header).

    None when it is shorter than an IPv4 header, not IPv4 or its IHL is below 5;
    ``dst``/``src`` are empty.
    """
    if len(packet) < IP_HLEN or packet[0] >> 4 != 4 or packet[0] & 0xF < 5:
        return None
    return _parse_ip(packet, 0, b"", b"", ())


def _parse_ip(frame: bytes, off: int, dst: bytes, src: bytes, vlans: tuple[int, ...]) -> Parsed:
    vihl, _, total, _, frag, ttl, proto, _, s, d = IPV4_HDR.unpack_from(frame, off)
    ihl = (vihl & 0xF) * 4
    end = min(len(frame), off + max(total, ihl))
    l4 = bytes(frame[off + ihl : end])
    sport = dport = None
    first = not frag & 0x1FFF
    if first and proto in (PROTO_TCP, PROTO_UDP) and len(frame) >= off + ihl + 4:
        sport, dport = struct.unpack_from("!HH", frame, off + ihl)
    return Parsed(
        dst,
        src,
        ETH_P_IP,
        ip_src=s,
        ip_dst=d,
        proto=proto,
        ttl=ttl,
        l4=l4,
        sport=sport,
        dport=dport,
        vlans=vlans,
        ihl=ihl,
        total=total,
        frag=frag,
    )
