"""memifd and memifctl as real processes: a switch daemon, its CLI socket, memif peers.

Each test starts ``memifd`` as a subprocess with a startup file (the ``start`` fixture,
:class:`helpers.Memifd`; sockets under ``tmp_path``, abstract names unique per run),
talks to it with ``memifctl`` subprocesses (exit codes, stdout, stderr) or the in-process
:class:`memif.ctl.main.Client` when only the reply matters, and connects
:class:`memif.Socket` peers built here to move real frames through shared memory.
Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import ENV, Memifd, memif_popen, memifctl, memifctl_argv

import memif
from memif import packet as pkt
from memif.testing import drive, unique_name

MAC_A, MAC_B, MAC_C = (bytes.fromhex(f"0200000000{x}") for x in ("0a", "0b", "0c"))
MAC_R = "02:00:00:00:02:02"  # the responder's


# --------------------------------------------------------------------------- helpers
class Peer:
    """A Python memif endpoint (client by default) of one of the switch's ports."""

    def __init__(self, socket_name: str, role: str = "client", name: str = "peer") -> None:
        self.sock = memif.Socket(socket_name, app_name=name)
        self.iface = self.sock.create_interface(role=role, id=0, reconnect_interval=0.1)

    def pump(self, until: Callable[[], bool], timeout: float = 5.0) -> bool:
        return drive(self.sock, until=until, timeout=timeout)

    def connect(self) -> Peer:
        assert self.pump(lambda: self.iface.connected), self.iface.local_disc_reason
        return self

    def send(self, *frames: bytes) -> None:
        assert self.iface.send(list(frames)) == len(frames)

    def recv(self, n: int, timeout: float = 3.0) -> list[bytes]:
        got: list[bytes] = []

        def done() -> bool:
            if self.iface.connected:
                got.extend(self.iface.recv())
            return len(got) >= n

        self.pump(done, timeout)
        return got

    def close(self) -> None:
        self.sock.close()


def frame(dst: bytes, src: bytes, tag: bytes) -> bytes:
    return pkt.ethernet(dst, src, 0x88B5, tag.ljust(50, b"."))


def bridge_config(a: str, b: str, *more: str) -> list[str]:
    """Two master ports memif1/0 and memif2/0 in bridge domain 1, admin-up."""
    return [
        f"create memif socket id 1 filename {a}",
        f"create memif socket id 2 filename {b}",
        "create interface memif id 0 socket-id 1 master",
        "create interface memif id 0 socket-id 2 master",
        "create bridge-domain 1 learn 1 mac-age 5",
        "set interface l2 bridge memif1/0 1",
        "set interface l2 bridge memif2/0 1",
        "set int state memif1/0 up",
        "set int st memif2/0 up",
        *more,
    ]


# --------------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_memifctl_one_shot_commands_and_exit_codes(start, tmp_path: Path) -> None:
    d = start(["create memif socket id 1 filename " + unique_name("memifd")])
    r = d.ctl("show", "version")
    assert r.returncode == 0 and r.stdout.startswith("memifd v"), r
    r = d.ctl(
        "cre", "int", "memif", "id", "3", "socket-id", "1", "master", "hw-addr", "02:fe:00:00:00:03"
    )
    assert (r.returncode, r.stdout.strip(), r.stderr) == (0, "memif1/3", "")
    assert d.ctl("set", "int", "st", "memif1/3", "up").returncode == 0
    assert d.ctl("set", "interface", "ip", "address", "memif1/3", "10.9.0.1/24").returncode == 0
    r = d.ctl("sh", "int")
    assert r.returncode == 0
    # State is the admin state (VPP's): up, though no peer is connected
    assert re.search(r"^memif1/3\s+1\s+up\s+9000/0/0/0\s+rx packets\s+0$", r.stdout, re.M), r.stdout
    assert "tx-error" in r.stdout and "drops" in r.stdout
    r = d.ctl("show", "interface", "address")
    assert "memif1/3 (up):" in r.stdout and "L3 10.9.0.1/24" in r.stdout
    data = json.loads(d.ctl("show", "interface", json_out=True).stdout)
    assert data[0]["name"] == "memif1/3" and data[0]["mac"] == "02:fe:00:00:00:03"
    for key in ("state", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "drops"):
        assert key in data[0]
    r = d.ctl("help")
    assert "create interface memif" in r.stdout and "show bridge-domain" in r.stdout
    r = d.ctl("show", "?")
    assert "show memif" in r.stdout and "create" not in r.stdout
    assert d.ctl("delete", "interface", "memif", "memif1/3").returncode == 0
    assert json.loads(d.ctl("show", "interface", json_out=True).stdout) == []
    # stdin not a terminal: one command per line, non-zero if any failed
    p = memifctl(d.cli_path, input="# comment\nshow version\n\nshow nonsense\n")
    assert p.returncode == 1 and p.stdout.startswith("memifd v")
    assert p.stderr.startswith("memifctl: <stdin>:4: unknown word 'nonsense'")


