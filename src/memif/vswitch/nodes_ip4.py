"""Local L3: arp-input and ip4-local answer ARP and ICMP echo for the switch's addresses.

arp-input answers ARP for an interface's own IPv4 addresses and learns the
neighbours the switch asked for; ip4-local gets from ip4-lookup what is addressed
to any of the switch's addresses, answers echo requests (so peers can ping it) and
records echo replies to its own pings.  Which frame is answered, and how, is
:class:`memif.arp_icmp.ArpIcmpAnswerer`'s (the one answerer, ``memif responder``'s
too): the nodes hand it a vector's header rows per receiving interface, write
each reply's head over its request in place (the rest of an echo reply is the
request's own bytes) and send it back out of the interface it came from.
``mode ip`` interfaces carry bare IPv4 packets (no Ethernet header).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from .. import packet
from ..arp_icmp import REPLY_HEAD, Answers, ArpIcmpAnswerer, Verdict
from ..classify import HEADER_BYTES
from . import decode
from .graph import DROP
from .nodes_l2 import SwitchNode, distinct
from .pool import INDEX
from .tables import SwInterface

if TYPE_CHECKING:
    from .runtime import Runtime

MAX_PING_REPLIES = 4096  # echo replies held for running pings (each turn takes its own)


class LocalNode(SwitchNode):
    """A node that answers for the switch's own addresses (one answerer per interface)."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        #: sw_if_index -> (the MAC, addresses and mode it was built for, its answerer)
        self.answerers: dict[int, tuple[object, ArpIcmpAnswerer]] = {}

    def l3_payload(self, i: int) -> bytes:
        """Buffer ``i``'s bytes past its Ethernet header (none on an ip-mode interface)."""
        sw = self.tables.interfaces.get(int(self.meta.rx_if[i]))
        frame = decode.head(self.rt.pool, i)
        return frame if sw is not None and sw.ip_mode else frame[packet.ETH_HLEN :]

    def addresses(self, iface: SwInterface) -> tuple[bytes, ...]:
        """The addresses answered on ``iface``: its own."""
        return tuple(addr for addr, _ in iface.ip4)


class ArpInput(LocalNode):
    """Reply to ARP requests for our address; learn neighbours from ARP replies."""

    name = "arp-input"
    errors = {
        "not-for-us": "ARP for an address that is not ours",
        "malformed": "bad ARP",
        "not-requested": "ARP reply to a request the switch did not send",
        "neighbor-limit": "neighbour table full: ARP reply not learned",
    }
    next_nodes = ("l2-output", DROP)
    L2_OUTPUT = 0

    def process(self, idx: np.ndarray) -> None:
        rt = self.rt
        replies, consumed = [], []
        drops: dict[str, list[np.ndarray]] = {"malformed": [], "not-for-us": []}
        refused: dict[str, list[int]] = {"not-requested": [], "neighbor-limit": []}
        for iface, sub, hdr, answers in answer_by_interface(self, idx):
            verdict = answers.verdict
            replies.append(write_replies(self, sub, answers, iface))
            drops["malformed"].append(sub[verdict == Verdict.MALFORMED])
            other = (verdict >= Verdict.NOT_FOR_US) & (verdict != Verdict.MALFORMED)
            drops["not-for-us"].append(sub[other])  # other ARP ops, addresses, VLANs
            for j in answers.where(Verdict.ARP_REPLY).tolist():  # answers to our requests?
                i, sha, spa = int(sub[j]), hdr[j, 22:28].tobytes(), hdr[j, 28:32].tobytes()
                why = rt.neighbors.learn(iface.sw_if_index, spa, sha, rt.now)
                if why is None:
                    consumed.append(i)
                    continue
                error = "neighbor-limit" if why == "limit" else why
                refused[error].append(i)
                rt.ratelog.log(
                    ("arp", iface.sw_if_index, error),
                    "arp-input: %s: ARP reply from %s refused: %s",
                    iface.name,
                    packet.ip4_str(spa),
                    self.errors[error],
                )
        rt.pool.free(np.array(consumed, INDEX))
        for error, parts in drops.items():
            self.drop(_joined(parts), error)
        for error, lst in refused.items():
            self.drop(np.array(lst, INDEX), error)
        self.graph.enqueue(self.next[self.L2_OUTPUT], _joined(replies))

    def format_trace(self, i: int) -> str:
        """``arp-input: request: who-has 10.0.0.1 tell 10.0.0.2 (<mac>)`` or ``reply: ...``."""
        return f"arp-input: {decode.arp(self.l3_payload(i))}"


