"""The switch's configuration: software interfaces and bridge domains.

Objects hold the truth; :class:`Tables` mirrors what nodes need per packet into
numpy arrays indexed by ``sw_if_index`` (rebuilt by :meth:`Tables.refresh` after
every configuration change, never on the packet path).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .port import Port


DEFAULT_MTU = 9000
"""An interface's packet MTU until ``set interface mtu`` (VPP's for memif; a host port
starts with its Linux interface's)."""


class L2Mode(enum.IntEnum):
    """How an interface's received packets are handled."""

    L3 = 0  # local addresses only (ARP, ICMP echo); the default, as in VPP
    BRIDGE = 1
    XCONNECT = 2


@dataclass
class Counters:
    """``show interface`` counters."""

    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    drops: int = 0
    tx_errors: int = 0

    def clear(self) -> None:
        """Zero everything."""
        self.rx_packets = self.rx_bytes = self.tx_packets = self.tx_bytes = 0
        self.drops = self.tx_errors = 0


@dataclass
class Span:
    """Mirror what ``src`` receives and/or sends to ``dst``."""

    dst: int
    rx: bool
    tx: bool
    l2: bool = False


@dataclass
class SwInterface:
    """One switch port, whatever its kind (``port`` does the I/O)."""

    sw_if_index: int
    name: str
    mac: bytes
    port: Port  # the device side: memif, tap, af_packet (see memif.vswitch.port)
    admin_up: bool = False
    mode: L2Mode = L2Mode.L3
    bd: int | None = None
    xconnect: int | None = None
    ip4: list[tuple[bytes, int]] = field(default_factory=list)  # (address, prefix length)
    ip_mode: bool = False  # carries bare IP packets (memif mode ip)
    mtu: int = DEFAULT_MTU  # the packet (L3) MTU: frames longer are dropped at output
    ip4_mtu: int = 0  # IPv4's own MTU (0: the packet MTU), VPP's ``mtu ip4``
    bvi: bool = False  # its bridge domain's BVI: the domain's way in and out of L3
    spans: list[Span] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)

    @property
    def link_up(self) -> bool:
        """True when the port's peer is connected."""
        return self.port.link_up

    @property
    def l3(self) -> bool:
        """True when the interface sends and receives IP itself: an L3 interface, or a
        bridge domain's BVI."""
        return self.mode is L2Mode.L3 or self.bvi

    @property
    def state(self) -> str:
        """``up`` when admin-up and the link is up, else ``down``."""
        return "up" if self.admin_up and self.link_up else "down"


@dataclass
class BridgeDomain:
    """``create bridge-domain`` options and members."""

    id: int
    learn: bool = True
    forward: bool = True
    flood: bool = True
    uu_flood: bool = True
    mac_age: float = 0  # minutes (fractions allowed), 0 = never
    members: list[int] = field(default_factory=list)


class Tables:
    """Interfaces and bridge domains, plus their per-packet numpy mirrors."""

    def __init__(self) -> None:
        self.interfaces: dict[int, SwInterface] = {}
        self.by_name: dict[str, SwInterface] = {}
        self.bds: dict[int, BridgeDomain] = {}
        self._next_index = 1  # 0 is VPP's local0
        self.refresh()

    def new_index(self) -> int:
        """A fresh sw_if_index."""
        i = self._next_index
        self._next_index += 1
        return i

    def add(self, sw: SwInterface) -> None:
        """Register an interface."""
        self.interfaces[sw.sw_if_index] = sw
        self.by_name[sw.name] = sw
        self.refresh()

    def remove(self, sw: SwInterface) -> None:
        """Unregister an interface and detach it from everything."""
        if sw.bd is not None and sw.bd in self.bds:
            self.bds[sw.bd].members.remove(sw.sw_if_index)
        for other in self.interfaces.values():
            other.spans = [s for s in other.spans if s.dst != sw.sw_if_index]
            if other.xconnect == sw.sw_if_index:
                other.xconnect, other.mode = None, L2Mode.L3
        del self.interfaces[sw.sw_if_index]
        del self.by_name[sw.name]
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the numpy mirrors after a configuration change."""
        n = self._next_index
        self.mode = np.zeros(n, np.int8)
        self.bd = np.full(n, -1, np.int64)
        self.bd_key = np.zeros(n, np.uint64)  # bd << 48: the FIB key prefix of a port
        self.xconnect = np.full(n, -1, np.int64)
        self.output = np.zeros(n, np.int64)  # output node id (0: error-drop)
        self.usable = np.zeros(n, bool)  # admin up and link up
        self.learn = np.zeros(n, bool)
        self.forward = np.ones(n, bool)
        self.flood = np.ones(n, bool)
        self.uu_flood = np.ones(n, bool)
        self.span_rx = np.zeros(n, bool)
        self.has_ip = np.zeros(n, bool)
        self.bvi = np.zeros(n, bool)  # a bridge domain's BVI (a loopback)
        self.bd_bvi: dict[int, int] = {}  # bd -> its BVI's sw_if_index
        self.ip_mode = np.zeros(n, bool)  # bare IPv4, no Ethernet header
        self.mac = np.zeros(n, np.uint64)
        for i, sw in self.interfaces.items():
            self.mode[i] = sw.mode
            self.output[i] = sw.port.output_node
            self.usable[i] = sw.admin_up and sw.link_up
            self.span_rx[i] = any(s.rx for s in sw.spans)
            self.has_ip[i] = bool(sw.ip4)
            if sw.bvi and sw.bd is not None:
                self.bvi[i] = True
                self.bd_bvi[sw.bd] = i
            self.ip_mode[i], self.mac[i] = sw.ip_mode, int.from_bytes(sw.mac, "big")
            if sw.mode is L2Mode.BRIDGE and sw.bd is not None:
                self.bd[i] = sw.bd
                self.bd_key[i] = np.uint64(sw.bd) << np.uint64(48)
                bd = self.bds[sw.bd]
                self.learn[i], self.forward[i] = bd.learn, bd.forward
                self.flood[i], self.uu_flood[i] = bd.flood, bd.uu_flood
            if sw.mode is L2Mode.XCONNECT and sw.xconnect is not None:
                self.xconnect[i] = sw.xconnect
        self.any_span_rx = bool(self.span_rx.any())
        self.bridged = bridged = self.mode == int(L2Mode.BRIDGE)
        self.all_learn = bool(self.learn[bridged].all())
        self.all_forward = bool(self.forward[bridged].all())
        # bd -> seconds a learned MAC lives unseen, for the domains that age
        self.max_age = {bd.id: bd.mac_age * 60.0 for bd in self.bds.values() if bd.mac_age}
        self.ageing = bool(self.max_age)  # l2-learn refreshes ages
        self.flood_ports = {bd.id: np.array(bd.members, np.int64) for bd in self.bds.values()}
