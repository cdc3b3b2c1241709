"""Loopback interfaces and the BVI: a bridge domain's way in and out of L3.

In-process (:class:`test_vswitch.Rig`: the switch and real memif peers in one thread)
for exact frames and counters; memifd as a process with the project's tools as the
bridge members (``memif ping``, ``memif responder``) for the CLI and the whole path:
a member pings the BVI's address, memifd pings a member from the BVI, and deleting the
loopback leaves neither the domain nor the MAC table pointing at it.  Hostile: a member
flooding ARP at the BVI gets one answer per request and grows no table.
"""

from __future__ import annotations

import functools
import json
import os

import pytest
from helpers import ENV, memif_argv
from test_routing_bvi import bvi_lines, memif_ports
from test_vswitch import Rig

from memif import packet
from memif.testing import unique_name

BVI_IP, MEMBER_IP = packet.ip4("10.1.0.1"), packet.ip4("10.1.0.2")
BVI_MAC = bytes.fromhex("dead00000000")  # loop0's: VPP's default loopback MAC


@pytest.fixture
def rig(switch_rig):
    return functools.partial(switch_rig, Rig)


def bvi_rig(rig, members: int = 2, up: bool = True):
    """Members memif1/1.. in bridge domain 1 with loop0 as its BVI, 10.1.0.1/24."""
    r = rig()
    ports = [r.add() for _ in range(members)]
    r.connect()
    loop = r.sw.create_loopback()
    r.sw.set_bridge(loop.name, 1, bvi=True)
    r.sw.set_ip(loop.name, BVI_IP, 24)
    r.sw.set_state(loop.name, up)
    return r, loop, ports


def echo_seq(frame: bytes) -> int:
    """The sequence number of an ICMP echo in an Ethernet frame."""
    echo = packet.parse_icmp_echo(packet.parse(frame).l4)
    assert echo is not None
    return echo[3]


def echo_request(dst_mac: bytes, src_mac: bytes, seq: int) -> bytes:
    echo = packet.icmp_echo(packet.ICMP_ECHO_REQUEST, 0x77, seq, b"bvi")
    ip = packet.ipv4(MEMBER_IP, BVI_IP, packet.PROTO_ICMP, echo)
    return packet.ethernet(dst_mac, src_mac, packet.ETH_P_IP, ip)


# ---------------------------------------------------------------------- in-process
def test_bvi_answers_arp_and_echo_from_a_member_and_sends_through_the_bridge(rig):
    r, loop, (a, b) = bvi_rig(rig)
    assert loop.name == "loop0" and loop.mac == BVI_MAC and loop.link_up
    out = r.exchange((a, [packet.arp_request(a.mac, MEMBER_IP, BVI_IP)]))
    (reply,) = out[a]
    p = packet.parse(reply)
    assert (p.dst, p.src) == (a.mac, BVI_MAC)
    assert p.arp == (packet.ARP_REPLY, BVI_MAC, BVI_IP, a.mac, MEMBER_IP)
    (flooded,) = out[b]  # the broadcast went to the other member too
    assert packet.parse(flooded).arp[0] == packet.ARP_REQUEST

    out = r.exchange((a, [echo_request(BVI_MAC, a.mac, seq) for seq in range(3)]))
    assert out[b] == []  # the BVI's MAC is a static entry: unicast to it, not flooded
    assert [echo_seq(f) for f in out[a]] == [0, 1, 2]
    assert all(f[:12] == a.mac + BVI_MAC for f in out[a])
    c = loop.counters
    assert (c.rx_packets, c.tx_packets) == (4, 4)
    assert r.errors() == {}


def test_frames_not_for_the_bvi_are_dropped_with_vpp_counters(rig):
    r, loop, (a, b) = bvi_rig(rig)
    unknown = echo_request(bytes.fromhex("020000009999"), a.mac, 1)  # flooded: b and the BVI
    other = packet.ethernet(BVI_MAC, a.mac, 0x88B5, b"x" * 50)  # to the BVI, not ARP or IPv4
    out = r.exchange((a, [unknown, other]))
    assert out[b] == [unknown]
    assert r.errors() == {"bvi-l3-mac-mismatch": 1, "bvi-ethertype": 1}
    node = r.sw.graph.by_name["loop0-output"]
    assert dict(node.error_counts) == {"bvi-l3-mac-mismatch": 1, "bvi-ethertype": 1}


