"""The switch's packet buffers: one shared-memory pool, indices instead of objects.

A packet is a buffer index.  ``data[i]`` is its bytes (``length[i]`` of them, from
offset 0).  Every packet owns its buffer: flooding and mirroring clone (one
vectorized row copy per vector), so freeing is a push on a stack.  The pool lives in a memfd (a
:class:`memif.BufferPool`), so slave interfaces can hand it to their peer as a
region and let the peer read and write the switch's buffers directly (zero-copy).
"""

from __future__ import annotations

import numpy as np

from ..interface import BufferPool
from ..queue import row_items

DEFAULT_BUFFERS = 32768
DEFAULT_DATA_SIZE = 10240  # a 9216-byte jumbo frame fits one buffer
#: dtype of buffer index vectors: numpy's own index type, so gathers and scatters by
#: index need no conversion (an int32 index vector costs ~1.5 ns more per element)
INDEX = np.intp
#: one port may hold (posted for receive, lent on transmit) at most this share of the pool
QUOTA_SHARE = 2  # half: one port can never drain the pool
#: zero-copy ports together may post at most the pool less this share of it, which
#: stays for what every port's input takes each turn
RESERVE_SHARE = 4  # a quarter


class PacketPool:
    """``n_buffers`` buffers of ``data_size`` bytes with a free stack."""

    def __init__(self, n_buffers: int = DEFAULT_BUFFERS, data_size: int = DEFAULT_DATA_SIZE):
        self.n_buffers = n_buffers
        self.data_size = data_size
        if data_size < 16:
            raise ValueError(f"data_size {data_size} must be at least 16 (a frame's header)")
        self.shared = BufferPool(n_buffers * data_size, "memifd buffers")
        self.data = self.shared.array.reshape(n_buffers, data_size)
        self._rows: dict[int, np.ndarray] = {}  # width -> row_items view
        self.length = np.zeros(n_buffers, np.uint32)
        self._free = np.arange(n_buffers - 1, -1, -1, dtype=INDEX)
        self._n_free = n_buffers
        #: per-buffer flag arrays reset to False when a buffer returns to the pool
        self.flags_cleared_on_free: list[np.ndarray] = []

    @property
    def quota_per_port(self) -> int:
        """Buffers one port may hold at most: half the pool."""
        return self.n_buffers // QUOTA_SHARE

    @property
    def reserve(self) -> int:
        """Buffers no port may keep posted: a quarter of the pool."""
        return self.n_buffers // RESERVE_SHARE

    def refusal(self, name: str, queues: int, slots: int, posted: int) -> str | None:
        """Why a zero-copy port posting ``queues`` x ``slots`` receive buffers, beside
        ``posted`` by the others, could exhaust the pool (None: it cannot)."""
        need = queues * slots
        what = f"{name}: {queues} queues x {slots} slots = {need} buffers"
        if need > self.quota_per_port:
            return (
                f"{what} exceeds the pool's quota per port {self.quota_per_port}"
                f" (--buffers {self.n_buffers})"
            )
        if posted + need > self.n_buffers - self.reserve:
            return (
                f"{what}, with {posted} posted by other zero-copy ports, leaves less than"
                f" {self.reserve} of {self.n_buffers} buffers for input (--buffers)"
            )
        return None

    @property
    def n_free(self) -> int:
        """Buffers available."""
        return self._n_free

    def free_buffers(self) -> np.ndarray:
        """A copy of the free stack: the index of every buffer available, each once
        unless the pool was corrupted (what leak and double-free tests check)."""
        return self._free[: self._n_free].copy()

    def alloc(self, n: int) -> np.ndarray:
        """Up to ``n`` buffer indices (fewer when the pool runs low)."""
        n = min(n, self._n_free)
        self._n_free -= n
        return self._free[self._n_free : self._n_free + n].copy()

    def free(self, idx: np.ndarray) -> None:
        """Return buffers (each index once) to the pool."""
        k = len(idx)
        for flags in self.flags_cleared_on_free:
            flags[idx] = False
        self._free[self._n_free : self._n_free + k] = idx
        self._n_free += k

    def clone(self, idx: np.ndarray) -> np.ndarray:
        """Copies of packets in new buffers (fewer if the pool runs low)."""
        new = self.alloc(len(idx))
        idx = idx[: len(new)]
        if len(new):
            width = int(self.length[idx].max())
            rows = self.rows(width)
            rows[new] = rows[idx]
            self.length[new] = self.length[idx]
        return new

    def offsets(self, idx: np.ndarray) -> np.ndarray:
        """Byte offsets of buffers inside the shared region."""
        return idx.astype(np.uint32) * np.uint32(self.data_size)

    def index_of(self, offsets: np.ndarray) -> np.ndarray:
        """Buffer indices from region offsets (inverse of :meth:`offsets`)."""
        return (offsets // self.data_size).astype(INDEX)

    def rows(self, width: int) -> np.ndarray:
        """The first ``width`` bytes of every buffer as one item each (see ``row_items``)."""
        view = self._rows.get(width)
        if view is None:
            view = self._rows[width] = row_items(self.data, width)
        return view

    def header_words(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bytes 0-7 and 8-15 of each buffer as native uint64 (big-endian values).

        One 16-byte item per buffer is gathered, then read as two big-endian words.
        """
        words = self.rows(16)[idx].view(">u8").reshape(-1, 2).astype(np.uint64)
        return words[:, 0], words[:, 1]

    def packet(self, i: int) -> bytes:
        """One packet's bytes (for tracing, L3 replies and tests)."""
        return bytes(self.data[i, : self.length[i]])

    def close(self) -> None:
        """Release the shared memory."""
        self.data = np.empty((0, self.data_size), np.uint8)
        self._rows.clear()
        self.shared.close()
