"""Local L3: arp-input and ip4-input answer ARP and ICMP echo for the switch's addresses.

The switch is not a router: it answers what is addressed to an interface's own
IPv4 address (so peers can ping it), learns the neighbours it asked for and
records echo replies to its own pings.  Which frame is answered, and how, is
:class:`memif.arp_icmp.ArpIcmpAnswerer`'s (the one answerer, ``memif responder``'s
too): the nodes hand it a vector's header rows per receiving interface, write
each reply's head over its request in place (the rest of an echo reply is the
request's own bytes) and send it back out of the interface it came from.
``mode ip`` interfaces carry bare IPv4 packets (no Ethernet header).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .. import packet
from ..arp_icmp import REPLY_HEAD, Answers, ArpIcmpAnswerer, Verdict
from ..classify import HEADER_BYTES
from .graph import DROP
from .nodes_l2 import SwitchNode
from .pool import INDEX
from .tables import SwInterface

MAX_PING_REPLIES = 4096  # echo replies held for running pings (each turn takes its own)


class ArpInput(SwitchNode):
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


class Ip4Input(SwitchNode):
    """Answer ICMP echo to our address; note echo replies for the switch's ping."""

    name = "ip4-input"
    errors = {
        "not-for-us": "IPv4 packet not addressed to this interface",
        "unsupported": "not an ICMP echo",
        "malformed": "bad IPv4 header",
        "ping-replies-full": "echo replies waiting for the switch's ping: queue full",
        "bad-checksum": "IPv4 header or ICMP echo request checksum does not verify",
    }
    next_nodes = ("l2-output", DROP)
    L2_OUTPUT = 0

    def process(self, idx: np.ndarray) -> None:
        rt = self.rt
        out, consumed, full = [], [], []
        drops: dict[str, list[np.ndarray]] = {name: [] for name in _IP4_ERRORS.values()}
        for iface, sub, _, answers in answer_by_interface(self, idx):
            verdict = answers.verdict
            out.append(write_replies(self, sub, answers, iface))
            for v, error in _IP4_ERRORS.items():
                drops[error].append(sub[verdict == v])
            f = answers.fields
            for j in answers.where(Verdict.ECHO_REPLY).tolist():  # answers to our pings
                if len(rt.ping_replies) >= MAX_PING_REPLIES:
                    full.append(int(sub[j]))
                    continue
                src = f.ip4[j, :4].tobytes()
                seq, ttl = int(f.icmp_seq[j]), int(f.ttl[j])
                rt.ping_replies.append((int(f.icmp_ident[j]), seq, src, rt.now, ttl))
                consumed.append(int(sub[j]))
        rt.pool.free(np.array(consumed, INDEX))
        for error, parts in drops.items():
            self.drop(_joined(parts), error)
        self.drop(np.array(full, INDEX), "ping-replies-full")
        self.graph.enqueue(self.next[self.L2_OUTPUT], _joined(out))


_IP4_ERRORS = {
    Verdict.MALFORMED: "malformed",
    Verdict.NOT_FOR_US: "not-for-us",
    Verdict.UNSUPPORTED: "unsupported",
    Verdict.BAD_CHECKSUM: "bad-checksum",
}


def answer_by_interface(
    node: SwitchNode, idx: np.ndarray
) -> Iterator[tuple[SwInterface, np.ndarray, np.ndarray, Answers]]:
    """``(interface, buffers, header rows, answers)`` for the buffers of ``idx`` each
    interface received (one group in the usual vector)."""
    pool, rx = node.rt.pool, node.meta.rx_if[idx]
    groups = [int(rx[0])] if len(idx) and (rx == rx[0]).all() else np.unique(rx).tolist()
    for sw_if_index in groups:
        sub = idx if len(groups) == 1 else idx[rx == sw_if_index]
        iface = node.tables.interfaces[sw_if_index]
        answerer = ArpIcmpAnswerer(
            iface.mac if not iface.ip_mode else bytes(6),
            [addr for addr, _ in iface.ip4],
            ethernet=not iface.ip_mode,
            check_mac=False,  # ethernet-input sent it here
        )
        hdr = pool.data[sub, :HEADER_BYTES]
        lengths = pool.length[sub]

        def whole(j: int, sub: np.ndarray = sub) -> np.ndarray:
            return pool.data[sub[j], : pool.length[sub[j]]]

        yield iface, sub, hdr, answerer.answer(hdr, lengths, whole)


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
