"""``ping``: ICMP echo from the switch, as a deferred reply that never blocks the loop.

The interface is the one whose subnet holds the target (or ``source <interface>``).
On an Ethernet interface the target's MAC comes from the switch's neighbour table,
resolved first with ARP requests (``Switch.neighbors`` learns a reply only to a
request it sent).  What to send when, the matching of replies and the statistics are
a :class:`memif.pingsession.PingSession`'s (``memif ping``'s too); this module moves
its frames: they go out through :meth:`Switch.send_frame`, replies arrive in
``Switch.ping_replies`` while the switch keeps forwarding, and the server polls the
:class:`PingOp` each loop turn until it has its answer.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from ..packet import ip4_str
from ..pingsession import PingSession, State
from ..vswitch.tables import SwInterface
from .commands import Context, Pending, Reply, command
from .parse import Args, CliError, integer

ARP_RETRY = 1.0  # seconds between ARP requests
ARP_TRIES = 3
MIN_WAIT = 1.0  # seconds to wait for the last reply (at least one interval)


def _route(ctx: Context, target: bytes, source: SwInterface | None) -> tuple[SwInterface, bytes]:
    """(interface, our address on it) to reach ``target``."""
    addr = ipaddress.IPv4Address(target)
    candidates = [source] if source else list(ctx.switch.tables.interfaces.values())
    for sw in candidates:
        for ip, plen in sw.ip4:
            if addr in ipaddress.IPv4Network((ip, plen), strict=False):
                if ip == target:
                    raise CliError(f"{ip4_str(target)} is the address of {sw.name}")
                return sw, ip
    if source is not None and source.ip4:
        return source, source.ip4[0][0]
    where = source.name if source else "any interface"
    raise CliError(
        f"no subnet of {where} contains {ip4_str(target)}: "
        "give an interface an address with 'set interface ip address'"
    )


class PingOp(Pending):
    """One ``ping`` run: ARP, then ``repeat`` echo requests, then the statistics."""

    def __init__(
        self,
        ctx: Context,
        target: bytes,
        sw: SwInterface,
        source_ip: bytes,
        *,
        repeat: int = 5,
        interval: float = 1.0,
        size: int = 56,
    ) -> None:
        self.ctx = ctx
        self.switch = ctx.switch
        self.target = target
        self.sw = sw
        self.ident = int.from_bytes(os.urandom(2), "big")
        self.session = PingSession(
            source_ip,
            target,
            ident=self.ident,
            mac=None if sw.ip_mode else sw.mac,
            count=repeat,
            interval=interval,
            linger=max(interval, MIN_WAIT),
            size=size,
            arp_tries=ARP_TRIES,
            arp_timeout=ARP_RETRY,
        )
        self.lines: list[str] = []
        self.done = False
        ctx.pings.append(self)

    def _collect(self) -> None:
        """Take this ping's echo replies out of ``Switch.ping_replies``."""
        keep = []
        running = {p.ident for p in self.ctx.pings if isinstance(p, PingOp)}
        size = 8 + len(self.session.payload)
        for entry in self.switch.ping_replies:
            ident, seq, src, t = entry[:4]
            got = self.session.echo_reply(ident, seq, src, t)
            if got is None:
                if ident in running and ident != self.ident:  # another ping's
                    keep.append(entry)
                continue
            if got.duplicate:
                continue
            ttl = f" ttl={entry[4]}" if len(entry) > 4 else ""
            self.lines.append(
                f"{size} bytes from {ip4_str(src)}: icmp_seq={seq}{ttl} "
                f"time={got.rtt * 1000:.3f} ms"
            )
        self.switch.ping_replies[:] = keep

    def poll(self, now: float) -> Reply | None:
        """Advance: resolve, send what is due, collect replies; the reply when done."""
        if self.done:
            return None
        session, index = self.session, self.sw.sw_if_index
        if session.target_mac is None and not self.sw.ip_mode:
            mac = self.switch.neighbors.get(index, self.target)
            if mac is not None:
                session.resolved(mac, now)
        if session.state is not State.RESOLVING:  # (until then, replies wait for it)
            self._collect()
        for sent in session.poll(now):
            if sent.seq is None:  # an ARP request: its reply may be learned
                self.switch.neighbors.request(index, self.target, self.switch.now)
            self.switch.send_frame(index, sent.frame)
        if session.unresolved:
            return self._finish(
                Reply(
                    False,
                    f"no ARP reply from {ip4_str(self.target)} on {self.sw.name} "
                    f"after {ARP_TRIES} requests",
                )
            )
        if not session.done:
            return None
        return self._finish(self._summary())

    def _summary(self) -> Reply:
        st = self.session.stats
        sent, got = st.transmitted, st.received
        loss = round(100.0 * (sent - got) / sent) if sent else 100
        stats = f"Statistics: {sent} sent, {got} received, {loss}% packet loss"
        data: dict[str, Any] = {
            "target": ip4_str(self.target),
            "interface": self.sw.name,
            "sent": sent,
            "received": got,
            "loss_percent": loss,
            "rtt_ms": {str(k): round(v * 1000, 3) for k, v in sorted(st.rtt_by_seq.items())},
        }
        return Reply(output="\n".join([*self.lines, "", stats]).lstrip("\n"), data=data)

    def _finish(self, reply: Reply) -> Reply:
        self.cancel()
        return reply

    def cancel(self) -> None:
        """Stop; the last ping to stop drops any replies nobody waits for."""
        self.done = True
        self.session.stop()
        if self in self.ctx.pings:
            self.ctx.pings.remove(self)
        if not self.ctx.pings:
            self.switch.ping_replies.clear()


@command(
    "ping",
    "<a.b.c.d> [source <interface>] [repeat <n>] [interval <seconds>] [size <bytes>]",
    "ICMP echo from the switch (ARP first; the interface is the one whose subnet holds it)",
)
def _ping(ctx: Context, args: Args) -> PingOp:
    target = args.ipv4("address")
    opts = args.options(
        {
            "source": lambda a, k: ctx.interface(a),
            "repeat": integer(1, 1000000),
            "interval": lambda a, k: a.number(k, 0.001, 3600.0),
            "size": integer(0, 8000),
        }
    )
    sw, src_ip = _route(ctx, target, opts.get("source"))
    if not sw.l3:
        raise CliError(
            f"{sw.name} is in L2 mode: ping needs an L3 interface (set interface l3) or a BVI"
        )
    if sw.state != "up":
        raise CliError(f"{sw.name} is down: nothing can be sent on it")
    return PingOp(
        ctx,
        target,
        sw,
        src_ip,
        repeat=opts.get("repeat", 5),
        interval=opts.get("interval", 1.0),
        size=opts.get("size", 56),
    )
