"""``show`` commands: interfaces, bridge domains, the L2 FIB, errors, runtime, SPAN, trace.

Each handler returns a :class:`~.commands.Reply` whose ``output`` follows VPP's layout and
whose ``data`` is the same facts as JSON-ready lists and dicts (what ``--json`` prints).
``show memif`` and ``show hardware-interfaces`` are in :mod:`.show_memif`.

A show command runs inside the switch's main loop, so its cost must not follow state a
peer controls: tables a peer can fill (the MAC table, neighbours, traces, descriptor
rings) are shown up to :data:`MAX_ROWS` rows, with a ``... truncated (N more)`` line,
and only the rows shown are ever visited.
"""

from __future__ import annotations

import heapq
import itertools
import platform
import textwrap
import time
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import numpy as np

from .. import __version__
from ..config import format_mac
from ..packet import ip4_str
from ..vswitch.tables import L2Mode, SwInterface
from .commands import Context, Mark, Reply, bridge_domain, command
from .parse import Args, CliError

T = TypeVar("T")
MAX_ROWS = 1000
"""Rows (entries, descriptors, traced packets) one show command prints at most."""


def first_rows(items: Iterable[T], total: int, limit: int = MAX_ROWS) -> tuple[list[T], str]:
    """At most ``limit`` of ``items`` (visiting no more), and the line saying what was
    left out (empty when nothing was)."""
    shown = list(itertools.islice(items, limit))
    return shown, truncated(len(shown), total)


def truncated(shown: int, total: int) -> str:
    """``... truncated (N more)`` when ``total`` exceeds ``shown``, else empty."""
    return f"... truncated ({total - shown} more)" if total > shown else ""


def _with_tail(text: str, tail: str) -> str:
    return f"{text}\n{tail}" if tail else text


COUNTERS = [
    ("rx packets", "rx_packets"),
    ("rx bytes", "rx_bytes"),
    ("tx packets", "tx_packets"),
    ("tx bytes", "tx_bytes"),
    ("drops", "drops"),
    ("tx-error", "tx_errors"),
]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: str = "") -> str:
    """A text table; columns whose index is in ``right`` (a string of digits) align right."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        parts = [
            c.rjust(w) if str(i) in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def selected_interfaces(ctx: Context, args: Args) -> list[SwInterface]:
    """The interfaces named in ``args`` (all when none), by sw_if_index."""
    names = args.rest()
    if names:
        return [ctx.switch.interface(n) for n in names]
    return [ctx.switch.tables.interfaces[i] for i in sorted(ctx.switch.tables.interfaces)]


def l2_mode(sw: SwInterface) -> str:
    """``l3``, ``bridge`` or ``xconnect``."""
    return {L2Mode.L3: "l3", L2Mode.BRIDGE: "bridge", L2Mode.XCONNECT: "xconnect"}[sw.mode]


def interface_data(ctx: Context, sw: SwInterface) -> dict[str, Any]:
    """One interface's facts and counters (the ``show interface --json`` contract)."""
    c = sw.counters
    tables = ctx.switch.tables
    return {
        "name": sw.name,
        "sw_if_index": sw.sw_if_index,
        "state": sw.state,
        "admin_up": sw.admin_up,
        "link_up": sw.link_up,
        "mac": format_mac(sw.mac),
        "mtu": sw.mtu,  # the packet (L3) MTU
        "mtu_ip4": sw.ip4_mtu,  # 0: the packet MTU
        "mode": l2_mode(sw),
        "bd_id": sw.bd,
        "bvi": sw.bvi,
        "xconnect": tables.interfaces[sw.xconnect].name
        if sw.xconnect in tables.interfaces
        else None,
        "ip4": [f"{ip4_str(a)}/{p}" for a, p in sw.ip4],
        "rx_packets": c.rx_packets,
        "rx_bytes": c.rx_bytes,
        "tx_packets": c.tx_packets,
        "tx_bytes": c.tx_bytes,
        "drops": c.drops,
        "tx_errors": c.tx_errors,
        # pool buffers the port holds (zero-copy: posted and in flight; at most the quota)
        "buffers_held": sw.port.held,
    }


