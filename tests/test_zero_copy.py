"""Zero-copy: a client shares its own memory (BufferPool) for transmit and receive."""

from __future__ import annotations

import numpy as np
import pytest

import memif
from memif.testing import pair

BUF = 2048


@pytest.fixture
def pool():
    p = memif.BufferPool(256 * BUF)
    yield p
    p.close()


def test_tx_descriptors_point_into_the_pool_and_nothing_is_copied(pool):
    rng = np.random.default_rng(1)
    pool.array[:] = rng.integers(0, 256, pool.size, dtype=np.uint8)
    with pair(client_pools=[pool]) as (server, client):
        region = client.pool_region(pool)
        assert region == 2  # after libmemif's rings (0) and buffers (1)
        offsets = np.arange(10) * BUF + 7
        lengths = np.arange(10) + 60
        txq = client.tx_queues[0]
        assert txq.tx_zero_copy(region, offsets, lengths) == 10
        ring = txq.ring
        assert (ring.d_region[:10] == region).all()
        assert (ring.d_offset[:10] == offsets).all()
        batch = server.rx_queues[0].rx_burst()
        assert list(batch.lengths) == list(lengths)
        for k, pkt in enumerate(batch):
            assert bytes(pkt) == bytes(pool.array[offsets[k] : offsets[k] + lengths[k]])
        # the client writes the pool after sending: the server's view sees it (shared)
        pool.array[offsets[0]] ^= 0xFF
        assert batch[0][0] == pool.array[offsets[0]]
        assert txq.in_flight == 10 and txq.reclaim() == 0
        server.rx_queues[0].refill()
        assert txq.in_flight == 0 and txq.reclaim() == 10


def test_copy_path_after_zero_copy_restores_own_buffers(pool):
    with pair(client_pools=[pool]) as (server, client):
        txq = client.tx_queues[0]
        txq.tx_zero_copy(client.pool_region(pool), np.zeros(4, np.uint32), 64)
        server.recv()
        assert client.send([b"x" * 100] * 4) == 4
        assert server.recv() == [b"x" * 100] * 4
        assert (txq.ring.d_region[4:8] == 1).all()


def test_zero_copy_rejects_memory_outside_the_region(pool):
    with pair(client_pools=[pool]) as (_, client):
        txq = client.tx_queues[0]
        region = client.pool_region(pool)
        with pytest.raises(memif.ConfigError):
            txq.tx_zero_copy(region, [pool.size - 10], 64)
        with pytest.raises(memif.ConfigError):
            txq.tx_zero_copy(9, [0], 64)
        with pytest.raises(memif.ConfigError):
            txq.tx_zero_copy(region, [0], 0)


def test_receive_into_posted_pool_buffers(pool):
    with pair(client_pools=[pool]) as (server, client):
        rxq = client.rx_queues[0]
        region = client.pool_region(pool)
        # take back the buffers posted at connect, then post pool buffers instead
        assert rxq.free_to_post() == 0
        sent = [bytes([k]) * (100 + k) for k in range(8)]
        assert server.send(sent) == 8
        assert rxq.recv() == sent  # own buffers, refilled: still own buffers
        # consume every buffer posted at connect without refilling, then post pool buffers
        size = rxq.size
        assert server.send([b"\0" * 60] * size) == size
        assert server.tx_queues[0].free_slots() == 0
        while rxq.pending():
            rxq.rx_burst()
        assert rxq.free_to_post() == size
        offsets = np.arange(size, dtype=np.uint32) % 256 * BUF
        assert rxq.refill_from(region, offsets[:16], BUF) == 16
        assert rxq.free_to_post() == size - 16
        assert server.tx_queues[0].free_slots() == 16
        assert server.send(sent) == 8
        batch = rxq.rx_burst()
        assert set(batch.seg_region) == {region}
        assert list(batch.seg_offset) == list(offsets[:8])
        assert list(batch.lengths) == [len(p) for p in sent]
        for k, pkt in enumerate(sent):
            assert bytes(pool.array[offsets[k] : offsets[k] + len(pkt)]) == pkt


def test_server_cannot_use_client_only_calls():
    with pair() as (server, _), pytest.raises(memif.ConfigError):
        server.tx_queues[0].tx_zero_copy(0, [0], 64)


