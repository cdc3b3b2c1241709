"""``memif bench-switch --rates``: the switch's throughput and CPU at each offered rate.

The seed's benchmark: a rate-limited Python source offers a series of rates through the
switch (in this process, on the SWITCH CPU) to a Python sink (:mod:`.sweep_traffic`, one
process on the LOOP CPU)::

    source -> memif A -> switch port 0 -> bridge domain 1 -> port 1 -> memif B -> sink

For each configuration and receive mode, the sweep first measures the peak (the source
sending as fast as the switch's ring takes frames), then offers each ``--rates`` percentage
of that peak for ``--seconds`` after ``--warmup``. Rates are percentages of the peak of the
same configuration and mode, measured in the same run (absolute rates are not offered: the
peak differs by an order of magnitude between configurations and machines).

Per point (:class:`SweepPoint`): the offered rate (frames the source offered per second:
sent plus refused by a full ring), the delivered rate (received by the sink), the drops by
reason (the switch's node errors as ``show errors`` names them, ``node/error``, plus the
source's ``source/ring-full``), the switch's CPU utilisation (this process's CPU time / wall
time over the window, from /proc/self/stat's utime+stime: the switch is the only thread that
runs then), ``runq`` (the time the switch was runnable but waited for its CPU / wall: other
load on the machine, which makes the point unreliable when it is not near 0), and the
one-way latency p50/p99 from source to sink through the switch (send and receive times on the
same clock, in the same process; a histogram of 16 bins per octave, so within 4.4%).

Receive modes (``--modes``): ``adaptive`` is memifd's main loop (it spins near its peak,
naps up to a millisecond for bigger vectors under load, and its queues switch to interrupt
mode for a sleep in ppoll when idle or when turns bring fewer than 8 frames: its CPU
follows the load, :mod:`memif.loop`); ``polling`` turns the same loop without ever sleeping
(as the loop benchmark does), the CPU at 100% at any rate; ``interrupt`` serves the same
loop's queues in interrupt mode (the peer kicks after every burst, the loop sleeps on the
eventfds as soon as a turn brings fewer than 8 frames, no coalescing): each set on the
switch's ports as memifd's ``set interface rx-mode`` sets it.
Configurations (``--configs``): ``slave-zc`` (switch slaves with zero-copy, the default of
VPP and memifd), ``slave-copy`` (slaves without zero-copy), ``master-copy`` (switch masters,
the traffic process's clients in copy mode). Frames: one buffer at most (60..2048 bytes).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ...loop import RxMode
from .charts import check_path, pyplot
from .common import thread_schedstat, two_cpus
from .sweep_traffic import LISTENING, READY, Traffic, percentile_us

CONFIGS = ("slave-zc", "slave-copy", "master-copy")
"""The sweep's configurations: (switch role)-(zero-copy or copy)."""
DEFAULT_CONFIGS = ("slave-zc", "slave-copy")
"""With and without zero-copy, the switch's ports slaves as VPP's usually are."""
MODES = tuple(m.value for m in (RxMode.ADAPTIVE, RxMode.POLLING, RxMode.INTERRUPT))  # memifd's
MIN_FRAME, MAX_FRAME = 60, 2048  # one buffer: the source does not chain
_WAIT = 20.0


@dataclass
class SweepOptions:
    """What is the same for every point of a sweep run."""

    seconds: float = 3.0
    warmup: float = 1.0
    switch_cpu: int = 0
    loop_cpu: int = 1
    workdir: str = "/tmp"


@dataclass
class SweepPoint:
    """One offered rate of one configuration and mode (``--json``: one object per point)."""

    config: str
    mode: str
    frame: int
    percent: float | None  # of the peak; None for the peak itself
    target_pps: float | None = None  # the rate asked of the source (None: as fast as it can)
    offered_pps: float | None = None
    delivered_pps: float | None = None
    delivered_gbps: float | None = None
    cpu: float | None = None
    runq: float | None = None  # share of the window the switch waited for its CPU
    drops: dict[str, int] = field(default_factory=dict)
    latency_p50_us: float | None = None
    latency_p99_us: float | None = None
    seconds: float | None = None
    loadavg: list[float] = field(default_factory=list)
    error: str | None = None


