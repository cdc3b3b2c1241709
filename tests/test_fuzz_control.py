"""Hostile peers on the control channel (protocol sections 1-5), over real sockets.

A server :class:`memif.Socket` serves three interfaces: id 0 (the target of the
attacks), id 1 (a healthy client, connected, exchanging packets all along) and id 2
(mode ip, secret ``pw``).  A raw SEQPACKET peer then sends what no honest client
would: malformed frames, fields at every limit, fds of the wrong kind or number,
messages out of order.  For every case:

* the server answers DISCONNECT with the expected reason and closes the connection
  (or, for what the protocol treats as a close, just closes);
* the reason is recorded on the interface INIT named, and nowhere else;
* no fd and no mapping is left behind (``/proc/self/fd``, ``/proc/self/maps``);
* the healthy interface exchanges packets between every step and after;
* the socket still serves a fresh client on id 0 afterwards.

Then the same from the other side (a hostile master against our client), the bound
on pending handshakes, and a hypothesis test that sends random mixes of valid and
mutated messages with random fds.  ``scripts/fuzz_control.py`` fuzzes the sans-I/O
channels with coverage guidance; this module is the socket-level counterpart.
"""

from __future__ import annotations

import array
import fcntl
import gc
import os
import socket
import struct
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest
from clocks import ManualClock
from footprint import footprint
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import memif
from memif import transport, wire
from memif.proto import Phase
from memif.testing import drive, unique_name
from memif.wire import (
    Ack,
    AddRegion,
    AddRing,
    Connect,
    Connected,
    Disconnect,
    Hello,
    Init,
    Mode,
)

LOG2 = 4
R = wire.ring_bytes(LOG2)  # one ring of 16 slots with 64-byte cache lines
ETH = Mode.ETHERNET
R1, R14 = wire.ring_bytes(1), wire.ring_bytes(14)
U32 = 1 << 32
DISK_DIR = os.path.dirname(os.path.abspath(__file__))  # not tmpfs: a file on a disk


# --------------------------------------------------------------------------- accounting


def shared_maps(collect: bool = False) -> int:
    """Mappings of memfds and of the hostile peer's files."""
    if collect:
        gc.collect()
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if "memfd:" in line or "hostile" in line)


# --------------------------------------------------------------------------- fds of every kind


class Kit:
    """Makes fds of a named kind for the hostile peer and closes them all at the end.

    Kinds: ``shm:N`` (a sealed memfd of N bytes with a ring cookie every R bytes, what a
    good client sends), ``memfd:N`` (unsealed, sealing allowed), ``memfd-fixed:N`` (no
    sealing possible), ``memfd-ro``, ``memfd-wseal``, ``file:N`` (on a disk), ``pipe``,
    ``socket``, ``devnull``, ``devzero``, ``dir``, ``eventfd``, ``eventfd-blocking``.
    """

    def __init__(self) -> None:
        self.fds: list[int] = []
        self._keep: list[object] = []

    def _own(self, fd: int) -> int:
        self.fds.append(fd)
        return fd

    def memfd(self, size: int, *, cookies: bool = False, sealing: bool = True) -> int:
        flags = os.MFD_CLOEXEC | (os.MFD_ALLOW_SEALING if sealing else 0)
        fd = self._own(os.memfd_create("hostile", flags))
        os.ftruncate(fd, size)
        if cookies:
            for off in range(0, size - 3, R):
                os.pwrite(fd, struct.pack("<I", wire.COOKIE), off)
        return fd

    def make(self, kind: str) -> int:
        name, _, arg = kind.partition(":")
        size = int(arg) if arg else 2 * R
        if name == "shm":
            fd = self.memfd(size, cookies=True)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
            return fd
        if name == "memfd":
            return self.memfd(size, cookies=True)
        if name == "memfd-fixed":
            return self.memfd(size, cookies=True, sealing=False)
        if name == "memfd-ro":
            fd = self.memfd(size, cookies=True)
            return self._own(os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC))
        if name == "memfd-wseal":
            fd = self.memfd(size, cookies=True)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE)
            return fd
        if name == "file":
            f = tempfile.TemporaryFile(dir=DISK_DIR, prefix="hostile")  # noqa: SIM115
            self._keep.append(f)
            f.truncate(size)
            try:
                fcntl.fcntl(f.fileno(), fcntl.F_GET_SEALS)
                pytest.skip(f"{DISK_DIR} is shared memory (tmpfs), not a disk")
            except OSError:
                pass
            return f.fileno()
        if name == "pipe":
            r, w = os.pipe()
            self._own(w)
            return self._own(r)
        if name == "socket":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._keep.append(s)
            return s.fileno()
        if name in ("devnull", "devzero"):
            return self._own(os.open(f"/dev/{name[3:]}", os.O_RDWR | os.O_CLOEXEC))
        if name == "dir":
            return self._own(os.open(DISK_DIR, os.O_RDONLY | os.O_DIRECTORY))
        if name == "eventfd":
            return self._own(os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC))
        if name == "eventfd-blocking":
            return self._own(os.eventfd(0, os.EFD_CLOEXEC))
        raise ValueError(kind)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        for obj in self._keep:
            obj.close()  # type: ignore[attr-defined]
        self.fds.clear()
        self._keep.clear()


# --------------------------------------------------------------------------- the lab


