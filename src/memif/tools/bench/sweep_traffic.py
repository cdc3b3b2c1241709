"""The rate sweep's traffic: a rate-limited source and a sink, both Python.

In one process (``both``, :class:`Traffic` starts it for ``memif bench-switch --rates``),
pinned to the LOOP CPU, it holds two memif interfaces on one socket, ``A`` (id 0) and ``B``
(id 1), servers when the switch's ports are slaves, clients when they are masters. It sends on
``A`` frames addressed to ``B``'s MAC (B sends a few frames first, so the switch learns both
MACs and forwards known unicast) and receives on ``B``: the switch bridges them. It busy-polls
its CPU. Split (``source`` and ``sink``, one process each, for a switch whose ports belong to
different tenants: ``scripts/containers.sh sweep``), the source holds ``A`` alone on its socket,
the sink ``B`` (interface id 0) on its own; so that both can share one CPU, the source sleeps
until its next burst is due (it spins at the peak) and the sink sleeps on its queue's
eventfd while its ring is empty.

The source is a token bucket: at each turn it may send ``(now - start) * rate`` packets
minus those already offered, at most a burst (``BURST``); what the switch's ring has no room
for is counted as ``ring-full`` and not sent later (as a NIC drops what its ring cannot
take). When this process falls more than ``LAG`` frames behind (its CPU taken), it skips
them instead of sending a catch-up burst: the offered rate it reports (sent + ring-full) is
then below the rate asked, never above it. Rate 0 sends as fast as the ring takes frames
(the peak); a negative rate sends nothing (a pause). Every frame carries its send time
(``perf_counter_ns``, CLOCK_MONOTONIC, one clock for every process and container of a host;
bytes 50..57); the sink adds each burst's one-way latencies (send to receive, through the
switch) to a histogram of ``BINS_PER_OCTAVE`` bins per octave of nanoseconds.

The parent and each traffic process share a control block: a file of int64 slots (below)
followed by the histogram, mapped by both (:func:`control_block`; a file, so a process in a
container reaches it through a bind mount). :class:`Traffic` is the parent's side of one
process; ``python -m memif.tools.bench.sweep_traffic`` is the process.
"""

from __future__ import annotations

import argparse
import gc
import mmap
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..common import child_env
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
RATE = 1  # parent -> child: packets per second to offer (0: as fast as it can, < 0: none)
EPOCH = 2  # parent -> child: bumped when RATE changes (the bucket restarts)
READY = 3  # child: both interfaces connected, learning frames sent
LISTENING = 4  # child: its socket listens (servers)
TX_PACKETS = 5  # child: frames sent on A
RING_FULL = 6  # child: frames offered but refused by A's full ring
RX_PACKETS = 7  # child: frames received on B
RX_BYTES = 8  # child: bytes received on B
FAILED = 9  # child raised
SLOTS = 16
BLOCK_BYTES = (SLOTS + BINS) * 8
"""Size of a control block file: the slots, then the latency histogram."""
PARTS = ("both", "source", "sink")
"""What one traffic process holds: A and B on one socket, A alone, or B alone."""


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


