"""The switch in-process with real memif peers: Python memif sockets on the other side.

The switch and its peers share one thread: :class:`Rig` (a :class:`helpers.SwitchRig`)
turns the switch's main loop (``Switch.run_once``) and polls the peers' control socket
between turns; the peers' socket is also registered with the switch (``add_fd``), so a
switch asleep in ``ppoll`` wakes for the peers' control messages as it would for another
process.  The main loop's own decisions are driven with an injected time
(``switch.loop.run_once(now)``)."""

from __future__ import annotations

import functools
import signal
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
from helpers import SwitchRig, drain, mac

import memif
from memif import packet
from memif.loop import RxMode
from memif.vswitch import mainloop
from memif.vswitch.tables import SwInterface

BD = 1


def frame(dst: bytes, src: bytes, tag: int | str, size: int = 64) -> bytes:
    """An Ethernet frame of ``size`` bytes whose payload names it."""
    body = str(tag).encode().ljust(size - 14, b".")
    return packet.ethernet(dst, src, 0x88B5, body)


@dataclass(eq=False)
class Port:
    """One switch interface and the peer connected to it."""

    sw: SwInterface
    peer: memif.Interface
    mac: bytes

    @property
    def name(self) -> str:
        return self.sw.name


class Rig(SwitchRig):
    """A switch with memif socket id 1 and one peer socket on the other side."""

    def __init__(self, tmp_path, role: str = "master", **switch_options: object) -> None:
        options = {"n_buffers": 4096, "data_size": 10240, **switch_options}
        super().__init__(tmp_path, role, "vswitch", **options)
        self.ports: list[Port] = []

    def add(
        self,
        bd: int | None = BD,
        *,
        mode: str = "ethernet",
        peer_buffer_size: int = 2048,
        up: bool = True,
        **memif_options: object,
    ) -> Port:
        """A switch memif and its peer (the listening side is created first)."""
        i = len(self.ports) + 1
        peer_options = dict(
            mode=mode, mac=mac(i), buffer_size=peer_buffer_size, reconnect_interval=0.1
        )
        memif_options = {"ring_size": 256, **memif_options}
        s, peer = self.create_port(i, peer_options, bd=bd, up=up, mode=mode, **memif_options)
        port = Port(s, peer, mac(i))
        self.ports.append(port)
        return port

    def connect(self, *ports: Port) -> None:
        """Wait until every given port (default: all) is connected on both sides."""
        ports = ports or tuple(self.ports)
        self.run(lambda: all(p.peer.connected and p.sw.link_up for p in ports), what="connect")

    def rx_total(self) -> int:
        return sum(p.sw.counters.rx_packets for p in self.ports)

    def exchange(self, *sends: tuple[Port, list[bytes]]) -> dict[Port, list[bytes]]:
        """Send from peers, run the switch until it took every packet, collect outputs.

        A turn of the switch runs the graph until empty, so once the switch counted
        every packet in, everything it sends is in the peers' rings.
        """
        before = self.rx_total()
        n = 0
        for port, frames in sends:
            assert port.peer.send(frames) == len(frames)
            n += len(frames)
        self.run(lambda: self.rx_total() >= before + n, what=f"{n} packets in")
        self.sw.run_once()
        return self.collect()

    def collect(self) -> dict[Port, list[bytes]]:
        """Everything waiting on every connected peer."""
        return {p: drain(p.peer) for p in self.ports}


@pytest.fixture
def rig(switch_rig):
    return functools.partial(switch_rig, Rig)


# ---------------------------------------------------------------------- bridging
@pytest.mark.slow
def test_bridge_floods_unknown_then_forwards_learned_unicast(rig):
    r = rig()
    a, b, c = r.add(), r.add(), r.add()
    r.connect()
    f1 = frame(mac(9), a.mac, "unknown")  # nobody has learned mac 9: flooded
    out = r.exchange((a, [f1]))
    assert out == {a: [], b: [f1], c: [f1]}
    f2 = frame(a.mac, b.mac, "to-a")  # a was learned from f1
    assert r.exchange((b, [f2])) == {a: [f2], b: [], c: []}
    f3 = frame(b.mac, c.mac, "to-b")
    f4 = frame(c.mac, a.mac, "to-c")
    assert r.exchange((c, [f3]), (a, [f4])) == {a: [], b: [f3], c: [f4]}
    bcast = frame(packet.BROADCAST, c.mac, "all")
    assert r.exchange((c, [bcast])) == {a: [bcast], b: [bcast], c: []}
    assert {(bd, m): e.sw_if_index for bd, m, e in r.sw.fib.items()} == {
        (BD, int.from_bytes(p.mac)): p.sw.sw_if_index for p in (a, b, c)
    }


