"""Jumbo frames chained over ring buffers: every byte, every length, every path.

The chained paths copy a whole vector at once: receive assembles each frame's
buffers into a pool row (``RxBatch.copy_into``: the buffers as ``item``-byte windows,
straight from evenly spaced ring buffers or gathered a chunk at a time, odd chains
piece by piece), transmit cuts pool rows over the ring's buffers
(``TxQueue.tx_chained``).  Each is checked here against the frames' own bytes: on
built batches (any layout, several regions, odd chains, rows with and without room),
on real connected queues (lengths 1..9000 across ring wraps, both ring directions),
and through the switch in each role.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from helpers import SwitchRig, drain, mac

import memif
from memif import packet
from memif.queue import RxBatch, row_items
from memif.testing import pair

EDGES = [1, 2, 63, 64, 255, 256, 257, 1000, 2047, 2048, 2049, 4095, 4096, 4097, 8191, 8192, 9000]
SENTINEL = 0xA5


def chained_batch(rng: np.random.Generator, layout: str) -> RxBatch:
    """A batch of chained packets whose buffers lie as ``layout`` says:

    - ``ring``: one region, buffers of a ring's fixed slots (evenly spaced), the burst
      wrapping the ring's end, every buffer but a packet's last one full;
    - ``anywhere``: one region, full buffers at random offsets (a zero-copy peer's mbufs);
    - ``odd``: several regions, buffers of any length anywhere (short ones before a
      packet's end, some ending at their region's last byte).
    """
    per_packet = rng.integers(1, 7, int(rng.integers(1, 60)))
    n_segs = int(per_packet.sum())
    first = (np.cumsum(per_packet) - per_packet).astype(np.intp)
    last = np.zeros(n_segs, bool)
    last[np.append(first[1:], n_segs) - 1] = True
    wrap = None
    if layout == "odd":
        regions = [rng.integers(0, 256, int(rng.integers(3000, 40000)), np.uint8) for _ in "abc"]
        region = rng.integers(0, 3, n_segs).astype(np.uint16)
        sizes = np.array([len(regions[r]) for r in region.tolist()])
        length = np.minimum(rng.integers(1, 2500, n_segs), sizes).astype(np.uint32)
        offset = (rng.random(n_segs) * (sizes - length + 1)).astype(np.uint32)
        offset[::5] = (sizes - length)[::5]  # ending at the region's end
    else:
        buf = int(rng.choice([1000, 2048]))
        slots = n_segs + int(rng.integers(0, 8))
        regions = [rng.integers(0, 256, slots * buf + int(rng.integers(0, 3)), np.uint8)]
        region = np.zeros(n_segs, np.uint16)
        length = np.full(n_segs, buf, np.uint32)
        length[last] = rng.integers(1, buf + 1, int(last.sum()))
        if layout == "ring":
            wrap = int(rng.integers(1, n_segs + 1))
            slot = (np.arange(n_segs) + slots - wrap) % slots  # wraps after `wrap` buffers
        else:
            slot = rng.permutation(slots)[:n_segs]
        offset = (slot * buf).astype(np.uint32)
    total = np.add.reduceat(length.astype(np.uint64), first)
    return RxBatch(regions, region, offset, length, first, total, wrap=wrap)


def assembled(batch: RxBatch) -> list[bytes]:
    """Each packet's bytes, buffer by buffer (the reference)."""
    return [b"".join(bytes(s) for s in batch.segments(i)) for i in range(len(batch))]


@pytest.mark.parametrize("layout", ["ring", "anywhere", "odd"])
@pytest.mark.parametrize("room", [0, 3000], ids=["exact-rows", "roomy-rows"])
def test_chained_copy_into_is_byte_exact_and_stays_in_its_rows(layout: str, room: int) -> None:
    """Each packet's first ``width`` bytes land in its row; nothing is written past a
    row's ``width`` bytes (the spill of a whole-buffer copy stays inside), nor in rows
    no packet was given."""
    rng = np.random.default_rng(["ring", "anywhere", "odd"].index(layout) * 7 + room)
    for trial in range(30):
        batch = chained_batch(rng, layout)
        want = assembled(batch)
        longest = max(len(w) for w in want)
        width = longest if trial % 3 else int(rng.integers(1, longest + 1))  # or cut short
        pool = np.full((80, width + room), SENTINEL, np.uint8)
        take = int(rng.integers(1, len(batch) + 1))  # the first packets, as when the pool runs low
        idx = rng.permutation(80)[:take]
        batch.copy_into(row_items(pool, width + room), idx)
        for k, i in enumerate(idx.tolist()):
            n = min(len(want[k]), width)
            assert pool[i, :n].tobytes() == want[k][:n], (trial, k)
        untouched = np.setdiff1d(np.arange(80), idx)
        assert (pool[untouched] == SENTINEL).all()
        # gather into a window of a wider array: its neighbours keep their bytes
        wide = np.full((len(batch), width + 20), SENTINEL, np.uint8)
        batch.gather(width, wide[:, 10 : 10 + width])
        for k in range(len(batch)):
            n = min(len(want[k]), width)
            assert wide[k, 10 : 10 + n].tobytes() == want[k][:n], (trial, k)
        assert (wide[:, :10] == SENTINEL).all() and (wide[:, 10 + width :] == SENTINEL).all()


def frames_1_to_9000(rng: np.random.Generator, n: int) -> list[bytes]:
    """The edge lengths, then random ones in 1..9000, of random bytes."""
    lengths = EDGES + rng.integers(1, 9001, n - len(EDGES)).tolist()
    return [rng.bytes(k) for k in lengths]


def relay(rxq: memif.RxQueue, txq: memif.TxQueue, pool: np.ndarray, free: list[int]) -> int:
    """What the switch does with a vector of chained frames, with the queues alone:
    copy_into pool rows (whole rows), then tx_chained out of them.  Returns how many."""
    batch = rxq.rx_burst()
    n = len(batch)
    if n == 0:
        return 0
    idx = np.array(free[:n], np.intp)
    batch.copy_into(row_items(pool, pool.shape[1]), idx)
    lengths = batch.lengths.copy()
    rxq.refill()
    sent = 0
    while sent < n:
        sent += txq.tx_chained(pool, idx[sent:], lengths[sent:])
    return n


@pytest.mark.parametrize("buffer_size", [2048, 1000])  # pool rows whole buffers' worth, or not
@pytest.mark.parametrize("direction", ["client-to-server", "server-to-client"])
def test_lengths_1_to_9000_across_ring_wraps_through_both_chained_paths(
    buffer_size: int, direction: str
) -> None:
    """A relay of two connected pairs, chained receive into pool rows then chained
    transmit: every frame of 1..9000 bytes arrives whole and in order, as the rings'
    32 slots wrap again and again (each frame takes 1..10 slots)."""
    rng = np.random.default_rng(buffer_size)
    frames = frames_1_to_9000(rng, 120)
    pool = np.full((64, 10240), SENTINEL, np.uint8)
    free = rng.permutation(64).tolist()  # pool rows in any order
    opts = dict(ring_size=32, buffer_size=buffer_size)
    with pair(**opts) as (s1, c1), pair(**opts) as (s2, c2):
        src, hop_in = (c1, s1) if direction == "client-to-server" else (s1, c1)
        hop_out, dst = (s2, c2) if direction == "client-to-server" else (c2, s2)
        got: list[bytes] = []
        pending = list(frames)
        while pending or len(got) < len(frames):
            if pending:
                sent = src.send(pending[:6])  # whatever fits in the ring
                pending = pending[sent:]
            relay(hop_in.rx_queues[0], hop_out.tx_queues[0], pool, free)
            got += dst.recv()
        assert got == frames
        rxq = hop_in.rx_queues[0]
        assert rxq.stats.drops == 0 and rxq.stats.packets == len(frames)
        assert hop_out.tx_queues[0].stats.packets == len(frames)


# ------------------------------------------------------------------------ the switch
class Rig(SwitchRig):
    """A switch bridging two memif ports, ``a`` and ``b``, each with its peer."""

    def __init__(self, tmp_path, role: str) -> None:
        switch_role = "master" if role == "master" else "slave"
        super().__init__(tmp_path, switch_role, "jumbo", n_buffers=1024, data_size=10240)
        opts: dict[str, object] = {"ring_size": 64}
        if role == "slave-copy":
            opts.update(zero_copy=False, buffer_size=2048)
        peer = dict(mode="ethernet", buffer_size=2048, reconnect_interval=0.1)
        self.a, self.a_peer = self.create_port(1, {**peer, "mac": mac(1)}, **opts)
        self.b, self.b_peer = self.create_port(2, {**peer, "mac": mac(2)}, **opts)
        peers = (self.a_peer, self.b_peer)
        self.run(lambda: all(p.connected for p in peers) and self.a.link_up and self.b.link_up)


@pytest.fixture
def rig(switch_rig):
    return functools.partial(switch_rig, Rig)


@pytest.mark.parametrize("role", ["master", "slave-copy", "slave-zc"])
def test_switch_forwards_frames_of_1_to_9000_bytes_byte_exact(rig, role: str) -> None:
    """Frames of 60..9000 bytes (the edges, then random) both ways through a switch
    whose 64-slot rings wrap over and over: each arrives whole, in order, on the other
    port; nothing is dropped."""
    r = rig(role)
    rng = np.random.default_rng(["master", "slave-copy", "slave-zc"].index(role))
    lengths = [max(k, 60) for k in EDGES] + rng.integers(60, 9001, 100).tolist()
    a_to_b = [packet.ethernet(mac(2), mac(1), 0x88B5, rng.bytes(k - 14)) for k in lengths]
    b_to_a = [packet.ethernet(mac(1), mac(2), 0x88B5, rng.bytes(k - 14)) for k in lengths]
    # learn both MACs first, so that every frame is known unicast
    hello = [packet.ethernet(packet.BROADCAST, mac(k), 0x88B5, b"hi".ljust(46)) for k in (1, 2)]
    assert r.a_peer.send(hello[:1]) == 1 and r.b_peer.send(hello[1:]) == 1
    r.run(lambda: r.a.counters.rx_packets and r.b.counters.rx_packets, "hello")
    r.sw.run_once()
    drain(r.a_peer), drain(r.b_peer)
    got_a: list[bytes] = []
    got_b: list[bytes] = []
    todo_a, todo_b = list(a_to_b), list(b_to_a)

    def step() -> bool:
        nonlocal todo_a, todo_b
        todo_a = todo_a[r.a_peer.send(todo_a[:4]) :]
        todo_b = todo_b[r.b_peer.send(todo_b[:4]) :]
        got_b.extend(drain(r.b_peer))
        got_a.extend(drain(r.a_peer))
        return len(got_b) >= len(a_to_b) and len(got_a) >= len(b_to_a)

    r.run(step, "every frame through", timeout=30)
    assert got_b == a_to_b and got_a == b_to_a
    for port in (r.a, r.b):
        c = port.counters
        assert c.drops == 0 and c.tx_errors == 0, (port.name, c)
    assert r.errors().get("too-big", 0) == 0


NEXT = memif.wire.DESC_FLAG_NEXT
U32 = 0xFFFFFFFF


def inject(peer: memif.Interface, descs: list[tuple[int, int, int, int]]) -> None:
    """Publish descriptors ``(flags, region, length, offset)`` on the peer's transmit
    ring by hand, as a hostile peer would."""
    ring = peer.tx_queues[0].ring
    start = ring.head
    for k, (flags, region, length, offset) in enumerate(descs):
        s = (start + k) & ring.mask
        ring.d_flags[s], ring.d_region[s] = flags, region
        ring.d_length[s], ring.d_offset[s] = length, offset
    ring.head = start + len(descs)


def test_hostile_chains_are_refused_by_name_between_good_jumbo_frames(rig) -> None:
    """A client chains descriptors that point outside its regions, name no region, are
    empty, never end, or end too late (a whole ring): each such frame is dropped and
    counted under its name in memif-input's errors and the port's drops, and the good
    jumbo frames around them arrive byte-exact, in order."""
    r = rig("master")
    a, peer, out = r.a, r.a_peer, r.b_peer
    sizes = [reg.size for reg in peer.regions]
    r1, end = len(sizes) - 1, sizes[-1]
    rng = np.random.default_rng(9)
    good = [packet.ethernet(mac(2), mac(1), 0x88B5, rng.bytes(k - 14)) for k in (9000, 4097, 60)]
    one_bad = {  # the middle descriptor of a 3-buffer chain
        "bad-offset": (NEXT, r1, 2048, end - 100),
        "bad-region": (NEXT, len(sizes), 2048, 0),
        "zero-length": (NEXT, r1, 0, 0),
    }
    got: list[bytes] = []

    def received(n: int) -> None:
        def more() -> bool:
            got.extend(drain(out))
            return len(got) >= n

        r.run(more, f"{n} frames out")

    for k, (error, middle) in enumerate(one_bad.items()):
        assert peer.send(good[k : k + 1]) == 1
        inject(peer, [(NEXT, r1, 2048, 0), middle, (0, r1, 100, 4096)])
        r.run(lambda error=error: r.errors().get(error, 0) == 1, error)
        received(k + 1)
    assert got == good
    assert a.counters.drops == 3 and a.counters.rx_packets == 3
    # A chain left open waits (counted once per look), then ends: one frame of 3 buffers.
    inject(peer, [(NEXT, r1, 2048, 0)] * 2)
    r.run(lambda: r.errors().get("chain-incomplete", 0) >= 1, "chain-incomplete")
    assert a.counters.rx_packets == 3
    mem = peer.regions[r1].array
    inject(peer, [(0, r1, 100, 0)])
    r.run(lambda: a.counters.rx_packets == 4, "the open chain ended")
    received(4)
    assert got[3] == 2 * bytes(mem[:2048]) + bytes(mem[:100])
    # A whole ring without an end never ends: dropped as one, the slots given back.
    ring_size = peer.tx_queues[0].ring.size
    inject(peer, [(NEXT, r1, 64, 0)] * ring_size)
    r.run(lambda: r.errors().get("chain-too-long", 0) == 1, "chain-too-long")
    assert peer.send(good[:1]) == 1
    received(5)
    assert got[4] == good[0]
    assert a.counters.drops == 4 and a.link_up
