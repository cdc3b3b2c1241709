"""scripts/soak.py, scaled down: a real memifd, real peers, restarts, and the JSON verdicts.

The soak runs as a subprocess, exactly as a person runs it: 12 s of traffic at 2000 pps
with a restart every 4 s (the receiver killed with SIGKILL at 4 s, the sender at 8 s), then
a short run whose receiver forgets, repeats and swaps packets on purpose, which must make
the loss, duplicate and reordering verdicts fail.  About 25 s in all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import ENV

pytestmark = pytest.mark.slow  # see the slow marker in pyproject.toml

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "soak.py"


def soak(*args: str, timeout: float = 90) -> tuple[int, dict[str, Any], str]:
    """Run the soak with ``--json``; (exit status, summary, stderr)."""
    r = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--json"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert r.stdout.strip(), f"no summary (exit {r.returncode}): {r.stderr[-3000:]}"
    return r.returncode, json.loads(r.stdout), r.stderr


def test_help() -> None:
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0
    assert "--restart-every" in r.stdout and "--duration" in r.stdout


def test_soak_with_restarts_keeps_every_verdict() -> None:
    code, s, err = soak("--duration", "12", "--restart-every", "4", "--rate", "2000")
    why = json.dumps(
        {k: s[k] for k in ("verdicts", "failures", "packets", "windows", "gaps_outside_windows")}
    )
    assert code == 0 and s["ok"], why + err[-2000:]
    assert all(s["verdicts"].values()), why

    p = s["packets"]
    assert p["sent"] == p["received"] + p["lost"]
    assert p["lost"] == p["lost_in_windows"] + p["lost_outside_windows"]
    assert p["lost_outside_windows"] == 0 and s["gaps_outside_windows"] == []
    assert p["duplicates"] == 0 and p["reordered"] == 0 and p["late"] == 0
    assert p["invalid"] == 0 and p["foreign"] == 0
    assert p["sent"] > 2000 * 12 * 0.7, p  # the rate was held (restarts cost < 30 %)

    # two restarts: the receiver (SIGKILL) at 4 s, then the sender (SIGKILL) at 8 s
    w = s["windows"]
    assert [(x["peer"], x["signal"]) for x in w] == [
        ("receiver", "SIGKILL"),
        ("sender", "SIGKILL"),
    ], w
    for x in w:
        assert x["start"] < x["exited"] <= x["end"] and 0 < x["seconds"] < 10, x
    assert sum(x["lost"] for x in w) == p["lost_in_windows"]
    assert [r["ended_by"] for r in s["sender_runs"]] == ["SIGKILL", "SIGTERM(end)"]
    assert [r["ended_by"] for r in s["receiver_runs"]] == ["SIGKILL", "SIGTERM(end)"]
    assert sum(r["sent"] for r in s["sender_runs"]) == p["sent"]

    # the switch's view: everything the sender published was taken; drops have reasons
    assert s["path"]["switch_rx_from_sender"] <= p["sent"]
    assert s["switch"]["dropped"] == sum(e["count"] for e in s["switch"]["errors"])
    assert s["switch"]["dropped_outside_windows"] == 0, s["switch"]
    for e in s["switch"]["errors"]:
        assert e["count"] > 0 and e["node"] and e["reason"]
    names = {d["name"] for d in s["switch"]["interfaces"]}
    assert names == {"memif1/0", "memif2/0", "memif3/0"}

    mem = s["memory"]
    assert mem["verdict"] == "flat" and mem["steady_after_warmup"] >= 2, mem
    assert mem["rss_kb"]["first"] > 0 and mem["rss_kb"]["max"] >= mem["rss_kb"]["last"] > 0
    assert mem["rss_kb"]["growth"] <= 5 * 1024 and mem["fds"]["growth"] <= 0
    assert s["memifd_exit"] == 0
    assert s["latency"]["samples"] >= p["received"]  # (a SIGKILL may cut a burst's count)
    assert len(s["load_average"]["end"]) == 3

    live = [line for line in err.splitlines() if line.startswith("soak ")]
    assert len(live) >= 10, err[-2000:]  # one progress line a second


def test_soak_reports_injected_loss_duplicates_and_reordering() -> None:
    code, s, _ = soak(
        "--duration",
        "5",
        "--restart-every",
        "0",
        "--rate",
        "2000",
        "--ports",
        "2",
        "--inject-faults",
    )
    assert code == 1 and not s["ok"]
    p, v = s["packets"], s["verdicts"]
    assert p["lost_outside_windows"] >= 1 and p["duplicates"] >= 1 and p["reordered"] >= 1, p
    assert not v["loss_outside_windows"] and not v["no_duplicates"] and not v["no_reordering"]
    assert v["restarts_completed"] and v["traffic"]
    gap = s["gaps_outside_windows"][0]
    assert gap["packets"] == 1 and 0 < gap["sent_at"] < 6, gap
    assert s["windows"] == [] and len(s["switch"]["interfaces"]) == 2
