"""The rig of the isolation tests (issue 15): honest traffic through a real memifd while
a hostile peer attacks it (what the attack costs memifd is :mod:`memifd_probe`'s).

* the peers: :class:`Peers` (memif sockets pumped from this thread) and :class:`Legit`,
  two honest ports a and b exchanging unicast: :meth:`Legit.exchange` as a health check
  between attack steps, or :func:`run_for` with paced a -> b bursts, measuring loss and
  the longest gap while an attack step (:class:`Flood`, :class:`Paced`, or the test's
  own) runs each turn;
* memifd started with a, b and a hostile port: :func:`bridged_ports`,
  :func:`start_ports`, :func:`start_with_hostile_peer`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from helpers import Memifd, drain, mac

import memif
from memif import packet
from memif.testing import drive, unique_name

A, B, BAD = "memif1/0", "memif2/0", "memif3/0"
"""Ports a, b and the hostile one of :func:`bridged_ports` (a, b, hostile)."""


# --------------------------------------------------------------------------- the peers
class Peers:
    """memif sockets of this process, pumped from this thread."""

    def __init__(self) -> None:
        self.sockets: list[memif.Socket] = []

    def open(self, name: str, app: str) -> memif.Socket:
        """A new socket on ``name``, pumped with the others."""
        self.sockets.append(memif.Socket(name, app_name=app))
        return self.sockets[-1]

    def add(self, name: str, app: str, role: str = "client", **options: object) -> memif.Interface:
        """Interface 0 of a new socket on ``name``."""
        sock = self.open(name, app)
        return sock.create_interface(role=role, id=0, reconnect_interval=0.1, **options)

    def poll(self) -> None:
        for s in self.sockets:
            s.poll(0)

    def drive(self, until: Callable[[], bool], timeout: float) -> bool:
        """Poll every socket until ``until()`` or ``timeout``; returns ``until()``."""
        return drive(*self.sockets, until=until, timeout=timeout)

    def pump(self, until: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
        """Poll every socket until ``until()``; fail naming ``what`` after ``timeout``."""
        assert self.drive(until, timeout), f"timed out waiting for {what}"

    def close(self) -> None:
        for s in self.sockets:
            s.close()


def frame(dst: bytes, src: bytes, tag: int, size: int = 64) -> bytes:
    """A ``size``-byte Ethernet frame carrying ``tag`` (see :func:`tag_of`)."""
    return packet.ethernet(dst, src, 0x88B5, tag.to_bytes(4, "big").ljust(size - 14, b"."))


def tag_of(f: bytes) -> int:
    return int.from_bytes(f[14:18], "big")


class Legit:
    """Honest unicast between memifd ports a (MAC ``mac(1)``) and b (``mac(2)``),
    pumped with ``peers``, while a hostile peer attacks another port.

    Two uses: :meth:`exchange` sends a few frames each way and waits for them (a health
    check between attack steps); :meth:`burst` and :meth:`drain` (:func:`run_for`'s
    loop) pace a -> b and record when each frame arrives, for :attr:`loss` and
    :meth:`longest_gap`.
    """

    def __init__(self, peers: Peers, a: memif.Interface, b: memif.Interface) -> None:
        self.peers, self.a, self.b = peers, a, b
        self.sent = self.tried = 0  # a -> b bursts: frames taken by a's ring, frames tried
        self.got: list[int] = []  # tags of the bursts' frames b received
        self.arrivals: list[float] = []  # when each arrived

    @classmethod
    def connect(cls, peers: Peers, a: memif.Interface, b: memif.Interface) -> Legit:
        """Wait until a and b are connected, then :meth:`learn`."""
        peers.pump(lambda: a.connected and b.connected, "a and b connected")
        legit = cls(peers, a, b)
        legit.learn()
        return legit

    @property
    def up(self) -> bool:
        return self.a.connected and self.b.connected

    def learn(self) -> None:
        """a and b announce their MACs, so a <-> b is unicast."""
        self.b.send([frame(packet.BROADCAST, mac(2), 0)])
        self.a.send([frame(packet.BROADCAST, mac(1), 0)])
        heard: set[int] = set()

        def both() -> bool:
            heard.update(k for k, who in enumerate((self.a, self.b)) if who.recv())
            return len(heard) == 2

        self.peers.pump(both, "learning")

    def exchange(self, n: int = 32, timeout: float = 5.0) -> int:
        """``n`` frames each way, waited for (``timeout`` at most); how many arrived."""
        if not self.up:
            return 0
        sent = self.a.send([frame(mac(2), mac(1), k) for k in range(n)])
        sent += self.b.send([frame(mac(1), mac(2), k) for k in range(n)])
        got = 0

        def arrived() -> bool:
            nonlocal got
            if self.up:
                got += sum(f[:6] == mac(2) for f in self.b.recv())
                got += sum(f[:6] == mac(1) for f in self.a.recv())
            return got >= sent

        self.peers.drive(arrived, timeout)
        return got

    def burst(self, n: int) -> None:
        """``n`` frames a -> b, tagged in order."""
        frames = [frame(mac(2), mac(1), self.tried + k) for k in range(n)]
        self.tried += n
        self.sent += self.a.send(frames)

    def drain(self) -> None:
        """Take what a and b received; record the bursts' frames that reached b."""
        drain(self.a)
        for f in drain(self.b):
            if f[:6] == mac(2):
                self.got.append(tag_of(f))
                self.arrivals.append(time.monotonic())

    @property
    def loss(self) -> float:
        return 1.0 - len(self.got) / max(self.tried, 1)

    def longest_gap(self, start: float) -> float:
        """The longest time without an arrival, from ``start`` (:func:`run_for`'s)."""
        times = [start, *self.arrivals]
        return max(np.diff(times)) if len(times) > 1 else float("inf")

    def report(self, start: float) -> str:
        """Delivered, loss and longest gap since ``start``, for a test's printout."""
        return (
            f"a->b {len(self.got)}/{self.tried} delivered (loss {self.loss:.1%}), "
            f"longest gap {self.longest_gap(start) * 1000:.0f} ms"
        )


