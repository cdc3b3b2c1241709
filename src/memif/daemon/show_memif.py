"""``show memif``, ``show memif socket`` and ``show hardware-interfaces``.

``show memif`` follows VPP's plugin (``cli.c``): the sockets table, then per interface
remote-name, remote-interface, socket-id/id/mode, flags, listener/conn fds, ring counts,
buffer-size, regions, disconnect reasons and every ring with head, tail and flags;
``descriptors`` adds each ring's descriptor table, up to ``MAX_ROWS`` descriptors per
reply (a peer chooses how many rings and slots there are).  Names and reasons a peer
sent are shown escaped.
"""

from __future__ import annotations

from typing import Any

from ..config import Role, format_mac
from ..interface import InterfaceDetails
from ..sock import SocketCounters
from ..text import escape
from ..vswitch.memif_port import MemifPort
from ..vswitch.switch import SocketEntry
from .commands import Context, Reply, command
from .parse import Args
from .show import MAX_ROWS, interface_data, selected_interfaces, table, truncated


def _fds(det: InterfaceDetails) -> tuple[int, int]:
    """(listener fd, control connection fd) as VPP prints them; 0 when there is none."""
    return max(det.listener_fd or 0, 0), max(det.control_fd or 0, 0)


def _flags(port: MemifPort, det: InterfaceDetails) -> list[str]:
    flags = []
    if port.sw.admin_up:
        flags.append("admin-up")
    if det.role == Role.CLIENT.value:
        flags.append("slave")
    if det.state in ("connecting", "connected"):
        flags.append(det.state)
    if port.zero_copy:
        flags.append("zero-copy")
    if det.fault:
        flags.append("error")
    return flags


def socket_data(ctx: Context, entry: SocketEntry) -> dict[str, Any]:
    """One ``create memif socket`` entry, its access policy and refusal counters."""
    sock = entry.socket
    return {
        "id": entry.id,
        "filename": entry.filename,
        "listener": bool(sock is not None and sock.listening),
        "role": None if sock is None or sock.role is None else sock.role.vpp_name,
        "interfaces": sorted(entry.interfaces),
        "access": ctx.switch.socket_policy(entry).describe(),
        "counters": SocketCounters().as_dict() if sock is None else sock.counters.as_dict(),
    }


def _sockets_text(ctx: Context) -> tuple[str, list[dict[str, Any]]]:
    data = [socket_data(ctx, e) for _, e in sorted(ctx.switch.sockets.items())]
    rows = [
        [d["id"], f"yes ({len(d['interfaces'])})" if d["listener"] else "no", d["filename"]]
        for d in data
    ]
    header, *lines = table(["  id", "listener", "filename"], rows, right="0").splitlines()
    out = ["sockets", header]
    for line, d in zip(lines, data, strict=True):
        refused = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in d["counters"].items() if v)
        out += [line, f"      access: {d['access']}", f"      refused: {refused or 'none'}"]
    return "\n".join(out), data


def memif_data(ctx: Context, port: MemifPort, descriptors: int | None) -> dict[str, Any]:
    """Everything ``show memif`` prints about one interface; with ``descriptors`` (a
    budget, not None) up to that many descriptors of its rings, ``descriptors_left_out``
    counting the rest."""
    det = port.iface.details(descriptors=descriptors or 0)
    left_out = 0
    lfd, cfd = _fds(det)
    master = port.iface.role is Role.SERVER
    rings = []
    # VPP lists the transmit queues first: M2S on a master, S2M on a slave.
    for r in sorted(det.rings, key=lambda r: (r.s2m == master, r.index)):
        ring: dict[str, Any] = {
            "direction": "slave-to-master" if r.s2m else "master-to-slave",
            "index": r.index,
            "region": r.region,
            "offset": r.offset,
            "ring_size": r.ring_size,
            "int_fd": r.fd,
            "head": r.head,
            "tail": r.tail,
            "flags": r.flags,
        }
        if descriptors is not None:
            d = r.descriptors[:descriptors]  # details copied at most the budget per ring
            left_out += r.ring_size - len(d)
            descriptors -= len(d)
            ring["descriptors"] = [
                {"flags": int(f), "length": int(n), "region": int(g), "offset": int(o)}
                for f, n, g, o in zip(
                    d["flags"].tolist(),
                    d["length"].tolist(),
                    d["region"].tolist(),
                    d["offset"].tolist(),
                    strict=True,
                )
            ]
        rings.append(ring)
    return {
        "name": port.sw.name,
        "sw_if_index": port.sw.sw_if_index,
        "socket_id": port.socket_id,
        "id": det.id,
        "role": "master" if master else "slave",
        "mode": det.mode,
        "flags": _flags(port, det),
        "state": det.state,
        "mac": format_mac(port.sw.mac),
        "remote_name": det.remote_app_name,
        "remote_interface": det.remote_if_name,
        "listener_fd": lfd,
        "conn_fd": cfd,
        "num_s2m_rings": det.num_s2m_rings,
        "num_m2s_rings": det.num_m2s_rings,
        "buffer_size": det.buffer_size,
        "num_regions": len(det.regions),
        "regions": [{"index": i, "size": s, "fd": f} for i, s, f in det.regions],
        "local_disc_reason": det.local_disc_reason,
        "remote_disc_reason": det.remote_disc_reason,
        "rings": rings,
        "descriptors_left_out": left_out,
    }


