"""Python server <-> Python client over real sockets, real shared memory, real eventfds.

Every test builds its endpoints with :class:`memif.Socket` (or ``memif.testing.pair``),
drives the control planes with ``memif.testing.drive`` and checks what arrives byte for
byte.  Nothing is mocked.
"""

from __future__ import annotations

import array
import os
import select
import socket
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from clocks import ManualClock
from footprint import footprint

import memif
from memif import transport, wire
from memif.testing import drive, pair, unique_name

U16 = 0x10000


# --------------------------------------------------------------------------- helpers


def readable(fd: int, timeout: float = 0.0) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def eof_collector(raw: socket.socket, frames: list[bytes]):
    """An ``until`` for drive(): gather what a raw socket receives, true at EOF."""
    raw.setblocking(False)

    def at_eof() -> bool:
        try:
            frames.append(raw.recv(256))
        except BlockingIOError:
            return False
        return frames[-1] == b""

    return at_eof


def receive(iface: memif.Interface, n: int, queue: int = 0, timeout: float = 5.0) -> list[bytes]:
    """Receive (and refill) until ``n`` packets arrived on ``queue``; fail on timeout."""
    got: list[bytes] = []

    def enough() -> bool:
        got.extend(iface.recv(queue=queue))
        return len(got) >= n

    assert drive(iface.socket, until=enough, timeout=timeout), f"got {len(got)} of {n}"
    return got


def roundtrip(server: memif.Interface, client: memif.Interface, tag: bytes = b"") -> None:
    """One packet each way, checked."""
    up, down = b"up" + tag + bytes(60), b"down" + tag + bytes(3000)
    assert client.send([up]) == 1
    assert receive(server, 1) == [up]
    assert server.send([down]) == 1
    assert receive(client, 1) == [down]


@contextmanager
def sockets(path: str | None = None) -> Iterator[tuple[memif.Socket, memif.Socket]]:
    path = path or unique_name()
    with (
        memif.Socket(path, app_name="srv-app") as ss,
        memif.Socket(path, app_name="cli-app") as cs,
    ):
        yield ss, cs


def connect(*socks: memif.Socket, ifaces: list[memif.Interface], timeout: float = 5.0) -> None:
    assert drive(*socks, until=lambda: all(i.connected for i in ifaces), timeout=timeout), [
        (i.state, i.local_disc_reason, i.remote_disc_reason) for i in ifaces
    ]


def random_packets(rng: np.random.Generator, count: int, max_size: int) -> list[bytes]:
    sizes = rng.integers(1, max_size + 1, size=count)
    return [rng.integers(0, 256, size=int(n), dtype=np.uint8).tobytes() for n in sizes]


# --------------------------------------------------------------------------- traffic


def test_both_directions() -> None:
    with pair() as (server, client):
        assert server.state == client.state == "connected"
        assert server.remote_app_name == "test-client" and client.details().app_name
        assert client.remote_if_name == server.name and server.remote_if_name == client.name
        ups = [bytes([i]) * (60 + i) for i in range(32)]
        downs = [bytes([255 - i]) * (1000 + i) for i in range(32)]
        assert client.send(ups) == 32
        assert server.send(downs) == 32
        assert receive(server, 32) == ups
        assert receive(client, 32) == downs
        assert server.rx_queues[0].stats.packets == client.tx_queues[0].stats.packets == 32
        assert client.rx_queues[0].stats.packets == server.tx_queues[0].stats.packets == 32
        assert client.rx_queues[0].stats.bytes == sum(map(len, downs))


def test_several_queues_each_carry_their_own_packets() -> None:
    with pair(client_rx_queues=3, client_tx_queues=2) as (server, client):
        # Only the client's counts shape the connection: its tx is the server's rx.
        assert (len(client.rx_queues), len(client.tx_queues)) == (3, 2)
        assert (len(server.rx_queues), len(server.tx_queues)) == (2, 3)
        for side in (server, client):
            d = side.details()
            assert (d.num_s2m_rings, d.num_m2s_rings) == (2, 3)
        for q in range(2):
            assert client.send([f"s2m q{q} #{k}".encode() for k in range(5 + q)], queue=q) == 5 + q
        for q in range(3):
            assert server.send([f"m2s q{q} #{k}".encode() for k in range(7 + q)], queue=q) == 7 + q
        for q in range(2):
            assert receive(server, 5 + q, queue=q) == [
                f"s2m q{q} #{k}".encode() for k in range(5 + q)
            ]
            assert server.rx_queues[q].pending() == 0
        for q in range(3):
            assert receive(client, 7 + q, queue=q) == [
                f"m2s q{q} #{k}".encode() for k in range(7 + q)
            ]
        assert [q.stats.packets for q in server.rx_queues] == [5, 6]
        assert [q.stats.packets for q in client.rx_queues] == [7, 8, 9]


