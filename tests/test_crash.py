"""Crashes: the peer process dies by SIGKILL in the middle of traffic.

The peer is a real process: ``memif gen`` started as a subprocess, or a forked child
that connects with the library (cheap enough for a thousand cycles).  After every kill
the survivor must notice the disconnect by the EOF on the control socket itself (its
socket's clock is held still meanwhile, so no timer can be what noticed it), give back
every fd and mapping of the connection (``/proc/self/fd`` and ``/proc/self/maps`` are
counted), and carry on: a client reconnects by itself when its server comes back, and a
switch keeps forwarding between its other ports while one port's peer is killed again and
again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable

import pytest
from clocks import StoppableClock
from footprint import footprint
from helpers import mac, memif_popen

import memif
from memif import packet
from memif.testing import drive, unique_name
from memif.vswitch import Switch

pytestmark = pytest.mark.slow  # see the slow marker in pyproject.toml

NOTICE = 30.0
"""Seconds a condition wait gives a dead peer to be noticed; generous, as the proof of
promptness is not a wall-clock bound (a loaded machine can stall any process) but that the
hangup itself is what noticed it: the socket's clock is stopped meanwhile (no timer can fire)
and the reason is the one only EOF on the control socket gives."""


# --------------------------------------------------------------------------- helpers


def same_counts(before: tuple[int, int, int], after: tuple[int, int, int]) -> bool:
    """No fd and no memfd mapping more; the allocator may move a map line or two."""
    return after[0] <= before[0] and after[2] <= before[2] and after[1] <= before[1] + 2


def gen(*args: str) -> subprocess.Popen:
    """``memif gen`` in its own process (quiet, waiting up to 20 s for its peer)."""
    null = subprocess.DEVNULL
    return memif_popen(
        "gen", *args, "--quiet", "--connect-timeout", "20", stdin=null, stdout=null, stderr=null
    )


def kill(proc: subprocess.Popen | int) -> None:
    """SIGKILL the peer and reap it: its every fd is closed when this returns."""
    if isinstance(proc, int):
        os.kill(proc, signal.SIGKILL)
        os.waitpid(proc, 0)
    else:
        proc.kill()
        proc.wait()


def noticed(sockets: list[memif.Socket], iface: memif.Interface, clock: StoppableClock) -> None:
    """Drive until ``iface`` is down with the sockets' clock stopped (no timer of theirs can
    fire, only the hangup can bring it down); the peer's EOF is the reason it gives."""
    clock.stop()
    try:
        assert drive(*sockets, until=lambda: not iface.connected, timeout=NOTICE), "never noticed"
    finally:
        clock.run()
    assert iface.remote_disc_reason == "connection closed by peer", iface.remote_disc_reason


@pytest.fixture
def procs():
    """Subprocesses to kill at the end whatever happens."""
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


# --------------------------------------------------------------------------- a gen peer


def test_server_survives_killed_clients(procs) -> None:
    """``memif gen txonly`` clients killed mid-traffic, twice; the server takes the next."""
    path = unique_name("crash")
    clock = StoppableClock()
    with memif.Socket(path, app_name="survivor", clock=clock) as ss:
        server = ss.create_interface(role="server", id=0, ring_size=256)
        before = footprint()
        for round_ in range(2):
            procs.append(gen("txonly", "--socket", path, "--role", "client", "--ring-size", "256"))
            got = 0

            def traffic() -> bool:
                nonlocal got
                if server.connected:
                    got += len(server.recv())
                return got >= 2000

            assert drive(ss, until=traffic, timeout=20), f"round {round_}: {got} packets"
            assert footprint()[2] > before[2]  # the client's regions are mapped now
            kill(procs[-1])
            noticed([ss], server, clock)
            assert server.regions == [] and server.rx_queues == []
            after = footprint()
            assert same_counts(before, after), (before, after)
        assert server.connect_count == 2


