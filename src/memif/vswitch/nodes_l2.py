"""Layer-2 nodes: ethernet-input, span-input, l2-learn, l2-fwd, l2-flood, l2-output.

Each node works on a whole vector with numpy; per-packet facts live in the
runtime's metadata arrays (:class:`~.runtime.Meta`), indexed by buffer.  Nodes get
the :class:`~.runtime.Runtime` (pool, metadata, tables, FIB, clock), not the switch,
and declare their next nodes (``next_nodes``, resolved when the graph is built).  Every node has a
plain-Python ``reference`` of its decision, which the property tests compare with
the vector version on random frames.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.ma  # noqa: F401  # np.unique imports it on its first call: ~7 ms in a vector

from . import decode
from .graph import DROP, SMALL_VECTOR, ErrorDrop, Node
from .l2fib import fib_key, reference_learn_limited
from .tables import L2Mode

if TYPE_CHECKING:
    from .runtime import Runtime
    from .tables import Tables

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
MIN_FRAME = 14


def parse_ethernet(w0: np.ndarray, w1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dmac, smac, ethertype) from each frame's first two 8-byte words, read big-endian.

    ``w0`` holds bytes 0-7 (dmac, then smac's first two bytes), ``w1`` bytes 8-15
    (smac's last four, the ethertype, two more); :meth:`PacketPool.header_words`
    gathers them, one 8-byte load per word and packet.
    """
    return w0 >> _SHIFT16, source_macs(w0, w1), ethertypes(w1)


def source_macs(w0: np.ndarray, w1: np.ndarray) -> np.ndarray:
    """:func:`parse_ethernet`'s source MACs alone (the routed vector needs none)."""
    smac = w0 & _LOW16
    smac <<= _SHIFT32
    smac |= w1 >> _SHIFT32
    return smac


def ethertypes(w1: np.ndarray) -> np.ndarray:
    """:func:`parse_ethernet`'s ethertypes alone."""
    return (w1 >> _SHIFT16).astype(np.uint16)  # the cast keeps the low 16 bits


def parse_ethernet_reference(frame: bytes) -> tuple[int, int, int]:
    """One frame's (dmac, smac, ethertype), plainly."""
    return (
        int.from_bytes(frame[0:6], "big"),
        int.from_bytes(frame[6:12], "big"),
        int.from_bytes(frame[12:14], "big"),
    )


_SHIFT16, _SHIFT32, _LOW16 = np.uint64(16), np.uint64(32), np.uint64(0xFFFF)
# modes as plain ints: comparing an array with an IntEnum member takes numpy's slow path
_XCONNECT, _L3 = int(L2Mode.XCONNECT), int(L2Mode.L3)


def distinct(values: np.ndarray) -> list[int]:
    """The distinct values of ``values`` (ports, bridge domains), ascending: one
    comparison for the usual vector, whose packets share one (np.unique costs ~8 us)."""
    if len(values) and (values == values[0]).all():
        return [int(values[0])]
    found: list[int] = np.unique(values).tolist()
    return found


def mac_int(mac: bytes) -> int:
    """6 bytes to the integer the nodes use."""
    return int.from_bytes(mac, "big")


class SwitchNode(Node):
    """A node of the switch: it works on the runtime (tables, FIB, pool, metadata, clock)."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__()
        self.rt = rt
        self.meta = rt.meta
        self.tables = rt.tables

    def if_name(self, sw_if_index: int) -> str:
        """An interface's name for a trace line (``?`` once deleted)."""
        sw = self.tables.interfaces.get(sw_if_index)
        return sw.name if sw is not None else "?"

    def l2_trace(self, i: int) -> str:
        """``sw_if_index 1 dst <mac> src <mac> bd_index 1``: what VPP's l2 nodes trace."""
        rx = int(self.meta.rx_if[i])
        bd = int(self.tables.bd[rx]) if rx < len(self.tables.bd) else -1
        where = f" bd_index {bd}" if bd >= 0 else ""
        return f"sw_if_index {rx} {decode.macs(decode.head(self.rt.pool, i))}{where}"


