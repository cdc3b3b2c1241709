"""The IPv4 FIB (DIR-24-8) against a plain-Python longest-prefix match.

Random sequences of adds, replaces and deletes of nested prefixes (/0, /8, /16, /23,
/24, /25, /28, /31, /32 over a few shared networks), then every lookup path (the vector
one, the scalar one and ``covering``) compared with :func:`reference_lookup` on the
edges of every route and on random addresses; the bounds and their messages; and the
memory: tbl8 groups given back when a /24's longer routes go, an empty table lazily
backed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from memifd_probe import rss_kib

from memif.vswitch import ip4_fib
from memif.vswitch.ip4_fib import FibError, FibFullError, Ip4Fib, ip4_dst, reference_lookup

LENGTHS = (0, 1, 8, 15, 16, 23, 24, 25, 28, 31, 32)
BASES = (0x0A000000, 0x0A0000FF, 0x0A010280, 0xC0A80101, 0xFFFFFFFF, 0x00000000)


def ip(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def mask(length: int) -> int:
    return (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF


def edges(routes: list[tuple[int, int, int]]) -> list[int]:
    """Each route's first and last address and the ones just outside it."""
    out = set()
    for prefix, length, _ in routes:
        last = prefix | (~mask(length) & 0xFFFFFFFF)
        out.update({prefix, last, max(prefix - 1, 0), min(last + 1, 0xFFFFFFFF)})
    return sorted(out)


def check(fib: Ip4Fib, model: dict[tuple[int, int], int], extra: list[int]) -> None:
    """Every lookup path of ``fib`` equals the reference over ``model``'s routes."""
    routes = sorted((p, n, a) for (p, n), a in model.items())
    assert fib.routes() == routes
    assert len(fib) == len(routes)
    assert fib.length_counts() == {
        n: c for n in range(33) if (c := sum(1 for _, m in model if m == n))
    }
    dsts = edges(routes) + list(BASES) + extra
    want = [reference_lookup(routes, d) for d in dsts]
    got = fib.lookup(np.array(dsts, np.uint32))
    assert got.dtype == np.uint32
    assert got.tolist() == want
    assert [fib.lookup_one(d) for d in dsts] == want
    extended = {p >> 8 for (p, n) in model if n > 24}  # a vector all in tbl8 groups
    inner = [(d, a) for d, a in zip(dsts, want, strict=True) if d >> 8 in extended]
    if inner:
        assert fib.lookup(np.array([d for d, _ in inner], np.uint32)).tolist() == [
            a for _, a in inner
        ]
    for d, adj in zip(dsts, want, strict=True):
        cover = fib.covering(d)
        if adj == Ip4Fib.MISS:
            assert cover is None
        else:
            assert cover is not None
            prefix, length, cadj = cover
            assert model[(prefix, length)] == cadj == adj
            assert d & mask(length) == prefix
            assert not any(  # nothing longer covers d
                d & mask(n) == p for (p, n) in model if n > length
            )
    # one tbl8 group per /24 that holds a route longer than /24, no more
    assert fib.tbl8_in_use == len({p >> 8 for (p, n) in model if n > 24})