@pytest.mark.parametrize("direction", ["s2m", "m2s"])
def test_jumbo_frame_is_chained(direction: str) -> None:
    with pair(buffer_size=2048) as (server, client):
        tx, rx = (client, server) if direction == "s2m" else (server, client)
        frame = np.random.default_rng(9000).integers(0, 256, 9000, dtype=np.uint8).tobytes()
        ring = tx.tx_queues[0].ring
        before = ring.head if direction == "s2m" else ring.tail
        assert tx.send([frame]) == 1
        after = ring.head if direction == "s2m" else ring.tail
        assert (after - before) & 0xFFFF == 5  # 4 x 2048 + 808
        s = before & ring.mask
        assert ring.d_flags[s : s + 5].tolist() == [wire.DESC_FLAG_NEXT] * 4 + [0]
        assert ring.d_length[s : s + 5].tolist() == [2048] * 4 + [808]
        got = receive(rx, 1)
        assert len(got) == 1 and got[0] == frame
        assert rx.rx_queues[0].stats.packets == 1 and rx.rx_queues[0].stats.bytes == 9000


@pytest.mark.parametrize("direction", ["s2m", "m2s"])
def test_random_sizes_byte_for_byte(direction: str) -> None:
    rng = np.random.default_rng(20000 if direction == "s2m" else 20001)
    with pair(buffer_size=2048, ring_size=256) as (server, client):
        tx, rx = (client, server) if direction == "s2m" else (server, client)
        packets = random_packets(rng, 300, 20000)
        got: list[bytes] = []
        for start in range(0, len(packets), 20):  # 20 x <= 10 buffers fit a 256 ring
            chunk = packets[start : start + 20]
            assert tx.send(chunk) == len(chunk)
            got += receive(rx, len(chunk))
        assert len(got) == len(packets)
        for k, (a, b) in enumerate(zip(got, packets, strict=True)):
            assert a == b, f"packet {k}: {len(a)} bytes received, {len(b)} sent"
        assert rx.rx_queues[0].stats.drops == 0


@pytest.mark.parametrize("direction", ["s2m", "m2s"])
def test_vectorized_api(direction: str) -> None:
    rng = np.random.default_rng(7)
    with pair(buffer_size=1024, ring_size=64) as (server, client):
        tx, rx = (client, server) if direction == "s2m" else (server, client)
        txq, rxq = tx.tx_queues[0], rx.rx_queues[0]
        batch = txq.alloc(40)
        assert batch.count == 40 and batch.capacity == 1024
        assert batch.is_view and batch.buffers.shape == (40, 1024)
        lengths = rng.integers(1, 1025, 40)
        data = rng.integers(0, 256, (40, 1024), dtype=np.uint8)
        batch.fill(data[:20])  # vectorized scatter for the first half ...
        for i in range(20, 40):  # ... and per-buffer zero-copy views for the rest
            batch.buffer(i)[:] = data[i]
        assert txq.tx_burst(batch, lengths) == 40
        expect = [data[i, : lengths[i]].tobytes() for i in range(40)]

        assert drive(rx.socket, until=lambda: rxq.pending() == 40, timeout=2)
        rb = rxq.rx_burst(25)
        assert len(rb) == rb.count == 25
        np.testing.assert_array_equal(rb.lengths, lengths[:25])
        assert rb.nbytes == int(lengths[:25].sum())
        mat = rb.matrix
        assert rb.is_view and mat.shape == (25, int(lengths[:25].max()))
        for i in range(25):
            assert mat[i, : lengths[i]].tobytes() == expect[i]
        rows = rb.gather()
        assert rows.shape == mat.shape
        for i in range(25):
            assert rows[i, : lengths[i]].tobytes() == expect[i]
        narrow = rb.gather(16)
        np.testing.assert_array_equal(narrow, data[:25, :16])
        assert [bytes(p) for p in rb] == expect[:25]
        assert rb.tolist() == expect[:25]
        assert bytes(rb[-1]) == expect[24]
        del mat, rows, rb
        assert rxq.refill() == 25
        rest = rxq.rx_burst()
        assert rest.tolist() == expect[25:]
        rxq.refill()
        assert rxq.pending() == 0


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["s2m", "m2s"])
def test_ring_wrap_every_sequence_number(direction: str) -> None:
    """More than 2 x 65536 packets through a 16-slot ring: the u16 counters wrap."""
    with pair(ring_size=16, buffer_size=128) as (server, client):
        tx, rx = (client, server) if direction == "s2m" else (server, client)
        txq, rxq = tx.tx_queues[0], rx.rx_queues[0]
        ring = txq.ring

        def counter() -> int:
            return ring.head if direction == "s2m" else ring.tail

        total = 2 * U16 + 777
        seq = got = wraps = 0
        last = counter()
        data = np.zeros((16, 64), np.uint8)
        while got < total:
            batch = txq.alloc(total - seq)
            k = batch.count
            if k:
                seqs = np.arange(seq, seq + k, dtype=np.uint32)
                data[:k, :4] = seqs.view(np.uint8).reshape(k, 4)
                data[:k, 4:] = (seqs % 251).astype(np.uint8)[:, None]
                batch.fill(data[:k])
                assert txq.tx_burst(batch, (4 + seqs % 61).astype(np.uint32)) == k
                seq += k
            rb = rxq.rx_burst(16)
            n = len(rb)
            if n:
                expect = np.arange(got, got + n, dtype=np.uint32)
                assert (rb.lengths == 4 + expect % 61).all()
                rows = rb.gather(8)
                assert (rows[:, :4].copy().view(np.uint32).ravel() == expect).all(), got
                longer = rb.lengths > 4
                assert (rows[longer, 4] == (expect[longer] % 251).astype(np.uint8)).all()
                got += n
            rxq.refill()
            now = counter()
            wraps += now < last
            last = now
        assert wraps == 2 and seq == got == total
        assert counter() == total % U16
        assert rxq.stats.packets == txq.stats.packets == total and rxq.stats.drops == 0
        assert client.connected and server.connected
        assert client.send([b"after"]) == 1 and server.send([b"wrap"]) == 1
        assert receive(server, 1) == [b"after"] and receive(client, 1) == [b"wrap"]


