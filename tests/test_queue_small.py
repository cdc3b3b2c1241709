"""Small bursts: the scalar paths held equal to the vectorized ones.

``TxQueue.send`` copies a packet that fits one slot with plain scalar writes, a 1-packet
``rx_burst`` checks its descriptor without numpy reductions and leaves its view to be
made when asked for, and a slave's ``refill`` copies each slot's descriptor from a
prepared table.  Each is compared here with the general path on a real connected pair,
in both directions, across the ring's end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

import memif
from memif import wire
from memif.shm import Ring
from memif.testing import pair

N = 16  # ring slots
BUF = 256


@pytest.fixture(params=["s2m", "m2s"])
def ends(request) -> Iterator[tuple[memif.TxQueue, memif.RxQueue]]:
    """A connected pair's transmit queue and the peer's receive queue on one ring."""
    with pair(ring_size=N, buffer_size=BUF, reconnect_interval=None) as (server, client):
        if request.param == "s2m":
            yield client.tx_queues[0], server.rx_queues[0]
        else:
            yield server.tx_queues[0], client.rx_queues[0]


def descriptor(ring: Ring, counter: int) -> tuple[int, int, int, int]:
    """(flags, region, length, offset) of the slot of ``counter``."""
    s = counter & ring.mask
    return (
        int(ring.d_flags[s]),
        int(ring.d_region[s]),
        int(ring.d_length[s]),
        int(ring.d_offset[s]),
    )


def produced(txq: memif.TxQueue) -> int:
    return txq.ring.tail if txq.is_master else txq.ring.head


KINDS: dict[str, Callable[[bytes], object]] = {
    "bytes": bytes,
    "bytearray": bytearray,
    "uint8 array": lambda b: np.frombuffer(b, np.uint8).copy(),
    "strided uint8 array": lambda b: np.repeat(np.frombuffer(b, np.uint8), 2)[::2],
}
# one lap of the ring: 14 packets of one slot and one of two (a chain), sizes 1..BUF+1
SIZES = [1, 60, 64, BUF + 1, BUF, 255, 2, 17, 99, 128, 200, 3, 64, 61, 250]
LAP = [bytes([i + 1]) * size for i, size in enumerate(SIZES)]


@pytest.mark.parametrize("kind", list(KINDS))
def test_send_one_slot_equals_the_planned_path(
    ends: tuple[memif.TxQueue, memif.RxQueue], kind: str
) -> None:
    """The same lap of packets sent as ``kind`` (one-slot packets take the scalar path)
    and as memoryviews (always planned: ``_send_one``) writes the same descriptors into
    the same slots, and the receiver gets the same bytes."""
    txq, rxq = ends
    assert sum(-(-len(p) // BUF) for p in LAP) == N  # each lap starts at the same slot
    for p in LAP[:5]:  # start mid-ring: both laps cross its end
        assert txq.send([p]) == 1
    assert rxq.recv() == LAP[:5]
    laps = []
    for wrap in (KINDS[kind], memoryview):
        written, stats = [], (txq.stats.packets, txq.stats.bytes)
        for p in LAP:
            start = produced(txq)
            assert txq.send([wrap(p)]) == 1  # type: ignore[list-item]
            written.append([descriptor(txq.ring, c) for c in range(start, produced(txq))])
            assert rxq.recv() == [p]
        assert (txq.stats.packets, txq.stats.bytes) == (
            stats[0] + len(LAP),
            stats[1] + sum(map(len, LAP)),
        )
        laps.append(written)
    assert laps[0] == laps[1]
    flags = [[f for f, *_ in descs] for descs in laps[0]]
    assert flags[3] == [wire.DESC_FLAG_NEXT, 0] and all(f == [0] for f in flags[:3] + flags[4:])
    assert not txq.stats.errors and txq.fault is None


def test_send_of_other_data_and_empty_packets(ends: tuple[memif.TxQueue, memif.RxQueue]) -> None:
    """Data the scalar path does not take (int8 arrays, memoryviews of other formats) is
    sent as its bytes by the plan; an empty packet is refused as too big, as before."""
    txq, rxq = ends
    data = bytes(range(1, 101))
    int8 = np.frombuffer(data, np.int8)
    words = memoryview(data[:100]).cast("I")
    assert txq.send([int8, words, b"", bytearray(data)]) == 3
    assert rxq.recv() == [data, data, data]
    assert txq.stats.errors == {"too_big": 1}


def test_send_fills_the_ring_then_stops(ends: tuple[memif.TxQueue, memif.RxQueue]) -> None:
    """One-slot packets up to the last free slot; the rest are counted no_free_slots."""
    txq, rxq = ends
    packets = [bytes([i]) * 60 for i in range(N + 3)]
    assert txq.send(packets) == N
    assert txq.stats.errors == {"no_free_slots": 3}
    assert rxq.recv(2 * N) == packets[:N]


def summary(batches: list[memif.RxBatch]) -> dict[str, object]:
    """What a burst says about its packets, whatever slots they were in."""
    return {
        "packets": [p for b in batches for p in b.tolist()],
        "items": [bytes(b[i]) for b in batches for i in range(len(b))],
        "lengths": [int(x) for b in batches for x in b.lengths],
        "seg_length": [int(x) for b in batches for x in b.seg_length],
        "region": {b.region for b in batches},
        "chained": {b.chained for b in batches},
        "nbytes": sum(b.nbytes for b in batches),
        "headers": [bytes(r) for b in batches for r in b.headers(14)],
        "matrix": [bytes(r[: b.lengths[i]]) for b in batches for i, r in enumerate(b.matrix)],
        "runs": [
            bytes(rows[k, : b.lengths[lo + k]])
            for b in batches
            for lo, hi, rows in b.runs
            for k in range(hi - lo)
        ],
        "is_view": {b.is_view for b in batches},
    }


@pytest.mark.parametrize("start", [0, N - 2], ids=["inside", "across-the-end"])
def test_one_packet_bursts_equal_one_burst(
    ends: tuple[memif.TxQueue, memif.RxQueue], start: int
) -> None:
    """Five packets taken as five 1-packet bursts (the scalar check) and as one burst
    (the vectorized check, the slot layout) answer the same, views included."""
    txq, rxq = ends
    packets = [bytes([i + 1]) * 64 for i in range(5)]
    if start:
        assert txq.send([b"x" * 64] * start) == start
        assert len(rxq.recv()) == start
    results = []
    for size in (1, 5):
        assert txq.send(packets) == 5
        batches = [rxq.rx_burst(size) for _ in range(5 // size)]  # views valid until refill
        results.append(summary(batches))
        rxq.refill()
    one_by_one, burst = results
    assert one_by_one["packets"] == burst["packets"] == packets
    assert one_by_one == burst
    assert rxq.stats.packets == start + 10 and not rxq.stats.errors


def test_refill_posts_each_slot_at_the_current_headroom() -> None:
    """A slave's refill posts every slot's own buffer at ``headroom`` (changed between
    refills, and across the ring's end), flags and metadata cleared."""
    with pair(ring_size=N, buffer_size=BUF, reconnect_interval=None) as (server, client):
        txq, rxq = server.tx_queues[0], client.rx_queues[0]
        ring = rxq.ring
        own = ring.d_offset.copy()  # each slot's own buffer, as posted at connect
        region = int(ring.d_region[0])
        for headroom in (0, 32, 0, 100):
            rxq.headroom = headroom
            for _ in range(3):  # 7 slots a time: the posts cross the ring's end
                head = ring.head
                assert txq.send([b"p" * 40] * 7) == 7
                ring.desc["metadata"][:] = 0xDEADBEEF
                assert len(rxq.rx_burst()) == 7
                assert rxq.refill() == 7
                for c in range(head, head + 7):
                    s = c & ring.mask
                    assert descriptor(ring, c) == (0, region, BUF - headroom, own[s] + headroom)
                    assert int(ring.desc["metadata"][s]) == 0
            assert txq.alloc(N).capacity == BUF - headroom  # every slot re-posted


@pytest.mark.parametrize("n", [1, 3, 7])
def test_tx_burst_one_length_equals_per_packet_lengths(
    ends: tuple[memif.TxQueue, memif.RxQueue], n: int
) -> None:
    """``tx_burst`` with one length for all (one write of each descriptor's first 8
    bytes) and with an array of equal lengths (field by field) write the same
    descriptors, bursts crossing the ring's end."""
    txq, rxq = ends
    laps: list[list[tuple[int, int, int, int]]] = [[], []]
    for k in range(2 * N):  # two laps of n-packet bursts, each lap at the same slots
        lap = laps[k // N]
        tx = txq.alloc(n, wrap=True)
        assert tx.count == n
        tx.buffers[:, :50] = k
        start = produced(txq)
        lengths: int | np.ndarray = 50 if k < N else np.full(n, 50, np.uint32)
        assert txq.tx_burst(tx, lengths) == n
        lap += [descriptor(txq.ring, c) for c in range(start, start + n)]
        assert rxq.recv() == [bytes([k]) * 50] * n
    assert laps[0] == laps[1]
    assert {d[:3] for d in laps[0]} == {(0, laps[0][0][1], 50)}


def test_layout_descriptors_match_what_the_field_checks_accept() -> None:
    """``SlotLayout.matches`` (one comparison with the descriptors of one head) accepts
    a run exactly when every head is that head, the offsets are the layout's and the
    metadata is 0: random runs across the ring's end, each with one field changed."""
    from memif.queue._common import SlotLayout, raw_offsets, ring_pieces, same_heads

    rng = np.random.default_rng(7)
    layout = SlotLayout.learn(np.zeros(64 * 40, np.uint8), 1, N, 3, 64 * 5, 64)
    assert layout is not None
    head = 1 << 16 | 60 << 32
    for _ in range(400):
        n, start = int(rng.integers(1, N + 1)), int(rng.integers(0, 1 << 16))
        pieces = ring_pieces(start, n, N)
        descs = np.zeros(n, wire.DESC_DTYPE)
        descs["region"], descs["length"] = 1, 60
        descs["offset"] = layout.offsets[[(start + k) % N for k in range(n)]]
        field = ["none", "flags", "region", "length", "offset", "metadata"][rng.integers(6)]
        if field != "none":
            descs[field][rng.integers(n)] += 1
        raw = bytearray(descs.tobytes())
        accepted = (
            same_heads(raw, n)
            and int(descs["region"][0]) == 1
            and int(descs["length"][0]) == 60
            and not descs["flags"][0]
            and layout.holds(raw_offsets(raw), pieces)
            and not descs["metadata"].any()
        )
        layout.matches(raw, head, pieces)  # a head's descriptors are made when asked twice
        assert layout.matches(raw, head, pieces) == accepted, (field, n, start)