ops = st.lists(
    st.tuples(
        st.sampled_from(("add", "add", "delete")),
        st.sampled_from(BASES),
        st.sampled_from(LENGTHS),
        st.integers(1, 2**31 - 1),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops, st.lists(st.integers(0, 2**32 - 1), max_size=20))
def test_nested_add_replace_delete_equal_reference(
    seq: list[tuple[str, int, int, int]], extra: list[int]
) -> None:
    fib, model = Ip4Fib(max_tbl8=8), {}
    for op, base, length, adj in seq:
        key = (base & mask(length), length)
        if op == "add":
            fib.add(*key, adj)
            model[key] = adj
        elif key in model:
            fib.delete(*key)
            del model[key]
        else:
            with pytest.raises(FibError, match="no such route"):
                fib.delete(*key)
        assert fib.get(*key) == model.get(key)
    check(fib, model, extra)


def test_random_table_equal_reference_then_emptied() -> None:
    """A few hundred random routes of every length, checked, deleted in random order
    (covering ones before covered ones and the reverse), checked along the way."""
    rng = random.Random(12)
    fib, model = Ip4Fib(max_tbl8=256), {}
    nets = [rng.getrandbits(32) for _ in range(40)]
    for _ in range(400):
        length = rng.choice(range(33))
        base = rng.choice(nets) if rng.random() < 0.8 else rng.getrandbits(32)
        key = (base & mask(length), length)
        model[key] = rng.randrange(1, 2**31)
        fib.add(*key, model[key])
    extra = [rng.getrandbits(32) for _ in range(300)] + [n ^ rng.getrandbits(6) for n in nets]
    check(fib, model, extra)
    keys = list(model)
    rng.shuffle(keys)
    for i, key in enumerate(keys):
        fib.delete(*key)
        del model[key]
        if i % 50 == 0:
            check(fib, model, extra)
    check(fib, model, extra)
    assert fib.tbl8_in_use == 0
    assert not fib.lookup(np.array(extra, np.uint32)).any()


def test_default_route_host_route_and_what_falls_back() -> None:
    fib = Ip4Fib()
    fib.add(0, 0, 1)
    fib.add(ip("10.0.0.0"), 8, 2)
    fib.add(ip("10.1.2.0"), 24, 3)
    fib.add(ip("10.1.2.128"), 25, 4)
    fib.add(ip("10.1.2.130"), 32, 5)
    dst = np.array([ip(a) for a in ("9.9.9.9", "10.9.9.9", "10.1.2.1", "10.1.2.129", "10.1.2.130")])
    assert fib.lookup(dst).tolist() == [1, 2, 3, 4, 5]
    assert fib.covering(ip("10.1.2.131")) == (ip("10.1.2.128"), 25, 4)
    fib.delete(ip("10.1.2.128"), 25)  # the covered /32 stays, the rest of the /25 goes to the /24
    assert fib.lookup(dst).tolist() == [1, 2, 3, 3, 5]
    fib.delete(ip("10.1.2.0"), 24)  # a covering route deleted under a longer one
    assert fib.lookup(dst).tolist() == [1, 2, 2, 2, 5]
    fib.add(ip("10.0.0.0"), 8, 7)  # replace: same route, new adjacency
    assert len(fib) == 3
    assert fib.lookup(dst).tolist() == [1, 7, 7, 7, 5]
    fib.delete(0, 0)
    assert fib.lookup(dst).tolist() == [Ip4Fib.MISS, 7, 7, 7, 5]
    assert fib.covering(ip("9.9.9.9")) is None
    fib.delete(ip("10.1.2.130"), 32)
    assert fib.tbl8_in_use == 0
    assert fib.lookup(np.zeros(0, np.uint32)).tolist() == []


@pytest.mark.parametrize(
    ("prefix", "length", "adj", "message"),
    [
        (
            ip("10.0.0.1"),
            24,
            1,
            r"^10\.0\.0\.1/24: host bits set \(the network is 10\.0\.0\.0/24\)$",
        ),
        (ip("10.0.0.0"), 33, 1, r"^10\.0\.0\.0/33: prefix length \(accepted 0\.\.32\)$"),
        (ip("10.0.0.0"), -1, 1, r"^10\.0\.0\.0/-1: prefix length \(accepted 0\.\.32\)$"),
        (2**32, 32, 1, r"^4294967296/32: address \(accepted 0\.0\.0\.0\.\.255\.255\.255\.255\)$"),
        (ip("10.0.0.0"), 8, 0, r"^10\.0\.0\.0/8: adjacency 0 \(accepted 1\.\.2147483647\)$"),
        (ip("10.0.0.0"), 8, 2**31, r"^10\.0\.0\.0/8: adjacency 2147483648 \(accepted 1\.\."),
    ],
)
def test_bad_routes_refused_with_one_line(prefix: int, length: int, adj: int, message: str) -> None:
    fib = Ip4Fib()
    with pytest.raises(FibError, match=message):
        fib.add(prefix, length, adj)
    assert len(fib) == 0
    assert fib.get(prefix, length) is None


def test_delete_absent_and_bad_delete() -> None:
    fib = Ip4Fib()
    fib.add(ip("10.0.0.0"), 8, 1)
    with pytest.raises(FibError, match=r"^10\.0\.0\.0/16: no such route$"):
        fib.delete(ip("10.0.0.0"), 16)
    with pytest.raises(FibError, match="host bits set"):
        fib.delete(ip("10.0.0.1"), 8)
    assert fib.routes() == [(ip("10.0.0.0"), 8, 1)]


def test_max_routes_refuses_new_routes_but_replaces() -> None:
    fib = Ip4Fib(max_routes=3)
    for i in range(3):
        fib.add(i << 8, 24, i + 1)
    with pytest.raises(
        FibFullError, match=r"^0\.0\.3\.0/24: the FIB holds its maximum of 3 routes$"
    ):
        fib.add(3 << 8, 24, 9)
    fib.add(1 << 8, 24, 9)  # a replace is not a new route
    assert fib.lookup_one(1 << 8 | 5) == 9
    fib.delete(0, 24)
    fib.add(3 << 8, 24, 4)
    assert len(fib) == 3


def test_tbl8_groups_bounded_freed_and_reused() -> None:
    fib = Ip4Fib(max_tbl8=2)
    fib.add(ip("10.0.0.0"), 24, 1)
    fib.add(ip("10.0.0.128"), 25, 2)
    fib.add(ip("10.0.0.192"), 26, 3)  # same /24: same group
    fib.add(ip("10.0.1.7"), 32, 4)
    assert fib.tbl8_in_use == 2
    with pytest.raises(FibFullError, match=r"^10\.0\.2\.0/24: all 2 tbl8 groups in use"):
        fib.add(ip("10.0.2.0"), 25, 5)
    assert fib.get(ip("10.0.2.0"), 25) is None
    assert fib.lookup_one(ip("10.0.2.1")) == Ip4Fib.MISS
    fib.add(ip("10.0.2.0"), 24, 5)  # /24 and shorter need no group
    fib.delete(ip("10.0.0.128"), 25)
    assert fib.tbl8_in_use == 2  # the /26 still holds the group
    fib.delete(ip("10.0.0.192"), 26)
    assert fib.tbl8_in_use == 1
    assert fib.covering(ip("10.0.0.200")) == (ip("10.0.0.0"), 24, 1)
    fib.add(ip("10.0.2.0"), 25, 6)  # the freed group serves another /24
    assert fib.lookup(np.array([ip("10.0.2.1"), ip("10.0.2.200")])).tolist() == [6, 5]


def test_memory_bounded_after_churn() -> None:
    """Thousands of /25s come and go: the groups all come back, and what is left looks
    up as if they had never been."""
    rng = random.Random(5)
    fib = Ip4Fib(max_tbl8=64)
    fib.add(ip("100.64.0.0"), 10, 1)
    for _ in range(3000):
        net = ip("100.64.0.0") | rng.getrandbits(14) << 8 | rng.choice((0, 128))
        if fib.get(net, 25) is None:
            if fib.tbl8_in_use < 64:
                fib.add(net, 25, 2)
        else:
            fib.delete(net, 25)
    for prefix, length, _ in fib.routes():
        if length == 25:
            fib.delete(prefix, 25)
    assert fib.tbl8_in_use == 0
    assert fib.routes() == [(ip("100.64.0.0"), 10, 1)]
    dst = np.array([ip("100.64.0.0") | rng.getrandbits(22) for _ in range(1000)], np.uint32)
    assert (fib.lookup(dst) == 1).all()


def test_table_is_lazily_backed() -> None:
    """tbl24 is 80 MB of address space: an empty table (or one with only a default route)
    touches none of it, 1,000 routes scattered over all of it a page or two each (no huge
    pages unless asked for)."""
    rng = random.Random(8)
    before = rss_kib(os.getpid())
    fib = Ip4Fib()
    fib.add(0, 0, 1001)  # the default route writes no entry
    assert rss_kib(os.getpid()) - before < 1024
    assert fib.lookup_one(ip("10.1.2.3")) == 1001
    nets = rng.sample(range(1 << 24), 1000)
    for i, net in enumerate(nets):
        fib.add(net << 8, 24, i + 1)
    assert rss_kib(os.getpid()) - before < 16 * 1024
    assert fib.lookup(np.array([n << 8 | 7 for n in nets], np.uint32)).tolist() == list(
        range(1, 1001)
    )


@pytest.mark.parametrize("hugepages_at", [0, 40])
def test_hugepage_tables_same_answers(hugepages_at: int) -> None:
    """Tables in huge pages from the start, or moved there at the 40th route with tbl8
    groups and a default route in place: the same answers before and after."""
    rng = random.Random(hugepages_at)
    fib, model = Ip4Fib(hugepages_at=hugepages_at, max_tbl8=64), {}
    extra = [rng.getrandbits(32) for _ in range(50)]
    fib.add(0, 0, 1)
    model[(0, 0)] = 1
    for i in range(80):
        length = rng.choice((8, 16, 24, 25, 30, 32))
        key = (rng.getrandbits(32) & mask(length), length)
        fib.add(*key, i + 2)
        model[key] = i + 2
        assert fib.hugepages == (len(fib) >= hugepages_at)
        if len(fib) in (hugepages_at - 1, hugepages_at, 80):
            check(fib, model, extra)


def test_ip4_dst_from_packet_bytes() -> None:
    octets = np.array([[10, 1, 2, 3], [255, 255, 255, 255], [0, 0, 0, 1]], np.uint8)
    want = [ip("10.1.2.3"), 0xFFFFFFFF, 1]
    assert ip4_dst(octets).tolist() == want
    assert ip4_dst(octets).dtype == np.uint32
    assert ip4_dst(octets.reshape(-1)).tolist() == want
    frames = np.zeros((3, 34), np.uint8)
    frames[:, 30:34] = octets  # the destination of an Ethernet + IPv4 header, a strided view
    assert ip4_dst(frames[:, 30:34]).tolist() == want
    with pytest.raises(ValueError, match="^5 bytes: accepted a multiple of 4"):
        ip4_dst(np.zeros(5, np.uint8))


def test_bench_fib_prints_its_figures() -> None:
    """scripts/bench_fib.py runs (a small table, short rounds) and its JSON holds every
    figure it promises; the speeds themselves are the benchmark's business."""
    script = Path(__file__).parent.parent / "scripts" / "bench_fib.py"
    env = {**os.environ, "PYTHONPATH": str(Path(ip4_fib.__file__).parents[2])}
    args = ["--sizes", "1000", "--rounds", "1", "--budget", "0.01", "--json"]
    run = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert run.returncode == 0, run.stderr
    (fig,) = json.loads(run.stdout)["results"]
    assert fig["routes"] == 1000
    assert fig["tbl8_in_use"] > 0  # the mix has routes longer than /24
    assert set(fig["lookups_per_s"]) == {"1", "4", "32", "256", "2048"}
    assert all(v["best"] > 0 for v in fig["lookups_per_s"].values())


def test_numpy_integers_are_addresses_too() -> None:
    """What a node or a parser holds (numpy scalars) adds, deletes and looks up as ints."""
    fib = Ip4Fib()
    fib.add(np.uint32(ip("10.0.0.0")), np.int64(8), np.uint32(3))
    assert fib.routes() == [(ip("10.0.0.0"), 8, 3)]
    assert all(type(x) is int for x in fib.routes()[0])
    dst = ip4_dst(np.array([10, 2, 3, 4], np.uint8))[0]
    assert fib.lookup_one(dst) == 3
    assert fib.covering(dst) == (ip("10.0.0.0"), 8, 3)
    assert all(type(x) is int for x in fib.covering(dst) or ())
    with pytest.raises(FibError, match=r"^10\.0\.0\.0/8\.0: prefix length \(accepted 0\.\.32\)$"):
        fib.add(ip("10.0.0.0"), 8.0, 1)  # type: ignore[arg-type]
    fib.delete(np.uint32(ip("10.0.0.0")), np.uint8(8))
    assert len(fib) == 0


def test_short_prefixes_over_a_table_with_tbl8_groups() -> None:
    """/0, /1 and /7 added, replaced and deleted over a /24 holding a group: the scan of
    tbl24 (chunked) reaches the group's entries and its edges."""
    fib, model = Ip4Fib(), {}
    for key, adj in (((ip("10.1.2.0"), 25), 1), ((ip("10.1.2.128"), 32), 2)):
        fib.add(*key, adj)
        model[key] = adj
    extra = [ip("10.1.2.200"), ip("128.0.0.0"), ip("127.255.255.255")]
    for key in ((0, 0), (0, 1), (ip("10.0.0.0"), 7)):
        for adj in (7, 8):
            fib.add(*key, adj)
            model[key] = adj
            check(fib, model, extra)
    for key in ((0, 1), (0, 0), (ip("10.0.0.0"), 7)):
        fib.delete(*key)
        del model[key]
        check(fib, model, extra)
