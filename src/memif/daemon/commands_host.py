"""Host interface commands: tap devices and AF_PACKET host interfaces (VPP's syntax).

``create tap`` makes ``tap<n>`` with its Linux side set up (name, namespace, address,
up); ``create host-interface name <linux-if>`` attaches ``host-<linux-if>`` to an
existing Linux interface, typically one end of a veth pair.  Both kinds are ordinary
switch interfaces afterwards: admin state, bridge domains, xconnects, SPAN, addresses,
``show interface``.  ``trace add tap-input|host-input <n>`` traces what they receive.
"""

from __future__ import annotations

from typing import Any

from ..config import parse_mac
from ..vswitch.host_port import HostPort, create_host_interface
from ..vswitch.switch import SwitchError
from ..vswitch.tables import SwInterface
from ..vswitch.tap_port import create_tap
from .commands import Context, Reply, command
from .parse import Args, CliError, integer, word
from .show import interface_data, table


def _mac(args: Args, key: str) -> bytes:
    return parse_mac(args.mac(key))


TAP_OPTIONS = {
    "id": integer(0, 65535),
    "host-if-name": word,
    "host-ns": word,
    "host-ip4-addr": Args.ipv4_prefix,
    "host-mac-addr": _mac,
    "hw-addr": _mac,
}


@command(
    "create tap",
    "[id <n>] [host-if-name <name>] [host-ns <netns>] [host-ip4-addr <a.b.c.d/len>] "
    "[host-mac-addr <mac>] [hw-addr <mac>]",
    "create a tap interface tap<id> with its Linux side up (admin-down: no carrier)",
)
def _create_tap(ctx: Context, args: Args) -> Reply:
    o = args.options(TAP_OPTIONS)
    sw = create_tap(
        ctx.switch,
        id=o.get("id"),
        host_if_name=o.get("host-if-name"),
        host_ns=o.get("host-ns"),
        host_ip4=o.get("host-ip4-addr"),
        host_mac=o.get("host-mac-addr"),
        hw_addr=o.get("hw-addr"),
    )
    return Reply(output=sw.name, data=_port_data(ctx, sw))


def _of_kind(ctx: Context, args: Args, kind: str, what: str) -> SwInterface:
    sw = ctx.interface(args)
    if sw.port.kind != kind:
        raise CliError(f"{sw.name} is not a {what} interface")
    return sw


@command("delete tap", "<interface>", "delete a tap interface (the Linux device goes too)")
def _delete_tap(ctx: Context, args: Args) -> str:
    sw = _of_kind(ctx, args, "tap", "tap")
    args.end()
    ctx.switch.delete_interface(sw.name, "tap")
    return ""


@command(
    "create host-interface",
    "name <linux-if> [hw-addr <mac>]",
    "attach host-<linux-if> to a Linux interface (AF_PACKET; e.g. one end of a veth pair)",
)
def _create_host(ctx: Context, args: Args) -> Reply:
    o = args.options({"name": word, "hw-addr": _mac}, required=("name",))
    sw = create_host_interface(ctx.switch, o["name"], o.get("hw-addr"))
    return Reply(output=sw.name, data=_port_data(ctx, sw))


@command("delete host-interface", "name <linux-if>", "delete host-<linux-if>")
def _delete_host(ctx: Context, args: Args) -> str:
    o = args.options({"name": word}, required=("name",))
    name = f"host-{o['name']}"
    sw = ctx.switch.tables.by_name.get(name)
    if sw is None or not isinstance(sw.port, HostPort):
        raise SwitchError(f"no host interface on {o['name']!r}")
    ctx.switch.delete_interface(name, HostPort.kind)
    return ""


# ---------------------------------------------------------------------- show
def _port_data(ctx: Context, sw: SwInterface) -> dict[str, Any]:
    return {**interface_data(ctx, sw), "kind": sw.port.kind, **sw.port.details()}


def _ports(ctx: Context, args: Args, kind: str, what: str) -> list[SwInterface]:
    if args:
        sws = [_of_kind(ctx, args, kind, what)]
        args.end()
        return sws
    return sorted((p.sw for p in ctx.switch.ports.of_kind(kind)), key=lambda s: s.sw_if_index)


def _counters(d: dict[str, Any]) -> str:
    return (
        f"  rx {d['rx_packets']} packets {d['rx_bytes']} bytes, tx {d['tx_packets']} packets "
        f"{d['tx_bytes']} bytes, drops {d['drops']}, tx-error {d['tx_errors']}"
    )


@command("show tap", "[<interface>]", "tap interfaces: Linux name, namespace, address, carrier")
def _show_tap(ctx: Context, args: Args) -> Reply:
    data = [_port_data(ctx, sw) for sw in _ports(ctx, args, "tap", "tap")]
    blocks = []
    for d in data:
        lines = [
            f"Interface: {d['name']} (ifindex {d['sw_if_index']}) {d['state']}",
            f'  name "{d["host_if_name"]}"',
            f'  host-ns "{d["host_ns"] or "(default)"}"',
            f"  host-mac-addr: {d['host_mac']}",
            f"  host-ip4-addr {d['host_ip4'] or 'none'}",
            f"  host-carrier {'up' if d['host_carrier'] else 'down'}",
            f"  hw-addr {d['mac']} fd {d['fd']}",
            _counters(d),
        ]
        if d["last_error"]:
            lines.append(f"  last error: {d['last_error']}")
        blocks.append("\n".join(lines))
    return Reply(output="\n".join(blocks) or "no tap interfaces", data=data)


@command(
    "show packet-sockets",
    "[<interface>]",
    "host interfaces (AF_PACKET sockets): Linux side, offloads",
)
def _show_packet_sockets(ctx: Context, args: Args) -> Reply:
    data = [_port_data(ctx, sw) for sw in _ports(ctx, args, "af_packet", "host")]
    if not data:
        return Reply(output="no host interfaces", data=data)
    rows = [
        [
            d["name"],
            d["sw_if_index"],
            d["state"],
            d["linux_if"],
            d["ifindex"],
            d["host_mac"] or "-",
            "yes" if d["vnet_hdr"] else "no",
            d["gso_segmented"],
            d["checksums_finished"],
        ]
        for d in data
    ]
    head = ["Name", "Idx", "State", "Linux", "Ifindex", "Linux MAC", "Vnet", "GSO", "Csum"]
    text = table(head, rows, right="1478")
    for d in data:
        text += f"\n{d['name']}: hw-addr {d['mac']}\n{_counters(d)}"
        if d["last_error"]:
            text += f"\n  last error: {d['last_error']}"
    return Reply(output=text, data=data)
