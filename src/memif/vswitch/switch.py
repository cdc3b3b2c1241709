"""The switch: memif sockets and ports, tables, the graph, and its main loop.

Configuration methods raise :class:`SwitchError` with a one-line message; the
daemon's command handlers call them.  :meth:`Switch.run_once` is one turn of the
main loop: control plane when due, every input, then the graph until empty.  When
nothing arrives for a while the loop switches receive queues to interrupt mode and
sleeps in poll(2) on their eventfds (and any registered fd), as VPP's adaptive mode
does; the first kick switches them back to polling.  "Nothing" includes a trickle:
polls that bring fewer than ``ADAPTIVE_VECTOR`` packets do not keep the loop
spinning, so the switch's CPU use follows its load.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .. import wire
from ..access import AccessPolicy
from ..config import Role, format_mac, parse_mac, random_mac
from ..errors import MemifError
from ..poller import Poller
from ..ratelog import PerKeyLog
from ..sock import Socket
from ..text import escape
from . import nodes_ip4, nodes_l2
from .graph import ErrorDrop, Graph, Node
from .l2fib import L2Fib
from .memif_port import DEFAULT_VECTOR, MemifInput, MemifOutput, MemifPort
from .neighbor import NeighborTable
from .nodes_l2 import Meta
from .pool import PacketPool
from .tables import BridgeDomain, L2Mode, Span, SwInterface, Tables

log = logging.getLogger("memifd")

CONTROL_PERIOD = 0.01  # seconds between control-plane polls while busy
IDLE_BEFORE_SLEEP = 0.002  # seconds of small vectors before sleeping on interrupts
ADAPTIVE_VECTOR = 8  # a poll bringing fewer packets than this is "light" (VPP's adaptive mode)
MAX_SLEEP = 0.1
AGE_SCAN = 1.0  # seconds between scans of the neighbour table (and at least between MAC scans)
# MAC table scans per shortest mac-age: an entry goes at most 1/60 of its age late (VPP
# scans once a minute, its shortest age); a scan of a full table takes ~10 ms
AGE_SCANS_PER_AGE = 60


class SwitchError(Exception):
    """A configuration request that cannot be done; the text says why."""


class Port(Protocol):
    """A port that is not a memif (tap, host-interface): what the switch needs of it.

    Every port of one kind shares an input node (``tap-input``, ``host-input``, made by
    :meth:`Switch.input_node`), which the loop polls each turn; it calls ``poll(node)`` on
    each of its ports, which moves up to a vector of received frames into pool buffers
    and hands them to the graph, returning how many.  ``fds()`` become readable when
    ``poll`` has something to take: the idle sleep waits on them.  ``output_node`` is the
    graph id of the port's ``<name>-output`` node (set by :meth:`Switch.add_port`);
    ``link_up`` feeds the interface state, ``set_admin`` follows ``set interface state``
    and ``close`` releases the kernel side when the interface is deleted.
    """

    kind: str
    sw: SwInterface
    output_node: int

    @property
    def link_up(self) -> bool: ...

    def poll(self, node: Node) -> int: ...

    def fds(self) -> list[int]: ...

    def set_admin(self, up: bool) -> None: ...

    def close(self) -> None: ...


@dataclass
class SocketEntry:
    """``create memif socket id N filename F``."""

    id: int
    filename: str
    socket: Socket | None = None  # created with the first interface
    interfaces: list[int] = field(default_factory=list)  # memif ids
    access: AccessPolicy | None = None  # who may connect; None: the switch's default


class Switch:
    """A VPP-style L2 switch with memif ports."""

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
    ) -> None:
        if not 1 <= vector_size <= 1 << 16:
            raise ValueError(f"vector size {vector_size}: expected 1..{1 << 16}")
        self.vector_size = vector_size  # descriptors memif-input takes per queue and turn
        self.runtime_dir = runtime_dir
        self.app_name = app_name
        self.socket_mode = socket_mode  # of the memif socket files the switch listens on
        self.socket_group = socket_group
        self.socket_access = socket_access or AccessPolicy()  # of sockets that name none
        self.pool = PacketPool(n_buffers, data_size)
        self.meta = Meta(n_buffers)
        self.pool.flags_cleared_on_free.append(self.meta.span_copy)
        self.fib = L2Fib()
        self.tables = Tables()
        self.graph = Graph(self.pool, CountingDrop(self))
        self.sockets: dict[int, SocketEntry] = {
            0: SocketEntry(0, os.path.join(runtime_dir, "memif.sock"))
        }
        self.ports: dict[int, MemifPort] = {}  # sw_if_index -> port
        self.host_ports: dict[int, Port] = {}  # sw_if_index -> tap, host-interface, ...
        self.neighbors = NeighborTable()
        self.ratelog = PerKeyLog(log)  # lines a peer can trigger at packet rate
        # (ident, seq, source address, arrival time, ttl) of echo replies to our pings
        self.ping_replies: list[tuple[int, int, bytes, float, int]] = []
        self.span_packets = 0
        self.now = time.monotonic()
        self.started = self.now
        self.busy_ns = 0
        self._extra_fds: dict[int, Callable[[], None]] = {}
        self._extra_poller = Poller()  # the extra fds, looked at by control()
        self._idle_poller = Poller()  # every fd that ends sleep()
        self._last_control = 0.0
        self._last_age = self.now
        self._last_mac_age = self.now
        self._last_packet = self.now
        self._sleeping = False
        self.input = MemifInput(self)
        self.inputs: list[Node] = [self.input]  # input nodes polled each turn (.poll())
        self.main_loop = MainLoop()
        for node in (
            self.main_loop,
            self.input,
            nodes_l2.SpanInput(self),
            nodes_l2.EthernetInput(self),
            nodes_l2.L2Learn(self),
            nodes_l2.L2Fwd(self),
            nodes_l2.L2Flood(self),
            nodes_ip4.ArpInput(self),
            nodes_ip4.Ip4Input(self),
            nodes_l2.L2Output(self),
        ):
            self.graph.add(node)

    # ------------------------------------------------------------------ lookups
    def memif_ports(self) -> list[MemifPort]:
        """Every memif port."""
        return list(self.ports.values())

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
            posted = sum(p.commitment for p in self.ports.values())
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
                on_connect=lambda i, s=sw_if_index: self._on_connect(s),
                on_disconnect=lambda i, reason, s=sw_if_index: self._on_disconnect(s, reason),
            )
        except MemifError as exc:
            raise SwitchError(str(exc)) from None
        except OSError as exc:
            raise SwitchError(f"socket {entry.filename}: {exc.strerror or exc}") from None
        port = MemifPort(self, socket_id, iface, zero_copy)
        sw = SwInterface(sw_if_index, name, mac, port, ip_mode=iface.config.mode == wire.Mode.IP)
        port.sw = sw
        port.output_node = self.graph.add(MemifOutput(self, port))
        self.ports[sw_if_index] = port
        entry.interfaces.append(id)
        iface.set_admin(False)  # admin-down until "set interface state up"
        self.tables.add(sw)
        log.info("created %s (%s, socket %s)", name, r.vpp_name, entry.filename)
        return sw

    def delete_interface(self, name: str) -> None:
        """``delete interface memif <if>``."""
        sw = self.interface(name)
        if sw.sw_if_index not in self.ports:
            raise SwitchError(f"{name} is not a memif interface")
        port = self.ports.pop(sw.sw_if_index)
        port.iface.delete()
        port.disconnected()
        entry = self.sockets[port.socket_id]
        entry.interfaces.remove(port.iface.id)
        if not entry.interfaces and entry.socket is not None:
            entry.socket.close()
            entry.socket = None
        self.graph.remove(self.graph.nodes[port.output_node])
        self.fib.flush(sw_if_index=sw.sw_if_index)
        self.neighbors.flush(sw.sw_if_index)
        self.tables.remove(sw)
        log.info("deleted %s", name)

    def input_node(self, cls: Callable[[Switch], Node]) -> Node:
        """The input node of a port kind (``cls.name``), added to the graph on first use."""
        node = self.graph.by_name.get(cls.name)  # type: ignore[attr-defined]
        if node is None:
            node = cls(self)
            self.graph.add(node)
            self.inputs.append(node)
        return node

    def add_port(self, name: str, mac: bytes, port: Port, output: Node) -> SwInterface:
        """Register a non-memif port as interface ``name`` (admin-down) with its output node."""
        if name in self.tables.by_name:
            raise SwitchError(f"interface {name} already exists")
        sw = SwInterface(self.tables.new_index(), name, mac, port)
        port.sw = sw
        port.output_node = self.graph.add(output)
        self.host_ports[sw.sw_if_index] = port
        self.tables.add(sw)
        log.info("created %s (%s)", name, port.kind)
        return sw

    def delete_port(self, name: str) -> None:
        """Delete a non-memif port's interface and close the port."""
        sw = self.interface(name)
        port = self.host_ports.pop(sw.sw_if_index, None)
        if port is None:
            raise SwitchError(f"{name} is a memif interface: use 'delete interface memif'")
        self.graph.remove(self.graph.nodes[port.output_node])
        self.fib.flush(sw_if_index=sw.sw_if_index)
        self.neighbors.flush(sw.sw_if_index)
        self.tables.remove(sw)
        port.close()
        log.info("deleted %s", name)

    def _on_connect(self, sw_if_index: int) -> None:
        port = self.ports[sw_if_index]
        port.connected()
        self.tables.refresh()
        log.info(  # names the peer chose: escaped, so they cannot forge log lines
            "%s connected to '%s' (%s)",
            port.sw.name,
            escape(port.iface.remote_if_name),
            escape(port.iface.remote_app_name),
        )

    def _on_disconnect(self, sw_if_index: int, reason: str) -> None:
        port = self.ports.get(sw_if_index)
        if port is None:
            return
        port.disconnected()
        self.fib.flush(sw_if_index=sw_if_index)
        self.neighbors.flush(sw_if_index)
        self.tables.refresh()
        log.info("%s disconnected: %s", port.sw.name, escape(reason))

    def port_failed(self, port: MemifPort, where: str) -> None:
        """Contain an exception raised handling one port (call from an ``except``).

        Logged with its traceback (rate-limited), counted as ``port-exception`` in
        ``show errors``, and the port's peer is disconnected: the fault stays with the
        port that caused it and every other port keeps forwarding.
        """
        self.main_loop.error_counts["port-exception"] += 1
        name = port.sw.name if port.sw is not None else "?"  # None: not yet added
        self.ratelog.log(
            ("port-exception", name, where),
            "%s: %s failed on this port: disconnecting its peer",
            where,
            name,
            level=logging.ERROR,
            exc_info=True,
        )
        try:
            if port.iface.connected:
                port.iface.disconnect("memifd internal error on this interface")
        except Exception:
            log.exception("%s: disconnect after a failure failed too", name)

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

    def set_state(self, name: str, up: bool) -> None:
        """``set interface state <if> up|down``."""
        sw = self.interface(name)
        sw.admin_up = up
        port = self.ports.get(sw.sw_if_index)
        if port is not None:
            port.iface.set_admin(up)
        host = self.host_ports.get(sw.sw_if_index)
        if host is not None:
            host.set_admin(up)
        if not up:
            self.neighbors.flush(sw.sw_if_index)
        self.tables.refresh()

    def set_mac(self, name: str, mac: str) -> None:
        """``set interface mac address <if> <mac>``."""
        self.interface(name).mac = parse_mac(mac)

    def set_ip(self, name: str, address: bytes, prefix: int, delete: bool = False) -> None:
        """``set interface ip address [del] <if> <a.b.c.d/len>``."""
        sw = self.interface(name)
        entry = (address, prefix)
        if delete:
            if entry not in sw.ip4:
                raise SwitchError(f"{name} has no address {format_ip(address)}/{prefix}")
            sw.ip4.remove(entry)
        elif entry not in sw.ip4:
            sw.ip4.append(entry)
        self.tables.refresh()

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
        sw.bd, sw.xconnect, sw.mode = None, None, L2Mode.L3

    def set_bridge(self, name: str, bd_id: int) -> None:
        """``set interface l2 bridge <if> <bd>`` (creates the bridge domain if needed)."""
        sw = self.interface(name)
        if bd_id not in self.tables.bds:
            self.create_bridge_domain(bd_id)
        self._leave_l2(sw)
        sw.mode, sw.bd = L2Mode.BRIDGE, bd_id
        self.tables.bds[bd_id].members.append(sw.sw_if_index)
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
        self.graph.enqueue(self.graph.by_name["l2-output"].id, idx)
        self.graph.run()
        return True

    def clear_interfaces(self) -> None:
        """``clear interfaces``."""
        for sw in self.tables.interfaces.values():
            sw.counters.clear()

    # ------------------------------------------------------------------ loop
    def add_fd(self, fd: int, callback: Callable[[], None]) -> None:
        """Watch ``fd`` (e.g. the CLI socket) from the main loop."""
        self._extra_fds[fd] = callback

    def remove_fd(self, fd: int) -> None:
        """Stop watching ``fd``."""
        self._extra_fds.pop(fd, None)

    def control(self) -> None:
        """Control-plane work: memif sockets, extra fds, FIB and neighbour ageing.

        Each socket and each fd callback is contained on its own: an exception is
        logged (rate-limited) and counted, and the others still get their turn.
        """
        for entry in list(self.sockets.values()):
            if entry.socket is not None:
                self._contained(
                    "control-exception", f"memif socket {entry.filename}", entry.socket.poll, 0
                )
        if self._extra_fds:
            self._extra_poller.update(self._extra_fds)
            for fd in self._extra_poller.wait(0):
                cb = self._extra_fds.get(fd)
                if cb:
                    self._contained("control-exception", f"fd {fd}", cb)
        if not 0.0 <= self.now - self._last_age < AGE_SCAN:  # due (or the clock was set)
            self._last_age = self.now
            self.neighbors.age(self.now)
        ages = self.tables.max_age
        if ages:
            period = max(AGE_SCAN, min(ages.values()) / AGE_SCANS_PER_AGE)
            if not 0.0 <= self.now - self._last_mac_age < period:
                self._last_mac_age = self.now
                self.fib.age(self.now, ages)

    def _contained(self, error: str, what: str, fn: Callable[..., object], *args: object) -> bool:
        """Run ``fn(*args)``; an exception is logged with its traceback (rate-limited)
        and counted as ``error`` of the main-loop node. True when it ran cleanly."""
        try:
            fn(*args)
            return True
        except Exception as exc:
            self.failed(error, what, exc)
            return False

    def failed(self, error: str, what: str, exc: Exception) -> None:
        """Count and log (with traceback, rate-limited) an exception the loop contained;
        call from its ``except`` block."""
        self.main_loop.error_counts[error] += 1
        self.ratelog.log(
            (error, what, type(exc).__name__),
            "%s: %s: %s (contained, the loop goes on)",
            what,
            type(exc).__name__,
            escape(str(exc)),
            level=logging.ERROR,
            exc_info=True,
        )

    def run_once(self) -> int:
        """One turn: control when due, input from every port, the graph. Returns packets.

        Never raises for what a peer or a packet did: failures are contained (logged,
        counted in ``show errors`` under ``main-loop``) and the next turn runs.
        """
        t0 = time.perf_counter_ns()
        self.now = time.monotonic()
        if self.now - self._last_control >= CONTROL_PERIOD:
            self._last_control = self.now
            self.control()
        n = self.input_poll()
        if n:
            if not self._contained("graph-exception", "graph", self.graph.run):
                self.graph.discard()
            self.busy_ns += time.perf_counter_ns() - t0
        if n >= ADAPTIVE_VECTOR:
            self._last_packet = self.now  # heavy traffic: keep polling
        elif self.now - self._last_packet > IDLE_BEFORE_SLEEP:
            # light or no traffic for a while: sleep until a peer kicks (interrupt mode)
            self.sleep(MAX_SLEEP)
        return n

    def input_poll(self) -> int:
        """Run every input node (with its runtime figures); a failing one is contained."""
        total = 0
        for node in self.inputs:
            first_trace = self.graph.next_trace if self.graph.tracing else None
            t0 = time.perf_counter_ns()
            try:
                n = node.poll()  # type: ignore[attr-defined]
            except Exception as exc:
                self.failed("input-exception", node.name, exc)
                continue
            if n:
                node.ns += time.perf_counter_ns() - t0
                node.calls += 1
                node.vectors += n
                total += n
            if first_trace is not None and self.graph.next_trace != first_trace:
                self._trace_input(node, first_trace)
        return total

    def _trace_input(self, node: Node, first: int) -> None:
        """Start each packet traced from this poll with its input line (``memif: ...``)."""
        graph, now = self.graph, time.strftime("%H:%M:%S")
        kind = node.name.removesuffix("-input")
        for i in np.flatnonzero(graph.trace_id >= first).tolist():
            sw = self.tables.interfaces.get(int(self.meta.rx_if[i]))
            where = f"{sw.name} sw_if_index {sw.sw_if_index}" if sw else "?"
            line = f"{now}: {node.name}\n  {kind}: {where} {node.trace_line(i)}"
            graph.traces[int(graph.trace_id[i])].insert(0, line)

    def sleep(self, timeout: float) -> None:
        """Block until a receive queue is kicked, a control fd is ready, or ``timeout``."""
        queues = [q for p in self.memif_ports() if p.iface.connected for q in p.iface.rx_queues]
        for q in queues:
            q.polling = False
        try:
            if any(q.ready() for q in queues):  # not an unfinished chain: it would spin
                return
            fds = [q.fd for q in queues] + list(self._extra_fds)
            fds += [e.socket.fileno() for e in self.sockets.values() if e.socket is not None]
            fds += [fd for p in self.host_ports.values() for fd in p.fds()]
            self._idle_poller.update(fds)
            ready = self._idle_poller.wait(timeout)
            for q in queues:
                if q.fd in ready:
                    q.clear_interrupt()
            self._last_control = 0.0  # do control work next turn
        finally:
            for q in queues:
                q.polling = True

    def run(self, until: Callable[[], bool]) -> None:
        """Run until ``until()`` is true."""
        while not until():
            self.run_once()

    def close(self) -> None:
        """Delete every interface (peers see a disconnect), close sockets, free memory."""
        for sw in list(self.tables.interfaces.values()):
            if sw.sw_if_index in self.ports:
                self.delete_interface(sw.name)
            elif sw.sw_if_index in self.host_ports:
                self.delete_port(sw.name)
        for entry in self.sockets.values():
            if entry.socket is not None:
                entry.socket.close()
        self.pool.close()


