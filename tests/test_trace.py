"""``show trace`` decoded per node with microsecond timestamps, as VPP prints it: a real
memifd, real memif peers, the trace read over the CLI socket (text and ``--json``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import Memifd, bridge_memifd, bridge_peers
from helpers import wait_until as _wait

import memif
from memif import packet

pytestmark = pytest.mark.slow

A, B = bytes.fromhex("02000000000a"), bytes.fromhex("02000000000b")
STAMP = re.compile(r"^\d\d:\d\d:\d\d:\d{6}$")


def _traced(d: Memifd, n: int) -> list[list[dict]]:
    """The first ``n`` traced packets, each as its ``[{time, node, trace}]``."""
    _wait(lambda: len(d.ok("show trace")["data"]) >= n, f"{n} traced packets")
    packets = [p["nodes"] for p in d.ok("show trace")["data"]]
    for nodes in packets:  # VPP's stamps, microseconds, never going back within a packet
        stamps = [x["time"] for x in nodes]
        assert all(STAMP.match(s) for s in stamps), stamps
        assert stamps == sorted(stamps)
    return packets


def _path(nodes: list[dict]) -> list[str]:
    return [x["node"] for x in nodes]


def _at(nodes: list[dict], node: str) -> str:
    return next(x["trace"] for x in nodes if x["node"] == node)


def test_bridge_trace_decodes_each_node_and_the_decision(tmp_path: Path) -> None:
    d = bridge_memifd(tmp_path)
    try:
        with bridge_peers(d, tmp_path) as (_, _, a, b):
            d.ok("trace add memif-input 10")
            d.ok("set interface mtu 100 memif2/0")
            sends = [
                (b, packet.ethernet(packet.BROADCAST, B, 0x88B5, bytes(50))),  # flood
                (a, packet.ethernet(B, A, packet.ETH_P_IP, bytes(50))),  # forward to memif2/0
                (a, packet.ethernet(A, A, 0x88B5, bytes(50))),  # back where it came: drop
                (a, packet.ethernet(B, A, 0x88B5, bytes(200))),  # over memif2/0's MTU
            ]
            for k, (peer, frame) in enumerate(sends, 1):
                assert peer.send([frame]) == 1
                _wait(lambda k=k: len(d.ok("show trace")["data"]) >= k, f"packet {k}")
        flood, fwd, filtered, big = _traced(d, 4)
        l2 = ["memif-input", "ethernet-input", "l2-learn", "l2-fwd"]
        assert _path(flood) == [*l2, "l2-flood", "l2-output", "memif1/0-output"]
        assert _at(flood, "memif-input").startswith("memif: memif2/0 sw_if_index 2 queue 0 slot ")
        assert _at(flood, "ethernet-input") == "0x88b5: 02:00:00:00:00:0b -> ff:ff:ff:ff:ff:ff"
        assert _at(flood, "l2-learn") == (
            "l2-learn: sw_if_index 2 dst ff:ff:ff:ff:ff:ff src 02:00:00:00:00:0b bd_index 1"
        )
        assert _at(flood, "l2-fwd").endswith("\nflood: broadcast/multicast")
        assert _at(flood, "l2-flood").endswith("\nto memif1/0")
        assert _at(flood, "memif1/0-output").startswith("memif1/0 sw_if_index 1 length 64\n")

        assert _path(fwd) == [*l2, "l2-output", "memif2/0-output"]
        assert _at(fwd, "ethernet-input") == "IP4: 02:00:00:00:00:0a -> 02:00:00:00:00:0b"
        assert _at(fwd, "l2-fwd") == (
            "l2-fwd: sw_if_index 1 dst 02:00:00:00:00:0b src 02:00:00:00:00:0a bd_index 1\n"
            "forward to memif2/0 (sw_if_index 2)"
        )
        assert _at(fwd, "l2-output").startswith("l2-output: sw_if_index 2 (memif2/0) dst ")

        assert _path(filtered) == [*l2, "error-drop"]
        assert _at(filtered, "l2-fwd").endswith(
            "\ndrop: filtered (destination is the interface the frame came in on)"
        )
        assert _at(filtered, "error-drop") == (
            "rx:memif1/0\nl2-fwd: filtered (destination is the interface the frame came in on)"
        )

        assert _path(big) == [*l2, "l2-output", "memif2/0-output", "error-drop"]
        assert _at(big, "memif2/0-output").startswith("memif2/0 sw_if_index 2 length 214\n")
        assert _at(big, "error-drop").endswith("\nmemif2/0-output: mtu-exceeded"
                                               " (frame longer than the interface's MTU"
                                               " (set interface mtu))")  # fmt: skip

        text = d.ok("show trace max 1")["output"].splitlines()
        assert text[1:4] == ["Packet 1", "", text[3]] and STAMP.match(text[3].split(": ")[0])
        assert text[3].endswith(": memif-input") and text[4].startswith("  memif: memif2/0")
    finally:
        d.stop()


def test_l3_trace_decodes_arp_and_ip4(tmp_path: Path) -> None:
    d = Memifd(tmp_path, [f"create memif socket id 1 filename {tmp_path / 'a.sock'}",
                          "create interface memif id 0 socket-id 1 master",
                          "set interface ip address memif1/0 10.0.0.1/24",
                          "set interface state memif1/0 up"]).wait_ready()  # fmt: skip
    me, peer_ip = packet.ip4("10.0.0.1"), packet.ip4("10.0.0.2")
    try:
        with memif.Socket(str(tmp_path / "a.sock")) as sa:
            a = sa.create_interface(role="client", id=0)
            memif.testing.drive(sa, until=lambda: a.connected, timeout=15)
            d.wait_up("memif1/0")
            d.ok("trace add memif-input 2")
            switch_mac = bytes.fromhex(d.interfaces()["memif1/0"]["mac"].replace(":", ""))
            assert a.send([packet.arp_request(A, peer_ip, me)]) == 1
            _wait(lambda: len(d.ok("show trace")["data"]) >= 1, "the ARP request")
            echo = packet.icmp_echo(packet.ICMP_ECHO_REQUEST, 7, 1, bytes(56))
            ping = packet.ethernet(
                switch_mac, A, packet.ETH_P_IP, packet.ipv4(peer_ip, me, 1, echo)
            )
            assert a.send([ping]) == 1
            arp, icmp = _traced(d, 2)
        assert _path(arp) == ["memif-input", "ethernet-input", "arp-input", "l2-output",
                              "memif1/0-output"]  # fmt: skip
        assert _at(arp, "arp-input") == (
            "arp-input: request: who-has 10.0.0.1 tell 10.0.0.2 (02:00:00:00:00:0a)"
        )
        mac = d.interfaces()["memif1/0"]["mac"]
        assert _at(arp, "memif1/0-output").endswith(f"\nARP: {mac} -> 02:00:00:00:00:0a")
        assert _path(icmp) == ["memif-input", "ethernet-input", "ip4-input", "ip4-lookup",
                               "ip4-local", "l2-output", "memif1/0-output"]  # fmt: skip
        header = "ICMP: 10.0.0.2 -> 10.0.0.1\nttl 64, length 84, checksum 0x"
        assert _at(icmp, "ip4-input").startswith(header)
        assert _at(icmp, "ip4-lookup").startswith("fib 0 adj-idx 2 10.0.0.1/32: dpo-receive\n")
        assert _at(icmp, "ip4-local").startswith(header)
        # the echo reply written over the request, as it leaves
        assert f"\nIP4: {mac} -> 02:00:00:00:00:0a" in _at(icmp, "memif1/0-output")
    finally:
        d.stop()


NEXT_HOP, FAR = packet.ip4("10.2.0.2"), packet.ip4("10.3.0.5")
ROUTED = ["memif-input", "ethernet-input", "ip4-input", "ip4-lookup"]


def test_routed_trace_decodes_lookup_arp_glean_rewrite_and_icmp_error(tmp_path: Path) -> None:
    """memif1/0 10.1.0.1/24 and memif2/0 10.2.0.1/24, 10.3.0.0/24 via 10.2.0.2: each
    routing node's line says the route matched, the adjacency, and what it does."""
    d = Memifd(tmp_path, [f"create memif socket id 1 filename {tmp_path / 'a.sock'}",
                          f"create memif socket id 2 filename {tmp_path / 'b.sock'}",
                          "create interface memif id 0 socket-id 1 master",
                          "create interface memif id 0 socket-id 2 master",
                          "set interface ip address memif1/0 10.1.0.1/24",
                          "set interface ip address memif2/0 10.2.0.1/24",
                          "ip route add 10.3.0.0/24 via 10.2.0.2 memif2/0",
                          "set interface state memif1/0 up",
                          "set interface state memif2/0 up"]).wait_ready()  # fmt: skip
    host_a, gw1, gw2 = packet.ip4("10.1.0.2"), packet.ip4("10.1.0.1"), packet.ip4("10.2.0.1")
    try:
        with bridge_peers(d, tmp_path) as (_, _, a, b):
            macs = {n: i["mac"] for n, i in d.interfaces().items() if n.startswith("memif")}
            mac1, mac2 = (bytes.fromhex(macs[n].replace(":", "")) for n in ("memif1/0", "memif2/0"))

            def send(peer: memif.Interface, frame: bytes, k: int) -> None:
                assert peer.send([frame]) == 1
                _wait(lambda: len(d.ok("show trace")["data"]) >= k, f"traced packet {k}")

            def to(dst: bytes, ttl: int = 64) -> bytes:
                echo = packet.icmp_echo(packet.ICMP_ECHO_REQUEST, 9, ttl, bytes(20))
                ip = packet.ipv4(host_a, dst, packet.PROTO_ICMP, echo, ttl=ttl)
                return packet.ethernet(mac1, A, packet.ETH_P_IP, ip)

            d.ok("trace add memif-input 10")
            send(a, to(FAR), 1)  # the next hop unresolved: ip4-arp asks for it
            send(b, packet.arp_reply(B, NEXT_HOP, mac2, gw2), 2)  # the answer, learned
            _wait(lambda: "10.2.0.2" in d.ok("show ip neighbors")["output"], "the neighbour")
            send(a, to(FAR), 3)  # resolved: rewritten out of memif2/0
            send(a, to(packet.ip4("10.2.0.7")), 4)  # on the connected subnet: glean
            send(a, to(FAR, ttl=1), 5)  # TTL runs out: time exceeded
            send(a, to(packet.ip4("10.9.9.9")), 6)  # no route: unreachable
        arp, _, fwd, glean, expired, unreachable = _traced(d, 6)
        gw1_s, gw2_s = packet.ip4_str(gw1), packet.ip4_str(gw2)

        assert _path(arp) == [*ROUTED, "ip4-arp", "l2-output", "memif2/0-output"]
        assert _at(arp, "ip4-input").startswith("ICMP: 10.1.0.2 -> 10.3.0.5\nttl 64, length 48")
        lookup = _at(arp, "ip4-lookup")
        assert re.fullmatch(r"fib 0 adj-idx \d+ 10.3.0.0/24: arp-ipv4: via 10.2.0.2 memif2/0",
                            lookup.split("\n")[0]), lookup  # fmt: skip
        assert _at(arp, "ip4-arp") == (
            f"ip4-arp: who-has 10.2.0.2 on memif2/0 from {gw2_s}: request sent"
        )
        assert _at(arp, "memif2/0-output").endswith(
            f"\nARP: {macs['memif2/0']} -> ff:ff:ff:ff:ff:ff"
        )

        assert _path(fwd) == [*ROUTED, "ip4-rewrite", "l2-output", "memif2/0-output"]
        rewrite = (B + mac2 + b"\x08\x00").hex()
        via = f"ipv4 via 10.2.0.2 memif2/0: {rewrite}"
        hit = re.fullmatch(rf"fib 0 adj-idx (\d+) 10.3.0.0/24: {via}",
                           _at(fwd, "ip4-lookup").split("\n")[0])  # fmt: skip
        assert hit is not None, _at(fwd, "ip4-lookup")
        lines = _at(fwd, "ip4-rewrite").split("\n")  # the adjacency ip4-lookup chose
        assert lines[0] == f"tx_sw_if_index 2 adj-idx {hit[1]} : {via}"
        assert lines[1] == f"rewrite: dst 02:00:00:00:00:0b src {macs['memif2/0']}, ttl 64 -> 63"
        assert lines[2:4] == ["ICMP: 10.1.0.2 -> 10.3.0.5", lines[3]]  # as received: ttl 64
        assert lines[3].startswith("ttl 64, length 48, checksum 0x")
        out = _at(fwd, "memif2/0-output").split("\n")  # and as it left: the rewrite done
        assert out[1] == f"IP4: {macs['memif2/0']} -> 02:00:00:00:00:0b"

        assert _path(glean) == [*ROUTED, "ip4-glean", "l2-output", "memif2/0-output"]
        assert re.fullmatch(r"fib 0 adj-idx \d+ 10.2.0.0/24: ipv4-glean: memif2/0",
                            _at(glean, "ip4-lookup").split("\n")[0])  # fmt: skip
        assert _at(glean, "ip4-glean") == (
            f"ip4-glean: who-has 10.2.0.7 on memif2/0 from {gw2_s}: request sent"
        )

        assert _path(expired) == [*ROUTED, "ip4-rewrite", "ip4-icmp-error", "l2-output",
                                  "memif1/0-output"]  # fmt: skip
        assert _at(expired, "ip4-rewrite").split("\n")[1] == (
            "ttl 1 expires: to ip4-icmp-error (time exceeded)"
        )
        icmp = _at(expired, "ip4-icmp-error").split("\n")
        assert icmp[0] == (
            "ip4-icmp-error: time-exceeded (ttl exceeded in transit) to 10.1.0.2"
            f" from {gw1_s} out memif1/0: sent"
        )
        assert icmp[1] == "ICMP: 10.1.0.2 -> 10.3.0.5"  # the packet answered
        assert _at(expired, "memif1/0-output").split("\n")[1] == (
            f"IP4: {macs['memif1/0']} -> 02:00:00:00:00:0a"
        )

        assert _path(unreachable) == [*ROUTED, "ip4-icmp-error", "l2-output", "memif1/0-output"]
        assert _at(unreachable, "ip4-lookup").startswith(
            "fib 0 no route: to ip4-icmp-error (destination unreachable)\n"
            "ICMP: 10.1.0.2 -> 10.9.9.9"
        )
        assert _at(unreachable, "ip4-icmp-error").startswith(
            "ip4-icmp-error: destination-unreachable (network unreachable) to 10.1.0.2"
        )
    finally:
        d.stop()


