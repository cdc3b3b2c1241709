"""The chart of ``memif bench-latency --plot FILE``: the RTT distributions of a run.

One panel per path, one curve per receive mode and offered rate: the complementary CDF (the
share of round trips longer than x), both axes logarithmic, so the median sits at 0.5 and
the tail (p99 at 0.01, p99.9 at 0.001) is as readable as the body. The colour is the mode,
the line style the rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .charts import pyplot, save
from .latency import MODES, Point, rate_text

_COLOURS = {"interrupt": "tab:blue", "polling": "tab:red", "adaptive": "tab:green"}
_STYLES = ("-", "--", ":", "-.")


def plot(points: Sequence[Point], path: str, title: str | None = None) -> Path:
    """Draw the measured ``points`` (failed ones are left out) into ``path``; the path."""
    plt = pyplot()
    ok = [p for p in points if p.error is None and p.distribution]
    paths = list(dict.fromkeys(p.path for p in points)) or ["(none)"]
    rates = sorted({p.rate for p in points})
    fig, axes = plt.subplots(
        1, len(paths), figsize=(5.2 * len(paths), 4.2), sharex=True, sharey=True, squeeze=False
    )
    for ax, name in zip(axes[0], paths, strict=True):
        mine = [p for p in ok if p.path == name]
        for p in sorted(mine, key=lambda p: (MODES.index(p.mode), p.rate)):
            pct = [q for q, _ in p.distribution if q < 100]
            us = [v for q, v in p.distribution if q < 100]
            ccdf = [1 - q / 100 for q in pct]
            ax.plot(
                us,
                ccdf,
                color=_COLOURS.get(p.mode, "black"),
                linestyle=_STYLES[rates.index(p.rate) % len(_STYLES)],
                label=f"{p.mode} {rate_text(p.rate)} pps",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(5e-5, 1.2)
        ax.set_title(name if mine else f"{name}: no result")
        ax.set_xlabel("round-trip time (us)")
        ax.grid(True, which="both", alpha=0.3)
        if mine:
            ax.legend(fontsize=7)
    axes[0][0].set_ylabel("share of round trips longer (1 - CDF)")
    fig.suptitle(title or "memif bench-latency: RTT distributions", y=1.02)
    return save(fig, path)
