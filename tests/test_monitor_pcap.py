"""``memif monitor``, ``memif pcap-replay`` and ``memif.pcap``, with real components.

The test process is the memif peer (a :class:`memif.Socket` of its own); the tools
run as subprocesses of the ``memif`` command.  Frames are built with scapy and
labelled by hand; captures are read back with scapy's raw pcap reader (and tshark
when it is installed), so neither side of a check is this package's own code.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import termios
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from helpers import memif_popen as cli

import memif
from memif import classify as cl
from memif import pcap

if os.environ.get("CI") == "true":
    import scapy.all as scapy  # a test dependency: missing under CI is a failure
else:
    scapy = pytest.importorskip("scapy.all", reason="scapy is a test dependency")
from scapy.all import (  # noqa: E402
    ARP,
    ICMP,
    IP,
    TCP,
    UDP,
    Dot1AD,
    Dot1Q,
    Ether,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrHopByHop,
    RawPcapReader,
    wrpcap,
)

A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
BCAST = "ff:ff:ff:ff:ff:ff"


def _eth(frame) -> bytes:
    return bytes(frame)


# (label, frame): the label is the category the monitor must count the frame under.
FRAMES: list[tuple[str, bytes]] = [
    ("arp", _eth(Ether(src=A, dst=BCAST) / ARP(hwsrc=A, psrc="10.0.0.1", pdst="10.0.0.2"))),
    (
        "arp",
        _eth(Ether(src=B, dst=A) / ARP(op=2, hwsrc=B, psrc="10.0.0.2", hwdst=A, pdst="10.0.0.1")),
    ),
    (
        "ipv4/icmp",
        _eth(Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP() / (b"p" * 56)),
    ),
    (
        "ipv4/tcp",
        _eth(Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=80)),
    ),
    (
        "ipv4/tcp",
        _eth(
            Ether(src=B, dst=A)
            / IP(src="10.0.0.2", dst="10.0.0.1")
            / TCP(sport=80, dport=40000, flags="SA")
        ),
    ),
    (
        "ipv4/udp",
        _eth(
            Ether(src=C, dst=B)
            / IP(src="10.0.0.3", dst="10.0.0.2")
            / UDP(sport=33333, dport=53)
            / (b"q" * 30)
        ),
    ),
    # a later fragment of a UDP datagram: UDP, but no ports (its payload looks like port 53)
    (
        "ipv4/udp",
        _eth(
            Ether(src=A, dst=B)
            / IP(src="10.0.0.1", dst="10.0.0.2", proto=17, frag=100)
            / (b"\x00\x35\x00\x35" + b"f" * 40)
        ),
    ),
    (
        "ipv4/other",
        _eth(Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2", proto=47) / (b"g" * 24)),
    ),
    (
        "ipv4/udp",  # VLAN tagged
        _eth(
            Ether(src=A, dst=C)
            / Dot1Q(vlan=10)
            / IP(src="10.0.0.1", dst="10.0.0.3")
            / UDP(sport=5000, dport=5001)
        ),
    ),
    (
        "ipv4/tcp",  # QinQ
        _eth(
            Ether(src=C, dst=A)
            / Dot1AD(vlan=100)
            / Dot1Q(vlan=20)
            / IP(src="10.0.0.3", dst="10.0.0.1")
            / TCP(sport=22, dport=50000)
        ),
    ),
    (
        "ipv4/udp",  # a jumbo frame: chained over 2048-byte buffers
        _eth(
            Ether(src=A, dst=B)
            / IP(src="10.0.0.1", dst="10.0.0.2")
            / UDP(sport=4000, dport=4001)
            / (bytes(range(256)) * 35)[: 9000 - 42]
        ),
    ),
    (
        "ipv6/icmpv6",
        _eth(
            Ether(src=A, dst=B) / IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest()
        ),
    ),
    (
        "ipv6/udp",
        _eth(
            Ether(src=B, dst=A)
            / IPv6(src="2001:db8::2", dst="2001:db8::1")
            / UDP(sport=53, dport=5353)
            / (b"d" * 20)
        ),
    ),
    (
        "ipv6/tcp",  # behind a hop-by-hop extension header, 4000 bytes: chained
        _eth(
            Ether(src=A, dst=B)
            / IPv6(src="2001:db8::1", dst="2001:db8::2")
            / IPv6ExtHdrHopByHop()
            / TCP(sport=443, dport=51000)
            / (b"t" * 3900)
        ),
    ),
    ("ipv6/other", _eth(Ether(src=A, dst=B) / IPv6(src="2001:db8::1", dst="2001:db8::3", nh=59))),
    ("other:0x88cc", _eth(Ether(src=A, dst="01:80:c2:00:00:0e", type=0x88CC) / (b"\x00" * 46))),
    ("other:runt", b"\xaa" * 10),
]
assert len(FRAMES[10][1]) == 9000
ETH_FRAMES = [f for _, f in FRAMES]

IP_FRAMES = [
    bytes(IP(src="192.0.2.1", dst="192.0.2.2") / ICMP() / (b"i" * 40)),
    bytes(IPv6(src="2001:db8::a", dst="2001:db8::b") / UDP(sport=1000, dport=2000) / (b"u" * 5000)),
    bytes(IP(src="192.0.2.2", dst="192.0.2.1") / TCP(sport=179, dport=30000)),
]


# --------------------------------------------------------------------------- helpers
class Peer:
    """The test process's memif end: one socket with some interfaces."""

    def __init__(self, role: str = "server", ids=(0,), mode: str = "ethernet", **opts) -> None:
        self.path = memif.testing.unique_name("memif-mon")
        self.sock = memif.Socket(self.path, app_name="pytest-peer")
        self.ifaces = {
            i: self.sock.create_interface(role=role, id=i, mode=mode, **opts) for i in ids
        }

    def close(self) -> None:
        self.sock.close()

    def wait_connected(self, *ids: int, timeout: float = 15.0) -> None:
        ifaces = [self.ifaces[i] for i in ids or self.ifaces]
        ok = memif.testing.drive(
            self.sock, until=lambda: all(i.connected for i in ifaces), timeout=timeout
        )
        assert ok, [(i.state, i.local_disc_reason, i.remote_disc_reason) for i in ifaces]

    def send(self, if_id: int, frames: list[bytes], timeout: float = 10.0) -> None:
        """Send every frame in order, waiting for the peer's buffers when needed."""
        iface = self.ifaces[if_id]
        todo = list(frames)
        end = time.monotonic() + timeout
        while todo:
            assert time.monotonic() < end, f"sent only {len(frames) - len(todo)} of {len(frames)}"
            if iface.connected:
                todo = todo[iface.tx_queues[0].send(todo) :]
            self.sock.poll(0.002)

    def consumed(self, if_id: int) -> bool:
        """True when the peer took every frame sent to it and gave the buffers back."""
        q = self.ifaces[if_id].tx_queues[0]
        return q.free_slots() == q.size

    def receive(self, if_id: int, count: int, proc=None, timeout: float = 20.0):
        """Receive ``count`` frames (or until ``proc`` ended and nothing is left)."""
        iface = self.ifaces[if_id]
        got: list[bytes] = []
        times: list[float] = []
        end = time.monotonic() + timeout
        idle_after_exit = 0
        while len(got) < count and time.monotonic() < end:
            if iface.connected:
                batch = iface.recv(256)
                got += batch
                times += [time.monotonic()] * len(batch)
            if proc is not None and proc.poll() is not None:
                idle_after_exit += 1
                if idle_after_exit > 50:
                    break
            self.sock.poll(0.001)
        return got, times