class EthernetInput(SwitchNode):
    """Parse the Ethernet header; choose bridge, xconnect or local handling."""

    name = "ethernet-input"
    errors = {
        "runt": "frame shorter than an Ethernet header",
        "no-l2-or-l3": "interface neither bridged, cross-connected nor addressed",
        "unknown-ethertype": "not ARP or IPv4 on an L3 interface",
    }
    next_nodes = ("l2-learn", "l2-output", "arp-input", "ip4-input", DROP)
    L2_LEARN, L2_OUTPUT, ARP, IP4 = range(4)

    def process(self, idx: np.ndarray) -> None:
        if len(idx) <= SMALL_VECTOR:
            self.route_small(idx)
            return
        pool, meta, t = self.rt.pool, self.meta, self.tables
        if int(pool.length[idx].min()) < MIN_FRAME:
            runt = pool.length[idx] < MIN_FRAME
            self.drop(idx[runt], "runt")
            idx = idx[~runt]
            if not len(idx):
                return
        w0, w1 = pool.header_words(idx)
        meta.dmac[idx] = w0 >> _SHIFT16
        rx = meta.rx_if[idx]
        bridged = t.bridged[rx]
        nexts = self.next
        if bridged.all():
            meta.smac[idx] = source_macs(w0, w1)
            self.graph.enqueue(nexts[self.L2_LEARN], idx)
            return
        meta.etype[idx] = etype = ethertypes(w1)
        r0 = int(rx[0])
        if t.mode[r0] == _L3 and t.has_ip[r0] and (etype == ETH_P_IP).all() and (rx == r0).all():
            self.graph.enqueue(nexts[self.IP4], idx)  # the usual routed vector: no learning,
            return  # so no source MAC to keep
        meta.smac[idx] = source_macs(w0, w1)
        mode = t.mode[rx]
        self.graph.enqueue(nexts[self.L2_LEARN], idx[bridged])
        xc = mode == _XCONNECT
        if xc.any():
            meta.tx_if[idx[xc]] = t.xconnect[rx[xc]]
            self.graph.enqueue(nexts[self.L2_OUTPUT], idx[xc])
        l3 = (mode == _L3) & t.has_ip[rx]
        arp, ip4 = l3 & (etype == ETH_P_ARP), l3 & (etype == ETH_P_IP)
        self.graph.enqueue(nexts[self.ARP], idx[arp])
        self.graph.enqueue(nexts[self.IP4], idx[ip4])
        self.drop(idx[l3 & ~arp & ~ip4], "unknown-ethertype")
        self.drop(idx[(mode == _L3) & ~t.has_ip[rx]], "no-l2-or-l3")

    def format_trace(self, i: int) -> str:
        """``IP4: <src mac> -> <dst mac>``, as VPP's ethernet-input."""
        return decode.ethernet(decode.head(self.rt.pool, i))

    def next_of(self, i: int) -> int:
        """Where buffer ``i`` goes, decided in plain ints (:func:`parse_ethernet_reference`)
        as the vector path decides, its metadata written: l2-learn (bridged), l2-output
        (cross-connected), arp-input or ip4-input (an addressed L3 interface), or
        error-drop (runt, no address, another ethertype; counted)."""
        pool, meta, t, nexts = self.rt.pool, self.meta, self.tables, self.next
        if int(pool.length[i]) < MIN_FRAME:
            return self.dropped("runt")
        dmac, smac, etype = parse_ethernet_reference(pool.data[i, :MIN_FRAME].tobytes())
        meta.dmac[i], meta.smac[i] = dmac, smac
        rx = int(meta.rx_if[i])
        if t.bridged[rx]:
            return nexts[self.L2_LEARN]
        meta.etype[i] = etype
        if t.mode[rx] == _XCONNECT:
            meta.tx_if[i] = t.xconnect[rx]
            return nexts[self.L2_OUTPUT]
        if not t.has_ip[rx]:  # L3 (the one mode left) without an address
            return self.dropped("no-l2-or-l3")
        if etype == ETH_P_ARP:
            return nexts[self.ARP]
        if etype == ETH_P_IP:
            return nexts[self.IP4]
        return self.dropped("unknown-ethertype")


