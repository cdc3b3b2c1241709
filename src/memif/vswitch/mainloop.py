"""The switch's main loop, apart from its configuration (VPP's ``vlib_main_loop``).

:meth:`MainLoop.run_once` is one turn at a time the caller gives (``now``): control
work when due, every device-input node, then the graph until empty.  It never reads
the clock for the switch's logic and never sleeps: it returns the deadline of the
next turn, ``now`` while packets keep coming, later once the loop has been idle.
:meth:`MainLoop.sleep` is the idle wait: receive queues go to interrupt mode and the
loop sleeps in ppoll(2) on their eventfds (and the control fds) until a kick or the
timeout, as VPP's adaptive mode does; the first kick switches them back to polling.
"Idle" includes a trickle: turns that bring fewer than ``ADAPTIVE_VECTOR`` packets do
not keep the loop spinning.  Between the two, under load, the loop naps (queues in
polling mode) until its rings should hold a vector again, at most ``MAX_COALESCE``
(the core's coalescing, :mod:`memif.loop`), so the switch's CPU use follows its load.
:meth:`MainLoop.turn` joins the two with the system clock (what the daemon runs).

The deadline, the adaptive receive mode, the sleep and the extra fds are the core's
:class:`memif.loop.EventLoop` (``events``): every memif receive queue of a connected
port is registered with it in adaptive mode, the device inputs receive by themselves
and tell it their work.  What the switch adds around it: its control work (memif
sockets, ageing), its input nodes and graph, and the containment of failures.

Failures are contained here, in one place: an exception in control work, an input
node or the graph is logged (rate-limited, with its traceback) and counted under the
``main-loop`` node's errors, and the next turn runs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import numpy as np

from ..loop import BUSY_VECTOR, MAX_COALESCE, EventLoop, RxMode
from ..text import escape
from .graph import Graph, Node
from .port import DeviceInput
from .runtime import Runtime

CONTROL_PERIOD = 0.01  # seconds between control-plane polls while busy
IDLE_BEFORE_SLEEP = 0.002  # seconds of small vectors before sleeping on interrupts
ADAPTIVE_VECTOR = BUSY_VECTOR  # a poll bringing fewer packets is "light" (VPP's adaptive mode)
MAX_SLEEP = 0.1  # the longest idle sleep (seconds)


class MainLoopNode(Node):
    """Counters of failures the main loop contained (``show errors``); never gets vectors."""

    name = "main-loop"
    errors = {
        "port-exception": "exception handling a port: a memif's peer was disconnected",
        "input-exception": "exception in an input node: its turn was skipped",
        "graph-exception": "exception in the graph: the turn's packets were dropped",
        "control-exception": "exception in control-plane work (socket or CLI)",
        "loop-exception": "exception in a main loop turn (contained)",
    }

    def __init__(self, rt: Runtime) -> None:
        super().__init__()
        self.error_counts = rt.loop_errors  # one counter: the runtime's
        self.rt = rt

    def process(self, idx: np.ndarray) -> None:
        self.rt.pool.free(idx)


class MainLoop:
    """Turns of the switch: control when due, the device inputs, the graph.

    ``control(now)`` is the switch's control work (memif sockets, ageing), run every
    ``CONTROL_PERIOD`` and after each sleep that kicks alone did not end;
    ``control_fds()`` the fds that should end a sleep for it (the memif sockets).  Fds
    added with :meth:`add_fd` (the CLI socket) are watched too, their callbacks run as
    often.  Call :meth:`ports_changed` when a
    port is added, removed, connected or disconnected.
    """

    def __init__(
        self,
        rt: Runtime,
        graph: Graph,
        control: Callable[[float], None],
        control_fds: Callable[[], list[int]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rt = rt
        self.graph = graph
        self.control = control
        self.control_fds = control_fds
        self.clock = clock
        self.node = MainLoopNode(rt)
        graph.add(self.node)
        self.inputs: list[DeviceInput] = []  # input nodes polled each turn
        #: set interface rx-mode: (sw_if_index, queue or None for all) -> mode
        self.rx_modes: dict[tuple[int, int | None], RxMode] = {}
        self.busy_ns = 0  # time spent on turns that moved packets
        self.packets = 0  # what the last turn took in
        self.events = EventLoop(
            clock=clock,
            idle_after=IDLE_BEFORE_SLEEP,
            control_period=CONTROL_PERIOD,
            max_sleep=MAX_SLEEP,
            busy_vector=ADAPTIVE_VECTOR,
            vector=rt.vector_size,
            max_coalesce=MAX_COALESCE,
        )
        self._extra_fds: set[int] = set()  # fds with callbacks (add_fd)
        self._wake_fds: set[int] = set()  # fds that only end a sleep (sockets, kernel ports)
        self._last_control = -math.inf
        self._synced_at: float | None = None  # the control turn the wake fds follow

    # ------------------------------------------------------------------ fds
    def add_fd(self, fd: int, callback: Callable[[], None]) -> None:
        """Watch ``fd`` (e.g. the CLI socket): ``callback()`` when it is readable."""
        self._wake_fds.discard(fd)
        self._extra_fds.add(fd)
        self._synced_at = None
        self.events.add_reader(
            fd, lambda _fd: self.contained("control-exception", f"fd {fd}", callback)
        )

    def remove_fd(self, fd: int) -> None:
        """Stop watching ``fd`` (before closing it)."""
        self._extra_fds.discard(fd)
        self.events.remove_reader(fd)
        self._synced_at = None

    def ports_changed(self) -> None:
        """Serve the receive queues of the ports as they are now (each in its interface's
        rx-mode, adaptive unless set) and wake on their fds and the sockets' (which come
        and go with ports)."""
        queues = [q for p in self.rt.ports.values() for q in p.rx_queues()]
        self.events.update_rx(queues, mode=RxMode.ADAPTIVE)
        for sw_if_index, port in self.rt.ports.items():
            for qid, q in enumerate(port.rx_queues()):
                want = self.rx_mode_of(sw_if_index, qid)
                if q in self.events.rx_queues and self.events.rx_mode(q) is not want:
                    self.events.set_rx_mode(q, want)
        self._sync_wake_fds()

    def set_rx_mode(self, sw_if_index: int, mode: RxMode, queue: int | None = None) -> None:
        """VPP's ``set interface rx-mode``: serve the interface's receive queues (or one)
        in ``mode``; it holds across reconnects."""
        if queue is None:
            self.forget_interface(sw_if_index)
        self.rx_modes[(sw_if_index, queue)] = mode
        self.ports_changed()

    def forget_interface(self, sw_if_index: int) -> None:
        """A deleted interface's rx-mode settings go with it."""
        self.rx_modes = {k: v for k, v in self.rx_modes.items() if k[0] != sw_if_index}

    def rx_mode_of(self, sw_if_index: int, queue: int) -> RxMode:
        """The mode a receive queue is served in: its own, its interface's, adaptive."""
        modes = self.rx_modes
        return modes.get((sw_if_index, queue)) or modes.get((sw_if_index, None)) or RxMode.ADAPTIVE

    def _sync_wake_fds(self) -> None:
        """Make the fds that only end a sleep those of the sockets and kernel ports now
        (a sleep calls it only after control work ran: that is what changes them)."""
        self._synced_at = self._last_control
        want = set(self.control_fds())
        want.update(fd for p in self.rt.ports.values() for fd in p.fds())
        want -= self._extra_fds
        for fd in self._wake_fds - want:
            self.events.remove_reader(fd)
        for fd in want - self._wake_fds:
            self.events.add_reader(fd, _ignore)
        self._wake_fds = want

    # ------------------------------------------------------------------ turns
    def run_once(self, now: float) -> float:
        """One turn at time ``now``; returns when the next should start (``now``: at once).

        Never raises for what a peer or a packet did: failures are contained (logged,
        counted in ``show errors`` under ``main-loop``) and the next turn runs.
        """
        t0 = time.perf_counter_ns()
        self.rt.now = now
        if now - self._last_control >= CONTROL_PERIOD:
            self._last_control = now
            self.control(now)
        n = self.packets = self.input_poll()
        if n:
            if not self.contained("graph-exception", "graph", self.graph.run):
                self.graph.discard()
            self.busy_ns += time.perf_counter_ns() - t0
        # the extra fds when due; now while busy (a trickle is not busy), else a sleep's end
        return self.events.run_once(now, work=n)

    def turn(self) -> int:
        """One turn on the loop's clock, then the idle sleep if one is due; returns the
        packets the turn took in."""
        now = self.clock()
        deadline = self.run_once(now)
        if deadline > now:
            self._sleep_until(deadline)
        return self.packets

    def run(self, until: Callable[[], bool]) -> None:
        """Turn until ``until()`` is true."""
        while not until():
            self.turn()

    def input_poll(self) -> int:
        """Run every input node (with its runtime figures); a failing one is contained."""
        total = 0
        for node in self.inputs:
            t0 = time.perf_counter_ns()
            try:
                n = node.poll()
            except Exception as exc:
                self.failed("input-exception", node.name, exc)
                continue
            if n:
                node.ns += time.perf_counter_ns() - t0
                node.calls += 1
                node.vectors += n
                total += n
        return total

    def sleep(self, timeout: float) -> None:
        """Block until a receive queue is kicked, a control fd is ready, or ``timeout``.

        Receive queues are in interrupt mode for the sleep only; one that has packets
        once armed ends it at once.  The next turn does the control work unless kicks
        alone ended the sleep (then it waits for its period, :data:`CONTROL_PERIOD`).
        """
        self._sleep_until(self.clock() + timeout)

    def _sleep_until(self, deadline: float) -> None:
        """:meth:`sleep` until ``deadline`` on the loop's clock (a coalescing nap's end
        counts from its turn's start)."""
        if self._synced_at != self._last_control:
            self._sync_wake_fds()
        self.events.sleep(deadline)
        if not self.events.woken_by_kicks:  # kicks alone: a packet's wake-up, no control
            self._last_control = -math.inf

    # ------------------------------------------------------------------ containment
    def contained(self, error: str, what: str, fn: Callable[..., object], *args: object) -> bool:
        """Run ``fn(*args)``; an exception is logged with its traceback (rate-limited)
        and counted as ``error`` of the main-loop node. True when it ran cleanly."""
        try:
            fn(*args)
            return True
        except Exception as exc:
            self.failed(error, what, exc)
            return False

    def failed(self, error: str, what: str, exc: Exception) -> None:
        """Count and log (with traceback, rate-limited) an exception the loop contained;
        call from its ``except`` block."""
        self.rt.loop_errors[error] += 1
        self.rt.ratelog.log(
            (error, what, type(exc).__name__),
            "%s: %s: %s (contained, the loop goes on)",
            what,
            type(exc).__name__,
            escape(str(exc)),
            level=logging.ERROR,
            exc_info=True,
        )


def _ignore(fd: int) -> None:
    """The callback of an fd that only ends a sleep (its owner is served elsewhere)."""
