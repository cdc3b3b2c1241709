"""A hostile peer on the data path: descriptors and ring counters no honest peer writes.

The peer is a real connected interface (``memif.testing.pair``) whose ring we write by
hand through its :class:`~memif.shm.Ring`, as a malicious process mapping the same
memory would.  For every case the receiver must drop the bad packets and count them
by name (``RX_ERRORS``/``TX_ERRORS``), raise nothing, return promptly, hand out only
views that lie inside its own mapped regions, and end the connection with a reason
when the ring counters are impossible (protocol sections 9-10).  The same peers then
attack a switch port while two other ports keep forwarding.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from helpers import SwitchRig, drain, mac
from numpy.lib.array_utils import byte_bounds

import memif
from memif import packet, wire
from memif.queue import RX_ERRORS, TX_ERRORS, RxBatch
from memif.shm import Ring
from memif.testing import drive, pair

N = 16  # ring slots in the pair tests
BUF = 256
NEXT = wire.DESC_FLAG_NEXT
U32 = 1 << 32
PROMPT = 10.0
"""Seconds any single data-path call may take: a hang guard, generous so that a loaded
machine cannot trip it, while a call that loops on a hostile counter or blocks on an eventfd
the peer filled never returns at all."""


# --------------------------------------------------------------------------- checks


def prompt(fn: Callable[..., object], *args: object) -> object:
    """Call ``fn``; it must return (not raise, not hang) within PROMPT seconds."""
    t0 = time.monotonic()
    result = fn(*args)
    assert time.monotonic() - t0 < PROMPT, f"{fn.__name__} took {time.monotonic() - t0:.3f} s"
    return result


def inside(view: np.ndarray, region: np.ndarray) -> bool:
    """True when every byte ``view`` can reach lies within ``region``'s memory."""
    lo, hi = byte_bounds(view)
    base, end = byte_bounds(region)
    return base <= lo and hi <= end


def check_batch(iface: memif.Interface, batch: RxBatch) -> None:
    """Every packet handed out lies inside the receiver's regions with a sane length."""
    arrays = [r.array for r in iface.regions]
    sizes = [r.size for r in iface.regions]
    n_seg = len(batch.seg_region)
    assert len(batch.seg_offset) == len(batch.seg_length) == n_seg
    for k in range(n_seg):
        r = int(batch.seg_region[k])
        assert r < len(arrays)
        assert 0 < int(batch.seg_length[k]) <= sizes[r] - int(batch.seg_offset[k])
    bound = N * max(sizes)  # a chain is at most a whole ring of whole regions
    for i in range(len(batch)):
        segs = batch.segments(i)
        assert sum(len(s) for s in segs) == int(batch.lengths[i]) <= bound
        for seg in segs:
            assert any(inside(seg, a) for a in arrays), "a view outside every region"
    end = 0  # the runs cover every packet, in order
    for lo, hi, rows in batch.runs:
        assert lo == end and rows.shape[0] == hi - lo
        end = hi
        if batch.is_view:
            assert any(inside(rows, a) for a in arrays), "a run's view leaves its region"
    assert end == len(batch)
    assert batch.matrix.shape[0] == len(batch)
    assert batch.headers(64).shape == (len(batch), 64)
    assert batch.gather(64).shape == (len(batch), 64)  # the gather path stays in bounds too


def errors_known(q) -> None:
    names = RX_ERRORS if hasattr(q, "refill") else TX_ERRORS
    assert set(q.stats.errors) <= set(names), q.stats.errors


def disconnected(local: memif.Interface, peer: memif.Interface, reason: str) -> None:
    """Drive both sides until the local one dropped the link (the socket checks data-path
    faults twice a second; the wait is a generous condition wait), for ``reason``."""
    assert drive(
        local.socket, peer.socket, until=lambda: not local.connected and not peer.connected,
        timeout=30,
    )  # fmt: skip
    assert local.local_disc_reason == reason
    assert peer.remote_disc_reason == reason
    assert local.regions == [] and local.rx_queues == []  # its memory was released


# --------------------------------------------------------------------------- a hostile peer


