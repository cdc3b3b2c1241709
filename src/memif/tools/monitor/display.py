"""``memif monitor``'s display: the block of lines redrawn in place, and its number format."""

from __future__ import annotations

import shutil
import time
from typing import Any, TextIO

from ... import packet as pk
from ...pcap import PcapWriter
from .stats import Stats, ethertype_key


def si(value: float, unit: str = "") -> str:
    """``value`` with a k, M or G prefix and one decimal: ``1.5 Mpps``."""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.1f} {prefix}{unit}"
    return f"{value:.0f} {unit}".rstrip()


def render(
    stats: Stats,
    *,
    title: str,
    status: str,
    received: tuple[int, int],
    rates: tuple[float, float],
    drops: int,
    top: int,
    ethernet: bool,
    filter_text: str = "",
    writer: PcapWriter | None = None,
) -> list[str]:
    """The lines of the live block."""
    pps, bps = rates
    lines = [
        f"{title}  {status}",
        f"received {received[0]} packets {si(received[1], 'B')}   "
        f"matched {stats.packets} packets {si(stats.bytes, 'B')}   "
        f"{si(pps, 'pps')} {si(bps * 8, 'bit/s')}   drops {drops}",
    ]
    if filter_text:
        lines.append(f"filter: {filter_text}")
    if writer is not None:
        lines.append(f"writing {writer.name}: {writer.packets} packets")
    # The table: (name, packets, bytes) rows; None for a blank line.
    table: list[tuple[str, Any, Any] | None] = [("protocol", "packets", "bytes")]
    p = stats.protocols()
    table.append(("ARP", p["arp"]["packets"], p["arp"]["bytes"]))
    for ver, subs in (
        ("ipv4", (("icmp", "ICMP"), ("tcp", "TCP"), ("udp", "UDP"), ("other", "other"))),
        ("ipv6", (("icmpv6", "ICMPv6"), ("tcp", "TCP"), ("udp", "UDP"), ("other", "other"))),
    ):
        table.append((ver.replace("ip", "IP"), p[ver]["packets"], p[ver]["bytes"]))
        table.extend(
            (f"  {name}", p[ver][key]["packets"], p[ver][key]["bytes"]) for key, name in subs
        )
    table.append(("other", p["other"]["packets"], p["other"]["bytes"]))
    for k, pkts, b in stats.ethertypes.top(top):
        name = ethertype_key(k) if k < 0 else pk.ethertype_name(k)
        table.append((f"  {name}", pkts, b))
    talkers = stats.top_talkers(top, ethernet)
    sections = []
    if ethernet:
        sections.append(
            ("top MAC pairs", [(f"{t['a']} <-> {t['b']}", t) for t in talkers["mac_pairs"]])
        )
    sections.append(("top IP pairs", [(f"{t['a']} <-> {t['b']}", t) for t in talkers["ip_pairs"]]))
    sections.append(("top ports", [(f"{t['proto']}/{t['port']}", t) for t in talkers["ports"]]))
    for heading, entries in sections:
        if entries:
            table.append(None)
            table.append((heading, "packets", "bytes"))
            table.extend((f"  {name}", t["packets"], t["bytes"]) for name, t in entries)
    width = max(len(r[0]) for r in table if r) + 2
    lines.append("")
    for r in table:
        lines.append("" if r is None else f"{r[0]:<{width}}{r[1]:>12}{r[2]:>16}")
    return lines


class Block:
    """A block of lines redrawn in place on a terminal (ANSI cursor-up), appended otherwise."""

    def __init__(self, stream: TextIO, period: float) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.period = period
        self._height = 0
        self._last = 0.0 if self.tty else time.monotonic()  # a terminal shows the block at once

    def due(self, now: float) -> bool:
        """True when the next refresh is due."""
        return now - self._last >= self.period

    def show(self, lines: list[str], now: float | None = None) -> None:
        """Draw ``lines`` (over the previous block on a terminal)."""
        self._last = time.monotonic() if now is None else now
        out = self.stream
        if self.tty:
            cols, rows = shutil.get_terminal_size()
            lines = lines[: max(rows - 1, 1)]  # cursor-up cannot reach above the screen
            if self._height:
                out.write(f"\x1b[{self._height}A\r")
            out.write("".join(line[: cols - 1] + "\x1b[K\n" for line in lines) + "\x1b[J")
            self._height = len(lines)
        else:
            out.write("\n".join(lines) + "\n\n")
        out.flush()
