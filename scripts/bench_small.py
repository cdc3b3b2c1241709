#!/usr/bin/env python3
"""Fixed costs of a small packet's path: microseconds per call for bursts of 1 to 256 packets.

Measures, in one process on real sockets, shared memory and eventfds:

* ``rx_burst+refill`` and ``alloc+tx_burst`` of a connected pair's queues (interrupt
  mode: the transmit kicks the eventfd; polling: it does not), the ``receive`` and
  ``reserve`` blocks, and an empty ``rx_burst``;
* :class:`memif.EventLoop`: an idle turn, a busy turn (a handler that takes one
  packet), and a sleep that an already-kicked eventfd ends (the wake-up's own cost);
* every switch node on 1-packet vectors, from ``show runtime``'s figures of an
  in-process switch (two bridged memif ports, and an L3 port answering pings): each
  node's microseconds per call, and the first l2-flood of a new bridge domain alone;
  and the switch's whole turn (``MainLoop.run_once``: every input polled, the graph
  run) that forwards, floods or answers one packet.

A benchmark that prints figures, not a test.  Compare two trees in one sitting::

    .venv/bin/python scripts/bench_small.py --json > after.json
    PYTHONPATH=/tmp/base/src .venv/bin/python scripts/bench_small.py --json > before.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import memif
from memif import packet
from memif.loop import EventLoop, RxMode
from memif.testing import pair, unique_name
from memif.vswitch.switch import Switch

SIZES = (1, 8, 32, 256)
FRAME = 64


def best_us(fn: Callable[[], object], calls: int, rounds: int = 5) -> float:
    """The best of ``rounds`` averages of ``calls`` calls, in microseconds per call."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter_ns() - t0) / calls / 1e3)
    return best


def split_us(
    first: Callable[[], object], second: Callable[[], object], calls: int, rounds: int = 5
) -> tuple[float, float]:
    """Alternate two calls (a transmit and the receive that empties the ring again);
    the best average of each, in microseconds per call."""
    best_a = best_b = float("inf")
    clock = time.perf_counter_ns
    for _ in range(rounds):
        ta = tb = 0
        for _ in range(calls):
            t0 = clock()
            first()
            t1 = clock()
            second()
            t2 = clock()
            ta += t1 - t0
            tb += t2 - t1
        best_a, best_b = min(best_a, ta / calls / 1e3), min(best_b, tb / calls / 1e3)
    return best_a, best_b


def queue_figures(calls: int) -> dict[str, float]:
    """The queues' per-call costs, by path and burst size."""
    out: dict[str, float] = {}
    for mode in ("interrupt", "polling"):
        with pair(ring_size=1024, buffer_size=2048) as (server, client):
            rxq, txq = server.rx_queues[0], client.tx_queues[0]
            rxq.polling = mode == "polling"
            for n in SIZES:
                out.update(_burst_figures(rxq, txq, n, mode, calls))
            out[f"rx_burst empty {mode}"] = best_us(lambda q=rxq: q.rx_burst(32), calls)
    return out


def _burst_figures(
    rxq: memif.RxQueue, txq: memif.TxQueue, n: int, mode: str, calls: int
) -> dict[str, float]:
    """One burst size's transmit and receive, by call and by ``with`` block."""
    out: dict[str, float] = {}

    def send() -> None:
        txq.tx_burst(txq.alloc(n), FRAME)

    def take() -> None:
        rxq.rx_burst(n)
        rxq.refill()

    def send_block() -> None:
        with txq.reserve(n) as tx:
            tx.lengths = FRAME

    def take_block() -> None:
        with rxq.receive(n):
            pass

    a, b = split_us(send, take, calls)
    out[f"alloc+tx_burst {mode} n={n}"], out[f"rx_burst+refill {mode} n={n}"] = a, b
    a, b = split_us(send_block, take_block, calls)
    out[f"reserve block {mode} n={n}"], out[f"receive block {mode} n={n}"] = a, b
    rxq.clear_interrupt()
    return out


def loop_figures(calls: int) -> dict[str, float]:
    """EventLoop: an idle turn, a busy turn, a sleep an eventfd already ended."""
    out: dict[str, float] = {}
    with pair(ring_size=1024) as (server, client):
        rxq, txq = server.rx_queues[0], client.tx_queues[0]
        loop = EventLoop()
        loop.add_socket(server.socket)

        def handler(q: memif.RxQueue) -> int:
            batch = q.rx_burst(32)
            q.refill()
            return len(batch)

        loop.add_rx(rxq, handler, RxMode.INTERRUPT)
        now = time.monotonic()
        loop.run_once(now)  # the control plane once; later turns before control_period
        out["EventLoop.run_once idle"] = best_us(lambda: loop.run_once(now), calls)

        def busy() -> None:
            txq.tx_burst(txq.alloc(1), FRAME)
            loop.run_once(now)

        out["EventLoop.run_once 1 packet (incl. tx)"] = best_us(busy, calls)

        def wake() -> None:
            txq.tx_burst(txq.alloc(1), FRAME)  # kicks: the sleep ends at once
            loop.sleep(now + 1.0)
            loop.run_once(now)

        out["EventLoop kick+sleep+turn 1 packet"] = best_us(wake, calls)
        loop.set_rx_mode(rxq, RxMode.ADAPTIVE)
        out["EventLoop kick+sleep+turn 1 packet adaptive"] = best_us(wake, calls)
    return out


