"""Queues after their connection ends: every call raises ``memif.NotConnectedError``.

Real peers over real sockets and shared memory: an in-process peer (``memif.testing``)
or a peer process killed with SIGKILL.  For both roles, every public method of the
receive and transmit queues, and of batches held across the teardown, raises
NotConnectedError naming the queue, never a raw Python error; after a reconnect the
interface's new queues carry packets.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest

import memif
from memif import NotConnectedError, testing
from memif.queue import RxBatch, RxQueue, TxBatch, TxQueue, row_items

pytestmark = pytest.mark.slow  # see the slow marker in pyproject.toml

PACKET = bytes(range(64))
SENT = 4  # packets the peer sends right after connecting
ROLES = ("server", "client")
#: how a connection ends: the peer closes its socket, the peer process is killed,
#: the local side disconnects, the local interface is deleted
ENDINGS = ("peer_closes", "peer_killed", "local_disconnect", "delete")
GONE = re.compile(r"^(rx|tx) queue 0 of \S+: the interface disconnected \(.+\)$")

# A peer process: connects with the library, sends SENT packets, says "up", then
# prints each packet it receives (hex, one a line) until it is killed.
PEER = f"""
import sys, memif
sock = memif.Socket(sys.argv[2], app_name="killed-peer")
iface = sock.create_interface(role=sys.argv[1])
while not iface.connected:
    sock.poll(0.01)
sent = 0
while sent < {SENT}:  # a server may be up before its client posted receive buffers
    sent += iface.send([{PACKET!r}] * ({SENT} - sent))
    sock.poll(0.01)
print("up", flush=True)
while True:
    sock.poll(0.01)
    for packet in iface.recv() if iface.connected else []:
        print(packet.hex(), flush=True)
"""


@pytest.fixture(params=ROLES)
def role(request: pytest.FixtureRequest) -> str:
    """The local interface's role; the peer takes the other."""
    return str(request.param)


def other(role: str) -> str:
    return "client" if role == "server" else "server"


@dataclass
class Link:
    """A connected local interface and how to end (``cut``) its connection."""

    iface: memif.Interface
    cut: Callable[[], None]
    reconnect: Callable[[], None]
    received: Callable[[int], list[bytes]]  # the next n packets the peer received

    @property
    def sock(self) -> memif.Socket:
        return self.iface.socket

    def end(self) -> None:
        """Cut the connection and poll until the local side has noticed."""
        self.cut()
        assert testing.drive(self.sock, until=lambda: not self.iface.connected)


def start_peer(role: str, path: str, procs: list[subprocess.Popen]) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", PEER, role, path], stdout=subprocess.PIPE, text=True
    )
    procs.append(proc)
    return proc


def connect_to_peer(iface: memif.Interface, proc: subprocess.Popen) -> None:
    """Poll until connected to ``proc``, then wait for its packets to be sent."""
    assert testing.drive(iface.socket, until=lambda: iface.connected, timeout=20)
    assert proc.stdout is not None and proc.stdout.readline() == "up\n"


@contextlib.contextmanager
def link(role: str, ending: str) -> Iterator[Link]:
    """A local ``role`` interface connected to a peer that sent it SENT packets."""
    if ending == "peer_killed":
        yield from _link_to_process(role)
    else:
        yield from _link_in_process(role, ending)


def _link_to_process(role: str) -> Iterator[Link]:
    path, procs = testing.unique_name(), []
    try:
        with memif.Socket(path, app_name="local") as sock:
            iface = sock.create_interface(role=role)
            connect_to_peer(iface, start_peer(other(role), path, procs))

            def cut() -> None:
                procs[-1].kill()
                procs[-1].wait()

            def reconnect() -> None:
                connect_to_peer(iface, start_peer(other(role), path, procs))

            def received(n: int) -> list[bytes]:
                out = procs[-1].stdout
                assert out is not None
                return [bytes.fromhex(out.readline()) for _ in range(n)]

            yield Link(iface, cut, reconnect, received)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _link_in_process(role: str, ending: str) -> Iterator[Link]:
    with testing.pair() as (server, client):
        local, peer = (server, client) if role == "server" else (client, server)
        peers = [peer]

        def cut() -> None:
            if ending == "peer_closes":
                peer.socket.close()
            elif ending == "local_disconnect":
                local.disconnect()
            else:
                local.delete()

        def reconnect() -> None:
            if ending == "peer_closes":  # a new peer on the same socket path
                sock = memif.Socket(local.socket.path, app_name="new-peer")
                peers.append(sock.create_interface(role=other(role)))
            new = peers[-1]
            assert testing.drive(
                local.socket, new.socket, until=lambda: local.connected and new.connected
            )
            assert new.send([PACKET] * SENT) == SENT

        def received(n: int) -> list[bytes]:
            rxq = peers[-1].rx_queues[0]
            assert testing.drive(local.socket, peers[-1].socket, until=lambda: rxq.pending() >= n)
            return peers[-1].recv(n)

        assert peer.send([PACKET] * SENT) == SENT
        try:
            yield Link(local, cut, reconnect, received)
        finally:
            for extra in peers[1:]:
                extra.socket.close()


def outcome(call: Callable[[], object]) -> str:
    """What a call did: "NotConnectedError" (with the expected message), else what."""
    try:
        call()
    except NotConnectedError as exc:
        return "NotConnectedError" if GONE.match(str(exc)) else f"NotConnectedError({exc})"
    except Exception as exc:  # noqa: BLE001 - any other error is the finding
        return f"{type(exc).__name__}: {exc}"
    return "returned"


