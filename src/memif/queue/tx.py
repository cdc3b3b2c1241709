"""Transmit: TxQueue hands out TxBatch buffers to fill, publishes, chains, zero-copy."""

from __future__ import annotations

import struct
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
    _read_raw,
    check_live,
    copy_windows,
    pieces,
    raw_offsets,
    ring_pieces,
    row_index,
    row_items,
    same_heads,
    slot_values,
    strided_view,
)

_HEAD = struct.Struct("<Q")  # a descriptor's first 8 bytes: flags | region << 16 | length << 32


class TxBatch:
    """Buffers in shared memory handed out by :meth:`TxQueue.alloc`, to fill in place.

    :attr:`buffers` is a ``(count, capacity)`` uint8 array to write the packets into,
    :attr:`runs` the same as ``(lo, hi, rows)`` pieces: views of the shared buffers
    when they are evenly spaced (:attr:`is_view`), else a staging array that
    publishing (:meth:`commit`, :meth:`TxQueue.tx_burst`) writes into the buffers.
    Neither is ever None.  Once ``buffers`` handed out a staging array, every write
    (``runs``, :meth:`buffer`, :meth:`fill`, :meth:`copy_from`) goes through it.

    As a context manager (``with txq.reserve(n) as tx:``) the batch publishes when
    the block ends: see :meth:`__exit__`.  Once the connection is gone,
    :meth:`buffer`, :meth:`fill`, :meth:`copy_from` and publishing raise
    :class:`~memif.NotConnectedError`.
    """

    __slots__ = (
        "start",
        "count",
        "capacity",
        "lengths",
        "_runs",
        "_staging",
        "published",
        "_queue",
        "_regions",
        "_region",
        "offsets",
    )

    def __init__(
        self,
        start: int,
        capacity: int,
        regions: Sequence[np.ndarray],
        region: np.ndarray | int,
        offset: np.ndarray,
        runs: list[Run] | None,
        queue: TxQueue | None = None,
    ) -> None:
        """``runs``: the buffers as strided views, when they are evenly spaced (None:
        anywhere); ``queue``: the queue :meth:`commit` publishes on."""
        self.start = start
        self.count = len(offset)
        self.capacity = capacity
        #: what :meth:`commit` and a ``with`` block's end publish: one length for every
        #: packet or one per buffer (None until the caller sets it)
        self.lengths: np.ndarray | int | None = None
        self._runs = runs
        self._staging: np.ndarray | None = None
        #: True once :meth:`commit` or :meth:`TxQueue.tx_burst` published the batch
        self.published = False
        self._queue = queue
        self._regions = regions
        self._region = region
        #: offset of each buffer in its region
        self.offsets = offset

    def __len__(self) -> int:
        return self.count

    def __enter__(self) -> TxBatch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """End of a ``with`` block: publish unless something says not to.

        - the block raised: nothing more is published (the buffers stay free and the
          next :meth:`TxQueue.reserve` hands them out again); the exception goes on;
        - :meth:`commit` (or ``tx_burst``) ran in the block: nothing more;
        - else, with :attr:`lengths` set: all :attr:`count` buffers are published;
        - else nothing is (a batch whose lengths were never said is not sent).
        """
        if exc_type is None and not self.published and self.lengths is not None:
            self.commit()

    def commit(
        self,
        count: int | None = None,
        *,
        lengths: np.ndarray | int | None = None,
        flags: np.ndarray | None = None,
    ) -> int:
        """Publish the first ``count`` buffers (all by default), as
        :meth:`TxQueue.tx_burst` does, with ``lengths`` (default :attr:`lengths`);
        returns how many.  Once per batch."""
        queue = self._queue
        if queue is None:
            raise ConfigError("this batch belongs to no queue: publish it with tx_burst")
        if self.published:
            raise ConfigError("this batch was already published: reserve another")
        lengths = self.lengths if lengths is None else lengths
        if lengths is None:
            raise ConfigError("commit needs the packets' lengths: pass lengths= or set .lengths")
        return queue.tx_burst(self, lengths, count, flags)

    @property
    def region(self) -> int | None:
        """The region index every buffer lies in, or None when they may differ."""
        region = self._region
        return region if isinstance(region, int) else None

    @property
    def is_view(self) -> bool:
        """True when :attr:`buffers` are the shared buffers themselves (one run of evenly
        spaced buffers), False when writes go to a staging array until publishing."""
        runs = self._runs
        return self._staging is None and runs is not None and len(runs) == 1

    @property
    def buffers(self) -> np.ndarray:
        """The buffers as one ``(count, capacity)`` uint8 array to fill in place: a
        zero-copy view when :attr:`is_view`, else a staging array (zeroed, made on
        first use) that publishing writes into the buffers."""
        staging = self._staging
        if staging is not None:
            return staging
        runs = self._runs
        if runs is not None and len(runs) == 1:
            return runs[0][2]
        check_live(self._regions)
        staging = self._staging = np.zeros((self.count, self.capacity), np.uint8)
        return staging

    @property
    def runs(self) -> list[Run]:
        """``(lo, hi, rows)``: buffers ``lo..hi`` as the rows of a ``(hi - lo, capacity)``
        uint8 array, covering every buffer: one view per stretch of evenly spaced
        buffers (two when the batch wraps the ring's end), else the staging
        :attr:`buffers` as one run."""
        runs = self._runs
        if self._staging is None and runs is not None:
            return runs
        return [(0, self.count, self.buffers)]

    def buffer(self, i: int) -> np.ndarray:
        """Zero-copy view of slot ``i``'s buffer (``capacity`` bytes), or its staging row."""
        check_live(self._regions)
        if self._staging is not None:
            row: np.ndarray = self._staging[i]
            return row
        return self._view(i)

    def _view(self, i: int) -> np.ndarray:
        """The shared buffer of slot ``i``, in a batch known to be live."""
        if self._runs is not None:
            for lo, hi, view in self._runs:
                if i < hi:
                    row: np.ndarray = view[i - lo]
                    return row
        off = int(self.offsets[i])
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
        if k == 1 and self._staging is None and self.count:  # one packet: one bytes copy
            buffer: np.ndarray = self._view(0)
            memoryview(buffer)[:width] = rows[idx[0]].tobytes()  # type: ignore[arg-type]
            return
        runs = self._runs if self._staging is None else [(0, self.count, self._staging)]
        if runs is not None:
            for lo, hi, view in runs:
                hi = min(hi, k)
                if hi > lo:
                    row_items(view, width)[: hi - lo] = rows[idx[lo:hi]]
            return
        if k:
            self._write(rows[idx].view(np.uint8).reshape(k, width))

    def fill_windows(self, memory: np.ndarray, starts: np.ndarray) -> None:
        """Fill buffer ``i`` with ``memory[starts[i] : starts[i] + capacity]`` (zero-padded
        past the end of ``memory``), for the first ``len(starts)`` buffers, straight into
        the buffers: one ``take`` per run of adjoining buffers when ``memory`` is whole
        buffers' worth of bytes and every start begins one of them, else a chunk at a
        time wherever the buffers lie."""
        check_live(self._regions)
        k, width, staging = len(starts), self.capacity, self._staging
        if staging is not None:
            staging[:k] = pieces(memory, starts, width)
            return
        runs = self._runs
        if (
            runs is not None
            and all(view.strides[0] == width for _, _, view in runs)
            and memory.flags.c_contiguous
            and len(memory) % width == 0
            and not np.count_nonzero(starts % width)
        ):
            whole = memory.view(np.dtype((np.void, width)))  # (memory holds every start)
            for lo, hi, view in runs:
                hi = min(hi, k)
                if hi > lo:
                    out = row_items(view[: hi - lo], width)
                    np.take(whole, starts[lo:hi] // width, out=out, mode="clip")
            return
        region, offsets = self._region, self.offsets[:k]
        if isinstance(region, int):
            copy_windows(self._regions[region], offsets, memory, starts, width)
            return
        region = region[:k]
        for r in np.unique(region).tolist():
            mine = region == r
            copy_windows(self._regions[r], offsets[mine], memory, starts[mine], width)

    def fill(self, data: np.ndarray) -> None:
        """Copy a ``(count, width)`` array into the buffers (vectorized scatter)."""
        check_live(self._regions)
        staging = self._staging
        if staging is not None:
            staging[: len(data), : data.shape[1]] = data
            return
        self._write(data)

    def flush(self, count: int, width: int) -> None:
        """Write the first ``count`` rows of the staging :attr:`buffers` (``width``
        bytes each) into the shared buffers; nothing to do when there is no staging
        array.  Publishing calls it."""
        staging = self._staging
        if staging is not None:
            check_live(self._regions)
            self._write(staging[:count, : min(width, self.capacity)])

    def _write(self, data: np.ndarray) -> None:
        """:meth:`fill` straight into the shared buffers."""
        width = data.shape[1]
        if self._runs is not None:
            for lo, hi, view in self._runs:
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
            offsets = self.offsets[rows]
            grid = row_index(self._regions[r], offsets, width)
            if grid is not None:  # whole rows of one grid: one row scatter
                row_items(grid[0], width)[grid[1]] = row_items(data, width)[rows]
                continue
            idx = offsets[:, None].astype(np.int64) + np.arange(width)
            self._regions[r][idx] = data[rows]


class TxQueue(_Queue):
    """The producer end of a ring: ``alloc`` buffers, fill them, ``tx_burst``; or in
    one block, published when it ends (nothing is, if it raises)::

        with txq.reserve(64) as tx:      # up to 64 buffers, fewer when the ring is full
            tx.buffers[:, :60] = frame   # fill in place
            tx.lengths = 60              # one length for all, or one per buffer

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

    @property
    def capacity(self) -> int:
        """Bytes the next buffer :meth:`alloc` hands out holds: :attr:`buffer_size` on
        the client; on the server the length the client posted with the next free
        slot, as checked by :meth:`alloc` (0 when it posted none, or a bad one)."""
        if not self.is_master:
            self._live()
            return self._buf_size
        return self.alloc(1).capacity

    def reserve(self, count: int, *, wrap: bool = False) -> TxBatch:
        """:meth:`alloc`, for a ``with`` block that publishes when it ends::

            with txq.reserve(64) as tx:
                tx.buffers[: tx.count, :60] = frames
                tx.commit(k, lengths=60)  # publish the first k now (optional)
            # without commit: all tx.count published with tx.lengths, if set

        An exception in the block publishes nothing more; a batch left without
        ``lengths`` and never committed is not sent (see :meth:`TxBatch.__exit__`).
        """
        return self.alloc(count, wrap=wrap)

    def alloc(self, count: int, *, wrap: bool = False) -> TxBatch:
        """Hand out up to ``count`` slot buffers.

        One contiguous run of the ring (it stops at the ring's end), or with ``wrap`` as
        many as are free, across the end (then ``runs`` has two views, and ``buffers``
        is a staging array).
        """
        ring = self.ring
        free = self.free_slots()  # checks the counters (faults when impossible)
        start = ring.tail if self.is_master else ring.head
        s = start & ring.mask
        if not wrap and free > ring.size - s:
            free = ring.size - s  # one contiguous run: it stops at the ring's end
        return self._batch(start, count if count < free else free)

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
            self,
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
        if runs is not None and n == 1 and self._layout is None:
            self._learn_from_next(start, int(region[0]), int(offset[0]))
        return TxBatch(start, cap, self._regions, region[:n], offset[:n], runs, self)

    def _learn_from_next(self, start: int, region: int, first: int) -> None:
        """Master: a run of one slot shows no spacing, so take it from the next posted
        slot (a sender of 1-packet bursts would otherwise never learn the layout, and
        pay the checks of unknown buffers on every burst).  Every later use still
        checks the slots against it (:meth:`_alloc_known_layout`)."""
        ring = self.ring
        if (ring.head - start) & _U16 < 2:  # nothing posted after this slot
            return
        nxt = (start + 1) & ring.mask
        if int(ring.d_region[nxt]) == region:
            stride = int(ring.d_offset[nxt]) - first
            self._layout = SlotLayout.learn(
                self._regions[region], region, ring.size, start & ring.mask, first, stride
            )

    def _alloc_known_layout(self, start: int, pieces: Pieces) -> TxBatch | None:
        """Master: the posted slots as rows of the learned layout, or None."""
        layout = self._layout
        if layout is None or pieces[-1][2] == 0:
            return None
        # A copy of the descriptors, checked by bytes comparisons (no reductions: about a
        # microsecond each): the slave posts every buffer with the same flags, region and
        # length, at the layout's offsets.
        raw = _read_raw(self.ring, start, pieces[-1][2])
        (head,) = _HEAD.unpack_from(raw)
        if not layout.matches(raw, head, pieces):  # one comparison for the usual run
            if not same_heads(raw, pieces[-1][2]):
                return None  # buffers of several lengths (or regions): checked one by one
            if not layout.holds(raw_offsets(raw), pieces):
                self._layout = None  # the slave posts elsewhere now: learn again
                return None
        if (head >> 16) & 0xFFFF != layout.region:
            self._layout = None
            return None
        cap = min(layout.grid.shape[1], head >> 32)  # rows never overlap
        if cap == 0:
            return None
        offset = slot_values(layout.offsets, pieces, copy=False)  # ours: a view will do
        runs = layout.runs(pieces, cap)
        return TxBatch(start, cap, self._regions, layout.region, offset, runs, self)

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
        A batch whose :attr:`~TxBatch.buffers` is a staging array is written into
        its buffers first.
        """
        n = batch.count if count is None else count
        if n == 0:
            self._live()
            batch.published = True
            return 0
        ring = self.ring
        one = isinstance(lengths, (int, np.integer))
        if one:
            if not 0 < lengths <= batch.capacity:
                raise ConfigError(f"length {lengths} must be 1..{batch.capacity}")
            nbytes = int(lengths) * n
            width = int(lengths)
        else:
            lengths = np.asarray(lengths)[:n]
            width = int(lengths.max())
            if width > batch.capacity or int(lengths.min()) <= 0:
                raise ConfigError(f"lengths must be 1..{batch.capacity}")
            nbytes = int(lengths.sum())
        batch.flush(n, width)
        region = batch.region
        if one and flags is None and region is not None:
            self._write_heads(batch.start, n, region << 16 | width << 32)
        else:
            for at, lo, hi in ring_pieces(batch.start, n, ring.size):
                end = at + hi - lo
                ring.d_length[at:end] = lengths if one else cast(np.ndarray, lengths)[lo:hi]
                ring.d_flags[at:end] = 0 if flags is None else flags[lo:hi]
        if not self.is_master and self._rewrite_desc:  # zero-copy pointed slots elsewhere
            for at, lo, hi in ring_pieces(batch.start, n, ring.size):
                ring.d_region[at : at + hi - lo] = self._buf_region
                ring.d_offset[at : at + hi - lo] = batch.offsets[lo:hi]
        if self.is_master:
            ring.tail = batch.start + n
        else:
            ring.head = batch.start + n
        batch.published = True
        if flags is None:
            self.stats.packets += n
        else:
            self.stats.packets += n - int(np.count_nonzero(flags[:n] & wire.DESC_FLAG_NEXT))
        self.stats.bytes += nbytes
        ring.kick()
        return n

    def _write_heads(self, start: int, n: int, head: int) -> None:
        """Write ``head`` (``flags | region << 16 | length << 32``) into the first 8 bytes
        of the descriptors of ``n`` slots from counter ``start``: one write per run."""
        ring = self.ring
        if n == 1:  # two scalar writes: cheaper than any numpy call
            at = 4 * (start & ring.mask)
            words = ring.desc_u32
            words[at] = head & 0xFFFFFFFF
            words[at + 1] = head >> 32
            return
        for at, lo, hi in ring_pieces(start, n, ring.size):
            ring.desc_words[2 * at : 2 * (at + hi - lo) : 2] = head

    def tx_chained(self, rows: np.ndarray, idx: np.ndarray, lengths: np.ndarray) -> int:
        """Copy packet ``i`` (the first ``lengths[i]`` bytes of ``rows[idx[i]]``) into
        the ring, chaining each over as many slots as it needs; returns how many of the
        first packets were published (the rest did not fit in the free slots).

        ``rows`` is a C-contiguous 2-D uint8 array (an application's buffer pool).
        The whole burst is a fixed number of numpy operations whatever the buffers'
        size: the segments gathered and scattered into the slots' buffers a chunk at a
        time (:meth:`TxBatch.fill_windows`), one publish.
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
        tx.fill_windows(rows.reshape(-1), starts)
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
            if self._send_slot(pkt):  # the usual packet: one slot, no numpy call
                sent += 1
                continue
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

    def _send_slot(self, pkt: bytes | bytearray | memoryview | np.ndarray) -> bool:
        """Publish a packet that fits the next slot's buffer, with plain scalar reads and
        writes (no batch, no numpy call); False, having changed nothing, for anything
        else: :meth:`_send_one` plans those (chains, a full ring, a bad posted buffer,
        data that is not bytes, a bytearray or a 1-D uint8 array)."""
        kind = type(pkt)
        if kind is np.ndarray:
            if cast(np.ndarray, pkt).dtype != np.uint8 or cast(np.ndarray, pkt).ndim != 1:
                return False
        elif kind is not bytes and kind is not bytearray:
            return False
        size = len(pkt)
        ring = self.ring
        if not size or not self.free_slots():
            return False
        words = ring.desc_u32
        if self.is_master:  # the buffer the slave posted, checked as alloc checks it
            start = ring.tail
            at = 4 * (start & ring.mask)
            region, capacity, offset = words[at] >> 16, words[at + 1], words[at + 2]
            if region >= len(self._limits) or offset + capacity > self._limits[region]:
                return False  # a bad buffer: the plan faults the queue
        else:  # our own buffer of this slot
            start = ring.head
            at = 4 * (start & ring.mask)
            region, capacity, offset = self._buf_region, self._buf_size, self._buf_list[at >> 2]
        if size > capacity:
            return False  # a chain (or an empty posted buffer)
        self._memory[region][offset : offset + size] = cast(bytes, pkt)  # a buffer of bytes
        words[at] = region << 16  # flags 0: the packet ends here
        words[at + 1] = size
        words[at + 2] = offset
        if self.is_master:
            ring.tail = start + 1
        else:
            ring.head = start + 1
        stats = self.stats
        stats.packets += 1
        stats.bytes += size
        return True

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
                cap = plan[-1][0].capacity if plan else self._buf_size
                if not cap:  # a master with nothing posted: no buffer size to judge by
                    return _FULL
                need = len(plan) + -(-(size - pos) // cap)
                return _TOO_BIG if need > ring.size else _FULL
            slot = self._slot(start + len(plan))
            if slot.count == 0 or slot.capacity == 0:
                return _FULL  # a bad posted buffer: the queue is faulted
            plan.append((slot, pos, min(size, pos + slot.capacity)))
            pos = plan[-1][2]
        offsets = cast(np.ndarray, self._buf_offsets)  # a slave's, always set
        for j, (slot, lo, hi) in enumerate(plan):
            slot.buffer(0)[: hi - lo] = data[lo:hi]
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
