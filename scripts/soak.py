#!/usr/bin/env python3
"""Soak test: traffic through memifd for a long time, with periodic peer restarts.

    PYTHONPATH=src python scripts/soak.py --duration 120 --restart-every 15 --rate 5000

What runs (all processes are children of this script, in a fresh temporary directory):

* ``memifd`` with three memif master ports in bridge domain 1 (learning on): ``memif1/0``
  for the sender, ``memif2/0`` for the receiver and ``memif3/0`` for a bystander that is
  never restarted (``--ports 2`` leaves it out).
* A sender peer (memif client) that sends Ethernet/IPv4/UDP frames at ``--rate`` to the
  receiver's MAC, carrying ``memif gen``'s sequence header (magic, stream << 56 | packet
  number, transmit stamp), and a receiver peer (memif client) that accounts for every frame.
  The receiver sends one frame when it connects, so the switch learns its MAC and the
  traffic is switched as known unicast.
* Every ``--restart-every`` seconds one peer is restarted, the receiver and the sender in
  turn; each peer is killed with SIGKILL on its 1st, 3rd, 5th... restart and stopped with
  SIGTERM on the others (a SIGTERM'd sender stops sending and waits until memifd took
  every frame from its ring).  A restart window opens when the signal is sent and closes
  when the new peer process is connected to memifd again.

Accounting (why the peers are written here and not ``memif gen``: a killed ``gen`` loses its
counters, and every ``gen`` run numbers its packets from 0, so a receiver cannot tell runs
apart).  Every packet gets a *global index*: sender run ``k`` sends stream ``k mod 256``
numbered from 0, and this script gives the run a base so that ``base + number`` continues
where the previous run's numbers stopped.  The processes share one memory-mapped file:
the sender writes each packet's send time under its index *before* publishing it, and its
counters after; the receiver maps (stream, number) to the index through the base table and
counts every arrival in a per-index counter (a count above 1 is a duplicate), plus a
running maximum for reordering.  All of it survives a SIGKILL: nothing a peer saw is lost
with it.  The arrays are rings (``--history`` seconds of packets); this script harvests
them ``--margin`` + 1.5 s behind the sender and clears what it read, so memory stays
bounded however long the soak runs.

A packet whose index never arrived is lost.  It is lost *inside* a restart window when the
restart explains it:

* receiver restart: the index is above the highest one the stopped receiver had counted,
  and it was sent between the window's start - ``--margin`` and its end + ``--margin`` (it
  reached the port while nobody was there, or sat in the dead receiver's ring);
* sender restart: the index belongs to the run that was stopped, is above the highest index
  of that run that arrived, and was sent after the window's start - ``--margin`` (the
  frames the dead sender left in its ring).

Every other lost packet is lost *outside* the windows; so is every hole below a highest
index (memifd consumed later frames and lost earlier ones) and every loss at the end of
the soak (the sender is stopped with SIGTERM and drains, then the receiver gets one more
second).  A duplicate is an index counted twice; a packet is reordered when it arrives
after a higher index (across receiver runs too); a *late* packet arrived after it had
been harvested as lost (it also counts as reordered).

memifd's own view comes from its CLI socket: ``show interface`` (per-port rx/tx, drops,
tx-error) and ``show errors`` (every drop with its node and reason), read every second,
at each window's start and ``--margin`` after its end (the drops *in* a window) and at
the end.  Frames memifd dropped are lost only if they are ours: the receiver's one
learning frame may be dropped too (with ``--ports 2``, before the sender is connected
there is no port to flood it to).  A reconnecting receiver usually costs a few drops
"ring full" on its port just before its window closes: memifd's side of the link is up
when the peer's CONNECT arrives, and the peer posts its receive buffers when memifd's
CONNECTED reaches it.

``--inject-faults`` checks the checker: the receiver then forgets a packet, counts one
twice or swaps two every 2000 packets, and the loss, duplicate and reordering verdicts
must fail.

Memory: memifd's VmRSS and open fds, from /proc, every ``--sample-every`` seconds.  Samples
taken at least 1 s after a restart window closed (both peers connected) are *steady*; the
verdict is ``flat`` when, after ``--warmup`` seconds, the steady RSS never rises more than
``--rss-bound`` MB above the first steady sample after the warm-up and the fd count never
rises above it.

Output: a live line on stderr every second, then a summary on stdout (``--json``: one JSON
object).  Exit status 0 when loss outside the windows is 0, there are no duplicates, no
reordering, no late arrivals, every restart completed and memory is flat; 1 when a verdict
failed; 2 when the soak could not run (memifd or a peer did not start).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

TX_MAC = "02:00:00:50:00:01"
RX_MAC = "02:00:00:50:00:02"
LEARN_ETHERTYPE = 0x88B5  # IEEE local experimental: the receiver's learning frame

# ----------------------------------------------------------------------------- shared state
ROWS = 256  # sender runs and receiver runs each cycle through this many rows
LAT_BINS = 256  # latency histogram: quarter octaves of nanoseconds

# header (int64)
H_N, H_HARVESTED, H_BY_OURS, H_BY_OTHER, H_BY_CONNECTED = range(5)
# sender run rows (int64): written by the sender, RXHIGH/RXPKTS by the receiver
T_BASE, T_CLAIMED, T_COMMITTED, T_RXHIGH, T_RXPKTS, T_RINGFULL, T_RXBACK, T_LAPWAIT = range(8)
# receiver run rows (int64)
R_PKTS, R_HIGH, R_FIRST, R_DUPS, R_REORD, R_LATE, R_INVALID, R_FOREIGN = range(8)
# times (float64, time.monotonic()): both kinds of rows
S_STARTED, S_CONNECTED, S_FIRST, S_LAST, S_STOPPING, S_DRAINED = range(6)


class Shared:
    """The state this script shares with its peers: one file, mapped by every process.

    ``send_time[g & mask]`` is packet ``g``'s send time, ``rx_count[g & mask]`` how many
    times it arrived (global index ``g``); the rest are per-run counters and times.
    """

    def __init__(self, path: str, n: int | None = None) -> None:
        if n is not None:
            if n & (n - 1):
                raise ValueError("ring size must be a power of two")
            size = self._layout(n)
            with open(path, "wb") as f:
                f.truncate(size)
        self.mm = np.memmap(path, np.uint8, "r+")
        n = int(self.mm[:8].view(np.int64)[0]) if n is None else n
        self._layout(n)
        sect = self._sections
        self.hdr = self._view(sect["hdr"], np.int64, (64,))
        self.tx_i = self._view(sect["tx_i"], np.int64, (ROWS, 8))
        self.tx_t = self._view(sect["tx_t"], np.float64, (ROWS, 8))
        self.rx_i = self._view(sect["rx_i"], np.int64, (ROWS, 8))
        self.rx_t = self._view(sect["rx_t"], np.float64, (ROWS, 8))
        self.lat = self._view(sect["lat"], np.int64, (LAT_BINS,))
        self.send_time = self._view(sect["send_time"], np.float64, (n,))
        self.rx_count = self._view(sect["rx_count"], np.uint16, (n,))
        self.n = n
        self.mask = n - 1
        if self.hdr[H_N] == 0:
            self.hdr[H_N] = n
            self.tx_i[:, T_BASE] = -1

    def _layout(self, n: int) -> int:
        sizes = [
            ("hdr", 64 * 8),
            ("tx_i", ROWS * 64),
            ("tx_t", ROWS * 64),
            ("rx_i", ROWS * 64),
            ("rx_t", ROWS * 64),
            ("lat", LAT_BINS * 8),
            ("send_time", n * 8),
            ("rx_count", n * 2),
        ]
        self._sections, off = {}, 0
        for name, size in sizes:
            self._sections[name] = off
            off += -(-size // 64) * 64
        return off

    def _view(self, off: int, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return self.mm[off : off + count].view(dtype).reshape(shape)


# ----------------------------------------------------------------------------- peers
class _Flag:
    """SIGTERM (and SIGINT) ask a peer to stop, or the soak itself to end early (it still
    reports)."""

    def __init__(self) -> None:
        self.set = False
        signal.signal(signal.SIGTERM, self._handler)
        signal.signal(signal.SIGINT, self._handler)

    def _handler(self, signum: int, frame: object) -> None:
        self.set = True


def _connect(socket_path: str, name: str, stop: _Flag, timeout: float = 15.0) -> tuple[Any, Any]:
    from memif import Socket

    sock = Socket(socket_path, app_name=name)
    iface = sock.create_interface(
        role="client", id=0, ring_size=1024, buffer_size=2048, reconnect_interval=0.05
    )
    end = time.monotonic() + timeout
    while not iface.connected and not stop.set and time.monotonic() < end:
        sock.poll(0.01)
    return sock, iface


class Sender:
    """One sender run: paced frames of stream ``row``, numbered from 0, base from the table."""

    def __init__(self, sh: Shared, row: int, rate: float, size: int, src: bytes, dst: bytes):
        from memif.tools.gen.frames import Frames

        self.sh, self.row, self.rate = sh, row, rate
        self.frames = Frames([size], True, src, dst)
        self.size = size
        self.base = int(sh.tx_i[row, T_BASE])
        self.committed = 0
        self.burst = 64
        self.tick = min(0.005, max(0.0005, 4 / rate))
        self.depth = max(float(self.burst), rate * 0.01)

    def run(self, sock: Any, iface: Any, stop: _Flag) -> int:
        from memif.tools.gen.frames import STREAM_SHIFT

        sh, row = self.sh, self.row
        q, rxq = iface.tx_queues[0], iface.rx_queues[0]
        primed = np.zeros(q.size, bool)
        template, width = self.frames.template, self.frames.max_size
        tokens, last = 0.0, time.monotonic()
        next_house = last
        while not stop.set:
            now = time.monotonic()
            tokens = min(self.depth, tokens + (now - last) * self.rate)
            last = now
            want = min(int(tokens), self.burst)
            if want:
                g0 = self.base + self.committed
                room = sh.n - (g0 - int(sh.hdr[H_HARVESTED])) - self.burst
                batch = q.alloc(min(want, max(room, 0)))
                m = batch.count
                if room <= 0:
                    sh.tx_i[row, T_LAPWAIT] += 1
                elif not m:
                    sh.tx_i[row, T_RINGFULL] += 1
                else:
                    idx = np.arange(g0, g0 + m, dtype=np.int64) & sh.mask
                    sh.send_time[idx] = now
                    sh.tx_i[row, T_CLAIMED] = self.committed + m
                    rows = batch.buffers
                    s = batch.start & q.ring.mask
                    if not primed[s : s + m].all():
                        rows[:m, :width] = template
                        primed[s : s + m] = True
                    seq = (row % 256) << STREAM_SHIFT | self.committed
                    self.frames.stamp(rows, m, seq, time.monotonic_ns())
                    q.tx_burst(batch, self.size)
                    self.committed += m
                    sh.tx_i[row, T_COMMITTED] = self.committed
                    if not sh.tx_t[row, S_FIRST]:
                        sh.tx_t[row, S_FIRST] = now
                    sh.tx_t[row, S_LAST] = now
                    tokens -= m
            back = rxq.rx_burst(256)  # frames the switch sends us (the learning frame)
            if len(back):
                sh.tx_i[row, T_RXBACK] += len(back)
                rxq.refill()
            if now >= next_house:
                next_house = now + 0.05
                sock.poll(0)
                if not iface.connected:
                    return 3
            ready, _, _ = select.select([rxq.fd], [], [], self.tick)
            if ready:
                rxq.clear_interrupt()
        sh.tx_t[row, S_STOPPING] = time.monotonic()
        end = time.monotonic() + 3.0
        while q.in_flight and iface.connected and time.monotonic() < end:
            sock.poll(0.002)
        sh.tx_t[row, S_DRAINED] = time.monotonic()
        return 0 if not q.in_flight else 4


class Receiver:
    """One receiver run: counts every frame under its global index (or as a bystander)."""

    def __init__(
        self, sh: Shared, row: int, prev_high: int, bystander: bool, inject: bool = False
    ) -> None:
        from memif.tools.gen.frames import HDR_LEN, MAGIC, SEQ_MASK, STREAM_SHIFT, Frames

        self.sh, self.row, self.by = sh, row, bystander
        f = Frames([64])
        self.end = f.hdr + HDR_LEN
        self.seq_off, self.ts_off, self.magic_off = f.seq_off, f.ts_off, f.hdr
        self.MAGIC, self.SEQ_MASK, self.SHIFT = MAGIC, SEQ_MASK, STREAM_SHIFT
        self.high = prev_high  # reordering continues across receiver runs
        self.inject = inject
        self.seen, self.next_fault, self.faults = 0, 2000, 0

    def _fault(self, g: np.ndarray, stream: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """--inject-faults: every 2000 packets, forget one, count one twice or swap two."""
        self.seen += len(g)
        if self.seen < self.next_fault:
            return g, stream
        kind = self.faults % 3
        if kind == 2 and len(g) < 2:
            return g, stream  # a swap needs two packets: try the next burst
        self.next_fault += 2000
        self.faults += 1
        if kind == 0:
            return g[1:], stream[1:]
        if kind == 1:
            return np.r_[g, g[-1:]], np.r_[stream, stream[-1:]]
        return g[::-1].copy(), stream[::-1].copy()

    def process(self, batch: Any) -> None:
        sh, r = self.sh, self.row
        n = len(batch)
        rows = batch.matrix
        if rows is None or rows.shape[1] < self.end:
            rows = batch.gather(self.end)
        a = self.magic_off
        ours = (rows[:, a : a + 4].view("<u4")[:, 0] == self.MAGIC) & (batch.lengths >= self.end)
        k = int(np.count_nonzero(ours))
        if self.by:
            sh.hdr[H_BY_OURS] += k
            sh.hdr[H_BY_OTHER] += n - k
            return
        if k < n:
            sh.rx_i[r, R_FOREIGN] += n - k
        if not k:
            return
        seq = rows[:, self.seq_off : self.seq_off + 8].view("<u8")[:, 0]
        ts = rows[:, self.ts_off : self.ts_off + 8].view("<i8")[:, 0]
        if k < n:
            seq, ts = seq[ours], ts[ours]
        lat = time.monotonic_ns() - ts
        np.clip(lat, 1, None, out=lat)
        bins = np.minimum((np.log2(lat) * 4).astype(np.intp), LAT_BINS - 1)
        sh.lat += np.bincount(bins, minlength=LAT_BINS)
        stream = (seq >> np.uint64(self.SHIFT)).astype(np.intp) % ROWS
        num = (seq & np.uint64(self.SEQ_MASK)).astype(np.int64)
        base, claimed = sh.tx_i[stream, T_BASE], sh.tx_i[stream, T_CLAIMED]
        valid = (base >= 0) & (num < claimed)
        g = base + num
        if not valid.all():
            sh.rx_i[r, R_INVALID] += int(np.count_nonzero(~valid))
            g, stream = g[valid], stream[valid]
        if self.inject and len(g):
            g, stream = self._fault(g, stream)
        late = g < int(sh.hdr[H_HARVESTED])  # already counted as lost: arrived far too late
        if late.any():
            sh.rx_i[r, R_LATE] += int(np.count_nonzero(late))
            sh.rx_i[r, R_REORD] += int(np.count_nonzero(late))
            g, stream = g[~late], stream[~late]
        if not len(g):
            return
        slots = g & sh.mask
        dup = sh.rx_count[slots] > 0
        if len(g) > 1 and not (g[1:] > g[:-1]).all():
            once = np.zeros(len(g), bool)
            once[np.unique(g, return_index=True)[1]] = True
            dup |= ~once
            np.add.at(sh.rx_count, slots, 1)
        else:
            sh.rx_count[slots] += 1
        new = g[~dup]
        if len(new):
            before = np.maximum.accumulate(np.concatenate(([self.high], new[:-1])))
            sh.rx_i[r, R_REORD] += int(np.count_nonzero(new < before))
            self.high = max(self.high, int(new.max()))
        sh.rx_i[r, R_DUPS] += int(np.count_nonzero(dup))
        sh.rx_i[r, R_PKTS] += len(g)
        sh.rx_i[r, R_HIGH] = self.high
        if sh.rx_i[r, R_FIRST] < 0:
            sh.rx_i[r, R_FIRST] = int(g[0])
        for s in np.unique(stream).tolist():
            sel = g[stream == s]
            sh.tx_i[s, T_RXPKTS] += len(sel)
            sh.tx_i[s, T_RXHIGH] = max(int(sh.tx_i[s, T_RXHIGH]), int(sel.max()))
        now = time.monotonic()
        if not sh.rx_t[r, S_FIRST]:
            sh.rx_t[r, S_FIRST] = now
        sh.rx_t[r, S_LAST] = now

    def run(self, sock: Any, iface: Any, stop: _Flag, learn: bytes | None) -> int:
        if learn is not None:
            iface.send([learn])
        rxq = iface.rx_queues[0]
        next_house = 0.0
        while not stop.set:
            batch = rxq.rx_burst(256)
            if len(batch):
                self.process(batch)
                rxq.refill()
                continue
            now = time.monotonic()
            if now >= next_house:
                next_house = now + 0.05
                sock.poll(0)
                if not iface.connected:
                    return 3
            ready, _, _ = select.select([rxq.fd], [], [], 0.02)
            if ready:
                rxq.clear_interrupt()
        return 0


def peer_main(argv: list[str]) -> int:
    """``soak.py _peer tx|rx|by ...``: one peer process (started by the soak itself)."""
    p = argparse.ArgumentParser(prog="soak.py _peer")
    p.add_argument("kind", choices=("tx", "rx", "by"))
    p.add_argument("--shm", required=True)
    p.add_argument("--row", type=int, default=0)
    p.add_argument("--socket", required=True)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--prev-high", type=int, default=-1)
    p.add_argument("--inject-faults", action="store_true")
    a = p.parse_args(argv)
    stop = _Flag()
    from memif import packet
    from memif.config import parse_mac

    sh = Shared(a.shm)
    times = sh.tx_t if a.kind == "tx" else sh.rx_t
    if a.kind != "by":
        times[a.row, S_STARTED] = time.monotonic()
    sock, iface = _connect(a.socket, f"soak-{a.kind}", stop)
    try:
        if not iface.connected:
            return 0 if stop.set else 2
        if a.kind != "by":
            times[a.row, S_CONNECTED] = time.monotonic()
        else:
            sh.hdr[H_BY_CONNECTED] = 1
        tx_mac, rx_mac = parse_mac(TX_MAC), parse_mac(RX_MAC)
        if a.kind == "tx":
            return Sender(sh, a.row, a.rate, a.size, tx_mac, rx_mac).run(sock, iface, stop)
        learn = None
        if a.kind == "rx":
            learn = packet.ethernet(tx_mac, rx_mac, LEARN_ETHERTYPE, b"soak receiver".ljust(46))
        rx = Receiver(sh, a.row, a.prev_high, a.kind == "by", a.inject_faults)
        return rx.run(sock, iface, stop, learn)
    finally:
        sock.close()


# ----------------------------------------------------------------------------- the soak
class SoakError(Exception):
    """The soak cannot go on (memifd or a peer failed to start or died)."""


@dataclass
class TxRun:
    """One sender process."""

    index: int
    row: int
    base: int
    proc: subprocess.Popen
    started: float
    signal: str | None = None
    exited: float | None = None
    code: int | None = None
    harvested: int = 0  # global index harvested up to
    snaps: deque = field(default_factory=deque)  # (time, committed)
    sent: int | None = None
    received: int = 0
    lost: int = 0
    lost_outside: int = 0


@dataclass
class RxRun:
    """One receiver process."""

    index: int
    row: int
    proc: subprocess.Popen
    started: float
    signal: str | None = None
    exited: float | None = None
    code: int | None = None
    high: int = -1


def _end(run: TxRun | RxRun) -> bool:
    """SIGTERM a peer still running at the end (SIGKILL after 10 s); True if it stopped."""
    run.signal = run.signal or "SIGTERM(end)"
    run.proc.send_signal(signal.SIGTERM)
    try:
        run.code = run.proc.wait(10)
        stopped = True
    except subprocess.TimeoutExpired:
        run.proc.kill()
        run.code = run.proc.wait()
        stopped = False
    run.exited = time.monotonic()
    return stopped


@dataclass
class Window:
    """One restart: from the signal to the new peer's connection."""

    peer: str
    signal: str
    start: float
    old_run: int
    exited: float | None = None
    end: float | None = None
    escalated: bool = False
    high: int = -1  # receiver: highest index the old receiver counted
    lost: int = 0
    lost_t: list[float] = field(default_factory=list)  # send times of first/last loss
    drops_start: int = 0  # memifd's drop count at the start
    drops: int | None = None  # memifd's drops from the start to the end + margin


