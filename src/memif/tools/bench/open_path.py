"""``memif bench-switch`` configurations ``bridged`` and ``routed``: one open path.

A primed loop cannot measure routing: a router decrements the TTL of every packet it
forwards and no testpmd forwarding mode restores it, so a routed loop empties itself
after 63 passes (well under a second).  These two configurations measure the two ways
across the switch on the same open path instead::

    testpmd#1 (txonly) -> memif1/0 -> the switch -> memif1/1 -> testpmd#2 (rxonly)

The generator sends 64-byte (or ``--frames``) UDP frames from 10.10.0.2 to 10.20.0.2 as
fast as the switch's receive ring takes them, so the switch, not the generator, sets the
rate; the sink receives and counts.  The rate is what the switch forwarded out of
memif1/1: sent, or refused by the sink's full ring (``sink_refused``; the switch did the
work, the sink could not keep up).  ``bridged``: memif1/0 and memif1/1 in bridge
domain 1, the sink's MAC a static L2 FIB entry on memif1/1, the frames addressed to it
(l2-learn, l2-fwd: known unicast).  ``routed``: memif1/0 is 10.10.0.1/24 and memif1/1
10.20.0.1/24, the sink 10.20.0.2 a static neighbour on memif1/1, the frames addressed to
memif1/0's MAC (ip4-input, ip4-lookup over the connected routes, ip4-rewrite: new MACs,
TTL and checksum).  A ``routed`` result's ``vs_bridged`` is its Mpps over ``bridged``'s at
the same frame size in the same run (the issue's target: 0.8 or more); ``busy_mpps`` is
the rate per second the switch was busy, which leaves out the time the switch waited for
frames (the generator shares a CPU with the sink).  A result whose sink refused more
than 1% is sink-limited, and the summary says so: the ratio against it overstates
routing.

The switch runs on the SWITCH CPU; both testpmds forward on the LOOP CPU, sharing it in time
slices: the generator runs at nice 5, so the sink gets most of that CPU when both want it (the
generator needs little of it to outrun the switch), and every ring holds 16384 slots to cover
the other's slice (``--ring-size`` does not apply).  Frames the sink's full ring refused are
counted as forwarded and named (``errors``: ``memif1/1-output/no-free-tx-slots``).  The
switch's ports are masters, the testpmds clients in copy mode.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ... import packet

if TYPE_CHECKING:
    from ...vswitch import Switch
    from .switch import Frame, Options

BRIDGED, ROUTED = "bridged", "routed"
PATHS = (BRIDGED, ROUTED)
SWITCH_MAC = ("02:00:00:00:00:b0", "02:00:00:00:00:b1")  # memif1/0, memif1/1
GENERATOR_MAC, SINK_MAC = "02:00:00:00:00:a0", "02:00:00:00:00:a1"
GENERATOR_IP, SINK_IP = "10.10.0.2", "10.20.0.2"
SWITCH_IP = ("10.10.0.1", "10.20.0.1")
PREFIX = 24
# every ring of the open path: the generator and the sink share a CPU in time slices of a
# few milliseconds, and each ring must cover the other's slice at the switch's rate (the
# generator's, so the switch does not run dry; the sink's, so it does not refuse frames)
RSIZE = 14
RING = 1 << RSIZE
# the generator's nice value: the sink, not the generator, gets the shared CPU when both
# want it (at a quarter of it, txonly still outruns the switch many times over)
GENERATOR_NICE = 5


SINK_REFUSED = "no-free-tx-slots"  # memif1/1-output's error: the sink's ring was full
#: a result is sink-limited when its sink refused more than this share of what it forwarded
SINK_LIMITED = 0.01


def configure(sw: Switch, path: str, names: list[str]) -> None:
    """Put the switch's two ports (up) on ``path``: bridged, or routed between two subnets."""
    if path == BRIDGED:
        for name in names:
            sw.set_bridge(name, 1)
        sw.l2fib_add(SINK_MAC, 1, names[1], static=True)
    elif path == ROUTED:
        for name, ip in zip(names, SWITCH_IP, strict=True):
            sw.set_ip(name, packet.ip4(ip), PREFIX)
        sw.ip_neighbor(names[1], packet.ip4(SINK_IP), SINK_MAC, static=True)
    else:
        raise ValueError(f"unknown path {path!r}: expected {', '.join(PATHS)}")


