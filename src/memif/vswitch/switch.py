"""The switch: its configuration facade over the runtime, the graph and the main loop.

:class:`Switch` holds the configuration: memif sockets, interfaces of every device
class (one :class:`~.port.PortRegistry`, one delete path), bridge domains, cross-
connects, SPAN, addresses.  Configuration methods raise :class:`SwitchError` with a
one-line message; the daemon's command handlers call them.  The packet path's state
is the :class:`~.runtime.Runtime` the nodes get; the loop that turns it is
:class:`~.mainloop.MainLoop` (``switch.loop``); :meth:`Switch.run_once` is one turn of
it on the switch's clock (``clock``: ``time.monotonic`` unless a test injects one).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import wire
from ..access import AccessPolicy
from ..config import DEFAULT_SOCKET, Role, format_mac, parse_mac, random_mac
from ..errors import MemifError
from ..interface import Interface
from ..loop import RxMode
from ..sock import Socket
from ..text import escape
from . import nodes_ip4, nodes_ip4_arp, nodes_ip4_fwd, nodes_ip4_icmp, nodes_l2
from .graph import Graph
from .ip4_fib import FibError
from .ip4_route import Source, network, prefix_str
from .l2fib import fib_key
from .loopback_port import MAX_INSTANCE, LoopbackOutput, LoopbackPort, default_mac
from .mainloop import MainLoop
from .memif_port import DEFAULT_VECTOR, MemifInput, MemifOutput, MemifPort
from .nodes_l2 import CountingDrop
from .pool import PacketPool
from .port import MIN_MTU, DeviceInput, InterfaceOutput, Port, default_mtu, max_mtu
from .runtime import Runtime
from .tables import BridgeDomain, L2Mode, Span, SwInterface

log = logging.getLogger("memifd")

AGE_SCAN = 1.0  # seconds between scans of the neighbour table (and at least between MAC scans)
# MAC table scans per shortest mac-age: an entry goes at most 1/60 of its age late (VPP
# scans once a minute, its shortest age); a scan of a full table takes ~10 ms
AGE_SCANS_PER_AGE = 60


class SwitchError(Exception):
    """A configuration request that cannot be done; the text says why."""


@dataclass
class SocketEntry:
    """``create memif socket id N filename F``."""

    id: int
    filename: str
    socket: Socket | None = None  # created with the first interface
    interfaces: list[int] = field(default_factory=list)  # memif ids
    access: AccessPolicy | None = None  # who may connect; None: the switch's default


class Switch:
    """A VPP-style L2 switch with memif, tap and AF_PACKET ports: the configuration.

    ``runtime`` is what the nodes work on (its pool, metadata, tables, FIB, neighbour
    table and port registry are also this object's attributes), ``graph`` the nodes,
    ``loop`` the main loop.
    """

    def __init__(
        self,
        runtime_dir: str = "/run/memifd",
        n_buffers: int = 32768,
        data_size: int = 10240,
        app_name: str = "memifd",
        socket_mode: int = 0o660,
        socket_group: int | None = None,
        vector_size: int = DEFAULT_VECTOR,
        socket_access: AccessPolicy | None = None,
        socket0: str = DEFAULT_SOCKET,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= vector_size <= 1 << 16:
            raise ValueError(f"vector size {vector_size}: expected 1..{1 << 16}")
        self.vector_size = vector_size  # descriptors memif-input takes per queue and turn
        self.runtime_dir = runtime_dir
        self.app_name = app_name
        self.socket_mode = socket_mode  # of the memif socket files the switch listens on
        self.socket_group = socket_group
        self.socket_access = socket_access or AccessPolicy()  # of sockets that name none
        rt = self.runtime = Runtime(PacketPool(n_buffers, data_size), vector_size, log)
        rt.now = clock()
        self.pool, self.meta, self.tables = rt.pool, rt.meta, rt.tables
        self.fib, self.neighbors, self.ratelog = rt.fib, rt.neighbors, rt.ratelog
        self.ports = rt.ports  # sw_if_index -> port, every device class
        self.graph = Graph(self.pool, CountingDrop(rt))
        self.sockets: dict[int, SocketEntry] = {
            0: SocketEntry(0, socket0)  # VPP's /run/vpp/memif.sock, as the tools' default
        }
        self.started = rt.now
        self._last_age = rt.now
        self._last_mac_age = rt.now
        self.loop = MainLoop(rt, self.graph, self.control, self._control_fds, clock)
        for node in (
            MemifInput(rt),
            nodes_l2.SpanInput(rt),
            nodes_l2.EthernetInput(rt),
            nodes_l2.L2Learn(rt),
            nodes_l2.L2Fwd(rt),
            nodes_l2.L2Flood(rt),
            nodes_ip4.ArpInput(rt),
            nodes_ip4_fwd.Ip4Input(rt),
            nodes_ip4_fwd.Ip4Lookup(rt),
            nodes_ip4.Ip4Local(rt),
            nodes_ip4_arp.Ip4Arp(rt),
            nodes_ip4_arp.Ip4Glean(rt),
            nodes_ip4_fwd.Ip4Rewrite(rt),
            nodes_ip4_icmp.Ip4IcmpError(rt),
            nodes_l2.L2Output(rt),
        ):
            self.graph.add(node)
            if isinstance(node, DeviceInput):
                self.loop.inputs.append(node)
        self.graph.build()  # every declared next node resolved, or GraphError here
        self.l2_output = self.graph.by_name[nodes_l2.L2Output.name]

    # ------------------------------------------------------------------ runtime facts
    @property
    def now(self) -> float:
        """The time of the current turn (the runtime's clock, set by the main loop)."""
        return self.runtime.now

    @property
    def ping_replies(self) -> list[tuple[int, int, bytes, float, int]]:
        """Echo replies to the switch's own pings: (ident, seq, source, arrival, ttl)."""
        return self.runtime.ping_replies

    @property
    def span_packets(self) -> int:
        """SPAN copies made since start."""
        return self.runtime.span_packets

    @property
    def busy_ns(self) -> int:
        """Time the main loop spent on turns that moved packets."""
        return self.loop.busy_ns

    # ------------------------------------------------------------------ lookups
    def memif_ports(self) -> list[MemifPort]:
        """Every memif port."""
        return [p for p in self.ports.of_kind(MemifPort.kind) if isinstance(p, MemifPort)]

    def interface(self, name: str) -> SwInterface:
        """An interface by name, or a SwitchError naming the known ones."""
        sw = self.tables.by_name.get(name)
        if sw is None:
            known = ", ".join(sorted(self.tables.by_name)) or "none"
            raise SwitchError(f"unknown interface '{name}' (known: {known})")
        return sw

    # ------------------------------------------------------------------ sockets
    def create_socket(
        self, socket_id: int, filename: str, access: AccessPolicy | None = None
    ) -> SocketEntry:
        """``create memif socket id <id> filename <path|@name|abstract:name> [allow-...]``.

        ``access`` replaces the switch's default policy for this socket.  An abstract
        name has no file: the policy is all that protects it.
        """
        if socket_id == 0 or socket_id in self.sockets:
            raise SwitchError(f"socket id {socket_id} already exists (0 is the default)")
        if not filename.startswith(("/", "@", "abstract:", "unix:")):
            filename = os.path.join(self.runtime_dir, filename)
        for entry in self.sockets.values():
            if entry.filename == filename:
                raise SwitchError(f"socket {filename} is already socket id {entry.id}")
        if filename.startswith("/"):
            os.makedirs(os.path.dirname(filename), exist_ok=True)
        entry = SocketEntry(socket_id, filename, access=access)
        self.sockets[socket_id] = entry
        if filename.startswith(("@", "abstract:")):
            log.info(
                "memif socket %d %s: abstract name, no file permissions; admits %s",
                socket_id,
                filename,
                self.socket_policy(entry).describe(),
            )
        return entry

    def socket_policy(self, entry: SocketEntry) -> AccessPolicy:
        """The access policy a memif socket checks its peers against."""
        return entry.access or self.socket_access

    def delete_socket(self, socket_id: int) -> None:
        """``delete memif socket id <id>``: refused while interfaces use it."""
        if socket_id == 0:
            raise SwitchError("socket id 0 is the default socket and cannot be deleted")
        entry = self.sockets.get(socket_id)
        if entry is None:
            raise SwitchError(f"socket id {socket_id} does not exist")
        if entry.interfaces:
            raise SwitchError(
                f"socket id {socket_id} is in use by {len(entry.interfaces)} interface(s)"
            )
        if entry.socket is not None:
            entry.socket.close()
        del self.sockets[socket_id]

    # ------------------------------------------------------------------ interfaces
    def create_memif(
        self,
        *,
        id: int = 0,
        socket_id: int = 0,
        role: str = "slave",
        rx_queues: int = 1,
        tx_queues: int = 1,
        ring_size: int = 1024,
        buffer_size: int = 2048,
        hw_addr: str | None = None,
        secret: str = "",
        mode: str = "ethernet",
        zero_copy: bool = True,
    ) -> SwInterface:
        """``create interface memif ...`` -> interface ``memif<socket-id>/<id>``."""
        entry = self.sockets.get(socket_id)
        if entry is None:
            raise SwitchError(f"socket id {socket_id} does not exist: create memif socket first")
        name = f"memif{socket_id}/{id}"
        if name in self.tables.by_name:
            raise SwitchError(f"interface {name} already exists")
        r = Role.parse(role)
        if entry.socket is not None and entry.socket.role not in (None, r):
            raise SwitchError(
                f"socket id {socket_id} already has {entry.socket.role.vpp_name} interfaces: "
                "a socket either listens (master) or connects (slave)"
            )
        mac = parse_mac(hw_addr) if hw_addr else random_mac()
        zero_copy = zero_copy and r is Role.CLIENT
        if zero_copy:  # its receive buffers come from the pool: refuse what can drain it
            posted = sum(p.commitment for p in self.memif_ports())
            refusal = self.pool.refusal(name, rx_queues, ring_size, posted)
            if refusal:
                raise SwitchError(refusal)
        try:
            if entry.socket is None:
                if entry.filename.startswith("/"):
                    os.makedirs(os.path.dirname(entry.filename), exist_ok=True)
                entry.socket = Socket(
                    entry.filename,
                    app_name=self.app_name,
                    mode=self.socket_mode,
                    group=self.socket_group,
                    access=self.socket_policy(entry),
                )
            sw_if_index = self.tables.new_index()
            iface = entry.socket.create_interface(
                id=id,
                role=r,
                mode=mode,
                secret=secret,
                name=name,
                rx_queues=rx_queues,
                tx_queues=tx_queues,
                ring_size=ring_size,
                buffer_size=buffer_size,
                mac=mac,
                polling=True,
                pools=[self.pool.shared] if zero_copy else (),
                post_rx_buffers=not zero_copy,
                reconnect_interval=1.0,
                on_connect=functools.partial(self._on_connect, sw_if_index),
                on_disconnect=functools.partial(self._on_disconnect, sw_if_index),
            )
        except MemifError as exc:
            raise SwitchError(str(exc)) from None
        except OSError as exc:
            raise SwitchError(f"socket {entry.filename}: {exc.strerror or exc}") from None
        port = MemifPort(self.runtime, socket_id, iface, zero_copy)
        entry.interfaces.append(id)
        iface.set_admin(False)  # admin-down until "set interface state up"
        ip_mode = iface.config.mode == wire.Mode.IP
        sw = self.add_port(name, mac, port, MemifOutput, sw_if_index=sw_if_index, ip_mode=ip_mode)
        log.info("created %s (%s, socket %s)", name, r.vpp_name, entry.filename)
        return sw

    def create_loopback(self, mac: bytes | None = None, instance: int | None = None) -> SwInterface:
        """``create loopback interface [mac <mac>] [instance <n>]`` -> ``loop<n>`` (the
        lowest free instance unless given; VPP's ``de:ad:00:00:<n>`` MAC unless given)."""
        used = {p.instance for p in self.ports.of_kind(LoopbackPort.kind)
                if isinstance(p, LoopbackPort)}  # fmt: skip
        if instance is None:
            instance = next(n for n in range(len(used) + 1) if n not in used)
        if not 0 <= instance <= MAX_INSTANCE:
            raise SwitchError(f"loopback instance {instance}: expected 0..{MAX_INSTANCE}")
        if instance in used:
            raise SwitchError(f"loopback instance {instance} is in use (loop{instance})")
        port = LoopbackPort(self.runtime, instance)
        return self.add_port(f"loop{instance}", mac or default_mac(instance), port, LoopbackOutput)

    def delete_interface(self, name: str, kind: str | None = None) -> None:
        """Delete interface ``name`` of any device class (``kind``: only of that class).

        The one delete path: the output node leaves the graph, the FIB and neighbour
        entries behind the port go, the port is closed (a memif's peer sees a
        disconnect, a tap device goes), and a memif socket no interface uses closes.
        """
        sw = self.interface(name)
        port = self.ports.get(sw.sw_if_index)
        if port is None:
            raise SwitchError(f"{name} has no port to delete")
        if kind is not None and port.kind != kind:
            raise SwitchError(f"{name} is not a {kind} interface (it is a {port.kind} interface)")
        self.ports.remove(sw.sw_if_index)
        self.graph.remove(self.graph.nodes[port.output_node])
        self.fib.forget_interface(sw.sw_if_index)  # static entries too
        self.neighbors.flush(sw.sw_if_index, static=True)
        self._forget_routes(sw)
        self.tables.remove(sw)
        port.close()
        if isinstance(port, MemifPort):
            self._release_socket(port)
        self.loop.forget_interface(sw.sw_if_index)
        self.loop.ports_changed()
        log.info("deleted %s", name)

    def _release_socket(self, port: MemifPort) -> None:
        """A memif left its socket: the socket closes when no interface uses it."""
        entry = self.sockets[port.socket_id]
        entry.interfaces.remove(port.iface.id)
        if not entry.interfaces and entry.socket is not None:
            entry.socket.close()
            entry.socket = None

    def input_node(self, cls: type[DeviceInput]) -> DeviceInput:
        """The input node of a device class (``cls.name``), added to the graph and the
        main loop on first use."""
        found = self.graph.by_name.get(cls.name)
        if isinstance(found, DeviceInput):
            return found
        node = cls(self.runtime)
        self.graph.add(node)
        self.loop.inputs.append(node)
        return node

    def add_port(
        self,
        name: str,
        mac: bytes,
        port: Port,
        output: Callable[[Runtime, Port], InterfaceOutput],
        *,
        sw_if_index: int | None = None,
        ip_mode: bool = False,
    ) -> SwInterface:
        """Register ``port`` as interface ``name`` (admin-down) with its output node
        ``output(runtime, port)``, behind l2-output."""
        if name in self.tables.by_name:
            raise SwitchError(f"interface {name} already exists")
        if sw_if_index is None:
            sw_if_index = self.tables.new_index()
        sw = SwInterface(sw_if_index, name, mac, port, ip_mode=ip_mode)
        sw.mtu = default_mtu(port, self.pool.data_size, ip_mode)
        port.sw = sw
        node = output(self.runtime, port)
        port.output_node = self.graph.add(node)
        self.graph.add_next(self.l2_output, node)
        self.ports.add(sw_if_index, port)
        self.tables.add(sw)
        self.runtime.adjacencies.interface(sw_if_index, mac, ip_mode)
        self.loop.ports_changed()
        if not isinstance(port, MemifPort):
            log.info("created %s (%s)", name, port.kind)
        return sw

    def _on_connect(self, sw_if_index: int, iface: Interface) -> None:
        port = self.ports[sw_if_index]
        assert isinstance(port, MemifPort)
        port.connected()
        self.loop.ports_changed()
        self.tables.refresh()
        log.info(  # names the peer chose: escaped, so they cannot forge log lines
            "%s connected to '%s' (%s)",
            port.sw.name,
            escape(port.iface.remote_if_name),
            escape(port.iface.remote_app_name),
        )

    def _on_disconnect(self, sw_if_index: int, iface: Interface, reason: str) -> None:
        port = self.ports.get(sw_if_index)
        if not isinstance(port, MemifPort):
            return
        port.disconnected()
        self.loop.ports_changed()
        self.fib.flush(sw_if_index=sw_if_index)
        self.neighbors.flush(sw_if_index)
        self.tables.refresh()
        log.info("%s disconnected: %s", port.sw.name, escape(reason))

    def set_state(self, name: str, up: bool) -> None:
        """``set interface state <if> up|down``."""
        sw = self.interface(name)
        sw.admin_up = up
        port = self.ports.get(sw.sw_if_index)
        if port is not None:
            port.set_admin(up)
        if not up:
            self.neighbors.flush(sw.sw_if_index)
        self.tables.refresh()

    def l2fib_add(self, mac: str, bd_id: int, name: str, static: bool = False) -> None:
        """``l2fib add <mac> <bd> <interface> [static]``: an entry the operator sets; a
        static one is never learned over or aged (the interface must be in the domain)."""
        sw = self.interface(name)
        if bd_id not in self.tables.bds:
            raise SwitchError(f"no bridge domain {bd_id}")
        if sw.bd != bd_id:
            raise SwitchError(f"{name} is not in bridge domain {bd_id}")
        value = int.from_bytes(parse_mac(mac), "big")
        key = int(fib_key(bd_id, value))
        if key not in self.fib.entries and len(self.fib) >= self.fib.limit:
            raise SwitchError(f"the L2 FIB is full ({self.fib.limit} entries)")
        if static:
            self.fib.add_static(bd_id, value, sw.sw_if_index, self.now)
            return
        old = self.fib.entries.get(key)
        if old is not None and old.static:  # learning never moves a static entry
            self.fib.remove(bd_id, value)
        self.fib.learn(np.array([key], np.uint64), np.array([sw.sw_if_index]), self.now)
        if not self.fib.known_at(key, sw.sw_if_index):  # refused: the entry stays as it was
            if old is not None and old.static:
                self.fib.add_static(bd_id, value, old.sw_if_index, old.last_seen)
            raise SwitchError(f"{mac} refused: {name}'s or bridge domain {bd_id}'s learn limit")
        self.fib.touch_one(key, self.now)  # added anew: its age starts again

    def l2fib_del(self, mac: str, bd_id: int) -> None:
        """``l2fib del <mac> <bd>``."""
        if not self.fib.remove(bd_id, int.from_bytes(parse_mac(mac), "big")):
            raise SwitchError(f"no L2 FIB entry {mac} in bridge domain {bd_id}")

    def mtu_range(self, name: str) -> tuple[int, int]:
        """The MTUs ``set interface mtu`` takes for interface ``name``: what the switch's
        buffers carry (a frame longer than one is never received)."""
        return MIN_MTU, max_mtu(self.pool.data_size, self.interface(name).ip_mode)

    def set_mtu(self, name: str, mtu: int, ip4: bool = False) -> None:
        """``set interface mtu [packet|ip4] <mtu> <interface>``: the packet MTU, or IPv4's
        own (0 in ``show interface`` until set); longer frames are dropped at output."""
        sw = self.interface(name)
        lo, hi = self.mtu_range(name)
        if not lo <= mtu <= hi:
            raise SwitchError(f"mtu {mtu} out of range for {name}: expected {lo}..{hi}")
        if ip4:
            sw.ip4_mtu = mtu
        else:
            sw.mtu = mtu

    def set_rx_mode(self, name: str, mode: str, queue: int | None = None) -> None:
        """``set interface rx-mode <if> [queue <n>] polling|interrupt|adaptive``: how the
        main loop serves the interface's receive queues (memif ports; kept across
        reconnects)."""
        sw = self.interface(name)
        if not isinstance(sw.port, MemifPort):
            raise SwitchError(f"{name}: rx-mode applies to memif interfaces")
        queues = sw.port.iface.config.rx_queues if sw.port.iface.role is Role.CLIENT else None
        if queue is not None and queues is not None and queue >= queues:
            raise SwitchError(f"{name} has {queues} receive queue(s): 0..{queues - 1}")
        self.loop.set_rx_mode(sw.sw_if_index, RxMode.parse(mode), queue)

    def set_mac(self, name: str, mac: str) -> None:
        """``set interface mac address <if> <mac>`` (the routes' rewrites follow, and a
        BVI's L2 FIB entry)."""
        sw = self.interface(name)
        new = parse_mac(mac)
        if sw.bvi and sw.bd is not None:
            self.fib.remove(sw.bd, int.from_bytes(sw.mac, "big"))
            self.fib.add_static(sw.bd, int.from_bytes(new, "big"), sw.sw_if_index, self.now)
        sw.mac = new
        self.runtime.adjacencies.interface(sw.sw_if_index, sw.mac, sw.ip_mode)
        self.tables.refresh()

    def set_ip(self, name: str, address: bytes, prefix: int, delete: bool = False) -> None:
        """``set interface ip address [del] <if> <a.b.c.d/len>``: also the local /32 and
        the connected subnet in the FIB, as VPP installs them."""
        sw = self.interface(name)
        entry = (address, prefix)
        routes = self.runtime.ip4_routes
        if delete:
            if entry not in sw.ip4:
                raise SwitchError(f"{name} has no address {format_ip(address)}/{prefix}")
            sw.ip4.remove(entry)
            routes.address_del(sw.sw_if_index, address, prefix)
        elif entry not in sw.ip4:
            for other in self.tables.interfaces.values():
                if other is not sw and (address, prefix) in other.ip4:
                    raise SwitchError(f"{format_ip(address)}/{prefix} is already on {other.name}")
            try:
                routes.address_add(sw.sw_if_index, address, prefix)
            except FibError as exc:
                routes.address_del(sw.sw_if_index, address, prefix)  # what was added
                raise SwitchError(str(exc)) from None
            sw.ip4.append(entry)
            for index, ip, neighbor in self.neighbors.items():  # known ones get their /32
                if index == sw.sw_if_index:
                    routes.neighbor_learned(index, ip, neighbor.mac)
        self.tables.refresh()

    # ------------------------------------------------------------------ L3 routes
    def ip_route(
        self,
        prefix: bytes,
        length: int,
        via: bytes | None = None,
        name: str | None = None,
        delete: bool = False,
    ) -> str:
        """``ip route add|del <prefix>/<len> via <next-hop> [<interface>]`` or ``via
        <interface>`` (attached: the destination is the next hop); returns the prefix.

        A next hop without an interface is looked for on the connected subnets.  The
        host bits of the prefix are cleared, as VPP does.  One path per prefix: add
        replaces the operator's previous one."""
        routes = self.runtime.ip4_routes
        net = network(prefix, length)
        text = prefix_str(net, length)
        if delete:
            if not routes.remove(net, length, Source.CLI):
                raise SwitchError(f"no route {text} added with 'ip route add'")
            return text
        sw = self.interface(name) if name is not None else None
        adj = self.runtime.adjacencies
        if via is None:
            if sw is None:
                raise SwitchError(
                    f"ip route add {text}: give 'via <next-hop>' or 'via <interface>'"
                )
            path = adj.glean(sw.sw_if_index)
        else:
            if sw is None:
                found = [i for i in self.tables.interfaces if routes.connected(i, via)]
                if not found:
                    raise SwitchError(
                        f"next hop {format_ip(via)} is on no connected subnet: "
                        "give its interface (via <next-hop> <interface>)"
                    )
                sw = self.tables.interfaces[found[0]]
            path = adj.neighbor(sw.sw_if_index, via, self.neighbors.get(sw.sw_if_index, via))
        try:
            routes.add(net, length, Source.CLI, path)
        except FibError as exc:
            adj.release(path)
            raise SwitchError(str(exc)) from None
        return text

    def ip_neighbor(
        self, name: str, ip: bytes, mac: str | None, static: bool = False, delete: bool = False
    ) -> None:
        """``set ip neighbor [del] <interface> <a.b.c.d> <mac> [static]``."""
        sw = self.interface(name)
        if sw.ip_mode:
            raise SwitchError(f"{name} is a mode ip interface: it has no neighbours (no MACs)")
        if delete:
            if not self.neighbors.delete(sw.sw_if_index, ip):
                raise SwitchError(f"no neighbor {format_ip(ip)} on {name}")
            return
        assert mac is not None
        try:
            self.neighbors.add(sw.sw_if_index, ip, parse_mac(mac), self.now, static)
        except ValueError as exc:
            raise SwitchError(str(exc)) from None

    def _forget_routes(self, sw: SwInterface) -> None:
        """An interface goes: its addresses' routes and the operator's routes through it."""
        routes = self.runtime.ip4_routes
        for addr, plen in sw.ip4:
            routes.address_del(sw.sw_if_index, addr, plen)
        for prefix, length, source in routes.owned_by(sw.sw_if_index):
            routes.remove(prefix, length, source, 0 if source is Source.CLI else sw.sw_if_index)
        self.runtime.adjacencies.forget_interface(sw.sw_if_index)

    # ------------------------------------------------------------------ L2
    def create_bridge_domain(self, bd_id: int, **flags: object) -> BridgeDomain:
        """``create bridge-domain <n> [learn 0|1] [forward 0|1] [flood 0|1] ...``."""
        if not 1 <= bd_id <= 0xFFFFFF:
            raise SwitchError(f"bridge domain id {bd_id} must be 1..16777215")
        bd = self.tables.bds.get(bd_id) or BridgeDomain(bd_id)
        for key, value in flags.items():
            if key == "learn_limit":
                self.set_bd_learn_limit(bd_id, int(value))  # type: ignore[call-overload]
            else:
                setattr(bd, key, value)
        self.tables.bds[bd_id] = bd
        self.tables.refresh()
        return bd

    def set_bd_learn_limit(self, bd_id: int, limit: int) -> None:
        """``set bridge-domain learn-limit <bd> <n>``: learned MACs the domain may hold."""
        if bd_id not in self.tables.bds:
            raise SwitchError(f"no bridge domain {bd_id}")
        self.fib.bd_limit[bd_id] = limit

    def set_mac_age(self, bd_id: int, minutes: float) -> None:
        """``set bridge-domain mac-age <bd> <minutes>`` (0: never)."""
        bd = self.tables.bds.get(bd_id)
        if bd is None:
            raise SwitchError(f"no bridge domain {bd_id}")
        bd.mac_age = minutes
        self.tables.refresh()

    def set_if_learn_limit(self, name: str, limit: int | None) -> None:
        """``set interface l2 learn-limit <if> <n>|default``: learned MACs behind one port."""
        sw = self.interface(name)
        if limit is None:
            self.fib.if_limits.pop(sw.sw_if_index, None)
        else:
            self.fib.if_limits[sw.sw_if_index] = limit

    def _leave_l2(self, sw: SwInterface) -> None:
        if sw.bd is not None:
            self.tables.bds[sw.bd].members.remove(sw.sw_if_index)
            self.fib.flush(bd=sw.bd, sw_if_index=sw.sw_if_index)
            if sw.bvi:  # its static entry
                self.fib.remove(sw.bd, int.from_bytes(sw.mac, "big"))
        sw.bd, sw.xconnect, sw.mode, sw.bvi = None, None, L2Mode.L3, False

    def set_bridge(self, name: str, bd_id: int, bvi: bool = False) -> None:
        """``set interface l2 bridge <if> <bd> [bvi]`` (creates the bridge domain if
        needed).  A BVI (a loopback, one per domain) is the domain's L3 interface: its
        MAC is a static L2 FIB entry pointing at it."""
        sw = self.interface(name)
        if bvi:
            if not isinstance(sw.port, LoopbackPort):
                raise SwitchError(
                    f"{name} cannot be a BVI: only a loopback can (create loopback interface)"
                )
            other = self.tables.bd_bvi.get(bd_id)
            if other is not None and other != sw.sw_if_index:
                raise SwitchError(
                    f"bridge domain {bd_id} already has a BVI: {self.tables.interfaces[other].name}"
                )
        if bd_id not in self.tables.bds:
            self.create_bridge_domain(bd_id)
        self._leave_l2(sw)
        sw.mode, sw.bd, sw.bvi = L2Mode.BRIDGE, bd_id, bvi
        self.tables.bds[bd_id].members.append(sw.sw_if_index)
        if bvi:
            self.fib.add_static(bd_id, int.from_bytes(sw.mac, "big"), sw.sw_if_index, self.now)
        self.tables.refresh()

    def set_l3(self, name: str) -> None:
        """``set interface l3 <if>``."""
        self._leave_l2(self.interface(name))
        self.tables.refresh()

    def set_xconnect(self, name: str, peer: str) -> None:
        """``set interface l2 xconnect <if> <peer>`` (one direction, as in VPP)."""
        sw, other = self.interface(name), self.interface(peer)
        if sw is other:
            raise SwitchError("an interface cannot be cross-connected to itself")
        self._leave_l2(sw)
        sw.mode, sw.xconnect = L2Mode.XCONNECT, other.sw_if_index
        self.tables.refresh()

    def set_span(
        self, src: str, dst: str | None, rx: bool = True, tx: bool = True, l2: bool = False
    ) -> None:
        """``set interface span <src> [disable | destination <dst> [l2] [rx|tx|both]]``."""
        sw = self.interface(src)
        if dst is None:
            sw.spans.clear()
        else:
            target = self.interface(dst)
            if target is sw:
                raise SwitchError("a SPAN source cannot mirror to itself")
            sw.spans = [s for s in sw.spans if s.dst != target.sw_if_index]
            if rx or tx:
                sw.spans.append(Span(target.sw_if_index, rx, tx, l2))
        self.tables.refresh()

    def send_frame(self, sw_if_index: int, frame: bytes) -> bool:
        """Transmit a locally built frame (ARP request, ping) out of an interface.

        The frame goes through l2-output (so an interface that is down drops it with a
        counted error) and the graph runs at once.  False when no buffer was free.
        """
        if sw_if_index not in self.tables.interfaces:
            raise SwitchError(f"no interface with sw_if_index {sw_if_index}")
        if not 0 < len(frame) <= self.pool.data_size:
            raise SwitchError(f"frame of {len(frame)} bytes does not fit a switch buffer")
        idx = self.pool.alloc(1)
        if not len(idx):
            return False
        i = int(idx[0])
        self.pool.data[i, : len(frame)] = np.frombuffer(frame, np.uint8)
        self.pool.length[i] = len(frame)
        self.meta.rx_if[i] = 0  # local0: sent by the switch itself
        self.meta.tx_if[i] = sw_if_index
        self.graph.trace_id[i] = 0
        self.graph.enqueue(self.l2_output.id, idx)
        self.graph.run()
        return True

    def clear_interfaces(self) -> None:
        """``clear interfaces``."""
        for sw in self.tables.interfaces.values():
            sw.counters.clear()

    # ------------------------------------------------------------------ loop
    def add_fd(self, fd: int, callback: Callable[[], None]) -> None:
        """Watch ``fd`` (e.g. the CLI socket) from the main loop."""
        self.loop.add_fd(fd, callback)

    def remove_fd(self, fd: int) -> None:
        """Stop watching ``fd``."""
        self.loop.remove_fd(fd)

    def control(self, now: float) -> None:
        """Control-plane work at ``now``: memif sockets, FIB and neighbour ageing.

        Each socket is contained on its own: an exception is logged (rate-limited) and
        counted, and the others still get their turn.
        """
        for entry in list(self.sockets.values()):
            if entry.socket is not None:
                self.loop.contained(
                    "control-exception", f"memif socket {entry.filename}", entry.socket.poll, 0
                )
        if not 0.0 <= now - self._last_age < AGE_SCAN:  # due (or the clock was set)
            self._last_age = now
            self.neighbors.age(now)
        ages = self.tables.max_age
        if ages:
            period = max(AGE_SCAN, min(ages.values()) / AGE_SCANS_PER_AGE)
            if not 0.0 <= now - self._last_mac_age < period:
                self._last_mac_age = now
                self.fib.age(now, ages)

    def _control_fds(self) -> list[int]:
        """The memif sockets' fds: control messages end the idle sleep."""
        return [e.socket.fileno() for e in self.sockets.values() if e.socket is not None]

    def run_once(self) -> int:
        """One turn of the main loop on the system clock (with its idle sleep, when due);
        returns the packets it took in.  ``loop.run_once(now)`` is the turn alone."""
        return self.loop.turn()

    def run(self, until: Callable[[], bool]) -> None:
        """Run until ``until()`` is true."""
        self.loop.run(until)

    def close(self) -> None:
        """Delete every interface (peers see a disconnect), close sockets, free memory."""
        for sw in list(self.tables.interfaces.values()):
            if sw.sw_if_index in self.ports:
                self.delete_interface(sw.name)
        for entry in self.sockets.values():
            if entry.socket is not None:
                entry.socket.close()
        self.pool.close()


def format_ip(raw: bytes) -> str:
    """4 bytes to a dotted quad."""
    return ".".join(str(b) for b in raw)


__all__ = ["Switch", "SwitchError", "format_mac"]