class SpanInput(SwitchNode):
    """Mirror received packets of SPAN sources (rx or both) to their destinations."""

    name = "span-input"
    next_nodes = ("ethernet-input", "l2-output")
    ETHERNET, L2_OUTPUT = range(2)

    def process(self, idx: np.ndarray) -> None:
        mirror(self, idx, self.meta.rx_if[idx], self.next[self.L2_OUTPUT], rx=True)
        self.graph.enqueue(self.next[self.ETHERNET], idx)

    def format_trace(self, i: int) -> str:
        """``span-input: sw_if_index 1 mirrored to memif3/0`` (or ``not mirrored``)."""
        rx = int(self.meta.rx_if[i])
        sw = self.tables.interfaces.get(rx)
        dst = [self.if_name(s.dst) for s in (sw.spans if sw else []) if s.rx]
        return f"span-input: sw_if_index {rx} " + (
            f"mirrored to {', '.join(dst)}" if dst else "not mirrored"
        )


def mirror(node: SwitchNode, idx: np.ndarray, src_if: np.ndarray, to: int, *, rx: bool) -> None:
    """Clone packets of mirrored interfaces to each SPAN destination, through node ``to``
    (l2-output)."""
    rt = node.rt
    for src in distinct(src_if):
        spans = [s for s in rt.tables.interfaces[src].spans if (s.rx if rx else s.tx)]
        if not spans:
            continue
        sel = idx[src_if == src]
        for span in spans:
            clones = rt.pool.clone(sel)
            rt.meta.rx_if[clones] = src
            rt.meta.tx_if[clones] = span.dst
            rt.meta.span_copy[clones] = True
            rt.span_packets += len(clones)
            node.graph.enqueue(to, clones)


class L2Learn(SwitchNode):
    """Learn source MACs of bridged packets into the FIB."""

    name = "l2-learn"
    errors = {"limit": "L2 learn limit exceeded"}  # VPP's l2-learn counter; not a drop
    next_nodes = ("l2-fwd",)
    L2_FWD = 0

    def process(self, idx: np.ndarray) -> None:
        if len(idx) <= SMALL_VECTOR and self._all_known(idx.tolist()):
            self.graph.enqueue(self.next[self.L2_FWD], idx)
            return
        meta, t, rt = self.meta, self.tables, self.rt
        fib = rt.fib
        refused = fib.limit_drops
        rx = meta.rx_if[idx]
        keys = None
        if t.all_learn:
            keys = t.bd_key[rx] | meta.smac[idx]
            fib.learn(keys, rx, rt.now)
        else:
            learn = t.learn[rx]
            if learn.any():
                keys = t.bd_key[rx[learn]] | meta.smac[idx[learn]]
                fib.learn(keys, rx[learn], rt.now)
        if t.ageing and keys is not None:  # a host that keeps sending does not age out
            fib.touch(keys, rt.now)
        if fib.limit_drops != refused:  # counted, and logged naming the interface
            self.error_counts["limit"] += fib.limit_drops - refused
            rt.learn_refused()
        self.graph.enqueue(self.next[self.L2_FWD], idx)

    def format_trace(self, i: int) -> str:
        """``l2-learn: sw_if_index 1 dst .. src .. bd_index 1``, and whether it learns."""
        rx = int(self.meta.rx_if[i])
        learning = bool(self.tables.learn[rx])
        return f"l2-learn: {self.l2_trace(i)}" + ("" if learning else " (learning off)")

    def _all_known(self, packets: list[int]) -> bool:
        """A small vector in plain ints: True when learning its sources changes nothing
        (each port does not learn, or the table has the source there already; ages are
        refreshed as the vector path's touch does); False leaves it to the vector path
        (which refreshes them again, to the same time)."""
        meta, t, rt = self.meta, self.tables, self.rt
        fib = rt.fib
        for i in packets:
            rx = int(meta.rx_if[i])
            if not (t.all_learn or t.learn[rx]):
                continue
            key = int(t.bd_key[rx]) | int(meta.smac[i])
            if not fib.known_at(key, rx):
                return False
            if t.ageing:
                fib.touch_one(key, rt.now)
        return True


