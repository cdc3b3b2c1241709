"""The vectorized data path: receive and transmit queues over one ring each.

Receive is staged the way VPP's memif input node is: copy the descriptors out of
shared memory (so a peer rewriting them cannot change what was validated), check
the whole vector at once, take the fast path when every descriptor is clean and
unchained, otherwise drop bad packets (counted by name) and assemble chains.
Slot-contiguous runs of equally spaced buffers become one strided numpy view.

Transmit hands out buffers in shared memory to fill in place, then publishes the
ring counter once and kicks the eventfd once per burst.

Nothing in here raises because of what the peer wrote.  A ring whose counters are
impossible (head or tail jumping by more than the ring size) sets ``fault`` and
moves nothing; the interface turns that into a DISCONNECT.  Nor does what the peer
writes set the cost: chains are assembled and sent as vector operations however
short their buffers, and a chain the peer leaves unfinished is read once, then
neither read again nor reported :meth:`~RxQueue.ready` until the producer moves on.

A batch never answers None: :class:`RxBatch` gives every packet as ``runs``,
``matrix`` and ``headers(width)`` (zero-copy views of the shared buffers when they are
evenly spaced, ``is_view``; else gathered copies) and ``first`` as an index array;
:class:`TxBatch` gives ``buffers`` and ``runs`` to fill (the buffers themselves, or a
staging array publishing writes out).  ``with rxq.receive(n) as rx:`` refills when the
block ends; ``with txq.reserve(n) as tx:`` publishes then what ``tx.lengths`` (or
``tx.commit``) says, and nothing if the block raised.

A queue lives as long as its connection: when the interface tears it down, every call
on the queue, and every read or fill of a batch it handed out, raises
:class:`~memif.NotConnectedError` naming the queue and why (``connected`` tells it
without raising).  The interface's next connection has new queues.
"""

from ._common import (
    RX_ERRORS,
    TX_ERRORS,
    QueueStats,
    ring_slots,
    row_index,
    row_items,
    strided_view,
)
from .rx import RxBatch, RxQueue
from .tx import TxBatch, TxQueue

__all__ = [
    "RX_ERRORS",
    "TX_ERRORS",
    "QueueStats",
    "RxBatch",
    "RxQueue",
    "TxBatch",
    "TxQueue",
    "ring_slots",
    "row_index",
    "row_items",
    "strided_view",
]
