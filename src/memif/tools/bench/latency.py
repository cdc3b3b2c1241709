"""``memif bench-latency``: round-trip time distributions at fixed offered rates.

Each point is one path, one receive mode and one offered rate. The sender is ``memif gen
txonly`` run in this process (:class:`memif.tools.gen.fwd.Generator`): it stamps every frame
with a sequence number and ``CLOCK_MONOTONIC`` at transmit, sends at ``--rate`` (a token
bucket; bursts of ``rate * 0.5 ms`` packets, so one packet at a time up to 2 kpps), receives
what comes back and takes the round trip of every returned frame (one clock, no skew).
The paths (``--paths``)::

    direct   sender (client) <-> memif gen macswap (server, a child process)
    memifd   sender (client) -> memifd a.sock, memif1/0 -> bridge-domain 1 -> memif2/0,
             b.sock -> memif gen macswap (client, a child process), and back
    testpmd  sender (server) <-> dpdk-testpmd macswap (client): DPDK's reflector, the reference

The receive modes (``--modes``) are those of :class:`memif.loop.RxMode`, applied to both
sides that are this package's ``memif gen``: ``interrupt`` (sleep on the queue's eventfd as
soon as a turn brings fewer than ``BUSY_VECTOR`` packets), ``polling`` (spin, a whole CPU
each), ``adaptive`` (memifd's rule, :mod:`memif.loop`: spin near the peak, nap up to
``MAX_COALESCE`` for bigger vectors under load, which adds up to that much to the RTT above
``BUSY_VECTOR / MAX_COALESCE`` packets per second, else as ``interrupt``). Through memifd
the mode is memifd's too (``set interface rx-mode`` on both its ports before each point);
testpmd always busy-polls: on that hop the mode is that of the Python end only.

Per point: ``sent`` (frames handed to the ring), ``received`` (those that came back),
``lost`` (sent - received), the RTT ``min``/``p50``/``p99``/``p99.9``/``max``/``mean`` in
microseconds and ``distribution``: [percentile, us] pairs from 0 to 100 (the latency
histogram of ``memif gen``: exact up to a million samples, then log bins of about 2 %).
``--json`` prints one object per point; ``--plot FILE`` draws the distributions (one panel per
path, one complementary CDF per mode and rate, log scales) with
:mod:`memif.tools.bench.charts`. Every point connects anew: its max includes the first
frame's trip (through memifd, the first flood before the bridge learned the MACs).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ...ctl.main import Client, CommandFailed, CtlError
from ...errors import MemifError
from ...loop import RxMode
from ..common import one_line_errors, open_interface
from ..demo.proc import Child, DemoError, memif_argv
from ..gen import cli as gen_cli
from ..gen.frames import Frames
from ..gen.fwd import Generator
from .charts import ChartError, check_path
from .common import choice_list, int_list, positive, testpmd_binary

PATHS = ("direct", "memifd", "testpmd")
MODES = tuple(m.value for m in (RxMode.INTERRUPT, RxMode.POLLING, RxMode.ADAPTIVE))
RATES = (1000, 10000, 100000)
#: The percentiles of each point's ``distribution`` (what the chart draws).
#: 0, then eight a decade of the share above (1 - p/100 = 10**(-k/8)) down to p99.99, then 100.
PERCENTILES = (0.0, *(round(100 * (1 - 10 ** (-k / 8)), 4) for k in range(1, 33)), 100.0)
MIN_FRAME, MAX_FRAME = 62, 2048  # memif gen's header; one 2048-byte buffer
MAX_RATE = 10_000_000
_WAIT = 20.0  # seconds to wait for a peer, memifd or testpmd
SENDER_PORT = "memif1/0"  # memifd's port of the sender (a.sock)
REFLECTOR_PORT = "memif2/0"  # memifd's port of the reflector (b.sock)

MEMIFD_CONFIG = """\
# memif bench-latency: two master ports bridged
create memif socket id 1 filename {dir}/a.sock
create memif socket id 2 filename {dir}/b.sock
create interface memif id 0 socket-id 1 master
create interface memif id 0 socket-id 2 master
create bridge-domain 1 learn 1
set interface l2 bridge memif1/0 1
set interface l2 bridge memif2/0 1
set interface state memif1/0 up
set interface state memif2/0 up
"""


class PointError(Exception):
    """One point could not be measured; the text is one line."""


@dataclass
class Point:
    """One measurement: a path, a receive mode and an offered rate (``--json`` prints it)."""

    path: str
    mode: str
    rate: int
    size: int
    seconds: float = 0.0
    sent: int = 0
    received: int = 0
    lost: int = 0
    min_us: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    p999_us: float | None = None
    max_us: float | None = None
    mean_us: float | None = None
    distribution: list[list[float]] = field(default_factory=list)
    error: str | None = None

    @property
    def label(self) -> str:
        """``path mode rate``, as the progress lines and the chart name a point."""
        return f"{self.path} {self.mode} {rate_text(self.rate)}"


@dataclass
class Options:
    """What every point of a run shares."""

    seconds: float
    size: int
    burst: int
    workdir: str
    testpmd: str | None = None
    quiet: bool = False


# ------------------------------------------------------------------------------------ the sender


def _gen_args(argv: Sequence[str]) -> argparse.Namespace:
    """``memif gen`` options parsed by its own parser (its defaults, its checks)."""
    parser = argparse.ArgumentParser(prog="memif")
    gen_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["gen", *argv])
    args.fwd = args.fwd_pos or "txonly"
    return args


def send(
    point: Point,
    opts: Options,
    socket: str,
    role: str,
    peer_ready: Callable[[], object] | None = None,
) -> None:
    """Run the sender of ``point`` on ``socket`` and fill its figures.

    ``peer_ready`` runs once connected, before the first frame (testpmd starts forwarding).
    """
    args = _gen_args(
        ["txonly", "--socket", socket, "--role", role, "--rx-mode", point.mode]
        + ["--rate", str(point.rate), "--duration", str(opts.seconds), "--size", str(point.size)]
        + ["--burst", str(opts.burst), "--linger", "0.2", "--drain-timeout", "2"]
        + ["--connect-timeout", str(_WAIT)]
        + (["--quiet"] if opts.quiet else [])
    )
    frames = Frames(args.size, True, args.src_mac, args.dst_mac, args.src_ip, args.dst_ip)
    try:
        sock, iface = open_interface(args, "memif-bench-latency")
    except (TimeoutError, MemifError, OSError) as exc:
        raise PointError(f"sender: {exc}") from None
    gen = Generator(args, sock, iface, frames)
    try:
        if peer_ready is not None:
            peer_ready()
        with gen.stop.installed():
            gen.run()
    except MemifError as exc:
        raise PointError(f"sender: {exc}") from None
    finally:
        gen.live.close()
        summary = gen.summary()
        sock.close()
    if gen.interrupted:
        raise KeyboardInterrupt
    if gen.disconnected:
        raise PointError(f"the reflector left: {gen.disconnected}")
    lat = gen.an.latency
    point.seconds = summary["seconds"]
    point.sent = summary["tx_packets"]
    point.received = gen.an.total("unique")
    point.lost = point.sent - point.received
    for key in ("min_us", "p50_us", "p99_us", "p999_us", "max_us", "mean_us"):
        setattr(point, key, summary[key])
    point.distribution = [
        [p, round(v / 1000, 3)] for p in PERCENTILES if (v := lat.percentile(p)) is not None
    ]


# ------------------------------------------------------------------------------------ the paths


def _reflector(opts: Options, name: str, socket: str, role: str, mode: str) -> Child:
    argv = memif_argv(
        "gen", "macswap", "--socket", socket, "--role", role, "--rx-mode", mode,
        "--connect-timeout", str(_WAIT), "--quiet", "--json",
    )  # fmt: skip
    return Child(name, argv, os.path.join(opts.workdir, name))


def _wait_path(path: str, child: Child, what: str) -> None:
    end = time.monotonic() + _WAIT
    while not os.path.exists(path):
        try:
            child.check()
        except DemoError as exc:
            raise PointError(str(exc)) from None
        if time.monotonic() > end:
            raise PointError(f"{what} did not open {path} in {_WAIT:g} s")
        time.sleep(0.01)


def _end_reflector(refl: Child) -> None:
    """The reflector ends when its peer leaves; a stuck one is stopped."""
    if refl.wait(5.0) is None:
        refl.stop(signal.SIGINT)
    if refl.proc.returncode:
        raise PointError(f"the reflector exited with status {refl.proc.returncode}"
                         f"{refl.stderr_tail()}")  # fmt: skip


def measure_direct(point: Point, opts: Options, memifd: Memifd | None = None) -> None:
    """Sender <-> ``memif gen macswap``, one memif pair."""
    socket = os.path.join(opts.workdir, "direct.sock")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket)
    refl = _reflector(opts, "reflector", socket, "server", point.mode)
    try:
        _wait_path(socket, refl, "the reflector")
        send(point, opts, socket, "client")
        _end_reflector(refl)
    finally:
        refl.stop(signal.SIGINT)


class Memifd:
    """memifd with two master ports in one bridge domain (:data:`MEMIFD_CONFIG`)."""

    def __init__(self, workdir: str) -> None:
        self.dir = workdir
        self.a, self.b = os.path.join(workdir, "a.sock"), os.path.join(workdir, "b.sock")
        conf = os.path.join(workdir, "memifd.conf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(MEMIFD_CONFIG.format(dir=workdir))
        cli = os.path.join(workdir, "cli.sock")
        argv = [sys.executable, "-m", "memif.daemon.main", "-c", conf]
        argv += ["--cli-socket", cli, "--runtime-dir", workdir]
        argv += ["--log", os.path.join(workdir, "memifd.log")]
        self.cli: Client | None = None
        self.child = Child("memifd", argv, os.path.join(workdir, "memifd"))
        try:
            for path in (self.a, self.b, cli):
                _wait_path(path, self.child, "memifd")
            self.cli = Client(cli, timeout=_WAIT)
        except (CtlError, OSError) as exc:
            self.close()
            raise PointError(f"memifd's CLI: {exc}") from None
        except BaseException:
            self.close()
            raise

    def wait_link(self, name: str, up: bool, check: Callable[[], None] = lambda: None) -> None:
        """Wait until ``name``'s link is up (or down), as ``show interface`` says; ``check()``
        between polls (a reflector that exited)."""
        end = time.monotonic() + _WAIT
        while True:
            self.check()
            check()
            assert self.cli is not None  # connected in __init__
            try:
                reply = self.cli.request("show interface", want_json=True)
            except CtlError as exc:
                raise PointError(f"memifd's CLI: {exc}") from None
            links = {d["name"]: bool(d["link_up"]) for d in reply.get("data") or ()}
            if links.get(name) is up:
                return
            if time.monotonic() > end:
                raise PointError(f"memifd's {name} not {'up' if up else 'down'} in {_WAIT:g} s")
            time.sleep(0.01)

    def set_rx_mode(self, mode: str) -> None:
        """``set interface rx-mode`` of both ports (the point's mode)."""
        assert self.cli is not None  # connected in __init__
        for port in (SENDER_PORT, REFLECTOR_PORT):
            try:
                self.cli.run(f"set interface rx-mode {port} {mode}")
            except CommandFailed as exc:
                raise PointError(str(exc)) from None
            except CtlError as exc:
                raise PointError(f"memifd's CLI: {exc}") from None

    def check(self) -> None:
        """PointError if memifd has exited."""
        try:
            self.child.check()
        except DemoError as exc:
            raise PointError(str(exc)) from None

    def close(self) -> None:
        """SIGTERM memifd (a clean stop)."""
        if self.cli is not None:
            self.cli.close()
        self.child.stop(signal.SIGTERM)


def measure_memifd(point: Point, opts: Options, memifd: Memifd | None = None) -> None:
    """Sender -> memifd bridge domain -> ``memif gen macswap`` -> back."""
    assert memifd is not None
    memifd.wait_link(REFLECTOR_PORT, up=False)  # the previous point's reflector has left
    memifd.set_rx_mode(point.mode)
    refl = _reflector(opts, "reflector", memifd.b, "client", point.mode)
    try:

        def check() -> None:
            if not refl.running:
                raise PointError(f"the reflector exited{refl.stderr_tail()}")

        memifd.wait_link(REFLECTOR_PORT, up=True, check=check)  # or the first frames are lost
        send(point, opts, memifd.a, "client")
        _end_reflector(refl)
    finally:
        refl.stop(signal.SIGINT)
    memifd.check()


def measure_testpmd(point: Point, opts: Options, memifd: Memifd | None = None) -> None:
    """Sender (server) <-> dpdk-testpmd macswap (client): the reference reflector."""
    from ..testpmd import MemifPort, Testpmd, TestpmdError

    socket = os.path.join(opts.workdir, "testpmd.sock")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket)
    started: list[Testpmd] = []
    failed: list[str] = []
    listening = threading.Event()

    def start() -> None:  # a testpmd client connects once, at startup: after we listen
        try:
            end = time.monotonic() + _WAIT
            while not os.path.exists(socket) and time.monotonic() < end:
                time.sleep(0.01)
            started.append(
                Testpmd(
                    [MemifPort("client", socket=socket)],
                    forward_mode="macswap",
                    binary=opts.testpmd,
                )  # fmt: skip
            )
        except (TestpmdError, OSError, ValueError) as exc:
            failed.append(str(exc).splitlines()[0])
        finally:
            listening.set()

    thread = threading.Thread(target=start, name="testpmd-start", daemon=True)
    thread.start()

    def forward() -> None:
        listening.wait(_WAIT + 30)
        if failed or not started:
            raise PointError(f"testpmd: {failed[0] if failed else 'did not start'}")
        started[0].start()

    try:
        send(point, opts, socket, "server", peer_ready=forward)
    finally:
        thread.join(_WAIT + 30)
        for tp in started:
            with contextlib.suppress(TestpmdError):
                tp.stop()
            tp.close()


