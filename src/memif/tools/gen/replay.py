"""``memif pcap-replay``: transmit the packets of a pcap file over a memif interface.

At the pace they were recorded (default, ``--speed`` scales it), at a fixed
``--rate``, or as fast as the peer takes them (``--fast``); ``--loop N`` plays the
file N times (0: until interrupted).  Packets larger than a buffer go out chained.
The peer is never outrun: when the ring is full the replay waits for free slots.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
from collections import Counter
from typing import Any

import numpy as np

from ...errors import MemifError
from ...pcap import PcapError, PcapReader, linktype_name, mode_accepts
from ...queue import TxQueue
from ...wire import Mode
from ..common import (
    LiveLine,
    StopRequest,
    add_connection_args,
    fail,
    one_line_errors,
    open_interface,
    print_json,
)

BURST = 256
DRAIN_TIMEOUT = 2.0  # seconds to wait at the end for the peer to take the last packets


class Disconnected(Exception):
    """The peer went away in the middle of the replay."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``memif pcap-replay``."""
    p = subparsers.add_parser(
        "pcap-replay",
        help="transmit the packets of a pcap file",
        description=(
            "Send the packets of a classic pcap file (Ethernet for an ethernet-mode interface, "
            "raw IP for an ip-mode one) at their recorded pace, a fixed rate or flat out."
        ),
    )
    p.add_argument("file", metavar="FILE.pcap", help="the capture to replay")
    add_connection_args(p, role="client")
    one_line_errors(p, "pcap-replay")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--fast", action="store_true", help="as fast as the peer takes them")
    pace.add_argument("--rate", type=float, metavar="PPS", help="a fixed rate, packets per second")
    pace.add_argument(
        "--speed", type=float, metavar="X", help="the recorded pace times X (default 1)"
    )
    p.add_argument(
        "--loop", type=int, default=1, metavar="N", help="play the file N times (0: forever)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``memif pcap-replay``."""
    if args.loop < 0:
        return fail("--loop must be 0 (forever) or more")
    if args.rate is not None and not args.rate > 0:
        return fail("--rate must be positive")
    if args.speed is not None and not args.speed > 0:
        return fail("--speed must be positive")
    try:
        mode = Mode.parse(args.mode)
        with PcapReader(args.file) as reader:
            linktype = reader.linktype
    except OSError as exc:
        return fail(f"cannot read {args.file}: {exc.strerror or exc}")
    except (PcapError, ValueError) as exc:
        return fail(str(exc))
    if not mode_accepts(mode, linktype):
        want = "ethernet" if mode is Mode.ETHERNET else "raw-ip (LINKTYPE_RAW 101)"
        other = "ip" if mode is Mode.ETHERNET else "ethernet"
        return fail(
            f"{args.file} holds {linktype_name(linktype)} packets but a {mode.name.lower()}-mode "
            f"interface carries {want} packets (use --mode {other} if the peer does)"
        )
    try:
        sock, iface = open_interface(args, "memif-pcap-replay")
    except (TimeoutError, MemifError, OSError) as exc:
        return fail(str(exc))
    replay = Replay(args, sock, iface, linktype)
    try:
        error = replay.run()
    finally:
        sock.close()
    return replay.report(error)


class Replay:
    """One replay: pacing, bursts with back-pressure, counters."""

    def __init__(self, args: argparse.Namespace, sock: Any, iface: Any, linktype: int) -> None:
        self.args = args
        self.sock = sock
        self.iface = iface
        self.linktype = linktype
        self.sent = 0
        self.bytes = 0
        self.loops = 0
        self.truncated = 0
        self.skipped: Counter = Counter()
        self.interrupted = False
        self.start = 0.0
        self.elapsed = 0.0
        self._next_control = 0.0
        self._max_free = 0
        self._queue_drops = 0
        self.live = LiveLine(sys.stderr, enabled=True)

    # -- pacing
    def _due(self, ts_ns: int, first_ns: int, offset: float, index: int) -> float:
        a = self.args
        if a.fast:
            return 0.0
        if a.rate is not None:
            return self.start + index / a.rate
        return self.start + offset + (ts_ns - first_ns) / 1e9 / (a.speed or 1.0)

    def run(self) -> str | None:
        """Play the file ``--loop`` times; returns an error message or None."""
        stop = StopRequest(escalate=(signal.SIGINT,))  # a second Ctrl-C: give up at once
        self.start = time.monotonic()
        self.live.restart()
        offset = 0.0
        error = None
        try:
            with stop.installed():
                while not stop and (self.args.loop == 0 or self.loops < self.args.loop):
                    before = self.sent
                    span, count = self._play_once(offset, stop)
                    if stop:
                        break
                    self.loops += 1
                    if self.sent == before:
                        break  # nothing to send in this file: looping forever would spin
                    gap = span / (count - 1) if count > 1 else 0.0
                    offset += (span + gap) / (self.args.speed or 1.0)
                if stop:
                    self.interrupted = True
                else:
                    self._drain()
        except (PcapError, Disconnected) as exc:
            error = str(exc)
        finally:
            self.elapsed = time.monotonic() - self.start
            self.live.finish(self._totals(), self.elapsed)
        return error

    def _play_once(self, offset: float, stop: StopRequest) -> tuple[float, int]:
        """One pass over the file; returns (recorded span in seconds, packets)."""
        pending: list[bytes] = []
        first_ns = last_ns = None
        count = 0
        with PcapReader(self.args.file) as reader:
            for rec in reader:
                if stop:
                    break
                if not rec.data:
                    self.skipped["empty"] += 1
                    continue
                if first_ns is None:
                    first_ns = rec.ts_ns
                last_ns = rec.ts_ns
                count += 1
                self.truncated += rec.truncated
                due = self._due(rec.ts_ns, first_ns, offset, self.sent + len(pending))
                if due > time.monotonic():
                    self._transmit(pending, stop)
                    pending = []
                    self._wait_until(due, stop)
                pending.append(rec.data)
                if len(pending) >= BURST:
                    self._transmit(pending, stop)
                    pending = []
            self._transmit(pending, stop)
        span = 0.0 if first_ns is None or last_ns is None else (last_ns - first_ns) / 1e9
        return span, count

    # -- sending
    def _control(self, now: float) -> None:
        if now >= self._next_control:
            self.sock.poll(0)
            self._next_control = now + 0.1
            if self.live.tty or now - self.start >= self.live.period:
                self._show(now)
        if not self.iface.connected:
            reason = self.iface.remote_disc_reason or self.iface.local_disc_reason
            raise Disconnected(f"peer disconnected after {self.sent} packets ({reason})")

    def _show(self, now: float) -> None:
        loops = "forever" if self.args.loop == 0 else str(self.args.loop)
        pps = self.sent / max(now - self.start, 1e-9)
        self.live.update(f"{self._totals()}  loop {self.loops + 1}/{loops}  {pps:.0f} pps")

    def _totals(self) -> str:
        return f"pcap-replay: {self.sent} packets {self.bytes} bytes"

    def _wait_until(self, due: float, stop: StopRequest) -> None:
        while not stop:
            now = time.monotonic()
            self._control(now)
            if now >= due:
                return
            self.sock.poll(min(due - now, 0.05))

    def _transmit(self, pkts: list[bytes], stop: StopRequest) -> None:
        """Send every packet of ``pkts`` in order, waiting for free slots as needed."""
        i = 0
        while i < len(pkts):
            self._control(time.monotonic())
            if stop:
                return
            n = self._push(self.iface.tx_queues[0], pkts, i)
            i += n
            if n == 0:
                time.sleep(0.0002)  # the peer frees slots without telling: look again soon

    def _push(self, q: TxQueue, pkts: list[bytes], i: int) -> int:
        """Send what fits of ``pkts[i:]`` now; returns how many were taken."""
        free = q.free_slots()
        self._max_free = max(self._max_free, free)
        if free == 0:
            return 0
        batch = q.alloc(min(free, len(pkts) - i))
        cap = batch.capacity
        if batch.count == 0 or cap == 0:
            return 0
        j = i
        lengths = []
        while j < len(pkts) and j - i < batch.count and len(pkts[j]) <= cap:
            data = pkts[j]
            batch.buffer(j - i)[: len(data)] = np.frombuffer(data, np.uint8)
            lengths.append(len(data))
            j += 1
        if j > i:
            q.tx_burst(batch, np.array(lengths, np.uint32), count=j - i)
            self.sent += j - i
            self.bytes += sum(lengths)
            return j - i
        data = pkts[i]  # larger than one buffer: a chain
        nseg = math.ceil(len(data) / cap)
        if nseg > q.size:
            self.skipped["too_big"] += 1
            return 1
        if free < nseg:
            return 0
        if q.send([data]) == 1:
            self.sent += 1
            self.bytes += len(data)
            return 1
        return 0

    def _drain(self) -> None:
        """Wait (a little) until the peer has taken every packet sent."""
        end = time.monotonic() + DRAIN_TIMEOUT
        while self.iface.connected and time.monotonic() < end:
            queues = self.iface.tx_queues
            if self.iface.role.value == "client":
                if all(q.in_flight == 0 for q in queues):
                    return
            elif all(q.free_slots() >= self._max_free for q in queues):
                return
            self.sock.poll(0.001)

    # -- result
    def report(self, error: str | None) -> int:
        """Print the summary; returns the exit status."""
        rate = self.sent / self.elapsed if self.elapsed > 0 else 0.0
        if self.args.json:
            print_json(
                {
                    "file": self.args.file,
                    "linktype": self.linktype,
                    "packets": self.sent,
                    "bytes": self.bytes,
                    "loops": self.loops,
                    "duration": round(self.elapsed, 6),
                    "pps": round(rate, 1),
                    "truncated": self.truncated,
                    "skipped": dict(self.skipped),
                    "interrupted": self.interrupted,
                    "error": error,
                }
            )
        else:
            skipped = sum(self.skipped.values())
            print(
                f"pcap-replay: sent {self.sent} packets ({self.bytes} bytes) from {self.args.file} "
                f"in {self.elapsed:.2f} s ({rate:.0f} pps), {self.loops} loop(s)"
                + (f", {skipped} skipped" if skipped else "")
                + (", interrupted" if self.interrupted else ""),
                flush=True,
            )
        if error:
            return fail(error)
        return 130 if self.interrupted else 0