def test_bvi_trace_decodes_both_ways_through_the_loopback(tmp_path: Path) -> None:
    """A bridge domain member pings its BVI: the request crosses loop0-output up to L3,
    the reply crosses it down into the domain, each line saying which way."""
    d = Memifd(tmp_path, [f"create memif socket id 1 filename {tmp_path / 'a.sock'}",
                          "create interface memif id 0 socket-id 1 master",
                          "create bridge-domain 1", "set interface l2 bridge memif1/0 1",
                          "set interface state memif1/0 up", "create loopback interface",
                          "set interface l2 bridge loop0 1 bvi",
                          "set interface ip address loop0 10.1.0.1/24",
                          "set interface state loop0 up"]).wait_ready()  # fmt: skip
    try:
        with memif.Socket(str(tmp_path / "a.sock")) as sa:
            a = sa.create_interface(role="client", id=0)
            memif.testing.drive(sa, until=lambda: a.connected, timeout=15)
            d.wait_up("memif1/0")
            loop_mac = d.interfaces()["loop0"]["mac"]
            d.ok("trace add memif-input 1")
            echo = packet.icmp_echo(packet.ICMP_ECHO_REQUEST, 3, 1, bytes(20))
            ip = packet.ipv4(packet.ip4("10.1.0.2"), packet.ip4("10.1.0.1"), 1, echo)
            gw = bytes.fromhex(loop_mac.replace(":", ""))
            assert a.send([packet.ethernet(gw, A, packet.ETH_P_IP, ip)]) == 1
            (ping,) = _traced(d, 1)
        l2 = ["ethernet-input", "l2-learn", "l2-fwd", "l2-output"]
        assert _path(ping) == ["memif-input", *l2, "loop0-output", "ip4-input", "ip4-lookup",
                               "ip4-local", "l2-output", "loop0-output", *l2,
                               "memif1/0-output"]  # fmt: skip
        up, down = (x["trace"] for x in ping if x["node"] == "loop0-output")
        assert up.startswith(f"loop0 sw_if_index 2 length 62\nIP4: 02:00:00:00:00:0a -> {loop_mac}")
        assert up.endswith("\nbvi: from bridge domain 1 up to L3: ip4-input")
        assert down.startswith(
            f"loop0 sw_if_index 2 length 62\nIP4: {loop_mac} -> 02:00:00:00:00:0a"
        )
        assert down.endswith("\nbvi: from L3 into bridge domain 1")
        assert _at(ping, "ip4-input").startswith("ICMP: 10.1.0.2 -> 10.1.0.1\nttl 64")
    finally:
        d.stop()
