"""Loopback interfaces and the BVI (VPP's ``create loopback interface``, ``... bvi``).

A loopback (``loop<instance>``) is a port with no device behind it: nothing is polled,
its link follows its admin state, and what it sends comes back in.  Alone (an L3
interface) what goes out of it is received on it again through ethernet-input, as
VPP's loopback does.  As a bridge domain's BVI (bridge virtual interface) it is the
domain's way in and out of L3, in two directions, both through its output node:

* L3 to the bridge: what the switch sends out of the BVI (ARP and ICMP answers, its
  own pings, routed packets) enters the bridge domain as if received on the BVI:
  ethernet-input, then learning, forwarding or flooding;
* the bridge to L3: what the domain forwards or floods to the BVI (its MAC is a
  static L2 FIB entry) goes up to arp-input or ip4-input as received on the BVI,
  when addressed to its MAC or a group address; others are dropped with VPP's
  ``BVI L3 MAC mismatch`` (unknown unicast flooded to it) and ``BVI packet with
  unhandled ethertype`` counters (VPP's ``l2_to_bvi``).

A frame came across the bridge when its receive interface is another member of the
BVI's domain; anything else (received on the BVI itself, sent by the switch, routed
in from elsewhere) was sent by L3.  A loopback in a bridge domain without ``bvi`` takes
nothing from the domain: what reaches it is dropped (``not-bvi``), since sent back in it
would teach the domain that every sender is behind the loopback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..queue import RxQueue
from .nodes_l2 import ETH_P_ARP, ETH_P_IP, mac_int, parse_ethernet
from .pool import INDEX
from .port import DeviceInput, InterfaceOutput
from .tables import SwInterface

if TYPE_CHECKING:
    from .runtime import Runtime

MAX_INSTANCE = 16383  # loop0 .. loop16383
_MULTICAST = np.uint64(1 << 40)  # the group bit of a MAC in the nodes' integers


def default_mac(instance: int) -> bytes:
    """VPP's loopback MAC: ``de:ad:00:00`` and the instance (``de:ad:00:00:00:01``)."""
    return b"\xde\xad\x00\x00" + instance.to_bytes(2, "big")


class LoopbackPort:
    """``loop<instance>``: no device; sends back into the switch (see the module doc)."""

    kind: ClassVar[str] = "loopback"
    fault_action: ClassVar[str] = "kept, the error recorded"

    def __init__(self, rt: Runtime, instance: int) -> None:
        self.rt = rt
        self.instance = instance
        self.sw: SwInterface = None  # type: ignore[assignment]  # set by Switch.add_port
        self.output_node = 0  # set by Switch.add_port
        self.up = False  # the link follows the admin state, as VPP's loopback's
        self.last_error = ""

    @property
    def link_up(self) -> bool:
        """Up while admin-up."""
        return self.up

    @property
    def mtu(self) -> int | None:
        """None: no Linux side."""
        return None

    @property
    def held(self) -> int:
        """0: a loopback keeps no buffer."""
        return 0

    def receive(self, node: DeviceInput) -> int:
        """Nothing to poll: what a loopback receives comes through its output node."""
        return 0

    def transmit(self, node: InterfaceOutput, idx: np.ndarray) -> None:
        """Send back in: received on this interface, through ethernet-input (a BVI's
        frames go on into its bridge domain)."""
        sw, rt, c = self.sw, self.rt, self.sw.counters
        nbytes = int(rt.pool.length[idx].sum())
        c.tx_packets += len(idx)
        c.tx_bytes += nbytes
        rt.meta.rx_if[idx] = sw.sw_if_index
        if not sw.bvi:  # a plain loopback receives what it sent
            c.rx_packets += len(idx)
            c.rx_bytes += nbytes
        node.graph.enqueue(node.next[LoopbackOutput.ETHERNET], idx)

    def rx_queues(self) -> Sequence[RxQueue]:
        """None."""
        return ()

    def fds(self) -> list[int]:
        """None."""
        return []

    def set_admin(self, up: bool) -> None:
        """The link comes up and goes down with the admin state."""
        self.up = up

    def fault(self, reason: str) -> None:
        """Handling the port raised: remember why."""
        self.last_error = reason

    def close(self) -> None:
        """Nothing to release."""
        self.up = False

    def details(self) -> dict[str, object]:
        """What ``show hardware-interfaces`` adds for a loopback."""
        return {"instance": self.instance, "bvi": self.sw.bvi, "last_error": self.last_error}


