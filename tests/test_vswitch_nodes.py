"""Property tests of the switch's vector kernels against their plain-Python references.

Every vectorized piece of the packet path (Ethernet parsing, the l2-fwd decision,
MAC learning, graph dispatch) and the L2 pipeline as a whole are run on random
input and compared with a scalar oracle kept next to them in ``memif.vswitch``.
"""

from __future__ import annotations

import struct
from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from memif.vswitch import Switch
from memif.vswitch.graph import DROP, SMALL_VECTOR, Graph, GraphError, Node
from memif.vswitch.l2fib import L2Fib, fib_key, reference_learn, reference_learn_limited
from memif.vswitch.nodes_l2 import (
    FLOOD,
    FWD,
    flood_targets_reference,
    l2_decide,
    l2_decide_reference,
    l2_vector_reference,
    parse_ethernet,
    parse_ethernet_reference,
)
from memif.vswitch.pool import PacketPool
from memif.vswitch.port import DeviceInput, InterfaceOutput
from memif.vswitch.switch import SwitchError
from memif.vswitch.tables import SwInterface

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------- parse_ethernet
def header_words(header: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An ``(n, 16)`` byte array as the two big-endian words parse_ethernet takes."""
    words = np.ascontiguousarray(header).view(">u8").astype(np.uint64)
    return words[:, 0], words[:, 1]


@SETTINGS
@given(st.lists(st.binary(min_size=16, max_size=16), max_size=40))
def test_parse_ethernet_matches_struct_unpack(rows):
    header = np.frombuffer(b"".join(rows), np.uint8).reshape(len(rows), 16)
    dmac, smac, etype = parse_ethernet(*header_words(header))
    assert dmac.dtype.kind == smac.dtype.kind == etype.dtype.kind == "u"
    for k, row in enumerate(rows):
        d, s, e = struct.unpack("!6s6sH2x", row)
        assert parse_ethernet_reference(row) == (int.from_bytes(d), int.from_bytes(s), e)
        assert (int(dmac[k]), int(smac[k]), int(etype[k])) == parse_ethernet_reference(row)


def test_pool_header_words_read_the_frame_start_of_each_buffer():
    pool = PacketPool(4, 60)  # any row size: headers are gathered as 16-byte items
    try:
        pool.data[2, :14] = np.frombuffer(bytes.fromhex("ffffffffffff 020000000001 0806"), np.uint8)
        pool.data[0, :16] = np.arange(16, dtype=np.uint8)
        dmac, smac, etype = parse_ethernet(*pool.header_words(np.array([2, 0, 2])))
        assert dmac.tolist() == [0xFFFFFFFFFFFF, 0x000102030405, 0xFFFFFFFFFFFF]
        assert smac.tolist() == [0x020000000001, 0x060708090A0B, 0x020000000001]
        assert etype.tolist() == [0x0806, 0x0C0D, 0x0806]
    finally:
        pool.close()


def test_pool_buffers_hold_at_least_a_header():
    with pytest.raises(ValueError, match="at least 16"):
        PacketPool(4, 15)


# ---------------------------------------------------------------------- l2-fwd decision
@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.integers(1, 4),  # rx
            st.integers(-1, 4),  # tx from the FIB (-1 unknown)
            st.booleans(),  # multicast
            st.booleans(),  # forward
            st.booleans(),  # flood
            st.booleans(),  # uu_flood
        ),
        max_size=60,
    )
)
def test_l2_decide_matches_reference(rows):
    cols = list(zip(*rows, strict=True)) or [[]] * 6
    rx, tx = np.array(cols[0], np.int64), np.array(cols[1], np.int64)
    flags = [np.array(c, bool) for c in cols[2:]]
    got = l2_decide(rx, tx, *flags)
    assert got.tolist() == [l2_decide_reference(*r) for r in rows]


def test_l2_decide_reference_cases():
    assert l2_decide_reference(1, 2, False, True, True, True) == FWD
    assert l2_decide_reference(1, -1, False, True, True, True) == FLOOD
    assert l2_decide_reference(1, 1, False, True, True, True) != FWD  # filtered
    assert l2_decide_reference(1, 2, True, True, True, True) == FLOOD  # multicast floods


def test_flood_targets_reference():
    assert flood_targets_reference([1, 2, 3, 4], {1, 2, 4}, 2) == [1, 4]
    assert flood_targets_reference([3], {3}, 3) == []


# ---------------------------------------------------------------------- L2 FIB
KEYS = st.integers(0, 5).map(lambda m: int(fib_key(1 + m % 2, 0x020000000000 + m)))
LEARN_CALLS = st.lists(
    st.lists(st.tuples(KEYS, st.integers(1, 4)), max_size=30), min_size=1, max_size=6
)


def _fib_dict(fib: L2Fib) -> dict[int, int]:
    return {k: e.sw_if_index for k, e in fib.entries.items()}


def _learn(fib: L2Fib, pairs, now: float) -> int:
    keys = np.array([k for k, _ in pairs], np.uint64)
    ifs = np.array([s for _, s in pairs], np.int64)
    return fib.learn(keys, ifs, now)


@SETTINGS
@given(LEARN_CALLS)
def test_learn_matches_reference_and_lookup_matches_dict(calls):
    fib, ref = L2Fib(), {}
    for t, pairs in enumerate(calls):
        before = dict(ref)
        changed = _learn(fib, pairs, float(t))
        ref = reference_learn(ref, [k for k, _ in pairs], [s for _, s in pairs])
        assert _fib_dict(fib) == ref
        assert changed == sum(1 for k in ref if before.get(k) != ref[k])
        probe = np.array(sorted({k for k, _ in pairs} | {int(fib_key(3, 7))}), np.uint64)
        assert fib.lookup(probe).tolist() == [ref.get(int(k), -1) for k in probe]
        for k in probe:  # one key alone: the table itself
            assert fib.lookup(probe[probe == k]).tolist() == [ref.get(int(k), -1)]
        for k, entry in fib.entries.items():  # moved or new entries carry the time
            if before.get(k) != ref[k]:
                assert entry.last_seen == float(t)


def test_learn_last_occurrence_wins_even_when_it_equals_the_table():
    # host on port 2 ; one vector sees it on 1 then back on 2: it stays on 2
    fib = L2Fib()
    k = int(fib_key(1, 0x0200000000AA))
    _learn(fib, [(k, 2)], 0.0)
    assert _learn(fib, [(k, 1), (k, 2)], 1.0) == 0
    assert fib.lookup(np.array([k], np.uint64)).tolist() == [2]


@SETTINGS
@given(
    LEARN_CALLS,
    st.lists(st.tuples(st.integers(0, 5), st.integers(1, 4)), max_size=3),
    st.integers(0, 8),
)
def test_learn_limit_and_static_entries_match_reference(calls, statics, limit):
    fib, ref, static = L2Fib(limit=limit), {}, set()
    for m, s in statics:
        fib.add_static(1 + m % 2, 0x020000000000 + m, s, 0.0)
        key = int(fib_key(1 + m % 2, 0x020000000000 + m))
        ref[key] = s
        static.add(key)
    drops = 0
    for t, pairs in enumerate(calls):
        _learn(fib, pairs, float(t))
        ref, d = reference_learn_limited(
            ref, static, [k for k, _ in pairs], [s for _, s in pairs], limit
        )
        drops += d
        assert _fib_dict(fib) == ref
        assert fib.limit_drops == drops
    assert all(fib.entries[k].static for k in static)


@SETTINGS
@given(
    st.lists(st.tuples(KEYS, st.integers(1, 4), st.integers(0, 100)), max_size=30),
    st.lists(st.tuples(st.integers(0, 5), st.integers(1, 4)), max_size=2),
    st.integers(50, 200),
    st.sampled_from([{}, {1: 30.0}, {2: 10.0}, {1: 5.0, 2: 60.0}, {1: 0.0}]),
)
def test_age_removes_only_old_dynamic_entries(learned, statics, now, max_age):
    fib = L2Fib()
    for k, s, t in learned:
        _learn(fib, [(k, s)], float(t))
    for m, s in statics:
        fib.add_static(1 + m % 2, 0x020000000000 + m, s, 0.0)
    before = {k: (e.sw_if_index, e.last_seen, e.static) for k, e in fib.entries.items()}
    expect = {
        k: v[0]
        for k, v in before.items()
        if v[2] or not max_age.get(k >> 48) or now - v[1] <= max_age[k >> 48]
    }
    assert fib.age(float(now), max_age) == len(before) - len(expect)
    assert _fib_dict(fib) == expect
    probe = np.array(sorted(before), np.uint64)
    assert fib.lookup(probe).tolist() == [expect.get(int(k), -1) for k in probe]


@SETTINGS
@given(
    st.lists(st.tuples(KEYS, st.integers(1, 4)), max_size=30),
    st.lists(st.tuples(st.integers(0, 5), st.integers(1, 4)), max_size=2),
    st.sampled_from([None, 1, 2, 3]),
    st.sampled_from([None, 1, 2, 3, 4]),
)
def test_flush_removes_dynamic_entries_of_a_bd_and_or_interface(learned, statics, bd, sw_if):
    fib = L2Fib()
    _learn(fib, learned, 0.0)
    for m, s in statics:
        fib.add_static(1 + m % 2, 0x020000000000 + m, s, 0.0)
    before = {k: (e.sw_if_index, e.static) for k, e in fib.entries.items()}
    expect = {
        k: s
        for k, (s, static) in before.items()
        if static or (bd is not None and k >> 48 != bd) or (sw_if is not None and s != sw_if)
    }
    assert fib.flush(bd=bd, sw_if_index=sw_if) == len(before) - len(expect)
    assert _fib_dict(fib) == expect
    probe = np.array(sorted(before), np.uint64)
    assert fib.lookup(probe).tolist() == [expect.get(int(k), -1) for k in probe]


# ---------------------------------------------------------------------- graph dispatch
class Recorder(Node):
    """Records every vector it gets, then frees it."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self._name = name
        self.got: list[int] = []

    @property
    def node_name(self) -> str:
        return self._name

    def process(self, idx: np.ndarray) -> None:
        self.got.extend(idx.tolist())
        self.graph.pool.free(idx)


@SETTINGS
@given(st.lists(st.integers(0, 3), max_size=256), st.randoms(use_true_random=False))
def test_dispatch_keeps_order_within_each_next_and_loses_nothing(nexts, rnd):
    check_dispatch(nexts, rnd, route=False)


@SETTINGS
@given(st.lists(st.integers(0, 3), min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_route_keeps_order_within_each_next_and_loses_nothing(nexts, rnd):
    """Graph.route, the small vectors' plain twin of dispatch, sends the same way."""
    check_dispatch(nexts, rnd, route=True)


def check_dispatch(nexts: list[int], rnd, *, route: bool) -> None:
    small_pool = PacketPool(256, 64)
    graph = Graph(small_pool)
    recorders = [Recorder(f"r{k}") for k in range(4)]
    ids = [graph.add(r) for r in recorders]
    idx = small_pool.alloc(len(nexts))
    order = idx.tolist()
    rnd.shuffle(order)  # any buffer order, not just the stack's
    idx = np.array(order, np.int32)
    if route:
        graph.route(idx, [ids[k] for k in nexts])
    else:
        graph.dispatch(idx, np.array([ids[k] for k in nexts], np.int64))
    graph.run()
    for k, r in enumerate(recorders):
        assert r.got == [i for i, n in zip(order, nexts, strict=True) if n == k]
    assert small_pool.n_free == small_pool.n_buffers
    small_pool.close()


class Bouncer(Recorder):
    """Sends each vector it gets to the node ``hops`` names next (a later node, an
    earlier one or itself), until its hops run out; then frees it."""

    def __init__(self, name: str, hops: list[str]) -> None:
        super().__init__(name)
        self.hops = hops

    def process(self, idx: np.ndarray) -> None:
        self.got.extend(idx.tolist())
        if self.hops:
            self.graph.enqueue(self.graph.by_name[self.hops.pop(0)].id, idx)
        else:
            self.graph.pool.free(idx)


def test_run_follows_vectors_sent_back_to_earlier_nodes_and_to_the_same_node():
    """A pass reaches later nodes itself; a vector queued for the node being called or
    an earlier one gets another pass, so run() leaves nothing queued."""
    pool = PacketPool(16, 64)
    graph = Graph(pool)
    a = Bouncer("a", ["c", "a", "b"])  # a -> c -> a (back) -> a (itself) -> b -> c
    b = Bouncer("b", ["c"])
    c = Bouncer("c", ["a", "c"])  # (c's second vector: to itself, then done)
    for node in (a, b, c):
        graph.add(node)
    idx = pool.alloc(2)
    graph.enqueue(a.id, idx)
    assert graph.run() == 7  # a, c, a, a, b, c, c
    assert (a.calls, b.calls, c.calls) == (3, 1, 3)
    assert a.got == idx.tolist() * 3 and c.got == idx.tolist() * 3
    assert pool.n_free == pool.n_buffers
    assert graph.run() == 0


# ---------------------------------------------------------------------- declared edges
class Forwarder(Recorder):
    """Declares its next nodes; sends everything to the first."""

    next_nodes = ("r1", "error-drop")

    def process(self, idx: np.ndarray) -> None:
        self.got.extend(idx.tolist())
        self.graph.enqueue(self.next[0], idx)


class Misspelt(Recorder):
    next_nodes = ("r1", "l2-leran")


def test_next_nodes_are_resolved_once_when_the_graph_is_built():
    pool = PacketPool(16, 64)
    graph = Graph(pool)
    fwd, r1 = Forwarder("fwd"), Recorder("r1")
    graph.add(fwd)
    graph.add(r1)  # declared before its target exists: resolved at build
    graph.build()
    assert fwd.next == (r1.id, graph.drop_node)
    idx = pool.alloc(3)
    graph.enqueue(fwd.id, idx)
    graph.run()
    assert fwd.got == r1.got == idx.tolist()
    assert graph.edges() == {"error-drop": [], "fwd": ["r1", "error-drop"], "r1": []}
    out = Recorder("r1-output")
    graph.add(out)  # after build: resolved at once
    graph.add_next(r1, out)
    assert graph.edges()["r1"] == ["r1-output"]
    graph.remove(out)
    assert graph.edges()["r1"] == [] and "r1-output" not in graph.edges()
    pool.close()


def test_a_misspelt_next_node_fails_at_build_naming_both():
    pool = PacketPool(16, 64)
    graph = Graph(pool)
    graph.add(Misspelt("mine"))
    graph.add(Recorder("r1"))
    with pytest.raises(GraphError) as exc:
        graph.build()
    message = str(exc.value)
    assert message.startswith("node mine: next node 'l2-leran' does not exist (nodes: ")
    assert "\n" not in message
    built = Graph(pool)
    built.add(Recorder("r1"))
    built.build()
    with pytest.raises(GraphError, match="^node late: next node 'l2-leran' does not exist"):
        built.add(Misspelt("late"))  # a node added later is checked when it is added
    pool.close()


def test_the_switch_graph_declares_every_edge_it_uses(tmp_path):
    sw = Switch(str(tmp_path / "run"), n_buffers=256, data_size=2048)
    try:
        sw.create_memif(id=1, role="master")
        edges = sw.graph.edges()
        assert edges["memif-input"] == ["ethernet-input", "span-input", "ip4-input", "error-drop"]
        assert edges["ethernet-input"] == [
            "l2-learn",
            "l2-output",
            "arp-input",
            "ip4-input",
            "error-drop",
        ]
        assert edges["l2-learn"] == ["l2-fwd"]
        assert edges["l2-output"] == ["error-drop", "memif0/1-output"]
        assert edges["memif0/1-output"] == ["l2-output", "error-drop"]
        sw.delete_interface("memif0/1")
        assert sw.graph.edges()["l2-output"] == ["error-drop"]
    finally:
        sw.close()


# ---------------------------------------------------------------------- the whole L2 path
class DummyPort:
    """Stands in for a memif port: a link state and an output node."""

    kind = "test"

    def __init__(self, link_up: bool) -> None:
        self.link_up = link_up
        self.output_node = 0


class Capture(Node):
    """An interface's output node: records the frames it gets and frees the buffers."""

    def __init__(self, sw: SwInterface, log: dict[int, list[bytes]]) -> None:
        super().__init__()
        self.sw = sw
        self.log = log

    @property
    def node_name(self) -> str:
        return f"{self.sw.name}-output"

    def process(self, idx: np.ndarray) -> None:
        pool = self.graph.pool
        self.log[self.sw.sw_if_index].extend(pool.packet(i) for i in idx.tolist())
        pool.free(idx)


def _checked_pool(pool: PacketPool) -> None:
    """Make ``pool`` fail loudly on a double free or a free of a buffer not allocated."""
    is_free = np.ones(pool.n_buffers, bool)
    alloc, free = pool.alloc, pool.free

    def checked_alloc(n: int) -> np.ndarray:
        idx = alloc(n)
        assert is_free[idx].all()
        is_free[idx] = False
        return idx

    def checked_free(idx: np.ndarray) -> None:
        idx = np.asarray(idx)
        assert not is_free[idx].any(), "buffer freed twice"
        assert len(np.unique(idx)) == len(idx), "buffer freed twice in one call"
        is_free[idx] = True
        free(idx)

    pool.alloc, pool.free = checked_alloc, checked_free  # type: ignore[method-assign]


class Bench:
    """A Switch whose interfaces are dummy ports with capturing output nodes.

    Packets are injected at ethernet-input, one vector per :meth:`inject`, and the
    graph runs until empty; ``out`` collects what each interface transmitted.
    """

    def __init__(self, tmp_path_factory, links: list[bool]) -> None:
        self.sw = Switch(str(tmp_path_factory.mktemp("run")), n_buffers=2048, data_size=2048)
        _checked_pool(self.sw.pool)
        self.out: dict[int, list[bytes]] = defaultdict(list)
        self.names = []
        for i, link in enumerate(links):
            s = SwInterface(self.sw.tables.new_index(), f"test{i}", bytes(6), DummyPort(link))
            s.port.output_node = self.sw.graph.add(Capture(s, self.out))
            self.sw.tables.add(s)
            self.names.append(s.name)
        self.index = [self.sw.interface(n).sw_if_index for n in self.names]

    def inject(self, packets: list[tuple[int, bytes]], now: float) -> None:
        sw = self.sw
        idx = sw.pool.alloc(len(packets))
        assert len(idx) == len(packets)
        for i, (rx_if, frame) in zip(idx.tolist(), packets, strict=True):
            sw.pool.data[i, : len(frame)] = np.frombuffer(frame, np.uint8)
            sw.pool.length[i] = len(frame)
            sw.meta.rx_if[i] = rx_if
        sw.runtime.now = now  # the clock the nodes read (the main loop sets it each turn)
        sw.graph.enqueue(sw.graph.by_name["ethernet-input"].id, idx)
        sw.graph.run()

    def errors(self) -> Counter[str]:
        got: Counter[str] = Counter()
        for node in self.sw.graph.nodes:
            got.update(node.error_counts)
        return +got

    def close(self) -> None:
        self.sw.close()


MACS = [0x020000000000 + k for k in range(1, 6)] + [0xFFFFFFFFFFFF, 0x01005E000001]
MCAST = MACS[-1]
FLAGS = ("learn", "forward", "flood", "uu_flood")


@st.composite
def scenarios(draw, vector: tuple[int, int] = (0, 40)):
    n_if = draw(st.integers(2, 5))
    ifaces = []
    for i in range(n_if):
        kind = draw(st.sampled_from(["bd1", "bd1", "bd2", "xc", "l3"]))
        target = draw(st.integers(0, n_if - 1).filter(lambda t, i=i: t != i))
        admin = draw(st.booleans()) if i else True
        link = draw(st.booleans()) if i else True
        ifaces.append((kind, target, admin, link))
    flags = {b: draw(st.fixed_dictionaries({f: st.booleans() for f in FLAGS})) for b in (1, 2)}
    statics = draw(st.lists(st.tuples(st.sampled_from([1, 2]), st.integers(0, 6)), max_size=2))
    statics = [(b, MACS[m], draw(st.integers(0, n_if - 1))) for b, m in statics]
    limit = draw(st.sampled_from([2, 5, 1000]))
    frame = st.tuples(
        st.sampled_from(MACS),  # destination
        st.sampled_from(MACS[:5] + [MCAST]),  # source (a bogus multicast one too)
        st.integers(0, 40),  # payload bytes
        st.integers(0, 20),  # 0..2: a runt
    )
    packet = st.tuples(st.integers(0, n_if - 1), frame)
    vectors = draw(st.lists(st.lists(packet, min_size=vector[0], max_size=vector[1])))
    return ifaces, flags, statics, limit, vectors


def _frame(seq: int, dmac: int, smac: int, payload: int, runt: int) -> bytes:
    head = dmac.to_bytes(6, "big") + smac.to_bytes(6, "big") + b"\x88\xb5"
    body = struct.pack("!I", seq) + bytes(payload)
    return head[: runt * 6 + 1] if runt < 3 else head + body  # runts of 1, 7, 13 bytes


ALL_ON = {f: True for f in FLAGS}
BRIDGE3 = [("bd1", 1, True, True), ("bd1", 0, True, True), ("bd1", 0, True, True)]


@SETTINGS
@given(scenarios())
# a multicast MAC seen as a source (so learned) is still flooded as a destination
@example(
    (
        BRIDGE3,
        {1: ALL_ON, 2: ALL_ON},
        [],
        1000,
        [[(0, (MACS[1], MCAST, 0, 5))], [(1, (MCAST, MACS[1], 0, 5))]],
    )
)
# a static entry for a multicast MAC does not stop it from being flooded
@example((BRIDGE3, {1: ALL_ON, 2: ALL_ON}, [(1, MCAST, 0)], 1000, [[(1, (MCAST, MACS[1], 0, 5))]]))
def test_l2_pipeline_matches_a_packet_by_packet_learning_bridge(tmp_path_factory, scenario):
    """Random bridges, cross-connects and frames through ethernet-input .. l2-output.

    The reference handles each vector the way the graph (and VPP, per frame) does:
    l2-learn runs on the whole vector before l2-fwd, so all sources of a vector are
    learned first (last occurrence wins), then every packet is forwarded in order
    (see ``l2_vector_reference``).  Within a vector an output's packets are grouped
    by the node that sent them to l2-output: cross-connected first (from
    ethernet-input), then known unicast (l2-fwd), then flooded (l2-flood), each
    group in packet order; so order is kept per (source, destination) flow.
    """
    check_l2_pipeline(tmp_path_factory, scenario)


@SETTINGS
@given(scenarios(vector=(1, 1)))
def test_l2_pipeline_of_one_packet_vectors_matches_the_bridge(tmp_path_factory, scenario):
    """The same with every vector one packet long: the nodes' 1-packet paths (l2-fwd's
    plain decision, l2-flood's single receive port) decide as the reference does."""
    check_l2_pipeline(tmp_path_factory, scenario)


@SETTINGS
@given(scenarios(vector=(2, SMALL_VECTOR)))
def test_l2_pipeline_of_small_vectors_matches_the_bridge(tmp_path_factory, scenario):
    """The same with vectors of 2 to SMALL_VECTOR packets: the nodes' plain paths for
    small vectors (each packet decided alone, routed by Graph.route; l2-learn's all-known
    check) decide as the reference does, packets of one vector going different ways."""
    check_l2_pipeline(tmp_path_factory, scenario)


def check_l2_pipeline(tmp_path_factory, scenario) -> None:
    """Run a scenario's vectors through the switch and hold it to the reference."""
    ifaces, flags, statics, limit, vectors = scenario
    bench = Bench(tmp_path_factory, [link for _, _, _, link in ifaces])
    sw, names, index = bench.sw, bench.names, bench.index
    try:
        for b in (1, 2):
            sw.create_bridge_domain(b, **flags[b])
        for i, (kind, target, admin, _) in enumerate(ifaces):
            sw.set_state(names[i], admin)
            if kind.startswith("bd"):
                sw.set_bridge(names[i], int(kind[2]))
            elif kind == "xc":
                sw.set_xconnect(names[i], names[target])
        sw.fib.limit = limit
        fib, static = {}, set()
        for b, mac, i in statics:
            sw.fib.add_static(b, mac, index[i], 0.0)
            fib[int(fib_key(b, mac))] = index[i]
            static.add(int(fib_key(b, mac)))
        usable_rx = [index[i] for i, (_, _, admin, link) in enumerate(ifaces) if admin and link]

        expect: dict[int, list[bytes]] = defaultdict(list)
        errors: Counter[str] = Counter()
        drops, seq = 0, 0
        for t, vector in enumerate(vectors):
            packets = []
            for rx, (dmac, smac, payload, runt) in vector:
                seq += 1
                rx_if = usable_rx[rx % len(usable_rx)]  # only up interfaces receive
                packets.append((rx_if, _frame(seq, dmac, smac, payload, runt)))
            results, d = l2_vector_reference(sw.tables, fib, static, limit, packets)
            drops += d
            for stage in ("xconnect", "forward", "flood"):
                for (_, frame), (what, targets) in zip(packets, results, strict=True):
                    if what == stage:
                        for tx in targets:
                            expect[tx].append(frame)
            errors.update(what for what, targets in results if not targets)
            errors["limit"] += d  # l2-learn's "L2 learn limit exceeded" (not a drop)

            bench.inject(packets, float(t))

            assert dict(bench.out) == dict(expect)
            assert _fib_dict(sw.fib) == fib
            assert sw.fib.limit_drops == drops
            assert bench.errors() == +errors
            assert sw.pool.n_free == sw.pool.n_buffers  # every output freed its buffers
    finally:
        bench.close()


def test_mac_ageing_keeps_hosts_that_keep_sending(tmp_path_factory):
    bench = Bench(tmp_path_factory, [True, True])
    sw = bench.sw
    try:
        sw.create_bridge_domain(1, mac_age=1)  # minutes
        for name in bench.names:
            sw.set_state(name, True)
            sw.set_bridge(name, 1)
        a, b = bench.index
        bench.inject([(a, _frame(1, MACS[1], MACS[0], 0, 5))], 0.0)
        bench.inject([(b, _frame(2, MACS[0], MACS[1], 0, 5))], 0.0)
        bench.inject([(a, _frame(3, MACS[1], MACS[0], 0, 5))], 50.0)  # a is still there
        sw.control(100.0)  # ages: b was last heard 100 s ago, a 50 s ago
        assert _fib_dict(sw.fib) == {int(fib_key(1, MACS[0])): a}
        bench.inject([(b, _frame(4, MACS[0], MACS[1], 0, 5))], 100.0)
        assert bench.out[a][-1] == _frame(4, MACS[0], MACS[1], 0, 5)  # known: not flooded
        assert bench.errors() == {}
    finally:
        bench.close()


# ---------------------------------------------------------------------- one port protocol
class FakeInput(DeviceInput):
    """The device-input of a device class written for this test."""

    name = "fake-input"
    kind = "fake"
    errors = {"interface-down": "interface admin-down"}


class FakePort:
    """A device class of its own behind the Port protocol: frames in lists."""

    kind = "fake"
    fault_action = "noting it"
    mtu = None  # no Linux side: the switch's default MTU

    def __init__(self, rt) -> None:
        self.rt = rt
        self.sw: SwInterface | None = None
        self.output_node = 0
        self.rx: list[bytes] = []
        self.tx: list[bytes] = []
        self.fail = False
        self.faults: list[str] = []
        self.admin: list[bool] = []
        self.closed = False

    @property
    def link_up(self) -> bool:
        return not self.closed

    def receive(self, node: DeviceInput) -> int:
        if self.fail:
            raise RuntimeError("broken device")
        pool = self.rt.pool
        idx = pool.alloc(len(self.rx))
        for i, f in zip(idx.tolist(), self.rx, strict=True):
            pool.data[i, : len(f)] = np.frombuffer(f, np.uint8)
            pool.length[i] = len(f)
        self.rx = []
        return node.deliver(self.sw, idx)

    def transmit(self, node: InterfaceOutput, idx: np.ndarray) -> None:
        self.tx += [self.rt.pool.packet(i) for i in idx.tolist()]
        self.rt.pool.free(idx)

    def rx_queues(self) -> tuple[()]:
        return ()

    def fds(self) -> list[int]:
        return []

    def set_admin(self, up: bool) -> None:
        self.admin.append(up)

    def fault(self, reason: str) -> None:
        self.faults.append(reason)

    def close(self) -> None:
        self.closed = True

    def details(self) -> dict[str, object]:
        return {}


def test_a_new_device_class_is_a_port_like_any_other(tmp_path):
    sw = Switch(str(tmp_path / "run"), n_buffers=256, data_size=2048)
    try:
        node = sw.input_node(FakeInput)
        assert sw.input_node(FakeInput) is node  # one input node per device class
        a, b, c = FakePort(sw.runtime), FakePort(sw.runtime), FakePort(sw.runtime)
        for name, port in (("fake0", a), ("fake1", b), ("fake2", c)):
            sw.add_port(name, bytes(6), port, InterfaceOutput)
            sw.set_state(name, True)
            sw.set_bridge(name, 1)
        assert a.admin == [True] and sw.ports.of_kind("fake") == (a, b, c)
        assert sw.graph.edges()["fake-input"][0] == "ethernet-input"
        bcast = _frame(1, MACS[5], MACS[0], 10, 5)
        a.rx = [bcast]
        sw.loop.run_once(10.0)
        assert b.tx == c.tx == [bcast] and a.tx == []
        # a device that raises is contained on its own: counted, told, the others go on
        a.fail, b.rx = True, [_frame(2, MACS[0], MACS[1], 10, 5)]
        sw.loop.run_once(11.0)
        assert sw.runtime.loop_errors["port-exception"] == 1
        assert a.faults == ["memifd internal error on this interface"]
        assert a.tx == [_frame(2, MACS[0], MACS[1], 10, 5)]  # b's frame, to a (learned)
        # one delete path for every class; the kind is checked when given
        with pytest.raises(SwitchError, match="^fake1 is not a memif interface"):
            sw.delete_interface("fake1", "memif")
        sw.delete_interface("fake1", "fake")
        assert b.closed and "fake1" not in sw.tables.by_name and 2 not in sw.ports
        assert sw.ports.of_kind("fake") == (a, c)
        assert "fake1-output" not in sw.graph.edges()["l2-output"]
        sw.close()  # deletes the rest
        assert a.closed and c.closed and len(sw.ports) == 0
    finally:
        sw.close()


class SmallDropper(Node):
    """Drops every packet on the plain path for small vectors (route_small)."""

    name = "small-dropper"
    errors = {"nope": "dropped on the plain path"}
    next_nodes = (DROP,)

    def process(self, idx: np.ndarray) -> None:
        self.route_small(idx)

    def next_of(self, i: int) -> int:
        return self.dropped("nope")


def test_plain_path_drops_record_a_reason_for_traced_buffers_only():
    """While tracing, a drop on the plain path records its reason for error-drop's trace
    line only for a traced buffer, as Node.drop does: none is left behind for the others."""
    pool = PacketPool(16, 64)
    graph = Graph(pool)
    node = SmallDropper()
    graph.add(node)
    graph.build()
    graph.trace_add("small-dropper", 1)
    idx = pool.alloc(3)
    graph.trace_start("small-dropper", idx)  # the first one traced
    graph.enqueue(node.id, idx)
    graph.run()
    assert node.error_counts["nope"] == 3
    assert graph.trace_errors == {}  # error-drop took the traced one's, no other was kept
    [lines] = graph.traces.values()
    assert lines[-1].endswith("small-dropper: nope (dropped on the plain path)")
    pool.close()