def test_client_survives_killed_servers_and_reconnects(procs, tmp_path) -> None:
    """``memif gen rxonly`` servers killed mid-traffic (their socket file left behind)."""
    path = str(tmp_path / "memif.sock")
    frames = [packet.ethernet(b"\x02" * 6, b"\x04" * 6, 0x88B5, bytes(50))] * 64
    clock = StoppableClock()
    with memif.Socket(path, app_name="survivor", clock=clock) as cs:
        client = cs.create_interface(role="client", id=0, ring_size=256, reconnect_interval=0.1)
        drive(cs, until=lambda: client.local_disc_reason.startswith("connect failed"))
        before = footprint()
        for round_ in range(3):
            procs.append(gen("rxonly", "--socket", path, "--role", "server"))
            assert drive(cs, until=lambda: client.connected, timeout=20), client.local_disc_reason
            if round_:
                # it reconnected by itself, soon after the new server started listening
                assert client.connect_count == round_ + 1
            sent = 0

            def traffic() -> bool:
                nonlocal sent
                sent += client.send(frames)
                return sent >= 5000 and client.tx_queues[0].in_flight < 256

            assert drive(cs, until=traffic, timeout=20), f"round {round_}: {sent} sent"
            kill(procs[-1])
            noticed([cs], client, clock)
            assert os.path.exists(path)  # the dead server's socket file stays behind
            after = footprint()
            assert same_counts(before, after), (before, after)


# --------------------------------------------------------------------------- the switch


# c's peer: a generator at 20 kpps whose frames (unknown destination) are flooded to a and b
# c's peer sends to its own MAC: l2-fwd drops its frames as "filtered" once the first one is
# learned, so a and b see no flood of c's that a loaded test process could fail to drain in time
# (a full ring there would be a tx error of the switch's that says nothing about a and b).
C_PEER = ("--role", "client", "--id", "3", "--ring-size", "256", "--rate", "20000",
          "--src-mac", "02:00:00:00:00:33", "--dst-mac", "02:00:00:00:00:33")  # fmt: skip


def test_switch_keeps_forwarding_while_a_peer_is_killed_repeatedly(procs, tmp_path) -> None:
    """Ports a and b forward both ways, exactly, while c's peer process is killed 4 times."""
    sw = Switch(str(tmp_path / "run"), n_buffers=4096, data_size=2048)
    path = unique_name("crash-sw")
    peers = memif.Socket(path, app_name="peers")
    try:
        sw.add_fd(peers.fileno(), lambda: peers.poll(0))
        sw.create_socket(1, path)
        ports = {}
        for i, name in enumerate(("a", "b", "c"), 1):
            s = sw.create_memif(id=i, socket_id=1, role="master", ring_size=256)
            sw.set_state(s.name, True)
            sw.set_bridge(s.name, 1)
            ports[name] = s
        a = peers.create_interface(role="client", id=1, mac=mac(1), ring_size=256)
        b = peers.create_interface(role="client", id=2, mac=mac(2), ring_size=256)

        def turn(until: Callable[[], bool], timeout: float = 20.0) -> None:
            end = time.monotonic() + timeout
            while not until():
                assert time.monotonic() < end, "timed out"
                forward()

        sent: dict[str, list[bytes]] = {"a": [], "b": []}
        got: dict[str, list[bytes]] = {"a": [], "b": []}
        seq = 0

        def forward() -> None:
            """One turn: a burst each way between a and b, the switch, the peers."""
            nonlocal seq
            if all(p.link_up for p in (ports["a"], ports["b"])) and a.connected and b.connected:
                for src, me, dst in (("a", a, 2), ("b", b, 1)):
                    burst = [
                        packet.ethernet(mac(dst), mac(3 - dst), 0x88B5, f"{src}{seq + k}".encode())
                        for k in range(16)
                    ]
                    if me.send(burst) == 16:
                        sent[src] += burst
                seq += 16
            sw.run_once()
            peers.poll(0)
            for name, me, own in (("a", a, mac(1)), ("b", b, mac(2))):
                while me.connected and (more := me.recv()):
                    got[name] += [f for f in more if f[:6] == own]  # not c's floods

        turn(lambda: a.connected and b.connected and ports["a"].link_up and ports["b"].link_up)
        before = footprint()
        c_port = sw.ports[ports["c"].sw_if_index]
        after: list[tuple[int, int, int]] = []
        for _ in range(4):
            rx0 = ports["c"].counters.rx_packets
            procs.append(gen("txonly", *C_PEER, "--socket", path))
            turn(lambda rx0=rx0: ports["c"].link_up and ports["c"].counters.rx_packets > rx0 + 500)
            kill(procs[-1])
            turn(lambda: not ports["c"].link_up, timeout=NOTICE)
            # the reason only EOF on the control socket gives: the hangup noticed it
            assert c_port.iface.remote_disc_reason == "connection closed by peer"
            delivered = len(got["b"])
            for _ in range(20):  # more traffic with c gone
                forward()
            assert len(got["b"]) > delivered
            after.append(footprint())
        # No fd and no memfd mapping more after any kill.  Other map lines come and go with
        # the allocator (+-3 over four kills); the 1000-cycle test below counts them.
        for fds, _, memfds in after:
            assert fds <= before[0] and memfds <= before[2], (before, after)
        # Every frame between a and b arrived, in order, through all four kills.
        turn(lambda: len(got["b"]) == len(sent["a"]) and len(got["a"]) == len(sent["b"]))
        assert got["b"] == sent["a"] and got["a"] == sent["b"]
        assert len(sent["a"]) > 1000
        for name in ("a", "b"):
            assert ports[name].counters.tx_errors == 0
        assert sw.pool.n_free == sw.pool.n_buffers  # nothing stuck in the switch
    finally:
        sw.close()
        sw.remove_fd(peers.fileno())
        peers.close()


