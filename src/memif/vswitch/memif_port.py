"""memif ports of the switch: a device class (:class:`~.port.Port`) with its nodes.

``memif-input`` and ``<interface>-output`` are the generic device-input and
interface-output nodes (:mod:`.port`) with memif's errors.

Copy mode moves each vector with one numpy row copy per direction: ring buffers
into pool buffers on input, pool buffers into ring buffers on output.

Zero-copy (slave interfaces, as in VPP) shares the switch's pool as a region: the
switch posts pool buffers on its receive rings and transmits descriptors pointing
at pool buffers, so the peer reads and writes the switch's memory directly.  Every
descriptor coming back is checked against what was posted in that slot.

What one peer costs the switch is bounded whatever it posts: memif-input takes at
most ``PORT_VECTORS`` vectors of descriptors (and at most the pool's quota per
port) from a port per turn; a zero-copy port holds at most the quota in posted and
lent buffers (the rest of its transmit is copied into its ring's own buffers);
chains are assembled and sent as vector operations, and frames are not chained
over receive buffers shorter than ``MIN_CHAIN_BUFFER``.  Every frame dropped
counts under a named error of memif-input or the port's output node and in the
interface's drops (received) or tx errors (sent); both outlive the connection.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..config import Role
from ..interface import Interface
from ..queue import RX_ERRORS, RxQueue, TxQueue, ring_slots
from .pool import INDEX
from .port import DeviceInput, InterfaceOutput
from .tables import SwInterface

if TYPE_CHECKING:
    from .runtime import Runtime

#: descriptors memif-input takes from one queue per turn: a whole ring of the usual
#: sizes.  VPP's frames hold 256; in Python each numpy call costs a microsecond or two
#: whatever its length, so longer vectors are what makes the switch fast (see README).
DEFAULT_VECTOR = 2048
#: descriptors memif-input takes from one port per turn, in vectors (and at most the
#: pool's quota per port): with many queues a port gets its turn in several (the next
#: turn starts where this one stopped), and the ports after it still find buffers
PORT_VECTORS = 2
#: the shortest receive buffer a peer may post for frames that must be chained over
#: several: shorter ones would cost a ring slot per few bytes (1-byte buffers: a slot
#: per byte), so frames that do not fit one are dropped (``rx-buffer-too-small``)
MIN_CHAIN_BUFFER = 128


def _node_error(name: str) -> str:
    """A queue's counter name as a node error: ``bad_offset`` -> ``bad-offset``."""
    return name.replace("_", "-")


