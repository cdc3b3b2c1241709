"""Ports: one protocol for every device class, one registry, and the generic nodes.

As in VPP (``VNET_DEVICE_CLASS``), memif, tap and AF_PACKET host interfaces are
device classes behind one :class:`Port` protocol; the switch and its nodes never
look past it.  Each class has one input node (:class:`DeviceInput`: ``memif-input``,
``tap-input``, ``host-input``) that the main loop polls each turn; it asks each port
of its class to ``receive`` up to a vector into pool buffers and hands them to
:meth:`DeviceInput.deliver`.  Each interface has its own ``<name>-output`` node (an
:class:`InterfaceOutput`): SPAN tx mirroring, then the port's ``transmit``.  A device
class only names its nodes' errors (subclasses of the two nodes).

Every port, whatever its class, lives in one :class:`PortRegistry` keyed by
``sw_if_index``, and is deleted through one path (``Switch.delete_interface``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

from ..queue import RxQueue
from . import decode
from .graph import DROP, format_bytes
from .nodes_l2 import SwitchNode, mirror
from .tables import DEFAULT_MTU, SwInterface

if TYPE_CHECKING:
    from .runtime import Runtime

ETHERNET_HEADER = 14
"""Bytes a frame carries besides its MTU's payload (none on a memif in ip mode)."""
MIN_MTU = 64
"""The smallest MTU ``set interface mtu`` takes (VPP's minimum Ethernet packet)."""


def max_mtu(data_size: int, ip_mode: bool) -> int:
    """The largest MTU the switch's buffers (``data_size`` bytes each) carry."""
    return data_size if ip_mode else data_size - ETHERNET_HEADER


def default_mtu(port: Port, data_size: int, ip_mode: bool) -> int:
    """A new interface's packet MTU: its Linux side's (tap, host interface), else VPP's
    :data:`~.tables.DEFAULT_MTU`, never more than the buffers carry."""
    return min(port.mtu or DEFAULT_MTU, max_mtu(data_size, ip_mode))


class Port(Protocol):
    """What the switch needs of a port, whatever its device class.

    ``kind`` names the class (``memif``, ``tap``, ``af_packet``); ``sw`` and
    ``output_node`` (the graph id of its ``<name>-output``) are set when the switch
    adds it.  ``receive`` moves up to a vector of received frames into the graph
    (through ``node.deliver``) and returns how many; ``transmit`` sends a vector of
    pool buffers, counting and dropping (through ``node.drop``) what it cannot.  The
    main loop serves ``rx_queues()`` (memif receive queues: polling while busy, their
    interrupts armed for the idle sleep) and wakes on ``fds()`` (a kernel device's fd).
    ``mtu`` is the Linux side's MTU (None: none), ``held`` the pool buffers the port
    holds (a zero-copy memif's posted and lent ones).  ``set_admin`` follows ``set
    interface state``, ``fault`` is told when handling the
    port raised (``fault_action`` says what it does, for the log), ``close`` releases
    it when the interface is deleted, ``details`` is what its ``show`` prints.
    """

    kind: ClassVar[str]
    fault_action: ClassVar[str]
    sw: SwInterface
    output_node: int

    @property
    def link_up(self) -> bool: ...

    @property
    def mtu(self) -> int | None: ...

    @property
    def held(self) -> int: ...

    def receive(self, node: DeviceInput) -> int: ...

    def transmit(self, node: InterfaceOutput, idx: np.ndarray) -> None: ...

    def rx_queues(self) -> Sequence[RxQueue]: ...

    def fds(self) -> list[int]: ...

    def set_admin(self, up: bool) -> None: ...

    def fault(self, reason: str) -> None: ...

    def close(self) -> None: ...

    def details(self) -> dict[str, object]: ...


