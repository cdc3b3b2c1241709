"""TNSR's memif dialect: its documented example through memifctl (a script with the
config-memif sub-mode, and the interactive shell on a real terminal), real client peers (DPDK
testpmd and the project's own ping) passing traffic through what it configured, each of
TNSR's rules refused with its message, VPP and TNSR commands mixed in one startup file, and
``show interface memif`` in TNSR's layout."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ENV, Memifd, memif_argv, memifctl_argv

import memif

pytestmark = pytest.mark.slow


def _script(d: Memifd, text: str) -> subprocess.CompletedProcess:
    """Lines on memifctl's stdin (not a terminal): what a script does."""
    return subprocess.run(memifctl_argv(d.cli_path), input=text, env=ENV, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def _example(sock: Path) -> str:
    """TNSR's documented example (socket 23, interface 100, role server)."""
    return (
        f"interface memif socket 23 filename {sock}\n"
        "interface memif socket 23 interface 100\n"
        "  role server\n"
        "  ring-size 10\n"
        "  buffer-size 2048\n"
        "  exit\n"
    )


@pytest.fixture
def memifd(tmp_path: Path):
    d = Memifd(tmp_path, []).wait_ready()
    yield d
    d.kill()


def test_the_tnsr_example_and_show_interface_memif(memifd: Memifd, tmp_path: Path) -> None:
    r = _script(memifd, _example(tmp_path / "memif23.sock"))
    assert r.returncode == 0, r.stderr
    text = memifd.ok("show interface memif")["output"]
    lines = text.splitlines()
    assert lines[0].split() == ["Socket", "Id", "Filename"]
    assert lines[1].split() == ["0", "/run/vpp/memif.sock"]  # socket 0 first
    assert lines[2].split() == ["23", str(tmp_path / "memif23.sock")]
    block = text.split("\n\n", 1)[1].splitlines()
    assert [x.split(":", 1)[0] for x in block] == [
        "Socket id", "Interface id", "Interface", "Role", "Mode", "MAC address", "Ring size",
        "Buffer size", "Admin up", "Link up",
    ]  # fmt: skip
    assert block[:5] == ["Socket id: 23", "Interface id: 100", "Interface: memif23/100",
                         "Role: server", "Mode: ethernet"]  # fmt: skip
    assert block[6:] == ["Ring size: 1024", "Buffer size: 2048", "Admin up: false",
                         "Link up: false"]  # fmt: skip
    data = memifd.ok("show interface memif")["data"]
    (one,) = data["interfaces"]
    assert one["interface"] == "memif23/100" and one["role"] == "server" and one["tnsr"]
    assert one["mac_address"].startswith("02:")  # random when unset, ethernet mode


def test_project_peer_pings_through_what_tnsr_configured(memifd: Memifd, tmp_path: Path) -> None:
    sock = tmp_path / "memif23.sock"
    r = _script(memifd, _example(sock) + "set interface ip address memif23/100 10.23.0.1/24\n"
                "set interface state memif23/100 up\n")  # fmt: skip
    assert r.returncode == 0, r.stderr
    ping = subprocess.run(memif_argv("ping", "10.23.0.1", "-c", "3", "-i", "0.05", "--socket",
                                     str(sock), "--id", "100", "--role", "client",
                                     "--connect-timeout", "15", "--json"),
                          env=ENV, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert '"received": 3' in ping.stdout


@pytest.mark.testpmd
def test_testpmd_client_passes_traffic(memifd: Memifd, tmp_path: Path, testpmd_binary) -> None:
    from memif.tools.testpmd import MemifPort, Testpmd

    sock = tmp_path / "memif23.sock"
    script = _example(sock) + (
        "interface memif socket 23 interface 101\n  role server\n  exit\n"
        "create bridge-domain 1\n"
        "set interface l2 bridge memif23/100 1\nset interface l2 bridge memif23/101 1\n"
        "set interface state memif23/100 up\nset interface state memif23/101 up\n"
    )
    assert _script(memifd, script).returncode == 0
    peer_sock = memif.Socket(str(sock))
    with peer_sock:
        peer = peer_sock.create_interface(role="client", id=101)
        tp = Testpmd([MemifPort("client", id=100, socket=str(sock))], forward_mode="txonly",
                     binary=testpmd_binary)  # fmt: skip
        with tp:
            tp.wait_link_up()
            memif.testing.drive(peer_sock, until=lambda: peer.connected, timeout=15)
            tp.start()
            got, end = 0, time.monotonic() + 30
            while got < 2000 and time.monotonic() < end:
                peer_sock.poll(0.01)
                got += len(peer.recv())
            tp.stop()
            sent = tp.port_stats().tx_packets
        assert got >= 2000
    ifs = memifd.interfaces()
    assert ifs["memif23/100"]["rx_packets"] >= got and sent >= ifs["memif23/100"]["rx_packets"]


def test_tnsr_rules_refused_with_their_messages(memifd: Memifd, tmp_path: Path) -> None:
    assert _script(memifd, _example(tmp_path / "memif23.sock")).returncode == 0
    fails = memifd.fails
    assert fails("interface memif socket 0 filename /tmp/x.sock") == (
        "socket 0 is always /run/vpp/memif.sock: it cannot be changed")
    assert fails(f"interface memif socket 23 filename {tmp_path / 'other.sock'}") == (
        "socket 23 is in use by memif23/100: it cannot be changed")
    assert fails("no interface memif socket 23") == (
        "socket 23 is in use by memif23/100: it cannot be deleted")
    assert "cannot be deleted" in fails("no interface memif socket 0")
    assert fails("interface memif socket 23 interface 101 role client") == (
        "socket 23 serves servers (memif23/100): a socket serves one role only")
    assert fails("interface memif socket 23 interface 100 secret " + "x" * 24) == (
        "secret of 24 characters: at most 23 (memif's INIT carries it in 24 bytes with a "
        "terminating NUL)")
    assert "reserved" in fails("interface memif socket 23 interface 100 mode punt/inject")
    assert "client's setting" in fails("interface memif socket 23 interface 100 role server "
                                       "rx-queues 2")  # fmt: skip
    assert "does not exist" in fails("interface memif socket 7 interface 1")
    assert "expected an integer 1..14" in fails("interface memif socket 23 interface 100 "
                                                "ring-size 15")  # fmt: skip
    assert "4294967294" in fails("interface memif socket 4294967295 filename /tmp/y.sock")
    # a refused change leaves the memif as it was
    one = memifd.ok("show interface memif")["data"]["interfaces"][0]
    assert (one["role"], one["ring_size"]) == ("server", 1024)
    # deleting: the memif, then its socket
    memifd.ok("no interface memif socket 23 interface 100")
    memifd.ok("no interface memif socket 23")
    assert [s["id"] for s in memifd.ok("show interface memif")["data"]["sockets"]] == [0]


def test_settings_recreate_the_memif_and_keep_its_place(memifd: Memifd, tmp_path: Path) -> None:
    assert _script(memifd, _example(tmp_path / "m.sock") + "create bridge-domain 5\n"
                   "set interface l2 bridge memif23/100 5\n"
                   "set interface state memif23/100 up\n").returncode == 0  # fmt: skip
    memifd.ok("interface memif socket 23 interface 100 ring-size 11 mac-address 02:fe:00:00:00:23 "
              "secret s3cret mode ip")  # fmt: skip
    one = memifd.ok("show interface memif")["data"]["interfaces"][0]
    assert (one["ring_size"], one["mac_address"], one["mode"]) == (2048, "02:fe:00:00:00:23", "ip")
    ifs = memifd.interfaces()
    assert ifs["memif23/100"]["admin_up"] and ifs["memif23/100"]["bd_id"] == 5


def test_vpp_and_tnsr_mixed_in_one_startup_file(tmp_path: Path) -> None:
    lines = [
        f"create memif socket id 1 filename {tmp_path / 'vpp.sock'}",
        "create interface memif id 0 socket-id 1 master",
        f"interface memif socket 23 filename {tmp_path / 'tnsr.sock'}",
        "interface memif socket 23 interface 100",
        "  ring-size 9",
        "  role client rx-queues 2 tx-queues 2",
        "  exit",
        "create bridge-domain 1",
        "set interface l2 bridge memif1/0 1",
        "set interface l2 bridge memif23/100 1",
    ]
    d = Memifd(tmp_path, lines).wait_ready()
    try:
        data = d.ok("show interface memif")["data"]["interfaces"]
        got = {x["interface"]: (x["role"], x["ring_size"], x["tnsr"]) for x in data}
        assert got == {"memif1/0": ("server", 1024, False), "memif23/100": ("client", 512, True)}
        assert "startup.conf:8: interface memif socket 23 interface 100 role client" in d.log()
    finally:
        d.stop()
    (tmp_path / "bad").mkdir()
    bad = Memifd(tmp_path / "bad", ["interface memif socket 0 filename /tmp/nope.sock"])
    _, err = bad.proc.communicate(timeout=30)
    assert bad.proc.returncode == 1
    assert "startup.conf:3: socket 0 is always /run/vpp/memif.sock" in err, err


def test_interactive_shell_prompt_follows_the_mode(memifd: Memifd, tmp_path: Path) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: memifctl on a real terminal
        os.environ.update(ENV)
        os.execv(sys.executable, memifctl_argv(memifd.cli_path))
    seen = b""

    def until(token: bytes, timeout: float = 20) -> None:
        nonlocal seen
        end = time.monotonic() + timeout
        while token not in seen:
            assert time.monotonic() < end, f"no {token!r} in {seen[-500:]!r}"
            if select.select([fd], [], [], 0.1)[0]:
                seen += os.read(fd, 4096)

    try:
        until(b"memifctl# ")
        os.write(fd, f"interface memif socket 23 filename {tmp_path / 's.sock'}\n".encode())
        os.write(fd, b"interface memif socket 23 interface 100\n")
        until(b"memifctl(config-memif)# ")
        os.write(fd, b"ring-size 11\n")
        os.write(fd, b"exit\n")
        seen = b""
        until(b"memifctl# ")
        os.write(fd, b"quit\n")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        os.close(fd)
    one = memifd.ok("show interface memif")["data"]["interfaces"][0]
    assert one["ring_size"] == 2048