class LoopbackOutput(InterfaceOutput):
    """``loop<n>-output``: frames from the bridge domain go up to a BVI's L3 input, the
    rest (sent by L3) through :meth:`LoopbackPort.transmit`."""

    next_nodes = (*InterfaceOutput.next_nodes, "ethernet-input", "arp-input", "ip4-input")
    ETHERNET, ARP, IP4 = range(len(InterfaceOutput.next_nodes), len(next_nodes))
    errors = {
        **InterfaceOutput.errors,
        "bvi-l3-mac-mismatch": "BVI L3 MAC mismatch",
        "bvi-ethertype": "BVI packet with unhandled ethertype",
        "not-bvi": "frame from the bridge domain to a loopback that is not its BVI",
    }

    def process(self, idx: np.ndarray) -> None:
        sw = self.port.sw
        if sw.bd is not None:
            rx = self.meta.rx_if[idx]
            across = (self.tables.bd[rx] == sw.bd) & (rx != sw.sw_if_index)
            if across.any():
                self.from_bridge(sw, idx[across])
                idx = idx[~across]
        if len(idx):
            super().process(idx)

    def from_bridge(self, sw: SwInterface, idx: np.ndarray) -> None:
        """Frames its bridge domain forwarded or flooded to the loopback: up to L3 when it is
        the BVI; dropped otherwise (sent back in, they would teach the domain that every
        sender is behind the loopback)."""
        if sw.bvi:
            self.to_l3(sw, idx)
        else:
            self.drop(idx, "not-bvi")

    def to_l3(self, sw: SwInterface, idx: np.ndarray) -> None:
        """Frames the bridge domain handed to its BVI: to arp-input or ip4-input as
        received on it, when for its MAC or a group; the others dropped, counted."""
        rt = self.rt
        sw.counters.rx_packets += len(idx)
        sw.counters.rx_bytes += int(rt.pool.length[idx].sum())
        dmac, _, etype = parse_ethernet(*rt.pool.header_words(idx))
        mine = (dmac == np.uint64(mac_int(sw.mac))) | (dmac & _MULTICAST != 0)
        if not mine.all():
            self.drop(idx[~mine], "bvi-l3-mac-mismatch")
            idx, etype = idx[mine], etype[mine]
        self.meta.rx_if[idx] = sw.sw_if_index
        self.meta.etype[idx] = etype
        arp, ip4 = etype == ETH_P_ARP, etype == ETH_P_IP
        self.graph.enqueue(self.next[self.ARP], idx[arp])
        self.graph.enqueue(self.next[self.IP4], idx[ip4])
        self.drop(idx[~arp & ~ip4], "bvi-ethertype")

    def format_trace(self, i: int) -> str:
        """The interface-output line, then the way the frame takes through the loopback
        (as it enters, decided as :meth:`process` decides): ``bvi: from bridge domain 1
        up to L3: ip4-input`` (or why it is dropped), ``bvi: from L3 into bridge domain
        1``, or ``loopback: sent back in: ethernet-input``."""
        sw, meta = self.port.sw, self.meta
        rx = int(meta.rx_if[i])
        across = sw.bd is not None and rx != sw.sw_if_index and int(self.tables.bd[rx]) == sw.bd
        if not across and sw.bvi and sw.bd is not None:
            way = f"bvi: from L3 into bridge domain {sw.bd}"
        elif not across:
            way = "loopback: sent back in: ethernet-input"
        elif not sw.bvi:
            way = f"from bridge domain {sw.bd}: drop: not-bvi"
        else:
            dmac, _, etype = parse_ethernet(*self.rt.pool.header_words(np.array([i], INDEX)))
            d = int(dmac[0])
            up = {ETH_P_ARP: "arp-input", ETH_P_IP: "ip4-input"}.get(int(etype[0]))
            if d != mac_int(sw.mac) and not d & int(_MULTICAST):
                up = "drop: bvi-l3-mac-mismatch"
            way = f"bvi: from bridge domain {sw.bd} up to L3: {up or 'drop: bvi-ethertype'}"
        return f"{super().format_trace(i)}\n{way}"


__all__ = ["MAX_INSTANCE", "LoopbackOutput", "LoopbackPort", "default_mac"]
