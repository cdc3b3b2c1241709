"""``memif gen``'s frames: the sequence header, the size pattern, one template per size.

The header (magic, stream and packet number, transmit stamp) is documented in
:mod:`memif.tools.gen.cli`; its constants are defined here.
"""

from __future__ import annotations

import struct

import numpy as np

from ... import packet

MAGIC = int.from_bytes(b"MGEN", "little")
HDR_LEN = 20
STREAM_SHIFT = 56
SEQ_MASK = (1 << STREAM_SHIFT) - 1
IMIX = (64, 594, 64, 64, 1518, 64, 594, 64, 64, 594, 64, 594)
"""Simple IMIX, 7 x 64 : 4 x 594 : 1 x 1518 bytes, in the order it is sent."""
MAX_FRAME = 65535
_U64 = np.dtype("<u8")


class Frames:
    """The frames of a run: one template per size, the size pattern, header offsets.

    ``template`` is the largest frame; every smaller one is its prefix with its own L2-L4
    headers (``heads[k]``, ``hdr`` bytes each, for ``sizes[k]``). Packet ``c`` of a stream has
    size ``sizes[pattern[c % len(pattern)]]``.
    """

    def __init__(
        self,
        sizes: list[int],
        l2: bool = True,
        src_mac: bytes = b"\x02\0\0\0\0\x01",
        dst_mac: bytes = b"\x02\0\0\0\0\x02",
        src_ip: bytes = bytes([198, 18, 0, 1]),
        dst_ip: bytes = bytes([198, 18, 0, 2]),
    ) -> None:
        self.hdr = (packet.ETH_HLEN if l2 else 0) + packet.IP_HLEN + 8
        self.min_size = self.hdr + HDR_LEN
        for s in sizes:
            if not self.min_size <= s <= MAX_FRAME:
                raise ValueError(f"frame size {s} must be {self.min_size}..{MAX_FRAME}")
        distinct = sorted(set(sizes))
        self.sizes = np.array(distinct, np.int64)
        self.pattern = np.array([distinct.index(s) for s in sizes], np.intp)
        self.fixed = len(distinct) == 1
        self.max_size = distinct[-1]
        self.seq_off = self.hdr + 4
        self.ts_off = self.hdr + 12
        frames = [self._build(s, l2, src_mac, dst_mac, src_ip, dst_ip) for s in distinct]
        self.template = np.frombuffer(frames[-1], np.uint8).copy()
        self.heads = np.array([np.frombuffer(f[: self.hdr], np.uint8) for f in frames])
        self._ext_n = 0
        self._ext_heads = self._ext_sizes = self.sizes

    def _build(self, size: int, l2: bool, smac: bytes, dmac: bytes, sip: bytes, dip: bytes):
        n = size - self.hdr
        body = struct.pack("<IQQ", MAGIC, 0, 0) + bytes(i & 0xFF for i in range(n - HDR_LEN))
        udp = struct.pack("!HHHH", 9, 9, 8 + n, 0) + body
        ip = packet.ipv4(sip, dip, packet.PROTO_UDP, udp)
        return packet.ethernet(dmac, smac, packet.ETH_P_IP, ip) if l2 else ip

    def index(self, first: int, n: int) -> np.ndarray:
        """Size index of packets ``first .. first+n-1`` of a stream."""
        return self.pattern[(first + np.arange(n)) % len(self.pattern)]

    def mixed(self, first: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Headers ``(n, hdr)`` and lengths of packets ``first ..``: slices, no gather."""
        if self._ext_n < n:
            idx = self.index(0, n + len(self.pattern))
            self._ext_heads, self._ext_sizes, self._ext_n = self.heads[idx], self.sizes[idx], n
        k = first % len(self.pattern)
        return self._ext_heads[k : k + n], self._ext_sizes[k : k + n]

    def stamp(self, rows: np.ndarray, n: int, seq: int, ts: int) -> None:
        """Write sequence numbers ``seq, seq+1, ...`` and the stamp into ``n`` rows."""
        a, b = self.seq_off, self.ts_off
        seqs = rows[:n, a : a + 8].view(_U64)
        np.add(np.arange(n, dtype=np.uint64).reshape(n, 1), np.uint64(seq), out=seqs)
        rows[:n, b : b + 8].view(_U64)[:] = ts

    def frame(self, k: int, seq: int, ts: int) -> np.ndarray:
        """One frame of size index ``k`` (for the per-packet path)."""
        f = self.template[: self.sizes[k]].copy()
        f[: self.hdr] = self.heads[k]
        f[self.seq_off : self.seq_off + 16] = np.frombuffer(struct.pack("<QQ", seq, ts), np.uint8)
        return f
