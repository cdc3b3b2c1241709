"""IPv4 forwarding nodes: ip4-input, ip4-lookup, ip4-rewrite (VPP's), vectorized.

ip4-input checks each header (version, IHL, total length against the frame, header
checksum, TTL, VPP's fragment-offset-1 rule) and drops what fails under VPP's error
names, and leaves each good packet's destination in its metadata (``Meta.ip4_dst``: the
header is gathered once); ip4-lookup, which only ip4-input feeds, finds each
destination's adjacency in the FIB over the whole vector and sends the packet where the
adjacency says (:class:`~.adjacency.Next`): ip4-local for our addresses, ip4-rewrite for
a resolved next hop, ip4-arp or ip4-glean to resolve one, ip4-icmp-error when no route
covers it; ip4-rewrite decrements the TTL (a packet
whose TTL would reach 0 goes to ip4-icmp-error: time exceeded), updates the checksum
incrementally (RFC 1624), writes the adjacency's Ethernet header and hands the packet to
its interface.

A packet's IPv4 header starts at 14 in a frame from an Ethernet interface, at 0 from a
``mode ip`` one; ip4-rewrite moves the packet when the two sides differ (an Ethernet
header added or stripped).  Each node has a plain path for vectors of at most
:data:`~.graph.SMALL_VECTOR` packets (``next_of``) and the vector kernels have plain
references (:func:`ip4_check_reference`, :func:`ttl_rewrite_reference`) the property
tests compare them with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import packet
from . import decode
from .adjacency import Next
from .graph import DROP, SMALL_VECTOR
from .ip4_fib import ip4_dst
from .ip4_route import prefix_str
from .nodes_l2 import SwitchNode
from .pool import PacketPool

if TYPE_CHECKING:
    from .runtime import Runtime

ETH = packet.ETH_HLEN
HEADER = 60  # the longest IPv4 header (IHL 15)
WORDS = np.arange(HEADER // 2)
ROW = 32  # the bytes ip4-rewrite's short path rewrites: to the checksum of either header
KEEP = np.uint64(0xFFFF << 48)  # of a row's second 64-bit word, bytes 14 and 15

#: ip4-input's verdicts, in the order the checks are made (the first failing one counts)
OK, NOT_ENABLED, TOO_SHORT, VERSION, HDR_TOO_SHORT, BAD_LENGTH, BAD_CHECKSUM = range(7)
TIME_EXPIRED, FRAGMENT_OFFSET_ONE, MAC_MISMATCH = range(7, 10)
INPUT_ERRORS = {
    NOT_ENABLED: "not-enabled",
    TOO_SHORT: "too-short",
    VERSION: "version",
    HDR_TOO_SHORT: "hdr-too-short",
    BAD_LENGTH: "bad-length",
    BAD_CHECKSUM: "bad-checksum",
    TIME_EXPIRED: "time-expired",
    FRAGMENT_OFFSET_ONE: "fragment-offset-one",
    MAC_MISMATCH: "l3-mac-mismatch",
}
ICMP_TIME_EXCEEDED = 11 << 8  # code 0: TTL exceeded in transit
ICMP_NET_UNREACHABLE = 3 << 8  # code 0


def l3_offsets(node: SwitchNode, idx: np.ndarray) -> np.ndarray:
    """Where each packet's IPv4 header starts: 0 on ``mode ip`` interfaces, else 14."""
    return np.where(node.tables.ip_mode[node.meta.rx_if[idx]], 0, ETH)


def l3_offset(node: SwitchNode, i: int) -> int:
    """:func:`l3_offsets` of one buffer."""
    return 0 if node.tables.ip_mode[int(node.meta.rx_if[i])] else ETH


def gather(pool: PacketPool, idx: np.ndarray, off: np.ndarray, width: int) -> np.ndarray:
    """``width`` bytes of each packet from its offset: (n, width) uint8, a copy (one
    memcpy per packet when every offset is the same, the usual vector)."""
    first = int(off[0]) if len(off) else 0
    if (off == first).all():
        end = first + width
        rows: np.ndarray = pool.rows(end)[idx].view(np.uint8).reshape(-1, end)[:, first:]
        return rows
    got: np.ndarray = pool.data[idx[:, None], off[:, None] + np.arange(width)]
    return got


