"""Property tests of the IPv4 forwarding nodes against their plain-Python paths.

ip4-input's header check and ip4-rewrite's TTL/checksum kernel against their references
on random headers (malformed ones, options, fragments, TTL 0 and 1); then each node of a
real switch (ip4-input, ip4-lookup, ip4-rewrite) on random vectors of packets, from an
Ethernet and a ``mode ip`` interface, against the same packets one by one through its
plain path (``next_of``): the same next node, bytes, metadata and error counts.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memif import packet
from memif.vswitch import Switch
from memif.vswitch.adjacency import AdjacencyTable, Next
from memif.vswitch.graph import SMALL_VECTOR
from memif.vswitch.ip4_fib import FibError, Ip4Fib
from memif.vswitch.ip4_route import SPECIAL_ROUTES, Ip4Routes, Source
from memif.vswitch.nodes_ip4_fwd import (
    OK,
    checksum_after_ttl,
    ip4_check,
    ip4_check_reference,
    ttl_rewrite,
    ttl_rewrite_reference,
)
from memif.vswitch.nodes_l2 import parse_ethernet_reference

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ETH_MAC, PEER_MAC = bytes.fromhex("02fe00000101"), bytes.fromhex("02fe000001aa")
DESTINATIONS = [  # ours, resolved, routed, unresolved, glean, no route, special, ip-mode side
    "10.1.0.1", "10.1.0.5", "10.9.3.4", "10.8.0.1", "10.1.0.99", "192.0.2.1",
    "10.1.0.255", "255.255.255.255", "224.0.0.5", "10.2.0.7", "10.2.0.1", "0.0.0.0",
]  # fmt: skip


def header(rnd: random.Random, length: int | None = None) -> bytes:
    """A random IPv4 packet: valid, or with one field broken."""
    ihl = rnd.choice([5, 5, 5, 6, 15])
    payload = rnd.randbytes(rnd.choice([0, 8, 40]))
    total = ihl * 4 + len(payload)
    frag = rnd.choice([0, 0, 0x4000, 0x2000, 1, 0x2001, 185])
    ttl = rnd.choice([0, 1, 2, 64, 255])
    dst = packet.ip4(rnd.choice(DESTINATIONS))
    src = packet.ip4(rnd.choice(["10.1.0.2", "10.2.0.2", "0.0.0.0", "224.1.1.1"]))
    opts = rnd.randbytes((ihl - 5) * 4)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 7, frag, ttl, 1, 0, src, dst) + opts
    hdr = hdr[:10] + packet.checksum(hdr).to_bytes(2, "big") + hdr[12:]
    data = bytearray(hdr + payload)
    broken = rnd.randrange(8)
    if broken == 0:
        data[0] = rnd.choice([0x35, 0x65, 0x44, 0x40, 0x4F])  # version, IHL
    elif broken == 1:
        data[2:4] = rnd.choice([total + 1, 19, 0, 0xFFFF]).to_bytes(2, "big")
    elif broken == 2:
        data[10] ^= 0x40  # checksum
    elif broken == 3:
        data = data[: rnd.randrange(len(data))]  # cut short
    return bytes(data)


@SETTINGS
@given(st.integers(0, 2**32), st.integers(1, 40))
def test_ip4_check_matches_reference(seed: int, n: int) -> None:
    rnd = random.Random(seed)
    packets = [header(rnd) for _ in range(n)]
    rows = np.zeros((n, 60), np.uint8)
    for k, p in enumerate(packets):
        rows[k, : min(60, len(p))] = np.frombuffer(p[:60], np.uint8)
        rows[k, len(p) : 60] = rnd.randrange(256)  # bytes past the packet are junk
    avail = np.array([len(p) for p in packets], np.int64)
    got = ip4_check(rows, avail).tolist()
    assert got == [ip4_check_reference(p, len(p)) for p in packets]


def test_ip4_check_reference_cases() -> None:
    good = packet.ipv4(packet.ip4("10.0.0.1"), packet.ip4("10.0.0.2"), 1, b"x" * 8)
    assert ip4_check_reference(good, len(good)) == OK
    assert ip4_check_reference(good, len(good) - 1) != OK  # total length past the frame
    assert ip4_check_reference(good[:19], 19) != OK


@SETTINGS
@given(st.lists(st.binary(min_size=12, max_size=12), min_size=1, max_size=40))
def test_ttl_rewrite_matches_rfc1624_reference(headers: list[bytes]) -> None:
    headers = [h[:8] + bytes([max(1, h[8])]) + h[9:] for h in headers]  # TTL >= 1 here
    rows = np.frombuffer(b"".join(headers), np.uint8).reshape(-1, 12)
    ttl, csum = ttl_rewrite(rows)
    assert list(zip(ttl.tolist(), csum.tolist(), strict=True)) == [
        ttl_rewrite_reference(h) for h in headers
    ]


@pytest.mark.parametrize(("ttl", "proto"), [(2, 0), (64, 17), (255, 255)])
def test_checksum_after_ttl_in_memory_order_matches_rfc1624_reference(ttl: int, proto: int) -> None:
    """ip4-rewrite's short path on every checksum value (0xFFFF, which carries out of
    16 bits, among them): the bytes it leaves are the reference's."""
    every = np.arange(1 << 16, dtype=">u2")
    hc = every.view(np.uint8).view(np.uint16).copy()  # memory order, as in a packet
    checksum_after_ttl(hc)
    header = bytearray(12)
    header[8:10] = ttl, proto
    want = []
    for value in range(1 << 16):
        header[10:12] = value.to_bytes(2, "big")
        want.append(ttl_rewrite_reference(bytes(header))[1])
    assert hc.view(">u2").tolist() == want