# --------------------------------------------------------------------------- interrupts


@pytest.mark.parametrize("receiver", ["server", "client"])
def test_interrupt_mode_wakes_the_waiter(receiver: str) -> None:
    with pair() as (server, client):
        rx, tx = (server, client) if receiver == "server" else (client, server)
        rxq = rx.rx_queues[0]
        assert not rxq.polling and rxq.ring.flags & wire.RING_FLAG_MASK_INT == 0
        assert not readable(rxq.fd)
        assert rxq.wait(0.01) is False

        # The producer's send really writes the eventfd.
        tx.send([b"kick"])
        assert readable(rxq.fd)
        assert rxq.wait(0) is True
        assert not readable(rxq.fd)  # wait() consumed the kick
        assert rx.recv() == [b"kick"]

        # A blocked waiter wakes up on the kick the peer sends from another thread: True is
        # the kick (a timeout is False), and it came after the send, which was 0.05 s late.
        sent_at: list[float] = []

        def late() -> None:
            tx.send([b"late"])
            sent_at.append(time.monotonic())

        timer = threading.Timer(0.05, late)
        t0 = time.monotonic()
        timer.start()
        try:
            assert rxq.wait(30.0) is True
            woke_at = time.monotonic()
        finally:
            timer.join()
        assert woke_at - t0 >= 0.04 and sent_at, (woke_at - t0, sent_at)
        assert not readable(rxq.fd)  # wait() consumed the kick
        assert rx.recv() == [b"late"]


@pytest.mark.parametrize("receiver", ["server", "client"])
def test_polling_mode_and_switching_at_run_time(receiver: str) -> None:
    with pair() as (server, client):
        rx, tx = (server, client) if receiver == "server" else (client, server)
        rxq, txq = rx.rx_queues[0], tx.tx_queues[0]

        rx.set_rx_mode(0, True)
        assert rxq.polling
        # MASK_INT is in shared memory: the producer's own mapping shows it.
        assert rxq.ring.flags & wire.RING_FLAG_MASK_INT
        assert txq.ring.flags & wire.RING_FLAG_MASK_INT
        assert tx.details().rings[0 if receiver == "server" else 1].flags == 1
        tx.send([b"p1", b"p2"])
        assert not readable(rxq.fd, 0.02)  # no kick
        assert rxq.pending() == 2
        assert rx.recv() == [b"p1", b"p2"]

        rx.set_rx_mode(0, False)
        assert not rxq.polling and txq.ring.flags & wire.RING_FLAG_MASK_INT == 0
        tx.send([b"i1"])
        assert readable(rxq.fd)
        assert rxq.wait(1.0) and rx.recv() == [b"i1"]
        rxq.clear_interrupt()

        rx.set_rx_mode(0, True)
        tx.send([b"p3"])
        assert not readable(rxq.fd, 0.02)
        assert rx.recv() == [b"p3"]