def finish(proc: subprocess.Popen, peer: Peer | None = None, timeout: float = 20.0):
    """Serve the control plane until ``proc`` exits; returns (rc, stdout, stderr)."""
    end = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < end:
        if peer is not None:
            peer.sock.poll(0.01)
        else:
            time.sleep(0.01)
    if proc.poll() is None:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{proc.args} did not finish: {out}\n{err}")
    out, err = proc.communicate()
    return proc.returncode, out, err


def pcap_frames(path: Path) -> tuple[list[bytes], int, list]:
    """Frames of a capture as scapy's raw reader sees them: (frames, linktype, metadata)."""
    reader = RawPcapReader(str(path))
    try:
        records = list(reader)
        return [bytes(d) for d, _ in records], reader.linktype, [m for _, m in records]
    finally:
        reader.close()


def expected_protocols(labelled: list[tuple[str, bytes]]) -> dict:
    """The monitor's "protocols" object for these frames, from the hand-written labels."""
    c: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for label, frame in labelled:
        c[label][0] += 1
        c[label][1] += len(frame)

    def pb(*labels: str) -> dict[str, int]:
        return {
            "packets": sum(c[x][0] for x in labels),
            "bytes": sum(c[x][1] for x in labels),
        }

    v4 = ("ipv4/icmp", "ipv4/tcp", "ipv4/udp", "ipv4/other")
    v6 = ("ipv6/icmpv6", "ipv6/tcp", "ipv6/udp", "ipv6/other")
    others = sorted(x for x in c if x.startswith("other:"))
    return {
        "arp": pb("arp"),
        "ipv4": {**pb(*v4), **{x.split("/")[1]: pb(x) for x in v4}},
        "ipv6": {**pb(*v6), **{x.split("/")[1]: pb(x) for x in v6}},
        "other": {**pb(*others), "ethertypes": {x.split(":")[1]: pb(x) for x in others}},
    }


