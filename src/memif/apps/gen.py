"""``memif gen``: testpmd's forwarding engine for Python users.

Forwarding modes (the first argument, or ``--forward-mode`` as testpmd spells it):

* ``txonly``: send Ethernet/IPv4/UDP frames carrying a sequence header (below), and receive at
  the same time: frames that come back through a reflector (testpmd ``macswap``, ``memif gen
  macswap``, a VPP cross-connect...) give the round-trip latency, loss and reordering.
* ``rxonly``: count what arrives; frames with the header give loss, reordering, duplicates and
  one-way latency (the clock is ``CLOCK_MONOTONIC``, shared by every process of the host);
  frames without it (testpmd's ``txonly``) are counted as ``foreign``, never as lost.
* ``io``: send every received frame back unchanged on the queue of the same index.
* ``macswap``: the same with the Ethernet source and destination addresses swapped.

Header, right after the UDP header (bytes 42..61 of an Ethernet frame, 28..47 in ``ip`` mode),
all little-endian::

    u32 magic   "MGEN" (0x4E45474D)
    u64 seq     stream << 56 | packet number (stream = the sender's tx queue, numbers from 0)
    u64 stamp   time.monotonic_ns() when the burst was handed to the ring

Hot paths handle whole bursts with numpy: the frame template is written into every buffer of a
burst with one assignment (once per ring slot only, as a client: its buffers are its own), and
sequence numbers and stamps are written through ``uint64`` views of the burst matrix; receive
reads the header columns of ``RxBatch.matrix`` (or a vectorized ``gather``). Jumbo frames go
out as buffer chains: a fixed size with one vectorized write per segment, a size mix containing
jumbo frames with ``TxQueue.send`` per packet.

``--count N`` stops after N packets (sent in ``txonly``, received otherwise), ``--duration``
after that many seconds; the generator then waits until the peer took every sent slot from the
ring (``--drain-timeout``) and stays connected for ``--linger`` seconds, still receiving in
``txonly``, so the peer's counters can be read. Ctrl-C (or SIGTERM) ends the run at once, and
the summary is printed in every case.

Latency needs no special mode: ``txonly`` always receives, so run it against any reflector and
it reports the round trip (stamp at transmit to receive, one clock). Loss in ``txonly`` is sent
minus received-unique, and null while nothing came back (the peer is a sink: read its counters).
In the other modes loss is per stream, ``highest + 1 - unique``. The summary (``--json``: one
object on stdout) holds tx/rx packets, bytes, Mpps and Gbit/s (frame bytes), ``mpps``/``gbps``
of the mode's main direction, ``lost``, ``reordered``, ``duplicates``, ``sequenced``,
``foreign``, ``tx_drops`` (reflected frames the tx ring had no room for), ``rx_errors`` (bad
descriptors), latency ``min_us``/``p50_us``/``p99_us``/``max_us``/``mean_us`` (null when not
measured), ``in_flight`` (slots the peer had not taken back at the end) and ``seconds`` (the
traffic phase, without the drain and the linger).
"""

from __future__ import annotations

import argparse
import math
import os
import select
import signal
import struct
import time
from typing import Any

import numpy as np

from .. import packet, wire
from ..config import parse_mac
from ..errors import MemifError
from ..queue import RxBatch, TxQueue
from .common import LiveLine, add_connection_args, fail, open_interface, print_json

MODES = ("txonly", "rxonly", "io", "macswap")
MAGIC = int.from_bytes(b"MGEN", "little")
HDR_LEN = 20
STREAM_SHIFT = 56
SEQ_MASK = (1 << STREAM_SHIFT) - 1
IMIX = (64, 594, 64, 64, 1518, 64, 594, 64, 64, 594, 64, 594)
"""Simple IMIX, 7 x 64 : 4 x 594 : 1 x 1518 bytes, in the order it is sent."""
MAX_FRAME = 65535
_U64 = np.dtype("<u8")
_U32 = np.dtype("<u4")
_I64 = np.dtype("<i8")


# ------------------------------------------------------------------------------------ frames