class PortRegistry:
    """Every port of the switch by ``sw_if_index``, and the ports of each device class.

    The per-class tuples are rebuilt on add and remove only, so an input node walks
    its ports without copying, and a port deleted meanwhile does not disturb it.
    """

    def __init__(self) -> None:
        self._ports: dict[int, Port] = {}
        self._by_kind: dict[str, tuple[Port, ...]] = {}

    def add(self, sw_if_index: int, port: Port) -> None:
        """Register ``port`` as interface ``sw_if_index``."""
        self._ports[sw_if_index] = port
        self._by_kind[port.kind] = (*self._by_kind.get(port.kind, ()), port)

    def remove(self, sw_if_index: int) -> Port:
        """Unregister and return the port of ``sw_if_index`` (KeyError if none)."""
        port = self._ports.pop(sw_if_index)
        self._by_kind[port.kind] = tuple(p for p in self._by_kind[port.kind] if p is not port)
        return port

    def of_kind(self, kind: str) -> tuple[Port, ...]:
        """The ports of one device class, in creation order."""
        return self._by_kind.get(kind, ())

    def get(self, sw_if_index: int) -> Port | None:
        """The port of ``sw_if_index``, or None."""
        return self._ports.get(sw_if_index)

    def __getitem__(self, sw_if_index: int) -> Port:
        return self._ports[sw_if_index]

    def __contains__(self, sw_if_index: object) -> bool:
        return sw_if_index in self._ports

    def __iter__(self) -> Iterator[int]:
        return iter(self._ports)

    def __len__(self) -> int:
        return len(self._ports)

    def values(self) -> list[Port]:
        """Every port, in creation order."""
        return list(self._ports.values())

    def items(self) -> list[tuple[int, Port]]:
        """(sw_if_index, port) pairs, in creation order."""
        return list(self._ports.items())


class DeviceInput(SwitchNode):
    """The input node of one device class: receives on each of its ports.

    A port whose ``receive`` raises is contained on its own (:meth:`Runtime.port_failed`):
    the others still get their turn.  Received frames go to ip4-input (``mode ip``
    interfaces), span-input (while some interface mirrors what it receives) or
    ethernet-input; an admin-down interface's are dropped.
    """

    kind: ClassVar[str] = ""  # the Port.kind this node polls
    next_nodes = ("ethernet-input", "span-input", "ip4-input", DROP)
    ETHERNET, SPAN, IP4 = range(3)

    def poll(self) -> int:
        """Receive on every port of this class whose link is up; returns packets taken."""
        n = 0
        rt = self.rt
        for port in rt.ports.of_kind(self.kind):
            if port.link_up:
                try:
                    n += port.receive(self)
                except Exception:  # that port's fault: its peer goes, the others go on
                    rt.port_failed(port, self.name)
        return n

    def next_for(self, sw: SwInterface) -> int:
        """ip4-input for ip-mode interfaces, else span-input or ethernet-input."""
        if sw.ip_mode:
            return self.next[self.IP4]
        if self.rt.tables.any_span_rx:
            return self.next[self.SPAN]
        return self.next[self.ETHERNET]

    def deliver(
        self,
        sw: SwInterface,
        idx: np.ndarray,
        nbytes: int | None = None,
        queue: int | None = None,
        slots: tuple[int, int] | None = None,
    ) -> int:
        """Count frames received on ``sw`` (``nbytes`` of them, if known) and hand them to
        the graph, or drop them when the interface is admin-down; returns how many.

        ``queue`` and ``slots`` (the burst's first ring slot and the ring size: frame
        ``k`` came in slot ``first + k``, unchained) are for the trace only."""
        n = len(idx)
        if not n:
            return 0
        rt = self.rt
        rt.meta.rx_if[idx] = sw.sw_if_index
        sw.counters.rx_packets += n
        sw.counters.rx_bytes += int(rt.pool.length[idx].sum()) if nbytes is None else nbytes
        if not sw.admin_up:
            self.drop(idx, "interface-down")
            return n
        graph = self.graph
        if graph.tracing:
            graph.trace_start(self.name, idx)
            where = {i: k for k, i in enumerate(idx.tolist())}
            graph.trace(self, idx, lambda i: self.format_input(sw, i, queue, slots, where[i]))
        graph.enqueue(self.next_for(sw), idx)
        return n

    def format_input(
        self, sw: SwInterface, i: int, queue: int | None, slots: tuple[int, int] | None, k: int
    ) -> str:
        """The input node's trace of buffer ``i``, the ``k``-th of a burst: the interface,
        the queue and ring slot it came from (when known), its bytes."""
        where = "" if queue is None else f" queue {queue}"
        if slots is not None:
            where += f" slot {(slots[0] + k) % slots[1]}"
        kind = self.name.removesuffix("-input")
        head = format_bytes(self.rt.pool, i)
        return f"{kind}: {sw.name} sw_if_index {sw.sw_if_index}{where}\n  {head}"

    def process(self, idx: np.ndarray) -> None:  # an input node gets no vectors
        self.rt.pool.free(idx)


