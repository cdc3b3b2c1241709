"""IPv4 routing commands (VPP's syntax): ``ip route add|del`` and ``set ip neighbor``.

``ip route add <prefix>/<len> via <next-hop> [<interface>]`` routes a prefix to a next
hop (its interface found on the connected subnets when not given); ``via <interface>``
makes an attached route (each destination is its own next hop, resolved with ARP on that
interface).  Interface addresses (``set interface ip address``) install their connected
subnet and local /32 themselves.  Both commands work in the startup file.
"""

from __future__ import annotations

import ipaddress

from ..config import format_mac, parse_mac
from ..packet import ip4_str
from .commands import Context, Reply, command
from .parse import Args


def _via(ctx: Context, args: Args) -> tuple[bytes | None, str | None]:
    """``via <next-hop> [<interface>]`` or ``via <interface>``: (next hop, interface name)."""
    args.keyword(["via"], "via")
    word = args.take("next hop or interface")
    try:
        hop: bytes | None = ipaddress.IPv4Address(word).packed
    except ValueError:
        hop = None
    if hop is None:
        return None, ctx.switch.interface(word).name
    name = ctx.interface(args).name if args else None
    return hop, name


@command(
    "ip route add",
    "<a.b.c.d/len> via <next-hop> [<interface>] | <a.b.c.d/len> via <interface>",
    "route a prefix to a next hop, or attached to an interface (ARP for each destination)",
)
def _ip_route_add(ctx: Context, args: Args) -> Reply:
    addr, length = args.ipv4_prefix("prefix")
    hop, name = _via(ctx, args)
    args.end()
    prefix = ctx.switch.ip_route(addr, length, hop, name)
    data = {"prefix": prefix, "next_hop": ip4_str(hop) if hop else None, "interface": name}
    return Reply(data=data)


@command("ip route del", "<a.b.c.d/len>", "remove a route added with 'ip route add'")
def _ip_route_del(ctx: Context, args: Args) -> Reply:
    addr, length = args.ipv4_prefix("prefix")
    if args:
        _via(ctx, args)  # VPP's form names the path; one path per prefix here
    args.end()
    return Reply(data={"prefix": ctx.switch.ip_route(addr, length, delete=True)})


@command(
    "set ip neighbor",
    "[del] <interface> <a.b.c.d> [<mac>] [static]",
    "add or remove an ARP entry (static: never ages, kept while the interface is down)",
)
def _set_ip_neighbor(ctx: Context, args: Args) -> Reply:
    delete = args.try_keyword(["del"]) is not None
    sw = ctx.interface(args)
    ip = args.ipv4()
    mac = None
    if not delete or (args and args.peek() != "static"):
        mac = args.mac()
    static = args.try_keyword(["static"]) is not None
    args.end([] if static else ["static"])
    ctx.switch.ip_neighbor(sw.name, ip, mac, static=static, delete=delete)
    mac_s = format_mac(parse_mac(mac)) if mac else None
    return Reply(data={"interface": sw.name, "ip": ip4_str(ip), "mac": mac_s, "static": static})
