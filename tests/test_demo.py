"""``memif demo``: two processes, traffic both ways, every frame checked."""

from __future__ import annotations

import json
import os
import select
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import memif_popen as memif_cmd

from memif import testing
from memif.apps import demo


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


def test_demo_json_summary() -> None:
    proc = memif_cmd("demo", "--duration", "1", "--json")
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
    proc = memif_cmd("demo", "--duration", "1")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "client pid" in out and "server pid" in out
    live = [line for line in out.splitlines() if "Mpps" in line and "tx" in line]
    assert live and "lost 0" in live[0] and "errors 0" in live[0]
    assert "OK: every frame came back intact and in order" in out


def test_ctrl_c_prints_the_summary_and_cleans_up() -> None:
    proc = memif_cmd("demo", "--duration", "60", "--json")
    end = time.monotonic() + 30
    seen = ""
    while "Mpps" not in seen and time.monotonic() < end:  # traffic is flowing
        ready, _, _ = select.select([proc.stderr], [], [], 1)
        if ready:
            seen += proc.stderr.readline()
        assert proc.poll() is None, seen
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["interrupted"] is True
    assert summary["packets"] > 0 and summary["lost"] == 0 and summary["mismatches"] == 0
    assert summary["duration"] < 30
    assert gone(summary["server_pid"])
    assert not processes_mentioning(summary["socket"])


def test_bad_options_fail_before_starting_anything() -> None:
    proc = memif_cmd("demo", "--ring-size", "8")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "ring of at least 10 slots" in err
    proc = memif_cmd("demo", "--duration", "0")
    assert proc.wait(timeout=30) == 2  # argparse


def test_help_describes_the_demo() -> None:
    proc = memif_cmd("demo", "--help")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "echoes every frame" in out and "--duration" in out and "--json" in out
    assert "--peer" not in out  # the server process's mode is internal
    proc = memif_cmd("--help")
    out, _ = proc.communicate(timeout=30)
    assert "demo" in out


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
        slot = (rxq._cursor + 3) & ring.mask  # the fourth frame waiting
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