def scapy_talkers(frames: list[bytes]) -> dict:
    """Top talkers computed independently with scapy's dissection."""
    macs: Counter = Counter()
    ips: Counter = Counter()
    ports: Counter = Counter()
    for f in frames:
        if len(f) < 14:
            continue
        p = Ether(f)
        macs[frozenset((p.src, p.dst))] += len(f)
        for layer in (IP, IPv6):
            if layer in p:
                ips[frozenset((p[layer].src, p[layer].dst))] += len(f)
        for layer, name in ((TCP, "tcp"), (UDP, "udp")):
            if layer in p:
                ports[(name, min(p[layer].sport, p[layer].dport))] += len(f)
    return {"mac_pairs": macs, "ip_pairs": ips, "ports": ports}


# --------------------------------------------------------------------------- a capture
@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """One monitor run over every test frame: its JSON summary and its pcap file."""
    path = tmp_path_factory.mktemp("capture") / "all.pcap"
    peer = Peer()
    try:
        proc = cli(
            "monitor",
            "--socket",
            peer.path,
            "--count",
            str(len(FRAMES)),
            "--duration",
            "20",
            "--write",
            str(path),
            "--top",
            "50",
            "--json",
        )
        peer.wait_connected()
        peer.send(0, ETH_FRAMES)
        rc, out, err = finish(proc, peer)
    finally:
        peer.close()
    assert rc == 0, err
    return json.loads(out), path


def test_monitor_writes_every_frame_byte_for_byte(capture) -> None:
    summary, path = capture
    frames, linktype, meta = pcap_frames(path)
    assert linktype == pcap.LINKTYPE_ETHERNET
    assert frames == ETH_FRAMES  # in order, the 9000-byte chain whole
    assert [m.wirelen for m in meta] == [len(f) for f in ETH_FRAMES]
    assert summary["written"] == len(FRAMES)
    assert summary["file"] == str(path)
    assert summary["stopped_by"] == "count"


def test_monitor_counts_per_protocol(capture) -> None:
    summary, _ = capture
    assert summary["packets"] == len(FRAMES)
    assert summary["bytes"] == sum(map(len, ETH_FRAMES))
    assert summary["received"] == {"packets": len(FRAMES), "bytes": summary["bytes"]}
    assert summary["protocols"] == expected_protocols(FRAMES)
    assert summary["rx_drops"] == 0


def test_monitor_top_talkers(capture) -> None:
    summary, _ = capture
    want = scapy_talkers(ETH_FRAMES)
    top = summary["top_talkers"]
    assert {frozenset((t["a"], t["b"])): t["bytes"] for t in top["mac_pairs"]} == dict(
        want["mac_pairs"]
    )
    assert {frozenset((t["a"], t["b"])): t["bytes"] for t in top["ip_pairs"]} == dict(
        want["ip_pairs"]
    )
    assert {(t["proto"], t["port"]): t["bytes"] for t in top["ports"]} == dict(want["ports"])
    byte_counts = [t["bytes"] for t in top["ip_pairs"]]
    assert byte_counts == sorted(byte_counts, reverse=True)