@dataclass
class Link:
    """One direction of a connected pair: ``local`` receives, ``peer`` writes the ring."""

    local: memif.Interface
    peer: memif.Interface
    s2m: bool

    @property
    def rxq(self):
        return self.local.rx_queues[0]

    @property
    def ring(self) -> Ring:
        """The ring as the hostile peer maps it."""
        return self.peer.tx_queues[0].ring

    def produced(self) -> int:
        return self.ring.head if self.s2m else self.ring.tail

    def publish(self, counter: int) -> None:
        if self.s2m:
            self.ring.head = counter
        else:
            self.ring.tail = counter

    def inject(self, descs: list[tuple[int, int, int, int]]) -> None:
        """Write (flags, region, length, offset) descriptors and publish them at once."""
        ring, start = self.ring, self.produced()
        for k, (flags, region, length, offset) in enumerate(descs):
            s = (start + k) & ring.mask
            ring.d_flags[s], ring.d_region[s] = flags, region
            ring.d_length[s], ring.d_offset[s] = length, offset
        self.publish(start + len(descs))

    def receive(self) -> list[bytes]:
        """rx_burst (checked) and refill until nothing is pending."""
        got: list[bytes] = []
        while True:
            batch = prompt(self.rxq.rx_burst)
            check_batch(self.local, batch)
            got += batch.tolist()
            prompt(self.rxq.refill)
            if not len(batch):
                return got


@pytest.fixture(params=["s2m", "m2s"])
def link(request) -> Iterator[Link]:
    with pair(ring_size=N, buffer_size=BUF, reconnect_interval=None) as (server, client):
        s2m = request.param == "s2m"
        yield Link(server, client, True) if s2m else Link(client, server, False)


def region_sizes(link: Link) -> list[int]:
    return [r.size for r in link.local.regions]


def bad_descriptors(sizes: list[int]) -> dict[str, tuple[tuple[int, int, int, int], str]]:
    """Descriptor cases (flags, region, length, offset) and the counter each must hit."""
    r1 = len(sizes) - 1  # the last region
    end = sizes[r1]
    return {
        "missing region": ((0, len(sizes), 64, 0), "bad_region"),
        "region 0xffff": ((0, 0xFFFF, 64, 0), "bad_region"),
        "offset at the region's end": ((0, r1, 1, end), "bad_offset"),
        "runs past the end": ((0, r1, 11, end - 10), "bad_offset"),
        "offset near 2^32": ((0, r1, 16, U32 - 16), "bad_offset"),
        "offset+length wraps u32": ((0, r1, 2, U32 - 1), "bad_offset"),
        "length 2^32-1": ((0, r1, U32 - 1, 0), "bad_offset"),
        "huge length, huge offset": ((0, r1, U32 - 1, U32 - 1), "bad_offset"),
        "zero length": ((0, r1, 0, 0), "zero_length"),
    }


# --------------------------------------------------------------------------- descriptors


@pytest.mark.slow
def test_bad_descriptors_are_dropped_between_good_packets(link: Link) -> None:
    cases = bad_descriptors(region_sizes(link))
    expect: dict[str, int] = {}
    for k, (desc, counter) in enumerate(cases.values()):
        good = [bytes([k]) * 60, bytes([k]) * 200]
        assert link.peer.send(good[:1]) == 1
        link.inject([desc])
        assert link.peer.send(good[1:]) == 1
        assert link.receive() == good
        expect[counter] = expect.get(counter, 0) + 1
        assert link.rxq.stats.errors == expect
    assert link.rxq.stats.packets == 2 * len(cases) and link.rxq.fault is None
    errors_known(link.rxq)
    drive(link.local.socket, link.peer.socket, until=lambda: False, timeout=0.6)
    assert link.local.connected and link.peer.connected  # drops, not faults


@pytest.mark.parametrize("case", list(bad_descriptors([1, 1])))
def test_one_bad_descriptor_alone_in_its_burst(link: Link, case: str) -> None:
    """A 1-packet burst skips the vector checks' reductions: it must reject it too."""
    desc, counter = bad_descriptors(region_sizes(link))[case]
    link.inject([desc])
    assert link.rxq.rx_burst(1).tolist() == []
    assert link.rxq.stats.errors == {counter: 1} and link.rxq.stats.packets == 0
    link.rxq.refill()
    assert link.peer.send([b"still fine"]) == 1
    assert link.rxq.rx_burst(1).tolist() == [b"still fine"]


@pytest.mark.parametrize("case", list(bad_descriptors([1, 1])))
def test_a_whole_ring_of_one_bad_descriptor(link: Link, case: str) -> None:
    """Every slot the same bad descriptor: the vector fast path must reject it too."""
    desc, counter = bad_descriptors(region_sizes(link))[case]
    link.inject([desc] * N)
    assert link.receive() == []
    assert link.rxq.stats.errors == {counter: N} and link.rxq.stats.packets == 0
    assert link.peer.send([b"still fine"]) == 1
    assert link.receive() == [b"still fine"]


