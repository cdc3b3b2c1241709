"""The daemon's CLI: the command registry, :func:`execute`, and the configuration commands.

Every command is registered once, with its path words, argument synopsis and help text,
by the :data:`REGISTRY` decorator; ``show`` commands live in :mod:`.show` and
:mod:`.show_memif`, ``ping`` in :mod:`.ping`.  A handler takes the daemon
:class:`Context` and an :class:`~.parse.Args` cursor and returns a string, a
:class:`Reply`, or a :class:`Pending` operation the server completes later while the
switch keeps forwarding (``ping``).

:func:`execute` is the one boundary where errors become replies: user mistakes
(:class:`~.parse.CliError`, :class:`~memif.vswitch.switch.SwitchError`, memif
configuration errors) give their one-line message; anything else is logged with its
traceback and answered ``internal error: ...``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..access import AccessPolicy, parse_gids, parse_uids
from ..ctl.schema import Reply
from ..errors import MemifError
from ..loop import RxMode
from ..text import escape
from ..vswitch.l2fib import DEFAULT_IF_LIMIT
from ..vswitch.switch import Switch, SwitchError
from ..vswitch.tables import SwInterface
from .parse import Args, CliError, Registry, integer, tokenize, word

log = logging.getLogger("memifd")

#: Every command of memifd.
REGISTRY = Registry()
command = REGISTRY.command

MAX_U32 = 0xFFFFFFFF


class Pending:
    """An operation that finishes later; the server polls it from the main loop."""

    def poll(self, now: float) -> Reply | None:
        """The reply once done, else None (called every loop turn; must not block)."""
        raise NotImplementedError

    def cancel(self) -> None:
        """The client went away: stop and release what the operation holds."""


@dataclass(frozen=True)
class Mark:
    """Wall time, process CPU time and switch busy time at one moment."""

    wall: float
    cpu: float
    busy_ns: int

    @classmethod
    def now(cls, switch: Switch) -> Mark:
        """The figures right now."""
        return cls(time.monotonic(), time.process_time(), switch.busy_ns)


LOG_LINES = 512  # log lines ``show logging`` keeps (the newest)


class Context:
    """What command handlers work on: the switch plus the daemon's own bookkeeping."""

    def __init__(self, switch: Switch, registry: Registry = REGISTRY) -> None:
        self.switch = switch
        self.registry = registry
        self.started = Mark.now(switch)
        self.started_at = time.time()
        self.runtime_mark = self.started  # reset by "clear runtime"
        self.cpu_mhz, self.cpu_mhz_source = cpu_mhz()
        self.pings: list[Pending] = []  # pings in flight (they share switch.ping_replies)
        self.recent_logs: deque[str] = deque(maxlen=LOG_LINES)  # show logging (the daemon's)
        self.tnsr_memifs: dict[str, Any] = {}  # name -> TNSR's settings (daemon.tnsr)

    def interface(self, args: Args) -> SwInterface:
        """The next word as an interface name."""
        return self.switch.interface(args.take("interface name"))


