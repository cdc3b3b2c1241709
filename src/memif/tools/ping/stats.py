"""``memif ping``'s result: what a run found and how ping(8) prints it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...pingsession import rtt_summary


def format_ms(ms: float) -> str:
    """Round-trip time the way ping(8) prints it: 3, 2, 1 or 0 decimals by magnitude."""
    if ms >= 99.95:
        return f"{ms:.0f}"
    if ms >= 9.995:
        return f"{ms:.1f}"
    if ms >= 1.0:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


@dataclass
class PingResult:
    """What a ping run found; :meth:`summary` is the ``--json`` object."""

    target: str
    source: str
    target_mac: str | None = None
    transmitted: int = 0
    received: int = 0
    duplicates: int = 0
    corrupted: int = 0
    rtts: list[float] = field(default_factory=list)  # ms, in arrival order
    time_ms: float = 0.0
    error: str | None = None

    @property
    def loss_pct(self) -> float:
        """Lost requests in percent (100 when nothing was sent)."""
        if not self.transmitted:
            return 100.0
        return (self.transmitted - self.received) * 100.0 / self.transmitted

    def rtt_stats(self) -> tuple[float, float, float, float] | None:
        """``(min, avg, max, mdev)`` in ms, mdev as ping(8) computes it; None without replies."""
        return rtt_summary(self.rtts)

    def summary(self) -> dict[str, Any]:
        """The ``--json`` object."""
        stats = self.rtt_stats()
        r3 = (lambda v: round(v, 3)) if stats else (lambda v: None)
        mn, avg, mx, mdev = stats or (0.0, 0.0, 0.0, 0.0)
        out: dict[str, Any] = {
            "target": self.target,
            "source": self.source,
            "target_mac": self.target_mac,
            "transmitted": self.transmitted,
            "received": self.received,
            "duplicates": self.duplicates,
            "loss_pct": round(self.loss_pct, 3),
            "time_ms": round(self.time_ms, 3),
            "rtt_min_ms": r3(mn),
            "rtt_avg_ms": r3(avg),
            "rtt_max_ms": r3(mx),
            "rtt_mdev_ms": r3(mdev),
            "rtts": [round(t, 3) for t in self.rtts],
        }
        if self.corrupted:
            out["corrupted"] = self.corrupted
        if self.error:
            out["error"] = self.error
        return out

    def lines(self) -> list[str]:
        """ping(8)'s closing statistics."""
        head = f"{self.transmitted} packets transmitted, {self.received} received"
        if self.duplicates:
            head += f", +{self.duplicates} duplicates"
        if self.corrupted:
            head += f", +{self.corrupted} corrupted"
        out = [
            f"--- {self.target} ping statistics ---",
            f"{head}, {self.loss_pct:g}% packet loss, time {self.time_ms:.0f}ms",
        ]
        stats = self.rtt_stats()
        if stats:
            out.append("rtt min/avg/max/mdev = " + "/".join(f"{v:.3f}" for v in stats) + " ms")
        return out
