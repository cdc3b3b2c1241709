"""What an attack costs memifd, and what memifd says about it (issue 15's isolation tests).

* from ``/proc``: :func:`rss_kib`, :func:`fd_count`, :func:`cpu_seconds`, :func:`cpu_while`,
  and :class:`Watch` (memifd's memory and fds bounded over an attack);
* from its CLI: :func:`alive`, :func:`errors` and :func:`error_count` (``show errors``),
  :func:`socket_counters` (``show memif socket``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from helpers import Memifd

TICK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- /proc
def rss_kib(pid: int, what: str = "VmRSS") -> int:
    """A process's resident memory, KiB: ``VmRSS`` (all) or ``RssAnon`` (its own,
    without the peers' shared memory it maps and reads)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(what + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {what} in /proc/{pid}/status")


def fd_count(pid: int) -> int:
    """Open fds of a process."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def cpu_while(pid: int, seconds: float, step: Callable[[], None]) -> float:
    """The share of one core ``pid`` used while ``step()`` (which paces itself) is
    called for ``seconds``."""
    c0, w0 = cpu_seconds(pid), time.monotonic()
    while time.monotonic() - w0 < seconds:
        step()
    return (cpu_seconds(pid) - c0) / (time.monotonic() - w0)


class Watch:
    """memifd's memory and fds when an attack starts."""

    def __init__(self, d: Memifd) -> None:
        self.d = d
        pid = d.proc.pid
        self.rss, self.anon, self.fds = rss_kib(pid), rss_kib(pid, "RssAnon"), fd_count(pid)

    def bounded(self, what: str) -> str:
        """Assert memifd's own memory grew by under 32 MiB and its fds by under 8
        (pages of a peer's shared memory that memifd read count in VmRSS, not here);
        describe both."""
        pid = self.d.proc.pid
        rss, anon, fds = rss_kib(pid), rss_kib(pid, "RssAnon"), fd_count(pid)
        assert anon - self.anon < 32 * 1024, f"{what}: RssAnon {self.anon} -> {anon} KiB"
        assert fds - self.fds < 8, f"{what}: fds {self.fds} -> {fds}"
        return (
            f"RssAnon {self.anon // 1024} -> {anon // 1024} MiB (VmRSS {self.rss // 1024} -> "
            f"{rss // 1024}), fds {self.fds} -> {fds}"
        )


# --------------------------------------------------------------------------- the CLI
def alive(d: Memifd) -> None:
    """memifd runs and answers its CLI."""
    assert d.proc.poll() is None, d.log()
    assert d.ok("show version")["data"]["uptime_seconds"] >= 0


def errors(d: Memifd) -> dict[tuple[str, str], int]:
    """``show errors`` as (node, error) -> count."""
    return {(e["node"], e["error"]): e["count"] for e in d.ok("show errors")["data"]}


def error_count(d: Memifd, node: str, error: str) -> int:
    """One counter of ``show errors`` (0 when it is not there)."""
    return errors(d).get((node, error), 0)


def socket_counters(d: Memifd, socket_id: int = 1) -> dict[str, int]:
    """``show memif socket``'s refusal counters of one socket."""
    for s in d.ok("show memif socket")["data"]:
        if s["id"] == socket_id:
            return s["counters"]
    raise AssertionError(f"no socket {socket_id}")
