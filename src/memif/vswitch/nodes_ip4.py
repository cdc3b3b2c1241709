"""Local L3: arp-input and ip4-input answer ARP and ICMP echo for the switch's addresses.

The switch is not a router: it answers what is addressed to an interface's own
IPv4 address (so peers can ping it) and records replies to its own pings.  These
packets are rare, so the nodes work packet by packet, rewriting the request in
place into the reply and sending it back out of the interface it came from.
``mode ip`` interfaces carry bare IPv4 packets (no Ethernet header).
"""

from __future__ import annotations

import struct

import numpy as np

from .. import packet
from .nodes_l2 import SwitchNode
from .pool import INDEX

_ICMP_ECHO = 8
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

    def process(self, idx: np.ndarray) -> None:
        pool, meta, sw = self.graph.pool, self.meta, self.switch
        replies, drops, bad, consumed = [], [], [], []
        refused: dict[str, list[int]] = {"not-requested": [], "neighbor-limit": []}
        for i in idx.tolist():
            frame = pool.packet(i)
            p = packet.parse(frame)
            if p is None or p.arp is None:
                bad.append(i)
                continue
            op, sha, spa, _, tpa = p.arp
            iface = sw.tables.interfaces[int(meta.rx_if[i])]
            ours = any(addr == tpa for addr, _ in iface.ip4)
            if op == packet.ARP_REPLY and ours:  # an answer to the switch's own request?
                why = sw.neighbors.learn(iface.sw_if_index, spa, sha, sw.now)
                if why is None:
                    consumed.append(i)
                else:
                    error = "neighbor-limit" if why == "limit" else why
                    refused[error].append(i)
                    sw.ratelog.log(
                        ("arp", iface.sw_if_index, error),
                        "arp-input: %s: ARP reply from %s refused: %s",
                        iface.name,
                        packet.ip4_str(spa),
                        self.errors[error],
                    )
                continue
            if op != packet.ARP_REQUEST or not ours:
                drops.append(i)
                continue
            reply = packet.ethernet(
                sha,
                iface.mac,
                packet.ETH_P_ARP,
                packet.arp(packet.ARP_REPLY, iface.mac, tpa, sha, spa),
            )
            _rewrite(pool, i, reply)
            meta.tx_if[i] = iface.sw_if_index
            replies.append(i)
        pool.free(np.array(consumed, INDEX))
        self.drop(np.array(bad, INDEX), "malformed")
        self.drop(np.array(drops, INDEX), "not-for-us")
        for error, lst in refused.items():
            self.drop(np.array(lst, INDEX), error)
        self.graph.enqueue(self.next_id("l2-output"), np.array(replies, INDEX))


class Ip4Input(SwitchNode):
    """Answer ICMP echo to our address; note echo replies for the switch's ping."""

    name = "ip4-input"
    errors = {
        "not-for-us": "IPv4 packet not addressed to this interface",
        "unsupported": "not an ICMP echo",
        "malformed": "bad IPv4 header",
        "ping-replies-full": "echo replies waiting for the switch's ping: queue full",
    }

    def process(self, idx: np.ndarray) -> None:
        pool, meta, sw = self.graph.pool, self.meta, self.switch
        out, consumed = [], []
        drops: dict[str, list[int]] = {
            "not-for-us": [],
            "unsupported": [],
            "malformed": [],
            "ping-replies-full": [],
        }
        for i in idx.tolist():
            iface = sw.tables.interfaces[int(meta.rx_if[i])]
            frame = pool.packet(i)
            l3 = frame if iface.ip_mode else frame[packet.ETH_HLEN :]
            if len(l3) < packet.IP_HLEN + 8 or l3[0] >> 4 != 4:
                drops["malformed"].append(i)
                continue
            ihl = (l3[0] & 0xF) * 4
            total = int.from_bytes(l3[2:4], "big")
            if ihl < packet.IP_HLEN or not ihl <= total <= len(l3):
                drops["malformed"].append(i)
                continue
            l3 = l3[:total]  # what follows is Ethernet padding, not ICMP data
            src, dst, proto = l3[12:16], l3[16:20], l3[9]
            if not any(addr == dst for addr, _ in iface.ip4):
                drops["not-for-us"].append(i)
                continue
            icmp = l3[ihl:]
            if proto != packet.PROTO_ICMP or len(icmp) < 8:
                drops["unsupported"].append(i)
                continue
            kind, ident, seq = icmp[0], *struct.unpack_from("!HH", icmp, 4)
            if kind == packet.ICMP_ECHO_REPLY:  # an answer to the switch's own ping
                if len(sw.ping_replies) >= MAX_PING_REPLIES:
                    drops["ping-replies-full"].append(i)
                    continue
                sw.ping_replies.append((ident, seq, src, sw.now, l3[8]))
                consumed.append(i)
                continue
            if kind != _ICMP_ECHO:
                drops["unsupported"].append(i)
                continue
            echo = packet.icmp_echo(packet.ICMP_ECHO_REPLY, ident, seq, icmp[8:])
            reply = packet.ipv4(dst, src, packet.PROTO_ICMP, echo)
            if not iface.ip_mode:
                reply = packet.ethernet(frame[6:12], iface.mac, packet.ETH_P_IP, reply)
            _rewrite(pool, i, reply)
            meta.tx_if[i] = iface.sw_if_index
            out.append(i)
        pool.free(np.array(consumed, INDEX))
        for error, lst in drops.items():
            self.drop(np.array(lst, INDEX), error)
        self.graph.enqueue(self.next_id("l2-output"), np.array(out, INDEX))


def _rewrite(pool, i: int, data: bytes) -> None:
    pool.data[i, : len(data)] = np.frombuffer(data, np.uint8)
    pool.length[i] = len(data)