@command("show interface", "[<interface> ...]", "interfaces with state and counters")
def show_interface(ctx: Context, args: Args) -> Reply:
    """VPP's ``show interface`` table: the State column is the admin state, as VPP's
    (the link is in ``show hardware-interfaces``); ``--json`` has ``admin_up``, ``link_up``
    and ``state`` (``up`` when both are)."""
    ifs = selected_interfaces(ctx, args)
    data = [interface_data(ctx, sw) for sw in ifs]
    rows = []
    for d in data:
        for i, (label, key) in enumerate(COUNTERS):
            admin = "up" if d["admin_up"] else "down"  # VPP's State: admin (link: show hardware)
            mtus = f"{d['mtu']}/{d['mtu_ip4']}/0/0"  # VPP's L3/IP4/IP6/MPLS (no IPv6, MPLS)
            head = [d["name"], d["sw_if_index"], admin, mtus] if i == 0 else [""] * 4
            rows.append([*head, label, d[key]])
    headers = ["Name", "Idx", "State", "MTU (L3/IP4/IP6/MPLS)", "Counter", "Count"]
    return Reply(output=table(headers, rows, right="135") if rows else "no interfaces", data=data)


@command("show interface address", "[<interface> ...]", "L2/L3 configuration of interfaces")
def show_interface_address(ctx: Context, args: Args) -> Reply:
    """VPP's ``show interface address``."""
    data = [interface_data(ctx, sw) for sw in selected_interfaces(ctx, args)]
    lines = []
    for d in data:
        lines.append(f"{d['name']} ({'up' if d['admin_up'] else 'dn'}):")
        if d["mode"] == "bridge":
            lines.append(f"  L2 bridge bd-id {d['bd_id']}{' bvi' if d['bvi'] else ''}")
        elif d["mode"] == "xconnect" and d["xconnect"] is not None:
            lines.append(f"  L2 xconnect {d['xconnect']}")
        lines += [f"  L3 {a}" for a in d["ip4"]]
    return Reply(output="\n".join(lines) or "no interfaces", data=data)


# ---------------------------------------------------------------------- bridge domains
def _onoff(flag: bool) -> str:
    return "on" if flag else "off"


def _bvi_of(ctx: Context, bd_id: int) -> SwInterface | None:
    tables = ctx.switch.tables
    index = tables.bd_bvi.get(bd_id)
    return None if index is None else tables.interfaces[index]


@command("show bridge-domain", "[<n> [detail] | detail]", "bridge domains (detail: members)")
def show_bridge_domain(ctx: Context, args: Args) -> Reply:
    """VPP's ``show bridge-domain``; ``detail`` lists members with their counters."""
    sw = ctx.switch
    bd_id = None
    first = args.peek()
    if first is not None and first[:1].isdigit():
        bd_id = bridge_domain(args)
        if bd_id not in sw.tables.bds:
            raise CliError(f"no bridge domain {bd_id}")
    detail = args.try_keyword(["detail"]) is not None
    args.end(["detail"])
    ids = [bd_id] if bd_id is not None else sorted(sw.tables.bds)
    learned = sw.fib.learned_bd
    data, blocks = [], []
    for b in ids:
        bd = sw.tables.bds[b]
        members = [sw.tables.interfaces[i] for i in bd.members if i in sw.tables.interfaces]
        member_data = [{**interface_data(ctx, m), "shg": 0} for m in members]
        d = {
            "bd_id": bd.id,
            "learn": bd.learn,
            "forward": bd.forward,
            "flood": bd.flood,
            "uu_flood": bd.uu_flood,
            "mac_age": bd.mac_age,
            "learned": learned.get(bd.id, 0),
            "learn_limit": sw.fib.bd_limit.get(bd.id),
            "bvi": bvi.name if (bvi := _bvi_of(ctx, bd.id)) else None,
            "members": member_data,
        }
        data.append(d)
        head = [
            "BD-ID",
            "Age(min)",
            "Learning",
            "U-Forwrd",
            "UU-Flood",
            "Flooding",
            "Learn-co",
            "Members",
            "BVI-Intf",
        ]
        row = [
            bd.id,
            bd.mac_age or "off",
            _onoff(bd.learn),
            _onoff(bd.forward),
            "flood" if bd.uu_flood else "drop",
            _onoff(bd.flood),
            d["learned"],
            len(members),
            d["bvi"] or "N/A",
        ]
        block = table(head, [row], right="0167")
        if detail:
            counters = [c.replace(" ", "-") for c, _ in COUNTERS]
            mhead = ["Interface", "If-idx", "State", "BVI", *counters]
            mrows = [
                [m["name"], m["sw_if_index"], m["state"], "*" if m["bvi"] else "-"]
                + [m[k] for _, k in COUNTERS]
                for m in member_data
            ]
            block += "\n\n" + (table(mhead, mrows, right="1456789") if mrows else "  no members")
        blocks.append(block)
    if not blocks:
        return Reply(output="no bridge domains", data=data)
    return Reply(output="\n\n".join(blocks), data=data)


