"""``memif gen``'s receive-side measurements: latency, per-stream sequences, the analyzer.

Every received burst goes through :class:`Analyzer`: frames carrying the sequence header (see
:mod:`memif.tools.gen.frames`) feed the per-stream loss, reordering and duplicate counters and
the latency samples; any other frame is counted as foreign.  A burst of one packet (what a
reflector sees at low rates) takes a scalar path, plain ints and one ``struct`` read, held
equal to the burst path by the tests.
"""

from __future__ import annotations

import struct

import numpy as np

from ...queue import RxBatch
from .frames import HDR_LEN, MAGIC, SEQ_MASK, STREAM_SHIFT, Frames

_U32 = np.dtype("<u4")
_I64 = np.dtype("<i8")
_HDR = struct.Struct("<Iqq")  # magic, sequence, stamp: the header as the burst path reads it


class Latency:
    """Latency samples in ns: every sample kept while there are at most ``keep`` (exact
    percentiles), then a log histogram with 32 bins per octave (about 2 % resolution)."""

    PER_OCTAVE = 32
    BINS = 64 * PER_OCTAVE
    LIMIT = 60_000_000_000  # a minute: anything else is another clock or garbage

    def __init__(self, keep: int = 1 << 20) -> None:
        self.keep = keep
        self.samples: list[np.ndarray] = []
        self._ints: list[int] = []  # samples added one at a time, not yet in ``samples``
        self.count = 0
        self.total = 0
        self.min = self.max = 0
        self.hist: np.ndarray | None = None

    def add(self, lat: np.ndarray) -> None:
        """Add a burst of samples (ns); negative ones and those over a minute are dropped."""
        lo, hi = int(lat.min()), int(lat.max())
        if lo < 0 or hi >= self.LIMIT:
            lat = lat[(lat >= 0) & (lat < self.LIMIT)]
            if not len(lat):
                return
            lo, hi = int(lat.min()), int(lat.max())
        self.min = lo if not self.count else min(self.min, lo)
        self.max = max(self.max, hi)
        self.count += len(lat)
        self.total += int(lat.sum())
        if self.hist is None:
            self.samples.append(lat)
            if self.count > self.keep:
                self._to_histogram()
        else:
            self._bin(self.hist, lat)

    def add_one(self, ns: int) -> None:
        """:meth:`add` of one sample (an int): the same counters, no numpy call."""
        if not 0 <= ns < self.LIMIT:
            return
        self.min = ns if not self.count else min(self.min, ns)
        self.max = max(self.max, ns)
        self.count += 1
        self.total += ns
        if self.hist is None:
            self._ints.append(ns)
            if self.count > self.keep:
                self._to_histogram()
        else:
            self._bin(self.hist, np.array([ns], np.int64))

    def _kept(self) -> list[np.ndarray]:
        """The kept samples as arrays (those added one at a time joined in)."""
        if self._ints:
            self.samples.append(np.array(self._ints, np.int64))
            self._ints = []
        return self.samples

    def _to_histogram(self) -> None:
        """More than ``keep`` samples: from now on, a histogram only."""
        self.hist = np.zeros(self.BINS, np.int64)
        self._bin(self.hist, np.concatenate(self._kept()))
        self.samples = []

    def _bin(self, hist: np.ndarray, lat: np.ndarray) -> None:
        bins = (np.log2(lat + 1.0) * self.PER_OCTAVE).astype(np.intp)
        hist += np.bincount(bins, minlength=self.BINS)[: self.BINS]

    def weighted(self) -> tuple[np.ndarray, np.ndarray]:
        """Every sample as (values in ns, weights): the kept samples one each, or, once
        binned, each bin's middle weighted by its count (the weights sum to ``count``)."""
        if self.hist is None:
            kept = self._kept()
            values = np.concatenate(kept) if kept else np.zeros(0, np.int64)
            return values.astype(np.float64), np.ones(len(values), np.int64)
        bins = np.flatnonzero(self.hist)
        return 2 ** ((bins + 0.5) / self.PER_OCTAVE) - 1, self.hist[bins]

    def percentile(self, p: float) -> float | None:
        """The ``p``-th percentile in ns (None without samples)."""
        if not self.count:
            return None
        if self.hist is None:
            samples = self._kept()
            if len(samples) > 1:
                self.samples = samples = [np.concatenate(samples)]
            return float(np.percentile(samples[0], p))
        b = int(np.searchsorted(np.cumsum(self.hist), p / 100 * self.count))
        return min(float(self.max), max(float(self.min), 2 ** ((b + 0.5) / self.PER_OCTAVE) - 1))