class Lab:
    """A server socket with interfaces 0 (target), 1 (healthy, connected) and 2 (secret)."""

    def __init__(self, *, handshake_timeout: float = 5.0, **sock_options: object) -> None:
        self.path = unique_name("memif-fuzz")
        self.ss = memif.Socket(self.path, app_name="fuzz-server", **sock_options)  # type: ignore[arg-type]
        self.cs = memif.Socket(self.path, app_name="fuzz-healthy")
        opts = {"role": "server", "handshake_timeout": handshake_timeout}
        self.target = self.ss.create_interface(id=0, **opts)
        self.healthy_srv = self.ss.create_interface(id=1, **opts)
        self.secret_srv = self.ss.create_interface(id=2, mode="ip", secret="pw", **opts)
        self.healthy = self.cs.create_interface(
            role="client", id=1, ring_size=64, reconnect_interval=None
        )
        self.drive(lambda: self.healthy.connected and self.healthy_srv.connected)
        self.rounds = 0
        self.traffic()

    def drive(self, until: Callable[[], object], timeout: float = 3.0, *extra) -> None:
        assert drive(self.ss, self.cs, *extra, until=lambda: bool(until()), timeout=timeout)

    def traffic(self) -> None:
        """The healthy pair exchanges packets both ways (and is still connected)."""
        assert self.healthy.connected and self.healthy_srv.connected
        self.rounds += 1
        up = [b"up%d-" % self.rounds + bytes(i) for i in range(3)]
        down = [b"down%d-" % self.rounds + bytes(100 * i) for i in range(3)]
        assert self.healthy.send(up) == 3 and self.healthy_srv.send(down) == 3
        got_up: list[bytes] = []
        got_down: list[bytes] = []

        def done() -> bool:
            got_up.extend(self.healthy_srv.recv())
            got_down.extend(self.healthy.recv())
            return len(got_up) >= 3 and len(got_down) >= 3

        self.drive(done)
        assert got_up == up and got_down == down

    def others_untouched(self) -> None:
        assert self.healthy_srv.connected and self.healthy_srv.connect_count == 1
        assert self.healthy_srv.local_disc_reason == self.healthy_srv.remote_disc_reason == ""
        conns = self.ss.connections()
        assert len(conns) == 1 and conns[0].interface is self.healthy_srv
        assert conns[0].phase == "connected"
        assert conns[0].fd == self.healthy_srv.details().control_fd

    def fresh_client(self, if_id: int = 0) -> None:
        """A real client connects on ``if_id``, exchanges packets and leaves."""
        with memif.Socket(self.path, app_name="fuzz-fresh") as fs:
            client = fs.create_interface(role="client", id=if_id, reconnect_interval=None)
            server = self.ss.interfaces[if_id]
            self.drive(lambda: client.connected and server.connected, 3.0, fs)
            assert client.send([b"fresh"]) == 1 and server.send([b"back"]) == 1
            got: list[bytes] = []

            def done() -> bool:
                got.extend(server.recv() + client.recv())
                return len(got) == 2

            self.drive(done, 3.0, fs)
            assert sorted(got) == [b"back", b"fresh"]
        self.drive(lambda: not server.connected)

    def close(self) -> None:
        self.cs.close()
        self.ss.close()


@pytest.fixture
def lab():
    lab = Lab()
    yield lab
    lab.close()


def send_frame(sock: socket.socket, data: bytes, fds: Sequence[int] = ()) -> None:
    """One frame on a raw SEQPACKET socket, ``fds`` with it (SCM_RIGHTS)."""
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
    sock.sendmsg([data], anc if fds else [])


def read_frames(sock: socket.socket) -> tuple[list[tuple[bytes, int]], bool]:
    """The frames waiting on a raw non-blocking SEQPACKET socket, as (data, number of fds
    received, closed at once), and whether the other side closed."""
    frames: list[tuple[bytes, int]] = []
    while True:
        try:
            data, anc, _, _ = sock.recvmsg(256, socket.CMSG_SPACE(64))
        except BlockingIOError:
            return frames, False
        except ConnectionResetError:  # closed with our data unread: what it sent remains
            continue
        except OSError:
            return frames, True
        fds = [fd for _, _, c in anc for fd in array.array("i", c)]
        for fd in fds:
            os.close(fd)
        if not data and not fds:
            return frames, True
        frames.append((data, len(fds)))


class Peer:
    """A raw client on the server's socket: sends anything, records every frame."""

    def __init__(self, lab: Lab, *, hello: bool = True) -> None:
        self.lab = lab
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.connect(transport.parse_address(lab.path))
        self.sock.setblocking(False)
        self.frames: list[bytes] = []
        self.eof = False
        if hello:
            assert isinstance(self.reply(), Hello)

    def pump(self) -> None:
        if not self.eof:
            frames, self.eof = read_frames(self.sock)
            assert all(n == 0 for _, n in frames)  # a master never sends fds
            self.frames += [data for data, _ in frames]

    def next(self, timeout: float = 3.0) -> bytes | None:
        """The next frame the server sends, or None at EOF; the server must answer."""
        n = len(self.frames)

        def arrived() -> bool:
            self.pump()
            return self.eof or len(self.frames) > n

        self.lab.drive(arrived, timeout)
        return self.frames[n] if len(self.frames) > n else None

    def reply(self) -> wire.Message | None:
        frame = self.next()
        return None if frame is None else wire.decode(frame)

    def push(self, data: bytes, fds: Sequence[int] = ()) -> bool:
        try:
            send_frame(self.sock, data, fds)
        except OSError:  # the server closed already
            return False
        return True

    def send(self, msg: wire.Message | bytes, fds: Sequence[int] = ()) -> wire.Message | None:
        data = msg if isinstance(msg, bytes) else wire.encode(msg)
        assert self.push(data, fds)
        return self.reply()

    def close(self) -> None:
        self.sock.close()


# --------------------------------------------------------------------------- server: the table

Step = wire.Message | bytes | tuple[wire.Message | bytes, Sequence[str]]

INIT0 = Init(0, ETH, "", "hostile")
REGION = (AddRegion(0, 2 * R), ["shm"])
S2M = (AddRing(True, 0, 0, 0, LOG2), ["eventfd"])
M2S = (AddRing(False, 0, 0, R, LOG2), ["eventfd"])
SETUP = [INIT0, REGION, S2M, M2S]
UP = [*SETUP, Connect("hostile-if")]  # answered with CONNECTED: the target is up


def raw(mtype: int, body: bytes = b"") -> bytes:
    return (struct.pack("<H", mtype) + body).ljust(128, b"\0")


