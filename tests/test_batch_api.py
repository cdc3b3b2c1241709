"""The batch API over real connected pairs: nothing is ever None, views when the buffers
allow and copies otherwise, and the ``with`` forms that refill and publish."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest

import memif
from memif import ConfigError, NotConnectedError, pcap
from memif.testing import drive, pair

FRAMES = [bytes([k]) * 14 + bytes(range(k, k + 50)) for k in range(8)]  # 64 bytes each


def frames(n: int, size: int = 64, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [rng.bytes(size) for _ in range(n)]


def in_shared_memory(rows: np.ndarray, iface: memif.Interface) -> bool:
    """True when ``rows`` is a view of one of ``iface``'s regions."""
    return any(np.shares_memory(rows, r.array) for r in iface.regions)


def received(rx: memif.RxBatch) -> list[bytes]:
    """Each packet, cut to its length, from the batch's runs."""
    out = []
    for lo, hi, rows in rx.runs:
        out += [bytes(rows[i, : int(rx.lengths[lo + i])]) for i in range(hi - lo)]
    return out


@pytest.fixture
def pool() -> Iterator[memif.BufferPool]:
    p = memif.BufferPool(64 * 2048)
    yield p
    p.close()


# --------------------------------------------------------------------------- receive


def test_unchained_burst_is_views_of_the_shared_buffers() -> None:
    with pair() as (server, client):
        sent = frames(8)
        assert client.send(sent) == 8
        rx = server.rx_queues[0].rx_burst()
        assert not rx.chained and rx.is_view
        assert rx.first.tolist() == list(range(8)) and not rx.first.flags.writeable
        assert len(rx.runs) == 1 and in_shared_memory(rx.runs[0][2], server)
        assert received(rx) == sent
        assert in_shared_memory(rx.matrix, server) and rx.matrix.shape == (8, 64)
        head = rx.headers(14)
        assert head.shape == (8, 14) and in_shared_memory(head, server)
        assert [bytes(h) for h in head] == [f[:14] for f in sent]


def test_chained_frames_come_as_one_gathered_copy() -> None:
    with pair(buffer_size=128) as (server, client):
        sent = frames(4, 300) + frames(1, 60, seed=1)  # three buffers each, then one
        assert client.send(sent) == 5
        rx = server.rx_queues[0].rx_burst()
        assert rx.chained and not rx.is_view
        assert rx.first.tolist() == [0, 3, 6, 9, 12] and rx.lengths.tolist() == [300] * 4 + [60]
        assert received(rx) == sent
        assert rx.matrix.shape == (5, 300) and not in_shared_memory(rx.matrix, server)
        # headers from the first buffers (each holds 60 bytes) or assembled across them
        assert [bytes(h) for h in rx.headers(60)] == [f[:60] for f in sent]
        wide = rx.headers(200)
        assert [bytes(h[: min(200, len(f))]) for h, f in zip(wide, sent, strict=True)] == [
            f[:200] for f in sent
        ]


def test_a_burst_across_the_ring_end_has_two_runs_and_copied_headers() -> None:
    with pair(ring_size=16) as (server, client):
        rxq = server.rx_queues[0]
        assert client.send(frames(12)) == 12
        with rxq.receive(12):
            pass
        sent = frames(8, seed=2)
        assert client.send(sent) == 8
        rx = rxq.rx_burst()
        assert rx.is_view and [(lo, hi) for lo, hi, _ in rx.runs] == [(0, 4), (4, 8)]
        assert all(in_shared_memory(rows, server) for _, _, rows in rx.runs)
        assert received(rx) == sent
        head = rx.headers(20)
        assert not in_shared_memory(head, server)
        assert [bytes(h) for h in head] == [f[:20] for f in sent]
        assert [bytes(r[:64]) for r in rx.matrix] == sent
        out = np.zeros((8, 32), np.uint8)
        assert rx.headers(20, out) is out
        assert [bytes(r[:20]) for r in out] == [f[:20] for f in sent] and not out[:, 20:].any()


def test_buffers_anywhere_are_gathered(pool: memif.BufferPool) -> None:
    with pair(client_pools=[pool]) as (server, client):
        region = client.pool_region(pool)
        offsets = np.array([9, 3, 7, 0, 12], np.uint32) * 2048 + 5  # not evenly spaced
        sent = frames(5, 70, seed=3)
        for off, f in zip(offsets.tolist(), sent, strict=True):
            pool.array[off : off + 70] = np.frombuffer(f, np.uint8)
        assert client.tx_queues[0].tx_zero_copy(region, offsets, 70) == 5
        rx = server.rx_queues[0].rx_burst()
        assert not rx.chained and not rx.is_view
        assert received(rx) == sent
        head = rx.headers(14)
        assert not in_shared_memory(head, server)
        assert [bytes(h) for h in head] == [f[:14] for f in sent]


