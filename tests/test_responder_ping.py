"""``memif responder`` and ``memif ping``: real processes, real sockets, real shared memory.

* the responder (a subprocess) answers ``memif ping`` (another subprocess) in both roles, in
  ethernet and ip mode, and across reconnects;
* ping to an address nobody answers fails ARP with one clear line and exit status 1;
* frames crafted here through the library get exactly the replies they should (checksums
  verified with ``packet.checksum`` and recomputed by scapy), on every queue, and everything
  else is ignored;
* ``--reflect`` echoes arbitrary frames (runts and chained ones included) with MACs swapped;
* ``memif ping`` gets answers from DPDK testpmd's ``icmpecho`` forwarding mode, an ARP and ICMP
  responder nobody here wrote (``@pytest.mark.testpmd``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import ENV, memif_argv
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether

import memif
from memif import packet as pkt
from memif.cli import build_parser
from memif.testing import drive, unique_name
from memif.tools.common import open_interface
from memif.tools.ping import cli as ping_app
from memif.tools.ping.responder import Responder

R_IP, R_MAC = "10.0.0.1", "02:00:00:00:00:aa"  # the responder
OUR_IP, OUR_MAC = pkt.ip4("10.0.0.2"), bytes.fromhex("020000000001")
RTT_LINE = re.compile(r"^64 bytes from 10\.0\.0\.1: icmp_seq=(\d+) ttl=64 time=[\d.]+ ms$")


def run_memif(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        memif_argv(*args), env=ENV, capture_output=True, text=True, timeout=timeout, check=False
    )


@contextlib.contextmanager
def responder(*args: str) -> Iterator[subprocess.Popen[str]]:
    """A ``memif responder`` subprocess; killed if the test did not stop it."""
    proc = subprocess.Popen(
        memif_argv("responder", *args),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[dict, str]:
    """Stop a ``--json`` responder with ``sig``; return its summary and stderr."""
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), err


# ----------------------------------------------------------------------------- ping <-> responder


@pytest.mark.slow
@pytest.mark.parametrize("responder_role", ["server", "client"])
def test_ping_answered_by_responder(responder_role: str) -> None:
    name = unique_name("ping")
    ping_role = "client" if responder_role == "server" else "server"
    common = ["--socket", name, "--connect-timeout", "10"]
    with responder(
        *common, "--role", responder_role, "--ip", R_IP, "--mac", R_MAC, "--json"
    ) as proc:
        res = run_memif("ping", *common, "--role", ping_role, R_IP, "-c", "4", "-i", "0.05")
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert lines[0] == "PING 10.0.0.1 (10.0.0.1) from 10.0.0.2 memif0: 56(84) bytes of data."
        seqs = [int(m.group(1)) for m in map(RTT_LINE.match, lines) if m]
        assert seqs == [1, 2, 3, 4], res.stdout
        assert "--- 10.0.0.1 ping statistics ---" in lines
        assert re.search(
            r"^4 packets transmitted, 4 received, 0% packet loss, time \d+ms$", res.stdout, re.M
        )
        assert re.search(
            r"^rtt min/avg/max/mdev = [\d.]+/[\d.]+/[\d.]+/[\d.]+ ms$", res.stdout, re.M
        )

        # A second ping on the same responder (it serves across reconnects), as JSON.
        res = run_memif(
            "ping", *common, "--role", ping_role, R_IP, "-c", "3", "-i", "0.02", "--json",
            "--source-ip", "10.0.0.7", "-s", "1400",
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        summary = json.loads(res.stdout)
        assert summary["transmitted"] == summary["received"] == 3
        assert summary["loss_pct"] == 0 and summary["duplicates"] == 0
        assert summary["target_mac"] == R_MAC and summary["source"] == "10.0.0.7"
        assert len(summary["rtts"]) == 3
        assert 0 < summary["rtt_min_ms"] <= summary["rtt_avg_ms"] <= summary["rtt_max_ms"]
        assert summary["rtt_mdev_ms"] >= 0

        counters, err = stop(proc, signal.SIGTERM if responder_role == "client" else signal.SIGINT)
    assert counters["icmp_replies"] == 7 and counters["arp_replies"] == 2
    assert counters["ignored"] == 0 and counters["tx_dropped"] == 0
    assert counters["rx"] == 9 and counters["connects"] == 2
    assert counters["ip"] == R_IP and counters["mac"] == R_MAC
    assert "icmp replies 7" in err


@pytest.mark.slow
def test_ping_ip_mode_polling_and_queues() -> None:
    """No Ethernet header and no ARP in ip mode; polling queues; two queue pairs."""
    name = unique_name("ping-ip")
    opts = ["--socket", name, "--mode", "ip", "--polling", "--queues", "2"]
    with responder(*opts, "--role", "server", "--ip", R_IP, "--json") as proc:
        res = run_memif("ping", *opts, R_IP, "-c", "3", "-i", "0.02", "--json")
        assert res.returncode == 0, res.stderr
        summary = json.loads(res.stdout)
        assert summary["received"] == 3 and summary["target_mac"] is None
        counters, _ = stop(proc)
    assert counters["icmp_replies"] == 3 and counters["arp_replies"] == 0


@pytest.mark.slow
def test_ping_ends_while_the_peer_floods_it() -> None:
    """A peer that keeps ping's receive ring full (echo replies to no request of its: ping
    parses each one) does not keep it from sending its request, giving up after -W and
    exiting 1."""
    name = unique_name("ping-flood")
    icmp = pkt.icmp_echo(pkt.ICMP_ECHO_REPLY, 0, 1, bytes(56))  # ping's ident is never 0
    noise = pkt.ipv4(pkt.ip4(R_IP), OUR_IP, pkt.PROTO_ICMP, icmp)
    with memif.Socket(name) as sock:
        iface = sock.create_interface(role="server", id=0, mode="ip")
        proc = subprocess.Popen(
            memif_argv(
                "ping", "--socket", name, "--mode", "ip", "-I", "10.0.0.2", R_IP, "-c", "1",
                "-W", "0.2", "--json",
            ),
            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 20  # fails a ping that is still busy by then
            flooded = 0
            while proc.poll() is None and time.monotonic() < deadline:
                if iface.connected:
                    flooded += iface.send([noise] * 256)
                sock.poll(0)
            assert proc.poll() is not None, "ping never ended under the flood"
            out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 1, err
    summary = json.loads(out)
    assert summary["transmitted"] == 1 and summary["received"] == 0
    assert flooded > 256  # the flood ran while ping did


@pytest.mark.slow
def test_ping_nobody_answers() -> None:
    """ARP for an address nobody owns fails: one clear line, exit 1 (no reply, as ping(8))."""
    name = unique_name("ping-none")
    with responder("--socket", name, "--role", "server", "--ip", R_IP, "--json") as proc:
        args = ["ping", "--socket", name, "10.0.0.99", "-c", "2", "-W", "0.2", "--arp-tries", "2"]
        res = run_memif(*args)
        assert res.returncode == 1
        assert res.stderr.strip().splitlines() == [
            "memif: no ARP reply from 10.0.0.99 (asked 2 times from 10.0.0.1, 0.2 s apart)"
        ]
        res = run_memif(*args, "--json")
        assert res.returncode == 1
        summary = json.loads(res.stdout)
        assert summary["transmitted"] == summary["received"] == 0
        assert summary["loss_pct"] == 100 and summary["rtt_avg_ms"] is None
        assert summary["error"].startswith("no ARP reply from 10.0.0.99")
        counters, _ = stop(proc)
    assert counters["ignored"] == 4 and counters["arp_replies"] == 0


@pytest.mark.slow
def test_errors_are_one_line() -> None:
    res = run_memif("ping", "--socket", unique_name("nobody"), R_IP, "--connect-timeout", "0.3")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("memif: not connected after 0.3 s")
    for argv in (
        ["ping", "10.0.0"],
        ["ping", R_IP, "-c", "0"],
        ["ping", R_IP, "--mac", "nope"],
        ["responder", "--ip", "300.1.1.1"],
        ["responder", "--duration", "-1"],
    ):
        res = run_memif(*argv)
        assert res.returncode == 2, argv
        assert res.stderr.count("\n") == 1 and res.stderr.startswith("memif: "), res.stderr
    res = run_memif("responder", "--socket", unique_name("nobody"), "--duration", "0.3")
    assert res.returncode == 1
    info, error = res.stderr.splitlines()
    assert "waiting for the peer" in info and error.startswith("memif: not connected after 0.3 s")


def test_responder_stopped_before_any_peer() -> None:
    """Interrupting a responder that is still waiting is a normal stop: exit 0, a summary."""
    with responder("--socket", unique_name("lonely"), "--json") as proc:
        assert proc.stderr is not None
        assert "waiting for the peer" in proc.stderr.readline()
        counters, _ = stop(proc, signal.SIGTERM)
    assert counters["connects"] == 0 and counters["rx"] == 0


# ----------------------------------------------------------------------------- crafted frames


def _ip_header(src: bytes, dst: bytes, payload_len: int, *, proto: int = pkt.PROTO_ICMP,
               options: bytes = b"", frag: int = 0x4000) -> bytes:  # fmt: skip
    ihl = (pkt.IP_HLEN + len(options)) // 4
    hdr = bytearray(
        bytes([0x40 | ihl, 0]) + (ihl * 4 + payload_len).to_bytes(2, "big") + b"\x12\x34"
        + frag.to_bytes(2, "big") + bytes([17, proto, 0, 0]) + src + dst + options
    )  # fmt: skip
    hdr[10:12] = pkt.checksum(bytes(hdr)).to_bytes(2, "big")
    return bytes(hdr)


def _echo(seq: int, data: bytes = b"hello memif", *, dst_ip: str = R_IP, mac: str = R_MAC,
          options: bytes = b"", pad_to: int = 0) -> bytes:  # fmt: skip
    icmp = pkt.icmp_echo(pkt.ICMP_ECHO_REQUEST, 0xBEEF, seq, data)
    ip = _ip_header(OUR_IP, pkt.ip4(dst_ip), len(icmp), options=options) + icmp
    frame = pkt.ethernet(bytes.fromhex(mac.replace(":", "")), OUR_MAC, pkt.ETH_P_IP, ip)
    return frame.ljust(pad_to, b"\0")


def _check_echo_reply(frame: bytes, request: bytes) -> None:
    """A correct reply to ``request``: addresses swapped, TTL 64, checksums verify."""
    assert frame[0:6] == OUR_MAC and frame[6:12] == bytes.fromhex("0200000000aa")
    p = pkt.parse(frame)
    q = pkt.parse(request)
    assert p is not None and q is not None and p.ethertype == pkt.ETH_P_IP
    ihl = (frame[14] & 0xF) * 4
    assert pkt.checksum(frame[14 : 14 + ihl]) == 0  # IP header checksum
    assert pkt.checksum(p.l4) == 0  # ICMP checksum
    assert p.ttl == 64 and p.ip_src == q.ip_dst and p.ip_dst == q.ip_src
    assert frame[14 + pkt.IP_HLEN : 14 + ihl] == request[14 + pkt.IP_HLEN : 14 + ihl]  # options
    assert len(frame) == 14 + int.from_bytes(request[16:18], "big")  # no Ethernet padding
    echo, asked = pkt.parse_icmp_echo(p.l4), pkt.parse_icmp_echo(q.l4)
    assert echo is not None and asked is not None
    assert echo[0] == pkt.ICMP_ECHO_REPLY and echo[1:] == (0,) + asked[2:]
    rebuilt = Ether(frame)
    del rebuilt[IP].chksum, rebuilt[ICMP].chksum
    assert bytes(Ether(bytes(rebuilt))) == frame  # the checksums scapy computes, exactly


def _recv_n(sock: memif.Socket, iface: memif.Interface, n: int, queue: int = 0) -> list[bytes]:
    got: list[bytes] = []
    drive(sock, until=lambda: bool(got.extend(iface.recv(queue=queue))) or len(got) >= n)
    return got


@pytest.mark.slow
def test_responder_answers_crafted_frames() -> None:
    name = unique_name("crafted")
    with responder(
        "--socket", name, "--role", "server", "--ip", R_IP, "--mac", R_MAC, "--queues", "2",
        "--json",
    ) as proc, memif.Socket(name) as sock:  # fmt: skip
        iface = sock.create_interface(
            role="client", id=0, rx_queues=2, tx_queues=2, reconnect_interval=0.05
        )
        assert drive(sock, until=lambda: iface.connected, timeout=10)

        # ARP request for its address: an ARP reply from its MAC.
        iface.send([pkt.arp_request(OUR_MAC, OUR_IP, pkt.ip4(R_IP))])
        (reply,) = _recv_n(sock, iface, 1)
        p = pkt.parse(reply)
        assert p is not None and p.ethertype == pkt.ETH_P_ARP
        assert (p.dst, p.src) == (OUR_MAC, bytes.fromhex("0200000000aa"))
        assert p.arp == (pkt.ARP_REPLY, p.src, pkt.ip4(R_IP), OUR_MAC, OUR_IP)

        # Echo requests: plain, padded to 60 bytes, with IP options, large (chained replies).
        requests = [
            _echo(1),
            _echo(2, b"", pad_to=60),
            _echo(3, options=b"\x01\x01\x01\x00"),
            _echo(4, bytes(range(256)) * 16),  # a 4138-byte frame, over 2048-byte buffers
        ]
        iface.send(requests)
        replies = _recv_n(sock, iface, len(requests))
        assert len(replies) == len(requests)
        for frame, request in zip(replies, requests, strict=True):
            _check_echo_reply(frame, request)

        # Everything else is ignored and counted.
        bad_icmp = bytearray(_echo(5))
        bad_icmp[-1] ^= 0xFF  # ICMP checksum no longer verifies
        bad_ip = bytearray(_echo(6))
        bad_ip[14 + 8] = 1  # TTL changed: IP header checksum no longer verifies
        udp = pkt.ethernet(
            bytes.fromhex("0200000000aa"), OUR_MAC, pkt.ETH_P_IP,
            pkt.ipv4(OUR_IP, pkt.ip4(R_IP), pkt.PROTO_UDP, b"\x00\x07\x00\x07\x00\x0c\x00\x00abcd"),
        )  # fmt: skip
        fragment = bytearray(_echo(7))
        fragment[14:34] = _ip_header(OUR_IP, pkt.ip4(R_IP), len(fragment) - 34, frag=0x2000)
        ignored = [
            pkt.arp_request(OUR_MAC, OUR_IP, pkt.ip4("10.0.0.3")),  # somebody else's address
            pkt.arp_reply(OUR_MAC, OUR_IP, bytes.fromhex("0200000000aa"), pkt.ip4(R_IP)),
            _echo(8, dst_ip="10.0.0.3"),  # somebody else's address
            _echo(9, mac="02:00:00:00:00:bb"),  # unicast to somebody else's MAC
            bytes(bad_icmp),
            bytes(bad_ip),
            udp,
            bytes(fragment),
            pkt.ethernet(pkt.BROADCAST, OUR_MAC, pkt.ETH_P_IPV6, bytes(40)),
            b"\x01\x02\x03",  # a runt
        ]
        last = _echo(10)
        iface.send([*ignored, last])
        (reply,) = _recv_n(sock, iface, 1)  # only the last one is answered
        _check_echo_reply(reply, last)

        # The second queue pair: a request on queue 1 is answered on queue 1.
        iface.send([_echo(11)], queue=1)
        (reply,) = _recv_n(sock, iface, 1, queue=1)
        _check_echo_reply(reply, _echo(11))
        assert iface.recv(queue=0) == []

        counters, _ = stop(proc)
    assert counters == {
        **counters,
        "rx": 1 + len(requests) + len(ignored) + 2,
        "arp_replies": 1,
        "icmp_replies": len(requests) + 2,
        "ignored": len(ignored),
        "tx_dropped": 0,
    }


@pytest.mark.parametrize("burst", [256, 7], ids=["full-bursts", "small-bursts"])
def test_reply_checksums_random_requests(burst: int) -> None:
    """Replies to random echo requests (any TTL, ident, seq, size) all verify.

    The responder updates the checksums incrementally (RFC 1624); random headers and payloads
    reach the sums' edge cases.  In-process: the ``Responder`` class over a real pair, taking
    full bursts (answered from header rows) or small ones (frame by frame, as a ping's).
    """
    rng = np.random.default_rng(1)
    requests = []
    for _ in range(400):
        data = rng.integers(0, 256, int(rng.integers(0, 1500)), np.uint8).tobytes()
        ident, seq, ttl = (int(x) for x in rng.integers(0, 0x10000, 3))
        icmp = pkt.icmp_echo(pkt.ICMP_ECHO_REQUEST, ident, seq, data)
        ip = pkt.ipv4(OUR_IP, pkt.ip4(R_IP), pkt.PROTO_ICMP, icmp, ttl=ttl % 255 + 1, ident=seq)
        requests.append(pkt.ethernet(bytes.fromhex("0200000000aa"), OUR_MAC, pkt.ETH_P_IP, ip))
    r = Responder(pkt.ip4(R_IP), bytes.fromhex("0200000000aa"))
    with memif.testing.pair() as (server, client):
        socks = (server.socket, client.socket)
        assert drive(*socks, until=lambda: server.tx_queues[0].free_slots() >= len(requests))
        assert client.send(requests) == len(requests)
        while r.process(server.rx_queues[0], server.tx_queues[0], burst):
            pass
        replies = client.recv(1024)
    assert r.icmp_replies == len(requests) == len(replies) and r.ignored == 0
    for frame, request in zip(replies, requests, strict=True):
        _check_echo_reply(frame, request)


@pytest.mark.slow
@pytest.mark.parametrize("responder_role", ["server", "client"])
def test_reflect_echoes_every_frame(responder_role: str) -> None:
    name = unique_name("reflect")
    ours = "client" if responder_role == "server" else "server"
    rng = np.random.default_rng(7)
    frames = [rng.integers(0, 256, int(n), np.uint8).tobytes() for n in rng.integers(60, 1515, 300)]
    frames += [b"\x05" * 10, rng.integers(0, 256, 5000, np.uint8).tobytes(), b"\xaa" * 12]

    def swapped(f: bytes) -> bytes:
        return f[6:12] + f[0:6] + f[12:] if len(f) >= 12 else f

    with memif.Socket(name) as sock:
        iface = sock.create_interface(role=ours, id=0, reconnect_interval=0.05)
        with responder("--socket", name, "--role", responder_role, "--reflect", "--json") as proc:
            # A server transmits into buffers the client posts just after connecting.
            txq_ready = lambda: iface.connected and iface.tx_queues[0].free_slots() >= 256  # noqa: E731
            assert drive(sock, until=txq_ready, timeout=10)
            got: list[bytes] = []
            for chunk in (frames[:256], frames[256:]):  # whole bursts of 256, then the odd ones
                assert iface.send(chunk) == len(chunk)
                got += _recv_n(sock, iface, len(chunk))
            counters, _ = stop(proc)
    assert got == [swapped(f) for f in frames]
    assert counters["reflected"] == counters["rx"] == len(frames)
    assert counters["ignored"] == counters["tx_dropped"] == 0


# ----------------------------------------------------------------------------- DPDK testpmd


@pytest.mark.testpmd
@pytest.mark.parametrize("testpmd_role", ["server", "client"])
def test_ping_testpmd_icmpecho(testpmd_binary: str, testpmd_role: str, tmp_path: Path) -> None:
    """testpmd's icmpecho mode answers ARP and ICMP echo: `memif ping` gets replies from it.

    `memif ping` runs in this process (the same code as the command, through its parser) so that
    testpmd is told to ``stop`` before our side disconnects (testpmd crashes otherwise).
    """
    from memif.tools.testpmd import MemifPort, Testpmd

    path = str(tmp_path / "icmpecho.sock")
    tp_mac = "02:dd:00:00:00:01"
    our_role = "client" if testpmd_role == "server" else "server"
    argv = ["ping", "--socket", path, "--role", our_role, "10.9.9.9", "-c", "5", "-i", "0.05"]
    args = build_parser().parse_args(argv)
    port = MemifPort(testpmd_role, socket=path, mac=tp_mac)
    opened: list = []
    if testpmd_role == "client":  # our server must listen before testpmd starts: it tries once
        args.connect_timeout = 30
        opener = threading.Thread(target=lambda: opened.append(open_interface(args, "py")))
        opener.start()
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)
    with Testpmd([port], forward_mode="icmpecho", binary=testpmd_binary) as tp:
        if testpmd_role == "client":
            opener.join(30)
            sock, iface = opened[0]
        else:
            sock, iface = open_interface(args, "py")
        try:
            tp.wait_link_up()
            tp.start()
            out = io.StringIO()
            rc = ping_app.ping(args, sock, iface, out=out)
            args.json = True
            json_out = io.StringIO()
            with contextlib.redirect_stdout(json_out):
                rc_json = ping_app.ping(args, sock, iface)
            stats = tp.port_stats()
            tp.stop()
        finally:
            sock.close()
    text = out.getvalue()
    assert rc == 0, text
    lines = [ln for ln in text.splitlines() if ln.startswith("64 bytes from 10.9.9.9")]
    assert [int(re.search(r"icmp_seq=(\d+)", ln).group(1)) for ln in lines] == [1, 2, 3, 4, 5]
    assert all(re.search(r" ttl=64 time=[\d.]+ ms$", ln) for ln in lines)
    assert "5 packets transmitted, 5 received, 0% packet loss" in text
    assert rc_json == 0
    summary = json.loads(json_out.getvalue())
    assert summary["received"] == 5 and summary["target_mac"] == tp_mac
    assert stats.rx_packets == stats.tx_packets == 12  # 2 ARP + 10 echo requests, all answered