class Frames:
    """The frames of a run: one template per size, the size pattern, header offsets.

    ``template`` is the largest frame; every smaller one is its prefix with its own L2-L4
    headers (``heads[k]``, ``hdr`` bytes each, for ``sizes[k]``). Packet ``c`` of a stream has
    size ``sizes[pattern[c % len(pattern)]]``.
    """

    def __init__(
        self,
        sizes: list[int],
        l2: bool = True,
        src_mac: bytes = b"\x02\0\0\0\0\x01",
        dst_mac: bytes = b"\x02\0\0\0\0\x02",
        src_ip: bytes = bytes([198, 18, 0, 1]),
        dst_ip: bytes = bytes([198, 18, 0, 2]),
    ) -> None:
        self.hdr = (packet.ETH_HLEN if l2 else 0) + packet.IP_HLEN + 8
        self.min_size = self.hdr + HDR_LEN
        for s in sizes:
            if not self.min_size <= s <= MAX_FRAME:
                raise ValueError(f"frame size {s} must be {self.min_size}..{MAX_FRAME}")
        distinct = sorted(set(sizes))
        self.sizes = np.array(distinct, np.int64)
        self.pattern = np.array([distinct.index(s) for s in sizes], np.intp)
        self.fixed = len(distinct) == 1
        self.max_size = distinct[-1]
        self.seq_off = self.hdr + 4
        self.ts_off = self.hdr + 12
        frames = [self._build(s, l2, src_mac, dst_mac, src_ip, dst_ip) for s in distinct]
        self.template = np.frombuffer(frames[-1], np.uint8).copy()
        self.heads = np.array([np.frombuffer(f[: self.hdr], np.uint8) for f in frames])
        self._ext_n = 0
        self._ext_heads = self._ext_sizes = self.sizes

    def _build(self, size: int, l2: bool, smac: bytes, dmac: bytes, sip: bytes, dip: bytes):
        n = size - self.hdr
        body = struct.pack("<IQQ", MAGIC, 0, 0) + bytes(i & 0xFF for i in range(n - HDR_LEN))
        udp = struct.pack("!HHHH", 9, 9, 8 + n, 0) + body
        ip = packet.ipv4(sip, dip, packet.PROTO_UDP, udp)
        return packet.ethernet(dmac, smac, packet.ETH_P_IP, ip) if l2 else ip

    def index(self, first: int, n: int) -> np.ndarray:
        """Size index of packets ``first .. first+n-1`` of a stream."""
        return self.pattern[(first + np.arange(n)) % len(self.pattern)]

    def mixed(self, first: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Headers ``(n, hdr)`` and lengths of packets ``first ..``: slices, no gather."""
        if self._ext_n < n:
            idx = self.index(0, n + len(self.pattern))
            self._ext_heads, self._ext_sizes, self._ext_n = self.heads[idx], self.sizes[idx], n
        k = first % len(self.pattern)
        return self._ext_heads[k : k + n], self._ext_sizes[k : k + n]

    def stamp(self, rows: np.ndarray, n: int, seq: int, ts: int) -> None:
        """Write sequence numbers ``seq, seq+1, ...`` and the stamp into ``n`` rows."""
        a, b = self.seq_off, self.ts_off
        seqs = rows[:n, a : a + 8].view(_U64)
        np.add(np.arange(n, dtype=np.uint64).reshape(n, 1), np.uint64(seq), out=seqs)
        rows[:n, b : b + 8].view(_U64)[:] = ts

    def frame(self, k: int, seq: int, ts: int) -> np.ndarray:
        """One frame of size index ``k`` (for the per-packet path)."""
        f = self.template[: self.sizes[k]].copy()
        f[: self.hdr] = self.heads[k]
        struct.pack_into("<QQ", f, self.seq_off, seq, ts)
        return f


def parse_sizes(text: str) -> list[int]:
    """``64``, ``64,512,1500`` or ``imix`` to the list of sizes in sending order."""
    if text.strip().lower() == "imix":
        return list(IMIX)
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size list {text!r}") from None
    if not sizes:
        raise argparse.ArgumentTypeError("empty size list")
    return sizes


# ------------------------------------------------------------------------------------ receive side


class Latency:
    """Latency samples in ns: every sample kept while there are at most ``keep`` (exact
    percentiles), then a log histogram with 32 bins per octave (about 2 % resolution)."""

    PER_OCTAVE = 32
    BINS = 64 * PER_OCTAVE
    LIMIT = 60_000_000_000  # a minute: anything else is another clock or garbage

    def __init__(self, keep: int = 1 << 20) -> None:
        self.keep = keep
        self.samples: list[np.ndarray] = []
        self.count = 0
        self.total = 0
        self.min = self.max = 0
        self.hist: np.ndarray | None = None

    def add(self, lat: np.ndarray) -> None:
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
            if self.count > self.keep:  # from now on, a histogram only
                self.hist = np.zeros(self.BINS, np.int64)
                self._bin(np.concatenate(self.samples))
                self.samples = []
        else:
            self._bin(lat)

    def _bin(self, lat: np.ndarray) -> None:
        bins = (np.log2(lat + 1.0) * self.PER_OCTAVE).astype(np.intp)
        self.hist += np.bincount(bins, minlength=self.BINS)[: self.BINS]

    def percentile(self, p: float) -> float | None:
        """The ``p``-th percentile in ns (None without samples)."""
        if not self.count:
            return None
        if self.hist is None:
            if len(self.samples) > 1:
                self.samples = [np.concatenate(self.samples)]
            return float(np.percentile(self.samples[0], p))
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

    def add(self, seq: np.ndarray) -> None:
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
        n = len(batch)
        f = self.f
        end = f.hdr + HDR_LEN
        rows = batch.matrix
        if rows is None:
            rows = _heads(batch, end)
        if rows.shape[1] < end:
            self.foreign += n
            return
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

    def _stream(self, sid: int) -> Stream:
        st = self.streams.get(sid)
        if st is None:
            st = self.streams[sid] = Stream()
        return st

    def total(self, what: str) -> int:
        return sum(getattr(s, what) for s in self.streams.values())


def _heads(batch: RxBatch, width: int) -> np.ndarray:
    """The first ``width`` bytes of every packet, vectorized even when packets are chained.

    A chained packet's header sits in its first buffer: gather from first buffers alone, as a
    batch of unchained packets, when each is at least ``width`` bytes (else packet by packet).
    """
    first = batch.first
    if first is None or batch.seg_length[first].min() < width:
        return batch.gather(width)
    return batch.first_segments().gather(width)


class _TxStream:
    """One transmit queue and the sequence stream it carries."""

    def __init__(self, q: TxQueue, sid: int) -> None:
        self.q = q
        self.sid = sid
        self.sent = 0
        # A client's tx buffers are its own: each slot needs the template only once.
        self.primed = None if q.is_master else np.zeros(q.size, bool)


class Generator:
    """The forwarding loop over one connected interface."""

    def __init__(self, args: argparse.Namespace, sock: Any, iface: Any, frames: Frames) -> None:
        self.args = args
        self.mode = args.fwd
        self.sock, self.iface, self.f = sock, iface, frames
        self.txq = list(iface.tx_queues)
        self.rxq = list(iface.rx_queues)
        self.streams = [_TxStream(q, i) for i, q in enumerate(self.txq)]
        self.rx_fds = [q.fd for q in self.rxq]
        self.polling = bool(args.polling)
        self.an = Analyzer(frames)
        self.burst = args.burst
        self.count = args.count
        self.done = 0  # packets sent (txonly) or received (other modes)
        self.tx_drops = 0
        self.stop = False
        self.interrupted = False
        self.disconnected: str | None = None
        self.undrained = 0
        self.rx_first = self.rx_last = 0.0
        self.t0 = self.t_end = 0.0
        self.wait = 0.0  # a rate-limited sender's wait for its next tokens
        self._rr = 0
        self._chain_cache: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}
        rate = args.rate or 0.0
        self.rate = rate
        self.chunk = max(1, min(self.burst, int(rate * 0.0005))) if rate else self.burst
        # Ten milliseconds of tokens: the average rate survives a late wake-up.
        self.depth = max(float(self.burst), rate * 0.01)
        self.tokens = 0.0
        self.t_tokens = 0.0
        self.live = LiveLine(enabled=not args.quiet)
        self._last = (0.0, 0, 0, 0, 0)

    # ------------------------------------------------------------------ transmit
    def _tx(self, st: _TxStream, n: int) -> int:
        q = st.q
        batch = q.alloc(n)
        m = batch.count
        if not m:
            return 0
        f = self.f
        if f.max_size > batch.capacity:
            sent = self._tx_chained(st, n, batch.capacity) if f.fixed else self._tx_slow(st, n)
        else:
            width = f.max_size
            rows = batch.buffers
            if rows is None:
                rows = np.empty((m, width), np.uint8)
                rows[:] = f.template
            elif st.primed is None:
                rows[:m, :width] = f.template
            else:
                s = batch.start & q.ring.mask
                primed = st.primed[s : s + m]
                if not primed.all():
                    rows[:m, :width] = f.template
                    primed[:] = True
            if f.fixed:
                lengths: Any = width
            else:
                heads, lengths = f.mixed(st.sent, m)
                rows[:m, : f.hdr] = heads
            f.stamp(rows, m, st.sid << STREAM_SHIFT | st.sent, time.monotonic_ns())
            if batch.buffers is None:
                batch.fill(rows)
            sent = q.tx_burst(batch, lengths)
        st.sent += sent
        return sent

    def _chain_plan(self, cap: int) -> tuple[np.ndarray, np.ndarray, int]:
        plan = self._chain_cache.get(cap)
        if plan is None:
            size = self.f.max_size
            k = -(-size // cap)
            lengths = np.array([min(cap, size - j * cap) for j in range(k)], np.uint32)
            flags = np.full(k, wire.DESC_FLAG_NEXT, np.uint8)
            flags[-1] = 0
            plan = self._chain_cache[cap] = (lengths, flags, k)
        return plan

    def _tx_chained(self, st: _TxStream, n: int, cap: int) -> int:
        """A fixed jumbo size: ``k`` slots per frame, one vectorized write per segment."""
        f, q = self.f, st.q
        if cap < f.hdr + HDR_LEN:
            raise MemifError(
                f"buffers of {cap} bytes cannot hold the {f.hdr + HDR_LEN}-byte header"
            )
        seg_len, seg_flags, k = self._chain_plan(cap)
        if k > q.size:
            raise MemifError(f"a {f.max_size}-byte frame needs {k} buffers, the ring has {q.size}")
        batch = q.alloc(n * k)
        m = batch.count // k
        if not m:  # less than one chain before the ring's end: send one across it
            return self._tx_slow(st, 1)
        slots = m * k
        rows = batch.buffers if batch.buffers is not None else np.empty((slots, cap), np.uint8)
        for j in range(k):
            lo, ln = j * cap, int(seg_len[j])
            rows[j:slots:k, :ln] = f.template[lo : lo + ln]
        f.stamp(rows[0:slots:k], m, st.sid << STREAM_SHIFT | st.sent, time.monotonic_ns())
        if batch.buffers is None:
            batch.fill(rows)
        q.tx_burst(batch, np.tile(seg_len, m), count=slots, flags=np.tile(seg_flags, m))
        return m

    def _tx_slow(self, st: _TxStream, n: int) -> int:
        """Per packet through ``TxQueue.send`` (size mixes with jumbo frames)."""
        f, ts = self.f, time.monotonic_ns()
        idx = f.index(st.sent, n)
        base = st.sid << STREAM_SHIFT | st.sent
        return _send_fitting(st.q, [f.frame(int(k), base + i, ts) for i, k in enumerate(idx)])

    def _send(self, now: float) -> int:
        budget = self.burst * len(self.streams)
        if self.count:
            budget = min(budget, self.count - self.done)
        if self.rate:
            self.tokens = min(self.depth, self.tokens + (now - self.t_tokens) * self.rate)
            self.t_tokens = now
            want = min(self.chunk, budget)
            if self.tokens < want:
                self.wait = (want - self.tokens) / self.rate
                return 0
            budget = min(budget, int(self.tokens))
        total = 0
        ns = len(self.streams)
        self._rr = (self._rr + 1) % ns
        for i in range(ns):
            if budget <= 0:
                break
            sent = self._tx(self.streams[(self._rr + i) % ns], min(self.burst, budget))
            budget -= sent
            total += sent
        if self.rate:
            self.tokens -= total
        self.done += total
        return total

    # ------------------------------------------------------------------ receive
    def _rx(self, qid: int, limit: int, now: float) -> int:
        q = self.rxq[qid]
        batch = q.rx_burst(limit)
        n = len(batch)
        if not n:
            return 0
        self.an.add(batch, time.monotonic_ns())
        if self.mode in ("io", "macswap"):
            self._forward(batch, self.txq[qid % len(self.txq)])
        q.refill()
        if not self.rx_first:
            self.rx_first = now
        self.rx_last = now
        return n

    def _forward(self, batch: RxBatch, q: TxQueue) -> None:
        n = len(batch)
        swap = self.mode == "macswap"
        rows = None
        if batch.first is None:
            rows = batch.matrix
            if rows is None:
                rows = batch.gather()
        done = 0
        while rows is not None and done < n:
            tb = q.alloc(n - done)
            k = tb.count
            if not k or rows.shape[1] > tb.capacity:
                break
            part = rows[done : done + k]
            if tb.buffers is not None:
                out = tb.buffers
                out[:k, : part.shape[1]] = part
            else:
                out = part.copy()
            if swap:
                mac = out[:k, 0:6].copy()
                out[:k, 0:6] = out[:k, 6:12]
                out[:k, 6:12] = mac
            if tb.buffers is None:
                tb.fill(out)
            q.tx_burst(tb, batch.lengths[done : done + k])
            done += k
        if done < n and (rows is None or rows.shape[1] > q.alloc(1).capacity):
            pkts = []  # chained or bigger than the peer's buffers: frame by frame
            for i in range(done, n):
                p = np.array(batch[i])
                if swap and len(p) >= 12:
                    p[0:6], p[6:12] = p[6:12].copy(), p[0:6].copy()
                pkts.append(p)
            done += _send_fitting(q, pkts)
        self.tx_drops += n - done

    # ------------------------------------------------------------------ loop
    def drained(self) -> int:
        """Slots sent and not yet taken back by the peer, over every tx queue that sent."""
        return sum(
            q.size - q.free_slots() if q.is_master else q.in_flight
            for q in self.txq
            if q.stats.packets
        )

    def run(self) -> None:
        args = self.args
        t = time.perf_counter()
        delay_end = t + args.start_delay
        while not self.stop and time.perf_counter() < delay_end and self.iface.connected:
            self.sock.poll(min(0.05, max(0.0, delay_end - time.perf_counter())))
        self.t0 = self.t_tokens = now = time.perf_counter()
        self._last = (now, 0, 0, 0, 0)
        send_end = now + args.duration if args.duration else math.inf
        live_period = 0.2 if self.live.tty else self.live.period
        phase, phase_end, next_house, idle = "send", math.inf, now, 0
        next_live = now + live_period
        nrx, txonly = len(self.rxq), self.mode == "txonly"
        while True:
            if self.stop:
                self.interrupted = phase != "linger"  # a cut linger is still a full run
                break
            now = time.perf_counter()
            work = 0
            self.wait = 0.0
            if phase == "send":
                if now >= send_end or (self.count and self.done >= self.count):
                    phase, phase_end, self.t_end = "drain", now + args.drain_timeout, now
                elif txonly:
                    work += self._send(now)
            if txonly or phase == "send":
                for qid in range(nrx):
                    limit = self.burst
                    if self.count and not txonly:
                        limit = min(limit, self.count - self.done)
                        if limit <= 0:
                            break
                    got = self._rx(qid, limit, now)
                    work += got
                    if not txonly:
                        self.done += got
            if phase == "drain":
                self.undrained = self.drained()
                if not self.undrained or now >= phase_end:
                    phase, phase_end = "linger", now + args.linger
            if phase == "linger" and now >= phase_end:
                break
            if now >= next_house:
                next_house = now + 0.05
                self.sock.poll(0)
                if not self.iface.connected:
                    reason = self.iface.remote_disc_reason or self.iface.local_disc_reason
                    if phase != "linger":
                        self.disconnected = reason or "peer disconnected"
                    break
                if now >= next_live:
                    next_live = now + live_period
                    self.live.update(self.live_text(now), force=True)
            if work:
                idle = 0
                continue
            idle += 1
            if self.polling:  # busy-poll, as DPDK does: lowest latency, a whole CPU
                continue
            timeout = self.wait  # tokens to wait for; frames coming back wake us up earlier
            if not timeout:
                if idle < 50:
                    continue
                timeout = 0.0001 if txonly and phase == "send" else 0.01
            timeout = max(0.0, min(timeout, next_house - now, phase_end - now, send_end - now))
            self._sleep(timeout)
        if not self.t_end:
            self.t_end = time.perf_counter()
        if self.iface.connected:  # Ctrl-C or the end: count what is still in flight
            self.undrained = self.drained()

    def _sleep(self, timeout: float) -> None:
        if not self.rx_fds:
            time.sleep(timeout)
            return
        ready, _, _ = select.select(self.rx_fds, [], [], timeout)
        for fd in ready:
            try:
                os.eventfd_read(fd)
            except OSError:
                pass

    # ------------------------------------------------------------------ reporting
    def counters(self) -> tuple[int, int, int, int]:
        tx = sum(q.stats.packets for q in self.txq)
        txb = sum(q.stats.bytes for q in self.txq)
        rx = sum(q.stats.packets for q in self.rxq)
        rxb = sum(q.stats.bytes for q in self.rxq)
        return tx, txb, rx, rxb

    def live_text(self, now: float) -> str:
        t, tx0, txb0, rx0, rxb0 = self._last
        tx, txb, rx, rxb = self.counters()
        dt = max(now - t, 1e-9)
        self._last = (now, tx, txb, rx, rxb)
        p50 = self.an.latency.percentile(50)
        lat = f"  p50 {p50 / 1000:.1f} us" if p50 is not None else ""
        return (
            f"tx {_pps((tx - tx0) / dt)} {(txb - txb0) * 8 / dt / 1e9:.3f} Gbit/s  "
            f"rx {_pps((rx - rx0) / dt)} {(rxb - rxb0) * 8 / dt / 1e9:.3f} Gbit/s  "
            f"lost {self.an.total('lost')}  drops {self.tx_drops + self.rx_errors()}{lat}"
        )

    def rx_errors(self) -> int:
        return sum(q.stats.drops for q in self.rxq)

    def summary(self) -> dict[str, Any]:
        tx, txb, rx, rxb = self.counters()
        seconds = max(self.t_end - self.t0, 1e-9)
        rx_span = self.rx_last - self.rx_first
        rx_seconds = rx_span if rx_span > 0.001 else seconds
        tx_seconds = seconds if self.mode == "txonly" else rx_seconds
        an = self.an
        if self.mode == "txonly":
            lost = tx - an.total("unique") if an.ours else None
        else:
            lost = an.total("lost") if an.ours else None
        lat = an.latency

        def us(p: float) -> float | None:
            v = lat.percentile(p)
            return None if v is None else round(v / 1000, 3)

        out: dict[str, Any] = {
            "mode": self.mode,
            "role": self.iface.role.value,
            "queues": len(self.txq),
            "sizes": [int(s) for s in self.f.sizes] if self.mode == "txonly" else None,
            "burst": self.burst,
            "rate": self.rate or None,
            "seconds": round(seconds, 6),
            "tx_packets": tx,
            "tx_bytes": txb,
            "tx_drops": self.tx_drops,
            "tx_mpps": round(tx / tx_seconds / 1e6, 6),
            "tx_gbps": round(txb * 8 / tx_seconds / 1e9, 6),
            "rx_packets": rx,
            "rx_bytes": rxb,
            "rx_errors": self.rx_errors(),
            "rx_mpps": round(rx / rx_seconds / 1e6, 6),
            "rx_gbps": round(rxb * 8 / rx_seconds / 1e9, 6),
            "sequenced": an.ours,
            "foreign": an.foreign,
            "streams": len(an.streams),
            "lost": lost,
            "reordered": an.total("reordered"),
            "duplicates": an.total("duplicates"),
            "latency": None
            if not lat.count
            else ("round-trip" if self.mode == "txonly" else "one-way"),
            "latency_samples": lat.count,
            "min_us": round(lat.min / 1000, 3) if lat.count else None,
            "mean_us": round(lat.total / lat.count / 1000, 3) if lat.count else None,
            "p50_us": us(50),
            "p99_us": us(99),
            "max_us": round(lat.max / 1000, 3) if lat.count else None,
            "in_flight": self.undrained,
            "interrupted": self.interrupted,
            "disconnected": self.disconnected,
        }
        main = "rx" if self.mode == "rxonly" else "tx"
        out["mpps"], out["gbps"] = out[f"{main}_mpps"], out[f"{main}_gbps"]
        return out


def _send_fitting(q: TxQueue, pkts: list[np.ndarray]) -> int:
    """``TxQueue.send`` the leading packets whose buffer chains fit in the free slots."""
    if not pkts:
        return 0
    cap = q.alloc(1).capacity
    if not cap:
        return 0
    nseg = np.cumsum([-(-len(p) // cap) for p in pkts])
    fit = int(np.searchsorted(nseg, q.free_slots(), side="right"))
    return q.send(pkts[:fit]) if fit else 0


def _pps(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.3f} Mpps"
    if v >= 1e3:
        return f"{v / 1e3:.1f} kpps"
    return f"{v:.0f} pps"


def format_summary(s: dict[str, Any]) -> str:
    """The human summary of a run."""
    q = s["queues"]
    sizes = f", {','.join(map(str, s['sizes']))} B" if s["sizes"] else ""
    lines = [
        f"memif gen {s['mode']} ({s['role']}, {q} queue{'s' if q != 1 else ''}{sizes}): "
        f"{s['seconds']:.3f} s" + (", interrupted" if s["interrupted"] else ""),
        f"  tx {s['tx_packets']} packets {s['tx_bytes']} bytes  {s['tx_mpps']:.3f} Mpps "
        f"{s['tx_gbps']:.3f} Gbit/s  drops {s['tx_drops']}  in flight {s['in_flight']}",
        f"  rx {s['rx_packets']} packets {s['rx_bytes']} bytes  {s['rx_mpps']:.3f} Mpps "
        f"{s['rx_gbps']:.3f} Gbit/s  errors {s['rx_errors']}",
    ]
    if s["sequenced"]:
        lines.append(
            f"  sequenced {s['sequenced']} in {s['streams']} stream(s), foreign {s['foreign']}: "
            f"lost {s['lost']}, reordered {s['reordered']}, duplicates {s['duplicates']}"
        )
    else:
        lines.append(f"  no sequenced frames received (foreign {s['foreign']}): loss not measured")
    if s["latency_samples"]:
        lines.append(
            f"  {s['latency']} latency us: min {s['min_us']} p50 {s['p50_us']} p99 {s['p99_us']} "
            f"max {s['max_us']} mean {s['mean_us']} ({s['latency_samples']} samples)"
        )
    else:
        lines.append("  latency: not measured")
    if s["disconnected"]:
        lines.append(f"  peer disconnected: {s['disconnected']}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ CLI


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be at least 1")
    return v


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v >= 0 or math.isinf(v):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number >= 0")
    return v


def _mac(text: str) -> bytes:
    try:
        return parse_mac(text)
    except MemifError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _ip(text: str) -> bytes:
    try:
        return packet.ip4(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad IPv4 address {text!r}") from None


EPILOG = """\
examples:
  memif gen txonly --socket /run/vpp/memif.sock --count 1000000 --size 64
  memif gen rxonly --role server --socket /tmp/m.sock --json
  memif gen macswap --role server --socket @refl        # a reflector
  memif gen txonly --socket @refl --rate 100000 --duration 5   # loss + round-trip latency
  memif gen txonly --socket @x --size imix              # 7x64, 4x594, 1x1518 bytes
  memif gen txonly --socket @x --size 9000              # chained 2048-byte buffers

--mode is the memif interface mode (ethernet, ip); the forwarding mode is FWD_MODE.
Gbit/s counts frame bytes only (no preamble, gap or FCS). A run is one connection. Exit status:
0 when the run ends by --count, --duration, Ctrl-C or (rxonly, io, macswap without --count) the
peer leaving; 1 on an error (no peer, the peer left before the end), with a one-line message.
"""


def add_parser(subparsers: Any) -> None:
    """Register ``memif gen``."""
    p = subparsers.add_parser(
        "gen",
        help="traffic generator and reflector (testpmd's txonly/rxonly/io/macswap)",
        description="Traffic generator and reflector: testpmd's forwarding modes over memif, "
        "with sequence numbers, loss, reordering and latency.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "fwd_pos",
        nargs="?",
        choices=MODES,
        metavar="FWD_MODE",
        help="forwarding mode: txonly (send, and measure what comes back), rxonly (count and "
        "check sequences), io (echo back unchanged), macswap (echo with MACs swapped); "
        "default txonly",
    )
    p.add_argument(
        "--forward-mode",
        dest="fwd_opt",
        choices=MODES,
        metavar="FWD_MODE",
        help="the forwarding mode, spelled as testpmd does (same as the FWD_MODE argument)",
    )
    add_connection_args(p, role="client")
    g = p.add_argument_group("traffic")
    g.add_argument(
        "--size",
        type=parse_sizes,
        default=[64],
        metavar="N[,N...]|imix",
        help="frame bytes, one size or a mix sent in turn (64,512,1500), or imix; frames larger "
        "than a buffer are chained (default 64; at least 62, 48 in ip mode)",
    )
    g.add_argument(
        "--burst", type=_positive_int, default=256, help="packets per burst (default 256)"
    )
    g.add_argument(
        "--rate",
        type=float,
        default=0.0,
        metavar="PPS",
        help="send at most PPS packets per second over all queues (a token bucket holding 10 ms "
        "of packets, sent every 0.5 ms in bursts of at most --burst); 0 or absent: flat out",
    )
    g.add_argument(
        "--count",
        type=_positive_int,
        metavar="N",
        help="stop after N packets: sent (txonly) or received (rxonly, io, macswap)",
    )
    g.add_argument("--duration", type=_seconds, metavar="SECONDS", help="stop after SECONDS")
    g.add_argument(
        "--linger",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="after the end (--count/--duration) and the drain, stay connected this long so "
        "the peer's counters can be read; txonly keeps receiving (default 1)",
    )
    g.add_argument(
        "--drain-timeout",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="longest wait at the end for the peer to take every sent slot (default 5)",
    )
    g.add_argument(
        "--start-delay",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait this long after connecting before moving traffic (default 0)",
    )
    g.add_argument(
        "--src-mac",
        type=_mac,
        default=b"\x02\0\0\0\0\x01",
        help="source MAC (default 02:00:00:00:00:01)",
    )
    g.add_argument(
        "--dst-mac",
        type=_mac,
        default=b"\x02\0\0\0\0\x02",
        help="destination MAC (default 02:00:00:00:00:02)",
    )
    g.add_argument(
        "--src-ip",
        type=_ip,
        default=bytes([198, 18, 0, 1]),
        help="source IPv4 (default 198.18.0.1)",
    )
    g.add_argument(
        "--dst-ip",
        type=_ip,
        default=bytes([198, 18, 0, 2]),
        help="destination IPv4 (default 198.18.0.2)",
    )
    g.add_argument("--quiet", "-q", action="store_true", help="no live line on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``memif gen``: connect, move traffic, print the summary."""
    if args.fwd_pos and args.fwd_opt and args.fwd_pos != args.fwd_opt:
        return fail(f"forwarding mode given twice: {args.fwd_pos} and {args.fwd_opt}")
    args.fwd = args.fwd_pos or args.fwd_opt or "txonly"
    if args.rate < 0 or math.isnan(args.rate):
        return fail(f"--rate {args.rate} must be >= 0")
    try:
        ip_mode = wire.Mode.parse(args.mode) is wire.Mode.IP
    except ValueError as exc:
        return fail(str(exc))
    if ip_mode and args.fwd == "macswap":
        return fail("macswap needs Ethernet frames: not in ip mode")
    try:
        frames = Frames(
            args.size, not ip_mode, args.src_mac, args.dst_mac, args.src_ip, args.dst_ip
        )
    except ValueError as exc:
        return fail(str(exc))
    try:
        sock, iface = open_interface(args, "memif-gen")
    except (TimeoutError, MemifError, OSError) as exc:
        return fail(str(exc))
    gen = Generator(args, sock, iface, frames)

    def on_signal(signum: int, frame: Any) -> None:
        gen.stop = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    error = None
    try:
        gen.run()
    except MemifError as exc:
        error = str(exc)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        gen.live.close()
        summary = gen.summary()
        sock.close()
    if args.json:
        print_json(summary)
    else:
        print(format_summary(summary), flush=True)
    if error:
        return fail(error)
    # A receiver or reflector whose peer leaves has simply reached the end of the traffic,
    # unless it was told to wait for more packets; a sender has not finished.
    if gen.disconnected and (args.fwd == "txonly" or (args.count and gen.done < args.count)):
        return fail(f"peer disconnected before the end: {gen.disconnected}")
    return 0