def test_one_bad_segment_drops_its_whole_chain(link: Link) -> None:
    cases = bad_descriptors(region_sizes(link))
    ring = link.ring
    for k, (desc, counter) in enumerate(cases.values()):
        # a good chain of 3 whose middle descriptor is replaced by a bad one
        big = bytes([k]) * (2 * BUF + 7)
        start = link.produced()
        assert link.peer.send([b"before", big, b"after"]) == 3
        mid = (start + 2) & ring.mask  # "before" is slot 0, the chain slots 1..3
        assert ring.d_flags[mid] & NEXT
        ring.d_region[mid], ring.d_length[mid], ring.d_offset[mid] = desc[1], desc[2], desc[3]
        assert link.receive() == [b"before", b"after"]
        assert link.rxq.stats.errors.get(counter, 0) >= 1
    assert link.rxq.stats.packets == 2 * len(cases)
    assert link.rxq.stats.drops == len(cases)  # one bad segment each


def test_chain_that_never_ends(link: Link) -> None:
    rxq = link.rxq
    # N - 1 descriptors that all say NEXT: the chain may still end, so the receiver
    # waits (without spinning or delivering pieces) ...
    sizes = region_sizes(link)
    seg = (NEXT, len(sizes) - 1, 8, 0)
    link.inject([seg] * (N - 1))
    for _ in range(3):
        assert prompt(rxq.rx_burst).count == 0
    assert rxq.pending() == N - 1 and rxq.stats.errors == {}
    # ... and the last one ends it: one packet of N segments.
    link.inject([(0, len(sizes) - 1, 8, 0)])
    batch = rxq.rx_burst()
    check_batch(link.local, batch)
    assert batch.lengths.tolist() == [8 * N] and len(batch.segments(0)) == N
    rxq.refill()
    # A whole ring of NEXT never ends: dropped as one, the slots given back.
    link.inject([seg] * N)
    assert link.receive() == []
    assert rxq.stats.errors == {"chain_too_long": 1} and rxq.fault is None
    assert rxq.pending() == 0
    assert link.peer.send([b"after the endless chain"]) == 1
    assert link.receive() == [b"after the endless chain"]


def test_a_whole_ring_at_once_is_legal(link: Link) -> None:
    """The producer's counter jumping by exactly the ring size is a full ring."""
    sizes = region_sizes(link)
    link.inject([(0, len(sizes) - 1, 10 + k, 64 * k) for k in range(N)])
    batch = link.rxq.rx_burst(256)
    check_batch(link.local, batch)
    assert batch.lengths.tolist() == [10 + k for k in range(N)]
    assert link.rxq.fault is None


# --------------------------------------------------------------------------- counters


def test_producer_counter_faults(link: Link) -> None:
    """Impossible head (S2M) or tail (M2S): nothing is read, the link goes down."""
    rxq = link.rxq
    assert link.peer.send([b"x"] * 5) == 5
    assert prompt(rxq.rx_burst).count == 5  # taken, not yet given back
    link.publish(link.produced() + N - 4)  # more than the slots the producer owns
    assert prompt(rxq.rx_burst).count == 0
    assert rxq.fault == "ring counter out of range"
    disconnected(link.local, link.peer, "ring counter out of range")


@pytest.mark.parametrize("jump", [N + 1, 1000, 0x8000, 0xFFFF], ids=lambda j: f"+{j}")
def test_producer_counter_jumps(link: Link, jump: int) -> None:
    rxq = link.rxq
    link.publish(link.produced() + jump)  # 0xFFFF is one step backwards
    assert rxq.pending() == 0
    assert prompt(rxq.rx_burst).count == 0 and rxq.stats.packets == 0
    disconnected(link.local, link.peer, "ring counter out of range")


def test_consumer_counter_jump_faults_the_sender(link: Link) -> None:
    """The consumer moves its counter impossibly: S2M tail past head, M2S head past tail+N.

    Roles turn here: ``link.peer`` is the honest sender, ``link.local`` the hostile one.
    """
    sender = link.peer
    txq, ring = sender.tx_queues[0], link.ring
    assert sender.send([b"a"] * 3) == 3
    if link.s2m:
        ring.tail = ring.head + 1  # the master released a slot never produced
    else:
        ring.head = ring.tail + N + 1  # the slave posted more than a ring
    assert prompt(sender.send, [b"b"]) == 0
    assert txq.fault == "ring counter out of range"
    assert txq.free_slots() == 0 and txq.alloc(4).count == 0
    if link.s2m:  # a client's zero-copy bookkeeping: nothing was given back
        assert txq.reclaim() == 0
    errors_known(txq)
    disconnected(sender, link.local, "ring counter out of range")


