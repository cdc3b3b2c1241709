"""``memif bench``: packet rate of this library against DPDK testpmd, in one run.

Every point is one (pair, frame size, burst) combination. A pair names the sender, then the
receiver, connected by one memif (the sender is always the client, the receiver the server):

* ``python-python``: our client transmitting -> our server receiving, two processes;
* ``python-testpmd``: our client transmitting -> testpmd server in ``rxonly``;
* ``testpmd-python``: testpmd client in ``txonly`` -> our server receiving;
* ``testpmd-testpmd``: testpmd ``txonly`` client -> testpmd ``rxonly`` server (the reference).

CPUs: the sender runs on one CPU and the receiver on another (``--cpus SENDER,RECEIVER``, by
default the first two CPUs this process may use). A Python side runs in its own child process
(``multiprocessing``, start method ``spawn``) pinned with :func:`os.sched_setaffinity`; a testpmd
side gets ``-l SENDER,RECEIVER`` with its main lcore on the *other* CPU, so its busy-polling
forwarding lcore lands on the sender's or the receiver's CPU. Both Python receive queues are in
polling mode (``set_rx_mode(0, True)``: MASK_INT set, the producer writes no eventfd).

What the Python sender does for every burst (:func:`send_loop`)::

    batch = tx.alloc(burst)                  # up to `burst` slot buffers, in shared memory
    batch.buffers[:, :frame] = template      # the whole frame is written into every buffer
    seq[:n] = next_seq + arange(n)           # u64 view of bytes 42..49 of every buffer
    tx.tx_burst(batch, frame)                # publish the descriptors, one counter store

``template`` is an Ethernet/IPv4/UDP frame (198.18.0.1:9 -> 198.18.0.2:9, like testpmd's
``txonly``) of exactly ``frame`` bytes; bytes 42..49, the first 8 bytes of the UDP payload, carry
the packet's sequence number as a little-endian u64.

What the Python receiver does for every burst (:func:`receive_loop`)::

    batch = rx.rx_burst(burst)
    rows = batch.matrix  (or batch.gather(width=50) when the buffers are not evenly spaced)
    s = rows[:, 42:50].view(u64).sum()       # reads the sequence number of every packet
    check that the burst holds exactly next_seq, next_seq+1, ... (sum and last value)
    rx.refill()
    packets += n; bytes = rx.stats.bytes     # bytes: sum of the descriptor lengths

So "reads" means: the 8-byte sequence number of every packet is loaded from shared memory (one
cache line per packet), at every frame size alike; the rest of the payload is not touched.
``--rx-read copy`` makes the receiver first copy every whole frame into private memory (the work
testpmd's memif driver does in copy mode, where the PMD copies each packet into an mbuf) and then
read the sequence numbers from the copy. The sequence check is only meaningful, and only reported
(``seq_errors``, in bursts), when the sender is Python; testpmd's payload carries no sequence.

Measurement of one point: start the receiver, then the sender, let it run ``--warmup`` seconds
(0.5), read the receiver's packet counter, wait ``--seconds``, read it again; the rate is the
packet difference over the time between the two reads. A testpmd receiver's counter is the
``RX-packets`` of ``show port stats 0`` (the read time is the middle of the command's round
trip); a Python receiver publishes its counters after every burst in shared memory that the
parent reads. Gbit/s is frame bytes * 8 * packets per second (no preamble, inter-frame gap or
FCS). ``ratio`` is Mpps divided by the testpmd-testpmd Mpps of the same frame and burst measured
in the same run (it is measured first at each frame and burst), null when that pair is not run.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .. import wire

PAIRS = ("python-python", "python-testpmd", "testpmd-python", "testpmd-testpmd")
"""Every pair, sender first."""
REFERENCE = "testpmd-testpmd"
"""The pair every ratio is taken against."""

SEQ_OFFSET = 42
"""Byte offset of the u64 sequence number: the first byte of the UDP payload."""
SEQ_END = SEQ_OFFSET + 8
MIN_FRAME = 60
"""Smallest frame: an Ethernet minimum frame without FCS (and room for the sequence number)."""
BUFFER_SIZE = wire.DEFAULT_BUFFER_SIZE
"""Buffer size on both sides of every pair (2048): one buffer carries one frame."""

# Slots of the control block shared with the worker processes (int64 each).
_STOP = 0  # parent -> workers: leave the loop and disconnect
_GO = 1  # parent -> sender: start transmitting
_LISTENING = 2  # receiver: its socket is listening
_RX_READY = 3  # receiver: connected, receiving
_TX_READY = 4  # sender: connected, waiting for _GO
_RX_PACKETS = 5  # receiver: packets received so far
_RX_BYTES = 6  # receiver: bytes received so far
_TX_PACKETS = 7  # sender: packets sent so far
_SEQ_ERRORS = 8  # receiver: bursts whose sequence numbers were not the expected ones
_PEER_POLLING = 9  # sender: 1 when the receiver masked interrupts (no eventfd write per burst)
_FAILED = 10  # a worker raised
_SLOTS = 16

_WAIT = 20.0  # seconds to wait for a worker or a link


# ---------------------------------------------------------------------------------------- frames


def _ip_checksum(header: bytes) -> int:
    total = sum(int.from_bytes(header[i : i + 2], "big") for i in range(0, len(header), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build_frame(size: int) -> np.ndarray:
    """An Ethernet/IPv4/UDP frame of ``size`` bytes, as testpmd's ``txonly`` sends.

    02:00:00:00:00:01 -> 02:00:00:00:00:02, 198.18.0.1:9 -> 198.18.0.2:9, UDP checksum 0; the
    payload is the byte pattern 0, 1, 2, ... (the sequence number goes over its first 8 bytes).
    """
    if size < MIN_FRAME:
        raise ValueError(f"frame size {size} is below {MIN_FRAME} bytes")
    eth = bytes.fromhex("0200000000020200000000010800")
    ip = bytearray(20)
    ip[0], ip[8], ip[9] = 0x45, 64, 17
    ip[2:4] = (size - 14).to_bytes(2, "big")
    ip[12:16] = bytes([198, 18, 0, 1])
    ip[16:20] = bytes([198, 18, 0, 2])
    ip[10:12] = _ip_checksum(bytes(ip)).to_bytes(2, "big")
    udp = (9).to_bytes(2, "big") * 2 + (size - 34).to_bytes(2, "big") + b"\0\0"
    payload = bytes(i & 0xFF for i in range(size - 42))
    return np.frombuffer(eth + bytes(ip) + udp + payload, np.uint8).copy()


# ---------------------------------------------------------------------------------------- loops


def send_loop(tx: Any, frame: int, burst: int, ctl: memoryview) -> None:
    """Transmit ``frame``-byte packets in bursts of ``burst`` until ``ctl[_STOP]`` is set.

    Every packet gets the whole template frame copied in and its sequence number stamped at
    bytes 42..49; ``ctl[_TX_PACKETS]`` is updated after every burst.
    """
    template = build_frame(frame)
    ramp = np.arange(burst, dtype=np.uint64).reshape(burst, 1)
    alloc, tx_burst = tx.alloc, tx.tx_burst
    seq = 0
    while not ctl[_STOP]:
        batch = alloc(burst)
        n = batch.count
        if not n:
            continue  # ring full: the receiver has not caught up
        bufs = batch.buffers
        bufs[:, :frame] = template
        np.add(ramp[:n], seq, out=bufs[:, SEQ_OFFSET:SEQ_END].view(np.uint64))
        tx_burst(batch, frame)
        seq += n
        ctl[_TX_PACKETS] = seq


def receive_loop(rx: Any, frame: int, burst: int, ctl: memoryview, copy: bool = False) -> None:
    """Receive in bursts of ``burst`` until ``ctl[_STOP]`` is set, reading every packet.

    Reads each packet's sequence number (bytes 42..49) and checks the burst against the
    expected run; publishes packets, bytes and sequence errors in ``ctl`` after every burst.
    With ``copy`` every whole frame (``frame`` bytes) is first copied into private memory.
    """
    rx_burst, refill, stats = rx.rx_burst, rx.refill, rx.stats
    private = np.zeros((burst, frame), np.uint8) if copy else None
    packets = errors = expected = 0
    while not ctl[_STOP]:
        batch = rx_burst(burst)
        n = len(batch)
        if not n:
            continue
        if private is not None:
            rows = batch.gather(frame, private)
        else:
            rows = batch.matrix
            if rows is None:
                rows = batch.gather(SEQ_END)
        seq = rows[:n, SEQ_OFFSET:SEQ_END].view(np.uint64)
        total = int(seq.sum())
        last = int(seq[n - 1, 0])
        first = last - n + 1
        if first != expected or total != (n * first + n * (n - 1) // 2) & 0xFFFFFFFFFFFFFFFF:
            errors += 1
            ctl[_SEQ_ERRORS] = errors
        expected = last + 1
        refill()
        packets += n
        ctl[_RX_PACKETS] = packets
        ctl[_RX_BYTES] = stats.bytes


# ---------------------------------------------------------------------------------------- workers


def _control(raw: Any) -> memoryview:
    return memoryview(raw).cast("B").cast("q")


def _connect(sock: Any, iface: Any, ctl: memoryview) -> None:
    deadline = time.monotonic() + _WAIT
    while not iface.connected:
        if ctl[_STOP]:
            raise SystemExit(0)
        if time.monotonic() > deadline:
            reason = iface.local_disc_reason or iface.remote_disc_reason or iface.state
            raise TimeoutError(f"{iface.role.value} did not connect within {_WAIT} s: {reason}")
        sock.poll(0.01)


def _worker(
    role: str, path: str, frame: int, burst: int, ring_size: int, cpu: int, rx_read: str, raw: Any
) -> None:
    """Entry point of a child process: one Python side of a pair, pinned to ``cpu``."""
    from ..sock import Socket

    ctl = _control(raw)
    try:
        os.sched_setaffinity(0, {cpu})
        server = role == "rx"
        with Socket(path, app_name=f"memif-bench-{role}") as sock:
            iface = sock.create_interface(
                role="server" if server else "client",
                id=0,
                ring_size=ring_size,
                buffer_size=BUFFER_SIZE,
                polling=True,
            )
            iface.set_rx_mode(0, True)
            if server:
                ctl[_LISTENING] = 1
            _connect(sock, iface, ctl)
            gc.collect()
            gc.disable()
            if server:
                ctl[_RX_READY] = 1
                receive_loop(iface.rx_queues[0], frame, burst, ctl, copy=rx_read == "copy")
            else:
                tx = iface.tx_queues[0]
                if tx.alloc(1).buffers is None:
                    raise RuntimeError("transmit buffers are not one strided view")
                ctl[_PEER_POLLING] = int(bool(tx.ring.flags & wire.RING_FLAG_MASK_INT))
                ctl[_TX_READY] = 1
                while not ctl[_GO]:
                    if ctl[_STOP]:
                        return
                    time.sleep(0.001)
                send_loop(tx, frame, burst, ctl)
    except KeyboardInterrupt:
        pass
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        ctl[_FAILED] = 1
        raise SystemExit(1) from None


class _Workers:
    """The Python sides of one point: child processes sharing one control block."""

    def __init__(self) -> None:
        self.ctx = mp.get_context("spawn")
        self.raw = self.ctx.RawArray("q", _SLOTS)
        self.ctl = _control(self.raw)
        self.procs: list[Any] = []

    def spawn(self, role: str, path: str, point: Point, opts: Options, cpu: int) -> None:
        args = (role, path, point.frame, point.burst, opts.ring_size, cpu, opts.rx_read, self.raw)
        proc = self.ctx.Process(target=_worker, args=args, name=f"memif-bench-{role}", daemon=True)
        proc.start()
        self.procs.append(proc)

    def wait(self, slot: int, what: str, timeout: float = _WAIT) -> None:
        """Wait until a worker sets ``slot``; raise if one fails or time runs out."""
        deadline = time.monotonic() + timeout
        while not self.ctl[slot]:
            dead = [p for p in self.procs if p.exitcode is not None]
            if self.ctl[_FAILED] or dead:
                codes = ", ".join(f"{p.name} exited {p.exitcode}" for p in dead)
                raise RuntimeError(f"a worker failed before {what} ({codes or 'see stderr'})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {timeout} s")
            time.sleep(0.005)

    def check(self) -> None:
        """Raise if a worker failed or died."""
        if self.ctl[_FAILED] or any(p.exitcode is not None for p in self.procs):
            raise RuntimeError("a worker failed during the measurement (see stderr)")

    def stop(self) -> None:
        """Tell every worker to disconnect and exit; kill those that do not."""
        self.ctl[_STOP] = 1
        for p in self.procs:
            p.join(5.0)
            if p.exitcode is None:
                p.kill()
                p.join(2.0)


# ---------------------------------------------------------------------------------------- points


@dataclass(frozen=True)
class Point:
    """One measurement: a pair at one frame size and burst."""

    pair: str
    frame: int
    burst: int

    @property
    def sender(self) -> str:
        """``python`` or ``testpmd``."""
        return self.pair.split("-")[0]

    @property
    def receiver(self) -> str:
        """``python`` or ``testpmd``."""
        return self.pair.split("-")[1]


@dataclass
class Options:
    """Everything that is the same for every point of a run."""

    seconds: float = 3.0
    warmup: float = 0.5
    ring_size: int = 1 << wire.DEFAULT_LOG2_RING_SIZE
    tx_cpu: int = 0
    rx_cpu: int = 1
    rx_read: str = "seq"
    testpmd: str | None = None
    workdir: str = "/tmp"


@dataclass
class Result:
    """One measurement, as printed by ``--json`` (one object per line)."""

    pair: str
    frame: int
    burst: int
    mpps: float | None
    gbps: float | None
    ratio: float | None
    packets: int | None = None
    rx_bytes: int | None = None
    seconds: float | None = None
    ring_size: int = 0
    sender_cpu: int = 0
    receiver_cpu: int = 0
    rx_read: str = "seq"
    seq_errors: int | None = None
    peer_polling: bool | None = None
    error: str | None = None


Counter = Callable[[], tuple[int, int, float]]


def _testpmd_counter(tp: Any) -> Counter:
    def read() -> tuple[int, int, float]:
        t0 = time.perf_counter()
        s = tp.port_stats(0)
        t1 = time.perf_counter()
        return s.rx_packets, s.rx_bytes, (t0 + t1) / 2

    return read


def _python_counter(ctl: memoryview) -> Counter:
    def read() -> tuple[int, int, float]:
        return ctl[_RX_PACKETS], ctl[_RX_BYTES], time.perf_counter()

    return read


def _window(read: Counter, opts: Options, check: Callable[[], None] | None = None) -> dict:
    """Warm up, then count what the receiver got over ``opts.seconds``."""
    time.sleep(opts.warmup)
    p0, b0, t0 = read()
    time.sleep(opts.seconds)
    p1, b1, t1 = read()
    if check:
        check()
    return {"packets": p1 - p0, "rx_bytes": b1 - b0, "seconds": t1 - t0}


def measure(point: Point, opts: Options) -> Result:
    """Measure one point; errors end up in ``Result.error`` with no rate."""
    from ..testpmd import MemifPort, Testpmd

    path = os.path.join(opts.workdir, f"{point.pair}-{point.frame}-{point.burst}.sock")
    log2 = opts.ring_size.bit_length() - 1
    lcores = (opts.tx_cpu, opts.rx_cpu)
    extra: dict[str, Any] = {}
    result = Result(
        point.pair,
        point.frame,
        point.burst,
        None,
        None,
        None,
        ring_size=opts.ring_size,
        sender_cpu=opts.tx_cpu,
        receiver_cpu=opts.rx_cpu,
        rx_read=opts.rx_read if point.receiver == "python" else "testpmd",
    )
    workers: _Workers | None = None
    rx_tp = tx_tp = None
    try:
        if point.receiver == "python":
            workers = _Workers()
            workers.spawn("rx", path, point, opts, opts.rx_cpu)
            workers.wait(_LISTENING, "listening receiver")
        else:
            # forwarding lcore = receiver's CPU; the main lcore (idle at its prompt) the other
            rx_tp = Testpmd(
                [MemifPort("server", socket=path, rsize=log2, bsize=BUFFER_SIZE)],
                forward_mode="rxonly",
                burst=point.burst,
                main_lcore=opts.tx_cpu,
                lcores=lcores,
                binary=opts.testpmd,
            )
            assert opts.tx_cpu not in rx_tp.forwarding_lcores
        if point.sender == "python":
            workers = workers or _Workers()
            workers.spawn("tx", path, point, opts, opts.tx_cpu)
            workers.wait(_TX_READY, "connected sender")
        else:
            tx_tp = Testpmd(
                [MemifPort("client", socket=path, rsize=log2, bsize=BUFFER_SIZE)],
                forward_mode="txonly",
                txpkts=point.frame,
                burst=point.burst,
                main_lcore=opts.rx_cpu,
                lcores=lcores,
                binary=opts.testpmd,
            )
            assert opts.rx_cpu not in tx_tp.forwarding_lcores
            tx_tp.wait_link_up(0, _WAIT)
        if workers and point.receiver == "python":
            workers.wait(_RX_READY, "connected receiver")
        if rx_tp is not None:
            rx_tp.wait_link_up(0, _WAIT)
            rx_tp.start()
        if tx_tp is not None:
            tx_tp.start()
        if workers and point.sender == "python":
            workers.ctl[_GO] = 1
        read = _python_counter(workers.ctl) if rx_tp is None else _testpmd_counter(rx_tp)
        extra = _window(read, opts, workers.check if workers else None)
        # testpmd crashes if its peer leaves while it forwards: stop it before anyone leaves
        for tp in (tx_tp, rx_tp):
            if tp is not None:
                tp.stop()
        if workers:
            workers.stop()
            if point.sender == "python":
                extra["peer_polling"] = bool(workers.ctl[_PEER_POLLING])
                if point.receiver == "python":
                    extra["seq_errors"] = workers.ctl[_SEQ_ERRORS]
    except Exception as exc:  # report the point as failed, go on with the next
        result.error = f"{type(exc).__name__}: {exc}".strip()
    finally:
        for tp in (tx_tp, rx_tp):
            if tp is not None and tp.forwarding:
                with contextlib.suppress(Exception):
                    tp.stop()
        if workers:
            workers.stop()
        for tp in (tx_tp, rx_tp):
            if tp is not None:
                tp.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
    if result.error is None:
        pps = extra["packets"] / extra["seconds"]
        result.mpps = round(pps / 1e6, 4)
        result.gbps = round(pps * point.frame * 8 / 1e9, 4)
        for key, value in extra.items():
            setattr(result, key, round(value, 4) if isinstance(value, float) else value)
    return result


# ---------------------------------------------------------------------------------------- CLI


def _ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, not {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one value")
    return values


def _pairs(text: str) -> list[str]:
    values = [x.strip() for x in text.split(",") if x.strip()]
    bad = [v for v in values if v not in PAIRS]
    if bad or not values:
        raise argparse.ArgumentTypeError(
            f"unknown pair {', '.join(bad) or text!r}: choose from {', '.join(PAIRS)}"
        )
    return values


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, not {text}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``bench`` subcommand on ``subparsers`` and return its parser."""
    p = subparsers.add_parser(
        "bench",
        help="packet rate of memif-python against DPDK testpmd",
        description=(
            "Measure packets per second over one memif for python-python, python-testpmd, "
            "testpmd-python and testpmd-testpmd (sender-receiver), at every frame size and "
            "burst, and compare each with testpmd-testpmd measured in the same run. "
            "Gbit/s = frame bytes * 8 * packets/s."
        ),
    )
    p.add_argument(
        "--frames",
        type=_ints,
        default=[64, 1500],
        metavar="LIST",
        help="frame sizes in bytes (default 64,1500)",
    )
    p.add_argument(
        "--bursts",
        type=_ints,
        default=[32, 64, 256],
        metavar="LIST",
        help="burst sizes (default 32,64,256)",
    )
    p.add_argument(
        "--pairs",
        type=_pairs,
        default=list(PAIRS),
        metavar="LIST",
        help=f"sender-receiver pairs (default {','.join(PAIRS)})",
    )
    p.add_argument(
        "--seconds",
        type=_positive,
        default=3.0,
        metavar="S",
        help="measurement time per point (default 3)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=0.5,
        metavar="S",
        help="time to run before measuring (default 0.5)",
    )
    p.add_argument(
        "--ring-size",
        type=int,
        default=1 << wire.DEFAULT_LOG2_RING_SIZE,
        metavar="N",
        help="ring slots, a power of two, both peers (default 1024)",
    )
    p.add_argument(
        "--cpus",
        type=_ints,
        default=None,
        metavar="TX,RX",
        help="CPUs of the sender and the receiver (default: the first two allowed)",
    )
    p.add_argument(
        "--rx-read",
        choices=("seq", "copy"),
        default="seq",
        help="Python receiver: read each packet's sequence number (seq, default) or "
        "copy every whole frame to private memory first (copy)",
    )
    p.add_argument("--testpmd", default=None, metavar="PATH", help="dpdk-testpmd binary")
    p.add_argument("--json", action="store_true", help="print JSON Lines, one object per point")
    p.set_defaults(func=run)
    return p