def cpu_mhz(path: str = "/proc/cpuinfo") -> tuple[float, str]:
    """(MHz, where it came from): /proc/cpuinfo's first ``cpu MHz``, else 1000 assumed."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return float(line.split(":", 1)[1]), "cpu MHz in /proc/cpuinfo"
    except (OSError, ValueError):
        pass
    return 1000.0, "assumed: no cpu MHz in /proc/cpuinfo"


Result = str | Reply | Pending


def execute(ctx: Context, line: str, origin: str | None = None) -> Reply | Pending:
    """Run one command line; never raises (errors become ``ok=False`` replies).

    With ``origin`` (who sent it: a CLI client, a startup file line), a command that
    changes state is logged at INFO with its outcome; ``show``, ``help`` and ``ping`` are not.
    """
    result = _execute(ctx, line)
    if origin is not None and isinstance(result, Reply) and _changes_state(ctx, line):
        outcome = "ok" if result.ok else f"failed: {result.output}"
        log.info("%s: %s: %s", origin, escape(line.strip()), outcome)
    return result


READ_ONLY = ("show", "help", "ping")  # first words of commands that change nothing


def _changes_state(ctx: Context, line: str) -> bool:
    try:
        words = tokenize(line)
        return bool(words) and ctx.registry.lookup(words).command.path[0] not in READ_ONLY
    except (CliError, ValueError):
        return False  # not a command: it failed and changed nothing


def _execute(ctx: Context, line: str) -> Reply | Pending:
    try:
        if line.lstrip().startswith("#"):  # before splitting: a comment may hold a lone quote
            return Reply()
        words = tokenize(line)
        if not words:
            return Reply()
        if words[-1] == "?" or words[0] == "?":
            prefix = words[:-1] if words[-1] == "?" else words[1:]
            return _help(ctx, prefix)
        found = ctx.registry.lookup(words)
        result = found.command.handler(ctx, Args(found.args, found.command.name))
        if isinstance(result, (Reply, Pending)):
            return result
        return Reply(output=result or "")
    except (CliError, SwitchError, MemifError) as exc:
        return Reply(False, _one_line(str(exc)))
    except OSError as exc:
        text = exc.strerror or str(exc)
        return Reply(False, _one_line(f"{text}: {exc.filename}" if exc.filename else text))
    except Exception as exc:
        log.exception("internal error running %r", line)
        return Reply(False, _one_line(f"internal error: {type(exc).__name__}: {exc}"))


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "error"


def _help(ctx: Context, words: list[str]) -> Reply:
    return Reply(output=ctx.registry.help_text(words), data=ctx.registry.describe(words))


# ---------------------------------------------------------------------- help
@command("help", "[<command words>]", "list commands (also '?', or '<words> ?')")
def _cmd_help(ctx: Context, args: Args) -> Reply:
    return _help(ctx, args.rest())


# ---------------------------------------------------------------------- memif
def _ids(parse: Callable[[str], frozenset[int]]) -> Callable[[Args, str], frozenset[int]]:
    """An option value parser: comma-separated numbers or names (``0,1000,nobody``)."""
    return lambda args, key: parse(args.take(f"value of {key}"))


@command(
    "create memif socket",
    "id <n> filename <path|@name|abstract:name> [allow-uid <u>[,<u>..]] "
    "[allow-gid <g>[,<g>..]] [unsealed-uid <u>[,<u>..]]",
    "add a memif socket (relative paths go under the runtime directory); peers are admitted "
    "by SO_PEERCRED: root, memifd's uid, allow-uid users and allow-gid group members "
    "(the only protection of an abstract name). unsealed-uid: also use memory those uids "
    "cannot seal against shrinking - RISK: such a peer can kill memifd with SIGBUS",
)
def _create_socket(ctx: Context, args: Args) -> Reply:
    opts = args.options(
        {
            "id": integer(1, MAX_U32),
            "filename": word,
            "allow-uid": _ids(parse_uids),
            "allow-gid": _ids(parse_gids),
            "unsealed-uid": _ids(parse_uids),
        },
        required=("id", "filename"),
    )
    access = None
    if {"allow-uid", "allow-gid", "unsealed-uid"} & opts.keys():
        default = ctx.switch.socket_access
        access = AccessPolicy(
            default.uids | opts.get("allow-uid", frozenset()),
            default.gids | opts.get("allow-gid", frozenset()),
            default.unsealed_uids | opts.get("unsealed-uid", frozenset()),
        )
    entry = ctx.switch.create_socket(opts["id"], opts["filename"], access)
    policy = ctx.switch.socket_policy(entry)
    return Reply(data={"id": entry.id, "filename": entry.filename, "access": policy.describe()})


@command("delete memif socket", "id <n>", "remove an unused memif socket")
def _delete_socket(ctx: Context, args: Args) -> str:
    opts = args.options({"id": integer(0, MAX_U32)}, required=("id",))
    ctx.switch.delete_socket(opts["id"])
    return ""


def _mode(args: Args, key: str) -> str:
    return args.keyword(["ethernet", "ip"], key)


MEMIF_OPTIONS = {
    "id": integer(0, MAX_U32),
    "socket-id": integer(0, MAX_U32),
    "master": None,
    "slave": None,
    "rx-queues": integer(1, 255),
    "tx-queues": integer(1, 255),
    "ring-size": integer(2, 32768),
    "buffer-size": integer(128, 65535),
    "hw-addr": Args.mac,
    "secret": word,
    "mode": _mode,
    "no-zero-copy": None,
}


@command(
    "create interface memif",
    "[id <n>] [socket-id <n>] master|slave [rx-queues <n>] [tx-queues <n>] [ring-size <n>] "
    "[buffer-size <n>] [hw-addr <mac>] [secret <s>] [mode ip|ethernet] [no-zero-copy]",
    "create a memif interface memif<socket-id>/<id> (admin-down)",
)
def _create_memif(ctx: Context, args: Args) -> Reply:
    o = args.options(MEMIF_OPTIONS)
    if "master" in o and "slave" in o:
        raise CliError("'create interface memif': give master or slave, not both")
    ring_size = o.get("ring-size", 1024)
    if ring_size & (ring_size - 1):
        raise CliError(f"ring-size {ring_size} for 'create interface memif': not a power of 2")
    sw = ctx.switch.create_memif(
        id=o.get("id", 0),
        socket_id=o.get("socket-id", 0),
        role="master" if "master" in o else "slave",
        rx_queues=o.get("rx-queues", 1),
        tx_queues=o.get("tx-queues", 1),
        ring_size=ring_size,
        buffer_size=o.get("buffer-size", 2048),
        hw_addr=o.get("hw-addr"),
        secret=o.get("secret", ""),
        mode=o.get("mode", "ethernet"),
        zero_copy="no-zero-copy" not in o,
    )
    return Reply(output=sw.name, data={"name": sw.name, "sw_if_index": sw.sw_if_index})


@command("delete interface memif", "<interface> | sw_if_index <n>", "delete a memif interface")
def _delete_memif(ctx: Context, args: Args) -> str:
    if args.try_keyword(["sw_if_index"]):
        index = args.integer("sw_if_index")
        sw = ctx.switch.tables.interfaces.get(index)
        if sw is None:
            raise CliError(f"no interface with sw_if_index {index}")
        name = sw.name
    else:
        name = ctx.interface(args).name
    args.end()
    ctx.switch.delete_interface(name, "memif")
    return ""


# ---------------------------------------------------------------------- interfaces
@command("set interface state", "<interface> up|down", "admin state")
def _set_state(ctx: Context, args: Args) -> str:
    sw = ctx.interface(args)
    state = args.keyword(["up", "down"], "state")
    args.end()
    ctx.switch.set_state(sw.name, state == "up")
    return ""


@command(
    "set interface rx-mode",
    "<interface> [queue <n>] polling|interrupt|adaptive",
    "how the main loop serves the interface's receive queues (default adaptive)",
)
def _set_rx_mode(ctx: Context, args: Args) -> str:
    sw = ctx.interface(args)
    queue = args.integer("queue", 0, 254) if args.try_keyword(["queue"]) else None
    mode = args.keyword([m.value for m in RxMode], "rx-mode")
    args.end()
    ctx.switch.set_rx_mode(sw.name, mode, queue)
    return ""


@command(
    "set interface mtu",
    "[packet|ip4] <value> <interface>",
    "the packet MTU (ip4: IPv4's own); longer frames are dropped at output (mtu-exceeded)",
)
def _set_mtu(ctx: Context, args: Args) -> str:
    kind = args.try_keyword(["packet", "ip4"])
    word = args.peek()
    if kind is None and word is not None and not word.isdigit():
        raise CliError(f"bad mtu '{word}' for 'set interface mtu': expected packet, ip4 or <value>")
    mtu = args.integer("mtu", 0, 0xFFFFFFFF)  # its range is the interface's (set_mtu)
    sw = ctx.interface(args)
    args.end()
    ctx.switch.set_mtu(sw.name, mtu, ip4=kind == "ip4")
    return ""


@command(
    "set interface ip address",
    "[del] <interface> <a.b.c.d/len> | del <interface> all",
    "add or remove an IPv4 address (the switch answers ARP and ping on it)",
)
def _set_ip(ctx: Context, args: Args) -> str:
    delete = args.try_keyword(["del"]) is not None
    sw = ctx.interface(args)
    if delete and args.try_keyword(["all"]):
        args.end()
        for addr, plen in list(sw.ip4):
            ctx.switch.set_ip(sw.name, addr, plen, delete=True)
        return ""
    addr, plen = args.ipv4_prefix()
    args.end()
    ctx.switch.set_ip(sw.name, addr, plen, delete=delete)
    return ""


@command("set interface mac address", "<interface> <mac>", "change an interface's MAC address")
def _set_mac(ctx: Context, args: Args) -> str:
    sw = ctx.interface(args)
    mac = args.mac()
    args.end()
    ctx.switch.set_mac(sw.name, mac)
    return ""


@command("clear interfaces", "", "zero every interface counter")
def _clear_interfaces(ctx: Context, args: Args) -> str:
    args.end()
    ctx.switch.clear_interfaces()
    return ""


# ---------------------------------------------------------------------- L2
def minutes(args: Args, key: str) -> int | float:
    """``mac-age`` minutes, 0..255; fractions allowed (``0.05`` is 3 s), whole numbers
    stay integers."""
    value = args.number(key, 0.0, 255.0)
    return int(value) if value.is_integer() else value


MAX_LEARN_LIMIT = 1 << 24
MAX_BD_ID = 0xFFFFFF  # VPP's bridge-domain ids are 24 bits; 0 is not a domain


def bridge_domain(args: Args) -> int:
    """The next word as a bridge-domain id, 1..16777215."""
    return args.integer("bridge-domain id", 1, MAX_BD_ID)


BD_FLAGS = {
    "learn": Args.flag01,
    "forward": Args.flag01,
    "flood": Args.flag01,
    "uu-flood": Args.flag01,
    "mac-age": minutes,
    "learn-limit": integer(0, MAX_LEARN_LIMIT),
}


@command(
    "create bridge-domain",
    "<n> [learn 0|1] [forward 0|1] [flood 0|1] [uu-flood 0|1] [mac-age <minutes>] "
    "[learn-limit <n>]",
    "create a bridge domain or change its flags",
)
def _create_bd(ctx: Context, args: Args) -> Reply:
    bd_id = bridge_domain(args)
    opts = args.options(BD_FLAGS)
    bd = ctx.switch.create_bridge_domain(bd_id, **{k.replace("-", "_"): v for k, v in opts.items()})
    return Reply(output=str(bd.id), data={"bd_id": bd.id})


def _bd_flag(flag: str) -> Callable[[Context, Args], str]:
    """``set bridge-domain <flag> <bd> [disable]`` (VPP's): one of create's flags."""

    def handler(ctx: Context, args: Args) -> str:
        bd = bridge_domain(args)
        if bd not in ctx.switch.tables.bds:
            raise CliError(f"no bridge domain {bd}")
        on = args.try_keyword(["disable"]) is None
        args.end([] if not on else ["disable"])
        ctx.switch.create_bridge_domain(bd, **{flag.replace("-", "_"): on})
        return ""

    return handler


for _flag, _what in (
    ("learn", "learn source MACs"),
    ("forward", "forward to learned MACs"),
    ("flood", "flood broadcast and multicast"),
    ("uu-flood", "flood unknown unicast"),
):
    command(f"set bridge-domain {_flag}", "<bd> [disable]", f"{_what} in the domain (VPP's)")(
        _bd_flag(_flag)
    )


@command(
    "l2fib add",
    "<mac> <bd> <interface> [static]",
    "an L2 FIB entry (static: never learned over or aged)",
)
def _l2fib_add(ctx: Context, args: Args) -> str:
    mac = args.mac()
    bd = bridge_domain(args)
    sw = ctx.interface(args)
    static = args.try_keyword(["static"]) is not None
    args.end([] if static else ["static"])
    ctx.switch.l2fib_add(mac, bd, sw.name, static)
    return ""


@command("l2fib del", "<mac> <bd>", "remove an L2 FIB entry, static or learned")
def _l2fib_del(ctx: Context, args: Args) -> str:
    mac = args.mac()
    bd = bridge_domain(args)
    args.end()
    ctx.switch.l2fib_del(mac, bd)
    return ""


@command(
    "set bridge-domain mac-age",
    "<bd> <minutes>",
    "remove learned MACs not seen for <minutes> (0: never; the default, as VPP's)",
)
def _set_mac_age(ctx: Context, args: Args) -> str:
    bd = bridge_domain(args)
    age = minutes(args, "mac-age")
    args.end()
    ctx.switch.set_mac_age(bd, age)
    return ""


@command(
    "set bridge-domain learn-limit",
    "<bd> <n>",
    "learned MACs the bridge domain may hold; more are not learned (L2 learn limit exceeded)",
)
def _set_bd_learn_limit(ctx: Context, args: Args) -> str:
    bd = bridge_domain(args)
    limit = args.integer("learn-limit", 0, MAX_LEARN_LIMIT)
    args.end()
    ctx.switch.set_bd_learn_limit(bd, limit)
    return ""


@command(
    "set interface l2 learn-limit",
    "<interface> <n>|default",
    f"learned MACs behind one interface, so one port cannot fill the table for all "
    f"(default {DEFAULT_IF_LIMIT})",
)
def _set_if_learn_limit(ctx: Context, args: Args) -> str:
    sw = ctx.interface(args)
    limit = None
    if not args.try_keyword(["default"]):
        limit = args.integer("learn-limit", 0, MAX_LEARN_LIMIT)
    args.end()
    ctx.switch.set_if_learn_limit(sw.name, limit)
    return ""


@command(
    "set interface l2 bridge",
    "<interface> <bd> [bvi]",
    "put an interface in a bridge domain (created if needed); bvi: a loopback as the "
    "domain's L3 interface",
)
def _set_bridge(ctx: Context, args: Args) -> str:
    sw = ctx.interface(args)
    bd = bridge_domain(args)
    bvi = args.try_keyword(["bvi"]) is not None
    args.end([] if bvi else ["bvi"])
    ctx.switch.set_bridge(sw.name, bd, bvi)
    return ""


@command(
    "set interface l2 xconnect",
    "<interface> <peer>",
    "send everything received on <interface> out of <peer> (one direction)",
)
def _set_xconnect(ctx: Context, args: Args) -> str:
    sw = ctx.interface(args)
    peer = ctx.interface(args)
    args.end()
    ctx.switch.set_xconnect(sw.name, peer.name)
    return ""


@command("set interface l3", "<interface>", "take an interface out of L2 (bridge or xconnect)")
def _set_l3(ctx: Context, args: Args) -> str:
    sw = ctx.interface(args)
    args.end()
    ctx.switch.set_l3(sw.name)
    return ""


@command(
    "set interface span",
    "<src> [disable | destination <dst> [l2] [rx|tx|both] [disable]]",
    "mirror what <src> receives and/or sends to <dst> (SPAN)",
)
def _set_span(ctx: Context, args: Args) -> str:
    src = ctx.interface(args)
    dst: str | None = None
    rx = tx = True
    l2 = disable = False
    while args:
        key = args.keyword(["destination", "disable", "l2", "rx", "tx", "both"])
        if key == "destination":
            dst = ctx.interface(args).name
        elif key == "disable":
            disable = True
        elif key == "l2":
            l2 = True
        else:
            rx, tx = key in ("rx", "both"), key in ("tx", "both")
    if dst is None and not disable:
        raise CliError(
            "missing destination for 'set interface span': expected destination, disable"
        )
    if disable:
        rx = tx = False
    ctx.switch.set_span(src.name, dst, rx=rx, tx=tx, l2=l2)
    return ""


# ---------------------------------------------------------------------- counters, trace
@command("clear errors", "", "zero every node's error counters")
def _clear_errors(ctx: Context, args: Args) -> str:
    args.end()
    for node in ctx.switch.graph.nodes:
        node.error_counts.clear()
    return ""


@command("clear runtime", "", "zero the per-node runtime figures and restart CPU accounting")
def _clear_runtime(ctx: Context, args: Args) -> str:
    args.end()
    for node in ctx.switch.graph.nodes:
        node.clear_runtime()
    ctx.runtime_mark = Mark.now(ctx.switch)
    return ""


TRACE_INPUTS = ["memif-input", "tap-input", "host-input"]  # the device input nodes


@command("trace add", f"{'|'.join(TRACE_INPUTS)} <count>", "trace the next <count> packets")
def _trace_add(ctx: Context, args: Args) -> str:
    node = args.keyword(TRACE_INPUTS, "input node")
    count = args.integer("count", 1, 100000)
    args.end()
    ctx.switch.graph.trace_add(node, count)
    return ""


@command("clear trace", "", "forget traced packets and stop tracing")
def _trace_clear(ctx: Context, args: Args) -> str:
    args.end()
    ctx.switch.graph.trace_clear()
    return ""