def put(pool: PacketPool, idx: np.ndarray, off: np.ndarray, rows: np.ndarray) -> None:
    """Write :func:`gather`'s rows back at each packet's offset."""
    first = int(off[0]) if len(off) else 0
    if (off == first).all():
        pool.data[idx, first : first + rows.shape[1]] = rows
    else:
        pool.data[idx[:, None], off[:, None] + np.arange(rows.shape[1])] = rows


def ip4_check(hdr: np.ndarray, avail: np.ndarray) -> np.ndarray:
    """ip4-input's verdict per packet (int8): ``hdr`` the first 60 bytes from each IPv4
    header (n, 60), ``avail`` the bytes the frame holds from there.  The vector twin of
    :func:`ip4_check_reference`."""
    vihl = hdr[:, 0]
    ihl = (vihl & 15).astype(np.int64)
    total = hdr[:, 2].astype(np.int64) << 8 | hdr[:, 3]
    frag = (hdr[:, 6].astype(np.int64) & 0x1F) << 8 | hdr[:, 7]
    longest = max(5, int(ihl.max())) if len(ihl) else 5
    words = np.ascontiguousarray(hdr[:, : longest * 4]).view(">u2").astype(np.int64)
    if longest != 5 or int(ihl.min()) != 5:  # options, or a broken IHL: each its own
        words[WORDS[None, : longest * 2] >= (ihl * 2)[:, None]] = 0
    s = words.sum(axis=1)
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    code = np.zeros(len(hdr), np.int8)
    code[frag == 1] = FRAGMENT_OFFSET_ONE
    code[hdr[:, 8] == 0] = TIME_EXPIRED
    code[s != 0xFFFF] = BAD_CHECKSUM
    code[(total < ihl * 4) | (total > avail)] = BAD_LENGTH
    code[ihl < 5] = HDR_TOO_SHORT
    code[(vihl >> 4) != 4] = VERSION
    code[avail < packet.IP_HLEN] = TOO_SHORT
    return code


def ip4_check_reference(header: bytes, avail: int) -> int:
    """One packet's ip4-input verdict, plainly (``header``: its bytes from the IPv4 header,
    at least ``min(avail, 60)`` of them)."""
    if avail < packet.IP_HLEN:
        return TOO_SHORT
    if header[0] >> 4 != 4:
        return VERSION
    ihl = header[0] & 15
    if ihl < 5:
        return HDR_TOO_SHORT
    total = int.from_bytes(header[2:4], "big")
    if total < ihl * 4 or total > avail:
        return BAD_LENGTH
    if packet.checksum(bytes(header[: ihl * 4])) != 0:
        return BAD_CHECKSUM
    if header[8] == 0:
        return TIME_EXPIRED
    if int.from_bytes(header[6:8], "big") & 0x1FFF == 1:
        return FRAGMENT_OFFSET_ONE
    return OK