def test_flood_of_one_packet_and_of_mixed_vectors_follows_the_members(rig):
    """l2-flood: one packet (clones to every member but the last, which gets the
    original), a vector from two ports at once (each packet to every member but its own
    port, in order), and the members it floods to follow ports going down and up, and
    new ports (its list of usable members is kept until the tables change)."""
    r = rig()
    a, b, c, d = r.add(), r.add(), r.add(), r.add()
    r.connect()
    flood = r.sw.graph.by_name["l2-flood"]
    one = frame(packet.BROADCAST, a.mac, "one")
    assert r.exchange((a, [one])) == {a: [], b: [one], c: [one], d: [one]}
    r.sw.set_state(d.name, False)
    two = frame(packet.BROADCAST, a.mac, "two")
    assert r.exchange((a, [two])) == {a: [], b: [two], c: [two], d: []}
    calls, vectors = flood.calls, flood.vectors
    from_a = [frame(mac(9), a.mac, f"a{k}") for k in range(3)]
    from_b = [frame(packet.BROADCAST, b.mac, f"b{k}") for k in range(2)]
    out = r.exchange((a, from_a), (b, from_b))
    assert out == {a: from_b, b: from_a, c: from_a + from_b, d: []}
    assert (flood.calls - calls, flood.vectors - vectors) == (1, 5)  # one mixed vector
    r.sw.set_state(d.name, True)
    r.connect()
    e = r.add()
    r.connect()
    three = frame(packet.BROADCAST, c.mac, "three")
    assert r.exchange((c, [three])) == {a: [three], b: [three], c: [], d: [three], e: [three]}
    r.sw.set_bridge(e.name, 2)  # alone in its domain: nowhere to flood
    before = r.errors().get("no-members", 0)
    assert r.exchange((e, [frame(packet.BROADCAST, e.mac, "alone")]))[a] == []
    assert r.errors()["no-members"] == before + 1
    assert r.sw.pool.n_free == r.sw.pool.n_buffers


def test_bridge_keeps_order_and_handles_a_full_vector(rig):
    r = rig()
    a, b = r.add(), r.add()
    r.connect()
    r.exchange((b, [frame(packet.BROADCAST, b.mac, "hello")]))
    frames = [frame(b.mac, a.mac, k, 60 + k % 200) for k in range(250)]
    assert r.exchange((a, frames)) == {a: [], b: frames}


@pytest.mark.parametrize("data_size", [10240, 2048])
def test_one_frame_vectors_forward_as_bursts_do(rig, data_size):
    """memif-input's and the output's 1-frame paths (a slice copy each way) against their
    vector paths: the same bytes out, in order, across ring wraps, with chained frames
    (larger than the peers' 2048-byte buffers) and, in a 2048-byte pool, frames too big
    for a switch buffer dropped under the same error."""
    r = rig(data_size=data_size)
    big = 4096 if data_size == 2048 else 2048  # the peers' buffers: unchained but too big
    a, b = r.add(ring_size=16, peer_buffer_size=big), r.add(ring_size=16, peer_buffer_size=big)
    r.connect()
    r.exchange((b, [frame(packet.BROADCAST, b.mac, "hello")]))
    rng = np.random.default_rng(7)
    sizes = [60, 61, 1500, 2047, 2048, 2049, 3000, 4096, 9000]
    frames = [packet.ethernet(b.mac, a.mac, 0x88B5, rng.bytes(n - 14)) for n in sizes * 2]
    fits = [f for f in frames if len(f) <= data_size]

    def send(vectors: list[list[bytes]]) -> tuple[list[bytes], dict[str, int], int, int]:
        before = dict(r.errors())
        rx, tx = a.sw.counters.rx_bytes, b.sw.counters.tx_bytes
        got = []
        for v in vectors:
            seen = a.sw.counters.rx_packets + a.sw.counters.drops + len(v)
            assert a.peer.send(v) == len(v)
            r.run(lambda s=seen: a.sw.counters.rx_packets + a.sw.counters.drops >= s, what="in")
            r.sw.run_once()
            got += r.collect()[b]
        grew = {k: n - before.get(k, 0) for k, n in r.errors().items() if n != before.get(k, 0)}
        return got, grew, a.sw.counters.rx_bytes - rx, b.sw.counters.tx_bytes - tx

    alone = send([[f] for f in frames])
    bursts = send([frames[:5], frames[5:]])
    assert alone == bursts
    assert alone[0] == fits
    assert alone[1] == ({} if len(fits) == len(frames) else {"too-big": len(frames) - len(fits)})
    assert alone[3] == sum(map(len, fits))
    assert r.sw.pool.n_free == r.sw.pool.n_buffers


