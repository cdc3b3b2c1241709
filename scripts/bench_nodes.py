#!/usr/bin/env python3
"""Per-node cost of the bridged and the routed path: nanoseconds per packet by vector size.

An in-process switch set up as ``memif bench-switch``'s open path sets it up (the same
``configure``), a vector of the generator's frames (64-byte UDP from 10.10.0.2 to
10.20.0.2) put in its buffers as memif-input leaves them, then each node of the path run
on what the node before it handed on, from ethernet-input to l2-output (the memif
output needs a peer: bench-switch measures it).  Each node's figure is the best of
``--rounds`` runs, the buffers restored between runs (outside the clock).  A benchmark
that prints figures, not a test.  Compare two trees in one sitting::

    .venv/bin/python scripts/bench_nodes.py
    PYTHONPATH=/tmp/base/src .venv/bin/python scripts/bench_nodes.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from memif import packet
from memif.tools.bench import open_path
from memif.vswitch.switch import Switch

PATH_NODES = {
    open_path.BRIDGED: ("ethernet-input", "l2-learn", "l2-fwd", "l2-output"),
    open_path.ROUTED: ("ethernet-input", "ip4-input", "ip4-lookup", "ip4-rewrite", "l2-output"),
}


def frame(path: str, size: int = 64) -> bytes:
    """The generator's frame on ``path`` (testpmd txonly's: UDP, TTL 64)."""
    udp = bytes(8 + size - 14 - 20 - 8)
    ip = packet.ipv4(packet.ip4(open_path.GENERATOR_IP), packet.ip4(open_path.SINK_IP), 17, udp)
    dmac = bytes.fromhex(open_path.generator_dmac(path).replace(":", ""))
    smac = bytes.fromhex(open_path.GENERATOR_MAC.replace(":", ""))
    return packet.ethernet(dmac, smac, packet.ETH_P_IP, ip)


def path_figures(path: str, sizes: list[int], rounds: int) -> dict[int, dict[str, float]]:
    """ns/packet of each node of ``path`` at each vector size."""
    with tempfile.TemporaryDirectory() as folder:
        sw = Switch(str(Path(folder) / "run"), n_buffers=2 * max(sizes) + 64, data_size=2048)
        try:
            sw.create_socket(1, str(Path(folder) / "memif.sock"))
            ports = [
                sw.create_memif(id=i, socket_id=1, role="master", hw_addr=open_path.SWITCH_MAC[i])
                for i in (0, 1)
            ]
            for p in ports:
                sw.set_state(p.name, True)
            open_path.configure(sw, path, [p.name for p in ports])
            return {n: _vector(sw, path, ports[0].sw_if_index, n, rounds) for n in sizes}
        finally:
            sw.close()


def _vector(sw: Switch, path: str, rx: int, n: int, rounds: int) -> dict[str, float]:
    pool, meta, graph = sw.pool, sw.meta, sw.graph
    idx = pool.alloc(n)
    data = np.frombuffer(frame(path), np.uint8)
    best = dict.fromkeys(PATH_NODES[path], float("inf"))
    queued: list[tuple[int, np.ndarray]] = []
    graph.enqueue = lambda k, vec: queued.append((k, vec))  # type: ignore[method-assign]
    try:
        for _ in range(rounds):
            pool.data[idx, : len(data)] = data
            pool.length[idx] = len(data)
            meta.rx_if[idx] = rx
            vec = idx
            for name in PATH_NODES[path]:
                node = graph.by_name[name]
                queued.clear()
                t0 = time.perf_counter_ns()
                node.process(vec)
                ns = time.perf_counter_ns() - t0
                best[name] = min(best[name], ns / n)
                if name != PATH_NODES[path][-1]:
                    got = [
                        v for k, v in queued if len(v) and graph.nodes[k].node_name != "error-drop"
                    ]
                    assert len(got) == 1 and len(got[0]) == n, (name, queued)
                    vec = got[0]
    finally:
        del graph.enqueue
        pool.free(idx)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="256,2048", help="vector sizes (default 256,2048)")
    p.add_argument("--rounds", type=int, default=200, help="runs per node (best kept)")
    args = p.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    for path in PATH_NODES:
        for n, nodes in path_figures(path, sizes, args.rounds).items():
            cells = "  ".join(f"{k} {v:6.1f}" for k, v in nodes.items())
            print(f"{path:<8} n={n:<5} total {sum(nodes.values()):6.1f} ns/packet: {cells}")


if __name__ == "__main__":
    main()
