"""Hostile local peers for the isolation tests: raw memif endpoints run as any uid.

:func:`spawn_as` forks a child that drops to a uid (65534: nobody) and runs a
function; the parent keeps driving its own sockets (a library server, or nothing
when memifd is the target) and collects the function's result.  :class:`RawSlave`
speaks the slave side of the protocol by hand, from the spec, with whatever memory
the attack needs: a memfd the kernel lets us seal, one it does not
(``MFD_ALLOW_SEALING`` missing, or ``F_SEAL_SEAL`` already set), or a ``/dev/shm``
file; it can then truncate that memory and post a packet into it.
:func:`library_client` is the other start of a hostile peer: a connected library
client whose shared rings the attack then rewrites by hand.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import pickle
import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import memif
from memif import shm, transport, wire
from memif.poller import Poller
from memif.testing import drive

NOBODY = 65534
REGION_KINDS = ("sealable", "no-sealing", "seal-sealed", "dev-shm")


# --------------------------------------------------------------------------- children
class Child:
    """A forked child running ``fn(stopped)`` as another uid; :meth:`finish` gets its result.

    ``stopped()`` turns true once the parent called :meth:`finish` (or died).
    """

    def __init__(self, uid: int, fn: Callable[[Callable[[], bool]], Any]) -> None:
        self._stop_r, self._stop_w = os.pipe()
        self._res_r, res_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns
            os.close(self._stop_w)
            os.close(self._res_r)
            status = 0
            try:
                if uid != os.geteuid():
                    os.setgroups([])
                    os.setresgid(uid, uid, uid)
                    os.setresuid(uid, uid, uid)
                out: tuple[str, Any] = ("ok", fn(self._stopped))
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                out = ("error", f"{type(exc).__name__}: {exc}")
            try:
                data = pickle.dumps(out)
                while data:
                    data = data[os.write(res_w, data) :]
            except BaseException:  # noqa: BLE001
                status = 1
            os._exit(status)
        os.close(self._stop_r)
        os.close(res_w)
        self._buf = b""
        self._result: tuple[str, Any] | None = None

    def _stopped(self) -> bool:
        return bool(Poller([self._stop_r]).wait(0))

    @property
    def done(self) -> bool:
        """True once the child wrote its result (or exited)."""
        if self._result is None:
            self._read(0)
        return self._result is not None

    def _read(self, timeout: float) -> None:
        while Poller([self._res_r]).wait(timeout):
            chunk = os.read(self._res_r, 65536)
            if not chunk:
                os.close(self._res_r)
                os.waitpid(self.pid, 0)
                self._result = pickle.loads(self._buf) if self._buf else ("error", "no result")
                return
            self._buf += chunk
            timeout = 0

    def finish(self, timeout: float = 30.0) -> Any:
        """Tell the child to stop, wait for its result; re-raise its error as AssertionError."""
        if self._stop_w >= 0:
            os.close(self._stop_w)
            self._stop_w = -1
        end = time.monotonic() + timeout
        while not self.done:
            if time.monotonic() > end:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
                raise AssertionError("hostile child did not finish")
            self._read(0.05)
        assert self._result is not None
        kind, value = self._result
        if kind != "ok":
            raise AssertionError(f"hostile child failed: {value}")
        return value


def spawn_as(uid: int, fn: Callable[[Callable[[], bool]], Any]) -> Child:
    """Run ``fn(stopped)`` in a forked child as ``uid`` (and gid ``uid``)."""
    return Child(uid, fn)


def run_as(uid: int, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
    """``fn()`` in a child as ``uid``, to its end; its result."""
    return spawn_as(uid, lambda stopped: fn()).finish(timeout)


# --------------------------------------------------------------------------- memory
def region_fd(kind: str, size: int) -> int:
    """A shared-memory fd of ``size`` bytes of the named kind (see :data:`REGION_KINDS`)."""
    if kind == "dev-shm":
        path = f"/dev/shm/hostile-{os.getpid()}-{os.urandom(4).hex()}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.unlink(path)
    else:
        sealing = os.MFD_ALLOW_SEALING if kind != "no-sealing" else 0
        fd = os.memfd_create("hostile", os.MFD_CLOEXEC | sealing)
    os.ftruncate(fd, size)
    if kind == "seal-sealed":
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL)
    return fd


# --------------------------------------------------------------------------- a raw slave
class RawSlave:
    """The slave side of a handshake, by hand: rings in region 0, buffers in region 1.

    Region 1 is of ``kind``; region 0 is always a sealable memfd.
    """

    def __init__(
        self,
        address: str,
        if_id: int = 0,
        *,
        secret: str = "",
        kind: str = "sealable",
        s2m: int = 1,
        m2s: int = 1,
        log2: int = 4,
        buffer_size: int = 2048,
    ) -> None:
        self.address = transport.parse_address(address)
        self.if_id = if_id
        self.secret = secret
        self.layout = shm.Layout(s2m, m2s, log2, buffer_size)
        sizes = self.layout.region_sizes()
        self.fds = [region_fd("sealable", sizes[0]), region_fd(kind, sizes[1])]
        self.maps = [mmap.mmap(fd, size) for fd, size in zip(self.fds, sizes, strict=True)]
        for i in range(s2m + m2s):  # every ring's cookie
            self.maps[0][i * self.layout.ring_bytes : i * self.layout.ring_bytes + 4] = struct.pack(
                "<I", wire.COOKIE
            )
        self.eventfds = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(s2m + m2s)]
        self.sock: socket.socket | None = None
        self.reason = ""

    # -- control
    def connect(self, timeout: float = 10.0) -> RawSlave:
        """Connect; wait for HELLO (a refusal before it sets :attr:`reason`)."""
        sock = transport.connect(self.address)
        sock.setblocking(True)
        sock.settimeout(timeout)
        self.sock = sock
        self.expect(wire.Hello)
        return self

    def send(self, msg: wire.Message, fd: int | None = None) -> None:
        assert self.sock is not None
        transport.send_message(self.sock, msg, fd)

    def receive(self) -> wire.Message | None:
        """The next message (None at EOF)."""
        assert self.sock is not None
        got = transport.recv_message(self.sock)
        if got is None:
            return None
        data, fd = got
        if fd is not None:
            os.close(fd)
        return wire.decode(data)

    def expect(self, kind: type) -> bool:
        """True when the next message is a ``kind``; a DISCONNECT or EOF sets :attr:`reason`."""
        if self.reason:
            return False
        try:
            msg = self.receive()
        except OSError as exc:
            msg, self.reason = None, f"error: {exc}"
        if isinstance(msg, kind):
            return True
        if isinstance(msg, wire.Disconnect):
            self.reason = msg.reason
        elif not self.reason:
            self.reason = "closed" if msg is None else f"unexpected {msg}"
        return False

    def init(self) -> bool:
        """Send INIT for our interface id; True when it was accepted."""
        self.send(wire.Init(self.if_id, wire.Mode.ETHERNET, self.secret, "hostile"))
        return self.expect(wire.Ack)

    def handshake(self, timeout: float = 10.0) -> str:
        """The whole handshake: ``"connected"`` or the reason it was refused."""
        if self.sock is None:
            self.connect(timeout)
        if self.reason or not self.init():
            return self.reason
        for i, size in enumerate(self.layout.region_sizes()):
            self.send(wire.AddRegion(i, size), self.fds[i])
            if not self.expect(wire.Ack):
                return self.reason
        n_s2m = self.layout.num_s2m
        for k, efd in enumerate(self.eventfds):
            s2m, index = k < n_s2m, k if k < n_s2m else k - n_s2m
            off = self.layout.ring_offset(s2m, index)
            self.send(wire.AddRing(s2m, index, 0, off, self.layout.log2_ring_size), efd)
            if not self.expect(wire.Ack):
                return self.reason
        self.send(wire.Connect("hostile0"))
        return "connected" if self.expect(wire.Connected) else self.reason

    # -- data
    def post(self, payload: bytes) -> None:
        """One packet on S2M ring 0, its buffer in region 1, and a kick."""
        ring0 = shm.Region(self.fds[0], len(self.maps[0]), owns_fd=False)
        try:
            ring = shm.Ring(
                ring0, 0, self.layout.log2_ring_size, wire.DEFAULT_CACHELINE, self.eventfds[0]
            )
            offset = int(self.layout.buffer_offsets(True, 0)[0])
            slot = ring.head & ring.mask
            ring.d_region[slot], ring.d_offset[slot] = 1, offset
            ring.d_length[slot], ring.d_flags[slot] = len(payload), 0
            ring.head = ring.head + 1
            ring.release()
        finally:
            ring0.close()
        os.eventfd_write(self.eventfds[0], 1)

    def write_buffer(self, payload: bytes) -> None:
        """Put ``payload`` where :meth:`post` points (before a truncate makes that fatal)."""
        offset = int(self.layout.buffer_offsets(True, 0)[0])
        self.maps[1][offset : offset + len(payload)] = payload

    def truncate(self) -> str:
        """Shrink region 1 to nothing; ``"truncated"`` or why the kernel refused."""
        try:
            os.ftruncate(self.fds[1], 0)
            return "truncated"
        except OSError as exc:
            return exc.strerror or str(exc)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        for m in self.maps:
            try:
                m.close()
            except BufferError:
                pass
        for fd in [*self.fds, *self.eventfds]:
            os.close(fd)


# --------------------------------------------------------------------------- a library client
@contextmanager
def library_client(name: str, **options: Any) -> Iterator[tuple[memif.Socket, memif.Interface]]:
    """A :mod:`memif` client of interface 0 on ``name`` (``options``: its configuration),
    connected (15 s at most), closed on exit: a hostile peer that then rewrites its
    shared rings by hand, as a malicious process mapping the same memory would."""
    with memif.Socket(name, app_name="hostile") as sock:
        iface = sock.create_interface(role="client", id=0, reconnect_interval=0.1, **options)
        connected = drive(sock, until=lambda: iface.connected, timeout=15)
        assert connected, f"not connected: {iface.local_disc_reason}"
        yield sock, iface