class MemifPort:
    """The memif side of one switch interface."""

    kind: ClassVar[str] = "memif"
    fault_action: ClassVar[str] = "disconnecting its peer"

    def __init__(self, rt: Runtime, socket_id: int, iface: Interface, zero_copy: bool):
        self.rt = rt
        self.socket_id = socket_id
        self.iface = iface
        self.zero_copy = zero_copy and iface.role is Role.CLIENT
        #: receive buffers a zero-copy port keeps posted when connected (0 otherwise)
        self.commitment = iface.config.rx_queues * iface.config.ring_size if self.zero_copy else 0
        self.sw: SwInterface = None  # type: ignore[assignment]  # set by the switch
        self.output_node = 0
        self.region = -1  # pool's region index while connected (zero-copy)
        self._posted: list[np.ndarray] = []  # per rx queue: pool buffer of each slot (-1: none)
        self._posted_at: list[np.ndarray] = []  # per rx queue: its region offset
        self._in_flight: list[deque[np.ndarray]] = []  # per tx queue: published buffers
        self._n_posted = 0  # pool buffers posted on the rx rings (zero-copy)
        self._n_in_flight = 0  # pool buffers published on the tx rings (zero-copy)
        self._seen: list[dict[str, int]] = []  # per rx queue: its drop counters reported
        self._rr = 0
        self._rx_rr = 0  # the rx queue memif-input starts with next turn

    @property
    def held(self) -> int:
        """Pool buffers this port holds: posted for receive plus published on transmit
        (zero-copy), at most the pool's quota per port."""
        return self._n_posted + self._n_in_flight

    def lent_buffers(self) -> np.ndarray:
        """Pool buffers this zero-copy port has lent its peer, found from the rings' records
        (not from :attr:`held`'s counters): those posted on each receive ring in slot order,
        then those published on each transmit ring, oldest first."""
        parts = [shadow[shadow >= 0] for shadow in self._posted]
        parts += [idx for fifo in self._in_flight for idx in fifo]
        return np.concatenate(parts).astype(INDEX) if parts else np.zeros(0, INDEX)

    @property
    def link_up(self) -> bool:
        """The memif peer is connected."""
        return self.iface.connected

    @property
    def mtu(self) -> int | None:
        """None: no Linux side (the switch's buffers bound the frame size)."""
        return None

    # ------------------------------------------------------------------ port protocol
    def rx_queues(self) -> Sequence[RxQueue]:
        """The receive queues while connected (the main loop arms their interrupts)."""
        return self.iface.rx_queues if self.iface.connected else ()

    def fds(self) -> list[int]:
        """None besides the receive queues' eventfds."""
        return []

    def set_admin(self, up: bool) -> None:
        """Admin-up enables the interface (a client connects at once); down disconnects."""
        self.iface.set_admin(up)

    def fault(self, reason: str) -> None:
        """Handling the port raised: disconnect the peer (it reconnects afresh)."""
        if self.iface.connected:
            self.iface.disconnect(reason)

    def close(self) -> None:
        """Delete the interface (the peer sees a disconnect); lent buffers come back."""
        self.iface.delete()
        self.disconnected()

    def details(self) -> dict[str, object]:
        """What the switch adds to the memif's own details (``Interface.details``)."""
        return {"socket_id": self.socket_id, "zero_copy": self.zero_copy, "held": self.held}

    # ------------------------------------------------------------------ connection
    def connected(self) -> None:
        """Called on connect: set up zero-copy buffers."""
        self._seen = [{} for _ in self.iface.rx_queues]
        self._rx_rr = 0
        if not self.zero_copy:
            return
        self.region = self.iface.pool_region(self.rt.pool.shared)
        self._posted = [np.full(q.size, -1, INDEX) for q in self.iface.rx_queues]
        self._posted_at = [np.zeros(q.size, np.uint32) for q in self.iface.rx_queues]
        self._in_flight = [deque() for _ in self.iface.tx_queues]
        for qid, q in enumerate(self.iface.rx_queues):
            self._post(qid, q)

    def disconnected(self) -> None:
        """Called on disconnect: every pool buffer lent to the rings comes back."""
        pool = self.rt.pool
        for shadow in self._posted:
            pool.free(shadow[shadow >= 0])
        for fifo in self._in_flight:
            for idx in fifo:
                if len(idx) and idx[0] >= 0:  # not slots sent by copy
                    pool.free(idx)
        self._posted, self._posted_at, self._in_flight = [], [], []
        self._n_posted = self._n_in_flight = 0

    def _post(self, qid: int, q: RxQueue) -> None:
        pool = self.rt.pool
        want = min(q.free_to_post(), pool.quota_per_port - self.held)
        if want <= 0:
            return
        idx = pool.alloc(want)
        offsets = pool.offsets(idx)
        head = q.ring.head
        n = q.refill_from(self.region, offsets, pool.data_size)
        slots = ring_slots(head, n, q.size)
        self._posted[qid][slots] = idx[:n]
        self._posted_at[qid][slots] = offsets[:n]
        self._n_posted += n
        pool.free(idx[n:])

    # ------------------------------------------------------------------ input
    def receive(self, node: DeviceInput) -> int:
        """Move up to a vector of packets from each rx queue into the graph (one burst
        per queue and turn, as VPP's memif-input), at most ``PORT_VECTORS`` vectors of
        descriptors per port and turn (the next turn starts where this one stopped);
        returns the count."""
        total, vector = 0, self.rt.vector_size
        queues = self.iface.rx_queues
        budget = min(PORT_VECTORS * vector, self.rt.pool.quota_per_port)
        first = self._rx_rr % len(queues) if queues else 0
        for k in range(len(queues)):
            qid = (first + k) % len(queues)
            if budget <= 0:
                self._rx_rr = qid  # the rest next turn
                break
            q = queues[qid]
            before, waits = q.cursor, q.chain_waits
            batch = q.rx_burst(min(vector, budget))
            if q.stats.errors:
                self._report(node, qid, q)
            if q.chain_waits != waits:
                node.error_counts["chain-incomplete"] += q.chain_waits - waits
            consumed = (q.cursor - before) & 0xFFFF
            if consumed == 0:
                continue
            budget -= consumed
            chained = batch.chained
            if self.zero_copy:
                idx, nbytes = self._take_zero_copy(node, qid, q, batch, before, consumed)
            else:
                idx, nbytes = self._take_copy(node, q, batch)
            slots = None if chained else (before % q.size, q.size)  # for the trace
            total += node.deliver(self.sw, idx, nbytes, qid, slots)
        return total

    def _report(self, node: DeviceInput, qid: int, q: RxQueue) -> None:
        """Add what a queue dropped since last time to memif-input's errors and the
        interface's drops (they outlive the queue, which goes at disconnect)."""
        while len(self._seen) <= qid:  # queues this port was not told about
            self._seen.append({})
        seen = self._seen[qid]
        for name, count in q.stats.errors.items():
            new = count - seen.get(name, 0)
            if new > 0:
                seen[name] = count
                self._rx_drop(node, _node_error(name), new)

    def _rx_drop(self, node: DeviceInput, error: str, n: int) -> None:
        """Count ``n`` received frames dropped before the graph: a memif-input error and
        the interface's drops (both outlive the connection)."""
        node.error_counts[error] += n
        self.sw.counters.drops += n

    def _take_copy(self, node: DeviceInput, q: RxQueue, batch) -> tuple[np.ndarray, int]:
        """Copy a burst into pool buffers; returns them and their bytes."""
        if batch.chained:
            return self._take_chained_copy(node, q, batch)
        pool = self.rt.pool
        n = len(batch)
        if n == 1 and not batch.chained and int(batch.lengths[0]) <= pool.data_size:
            return self._take_one(node, q, batch)
        idx = pool.alloc(n)
        k = len(idx)
        nbytes = 0
        if k < n:
            self._rx_drop(node, "no-buffers", n - k)
        if k:
            lengths = batch.lengths[:k]
            longest = int(lengths[0] if k == 1 else lengths.max())  # one: no reduction
            width = min(longest, pool.data_size)
            batch.copy_into(pool.rows(width), idx)
            if longest <= pool.data_size:  # the usual case: one reduction decides
                pool.length[idx] = lengths
                nbytes = batch.nbytes if k == n else int(lengths.sum())
            else:
                big = lengths > pool.data_size
                self._rx_drop(node, "too-big", int(np.count_nonzero(big)))
                pool.free(idx[big])
                idx = idx[~big]
                pool.length[idx] = lengths[~big]
                nbytes = int(lengths[~big].sum())
        q.refill()
        return idx, nbytes

    def _take_chained_copy(self, node: DeviceInput, q: RxQueue, batch) -> tuple[np.ndarray, int]:
        """Copy a burst holding chained frames into pool buffers, each into a whole
        buffer (a frame's last ring buffer moves whole: what it carries past the frame's
        end stays in the frame's own pool buffer); frames larger than a pool buffer are
        dropped (``too-big``).  Returns the buffers and their bytes."""
        pool = self.rt.pool
        idx = pool.alloc(len(batch))
        if len(idx) < len(batch):
            self._rx_drop(node, "no-buffers", len(batch) - len(idx))
        lengths = batch.lengths[: len(idx)]
        batch.copy_into(pool.rows(pool.data_size), idx)
        fits = lengths <= pool.data_size
        if not fits.all():
            self._rx_drop(node, "too-big", int(np.count_nonzero(~fits)))
            pool.free(idx[~fits])
            idx, lengths = idx[fits], lengths[fits]
        pool.length[idx] = lengths
        q.refill()
        return idx, int(lengths.sum())

    def _take_one(self, node: DeviceInput, q: RxQueue, batch) -> tuple[np.ndarray, int]:
        """:meth:`_take_copy` of one unchained frame that fits a pool buffer: one slice
        copy from its ring buffer's view (``batch[0]``), plain ints for its length."""
        pool = self.rt.pool
        idx = pool.alloc(1)
        length = 0
        if len(idx):
            i, length = int(idx[0]), int(batch.lengths[0])
            pool.data[i, :length] = batch[0]
            pool.length[i] = length
        else:
            self._rx_drop(node, "no-buffers", 1)
        q.refill()
        return idx, length

    def _take_zero_copy(
        self, node: DeviceInput, qid: int, q: RxQueue, batch, before: int, consumed: int
    ) -> tuple[np.ndarray, int]:
        """Take the pool buffers a burst came back in; returns them and their bytes."""
        pool = self.rt.pool
        slots = ring_slots(before, consumed, q.size)
        shadow = self._posted[qid]
        lent = shadow[slots]
        if isinstance(slots, slice):
            lent = lent.copy()
        shadow[slots] = -1
        # The usual case: every slot came back, unchained, with the buffer lent to it.
        if (
            len(batch) == consumed
            and not batch.chained
            and batch.region == self.region
            and np.array_equal(batch.seg_offset, self._posted_at[qid][slots])
            and int(batch.lengths.max()) <= pool.data_size
            and int(lent.min()) >= 0
        ):
            self._n_posted -= consumed  # every slot held a lent buffer
            idx = lent
            pool.length[idx] = batch.lengths
            nbytes = batch.nbytes
        else:
            self._n_posted -= int(np.count_nonzero(lent >= 0))
            idx = self._take_checked(node, batch, lent)
            nbytes = int(pool.length[idx].sum())
        self._post(qid, q)
        return idx, nbytes

    def _take_checked(self, node: DeviceInput, batch, lent: np.ndarray) -> np.ndarray:
        """Keep each packet whose descriptor names a buffer lent to this queue, once;
        the lent buffers not kept go back to the pool."""
        pool = self.rt.pool
        idx = np.empty(0, INDEX)
        if batch.chained:  # each frame must fit the one buffer posted for it
            self._rx_drop(node, "zero-copy-chained", len(batch))
        elif len(batch):
            idx = pool.index_of(batch.seg_offset)
            ok = (
                (batch.seg_region == self.region)
                & (batch.seg_offset == pool.offsets(idx))
                & (batch.lengths <= pool.data_size)
                & np.isin(idx, lent[lent >= 0])
            )
            pos = np.flatnonzero(ok)
            _, first = np.unique(idx[pos], return_index=True)  # no buffer taken twice
            ok[pos] = False
            ok[pos[first]] = True
            good = int(np.count_nonzero(ok))
            if good < len(batch):
                self._rx_drop(node, "zero-copy-mismatch", len(batch) - good)
            idx = idx[ok]
            pool.length[idx] = batch.lengths[ok]
        pool.free(np.setdiff1d(lent[lent >= 0], idx, assume_unique=True))
        return idx

    # ------------------------------------------------------------------ output
    def transmit(self, node: InterfaceOutput, idx: np.ndarray) -> None:
        """Send a vector of pool buffers; drops what does not fit, frees what was copied."""
        queues = self.iface.tx_queues
        if not queues or not self.iface.connected:
            node.drop(idx, "not-connected")
            return
        qid = self._rr % len(queues)
        self._rr += 1
        q = queues[qid]
        lengths = self.rt.pool.length[idx]
        if self.zero_copy:
            sent, reason = self._send_zero_copy(qid, q, idx, lengths)
        else:
            sent, reason = self._send_copy(q, idx, lengths)
        counters = self.sw.counters
        counters.tx_packets += sent
        if sent:
            counters.tx_bytes += int(lengths[0]) if sent == 1 else int(lengths[:sent].sum())
        if sent < len(idx):
            counters.tx_errors += len(idx) - sent
            node.drop(idx[sent:], reason)

    def _send_copy(self, q: TxQueue, idx: np.ndarray, lengths: np.ndarray) -> tuple[int, str]:
        """Row copies into the ring's buffers; frames larger than a ring buffer are
        chained (one vector operation for the rest of the vector).  Returns how many
        were sent and why the rest were not."""
        pool = self.rt.pool
        sent, reason = 0, "no-free-tx-slots"
        while sent < len(idx):
            tx = q.alloc(len(idx) - sent, wrap=True)
            if tx.count == 0:
                break
            plen = lengths[sent : sent + tx.count]
            k = tx.count
            width = int(plen[0] if k == 1 else plen.max())  # one: no reduction
            if width > tx.capacity:  # copy up to the first frame that needs a chain
                k = int(np.argmax(plen > tx.capacity))
                if k == 0:  # from that frame on: chained where needed, in one go
                    k, reason = self._send_chained(q, tx.capacity, idx[sent:], lengths[sent:])
                    if k == 0:
                        break
                    sent += k
                    continue
                plen = plen[:k]
                width = int(plen.max())
            if k == 1:  # one frame: a slice copy into its buffer's view
                tx.buffer(0)[:width] = pool.data[idx[sent], :width]
            else:
                tx.copy_from(pool.rows(width), idx[sent : sent + k])
            q.tx_burst(tx, width if k == 1 else plen, count=k)  # one: no reductions
            sent += k
        pool.free(idx[:sent])
        return sent, reason

    def _send_chained(
        self, q: TxQueue, capacity: int, idx: np.ndarray, lengths: np.ndarray
    ) -> tuple[int, str]:
        """Send frames from the first larger than the ring's buffers (``capacity`` bytes)
        on, each chained over as many buffers as it needs, in one vector operation
        (``TxQueue.tx_chained``).  Returns how many were sent and why not the rest."""
        if capacity < MIN_CHAIN_BUFFER:
            return 0, "rx-buffer-too-small"
        return q.tx_chained(self.rt.pool.data, idx, lengths), "no-free-tx-slots"

    def _send_zero_copy(
        self, qid: int, q: TxQueue, idx: np.ndarray, lengths: np.ndarray
    ) -> tuple[int, str]:
        """Publish pool buffers themselves while the port is within its quota, then
        copy into the ring's own buffers.  Returns how many were sent and why not the rest."""
        pool = self.rt.pool
        fifo = self._in_flight[qid]
        done = q.reclaim()
        while done and fifo:  # free what the peer gave back, oldest first
            head = fifo[0]
            if len(head) <= done:
                head = fifo.popleft()
            else:
                fifo[0] = head[done:]
                head = head[:done]
            done -= len(head)
            if head[0] >= 0:  # -1: slots sent by copy, no pool buffer
                pool.free(head)
                self._n_in_flight -= len(head)
        room = pool.quota_per_port - self.held
        k = min(len(idx), max(room, 0))
        sent = q.tx_zero_copy(self.region, pool.offsets(idx[:k]), lengths[:k]) if k else 0
        if sent:
            fifo.append(idx[:sent])
            self._n_in_flight += sent
        if sent < k or sent == len(idx):
            return sent, "no-free-tx-slots"
        # Over quota: the rest go by copy into the ring's own buffers.
        before = q.ring.head
        more, reason = self._send_copy(q, idx[sent:], lengths[sent:])
        slots = (q.ring.head - before) & 0xFFFF
        if slots:
            fifo.append(np.full(slots, -1, INDEX))
        return sent + more, reason


class MemifInput(DeviceInput):
    """Polls every memif rx queue of the switch (one node, as in VPP)."""

    name = "memif-input"
    kind = MemifPort.kind
    errors = {
        "no-buffers": "switch buffer pool exhausted",
        "too-big": "frame larger than a switch buffer",
        "zero-copy-mismatch": "descriptor does not name the buffer posted in its slot",
        "zero-copy-chained": "chained frame on a zero-copy port (one posted buffer each)",
        "interface-down": "interface admin-down",
        **{_node_error(name): text for name, text in RX_ERRORS.items()},
        "chain-incomplete": "only an unfinished buffer chain on the ring: waiting for its end",
    }


class MemifOutput(InterfaceOutput):
    """``<interface>-output`` of a memif: SPAN tx mirroring, then the port's transmit."""

    errors = {
        **InterfaceOutput.errors,
        "not-connected": "memif not connected",
        "no-free-tx-slots": "ring full",
        "rx-buffer-too-small": (
            f"peer's receive buffers shorter than {MIN_CHAIN_BUFFER} bytes: frame not chained"
        ),
    }
