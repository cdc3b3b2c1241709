"""``memif gen`` run as a real process against this library's endpoints and against testpmd.

The frames the tests build or check follow the header documented in ``memif.tools.gen.cli``, written
out here with ``struct`` (not with gen's own code): after Ethernet/IPv4/UDP, little-endian u32
magic ``MGEN``, u64 ``stream << 56 | number``, u64 ``time.monotonic_ns()``.

Tests marked ``testpmd`` use DPDK's testpmd (scripts/setup.sh installs it; skipped without it,
failing instead when the environment variable CI is ``true``).
"""

from __future__ import annotations

import argparse
import json
import signal
import struct
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import memif_popen

import memif
import memif.testing
from memif import packet
from memif.tools.burst import echo_burst
from memif.tools.gen import cli as gen_cli
from memif.tools.gen.frames import Frames
from memif.tools.gen.stats import Analyzer, Latency
from memif.tools.testpmd import MemifPort, Testpmd

MAGIC = b"MGEN"
HDR = 42  # our header's offset in an Ethernet/IPv4/UDP frame


# ------------------------------------------------------------------------------------ helpers


def start_gen(*args: str) -> subprocess.Popen:
    """``memif gen ARGS --json --quiet`` as a child process."""
    return memif_popen("gen", *args, "--json", "--quiet")


def result(proc: subprocess.Popen, timeout: float = 30.0, rc: int = 0) -> dict:
    """Wait for gen and return its JSON summary."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == rc, f"rc {proc.returncode}\nstdout: {out}\nstderr: {err}"
    return json.loads(out.strip().splitlines()[-1])


def frame(seq: int, stream: int = 0, size: int = 64, magic: bytes = MAGIC) -> bytes:
    """An Ethernet/IPv4/UDP frame carrying gen's header."""
    body = magic + struct.pack("<QQ", stream << 56 | seq, time.monotonic_ns())
    body += bytes(size - HDR - len(body))
    udp = struct.pack("!HHHH", 9, 9, 8 + len(body), 0) + body
    ip = packet.ipv4(bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), packet.PROTO_UDP, udp)
    return packet.ethernet(b"\x02\0\0\0\0\xbb", b"\x02\0\0\0\0\xaa", packet.ETH_P_IP, ip)


def header(pkt: bytes) -> tuple[bytes, int, int]:
    """(magic, stream, number) of a frame."""
    magic = pkt[HDR : HDR + 4]
    (seq,) = struct.unpack_from("<Q", pkt, HDR + 4)
    return magic, seq >> 56, seq & ((1 << 56) - 1)


class Peer:
    """One interface of this process, driven by hand while gen runs in its own."""

    def __init__(self, path: str, role: str, **options: object) -> None:
        self.sock = memif.Socket(path, app_name="test-peer")
        self.iface = self.sock.create_interface(role=role, id=0, reconnect_interval=0.05, **options)
        self.got: dict[int, list[bytes]] = {}

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def connect(self, timeout: float = 10.0) -> None:
        assert memif.testing.drive(self.sock, until=lambda: self.iface.connected, timeout=timeout)

    @property
    def received(self) -> list[bytes]:
        return [p for q in sorted(self.got) for p in self.got[q]]

    def send_all(self, frames: list[bytes], timeout: float = 10.0) -> None:
        """Send every frame, waiting for ring room (a client posts its buffers a little after
        the server sees the connection)."""
        end = time.monotonic() + timeout
        while frames:
            assert time.monotonic() < end, f"{len(frames)} frames not sent"
            frames = frames[self.iface.send(frames) :]
            self.turn()

    def turn(self) -> None:
        """Control-plane work, then receive what is there on every queue."""
        self.sock.poll(0.0005)
        if self.iface.connected:
            for q in self.iface.rx_queues:
                self.got.setdefault(q.index, []).extend(q.recv(256))

    def pump(self, until: Callable[[], bool], timeout: float = 20.0) -> None:
        """Receive until ``until()`` or the timeout."""
        end = time.monotonic() + timeout
        while not until() and time.monotonic() < end:
            self.turn()


def unique() -> str:
    return memif.testing.unique_name("gen")


# ------------------------------------------------------------------------------------ CLI