def test_an_empty_burst_has_empty_arrays() -> None:
    with pair() as (server, _):
        rx = server.rx_queues[0].rx_burst()
        assert len(rx) == 0 and rx.runs == [] and rx.is_view and not rx.chained
        assert rx.first.shape == (0,) and rx.matrix.shape == (0, 0)
        assert rx.headers(14).shape == (0, 14)


@pytest.mark.parametrize("receiver", ["server", "client"])
def test_receive_block_refills_when_it_ends(receiver: str) -> None:
    with pair() as (server, client):
        local, peer = (server, client) if receiver == "server" else (client, server)
        rxq, txq = local.rx_queues[0], peer.tx_queues[0]
        free = txq.free_slots()
        assert txq.send(FRAMES) == 8 and txq.free_slots() == free - 8
        with rxq.receive(8) as rx:
            assert rx.tolist() == FRAMES
            assert txq.free_slots() == free - 8  # still held
        assert txq.free_slots() == free  # given back


def test_receive_block_refills_when_it_raises() -> None:
    with pair() as (server, client):
        rxq, txq = server.rx_queues[0], client.tx_queues[0]
        free = txq.free_slots()
        assert txq.send(FRAMES) == 8
        with pytest.raises(ZeroDivisionError), rxq.receive(8) as rx:
            assert len(rx) == 8
            _ = 1 / 0
        assert txq.free_slots() == free  # the packets are consumed either way
        assert rxq.pending() == 0


def test_receive_block_after_the_peer_left_reads_nothing_and_ends_quietly() -> None:
    with pair() as (server, client):
        rxq = server.rx_queues[0]
        assert client.send(FRAMES) == 8
        with rxq.receive(8) as rx:
            client.socket.close()
            assert drive(server.socket, until=lambda: not server.connected)
            assert not rxq.connected
            assert rx.lengths.tolist() == [64] * 8 and rx.first.tolist() == list(range(8))
            for read in (lambda: rx.runs, lambda: rx.matrix, lambda: rx.headers(14)):
                with pytest.raises(NotConnectedError):
                    read()
        with pytest.raises(NotConnectedError):
            rxq.receive(8)


# --------------------------------------------------------------------------- transmit


@pytest.mark.parametrize("sender", ["server", "client"])
def test_reserve_block_publishes_every_buffer_with_its_lengths(sender: str) -> None:
    with pair() as (server, client):
        local, peer = (server, client) if sender == "server" else (client, server)
        txq = local.tx_queues[0]
        with txq.reserve(8) as tx:
            assert tx.count == 8 and tx.is_view and in_shared_memory(tx.buffers, local)
            for i, f in enumerate(FRAMES):
                tx.buffers[i, :64] = np.frombuffer(f, np.uint8)
            tx.lengths = 64
            assert peer.rx_queues[0].pending() == 0  # nothing before the block ends
        assert tx.published
        assert peer.recv() == FRAMES


def test_commit_inside_the_block_publishes_those_and_nothing_more() -> None:
    with pair() as (server, client):
        txq = client.tx_queues[0]
        with txq.reserve(8) as tx:
            tx.buffers[:, :64] = np.frombuffer(b"".join(FRAMES), np.uint8).reshape(8, 64)
            assert tx.commit(3, lengths=np.array([64, 40, 20], np.uint32)) == 3
            tx.lengths = 64  # too late: the batch went out
            with pytest.raises(ConfigError, match="already published"):
                tx.commit()
        assert txq.in_flight == 3
        assert server.recv() == [FRAMES[0], FRAMES[1][:40], FRAMES[2][:20]]


def test_an_exception_in_the_block_publishes_nothing() -> None:
    with pair() as (server, client):
        txq = client.tx_queues[0]
        free = txq.free_slots()
        with pytest.raises(ZeroDivisionError), txq.reserve(8) as tx:
            tx.buffers[:, :4] = 1
            tx.lengths = 64
            _ = 1 / 0
        assert not tx.published and txq.free_slots() == free
        assert server.rx_queues[0].pending() == 0
        again = txq.reserve(8)
        assert again.start == tx.start  # the same buffers are handed out again


def test_a_block_that_never_said_its_lengths_sends_nothing() -> None:
    with pair() as (server, client):
        txq = client.tx_queues[0]
        free = txq.free_slots()
        with txq.reserve(8) as tx:
            tx.buffers[:, :4] = 1
        assert not tx.published and txq.free_slots() == free
        assert server.rx_queues[0].pending() == 0
        with pytest.raises(ConfigError, match="lengths"):
            tx.commit()


