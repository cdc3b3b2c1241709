"""A hostile peer against memifd's routing, and the routing CLI's answers to bad input.

The peer is a real memif interface on a real switch.  Sending to thousands of unresolved
addresses cannot raise the ARP request rate past its bound; ARP replies nobody asked for
are refused however many come; replies to the switch's own requests cannot grow the
neighbour table past its per-interface limit; TTL-1 floods get a bounded number of ICMP
errors.  Every refusal is counted.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import pytest
from clocks import StoppableClock
from helpers import SwitchRig, drain, mac

from memif import packet
from memif.daemon import Context, execute
from memif.vswitch.nodes_ip4_arp import ARP_BURST
from memif.vswitch.nodes_ip4_icmp import ICMP_BURST, ICMP_RATE

SW_IP, PEER_IP = packet.ip4("10.1.0.1"), packet.ip4("10.1.0.2")


class Rig(SwitchRig):
    """A switch with one L3 memif (10.1.0.1/16) and its peer."""

    def __init__(self, tmp_path: Any) -> None:
        #: the switch's clock: held still where a test's bound depends on it
        self.clock = StoppableClock()
        super().__init__(
            tmp_path, "master", "routing-hostile", n_buffers=4096, data_size=2048,
            clock=self.clock,
        )
        self.sw_if, self.peer = self.create_port(
            1, {"mac": mac(1), "reconnect_interval": 0.1}, bd=None, ring_size=1024
        )
        self.sw.set_ip(self.sw_if.name, SW_IP, 16)
        self.run(lambda: self.peer.connected and self.sw_if.link_up, what="connect")

    def flood(self, frames: list[bytes]) -> list[bytes]:
        """Send every frame (in bursts the ring takes), turning the switch; what came back."""
        got: list[bytes] = []
        for k in range(0, len(frames), 256):
            burst = frames[k : k + 256]
            before = self.sw_if.counters.rx_packets
            assert self.peer.send(burst) == len(burst)
            self.run(lambda: self.sw_if.counters.rx_packets >= before + len(burst), what="rx")  # noqa: B023
            self.sw.run_once()
            got += drain(self.peer)
        return got


@pytest.fixture
def rig(switch_rig: Callable[..., Any]) -> Rig:
    return functools.partial(switch_rig, Rig)()  # type: ignore[no-any-return]


def _to(dst: bytes, sw_mac: bytes, ttl: int = 64) -> bytes:
    ip = packet.ipv4(PEER_IP, dst, packet.PROTO_UDP, b"\0" * 8 + b"flood", ttl=ttl)
    return packet.ethernet(sw_mac, mac(1), packet.ETH_P_IP, ip)


@pytest.mark.slow  # attacks
def test_unresolved_flood_gets_a_bounded_arp_rate_and_table(rig: Rig) -> None:
    sw_mac, sw = rig.sw_if.mac, rig.sw
    sw.neighbors.per_interface = 64
    targets = [packet.ip4(f"10.1.{k >> 8}.{k & 255}") for k in range(10, 4010)]
    # the switch's time stands still while the peer floods (however long the machine
    # takes): the request rate's bound is its burst alone, and the addresses asked for
    # are asked for "this second" when they come again
    rig.clock.stop()
    got = rig.flood([_to(t, sw_mac) for t in targets])
    requests = [f for f in got if f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x01"]
    assert len(requests) == len(got)  # nothing else comes back
    assert 0 < len(requests) <= 2 * ARP_BURST, len(requests)  # ip4-glean's and ip4-arp's
    errors = rig.errors()
    assert errors["request-sent"] == len(requests)
    assert errors["throttled"] == len(targets) - len(requests)

    # the same addresses again at once: each was asked for this second, none again
    assert rig.flood([_to(t, sw_mac) for t in targets[:100]]) == []
    rig.clock.run()

    # the peer answers every request (solicited: learned up to the interface's limit)
    # and floods replies for addresses nobody asked for (refused, counted)
    asked = [f[38:42] for f in requests]
    replies = [packet.arp_reply(mac(9), ip, sw_mac, SW_IP) for ip in asked]
    unasked = [packet.arp_reply(mac(9), packet.ip4(f"10.1.200.{k}"), sw_mac, SW_IP)
               for k in range(1, 200)]  # fmt: skip
    rig.flood(replies + unasked)
    assert len(sw.neighbors) == min(len(asked), 64)
    errors = rig.errors()
    assert errors["not-requested"] == len(unasked)
    assert errors.get("neighbor-limit", 0) == max(0, len(asked) - 64)
    routes = sw.runtime.ip4_routes.paths
    assert len(routes) <= 20 + 64  # the special and interface routes, a /32 per neighbour


@pytest.mark.slow
def test_ttl_one_flood_gets_a_bounded_number_of_icmp_errors(rig: Rig) -> None:
    sw_mac = rig.sw_if.mac
    sw = rig.sw
    sw.ip_route(packet.ip4("10.50.0.0"), 16, packet.ip4("10.1.0.2"))
    sw.ip_neighbor(rig.sw_if.name, packet.ip4("10.1.0.2"), "02:00:00:00:00:01", static=True)
    t0 = time.monotonic()
    got = rig.flood([_to(packet.ip4("10.50.0.9"), sw_mac, ttl=1) for _ in range(3000)])
    elapsed = time.monotonic() - t0
    assert 0 < len(got) <= ICMP_BURST + ICMP_RATE * elapsed
    assert all(f[14 + 20] == 11 for f in got)  # time exceeded
    errors = rig.errors()
    assert errors["ttl-expire-sent"] == len(got)
    assert errors["rate-limited"] == 3000 - len(got)
    # an ICMP error is never answered with one
    unreachable = packet.ipv4(PEER_IP, packet.ip4("192.0.2.1"), packet.PROTO_ICMP,
                              bytes([3, 0, 0, 0]) + bytes(4) + bytes(28))  # fmt: skip
    before = rig.errors().get("drop", 0)  # (refused before the rate limit is asked)
    rig.flood([packet.ethernet(sw_mac, mac(1), packet.ETH_P_IP, unreachable)])
    assert rig.errors()["drop"] == before + 1


def test_icmp_error_to_a_long_packet_quotes_its_header_and_8_bytes(rig: Rig) -> None:
    sw_mac, sw = rig.sw_if.mac, rig.sw
    sw.ip_route(packet.ip4("10.50.0.0"), 16, packet.ip4("10.1.0.2"))
    sw.ip_neighbor(rig.sw_if.name, packet.ip4("10.1.0.2"), "02:00:00:00:00:01", static=True)
    payload = bytes(range(256)) * 6  # 1536 bytes past the UDP header
    ip = packet.ipv4(PEER_IP, packet.ip4("10.50.0.9"), packet.PROTO_UDP, payload, ttl=1)
    got = rig.flood([packet.ethernet(sw_mac, mac(1), packet.ETH_P_IP, ip)])
    assert len(got) == 1 and rig.errors()["ttl-expire-sent"] == 1
    error = got[0][14:]
    assert error[20] == 11  # time exceeded, from the switch's address to the sender
    assert error[12:16] == SW_IP and error[16:20] == PEER_IP
    assert int.from_bytes(error[2:4], "big") == 20 + 8 + 20 + 8
    assert error[28:] == ip[:28]  # the header and 8 bytes, no more


def test_routing_commands_answer_bad_input_in_one_line(rig: Rig) -> None:
    ctx = Context(rig.sw)
    name = rig.sw_if.name

    def fails(line: str) -> str:
        reply = execute(ctx, line)
        assert not reply.ok and "\n" not in reply.output and "Traceback" not in reply.output
        return reply.output

    assert "expected a.b.c.d/len" in fails("ip route add 10.2.0.0 via 10.1.0.2")
    assert "is on no connected subnet" in fails("ip route add 10.2.0.0/16 via 10.7.0.2")
    assert "unknown interface" in fails("ip route add 10.2.0.0/16 via nosuch0")
    assert "no route 10.2.0.0/16" in fails("ip route del 10.2.0.0/16")
    assert "missing" in fails(f"set ip neighbor {name} 10.1.0.9")
    assert "six hex pairs" in fails(f"set ip neighbor {name} 10.1.0.9 zz:00")
    assert "no neighbor 10.1.0.9" in fails(f"set ip neighbor del {name} 10.1.0.9")
    assert "bad prefix" in fails("show ip fib 10.1.0/x")

    assert execute(ctx, "ip route add 10.2.0.7/16 via 10.1.0.2").ok  # host bits cleared
    assert execute(ctx, f"set ip neighbor {name} 10.1.0.2 02:00:00:00:00:01 static").ok
    fib = execute(ctx, "show ip fib 10.2.3.4")
    assert fib.data[0]["prefix"] == "10.2.0.0/16" and fib.data[0]["mac"] == "02:00:00:00:00:01"
    rewrite = "020000000001" + rig.sw_if.mac.hex() + "0800"  # the neighbour's, ours, IPv4
    assert f"[@5]: ipv4 via 10.1.0.2 memif1/1: {rewrite}" in fib.output
    assert "src:cli" in fib.output and fib.data[0]["rewrite"] == rewrite
    neighbors = execute(ctx, "show ip neighbors")
    assert neighbors.data[0]["flags"] == "S" and "Flags" in neighbors.output.splitlines()[0]
    assert execute(ctx, f"show ip neighbors {name}").data == neighbors.data
    assert "unknown interface" in fails("show ip neighbors nosuch0")
    rig.sw.neighbors.age(rig.sw.now + 10**6)  # static: never ages
    assert len(rig.sw.neighbors) == 1
    assert execute(ctx, f"set ip neighbor del {name} 10.1.0.2").ok
    fib = execute(ctx, "show ip fib 10.2.3.4")  # incomplete again
    assert fib.data[0]["mac"] is None and "arp-ipv4: via 10.1.0.2 memif1/1" in fib.output
    assert execute(ctx, "ip route del 10.2.0.0/16").ok
    assert execute(ctx, "show ip fib 10.2.3.4").output == "no route"
    assert execute(ctx, f"set ip neighbor {name} 10.1.0.3 02:00:00:00:00:03").ok
    assert execute(ctx, "show ip fib 10.1.0.3/32").data[0]["source"] == "adj"
    assert execute(ctx, f"set interface ip address del {name} 10.1.0.1/16").ok
    assert execute(ctx, "show ip fib 10.1.0.3/32").output == "no route"  # the subnet went
    assert execute(ctx, f"set interface ip address {name} 10.1.0.1/16").ok
    assert execute(ctx, "show ip fib 10.1.0.3/32").data[0]["mac"] == "02:00:00:00:00:03"
    rig.sw.delete_interface(name)  # its routes and adjacencies go with it
    assert not any(
        owner == rig.sw_if.sw_if_index
        for paths in rig.sw.runtime.ip4_routes.paths.values()
        for _, owner in paths
    )
