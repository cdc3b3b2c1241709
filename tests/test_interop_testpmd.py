"""Interoperability with DPDK testpmd (``net_memif``), an implementation nobody here wrote.

Every test runs a real ``dpdk-testpmd`` (see ``memif.tools.testpmd`` and ``/work/shared/peers.md``)
against this package, in both roles, and checks packet counts exactly on both sides and payloads
byte for byte.

Rules these tests follow because of testpmd's own behaviour:

* A testpmd *client* connects once, while it starts, and never retries: our server exists
  before it starts. A testpmd *server* exists before our client (which retries anyway).
* testpmd may crash when its peer disconnects while it forwards: every test stops testpmd
  before our side disconnects, and the teardown closes testpmd (stop, quit) before our socket.
* testpmd's port counters read 0 once the peer is gone: they are read while still connected.
* ``txonly`` never reads its receive ring: only ``rxonly``/``macswap`` are fed.

Our side keeps polling its control socket whenever it waits for testpmd (the testpmd
constructor runs in a thread meanwhile). testpmd's forwarding lcore busy-polls CPU 1
(``main_lcore=0``); our Python loop gets the other CPU.

Without testpmd the shared ``testpmd_binary`` fixture (``conftest.py``) tries to install it,
then skips every test (or fails when the environment variable ``CI`` is ``true``).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import memif
from memif.testing import drive, unique_name
from memif.tools.testpmd import MemifPort, PortStats, Testpmd

pytestmark = [pytest.mark.testpmd, pytest.mark.usefixtures("testpmd_binary")]

ROLES = ["server", "client"]  # our role; testpmd takes the other one
ETHERTYPE_LOCAL = b"\x88\xb5"  # IEEE 802 local experimental ethertype
TXONLY_SECONDS = 0.5  # how long testpmd txonly blasts at us


# ------------------------------------------------------------------------------ helpers


def socket_address(kind: str, tmp_path: Path) -> str:
    """A fresh control socket: a file under tmp_path, or a unique abstract name (``@...``)."""
    if kind == "abstract":
        return unique_name("memif-tpmd")
    path = str(tmp_path / "m.sock")
    if len(path) > 100:  # sun_path holds 107 bytes: fall back to a short directory
        path = os.path.join(tempfile.mkdtemp(prefix="mtp", dir="/tmp"), "m.sock")
    return path


def start_testpmd(sock: memif.Socket | None, ports: Sequence[MemifPort], **kw: object) -> Testpmd:
    """Start testpmd while our socket keeps polling (a testpmd client handshakes meanwhile)."""
    kw.setdefault("main_lcore", 0)  # forwarding lcore on CPU 1, our loop on CPU 0
    if sock is None:
        return Testpmd(ports, **kw)  # type: ignore[arg-type]
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["tp"] = Testpmd(ports, **kw)  # type: ignore[arg-type]
        except BaseException as exc:  # re-raised in the calling thread
            box["exc"] = exc

    th = threading.Thread(target=run, name="testpmd-start", daemon=True)
    th.start()
    while th.is_alive():
        sock.poll(0.005)
    th.join()
    if "exc" in box:
        raise box["exc"]  # type: ignore[misc]
    return box["tp"]  # type: ignore[return-value]


def wait_until(sock: memif.Socket, cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll our socket until ``cond()``; fail with ``what`` after ``timeout`` seconds."""
    ok = drive(sock, until=cond, timeout=timeout)
    assert ok, f"timed out after {timeout} s waiting for {what}"


def wait_link(sock: memif.Socket, iface: memif.Interface, tp: Testpmd, timeout: float = 10.0):
    """Poll our socket until our interface is connected and testpmd reports link up."""
    deadline = time.monotonic() + timeout
    while True:
        sock.poll(0.005)
        if iface.connected and tp.link_up():
            return
        if time.monotonic() >= deadline or tp.returncode is not None:
            raise AssertionError(
                f"no link after {timeout} s: ours {iface.state} (local reason "
                f"{iface.local_disc_reason!r}, remote reason {iface.remote_disc_reason!r}); "
                f"testpmd rc={tp.returncode}, output tail:\n{tp.output[-2000:]}"
            )


