"""The event loop primitive: one turn of work, then a sleep until the next deadline.

Every loop of the package has the same shape: receive from some queues, serve the memif
control plane (:meth:`memif.Socket.poll`) now and then, run timers, and when nothing
arrives for a while sleep on the queues' interrupt eventfds and the control fds.  An
:class:`EventLoop` is that loop, written once::

    loop = EventLoop()
    loop.add_socket(sock)                       # its control fd and its timers
    loop.add_rx(rxq, handler, RxMode.ADAPTIVE)  # handler(rxq) -> packets handled
    loop.run(until=lambda: stop)

or, for a loop that keeps its own receive code, one turn at a time::

    while not stop:
        work = my_receive()                     # the caller's own rx_burst calls
        deadline = loop.run_once(work=work)     # control, timers; when to run again
        loop.sleep(deadline)                    # returns at once while busy

:meth:`~EventLoop.run_once` never sleeps and never reads a clock it was not given (pass
``now``, or the loop reads its injected ``clock``), so a test drives it with a fake clock
and real fds.  :meth:`~EventLoop.sleep` is the only place it blocks, in its
:class:`~memif.poller.Poller` (``ppoll(2)``: any fd number, sub-millisecond timeouts).

**Receive modes** (VPP's ``set interface rx-mode``), per queue:

* :attr:`RxMode.POLLING`: the queue's MASK_INT is set (the peer writes no eventfd) and
  the loop never sleeps while the queue is registered: lowest latency, a whole CPU.
* :attr:`RxMode.INTERRUPT`: MASK_INT clear, the peer kicks the eventfd after every burst;
  the loop sleeps as soon as a turn finds no work.
* :attr:`RxMode.ADAPTIVE`: polling while busy, with the CPU following the load (below);
  after ``idle_after`` seconds without work the queue is switched to interrupt mode for
  the sleep and back to polling after it, so the first packet after idle wakes the loop.

A turn "has work" when the handlers (and the caller's ``work``) moved at least
``busy_vector`` packets (:data:`BUSY_VECTOR`, 8, as VPP's adaptive mode): a trickle of
small vectors does not keep an adaptive loop spinning, each of its packets wakes it.

**Coalescing** (adaptive mode: NAPI's budget, a NIC's interrupt moderation, DPDK's
empty-poll power management).  A turn far below ``vector`` (the packets one turn can
take) means the loop is faster than its load: spinning would only run turns of a few
packets, each paying the turn's fixed cost.  So after a turn below the target, busy
or within ``idle_after`` of a busy one, the loop measures the arrival rate, the ``n``
packets taken in the ``elapsed`` seconds since the last turn that let it wait (the
turns it spun since, catching up, count in), and naps until the queues should hold a
full vector again::

    interval = min(max_coalesce, elapsed * target / max(n, 1))
    target   = min(vector, COALESCE_FILL * the smallest adaptive ring)

counted from the turn's start.  The queues stay in polling mode (the peer writes no
eventfd), the nap ends early only for sockets, extra fds and interrupt-mode queues.
``target`` keeps the ring from overflowing at the measured rate (it fills to
``COALESCE_FILL`` of the ring, half: a margin of 2x for a burst or a late wake-up);
``max_coalesce`` (:data:`MAX_COALESCE`) bounds the latency it adds.  A turn that
brought ``target`` packets or more means the loop is not ahead (its ring may even have
been full, which hides the true rate): it turns again at once, as NAPI polls again
when a poll used its whole budget, and so does a turn whose nap would be shorter than
:data:`MIN_NAP` (a sleep costs about that much).  So the loop spins near its peak,
naps for bigger vectors between, and sleeps on interrupts when idle or when naps of
``max_coalesce`` bring fewer than ``busy_vector`` packets for ``idle_after``: below
``busy_vector / max_coalesce`` packets per second (8 kpps with the defaults), VPP's
rate threshold between polling and interrupt mode, each packet wakes the loop.

**Control plane.**  While busy, registered sockets are polled every ``control_period``
seconds, and extra fds are looked at (one zero-timeout ``ppoll``) as often; after a sleep
that a socket, an extra fd or the deadline ended, at once (one that receive queues' kicks
alone ended leaves it to its period: a packet's wake-up does no control work).  While
idle the loop sleeps on the sockets' fds and the extra fds, and no longer than the
sockets' own timers (:meth:`memif.Socket.next_timeout`), the loop's timers
(:meth:`~EventLoop.call_at`) and ``max_sleep``.

**Disconnects.**  A queue whose connection ended raises :class:`memif.NotConnectedError`
on every call; the loop then drops it (:attr:`~EventLoop.rx_queues` no longer lists it).
Queues belong to one connection: register the new ones after a reconnect
(:meth:`~EventLoop.update_rx` does it cheaply from ``iface.rx_queues`` every turn).

Not thread-safe: one thread runs a loop.
"""

