"""Sans-I/O memif control channel: one object per control connection.

A channel consumes decoded messages (with the fd that came along, if any) and the
current time, and produces events plus messages to send.  It knows nothing about
sockets, shared memory or clocks.  The pacing is lock-step, as in libmemif and VPP:
the slave queues INIT .. CONNECT at once and sends the next one only when the
previous was answered (ACK, or CONNECTED for CONNECT).

Any refusal raises :class:`ProtocolError` internally, which becomes a queued
DISCONNECT carrying the reason, a :class:`Disconnected` event and the ``CLOSED``
phase; the texts are VPP's (section 5 of the protocol notes).
"""

from __future__ import annotations

import enum
import hmac
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from . import wire
from .errors import ProtocolError
from .wire import Message

DEFAULT_HANDSHAKE_TIMEOUT = 5.0
SECRET_REQUIRED = "secret required"
INCORRECT_SECRET = "incorrect secret"
SECRET_REFUSALS = frozenset({SECRET_REQUIRED, INCORRECT_SECRET})
"""The refusals of an INIT whose secret is missing or wrong (counted, throttled)."""


class Phase(enum.Enum):
    """Where a control connection stands."""

    HANDSHAKE = "handshake"
    CONNECTING = "connecting"  # master: CONNECT received, waiting for the host to map memory
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclass
class RegionOffer:
    """A region announced by ADD_REGION: index, size and the received fd."""

    index: int
    size: int
    fd: int


@dataclass
class RingOffer:
    """A ring announced by ADD_RING, with its interrupt eventfd."""

    s2m: bool
    index: int
    region: int
    offset: int
    log2_size: int
    fd: int


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class HelloReceived:
    """Slave: the master's limits arrived; build memory and call ``SlaveChannel.setup``."""

    hello: wire.Hello


@dataclass(frozen=True)
class InitAccepted:
    """Master: INIT passed every check for interface ``id``."""

    init: wire.Init
    slot: object


@dataclass(frozen=True)
class ConnectRequested:
    """Master: CONNECT arrived; map the offers and call ``accept`` or ``fail``."""

    if_name: str
    regions: tuple[RegionOffer, ...]
    rings: tuple[RingOffer, ...]


@dataclass(frozen=True)
class Connected:
    """Both: the connection is up; ``remote_if_name`` is the peer's interface name."""

    remote_if_name: str


@dataclass(frozen=True)
class Disconnected:
    """Both: the connection ended; ``by_peer`` tells whose reason it is."""

    reason: str
    by_peer: bool


Event = HelloReceived | InitAccepted | ConnectRequested | Connected | Disconnected


# --------------------------------------------------------------------------- base


class Channel:
    """State shared by both roles: phase, outbox, reasons, deadline."""

    def __init__(self, now: float, handshake_timeout: float | None) -> None:
        self.phase = Phase.HANDSHAKE
        self.local_reason = ""
        self.remote_reason = ""
        self.remote_name = ""  # peer's application name
        self.remote_if_name = ""
        self._outbox: deque[tuple[Message, int | None]] = deque()
        self._deadline = None if handshake_timeout is None else now + handshake_timeout

    # -- output
    def messages_to_send(self) -> list[tuple[Message, int | None]]:
        """Take every message (with its fd or None) that must go out now."""
        out = list(self._outbox)
        self._outbox.clear()
        return out

    @property
    def closed(self) -> bool:
        """True once the connection is over (after the outbox is flushed, close it)."""
        return self.phase is Phase.CLOSED

    @property
    def deadline(self) -> float | None:
        """When the handshake times out, or None once connected or closed."""
        return self._deadline if self.phase in (Phase.HANDSHAKE, Phase.CONNECTING) else None

    # -- input
    def receive(self, msg: Message, fd: int | None, now: float) -> list[Event]:
        """Feed one decoded message; returns the events it caused.

        The fd, when given, is owned by the channel only if it was stored in a region
        or ring offer; the caller closes it otherwise (see ``owns_fd``).
        """
        if self.phase is Phase.CLOSED:
            return []
        if isinstance(msg, wire.Disconnect):
            self.remote_reason = msg.reason
            self.phase = Phase.CLOSED
            return [Disconnected(msg.reason, by_peer=True)]
        try:
            if fd is not None and msg.TYPE not in _FD_MESSAGES:
                raise ProtocolError(f"unexpected file descriptor with {msg.TYPE.name}")
            return self._handle(msg, fd, now)
        except ProtocolError as exc:
            return self.fail(str(exc))

    def receive_bytes(self, data: bytes, fd: int | None, now: float) -> list[Event]:
        """Decode and feed raw bytes; malformed input ends the connection."""
        try:
            msg = wire.decode(data)
        except ProtocolError as exc:
            return self.fail(str(exc))
        return self.receive(msg, fd, now)

    def peer_closed(self) -> list[Event]:
        """The control socket hit EOF or an error."""
        if self.phase is Phase.CLOSED:
            return []
        self.phase = Phase.CLOSED
        if not self.remote_reason and not self.local_reason:
            self.remote_reason = "connection closed by peer"
        return [Disconnected(self.remote_reason or self.local_reason, by_peer=True)]

    def tick(self, now: float) -> list[Event]:
        """Advance time: a handshake past its deadline fails."""
        deadline = self.deadline
        if deadline is not None and now >= deadline:
            return self.fail("handshake timeout")
        return []

    def fail(self, reason: str) -> list[Event]:
        """End the connection locally: queue DISCONNECT(reason) and report it."""
        if self.phase is Phase.CLOSED:
            return []
        self.local_reason = reason
        self._outbox.clear()
        self._outbox.append((wire.Disconnect(reason), None))
        self.phase = Phase.CLOSED
        return [Disconnected(reason, by_peer=False)]

    def owns_fd(self, fd: int) -> bool:
        """Whether ``fd`` was kept in an offer (and so must not be closed yet)."""
        return fd in self.offered_fds()

    def offered_fds(self) -> list[int]:
        """Every fd the peer handed over (the host closes them when it drops the channel)."""
        return []

    def _handle(self, msg: Message, fd: int | None, now: float) -> list[Event]:
        raise NotImplementedError