@dataclass
class Peer:
    """Our socket and interface connected to a testpmd."""

    sock: memif.Socket
    iface: memif.Interface
    tp: Testpmd

    def stats(self, port: int = 0) -> PortStats:
        """testpmd's port counters (read while our side is still connected)."""
        self.sock.poll(0)
        return self.tp.port_stats(port)

    def xstats(self, port: int = 0) -> dict[str, int]:
        """testpmd's extended counters (``rx_q0_packets`` ...)."""
        out = self.tp.cmd(f"show port xstats {port}")
        return {k: int(v) for k, v in re.findall(r"^(\w+):\s*(\d+)\s*$", out, re.MULTILINE)}


@contextlib.contextmanager
def connect_testpmd(
    our_role: str,
    address: str,
    *,
    forward_mode: str,
    iface_opts: dict | None = None,
    port_opts: dict | None = None,
    wait: bool = True,
    **tp_opts: object,
) -> Iterator[Peer]:
    """Our ``our_role`` interface on ``address`` and a testpmd in the other role, connected.

    Teardown closes testpmd first (``stop`` then ``quit``, while we are still connected), then
    our socket.
    """
    iface_opts = dict(iface_opts or {})
    iface_opts.setdefault("id", 0)
    tp_role = "client" if our_role == "server" else "server"
    port = MemifPort(tp_role, id=iface_opts["id"], socket=address, **(port_opts or {}))
    tp: Testpmd | None = None
    sock: memif.Socket | None = None
    try:
        if our_role == "server":  # a testpmd client connects only once, at start
            sock = memif.Socket(address)
            iface = sock.create_interface(role="server", **iface_opts)
            tp = start_testpmd(sock, [port], forward_mode=forward_mode, **tp_opts)
        else:
            tp = start_testpmd(None, [port], forward_mode=forward_mode, **tp_opts)
            sock = memif.Socket(address)
            iface_opts.setdefault("reconnect_interval", 0.2)
            iface = sock.create_interface(role="client", **iface_opts)
        peer = Peer(sock, iface, tp)
        if wait:
            wait_link(sock, iface, tp)
        yield peer
        assert tp.returncode is None, f"testpmd died:\n{tp.output[-2000:]}"
    finally:
        if tp is not None:
            tp.close()
        if sock is not None:
            sock.close()


def make_frames(rng: np.random.Generator, lengths: Sequence[int]) -> list[bytes]:
    """Ethernet frames with random MACs, a sequence number and random bytes after it."""
    frames = []
    for seq, length in enumerate(lengths):
        macs = bytearray(rng.bytes(12))
        macs[0] = (macs[0] & 0xFE) | 0x02  # unicast, locally administered
        macs[6] = (macs[6] & 0xFE) | 0x02
        frames.append(
            bytes(macs) + ETHERTYPE_LOCAL + seq.to_bytes(8, "big") + rng.bytes(int(length) - 22)
        )
    return frames


def mac_swapped(frame: bytes) -> bytes:
    """What testpmd ``macswap`` returns: the destination and source MACs exchanged."""
    return frame[6:12] + frame[0:6] + frame[12:]


def rx_all(queues: Sequence[memif.RxQueue], check: Callable[[memif.RxBatch], None]) -> int:
    """One receive pass over every queue; ``check`` sees each non-empty batch."""
    got = 0
    for q in queues:
        batch = q.rx_burst(256)
        if len(batch):
            check(batch)
            got += len(batch)
        q.refill()
    return got