@pytest.mark.parametrize(
    ("words", "needle"),
    [
        (["show", "foo"], "unknown word 'foo' in command 'show foo': expected bridge-domain,"),
        (["frobnicate"], "unknown command 'frobnicate': expected clear, create,"),
        (["s", "int"], "ambiguous command 's': could be set, show"),
        (["cre", "int", "memif", "bogus", "1"], "unknown argument 'bogus' for 'create interface"),
        (["set", "int", "state", "memif9/9", "up"], "unknown interface 'memif9/9'"),
        (["create", "interface", "memif", "ring-size", "1000", "master"], "not a power of 2"),
        (["create", "bridge-domain", "1", "learn", "yes"], "bad learn 'yes'"),
        (["set", "interface"], "incomplete command 'set interface': expected ip, l2, l3,"),
        (["delete", "memif", "socket", "id", "0"], "socket id 0 is the default socket"),
        (["ping", "10.0.0.300"], "bad address '10.0.0.300' for 'ping': expected a.b.c.d"),
    ],
)
@pytest.mark.slow
def test_bad_commands_fail_with_one_line(start, words: list[str], needle: str) -> None:
    d = start([])
    r = d.ctl(*words)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("memifctl: "), r.stderr
    assert needle in r.stderr


def test_memifctl_without_daemon(tmp_path: Path) -> None:
    path = str(tmp_path / "nobody.sock")
    r = memifctl(path, "show", "version")
    assert r.returncode == 2
    assert r.stderr.strip() == f"memifctl: cannot connect to memifd at {path}: " + os.strerror(2)


def test_bad_startup_file_names_the_line(tmp_path: Path) -> None:
    d = Memifd(tmp_path, ["create bridge-domain 1", "create interface memif id 0 socket-id 7"])
    _, err = d.proc.communicate(timeout=20)
    assert d.proc.returncode == 1
    # line 1 is the comment, 2 blank: the failing command is line 4
    assert err.startswith(f"memifd: {d.conf}:4: socket id 7 does not exist"), err
    assert f"{d.conf}:4: socket id 7 does not exist" in d.log()
    assert not os.path.exists(d.cli_path)


def test_second_daemon_refuses_a_live_cli_socket(start, tmp_path: Path) -> None:
    first = start([])
    (tmp_path / "second").mkdir()
    second = Memifd(tmp_path / "second", [], cli=first.cli_path)
    _, err = second.proc.communicate(timeout=20)
    assert second.proc.returncode == 1
    assert f"memifd: CLI socket {first.cli_path}: another memifd is serving" in err
    assert first.ctl("show", "version").returncode == 0