@pytest.mark.parametrize(
    "post",
    ["missing region", "offset at the region's end", "offset near 2^32", "length 2^32-1",
     "zero length"],
)  # fmt: skip
@pytest.mark.parametrize("learned", [False, True], ids=["first", "after-layout-learned"])
def test_posted_buffers_outside_the_region(post: str, learned: bool) -> None:
    """A slave posts M2S buffers the master must never write into (also once the master
    has learned its one-buffer-per-slot layout and only compares offsets with it)."""
    with pair(ring_size=N, buffer_size=BUF, reconnect_interval=None) as (server, client):
        sizes = [r.size for r in server.regions]
        (flags, region, length, offset), _ = bad_descriptors(sizes)[post]
        ring = client.rx_queues[0].ring  # the slave's M2S ring: its posted buffers
        txq = server.tx_queues[0]
        if learned:
            for _ in range(3):  # whole runs of slots: the layout is learned, then used
                tx = txq.alloc(8)
                tx.fill(np.full((tx.count, 60), 7, np.uint8))
                assert txq.tx_burst(tx, 60) == tx.count
                assert len(client.recv()) == tx.count
        sent = txq.stats.packets
        tail = ring.tail
        s = (tail + 2) & ring.mask  # two good slots first
        ring.d_region[s], ring.d_length[s], ring.d_offset[s] = region, length, offset
        assert txq.alloc(N).count == 0
        assert txq.fault == "peer posted a buffer outside its regions"
        assert prompt(server.send, [b"z" * 600]) == 0  # chained over the bad slot
        assert txq.stats.packets == sent and ring.tail == tail  # nothing published
        errors_known(txq)
        disconnected(server, client, "peer posted a buffer outside its regions")


@pytest.mark.parametrize(
    "post",
    ["missing region", "region 0xffff", "offset at the region's end", "runs past the end",
     "offset near 2^32", "offset+length wraps u32", "length 2^32-1", "zero length"],
)  # fmt: skip
def test_one_slot_send_into_a_bad_posted_buffer(post: str) -> None:
    """``send`` of a packet that fits one slot (its scalar path) checks the buffer the
    slave posted there as alloc does: nothing written, nothing published, the queue
    faulted; good slots before it are sent."""
    with pair(ring_size=N, buffer_size=BUF, reconnect_interval=None) as (server, client):
        sizes = [r.size for r in server.regions]
        (flags, region, length, offset), _ = bad_descriptors(sizes)[post]
        ring = client.rx_queues[0].ring  # the slave's M2S ring: its posted buffers
        txq = server.tx_queues[0]
        s = (ring.tail + 1) & ring.mask  # one good slot first
        ring.d_region[s], ring.d_length[s], ring.d_offset[s] = region, length, offset
        assert prompt(server.send, [b"a" * 60, b"z" * 60, b"y" * 60]) == 1
        assert txq.fault == "peer posted a buffer outside its regions"
        assert txq.stats.packets == 1 and ring.tail == (ring.head - N + 1) & 0xFFFF
        for r in server.regions:  # the packets refused were written nowhere
            assert b"z" * 60 not in r.array.tobytes() and b"y" * 60 not in r.array.tobytes()
        assert client.recv() == [b"a" * 60]
        errors_known(txq)


# --------------------------------------------------------------------------- eventfds


def peer_eventfd(link: Link, of_our_rx: bool) -> int:
    """The peer's fd for the eventfd of our receive ring (or of our transmit ring)."""
    return link.ring.eventfd if of_our_rx else link.peer.rx_queues[0].ring.eventfd


