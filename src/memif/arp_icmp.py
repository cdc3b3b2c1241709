"""A host's ARP and ICMP echo answerer, sans I/O: a burst of frames in, verdicts and replies out.

One implementation for ``memif responder`` (libmemif's ``icmp_responder``), ``memif ping``
(which answers ARP for its own address) and memifd's ``arp-input``/``ip4-input`` nodes.
:meth:`ArpIcmpAnswerer.answer` classifies a whole burst with :func:`memif.classify.classify`
and gives each frame a :class:`Verdict`; for the frames it answers, it builds the reply's
head in one vectorized pass:

* an ARP request for one of our addresses (ARP for IPv4 over Ethernet) gets an ARP reply
  from our MAC (42 bytes, all head);
* an ICMP echo request (type 8, code 0) to one of our addresses, with valid IPv4 header and
  ICMP checksums and not a fragment, gets an echo reply: the request with its MAC and IP
  addresses swapped, TTL 64, type 0 and both checksums updated for the changed words
  (RFC 1624).  The head ends with the ICMP checksum; the rest of the reply (ICMP identifier,
  sequence number and data) is the request's, byte for byte, so the caller copies it from the
  request, or, writing the reply over the request in place, leaves it as it is.  Ethernet
  padding after the IP total length is not part of the reply.

Frames are never answered behind a VLAN tag (the host is untagged).  It opens nothing, keeps
no state between bursts and never reads a clock.

**Small bursts.**  numpy costs a microsecond or more per call whatever the array size, and
the vectorized pass makes about two hundred calls: some 230 us for a burst of one frame, more
than the rest of a ping's round trip (it is about 1 us per frame more for a full burst).
Frame by frame in plain Python it is 4 to 8 us a frame, so a burst of at most
:data:`SMALL_BURST` frames (the answerer's ``small_burst``) is answered that way, with the
same rules and the same :class:`Answers` (identical verdicts, heads and lengths: the tests
run both paths against :func:`reference` and against each other).  Callers holding whole
frames skip the header rows: :meth:`~ArpIcmpAnswerer.answer_frames` (a burst of them, as
:class:`Answers`) and :meth:`~ArpIcmpAnswerer.answer_one` (one frame, no arrays at all: what
``memif responder`` does with a ping's bursts).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from . import packet as pk
from .classify import HEADER_BYTES, RUNT, Fields, classify

__all__ = [
    "REPLY_HEAD",
    "SMALL_BURST",
    "TTL",
    "Answers",
    "ArpIcmpAnswerer",
    "Verdict",
    "header_rows",
    "reference",
    "verifies",
]

Array = npt.NDArray[Any]
#: A packet's whole bytes, by its index in the burst (for checksums past the header rows).
PacketAt = Callable[[int], bytes | npt.NDArray[np.uint8]]

TTL = 64  #: the TTL of echo replies, as libmemif's icmp_responder and Linux set it
#: Bytes of a reply head: Ethernet, an IPv4 header with the longest options, ICMP type to
#: checksum.
REPLY_HEAD = pk.ETH_HLEN + 60 + 4
#: Bursts of at most this many frames are answered frame by frame (see the module's
#: docstring); the two paths cost the same at about 64 echo requests.
SMALL_BURST = 32
_ARP_REPLY_FIXED_BYTES = bytes.fromhex("0806 0001 0800 0604 0002")
_ARP_REPLY_FIXED = np.frombuffer(_ARP_REPLY_FIXED_BYTES, np.uint8)
_ARP_IP4_ETH = bytes.fromhex("0001 0800 0604")  # htype Ethernet, ptype IPv4, hlen 6, plen 4


class Verdict(enum.IntEnum):
    """What the answerer made of one frame."""

    ANSWER_ARP = 1  #: an ARP request for one of our addresses: answered
    ANSWER_ECHO = 2  #: an ICMP echo request to one of our addresses: answered
    ARP_REPLY = 3  #: an ARP reply to one of our addresses (a neighbour to learn, or not)
    ECHO_REPLY = 4  #: an ICMP echo reply to one of our addresses (an answer to a ping)
    NOT_FOR_US = 5  #: another address, unicast to another MAC, VLAN-tagged, other ARP ops
    MALFORMED = 6  #: cut short, bad IPv4 version, IHL or total length, not IPv4-Ethernet ARP
    BAD_CHECKSUM = 7  #: the IPv4 header checksum, or an echo request's ICMP checksum, fails
    UNSUPPORTED = 8  #: IPv4 but not ICMP echo (or a fragment); another ethertype


class Answers:
    """The verdicts on a burst and the replies to write.

    ``answered`` are the indices of the frames answered (verdict ANSWER_ARP or ANSWER_ECHO),
    in order; row ``j`` of ``head`` is the start of the reply to frame ``answered[j]``, of
    which ``head_length[j]`` bytes are written; the reply is ``length[j]`` bytes long, bytes
    ``head_length[j]:length[j]`` being the request's own (so are an echo reply's head bytes
    past ``head_length[j]``: a head written over its request leaves the request whole).
    """

    def __init__(
        self,
        verdict: Array,
        answered: Array,
        head: Array,
        head_length: Array,
        length: Array,
        fields: Fields | Callable[[], Fields],
    ) -> None:
        self.verdict = verdict  #: uint8 per frame, a Verdict
        self.answered = answered  #: int64 indices
        self.head = head  #: (len(answered), REPLY_HEAD) uint8
        self.head_length = head_length  #: int64
        self.length = length  #: int64
        self._fields = fields

    @functools.cached_property
    def fields(self) -> Fields:
        """The burst's classification (:func:`memif.classify.classify`); a small burst,
        answered frame by frame, is classified on first use, from a copy of its rows."""
        fields = self._fields
        return fields if isinstance(fields, Fields) else fields()

    def count(self, verdict: Verdict) -> int:
        """How many frames got ``verdict``."""
        return int(np.count_nonzero(self.verdict == verdict))

    def where(self, verdict: Verdict) -> Array:
        """The indices of the frames that got ``verdict``."""
        found: Array = np.flatnonzero(self.verdict == verdict)
        return found

    def reply(self, j: int, request: bytes | Array) -> bytes:
        """Reply ``j`` whole, given its request's bytes (for callers that send ``bytes``)."""
        h, n = int(self.head_length[j]), int(self.length[j])
        return self.head[j, :h].tobytes() + bytes(request[h:n])