class InterfaceOutput(SwitchNode):
    """``<interface>-output``: the MTU check, SPAN tx mirroring, then the port's transmit.

    A frame longer than the interface's packet MTU (plus its Ethernet header), or an
    IPv4 one longer than its ``ip4`` MTU, is dropped as ``mtu-exceeded`` (error-drop
    counts it in the receiving interface's drops, as VPP's does).  Device classes add
    their own errors to :attr:`errors`.
    """

    errors: ClassVar[dict[str, str]] = {
        "mtu-exceeded": "frame longer than the interface's MTU (set interface mtu)",
    }
    next_nodes: ClassVar[tuple[str, ...]] = ("l2-output", DROP)
    L2_OUTPUT = 0
    reclaim_on_failure = False  # a zero-copy transmit may have lent buffers to a ring

    def __init__(self, rt: Runtime, port: Port) -> None:
        super().__init__(rt)
        self.port = port

    @property
    def node_name(self) -> str:
        """``memif0/1-output``."""
        return f"{self.port.sw.name}-output"

    def process(self, idx: np.ndarray) -> None:
        sw = self.port.sw
        idx = self.within_mtu(sw, idx)
        if not len(idx):
            return
        if sw.spans:
            own = idx[~self.meta.span_copy[idx]]  # copies are not mirrored again (no loops)
            mirror(
                self, own, np.full(len(own), sw.sw_if_index), self.next[self.L2_OUTPUT], rx=False
            )
        self.port.transmit(self, idx)

    def format_trace(self, i: int) -> str:
        """``memif2/0 sw_if_index 2`` and the frame's Ethernet header (or, in ip mode,
        its IPv4 header), as VPP's interface-output."""
        sw = self.port.sw
        frame, length = decode.head(self.rt.pool, i), int(self.rt.pool.length[i])
        text = decode.ip4(frame) if sw.ip_mode else decode.ethernet(frame)
        return f"{sw.name} sw_if_index {sw.sw_if_index} length {length}\n{text}"

    def within_mtu(self, sw: SwInterface, idx: np.ndarray) -> np.ndarray:
        """The packets of ``idx`` the interface's MTUs let out; the rest are dropped
        (``mtu-exceeded``).  One reduction per vector (plain ints for one packet)."""
        header = 0 if sw.ip_mode else ETHERNET_HEADER
        lengths = self.rt.pool.length[idx]
        longest = int(lengths[0]) if len(idx) == 1 else int(lengths.max(initial=0))
        limit = sw.mtu + header
        ip4_limit = sw.ip4_mtu + header if sw.ip4_mtu and sw.ip4_mtu < sw.mtu else limit
        if longest <= ip4_limit:
            return idx
        over = lengths > limit
        if ip4_limit < limit:  # IPv4 frames have their own limit
            data = self.rt.pool.data
            ip4 = (
                np.ones(len(idx), bool)
                if sw.ip_mode
                else (data[idx, 12] == 0x08) & (data[idx, 13] == 0x00)
            )
            over |= ip4 & (lengths > ip4_limit)
        if over.any():
            self.drop(idx[over], "mtu-exceeded")
            idx = idx[~over]
        return idx