@pytest.mark.parametrize("nowait", [True, False], ids=["rwf_nowait", "poll_fallback"])
def test_peer_making_our_eventfd_blocking_cannot_hang_the_receiver(
    link: Link, nowait: bool, monkeypatch
) -> None:
    """Both processes share the eventfd's file flags: the peer clears O_NONBLOCK."""
    if not nowait:  # a kernel whose eventfds refuse RWF_NOWAIT (before 5.x)

        def unsupported(*args: object) -> int:
            raise OSError(95, "Operation not supported")

        monkeypatch.setattr(os, "preadv", unsupported)
    rxq, efd = link.rxq, peer_eventfd(link, of_our_rx=True)
    os.set_blocking(efd, True)
    assert os.get_blocking(rxq.fd)  # ours too: one open file, one set of flags
    assert prompt(rxq.wait, 0.01) is False
    assert prompt(rxq.clear_interrupt) == 0
    os.eventfd_write(efd, 3)
    assert prompt(rxq.clear_interrupt) == 3
    assert link.peer.send([b"kick"]) == 1
    assert prompt(rxq.wait, 1.0) is True and prompt(rxq.clear_interrupt) == 0
    assert link.receive() == [b"kick"]


def test_peer_saturating_our_blocking_eventfd_cannot_hang_the_sender(link: Link) -> None:
    efd = peer_eventfd(link, of_our_rx=False)  # the ring we transmit on
    os.set_blocking(efd, True)
    os.eventfd_write(efd, 0xFFFF_FFFF_FFFF_FFFE)  # the counter's maximum
    sent: list[int] = []
    worker = threading.Thread(target=lambda: sent.append(link.local.send([b"x"])), daemon=True)
    worker.start()
    worker.join(PROMPT)
    stuck = worker.is_alive()
    os.eventfd_read(efd)  # unblock it, whatever happened
    worker.join()
    assert not stuck, "send() blocked in the eventfd kick"
    assert sent == [1]


