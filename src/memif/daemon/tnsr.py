"""TNSR's memif dialect, mapped onto the switch's own operations (those of VPP's commands).

Netgate TNSR configures memif with::

    interface memif socket 23 filename /tmp/memif23.sock
    interface memif socket 23 interface 100        (enters config-memif)
      role server                                   (or: role client rx-queues 2 tx-queues 2)
      ring-size 10                                  (an exponent: 2^10 = 1024 slots)
      buffer-size 2048
      mac-address 02:fe:00:00:00:01
      mode ethernet
      secret "s3cret"
      exit
    show interface memif

The sub-mode is the client's (memifctl's shell, the startup file: :mod:`memif.ctl.submode`):
each line typed in it is sent as ``interface memif socket S interface I <line>``, which is
also the one-shot form for scripts.  memifd keeps what TNSR configured for each interface
(:class:`TnsrMemif`, TNSR's defaults: role server, ring-size 10, buffer-size 2048,
ethernet, a random MAC) and applies it with the switch's ``create_memif``; a setting that
changes how the memif is made re-creates it (a peer reconnects), keeping its admin state,
bridge domain or cross-connect and addresses.

TNSR's rules are enforced: socket 0 is always ``/run/vpp/memif.sock`` and cannot be
changed; a socket in use by a memif cannot be changed or deleted; a socket serves one
role only.  Secrets: TNSR documents up to 24 characters, but memif's INIT message carries
the secret in 24 bytes as a NUL-terminated string (libmemif, VPP's ``memif_msg_init_t``),
so 23 is the longest that a peer can match; a 24-character secret is refused with that
reason rather than silently cut.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..config import format_mac
from ..vswitch.memif_port import MemifPort
from ..vswitch.switch import SwitchError
from ..vswitch.tables import L2Mode, SwInterface
from .commands import Context, Reply, command
from .parse import Args, CliError, word
from .show import table

MAX_SOCKET_ID = 4294967294
MAX_SECRET = 23  # characters: the 24-byte INIT field holds a NUL-terminated string
DEFAULT_RING_EXPONENT = 10


@dataclass
class TnsrMemif:
    """What TNSR configured for one memif (its defaults until changed)."""

    socket_id: int
    if_id: int
    role: str = "server"
    rx_queues: int = 1
    tx_queues: int = 1
    ring_exponent: int = DEFAULT_RING_EXPONENT
    buffer_size: int = 2048
    mac: str | None = None
    mode: str = "ethernet"
    secret: str = ""

    @property
    def name(self) -> str:
        """``memif<socket-id>/<if-id>``."""
        return f"memif{self.socket_id}/{self.if_id}"

    def create(self, ctx: Context) -> SwInterface:
        """The interface, made by the switch's ``create_memif`` (VPP's command's path)."""
        return ctx.switch.create_memif(
            id=self.if_id,
            socket_id=self.socket_id,
            role="master" if self.role == "server" else "slave",
            rx_queues=self.rx_queues,
            tx_queues=self.tx_queues,
            ring_size=1 << self.ring_exponent,
            buffer_size=self.buffer_size,
            hw_addr=self.mac,
            secret=self.secret,
            mode=self.mode,
        )


def _configs(ctx: Context) -> dict[str, TnsrMemif]:
    """What TNSR configured, by interface name (forgetting memifs deleted since)."""
    configs: dict[str, TnsrMemif] = ctx.tnsr_memifs
    for name in [n for n in configs if n not in ctx.switch.tables.by_name]:
        del configs[name]
    return configs


def _socket_id(args: Args) -> int:
    return args.integer("socket-id", 0, MAX_SOCKET_ID)


def _users(ctx: Context, socket_id: int) -> list[str]:
    entry = ctx.switch.sockets.get(socket_id)
    return [f"memif{socket_id}/{i}" for i in entry.interfaces] if entry else []