def test_an_admin_down_bvi_gets_nothing_and_answers_nothing(rig):
    r, loop, (a, b) = bvi_rig(rig, up=False)
    out = r.exchange((a, [packet.arp_request(a.mac, MEMBER_IP, BVI_IP)]))
    assert out[a] == [] and len(out[b]) == 1  # flooded to b only
    out = r.exchange((a, [echo_request(BVI_MAC, a.mac, 1)]))
    assert out[a] == [] and r.errors() == {"interface-down": 1}
    assert loop.counters.rx_packets == 0


def test_a_member_spoofing_the_bvi_mac_does_not_take_its_entry(rig):
    r, loop, (a, b) = bvi_rig(rig)
    spoof = packet.ethernet(b.mac, BVI_MAC, 0x88B5, b"spoof".ljust(50, b"."))
    r.exchange((a, [spoof]))
    key = (1 << 48) | int.from_bytes(BVI_MAC, "big")
    entry = r.sw.fib.entries[key]
    assert entry.static and entry.sw_if_index == loop.sw_if_index
    out = r.exchange((a, [echo_request(BVI_MAC, a.mac, 9)]))
    assert [echo_seq(f) for f in out[a]] == [9]


def test_the_bvi_static_entry_follows_its_mac_and_membership(rig):
    r, loop, (a, _) = bvi_rig(rig)

    def bvi_entries() -> list[tuple[int, int]]:
        return [(k, e.sw_if_index) for k, e in r.sw.fib.entries.items() if e.static]

    new = bytes.fromhex("02aa00000001")
    r.sw.set_mac(loop.name, "02:aa:00:00:00:01")
    assert bvi_entries() == [((1 << 48) | int.from_bytes(new, "big"), loop.sw_if_index)]
    out = r.exchange((a, [echo_request(new, a.mac, 5)]))
    assert out[a][0][:12] == a.mac + new
    assert r.sw.tables.bd_bvi == {1: loop.sw_if_index}

    r.sw.set_l3(loop.name)  # out of the domain: no longer its BVI
    assert bvi_entries() == [] and r.sw.tables.bd_bvi == {} and not loop.bvi
    r.sw.set_bridge(loop.name, 1, bvi=True)
    r.sw.delete_interface(loop.name, "loopback")
    assert bvi_entries() == [] and r.sw.tables.bd_bvi == {}
    assert r.sw.tables.bds[1].members == [a.sw.sw_if_index, r.ports[1].sw.sw_if_index]
    assert "loop0-output" not in r.sw.graph.by_name


def test_bvi_rules_one_per_domain_and_only_loopbacks(rig):
    from memif.vswitch.switch import SwitchError

    r, loop, (a, _) = bvi_rig(rig)
    other = r.sw.create_loopback()
    assert other.name == "loop1"
    with pytest.raises(SwitchError, match="bridge domain 1 already has a BVI: loop0"):
        r.sw.set_bridge(other.name, 1, bvi=True)
    with pytest.raises(SwitchError, match="only a loopback can"):
        r.sw.set_bridge(a.name, 2, bvi=True)
    with pytest.raises(SwitchError, match="loopback instance 0 is in use"):
        r.sw.create_loopback(instance=0)
    r.sw.set_bridge(loop.name, 1, bvi=True)  # again: no change, no error
    assert r.sw.tables.bd_bvi == {1: loop.sw_if_index}