class L2Fwd(SwitchNode):
    """Look destination MACs up; unicast to l2-output, the rest to l2-flood."""

    name = "l2-fwd"
    errors = {
        "filtered": "destination is the interface the frame came in on",
        "forward-disabled": "bridge domain has forwarding off",
        "flood-disabled": "broadcast/multicast with flooding off",
        "uu-flood-disabled": "unknown unicast with uu-flood off",
    }
    next_nodes = ("l2-output", "l2-flood", DROP)
    L2_OUTPUT, L2_FLOOD = range(2)

    def process(self, idx: np.ndarray) -> None:
        meta, t = self.meta, self.tables
        if len(idx) <= SMALL_VECTOR:  # the plain decisions, without a dozen numpy calls
            self.route_small(idx)
            return
        rx = meta.rx_if[idx]
        dmac = meta.dmac[idx]
        tx = self.rt.fib.lookup(t.bd_key[rx] | dmac)
        multicast = (dmac >> np.uint64(40)) & np.uint64(1) == 1
        # Fast path: every destination known, unicast and elsewhere.  (The FIB can hold
        # a multicast MAC: learned from a bogus source address, or static.)
        if (
            t.all_forward
            and int(tx.min()) >= 0
            and not np.count_nonzero(tx == rx)
            and not np.count_nonzero(multicast)
        ):
            meta.tx_if[idx] = tx
            self.graph.enqueue(self.next[self.L2_OUTPUT], idx)
            return
        decision = l2_decide(
            rx,
            tx,
            multicast,
            t.forward[rx],
            t.flood[rx],
            t.uu_flood[rx],
        )
        fwd = decision == FWD
        meta.tx_if[idx[fwd]] = tx[fwd]
        self.graph.enqueue(self.next[self.L2_OUTPUT], idx[fwd])
        self.graph.enqueue(self.next[self.L2_FLOOD], idx[decision == FLOOD])
        for code, error in _L2_ERRORS.items():
            self.drop(idx[decision == code], error)

    def format_trace(self, i: int) -> str:
        """``l2-fwd: sw_if_index 1 dst .. src .. bd_index 1`` and the decision it is
        about to take (:func:`l2_decide_reference`, the vector path's twin): forward to
        an interface, flood (and why), or drop (and why)."""
        meta, t = self.meta, self.tables
        rx, dmac = int(meta.rx_if[i]), int(meta.dmac[i])
        tx = self.rt.fib.lookup_one(int(t.bd_key[rx]) | dmac)
        multicast = bool(dmac >> 40 & 1)
        decision = l2_decide_reference(
            rx, tx, multicast, bool(t.forward[rx]), bool(t.flood[rx]), bool(t.uu_flood[rx])
        )
        if decision == FWD:
            what = f"forward to {self.if_name(tx)} (sw_if_index {tx})"
        elif decision == FLOOD:
            what = "flood: " + ("broadcast/multicast" if multicast else "unknown unicast")
        else:
            error = _L2_ERRORS[decision]
            what = f"drop: {error} ({self.errors[error]})"
        return f"l2-fwd: {self.l2_trace(i)}\n{what}"

    def next_of(self, i: int) -> int:
        """Where buffer ``i`` goes by :func:`l2_decide_reference`'s decision in plain
        ints, as the vector path's: l2-output (its tx interface written), l2-flood, or
        error-drop (counted)."""
        meta, t = self.meta, self.tables
        rx, dmac = int(meta.rx_if[i]), int(meta.dmac[i])
        tx = self.rt.fib.lookup_one(int(t.bd_key[rx]) | dmac)
        decision = l2_decide_reference(
            rx, tx, bool(dmac >> 40 & 1), bool(t.forward[rx]), bool(t.flood[rx]),
            bool(t.uu_flood[rx]),
        )  # fmt: skip
        if decision == FWD:
            meta.tx_if[i] = tx
            return self.next[self.L2_OUTPUT]
        if decision == FLOOD:
            return self.next[self.L2_FLOOD]
        return self.dropped(_L2_ERRORS[decision])


