"""Shared memory: regions, ring views and the slave's layout.

This is the only module that calls ``memfd_create`` or ``mmap`` and the only one
that reads or writes a ring's ``head``, ``tail`` and ``flags``.  Regions are numpy
``uint8`` arrays over a shared mapping; a ring is a header plus a descriptor array
(``wire.DESC_DTYPE``) inside one of them.

Ownership of the counters: only the slave writes ``head`` and only the master
writes ``tail``.  Both are free-running u16 counters; slots are ``counter & mask``.
Stores go through plain memory writes, which x86's total store order makes
visible in program order (data and descriptors before the counter); that is the
release/acquire pairing libmemif and VPP rely on there.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import select
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import numpy as np

from . import wire
from .errors import ConfigError, ProtocolError, UnsealedRegionError

_F_SEAL_SEAL = getattr(fcntl, "F_SEAL_SEAL", 0x0001)
_F_SEAL_SHRINK = getattr(fcntl, "F_SEAL_SHRINK", 0x0002)
_F_SEAL_WRITES = getattr(fcntl, "F_SEAL_WRITE", 0x0008) | 0x0010  # | F_SEAL_FUTURE_WRITE
_SEALS = _F_SEAL_SHRINK | _F_SEAL_SEAL
_F_ADD_SEALS = getattr(fcntl, "F_ADD_SEALS", 1033)
_F_GET_SEALS = getattr(fcntl, "F_GET_SEALS", 1034)


class Region:
    """One mapped shared-memory region (``fd`` + ``size`` bytes from offset 0).

    ``array`` is a writable ``uint8`` view of the whole mapping.  When ``owns_fd`` is
    false the fd belongs to someone else (an application buffer pool) and
    :meth:`close` leaves it open.
    """

    def __init__(self, fd: int, size: int, *, owns_fd: bool = True) -> None:
        self.fd = fd
        self.size = size
        self.owns_fd = owns_fd
        self._mmap: mmap.mmap | None = mmap.mmap(
            fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE
        )
        self.array: np.ndarray = np.frombuffer(self._mmap, dtype=np.uint8)

    @classmethod
    def create(cls, size: int, name: str = "memif region") -> Region:
        """Allocate a memfd of ``size`` bytes, sealed against shrinking, and map it."""
        if size <= 0:
            raise ConfigError(f"region size {size} must be positive")
        fd = os.memfd_create(name, os.MFD_ALLOW_SEALING | os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            fcntl.fcntl(fd, _F_ADD_SEALS, _SEALS)
            return cls(fd, size)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def map_offer(cls, index: int, fd: int, size: int, *, unsealed_ok: bool = False) -> Region:
        """Map a region a peer sent; refuse fds that cannot back ``size`` bytes.

        ``unsealed_ok`` as in :func:`check_region_fd`.  The fd stays the caller's:
        the mapping outlives it.
        """
        check_region_fd(index, fd, size, unsealed_ok=unsealed_ok)
        try:
            return cls(fd, size, owns_fd=False)
        except (OSError, ValueError, OverflowError) as exc:
            raise ProtocolError(f"region {index}: cannot map ({exc})") from None

    def close(self) -> None:
        """Unmap (once nobody holds a view) and close the fd if we own it."""
        mm, self._mmap = self._mmap, None
        self.array = np.empty(0, np.uint8)
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # a caller still holds a view; the mapping goes when it does
        if self.owns_fd and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1


UNTRUSTED = "peer not trusted with unsealed memory"
"""The default ``why`` of a refused unsealed region when the caller names no peer."""


def check_region_fd(
    index: int, fd: int, size: int, *, unsealed_ok: bool = False, untrusted: str = UNTRUSTED
) -> None:
    """Refuse a peer's region fd unless it is shared memory that backs ``size`` bytes.

    Shared memory is what memfd, shm_open and hugetlbfs give (the files that know
    seals); a disk file, pipe, socket or device is refused.  The fd must be open for
    reading and writing and not sealed against writes, so ``mmap`` cannot fail later.

    The memory must be sealed against shrinking, or the peer could truncate it under
    our mapping and our next access would die of SIGBUS.  A memfd that allows
    sealing (libmemif, VPP and DPDK make theirs so) gets ``F_SEAL_SHRINK`` here.
    Memory that cannot be sealed (a memfd made without ``MFD_ALLOW_SEALING`` or
    already ``F_SEAL_SEAL``'d, a ``/dev/shm`` file, hugetlbfs) is used only when
    ``unsealed_ok`` (the peer is trusted: it could stop us anyway); otherwise
    :class:`UnsealedRegionError` says why, ending with ``untrusted``.  Then the size
    is read, and a file smaller than ``size`` is refused before it is mapped.
    """
    try:
        st = os.fstat(fd)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError as exc:
        raise ProtocolError(f"region {index}: bad fd ({exc.strerror})") from None
    try:
        seals = fcntl.fcntl(fd, _F_GET_SEALS) if stat.S_ISREG(st.st_mode) else None
    except OSError:
        seals = None  # a file on a disk: not shared memory
    if seals is None:
        raise ProtocolError(f"region {index}: fd is not shareable memory")
    if flags & os.O_ACCMODE != os.O_RDWR:
        raise ProtocolError(f"region {index}: fd is not open for reading and writing")
    if seals & _F_SEAL_WRITES:
        raise ProtocolError(f"region {index}: memory is sealed against writes")
    if not seals & _F_SEAL_SHRINK:
        if not seals & _F_SEAL_SEAL:
            try:
                fcntl.fcntl(fd, _F_ADD_SEALS, _F_SEAL_SHRINK)
                seals |= _F_SEAL_SHRINK
            except OSError:
                pass  # some files cannot be sealed (hugetlbfs)
        if not seals & _F_SEAL_SHRINK and not unsealed_ok:
            raise UnsealedRegionError(
                f"region {index}: memory not sealed against shrinking ({untrusted})"
            )
        st = os.fstat(fd)  # the size that counts is the one after sealing
    if st.st_size < size:
        raise ProtocolError(f"region {index}: size {size} larger than its memory ({st.st_size})")


class Ring:
    """A ring header and its descriptors inside a region, plus its interrupt eventfd.

    ``desc`` is a structured array of ``2**log2_size`` descriptors in shared memory;
    ``d_flags``, ``d_region``, ``d_length``, ``d_offset`` are its field views.
    """

    def __init__(
        self,
        region: Region,
        offset: int,
        log2_size: int,
        cacheline: int,
        eventfd: int,
        region_index: int = 0,
    ) -> None:
        hdr = wire.ring_header_dtype(cacheline)
        self.size = 1 << log2_size
        self.mask = self.size - 1
        self.log2_size = log2_size
        self.offset = offset
        self.region_index = region_index
        self.eventfd = eventfd
        self._kick_poll = select.poll()
        self._kick_poll.register(eventfd, select.POLLOUT)
        end = offset + wire.ring_bytes(log2_size, cacheline)
        if offset % 8 or end > region.size:
            raise ProtocolError(f"ring at offset {offset} does not fit its region")
        self._words = region.array[offset : offset + hdr.itemsize].view(np.uint16)
        self._cookie = region.array[offset : offset + 4].view(np.uint32)
        fields = cast("Mapping[str, tuple[np.dtype, int]]", hdr.fields)  # a record
        self._tail_word = fields["tail"][1] // 2
        self.desc = np.ndarray(
            self.size, wire.DESC_DTYPE, buffer=region.array, offset=offset + hdr.itemsize
        )
        self.d_flags = self.desc["flags"]
        self.d_region = self.desc["region"]
        self.d_length = self.desc["length"]
        self.d_offset = self.desc["offset"]
        self.desc_words = self.desc.view(np.uint64)  # two words per descriptor: fast copies
        #: the descriptors as uint32 words, four each (``flags | region << 16``, ``length``,
        #: ``offset``, ``metadata``): the cheapest scalar reads and writes of one slot, and
        #: slice copies between memoryviews at the cost of a memcpy
        self.desc_u32 = memoryview(self.desc.view(np.uint32))  # type: ignore[arg-type]
        # numpy's stubs give ndarray __buffer__ only on Python 3.12+; it is a buffer on 3.11
        self._hdr = memoryview(self._words)  # type: ignore[arg-type]  # fast scalar access

    # Scalar counters: memoryview indexing is the cheapest access Python has.
    @property
    def head(self) -> int:
        """Slave-written counter."""
        return self._hdr[3]

    @head.setter
    def head(self, value: int) -> None:
        self._hdr[3] = value & 0xFFFF

    @property
    def tail(self) -> int:
        """Master-written counter."""
        return self._hdr[self._tail_word]

    @tail.setter
    def tail(self, value: int) -> None:
        self._hdr[self._tail_word] = value & 0xFFFF

    @property
    def flags(self) -> int:
        """Ring flags; bit 0 is MASK_INT, written by the ring's consumer."""
        return self._hdr[2]

    @flags.setter
    def flags(self, value: int) -> None:
        self._hdr[2] = value

    @property
    def cookie(self) -> int:
        """The ring's cookie word (``wire.COOKIE`` when the slave set it up)."""
        return int(self._cookie[0])

    def init(self) -> None:
        """Slave: write the cookie and zero the counters and flags."""
        self._cookie[0] = wire.COOKIE
        self._hdr[2] = 0
        self._hdr[3] = 0
        self._hdr[self._tail_word] = 0
        self.desc[:] = 0

    def kick(self) -> None:
        """Signal the consumer unless it masked interrupts.

        The eventfd's O_NONBLOCK flag is shared with the peer, who may clear it and
        saturate the counter: a plain write would then block us for ever.  So the
        write happens only when poll says it cannot block.
        """
        if not self._hdr[2] & wire.RING_FLAG_MASK_INT:
            try:
                if self._kick_poll.poll(0):
                    os.eventfd_write(self.eventfd, 1)
            except OSError:
                pass  # counter saturated or fd gone: the consumer is polling anyway

    def release(self) -> None:
        """Drop the views into shared memory (before the region is unmapped)."""
        self._hdr.release()
        self.desc_u32.release()
        for name in (
            "_words",
            "_cookie",
            "desc",
            "d_flags",
            "d_region",
            "d_length",
            "d_offset",
            "desc_words",
        ):
            setattr(self, name, None)


@dataclass(frozen=True)
class Layout:
    """Where a slave puts its rings and buffers (libmemif's or VPP's arrangement).

    ``libmemif``: rings in region 0, buffers in region 1.  ``vpp``: rings followed by
    buffers in region 0.  Buffer ``g`` (global slot, S2M rings first) sits at
    ``buffer_base + g * buffer_size`` in ``buffer_region``.
    """

    num_s2m: int
    num_m2s: int
    log2_ring_size: int
    buffer_size: int
    cacheline: int = wire.DEFAULT_CACHELINE
    single_region: bool = False

    @property
    def ring_bytes(self) -> int:
        """Bytes of one ring."""
        return wire.ring_bytes(self.log2_ring_size, self.cacheline)

    @property
    def rings_total(self) -> int:
        """Bytes of all rings, S2M first."""
        return (self.num_s2m + self.num_m2s) * self.ring_bytes

    @property
    def buffers_total(self) -> int:
        """Bytes of all packet buffers."""
        return (self.num_s2m + self.num_m2s) * (1 << self.log2_ring_size) * self.buffer_size

    @property
    def buffer_region(self) -> int:
        """Index of the region that holds the buffers."""
        return 0 if self.single_region else 1

    @property
    def buffer_base(self) -> int:
        """Offset of the first buffer inside ``buffer_region``."""
        return self.rings_total if self.single_region else 0

    def region_sizes(self) -> list[int]:
        """Sizes of the regions this layout needs, in index order."""
        if self.single_region:
            return [self.rings_total + self.buffers_total]
        return [self.rings_total, self.buffers_total]

    def ring_offset(self, s2m: bool, index: int) -> int:
        """Offset of a ring in region 0."""
        return (index if s2m else self.num_s2m + index) * self.ring_bytes

    def buffer_offsets(self, s2m: bool, index: int) -> np.ndarray:
        """Offsets of the dedicated buffer of every slot of a ring."""
        n = 1 << self.log2_ring_size
        first = (index if s2m else self.num_s2m + index) * n
        return (
            self.buffer_base + (first + np.arange(n, dtype=np.int64)) * self.buffer_size
        ).astype(np.uint32)