def test_eventfd_past_fd_setsize() -> None:
    """wait() on an eventfd numbered above 1024 (a process with many connections)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"fd limit {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
    try:
        with pair() as (server, client):
            for q in (server.rx_queues[0], client.rx_queues[0]):
                assert q.fd >= 1024
                assert q.wait(0.01) is False
            client.send([b"x"])
            assert server.rx_queues[0].wait(1.0) is True
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --------------------------------------------------------------------------- concurrent rewrites


def scribble(ring: Ring, s2m: bool, sizes: list[int], stop: Callable[[], bool], seed: int) -> None:
    """A peer that produces random descriptors and rewrites them in a tight loop.

    Half of what it publishes is valid, one in ten says NEXT; between publishing it
    flips single fields of any slot, those the receiver is reading included, to
    garbage or to plausible values.
    """
    rng = np.random.default_rng(seed)
    last = len(sizes) - 1
    n = 4096
    good = rng.random(n) < 0.5
    desc = np.zeros(n, wire.DESC_DTYPE)
    desc["flags"] = np.where(rng.random(n) < 0.1, NEXT, 0)
    desc["region"] = np.where(good, last, rng.integers(0, 0x10000, n))
    huge = rng.integers(0, U32, n) >> rng.integers(0, 33, n)  # any size, zero included
    desc["length"] = np.where(good, rng.integers(1, 300, n), huge)
    desc["offset"] = np.where(good, 64 * rng.integers(0, N, n), rng.integers(0, U32, n))
    names = ("flags", "region", "length", "offset")
    columns = [ring.desc[f] for f in names]
    # (column, slot, value): a field of a random descriptor, good or bad
    flips = [
        (int(f), int(slot), int(desc[j][names[f]]))
        for j, (f, slot) in enumerate(
            zip(rng.integers(0, 4, n), rng.integers(0, N, n), strict=True)
        )
    ]
    i = 0
    while not stop():
        head, tail = ring.head, ring.tail
        free = N - ((head - tail) & 0xFFFF) if s2m else (head - tail) & 0xFFFF
        start = head if s2m else tail
        if free:
            j = i % (n - N)
            ring.desc[(start + np.arange(free)) & ring.mask] = desc[j : j + free]
            if s2m:
                ring.head = start + free
            else:
                ring.tail = start + free
        for f, slot, value in flips[i % (n - 8) : i % (n - 8) + 8]:
            columns[f][slot] = value
        i += 8


@pytest.mark.slow
@pytest.mark.parametrize("how", ["thread", "process"])
def test_peer_rewriting_descriptors_while_we_read(link: Link, how: str) -> None:
    """One second of rx_burst against a peer rewriting the ring under it."""
    rxq, sizes = link.rxq, region_sizes(link)
    stop = threading.Event()
    pid = 0
    if how == "thread":
        # switch threads every 10 us, so the writer runs between any two steps of rx_burst
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)
        worker = threading.Thread(
            target=scribble, args=(link.ring, link.s2m, sizes, stop.is_set, 1), daemon=True
        )
        worker.start()
    else:  # a real second CPU writing the same memory: a forked child
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child only scribbles until killed
            try:
                scribble(link.ring, link.s2m, sizes, lambda: False, 2)
            finally:
                os._exit(0)
    packets = [0, 0]  # in each half of the second: progress never stops
    slowest = 0.0
    try:
        t_start = time.monotonic()
        while (now := time.monotonic()) < t_start + 1.0:
            batch = rxq.rx_burst()
            check_batch(link.local, batch)
            rxq.refill()
            slowest = max(slowest, time.monotonic() - now)
            packets[now > t_start + 0.5] += len(batch)
    finally:
        if how == "thread":
            stop.set()
            worker.join()
            sys.setswitchinterval(interval)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert slowest < PROMPT
    assert rxq.fault is None, rxq.fault  # only descriptors were hostile, never counters
    assert min(packets) > 20 and rxq.stats.drops > 40, (packets, rxq.stats.errors)
    errors_known(rxq)
    # The peer stops, perhaps mid-chain: it ends its last chain by publishing one more
    # descriptor without NEXT (an unfinished chain is held, and not read again, until the
    # peer publishes more: rewriting a published flag in place would end nothing), we drain,
    # and a clean descriptor it writes next is received as it should be.
    last = len(sizes) - 1
    link.receive()  # what is complete, and (m2s) buffers posted for the peer to fill
    link.inject([(0, last, 64, 0)])
    link.receive()
    assert rxq.pending() == 0
    link.local.regions[last].array[:15] = np.frombuffer(b"after the storm", np.uint8)
    link.inject([(0, last, 15, 0)])
    assert link.receive() == [b"after the storm"]
    assert link.local.connected and link.peer.connected


# --------------------------------------------------------------------------- through the switch


def frame(dst: bytes, src: bytes, tag: int, size: int = 100) -> bytes:
    return packet.ethernet(dst, src, 0x88B5, str(tag).encode().ljust(size - 14, b"."))


class Rig(SwitchRig):
    """An in-process switch with three memif ports (a, b, bad) in one bridge domain."""

    def __init__(self, tmp_path, role: str) -> None:
        super().__init__(tmp_path, role, "hostile-sw", n_buffers=2048, data_size=2048)
        self.ports = {}
        for i, name in enumerate(("a", "b", "bad"), 1):
            opts = dict(mac=mac(i), ring_size=256, buffer_size=2048, reconnect_interval=0.05)
            self.ports[name] = self.create_port(i, opts, ring_size=256)
        self.run(lambda: all(self.up(n) for n in self.ports), "connect")
        # a and b announce themselves so traffic between them is unicast
        for src in ("a", "b"):
            self.peer(src).send([frame(packet.BROADCAST, mac(self.idx(src)), 0)])
        self.run(lambda: len(self.sw.fib) >= 2, "learning")
        self.sw.run_once()
        for name in self.ports:
            self.drain(name)

    def idx(self, name: str) -> int:
        return list(self.ports).index(name) + 1

    def peer(self, name: str) -> memif.Interface:
        return self.ports[name][1]

    def port(self, name: str):
        return self.sw.ports[self.ports[name][0].sw_if_index]

    def up(self, name: str) -> bool:
        sw, peer = self.ports[name]
        return sw.link_up and peer.connected

    def drain(self, name: str) -> list[bytes]:
        return drain(self.peer(name))

    def unicast(self, name: str) -> list[bytes]:
        """What ``name``'s peer received addressed to it alone."""
        own = mac(self.idx(name))
        return [f for f in self.drain(name) if f[:6] == own]

    def forward(self, count: int, during: Callable[[], None] = lambda: None) -> float:
        """``count`` frames a->b and b->a in bursts; every one must arrive, in order.

        ``during`` runs once per switch turn (the hostile peer's move).  Frames flooded
        to everyone on the way are not part of it.  Returns seconds.
        """
        sent = {"a": [], "b": []}
        got = {"a": [], "b": []}
        t0 = time.monotonic()
        k = 0
        while k < count:
            for src, dst in (("a", "b"), ("b", "a")):
                burst = [
                    frame(mac(self.idx(dst)), mac(self.idx(src)), k + j, 60 + (k + j) % 1400)
                    for j in range(32)
                ]
                assert self.peer(src).send(burst) == 32
                sent[src] += burst
            k += 32
            during()
            self.sw.run_once()
            self.peers.poll(0)
            for name in ("a", "b"):
                got[name] += self.unicast(name)

        def all_in() -> bool:
            for name in ("a", "b"):
                got[name] += self.unicast(name)
            return len(got["a"]) >= len(sent["b"]) and len(got["b"]) >= len(sent["a"])

        self.run(all_in, "forwarding")
        assert got["b"] == sent["a"] and got["a"] == sent["b"]
        return time.monotonic() - t0