def rx_calls(q: RxQueue) -> dict[str, Callable[[], object]]:
    """Every public method and property of a receive queue."""
    return {
        "fd": lambda: q.fd,
        "size": lambda: q.size,
        "polling": lambda: q.polling,
        "polling=": lambda: setattr(q, "polling", True),
        "clear_interrupt": q.clear_interrupt,
        "wait": lambda: q.wait(0),
        "cursor": lambda: q.cursor,
        "pending": q.pending,
        "ready": q.ready,
        "rx_burst": q.rx_burst,
        "refill": q.refill,
        "free_to_post": q.free_to_post,
        "refill_from": lambda: q.refill_from(0, np.zeros(1, np.uint32), 64),
        "recv": q.recv,
    }


def tx_calls(q: TxQueue, batch: TxBatch) -> dict[str, Callable[[], object]]:
    """Every public method and property of a transmit queue."""
    rows = np.zeros((1, 64), np.uint8)
    return {
        "fd": lambda: q.fd,
        "size": lambda: q.size,
        "free_slots": q.free_slots,
        "alloc": lambda: q.alloc(1),
        "alloc wrap": lambda: q.alloc(1, wrap=True),
        "tx_burst": lambda: q.tx_burst(batch, 64),
        "tx_burst none": lambda: q.tx_burst(batch, 64, count=0),
        "tx_chained": lambda: q.tx_chained(rows, np.zeros(1, np.intp), np.array([64])),
        "in_flight": lambda: q.in_flight,
        "reclaim": q.reclaim,
        "tx_zero_copy": lambda: q.tx_zero_copy(0, np.zeros(1, np.uint32), 64),
        "send": lambda: q.send([PACKET]),
        "send nothing": lambda: q.send([]),
    }


def batch_calls(rx: RxBatch, tx: TxBatch) -> dict[str, Callable[[], object]]:
    """What reads or writes a batch's packets in shared memory."""
    into = row_items(np.zeros((len(rx), 64), np.uint8), 64)
    source = row_items(np.zeros((1, 8), np.uint8), 8)
    return {
        "rx.runs": lambda: rx.runs,
        "rx.matrix": lambda: rx.matrix,
        "rx.segments": lambda: rx.segments(0),
        "rx[0]": lambda: rx[0],
        "rx.tolist": rx.tolist,
        "rx.copy_into": lambda: rx.copy_into(into, np.arange(len(rx))),
        "rx.gather": rx.gather,
        "tx.buffer": lambda: tx.buffer(0),
        "tx.fill": lambda: tx.fill(np.zeros((1, 8), np.uint8)),
        "tx.copy_from": lambda: tx.copy_from(source, np.arange(1)),
    }


def held(iface: memif.Interface) -> tuple[RxQueue, TxQueue, RxBatch, TxBatch]:
    """Queue 0 of each direction, the peer's packets taken (not given back) and
    transmit buffers handed out (not published)."""
    rxq, txq = iface.rx_queues[0], iface.tx_queues[0]
    assert testing.drive(iface.socket, until=lambda: rxq.pending() >= SENT)
    rx, tx = rxq.rx_burst(SENT), txq.alloc(SENT)
    assert rx.tolist() == [PACKET] * SENT and len(tx) > 0
    return rxq, txq, rx, tx


@pytest.mark.parametrize("ending", ENDINGS)
def test_every_queue_and_batch_call_after_teardown_raises_not_connected(
    role: str, ending: str
) -> None:
    with link(role, ending) as conn:
        rxq, txq, rx, tx = held(conn.iface)
        assert rxq.connected and txq.connected
        conn.end()
        assert not rxq.connected and not txq.connected
        calls = {**rx_calls(rxq), **tx_calls(txq, tx), **batch_calls(rx, tx)}
        assert {name: outcome(call) for name, call in calls.items()} == dict.fromkeys(
            calls, "NotConnectedError"
        )
        # what was counted stays readable, and so does what the batch copied out
        assert rxq.stats.packets == SENT and rx.count == SENT and rx.nbytes == SENT * 64
        assert isinstance(conn.iface.details(), memif.InterfaceDetails)


@pytest.mark.parametrize("ending", ["peer_closes", "peer_killed"])
def test_natural_loop_ends_with_not_connected_error(role: str, ending: str) -> None:
    """``while iface.connected: sock.poll(0); txq.alloc(64)`` when ``poll`` handles
    the peer's departure: NotConnectedError (or the loop's own condition), no ValueError."""
    with link(role, ending) as conn:
        rxq, txq = conn.iface.rx_queues[0], conn.iface.tx_queues[0]
        conn.cut()
        deadline = time.monotonic() + 20  # a guard against a hang, not a measurement
        with contextlib.suppress(NotConnectedError):
            while conn.iface.connected and time.monotonic() < deadline:
                conn.sock.poll(0)
                txq.alloc(64)
                if len(rxq.rx_burst(64)):
                    rxq.refill()
        assert not conn.iface.connected


@pytest.mark.parametrize("ending", ["peer_closes", "peer_killed", "local_disconnect"])
def test_after_reconnect_the_new_queues_work_and_the_old_still_raise(
    role: str, ending: str
) -> None:
    with link(role, ending) as conn:
        old_rx, old_tx, _, _ = held(conn.iface)
        conn.end()
        conn.reconnect()
        rxq, txq, rx, tx = held(conn.iface)
        assert rxq is not old_rx and txq is not old_tx and rxq.connected and txq.connected
        tx.fill(np.frombuffer(PACKET, np.uint8)[None, :])
        assert txq.tx_burst(tx, len(PACKET), count=1) == 1 and txq.send([PACKET[::-1]]) == 1
        assert conn.received(2) == [PACKET, PACKET[::-1]]
        assert rxq.refill() >= 0 and rxq.pending() == 0
        for call in (old_rx.rx_burst, old_tx.free_slots, lambda: old_tx.send([PACKET])):
            assert outcome(call) == "NotConnectedError"
