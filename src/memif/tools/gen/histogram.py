"""``memif gen --histogram`` and ``--plot FILE``: the latency distribution of a run.

The samples (:class:`~memif.tools.gen.stats.Latency`, exact or log-binned) are counted in
logarithmically spaced bins between the smallest and the largest, so a run's fast bulk and
its slow tail both show; every sample is in exactly one bin (the counts add up to the
samples).  The text form is one line per bin with a bar; the chart is the same bins drawn
by matplotlib (the optional ``plot`` extra, through :mod:`memif.tools.bench.charts`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..bench.charts import pyplot, save
from .stats import Latency

BINS = 20
BAR = 40  # characters of the longest bar


def latency_histogram(lat: Latency, bins: int = BINS) -> dict[str, Any]:
    """``{"edges_us": [...], "counts": [...]}``: ``bins`` log-spaced bins from the smallest
    to the largest sample (``edges_us`` has one more entry); empty without samples."""
    values, weights = lat.weighted()
    if not len(values):
        return {"edges_us": [], "counts": []}
    lo, hi = max(float(lat.min), 1.0), max(float(lat.max), 1.0)
    edges = np.geomspace(lo, hi * 1.000001 + 1, bins + 1)  # the largest in the last bin
    counts, _ = np.histogram(np.clip(values, lo, hi), bins=edges, weights=weights)
    return {
        "edges_us": [round(float(e) / 1000, 3) for e in edges],
        "counts": [int(c) for c in counts],
    }


def format_histogram(hist: dict[str, Any], kind: str) -> str:
    """The text histogram: ``  12.3 -   15.1 us  ####  1234`` per bin."""
    counts, edges = hist["counts"], hist["edges_us"]
    if not counts:
        return "  latency histogram: no samples"
    top = max(counts) or 1
    lines = [f"  {kind} latency histogram ({sum(counts)} samples):"]
    for lo, hi, n in zip(edges, edges[1:], counts, strict=False):
        bar = "#" * (round(BAR * n / top) if n else 0)
        lines.append(f"  {lo:10.3f} - {hi:10.3f} us  {bar:<{BAR}}  {n}")
    return "\n".join(lines)


def plot_histogram(hist: dict[str, Any], kind: str, path: str) -> None:
    """Draw the histogram's bins (log x axis) into ``path`` (``.png``, ``.svg``, ``.pdf``)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    edges, counts = hist["edges_us"], hist["counts"]
    if counts:
        ax.stairs(counts, edges, fill=True)
        ax.set_xscale("log")
    ax.set_xlabel(f"{kind} latency (us)")
    ax.set_ylabel("packets")
    ax.set_title(f"memif gen: {kind} latency, {sum(counts)} samples")
    save(fig, path)