@pytest.fixture
def rig(switch_rig):
    return functools.partial(switch_rig, Rig)


def clean_counters(r: Rig, a_drops: int = 0) -> None:
    """Nothing sent to a or b failed; a's frames were dropped only where said."""
    for name, drops in (("a", a_drops), ("b", 0)):
        c = r.ports[name][0].counters
        assert c.tx_errors == 0 and c.drops == drops, (name, c)


@pytest.mark.slow
def test_switch_master_port_survives_a_hostile_client(rig) -> None:
    r = rig("master")
    bad = r.peer("bad")
    sizes = [reg.size for reg in bad.regions]
    garbage = [d for d, _ in bad_descriptors(sizes).values()]
    ring = bad.tx_queues[0].ring
    bad_rxq = r.port("bad").iface.rx_queues[0]

    def spray() -> None:  # a ring full of garbage every turn, now and then chained
        free = bad.tx_queues[0].free_slots()
        start = ring.head
        for k in range(free):
            s = (start + k) & ring.mask
            ring.d_flags[s], ring.d_region[s], ring.d_length[s], ring.d_offset[s] = (
                (NEXT, 1, 8, 0) if k % 50 == 49 else garbage[k % len(garbage)]
            )
        ring.head = start + free

    baseline = hostile = 0.0
    for _ in range(4):  # interleaved, so that a burst of load elsewhere hits both alike
        baseline += r.forward(2048)
        hostile += r.forward(2048, spray)
    assert bad_rxq.stats.drops > 8192 and bad_rxq.fault is None
    assert set(bad_rxq.stats.errors) == {"bad_region", "bad_offset", "zero_length"}
    assert r.up("bad")  # descriptors are dropped, not faults
    clean_counters(r)
    # Unaffected: the same frames in a comparable time (generous: a shared, noisy machine).
    assert hostile < 3 * baseline + 0.25, (baseline, hostile)

    # An impossible head: the switch disconnects bad and says why; a and b go on.
    ring.head = ring.tail + ring.size + 1
    r.forward(256)
    r.run(lambda: not r.ports["bad"][0].link_up, "bad down")
    iface = r.port("bad").iface
    assert iface.local_disc_reason == "ring counter out of range"
    assert bad.remote_disc_reason == "ring counter out of range"
    r.forward(256)

    # It reconnects by itself, then posts receive buffers outside its memory: the switch
    # refuses to write there when it floods to it, and disconnects it.
    r.run(lambda: r.up("bad"), "bad back")
    post = bad.rx_queues[0].ring
    post.d_offset[post.tail & post.mask] = U32 - 64
    r.peer("a").send([frame(packet.BROADCAST, mac(1), "flood")])
    r.run(lambda: not r.ports["bad"][0].link_up, "bad down again")
    assert iface.local_disc_reason == "peer posted a buffer outside its regions"
    assert frame(packet.BROADCAST, mac(1), "flood") in r.drain("b")
    r.forward(256)
    clean_counters(r, a_drops=1)  # the flood's copy for bad, which had nowhere to go


def test_switch_copies_at_most_a_buffer_of_a_giant_chain(rig) -> None:
    """A chain of every slot, each naming a whole region: 256 MB claimed, one buffer read."""
    r = rig("master")
    bad = r.peer("bad")
    ring, size = bad.tx_queues[0].ring, bad.regions[1].size
    start = ring.head
    for k in range(ring.size):
        s = (start + k) & ring.mask
        ring.d_flags[s] = NEXT if k < ring.size - 1 else 0
        ring.d_region[s], ring.d_offset[s], ring.d_length[s] = 1, 0, size
    tracemalloc.start()
    try:
        ring.head = start + ring.size
        r.run(lambda: r.errors().get("too-big", 0) == 1, "the chain dropped")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * r.sw.pool.data_size + (1 << 20), peak  # not ring.size * size
    assert r.port("bad").iface.rx_queues[0].stats.packets == 1
    r.forward(256)


def accounted(r: Rig) -> int:
    """Pool buffers a zero-copy port lent to its peer: posted for rx, in flight on tx."""
    return sum(len(p.lent_buffers()) for p in r.sw.ports.of_kind("memif"))