FWD, FLOOD, FILTERED, NO_FORWARD, NO_FLOOD, NO_UU_FLOOD = range(6)
_L2_ERRORS = {
    FILTERED: "filtered",
    NO_FORWARD: "forward-disabled",
    NO_FLOOD: "flood-disabled",
    NO_UU_FLOOD: "uu-flood-disabled",
}


def l2_decide(
    rx: np.ndarray,
    tx: np.ndarray,
    multicast: np.ndarray,
    forward: np.ndarray,
    flood: np.ndarray,
    uu_flood: np.ndarray,
) -> np.ndarray:
    """The l2-fwd decision per packet (vectorized twin of :func:`l2_decide_reference`)."""
    out = np.full(len(rx), FWD, np.int8)
    unknown = ~multicast & (tx < 0)
    out[unknown] = np.where(uu_flood[unknown], FLOOD, NO_UU_FLOOD)
    out[multicast] = np.where(flood[multicast], FLOOD, NO_FLOOD)
    out[~multicast & ~unknown & (tx == rx)] = FILTERED
    out[~forward] = NO_FORWARD
    return out


def l2_decide_reference(
    rx: int, tx: int, multicast: bool, forward: bool, flood: bool, uu_flood: bool
) -> int:
    """One packet's l2-fwd decision, plainly."""
    if not forward:
        return NO_FORWARD
    if multicast:
        return FLOOD if flood else NO_FLOOD
    if tx < 0:
        return FLOOD if uu_flood else NO_UU_FLOOD
    if tx == rx:
        return FILTERED
    return FWD


def flood_targets_reference(members: Sequence[int], usable: Collection[int], rx: int) -> list[int]:
    """Where l2-flood sends a packet from ``rx``: every usable member but ``rx``, in order."""
    return [p for p in members if p in usable and p != rx]


