"""The vectorized data path: receive and transmit queues over one ring each.

Receive is staged the way VPP's memif input node is: copy the descriptors out of
shared memory (so a peer rewriting them cannot change what was validated), check
the whole vector at once, take the fast path when every descriptor is clean and
unchained, otherwise drop bad packets (counted by name) and assemble chains.
Slot-contiguous runs of equally spaced buffers become one strided numpy view.

Transmit hands out buffers in shared memory to fill in place, then publishes the
ring counter once and kicks the eventfd once per burst.

Nothing in here raises because of what the peer wrote.  A ring whose counters are
impossible (head or tail jumping by more than the ring size) sets ``fault`` and
moves nothing; the interface turns that into a DISCONNECT.
"""

from __future__ import annotations

import os
import select
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import wire
from .errors import ConfigError
from .shm import Region, Ring

_U16 = 0xFFFF
_FULL, _TOO_BIG = object(), object()  # outcomes of TxQueue._send_one
_EMPTY_U16 = np.empty(0, np.uint16)
_EMPTY_U32 = np.empty(0, np.uint32)

#: Receive drop reasons, one counter each (``RxQueue.errors``).
RX_ERRORS: dict[str, str] = {
    "bad_region": "descriptor names a region that does not exist",
    "bad_offset": "descriptor points outside its region",
    "zero_length": "descriptor with zero length",
    "chain_too_long": "buffer chain longer than the ring",
}
#: Transmit drop reasons (``TxQueue.errors``).
TX_ERRORS: dict[str, str] = {
    "no_free_slots": "ring full, packet not sent",
    "too_big": "packet larger than the ring can carry",
}


@dataclass
class QueueStats:
    """Packets, bytes and named drop counters of one queue."""

    packets: int = 0
    bytes: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def drops(self) -> int:
        """Sum of every drop counter."""
        return sum(self.errors.values())

    def count(self, reason: str, n: int = 1) -> None:
        """Add ``n`` drops under ``reason``."""
        self.errors[reason] = self.errors.get(reason, 0) + n

    def clear(self) -> None:
        """Reset every counter."""
        self.packets = self.bytes = 0
        self.errors.clear()


def strided_view(region: np.ndarray, offsets: np.ndarray, width: int) -> np.ndarray | None:
    """A zero-copy ``(n, width)`` view when ``offsets`` are equally spaced, else None.

    Rows must not overlap (spacing >= width) and every row must lie in ``region``.
    """
    n = len(offsets)
    if n == 0:
        return None
    first = int(offsets[0])
    if n == 1:
        stride = width
    else:
        stride = int(offsets[1]) - first
        if stride < width or int(offsets[-1]) - first != stride * (n - 1):
            return None
        if n > 2 and np.count_nonzero((offsets[1:] - offsets[:-1]) != stride):
            return None
    if first + stride * (n - 1) + width > len(region):
        return None
    return np.ndarray((n, width), np.uint8, buffer=region, offset=first, strides=(stride, 1))


def _read_descs(ring: Ring, start: int, n: int) -> np.ndarray:
    """Copy ``n`` descriptors from counter ``start`` out of shared memory."""
    s = start & ring.mask
    words = ring.desc_words  # copying plain words is ~4x cheaper than structured records
    if s + n <= ring.size:
        return words[2 * s : 2 * (s + n)].copy().view(wire.DESC_DTYPE)
    return np.concatenate((words[2 * s :], words[: 2 * (s + n - ring.size)])).view(wire.DESC_DTYPE)


def _bad_mask(
    region: np.ndarray, offset: np.ndarray, length: np.ndarray, sizes: np.ndarray
) -> np.ndarray | None:
    """None when every descriptor is inside its region, else a bool mask of bad ones."""
    r0 = region[0]
    if r0 < len(sizes) and (region == r0).all():
        if length.min() > 0 and int(offset.max()) + int(length.max()) <= int(sizes[r0]):
            return None
        if length.min() > 0 and (offset.astype(np.uint64) + length <= sizes[r0]).all():
            return None
    in_range = region < len(sizes)
    limit = sizes[np.where(in_range, region, 0)]
    return ~in_range | (length == 0) | (offset.astype(np.uint64) + length > limit)