class Recorder(argparse.ArgumentParser):
    """A parser that keeps every argument added to it or to its groups (argparse lists
    them only in private attributes)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.added: list[argparse.Action] = []
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.added.append(action)
        return action

    def add_argument_group(self, *args: Any, **kwargs: Any) -> Any:
        group = super().add_argument_group(*args, **kwargs)
        add = group.add_argument

        def recorded(*a: Any, **kw: Any) -> argparse.Action:
            action = add(*a, **kw)
            self.added.append(action)
            return action

        group.add_argument = recorded  # type: ignore[method-assign]
        return group


def test_help_explains_every_option() -> None:
    commands = argparse.ArgumentParser().add_subparsers(parser_class=Recorder)
    gen_cli.add_parser(commands)
    sub = commands.choices["gen"]
    assert len(sub.added) > 10  # -h and every option of memif gen
    for action in sub.added:
        assert action.help, f"{action.option_strings or action.dest} has no help"
    text = sub.format_help()
    for word in ("txonly", "rxonly", "io", "macswap", "imix", "--rate", "--linger", "--count"):
        assert word in text


def test_not_connected_is_a_one_line_error() -> None:
    proc = start_gen("--socket", unique(), "--connect-timeout", "0.3")
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1 and out == ""
    assert err.startswith("memif: not connected after 0.3 s") and err.count("\n") == 1


def test_size_below_the_header_is_refused() -> None:
    proc = start_gen("--socket", unique(), "--size", "64,40")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1 and "frame size 40 must be 62..65535" in err


# ------------------------------------------------------------------------------------ txonly


@pytest.mark.slow
@pytest.mark.parametrize(("role", "queues"), [("client", 1), ("server", 2)])
def test_txonly_count_is_exact_and_in_order(role: str, queues: int) -> None:
    n, path = 6000, unique()
    peer_role = "server" if role == "client" else "client"
    with Peer(path, peer_role, rx_queues=queues, tx_queues=queues) as peer:
        gen = start_gen("txonly", "--socket", path, "--role", role, "--queues", str(queues),
                        "--count", str(n), "--linger", "0.2")  # fmt: skip
        peer.pump(lambda: gen.poll() is not None, timeout=30)
        s = result(gen)
    assert s["tx_packets"] == n and s["in_flight"] == 0 and s["tx_drops"] == 0
    assert (s["lost"], s["p50_us"], s["p99_us"]) == (None, None, None)  # nothing came back
    assert len(peer.got) == queues
    total = 0
    for q, pkts in peer.got.items():
        heads = [header(p) for p in pkts]
        assert all(m == MAGIC and stream == q for m, stream, _ in heads)
        assert [seq for _, _, seq in heads] == list(range(len(pkts)))  # 0..k-1, in order
        assert all(len(p) == 64 for p in pkts)
        total += len(pkts)
    assert total == n


@pytest.mark.slow
def test_live_line_shows_elapsed_time_and_ends_with_the_totals() -> None:
    """Without a terminal the live line is printed once a second; its last state is the
    run's totals and average rates, not the 0 pps of its last instant."""
    n, path = 3000, unique()
    with Peer(path, "server") as peer:
        gen = memif_popen("gen", "txonly", "--socket", path, "--count", str(n),
                          "--rate", "2000", "--linger", "0", "--json")  # fmt: skip
        peer.pump(lambda: gen.poll() is not None, timeout=60)
        out, err = gen.communicate(timeout=30)
    s = json.loads(out.strip().splitlines()[-1])
    lines = [x for x in err.splitlines() if " s " in x and "tx " in x]
    assert lines, err
    assert all(x.split()[0].replace(".", "").isdigit() and x.split()[1] == "s" for x in lines)
    last = lines[-1]
    assert "(done, average rates)" in last, last
    assert f"tx {n:,} (" in last and f"rx {s['rx_packets']:,} (" in last
    assert last.startswith(f"{s['seconds']:.1f} s ")


IMIX = [64, 594, 64, 64, 1518, 64, 594, 64, 64, 594, 64, 594]  # 7 x 64, 4 x 594, 1 x 1518


@pytest.mark.parametrize(
    ("size", "expect"), [("64,512,1500", [64, 512, 1500] * 100), ("imix", IMIX * 25)]
)
@pytest.mark.slow
def test_size_mix(size: str, expect: list[int]) -> None:
    path, n = unique(), len(expect)
    with Peer(path, "server") as peer:
        gen = start_gen("--socket", path, "--size", size, "--count", str(n), "--linger", "0")
        peer.pump(lambda: gen.poll() is not None)
        s = result(gen)
    got = peer.received
    assert [len(p) for p in got] == expect  # sizes go out in turn
    assert s["tx_bytes"] == sum(expect)
    assert [header(p)[2] for p in got] == list(range(n))
    for p in got:  # each frame is a valid IPv4/UDP frame of its own length
        parsed = packet.parse(p)
        assert parsed.proto == packet.PROTO_UDP and len(parsed.l4) == len(p) - 34
        assert packet.checksum(p[14:34]) == 0  # the IPv4 header checksum of each size