def region(index: int = 0, size: int = 2 * R, *fds: str) -> tuple[AddRegion, list[str]]:
    return AddRegion(index, size), list(fds) if fds else ["shm"]


def ring(
    s2m: bool = True,
    index: int = 0,
    *,
    region: int = 0,
    offset: int = 0,
    log2: int = LOG2,
    fds: Sequence[str] = ("eventfd",),
) -> tuple[AddRing, list[str]]:
    return AddRing(s2m, index, region, offset, log2), list(fds)


NOT_SHM = "region 0: fd is not shareable memory"


@dataclass
class Case:
    steps: list[Step]
    reason: str
    recorded_on: int | None = 0  # the interface whose local_disc_reason it becomes


CASES: dict[str, Case] = {
    # framing and types (section 2): nothing is known about the peer yet
    "1 byte": Case([b"\x03"], "malformed message: 1 bytes, expected 128", None),
    "127 bytes": Case([wire.encode(INIT0)[:127]],
                      "malformed message: 127 bytes, expected 128", None),
    "129 bytes": Case([wire.encode(INIT0) + b"\0"],
                      "malformed message: 129 bytes, expected 128", None),
    "4096 bytes": Case([wire.encode(INIT0) * 32], "truncated message or control data", None),
    "type 0 (NONE)": Case([raw(0)], "unknown message type (0x0)", None),
    "type 9": Case([raw(9)], "unknown message type (0x9)", None),
    "type 0xffff": Case([raw(0xFFFF)], "unknown message type (0xffff)", None),
    "unknown type after INIT": Case([INIT0, raw(0x100)], "unknown message type (0x100)"),
    "junk of a valid length after INIT": Case([INIT0, b"\xff\xff" + os.urandom(126)],
                                              "unknown message type (0xffff)"),
    "HELLO first": Case([Hello()], "unexpected message received (HELLO)", None),
    "ACK first": Case([Ack()], "unexpected message received (ACK)", None),
    "CONNECTED first": Case([Connected()], "unexpected message received (CONNECTED)", None),
    "ADD_REGION before INIT": Case([REGION], "unexpected message received (ADD_REGION)", None),
    "ADD_RING before INIT": Case([S2M], "unexpected message received (ADD_RING)", None),
    "CONNECT before INIT": Case([Connect()], "unexpected message received (CONNECT)", None),
    # INIT (section 5)
    "mode 3": Case([raw(3, struct.pack("<HIB", wire.VERSION, 0, 3))],
                   "unsupported interface mode 3", None),
    "mode 255": Case([raw(3, struct.pack("<HIB", wire.VERSION, 0, 255))],
                     "unsupported interface mode 255", None),
    "version 1.0": Case([Init(0, version=0x0100)], "incompatible protocol version", None),
    "version 2.1": Case([Init(0, version=0x0201)], "incompatible protocol version", None),
    "version 0xffff": Case([Init(0, version=0xFFFF)], "incompatible protocol version", None),
    "id 2^32-1": Case([Init(U32 - 1)], "unmatched interface id", None),
    "id 3": Case([Init(3)], "unmatched interface id", None),
    "id of the healthy interface": Case([Init(1)], "already connected", None),
    "no secret": Case([Init(2, Mode.IP)], "secret required", 2),
    "wrong secret": Case([Init(2, Mode.IP, "pW")], "incorrect secret", 2),
    "secret of 23 bytes": Case([Init(2, Mode.IP, "p" * 23)], "incorrect secret", 2),
    "mode mismatch": Case([Init(2, ETH, "pw")], "mode mismatch", 2),
    "two INITs": Case([INIT0, INIT0], "unexpected message received (INIT)"),
    "fd on INIT": Case([(INIT0, ["eventfd"])], "unexpected file descriptor with INIT", None),
    "memfd on INIT": Case([(INIT0, ["shm"])], "unexpected file descriptor with INIT", None),
    # ADD_REGION: fds
    "three fds on ADD_REGION": Case([INIT0, region(0, 2 * R, "shm", "shm", "eventfd")],
                                    "3 file descriptors in one message"),
    "nine fds on ADD_REGION": Case([INIT0, region(0, 2 * R, *["eventfd"] * 9)],
                                   "truncated message or control data"),
    **{
        f"region fd is a {kind}": Case([INIT0, region(0, 2 * R, kind)], NOT_SHM)
        for kind in ("file", "pipe", "socket", "devnull", "devzero", "dir", "eventfd")
    },
    "region fd read-only": Case([INIT0, region(0, 2 * R, "memfd-ro")],
                                "region 0: fd is not open for reading and writing"),
    "region sealed against writes": Case([INIT0, region(0, 2 * R, "memfd-wseal")],
                                         "region 0: memory is sealed against writes"),
    # ADD_REGION: indices and sizes
    "region index 1 first": Case([INIT0, region(1)], "unexpected region index"),
    "region index 255 first": Case([INIT0, region(255)], "unexpected region index"),
    "region index 256": Case([INIT0, region(256)], "too many regions"),
    "region index 65535": Case([INIT0, region(65535)], "too many regions"),
    "region index repeated": Case([INIT0, REGION, REGION], "unexpected region index"),
    "region size 0": Case([INIT0, region(0, 0)], "region 0 has size 0"),
    "region 1 byte larger than its memfd": Case(
        [INIT0, region(0, 2 * R + 1)],
        f"region 0: size {2 * R + 1} larger than its memory ({2 * R})"),
    "region size 2^32": Case([INIT0, region(0, U32)],
                             f"region 0: size {U32} larger than its memory ({2 * R})"),
    "region size 2^63": Case([INIT0, region(0, 1 << 63)],
                             f"region 0: size {1 << 63} larger than its memory ({2 * R})"),
    "region size 2^64-1": Case([INIT0, region(0, (1 << 64) - 1)],
                               f"region 0: size {(1 << 64) - 1} larger than its memory ({2 * R})"),
    "unsealed memfd smaller than announced": Case(
        [INIT0, region(0, 2 * R, "memfd:100")], "region 0: size 768 larger than its memory (100)"),
    "unsealable memfd smaller than announced": Case(
        [INIT0, region(0, 2 * R, "memfd-fixed:100")],
        "region 0: size 768 larger than its memory (100)"),
    "second region bad after a good one": Case([INIT0, REGION, region(1, 2 * R, "pipe")],
                                               "region 1: fd is not shareable memory"),
    "region of 1 byte": Case([INIT0, region(0, 1, "shm:1"), ring(), ring(False), Connect()],
                             "ring at offset 0 does not fit its region"),
    # ADD_RING
    "two eventfds on ADD_RING": Case([INIT0, REGION, ring(fds=["eventfd", "eventfd"])],
                                     "2 file descriptors in one message"),
    **{
        f"ring fd is a {kind}": Case([INIT0, REGION, ring(fds=[kind])],
                                     "ring 0: bad interrupt fd (not an eventfd)")
        for kind in ("shm", "file", "pipe", "socket", "devnull", "dir")
    },
    "ring fd is a blocking eventfd": Case([INIT0, REGION, ring(fds=["eventfd-blocking"])],
                                          "ring 0: bad interrupt fd (eventfd is blocking)"),
    "ring before any region": Case([INIT0, S2M], "ring refers to unknown region 0"),
    "ring in region 1 of 1": Case([INIT0, REGION, ring(region=1)],
                                  "ring refers to unknown region 1"),
    "ring in region 65535": Case([INIT0, REGION, ring(region=65535)],
                                 "ring refers to unknown region 65535"),
    **{
        f"{d} ring index {i} first": Case([INIT0, REGION, ring(d == "s2m", i)], reason)
        for d in ("s2m", "m2s")
        for i, reason in ((1, "unexpected ring index"), (255, "unexpected ring index"),
                          (256, "too many rings"), (65535, "too many rings"))
    },
    "s2m ring index repeated": Case([INIT0, REGION, S2M, S2M], "unexpected ring index"),
    "m2s ring index repeated": Case([INIT0, REGION, S2M, M2S, M2S], "unexpected ring index"),
    **{
        f"log2 ring size {n}": Case([INIT0, REGION, ring(log2=n)], f"invalid ring size 2^{n}")
        for n in (0, 15, 255)
    },
    "log2 ring size 14 in a small region": Case([INIT0, REGION, ring(log2=14), M2S, Connect()],
                                                "ring at offset 0 does not fit its region"),
    **{
        f"ring offset {off:#x}": Case(
            [INIT0, REGION, S2M, ring(False, offset=off), Connect()],
            f"ring at offset {off} does not fit its region")
        for off in (R + 8, R + 1, 2 * R, U32 - 8, U32 - 1)
    },
    # CONNECT and order
    "CONNECT before any ring": Case([INIT0, REGION, Connect()],
                                    "connect without rings in both directions"),
    "CONNECT right after INIT": Case([INIT0, Connect()],
                                     "connect without rings in both directions"),
    "CONNECT with only s2m rings": Case([INIT0, REGION, S2M, Connect()],
                                        "connect without rings in both directions"),
    "CONNECT with only m2s rings": Case([INIT0, REGION, ring(False, offset=R), Connect()],
                                        "connect without rings in both directions"),
    "fd on CONNECT": Case([*SETUP, (Connect(), ["eventfd"])],
                          "unexpected file descriptor with CONNECT"),
    "cookie missing on the m2s ring": Case(
        [INIT0, region(0, 3 * R, f"shm:{3 * R}"), S2M, ring(False, offset=R + 64), Connect()],
        "wrong cookie on rx ring 0"),
    # after CONNECTED
    "CONNECT twice": Case([*UP, Connect()], "unexpected message received (CONNECT)"),
    "INIT after CONNECTED": Case([*UP, INIT0], "unexpected message received (INIT)"),
    "ADD_REGION after CONNECTED": Case([*UP, region(1)],
                                       "unexpected message received (ADD_REGION)"),
    "ADD_RING after CONNECTED": Case([*UP, ring(True, 1)],
                                     "unexpected message received (ADD_RING)"),
    "ACK after CONNECTED": Case([*UP, Ack()], "unexpected message received (ACK)"),
    "fd after CONNECTED": Case([*UP, (Ack(), ["eventfd"])], "unexpected file descriptor with ACK"),
    "garbage after CONNECTED": Case([*UP, b"x" * 5], "malformed message: 5 bytes, expected 128"),
}  # fmt: skip


