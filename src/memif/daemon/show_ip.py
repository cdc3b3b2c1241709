"""IPv4 ``show`` commands: ``show ip fib [<prefix>]`` and ``show ip neighbors``, VPP's layout.

Both visit at most :data:`~.show.MAX_ROWS` entries (the neighbour table fills from peers'
replies; the FIB may hold a million routes): the lowest prefixes are shown and a
``... truncated (N more)`` line says what was left out.
"""

from __future__ import annotations

import heapq
import ipaddress
from typing import Any

from ..config import format_mac
from ..packet import ip4_str
from ..vswitch import decode
from ..vswitch.adjacency import AdjKind, Next
from ..vswitch.ip4_route import prefix_str
from .commands import Context, Reply, command
from .parse import Args, CliError
from .show import MAX_ROWS, table, truncated


def _name(ctx: Context, sw_if_index: int) -> str:
    sw = ctx.switch.tables.interfaces.get(sw_if_index)
    return sw.name if sw is not None else f"sw_if_index {sw_if_index}"


def _route(ctx: Context, prefix: int, length: int) -> dict[str, Any] | None:
    """One route's facts: prefix, source, adjacency and what it does."""
    rt = ctx.switch.runtime
    best = rt.ip4_routes.best(prefix, length)
    if best is None:
        return None
    source, path = best
    adj = rt.adjacencies.adjs[path.adj]
    d: dict[str, Any] = {
        "prefix": prefix_str(prefix, length),
        "source": source.name.lower(),
        "adj_index": path.adj,
        "type": {
            AdjKind.DROP: "drop",
            AdjKind.RECEIVE: "receive",
            AdjKind.GLEAN: "glean",
            AdjKind.NEIGHBOR: "neighbor",
        }[adj.kind],
        "interface": None,
        "next_hop": None,
        "mac": None,
    }
    if adj.kind is AdjKind.RECEIVE:
        d["interface"] = _name(ctx, path.owner)
    elif adj.kind is not AdjKind.DROP:
        d["interface"] = _name(ctx, adj.sw_if_index)
    if adj.next_hop is not None:
        d["next_hop"] = ip4_str(adj.next_hop)
        d["mac"] = format_mac(adj.mac) if adj.mac else None
    d["resolved"] = bool(rt.adjacencies.next[path.adj] == Next.REWRITE)
    length = int(rt.adjacencies.l2_len[path.adj])
    d["rewrite"] = rt.adjacencies.rewrite[path.adj, :length].tobytes().hex()
    return d


#: VPP's dpo type number shown before each forwarding object: ``[@N]``
_DPO_ID = {"drop": 0, "receive": 2, "glean": 4}


def _describe(ctx: Context, d: dict[str, Any]) -> str:
    """The forwarding object's line, in the words ``show trace`` uses for it
    (:func:`memif.vswitch.decode.adjacency`): dpo-drop, dpo-receive, ipv4-glean, arp-ipv4
    (a next hop not resolved yet), ipv4 via (its rewrite in hex)."""
    rt = ctx.switch.runtime
    line = decode.adjacency(rt.adjacencies, d["adj_index"], lambda i: _name(ctx, i))
    kind = d["type"]
    if kind == "receive":
        line += f": {d['prefix'].split('/')[0]} on {d['interface']}"
    dpo = _DPO_ID.get(kind, 5 if d["resolved"] else 3)
    return f"[@{dpo}]: {line}"


@command(
    "show ip fib",
    "[<a.b.c.d>[/<len>]]",
    "IPv4 routes (an address: the route it matches; a prefix: that route)",
)
def show_ip_fib(ctx: Context, args: Args) -> Reply:
    """VPP's ``show ip fib``: each prefix with its source and the adjacency it uses."""
    rt = ctx.switch.runtime
    routes = rt.ip4_routes
    keys: list[tuple[int, int]]
    tail, asked = "", bool(args)
    if asked:
        word = args.take("address or prefix")
        args.end()
        try:
            net = ipaddress.IPv4Network(word, strict=False)
        except ValueError:
            raise CliError(
                f"bad prefix '{word}' for 'show ip fib': expected a.b.c.d[/len]"
            ) from None
        if "/" in word:
            keys = [(int(net.network_address), net.prefixlen)]
        else:
            hit = rt.ip4_fib.covering(int(net.network_address))
            keys = [(hit[0], hit[1])] if hit else []
    else:
        keys = heapq.nsmallest(MAX_ROWS, routes.paths)
        tail = truncated(len(keys), len(routes.paths))
    data = [d for d in (_route(ctx, p, n) for p, n in keys) if d is not None]
    if asked and not data:
        return Reply(output="no route", data=data)
    lines = [f"ipv4-VRF:0, fib_index:0, routes:{len(rt.ip4_fib)}"]
    for d in data:
        lines += [
            d["prefix"],
            "  unicast-ip4-chain",
            f"  [@0]: dpo-load-balance: [proto:ip4 index:{d['adj_index']} buckets:1] "
            f"src:{d['source']}",
            f"    [0] {_describe(ctx, d)}",
        ]
    if tail:
        lines.append(tail)
    return Reply(output="\n".join(lines), data=data)


@command(
    "show ip neighbors",
    "[<interface>]",
    "IPv4 neighbours: learned from replies to the switch's ARP requests, or set",
)
def show_neighbors(ctx: Context, args: Args) -> Reply:
    """VPP's ``show ip neighbors``: Time (s since start), IP, Flags (S static, D dynamic),
    Ethernet, Interface; up to MAX_ROWS entries, the lowest interface and address first."""
    only = ctx.interface(args).sw_if_index if args else None
    args.end()
    sw, neighbors = ctx.switch, ctx.switch.neighbors
    items = neighbors.entries.items()
    if only is not None:  # (the table is bounded: a pass over it is)
        items = {k: e for k, e in items if k[0] == only}.items()
    entries = heapq.nsmallest(MAX_ROWS, items)
    data, rows = [], []
    for (idx, ip), entry in entries:
        flags = "S" if entry.static else "D"
        name = _name(ctx, idx)
        when = round(entry.updated - sw.started, 4)
        data.append(
            {
                "ip": ip4_str(ip),
                "mac": format_mac(entry.mac),
                "interface": name,
                "flags": flags,
                "time": when,
            }
        )
        rows.append([f"{when:.4f}", ip4_str(ip), flags, format_mac(entry.mac), name])
    if not rows:
        return Reply(output="no neighbors", data=data)
    text = table(["Time", "IP", "Flags", "Ethernet", "Interface"], rows, right="0")
    tail = truncated(len(rows), len(items))
    return Reply(output=f"{text}\n{tail}" if tail else text, data=data)
