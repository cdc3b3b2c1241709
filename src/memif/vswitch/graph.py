"""A VPP-style packet graph: nodes take vectors of buffer indices.

Each node's :meth:`Node.process` gets one vector (a numpy array of buffer indices)
and hands its packets on with :meth:`Graph.enqueue` (all to one node) or
:meth:`Graph.dispatch` (one next node per packet, split keeping order:
``idx[nexts == k]``).  Drops go through :meth:`Node.drop` with a named error.
:meth:`Graph.run` processes pending vectors in node order until none remain and
keeps VPP's runtime figures per node: calls, vectors, time.

Nodes declare the nodes they hand packets to (``next_nodes``, VPP's
``.next_nodes``); :meth:`Graph.build` resolves the names once into ``node.next``
(graph ids, in declaration order, so a node enqueues to ``self.next[k]`` with a
named index ``k`` and never looks a name up per vector).  A name that names no
node fails at build with a :class:`GraphError` naming both.  Edges added later
(an interface's output node behind l2-output) go through :meth:`Graph.add_next`;
:meth:`Graph.edges` lists every edge for ``show vlib graph``.

Tracing costs one attribute test per node call while off; when on, traced
buffers carry a trace id and every node they visit appends a line, as VPP's
``show trace`` prints it: the time since the graph started (``HH:MM:SS:micro``),
the node's name, and what :meth:`Node.format_trace` decodes of the buffer at that
node.  The default decodes nothing (length and header bytes); each node overrides
it with its own view (addresses, bridge domain, the decision it will take), so a
node added later only brings its formatter.  A drop records its node and error for
the traced buffer, which error-drop's line names.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from .pool import INDEX, PacketPool

DISPATCH_RUNS = 16  # up to this many runs of one next node, dispatch by slices
#: vectors of at most this many packets are decided packet by packet in plain Python
#: by the nodes that can (VPP's single and quad loops): a numpy call costs about a
#: microsecond whatever its length, a packet's plain decision a microsecond or two
SMALL_VECTOR = 4
DROP = "error-drop"


_OUTSIDE_RUN = 1 << 62  # Graph._at between runs: every enqueue asks for a pass


class GraphError(ValueError):
    """The graph cannot be built as declared (a next node that does not exist)."""


class Node:
    """One graph node; subclasses set ``name``, ``errors`` and ``next_nodes`` and
    implement ``process``."""

    name: ClassVar[str] = "node"
    #: error name -> description, as ``show errors`` prints them
    errors: ClassVar[dict[str, str]] = {}
    #: the nodes this one hands packets to, by name; ``self.next[k]`` is the graph id
    #: of ``next_nodes[k]`` once the graph is built (subclasses name the indices)
    next_nodes: ClassVar[tuple[str, ...]] = ()
    #: after this node raised, the graph takes back the buffers of its vector that are
    #: neither free nor queued (False for nodes that hand buffers out of the graph, to a
    #: ring: those may still be lent)
    reclaim_on_failure: ClassVar[bool] = True

    def __init__(self) -> None:
        self.graph: Graph = None  # type: ignore[assignment]  # set by Graph.add
        self.id = -1
        self.next: tuple[int, ...] = ()  # graph ids of next_nodes (set by the graph)
        self.calls = 0
        self.vectors = 0
        self.ns = 0
        self.error_counts: Counter[str] = Counter()

    @property
    def node_name(self) -> str:
        """The name shown in ``show runtime`` (per-interface nodes override it)."""
        return self.name

    def process(self, idx: np.ndarray) -> None:
        """Handle one vector of buffer indices."""
        raise NotImplementedError

    def drop(self, idx: np.ndarray, error: str) -> None:
        """Count ``error`` for each packet and send them to error-drop."""
        if len(idx):
            self.error_counts[error] += len(idx)
            if self.graph.tracing:
                self.graph.trace_drop(self, idx, error)
            self.graph.enqueue(self.graph.drop_node, idx)

    def next_of(self, i: int) -> int:
        """Where buffer ``i`` goes (a graph id), decided alone in plain Python as the
        node's vector path decides, its metadata written and a drop counted
        (:meth:`dropped`): for nodes with a plain path for small vectors."""
        raise NotImplementedError

    def route_small(self, idx: np.ndarray) -> None:
        """Send each packet of a vector of at most :data:`SMALL_VECTOR` where
        :meth:`next_of` says (:meth:`Graph.route`); one packet needs no grouping."""
        graph = self.graph
        if graph.tracing:  # each packet's drop reason, for error-drop's trace line
            nexts = []
            for i in idx.tolist():
                graph.drop_reason = None
                nexts.append(self.next_of(i))
                if graph.drop_reason is not None and graph.trace_id[i]:  # as trace_drop
                    graph.trace_errors[i] = graph.drop_reason
            if nexts:
                graph.route(idx, nexts)
        elif len(idx) == 1:
            graph.enqueue(self.next_of(int(idx[0])), idx)
        elif len(idx):
            graph.route(idx, [self.next_of(i) for i in idx.tolist()])

    def dropped(self, error: str) -> int:
        """Count ``error`` for one packet; returns error-drop's graph id (where a plain
        path routes it, :meth:`Graph.route`)."""
        self.error_counts[error] += 1
        self.graph.drop_reason = (self.node_name, error)  # for a trace (route_small)
        return self.graph.drop_node

    def format_trace(self, i: int) -> str:
        """What ``show trace`` shows for buffer ``i`` as this node is about to handle it
        (one or more lines; the graph indents them).  Nodes override it with their own
        decoding; this default shows the length and the first 14 bytes."""
        return format_bytes(self.graph.pool, i)

    def clear_runtime(self) -> None:
        """Reset ``show runtime`` figures."""
        self.calls = self.vectors = self.ns = 0


def format_bytes(pool: PacketPool, i: int) -> str:
    """Buffer ``i``'s length and first 14 bytes in hex: the trace line of a node that
    decodes nothing."""
    head = bytes(pool.data[i, : min(14, int(pool.length[i]))]).hex()
    return f"length {int(pool.length[i])} header {head}"


def format_trace_time(seconds: float) -> str:
    """VPP's trace timestamp: ``HH:MM:SS:micro`` (``00:00:01:234567``)."""
    us = int(seconds * 1e6)
    s, us = divmod(us, 1_000_000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{us:06d}"


class ErrorDrop(Node):
    """Frees dropped packets; the reasons were counted by the node that dropped them."""

    name = "error-drop"

    def process(self, idx: np.ndarray) -> None:
        self.graph.pool.free(idx)

    def format_trace(self, i: int) -> str:
        """The node that dropped buffer ``i`` and why: ``l2-fwd: filtered (...)``."""
        where = self.graph.trace_errors.pop(i, None)
        if where is None:
            return "dropped (reason not recorded)"
        node, error = where
        described = self.graph.by_name.get(node)
        text = described.errors.get(error, "") if described is not None else ""
        return f"{node}: {error}" + (f" ({text})" if text else "")


class CounterNode(Node):
    """A node that only holds ``show errors`` counters for a part of the switch outside the
    graph (the CLI server, the metrics endpoint); it never gets vectors (any would be
    freed).  :meth:`Graph.error_counters` adds it once and returns its counters."""

    def process(self, idx: np.ndarray) -> None:
        self.graph.pool.free(idx)


class Graph:
    """Nodes, their pending vectors, and the trace buffer."""

    def __init__(
        self,
        pool: PacketPool,
        drop: Node | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.nodes: list[Node] = []
        self.by_name: dict[str, Node] = {}
        self._pending: list[list[np.ndarray]] = []
        self._dirty = False  # vectors wait that the current pass of run() will not reach
        self._at = _OUTSIDE_RUN  # the node run() is calling
        # tracing
        self.trace_id = np.zeros(pool.n_buffers, np.int32)
        self.trace_budget: dict[str, int] = {}  # input node name -> packets still to trace
        self.traces: dict[int, list[str]] = defaultdict(list)
        #: buffer -> (node, error) of a traced buffer dropped, until error-drop traces it
        self.trace_errors: dict[int, tuple[str, str]] = {}
        self.drop_reason: tuple[str, str] | None = None  # set by Node.dropped
        self.clock = clock  # the runtime's (trace timestamps count from the graph's start)
        self.started = clock()
        self._next_trace = 1
        self.tracing = False
        self.built = False
        self._failed: tuple[Node, np.ndarray] | None = None  # the node that raised, its vector
        self._added_next: list[list[int]] = []  # per node id: edges added by add_next
        self.drop_node = self.add(drop or ErrorDrop())

    def error_counters(self, cls: type[CounterNode]) -> dict[str, int]:
        """The error counters of the ``cls`` node, added to the graph on first use."""
        node = self.by_name.get(cls.name)
        if node is None:
            node = self.nodes[self.add(cls())]
        return node.error_counts

    def add(self, node: Node) -> int:
        """Register a node; returns its id (also ``node.id``).

        Once the graph is built, the node's next nodes are resolved at once (so they
        must exist already).
        """
        node.graph = self
        node.id = len(self.nodes)
        self.nodes.append(node)
        self.by_name[node.node_name] = node
        self._pending.append([])
        self._added_next.append([])
        if self.built:
            self._resolve(node)
        return node.id

    def build(self) -> None:
        """Resolve every node's ``next_nodes``; GraphError names a missing one."""
        for node in self.nodes:
            self._resolve(node)
        self.built = True

    def _resolve(self, node: Node) -> None:
        ids = []
        for name in node.next_nodes:
            target = self.by_name.get(name)
            if target is None:
                raise GraphError(
                    f"node {node.node_name}: next node {name!r} does not exist"
                    f" (nodes: {', '.join(sorted(self.by_name))})"
                )
            ids.append(target.id)
        node.next = tuple(ids)

    def add_next(self, node: Node, target: Node) -> None:
        """Record an edge made at run time (VPP's ``vlib_node_add_next``): ``node``
        hands packets to ``target`` by id (l2-output to an interface's output)."""
        if target.id not in self._added_next[node.id]:
            self._added_next[node.id].append(target.id)

    def edges(self) -> dict[str, list[str]]:
        """Node name -> the names of its next nodes (declared, then added), in order."""
        out: dict[str, list[str]] = {}
        for node in self.nodes:
            if isinstance(node, _Retired):
                continue
            ids = [*node.next, *self._added_next[node.id]]
            out[node.node_name] = [self.nodes[i].node_name for i in ids]
        return out

    def remove(self, node: Node) -> None:
        """Unregister a per-interface node (its id is retired, never reused)."""
        self.by_name.pop(node.node_name, None)
        self._free(self._pending[node.id])
        self.nodes[node.id] = _Retired()
        for added in self._added_next:
            if node.id in added:
                added.remove(node.id)

    def discard(self) -> None:
        """After a node failed mid-run: free every queued vector and, when the node
        allows it (``reclaim_on_failure``), the buffers of its own vector that it had
        neither freed nor queued, so a failure repeated by every packet of a peer does
        not drain the pool."""
        for pending in self._pending:
            self._free(pending)
        self._dirty = False
        failed, self._failed = self._failed, None
        if failed is not None and failed[0].reclaim_on_failure:
            kept = np.setdiff1d(failed[1], self.pool.free_buffers(), assume_unique=True)
            self.pool.free(kept)

    def _free(self, pending: list[np.ndarray]) -> None:
        if pending:
            self.pool.free(np.concatenate(pending))
            pending.clear()

    def enqueue(self, node_id: int, idx: np.ndarray) -> None:
        """Queue a vector for a node."""
        if len(idx):
            self._pending[node_id].append(idx)
            if node_id <= self._at:  # (a later node: this pass gets to it)
                self._dirty = True

    def route(self, idx: np.ndarray, nexts: list[int]) -> None:
        """Send each packet of a small vector to its own next node (``nexts``: graph ids,
        plain ints), keeping order within each: :meth:`dispatch` for the plain paths."""
        first = nexts[0]
        if nexts.count(first) == len(nexts):  # the usual vector: one way for all
            self.enqueue(first, idx)
            return
        groups: dict[int, list[int]] = {}
        for i, k in zip(idx.tolist(), nexts, strict=True):
            groups.setdefault(k, []).append(i)
        for k, members in groups.items():
            self.enqueue(k, np.array(members, INDEX))

    def dispatch(self, idx: np.ndarray, nexts: np.ndarray) -> None:
        """Send each packet to its own next node (ids), keeping order within each.

        Vectors usually come in runs (the packets of one input port all go the same
        way): a few runs are enqueued as slices, otherwise one mask per next node.
        """
        n = len(idx)
        if n <= 1:
            if n:  # one packet: no runs to find
                self.enqueue(int(nexts[0]), idx)
            return
        change = np.flatnonzero(nexts[1:] != nexts[:-1])
        if len(change) < DISPATCH_RUNS:
            bounds = [0, *(change + 1).tolist(), n]
            for lo, hi in itertools.pairwise(bounds):
                self.enqueue(int(nexts[lo]), idx[lo:hi])
            return
        for k in np.flatnonzero(np.bincount(nexts)).tolist():  # node ids are small
            self.enqueue(k, idx[nexts == k])

    def run(self) -> int:
        """Process pending vectors until the graph is empty; returns vectors processed.

        Passes call the nodes in id order; another pass follows only when a node queued
        a vector for itself or an earlier node.  Each node's call keeps its runtime
        figures (time, calls, vectors) and traces, inline: a function call per node is
        a noticeable part of a 1-packet vector."""
        done = 0
        nodes, clock = self.nodes, time.perf_counter_ns
        try:
            while self._dirty:
                self._dirty = False
                for node_id, pending in enumerate(self._pending):
                    if not pending:
                        continue
                    self._at = node_id
                    idx = pending[0] if len(pending) == 1 else np.concatenate(pending)
                    pending.clear()
                    node = nodes[node_id]
                    try:
                        if self.tracing:
                            self.trace(node, idx)
                        t0 = clock()
                        node.process(idx)
                        node.ns += clock() - t0
                    except BaseException:
                        self._failed = (node, idx)  # for discard()
                        raise
                    node.calls += 1
                    node.vectors += len(idx)
                    done += 1
        finally:
            self._at = _OUTSIDE_RUN
        return done

    # ------------------------------------------------------------------ tracing
    def trace_add(self, input_node: str, count: int) -> None:
        """Trace the next ``count`` packets that enter through ``input_node``."""
        self.trace_budget[input_node] = self.trace_budget.get(input_node, 0) + count
        self.tracing = True

    def trace_start(self, input_node: str, idx: np.ndarray) -> None:
        """Called by input nodes: mark the packets still within the trace budget.

        Costs nothing while tracing is off: only trace_clear turns it off, and it zeroes
        every trace id, so no buffer can carry a stale one.
        """
        if not self.tracing or not len(idx):
            return
        self.trace_id[idx] = 0  # buffers are reused: forget earlier packets' traces
        left = self.trace_budget.get(input_node, 0)
        if not left:
            return
        take = idx[:left]
        self.trace_budget[input_node] = left - len(take)
        ids = np.arange(self._next_trace, self._next_trace + len(take), dtype=np.int32)
        self._next_trace += len(take)
        self.trace_id[take] = ids

    def trace(self, node: Node, idx: np.ndarray, fmt: Callable[[int], str] | None = None) -> None:
        """Append ``node``'s line to the trace of each traced buffer of ``idx``: the time,
        the node's name and ``fmt(i)`` (default: the node's :meth:`Node.format_trace`),
        indented as VPP's."""
        ids = self.trace_id[idx]
        hit = np.flatnonzero(ids)
        if not len(hit):
            return
        when = format_trace_time(self.clock() - self.started)
        decode = fmt or node.format_trace
        for k in hit.tolist():
            text = decode(int(idx[k])).replace("\n", "\n  ")
            self.traces[int(ids[k])].append(f"{when}: {node.node_name}\n  {text}")

    def trace_drop(self, node: Node, idx: np.ndarray, error: str) -> None:
        """Record why the traced buffers of ``idx`` were dropped (for error-drop's line)."""
        for i in idx[np.flatnonzero(self.trace_id[idx])].tolist():
            self.trace_errors[i] = (node.node_name, error)

    def trace_clear(self) -> None:
        """Forget every trace and stop tracing."""
        self.traces.clear()
        self.trace_errors.clear()
        self.trace_budget.clear()
        self.trace_id[:] = 0
        self.tracing = False


class _Retired(Node):
    name = "(deleted)"

    def process(self, idx: np.ndarray) -> None:
        self.graph.pool.free(idx)