def receive_txonly(peer: Peer, seconds: float, check: Callable[[memif.RxBatch], None]) -> None:
    """Receive testpmd's txonly stream for ``seconds``, stop testpmd, drain our rings."""
    queues = peer.iface.rx_queues
    peer.tp.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rx_all(queues, check)
        peer.sock.poll(0)
    peer.tp.stop()
    drain(peer.sock, queues, check)


def drain(
    sock: memif.Socket, queues: Sequence[memif.RxQueue], check: Callable, idle: float = 0.2
) -> None:
    """Receive until nothing arrived for ``idle`` seconds."""
    last = time.monotonic()
    while time.monotonic() - last < idle:
        if rx_all(queues, check):
            last = time.monotonic()
        else:
            sock.poll(0.001)


def wait_rx_count(peer: Peer, n: int, timeout: float = 15.0, port: int = 0) -> PortStats:
    """Poll testpmd's counters until it received ``n`` packets (or more, or times out)."""
    deadline = time.monotonic() + timeout
    while True:
        st = peer.stats(port)
        if st.rx_packets >= n or time.monotonic() >= deadline:
            return st
        peer.sock.poll(0.01)


def send_exactly(
    peer: Peer, frames: Sequence[bytes], queue: int = 0, timeout: float = 30.0
) -> None:
    """Send every frame with ``Interface.send``, never more than the ring has room for."""
    q = peer.iface.tx_queues[queue]
    sent, n = 0, len(frames)
    deadline = time.monotonic() + timeout
    while sent < n:
        k = min(q.free_slots(), 256, n - sent)
        if k:
            sent += peer.iface.send(frames[sent : sent + k], queue=queue)
        else:
            peer.sock.poll(0)
            if time.monotonic() >= deadline:
                raise AssertionError(f"tx stalled: {sent} of {n} sent on queue {queue}")


def burst_exactly(peer: Peer, frame: bytes, n: int, queue: int = 0, timeout: float = 30.0) -> None:
    """Send ``n`` copies of ``frame`` (sequence numbered) with alloc/fill/tx_burst."""
    q = peer.iface.tx_queues[queue]
    size = len(frame)
    block = np.tile(np.frombuffer(frame, np.uint8), (256, 1))
    sent = 0
    deadline = time.monotonic() + timeout
    while sent < n:
        tx = q.alloc(min(256, n - sent))
        k = len(tx)
        if k:
            seqs = np.arange(sent, sent + k, dtype=">u8").view(np.uint8).reshape(k, 8)
            block[:k, 14:22] = seqs
            tx.fill(block[:k])
            assert q.tx_burst(tx, size) == k
            sent += k
        else:
            peer.sock.poll(0)
            if time.monotonic() >= deadline:
                raise AssertionError(f"tx stalled: {sent} of {n} sent on queue {queue}")