def play(peer: Peer, kit: Kit, steps: Sequence[Step], lab: Lab) -> wire.Message | None:
    """Send every step; all but the last must be answered (ACK or CONNECTED)."""
    reply: wire.Message | None = None
    for n, step in enumerate(steps):
        msg, kinds = step if isinstance(step, tuple) else (step, [])
        reply = peer.send(msg, [kit.make(k) for k in kinds])
        if n < len(steps) - 1:
            expected = Connected(lab.target.name) if isinstance(msg, Connect) else Ack()
            assert reply == expected, (n, msg, reply)
        lab.traffic()  # the healthy interface works all along
    return reply


def assert_clean(lab: Lab, fds: int, maps: int) -> None:
    assert footprint().fds == fds, "fd leak"
    assert shared_maps() == maps or shared_maps(collect=True) == maps, "mapping leak"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_hostile_client_is_refused(lab: Lab, name: str) -> None:
    case = CASES[name]
    fds, maps = footprint().fds, shared_maps()
    kit = Kit()
    try:
        peer = Peer(lab)
        reply = play(peer, kit, case.steps, lab)
        assert reply == Disconnect(case.reason)
        assert peer.next() is None  # then the server closed the connection
        assert peer.frames[-1] == wire.encode(Disconnect(case.reason))
        peer.close()
    finally:
        kit.close()
    lab.traffic()
    lab.others_untouched()
    for if_id, iface in lab.ss.interfaces.items():
        expected = case.reason if if_id == case.recorded_on else ""
        assert iface.local_disc_reason == expected, if_id
        assert not iface.connected or if_id == 1
    assert_clean(lab, fds, maps)
    lab.fresh_client(0)
    lab.traffic()
    assert_clean(lab, fds, maps)