def test_ttl_rewrite_keeps_the_header_checksum_valid() -> None:
    rnd = random.Random(5)
    for _ in range(200):
        ttl = rnd.randrange(2, 256)
        hdr = bytearray(packet.ipv4(rnd.randbytes(4), rnd.randbytes(4), rnd.randrange(256), b"",
                                    ttl=ttl, ident=rnd.randrange(65536)))  # fmt: skip
        new_ttl, csum = ttl_rewrite_reference(bytes(hdr))
        hdr[8], hdr[10:12] = new_ttl, csum.to_bytes(2, "big")
        assert packet.checksum(bytes(hdr)) == 0


# ---------------------------------------------------------------------- nodes of a switch
@pytest.fixture(scope="module")
def switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Switch]:
    """memif1/0 (Ethernet, 10.1.0.1/24) and memif1/1 (mode ip, 10.2.0.1/24), both up
    (no peers: nothing leaves), a static neighbour, a resolved and an unresolved route."""
    folder: Path = tmp_path_factory.mktemp("routing-nodes")
    sw = Switch(str(folder / "run"), n_buffers=2048, data_size=2048)
    sw.create_socket(1, str(folder / "memif.sock"))
    eth = sw.create_memif(id=0, socket_id=1, role="master", hw_addr=ETH_MAC.hex(":"))
    ip = sw.create_memif(id=1, socket_id=1, role="master", mode="ip")
    for name in (eth.name, ip.name):
        sw.set_state(name, True)
    sw.set_ip(eth.name, packet.ip4("10.1.0.1"), 24)
    sw.set_ip(ip.name, packet.ip4("10.2.0.1"), 24)
    sw.ip_neighbor(eth.name, packet.ip4("10.1.0.5"), "02:fe:00:00:01:05", static=True)
    sw.ip_route(packet.ip4("10.9.0.0"), 16, packet.ip4("10.1.0.5"))
    sw.ip_route(packet.ip4("10.8.0.0"), 16, packet.ip4("10.1.0.77"))
    yield sw
    sw.close()


def load(sw: Switch, name: str, frames: list[tuple[int, bytes]], adjs: list[int]) -> np.ndarray:
    """Buffers holding ``frames`` (rx interface, bytes) with the metadata the nodes before
    ``name`` leave (ip4-input's destination 0 for ip4-input itself)."""
    idx = sw.pool.alloc(len(frames))
    assert len(idx) == len(frames)
    for i, (rx, frame), adj in zip(idx.tolist(), frames, adjs, strict=True):
        sw.pool.data[i, :] = 0xEE
        sw.pool.data[i, : len(frame)] = np.frombuffer(frame, np.uint8)
        sw.pool.length[i] = len(frame)
        sw.meta.rx_if[i] = rx
        sw.meta.dmac[i] = parse_ethernet_reference(frame.ljust(14, b"\0"))[0]
        at = (0 if sw.runtime.tables.ip_mode[rx] else packet.ETH_HLEN) + 16
        dst = int.from_bytes(frame[at : at + 4].ljust(4, b"\0"), "big")
        sw.meta.ip4_dst[i] = 0 if name == "ip4-input" else dst
        sw.meta.adj[i] = adj
        sw.meta.tx_if[i] = sw.meta.icmp[i] = 0
    return idx