@command("show l2fib", "[verbose]", "the MAC table (count; verbose: the entries)")
def show_l2fib(ctx: Context, args: Args) -> Reply:
    """VPP's ``show l2fib``: a count, or the entries (up to MAX_ROWS) with ``verbose``."""
    verbose = args.try_keyword(["verbose"]) is not None
    args.end(["verbose"])
    sw = ctx.switch
    data, rows = [], []
    entries, tail = first_rows(sw.fib.entries.items(), len(sw.fib))
    for key, e in sorted(entries):
        bd, mac = key >> 48, key & 0xFFFFFFFFFFFF
        iface = sw.tables.interfaces.get(e.sw_if_index)
        bdo = sw.tables.bds.get(bd)
        age = None
        if bdo is not None and bdo.mac_age and not e.static:
            age = round((sw.now - e.last_seen) / 60.0, 1)
        mac_s = format_mac(mac.to_bytes(6, "big"))
        name = iface.name if iface else f"sw_if_index {e.sw_if_index}"
        bvi = iface is not None and iface.bvi and e.static and iface.mac == mac.to_bytes(6, "big")
        data.append(
            {
                "mac": mac_s,
                "bd_id": bd,
                "sw_if_index": e.sw_if_index,
                "interface": name,
                "static": e.static,
                "bvi": bvi,
                "age_minutes": age,
            }
        )
        rows.append(
            [mac_s, bd, e.sw_if_index, "no" if age is None else age]
            + ["*" if e.static else "-", "*" if bvi else "-", name]
        )
    summary = f"{len(sw.fib)} l2fib entries"
    if not verbose:
        return Reply(output=summary, data=data)
    head = ["Mac-Address", "BD-Idx", "If-Idx", "Age(min)", "static", "bvi", "Interface-Name"]
    listing = _with_tail(table(head, rows, right="12"), tail) + "\n" if rows else ""
    return Reply(output=listing + summary, data=data)


# ---------------------------------------------------------------------- errors, runtime
@command("show errors", "", "per-node error counters")
def show_errors(ctx: Context, args: Args) -> Reply:
    """VPP's ``show errors``: Count, Node, Reason for every non-zero counter."""
    args.end()
    data, rows = [], []
    for node in ctx.switch.graph.nodes:
        for name, count in sorted(node.error_counts.items()):
            if not count:
                continue
            reason = node.errors.get(name, name)
            data.append({"count": count, "node": node.node_name, "error": name, "reason": reason})
            rows.append([count, node.node_name, reason])
    if not rows:
        return Reply(output="no errors", data=data)
    return Reply(output=table(["Count", "Node", "Reason"], rows, right="0"), data=data)


def _cpu_since(mark: Mark, now: Mark) -> dict[str, float]:
    wall = max(now.wall - mark.wall, 1e-9)
    cpu = now.cpu - mark.cpu
    busy = (now.busy_ns - mark.busy_ns) / 1e9
    return {
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "cpu_percent": round(100.0 * cpu / wall, 2),
        "busy_seconds": round(busy, 3),
        "busy_percent": round(100.0 * busy / wall, 2),
    }