def test_a_plain_loopback_address_is_reached_through_the_router(rig):
    """loop0 alone (an L3 interface, the router's own address, as VPP users give one): a
    peer on another interface pings it through the switch."""
    r = rig()
    a = r.add(bd=None)
    r.connect()
    r.sw.set_ip(a.name, packet.ip4("10.5.0.1"), 24)
    loop = r.sw.create_loopback()
    r.sw.set_ip(loop.name, packet.ip4("10.9.9.1"), 32)
    r.sw.set_state(loop.name, True)
    echo = packet.icmp_echo(packet.ICMP_ECHO_REQUEST, 3, 4, b"to the loopback")
    ip = packet.ipv4(packet.ip4("10.5.0.2"), packet.ip4("10.9.9.1"), packet.PROTO_ICMP, echo)
    out = r.exchange((a, [packet.ethernet(a.sw.mac, a.mac, packet.ETH_P_IP, ip)]))
    replies = [f for f in out[a] if packet.parse(f).ethertype == packet.ETH_P_IP]
    if not replies:  # the switch resolved 10.5.0.2 first
        r.exchange((a, [packet.arp_reply(a.mac, packet.ip4("10.5.0.2"), a.sw.mac,
                                         packet.ip4("10.5.0.1"))]))  # fmt: skip
        replies = r.exchange((a, [packet.ethernet(a.sw.mac, a.mac, packet.ETH_P_IP, ip)]))[a]
    (reply,) = replies
    p = packet.parse(reply)
    assert (p.ip_src, p.ip_dst) == (packet.ip4("10.9.9.1"), packet.ip4("10.5.0.2"))
    assert packet.parse_icmp_echo(p.l4)[:4] == (packet.ICMP_ECHO_REPLY, 0, 3, 4)


def test_a_loopback_in_a_domain_without_bvi_takes_nothing_from_it(rig):
    r = rig()
    a, b = r.add(), r.add()
    r.connect()
    loop = r.sw.create_loopback()
    r.sw.set_bridge(loop.name, 1)
    r.sw.set_state(loop.name, True)
    out = r.exchange((a, [packet.arp_request(a.mac, MEMBER_IP, BVI_IP)]))  # flooded
    assert len(out[b]) == 1 and out[a] == []
    assert r.errors() == {"not-bvi": 1}
    key = (1 << 48) | int.from_bytes(a.mac, "big")
    assert r.sw.fib.entries[key].sw_if_index == a.sw.sw_if_index  # a stays where it is


@pytest.mark.slow
def test_a_member_flooding_arp_at_the_bvi_grows_nothing(rig):
    """Hostile member: thousands of ARP requests for the BVI from forged senders, and
    unsolicited ARP replies: one answer per request, no neighbour learned, every buffer
    back in the pool, the MAC table held at the member's learn limit."""
    r, loop, (a, _b) = bvi_rig(rig)
    free = r.sw.pool.n_free
    n = 3000
    requests = [
        packet.arp_request(
            bytes([2, 1, 0, 0, i >> 8, i & 255]), packet.ip4(f"10.1.{i >> 8}.{i & 255}"), BVI_IP
        )
        for i in range(n)
    ]
    replies = [
        packet.arp_reply(bytes([2, 2, 0, 0, i >> 8, i & 255]), packet.ip4(f"10.1.9.{i & 255}"),
                         BVI_MAC, BVI_IP)
        for i in range(n)
    ]  # fmt: skip
    answered = 0
    for k in range(0, n, 200):
        out = r.exchange((a, requests[k : k + 200] + replies[k : k + 200]))
        answered += len(out[a])
    assert answered == n
    assert len(r.sw.neighbors) == 0
    errors = r.errors()
    assert errors["not-requested"] == n
    assert len(r.sw.fib) <= r.sw.fib.interface_limit(a.sw.sw_if_index) + 1  # + the BVI's
    r.run(lambda: r.sw.pool.n_free == free, what="every buffer back")