class ArpIcmpAnswerer:
    """Answers ARP and ICMP echo for ``addresses`` (4-byte IPv4 addresses) at ``mac``.

    ``ethernet=False`` reads bare IPv4 packets (memif ``mode ip``: no ARP, no MAC).
    ``check_mac``: a frame unicast to another MAC is NOT_FOR_US (a host on a shared
    segment); memifd's nodes, behind its own ethernet-input, pass False.
    ``small_burst``: bursts of at most this many frames are answered frame by frame
    (default :data:`SMALL_BURST`; 0: always vectorized), with the same results.
    """

    def __init__(
        self,
        mac: bytes,
        addresses: Iterable[bytes],
        *,
        ethernet: bool = True,
        check_mac: bool = True,
        small_burst: int = SMALL_BURST,
    ) -> None:
        if small_burst < 0:
            raise ValueError(f"small_burst is frames >= 0, got {small_burst!r}")
        self.mac = bytes(mac)
        if len(self.mac) != 6:
            raise ValueError(f"MAC address of {len(self.mac)} bytes: expected 6")
        addrs = [bytes(a) for a in addresses]
        if any(len(a) != 4 for a in addrs):
            raise ValueError("IPv4 addresses are 4 bytes each")
        self.addresses = tuple(addrs)
        self._ips = np.array([int.from_bytes(a, "big") for a in addrs], np.uint32)
        self._mac = np.frombuffer(self.mac, np.uint8)
        self.ethernet = ethernet
        self.check_mac = check_mac
        self.small_burst = small_burst
        self._l3 = pk.ETH_HLEN if ethernet else 0

    def answer(self, hdr: Array, lengths: Array, packet: PacketAt | None = None) -> Answers:
        """Verdicts and replies for a burst.

        ``hdr``: each frame's first bytes, one row each, :data:`~memif.classify.HEADER_BYTES`
        wide (bytes past a frame's length are ignored); ``lengths``: the frames' lengths;
        ``packet(i)``: frame ``i`` whole, read only to verify the ICMP checksum of an echo
        request longer than its row (without it such requests are UNSUPPORTED).
        """
        if hdr.shape[1] < HEADER_BYTES and len(hdr):
            raise ValueError(f"header rows of {hdr.shape[1]} bytes: {HEADER_BYTES} are needed")
        if len(hdr) <= self.small_burst:
            rows, ethernet = hdr.copy(), self.ethernet  # the caller's rows may be refilled
            sizes = np.array(lengths, np.int64)
            return self._answer_each(
                [row.tobytes() for row in rows],
                sizes.tolist(),
                hdr.shape[1],
                packet,
                lambda: classify(rows, sizes, ethernet),
            )
        f = classify(hdr, lengths, self.ethernet)
        n = len(f)
        verdict = np.full(n, Verdict.UNSUPPORTED, np.uint8)
        verdict[f.ethertype == RUNT] = Verdict.MALFORMED
        for_us = f.l3 == self._l3  # untagged
        if self.ethernet and self.check_mac:
            for_us &= (f.mac[:, :6] == self._mac).all(axis=1) | (f.mac[:, 0] & 1 == 1)

        arp = f.ethertype == pk.ETH_P_ARP
        if arp.any():
            tpa = f.arp_ip[:, 4:8].copy().view(">u4")[:, 0]
            mine = f.is_arp_ip & for_us & np.isin(tpa, self._ips)
            verdict[arp] = Verdict.NOT_FOR_US
            verdict[arp & ~f.is_arp_ip] = Verdict.MALFORMED
            verdict[mine & (f.arp_op == pk.ARP_REQUEST)] = Verdict.ANSWER_ARP
            verdict[mine & (f.arp_op == pk.ARP_REPLY)] = Verdict.ARP_REPLY

        ip = f.ethertype == pk.ETH_P_IP
        if ip.any():
            self._ip4(hdr, f, ip, for_us, verdict, packet)

        answered: Array = np.flatnonzero(
            (verdict == Verdict.ANSWER_ARP) | (verdict == Verdict.ANSWER_ECHO)
        )
        head = np.zeros((len(answered), REPLY_HEAD), np.uint8)
        head_length = np.zeros(len(answered), np.int64)
        length = np.zeros(len(answered), np.int64)
        if len(answered):
            self._arp_replies(hdr, verdict, answered, head, head_length, length)
            self._echo_replies(hdr, f, verdict, answered, head, head_length, length, packet)
        return Answers(verdict, answered, head, head_length, length, f)

    # ------------------------------------------------------------------ frame by frame
    def answer_frames(self, frames: Sequence[bytes | Array]) -> Answers:
        """:meth:`answer` for frames given whole (``bytes`` or ``uint8`` arrays, views of
        receive buffers say): a burst of at most ``small_burst`` of them is answered
        without gathering header rows.  The answers keep no reference to the frames."""
        if len(frames) > self.small_burst:
            hdr, lengths = header_rows(frames)
            return self.answer(hdr, lengths, frames.__getitem__)
        data = [f if isinstance(f, bytes) else f.tobytes() for f in frames]
        ethernet = self.ethernet
        return self._answer_each(
            data, [len(d) for d in data], None, None, lambda: classify(*header_rows(data), ethernet)
        )

    def answer_one(self, frame: bytes) -> tuple[Verdict, bytes | None, int]:
        """One whole frame's ``(verdict, reply head, reply length)``, the head None when it
        is not answered: the reply is the head, then the frame's own bytes up to the
        length.  What a small burst's answers are made of, without their numpy arrays
        (a caller that handles frames one at a time saves a few microseconds each)."""
        length = len(frame)
        verdict, head, head_length, reply_length = self._one(frame, length, length, 0, None)
        if head is None:
            return verdict, None, 0
        return verdict, bytes(head[:head_length]), reply_length

    def _answer_each(
        self,
        rows: Sequence[bytes],
        lengths: Sequence[int],
        width: int | None,
        packet: PacketAt | None,
        fields: Callable[[], Fields],
    ) -> Answers:
        """:meth:`answer` for a small burst: the same rules, one frame at a time.

        ``rows``: each frame's first ``width`` bytes, or (``width`` None) the whole frame.
        """
        verdicts: list[int] = []
        answered: list[int] = []
        heads: list[bytes | bytearray] = []
        head_lengths: list[int] = []
        reply_lengths: list[int] = []
        for i, row in enumerate(rows):
            length = lengths[i]
            verdict, head, head_length, reply_length = self._one(
                row, length, length if width is None else width, i, packet
            )
            verdicts.append(verdict)
            if head is not None:
                answered.append(i)
                heads.append(head)
                head_lengths.append(head_length)
                reply_lengths.append(reply_length)
        return Answers(
            np.array(verdicts, np.uint8),
            np.array(answered, np.int64),
            np.frombuffer(bytearray(b"".join(heads)), np.uint8).reshape(-1, REPLY_HEAD),
            np.array(head_lengths, np.int64),
            np.array(reply_lengths, np.int64),
            fields,
        )

    def _one(
        self, row: bytes, length: int, width: int, i: int, packet: PacketAt | None
    ) -> tuple[Verdict, bytes | bytearray | None, int, int]:
        """``(verdict, reply head, head length, reply length)`` of frame ``i``, whose first
        bytes are ``row`` (``width`` of them); the head is None when it is not answered."""
        if self.ethernet:
            if length < pk.ETH_HLEN:
                return Verdict.MALFORMED, None, 0, 0
            l3, et = pk.ETH_HLEN, row[12] << 8 | row[13]
            for _ in range(pk.MAX_VLAN_TAGS):  # looked through, never answered behind
                if et not in pk.VLAN_TPIDS or length < l3 + 4:
                    break
                l3 += 4
                et = row[l3 - 2] << 8 | row[l3 - 1]
            for_us = l3 == pk.ETH_HLEN and (
                not self.check_mac or row[0] & 1 == 1 or row[0:6] == self.mac
            )
            if et == pk.ETH_P_ARP:
                return self._arp(row, length, l3, for_us)
            if et != pk.ETH_P_IP:
                return Verdict.UNSUPPORTED, None, 0, 0
        else:
            if length < 1:
                return Verdict.MALFORMED, None, 0, 0
            if row[0] >> 4 != 4:
                return Verdict.UNSUPPORTED, None, 0, 0
            l3, for_us = 0, True
        if length < l3 + pk.IP_HLEN:
            return Verdict.MALFORMED, None, 0, 0
        vihl = row[l3]
        ihl, total = (vihl & 0xF) * 4, row[l3 + 2] << 8 | row[l3 + 3]
        if (
            ihl < pk.IP_HLEN
            or vihl >> 4 != 4
            or total < ihl
            or l3 + total > length
            or l3 + ihl > width
        ):
            return Verdict.MALFORMED, None, 0, 0
        if not _verifies_bytes(row[l3 : l3 + ihl]):
            return Verdict.BAD_CHECKSUM, None, 0, 0
        if not for_us or row[l3 + 16 : l3 + 20] not in self.addresses:
            return Verdict.NOT_FOR_US, None, 0, 0
        at, end = l3 + ihl, l3 + total
        if (
            row[l3 + 9] != pk.PROTO_ICMP
            or row[l3 + 6] & 0x3F  # more fragments, or an offset (with the next byte)
            or row[l3 + 7]
            or total < ihl + pk.ICMP_ECHO_HLEN
        ):
            return Verdict.UNSUPPORTED, None, 0, 0
        if row[at] == pk.ICMP_ECHO_REPLY:
            return Verdict.ECHO_REPLY, None, 0, 0
        if row[at] != pk.ICMP_ECHO_REQUEST or row[at + 1] != 0:
            return Verdict.UNSUPPORTED, None, 0, 0
        if end <= width:
            icmp = row[at:end]
        elif packet is not None:
            icmp = bytes(packet(i)[at:end])
        else:  # longer than its row and no way to read it whole
            return Verdict.UNSUPPORTED, None, 0, 0
        if not _verifies_bytes(icmp):
            return Verdict.BAD_CHECKSUM, None, 0, 0
        return Verdict.ANSWER_ECHO, self._echo_head(row, l3, at, icmp), at + 4, end

    def _arp(
        self, row: bytes, length: int, l3: int, for_us: bool
    ) -> tuple[Verdict, bytes | bytearray | None, int, int]:
        """:meth:`_one` for an ARP frame."""
        if length < l3 + pk.ARP_LEN or row[l3 : l3 + 6] != _ARP_IP4_ETH:
            return Verdict.MALFORMED, None, 0, 0
        if not for_us or row[l3 + 24 : l3 + 28] not in self.addresses:
            return Verdict.NOT_FOR_US, None, 0, 0
        op = row[l3 + 6] << 8 | row[l3 + 7]
        if op == pk.ARP_REPLY:
            return Verdict.ARP_REPLY, None, 0, 0
        if op != pk.ARP_REQUEST:
            return Verdict.NOT_FOR_US, None, 0, 0
        sender = row[l3 + 8 : l3 + 18]  # the asker's MAC and address: the reply's target
        head = b"".join(
            (sender[:6], self.mac, _ARP_REPLY_FIXED_BYTES, self.mac, row[l3 + 24 : l3 + 28])
        )
        head += sender
        reply = l3 + pk.ARP_LEN
        return Verdict.ANSWER_ARP, head + bytes(REPLY_HEAD - len(head)), reply, reply

    def _echo_head(self, row: bytes, l3: int, at: int, icmp: bytes) -> bytearray:
        """The head of the reply to the echo request ``row`` (ICMP message ``icmp``)."""
        head = bytearray(row[:REPLY_HEAD].ljust(REPLY_HEAD, b"\0"))  # (a short frame)
        if self.ethernet:
            head[0:6] = row[6:12]
            head[6:12] = self.mac
        ttl_proto = row[l3 + 8] << 8 | row[l3 + 9]
        ip_sum = row[l3 + 10] << 8 | row[l3 + 11]
        ip_sum = pk.update_checksum(ip_sum, ttl_proto, TTL << 8 | (ttl_proto & 0xFF))
        head[l3 + 8] = TTL
        head[l3 + 10 : l3 + 12] = ip_sum.to_bytes(2, "big")
        head[l3 + 12 : l3 + 16] = row[l3 + 16 : l3 + 20]  # addresses swapped: the sum holds
        head[l3 + 16 : l3 + 20] = row[l3 + 12 : l3 + 16]
        icmp_sum = row[at + 2] << 8 | row[at + 3]
        icmp_sum = pk.update_checksum(icmp_sum, pk.ICMP_ECHO_REQUEST << 8, pk.ICMP_ECHO_REPLY << 8)
        if icmp_sum == 0 and not any(icmp[4:]):  # a message of zeros: its checksum is ~0
            icmp_sum = 0xFFFF
        head[at] = pk.ICMP_ECHO_REPLY
        head[at + 2 : at + 4] = icmp_sum.to_bytes(2, "big")
        return head

    # ------------------------------------------------------------------ IPv4
    def _ip4(
        self,
        hdr: Array,
        f: Fields,
        ip: Array,
        for_us: Array,
        verdict: Array,
        packet: PacketAt | None,
    ) -> None:
        l3 = f.l3
        version = hdr[np.arange(len(f)), np.minimum(l3, hdr.shape[1] - 1)] >> 4
        whole = (
            f.is_ip4
            & (version == 4)
            & (f.ip4_total >= f.ihl)
            & (l3 + f.ip4_total <= f.length)
            & (l3 + f.ihl <= hdr.shape[1])
        )
        verdict[ip] = Verdict.MALFORMED
        rows = np.flatnonzero(whole)
        if not len(rows):
            return
        sums = _WordSums(hdr)
        ok = sums.verifies(rows, l3[rows], l3[rows] + f.ihl[rows])
        verdict[rows[~ok]] = Verdict.BAD_CHECKSUM
        rows = rows[ok]
        dst = f.ip4[rows, 4:8].copy().view(">u4")[:, 0]
        mine = for_us[rows] & np.isin(dst, self._ips)
        verdict[rows[~mine]] = Verdict.NOT_FOR_US
        rows = rows[mine]
        verdict[rows] = Verdict.UNSUPPORTED
        echo = (
            (f.l4proto[rows] == pk.PROTO_ICMP)
            & (f.ip4_frag[rows] & 0x3FFF == 0)  # neither more fragments nor an offset
            & (f.ip4_total[rows] >= f.ihl[rows] + pk.ICMP_ECHO_HLEN)
        )
        rows = rows[echo]
        kind, code = f.icmp_type[rows], f.icmp_code[rows]
        verdict[rows[kind == pk.ICMP_ECHO_REPLY]] = Verdict.ECHO_REPLY
        rows = rows[(kind == pk.ICMP_ECHO_REQUEST) & (code == 0)]
        if not len(rows):
            return
        start, end = f.l4[rows], l3[rows] + f.ip4_total[rows]
        inside = end <= hdr.shape[1]
        ok = np.zeros(len(rows), bool)
        ok[inside] = sums.verifies(rows[inside], start[inside], end[inside])
        for k in np.flatnonzero(~inside).tolist():
            if packet is not None:
                data = packet(int(rows[k]))
                ok[k] = _verifies_bytes(bytes(data[int(start[k]) : int(end[k])]))
        verdict[rows] = np.where(ok, Verdict.ANSWER_ECHO, Verdict.BAD_CHECKSUM)
        if packet is None:
            verdict[rows[~inside]] = Verdict.UNSUPPORTED

    # ------------------------------------------------------------------ replies
    def _arp_replies(
        self,
        hdr: Array,
        verdict: Array,
        answered: Array,
        head: Array,
        head_length: Array,
        length: Array,
    ) -> None:
        sel = np.flatnonzero(verdict[answered] == Verdict.ANSWER_ARP)
        if not len(sel):
            return
        req = hdr[answered[sel]]
        out = head[sel]
        e = pk.ETH_HLEN
        out[:, 0:6] = req[:, e + 8 : e + 14]  # to the sender's hardware address
        out[:, 6:12] = self._mac
        out[:, 12:22] = _ARP_REPLY_FIXED
        out[:, e + 8 : e + 14] = self._mac  # sender: us, at the address asked for
        out[:, e + 14 : e + 18] = req[:, e + 24 : e + 28]
        out[:, e + 18 : e + 28] = req[:, e + 8 : e + 18]  # target: the asker
        head[sel] = out
        head_length[sel] = length[sel] = e + pk.ARP_LEN

    def _echo_replies(
        self,
        hdr: Array,
        f: Fields,
        verdict: Array,
        answered: Array,
        head: Array,
        head_length: Array,
        length: Array,
        packet: PacketAt | None,
    ) -> None:
        sel = np.flatnonzero(verdict[answered] == Verdict.ANSWER_ECHO)
        if not len(sel):
            return
        i = answered[sel]
        out = hdr[i, :REPLY_HEAD].copy()
        o = self._l3
        if self.ethernet:
            out[:, 0:6] = hdr[i, 6:12]
            out[:, 6:12] = self._mac
        ttl_proto = hdr[i, o + 8].astype(np.int64) << 8 | hdr[i, o + 9]
        ip_sum = hdr[i, o + 10].astype(np.int64) << 8 | hdr[i, o + 11]
        ip_sum = _adjust(ip_sum, ttl_proto, TTL << 8 | (ttl_proto & 0xFF))
        out[:, o + 8] = TTL
        out[:, o + 10] = ip_sum >> 8
        out[:, o + 11] = ip_sum & 0xFF
        out[:, o + 12 : o + 16] = hdr[i, o + 16 : o + 20]  # addresses swapped: the sum holds
        out[:, o + 16 : o + 20] = hdr[i, o + 12 : o + 16]
        rows = np.arange(len(i))
        at = f.l4[i]
        icmp_sum = hdr[i, at + 2].astype(np.int64) << 8 | hdr[i, at + 3]
        code = hdr[i, at + 1].astype(np.int64)
        icmp_sum = _adjust(
            icmp_sum, pk.ICMP_ECHO_REQUEST << 8 | code, pk.ICMP_ECHO_REPLY << 8 | code
        )
        for k in np.flatnonzero(icmp_sum == 0).tolist():  # +0 or -0: which one, the data says
            if _all_zero(hdr, packet, int(i[k]), int(at[k]) + 4, o + int(f.ip4_total[i[k]])):
                icmp_sum[k] = 0xFFFF  # a message of zeros sums to +0: its checksum is ~0
        out[rows, at] = pk.ICMP_ECHO_REPLY
        out[rows, at + 2] = icmp_sum >> 8
        out[rows, at + 3] = icmp_sum & 0xFF
        head[sel] = out
        head_length[sel] = at + 4
        length[sel] = o + f.ip4_total[i]