def test_scattered_posted_buffers_are_filled_through_staging(pool: memif.BufferPool) -> None:
    with pair(client_pools=[pool], client_post_rx_buffers=False) as (server, client):
        rxq, txq = client.rx_queues[0], server.tx_queues[0]
        region = client.pool_region(pool)
        offsets = np.array([5, 1, 8, 2, 11, 3], np.uint32) * 2048  # not evenly spaced
        assert rxq.refill_from(region, offsets, 2048) == 6
        assert txq.capacity == 2048
        with txq.reserve(6) as tx:
            assert tx.count == 6 and not tx.is_view
            assert not in_shared_memory(tx.buffers, server)
            assert len(tx.runs) == 1 and tx.runs[0][2] is tx.buffers
            tx.buffers[:, :64] = np.frombuffer(b"".join(FRAMES[:6]), np.uint8).reshape(6, 64)
            tx.buffer(5)[:2] = (0xAB, 0xCD)  # every write goes through the staging array
            tx.lengths = 64
        want = [*FRAMES[:5], b"\xab\xcd" + FRAMES[5][2:]]
        assert drive(client.socket, until=lambda: rxq.pending() == 6)
        rx = rxq.rx_burst()
        assert rx.seg_offset.tolist() == offsets.tolist() and rx.tolist() == want
        assert [bytes(pool.array[o : o + 64]) for o in offsets.tolist()] == want


def test_a_wrapped_reservation_stages_buffers_and_keeps_run_views() -> None:
    with pair(ring_size=16) as (server, client):
        txq = client.tx_queues[0]
        assert txq.send(frames(12)) == 12
        assert len(server.recv(12)) == 12
        tx = txq.reserve(8, wrap=True)
        assert tx.count == 8 and [(lo, hi) for lo, hi, _ in tx.runs] == [(0, 4), (4, 8)]
        assert all(in_shared_memory(rows, client) for _, _, rows in tx.runs)
        assert not tx.is_view
        sent = frames(8, seed=4)
        tx.buffers[:, :64] = np.frombuffer(b"".join(sent), np.uint8).reshape(8, 64)
        assert len(tx.runs) == 1 and tx.runs[0][2] is tx.buffers
        with tx:
            tx.lengths = 64
        assert server.recv() == sent


def test_capacity_and_buffer_size() -> None:
    with pair(buffer_size=1024) as (server, client):
        assert client.tx_queues[0].buffer_size == client.rx_queues[0].buffer_size == 1024
        assert server.tx_queues[0].buffer_size == server.rx_queues[0].buffer_size == 0
        assert client.tx_queues[0].capacity == 1024
        assert server.tx_queues[0].capacity == 1024  # what the client posted
        assert client.tx_queues[0].reserve(4).capacity == 1024


def test_transmit_after_the_peer_left_raises_not_connected() -> None:
    with pair() as (server, client):
        txq = client.tx_queues[0]
        with pytest.raises(NotConnectedError), txq.reserve(8) as tx:
            tx.lengths = 64
            server.socket.close()
            assert drive(client.socket, until=lambda: not client.connected)
        with pytest.raises(NotConnectedError):
            txq.reserve(8)
        with pytest.raises(NotConnectedError):
            _ = txq.capacity
        assert tx.count == 8 and not tx.published


# --------------------------------------------------------------------------- a caller


@pytest.mark.parametrize("snaplen", [65535, 200, 50])
def test_pcap_writes_chained_and_scattered_batches_whole(
    pool: memif.BufferPool, snaplen: int
) -> None:
    """PcapWriter.write_batch takes every batch through headers(): chained packets are
    assembled and buffers anywhere gathered, in one vectorized write."""
    with pair(buffer_size=128, client_pools=[pool]) as (server, client):
        rxq = server.rx_queues[0]
        chained = frames(3, 300) + frames(2, 90, seed=5)
        assert client.send(chained) == 5
        offsets = np.array([4, 1, 6], np.uint32) * 2048
        scattered = frames(3, 120, seed=6)
        for off, f in zip(offsets.tolist(), scattered, strict=True):
            pool.array[off : off + 120] = np.frombuffer(f, np.uint8)
        for sent, index in ((chained, None), (chained, [4, 0, 2]), (scattered, None)):
            if sent is scattered:
                assert client.tx_queues[0].tx_zero_copy(client.pool_region(pool), offsets, 120)
            with rxq.receive() as rx:
                assert rx.chained == (sent is chained) and not rx.is_view
                out = io.BytesIO()
                with pcap.PcapWriter(out, snaplen=snaplen) as w:
                    picked = sent if index is None else [sent[i] for i in index]
                    assert w.write_batch(rx, 7, index) == len(picked)
                    w.flush()
                    records = pcap.read_pcap(io.BytesIO(out.getvalue()))
            assert [r.data for r in records] == [f[:snaplen] for f in picked]
            assert [r.orig_len for r in records] == [len(f) for f in picked]
            if sent is chained and index is None:
                assert client.send(chained) == 5  # again, for the indexed write