@pytest.mark.skipif(
    shutil.which("tshark") is None and os.environ.get("CI") != "true",
    reason="tshark not installed (scripts/setup.sh installs it; under CI it must be there)",
)
def test_tshark_reads_the_capture(capture) -> None:
    _, path = capture
    out = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.len", "-e", "frame.protocols"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert [int(line.split("\t")[0]) for line in out] == [len(f) for f in ETH_FRAMES]
    assert "eth:ethertype:ip:udp" in out[10]


def test_pcap_replay_reproduces_the_capture(capture) -> None:
    _, path = capture
    peer = Peer()
    try:
        proc = cli("pcap-replay", str(path), "--socket", peer.path, "--fast", "--json")
        peer.wait_connected()
        got, _ = peer.receive(0, len(FRAMES), proc)
        rc, out, err = finish(proc, peer)
    finally:
        peer.close()
    assert rc == 0, err
    assert got == ETH_FRAMES
    summary = json.loads(out)
    assert summary["packets"] == len(FRAMES)
    assert summary["bytes"] == sum(map(len, ETH_FRAMES))
    assert summary["loops"] == 1 and summary["error"] is None


# --------------------------------------------------------------------------- filters
def _has(f: bytes, layer) -> bool:
    return len(f) >= 14 and layer in Ether(f)


def _ips(f: bytes) -> set[str]:
    if len(f) < 14:
        return set()
    p = Ether(f)
    out = set()
    for layer in (IP, IPv6):
        if layer in p:
            out |= {p[layer].src, p[layer].dst}
    if ARP in p:
        out |= {p[ARP].psrc, p[ARP].pdst}
    return out


def _ports(f: bytes) -> set[int]:
    if len(f) < 14:
        return set()
    p = Ether(f)
    return {x for layer in (TCP, UDP) if layer in p for x in (p[layer].sport, p[layer].dport)}


def _macs(f: bytes) -> set[str]:
    return {Ether(f).src, Ether(f).dst} if len(f) >= 14 else set()


FILTER_CASES = [
    (["--filter-proto", "udp"], lambda f: _has(f, UDP) or f == ETH_FRAMES[6]),  # + the fragment
    (
        ["--filter-ip", "10.0.0.2", "--filter-proto", "tcp,icmp"],
        lambda f: "10.0.0.2" in _ips(f) and (_has(f, TCP) or _has(f, ICMP)),
    ),
    (["--filter-mac", B, "--filter-port", "53"], lambda f: B in _macs(f) and 53 in _ports(f)),
    (
        ["--filter-proto", "arp", "--filter-proto", "0x88cc"],
        lambda f: _has(f, ARP) or f[12:14] == b"\x88\xcc",
    ),
    (["--filter-ip", "2001:db8::2"], lambda f: "2001:db8::2" in _ips(f)),
    (["--filter-proto", "vlan", "--filter-port", "22,5001"], lambda f: _has(f, Dot1Q)),
]


@pytest.mark.slow
def test_monitor_filters(tmp_path: Path) -> None:
    ids = range(1, len(FILTER_CASES) + 1)
    peer = Peer(ids=ids)
    procs, expected = [], []
    try:
        for if_id, (opts, pred) in zip(ids, FILTER_CASES, strict=True):
            want = [f for f in ETH_FRAMES if pred(f)]
            assert want, opts
            want.append(want[-1])  # a matching frame last: anything extra shows up early
            expected.append(want)
            procs.append(
                cli(
                    "monitor",
                    "--socket",
                    peer.path,
                    "--id",
                    str(if_id),
                    "--count",
                    str(len(want)),
                    "--duration",
                    "20",
                    "--write",
                    str(tmp_path / f"f{if_id}.pcap"),
                    "--json",
                    *opts,
                )
            )
        peer.wait_connected()
        for if_id, want in zip(ids, expected, strict=True):
            peer.send(if_id, ETH_FRAMES + [want[-1]])
        results = [finish(p, peer) for p in procs]
    finally:
        peer.close()
    for if_id, (opts, _), want, (rc, out, err) in zip(
        ids, FILTER_CASES, expected, results, strict=True
    ):
        assert rc == 0, (opts, err)
        summary = json.loads(out)
        frames, _, _ = pcap_frames(tmp_path / f"f{if_id}.pcap")
        assert frames == want, opts
        assert summary["packets"] == len(want), opts
        assert summary["received"]["packets"] == len(FRAMES) + 1, opts


