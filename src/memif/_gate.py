"""Who and what a socket lets in: the admission of its peers.

A :class:`Gate` holds a socket's access policy, its bounds on unfinished handshakes,
the fd budget and the secret throttle.  It decides and the socket acts (sends
DISCONNECT, closes): every refusal is counted in :class:`SocketCounters` and logged
on the ``memif`` logger, at most once a period per kind of refusal and peer uid.
"""

from __future__ import annotations

import dataclasses
import logging
import socket as _socket
from collections.abc import Callable, Collection
from dataclasses import dataclass

from . import proto, shm, transport, wire
from ._link import Connection
from .access import AccessPolicy, PeerCredentials
from .admission import FdBudget, SecretThrottle
from .errors import ConfigError, ProtocolError, UnsealedRegionError
from .ratelog import PerKeyLog

log = logging.getLogger("memif")

_PEEK = _socket.MSG_PEEK | _socket.MSG_DONTWAIT


@dataclass
class SocketCounters:
    """What a socket refused, by reason (``show memif`` prints them)."""

    access_denied: int = 0  # peer (or, for a client, listener) not admitted by the policy
    unsealed_refused: int = 0  # region not sealed against shrinking, peer not trusted
    pending_refused: int = 0  # too many unfinished handshakes, in total or from one uid
    fd_refused: int = 0  # the process's fd budget for peers would overflow
    secret_failures: int = 0  # INIT with a missing or wrong secret
    secret_throttled: int = 0  # connections refused while their uid backs off
    id_reclaimed: int = 0  # stalled handshakes that yielded their interface id

    def as_dict(self) -> dict[str, int]:
        """Every counter by name."""
        return dataclasses.asdict(self)


def pending(conns: Collection[Connection], uid: int | None = None) -> int:
    """Connections whose handshake is not finished (from peer ``uid`` only, if given)."""
    return sum(
        1
        for c in conns
        if c.channel.phase is not proto.Phase.CONNECTED
        and (uid is None or (c.cred is not None and c.cred.uid == uid))
    )