def control_block(path: str, create: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The (slots, histogram) of the control block file ``path``, mapped shared; ``create``
    makes it (zeroed) first."""
    flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
    fd = os.open(path, flags, 0o600)
    try:
        if create:
            os.ftruncate(fd, BLOCK_BYTES)
        block = np.frombuffer(mmap.mmap(fd, BLOCK_BYTES), np.int64)
    finally:
        os.close(fd)
    return block[:SLOTS], block[SLOTS:]


def _send_learning(tx: Any, frame: np.ndarray) -> None:
    """A few frames from B's MAC to A's, so the switch learns B before the sweep."""
    learn = frame.copy()
    learn[0:6], learn[6:12] = np.frombuffer(MAC_A, np.uint8), np.frombuffer(MAC_B, np.uint8)
    batch = tx.alloc(4)
    if batch.count:
        batch.buffers[:, : len(learn)] = learn
        tx.tx_burst(batch, len(learn))


def run_traffic(
    tx: Any, rx: Any, rx_a: Any, frame: int, ctl: np.ndarray, hist: np.ndarray, sleep: bool = False
) -> None:
    """Offer ``ctl[RATE]`` frames/s on ``tx`` and take them from ``rx`` until ``ctl[STOP]``;
    without ``tx`` (None) only receive, without ``rx`` only send. ``sleep`` (a source or a
    sink alone, sharing a CPU): the source sleeps until its next chunk is due, the sink waits
    on ``rx``'s eventfd when its ring is empty; else both spin."""
    template = build_frame(frame)
    template[0:6], template[6:12] = np.frombuffer(MAC_B, np.uint8), np.frombuffer(MAC_A, np.uint8)
    seqs = np.arange(BURST, dtype=np.uint64).reshape(BURST, 1)
    clock = time.perf_counter_ns
    epoch = -1
    sent = full = received = nbytes = offered = seq = 0
    rate = start = 0
    turns = chunk = 0
    while not ctl[STOP]:
        if tx is not None:
            now = clock()
            if ctl[EPOCH] != epoch:  # a new rate: the bucket starts empty now
                epoch, rate, start, offered = int(ctl[EPOCH]), int(ctl[RATE]), now, 0
                chunk = max(1, min(BURST, rate * CHUNK_NS // 1_000_000_000))
            want = BURST
            if rate > 0:
                due = (now - start) * rate // 1_000_000_000
                if due - offered > LAG:  # this process fell behind: no catching up in a burst
                    offered = due - BURST
                want = min(BURST, due - offered)
                if want < chunk:
                    want = 0
                    if sleep:  # until the next chunk is due: the CPU is the sink's meanwhile
                        time.sleep(min(0.001, (chunk - due + offered) / rate))
            elif rate < 0:  # paused
                want = 0
                if sleep:
                    time.sleep(0.001)
            left = want
            while left > 0:  # one run of the ring, then the rest after its end
                batch = tx.alloc(left)
                n = batch.count
                if not n:
                    break
                bufs = batch.buffers
                bufs[:, :frame] = template
                np.add(seqs[:n], seq, out=bufs[:n, SEQ_OFFSET:SEQ_END].view(np.uint64))
                bufs[:n, TS_OFFSET:TS_END].view(np.uint64)[:] = clock()
                tx.tx_burst(batch, frame)
                seq += n
                sent += n
                left -= n
                ctl[TX_PACKETS] = sent
            if rate > 0 and want > 0:
                offered += want
                if left:  # no room in the ring: those are lost, not sent later
                    full += left
                    ctl[RING_FULL] = full
        if rx is not None:
            got = rx.rx_burst(BURST)
            k = len(got)
            if k:
                ts = got.headers(TS_END)[:k, TS_OFFSET:TS_END].copy().view(np.uint64)[:, 0]
                lat = clock() - ts.astype(np.int64)
                hist += np.bincount(latency_bin(lat), minlength=BINS)
                received += k
                nbytes += int(got.nbytes)
                rx.refill()
                ctl[RX_PACKETS] = received
                ctl[RX_BYTES] = nbytes
            elif sleep:
                rx.wait(0.01)
        turns += 1
        if rx_a is not None and not turns & 63 and len(rx_a.rx_burst(BURST)):  # reaching A
            rx_a.refill()


def traffic_main(part: str, role: str, path: str, frame: int, cpu: int, control: str) -> None:
    """One traffic process (``part`` of :data:`PARTS`): its interfaces, then
    :func:`run_traffic`."""
    from ...sock import Socket

    ctl, hist = control_block(control)
    try:
        os.sched_setaffinity(0, {cpu})
        # A listening socket file open to all (a switch without CAP_DAC_OVERRIDE, root in its
        # container, must reach it): the peer-credential check admits only root and our uid.
        with Socket(path, app_name="memif-bench-sweep", mode=0o666) as sock:
            ifaces = [
                sock.create_interface(
                    role=role, id=i, ring_size=RING_SIZE, buffer_size=2048, polling=True
                )
                for i in ((0, 1) if part == "both" else (0,))
            ]
            for iface in ifaces:
                iface.set_rx_mode(0, part != "sink")
            ctl[LISTENING] = 1
            wait_connected(sock, ifaces, ctl, STOP)
            a = None if part == "sink" else ifaces[0]
            b = None if part == "source" else ifaces[-1]
            if b is not None:
                _send_learning(b.tx_queues[0], build_frame(frame))
            gc.collect()
            gc.disable()
            ctl[READY] = 1
            run_traffic(
                None if a is None else a.tx_queues[0],
                None if b is None else b.rx_queues[0],
                None if a is None else a.rx_queues[0],
                frame,
                ctl,
                hist,
                sleep=part != "both",
            )
    except KeyboardInterrupt:
        pass
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        ctl[FAILED] = 1
        raise SystemExit(1) from None


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m memif.tools.bench.sweep_traffic PART --socket ... --control FILE``."""
    p = argparse.ArgumentParser(prog="sweep_traffic", description=__doc__.split("\n")[0])
    p.add_argument("part", choices=PARTS)
    p.add_argument("--socket", required=True, help="memif socket path (@name: abstract)")
    p.add_argument("--role", choices=("client", "server"), required=True)
    p.add_argument("--frame", type=int, default=64)
    p.add_argument("--cpu", type=int, required=True)
    p.add_argument("--control", required=True, help="control block file (made by the parent)")
    a = p.parse_args(argv)
    traffic_main(a.part, a.role, a.socket, a.frame, a.cpu, a.control)


class Traffic:
    """The parent's side of one traffic process: start it, set the rate, read counters.

    ``control`` is the control block file here; the process runs ``launch`` (default this
    Python) with ``-m memif.tools.bench.sweep_traffic``, and finds the block at
    ``remote_control`` (default ``control``: another path when it runs in a container)."""

    def __init__(
        self,
        part: str,
        role: str,
        path: str,
        frame: int,
        cpu: int,
        control: str,
        launch: Sequence[str] = (),
        remote_control: str | None = None,
    ) -> None:
        self.ctl, self.hist = control_block(control, create=True)
        argv = [*(launch or (sys.executable,)), "-m", __name__, part, "--socket", path,
                "--role", role, "--frame", str(frame), "--cpu", str(cpu),
                "--control", remote_control or control]  # fmt: skip
        env = None if launch else child_env()  # this very memif package
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=env)

    def failed(self) -> bool:
        """True when the process raised or exited."""
        return bool(self.ctl[FAILED]) or self.proc.poll() is not None

    def listening(self) -> bool:
        """True once its socket is set up (a server's listens)."""
        return bool(self.ctl[LISTENING])

    def ready(self) -> bool:
        """True once its interfaces are connected (and the learning frames sent)."""
        return bool(self.ctl[READY])

    def set_rate(self, pps: float) -> None:
        """Offer ``pps`` frames per second from now on (0: as fast as the ring takes;
        negative: none)."""
        self.ctl[RATE] = int(pps) if pps >= 0 else -1
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
        """Tell the process to disconnect and exit (it leaves at its next turn)."""
        self.ctl[STOP] = 1

    def stop(self) -> None:
        """Tell the process to disconnect and exit; kill it if it does not."""
        self.request_stop()
        try:
            self.proc.wait(10.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5.0)


class TrafficPair:
    """A source and a sink in two processes, read as one :class:`Traffic`."""

    def __init__(self, source: Traffic, sink: Traffic) -> None:
        self.source, self.sink = source, sink

    def failed(self) -> bool:
        """True when either process raised or exited."""
        return self.source.failed() or self.sink.failed()

    def listening(self) -> bool:
        """True once both have set their sockets up."""
        return self.source.listening() and self.sink.listening()

    def ready(self) -> bool:
        """True once both are connected."""
        return self.source.ready() and self.sink.ready()

    def set_rate(self, pps: float) -> None:
        """The source's rate (:meth:`Traffic.set_rate`)."""
        self.source.set_rate(pps)

    def snapshot(self) -> tuple[int, int, int, int, np.ndarray]:
        """The source's sent and ring-full, the sink's received, bytes and histogram."""
        sent, full, _, _, _ = self.source.snapshot()
        _, _, rx, nbytes, hist = self.sink.snapshot()
        return sent, full, rx, nbytes, hist

    def request_stop(self) -> None:
        """Tell both to exit."""
        self.source.request_stop()
        self.sink.request_stop()

    def stop(self) -> None:
        """Stop both (the source first)."""
        try:
            self.source.stop()
        finally:
            self.sink.stop()


if __name__ == "__main__":
    main()
