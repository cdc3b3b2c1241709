"""``memif demo``: the switch demo (memifd, two peers, a monitor) and ``--pair``."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import memif_popen as memif_cmd
from helpers import memifctl

from memif import testing
from memif.tools.common import child_env, package_root
from memif.tools.demo import cli as demo

pytestmark = pytest.mark.slow  # see the slow marker in pyproject.toml


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (leftover peers)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline:
                found.append(int(entry))
    return found


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# ---------------------------------------------------------------------- --pair
def test_demo_json_summary() -> None:
    proc = memif_cmd("demo", "--pair", "--duration", "1", "--json")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["packets"] > 0
    assert summary["tx_packets"] == summary["rx_packets"] == summary["packets"]
    assert summary["server_echoed"] == summary["tx_packets"]
    assert summary["lost"] == 0
    assert summary["mismatches"] == 0
    assert summary["errors"] == {} and summary["error_count"] == 0
    assert summary["jumbo"] > 0  # chained 9000-byte frames went both ways
    assert summary["ok"] is True and summary["interrupted"] is False
    assert 0.9 < summary["duration"] < 5
    assert summary["client_pid"] != summary["server_pid"]  # two processes
    assert gone(summary["server_pid"])
    assert not processes_mentioning(summary["socket"])
    assert "Mpps" in err  # the live line went to stderr, stdout is pure JSON


def test_demo_human_output() -> None:
    proc = memif_cmd("demo", "--pair", "--duration", "1")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "client pid" in out and "server pid" in out
    live = [line for line in out.splitlines() if "Mpps" in line and "tx" in line]
    assert live and "lost 0" in live[0] and "errors 0" in live[0]
    assert "OK: every frame came back intact and in order" in out


def interrupted(*args: str, flowing: str) -> dict:
    """``memif demo --json ARGS``, Ctrl-C once its stderr shows ``flowing``; the summary."""
    proc = memif_cmd("demo", "--duration", "60", "--json", *args)
    end = time.monotonic() + 30
    seen = ""
    while flowing not in seen and time.monotonic() < end:  # traffic is flowing
        ready, _, _ = select.select([proc.stderr], [], [], 1)
        if ready:
            seen += proc.stderr.readline()
        assert proc.poll() is None, seen
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    return json.loads(out.strip().splitlines()[-1])


def test_ctrl_c_prints_the_summary_and_cleans_up() -> None:
    summary = interrupted("--pair", flowing="Mpps")
    assert summary["interrupted"] is True
    assert summary["packets"] > 0 and summary["lost"] == 0 and summary["mismatches"] == 0
    assert summary["duration"] < 30
    assert gone(summary["server_pid"])
    assert not processes_mentioning(summary["socket"])


def test_bad_options_fail_before_starting_anything() -> None:
    proc = memif_cmd("demo", "--pair", "--ring-size", "8")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "ring of at least 10 slots" in err
    proc = memif_cmd("demo", "--duration", "0")
    assert proc.wait(timeout=30) == 2  # argparse
    for args in (["--ring-size", "64"], ["--pair", "--rate", "1000"], ["--pair", "--keep"]):
        proc = memif_cmd("demo", *args)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 2, args
        assert "--pair" in err and not out, args


def test_help_describes_the_demo() -> None:
    proc = memif_cmd("demo", "--help")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "echoes every frame" in out and "--duration" in out and "--json" in out
    for option in ("--pair", "--peers", "--rate", "--keep", "SPAN", "memifd"):
        assert option in out, option
    assert not re.search(r"--peer\b(?!s)", out)  # the server process's mode is internal
    proc = memif_cmd("--help")
    out, _ = proc.communicate(timeout=30)
    assert "demo" in out


# ---------------------------------------------------------------------- the switch demo
def alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie counts as gone: it is exiting, nobody reaped it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def assert_cleaned_up(summary: dict) -> None:
    """Every process the demo started has exited, and its directory is gone."""
    pids = summary["pids"]
    assert {"memifd", "monitor", "A", "C"} <= set(pids), pids
    assert not [name for name, pid in pids.items() if alive(pid)], pids
    assert not processes_mentioning(summary["dir"])  # memifd, monitor, gen, testpmd
    assert not os.path.exists(summary["dir"])


def run_switch_demo(*args: str, timeout: float = 90) -> tuple[dict, str]:
    proc = memif_cmd("demo", "--json", *args)
    out, err = proc.communicate(timeout=timeout)
    assert out.strip(), err
    summary = json.loads(out.strip().splitlines()[-1])
    assert proc.returncode == 0, (summary, err)
    return summary, err


def check_switch_summary(summary: dict, peers: str) -> None:
    assert summary["peers"] == peers
    assert summary["ok"] is True and summary["problems"] == [], summary["problems"]
    assert summary["interrupted"] is False and "error" not in summary
    a_to_c, c_to_a = summary["a_to_c"], summary["c_to_a"]
    assert a_to_c > 0 and c_to_a > 0
    # SPAN rx of A and C: every frame once, both directions.
    assert summary["monitor"] == summary["monitor_expected"] == a_to_c + c_to_a
    assert summary["mirrored"] == a_to_c + c_to_a and summary["monitor_drops"] == 0
    assert summary["lost"] == 0 and summary["loss"] == 0
    assert summary["drops"] == summary["tx_errors"] == summary["span_lost"] == 0
    assert summary["a_to_c_delivered"] == a_to_c and summary["c_to_a_delivered"] == c_to_a
    assert c_to_a == a_to_c  # C reflects every frame
    ifs = summary["interfaces"]
    assert ifs["memif1/0"]["rx_packets"] == ifs["memif2/0"]["tx_packets"] == a_to_c
    assert ifs["memif2/0"]["rx_packets"] == ifs["memif1/0"]["tx_packets"] == c_to_a
    for d in ifs.values():
        assert d["drops"] == d["tx_errors"] == 0, d
    # The peers' own counters agree with the switch's.
    a, c = summary["peer_reports"]["A"], summary["peer_reports"]["C"]
    assert (a["tx_packets"], a["rx_packets"]) == (a_to_c, c_to_a), a
    assert (c["rx_packets"], c["tx_packets"]) == (a_to_c, c_to_a), c
    assert_cleaned_up(summary)


def test_switch_demo_python_peers() -> None:
    summary, err = run_switch_demo("--duration", "3", "--peers", "python")
    check_switch_summary(summary, "python")
    assert 2.5 < summary["duration"] < 4  # memif gen's own measure of its sending phase
    a = summary["peer_reports"]["A"]
    assert a["lost"] == 0 and a["mode"] == "txonly" and a["p50_us"] is not None
    assert "monitor" in err and "memif1/0" in err  # live lines on stderr, stdout pure JSON


@pytest.mark.testpmd
def test_switch_demo_testpmd_peers(testpmd_binary: str) -> None:
    summary, _ = run_switch_demo("--duration", "3", "--peers", "testpmd")
    check_switch_summary(summary, "testpmd")
    a = summary["peer_reports"]["A"]
    assert a["rounds"] > 0 and a["tx_packets"] == a["rounds"] * a["frames_per_round"]
    assert 2.5 < summary["duration"] < 5


def test_switch_demo_human_output() -> None:
    proc = memif_cmd("demo", "--duration", "1", "--peers", "python")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert "bridges A and C" in out and "memif monitor" in out
    live = [line for line in out.splitlines() if "memif1/0 rx" in line and "monitor" in line]
    assert live and "drops 0" in live[-1]
    assert "A -> C" in out and "C -> A" in out and "lost 0" in out
    assert "OK: every frame crossed the bridge both ways" in out


def test_switch_demo_ctrl_c_cleans_up() -> None:
    summary = interrupted("--peers", "python", flowing="kpps")
    assert summary["interrupted"] is True and summary["a_to_c"] > 0
    assert summary["duration"] < 30
    assert_cleaned_up(summary)


def test_switch_demo_keep_leaves_memifd_running() -> None:
    summary, _ = run_switch_demo("--duration", "1", "--peers", "python", "--keep")
    kept = summary["kept"]
    pid = kept["memifd_pid"]
    try:
        assert summary["ok"] and alive(pid)
        assert not [n for n, p in summary["pids"].items() if n != "memifd" and alive(p)]
        r = memifctl(kept["cli_socket"], "show", "interface", json_out=True, timeout=30)
        assert r.returncode == 0, r.stderr
        ifs = {d["name"]: d for d in json.loads(r.stdout)}
        assert ifs["memif1/0"]["rx_packets"] == summary["a_to_c"]
    finally:
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + 10
        while alive(pid) and time.monotonic() < end:
            time.sleep(0.05)
        shutil.rmtree(kept["dir"], ignore_errors=True)
    assert not alive(pid)


# ---------------------------------------------------------------------- in one process
def exchange(gen: demo.Client, echo: demo.Echo, frames: int) -> None:
    """Run both sides' loops in turn until ``frames`` came back."""
    for _ in range(100_000):
        if gen.c.rx_packets >= frames:
            return
        if gen.c.tx_packets < frames:
            gen.send()
        echo.step()
        gen.receive()
    raise AssertionError(f"stuck at {gen.c}")