@command("show runtime", "", "per-node calls, vectors and clocks, and the switch's CPU use")
def show_runtime(ctx: Context, args: Args) -> Reply:
    """VPP's ``show runtime`` plus the process's CPU use since start and since clear."""
    args.end()
    now = Mark.now(ctx.switch)
    mhz = ctx.cpu_mhz
    since_start = _cpu_since(ctx.started, now)
    since_clear = _cpu_since(ctx.runtime_mark, now)
    nodes, rows = [], []
    for node in ctx.switch.graph.nodes:
        if node.name == "(deleted)":
            continue
        per_call = node.vectors / node.calls if node.calls else 0.0
        clocks = node.ns * mhz / 1000.0 / node.vectors if node.vectors else 0.0
        nodes.append(
            {
                "name": node.node_name,
                "calls": node.calls,
                "vectors": node.vectors,
                "vectors_per_call": round(per_call, 2),
                "clocks_per_packet": round(clocks, 1),
                "ns": node.ns,
            }
        )
        if node.calls:
            rows.append(
                [node.node_name, node.calls, node.vectors, f"{per_call:.2f}", f"{clocks:.2e}"]
            )

    def line(what: str, d: dict[str, float]) -> str:
        return (
            f"{what}: CPU {d['cpu_percent']:.1f}% ({d['cpu_seconds']:.2f} s in "
            f"{d['wall_seconds']:.1f} s), busy {d['busy_percent']:.1f}% "
            f"({d['busy_seconds']:.3f} s forwarding)"
        )

    text = [
        f"Time {since_start['wall_seconds']:.1f}, clocks at {mhz:g} MHz ({ctx.cpu_mhz_source})",
        line("  since start", since_start),
        line("  since clear runtime", since_clear),
    ]
    head = ["Name", "Calls", "Vectors", "Vectors/Call", "Clocks/packet"]
    text.append(table(head, rows, right="1234") if rows else "no node has run")
    data = {
        "cpu_mhz": mhz,
        "cpu_mhz_source": ctx.cpu_mhz_source,
        "since_start": since_start,
        "since_clear": since_clear,
        "busy_ns": ctx.switch.busy_ns,
        "nodes": nodes,
    }
    return Reply(output="\n".join(text), data=data)


@command("show vlib graph", "[<node>]", "graph nodes with their next and previous nodes")
def show_vlib_graph(ctx: Context, args: Args) -> Reply:
    """VPP's ``show vlib graph``: each node's next nodes (with their next index) and the
    nodes that hand it packets."""
    edges = ctx.switch.graph.edges()
    names = list(edges)
    if args:
        names = [args.keyword(names, "node")]
        args.end()
    previous: dict[str, list[str]] = {name: [] for name in edges}
    for name, nexts in edges.items():
        for n in nexts:
            previous[n].append(name)
    head = "".join(f"{h:^{GRAPH_COLUMN}}" for h in ("Name", "Next", "Previous"))
    data, lines = [], [head.rstrip()]
    for name in names:
        nexts = [f"{n} [{k}]" for k, n in enumerate(edges[name])]
        prev = previous[name]
        data.append({"name": name, "next": edges[name], "previous": prev})
        for k in range(max(1, len(nexts), len(prev))):
            row = [name if k == 0 else "", *(c[k] if k < len(c) else "" for c in (nexts, prev))]
            lines.append("".join(f"{c:<{GRAPH_COLUMN}}" for c in row).rstrip())
    return Reply(output="\n".join(lines), data=data)


GRAPH_COLUMN = 26  # VPP's column width in show vlib graph