# --------------------------------------------------------------------------- server: more


@pytest.mark.parametrize(
    ("name", "steps"),
    [
        ("log2 ring size 1", [INIT0, REGION, ring(log2=1), ring(False, offset=R, log2=1)]),
        ("log2 ring size 14", [INIT0, region(0, 2 * R14, f"shm:{2 * R14}"), ring(log2=14),
                               ring(False, offset=R14, log2=14)]),
        ("region exactly the rings", [INIT0, region(0, R + R1, f"shm:{R + R1}"), S2M,
                                      ring(False, offset=R, log2=1)]),
        ("unsealed memfd", [INIT0, region(0, 2 * R, "memfd"), S2M, M2S]),
        ("memfd that cannot be sealed", [INIT0, region(0, 2 * R, "memfd-fixed"), S2M, M2S]),
        ("region larger than needed", [INIT0, region(0, 1 << 20, f"shm:{1 << 20}"), S2M, M2S]),
        ("region after the rings", [INIT0, REGION, S2M, M2S, region(1)]),
        ("255 regions", [INIT0, *[region(i, 2 * R) for i in range(255)], S2M, M2S]),
    ],
)  # fmt: skip
@pytest.mark.slow
def test_limits_that_are_accepted(lab: Lab, name: str, steps: list[Step]) -> None:
    """Fields at the edge that a server must accept: CONNECT succeeds, then the peer leaves."""
    fds, maps = footprint().fds, shared_maps()
    kit = Kit()
    try:
        peer = Peer(lab)
        assert play(peer, kit, [*steps, Connect("edge")], lab) == Connected(lab.target.name)
        assert lab.target.connected and lab.target.remote_if_name == "edge"
        if "memfd" in name:  # the server sealed the peer's memfd against shrinking if it could
            seals = fcntl.fcntl(kit.fds[0], fcntl.F_GET_SEALS)
            assert bool(seals & fcntl.F_SEAL_SHRINK) == (name == "unsealed memfd")
        assert peer.send(Disconnect("bye")) is None  # nothing answers a DISCONNECT
        peer.close()
    finally:
        kit.close()
    assert lab.target.remote_disc_reason == "bye" and not lab.target.connected
    lab.traffic()
    lab.others_untouched()
    assert_clean(lab, fds, maps)
    lab.fresh_client(0)


@pytest.mark.slow
@pytest.mark.parametrize("stage", range(len(UP) + 1))
@pytest.mark.parametrize("how", ["DISCONNECT", "close"])
def test_peer_leaves_at_every_step(lab: Lab, stage: int, how: str) -> None:
    fds, maps = footprint().fds, shared_maps()
    kit = Kit()
    try:
        peer = Peer(lab)
        for step in UP[:stage]:
            msg, kinds = step if isinstance(step, tuple) else (step, [])
            answer = peer.send(msg, [kit.make(k) for k in kinds])
            assert answer in (Ack(), Connected(lab.target.name))
        assert lab.target.connected == (stage == len(UP))
        if how == "DISCONNECT":
            answered = len(peer.frames)
            assert peer.push(wire.encode(Disconnect(f"leaving at {stage}")))
            assert peer.next() is None  # closed, and nothing answers a DISCONNECT
            assert len(peer.frames) == answered
        peer.close()
        lab.drive(lambda: len(lab.ss.connections()) == 1)
    finally:
        kit.close()
    reason = f"leaving at {stage}" if how == "DISCONNECT" else "connection closed by peer"
    assert lab.target.remote_disc_reason == (reason if stage else "")
    assert lab.target.local_disc_reason == ""
    lab.traffic()
    lab.others_untouched()
    assert_clean(lab, fds, maps)
    lab.fresh_client(0)


def test_zero_length_message_is_a_close(lab: Lab) -> None:
    """A length of 0 means the peer disconnected (section 1): closed, nothing sent."""
    peer = Peer(lab)
    assert peer.send(INIT0) == Ack()
    assert peer.push(b"")
    assert peer.next() is None and peer.frames[1:] == [wire.encode(Ack())]
    assert lab.target.remote_disc_reason == "connection closed by peer"
    peer.close()
    lab.others_untouched()
    lab.fresh_client(0)


@pytest.mark.parametrize("stage", [0, 1, 3])
def test_silent_peer_is_dropped_at_the_handshake_timeout(stage: int) -> None:
    """The server's clock is a ManualClock: the peer is kept just before its deadline, however
    long the machine takes, and dropped once the clock reaches it."""
    clock = ManualClock()
    lab = Lab(handshake_timeout=0.3, clock=clock)
    try:
        fds, maps = footprint().fds, shared_maps()
        kit = Kit()
        start = clock.now  # the connection's deadline is start + 0.3
        peer = Peer(lab)
        for step in SETUP[:stage]:
            msg, kinds = step if isinstance(step, tuple) else (step, [])
            assert peer.send(msg, [kit.make(k) for k in kinds]) == Ack()
        clock.advance(0.29)
        for _ in range(3):  # the server's timers are checked at every poll of a round
            lab.traffic()
            peer.pump()
        assert not peer.eof and lab.ss.pending_count == 1
        clock.now = start + 0.3
        lab.drive(lambda: (peer.pump(), peer.eof)[1], 30.0)
        assert peer.frames[-1] == wire.encode(Disconnect("handshake timeout"))
        assert lab.target.local_disc_reason == ("handshake timeout" if stage else "")
        peer.close()
        kit.close()
        lab.others_untouched()
        assert_clean(lab, fds, maps)
        lab.fresh_client(0)
    finally:
        lab.close()