# The only messages that carry an fd (SCM_RIGHTS); one anywhere else is refused.
_FD_MESSAGES = frozenset({wire.MsgType.ADD_REGION, wire.MsgType.ADD_RING})


def _unexpected(msg: Message) -> ProtocolError:
    return ProtocolError(f"unexpected message received ({msg.TYPE.name})")


# --------------------------------------------------------------------------- master


@dataclass
class MasterPolicy:
    """What a master checks INIT against, for the interface it matched."""

    mode: wire.Mode
    secret: str = ""
    slot: object = None  # opaque handle returned to the host in InitAccepted


Lookup = Callable[[int], MasterPolicy]
# Host hook: inspect the fd of an ADD_REGION/ADD_RING that passed the protocol checks,
# before it is kept; raise ProtocolError to refuse it (wrong kind of fd, too small, ...).
FdCheck = Callable[[wire.AddRegion | wire.AddRing, int], None]


class MasterChannel(Channel):
    """The master (server) side of one accepted control connection.

    ``lookup(id)`` returns the policy of the listening interface with that id, or
    raises :class:`ProtocolError` ("unmatched interface id", "already connected").
    ``check_fd(msg, fd)``, when given, vets each region or ring fd before it is kept
    (the host knows what an fd is; this class does not).  HELLO is queued at
    construction: it is what a master sends right after accept.
    """

    def __init__(
        self,
        lookup: Lookup,
        *,
        name: str = "",
        now: float = 0.0,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        check_fd: FdCheck | None = None,
    ) -> None:
        super().__init__(now, handshake_timeout)
        self._lookup = lookup
        self._check_fd = check_fd
        self.init: wire.Init | None = None
        # The slot of the interface INIT named when INIT was then refused (mode or
        # secret), so the host can record the reason on that interface.
        self.refused_slot: object = None
        self.regions: list[RegionOffer] = []
        self.rings: list[RingOffer] = []
        self._ring_count = {True: 0, False: 0}  # offers so far per direction (s2m)
        self._outbox.append((wire.Hello(name=name), None))

    def offered_fds(self) -> list[int]:
        """Every fd stored in a region or ring offer."""
        return [r.fd for r in self.regions] + [r.fd for r in self.rings]

    def owns_fd(self, fd: int) -> bool:
        """Whether ``fd`` was kept in an offer (the newest offer first: O(1) in the handshake)."""
        for offers in (self.rings, self.regions):
            if offers and offers[-1].fd == fd:
                return True
        return fd in self.offered_fds()

    def accept(self, if_name: str) -> None:
        """The host mapped the memory: answer CONNECTED and go up."""
        if self.phase is not Phase.CONNECTING:
            raise RuntimeError(f"accept() in phase {self.phase.value}")
        self.phase = Phase.CONNECTED
        self._outbox.append((wire.Connected(if_name), None))

    def _handle(self, msg: Message, fd: int | None, now: float) -> list[Event]:
        if self.phase is not Phase.HANDSHAKE:
            raise _unexpected(msg)
        if self.init is None:
            if not isinstance(msg, wire.Init):
                raise _unexpected(msg)
            return self._on_init(msg)
        match msg:
            case wire.AddRegion():
                self._on_add_region(msg, fd)
            case wire.AddRing():
                self._on_add_ring(msg, fd)
            case wire.Connect():
                return self._on_connect(msg)
            case _:
                raise _unexpected(msg)
        self._outbox.append((wire.Ack(), None))
        return []

    def _on_init(self, msg: wire.Init) -> list[Event]:
        if msg.version != wire.VERSION:
            raise ProtocolError("incompatible protocol version")
        policy = self._lookup(msg.id)
        try:
            if msg.mode != policy.mode:
                raise ProtocolError("mode mismatch")
            if policy.secret:
                if not msg.secret:
                    raise ProtocolError(SECRET_REQUIRED)
                if not hmac.compare_digest(msg.secret.encode(), policy.secret.encode()):
                    raise ProtocolError(INCORRECT_SECRET)
        except ProtocolError:
            self.refused_slot = policy.slot
            raise
        self.init = msg
        self.remote_name = msg.name
        self._outbox.append((wire.Ack(), None))
        return [InitAccepted(msg, policy.slot)]

    def _on_add_region(self, msg: wire.AddRegion, fd: int | None) -> None:
        if fd is None:
            raise ProtocolError("missing memory region fd")
        if msg.index > wire.MAX_REGION_INDEX:
            raise ProtocolError("too many regions")
        if msg.index != len(self.regions):
            raise ProtocolError("unexpected region index")
        if msg.size == 0:
            raise ProtocolError(f"region {msg.index} has size 0")
        if self._check_fd is not None:
            self._check_fd(msg, fd)
        self.regions.append(RegionOffer(msg.index, msg.size, fd))

    def _on_add_ring(self, msg: wire.AddRing, fd: int | None) -> None:
        if fd is None:
            raise ProtocolError("missing ring interrupt fd")
        if msg.private_hdr_size != 0:
            raise ProtocolError("private headers not supported")
        if msg.index > wire.MAX_RING_INDEX:
            raise ProtocolError("too many rings")
        if msg.index != self._ring_count[msg.s2m]:
            raise ProtocolError("unexpected ring index")
        if msg.region >= len(self.regions):
            raise ProtocolError(f"ring refers to unknown region {msg.region}")
        if not 1 <= msg.log2_size <= wire.MAX_LOG2_RING_SIZE:
            raise ProtocolError(f"invalid ring size 2^{msg.log2_size}")
        if self._check_fd is not None:
            self._check_fd(msg, fd)
        self.rings.append(RingOffer(msg.s2m, msg.index, msg.region, msg.offset, msg.log2_size, fd))
        self._ring_count[msg.s2m] += 1

    def _on_connect(self, msg: wire.Connect) -> list[Event]:
        if not any(r.s2m for r in self.rings) or all(r.s2m for r in self.rings):
            raise ProtocolError("connect without rings in both directions")
        self.phase = Phase.CONNECTING
        self.remote_if_name = msg.if_name
        return [ConnectRequested(msg.if_name, tuple(self.regions), tuple(self.rings))]