def test_interactive_shell_on_a_terminal(start, tmp_path: Path) -> None:
    import pty
    import select

    d = start([])
    pid, fd = pty.fork()
    if pid == 0:  # the child: memifctl on a terminal, history under tmp_path
        env = {**ENV, "HOME": str(tmp_path), "TERM": "dumb"}
        os.execve(sys.executable, memifctl_argv(d.cli_path), env)

    def read_until(token: bytes, timeout: float = 10.0) -> bytes:
        out, end = b"", time.monotonic() + timeout
        while token not in out and time.monotonic() < end:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    break
        return out

    try:
        assert read_until(b"memifctl# ").endswith(b"memifctl# ")
        os.write(fd, b"sh ver\n")
        assert b"memifd v" in read_until(b"memifctl# ")
        os.write(fd, b"sh\t")  # completes the keyword
        assert b"show " in read_until(b"show ")
        os.write(fd, b"bogus\n")
        assert b"memifctl: unknown word 'bogus'" in read_until(b"memifctl# ")
        os.write(fd, b"quit\n")
        read_until(b"\n", 2)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    history = (tmp_path / ".memifctl_history").read_text().splitlines()
    assert [h.strip() for h in history] == ["sh ver", "show bogus", "quit"]


def test_cli_socket_is_private_and_survives_garbage(start) -> None:
    d = start([])
    mode = stat.S_IMODE(os.stat(d.cli_path).st_mode)
    assert mode & 0o007 == 0 and mode == 0o600
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.connect(d.cli_path)
        f = raw.makefile("rwb")
        for junk in (b"\xff\xfe not json at all", b'{"command": 5}', b"[1, 2]", b"{"):
            f.write(junk + b"\n")
            f.flush()
            reply = json.loads(f.readline())
            assert reply["ok"] is False and reply["output"].startswith("bad request:")
        # a half-sent line from another client does not hold anything up
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
            idle.connect(d.cli_path)
            idle.sendall(b'{"command": "show ver')
            f.write(b'{"command": "show version", "json": true}\n')
            f.flush()
            reply = json.loads(f.readline())
            assert reply["ok"] and reply["data"]["version"] == memif.__version__
        # pipelined requests are answered in order
        f.write(b'{"command": "show errors"}\n{"command": "nope"}\n')
        f.flush()
        assert json.loads(f.readline())["ok"] is True
        assert json.loads(f.readline())["ok"] is False
        # many at once: all answered, a few per loop turn
        f.write(b"".join(b'{"command": "sh ver", "json": true}\n' for _ in range(300)))
        f.flush()
        replies = [json.loads(f.readline()) for _ in range(300)]
        assert all(r["ok"] and r["data"]["version"] for r in replies)
    assert d.ctl("show", "version").returncode == 0
    assert d.proc.poll() is None


