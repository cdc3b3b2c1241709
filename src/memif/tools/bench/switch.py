"""``memif bench-switch``'s measurements: throughput of the Python switch between two memif ports.

Its command line (options, plan, table) is :mod:`.switch_cli`. With ``--rates`` it runs the rate
sweep instead (:mod:`.sweep`: the switch's throughput, CPU, drops and latency at offered
rates); what follows is the saturated loop.

The loop (the classic way to measure a switch sitting between two memif ports): one DPDK
testpmd, the *loop driver*, holds both memif ports in ``io`` forwarding and primes the loop
with ``start tx_first N``: N bursts on each port. Everything it receives on one port it sends
out of the other unchanged, so the packets circulate for ever::

    testpmd port 0 -> switch memif1/0 -> bridge domain 1 -> memif1/1 -> testpmd port 1 --+
          ^                                                                               |
          +------------------------------- io forwarding ---------------------------------+

and the same the other way round for the packets primed on port 1. Port X's packets carry the
source MAC of port X and, by default, the destination MAC of the other port (``--eth-peer``),
so after the first packets the switch forwards known unicast (l2-fwd); ``--flood`` leaves the
destinations unknown, so every packet is flooded (l2-flood). Primed packets beyond what the
rings hold are dropped at once; the rest circulate.

Configurations (``--configs``):

* ``master-zc``: switch ports are masters (servers); testpmd clients with ``zero-copy=yes``
  (testpmd's mbufs are the shared memory; EAL ``--single-file-segments``);
* ``master-copy``: switch masters; testpmd clients in copy mode;
* ``slave-zc``: switch ports are slaves (clients) with the switch's zero-copy (its buffer pool
  is the shared memory, the default for slaves); testpmd servers;
* ``slave-copy``: switch slaves without zero-copy; testpmd servers;
* ``reference``: no switch: a second testpmd with two server ports in ``io`` forwarding sits in
  the middle, ``testpmd#1 (clients, io, primed) <-> testpmd#2 (servers, io)``.

CPUs (``--cpus SWITCH,LOOP``, default the first two this process may use): the switch (this
process's main thread, in-process) or the middle testpmd's forwarding lcore runs on SWITCH; the
loop driver's forwarding lcore on LOOP. testpmd main lcores sit idle at their prompt and may
share a CPU with anything.

Frames (``--frames``): sizes from 60 to 9216 bytes, and ``imix``. Frames longer than a buffer
(2048 bytes) are chained: testpmd sends them as mbuf chains of 2048-byte segments
(``--txpkts=2048,2048,...``), which its memif driver writes over several descriptors in copy
mode (or one descriptor per segment with ``zero-copy=yes``); the switch copies each chain into
one of its 10240-byte pool buffers, and a slave switch with zero-copy posts those buffers on its
receive rings, so its peer writes a jumbo frame into one descriptor. testpmd 22.11's memif driver
overruns a ring with chained frames once the ring is full (the switch then disconnects it:
"ring counter out of range"), so chained sizes are primed with at most as many bursts as fit one
1024-slot ring (6 bursts of 32 at 9000 bytes); ``--ring-size`` gives every ring (testpmd's and
the switch's) more slots, and the loop more jumbo frames (25 bursts at 4096 slots). ``imix`` is
the simple IMIX 7:4:1 of 64, 570 and 1518-byte frames: the loop driver primes 7, 4 and 1 bursts
(times 2) of each in turn (``set txpkts`` between them; ``--no-flush-rx`` keeps the frames
already circulating at each restart), so the frames circulating keep that mix (the mean frame is
353.8 bytes).

Measurement: connect, prime, run ``--warmup`` seconds, then count over ``--seconds``. The rate
is packets forwarded in both directions per second: for the switch, the rx packets (and bytes)
of both its interfaces; for the reference, the RX-packets (and RX-bytes) of both ports of the
middle testpmd (``show port stats``; the read time is the middle of the two commands). Gbit/s =
frame bytes counted * 8 / seconds (``bytes``: frame bytes without FCS).
``ratio`` = Mpps / the reference's Mpps at the same frame size in this run (the reference is
measured first at each size). For the switch also, over the same window: ``cpu`` = process CPU
time / wall time, ``busy`` = the switch's ``busy_ns`` (wall time of the loop turns that moved
packets, including any time the thread was preempted in them) / wall time, ``runq`` = time its
thread waited for a CPU while runnable / wall time (other load on the machine: the figures are
unreliable when it is not near 0), ``empty_polls`` = share of loop turns that found no packet,
and per graph node (like ``show runtime``): calls, vectors, vectors per call, ns and clocks per
packet (clocks at the ``cpu MHz`` of /proc/cpuinfo). ``loadavg`` is the load average right after
the measurement.
"""

