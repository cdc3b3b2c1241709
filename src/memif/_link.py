"""One interface's link, owned by its :class:`~memif.Socket`.

A :class:`Link` is everything the socket knows about one interface: admin state and
retry deadline, the control :class:`Connection` while there is one, and the memory of
the current connection (regions, rings, eventfds, queues).  Only the socket changes
it; :class:`~memif.Interface` is the read-only facade users hold, and its actions
(``set_admin``, ``disconnect``, ``delete``) ask the socket.

The client builds its memory when HELLO arrives (:meth:`Link.setup_client`) and its
queues at CONNECTED (:meth:`Link.client_connected`); the server maps what the client
offered (:meth:`Link.attach_server`).  :meth:`Link.release_memory` unmaps and closes
all of it; the queues raise :class:`~memif.NotConnectedError` from then on.
"""

from __future__ import annotations

import contextlib
import os
import socket as _socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import proto, wire
from .access import PeerCredentials
from .config import InterfaceConfig, Role
from .errors import ProtocolError
from .queue import RxQueue, TxQueue
from .shm import Layout, Region, Ring

if TYPE_CHECKING:
    from .interface import BufferPool, Interface

ConnectCallback = Callable[["Interface"], None]
DisconnectCallback = Callable[["Interface", str], None]


@dataclass
class Connection:
    """One control connection, the channel that speaks on it and what it holds."""

    sock: _socket.socket
    channel: proto.Channel
    link: Link | None = None  # the interface's, once INIT named it (client: at once)
    interface: Interface | None = None  # that link's facade
    cred: PeerCredentials | None = None  # the peer's, read at accept or connect
    progress: float = 0.0  # when the peer last sent something
    started: float = 0.0  # when the connection was made
    charged: int = 0  # fds charged to the fd budget

    @property
    def owner(self) -> int | None:
        """Whose share of the fd budget this connection's fds count against: its peer's uid."""
        return None if self.cred is None else self.cred.uid


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