def test_polling_mode_configured_before_connect() -> None:
    with sockets() as (ss, cs):
        server = ss.create_interface(role="server", id=0, polling=True)
        client = cs.create_interface(role="client", id=0, rx_queues=2)
        client.set_rx_mode(1, True)  # remembered until the queues exist
        connect(ss, cs, ifaces=[server, client])
        assert server.rx_queues[0].polling
        assert client.tx_queues[0].ring.flags & wire.RING_FLAG_MASK_INT
        assert [q.polling for q in client.rx_queues] == [False, True]
        assert server.tx_queues[1].ring.flags & wire.RING_FLAG_MASK_INT
        client.send([b"x"])
        assert not readable(server.rx_queues[0].fd, 0.02)
        server.send([b"a"], queue=0)
        assert readable(client.rx_queues[0].fd)


# --------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("single_region", [True, False], ids=["vpp", "libmemif"])
def test_region_layouts(single_region: bool) -> None:
    n, bsize = 64, 2048
    with pair(single_region=single_region, ring_size=n, buffer_size=bsize) as (server, client):
        ring_bytes = 128 + 16 * n
        rings_total = 2 * ring_bytes
        buffers_total = 2 * n * bsize
        for side in (server, client):
            d = side.details()
            sizes = [size for _, size, _ in d.regions]
            if single_region:
                assert sizes == [rings_total + buffers_total]
            else:
                assert sizes == [rings_total, buffers_total]
            assert [(r.s2m, r.region, r.offset) for r in d.rings] == [
                (True, 0, 0),
                (False, 0, ring_bytes),
            ]
        # The server mapped the client's memfds: same inodes, its own fds.
        for (_, _, cfd), (_, _, sfd) in zip(
            client.details().regions, server.details().regions, strict=True
        ):
            assert cfd != sfd and os.fstat(cfd).st_ino == os.fstat(sfd).st_ino
        # Buffers are where the layout says: region 1 (libmemif) or after the rings.
        m2s = client.rx_queues[0].ring
        base = rings_total if single_region else 0
        assert int(m2s.d_region[0]) == (0 if single_region else 1)
        assert int(m2s.d_offset[0]) == base + n * bsize  # first M2S buffer
        roundtrip(server, client)
        big = bytes(range(256)) * 40
        client.send([big])
        server.send([big])
        assert receive(server, 1) == [big] and receive(client, 1) == [big]


# --------------------------------------------------------------------------- reconnects


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["abstract", "file"])
def test_reconnect_after_server_restart(kind: str, tmp_path) -> None:
    path = unique_name() if kind == "abstract" else str(tmp_path / "memif.sock")
    interval = 0.2
    clock = ManualClock()  # the client's: a retry is due exactly one interval on

    def held(*socks: memif.Socket) -> None:
        """A few turns of the sockets with the client's clock standing still."""
        for _ in range(5):
            for s in socks:
                s.poll(0)

    with memif.Socket(path, app_name="cli-app", clock=clock) as cs:
        client = cs.create_interface(role="client", id=0, reconnect_interval=interval)
        ss = memif.Socket(path, app_name="srv-app")
        server = ss.create_interface(role="server", id=0)
        connect(ss, cs, ifaces=[server, client])
        roundtrip(server, client)

        ss.close()  # restart 1: the server goes away and comes right back
        assert drive(cs, until=lambda: not client.connected, timeout=2)
        assert client.remote_disc_reason == "interface deleted"
        assert client.rx_queues == [] and client.regions == []
        with memif.Socket(path, app_name="srv-app") as ss2:
            server = ss2.create_interface(role="server", id=0)
            due = client.next_retry
            assert due == clock.now + interval  # one interval after the disconnect
            clock.advance(interval * 0.9)
            held(ss2, cs)
            assert not client.connected and client.connect_count == 1  # not due yet
            clock.now = due
            connect(ss2, cs, ifaces=[server, client], timeout=30)  # due: it reconnects
            assert client.connect_count == 2 and server.connect_count == 1
            roundtrip(server, client, b"again")
        # restart 2: the server stays away for a while; the client keeps retrying
        assert drive(cs, until=lambda: not client.connected, timeout=30)
        assert client.next_retry == clock.now + interval
        clock.now = client.next_retry
        assert drive(
            cs, until=lambda: client.local_disc_reason.startswith("connect failed"), timeout=30
        )
        assert not client.connected
        with memif.Socket(path, app_name="srv-app") as ss3:
            server = ss3.create_interface(role="server", id=0)
            assert client.next_retry == clock.now + interval  # one interval after the failure
            held(ss3, cs)
            assert not client.connected  # not due yet
            clock.now = client.next_retry
            connect(ss3, cs, ifaces=[server, client], timeout=30)
            assert client.connect_count == 3
            roundtrip(server, client, b"third")