class Ip4Input(SwitchNode):
    """Check IPv4 headers; hand the good packets to ip4-lookup, each bad one counted."""

    name = "ip4-input"
    errors = {
        "not-enabled": "ip4 not enabled: the interface has no IPv4 address",
        "too-short": "ip4 length < 20 bytes",
        "version": "ip4 version != 4",
        "hdr-too-short": "ip4 IHL < 5",
        "bad-length": "ip4 length > l2 length (or < IHL)",
        "bad-checksum": "bad ip4 checksum",
        "time-expired": "ip4 ttl == 0",
        "fragment-offset-one": "ip4 fragment offset == 1",
        "l3-mac-mismatch": "unicast to another MAC than the interface's",
    }
    next_nodes = ("ip4-lookup", DROP)
    LOOKUP = 0

    def process(self, idx: np.ndarray) -> None:
        if len(idx) <= SMALL_VECTOR:
            self.route_small(idx)
            return
        if self._all_good(idx):
            return
        pool, meta, t = self.rt.pool, self.meta, self.tables
        rx = meta.rx_if[idx]
        ip_mode = t.ip_mode[rx]
        off = np.where(ip_mode, 0, ETH)
        avail = pool.length[idx].astype(np.int64) - off
        hdr = gather(pool, idx, off, HEADER)
        code = ip4_check(hdr, avail)
        dmac = meta.dmac[idx]
        other = ~ip_mode & ((dmac >> np.uint64(40)) & np.uint64(1) == 0) & (dmac != t.mac[rx])
        code[other] = MAC_MISMATCH
        code[~t.has_ip[rx]] = NOT_ENABLED
        good = code == OK
        if not good.all():
            for c in np.unique(code[~good]).tolist():
                self.drop(idx[code == c], INPUT_ERRORS[c])
            idx, hdr, off = idx[good], hdr[good], off[good]
        pool.length[idx] = off + (hdr[:, 2].astype(np.int64) << 8 | hdr[:, 3])  # no padding
        meta.ip4_dst[idx] = ip4_dst(hdr[:, 16:20])
        self.graph.enqueue(self.next[self.LOOKUP], idx)

    def _all_good(self, idx: np.ndarray) -> bool:
        """The usual vector, in fewer steps: one addressed receiving interface, every
        header 20 bytes (0x45) and good, unicast to the interface's MAC or a group one.
        True when it went on to ip4-lookup; False (nothing done) leaves the vector to the
        full check.

        The headers are gathered as one row per packet and turned into ten rows of one
        16-bit word each (host order, a field per row), so every check and the checksum's
        sum run along the vector, none along a 20-byte row."""
        pool, meta, t = self.rt.pool, self.meta, self.tables
        rx = meta.rx_if[idx]
        r0 = int(rx[0])
        if not ((rx == r0).all() and t.has_ip[r0]):
            return False
        off = 0 if t.ip_mode[r0] else ETH
        if off:
            dmac = meta.dmac[idx]
            mac = t.mac[r0]
            if (
                not (dmac == mac).all()
                and not ((dmac == mac) | (dmac >> np.uint64(40) & np.uint64(1) == 1)).all()
            ):
                return False
        end = off + packet.IP_HLEN
        rows = pool.rows(end)[idx].view(np.uint8).reshape(-1, end)[:, off:]
        words = np.array(rows.view(">u2").T, np.uint16, order="C")  # (10, n)
        s = words.sum(axis=0, dtype=np.uint32)
        s = (s & 0xFFFF) + (s >> 16)
        total = words[1]
        if not (
            ((s & 0xFFFF) + (s >> 16) == 0xFFFF).all()  # every checksum verifies
            and (words[0] >> 8 == 0x45).all()
            and int(total.min()) >= packet.IP_HLEN
            and int(words[4].min()) >= 0x100  # TTL 0
            and ((words[3] & 0x1FFF) != 1).all()
        ):
            return False
        length = total.astype(np.int64)
        if off:
            length += off
        if not (length <= pool.length[idx]).all():
            return False
        pool.length[idx] = length  # Ethernet padding is not the packet's
        meta.ip4_dst[idx] = rows[:, 16:20].view(">u4")[:, 0].astype(np.uint32)
        self.graph.enqueue(self.next[self.LOOKUP], idx)
        return True

    def next_of(self, i: int) -> int:
        """ip4-lookup, its padding trimmed, or error-drop (counted): as the vector path."""
        pool, meta, t = self.rt.pool, self.meta, self.tables
        rx = int(meta.rx_if[i])
        off = 0 if t.ip_mode[rx] else ETH
        avail = int(pool.length[i]) - off
        header = pool.data[i, off : off + HEADER].tobytes()
        code = ip4_check_reference(header, avail)
        if not t.ip_mode[rx]:
            dmac = int(meta.dmac[i])
            if not dmac >> 40 & 1 and dmac != int(t.mac[rx]):
                code = MAC_MISMATCH
        if not t.has_ip[rx]:
            code = NOT_ENABLED
        if code != OK:
            return self.dropped(INPUT_ERRORS[code])
        pool.length[i] = off + int.from_bytes(header[2:4], "big")
        meta.ip4_dst[i] = int.from_bytes(header[16:20], "big")
        return self.next[self.LOOKUP]

    def format_trace(self, i: int) -> str:
        """``ICMP: 10.0.1.2 -> 10.0.2.2`` then ``ttl 64, length 84, checksum 0x..`` (and the
        fragment, if one), as VPP's ip4-input: the header as received, before the checks."""
        return decode.ip4(decode.head(self.rt.pool, i)[l3_offset(self, i) :])