# --------------------------------------------------------------------------- switching
@pytest.mark.slow
def test_bridge_forwarding_counters_fib_runtime_trace(start) -> None:
    a_name, b_name = unique_name("memifd-a"), unique_name("memifd-b")
    d = start(bridge_config(a_name, b_name, "trace add memif-input 5"))
    a = Peer(a_name, name="peer-a").connect()
    b = Peer(b_name, name="peer-b").connect()
    try:
        a.send(frame(MAC_B, MAC_A, b"a-to-b"))  # B unknown: flooded to B
        assert b.recv(1) == [frame(MAC_B, MAC_A, b"a-to-b")]
        b.send(frame(MAC_A, MAC_B, b"b-to-a 1"), frame(MAC_A, MAC_B, b"b-to-a 2"))
        assert a.recv(2) == [frame(MAC_A, MAC_B, b"b-to-a 1"), frame(MAC_A, MAC_B, b"b-to-a 2")]
        r = d.ctl("show", "interface", json_out=True)
        ifs = {x["name"]: x for x in json.loads(r.stdout)}
        assert ifs["memif1/0"]["state"] == "up"
        assert (ifs["memif1/0"]["rx_packets"], ifs["memif1/0"]["tx_packets"]) == (1, 2)
        assert (ifs["memif2/0"]["rx_packets"], ifs["memif2/0"]["tx_packets"]) == (2, 1)
        assert ifs["memif1/0"]["rx_bytes"] == 64 and ifs["memif1/0"]["tx_bytes"] == 128
        assert ifs["memif1/0"]["drops"] == 0 and ifs["memif2/0"]["tx_errors"] == 0
        r = d.ctl("sh", "br", "1", "det")
        assert r.returncode == 0
        assert re.search(r"^memif1/0\s+1\s+up\s+-\s+1\s+64\s+2\s+128\s+0\s+0$", r.stdout, re.M)
        assert re.search(r"^memif2/0\s+2\s+up\s+-\s+2\s+128\s+1\s+64\s+0\s+0$", r.stdout, re.M)
        r = d.ctl("show", "l2fib", "verbose")
        assert re.search(r"^02:00:00:00:00:0a\s+1\s+1\s+[\d.]+\s+-\s+-\s+memif1/0$", r.stdout, re.M)
        assert re.search(r"^02:00:00:00:00:0b\s+1\s+2\s+[\d.]+\s+-\s+-\s+memif2/0$", r.stdout, re.M)
        assert d.ctl("show", "l2fib").stdout.strip() == "2 l2fib entries"
        fib = json.loads(d.ctl("show", "l2fib", json_out=True).stdout)
        assert {(e["mac"], e["interface"]) for e in fib} == {
            ("02:00:00:00:00:0a", "memif1/0"),
            ("02:00:00:00:00:0b", "memif2/0"),
        }
        r = d.ctl("show", "memif", "memif1/0")
        assert 'remote-name "peer-a"' in r.stdout and "flags admin-up connected" in r.stdout
        assert "slave-to-master ring 0:" in r.stdout and "master-to-slave ring 0:" in r.stdout
        assert re.search(r"head \d+ tail \d+ flags 0x000[01]", r.stdout)
        r = d.ctl("show", "memif", "memif2/0", "descriptors")
        assert r.stdout.count("descriptor table:") == 2
        runtime = d.ok("show runtime")["data"]
        nodes = {n["name"]: n for n in runtime["nodes"]}
        assert nodes["memif-input"]["vectors"] == 3 and nodes["l2-fwd"]["vectors"] == 3
        assert nodes["memif1/0-output"]["vectors"] == 2
        text = d.ctl("show", "runtime").stdout
        assert re.search(r"^l2-fwd\s+\d+\s+3\s+[\d.]+\s+[\d.]+e[+-]\d+$", text, re.M), text
        assert "MHz" in text and "since clear runtime" in text
        trace = d.ctl("show", "trace").stdout
        assert trace.count("Packet ") == 3 and "memif-input" in trace
        assert "l2-fwd" in trace and "memif2/0-output" in trace
        assert d.ctl("clear", "trace").returncode == 0
        assert d.ctl("show", "trace").stdout.strip() == "No packets in trace buffer"
        assert d.ctl("clear", "runtime").returncode == 0
        nodes = {n["name"]: n for n in d.ok("show runtime")["data"]["nodes"]}
        assert nodes["l2-fwd"]["vectors"] == 0
        assert d.ctl("clear", "interfaces").returncode == 0
        assert d.interfaces()["memif1/0"]["rx_packets"] == 0
        # an admin-down port drops what it receives, and says so
        d.ok("set interface state memif2/0 down")
        assert b.pump(lambda: not b.iface.connected)
        assert b.iface.remote_disc_reason == "interface admin down"
        d.ok("set interface state memif2/0 up")
        b.connect()
        d.ok("set interface l3 memif2/0")
        b.send(frame(MAC_A, MAC_B, b"nowhere"))
        assert b.pump(lambda: d.interfaces()["memif2/0"]["drops"] == 1, 3)
        errors = d.ok("show errors")["data"]
        assert {"node": "ethernet-input", "error": "no-l2-or-l3"} in [
            {k: e[k] for k in ("node", "error")} for e in errors
        ]
    finally:
        a.close()
        b.close()


