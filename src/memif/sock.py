"""A memif socket: one control endpoint serving many interfaces.

A socket is either listening (its interfaces are servers) or connecting (clients),
as in VPP.  :meth:`Socket.poll` does all control-plane work: accepting, reading
messages, handshake timeouts, client reconnects and data-path faults.  The socket's
:meth:`fileno` is an epoll fd that becomes readable whenever ``poll`` has work, so
it plugs into any event loop.

The socket owns each interface's link (:class:`memif._link.Link`: control
connection, memory, queues, admin state, retry deadline) and is the only code that
changes it; an :class:`~memif.Interface` reads it and asks the socket for changes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import selectors
import socket as _socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from . import proto, transport, wire
from ._gate import Gate, SocketCounters, pending
from ._link import Connection, Link
from .access import AccessPolicy, PeerCredentials, peer_credentials
from .admission import FD_BUDGET, FdBudget, SecretThrottle, fd_soft_limit
from .config import InterfaceConfig, Role
from .errors import ConfigError, ProtocolError
from .interface import BufferPool, ConnectCallback, DisconnectCallback, Interface

__all__ = [
    "DEFAULT_APP_NAME",
    "DEFAULT_MAX_PENDING",
    "DEFAULT_MAX_PENDING_PER_UID",
    "DEFAULT_STALL_RECLAIM",
    "ConnectionDetails",
    "Socket",
    "SocketCounters",
]

DEFAULT_APP_NAME = "memif-python"
DEFAULT_MAX_PENDING = 64  # handshakes a listening socket holds at once
DEFAULT_MAX_PENDING_PER_UID = 8  # of which one peer uid may hold
DEFAULT_STALL_RECLAIM = 1.0  # seconds without progress before a handshake yields its id
HANDSHAKE_BURST = 0.002  # seconds one poll() may spend taking handshake messages
HANDSHAKE_ANSWER = 0.0002  # seconds to wait for a peer's next handshake message


@dataclass(frozen=True)
class ConnectionDetails:
    """One control connection of a socket (:meth:`Socket.connections`)."""

    fd: int  # the connection's socket
    phase: str  # "handshake", "connecting" (a server mapping memory) or "connected"
    interface: Interface | None  # the interface INIT named (a client's: its own)
    peer: PeerCredentials | None  # read at accept or connect
    fds_held: int  # fds the peer handed over, charged to the fd budget


class Socket:
    """A listening or connecting memif control socket.

    ``path`` is a filesystem path, ``@name`` or ``abstract:name``.  ``mode`` and
    ``group`` set the permissions of a listening socket file (an abstract name has
    none: only ``access`` protects it).

    ``access`` (default: root and our own euid) decides which peers a listening
    socket admits, read from ``SO_PEERCRED`` right after accept, and which
    listeners a connecting socket trusts; it also names the uids whose memory is
    used unsealed (see :func:`memif.shm.check_region_fd`).  Refusals are sent as
    DISCONNECT reasons, counted in :attr:`counters` and logged (rate-limited) on
    the ``memif`` logger with the peer's pid, uid and gid.

    A listening socket holds at most ``max_pending`` unfinished handshakes, at most
    ``max_pending_per_uid`` from one uid (more are refused "too many pending
    connections"); together they may hold at most ``max_pending_fds`` received fds
    (default: half the process's fd limit).  Every fd a peer hands over, pending or
    connected, is charged to ``fd_budget`` (default: the process-wide
    :data:`memif.admission.FD_BUDGET`) under the peer's uid; a connection that would
    overflow the budget, or its uid's share of it, is refused "too many file descriptors".
    A handshake that made no progress for ``stall_reclaim`` seconds, or is still
    unfinished after twice that, yields its interface id to a new INIT for that id.
    ``secret_throttle`` backs off uids that keep presenting wrong secrets.
    """

    def __init__(
        self,
        path: str,
        *,
        app_name: str = DEFAULT_APP_NAME,
        mode: int | None = 0o660,
        group: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_pending_fds: int | None = None,
        access: AccessPolicy | None = None,
        max_pending_per_uid: int = DEFAULT_MAX_PENDING_PER_UID,
        fd_budget: FdBudget | None = None,
        stall_reclaim: float = DEFAULT_STALL_RECLAIM,
        secret_throttle: SecretThrottle | None = None,
    ) -> None:
        self.path = path
        self.address = transport.parse_address(path)
        self._gate = Gate(
            transport.display(self.address),
            clock=clock,
            access=access if access is not None else AccessPolicy(),
            max_pending=max_pending,
            max_pending_per_uid=max_pending_per_uid,
            max_pending_fds=fd_soft_limit() // 2 if max_pending_fds is None else max_pending_fds,
            fd_budget=fd_budget if fd_budget is not None else FD_BUDGET,
            stall_reclaim=stall_reclaim,
            secret_throttle=secret_throttle if secret_throttle is not None else SecretThrottle(),
        )
        self.access = self._gate.access
        #: what this socket refused, by reason
        self.counters: SocketCounters = self._gate.counters
        if len(app_name.encode()) > wire.NAME_SIZE - 1:
            raise ConfigError(f"application name is longer than {wire.NAME_SIZE - 1} bytes")
        self.app_name = app_name
        self.role: Role | None = None
        self.interfaces: dict[int, Interface] = {}
        self._mode = mode
        self._group = group
        self._clock = clock
        self._selector = selectors.EpollSelector()
        # Written whenever timers change outside poll(), so a foreign loop wakes up.
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._selector.register(self._wake_fd, selectors.EVENT_READ, self._wake_fd)
        self._listener: _socket.socket | None = None
        self._conns: dict[int, Connection] = {}  # by fd
        self._links: dict[Interface, Link] = {}  # each interface's, while it exists
        self._closed = False
        self._progressed = False  # a handshake advanced in this poll()

    # ------------------------------------------------------------------ public
    def fileno(self) -> int:
        """An epoll fd, readable when :meth:`poll` has control work to do."""
        return self._selector.fileno()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def next_timeout(self) -> float | None:
        """Seconds until :meth:`poll` has timer work (None: only fd events)."""
        return None if self._closed else self._next_deadline(self._clock())

    def wake(self) -> None:
        """Make :meth:`fileno` readable so a foreign loop calls :meth:`poll` again."""
        if not self._closed:
            os.eventfd_write(self._wake_fd, 1)

    @property
    def listening(self) -> bool:
        """True when this socket is bound and accepting."""
        return self._listener is not None

    @property
    def listener_fd(self) -> int | None:
        """The listening socket's fd while :attr:`listening` (what ``show memif`` prints)."""
        return None if self._listener is None else self._listener.fileno()

    def create_interface(
        self,
        config: InterfaceConfig | None = None,
        *,
        on_connect: ConnectCallback | None = None,
        on_disconnect: DisconnectCallback | None = None,
        pools: Sequence[BufferPool] = (),
        **options: object,
    ) -> Interface:
        """Create an interface (``memif_create``); options are InterfaceConfig fields.

        The first interface decides whether the socket listens or connects.
        """
        if self._closed:
            raise ConfigError("socket is closed")
        cfg = (config or InterfaceConfig(**options)).check()  # type: ignore[arg-type]
        if self.role is not None and cfg.role is not self.role:
            raise ConfigError(
                f"socket {self.path} already has {self.role.value} interfaces: "
                "a socket either listens (servers) or connects (clients)"
            )
        if cfg.id in self.interfaces:
            raise ConfigError(f"interface id {cfg.id} already exists on {self.path}")
        if pools and cfg.role is not Role.CLIENT:
            raise ConfigError("only a client shares its own memory (pools)")
        if cfg.role is Role.SERVER and self._listener is None:
            self._listener = transport.listen(self.address, mode=self._mode, gid=self._group)
            self._selector.register(self._listener, selectors.EVENT_READ, None)
        self.role = cfg.role
        link = Link(cfg, pools)
        if on_connect is not None or on_disconnect is not None:
            link.add_listener(on_connect, on_disconnect)
        iface = Interface(self, link)
        self.interfaces[cfg.id] = iface
        self._links[iface] = link
        if cfg.role is Role.CLIENT:
            self.wake()  # its first connect attempt is due now
        return iface

    def set_admin(
        self, iface: Interface, up: bool, *, reason: str = "interface admin down"
    ) -> None:
        """Admin up or down (:meth:`Interface.set_admin`); enable, disable, retry and
        wake in one place."""
        link = self._link(iface)
        link.admin_up = up
        if not up:
            link.next_retry = None
            self.disconnect(iface, reason)
            return
        if iface.role is Role.CLIENT and link.conn is None:
            link.next_retry = self._clock()  # connect at the next poll
        self.wake()

    def disconnect(self, iface: Interface, reason: str = "disconnected by user") -> None:
        """End ``iface``'s connection with DISCONNECT(``reason``) (:meth:`Interface.disconnect`);
        a client then retries after its ``reconnect_interval``."""
        link = self._links.get(iface)
        if link is not None and link.conn is not None:
            self._events(link.conn, link.conn.channel.fail(reason))
        self.wake()  # the reconnect timer changed

    def delete_interface(self, iface: Interface) -> None:
        """Disconnect ``iface`` (reason "interface deleted") and remove it (``memif_delete``,
        :meth:`Interface.delete`); deleting twice does nothing."""
        link = self._links.get(iface)
        if link is None:
            return
        link.admin_up = False
        link.next_retry = None
        link.deleted = True
        self.disconnect(iface, "interface deleted")
        del self._links[iface]
        if self.interfaces.get(iface.id) is iface:
            del self.interfaces[iface.id]

    def connections(self) -> list[ConnectionDetails]:
        """Every open control connection: unfinished handshakes and connected peers."""
        return [
            ConnectionDetails(
                fd,
                c.channel.phase.value,
                c.interface,
                c.cred,
                c.charged,
            )
            for fd, c in self._conns.items()
        ]

    @property
    def pending_count(self) -> int:
        """Control connections whose handshake is not finished (``max_pending`` bounds them)."""
        return pending(self._conns.values())

    def _link(self, iface: Interface) -> Link:
        link = self._links.get(iface)
        if link is None:
            raise ConfigError(f"interface {iface.name} is not on socket {self.path} (deleted?)")
        return link

    def poll(self, timeout: float | None = 0.0) -> None:
        """Do pending control work, waiting up to ``timeout`` seconds for some.

        Handshakes are lock-step (one message, one answer); a host that polls now
        and then (a busy switch) would take one message per poll.  So while
        handshakes progress, their next messages are taken in the same call, for
        at most ``HANDSHAKE_BURST`` seconds.
        """
        now = self._clock()
        wait = self._next_deadline(now)
        if timeout is not None:
            wait = timeout if wait is None else min(wait, timeout)
        self._progressed = False
        self._dispatch(self._selector.select(wait))
        end = time.monotonic() + HANDSHAKE_BURST
        while self._progressed and time.monotonic() < end:
            self._progressed = False
            self._dispatch(self._selector.select(HANDSHAKE_ANSWER))
        self._timers(self._clock())

    def _dispatch(self, ready: list[tuple[selectors.SelectorKey, int]]) -> None:
        for key, _ in ready:
            if key.data is None:
                self._accept()
            elif key.data == self._wake_fd:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._wake_fd)
            else:
                self._readable(key.data)

    def run(self, duration: float | None = None, until: Callable[[], bool] | None = None) -> None:
        """Built-in loop: poll until ``duration`` passes or ``until()`` is true."""
        end = None if duration is None else self._clock() + duration
        while not (until and until()):
            left = None if end is None else end - self._clock()
            if left is not None and left <= 0:
                return
            self.poll(0.1 if left is None else min(0.1, left))

    def close(self) -> None:
        """Delete every interface, stop listening, release every fd and mapping."""
        if self._closed:
            return
        for iface in list(self.interfaces.values()):
            self.delete_interface(iface)
        for conn in list(self._conns.values()):
            self._drop(conn, "socket closed", False)
        if self._listener is not None:
            self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None
            if not transport.is_abstract(self.address):
                with contextlib.suppress(OSError):
                    os.unlink(self.address)
        self._selector.close()
        os.close(self._wake_fd)
        self._closed = True

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ connections
    def _accept(self) -> None:
        assert self._listener is not None
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, OSError):
            return
        sock.setblocking(False)
        try:
            cred: PeerCredentials | None = peer_credentials(sock)
        except OSError:
            cred = None
        refusal = self._gate.refuse_peer(cred, self._conns.values())
        if refusal is not None:
            with contextlib.suppress(OSError):
                transport.send_message(sock, wire.Disconnect(refusal))
            sock.close()
            return
        assert cred is not None
        # Before INIT nobody knows the peer: its handshake is always bounded in time.
        timeout = min(
            (t for i in self.interfaces.values() if (t := i.config.handshake_timeout)),
            default=proto.DEFAULT_HANDSHAKE_TIMEOUT,
        )
        now = self._clock()
        channel = proto.MasterChannel(
            self._lookup,
            name=self.app_name,
            now=now,
            handshake_timeout=timeout,
            check_fd=functools.partial(self._gate.check_offer_fd, cred),
        )
        conn = Connection(sock, channel, cred=cred, progress=now, started=now)
        self._conns[sock.fileno()] = conn
        self._selector.register(sock, selectors.EVENT_READ, conn)
        self._flush(conn)

    @property
    def display_name(self) -> str:
        """The socket's name as users write it (a path or ``@name``)."""
        return transport.display(self.address)

    def _lookup(self, if_id: int) -> proto.MasterPolicy:
        iface = self.interfaces.get(if_id)
        if iface is None:
            raise ProtocolError("unmatched interface id")
        link = self._links[iface]
        if link.conn is not None and self._gate.stalled(link.conn):
            # It squats the id: end it, so this INIT may take the id.
            self._events(
                link.conn, link.conn.channel.fail("handshake stalled: interface id reclaimed")
            )
        if link.conn is not None:
            raise ProtocolError("already connected")
        if not link.admin_up:
            raise ProtocolError("interface is down")
        return proto.MasterPolicy(iface.config.mode, iface.config.secret, iface)

    def _connect(self, iface: Interface, link: Link, now: float) -> None:
        cfg = iface.config
        try:
            sock = transport.connect(self.address)
        except OSError as exc:
            self._retry_later(link, now, f"connect failed: {exc.strerror or exc}")
            return
        try:
            cred: PeerCredentials | None = peer_credentials(sock)
        except OSError:
            cred = None
        if (reason := self._gate.refuse_listener(cred)) is not None:
            sock.close()
            self._retry_later(link, now, reason)
            return
        init = wire.Init(cfg.id, cfg.mode, cfg.secret, self.app_name)
        channel = proto.SlaveChannel(init, now=now, handshake_timeout=cfg.handshake_timeout)
        conn = Connection(sock, channel, link, iface, cred=cred, progress=now, started=now)
        link.conn = conn
        link.next_retry = None
        self._conns[sock.fileno()] = conn
        self._selector.register(sock, selectors.EVENT_READ, conn)

    def _retry_later(self, link: Link, now: float, reason: str) -> None:
        """A client's connect attempt failed: record why and when to try again."""
        link.local_disc_reason = reason
        interval = link.config.reconnect_interval
        link.next_retry = None if interval is None else now + interval

    def _readable(self, conn: Connection) -> None:
        try:
            got = transport.recv_message(conn.sock)
        except BlockingIOError:
            return
        except transport.Malformed as exc:
            if wire.is_disconnect(exc.data):  # the peer is leaving: honour it, fds or not
                self._events(conn, conn.channel.receive_bytes(exc.data, None, self._clock()))
            else:
                self._events(conn, conn.channel.fail(str(exc)))
            return
        except OSError:
            got = None
        if got is None:
            self._events(conn, conn.channel.peer_closed())
            return
        data, fd = got
        now = self._clock()
        conn.progress = now
        events = conn.channel.receive_bytes(data, fd, now)
        if conn.channel.phase is proto.Phase.HANDSHAKE:
            self._progressed = True
        if fd is not None and not conn.channel.owns_fd(fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        elif fd is not None and (refusal := self._gate.charge_fd(conn, self._conns.values())):
            events += conn.channel.fail(refusal)
        self._events(conn, events)

    def _events(self, conn: Connection, events: list[proto.Event]) -> None:
        for ev in events:
            match ev:
                case proto.InitAccepted(slot=slot):
                    iface = cast(Interface, slot)  # the slot a MasterPolicy names
                    conn.interface, conn.link = iface, self._links[iface]
                    conn.link.conn = conn
                case proto.HelloReceived(hello=hello):
                    self._client_hello(conn, hello)
                case proto.ConnectRequested():
                    self._server_connect(conn, ev)
                case proto.Connected(remote_if_name=name):
                    assert conn.link is not None and conn.interface is not None  # a client's
                    conn.link.client_connected(name)
                    self._notify(conn.interface, conn.link, None)
                case proto.Disconnected(reason=reason, by_peer=by_peer):
                    self._flush(conn)
                    self._drop(conn, reason, by_peer)
                    return
        self._flush(conn)

    def _client_hello(self, conn: Connection, hello: wire.Hello) -> None:
        link, channel = conn.link, conn.channel
        assert link is not None and isinstance(channel, proto.SlaveChannel)  # a client's
        try:
            regions, rings = link.setup_client(hello)
        except ProtocolError as exc:  # HELLO's limits leave no room for this interface
            self._events(conn, conn.channel.fail(str(exc)))
            return
        except (OSError, ValueError) as exc:
            self._events(conn, conn.channel.fail(f"cannot allocate memory: {exc}"))
            return
        channel.setup(regions, rings, link.name)

    def _server_connect(self, conn: Connection, req: proto.ConnectRequested) -> None:
        iface, link, channel = conn.interface, conn.link, conn.channel
        assert iface is not None and link is not None  # INIT named them
        assert isinstance(channel, proto.MasterChannel)  # a server's
        try:
            link.attach_server(req, unsealed_ok=self.access.trusts_unsealed(conn.cred))
        except ProtocolError as exc:
            self._events(conn, conn.channel.fail(str(exc)))
            return
        channel.accept(link.name)  # CONNECTED goes out at the next flush
        self._notify(iface, link, None)  # which may already have ended the connection

    def _notify(self, iface: Interface, link: Link, reason: str | None) -> None:
        """Run every listener's connect (``reason`` None) or disconnect callback.

        A listener that raises is counted and logged (rate-limited); the rest still run.
        """
        for listener in tuple(link.listeners):
            try:
                if reason is None:
                    if listener.on_connect is not None:
                        listener.on_connect(iface)
                elif listener.on_disconnect is not None:
                    listener.on_disconnect(iface, reason)
            except Exception:  # a listener's bug must not break the socket
                link.listener_errors += 1
                kind = "connect" if reason is None else "disconnect"
                self._gate.log.log(
                    ("listener", iface.id, kind),
                    "memif socket %s: interface %s: a %s listener raised",
                    self.display_name,
                    link.name,
                    kind,
                    level=logging.ERROR,
                    exc_info=True,
                )

    def _flush(self, conn: Connection) -> None:
        for msg, fd in conn.channel.messages_to_send():
            try:
                transport.send_message(conn.sock, msg, fd)
            except OSError:
                if not conn.channel.closed:
                    self._events(conn, conn.channel.peer_closed())
                return

    def _drop(self, conn: Connection, reason: str, by_peer: bool) -> None:
        """Close a connection and release what it held."""
        key = conn.sock.fileno()
        if self._conns.pop(key, None) is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)
        conn.sock.close()
        self._gate.release_fds(conn)
        iface, link = conn.interface, conn.link
        if link is None and isinstance(conn.channel, proto.MasterChannel):
            slot = conn.channel.refused_slot
            refused = self._links.get(slot) if isinstance(slot, Interface) else None
            if refused is not None and refused.conn is None:
                # INIT named this interface but was refused (secret, mode): say why.
                refused.local_disc_reason = reason
        if not by_peer and reason in proto.SECRET_REFUSALS:
            self._gate.secret_failed(conn.cred, reason)
        elif not by_peer and link is None:  # refused in the handshake (id, mode, version...)
            self._gate.log_refusal(f"peer refused: {reason}", conn.cred, kind="handshake")
        if iface is not None and link is not None and link.conn is conn:
            try:
                if link.down(reason, by_peer):
                    # Before teardown: a listener may still unregister queue fds.
                    self._notify(iface, link, reason)
            finally:
                link.release_memory(reason)
            interval = link.config.reconnect_interval
            if iface.role is Role.CLIENT and link.admin_up and interval:
                link.next_retry = self._clock() + interval
        # Mappings outlive their fds: the fds the peer sent are closed here, always.
        for fd in conn.channel.offered_fds():
            with contextlib.suppress(OSError):
                os.close(fd)

    # ------------------------------------------------------------------ timers
    def _next_deadline(self, now: float) -> float | None:
        times = [c.channel.deadline for c in self._conns.values() if c.channel.deadline]
        times += [
            link.next_retry
            for link in self._links.values()
            if link.next_retry is not None and link.admin_up and link.conn is None
        ]
        if any(link.connected for link in self._links.values()):
            times.append(now + 0.5)  # check data-path faults twice a second
        return max(0.0, min(times) - now) if times else None

    def _timers(self, now: float) -> None:
        for conn in list(self._conns.values()):
            self._events(conn, conn.channel.tick(now))
        for iface, link in list(self._links.items()):
            if link.connected and (reason := link.fault()):
                self.disconnect(iface, reason)
            if (
                iface.role is Role.CLIENT
                and link.admin_up
                and link.conn is None
                and link.next_retry is not None
                and now >= link.next_retry
            ):
                self._connect(iface, link, now)
