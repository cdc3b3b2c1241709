"""Issue 15, bounded cost per peer on the data path: attacks on a real memifd.

Each test starts memifd (``start``) with master ports in one bridge domain: two honest
peers (a, b) exchange frames while a hostile peer on another port does what no honest
peer does with its rings: posts 1-byte receive buffers, publishes a chain it never
ends, opens big rings on every queue, writes bad descriptors.  The peers are
:class:`memif.Socket` endpoints in this process; the hostile one is a real connected
client whose shared rings are rewritten by hand, as a malicious process mapping the
same memory would.  Each test asserts that memifd stays up and answers its CLI, that
a and b keep forwarding (bounded loss and gaps), that memifd's RSS and fds stay
bounded, and that a counter names what happened; it prints its measurements.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from attack_rig import (
    BAD,
    A,
    B,
    Legit,
    Paced,
    Peers,
    bridged_ports,
    frame,
    run_for,
    start_ports,
    start_with_hostile_peer,
)
from helpers import Memifd, SwitchRig, mac
from hostile_peer import NOBODY, Child, library_client, spawn_as
from memifd_probe import Watch, alive, cpu_while, error_count, errors

from memif import packet, wire
from memif.queue import RxBatch, TxQueue
from memif.testing import drive, pair, unique_name

NEXT = wire.DESC_FLAG_NEXT


def post_one_byte_buffers(name: str, stopped: Callable[[], bool]) -> int:
    """The hostile slave: connect, post 1-byte receive buffers on a 4096-slot ring and
    keep posting them until ``stopped()``; returns the frames it received."""
    with library_client(name, ring_size=4096, buffer_size=2048) as (sock, bad):
        posted = bad.rx_queues[0].ring  # the slave's M2S ring: the buffers it posts
        posted.d_length[:] = 1
        got = 0
        while not stopped():
            sock.poll(0.001)
            if bad.connected and bad.rx_queues[0].pending():
                got += len(bad.recv())  # take what it got, post 1-byte buffers again
                posted.d_length[:] = 1
        return got


@contextmanager
def hostile_child(
    start, uid: int, slave: Callable[[str, Callable[[], bool]], int]
) -> Iterator[tuple[Memifd, Peers, Legit, Child]]:
    """memifd with ports a, b and a hostile one, whose peer is ``slave(socket name,
    stopped)`` in a child as ``uid``; yielded once that port is up (or the child ended).
    On exit the peers are closed and the child is finished."""
    d, peers, legit, bad_name = start_ports(start, hostile_uid=uid)
    child = spawn_as(uid, lambda stopped: slave(bad_name, stopped))
    try:
        peers.pump(lambda: child.done or d.interfaces()[BAD]["link_up"], "hostile connected")
        yield d, peers, legit, child
    finally:
        peers.close()
        if not child.done:
            child.finish()


# --------------------------------------------------------------------------- item 4
@pytest.mark.parametrize("s2m", [True, False], ids=["s2m", "m2s"])
def test_chained_transmit_is_byte_exact(s2m: bool) -> None:
    """TxQueue.tx_chained (the switch's chained transmit, one vector operation): every
    packet arrives whole, in order, across the ring's end, including one whose last
    piece is the last byte of the source rows; what does not fit is not published."""
    with pair(ring_size=16, buffer_size=256, reconnect_interval=None) as (server, client):
        sender, receiver = (client, server) if s2m else (server, client)
        rows = np.random.default_rng(15).integers(0, 256, (6, 1000), dtype=np.uint8)
        idx = np.array([5, 0, 3, 2, 1, 4])  # row 5 is the last: its tail ends the rows
        lengths = np.array([1000, 1, 256, 257, 999, 512])  # 4+1+1+2+4+2 = 14 slots
        want = [bytes(rows[i, :n]) for i, n in zip(idx.tolist(), lengths.tolist(), strict=True)]
        txq = sender.tx_queues[0]
        for _ in range(4):  # 56 slots through a ring of 16: it wraps
            assert txq.tx_chained(rows, idx, lengths) == 6
            assert txq.tx_chained(rows, idx, lengths) == 0  # 2 slots left: 1000 bytes need 4
            assert receiver.recv() == want
        assert txq.stats.packets == 24


def test_chained_gather_matches_each_packet_assembled() -> None:
    """RxBatch.gather of chained packets (what memif-input copies into the pool): short
    pieces in one vector operation, long ones one by one, any width, several regions,
    pieces ending at a region's last byte: the first ``width`` bytes of every packet."""
    rng = np.random.default_rng(15)
    for trial in range(40):
        regions = [rng.integers(0, 256, int(rng.integers(50, 5000)), np.uint8) for _ in "abc"]
        per_packet = rng.integers(1, 8, int(rng.integers(1, 300)))
        n_segs = int(per_packet.sum())
        region = rng.integers(0, 3, n_segs).astype(np.uint16)
        sizes = np.array([len(regions[r]) for r in region.tolist()])
        top = 4 if trial % 2 else 3000  # all short pieces, or a mix
        length = np.minimum(rng.integers(1, top, n_segs), sizes).astype(np.uint32)
        offset = (rng.random(n_segs) * (sizes - length + 1)).astype(np.uint32)
        offset[::7] = (sizes - length)[::7]  # ending at the region's end
        first = (np.cumsum(per_packet) - per_packet).astype(np.intp)
        total = np.add.reduceat(length.astype(np.uint64), first)
        batch = RxBatch(regions, region, offset, length, first, total)
        width = int(rng.integers(1, 9000))
        rows = batch.gather(width)
        for i in range(len(batch)):
            want = batch[i][:width].tobytes()
            assert rows[i, : len(want)].tobytes() == want, (trial, i)


@pytest.mark.slow
@pytest.mark.parametrize("uid", [0, NOBODY], ids=["root", "nobody"])
def test_one_byte_receive_buffers_do_not_stall_the_switch(start, uid: int) -> None:
    """The hostile port (a child process as root or nobody) posts 1-byte receive
    buffers on 4096 slots (a 1500-byte frame fits as 1500 one-byte pieces) and is
    flooded 1500-byte frames (4 kpps) while a sends b 4 kpps of unicast: the switch
    neither chains one byte per slot nor stalls; the copies for the hostile port are
    dropped by name."""
    with hostile_child(start, uid, post_one_byte_buffers) as (d, peers, legit, child):
        watch = Watch(d)
        flood = [frame(packet.BROADCAST, mac(1), k, 1500) for k in range(8)]
        attack = Paced(legit.a, flood)  # flooded to b and to the hostile port
        t0 = run_for(3.0, legit, attack)
        gap, loss = legit.longest_gap(t0), legit.loss
        alive(d)
        mem = watch.bounded("1-byte buffers")
        assert d.interfaces()[BAD]["link_up"]  # it was there all along
        child.finish()
        dropped = error_count(d, f"{BAD}-output", "rx-buffer-too-small")
        print(
            f"\n1-byte receive buffers (uid {uid}): {legit.report(t0)}; {attack.sent} frames "
            f"flooded, {dropped} copies for the hostile port dropped as rx-buffer-too-small; {mem}"
        )
        assert gap < 0.5 and loss < 0.05, (gap, loss)
        assert dropped > attack.sent // 2
        assert d.interfaces()[BAD]["tx_errors"] >= dropped


def test_chained_frames_still_go_over_ordinary_buffers(start) -> None:
    """9000-byte frames over 2048-byte buffers, both ways through the switch: chained
    on receive, one pool buffer inside, chained again on transmit, byte for byte."""
    names = [unique_name(f"jumbo-{k}") for k in range(2)]
    d = start(bridged_ports(*names))
    peers = Peers()
    a = peers.add(names[0], "peer-a", buffer_size=2048)
    b = peers.add(names[1], "peer-b", buffer_size=2048)
    try:
        peers.pump(lambda: a.connected and b.connected, "connect")
        jumbo = [frame(packet.BROADCAST, mac(1), k, 9000 - 7 * k) for k in range(16)]
        small = [frame(packet.BROADCAST, mac(1), 100 + k, 60 + k) for k in range(16)]
        mixed = [f for pair in zip(jumbo, small, strict=True) for f in pair]
        assert a.send(mixed) == len(mixed)
        got: list[bytes] = []

        def arrived() -> bool:
            got.extend(b.recv())
            return len(got) >= len(mixed)

        peers.pump(arrived, "jumbo frames")
        assert got == mixed
        assert d.interfaces()[B]["tx_errors"] == 0
    finally:
        peers.close()


# --------------------------------------------------------------------------- item 6
def unterminated_chain(name: str, stopped: Callable[[], bool]) -> int:
    """The hostile slave: publish one 64-byte piece flagged NEXT and nothing after it
    until ``stopped()``; then end the chain (a second piece, the same 64 bytes) and
    wait until memifd took it.  Returns the slots memifd released."""
    with library_client(name) as (sock, bad):
        q = bad.tx_queues[0]
        ring = q.ring  # the slave's S2M ring: what it sends
        q.alloc(1).buffer(0)[:64] = np.frombuffer(frame(packet.BROADCAST, mac(3), 7), np.uint8)
        s = ring.head & ring.mask
        ring.d_flags[s], ring.d_length[s] = NEXT, 64
        ring.head = ring.head + 1
        ring.kick()
        while not stopped():
            sock.poll(0.01)
        s2 = ring.head & ring.mask  # the chain's end: the same buffer again
        ring.d_region[s2], ring.d_offset[s2] = ring.d_region[s], ring.d_offset[s]
        ring.d_flags[s2], ring.d_length[s2] = 0, 64
        ring.head = ring.head + 1
        ring.kick()
        taken = drive(sock, until=lambda: ring.tail == ring.head, timeout=15)
        assert taken, "memifd never took the finished chain"
        return ring.tail


@pytest.mark.slow
@pytest.mark.parametrize("uid", [0, NOBODY], ids=["root", "nobody"])
def test_an_unterminated_chain_does_not_spin_the_loop(start, uid: int) -> None:
    """One descriptor with NEXT, never followed (a child as root or nobody): memifd
    sleeps (CPU far under one core), says so in show errors (memif-input
    chain-incomplete), forwards for others, and takes the chain once it ends."""
    with hostile_child(start, uid, unterminated_chain) as (d, peers, legit, child):

        def idle() -> None:  # idle, but our control socket answers
            peers.poll()
            time.sleep(0.01)

        # its descriptor is published right after it connects: memifd may have been
        # busy for it from then on; measure from now
        cpu = cpu_while(d.proc.pid, 2.0, idle)
        waits = error_count(d, "memif-input", "chain-incomplete")
        print(
            f"\nunterminated chain (uid {uid}): memifd CPU {cpu:.0%} of a core over 2 s; "
            f"{waits} chain-incomplete"
        )
        assert cpu < 0.5, f"memifd at {cpu:.0%} CPU with a pending chain"
        assert waits >= 1  # show errors: memif-input chain-incomplete
        watch = Watch(d)
        run_for(1.0, legit, lambda: None)
        assert legit.loss < 0.05
        watch.bounded("pending chain")
        child.finish()  # the chain's end: one 128-byte packet, flooded to a and b
        peers.pump(lambda: d.interfaces()[BAD]["rx_packets"] >= 1, "the chain's end")
        assert d.interfaces()[BAD]["rx_bytes"] == 128
        alive(d)


# --------------------------------------------------------------------------- item 9
def test_configurations_that_drain_the_pool_are_refused(start) -> None:
    """A zero-copy slave port posting 8 x 4096 receive buffers from a 32768-buffer pool
    is refused with the arithmetic; so is one more zero-copy port than the pool keeps a
    reserve for; the ports that fit keep forwarding."""
    names = [unique_name(f"pool-{k}") for k in range(2)]
    d = start(bridged_ports(*names), buffers=32768)
    d.ok("create memif socket id 9 filename " + unique_name("pool-slave"))
    said = d.fails("create interface memif id 0 socket-id 9 slave rx-queues 8 ring-size 4096")
    print(f"\nrefused: {said}")
    assert said == (
        "memif9/0: 8 queues x 4096 slots = 32768 buffers exceeds the pool's quota per port"
        " 16384 (--buffers 32768)"
    )
    d.ok("create interface memif id 1 socket-id 9 slave rx-queues 4 ring-size 4096")
    said = d.fails("create interface memif id 2 socket-id 9 slave rx-queues 3 ring-size 4096")
    assert said == (
        "memif9/2: 3 queues x 4096 slots = 12288 buffers, with 16384 posted by other"
        " zero-copy ports, leaves less than 8192 of 32768 buffers for input (--buffers)"
    )
    d.ok("create interface memif id 3 socket-id 9 slave rx-queues 2 ring-size 4096")  # just fits
    d.ok("create interface memif id 4 socket-id 9 slave no-zero-copy rx-queues 8 ring-size 4096")
    assert set(d.interfaces()) == {A, B, "memif9/1", "memif9/3", "memif9/4"}
    peers = Peers()
    try:
        legit = Legit.connect(peers, peers.add(names[0], "peer-a"), peers.add(names[1], "peer-b"))
        run_for(0.5, legit, lambda: None)
        assert legit.loss < 0.05
    finally:
        peers.close()


ONE = np.frombuffer(frame(mac(3), mac(3), 3), np.uint8)
"""The hostile peer's frame, to itself: filtered by l2-fwd, so what it costs is
memifd's alone, not b's ring."""


def keep_rings_full(start, what: str, refill: Callable[[TxQueue], None]) -> int:
    """3 s of a -> b unicast while the hostile slave of a master port (polled first;
    8 queues of 4096 slots; memifd's pool: 2048 buffers) keeps its transmit rings full
    with ``refill(queue)`` and throws away what it receives.  Asserts memifd alive, its
    memory bounded, a -> b loss under 10 % and no gap of 0.5 s; prints; returns the
    frames memifd took from the hostile port."""
    d, peers, legit, bad, hostile = start_with_hostile_peer(
        start, hostile_first=True, rx_queues=8, tx_queues=8, ring_size=4096
    )
    try:
        assert len(bad.tx_queues) == 8
        watch = Watch(d)

        def attack() -> None:
            for q in bad.tx_queues:
                refill(q)
            if bad.rx_queues[0].pending():
                bad.recv()

        t0 = run_for(3.0, legit, attack)
        alive(d)
        mem = watch.bounded(what)
        taken = d.interfaces()[hostile]["rx_packets"]
        print(f"\n{what}: {legit.report(t0)}; hostile port rx {taken} frames; {mem}")
        assert legit.loss < 0.1 and legit.longest_gap(t0) < 0.5
        return taken
    finally:
        peers.close()


@pytest.mark.slow
def test_a_peer_with_every_ring_full_takes_at_most_the_quota_per_turn(start) -> None:
    """The hostile slave of a master port opens 8 queues of 4096 slots (memifd's pool:
    2048 buffers) and keeps every ring full: memif-input takes at most the quota per
    port and turn from it (2 x 4096 x 8 = 64 Ki descriptors a turn before), so a still
    finds buffers and b gets its frames."""
    flood = np.tile(ONE, (4096, 1))

    def refill(q: TxQueue) -> None:  # one vector operation per queue
        if q.free_slots() > 1024:
            tx = q.alloc(4096, wrap=True)
            tx.fill(flood[: tx.count])
            q.tx_burst(tx, len(ONE))

    assert keep_rings_full(start, "8 x 4096 full rings", refill) > 4096  # the attack ran


@pytest.mark.slow
def test_chains_of_one_byte_pieces_do_not_stall_the_switch(start) -> None:
    """The hostile slave sends every frame as 64 one-byte pieces, on 8 queues of 4096
    slots kept full: what memif-input assembles per turn is bounded, a and b go on."""
    pieces = np.tile(ONE[:, None], (64, 1))  # byte k of a frame in slot k % 64
    flags = np.tile(np.array([NEXT] * 63 + [0], np.uint16), 64)

    def refill(q: TxQueue) -> None:
        if q.free_slots() == q.size:
            tx = q.alloc(q.size, wrap=True)
            tx.fill(pieces[: tx.count])
            q.tx_burst(tx, 1, flags=flags)

    taken = keep_rings_full(start, "64 x 1-byte chains on 8 x 4096 rings", refill)
    assert taken > 1024  # the attack ran


@pytest.mark.slow
def test_a_master_that_never_gives_back_holds_at_most_the_quota(start) -> None:
    """memifd's zero-copy slave port lends pool buffers on transmit; its master never
    gives a slot back.  3 queues x 512 slots in flight + 512 posted would be the whole
    2048-buffer pool: the port stops lending at the quota (1024) and copies the rest
    into its own ring buffers, so a and b still find buffers."""
    a_name, b_name, zc_name = (unique_name(f"zc-{k}") for k in "abz")
    zc_port = "memif3/0"
    d = start(
        bridged_ports(a_name, b_name)
        + [
            f"create memif socket id 3 filename {zc_name}",
            "create interface memif id 0 socket-id 3 slave tx-queues 3 ring-size 512",
            f"set interface l2 bridge {zc_port} 1",
            f"set interface state {zc_port} up",
        ]
    )
    peers = Peers()
    a, b = peers.add(a_name, "peer-a"), peers.add(b_name, "peer-b")
    hoarder = peers.add(zc_name, "hoarder", role="server")
    try:
        peers.pump(lambda: hoarder.connected, "the hoarder connected")
        legit = Legit.connect(peers, a, b)
        watch = Watch(d)
        # a floods; every queue of the hoarder fills and stays full
        attack = Paced(a, [frame(packet.BROADCAST, mac(1), k) for k in range(8)])
        t0 = run_for(2.0, legit, attack)
        alive(d)
        mem = watch.bounded("hoarder")
        port = d.interfaces()[zc_port]
        held = port["buffers_held"]
        no_buffers = error_count(d, "memif-input", "no-buffers")
        print(
            f"\nmaster never gives back: port holds {held} of 2048 pool buffers; "
            f"{legit.report(t0)}; no-buffers {no_buffers}; {mem}"
        )
        assert port["tx_packets"] >= 3 * 512  # every ring filled: some lent, some copied
        assert held <= 1024
        assert no_buffers == 0 and legit.loss < 0.05
    finally:
        peers.close()


def test_over_quota_transmit_is_copied_and_every_buffer_comes_home(switch_rig) -> None:
    """In-process switch (4096 buffers, quota 2048): port b posts 1024 and has 2 x 1024
    transmit slots; its master reads nothing at first, so b lends 1024 pool buffers,
    then copies into its rings' own buffers.  Every frame arrives intact once the master
    reads, the lent buffers come back, and after the disconnect the pool is whole."""
    rig = switch_rig(SwitchRig, "slave", "zc-quota", n_buffers=4096, data_size=2048)
    a_sw, a = rig.create_port(1, {}, ring_size=256)
    b_sw, b = rig.create_port(2, {}, ring_size=1024, tx_queues=2)
    rig.run(lambda: a.connected and b.connected and b_sw.link_up, "connect")
    pool, port = rig.sw.pool, rig.sw.ports[b_sw.sw_if_index]
    assert port.zero_copy and pool.quota_per_port == 2048 and port.held == 1024
    sent = [frame(packet.BROADCAST, mac(1), k, 60 + k % 900) for k in range(2048)]
    for k in range(0, 2048, 256):
        assert a.send(sent[k : k + 256]) == 256
        rig.run(lambda k=k: b_sw.counters.tx_packets >= k + 256, "b transmits")
    assert port.held == 2048  # 1024 posted + 1024 lent; the other 1024 were copied
    assert sum(q.in_flight for q in port.iface.tx_queues) == 2048
    got: list[bytes] = []
    for qid in (0, 1):
        while more := b.recv(1024, queue=qid):
            got += more
    assert sorted(got) == sorted(sent)
    assert b_sw.counters.tx_errors == 0
    # b reclaims what a queue gave back when it next transmits on it: one frame each
    more = [frame(packet.BROADCAST, mac(1), tag) for tag in (4096, 4097)]
    for k, f in enumerate(more, 2049):
        assert a.send([f]) == 1
        rig.run(lambda k=k: b_sw.counters.tx_packets == k, "one more")
    assert port.held == 1024 + 2  # the 1024 lent came home; the new frames are lent
    assert sorted(b.recv(queue=0) + b.recv(queue=1)) == more
    assert pool.n_free + sum(p.held for p in rig.sw.ports.values()) == pool.n_buffers
    rig.close_peers()
    rig.run(lambda: not a_sw.link_up and not b_sw.link_up, "all down")
    assert pool.n_free == pool.n_buffers
    assert len(np.unique(pool.free_buffers())) == pool.n_buffers


def test_chained_frames_on_a_zero_copy_port_are_dropped_by_name(switch_rig) -> None:
    """The master of a zero-copy slave port fills the pool buffers memifd posted and
    publishes them as chains: each is dropped as zero-copy-chained (it raised before),
    the buffers go back to the pool, the port stays up and forwards what follows."""
    rig = switch_rig(SwitchRig, "slave", "zc-chain", n_buffers=2048, data_size=2048)
    a_sw, a = rig.create_port(1, {}, ring_size=256)
    bad_sw, bad = rig.create_port(2, {}, ring_size=256)
    rig.run(lambda: a.connected and bad.connected and bad_sw.link_up, "connect")
    pool = rig.sw.pool
    ring = bad.tx_queues[0].ring  # the master fills the buffers the switch posted
    t = ring.tail
    for k in range(6):  # three chains of two
        ring.d_flags[(t + k) & ring.mask] = NEXT if k % 2 == 0 else 0
        ring.d_length[(t + k) & ring.mask] = 64
    ring.tail = t + 6
    ring.kick()
    rig.run(lambda: rig.errors().get("zero-copy-chained", 0) == 3, "chains dropped")
    assert bad_sw.counters.drops == 3 and bad_sw.link_up and bad.connected
    rig.sw.run_once()
    assert pool.n_free + sum(p.held for p in rig.sw.ports.values()) == pool.n_buffers
    good = frame(packet.BROADCAST, mac(2), 1)
    assert bad.send([good]) == 1
    rig.run(lambda: good in a.recv(), "a frame after the chains")


# --------------------------------------------------------------------------- item 10
def test_bad_descriptor_counters_reach_show_errors_and_outlive_the_peer(start) -> None:
    """Bad descriptors from the hostile peer: counted as memif-input errors and the
    port's drops, still there after it disconnects, gone with clear errors/interfaces."""
    d, peers, legit, bad, _ = start_with_hostile_peer(start)
    try:
        ring = bad.tx_queues[0].ring
        size = bad.regions[-1].size
        n_regions = len(bad.regions)
        garbage = [
            (0, n_regions + 3, 64, 0),  # bad-region
            (0, n_regions - 1, 64, size - 8),  # bad-offset
            (0, n_regions - 1, 0, 0),  # zero-length
        ]
        start_at = ring.head
        for k in range(300):
            s = (start_at + k) & ring.mask
            flags, region, length, offset = garbage[k % 3]
            ring.d_flags[s], ring.d_region[s] = flags, region
            ring.d_length[s], ring.d_offset[s] = length, offset
        ring.head = start_at + 300
        ring.kick()
        want = {"bad-region": 100, "bad-offset": 100, "zero-length": 100}

        def counted() -> bool:
            errs = errors(d)
            return all(errs.get(("memif-input", e), 0) == n for e, n in want.items())

        peers.pump(counted, "bad descriptors counted")
        assert d.interfaces()[BAD]["drops"] == 300
        run_for(0.3, legit, lambda: None)
        assert legit.loss < 0.05
        peers.sockets[2].close()  # the hostile peer leaves
        peers.sockets.pop()
        peers.pump(lambda: d.interfaces()[BAD]["link_up"] is False, "hostile gone")
        assert counted() and d.interfaces()[BAD]["drops"] == 300
        reasons = {e["error"]: e["reason"] for e in d.ok("show errors")["data"]}
        assert reasons["bad-offset"] == "descriptor points outside its region"
        text = d.ctl("show", "errors").stdout
        assert "descriptor names a region that does not exist" in text
        d.ok("clear errors")
        assert not any(e in {x[1] for x in errors(d)} for e in want)
        d.ok("clear interfaces")
        assert d.interfaces()[BAD]["drops"] == 0
        alive(d)
    finally:
        peers.close()