@pytest.mark.slow
def test_monitor_rejects_bad_filters() -> None:
    for opts, message in (
        (["--filter-proto", "bogus"], "bad --filter-proto"),
        (["--filter-ip", "10.0.0.300"], "bad --filter-ip"),
        (["--filter-mac", "zz"], "bad MAC"),
        (["--filter-port", "70000"], "bad --filter-port"),
        (["--mode", "ip", "--filter-mac", A], "needs an ethernet-mode"),
    ):
        rc, _, err = finish(cli("monitor", "--socket", "@nobody-here", *opts))
        assert rc == 1 and message in err, (opts, err)


# --------------------------------------------------------------------------- ip mode
@pytest.mark.slow
def test_ip_mode_capture_and_replay(tmp_path: Path) -> None:
    path = tmp_path / "ip.pcap"
    peer = Peer(ids=(0, 1), mode="ip")
    try:
        mon = cli(
            *f"monitor --socket {peer.path} --mode ip --count 3 --write {path} --json".split()
        )
        peer.wait_connected(0)
        peer.send(0, IP_FRAMES)
        rc, out, err = finish(mon, peer)
        assert rc == 0, err
        frames, linktype, _ = pcap_frames(path)
        assert linktype == pcap.LINKTYPE_RAW
        assert frames == IP_FRAMES
        summary = json.loads(out)
        assert "mac_pairs" not in summary["top_talkers"]
        assert summary["protocols"]["ipv4"]["icmp"]["packets"] == 1
        assert summary["protocols"]["ipv4"]["tcp"]["packets"] == 1
        assert summary["protocols"]["ipv6"]["udp"] == {"packets": 1, "bytes": len(IP_FRAMES[1])}

        replay = cli(
            "pcap-replay", str(path), "--socket", peer.path, "--id", "1", "--mode", "ip", "--fast"
        )
        peer.wait_connected(1)
        got, _ = peer.receive(1, 3, replay)
        rc, out, err = finish(replay, peer)
        assert rc == 0, err
        assert got == IP_FRAMES
        assert "sent 3 packets" in out
    finally:
        peer.close()
    # an Ethernet capture does not go into an ip-mode interface
    eth = tmp_path / "eth.pcap"
    pcap.write_pcap(eth, ETH_FRAMES[:2])
    rc, _, err = finish(cli("pcap-replay", str(eth), "--socket", "@nobody", "--mode", "ip"))
    assert rc == 1 and "ethernet packets" in err and "ip-mode" in err


# --------------------------------------------------------------------------- replay pacing
@pytest.mark.slow
def test_replay_recorded_pace_rate_and_loop(tmp_path: Path) -> None:
    paced = tmp_path / "paced.pcap"
    frames = ETH_FRAMES[2:7]
    pcap.write_pcap(paced, frames, ts_ns=1_600_000_000_000_000_000, interval_ns=100_000_000)
    peer = Peer(ids=(0, 1, 2))
    try:
        replay = f"pcap-replay {paced} --socket {peer.path} --json"
        recorded = cli(*replay.split())
        rate = cli(*f"{replay} --id 1 --rate 50 --loop 2".split())
        fast = cli(*f"{replay} --id 2 --speed 4 --loop 3".split())
        peer.wait_connected()
        got: dict[int, list[bytes]] = {i: [] for i in (0, 1, 2)}
        end = time.monotonic() + 20
        while time.monotonic() < end and any(
            len(got[i]) < n for i, n in ((0, 5), (1, 10), (2, 15))
        ):
            for i in (0, 1, 2):
                batch = peer.ifaces[i].recv() if peer.ifaces[i].connected else []
                got[i].extend(batch)
            peer.sock.poll(0.001)
        results = [finish(p, peer) for p in (recorded, rate, fast)]
    finally:
        peer.close()
    for rc, _, err in results:
        assert rc == 0, err
    assert got[0] == frames
    assert got[1] == frames * 2
    assert got[2] == frames * 3

    # The schedule is absolute (a replay that fell behind catches up), so the tool's own
    # duration is the check: a replay that did not pace would end in milliseconds.  Arrival
    # times here are not: on a loaded machine this reader may be starved and take every
    # packet in one go, however well they were spaced when sent.
    # recorded pace: 4 gaps of 100 ms
    assert 0.4 <= json.loads(results[0][1])["duration"] <= 3.0
    # 10 packets at 50 pps: 9 gaps of 20 ms
    assert 0.18 <= json.loads(results[1][1])["duration"] <= 3.0
    # three loops at 4x: each loop 0.1 s, then a 25 ms gap (the mean gap, scaled)
    summary = json.loads(results[2][1])
    assert summary["loops"] == 3 and summary["packets"] == 15
    assert 0.35 <= summary["duration"] <= 3.0, summary