def test_flood_of_unfinished_handshakes() -> None:
    """At most ``max_pending`` handshakes; more are refused; each ends at its timeout."""
    clock = ManualClock()  # the server's: the flood lasts exactly until its deadline
    lab = Lab(handshake_timeout=0.5, max_pending=8, clock=clock)
    peers: list[Peer] = []
    try:
        fds, maps = footprint().fds, shared_maps()
        start = clock.now  # every handshake's deadline is start + 0.5
        kit = Kit()
        for _ in range(8):
            peers.append(Peer(lab))  # each got HELLO
        assert play(peers[1], kit, SETUP[:3], lab) == Ack()  # one gets as far as holding fds
        assert len(lab.ss.connections()) == 9 and lab.ss.pending_count == 8
        for _ in range(5):  # the ninth and later are refused at once, with a reason
            extra = Peer(lab, hello=False)
            assert extra.reply() == Disconnect("too many pending connections")
            assert extra.next() is None
            extra.close()
            lab.traffic()
        # A real client is refused too while the flood lasts, then gets in.
        with memif.Socket(lab.path, app_name="latecomer") as late:
            client = late.create_interface(role="client", id=0, reconnect_interval=0.1)
            lab.drive(lambda: client.remote_disc_reason == "too many pending connections",
                      2.0, late)  # fmt: skip
            clock.advance(0.49)
            for _ in range(3):  # just before the deadline, every handshake still holds
                lab.traffic()
                for p in peers:
                    p.pump()
            assert not any(p.eof for p in peers) and lab.ss.pending_count == 8
            assert client.remote_disc_reason == "too many pending connections"
            clock.now = start + 0.5

            def all_dropped() -> bool:
                for p in peers:
                    p.pump()
                return all(p.eof for p in peers)

            lab.drive(all_dropped, 30.0, late)
            for p in peers:
                assert p.frames[-1] == wire.encode(Disconnect("handshake timeout"))
                p.close()
            lab.drive(lambda: client.connected and lab.target.connected, 3.0, late)
        kit.close()
        lab.drive(lambda: not lab.target.connected)
        lab.others_untouched()
        assert_clean(lab, fds, maps)
        lab.fresh_client(0)
    finally:
        lab.close()


def test_pending_handshakes_hold_a_bounded_number_of_fds() -> None:
    lab = Lab(max_pending_fds=4)
    try:
        fds, maps = footprint().fds, shared_maps()
        kit = Kit()
        peer = Peer(lab)
        steps = [INIT0, REGION, S2M, ring(True, 1, offset=R), M2S]
        assert play(peer, kit, steps, lab) == Ack()  # four fds held: the limit
        assert peer.send(ring(False, 1)[0], [kit.make("eventfd")]) == Disconnect(
            "too many file descriptors pending"
        )
        assert peer.next() is None
        assert lab.target.local_disc_reason == "too many file descriptors pending"
        peer.close()
        kit.close()
        lab.others_untouched()
        assert_clean(lab, fds, maps)
        lab.fresh_client(0)  # a finished handshake's fds do not count
    finally:
        lab.close()


def test_max_pending_must_be_positive() -> None:
    with pytest.raises(memif.ConfigError):
        memif.Socket(unique_name(), max_pending=0)


# --------------------------------------------------------------------------- client side


class RawMaster:
    """A hand-driven master: accepts our client once, then says what it is told."""

    def __init__(self, path: str) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(transport.parse_address(path))
        self.listener.listen(1)
        self.conn: socket.socket | None = None
        self.frames: list[tuple[bytes, int]] = []  # what the client sent (data, number of fds)
        self.eof = False

    def accept(self, cs: memif.Socket) -> None:
        self.listener.setblocking(False)

        def accepted() -> bool:
            try:
                self.conn, _ = self.listener.accept()
            except BlockingIOError:
                return False
            return True

        assert drive(cs, until=accepted, timeout=3)
        self.listener.close()  # later attempts find nobody (and fail at once)
        assert self.conn is not None
        self.conn.setblocking(False)

    def pump(self) -> None:
        assert self.conn is not None
        if not self.eof:
            frames, self.eof = read_frames(self.conn)
            self.frames += frames

    def say(self, msg: wire.Message | bytes, fds: Sequence[int] = ()) -> None:
        data = msg if isinstance(msg, bytes) else wire.encode(msg)
        assert self.conn is not None
        send_frame(self.conn, data, fds)

    def wait(self, cs: memif.Socket, n: int | None = None, timeout: float = 3.0) -> None:
        """Drive the client until it sent ``n`` frames in all (or closed)."""

        def there() -> bool:
            self.pump()
            return self.eof or (n is not None and len(self.frames) >= n)

        assert drive(cs, until=there, timeout=timeout), (len(self.frames), n)

    def messages(self) -> list[wire.Message]:
        return [wire.decode(d) for d, _ in self.frames]

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


CLIENT_SETUP = 1 + 2 + 2 + 2  # INIT, two regions, two rings each way (client asks for 2 queues)


@dataclass
class ClientCase:
    script: list[tuple[wire.Message | bytes, int]]  # (message, frames to await after it)
    reason: str
    local: bool = True  # our client's reason (else the master's, received)
    fd_kinds: list[str] = field(default_factory=list)  # fds sent with the first message