@command(
    "interface memif socket",
    "<socket-id> filename <path> | <socket-id> interface <if-id> [buffer-size <n>] "
    "[mac-address <mac>] [mode ethernet|ip] [ring-size <exponent>] [role server|client "
    "[rx-queues <n>] [tx-queues <n>]] [secret <string>]",
    "TNSR: a memif socket's file, or a memif and its settings (config-memif)",
)
def _interface_memif_socket(ctx: Context, args: Args) -> Reply:
    socket_id = _socket_id(args)
    what = args.keyword(["filename", "interface"], "keyword")
    if what == "filename":
        return _socket_filename(ctx, socket_id, args)
    if_id = args.integer("interface id", 0, 0xFFFFFFFF)
    return _memif(ctx, socket_id, if_id, args)


def _socket_filename(ctx: Context, socket_id: int, args: Args) -> Reply:
    filename = args.take("filename")
    args.end()
    sockets = ctx.switch.sockets
    if socket_id == 0:
        raise CliError(f"socket 0 is always {sockets[0].filename}: it cannot be changed")
    entry = sockets.get(socket_id)
    if entry is not None:
        if entry.filename == filename:
            return Reply()
        users = _users(ctx, socket_id)
        if users:
            raise CliError(f"socket {socket_id} is in use by {', '.join(users)}: "
                           "it cannot be changed")  # fmt: skip
        ctx.switch.delete_socket(socket_id)
    ctx.switch.create_socket(socket_id, filename)
    return Reply()


SETTINGS = ("buffer-size", "mac-address", "mode", "ring-size", "role", "secret")


def _memif(ctx: Context, socket_id: int, if_id: int, args: Args) -> Reply:
    if socket_id not in ctx.switch.sockets:
        raise CliError(f"socket {socket_id} does not exist: "
                       f"interface memif socket {socket_id} filename <path> first")  # fmt: skip
    configs = _configs(ctx)
    name = f"memif{socket_id}/{if_id}"
    old = configs.get(name)
    if old is None and name in ctx.switch.tables.by_name:
        raise CliError(f"{name} was made with VPP's commands: change it with them")
    cfg = dataclasses.replace(old) if old else TnsrMemif(socket_id, if_id)
    while args:
        key = args.keyword(SETTINGS, "memif setting")
        if key == "buffer-size":
            cfg.buffer_size = args.integer(key, 128, 65535)
        elif key == "mac-address":
            cfg.mac = args.mac(key)
        elif key == "mode":
            mode = args.keyword(["ethernet", "ip", "punt/inject"], key)
            if mode == "punt/inject":
                raise CliError("mode punt/inject is reserved (TNSR): use ethernet or ip")
            cfg.mode = mode
        elif key == "ring-size":
            cfg.ring_exponent = args.integer("ring-size exponent (2^n slots)", 1, 14)
        elif key == "role":
            _role(cfg, args)
        else:
            secret = word(args, key)
            if len(secret) > MAX_SECRET:
                raise CliError(
                    f"secret of {len(secret)} characters: at most {MAX_SECRET} (memif's INIT "
                    "carries it in 24 bytes with a terminating NUL)"
                )
            cfg.secret = secret
    if old is None:
        _check_role(ctx, cfg)
        sw = cfg.create(ctx)
    elif cfg != old:
        _check_role(ctx, cfg)
        sw = _recreate(ctx, old, cfg)
    else:
        sw = ctx.switch.interface(name)
    configs[name] = cfg
    return Reply(output="", data={"name": sw.name, "sw_if_index": sw.sw_if_index})


def _role(cfg: TnsrMemif, args: Args) -> None:
    cfg.role = args.keyword(["server", "client"], "role")
    cfg.rx_queues = cfg.tx_queues = 1
    while args.peek() in ("rx-queues", "tx-queues"):
        key = args.take("queues")
        if cfg.role == "server":
            raise CliError(f"{key} is a client's setting (role client {key} <n>)")
        setattr(cfg, key.replace("-", "_"), args.integer(key, 1, 255))


def _check_role(ctx: Context, cfg: TnsrMemif) -> None:
    """TNSR: a socket serves one role only (servers or clients)."""
    for other in _configs(ctx).values():
        if (other.socket_id, other.name) != (cfg.socket_id, cfg.name) and (
            other.socket_id == cfg.socket_id and other.role != cfg.role
        ):
            raise CliError(f"socket {cfg.socket_id} serves {other.role}s ({other.name}): "
                           f"a socket serves one role only")  # fmt: skip