MEASURE: dict[str, Callable[[Point, Options, Memifd | None], None]] = {
    "direct": measure_direct,
    "memifd": measure_memifd,
    "testpmd": measure_testpmd,
}


# ------------------------------------------------------------------------------------ the run


def plan(
    paths: Sequence[str], modes: Sequence[str], rates: Sequence[int], size: int
) -> list[Point]:
    """Every point, path by path, then mode, then rate."""
    return [Point(p, m, r, size) for p in paths for m in modes for r in rates]


@contextlib.contextmanager
def _memifd_for(path: str, opts: Options) -> Iterator[Memifd | None]:
    if path != "memifd":
        yield None
        return
    memifd = Memifd(opts.workdir)
    try:
        yield memifd
    finally:
        memifd.close()


def measure_all(points: list[Point], opts: Options, log: Callable[[str], None]) -> Iterator[Point]:
    """Measure ``points`` in order, yielding each one done (its ``error`` set on failure).

    memifd is started once for the points of its path; a path whose peer cannot start fails
    every point of it, the others still run.
    """
    by_path: dict[str, list[Point]] = {}
    for p in points:
        by_path.setdefault(p.path, []).append(p)
    n, i = len(points), 0
    for path, group in by_path.items():
        try:
            with _memifd_for(path, opts) as memifd:
                for point in group:
                    i += 1
                    log(f"[{i}/{n}] {point.label}, {point.size} B, {opts.seconds:g} s ...")
                    try:
                        MEASURE[path](point, opts, memifd)
                    except (PointError, MemifError, OSError) as exc:
                        point.error = str(exc)
                    log(f"[{i}/{n}] {point.label}: {summary_line(point)}")
                    yield point
        except (PointError, OSError) as exc:  # memifd did not start
            for point in group:
                if not point.sent and point.error is None:
                    point.error = f"memifd: {exc}"
                    i += 1
                    log(f"[{i}/{n}] {point.label}: failed: {point.error}")
                    yield point


