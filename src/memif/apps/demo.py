"""``memif demo``: two processes exchange traffic over memif, with live counters.

The command starts a second Python process (this module in its hidden ``--peer``
mode) that listens on a fresh abstract socket as the **server** and echoes every
frame back with its MAC addresses swapped.  This process connects as the **client**,
sends a stream of sequence-numbered Ethernet frames of mixed sizes (a 9000-byte
jumbo frame every 32nd, chained over 2048-byte buffers) and checks every frame
that comes back: length, addresses, sequence order and every payload byte.

Both sides move whole bursts with numpy: frames are copied out of a prebuilt bank
of segments into the ring's buffers, echoed buffer by buffer, and compared in
groups of equal length.  Each peer polls its receive ring while there is work
and sleeps on the ring's eventfd (interrupt mode) when there is none.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .. import testing, transport, wire
from ..config import InterfaceConfig
from ..errors import ConfigError, MemifError
from ..interface import Interface
from ..queue import RxBatch, RxQueue, TxQueue, strided_view
from ..sock import Socket
from .common import LiveLine

#: Frame sizes, repeated in this order (frame ``seq`` has size ``SIZES[seq % 32]``).
SIZES = (64, 128, 64, 256, 64, 512, 64, 1024, 64, 1514, 64, 128, 64, 256, 64, 576) + (
    64,
    128,
    64,
    256,
    64,
    512,
    64,
    1024,
    64,
    1514,
    64,
    128,
    64,
    256,
    1514,
    9000,
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

EPILOG = """\
examples:
  memif demo                     5 seconds of traffic, a live line, a summary
  memif demo --duration 30       run longer (Ctrl-C stops early and still summarises)
  memif demo --json              the summary as one JSON object on stdout