def l2_vector_reference(
    tables: Tables,
    fib: dict[int, int],
    static: set[int],
    limit: int,
    packets: Sequence[tuple[int, bytes]],
) -> tuple[list[tuple[str, list[int]]], int]:
    """ethernet-input .. l2-output for one vector of ``(rx, frame)``, packet by packet.

    The oracle for the vector nodes, reading the configuration objects (not the numpy
    mirrors).  ``fib`` (key -> interface, static entries included) is updated in
    place.  As in the graph (and in VPP, per frame), l2-learn sees the whole vector
    before l2-fwd looks anything up: the sources of every packet of the vector are
    learned first (the last occurrence of a key wins), then each packet is forwarded.
    Per packet the result is ``("xconnect" | "forward" | "flood", [tx interfaces])``
    or ``(error name, [])``; the second value is the learn-limit drops.
    """
    usable = {i for i, sw in tables.interfaces.items() if sw.admin_up and sw.link_up}
    learn_keys, learn_ifs = [], []
    for rx, frame in packets:
        sw = tables.interfaces[rx]
        bd_id = sw.bd if sw.mode is L2Mode.BRIDGE else None
        if len(frame) >= MIN_FRAME and bd_id is not None and tables.bds[bd_id].learn:
            learn_keys.append(int(fib_key(bd_id, parse_ethernet_reference(frame)[1])))
            learn_ifs.append(rx)
    new, drops = reference_learn_limited(fib, static, learn_keys, learn_ifs, limit)
    fib.clear()
    fib.update(new)
    out: list[tuple[str, list[int]]] = []
    for rx, frame in packets:
        sw = tables.interfaces[rx]
        if len(frame) < MIN_FRAME:
            out.append(("runt", []))
        elif sw.mode is L2Mode.XCONNECT and sw.xconnect is not None:
            ok = sw.xconnect in usable
            out.append(("xconnect", [sw.xconnect]) if ok else ("interface-down", []))
        elif sw.mode is not L2Mode.BRIDGE or sw.bd is None:
            out.append(("no-l2-or-l3", []))  # (no addresses here: nothing for arp/ip4)
        else:
            bd = tables.bds[sw.bd]
            dmac = parse_ethernet_reference(frame)[0]
            tx = fib.get(int(fib_key(sw.bd, dmac)), -1)
            multicast = bool(dmac >> 40 & 1)
            d = l2_decide_reference(rx, tx, multicast, bd.forward, bd.flood, bd.uu_flood)
            if d == FWD:
                out.append(("forward", [tx]) if tx in usable else ("interface-down", []))
            elif d == FLOOD:
                targets = flood_targets_reference(bd.members, usable, rx)
                out.append(("flood", targets) if targets else ("no-members", []))
            else:
                out.append((_L2_ERRORS[d], []))
    return out, drops


class L2Flood(SwitchNode):
    """Replicate to every other port of the bridge domain (clones but for the last)."""

    name = "l2-flood"
    errors = {"no-members": "no other port in the bridge domain to flood to"}
    next_nodes = ("l2-output", DROP)
    L2_OUTPUT = 0

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self._ports: dict[int, list[int]] = {}  # bd -> usable members, in order
        self._ports_from: tuple[object, object] = (None, None)  # the tables' arrays they are of

    def flood_ports(self, bd: int) -> list[int]:
        """The usable members of bridge domain ``bd`` in order, kept until the tables are
        refreshed (a port added, removed, up or down) instead of looked at per vector."""
        t = self.tables
        if self._ports_from[0] is not t.flood_ports or self._ports_from[1] is not t.usable:
            usable = t.usable.tolist()
            self._ports = {
                b: [p for p in members.tolist() if usable[p]]
                for b, members in t.flood_ports.items()
            }
            self._ports_from = (t.flood_ports, t.usable)
        return self._ports.get(bd, [])

    def process(self, idx: np.ndarray) -> None:
        meta, pool = self.meta, self.rt.pool
        rx = meta.rx_if[idx]
        bds = self.tables.bd[rx]
        out = self.next[self.L2_OUTPUT]
        domains = distinct(bds)
        for b in domains:
            sel, sel_rx = (idx, rx) if len(domains) == 1 else (idx[bds == b], rx[bds == b])
            ports = self.flood_ports(b)
            if len(sel) == 1 or (sel_rx == sel_rx[0]).all():  # one receive port: one target list
                r = int(sel_rx[0])
                targets = [p for p in ports if p != r]
                if not targets:
                    self.drop(sel, "no-members")
                    continue
                for port in targets[:-1]:
                    copies = pool.clone(sel)
                    meta.rx_if[copies] = r
                    meta.tx_if[copies] = port
                    self.graph.enqueue(out, copies)
                meta.tx_if[sel] = targets[-1]  # the originals go to the last port
                self.graph.enqueue(out, sel)
                continue
            masks = [(p, sel_rx != p) for p in ports]
            masks = [(p, m) for p, m in masks if m.any()]
            reached = np.zeros(len(sel), bool)
            for j, (port, mask) in enumerate(masks):
                reached |= mask
                if j == len(masks) - 1:
                    copies = sel[mask]  # the originals go to the last port
                    spare = sel[~mask & reached]  # cloned to earlier ports only
                    pool.free(spare)
                else:
                    copies = pool.clone(sel[mask])
                    meta.rx_if[copies] = sel_rx[mask][: len(copies)]
                meta.tx_if[copies] = port
                self.graph.enqueue(out, copies)
            self.drop(sel[~reached], "no-members")

    def format_trace(self, i: int) -> str:
        """``l2-flood: sw_if_index 1 bd_index 1`` and the ports it replicates to."""
        rx = int(self.meta.rx_if[i])
        targets = [p for p in self.flood_ports(int(self.tables.bd[rx])) if p != rx]
        to = ", ".join(self.if_name(p) for p in targets) if targets else "none: drop (no-members)"
        return f"l2-flood: {self.l2_trace(i)}\nto {to}"


