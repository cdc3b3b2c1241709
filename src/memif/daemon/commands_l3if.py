"""Loopback interfaces (VPP's syntax): ``create loopback interface`` and its delete.

A loopback is an interface with no device: it can be given addresses and be a bridge
domain's BVI (``set interface l2 bridge loop0 <bd> bvi``), the domain's L3 interface
(:mod:`memif.vswitch.loopback_port`).
"""

from __future__ import annotations

from ..config import parse_mac
from ..vswitch.loopback_port import MAX_INSTANCE, LoopbackPort
from .commands import Context, Reply, command
from .parse import Args, integer
from .show import interface_data


@command(
    "create loopback interface",
    f"[mac <mac>] [instance <0..{MAX_INSTANCE}>]",
    "create a loopback loop<instance> (admin-down): give it addresses, or make it a "
    "bridge domain's BVI",
)
def _create_loopback(ctx: Context, args: Args) -> Reply:
    o = args.options(
        {"mac": lambda a, k: parse_mac(a.mac(k)), "instance": integer(0, MAX_INSTANCE)}
    )
    sw = ctx.switch.create_loopback(o.get("mac"), o.get("instance"))
    return Reply(output=sw.name, data=interface_data(ctx, sw))


@command(
    "delete loopback interface",
    "intfc <interface>",
    "delete a loopback (a BVI leaves its bridge domain, its L2 FIB entry goes)",
)
def _delete_loopback(ctx: Context, args: Args) -> str:
    args.keyword(["intfc"])
    sw = ctx.interface(args)
    args.end()
    ctx.switch.delete_interface(sw.name, LoopbackPort.kind)
    return ""