The exit status is 0 only when frames flowed and every one came back intact and in
order: nothing lost, nothing mismatched, no errors counted on either side.
"""


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
    """``(segments, width)`` rows of every received buffer: a zero-copy view if possible."""
    regions = batch.seg_region
    offsets = batch.seg_offset
    if len(offsets) == 0:
        return np.empty((0, width), np.uint8)
    r0 = int(regions[0])
    if (regions == r0).all():
        arr = iface.regions[r0].array
        view = strided_view(arr, offsets, width)
        if view is not None:
            return view
        # A burst that crossed the ring's end: evenly spaced runs, glued together.
        d = np.diff(offsets.astype(np.int64))
        values, counts = np.unique(d, return_counts=True)
        cuts = np.flatnonzero(d != values[counts.argmax()]) + 1
        if len(cuts) < 4:
            parts = [strided_view(arr, part, width) for part in np.split(offsets, cuts)]
            if all(p is not None for p in parts):
                return np.concatenate(parts)
    out = np.zeros((len(offsets), width), np.uint8)
    for k in range(len(offsets)):
        seg = iface.regions[int(regions[k])].array
        off, n = int(offsets[k]), min(int(batch.seg_length[k]), width)
        out[k, :n] = seg[off : off + n]
    return out


# ---------------------------------------------------------------------- client
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
        return self.iface.rx_queues[0]

    @property
    def txq(self) -> TxQueue:
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
        bufs = tx.buffers
        if bufs is not None:
            copy_rows(bufs, bank.rows[segidx], lengths)
            bufs[starts[:fit], SEQ_AT : SEQ_AT + 4] = stamps
        else:  # buffers not evenly spaced: slot by slot
            for j in range(nseg):
                tx.buffer(j)[: lengths[j]] = bank.rows[segidx[j], : lengths[j]]
            for f in range(fit):
                tx.buffer(int(starts[f]))[SEQ_AT : SEQ_AT + 4] = stamps[f]
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
        n, nseg = batch.count, len(batch.seg_length)
        first = np.arange(n) if batch.first is None else batch.first
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
        out: dict[str, int] = {}
        for q in (*self.iface.rx_queues, *self.iface.tx_queues):
            for name, v in q.stats.errors.items():
                if v:
                    out[name] = out.get(name, 0) + v
        return out


# ---------------------------------------------------------------------- server
class Echo:
    """The echo loop of the server process: every frame back, MAC addresses swapped.

    A received burst is held (not refilled) until every frame of it went out, so a
    full transmit ring slows the client down instead of dropping anything.
    """

    def __init__(self, iface: Interface) -> None:
        self.iface = iface
        self.rxq = iface.rx_queues[0]
        self.txq = iface.tx_queues[0]
        self.batch: RxBatch | None = None
        self.rows: np.ndarray | None = None
        self.next = 0
        self.packets = 0
        self.bytes = 0

    @property
    def busy(self) -> bool:
        """True while part of a burst waits for room in the transmit ring."""
        return self.batch is not None

    def step(self) -> int:
        """Echo what can be echoed now; returns how many frames went out."""
        if self.batch is None:
            batch = self.rxq.rx_burst(BURST)
            if not batch.count:
                return 0
            self._hold(batch)
        sent = self._send()
        if self.next == self.batch.count:
            self.batch = self.rows = None
            self.rxq.refill()
        return sent

    def _hold(self, batch: RxBatch) -> None:
        self.batch = batch
        n, nseg = batch.count, len(batch.seg_length)
        self.first = np.arange(n) if batch.first is None else batch.first.astype(np.int64)
        self.ends = np.append(self.first[1:], nseg)
        self.seg_len = batch.seg_length
        self.rows = segment_rows(self.iface, batch, int(batch.seg_length.max()))
        self.next = 0

    def _send(self) -> int:
        txq, batch, i = self.txq, self.batch, self.next
        a = int(self.first[i])
        total = len(self.seg_len) - a
        free = txq.free_slots()
        if free == 0:
            return 0
        tx = txq.alloc(min(total, free))
        if tx.count and (tx.buffers is None or int(self.seg_len[a:].max()) > tx.capacity):
            return self._send_one(i)
        fit = int(np.searchsorted(self.ends[i:] - a, tx.count, side="right"))
        if fit == 0:
            return self._send_one(i) if tx.count else 0  # a chain across the ring's end
        b = int(self.ends[i + fit - 1])
        lengths = self.seg_len[a:b]
        dst = tx.buffers
        copy_rows(dst, self.rows[a:b], lengths)
        heads = self.first[i : i + fit] - a
        mac = dst[heads, :12].copy()
        dst[heads, :6] = mac[:, 6:12]
        dst[heads, 6:12] = mac[:, :6]
        flags = np.full(b - a, wire.DESC_FLAG_NEXT, np.uint8)
        flags[self.ends[i : i + fit] - a - 1] = 0
        txq.tx_burst(tx, lengths, b - a, flags)
        self.next = i + fit
        self.packets += fit
        self.bytes += int(batch.lengths[i : i + fit].sum())
        return fit

    def _send_one(self, i: int) -> int:
        """One frame on the copying path (a chain across the ring's end, odd buffers)."""
        frame = np.array(self.batch[i])
        frame[:6], frame[6:12] = frame[6:12].copy(), frame[:6].copy()
        cap = max(self.txq.alloc(1).capacity, 1)
        if self.txq.free_slots() < -(-len(frame) // cap) or not self.txq.send([frame]):
            return 0
        self.next = i + 1
        self.packets += 1
        self.bytes += len(frame)
        return 1


def _stdin_closed(fd: int) -> bool:
    """True once the parent closed our stdin (or died)."""
    try:
        ready, _, _ = select.select([fd], [], [], 0)
        return bool(ready) and not os.read(fd, 4096)
    except OSError:
        return True


def run_peer(args: argparse.Namespace) -> int:
    """The hidden ``--peer`` mode: the echo server, until stdin closes or the client leaves."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    stop: list[str] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append("terminated"))
    stdin = sys.stdin.fileno()
    result: dict[str, Any] = {"pid": os.getpid(), "echoed_packets": 0, "echoed_bytes": 0}
    with Socket(args.socket, app_name="memif-demo-server") as sock:
        iface = sock.create_interface(
            role="server",
            id=0,
            ring_size=args.ring_size,
            buffer_size=args.buffer_size,
            polling=True,
        )
        end = time.monotonic() + args.connect_timeout
        while not iface.connected and not stop:
            ready, _, _ = select.select([sock.fileno(), stdin], [], [], 0.1)
            if stdin in ready and _stdin_closed(stdin):
                return 0
            sock.poll(0)
            if time.monotonic() > end:
                print("memif demo --peer: no client connected", file=sys.stderr)
                return 1
        echo = Echo(iface)
        rxq = iface.rx_queues[0]
        next_house = busy_at = time.monotonic()
        while not stop:
            now = time.monotonic()
            if echo.step():
                busy_at = now
            if now >= next_house or now - busy_at > SPIN:
                next_house = now + HOUSEKEEPING
                sock.poll(0)
                if not iface.connected or _stdin_closed(stdin):
                    break
                if now - busy_at > SPIN:
                    _sleep(rxq, [sock.fileno(), stdin], 0.0005 if echo.busy else 0.1)
        result.update(
            echoed_packets=echo.packets,
            echoed_bytes=echo.bytes,
            errors=_queue_errors(iface),
        )
    print(json.dumps(result), flush=True)
    return 0


def _sleep(rxq: RxQueue, fds: list[int], timeout: float) -> None:
    """Sleep on the receive eventfd (interrupt mode) and ``fds`` until one is readable."""
    rxq.polling = False
    try:
        rxq.clear_interrupt()
        if rxq.pending():
            return
        ready, _, _ = select.select([rxq.fd, *fds], [], [], timeout)
        if rxq.fd in ready:
            rxq.clear_interrupt()
    finally:
        rxq.polling = True


def _queue_errors(iface: Interface) -> dict[str, int]:
    out: dict[str, int] = {}
    for q in (*iface.rx_queues, *iface.tx_queues):
        for name, v in q.stats.errors.items():
            if v:
                out[name] = out.get(name, 0) + v
    return out


# ---------------------------------------------------------------------- the command
class DemoError(Exception):
    """The demo could not run (the peer did not start, or left)."""


def _peer_env() -> dict[str, str]:
    """The environment for the server process: it must import this very package."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    paths = [root, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


class Peer:
    """The server process: started, watched, stopped, its report read."""

    def __init__(self, args: argparse.Namespace, name: str) -> None:
        # Closed in stop(); unlinked from the start, so nothing is left behind.
        self.out = tempfile.TemporaryFile()  # noqa: SIM115
        self.err = tempfile.TemporaryFile()  # noqa: SIM115
        cmd = [
            sys.executable,
            "-m",
            "memif.cli",
            "demo",
            "--peer",
            "--socket",
            name,
            "--ring-size",
            str(args.ring_size),
            "--buffer-size",
            str(args.buffer_size),
            "--connect-timeout",
            str(args.connect_timeout),
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=self.out,
            stderr=self.err,
            env=_peer_env(),
            start_new_session=True,  # Ctrl-C reaches us only; we stop the peer
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check(self) -> None:
        """Raise DemoError if the server process has exited."""
        if self.proc.poll() is not None:
            raise DemoError(
                f"the server process exited with status {self.proc.returncode}"
                + self._stderr_tail()
            )

    def _stderr_tail(self) -> str:
        self.err.seek(0)
        lines = self.err.read().decode(errors="replace").strip().splitlines()
        return (": " + lines[-1]) if lines else ""

    def stop(self) -> dict[str, Any]:
        """Close its stdin (its signal to stop), wait, kill if needed; its report or {}."""
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.seek(0)
        report: dict[str, Any] = {}
        for line in self.out.read().decode(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                report = json.loads(line)
        self.out.close()
        self.err.close()
        return report


def _rate_line(elapsed: float, c: Counters, mpps: float, gbps: float, errors: int) -> str:
    return (
        f"{elapsed:5.1f} s  tx {c.tx_packets:,}  rx {c.rx_packets:,}  "
        f"{mpps:.3f} Mpps  {gbps:.2f} Gbit/s  lost {c.gaps:,}  errors {errors:,}"
    )


class StopRequest:
    """SIGINT/SIGTERM handler: the first signal asks the loops to stop cleanly
    (no more frames sent, those in flight collected), a second one interrupts."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None

    def __call__(self, signum: int, frame: object) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum

    @contextlib.contextmanager
    def installed(self) -> Any:
        """Handle SIGINT and SIGTERM for the duration of the block."""
        old = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)


def run_demo(args: argparse.Namespace) -> int:
    """The client process: start the server, send, check, report."""
    name = args.socket or testing.unique_name("memif-demo")
    _check_args(args, name)
    live = LiveLine(sys.stderr if args.json else sys.stdout)
    stop = StopRequest()
    error = ""
    client: Client | None = None
    started = ended = time.monotonic()
    sock: Socket | None = None
    with stop.installed():
        peer = Peer(args, name)
        try:
            sock = Socket(name, app_name="memif-demo-client")
            iface = sock.create_interface(
                role="client",
                id=0,
                ring_size=args.ring_size,
                buffer_size=args.buffer_size,
                reconnect_interval=0.05,
                polling=True,
            )
            end = time.monotonic() + args.connect_timeout
            while not iface.connected and not stop:
                peer.check()
                if time.monotonic() > end:
                    raise DemoError(f"no connection to the server after {args.connect_timeout:g} s")
                sock.poll(0.02)
            if not stop:
                if not args.json:
                    print(
                        f"memif demo: client pid {os.getpid()} <-> server pid {peer.pid} "
                        f"over {name}, {args.ring_size}-slot rings of "
                        f"{args.buffer_size}-byte buffers",
                        flush=True,
                    )
                client = Client(iface, args.buffer_size)
                started = time.monotonic()
                ended = _traffic(args, sock, iface, client, peer, live, started, stop)
        except DemoError as exc:
            error = str(exc)
            ended = time.monotonic()
        except KeyboardInterrupt:  # a second Ctrl-C: no more waiting
            ended = time.monotonic()
        finally:
            live.close()
            if sock is not None:
                sock.close()
            peer_report = peer.stop()
    interrupted = bool(stop)
    summary = _summary(client, peer_report, ended - started, name, peer.pid, interrupted, error)
    if args.json:
        print(json.dumps(summary), flush=True)
    else:
        _print_summary(summary)
    if interrupted:
        return 130
    return 0 if summary["ok"] else 1


def _check_args(args: argparse.Namespace, name: str) -> None:
    """Refuse bad options before starting the server process (ConfigError)."""
    transport.parse_address(name)
    InterfaceConfig(ring_size=args.ring_size, buffer_size=args.buffer_size).check()
    longest = -(-max(SIZES) // args.buffer_size)
    if args.ring_size < 2 * longest:
        raise ConfigError(
            f"a {max(SIZES)}-byte frame takes {longest} buffers of {args.buffer_size} bytes: "
            f"use a ring of at least {2 * longest} slots"
        )


def _traffic(
    args: argparse.Namespace,
    sock: Socket,
    iface: Interface,
    client: Client,
    peer: Peer,
    live: LiveLine,
    started: float,
    stop: StopRequest,
) -> float:
    """Send and check for ``args.duration`` seconds (or until ``stop``), then drain.

    Returns the time the traffic ended.
    """
    stop_at = started + args.duration
    next_house = started + HOUSEKEEPING
    last_t, last_rx, last_bytes = started, 0, 0
    busy_at = started
    c = client.c
    while True:
        now = time.monotonic()
        sending = now < stop_at and not stop
        if client.receive() + (client.send() if sending else 0):
            busy_at = now
        idle = now - busy_at > SPIN
        if now >= next_house or idle:
            next_house = now + HOUSEKEEPING
            sock.poll(0)
            peer.check()
            if not iface.connected:
                raise DemoError("the server disconnected: " + (iface.remote_disc_reason or "?"))
            dt = now - last_t
            if dt >= (0.2 if live.tty else 1.0):
                mpps = (c.rx_packets - last_rx) / dt / 1e6
                gbps = (c.rx_bytes - last_bytes) * 8 / dt / 1e9
                errors = c.mismatches + sum(client.errors().values())
                live.update(_rate_line(now - started, c, mpps, gbps, errors))
                last_t, last_rx, last_bytes = now, c.rx_packets, c.rx_bytes
            if not sending:
                _drain(sock, client, 2.0)
                end = time.monotonic()
                errors = c.mismatches + sum(client.errors().values())
                mpps = c.rx_packets / (end - started) / 1e6
                gbps = c.rx_bytes * 8 / (end - started) / 1e9
                if live.tty:  # the final figures, in place
                    live.update(_rate_line(end - started, c, mpps, gbps, errors), force=True)
                return end
            if idle:
                _sleep(client.rxq, [sock.fileno()], 0.01)


def _drain(sock: Socket, client: Client, patience: float) -> None:
    """Receive what is still in flight; give up ``patience`` s after the last frame."""
    c = client.c
    last = time.monotonic()
    while c.rx_packets + c.gaps < c.tx_packets and client.iface.connected:
        if client.receive():
            last = time.monotonic()
        elif time.monotonic() - last > patience:
            break
        else:
            _sleep(client.rxq, [sock.fileno()], 0.01)
            sock.poll(0)


def _summary(
    client: Client | None,
    peer: dict[str, Any],
    elapsed: float,
    name: str,
    peer_pid: int,
    interrupted: bool,
    error: str,
) -> dict[str, Any]:
    c = client.c if client is not None else Counters()
    errors = dict(client.errors()) if client is not None else {}
    for k, v in peer.get("errors", {}).items():
        errors["server_" + k] = v
    lost = c.tx_packets - c.rx_packets
    elapsed = max(elapsed, 1e-9)
    ok = (
        not error
        and c.rx_packets > 0
        and lost == 0
        and c.mismatches == 0
        and not errors
        and peer.get("echoed_packets", -1) == c.tx_packets
    )
    out = asdict(c)
    for k in ("next_seq", "gaps", "first_bad"):
        out.pop(k)
    out.update(
        packets=c.rx_packets,
        lost=lost,
        errors=errors,
        error_count=sum(errors.values()),
        duration=round(elapsed, 3),
        mpps=round(c.rx_packets / elapsed / 1e6, 4),
        gbps=round(c.rx_bytes * 8 / elapsed / 1e9, 3),
        server_echoed=peer.get("echoed_packets"),
        socket=name,
        client_pid=os.getpid(),
        server_pid=peer_pid,
        interrupted=interrupted,
        ok=ok,
    )
    if c.first_bad:
        out["first_mismatch"] = c.first_bad
    if error:
        out["error"] = error
    return out


def _print_summary(s: dict[str, Any]) -> None:
    if s.get("error") and not s["tx_packets"]:
        print(f"memif demo: {s['error']}", file=sys.stderr)
        return
    print(
        f"sent {s['tx_packets']:,} frames ({s['tx_bytes'] / 1e6:,.1f} MB), "
        f"echoed back {s['rx_packets']:,} ({s['jumbo']:,} of them 9000-byte jumbo frames "
        f"chained over buffers) in {s['duration']:.2f} s"
    )
    print(
        f"{s['mpps']:.3f} Mpps, {s['gbps']:.2f} Gbit/s each way; lost {s['lost']:,}, "
        f"mismatches {s['mismatches']:,}, errors {s['error_count']:,}"
    )
    for k, v in s["errors"].items():
        print(f"  {k}: {v:,}")
    if s.get("first_mismatch"):
        print(f"first mismatch: {s['first_mismatch']}")
    if s.get("error"):
        print(f"memif demo: {s['error']}", file=sys.stderr)
    if s["interrupted"]:
        print(f"interrupted after {s['duration']:.2f} s")
    if s["ok"]:
        print("OK: every frame came back intact and in order")
    elif not s.get("error"):
        print("FAILED: " + ("no traffic" if not s["rx_packets"] else "frames lost or damaged"))


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value

    return parse


def main(args: argparse.Namespace) -> int:
    """Entry point of ``memif demo``."""
    if args.peer:
        return run_peer(args)
    try:
        return run_demo(args)
    except (OSError, DemoError, MemifError) as exc:
        print(f"memif demo: {exc}", file=sys.stderr)
        return 1


def add_parser(subparsers: Any) -> None:
    """Register ``memif demo``."""
    p = subparsers.add_parser(
        "demo",
        help="two processes exchanging traffic over memif, with live counters (start here)",
        description=(
            "Start a second process as a memif server on a fresh abstract socket, connect to "
            "it as the client and exchange traffic through shared memory: sequence-numbered "
            "Ethernet frames of mixed sizes, with a 9000-byte jumbo frame chained over "
            "buffers every 32 frames.  The server echoes every frame back with its MAC "
            "addresses swapped; the client checks each one (length, addresses, order, every "
            "byte).  A live line shows elapsed time, frames sent and received, Mpps, "
            "Gbit/s, lost frames and errors; a summary follows."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--duration",
        type=_positive(float),
        default=5.0,
        metavar="SECONDS",
        help="how long to send (default 5)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument(
        "--socket",
        default=None,
        help="socket for the two peers (default: a fresh abstract name, @memif-demo-...)",
    )
    p.add_argument(
        "--ring-size", type=_positive(int), default=1024, help="ring slots (default 1024)"
    )
    p.add_argument(
        "--buffer-size",
        type=_positive(int),
        default=2048,
        help="buffer bytes (default 2048; a jumbo frame takes several)",
    )
    p.add_argument(
        "--connect-timeout",
        type=_positive(float),
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the server process (default 10)",
    )
    p.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=main)