def memif_text(d: dict[str, Any]) -> list[str]:
    """VPP's per-interface block."""
    out = [f"interface {d['name']}"]
    if d["remote_name"]:
        out.append(f'  remote-name "{escape(d["remote_name"])}"')
    if d["remote_interface"]:
        out.append(f'  remote-interface "{escape(d["remote_interface"])}"')
    out += [
        f"  socket-id {d['socket_id']} id {d['id']} mode {d['mode']}",
        "  flags " + " ".join(d["flags"]),
        f"  listener-fd {d['listener_fd']} conn-fd {d['conn_fd']}",
        f"  num-s2m-rings {d['num_s2m_rings']} num-m2s-rings {d['num_m2s_rings']} "
        f"buffer-size {d['buffer_size']} num-regions {d['num_regions']}",
    ]
    if d["local_disc_reason"]:
        out.append(f'  local-disc-reason "{escape(d["local_disc_reason"])}"')
    if d["remote_disc_reason"]:
        out.append(f'  remote-disc-reason "{escape(d["remote_disc_reason"])}"')
    out += [f"  region {r['index']} size {r['size']} fd {r['fd']}" for r in d["regions"]]
    for r in d["rings"]:
        out += [
            f"    {r['direction']} ring {r['index']}:",
            f"      region {r['region']} offset {r['offset']} ring-size {r['ring_size']} "
            f"int-fd {r['int_fd']}",
            f"      head {r['head']} tail {r['tail']} flags 0x{r['flags']:04x}",
        ]
        if "descriptors" in r:
            out.append("      descriptor table:")
            rows = [
                [i, f"0x{x['flags']:04x}", x["length"], x["region"], f"0x{x['offset']:08x}"]
                for i, x in enumerate(r["descriptors"])
            ]
            text = table(["id", "flags", "len", "region", "offset"], rows, right="0234")
            out += ["        " + line for line in text.splitlines()]
    if d["descriptors_left_out"]:
        out.append(f"  descriptors {truncated(0, d['descriptors_left_out'])}")
    return out


@command("show memif", "[<interface>] [descriptors]", "memif sockets, interfaces and rings")
def show_memif(ctx: Context, args: Args) -> Reply:
    """VPP's ``show memif``."""
    name = None
    descriptors = False
    while args:
        if args.try_keyword(["descriptors"]):
            descriptors = True
        elif name is None:
            name = ctx.interface(args).name
        else:
            args.end(["descriptors"])
    text, sockets = _sockets_text(ctx)
    ports = [p for p in ctx.switch.memif_ports() if name is None or p.sw.name == name]
    ports.sort(key=lambda p: p.sw.sw_if_index)
    budget = MAX_ROWS if descriptors else None
    ifs = []
    for p in ports:
        ifs.append(memif_data(ctx, p, budget))
        if budget is not None:
            budget -= sum(len(r.get("descriptors", ())) for r in ifs[-1]["rings"])
    out = [text]
    for d in ifs:
        out += ["", *memif_text(d)]
    return Reply(output="\n".join(out), data={"sockets": sockets, "interfaces": ifs})


@command("show memif socket", "", "memif sockets: id, listener, filename")
def show_memif_socket(ctx: Context, args: Args) -> Reply:
    """The sockets table of ``show memif``."""
    args.end()
    text, data = _sockets_text(ctx)
    return Reply(output=text, data=data)


