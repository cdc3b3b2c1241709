"""``memif demo``'s server process (the hidden ``--peer`` mode): echo every frame back.

It listens as the memif **server**, sends every received frame back with its MAC addresses
swapped, and prints its counters as one JSON object on stdout when the client leaves or its
stdin closes (the client's signal to stop).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

import numpy as np

from ... import wire
from ...interface import Interface
from ...loop import EventLoop
from ...poller import Poller
from ...queue import RxBatch
from ...sock import Socket
from ..burst import send_fitting, swap_macs
from .traffic import BURST, HOUSEKEEPING, SPIN, copy_rows, queue_errors, segment_rows, sleep_rx


class Echo:
    """The echo loop of the server process: every frame back, MAC addresses swapped.

    A received burst is held (not refilled) until every frame of it went out, so a
    full transmit ring slows the client down instead of dropping anything.
    """

    def __init__(self, iface: Interface) -> None:
        self.iface = iface
        self.rxq = iface.rx_queues[0]
        self.txq = iface.tx_queues[0]
        self.batch: RxBatch | None = None  # the burst being echoed, held until all went out
        self.rows = np.empty((0, 0), np.uint8)  # its buffers, one row each
        self.first = self.ends = np.empty(0, np.int64)  # its frames' first and end buffers
        self.seg_len = np.empty(0, np.uint32)
        self.next = 0
        self.packets = 0
        self.bytes = 0

    @property
    def busy(self) -> bool:
        """True while part of a burst waits for room in the transmit ring."""
        return self.batch is not None

    def step(self) -> int:
        """Echo what can be echoed now; returns how many frames went out."""
        batch = self.batch
        if batch is None:
            batch = self.rxq.rx_burst(BURST)
            if not batch.count:
                return 0
            self._hold(batch)
        sent = self._send(batch)
        if self.next == batch.count:
            self.batch = None
            self.rxq.refill()
        return sent

    def _hold(self, batch: RxBatch) -> None:
        self.batch = batch
        self.first = batch.first.astype(np.int64)
        self.ends = np.append(self.first[1:], len(batch.seg_length))
        self.seg_len = batch.seg_length
        self.rows = segment_rows(self.iface, batch, int(batch.seg_length.max()))
        self.next = 0

    def _send(self, batch: RxBatch) -> int:
        txq, i = self.txq, self.next
        a = int(self.first[i])
        total = len(self.seg_len) - a
        free = txq.free_slots()
        if free == 0:
            return 0
        tx = txq.alloc(min(total, free))
        if tx.count and int(self.seg_len[a:].max()) > tx.capacity:
            return self._send_one(batch, i)
        fit = int(np.searchsorted(self.ends[i:] - a, tx.count, side="right"))
        if fit == 0:
            return self._send_one(batch, i) if tx.count else 0  # a chain across the ring's end
        b = int(self.ends[i + fit - 1])
        lengths = self.seg_len[a:b]
        dst = tx.buffers
        copy_rows(dst, self.rows[a:b], lengths)
        heads = self.first[i : i + fit] - a
        swap_macs(dst, heads)
        flags = np.full(b - a, wire.DESC_FLAG_NEXT, np.uint8)
        flags[self.ends[i : i + fit] - a - 1] = 0
        txq.tx_burst(tx, lengths, b - a, flags)
        self.next = i + fit
        self.packets += fit
        self.bytes += int(batch.lengths[i : i + fit].sum())
        return fit

    def _send_one(self, batch: RxBatch, i: int) -> int:
        """One frame on the copying path (a chain across the ring's end, odd buffers)."""
        frame = np.array(batch[i])
        swap_macs(frame)
        if not send_fitting(self.txq, [frame]):
            return 0
        self.next = i + 1
        self.packets += 1
        self.bytes += len(frame)
        return 1


def _stdin_closed(stdin: Poller) -> bool:
    """True once the parent closed our stdin (or died); ``stdin`` polls only that fd."""
    try:
        return any(not os.read(fd, 4096) for fd in stdin.wait(0))
    except OSError:
        return True


def run_peer(args: argparse.Namespace) -> int:
    """The hidden ``--peer`` mode: the echo server, until stdin closes or the client leaves."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    stop: list[str] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append("terminated"))
    stdin = sys.stdin.fileno()
    result: dict[str, Any] = {"pid": os.getpid(), "echoed_packets": 0, "echoed_bytes": 0}
    with Socket(args.socket, app_name="memif-demo-server") as sock:
        iface = sock.create_interface(
            role="server",
            id=0,
            ring_size=args.ring_size,
            buffer_size=args.buffer_size,
            polling=True,
        )
        stdin_only = Poller([stdin])
        connecting = Poller([sock.fileno(), stdin])
        end = time.monotonic() + args.connect_timeout
        while not iface.connected and not stop:
            ready = connecting.wait(0.1)
            if stdin in ready and _stdin_closed(stdin_only):
                return 0
            sock.poll(0)
            if time.monotonic() > end:
                print("memif demo --peer: no client connected", file=sys.stderr)
                return 1
        echo = Echo(iface)
        rxq = iface.rx_queues[0]
        idle = EventLoop()  # what an idle turn sleeps on: rxq's eventfd (sleep_rx), the
        idle.add_socket(sock)  # control socket, and stdin (read by _stdin_closed)
        idle.add_reader(stdin, lambda fd: None)
        next_house = busy_at = time.monotonic()
        while not stop:
            now = time.monotonic()
            if echo.step():
                busy_at = now
            if now >= next_house or now - busy_at > SPIN:
                next_house = now + HOUSEKEEPING
                sock.poll(0)
                if not iface.connected or _stdin_closed(stdin_only):
                    break
                if now - busy_at > SPIN:
                    sleep_rx(idle, rxq, 0.0005 if echo.busy else 0.1)
        result.update(
            echoed_packets=echo.packets,
            echoed_bytes=echo.bytes,
            errors=queue_errors(iface),
        )
    print(json.dumps(result), flush=True)
    return 0
