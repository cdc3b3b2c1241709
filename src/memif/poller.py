"""Waiting for file descriptors: :class:`Poller`, the package's one way to sleep on fds.

:class:`memif.loop.EventLoop` is the loop built on it (rx modes, sockets, timers); use a
``Poller`` alone to wait on a few fds of your own.

A ``Poller`` holds a set of fds, registered once and waited on many times, and
``wait(timeout)`` returns the ones that became readable.  It is ``ppoll(2)``, called
through ctypes, for two reasons:

* no ``FD_SETSIZE`` limit: select(2) refuses fds numbered 1024 and up, which a
  process with many interfaces (or a raised ``RLIMIT_NOFILE``) hands out;
* nanosecond timeouts: ``select.poll`` and ``select.epoll`` round a timeout up to whole
  milliseconds, which would stretch the tools' 100-500 microsecond naps to a millisecond.

Readable means any event poll(2) reports: data (``POLLIN``), hang-up, error, or an fd
closed while still registered (``POLLNVAL``: it is reported so that its owner notices;
unregister it, or register its successor: registration is by number only, so a new fd
that reuses the number needs nothing more).
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
from collections.abc import Iterable

__all__ = ["Poller"]


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


#: struct pollfd: int fd; short events; short revents (8 bytes, no padding)
_POLLFD_SIZE = 8
_POLLIN = select.POLLIN

#: a zero timeout: look without blocking (glibc's ppoll does not write to it)
_NOW = _Timespec()
_NOW_ADDR = ctypes.addressof(_NOW)
#: longer than this (seconds, about 30 years) is forever, and fits any time_t
_FOREVER = 1e9

_libc = ctypes.CDLL(None, use_errno=True)
_ppoll = _libc.ppoll
_ppoll.argtypes = (ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_void_p)
_ppoll.restype = ctypes.c_int


class Poller:
    """A set of fds to wait on until one is readable (``ppoll(2)``: any fd number).

    Register once (:meth:`register`, :meth:`unregister`, or :meth:`update` to make the
    set exactly a given list, which costs a comparison when nothing changed), then call
    :meth:`wait` as often as needed.  Not thread-safe: one thread waits on a poller.
    """

    __slots__ = ("_fds", "_buf", "_shorts", "_addr", "_ts", "_ts_addr")

    def __init__(self, fds: Iterable[int] = ()) -> None:
        self._fds: tuple[int, ...] = ()
        self._ts = _Timespec()
        self._ts_addr = ctypes.addressof(self._ts)
        self._rebuild(())
        self.update(fds)

    @property
    def fds(self) -> tuple[int, ...]:
        """The registered fds, in registration order."""
        return self._fds

    def __len__(self) -> int:
        return len(self._fds)

    def __contains__(self, fd: object) -> bool:
        return fd in self._fds

    def register(self, fd: int) -> None:
        """Add ``fd`` to the set (registering it twice does nothing)."""
        if fd not in self._fds:
            self._rebuild((*self._fds, _checked(fd)))

    def unregister(self, fd: int) -> None:
        """Remove ``fd`` from the set (an fd not in it is ignored)."""
        if fd in self._fds:
            self._rebuild(tuple(f for f in self._fds if f != fd))

    def update(self, fds: Iterable[int]) -> None:
        """Make the set exactly ``fds`` (duplicates count once); nothing to do when unchanged."""
        new = tuple(fds)
        if new != self._fds:
            self._rebuild(tuple(dict.fromkeys(_checked(fd) for fd in new)))

    def wait(self, timeout: float | None = None) -> set[int]:
        """Sleep until a registered fd is readable or ``timeout`` seconds pass; the ready fds.

        ``None`` (or more than 30 years) waits forever; 0 or less only looks.  A signal
        ends the wait early with nothing ready (its Python handler runs right after), so a
        loop sees the flag its handler set.  An empty poller just sleeps for ``timeout``.
        """
        if timeout is None or timeout > _FOREVER:
            ts = None
        elif timeout > 0:
            sec = int(timeout)
            self._ts.tv_sec = sec
            self._ts.tv_nsec = int((timeout - sec) * 1e9)
            ts = self._ts_addr
        elif timeout <= 0:
            ts = _NOW_ADDR
        else:
            raise ValueError(f"poller: timeout must be seconds (a number) or None, got {timeout!r}")
        n = _ppoll(self._addr, len(self._fds), ts, None)
        if n <= 0:
            if n < 0:
                err = ctypes.get_errno()
                if err != errno.EINTR:
                    raise OSError(err, f"ppoll: {os.strerror(err)}")
            return set()
        revents = self._shorts
        return {fd for i, fd in enumerate(self._fds) if revents[4 * i + 3]}

    def _rebuild(self, fds: tuple[int, ...]) -> None:
        """Lay ``fds`` out as an array of struct pollfd for ppoll(2)."""
        buf = bytearray(_POLLFD_SIZE * max(1, len(fds)))
        ints, shorts = memoryview(buf).cast("i"), memoryview(buf).cast("h")
        for i, fd in enumerate(fds):
            ints[2 * i] = fd
            shorts[4 * i + 2] = _POLLIN
        self._fds, self._buf, self._shorts = fds, buf, shorts
        self._addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))


def _checked(fd: int) -> int:
    """``fd`` if it can be a file descriptor, else a one-line ValueError."""
    if not isinstance(fd, int) or isinstance(fd, bool) or not 0 <= fd < 1 << 31:
        raise ValueError(f"poller: an fd is a non-negative int, got {fd!r}")
    return fd
