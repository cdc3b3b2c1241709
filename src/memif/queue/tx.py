"""Transmit: TxQueue hands out TxBatch buffers to fill, publishes, chains, zero-copy."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import numpy as np

from .. import wire
from ..errors import ConfigError
from ..shm import Region, Ring
from ._common import (
    _FULL,
    _TOO_BIG,
    _U16,
    Pieces,
    Run,
    SlotLayout,
    _bad_mask,
    _Queue,
    check_live,
    pieces,
    ring_pieces,
    row_index,
    row_items,
    slot_values,
    strided_view,
)


class TxBatch:
    """Buffers in shared memory handed out by :meth:`TxQueue.alloc`, to fill in place.

    ``runs`` lists ``(lo, hi, view)``: packets ``lo..hi`` go to the rows of a zero-copy
    ``(hi - lo, capacity)`` uint8 view, one run per stretch of evenly spaced buffers
    (two when the batch wraps the ring's end); None when the buffers lie anywhere.
    ``buffers`` is the one view of a single-run batch (always the case on a slave
    unless ``alloc(wrap=True)`` wrapped), else None: then use :meth:`buffer` or
    :meth:`fill`.  Once the connection is gone, :meth:`buffer`, :meth:`fill` and
    :meth:`copy_from` raise :class:`~memif.NotConnectedError`.
    """

    __slots__ = ("start", "count", "capacity", "runs", "buffers", "_regions", "_region", "_offset")

    def __init__(
        self,
        start: int,
        capacity: int,
        regions: Sequence[np.ndarray],
        region: np.ndarray | int,
        offset: np.ndarray,
        runs: list[Run] | None,
    ) -> None:
        self.start = start
        self.count = len(offset)
        self.capacity = capacity
        self.runs = runs
        self.buffers = runs[0][2] if runs is not None and len(runs) == 1 else None
        self._regions = regions
        self._region = region
        self._offset = offset

    def __len__(self) -> int:
        return self.count

    def buffer(self, i: int) -> np.ndarray:
        """Zero-copy view of slot ``i``'s buffer (``capacity`` bytes)."""
        check_live(self._regions)
        return self._view(i)

    def _view(self, i: int) -> np.ndarray:
        """:meth:`buffer` of a batch known to be live."""
        if self.runs is not None:
            for lo, hi, view in self.runs:
                if i < hi:
                    row: np.ndarray = view[i - lo]
                    return row
        off = int(self._offset[i])
        r = self._region if isinstance(self._region, int) else int(self._region[i])
        buf: np.ndarray = self._regions[r][off : off + self.capacity]
        return buf

    def copy_from(self, rows: np.ndarray, idx: np.ndarray) -> None:
        """Fill buffer ``i`` with ``rows[idx[i]]``, for the first ``len(idx)`` buffers.

        ``rows`` is a :func:`~memif.queue.row_items` view of the source (an
        application's buffer pool, say): each copy moves ``rows.itemsize`` bytes, at
        most :attr:`capacity`.  One row copy per run of evenly spaced buffers.
        """
        check_live(self._regions)
        k, width = len(idx), rows.dtype.itemsize
        if width > self.capacity:
            raise ConfigError(f"rows of {width} bytes do not fit buffers of {self.capacity}")
        if self.runs is not None:
            for lo, hi, view in self.runs:
                hi = min(hi, k)
                if hi > lo:
                    row_items(view, width)[: hi - lo] = rows[idx[lo:hi]]
            return
        if k:
            self.fill(rows[idx].view(np.uint8).reshape(k, width))

    def fill(self, data: np.ndarray) -> None:
        """Copy a ``(count, width)`` array into the buffers (vectorized scatter)."""
        check_live(self._regions)
        width = data.shape[1]
        if self.runs is not None:
            for lo, hi, view in self.runs:
                hi = min(hi, len(data))
                if hi > lo:
                    view[: hi - lo, :width] = data[lo:hi]
            return
        if data.dtype != np.uint8 or data.strides[1] != 1:
            data = np.ascontiguousarray(data, np.uint8)
        region = self._region
        if isinstance(region, int):
            uniform = True
        else:
            region = region[: len(data)]
            uniform = len(region) > 0 and bool(
                region[0] == region[-1] and (region == region[0]).all()
            )
            if uniform:
                region = int(region[0])
        r: int
        for r in [cast(int, region)] if uniform else np.unique(region).tolist():
            rows = slice(0, len(data)) if uniform else np.flatnonzero(region == r)
            offsets = self._offset[rows]
            grid = row_index(self._regions[r], offsets, width)
            if grid is not None:  # whole rows of one grid: one row scatter
                row_items(grid[0], width)[grid[1]] = row_items(data, width)[rows]
                continue
            idx = offsets[:, None].astype(np.int64) + np.arange(width)
            self._regions[r][idx] = data[rows]


class TxQueue(_Queue):
    """The producer end of a ring: ``alloc`` buffers, fill them, ``tx_burst``.

    A slave transmits on S2M rings into its own buffers and moves ``head``; a master
    transmits on M2S rings into the buffers the slave posted and moves ``tail``.
    Once the connection is gone (:attr:`connected` False) every method raises
    :class:`~memif.NotConnectedError`.
    """

    def __init__(self, ring: Ring, regions: Sequence[Region], index: int, **options: Any) -> None:
        super().__init__(ring, regions, index, **options)
        self._rewrite_desc = False  # set once zero-copy pointed slots elsewhere
        # The buffer of each slot: a slave's own, known from the start; for a master the
        # slave's, once learned from what it posts (and forgotten when that changes).
        self._layout = None
        offsets = self._buf_offsets
        if not self.is_master and offsets is not None:
            region = self._buf_region
            self._layout = SlotLayout.of(self._regions[region], region, offsets)
            ring.d_region[:] = region  # each slot's own buffer, written once
            ring.d_offset[:] = offsets
        self._reclaimed = ring.tail

    def free_slots(self) -> int:
        """Slots the producer may fill now (0 and ``fault`` set if the counters are impossible)."""
        ring = self.ring
        n = (ring.head - ring.tail) & _U16  # master: posted, slave: in flight
        if n > ring.size:
            return self._fail("ring counter out of range")
        return n if self.is_master else ring.size - n

    def alloc(self, count: int, *, wrap: bool = False) -> TxBatch:
        """Hand out up to ``count`` slot buffers.

        One contiguous run of the ring (it stops at the ring's end), or with ``wrap`` as
        many as are free, across the end (then ``buffers`` is None: use ``runs``).
        """
        ring = self.ring
        free = self.free_slots()  # checks the counters (faults when impossible)
        start = ring.tail if self.is_master else ring.head
        s = start & ring.mask
        return self._batch(start, min(count, free) if wrap else min(count, free, ring.size - s))

    def _batch(self, start: int, n: int) -> TxBatch:
        """The buffers of ``n`` slots from counter ``start``."""
        pieces = ring_pieces(start, n, self.ring.size)
        if self.is_master:
            return self._alloc_posted(start, pieces)
        layout = self._layout
        return TxBatch(
            start,
            self._buf_size,
            self._regions,
            self._buf_region,
            slot_values(cast(np.ndarray, self._buf_offsets), pieces, copy=False),
            None if layout is None else layout.runs(pieces, self._buf_size),
        )

    def _alloc_posted(self, start: int, pieces: Pieces) -> TxBatch:
        ring = self.ring
        fast = self._alloc_known_layout(start, pieces)
        if fast is not None:
            return fast
        region = slot_values(ring.d_region, pieces, copy=True)
        offset = slot_values(ring.d_offset, pieces, copy=True)
        length = slot_values(ring.d_length, pieces, copy=True)
        n = len(offset)
        if n and _bad_mask(region, offset, length, self._sizes) is not None:
            self._fail("peer posted a buffer outside its regions")
            n = 0
        cap = int(length.min()) if n else 0
        runs: list[Run] | None = None
        if n and (region == region[0]).all():
            r = int(region[0])
            runs = []
            for at, lo, hi in pieces:
                view = strided_view(self._regions[r], offset[lo:hi], cap)
                if view is None:
                    runs = None
                    break
                runs.append((lo, hi, view))
                if self._layout is None and hi - lo > 1:
                    stride = int(offset[lo + 1]) - int(offset[lo])
                    self._layout = SlotLayout.learn(
                        self._regions[r], r, ring.size, at, int(offset[lo]), stride
                    )
        return TxBatch(start, cap, self._regions, region[:n], offset[:n], runs)

    def _alloc_known_layout(self, start: int, pieces: Pieces) -> TxBatch | None:
        """Master: the posted slots as rows of the learned layout, or None."""
        layout = self._layout
        if layout is None or pieces[-1][2] == 0:
            return None
        ring = self.ring
        if not layout.holds(ring.d_offset, pieces, by_slot=True) or any(
            np.count_nonzero(ring.d_region[at : at + hi - lo] != layout.region)
            for at, lo, hi in pieces
        ):
            self._layout = None  # the slave posts elsewhere now: learn again
            return None
        cap = layout.grid.shape[1]  # rows never overlap
        for at, lo, hi in pieces:
            cap = min(cap, int(ring.d_length[at : at + hi - lo].min()))
        if cap == 0:
            return None
        offset = slot_values(layout.offsets, pieces, copy=False)  # ours: a view will do
        return TxBatch(start, cap, self._regions, layout.region, offset, layout.runs(pieces, cap))

    def tx_burst(
        self,
        batch: TxBatch,
        lengths: np.ndarray | int,
        count: int | None = None,
        flags: np.ndarray | None = None,
    ) -> int:
        """Publish the first ``count`` slots of ``batch`` with their ``lengths``.

        ``lengths`` is one int for all or an array; ``flags`` (DESC_FLAG_NEXT) marks
        chained slots.  Kicks the eventfd once unless the consumer masked it.
        """
        n = batch.count if count is None else count
        if n == 0:
            self._live()
            return 0
        ring = self.ring
        one = isinstance(lengths, int | np.integer)
        if one:
            if not 0 < lengths <= batch.capacity:
                raise ConfigError(f"length {lengths} must be 1..{batch.capacity}")
            nbytes = int(lengths) * n
        else:
            lengths = np.asarray(lengths)[:n]
            if int(lengths.max()) > batch.capacity or int(lengths.min()) <= 0:
                raise ConfigError(f"lengths must be 1..{batch.capacity}")
            nbytes = int(lengths.sum())
        for at, lo, hi in ring_pieces(batch.start, n, ring.size):
            end = at + hi - lo
            ring.d_length[at:end] = lengths if one else cast(np.ndarray, lengths)[lo:hi]
            ring.d_flags[at:end] = 0 if flags is None else flags[lo:hi]
            if not self.is_master and self._rewrite_desc:
                ring.d_region[at:end] = self._buf_region
                ring.d_offset[at:end] = batch._offset[lo:hi]
        if self.is_master:
            ring.tail = batch.start + n
        else:
            ring.head = batch.start + n
        if flags is None:
            self.stats.packets += n
        else:
            self.stats.packets += n - int(np.count_nonzero(flags[:n] & wire.DESC_FLAG_NEXT))
        self.stats.bytes += nbytes
        ring.kick()
        return n

    def tx_chained(self, rows: np.ndarray, idx: np.ndarray, lengths: np.ndarray) -> int:
        """Copy packet ``i`` (the first ``lengths[i]`` bytes of ``rows[idx[i]]``) into
        the ring, chaining each over as many slots as it needs; returns how many of the
        first packets were published (the rest did not fit in the free slots).

        ``rows`` is a C-contiguous 2-D uint8 array (an application's buffer pool).
        The whole burst is a fixed number of numpy operations whatever the buffers'
        size: one gather of every segment, one scatter into the slots, one publish.
        """
        n = len(idx)
        free = self.free_slots()
        if n == 0 or free == 0:
            return 0
        tx = self.alloc(free, wrap=True)
        cap = tx.capacity
        if tx.count == 0 or cap == 0:
            return 0
        lengths = lengths.astype(np.int64)
        segs = -(-lengths // cap)
        ends = np.cumsum(segs)
        k = int(np.searchsorted(ends, tx.count, side="right"))  # packets that fit
        if k == 0:
            return 0
        total = int(ends[k - 1])
        segs, ends = segs[:k], ends[:k]
        pkt = np.repeat(np.arange(k), segs)
        part = np.arange(total) - np.repeat(ends - segs, segs)  # segment number in its packet
        at = part * cap
        seg_len = np.minimum(lengths[pkt] - at, cap)
        starts = idx[pkt].astype(np.int64) * rows.shape[1] + at
        tx.fill(pieces(rows.reshape(-1), starts, cap))
        flags = np.full(total, wire.DESC_FLAG_NEXT, np.uint16)
        flags[ends - 1] = 0
        self.tx_burst(tx, seg_len, count=total, flags=flags)
        return k

    @property
    def in_flight(self) -> int:
        """Slots published and not yet given back by the consumer."""
        ring = self.ring
        n = (ring.head - ring.tail) & _U16 if not self.is_master else 0
        return n if n <= ring.size else 0

    def reclaim(self) -> int:
        """Slots the consumer gave back since the last call (zero-copy bookkeeping).

        Slots complete in order, so a caller keeping a FIFO of what it published can
        release that many entries from its front.
        """
        ring = self.ring
        tail = ring.tail
        n = (tail - self._reclaimed) & _U16
        if n > (ring.head - self._reclaimed) & _U16:  # released more than was published
            return self._fail("ring counter out of range")
        self._reclaimed = tail
        return n

    def tx_zero_copy(self, region: int, offsets: np.ndarray, lengths: np.ndarray | int) -> int:
        """Client only: publish descriptors that point straight into shared memory.

        ``region`` is a region index (``Interface.pool_region(pool)`` for a
        :class:`~memif.BufferPool`), ``offsets``/``lengths`` say where each packet
        lies in it.  Nothing is copied.  Returns how many were published (limited by
        free slots); the memory of packet ``k`` is the peer's until :attr:`in_flight`
        drops below ``published - k``.
        """
        free = self.free_slots()  # first: NotConnectedError once the connection is gone
        if self.is_master:
            raise ConfigError("only a client transmits from its own memory (zero-copy)")
        offsets = np.asarray(offsets, dtype=np.uint32)
        lengths = np.asarray(lengths, dtype=np.uint32)
        if lengths.shape != offsets.shape:
            lengths = np.broadcast_to(lengths, offsets.shape)
        if not 0 <= region < len(self._sizes):
            raise ConfigError(f"region {region} does not exist (have {len(self._sizes)})")
        if len(offsets) and (
            int(lengths.min()) == 0
            or int((offsets.astype(np.uint64) + lengths).max()) > int(self._sizes[region])
        ):
            raise ConfigError(f"a packet lies outside region {region} or has length 0")
        ring = self.ring
        n = min(len(offsets), free)
        start = ring.head
        for at, lo, hi in ring_pieces(start, n, ring.size):
            ring.d_region[at : at + hi - lo] = region
            ring.d_offset[at : at + hi - lo] = offsets[lo:hi]
            ring.d_length[at : at + hi - lo] = lengths[lo:hi]
            ring.d_flags[at : at + hi - lo] = 0
        self._rewrite_desc = True
        if n:
            ring.head = start + n
            self.stats.packets += n
            self.stats.bytes += int(lengths[:n].sum())
            ring.kick()
        return n

    def send(self, packets: Iterable[bytes | bytearray | memoryview | np.ndarray]) -> int:
        """Copy packets into the ring, chaining any larger than a buffer; returns sent.

        Sending stops at the first packet that does not fit in the free slots; it and
        the rest are counted as ``no_free_slots``.  A packet that could never fit
        (more buffers than the ring has, or empty) is skipped and counted as
        ``too_big``.
        """
        sent = 0
        packets = list(packets)
        for k, pkt in enumerate(packets):
            data = pkt if isinstance(pkt, np.ndarray) else np.frombuffer(pkt, np.uint8)
            result = self._send_one(data)  # publishes each packet; one kick at the end
            if result is _FULL:
                self.stats.count("no_free_slots", len(packets) - k)
                break
            if result is _TOO_BIG:
                self.stats.count("too_big")
            else:
                sent += 1
        if sent:
            self.ring.kick()
        else:
            self._live()  # nothing touched the ring (no packets, or all empty)
        return sent

    def _send_one(self, data: np.ndarray) -> object:
        """Plan the slots of one packet (each with its own capacity), fill, publish once."""
        ring, size = self.ring, len(data)
        if size == 0:
            return _TOO_BIG
        free = self.free_slots()
        start = ring.tail if self.is_master else ring.head
        plan: list[tuple[TxBatch, int, int]] = []
        pos = 0
        while pos < size:
            if len(plan) == free:  # out of slots: could it ever fit in this ring?
                cap = plan[-1][0].capacity if plan else self._buf_size or 1
                need = len(plan) + -(-(size - pos) // cap)
                return _TOO_BIG if need > ring.size else _FULL
            slot = self._slot(start + len(plan))
            if slot.count == 0 or slot.capacity == 0:
                return _FULL  # a bad posted buffer: the queue is faulted
            plan.append((slot, pos, min(size, pos + slot.capacity)))
            pos = plan[-1][2]
        offsets = cast(np.ndarray, self._buf_offsets)  # a slave's, always set
        for j, (slot, lo, hi) in enumerate(plan):
            slot._view(0)[: hi - lo] = data[lo:hi]
            s = (start + j) & ring.mask
            ring.d_length[s] = hi - lo
            ring.d_flags[s] = wire.DESC_FLAG_NEXT if j < len(plan) - 1 else 0
            if not self.is_master:
                ring.d_region[s] = self._buf_region
                ring.d_offset[s] = offsets[s]
        if self.is_master:
            ring.tail = start + len(plan)
        else:
            ring.head = start + len(plan)
        self.stats.packets += 1
        self.stats.bytes += size
        return None

    def _slot(self, counter: int) -> TxBatch:
        return self._batch(counter, 1)