def _cpu_seconds() -> float:
    """This process's user + system CPU time, from /proc/self/stat (clock ticks)."""
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _error_counts(sw: Any) -> dict[str, int]:
    return {
        f"{n.node_name}/{name}": count
        for n in sw.graph.nodes
        for name, count in n.error_counts.items()
    }


class SweepBench:
    """One configuration and mode: the switch here, the traffic process, their windows."""

    def __init__(self, config: str, mode: str, frame: int, opts: SweepOptions) -> None:
        self.config, self.mode, self.frame, self.opts = config, mode, frame, opts
        self.runtime = tempfile.mkdtemp(prefix="rt-", dir=opts.workdir)
        self.sw: Any = None
        self.traffic: Traffic | None = None
        self.ifaces: list[Any] = []

    def turn(self) -> None:
        """One switch turn, memifd's (with its sleep: none in polling mode)."""
        self.sw.run_once()

    def _run_until(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + _WAIT
        while not done():
            if self.traffic is not None and self.traffic.failed():
                raise RuntimeError(f"the traffic process failed before {what} (see stderr)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {_WAIT} s")
            self.sw.run_once()

    def start(self) -> None:
        """Connect the switch's two ports and the traffic process; the switch learns both."""
        from ...vswitch import Switch

        role, copy = self.config.split("-")
        sock = f"@memif-bench-sweep-{os.getpid()}-{self.config}-{self.mode}"
        self.sw = Switch(runtime_dir=self.runtime, app_name="memif-bench-sweep")
        peer = "server" if role == "slave" else "client"
        if peer == "server":  # the socket must listen before the switch connects
            self.traffic = Traffic(peer, sock, self.frame, self.opts.loop_cpu)
            deadline = time.monotonic() + _WAIT
            while not self.traffic.ctl[LISTENING]:
                if self.traffic.failed() or time.monotonic() > deadline:
                    raise RuntimeError("the traffic process did not listen (see stderr)")
                time.sleep(0.005)
        self.sw.create_socket(1, sock)
        for i in (0, 1):
            sw_if = self.sw.create_memif(
                id=i, socket_id=1, role=role, buffer_size=2048, zero_copy=copy == "zc"
            )
            self.sw.set_state(sw_if.name, True)
            self.sw.set_bridge(sw_if.name, 1)
            self.sw.set_rx_mode(sw_if.name, self.mode)  # as memifd's set interface rx-mode
            self.ifaces.append(sw_if)
        if self.traffic is None:
            self.traffic = Traffic(peer, sock, self.frame, self.opts.loop_cpu)
        traffic = self.traffic
        self._run_until(lambda: all(i.link_up for i in self.ifaces), "switch link")
        self._run_until(lambda: bool(traffic.ctl[READY]), "traffic ready")
        zc = [p.zero_copy for p in self.sw.memif_ports()]
        if zc != [copy == "zc"] * 2:
            raise RuntimeError(f"switch ports zero-copy {zc}, wanted {copy == 'zc'}")

    def window(self, pps: float | None, percent: float | None) -> SweepPoint:
        """Offer ``pps`` (None: the peak) for the warmup, then measure over the window."""
        assert self.traffic is not None
        traffic, opts = self.traffic, self.opts
        point = SweepPoint(self.config, self.mode, self.frame, percent, target_pps=pps)
        traffic.set_rate(pps or 0)
        gc.collect()
        end = time.monotonic() + opts.warmup
        while time.monotonic() < end:
            self.turn()
        errors0 = _error_counts(self.sw)
        sent0, full0, rx0, bytes0, hist0 = traffic.snapshot()
        sched0 = thread_schedstat()
        cpu0, t0 = _cpu_seconds(), time.monotonic()
        end = t0 + opts.seconds
        turn, monotonic = self.turn, time.monotonic
        while monotonic() < end:
            turn()
        cpu1, t1 = _cpu_seconds(), time.monotonic()
        sched1 = thread_schedstat()
        sent1, full1, rx1, bytes1, hist1 = traffic.snapshot()
        errors1 = _error_counts(self.sw)
        if traffic.failed():
            raise RuntimeError("the traffic process failed during the window (see stderr)")
        wall = t1 - t0
        drops = {k: v - errors0.get(k, 0) for k, v in errors1.items() if v != errors0.get(k, 0)}
        if full1 != full0:
            drops["source/ring-full"] = full1 - full0
        hist = hist1 - hist0
        point.offered_pps = round((sent1 - sent0 + full1 - full0) / wall, 1)
        point.delivered_pps = round((rx1 - rx0) / wall, 1)
        point.delivered_gbps = round((bytes1 - bytes0) * 8 / wall / 1e9, 4)
        point.cpu = round((cpu1 - cpu0) / wall, 4)
        if sched0 is not None and sched1 is not None:
            point.runq = round((sched1[1] - sched0[1]) / 1e9 / wall, 4)
        point.drops = drops
        point.latency_p50_us = percentile_us(hist, 50)
        point.latency_p99_us = percentile_us(hist, 99)
        point.seconds = round(wall, 4)
        point.loadavg = [round(x, 2) for x in os.getloadavg()]
        return point

    def close(self) -> None:
        """Stop the traffic (the switch keeps turning meanwhile), then the switch."""
        try:
            if self.traffic is not None:
                self.traffic.request_stop()
                deadline = time.monotonic() + 5.0
                while self.traffic.proc.exitcode is None and time.monotonic() < deadline:
                    self.sw.run_once()
                self.traffic.stop()
        finally:
            if self.sw is not None:
                self.sw.close()
            shutil.rmtree(self.runtime, ignore_errors=True)


def sweep(
    config: str,
    mode: str,
    frame: int,
    percents: Sequence[float],
    opts: SweepOptions,
    report: Callable[[SweepPoint], None],
) -> list[SweepPoint]:
    """Measure the peak of one configuration and mode, then each percentage of it; each
    point goes to ``report`` as soon as it is measured. A failure ends the series with a
    point whose ``error`` says why."""
    bench = SweepBench(config, mode, frame, opts)
    points: list[SweepPoint] = []
    allowed = os.sched_getaffinity(0)
    try:
        bench.start()
        os.sched_setaffinity(0, {opts.switch_cpu})
        peak = bench.window(None, None)
        points.append(peak)
        report(peak)
        for pct in percents:
            pps = max(1.0, (peak.delivered_pps or 0.0) * pct / 100.0)
            point = bench.window(pps, pct)
            points.append(point)
            report(point)
    except Exception as exc:  # the series stops; the next one runs
        failed = SweepPoint(config, mode, frame, None, error=f"{type(exc).__name__}: {exc}")
        points.append(failed)
        report(failed)
    finally:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, allowed)
        bench.close()
    return points