@pytest.mark.parametrize(("ring_size", "buffer_size"), [(1024, 2048), (32, 1024), (16, 4096)])
def test_generator_echo_and_checker(ring_size: int, buffer_size: int) -> None:
    with testing.pair(ring_size=ring_size, buffer_size=buffer_size) as (server, client):
        gen = demo.Client(client, buffer_size)
        echo = demo.Echo(server)
        exchange(gen, echo, 5000)  # wraps the rings many times, chains across the end
        c = gen.c
        assert c.rx_packets == c.tx_packets >= 5000
        assert c.mismatches == 0 and c.gaps == 0 and not gen.errors()
        assert c.jumbo == sum(1 for s in range(c.rx_packets) if demo.SIZES[s % 32] > 1514)
        assert echo.packets == c.tx_packets
        sizes = np.array(demo.SIZES)
        assert c.rx_bytes == sum(int(sizes[s % 32]) for s in range(c.rx_packets))


def test_checker_catches_a_damaged_frame() -> None:
    with testing.pair() as (server, client):
        gen = demo.Client(client, 2048)
        echo = demo.Echo(server)
        exchange(gen, echo, 100)
        assert gen.c.mismatches == 0
        gen.send()
        echo.step()
        rxq = client.rx_queues[0]
        ring = rxq.ring
        slot = (rxq.cursor + 3) & ring.mask  # the fourth frame waiting
        region = client.regions[int(ring.d_region[slot])].array
        region[int(ring.d_offset[slot]) + 40] ^= 0x5A
        gen.receive()
        assert gen.c.mismatches == 1
        assert gen.c.first_bad.startswith("frame #")