from __future__ import annotations

import contextlib
import cProfile
import functools
import gc
import io
import itertools
import os
import pstats
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ...vswitch.memif_port import DEFAULT_VECTOR
from . import open_path
from .common import (
    set_rates,
    thread_schedstat,
)

REFERENCE = "reference"
ROUTED_TARGET = 0.8  # routed Mpps / bridged Mpps (issue 12)
MIN_FRAME = 60
MAX_FRAME = 9216  # the switch's jumbo frames (its pool buffers hold 10240 bytes)
BUFFER_SIZE = 2048  # every ring buffer; longer frames are chained
RING_SLOTS = 1024  # testpmd's (rsize 10) and the switch's rings, unless --ring-size says
MIN_RING, MAX_RING = 256, 1 << 14  # --ring-size: what testpmd's memif (rsize 8..14) takes
BURST = 32  # testpmd's burst: what one primed burst holds
IMIX = "imix"
IMIX_MIX = ((64, 7), (570, 4), (1518, 1))
"""The simple IMIX: (frame bytes, share), 7:4:1 of 64, 570 and 1518 bytes."""
IMIX_SCALE = 2  # the loop driver primes 14, 8 and 2 bursts (384 frames per port)
Frame = int | str
"""A frame size in bytes, or ``"imix"``."""
MAC = ("02:00:00:00:00:a0", "02:00:00:00:00:a1")
"""MAC addresses of the loop driver's ports 0 and 1."""
_WAIT = 20.0  # seconds to wait for testpmd or a link
_names = itertools.count()


@dataclass(frozen=True)
class Config:
    """One way of putting the switch (or testpmd) between the loop driver's two ports."""

    name: str
    switch_role: str | None  # "master" or "slave"; None for the reference
    switch_zero_copy: bool  # the switch's own zero-copy (slaves only)
    testpmd_zero_copy: bool  # the loop driver's zero-copy (clients only)
    description: str
    path: str | None = None  # an open path (open_path.PATHS) instead of the primed loop


CONFIGS = {
    c.name: c
    for c in (
        Config(
            REFERENCE,
            None,
            False,
            False,
            "no switch: testpmd#1 (2 client ports, io, primed) <-> testpmd#2 (2 server ports, io)",
        ),
        Config(
            "master-zc",
            "master",
            False,
            True,
            "switch masters (servers) <-> testpmd clients zero-copy=yes",
        ),
        Config(
            "master-copy",
            "master",
            False,
            False,
            "switch masters (servers) <-> testpmd clients in copy mode",
        ),
        Config(
            "slave-zc",
            "slave",
            True,
            False,
            "switch slaves (clients) with switch zero-copy <-> testpmd servers",
        ),
        Config(
            "slave-copy",
            "slave",
            False,
            False,
            "switch slaves (clients) without zero-copy <-> testpmd servers",
        ),
        Config(
            open_path.BRIDGED,
            "master",
            False,
            False,
            "open path, bridged: testpmd txonly -> switch bridge domain -> testpmd rxonly",
            open_path.BRIDGED,
        ),
        Config(
            open_path.ROUTED,
            "master",
            False,
            False,
            "open path, routed: testpmd txonly 10.10.0.2 -> switch router -> 10.20.0.2 rxonly",
            open_path.ROUTED,
        ),
    )
}
"""Every configuration by name, the reference first."""


