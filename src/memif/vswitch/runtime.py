"""What the graph's nodes work on: VPP's ``vlib_main_t`` and vnet tables, not the switch.

A :class:`Runtime` holds the packet path's state: the buffer pool, per-buffer
metadata (:class:`Meta`), the configuration mirrors (:class:`~.tables.Tables`), the
L2 FIB, the IPv4 FIB with its adjacencies and routes, the neighbour table, the port
registry, the clock (``now``, set by the main loop each turn, never read by a node from
the system) and the counters a node adds to outside its own error counters.  Nodes
receive it instead of the :class:`~.switch.Switch`, which is only the configuration
facade over the same objects.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from ..ratelog import PerKeyLog
from .adjacency import AdjacencyTable
from .ip4_fib import Ip4Fib
from .ip4_route import Ip4Routes
from .l2fib import L2Fib
from .neighbor import NeighborTable
from .pool import PacketPool
from .port import PortRegistry
from .tables import Tables

if TYPE_CHECKING:
    from .port import Port


class Meta:
    """Per-buffer packet metadata shared by the nodes."""

    def __init__(self, n_buffers: int) -> None:
        self.rx_if = np.zeros(n_buffers, np.int64)
        self.tx_if = np.zeros(n_buffers, np.int64)
        self.dmac = np.zeros(n_buffers, np.uint64)
        self.smac = np.zeros(n_buffers, np.uint64)
        self.etype = np.zeros(n_buffers, np.uint16)
        # a SPAN clone: never mirrored again (set by mirror, cleared at output)
        self.span_copy = np.zeros(n_buffers, bool)
        self.ip4_dst = np.zeros(n_buffers, np.uint32)  # ip4-input's: the destination
        self.adj = np.zeros(n_buffers, np.uint32)  # ip4-lookup's adjacency
        self.icmp = np.zeros(n_buffers, np.uint16)  # ip4-icmp-error's type << 8 | code


class Runtime:
    """The state every node reads and writes, and the clock of the current turn."""

    def __init__(self, pool: PacketPool, vector_size: int, log: logging.Logger) -> None:
        self.pool = pool
        self.meta = Meta(pool.n_buffers)
        pool.flags_cleared_on_free.append(self.meta.span_copy)
        self.tables = Tables()
        self.fib = L2Fib()
        self.neighbors = NeighborTable()
        self.ip4_fib = Ip4Fib()
        self.adjacencies = AdjacencyTable()
        self.ip4_routes = Ip4Routes(self.ip4_fib, self.adjacencies)
        self.neighbors.listeners.append(self._neighbor_changed)
        self.ports: PortRegistry = PortRegistry()
        #: descriptors a device-input takes per queue and turn
        self.vector_size = vector_size
        #: the time of the current turn (set by the main loop; nodes never read a clock)
        self.now = time.monotonic()
        self.log = log
        self.ratelog = PerKeyLog(log)  # lines a peer can trigger at packet rate
        #: (ident, seq, source address, arrival time, ttl) of echo replies to our pings
        self.ping_replies: list[tuple[int, int, bytes, float, int]] = []
        self.span_packets = 0  # SPAN copies made
        #: failures the main loop contained, by error name (the ``main-loop`` node's)
        self.loop_errors: Counter[str] = Counter()

    def _neighbor_changed(self, sw_if_index: int, ip: bytes, mac: bytes | None) -> None:
        if mac is None:
            self.ip4_routes.neighbor_forgotten(sw_if_index, ip)
        else:
            self.ip4_routes.neighbor_learned(sw_if_index, ip, mac)

    def learn_refused(self) -> None:
        """Log (rate-limited, per interface) what the MAC table refused to learn."""
        for (sw_if_index, which), packets in self.fib.refused.items():
            sw = self.tables.interfaces.get(sw_if_index)
            limit = {
                "table": self.fib.limit,
                "interface": self.fib.interface_limit(sw_if_index),
            }.get(which)
            if limit is None and sw is not None and sw.bd is not None:
                limit = self.fib.bd_limit.get(sw.bd)
            self.ratelog.log(
                ("learn-limit", sw_if_index, which),
                "l2-learn: %s: L2 learn limit exceeded (%s limit %s): %d packets' MACs not learned",
                sw.name if sw else f"sw_if_index {sw_if_index}",
                which,
                limit,
                packets,
            )
        self.fib.refused.clear()

    def port_failed(self, port: Port, where: str) -> None:
        """Contain an exception raised handling one port (call from an ``except``).

        Logged with its traceback (rate-limited), counted as ``port-exception`` in
        ``show errors``, and the port is told (:meth:`Port.fault`: a memif disconnects
        its peer): the fault stays with the port that caused it and every other port
        keeps forwarding.
        """
        self.loop_errors["port-exception"] += 1
        name = port.sw.name if port.sw is not None else "?"  # None: not yet added
        self.ratelog.log(
            ("port-exception", name, where),
            "%s: %s failed on this port: %s",
            where,
            name,
            port.fault_action,
            level=logging.ERROR,
            exc_info=True,
        )
        try:
            port.fault("memifd internal error on this interface")
        except Exception:
            self.log.exception("%s: %s after a failure failed too", name, port.fault_action)
