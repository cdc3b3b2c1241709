"""One memif interface as its users see it: a facade over the link its socket owns.

An :class:`Interface` belongs to a :class:`~memif.Socket`, which drives the control
channel and owns the interface's link (control connection, regions, rings, eventfds,
queues, retry deadline; see :mod:`memif._link`).  The interface reads that state and
asks its socket for every change: :meth:`Interface.set_admin`,
:meth:`~Interface.disconnect`, :meth:`~Interface.delete`.  Connect and disconnect are
announced to any number of listeners (:meth:`Interface.add_listener`);
:meth:`Interface.details` is the snapshot ``show memif`` prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import wire
from ._link import ConnectCallback, DisconnectCallback, Link, Listener
from .config import InterfaceConfig, Role, format_mac
from .errors import ConfigError, NotConnectedError
from .queue import RxQueue, TxQueue
from .shm import Region, Ring

if TYPE_CHECKING:
    from .sock import Socket

__all__ = [
    "BufferPool",
    "ConnectCallback",
    "DisconnectCallback",
    "Interface",
    "InterfaceDetails",
    "Listener",
    "RingDetails",
]


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


def _no_descriptors() -> np.ndarray:
    return np.zeros(0, wire.DESC_DTYPE)


@dataclass
class RingDetails:
    """One ring as ``memif_get_details``/``show memif`` report it.

    ``fd`` is the ring's interrupt eventfd.  ``descriptors`` is a copy of the first
    descriptors of the ring (``details(descriptors=n)``: at most ``n``), a structured
    array with the fields ``flags``, ``region``, ``length`` and ``offset``; empty unless
    asked for.
    """

    s2m: bool
    index: int
    region: int
    offset: int
    ring_size: int
    fd: int
    head: int
    tail: int
    flags: int
    descriptors: np.ndarray = field(default_factory=_no_descriptors)


@dataclass
class InterfaceDetails:
    """Everything ``memif_get_details`` tells, plus admin state, fds and counters.

    The fds are the process's own numbers, as ``show memif`` prints them: the
    socket's listener (servers), the control connection while there is one, each
    region's memory fd and each ring's eventfd (in :attr:`rings`).
    """

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
    listener_fd: int | None = None  # the socket's listening fd (a server's socket)
    admin_up: bool = True
    connect_count: int = 0
    listener_errors: int = 0
    fault: str = ""  # a data-path fault that is ending the connection


class Interface:
    """A memif interface; use its ``rx_queues``/``tx_queues`` once ``connected``.

    Created by :meth:`Socket.create_interface`; every attribute is read-only and
    reflects the link the socket drives.
    """

    def __init__(self, socket: Socket, link: Link) -> None:
        self._socket = socket
        self._link = link

    def __repr__(self) -> str:
        return f"<memif.Interface {self.name} {self.config.role.value} {self.state}>"

    # ------------------------------------------------------------------ properties
    @property
    def socket(self) -> Socket:
        """The socket that drives this interface."""
        return self._socket

    @property
    def config(self) -> InterfaceConfig:
        """The configuration it was created with."""
        return self._link.config

    @property
    def name(self) -> str:
        """Its name: ``config.name``, or ``memif<id>``."""
        return self._link.name

    @property
    def pools(self) -> Sequence[BufferPool]:
        """The buffer pools it shares with the peer (``pools=`` at creation)."""
        return tuple(self._link.pools)

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
        return self._link.connected

    @property
    def state(self) -> str:
        """``connected``, ``connecting`` (handshake under way) or ``disconnected``."""
        return self._link.state

    @property
    def admin_up(self) -> bool:
        """Admin state (:meth:`set_admin`): a down interface neither connects nor accepts."""
        return self._link.admin_up

    @property
    def deleted(self) -> bool:
        """True once removed from its socket (:meth:`delete`, or the socket closed): it will
        never connect again."""
        return self._link.deleted

    @property
    def enabled(self) -> bool:
        """The same as :attr:`admin_up` (its older name)."""
        return self._link.admin_up

    @property
    def next_retry(self) -> float | None:
        """When a client's socket tries to connect next, on the socket's clock (None: not
        scheduled: connected, connecting, admin down, a server, or no retries left)."""
        return self._link.next_retry

    @property
    def connect_count(self) -> int:
        """Connections made so far."""
        return self._link.connect_count

    @property
    def local_disc_reason(self) -> str:
        """Why we ended (or refused) the last connection; empty while it is up."""
        return self._link.local_disc_reason

    @property
    def remote_disc_reason(self) -> str:
        """Why the peer ended the last connection; empty while it is up."""
        return self._link.remote_disc_reason

    @property
    def remote_app_name(self) -> str:
        """The peer's application name (of the last connection that sent one)."""
        return self._link.remote_app_name

    @property
    def remote_if_name(self) -> str:
        """The peer's interface name (of the last connection)."""
        return self._link.remote_if_name

    @property
    def rx_queues(self) -> list[RxQueue]:
        """The receive queues of the current connection (empty when disconnected)."""
        return self._link.rx_queues

    @property
    def tx_queues(self) -> list[TxQueue]:
        """The transmit queues of the current connection (empty when disconnected)."""
        return self._link.tx_queues

    @property
    def regions(self) -> list[Region]:
        """The current connection's memory regions, by index (empty when disconnected)."""
        return self._link.regions

    @property
    def rings(self) -> list[tuple[bool, int, Ring]]:
        """The current connection's rings as (s2m, index, ring)."""
        return self._link.rings

    @property
    def listener_errors(self) -> int:
        """Exceptions raised by listeners so far (each is logged, then the next runs)."""
        return self._link.listener_errors

    def pool_region(self, pool: BufferPool) -> int:
        """Region index a shared pool got in the current connection."""
        return self._link.first_pool_region + self._link.pools.index(pool)

    # ------------------------------------------------------------------ control
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
        return self._link.add_listener(on_connect, on_disconnect)

    def set_admin(self, up: bool, *, reason: str = "interface admin down") -> None:
        """Admin up or down (VPP's ``set interface state``).

        Down: the connection ends with DISCONNECT(``reason``), a client stops retrying
        and a server refuses INIT ("interface is down").  Up: a client connects at the
        next :meth:`Socket.poll` (the socket is woken), a server accepts again.
        """
        self.socket.set_admin(self, up, reason=reason)

    def set_rx_mode(self, queue: int, polling: bool) -> None:
        """Polling (MASK_INT set: the peer does not signal) or interrupt mode.

        Kept across reconnects; may be set before the queue exists.
        """
        self._link.set_rx_mode(queue, polling)

    def disconnect(self, reason: str = "disconnected by user") -> None:
        """Send DISCONNECT(reason) and drop the connection (a client then retries)."""
        self.socket.disconnect(self, reason)

    def delete(self) -> None:
        """Disconnect (reason "interface deleted") and remove from the socket."""
        self.socket.delete_interface(self)

    def fault(self) -> str | None:
        """A data-path fault (impossible ring counters) that ends the connection."""
        return self._link.fault()

    # ------------------------------------------------------------------ data shortcuts
    def _need(self) -> None:
        if not self._link.connected:
            raise NotConnectedError(f"{self.name} is not connected")

    def send(self, packets: Sequence[bytes], queue: int = 0) -> int:
        """Copy packets out on ``queue`` (chained when large); returns how many went."""
        self._need()
        return self._link.tx_queues[queue].send(packets)

    def recv(self, max_packets: int = 256, queue: int = 0) -> list[bytes]:
        """Receive packets as ``bytes`` and refill at once."""
        self._need()
        return self._link.rx_queues[queue].recv(max_packets)

    # ------------------------------------------------------------------ details
    def details(self, *, descriptors: int = 0) -> InterfaceDetails:
        """A snapshot like libmemif's ``memif_get_details`` (``show memif``).

        ``descriptors``: copy at most that many descriptors of each ring, from slot 0,
        into :attr:`RingDetails.descriptors` (``show memif descriptors``); 0 copies none.
        """
        if descriptors < 0:
            raise ConfigError(f"descriptors {descriptors}: give a count of 0 or more")
        link, cfg = self._link, self.config
        conn = link.conn
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
                ring.desc[:descriptors].copy()
                if descriptors and ring.desc is not None
                else _no_descriptors(),
            )
            for s2m, i, ring in link.rings
        ]
        return InterfaceDetails(
            name=self.name,
            id=cfg.id,
            role=cfg.role.value,
            mode=cfg.mode.name.lower(),
            socket=self.socket.path,
            state=link.state,
            mac=format_mac(cfg.mac),
            app_name=self.socket.app_name,
            remote_app_name=conn.channel.remote_name if conn else link.remote_app_name,
            remote_if_name=link.remote_if_name if link.connected else "",
            secret_set=bool(cfg.secret),
            num_s2m_rings=sum(1 for s, _, _ in link.rings if s),
            num_m2s_rings=sum(1 for s, _, _ in link.rings if not s),
            ring_size=link.rings[0][2].size if link.rings else cfg.ring_size,
            buffer_size=cfg.buffer_size if cfg.role is Role.CLIENT else 0,
            regions=[(i, r.size, r.fd) for i, r in enumerate(link.regions)],
            rings=rings,
            local_disc_reason=link.local_disc_reason,
            remote_disc_reason=link.remote_disc_reason,
            control_fd=conn.sock.fileno() if conn else None,
            listener_fd=self.socket.listener_fd if cfg.role is Role.SERVER else None,
            admin_up=link.admin_up,
            connect_count=link.connect_count,
            listener_errors=link.listener_errors,
            fault=link.fault() or "",
        )
