"""``memif demo``'s screen: the live counters, the summary and its verdict.

The live block is redrawn in place on a terminal (every 0.25 s); otherwise one line a second
is appended.  Every figure comes from memifd's ``show interface`` (the switch's own
counters) and the monitor's running count.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from ..monitor.display import Block, si
from .topo import IF_A, IF_B, IF_C

ROLES = {IF_A: "A", IF_C: "C", IF_B: "B"}
KEYS = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "drops", "tx_errors")


def drops(ifs: dict[str, dict[str, Any]]) -> int:
    """Frames the switch dropped (each counts in ``drops`` of the port it came in by).

    A frame dropped because its transmit ring was full counts in ``tx_errors`` of the port
    it was to leave by as well.  A SPAN copy that did not fit B's ring counts in B's
    ``tx_errors`` only (memifd's accounting since daeec7c, "Lost SPAN copies are not drops
    of the source ports"): see :func:`summarize`, which reports both.
    """
    return sum(int(d.get("drops", 0)) for d in ifs.values())


def tx_errors(ifs: dict[str, dict[str, Any]]) -> int:
    """Frames (and SPAN copies) that found their transmit ring full."""
    return sum(int(d.get("tx_errors", 0)) for d in ifs.values())


class LiveView:
    """The live counters of the switch's three ports and the monitor."""

    def __init__(self, stream: TextIO, title: str, program: str, duration: float) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = 0.25 if self.tty else 1.0
        self.title = title
        self.duration = duration
        self.labels = {IF_A: f"A {program}", IF_C: f"C {program}", IF_B: "B monitor"}
        self.block = Block(stream, self.interval) if self.tty else None
        self.prev: tuple[float, dict[str, dict[str, Any]], int] = (0.0, {}, 0)
        self.phase = ""

    def update(
        self,
        elapsed: float,
        ifs: dict[str, dict[str, Any]],
        monitor: int,
        average_over: float | None = None,
    ) -> None:
        """Show the counters ``elapsed`` s into the run (rates since the previous update).

        The final update gives ``average_over``, the seconds of traffic: its rates are the
        averages.  It is skipped on a line-a-second stream if nothing changed.
        """
        t0, before, mon0 = self.prev
        final = average_over is not None
        if final and self.block is None and before == ifs and mon0 == monitor:
            return
        if final:
            t0, before, self.phase = elapsed - (average_over or 0.0), {}, "done, average rates"
        rates: dict[str, tuple[float, float]] = {}
        dt = elapsed - t0
        if dt > 0:
            for name, d in ifs.items():
                b = before.get(name, {})
                rates[name] = (
                    (d["rx_packets"] - b.get("rx_packets", 0)) / dt,
                    (d["tx_packets"] - b.get("tx_packets", 0)) / dt,
                )
        self.prev = (elapsed, ifs, monitor)
        if self.block is not None:
            self.block.show(self._lines(elapsed, ifs, monitor, rates))
        else:
            self.stream.write(self._line(elapsed, ifs, monitor, rates) + "\n")
            self.stream.flush()

    def _lines(
        self,
        elapsed: float,
        ifs: dict[str, dict[str, Any]],
        monitor: int,
        rates: dict[str, tuple[float, float]],
    ) -> list[str]:
        # 79 columns: port, peer, rx and tx packets, their rates, drops, tx errors.
        phase = self.phase or ("sending" if elapsed < self.duration else "finishing")
        lines = [
            f"{self.title}  {elapsed:4.1f} s ({phase}; {self.duration:g} s of traffic)",
            f"  {'port':<8}  {'peer':<12}{'rx packets':>11} {'tx packets':>11} {'rx/s':>8} "
            f"{'tx/s':>8} {'drops':>6} {'tx-err':>6}",
        ]
        for name in (IF_A, IF_C, IF_B):
            d = ifs.get(name)
            if d is None:
                continue
            rx, tx = rates.get(name, (0.0, 0.0))
            peer = self.labels[name] if d["link_up"] else f"{ROLES[name]} (gone)"
            lines.append(
                f"  {name:<8}  {peer:<12}{d['rx_packets']:>11,} {d['tx_packets']:>11,} "
                f"{si(rx):>8} {si(tx):>8} {d['drops']:>6,} {d['tx_errors']:>6,}"
            )
        lines.append(f"  monitor saw {monitor:,} packets")
        return lines

    def _line(
        self,
        elapsed: float,
        ifs: dict[str, dict[str, Any]],
        monitor: int,
        rates: dict[str, tuple[float, float]],
    ) -> str:
        parts = [f"{elapsed:5.1f} s" + (f" ({self.phase})" if self.phase else "")]
        for name in (IF_A, IF_C, IF_B):
            d = ifs.get(name)
            if d is not None:
                rx = f" rx {d['rx_packets']:,}" if name != IF_B else ""
                parts.append(f"{name}{rx} tx {d['tx_packets']:,}")
        a_c = rates.get(IF_A, (0.0, 0.0))[0]
        c_a = rates.get(IF_C, (0.0, 0.0))[0]
        parts.append(f"A->C {si(a_c, 'pps')}  C->A {si(c_a, 'pps')}")
        parts.append(f"drops {drops(ifs):,}  tx-errors {tx_errors(ifs):,}")
        parts.append(f"monitor {monitor:,}")
        return "  ".join(parts)


# ---------------------------------------------------------------------- the summary
def summarize(
    ifs: dict[str, dict[str, Any]],
    monitor: dict[str, Any],
    peers: dict[str, dict[str, Any]],
    duration: float,
) -> dict[str, Any]:
    """The counters of a run and its verdict (``ok``, ``problems``)."""
    a, c, b = (ifs.get(n, {}) for n in (IF_A, IF_C, IF_B))
    a_to_c, c_to_a = a.get("rx_packets", 0), c.get("rx_packets", 0)
    to_c, to_a = c.get("tx_packets", 0), a.get("tx_packets", 0)
    received = monitor.get("received", {}).get("packets")
    expected = a_to_c + c_to_a
    lost = (a_to_c - to_c) + (c_to_a - to_a)
    dropped, ring_full = drops(ifs), tx_errors(ifs)
    span_lost = int(b.get("tx_errors", 0))
    problems = []
    if not a_to_c or not c_to_a:
        problems.append("no traffic" if not a_to_c else "nothing came back from C")
    if lost:
        problems.append(f"{lost:,} frames lost on the bridge")
    if dropped:
        problems.append(f"the switch dropped {dropped:,} frames")
    if ring_full - span_lost:
        problems.append(f"{ring_full - span_lost:,} frames found A's or C's ring full")
    if span_lost:
        problems.append(f"{span_lost:,} mirrored copies found B's ring full")
    if received is None:
        problems.append("no report from the monitor")
    elif received != expected or monitor.get("rx_drops"):
        problems.append(f"the monitor saw {received:,} of {expected:,} frames")
    if a_to_c != c_to_a:
        problems.append(f"C reflected {c_to_a:,} of {a_to_c:,} frames")
    for role, name, d in (("A", IF_A, a), ("C", IF_C, c)):
        rep = peers.get(role, {})
        if "tx_packets" in rep and (rep["tx_packets"], rep["rx_packets"]) != (
            d.get("rx_packets"),
            d.get("tx_packets"),
        ):
            problems.append(
                f"{role} counted tx {rep['tx_packets']:,} rx {rep['rx_packets']:,}, {name} "
                f"rx {d.get('rx_packets', 0):,} tx {d.get('tx_packets', 0):,}"
            )
    seconds = max(duration, 1e-9)
    return {
        "a_to_c": a_to_c,
        "c_to_a": c_to_a,
        "a_to_c_delivered": to_c,
        "c_to_a_delivered": to_a,
        "monitor": received,
        "monitor_expected": expected,
        "mirrored": b.get("tx_packets", 0),
        "monitor_drops": monitor.get("rx_drops"),
        "drops": dropped,
        "tx_errors": ring_full,
        "span_lost": span_lost,
        "lost": lost,
        "loss": round(lost / expected, 6) if expected else 0.0,
        "duration": round(duration, 3),
        "a_to_c_pps": round(a_to_c / seconds, 1),
        "c_to_a_pps": round(c_to_a / seconds, 1),
        "interfaces": {
            n: {"peer": ROLES[n], "link_up": d.get("link_up")} | {k: d.get(k) for k in KEYS}
            for n, d in ifs.items()
            if n in ROLES
        },
        "peer_reports": peers,
        "problems": problems,
        "ok": not problems,
    }


def print_summary(s: dict[str, Any], out: TextIO = sys.stdout) -> None:
    """The human summary of :func:`summarize` (plus the run's facts); an error on stderr.

    After an error the counters are the last ones read, and only the error is the verdict.
    """

    def p(text: str = "") -> None:
        print(text, file=out)

    error = s.get("error")
    if s["interrupted"] and not error and not s["a_to_c"]:
        p("memif demo: interrupted before any traffic")
        return
    if error:
        print(f"memif demo: {error}", file=sys.stderr)
        if not s["a_to_c"]:
            return
    p()
    peers = {"python": "Python (memif gen)", "testpmd": "DPDK testpmd"}.get(s["peers"], "?")
    if error:
        p(f"memif demo: the switch's counters when they were last read ({peers} peers)")
    else:
        p(f"memif demo: {s['duration']:.2f} s of traffic, {peers} peers")
    for src, dst, rx_if, tx_if in (("A", "C", IF_A, IF_C), ("C", "A", IF_C, IF_A)):
        key = f"{src.lower()}_to_{dst.lower()}"
        rate = "" if error else f"  ({si(s[key + '_pps'], 'pps')})"
        p(
            f"  {src} -> {dst}   {s[key]:>10,} frames into {rx_if}, "
            f"{s[key + '_delivered']:,} out of {tx_if}{rate}"
        )
    mon = "no report" if s["monitor"] is None else f"{s['monitor']:,}"
    p(f"  monitor  {mon:>10} frames seen on B (A->C + C->A = {s['monitor_expected']:,})")
    p(
        f"  drops {s['drops']:,}, tx-errors {s['tx_errors']:,} (mirror {s['span_lost']:,}), "
        f"lost {s['lost']:,} (loss {100 * s['loss']:.3f} %)"
    )
    a = s["peer_reports"].get("A", {})
    if a.get("p50_us") is not None and not error:
        p(
            f"  round trip A -> C -> A (memif gen): p50 {a['p50_us'] / 1000:.2f} ms, "
            f"p99 {a['p99_us'] / 1000:.2f} ms"
        )
    if s["interrupted"]:
        p(f"interrupted after {s['duration']:.2f} s")
    if s["ok"]:
        p("OK: every frame crossed the bridge both ways, none lost, the monitor saw each one")
    else:
        p("FAILED: " + "; ".join(s["problems"]))