def percent_list(text: str) -> list[float]:
    """``"10,25,50%"`` -> ``[10.0, 25.0, 50.0]``: percentages of the peak, 0 < p <= 100
    (an argparse type)."""
    out: list[float] = []
    for item in (x.strip().rstrip("%") for x in text.split(",")):
        if not item:
            continue
        try:
            value = float(item)
        except ValueError:
            value = float("nan")
        if not 0 < value <= 100:
            raise argparse.ArgumentTypeError(
                f"rate {item!r}: expected percentages of the peak, 0 < p <= 100"
            )
        out.append(value)
    if not out:
        raise argparse.ArgumentTypeError("expected at least one percentage")
    return out


def _options(args: argparse.Namespace) -> tuple[list[str], list[int], SweepOptions]:
    """The sweep's configurations, frames and options from the command line (ValueError)."""
    configs = args.configs or list(DEFAULT_CONFIGS)
    bad = [c for c in configs if c not in CONFIGS]
    if bad:
        raise ValueError(f"--configs {','.join(bad)}: the rate sweep measures {', '.join(CONFIGS)}")
    frames = args.frames or [64]
    for f in frames:
        if not isinstance(f, int) or not MIN_FRAME <= f <= MAX_FRAME:
            raise ValueError(
                f"--frames {f}: the rate sweep sends one buffer per frame, {MIN_FRAME}..{MAX_FRAME}"
            )
    if args.plot is not None:
        check_path(args.plot)
        pyplot()  # refused now, not after the sweep, when matplotlib is missing
    switch_cpu, loop_cpu = two_cpus(args.cpus, "the switch and the traffic")
    opts = SweepOptions(
        seconds=args.seconds,
        warmup=args.warmup,
        switch_cpu=switch_cpu,
        loop_cpu=loop_cpu,
    )
    return configs, frames, opts