def test_reconnect_after_client_restart() -> None:
    path = unique_name()
    with memif.Socket(path, app_name="srv-app") as ss:
        server = ss.create_interface(role="server", id=3)
        for round_ in range(3):
            with memif.Socket(path, app_name=f"cli-{round_}") as cs:
                client = cs.create_interface(role="client", id=3)
                connect(ss, cs, ifaces=[server, client])
                assert server.remote_app_name == f"cli-{round_}"
                roundtrip(server, client, bytes([round_]))
            assert drive(ss, until=lambda: not server.connected, timeout=2)
            assert server.remote_disc_reason == "interface deleted"
            assert server.state == "disconnected" and server.regions == []
        assert server.connect_count == 3


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("server_opts", "client_opts", "reason", "server_records"),
    [
        ({"secret": "right"}, {"secret": "wrong"}, "incorrect secret", True),
        ({"secret": "right"}, {}, "secret required", True),
        ({"mode": "ip"}, {"mode": "ethernet"}, "mode mismatch", True),
        ({"id": 1}, {"id": 2}, "unmatched interface id", False),
    ],
)
def test_refusal_reasons_on_both_sides(
    server_opts: dict, client_opts: dict, reason: str, server_records: bool
) -> None:
    with sockets() as (ss, cs):
        server = ss.create_interface(role="server", **{"id": 0, **server_opts})
        client = cs.create_interface(
            role="client", reconnect_interval=None, **{"id": 0, **client_opts}
        )
        assert drive(ss, cs, until=lambda: client.remote_disc_reason != "", timeout=2)
        drive(ss, cs, until=lambda: not ss.connections(), timeout=1)
        assert client.remote_disc_reason == reason and client.local_disc_reason == ""
        assert server.local_disc_reason == (reason if server_records else "")
        assert server.remote_disc_reason == ""
        assert not server.connected and not client.connected
        assert client.state == server.state == "disconnected"
        assert client.regions == [] and client.rings == [] and client.details().rings == []


def test_secret_accepted_when_it_matches() -> None:
    with pair(secret="s3cret", mode="ip") as (server, client):
        assert server.details().secret_set and server.details().mode == "ip"
        roundtrip(server, client)


def test_user_disconnect_reason() -> None:
    with pair(reconnect_interval=None) as (server, client):
        client.disconnect("going for lunch")
        assert drive(server.socket, until=lambda: not server.connected, timeout=2)
        assert client.local_disc_reason == "going for lunch"
        assert server.remote_disc_reason == "going for lunch"


@pytest.mark.parametrize("deleted", ["server", "client"])
def test_interface_deleted(deleted: str) -> None:
    with pair() as (server, client):
        gone, peer = (server, client) if deleted == "server" else (client, server)
        gone.delete()
        assert gone.local_disc_reason == "interface deleted" and not gone.connected
        assert gone.id not in gone.socket.interfaces
        assert drive(peer.socket, until=lambda: not peer.connected, timeout=2)
        assert peer.remote_disc_reason == "interface deleted"
        with pytest.raises(memif.NotConnectedError):
            peer.send([b"x"])


def test_handshake_timeout_drops_a_silent_peer() -> None:
    path = unique_name()
    clock = ManualClock()  # the server's: the deadline is checked exactly
    start = clock.now  # the connection's deadline is start + 0.2
    with memif.Socket(path, app_name="srv-app", clock=clock) as ss:
        server = ss.create_interface(role="server", id=0, handshake_timeout=0.2)
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        raw.connect(transport.parse_address(path))
        frames: list[bytes] = []
        closed = eof_collector(raw, frames)
        try:
            assert drive(ss, until=lambda: closed() or len(frames) == 1, timeout=30)
            clock.advance(0.19)
            for _ in range(5):
                ss.poll(0)
            assert not closed() and len(ss.connections()) == 1  # not due yet: still held
            clock.now = start + 0.2
            assert drive(ss, until=closed, timeout=30)  # due: dropped
        finally:
            raw.close()
        assert [wire.decode(f) for f in frames[:-1]] == [
            wire.Hello(name="srv-app"),
            wire.Disconnect("handshake timeout"),
        ]
        assert ss.connections() == [] and server.state == "disconnected"
        # The listener still works.
        with memif.Socket(path) as cs:
            client = cs.create_interface(role="client", id=0)
            connect(ss, cs, ifaces=[server, client])
            roundtrip(server, client)