def _run(
    sw: Switch, peers: memif.Socket, until: Callable[[], bool], turns: list[int] | None = None
) -> None:
    """Turn the switch until ``until()``; the nanoseconds of each turn that took packets
    go to ``turns``."""
    end = time.monotonic() + 5
    clock = time.perf_counter_ns
    while not until():
        if time.monotonic() > end:
            raise SystemExit("bench_small: the switch did not get there in 5 s")
        t0 = clock()
        sw.loop.run_once(time.monotonic())
        if turns is not None and sw.loop.packets:
            turns.append(clock() - t0)
        peers.poll(0)


def _time_calls(sw: Switch) -> dict[str, list[int]]:
    """Record every node call's nanoseconds from now on (the input node: its polls that
    took packets), by node name: medians resist the other processes of a busy machine."""
    calls: dict[str, list[int]] = {}
    clock = time.perf_counter_ns
    for node in sw.graph.nodes:
        times = calls.setdefault(node.node_name, [])
        if node in sw.loop.inputs:
            poll = node.poll  # type: ignore[attr-defined]

            def timed_poll(poll: Callable[[], int] = poll, times: list[int] = times) -> int:
                t0 = clock()
                n = poll()
                if n:
                    times.append(clock() - t0)
                return n

            node.poll = timed_poll  # type: ignore[attr-defined]
            continue
        process = node.process

        def timed(
            idx: object, process: Callable[[Any], None] = process, times: list[int] = times
        ) -> None:
            t0 = clock()
            process(idx)
            times.append(clock() - t0)

        node.process = timed  # type: ignore[method-assign]
    return calls


def switch_figures(packets: int) -> dict[str, float]:
    """Each switch node's median microseconds per 1-packet vector (as ``show runtime``
    times them, per call)."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sw = Switch(tmp + "/run")
        peers = memif.Socket(unique_name("bench-small"), app_name="peer")
        sw.create_socket(1, peers.path)
        ends = []
        for i in (1, 2, 3):
            s = sw.create_memif(id=i, socket_id=1, role="master")
            peer = peers.create_interface(role="client", id=i)
            sw.set_state(s.name, True)
            if i < 3:
                sw.set_bridge(s.name, 1)
            else:
                sw.set_l3(s.name)
                sw.set_ip(s.name, packet.ip4("10.0.0.1"), 24)
            ends.append((s, peer))
        _run(sw, peers, lambda: all(p.connected for _, p in ends))
        (_, a), (_, b), (s3, c) = ends
        mac_a, mac_b = bytes([2, 0, 0, 0, 0, 1]), bytes([2, 0, 0, 0, 0, 2])
        flood = packet.ethernet(b"\xff" * 6, mac_a, 0x0800, bytes(50))
        a.send([flood])  # the first flood of the bridge domain: timed alone
        _run(sw, peers, lambda: bool(b.recv()))
        node = sw.graph.by_name["l2-flood"]
        out["l2-flood first call"] = node.ns / 1e3
        b.send([packet.ethernet(mac_a, mac_b, 0x0800, bytes(50))])  # learn b
        _run(sw, peers, lambda: bool(a.recv()))
        to_b = packet.ethernet(mac_b, mac_a, 0x0800, bytes(50))
        echo = packet.ethernet(
            s3.mac,
            bytes([2, 0, 0, 0, 0, 3]),
            0x0800,
            packet.ipv4(
                packet.ip4("10.0.0.2"),
                packet.ip4("10.0.0.1"),
                1,
                packet.icmp_echo(8, 7, 1, bytes(28)),
            ),
        )
        for node in sw.graph.nodes:
            node.clear_runtime()
        paths = {"forward": (a, to_b, b), "flood": (a, flood, b), "echo": (c, echo, c)}

        def send_all(turns: dict[str, list[int]] | None) -> None:
            for _ in range(packets):
                for what, (peer, frame, dst) in paths.items():
                    peer.send([frame])
                    got: list[bytes] = []
                    _run(
                        sw,
                        peers,
                        lambda dst=dst, got=got: bool(got.extend(dst.recv()) or got),
                        None if turns is None else turns[what],
                    )

        turns: dict[str, list[int]] = {what: [] for what in paths}
        send_all(turns)  # whole turns first, without the nodes' timing wrappers
        for what, times in turns.items():
            out[f"switch turn 1 packet {what}"] = statistics.median(times) / 1e3
        calls = _time_calls(sw)
        send_all(None)
        for name, times in calls.items():
            if times:
                out[f"node {name}"] = statistics.median(times) / 1e3
        sw.close()
        peers.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--calls", type=int, default=2000, help="calls per measurement (2000)")
    ap.add_argument("--packets", type=int, default=300, help="1-packet vectors per switch path")
    ap.add_argument(
        "--only", choices=("queue", "loop", "switch"), action="append", help="one part (repeat)"
    )
    args = ap.parse_args(argv)
    if args.calls < 1 or args.packets < 1:
        ap.error("--calls and --packets are counts >= 1")
    parts = args.only or ["queue", "loop", "switch"]
    figures: dict[str, float] = {}
    if "queue" in parts:
        figures.update(queue_figures(args.calls))
    if "loop" in parts:
        figures.update(loop_figures(args.calls))
    if "switch" in parts:
        figures.update(switch_figures(args.packets))
    if args.json:
        json.dump({k: round(v, 3) for k, v in figures.items()}, sys.stdout, indent=1)
        print()
    else:
        width = max(map(len, figures))
        for name, us in figures.items():
            print(f"{name:<{width}}  {us:9.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
