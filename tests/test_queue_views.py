"""The zero-copy views and row gathers of the data path, against plain byte copies."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memif.errors import ConfigError
from memif.queue import RxBatch, TxBatch, row_index, row_items, strided_view

REGION = 64 * 1024


def reference_rows(region: np.ndarray, offsets: np.ndarray, width: int) -> np.ndarray:
    """Packet by packet: the first ``width`` bytes at each offset (zero past the region)."""
    out = np.zeros((len(offsets), width), np.uint8)
    for k, o in enumerate(offsets.tolist()):
        piece = region[o : o + width]
        out[k, : len(piece)] = piece
    return out


def disjoint_buffers(offsets: np.ndarray, width: int) -> np.ndarray:
    """Transmit buffers are handed out once, never overlap and lie inside the region."""
    offsets = np.unique(offsets)
    keep = np.append(np.diff(offsets.astype(np.int64)) >= width, True)
    return offsets[keep & (offsets.astype(np.int64) + width <= REGION)]


offsets_strategy = st.one_of(
    # slots of a grid in any order (a pool's free list, a ring that wraps)
    st.builds(
        lambda grid, slots, base: np.array([base + s * grid for s in slots], np.uint32),
        st.sampled_from([64, 128, 2048, 4096]),
        st.lists(st.integers(0, 12), min_size=1, max_size=40),
        st.integers(0, 63),
    ),
    # anything at all
    st.lists(st.integers(0, REGION - 1), min_size=1, max_size=40).map(
        lambda v: np.array(v, np.uint32)
    ),
)


@settings(max_examples=300, deadline=None)
@given(offsets=offsets_strategy, width=st.integers(1, 200), seed=st.integers(0, 2**32 - 1))
def test_gather_matches_byte_copies(offsets, width, seed):
    region = np.random.default_rng(seed).integers(0, 256, REGION, dtype=np.uint8)
    lengths = np.minimum(width, REGION - offsets.astype(np.int64)).astype(np.uint32)
    batch = RxBatch([region], np.zeros(len(offsets), np.uint16), offsets, lengths)
    got = batch.gather(width=width)
    want = reference_rows(region, offsets, width)
    for k, n in enumerate(lengths.tolist()):  # bytes past a packet are unspecified
        assert got[k, :n].tolist() == want[k, :n].tolist()


@settings(max_examples=200, deadline=None)
@given(offsets=offsets_strategy, width=st.integers(1, 64), seed=st.integers(0, 2**32 - 1))
def test_fill_matches_byte_copies(offsets, width, seed):
    offsets = disjoint_buffers(offsets, width)
    if not len(offsets):
        return
    region = np.zeros(REGION, np.uint8)
    data = np.random.default_rng(seed).integers(1, 256, (len(offsets), width), dtype=np.uint8)
    TxBatch(0, width, [region], 0, offsets, None).fill(data)
    assert reference_rows(region, offsets, width).tolist() == data.tolist()


@settings(max_examples=300, deadline=None)
@given(
    offsets=offsets_strategy,
    width=st.integers(1, 200),
    wrap=st.integers(0, 40),
    seed=st.integers(0, 2**32 - 1),
)
def test_copy_into_matches_byte_copies(offsets, width, wrap, seed):
    """Packets land in the rows their index names, whichever path copies them."""
    rng = np.random.default_rng(seed)
    region = rng.integers(0, 256, REGION, dtype=np.uint8)
    lengths = np.minimum(width, REGION - offsets.astype(np.int64)).astype(np.uint32)
    batch = RxBatch([region], np.zeros(len(offsets), np.uint16), offsets, lengths, wrap=wrap)
    pool = np.zeros((64, 256), np.uint8)
    take = rng.integers(0, len(offsets) + 1)  # the first packets only, as when buffers run out
    idx = rng.permutation(64)[:take]
    batch.copy_into(row_items(pool, width), idx)
    want = reference_rows(region, offsets, width)
    for k, i in enumerate(idx.tolist()):
        n = int(lengths[k])
        assert pool[i, :n].tolist() == want[k, :n].tolist()
    assert not pool[np.setdiff1d(np.arange(64), idx)].any()


@settings(max_examples=300, deadline=None)
@given(
    offsets=offsets_strategy,
    length=st.integers(1, 200),
    width=st.integers(0, 220),
    wrap=st.integers(0, 40),
    seed=st.integers(0, 2**32 - 1),
)
def test_headers_runs_and_matrix_match_byte_copies(offsets, length, width, wrap, seed):
    """Whatever the buffers' layout: headers(width) holds each packet's first bytes (a view
    of the region exactly when the layout allows), runs cover every packet in order and
    matrix is their rows; nothing is None."""
    rng = np.random.default_rng(seed)
    region = rng.integers(0, 256, REGION, dtype=np.uint8)
    lengths = np.minimum(length, REGION - offsets.astype(np.int64)).astype(np.uint32)
    batch = RxBatch([region], np.zeros(len(offsets), np.uint16), offsets, lengths, wrap=wrap)
    want = reference_rows(region, offsets, max(width, int(lengths.max())))
    head = batch.headers(width)
    assert head.shape == (len(offsets), width) and head.dtype == np.uint8
    one_view = batch.is_view and len(batch.runs) == 1 and width <= int(lengths.max())
    assert np.shares_memory(head, region) == (one_view and width > 0)
    end = 0
    for lo, hi, rows in batch.runs:
        assert lo == end and rows.shape[0] == hi - lo
        assert np.shares_memory(rows, region) == batch.is_view
        end = hi
    assert end == len(offsets) and batch.first.tolist() == list(range(len(offsets)))
    matrix = batch.matrix
    for k, n in enumerate(lengths.tolist()):  # bytes past a packet are unspecified
        assert head[k, : min(n, width)].tolist() == want[k, : min(n, width)].tolist()
        assert matrix[k, :n].tolist() == want[k, :n].tolist()


@settings(max_examples=200, deadline=None)
@given(offsets=offsets_strategy, width=st.integers(1, 64), seed=st.integers(0, 2**32 - 1))
def test_copy_from_matches_byte_copies(offsets, width, seed):
    offsets = disjoint_buffers(offsets, width)
    if not len(offsets):
        return
    rng = np.random.default_rng(seed)
    pool = rng.integers(1, 256, (64, width), dtype=np.uint8)
    idx = rng.integers(0, 64, len(offsets))  # a pool row may go out twice (flooding)
    for view in (None, strided_view(np.zeros(REGION, np.uint8), offsets, width)):
        region = np.zeros(REGION, np.uint8) if view is None else view.base
        runs = None if view is None else [(0, len(offsets), view)]
        TxBatch(0, width, [region], 0, offsets, runs).copy_from(row_items(pool, width), idx)
        assert reference_rows(region, offsets, width).tolist() == pool[idx].tolist()


@settings(max_examples=200, deadline=None)
@given(offsets=offsets_strategy, width=st.integers(1, 64), seed=st.integers(0, 2**32 - 1))
def test_staged_buffers_land_where_their_offsets_say(offsets, width, seed):
    """Buffers anywhere: ``buffers`` is a staging array (never None) that every write goes
    through, and flush() scatters its rows to the buffers' offsets."""
    offsets = disjoint_buffers(offsets, width)
    if not len(offsets):
        return
    rng = np.random.default_rng(seed)
    region = np.zeros(REGION, np.uint8)
    batch = TxBatch(0, width, [region], 0, offsets, None)
    assert not batch.is_view and batch.buffers.shape == (len(offsets), width)
    assert not np.shares_memory(batch.buffers, region)
    data = rng.integers(1, 256, (len(offsets), width), dtype=np.uint8)
    batch.buffers[:] = data
    batch.buffer(0)[:1] = 0  # through the staging row too
    data[0, :1] = 0
    assert len(batch.runs) == 1 and batch.runs[0][2] is batch.buffers
    assert not region.any()  # nothing written before publishing
    batch.flush(len(offsets), width)
    assert reference_rows(region, offsets, width).tolist() == data.tolist()