def run_for(seconds: float, legit: Legit, attack: Callable[[], None]) -> float:
    """``seconds`` of a -> b bursts (8 frames every 2 ms), ``attack`` each turn; then
    wait for the stragglers.  Returns when the traffic started."""
    t0 = time.monotonic()
    next_burst = t0
    while time.monotonic() - t0 < seconds:
        now = time.monotonic()
        if now >= next_burst:
            legit.burst(8)
            next_burst = now + 0.002
        attack()
        legit.peers.poll()
        legit.drain()
    end = time.monotonic() + 3.0
    while len(legit.got) < legit.sent and time.monotonic() < end:
        legit.peers.poll()
        legit.drain()
    return t0


# --------------------------------------------------------------------------- attack steps
class Flood:
    """An attack step for :func:`run_for`: the next ``chunk`` of ``frames`` from the
    hostile peer ``port`` (as many as its ring takes), and whatever it received thrown
    away."""

    def __init__(self, port: memif.Interface, frames: list[bytes], chunk: int) -> None:
        self.port, self.frames, self.chunk = port, frames, chunk
        self.sent = 0

    def __call__(self) -> None:
        if self.sent < len(self.frames):
            self.sent += self.port.send(self.frames[self.sent : self.sent + self.chunk])
        self.port.recv()


class Paced:
    """An attack step for :func:`run_for`: ``frames`` from ``port`` every ``every``
    seconds (a -> b's pace); :attr:`sent` counts what its ring took."""

    def __init__(self, port: memif.Interface, frames: list[bytes], every: float = 0.002) -> None:
        self.port, self.frames, self.every = port, frames, every
        self.sent = 0
        self.due = time.monotonic()

    def __call__(self) -> None:
        if time.monotonic() >= self.due:
            self.sent += self.port.send(self.frames)
            self.due += self.every


# --------------------------------------------------------------------------- memifd with a, b
def bridged_ports(*sockets: str, more: tuple[str, ...] = ()) -> list[str]:
    """memifd startup: master port memif<k>/0 on socket ``k`` (from 1) for each name,
    bridged in bd 1, admin-up; then ``more``."""
    lines = []
    for k, name in enumerate(sockets, 1):
        lines += [
            f"create memif socket id {k} filename {name}",
            f"create interface memif id 0 socket-id {k} master",
            f"set interface l2 bridge memif{k}/0 1",
            f"set interface state memif{k}/0 up",
        ]
    return ["create bridge-domain 1 learn 1", *lines, *more]


def start_ports(
    start: Callable[..., Memifd], *, hostile_first: bool = False, hostile_uid: int = 0
) -> tuple[Memifd, Peers, Legit, str]:
    """memifd with ports a, b (connected, MACs learned) and one for a hostile peer,
    whose socket admits ``hostile_uid``; returns the hostile socket's name."""
    a_name, b_name, bad_name = (unique_name(f"iso-{k}") for k in "ab!")
    order = [bad_name, a_name, b_name] if hostile_first else [a_name, b_name, bad_name]
    lines = bridged_ports(*order)
    if hostile_uid:
        at = lines.index(f"create memif socket id {order.index(bad_name) + 1} filename {bad_name}")
        lines[at] += f" allow-uid {hostile_uid}"
    d = start(lines)
    peers = Peers()
    legit = Legit.connect(peers, peers.add(a_name, "peer-a"), peers.add(b_name, "peer-b"))
    return d, peers, legit, bad_name


def start_with_hostile_peer(
    start: Callable[..., Memifd], *, hostile_first: bool = False, **bad_options: object
) -> tuple[Memifd, Peers, Legit, memif.Interface, str]:
    """memifd with ports a, b and a hostile one (created first: polled first each turn,
    or last: memif3/0), every peer connected, the hostile one in this process with
    ``bad_options``; returns the hostile port's name too."""
    d, peers, legit, bad_name = start_ports(start, hostile_first=hostile_first)
    bad = peers.add(bad_name, "hostile", **bad_options)
    peers.pump(lambda: bad.connected, "hostile connected")
    return d, peers, legit, bad, "memif1/0" if hostile_first else BAD