@pytest.mark.slow
def test_slave_port_zero_copy_and_span(start) -> None:
    """A daemon slave port (zero-copy) bridged with a master port; SPAN to a third port."""
    a_name, b_name, c_name = (unique_name(f"memifd-{x}") for x in "abc")
    b = Peer(b_name, role="server", name="peer-b")  # listens before the daemon starts
    config = [
        f"create memif socket id 1 filename {a_name}",
        f"create memif socket id 2 filename {b_name}",
        f"create memif socket id 3 filename {c_name}",
        "create interface memif id 0 socket-id 1 master",
        "create interface memif id 0 socket-id 2 slave",
        "create interface memif id 0 socket-id 3 master",
        "set interface l2 bridge memif1/0 7",
        "set interface l2 bridge memif2/0 7",
        "set interface span memif1/0 destination memif3/0 both",
        *(f"set interface state memif{i}/0 up" for i in (1, 2, 3)),
    ]
    d = start(config)
    a = Peer(a_name, name="peer-a").connect()
    c = Peer(c_name, name="peer-c").connect()
    try:
        b.connect()
        memifs = {m["name"]: m for m in d.ok("show memif")["data"]["interfaces"]}
        assert "zero-copy" in memifs["memif2/0"]["flags"] and "slave" in memifs["memif2/0"]["flags"]
        a.send(frame(MAC_B, MAC_A, b"a->b"))
        assert b.recv(1) == [frame(MAC_B, MAC_A, b"a->b")]
        b.send(frame(MAC_A, MAC_B, b"b->a"))
        assert a.recv(1) == [frame(MAC_A, MAC_B, b"b->a")]
        mirrored = c.recv(2)
        assert sorted(mirrored) == sorted(
            [frame(MAC_B, MAC_A, b"a->b"), frame(MAC_A, MAC_B, b"b->a")]
        )
        r = d.ctl("show", "span")
        assert re.search(r"^memif1/0\s+memif3/0\s+\(\s*both\)\s+\(\s*none\)$", r.stdout, re.M)
        assert d.ctl("set", "interface", "span", "memif1/0", "disable").returncode == 0
        assert d.ok("show span")["data"] == []
        a.send(frame(MAC_B, MAC_A, b"unmirrored"))
        assert b.recv(1) == [frame(MAC_B, MAC_A, b"unmirrored")]
        assert c.recv(1, timeout=0.3) == []
        assert d.interfaces()["memif3/0"]["tx_packets"] == 2
    finally:
        for p in (a, b, c):
            p.close()


# --------------------------------------------------------------------------- L3
def test_peer_pings_the_switch(start) -> None:
    name = unique_name("memifd-l3")
    d = start(
        [
            f"create memif socket id 1 filename {name}",
            "create interface memif id 0 socket-id 1 master hw-addr 02:fe:00:00:01:01",
            "set interface ip address memif1/0 10.1.0.1/24",
            "set interface state memif1/0 up",
        ]
    )
    me, my_ip, sw_ip = MAC_A, pkt.ip4("10.1.0.2"), pkt.ip4("10.1.0.1")
    p = Peer(name).connect()
    try:
        p.send(pkt.arp_request(me, my_ip, sw_ip))
        (reply,) = p.recv(1)
        arp = pkt.parse(reply)
        assert arp.dst == me and arp.arp[0] == pkt.ARP_REPLY
        sw_mac = arp.arp[1]
        assert sw_mac == bytes.fromhex("02fe00000101") and arp.arp[2] == sw_ip
        icmp = pkt.icmp_echo(pkt.ICMP_ECHO_REQUEST, 0x1234, 7, b"hello switch")
        p.send(pkt.ethernet(sw_mac, me, pkt.ETH_P_IP, pkt.ipv4(my_ip, sw_ip, pkt.PROTO_ICMP, icmp)))
        (reply,) = p.recv(1)
        echo = pkt.parse(reply)
        assert (echo.ip_src, echo.ip_dst, echo.dst) == (sw_ip, my_ip, me)
        kind, _, ident, seq, data = pkt.parse_icmp_echo(echo.l4)
        assert (kind, ident, seq, data) == (pkt.ICMP_ECHO_REPLY, 0x1234, 7, b"hello switch")
        assert pkt.checksum(echo.l4) == 0
        assert d.interfaces()["memif1/0"]["tx_packets"] == 2
    finally:
        p.close()