def test_server_chains_over_posted_buffers_of_different_sizes(pool):
    with pair() as (server, client):
        rxq, txq = client.rx_queues[0], server.tx_queues[0]
        size = rxq.size
        assert server.send([b"\0" * 60] * size) == size  # use up every buffer posted at connect
        while rxq.pending():
            rxq.rx_burst()
        own = client.details().regions[1][0]
        assert rxq.refill_from(own, np.array([0, 2048], np.uint32), 2048) == 2
        assert rxq.refill_from(own, np.array([4096, 6144], np.uint32), 1024) == 2
        big = bytes(range(256)) * 15 + b"abcd"  # 3844 bytes: 2048 + 1796 over two slots
        assert server.send([big]) == 1
        assert txq.ring.d_length[0] == 2048 and txq.ring.d_length[1] == 1796
        batch = rxq.rx_burst()
        assert batch.tolist() == [big]
        assert server.send([b"y" * 3000]) == 0  # two 1024-byte buffers left: does not fit
        assert txq.stats.errors == {"no_free_slots": 1}


def test_server_notices_when_the_client_posts_other_buffers(pool):
    """A server that learned the client's one-buffer-per-slot layout follows a change."""
    with pair(client_pools=[pool], ring_size=64) as (server, client):
        rxq, txq = client.rx_queues[0], server.tx_queues[0]
        size = rxq.size

        def burst(n: int, fill: int) -> None:
            tx = txq.alloc(n)  # one run of slots: up to the ring's end
            tx.fill(np.repeat(np.arange(fill, fill + tx.count, dtype=np.uint8)[:, None], 60, 1))
            assert txq.tx_burst(tx, 60) == tx.count

        for round_ in range(3):  # the first alloc learns the layout, the others use it
            burst(8, 10 * round_)
            got = rxq.recv()
            assert got == [bytes([10 * round_ + k]) * 60 for k in range(8)]
        # the client takes every buffer it posted and posts pool buffers, out of order
        while txq.free_slots():
            burst(txq.free_slots(), 0)
        while rxq.pending():
            rxq.rx_burst()
        offsets = (np.random.default_rng(3).permutation(size) * BUF).astype(np.uint32)
        assert rxq.refill_from(client.pool_region(pool), offsets, BUF) == size
        burst(8, 100)
        batch = rxq.rx_burst()
        assert list(batch.seg_offset) == list(offsets[:8])
        for k in range(8):
            assert bytes(pool.array[offsets[k] : offsets[k] + 60]) == bytes([100 + k]) * 60


def test_server_receive_runs_follow_the_clients_buffers(pool):
    """Bursts that wrap the ring come as two strided runs of the client's slot buffers;
    when the client transmits from other memory (zero-copy) the runs follow it."""
    with pair(client_pools=[pool], ring_size=64) as (server, client):
        rxq, txq = server.rx_queues[0], client.tx_queues[0]

        def check(batch, frames: list[bytes]) -> None:
            assert batch.is_view
            got = [bytes(view[i, :60]) for lo, hi, view in batch.runs for i in range(hi - lo)]
            assert got == frames and batch.tolist() == frames

        for round_ in range(4):  # 48 a round: bursts start anywhere and wrap
            frames = [bytes([round_, k]) * 30 for k in range(48)]
            assert client.send(frames) == 48
            batch = rxq.rx_burst(64)
            check(batch, frames)
            assert len(batch.runs) == (2 if (round_ * 48) % 64 + 48 > 64 else 1)
            rxq.refill()
        # the same region, other slots' buffers (evenly spaced, downwards), then the pool
        own = txq.ring.d_region[0]
        offsets = txq.ring.d_offset[:48][::-1].copy()
        for region, where in ((own, offsets), (client.pool_region(pool), offsets % (64 * BUF))):
            data = client.regions[region].array
            for k in range(48):
                data[where[k] : where[k] + 60] = 100 + region + k
            assert txq.tx_zero_copy(region, where, 60) == 48
            check(rxq.rx_burst(64), [bytes([100 + region + k]) * 60 for k in range(48)])
            rxq.refill()