def reference(
    frame: bytes,
    mac: bytes,
    addresses: Iterable[bytes],
    *,
    ethernet: bool = True,
    check_mac: bool = True,
) -> tuple[Verdict, bytes | None]:
    """One frame's verdict and whole reply, plainly: the scalar reference of
    :meth:`ArpIcmpAnswerer.answer`, built on :func:`memif.packet.parse` with every
    checksum computed from scratch (the tests hold the vector code to it)."""
    ours = {bytes(a) for a in addresses}
    if ethernet:
        p = pk.parse(frame)
        if p is None:
            return Verdict.MALFORMED, None
        l3 = pk.ETH_HLEN + 4 * len(p.vlans)
        for_us = not p.vlans and (not check_mac or p.dst == mac or pk.is_group(p.dst))
        if p.ethertype == pk.ETH_P_ARP:
            if p.arp is None:
                return Verdict.MALFORMED, None
            op, sha, spa, _, tpa = p.arp
            if not for_us or tpa not in ours:
                return Verdict.NOT_FOR_US, None
            if op == pk.ARP_REQUEST:
                return Verdict.ANSWER_ARP, pk.arp_reply(mac, tpa, sha, spa)
            return (Verdict.ARP_REPLY if op == pk.ARP_REPLY else Verdict.NOT_FOR_US), None
        if p.ethertype != pk.ETH_P_IP:
            return Verdict.UNSUPPORTED, None
    else:
        if not frame:
            return Verdict.MALFORMED, None
        if frame[0] >> 4 != 4:
            return Verdict.UNSUPPORTED, None
        l3, for_us = 0, True
    ip = frame[l3:]
    if len(ip) < pk.IP_HLEN or ip[0] >> 4 != 4 or ip[0] & 0xF < 5:
        return Verdict.MALFORMED, None
    ihl, total = (ip[0] & 0xF) * 4, int.from_bytes(ip[2:4], "big")
    if total < ihl or total > len(ip):
        return Verdict.MALFORMED, None
    if pk.checksum(ip[:ihl]):
        return Verdict.BAD_CHECKSUM, None
    if not for_us or ip[16:20] not in ours:
        return Verdict.NOT_FOR_US, None
    frag = int.from_bytes(ip[6:8], "big")
    if ip[9] != pk.PROTO_ICMP or frag & 0x3FFF or total < ihl + pk.ICMP_ECHO_HLEN:
        return Verdict.UNSUPPORTED, None
    icmp = ip[ihl:total]
    if icmp[0] == pk.ICMP_ECHO_REPLY:
        return Verdict.ECHO_REPLY, None
    if icmp[0] != pk.ICMP_ECHO_REQUEST or icmp[1] != 0:
        return Verdict.UNSUPPORTED, None
    if pk.checksum(icmp):
        return Verdict.BAD_CHECKSUM, None
    header = ip[:8] + bytes((TTL, ip[9], 0, 0)) + ip[16:20] + ip[12:16] + ip[20:ihl]
    header = header[:10] + pk.checksum(header).to_bytes(2, "big") + header[12:]
    echo = bytes((pk.ICMP_ECHO_REPLY, 0, 0, 0)) + icmp[4:]
    echo = echo[:2] + pk.checksum(echo).to_bytes(2, "big") + echo[4:]
    eth = frame[6:12] + mac + frame[12:14] if ethernet else b""
    return Verdict.ANSWER_ECHO, eth + header + echo


