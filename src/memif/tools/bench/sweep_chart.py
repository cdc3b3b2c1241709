"""The rate sweep's chart (``memif bench-switch --rates ... --plot FILE``).

Three panels against the offered rate, one line per configuration and receive mode through
its percentage points (the peak, the source as fast as the ring takes, is a star of the same
colour): the delivered rate (with the ideal, delivered = offered, dashed), the switch's CPU
utilisation, and the one-way latency p50 (solid) and p99 (dotted) on a log scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .charts import pyplot, save
from .sweep import SweepPoint


def plot_sweep(points: Sequence[SweepPoint], path: str, title: str = "") -> Path:
    """Draw the sweep's points (the peak points included) into ``path``; returns it."""
    plt = pyplot()
    fig, (ax_rate, ax_cpu, ax_lat) = plt.subplots(1, 3, figsize=(15, 4.5))
    series: dict[tuple[str, str], list[SweepPoint]] = {}
    for p in points:
        if p.error is None and p.offered_pps is not None:
            series.setdefault((p.config, p.mode), []).append(p)
    top = 0.0
    for (config, mode), pts in series.items():
        pts = sorted(pts, key=lambda p: p.offered_pps or 0.0)
        x = [(p.offered_pps or 0.0) / 1e6 for p in pts]
        top = max(top, *x)
        label = f"{config} {mode}"
        swept = [(xi, p) for xi, p in zip(x, pts, strict=True) if p.percent is not None]
        sx = [xi for xi, _ in swept]
        line = ax_rate.plot(sx, [(p.delivered_pps or 0.0) / 1e6 for _, p in swept], "o-",
                            label=label)  # fmt: skip
        color = line[0].get_color()
        ax_cpu.plot(sx, [100 * (p.cpu or 0.0) for _, p in swept], "o-", color=color, label=label)
        for xi, p in zip(x, pts, strict=True):
            if p.percent is None:  # the peak
                ax_rate.plot([xi], [(p.delivered_pps or 0.0) / 1e6], "*", color=color, ms=12)
                ax_cpu.plot([xi], [100 * (p.cpu or 0.0)], "*", color=color, ms=12)
        lat = [(xi, p) for xi, p in swept if p.latency_p50_us is not None]
        if lat:
            ax_lat.plot([xi for xi, _ in lat], [p.latency_p50_us for _, p in lat], "o-",
                        color=color, label=f"{label} p50")  # fmt: skip
            ax_lat.plot([xi for xi, _ in lat], [p.latency_p99_us for _, p in lat], "x:",
                        color=color, label=f"{label} p99")  # fmt: skip
    ax_rate.plot([0, top], [0, top], "k--", linewidth=0.8, label="delivered = offered")
    ax_rate.set(xlabel="offered (Mpps)", ylabel="delivered (Mpps)", title="throughput")
    ax_cpu.set(xlabel="offered (Mpps)", ylabel="switch CPU (%)", title="CPU", ylim=(0, 105))
    ax_lat.set(xlabel="offered (Mpps)", ylabel="one-way latency (us)", title="latency")
    ax_lat.set_yscale("log")
    short = plt.FuncFormatter(lambda v, _: f"{v:g}")  # 200, not 2 x 10^2
    ax_lat.yaxis.set_major_formatter(short)
    ax_lat.yaxis.set_minor_formatter(short)
    for ax in (ax_rate, ax_cpu, ax_lat):
        ax.grid(True, alpha=0.3)
        ax.set_xlim(left=0)
    ax_rate.legend(fontsize="small")
    ax_cpu.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return save(fig, path)
