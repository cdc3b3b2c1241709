"""Tests of ``memif bench-latency``: the real command in a subprocess, with its real peers
(``memif gen macswap`` children, memifd, DPDK testpmd), a short point per path and mode.

No timing target is asserted (a loaded machine may be slow): the structure of the JSON, the
counts (nothing lost at 1 kpps) and the order of the percentiles. The testpmd test skips
without testpmd, and fails under ``CI=true``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import ENV, memif_argv

from memif.cli import main
from memif.tools.bench.latency import MODES, PERCENTILES, Point, format_table, rate_text
from memif.tools.bench.latency_chart import plot

KEYS = {"path", "mode", "rate", "sent", "received", "lost", "min_us", "p50_us", "p99_us",
        "p999_us", "max_us", "mean_us", "distribution", "error"}  # fmt: skip
PNG = b"\x89PNG\r\n\x1a\n"


def run_latency(*args: str, rc: int = 0, timeout: float = 180.0) -> tuple[list[dict], str]:
    """``memif bench-latency --json --seconds 0.5 --rates 1000 ARGS``: the points, stderr."""
    proc = subprocess.run(
        memif_argv("bench-latency", "--json", "--seconds", "0.5", "--rates", "1000", *args),
        capture_output=True, text=True, timeout=timeout, env=ENV, check=False,
    )  # fmt: skip
    assert proc.returncode == rc, proc.stdout + proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()], proc.stderr


def check_point(p: dict, path: str, mode: str) -> None:
    """A measured point at 1 kpps: everything came back, the figures in order, all > 0."""
    assert p.keys() >= KEYS, p
    assert (p["path"], p["mode"], p["rate"], p["error"]) == (path, mode, 1000, None), p
    assert p["sent"] > 100 and p["received"] == p["sent"] and p["lost"] == 0, p
    figures = [p[k] for k in ("min_us", "p50_us", "p99_us", "p999_us", "max_us")]
    assert figures[0] > 0 and figures == sorted(figures), p
    assert p["min_us"] <= p["mean_us"] <= p["max_us"], p
    pct = [q for q, _ in p["distribution"]]
    us = [v for _, v in p["distribution"]]
    assert pct == list(PERCENTILES) and us == sorted(us), p
    assert (us[0], us[-1]) == (p["min_us"], p["max_us"]), p


@pytest.mark.slow
@pytest.mark.parametrize("path", ["direct", "memifd"])
def test_python_paths_every_mode(path: str) -> None:
    points, err = run_latency("--paths", path)
    assert [(p["path"], p["mode"]) for p in points] == [(path, m) for m in MODES]
    for p, mode in zip(points, MODES, strict=True):
        check_point(p, path, mode)
    assert f"[1/3] {path} interrupt 1k" in err  # progress per point on stderr


@pytest.mark.slow
@pytest.mark.testpmd
def test_testpmd_path_every_mode(testpmd_binary: str) -> None:
    points, _ = run_latency("--paths", "testpmd", "--testpmd", testpmd_binary)
    assert [p["mode"] for p in points] == list(MODES)
    for p, mode in zip(points, MODES, strict=True):
        check_point(p, "testpmd", mode)


@pytest.mark.slow
def test_missing_testpmd_fails_its_path_only(tmp_path: Path) -> None:
    missing = str(tmp_path / "dpdk-testpmd")
    points, err = run_latency(
        "--paths", "direct,testpmd", "--modes", "interrupt", "--testpmd", missing, rc=1
    )
    by_path = {p["path"]: p for p in points}
    check_point(by_path["direct"], "direct", "interrupt")
    assert by_path["testpmd"]["sent"] == 0
    assert "apt-get install" in by_path["testpmd"]["error"]
    (line,) = [x for x in err.splitlines() if "testpmd path" in x]
    assert missing in line and "apt-get install" in line


@pytest.mark.slow
def test_plot_png_and_svg(tmp_path: Path) -> None:
    png = tmp_path / "lat.png"
    points, err = run_latency("--paths", "direct", "--modes", "interrupt", "--plot", str(png))
    assert f"chart: {png}" in err
    data = png.read_bytes()
    assert data.startswith(PNG)
    import matplotlib.image

    image = matplotlib.image.imread(str(png))
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    # The JSON of a run is enough to draw it again, in another format.
    fields = set(Point.__dataclass_fields__)
    svg = plot([Point(**{k: v for k, v in p.items() if k in fields}) for p in points],
               str(tmp_path / "lat.svg"))  # fmt: skip
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text and "direct" in text


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--paths", "direct,vpp"], "choose from direct, memifd, testpmd"),
        (["--modes", "busy"], "choose from interrupt, polling, adaptive"),
        (["--rates", "1000,x"], "comma-separated integers"),
        (["--rates", "0"], "--rates: 0 must be 1.."),
        (["--seconds", "-1"], "positive number"),
        (["--seconds", "inf"], "finite positive number"),  # a point that never ends
        (["--seconds", "nan"], "finite positive number"),
        (["--size", "40"], "--size 40 must be 62..2048"),
        (["--burst", "0"], "--burst 0 must be 1..256"),
        (["--plot", "lat.gif"], "must end with .png, .svg, .pdf"),
        (["--plot", "/nonexistent/lat.png"], "directory /nonexistent does not exist"),
    ],
)
def test_bad_options_one_line(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        rc = main(["bench-latency", *args])
    except SystemExit as exc:  # refused by the parser
        rc = exc.code  # type: ignore[assignment]
    assert rc == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("memif bench-latency: ") or err.startswith("memif: bench-latency: ")
    assert says in err, err


def test_chart_and_table_of_given_points(tmp_path: Path) -> None:
    """The chart and the table from points alone (as a saved ``--json`` gives them): a failed
    point is a table row with its error and no curve; the x axis spans what was measured."""
    dist = [[0.0, 50.0], [50.0, 80.0], [99.0, 200.0], [100.0, 400.0]]
    figures = {"min_us": 50.0, "p50_us": 80.0, "p99_us": 200.0, "p999_us": 300.0, "max_us": 400.0}
    good = Point(
        "direct", "interrupt", 10000, 64, sent=10, received=10, distribution=dist, **figures
    )
    bad = Point("testpmd", "polling", 1000, 64, error="dpdk-testpmd not found")
    png = plot([good, bad], str(tmp_path / "c.png"), title="given")
    assert png.read_bytes().startswith(PNG)
    table = format_table([good, bad]).splitlines()
    assert table[2].split()[:6] == ["direct", "interrupt", "10k", "10", "10", "0"]
    assert table[3].endswith("failed: dpdk-testpmd not found")
    assert [rate_text(r) for r in (999, 1000, 100000, 2_000_000)] == ["999", "1k", "100k", "2M"]