def test_copy_from_refuses_rows_wider_than_the_buffers():
    batch = TxBatch(0, 64, [np.zeros(REGION, np.uint8)], 0, np.array([0], np.uint32), None)
    with pytest.raises(ConfigError, match="do not fit"):
        batch.copy_from(row_items(np.zeros((4, 128), np.uint8), 100), np.array([0]))


def test_row_index_needs_rows_as_wide_as_the_frame():
    region = np.zeros(REGION, np.uint8)
    assert row_index(region, np.array([0, 2048, 6144], np.uint32), 2048) is not None
    assert row_index(region, np.array([0, 1000], np.uint32), 64) is not None  # 1000-byte rows
    assert row_index(region, np.array([0, 32], np.uint32), 64) is None  # rows would overlap
    assert row_index(region, np.array([REGION - 10], np.uint32), 64) is None  # past the end


def test_strided_view_takes_downward_strides():
    region = np.arange(REGION, dtype=np.int64).astype(np.uint8)
    offsets = np.array([8192, 4096, 0], np.uint32)
    view = strided_view(region, offsets, 16)
    assert view is not None and view.shape == (3, 16)
    assert view.tolist() == reference_rows(region, offsets, 16).tolist()
    assert strided_view(region, np.array([100, 90], np.uint32), 16) is None  # overlap


