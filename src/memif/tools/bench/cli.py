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
    rows = batch.matrix                      # a view (a copy when the burst wrapped the ring)
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

The worker processes live in :mod:`memif.tools.bench.worker`; this module plans the points,
runs testpmd, measures and prints.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ... import wire
from .common import (
    add_cpus_arg,
    add_frames_arg,
    add_testpmd_json_args,
    add_window_args,
    check_frames,
    check_ring_size,
    choice_list,
    int_list,
    set_rates,
    set_ratio,
    testpmd_binary,
    two_cpus,
)
from .worker import (
    BUFFER_SIZE,
    GO,
    LISTENING,
    MIN_FRAME,
    PEER_POLLING,
    RX_READY,
    SEQ_ERRORS,
    TX_READY,
    WAIT,
    Workers,
    build_frame,
    rx_counters,
)

__all__ = ["PAIRS", "REFERENCE", "Options", "Point", "Result", "build_frame", "measure", "plan"]

PAIRS = ("python-python", "python-testpmd", "testpmd-python", "testpmd-testpmd")
"""Every pair, sender first."""
REFERENCE = "testpmd-testpmd"
"""The pair every ratio is taken against."""


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
        return (*rx_counters(ctl), time.perf_counter())

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


def _testpmd(role: str, path: str, point: Point, opts: Options, main_lcore: int, **kw: Any) -> Any:
    """testpmd with one memif port of ``role`` on ``path``, its main lcore on ``main_lcore``.

    It may use the sender's and the receiver's CPU; the forwarding lcore lands on the other one.
    """
    from ..testpmd import MemifPort, Testpmd

    log2 = opts.ring_size.bit_length() - 1
    return Testpmd(
        [MemifPort(role, socket=path, rsize=log2, bsize=BUFFER_SIZE)],
        burst=point.burst,
        main_lcore=main_lcore,
        lcores=(opts.tx_cpu, opts.rx_cpu),
        binary=opts.testpmd,
        **kw,
    )


def measure(point: Point, opts: Options) -> Result:
    """Measure one point; errors end up in ``Result.error`` with no rate."""
    path = os.path.join(opts.workdir, f"{point.pair}-{point.frame}-{point.burst}.sock")
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
    workers: Workers | None = None
    rx_tp = tx_tp = None
    try:
        if point.receiver == "python":
            workers = Workers()
            workers.spawn(
                "rx", path, point.frame, point.burst, opts.ring_size, opts.rx_cpu, opts.rx_read
            )
            workers.wait(LISTENING, "listening receiver")
        else:
            # forwarding lcore = receiver's CPU; the main lcore (idle at its prompt) the other
            rx_tp = _testpmd("server", path, point, opts, opts.tx_cpu, forward_mode="rxonly")
            assert opts.tx_cpu not in rx_tp.forwarding_lcores
        if point.sender == "python":
            workers = workers or Workers()
            workers.spawn(
                "tx", path, point.frame, point.burst, opts.ring_size, opts.tx_cpu, opts.rx_read
            )
            workers.wait(TX_READY, "connected sender")
        else:
            tx_tp = _testpmd(
                "client", path, point, opts, opts.rx_cpu, forward_mode="txonly", txpkts=point.frame
            )
            assert opts.rx_cpu not in tx_tp.forwarding_lcores
            tx_tp.wait_link_up(0, WAIT)
        if workers and point.receiver == "python":
            workers.wait(RX_READY, "connected receiver")
        if rx_tp is not None:
            rx_tp.wait_link_up(0, WAIT)
            rx_tp.start()
        if tx_tp is not None:
            tx_tp.start()
        if workers and point.sender == "python":
            workers.ctl[GO] = 1
        if rx_tp is not None:
            read = _testpmd_counter(rx_tp)
        else:  # the receiver is a Python worker
            assert workers is not None
            read = _python_counter(workers.ctl)
        extra = _window(read, opts, workers.check if workers else None)
        # testpmd crashes if its peer leaves while it forwards: stop it before anyone leaves
        for tp in (tx_tp, rx_tp):
            if tp is not None:
                tp.stop()
        if workers:
            workers.stop()
            if point.sender == "python":
                extra["peer_polling"] = bool(workers.ctl[PEER_POLLING])
                if point.receiver == "python":
                    extra["seq_errors"] = workers.ctl[SEQ_ERRORS]
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
        set_rates(result, extra["packets"], extra["seconds"], point.frame, extra)
    return result


# ---------------------------------------------------------------------------------------- CLI


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
    add_frames_arg(p)
    p.add_argument(
        "--bursts",
        type=int_list,
        default=[32, 64, 256],
        metavar="LIST",
        help="burst sizes (default 32,64,256)",
    )
    p.add_argument(
        "--pairs",
        type=choice_list(PAIRS, "pair"),
        default=list(PAIRS),
        metavar="LIST",
        help=f"sender-receiver pairs (default {','.join(PAIRS)})",
    )
    add_window_args(p, warmup=0.5, before="run")
    p.add_argument(
        "--ring-size",
        type=int,
        default=1 << wire.DEFAULT_LOG2_RING_SIZE,
        metavar="N",
        help="ring slots, a power of two, both peers (default 1024)",
    )
    add_cpus_arg(
        p,
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
    add_testpmd_json_args(p, json_help="print JSON Lines, one object per point")
    p.set_defaults(func=run)
    return p


def _options(args: argparse.Namespace) -> Options:
    ring = args.ring_size
    check_ring_size(ring, 2, 1 << wire.MAX_LOG2_RING_SIZE)
    check_frames(args.frames, MIN_FRAME, BUFFER_SIZE)
    for b in args.bursts:
        if not 1 <= b <= ring:
            raise ValueError(f"burst {b} must be 1..{ring} (the ring size)")
    tx_cpu, rx_cpu = two_cpus(args.cpus, "sender and receiver")
    testpmd = None
    if any("testpmd" in p for p in args.pairs):
        testpmd = testpmd_binary(args.testpmd, ", or select --pairs python-python")
    return Options(
        seconds=args.seconds,
        warmup=args.warmup,
        ring_size=ring,
        tx_cpu=tx_cpu,
        rx_cpu=rx_cpu,
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
            set_ratio(r, (point.frame, point.burst), reference, point.pair == REFERENCE)
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