@pytest.mark.parametrize(
    ("role", "size"), [("client", "9000"), ("server", "9000"), ("client", "64,9000")]
)
@pytest.mark.slow
def test_jumbo_frames_go_out_chained(role: str, size: str) -> None:
    path, n = unique(), 300
    peer_role = "server" if role == "client" else "client"
    sizes = [int(x) for x in size.split(",")]
    with Peer(path, peer_role) as peer:
        gen = start_gen("--socket", path, "--role", role, "--size", size, "--count", str(n),
                        "--linger", "0")  # fmt: skip
        peer.pump(lambda: gen.poll() is not None)
        s = result(gen)
    got = peer.received
    assert s["tx_packets"] == n == len(got)
    assert [len(p) for p in got] == [sizes[i % len(sizes)] for i in range(n)]
    assert [header(p)[2] for p in got] == list(range(n))
    big = next(p for p in got if len(p) == 9000)
    assert big[HDR + 20 :] == bytes(i & 0xFF for i in range(9000 - HDR - 20))  # payload intact


@pytest.mark.slow
def test_sigint_prints_the_summary() -> None:
    path = unique()
    with Peer(path, "server") as peer:
        gen = start_gen("--socket", path)
        peer.pump(lambda: sum(map(len, peer.got.values())) >= 3000)
        gen.send_signal(signal.SIGINT)
        peer.pump(lambda: gen.poll() is not None)
        s = result(gen)
    assert s["interrupted"] and s["tx_packets"] >= len(peer.received) >= 3000


# ------------------------------------------------------------------------------------ rxonly


@pytest.mark.slow
def test_rxonly_counts_loss_reordering_duplicates_and_foreign() -> None:
    path = unique()
    seqs = [i for i in range(100) if i not in (5, 6, 7)]
    i20 = seqs.index(20)
    seqs[i20], seqs[i20 + 1] = seqs[i20 + 1], seqs[i20]  # 21 before 20: one reordered
    seqs.insert(seqs.index(30) + 1, 30)  # 30 twice: one duplicate
    frames = [frame(s) for s in seqs] + [frame(s, stream=1, size=128) for s in range(10)]
    frames += [frame(0, magic=b"XXXX"), bytes(60), frame(1, magic=b"NOPE"), bytes(100)]
    gen = start_gen("rxonly", "--socket", path, "--role", "server", "--count", str(len(frames)),
                    "--linger", "0")  # fmt: skip
    with Peer(path, "client") as peer:
        peer.connect()
        peer.send_all(frames)
        peer.pump(lambda: gen.poll() is not None)
        s = result(gen)
    assert s["rx_packets"] == len(frames) == 98 + 10 + 4
    assert (s["sequenced"], s["foreign"], s["streams"]) == (108, 4, 2)
    assert (s["lost"], s["reordered"], s["duplicates"]) == (3, 1, 1)
    assert s["latency"] == "one-way" and 0 < s["p50_us"] <= s["p99_us"]


# ------------------------------------------------------------------------------------ io, macswap


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["io", "macswap"])
def test_reflector_echoes(mode: str) -> None:
    path = unique()
    frames = [frame(i, size=64 + i) for i in range(200)] + [
        frame(200 + i, size=5000) for i in range(3)
    ]
    with Peer(path, "server") as peer:
        gen = start_gen(mode, "--socket", path, "--count", str(len(frames)), "--linger", "0.5")
        peer.connect()
        for i in range(0, len(frames), 50):  # bursts the reflector's ring can hold
            peer.send_all(frames[i : i + 50])
            peer.pump(lambda i=i: len(peer.received) >= min(i + 50, len(frames)), timeout=10)
        peer.pump(lambda: gen.poll() is not None)
        s = result(gen)
    assert len(frames) == len(peer.received) == s["rx_packets"] == s["tx_packets"]
    for before, after in zip(frames, peer.received, strict=True):
        if mode == "macswap":
            before = before[6:12] + before[0:6] + before[12:]
        assert after == before
    assert (s["lost"], s["tx_drops"]) == (0, 0)