@pytest.mark.parametrize("zero_copy", [False, True])
def test_vector_size_caps_what_one_turn_takes_from_a_queue(rig, zero_copy):
    r = rig("slave" if zero_copy else "master", vector_size=32)
    a, b = r.add(), r.add()
    r.connect()
    r.exchange((b, [frame(packet.BROADCAST, b.mac, "hello")]))
    frames = [frame(b.mac, a.mac, k) for k in range(100)]
    assert a.peer.send(frames) == 100
    turns = []
    while sum(turns) < 100:
        r.peers.poll(0)
        turns.append(r.sw.run_once())
    assert max(turns) == 32 and len([n for n in turns if n]) == 4  # 32 + 32 + 32 + 4
    assert r.collect()[b] == frames
    node = r.sw.graph.by_name["memif-input"]
    assert node.vectors / node.calls <= 32


def test_xconnect_both_ways(rig):
    r = rig()
    a, b, c = r.add(bd=None), r.add(bd=None), r.add(bd=None)
    r.connect()
    r.sw.set_xconnect(a.name, b.name)
    r.sw.set_xconnect(b.name, a.name)
    fa = [frame(mac(7), a.mac, k) for k in range(5)]  # any MAC: no lookup
    fb = [frame(packet.BROADCAST, b.mac, "back")]
    assert r.exchange((a, fa), (b, fb)) == {a: fb, b: fa, c: []}
    assert r.sw.fib.items() == []  # no learning on cross-connects
    out = r.exchange((c, [frame(a.mac, c.mac, "l3")]))  # c is L3 without an address
    assert out == {a: [], b: [], c: []}
    assert r.errors()["no-l2-or-l3"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["rx", "tx", "both"])
def test_span_mirrors_exactly_the_selected_direction(rig, direction):
    r = rig()
    a, b = r.add(), r.add()
    m = r.add(bd=None)  # the mirror: not in the bridge
    r.connect()
    rx, tx = direction in ("rx", "both"), direction in ("tx", "both")
    r.sw.set_span(a.name, m.name, rx=rx, tx=tx)
    received = [frame(b.mac, a.mac, f"a{k}") for k in range(3)]  # a receives, floods to b
    out = r.exchange((a, received))
    assert out[b] == received and out[a] == []
    assert out[m] == (received if rx else [])
    sent = [frame(a.mac, b.mac, f"b{k}") for k in range(2)]  # a transmits (learned)
    out = r.exchange((b, sent))
    assert out[a] == sent and out[b] == []
    assert out[m] == (sent if tx else [])
    assert r.sw.span_packets == 3 * rx + 2 * tx
    r.sw.set_span(a.name, None)
    out = r.exchange((a, received[:1]), (b, sent[:1]))
    assert out == {a: sent[:1], b: received[:1], m: []}


def test_span_copies_are_not_mirrored_again(rig):
    r = rig()
    a, b, c = r.add(), r.add(), r.add()
    r.connect()
    r.sw.set_span(a.name, b.name, rx=False, tx=True)  # a mirrors to b, b to a
    r.sw.set_span(b.name, a.name, rx=False, tx=True)
    f = frame(packet.BROADCAST, c.mac, "x")
    old = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("mirroring loops forever"))
    signal.alarm(5)
    try:
        out = r.exchange((c, [f]))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert out == {a: [f, f], b: [f, f], c: []}  # flooded, then each other's copy
    assert r.sw.span_packets == 2