class RxBatch:
    """Packets received in one burst, as numpy arrays plus zero-copy views.

    ``lengths`` holds each packet's total length.  ``seg_region``, ``seg_offset`` and
    ``seg_length`` describe every buffer, and ``first`` the index of each packet's
    first buffer (``None`` when nothing is chained).  ``matrix``, when not None, is a
    ``(count, max_length)`` zero-copy view of all packets (slot-contiguous fast path).
    Views stay valid until the queue is refilled or released.
    """

    __slots__ = (
        "lengths",
        "seg_region",
        "seg_offset",
        "seg_length",
        "first",
        "_regions",
        "_matrix",
        "_matrix_done",
        "_uniform_region",
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
    ) -> None:
        self._regions = regions
        self._uniform_region = uniform_region
        self.seg_region = seg_region
        self.seg_offset = seg_offset
        self.seg_length = seg_length
        self.first = first
        self.lengths = seg_length if lengths is None else lengths
        self._matrix: np.ndarray | None = None
        self._matrix_done = False

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def count(self) -> int:
        """Number of packets."""
        return len(self.lengths)

    @property
    def nbytes(self) -> int:
        """Total bytes of every packet."""
        return int(self.lengths.sum()) if len(self.lengths) else 0

    @property
    def matrix(self) -> np.ndarray | None:
        """Zero-copy ``(count, max_length)`` view, or None if buffers are not evenly spaced."""
        if not self._matrix_done:
            self._matrix_done = True
            if self.first is None and len(self.lengths):
                r = self._uniform_region
                if r is None:
                    sr = self.seg_region
                    if sr[0] == sr[-1] and (len(sr) < 3 or (sr == sr[0]).all()):
                        r = int(sr[0])
                if r is not None:
                    width = int(self.seg_length.max())
                    self._matrix = strided_view(self._regions[r], self.seg_offset, width)
        return self._matrix

    def segments(self, i: int) -> list[np.ndarray]:
        """Zero-copy views of every buffer of packet ``i``."""
        if self.first is None:
            lo, hi = i, i + 1
        else:
            lo = int(self.first[i])
            hi = int(self.first[i + 1]) if i + 1 < len(self.first) else len(self.seg_region)
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
        segs = self.segments(i)
        return segs[0] if len(segs) == 1 else np.concatenate(segs)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def tolist(self) -> list[bytes]:
        """Every packet copied into ``bytes``."""
        return [bytes(p) for p in self]

    def gather(self, width: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """Copy the first ``width`` bytes of every packet into rows of a 2-D array.

        Uses the strided fast path or one vectorized fancy-index gather per region;
        chained packets are assembled one by one.  Bytes past a packet's length are
        unspecified (whatever the buffer held): mask with ``lengths`` when it matters.
        """
        n = len(self)
        if width is None:
            width = int(self.lengths.max()) if n else 0
        if out is None:
            out = np.zeros((n, width), np.uint8)
        mat = self.matrix
        if mat is not None and mat.shape[1] >= width:
            out[:n, :width] = mat[:, :width]
            return out
        if self.first is None:
            cols = np.arange(width)
            for r in np.unique(self.seg_region):
                rows = np.flatnonzero(self.seg_region == r)
                region = self._regions[int(r)]
                idx = self.seg_offset[rows, None].astype(np.int64) + cols
                np.minimum(idx, len(region) - 1, out=idx)
                out[rows, :width] = region[idx]
            return out
        for i in range(n):
            p = self[i][:width]
            out[i, : len(p)] = p
        return out


class _Queue:
    """What both directions share: the ring, the regions, counters, the fault flag."""

    def __init__(self, ring: Ring, regions: Sequence[Region], index: int) -> None:
        self.ring = ring
        self.index = index
        self.stats = QueueStats()
        self.fault: str | None = None
        self._regions = [r.array for r in regions]
        self._sizes = np.array([r.size for r in regions], dtype=np.uint64)

    @property
    def fd(self) -> int:
        """The ring's interrupt eventfd (for the caller's own event loop)."""
        return self.ring.eventfd

    @property
    def size(self) -> int:
        """Ring size in slots."""
        return self.ring.size

    def _fail(self, reason: str) -> int:
        self.fault = self.fault or reason
        return 0


class RxQueue(_Queue):
    """The consumer end of a ring: ``rx_burst``, then ``refill`` to give slots back.

    A master receives on S2M rings and releases by moving ``tail``; a slave receives
    on M2S rings and refills by posting its buffers again and moving ``head``.
    """

    def __init__(
        self,
        ring: Ring,
        regions: Sequence[Region],
        index: int,
        *,
        is_master: bool,
        buffer_region: int = 0,
        buffer_offsets: np.ndarray | None = None,
        buffer_size: int = 0,
    ) -> None:
        super().__init__(ring, regions, index)
        self.is_master = is_master
        self._buf_region = buffer_region
        self._buf_offsets = buffer_offsets
        self._buf_size = buffer_size
        self.headroom = 0
        # Consumer cursor: master's last_head / slave's last_tail.
        self._cursor = ring.tail  # master: last_head, slave: last_tail

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
        """Read the eventfd to reset it; returns how many kicks were pending."""
        try:
            return os.eventfd_read(self.ring.eventfd)
        except (BlockingIOError, OSError):
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
            if not self.pending():
                select.select([self.ring.eventfd], [], [], timeout)
            self.clear_interrupt()
        finally:
            if polling:
                self.polling = True
        return self.pending() > 0

    @property
    def cursor(self) -> int:
        """Counter of the next descriptor to read (libmemif's last_head/last_tail)."""
        return self._cursor

    # -- receive
    def pending(self) -> int:
        """Descriptors produced by the peer and not yet taken."""
        produced = self.ring.head if self.is_master else self.ring.tail
        n = (produced - self._cursor) & _U16
        return n if n <= self.ring.size else 0

    def rx_burst(self, max_packets: int = 256) -> RxBatch:
        """Take up to ``max_packets`` packets; bad ones are dropped and counted.

        The returned views point into shared memory until :meth:`refill`.
        """
        ring = self.ring
        produced = ring.head if self.is_master else ring.tail
        avail = (produced - self._cursor) & _U16
        if avail > ring.size or (
            not self.is_master and avail > ((ring.head - self._cursor) & _U16)
        ):
            self._fail("ring counter out of range")
            return self._empty()
        n = min(avail, max_packets)
        if n == 0:
            return self._empty()
        recs = _read_descs(ring, self._cursor, n)
        # Fast path: flags, region and length live in each descriptor's first 8 bytes;
        # when they are the same everywhere one comparison checks all three.
        words = recs.view(np.uint64)[0::2]
        w0 = int(words[0])
        if not w0 & wire.DESC_FLAG_NEXT and not np.count_nonzero(words != w0):
            region, length = (w0 >> 16) & 0xFFFF, w0 >> 32
            offset = recs["offset"]
            if (
                region < len(self._sizes)
                and length
                and int(offset.max()) + length <= int(self._sizes[region])
            ):
                self._cursor = (self._cursor + n) & _U16
                self.stats.packets += n
                self.stats.bytes += n * length
                return RxBatch(
                    self._regions, recs["region"], offset, recs["length"], uniform_region=region
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
        self.stats.packets += len(length)
        self.stats.bytes += int(length.sum()) if len(length) else 0
        return RxBatch(self._regions, region, offset, length)

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
            return self._empty()  # wait for the rest of the chain
        used = int(ends[-1]) + 1
        recs = recs[:used]
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
        self.stats.packets += len(lengths)
        self.stats.bytes += int(lengths.sum()) if len(lengths) else 0
        return RxBatch(self._regions, region, offset, length, first, lengths)

    def _count_bad(
        self, region: np.ndarray, offset: np.ndarray, length: np.ndarray, bad: np.ndarray
    ) -> None:
        no_region = region >= len(self._sizes)
        zero = (length == 0) & ~no_region
        self.stats.count("bad_region", int(no_region.sum()))
        self.stats.count("zero_length", int(zero.sum()))
        self.stats.count("bad_offset", int((bad & ~no_region & ~zero).sum()))

    def _empty(self) -> RxBatch:
        return RxBatch(self._regions, _EMPTY_U16, _EMPTY_U32, _EMPTY_U32)

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
            self._post(n, self._buf_region, self._buf_offsets, self._buf_size, canonical=True)
        return n

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
        if self.is_master:
            raise ConfigError("only a client posts receive buffers")
        if not 0 <= region < len(self._sizes):
            raise ConfigError(f"region {region} does not exist (have {len(self._sizes)})")
        n = min(len(offsets), self.free_to_post())
        offsets = np.asarray(offsets[:n], dtype=np.uint32)
        if n and int(offsets.max()) + capacity > int(self._sizes[region]):
            raise ConfigError(f"a buffer lies outside region {region}")
        if n:
            self._post(n, region, offsets, capacity, canonical=False)
        return n

    def _post(
        self, n: int, region: int, offsets: np.ndarray, capacity: int, canonical: bool
    ) -> None:
        """Post ``n`` buffers from ``head``; canonical offsets are indexed by slot."""
        ring, hr = self.ring, self.headroom
        head = ring.head
        s = head & ring.mask
        first = min(n, ring.size - s)
        for lo, hi, at in ((0, first, s), (first, n, 0)):
            if hi > lo:
                k = hi - lo
                src = offsets[at : at + k] if canonical else offsets[lo:hi]
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


class TxBatch:
    """Buffers in shared memory handed out by :meth:`TxQueue.alloc`, to fill in place.

    ``buffers`` is a zero-copy ``(count, capacity)`` uint8 view when the slots are
    evenly spaced (always on a slave); otherwise use :meth:`buffer`.
    """

    __slots__ = ("start", "count", "capacity", "buffers", "_regions", "_region", "_offset")

    def __init__(
        self,
        start: int,
        capacity: int,
        regions: Sequence[np.ndarray],
        region: np.ndarray | int,
        offset: np.ndarray,
        buffers: np.ndarray | None,
    ) -> None:
        self.start = start
        self.count = len(offset)
        self.capacity = capacity
        self.buffers = buffers
        self._regions = regions
        self._region = region
        self._offset = offset

    def __len__(self) -> int:
        return self.count

    def buffer(self, i: int) -> np.ndarray:
        """Zero-copy view of slot ``i``'s buffer (``capacity`` bytes)."""
        if self.buffers is not None:
            return self.buffers[i]
        off = int(self._offset[i])
        r = self._region if isinstance(self._region, int) else int(self._region[i])
        return self._regions[r][off : off + self.capacity]

    def fill(self, data: np.ndarray) -> None:
        """Copy a ``(count, width)`` array into the buffers (vectorized scatter)."""
        width = data.shape[1]
        if self.buffers is not None:
            self.buffers[: len(data), :width] = data
            return
        cols = np.arange(width)
        region = np.broadcast_to(self._region, (self.count,))[: len(data)]
        for r in np.unique(region):
            rows = np.flatnonzero(region == r)
            idx = self._offset[rows, None].astype(np.int64) + cols
            self._regions[int(r)][idx] = data[rows]


class TxQueue(_Queue):
    """The producer end of a ring: ``alloc`` buffers, fill them, ``tx_burst``.

    A slave transmits on S2M rings into its own buffers and moves ``head``; a master
    transmits on M2S rings into the buffers the slave posted and moves ``tail``.
    """

    def __init__(
        self,
        ring: Ring,
        regions: Sequence[Region],
        index: int,
        *,
        is_master: bool,
        buffer_region: int = 0,
        buffer_offsets: np.ndarray | None = None,
        buffer_size: int = 0,
    ) -> None:
        super().__init__(ring, regions, index)
        self.is_master = is_master
        self._buf_region = buffer_region
        self._buf_offsets = buffer_offsets
        self._buf_size = buffer_size
        self._bufs2d: np.ndarray | None = None
        self._rewrite_desc = False  # set once zero-copy pointed slots elsewhere
        if not is_master and buffer_offsets is not None:
            self._bufs2d = strided_view(self._regions[buffer_region], buffer_offsets, buffer_size)
            ring.d_region[:] = buffer_region  # each slot's own buffer, written once
            ring.d_offset[:] = buffer_offsets
        self._reclaimed = ring.tail

    def free_slots(self) -> int:
        """Slots the producer may fill now."""
        ring = self.ring
        if self.is_master:
            n = (ring.head - ring.tail) & _U16
            return n if n <= ring.size else 0
        used = (ring.head - ring.tail) & _U16
        return ring.size - used if used <= ring.size else 0

    def alloc(self, count: int) -> TxBatch:
        """Hand out up to ``count`` slot buffers (one contiguous run of the ring)."""
        ring = self.ring
        if self.is_master:
            start = ring.tail
            free = (ring.head - start) & _U16
        else:
            start = ring.head
            used = (start - ring.tail) & _U16
            free = ring.size - used
        if free > ring.size or free < 0:
            self._fail("ring counter out of range")
            free = 0
        s = start & ring.mask
        n = min(count, free, ring.size - s)
        if self.is_master:
            return self._alloc_posted(start, s, n)
        bufs = self._bufs2d[s : s + n] if self._bufs2d is not None else None
        return TxBatch(
            start,
            self._buf_size,
            self._regions,
            self._buf_region,
            self._buf_offsets[s : s + n],
            bufs,
        )

    def _alloc_posted(self, start: int, s: int, n: int) -> TxBatch:
        ring = self.ring
        region = ring.d_region[s : s + n].copy()
        offset = ring.d_offset[s : s + n].copy()
        length = ring.d_length[s : s + n].copy()
        if n and _bad_mask(region, offset, length, self._sizes) is not None:
            self._fail("peer posted a buffer outside its regions")
            n = 0
        cap = int(length.min()) if n else 0
        bufs = None
        if n and (region == region[0]).all():
            bufs = strided_view(self._regions[int(region[0])], offset, cap)
        return TxBatch(start, cap, self._regions, region[:n], offset[:n], bufs)

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
            return 0
        ring = self.ring
        s = batch.start & ring.mask
        if isinstance(lengths, int | np.integer):
            if not 0 < lengths <= batch.capacity:
                raise ConfigError(f"length {lengths} must be 1..{batch.capacity}")
            ring.d_length[s : s + n] = lengths
            nbytes = int(lengths) * n
        else:
            lengths_arr = np.asarray(lengths)[:n]
            if int(lengths_arr.max()) > batch.capacity or int(lengths_arr.min()) <= 0:
                raise ConfigError(f"lengths must be 1..{batch.capacity}")
            ring.d_length[s : s + n] = lengths_arr
            nbytes = int(lengths_arr.sum())
        ring.d_flags[s : s + n] = 0 if flags is None else flags[:n]
        if not self.is_master:
            if self._rewrite_desc:
                ring.d_region[s : s + n] = self._buf_region
                ring.d_offset[s : s + n] = batch._offset[:n]
            ring.head = batch.start + n
        else:
            ring.tail = batch.start + n
        if flags is None:
            self.stats.packets += n
        else:
            self.stats.packets += n - int(np.count_nonzero(flags[:n] & wire.DESC_FLAG_NEXT))
        self.stats.bytes += nbytes
        ring.kick()
        return n

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
        if n > ring.size:
            return 0
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
        if self.is_master:
            raise ConfigError("only a client transmits from its own memory (zero-copy)")
        offsets = np.asarray(offsets, dtype=np.uint32)
        lengths = np.broadcast_to(np.asarray(lengths, dtype=np.uint32), offsets.shape)
        if not 0 <= region < len(self._sizes):
            raise ConfigError(f"region {region} does not exist (have {len(self._sizes)})")
        if len(offsets) and (
            int(lengths.min()) == 0
            or int((offsets.astype(np.uint64) + lengths).max()) > int(self._sizes[region])
        ):
            raise ConfigError(f"a packet lies outside region {region} or has length 0")
        ring = self.ring
        n = min(len(offsets), self.free_slots())
        start = ring.head
        s = start & ring.mask
        first = min(n, ring.size - s)
        for lo, hi, at in ((0, first, s), (first, n, 0)):
            if hi > lo:
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
            result = self._send_one(data)
            if result is _FULL:
                self.stats.count("no_free_slots", len(packets) - k)
                break
            if result is _TOO_BIG:
                self.stats.count("too_big")
            else:
                sent += 1
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
        for j, (slot, lo, hi) in enumerate(plan):
            slot.buffer(0)[: hi - lo] = data[lo:hi]
            s = (start + j) & ring.mask
            ring.d_length[s] = hi - lo
            ring.d_flags[s] = wire.DESC_FLAG_NEXT if j < len(plan) - 1 else 0
            if not self.is_master:
                ring.d_region[s] = self._buf_region
                ring.d_offset[s] = self._buf_offsets[s]
        if self.is_master:
            ring.tail = start + len(plan)
        else:
            ring.head = start + len(plan)
        self.stats.packets += 1
        self.stats.bytes += size
        ring.kick()
        return None

    def _slot(self, counter: int) -> TxBatch:
        s = counter & self.ring.mask
        if self.is_master:
            return self._alloc_posted(counter, s, 1)
        bufs = self._bufs2d[s : s + 1] if self._bufs2d is not None else None
        return TxBatch(
            counter,
            self._buf_size,
            self._regions,
            self._buf_region,
            self._buf_offsets[s : s + 1],
            bufs,
        )
