"""``memif demo``'s traffic: the frame pattern, the generator and checker, shared helpers.

Frames are sequence-numbered Ethernet frames of mixed sizes (a 9000-byte jumbo frame every
32nd, chained over the buffers), cut once into a bank of buffer-sized segments.  The
:class:`Client` copies them into the ring's buffers a burst at a time and checks every frame
that comes back: length, addresses, sequence order and every payload byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ... import wire
from ...interface import Interface
from ...loop import EventLoop, RxMode
from ...queue import RxBatch, RxQueue, TxQueue

#: Frame sizes, repeated in this order (frame ``seq`` has size ``SIZES[seq % 32]``).
SIZES = (
    *(64, 128, 64, 256, 64, 512, 64, 1024, 64, 1514, 64, 128, 64, 256, 64, 576),
    *(64, 128, 64, 256, 64, 512, 64, 1024, 64, 1514, 64, 128, 64, 256, 1514, 9000),
)
#: IEEE 802 local experimental EtherType.
ETHERTYPE = 0x88B5
#: Where the big-endian 32-bit sequence number sits in every frame.
SEQ_AT = 14
HEADER = 18
CLIENT_MAC = bytes.fromhex("02fe00000001")
SERVER_MAC = bytes.fromhex("02fe00000002")
#: Most packets one burst takes or sends.
BURST = 1024
#: Seconds without work before a peer goes to sleep on its eventfd (interrupt mode).
SPIN = 0.002
#: Seconds between control-plane polls and checks of the other process.
HOUSEKEEPING = 0.02


# ---------------------------------------------------------------------- frames
class FrameBank:
    """Every frame of the size pattern, cut into buffer-sized segments.

    Frame ``seq`` uses pattern slot ``p = seq % len(sizes)``; its bytes are the
    slot's segments (``rows[slot_first[p] : slot_first[p] + slot_nseg[p]]``) with the
    sequence number written at ``SEQ_AT``.  The payload depends on the slot and
    the position, so a buffer from the wrong frame or the wrong place shows.
    """

    def __init__(self, sizes: tuple[int, ...], buffer_size: int, dst: bytes, src: bytes) -> None:
        self.sizes = np.array(sizes, dtype=np.int64)
        self.buffer_size = buffer_size
        self.slot_nseg = -(-self.sizes // buffer_size)
        self.slot_first = np.cumsum(self.slot_nseg) - self.slot_nseg
        total = int(self.slot_nseg.sum())
        self.rows = np.zeros((total, buffer_size), np.uint8)
        self.seg_len = np.zeros(total, np.uint32)
        self.seg_flags = np.zeros(total, np.uint8)
        self.is_first = np.zeros(total, bool)
        head = np.frombuffer(dst + src + ETHERTYPE.to_bytes(2, "big"), np.uint8)
        for p, size in enumerate(sizes):
            frame = self.frame_template(p, size, head)
            k = int(self.slot_first[p])
            self.is_first[k] = True
            for j in range(int(self.slot_nseg[p])):
                piece = frame[j * buffer_size : (j + 1) * buffer_size]
                self.rows[k + j, : len(piece)] = piece
                self.seg_len[k + j] = len(piece)
                self.seg_flags[k + j] = wire.DESC_FLAG_NEXT if j < self.slot_nseg[p] - 1 else 0

    @staticmethod
    def frame_template(p: int, size: int, head: np.ndarray) -> np.ndarray:
        """Slot ``p``'s frame with a zero sequence number."""
        frame = ((np.arange(size) * 7 + p * 13) & 0xFF).astype(np.uint8)
        frame[: len(head)] = head
        frame[SEQ_AT:HEADER] = 0
        frame[HEADER - 2 : HEADER] = np.frombuffer(size.to_bytes(2, "big"), np.uint8)
        return frame

    def frame(self, seq: int) -> np.ndarray:
        """Frame ``seq`` as one array (for the slow path)."""
        p = seq % len(self.sizes)
        k, n = int(self.slot_first[p]), int(self.slot_nseg[p])
        out = np.concatenate([self.rows[k + j, : self.seg_len[k + j]] for j in range(n)])
        out[SEQ_AT : SEQ_AT + 4] = np.frombuffer(int(seq).to_bytes(4, "big"), np.uint8)
        return out

    def expand(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Segments of a run of frames: bank row of each, first and end segment per frame."""
        nseg = self.slot_nseg[slots]
        ends = np.cumsum(nseg)
        starts = ends - nseg
        segidx = np.repeat(self.slot_first[slots] - starts, nseg) + np.arange(int(ends[-1]))
        return segidx, starts, ends


def seq_bytes(seq: np.ndarray) -> np.ndarray:
    """``(n, 4)`` big-endian bytes of sequence numbers."""
    return seq.astype(">u4").view(np.uint8).reshape(-1, 4)


def copy_rows(dst: np.ndarray, src: np.ndarray, lengths: np.ndarray) -> None:
    """Copy ``lengths[i]`` bytes of row ``i`` from ``src`` to ``dst`` (both 2-D).

    Short rows go in one strided copy as wide as the longest of them; rows longer
    than 1536 bytes get the rest in a second copy, so a burst with one jumbo frame
    does not copy whole buffers for every small one.
    """
    n = len(lengths)
    if n == 0:
        return
    wide = lengths > 1536
    narrow_w = int(lengths[~wide].max()) if not wide.all() else 0
    if narrow_w:
        dst[:n, :narrow_w] = src[:n, :narrow_w]
    if wide.any():
        rows = np.flatnonzero(wide)
        top = int(lengths[rows].max())
        dst[rows, narrow_w:top] = src[rows, narrow_w:top]


def segment_rows(iface: Interface, batch: RxBatch, width: int) -> np.ndarray:
    """``(segments, width)`` rows of every received buffer, chained or not: a zero-copy view
    when the buffers are evenly spaced, else one vectorized gather (bytes past a buffer's
    length are unspecified)."""
    regions = [r.array for r in iface.regions]
    return RxBatch(regions, batch.seg_region, batch.seg_offset, batch.seg_length).headers(width)


# ---------------------------------------------------------------------- generator and checker
@dataclass
class Counters:
    """What the client counts; ``summary`` turns it into the report."""

    tx_packets: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    rx_bytes: int = 0
    jumbo: int = 0
    mismatches: int = 0
    gaps: int = 0
    next_seq: int = 0
    first_bad: str = ""


class Client:
    """The traffic generator and checker (memif client, this process)."""

    def __init__(self, iface: Interface, buffer_size: int) -> None:
        self.iface = iface
        self.tx_bank = FrameBank(SIZES, buffer_size, SERVER_MAC, CLIENT_MAC)
        self.rx_bank = FrameBank(SIZES, buffer_size, CLIENT_MAC, SERVER_MAC)
        self.c = Counters()
        self.period = len(SIZES)

    @property
    def rxq(self) -> RxQueue:
        """The receive queue (queue 0)."""
        return self.iface.rx_queues[0]

    @property
    def txq(self) -> TxQueue:
        """The transmit queue (queue 0)."""
        return self.iface.tx_queues[0]

    # -- transmit
    def send(self) -> int:
        """Send as many frames as fit (one contiguous run of the ring); returns how many."""
        txq, bank, c = self.txq, self.tx_bank, self.c
        free = txq.free_slots()
        if free == 0:
            return 0
        k = min(BURST, free)
        seq = c.tx_packets + np.arange(k, dtype=np.int64)
        slots = seq % self.period
        segidx, starts, ends = bank.expand(slots)
        tx = txq.alloc(min(int(ends[-1]), free))
        fit = int(np.searchsorted(ends, tx.count, side="right"))
        if fit == 0:
            # The next frame's chain would cross the ring's end: send it by itself.
            if free < int(ends[0]):
                return 0
            txq.send([bank.frame(int(seq[0]))])
            self._sent(int(bank.sizes[slots[0]]), 1)
            return 1
        nseg = int(ends[fit - 1])
        segidx = segidx[:nseg]
        lengths = bank.seg_len[segidx]
        stamps = seq_bytes(seq[:fit])
        bufs = tx.buffers  # a view, or staging that tx_burst writes out
        copy_rows(bufs, bank.rows[segidx], lengths)
        bufs[starts[:fit], SEQ_AT : SEQ_AT + 4] = stamps
        txq.tx_burst(tx, lengths, nseg, bank.seg_flags[segidx])
        self._sent(int(bank.sizes[slots[:fit]].sum()), fit)
        return fit

    def _sent(self, nbytes: int, n: int) -> None:
        self.c.tx_packets += n
        self.c.tx_bytes += nbytes

    # -- receive and check
    def receive(self) -> int:
        """Take one burst of echoed frames, check every one, refill; returns how many."""
        rxq = self.rxq
        batch = rxq.rx_burst(BURST)
        n = batch.count
        if n:
            self.check(batch)
            rxq.refill()
        return n

    def check(self, batch: RxBatch) -> None:
        """Compare every frame of ``batch`` with what was sent under its number."""
        c, bank = self.c, self.rx_bank
        n, nseg, first = batch.count, len(batch.seg_length), batch.first
        rows = segment_rows(self.iface, batch, max(HEADER, int(batch.seg_length.max())))
        head = rows[first, :HEADER]
        seq = np.ascontiguousarray(head[:, SEQ_AT : SEQ_AT + 4]).view(">u4").ravel()
        seq = seq.astype(np.int64)
        slots = seq % self.period
        bad = (batch.lengths != bank.sizes[slots]) | (seq >= c.tx_packets)
        segs_per_frame = np.diff(np.append(first, nseg))
        same_shape = (segs_per_frame == bank.slot_nseg[slots]).all()
        if same_shape:
            segidx, _, _ = bank.expand(slots)
            same_shape = bool((batch.seg_length == bank.seg_len[segidx]).all())
        if same_shape:
            seg_bad = np.zeros(nseg, bool)
            lengths = bank.seg_len[segidx]
            frame_of = np.repeat(np.arange(n), segs_per_frame)
            for length in np.unique(lengths):
                g = np.flatnonzero(lengths == length)
                want = bank.rows[segidx[g], :length]
                firsts = bank.is_first[segidx[g]]
                want[firsts, SEQ_AT : SEQ_AT + 4] = seq_bytes(seq[frame_of[g[firsts]]])
                seg_bad[g] = (rows[g, :length] != want).any(axis=1)
            bad |= np.logical_or.reduceat(seg_bad, first)
        else:
            for i in range(n):
                got = batch[i]
                want = bank.frame(int(seq[i]))
                bad[i] = bad[i] or len(got) != len(want) or not np.array_equal(got, want)
        self._order(seq, bad)
        c.rx_packets += n
        c.rx_bytes += batch.nbytes
        c.jumbo += int(np.count_nonzero(batch.lengths > 1514))
        if bad.any():
            c.mismatches += int(bad.sum())
            if not c.first_bad:
                i = int(np.flatnonzero(bad)[0])
                c.first_bad = (
                    f"frame #{c.rx_packets - n + i}: length {int(batch.lengths[i])}, "
                    f"sequence {int(seq[i])}, first bytes {bytes(batch[i][:HEADER]).hex()}"
                )

    def _order(self, seq: np.ndarray, bad: np.ndarray) -> None:
        """Frames must come back in sending order; a gap is counted as lost frames."""
        c = self.c
        n = len(seq)
        if (
            seq[0] == c.next_seq
            and seq[-1] == c.next_seq + n - 1
            and (n < 3 or (np.diff(seq) == 1).all())
        ):
            c.next_seq += n
            return
        for i, s in enumerate(seq.tolist()):
            if bad[i]:
                continue
            if s == c.next_seq:
                c.next_seq += 1
            elif c.next_seq < s < c.tx_packets:
                c.gaps += s - c.next_seq
                c.next_seq = s + 1
            else:
                bad[i] = True  # duplicate or out of order

    def errors(self) -> dict[str, int]:
        """Drop counters of this side's queues (and the connection's), by name."""
        return queue_errors(self.iface)


# ---------------------------------------------------------------------- both processes
def sleep_rx(loop: EventLoop, rxq: RxQueue, timeout: float) -> None:
    """Sleep on the receive eventfd and ``loop``'s control fds until one is readable, or
    ``timeout``.  ``loop`` is the caller's, kept across calls; it serves ``rxq`` adaptive
    (polling, in interrupt mode for the sleep only), and takes it up if it is new."""
    if loop.rx_queues != (rxq,):
        loop.update_rx([rxq], mode=RxMode.ADAPTIVE)
    loop.sleep(loop.clock() + timeout)


def queue_errors(iface: Interface) -> dict[str, int]:
    """The nonzero drop counters of every queue of ``iface``, summed by name."""
    out: dict[str, int] = {}
    for q in (*iface.rx_queues, *iface.tx_queues):
        for name, v in q.stats.errors.items():
            if v:
                out[name] = out.get(name, 0) + v
    return out
