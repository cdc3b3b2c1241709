"""Burst helpers the traffic tools share: MAC swapping and sending whole buffer chains."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..queue import TxQueue


def swap_macs(frames: np.ndarray, rows: Any = slice(None)) -> None:
    """Swap destination and source MAC addresses in place (testpmd's ``macswap``).

    ``frames`` is one frame (1-D) or a burst, one frame per row (2-D); of a burst only
    ``rows`` (a slice, an index array or a bool mask) are swapped.
    """
    if frames.ndim == 1:
        frames[0:6], frames[6:12] = frames[6:12].copy(), frames[0:6].copy()
        return
    dst = frames[rows, 0:6].copy()
    frames[rows, 0:6] = frames[rows, 6:12]
    frames[rows, 6:12] = dst


def send_fitting(q: TxQueue, pkts: list[np.ndarray]) -> int:
    """``TxQueue.send`` the leading packets whose buffer chains fit in the free slots.

    Returns how many went out; a packet is never cut short of its chain.
    """
    if not pkts:
        return 0
    cap = q.alloc(1).capacity
    if not cap:
        return 0
    nseg = np.cumsum([-(-len(p) // cap) for p in pkts])
    fit = int(np.searchsorted(nseg, q.free_slots(), side="right"))
    return q.send(pkts[:fit]) if fit else 0
