"""``show buffers``, ``show logging`` and ``show node counters``: the daemon's own state.

Each returns VPP's layout as text and the same facts as ``--json`` data.
"""

from __future__ import annotations

from .commands import LOG_LINES, Context, Reply, command
from .parse import Args
from .show import show_errors, table


@command("show buffers", "", "the switch's packet buffer pool: size, free, used, held by ports")
def show_buffers(ctx: Context, args: Args) -> Reply:
    """VPP's ``show buffers``: one pool, with what each port holds of it."""
    args.end()
    pool = ctx.switch.pool
    held = {sw.name: sw.port.held for sw in ctx.switch.tables.interfaces.values() if sw.port.held}
    data = {
        "pool": "default",
        "buffers": pool.n_buffers,
        "data_size": pool.data_size,
        "free": pool.n_free,
        "used": pool.n_buffers - pool.n_free,
        "quota_per_port": pool.quota_per_port,
        "reserve": pool.reserve,
        "held_by_port": held,
    }
    head = ["Pool Name", "Index", "Data Size", "Total", "Avail", "Used", "Per-port quota"]
    row = ["default", 0, pool.data_size, pool.n_buffers, data["free"], data["used"],
           pool.quota_per_port]  # fmt: skip
    text = table(head, [row], right="123456")
    if held:
        text += "\n" + table(["Port", "Buffers held"], sorted(held.items()), right="1")
    return Reply(output=text, data=data)


@command("show node counters", "", "per-node error counters (VPP's name for show errors)")
def show_node_counters(ctx: Context, args: Args) -> Reply:
    """VPP's ``show node counters``: the same counters as ``show errors``."""
    return show_errors(ctx, args)


@command("show logging", "[<n>]", f"the newest log lines (default all kept, up to {LOG_LINES})")
def show_logging(ctx: Context, args: Args) -> Reply:
    """VPP's ``show logging``: what memifd logged lately, oldest first."""
    n = args.integer("line count", 1, LOG_LINES) if args else LOG_LINES
    args.end()
    shown = list(ctx.recent_logs)[-n:]
    return Reply(output="\n".join(shown) or "nothing logged", data=shown)