@dataclass
class Options:
    """Everything that is the same for every measurement of a run."""

    seconds: float = 3.0
    warmup: float = 1.0
    prime: int = 48
    flood: bool = False
    vector_size: int = DEFAULT_VECTOR
    ring_size: int = RING_SLOTS
    rx_mode: str = "adaptive"  # the switch's (set interface rx-mode) in the loop
    switch_cpu: int = 0
    loop_cpu: int = 1
    profile: int = 0
    testpmd: str | None = None
    workdir: str = "/tmp"


@dataclass
class Result:
    """One measurement, as printed by ``--json`` (one object per line)."""

    config: str
    frame: Frame
    mpps: float | None = None
    gbps: float | None = None
    ratio: float | None = None
    vs_bridged: float | None = None  # routed: Mpps / bridged Mpps at the same frame, same run
    cpu: float | None = None
    busy: float | None = None
    nodes: dict[str, dict[str, float]] = field(default_factory=dict)
    description: str = ""
    packets: int | None = None
    bytes: int | None = None
    seconds: float | None = None
    runq: float | None = None
    empty_polls: float | None = None
    errors: dict[str, int] = field(default_factory=dict)
    sink_refused: int | None = None  # the open path: forwarded, refused by the sink's ring
    busy_mpps: float | None = None  # the open path: Mpps per second the switch was busy
    prime: int = 0
    ring_size: int = RING_SLOTS
    flood: bool = False
    vector_size: int = 0
    rx_mode: str | None = None
    switch_cpu: int = 0
    loop_cpu: int = 1
    loadavg: list[float] = field(default_factory=list)
    profiled: bool = False
    error: str | None = None


# ---------------------------------------------------------------------------------- helpers


_T = TypeVar("_T")


def while_switching(sw: Any, fn: Callable[[], _T], timeout: float = 60.0) -> _T:
    """Call ``fn`` in a thread while this thread keeps the switch running; return its value.

    testpmd commands block, and a memif peer needs the switch to answer its handshake (or to
    keep forwarding) meanwhile.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    t = threading.Thread(target=target, name="bench-switch-cmd", daemon=True)
    t.start()
    deadline = time.monotonic() + timeout
    while t.is_alive():
        sw.run_once()
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer within {timeout} s")
    if "error" in box:
        raise box["error"]
    value: _T = box["value"]
    return value


def _node_snapshot(sw: Any) -> dict[str, tuple[int, int, int]]:
    return {
        n.node_name: (n.calls, n.vectors, n.ns)
        for n in sw.graph.nodes
        if n.node_name != "(deleted)"
    }


def _error_snapshot(sw: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in sw.graph.nodes:
        for name, count in n.error_counts.items():
            out[f"{n.node_name}/{name}"] = count
    return out


def node_figures(
    before: dict[str, tuple[int, int, int]],
    after: dict[str, tuple[int, int, int]],
    mhz: float,
) -> dict[str, dict[str, float]]:
    """Per-node ``show runtime`` figures over the window between two snapshots."""
    out = {}
    for name, (calls1, vectors1, ns1) in after.items():
        calls0, vectors0, ns0 = before.get(name, (0, 0, 0))
        calls, vectors, ns = calls1 - calls0, vectors1 - vectors0, ns1 - ns0
        if not calls:
            continue
        per_packet = ns / vectors if vectors else 0.0
        out[name] = {
            "calls": calls,
            "vectors": vectors,
            "vectors_per_call": round(vectors / calls, 2),
            "ns_per_packet": round(per_packet, 1),
            "clocks_per_packet": round(per_packet * mhz / 1000.0, 1),
        }
    return out


def _cpu_mhz() -> float:
    from ...daemon.commands import cpu_mhz

    return cpu_mhz()[0]


def segments(frame: int) -> list[int]:
    """The mbuf segments testpmd sends a ``frame``-byte frame in: 2048 bytes each but the last."""
    full, rest = divmod(frame, BUFFER_SIZE)
    return [BUFFER_SIZE] * full + ([rest] if rest else [])


def mean_frame(frame: Frame) -> float:
    """The mean frame size in bytes: the size itself, or the IMIX mix's weighted mean."""
    if frame == IMIX:
        return sum(f * w for f, w in IMIX_MIX) / sum(w for _, w in IMIX_MIX)
    return float(frame)


