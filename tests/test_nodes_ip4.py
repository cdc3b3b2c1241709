"""memifd's arp-input, ip4-input and ip4-local over a real switch and real memif peers.

What memif.arp_icmp decides, seen from the switch: replies written in place and sent back,
replies to the switch's own pings kept for its ``ping``, ARP replies it did not ask for
refused, and every frame not answered counted under its ``show errors`` name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from helpers import SwitchRig, drain, mac
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether

import memif
from memif import packet
from memif.vswitch.nodes_ip4 import LocalNode

SW_IP, SW_IP2, PEER_IP = packet.ip4("10.0.0.1"), packet.ip4("10.8.0.1"), packet.ip4("10.0.0.2")


class Rig(SwitchRig):
    """A switch with one L3 memif (10.0.0.1/24 and 10.8.0.1/16) and its peer."""

    def __init__(self, tmp_path: Any) -> None:
        super().__init__(tmp_path, "master", "nodes-ip4", n_buffers=1024, data_size=4096)
        self.sw_if, self.peer = self.create_port(
            1, {"mac": mac(1), "reconnect_interval": 0.1}, bd=None, ring_size=256
        )
        self.sw.set_ip(self.sw_if.name, SW_IP, 24)
        self.sw.set_ip(self.sw_if.name, SW_IP2, 16)
        self.run(lambda: self.peer.connected and self.sw_if.link_up, what="connect")

    def exchange(self, frames: list[bytes]) -> list[bytes]:
        """Send from the peer, let the switch take them all, return what came back."""
        before = self.sw_if.counters.rx_packets
        assert self.peer.send(frames) == len(frames)
        self.run(lambda: self.sw_if.counters.rx_packets >= before + len(frames), what="rx")
        self.sw.run_once()
        return drain(self.peer)


@pytest.fixture
def rig(switch_rig: Callable[..., Any]) -> Rig:
    return functools.partial(switch_rig, Rig)()  # type: ignore[no-any-return]


def _echo(dst: bytes = SW_IP, kind: int = packet.ICMP_ECHO_REQUEST, seq: int = 1, *,
          sw_mac: bytes, ttl: int = 64) -> bytes:  # fmt: skip
    icmp = packet.icmp_echo(kind, 0x4242, seq, b"switch data")
    ip = packet.ipv4(PEER_IP, dst, packet.PROTO_ICMP, icmp, ttl=ttl, ident=seq)
    return packet.ethernet(sw_mac, mac(1), packet.ETH_P_IP, ip)


def test_answers_checks_and_counts(rig: Rig) -> None:
    sw_mac = rig.sw_if.mac
    # ARP for the second address, and echo to both: answered, checksums as scapy has them
    replies = rig.exchange([
        packet.arp_request(mac(1), PEER_IP, SW_IP2),
        _echo(sw_mac=sw_mac, seq=1),
        _echo(SW_IP2, sw_mac=sw_mac, seq=2, ttl=3),
    ])  # fmt: skip
    assert replies[0] == packet.arp_reply(sw_mac, SW_IP2, mac(1), PEER_IP)
    for reply, src, seq in zip(replies[1:], ("10.0.0.1", "10.8.0.1"), (1, 2), strict=True):
        p = Ether(reply)
        del p[IP].chksum
        del p[ICMP].chksum
        assert bytes(Ether(bytes(p))) == reply  # scapy computes the same checksums
        assert (p[IP].src, p[IP].dst, p[IP].ttl, p[ICMP].type, p[ICMP].seq) == (
            src, "10.0.0.2", 64, 0, seq
        )  # fmt: skip

    # not answered, each under its name
    bad_sum = bytearray(_echo(sw_mac=sw_mac))
    bad_sum[14 + 8] = 1  # TTL changed: the header checksum fails
    fragment = bytearray(_echo(sw_mac=sw_mac))
    fragment[14 + 6] = 0x20  # more fragments
    fragment[14 + 10 : 14 + 12] = b"\0\0"
    fragment[14 + 10 : 14 + 12] = packet.checksum(bytes(fragment[14:34])).to_bytes(2, "big")
    ihl4 = bytearray(_echo(sw_mac=sw_mac))
    ihl4[14] = 0x44
    before = rig.errors()
    out = rig.exchange([
        bytes(bad_sum), bytes(fragment), bytes(ihl4),
        _echo(packet.ip4("10.0.0.9"), sw_mac=sw_mac),
        packet.arp_request(mac(1), PEER_IP, packet.ip4("10.0.0.9")),
    ])  # fmt: skip
    # the echo to another host of the subnet is routed: the switch asks who has it
    assert out == [packet.arp_request(sw_mac, SW_IP, packet.ip4("10.0.0.9"))]
    after = rig.errors()
    grew = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert {k: v for k, v in grew.items() if v} == {
        "bad-checksum": 1, "unsupported": 1, "hdr-too-short": 1, "not-for-us": 1,
        "request-sent": 1,
    }  # fmt: skip


def test_echo_replies_and_arp_replies_are_for_the_switch(rig: Rig) -> None:
    sw_mac = rig.sw_if.mac
    out = rig.exchange([
        _echo(kind=packet.ICMP_ECHO_REPLY, seq=5, sw_mac=sw_mac),
        packet.arp_reply(mac(1), PEER_IP, sw_mac, SW_IP),  # nobody asked
    ])  # fmt: skip
    assert out == []
    assert rig.sw.ping_replies[-1][:3] == (0x4242, 5, PEER_IP)
    assert rig.sw.ping_replies[-1][4] == 64  # the reply's TTL
    assert rig.errors()["not-requested"] == 1
    sw_if_index = rig.sw_if.sw_if_index
    rig.sw.runtime.neighbors.request(sw_if_index, PEER_IP, rig.sw.now)
    rig.exchange([packet.arp_reply(mac(1), PEER_IP, sw_mac, SW_IP)])  # asked: learned
    assert rig.sw.runtime.neighbors.get(sw_if_index, PEER_IP) == mac(1)


def test_ip_mode_answers_bare_packets(switch_rig: Callable[..., Any]) -> None:
    r = switch_rig(SwitchRig, "master", "nodes-ip4-ip", n_buffers=1024, data_size=4096)
    s, peer = r.create_port(1, {"mode": "ip"}, bd=None, mode="ip", ring_size=256)
    r.sw.set_ip(s.name, SW_IP, 24)
    r.run(lambda: peer.connected and s.link_up, what="connect")
    request = _echo(sw_mac=bytes(6))[14:]
    assert peer.send([request]) == 1
    r.run(lambda: s.counters.tx_packets >= 1, what="reply")
    (reply,) = drain(peer)
    p = IP(reply)
    assert (p.src, p.dst, p[ICMP].type, bytes(p[ICMP].payload)) == (
        "10.0.0.1", "10.0.0.2", 0, b"switch data"
    )  # fmt: skip
    assert isinstance(peer, memif.Interface)


def test_one_packet_vectors_and_a_changed_address(rig: Rig) -> None:
    """Each kind of frame alone in its vector (the small path: no classification unless
    an echo reply needs it), and the answerer follows the interface's addresses and MAC
    when they change after traffic (it is kept per interface, not built per vector)."""
    sw_mac = rig.sw_if.mac
    (reply,) = rig.exchange([_echo(sw_mac=sw_mac, seq=1)])
    assert Ether(reply)[ICMP].type == 0
    assert rig.exchange([_echo(kind=packet.ICMP_ECHO_REPLY, seq=9, sw_mac=sw_mac)]) == []
    assert rig.sw.ping_replies[-1][:3] == (0x4242, 9, PEER_IP)
    (arp,) = rig.exchange([_echo(packet.ip4("10.0.0.9"), sw_mac=sw_mac)])
    assert arp == packet.arp_request(sw_mac, SW_IP, packet.ip4("10.0.0.9"))  # routed: glean

    new_ip = packet.ip4("10.0.0.7")
    rig.sw.set_ip(rig.sw_if.name, SW_IP, 24, delete=True)
    rig.sw.set_ip(rig.sw_if.name, new_ip, 24)
    rig.sw.set_mac(rig.sw_if.name, "02:00:00:00:00:77")
    new_mac = bytes.fromhex("020000000077")
    before = rig.errors().get("l3-mac-mismatch", 0)
    assert rig.exchange([_echo(sw_mac=sw_mac)]) == []  # to the old MAC: not for the switch
    assert rig.errors()["l3-mac-mismatch"] == before + 1
    (arp,) = rig.exchange([_echo(sw_mac=new_mac)])  # the old address: another host now
    assert arp == packet.arp_request(new_mac, new_ip, SW_IP)
    (arp,) = rig.exchange([packet.arp_request(mac(1), PEER_IP, new_ip)])
    assert arp == packet.arp_reply(new_mac, new_ip, mac(1), PEER_IP)
    (reply,) = rig.exchange([_echo(new_ip, sw_mac=new_mac, seq=2)])
    p = Ether(reply)
    assert (p.src, p[IP].src, p[ICMP].seq) == ("02:00:00:00:00:77", "10.0.0.7", 2)


def test_deleted_interfaces_leave_no_answerer(rig: Rig) -> None:
    """The nodes' answerers of a deleted interface go when the next one is built (its
    index is never reused): creating and deleting L3 interfaces does not grow them."""
    for i in (2, 3, 4):
        sw_if, peer = rig.create_port(
            i, {"mac": mac(i), "reconnect_interval": 0.1}, bd=None, ring_size=256
        )
        ours, theirs = packet.ip4(f"10.{i}.0.1"), packet.ip4(f"10.{i}.0.2")
        rig.sw.set_ip(sw_if.name, ours, 24)
        rig.run(lambda: peer.connected and sw_if.link_up, what="connect")  # noqa: B023
        icmp = packet.icmp_echo(packet.ICMP_ECHO_REQUEST, 7, 1, b"x")
        echo = packet.ipv4(theirs, ours, packet.PROTO_ICMP, icmp)
        frames = [
            packet.arp_request(mac(i), theirs, ours),
            packet.ethernet(sw_if.mac, mac(i), packet.ETH_P_IP, echo),
        ]
        assert peer.send(frames) == 2
        rig.run(lambda: sw_if.counters.rx_packets >= 2, what="rx")  # noqa: B023
        rig.sw.run_once()
        assert len(drain(peer)) == 2  # both answered: each node built an answerer
        rig.sw.delete_interface(sw_if.name)
        peer.delete()
    frames = [packet.arp_request(mac(1), PEER_IP, SW_IP), _echo(sw_mac=rig.sw_if.mac)]
    assert len(rig.exchange(frames)) == 2  # the first interface's answerers: built now
    for name in ("arp-input", "ip4-local"):
        node = rig.sw.graph.by_name[name]
        assert isinstance(node, LocalNode)
        assert set(node.answerers) == {rig.sw_if.sw_if_index}


def test_one_packet_vectors_answer_as_a_whole_vector(rig: Rig) -> None:
    """ethernet-input's, ip4-input's, ip4-lookup's and ip4-local's 1-packet paths (plain
    ints; answer_one, the reply written in place) and their vector paths give the same
    replies, errors and ping replies for every kind of frame."""
    sw_mac = rig.sw_if.mac
    bad_sum = bytearray(_echo(sw_mac=sw_mac, seq=3))
    bad_sum[14 + 8] = 1  # TTL changed: the header checksum fails
    ihl4 = bytearray(_echo(sw_mac=sw_mac, seq=4))
    ihl4[14] = 0x44
    long_echo = packet.ethernet(sw_mac, mac(1), packet.ETH_P_IP, packet.ipv4(
        PEER_IP, SW_IP2, packet.PROTO_ICMP,
        packet.icmp_echo(packet.ICMP_ECHO_REQUEST, 9, 5, bytes(range(256)) * 4),
    ))  # fmt: skip
    frames = [
        _echo(sw_mac=sw_mac, seq=1),
        _echo(SW_IP2, sw_mac=sw_mac, seq=2, ttl=3),
        bytes(bad_sum),
        bytes(ihl4),
        _echo(packet.ip4("192.0.2.9"), sw_mac=sw_mac),  # no route: unreachable
        _echo(kind=packet.ICMP_ECHO_REPLY, seq=6, sw_mac=sw_mac),
        long_echo,
        packet.arp_request(mac(1), PEER_IP, SW_IP),
        packet.ethernet(sw_mac, mac(1), 0x88B5, bytes(50)),  # neither ARP nor IPv4
        packet.ethernet(sw_mac, mac(1), packet.ETH_P_IP, b"")[:13],  # a runt
    ]

    def run(vectors: list[list[bytes]]) -> tuple[list[bytes], dict[str, int], list[Any]]:
        before, pings = rig.errors(), len(rig.sw.ping_replies)
        # sorted: in one vector arp-input's replies go before ip4-local's
        replies = sorted(reply for vector in vectors for reply in rig.exchange(vector))
        after = rig.errors()
        grew = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        return replies, grew, [r[:3] + r[4:] for r in rig.sw.ping_replies[pings:]]

    alone = run([[f] for f in frames])
    together = run([frames])
    assert alone == together
    assert len(alone[0]) == 5 and alone[1] == {
        "bad-checksum": 1, "hdr-too-short": 1, "dest-unreach-sent": 1, "unknown-ethertype": 1,
        "runt": 1,
    }  # fmt: skip
    (unreachable,) = [r for r in alone[0] if r[14 + 20] == 3]  # ICMP type 3
    p = Ether(unreachable)
    assert (p[IP].src, p[IP].dst, p[ICMP].code) == ("10.0.0.1", "10.0.0.2", 0)
    assert bytes(p[ICMP].payload)[16:20] == packet.ip4("192.0.2.9")  # the quoted header
    assert packet.arp_reply(sw_mac, SW_IP, mac(1), PEER_IP) in alone[0]
    (long_reply,) = [r for r in alone[0] if len(r) == len(long_echo)]
    assert Ether(long_reply)[ICMP].load == bytes(range(256)) * 4