class Gate:
    """A socket's admission policy, its counters and its refusal log (see the module)."""

    def __init__(
        self,
        name: str,
        *,
        clock: Callable[[], float],
        access: AccessPolicy,
        max_pending: int,
        max_pending_per_uid: int,
        max_pending_fds: int,
        fd_budget: FdBudget,
        stall_reclaim: float,
        secret_throttle: SecretThrottle,
    ) -> None:
        if max_pending < 1:
            raise ConfigError(f"max_pending {max_pending} must be at least 1")
        if max_pending_per_uid < 1:
            raise ConfigError(f"max_pending_per_uid {max_pending_per_uid} must be at least 1")
        self.name = name
        self.access = access
        self.max_pending = max_pending
        self.max_pending_per_uid = max_pending_per_uid
        self.max_pending_fds = max_pending_fds
        self.fd_budget = fd_budget
        self.stall_reclaim = stall_reclaim
        self.secret_throttle = secret_throttle
        self.counters = SocketCounters()
        self.log = PerKeyLog(log, clock=clock)  # one line per kind of refusal and uid
        self._clock = clock

    def log_refusal(
        self, reason: str, cred: PeerCredentials | None, kind: str | None = None
    ) -> None:
        """Log a refusal, at most once a period per ``kind`` (default: the reason) and uid.

        A reason that carries numbers (counts, a peer-chosen index) names its ``kind``,
        or each new number would be a new key and a peer could vary it to flood the log.
        """
        peer = cred if cred is not None else "unknown peer"
        key = (kind or reason, cred.uid if cred is not None else None)
        self.log.log(key, "memif socket %s: %s (%s)", self.name, reason, peer)

    def refuse_peer(
        self, cred: PeerCredentials | None, conns: Collection[Connection]
    ) -> str | None:
        """Why a newly accepted peer is refused (counted and logged), or None."""
        if cred is None or not self.access.admits(cred):
            self.counters.access_denied += 1
            reason = self.access.refusal(cred)
        elif pending(conns) >= self.max_pending:
            self.counters.pending_refused += 1
            reason = "too many pending connections"
        elif pending(conns, cred.uid) >= self.max_pending_per_uid:
            self.counters.pending_refused += 1
            reason = f"too many pending connections from uid {cred.uid}"
        elif self.secret_throttle.blocked(cred.uid, self._clock()):
            self.counters.secret_throttled += 1
            reason = "too many failed secrets"
        else:
            return None
        self.log_refusal(reason, cred)
        return reason

    def refuse_listener(self, cred: PeerCredentials | None) -> str | None:
        """Why a client does not trust the listener it reached (counted and logged), or None.

        Whoever holds the socket's name gets our memory: a squatter must not.
        """
        if cred is not None and self.access.admits(cred):
            return None
        self.counters.access_denied += 1
        reason = "listener " + self.access.refusal(cred)
        self.log_refusal(reason, cred)
        return reason

    def check_offer_fd(
        self, cred: PeerCredentials, msg: wire.AddRegion | wire.AddRing, fd: int
    ) -> None:
        """Refuse a region that is not usable (or unsealed, untrusted) memory, a ring fd
        that is no eventfd."""
        if isinstance(msg, wire.AddRegion):
            try:
                shm.check_region_fd(
                    msg.index,
                    fd,
                    msg.size,
                    unsealed_ok=self.access.trusts_unsealed(cred),
                    untrusted=f"uid {cred.uid} not trusted with unsealed memory",
                )
            except UnsealedRegionError as exc:
                self.counters.unsealed_refused += 1
                self.log_refusal(str(exc), cred, kind="unsealed region")
                raise
        elif (problem := transport.check_eventfd(fd)) is not None:
            raise ProtocolError(f"ring {msg.index}: bad interrupt fd ({problem})")

    def charge_fd(self, conn: Connection, conns: Collection[Connection]) -> str | None:
        """Charge one fd the peer handed over and ``conn`` keeps; the refusal that ends the
        connection when the budget or the bound on pending fds would overflow, or None."""
        if not self.fd_budget.charge(1, conn.owner):
            self.counters.fd_refused += 1
            self.log_refusal(
                f"too many file descriptors (this uid holds {self.fd_budget.held(conn.owner)}"
                f", all peers {self.fd_budget.used} of {self.fd_budget.limit})",
                conn.cred,
                kind="fd budget",
            )
            return "too many file descriptors"
        conn.charged += 1
        held = sum(c.charged for c in conns if c.channel.phase is not proto.Phase.CONNECTED)
        if held > self.max_pending_fds:
            return "too many file descriptors pending"
        return None

    def release_fds(self, conn: Connection) -> None:
        """Give back every fd ``conn`` was charged for (it closed)."""
        self.fd_budget.release(conn.charged, conn.owner)
        conn.charged = 0

    def stalled(self, holder: Connection) -> bool:
        """True (counted and logged) if ``holder``'s handshake squats its interface id.

        A legitimate handshake sends its next message within milliseconds of our ACK and
        finishes well within a second.  One silent for ``stall_reclaim`` seconds (with
        nothing unread), or dripping messages for twice that, squats.
        """
        if holder.channel.phase is not proto.Phase.HANDSHAKE:
            return False
        now = self._clock()
        if now - holder.started < 2 * self.stall_reclaim:
            if now - holder.progress < self.stall_reclaim:
                return False
            try:
                holder.sock.recv(1, _PEEK)
                return False  # it did send something; we have not read it yet
            except OSError:
                pass  # nothing to read (BlockingIOError), or gone: reclaim it
        self.counters.id_reclaimed += 1
        self.log_refusal("stalled handshake yields its interface id", holder.cred)
        return True

    def secret_failed(self, cred: PeerCredentials | None, reason: str) -> None:
        """Count and log a wrong secret; enough of them back the peer's uid off."""
        self.counters.secret_failures += 1
        self.log_refusal(reason, cred)
        if cred is not None and self.secret_throttle.failed(cred.uid, self._clock()):
            log.warning(
                "memif socket %s: uid %d backs off %.0f s after %d failed secrets (%s)",
                self.name,
                cred.uid,
                self.secret_throttle.backoff,
                self.secret_throttle.limit,
                cred,
            )