@pytest.mark.slow
def test_replay_waits_for_a_full_ring(tmp_path: Path) -> None:
    """More packets than the ring holds, as a server, into a slow reader: none lost."""
    path = tmp_path / "many.pcap"
    frames = [
        bytes(Ether(src=A, dst=B) / IP() / UDP(sport=i % 65536, dport=9)) for i in range(3000)
    ]
    frames[1000] = ETH_FRAMES[10]  # a chain in the middle
    pcap.write_pcap(path, frames)
    path_sock = memif.testing.unique_name("memif-replay")
    proc = cli(*f"pcap-replay {path} --socket {path_sock} --role server --fast --json".split())
    sock = memif.Socket(path_sock, app_name="pytest-client")
    try:
        client = sock.create_interface(role="client", id=0, ring_size=256, reconnect_interval=0.05)
        assert memif.testing.drive(sock, until=lambda: client.connected, timeout=15)
        got: list[bytes] = []
        end = time.monotonic() + 20
        while len(got) < len(frames) and time.monotonic() < end:
            if client.connected:
                got += client.recv(64)  # a slow reader: small bursts
            sock.poll(0.001)
        rc, out, err = finish(proc)
    finally:
        sock.close()
    assert rc == 0, err
    assert got == frames
    assert json.loads(out)["packets"] == len(frames)


# --------------------------------------------------------------------------- stopping, display
@pytest.mark.slow
def test_monitor_sigint_prints_summary_and_closes_pcap(tmp_path: Path) -> None:
    path = tmp_path / "int.pcap"
    peer = Peer()
    try:
        proc = cli("monitor", "--socket", peer.path, "--write", str(path), "--json")
        peer.wait_connected()
        peer.send(0, ETH_FRAMES)
        assert memif.testing.drive(peer.sock, until=lambda: peer.consumed(0), timeout=10)
        proc.send_signal(signal.SIGINT)
        rc, out, err = finish(proc, peer)
    finally:
        peer.close()
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["stopped_by"] == "signal"
    assert summary["written"] == len(FRAMES)
    assert pcap_frames(path)[0] == ETH_FRAMES  # flushed and complete


@pytest.mark.slow
def test_monitor_display_on_a_terminal_and_in_a_pipe() -> None:
    peer = Peer(ids=(0, 1))
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 120, 0, 0))
    try:
        args = f"monitor --socket {peer.path} --duration 1.5".split()
        tty = cli(*args, "--interval", "0.2", stdout=slave)
        os.close(slave)
        pipe = cli(*args, "--id", "1", "--interval", "0.4")
        peer.wait_connected()
        peer.send(0, ETH_FRAMES)
        peer.send(1, ETH_FRAMES)
        screen = b""
        end = time.monotonic() + 20
        while time.monotonic() < end:
            peer.sock.poll(0.005)
            if select.select([master], [], [], 0)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break  # the terminal closed: the monitor exited
                if not chunk:
                    break
                screen += chunk
        rc_tty, _, err_tty = finish(tty, peer)
        rc_pipe, out_pipe, err_pipe = finish(pipe, peer)
    finally:
        os.close(master)
        peer.close()
    assert rc_tty == 0, err_tty
    assert rc_pipe == 0, err_pipe
    text = screen.decode()
    assert "\x1b[" in text and "A\r" in text  # redrawn in place with cursor-up
    assert text.count("protocol") >= 3
    last = text.rsplit("A\r", 1)[1]
    assert "top IP pairs" in last and "10.0.0.1 <-> 10.0.0.2" in last
    assert f"monitor: {len(FRAMES)} packets" in last
    assert "\x1b" not in out_pipe  # plain text in a pipe, one block per interval
    assert 2 <= out_pipe.count("protocol") <= 6
    assert f"{len(FRAMES)} packets" in out_pipe.splitlines()[-1]