@command(
    "show hardware-interfaces",
    "[<interface> ...]",
    "ports: link, MAC address, memif role and queues, tap and af_packet host sides",
)
def show_hardware(ctx: Context, args: Args) -> Reply:
    """VPP's ``show hardware-interfaces``: one block per port, memif, tap or af_packet."""
    sw = ctx.switch
    ports: dict[int, Any] = dict(sw.ports.items())
    wanted = {s.sw_if_index for s in selected_interfaces(ctx, args)}
    order = [i for i in sorted(ports) if i in wanted]
    tables = sw.tables.interfaces
    rows = table(
        ["Name", "Idx", "Link", "Hardware"],
        [[tables[i].name, i, "up" if ports[i].link_up else "down", tables[i].name] for i in order],
        right="1",
    ).splitlines()
    data, blocks = [], []
    for k, i in enumerate(order):
        port = ports[i]
        d, lines = _memif_hardware(ctx, port) if port.kind == "memif" else _host_hardware(ctx, port)
        data.append(d)
        blocks.append("\n".join([*([rows[0]] if k == 0 else []), rows[k + 1], *lines]))
    return Reply(output="\n".join(blocks) or "no interfaces", data=data)


def _memif_hardware(ctx: Context, p: MemifPort) -> tuple[dict[str, Any], list[str]]:
    """A memif port's ``show hardware-interfaces`` data and lines."""
    iface, cfg = p.iface, p.iface.config
    queues: list[dict[str, Any]] = []
    for kind, qs in (("rx", iface.rx_queues), ("tx", iface.tx_queues)):
        for q in qs:
            queues.append(
                {
                    "kind": kind,
                    "queue": q.index,
                    "ring_size": q.size,
                    "packets": q.stats.packets,
                    "bytes": q.stats.bytes,
                    "errors": dict(q.stats.errors),
                }
            )
    d = {
        **interface_data(ctx, p.sw),
        "link": "up" if p.link_up else "down",
        "hardware": "memif",
        "role": p.iface.role.vpp_name,
        "socket_id": p.socket_id,
        "id": iface.id,
        "memif_mode": cfg.mode.name.lower(),
        "zero_copy": p.zero_copy,
        "configured": {
            "rx_queues": cfg.rx_queues,
            "tx_queues": cfg.tx_queues,
            "ring_size": cfg.ring_size,
            "buffer_size": cfg.buffer_size,
        },
        "queues": queues,
    }
    lines = [
        f"  Ethernet address {d['mac']}",
        f"  memif {d['role']}, socket-id {p.socket_id} id {iface.id}, mode "
        f"{d['memif_mode']}{', zero-copy' if p.zero_copy else ''}, mtu {p.sw.mtu}",
        f"  configured: rx-queues {cfg.rx_queues} tx-queues {cfg.tx_queues} "
        f"ring-size {cfg.ring_size} buffer-size {cfg.buffer_size}",
    ]
    for row in queues:
        errs = "".join(f" {k} {v}" for k, v in sorted(row["errors"].items()))
        lines.append(
            f"  {row['kind']} queue {row['queue']}: ring-size {row['ring_size']} "
            f"packets {row['packets']} bytes {row['bytes']}{errs}"
        )
    return d, lines


def _host_hardware(ctx: Context, p: Any) -> tuple[dict[str, Any], list[str]]:
    """A tap, af_packet or loopback port's ``show hardware-interfaces`` data and lines."""
    details = p.details()
    d = {
        **interface_data(ctx, p.sw),
        "link": "up" if p.link_up else "down",
        "hardware": p.kind,
        **details,
    }
    if p.kind == "loopback":
        host = f"  loopback instance {details['instance']}{', bvi' if details['bvi'] else ''}"
    elif p.kind == "tap":
        host = (
            f"  tap: host-if-name {details['host_if_name']}, host-ns "
            f"{details['host_ns'] or '(default)'}, carrier "
            f"{'up' if details['host_carrier'] else 'down'}, mtu {details['host_mtu']}"
        )
    else:
        host = (
            f"  af_packet: linux interface {details['linux_if']} ifindex {details['ifindex']}, "
            f"vnet-hdr {'on' if details['vnet_hdr'] else 'off'}"
        )
    lines = [f"  Ethernet address {d['mac']}", host]
    if details.get("last_error"):
        lines.append(f"  last error: {details['last_error']}")
    return d, lines