def summary_line(p: Point) -> str:
    """One point's figures in one line (or its error)."""
    if p.error:
        return f"failed: {p.error}"
    return (
        f"sent {p.sent} received {p.received} lost {p.lost}; RTT us min {p.min_us} "
        f"p50 {p.p50_us} p99 {p.p99_us} p99.9 {p.p999_us} max {p.max_us}"
    )


def format_table(points: Sequence[Point]) -> str:
    """The human table of a run."""
    head = (
        f"{'path':8} {'mode':9} {'rate':>6} {'sent':>8} {'recv':>8} {'lost':>6} "
        f"{'min':>8} {'p50':>8} {'p99':>8} {'p99.9':>8} {'max':>9}"
    )
    lines = ["RTT in us", head]
    for p in points:
        row = f"{p.path:8} {p.mode:9} {rate_text(p.rate):>6}"
        if p.error:
            lines.append(f"{row} failed: {p.error}")
            continue
        lines.append(
            f"{row} {p.sent:8} {p.received:8} {p.lost:6} "
            + " ".join(f"{_us(v):>8}" for v in (p.min_us, p.p50_us, p.p99_us, p.p999_us))
            + f" {_us(p.max_us):>9}"
        )
    return "\n".join(lines)


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def machine_text(when: float) -> str:
    """The CPU model, the CPU count, the load average now and the date of ``when`` (UTC):
    what a chart of a run says of where it ran."""
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0]
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when))
    return f"{model}, {os.cpu_count()} CPUs, load {load:.1f}, {date}"