def test_frame_bank_segments_match_whole_frames() -> None:
    bank = demo.FrameBank(demo.SIZES, 2048, demo.SERVER_MAC, demo.CLIENT_MAC)
    seq = np.arange(64, 96)
    segidx, starts, ends = bank.expand(seq % 32)
    for i, s in enumerate(seq):
        rows = [bank.rows[k, : bank.seg_len[k]] for k in segidx[starts[i] : ends[i]]]
        whole = np.concatenate(rows)
        whole[demo.SEQ_AT : demo.SEQ_AT + 4] = demo.seq_bytes(np.array([s]))[0]
        assert np.array_equal(whole, bank.frame(int(s)))
        assert len(whole) == demo.SIZES[s % 32]
        assert bytes(whole[:12]) == demo.SERVER_MAC + demo.CLIENT_MAC
    assert int(bank.slot_nseg[31]) == 5  # 9000 bytes over 2048-byte buffers


def test_checker_copes_with_other_segmentation() -> None:
    """Frames cut into other buffer sizes than expected are compared whole."""
    with testing.pair() as (server, client):
        gen = demo.Client(client, 2048)
        gen.rx_bank = demo.FrameBank(demo.SIZES, 1024, demo.CLIENT_MAC, demo.SERVER_MAC)
        exchange(gen, demo.Echo(server), 500)
        assert gen.c.mismatches == 0 and gen.c.rx_packets == gen.c.tx_packets


def test_a_child_imports_this_very_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """child_env puts the directory holding ``memif`` first on PYTHONPATH (not ``memif``
    itself), so a child started from anywhere imports this tree's package."""
    monkeypatch.delenv("PYTHONPATH", raising=False)
    out = subprocess.run(
        [sys.executable, "-c", "import memif; print(memif.__file__)"],
        env=child_env(), cwd="/", capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert out.strip() == os.path.join(package_root(), "memif", "__init__.py")
