"""memifd's observability as an operator uses it: a real Prometheus scrape over HTTP parsed
with prometheus_client's own parser and checked against the CLI's figures, the endpoint's
defences against hostile clients, and systemd's notification protocol on a real datagram
socket (READY=1, WATCHDOG=1, STOPPING=1), with the unit file checked by systemd-analyze."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from footprint import footprint
from helpers import ENV, Memifd
from prometheus_client import CONTENT_TYPE_LATEST  # the "metrics" extra
from prometheus_client.parser import text_string_to_metric_families

import memif
from memif.daemon.metrics import MAX_CLIENTS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BRIDGE = [
    "create memif socket id 1 filename {d}/a.sock",
    "create memif socket id 2 filename {d}/b.sock",
    "create interface memif id 0 socket-id 1 master",
    "create interface memif id 0 socket-id 2 master",
    "create bridge-domain 1 learn 1",
    "set interface l2 bridge memif1/0 1",
    "set interface l2 bridge memif2/0 1",
    "set interface state memif1/0 up",
    "set interface state memif2/0 up",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(cond, what: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == CONTENT_TYPE_LATEST
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def bridged(tmp_path: Path):
    port = _free_port()
    d = Memifd(tmp_path, [x.format(d=tmp_path) for x in BRIDGE], "--metrics",
               f"127.0.0.1:{port}").wait_ready()  # fmt: skip
    try:
        _wait(lambda: "metrics on http://127.0.0.1" in d.log(), "the metrics line")
        yield d, port
    finally:
        d.kill()


def test_scrape_matches_the_cli(bridged, tmp_path: Path) -> None:
    d, port = bridged
    a, b = memif.Socket(str(tmp_path / "a.sock")), memif.Socket(str(tmp_path / "b.sock"))
    with a, b:
        ia = a.create_interface(role="client", id=0)
        ib = b.create_interface(role="client", id=0)
        memif.testing.drive(a, b, until=lambda: ia.connected and ib.connected, timeout=15)
        d.wait_up("memif1/0")
        d.wait_up("memif2/0")
        frames = [bytes.fromhex("02000000000b02000000000a0800") + bytes(50)] * 100
        assert ia.send(frames) == 100
        got: list[bytes] = []
        end = time.monotonic() + 15
        while len(got) < 100 and time.monotonic() < end:
            b.poll(0.01)
            got += ib.recv()
        assert len(got) == 100
        m = _scrape(port)
        ifs = d.interfaces()
        for name in ("memif1/0", "memif2/0"):
            for key in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "drops"):
                assert m[(f"memifd_interface_{key}_total", (("interface", name),))] == ifs[name][
                    key
                ], (name, key)
            assert m[("memifd_interface_link_up", (("interface", name),))] == 1
        assert ifs["memif1/0"]["rx_packets"] == 100 and ifs["memif2/0"]["tx_packets"] == 100
        q = (("direction", "rx"), ("interface", "memif1/0"), ("queue", "0"))
        assert m[("memifd_queue_packets_total", q)] == 100
        runtime = {n["name"]: n for n in d.ok("show runtime")["data"]["nodes"]}
        assert m[("memifd_node_vectors_total", (("node", "l2-fwd"),))] == runtime["l2-fwd"][
            "vectors"
        ]
        used = m[("memifd_buffers", (("state", "used"),))]
        free = m[("memifd_buffers", (("state", "free"),))]
        assert used + free == 2048  # the Memifd helper's --buffers
        assert m[("memifd_process_open_fds", ())] > 0


def test_endpoint_answers_4xx_and_counts(bridged) -> None:
    d, port = bridged
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=10)
    assert e.value.code == 404
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 405
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"garbage\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.0 400")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\n" + b"X: " + b"y" * 20000)
        _wait(lambda: _errors(d).get("too-large"), "too-large")
    errors = _errors(d)
    assert errors["bad-request"] == 3, errors


def _errors(d: Memifd) -> dict[str, int]:
    return {e["error"]: e["count"] for e in d.ok("show errors")["data"] if e["node"] == "metrics"}


def test_hostile_clients_cannot_grow_fds_or_lock_out_a_scrape(bridged) -> None:
    d, port = bridged
    _scrape(port)  # warm: every lazily opened fd exists
    before = footprint(d.proc.pid)
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(60)]
    silent = []  # ask and never read (a large answer would sit in memifd's buffer)
    for _ in range(10):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        silent.append(s)
    try:
        m = _scrape(port)  # still served: the oldest connections made room
        assert m[("memifd_interface_admin_up", (("interface", "memif1/0"),))] == 1
        assert d.ok("show version")["ok"]  # the CLI too
        during = footprint(d.proc.pid)
        assert during.fds <= before.fds + MAX_CLIENTS, (before, during)
        assert _errors(d)["evicted"] > 0  # (some may still wait in the listen backlog)
    finally:
        for s in idle + silent:
            s.close()
    _wait(lambda: footprint(d.proc.pid).fds <= before.fds, "connections closed")


def test_bad_metrics_option_is_one_line(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "memif.daemon.main", "--runtime-dir", str(tmp_path / "run"),
            "--cli-socket", str(tmp_path / "cli.sock")]  # fmt: skip
    for value, want in (
        ("9482", "--metrics '9482': expected HOST:PORT, e.g. 127.0.0.1:9482"),
        ("127.0.0.1:99999", "--metrics '127.0.0.1:99999': port must be 0..65535"),
    ):
        r = subprocess.run([*argv, "--metrics", value], env=ENV, capture_output=True,
                           text=True, timeout=30)  # fmt: skip
        assert r.returncode == 1 and want in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "cli.sock").exists()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = subprocess.run([*argv, "--metrics", f"127.0.0.1:{port}"], env=ENV,
                           capture_output=True, text=True, timeout=30)  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert f"--metrics 127.0.0.1:{port}: Address already in use" in r.stderr, r.stderr


# ------------------------------------------------------------------ systemd
@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_systemd_notify_ready_watchdog_stopping(tmp_path: Path, abstract: bool) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"memifd-test-{os.getpid()}-{os.urandom(3).hex()}"
        notify.bind(b"\0" + name.encode())
        address = "@" + name
    else:
        address = str(tmp_path / "notify")
        notify.bind(address)
    notify.settimeout(20)
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"}
    d = Memifd(tmp_path, ["create bridge-domain 1"], env=env)
    try:
        first = notify.recv(4096).decode().split("\n")
        assert "READY=1" in first and f"MAINPID={d.proc.pid}" in first, first
        assert os.path.exists(d.cli_path)  # ready means the CLI answers
        assert d.ok("show version")["ok"]
        pings = 0
        while pings < 3:
            if notify.recv(4096) == b"WATCHDOG=1":
                pings += 1
        d.proc.send_signal(signal.SIGTERM)
        while True:
            msg = notify.recv(4096).decode().split("\n")
            if "STOPPING=1" in msg:
                break
        assert d.proc.wait(15) == 0
    finally:
        d.kill()
        notify.close()


def test_without_notify_socket_nothing_is_sent(tmp_path: Path) -> None:
    from memif.daemon.systemd import Notifier

    n = Notifier({})
    assert not n.enabled and n.watchdog is None
    n.notify("READY=1")  # no socket: nothing happens, nothing raises
    other = Notifier({"NOTIFY_SOCKET": "/nonexistent/x", "WATCHDOG_USEC": "1000000",
                      "WATCHDOG_PID": "1"})  # fmt: skip
    assert other.enabled and other.watchdog is None  # the watchdog is another pid's
    other.notify("READY=1")  # a socket that is gone: ignored, forwarding goes on


def test_unit_file_verifies(tmp_path: Path) -> None:
    memifd = shutil.which("memifd", path=os.path.dirname(sys.executable))
    assert memifd, "memifd is installed beside this interpreter"
    unit = (ROOT / "deploy" / "memifd.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "ExecReload=/bin/kill -HUP" in unit
    (tmp_path / "memifd.service").write_text(unit.replace("/usr/local/bin/memifd", memifd))
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "memifd.service")],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