class MainLoop(Node):
    """Counters of failures the main loop contained (``show errors``); never gets vectors."""

    name = "main-loop"
    errors = {
        "port-exception": "exception handling a port: its peer was disconnected",
        "input-exception": "exception in an input node: its turn was skipped",
        "graph-exception": "exception in the graph: the turn's packets were dropped",
        "control-exception": "exception in control-plane work (socket or CLI)",
        "loop-exception": "exception in a main loop turn (contained)",
    }

    def process(self, idx: np.ndarray) -> None:
        self.graph.pool.free(idx)


class CountingDrop(ErrorDrop):
    """error-drop that also counts ``drops`` on each packet's receive interface (VPP's).

    A lost SPAN copy is not the source port's drop (the original went on): it shows
    in ``show errors`` and, for a full ring, in the destination's tx errors.
    """

    def __init__(self, switch: Switch) -> None:
        super().__init__()
        self.switch = switch

    def process(self, idx: np.ndarray) -> None:
        interfaces = self.switch.tables.interfaces
        meta = self.switch.meta
        rx, counts = np.unique(meta.rx_if[idx[~meta.span_copy[idx]]], return_counts=True)
        for i, n in zip(rx.tolist(), counts.tolist(), strict=True):
            sw = interfaces.get(i)
            if sw is not None:
                sw.counters.drops += n
        super().process(idx)


def format_ip(raw: bytes) -> str:
    """4 bytes to a dotted quad."""
    return ".".join(str(b) for b in raw)


__all__ = ["Switch", "SwitchError", "format_mac"]