def test_server_one_packet_bursts_follow_the_buffers_the_client_posts():
    """A server sending 1-packet bursts learns the client's buffer layout from the next
    posted slot (a run of one slot shows no spacing) and drops it when the client posts
    its buffers elsewhere: every frame lands whole in the buffer posted in its slot."""
    from memif.testing import pair

    with pair(ring_size=16, buffer_size=128) as (server, client):
        txq, rxq = server.tx_queues[0], client.rx_queues[0]
        seen: list[int] = []
        regions: set[int | None] = set()

        def one(k: int) -> int:
            frame = bytes([k % 251]) * (60 + k % 60)
            with txq.reserve(1) as tx:
                assert tx.count == 1
                tx.buffers[0, : len(frame)] = np.frombuffer(frame, np.uint8)
                tx.lengths = len(frame)
            batch = rxq.rx_burst(1)
            assert batch.tolist() == [frame]
            regions.add(batch.region)
            return int(batch.seg_offset[0])

        for k in range(40):  # the ring wraps twice; the client reposts its own buffers
            seen.append(one(k))
            rxq.refill()
        (region,) = regions
        assert region is not None
        own = sorted(set(seen))
        assert len(own) == 16
        posted = deque(seen[24:40])  # what each slot holds, from the next one on
        for k in range(40, 100):  # posted again in another order, one at a time
            assert one(k) == posted.popleft()  # the frame went to the buffer of its slot
            offset = own[(k * 5) % 16]
            while offset in posted:
                offset = own[(own.index(offset) + 1) % 16]
            assert rxq.refill_from(region, np.array([offset], np.uint32), 128) == 1
            posted.append(offset)


def test_server_receives_one_packet_bursts_as_views_of_the_right_buffers():
    """A server taking 1-packet bursts learns the client's slot layout from the next
    slot's descriptor: each burst's header rows are views of the frame's own buffer."""
    from memif.testing import pair

    with pair(ring_size=16, buffer_size=128) as (server, client):
        txq, rxq = client.tx_queues[0], server.rx_queues[0]
        for k in range(40):  # the ring wraps twice
            frame = bytes([k, 255 - k]) * (30 + k % 30)
            assert txq.send([frame]) == 1
            with rxq.receive(1) as batch:
                assert batch.tolist() == [frame]
                rows = batch.headers(16)
                assert rows.tobytes() == frame[:16]
                pool = np.zeros((2, 128), np.uint8)
                batch.copy_into(row_items(pool, len(frame)), np.array([1]))
                assert pool[1, : len(frame)].tobytes() == frame and not pool[0].any()
