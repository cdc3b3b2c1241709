"""The rate sweep's traffic process: a rate-limited source and a sink, both Python, one CPU.

One ``spawn`` child (:func:`traffic_main`) pinned to the LOOP CPU holds two memif
interfaces on one socket, ``A`` (id 0) and ``B`` (id 1), servers when the switch's ports
are slaves, clients when they are masters. It sends on ``A`` frames addressed to ``B``'s MAC
(B sends a few frames first, so the switch learns both MACs and forwards known unicast) and
receives on ``B``: the switch bridges them. It busy-polls its CPU.

The source is a token bucket: at each turn it may send ``(now - start) * rate`` packets
minus those already offered, at most a burst (``BURST``); what the switch's ring has no room
for is counted as ``ring-full`` and not sent later (as a NIC drops what its ring cannot
take). When this process falls more than ``LAG`` frames behind (its CPU taken), it skips
them instead of sending a catch-up burst: the offered rate it reports (sent + ring-full) is
then below the rate asked, never above it. Rate 0 sends as
fast as the ring takes frames (the peak). Every frame carries its send time
(``perf_counter_ns``, bytes 50..57); the sink adds each burst's one-way latencies (send to
receive, through the switch) to a histogram of ``BINS_PER_OCTAVE`` bins per octave of
nanoseconds.

Parent and child share one control block of int64 slots (below) and the histogram;
:class:`Traffic` is the parent's side.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import time
import traceback
from typing import Any

import numpy as np

from .worker import SEQ_END, SEQ_OFFSET, build_frame, wait_connected

TS_OFFSET = SEQ_END
"""Byte offset of the u64 send time (``perf_counter_ns``) in every frame."""
TS_END = TS_OFFSET + 8
BURST = 256
"""Most frames the source sends (and the sink takes) per burst."""
CHUNK_NS = 100_000
"""The source sends once a burst's worth of this many nanoseconds of its rate is due (at
most ``BURST``, at least one frame): bursts of about 100 us, not one frame per turn, so a
high rate costs the source (and the switch) a call per burst, as memif gen paces."""
LAG = 4 * BURST
"""Frames the source may be late by (descheduled, say) before it skips them: it does not
catch up in a burst, and what it skipped was not offered."""
BINS_PER_OCTAVE = 16
BINS = 40 * BINS_PER_OCTAVE  # up to 2**40 ns
RING_SIZE = 1024
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")

# Slots of the control block (int64 each).
STOP = 0  # parent -> child: disconnect and exit
RATE = 1  # parent -> child: packets per second to offer (0: as fast as the ring takes)
EPOCH = 2  # parent -> child: bumped when RATE changes (the bucket restarts)
READY = 3  # child: both interfaces connected, learning frames sent
LISTENING = 4  # child: its socket listens (servers)
TX_PACKETS = 5  # child: frames sent on A
RING_FULL = 6  # child: frames offered but refused by A's full ring
RX_PACKETS = 7  # child: frames received on B
RX_BYTES = 8  # child: bytes received on B
FAILED = 9  # child raised
SLOTS = 16


def latency_bin(ns: np.ndarray) -> np.ndarray:
    """The histogram bin of each latency (ns; 1 ns and below in bin 0)."""
    logs = np.log2(np.maximum(ns, 1).astype(np.float64))
    return np.minimum((logs * BINS_PER_OCTAVE).astype(np.int64), BINS - 1)


def percentile_us(hist: np.ndarray, q: float) -> float | None:
    """The ``q``-th percentile (0..100) of a latency histogram, in microseconds (the bin's
    geometric middle), or None when it is empty."""
    total = int(hist.sum())
    if not total:
        return None
    i = int(np.searchsorted(np.cumsum(hist), q / 100.0 * total, side="left"))
    return round(2 ** ((i + 0.5) / BINS_PER_OCTAVE) / 1000.0, 2)


def _control(raw: Any) -> np.ndarray:
    return np.frombuffer(raw, np.int64)


def _send_learning(tx: Any, frame: np.ndarray) -> None:
    """A few frames from B's MAC to A's, so the switch learns B before the sweep."""
    learn = frame.copy()
    learn[0:6], learn[6:12] = np.frombuffer(MAC_A, np.uint8), np.frombuffer(MAC_B, np.uint8)
    batch = tx.alloc(4)
    if batch.count:
        batch.buffers[:, : len(learn)] = learn
        tx.tx_burst(batch, len(learn))


def run_traffic(tx: Any, rx: Any, rx_a: Any, frame: int, ctl: np.ndarray, hist: np.ndarray) -> None:
    """Offer ``ctl[RATE]`` frames/s on ``tx`` and take them from ``rx`` until ``ctl[STOP]``."""
    template = build_frame(frame)
    template[0:6], template[6:12] = np.frombuffer(MAC_B, np.uint8), np.frombuffer(MAC_A, np.uint8)
    seqs = np.arange(BURST, dtype=np.uint64).reshape(BURST, 1)
    clock = time.perf_counter_ns
    alloc, tx_burst, rx_burst, refill = tx.alloc, tx.tx_burst, rx.rx_burst, rx.refill
    epoch = -1
    sent = full = received = nbytes = offered = seq = 0
    rate = start = 0
    turns = chunk = 0
    while not ctl[STOP]:
        now = clock()
        if ctl[EPOCH] != epoch:  # a new rate: the bucket starts empty now
            epoch, rate, start, offered = int(ctl[EPOCH]), int(ctl[RATE]), now, 0
            chunk = max(1, min(BURST, rate * CHUNK_NS // 1_000_000_000))
        want = BURST
        if rate:
            due = (now - start) * rate // 1_000_000_000
            if due - offered > LAG:  # this process fell behind: no catching up in a burst
                offered = due - BURST
            want = min(BURST, due - offered)
            if want < chunk:
                want = 0
        left = want
        while left > 0:  # one run of the ring, then the rest after its end
            batch = alloc(left)
            n = batch.count
            if not n:
                break
            bufs = batch.buffers
            bufs[:, :frame] = template
            np.add(seqs[:n], seq, out=bufs[:n, SEQ_OFFSET:SEQ_END].view(np.uint64))
            bufs[:n, TS_OFFSET:TS_END].view(np.uint64)[:] = clock()
            tx_burst(batch, frame)
            seq += n
            sent += n
            left -= n
            ctl[TX_PACKETS] = sent
        if rate and want > 0:
            offered += want
            if left:  # no room in the ring: those are lost, not sent later
                full += left
                ctl[RING_FULL] = full
        got = rx_burst(BURST)
        k = len(got)
        if k:
            ts = got.headers(TS_END)[:k, TS_OFFSET:TS_END].copy().view(np.uint64)[:, 0]
            lat = clock() - ts.astype(np.int64)
            hist += np.bincount(latency_bin(lat), minlength=BINS)
            received += k
            nbytes += int(got.nbytes)
            refill()
            ctl[RX_PACKETS] = received
            ctl[RX_BYTES] = nbytes
        turns += 1
        if not turns & 63 and len(rx_a.rx_burst(BURST)):  # whatever reaches A: dropped
            rx_a.refill()


def traffic_main(role: str, path: str, frame: int, cpu: int, raw: Any, raw_hist: Any) -> None:
    """Entry point of the child process: both interfaces, then :func:`run_traffic`."""
    from ...sock import Socket

    ctl, hist = _control(raw), np.frombuffer(raw_hist, np.int64)
    try:
        os.sched_setaffinity(0, {cpu})
        with Socket(path, app_name="memif-bench-sweep") as sock:
            ifaces = [
                sock.create_interface(
                    role=role, id=i, ring_size=RING_SIZE, buffer_size=2048, polling=True
                )
                for i in (0, 1)
            ]
            for iface in ifaces:
                iface.set_rx_mode(0, True)
            ctl[LISTENING] = 1
            wait_connected(sock, ifaces, ctl, STOP)
            a, b = ifaces
            template = build_frame(frame)
            _send_learning(b.tx_queues[0], template)
            gc.collect()
            gc.disable()
            ctl[READY] = 1
            run_traffic(a.tx_queues[0], b.rx_queues[0], a.rx_queues[0], frame, ctl, hist)
    except KeyboardInterrupt:
        pass
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        ctl[FAILED] = 1
        raise SystemExit(1) from None


class Traffic:
    """The parent's side of the traffic process: start it, set the rate, read counters."""

    def __init__(self, role: str, path: str, frame: int, cpu: int) -> None:
        ctx = mp.get_context("spawn")
        self._raw = ctx.RawArray("q", SLOTS)
        self._raw_hist = ctx.RawArray("q", BINS)
        self.ctl = _control(self._raw)
        self.hist = np.frombuffer(self._raw_hist, np.int64)
        args = (role, path, frame, cpu, self._raw, self._raw_hist)
        self.proc = ctx.Process(target=traffic_main, args=args, name="memif-bench-sweep")
        self.proc.daemon = True
        self.proc.start()

    def failed(self) -> bool:
        """True when the child raised or exited."""
        return bool(self.ctl[FAILED]) or self.proc.exitcode is not None

    def set_rate(self, pps: float) -> None:
        """Offer ``pps`` frames per second from now on (0: as fast as the ring takes)."""
        self.ctl[RATE] = int(pps)
        self.ctl[EPOCH] += 1

    def snapshot(self) -> tuple[int, int, int, int, np.ndarray]:
        """(sent, ring-full, received, received bytes, latency histogram) so far."""
        c = self.ctl
        return (
            int(c[TX_PACKETS]),
            int(c[RING_FULL]),
            int(c[RX_PACKETS]),
            int(c[RX_BYTES]),
            (self.hist.copy()),
        )

    def request_stop(self) -> None:
        """Tell the child to disconnect and exit (it leaves at its next turn)."""
        self.ctl[STOP] = 1

    def stop(self) -> None:
        """Tell the child to disconnect and exit; kill it if it does not."""
        self.request_stop()
        self.proc.join(5.0)
        if self.proc.exitcode is None:
            self.proc.kill()
            self.proc.join(2.0)