# ---------------------------------------------------------------------- memifd
def run_memif(*args: str, timeout: float = 30):
    import subprocess

    return subprocess.run(
        memif_argv(*args), env=ENV, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.slow
def test_loopback_cli_and_bvi_through_memifd_with_memif_tools(start) -> None:
    import subprocess

    a, b = unique_name("bvi-a"), unique_name("bvi-b")
    d = start(
        [
            *memif_ports(a, b, bds=(1, 1)),
            *bvi_lines(1, "10.1.0.1/24"),
        ]
    )
    r = d.ctl("create", "loopback", "interface", "mac", "02:00:00:00:0e:05", "instance", "5")
    assert (r.returncode, r.stdout.strip()) == (0, "loop5")
    assert "loop5" in d.interfaces() and d.interfaces()["loop5"]["mac"] == "02:00:00:00:0e:05"
    for words, message in [
        (("create loopback interface instance 5"), "loopback instance 5 is in use (loop5)"),
        (("create loopback interface instance 99999"), "bad instance '99999'"),
        (("set interface l2 bridge loop5 1 bvi"), "bridge domain 1 already has a BVI: loop0"),
        (("set interface l2 bridge memif1/0 1 bvi"), "only a loopback can"),
        (("delete loopback interface intfc memif1/0"), "memif1/0 is not a loopback interface"),
        (("delete loopback interface loop5"), "expected intfc"),
    ]:
        assert message in d.fails(words), words
    d.ok("delete loopback interface intfc loop5")
    assert "loop5" not in d.interfaces()

    hw = d.ok("show hardware-interfaces loop0")
    assert "loopback instance 0, bvi" in hw["output"]
    assert hw["data"][0]["hardware"] == "loopback" and hw["data"][0]["link"] == "up"
    bd = d.ok("show bridge-domain 1 detail")
    assert bd["data"][0]["bvi"] == "loop0"
    head, row = bd["output"].splitlines()[:2]
    assert head.split()[-1] == "BVI-Intf" and row.split()[-1] == "loop0"
    members = {line.split()[0]: line.split()[3] for line in bd["output"].splitlines()[4:]}
    assert members == {"memif1/0": "-", "memif2/0": "-", "loop0": "*"}
    assert "L2 bridge bd-id 1 bvi" in d.ok("show interface address loop0")["output"]

    with subprocess.Popen(
        memif_argv("responder", "--socket", b, "--ip", "10.1.0.3", "--mac", "02:00:00:00:00:03"),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as responder:
        try:
            d.wait_up("memif2/0")
            # a member pings the BVI: its ARP broadcast is flooded to the BVI (and the responder)
            res = run_memif(
                "ping", "--socket", a, "--mac", "02:00:00:00:00:02", "-I", "10.1.0.2",
                "10.1.0.1", "-c", "3", "-i", "0.05", "--json",
            )  # fmt: skip
            assert res.returncode == 0, res.stderr
            assert json.loads(res.stdout)["received"] == 3
            # memifd pings a member from its BVI: ARP and echo go through the bridge
            reply = d.ok("ping 10.1.0.3 repeat 3 interval 0.05")
            assert reply["data"]["received"] == 3 and reply["data"]["interface"] == "loop0"
            (neighbor,) = d.ok("show ip neighbors")["data"]
            want = {"ip": "10.1.0.3", "mac": "02:00:00:00:00:03", "interface": "loop0"}
            assert want.items() <= neighbor.items()
        finally:
            responder.kill()
            responder.communicate()
    fib = d.ok("show l2fib verbose")
    (entry,) = [e for e in fib["data"] if e["interface"] == "loop0"]
    want = {"mac": "de:ad:00:00:00:00", "interface": "loop0", "static": True, "bvi": True}
    assert want.items() <= entry.items()
    (row,) = [line.split() for line in fib["output"].splitlines() if line.endswith("loop0")]
    assert row[0] == "de:ad:00:00:00:00" and row[-3:] == ["*", "*", "loop0"]  # static, bvi

    d.ok("delete loopback interface intfc loop0")
    bd = d.ok("show bridge-domain 1 detail")
    assert bd["data"][0]["bvi"] is None and bd["output"].splitlines()[1].split()[-1] == "N/A"
    assert [m["name"] for m in bd["data"][0]["members"]] == ["memif1/0", "memif2/0"]
    assert all(e["interface"] != "loop0" for e in d.ok("show l2fib verbose")["data"])
    assert os.path.exists(d.cli_path)  # still serving