def test_garbage_on_the_control_socket() -> None:
    path = unique_name()
    with memif.Socket(path) as ss:
        ss.create_interface(role="server", id=0)
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        raw.connect(transport.parse_address(path))
        try:
            frames: list[bytes] = []
            closed = eof_collector(raw, frames)
            assert drive(ss, until=lambda: closed() or len(frames) == 1, timeout=2)
            assert wire.decode(frames.pop()) == wire.Hello(name=memif.sock.DEFAULT_APP_NAME)
            raw.send(b"\x03\x00garbage")
            assert drive(ss, until=closed, timeout=2)
        finally:
            raw.close()
        assert [wire.decode(f) for f in frames[:-1]] == [
            wire.Disconnect("malformed message: 9 bytes, expected 128")
        ]


class RawSlave:
    """A hand-driven slave on a raw SEQPACKET socket, to send what a good client never would."""

    def __init__(self, ss: memif.Socket, path: str) -> None:
        self.ss = ss
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.connect(transport.parse_address(path))
        self.frames: list[bytes] = []
        self.at_eof = eof_collector(self.sock, self.frames)
        self.fds: list[int] = []
        assert wire.decode(self.next()).TYPE is wire.MsgType.HELLO

    def next(self) -> bytes:
        """Drive the server until one more frame (or EOF) arrived."""
        n = len(self.frames)
        assert drive(self.ss, until=lambda: self.at_eof() or len(self.frames) > n, timeout=2)
        return self.frames[n]

    def send(self, msg: wire.Message | bytes, fds: list[int] = ()) -> wire.Message | None:
        data = msg if isinstance(msg, bytes) else wire.encode(msg)
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        self.sock.sendmsg([data], anc if fds else [])
        reply = self.next()
        return wire.decode(reply) if reply else None

    def memfd(self, size: int) -> int:
        fd = os.memfd_create("raw slave")
        os.ftruncate(fd, size)
        self.fds.append(fd)
        return fd

    def eventfd(self) -> int:
        fd = os.eventfd(0, os.EFD_NONBLOCK)
        self.fds.append(fd)
        return fd

    def close(self) -> None:
        self.sock.close()
        for fd in self.fds:
            os.close(fd)


@pytest.mark.parametrize(
    "case",
    ["no region fd", "two fds", "no ring fd", "private header", "wrong cookie", "bad ring offset"],
)
def test_hostile_slave_is_refused(case: str) -> None:
    path = unique_name()
    with memif.Socket(path) as ss:
        server = ss.create_interface(role="server", id=0)
        raw = RawSlave(ss, path)
        fds_before = len(os.listdir("/proc/self/fd"))
        try:
            assert raw.send(wire.Init(0, wire.Mode.ETHERNET, "", "raw")) == wire.Ack()
            region_size = 2 * wire.ring_bytes(4)
            region = raw.memfd(region_size)
            if case == "no region fd":
                reply = raw.send(wire.AddRegion(0, region_size))
                reason = "missing memory region fd"
            elif case == "two fds":
                reply = raw.send(wire.AddRegion(0, region_size), [region, raw.eventfd()])
                reason = "2 file descriptors in one message"
            else:
                assert raw.send(wire.AddRegion(0, region_size), [region]) == wire.Ack()
                s2m = wire.AddRing(True, 0, 0, 0, 4)
                if case == "no ring fd":
                    reply, reason = raw.send(s2m), "missing ring interrupt fd"
                elif case == "private header":
                    s2m = wire.AddRing(True, 0, 0, 0, 4, private_hdr_size=8)
                    reply = raw.send(s2m, [raw.eventfd()])
                    reason = "private headers not supported"
                else:
                    if case == "bad ring offset":
                        s2m = wire.AddRing(True, 0, 0, region_size, 4)  # past the region's end
                    m2s = wire.AddRing(False, 0, 0, wire.ring_bytes(4), 4)
                    assert raw.send(s2m, [raw.eventfd()]) == wire.Ack()
                    assert raw.send(m2s, [raw.eventfd()]) == wire.Ack()
                    reply = raw.send(wire.Connect("raw-if"))  # no cookies were written
                    reason = (
                        "wrong cookie on tx ring 0"
                        if case == "wrong cookie"
                        else f"ring at offset {region_size} does not fit its region"
                    )
            assert reply == wire.Disconnect(reason)
            assert raw.next() == b""  # and the server closed the connection
        finally:
            raw.close()
        assert ss.connections() == [] and not server.connected
        if case in ("wrong cookie", "bad ring offset"):  # INIT was accepted: it is recorded
            assert server.local_disc_reason == reason
        assert server.regions == [] and server.rings == []
        # Every fd the server received was closed with the connection.
        assert len(os.listdir("/proc/self/fd")) <= fds_before


