"""One way to count what a process holds: its open fds and its memory mappings.

The leak tests compare a footprint taken before some work with one taken after. Garbage is
collected first, so an fd or a mapping that an earlier test left unreferenced (and a collection
would close) is not counted in one snapshot and missing from the next.
"""

from __future__ import annotations

import gc
import os
from typing import NamedTuple


class Footprint(NamedTuple):
    """What a process holds at one moment (a tuple: ``fds, mappings, memfd_mappings``)."""

    fds: int
    """Open file descriptors (``/proc/PID/fd``)."""
    mappings: int
    """Memory mappings (lines of ``/proc/PID/maps``)."""
    memfd_mappings: int
    """Mappings of memfds: memif regions, rings and buffers."""


def footprint(pid: int | str = "self", collect: bool = True) -> Footprint:
    """The :class:`Footprint` of ``pid`` (this process by default).

    ``collect`` runs the garbage collector first; it only matters for this process.
    """
    if collect and pid in ("self", os.getpid()):
        gc.collect()
    with open(f"/proc/{pid}/maps") as f:
        maps = f.readlines()
    memfds = sum(1 for line in maps if "memfd:" in line)
    return Footprint(len(os.listdir(f"/proc/{pid}/fd")), len(maps), memfds)