class L2Output(SwitchNode):
    """Hand each packet to its tx interface's output node (``meta.tx_if``).

    The interfaces' output nodes are its next nodes too, added with each interface
    (``Graph.add_next``); it dispatches by the graph ids in ``Tables.output``.
    """

    name = "l2-output"
    errors = {"interface-down": "tx interface admin-down or not connected"}
    next_nodes = (DROP,)

    def process(self, idx: np.ndarray) -> None:
        t = self.tables
        if len(idx) <= SMALL_VECTOR:  # plainly: each packet's interface's output
            self.route_small(idx)
            return
        tx = self.meta.tx_if[idx]
        ok = t.usable[tx]
        if not ok.all():
            self.drop(idx[~ok], "interface-down")
            idx, tx = idx[ok], tx[ok]
        self.graph.dispatch(idx, t.output[tx])

    def format_trace(self, i: int) -> str:
        """``l2-output: sw_if_index 2 (memif2/0) dst .. src ..``, or why it drops."""
        tx = int(self.meta.tx_if[i])
        frame = decode.macs(decode.head(self.rt.pool, i))
        down = "" if self.tables.usable[tx] else "\ndrop: interface-down"
        return f"l2-output: sw_if_index {tx} ({self.if_name(tx)}) {frame}{down}"

    def next_of(self, i: int) -> int:
        """Buffer ``i``'s tx interface's output node, or error-drop (counted) when that
        interface is down."""
        t = self.tables
        tx = int(self.meta.tx_if[i])
        return int(t.output[tx]) if t.usable[tx] else self.dropped("interface-down")


class CountingDrop(ErrorDrop):
    """error-drop that also counts ``drops`` on each packet's receive interface (VPP's).

    A lost SPAN copy is not the source port's drop (the original went on): it shows
    in ``show errors`` and, for a full ring, in the destination's tx errors.
    """

    def __init__(self, rt: Runtime) -> None:
        super().__init__()
        self.rt = rt

    def format_trace(self, i: int) -> str:
        """``rx:memif1/0`` (the receiving interface, as VPP's), then who dropped it and why."""
        sw = self.rt.tables.interfaces.get(int(self.rt.meta.rx_if[i]))
        return f"rx:{sw.name if sw is not None else '?'}\n{super().format_trace(i)}"

    def process(self, idx: np.ndarray) -> None:
        interfaces = self.rt.tables.interfaces
        meta = self.rt.meta
        rx = meta.rx_if[idx[~meta.span_copy[idx]]]
        if len(rx) and (rx == rx[0]).all():  # the usual vector: one port's
            counted = [(int(rx[0]), len(rx))]
        else:
            ports, counts = np.unique(rx, return_counts=True)
            counted = list(zip(ports.tolist(), counts.tolist(), strict=True))
        for i, n in counted:
            sw = interfaces.get(i)
            if sw is not None:
                sw.counters.drops += n
        super().process(idx)
