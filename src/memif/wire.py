"""The memif 2.0 wire format: control messages and the shared-memory layout.

This module is the single source of truth for every byte offset of the protocol.
Control messages are frozen dataclasses; :func:`encode` turns one into exactly
128 bytes and :func:`decode` turns 128 bytes back into one, raising
:class:`~memif.errors.ProtocolError` for anything else.  The ring header and the
descriptor are numpy dtypes derived from the cache-line size.

Layout reference: FD.io ``extras/libmemif/src/memif.h`` and VPP's
``src/plugins/memif/memif.h`` (memif protocol version 2.0).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from functools import cache

import numpy as np

from .errors import ProtocolError

VERSION = 0x0200
COOKIE = 0x3E31F20
MSG_SIZE = 128
NAME_SIZE = 32
SECRET_SIZE = 24
REASON_SIZE = 96
MAX_LOG2_RING_SIZE = 14
MAX_RING_INDEX = 255
MAX_REGION_INDEX = 255
MAX_QUEUES = 255
MAX_BUFFER_SIZE = 65535
DEFAULT_LOG2_RING_SIZE = 10
DEFAULT_BUFFER_SIZE = 2048
DEFAULT_CACHELINE = 64
DESC_SIZE = 16

RING_FLAG_MASK_INT = 1
DESC_FLAG_NEXT = 1
ADD_RING_FLAG_S2M = 1


class MsgType(enum.IntEnum):
    """Control message types (``memif_msg_type_t``)."""

    NONE = 0
    ACK = 1
    HELLO = 2
    INIT = 3
    ADD_REGION = 4
    ADD_RING = 5
    CONNECT = 6
    CONNECTED = 7
    DISCONNECT = 8


class Mode(enum.IntEnum):
    """Interface mode carried in INIT."""

    ETHERNET = 0
    IP = 1
    PUNT_INJECT = 2

    @classmethod
    def parse(cls, value: Mode | int | str) -> Mode:
        """Accept a Mode, its number, or a name such as ``"ethernet"``/``"ip"``."""
        if isinstance(value, str):
            key = value.strip().lower().replace("-", "_").replace("/", "_")
            if key in {"eth", "ethernet"}:
                return cls.ETHERNET
            if key == "ip":
                return cls.IP
            if key in {"punt_inject", "punt", "inject"}:
                return cls.PUNT_INJECT
            raise ValueError(f"unknown mode {value!r}: expected ethernet, ip or punt-inject")
        return cls(value)


# --------------------------------------------------------------------------- strings


def _pack_str(text: str, size: int, field: str) -> bytes:
    raw = text.encode()
    if len(raw) > size - 1:
        raise ValueError(f"{field} {text!r} is longer than {size - 1} bytes")
    return raw.ljust(size, b"\0")


def _unpack_str(raw: bytes) -> str:
    """The text before the first NUL, trimmed so that it always fits its field again.

    A peer may fill the whole field with no NUL, or with invalid UTF-8 (each bad byte
    becomes U+FFFD, three bytes): whole characters are dropped until it fits.
    """
    text = raw.split(b"\0", 1)[0][: len(raw) - 1].decode("utf-8", errors="replace")
    while len(text.encode()) > len(raw) - 1:
        text = text[:-1]
    return text


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Ack:
    """ACK: the master tells the slave to send its next message."""

    TYPE = MsgType.ACK


@dataclass(frozen=True)
class Hello:
    """HELLO: the master's fixed limits, sent right after ``accept()``."""

    name: str = ""
    min_version: int = VERSION
    max_version: int = VERSION
    max_region: int = MAX_REGION_INDEX
    max_m2s_ring: int = MAX_RING_INDEX
    max_s2m_ring: int = MAX_RING_INDEX
    max_log2_ring_size: int = MAX_LOG2_RING_SIZE
    TYPE = MsgType.HELLO


