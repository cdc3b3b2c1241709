"""Tests of ``memif bench-switch``: the Python switch bridging a primed testpmd loop.

The quick test runs the real command in a subprocess with one switch configuration and the
reference (testpmd in the middle), and checks its JSON Lines. It needs DPDK testpmd: the shared
``testpmd_binary`` fixture of conftest.py installs it if it can, else skips (fails under CI).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import ENV, memif_argv

from memif.loop import RxMode
from memif.tools.bench import sweep, sweep_traffic, switch_cli
from memif.tools.bench import switch as bench_switch
from memif.tools.bench.common import choice_list

pytestmark = pytest.mark.slow  # see the slow marker in pyproject.toml

KEYS = {"config", "frame", "mpps", "gbps", "ratio", "cpu", "busy", "nodes"}
NODE_KEYS = {"calls", "vectors", "vectors_per_call", "ns_per_packet"}


def run_bench_switch(*args: str, timeout: float = 180.0) -> list[dict]:
    """Run ``python -m memif.cli bench-switch --json ...``; return the parsed lines."""
    proc = subprocess.run(
        memif_argv("bench-switch", "--json", *args),
        capture_output=True, text=True, timeout=timeout, env=ENV, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "measuring" in proc.stderr  # progress goes to stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


@pytest.mark.testpmd
def test_switch_and_reference_json(testpmd_binary: str) -> None:
    lines = run_bench_switch(
        "--seconds", "0.5", "--frames", "64", "--configs", "master-copy,reference",
        "--testpmd", testpmd_binary,
    )  # fmt: skip
    assert [(o["config"], o["frame"]) for o in lines] == [("reference", 64), ("master-copy", 64)]
    for obj in lines:
        assert obj.keys() >= KEYS, obj
        assert obj["error"] is None, obj
        assert obj["mpps"] > 0, obj
        assert obj["gbps"] == pytest.approx(obj["mpps"] * 64 * 8 / 1000, rel=1e-3)
    ref, sw = lines
    assert ref["ratio"] == 1.0
    assert ref["cpu"] is None and ref["busy"] is None and ref["nodes"] == {}
    assert sw["ratio"] == pytest.approx(sw["mpps"] / ref["mpps"], rel=1e-3)
    assert 0 < sw["cpu"] <= 1.5 and 0 < sw["busy"] <= 1.05
    nodes = sw["nodes"]
    for name in ("memif-input", "ethernet-input", "l2-learn", "l2-fwd", "l2-output"):
        assert nodes[name].keys() >= NODE_KEYS, nodes
        assert nodes[name]["vectors"] > 0 and nodes[name]["ns_per_packet"] > 0
    outputs = [n for n in nodes if n.endswith("-output") and n != "l2-output"]
    assert len(outputs) == 2, nodes  # both ports transmit: the loop runs both ways
    # every packet received on one port was forwarded out of the other
    assert nodes["memif-input"]["vectors"] == sum(nodes[n]["vectors"] for n in outputs)


@pytest.mark.testpmd
def test_jumbo_frames_cross_the_switch_chained(testpmd_binary: str) -> None:
    lines = run_bench_switch(
        "--seconds", "0.5", "--warmup", "0.3", "--frames", "9000", "--configs", "master-copy",
        "--testpmd", testpmd_binary,
    )  # fmt: skip
    [obj] = lines
    assert obj["error"] is None, obj
    assert (obj["config"], obj["frame"]) == ("master-copy", 9000)
    assert obj["packets"] > 0 and obj["bytes"] == obj["packets"] * 9000, obj
    assert obj["prime"] == 6  # as many bursts of 5-descriptor chains as fit a 1024-slot ring
    assert obj["ring_size"] == 1024
    assert obj["gbps"] == pytest.approx(obj["bytes"] * 8 / obj["seconds"] / 1e9, rel=1e-2)
    # no chain refused, no ring fault (a chain seen before its end is waited for, not dropped)
    assert not [k for k in obj["errors"] if not k.endswith("/chain-incomplete")], obj
    nodes = obj["nodes"]
    outputs = [n for n in nodes if n.endswith("-output") and n != "l2-output"]
    assert nodes["memif-input"]["vectors"] == sum(nodes[n]["vectors"] for n in outputs)


@pytest.mark.testpmd
def test_imix_circulates_a_mix(testpmd_binary: str) -> None:
    [obj] = run_bench_switch(
        "--seconds", "0.5", "--warmup", "0.3", "--frames", "imix", "--configs", "slave-zc",
        "--testpmd", testpmd_binary,
    )  # fmt: skip
    assert obj["error"] is None, obj
    assert obj["frame"] == "imix" and obj["prime"] == 24
    assert obj["packets"] > 0
    # between the smallest and the largest frame of the mix: neither size alone circulates
    assert 64 < obj["bytes"] / obj["packets"] < 1518, obj


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--frames", "59"], "frame '59': expected a size 60..9216 or imix"),
        (["--frames", "9217"], "frame '9217': expected a size 60..9216 or imix"),
        (["--frames", "jumbo"], "frame 'jumbo': expected a size 60..9216 or imix"),
        (["--prime", "0"], "--prime 0 must be 1..1024"),
        (["--ring-size", "1000"], "--ring-size 1000 must be a power of two 256..16384"),
        (["--ring-size", "32768"], "--ring-size 32768 must be a power of two 256..16384"),
        (["--configs", "nope"], "unknown configuration 'nope'"),
        (["--seconds", "inf"], "expected a finite positive number, not inf"),  # never ends
        (["--warmup", "inf"], "expected a finite number >= 0, not inf"),
        (["--warmup", "nan"], "expected a finite number >= 0, not nan"),
        (["--warmup", "-1"], "expected a finite number >= 0, not -1"),
        (["--rx-mode", "turbo"], "invalid choice: 'turbo'"),
    ],
)
def test_bad_options_exit_2_with_one_line(args: list[str], message: str) -> None:
    proc = subprocess.run(
        memif_argv("bench-switch", *args),
        capture_output=True, text=True, timeout=60, env=ENV, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert proc.stdout == ""


def test_rate_sweep_points_and_chart(tmp_path: Path) -> None:
    chart = tmp_path / "sweep.png"
    proc = subprocess.run(
        memif_argv(
            "bench-switch", "--json", "--rates", "10,50", "--configs", "slave-zc",
            "--modes", "adaptive", "--seconds", "0.3", "--warmup", "0.1", "--plot", str(chart),
        ),
        capture_output=True, text=True, timeout=120, env=ENV, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    points = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [(p["config"], p["mode"], p["percent"]) for p in points] == [
        ("slave-zc", "adaptive", None), ("slave-zc", "adaptive", 10), ("slave-zc", "adaptive", 50),
    ]  # fmt: skip
    assert proc.stderr.count("offered") == 3  # progress per point on stderr
    peak = points[0]
    for p in points:
        assert p["error"] is None, p
        assert p["frame"] == 64 and p["seconds"] > 0
        assert p["delivered_pps"] > 0 and p["delivered_pps"] <= p["offered_pps"] * 1.05, p
        assert 0 <= p["cpu"] <= 1.05, p
        assert all(re.fullmatch(r"[a-z0-9/-]+/[a-z-]+", k) for k in p["drops"]), p["drops"]
        assert all(v > 0 for v in p["drops"].values())
        assert p["latency_p50_us"] > 0 and p["latency_p99_us"] >= p["latency_p50_us"]
    for p in points[1:]:  # the rates asked are the percentages of the peak delivered
        assert p["target_pps"] == pytest.approx(peak["delivered_pps"] * p["percent"] / 100)
        # never above the rate asked: at most the lag a late source may carry into the window
        late = sweep_traffic.LAG + sweep_traffic.BURST
        assert p["offered_pps"] * p["seconds"] <= p["target_pps"] * p["seconds"] + late, p
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rates", "0"], "rate '0': expected percentages of the peak, 0 < p <= 100"),
        (["--rates", "120"], "rate '120': expected percentages of the peak, 0 < p <= 100"),
        (["--rates", "ten"], "rate 'ten': expected percentages of the peak"),
        (["--rates", "50", "--configs", "reference"], "--configs reference: the rate sweep"),
        (["--rates", "50", "--frames", "9000"], "--frames 9000: the rate sweep sends one buffer"),
        (["--rates", "50", "--modes", "fast"], "unknown receive mode 'fast'"),
        (["--rates", "50", "--plot", "out.txt"], "--plot out.txt: the file name must end with"),
        (["--plot", "out.png"], "--plot draws the rate sweep: give --rates too"),
    ],
)
def test_bad_sweep_options_exit_2_with_one_line(args: list[str], message: str) -> None:
    proc = subprocess.run(
        memif_argv("bench-switch", *args),
        capture_output=True, text=True, timeout=60, env=ENV, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert proc.stdout == ""


def test_latency_percentiles_from_the_histogram() -> None:
    hist = np.zeros(sweep_traffic.BINS, np.int64)
    ns = np.array([1000] * 98 + [100_000] * 2, np.int64)  # 1 us, and 2% at 100 us
    np.add.at(hist, sweep_traffic.latency_bin(ns), 1)
    assert sweep_traffic.percentile_us(hist, 50) == pytest.approx(1.0, rel=0.05)
    assert sweep_traffic.percentile_us(hist, 99) == pytest.approx(100.0, rel=0.05)
    assert sweep_traffic.percentile_us(np.zeros_like(hist), 50) is None


def test_frame_list_and_priming() -> None:
    assert switch_cli.frame_list("64, 9000,IMIX,64") == [64, 9000, "imix"]
    assert bench_switch.segments(9000) == [2048, 2048, 2048, 2048, 808]
    assert bench_switch.segments(2048) == [2048] and bench_switch.segments(64) == [64]
    assert bench_switch.priming(64, 48) == [(64, 48)]  # one buffer: primed as asked
    assert bench_switch.priming(9000, 48) == [(9000, 6)]  # 6 * 32 * 5 slots <= 1024
    assert bench_switch.priming(4096, 2) == [(4096, 2)]
    assert bench_switch.priming(9000, 48, 4096) == [(9000, 25)]  # 25 * 32 * 5 <= 4096 slots
    assert bench_switch.priming(9000, 48, 256) == [(9000, 1)]  # at least one burst
    assert bench_switch.priming("imix", 48) == [(64, 14), (570, 8), (1518, 2)]
    assert bench_switch.mean_frame("imix") == pytest.approx((7 * 64 + 4 * 570 + 1518) / 12)
    assert bench_switch.mean_frame(9000) == 9000.0


def test_plan_puts_the_reference_first() -> None:
    plan = switch_cli.plan([64, 1500], ["slave-zc", "reference", "master-zc"])
    assert [(c.name, f) for c, f in plan] == [
        ("reference", 64), ("master-zc", 64), ("slave-zc", 64),
        ("reference", 1500), ("master-zc", 1500), ("slave-zc", 1500),
    ]  # fmt: skip


def test_configs_name_roles_and_zero_copy() -> None:
    c = bench_switch.CONFIGS
    assert set(c) == {
        "reference", "master-zc", "master-copy", "slave-zc", "slave-copy", "bridged", "routed",
    }  # fmt: skip
    assert c["bridged"].path == "bridged" and c["routed"].path == "routed"
    assert all(c[name].path is None for name in c if name not in ("bridged", "routed"))
    assert c["master-zc"].switch_role == "master" and c["master-zc"].testpmd_zero_copy
    assert not c["master-copy"].testpmd_zero_copy
    assert c["slave-zc"].switch_role == "slave" and c["slave-zc"].switch_zero_copy
    assert not c["slave-copy"].switch_zero_copy and not c["slave-copy"].testpmd_zero_copy
    assert c["reference"].switch_role is None


def test_plan_runs_bridged_before_routed_and_the_open_path_without_imix() -> None:
    plan = switch_cli.plan([64, "imix"], ["routed", "master-copy", "bridged"])
    assert [(c.name, f) for c, f in plan] == [
        ("master-copy", 64), ("bridged", 64), ("routed", 64), ("master-copy", "imix"),
    ]  # fmt: skip


@pytest.mark.testpmd
def test_routed_beside_bridged_on_the_open_path(testpmd_binary: str) -> None:
    """The routed configuration (testpmd txonly on 10.10.0.0/24, the switch routing to the
    sink on 10.20.0.0/24) beside the bridged one in the same run, with its ratio."""
    lines = run_bench_switch(
        "--seconds", "0.5", "--warmup", "0.3", "--frames", "64,1500",
        "--configs", "routed,bridged", "--testpmd", testpmd_binary,
    )  # fmt: skip
    assert [(o["config"], o["frame"]) for o in lines] == [
        ("bridged", 64), ("routed", 64), ("bridged", 1500), ("routed", 1500),
    ]  # fmt: skip
    for obj in lines:
        assert obj["error"] is None, obj
        assert obj["mpps"] > 0 and obj["ratio"] is None, obj
        assert obj["gbps"] == pytest.approx(obj["mpps"] * obj["frame"] * 8 / 1000, rel=1e-3)
        # the rate is what the switch forwarded out of memif1/1: sent, or refused by the sink
        assert obj["packets"] == obj["nodes"]["memif1/1-output"]["vectors"], obj
        refused = obj["errors"].get("memif1/1-output/no-free-tx-slots", 0)
        assert obj["sink_refused"] == refused <= obj["packets"]
        assert obj["busy_mpps"] >= obj["mpps"] * 0.999
    for bridged, routed in (lines[0:2], lines[2:4]):
        assert bridged["vs_bridged"] is None
        assert routed["vs_bridged"] == pytest.approx(routed["mpps"] / bridged["mpps"], rel=1e-3)
        assert {"l2-fwd", "memif1/1-output"} <= bridged["nodes"].keys()
        assert "ip4-lookup" not in bridged["nodes"]
        nodes = routed["nodes"]
        assert {"ip4-input", "ip4-lookup", "ip4-rewrite", "memif1/1-output"} <= nodes.keys()
        assert "l2-fwd" not in nodes
        # every packet the generator got into the switch was routed (the sink resolved
        # statically; no drop but a full ring at the sink)
        assert set(routed["errors"]) <= {"memif1/1-output/no-free-tx-slots"}, routed["errors"]
        assert nodes["ip4-input"]["vectors"] == nodes["ip4-rewrite"]["vectors"]


def test_node_figures_are_window_deltas() -> None:
    before = {"a": (10, 1000, 50_000), "b": (5, 0, 0)}
    after = {"a": (20, 3000, 150_000), "b": (5, 0, 0), "c": (2, 100, 1_000)}
    figs = bench_switch.node_figures(before, after, mhz=2000.0)
    assert set(figs) == {"a", "c"}  # b did not run in the window
    assert figs["a"] == {
        "calls": 10, "vectors": 2000, "vectors_per_call": 200.0,
        "ns_per_packet": 50.0, "clocks_per_packet": 100.0,
    }  # fmt: skip
    assert figs["c"]["ns_per_packet"] == 10.0


def test_unknown_config_is_rejected() -> None:
    with pytest.raises(Exception, match="unknown configuration"):
        choice_list(bench_switch.CONFIGS, "configuration")("master-zc,nope")


def test_the_sweep_s_interrupt_mode_serves_the_switch_queues_in_interrupt_mode() -> None:
    """``--modes interrupt``: the same main loop, its connected queues in interrupt mode
    (the peer kicks, the loop sleeps at the first light turn), traffic delivered."""
    bench = sweep.SweepBench("master-copy", "interrupt", 64, sweep.SweepOptions(0.2, 0.05))
    try:
        bench.start()
        events = bench.sw.loop.events
        assert len(events.rx_queues) == 2
        for q in events.rx_queues:
            assert events.rx_mode(q) is RxMode.INTERRUPT and not q.polling
        point = bench.window(20000.0, 1.0)
        assert point.delivered_pps > 0 and events.wakeups > 0
    finally:
        bench.close()


def test_open_path_notes_name_a_sink_limited_row_and_the_busy_ratio() -> None:
    def row(config: str, packets: int, refused: int, busy_mpps: float) -> bench_switch.Result:
        return bench_switch.Result(config, 64, mpps=1.0, packets=packets, sink_refused=refused,
                      busy=0.5, busy_mpps=busy_mpps)  # fmt: skip

    notes = switch_cli.open_path_notes(
        [row("bridged", 1000, 200, 4.0), row("routed", 900, 0, 3.0)]
    )
    assert notes == [
        "bridged at 64 B is sink-limited: the sink refused 20% of what the switch forwarded "
        "(counted in Mpps), the switch busy 50%; routed/bridged overstates routing",
        "per second the switch was busy at 64 B: bridged 4.000 Mpps, routed 3.000 Mpps, "
        "routed/bridged 0.750",
    ]
    assert switch_cli.open_path_notes([row("bridged", 1000, 10, 4.0)]) == []
