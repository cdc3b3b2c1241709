"""The tools as long runs meet them: a port flap on a real memifd (``set interface state
down`` then ``up``) does not end ``memif gen`` (``--reconnect``), its live line says
``reconnecting`` meanwhile and its counters go on; every live line shows the elapsed
time and running totals, and the last one the run's totals."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import ENV, Memifd, memif_argv, memif_popen
from helpers import wait_until as _wait

import memif

pytestmark = pytest.mark.slow


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


def _reap(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


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
        _reap(proc)
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
        _reap(proc)
        d.stop()
    assert proc.returncode == 1
    s = json.loads(out.strip().splitlines()[-1])
    assert s["reconnects"] == 0 and "admin down" in s["disconnected"], s
    assert "peer disconnected before the end" in err.read_text()


def test_monitor_and_responder_lines_and_their_reconnect_flags(tmp_path: Path) -> None:
    """One memifd bridge: gen floods into memif1/0; a monitor on memif1/1 (reconnect, the
    default), a monitor on memif1/2 and a responder on memif1/3 (both --no-reconnect).
    Flapping each port: the first monitor goes on and counts on, the other two end."""
    sock = tmp_path / "a.sock"
    d = Memifd(tmp_path, [f"create memif socket id 1 filename {sock}",
                          *(f"create interface memif id {i} socket-id 1 master" for i in range(4)),
                          "create bridge-domain 1",
                          *(f"set interface l2 bridge memif1/{i} 1" for i in range(3)),
                          *(f"set interface state memif1/{i} up" for i in range(4))])  # fmt: skip
    d.wait_ready()
    common = ("--socket", str(sock), "--json")
    files = {k: tmp_path / f"{k}.err" for k in ("gen", "mon", "mon2", "resp")}
    procs = {
        "gen": memif_popen("gen", "txonly", *common, "--id", "0", "--rate", "1000",
                           stderr=files["gen"].open("w")),
        "mon": memif_popen("monitor", *common, "--id", "1", "--interval", "0.2",
                           stderr=files["mon"].open("w")),
        "mon2": memif_popen("monitor", *common, "--id", "2", "--interval", "0.2",
                            "--no-reconnect", stderr=files["mon2"].open("w")),
        "resp": memif_popen("responder", *common, "--id", "3", "--no-reconnect",
                            stderr=files["resp"].open("w")),
    }  # fmt: skip
    counted = re.compile(r"^\d+\.\d s  monitor: (\d+) packets", re.M)

    def seen(k: str) -> int:
        found = counted.findall(files[k].read_text())
        return int(found[-1]) if found else 0

    try:
        _wait(lambda: seen("mon") > 50 and seen("mon2") > 50, "both monitors counting")
        d.ok("set interface state memif1/1 down")
        _wait(lambda: "(waiting for the peer)" in files["mon"].read_text(), "monitor waiting")
        before = seen("mon")
        d.ok("set interface state memif1/1 up")
        _wait(lambda: seen("mon") > before + 50, "the monitor counting on after the flap")
        assert procs["mon"].poll() is None
        for port, k in (("memif1/2", "mon2"), ("memif1/3", "resp")):
            d.ok(f"set interface state {port} down")
            procs[k].wait(timeout=30)  # --no-reconnect: the flap ends it
        procs["mon"].send_signal(signal.SIGINT)
        procs["mon"].wait(timeout=30)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
            p.communicate(timeout=30)
        d.stop()
    for k in ("mon", "mon2", "resp"):
        assert procs[k].returncode == 0, files[k].read_text()
    outs = {k: files[k].read_text().splitlines() for k in procs}
    assert outs["mon"][-1].startswith(tuple(f"{i}" for i in range(10)))
    assert "(done, stopped by signal)  monitor: " in outs["mon"][-1]
    assert "(done, stopped by disconnected)  monitor: " in outs["mon2"][-1]
    assert re.match(r"^\d+\.\d s \(done\)  rx \d+ ", outs["resp"][-1]), outs["resp"]
    assert any("disconnected (interface admin down); stopping" in x for x in outs["resp"])


# ------------------------------------------------------------------ the latency histogram
def _round_trip(tmp_path: Path, *args: str) -> tuple[str, str]:
    """``memif gen txonly`` against a ``memif gen macswap`` reflector: (stdout, stderr)."""
    path = memif.testing.unique_name("hist")
    refl = memif_popen("gen", "macswap", "--socket", path, "--role", "server", "--quiet")
    try:
        gen = memif_popen("gen", "txonly", "--socket", path, "--count", "2000",
                          "--rate", "20000", "--linger", "0.2", "--quiet", *args)  # fmt: skip
        out, err = gen.communicate(timeout=60)
        assert gen.returncode == 0, err
        refl.communicate(timeout=30)  # a server reflector ends when its client leaves
    finally:
        _reap(refl)
    return out, err


def test_gen_histogram_and_plot(tmp_path: Path) -> None:
    chart = tmp_path / "latency.png"
    out, err = _round_trip(tmp_path, "--histogram", "--plot", str(chart), "--json")
    s = json.loads(out)
    h = s["histogram"]
    assert sum(h["counts"]) == s["latency_samples"] == s["rx_packets"] == 2000
    assert len(h["edges_us"]) == len(h["counts"]) + 1 and h["edges_us"] == sorted(h["edges_us"])
    assert h["edges_us"][0] <= s["min_us"] and h["edges_us"][-1] >= s["max_us"]
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 1000
    assert f"latency chart written to {chart}" in err

    out, _ = _round_trip(tmp_path, "--histogram")  # the text form, after the summary
    rows = re.findall(r"^\s+[\d.]+ -\s+[\d.]+ us  #*\s+(\d+)$", out, re.M)
    assert len(rows) == 20 and sum(map(int, rows)) == 2000, out
    assert "round-trip latency histogram (2000 samples):" in out


def test_gen_plot_without_matplotlib_is_one_line(tmp_path: Path) -> None:
    shim = tmp_path / "shim" / "matplotlib"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {**ENV, "PYTHONPATH": f"{shim.parent}:{ENV['PYTHONPATH']}"}
    r = subprocess.run(memif_argv("gen", "--socket", "@nobody", "--plot", str(tmp_path / "x.png")),
                       env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == "memif: --plot needs matplotlib: pip install 'memif[plot]' (or matplotlib)\n"
    r = subprocess.run(memif_argv("gen", "--socket", "@nobody", "--plot", str(tmp_path / "x.gif")),
                       env=ENV, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 1 and "must end with .png, .svg, .pdf" in r.stderr
