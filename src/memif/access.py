"""Who may use a socket: peer credentials and the allow-lists checked against them.

Every local socket a peer reaches (memif control sockets, filesystem or abstract,
and memifd's CLI socket) learns the peer's process credentials from the kernel
(``SO_PEERCRED``; the supplementary groups from ``SO_PEERGROUPS``) and checks them
against an :class:`AccessPolicy` before anything the peer sends is read.  File
permissions cannot protect an abstract socket; this check can.

The policy also says whose shared memory may be used without a seal against
shrinking (``unsealed_uids``): such a peer can truncate the memory under our
mapping and our next access dies with SIGBUS, so only a peer that could stop us
anyway (root, or our own uid) is trusted with it by default.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .errors import ConfigError

__all__ = [
    "AccessPolicy",
    "PeerCredentials",
    "parse_gids",
    "parse_uids",
    "peer_credentials",
]

_SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux 4.13
_CRED = struct.Struct("3i")
_MAX_GROUPS = 256


@dataclass(frozen=True)
class PeerCredentials:
    """The process at the other end of a UNIX socket, as the kernel saw it at connect."""

    pid: int
    uid: int
    gid: int
    groups: frozenset[int] = frozenset()

    def __str__(self) -> str:
        return f"pid {self.pid} uid {self.uid} gid {self.gid}"


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    """Read ``SO_PEERCRED`` (and ``SO_PEERGROUPS`` where the kernel has it) of ``sock``."""
    pid, uid, gid = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
    groups: frozenset[int] = frozenset()
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, 4 * _MAX_GROUPS)
        groups = frozenset(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))
    except OSError:
        pass  # old kernel, or more groups than we asked room for: the primary gid counts
    return PeerCredentials(pid, uid, gid, groups)


def _ids(values: Iterable[int]) -> frozenset[int]:
    out = frozenset(int(v) for v in values)
    if any(not 0 <= v < 1 << 32 for v in out):
        raise ConfigError("uids and gids must be 0..4294967295")
    return out


def _parse_ids(text: str, what: str, by_name: Callable[[str], int]) -> frozenset[int]:
    out = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise ConfigError(
                f"empty {what} in {text!r}: expected {what}s or names, comma-separated"
            )
        if item.isdigit():
            out.add(int(item))
            continue
        try:
            out.add(by_name(item))
        except KeyError:
            raise ConfigError(
                f"unknown {what} name {item!r}: expected a number or a known name"
            ) from None
    return _ids(out)


def parse_uids(text: str) -> frozenset[int]:
    """``"0,1000,nobody"`` -> uids; names are looked up in the user database."""
    return _parse_ids(text, "uid", lambda name: pwd.getpwnam(name).pw_uid)


def parse_gids(text: str) -> frozenset[int]:
    """``"100,kvm"`` -> gids; names are looked up in the group database."""
    return _parse_ids(text, "gid", lambda name: grp.getgrnam(name).gr_gid)


def _own_uids() -> frozenset[int]:
    return frozenset({0, os.geteuid()})


@dataclass(frozen=True)
class AccessPolicy:
    """Which peers a socket admits, and whose unsealed memory it maps.

    A peer is admitted when its uid is in ``uids`` or its primary or a
    supplementary gid is in ``gids``.  ``unsealed_uids`` lists the uids whose
    shared memory is used even when it cannot be sealed against shrinking
    (hugetlbfs memfds from VPP or DPDK zero-copy); everyone else's region must be
    sealed (we add the seal when the peer allowed sealing).  The default admits
    and trusts root and our own effective uid only.
    """

    uids: frozenset[int] = field(default_factory=_own_uids)
    gids: frozenset[int] = frozenset()
    unsealed_uids: frozenset[int] = field(default_factory=_own_uids)

    @classmethod
    def of(
        cls,
        uids: Iterable[int] = (),
        gids: Iterable[int] = (),
        unsealed_uids: Iterable[int] = (),
    ) -> AccessPolicy:
        """The default policy widened by these uids, gids and trusted uids."""
        own = _own_uids()
        return cls(own | _ids(uids), _ids(gids), own | _ids(unsealed_uids))

    def admits(self, cred: PeerCredentials) -> bool:
        """True when the peer may use the socket."""
        if cred.uid in self.uids:
            return True
        return bool(self.gids) and (cred.gid in self.gids or not self.gids.isdisjoint(cred.groups))

    def trusts_unsealed(self, cred: PeerCredentials | None) -> bool:
        """True when memory from this peer may be used without a seal against shrinking."""
        return cred is not None and cred.uid in self.unsealed_uids

    def refusal(self, cred: PeerCredentials | None, where: str = "this socket") -> str:
        """The DISCONNECT reason (and log text) for a peer that is not admitted on
        ``where`` (``None``: its credentials could not be read)."""
        if cred is None:
            return "access denied: peer credentials unavailable"
        return f"access denied: uid {cred.uid} gid {cred.gid} not allowed on {where}"

    def describe(self, memory: bool = True) -> str:
        """One line for ``show memif`` and logs; ``memory=False`` leaves out whose
        unsealed memory is trusted (for sockets that map none, like the CLI's)."""
        parts = ["uid " + ",".join(str(u) for u in sorted(self.uids))]
        if self.gids:
            parts.append("gid " + ",".join(str(g) for g in sorted(self.gids)))
        if memory:
            parts.append("unsealed-uid " + ",".join(str(u) for u in sorted(self.unsealed_uids)))
        return " ".join(parts)
