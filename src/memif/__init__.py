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
from .config import InterfaceConfig, Role
from .errors import ConfigError, MemifError, NotConnectedError, ProtocolError, SocketInUseError
from .interface import BufferPool, Interface, InterfaceDetails
from .queue import RxBatch, RxQueue, TxBatch, TxQueue
from .sock import Socket
from .wire import Mode

__version__ = "0.1.0"

__all__ = [
    "BufferPool",
    "ConfigError",
    "Interface",
    "InterfaceConfig",
    "InterfaceDetails",
    "MemifError",
    "Mode",
    "NotConnectedError",
    "ProtocolError",
    "Role",
    "RxBatch",
    "RxQueue",
    "Socket",
    "SocketInUseError",
    "TxBatch",
    "TxQueue",
    "__version__",
    "testing",
]