def yield_cpu(pid: int, nice: int) -> None:
    """Give every thread of process ``pid`` the nice value ``nice`` (a busy-polling forwarding
    lcore is a thread of its own)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.setpriority(os.PRIO_PROCESS, int(tid), nice)


def generator_dmac(path: str) -> str:
    """Where the generator addresses its frames: the sink (bridged) or the switch (routed)."""
    return SINK_MAC if path == BRIDGED else SWITCH_MAC[0]


def measure_open(
    path: str, frame: Frame, opts: Options, log: Callable[[str], None]
) -> dict[str, Any]:
    """One window of the open path: testpmd txonly -> the switch (``path``) -> testpmd rxonly."""
    from ..testpmd import MemifPort, Testpmd
    from .switch import BUFFER_SIZE, segments, switch_session, wait_links, while_switching, window

    if not isinstance(frame, int):
        raise ValueError(f"{path}: the open path sends one frame size, not {frame}")
    sock = f"@memif-bench-open-{os.getpid()}-{time.monotonic_ns()}"
    common: dict[str, Any] = {
        "main_lcore": opts.switch_cpu,
        "lcores": (opts.switch_cpu, opts.loop_cpu),
        "binary": opts.testpmd,
        "startup_timeout": 20.0,
    }
    with switch_session(opts) as (sw, testpmds):
        sw.create_socket(1, sock)
        ifaces = [
            sw.create_memif(
                id=i, socket_id=1, role="master", buffer_size=BUFFER_SIZE,
                ring_size=RING, hw_addr=SWITCH_MAC[i],
            )
            for i in (0, 1)
        ]  # fmt: skip
        for sw_if in ifaces:
            sw.set_state(sw_if.name, True)
            sw.set_rx_mode(sw_if.name, opts.rx_mode)
        configure(sw, path, [i.name for i in ifaces])
        generator = functools.partial(
            Testpmd,
            [MemifPort("client", id=0, socket=sock, bsize=BUFFER_SIZE, rsize=RSIZE,
                       mac=GENERATOR_MAC)],
            forward_mode="txonly",
            extra_args=[
                f"--eth-peer=0,{generator_dmac(path)}",
                f"--tx-ip={GENERATOR_IP},{SINK_IP}",
                "--txpkts=" + ",".join(map(str, segments(frame))),
            ],
            **common,
        )  # fmt: skip
        sink = functools.partial(
            Testpmd,
            [MemifPort("client", id=1, socket=sock, bsize=BUFFER_SIZE, rsize=RSIZE,
                       mac=SINK_MAC)],
            forward_mode="rxonly",
            **common,
        )  # fmt: skip
        for start in (sink, generator):  # a client connects once, at startup: answer it
            testpmds.append(while_switching(sw, start))
        yield_cpu(testpmds[1].pid, GENERATOR_NICE)
        wait_links(sw, ifaces)
        os.sched_setaffinity(0, {opts.switch_cpu})
        log(f"linked; {path} path, vector size {opts.vector_size}, warming up {opts.warmup:g} s")
        for tp in testpmds:
            while_switching(sw, tp.start)
        out = ifaces[1].counters
        errors = sw.graph.by_name[f"{ifaces[1].name}-output"].error_counts

        def forwarded() -> tuple[int, int]:  # sent, or refused by the sink's full ring
            refused = errors.get(SINK_REFUSED, 0)
            return out.tx_packets + refused, out.tx_bytes + refused * frame

        figures = window(sw, forwarded, opts, log)
        refused_key = f"{ifaces[1].name}-output/{SINK_REFUSED}"
        figures["sink_refused"] = figures["errors"].get(refused_key, 0)
        busy = figures["busy"] * figures["seconds"]
        figures["busy_mpps"] = figures["packets"] / busy / 1e6 if busy else None
        for tp in reversed(testpmds):  # testpmd may crash if its peer leaves mid-forwarding
            while_switching(sw, tp.stop)
        return figures