def outcome(sw: Switch, idx: np.ndarray, where: dict[int, str]) -> list[tuple]:
    """Per buffer: next node, bytes, tx interface, adjacency, ICMP error, IPv4
    destination (ip4-input's); then free."""
    out = [
        (where[i], sw.pool.packet(i), int(sw.meta.tx_if[i]), int(sw.meta.adj[i]),
         int(sw.meta.icmp[i]), int(sw.meta.ip4_dst[i]))
        for i in idx.tolist()
    ]  # fmt: skip
    sw.pool.free(idx)
    return out


def run_vector(sw: Switch, name: str, frames: list[tuple[int, bytes]], adjs: list[int]):
    node = sw.graph.by_name[name]
    node.error_counts.clear()
    idx = load(sw, name, frames, adjs)
    queued: list[tuple[int, np.ndarray]] = []  # what the node hands on, not run further
    sw.graph.enqueue = lambda k, vec: queued.append((k, vec))  # type: ignore[method-assign]
    try:
        node.process(idx)
    finally:
        del sw.graph.enqueue
    where = {i: sw.graph.nodes[k].node_name for k, vec in queued for i in vec.tolist()}
    return outcome(sw, idx, where), dict(node.error_counts)


def run_plain(sw: Switch, name: str, frames: list[tuple[int, bytes]], adjs: list[int]):
    node = sw.graph.by_name[name]
    node.error_counts.clear()
    idx = load(sw, name, frames, adjs)
    where = {i: sw.graph.nodes[node.next_of(i)].node_name for i in idx.tolist()}
    return outcome(sw, idx, where), dict(node.error_counts)


def frames_for(sw: Switch, rnd: random.Random, n: int) -> tuple[list[tuple[int, bytes]], list[int]]:
    eth, ipm = sw.interface("memif1/0"), sw.interface("memif1/1")
    frames, adjs = [], []
    for _ in range(n):
        ip = header(rnd)
        if rnd.random() < 0.5:
            dmac = rnd.choice([ETH_MAC, ETH_MAC, packet.BROADCAST, PEER_MAC])
            frames.append((eth.sw_if_index, packet.ethernet(dmac, PEER_MAC, 0x0800, ip)))
        else:
            frames.append((ipm.sw_if_index, ip))
        dst = int.from_bytes(ip[16:20].ljust(4, b"\0"), "big")
        adjs.append(sw.runtime.ip4_fib.lookup_one(dst))
    return frames, adjs


def passed(
    sw: Switch, name: str, frames: list[tuple[int, bytes]], adjs: list[int]
) -> tuple[list[tuple[int, bytes]], list[int]]:
    """The packets that reach ``name``: ip4-input's good ones (padding trimmed) for
    ip4-lookup, those ip4-lookup sends to ip4-rewrite for it."""
    if name == "ip4-input":
        return frames, adjs
    ok = run_plain(sw, "ip4-input", frames, adjs)[0]
    keep = [k for k, o in enumerate(ok) if o[0] == "ip4-lookup"]
    frames, adjs = [(frames[k][0], ok[k][1]) for k in keep], [adjs[k] for k in keep]
    if name == "ip4-rewrite":
        nexts = sw.runtime.adjacencies.next
        keep = [k for k, adj in enumerate(adjs) if nexts[adj] == Next.REWRITE]
        frames, adjs = [frames[k] for k in keep], [adjs[k] for k in keep]
    return frames, adjs


@pytest.mark.parametrize("name", ["ip4-input", "ip4-lookup", "ip4-rewrite"])
@pytest.mark.parametrize("seed", range(12))
def test_node_vector_path_matches_its_plain_path(switch: Switch, name: str, seed: int) -> None:
    rnd = random.Random(seed)
    want = rnd.choice([SMALL_VECTOR + 1, 32, 200])
    frames: list[tuple[int, bytes]] = []
    adjs: list[int] = []
    while len(frames) < want:  # later nodes get only what the earlier ones pass on
        more, more_adjs = passed(switch, name, *frames_for(switch, rnd, want))
        frames, adjs = frames + more, adjs + more_adjs
    frames, adjs = frames[:want], adjs[:want]
    vector = run_vector(switch, name, frames, adjs)
    plain = run_plain(switch, name, frames, adjs)
    assert vector == plain