def _recreate(ctx: Context, old: TnsrMemif, new: TnsrMemif) -> SwInterface:
    """Make the memif anew with ``new``'s settings, keeping its place in the switch."""
    switch = ctx.switch
    sw = switch.interface(old.name)
    admin_up, mode, bd, ip4 = sw.admin_up, sw.mode, sw.bd, list(sw.ip4)
    xpeer = switch.tables.interfaces.get(sw.xconnect) if sw.xconnect is not None else None
    switch.delete_interface(old.name, "memif")
    try:
        sw = new.create(ctx)
    except SwitchError:
        old.create(ctx)  # put the old one back, then say why
        raise
    if mode is L2Mode.BRIDGE and bd is not None:
        switch.set_bridge(sw.name, bd)
    elif mode is L2Mode.XCONNECT and xpeer is not None:
        switch.set_xconnect(sw.name, xpeer.name)
    for address, prefix in ip4:
        switch.set_ip(sw.name, address, prefix)
    if admin_up:
        switch.set_state(sw.name, True)
    return sw


@command(
    "no interface memif socket",
    "<socket-id> [interface <if-id>]",
    "TNSR: delete a memif socket (when no memif uses it) or one memif",
)
def _no_interface_memif_socket(ctx: Context, args: Args) -> str:
    socket_id = _socket_id(args)
    if args.try_keyword(["interface"]):
        if_id = args.integer("interface id", 0, 0xFFFFFFFF)
        args.end()
        name = f"memif{socket_id}/{if_id}"
        ctx.switch.delete_interface(name, "memif")
        _configs(ctx).pop(name, None)
        return ""
    args.end()
    if socket_id == 0:
        raise CliError(f"socket 0 is always {ctx.switch.sockets[0].filename}: "
                       "it cannot be deleted")  # fmt: skip
    users = _users(ctx, socket_id)
    if users:
        raise CliError(f"socket {socket_id} is in use by {', '.join(users)}: it cannot be deleted")
    ctx.switch.delete_socket(socket_id)
    return ""


@command("show interface memif", "", "TNSR: memif sockets, then each memif's settings and state")
def _show_interface_memif(ctx: Context, args: Args) -> Reply:
    args.end()
    sockets = sorted(ctx.switch.sockets.values(), key=lambda e: e.id)
    data: dict[str, Any] = {
        "sockets": [{"id": e.id, "filename": e.filename} for e in sockets],
        "interfaces": [],
    }
    lines = [table(["Socket Id", "Filename"], [[e.id, e.filename] for e in sockets])]
    configs = _configs(ctx)
    for sw in sorted(ctx.switch.tables.interfaces.values(), key=lambda s: s.sw_if_index):
        port = sw.port
        if not isinstance(port, MemifPort):
            continue
        cfg = port.iface.config
        d = {
            "socket_id": port.socket_id,
            "interface_id": port.iface.id,
            "interface": sw.name,
            "role": port.iface.role.value,  # server or client, TNSR's words
            "mode": cfg.mode.name.lower(),
            "mac_address": format_mac(sw.mac),
            "ring_size": cfg.ring_size,
            "buffer_size": cfg.buffer_size,
            "admin_up": sw.admin_up,
            "link_up": sw.link_up,
            "tnsr": sw.name in configs,
        }
        data["interfaces"].append(d)
        lines += [
            "",
            f"Socket id: {d['socket_id']}",
            f"Interface id: {d['interface_id']}",
            f"Interface: {d['interface']}",
            f"Role: {d['role']}",
            f"Mode: {d['mode']}",
            f"MAC address: {d['mac_address']}",
            f"Ring size: {d['ring_size']}",
            f"Buffer size: {d['buffer_size']}",
            f"Admin up: {str(d['admin_up']).lower()}",
            f"Link up: {str(d['link_up']).lower()}",
        ]
    return Reply(output="\n".join(lines), data=data)