# ---------------------------------------------------------------------- span, neighbors
@command("show span", "", "SPAN (port mirroring) sessions")
def show_span(ctx: Context, args: Args) -> Reply:
    """VPP's ``show interface span``."""
    args.end()
    tables = ctx.switch.tables
    data, rows = [], []
    for i in sorted(tables.interfaces):
        src = tables.interfaces[i]
        for s in src.spans:
            dst = tables.interfaces.get(s.dst)
            state = "both" if s.rx and s.tx else "rx" if s.rx else "tx"
            dev, l2 = ("none", state) if s.l2 else (state, "none")
            name = dst.name if dst else str(s.dst)
            data.append(
                {"source": src.name, "destination": name, "rx": s.rx, "tx": s.tx, "l2": s.l2}
            )
            rows.append([src.name, name, f"({dev:>6})", f"({l2:>6})"])
    if not rows:
        return Reply(output="no SPAN sessions", data=data)
    text = table(["Source", "Destination", "Device", "L2"], rows)
    return Reply(output=f"{text}\nmirrored packets: {ctx.switch.span_packets}", data=data)


# ---------------------------------------------------------------------- trace, version
@command("show trace", "[max <n>]", "packets traced since 'trace add' (max: the first n)")
def show_trace(ctx: Context, args: Args) -> Reply:
    """VPP's ``show trace [max N]``: each traced packet's path through the graph (at most
    N packets, and never more than MAX_ROWS)."""
    limit = MAX_ROWS
    if args.try_keyword(["max"]):
        limit = args.integer("max", 1, MAX_ROWS)
    args.end(["max"])
    graph = ctx.switch.graph
    first = heapq.nsmallest(limit, graph.traces)  # bounded by 'trace add', the operator's
    traces = [(k, graph.traces[k]) for k in first]
    tail = truncated(len(traces), len(graph.traces))
    data = [{"packet": k, "lines": list(v), "nodes": _trace_nodes(v)} for k, v in sorted(traces)]
    if not data:
        return Reply(output="No packets in trace buffer", data=data)
    out = ["------------------- Start of thread 0 memifd -------------------"]
    for k, lines in sorted(traces):
        out += [f"Packet {k}", "", *lines, ""]
    return Reply(output=_with_tail("\n".join(out).rstrip(), tail), data=data)


def _trace_nodes(lines: list[str]) -> list[dict[str, str]]:
    """A packet's trace lines as ``{"time", "node", "trace"}`` (``--json``): each line is
    ``HH:MM:SS:micro: <node>`` and the node's indented decoding."""
    out = []
    for line in lines:
        head, _, text = line.partition("\n")
        when, _, node = head.partition(": ")
        out.append({"time": when, "node": node, "trace": textwrap.dedent(text)})
    return out


@command("show interface rx-placement", "", "receive queues, their input node and rx-mode")
def show_rx_placement(ctx: Context, args: Args) -> Reply:
    """VPP's ``show interface rx-placement``: one thread, each queue under its input node."""
    args.end()
    switch = ctx.switch
    loop = switch.loop
    data = []
    node_of = {node.kind: node.node_name for node in loop.inputs}
    for sw in sorted(switch.tables.interfaces.values(), key=lambda s: s.sw_if_index):
        node = node_of.get(sw.port.kind, f"{sw.port.kind}-input")
        for qid, q in enumerate(sw.port.rx_queues()):
            served = loop.events.rx_mode(q) if q in loop.events.rx_queues else None
            mode = (served or loop.rx_mode_of(sw.sw_if_index, qid)).value
            data.append({"interface": sw.name, "queue": qid, "node": node, "mode": mode})
    if not data:
        return Reply(output="no receive queues (no port is connected)", data=data)
    out = ["Thread 0 (memifd main):"]
    for node, rows in itertools.groupby(data, key=lambda d: d["node"]):
        out.append(f"  node {node}:")
        out += [f"    {d['interface']} queue {d['queue']} ({d['mode']})" for d in rows]
    return Reply(output="\n".join(out), data=data)


@command("show version", "", "memifd version and platform")
def show_version(ctx: Context, args: Args) -> Reply:
    """Versions, start time and uptime."""
    args.end()
    up = time.monotonic() - ctx.started.wall
    data = {
        "version": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ctx.started_at)),
        "uptime_seconds": round(up, 1),
    }
    text = (
        f"memifd v{__version__} (Python {data['python']}, numpy {data['numpy']}, "
        f"{platform.machine()}), started {data['started']}, up {up:.0f} s"
    )
    return Reply(output=text, data=data)