@dataclass(frozen=True)
class Init:
    """INIT: the slave names the interface id, mode, secret and its application."""

    id: int = 0
    mode: Mode = Mode.ETHERNET
    secret: str = ""
    name: str = ""
    version: int = VERSION
    TYPE = MsgType.INIT


@dataclass(frozen=True)
class AddRegion:
    """ADD_REGION: one shared-memory region; its fd travels with SCM_RIGHTS."""

    index: int
    size: int
    TYPE = MsgType.ADD_REGION


@dataclass(frozen=True)
class AddRing:
    """ADD_RING: one ring's place in a region; its interrupt eventfd travels along."""

    s2m: bool
    index: int
    region: int
    offset: int
    log2_size: int
    private_hdr_size: int = 0
    TYPE = MsgType.ADD_RING


@dataclass(frozen=True)
class Connect:
    """CONNECT: the slave is done; carries the slave's interface name."""

    if_name: str = ""
    TYPE = MsgType.CONNECT


@dataclass(frozen=True)
class Connected:
    """CONNECTED: the master has mapped everything; carries its interface name."""

    if_name: str = ""
    TYPE = MsgType.CONNECTED


@dataclass(frozen=True)
class Disconnect:
    """DISCONNECT: either side gives a reason, then closes."""

    reason: str = ""
    code: int = 0
    TYPE = MsgType.DISCONNECT


Message = Ack | Hello | Init | AddRegion | AddRing | Connect | Connected | Disconnect

# Field layouts after the 2-byte type, packed little-endian, one per type.
_HELLO = struct.Struct(f"<{NAME_SIZE}sHHHHHB")
_INIT = struct.Struct(f"<HIB{SECRET_SIZE}s{NAME_SIZE}s")
_ADD_REGION = struct.Struct("<HQ")
_ADD_RING = struct.Struct("<HHHIBH")
_IF_NAME = struct.Struct(f"<{NAME_SIZE}s")
_DISCONNECT = struct.Struct(f"<I{REASON_SIZE}s")
_TYPE = struct.Struct("<H")
assert _HELLO.size == 43 and _INIT.size == 63 and _ADD_REGION.size == 10
assert _ADD_RING.size == 13 and _DISCONNECT.size == 100


def _u(value: int, bits: int, field: str) -> int:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{field} {value} does not fit in {bits} bits")
    return value


def encode(msg: Message) -> bytes:
    """Encode one message into exactly 128 bytes (unused bytes are zero)."""
    match msg:
        case Ack():
            body = b""
        case Hello():
            body = _HELLO.pack(
                _pack_str(msg.name, NAME_SIZE, "name"),
                _u(msg.min_version, 16, "min_version"),
                _u(msg.max_version, 16, "max_version"),
                _u(msg.max_region, 16, "max_region"),
                _u(msg.max_m2s_ring, 16, "max_m2s_ring"),
                _u(msg.max_s2m_ring, 16, "max_s2m_ring"),
                _u(msg.max_log2_ring_size, 8, "max_log2_ring_size"),
            )
        case Init():
            body = _INIT.pack(
                _u(msg.version, 16, "version"),
                _u(msg.id, 32, "id"),
                _u(int(msg.mode), 8, "mode"),
                _pack_str(msg.secret, SECRET_SIZE, "secret"),
                _pack_str(msg.name, NAME_SIZE, "name"),
            )
        case AddRegion():
            body = _ADD_REGION.pack(_u(msg.index, 16, "index"), _u(msg.size, 64, "size"))
        case AddRing():
            body = _ADD_RING.pack(
                ADD_RING_FLAG_S2M if msg.s2m else 0,
                _u(msg.index, 16, "index"),
                _u(msg.region, 16, "region"),
                _u(msg.offset, 32, "offset"),
                _u(msg.log2_size, 8, "log2_size"),
                _u(msg.private_hdr_size, 16, "private_hdr_size"),
            )
        case Connect() | Connected():
            body = _IF_NAME.pack(_pack_str(msg.if_name, NAME_SIZE, "if_name"))
        case Disconnect():
            # strlcpy-like truncation, but never in the middle of a UTF-8 character
            reason = msg.reason.encode()[: REASON_SIZE - 1].decode(errors="ignore").encode()
            body = _DISCONNECT.pack(_u(msg.code, 32, "code"), reason)
        case _:
            raise TypeError(f"not a memif message: {msg!r}")
    return (_TYPE.pack(msg.TYPE) + body).ljust(MSG_SIZE, b"\0")