class Link:
    """One interface's state, written only by its socket (see the module's text)."""

    def __init__(
        self, config: InterfaceConfig, pools: Sequence[BufferPool], *, admin_up: bool = True
    ) -> None:
        self.config = config
        self.pools = list(pools)
        self.name = config.name or f"memif{config.id}"
        self.admin_up = admin_up
        self.deleted = False  # removed from its socket (Interface.delete or Socket.close)
        #: a client's next connect attempt (None: none scheduled)
        self.next_retry: float | None = 0.0 if config.role is Role.CLIENT and admin_up else None
        self.conn: Connection | None = None
        self.connected = False
        self.connect_count = 0
        self.local_disc_reason = ""
        self.remote_disc_reason = ""
        self.remote_app_name = ""
        self.remote_if_name = ""
        self.listeners: list[Listener] = []
        self.listener_errors = 0
        self.polling: dict[int, bool] = {}  # rx mode per queue, kept across connections
        # The current connection's memory.
        self.regions: list[Region] = []
        self.rings: list[tuple[bool, int, Ring]] = []
        self.eventfds: list[int] = []  # the client's own ring eventfds
        self.layout: Layout | None = None  # client: what setup_client allocated
        self.rx_queues: list[RxQueue] = []
        self.tx_queues: list[TxQueue] = []

    @property
    def first_pool_region(self) -> int:
        """Pools follow our own regions: rings and buffers in one (VPP) or two (libmemif)."""
        return 1 if self.config.single_region else 2

    @property
    def state(self) -> str:
        """``connected``, ``connecting`` (handshake under way) or ``disconnected``."""
        if self.connected:
            return "connected"
        return "connecting" if self.conn is not None else "disconnected"

    def add_listener(
        self, on_connect: ConnectCallback | None, on_disconnect: DisconnectCallback | None
    ) -> Listener:
        """Register a listener after the others (the socket calls them in order)."""
        listener = Listener(self.listeners, on_connect, on_disconnect)
        self.listeners.append(listener)
        return listener

    def set_rx_mode(self, queue: int, polling: bool) -> None:
        """Remember the rx mode of ``queue`` and apply it to the current queue."""
        self.polling[queue] = polling
        if queue < len(self.rx_queues):
            self.rx_queues[queue].polling = polling

    # ------------------------------------------------------------------ client side
    def setup_client(
        self, hello: wire.Hello
    ) -> tuple[list[tuple[int, int]], list[tuple[wire.AddRing, int]]]:
        """Negotiate with HELLO, allocate regions, rings and eventfds (client).

        Returns the regions as (size, fd) and the rings as (ADD_RING, eventfd) to offer.
        """
        cfg = self.config
        needed = self.first_pool_region + len(self.pools)
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
        self.layout = layout
        for i, size in enumerate(layout.region_sizes()):
            self.regions.append(Region.create(size, f"{self.name} region {i}"))
        for pool in self.pools:
            self.regions.append(Region(pool.region.fd, pool.size, owns_fd=False))
        rings_msgs: list[tuple[wire.AddRing, int]] = []
        for s2m, count in ((True, layout.num_s2m), (False, layout.num_m2s)):
            for i in range(count):
                efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                self.eventfds.append(efd)
                off = layout.ring_offset(s2m, i)
                ring = Ring(self.regions[0], off, layout.log2_ring_size, cfg.cacheline, efd)
                ring.init()
                self.rings.append((s2m, i, ring))
                rings_msgs.append((wire.AddRing(s2m, i, 0, off, layout.log2_ring_size), efd))
        return [(r.size, r.fd) for r in self.regions], rings_msgs

    def client_connected(self, remote_if_name: str) -> None:
        """CONNECTED arrived: build the queues over our memory and go up."""
        layout, cfg = self.layout, self.config
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
    def attach_server(self, req: proto.ConnectRequested, *, unsealed_ok: bool = False) -> None:
        """Map the offered regions and rings and go up; raise ProtocolError if unusable.

        ``unsealed_ok``: the peer is trusted with memory not sealed against shrinking.
        """
        cfg = self.config
        try:
            for offer in req.regions:
                self.regions.append(
                    Region.map_offer(offer.index, offer.fd, offer.size, unsealed_ok=unsealed_ok)
                )
            for ring_offer in req.rings:
                ring = Ring(
                    self.regions[ring_offer.region],
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
            self.release_memory(str(exc))
            raise
        for s2m, i, ring in self.rings:
            if s2m:
                self.rx_queues.append(RxQueue(ring, self.regions, i, is_master=True))
            else:
                self.tx_queues.append(TxQueue(ring, self.regions, i, is_master=True))
        self._up(req.if_name)

    # ------------------------------------------------------------------ both
    def _up(self, remote_if_name: str) -> None:
        assert self.conn is not None
        self.remote_app_name = self.conn.channel.remote_name
        self.remote_if_name = remote_if_name
        self.local_disc_reason = self.remote_disc_reason = ""
        for q in self.rx_queues:
            q.polling = self.polling.get(q.index, self.config.polling)
        self.connected = True
        self.connect_count += 1

    def down(self, reason: str, by_peer: bool) -> bool:
        """Forget the control connection and record why; True if the data path was up.

        The memory stays until :meth:`release_memory` (disconnect listeners run between).
        """
        was_up = self.connected
        if self.conn is not None:
            self.remote_app_name = self.conn.channel.remote_name
        if by_peer:
            self.remote_disc_reason = reason
        else:
            self.local_disc_reason = reason
        self.connected = False
        self.conn = None
        return was_up

    def release_memory(self, reason: str) -> None:
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
        for fd in self.eventfds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.eventfds.clear()
        self.layout = None

    def fault(self) -> str | None:
        """A data-path fault (impossible ring counters) that ends the connection."""
        for q in (*self.rx_queues, *self.tx_queues):
            if q.fault:
                return q.fault
        return None