from __future__ import annotations

import enum
import heapq
import math
import time
from collections.abc import Callable, Iterable, Sequence

from .errors import NotConnectedError
from .poller import Poller
from .queue import RxQueue
from .sock import Socket

__all__ = [
    "BUSY_VECTOR",
    "COALESCE_FILL",
    "CONTROL_PERIOD",
    "IDLE_AFTER",
    "MAX_COALESCE",
    "MAX_SLEEP",
    "MIN_NAP",
    "NAP_SLICES",
    "VECTOR",
    "EventLoop",
    "RxHandler",
    "RxMode",
    "Timer",
    "arm_rx",
]

#: Seconds between two control-plane polls while the loop is busy.
CONTROL_PERIOD = 0.05
#: Seconds without work before adaptive queues fall back to interrupts and the loop sleeps.
IDLE_AFTER = 0.002
#: Longest sleep, in seconds, when nothing else bounds it.
MAX_SLEEP = 1.0
#: Packets a turn must move to count as busy: fewer is a trickle, which lets an adaptive
#: loop sleep on interrupts (VPP's adaptive mode; what memifd and ``memif gen`` use).
BUSY_VECTOR = 8
#: Packets one turn takes at most, the vector coalescing aims for (VPP's frame size).
VECTOR = 256
#: Share of a receive ring an adaptive loop lets fill between two turns under load.
COALESCE_FILL = 0.5
#: Longest coalescing nap, in seconds: the latency an adaptive loop adds under load.
MAX_COALESCE = 0.001
#: Shorter naps are not taken (the loop turns at once): about what a sleep costs.
MIN_NAP = 50e-6
#: A nap wakes this many times to see whether packets still arrive; one that brought none
#: ends it (the peer has sent what it had), so a closed loop is not held back for long.
NAP_SLICES = 4

#: An rx queue's handler: take what the queue has, return the packets handled (0: none).
RxHandler = Callable[[RxQueue], int]


class RxMode(enum.Enum):
    """How a receive queue is served (VPP's ``rx-mode``)."""

    POLLING = "polling"
    INTERRUPT = "interrupt"
    ADAPTIVE = "adaptive"

    @classmethod
    def parse(cls, text: str | RxMode) -> RxMode:
        """``polling``, ``interrupt`` or ``adaptive`` (any case); ValueError otherwise."""
        if isinstance(text, RxMode):
            return text
        try:
            return cls(str(text).strip().lower())
        except ValueError:
            raise ValueError(
                f"bad rx mode {text!r}: expected polling, interrupt or adaptive"
            ) from None

    @classmethod
    def of(cls, rxq: RxQueue) -> RxMode:
        """The mode a queue's own flag stands for: polling if MASK_INT is set, else
        interrupt (how an interface configured with ``polling=`` leaves its queues)."""
        return cls.POLLING if rxq.polling else cls.INTERRUPT


