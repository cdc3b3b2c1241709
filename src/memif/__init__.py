"""memif for Python: FD.io's shared-memory packet interface, wire-compatible with
libmemif, VPP and DPDK's net_memif.

Quick start::

    import memif
    with memif.Socket("@demo") as sock:
        iface = sock.create_interface(role="client", id=0)
        sock.run(until=lambda: iface.connected)
        iface.send([b"\\x00" * 64])
"""

from . import testing
from .access import AccessPolicy, PeerCredentials
from .config import InterfaceConfig, Role
from .errors import (
    ConfigError,
    MemifError,
    NotConnectedError,
    ProtocolError,
    SocketInUseError,
    SocketPathError,
    UnsealedRegionError,
)
from .interface import BufferPool, Interface, InterfaceDetails, Listener
from .loop import EventLoop, RxMode
from .queue import RxBatch, RxQueue, TxBatch, TxQueue
from .sock import ConnectionDetails, Socket, SocketCounters
from .wire import Mode

__version__ = "0.1.0"

__all__ = [
    "AccessPolicy",
    "BufferPool",
    "ConfigError",
    "ConnectionDetails",
    "EventLoop",
    "Interface",
    "InterfaceConfig",
    "InterfaceDetails",
    "Listener",
    "MemifError",
    "Mode",
    "NotConnectedError",
    "PeerCredentials",
    "ProtocolError",
    "Role",
    "RxBatch",
    "RxMode",
    "RxQueue",
    "Socket",
    "SocketCounters",
    "SocketInUseError",
    "SocketPathError",
    "TxBatch",
    "TxQueue",
    "UnsealedRegionError",
    "__version__",
    "testing",
]
