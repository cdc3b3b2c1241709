"""Bridge domain to bridge domain through two BVIs: members of two subnets routed by the switch.

In-process (:class:`test_vswitch.Rig`: the switch and real memif peers in one thread):
bridge domain 1 (members a, b; BVI loop0 10.1.0.1/24) and bridge domain 2 (member c; BVI
loop1 10.2.0.1/24).  A member sends to its gateway's MAC (the BVI's), the switch routes the
packet into the other domain (TTL one less, header checksum right, the BVI's MAC as source)
and that domain bridges it to the member; every byte is checked.  The next hop is resolved
the way a router does: an ARP request from the BVI flooded in its domain, answered by the
member.  Then memifd as a process with ``memif gen`` as the members: a sequenced stream from
one domain to the other arrives whole and in order.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess

import pytest
from helpers import ENV, memif_argv
from test_vswitch import Rig

from memif import packet
from memif.config import format_mac
from memif.testing import unique_name

GW1, GW2 = packet.ip4("10.1.0.1"), packet.ip4("10.2.0.1")
HOST_A, HOST_B, HOST_C = packet.ip4("10.1.0.2"), packet.ip4("10.1.0.3"), packet.ip4("10.2.0.2")


@pytest.fixture
def rig(switch_rig):
    return functools.partial(switch_rig, Rig)


def two_domains(rig):
    """a, b in bridge domain 1 (BVI loop0), c in bridge domain 2 (BVI loop1)."""
    r = rig()
    a, b, c = r.add(bd=1), r.add(bd=1), r.add(bd=2)
    r.connect()
    loops = []
    for bd, gw in ((1, GW1), (2, GW2)):
        loop = r.sw.create_loopback()
        r.sw.set_bridge(loop.name, bd, bvi=True)
        r.sw.set_ip(loop.name, gw, 24)
        r.sw.set_state(loop.name, True)
        loops.append(loop)
    return r, (a, b, c), loops


def memif_ports(
    a: str, b: str, modes: tuple[str, str] = ("", ""), bds: tuple[int, int] | None = None
) -> list[str]:
    """Startup lines: memif1/0 on socket ``a`` and memif2/0 on socket ``b``, masters, up
    (``modes``: a `` mode ip`` suffix for either; ``bds``: their bridge domains)."""
    lines = [
        f"create memif socket id 1 filename {a}",
        f"create memif socket id 2 filename {b}",
        f"create interface memif id 0 socket-id 1 master{modes[0]}",
        f"create interface memif id 0 socket-id 2 master{modes[1]}",
        "set interface state memif1/0 up",
        "set interface state memif2/0 up",
    ]
    if bds is not None:
        lines += [f"set interface l2 bridge memif{i}/0 {bd}" for i, bd in enumerate(bds, 1)]
    return lines


def bvi_lines(bd: int, address: str) -> list[str]:
    """Startup lines: the next loopback as bridge domain ``bd``'s BVI with ``address``, up
    (loopbacks are numbered from loop0 in creation order)."""
    return [
        "create loopback interface",
        f"set interface l2 bridge loop{bd - 1} {bd} bvi",
        f"set interface ip address loop{bd - 1} {address}",
        f"set interface state loop{bd - 1} up",
    ]


def sequenced_stream(d, a: str, b: str, n: int, *txonly: str) -> None:
    """``memif gen txonly TXONLY`` on socket ``a`` through memifd ``d`` to ``memif gen rxonly``
    on socket ``b`` (memif2/0): all ``n`` packets arrive, none lost or reordered."""
    rx = subprocess.Popen(
        memif_argv("gen", "rxonly", "--socket", b, "--count", str(n), "--duration", "60",
                   "--linger", "0", "--json"),
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        d.wait_up("memif2/0")
        tx = subprocess.run(
            memif_argv("gen", "txonly", "--socket", a, "--count", str(n), "--rate", "10000",
                       "--linger", "0", "--json", *txonly),
            env=ENV, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert tx.returncode == 0, tx.stderr
        out, err = rx.communicate(timeout=90)
        assert rx.returncode == 0, err
        got = json.loads(out)
        assert (got["sequenced"], got["lost"], got["reordered"]) == (n, 0, 0), got
        assert d.interfaces()["memif2/0"]["tx_packets"] == n
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.communicate()


def udp(src: bytes, dst: bytes, payload: bytes, ttl: int = 64) -> bytes:
    body = (4000).to_bytes(2, "big") + (4001).to_bytes(2, "big")
    body += (8 + len(payload)).to_bytes(2, "big") + b"\0\0" + payload
    return packet.ipv4(src, dst, 17, body, ttl=ttl)


def routed(ip: bytes) -> bytes:
    """``ip`` after one router: TTL one less, header checksum recomputed."""
    hdr = bytearray(ip[:20])
    hdr[8] -= 1
    hdr[10:12] = b"\0\0"
    hdr[10:12] = packet.checksum(bytes(hdr)).to_bytes(2, "big")
    return bytes(hdr) + ip[20:]


def test_members_of_two_domains_reach_each_other_through_the_bvis(rig):
    r, (a, b, c), (loop0, loop1) = two_domains(rig)
    first = udp(HOST_A, HOST_C, b"first")
    out = r.exchange((a, [packet.ethernet(loop0.mac, a.mac, packet.ETH_P_IP, first)]))
    (request,) = out[c]  # c unresolved: loop1 asks for it in domain 2, the packet waits or goes
    assert packet.parse(request).arp == (packet.ARP_REQUEST, loop1.mac, GW2, bytes(6), HOST_C)
    assert out[a] == [] and out[b] == []
    r.exchange((c, [packet.arp_reply(c.mac, HOST_C, loop1.mac, GW2)]))
    assert r.sw.neighbors.get(loop1.sw_if_index, HOST_C) == c.mac

    sent = [udp(HOST_A, HOST_C, os.urandom(n)) for n in (0, 10, 200, 1400)]
    out = r.exchange((a, [packet.ethernet(loop0.mac, a.mac, packet.ETH_P_IP, p) for p in sent]))
    assert out[c] == [packet.ethernet(c.mac, loop1.mac, packet.ETH_P_IP, routed(p)) for p in sent]
    assert out[a] == [] and out[b] == []

    # and back: c's gateway is loop1; a is resolved by loop0's ARP in domain 1
    back = udp(HOST_C, HOST_A, b"back", ttl=2)
    out = r.exchange((c, [packet.ethernet(loop1.mac, c.mac, packet.ETH_P_IP, back)]))
    (request,) = out[a]
    assert packet.parse(request).arp == (packet.ARP_REQUEST, loop0.mac, GW1, bytes(6), HOST_A)
    assert len(out[b]) == 1  # the request is flooded in domain 1
    r.exchange((a, [packet.arp_reply(a.mac, HOST_A, loop0.mac, GW1)]))
    out = r.exchange((c, [packet.ethernet(loop1.mac, c.mac, packet.ETH_P_IP, back)]))
    assert out[a] == [packet.ethernet(a.mac, loop0.mac, packet.ETH_P_IP, routed(back))]
    assert out[b] == []  # known unicast in domain 1: a's MAC was learned


def test_ping_the_far_bvi_and_ttl_expiry_from_a_member(rig):
    r, (a, _b, c), (loop0, loop1) = two_domains(rig)
    echo = packet.icmp_echo(packet.ICMP_ECHO_REQUEST, 5, 1, b"far gateway")
    r.exchange((a, [packet.arp_request(a.mac, HOST_A, GW1)]))  # a resolves its gateway
    req = packet.ethernet(loop0.mac, a.mac, packet.ETH_P_IP, packet.ipv4(HOST_A, GW2, 1, echo))
    out = r.exchange((a, [req]))
    replies = [f for f in out[a] if packet.parse(f).ethertype == packet.ETH_P_IP]
    if not replies:  # a's address was resolved by loop0 first: ARP, then the reply
        r.exchange((a, [packet.arp_reply(a.mac, HOST_A, loop0.mac, GW1)]))
        replies = r.exchange((a, [req]))[a]
    (reply,) = replies
    p = packet.parse(reply)
    assert (p.dst, p.src, p.ip_src, p.ip_dst) == (a.mac, loop0.mac, GW2, HOST_A)
    assert packet.parse_icmp_echo(p.l4)[:4] == (packet.ICMP_ECHO_REPLY, 0, 5, 1)

    # with c resolved (as in VPP, an unresolved next hop is ARPed for before the TTL is
    # looked at), TTL 1 is answered with time exceeded from the gateway a sent it to
    r.sw.ip_neighbor(loop1.name, HOST_C, format_mac(c.mac), static=True)
    expiring = udp(HOST_A, HOST_C, b"ttl", ttl=1)
    out = r.exchange((a, [packet.ethernet(loop0.mac, a.mac, packet.ETH_P_IP, expiring)]))
    (err,) = out[a]
    p = packet.parse(err)
    assert (p.ip_src, p.ip_dst, p.proto) == (GW1, HOST_A, packet.PROTO_ICMP)
    assert p.l4[0] == 11  # ICMP time exceeded
    assert out[c] == []


def test_deleting_a_bvi_withdraws_its_routes(rig):
    r, (a, _b, c), (loop0, loop1) = two_domains(rig)
    r.sw.delete_interface(loop1.name, "loopback")
    r.exchange((a, [packet.arp_request(a.mac, HOST_A, GW1)]))
    r.exchange((a, [packet.arp_reply(a.mac, HOST_A, loop0.mac, GW1)]))
    out = r.exchange(
        (a, [packet.ethernet(loop0.mac, a.mac, packet.ETH_P_IP, udp(HOST_A, HOST_C, b"gone"))])
    )
    assert out[c] == []
    assert r.sw.tables.bd_bvi == {1: loop0.sw_if_index}
    assert r.sw.runtime.ip4_routes.owned_by(loop1.sw_if_index) == []
    assert r.sw.runtime.ip4_fib.covering(int.from_bytes(HOST_C, "big")) is None
    assert r.sw.runtime.ip4_fib.covering(int.from_bytes(HOST_A, "big")) is not None
    assert all(e.sw_if_index != loop1.sw_if_index for e in r.sw.fib.entries.values())


@pytest.mark.slow
def test_memif_gen_across_two_bridge_domains_through_memifd(start) -> None:
    """memifd as a process, the project's tools as members: ``memif gen txonly`` in bridge
    domain 1 sends to its gateway (loop0's MAC) for 10.2.0.2, ``memif gen rxonly`` in bridge
    domain 2 receives every packet, in order, through loop1."""
    a, b = unique_name("bvi2-a"), unique_name("bvi2-b")
    d = start(
        [
            *memif_ports(a, b, bds=(1, 2)),
            *bvi_lines(1, "10.1.0.1/24"),
            *bvi_lines(2, "10.2.0.1/24"),
            "set ip neighbor loop1 10.2.0.2 02:00:00:00:00:02 static",
        ]
    )
    n = 1000
    sequenced_stream(
        d, a, b, n, "--src-mac", "02:00:00:00:00:01", "--dst-mac", "de:ad:00:00:00:00",
        "--src-ip", "10.1.0.2", "--dst-ip", "10.2.0.2",
    )  # fmt: skip
    ifs = d.interfaces()
    assert ifs["loop0"]["rx_packets"] == n and ifs["loop1"]["tx_packets"] == n