# --------------------------------------------------------------------------- classify
def test_classify_fields() -> None:
    frames = ETH_FRAMES
    width = cl.HEADER_BYTES
    hdr = np.zeros((len(frames), width), np.uint8)
    for i, f in enumerate(frames):
        hdr[i, : min(len(f), width)] = np.frombuffer(f[:width], np.uint8)
    f = cl.classify(hdr, np.array([len(x) for x in frames]))
    names = "arp ipv4/icmp ipv4/tcp ipv4/udp ipv4/other ipv6/icmpv6 ipv6/tcp ipv6/udp ipv6/other"
    order = (cl.ARP, cl.ICMP, cl.TCP4, cl.UDP4, cl.IP4_OTHER)
    order += (cl.ICMP6, cl.TCP6, cl.UDP6, cl.IP6_OTHER)
    by_category = dict(zip(order, names.split(), strict=True))
    labels = [by_category.get(int(c), "other") for c in f.category]
    assert labels == [lbl.split(":")[0] for lbl, _ in FRAMES]
    assert f.ethertype[-1] == cl.RUNT and f.ethertype[-2] == 0x88CC
    assert f.vlan.tolist() == [i in (8, 9) for i in range(len(frames))]
    assert (f.sport[6], f.dport[6]) == (-1, -1)  # a later fragment has no ports
    assert (f.sport[9], f.dport[9]) == (22, 50000)  # behind two VLAN tags
    assert (f.sport[13], f.dport[13]) == (443, 51000)  # behind an IPv6 extension header
    assert f.is_arp_ip[:2].all()


