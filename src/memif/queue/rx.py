"""Receive: RxQueue takes packets off a ring as RxBatch vectors, then refills."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from typing import Any, cast

import numpy as np

from .. import wire
from ..errors import ConfigError
from ..poller import Poller
from ..shm import Region, Ring
from ._common import (
    _EMPTY_U16,
    _EMPTY_U32,
    _U16,
    Pieces,
    Released,
    Run,
    SlotLayout,
    _bad_mask,
    _Queue,
    _read_descs,
    _read_raw,
    byte_items,
    copy_windows,
    indices,
    pieces,
    raw_offsets,
    ring_pieces,
    row_index,
    row_items,
    row_memory,
    same_heads,
    strided_view,
)

_FIRST = struct.Struct("<QI")  # a descriptor's flags | region | length word, and its offset
_MIXED = object()  # descriptors of a burst differ in flags, region or length

#: chained buffers shorter than this are assembled in one vector operation, longer
#: ones copied one call each (a call costs about as much as copying this many bytes)
SHORT_PIECE = 256


class RxBatch:
    """Packets received in one burst, as numpy arrays plus zero-copy views.

    ``lengths`` holds each packet's total length.  ``seg_region``, ``seg_offset`` and
    ``seg_length`` describe every buffer, and :attr:`first` the index of each
    packet's first buffer (``chained`` says whether any packet has more than one).
    :attr:`runs` gives every packet as rows of 2-D arrays, :attr:`matrix` as one
    ``(count, max_length)`` array and :meth:`headers` their first bytes: zero-copy
    views of the shared buffers when they are evenly spaced (:attr:`is_view`), else
    gathered copies.  None of them is ever None.

    Views stay valid until the queue is refilled or released.  Used as a context
    manager (``with rxq.receive(n) as rx:``), the batch refills its queue when the
    block ends.  Once the connection is gone, whatever reads the packets raises
    :class:`~memif.NotConnectedError`; the counts and lengths stay readable.
    """

    __slots__ = (
        "lengths",
        "seg_region",
        "seg_offset",
        "seg_length",
        "_first",
        "_queue",
        "_regions",
        "_runs",
        "_runs_done",
        "_copy",
        "_uniform_region",
        "_wrap",
        "_nbytes",
    )

    def __init__(
        self,
        regions: Sequence[np.ndarray],
        seg_region: np.ndarray,
        seg_offset: np.ndarray,
        seg_length: np.ndarray,
        first: np.ndarray | None = None,
        lengths: np.ndarray | None = None,
        uniform_region: int | None = None,
        wrap: int | None = None,
        runs: list[Run] | None = None,
        nbytes: int | None = None,
        queue: RxQueue | None = None,
    ) -> None:
        """``first``: each packet's first buffer, when any packet is chained (None:
        one buffer each); ``wrap``: index of the first buffer past the ring's end;
        ``runs`` and ``nbytes``, when the queue knows them already;
        ``queue``: the queue the context manager refills."""
        self._regions = regions
        self._queue = queue
        self._uniform_region = uniform_region
        self._wrap = wrap
        self.seg_region = seg_region
        self.seg_offset = seg_offset
        self.seg_length = seg_length
        self._first = first
        self.lengths = seg_length if lengths is None else lengths
        self._runs = runs
        self._runs_done = runs is not None
        self._copy: list[Run] | None = None  # runs gathered when no views are possible
        self._nbytes = nbytes

    def __len__(self) -> int:
        return len(self.lengths)

    def __enter__(self) -> RxBatch:
        return self

    def __exit__(self, *exc: object) -> None:
        """Refill the queue (every slot taken so far, as :meth:`RxQueue.refill`),
        whether or not the block raised: the packets are consumed either way.  Nothing
        to give back once the connection is gone, so then nothing is done."""
        queue = self._queue
        if queue is not None and queue.connected:
            queue.refill()

    @property
    def count(self) -> int:
        """Number of packets."""
        return len(self.lengths)

    @property
    def chained(self) -> bool:
        """True when some packet spans more than one buffer."""
        return self._first is not None

    @property
    def first(self) -> np.ndarray:
        """Index (intp) of each packet's first buffer in the ``seg_*`` arrays: ``0..n-1``
        when nothing is chained (a read-only shared array, at no cost per burst)."""
        first = self._first
        return indices(len(self.lengths)) if first is None else first

    @property
    def nbytes(self) -> int:
        """Total bytes of every packet."""
        if self._nbytes is None:
            self._nbytes = int(self.lengths.sum()) if len(self.lengths) else 0
        return self._nbytes

    @property
    def region(self) -> int | None:
        """The region index every buffer lies in, or None when they differ (or no packet)."""
        if self._uniform_region is None and len(self.seg_region):
            sr = self.seg_region
            if sr[0] == sr[-1] and (len(sr) < 3 or (sr == sr[0]).all()):
                self._uniform_region = int(sr[0])
        return self._uniform_region

    @property
    def runs(self) -> list[Run]:
        """``(lo, hi, rows)``: packets ``lo..hi`` as the rows of a ``(hi - lo,
        max_length)`` uint8 array, covering every packet in order ([] when none).

        Zero-copy views of the shared buffers, one per stretch of evenly spaced
        buffers (two when the burst wraps the ring's end), when :attr:`is_view`;
        otherwise (chained, several regions, buffers anywhere) one run holding a
        gathered copy of every packet, made on first use.  Bytes past a packet's
        length are unspecified.
        """
        runs = self._view_runs()
        if runs is not None:
            return runs
        if self._copy is None:
            n = len(self)
            self._copy = [(0, n, self.gather())] if n else []
        return self._copy

    @property
    def is_view(self) -> bool:
        """True when :attr:`runs` are views of the shared buffers (always, for an
        empty batch), False when they are a copy."""
        return self._view_runs() is not None or not len(self)

    @property
    def matrix(self) -> np.ndarray:
        """Every packet as one ``(count, max_length)`` uint8 array: a zero-copy view
        when :attr:`runs` is a single view, else a copy (made on each call)."""
        runs = self._view_runs()  # the usual case first: one view
        if runs is not None and len(runs) == 1:
            return runs[0][2]
        runs = self.runs
        if len(runs) == 1:
            return runs[0][2]
        if not runs:
            return np.empty((0, 0), np.uint8)
        return np.concatenate([rows for _, _, rows in runs])

    def headers(self, width: int, out: np.ndarray | None = None) -> np.ndarray:
        """The first ``width`` bytes of every packet as a ``(count, width)`` uint8 array.

        A zero-copy view when the buffers allow it (one run of evenly spaced,
        unchained buffers at least ``width`` long), else a copy: rows of a wrapped
        burst moved run by run, chained packets from their first buffers when each
        holds ``width`` bytes, else assembled (:meth:`gather`).  With ``out`` (at
        least ``width`` columns) the rows are always copied into its first ``width``
        columns and ``out`` is returned.  Bytes past a packet's length are
        unspecified: mask with ``lengths`` when it matters.
        """
        if width < 0:
            raise ConfigError(f"header width {width} must be 0 or more bytes")
        runs = self._view_runs()
        if runs is not None and runs and runs[0][2].shape[1] >= width:
            if out is None:
                if len(runs) == 1:
                    return runs[0][2][:, :width]
                out = np.empty((len(self), width), np.uint8)
            for lo, hi, rows in runs:
                out[lo:hi, :width] = rows[:, :width]
            return out
        first = self._first
        if first is not None and len(first) and int(self.seg_length[first].min()) >= width:
            return self.first_segments().gather(width, out)
        return self.gather(width, out)

    def _view_runs(self) -> list[Run] | None:
        """The zero-copy runs, or None when the buffers do not allow them."""
        regions: Sequence[object] = self._regions  # check_live, inlined: read once per burst
        if regions and type(regions[0]) is Released:
            regions[0].fail()
        if not self._runs_done:
            self._runs_done = True
            n = len(self.lengths)
            r = self.region if self._first is None and n else None
            if r is not None:
                width = int(self.seg_length.max())
                k = self._wrap
                bounds = [(0, n)] if k is None or not 0 < k < n else [(0, k), (k, n)]
                runs = []
                for lo, hi in bounds:
                    view = strided_view(self._regions[r], self.seg_offset[lo:hi], width)
                    if view is None:
                        return None
                    runs.append((lo, hi, view))
                self._runs = runs
        return self._runs

    def first_segments(self) -> RxBatch:
        """A batch of each packet's first buffer only (headers of chained packets, fast).

        ``lengths`` of the result are the first buffers' lengths; the views are the same
        shared memory.  For an unchained batch this is the batch itself.
        """
        f = self._first
        if f is None:
            return self
        return RxBatch(self._regions, self.seg_region[f], self.seg_offset[f], self.seg_length[f])

    def segments(self, i: int) -> list[np.ndarray]:
        """Zero-copy views of every buffer of packet ``i``."""
        first = self._first
        if first is None:
            lo, hi = i, i + 1
        else:
            lo = int(first[i])
            hi = int(first[i + 1]) if i + 1 < len(first) else len(self.seg_region)
        return [
            self._regions[int(self.seg_region[k])][
                int(self.seg_offset[k]) : int(self.seg_offset[k]) + int(self.seg_length[k])
            ]
            for k in range(lo, hi)
        ]

    def __getitem__(self, i: int) -> np.ndarray:
        """Packet ``i``: a zero-copy view if it is one buffer, a copy if chained."""
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        if self._first is None:  # one buffer: its view, read as segments(i) reads it
            offset: int = self.seg_offset.item(i)
            packet: np.ndarray = self._regions[self.seg_region.item(i)]
            return packet[offset : offset + self.seg_length.item(i)]
        segs = self.segments(i)
        return segs[0] if len(segs) == 1 else np.concatenate(segs)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def tolist(self) -> list[bytes]:
        """Every packet copied into ``bytes``."""
        return [bytes(p) for p in self]

    def copy_into(self, rows: np.ndarray, idx: np.ndarray) -> None:
        """Copy the start of packet ``i`` into ``rows[idx[i]]``, for the first ``len(idx)``.

        ``rows`` is a :func:`~memif.queue.row_items` view of the destination (an
        application's buffer pool, say): each copy moves ``rows.itemsize`` bytes.  One
        row copy per run of evenly spaced buffers, else one per region from the grid
        holding its buffers, else byte by byte; chained packets are assembled straight
        into the rows (:meth:`_assemble`).
        """
        k, width = len(idx), rows.dtype.itemsize
        if k == 0:
            return
        if self._first is not None:
            self._assemble(rows[:, None].view(np.uint8), idx, width)
            return
        if k == 1:  # one packet: one bytes copy, no view to make
            offset: int = self.seg_offset.item(0)
            region = self._regions[self.seg_region.item(0)]
            rows[idx[0]] = region[offset : offset + width].tobytes()
            return
        runs = self._view_runs()
        if runs is not None and runs[0][2].shape[1] >= width:
            for lo, hi, view in runs:
                hi = min(hi, k)
                if hi > lo:
                    rows[idx[lo:hi]] = row_items(view, width)[: hi - lo]
            return
        uniform = self.region
        regions = [uniform] if uniform is not None else np.unique(self.seg_region[:k]).tolist()
        for r in regions:
            sel = slice(0, k) if uniform is not None else np.flatnonzero(self.seg_region[:k] == r)
            region, offsets = self._regions[r], self.seg_offset[sel]
            grid = row_index(region, offsets, width)
            if grid is not None:  # whole rows of one grid: one row copy
                rows[idx[sel]] = row_items(grid[0], width)[grid[1]]
                continue
            at = offsets[:, None].astype(np.int64) + np.arange(width)
            np.minimum(at, len(region) - 1, out=at)
            rows[idx[sel]] = row_items(region[at], width)

    def gather(self, width: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """Copy the first ``width`` bytes of every packet into rows of a 2-D array.

        Unchained packets move as in :meth:`copy_into`, chained ones as
        :meth:`_assemble` says.  Bytes past a packet's length are unspecified
        (whatever the buffers held): mask with ``lengths`` when it matters.
        """
        n = len(self)
        if width is None:
            width = int(self.lengths.max()) if n else 0
        if out is None:
            out = np.zeros((n, width), np.uint8)
        if n == 0 or width == 0:
            return out
        if self._first is None:
            self.copy_into(row_items(out, width), indices(n))
        else:
            self._assemble(out, indices(n), width)
        return out

    def _assemble(self, dest: np.ndarray, rows: np.ndarray, width: int) -> None:
        """Copy the first ``width`` bytes of chained packet ``i`` into row ``rows[i]`` of
        ``dest``, for the first ``len(rows)`` packets; bytes past a packet's length, up
        to its row's end, are unspecified.

        ``dest`` is 2-D uint8 with each row's bytes contiguous (a pool's rows, say).
        Every buffer of ``item`` bytes (the longest) and every packet's last buffer move
        as ``item`` bytes in one copy of the whole vector (straight from the shared
        buffers when they are evenly spaced); what would cross its row's end, and the
        buffers of odd chains (shorter than the longest before the packet's end), take
        the slower paths of :meth:`_place_odd`.
        """
        k = len(rows)
        memory = row_memory(dest)
        if memory is None:  # rows that overlap, or bytes apart: assemble, then copy
            width = min(width, dest.shape[1])
            staging = np.empty((k, width), np.uint8)
            self._assemble(staging, indices(k), width)
            dest[rows, :width] = staging
            return
        first = cast(np.ndarray, self._first)
        used = int(first[k]) if k < len(first) else len(self.seg_length)
        first = first[:k]
        seg_len = self.seg_length[:used].astype(np.int64)
        counts = np.diff(first, append=used)
        begin = np.cumsum(seg_len) - seg_len
        pos = begin - np.repeat(begin[first], counts)  # where each buffer goes in its packet
        at = np.repeat(rows.astype(np.int64) * dest.strides[0], counts) + pos  # ... in memory
        cols = dest.shape[1]
        item = min(int(seg_len.max()), cols)
        last = np.zeros(used, bool)
        last[first[1:] - 1] = True
        last[-1] = True
        keep = (pos < min(width, cols)) & (seg_len > 0)  # never more than width bytes
        whole = keep & (last | (seg_len == item)) & (pos + item <= cols)
        odd = keep & ~whole
        if odd.any():  # first: their spill (forward only) is overwritten by what follows
            self._place_odd(memory, dest, np.flatnonzero(odd), at, pos, min(width, cols))
        if whole.all():
            self._place_whole(memory, at, None, item)
        elif whole.any():
            self._place_whole(memory, at, np.flatnonzero(whole), item)

    def _place_whole(
        self, memory: np.ndarray, at: np.ndarray, segs: np.ndarray | None, item: int
    ) -> None:
        """Copy buffers ``segs`` (None: all of the first ``len(at)``) as ``item`` bytes
        each to ``memory[at[s]:]``: from evenly spaced buffers in one row copy per run
        of the ring (no staging), else gathered and scattered a chunk at a time
        (:func:`~memif.queue._common.copy_windows`)."""
        if segs is None:
            runs = self._source_runs(len(at), item)
            if runs is not None:
                dst = byte_items(memory, item)
                for lo, hi, view in runs:
                    dst[at[lo:hi]] = row_items(view, item)
                return
            segs = indices(len(at))
        region, offset = self.seg_region[segs], self.seg_offset[segs]
        uniform = self.region
        for r in [uniform] if uniform is not None else np.unique(region).tolist():
            sel = slice(None) if uniform is not None else region == r
            copy_windows(memory, at[segs[sel]], self._regions[r], offset[sel], item)

    def _source_runs(self, used: int, item: int) -> list[Run] | None:
        """The first ``used`` buffers as rows of ``item`` bytes: zero-copy views, one
        per run of the ring (two when the burst wraps its end), or None when they are
        not evenly spaced in one region."""
        r = self.region
        if r is None:
            return None
        k = self._wrap
        bounds = [(0, used)] if k is None or not 0 < k < used else [(0, k), (k, used)]
        runs = []
        for lo, hi in bounds:
            view = strided_view(self._regions[r], self.seg_offset[lo:hi], item)
            if view is None:
                return None
            runs.append((lo, hi, view))
        return runs

    def _place_odd(
        self,
        memory: np.ndarray,
        dest: np.ndarray,
        segs: np.ndarray,
        at: np.ndarray,
        pos: np.ndarray,
        width: int,
    ) -> None:
        """Buffers that are not a packet's last and shorter than the longest, or whose
        ``item`` bytes would cross their row's end: those shorter than ``SHORT_PIECE``
        in one gather and one scatter, in order, each as ``short`` bytes (the next
        buffer overwrites what one carries past its end); the others one copy each,
        of exactly their bytes up to ``width``."""
        seg_len = self.seg_length[segs].astype(np.int64)
        cand = seg_len < SHORT_PIECE
        short_item = int(seg_len[cand].max()) if cand.any() else 0
        short = cand & (pos[segs] + short_item <= dest.shape[1])
        if short.any():
            s = segs[short]
            data = np.empty((len(s), short_item), np.uint8)
            region, offset = self.seg_region[s], self.seg_offset[s]
            for r in np.unique(region).tolist():
                sel = region == r
                data[sel] = pieces(self._regions[r], offset[sel], short_item)
            byte_items(memory, short_item)[at[s]] = row_items(data, short_item)
        rest = segs[~short]
        if not len(rest):
            return
        regions = self._regions
        end = np.minimum(pos[rest] + seg_len[~short], width)
        for a, r, off, p, stop in zip(
            at[rest].tolist(),
            self.seg_region[rest].tolist(),
            self.seg_offset[rest].tolist(),
            pos[rest].tolist(),
            end.tolist(),
            strict=True,
        ):
            memory[a : a + stop - p] = regions[r][off : off + stop - p]


class RxQueue(_Queue):
    """The consumer end of a ring: ``rx_burst``, then ``refill`` to give slots back,
    or both in one block::

        with rxq.receive(256) as rx:    # the packets: views into shared memory
            handle(rx.headers(14), rx.lengths)
        # the slots went back to the producer here

    A master receives on S2M rings and releases by moving ``tail``; a slave receives
    on M2S rings and refills by posting its buffers again and moving ``head``.
    Once the connection is gone (:attr:`connected` False) every method raises
    :class:`~memif.NotConnectedError`.
    """

    def __init__(self, ring: Ring, regions: Sequence[Region], index: int, **options: Any) -> None:
        super().__init__(ring, regions, index, **options)
        self.headroom = 0
        self._own: tuple[int, memoryview | None] = (0, None)  # (headroom, _own_descs)
        self._layout = None  # the producer's buffer of each slot, if fixed
        self._cursor = ring.tail  # consumer cursor: master's last_head, slave's last_tail
        self._waiter = Poller([ring.eventfd])  # for wait() and clear_interrupt()
        #: the producer's counter when all it had published was an unfinished chain
        #: (nothing to take until it moves); None otherwise
        self._chain_wait: int | None = None
        #: how many times the queue found only an unfinished chain (NEXT on the last
        #: published descriptor) and stopped looking until the producer moves on
        self.chain_waits = 0

    # -- interrupts
    @property
    def polling(self) -> bool:
        """True when MASK_INT is set: the producer does not signal this queue."""
        return bool(self.ring.flags & wire.RING_FLAG_MASK_INT)

    @polling.setter
    def polling(self, on: bool) -> None:
        flags = self.ring.flags
        self.ring.flags = (
            flags | wire.RING_FLAG_MASK_INT if on else flags & ~wire.RING_FLAG_MASK_INT
        )

    def clear_interrupt(self) -> int:
        """Read the eventfd to reset it; returns how many kicks were pending.

        Never blocks, even after the peer made the eventfd blocking (both processes
        share its file flags): the read is non-blocking by itself (``RWF_NOWAIT``), or,
        where the kernel lacks that, only done when ``poll`` sees the counter set.
        """
        fd, buf = self.ring.eventfd, bytearray(8)
        try:
            if os.preadv(fd, [buf], -1, os.RWF_NOWAIT) == 8:
                return int.from_bytes(buf, "little")
            return 0
        except BlockingIOError:
            return 0
        except OSError:
            pass  # no RWF_NOWAIT for eventfds on this kernel (or the fd is gone)
        if not self._waiter.wait(0):
            return 0
        try:
            return os.eventfd_read(fd)
        except OSError:
            return 0

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the producer kicks or packets are pending; True if any are.

        A polling queue is switched to interrupt mode for the wait and back after,
        so the producer signals meanwhile.  The eventfd is always read, so a loop
        watching :attr:`fd` sees it clear.
        """
        polling = self.polling
        if polling:
            self.polling = False
        try:
            if not self.ready():
                self._waiter.wait(timeout)
            self.clear_interrupt()
        finally:
            if polling:
                self.polling = True
        return self.ready() > 0

    @property
    def cursor(self) -> int:
        """Counter of the next descriptor to read (libmemif's last_head/last_tail)."""
        self._live()
        return self._cursor

    # -- receive
    def pending(self) -> int:
        """Descriptors produced by the peer and not yet taken."""
        produced = self.ring.head if self.is_master else self.ring.tail
        n = (produced - self._cursor) & _U16
        return n if n <= self.ring.size else 0

    def ready(self) -> int:
        """Descriptors :meth:`rx_burst` would look at now: :meth:`pending`, except 0
        while all of them are an unfinished chain already seen (an event loop sleeps
        then, instead of spinning until the producer publishes the chain's end)."""
        produced = self.ring.head if self.is_master else self.ring.tail
        return 0 if produced == self._chain_wait else self.pending()

    def receive(self, max_packets: int = 256) -> RxBatch:
        """:meth:`rx_burst`, for a ``with`` block that refills when it ends::

            with rxq.receive(64) as rx:
                ...  # read rx.runs, rx.matrix, rx.headers(n), rx[i]
            # refilled here, also when the block raised (the packets are consumed)

        Do not keep views of the packets past the block.  Zero-copy receive
        (:meth:`refill_from`) posts its own buffers: use :meth:`rx_burst` there.
        """
        return self.rx_burst(max_packets)

    def rx_burst(self, max_packets: int = 256) -> RxBatch:
        """Take up to ``max_packets`` packets; bad ones are dropped and counted.

        The returned views point into shared memory until :meth:`refill` (or the end
        of a ``with`` block on the batch, as :meth:`receive` shows).
        """
        ring = self.ring
        produced = ring.head if self.is_master else ring.tail
        if produced == self._chain_wait:
            return self._empty()  # still the same unfinished chain: not read again
        self._chain_wait = None
        avail = (produced - self._cursor) & _U16
        if avail > ring.size or (
            # occupied slots (head - tail) never exceed the ring: a master still holds
            # [tail, cursor), a slave may only be filled up to what it posted
            (produced - ring.tail) & _U16 > ring.size
            if self.is_master
            else avail > ((ring.head - self._cursor) & _U16)
        ):
            self._fail("ring counter out of range")
            return self._empty()
        n = avail if avail < max_packets else max_packets
        if n == 0:
            return self._empty()
        raw = _read_raw(ring, self._cursor, n)
        recs = np.frombuffer(raw, wire.DESC_DTYPE)
        pieces = ring_pieces(self._cursor, n, ring.size)
        wrap: int | None = pieces[0][2]  # packets before the ring's end
        # Fast path: flags, region and length live in each descriptor's first 8 bytes;
        # when they are the same everywhere one bytes comparison checks all three.
        w0, offset0 = _FIRST.unpack_from(raw)
        region, width = (w0 >> 16) & 0xFFFF, w0 >> 32
        if not w0 & wire.DESC_FLAG_NEXT and width and region < len(self._limits):
            offset = recs["offset"]
            runs: list[Run] | None = None  # one packet: its view is made when asked for
            if n > 1:
                uniform = self._uniform_runs(raw, w0, pieces, offset)
                if uniform is _MIXED:
                    uniform = None
                    width = 0  # not one head: checked one by one below
                runs = cast("list[Run] | None", uniform)
            if width and (
                runs is not None  # buffers in the slot layout lie inside their region
                or (offset0 if n == 1 else int(offset.max())) + width <= self._limits[region]
            ):
                self._cursor = (self._cursor + n) & _U16
                stats = self.stats
                stats.packets += n
                stats.bytes += n * width
                # positional: on this path each keyword argument costs about 50 ns
                return RxBatch(
                    self._regions,
                    recs["region"],
                    offset,
                    recs["length"],
                    None,  # first: nothing chained
                    None,  # lengths: the buffers'
                    region,
                    wrap,
                    runs,
                    n * width,
                    self,
                )
        flags = recs["flags"]
        if flags.any() and (flags & wire.DESC_FLAG_NEXT).any():
            return self._rx_chained(recs, avail)
        region, offset, length = recs["region"], recs["offset"], recs["length"]
        self._cursor = (self._cursor + n) & _U16
        bad = _bad_mask(region, offset, length, self._sizes)
        if bad is not None:
            self._count_bad(region, offset, length, bad)
            good = ~bad
            region, offset, length = region[good], offset[good], length[good]
            wrap = None  # packets are no longer slots
        self.stats.packets += len(length)
        self.stats.bytes += int(length.sum()) if len(length) else 0
        return RxBatch(
            self._regions, region, offset, length, None, None, None, wrap, None, None, self
        )

    def _uniform_runs(
        self, raw: bytearray, head: int, pieces: Pieces, offset: np.ndarray
    ) -> list[Run] | None | object:
        """Descriptors whose first is ``head`` (unchained, its region exists, a length):
        their rows of the slot layout when they all match it (None: no layout, the
        caller checks the bounds), or ``_MIXED`` when they do not all share ``head``.

        The usual burst (one length, the layout's buffers) is checked with one bytes
        comparison against the layout's :meth:`~SlotLayout.descriptors`.
        """
        region, width = (head >> 16) & 0xFFFF, head >> 32
        layout = self._layout
        if (
            layout is not None
            and layout.region == region
            and width <= layout.grid.shape[1]
            and layout.matches(raw, head, pieces)
        ):
            return layout.runs(pieces, width)
        if not same_heads(raw, len(raw) // 16):
            return _MIXED
        return self._layout_runs(region, offset, width, pieces, raw)

    def _layout_runs(
        self, region: int, offset: np.ndarray, width: int, pieces: Pieces, raw: bytearray
    ) -> list[Run] | None:
        """The burst's buffers as rows of the ring's slot layout, or None.

        The layout is learned from a burst whose longest stretch is evenly spaced and
        checked against every burst: one comparison instead of proving the spacing.
        """
        layout = self._layout
        if layout is None or layout.region != region or width > layout.grid.shape[1]:
            at, lo, hi = max(pieces, key=lambda p: p[2] - p[1])
            first = int(offset[lo])
            if hi - lo > 1:
                stride = int(offset[lo + 1]) - first
            else:  # one slot shows no spacing: the next slot's descriptor may (a 1-packet
                # sender would never be learned otherwise); every burst checks it anyway
                ring = self.ring
                nxt = (at + 1) & ring.mask
                same = int(ring.d_region[nxt]) == region
                stride = int(ring.d_offset[nxt]) - first if same else 0
            if abs(stride) < width or int(offset[hi - 1]) - first != stride * (hi - lo - 1):
                return None  # not evenly spaced (checked cheaply): no layout to learn
            layout = SlotLayout.learn(
                self._regions[region], region, self.ring.size, at, first, stride
            )
            self._layout = layout
            if layout is None:
                return None
        if not layout.holds(raw_offsets(raw), pieces):
            self._layout = None  # the producer uses other buffers now: learn again
            return None
        return layout.runs(pieces, width)

    def _rx_chained(self, recs: np.ndarray, avail: int) -> RxBatch:
        ring = self.ring
        nxt = (recs["flags"] & wire.DESC_FLAG_NEXT).astype(bool)
        ends = np.flatnonzero(~nxt)
        if len(ends) == 0:
            if len(recs) < avail:  # the chain goes on past max_packets: read it all
                return self._rx_chained(_read_descs(ring, self._cursor, avail), avail)
            if avail == ring.size:  # a whole ring without an end: it never will
                self._cursor = (self._cursor + avail) & _U16
                self.stats.count("chain_too_long")
                return self._empty()
            # Wait for the rest of the chain without reading it again (or reporting it
            # pending) until the producer publishes more.
            self._chain_wait = (self._cursor + avail) & _U16
            self.chain_waits += 1
            return self._empty()
        used = int(ends[-1]) + 1
        recs = recs[:used]
        wrap: int | None = ring_pieces(self._cursor, used, ring.size)[0][2]
        self._cursor = (self._cursor + used) & _U16
        region, offset, length = recs["region"], recs["offset"], recs["length"]
        first = np.concatenate(([0], ends[:-1] + 1)).astype(np.intp)
        lengths = np.add.reduceat(length.astype(np.uint64), first)
        bad = _bad_mask(region, offset, length, self._sizes)
        if bad is not None:
            self._count_bad(region, offset, length, bad)
            bad_pkt = np.logical_or.reduceat(bad, first)
            keep_seg = ~np.repeat(bad_pkt, np.diff(np.append(first, used)))
            region, offset, length = region[keep_seg], offset[keep_seg], length[keep_seg]
            lengths = lengths[~bad_pkt]
            seg_counts = np.diff(np.append(first, used))[~bad_pkt]
            first = (np.cumsum(seg_counts) - seg_counts).astype(np.intp)
            wrap = None  # buffers are no longer slots
        self.stats.packets += len(lengths)
        self.stats.bytes += int(lengths.sum()) if len(lengths) else 0
        return RxBatch(self._regions, region, offset, length, first, lengths, wrap=wrap, queue=self)

    def _count_bad(
        self, region: np.ndarray, offset: np.ndarray, length: np.ndarray, bad: np.ndarray
    ) -> None:
        no_region = region >= len(self._sizes)
        zero = (length == 0) & ~no_region
        self.stats.count("bad_region", int(no_region.sum()))
        self.stats.count("zero_length", int(zero.sum()))
        self.stats.count("bad_offset", int((bad & ~no_region & ~zero).sum()))

    def _empty(self) -> RxBatch:
        # positional, as on the fast path (an empty burst is the usual poll)
        return RxBatch(
            self._regions, _EMPTY_U16, _EMPTY_U32, _EMPTY_U32, None, None, None, None, None, 0, self
        )

    def refill(self) -> int:
        """Give every taken slot back to the producer; returns how many.

        Master: ``tail`` catches up with what was read.  Slave: each read slot gets
        its own buffer posted again (at ``headroom``) and ``head`` moves.
        """
        ring = self.ring
        if self.is_master:
            n = (self._cursor - ring.tail) & _U16
            ring.tail = self._cursor
            return n
        n = self.free_to_post()
        if n:
            ring = self.ring
            head, words, own = ring.head, ring.desc_u32, self._own_descs()
            for at, lo, hi in ring_pieces(head, n, ring.size):
                words[4 * at : 4 * (at + hi - lo)] = own[4 * at : 4 * (at + hi - lo)]
            ring.head = head + n
        return n

    def _own_descs(self) -> memoryview:
        """Slave: the descriptor that posts each slot's own buffer (at ``headroom``), as
        uint32 words like ``Ring.desc_u32``: refilling copies a run of them, one
        memcpy however many slots."""
        headroom, own = self._own
        if own is None or headroom != self.headroom:
            headroom = self.headroom
            descs = np.zeros(self.ring.size, wire.DESC_DTYPE)
            descs["region"] = self._buf_region
            descs["offset"] = cast(np.ndarray, self._buf_offsets) + headroom
            descs["length"] = self._buf_size - headroom
            own = memoryview(descs.view(np.uint32))  # type: ignore[arg-type]
            self._own = (headroom, own)
        return own

    def free_to_post(self) -> int:
        """Slave: slots whose buffers were taken and may be posted again."""
        n = (self._cursor + self.ring.size - self.ring.head) & _U16
        return n if n <= self.ring.size else 0

    def refill_from(self, region: int, offsets: np.ndarray, capacity: int) -> int:
        """Slave zero-copy receive: post the application's buffers instead of our own.

        ``offsets`` (into ``region``, e.g. a :class:`~memif.BufferPool`'s) are posted
        on the next free slots, each with ``capacity`` bytes; the peer writes packets
        straight into them and :meth:`rx_burst` reports their offsets.  Returns how
        many were posted (at most :meth:`free_to_post`).
        """
        free = self.free_to_post()  # first: NotConnectedError once the connection is gone
        if self.is_master:
            raise ConfigError("only a client posts receive buffers")
        if not 0 <= region < len(self._sizes):
            raise ConfigError(f"region {region} does not exist (have {len(self._sizes)})")
        n = min(len(offsets), free)
        offsets = np.asarray(offsets[:n], dtype=np.uint32)
        if n and int(offsets.max()) + capacity > int(self._sizes[region]):
            raise ConfigError(f"a buffer lies outside region {region}")
        if n:
            self._post(n, region, offsets, capacity)
        return n

    def _post(self, n: int, region: int, offsets: np.ndarray, capacity: int) -> None:
        """Post ``n`` buffers from ``head`` (at ``headroom``)."""
        ring, hr = self.ring, self.headroom
        head = ring.head
        for at, lo, hi in ring_pieces(head, n, ring.size):
            k = hi - lo
            src = offsets[lo:hi]
            ring.d_region[at : at + k] = region
            ring.d_offset[at : at + k] = src + hr
            ring.d_length[at : at + k] = capacity - hr
            ring.d_flags[at : at + k] = 0
        ring.head = head + n

    def recv(self, max_packets: int = 256) -> list[bytes]:
        """Receive, copy every packet into ``bytes`` and refill at once."""
        batch = self.rx_burst(max_packets)
        packets = batch.tolist()
        self.refill()
        return packets
