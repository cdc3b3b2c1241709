"""What both directions share: counters, descriptor copies and checks, strided views."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, cast

import numpy as np

from .. import wire
from ..errors import NotConnectedError
from ..shm import Region, Ring

_U16 = 0xFFFF
_FULL, _TOO_BIG = object(), object()  # outcomes of TxQueue._send_one
_EMPTY_U16 = np.empty(0, np.uint16)
_EMPTY_U32 = np.empty(0, np.uint32)
#: gathers of many windows are staged this many bytes at a time (they stay in cache)
CHUNK_BYTES = 1 << 18

#: Receive drop reasons, one counter each (``RxQueue.errors``).
RX_ERRORS: dict[str, str] = {
    "bad_region": "descriptor names a region that does not exist",
    "bad_offset": "descriptor points outside its region",
    "zero_length": "descriptor with zero length",
    "chain_too_long": "buffer chain longer than the ring",
}
#: Transmit drop reasons (``TxQueue.errors``).
TX_ERRORS: dict[str, str] = {
    "no_free_slots": "ring full, packet not sent",
    "too_big": "packet larger than the ring can carry",
}


@dataclass
class QueueStats:
    """Packets, bytes and named drop counters of one queue."""

    packets: int = 0
    bytes: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def drops(self) -> int:
        """Sum of every drop counter."""
        return sum(self.errors.values())

    def count(self, reason: str, n: int = 1) -> None:
        """Add ``n`` drops under ``reason`` (a reason appears once it counted something)."""
        if n:
            self.errors[reason] = self.errors.get(reason, 0) + n

    def clear(self) -> None:
        """Reset every counter."""
        self.packets = self.bytes = 0
        self.errors.clear()


def strided_view(region: np.ndarray, offsets: np.ndarray, width: int) -> np.ndarray | None:
    """A zero-copy ``(n, width)`` view when ``offsets`` are equally spaced, else None.

    The spacing may be negative (buffers handed out downwards, as DPDK does); rows
    must not overlap (``|spacing| >= width``) and every row must lie in ``region``.
    """
    n = len(offsets)
    if n == 0:
        return None
    first = int(offsets[0])
    if n == 1:
        stride = width
    else:
        stride = int(offsets[1]) - first
        if abs(stride) < width or int(offsets[-1]) - first != stride * (n - 1):
            return None
        if n > 2:  # differences in the offsets' own (wrapping) dtype: compare likewise
            diff = offsets[1:] - offsets[:-1]
            if np.count_nonzero(diff != np.array(stride).astype(diff.dtype)):
                return None
    low, high = min(first, first + stride * (n - 1)), max(first, first + stride * (n - 1))
    if low < 0 or high + width > len(region):
        return None
    return np.ndarray((n, width), np.uint8, buffer=region, offset=first, strides=(stride, 1))


def row_items(rows: np.ndarray, width: int) -> np.ndarray:
    """The first ``width`` bytes of each row of a 2-D uint8 array, one void item per row.

    A 1-D view: indexing it moves each row with one memcpy, several times cheaper
    than numpy's element loops over a ``[rows, :width]`` byte slice for short rows.
    The rows' bytes must be contiguous (strided views and grids qualify).
    """
    return rows[:, :width].view(np.dtype((np.void, width)))[:, 0]


def byte_items(memory: np.ndarray, width: int) -> np.ndarray:
    """Every ``width``-byte window of a 1-D uint8 array as one void item per start byte:
    item ``s`` is ``memory[s : s + width]``, so indexing with starts moves each window
    with one memcpy (items overlap; assign to them in start order)."""
    n = max(len(memory) - width + 1, 0)
    return np.ndarray((n,), np.dtype((np.void, width)), buffer=memory, strides=(1,))


def pieces(memory: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """``memory[s : s + width]`` for each start as rows of a ``(len(starts), width)``
    uint8 array, in one gather; windows running past the end are zero-padded.  Every
    start must lie inside ``memory``."""
    k, size = len(starts), len(memory)
    if k == 0 or width == 0:
        return np.zeros((k, width), np.uint8)
    starts = starts.astype(np.int64)
    last = size - width  # the last start with a whole window
    out: np.ndarray
    if last < 0:
        out = np.empty((k, width), np.uint8)
        over = np.ones(k, bool)
    else:  # the gather's own result: no array to allocate and copy again
        out = byte_items(memory, width)[np.minimum(starts, last)].view(np.uint8)
        out = out.reshape(k, width)
        over = starts > last
        if not over.any():
            return out
    # the memory's last bytes, zero-padded, give the windows that run past its end
    keep = min(size, width)
    tail = np.zeros(keep + width, np.uint8)
    tail[:keep] = memory[size - keep :]
    row_items(out, width)[over] = byte_items(tail, width)[starts[over] - (size - keep)]
    return out


def copy_windows(
    dst: np.ndarray, at: np.ndarray, src: np.ndarray, starts: np.ndarray, width: int
) -> None:
    """``dst[a : a + width] = src[s : s + width]`` for each pair of ``at`` and
    ``starts``: a gather and a scatter per ``CHUNK_BYTES`` of windows (the staged
    chunk stays in cache), windows running past ``src``'s end zero-padded.

    Every start must lie inside ``src``, every destination window inside ``dst``, and
    no two destination windows may overlap.
    """
    k = len(starts)
    if k == 0 or width == 0:
        return
    to = byte_items(dst, width)
    starts = starts.astype(np.int64)
    last = len(src) - width  # the last start with a whole window
    if last < 0:
        to[at] = row_items(pieces(src, starts, width), width)
        return
    windows, step = byte_items(src, width), max(CHUNK_BYTES // width, 1)
    safe = np.minimum(starts, last)
    for lo in range(0, k, step):
        to[at[lo : lo + step]] = windows[safe[lo : lo + step]]
    over = np.flatnonzero(starts > last)
    if len(over):  # written again, zero-padded
        to[at[over]] = row_items(pieces(src, starts[over], width), width)


def row_memory(rows: np.ndarray) -> np.ndarray | None:
    """The bytes from the start of a 2-D uint8 array's first row to the end of its last,
    as one 1-D uint8 array, when each row's bytes are contiguous and rows never
    overlap (a pool's rows, say); else None."""
    n, cols = rows.shape
    step, unit = rows.strides
    if n == 0 or (cols > 1 and unit != 1) or (n > 1 and step < cols):
        return None
    return np.lib.stride_tricks.as_strided(rows, shape=((n - 1) * step + cols,), strides=(1,))


def row_index(
    region: np.ndarray, offsets: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows of one grid holding every buffer: ``(grid, rows)`` so that
    ``grid[rows, :width]`` gathers (or scatters) whole rows, or None.

    The grid's row size is the greatest common divisor of the offsets' differences;
    it must be at least ``width``.  This covers what ``strided_view`` cannot: a run
    that wraps the ring's end, or buffers handed out in any order from a pool.
    """
    n = len(offsets)
    if n == 0 or width <= 0:
        return None
    o = offsets.astype(np.int64)
    g = int(np.gcd.reduce(np.abs(o[1:] - o[:-1]))) if n > 1 else 0
    if g == 0:
        g = width  # one buffer, or the same buffer repeated
    if g < width:
        return None
    r = int(o[0]) % g
    m = (len(region) - r) // g
    rows = (o - r) // g
    if m <= 0 or int(rows.max()) >= m:
        return None
    grid = np.ndarray((m, g), np.uint8, buffer=region, offset=r, strides=(g, 1))
    return grid, rows


Run = tuple[int, int, np.ndarray]  # packets lo..hi are the rows of a strided view


class _Indices:
    """``0..n-1`` as a read-only intp array, cut from one cached arange (grown on
    demand): an unchained batch's ``first`` at the cost of a slice, not an arange."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values = np.arange(0, dtype=np.intp)

    def __call__(self, n: int) -> np.ndarray:
        if n > len(self.values):
            values = np.arange(max(n, 2 * len(self.values), 1024), dtype=np.intp)
            values.flags.writeable = False
            self.values = values
        return self.values[:n]


#: ``indices(n)``: read-only ``np.arange(n)`` (intp), shared by every caller
indices = _Indices()
Pieces = list[tuple[int, int, int]]  # (slot, lo, hi) from ring_pieces


def ring_pieces(start: int, n: int, size: int) -> Pieces:
    """Where ``n`` slots from counter ``start`` lie: ``(slot, lo, hi)`` per piece.

    Items ``lo..hi`` of the run go to slots ``slot..slot + hi - lo``; a run that wraps
    the ring's end has two pieces.
    """
    s = start & (size - 1)
    first = size - s if n > size - s else n  # min(), without its call (~0.1 us)
    return [(s, 0, first)] if first == n else [(s, 0, first), (0, first, n)]


def ring_slots(start: int, n: int, size: int) -> slice | np.ndarray:
    """The slots of ``n`` counters from ``start`` as one index: a slice unless they wrap."""
    s = start & (size - 1)
    if s + n <= size:
        return slice(s, s + n)
    return (s + np.arange(n)) & (size - 1)


def slot_values(array: np.ndarray, pieces: Pieces, *, copy: bool) -> np.ndarray:
    """``array``'s per-slot values for a run of slots, across the ring's end.

    ``copy``: out of shared memory (what the peer may rewrite); else a view where one
    will do (our own arrays).
    """
    if len(pieces) == 1:
        at, lo, hi = pieces[0]
        values = array[at : at + hi - lo]
        return values.copy() if copy else values
    return np.concatenate([array[at : at + hi - lo] for at, lo, hi in pieces])


@dataclass(frozen=True)
class SlotLayout:
    """A ring whose slot ``k`` always holds the buffer at ``base + k * stride``.

    libmemif, VPP and DPDK in copy mode give each slot one buffer for good.  Learned
    from one evenly spaced run of slots and kept only while it lies inside its
    region, it turns "are these buffers evenly spaced and inside the region?" into
    one comparison of offsets per run, and hands out rows of one strided view.
    """

    region: int
    offsets: np.ndarray  # uint32 offset of each slot's buffer
    grid: np.ndarray  # (ring size, |stride|) uint8 rows in slot order
    #: ``offsets`` as bytes: a run of slots compares with one bytes comparison
    raw: bytes = field(init=False, repr=False, compare=False)
    #: :meth:`descriptors` made so far, by head (two at most)
    _made: dict[int, bytes] = field(init=False, repr=False, compare=False)
    #: the last head asked for that had none made: ``[head]``
    _asked: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:  # frozen: these are set once, here
        object.__setattr__(self, "raw", self.offsets.tobytes())
        object.__setattr__(self, "_made", {})
        object.__setattr__(self, "_asked", [-1])

    def descriptors(self, head: int) -> bytes | None:
        """Every slot's descriptor as bytes, when each has the same first 8 bytes ``head``
        (``flags | region << 16 | length << 32``), the layout's offset and metadata 0.

        A burst of one length (what a peer of one buffer size posts, what a sender of
        one frame size publishes) then checks heads and offsets with one comparison
        (:meth:`matches`).  Made (one pass over the ring) only for a head asked for
        twice in a row, and two are kept, so a peer changing lengths all the time
        makes none: None until then.
        """
        made = self._made
        descs = made.get(head)
        if descs is None:
            if self._asked[0] != head:
                self._asked[0] = head  # the first time in a row: remembered only
                return None
            if len(made) >= 2:
                made.clear()
            words = np.zeros((len(self.offsets), 2), np.uint64)
            words[:, 0] = head
            words[:, 1] = self.offsets
            descs = made[head] = words.tobytes()
        return descs

    def matches(self, raw: bytearray, head: int, pieces: Pieces) -> bool:
        """Whether a run's descriptor bytes are :meth:`descriptors` of ``head`` exactly."""
        made = self.descriptors(head)
        if made is None:
            return False
        descs = memoryview(made)
        if len(pieces) == 1:
            at, _, n = pieces[0]
            return raw == descs[16 * at : 16 * (at + n)]
        return raw == b"".join(descs[16 * at : 16 * (at + hi - lo)] for at, lo, hi in pieces)

    @classmethod
    def of(cls, memory: np.ndarray, region: int, offsets: np.ndarray) -> SlotLayout | None:
        """The layout of these per-slot buffer offsets, if evenly spaced inside ``memory``."""
        if len(offsets) < 2:
            return None
        grid = strided_view(memory, offsets, abs(int(offsets[1]) - int(offsets[0])))
        return None if grid is None else cls(region, offsets, grid)

    @classmethod
    def learn(
        cls, memory: np.ndarray, region: int, ring_size: int, slot: int, first: int, stride: int
    ) -> SlotLayout | None:
        """The layout in which ``slot`` holds ``first``, or None if it leaves ``memory``."""
        base = first - slot * stride
        if stride == 0 or min(base, base + (ring_size - 1) * stride) < 0:
            return None
        offsets = base + np.arange(ring_size, dtype=np.int64) * stride
        if int(offsets.max()) > 0xFFFFFFFF:
            return None
        return cls.of(memory, region, offsets.astype(np.uint32))

    def holds(self, offsets: bytes, pieces: Pieces) -> bool:
        """Whether a run's buffer offsets (uint32 bytes, in run order) are the layout's:
        one bytes comparison, no reduction (each costs about a microsecond)."""
        raw = self.raw
        if len(pieces) == 1:
            at, _, n = pieces[0]
            return offsets == raw[4 * at : 4 * (at + n)]
        return offsets == b"".join(raw[4 * at : 4 * (at + hi - lo)] for at, lo, hi in pieces)

    def runs(self, pieces: Pieces, width: int) -> list[Run]:
        """The run's buffers as ``(lo, hi, view)`` rows of ``width`` bytes."""
        return [(lo, hi, self.grid[at : at + hi - lo, :width]) for at, lo, hi in pieces]


class Released:
    """Stands in for a torn-down queue's ring and memory: any use raises
    :class:`~memif.NotConnectedError` with ``why``.

    A queue swaps it in for its ring and its regions when the connection ends, so
    every call that touches them fails with one clear error at no cost while the
    connection is up (no flag is tested on the data path).
    """

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why

    def fail(self, *_: object, **__: object) -> NoReturn:
        """Raise NotConnectedError(why)."""
        raise NotConnectedError(self.why)

    def __getattr__(self, name: str) -> NoReturn:
        raise NotConnectedError(self.why)

    __getitem__ = __setitem__ = __len__ = __iter__ = __array__ = fail


def check_live(regions: Sequence[Any]) -> None:
    """Raise NotConnectedError if ``regions`` (a queue's, shared with its batches)
    were released with the connection."""
    if regions and type(regions[0]) is Released:
        regions[0].fail()


def _read_raw(ring: Ring, start: int, n: int) -> bytearray:
    """Copy the bytes of ``n`` descriptors from counter ``start`` out of shared memory
    (a memoryview's bytes: the cheapest copy there is)."""
    s = start & ring.mask
    words = ring.desc_u32
    if s + n <= ring.size:
        return bytearray(words[4 * s : 4 * (s + n)])
    raw = bytearray(words[4 * s :])
    raw += words[: 4 * (s + n - ring.size)]
    return raw


def same_heads(raw: bytearray, n: int) -> bool:
    """Whether the first 8 bytes (flags, region, length) of ``n`` descriptors' bytes are
    equal: one bytes comparison."""
    return n == 1 or memoryview(raw).cast("Q")[::2].tobytes() == raw[:8] * n


def raw_offsets(raw: bytearray) -> bytes:
    """The offset field of every descriptor of ``raw``, as uint32 bytes."""
    if len(raw) == 16:  # one descriptor: a slice is cheaper
        return bytes(raw[8:12])
    return memoryview(raw).cast("I")[2::4].tobytes()


def _read_descs(ring: Ring, start: int, n: int) -> np.ndarray:
    """Copy ``n`` descriptors from counter ``start`` out of shared memory."""
    return np.frombuffer(_read_raw(ring, start, n), wire.DESC_DTYPE)


def _bad_mask(
    region: np.ndarray, offset: np.ndarray, length: np.ndarray, sizes: np.ndarray
) -> np.ndarray | None:
    """None when every descriptor is inside its region, else a bool mask of bad ones."""
    r0 = region[0]
    if r0 < len(sizes) and (region == r0).all():
        if length.min() > 0 and int(offset.max()) + int(length.max()) <= int(sizes[r0]):
            return None
        if length.min() > 0 and (offset.astype(np.uint64) + length <= sizes[r0]).all():
            return None
    in_range = region < len(sizes)
    limit = sizes[np.where(in_range, region, 0)]
    bad: np.ndarray = ~in_range | (length == 0) | (offset.astype(np.uint64) + length > limit)
    return bad


class _Queue:
    """What both directions share: the ring, the regions, counters, the fault flag."""

    def __init__(
        self,
        ring: Ring,
        regions: Sequence[Region],
        index: int,
        *,
        is_master: bool,
        buffer_region: int = 0,
        buffer_offsets: np.ndarray | None = None,
        buffer_size: int = 0,
    ) -> None:
        """``is_master``: which end of the ring this is.  A slave also names its own
        buffers: their region, each slot's buffer offset, and the buffer size."""
        self.ring = ring
        self.index = index
        self.is_master = is_master
        # A slave's own buffers: region, offset of each slot's buffer, size.
        self._buf_region = buffer_region
        self._buf_offsets = buffer_offsets
        self._buf_size = buffer_size
        self.stats = QueueStats()
        self.fault: str | None = None
        self._regions = [r.array for r in regions]
        self._layout: SlotLayout | None = None  # where the buffer of each slot lies, if fixed
        self._sizes = np.array([r.size for r in regions], dtype=np.uint64)
        # The scalar paths' twins of the above: a region's bytes as a memoryview (a slice
        # assignment from bytes is one memcpy), region sizes and a slave's buffer
        # offsets as Python ints.
        self._memory = [memoryview(r.array) for r in regions]  # type: ignore[arg-type]
        self._limits = [r.size for r in regions]
        self._buf_list: list[int] = [] if buffer_offsets is None else buffer_offsets.tolist()

    @property
    def connected(self) -> bool:
        """False once the connection ended: every call then raises NotConnectedError."""
        ring: object = self.ring  # a Released after release(), despite the annotation
        return type(ring) is not Released

    def release(self, why: str) -> None:
        """End of the connection (the interface calls it before unmapping): from now on
        every call, and every batch handed out, raises NotConnectedError(``why``).

        Counters (``stats``, ``fault``) stay readable.  Views already taken out of a
        batch (``runs``, ``matrix``, ``buffers``) keep their memory, no longer shared.
        """
        gone = Released(why)
        self.ring = cast(Ring, gone)
        self._regions[:] = [cast(np.ndarray, gone)] * len(self._regions)
        for view in self._memory:
            view.release()
        self._memory[:] = [cast(memoryview, gone)] * len(self._memory)
        self._layout = None  # its grid is a view of the buffers

    def _live(self) -> None:
        """Raise NotConnectedError after :meth:`release` (for calls that may not touch
        the ring; the others raise by touching it)."""
        ring: object = self.ring  # a Released after release(), despite the annotation
        if type(ring) is Released:
            ring.fail()

    @property
    def fd(self) -> int:
        """The ring's interrupt eventfd (for the caller's own event loop)."""
        return self.ring.eventfd

    @property
    def size(self) -> int:
        """Ring size in slots."""
        return self.ring.size

    @property
    def buffer_size(self) -> int:
        """Bytes each of this end's own buffers holds: the client's buffer size (its
        ``buffer_size`` setting); 0 on the server, which owns no buffers (it reads and
        fills those the client posts: see ``TxQueue.capacity``)."""
        return self._buf_size

    def _fail(self, reason: str) -> int:
        self.fault = self.fault or reason
        return 0