@pytest.mark.slow
def test_switch_ping_command_to_responder(start) -> None:
    name = unique_name("memifd-ping")
    d = start(
        [
            f"create memif socket id 1 filename {name}",
            "create interface memif id 0 socket-id 1 master",
            "set interface ip address memif1/0 10.2.0.1/24",
            "set interface state memif1/0 up",
        ]
    )
    responder = memif_popen("responder", "--socket", name, "--ip", "10.2.0.2", "--mac", MAC_R)
    try:
        d.wait_up("memif1/0", timeout=10)  # the responder connected

        # a slow ping runs while the CLI keeps answering: the loop is not blocked. A blocked
        # loop would answer only before the ping or after it, never with a counter midway.
        def tx() -> int:
            return d.interfaces()["memif1/0"]["tx_packets"]

        before = tx()
        slow = subprocess.Popen(
            memifctl_argv(d.cli_path, "ping", "10.2.0.2", "repeat", "3", "interval", "1.0"),
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen = []
        while slow.poll() is None:
            seen.append(tx())
        after = tx()
        assert any(before < n < after for n in seen), (before, seen, after)
        out, err = slow.communicate(timeout=30)
        assert slow.returncode == 0, err
        lines = out.strip().splitlines()
        for seq in (1, 2, 3):
            assert re.match(
                rf"^64 bytes from 10\.2\.0\.2: icmp_seq={seq}( ttl=64)? time=[\d.]+ ms$",
                lines[seq - 1],
            ), out
        assert lines[-1] == "Statistics: 3 sent, 3 received, 0% packet loss"
        data = json.loads(
            d.ctl("ping", "10.2.0.2", "repeat", "2", "interval", "0.05", json_out=True).stdout
        )
        assert (data["sent"], data["received"], data["interface"]) == (2, 2, "memif1/0")
        (neighbor,) = d.ok("show ip neighbors")["data"]
        assert {k: neighbor[k] for k in ("ip", "mac", "interface", "flags")} == {
            "ip": "10.2.0.2", "mac": MAC_R, "interface": "memif1/0", "flags": "D"
        }  # fmt: skip
        r = d.ctl("ping", "10.3.0.9")
        assert r.returncode == 1 and "no subnet of any interface contains 10.3.0.9" in r.stderr
        r = d.ctl("ping", "10.2.0.77", "repeat", "1")
        assert r.returncode == 1 and "no ARP reply from 10.2.0.77 on memif1/0" in r.stderr
    finally:
        responder.kill()
        responder.communicate()


# --------------------------------------------------------------------------- lifecycle
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_disconnects_peers_and_removes_sockets(start, tmp_path: Path, sig: int) -> None:
    sock_path = str(tmp_path / "sw" / "port.sock")
    d = start(
        [
            f"create memif socket id 1 filename {sock_path}",
            "create interface memif id 0 socket-id 1 master",
            "set interface state memif1/0 up",
        ]
    )
    assert stat.S_ISSOCK(os.stat(sock_path).st_mode)
    p = Peer(sock_path, name="peer-z").connect()
    try:
        assert p.pump(lambda: "connected to" in d.log(), 3)
        assert d.stop(sig) == 0
        assert p.pump(lambda: not p.iface.connected, 5)
        assert p.iface.remote_disc_reason == "memifd shutting down"
    finally:
        p.close()
    assert not os.path.exists(sock_path) and not os.path.exists(d.cli_path)
    log = d.log()
    assert "memif1/0 connected to 'memif0' (peer-z)" in log
    assert "memif1/0 disconnected: memifd shutting down" in log
    assert f"{signal.Signals(sig).name}: shutting down" in log


@pytest.mark.parametrize(("extra", "want"), [((), 0o660), (("--socket-mode", "600"), 0o600)])
def test_memif_socket_files_get_the_configured_mode(start, tmp_path, extra, want) -> None:
    path = tmp_path / "perm.sock"
    d = start(
        [
            f"create memif socket id 7 filename {path}",
            "create interface memif id 0 socket-id 7 master",
        ],
        *extra,
    )
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == want and not mode & 0o007  # never world-accessible
    assert d.proc.poll() is None