def priming(frame: Frame, prime: int, ring: int = RING_SLOTS) -> list[tuple[int, int]]:
    """The loop driver's priming: ``(frame bytes, bursts per port)`` in order.

    One size: ``prime`` bursts, at most as many as fit one ``ring``-slot ring when the
    frame is chained (testpmd 22.11 overruns a full ring with chains). IMIX: 7, 4 and 1
    times ``IMIX_SCALE`` bursts of 64, 570 and 1518 bytes.
    """
    if frame == IMIX:
        return [(f, w * IMIX_SCALE) for f, w in IMIX_MIX]
    assert isinstance(frame, int)
    slots = len(segments(frame))
    if slots > 1:
        prime = max(1, min(prime, ring // (slots * BURST)))
    return [(frame, prime)]


def _driver_args(frame: Frame, opts: Options) -> dict[str, Any]:
    """Testpmd keyword arguments of the loop driver (forwarding lcore on the LOOP CPU)."""
    extra = [] if opts.flood else [f"--eth-peer=0,{MAC[1]}", f"--eth-peer=1,{MAC[0]}"]
    steps = priming(frame, opts.prime, opts.ring_size)
    extra.append("--txpkts=" + ",".join(map(str, segments(steps[0][0]))))
    if len(steps) > 1:  # the frames primed before a restart stay in the loop
        extra.append("--no-flush-rx")
    return {
        "forward_mode": "io",
        "main_lcore": opts.switch_cpu,
        "lcores": (opts.switch_cpu, opts.loop_cpu),
        "extra_args": extra,
        "binary": opts.testpmd,
        "startup_timeout": _WAIT,
    }


def prime_loop(driver: Any, frame: Frame, opts: Options, call: Callable[[Any], Any]) -> int:
    """Prime the loop (``start tx_first``, one size after the other for IMIX) through
    ``call`` (which runs a blocking testpmd command); returns the bursts primed per port."""
    steps = priming(frame, opts.prime, opts.ring_size)
    for i, (size, bursts) in enumerate(steps):
        if i:  # stop forwarding (the loop's frames wait in the rings), change the size
            call(driver.stop)
            call(functools.partial(driver.cmd, "set txpkts " + ",".join(map(str, segments(size)))))
        call(functools.partial(driver.start_tx_first, bursts))
    return sum(b for _, b in steps)


# ---------------------------------------------------------------------------------- measuring


def measure_reference(frame: Frame, opts: Options) -> dict[str, Any]:
    """testpmd#1 (clients, io, primed) <-> testpmd#2 (servers, io): packets through #2."""
    from ..testpmd import MemifPort, Testpmd

    sock = f"@memif-bench-switch-{os.getpid()}-{next(_names)}"
    rsize = opts.ring_size.bit_length() - 1
    middle = driver = None
    try:
        # the middle testpmd forwards on the SWITCH CPU, as the switch would
        middle = Testpmd(
            [
                MemifPort("server", id=i, socket=sock, bsize=BUFFER_SIZE, rsize=rsize)
                for i in (0, 1)
            ],
            forward_mode="io",
            main_lcore=opts.loop_cpu,
            lcores=(opts.switch_cpu, opts.loop_cpu),
            binary=opts.testpmd,
            startup_timeout=_WAIT,
        )
        assert middle.forwarding_lcores == [opts.switch_cpu]
        driver = Testpmd(
            [
                MemifPort("client", id=i, socket=sock, bsize=BUFFER_SIZE, rsize=rsize, mac=MAC[i])
                for i in (0, 1)
            ],
            **_driver_args(frame, opts),
        )
        assert driver.forwarding_lcores == [opts.loop_cpu]
        for linked in (middle, driver):
            for port in (0, 1):
                linked.wait_link_up(port, _WAIT)
        middle.start()
        primed = prime_loop(driver, frame, opts, lambda fn: fn())
        time.sleep(opts.warmup)

        def read() -> tuple[int, int, float]:
            t0 = time.monotonic()
            stats = [middle.port_stats(port) for port in (0, 1)]
            t = (t0 + time.monotonic()) / 2
            return sum(st.rx_packets for st in stats), sum(st.rx_bytes for st in stats), t

        p0, b0, t0 = read()
        time.sleep(opts.seconds)
        p1, b1, t1 = read()
        # testpmd may crash if its peer leaves while it forwards: stop both first
        driver.stop()
        middle.stop()
        return {"packets": p1 - p0, "bytes": b1 - b0, "seconds": t1 - t0, "prime": primed}
    finally:
        for tp in (driver, middle):
            if tp is not None:
                tp.close()


def window(
    sw: Any, counted: Callable[[], tuple[int, int]], opts: Options, log: Callable[[str], None]
) -> dict[str, Any]:
    """Run the switch (in this thread) for ``opts.warmup`` seconds, then over a window of
    ``opts.seconds``: the packets and bytes ``counted()`` grew by, and the switch's CPU,
    busy time, run-queue wait, empty polls, per-node figures and errors over it."""
    gc.collect()
    end = time.monotonic() + opts.warmup
    while time.monotonic() < end:
        sw.run_once()
    run_once, monotonic = sw.run_once, time.monotonic
    profiler = cProfile.Profile() if opts.profile else None
    nodes0, errors0 = _node_snapshot(sw), _error_snapshot(sw)
    sched0 = thread_schedstat()
    busy0, cpu0 = sw.busy_ns, time.process_time()
    packets0, bytes0 = counted()
    turns = empty = 0
    t0 = monotonic()
    end = t0 + opts.seconds
    if profiler is not None:
        profiler.enable()
    while monotonic() < end:
        turns += 1
        if not run_once():
            empty += 1
    if profiler is not None:
        profiler.disable()
    t1 = monotonic()
    packets1, bytes1 = counted()
    busy1, cpu1 = sw.busy_ns, time.process_time()
    sched1 = thread_schedstat()
    nodes1, errors1 = _node_snapshot(sw), _error_snapshot(sw)
    wall = t1 - t0
    errors = {k: v - errors0.get(k, 0) for k, v in errors1.items() if v != errors0.get(k, 0)}
    out = {
        "packets": packets1 - packets0,
        "bytes": bytes1 - bytes0,
        "seconds": wall,
        "cpu": (cpu1 - cpu0) / wall,
        "busy": (busy1 - busy0) / 1e9 / wall,
        "runq": (sched1[1] - sched0[1]) / 1e9 / wall if sched0 and sched1 else None,
        "empty_polls": empty / turns if turns else None,
        "nodes": node_figures(nodes0, nodes1, _cpu_mhz()),
        "errors": errors,
    }
    if profiler is not None:
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(opts.profile)
        log(f"profile of the window (top {opts.profile} by own time):\n{text.getvalue()}")
        out["profiled"] = True
    return out


@contextlib.contextmanager
def switch_session(opts: Options) -> Iterator[tuple[Any, list[Any]]]:
    """A switch for one measurement (in this thread) and the list of testpmds it talks to
    (the caller appends them).  On exit: this thread's CPU affinity back, every testpmd
    closed while the switch still answers it, the switch closed, its directory removed."""
    from ...vswitch import Switch

    runtime = tempfile.mkdtemp(prefix="rt-", dir=opts.workdir)
    sw = Switch(runtime_dir=runtime, app_name="memif-bench-switch", vector_size=opts.vector_size)
    testpmds: list[Any] = []
    allowed = os.sched_getaffinity(0)
    try:
        yield sw, testpmds
    finally:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, allowed)
        try:
            for tp in testpmds:
                while_switching(sw, tp.close)
        finally:
            sw.close()
            shutil.rmtree(runtime, ignore_errors=True)


def measure_switch(
    config: Config, frame: Frame, opts: Options, log: Callable[[str], None]
) -> dict[str, Any]:
    """The loop driver's two ports bridged by the Python switch running in this thread."""
    from ..testpmd import MemifPort, Testpmd

    sock = f"@memif-bench-switch-{os.getpid()}-{next(_names)}"
    role = config.switch_role
    if role is None:
        raise ValueError(f"{config.name} puts no switch in the loop: measure_reference runs it")
    testpmd_role = "client" if role == "master" else "server"
    ports = [
        MemifPort(
            testpmd_role,
            id=i,
            socket=sock,
            bsize=BUFFER_SIZE,
            rsize=opts.ring_size.bit_length() - 1,
            mac=MAC[i],
            zero_copy=config.testpmd_zero_copy,
        )
        for i in (0, 1)
    ]
    with switch_session(opts) as (sw, testpmds):
        if testpmd_role == "server":  # the socket must exist before the switch connects
            testpmds.append(Testpmd(ports, **_driver_args(frame, opts)))
        sw.create_socket(1, sock)
        ifaces = [
            sw.create_memif(
                id=i,
                socket_id=1,
                role=role,
                buffer_size=BUFFER_SIZE,
                ring_size=opts.ring_size,
                zero_copy=config.switch_zero_copy,
            )
            for i in (0, 1)
        ]
        for sw_if in ifaces:
            sw.set_state(sw_if.name, True)
            sw.set_bridge(sw_if.name, 1)
            sw.set_rx_mode(sw_if.name, opts.rx_mode)
        if not testpmds:  # a testpmd client connects once, at startup: answer it meanwhile
            testpmds.append(
                while_switching(sw, lambda: Testpmd(ports, **_driver_args(frame, opts)))
            )
        driver = testpmds[0]
        assert driver.forwarding_lcores == [opts.loop_cpu]
        wait_links(sw, ifaces)
        for port in (0, 1):
            while_switching(sw, functools.partial(driver.wait_link_up, port, _WAIT))
        zc = [p.zero_copy for p in sw.memif_ports()]
        if zc != [config.switch_zero_copy] * 2:
            raise RuntimeError(f"switch ports zero-copy {zc}, wanted {config.switch_zero_copy}")

        os.sched_setaffinity(0, {opts.switch_cpu})  # this thread only: the switch's CPU
        steps = ", ".join(f"{b} x {f} B" for f, b in priming(frame, opts.prime, opts.ring_size))
        log(
            f"linked; vector size {opts.vector_size}, rings of {opts.ring_size} slots, "
            f"priming bursts per port: {steps}, "
            f"warming up {opts.warmup:g} s"
        )
        primed = prime_loop(driver, frame, opts, functools.partial(while_switching, sw))
        counters = [i.counters for i in ifaces]
        out = window(
            sw,
            lambda: (sum(c.rx_packets for c in counters), sum(c.rx_bytes for c in counters)),
            opts,
            log,
        )
        out["prime"] = primed
        # testpmd may crash if its peer leaves while it forwards: stop it first
        while_switching(sw, driver.stop)
        return out


def wait_links(sw: Any, ifaces: Sequence[Any]) -> None:
    """Run the switch until every interface of ``ifaces`` has its link up."""
    deadline = time.monotonic() + _WAIT
    while not all(i.link_up for i in ifaces):
        if time.monotonic() > deadline:
            raise TimeoutError(f"switch links still down after {_WAIT} s")
        sw.run_once()


def measure(config: Config, frame: Frame, opts: Options, log: Callable[[str], None]) -> Result:
    """Measure one configuration at one frame size; errors end up in ``Result.error``."""
    result = Result(
        config.name,
        frame,
        description=config.description,
        prime=opts.prime,
        ring_size=opts.ring_size,
        flood=opts.flood,
        vector_size=opts.vector_size if config.switch_role else 0,
        rx_mode=opts.rx_mode if config.switch_role else None,
        switch_cpu=opts.switch_cpu,
        loop_cpu=opts.loop_cpu,
    )
    try:
        if config.switch_role is None:
            figures = measure_reference(frame, opts)
        elif config.path is not None:
            figures = open_path.measure_open(config.path, frame, opts, log)
        else:
            figures = measure_switch(config, frame, opts, log)
    except Exception as exc:  # report the measurement as failed, go on with the next
        result.error = f"{type(exc).__name__}: {exc}".strip()
        log(traceback.format_exc().rstrip())
        return result
    finally:
        result.loadavg = [round(x, 2) for x in os.getloadavg()]
    result.packets = figures.pop("packets")
    set_rates(
        result,
        result.packets,
        figures["seconds"],
        mean_frame(frame),
        figures,
        nbytes=figures["bytes"],
    )
    return result
