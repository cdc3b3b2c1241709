"""Decoding a buffer's headers for ``show trace``: the lines the nodes' formatters print.

Plain Python on one buffer's first bytes (only traced packets get here).  The words
follow VPP's trace lines: ``IP4: <src> -> <dst>`` for an Ethernet header, the IPv4
header's addresses, protocol, TTL, length, checksum and fragment, ARP's operation in
tcpdump's words, an adjacency as ``show ip fib`` names it (``ipv4 via``, ``arp-ipv4``,
``ipv4-glean``, ``dpo-receive``, ``dpo-drop``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from ..config import format_mac
from ..packet import ARP_HDR, ARP_REPLY, ARP_REQUEST, ETH_HLEN, IP_PROTO_NAMES, ip4_str
from ..packet import ethertype_name as _named
from .adjacency import AdjacencyTable, AdjKind, Next
from .pool import PacketPool

#: VPP's names of the ethertypes the switch handles (others: hex and a name)
VPP_ETHERTYPES = {0x0800: "IP4", 0x0806: "ARP", 0x86DD: "IP6"}
HEAD = 64  # bytes of a buffer a formatter looks at
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_FLAGS = ((0x4000, "DONT_FRAGMENT"), (0x2000, "MORE_FRAGMENTS"))


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
    """An IPv4 header: ``ICMP: 10.0.0.2 -> 10.0.0.1`` then ``ttl 64, length 84, checksum
    0x26b7`` (and ``fragment id 0x0007 offset 1480, flags MORE_FRAGMENTS`` for a fragment)."""
    if len(packet) < _IP4.size or packet[0] >> 4 != 4:
        return (
            f"not an IPv4 header ({len(packet)} bytes, version {packet[0] >> 4 if packet else '-'})"
        )
    _, _, length, ident, frag, ttl, proto, csum, src, dst = _IP4.unpack_from(packet)
    name = IP_PROTO_NAMES.get(proto, f"proto {proto}").upper()
    text = f"{name}: {ip4_str(src)} -> {ip4_str(dst)}\nttl {ttl}, length {length}"
    text += f", checksum 0x{csum:04x}"
    if frag & 0x3FFF:  # an offset or more to come: a fragment
        flags = "|".join(word for bit, word in _FLAGS if frag & bit) or "none"
        text += f"\nfragment id 0x{ident:04x} offset {(frag & 0x1FFF) * 8}, flags {flags}"
    return text


def adjacency(adjs: AdjacencyTable, adj: int, if_name: Callable[[int], str]) -> str:
    """What adjacency ``adj`` does, in ``show ip fib``'s words: ``ipv4 via 10.0.2.2
    memif2/0: <rewrite>``, ``arp-ipv4: via 10.0.2.2 memif2/0`` (not resolved yet),
    ``ipv4-glean: memif2/0``, ``dpo-receive``, ``dpo-drop``."""
    a = adjs.adjs.get(adj)
    if a is None or a.kind is AdjKind.DROP:
        return "dpo-drop ip4"
    if a.kind is AdjKind.RECEIVE:
        return "dpo-receive"
    where = if_name(a.sw_if_index)
    if a.kind is AdjKind.GLEAN and adjs.next[adj] == Next.GLEAN:
        return f"ipv4-glean: {where}"
    via = ip4_str(a.next_hop) if a.next_hop else "the destination"
    if adjs.next[adj] == Next.ARP:
        return f"arp-ipv4: via {via} {where}"
    rewrite = adjs.rewrite[adj, : int(adjs.l2_len[adj])].tobytes().hex()
    return f"ipv4 via {via} {where}: {rewrite or 'mode ip'}"


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
