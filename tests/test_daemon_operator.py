"""memifd and memifctl as an operator meets them: bad environments give one line (never a
traceback), SIGHUP reopens the log and is not fatal, journald gets priorities and no
timestamps, memifctl gives up on a stopped daemon, ``--version`` everywhere, one default
memif socket (VPP's) for memifd's socket 0 and the tools.  Real processes, real signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ENV, Memifd, memif_argv, memifctl

import memif
from memif.config import DEFAULT_SOCKET

pytestmark = pytest.mark.slow

MEMIFD = (sys.executable, "-m", "memif.daemon.main")


def _memifd(*args: str, timeout: float = 30, **run: object) -> subprocess.CompletedProcess:
    """memifd run to its end (it fails to start in these tests)."""
    return subprocess.run(
        [*MEMIFD, *args], env=ENV, capture_output=True, text=True, timeout=timeout, **run
    )  # type: ignore[call-overload]


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {text!r}"
    assert "Traceback" not in text
    return lines[0]


def _without_log_file(tmp_path: Path, stderr, env: dict[str, str] | None = None):
    """memifd logging to ``stderr`` (an open file), CLI socket in ``tmp_path``."""
    return subprocess.Popen(
        [*MEMIFD, "--runtime-dir", str(tmp_path / "run"), "--cli-socket",
         str(tmp_path / "cli.sock")],
        env=env or ENV, stderr=stderr,
    )  # fmt: skip


def _wait(cond, what: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


# ------------------------------------------------------------------ cannot start: one line
def test_log_file_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    r = _memifd("--log", "/proc/nope/x.log", "--runtime-dir", str(tmp_path / "run"))
    assert r.returncode == 1
    line = _one_line(r.stderr)
    assert line.startswith("memifd: cannot open log file /proc/nope/x.log:"), line
    assert not (tmp_path / "run").exists()  # stopped before doing anything


def test_startup_file_not_utf8_names_file_and_line(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_bytes(b"# ok\ncreate bridge-domain 1\nset int state \xff\xfe up\n")
    r = _memifd("-c", str(conf), "--runtime-dir", str(tmp_path / "run"),
                "--cli-socket", str(tmp_path / "cli.sock"))  # fmt: skip
    assert r.returncode == 1
    line = _one_line(r.stderr.split("ERROR: ", 1)[-1])
    assert f"{conf}:3: not UTF-8 text (byte 0xff)" in line, line
    assert not (tmp_path / "cli.sock").exists()


def test_missing_startup_file_names_it(tmp_path: Path) -> None:
    r = _memifd("-c", str(tmp_path / "none.conf"), "--runtime-dir", str(tmp_path / "run"),
                "--log", str(tmp_path / "log"))  # fmt: skip
    assert r.returncode == 1
    line = _one_line(r.stderr)
    assert f"{tmp_path / 'none.conf'}: No such file or directory" in line, line


def test_cli_socket_in_a_missing_directory_is_refused_not_created(tmp_path: Path) -> None:
    cli = tmp_path / "nonexistent" / "dir" / "cli.sock"
    r = _memifd("--cli-socket", str(cli), "--runtime-dir", str(tmp_path / "run"),
                "--log", str(tmp_path / "log"))  # fmt: skip
    assert r.returncode == 1
    line = _one_line(r.stderr)
    assert line == f"memifd: CLI socket {cli.parent}: no such directory", line
    assert not (tmp_path / "nonexistent").exists()


# ------------------------------------------------------------------ signals and logs
def test_sighup_reopens_the_log_and_memifd_goes_on(tmp_path: Path) -> None:
    d = Memifd(tmp_path, ["create bridge-domain 1"]).wait_ready()
    try:
        _wait(lambda: "memifd ready" in d.log(), "the ready line")
        rotated = tmp_path / "memifd.log.1"
        os.rename(d.log_path, rotated)  # what logrotate does
        d.proc.send_signal(signal.SIGHUP)
        _wait(lambda: d.log_path.exists() and "reopened" in d.log(), "the new log file")
        assert f"SIGHUP: log file {d.log_path} reopened" in d.log()
        assert "memifd ready" in rotated.read_text()
        assert d.ok("show version")["ok"]  # alive and serving
        d.ok("create bridge-domain 2")
        for _ in range(3):  # again: never fatal
            d.proc.send_signal(signal.SIGHUP)
        _wait(lambda: d.log().count("reopened") >= 2, "more reopen lines")
        assert d.proc.poll() is None
        assert d.stop() == 0
        assert "SIGTERM: shutting down" in d.log()
    finally:
        d.kill()


def test_sighup_without_a_log_file_is_logged_not_fatal(tmp_path: Path) -> None:
    err = tmp_path / "stderr"
    with open(err, "w") as f:
        p = _without_log_file(tmp_path, f)
    try:
        _wait(lambda: (tmp_path / "cli.sock").exists(), "the CLI socket")
        p.send_signal(signal.SIGHUP)
        _wait(lambda: "nothing to reopen" in err.read_text(), "the SIGHUP line")
        assert p.poll() is None
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 0
    finally:
        if p.poll() is None:
            p.kill()


def test_journald_gets_priorities_and_no_timestamps(tmp_path: Path) -> None:
    err = tmp_path / "journal"
    with open(err, "w") as f:
        st = os.fstat(f.fileno())
        p = _without_log_file(tmp_path, f, ENV | {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    try:
        _wait(lambda: "memifd ready" in err.read_text(), "the ready line")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(15)
    lines = err.read_text().splitlines()
    ready = next(x for x in lines if "memifd ready" in x)
    assert ready.startswith("<6>memifd: memifd ready"), ready
    assert all(x.startswith("<") for x in lines), lines  # no timestamps of its own


def test_log_level_warning_drops_info(tmp_path: Path) -> None:
    d = Memifd(tmp_path, ["create bridge-domain 1"], "--log-level", "warning").wait_ready()
    try:
        assert d.ok("show version")["ok"]
        d.fails("create bridge-domain banana")
    finally:
        assert d.stop() == 0
    assert "INFO" not in d.log(), d.log()
    r = _memifd("--log-level", "loud")
    assert r.returncode == 2 and "invalid choice: 'loud'" in r.stderr


def test_memifctl_gives_up_on_a_stopped_daemon(tmp_path: Path) -> None:
    d = Memifd(tmp_path, []).wait_ready()
    try:
        d.proc.send_signal(signal.SIGSTOP)  # the socket still queues connections
        r = memifctl(d.cli_path, "--timeout", "1", "show", "version", timeout=30)
        assert r.returncode == 2
        line = _one_line(r.stderr)
        assert line == (
            f"memifctl: no reply from memifd at {d.cli_path} in 1 s "
            "(is it stopped? --timeout S waits longer, 0 for ever)"
        ), line
        d.proc.send_signal(signal.SIGCONT)
        assert memifctl(d.cli_path, "show", "version").returncode == 0
    finally:
        d.proc.send_signal(signal.SIGCONT)
        d.stop()


def test_memifctl_timeout_is_checked(tmp_path: Path) -> None:
    for bad in ("-1", "nan", "inf", "soon"):
        r = memifctl(str(tmp_path / "x"), "--timeout", bad, "show", "version")
        assert r.returncode == 2 and "--timeout" in r.stderr and "Traceback" not in r.stderr


def test_memifctl_default_timeout_ends_a_silent_server(tmp_path: Path) -> None:
    """A listening socket that never answers: the default timeout applies (a short one is
    given here only through the option's own parser path; the default is checked by
    value)."""
    from memif.ctl.main import DEFAULT_TIMEOUT, build_parser

    assert build_parser().parse_args([]).timeout == DEFAULT_TIMEOUT > 0
    path = str(tmp_path / "silent.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
        srv.bind(path)
        srv.listen(4)
        r = memifctl(path, "--timeout", "0.5", "show", "version", timeout=30)
    assert r.returncode == 2 and "no reply from memifd" in r.stderr


# ------------------------------------------------------------------ versions, defaults
def test_version_everywhere() -> None:
    want = memif.__version__
    for argv in (
        [*MEMIFD, "--version"],
        [sys.executable, "-m", "memif.ctl.main", "--version"],
        memif_argv("--version"),
        [sys.executable, "-m", "memif", "--version"],
    ):
        r = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, (argv, r.stderr)
        assert r.stdout.strip().endswith(want), (argv, r.stdout)


def test_python_m_memif_runs_the_memif_command() -> None:
    r = subprocess.run([sys.executable, "-m", "memif", "--help"], env=ENV,
                       capture_output=True, text=True, timeout=30)  # fmt: skip
    assert r.returncode == 0 and "bench-latency" in r.stdout


def test_one_default_memif_socket(tmp_path: Path) -> None:
    assert DEFAULT_SOCKET == "/run/vpp/memif.sock"
    d = Memifd(tmp_path, []).wait_ready()
    try:
        sockets = d.ok("show memif")["data"]["sockets"]
        zero = next(s for s in sockets if s["id"] == 0)
        assert zero["filename"] == DEFAULT_SOCKET
    finally:
        d.stop()
    for argv in ([*MEMIFD, "--help"], memif_argv("gen", "--help"), memif_argv("ping", "--help")):
        out = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=30).stdout
        assert DEFAULT_SOCKET in " ".join(out.split()), argv


# ------------------------------------------------------------------ what the log says
def test_cli_changes_and_refused_peers_are_logged_at_info(tmp_path: Path) -> None:
    sock = tmp_path / "a.sock"
    d = Memifd(tmp_path, [f"create memif socket id 1 filename {sock}",
                          "create interface memif id 0 socket-id 1 master secret s3cret",
                          "set interface state memif1/0 up"]).wait_ready()  # fmt: skip
    try:
        d.ok("create bridge-domain 7")
        d.fails("set interface state memif9/9 up")
        d.ok("show interface")
        peer = memif.Socket(str(sock))
        with peer:
            wrong_id = peer.create_interface(role="client", id=7)
            wrong_secret = peer.create_interface(role="client", id=0, secret="nope")
            memif.testing.drive(
                peer,
                until=lambda: bool(wrong_id.remote_disc_reason and wrong_secret.remote_disc_reason),
                timeout=15,
            )
        _wait(lambda: "unmatched interface id" in d.log(), "the refusal line")
    finally:
        d.stop()
    log = d.log()
    me = f"uid {os.getuid()}"
    assert f"startup.conf:3: create memif socket id 1 filename {sock}: ok" in log
    line = next(x for x in log.splitlines() if "create bridge-domain 7" in x)
    assert " INFO: CLI (pid " in line and me in line and line.endswith(": ok"), line
    line = next(x for x in log.splitlines() if "memif9/9" in x)
    assert ": failed: " in line, line
    assert "show interface" not in log
    line = next(x for x in log.splitlines() if "unmatched interface id" in x)
    assert f"memif socket {sock}: peer refused: unmatched interface id (pid" in line, line
    assert "incorrect secret" in log


def test_completion_offers_interface_names_states_and_bridge_ids(tmp_path: Path) -> None:
    from memif.ctl.main import Client, Completer, daemon_values

    startup = [f"create memif socket id 1 filename {tmp_path / 'a.sock'}",
               "create interface memif id 0 socket-id 1 master",
               "create interface memif id 1 socket-id 1 master",
               "create bridge-domain 7", "create bridge-domain 42"]  # fmt: skip
    d = Memifd(tmp_path, startup).wait_ready()
    try:
        with Client(d.cli_path, timeout=20) as client:
            comp = Completer(client.request("help", want_json=True)["data"], daemon_values(client))
            # `show interface <TAB>` offers names too, so readline no longer inserts "address"
            assert comp.candidates("show interface ") == [
                "address", "memif", "memif1/0", "memif1/1", "rx-placement"
            ]
            assert comp.candidates("sh int memif1/0 ") == ["memif1/0", "memif1/1"]
            assert comp.candidates("set interface state ") == ["memif1/0", "memif1/1"]
            assert comp.candidates("set int state memif1/1 ") == ["down", "up"]
            assert comp.candidates("set int state memif1/1 d") == ["down"]
            assert comp.candidates("set int l2 bridge memif1/0 ") == ["42", "7"]
            assert comp.candidates("trace add ") == ["host-input", "memif-input", "tap-input"]
            assert comp.candidates("set int state memif1/1 up ") == []
            assert "l2-fwd" in comp.candidates("show vlib graph ")
    finally:
        d.stop()


def test_vpp_show_commands_buffers_logging_node_counters_admin_state(tmp_path: Path) -> None:
    startup = [f"create memif socket id 1 filename {tmp_path / 'a.sock'}",
               "create interface memif id 0 socket-id 1 master",
               "create interface memif id 1 socket-id 1 master",
               "set interface state memif1/0 up"]  # fmt: skip
    d = Memifd(tmp_path, startup).wait_ready()
    try:
        # State is the admin state, as VPP's: memif1/0 is up with no peer (link down)
        text = d.ok("show interface")["output"]
        row = next(x for x in text.splitlines() if x.startswith("memif1/0 "))
        assert row.split()[2] == "up", text
        row = next(x for x in text.splitlines() if x.startswith("memif1/1 "))
        assert row.split()[2] == "down", text
        one = d.interfaces()["memif1/0"]
        assert one["admin_up"] and not one["link_up"] and one["state"] == "down"
        assert "memif1/0 (up):" in d.ok("show interface address")["output"]

        buffers = d.ok("show buffers")
        assert buffers["data"]["buffers"] == 2048  # the helper's --buffers
        assert buffers["data"]["free"] + buffers["data"]["used"] == 2048
        header = buffers["output"].splitlines()[0].split()
        assert header[:2] == ["Pool", "Name"] and "Avail" in header

        d.fails("set interface state memif9/9 up")
        logged = d.ok("show logging")
        assert any("memifd ready" in x for x in logged["data"]), logged["data"]
        assert "failed: " in logged["data"][-1] and "memif9/9" in logged["data"][-1]
        assert len(d.ok("show logging 2")["data"]) == 2
        assert "expected an integer 1..512" in d.fails("show logging 0")

        counters = d.ok("show node counters")
        assert counters["data"] == d.ok("show errors")["data"]
    finally:
        d.stop()


def test_set_bridge_domain_flags_as_vpp(tmp_path: Path) -> None:
    d = Memifd(tmp_path, ["create bridge-domain 3"]).wait_ready()
    try:

        def flags() -> dict:
            (bd,) = [b for b in d.ok("show bridge-domain")["data"] if b["bd_id"] == 3]
            return {k: bd[k] for k in ("learn", "forward", "flood", "uu_flood")}

        assert flags() == {"learn": True, "forward": True, "flood": True, "uu_flood": True}
        for flag in ("learn", "forward", "flood", "uu-flood"):
            d.ok(f"set bridge-domain {flag} 3 disable")
        assert flags() == {"learn": False, "forward": False, "flood": False, "uu_flood": False}
        d.ok("set bridge-domain uu-flood 3")
        assert flags()["uu_flood"] is True
        assert d.fails("set bridge-domain learn 9") == "no bridge domain 9"
        assert "expected disable" in d.fails("set bridge-domain learn 3 maybe")
    finally:
        d.stop()


def test_show_trace_max(tmp_path: Path) -> None:
    a_path = tmp_path / "a.sock"
    d = Memifd(tmp_path, [f"create memif socket id 1 filename {a_path}",
                          "create interface memif id 0 socket-id 1 master",
                          "create bridge-domain 1", "set interface l2 bridge memif1/0 1",
                          "set interface state memif1/0 up"]).wait_ready()  # fmt: skip
    try:
        d.ok("trace add memif-input 5")
        with memif.Socket(str(a_path)) as sock:
            peer = sock.create_interface(role="client", id=0)
            memif.testing.drive(sock, until=lambda: peer.connected, timeout=15)
            frame = bytes.fromhex("ffffffffffff02000000000a0800") + bytes(50)
            for _ in range(5):
                assert peer.send([frame]) == 1
            _wait(lambda: len(d.ok("show trace")["data"]) == 5, "5 traced packets")
        every = [p["packet"] for p in d.ok("show trace")["data"]]
        two = d.ok("show trace max 2")
        assert [p["packet"] for p in two["data"]] == every[:2]
        assert "truncated (3 more)" in two["output"]
        assert "expected an integer 1..1000" in d.fails("show trace max 0")
    finally:
        d.stop()


def test_set_interface_rx_mode_and_rx_placement(tmp_path: Path) -> None:
    a_path = tmp_path / "a.sock"
    d = Memifd(tmp_path, [f"create memif socket id 1 filename {a_path}",
                          "create interface memif id 0 socket-id 1 master",
                          "set interface state memif1/0 up"]).wait_ready()  # fmt: skip
    try:
        with memif.Socket(str(a_path)) as sock:
            peer = sock.create_interface(role="client", id=0, rx_queues=2, tx_queues=2)
            memif.testing.drive(sock, until=lambda: peer.connected, timeout=15)
            _wait(lambda: len(d.ok("show interface rx-placement")["data"]) == 2, "2 queues")
            text = d.ok("show interface rx-placement")["output"]
            assert text.splitlines()[:3] == ["Thread 0 (memifd main):", "  node memif-input:",
                                             "    memif1/0 queue 0 (adaptive)"]  # fmt: skip

            def masked(q: int) -> bool:  # memifd's receive ring is the peer's transmit ring
                sock.poll(0)
                return bool(peer.tx_queues[q].ring.flags & memif.wire.RING_FLAG_MASK_INT)

            d.ok("set interface rx-mode memif1/0 polling")
            _wait(lambda: masked(0) and masked(1), "MASK_INT set (polling)")
            d.ok("set interface rx-mode memif1/0 queue 1 interrupt")
            _wait(lambda: masked(0) and not masked(1), "queue 1 in interrupt mode")
            modes = {x["queue"]: x["mode"] for x in d.ok("show interface rx-placement")["data"]}
            assert modes == {0: "polling", 1: "interrupt"}
            # kept across a reconnect
            peer.disconnect("flap")
            memif.testing.drive(sock, until=lambda: peer.connected, timeout=15)
            _wait(lambda: masked(0) and not masked(1), "the modes after a reconnect")
            assert "expected polling, interrupt, adaptive" in d.fails(
                "set interface rx-mode memif1/0 turbo")
    finally:
        d.stop()


def test_l2fib_add_del_static(tmp_path: Path) -> None:
    a_path, b_path = tmp_path / "a.sock", tmp_path / "b.sock"
    d = Memifd(tmp_path, [f"create memif socket id 1 filename {a_path}",
                          f"create memif socket id 2 filename {b_path}",
                          "create interface memif id 0 socket-id 1 master",
                          "create interface memif id 0 socket-id 2 master",
                          "create bridge-domain 1", "create bridge-domain 2",
                          "set interface l2 bridge memif1/0 1",
                          "set interface l2 bridge memif2/0 1",
                          "set interface state memif1/0 up",
                          "set interface state memif2/0 up"]).wait_ready()  # fmt: skip
    x = "02:00:00:00:00:0a"
    try:

        def entries() -> dict:
            return {(e["mac"], e["bd_id"]): e for e in d.ok("show l2fib verbose")["data"]}

        d.ok(f"l2fib add {x} 1 memif1/0 static")
        assert entries()[(x, 1)]["static"] and entries()[(x, 1)]["interface"] == "memif1/0"
        # a frame from X arriving on memif2/0 does not move a static entry
        with memif.Socket(str(b_path)) as sock:
            peer = sock.create_interface(role="client", id=0)
            memif.testing.drive(sock, until=lambda: peer.connected, timeout=15)
            d.wait_up("memif2/0")
            frame = bytes.fromhex("ffffffffffff" "02000000000a" "0800") + bytes(50)
            assert peer.send([frame]) == 1
            _wait(lambda: d.interfaces()["memif2/0"]["rx_packets"] == 1, "the frame")
        assert entries()[(x, 1)]["interface"] == "memif1/0"
        assert d.fails(f"l2fib add {x} 2 memif1/0") == "memif1/0 is not in bridge domain 2"
        assert "bad MAC address" in d.fails("l2fib add 02:zz 1 memif1/0")
        d.ok("l2fib add 02:00:00:00:00:0b 1 memif2/0")  # a dynamic one
        assert not entries()[("02:00:00:00:00:0b", 1)]["static"]
        d.ok(f"l2fib del {x} 1")
        assert (x, 1) not in entries()
        assert d.fails(f"l2fib del {x} 1") == f"no L2 FIB entry {x} in bridge domain 1"
        d.ok(f"l2fib add {x} 1 memif1/0 static")
        d.ok("delete interface memif memif1/0")  # its static entries go with it
        assert (x, 1) not in entries()
    finally:
        d.stop()