def test_lost_span_copies_are_not_drops_of_the_source_ports(rig):
    r = rig()
    a, b = r.add(), r.add()
    m = r.add(bd=None)
    r.connect()
    r.sw.set_span(a.name, m.name, rx=True, tx=True)
    r.sw.set_state(m.name, False)  # the mirror port goes down: every copy is lost
    sent = [frame(b.mac, a.mac, f"a{k}") for k in range(4)]
    out = r.exchange((a, sent))
    assert out[b] == sent  # the bridged frames all went on
    assert a.sw.counters.drops == 0 and b.sw.counters.drops == 0
    lost = r.sw.graph.by_name["l2-output"].error_counts["interface-down"]
    assert lost == 4  # the copies show in show errors instead
    assert not r.sw.meta.span_copy.any()  # flags reset when the copies were freed


@pytest.mark.parametrize("role", ["master", "slave-copy"])
def test_jumbo_frames_are_chained_on_both_sides(rig, role):
    r = rig("master" if role == "master" else "slave")
    opts = {} if role == "master" else {"zero_copy": False, "buffer_size": 2048}
    a, b = r.add(**opts), r.add(**opts)
    r.connect()
    r.exchange((b, [frame(packet.BROADCAST, b.mac, "hello")]))
    rng = np.random.default_rng(5)
    jumbo = [
        packet.ethernet(b.mac, a.mac, 0x88B5, rng.bytes(9000 - 14)),
        frame(b.mac, a.mac, "small"),
        packet.ethernet(b.mac, a.mac, 0x88B5, rng.bytes(9000 - 14)),
    ]
    assert a.peer.send(jumbo) == 3
    assert a.peer.tx_queues[0].ring.d_flags[0] & 1  # the peer chained it
    r.run(lambda: b.peer.rx_queues[0].pending() > 0, what="output")
    batch = b.peer.rx_queues[0].rx_burst()
    assert batch.chained  # and so did the switch
    assert batch.tolist() == jumbo
    assert a.sw.counters.rx_bytes == b.sw.counters.tx_bytes == 2 * 9000 + 64


# ---------------------------------------------------------------------- local L3
IP_SW, IP_PEER = packet.ip4("10.0.0.1"), packet.ip4("10.0.0.2")


def _check_echo_reply(l3: bytes, ident: int, seq: int, data: bytes) -> None:
    assert packet.checksum(l3[:20]) == 0
    assert int.from_bytes(l3[2:4]) == len(l3) == 20 + 8 + len(data)
    p = packet.parse_ip(l3)
    assert (p.ip_src, p.ip_dst, p.proto) == (IP_SW, IP_PEER, packet.PROTO_ICMP)
    assert packet.checksum(p.l4) == 0
    assert packet.parse_icmp_echo(p.l4) == (packet.ICMP_ECHO_REPLY, 0, ident, seq, data)


@pytest.mark.slow
def test_arp_and_icmp_echo_are_answered_for_an_interface_address(rig):
    r = rig()
    a = r.add(bd=None)
    r.connect()
    r.sw.set_ip(a.name, IP_SW, 24)
    swmac = a.sw.mac
    (reply,) = r.exchange((a, [packet.arp_request(a.mac, IP_PEER, IP_SW)]))[a]
    p = packet.parse(reply)
    assert (p.dst, p.src, p.ethertype) == (a.mac, swmac, packet.ETH_P_ARP)
    assert p.arp == (packet.ARP_REPLY, swmac, IP_SW, a.mac, IP_PEER)

    echo = packet.icmp_echo(packet.ICMP_ECHO_REQUEST, 0x1234, 7, b"ping data")
    req = packet.ethernet(swmac, a.mac, packet.ETH_P_IP, packet.ipv4(IP_PEER, IP_SW, 1, echo))
    (reply,) = r.exchange((a, [req]))[a]
    assert reply[:12] == a.mac + swmac
    _check_echo_reply(reply[14:], 0x1234, 7, b"ping data")

    # Ethernet padding to 60 bytes is not ICMP data
    empty = packet.icmp_echo(packet.ICMP_ECHO_REQUEST, 1, 2, b"")
    req = packet.ethernet(swmac, a.mac, packet.ETH_P_IP, packet.ipv4(IP_PEER, IP_SW, 1, empty))
    (reply,) = r.exchange((a, [req.ljust(60, b"\0")]))[a]
    _check_echo_reply(reply[14:], 1, 2, b"")

    other = packet.ip4("10.0.0.9")
    out = r.exchange(
        (a, [packet.arp_request(a.mac, IP_PEER, other)]),
        (a, [packet.ethernet(swmac, a.mac, packet.ETH_P_IP, packet.ipv4(IP_PEER, other, 1, echo))]),
    )
    # ARP for another address is not answered; IPv4 to it is routed (the switch asks for it)
    assert out[a] == [packet.arp_request(swmac, IP_SW, other)]
    assert r.errors()["not-for-us"] == 1