@pytest.mark.parametrize("side", ["memif1/0", "memif1/1", None])
@pytest.mark.parametrize("run", [run_vector, run_plain])
def test_ip4_input_leaves_each_destination_for_ip4_lookup(
    switch: Switch, side: str | None, run: Callable[..., tuple[list[tuple], dict[str, int]]]
) -> None:
    """What ip4-lookup reads (``meta.ip4_dst``, 0 before) is the header's destination of
    every packet ip4-input passes, on its clean-vector path (one interface), its full
    check (random frames from both) and its plain path."""
    rnd = random.Random(str(side))
    if side is None:
        frames, _ = frames_for(switch, rnd, 200)
    else:
        sw_if = switch.interface(side)
        ips = [packet.ipv4(packet.ip4("10.1.0.2"), rnd.randbytes(4), 17, b"x" * k, ttl=9)
               for k in range(64)]  # fmt: skip
        frames = [(sw_if.sw_if_index, ip if sw_if.ip_mode else packet.ethernet(
            ETH_MAC, PEER_MAC, 0x0800, ip)) for ip in ips]  # fmt: skip
    out, _ = run(switch, "ip4-input", frames, [0] * len(frames))
    ip_mode = switch.runtime.tables.ip_mode
    passed = 0
    for (rx, frame), o in zip(frames, out, strict=True):
        if o[0] == "ip4-lookup":
            at = (0 if ip_mode[rx] else packet.ETH_HLEN) + 16
            assert o[-1] == int.from_bytes(frame[at : at + 4], "big")
            passed += 1
    assert passed >= (64 if side else 20)


def flawed(ip: bytes, flaw: str) -> bytes:
    """``ip`` (a good 20-byte-header packet) with options or one field wrong; the
    header checksum is made good again unless it is the flaw."""
    p = bytearray(ip)
    if flaw == "options":  # IHL 6
        p = bytearray(ip[:20] + b"\x01" * 4 + ip[20:])
        p[0], p[2:4] = 0x46, len(p).to_bytes(2, "big")
    elif flaw == "ttl":
        p[8] = 0
    elif flaw == "length":
        p[2:4] = (len(p) + 1).to_bytes(2, "big")
    elif flaw == "frag":
        p[6:8] = b"\x00\x01"
    ihl = (p[0] & 15) * 4
    if flaw != "checksum":
        p[10:12] = b"\0\0"
        p[10:12] = packet.checksum(bytes(p[:ihl])).to_bytes(2, "big")
    else:
        p[10] ^= 0x10
    return bytes(p)


@pytest.mark.parametrize("name", ["ip4-input", "ip4-lookup", "ip4-rewrite"])
@pytest.mark.parametrize("side", ["memif1/0", "memif1/1"])
@pytest.mark.parametrize("flaw", [None, "options", "checksum", "ttl", "mac", "length", "frag"])
@pytest.mark.parametrize("hosts", [4, 1])
def test_node_vector_path_of_a_clean_vector_matches_its_plain_path(
    switch: Switch, name: str, side: str, flaw: str | None, hosts: int
) -> None:
    """Vectors of good packets from one interface (the nodes' shortest vector paths),
    with padding and group MACs, and at most one packet with one ``flaw`` that the short
    path must see: the same outcome as the plain paths.  To ``hosts`` destinations: 1 is
    one adjacency for the whole vector (ip4-rewrite's broadcast rewrite)."""
    rnd = random.Random(name + side)
    sw_if = switch.interface(side)
    frames, adjs = [], []
    for k in range(64):
        dst = packet.ip4(rnd.choice(["10.9.1.1", "10.9.7.7", "10.2.0.7", "10.1.0.5"][:hosts]))
        ip = packet.ipv4(packet.ip4("10.1.0.2"), dst, 17, rnd.randbytes(k % 9), ttl=2 + k % 60)
        if k == 7 and flaw is not None:
            ip = flawed(ip, flaw)
        if not sw_if.ip_mode:
            dmac = packet.BROADCAST if k == 3 else PEER_MAC if (k, flaw) == (7, "mac") else ETH_MAC
            ip = packet.ethernet(dmac, PEER_MAC, 0x0800, ip).ljust(60, b"\0")  # padded
        frames.append((sw_if.sw_if_index, ip))
        adjs.append(switch.runtime.ip4_fib.lookup_one(int.from_bytes(dst, "big")))
    frames, adjs = passed(switch, name, frames, adjs)
    assert len(frames) > SMALL_VECTOR
    assert run_vector(switch, name, frames, adjs) == run_plain(switch, name, frames, adjs)


