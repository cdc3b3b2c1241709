"""One memif interface: its configuration, its connection's memory and queues.

An :class:`Interface` belongs to a :class:`~memif.Socket`, which drives the control
channel; the interface builds (client) or maps (server) the shared memory when the
handshake gets there, owns every fd and mapping of the connection, and releases
them all on disconnect.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import proto, wire
from .config import InterfaceConfig, Role, format_mac
from .errors import NotConnectedError, ProtocolError
from .queue import RxQueue, TxQueue
from .ratelog import PerKeyLog
from .shm import Layout, Region, Ring

if TYPE_CHECKING:
    from .sock import Socket, _Conn


class BufferPool:
    """Application memory that can be shared with the peer as an extra region.

    A client interface created with ``pools=[pool]`` sends the pool as a region, and
    :meth:`TxQueue.tx_zero_copy` transmits descriptors that point straight into it:
    the application writes packets into ``pool.array`` and nothing is ever copied
    (libmemif's external region, VPP's slave zero-copy).
    """

    def __init__(self, size: int, name: str = "memif pool") -> None:
        self.region = Region.create(size, name)
        self.array: np.ndarray = self.region.array
        self.size = size
        self.region.owns_fd = True

    def close(self) -> None:
        """Release the memory (after every interface using it disconnected)."""
        self.region.close()


@dataclass
class RingDetails:
    """One ring as ``memif_get_details``/``show memif`` report it."""

    s2m: bool
    index: int
    region: int
    offset: int
    ring_size: int
    fd: int
    head: int
    tail: int
    flags: int


@dataclass
class InterfaceDetails:
    """Everything ``memif_get_details`` tells, plus counters."""

    name: str
    id: int
    role: str
    mode: str
    socket: str
    state: str
    mac: str
    app_name: str
    remote_app_name: str
    remote_if_name: str
    secret_set: bool
    num_s2m_rings: int
    num_m2s_rings: int
    ring_size: int
    buffer_size: int
    regions: list[tuple[int, int, int]] = field(default_factory=list)  # index, size, fd
    rings: list[RingDetails] = field(default_factory=list)
    local_disc_reason: str = ""
    remote_disc_reason: str = ""
    control_fd: int | None = None  # the control connection's socket, while there is one


ConnectCallback = Callable[["Interface"], None]
DisconnectCallback = Callable[["Interface", str], None]

log = logging.getLogger("memif")
#: a listener that raises at every connect must not write a line each time
_listener_log = PerKeyLog(log)


class Listener:
    """One registered pair of connect/disconnect callbacks (:meth:`Interface.add_listener`).

    ``on_connect(iface)`` runs once the data path is up; ``on_disconnect(iface, reason)``
    runs when it goes down, before the queues are released (a listener may still
    unregister their fds from its event loop).  :meth:`remove` unregisters it.
    """

    __slots__ = ("_registry", "on_connect", "on_disconnect")

    def __init__(
        self,
        registry: list[Listener],
        on_connect: ConnectCallback | None,
        on_disconnect: DisconnectCallback | None,
    ) -> None:
        self._registry = registry
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect

    @property
    def active(self) -> bool:
        """True until :meth:`remove`."""
        return any(entry is self for entry in self._registry)

    def remove(self) -> None:
        """Stop calling these callbacks (removing twice does nothing)."""
        for i, entry in enumerate(self._registry):
            if entry is self:
                del self._registry[i]
                return


class Interface:
    """A memif interface; use its ``rx_queues``/``tx_queues`` once ``connected``."""

    def __init__(
        self,
        socket: Socket,
        config: InterfaceConfig,
        *,
        on_connect: ConnectCallback | None = None,
        on_disconnect: DisconnectCallback | None = None,
        pools: Sequence[BufferPool] = (),
    ) -> None:
        self.socket = socket
        self.config = config
        self._listeners: list[Listener] = []
        self._listener_errors = 0
        if on_connect is not None or on_disconnect is not None:
            self.add_listener(on_connect=on_connect, on_disconnect=on_disconnect)
        self.pools = list(pools)
        self.name = config.name or f"memif{config.id}"
        self.rx_queues: list[RxQueue] = []
        self.tx_queues: list[TxQueue] = []
        self.regions: list[Region] = []
        self.rings: list[tuple[bool, int, Ring]] = []
        self.local_disc_reason = ""
        self.remote_disc_reason = ""
        self.remote_app_name = ""
        self.remote_if_name = ""
        self.enabled = True
        self.connect_count = 0
        self._conn: _Conn | None = None
        self._connected = False
        self._eventfds: list[int] = []
        self._polling: dict[int, bool] = {}
        self._layout: Layout | None = None  # client: what _client_setup allocated
        self.next_retry: float | None = 0.0 if config.role is Role.CLIENT else None

    # ------------------------------------------------------------------ properties
    @property
    def role(self) -> Role:
        """Server or client."""
        return self.config.role

    @property
    def id(self) -> int:
        """Interface id (told apart on one socket by it)."""
        return self.config.id

    @property
    def connected(self) -> bool:
        """True while the data path is up."""
        return self._connected

    @property
    def state(self) -> str:
        """``connected``, ``connecting`` (handshake under way) or ``disconnected``."""
        if self._connected:
            return "connected"
        return "connecting" if self._conn is not None else "disconnected"

    @property
    def listener_errors(self) -> int:
        """Exceptions raised by listeners so far (each is logged, then the next runs)."""
        return self._listener_errors

    def pool_region(self, pool: BufferPool) -> int:
        """Region index a shared pool got in the current connection."""
        return self._first_pool_region + self.pools.index(pool)

    @property
    def _first_pool_region(self) -> int:
        """Pools follow our own regions: rings and buffers in one (VPP) or two (libmemif)."""
        return 1 if self.config.single_region else 2

    # ------------------------------------------------------------------ listeners
    def add_listener(
        self,
        *,
        on_connect: ConnectCallback | None = None,
        on_disconnect: DisconnectCallback | None = None,
    ) -> Listener:
        """Call ``on_connect(iface)`` at each connect, ``on_disconnect(iface, reason)``
        at each disconnect; returns the :class:`Listener`, whose ``remove()`` ends that.

        Listeners run in the order they were added, from :meth:`Socket.poll`.  One that
        raises is logged (rate-limited, on the ``memif`` logger) and counted in
        :attr:`listener_errors`; the others still run and the socket goes on.  The
        ``on_connect``/``on_disconnect`` options of ``create_interface`` are the first
        listener.
        """
        listener = Listener(self._listeners, on_connect, on_disconnect)
        self._listeners.append(listener)
        return listener

    def _notify(self, reason: str | None) -> None:
        """Run every listener's connect (``reason`` None) or disconnect callback."""
        for listener in tuple(self._listeners):
            try:
                if reason is None:
                    if listener.on_connect is not None:
                        listener.on_connect(self)
                elif listener.on_disconnect is not None:
                    listener.on_disconnect(self, reason)
            except Exception:  # a listener's bug must not break the socket
                self._listener_errors += 1
                kind = "connect" if reason is None else "disconnect"
                _listener_log.log(
                    (self.socket.path, self.id, kind),
                    "memif %s: a %s listener raised",
                    self.name,
                    kind,
                    level=logging.ERROR,
                    exc_info=True,
                )

    # ------------------------------------------------------------------ rx mode
    def set_rx_mode(self, queue: int, polling: bool) -> None:
        """Polling (MASK_INT set: the peer does not signal) or interrupt mode."""
        self._polling[queue] = polling
        if queue < len(self.rx_queues):
            self.rx_queues[queue].polling = polling

    # ------------------------------------------------------------------ data shortcuts
    def _need(self) -> None:
        if not self._connected:
            raise NotConnectedError(f"{self.name} is not connected")

    def send(self, packets: Sequence[bytes], queue: int = 0) -> int:
        """Copy packets out on ``queue`` (chained when large); returns how many went."""
        self._need()
        return self.tx_queues[queue].send(packets)

    def recv(self, max_packets: int = 256, queue: int = 0) -> list[bytes]:
        """Receive packets as ``bytes`` and refill at once."""
        self._need()
        return self.rx_queues[queue].recv(max_packets)

    # ------------------------------------------------------------------ client side
    def _client_setup(
        self, hello: wire.Hello
    ) -> tuple[list[tuple[int, int]], list[tuple[wire.AddRing, int]], str]:
        """Negotiate with HELLO, allocate regions, rings and eventfds (client)."""
        cfg = self.config
        needed = self._first_pool_region + len(self.pools)
        if needed > hello.max_region + 1:
            raise ProtocolError(f"master accepts {hello.max_region + 1} regions, {needed} needed")
        layout = Layout(
            num_s2m=min(hello.max_s2m_ring + 1, cfg.tx_queues),
            num_m2s=min(hello.max_m2s_ring + 1, cfg.rx_queues),
            log2_ring_size=min(hello.max_log2_ring_size, cfg.log2_ring_size),
            buffer_size=cfg.buffer_size,
            cacheline=cfg.cacheline,
            single_region=cfg.single_region,
        )
        self._layout = layout
        for i, size in enumerate(layout.region_sizes()):
            self.regions.append(Region.create(size, f"{self.name} region {i}"))
        for pool in self.pools:
            self.regions.append(Region(pool.region.fd, pool.size, owns_fd=False))
        rings_msgs: list[tuple[wire.AddRing, int]] = []
        for s2m, count in ((True, layout.num_s2m), (False, layout.num_m2s)):
            for i in range(count):
                efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                self._eventfds.append(efd)
                off = layout.ring_offset(s2m, i)
                ring = Ring(self.regions[0], off, layout.log2_ring_size, cfg.cacheline, efd)
                ring.init()
                self.rings.append((s2m, i, ring))
                msg = wire.AddRing(s2m, i, 0, off, layout.log2_ring_size)
                rings_msgs.append((msg, efd))
        regions = [(r.size, r.fd) for r in self.regions]
        return regions, rings_msgs, self.name

    def _client_connected(self, remote_if_name: str) -> None:
        layout, cfg = self._layout, self.config
        assert layout is not None
        for s2m, i, ring in self.rings:
            offsets = layout.buffer_offsets(s2m, i)
            kw = dict(
                is_master=False,
                buffer_region=layout.buffer_region,
                buffer_offsets=offsets,
                buffer_size=cfg.buffer_size,
            )
            if s2m:
                self.tx_queues.append(TxQueue(ring, self.regions, i, **kw))
            else:
                q = RxQueue(ring, self.regions, i, **kw)
                q.headroom = cfg.headroom
                self.rx_queues.append(q)
        # libmemif resets the counters at connect: post receive buffers only now.
        if cfg.post_rx_buffers:
            for q in self.rx_queues:
                q.refill()
        self._up(remote_if_name)

    # ------------------------------------------------------------------ server side
    def _server_attach(self, req: proto.ConnectRequested, *, unsealed_ok: bool = False) -> None:
        """Map the offered regions and rings; raise ProtocolError if they are unusable.

        ``unsealed_ok``: the peer is trusted with memory not sealed against shrinking.
        """
        cfg = self.config
        try:
            for offer in req.regions:
                self.regions.append(
                    Region.map_offer(offer.index, offer.fd, offer.size, unsealed_ok=unsealed_ok)
                )
            for ring_offer in req.rings:
                region = self.regions[ring_offer.region]
                ring = Ring(
                    region,
                    ring_offer.offset,
                    ring_offer.log2_size,
                    cfg.cacheline,
                    ring_offer.fd,
                    ring_offer.region,
                )
                self.rings.append((ring_offer.s2m, ring_offer.index, ring))
                if ring.cookie != wire.COOKIE:
                    kind = "tx" if ring_offer.s2m else "rx"
                    raise ProtocolError(f"wrong cookie on {kind} ring {ring_offer.index}")
        except ProtocolError as exc:
            self._release_memory(str(exc))
            raise
        for s2m, i, ring in self.rings:
            if s2m:
                self.rx_queues.append(RxQueue(ring, self.regions, i, is_master=True))
            else:
                self.tx_queues.append(TxQueue(ring, self.regions, i, is_master=True))
        self._up(req.if_name)

    # ------------------------------------------------------------------ both
    def _up(self, remote_if_name: str) -> None:
        assert self._conn is not None
        self.remote_app_name = self._conn.channel.remote_name  # before on_connect runs
        self.remote_if_name = remote_if_name
        self.local_disc_reason = self.remote_disc_reason = ""
        for q in self.rx_queues:
            q.polling = self._polling.get(q.index, self.config.polling)
        self._connected = True
        self.connect_count += 1
        self._notify(None)

    def _down(self, reason: str, by_peer: bool) -> None:
        """Forget the connection and release its memory (called by the socket)."""
        was_up = self._connected
        if by_peer:
            self.remote_disc_reason = reason
        else:
            self.local_disc_reason = reason
        self._connected = False
        self._conn = None
        try:
            # Before teardown: the callback may still unregister queue fds from its loop.
            if was_up:
                self._notify(reason)
        finally:
            self._release_memory(reason)

    def _release_memory(self, reason: str) -> None:
        """Unmap and close everything of the connection; its queues raise from now on."""
        for kind, queues in (("rx", self.rx_queues), ("tx", self.tx_queues)):
            for q in queues:
                q.release(
                    f"{kind} queue {q.index} of {self.name}: the interface disconnected ({reason})"
                )
        self.rx_queues.clear()
        self.tx_queues.clear()
        for _, _, ring in self.rings:
            ring.release()
        self.rings.clear()
        for region in self.regions:
            region.close()
        self.regions.clear()
        for fd in self._eventfds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._eventfds.clear()

    def fault(self) -> str | None:
        """A data-path fault (impossible ring counters) that ends the connection."""
        for q in (*self.rx_queues, *self.tx_queues):
            if q.fault:
                return q.fault
        return None

    def disconnect(self, reason: str = "disconnected by user") -> None:
        """Send DISCONNECT(reason) and drop the connection (a client then retries)."""
        self.socket._disconnect(self, reason)

    def delete(self) -> None:
        """Disconnect (reason "interface deleted") and remove from the socket."""
        self.socket._delete(self)

    def details(self) -> InterfaceDetails:
        """A snapshot like libmemif's ``memif_get_details``."""
        cfg = self.config
        conn = self._conn
        rings = [
            RingDetails(
                s2m,
                i,
                ring.region_index,
                ring.offset,
                ring.size,
                ring.eventfd,
                ring.head,
                ring.tail,
                ring.flags,
            )
            for s2m, i, ring in self.rings
        ]
        return InterfaceDetails(
            name=self.name,
            id=cfg.id,
            role=cfg.role.value,
            mode=cfg.mode.name.lower(),
            socket=self.socket.path,
            state=self.state,
            mac=format_mac(cfg.mac),
            app_name=self.socket.app_name,
            remote_app_name=conn.channel.remote_name if conn else self.remote_app_name,
            remote_if_name=self.remote_if_name if self._connected else "",
            secret_set=bool(cfg.secret),
            num_s2m_rings=sum(1 for s, _, _ in self.rings if s),
            num_m2s_rings=sum(1 for s, _, _ in self.rings if not s),
            ring_size=self.rings[0][2].size if self.rings else cfg.ring_size,
            buffer_size=cfg.buffer_size if cfg.role is Role.CLIENT else 0,
            regions=[(i, r.size, r.fd) for i, r in enumerate(self.regions)],
            rings=rings,
            local_disc_reason=self.local_disc_reason,
            remote_disc_reason=self.remote_disc_reason,
            control_fd=conn.sock.fileno() if conn else None,
        )
