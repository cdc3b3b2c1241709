"""Ring arithmetic across the u16 wrap: ``memif.shm.Ring`` with ``memif.queue`` queues.

Each test builds a slave's memory with :class:`memif.shm.Layout` in real memfds, then
maps the same memfds a second time for the master (as a peer process would), so the
two ends only meet through shared memory.  Counters are set near 65535 before any
packet moves; ``head`` and ``tail`` are free-running u16 values (protocol section 10).
"""

from __future__ import annotations

import os
import select
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from memif import wire
from memif.queue import RxQueue, TxQueue
from memif.shm import Layout, Region, Ring

U16 = 0x10000
CACHELINE = wire.DEFAULT_CACHELINE


@dataclass
class Link:
    """One ring with its two ends: the slave's view and the master's view."""

    layout: Layout
    slave_ring: Ring
    master_ring: Ring
    tx: TxQueue  # the producer (slave on S2M, master on M2S)
    rx: RxQueue  # the consumer
    eventfd: int


class Memory:
    """A slave's regions and a master's second mapping of them; closes all at the end."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.slave_regions = [Region.create(size) for size in layout.region_sizes()]
        self.master_regions = [Region(r.fd, r.size, owns_fd=False) for r in self.slave_regions]
        self.rings: list[Ring] = []
        self.eventfds: list[int] = []

    def link(self, s2m: bool, index: int = 0, start: int = 0) -> Link:
        lay = self.layout
        efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.eventfds.append(efd)
        off = lay.ring_offset(s2m, index)
        slave_ring = Ring(self.slave_regions[0], off, lay.log2_ring_size, CACHELINE, efd)
        slave_ring.init()
        master_ring = Ring(self.master_regions[0], off, lay.log2_ring_size, CACHELINE, efd)
        self.rings += [slave_ring, master_ring]
        slave_ring.head = start
        slave_ring.tail = start
        assert (master_ring.head, master_ring.tail) == (start, start)  # one shared memory
        kw = dict(
            buffer_region=lay.buffer_region,
            buffer_offsets=lay.buffer_offsets(s2m, index),
            buffer_size=lay.buffer_size,
        )
        if s2m:
            tx = TxQueue(slave_ring, self.slave_regions, index, is_master=False, **kw)
            rx = RxQueue(master_ring, self.master_regions, index, is_master=True)
        else:
            rx = RxQueue(slave_ring, self.slave_regions, index, is_master=False, **kw)
            tx = TxQueue(master_ring, self.master_regions, index, is_master=True)
            rx.refill()  # the slave posts its empty buffers
        return Link(lay, slave_ring, master_ring, tx, rx, efd)

    def close(self) -> None:
        for ring in self.rings:
            ring.release()
        for region in self.master_regions + self.slave_regions:
            region.close()
        for fd in self.eventfds:
            os.close(fd)


@pytest.fixture
def memory() -> Iterator[Callable[..., Memory]]:
    made: list[Memory] = []

    def make(
        log2: int = 4, buffer_size: int = 256, single_region: bool = False, queues: int = 1
    ) -> Memory:
        mem = Memory(Layout(queues, queues, log2, buffer_size, single_region=single_region))
        made.append(mem)
        return mem

    yield make
    for mem in made:
        mem.close()


def payload(seq: int, size: int) -> bytes:
    """``size`` bytes that start with the u32 sequence number and depend on it throughout."""
    body = np.arange(size, dtype=np.uint32).astype(np.uint8) ^ np.uint8(seq & 0xFF)
    raw = bytearray(body.tobytes())
    raw[: min(4, size)] = seq.to_bytes(4, "little")[: min(4, size)]
    return bytes(raw)


def kicked(efd: int) -> bool:
    return bool(select.select([efd], [], [], 0)[0])


# --------------------------------------------------------------------------- basics


def test_counters_are_u16_and_shared() -> None:
    region = Region.create(wire.ring_bytes(4))
    other = Region(region.fd, region.size, owns_fd=False)
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    a = Ring(region, 0, 4, CACHELINE, efd)
    b = Ring(other, 0, 4, CACHELINE, efd)
    try:
        a.init()
        assert b.cookie == wire.COOKIE and (b.head, b.tail, b.flags) == (0, 0, 0)
        a.head = U16 + 5
        a.tail = -1
        assert (b.head, b.tail) == (5, 0xFFFF)
        # Bytes on the wire: head at 6, tail on the second cache line.
        raw = other.array
        assert int(raw[6:8].view(np.uint16)[0]) == 5
        assert int(raw[CACHELINE : CACHELINE + 2].view(np.uint16)[0]) == 0xFFFF
        b.flags = wire.RING_FLAG_MASK_INT
        assert a.flags == 1 and int(raw[4:6].view(np.uint16)[0]) == 1
    finally:
        a.release()
        b.release()
        other.close()
        region.close()
        os.close(efd)


# --------------------------------------------------------------------------- S2M


def test_s2m_fill_and_drain_across_wrap(memory) -> None:
    link = memory().link(s2m=True, start=65530)
    tx, rx, n = link.tx, link.rx, link.layout
    size = 1 << n.log2_ring_size
    assert tx.free_slots() == size and rx.pending() == 0 and tx.in_flight == 0

    assert tx.send([payload(i, 60 + i) for i in range(size)]) == size
    assert link.slave_ring.head == (65530 + size) % U16 == 10  # wrapped
    assert link.master_ring.tail == 65530
    assert tx.free_slots() == 0 and tx.in_flight == size and rx.pending() == size
    assert tx.send([b"no room"]) == 0
    assert tx.stats.errors == {"no_free_slots": 1}

    first = rx.rx_burst(5)
    assert first.tolist() == [payload(i, 60 + i) for i in range(5)]
    assert tx.free_slots() == 0  # nothing given back before refill
    assert rx.refill() == 5
    assert link.master_ring.tail == 65535 and tx.free_slots() == 5 and rx.pending() == 11

    rest = rx.rx_burst(256)
    assert rest.tolist() == [payload(i, 60 + i) for i in range(5, size)]
    assert rx.refill() == 11
    assert link.master_ring.tail == 10 == link.slave_ring.head
    assert tx.free_slots() == size and tx.in_flight == 0 and rx.pending() == 0
    assert rx.stats.packets == size and tx.stats.packets == size


@pytest.mark.parametrize("s2m", [True, False], ids=["s2m", "m2s"])
def test_random_bursts_and_chains_across_wrap(memory, s2m: bool) -> None:
    """Random bursts of random sizes (chained up to 3 buffers) through the u16 wrap."""
    link = memory(log2=3, buffer_size=256).link(s2m=s2m, start=65536 - 400)
    tx, rx = link.tx, link.rx
    producer = link.slave_ring if s2m else link.master_ring
    rng = np.random.default_rng(1 if s2m else 2)
    sizes = rng.integers(1, 3 * 256 + 1, size=2000)
    seq = got = 0
    wrapped = False
    last = producer.head if s2m else producer.tail
    while got < 1000:
        k = int(rng.integers(1, 5))
        seq += tx.send([payload(seq + j, int(sizes[seq + j])) for j in range(k)])
        for pkt in rx.rx_burst(int(rng.integers(1, 9))):
            assert bytes(pkt) == payload(got, int(sizes[got]))
            got += 1
        rx.refill()
        now = producer.head if s2m else producer.tail
        wrapped |= now < last
        last = now
    while rx.pending():
        for pkt in rx.rx_burst():
            assert bytes(pkt) == payload(got, int(sizes[got]))
            got += 1
        rx.refill()
    assert wrapped and got == seq
    assert rx.stats.packets == tx.stats.packets == seq
    assert rx.stats.drops == 0 and rx.fault is None and tx.fault is None


@pytest.mark.parametrize("s2m", [True, False], ids=["s2m", "m2s"])
def test_vectorized_full_u16_cycle(memory, s2m: bool) -> None:
    """alloc/fill/tx_burst and rx_burst/gather through more than one whole u16 cycle."""
    link = memory(log2=4, buffer_size=128).link(s2m=s2m, start=65530)
    tx, rx = link.tx, link.rx
    total, seq, got = U16 + 1000, 0, 0
    while got < total:
        batch = tx.alloc(min(13, total - seq))
        k = batch.count
        if k:
            data = np.zeros((k, 8), np.uint8)
            data[:, :4] = np.arange(seq, seq + k, dtype=np.uint32).view(np.uint8).reshape(k, 4)
            data[:, 4:] = np.arange(seq, seq + k, dtype=np.uint32)[:, None] % 251
            batch.fill(data)
            assert tx.tx_burst(batch, 8) == k
            seq += k
        rb = rx.rx_burst(11)
        if len(rb):
            rows = rb.gather(8)
            assert (rb.lengths == 8).all()
            seqs = rows[:, :4].copy().view(np.uint32).ravel()
            np.testing.assert_array_equal(seqs, np.arange(got, got + len(rb), dtype=np.uint32))
            np.testing.assert_array_equal(rows[:, 4:], np.repeat((seqs % 251)[:, None], 4, 1))
            got += len(rb)
        rx.refill()
    end = (65530 + total) % U16
    assert link.master_ring.tail == end
    assert link.slave_ring.head == (end if s2m else (end + 16) % U16)
    assert rx.stats.packets == tx.stats.packets == total
    assert rx.stats.drops == 0 and rx.fault is None and tx.fault is None


def test_s2m_alloc_is_one_contiguous_run(memory) -> None:
    link = memory(log2=4).link(s2m=True, start=65533)  # slot 13 of 16
    batch = link.tx.alloc(16)
    assert batch.start == 65533 and batch.count == 3  # up to the ring's end
    link.tx.tx_burst(batch, 10)
    batch = link.tx.alloc(16)
    assert batch.start == 0 and batch.count == 13  # counter wrapped to 0 = slot 0
    assert link.rx.pending() == 3


def test_s2m_chain_across_ring_end_and_u16_wrap(memory) -> None:
    link = memory(log2=4, buffer_size=256).link(s2m=True, start=65534)
    data = payload(77, 4 * 256 - 10)
    assert link.tx.send([data]) == 1
    assert link.slave_ring.head == 2 and link.rx.pending() == 4
    slots = [14, 15, 0, 1]
    ring = link.master_ring
    assert [int(ring.d_flags[s]) for s in slots] == [wire.DESC_FLAG_NEXT] * 3 + [0]
    assert [int(ring.d_length[s]) for s in slots] == [256, 256, 256, 246]
    batch = link.rx.rx_burst(1)
    assert len(batch) == 1 and batch.lengths.tolist() == [len(data)]
    assert bytes(batch[0]) == data
    assert link.rx.refill() == 4 and ring.tail == 2
    assert link.tx.stats.packets == link.rx.stats.packets == 1


def test_s2m_partial_chain_waits(memory) -> None:
    """A chain whose last slot is not published yet is not delivered in pieces."""
    link = memory(log2=4, buffer_size=128).link(s2m=True, start=65535)
    ring = link.slave_ring
    batch = link.tx.alloc(1)
    batch.buffer(0)[:4] = [1, 2, 3, 4]
    link.tx.tx_burst(batch, 4, flags=np.array([wire.DESC_FLAG_NEXT], np.uint16))
    assert ring.head == 0 and link.rx.pending() == 1
    assert len(link.rx.rx_burst()) == 0 and link.rx.pending() == 1
    batch = link.tx.alloc(1)
    batch.buffer(0)[:2] = [5, 6]
    link.tx.tx_burst(batch, 2)
    got = link.rx.rx_burst()
    assert got.tolist() == [bytes([1, 2, 3, 4, 5, 6])]


def test_s2m_counter_fault(memory) -> None:
    link = memory(log2=4).link(s2m=True, start=65530)
    link.slave_ring.head = 65530 + 17  # more than a ring ahead of tail: impossible
    assert link.rx.pending() == 0
    assert len(link.rx.rx_burst()) == 0
    assert link.rx.fault == "ring counter out of range"

    link = memory(log2=4).link(s2m=True, start=65530)
    link.master_ring.tail = 65530 + 1  # master released a slot never produced
    assert link.tx.free_slots() == 0
    assert link.tx.alloc(1).count == 0
    assert link.tx.fault == "ring counter out of range"


# --------------------------------------------------------------------------- M2S


def test_m2s_fill_and_drain_across_wrap(memory) -> None:
    link = memory(log2=4, buffer_size=256).link(s2m=False, start=65530)
    tx, rx = link.tx, link.rx
    assert link.slave_ring.head == 10  # the slave posted all 16 buffers, head wrapped
    assert link.master_ring.tail == 65530
    assert tx.free_slots() == 16 and rx.pending() == 0

    first = tx.alloc(16)
    assert (first.start, first.count, first.capacity) == (65530, 6, 256)
    assert first.is_view and first.buffers.shape == (6, 256)
    for i in range(6):
        first.buffers[i, :100] = np.frombuffer(payload(i, 100), np.uint8)
    assert tx.tx_burst(first, 100) == 6
    second = tx.alloc(16)
    assert (second.start, second.count) == (0, 10)
    for i in range(10):
        second.buffer(i)[: 50 + i] = np.frombuffer(payload(6 + i, 50 + i), np.uint8)
    assert tx.tx_burst(second, np.arange(50, 60)) == 10
    assert link.master_ring.tail == 10 and tx.free_slots() == 0
    assert tx.send([b"full"]) == 0 and tx.stats.errors == {"no_free_slots": 1}

    assert rx.pending() == 16
    batch = rx.rx_burst(256)
    expect = [payload(i, 100) for i in range(6)] + [payload(6 + i, 50 + i) for i in range(10)]
    assert batch.tolist() == expect
    assert batch.lengths.tolist() == [100] * 6 + list(range(50, 60))
    assert tx.free_slots() == 0  # reposting, not reading, gives the master room
    assert rx.refill() == 16
    assert link.slave_ring.head == 26 and tx.free_slots() == 16


def test_m2s_chain_across_ring_end_and_u16_wrap(memory) -> None:
    link = memory(log2=4, buffer_size=256).link(s2m=False, start=65533)
    data = payload(5, 5 * 256)
    assert link.tx.send([data]) == 1
    assert link.master_ring.tail == 2
    ring = link.slave_ring
    slots = [13, 14, 15, 0, 1]
    assert [int(ring.d_flags[s]) for s in slots] == [wire.DESC_FLAG_NEXT] * 4 + [0]
    batch = link.rx.rx_burst()
    assert batch.tolist() == [data]
    assert link.rx.refill() == 5


def test_m2s_headroom_posts_smaller_buffers(memory) -> None:
    mem = memory(log2=4, buffer_size=256)
    link = mem.link(s2m=False, start=65530)
    link.rx.headroom = 32
    # Re-post every slot with the headroom: read nothing, so post only after a cycle.
    assert link.tx.send([payload(i, 10) for i in range(16)]) == 16
    assert len(link.rx.rx_burst()) == 16
    link.rx.refill()
    batch = link.tx.alloc(16)
    assert batch.capacity == 256 - 32
    offsets = link.layout.buffer_offsets(False, 0)
    assert int(link.slave_ring.d_offset[10]) == int(offsets[10]) + 32


def test_m2s_counter_faults(memory) -> None:
    link = memory(log2=4).link(s2m=False, start=65530)
    link.master_ring.tail = link.slave_ring.head + 1  # filled past what was posted
    assert len(link.rx.rx_burst()) == 0
    assert link.rx.fault == "ring counter out of range"

    link = memory(log2=4).link(s2m=False, start=65530)
    link.slave_ring.head = 65530 + 17  # posted more than a ring
    assert link.tx.free_slots() == 0 and link.tx.alloc(1).count == 0
    assert link.tx.fault == "ring counter out of range"


def test_m2s_master_never_writes_outside_posted_buffers(memory) -> None:
    link = memory(log2=4, buffer_size=256).link(s2m=False, start=0)
    link.slave_ring.d_offset[0] = link.slave_ring.d_offset[0] + (1 << 30)  # bogus post
    assert link.tx.alloc(4).count == 0
    assert link.tx.fault == "peer posted a buffer outside its regions"


# --------------------------------------------------------------------------- interrupts


@pytest.mark.parametrize("s2m", [True, False])
def test_kick_and_mask_int(memory, s2m: bool) -> None:
    link = memory().link(s2m=s2m, start=65534)
    efd = link.eventfd
    assert not kicked(efd) and not link.rx.polling
    link.tx.send([b"a", b"b"])
    assert kicked(efd)
    assert link.rx.clear_interrupt() == 1  # one kick per send() call, not per packet
    assert not kicked(efd)
    link.tx.send([])  # nothing sent, no kick
    assert link.rx.wait(0) is True  # packets pending
    os.eventfd_write(efd, 1)
    assert link.rx.wait(0) is True and not kicked(efd)  # wait() always clears the eventfd

    batch = link.tx.alloc(3)
    batch.buffers[:, :1] = 7
    link.tx.tx_burst(batch, 1)
    assert link.rx.clear_interrupt() == 1  # one kick per burst

    link.rx.polling = True
    assert link.master_ring.flags & wire.RING_FLAG_MASK_INT
    assert link.slave_ring.flags & wire.RING_FLAG_MASK_INT
    link.tx.send([b"c"])
    assert not kicked(efd)
    link.rx.polling = False
    assert link.slave_ring.flags == 0
    link.tx.send([b"d"])
    assert kicked(efd)
    got = [bytes(p) for p in link.rx.rx_burst()]
    assert got == [b"a", b"b", b"\x07", b"\x07", b"\x07", b"c", b"d"]


def test_wait_times_out_when_idle(memory) -> None:
    link = memory().link(s2m=True, start=65535)
    assert link.rx.wait(0.01) is False


# --------------------------------------------------------------------------- send() accounting


def test_send_does_not_count_a_too_big_packet_as_sent(memory) -> None:
    link = memory(log2=4, buffer_size=256).link(s2m=True, start=65530)
    too_big = b"x" * (256 * 16 + 1)  # needs 17 buffers, the ring has 16
    sent = link.tx.send([b"ok", too_big, b"ok too"])
    assert link.tx.stats.errors == {"too_big": 1}
    assert link.rx.rx_burst().tolist() == [b"ok", b"ok too"]
    assert sent == 2


def test_gather_copies_each_packet_into_its_row(memory) -> None:
    link = memory(log2=4, buffer_size=256).link(s2m=True, start=65530)
    link.tx.send([b"\xff" * 100] * 16)  # dirty every buffer of the ring
    link.rx.rx_burst()
    link.rx.refill()
    link.tx.send([b"\x01" * 10, b"\x02" * 100])
    rows = link.rx.rx_burst().gather()
    assert rows.shape == (2, 100)
    # bytes past a packet's length are unspecified (documented): only the packet is checked
    assert rows[0, :10].tolist() == [1] * 10 and rows[1].tolist() == [2] * 100
