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
from .graph import DROP
from .nodes_l2 import SwitchNode, mirror
from .tables import SwInterface

if TYPE_CHECKING:
    from .runtime import Runtime


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

    def deliver(self, sw: SwInterface, idx: np.ndarray, nbytes: int | None = None) -> int:
        """Count frames received on ``sw`` (``nbytes`` of them, if known) and hand them to
        the graph, or drop them when the interface is admin-down; returns how many."""
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
        self.graph.trace_start(self.name, idx)
        self.graph.enqueue(self.next_for(sw), idx)
        return n

    def process(self, idx: np.ndarray) -> None:  # an input node gets no vectors
        self.rt.pool.free(idx)


class InterfaceOutput(SwitchNode):
    """``<interface>-output``: SPAN tx mirroring, then the port's transmit."""

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
        if sw.spans:
            own = idx[~self.meta.span_copy[idx]]  # copies are not mirrored again (no loops)
            mirror(
                self, own, np.full(len(own), sw.sw_if_index), self.next[self.L2_OUTPUT], rx=False
            )
        self.port.transmit(self, idx)
