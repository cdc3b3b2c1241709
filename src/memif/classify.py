"""Header classification of a whole burst at once: Ethernet, VLAN, ARP, IPv4, IPv6, ICMP, UDP, TCP.

:func:`classify` takes the first bytes of every packet of a burst, one row each (a 2-D
``uint8`` array, as :meth:`memif.queue.RxBatch.gather` returns them), and decodes them into
:class:`Fields`: one numpy array per header field, one element per packet.  It never loops
over packets, so its cost per burst hardly depends on the burst size.

The scalar reference is :func:`memif.packet.parse`: for every frame the two agree on what
both decode (tests/test_classify.py checks it on random and malformed frames).  A field is
only trusted when the packet's real length holds it; bytes of a row past the packet's length
are ignored, whatever they hold.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from . import packet as pk

__all__ = [
    "ARP",
    "HEADER_BYTES",
    "ICMP",
    "ICMP6",
    "IP4_OTHER",
    "IP6_OTHER",
    "NOT_IP",
    "N_CATEGORIES",
    "OTHER",
    "RUNT",
    "TCP4",
    "TCP6",
    "UDP4",
    "UDP6",
    "Fields",
    "classify",
]

Array = npt.NDArray[Any]

#: Bytes of each packet worth looking at: two VLAN tags, an IPv4 header with the longest
#: options or an IPv6 header with a few extension headers, and the transport header.
HEADER_BYTES = 128

# Protocol categories, one per packet.
ARP, ICMP, TCP4, UDP4, IP4_OTHER, ICMP6, TCP6, UDP6, IP6_OTHER, OTHER = range(10)
N_CATEGORIES = 10
RUNT = -1  #: ethertype of a frame too short to have one
NOT_IP = -2  #: ethertype given to an ip-mode packet that is neither IPv4 nor IPv6
_IPV6_EXT = (0, 43, 60)  # hop-by-hop, routing, destination options
_IPV6_FRAG = 44


@dataclass
class Fields:
    """Per-packet header fields of one burst, one numpy array each (absent: -1 or False)."""

    length: Array  #: int64, the packet's length
    ethertype: Array  #: int32, behind any VLAN tags; RUNT (too short), NOT_IP (ip mode)
    vlan: Array  #: bool: carried at least one VLAN tag
    category: Array  #: int8, one of ARP .. OTHER
    mac: Array  #: (n, 12) uint8: destination then source (zeros in ip mode)
    has_mac: Array  #: bool
    l3: Array  #: int64, offset of the network header (14, 18, 22; 0 in ip mode)
    ip4: Array  #: (n, 8) uint8: source then destination
    is_ip4: Array  #: bool: a complete IPv4 header (IHL >= 5)
    ihl: Array  #: int64, IPv4 header length in bytes (0 when not is_ip4)
    ip4_total: Array  #: int32, IPv4 total length (-1 when not is_ip4)
    ip4_frag: Array  #: int32, IPv4 flags and fragment offset (-1 when not is_ip4)
    ttl: Array  #: int16, IPv4 TTL (-1 when not is_ip4)
    ip6: Array  #: (n, 32) uint8: source then destination
    is_ip6: Array  #: bool: a complete IPv6 header
    arp_op: Array  #: int32, ARP operation (-1 when not is_arp_ip)
    arp_ip: Array  #: (n, 8) uint8: sender then target protocol address
    is_arp_ip: Array  #: bool: an IPv4-over-Ethernet ARP body
    l4proto: Array  #: int16, -1 when not IP
    l4: Array  #: int64, offset of the transport header (0 when not IP)
    sport: Array  #: int32, -1 when unknown (not the first fragment, or cut short)
    dport: Array  #: int32
    icmp_type: Array  #: int16, ICMP (v4) type; -1 when absent or not the first fragment
    icmp_code: Array  #: int16
    icmp_ident: Array  #: int32, an echo's identifier field (any ICMP type; -1 when absent)
    icmp_seq: Array  #: int32, an echo's sequence number field

    def __len__(self) -> int:
        return len(self.length)

    def take(self, index: Array) -> Fields:
        """The rows ``index`` (an index array or bool mask)."""
        return Fields(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def _u16(hdr: Array, rows: Array, off: Array) -> Array:
    off = np.minimum(off, hdr.shape[1] - 2)
    word: Array = (hdr[rows, off].astype(np.int32) << 8) | hdr[rows, off + 1]
    return word


def _u8(hdr: Array, rows: Array, off: Array) -> Array:
    byte: Array = hdr[rows, np.minimum(off, hdr.shape[1] - 1)]
    return byte


def _cols(hdr: Array, rows: Array, off: Array, width: int) -> Array:
    idx = np.minimum(off[:, None] + np.arange(width), hdr.shape[1] - 1)
    block: Array = hdr[rows[:, None], idx]
    return block


def classify(hdr: Array, lengths: Array, ethernet: bool = True) -> Fields:
    """Decode the headers of a burst: ``hdr`` holds each packet's first bytes, one per row.

    ``lengths`` are the packets' real lengths; a field is only trusted when the packet is
    long enough to hold it and the row wide enough (bytes of ``hdr`` past a length are
    ignored).  ``ethernet=False`` reads rows as bare IP packets (an ip-mode interface).
    ``hdr`` must be at least 42 bytes wide (an ARP frame); :data:`HEADER_BYTES` holds
    every header decoded here.
    """
    n, width = hdr.shape
    if n and width < pk.ETH_HLEN + pk.ARP_LEN:
        raise ValueError(f"header rows of {width} bytes: at least 42 are needed")
    rows = np.arange(n)
    length = np.asarray(lengths, dtype=np.int64)
    seen = np.minimum(length, width)  # bytes of each row that are the packet's
    vlan = np.zeros(n, bool)
    if ethernet:
        has_mac = length >= 12
        mac = hdr[:, :12] if width >= 12 else np.zeros((n, 12), np.uint8)
        l3 = np.full(n, pk.ETH_HLEN, np.int64)
        et = _u16(hdr, rows, np.full(n, 12))
        for _ in range(pk.MAX_VLAN_TAGS):
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

    # ARP (IPv4 over Ethernet: htype 1, ptype IPv4, hlen 6, plen 4)
    arp = et == pk.ETH_P_ARP
    is_arp_ip = arp & (length >= l3 + pk.ARP_LEN)
    arp_op = np.full(n, -1, np.int32)
    if arp.any():
        category[arp] = ARP
        is_arp_ip &= (
            (_u16(hdr, rows, l3) == 1)
            & (_u16(hdr, rows, l3 + 2) == pk.ETH_P_IP)
            & (_u16(hdr, rows, l3 + 4) == 0x0604)
        )
        arp_op = np.where(is_arp_ip, _u16(hdr, rows, l3 + 6), -1).astype(np.int32)
        arp_ip = np.concatenate(
            (_cols(hdr, rows, l3 + 14, 4), _cols(hdr, rows, l3 + 24, 4)), axis=1
        )
    else:
        arp_ip = np.zeros((n, 8), np.uint8)

    # IPv4
    v4 = et == pk.ETH_P_IP
    category[v4] = IP4_OTHER
    first = _u8(hdr, rows, l3)
    ihl = (first & 0xF).astype(np.int64) * 4
    is_ip4 = v4 & (length >= l3 + pk.IP_HLEN) & (ihl >= pk.IP_HLEN)
    if not ethernet:
        is_ip4 &= first >> 4 == 4
    ihl = np.where(is_ip4, ihl, 0)
    proto4 = _u8(hdr, rows, l3 + 9).astype(np.int16)
    frag = np.where(is_ip4, _u16(hdr, rows, l3 + 6), -1)
    later_fragment = is_ip4 & ((frag & 0x1FFF) != 0)
    l4proto = np.where(is_ip4, proto4, l4proto)
    l4 = np.where(is_ip4, l3 + ihl, l4)
    no_ports |= later_fragment
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
        nh = _u8(hdr, rows, l3 + 6).astype(np.int16)
        off = l3 + 40
        for _ in range(3):
            ext = is_ip6 & np.isin(nh, (*_IPV6_EXT, _IPV6_FRAG)) & (off + 8 <= length)
            ext &= off + 8 <= width
            if not ext.any():
                break
            is_frag = ext & (nh == _IPV6_FRAG)
            no_ports |= is_frag & ((_u16(hdr, rows, off + 2) & 0xFFF8) != 0)
            step = np.where(is_frag, 8, (_u8(hdr, rows, off + 1).astype(np.int64) + 1) * 8)
            nh = np.where(ext, _u8(hdr, rows, off), nh)
            off = np.where(ext, off + step, off)
        l4proto = np.where(is_ip6, nh, l4proto)
        l4 = np.where(is_ip6, off, l4)
        category[is_ip6 & (nh == pk.PROTO_ICMPV6)] = ICMP6
        category[is_ip6 & (nh == pk.PROTO_TCP)] = TCP6
        category[is_ip6 & (nh == pk.PROTO_UDP)] = UDP6

    # Ports
    has_ports = (
        ((l4proto == pk.PROTO_TCP) | (l4proto == pk.PROTO_UDP)) & ~no_ports & (l4 + 4 <= seen)
    )
    sport = np.where(has_ports, _u16(hdr, rows, l4), -1)
    dport = np.where(has_ports, _u16(hdr, rows, l4 + 2), -1)

    # ICMP (v4): type and code, and the echo's identifier and sequence number
    icmp = is_ip4 & (proto4 == pk.PROTO_ICMP) & ~later_fragment
    has_type = icmp & (l4 + 2 <= seen)
    has_echo = icmp & (l4 + pk.ICMP_ECHO_HLEN <= seen)
    icmp_type = np.where(has_type, _u8(hdr, rows, l4).astype(np.int16), -1)
    icmp_code = np.where(has_type, _u8(hdr, rows, l4 + 1).astype(np.int16), -1)
    icmp_ident = np.where(has_echo, _u16(hdr, rows, l4 + 4), -1).astype(np.int32)
    icmp_seq = np.where(has_echo, _u16(hdr, rows, l4 + 6), -1).astype(np.int32)
    return Fields(
        length=length,
        ethertype=et.astype(np.int32),
        vlan=vlan,
        category=category,
        mac=mac,
        has_mac=has_mac,
        l3=l3,
        ip4=ip4,
        is_ip4=is_ip4,
        ihl=ihl,
        ip4_total=np.where(is_ip4, _u16(hdr, rows, l3 + 2), -1).astype(np.int32),
        ip4_frag=frag.astype(np.int32),
        ttl=np.where(is_ip4, _u8(hdr, rows, l3 + 8).astype(np.int16), -1),
        ip6=ip6,
        is_ip6=is_ip6,
        arp_op=arp_op,
        arp_ip=arp_ip,
        is_arp_ip=is_arp_ip,
        l4proto=l4proto,
        l4=l4,
        sport=sport.astype(np.int32),
        dport=dport.astype(np.int32),
        icmp_type=icmp_type,
        icmp_code=icmp_code,
        icmp_ident=icmp_ident,
        icmp_seq=icmp_seq,
    )
