"""asyncio integration: drive a memif socket from an event loop, await packets and room.

An adapter: the control plane is a :class:`memif.loop.EventLoop` whose fds and deadline
asyncio watches, the receive side sleeps on the queues' interrupt eventfds in the asyncio
loop, and disconnects are learnt from the interfaces' listeners.  Nothing busy-polls::

    import memif
    from memif import aio

    async def main() -> None:
        async with aio.AsyncSocket("@demo") as s:
            iface = s.create_interface(role="server", id=0)
            await aio.wait_connected(iface)
            async for batch in aio.rx_batches(iface, reconnect=True):
                print(batch.count, "packets")  # the slots are refilled on the next turn

The pieces:

* :class:`AsyncSocket` wraps a :class:`memif.Socket`.  :meth:`~AsyncSocket.attach`
  (or ``async with``) registers the socket's fd with ``loop.add_reader`` and keeps one
  ``loop.call_at`` timer at the deadline its :class:`~memif.loop.EventLoop` returns
  (reconnects, handshake timeouts, the data-path fault check).  Every run of the control
  plane wakes whoever waits for a change (:meth:`AsyncSocket.changed`).
* :func:`wait_connected` waits until an interface is up.
* :func:`recv_batch` waits until a receive queue has packets and returns the
  :class:`~memif.RxBatch`; the caller refills.  :func:`rx_batches` is the same as an
  ``async for`` loop that refills for you; :func:`recv` returns ``bytes``.
* :func:`wait_tx_free` waits until a transmit queue has free slots.

**Interrupt mode.**  While a receiver sleeps, its queue is in interrupt mode (the
ring's MASK_INT clear), so the peer kicks the eventfd after every burst.  A queue
left in polling mode (``Interface.set_rx_mode(q, polling=True)``) gets interrupts
only while someone awaits it and is switched back to polling before the batch is
returned: the peer then saves the system call per burst while the application
is busy, as VPP's adaptive mode does.

**Wakeups.**  A waiter arms its queue (:func:`memif.loop.arm_rx`: interrupt mode, old
kicks forgotten, then a look at the ring) and only then sleeps on the eventfd, so a
burst published at any point is seen: before the look it is taken, after it the
eventfd is readable.  There is no periodic look: a lost wakeup would hang, not slow.

**Disconnects.**  Queues belong to one connection: on every reconnect the interface
builds new ones (``iface.rx_queues`` is a new list).  An attached socket listens to
its interfaces (:meth:`memif.Interface.add_listener`): at a disconnect, before the
queues are released and their eventfds closed, it takes the sleepers' eventfds out of
the asyncio loop and wakes them; they raise :class:`memif.NotConnectedError`.  The
functions that take an :class:`~memif.Interface` (:func:`recv`, :func:`rx_batches`)
fetch the queue afresh and, with ``reconnect=True``, wait for the next connection
instead of raising.

A queue whose socket is not attached (its control plane driven elsewhere) has no
listener to say when its connection ends: its waiter sleeps on a ``dup`` of the
eventfd (so the library closing the original cannot leave a closed fd in the asyncio
loop) and looks at the queue twice a second.

**Transmit.**  memif has no transmit-completion interrupt: the peer gives slots back
without a kick.  :func:`wait_tx_free` therefore looks at the ring with a backoff
(:data:`TX_POLL_MIN` doubling up to :data:`TX_POLL_MAX` seconds between looks: at most
a hundred looks a second once the backoff settles) on asyncio timers, and raises
:class:`memif.NotConnectedError` when the connection ends.

One coroutine at a time may wait on a given queue: it is a consumer, like a
thread calling ``rx_burst``.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from typing import Any, Self, TypeVar

from .config import InterfaceConfig, Role
from .errors import NotConnectedError
from .interface import Interface, Listener
from .loop import EventLoop, arm_rx
from .queue import RxBatch, RxQueue, TxQueue
from .sock import Socket

__all__ = [
    "MAX_SLEEP",
    "TX_POLL_MAX",
    "TX_POLL_MIN",
    "AsyncSocket",
    "RxBatches",
    "recv",
    "recv_batch",
    "rx_batches",
    "wait_connected",
    "wait_tx_free",
]

#: Longest the control plane sleeps between two looks at its timers, in seconds: a
#: safety net for changes made to the socket behind the AsyncSocket's back.
MAX_SLEEP = 1.0
#: First and longest wait, in seconds, between two looks for free transmit slots.
TX_POLL_MIN = 0.0001
TX_POLL_MAX = 0.01
#: How often a waiter whose socket is not attached checks that its queue still exists.
_LIVENESS = 0.5

#: the AsyncSocket attached for a Socket
_attached: weakref.WeakKeyDictionary[Socket, AsyncSocket] = weakref.WeakKeyDictionary()
#: receive queues of a connection an attached socket's listener watches, and the socket
_watched: weakref.WeakKeyDictionary[RxQueue, AsyncSocket] = weakref.WeakKeyDictionary()
#: the waiter sleeping on a receive queue, if any
_sleeping: weakref.WeakKeyDictionary[RxQueue, _QueueWaiter] = weakref.WeakKeyDictionary()


class AsyncSocket:
    """A :class:`memif.Socket` driven by an asyncio event loop.

    ``socket`` is an existing socket or a path (``@name``, ``abstract:name`` or a
    filesystem path); with a path, ``options`` go to :class:`memif.Socket`.

    Use it as ``async with AsyncSocket(path) as s:`` (attach on entry, close on exit)
    or call :meth:`attach` and :meth:`close` yourself.

    The loop learns about timers when the control plane runs.  Changes made from
    outside it (``sock.create_interface``, ``iface.disconnect()``) are picked up at
    the next run, at most :data:`MAX_SLEEP` seconds later; create interfaces
    through :meth:`create_interface`, or call :meth:`wake` after such a change, to
    have a client's connection attempt made at once.  :func:`wait_connected` wakes
    the socket itself.
    """

    def __init__(self, socket: Socket | str, **options: Any) -> None:
        if isinstance(socket, Socket):
            if options:
                raise TypeError("options only apply when AsyncSocket creates the socket")
            self.socket = socket
        else:
            self.socket = Socket(socket, **options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: EventLoop | None = None
        self._fds: tuple[int, ...] = ()
        self._timer: asyncio.TimerHandle | None = None
        self._waiters: set[asyncio.Future[None]] = set()
        self._listeners: dict[Interface, Listener] = {}

    @classmethod
    def of(cls, socket: Socket) -> AsyncSocket | None:
        """The AsyncSocket attached for ``socket`` to an event loop, if any."""
        return _attached.get(socket)

    # ------------------------------------------------------------------ lifecycle
    @property
    def attached(self) -> bool:
        """True while registered with an event loop."""
        return self._loop is not None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop this socket is attached to, if any."""
        return self._loop

    @property
    def events(self) -> EventLoop | None:
        """The :class:`~memif.loop.EventLoop` that serves the control plane while attached."""
        return self._events

    @property
    def interfaces(self) -> dict[int, Interface]:
        """The socket's interfaces by id."""
        return self.socket.interfaces

    def attach(self, loop: asyncio.AbstractEventLoop | None = None) -> Self:
        """Register with ``loop`` (default: the running loop); returns ``self``.

        From now on the loop runs the control plane whenever the socket's fd is
        readable or one of its timers is due.
        """
        loop = loop or asyncio.get_running_loop()
        if self._loop is loop:
            return self
        if self._loop is not None:
            raise RuntimeError("AsyncSocket is already attached to another event loop")
        if self.socket.closed:
            raise RuntimeError(f"socket {self.socket.path} is closed")
        other = _attached.get(self.socket)
        if other is not None and other is not self:
            raise RuntimeError(f"socket {self.socket.path} is already attached")
        events = EventLoop(clock=loop.time, max_sleep=MAX_SLEEP)
        events.add_socket(self.socket)
        self._fds = events.control_fds
        for fd in self._fds:
            loop.add_reader(fd, self._service)
        self._loop, self._events = loop, events
        _attached[self.socket] = self
        self._follow_interfaces()
        self.wake()  # a client's first connection attempt is due at once
        return self

    def detach(self) -> None:
        """Unregister from the loop; the socket stays open.  Waiters are woken."""
        loop = self._loop
        if loop is None:
            return
        self._loop = self._events = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for fd in self._fds:
            loop.remove_reader(fd)
        self._fds = ()
        if _attached.get(self.socket) is self:
            del _attached[self.socket]
        for iface, listener in list(self._listeners.items()):
            listener.remove()
            self._unwatch(iface)  # their sleepers go on unattached
        self._listeners.clear()
        self._wake_waiters()

    def close(self) -> None:
        """Detach and close the socket (every interface disconnects)."""
        self.detach()
        self.socket.close()

    async def __aenter__(self) -> Self:
        return self.attach()

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ interfaces
    def create_interface(self, config: InterfaceConfig | None = None, **options: Any) -> Interface:
        """:meth:`memif.Socket.create_interface`, then :meth:`wake`."""
        iface = self.socket.create_interface(config, **options)
        self._follow_interfaces()
        self.wake()
        return iface

    def wake(self) -> None:
        """Run the control plane soon, e.g. after changing the socket directly."""
        if self._loop is not None:
            self._schedule(self._loop.time())

    async def wait_connected(self, iface: Interface, timeout: float | None = None) -> Interface:
        """:func:`wait_connected` for one of this socket's interfaces."""
        if iface.socket is not self.socket:
            raise ValueError(f"{iface.name} does not belong to {self.socket.path}")
        return await wait_connected(iface, timeout)

    async def wait_tx_free(
        self, iface: Interface, n: int = 1, queue: int = 0, *, timeout: float | None = None
    ) -> int:
        """:func:`wait_tx_free` on ``iface``'s transmit queue ``queue`` (connected)."""
        if iface.socket is not self.socket:
            raise ValueError(f"{iface.name} does not belong to {self.socket.path}")
        if not iface.connected:
            raise NotConnectedError(f"{iface.name} is not connected")
        return await wait_tx_free(_queue(iface, iface.tx_queues, queue, "tx"), n, timeout=timeout)

    def changed(self) -> asyncio.Future[None]:
        """A future resolved after the next run of the control plane (or on detach)."""
        loop = _running_loop_of(self)
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.add(fut)
        fut.add_done_callback(self._waiters.discard)
        return fut

    async def wait_changed(self, timeout: float | None = None) -> None:
        """Wait until the control plane has run once more (anything may have changed)."""
        async with asyncio.timeout(timeout):
            await self.changed()

    # ------------------------------------------------------------------ internals
    def _schedule(self, when: float) -> None:
        assert self._loop is not None
        if self._timer is not None:
            if self._timer.when() <= when:
                return  # an earlier run is due already
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._service)

    def _service(self) -> None:
        """Do the socket's pending control work, then re-arm the timer."""
        events = self._events
        if events is None:
            return
        if self.socket.closed:
            self.detach()
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = None
        try:
            events.ready()  # the fd fired or a timer is due: serve the control plane now
            deadline = events.run_once()
        finally:
            if self._loop is not None:
                if self.socket.closed:
                    self.detach()
                else:
                    self._follow_interfaces()
                    self._schedule(self._loop.time() + MAX_SLEEP if deadline is None else deadline)
            self._wake_waiters()

    def _follow_interfaces(self) -> None:
        """Listen to every interface of the socket (created here or behind our back)."""
        interfaces = self.socket.interfaces
        if len(self._listeners) == len(interfaces) and not any(i.deleted for i in self._listeners):
            return
        for iface in [i for i in self._listeners if i.deleted]:
            self._listeners.pop(iface).remove()
            self._unwatch(iface)
        for iface in interfaces.values():
            if iface not in self._listeners:
                self._listeners[iface] = iface.add_listener(
                    on_connect=self._watch, on_disconnect=lambda i, _reason: self._unwatch(i)
                )
                if iface.connected:
                    self._watch(iface)

    def _watch(self, iface: Interface) -> None:
        """Connected: the sleepers on these queues may use their eventfds directly."""
        for q in iface.rx_queues:
            _watched[q] = self

    def _unwatch(self, iface: Interface) -> None:
        """Stop watching ``iface``'s queues and wake their sleepers: they take the eventfds
        out of the asyncio loop at once and re-arm (on a dup), or raise when the connection
        ended.  Also the disconnect listener: it runs before the queues are released."""
        for q in iface.rx_queues:  # empty unless connected (or being disconnected)
            if _watched.get(q) is self:
                del _watched[q]
            sleeper = _sleeping.get(q)
            if sleeper is not None:
                sleeper.wake()

    def _wake_waiters(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for fut in waiters:
            _resolve(fut)

    def __repr__(self) -> str:
        state = "attached" if self._loop is not None else "detached"
        return f"<AsyncSocket {self.socket.path} {state}, {len(self.interfaces)} interfaces>"


# ---------------------------------------------------------------------- helpers


def _running_loop_of(owner: AsyncSocket) -> asyncio.AbstractEventLoop:
    loop = asyncio.get_running_loop()
    if owner.loop is not None and owner.loop is not loop:
        raise RuntimeError(f"socket {owner.socket.path} is attached to another event loop")
    return loop


def _owner(sock: Socket) -> AsyncSocket:
    """The AsyncSocket driving ``sock`` in the running loop; RuntimeError if none."""
    owner = _attached.get(sock)
    if owner is None or not owner.attached:
        raise RuntimeError(
            f"socket {sock.path} is not attached to an event loop: "
            "use `async with memif.aio.AsyncSocket(...)` or AsyncSocket(sock).attach()"
        )
    _running_loop_of(owner)
    return owner


def _can_connect(iface: Interface) -> None:
    """Raise NotConnectedError when ``iface`` will never come up by itself."""
    if iface.deleted:
        raise NotConnectedError(f"{iface.name} was deleted")
    if not iface.admin_up:
        raise NotConnectedError(f"{iface.name} is disabled")
    if iface.role is Role.CLIENT and iface.state == "disconnected" and iface.next_retry is None:
        reason = iface.local_disc_reason or iface.remote_disc_reason or "no retry scheduled"
        raise NotConnectedError(f"{iface.name} will not reconnect ({reason})")


def _resolve(fut: asyncio.Future[None]) -> None:
    """Wake whoever awaits ``fut`` (once; later calls do nothing)."""
    if not fut.done():
        fut.set_result(None)


_Q = TypeVar("_Q", RxQueue, TxQueue)


def _queue(iface: Interface, queues: list[_Q], queue: int, what: str) -> _Q:
    """``queues[queue]``, or an IndexError that says how many there are."""
    try:
        return queues[queue]
    except IndexError:
        raise IndexError(
            f"{iface.name} has {len(queues)} {what} queues, no queue {queue}"
        ) from None


async def _connected_queue(iface: Interface, queue: int, reconnect: bool) -> RxQueue:
    """``iface``'s receive queue ``queue`` of the current connection.

    Not connected: raise :class:`memif.NotConnectedError`, or with ``reconnect`` wait
    for the next connection.
    """
    while not iface.connected:
        if not reconnect:
            raise NotConnectedError(f"{iface.name} is not connected")
        await wait_connected(iface)
    return _queue(iface, iface.rx_queues, queue, "rx")


# ---------------------------------------------------------------------- waiting
async def wait_connected(iface: Interface, timeout: float | None = None) -> Interface:
    """Wait until ``iface`` is connected; returns it.

    The interface's socket must be attached (:class:`AsyncSocket`).  Raises
    ``TimeoutError`` after ``timeout`` seconds and :class:`memif.NotConnectedError`
    when the interface cannot come up by itself any more: deleted, its socket closed,
    or a client whose reconnects are off (``reconnect_interval=None``) after a failure.
    """
    owner = _owner(iface.socket)
    if not iface.connected:
        owner.wake()  # a disconnect made behind the loop's back may have set a retry time
    async with asyncio.timeout(timeout):
        while not iface.connected:
            _can_connect(iface)
            if not owner.attached:
                raise NotConnectedError(f"{iface.name}: socket detached from the event loop")
            await owner.changed()
    return iface


class _QueueWaiter:
    """Sleeps on one receive queue's eventfd in the running asyncio loop."""

    def __init__(self, rxq: RxQueue) -> None:
        self.rxq = rxq
        self.loop = asyncio.get_running_loop()
        self.fut: asyncio.Future[None] | None = None
        self.fd = -1  # registered with the asyncio loop while sleeping
        self.own_fd = -1  # our dup of the eventfd, for a queue no listener watches

    def wake(self) -> None:
        """Stop sleeping: out of the asyncio loop at once (the eventfd may close next)."""
        self._unregister()
        if self.fut is not None:
            _resolve(self.fut)

    def close(self) -> None:
        self._unregister()
        fd, self.own_fd = self.own_fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def _unregister(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            self.loop.remove_reader(fd)
        if _sleeping.get(self.rxq) is self:
            del _sleeping[self.rxq]

    async def next_batch(self, max_packets: int) -> RxBatch:
        """Wait for packets and take up to ``max_packets`` of them (non-empty batch)."""
        rxq, loop = self.rxq, self.loop
        was_polling = rxq.polling  # NotConnectedError once the connection ended
        try:
            while True:  # arm_rx raises NotConnectedError once the connection ended
                if arm_rx(rxq):  # packets already: no sleep (the kick is forgotten)
                    batch = _burst(rxq, max_packets)
                    if batch.count:
                        return batch
                    continue  # only bad descriptors, dropped: look again
                fut = self.fut = loop.create_future()
                timer = None
                owner = _watched.get(rxq)
                if owner is not None and owner.attached:
                    self.fd = rxq.fd  # its listener takes it out before the core closes it
                else:
                    if self.own_fd < 0:
                        self.own_fd = os.dup(rxq.fd)
                    self.fd = self.own_fd
                    timer = loop.call_later(_LIVENESS, _resolve, fut)
                loop.add_reader(self.fd, _resolve, fut)
                _sleeping[rxq] = self
                try:
                    await fut
                finally:
                    self._unregister()
                    self.fut = None
                    if timer is not None:
                        timer.cancel()
        finally:
            if was_polling and rxq.connected:
                rxq.polling = True


def _burst(rxq: RxQueue, max_packets: int) -> RxBatch:
    """``rx_burst``; slots of packets dropped as bad (an empty batch) go back at once.
    Raises NotConnectedError (the queue's own, with the reason) once the connection ended."""
    cursor = rxq.cursor
    batch = rxq.rx_burst(max_packets)
    if not batch.count and rxq.cursor != cursor:
        rxq.refill()
    return batch


async def recv_batch(
    rxq: RxQueue, max_packets: int = 256, *, timeout: float | None = None
) -> RxBatch:
    """Wait until ``rxq`` has packets and take up to ``max_packets`` (never empty).

    Returns the :class:`~memif.RxBatch` at once when packets are pending (no system
    call); otherwise sleeps on the queue's eventfd in interrupt mode.  The batch's
    views point into shared memory: call ``rxq.refill()`` when done with it.

    Raises :class:`memif.NotConnectedError` if the queue's connection ends (before
    or while waiting) and ``TimeoutError`` after ``timeout`` seconds.  The queue's
    socket should be attached (:class:`AsyncSocket`) so that a disconnect is noticed
    at once; otherwise the waiter checks twice a second.
    """
    batch = _burst(rxq, max_packets)
    if batch.count:
        return batch
    waiter = _QueueWaiter(rxq)
    try:
        async with asyncio.timeout(timeout):
            return await waiter.next_batch(max_packets)
    finally:
        waiter.close()


class RxBatches:
    """Async iterator over received batches; see :func:`rx_batches`.

    Also an async context manager: leaving it (or :meth:`aclose`) refills the last
    batch and releases the waiter.
    """

    def __init__(
        self,
        source: RxQueue | Interface,
        queue: int = 0,
        max_packets: int = 256,
        *,
        refill: bool = True,
        reconnect: bool = False,
    ) -> None:
        if isinstance(source, Interface):
            self._iface: Interface | None = source
            self._fixed: RxQueue | None = None
        else:
            if reconnect:
                raise ValueError("reconnect=True needs the interface, not a queue")
            self._iface = None
            self._fixed = source
        self.queue = queue
        self.max_packets = max_packets
        self.refill = refill
        self.reconnect = reconnect
        self._waiter: _QueueWaiter | None = None
        self._last: RxQueue | None = None
        self._closed = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> RxBatch:
        if self._closed:
            raise StopAsyncIteration
        self._give_back()
        while True:
            rxq = await self._current_queue()
            try:
                batch = _burst(rxq, self.max_packets)
                if not batch.count:
                    if self._waiter is None or self._waiter.rxq is not rxq:
                        self._drop_waiter()
                        self._waiter = _QueueWaiter(rxq)
                    batch = await self._waiter.next_batch(self.max_packets)
            except NotConnectedError:
                self._drop_waiter()
                if not self.reconnect:
                    raise
                continue
            if self.refill:
                self._last = rxq
            return batch

    async def _current_queue(self) -> RxQueue:
        if self._fixed is not None:
            return self._fixed
        assert self._iface is not None
        return await _connected_queue(self._iface, self.queue, self.reconnect)

    def _give_back(self) -> None:
        rxq, self._last = self._last, None
        if rxq is not None and rxq.connected:
            rxq.refill()

    def _drop_waiter(self) -> None:
        if self._waiter is not None:
            self._waiter.close()
            self._waiter = None

    async def aclose(self) -> None:
        """Refill the last batch (when ``refill``) and release the waiter."""
        self._closed = True
        self._give_back()
        self._drop_waiter()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def rx_batches(
    source: RxQueue | Interface,
    queue: int = 0,
    max_packets: int = 256,
    *,
    refill: bool = True,
    reconnect: bool = False,
) -> RxBatches:
    """``async for batch in rx_batches(iface):`` -- every non-empty batch as it comes.

    ``source`` is an interface (its queue ``queue`` is fetched afresh each time) or
    one :class:`~memif.RxQueue`.  With ``refill`` (the default) the slots of a batch
    are given back when the next one is requested, so a batch's views are valid
    for one turn of the loop; leaving the loop early keeps the last batch's slots
    until :meth:`RxBatches.aclose` (or use ``async with rx_batches(...) as it``).
    With ``refill=False`` the caller refills, as with :func:`recv_batch`.

    On disconnect the iteration raises :class:`memif.NotConnectedError`, or, with
    ``reconnect=True`` (interfaces only), waits for the next connection and goes on
    with its new queue.  The socket must be attached for ``reconnect``.
    """
    return RxBatches(source, queue, max_packets, refill=refill, reconnect=reconnect)


async def recv(
    iface: Interface,
    queue: int = 0,
    max_packets: int = 256,
    *,
    timeout: float | None = None,
    reconnect: bool = False,
) -> list[bytes]:
    """Wait for packets on ``iface``'s queue ``queue``; return them as ``bytes``.

    The slots are refilled at once.  Raises :class:`memif.NotConnectedError` when the
    interface is not connected or disconnects while waiting, unless ``reconnect`` is
    true: then it waits for the next connection and receives there.  ``timeout``
    (seconds, the whole wait) raises ``TimeoutError``.
    """
    async with asyncio.timeout(timeout):
        while True:
            rxq = await _connected_queue(iface, queue, reconnect)
            try:
                batch = await recv_batch(rxq, max_packets)
            except NotConnectedError:
                if reconnect:
                    continue
                raise
            packets = batch.tolist()
            rxq.refill()
            return packets


async def wait_tx_free(txq: TxQueue, n: int = 1, *, timeout: float | None = None) -> int:
    """Wait until ``txq`` has at least ``n`` free slots; returns how many it has.

    Returns at once when there are (no system call).  memif has no interrupt for
    slots given back, so the ring is looked at again after :data:`TX_POLL_MIN` seconds,
    then after twice as long each time, up to :data:`TX_POLL_MAX`.  Raises
    :class:`memif.NotConnectedError` when the queue's connection ends and
    ``TimeoutError`` after ``timeout`` seconds; ``n`` is 1 up to the ring's size.
    """
    size = txq.size  # NotConnectedError once the connection ended
    if not 1 <= n <= size:
        raise ValueError(f"wait_tx_free: n is 1 to the ring size {size}, got {n!r}")
    free = txq.free_slots()
    if free >= n:
        return free
    delay = TX_POLL_MIN
    async with asyncio.timeout(timeout):
        while True:
            await asyncio.sleep(delay)
            free = txq.free_slots()
            if free >= n:
                return free
            delay = min(delay * 2, TX_POLL_MAX)