def rate_text(rate: int) -> str:
    """``1000`` -> ``1k``, ``2000000`` -> ``2M``: a rate as the table and the chart print it."""
    if rate >= 1_000_000 and not rate % 1_000_000:
        return f"{rate // 1_000_000}M"
    if rate >= 1000 and not rate % 1000:
        return f"{rate // 1000}k"
    return str(rate)


# ------------------------------------------------------------------------------------ CLI


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``bench-latency`` subcommand on ``subparsers`` and return its parser."""
    p = subparsers.add_parser(
        "bench-latency",
        help="round-trip latency distributions at fixed rates (direct, memifd, testpmd)",
        description=(
            "Measure round-trip times (min, p50, p99, p99.9, max, the distribution) of a "
            "memif gen sender at fixed offered rates through a reflector: direct (memif gen "
            "macswap), memifd (a bridge domain of two master ports, then memif gen macswap), "
            "testpmd (DPDK testpmd macswap, the reference); in each receive mode."
        ),
    )
    one_line_errors(p, "bench-latency")
    p.add_argument(
        "--paths",
        type=choice_list(PATHS, "path"),
        default=list(PATHS),
        metavar="LIST",
        help=f"paths (default {','.join(PATHS)})",
    )
    p.add_argument(
        "--modes",
        type=choice_list(MODES, "mode"),
        default=list(MODES),
        metavar="LIST",
        help=f"receive modes of the Python ends (default {','.join(MODES)})",
    )
    p.add_argument(
        "--rates",
        type=int_list,
        default=list(RATES),
        metavar="LIST",
        help=f"offered rates in packets/s (default {','.join(map(str, RATES))})",
    )
    p.add_argument(
        "--seconds",
        type=positive,
        default=2.0,
        metavar="S",
        help="sending time per point (default 2)",
    )
    p.add_argument("--size", type=int, default=64, metavar="BYTES", help="frame size (default 64)")
    p.add_argument(
        "--burst",
        type=int,
        default=32,
        metavar="N",
        help="most packets per burst the sender sends (default 32; at the rates above the "
        "token bucket sends rate * 0.5 ms packets at a time)",
    )
    p.add_argument("--plot", metavar="FILE", help="draw the distributions (.png, .svg, .pdf)")
    p.add_argument("--testpmd", default=None, metavar="PATH", help="dpdk-testpmd binary")
    p.add_argument("--json", action="store_true", help="print JSON Lines, one per point")
    p.add_argument("--quiet", "-q", action="store_true", help="no live line per point")
    p.set_defaults(func=run)
    return p


def _check(args: argparse.Namespace) -> None:
    """ValueError (one line) for options out of range."""
    for r in args.rates:
        if not 1 <= r <= MAX_RATE:
            raise ValueError(f"--rates: {r} must be 1..{MAX_RATE} packets/s")
    if not MIN_FRAME <= args.size <= MAX_FRAME:
        raise ValueError(f"--size {args.size} must be {MIN_FRAME}..{MAX_FRAME} (one buffer)")
    if not 1 <= args.burst <= 256:
        raise ValueError(f"--burst {args.burst} must be 1..256")
    if args.plot:
        check_path(args.plot)


def run(args: argparse.Namespace) -> int:
    """Run ``memif bench-latency``: 0, 1 if a point failed, 2 on bad options."""
    try:
        _check(args)
    except (ValueError, ChartError) as exc:
        print(f"memif bench-latency: {exc}", file=sys.stderr)
        return 2
    if args.plot:  # matplotlib missing: say so now, not after the run
        from .charts import pyplot

        try:
            pyplot()
        except ChartError as exc:
            print(f"memif bench-latency: {exc}", file=sys.stderr)
            return 2

    def log(text: str) -> None:
        print(f"memif bench-latency: {text}", file=sys.stderr, flush=True)

    points = plan(args.paths, args.modes, args.rates, args.size)
    testpmd = None
    if "testpmd" in args.paths:
        try:
            testpmd = testpmd_binary(args.testpmd)
            if not os.access(testpmd, os.X_OK):
                from ..testpmd import INSTALL_HINT

                raise ValueError(f"dpdk-testpmd {testpmd} not found ({INSTALL_HINT})")
        except ValueError as exc:
            log(f"testpmd path: {exc}")
            for p in points:
                if p.path == "testpmd":
                    p.error = str(exc)
    started = time.time()
    workdir = tempfile.mkdtemp(prefix="memif-bench-latency-")
    opts = Options(args.seconds, args.size, args.burst, workdir, testpmd, args.quiet)
    try:
        if args.json:  # the points refused before the run (no testpmd)
            for p in points:
                if p.error is not None:
                    print(json.dumps(asdict(p)), flush=True)
        todo = [p for p in points if p.error is None]
        for p in measure_all(todo, opts, log):
            if args.json:
                print(json.dumps(asdict(p)), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = points  # measured in place
    if not args.json:
        print(format_table(results))
    if args.plot:
        from .latency_chart import plot

        title = f"memif bench-latency, {args.size} B frames: {machine_text(started)}"
        try:
            log(f"chart: {plot(results, args.plot, title)}")
        except ChartError as exc:
            log(str(exc))
            return 1
    return 1 if any(p.error for p in results) else 0


__all__ = [
    "MODES",
    "PATHS",
    "PERCENTILES",
    "RATES",
    "Memifd",
    "Options",
    "Point",
    "PointError",
    "add_parser",
    "format_table",
    "measure_all",
    "plan",
    "run",
    "send",
]
