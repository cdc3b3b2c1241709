"""Tests of ``memif bench``: its JSON Lines output, run as the real command in a subprocess.

The python-python test needs nothing but this package; the test marked ``testpmd`` runs one
quick point of every pair that involves DPDK testpmd (installing testpmd if it can, else
skipping, or failing when the environment variable CI is ``true``).
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from helpers import ENV, memif_argv
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from memif.tools.bench import cli as bench

pytestmark = pytest.mark.slow  # see the slow marker in pyproject.toml

KEYS = {"pair", "frame", "burst", "mpps", "gbps", "ratio"}


def run_bench(*args: str, timeout: float = 120.0) -> list[dict]:
    """Run ``python -m memif.cli bench --json ...``; return the parsed lines."""
    proc = subprocess.run(
        memif_argv("bench", "--json", *args),
        capture_output=True, text=True, timeout=timeout, env=ENV, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    for obj in lines:
        assert obj.keys() >= KEYS, obj
        assert obj["error"] is None, obj
        assert obj["mpps"] > 0, obj
        assert obj["gbps"] == pytest.approx(obj["mpps"] * obj["frame"] * 8 / 1000, rel=1e-3)
    assert "measuring" in proc.stderr  # progress goes to stderr
    return lines


def test_python_python_json() -> None:
    lines = run_bench(
        "--seconds", "0.3", "--frames", "64", "--bursts", "32", "--pairs", "python-python"
    )
    assert len(lines) == 1
    (obj,) = lines
    assert (obj["pair"], obj["frame"], obj["burst"]) == ("python-python", 64, 32)
    assert obj["ratio"] is None  # no testpmd-testpmd in this run
    assert obj["seq_errors"] == 0  # the receiver read every sequence number, none missing
    assert obj["peer_polling"] is True  # receiver in polling mode: no eventfd kicks
    assert obj["packets"] > 0 and obj["rx_bytes"] == obj["packets"] * 64


def test_plan_puts_the_reference_first() -> None:
    points = bench.plan([64, 1500], [32], ["python-python", "testpmd-testpmd"])
    assert [(p.pair, p.frame) for p in points] == [
        ("testpmd-testpmd", 64), ("python-python", 64),
        ("testpmd-testpmd", 1500), ("python-python", 1500),
    ]  # fmt: skip


def test_frame_template_is_udp_with_a_valid_ip_checksum() -> None:
    """The template as scapy (an implementation nobody here wrote) reads it: its IPv4
    checksum is the one scapy computes for the same header."""
    for size in (60, 64, 1500):
        f = bench.build_frame(size)
        assert len(f) == size and f.dtype == np.uint8
        assert bytes(f[12:14]) == b"\x08\x00" and f[23] == 17
        assert int.from_bytes(bytes(f[16:18]), "big") == size - 14
        frame = Ether(bytes(f))
        ip, udp = frame[IP], frame[UDP]
        assert (ip.src, ip.dst, ip.len, ip.ihl) == ("198.18.0.1", "198.18.0.2", size - 14, 5)
        assert (udp.sport, udp.dport, udp.len, udp.chksum) == (9, 9, size - 34, 0)
        header = IP(bytes(f[14:]))
        del header.chksum  # scapy computes a deleted checksum when it builds the header
        assert IP(bytes(header)).chksum == ip.chksum != 0
    with pytest.raises(ValueError):
        bench.build_frame(59)


@pytest.mark.testpmd
def test_testpmd_pairs_json(testpmd_binary: str) -> None:
    pairs = "testpmd-testpmd,python-testpmd,testpmd-python"
    lines = run_bench(
        "--seconds", "0.3", "--frames", "64", "--bursts", "32", "--pairs", pairs, timeout=180
    )
    assert [obj["pair"] for obj in lines] == pairs.split(",")
    ref = lines[0]
    assert ref["ratio"] == 1.0
    for obj in lines[1:]:
        assert obj["ratio"] == pytest.approx(obj["mpps"] / ref["mpps"], rel=1e-3)


@pytest.mark.parametrize("ring", ["1000", "32768", "1"])
def test_bad_ring_size_is_one_line(ring: str) -> None:
    proc = subprocess.run(
        memif_argv("bench", "--ring-size", ring),
        capture_output=True, text=True, timeout=60, env=ENV, check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert f"--ring-size {ring} must be a power of two 2..16384" in proc.stderr
