"""Burst helpers the traffic tools share: MAC swapping, echoing a burst back, and sending
whole buffer chains (``heads`` is ``RxBatch.headers`` under its old name, until its last
callers, the monitor's classifier and the ping responder, call that)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..queue import RxBatch, TxQueue


def heads(batch: RxBatch, width: int, out: np.ndarray | None = None) -> np.ndarray:
    """``batch.headers(width, out)``."""
    return batch.headers(width, out)


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


def echo_burst(batch: RxBatch, q: TxQueue, *, swap: bool) -> int:
    """Send the packets of an unchained ``batch`` back out of ``q``, one copy per run of
    transmit buffers, with their MAC addresses swapped if ``swap`` (frames shorter than 12
    bytes are left as they are).

    Returns how many leading packets went out: fewer than all when the ring is full or a
    packet is larger than ``q``'s buffers (the rest are the caller's); 0 for a chained batch.
    """
    n = len(batch)
    if not n or batch.chained:
        return 0
    if n == 1:
        return _echo_one(batch, q, swap)
    rows = batch.matrix  # a view, or one vectorized gather when buffers lie anywhere
    done = 0
    while done < n:
        tb = q.alloc(n - done)
        k = tb.count
        if not k:
            break
        lengths = batch.lengths[done : done + k]
        width = int(lengths.max())
        if width > tb.capacity:
            break
        out = tb.buffers
        out[:, :width] = rows[done : done + k, :width]
        if swap:
            swap_macs(out, slice(None) if int(lengths.min()) >= 12 else lengths >= 12)
        q.tx_burst(tb, lengths)
        done += k
    return done


def _echo_one(batch: RxBatch, q: TxQueue, swap: bool) -> int:
    """:func:`echo_burst` of a 1-packet batch: one row, the MACs swapped from the source
    (no temporary copy), plain ints for the checks."""
    length = int(batch.lengths[0])
    tb = q.alloc(1)
    if not tb.count or length > tb.capacity:
        return 0
    src, out = batch.matrix[0], tb.buffers[0]
    out[:length] = src[:length]
    if swap and length >= 12:
        out[0:6] = src[6:12]
        out[6:12] = src[0:6]
    q.tx_burst(tb, length)
    return 1


def send_fitting(q: TxQueue, pkts: list[np.ndarray]) -> int:
    """``TxQueue.send`` the leading packets whose buffer chains fit in the free slots.

    Returns how many went out; a packet is never cut short of its chain.
    """
    if not pkts:
        return 0
    cap = q.capacity
    if not cap:
        return 0
    nseg = np.cumsum([-(-len(p) // cap) for p in pkts])
    fit = int(np.searchsorted(nseg, q.free_slots(), side="right"))
    return q.send(pkts[:fit]) if fit else 0
