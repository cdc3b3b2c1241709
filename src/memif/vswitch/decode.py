"""Decoding a buffer's headers for ``show trace``: the lines the nodes' formatters print.

Plain Python on one buffer's first bytes (only traced packets get here).  The words
follow VPP's trace lines: ``IP4: <src> -> <dst>`` for an Ethernet header, the IPv4
header's addresses, protocol, TTL and length, ARP's operation in tcpdump's words.
"""

from __future__ import annotations

import struct

from ..config import format_mac
from ..packet import ARP_HDR, ARP_REPLY, ARP_REQUEST, ETH_HLEN, IP_PROTO_NAMES, ip4_str
from ..packet import ethertype_name as _named
from .pool import PacketPool

#: VPP's names of the ethertypes the switch handles (others: hex and a name)
VPP_ETHERTYPES = {0x0800: "IP4", 0x0806: "ARP", 0x86DD: "IP6"}
HEAD = 64  # bytes of a buffer a formatter looks at
_IP4 = struct.Struct("!BBHHHBBH4s4s")


def head(pool: PacketPool, i: int) -> bytes:
    """Buffer ``i``'s first :data:`HEAD` bytes (fewer when the frame is shorter)."""
    return pool.data[i, : min(HEAD, int(pool.length[i]))].tobytes()


def ethertype(value: int) -> str:
    """``IP4``, ``ARP``, ``IP6`` (VPP's words), else ``0x88b5``-style hex and a name."""
    return VPP_ETHERTYPES.get(value) or _named(value)


def ethernet(frame: bytes) -> str:
    """``IP4: 02:00:00:00:00:01 -> ff:ff:ff:ff:ff:ff`` (ethertype: source -> destination)."""
    if len(frame) < ETH_HLEN:
        return f"runt: {len(frame)} bytes, shorter than an Ethernet header"
    etype = int.from_bytes(frame[12:14], "big")
    return f"{ethertype(etype)}: {format_mac(frame[6:12])} -> {format_mac(frame[0:6])}"


def macs(frame: bytes) -> str:
    """``dst <mac> src <mac>`` (as VPP's l2 nodes print them)."""
    if len(frame) < 12:
        return "(runt)"
    return f"dst {format_mac(frame[0:6])} src {format_mac(frame[6:12])}"


def ip4(packet: bytes) -> str:
    """An IPv4 header: ``ICMP: 10.0.0.2 -> 10.0.0.1`` then ``ttl 64, length 84``."""
    if len(packet) < _IP4.size or packet[0] >> 4 != 4:
        return (
            f"not an IPv4 header ({len(packet)} bytes, version {packet[0] >> 4 if packet else '-'})"
        )
    _, _, length, _, frag, ttl, proto, _, src, dst = _IP4.unpack_from(packet)
    name = IP_PROTO_NAMES.get(proto, f"proto {proto}").upper()
    frag_text = f", fragment offset {(frag & 0x1FFF) * 8}" if frag & 0x3FFF else ""
    return f"{name}: {ip4_str(src)} -> {ip4_str(dst)}\nttl {ttl}, length {length}{frag_text}"


def arp(payload: bytes) -> str:
    """An ARP message: ``request: who-has 10.0.0.1 tell 10.0.0.2 (02:..)`` or
    ``reply: 10.0.0.1 is-at 02:..``."""
    if len(payload) < ARP_HDR.size:
        return f"malformed ARP ({len(payload)} bytes)"
    _, _, _, _, op, sha, spa, _, tpa = ARP_HDR.unpack_from(payload)
    if op == ARP_REQUEST:
        return f"request: who-has {ip4_str(tpa)} tell {ip4_str(spa)} ({format_mac(sha)})"
    if op == ARP_REPLY:
        return f"reply: {ip4_str(spa)} is-at {format_mac(sha)}"
    return f"operation {op}: {ip4_str(spa)} ({format_mac(sha)}) -> {ip4_str(tpa)}"