# --------------------------------------------------------------------------- memif.pcap
def test_pcap_round_trip_microseconds(tmp_path: Path) -> None:
    path = tmp_path / "us.pcap"
    ts = 1_700_000_000_123_456_789
    segs = [b"\x01" * 100, np.full(50, 2, np.uint8), memoryview(b"\x03" * 10)]
    with pcap.PcapWriter(path) as w:
        w.write(ETH_FRAMES[0], ts)
        w.write(segs, ts + 1_000)  # a chain: its segments in order
        w.write(ETH_FRAMES[10], ts + 2_000_000_000)
    raw = path.read_bytes()
    assert struct.unpack("<IHHiIII", raw[:24]) == (0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    with pcap.PcapReader(path) as r:
        recs = list(r)
        assert (r.linktype, r.snaplen, r.nanosecond, r.byteorder) == (1, 262144, False, "little")
    chain = b"\x01" * 100 + b"\x02" * 50 + b"\x03" * 10
    assert [x.data for x in recs] == [ETH_FRAMES[0], chain, ETH_FRAMES[10]]
    usec = [t // 1000 * 1000 for t in (ts, ts + 1000, ts + 2_000_000_000)]
    assert [x.ts_ns for x in recs] == usec
    assert not any(x.truncated for x in recs)
    assert [bytes(d) for d, _ in RawPcapReader(str(path))] == [x.data for x in recs]
    # Records written back keep their timestamps
    copy = tmp_path / "copy.pcap"
    assert pcap.write_pcap(copy, recs) == 3
    assert pcap.read_pcap(copy) == recs


def test_pcap_nanoseconds_both_byte_orders(tmp_path: Path) -> None:
    ts = 1_700_000_000_987_654_321
    ns = tmp_path / "ns.pcap"
    pcap.write_pcap(ns, [b"abc" * 20], nanosecond=True, ts_ns=ts)
    assert ns.read_bytes()[:4] == bytes.fromhex("4d3cb2a1")
    (rec,) = pcap.read_pcap(ns)
    assert rec.ts_ns == ts and rec.data == b"abc" * 20
    # written by hand, big-endian, nanosecond magic
    body = b"\x11" * 70
    big = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 101)
    big += struct.pack(">IIII", 1_700_000_000, 987_654_321, len(body), 1500) + body
    with pcap.PcapReader(io.BytesIO(big)) as r:
        (rec,) = list(r)
        assert (r.byteorder, r.nanosecond, r.linktype, r.snaplen) == ("big", True, 101, 65535)
    assert rec == pcap.Record(ts, body, 1500) and rec.truncated
    # written by scapy with nanosecond timestamps
    sc = tmp_path / "scapy.pcap"
    pkt = Ether(src=A, dst=B) / IP() / UDP()
    pkt.time = scapy.EDecimal("1700000000.123456789")
    wrpcap(str(sc), [pkt], nano=True)
    (rec,) = pcap.read_pcap(sc)
    assert rec.ts_ns == 1_700_000_000_123_456_789 and rec.data == bytes(pkt)


def test_pcap_snaplen(tmp_path: Path) -> None:
    path = tmp_path / "snap.pcap"
    pcap.write_pcap(path, [ETH_FRAMES[10], ETH_FRAMES[0]], snaplen=100)
    recs = pcap.read_pcap(path)
    assert [(len(r.data), r.orig_len, r.truncated) for r in recs] == [
        (100, 9000, True),
        (len(ETH_FRAMES[0]), len(ETH_FRAMES[0]), False),
    ]
    assert recs[0].data == ETH_FRAMES[10][:100]
    _, _, meta = pcap_frames(path)
    assert (meta[0].caplen, meta[0].wirelen) == (100, 9000)


def test_pcap_truncated_and_bad_files(tmp_path: Path) -> None:
    good = tmp_path / "good.pcap"
    pcap.write_pcap(good, ETH_FRAMES[:3])
    raw = good.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(raw[:-5])  # in the middle of the third record's data
    reader = pcap.PcapReader(cut)
    got = []
    with pytest.raises(pcap.PcapError, match=r"cut short in record 3 at byte \d+: record needs"):
        for rec in reader:
            got.append(rec.data)
    reader.close()
    assert got == ETH_FRAMES[:2]  # every complete record first
    assert [r.data for r in pcap.read_pcap(cut, strict=False)] == ETH_FRAMES[:2]
    cut.write_bytes(raw[: 24 + 16 + len(ETH_FRAMES[0]) + 7])  # a record header cut
    with pytest.raises(pcap.PcapError, match="record header has 7 of 16 bytes"):
        pcap.read_pcap(cut)
    for data, message in (
        (raw[:10], "truncated file header"),
        (b"", "empty"),
        (bytes.fromhex("0a0d0d0a") + bytes(24), "pcapng"),
        (b"GIF89a" + bytes(30), "not a pcap file"),
    ):
        cut.write_bytes(data)
        with pytest.raises(pcap.PcapError, match=message):
            pcap.read_pcap(cut)
    # and the replay tool says so
    cut.write_bytes(b"GIF89a" + bytes(30))
    rc, _, err = finish(cli("pcap-replay", str(cut), "--socket", "@nobody"))
    assert rc == 1 and "not a pcap file" in err


def test_pcap_write_batch_from_a_real_queue() -> None:
    uniform = [bytes([i]) * 64 for i in range(20)]
    mixed = [ETH_FRAMES[0], ETH_FRAMES[10], ETH_FRAMES[3], ETH_FRAMES[13]]
    with memif.testing.pair() as (server, client):
        for frames, index in ((uniform, None), (uniform, np.array([1, 5, 19])), (mixed, [0, 1, 3])):
            client.send(frames)
            q = server.rx_queues[0]
            batch = q.rx_burst(256)
            assert len(batch) == len(frames)
            for snaplen in (pcap.DEFAULT_SNAPLEN, 50):
                buf = io.BytesIO()
                w = pcap.PcapWriter(buf, snaplen=snaplen)
                n = w.write_batch(batch, 1_000_000_000, index)
                w.flush()
                picked = frames if index is None else [frames[i] for i in index]
                assert n == len(picked)
                recs = pcap.read_pcap(io.BytesIO(buf.getvalue()))
                assert [r.data for r in recs] == [f[:snaplen] for f in picked]
                assert [r.orig_len for r in recs] == [len(f) for f in picked]
                assert all(r.ts_ns == 1_000_000_000 for r in recs)
            q.refill()


def test_linktypes() -> None:
    assert pcap.linktype_for_mode("ethernet") == pcap.LINKTYPE_ETHERNET == 1
    assert pcap.linktype_for_mode("ip") == pcap.LINKTYPE_RAW == 101
    assert pcap.mode_accepts("ip", pcap.LINKTYPE_RAW)
    assert not pcap.mode_accepts("ip", pcap.LINKTYPE_ETHERNET)
    assert not pcap.mode_accepts("ethernet", pcap.LINKTYPE_RAW)
