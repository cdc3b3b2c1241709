"""``memif bench``'s worker processes: one Python side of a pair, pinned to one CPU.

A worker is a ``spawn`` child (:func:`worker_main`) that opens one memif (the receiver as the
server, the sender as the client) and runs :func:`send_loop` or :func:`receive_loop` (see
:mod:`memif.tools.bench.cli` for what they do per burst). Parent and workers share one control
block of int64 slots (below): flags one way, counters the other. :class:`Workers` is the
parent's side: start, wait for a slot, check, stop.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import struct
import time
import traceback
from collections.abc import Sequence
from typing import Any

import numpy as np

from ... import packet, wire

SEQ_OFFSET = 42
"""Byte offset of the u64 sequence number: the first byte of the UDP payload."""
SEQ_END = SEQ_OFFSET + 8
MIN_FRAME = 60
"""Smallest frame: an Ethernet minimum frame without FCS (and room for the sequence number)."""
BUFFER_SIZE = wire.DEFAULT_BUFFER_SIZE
"""Buffer size on both sides of every pair (2048): one buffer carries one frame."""

# Slots of the control block shared with the worker processes (int64 each).
STOP = 0  # parent -> workers: leave the loop and disconnect
GO = 1  # parent -> sender: start transmitting
LISTENING = 2  # receiver: its socket is listening
RX_READY = 3  # receiver: connected, receiving
TX_READY = 4  # sender: connected, waiting for GO
RX_PACKETS = 5  # receiver: packets received so far
RX_BYTES = 6  # receiver: bytes received so far
TX_PACKETS = 7  # sender: packets sent so far
SEQ_ERRORS = 8  # receiver: bursts whose sequence numbers were not the expected ones
PEER_POLLING = 9  # sender: 1 when the receiver masked interrupts (no eventfd write per burst)
FAILED = 10  # a worker raised
RX_SEQ = 11  # receiver: odd while it updates RX_PACKETS and RX_BYTES (a sequence lock)
SLOTS = 16

WAIT = 20.0
"""Seconds to wait for a worker or a link."""

_SRC_MAC, _DST_MAC = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
_SRC_IP, _DST_IP = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])


# ---------------------------------------------------------------------------------------- frames


def build_frame(size: int) -> np.ndarray:
    """An Ethernet/IPv4/UDP frame of ``size`` bytes, as testpmd's ``txonly`` sends.

    02:00:00:00:00:01 -> 02:00:00:00:00:02, 198.18.0.1:9 -> 198.18.0.2:9, UDP checksum 0; the
    payload is the byte pattern 0, 1, 2, ... (the sequence number goes over its first 8 bytes).
    """
    if size < MIN_FRAME:
        raise ValueError(f"frame size {size} is below {MIN_FRAME} bytes")
    payload = bytes(i & 0xFF for i in range(size - 42))
    udp = struct.pack("!HHHH", 9, 9, size - 34, 0) + payload
    ip = packet.ipv4(_SRC_IP, _DST_IP, packet.PROTO_UDP, udp, df=False)
    frame = packet.ethernet(_DST_MAC, _SRC_MAC, packet.ETH_P_IP, ip)
    return np.frombuffer(frame, np.uint8).copy()


# ---------------------------------------------------------------------------------------- loops


def send_loop(tx: Any, frame: int, burst: int, ctl: memoryview) -> None:
    """Transmit ``frame``-byte packets in bursts of ``burst`` until ``ctl[STOP]`` is set.

    Every packet gets the whole template frame copied in and its sequence number stamped at
    bytes 42..49; ``ctl[TX_PACKETS]`` is updated after every burst.
    """
    frames = np.tile(build_frame(frame), (burst, 1))  # the next burst, stamped in private
    stamps = frames[:, SEQ_OFFSET:SEQ_END].view(np.uint64)
    ramp = np.arange(burst, dtype=np.uint64).reshape(burst, 1)
    alloc, tx_burst = tx.alloc, tx.tx_burst
    seq = 0
    np.add(ramp, seq, out=stamps)
    while not ctl[STOP]:
        batch = alloc(burst)
        n = batch.count
        if not n:
            continue  # ring full: the receiver has not caught up
        batch.buffers[:, :frame] = frames if n == burst else frames[:n]  # one copy in
        tx_burst(batch, frame)
        seq += n
        ctl[TX_PACKETS] = seq
        np.add(ramp, seq, out=stamps)  # stamp the next burst while the receiver reads


def receive_loop(rx: Any, frame: int, burst: int, ctl: memoryview, copy: bool = False) -> None:
    """Receive in bursts of ``burst`` until ``ctl[STOP]`` is set, reading every packet.

    Reads each packet's sequence number (bytes 42..49) and checks the burst against the
    expected run; publishes packets, bytes and sequence errors in ``ctl`` after every burst
    (packets and bytes under ``RX_SEQ``: read them with :func:`rx_counters`).
    With ``copy`` every whole frame (``frame`` bytes) is first copied into private memory.
    """
    rx_burst, refill, stats = rx.rx_burst, rx.refill, rx.stats
    private = np.zeros((burst, frame), np.uint8) if copy else None
    packets = errors = expected = seq_lock = 0
    while not ctl[STOP]:
        batch = rx_burst(burst)
        n = len(batch)
        if not n:
            continue
        # a view of the buffers (a copy when the burst wrapped the ring), or private memory
        rows = batch.matrix if private is None else batch.gather(frame, private)
        seq = rows[:n, SEQ_OFFSET:SEQ_END].view(np.uint64)
        total = int(seq.sum())
        last = int(seq[n - 1, 0])
        first = last - n + 1
        if first != expected or total != (n * first + n * (n - 1) // 2) & 0xFFFFFFFFFFFFFFFF:
            errors += 1
            ctl[SEQ_ERRORS] = errors
        expected = last + 1
        refill()
        packets += n
        ctl[RX_SEQ] = seq_lock = seq_lock + 1  # odd: the two counters are changing
        ctl[RX_PACKETS] = packets
        ctl[RX_BYTES] = stats.bytes
        ctl[RX_SEQ] = seq_lock = seq_lock + 1


def rx_counters(ctl: memoryview) -> tuple[int, int]:
    """The receiver's (packets, bytes), read together: retried while it updates them."""
    while True:
        seq = ctl[RX_SEQ]
        if not seq & 1:
            packets, nbytes = ctl[RX_PACKETS], ctl[RX_BYTES]
            if ctl[RX_SEQ] == seq:
                return packets, nbytes