def _options(args: argparse.Namespace) -> Options:
    ring = args.ring_size
    if ring < 2 or ring & (ring - 1) or ring > 1 << wire.MAX_LOG2_RING_SIZE:
        raise ValueError(f"--ring-size {ring} must be a power of two from 2 to 16384")
    for f in args.frames:
        if not MIN_FRAME <= f <= BUFFER_SIZE:
            raise ValueError(f"frame size {f} must be {MIN_FRAME}..{BUFFER_SIZE} (one buffer)")
    for b in args.bursts:
        if not 1 <= b <= ring:
            raise ValueError(f"burst {b} must be 1..{ring} (the ring size)")
    allowed = sorted(os.sched_getaffinity(0))
    cpus = args.cpus or allowed[:2]
    if len(cpus) != 2 or cpus[0] == cpus[1]:
        raise ValueError(f"need two different CPUs for sender and receiver, have {cpus}")
    if not set(cpus) <= set(allowed):
        raise ValueError(f"--cpus {cpus}: this process may only use CPUs {allowed}")
    testpmd = None
    if any("testpmd" in p for p in args.pairs):
        from ..testpmd import find_testpmd

        testpmd = args.testpmd or find_testpmd()
        if testpmd is None:
            raise ValueError(
                "dpdk-testpmd not found: install dpdk-dev and librte-net-memif23, "
                "or select --pairs python-python"
            )
    return Options(
        seconds=args.seconds,
        warmup=max(0.0, args.warmup),
        ring_size=ring,
        tx_cpu=cpus[0],
        rx_cpu=cpus[1],
        rx_read=args.rx_read,
        testpmd=testpmd,
    )