HELLO = Hello(name="hostile-master")
CLIENT_CASES: dict[str, ClientCase] = {
    "HELLO min_version 2.1": ClientCase([(Hello(min_version=0x0201, max_version=0x0201), 1)],
                                        "incompatible protocol version"),
    "HELLO max_version 1.0": ClientCase([(Hello(min_version=0x0100, max_version=0x0100), 1)],
                                        "incompatible protocol version"),
    "HELLO log2 0": ClientCase([(Hello(max_log2_ring_size=0), 1)], "invalid ring size limit 2^0"),
    "HELLO max_region 0": ClientCase([(Hello(max_region=0), 1)],
                                     "master accepts 1 regions, 2 needed"),
    "HELLO with an fd": ClientCase([(HELLO, 1)], "unexpected file descriptor with HELLO",
                                   fd_kinds=["eventfd"]),
    "HELLO twice": ClientCase([(HELLO, 1), (HELLO, 2)], "unexpected message received (HELLO)"),
    "ACK first": ClientCase([(Ack(), 1)], "unexpected message received (ACK)"),
    "CONNECTED first": ClientCase([(Connected("m"), 1)],
                                  "unexpected message received (CONNECTED)"),
    "CONNECTED before CONNECT": ClientCase([(HELLO, 1), (Ack(), 2), (Connected("m"), 3)],
                                           "unexpected message received (CONNECTED)"),
    "INIT from the master": ClientCase([(HELLO, 1), (Init(0), 2)],
                                       "unexpected message received (INIT)"),
    "garbage": ClientCase([(b"\x02\x00junk", 1)], "malformed message: 6 bytes, expected 128"),
    "type 9": ClientCase([(HELLO, 1), (raw(9), 2)], "unknown message type (0x9)"),
    "ACKs out of lock-step": ClientCase(
        [(HELLO, 1), *[(Ack(), 0)] * (CLIENT_SETUP + 1), (Ack(), CLIENT_SETUP + 2)],
        "unexpected message received (ACK)"),
    "ACK after CONNECTED": ClientCase(
        [(HELLO, 1), *[(Ack(), n + 2) for n in range(CLIENT_SETUP)],
         (Connected("m"), CLIENT_SETUP + 1), (Ack(), CLIENT_SETUP + 2)],
        "unexpected message received (ACK)"),
    **{
        f"DISCONNECT after {n} ACKs": ClientCase(
            [(HELLO, 1), *[(Ack(), k + 2) for k in range(n)], (Disconnect(f"no {n}"), 0)],
            f"no {n}", local=False)
        for n in (0, 1, 3, CLIENT_SETUP)
    },
    "DISCONNECT first": ClientCase([(Disconnect("go away"), 0)], "go away", local=False),
    "DISCONNECT after CONNECTED": ClientCase(
        [(HELLO, 1), *[(Ack(), n + 2) for n in range(CLIENT_SETUP)],
         (Connected("m"), CLIENT_SETUP + 1), (Disconnect("later"), 0)], "later", local=False),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CLIENT_CASES))
def test_hostile_master_is_refused(name: str) -> None:
    case = CLIENT_CASES[name]
    path = unique_name("memif-fuzz-master")
    master = RawMaster(path)
    kit = Kit()
    with memif.Socket(path, app_name="fuzz-client") as cs:
        try:
            fds, maps = footprint().fds - 1, shared_maps()  # - the raw listener, closed by then
            client = cs.create_interface(
                role="client", id=0, rx_queues=2, tx_queues=2, ring_size=16,
                reconnect_interval=0.05, handshake_timeout=5.0,
            )  # fmt: skip
            master.accept(cs)
            for k, (msg, frames) in enumerate(case.script):
                master.say(msg, [kit.make(kind) for kind in case.fd_kinds] if k == 0 else [])
                if frames:
                    master.wait(cs, frames)
            master.wait(cs)  # until the client closes
            sent = master.messages()
            if case.local:
                assert sent[-1] == Disconnect(case.reason)
                assert client.local_disc_reason == case.reason
            else:
                assert not sent or not isinstance(sent[-1], Disconnect)  # nothing answers it
                assert client.remote_disc_reason == case.reason
            # fds go only with ADD_REGION (4) and ADD_RING (5)
            assert all(n == 0 for d, n in master.frames if d[0] not in (4, 5))
            assert not client.connected and client.state == "disconnected"
            master.close()
            kit.close()
            drive(cs, until=lambda: False, timeout=0.15)  # retries find nobody, hold nothing
            assert_clean_client(fds, maps)
            # The client recovers once a real server is there.
            with memif.Socket(path, app_name="real-server") as ss:
                server = ss.create_interface(role="server", id=0)
                assert drive(ss, cs, until=lambda: client.connected and server.connected)
                assert client.send([b"ok"]) == 1
                assert drive(ss, cs, until=lambda: server.recv() == [b"ok"])
        finally:
            master.close()
            kit.close()


def assert_clean_client(fds: int, maps: int) -> None:
    assert shared_maps() == maps or shared_maps(collect=True) == maps, "mapping leak"
    assert footprint().fds == fds, "fd leak"


def test_master_limits_of_zero_rings_give_one_queue_each_way() -> None:
    """HELLO max_*_ring 0 is a valid limit: index 0 only, so one ring per direction."""
    path = unique_name("memif-fuzz-master")
    master = RawMaster(path)
    with memif.Socket(path) as cs:
        try:
            client = cs.create_interface(role="client", id=0, rx_queues=3, tx_queues=3,
                                         ring_size=16, reconnect_interval=None)  # fmt: skip
            master.accept(cs)
            master.say(Hello(max_m2s_ring=0, max_s2m_ring=0, max_log2_ring_size=1))
            master.wait(cs, 1)
            n = 1
            while not isinstance(master.messages()[-1], Connect):
                master.say(Ack())
                n += 1
                master.wait(cs, n)
            rings = [m for m in master.messages() if isinstance(m, AddRing)]
            assert [(r.s2m, r.index, r.log2_size) for r in rings] == [(True, 0, 1), (False, 0, 1)]
            master.say(Connected("edge-master"))
            assert drive(cs, until=lambda: client.connected)
            assert len(client.tx_queues) == len(client.rx_queues) == 1
            assert client.rx_queues[0].ring.size == 2
            master.say(Disconnect("bye"))
            assert drive(cs, until=lambda: not client.connected)
            assert client.remote_disc_reason == "bye"
        finally:
            master.close()