class Ip4Lookup(SwitchNode):
    """Longest-prefix match of every destination of the vector at once (``Meta.ip4_dst``,
    as ip4-input found it in the header); on by adjacency."""

    name = "ip4-lookup"
    errors = {"adjacency-drop": "ip4 adjacency drop (a special route: network, broadcast)"}
    # in Next's order: next node k is where Next k goes
    next_nodes = ("ip4-icmp-error", DROP, "ip4-local", "ip4-arp", "ip4-glean", "ip4-rewrite")

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self._ids = np.zeros(0, np.int64)  # next node ids by Next, as an array to index

    def process(self, idx: np.ndarray) -> None:
        if len(idx) <= SMALL_VECTOR:
            self.route_small(idx)
            return
        rt, meta = self.rt, self.meta
        adj = rt.ip4_fib.lookup(meta.ip4_dst[idx])
        meta.adj[idx] = adj
        first = int(rt.adjacencies.next[adj[0]])
        if first != Next.DROP and (  # the usual vector: one way for all
            (adj == adj[0]).all() or (rt.adjacencies.next[adj] == first).all()
        ):
            if first == Next.MISS:
                meta.icmp[idx] = ICMP_NET_UNREACHABLE
            self.graph.enqueue(self.next[first], idx)
            return
        nx = rt.adjacencies.next[adj]
        meta.icmp[idx[nx == Next.MISS]] = ICMP_NET_UNREACHABLE
        dropped = nx == Next.DROP
        self.drop(idx[dropped], "adjacency-drop")
        keep = ~dropped
        if len(self._ids) != len(self.next):  # the graph was built since
            self._ids = np.array(self.next, np.int64)
        self.graph.dispatch(idx[keep], self._ids[nx[keep]])

    def next_of(self, i: int) -> int:
        """Where buffer ``i``'s adjacency sends it (its adjacency written), plainly."""
        rt, meta = self.rt, self.meta
        adj = rt.ip4_fib.lookup_one(int(meta.ip4_dst[i]))
        meta.adj[i] = adj
        nx = int(rt.adjacencies.next[adj])
        if nx == Next.DROP:
            return self.dropped("adjacency-drop")
        if nx == Next.MISS:
            meta.icmp[i] = ICMP_NET_UNREACHABLE
        return self.next[nx]

    def format_trace(self, i: int) -> str:
        """``fib 0 adj-idx 7 10.0.2.0/24: ipv4 via 10.0.2.2 memif2/0: <rewrite>`` (the
        route the destination matches and its adjacency: where the packet goes next), or
        ``no route``, then the IPv4 header, as VPP's ip4-lookup."""
        rt = self.rt
        ip = decode.head(rt.pool, i)[l3_offset(self, i) :]
        hit = rt.ip4_fib.covering(int.from_bytes(ip[16:20], "big")) if len(ip) >= 20 else None
        if hit is None:
            what = "no route: to ip4-icmp-error (destination unreachable)"
        else:
            prefix, length, adj = hit
            described = decode.adjacency(rt.adjacencies, adj, self.if_name)
            what = f"adj-idx {adj} {prefix_str(prefix, length)}: {described}"
        return f"fib 0 {what}\n{decode.ip4(ip)}"


