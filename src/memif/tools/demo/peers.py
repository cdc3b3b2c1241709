"""``memif demo``'s peers A and C: DPDK testpmd when it is installed, else ``memif gen``.

Both kinds send a finite, paced stream from A to C's MAC address and have C reflect every
frame back to A (MAC addresses swapped), so traffic crosses the bridge both ways.

* :class:`PythonPeers`: C is ``memif gen macswap``; A is ``memif gen txonly --rate R
  --duration D``, which also receives what C reflects (round-trip latency, loss) and ends by
  itself: it waits until the switch took every frame it sent, then stays connected for a
  second so that the last reflected frames reach it.
* :class:`TestpmdPeers`: two ``dpdk-testpmd`` clients, C in ``macswap`` and A in ``rxonly``.
  testpmd has no rate limit, and a ``txonly`` A never reads its receive ring (C's reflections
  would fill it and be dropped), so A sends in rounds: ``start tx_first K`` sends K bursts of
  64 frames, then A receives; once C has reflected the whole round and A has it back, ``stop``
  and the next round, paced to the rate.  A round also waits until the monitor has room for
  its mirrored copies.  Every count is exact, and nothing can overflow a ring.

testpmd's pitfalls (see ``/work/shared/peers.md``): a client connects once, when it starts,
so memifd must be up first; ``stop`` before anything disconnects (testpmd may crash when its
peer leaves while it forwards); its counters read 0 once disconnected, so they are read
before it quits; and a DPDK client posts its receive buffers only when it first polls, so
both are started once before any frame is sent.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from dataclasses import asdict
from typing import Any

from ..common import StopRequest
from ..testpmd import MemifPort, PortStats, Testpmd
from .proc import Child, DemoError, memif_argv
from .topo import IF_A, IF_B, IF_C, MAC_A, MAC_C, Topology

__all__ = ["Interrupted", "PythonPeers", "TestpmdPeers", "lcores"]

PEER_RING = 4096  # slots per ring of a Python peer: a few hundred ms at the default rate
BURST = 64  # testpmd's burst: frames per tx_first burst
RSIZE = 12  # testpmd's rings: 2**12 slots, room for the largest round (16 bursts)
ROUNDS_PER_SECOND = 25  # at the rate asked for
ROUND_TIMEOUT = 5.0


class Interrupted(DemoError):
    """Ctrl-C while starting up."""


class PythonPeers:
    """A: ``memif gen txonly`` (paced, finite); C: ``memif gen macswap``."""

    kind = "python"
    program = "memif gen"
    labels = {"A": "memif gen txonly", "C": "memif gen macswap"}

    def __init__(self, topo: Topology, args: argparse.Namespace) -> None:
        self.topo, self.args = topo, args
        self.a: Child | None = None
        self.c: Child | None = None
        self.t0 = self.t1 = 0.0
        self._reports: dict[str, dict[str, Any]] = {}
        self._duration: float | None = None

    def describe(self) -> str:
        """One line for the header."""
        return f"memif gen: {self.args.rate:,.0f} frames/s A -> C, each reflected back"

    def connect(self, stop: StopRequest) -> None:
        """Start C and wait until the switch sees it (A connects and sends at once)."""
        argv = ["gen", "macswap", "--socket", self.topo.sock["C"], "--ring-size", str(PEER_RING)]
        argv += ["--connect-timeout", f"{self.args.connect_timeout:g}", "--json", "-q"]
        self.c = self.topo.spawn("memif gen macswap (C)", memif_argv(*argv), "C")
        self.topo.wait_links([IF_B, IF_C], self.args.connect_timeout, _checker(stop, self.c))

    def start(self) -> None:
        """Start A: it connects and sends for ``--duration`` seconds."""
        a = self.args
        argv = ["gen", "txonly", "--socket", self.topo.sock["A"], "--ring-size", str(PEER_RING)]
        argv += ["--src-mac", MAC_A, "--dst-mac", MAC_C, "--rate", f"{a.rate:g}"]
        argv += ["--duration", f"{a.duration:g}", "--connect-timeout", f"{a.connect_timeout:g}"]
        self.a = self.topo.spawn("memif gen txonly (A)", memif_argv(*argv + ["--json", "-q"]), "A")
        self.t0 = time.monotonic()

    def pump(self, until: float, stop: StopRequest) -> bool:
        """Let the traffic run until ``until``; False once A has finished."""
        assert self.a is not None and self.c is not None
        while not stop:
            self.c.check()
            left = until - time.monotonic()
            if left <= 0:
                return True
            if self.a.wait(min(left, 0.05)) is not None:
                self.t1 = time.monotonic()
                return False
        return True

    def interrupt(self) -> None:
        """Ctrl-C: A stops at once (frames still in flight to it are lost)."""
        if self.a is not None:
            self.a.stop(signal.SIGINT)

    def finish(self) -> None:
        """Wait for A's end (it drains and lingers by itself); DemoError if it failed."""
        if self.a is None:
            return
        rc = self.a.wait(self.args.duration + 15)
        if rc is None:
            rc = self.a.stop(signal.SIGINT)
        self.t1 = self.t1 or time.monotonic()
        if rc not in (0, 130):
            raise DemoError(f"{self.a.name} failed{self.a.stderr_tail()}")

    @property
    def duration(self) -> float:
        """Seconds of traffic (A's own measure when it has one)."""
        if self._duration is not None:
            return self._duration
        rep = self.a.report() if self.a is not None else {}
        return float(rep.get("seconds") or max(self.t1 - self.t0, 0.0))

    def close(self) -> None:
        """Ctrl-C C (its summary), and A if it still runs; keep their reports."""
        for child in (self.a, self.c):
            if child is not None:
                child.stop(signal.SIGINT)
        self._reports = {r: (c.report() if c else {}) for r, c in (("A", self.a), ("C", self.c))}
        self._duration = self.duration

    def reports(self) -> dict[str, dict[str, Any]]:
        """Each peer's own summary (memif gen's JSON), as :meth:`close` read them."""
        return self._reports

    def pids(self) -> dict[str, int]:
        """The peers' pids."""
        return {r: c.pid for r, c in (("A", self.a), ("C", self.c)) if c is not None}