def test_silent_master_times_out() -> None:
    path = unique_name("memif-fuzz-master")
    master = RawMaster(path)
    with memif.Socket(path) as cs:
        try:
            client = cs.create_interface(role="client", id=0, handshake_timeout=0.2,
                                         reconnect_interval=None)  # fmt: skip
            master.accept(cs)
            master.wait(cs)
            assert master.messages() == [Disconnect("handshake timeout")]
            assert client.local_disc_reason == "handshake timeout"
        finally:
            master.close()


def test_master_that_never_accepts_does_not_stall_the_client() -> None:
    path = unique_name("memif-fuzz-master")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(transport.parse_address(path))
    listener.listen(0)
    squatters = []
    try:
        for _ in range(3):  # fill the backlog
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_NONBLOCK)
            try:
                s.connect(transport.parse_address(path))
            except BlockingIOError:
                s.close()
                break
            squatters.append(s)
        with memif.Socket(path) as cs:
            client = cs.create_interface(role="client", id=0, reconnect_interval=None)
            t0 = time.monotonic()
            cs.poll(0)
            # a blocking connect would wait for the backlog forever: any bound shows it did not
            assert time.monotonic() - t0 < 10.0
            assert client.local_disc_reason.startswith("connect failed")
    finally:
        for s in squatters:
            s.close()
        listener.close()


# --------------------------------------------------------------------------- hypothesis

FD_KINDS = ["shm", "shm", "memfd", "memfd:100", "eventfd", "eventfd", "eventfd-blocking",
            "pipe", "socket", "devnull", "memfd-ro"]  # fmt: skip
CANON: list[tuple[wire.Message, list[str]]] = [
    (INIT0, []),
    (AddRegion(0, 2 * R), ["shm"]),
    (AddRing(True, 0, 0, 0, LOG2), ["eventfd"]),
    (AddRing(False, 0, 0, R, LOG2), ["eventfd"]),
    (Connect("fuzz"), []),
]
IDS = st.sampled_from([0, 0, 0, 1, 2, 3, U32 - 1])
INDEX = st.sampled_from([0, 0, 0, 1, 255, 256, 65535])
LOG2S = st.sampled_from([LOG2, LOG2, 0, 1, 14, 15, 255])
SIZES = st.sampled_from([2 * R, 2 * R, 0, 1, R, 2 * R + 1, U32, 1 << 63, (1 << 64) - 1])
OFFSETS = st.sampled_from([0, R, R, 8, 7, 2 * R, U32 - 8, U32 - 1])

messages = st.one_of(
    st.sampled_from([m for m, _ in CANON] + [Ack(), Hello(), Connected(), Disconnect("x")]),
    st.builds(Init, IDS, st.sampled_from(list(Mode)), st.sampled_from(["", "pw", "x" * 23]),
              st.just("h"), st.sampled_from([wire.VERSION, wire.VERSION, 0x0100, 0xFFFF])),
    st.builds(AddRegion, INDEX, SIZES),
    st.builds(AddRing, st.booleans(), INDEX, INDEX, OFFSETS, LOG2S, st.sampled_from([0, 0, 1])),
    st.builds(Connect, st.text(max_size=8).filter(lambda s: len(s.encode()) < 32)),
)  # fmt: skip


@st.composite
def frames(draw) -> bytes:
    """A message, possibly mutated: a few bytes changed, cut or extended; or noise."""
    how = draw(st.sampled_from(["as is", "as is", "as is", "flip", "cut", "extend", "noise"]))
    if how == "noise":
        return draw(st.binary(min_size=1, max_size=200))
    data = bytearray(wire.encode(draw(messages)))
    if how == "flip":
        for pos, val in draw(st.lists(st.tuples(st.integers(0, 127), st.integers(0, 255)),
                                      min_size=1, max_size=4)):  # fmt: skip
            data[pos] = val
    elif how == "cut":
        data = data[: draw(st.integers(1, 127))]
    elif how == "extend":
        data += draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


step_st = st.tuples(
    frames(),
    st.one_of(st.just([]), st.just([]), st.lists(st.sampled_from(FD_KINDS), min_size=1,
                                                 max_size=2)),
)  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(prefix=st.integers(0, len(CANON)), tail=st.lists(step_st, max_size=6))
def _random_sequence(lab: Lab, prefix: int, tail: list[tuple[bytes, list[str]]]) -> None:
    fds, maps = footprint().fds, shared_maps()
    kit = Kit()
    peer = Peer(lab)
    try:
        steps = [(wire.encode(m), kinds) for m, kinds in CANON[:prefix]] + tail
        for data, kinds in steps:
            if not peer.push(data, [kit.make(k) for k in kinds]):
                break
            answered = len(peer.frames)
            silent = len(data) == 128 and data[:2] == b"\x08\x00"
            frame = peer.next()
            if silent:  # nothing answers a DISCONNECT: it is a close
                assert frame is None
                break
            # Lock-step: exactly one answer, or the connection is over.
            assert frame is not None and len(peer.frames) == answered + 1
            msg = wire.decode(frame)
            assert isinstance(msg, Ack | Connected | Disconnect), msg
            if isinstance(msg, Disconnect):
                assert msg.reason
                assert peer.next() is None  # and the server closed
                event(f"refused: {msg.reason.split(':')[0]}")
                break
            if isinstance(msg, Connected):
                event("connected")
        if not peer.eof:
            [conn] = [c for c in lab.ss.connections() if c.interface is not lab.healthy_srv]
            assert conn.phase in (Phase.HANDSHAKE.value, Phase.CONNECTED.value)
            assert lab.target.connected == (conn.phase == Phase.CONNECTED.value)
        lab.traffic()
    finally:
        peer.close()
        kit.close()
    lab.drive(lambda: len(lab.ss.connections()) == 1)
    assert not lab.target.connected and not lab.secret_srv.connected
    lab.traffic()
    lab.others_untouched()
    assert_clean(lab, fds, maps)


@pytest.mark.slow
def test_random_message_sequences(lab: Lab) -> None:
    """Random mixes of valid and mutated messages with random fds, over a real socket."""
    _random_sequence(lab)
    lab.fresh_client(0)