def ttl_rewrite(hdr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The decremented TTL and the header checksum after it (RFC 1624 eqn 3) of each
    header (n, >= 12 bytes; TTL >= 1): (ttl, checksum) as uint8 and uint16 arrays.

    The word that changes is TTL:protocol, by -0x100, so eqn 3's ``~m + m'`` is the
    constant 0xFEFF: HC' = ~(~HC + 0xFEFF), one end-around carry at most."""
    s = (hdr[:, 10:12].view(">u2")[:, 0].astype(np.uint32) ^ 0xFFFF) + 0xFEFF
    s = (s & 0xFFFF) + (s >> 16)
    return hdr[:, 8] - np.uint8(1), (s ^ 0xFFFF).astype(np.uint16)


def checksum_after_ttl(hc: np.ndarray) -> None:
    """In place: the header checksums (uint16 read from memory on a little-endian host:
    byte-swapped) after each TTL is decremented (TTL >= 2), as :func:`ttl_rewrite`
    computes them.

    RFC 1624 eqn 3 with ``~m + m'`` = 0xFEFF comes to HC + 0x100 with an end-around
    carry; in memory order that 0x100 is a 1 added to the low byte, whose carry goes
    into the high byte as the end-around carry does.  The two checksums at the top in
    memory order differ: 0xFEFF becomes 0 (eqn 3's ~0xFFFF), 0xFFFF wraps to 0x0100."""
    top = int(hc.max()) >= 0xFFFE  # memory order of 0xFEFF and 0xFFFF
    hc += np.uint16(1)
    if top:
        wrapped = hc == 0
        hc[hc == 0xFFFF] = 0
        hc[wrapped] = 1  # 0x0100 read back big-endian


def ttl_rewrite_reference(header: bytes) -> tuple[int, int]:
    """One header's :func:`ttl_rewrite`, with :func:`memif.packet.update_checksum`."""
    ttl, proto = header[8], header[9]
    old = ttl << 8 | proto
    return ttl - 1, packet.update_checksum(int.from_bytes(header[10:12], "big"), old, old - 0x100)


class Ip4Rewrite(SwitchNode):
    """TTL, checksum and the next hop's Ethernet header; out of the adjacency's interface."""

    name = "ip4-rewrite"
    errors = {"no-buffer-space": "no room in the buffer for the Ethernet header"}
    next_nodes = ("l2-output", "ip4-icmp-error", DROP)
    OUTPUT, ICMP_ERROR = range(2)

    def process(self, idx: np.ndarray) -> None:
        if len(idx) <= SMALL_VECTOR:
            self.route_small(idx)
            return
        if self._same_header(idx):
            return
        rt, meta, pool = self.rt, self.meta, self.rt.pool
        a = rt.adjacencies
        off = l3_offsets(self, idx)
        ttl_at = off + 8
        expired = pool.data[idx, ttl_at] <= 1
        if expired.any():
            meta.icmp[idx[expired]] = ICMP_TIME_EXCEEDED
            self.graph.enqueue(self.next[self.ICMP_ERROR], idx[expired])
            idx, off = idx[~expired], off[~expired]
            if not len(idx):
                return
        adj = meta.adj[idx]
        l2 = a.l2_len[adj]
        length = pool.length[idx].astype(np.int64)
        room = length - off + l2 <= pool.data_size
        if not room.all():
            self.drop(idx[~room], "no-buffer-space")
            idx, off, adj, l2, length = idx[room], off[room], adj[room], l2[room], length[room]
        hdr = gather(pool, idx, off, 12)
        hdr[:, 8], csum = ttl_rewrite(hdr)
        hdr[:, 10:12] = csum.astype(">u2").view(np.uint8).reshape(-1, 2)
        put(pool, idx, off, hdr)
        move = off != l2
        if move.any():
            shift(pool, idx[move], off[move], l2[move], length[move])
        pool.length[idx] = length - off + l2
        eth = l2 > 0
        pool.data[idx[eth], :ETH] = a.rewrite[adj[eth]]
        meta.tx_if[idx] = a.sw_if[adj]
        self.graph.enqueue(self.next[self.OUTPUT], idx)

    def _same_header(self, idx: np.ndarray) -> bool:
        """The usual vector, in one row gather and one row scatter: one receiving
        interface whose header size the adjacencies' rewrites keep (Ethernet to
        Ethernet, mode ip to mode ip) and no TTL running out.  Each packet's first 32
        bytes are gathered and rewritten there, a field at a time along the vector: the
        TTL byte less one, the checksum plus one in host byte order (see
        :func:`checksum_after_ttl`), the Ethernet header from the adjacency's words.
        False (nothing done) otherwise."""
        rt, meta, pool, t = self.rt, self.meta, self.rt.pool, self.tables
        a = rt.adjacencies
        rx = meta.rx_if[idx]
        r0 = int(rx[0])
        off = 0 if t.ip_mode[r0] else ETH
        adj = meta.adj[idx]
        a0 = int(adj[0])
        one = bool((adj == a0).all())
        if not (
            (rx == r0).all() and (a.l2_len[a0] == off if one else (a.l2_len[adj] == off).all())
        ):
            return False
        items = pool.rows(ROW)
        row = items[idx].view(np.uint8).reshape(-1, ROW)
        ttl = row[:, off + 8]
        if int(ttl.min()) <= 1:
            return False
        ttl -= np.uint8(1)
        checksum_after_ttl(row.view(np.uint16)[:, (off + 10) // 2])
        if off:  # column by column: numpy's loops over a row of words are slow
            words = row.view(np.uint64)
            if one:
                w0, w1 = a.rewrite_words[a0].tolist()
                words[:, 0] = w0
                row.view(np.uint32)[:, 2] = w1 & 0xFFFFFFFF
                row.view(np.uint16)[:, 6] = w1 >> 32 & 0xFFFF
            else:
                head = a.rewrite_words[adj].T
                words[:, 0] = head[0]
                words[:, 1] &= KEEP
                words[:, 1] |= head[1]
        items[idx] = row.view(items.dtype)[:, 0]
        meta.tx_if[idx] = a.sw_if[a0] if one else a.sw_if[adj]
        self.graph.enqueue(self.next[self.OUTPUT], idx)
        return True

    def next_of(self, i: int) -> int:
        """The same rewrite of one buffer, plainly: l2-output, ip4-icmp-error (TTL) or
        error-drop (counted)."""
        rt, meta, pool = self.rt, self.meta, self.rt.pool
        a = rt.adjacencies
        off = l3_offset(self, i)
        if pool.data[i, off + 8] <= 1:
            meta.icmp[i] = ICMP_TIME_EXCEEDED
            return self.next[self.ICMP_ERROR]
        adj = int(meta.adj[i])
        l2, length = int(a.l2_len[adj]), int(pool.length[i])
        if length - off + l2 > pool.data_size:
            return self.dropped("no-buffer-space")
        ttl, csum = ttl_rewrite_reference(pool.data[i, off : off + 12].tobytes())
        pool.data[i, off + 8] = ttl
        pool.data[i, off + 10 : off + 12] = np.frombuffer(csum.to_bytes(2, "big"), np.uint8)
        if off != l2:
            body = pool.data[i, off:length].copy()
            pool.data[i, l2 : l2 + len(body)] = body
        pool.length[i] = length - off + l2
        if l2:
            pool.data[i, :ETH] = a.rewrite[adj]
        meta.tx_if[i] = a.sw_if[adj]
        return self.next[self.OUTPUT]

    def format_trace(self, i: int) -> str:
        """``tx_sw_if_index 2 adj-idx 7 : ipv4 via 10.0.2.2 memif2/0: <rewrite>``, then what
        the node is about to do: ``rewrite: dst <mac> src <mac>, ttl 64 -> 63`` (or the TTL
        that expires, or no room), then the IPv4 header.  The trace is taken as the packet
        enters the node, before the rewrite: the header shown is the one received, the
        rewrite line the one it gets (VPP traces after, and shows the result)."""
        pool, a = self.rt.pool, self.rt.adjacencies
        off = l3_offset(self, i)
        adj = int(self.meta.adj[i])
        described = decode.adjacency(a, adj, self.if_name)
        ttl, l2 = int(pool.data[i, off + 8]), int(a.l2_len[adj])
        if ttl <= 1:
            what = f"ttl {ttl} expires: to ip4-icmp-error (time exceeded)"
        elif int(pool.length[i]) - off + l2 > pool.data_size:
            what = f"drop: no-buffer-space ({self.errors['no-buffer-space']})"
        else:
            header = decode.macs(a.rewrite[adj].tobytes()) if l2 else "no Ethernet header"
            what = f"rewrite: {header}, ttl {ttl} -> {ttl - 1}"
        ip = decode.ip4(decode.head(pool, i)[off:])
        return f"tx_sw_if_index {int(a.sw_if[adj])} adj-idx {adj} : {described}\n{what}\n{ip}"


def shift(
    pool: PacketPool, idx: np.ndarray, off: np.ndarray, l2: np.ndarray, length: np.ndarray
) -> None:
    """Move each packet's IPv4 part from ``off`` to ``l2`` (an Ethernet header added or
    stripped), one row copy per direction."""
    for src, dst in ((0, ETH), (ETH, 0)):
        sel = off == src
        if sel.any():
            rows = idx[sel]
            width = int((length[sel] - src).max())
            pool.data[rows, dst : dst + width] = pool.data[rows, src : src + width]