def _proc(pid: int) -> tuple[int, int, int, float] | None:
    """(VmRSS kB, RssAnon kB, open fds, CPU seconds) of a process; None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    vals = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon"):
            vals[key] = int(rest.split()[0])
    fields = stat.rpartition(")")[2].split()  # utime and stime are fields 14 and 15
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return vals.get("VmRSS", 0), vals.get("RssAnon", 0), fds, cpu


class Soak:
    """The whole run: memifd, the peers, restarts, harvesting, sampling, the summary."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.a = args
        self.tmp = Path(tempfile.mkdtemp(prefix="memif-soak-"))
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        n = 1 << max(16, math.ceil(math.log2(max(1.0, args.rate * args.history))))
        self.sh = Shared(str(self.tmp / "shared.bin"), n)
        self.memifd: subprocess.Popen | None = None
        self.cli: Any = None
        self.bystander: subprocess.Popen | None = None
        self.tx: list[TxRun] = []
        self.rx: list[RxRun] = []
        self.windows: list[Window] = []
        self.t0 = 0.0
        self.lag = args.margin + 1.5
        self.lost = self.lost_outside = self.received = 0
        self.gaps_outside: list[dict[str, Any]] = []
        self.n_gaps_outside = 0
        self.samples: list[dict[str, Any]] = []
        self.switch: dict[str, Any] = {"interfaces": [], "errors": []}
        self.failures: list[str] = []
        self.interrupted = False
        self.memifd_exit: int | None = None
        self.load = [os.getloadavg()]

    # ------------------------------------------------------------------ processes
    def sock_path(self, port: int) -> str:
        return str(self.tmp / f"port{port}.sock")

    def start_memifd(self) -> None:
        ports = self.a.ports
        lines = [
            f"create memif socket id {i} filename {self.sock_path(i)}" for i in range(1, ports + 1)
        ]
        lines += [f"create interface memif id 0 socket-id {i} master" for i in range(1, ports + 1)]
        lines.append("create bridge-domain 1 learn 1")
        lines += [f"set interface l2 bridge memif{i}/0 1" for i in range(1, ports + 1)]
        lines += [f"set interface state memif{i}/0 up" for i in range(1, ports + 1)]
        conf = self.tmp / "memifd.conf"
        conf.write_text("# generated by scripts/soak.py\n" + "\n".join(lines) + "\n")
        cli = self.tmp / "cli.sock"
        with open(self.tmp / "memifd.err", "wb") as err:
            self.memifd = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "memif.daemon.main",
                    "-c",
                    str(conf),
                    "--cli-socket",
                    str(cli),
                    "--runtime-dir",
                    str(self.tmp / "run"),
                    "--log",
                    str(self.tmp / "memifd.log"),
                ],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        from memif.ctl.main import Client, CtlError

        end = time.monotonic() + 15
        while True:
            if self.memifd.poll() is not None:
                raise SoakError(f"memifd exited {self.memifd.returncode}: {self.log_tail()}")
            if cli.exists():
                with contextlib.suppress(CtlError):
                    self.cli = Client(str(cli), timeout=10)
                    break
            if time.monotonic() > end:
                raise SoakError(f"memifd did not open its CLI socket: {self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self) -> str:
        text = ""
        for name in ("memifd.log", "memifd.err"):
            with contextlib.suppress(OSError):
                text += (self.tmp / name).read_text()
        return " | ".join(text.strip().splitlines()[-5:])

    def spawn(self, kind: str, row: int, *extra: str) -> subprocess.Popen:
        port = {"tx": 1, "rx": 2, "by": 3}[kind]
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "_peer",
            kind,
            "--shm",
            str(self.tmp / "shared.bin"),
            "--row",
            str(row),
            "--socket",
            self.sock_path(port),
            *extra,
        ]
        with open(self.tmp / f"peer-{kind}.log", "ab") as log:
            return subprocess.Popen(
                cmd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def start_sender(self, now: float) -> TxRun:
        index = len(self.tx)
        row = index % ROWS
        if self.tx:
            prev = self.tx[-1]
            base = prev.base + int(self.sh.tx_i[prev.row, T_CLAIMED])
        else:
            base = 0
        sh = self.sh
        sh.tx_i[row] = 0
        sh.tx_t[row] = 0
        sh.tx_i[row, T_RXHIGH] = -1
        sh.tx_i[row, T_BASE] = base
        proc = self.spawn("tx", row, "--rate", str(self.a.rate), "--size", str(self.a.size))
        run = TxRun(index, row, base, proc, now, harvested=base)
        self.tx.append(run)
        return run

    def start_receiver(self, now: float) -> RxRun:
        index = len(self.rx)
        row = index % ROWS
        prev_high = self.rx[-1].high if self.rx else -1
        self.sh.rx_i[row] = 0
        self.sh.rx_t[row] = 0
        self.sh.rx_i[row, R_HIGH] = prev_high
        self.sh.rx_i[row, R_FIRST] = -1
        extra = ["--inject-faults"] if self.a.inject_faults else []
        proc = self.spawn("rx", row, "--prev-high", str(prev_high), *extra)
        run = RxRun(index, row, proc, now)
        self.rx.append(run)
        return run

    def wait_connected(self, times: np.ndarray, row: int, proc: subprocess.Popen, what: str):
        end = time.monotonic() + 20
        while not times[row, S_CONNECTED]:
            if proc.poll() is not None:
                raise SoakError(f"{what} exited {proc.returncode} before connecting")
            if time.monotonic() > end:
                raise SoakError(f"{what} did not connect to memifd in 20 s")
            time.sleep(0.02)
        return float(times[row, S_CONNECTED])

    # ------------------------------------------------------------------ CLI
    def query(self) -> None:
        """Refresh the switch's interface counters and error counters."""
        try:
            ifs = self.cli.request("show interface", want_json=True)
            errs = self.cli.request("show errors", want_json=True)
        except Exception as exc:  # CtlError, or anything the daemon's death brings
            self.failures.append(f"CLI: {exc}")
            raise SoakError(f"memifd's CLI failed: {exc}") from None
        keep = ("name", "state", "rx_packets", "tx_packets", "drops", "tx_errors")
        self.switch = {
            "interfaces": [{k: d.get(k) for k in keep} for d in ifs.get("data") or []],
            "errors": [
                {"node": e["node"], "error": e["error"], "reason": e["reason"], "count": e["count"]}
                for e in errs.get("data") or []
            ],
        }

    def switch_drops(self) -> int:
        """Every packet memifd dropped: each drop counts one error (tx errors included)."""
        return sum(e["count"] for e in self.switch["errors"])

    # ------------------------------------------------------------------ restarts
    def begin_restart(self, now: float) -> None:
        i = len(self.windows)
        peer = "receiver" if i % 2 == 0 else "sender"
        sig = signal.SIGKILL if (i // 2) % 2 == 0 else signal.SIGTERM
        run = self.rx[-1] if peer == "receiver" else self.tx[-1]
        self.query()
        self.close_drops(math.inf)  # the previous window's drop count, if still open
        run.signal = sig.name
        w = Window(peer, sig.name, time.monotonic(), run.index, drops_start=self.switch_drops())
        self.windows.append(w)
        run.proc.send_signal(sig)

    def close_drops(self, now: float) -> None:
        """Count memifd's drops of the last window once ``--margin`` after its end passed."""
        w = self.windows[-1] if self.windows else None
        if w is None or w.end is None or w.drops is not None or now < w.end + self.a.margin:
            return
        if now != math.inf:
            self.query()
        w.drops = self.switch_drops() - w.drops_start

    def step_restart(self, now: float) -> None:
        w = self.windows[-1]
        old = self.rx[w.old_run] if w.peer == "receiver" else self.tx[w.old_run]
        if w.exited is None:
            code = old.proc.poll()
            if code is None:
                if w.signal == "SIGTERM" and now - w.start > 5 and not w.escalated:
                    w.escalated = True
                    old.proc.kill()
                elif now - w.start > 15:
                    raise SoakError(f"{w.peer} pid {old.proc.pid} did not exit")
                return
            w.exited = old.exited = now
            old.code = code
            if w.peer == "receiver":
                old.high = w.high = int(self.sh.rx_i[old.row, R_HIGH])
                self.start_receiver(now)
            else:
                self.start_sender(now)
            return
        new = self.rx[-1] if w.peer == "receiver" else self.tx[-1]
        times = self.sh.rx_t if w.peer == "receiver" else self.sh.tx_t
        if times[new.row, S_CONNECTED]:
            w.end = float(times[new.row, S_CONNECTED])
        elif new.proc.poll() is not None:
            raise SoakError(f"new {w.peer} exited {new.proc.returncode} before connecting")
        elif now - w.exited > 20:
            raise SoakError(f"new {w.peer} did not connect in 20 s")

    def open_window(self) -> Window | None:
        return self.windows[-1] if self.windows and self.windows[-1].end is None else None

    # ------------------------------------------------------------------ harvesting
    def harvest(self, now: float, final: bool = False) -> None:
        """Count received/lost for every packet sent before ``now - lag`` (all if final)."""
        if self.open_window() and not final:
            return
        cutoff = math.inf if final else now - self.lag
        sh = self.sh
        for run in self.tx:
            done = run.exited is not None and (final or run.exited <= cutoff)
            if done:
                claimed = int(sh.tx_i[run.row, T_CLAIMED])
                if run.sent is None:  # published, or taken mid-publication by a SIGKILL
                    high = int(sh.tx_i[run.row, T_RXHIGH])
                    run.sent = max(int(sh.tx_i[run.row, T_COMMITTED]), high - run.base + 1)
                upto, clear_to = run.base + run.sent, run.base + claimed
            else:
                committed = None
                while run.snaps and run.snaps[0][0] <= cutoff:
                    committed = run.snaps.popleft()[1]
                if committed is None:
                    break
                run.snaps.appendleft((cutoff, committed))  # still valid for the next call
                upto = clear_to = run.base + committed
            if upto > run.harvested:
                self._count(run, run.harvested, upto)
            if clear_to > run.harvested:
                sh.rx_count[np.arange(run.harvested, clear_to) & sh.mask] = 0
                run.harvested = clear_to
                sh.hdr[H_HARVESTED] = clear_to
            if not done:
                break

    def _count(self, run: TxRun, lo: int, hi: int) -> None:
        sh = self.sh
        g = np.arange(lo, hi, dtype=np.int64)
        sh.hdr[H_HARVESTED] = hi  # first: a later arrival is then "late", not counted
        got = sh.rx_count[g & sh.mask] > 0
        n_got = int(np.count_nonzero(got))
        run.received += n_got
        self.received += n_got
        lost = g[~got]
        if not len(lost):
            return
        t = sh.send_time[lost & sh.mask]
        win = np.full(len(lost), -1)
        m = self.a.margin
        for wi, w in enumerate(self.windows):
            if w.end is None and w.exited is None:
                continue
            if w.peer == "receiver":
                end = w.end if w.end is not None else math.inf
                inside = (lost > w.high) & (t >= w.start - m) & (t <= end + m)
            elif w.old_run == run.index:
                high = int(sh.tx_i[run.row, T_RXHIGH])
                inside = (lost > high) & (t >= w.start - m)
            else:
                continue
            sel = (win < 0) & inside
            if sel.any():
                win[sel] = wi
                w.lost += int(np.count_nonzero(sel))
                tt = t[sel]
                lo_t, hi_t = float(tt.min()), float(tt.max())
                w.lost_t = (
                    [min(w.lost_t[0], lo_t), max(w.lost_t[1], hi_t)] if w.lost_t else [lo_t, hi_t]
                )
        out = lost[win < 0]
        self.lost += len(lost)
        run.lost += len(lost)
        if len(out):
            self.lost_outside += len(out)
            run.lost_outside += len(out)
            t_out = t[win < 0]
            breaks = np.flatnonzero(np.diff(out) != 1) + 1
            for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(out)], strict=True):
                self.n_gaps_outside += 1
                if len(self.gaps_outside) < 50:
                    self.gaps_outside.append(
                        {
                            "sender_run": run.index,
                            "first_index": int(out[a]) - run.base,
                            "packets": int(b - a),
                            "sent_at": round(float(t_out[a]) - self.t0, 4),
                            "sent_until": round(float(t_out[b - 1]) - self.t0, 4),
                        }
                    )

    # ------------------------------------------------------------------ sampling, live
    def sample(self, now: float, steady: bool) -> None:
        got = _proc(self.memifd.pid)
        if got is None:
            return
        rss, anon, fds, cpu = got
        self.samples.append(
            {
                "t": round(now - self.t0, 3),
                "rss_kb": rss,
                "anon_kb": anon,
                "fds": fds,
                "cpu_s": cpu,
                "steady": steady,
            }
        )

    def totals(self) -> dict[str, int]:
        sh = self.sh
        sent = sum(int(sh.tx_i[r.row, T_COMMITTED]) if r.sent is None else r.sent for r in self.tx)
        rows = [r.row for r in self.rx]
        col = sh.rx_i[rows] if rows else np.zeros((0, 8), np.int64)
        return {
            "sent": sent,
            "arrivals": int(col[:, R_PKTS].sum()),
            "duplicates": int(col[:, R_DUPS].sum()),
            "reordered": int(col[:, R_REORD].sum()),
            "late": int(col[:, R_LATE].sum()),
            "invalid": int(col[:, R_INVALID].sum()),
            "foreign": int(col[:, R_FOREIGN].sum()),
        }

    def live(self, now: float) -> None:
        if self.a.quiet:
            return
        t = self.totals()
        mem = self.samples[-1] if self.samples else None
        w = self.open_window()
        state = f"  [{w.peer} restart, {w.signal}]" if w else ""
        memtxt = f"rss {mem['rss_kb'] / 1024:.1f} MB fds {mem['fds']}" if mem else "rss -"
        line = (
            f"soak {now - self.t0:6.1f}/{self.a.duration:g}s  sent {t['sent']}  "
            f"rcvd {t['arrivals']}  lost {self.lost} (outside {self.lost_outside})  "
            f"dup {t['duplicates']} reord {t['reordered']}  sw-drops {self.switch_drops()}  "
            f"{memtxt}  restarts {len(self.windows)}{state}"
        )
        print(line, file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ main loop
    def run(self) -> None:
        a = self.a
        self.start_memifd()
        now = time.monotonic()
        if a.ports >= 3:  # first, so that the receiver's learning frame has somewhere to go
            self.bystander = self.spawn("by", 0)
            end = time.monotonic() + 20
            while not self.sh.hdr[H_BY_CONNECTED]:
                if self.bystander.poll() is not None or time.monotonic() > end:
                    raise SoakError("the bystander did not connect to memifd")
                time.sleep(0.02)
        rx = self.start_receiver(now)
        self.wait_connected(self.sh.rx_t, rx.row, rx.proc, "receiver")
        tx = self.start_sender(time.monotonic())
        self.t0 = self.wait_connected(self.sh.tx_t, tx.row, tx.proc, "sender")
        next_restart = self.t0 + a.restart_every if a.restart_every > 0 else math.inf
        next_live = next_sample = next_harvest = self.t0
        last_end = self.t0
        stopper = _Flag()
        while True:
            now = time.monotonic()
            if stopper.set:
                self.interrupted = True
                break
            if self.memifd.poll() is not None:
                raise SoakError(f"memifd exited {self.memifd.returncode}: {self.log_tail()}")
            w = self.open_window()
            for run, what in ((self.tx[-1], "sender"), (self.rx[-1], "receiver")):
                if run.signal is None and run.proc.poll() is not None:
                    raise SoakError(f"{what} exited {run.proc.returncode} unexpectedly")
            if self.bystander is not None and self.bystander.poll() is not None:
                raise SoakError(f"bystander exited {self.bystander.returncode} unexpectedly")
            cur = self.tx[-1]
            if cur.exited is None and cur.signal is None:
                cur.snaps.append((now, int(self.sh.tx_i[cur.row, T_COMMITTED])))
            if w is not None:
                self.step_restart(now)
                if w.end is not None:
                    last_end = now
            self.close_drops(now)
            elapsed = now - self.t0
            if w is None and elapsed >= a.duration:
                break
            if w is None and now >= next_restart and elapsed < a.duration:
                self.begin_restart(now)
                next_restart += a.restart_every
                next_restart = max(next_restart, now + 1.0)
            if now >= next_harvest:
                next_harvest = now + 0.5
                self.harvest(now)
            if now >= next_sample:
                next_sample = now + a.sample_every
                self.sample(now, self.open_window() is None and now - last_end >= 1.0)
            if now >= next_live:
                next_live += 1.0
                if next_live < now:
                    next_live = now + 1.0
                self.query()
                self.live(now)
            time.sleep(0.05)
        self.finish(last_end)

    def finish(self, last_end: float) -> None:
        """The end: a last memory sample, stop the sender (drain), then the rest."""
        now = time.monotonic()
        if self.open_window() is None:
            self.sample(now, now - last_end >= 1.0)
        self.query()
        self.close_drops(math.inf)
        tx = self.tx[-1]
        if tx.exited is None and not _end(tx):
            self.failures.append("the last sender did not stop on SIGTERM")
        time.sleep(1.0 if not self.interrupted else 0.2)  # frames still on their way
        for run in self.rx:
            if run.exited is None:
                _end(run)
                run.high = int(self.sh.rx_i[run.row, R_HIGH])
        self.harvest(time.monotonic(), final=True)
        self.query()
        if self.bystander is not None:
            self.bystander.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.bystander.wait(10)
        self.end = time.monotonic()
        self.load.append(os.getloadavg())

    def stop_all(self) -> None:
        """Stop whatever is still running (our own children only, by pid)."""
        procs = [r.proc for r in self.tx] + [r.proc for r in self.rx] + [self.bystander]
        for p in procs:
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        if self.cli is not None:
            self.cli.close()
        if self.memifd is not None and self.memifd.poll() is None:
            self.memifd.send_signal(signal.SIGTERM)
            try:
                self.memifd_exit = self.memifd.wait(10)
            except subprocess.TimeoutExpired:
                self.memifd.kill()
                self.memifd.wait()
                self.failures.append("memifd did not stop on SIGTERM")
        elif self.memifd is not None:
            self.memifd_exit = self.memifd.returncode

    def cleanup(self) -> None:
        if not self.a.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------------ the summary
    def memory(self) -> dict[str, Any]:
        a = self.a
        s = self.samples
        warm = [x for x in s if x["t"] >= a.warmup and x["steady"]]
        out: dict[str, Any] = {
            "samples": len(s),
            "steady_after_warmup": len(warm),
            "warmup_s": a.warmup,
            "rss_bound_mb": a.rss_bound,
            "fd_bound": a.fd_bound,
        }
        for key in ("rss_kb", "anon_kb", "fds"):
            vals = [x[key] for x in s]
            out[key] = {
                "first": vals[0] if vals else None,
                "last": vals[-1] if vals else None,
                "max": max(vals) if vals else None,
                "baseline": warm[0][key] if warm else None,
                "growth": max(x[key] for x in warm) - warm[0][key] if warm else None,
            }
        if len(warm) < 2:
            out["verdict"] = "unknown"
            out["why"] = "fewer than 2 steady samples after the warm-up"
        elif out["rss_kb"]["growth"] > a.rss_bound * 1024 or out["fds"]["growth"] > a.fd_bound:
            out["verdict"] = "growing"
        else:
            out["verdict"] = "flat"
        out["series"] = [[x["t"], x["rss_kb"], x["anon_kb"], x["fds"], int(x["steady"])] for x in s]
        return out

    def cpu_percent(self) -> float | None:
        """memifd's CPU use over the samples, in % of one core."""
        s = self.samples
        if len(s) < 2 or s[-1]["t"] <= s[0]["t"]:
            return None
        return round((s[-1]["cpu_s"] - s[0]["cpu_s"]) / (s[-1]["t"] - s[0]["t"]) * 100, 1)

    def latency(self) -> dict[str, float | None]:
        hist = self.sh.lat.copy()
        total = int(hist.sum())
        if not total:
            return {"samples": 0, "p50_us": None, "p99_us": None, "max_us": None}
        cum = np.cumsum(hist)

        def pct(p: float) -> float:
            b = int(np.searchsorted(cum, p / 100 * total))
            return round(2 ** ((b + 0.5) / 4) / 1000, 1)

        return {
            "samples": total,
            "p50_us": pct(50),
            "p99_us": pct(99),
            "p999_us": pct(99.9),
            "max_us": round(2 ** ((int(np.flatnonzero(hist)[-1]) + 1) / 4) / 1000, 1),
        }

    def summary(self) -> dict[str, Any]:
        a, sh, t0 = self.a, self.sh, self.t0
        t = self.totals()
        sent = t["sent"]
        windows = []
        for w in self.windows:
            windows.append(
                {
                    "peer": w.peer,
                    "signal": w.signal + (" then SIGKILL" if w.escalated else ""),
                    "start": round(w.start - t0, 3),
                    "exited": None if w.exited is None else round(w.exited - t0, 3),
                    "end": None if w.end is None else round(w.end - t0, 3),
                    "seconds": None if w.end is None else round(w.end - w.start, 3),
                    "lost": w.lost,
                    "switch_dropped": w.drops,
                    "lost_sent_from": round(w.lost_t[0] - w.start, 4) if w.lost_t else None,
                    "lost_sent_until": round(w.lost_t[1] - w.start, 4) if w.lost_t else None,
                }
            )
        ifs = {d["name"]: d for d in self.switch["interfaces"]}
        txp, rxp = ifs.get("memif1/0", {}), ifs.get("memif2/0", {})
        runs = []
        for r in self.tx:
            runs.append(
                {
                    "run": r.index,
                    "stream": r.row % 256,
                    "ended_by": r.signal,
                    "exit": r.code,
                    "sent": r.sent,
                    "received": r.received,
                    "lost": r.lost,
                    "lost_outside": r.lost_outside,
                    "ring_full": int(sh.tx_i[r.row, T_RINGFULL]),
                    "lap_waits": int(sh.tx_i[r.row, T_LAPWAIT]),
                }
            )
        rx_runs = [
            {
                "run": r.index,
                "ended_by": r.signal,
                "exit": r.code,
                "arrivals": int(sh.rx_i[r.row, R_PKTS]),
            }
            for r in self.rx
        ]
        in_windows = sum(w.drops or 0 for w in self.windows)
        mem = self.memory()
        completed = all(w.end is not None for w in self.windows)
        verdicts = {
            "loss_outside_windows": self.lost_outside == 0,
            "no_duplicates": t["duplicates"] == 0,
            "no_reordering": t["reordered"] == 0 and t["late"] == 0,
            "memory_flat": mem["verdict"] == "flat",
            "restarts_completed": completed and not self.interrupted,
            "traffic": self.received > 0 and t["invalid"] == 0,
        }
        seconds = self.end - t0
        out = {
            "config": {
                "duration": a.duration,
                "restart_every": a.restart_every,
                "rate": a.rate,
                "size": a.size,
                "ports": a.ports,
                "margin": a.margin,
                "warmup": a.warmup,
                "inject_faults": a.inject_faults,
            },
            "seconds": round(seconds, 3),
            "interrupted": self.interrupted,
            "load_average": {
                "start": [round(x, 2) for x in self.load[0]],
                "end": [round(x, 2) for x in self.load[-1]],
            },
            "packets": {
                "sent": sent,
                "received": self.received,
                "lost": self.lost,
                "lost_in_windows": self.lost - self.lost_outside,
                "lost_outside_windows": self.lost_outside,
                "duplicates": t["duplicates"],
                "reordered": t["reordered"],
                "late": t["late"],
                "invalid": t["invalid"],
                "foreign": t["foreign"],
                "rate_pps": round(sent / seconds, 1) if seconds > 0 else None,
            },
            "path": {
                "switch_rx_from_sender": txp.get("rx_packets"),
                "not_taken_by_switch": None
                if txp.get("rx_packets") is None
                else sent - txp["rx_packets"],
                "switch_tx_to_receiver": rxp.get("tx_packets"),
                "not_counted_by_receiver": None
                if rxp.get("tx_packets") is None
                else rxp["tx_packets"] - t["arrivals"],
                "bystander_ours": int(sh.hdr[H_BY_OURS]),
                "bystander_other": int(sh.hdr[H_BY_OTHER]),
            },
            "switch": {
                "dropped": self.switch_drops(),
                "dropped_in_windows": in_windows,
                "dropped_outside_windows": self.switch_drops() - in_windows,
                "errors": self.switch["errors"],
                "interfaces": self.switch["interfaces"],
            },
            "latency": self.latency(),
            "windows": windows,
            "gaps_outside_windows": self.gaps_outside,
            "gaps_outside_windows_total": self.n_gaps_outside,
            "sender_runs": runs,
            "receiver_runs": rx_runs,
            "memory": mem,
            "memifd_exit": self.memifd_exit,
            "memifd_cpu_percent": self.cpu_percent(),
            "failures": self.failures,
            "verdicts": verdicts,
            "ok": all(verdicts.values()) and not self.failures,
        }
        return out


def format_summary(s: dict[str, Any]) -> str:
    """The human summary."""
    p, c = s["packets"], s["config"]
    mem, lat = s["memory"], s["latency"]
    la = s["load_average"]
    lines = [
        f"soak: {s['seconds']:.1f} s at {c['rate']:g} pps ({c['size']} B), "
        + (f"restart every {c['restart_every']:g} s" if c["restart_every"] else "no restarts")
        + f", {c['ports']} ports"
        + ("  INTERRUPTED" if s["interrupted"] else ""),
        f"  load average: start {la['start']}  end {la['end']}",
        f"  packets: sent {p['sent']}  received {p['received']}  lost {p['lost']} "
        f"(in windows {p['lost_in_windows']}, outside {p['lost_outside_windows']})  "
        f"duplicates {p['duplicates']}  reordered {p['reordered']}  late {p['late']}",
        f"  path: sender->switch {s['path']['switch_rx_from_sender']} "
        f"(not taken {s['path']['not_taken_by_switch']}), switch->receiver "
        f"{s['path']['switch_tx_to_receiver']} (not counted "
        f"{s['path']['not_counted_by_receiver']}), bystander got "
        f"{s['path']['bystander_ours']} of ours",
        f"  switch dropped {s['switch']['dropped']} (in windows "
        f"{s['switch']['dropped_in_windows']}, outside {s['switch']['dropped_outside_windows']}):",
    ]
    for e in s["switch"]["errors"]:
        lines.append(f"    {e['count']:>8}  {e['node']:<20} {e['reason']}")
    for d in s["switch"]["interfaces"]:
        if d["drops"] or d["tx_errors"]:
            lines.append(f"    {d['name']}: drops {d['drops']}  tx-error {d['tx_errors']}")
    if lat["samples"]:
        lines.append(
            f"  latency (one-way): p50 {lat['p50_us']} us  p99 {lat['p99_us']} us  "
            f"p99.9 {lat['p999_us']} us  max <{lat['max_us']} us"
        )
    lines.append(f"  restart windows ({len(s['windows'])}):")
    for w in s["windows"]:
        lines.append(
            f"    {w['peer']:<8} {w['signal']:<8} at {w['start']:8.3f} s  down "
            f"{w['seconds'] if w['seconds'] is not None else '?'} s  lost {w['lost']}  "
            f"switch dropped {w['switch_dropped']}"
        )
    for g in s["gaps_outside_windows"][:10]:
        lines.append(
            f"  LOST OUTSIDE: run {g['sender_run']} packets {g['first_index']}.. "
            f"({g['packets']}) sent at {g['sent_at']} s"
        )
    r, f = mem["rss_kb"], mem["fds"]

    def mb(v: int | None) -> str:
        return "-" if v is None else f"{v / 1024:.1f}"

    lines.append(
        f"  memifd memory: RSS first {mb(r['first'])} last {mb(r['last'])} max {mb(r['max'])} MB, "
        f"growth after warm-up {mb(r['growth'])} MB (anonymous {mb(mem['anon_kb']['growth'])} "
        f"MB); fds first {f['first']} last {f['last']} "
        f"max {f['max']} growth {f['growth']}: {mem['verdict']}"
    )
    lines.append(
        f"  memifd: CPU {s['memifd_cpu_percent']} % of one core, exit status {s['memifd_exit']}"
    )
    for x in s["failures"]:
        lines.append(f"  FAILURE: {x}")
    v = s["verdicts"]
    lines.append("  verdicts: " + "  ".join(f"{k} {'ok' if ok else 'FAIL'}" for k, ok in v.items()))
    lines.append("PASS" if s["ok"] else "FAIL")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="soak.py",
        description="Soak memifd: traffic through a bridge for a long time with periodic peer "
        "restarts; report sent/received/dropped/lost, loss outside the restart windows, "
        "duplicates, reordering and memifd's memory.",
        epilog="Run with PYTHONPATH=src (or an installed memif).  The module docstring "
        "(scripts/soak.py) explains how loss is attributed to restart windows.  Exit status: "
        "0 all verdicts ok, 1 a verdict failed, 2 the soak could not run.",
    )
    p.add_argument(
        "--duration", type=float, default=60.0, metavar="S", help="seconds of traffic (default 60)"
    )
    p.add_argument(
        "--restart-every",
        type=float,
        default=15.0,
        metavar="S",
        help="restart a peer every S seconds, receiver and sender in turn; 0: never (default 15)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=5000.0,
        metavar="PPS",
        help="packets per second, below the switch's capacity (default 5000)",
    )
    p.add_argument(
        "--size", type=int, default=64, metavar="BYTES", help="frame size, 62..2048 (default 64)"
    )
    p.add_argument(
        "--ports",
        type=int,
        choices=(2, 3),
        default=3,
        help="memif ports in the bridge: 3 adds a bystander peer (default 3)",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=0.5,
        metavar="S",
        help="slack around a restart window when attributing loss (default 0.5)",
    )
    p.add_argument(
        "--sample-every",
        type=float,
        default=1.0,
        metavar="S",
        help="sample memifd's RSS and fds every S seconds (default 1)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=None,
        metavar="S",
        help="memory samples before this are not judged (default: "
        "min(2 * restart-every + 1, duration / 2))",
    )
    p.add_argument(
        "--rss-bound",
        type=float,
        default=5.0,
        metavar="MB",
        help="largest RSS growth after the warm-up still called flat (default 5)",
    )
    p.add_argument(
        "--fd-bound",
        type=int,
        default=0,
        metavar="N",
        help="largest fd growth after the warm-up still called flat (default 0)",
    )
    p.add_argument(
        "--history",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds of packets the shared rings hold (default 30)",
    )
    p.add_argument(
        "--inject-faults",
        action="store_true",
        help="self-check: the receiver forgets a packet, counts one twice or swaps "
        "two every 2000 packets, so the verdicts must fail",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--quiet", "-q", action="store_true", help="no live line on stderr")
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary directory (memifd's log, peers' logs)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_peer"]:
        return peer_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.warmup is None:
        args.warmup = min(2 * args.restart_every + 1, args.duration / 2)
    if not 62 <= args.size <= 2048:
        print("soak.py: --size must be 62..2048", file=sys.stderr)
        return 2
    if args.rate <= 0 or args.duration <= 0 or args.restart_every < 0:
        print("soak.py: --rate and --duration must be > 0, --restart-every >= 0", file=sys.stderr)
        return 2
    if str(SRC) not in sys.path:
        try:
            import memif  # noqa: F401
        except ImportError:
            sys.path.insert(0, str(SRC))
    soak = Soak(args)
    status = 0
    try:
        soak.run()
    except SoakError as exc:
        soak.failures.append(str(exc))
        status = 2
        if not soak.a.quiet:
            print(f"soak.py: {exc}", file=sys.stderr)
    finally:
        soak.stop_all()
    if status == 2 and not soak.t0:
        if soak.a.keep:
            print(f"soak.py: kept {soak.tmp}", file=sys.stderr)
        soak.cleanup()
        return 2
    if not hasattr(soak, "end"):
        soak.end = time.monotonic()
        soak.load.append(os.getloadavg())
        with contextlib.suppress(Exception):
            soak.harvest(soak.end, final=True)
    summary = soak.summary()
    if args.json:
        print(json.dumps(summary), flush=True)
    else:
        print(format_summary(summary), flush=True)
    if args.keep:
        print(f"soak.py: kept {soak.tmp}", file=sys.stderr)
    soak.cleanup()
    if status:
        return status
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