@pytest.mark.slow
def test_gen_to_gen_round_trip_latency() -> None:
    path, n = unique(), 3000
    refl = start_gen("macswap", "--socket", path, "--role", "server")
    time.sleep(0.3)
    gen = start_gen("txonly", "--socket", path, "--queues", "2", "--rate", "10000",
                    "--count", str(n), "--linger", "0.3")  # fmt: skip
    s = result(gen)
    r = result(refl)  # the reflector ends when its peer leaves
    assert (s["tx_packets"], s["rx_packets"], s["lost"], s["reordered"]) == (n, n, 0, 0)
    assert s["streams"] == 2 and s["duplicates"] == 0
    assert s["latency"] == "round-trip" and 0 < s["p50_us"] <= s["p99_us"]
    assert s["seconds"] > 0.2  # 3000 packets at 10000 pps take 0.3 s; a loaded machine, longer
    assert r["rx_packets"] == r["tx_packets"] == n and r["disconnected"]


# ------------------------------------------------------------------------------------ testpmd


def _listening_gen(sock: Path, *args: str) -> subprocess.Popen:
    """gen as the server (a testpmd client connects once, at startup): wait for its socket."""
    proc = start_gen(*args, "--socket", str(sock), "--role", "server", "--connect-timeout", "20")
    end = time.monotonic() + 10
    while not sock.exists():
        assert proc.poll() is None and time.monotonic() < end, proc.communicate()
        time.sleep(0.02)
    return proc


def _testpmd(binary: str, sock: Path, mode: str, **kw: object) -> Testpmd:
    """A testpmd client; 4096-slot rings absorb a busy machine's scheduling stalls."""
    port = MemifPort("client", socket=str(sock), rsize=12)
    return Testpmd([port], forward_mode=mode, binary=binary, **kw)


def _wait_stats(tp: Testpmd, until: Callable, timeout: float = 20.0):
    end = time.monotonic() + timeout
    while True:
        st = tp.port_stats(0)
        if until(st) or time.monotonic() > end:
            return st
        time.sleep(0.05)


@pytest.mark.testpmd
def test_gen_txonly_to_testpmd_rxonly_exact(testpmd_binary: str, tmp_path: Path) -> None:
    n, sock = 50_000, tmp_path / f"{uuid.uuid4().hex[:8]}.sock"
    gen = _listening_gen(sock, "txonly", "--count", str(n), "--linger", "30")
    try:
        with _testpmd(testpmd_binary, sock, "rxonly") as tp:
            tp.start()
            _wait_stats(tp, lambda st: st.rx_packets >= n)
            time.sleep(0.2)  # nothing more may come
            st = tp.port_stats(0)  # read while gen lingers, connected
            tp.stop()
            gen.send_signal(signal.SIGINT)
            s = result(gen)
    finally:
        gen.kill()
    assert st.rx_packets == n and st.rx_bytes == 64 * n
    assert (s["tx_packets"], s["in_flight"]) == (n, 0)


@pytest.mark.testpmd
def test_testpmd_txonly_to_gen_rxonly(testpmd_binary: str, tmp_path: Path) -> None:
    sock = tmp_path / f"{uuid.uuid4().hex[:8]}.sock"
    gen = _listening_gen(sock, "rxonly")
    try:
        with _testpmd(testpmd_binary, sock, "txonly", txpkts=64) as tp:
            tp.start()
            time.sleep(0.5)
            tp.stop()
            sent = tp.port_stats(0).tx_packets
            gen.send_signal(signal.SIGINT)  # gen takes what is in its rings before it ends
            s = result(gen)
    finally:
        gen.kill()
    assert sent > 0 and s["rx_packets"] == sent and s["rx_bytes"] == 64 * sent
    assert s["foreign"] == sent and s["sequenced"] == 0
    assert s["lost"] is None and s["p50_us"] is None  # testpmd's frames carry no sequence


@pytest.mark.testpmd
def test_gen_through_testpmd_macswap(testpmd_binary: str, tmp_path: Path) -> None:
    n, sock = 20_000, tmp_path / f"{uuid.uuid4().hex[:8]}.sock"
    gen = _listening_gen(sock, "txonly", "--rate", "20000", "--count", str(n),
                         "--start-delay", "0.5", "--linger", "30")  # fmt: skip
    try:
        with _testpmd(testpmd_binary, sock, "macswap") as tp:
            tp.start()
            st = _wait_stats(tp, lambda st: st.tx_packets >= n)
            tp.stop()
            time.sleep(0.1)
            gen.send_signal(signal.SIGINT)
            s = result(gen)
    finally:
        gen.kill()
    assert st.rx_packets == st.tx_packets == n
    assert (s["tx_packets"], s["rx_packets"], s["lost"], s["reordered"]) == (n, n, 0, 0)
    assert s["p50_us"] is not None and s["p99_us"] is not None
    assert 0 < s["p50_us"] <= s["p99_us"]