class Ip4Local(LocalNode):
    """Answer ICMP echo to our addresses; note echo replies for the switch's ping."""

    name = "ip4-local"
    errors = {
        "not-for-us": "IPv4 packet not addressed to this interface",
        "unsupported": "not an ICMP echo",
        "malformed": "bad IPv4 header",
        "ping-replies-full": "echo replies waiting for the switch's ping: queue full",
        "bad-checksum": "IPv4 header or ICMP echo request checksum does not verify",
    }
    next_nodes = ("l2-output", DROP)
    L2_OUTPUT = 0

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self._all: tuple[object, tuple[bytes, ...]] = (None, ())

    def addresses(self, iface: SwInterface) -> tuple[bytes, ...]:
        """Every address of the switch (ip4-lookup sent here what any of them receives),
        gathered again when the tables were refreshed."""
        t = self.tables
        if self._all[0] is not t.has_ip:
            found = (a for sw in t.interfaces.values() for a, _ in sw.ip4)
            self._all = (t.has_ip, tuple(dict.fromkeys(found)))
        return self._all[1]

    def process(self, idx: np.ndarray) -> None:
        if len(idx) == 1 and self._one(int(idx[0])):
            self.graph.enqueue(self.next[self.L2_OUTPUT], idx)
            return
        rt = self.rt
        out, consumed, full = [], [], []
        for iface, sub, _, answers in answer_by_interface(self, idx):
            out.append(write_replies(self, sub, answers, iface))
            if len(answers.answered) == len(sub):  # a ping's vector: every request answered
                continue
            verdict = answers.verdict
            for v, error in _IP4_ERRORS:
                self.drop(sub[verdict == v], error)
            mine = np.flatnonzero(verdict == _ECHO_REPLY).tolist()  # answers to our pings
            f = answers.fields if mine else None  # classified on first use (~100 us)
            for j in mine:
                assert f is not None
                if len(rt.ping_replies) >= MAX_PING_REPLIES:
                    full.append(int(sub[j]))
                    continue
                src = f.ip4[j, :4].tobytes()
                seq, ttl = int(f.icmp_seq[j]), int(f.ttl[j])
                rt.ping_replies.append((int(f.icmp_ident[j]), seq, src, rt.now, ttl))
                consumed.append(int(sub[j]))
        if consumed:
            rt.pool.free(np.array(consumed, INDEX))
        if full:
            self.drop(np.array(full, INDEX), "ping-replies-full")
        self.graph.enqueue(self.next[self.L2_OUTPUT], out[0] if len(out) == 1 else _joined(out))

    def format_trace(self, i: int) -> str:
        """``ICMP: 10.0.0.2 -> 10.0.0.1`` then ``ttl 64, length 84, checksum 0x..``, as
        VPP's ip4-local: the header of the packet addressed to the switch (before an echo
        reply is written over it)."""
        return decode.ip4(self.l3_payload(i))

    def _one(self, i: int) -> bool:
        """Buffer ``i`` alone, without header rows or answer arrays: True when it was
        answered (its reply written over it, as :func:`write_replies` does); False
        leaves it to the vector path (drops, echo replies to the switch's pings)."""
        rt = self.rt
        pool = rt.pool
        iface = self.tables.interfaces[int(self.meta.rx_if[i])]
        _, head, length = answerer_of(self, iface).answer_one(pool.packet(i))
        if head is None:
            return False
        pool.data[i, : len(head)] = np.frombuffer(head, np.uint8)  # past it: the request's
        pool.length[i] = length
        self.meta.tx_if[i] = iface.sw_if_index
        return True


# verdicts as plain ints: comparing an array with an IntEnum member takes numpy's slow path
_IP4_ERRORS = (
    (int(Verdict.MALFORMED), "malformed"),
    (int(Verdict.NOT_FOR_US), "not-for-us"),
    (int(Verdict.UNSUPPORTED), "unsupported"),
    (int(Verdict.BAD_CHECKSUM), "bad-checksum"),
)
_ECHO_REPLY = int(Verdict.ECHO_REPLY)


def answer_by_interface(
    node: LocalNode, idx: np.ndarray
) -> Iterator[tuple[SwInterface, np.ndarray, np.ndarray, Answers]]:
    """``(interface, buffers, header rows, answers)`` for the buffers of ``idx`` each
    interface received (one group in the usual vector)."""
    pool, rx = node.rt.pool, node.meta.rx_if[idx]
    groups = distinct(rx)
    for sw_if_index in groups:
        sub = idx if len(groups) == 1 else idx[rx == sw_if_index]
        iface = node.tables.interfaces[sw_if_index]
        answerer = answerer_of(node, iface)
        hdr = pool.data[sub, :HEADER_BYTES]
        lengths = pool.length[sub]

        def whole(j: int, sub: np.ndarray = sub) -> np.ndarray:
            return pool.data[sub[j], : pool.length[sub[j]]]

        yield iface, sub, hdr, answerer.answer(hdr, lengths, whole)


def answerer_of(node: LocalNode, iface: SwInterface) -> ArpIcmpAnswerer:
    """The answerer for ``iface``'s MAC and addresses, kept by ``node``: built when they
    change, not per vector (a new one cost ~7 us of a 1-packet vector).  Building one
    also forgets those of deleted interfaces (their indices are never reused): creating
    and deleting interfaces does not grow the cache."""
    addresses = node.addresses(iface)
    key = (iface.mac, addresses, iface.ip_mode)
    answerers = node.answerers
    cached = answerers.get(iface.sw_if_index)
    if cached is not None and cached[0] == key:
        return cached[1]
    live = node.tables.interfaces
    for gone in [i for i in answerers if i not in live]:
        del answerers[gone]
    answerer = ArpIcmpAnswerer(
        iface.mac if not iface.ip_mode else bytes(6),
        list(addresses),
        ethernet=not iface.ip_mode,
        check_mac=False,  # ethernet-input sent it here
    )
    answerers[iface.sw_if_index] = (key, answerer)
    return answerer


def write_replies(
    node: SwitchNode, sub: np.ndarray, answers: Answers, iface: SwInterface
) -> np.ndarray:
    """Write each reply's head over its request, in place; the buffers to send back."""
    pool = node.rt.pool
    out = sub[answers.answered]
    if len(out):
        pool.data[out, :REPLY_HEAD] = answers.head  # past a head: the request's bytes
        pool.length[out] = answers.length
        node.meta.tx_if[out] = iface.sw_if_index
    return out


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(INDEX) if parts else np.zeros(0, INDEX)