class Timer:
    """A callback due at a time of the loop's clock; :meth:`cancel` before it runs."""

    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Do not run the callback (a timer that ran already stays run)."""
        self.cancelled = True

    def __lt__(self, other: Timer) -> bool:
        return self.when < other.when

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<Timer at {self.when:.6f}{state}>"


class _Rx:
    """One registered receive queue."""

    __slots__ = ("rxq", "fd", "handler", "mode")

    def __init__(self, rxq: RxQueue, handler: RxHandler | None, mode: RxMode) -> None:
        self.rxq = rxq
        self.fd = rxq.fd  # kept: after a disconnect the queue raises instead of telling it
        self.handler = handler
        self.mode = mode


class EventLoop:
    """Queues, sockets, fds and timers, served in turns (:meth:`run_once`) with sleeps
    in between (:meth:`sleep`); :meth:`run` is both in a loop.

    ``clock``: monotonic seconds (default ``time.monotonic``); every deadline is on it.
    ``poller``: the waiter (default a new :class:`~memif.poller.Poller`).  The other
    options are the defaults of this module's constants: see the module's docstring.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        poller: Poller | None = None,
        idle_after: float = IDLE_AFTER,
        control_period: float = CONTROL_PERIOD,
        max_sleep: float = MAX_SLEEP,
        busy_vector: int = 1,
        vector: int = VECTOR,
        max_coalesce: float = MAX_COALESCE,
    ) -> None:
        for name, value in (
            ("idle_after", idle_after),
            ("control_period", control_period),
            ("max_sleep", max_sleep),
            ("max_coalesce", max_coalesce),
        ):
            if not value >= 0:
                raise ValueError(f"event loop: {name} is seconds >= 0, got {value!r}")
        if busy_vector < 1:
            raise ValueError(f"event loop: busy_vector is packets >= 1, got {busy_vector!r}")
        if vector < 1:
            raise ValueError(f"event loop: vector is packets >= 1, got {vector!r}")
        self.clock = clock
        self.poller = poller if poller is not None else Poller()
        self.idle_after = idle_after
        self.control_period = control_period
        self.max_sleep = max_sleep
        self.busy_vector = busy_vector
        self.vector = vector
        self.max_coalesce = max_coalesce
        #: the time of the current (or last) turn, on :attr:`clock`
        self.now = clock()
        #: turns run, sleeps that waited in the poller, and sleeps an fd ended
        self.turns = 0
        self.sleeps = 0
        self.wakeups = 0
        #: coalescing naps taken (adaptive mode under load; counted in :attr:`sleeps` too)
        self.naps = 0
        self._sockets: list[Socket] = []
        self._readers: dict[int, Callable[[int], object]] = {}
        self._reader_poller = Poller()  # the extra fds, looked at while busy
        self._rx: dict[RxQueue, _Rx] = {}
        self._entries: tuple[_Rx, ...] = ()  # self._rx's values, for the turn
        self._handled: tuple[_Rx, ...] = ()  # those with a handler
        self._polling = 0  # registered queues in polling mode
        self._adaptive = 0
        self._timers: list[Timer] = []
        self._ready: set[int] = set()  # fds the last sleep found readable
        self._sleep_fds: tuple[int, ...] | None = None  # what a sleep waits on (None: rebuild)
        self._nap_poller = Poller()  # what a nap waits on: no adaptive queue's eventfd
        self._target = vector  # packets a coalescing nap lets the queues fill to
        self._window_at = -math.inf  # the last turn that let the loop wait ...
        self._window_work = 0  # ... and the packets taken since: the arrival rate
        self._nap = False  # run_once's deadline is a coalescing nap's end ...
        self._nap_end = -math.inf  # ... this one
        #: the last sleep was ended by receive queues' kicks alone (no socket, no extra
        #: fd, not the deadline) or was a coalescing nap that ran to its end: its next
        #: turn leaves the control plane to its period
        self.woken_by_kicks = False
        self._control_at = -math.inf  # run control at the next turn
        self._busy_at = -math.inf  # the last turn with work

    # ------------------------------------------------------------------ registration
    def add_socket(self, sock: Socket) -> None:
        """Serve ``sock``'s control plane: its fd wakes a sleep, its timers bound it."""
        if sock.closed:
            raise ValueError(f"event loop: socket {sock.path} is closed")
        if sock not in self._sockets:
            self._sockets.append(sock)
            self._sleep_fds = None

    def remove_socket(self, sock: Socket) -> None:
        """Stop serving ``sock`` (not registered: nothing to do)."""
        if sock in self._sockets:
            self._sockets.remove(sock)
            self._sleep_fds = None

    @property
    def sockets(self) -> tuple[Socket, ...]:
        """The registered sockets."""
        return tuple(self._sockets)

    def add_reader(self, fd: int, callback: Callable[[int], object]) -> None:
        """Call ``callback(fd)`` in a turn after ``fd`` became readable (replaces a
        callback already registered for ``fd``).  Level-triggered: the callback reads."""
        self._reader_poller.register(fd)  # checks the fd
        self._readers[fd] = callback
        self._sleep_fds = None

    def remove_reader(self, fd: int) -> None:
        """Forget ``fd`` (unknown: nothing to do).  Do it before closing the fd."""
        self._readers.pop(fd, None)
        self._reader_poller.unregister(fd)
        self._ready.discard(fd)
        self._sleep_fds = None

    def add_rx(
        self,
        rxq: RxQueue,
        handler: RxHandler | None = None,
        mode: RxMode | str | None = None,
    ) -> None:
        """Serve ``rxq`` in ``mode`` (default :meth:`RxMode.of` the queue).

        ``handler(rxq)`` runs every turn and returns the packets it handled; without a
        handler the caller receives by itself and tells :meth:`run_once` its ``work``,
        the loop only arms and clears the queue's interrupt around sleeps.  Registering
        a queue again changes its handler and mode.  Raises NotConnectedError for a
        queue whose connection ended.
        """
        rx_mode = RxMode.of(rxq) if mode is None else RxMode.parse(mode)
        entry = _Rx(rxq, handler, rx_mode)
        rxq.polling = rx_mode is not RxMode.INTERRUPT
        self._rx[rxq] = entry
        self._changed()

    def remove_rx(self, rxq: RxQueue) -> None:
        """Stop serving ``rxq`` (unknown: nothing to do); its mode flag stays as it is."""
        if self._rx.pop(rxq, None) is not None:
            self._changed()

    def update_rx(
        self,
        rxqs: Sequence[RxQueue],
        handler: RxHandler | None = None,
        mode: RxMode | str | None = None,
    ) -> None:
        """Make the registered queues exactly ``rxqs`` (e.g. ``iface.rx_queues`` of the
        moment), new ones with ``handler`` and ``mode``; a comparison when unchanged."""
        entries = self._entries
        if len(entries) == len(rxqs) and all(
            e.rxq is q for e, q in zip(entries, rxqs, strict=True)
        ):
            return
        keep = set(rxqs)
        for q in list(self._rx):
            if q not in keep:
                del self._rx[q]
        self._changed()
        for q in rxqs:
            if q not in self._rx:
                try:
                    self.add_rx(q, handler, mode)
                except NotConnectedError:
                    continue

    def set_rx_mode(self, rxq: RxQueue, mode: RxMode | str) -> None:
        """Serve the registered ``rxq`` in ``mode`` from now on (KeyError if not registered)."""
        entry = self._rx[rxq]
        self.add_rx(rxq, entry.handler, mode)

    def rx_mode(self, rxq: RxQueue) -> RxMode:
        """The mode ``rxq`` is served in; KeyError if it is not registered."""
        return self._rx[rxq].mode

    @property
    def rx_queues(self) -> tuple[RxQueue, ...]:
        """The registered receive queues, in registration order."""
        return tuple(e.rxq for e in self._entries)

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback()`` in the first turn at or after ``when`` (on :attr:`clock`)."""
        timer = Timer(when, callback)
        heapq.heappush(self._timers, timer)
        return timer

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """:meth:`call_at` ``delay`` seconds after the current turn's :attr:`now`."""
        return self.call_at(self.now + delay, callback)

    def _changed(self) -> None:
        self._sleep_fds = None
        entries = tuple(self._rx.values())
        self._entries = entries
        self._handled = tuple(e for e in entries if e.handler is not None)
        self._polling = sum(e.mode is RxMode.POLLING for e in entries)
        self._adaptive = sum(e.mode is RxMode.ADAPTIVE for e in entries)
        rings = [e.rxq.ring.size for e in entries if e.mode is RxMode.ADAPTIVE]
        fill = int(COALESCE_FILL * min(rings)) if rings else self.vector
        self._target = max(1, min(self.vector, fill))

    def _drop(self, entry: _Rx) -> None:
        """Forget a queue whose connection ended."""
        if self._rx.get(entry.rxq) is entry:
            del self._rx[entry.rxq]
            self._changed()

    # ------------------------------------------------------------------ running
    def run_once(self, now: float | None = None, work: int = 0) -> float:
        """One turn: control when due, due timers, every handler; never sleeps.

        ``now``: the turn's time (default: read :attr:`clock`).  ``work``: packets the
        caller moved by itself this turn.  Returns the deadline of the next turn: ``now``
        while busy (work this turn, a polling queue, or adaptive queues not yet idle for
        ``idle_after``), the end of a coalescing nap (adaptive queues, a busy turn far
        below the vector: see the module's docstring), else the earliest timer, socket
        timer or ``now + max_sleep``.
        """
        if now is None:
            now = self.clock()
        self.now = now
        self.turns += 1
        self._nap = False
        if now >= self._control_at:
            self._control_at = now + self.control_period
            self._control()
        timers = self._timers
        if timers and timers[0].when <= now:
            due = []  # those due now: one a callback adds for now runs in the next turn
            while timers and timers[0].when <= now:
                due.append(heapq.heappop(timers))
            for timer in due:
                if not timer.cancelled:
                    timer.callback()
        for entry in self._handled:
            handler = entry.handler
            assert handler is not None
            try:
                work += handler(entry.rxq)
            except NotConnectedError:
                self._drop(entry)
        self._window_work += work
        busy = work >= self.busy_vector
        if busy:
            self._busy_at = now
        if self._polling:
            return now
        if self._adaptive and (busy or now - self._busy_at < self.idle_after):  # or lately
            if self.max_coalesce and work < self._target:  # ahead of its load
                deadline = self._nap_until(now + self._coalescing_interval(now))
                self._window_at, self._window_work = now, 0
                return deadline
            return now  # a full vector: behind, or just keeping up
        if busy:
            return now
        self._window_at, self._window_work = now, 0
        return self._idle_deadline(now)

    def sleep(self, deadline: float | None) -> bool:
        """Wait until ``deadline`` (on :attr:`clock`; None: no limit) or until a queue
        is kicked or a socket or extra fd is readable; True when an fd ended it.

        Returns at once when the deadline has passed, a polling queue is registered, or
        an adaptive queue has packets once armed.  Adaptive queues are in interrupt mode
        for the sleep only; the eventfds that fired are cleared.  The next turn serves
        the control plane and the readable extra fds when one of them, or the deadline,
        ended the sleep; one that queues' kicks alone ended (:attr:`woken_by_kicks`)
        leaves it to its period, so a packet's wake-up costs no control work.

        After a turn whose deadline is a coalescing nap's end, the adaptive queues stay
        in polling mode, the sleep lasts no longer than the nap (whatever ``deadline``
        says), and the nap is not taken when less than :data:`MIN_NAP` is left;
        its end counts as kicks' (no control work), and :attr:`naps` counts it.
        """
        self.woken_by_kicks = False
        if self._polling:
            return False
        if self._nap:  # coalescing: never past its end, and a short one is not worth it
            end = self._nap_end if deadline is None else min(deadline, self._nap_end)
            left = end - self.clock()
            return self._take_nap(left) if left >= MIN_NAP else False
        timeout = None if deadline is None else deadline - self.clock()
        if timeout is not None and timeout <= 0:
            return False
        for sock in self._sockets:
            if sock.closed:  # its fd is gone: wait on the others
                self._sockets = [s for s in self._sockets if not s.closed]
                self._sleep_fds = None
                break
        armed: list[_Rx] = []
        try:
            for entry in self._entries:
                rxq = entry.rxq
                try:
                    if not rxq.connected:
                        raise NotConnectedError("its connection ended")
                    if entry.mode is RxMode.ADAPTIVE:
                        armed.append(entry)
                        if arm_rx(rxq):
                            return False
                except NotConnectedError:
                    self._drop(entry)
            if self._sleep_fds is None:
                self._sync_fds()
            self.sleeps += 1
            ready = self.poller.wait(timeout)
        finally:
            for entry in armed:
                try:
                    entry.rxq.polling = True
                except NotConnectedError:
                    self._drop(entry)
        if not ready:  # the deadline: timers are due
            self._control_at = -math.inf
            return False
        return self._woken(ready)

    def _woken(self, ready: set[int]) -> bool:
        """After a sleep that ``ready`` fds ended: clear the kicked queues' eventfds, and
        have the next turn serve the control plane unless kicks alone ended it."""
        self.wakeups += 1
        kicked = 0
        for entry in self._entries:
            if entry.fd in ready:
                kicked += 1
                try:
                    entry.rxq.clear_interrupt()
                except NotConnectedError:
                    self._drop(entry)
        self.woken_by_kicks = kicked == len(ready)
        if not self.woken_by_kicks:  # a socket or an extra fd: serve them in the next turn
            self._ready = ready
            self._control_at = -math.inf
        return True

    def ready(self, fds: Iterable[int] = ()) -> None:
        """Tell the loop that a foreign event loop found ``fds`` readable (or that
        something changed): the next turn serves them and the control plane."""
        self._ready.update(fds)
        self._control_at = -math.inf

    @property
    def control_fds(self) -> tuple[int, ...]:
        """What a foreign event loop watches for this loop: the sockets' fds, then the
        extra fds (the queues' eventfds are :attr:`rx_queues`' ``fd``)."""
        return (*(s.fileno() for s in self._sockets if not s.closed), *self._readers)

    def run(self, until: Callable[[], bool] | None = None, duration: float | None = None) -> None:
        """Turn and sleep until ``until()`` is true or ``duration`` seconds passed."""
        end = math.inf if duration is None else self.clock() + duration
        while not (until is not None and until()):
            deadline = self.run_once()
            if self.now >= end:
                return
            if deadline > self.now:
                self.sleep(min(deadline, end))

    # ------------------------------------------------------------------ internals
    def _coalescing_interval(self, now: float) -> float:
        """How long until ``_target`` packets should be in at the rate measured since
        the last turn that let the loop wait (the turns spun since, catching up, count
        in), at most ``max_coalesce``."""
        elapsed = max(now - self._window_at, 0.0)
        return min(self.max_coalesce, elapsed * self._target / max(self._window_work, 1))

    def _nap_until(self, deadline: float) -> float:
        """Make the turn's deadline a coalescing nap's end (no later than a timer)."""
        self._nap = True
        timers = self._timers
        if timers and timers[0].when < deadline:
            deadline = max(self.now, timers[0].when)
        self._nap_end = deadline
        return deadline

    def _take_nap(self, timeout: float) -> bool:
        """A coalescing nap: the adaptive queues stay in polling mode (no kicks); the
        sockets, the extra fds and interrupt-mode queues end it early.  Its end leaves
        the control plane to its period (it is no deadline of a timer)."""
        fds = self._nap_poller
        if self._sleep_fds is None:
            self._sync_fds()
        self.sleeps += 1
        self.naps += 1
        # In slices: a nap ends once a slice brought nothing new (the peer has sent what it
        # had: a closed loop, a window-limited flow, a pause), not only at its end.
        step = max(MIN_NAP, timeout / NAP_SLICES)
        end = self.clock() + timeout
        seen = self._arrived()
        while True:
            ready = fds.wait(min(step, max(end - self.clock(), 0.0)))
            if ready:
                return self._woken(ready)
            arrived = self._arrived()
            if arrived == seen or self.clock() >= end:
                self.woken_by_kicks = True  # as a kick's wake-up: no control work
                return False
            seen = arrived

    def _arrived(self) -> int:
        """Descriptors waiting on the adaptive queues (-1 once one has disconnected)."""
        total = 0
        for entry in self._entries:
            if entry.mode is RxMode.ADAPTIVE:
                try:
                    total += entry.rxq.ready()
                except NotConnectedError:
                    return -1
        return total

    def _sync_fds(self) -> None:
        """Lay out what sleeps and naps wait on (after a registration changed)."""
        socks = [s.fileno() for s in self._sockets]
        fds = self._sleep_fds = (*socks, *self._readers, *(e.fd for e in self._entries))
        self.poller.update(fds)
        kicked = (e.fd for e in self._entries if e.mode is RxMode.INTERRUPT)
        self._nap_poller.update((*socks, *self._readers, *kicked))

    def _control(self) -> None:
        """Serve the extra fds that are readable and poll every socket once."""
        ready, self._ready = self._ready, set()
        if self._readers:
            if not ready:
                ready = self._reader_poller.wait(0)
            for fd in ready:
                callback = self._readers.get(fd)
                if callback is not None:
                    callback(fd)
        if any(s.closed for s in self._sockets):
            self._sockets = [s for s in self._sockets if not s.closed]
            self._sleep_fds = None
        for sock in self._sockets:
            sock.poll(0)

    def _idle_deadline(self, now: float) -> float:
        """When an idle loop must turn again: timers, socket timers, ``max_sleep``."""
        deadline = now + self.max_sleep
        timers = self._timers
        while timers and timers[0].cancelled:
            heapq.heappop(timers)
        if timers:
            deadline = min(deadline, timers[0].when)
        for sock in self._sockets:
            left = sock.next_timeout()
            if left is not None:
                if left <= 0:  # due: the next turn serves it (no spin until the period)
                    self._control_at = -math.inf
                deadline = min(deadline, now + left)
        return max(deadline, now)

    def __repr__(self) -> str:
        return (
            f"<EventLoop {len(self._sockets)} sockets, {len(self._rx)} rx queues, "
            f"{len(self._readers)} fds, {len(self._timers)} timers>"
        )


def arm_rx(rxq: RxQueue) -> bool:
    """Get ``rxq`` ready for a sleep on its eventfd; True when packets are ready (do not
    sleep then).

    Clears MASK_INT (interrupt mode: the peer kicks from now on), reads the eventfd to
    forget old kicks, and only then looks at the ring: a burst published before the look
    is seen now, one published after it leaves the eventfd readable.  An unfinished chain
    already seen is not "ready" (:meth:`~memif.RxQueue.ready`), so it does not make a
    loop spin.  Raises NotConnectedError once the queue's connection ended.
    """
    rxq.polling = False
    rxq.clear_interrupt()
    return rxq.ready() > 0
