"""memifd routing between an Ethernet memif peer and a ``mode ip`` memif peer, in-process.

Real memif peers on a real switch: an echo request from the mode ip side (a bare IPv4
packet) reaches the Ethernet side with an Ethernet header (the resolved neighbour's MAC,
the switch's) and its TTL one less; the answer goes back stripped to bare IPv4.  The
first packet to an unresolved host is dropped while the switch asks for it (VPP's glean).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from helpers import SwitchRig, drain, mac

from memif import packet

ETH_IP, IP_IP = packet.ip4("10.61.0.2"), packet.ip4("10.62.0.2")


def test_mode_ip_peer_reaches_an_ethernet_peer_and_back(
    switch_rig: Callable[..., Any],
) -> None:
    r = switch_rig(SwitchRig, "master", "routing-memif", n_buffers=1024, data_size=2048)
    eth, eth_peer = r.create_port(1, {"mac": mac(1)}, bd=None, ring_size=256)
    ipm, ip_peer = r.create_port(2, {"mode": "ip"}, bd=None, mode="ip", ring_size=256)
    r.sw.set_ip(eth.name, packet.ip4("10.61.0.1"), 24)
    r.sw.set_ip(ipm.name, packet.ip4("10.62.0.1"), 24)
    r.run(lambda: eth_peer.connected and ip_peer.connected and eth.link_up and ipm.link_up,
          what="connect")  # fmt: skip

    def echo(seq: int, kind: int = packet.ICMP_ECHO_REQUEST, src: bytes = IP_IP,
             dst: bytes = ETH_IP) -> bytes:  # fmt: skip
        icmp = packet.icmp_echo(kind, 0x77, seq, b"routed" * 10)
        return packet.ipv4(src, dst, packet.PROTO_ICMP, icmp, ttl=20, ident=seq)

    # the first packet finds 10.61.0.2 unresolved: the Ethernet peer gets an ARP request
    assert ip_peer.send([echo(1)]) == 1
    r.run(lambda: eth.counters.tx_packets >= 1, what="the ARP request")
    (arp,) = drain(eth_peer)
    assert arp == packet.arp_request(eth.mac, packet.ip4("10.61.0.1"), ETH_IP)
    assert eth_peer.send([packet.arp_reply(mac(1), ETH_IP, eth.mac, packet.ip4("10.61.0.1"))])
    r.run(lambda: r.sw.neighbors.get(eth.sw_if_index, ETH_IP) == mac(1), what="learned")

    assert ip_peer.send([echo(2)]) == 1
    r.run(lambda: eth.counters.tx_packets >= 2, what="the routed echo")
    (frame,) = drain(eth_peer)
    assert frame[:14] == mac(1) + eth.mac + b"\x08\x00"
    sent = echo(2)
    assert frame[14 + 8] == 19 and packet.checksum(frame[14:34]) == 0  # TTL 20 -> 19
    assert frame[14 + 12 :] == sent[12:] and frame[14 : 14 + 8] == sent[:8]

    reply = echo(2, packet.ICMP_ECHO_REPLY, ETH_IP, IP_IP)
    assert eth_peer.send([packet.ethernet(eth.mac, mac(1), packet.ETH_P_IP, reply)]) == 1
    r.run(lambda: ipm.counters.tx_packets >= 1, what="the routed reply")
    (bare,) = drain(ip_peer)
    assert bare[8] == 19 and bare[12:] == reply[12:] and packet.checksum(bare[:20]) == 0
    assert len(bare) == len(reply)  # no Ethernet header on the mode ip side