# --------------------------------------------------------------------------- many cycles


def _child(body: Callable[[], None]) -> int:
    """Fork a peer running ``body`` until it is killed; it never returns into pytest."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            body()
        finally:
            os._exit(1)
    return pid


def _client_peer(path: str) -> None:
    with memif.Socket(path, app_name="doomed") as s:
        iface = s.create_interface(role="client", id=0, ring_size=64, reconnect_interval=0.01)
        frame = [bytes(60)] * 16
        while True:
            s.poll(0.001)
            if iface.connected:
                iface.send(frame)


def _server_peer(path: str) -> None:
    with memif.Socket(path, app_name="doomed") as s:
        iface = s.create_interface(role="server", id=0)
        while True:
            s.poll(0.001)
            if iface.connected:
                iface.recv()


@pytest.mark.parametrize(("role", "cycles"), [("server", 1000), ("client", 1000)])
def test_connect_kill_cycles(role: str, cycles: int) -> None:
    """A peer process connects, moves packets and is SIGKILLed, ``cycles`` times.

    ``role`` is ours: a server sees a new client process each cycle, a client
    reconnects to a new server process each cycle.
    """
    path = unique_name("cycles")
    clock = StoppableClock()
    with memif.Socket(path, app_name="survivor", clock=clock) as sock:
        if role == "server":
            iface = sock.create_interface(role="server", id=0)
            peer = _client_peer
        else:
            iface = sock.create_interface(
                role="client", id=0, ring_size=64, reconnect_interval=0.001
            )
            peer = _server_peer
        frame = [bytes(60)] * 8
        checkpoints = []
        t0 = time.monotonic()
        for k in range(cycles + 20):  # 20 warm-up cycles: imports, caches, arenas
            if k >= 20 and (k - 20) % 100 == 0:
                checkpoints.append(footprint())
            pid = _child(lambda: peer(path))
            sent = 0

            def traffic() -> bool:
                nonlocal sent
                if not iface.connected:
                    return False
                if role == "server":
                    return len(iface.recv()) > 0
                if not sent:
                    sent = iface.send(frame)
                return sent > 0 and iface.tx_queues[0].in_flight == 0  # the peer took them

            try:
                assert drive(sock, until=traffic, timeout=NOTICE), f"cycle {k}"
            finally:
                kill(pid)
            if k == 20:
                assert footprint()[2] > 0  # the connection's memory is mapped
            noticed([sock], iface, clock)
        checkpoints.append(footprint())
        took = time.monotonic() - t0
    fds = [c[0] for c in checkpoints]
    maps = [c[1] for c in checkpoints]
    memfds = [c[2] for c in checkpoints]
    assert max(fds) == fds[0] and max(memfds) == memfds[0] == 0, checkpoints
    assert max(maps) <= maps[0] + 2, checkpoints  # no growth, give or take an arena
    assert iface.connect_count == cycles + 20
    print(f"{role}: {cycles} cycles in {took:.1f} s, fds every 100 cycles {fds}, maps {maps}")