def test_ip_mode_interface_answers_bare_icmp_echo(rig):
    r = rig()
    a = r.add(bd=None, mode="ip")
    r.connect()
    assert a.sw.ip_mode
    r.sw.set_ip(a.name, IP_SW, 24)
    echo = packet.icmp_echo(packet.ICMP_ECHO_REQUEST, 99, 1, bytes(range(56)))
    (reply,) = r.exchange((a, [packet.ipv4(IP_PEER, IP_SW, packet.PROTO_ICMP, echo)]))[a]
    _check_echo_reply(reply, 99, 1, bytes(range(56)))


# ---------------------------------------------------------------------- slave interfaces
@pytest.mark.parametrize("zero_copy", [True, False])
def test_slave_interfaces_forward_exactly_and_return_every_buffer(rig, zero_copy):
    r = rig("slave")
    a, b, c = (r.add(zero_copy=zero_copy) for _ in range(3))
    r.connect()
    pool = r.sw.pool
    if zero_copy:  # the switch lent a ring's worth of pool buffers to each rx queue
        assert pool.n_free == pool.n_buffers - 3 * 256
    f1 = [frame(packet.BROADCAST, a.mac, k, 64 + k) for k in range(10)]
    assert r.exchange((a, f1)) == {a: [], b: f1, c: f1}
    f2 = [frame(a.mac, b.mac, k, 1500) for k in range(300)]  # more than a ring
    sent = b.peer.send(f2[:200])
    r.run(lambda: b.sw.counters.rx_packets == 200, what="200 in")
    got = a.peer.recv(256)
    assert b.peer.send(f2[200:]) == 100 and sent == 200
    r.run(lambda: b.sw.counters.rx_packets == 300, what="300 in")
    r.sw.run_once()
    while more := a.peer.recv(256):
        got += more
    assert got == f2
    # zero-copy: the peer read descriptors pointing into the switch's pool (region 2)
    batch_regions = a.peer.rx_queues[0].ring.d_region[:4].tolist()
    assert batch_regions == ([2] * 4 if zero_copy else [1] * 4)
    r.close_peers()
    r.run(lambda: not any(p.sw.link_up for p in (a, b, c)), what="disconnect")
    assert pool.n_free == pool.n_buffers


def test_hostile_server_naming_one_buffer_twice_cannot_double_free(rig):
    r = rig("slave")
    a, b = r.add(), r.add()
    r.connect()
    pool = r.sw.pool
    txq = a.peer.tx_queues[0]  # the peer (master) fills buffers the switch posted
    batch = txq.alloc(4)
    for k in range(4):
        batch.buffer(k)[:64] = np.frombuffer(frame(packet.BROADCAST, a.mac, k), np.uint8)
    ring = txq.ring
    s = batch.start & ring.mask
    ring.d_offset[s + 1] = ring.d_offset[s]  # slot 1 names slot 0's buffer
    txq.tx_burst(batch, 64)
    r.run(lambda: a.sw.counters.rx_packets >= 3, what="packets in")
    r.sw.run_once()
    got = b.peer.recv()
    assert len(got) == 3 and r.errors()["zero-copy-mismatch"] == 1
    r.close_peers()
    r.run(lambda: not a.sw.link_up and not b.sw.link_up, what="disconnect")
    assert pool.n_free == pool.n_buffers
    assert len(np.unique(pool.free_buffers())) == pool.n_buffers


# ---------------------------------------------------------------------- control
@pytest.mark.slow
def test_admin_down_drops_and_disconnects(rig):
    r = rig()
    a, b, c = r.add(), r.add(), r.add()
    r.connect()
    r.exchange((c, [frame(packet.BROADCAST, c.mac, "hello")]))
    r.sw.set_state(c.name, False)
    r.run(lambda: not c.peer.connected, what="c down")
    assert c.peer.remote_disc_reason == "interface admin down"
    assert c.sw.state == "down"
    r.sw.fib.add_static(BD, int.from_bytes(c.mac), c.sw.sw_if_index, r.sw.now)
    to_c = frame(c.mac, a.mac, "to-c")
    flood = frame(packet.BROADCAST, a.mac, "all")
    assert r.exchange((a, [to_c, flood])) == {a: [], b: [flood], c: []}
    assert r.errors()["interface-down"] == 1
    r.run(lambda: c.peer.remote_disc_reason == "interface is down", what="refused reconnect")
    assert not c.peer.connected
    r.sw.set_state(c.name, True)
    r.connect(c)
    assert r.exchange((a, [to_c])) == {a: [], b: [], c: [to_c]}