def run(args: argparse.Namespace) -> int:
    """``memif bench-switch --rates``: every configuration, mode and frame; returns 0, 1 if
    a series failed, 2 on bad options."""
    try:
        configs, frames, opts = _options(args)
    except ValueError as exc:  # ChartError is one
        print(f"memif bench-switch: {exc}", file=sys.stderr)
        return 2
    series = [(c, m, f) for f in frames for c in configs for m in args.modes]
    rates = ",".join(f"{r:g}" for r in args.rates)
    points: list[SweepPoint] = []
    opts.workdir = tempfile.mkdtemp(prefix="memif-bench-sweep-")
    try:
        for i, (config, mode, frame) in enumerate(series, 1):
            label = f"[{i}/{len(series)}] {config} {mode} frame={frame}"
            print(f"{label}: peak, then {rates}% of it, {opts.seconds:g} s each ...",
                  file=sys.stderr, flush=True)  # fmt: skip

            def report(p: SweepPoint, label: str = label) -> None:
                print(f"{label}: {_progress(p)}", file=sys.stderr, flush=True)
                if args.json:
                    print(json.dumps(asdict(p)), flush=True)

            points += sweep(config, mode, frame, args.rates, opts, report)
    finally:
        shutil.rmtree(opts.workdir, ignore_errors=True)
    if not args.json:
        print(format_sweep(points))
    if args.plot is not None:
        from .sweep_chart import plot_sweep

        load = os.getloadavg()[0]
        title = f"memif bench-switch --rates, {time.strftime('%Y-%m-%d %H:%M')}, load {load:.1f}"
        path = plot_sweep(points, args.plot, title=title)
        print(f"memif bench-switch: chart written to {path}", file=sys.stderr)
    return 1 if any(p.error for p in points) else 0


def _progress(p: SweepPoint) -> str:
    if p.error is not None:
        return f"failed: {p.error}"
    rate = "peak" if p.percent is None else f"{p.percent:g}%"
    drops = sum(p.drops.values())
    return (
        f"{rate}: offered {p.offered_pps or 0:.0f}/s, delivered {p.delivered_pps or 0:.0f}/s, "
        f"cpu {100 * (p.cpu or 0):.0f}%, runq {100 * (p.runq or 0):.0f}%, drops {drops}, "
        f"p50 {_us(p.latency_p50_us)} us, "
        f"p99 {_us(p.latency_p99_us)} us, load {p.loadavg[0] if p.loadavg else '-'}"
    )


def format_sweep(points: Sequence[SweepPoint]) -> str:
    """The human-readable table, one line per point."""
    lines = [
        f"{'config':<12} {'mode':<9} {'frame':>5} {'rate':>5} {'offered':>10} "
        f"{'delivered':>10} {'cpu':>5} {'runq':>5} {'p50 us':>8} {'p99 us':>8}  drops"
    ]
    for p in points:
        rate = "peak" if p.percent is None else f"{p.percent:g}%"
        if p.error is not None:
            lines.append(f"{p.config:<12} {p.mode:<9} {p.frame:>5} failed: {p.error}")
            continue
        cpu = "-" if p.cpu is None else f"{100 * p.cpu:.0f}%"
        runq = "-" if p.runq is None else f"{100 * p.runq:.0f}%"
        drops = ", ".join(f"{k} {v}" for k, v in p.drops.items()) or "0"
        lines.append(
            f"{p.config:<12} {p.mode:<9} {p.frame:>5} {rate:>5} {p.offered_pps or 0:>10.0f} "
            f"{p.delivered_pps or 0:>10.0f} {cpu:>5} {runq:>5} {_us(p.latency_p50_us):>8} "
            f"{_us(p.latency_p99_us):>8}  {drops}"
        )
    lines += [
        "",
        "offered/delivered = frames/s the source offered (sent + refused by a full ring) and "
        "the sink received; rate = % of the peak (the source as fast as the ring takes);",
        "cpu = the switch process's CPU time / wall; runq = time the switch waited for its CPU "
        "/ wall (other load: the point is unreliable when it is not near 0);",
        "p50/p99 = one-way latency source -> switch -> sink.",
    ]
    return "\n".join(lines)


def _us(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"
