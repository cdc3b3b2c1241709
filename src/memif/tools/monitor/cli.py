"""``memif monitor``: live protocol statistics and top talkers of a mirror port.

Attach to any memif interface (a SPAN port), classify every received burst with
numpy (ethertype behind up to two VLAN tags, IPv4/IPv6, transport protocol and
ports), count per protocol and per conversation, optionally write everything that
passes the filters to a pcap file, and redraw a small block in place on a terminal.
Runs until Ctrl-C (the final summary is printed and the capture closed cleanly),
``--duration`` or ``--count``.

The pieces: :mod:`memif.classify` (the header fields), :mod:`memif.tools.monitor.filters`
(header rows and filters), :mod:`memif.tools.monitor.stats` (counters),
:mod:`memif.tools.monitor.display` (the block); this module is the receive loop and the command.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from typing import Any

import numpy as np

from ...classify import classify
from ...errors import MemifError
from ...loop import EventLoop
from ...pcap import DEFAULT_SNAPLEN, PcapWriter, linktype_for_mode
from ...queue import QueueStats, RxBatch
from ...wire import Mode
from ..common import (
    LiveLine,
    StopRequest,
    add_connection_args,
    add_reconnect_args,
    control_loop,
    fail,
    one_line_errors,
    open_interface,
    print_json,
    reconnect_wanted,
    wait_rx,
)
from .display import Block, render, si
from .filters import Filter, burst_headers
from .stats import Stats

__all__ = ["Monitor", "add_parser", "run"]

BURST = 256


class Monitor:
    """The receive loop: bursts in, classified, filtered, counted and written."""

    def __init__(
        self,
        ethernet: bool,
        flt: Filter,
        writer: PcapWriter | None = None,
        count: int | None = None,
    ) -> None:
        self.ethernet = ethernet
        self.filter = flt
        self.writer = writer
        self.count = count
        self.stats = Stats()
        self.received = 0
        self.received_bytes = 0
        self.queue_stats: dict[int, QueueStats] = {}

    @property
    def done(self) -> bool:
        """True once ``count`` packets passed the filters."""
        return self.count is not None and self.stats.packets >= self.count

    def process(self, batch: RxBatch) -> int:
        """Classify, filter, count and write one burst; returns how many passed."""
        n = len(batch)
        if n == 0:
            return 0
        ts = time.time_ns()
        self.received += n
        self.received_bytes += batch.nbytes
        f = classify(burst_headers(batch), batch.lengths, self.ethernet)
        keep = self.filter.mask(f)
        index = None if keep is None else np.flatnonzero(keep)
        if self.count is not None:
            left = self.count - self.stats.packets
            if (n if index is None else len(index)) > left:
                index = (np.arange(n) if index is None else index)[:left]
        if index is not None:
            f = f.take(index)
        self.stats.add(f)
        if self.writer is not None:
            self.writer.write_batch(batch, ts, index)
        return len(f)

    def drops(self) -> int:
        """Receive descriptors dropped as invalid, over every connection so far."""
        return sum(s.drops for s in self.queue_stats.values())


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``memif monitor``."""
    p = subparsers.add_parser(
        "monitor",
        help="live protocol statistics and top talkers of a mirror port; pcap capture",
        description=(
            "Attach to a memif interface (a mirror/SPAN port) and show live per-protocol "
            "statistics and top talkers; --write saves every packet that passes the filters "
            "in pcap format. Runs until Ctrl-C, --duration or --count. Filter values of "
            "one option are ORed (comma separated or repeated), different options ANDed."
        ),
    )
    add_connection_args(p, role="client")
    one_line_errors(p, "monitor")
    p.add_argument(
        "--write",
        "-w",
        metavar="FILE.pcap",
        help="write every packet that passes the filters to a pcap file",
    )
    p.add_argument(
        "--snaplen",
        type=int,
        default=DEFAULT_SNAPLEN,
        help=f"bytes of each packet to write (default {DEFAULT_SNAPLEN})",
    )
    p.add_argument(
        "--nanosecond", action="store_true", help="write nanosecond timestamps (pcap ns magic)"
    )
    p.add_argument("--filter-mac", action="append", metavar="MAC", help="source or destination MAC")
    p.add_argument(
        "--filter-ip",
        action="append",
        metavar="ADDR",
        help="source or destination IPv4/IPv6 address (ARP sender/target too)",
    )
    p.add_argument(
        "--filter-proto",
        action="append",
        metavar="PROTO",
        help="arp, ipv4, ipv6, icmp, icmpv6, tcp, udp, vlan, lldp, ..., 0xETHERTYPE or IP proto",
    )
    p.add_argument(
        "--filter-port", action="append", metavar="PORT", help="TCP/UDP source or destination port"
    )
    p.add_argument("--duration", type=float, metavar="S", help="stop S seconds after connecting")
    p.add_argument("--count", type=int, metavar="N", help="stop after N packets passed the filters")
    add_reconnect_args(p)
    p.add_argument("--top", type=int, default=5, metavar="N", help="top talkers shown (default 5)")
    p.add_argument(
        "--interval",
        type=float,
        metavar="S",
        help="seconds between refreshes (default 0.5 on a terminal, 5 otherwise)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``memif monitor``."""
    try:
        mode = Mode.parse(args.mode)
        flt = Filter.from_args(args)
    except (ValueError, MemifError) as exc:
        return fail(str(exc))
    ethernet = mode is Mode.ETHERNET
    if flt.macs and not ethernet:
        return fail(f"--filter-mac needs an ethernet-mode interface (this one is {args.mode})")
    if args.count is not None and args.count <= 0:
        return fail("--count must be positive")
    if args.snaplen <= 0:
        return fail("--snaplen must be positive")
    if args.interval is not None and not args.interval > 0:
        return fail("--interval must be positive")
    writer = None
    if args.write:
        try:
            writer = PcapWriter(
                args.write,
                linktype_for_mode(mode),
                snaplen=args.snaplen,
                nanosecond=args.nanosecond,
            )
        except OSError as exc:
            return fail(f"cannot write {args.write}: {exc.strerror or exc}")
    try:
        try:
            sock, iface = open_interface(args, "memif-monitor")
        except (TimeoutError, MemifError, OSError) as exc:
            return fail(str(exc))
        mon = Monitor(ethernet, flt, writer, args.count)
        try:
            stopped_by, elapsed = _loop(args, sock, iface, mon)
        finally:
            sock.close()
    finally:
        if writer is not None:
            writer.close()
    return _report(args, mon, stopped_by, elapsed, flt)


def _loop(args: argparse.Namespace, sock: Any, iface: Any, mon: Monitor) -> tuple[str, float]:
    """Receive until stopped; returns (what stopped it, seconds)."""
    stop = StopRequest(escalate=(signal.SIGINT,))  # a second Ctrl-C: give up at once
    stopped_by = "signal"
    out = sys.stdout
    tty = out.isatty()
    period = args.interval if args.interval else (0.5 if tty else 5.0)
    block = None if args.json else Block(out, period)
    line = LiveLine(sys.stderr, period=period, enabled=args.json)
    reconnect, was_up = reconnect_wanted(args), iface.connected
    loop = control_loop(sock)  # what _wait turns and sleeps in
    title = f"memif monitor  {args.socket} {args.role} id {args.id} {args.mode}"
    start = time.monotonic()
    deadline = None if args.duration is None else start + args.duration
    last = (start, 0, 0)

    def draw(now: float, final: bool = False) -> None:
        nonlocal last
        t0, p0, b0 = (start, 0, 0) if final else last  # the final block shows the average
        dt = max(now - t0, 1e-9)
        rates = ((mon.stats.packets - p0) / dt, (mon.stats.bytes - b0) / dt)
        last = (now, mon.stats.packets, mon.stats.bytes)
        if block is not None:
            status = iface.state if iface.connected else f"{iface.state} (waiting for the peer)"
            block.show(
                render(
                    mon.stats,
                    title=title,
                    status=f"{status}  {now - start:.1f} s",
                    received=(mon.received, mon.received_bytes),
                    rates=rates,
                    drops=mon.drops(),
                    top=args.top,
                    ethernet=mon.ethernet,
                    filter_text=mon.filter.describe(),
                    writer=mon.writer,
                ),
                now,
            )
        elif not final:
            waiting = "" if iface.connected else "  (waiting for the peer)"
            line.update(f"{totals()} {si(rates[0], 'pps')}{waiting}", force=True)

    def totals() -> str:
        written = f" written {mon.writer.packets}" if mon.writer else ""
        return f"monitor: {mon.stats.packets} packets {si(mon.stats.bytes, 'B')}{written}"

    next_control = 0.0
    with stop.installed():
        while not stop:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                stopped_by = "duration"
                break
            got = 0
            for q in iface.rx_queues:
                mon.queue_stats[id(q.stats)] = q.stats
                batch = q.rx_burst(BURST)
                if len(batch):
                    got += len(batch)
                    mon.process(batch)
                    q.refill()
                    if mon.done:
                        break
            if mon.done:
                stopped_by = "count"
                break
            if now >= next_control:
                sock.poll(0)
                next_control = now + 0.1
                if was_up and not iface.connected and not reconnect:
                    stopped_by = "disconnected"  # --no-reconnect: the peer's leaving ends it
                    break
                was_up = iface.connected
            if (block is not None and block.due(now)) or (
                block is None and now - last[0] >= period
            ):
                draw(now)
            if not got:
                timeout = min(0.1, max(0.0, next_control - now))
                if deadline is not None:
                    timeout = min(timeout, max(0.0, deadline - now))
                _wait(loop, iface, timeout)
    end = time.monotonic()
    draw(end, final=True)
    line.finish(totals(), end - start, f"done, stopped by {stopped_by}")
    return stopped_by, end - start


def _wait(loop: EventLoop, iface: Any, timeout: float) -> None:
    """Sleep until a queue is kicked, the control socket has work, or ``timeout``
    (queues in polling mode: return at once, the monitor spins).

    ``loop`` is kept across calls and follows the queues of the moment.
    """
    queues = iface.rx_queues if iface.connected else []
    with contextlib.suppress(OSError):
        wait_rx(loop, queues, timeout)


def _report(
    args: argparse.Namespace, mon: Monitor, stopped_by: str, elapsed: float, flt: Filter
) -> int:
    stats = mon.stats
    if args.json:
        print_json(
            {
                "socket": args.socket,
                "role": args.role,
                "id": args.id,
                "mode": args.mode,
                "duration": round(elapsed, 6),
                "stopped_by": stopped_by,
                "received": {"packets": mon.received, "bytes": mon.received_bytes},
                "packets": stats.packets,
                "bytes": stats.bytes,
                "protocols": stats.protocols(),
                "top_talkers": stats.top_talkers(args.top, mon.ethernet),
                "filter": flt.as_json(),
                "written": mon.writer.packets if mon.writer else 0,
                "file": args.write,
                "rx_drops": mon.drops(),
            }
        )
        return 0
    summary = (
        f"monitor: {stats.packets} packets, {stats.bytes} bytes matched "
        f"({mon.received} received) in {elapsed:.1f} s, stopped by {stopped_by}"
    )
    if mon.writer is not None:
        summary += f"; wrote {mon.writer.packets} packets to {args.write}"
    print(summary, flush=True)
    return 0