# ------------------------------------------------------------------- one packet as in a burst


def _stamped(seq: int, ts: int, stream: int = 0, magic: bytes = MAGIC) -> bytes:
    """A gen frame with its stamp ``ts`` (ns) given."""
    f = bytearray(frame(seq, stream, magic=magic))
    struct.pack_into("<q", f, HDR + 12, ts)
    return bytes(f)


def _analyze(frames: list[bytes], one_by_one: bool, now: int) -> Analyzer:
    """Frames through a real memif pair into an Analyzer, in one burst or one per burst."""
    an = Analyzer(Frames([64]))
    with memif.testing.pair() as (server, client):
        rxq = server.rx_queues[0]
        for group in [[f] for f in frames] if one_by_one else [frames]:
            assert client.send(group) == len(group)
            batch = rxq.rx_burst(256)
            assert len(batch) == len(group)
            an.add(batch, now)
            rxq.refill()
    return an


def test_the_analyzer_counts_a_packet_alone_as_in_a_burst() -> None:
    """The scalar path of a 1-packet burst keeps every counter as the burst path does:
    sequences in order, late, duplicated, in two streams, foreign and short frames, and
    latencies negative or over a minute (dropped)."""
    now = 10**12
    seqs = [0, 1, 2, 5, 4, 4, 7, 3, 8]
    frames = [_stamped(s, now - 1000 * (s + 1)) for s in seqs]
    frames += [_stamped(s, now - 7 * s, stream=2) for s in (0, 1, 3)]
    frames += [_stamped(9, now + 5), _stamped(10, now - 61 * 10**9)]  # future, too old
    frames += [_stamped(11, now - 50, magic=b"XXXX"), bytes(60), frame(12)[: HDR + 10]]
    burst, alone = _analyze(frames, False, now), _analyze(frames, True, now)
    for an in (burst, alone):
        assert (an.ours, an.foreign, len(an.streams)) == (14, 3, 2)
    for what in ("unique", "duplicates", "reordered", "highest", "lost"):
        assert [getattr(s, what) for s in alone.streams.values()] == [
            getattr(s, what) for s in burst.streams.values()
        ], what
    assert alone.total("duplicates") == 1 and alone.total("reordered") == 2
    a, b = alone.latency, burst.latency
    assert (a.count, a.min, a.max, a.total) == (b.count, b.min, b.max, b.total)
    assert a.count == 12  # the future and the minute-old stamps are not samples
    assert [a.percentile(p) for p in (0, 50, 99, 100)] == [
        b.percentile(p) for p in (0, 50, 99, 100)
    ]


def test_latency_one_sample_at_a_time_switches_to_the_histogram_as_bursts_do() -> None:
    rng = np.random.default_rng(7)
    lat = rng.integers(1, 10**9, 50)
    one, burst = Latency(keep=20), Latency(keep=20)
    for v in lat.tolist():
        one.add_one(v)
    for i in range(0, 50, 10):
        burst.add(lat[i : i + 10])
    assert one.hist is not None and burst.hist is not None
    assert (one.hist == burst.hist).all()
    assert (one.count, one.min, one.max, one.total) == (burst.count, burst.min, burst.max,
                                                        burst.total)  # fmt: skip
    assert one.percentile(50) == burst.percentile(50)


@pytest.mark.parametrize("swap", [True, False])
def test_echo_of_a_packet_alone_sends_what_the_burst_path_sends(swap: bool) -> None:
    frames = [frame(i, size=64 + 7 * i) for i in range(5)] + [b"\x01" * 11, b"\x02" * 12]
    got: dict[bool, list[bytes]] = {}
    for alone in (False, True):
        with memif.testing.pair() as (server, client):
            rxq, txq = server.rx_queues[0], server.tx_queues[0]
            for group in [[f] for f in frames] if alone else [frames]:
                client.send(group)
                batch = rxq.rx_burst(256)
                assert echo_burst(batch, txq, swap=swap) == len(group)
                rxq.refill()
            got[alone] = client.rx_queues[0].recv(256)
    assert got[True] == got[False]
    if swap:
        assert got[True][0] == frames[0][6:12] + frames[0][0:6] + frames[0][12:]
        assert got[True][5] == frames[5]  # shorter than two MACs: as it was
    else:
        assert got[True] == frames
