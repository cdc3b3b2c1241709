"""Interface configuration: roles, limits and their validation, in one place."""

from __future__ import annotations

import argparse
import enum
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from . import wire
from .errors import ConfigError
from .proto import DEFAULT_HANDSHAKE_TIMEOUT

T = TypeVar("T")

#: VPP's default memif socket: memifd's socket 0 and every tool's ``--socket`` default.
DEFAULT_SOCKET = "/run/vpp/memif.sock"


def config_arg(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser that raises ConfigError: its message becomes the
    one-line usage error (for the tools' and memifd's options)."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


class Role(enum.Enum):
    """Server (master) listens and maps; client (slave) connects and allocates."""

    SERVER = "server"
    CLIENT = "client"

    @classmethod
    def parse(cls, value: Role | str) -> Role:
        """Accept ``server``/``master`` and ``client``/``slave``."""
        if isinstance(value, Role):
            return value
        key = str(value).strip().lower()
        if key in {"server", "master"}:
            return cls.SERVER
        if key in {"client", "slave"}:
            return cls.CLIENT
        raise ConfigError(f"unknown role {value!r}: expected server (master) or client (slave)")

    @property
    def vpp_name(self) -> str:
        """VPP's word for the role."""
        return "master" if self is Role.SERVER else "slave"


_MAC = re.compile(r"^([0-9a-fA-F]{2})(:[0-9a-fA-F]{2}){5}$")


def parse_mac(text: str) -> bytes:
    """``aa:bb:cc:dd:ee:ff`` to 6 bytes."""
    if not _MAC.match(text):
        raise ConfigError(
            f"bad MAC address {text!r}: expected six hex pairs like 02:fe:00:00:00:01"
        )
    return bytes(int(x, 16) for x in text.split(":"))


def random_mac() -> bytes:
    """A locally administered MAC of VPP's form ``02:fe:xx:xx:xx:xx``."""
    return b"\x02\xfe" + os.urandom(4)


def format_mac(mac: bytes) -> str:
    """6 bytes to ``aa:bb:cc:dd:ee:ff``."""
    return ":".join(f"{b:02x}" for b in mac)


def _log2(ring_size: int) -> int:
    if ring_size < 2 or ring_size & (ring_size - 1) or ring_size > 1 << wire.MAX_LOG2_RING_SIZE:
        raise ConfigError(
            f"ring size {ring_size} must be a power of two from 2 to {1 << wire.MAX_LOG2_RING_SIZE}"
        )
    return ring_size.bit_length() - 1


@dataclass
class InterfaceConfig:
    """Everything one memif interface is created with (validated by :meth:`check`).

    ``rx_queues``/``tx_queues`` are from this side's point of view; only a client's
    values shape the connection (a server's HELLO advertises fixed limits).
    ``single_region`` selects VPP's layout (rings and buffers in region 0) instead of
    libmemif's (rings in region 0, buffers in region 1).
    """

    id: int = 0
    role: Role = Role.CLIENT
    mode: wire.Mode = wire.Mode.ETHERNET
    secret: str = ""
    name: str = ""
    rx_queues: int = 1
    tx_queues: int = 1
    ring_size: int = 1 << wire.DEFAULT_LOG2_RING_SIZE
    buffer_size: int = wire.DEFAULT_BUFFER_SIZE
    headroom: int = 0
    mac: bytes = field(default_factory=random_mac)
    single_region: bool = False
    cacheline: int = wire.DEFAULT_CACHELINE
    reconnect_interval: float | None = 2.0
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT
    polling: bool = False
    post_rx_buffers: bool = True  # client: post own buffers at connect (off for zero-copy)

    @property
    def log2_ring_size(self) -> int:
        """log2 of ``ring_size``."""
        return _log2(self.ring_size)

    def check(self) -> InterfaceConfig:
        """Normalise the fields and raise ConfigError naming the bad one."""
        self.role = Role.parse(self.role)
        try:
            self.mode = wire.Mode.parse(self.mode)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if isinstance(self.mac, str):
            self.mac = parse_mac(self.mac)
        if not 0 <= self.id <= 0xFFFFFFFF:
            raise ConfigError(f"interface id {self.id} must be 0..4294967295")
        if len(self.secret.encode()) > wire.SECRET_SIZE - 1:
            raise ConfigError(f"secret is longer than {wire.SECRET_SIZE - 1} characters")
        if len(self.name.encode()) > wire.NAME_SIZE - 1:
            raise ConfigError(f"interface name is longer than {wire.NAME_SIZE - 1} characters")
        for what in ("rx_queues", "tx_queues"):
            n = getattr(self, what)
            if not 1 <= n <= wire.MAX_QUEUES:
                raise ConfigError(f"{what.replace('_', '-')} {n} must be 1..{wire.MAX_QUEUES}")
        _log2(self.ring_size)
        if not 128 <= self.buffer_size <= wire.MAX_BUFFER_SIZE:
            raise ConfigError(f"buffer size {self.buffer_size} must be 128..{wire.MAX_BUFFER_SIZE}")
        if not 0 <= self.headroom < self.buffer_size:
            raise ConfigError(f"headroom {self.headroom} must be below the buffer size")
        total = (self.rx_queues + self.tx_queues) * self.ring_size * self.buffer_size
        if total >= 1 << 32:
            raise ConfigError(
                f"{total} bytes of buffers exceed a region's 4 GiB offset range: "
                "use fewer queues, a smaller ring or smaller buffers"
            )
        wire.ring_header_dtype(self.cacheline)
        if self.reconnect_interval is not None and self.reconnect_interval <= 0:
            self.reconnect_interval = None
        return self