class Stream:
    """Loss, reordering and duplicates of one sequence stream.

    A duplicate is a number seen before (within the last ``window`` numbers); a reordered packet
    is one that arrives after a higher number; lost is ``highest + 1 - unique``, so a gap at the
    very end of a stream is not seen here (a sender that gets its frames back knows better).
    """

    def __init__(self, window: int = 1 << 15) -> None:
        self.window = window
        self.seen = np.full(window, -1, np.int64)
        self.unique = 0
        self.duplicates = 0
        self.reordered = 0
        self.highest = -1

    def add_one(self, seq: int) -> None:
        """:meth:`add` of one packet number: new and higher (the usual case) without numpy."""
        if seq > self.highest:
            self.seen[seq & (self.window - 1)] = seq
            self.unique += 1
            self.highest = seq
        else:
            self.add(np.array([seq], np.int64))

    def add(self, seq: np.ndarray) -> None:
        """Count one burst of this stream's packet numbers, in arrival order."""
        n = len(seq)
        first = int(seq[0])
        if first > self.highest and (n == 1 or (seq[1:] > seq[:-1]).all()):
            # The common case: all new and increasing; no duplicate, nothing late.
            s = first & (self.window - 1)
            if s + n <= self.window:
                self.seen[s : s + n] = seq
            else:
                self.seen[seq & (self.window - 1)] = seq
            self.unique += n
            self.highest = int(seq[-1])
            return
        slot = seq & (self.window - 1)
        dup = self.seen[slot] == seq
        if n > 1 and not (seq[1:] > seq[:-1]).all():
            once = np.zeros(n, bool)
            once[np.unique(seq, return_index=True)[1]] = True
            dup |= ~once
        self.seen[slot] = seq
        new = seq[~dup]
        self.duplicates += n - len(new)
        if len(new):
            before = np.maximum.accumulate(np.concatenate(([self.highest], new[:-1])))
            self.reordered += int(np.count_nonzero(new < before))
            self.highest = max(self.highest, int(new.max()))
            self.unique += len(new)

    @property
    def lost(self) -> int:
        """Numbers missing below the highest seen: ``highest + 1 - unique``."""
        return max(0, self.highest + 1 - self.unique)


class Analyzer:
    """Every received burst: our header or foreign, per-stream sequences, latency."""

    def __init__(self, frames: Frames) -> None:
        self.f = frames
        self.streams: dict[int, Stream] = {}
        self.latency = Latency()
        self.ours = 0
        self.foreign = 0

    def add(self, batch: RxBatch, now_ns: int) -> None:
        """Count one received burst; ``now_ns`` is its arrival on ``CLOCK_MONOTONIC``."""
        n = len(batch)
        if n == 1:
            self._add_one(batch, now_ns)
            return
        f = self.f
        end = f.hdr + HDR_LEN
        rows = batch.headers(end)  # a view of the buffers, or one gather
        ours = rows[:, f.hdr : f.hdr + 4].view(_U32)[:, 0] == MAGIC
        if batch.lengths.min() < end:
            ours &= batch.lengths >= end
        k = int(np.count_nonzero(ours))
        self.foreign += n - k
        if not k:
            return
        self.ours += k
        seq = rows[:, f.seq_off : f.seq_off + 8].view(_I64)[:, 0]
        ts = rows[:, f.ts_off : f.ts_off + 8].view(_I64)[:, 0]
        if k < n:
            seq, ts = seq[ours], ts[ours]
        self.latency.add(now_ns - ts)  # new arrays: the views die with refill()
        sid = int(seq[0]) >> STREAM_SHIFT
        if not sid and int(seq.max()) <= SEQ_MASK:  # one stream, stream 0: no masking
            self._stream(0).add(seq)
            return
        sids = seq >> STREAM_SHIFT
        if (sids == sid).all():
            self._stream(sid).add(seq & SEQ_MASK)
            return
        for s in np.unique(sids):
            self._stream(int(s)).add(seq[sids == s] & SEQ_MASK)

    def _add_one(self, batch: RxBatch, now_ns: int) -> None:
        """:meth:`add` of a 1-packet burst: one header read, plain ints."""
        f = self.f
        end = f.hdr + HDR_LEN
        if int(batch.lengths[0]) < end:
            self.foreign += 1
            return
        magic, seq, ts = _HDR.unpack_from(batch.headers(end).tobytes(), f.hdr)
        if magic != MAGIC:
            self.foreign += 1
            return
        self.ours += 1
        self.latency.add_one(now_ns - ts)
        self._stream(seq >> STREAM_SHIFT).add_one(seq & SEQ_MASK)

    def _stream(self, sid: int) -> Stream:
        st = self.streams.get(sid)
        if st is None:
            st = self.streams[sid] = Stream()
        return st

    def total(self, what: str) -> int:
        """One :class:`Stream` counter (``lost``, ``unique``...) summed over every stream."""
        return sum(getattr(s, what) for s in self.streams.values())