def test_data_path_fault_disconnects() -> None:
    with pair(reconnect_interval=None) as (server, client):
        client.tx_queues[0].ring.head = client.tx_queues[0].ring.tail + 5000  # impossible
        assert len(server.rx_queues[0].rx_burst()) == 0
        assert drive(server.socket, client.socket, until=lambda: not client.connected, timeout=2)
        assert server.local_disc_reason == "ring counter out of range"
        assert client.remote_disc_reason == "ring counter out of range"


# --------------------------------------------------------------------------- socket files


def make_stale_socket_file(path: str) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(path)
    s.close()  # the file stays, nobody listens
    assert stat.S_ISSOCK(os.stat(path).st_mode)


def test_stale_socket_file_is_removed(tmp_path) -> None:
    path = str(tmp_path / "stale.sock")
    make_stale_socket_file(path)
    with sockets(path) as (ss, cs):
        server = ss.create_interface(role="server")
        client = cs.create_interface(role="client")
        connect(ss, cs, ifaces=[server, client])
        roundtrip(server, client)
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    assert not os.path.exists(path)  # removed on close


#: how a refusal names the listener when it is this process
HELD_BY_US = f" (held by pid {os.getpid()} uid {os.geteuid()} gid {os.getegid()})"


def test_live_listener_is_refused(tmp_path) -> None:
    path = str(tmp_path / "live.sock")
    with memif.Socket(path) as first:
        server = first.create_interface(role="server")
        other = memif.Socket(path)
        with pytest.raises(memif.SocketInUseError, match="^Active listener on ") as err:
            other.create_interface(role="server")
        assert str(err.value) == f"Active listener on {path}{HELD_BY_US}"
        other.close()
        assert os.path.exists(path)  # the live listener keeps its file
        with memif.Socket(path) as cs:  # ... and still works
            client = cs.create_interface(role="client")
            connect(first, cs, ifaces=[server, client])


def test_live_abstract_listener_is_refused() -> None:
    name = unique_name()
    with memif.Socket(name) as first:
        first.create_interface(role="server")
        for spelling in (name, "abstract:" + name[1:]):
            with memif.Socket(spelling) as other, pytest.raises(memif.SocketInUseError) as err:
                other.create_interface(role="server")
            assert str(err.value) == f"Active listener on {name}{HELD_BY_US}"


def test_live_listener_of_another_socket_type_is_not_removed(tmp_path) -> None:
    path = str(tmp_path / "stream.sock")
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stream.bind(path)
    stream.listen(1)
    try:
        with memif.Socket(path) as ss, pytest.raises(memif.SocketInUseError):
            ss.create_interface(role="server")
        assert os.path.exists(path)
    finally:
        stream.close()


def test_non_socket_file_is_not_removed(tmp_path) -> None:
    path = tmp_path / "not-a-socket"
    path.write_text("precious")
    with memif.Socket(str(path)) as ss, pytest.raises(memif.SocketInUseError, match="not a socket"):
        ss.create_interface(role="server")
    assert path.read_text() == "precious"