def header_rows(frames: Sequence[bytes | Array]) -> tuple[Array, Array]:
    """The header rows and lengths :meth:`ArpIcmpAnswerer.answer` takes, from whole frames:
    each frame's first :data:`~memif.classify.HEADER_BYTES` bytes, zeros past its end."""
    hdr = np.zeros((len(frames), HEADER_BYTES), np.uint8)
    for i, f in enumerate(frames):
        n = min(len(f), HEADER_BYTES)
        hdr[i, :n] = np.frombuffer(f, np.uint8, n) if isinstance(f, bytes) else f[:n]
    return hdr, np.array([len(f) for f in frames], np.int64)


def verifies(rows: Array, start: Array, end: Array) -> Array:
    """True per row where the Internet checksum over ``rows[j, start[j]:end[j]]`` verifies.

    ``start`` must be even (the 16-bit words are aligned on the row's start); an odd
    ``end`` is padded with a zero byte, as RFC 1071 says.
    """
    return _WordSums(rows).verifies(np.arange(len(rows)), start, end)


class _WordSums:
    """Running sums of the 16-bit words of header rows: any aligned range's sum in O(1).

    The one's-complement sum of words is their plain sum modulo 0xFFFF, which is 0 for
    data whose checksum holds; one cumulative sum per burst serves every range checked.
    """

    def __init__(self, rows: Array) -> None:
        n, width = rows.shape
        if width & 1:
            rows = np.pad(rows, ((0, 0), (0, 1)))
        self.rows = np.ascontiguousarray(rows)
        self.sums = np.zeros((n, self.rows.shape[1] // 2 + 1), np.int64)
        np.cumsum(self.rows.view(">u2"), axis=1, out=self.sums[:, 1:])

    def verifies(self, which: Array, start: Array, end: Array) -> Array:
        """True per row ``which[j]`` where bytes ``start[j]:end[j]`` verify."""
        total = self.sums[which, (end + 1) // 2] - self.sums[which, start // 2]
        odd = (end & 1).astype(bool)
        if odd.any():  # the last word's low byte is past the end: take it out
            last = np.minimum(end, self.rows.shape[1] - 1)
            total -= np.where(odd, self.rows[which, last], 0)
        ok: Array = total % 0xFFFF == 0
        return ok


def _all_zero(hdr: Array, packet: PacketAt | None, i: int, start: int, end: int) -> bool:
    """True when bytes ``start:end`` of packet ``i`` are all zero."""
    width = hdr.shape[1]
    if hdr[i, start : min(end, width)].any():
        return False
    if end <= width:
        return True
    assert packet is not None  # a request longer than its row was verified through it
    return not any(bytes(packet(i)[width:end]))


def _verifies_bytes(data: bytes) -> bool:
    """:func:`verifies` of one packet's bytes: one big-integer operation, no loop."""
    value = int.from_bytes(data, "big")
    return (value << 8 if len(data) & 1 else value) % 0xFFFF == 0


def _adjust(checksum: Array, old: Array | int, new: Array | int) -> Array:
    """The checksums after one 16-bit word changed from ``old`` to ``new`` (RFC 1624 eqn 3):
    :func:`memif.packet.update_checksum` for a whole burst."""
    s: Array = (~checksum & 0xFFFF) + (~np.asarray(old, np.int64) & 0xFFFF) + new
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    out: Array = ~s & 0xFFFF
    return out
