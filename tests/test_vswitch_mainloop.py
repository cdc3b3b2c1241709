"""The switch's main loop on its own: a runtime, a graph and input nodes, time injected.

:class:`memif.vswitch.mainloop.MainLoop` is driven with ``run_once(now)`` at times the
test chooses, so when control work runs, when the loop may sleep and how failures are
contained are checked without a clock or a peer.  Input nodes here are device-input
nodes of a test device class whose ports hand the graph prepared frames.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pytest
from clocks import ManualClock

from memif import testing
from memif.loop import RxMode
from memif.vswitch.graph import Graph, Node
from memif.vswitch.mainloop import (
    ADAPTIVE_VECTOR,
    CONTROL_PERIOD,
    IDLE_BEFORE_SLEEP,
    MAX_SLEEP,
    MainLoop,
)
from memif.vswitch.pool import PacketPool
from memif.vswitch.port import DeviceInput
from memif.vswitch.runtime import Runtime

log = logging.getLogger("test-mainloop")


class Source(DeviceInput):
    """An input node that takes ``per_turn`` buffers a turn (or raises, when told)."""

    name = "source-input"
    next_nodes = ("sink",)

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.per_turn = 0
        self.fail = False

    def poll(self) -> int:
        if self.fail:
            raise RuntimeError("input broke")
        idx = self.rt.pool.alloc(self.per_turn)
        self.rt.pool.length[idx] = 60
        self.graph.enqueue(self.next[0], idx)
        return len(idx)


class Sink(Node):
    """Counts and frees what it gets; raises when told (the graph's failure)."""

    name = "sink"

    def __init__(self) -> None:
        super().__init__()
        self.got = 0
        self.fail = False

    def process(self, idx: np.ndarray) -> None:
        if self.fail:
            raise RuntimeError("node broke")
        self.got += len(idx)
        self.graph.pool.free(idx)


class Setup:
    def __init__(self) -> None:
        self.rt = Runtime(PacketPool(1024, 64), 256, log)
        self.graph = Graph(self.rt.pool)
        self.controls: list[float] = []
        self.loop = MainLoop(self.rt, self.graph, self.controls.append, list)
        self.source, self.sink = Source(self.rt), Sink()
        self.graph.add(self.source)
        self.graph.add(self.sink)
        self.graph.build()
        self.loop.inputs.append(self.source)


@pytest.fixture
def setup() -> Iterator[Setup]:
    s = Setup()
    yield s
    s.rt.pool.close()


def test_control_work_runs_every_control_period_and_after_a_sleep(setup: Setup) -> None:
    loop = setup.loop
    loop.run_once(100.0)
    loop.run_once(100.0 + CONTROL_PERIOD / 2)  # not due
    loop.run_once(100.0 + CONTROL_PERIOD)
    assert setup.controls == [100.0, 100.0 + CONTROL_PERIOD]
    loop.sleep(0)  # (nothing to wait for: returns at once)
    loop.run_once(100.0 + CONTROL_PERIOD * 1.5)  # after a sleep: at once
    assert setup.controls[-1] == 100.0 + CONTROL_PERIOD * 1.5
    assert setup.rt.now == 100.0 + CONTROL_PERIOD * 1.5  # the nodes' clock is the turn's


def test_the_deadline_follows_the_vectors(setup: Setup) -> None:
    loop, source = setup.loop, setup.source
    source.per_turn = ADAPTIVE_VECTOR
    assert loop.run_once(10.0) == 10.0 and loop.packets == ADAPTIVE_VECTOR  # busy
    assert setup.sink.got == ADAPTIVE_VECTOR
    source.per_turn = ADAPTIVE_VECTOR - 1  # a trickle: not busy
    assert loop.run_once(11.0) == 11.0 + MAX_SLEEP
    assert loop.packets == ADAPTIVE_VECTOR - 1
    source.per_turn = 0
    assert loop.run_once(12.0) == 12.0 + MAX_SLEEP
    assert IDLE_BEFORE_SLEEP < 1.0  # (the steps above are idle for longer than that)


def test_a_failing_input_or_graph_is_contained_and_the_loop_goes_on(setup: Setup) -> None:
    loop, source, sink, pool = setup.loop, setup.source, setup.sink, setup.rt.pool
    source.fail = True
    assert loop.run_once(1.0) == 1.0 + MAX_SLEEP
    assert setup.rt.loop_errors == {"input-exception": 1}
    source.fail, source.per_turn, sink.fail = False, 10, True
    loop.run_once(2.0)
    assert setup.rt.loop_errors == {"input-exception": 1, "graph-exception": 1}
    assert pool.n_free == pool.n_buffers  # the turn's packets were dropped, not leaked
    sink.fail = False
    loop.run_once(3.0)
    assert sink.got == 10 and pool.n_free == pool.n_buffers
    assert loop.node.error_counts is setup.rt.loop_errors  # what show errors prints


class HalfDone(Node):
    """Frees the first quarter, passes the second to the sink, then raises."""

    name = "half-done"
    next_nodes = ("sink",)

    def process(self, idx: np.ndarray) -> None:
        q = len(idx) // 4
        self.graph.pool.free(idx[:q])
        self.graph.enqueue(self.next[0], idx[q : 2 * q])
        raise RuntimeError("half done")


class Lender(HalfDone):
    """As HalfDone, but like an interface output: its buffers may be on a ring."""

    name = "lender"
    reclaim_on_failure = False


@pytest.mark.parametrize("cls", [HalfDone, Lender])
def test_a_node_failing_midway_gives_back_each_buffer_once(setup: Setup, cls) -> None:
    graph, pool = setup.graph, setup.rt.pool
    node = cls()
    graph.add(node)
    idx = pool.alloc(40)
    graph.enqueue(node.id, idx)
    with pytest.raises(RuntimeError, match="half done"):
        graph.run()
    graph.discard()
    free = pool.free_buffers()
    assert len(np.unique(free)) == len(free)  # nothing freed twice
    if cls.reclaim_on_failure:
        assert pool.n_free == pool.n_buffers  # freed, queued and kept: all back
    else:  # the second half stays out: it may be lent to a ring
        assert pool.n_free == pool.n_buffers - 20
        assert not np.isin(idx[20:], free).any()


def test_under_load_the_loop_naps_for_bigger_vectors_without_control_work(setup: Setup) -> None:
    """With a memif queue served in adaptive mode (as ports_changed registers them), a
    busy turn far below the vector is followed by a coalescing nap: the queue stays in
    polling mode (no kicks) and the nap's end does not rerun the control work."""
    clock = ManualClock(50.0)
    loop = MainLoop(setup.rt, setup.graph, setup.controls.append, list, clock=clock)
    loop.inputs.append(setup.source)
    with testing.pair() as (server, client):
        rxq = server.rx_queues[0]
        loop.events.add_rx(rxq, mode=RxMode.ADAPTIVE)
        setup.source.per_turn = 4 * ADAPTIVE_VECTOR  # busy, far below the vector
        assert loop.turn() == 4 * ADAPTIVE_VECTOR
        assert loop.events.naps == 1 and setup.controls == [50.0]
        assert rxq.polling  # polling mode throughout: the peer wrote no eventfd
        client.send([b"k"])
        assert rxq.clear_interrupt() == 0
        setup.source.per_turn = 0
        clock.advance(0.001)
        loop.turn()  # idle now, within IDLE_BEFORE_SLEEP: another nap, no control
        assert loop.events.naps == 2 and setup.controls == [50.0]
    assert setup.sink.got == 4 * ADAPTIVE_VECTOR