def test_delete_interface_while_connected(rig):
    r = rig()
    a, b, c = r.add(), r.add(), r.add()
    r.connect()
    r.exchange((c, [frame(packet.BROADCAST, c.mac, "hello")]))
    r.sw.delete_interface(c.name)
    r.run(lambda: not c.peer.connected, what="c disconnected")
    assert c.peer.remote_disc_reason == "interface deleted"
    assert c.sw.sw_if_index not in r.sw.tables.interfaces
    assert all(e.sw_if_index != c.sw.sw_if_index for _, _, e in r.sw.fib.items())
    r.ports.remove(c)
    f = frame(c.mac, a.mac, "was-c")  # c's MAC was flushed: flooded to b only
    assert r.exchange((a, [f])) == {a: [], b: [f]}
    f = frame(a.mac, b.mac, "to-a")
    assert r.exchange((b, [f])) == {a: [f], b: []}


def test_counters_are_exact(rig):
    r = rig()
    a, b, c = r.add(), r.add(), r.add()
    r.connect()
    sizes = [60, 100, 1500]
    r.exchange((a, [frame(packet.BROADCAST, a.mac, k, n) for k, n in enumerate(sizes)]))
    r.exchange((b, [frame(a.mac, b.mac, "x", 64), frame(a.mac, b.mac, "y", 200)]))
    counters = {p.name: p.sw.counters for p in (a, b, c)}
    got = {
        n: (c.rx_packets, c.rx_bytes, c.tx_packets, c.tx_bytes, c.tx_errors)
        for n, c in counters.items()
    }
    assert got == {
        a.name: (3, 1660, 2, 264, 0),
        b.name: (2, 264, 3, 1660, 0),
        c.name: (0, 0, 3, 1660, 0),
    }
    r.sw.clear_interfaces()
    assert a.sw.counters.rx_packets == a.sw.counters.tx_bytes == 0


def test_graph_errors_are_counted_by_name(rig):
    r = rig()
    a, b = r.add(), r.add()
    l3 = r.add(bd=None)
    r.connect()
    r.exchange((a, [frame(packet.BROADCAST, a.mac, "hello")]))
    out = r.exchange(
        (a, [frame(a.mac, a.mac, "self"), frame(a.mac, a.mac, "self")]),  # filtered
        (b, [b"\x02\x00\x00\x00\x00\x01\x02\x00\x00"]),  # runt
        (l3, [frame(a.mac, l3.mac, "l3")] * 3),  # no-l2-or-l3
    )
    assert all(v == [] for v in out.values())
    assert r.errors() == {"filtered": 2, "runt": 1, "no-l2-or-l3": 3}


def test_trace_records_the_first_packets_through_each_node(rig):
    r = rig()
    a, b = r.add(), r.add()
    r.connect()
    r.sw.graph.trace_add("memif-input", 3)
    r.exchange((a, [frame(packet.BROADCAST, a.mac, k) for k in range(5)]))
    traces = r.sw.graph.traces
    assert len(traces) == 3
    for lines in traces.values():
        nodes = [line.split(": ", 1)[1].split("\n")[0] for line in lines]
        nodes = [n for n in nodes if n != "memif-input"]  # (the input line is optional)
        assert nodes == [
            "ethernet-input",
            "l2-learn",
            "l2-fwd",
            "l2-flood",
            "l2-output",
            f"{b.name}-output",
        ]
        assert "length 64 header ffffffffffff02000000000188b5" in lines[0]  # memif-input
        assert "0x88b5: 02:00:00:00:00:01 -> ff:ff:ff:ff:ff:ff" in lines[1]  # ethernet-input
    r.exchange((a, [frame(packet.BROADCAST, a.mac, "more")]))
    assert len(r.sw.graph.traces) == 3  # the budget is spent