def test_rewrite_adds_and_strips_the_ethernet_header(switch: Switch) -> None:
    """From the mode ip side to a resolved Ethernet next hop and back: the header is
    added (the neighbour's and the interface's MACs) or stripped, TTL one less."""
    eth, ipm = switch.interface("memif1/0"), switch.interface("memif1/1")
    to_eth = packet.ipv4(packet.ip4("10.2.0.2"), packet.ip4("10.9.0.1"), 17, b"u" * 30, ttl=9)
    to_ip = packet.ipv4(packet.ip4("10.1.0.5"), packet.ip4("10.2.0.2"), 17, b"v" * 30, ttl=9)
    frames = [(ipm.sw_if_index, to_eth), (eth.sw_if_index, packet.ethernet(
        ETH_MAC, PEER_MAC, 0x0800, to_ip))] * 3  # fmt: skip
    fib = switch.runtime.ip4_fib
    adjs = [fib.lookup_one(int.from_bytes(p[-50 + 16 : -50 + 20], "big")) for _, p in frames]
    for run in (run_vector, run_plain):
        (out, errors) = run(switch, "ip4-rewrite", frames, adjs)
        assert not errors
        first, second = out[0], out[1]
        assert first[0] == second[0] == "l2-output"
        assert first[1][:14] == bytes.fromhex("02fe00000105") + ETH_MAC + b"\x08\x00"
        assert first[1][14 + 8] == 8 and packet.checksum(first[1][14:34]) == 0
        assert first[1][34:] == b"u" * 30 and first[2] == eth.sw_if_index
        assert second[1][8] == 8 and second[1][20:] == b"v" * 30 and second[2] == ipm.sw_if_index
        assert packet.checksum(second[1][:20]) == 0


def test_a_full_fib_refuses_a_route_and_keeps_what_it_had() -> None:
    """Ip4Routes over a small FIB: the route past the limit is refused with everything as
    it was; a neighbour learned then still completes its adjacency (no /32 for it)."""
    fib = Ip4Fib(max_routes=len(SPECIAL_ROUTES) + 4)
    adjs = AdjacencyTable()
    routes = Ip4Routes(fib, adjs)
    adjs.interface(1, ETH_MAC, False)
    routes.address_add(1, packet.ip4("10.1.0.1"), 24)  # 4 routes: /32, /24, network, broadcast
    before = (fib.routes(), {k: dict(v) for k, v in routes.paths.items()}, len(adjs))
    hop = adjs.neighbor(1, packet.ip4("10.1.0.9"))
    with pytest.raises(FibError):
        routes.add(0x0A090000, 16, Source.CLI, hop)
    adjs.release(hop)
    assert (fib.routes(), {k: dict(v) for k, v in routes.paths.items()}, len(adjs)) == before
    routes.neighbor_learned(1, packet.ip4("10.1.0.9"), PEER_MAC)  # no room for its /32
    assert fib.get(0x0A010009, 32) is None and len(adjs) == before[2]
    routes.address_del(1, packet.ip4("10.1.0.1"), 24)
    assert len(fib) == len(SPECIAL_ROUTES) and len(adjs) == 2  # drop and receive stay


@pytest.mark.parametrize("odd", [None, 0x0806, 0x86DD])
def test_ethernet_input_of_an_addressed_interface_matches_its_plain_path(
    switch: Switch, odd: int | None
) -> None:
    """A vector of IPv4 frames on an addressed interface (ethernet-input's routed short
    path) and the same with one ARP or IPv6 frame among them: as the plain path."""
    eth = switch.interface("memif1/0")
    ip = packet.ipv4(packet.ip4("10.1.0.2"), packet.ip4("10.9.1.1"), 17, b"x" * 18)
    frames = [(eth.sw_if_index, packet.ethernet(ETH_MAC, PEER_MAC, 0x0800, ip))] * 16
    if odd is not None:
        frames[5] = (eth.sw_if_index, packet.ethernet(ETH_MAC, PEER_MAC, odd, bytes(46)))
    vector = run_vector(switch, "ethernet-input", frames, [0] * len(frames))
    assert vector == run_plain(switch, "ethernet-input", frames, [0] * len(frames))
    want = {None: {"ip4-input"}, 0x0806: {"ip4-input", "arp-input"}}
    assert {o[0] for o in vector[0]} == want.get(odd, {"ip4-input", "error-drop"})
