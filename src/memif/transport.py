"""The control channel's I/O: AF_UNIX SOCK_SEQPACKET sockets carrying 128-byte
messages with at most one fd each (SCM_RIGHTS), and socket naming.

Socket names: a path is a filesystem socket; ``@name`` or ``abstract:name`` is the
abstract key ``"\\0name"`` with its exact length (libmemif ``@name``, VPP
``abstract:name``, DPDK ``socket-abstract=yes``); ``unix:/path`` is a path.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import os
import socket
import stat

from . import wire
from .access import peer_credentials
from .errors import ConfigError, SocketInUseError, SocketPathError

_FD_SIZE = array.array("i").itemsize
# Room for a few fds: a hostile peer sending more must not make us leak them.
_ANC_SIZE = socket.CMSG_SPACE(8 * _FD_SIZE)


def parse_address(name: str) -> str | bytes:
    """Turn a user-facing socket name into what ``bind``/``connect`` take.

    Abstract names become bytes starting with NUL, with no padding.
    """
    if not name:
        raise ConfigError("empty socket name: give a path, @name or abstract:name")
    if name.startswith("@"):
        key = name[1:]
    elif name.startswith("abstract:"):
        key = name[len("abstract:") :].split(",", 1)[0]
    else:
        path = name[len("unix:") :] if name.startswith("unix:") else name
        if len(os.fsencode(path)) > 107:
            raise ConfigError(f"socket path {path!r} is longer than 107 bytes")
        return path
    raw = key.encode()
    if not raw or len(raw) > 107:
        raise ConfigError(f"abstract socket name {name!r} must be 1..107 bytes")
    return b"\0" + raw


def is_abstract(address: str | bytes) -> bool:
    """True for an abstract-namespace address."""
    return isinstance(address, bytes) and address.startswith(b"\0")


def seqpacket() -> socket.socket:
    """A new non-blocking, close-on-exec AF_UNIX SOCK_SEQPACKET socket."""
    return socket.socket(
        socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
    )


def listen(
    address: str | bytes, *, mode: int | None = None, gid: int | None = None, backlog: int = 16
) -> socket.socket:
    """Bind and listen; remove a stale socket file, refuse an active listener."""
    sock = seqpacket()
    try:
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise SocketPathError("bind", display(address), exc) from None
            if is_abstract(address) or _has_listener(address):
                raise SocketInUseError(
                    f"Active listener on {display(address)}{_holder(address)}"
                ) from None
            os.unlink(address)
            sock.bind(address)
        if not is_abstract(address):
            try:
                if mode is not None:
                    os.chmod(address, mode)
                if gid is not None:
                    os.chown(address, -1, gid)
            except OSError as exc:
                raise SocketPathError("set permissions of", display(address), exc) from None
        sock.listen(backlog)
        return sock
    except BaseException:
        sock.close()
        raise


def _holder(address: str | bytes) -> str:
    """Who listens on ``address``, as `` (held by pid P uid U gid G)``, or ``""``.

    An abstract name can be taken by any local user before we bind it: the message
    names the squatter so an operator can find it.
    """
    probe = seqpacket()
    try:
        probe.connect(address)
        return f" (held by {peer_credentials(probe)})"
    except OSError:
        return ""
    finally:
        probe.close()


def _has_listener(path: str | bytes) -> bool:
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise SocketInUseError(f"{display(path)} exists and is not a socket")
    except FileNotFoundError:
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
        return True
    except (ConnectionRefusedError, FileNotFoundError):
        return False  # stale: nobody listens there any more
    except OSError:
        return True  # someone is there (another socket type, a full backlog): keep it
    finally:
        probe.close()


def connect(address: str | bytes) -> socket.socket:
    """Connect without blocking; raises OSError when nobody listens.

    A UNIX socket connects at once or not at all: a listener whose backlog is full
    (one that never accepts) gives ``BlockingIOError`` instead of stalling the caller.
    """
    sock = seqpacket()
    try:
        sock.connect(address)
        return sock
    except BaseException:
        sock.close()
        raise


def display(address: str | bytes) -> str:
    """How an address is shown to users: a path or ``@name``."""
    if isinstance(address, str):
        return address
    if is_abstract(address):
        return "@" + address[1:].decode(errors="replace")
    return address.decode(errors="replace")


def send_message(sock: socket.socket, msg: wire.Message, fd: int | None = None) -> None:
    """Send one 128-byte message, with ``fd`` attached through SCM_RIGHTS."""
    data = wire.encode(msg)
    if fd is None:
        sock.send(data)
    else:
        sock.sendmsg(
            [data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]).tobytes())]
        )


def check_eventfd(fd: int) -> str | None:
    """Why ``fd`` cannot be a ring's interrupt fd, or None when it is a non-blocking eventfd.

    Anything else (a pipe, a socket, a file) would take our kicks as data, and a
    blocking one could stall whoever reads it; libmemif, VPP and DPDK all create
    their eventfds with ``EFD_NONBLOCK``.
    """
    try:
        kind = os.readlink(f"/proc/self/fd/{fd}")
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError as exc:
        return f"bad fd ({exc.strerror})"
    if kind != "anon_inode:[eventfd]":
        return "not an eventfd"
    if not flags & os.O_NONBLOCK:
        return "eventfd is blocking"
    return None


class Malformed(Exception):
    """The peer sent something that is not one message with at most one fd.

    ``data`` holds the bytes that came (their fds are already closed).
    """

    def __init__(self, problem: str, data: bytes = b"") -> None:
        super().__init__(problem)
        self.data = data


def recv_message(sock: socket.socket) -> tuple[bytes, int | None] | None:
    """Receive one datagram and its fd; None at EOF.

    Extra fds are closed at once; a truncated message or more than one fd raises
    :class:`Malformed` (after closing every fd that came along).
    """
    data, ancdata, flags, _ = sock.recvmsg(wire.MSG_SIZE + 1, _ANC_SIZE)
    fds: list[int] = []
    for level, ctype, cdata in ancdata:
        if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
            usable = len(cdata) - len(cdata) % _FD_SIZE
            fds.extend(array.array("i", cdata[:usable]))
    if not data and not fds:
        return None
    problem = None
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        problem = "truncated message or control data"
    elif len(fds) > 1:
        problem = f"{len(fds)} file descriptors in one message"
    if problem:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        raise Malformed(problem, data)
    return data, (fds[0] if fds else None)