def round_trip(
    peer: Peer,
    frames: Sequence[bytes],
    max_in_flight: int,
    buffer_size: int | None = None,
    timeout: float = 60.0,
) -> list[bytes]:
    """Send every frame, paced so at most ``max_in_flight`` are out; return what came back.

    ``buffer_size`` is the size of our tx buffers: ours as a client, the ones testpmd posts
    (its ``bsize``, 2048 by default) when we are the server.
    """
    iface, sock = peer.iface, peer.sock
    txq = iface.tx_queues[0]
    if buffer_size is None:
        buffer_size = iface.config.buffer_size if iface.role is memif.Role.CLIENT else 2048
    cap = buffer_size
    received: list[bytes] = []
    sent, n = 0, len(frames)
    deadline = time.monotonic() + timeout
    while len(received) < n:
        if sent < n:
            k = min(max_in_flight - (sent - len(received)), 32, n - sent)
            if k > 0:
                # never offer more than the free slots hold (a 2-buffer chain takes 2)
                slots = txq.free_slots()
                while k and sum(-(-len(f) // cap) for f in frames[sent : sent + k]) > slots:
                    k -= 1
                if k:
                    sent += iface.send(frames[sent : sent + k])
        received.extend(iface.recv(256))
        sock.poll(0)
        if time.monotonic() >= deadline:
            raise AssertionError(f"round trip stalled: sent {sent}, got {len(received)} of {n}")
    # Anything more (a duplicate) would show up now.
    end = time.monotonic() + 0.1
    while time.monotonic() < end:
        received.extend(iface.recv(256))
        sock.poll(0.005)
    return received


def check_returned(frames: Sequence[bytes], received: Sequence[bytes]) -> None:
    """Every frame came back once, in order, with its MACs swapped and nothing else changed."""
    assert len(received) == len(frames), f"sent {len(frames)}, received {len(received)}"
    bad = [i for i, (f, r) in enumerate(zip(frames, received, strict=True)) if r != mac_swapped(f)]
    if bad:
        i = bad[0]
        got, want = received[i], mac_swapped(frames[i])
        diff = next((j for j in range(min(len(got), len(want))) if got[j] != want[j]), None)
        raise AssertionError(
            f"{len(bad)} of {len(frames)} returned frames differ; first is #{i}: "
            f"length {len(got)} (sent {len(want)}), first differing byte {diff}, "
            f"seq in it {int.from_bytes(got[14:22], 'big') if len(got) >= 22 else None}"
        )


def check_round_trip_counters(peer: Peer, frames: Sequence[bytes]) -> None:
    """Exact packet and byte counts on both sides after a lossless macswap round trip."""
    n, nbytes = len(frames), sum(map(len, frames))
    st = peer.stats()
    txq, rxq = peer.iface.tx_queues[0], peer.iface.rx_queues[0]
    assert (txq.stats.packets, txq.stats.bytes) == (n, nbytes)
    assert (rxq.stats.packets, rxq.stats.bytes) == (n, nbytes)
    assert txq.stats.drops == 0 and rxq.stats.drops == 0, (txq.stats, rxq.stats)
    assert (st.rx_packets, st.rx_bytes, st.tx_packets, st.tx_bytes) == (n, nbytes, n, nbytes)
    assert (st.rx_missed, st.rx_errors, st.rx_nombuf, st.tx_errors) == (0, 0, 0, 0)


# ------------------------------------------------------------------------------ 1. connect


@pytest.mark.parametrize("kind", ["filesystem", "abstract"])
@pytest.mark.parametrize("our_role", ROLES)
def test_connect_and_exchange(our_role: str, kind: str, tmp_path: Path) -> None:
    """Both roles on both socket kinds: handshake, names, then a checked macswap exchange."""
    address = socket_address(kind, tmp_path)
    with connect_testpmd(our_role, address, forward_mode="macswap") as peer:
        d = peer.iface.details()
        assert d.state == "connected" and d.role == our_role
        assert d.remote_app_name.startswith("DPDK "), d.remote_app_name
        assert peer.iface.remote_app_name == d.remote_app_name
        assert d.remote_if_name == "net_memif0"
        assert d.num_s2m_rings == d.num_m2s_rings == 1 and d.ring_size == 1024
        if kind == "filesystem":
            assert Path(address).exists()
        info = peer.tp.cmd("show port info 0")
        assert "net_memif" in info and "Link status: up" in info

        frames = make_frames(np.random.default_rng(1), [60, 64, 128, 1000, 1514] * 200)
        peer.tp.start()
        received = round_trip(peer, frames, max_in_flight=256)
        check_returned(frames, received)
        check_round_trip_counters(peer, frames)
        peer.tp.stop()


def test_server_sees_testpmd_app_name(tmp_path: Path) -> None:
    """Our server learns testpmd's application name from INIT: ``DPDK <version>``."""
    with connect_testpmd(
        "server", socket_address("filesystem", tmp_path), forward_mode="io"
    ) as peer:
        assert re.fullmatch(r"DPDK \d+\.\d+\S*", peer.iface.remote_app_name)
        assert peer.iface.details().remote_app_name == peer.iface.remote_app_name
        assert peer.iface.details().remote_if_name == "net_memif0"


def test_client_sees_testpmd_app_name() -> None:
    """Our client learns testpmd's application name from HELLO."""
    with connect_testpmd("client", unique_name("memif-tpmd"), forward_mode="io") as peer:
        assert re.fullmatch(r"DPDK \d+\.\d+\S*", peer.iface.details().remote_app_name)
        assert peer.iface.details().remote_if_name == "net_memif0"


def test_client_remote_app_name_attribute_while_connected() -> None:
    """The attribute agrees with details() on a connected client, as it does on a server."""
    with connect_testpmd("client", unique_name("memif-tpmd"), forward_mode="io") as peer:
        assert peer.iface.remote_app_name == peer.iface.details().remote_app_name
        assert peer.iface.remote_app_name.startswith("DPDK ")


# ------------------------------------------------------------------------------ 2. txonly -> us


def txonly_checker(length: int, chained_into: int | None = None) -> tuple[Callable, dict]:
    """A batch check for testpmd txonly frames (IPv4/UDP 198.18.0.1 -> 198.18.0.2)."""
    seen = {"batches": 0, "bad_length": 0, "bad_header": 0, "bad_chain": 0}

    def check(batch: memif.RxBatch) -> None:
        seen["batches"] += 1
        seen["bad_length"] += int(np.count_nonzero(batch.lengths != length))
        if chained_into is not None:
            want = [chained_into] * (length // chained_into) + [length % chained_into]
            segs = batch.seg_length
            if (
                not batch.chained
                or len(segs) != len(batch) * len(want)
                or (segs.reshape(len(batch), len(want)) != want).any()
            ):
                seen["bad_chain"] += len(batch)
        # headers of every packet: the vectorized gather of the first 34 bytes
        hdr = batch.gather(34) if chained_into is None else np.stack([p[:34] for p in batch])
        ok = (
            (hdr[:, 12] == 0x08)
            & (hdr[:, 13] == 0x00)
            & (hdr[:, 23] == 17)
            & (hdr[:, 26:30] == (198, 18, 0, 1)).all(axis=1)
            & (hdr[:, 30:34] == (198, 18, 0, 2)).all(axis=1)
        )
        seen["bad_header"] += int(np.count_nonzero(~ok))

    return check, seen


def check_txonly_counts(peer: Peer, length: int, seen: dict) -> None:
    st = peer.stats()
    queues = peer.iface.rx_queues
    packets = sum(q.stats.packets for q in queues)
    nbytes = sum(q.stats.bytes for q in queues)
    assert st.tx_packets > 1000, f"testpmd sent only {st.tx_packets} packets"
    assert packets == st.tx_packets, f"we received {packets}, testpmd sent {st.tx_packets}"
    assert nbytes == st.tx_bytes == st.tx_packets * length
    assert sum(q.stats.drops for q in queues) == 0, [q.stats for q in queues]
    assert st.tx_errors == 0
    assert seen["bad_length"] == seen["bad_header"] == seen.get("bad_chain", 0) == 0, seen


@pytest.mark.parametrize("our_role", ROLES)
def test_txonly_into_us_exact_counts(our_role: str, tmp_path: Path) -> None:
    """testpmd txonly 64-byte frames: our rx count and bytes equal testpmd's tx counters."""
    address = socket_address("filesystem", tmp_path)
    with connect_testpmd(our_role, address, forward_mode="txonly", txpkts=64) as peer:
        check, seen = txonly_checker(64)
        receive_txonly(peer, TXONLY_SECONDS, check)
        check_txonly_counts(peer, 64, seen)


# ------------------------------------------------------------------------------ 3. us -> rxonly

N_TX = 100_000


@pytest.mark.parametrize("method", ["send", "tx_burst"])
@pytest.mark.parametrize("our_role", ROLES)
def test_we_transmit_into_rxonly_exact_counts(our_role: str, method: str, tmp_path: Path) -> None:
    """We send exactly N_TX frames (retrying while the ring is full); testpmd counts N_TX."""
    address = socket_address("abstract", tmp_path)
    frame = make_frames(np.random.default_rng(3), [64])[0]
    with connect_testpmd(our_role, address, forward_mode="rxonly") as peer:
        peer.tp.start()
        if method == "send":
            send_exactly(peer, [frame] * N_TX)
        else:
            burst_exactly(peer, frame, N_TX)
        wait_rx_count(peer, N_TX)
        peer.tp.stop()
        st = peer.stats()
        q = peer.iface.tx_queues[0]
        assert (q.stats.packets, q.stats.bytes) == (N_TX, N_TX * 64)
        assert q.stats.drops == 0, q.stats
        assert (st.rx_packets, st.rx_bytes) == (N_TX, N_TX * 64)
        assert (st.rx_missed, st.rx_errors, st.rx_nombuf) == (0, 0, 0)
        assert st.tx_packets == 0


# ------------------------------------------------------------------------------ 4. macswap


@pytest.mark.parametrize("our_role", ROLES)
def test_macswap_round_trip_every_byte(our_role: str, tmp_path: Path) -> None:
    """20000 frames of random lengths and bytes come back, each with only its MACs swapped."""
    rng = np.random.default_rng(4 if our_role == "server" else 5)
    frames = make_frames(rng, rng.integers(60, 1515, 20_000))
    with connect_testpmd(
        our_role, socket_address("filesystem", tmp_path), forward_mode="macswap"
    ) as peer:
        peer.tp.start()
        received = round_trip(peer, frames, max_in_flight=512)
        check_returned(frames, received)
        check_round_trip_counters(peer, frames)
        peer.tp.stop()


# ------------------------------------------------------------------------------ 5. chained


@pytest.mark.parametrize("our_role", ROLES)
def test_txonly_1500_chained_over_1024_buffers(our_role: str, tmp_path: Path) -> None:
    """1500-byte frames in 1024-byte buffers arrive as 2-descriptor chains, all 1500 long.

    Our server: the testpmd client has ``bsize=1024`` and chains on S2M. Our client: we post
    1024-byte buffers and the testpmd server chains into them on M2S.
    """
    if our_role == "server":
        opts: dict = {"port_opts": {"bsize": 1024}}
    else:
        opts = {"iface_opts": {"buffer_size": 1024}}
    address = socket_address("filesystem", tmp_path)
    with connect_testpmd(our_role, address, forward_mode="txonly", txpkts=1500, **opts) as peer:
        check, seen = txonly_checker(1500, chained_into=1024)
        receive_txonly(peer, TXONLY_SECONDS, check)
        check_txonly_counts(peer, 1500, seen)
        assert seen["batches"] > 0


@pytest.mark.parametrize("our_role", ROLES)
def test_macswap_1500_chained_over_1024_buffers(our_role: str, tmp_path: Path) -> None:
    """We send 1500-byte frames over 1024-byte buffers (chains) and check the chains returned.

    Our client: ``buffer_size=1024``, we chain on S2M, testpmd (server) chains back into our
    posted buffers. Our server: the testpmd client posts 1024-byte buffers (``bsize=1024``),
    we chain into them on M2S and it chains back on S2M.
    """
    if our_role == "server":
        opts: dict = {"port_opts": {"bsize": 1024}}
    else:
        opts = {"iface_opts": {"buffer_size": 1024}}
    frames = make_frames(np.random.default_rng(6), [1500] * 10_000)
    address = socket_address("abstract", tmp_path)
    with connect_testpmd(our_role, address, forward_mode="macswap", **opts) as peer:
        peer.tp.start()
        if our_role == "server":  # testpmd posts its 1024-byte buffers once it forwards
            txq = peer.iface.tx_queues[0]
            wait_until(peer.sock, lambda: txq.free_slots() > 0, 5.0, "buffers from testpmd")
            assert txq.alloc(1).capacity == 1024
        received = round_trip(peer, frames, max_in_flight=200, buffer_size=1024)
        check_returned(frames, received)
        check_round_trip_counters(peer, frames)
        peer.tp.stop()


# ------------------------------------------------------------------------------ 6. two queues


@pytest.mark.parametrize("our_role", ROLES)
def test_two_queues_txonly_into_us(our_role: str, tmp_path: Path) -> None:
    """testpmd --rxq=2 --txq=2 txonly: both of our rx queues receive, per-queue counts exact."""
    iface_opts = {"rx_queues": 2, "tx_queues": 2}
    address = socket_address("abstract", tmp_path)
    with connect_testpmd(
        our_role, address, forward_mode="txonly", txpkts=64, queues=2, iface_opts=iface_opts
    ) as peer:
        assert len(peer.iface.rx_queues) == len(peer.iface.tx_queues) == 2
        check, seen = txonly_checker(64)
        receive_txonly(peer, TXONLY_SECONDS, check)
        check_txonly_counts(peer, 64, seen)
        xs = peer.xstats()
        for i, q in enumerate(peer.iface.rx_queues):
            assert q.stats.packets > 0, f"nothing on our rx queue {i}"
            assert q.stats.packets == xs[f"tx_q{i}_packets"], (i, q.stats, xs)
            assert q.stats.bytes == xs[f"tx_q{i}_bytes"]


@pytest.mark.parametrize("our_role", ROLES)
def test_two_queues_we_transmit_into_rxonly(our_role: str, tmp_path: Path) -> None:
    """We send on both queues; testpmd counts the total, and per queue in its xstats."""
    iface_opts = {"rx_queues": 2, "tx_queues": 2}
    address = socket_address("filesystem", tmp_path)
    frames = make_frames(np.random.default_rng(7), [64, 128])
    n0, n1 = 30_000, 20_000
    with connect_testpmd(
        our_role, address, forward_mode="rxonly", queues=2, iface_opts=iface_opts
    ) as peer:
        assert len(peer.iface.tx_queues) == 2
        peer.tp.start()
        send_exactly(peer, [frames[0]] * n0, queue=0)
        burst_exactly(peer, frames[1], n1, queue=1)
        wait_rx_count(peer, n0 + n1)
        peer.tp.stop()
        st = peer.stats()
        xs = peer.xstats()
        assert (st.rx_packets, st.rx_bytes) == (n0 + n1, n0 * 64 + n1 * 128)
        assert (xs["rx_q0_packets"], xs["rx_q0_bytes"]) == (n0, n0 * 64)
        assert (xs["rx_q1_packets"], xs["rx_q1_bytes"]) == (n1, n1 * 128)
        tx0, tx1 = peer.iface.tx_queues
        assert (tx0.stats.packets, tx1.stats.packets) == (n0, n1)


# ------------------------------------------------------------------------------ 7. secret


@pytest.mark.parametrize("our_role", ROLES)
def test_secret_matches(our_role: str, tmp_path: Path) -> None:
    """The same secret on both sides connects, and traffic flows."""
    secret = "s3cr3t-" + os.urandom(4).hex()
    with connect_testpmd(
        our_role,
        socket_address("filesystem", tmp_path),
        forward_mode="macswap",
        iface_opts={"secret": secret},
        port_opts={"secret": secret},
    ) as peer:
        assert peer.iface.details().secret_set
        frames = make_frames(np.random.default_rng(8), [100] * 500)
        peer.tp.start()
        check_returned(frames, round_trip(peer, frames, max_in_flight=256))
        peer.tp.stop()


def _refused_server(
    tmp_path: Path, tp_secret: str | None
) -> contextlib.AbstractContextManager[Peer]:
    """Our server with secret "good" and a testpmd client offering ``tp_secret``."""
    return connect_testpmd(
        "server",
        socket_address("filesystem", tmp_path),
        forward_mode="rxonly",
        iface_opts={"secret": "good"},
        port_opts={"secret": tp_secret},
        wait=False,
        check_startup=False,  # the refused client port shows as failed/down
    )


@pytest.mark.parametrize("tp_secret", ["bad", None], ids=["wrong", "missing"])
def test_secret_mismatch_refused_by_our_server(tp_secret: str | None, tmp_path: Path) -> None:
    """A testpmd client with a wrong (or no) secret is refused: no link on either side."""
    with _refused_server(tmp_path, tp_secret) as peer:
        end = time.monotonic() + 0.7
        while time.monotonic() < end:
            peer.sock.poll(0.01)
        assert not peer.iface.connected and peer.iface.connect_count == 0
        assert peer.iface.state == "disconnected"
        assert not peer.tp.link_up()


@pytest.mark.parametrize(
    ("tp_secret", "reason"), [("bad", "incorrect secret"), (None, "secret required")],
    ids=["wrong", "missing"],
)  # fmt: skip
def test_secret_mismatch_reason_recorded(tp_secret: str | None, reason: str, tmp_path: Path):
    """Our server tells why it refused the testpmd client: ``local_disc_reason``."""
    with _refused_server(tmp_path, tp_secret) as peer:
        wait_until(
            peer.sock,
            lambda: bool(peer.iface.local_disc_reason),
            2.0,
            f"local_disc_reason {reason!r}",
        )
        assert peer.iface.local_disc_reason == reason
        assert peer.iface.details().local_disc_reason == reason


def test_secret_mismatch_refused_by_testpmd_server() -> None:
    """Our client with a wrong secret is refused by the testpmd server, which says why."""
    with connect_testpmd(
        "client",
        unique_name("memif-tpmd"),
        forward_mode="rxonly",
        iface_opts={"secret": "bad"},
        port_opts={"secret": "good"},
        wait=False,
    ) as peer:
        wait_until(
            peer.sock, lambda: bool(peer.iface.remote_disc_reason), 5.0, "DISCONNECT from testpmd"
        )
        assert peer.iface.remote_disc_reason.lower() == "incorrect secret"
        assert not peer.iface.connected and peer.iface.connect_count == 0
        assert not peer.tp.link_up()


# ------------------------------------------------------------------------------ reconnects


def test_client_reconnects_to_testpmd_server() -> None:
    """Our client disconnects (testpmd stopped first), reconnects, and traffic flows again."""
    frames = make_frames(np.random.default_rng(9), [64, 333, 1514] * 100)
    with connect_testpmd("client", unique_name("memif-tpmd"), forward_mode="macswap") as peer:
        for round_no in range(3):
            peer.tp.start()
            check_returned(frames, round_trip(peer, frames, max_in_flight=256))
            check_round_trip_counters(peer, frames)
            peer.tp.stop()
            peer.tp.clear_stats()
            peer.iface.disconnect()
            assert not peer.iface.connected
            wait_link(peer.sock, peer.iface, peer.tp)
            assert peer.iface.connect_count == round_no + 2
        assert peer.tp.returncode is None


def test_our_server_disconnects_stopped_testpmd_client(tmp_path: Path) -> None:
    """After ``stop``, our server may drop the testpmd client: testpmd survives, link down."""
    address = socket_address("filesystem", tmp_path)
    with connect_testpmd("server", address, forward_mode="macswap") as peer:
        frames = make_frames(np.random.default_rng(10), [200] * 300)
        peer.tp.start()
        check_returned(frames, round_trip(peer, frames, max_in_flight=256))
        peer.tp.stop()
        peer.iface.disconnect("bye")
        assert peer.iface.local_disc_reason == "bye"
        deadline = time.monotonic() + 5
        while peer.tp.link_up():
            peer.sock.poll(0.01)
            assert time.monotonic() < deadline, "testpmd still shows link up"
        assert peer.tp.returncode is None
