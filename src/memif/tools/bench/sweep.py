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

The same windows measure a memifd in another process (:mod:`.sweep_memifd`, which
``scripts/containers.sh sweep`` runs against the containerised topology): a bench is anything
with the :class:`Bench` methods, and :func:`sweep` and :func:`run_sweeps` take one.
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
from typing import Any, Protocol

from ...loop import RxMode
from .charts import check_path, pyplot
from .common import thread_schedstat, two_cpus
from .sweep_traffic import Traffic, TrafficPair, percentile_us

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
    #: the switch's own interface counters over the window, ``"<interface> rx|tx|drops"``
    #: (memifd's ``show interface``, when the sweep reads it through memifd's CLI)
    counters: dict[str, int] = field(default_factory=dict)


def proc_cpu_seconds(pid: int | str = "self") -> float:
    """A process's user + system CPU time, from /proc/PID/stat (clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Bench(Protocol):
    """One configuration and mode of a sweep: a switch, its traffic, their windows."""

    config: str
    mode: str
    frame: int
    opts: SweepOptions
    traffic: Traffic | TrafficPair | None

    def start(self) -> None:
        """Connect the switch's ports and the traffic; the switch learns both MACs."""

    def run_for(self, seconds: float) -> None:
        """Keep the switch forwarding for ``seconds`` (RuntimeError if the traffic failed)."""

    def errors(self) -> dict[str, int]:
        """The switch's error counters so far, ``node/error``."""

    def cpu(self) -> tuple[float, tuple[int, int] | None]:
        """The switch's CPU seconds so far, and its (run, wait) ns (:func:`thread_schedstat`)."""

    def counters(self) -> dict[str, int]:
        """The switch's interface counters so far (:attr:`SweepPoint.counters`; may be {})."""

    def close(self) -> None:
        """Stop the traffic, then the switch."""


class SweepBench:
    """One configuration and mode: the switch here, the traffic process, their windows."""

    def __init__(self, config: str, mode: str, frame: int, opts: SweepOptions) -> None:
        self.config, self.mode, self.frame, self.opts = config, mode, frame, opts
        self.runtime = tempfile.mkdtemp(prefix="rt-", dir=opts.workdir)
        self.sw: Any = None
        self.traffic: Traffic | TrafficPair | None = None
        self.ifaces: list[Any] = []
        self._allowed = os.sched_getaffinity(0)

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

    def _traffic(self, role: str, sock: str) -> Traffic:
        control = os.path.join(self.runtime, "traffic.ctl")
        return Traffic("both", role, sock, self.frame, self.opts.loop_cpu, control)

    def start(self) -> None:
        """Connect the switch's two ports and the traffic process; the switch learns both,
        then runs on the SWITCH CPU."""
        from ...vswitch import Switch

        role, copy = self.config.split("-")
        sock = f"@memif-bench-sweep-{os.getpid()}-{self.config}-{self.mode}"
        self.sw = Switch(runtime_dir=self.runtime, app_name="memif-bench-sweep")
        peer = "server" if role == "slave" else "client"
        if peer == "server":  # the socket must listen before the switch connects
            self.traffic = server = self._traffic(peer, sock)
            deadline = time.monotonic() + _WAIT
            while not server.listening():
                if server.failed() or time.monotonic() > deadline:
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
        traffic = self.traffic = self.traffic or self._traffic(peer, sock)
        self._run_until(lambda: all(i.link_up for i in self.ifaces), "switch link")
        self._run_until(traffic.ready, "traffic ready")
        zc = [p.zero_copy for p in self.sw.memif_ports()]
        if zc != [copy == "zc"] * 2:
            raise RuntimeError(f"switch ports zero-copy {zc}, wanted {copy == 'zc'}")
        os.sched_setaffinity(0, {self.opts.switch_cpu})

    def run_for(self, seconds: float) -> None:
        """Turn the switch for ``seconds``."""
        turn, monotonic = self.turn, time.monotonic
        end = monotonic() + seconds
        while monotonic() < end:
            turn()

    def errors(self) -> dict[str, int]:
        """The switch's node errors so far."""
        return {
            f"{n.node_name}/{name}": count
            for n in self.sw.graph.nodes
            for name, count in n.error_counts.items()
        }

    def cpu(self) -> tuple[float, tuple[int, int] | None]:
        """This process's CPU time (the switch is its only thread that runs) and schedstat."""
        return proc_cpu_seconds(), thread_schedstat()

    def counters(self) -> dict[str, int]:
        """Not read here: the traffic's counters are the switch's ports'."""
        return {}

    def window(self, pps: float | None, percent: float | None) -> SweepPoint:
        """:func:`window` of this bench."""
        return window(self, pps, percent)

    def close(self) -> None:
        """Stop the traffic (the switch keeps turning meanwhile), then the switch."""
        try:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, self._allowed)
            if self.traffic is not None:
                self.traffic.request_stop()
                deadline = time.monotonic() + 5.0
                while not self.traffic.failed() and time.monotonic() < deadline:
                    self.sw.run_once()
                self.traffic.stop()
        finally:
            if self.sw is not None:
                self.sw.close()
            shutil.rmtree(self.runtime, ignore_errors=True)