# --------------------------------------------------------------------------- slave


class SlaveChannel(Channel):
    """The slave (client) side: waits for HELLO, then sends its setup in lock-step."""

    def __init__(
        self,
        init: wire.Init,
        *,
        now: float = 0.0,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    ) -> None:
        super().__init__(now, handshake_timeout)
        self._init = init
        self.hello: wire.Hello | None = None
        self._pending: deque[tuple[Message, int | None]] = deque()
        self._awaiting: Message | None = None

    def setup(
        self,
        regions: list[tuple[int, int]],
        rings: list[tuple[wire.AddRing, int]],
        if_name: str,
    ) -> None:
        """Queue INIT, ADD_REGION (size, fd), ADD_RING (msg, eventfd), CONNECT; send INIT."""
        if self.hello is None or self._awaiting is not None or self._pending:
            raise RuntimeError("setup() belongs right after HELLO")
        self._pending.append((self._init, None))
        for index, (size, fd) in enumerate(regions):
            self._pending.append((wire.AddRegion(index, size), fd))
        ordered = sorted(rings, key=lambda r: (not r[0].s2m, r[0].index))
        self._pending.extend(ordered)
        self._pending.append((wire.Connect(if_name), None))
        self._send_next()

    def _send_next(self) -> None:
        msg, fd = self._pending.popleft()
        self._awaiting = msg
        self._outbox.append((msg, fd))

    def _handle(self, msg: Message, fd: int | None, now: float) -> list[Event]:
        if self.phase is not Phase.HANDSHAKE:
            raise _unexpected(msg)
        if self.hello is None:
            if not isinstance(msg, wire.Hello):
                raise _unexpected(msg)
            if msg.min_version > wire.VERSION or msg.max_version < wire.VERSION:
                raise ProtocolError("incompatible protocol version")
            if msg.max_log2_ring_size < 1:
                raise ProtocolError(f"invalid ring size limit 2^{msg.max_log2_ring_size}")
            self.hello = msg
            self.remote_name = msg.name
            return [HelloReceived(msg)]
        match msg:
            case wire.Ack() if self._awaiting is not None and self._pending:
                self._send_next()
                return []
            case wire.Connected() if isinstance(self._awaiting, wire.Connect):
                self._awaiting = None
                self.phase = Phase.CONNECTED
                self.remote_if_name = msg.if_name
                return [Connected(msg.if_name)]
        raise _unexpected(msg)