class TestpmdPeers:
    """A: testpmd ``rxonly`` sending paced ``tx_first`` rounds; C: testpmd ``macswap``."""

    kind = "testpmd"
    program = "testpmd"
    labels = {"A": "testpmd rxonly + tx_first", "C": "testpmd macswap"}
    __test__ = False  # not a pytest class

    def __init__(self, topo: Topology, args: argparse.Namespace, binary: str) -> None:
        self.topo, self.args, self.binary = topo, args, binary
        self.a: Testpmd | None = None
        self.c: Testpmd | None = None
        self.bursts = max(1, min(16, round(args.rate / BURST / ROUNDS_PER_SECOND)))
        self.round = self.bursts * BURST
        self.rounds = 0
        self.sent = 0
        self.t0 = self.t1 = 0.0
        self.end = 0.0
        self.stats: dict[str, PortStats] = {}

    def describe(self) -> str:
        """One line for the header."""
        return (
            f"testpmd: rounds of {self.round} frames A -> C -> A, "
            f"at most {self.args.rate:,.0f} frames/s"
        )

    def _testpmd(
        self, role: str, mode: str, mac: str, peer: str, lcores: tuple[int, int]
    ) -> Testpmd:
        return Testpmd(
            [MemifPort("client", id=0, socket=self.topo.sock[role], mac=mac, rsize=RSIZE)],
            forward_mode=mode,
            burst=BURST,
            main_lcore=lcores[0],
            lcores=lcores,
            mem_mb=64,
            total_num_mbufs=8192,
            extra_args=[f"--eth-peer=0,{peer}", "--no-flush-rx"],
            binary=self.binary,
        )

    def connect(self, stop: StopRequest) -> None:
        """Start C, then A (memifd is up: a testpmd client tries once); post their buffers."""
        (main_a, fwd_a), (main_c, fwd_c) = lcores()
        check = _checker(stop)
        self.c = self._testpmd("C", "macswap", MAC_C, MAC_A, (main_c, fwd_c))
        check()
        self.a = self._testpmd("A", "rxonly", MAC_A, MAC_C, (main_a, fwd_a))
        check()
        for tp in (self.a, self.c):
            tp.wait_link_up(0, self.args.connect_timeout)
        self.topo.wait_links([IF_A, IF_B, IF_C], self.args.connect_timeout, check)
        # A DPDK client posts its receive buffers when it first polls: poll once, send nothing.
        self.c.start()
        self.a.start()
        deadline = time.monotonic() + self.args.connect_timeout
        while min(self.topo.posted(IF_A), self.topo.posted(IF_C)) < self.round:
            check()
            if time.monotonic() > deadline:
                raise DemoError("testpmd posted no receive buffers")
            time.sleep(0.01)
        self.a.stop()

    def start(self) -> None:
        """Traffic starts now; it ends ``--duration`` seconds later."""
        self.t0 = time.monotonic()
        self.end = self.t0 + self.args.duration

    def pump(self, until: float, stop: StopRequest) -> bool:
        """Send rounds until ``until``; False once the duration is over."""
        while not stop:
            now = time.monotonic()
            if now >= self.end:
                return False
            if now >= until:
                return True
            due = self.t0 + self.sent / self.args.rate  # pacing
            if due > now:
                time.sleep(min(due, until, self.end) - now)
                continue
            if self.topo.posted(IF_B) < 2 * self.round:  # the monitor is behind
                time.sleep(0.002)
                continue
            self._round()
        return True

    def _round(self) -> None:
        a, c = self.a, self.c
        assert a is not None and c is not None
        a.start_tx_first(self.bursts)
        deadline = time.monotonic() + ROUND_TIMEOUT
        while True:
            sa, sc = a.port_stats(), c.port_stats()
            if sa.tx_packets == sc.rx_packets == sc.tx_packets == sa.rx_packets > self.sent:
                break
            if time.monotonic() > deadline:
                a.stop()
                self.stats = {"A": sa, "C": sc}
                raise DemoError(
                    f"round {self.rounds + 1} incomplete after {ROUND_TIMEOUT:g} s: A sent "
                    f"{sa.tx_packets}, C received {sc.rx_packets} and sent {sc.tx_packets}, "
                    f"A received {sa.rx_packets}"
                )
            time.sleep(0.0005)
        a.stop()
        self.rounds += 1
        self.sent = sa.tx_packets
        self.t1 = time.monotonic()

    def interrupt(self) -> None:
        """Ctrl-C: nothing to do, a round always completes."""

    def finish(self) -> None:
        """Stop C and read both testpmds' counters (before anything disconnects)."""
        self.t1 = self.t1 or time.monotonic()
        for tp in (self.a, self.c):
            if tp is not None and tp.forwarding:
                tp.stop()
        if self.a is not None and self.c is not None:
            self.stats = {"A": self.a.port_stats(), "C": self.c.port_stats()}

    @property
    def duration(self) -> float:
        """Seconds from the first round to the end of the last."""
        return max(self.t1 - self.t0, 0.0)

    def close(self) -> None:
        """``stop`` (if forwarding) and ``quit`` both testpmds."""
        for tp in (self.a, self.c):
            if tp is not None:
                tp.close()

    def reports(self) -> dict[str, dict[str, Any]]:
        """Each testpmd's port counters, and the rounds."""
        out: dict[str, dict[str, Any]] = {r: asdict(s) for r, s in self.stats.items()}
        if out:
            out["A"].update(rounds=self.rounds, frames_per_round=self.round)
        return out

    def pids(self) -> dict[str, int]:
        """The testpmd pids."""
        return {r: t.pid for r, t in (("A", self.a), ("C", self.c)) if t is not None}


def lcores() -> tuple[tuple[int, int], tuple[int, int]]:
    """(main, forwarding) lcores of A and of C: their busy-polling lcores on different CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise DemoError("testpmd needs two CPUs")
    if len(cpus) == 2:
        return (cpus[0], cpus[1]), (cpus[1], cpus[0])
    return (cpus[0], cpus[-1]), (cpus[0], cpus[-2])


def _checker(stop: StopRequest, *children: Child) -> Any:
    def check() -> None:
        if stop:
            raise Interrupted("interrupted while starting")
        for child in children:
            child.check()

    return check