@pytest.mark.slow
def test_switch_sleeps_when_idle(rig):
    r = rig()
    a, b = r.add(), r.add()
    r.connect()
    f = frame(packet.BROADCAST, a.mac, "x")
    assert r.exchange((a, [f])) == {a: [], b: [f]}
    events = r.sw.loop.events
    sleeps = events.sleeps
    for _ in range(5):  # a trickle (fewer than ADAPTIVE_VECTOR packets) is idle too
        assert r.sw.run_once() == 0
    assert events.sleeps == sleeps + 5  # every idle turn waited in ppoll: no spinning
    assert len(events.rx_queues) == 2  # each connected port's queue, served adaptively
    assert all(events.rx_mode(q) is RxMode.ADAPTIVE for q in events.rx_queues)
    assert all(q.polling for q in events.rx_queues)  # polling again after each sleep
    r.sw.delete_interface(b.name)
    assert events.rx_queues == tuple(r.sw.interface(a.name).port.rx_queues())
    r.ports.remove(b)


def test_the_loop_asks_to_sleep_only_after_a_quiet_spell(rig):
    """run_once(now) takes the time and returns the next turn's deadline: a coalescing
    nap while packets come (or came less than IDLE_BEFORE_SLEEP ago) far below the
    vector, as long as a vector takes at the rate measured, at most MAX_COALESCE;
    MAX_SLEEP later after."""
    r = rig()
    a, b = r.add(), r.add()
    r.connect()
    loop = r.sw.loop
    t = 1000.0
    loop.run_once(t)  # the previous turn, on this test's clock
    frames = [frame(packet.BROADCAST, a.mac, k) for k in range(mainloop.ADAPTIVE_VECTOR)]
    assert a.peer.send(frames) == len(frames)
    t += 0.001
    nap = mainloop.MAX_COALESCE  # (8 frames a ms: 512 would take 64 ms)
    assert loop.run_once(t) == t + nap and loop.packets == len(frames)  # busy: a nap
    assert r.sw.now == t  # the nodes' clock is the turn's
    soon = t + mainloop.IDLE_BEFORE_SLEEP / 2
    assert loop.run_once(soon) == soon + nap  # light, but busy lately: a nap again
    later = t + 2 * mainloop.IDLE_BEFORE_SLEEP
    assert loop.run_once(later) == later + mainloop.MAX_SLEEP  # quiet: may sleep
    assert r.collect()[b] == frames


def test_a_packet_wakes_the_sleeping_switch(rig):
    r = rig()
    a, b = r.add(), r.add()
    r.connect()
    f = frame(packet.BROADCAST, a.mac, "x")
    sender = threading.Timer(0.05, a.peer.send, [[f]])  # the peer, as if in its own process
    t0 = time.monotonic()
    sender.start()
    r.sw.loop.sleep(60.0)  # asleep in ppoll until the peer's kick
    assert time.monotonic() - t0 < 30.0  # the kick woke it, not the end of its 60 s sleep
    sender.join()
    assert all(q.polling for q in r.sw.interface(a.name).port.iface.rx_queues)  # polling again
    r.run(lambda: b.sw.counters.tx_packets == 1, what="forwarded")
    assert b.peer.recv() == [f]


@pytest.mark.slow
@pytest.mark.parametrize("ring", ["rx", "tx"])
def test_broken_peer_is_disconnected_and_other_ports_keep_forwarding(rig, ring):
    r = rig()
    a, b, bad = r.add(), r.add(), r.add()
    r.connect()
    r.exchange((bad, [frame(packet.BROADCAST, bad.mac, "hello")]))
    q = bad.peer.rx_queues[0] if ring == "rx" else bad.peer.tx_queues[0]
    q.ring.head = q.ring.tail + q.ring.size + 7  # impossible: more than a ring ahead
    f = [frame(packet.BROADCAST, a.mac, k) for k in range(3)]  # flooded to bad as well
    out = r.exchange((a, f))
    assert out[b] == f
    r.run(lambda: not bad.sw.link_up, what="bad disconnected")
    assert bad.peer.remote_disc_reason == "ring counter out of range"
    g = [frame(a.mac, b.mac, k) for k in range(3)]
    out = r.exchange((b, g), (a, f))
    assert out[a] == g and out[b] == f
    r.connect(bad)  # the peer reconnects with fresh rings and works again
    out = r.exchange((a, f))
    assert out == {a: [], b: f, bad: f}
