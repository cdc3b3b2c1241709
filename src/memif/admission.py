"""Fair admission: the process's fd budget and secret-failure back-off.

A peer's fds (region memfds, ring eventfds) stay open for as long as its
connection lives.  Every :class:`~memif.Socket` charges them to one process-wide
:data:`FD_BUDGET`, derived from ``RLIMIT_NOFILE`` with a reserve left for the
application itself, so no set of peers can run the process out of descriptors.
A daemon calls :func:`raise_fd_limit` at start to lift the soft limit to the hard one.

:class:`SecretThrottle` stops one uid from guessing secrets at wire speed.
"""

from __future__ import annotations

import resource
from collections import deque

_NR_OPEN = "/proc/sys/fs/nr_open"


def fd_soft_limit() -> int:
    """The process's current soft ``RLIMIT_NOFILE`` (a large number when unlimited)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1 << 20 if soft == resource.RLIM_INFINITY or soft <= 0 else soft


def raise_fd_limit() -> int:
    """Lift the soft ``RLIMIT_NOFILE`` to the hard limit (capped by ``fs.nr_open``).

    Call it at start, before sockets exist.  Returns the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:
            with open(_NR_OPEN) as f:
                target = int(f.read())
        except (OSError, ValueError):
            target = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):
            pass  # not allowed here (a sandbox): keep what we have
    return fd_soft_limit()


def fd_reserve(soft: int) -> int:
    """Descriptors kept back from peers for the application's own use."""
    return max(64, soft // 4)


class FdBudget:
    """How many peer-supplied fds the process may hold at once, and one owner of them.

    ``limit`` fixes the budget; by default it follows the soft ``RLIMIT_NOFILE``
    minus :func:`fd_reserve`, read when asked (so raising the limit widens it).
    One owner (a peer uid) may hold at most ``share`` of it, so a single peer
    cannot take every fd from the others.
    """

    def __init__(self, limit: int | None = None, share: float = 0.5) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"fd budget share {share}: expected more than 0, at most 1")
        self._limit = limit
        self.share = share
        self.used = 0
        self._owners: dict[object, int] = {}

    @property
    def limit(self) -> int:
        """The most fds peers may hold together."""
        if self._limit is not None:
            return self._limit
        soft = fd_soft_limit()
        return max(0, soft - fd_reserve(soft))

    def held(self, owner: object) -> int:
        """Fds ``owner`` holds."""
        return self._owners.get(owner, 0)

    def charge(self, n: int = 1, owner: object = None) -> bool:
        """Take ``n`` fds for ``owner``; False (nothing taken) when the budget or the
        owner's share of it would overflow."""
        limit = self.limit
        held = self._owners.get(owner, 0)
        if self.used + n > limit or held + n > limit * self.share:
            return False
        self.used += n
        self._owners[owner] = held + n
        return True

    def release(self, n: int, owner: object = None) -> None:
        """Give back ``n`` fds taken with :meth:`charge` for ``owner``."""
        self.used = max(0, self.used - n)
        left = self._owners.pop(owner, 0) - n
        if left > 0:
            self._owners[owner] = left


FD_BUDGET = FdBudget()
"""The budget every :class:`~memif.Socket` charges by default."""


class SecretThrottle:
    """Back-off for uids that keep presenting wrong secrets.

    After ``limit`` failures from one uid within ``window`` seconds, that uid is
    refused for ``backoff`` seconds.  State is kept only for uids with recent failures.
    """

    def __init__(self, limit: int = 8, window: float = 10.0, backoff: float = 10.0) -> None:
        self.limit = limit
        self.window = window
        self.backoff = backoff
        self._failures: dict[int, deque[float]] = {}
        self._blocked: dict[int, float] = {}

    def blocked(self, uid: int, now: float) -> bool:
        """True while ``uid`` is backing off."""
        until = self._blocked.get(uid)
        if until is None:
            return False
        if now < until:
            return True
        del self._blocked[uid]
        return False

    def failed(self, uid: int, now: float) -> bool:
        """Record a failure; True when it starts a back-off for ``uid``."""
        times = self._failures.setdefault(uid, deque(maxlen=self.limit))
        times.append(now)
        for stale in [u for u, t in self._failures.items() if now - t[-1] > self.window]:
            del self._failures[stale]  # forget uids that stopped failing
        if len(times) >= self.limit and now - times[0] <= self.window:
            self._blocked[uid] = now + self.backoff
            self._failures.pop(uid, None)
            return True
        return False