def window(bench: Bench, pps: float | None, percent: float | None) -> SweepPoint:
    """Offer ``pps`` (None: the peak) for the warmup, then measure over the window."""
    assert bench.traffic is not None
    traffic, opts = bench.traffic, bench.opts
    point = SweepPoint(bench.config, bench.mode, bench.frame, percent, target_pps=pps)
    traffic.set_rate(pps or 0)
    gc.collect()
    bench.run_for(opts.warmup)
    errors0, counters0 = bench.errors(), bench.counters()
    sent0, full0, rx0, bytes0, hist0 = traffic.snapshot()
    (cpu0, sched0), t0 = bench.cpu(), time.monotonic()
    bench.run_for(opts.seconds)
    (cpu1, sched1), t1 = bench.cpu(), time.monotonic()
    sent1, full1, rx1, bytes1, hist1 = traffic.snapshot()
    errors1, counters1 = bench.errors(), bench.counters()
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
    point.counters = {k: v - counters0.get(k, 0) for k, v in counters1.items()}
    point.latency_p50_us = percentile_us(hist, 50)
    point.latency_p99_us = percentile_us(hist, 99)
    point.seconds = round(wall, 4)
    point.loadavg = [round(x, 2) for x in os.getloadavg()]
    return point


def sweep(
    bench: Bench, percents: Sequence[float], report: Callable[[SweepPoint], None]
) -> list[SweepPoint]:
    """Measure the peak of one configuration and mode, then each percentage of it; each
    point goes to ``report`` as soon as it is measured. A failure ends the series with a
    point whose ``error`` says why. The bench is closed at the end."""
    points: list[SweepPoint] = []
    try:
        bench.start()
        peak = window(bench, None, None)
        points.append(peak)
        report(peak)
        for pct in percents:
            pps = max(1.0, (peak.delivered_pps or 0.0) * pct / 100.0)
            point = window(bench, pps, pct)
            points.append(point)
            report(point)
    except Exception as exc:  # the series stops; the next one runs
        failed = SweepPoint(
            bench.config, bench.mode, bench.frame, None, error=f"{type(exc).__name__}: {exc}"
        )
        points.append(failed)
        report(failed)
    finally:
        try:
            bench.close()
        except Exception as exc:  # after the points: the series' last word
            failed = SweepPoint(
                bench.config, bench.mode, bench.frame, None, error=f"{type(exc).__name__}: {exc}"
            )
            points.append(failed)
            report(failed)
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


def options(args: argparse.Namespace) -> tuple[list[str], list[int], SweepOptions]:
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
        configs, frames, opts = options(args)
    except ValueError as exc:  # ChartError is one
        print(f"memif bench-switch: {exc}", file=sys.stderr)
        return 2
    series = [(c, m, f) for f in frames for c in configs for m in args.modes]
    opts.workdir = tempfile.mkdtemp(prefix="memif-bench-sweep-")
    try:
        return run_sweeps(
            series,
            lambda c, m, f: SweepBench(c, m, f, opts),
            args,
            "memif bench-switch",
            f"memif bench-switch --rates, {time.strftime('%Y-%m-%d %H:%M')}",
        )
    finally:
        shutil.rmtree(opts.workdir, ignore_errors=True)


def run_sweeps(
    series: Sequence[tuple[str, str, int]],
    make_bench: Callable[[str, str, int], Bench],
    args: argparse.Namespace,
    prog: str,
    title: str,
) -> int:
    """Sweep each (configuration, mode, frame) of ``series`` with ``make_bench``'s bench:
    progress on stderr, ``args.json`` one object per point on stdout (else the table),
    ``args.plot`` the chart (``title`` and the load average over it). Returns 0, or 1 when
    a series failed. ``args``: rates, seconds, json, plot."""
    rates = ",".join(f"{r:g}" for r in args.rates)
    points: list[SweepPoint] = []
    for i, (config, mode, frame) in enumerate(series, 1):
        label = f"[{i}/{len(series)}] {config} {mode} frame={frame}"
        print(f"{label}: peak, then {rates}% of it, {args.seconds:g} s each ...",
              file=sys.stderr, flush=True)  # fmt: skip

        def report(p: SweepPoint, label: str = label) -> None:
            print(f"{label}: {_progress(p)}", file=sys.stderr, flush=True)
            if args.json:
                print(json.dumps(asdict(p)), flush=True)

        points += sweep(make_bench(config, mode, frame), args.rates, report)
    if not args.json:
        print(format_sweep(points))
    if args.plot is not None:
        from .sweep_chart import plot_sweep

        path = plot_sweep(points, args.plot, title=f"{title}, load {os.getloadavg()[0]:.1f}")
        print(f"{prog}: chart written to {path}", file=sys.stderr)
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