def is_disconnect(data: bytes) -> bool:
    """True when ``data`` is a well-sized DISCONNECT (whatever came along with it)."""
    return len(data) == MSG_SIZE and _TYPE.unpack_from(data, 0)[0] == MsgType.DISCONNECT


def decode(data: bytes) -> Message:
    """Decode exactly 128 bytes into a message; only the type's own fields are read.

    Raises :class:`ProtocolError` for a wrong length or an unknown type.
    """
    if len(data) != MSG_SIZE:
        raise ProtocolError(f"malformed message: {len(data)} bytes, expected {MSG_SIZE}")
    (mtype,) = _TYPE.unpack_from(data, 0)
    match mtype:
        case MsgType.ACK:
            return Ack()
        case MsgType.HELLO:
            name, vmin, vmax, mreg, mm2s, ms2m, mlog2 = _HELLO.unpack_from(data, 2)
            return Hello(_unpack_str(name), vmin, vmax, mreg, mm2s, ms2m, mlog2)
        case MsgType.INIT:
            version, if_id, mode, secret, name = _INIT.unpack_from(data, 2)
            try:
                mode = Mode(mode)
            except ValueError:
                raise ProtocolError(f"unsupported interface mode {mode}") from None
            return Init(if_id, mode, _unpack_str(secret), _unpack_str(name), version)
        case MsgType.ADD_REGION:
            return AddRegion(*_ADD_REGION.unpack_from(data, 2))
        case MsgType.ADD_RING:
            flags, index, region, offset, log2, priv = _ADD_RING.unpack_from(data, 2)
            return AddRing(bool(flags & ADD_RING_FLAG_S2M), index, region, offset, log2, priv)
        case MsgType.CONNECT:
            return Connect(_unpack_str(_IF_NAME.unpack_from(data, 2)[0]))
        case MsgType.CONNECTED:
            return Connected(_unpack_str(_IF_NAME.unpack_from(data, 2)[0]))
        case MsgType.DISCONNECT:
            code, reason = _DISCONNECT.unpack_from(data, 2)
            return Disconnect(_unpack_str(reason), code)
    raise ProtocolError(f"unknown message type (0x{mtype:x})")


# --------------------------------------------------------------------------- shared memory


@cache
def ring_header_dtype(cacheline: int = DEFAULT_CACHELINE) -> np.dtype:
    """``memif_ring_t`` header: cookie, flags, head on line 0; tail on line 1."""
    if cacheline < 16 or cacheline & (cacheline - 1):
        raise ValueError(f"cache-line size {cacheline} must be a power of two >= 16")
    return np.dtype(
        {
            "names": ["cookie", "flags", "head", "tail"],
            "formats": ["<u4", "<u2", "<u2", "<u2"],
            "offsets": [0, 4, 6, cacheline],
            "itemsize": 2 * cacheline,
        }
    )


DESC_DTYPE = np.dtype(
    [("flags", "<u2"), ("region", "<u2"), ("length", "<u4"), ("offset", "<u4"), ("metadata", "<u4")]
)
assert DESC_DTYPE.itemsize == DESC_SIZE


def ring_bytes(log2_size: int, cacheline: int = DEFAULT_CACHELINE) -> int:
    """Bytes one ring takes in its region: header plus 2**log2_size descriptors."""
    return ring_header_dtype(cacheline).itemsize + DESC_SIZE * (1 << log2_size)