@pytest.mark.slow
def test_switch_zero_copy_slave_port_survives_a_hostile_master(rig) -> None:
    r = rig("slave")
    pool = r.sw.pool
    port = r.port("bad")
    assert port.zero_copy and accounted(r) == pool.n_buffers - pool.n_free >= 3 * 256
    bad = r.peer("bad")
    txq = bad.tx_queues[0]  # the master fills the buffers the switch posted
    ring = txq.ring
    zc = port.region  # the pool's region index in this connection
    lent_a = int(r.port("a").lent_buffers()[0])  # a pool buffer lent to another port

    def spoil(s: int, k: int) -> None:
        """Slot ``s`` holds good frame ``k``; make the descriptor lie about it."""
        if k == 0:  # names the buffer lent to a slot not yet filled
            ring.d_offset[s] = ring.d_offset[(s + 20) & ring.mask]
        elif k == 1:  # names a buffer lent to another port
            ring.d_offset[s] = pool.offsets(np.array([lent_a]))[0]
        elif k == 2:  # other regions: the rings, the switch's own copy buffers
            ring.d_region[s], ring.d_offset[s] = 0, 0
        elif k == 3:
            ring.d_region[s], ring.d_offset[s] = 1, 2048
        elif k == 4:  # inside the pool but not at a buffer's start
            ring.d_offset[s] = int(ring.d_offset[s]) + 8
        elif k == 5:  # longer than the buffer (still inside the region)
            ring.d_length[s] = pool.data_size + 1
        elif k == 6:  # outside every region: the queue drops it before the switch sees it
            ring.d_region[s] = 9
        # k == 7 stays good

    # The master fills 8 posted slots with good frames, spoils 7 descriptors, publishes.
    start = ring.tail
    for k in range(8):
        s = (start + k) & ring.mask
        off, cap = int(ring.d_offset[s]), int(ring.d_length[s])
        assert int(ring.d_region[s]) == zc and cap == pool.data_size
        data = np.frombuffer(frame(packet.BROADCAST, mac(3), f"zc{k}"), np.uint8)
        bad.regions[zc].array[off : off + len(data)] = data
        ring.d_length[s], ring.d_flags[s] = len(data), 0
        spoil(s, k)
    mismatches = r.errors().get("zero-copy-mismatch", 0)
    ring.tail = start + 8
    ring.kick()
    r.run(lambda: r.errors().get("zero-copy-mismatch", 0) == mismatches + 6, "mismatches")
    r.sw.run_once()
    flooded = [f for f in r.drain("a") if b"zc" in f]
    assert flooded == [frame(packet.BROADCAST, mac(3), "zc7")]  # only the untouched one
    assert r.drain("b")[-1:] == flooded
    assert port.iface.rx_queues[0].stats.errors == {"bad_region": 1}
    assert r.up("bad")
    # Lent buffers all came back: posted again on the ring, nothing lost, nothing doubled.
    assert pool.n_free + accounted(r) == pool.n_buffers
    assert len(np.unique(pool.free_buffers())) == pool.n_free
    r.forward(512)

    # Counter faults on the zero-copy port, both rings: the link drops, the pool is whole.
    for fault in ("m2s tail", "s2m tail"):
        r.run(lambda: r.up("bad"), "bad up")
        if fault == "m2s tail":
            ring.tail = ring.head + 1  # filled past what the switch posted
        else:
            r.peer("a").send([frame(packet.BROADCAST, mac(1), "to bad")])
            r.run(lambda: r.port("bad").iface.tx_queues[0].in_flight > 0, "zero-copy tx")
            s2m = bad.rx_queues[0].ring
            s2m.tail = s2m.head + 1  # released a slot the switch never published
            r.peer("a").send([frame(packet.BROADCAST, mac(1), "to bad again")])
        r.run(lambda: not r.ports["bad"][0].link_up, f"{fault}: bad down")
        assert port.iface.local_disc_reason == "ring counter out of range"
        r.forward(256)
        assert pool.n_free + accounted(r) == pool.n_buffers
    clean_counters(r, a_drops=1)  # "to bad again": its copy for bad went nowhere
    r.close_peers()  # every port down: every buffer home, each once
    r.run(lambda: not any(p.link_up for p in r.sw.ports.values()), "all down")
    assert pool.n_free == pool.n_buffers
    assert len(np.unique(pool.free_buffers())) == pool.n_buffers