@pytest.mark.parametrize(
    ("server_spelling", "client_spelling"),
    [("@", "abstract:"), ("abstract:", "@"), ("@", "@"), ("abstract:", "abstract:")],
)
def test_abstract_spellings_are_the_same_socket(
    server_spelling: str, client_spelling: str, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    key = unique_name()[1:]
    with (
        memif.Socket(server_spelling + key) as ss,
        memif.Socket(client_spelling + key) as cs,
    ):
        server = ss.create_interface(role="server")
        client = cs.create_interface(role="client")
        connect(ss, cs, ifaces=[server, client])
        roundtrip(server, client)
        assert os.listdir(tmp_path) == []  # nothing on the filesystem
        with open("/proc/net/unix") as f:
            assert any(line.split()[-1] == "@" + key for line in f if len(line.split()) > 7)


@pytest.mark.parametrize("prefix", ["", "unix:"])
def test_filesystem_socket(prefix: str, tmp_path) -> None:
    path = str(tmp_path / "memif.sock")
    with sockets(prefix + path) as (ss, cs):
        server = ss.create_interface(role="server")
        client = cs.create_interface(role="client")
        connect(ss, cs, ifaces=[server, client])
        roundtrip(server, client)
        assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert not os.path.exists(path)


# --------------------------------------------------------------------------- many interfaces


def test_many_interfaces_on_one_socket_and_a_bad_client() -> None:
    path = unique_name()
    ids = range(5)
    with sockets(path) as (ss, cs):
        servers = {i: ss.create_interface(role="server", id=i, secret=f"pw{i}") for i in ids}
        clients = {i: cs.create_interface(role="client", id=i, secret=f"pw{i}") for i in ids}
        connect(ss, cs, ifaces=[*servers.values(), *clients.values()])

        def traffic(round_: int) -> None:
            for i in ids:
                assert clients[i].send([bytes([i, round_]) * (50 + i)] * (i + 1)) == i + 1
                assert servers[i].send([bytes([100 + i, round_]) * 700] * (5 - i)) == 5 - i
            for i in ids:
                assert receive(servers[i], i + 1) == [bytes([i, round_]) * (50 + i)] * (i + 1)
                assert receive(clients[i], 5 - i) == [bytes([100 + i, round_]) * 700] * (5 - i)
                assert servers[i].rx_queues[0].pending() == 0
                assert clients[i].rx_queues[0].pending() == 0

        traffic(0)
        # Bad clients: an id already connected, an unknown id, a wrong secret on a free id.
        with memif.Socket(path) as bad:
            busy = bad.create_interface(role="client", id=2, secret="pw2", reconnect_interval=None)
            unknown = bad.create_interface(role="client", id=77, reconnect_interval=None)
            assert drive(
                ss, cs, bad,
                until=lambda: busy.remote_disc_reason and unknown.remote_disc_reason,
                timeout=2,
            )  # fmt: skip
            assert busy.remote_disc_reason == "already connected"
            assert unknown.remote_disc_reason == "unmatched interface id"
            raw = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            raw.connect(transport.parse_address(path))
            raw.send(b"junk")
            raw.close()
            drive(ss, cs, bad, until=lambda: len(ss.connections()) == 5, timeout=2)
        assert len(ss.connections()) == 5
        assert all(s.connected and s.local_disc_reason == "" for s in servers.values())
        assert all(c.connected for c in clients.values())
        assert all(s.connect_count == 1 for s in servers.values())
        traffic(1)
        # One interface going away leaves the others alone.
        clients[3].delete()
        assert drive(ss, cs, until=lambda: not servers[3].connected, timeout=2)
        assert [servers[i].connected for i in ids] == [True, True, True, False, True]
        del clients[3], servers[3]
        ids = [0, 1, 2, 4]
        traffic(2)


# --------------------------------------------------------------------------- event loop, hygiene


def test_socket_fileno_is_readable_when_work_is_pending() -> None:
    with sockets() as (ss, cs):
        server = ss.create_interface(role="server")
        client = cs.create_interface(role="client")
        assert not readable(ss.fileno())
        assert readable(cs.fileno())  # the new client's first connect is due: poll me
        cs.poll(0)  # the client connects; the server has an accept pending
        assert client.state == "connecting"
        assert readable(ss.fileno(), 1.0)
        ss.poll(0)  # accept, HELLO out
        assert not readable(ss.fileno())
        assert readable(cs.fileno(), 1.0)
        # An event loop that only polls a socket when select says so gets connected.
        deadline = time.monotonic() + 5
        while not (server.connected and client.connected):
            assert time.monotonic() < deadline
            for s in select.select([ss, cs], [], [], 1.0)[0]:
                s.poll(0)
        assert not readable(ss.fileno()) and not readable(cs.fileno())
        server.disconnect("bye")
        assert readable(cs.fileno(), 1.0)
        cs.poll(0)
        assert client.remote_disc_reason == "bye"


@pytest.mark.slow
def test_no_fd_or_mapping_leak_over_200_cycles() -> None:
    def pair_cycle(k: int) -> None:
        with pair(ring_size=64, single_region=bool(k & 1)) as (server, client):
            client.send([bytes([k & 0xFF]) * 5000])
            server.send([b"y" * 100])
            assert receive(server, 1) == [bytes([k & 0xFF]) * 5000]
            assert receive(client, 1) == [b"y" * 100]

    for k in range(5):  # warm-up: imports, numpy caches, allocator arenas
        pair_cycle(k)
    before = footprint()
    assert before[2] == 0
    for k in range(100):
        pair_cycle(k)
    # And 100 disconnect/reconnect cycles on the same two sockets.
    with sockets() as (ss, cs):
        server = ss.create_interface(role="server", id=0)
        client = cs.create_interface(role="client", id=0, reconnect_interval=0.001)
        for k in range(100):
            connect(ss, cs, ifaces=[server, client])
            assert footprint()[2] == 4  # two memfd regions, mapped by both sides
            (client if k & 1 else server).disconnect("cycle")
            assert drive(ss, cs, until=lambda: not server.connected and not client.connected)
        assert server.connect_count == client.connect_count == 100
    after = footprint()
    assert after == before
