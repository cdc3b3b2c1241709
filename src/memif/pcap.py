"""Classic libpcap capture files: read and write what tcpdump, tshark and Wireshark use.

Only the classic format (not pcapng).  Files are written little-endian with
microsecond (magic ``a1b2c3d4``) or nanosecond (``a1b23c4d``) timestamps; both
magics are read in either byte order.  Timestamps are integer nanoseconds since the
epoch throughout.  ``snaplen`` cuts long packets on write (the record keeps the
original length), as libpcap does.

An ethernet-mode memif carries Ethernet frames (``LINKTYPE_ETHERNET``); an ip-mode
one carries bare IPv4/IPv6 packets (``LINKTYPE_RAW``); punt/inject payloads have no
standard link type and are written as ``LINKTYPE_USER0``.

::

    with PcapWriter("out.pcap") as w:
        w.write(frame)                     # bytes, a numpy array, or a list of segments
    for rec in PcapReader("out.pcap"):
        print(rec.ts_ns, len(rec.data), rec.orig_len)
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, cast

import numpy as np

from .errors import MemifError
from .wire import Mode

if TYPE_CHECKING:
    from .queue import RxBatch

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # bare IPv4 or IPv6, told apart by the version nibble
LINKTYPE_USER0 = 147
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
#: Link types whose packets start with an IP header.
RAW_IP_LINKTYPES = frozenset({LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6})

MAGIC_USEC = 0xA1B2C3D4
MAGIC_NSEC = 0xA1B23C4D
_PCAPNG_MAGIC = 0x0A0D0D0A
#: tcpdump's default: large enough for any jumbo frame.
DEFAULT_SNAPLEN = 262144
#: A record claiming more than this is corrupt (libpcap's limit is 256 KiB for most
#: link types; this leaves room for odd captures and still stops runaway reads).
MAX_RECORD = 1 << 26

_FILE_HEADER = struct.Struct("IHHiIII")  # byte order prefixed when used
_RECORD = np.dtype([("sec", "<u4"), ("frac", "<u4"), ("incl", "<u4"), ("orig", "<u4")])
_NS = 1_000_000_000

PacketLike = bytes | bytearray | memoryview | np.ndarray


class PcapError(MemifError, ValueError):
    """A capture file that is not classic pcap, or is cut short or corrupt."""

    code = "MEMIF_ERR_PCAP"


def linktype_for_mode(mode: Mode | int | str) -> int:
    """The pcap link type of what an interface in ``mode`` carries."""
    mode = Mode.parse(mode)
    if mode is Mode.ETHERNET:
        return LINKTYPE_ETHERNET
    if mode is Mode.IP:
        return LINKTYPE_RAW
    return LINKTYPE_USER0


def linktype_name(linktype: int) -> str:
    """A short name for messages: ``ethernet``, ``raw-ip``, ``user0`` or the number."""
    return {
        LINKTYPE_ETHERNET: "ethernet",
        LINKTYPE_RAW: "raw-ip",
        LINKTYPE_IPV4: "ipv4",
        LINKTYPE_IPV6: "ipv6",
        LINKTYPE_USER0: "user0",
    }.get(linktype, f"linktype {linktype}")


def mode_accepts(mode: Mode | int | str, linktype: int) -> bool:
    """True when packets of ``linktype`` can be sent as they are on a ``mode`` interface."""
    mode = Mode.parse(mode)
    if mode is Mode.ETHERNET:
        return linktype == LINKTYPE_ETHERNET
    if mode is Mode.IP:
        return linktype in RAW_IP_LINKTYPES
    return True  # punt/inject carries whatever the application puts in it


@dataclass(frozen=True)
class Record:
    """One captured packet: ``data`` as captured (at most snaplen), ``orig_len`` on the wire."""

    ts_ns: int
    data: bytes
    orig_len: int

    @property
    def ts(self) -> float:
        """Timestamp in seconds since the epoch."""
        return self.ts_ns / _NS

    @property
    def truncated(self) -> bool:
        """True when the capture kept fewer bytes than the packet had."""
        return len(self.data) < self.orig_len


def _open(file: str | os.PathLike[str] | BinaryIO, mode: str) -> tuple[BinaryIO, bool, str]:
    if isinstance(file, str | os.PathLike):
        stream = cast(BinaryIO, open(file, mode))  # noqa: SIM115 - closed by the owner
        return stream, True, os.fspath(file)
    return file, False, getattr(file, "name", "<stream>")


class PcapWriter:
    """Write packets to a classic pcap file (or any binary stream).

    ``nanosecond`` selects the nanosecond magic; ``snaplen`` caps how much of each
    packet is kept.  Every record is written whole in one call, so a file closed
    (or flushed) between two writes is always complete.
    """

    def __init__(
        self,
        file: str | os.PathLike[str] | BinaryIO,
        linktype: int = LINKTYPE_ETHERNET,
        *,
        snaplen: int = DEFAULT_SNAPLEN,
        nanosecond: bool = False,
    ) -> None:
        if not 0 < snaplen <= 0xFFFFFFFF:
            raise PcapError(f"snaplen {snaplen} must be 1..4294967295")
        if not 0 <= linktype <= 0xFFFFFFFF:
            raise PcapError(f"link type {linktype} out of range")
        self.linktype = linktype
        self.snaplen = snaplen
        self.nanosecond = nanosecond
        self.packets = 0
        self.bytes = 0  # bytes of packet data written (after snaplen)
        self._f, self._owned, self.name = _open(file, "wb")
        magic = MAGIC_NSEC if nanosecond else MAGIC_USEC
        self._f.write(struct.pack("<" + _FILE_HEADER.format, magic, 2, 4, 0, 0, snaplen, linktype))
        self._closed = False

    # -- records
    def _header(self, ts_ns: np.ndarray | int, incl: np.ndarray, orig: np.ndarray) -> np.ndarray:
        hdr = np.empty(len(incl), _RECORD)
        ts = np.asarray(ts_ns, dtype=np.int64)
        hdr["sec"] = ts // _NS
        hdr["frac"] = ts % _NS if self.nanosecond else (ts % _NS) // 1000
        hdr["incl"] = incl
        hdr["orig"] = orig
        return hdr

    def write(
        self,
        packet: PacketLike | Sequence[PacketLike],
        ts_ns: int | None = None,
        orig_len: int | None = None,
    ) -> None:
        """Write one packet; a list or tuple is the packet's segments (a chain), in order.

        ``ts_ns`` defaults to now; ``orig_len`` to the packet's length.
        """
        segs: list[PacketLike] = (
            list(packet) if isinstance(packet, list | tuple) else [cast(PacketLike, packet)]
        )
        size = sum(_nbytes(s) for s in segs)
        incl = min(size, self.snaplen)
        hdr = self._header(
            time.time_ns() if ts_ns is None else ts_ns,
            np.array([incl]),
            np.array([size if orig_len is None else orig_len]),
        )
        # numpy's stubs give ndarray __buffer__ only on Python 3.12+ (PacketLike's ndarray)
        self._f.write(b"".join([hdr.tobytes(), *_cut(segs, incl)]))  # type: ignore[list-item]
        self.packets += 1
        self.bytes += incl

    def write_many(self, packets: Iterable[PacketLike], ts_ns: int | None = None) -> int:
        """Write packets that share one timestamp; returns how many."""
        ts = time.time_ns() if ts_ns is None else ts_ns
        n = 0
        for p in packets:
            self.write(p, ts)
            n += 1
        return n

    def write_batch(
        self, batch: RxBatch, ts_ns: int | None = None, index: np.ndarray | None = None
    ) -> int:
        """Write the packets of a received batch (``index`` picks some), chains whole.

        The records go out as one array, built with whole-burst numpy copies from the
        batch's :meth:`~memif.queue.RxBatch.headers` (views, or one gather that also
        assembles chains).  Returns how many were written.
        """
        ts = time.time_ns() if ts_ns is None else ts_ns
        idx = np.arange(len(batch)) if index is None else np.asarray(index, dtype=np.intp)
        if len(idx) == 0:
            return 0
        lengths = batch.lengths[idx].astype(np.int64)
        incl = np.minimum(lengths, self.snaplen)
        hdr = self._header(ts, incl, lengths)
        rows = batch.headers(int(incl.max()))[idx]
        self._f.write(_records(hdr, rows, incl).data)
        self.packets += len(idx)
        self.bytes += int(incl.sum())
        return len(idx)

    # -- file
    def flush(self) -> None:
        """Push buffered records to the file."""
        if not self._closed:
            self._f.flush()

    def close(self) -> None:
        """Flush and close (the stream too, if the writer opened it)."""
        if self._closed:
            return
        self._closed = True
        self._f.flush()
        if self._owned:
            self._f.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _records(hdr: np.ndarray, rows: np.ndarray, incl: np.ndarray) -> np.ndarray:
    """Record headers ``hdr``, each followed by the first ``incl`` bytes of its row, as bytes."""
    k, n, width = _RECORD.itemsize, len(rows), rows.shape[1]
    head = hdr.view(np.uint8).reshape(n, k)
    if (incl == width).all():  # equal lengths: one record per row
        out = np.empty((n, k + width), np.uint8)
        out[:, :k], out[:, k:] = head, rows
        return out.reshape(-1)
    sizes = k + incl
    starts = np.cumsum(sizes) - sizes
    out = np.empty(int(sizes.sum()), np.uint8)
    data = np.ones(len(out), bool)
    at = (starts[:, None] + np.arange(k)).reshape(-1)
    out[at] = head.reshape(-1)
    data[at] = False
    out[data] = rows[np.arange(width) < incl[:, None]]  # row by row: each record's data
    return out


def _nbytes(p: PacketLike) -> int:
    return p.nbytes if isinstance(p, np.ndarray | memoryview) else len(p)


def _cut(segs: Sequence[PacketLike], size: int) -> list[PacketLike]:
    """The segments holding the first ``size`` bytes (the last one sliced)."""
    out: list[PacketLike] = []
    left = size
    for s in segs:
        if left <= 0:
            break
        n = _nbytes(s)
        if isinstance(s, np.ndarray):
            s = np.ascontiguousarray(s).reshape(-1).view(np.uint8)
        # numpy's stubs give ndarray __buffer__ only on Python 3.12+
        out.append(s if n <= left else memoryview(s).cast("B")[:left])  # type: ignore[arg-type]
        left -= n
    return out


class PcapReader:
    """Iterate over the records of a classic pcap file (or binary stream).

    The file header is read and checked at once.  A file cut short in the middle
    of a record raises :class:`PcapError` once iteration gets there (after yielding
    every complete record), unless ``strict=False``, which stops quietly instead.
    """

    def __init__(self, file: str | os.PathLike[str] | BinaryIO, *, strict: bool = True) -> None:
        self._f, self._owned, self.name = _open(file, "rb")
        self.strict = strict
        try:
            self._read_header()
        except BaseException:
            self.close()
            raise
        self.count = 0  # records read so far

    def _read_header(self) -> None:
        raw = self._f.read(_FILE_HEADER.size)
        if len(raw) < 4:
            raise PcapError(f"{self.name}: not a pcap file (empty or shorter than 4 bytes)")
        (magic_le,) = struct.unpack("<I", raw[:4])
        (magic_be,) = struct.unpack(">I", raw[:4])
        if magic_le == _PCAPNG_MAGIC:
            raise PcapError(
                f"{self.name}: is a pcapng file; only classic pcap is read "
                "(convert it: editcap -F pcap IN OUT)"
            )
        if magic_le in (MAGIC_USEC, MAGIC_NSEC):
            order, magic = "<", magic_le
        elif magic_be in (MAGIC_USEC, MAGIC_NSEC):
            order, magic = ">", magic_be
        else:
            raise PcapError(f"{self.name}: not a pcap file (magic {raw[:4].hex()})")
        if len(raw) < _FILE_HEADER.size:
            raise PcapError(
                f"{self.name}: truncated file header ({len(raw)} of {_FILE_HEADER.size} bytes)"
            )
        _, major, minor, _, _, snaplen, network = struct.unpack(order + _FILE_HEADER.format, raw)
        if major != 2:
            raise PcapError(f"{self.name}: unsupported pcap version {major}.{minor}")
        self.byteorder = "little" if order == "<" else "big"
        self.nanosecond = magic == MAGIC_NSEC
        self.version = (major, minor)
        self.snaplen = snaplen
        self.linktype = network & 0x03FFFFFF  # upper bits: FCS length flags
        self._rec = struct.Struct(order + "IIII")
        self._offset = _FILE_HEADER.size

    def __iter__(self) -> Iterator[Record]:
        rec, read, mult = self._rec, self._f.read, 1 if self.nanosecond else 1000
        while True:
            raw = read(16)
            if not raw:
                return
            if len(raw) < 16:
                self._truncated(f"record header has {len(raw)} of 16 bytes")
                return
            sec, frac, incl, orig = rec.unpack(raw)
            if incl > MAX_RECORD:
                raise PcapError(
                    f"{self.name}: corrupt record {self.count + 1} at byte {self._offset}: "
                    f"captured length {incl} is impossible"
                )
            data = read(incl)
            if len(data) < incl:
                self._truncated(f"record needs {incl} bytes of data, only {len(data)} left")
                return
            self._offset += 16 + incl
            self.count += 1
            yield Record(sec * _NS + frac * mult, data, orig)

    def _truncated(self, what: str) -> None:
        if self.strict:
            raise PcapError(
                f"{self.name}: file is cut short in record {self.count + 1} "
                f"at byte {self._offset}: {what}"
            )

    def close(self) -> None:
        """Close the file if the reader opened it."""
        if self._owned:
            self._f.close()

    def __enter__(self) -> PcapReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_pcap(file: str | os.PathLike[str] | BinaryIO, *, strict: bool = True) -> list[Record]:
    """Every record of a capture file."""
    with PcapReader(file, strict=strict) as r:
        return list(r)


def write_pcap(
    file: str | os.PathLike[str] | BinaryIO,
    packets: Iterable[PacketLike | Record],
    linktype: int = LINKTYPE_ETHERNET,
    *,
    snaplen: int = DEFAULT_SNAPLEN,
    nanosecond: bool = False,
    ts_ns: int | None = None,
    interval_ns: int = 0,
) -> int:
    """Write packets (or Records, keeping their timestamps) to a file; returns how many.

    Plain packets get ``ts_ns`` (default now) plus ``interval_ns`` per packet.
    """
    start = time.time_ns() if ts_ns is None else ts_ns
    with PcapWriter(file, linktype, snaplen=snaplen, nanosecond=nanosecond) as w:
        n = 0
        for n, p in enumerate(packets, 1):
            if isinstance(p, Record):
                w.write(p.data, p.ts_ns, p.orig_len)
            else:
                w.write(p, start + (n - 1) * interval_ns)
        return n
