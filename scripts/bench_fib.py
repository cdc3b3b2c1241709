#!/usr/bin/env python3
"""The IPv4 FIB (memif.vswitch.ip4_fib): build and lookup figures for 1k, 100k and 1M routes.

Routes are random prefixes with a BGP-like length mix (:data:`MIX`: 57% /24, 40% /16../23,
1.5% /25../32, 1.5% /8../15, as in a full Internet table), each with its own adjacency.
For each table size it prints:

* the build: seconds, routes added per second (``Ip4Fib.add`` one route at a time, as a
  startup file or a routing daemon would), the resident memory the table added (VmRSS
  after the build minus before the table was made, each size in a process of its own;
  the route objects themselves are the caller's and not counted) and the tbl8 groups in use;
* lookups per second for vectors of 1 (``lookup_one``), 4, 32, 256 and 2048 random
  destinations (``lookup``): the best of ``--rounds`` rounds and the spread (worst/best),
  every vector a fresh slice of a large random pool, so no vector is served warm from cache.

A benchmark that prints figures, not a test.  The issue's target: 2,048 random
destinations with 100,000 routes >= 20 M lookups/s::

    .venv/bin/python scripts/bench_fib.py [--sizes 1000,100000,1000000] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from typing import Any

import numpy as np

from memif.vswitch.ip4_fib import HUGEPAGES_AT, Ip4Fib

#: (prefix length, share of routes); sums to 1
MIX: tuple[tuple[int, float], ...] = (
    *((n, 0.015 / 8) for n in range(8, 16)),
    (16, 0.015),
    (17, 0.01),
    (18, 0.02),
    (19, 0.04),
    (20, 0.05),
    (21, 0.06),
    (22, 0.11),
    (23, 0.095),
    (24, 0.57),
    *((n, 0.015 / 8) for n in range(25, 33)),
)
VECTORS = (1, 4, 32, 256, 2048)
POOL = 1 << 20  # random destinations the vectors are cut from


def rss_kib() -> int:
    """This process's VmRSS, KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def random_routes(n: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """``n`` distinct random (prefix, length, adj) routes with the :data:`MIX` of lengths."""
    lengths_all, shares = zip(*MIX, strict=True)
    seen: set[tuple[int, int]] = set()
    out: list[tuple[int, int, int]] = []
    while len(out) < n:
        want = n - len(out)
        lengths = rng.choice(np.array(lengths_all), size=want, p=np.array(shares) / sum(shares))
        addrs = rng.integers(0, 1 << 32, size=want, dtype=np.uint64)
        masks = (np.uint64(0xFFFFFFFF) << (np.uint64(32) - lengths.astype(np.uint64))) & np.uint64(
            0xFFFFFFFF
        )
        for prefix, length in zip((addrs & masks).tolist(), lengths.tolist(), strict=True):
            if (prefix, length) not in seen:
                seen.add((prefix, length))
                out.append((prefix, length, len(out) + 1))
    return out


def lookups_per_s(
    fib: Ip4Fib, pool: np.ndarray, size: int, rounds: int, budget: float
) -> tuple[float, float]:
    """(best, worst) lookups per second over ``rounds`` rounds of about ``budget``
    seconds each; vector ``size`` 1 goes through ``lookup_one``."""
    rates = []
    if size == 1:
        one = pool[: 1 << 16].tolist()
        for _ in range(rounds):
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < budget:
                for d in one:
                    fib.lookup_one(d)
                n += len(one)
            rates.append(n / (time.perf_counter() - t0))
    else:
        vectors = [pool[i : i + size] for i in range(0, len(pool) - size + 1, size)]
        batch = max(1, 4096 // size)  # vectors between two looks at the clock
        at = 0
        for _ in range(rounds):
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < budget:
                if at + batch > len(vectors):
                    at = 0
                for v in vectors[at : at + batch]:
                    fib.lookup(v)
                at += batch
                n += size * batch
            rates.append(n / (time.perf_counter() - t0))
    return max(rates), min(rates)


def bench(
    n: int, rounds: int, budget: float, seed: int, hugepages_at: int | None
) -> dict[str, Any]:
    """Figures for a table of ``n`` random routes."""
    rng = np.random.default_rng(seed)
    routes = random_routes(n, rng)
    gc.collect()
    rss0 = rss_kib()
    fib = Ip4Fib(hugepages_at=hugepages_at)
    t0 = time.perf_counter()
    for prefix, length, adj in routes:
        fib.add(prefix, length, adj)
    build = time.perf_counter() - t0
    rss = rss_kib() - rss0
    pool = rng.integers(0, 1 << 32, size=POOL, dtype=np.uint32)
    hit = float((fib.lookup(pool) != Ip4Fib.MISS).mean())
    out: dict[str, Any] = {
        "routes": n,
        "build_s": round(build, 3),
        "routes_per_s": round(n / build),
        "rss_mib": round(rss / 1024, 1),
        "tbl8_in_use": fib.tbl8_in_use,
        "hugepages": fib.hugepages,
        "hit_ratio": round(hit, 3),
        "lookups_per_s": {},
    }
    for size in VECTORS:
        best, worst = lookups_per_s(fib, pool, size, rounds, budget)
        out["lookups_per_s"][str(size)] = {"best": round(best), "spread": round(best / worst, 2)}
    del fib
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--sizes", default="1000,100000,1000000", help="route counts, comma separated")
    ap.add_argument("--rounds", type=int, default=7, help="rounds per figure (best is printed)")
    ap.add_argument("--budget", type=float, default=0.2, help="seconds per round")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--hugepages-at",
        default=str(HUGEPAGES_AT),
        help="routes at which the tables move into huge pages; 0: from the start; never",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    huge_at = None if args.hugepages_at == "never" else int(args.hugepages_at)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if len(sizes) == 1:
        results = [bench(sizes[0], args.rounds, args.budget, args.seed, huge_at)]
    else:  # one process per table: each RSS figure starts from a fresh heap
        argv = argv if argv is not None else sys.argv[1:]
        results = [
            json.loads(
                subprocess.run(
                    [sys.executable, __file__, *argv, "--sizes", str(n), "--json"],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )["results"][0]
            for n in sizes
        ]
    if args.json:
        json.dump(
            {"mix": dict(MIX), "hugepages_at": huge_at, "results": results},
            sys.stdout,
            indent=1,
        )
        print()
        return 0
    mix = ", ".join(f"/{n} {share:.1%}" for n, share in MIX if share >= 0.01)
    print(f"length mix: {mix}; /8../15 and /25../32 1.5% each")
    for r in results:
        print(
            f"\n{r['routes']:>9,} routes: build {r['build_s']:.2f} s ({r['routes_per_s']:,}"
            f" routes/s), +{r['rss_mib']} MiB RSS, {r['tbl8_in_use']} tbl8 groups,"
            f" {'2 MB' if r['hugepages'] else '4 KB'} pages,"
            f" {r['hit_ratio']:.0%} of random addresses routed"
        )
        for size, fig in r["lookups_per_s"].items():
            api = "lookup_one" if size == "1" else "lookup"
            print(
                f"  vector {size:>5} ({api:<10}): {fig['best'] / 1e6:8.2f} M lookups/s"
                f"  (spread x{fig['spread']})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
