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
        assert _path(icmp) == ["memif-input", "ethernet-input", "ip4-input", "l2-output",
                               "memif1/0-output"]  # fmt: skip
        assert _at(icmp, "ip4-input") == "ICMP: 10.0.0.2 -> 10.0.0.1\nttl 64, length 84"
    finally:
        d.stop()
