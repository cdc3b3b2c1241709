"""The tools as long runs meet them: a port flap on a real memifd (``set interface state
down`` then ``up``) does not end ``memif gen`` (``--reconnect``), its live line says
``reconnecting`` meanwhile and its counters go on; every live line shows the elapsed
time and running totals, and the last one the run's totals."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import Memifd, memif_popen

pytestmark = pytest.mark.slow


def _wait(cond, what: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def _memifd(tmp_path: Path) -> Memifd:
    return Memifd(tmp_path, [f"create memif socket id 1 filename {tmp_path / 'a.sock'}",
                             "create interface memif id 0 socket-id 1 master",
                             "set interface state memif1/0 up"]).wait_ready()  # fmt: skip


def _gen(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    """``memif gen txonly`` to memifd's memif1/0, its live line (stderr) into a file."""
    err = tmp_path / "gen.err"
    proc = memif_popen(
        "gen", "txonly", "--socket", str(tmp_path / "a.sock"), "--rate", "2000", "--json",
        *args, stderr=err.open("w"),
    )  # fmt: skip
    return proc, err


def test_gen_survives_a_port_flap_and_its_counters_go_on(tmp_path: Path) -> None:
    d = _memifd(tmp_path)
    proc, err = _gen(tmp_path)
    try:
        rx = lambda: d.interfaces()["memif1/0"]["rx_packets"]  # noqa: E731
        _wait(lambda: rx() > 200, "traffic before the flap")
        d.ok("set interface state memif1/0 down")
        _wait(lambda: "reconnecting" in err.read_text(), "the live line saying reconnecting")
        assert proc.poll() is None, err.read_text()  # the flap did not end the run
        before = rx()
        d.ok("set interface state memif1/0 up")
        _wait(lambda: rx() > before + 200, "traffic after the flap")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        d.stop()
    assert proc.returncode == 0, err.read_text()
    s = json.loads(out.strip().splitlines()[-1])
    assert s["reconnects"] == 1 and s["disconnected"] is None and s["interrupted"]
    assert s["tx_packets"] > before + 200  # the count went on across the flap
    lines = err.read_text().splitlines()
    flap = next(x for x in lines if "reconnecting" in x)
    assert flap.split()[1] == "s" and "tx " in flap  # elapsed time and totals while down
    assert (
        lines[-1].startswith(f"{s['seconds']:.1f} s (done")
        and f"tx {s['tx_packets']:,}" in (lines[-1])
    )


def test_gen_no_reconnect_ends_at_the_flap(tmp_path: Path) -> None:
    d = _memifd(tmp_path)
    proc, err = _gen(tmp_path, "--no-reconnect")
    try:
        _wait(lambda: d.interfaces()["memif1/0"]["rx_packets"] > 50, "traffic")
        d.ok("set interface state memif1/0 down")
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        d.stop()
    assert proc.returncode == 1
    s = json.loads(out.strip().splitlines()[-1])
    assert s["reconnects"] == 0 and "admin down" in s["disconnected"], s
    assert "peer disconnected before the end" in err.read_text()
