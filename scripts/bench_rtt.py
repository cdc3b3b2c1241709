#!/usr/bin/env python3
"""Round-trip time of one packet between two Python processes, on the library's minimal path.

A connected pair (``memif.testing.pair``) is split by ``fork``: one process sends a 64-byte
frame (``TxQueue.send``) and waits for it to come back (``rx_burst`` then ``refill``), the
other reflects whatever it receives (``rx_burst``, ``bytes(batch[i])``, ``refill``,
``send``).  Between packets the sender sleeps ``--gap`` seconds, so every packet finds both
processes cold, as at a low packet rate.  Printed for each mode (interrupt: both sleep in
:class:`memif.EventLoop` on the eventfds; polling: both spin on the rings) and each role of
the sender (the server, the master, sends on M2S and receives on S2M; the client the other
way round): RTT min, p50, p99 in microseconds.

A benchmark that prints figures, not a test.  Compare two trees in one sitting::

    PYTHONPATH=src .venv/bin/python scripts/bench_rtt.py
    PYTHONPATH=/tmp/base/src .venv/bin/python scripts/bench_rtt.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import memif
from memif.loop import EventLoop, RxMode
from memif.testing import pair

FRAME = bytes(range(64))
IDLE = 5.0
"""Seconds without a packet after which the reflector gives up (the sender died)."""


def reflect(rxq: memif.RxQueue, txq: memif.TxQueue, mode: RxMode, count: int) -> None:
    """Send back every packet received until ``count`` came (or none for IDLE seconds)."""
    loop = EventLoop(clock=time.perf_counter)
    loop.update_rx([rxq], mode=mode)
    done, last = 0, time.perf_counter()
    while done < count:
        batch = rxq.rx_burst(32)
        n = len(batch)
        if n:
            packets = [bytes(batch[i]) for i in range(n)]
            rxq.refill()
            txq.send(packets)
            done += n
            last = time.perf_counter()
        elif time.perf_counter() - last > IDLE:
            return
        elif mode is not RxMode.POLLING:
            loop.sleep(time.perf_counter() + 0.01)


def ping(rxq: memif.RxQueue, txq: memif.TxQueue, mode: RxMode, count: int, gap: float) -> list[int]:
    """RTT of ``count`` packets in nanoseconds, one at a time, ``gap`` seconds apart."""
    loop = EventLoop(clock=time.perf_counter)
    loop.update_rx([rxq], mode=mode)
    clock = time.perf_counter_ns
    rtts = []
    for _ in range(count):
        t0 = clock()
        txq.send([FRAME])
        while True:
            batch = rxq.rx_burst(32)
            if len(batch):
                rxq.refill()
                break
            if mode is not RxMode.POLLING:
                loop.sleep(time.perf_counter() + 0.01)
            elif clock() - t0 > IDLE * 1e9:
                raise TimeoutError("the reflector did not answer")
        rtts.append(clock() - t0)
        time.sleep(gap)
    return rtts


def measure(mode: RxMode, sender: str, count: int, gap: float) -> dict[str, float]:
    """One mode and sender role: fork a reflector, ping it, summarize."""
    with pair() as (server, client):
        mine, theirs = (server, client) if sender == "server" else (client, server)
        pid = os.fork()
        if pid == 0:  # the reflector: leaves without running the parent's cleanup
            try:
                reflect(theirs.rx_queues[0], theirs.tx_queues[0], mode, count)
            finally:
                os._exit(0)
        try:
            rtts = sorted(ping(mine.rx_queues[0], mine.tx_queues[0], mode, count, gap))
        finally:
            os.waitpid(pid, 0)
    us = [t / 1e3 for t in rtts]
    return {"min": us[0], "p50": us[len(us) // 2], "p99": us[int(len(us) * 0.99)]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="packets per point")
    parser.add_argument("--gap", type=float, default=0.001, help="seconds between packets")
    parser.add_argument("--modes", default="interrupt,polling")
    parser.add_argument("--senders", default="server,client")
    parser.add_argument("--json", action="store_true", help="one JSON object per point")
    args = parser.parse_args(argv)
    for mode_name in args.modes.split(","):
        mode = RxMode.parse(mode_name)
        for sender in args.senders.split(","):
            figures = measure(mode, sender, args.count, args.gap)
            if args.json:
                print(json.dumps({"mode": mode_name, "sender": sender, **figures}))
            else:
                print(
                    f"{mode_name:9s} sender {sender:6s} RTT us  min {figures['min']:7.1f}"
                    f"  p50 {figures['p50']:7.1f}  p99 {figures['p99']:8.1f}"
                )
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