def plan(frames: Sequence[int], bursts: Sequence[int], pairs: Sequence[str]) -> list[Point]:
    """Every point to measure, the reference first at each frame size and burst."""
    order = [p for p in PAIRS if p in pairs]
    if REFERENCE in order:
        order.remove(REFERENCE)
        order.insert(0, REFERENCE)
    return [Point(p, f, b) for f in frames for b in bursts for p in order]


def format_table(results: Sequence[Result]) -> str:
    """The human-readable table of ``results``, with its footnotes."""
    lines = [f"{'pair':<16} {'frame':>5} {'burst':>5} {'Mpps':>8} {'Gbit/s':>8} {'ratio':>7}"]
    for r in results:
        if r.error is not None:
            first = r.error.splitlines()[0]
            lines.append(f"{r.pair:<16} {r.frame:>5} {r.burst:>5}   failed: {first}")
            continue
        ratio = "-" if r.ratio is None else f"{r.ratio:.3f}"
        lines.append(
            f"{r.pair:<16} {r.frame:>5} {r.burst:>5} {r.mpps:>8.3f} {r.gbps:>8.2f} {ratio:>7}"
        )
    lines += [
        "",
        "Gbit/s = frame bytes * 8 * packets/s (no preamble, inter-frame gap or FCS).",
        f"ratio = Mpps / {REFERENCE} Mpps at the same frame and burst, in this run.",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``memif bench``; returns 0, 1 if a point failed, 2 on bad options."""
    try:
        opts = _options(args)
    except ValueError as exc:
        print(f"memif bench: {exc}", file=sys.stderr)
        return 2
    points = plan(args.frames, args.bursts, args.pairs)
    results: list[Result] = []
    reference: dict[tuple[int, int], float] = {}
    opts.workdir = tempfile.mkdtemp(prefix="memif-bench-")
    try:
        for i, point in enumerate(points, 1):
            label = f"[{i}/{len(points)}] {point.pair} frame={point.frame} burst={point.burst}"
            print(f"{label}: measuring {opts.seconds:g} s ...", file=sys.stderr, flush=True)
            r = measure(point, opts)
            key = (point.frame, point.burst)
            if point.pair == REFERENCE and r.mpps:
                reference[key] = r.mpps
            if r.mpps is not None and key in reference:
                r.ratio = round(r.mpps / reference[key], 4)
            if r.error is None:
                ratio = "" if r.ratio is None else f", ratio {r.ratio:.3f}"
                done = f"{r.mpps:.3f} Mpps, {r.gbps:.2f} Gbit/s{ratio}"
            else:
                done = f"failed: {r.error}"
            print(f"{label}: {done}", file=sys.stderr, flush=True)
            results.append(r)
            if args.json:
                print(json.dumps(asdict(r)), flush=True)
    finally:
        shutil.rmtree(opts.workdir, ignore_errors=True)
    if not args.json:
        print(format_table(results))
    return 1 if any(r.error for r in results) else 0