# ---------------------------------------------------------------------------------------- workers


def _control(raw: Any) -> memoryview:
    return memoryview(raw).cast("B").cast("q")


def wait_connected(sock: Any, ifaces: Sequence[Any], ctl: Any, stop: int = STOP) -> None:
    """Poll ``sock`` until every interface of ``ifaces`` is connected (TimeoutError after
    :data:`WAIT` s, saying why the first one is not); SystemExit(0) once ``ctl[stop]`` is set."""
    deadline = time.monotonic() + WAIT
    while not all(i.connected for i in ifaces):
        if ctl[stop]:
            raise SystemExit(0)
        if time.monotonic() > deadline:
            iface = next(i for i in ifaces if not i.connected)
            reason = iface.local_disc_reason or iface.remote_disc_reason or iface.state
            raise TimeoutError(f"{iface.role.value} did not connect within {WAIT} s: {reason}")
        sock.poll(0.01)


def worker_main(
    role: str, path: str, frame: int, burst: int, ring_size: int, cpu: int, rx_read: str, raw: Any
) -> None:
    """Entry point of a child process: one Python side of a pair, pinned to ``cpu``."""
    from ...sock import Socket

    ctl = _control(raw)
    try:
        os.sched_setaffinity(0, {cpu})
        server = role == "rx"
        with Socket(path, app_name=f"memif-bench-{role}") as sock:
            iface = sock.create_interface(
                role="server" if server else "client",
                id=0,
                ring_size=ring_size,
                buffer_size=BUFFER_SIZE,
                polling=True,
            )
            iface.set_rx_mode(0, True)
            if server:
                ctl[LISTENING] = 1
            wait_connected(sock, [iface], ctl)
            gc.collect()
            gc.disable()
            if server:
                ctl[RX_READY] = 1
                receive_loop(iface.rx_queues[0], frame, burst, ctl, copy=rx_read == "copy")
            else:
                tx = iface.tx_queues[0]
                if not tx.alloc(1).is_view:
                    raise RuntimeError("transmit buffers are not one strided view")
                ctl[PEER_POLLING] = int(bool(tx.ring.flags & wire.RING_FLAG_MASK_INT))
                ctl[TX_READY] = 1
                while not ctl[GO]:
                    if ctl[STOP]:
                        return
                    time.sleep(0.001)
                send_loop(tx, frame, burst, ctl)
    except KeyboardInterrupt:
        pass
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        ctl[FAILED] = 1
        raise SystemExit(1) from None


class Workers:
    """The Python sides of one point: child processes sharing one control block."""

    def __init__(self) -> None:
        self.ctx = mp.get_context("spawn")
        self.raw = self.ctx.RawArray("q", SLOTS)
        self.ctl = _control(self.raw)
        self.procs: list[Any] = []

    def spawn(
        self, role: str, path: str, frame: int, burst: int, ring_size: int, cpu: int, rx_read: str
    ) -> None:
        """Start the ``rx`` (receiver, server) or ``tx`` (sender, client) worker on ``cpu``."""
        args = (role, path, frame, burst, ring_size, cpu, rx_read, self.raw)
        name = f"memif-bench-{role}"
        proc = self.ctx.Process(target=worker_main, args=args, name=name, daemon=True)
        proc.start()
        self.procs.append(proc)

    def wait(self, slot: int, what: str, timeout: float = WAIT) -> None:
        """Wait until a worker sets ``slot``; raise if one fails or time runs out."""
        deadline = time.monotonic() + timeout
        while not self.ctl[slot]:
            dead = [p for p in self.procs if p.exitcode is not None]
            if self.ctl[FAILED] or dead:
                codes = ", ".join(f"{p.name} exited {p.exitcode}" for p in dead)
                raise RuntimeError(f"a worker failed before {what} ({codes or 'see stderr'})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {timeout} s")
            time.sleep(0.005)

    def check(self) -> None:
        """Raise if a worker failed or died."""
        if self.ctl[FAILED] or any(p.exitcode is not None for p in self.procs):
            raise RuntimeError("a worker failed during the measurement (see stderr)")

    def stop(self) -> None:
        """Tell every worker to disconnect and exit; kill those that do not."""
        self.ctl[STOP] = 1
        for p in self.procs:
            p.join(5.0)
            if p.exitcode is None:
                p.kill()
                p.join(2.0)
