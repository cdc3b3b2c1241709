"""``memif gen``'s forwarding engine: transmit, receive, reflect, pace, drain, report.

One :class:`Generator` drives one connected interface in one of testpmd's forwarding modes
(``txonly``, ``rxonly``, ``io``, ``macswap``; see :mod:`memif.tools.gen.cli`) and turns its counters
into the summary dictionary.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np

from ... import wire
from ...config import Role
from ...errors import MemifError
from ...loop import BUSY_VECTOR, EventLoop, RxMode
from ...queue import RxBatch, TxQueue
from ..burst import echo_burst, send_fitting, swap_macs
from ..common import LiveLine, StopRequest, reconnect_wanted
from .frames import HDR_LEN, STREAM_SHIFT, Frames
from .stats import Analyzer

#: The longest idle sleep (seconds): the drain and linger phases look at the clock.
_IDLE_SLEEP = 0.01
#: A sender whose ring was full looks again this soon (seconds).
_FULL_RING_NAP = 0.0001


class _TxStream:
    """One transmit queue and the sequence stream it carries."""

    def __init__(self, q: TxQueue, sid: int) -> None:
        self.q = q
        self.sid = sid
        self.sent = 0
        # A client's tx buffers are its own: each slot needs the template only once.
        self.primed = None if q.is_master else np.zeros(q.size, bool)


class Generator:
    """The forwarding loop over one connected interface."""

    def __init__(self, args: argparse.Namespace, sock: Any, iface: Any, frames: Frames) -> None:
        self.args = args
        self.mode = args.fwd
        self.sock, self.iface, self.f = sock, iface, frames
        self.txq = list(iface.tx_queues)
        self.rxq = list(iface.rx_queues)
        self.streams = [_TxStream(q, i) for i, q in enumerate(self.txq)]
        #: a disconnect waits for the peer to come back (--reconnect) instead of ending the
        #: run; by default without --count, but for a receiver or reflector that
        #: is the server: its client leaving is the end of the traffic, not a port flap
        self.reconnect = reconnect_wanted(args) and (
            args.reconnect or self.mode == "txonly" or iface.role is Role.CLIENT
        )
        self.reconnects = 0
        self._banked = (0, 0, 0, 0, 0)  # tx, tx bytes, rx, rx bytes, rx errors of gone queues
        #: interrupt (sleep on the rx eventfds as soon as a turn is light), polling (spin:
        #: no sleep), or adaptive (the switch's rule: spin near the peak, nap for bigger
        #: vectors under load, sleep on the eventfds when idle): the core's EventLoop
        #: decides, on the packets each turn received (memif.loop's docstring)
        self.rx_mode = RxMode.parse(args.rx_mode or ("polling" if args.polling else "interrupt"))
        self.rx_wake = EventLoop(
            clock=time.perf_counter,
            busy_vector=BUSY_VECTOR,
            vector=args.burst,
            max_sleep=_IDLE_SLEEP,
        )
        self.rx_wake.update_rx(self.rxq, mode=self.rx_mode)
        self.an = Analyzer(frames)
        self.burst = args.burst
        self.count = args.count
        self.done = 0  # packets sent (txonly) or received (other modes)
        self.tx_drops = 0
        self.stop = StopRequest(escalate=())  # every signal ends the run, none raises
        self.interrupted = False
        self.disconnected: str | None = None
        self.undrained = 0
        self.rx_first = self.rx_last = 0.0
        self.t0 = self.t_end = 0.0
        self.wait = 0.0  # a rate-limited sender's wait for its next tokens
        self._rr = 0
        self._chain_cache: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}
        rate = args.rate or 0.0
        self.rate = rate
        self.chunk = max(1, min(self.burst, int(rate * 0.0005))) if rate else self.burst
        # Ten milliseconds of tokens: the average rate survives a late wake-up.
        self.depth = max(float(self.burst), rate * 0.01)
        self.tokens = 0.0
        self.t_tokens = 0.0
        self.live = LiveLine(enabled=not args.quiet)
        self._last = (0.0, 0, 0, 0, 0)

    # ------------------------------------------------------------------ transmit
    def _tx(self, st: _TxStream, n: int) -> int:
        q = st.q
        batch = q.alloc(n)
        m = batch.count
        if not m:
            return 0
        f = self.f
        if f.max_size > batch.capacity:
            sent = self._tx_chained(st, n, batch.capacity) if f.fixed else self._tx_slow(st, n)
        else:
            width = f.max_size
            rows = batch.buffers  # a view, or staging that tx_burst writes out
            if st.primed is None or not batch.is_view:
                rows[:m, :width] = f.template
            else:
                s = batch.start & q.ring.mask
                primed = st.primed[s : s + m]
                if not primed.all():
                    rows[:m, :width] = f.template
                    primed[:] = True
            if f.fixed:
                lengths: Any = width
            else:
                heads, lengths = f.mixed(st.sent, m)
                rows[:m, : f.hdr] = heads
            f.stamp(rows, m, st.sid << STREAM_SHIFT | st.sent, time.monotonic_ns())
            sent = q.tx_burst(batch, lengths)
        st.sent += sent
        return sent

    def _chain_plan(self, cap: int) -> tuple[np.ndarray, np.ndarray, int]:
        plan = self._chain_cache.get(cap)
        if plan is None:
            size = self.f.max_size
            k = -(-size // cap)
            lengths = np.array([min(cap, size - j * cap) for j in range(k)], np.uint32)
            flags = np.full(k, wire.DESC_FLAG_NEXT, np.uint8)
            flags[-1] = 0
            plan = self._chain_cache[cap] = (lengths, flags, k)
        return plan

    def _tx_chained(self, st: _TxStream, n: int, cap: int) -> int:
        """A fixed jumbo size: ``k`` slots per frame, one vectorized write per segment."""
        f, q = self.f, st.q
        if cap < f.hdr + HDR_LEN:
            raise MemifError(
                f"buffers of {cap} bytes cannot hold the {f.hdr + HDR_LEN}-byte header"
            )
        seg_len, seg_flags, k = self._chain_plan(cap)
        if k > q.size:
            raise MemifError(f"a {f.max_size}-byte frame needs {k} buffers, the ring has {q.size}")
        batch = q.alloc(n * k)
        m = batch.count // k
        if not m:  # less than one chain before the ring's end: send one across it
            return self._tx_slow(st, 1)
        slots = m * k
        rows = batch.buffers
        for j in range(k):
            lo, ln = j * cap, int(seg_len[j])
            rows[j:slots:k, :ln] = f.template[lo : lo + ln]
        f.stamp(rows[0:slots:k], m, st.sid << STREAM_SHIFT | st.sent, time.monotonic_ns())
        q.tx_burst(batch, np.tile(seg_len, m), count=slots, flags=np.tile(seg_flags, m))
        return m

    def _tx_slow(self, st: _TxStream, n: int) -> int:
        """Per packet through ``TxQueue.send`` (size mixes with jumbo frames)."""
        f, ts = self.f, time.monotonic_ns()
        idx = f.index(st.sent, n)
        base = st.sid << STREAM_SHIFT | st.sent
        return send_fitting(st.q, [f.frame(int(k), base + i, ts) for i, k in enumerate(idx)])

    def _send(self, now: float) -> int:
        budget = self.burst * len(self.streams)
        if self.count:
            budget = min(budget, self.count - self.done)
        if self.rate:
            self.tokens = min(self.depth, self.tokens + (now - self.t_tokens) * self.rate)
            self.t_tokens = now
            want = min(self.chunk, budget)
            if self.tokens < want:
                self.wait = (want - self.tokens) / self.rate
                return 0
            budget = min(budget, int(self.tokens))
        total = 0
        ns = len(self.streams)
        self._rr = (self._rr + 1) % ns
        for i in range(ns):
            if budget <= 0:
                break
            sent = self._tx(self.streams[(self._rr + i) % ns], min(self.burst, budget))
            budget -= sent
            total += sent
        if self.rate:
            self.tokens -= total
        self.done += total
        return total

    # ------------------------------------------------------------------ receive
    def _rx(self, qid: int, limit: int, now: float) -> int:
        q = self.rxq[qid]
        batch = q.rx_burst(limit)
        n = len(batch)
        if not n:
            return 0
        self.an.add(batch, time.monotonic_ns())
        if self.mode in ("io", "macswap"):
            self._forward(batch, self.txq[qid % len(self.txq)])
        q.refill()
        if not self.rx_first:
            self.rx_first = now
        self.rx_last = now
        return n

    def _forward(self, batch: RxBatch, q: TxQueue) -> None:
        n = len(batch)
        swap = self.mode == "macswap"
        done = echo_burst(batch, q, swap=swap)
        if done < n and (batch.chained or int(batch.lengths[done:].max()) > q.capacity):
            pkts = []  # chained or bigger than the peer's buffers: frame by frame
            for i in range(done, n):
                p = np.array(batch[i])
                if swap and len(p) >= 12:
                    swap_macs(p)
                pkts.append(p)
            done += send_fitting(q, pkts)
        self.tx_drops += n - done

    def _take_delivered(self, now: float) -> None:
        """At a stop: receive what the peer had already delivered into the rings, at most
        one ring's worth per queue, so a Ctrl-C after the peer stopped counts every frame
        it sent (not only those the last turn happened to read)."""
        if not self.iface.connected:
            return
        for qid, q in enumerate(self.rxq):
            budget = q.size
            while budget > 0 and (got := self._rx(qid, min(self.burst, budget), now)):
                budget -= got
                if self.mode != "txonly":
                    self.done += got

    # ------------------------------------------------------------------ loop
    def drained(self) -> int:
        """Slots sent and not yet taken back by the peer, over every tx queue that sent."""
        return sum(
            q.size - q.free_slots() if q.is_master else q.in_flight
            for q in self.txq
            if q.stats.packets
        )

    def run(self) -> None:
        """Move traffic until the end (count, duration, signal, peer gone), drain, linger."""
        args = self.args
        t = time.perf_counter()
        delay_end = t + args.start_delay
        while not self.stop and time.perf_counter() < delay_end and self.iface.connected:
            self.sock.poll(min(0.05, max(0.0, delay_end - time.perf_counter())))
        self.t0 = self.t_tokens = now = time.perf_counter()
        self._last = (now, 0, 0, 0, 0)
        self.live.restart()
        send_end = now + args.duration if args.duration else math.inf
        live_period = self.live.interval
        phase, phase_end, next_house = "send", math.inf, now
        next_live = now + live_period
        txonly = self.mode == "txonly"
        wake = self.rx_wake
        polling = self.rx_mode is RxMode.POLLING
        while True:
            if self.stop:
                self.interrupted = phase != "linger"  # a cut linger is still a full run
                self._take_delivered(time.perf_counter())
                break
            now = time.perf_counter()
            work = sent = 0
            self.wait = 0.0
            if phase == "send":
                if now >= send_end or (self.count and self.done >= self.count):
                    phase, phase_end, self.t_end = "drain", now + args.drain_timeout, now
                elif txonly:
                    sent = self._send(now)
            if txonly or phase == "send":
                for qid in range(len(self.rxq)):
                    limit = self.burst
                    if self.count and not txonly:
                        limit = min(limit, self.count - self.done)
                        if limit <= 0:
                            break
                    got = self._rx(qid, limit, now)
                    work += got
                    if not txonly:
                        self.done += got
            if phase == "drain":
                self.undrained = self.drained()
                if not self.undrained or now >= phase_end:
                    phase, phase_end = "linger", now + args.linger
            if phase == "linger" and now >= phase_end:
                break
            if now >= next_house:
                next_house = now + 0.05
                self.sock.poll(0)
                if not self.iface.connected:
                    reason = self.iface.remote_disc_reason or self.iface.local_disc_reason
                    if phase == "send" and self.reconnect and self._reconnect(reason, send_end):
                        next_house = now = time.perf_counter()
                        self.t_tokens = now  # no burst for the time it was away
                        continue
                    if phase != "linger":
                        self.disconnected = reason or "peer disconnected"
                    break
                if now >= next_live:
                    next_live = now + live_period
                    self.live.update(self.live_text(now), force=True)
            if polling:  # busy-poll, as DPDK does: never a sleep, so no deadline to ask
                continue
            deadline = wake.run_once(now, work)  # the rx mode's rule, on what came in
            if deadline <= now:
                continue
            if sent and not self.wait:  # tokens (or ring room) left: send on at once
                continue
            if self.wait:  # tokens to wait for; frames coming back wake us up earlier
                deadline = min(deadline, now + self.wait)
            elif txonly and phase == "send":  # the ring was full: look again soon
                deadline = min(deadline, now + _FULL_RING_NAP)
            wake.sleep(min(deadline, next_house, phase_end, send_end))
        if not self.t_end:
            self.t_end = time.perf_counter()
        if self.iface.connected:  # Ctrl-C or the end: count what is still in flight
            self.undrained = self.drained()

    def _reconnect(self, reason: str | None, until: float) -> bool:
        """The peer went away in the sending phase: keep the counters of the queues that
        went with it, wait for it (the live line says ``reconnecting``) until it is back,
        a signal, or ``until`` (perf_counter); True when it is back, on its new queues."""
        tx, txb, rx, rxb = self.counters()
        self._banked = (tx, txb, rx, rxb, self.rx_errors())
        self.txq, self.rxq = [], []
        self.rx_wake.update_rx([], mode=self.rx_mode)
        self.reconnects += 1
        why = f" ({reason})" if reason else ""
        shown = 0.0
        while not self.stop and not self.iface.connected and time.perf_counter() < until:
            now = time.perf_counter()
            if now - shown >= self.live.interval:
                shown = now
                self.live.update(f"reconnecting{why}  {self.totals_text()}", force=True)
            self.sock.poll(min(0.05, max(0.0, until - now)))
        if not self.iface.connected:
            return False
        self.txq, self.rxq = list(self.iface.tx_queues), list(self.iface.rx_queues)
        old = self.streams
        self.streams = [_TxStream(q, i) for i, q in enumerate(self.txq)]
        for st, before in zip(self.streams, old, strict=False):
            st.sent = before.sent  # each stream's numbers go on: a gap is the frames lost
        self.rx_wake.update_rx(self.rxq, mode=self.rx_mode)
        self.live.update(f"reconnected  {self.totals_text()}", force=True)
        return True

    # ------------------------------------------------------------------ reporting
    def counters(self) -> tuple[int, int, int, int]:
        """Packets and bytes sent, packets and bytes received, over every queue (those
        of earlier connections included)."""
        tx0, txb0, rx0, rxb0, _ = self._banked
        tx = tx0 + sum(q.stats.packets for q in self.txq)
        txb = txb0 + sum(q.stats.bytes for q in self.txq)
        rx = rx0 + sum(q.stats.packets for q in self.rxq)
        rxb = rxb0 + sum(q.stats.bytes for q in self.rxq)
        return tx, txb, rx, rxb

    def totals_text(self) -> str:
        """Running totals: packets sent and received, lost, drops."""
        tx, _, rx, _ = self.counters()
        return (
            f"tx {tx:,}  rx {rx:,}  lost {self.an.total('lost')}  "
            f"drops {self.tx_drops + self.rx_errors()}"
        )

    def live_text(self, now: float) -> str:
        """The live line: rates since the previous call, loss, drops, median latency."""
        t, tx0, txb0, rx0, rxb0 = self._last
        tx, txb, rx, rxb = self.counters()
        dt = max(now - t, 1e-9)
        self._last = (now, tx, txb, rx, rxb)
        p50 = self.an.latency.percentile(50)
        lat = f"  p50 {p50 / 1000:.1f} us" if p50 is not None else ""
        return (
            f"tx {_pps((tx - tx0) / dt)} {(txb - txb0) * 8 / dt / 1e9:.3f} Gbit/s  "
            f"rx {_pps((rx - rx0) / dt)} {(rxb - rxb0) * 8 / dt / 1e9:.3f} Gbit/s  "
            f"{self.totals_text()}{lat}"
        )

    def finish_live(self, summary: dict[str, Any]) -> None:
        """The live line's last state: totals and average rates over the whole run (not the
        rates of its last instant, which are 0 once the sending has ended)."""
        self.live.finish(self.final_text(summary), summary["seconds"], "done, average rates")

    def final_text(self, summary: dict[str, Any]) -> str:
        """The run's totals and average rates (see :meth:`finish_live`)."""
        lat = f"  p50 {summary['p50_us']:.1f} us" if summary["p50_us"] is not None else ""
        return (
            f"tx {summary['tx_packets']:,} ({_pps(summary['tx_mpps'] * 1e6)})  "
            f"rx {summary['rx_packets']:,} ({_pps(summary['rx_mpps'] * 1e6)})  "
            f"lost {summary['lost'] if summary['lost'] is not None else '-'}  "
            f"drops {summary['tx_drops'] + summary['rx_errors']}{lat}"
        )

    def rx_errors(self) -> int:
        """Received descriptors dropped as invalid, over every queue (and earlier ones)."""
        return self._banked[4] + sum(q.stats.drops for q in self.rxq)

    def summary(self) -> dict[str, Any]:
        """The run's result: the ``--json`` object and what the human summary prints."""
        tx, txb, rx, rxb = self.counters()
        seconds = max(self.t_end - self.t0, 1e-9)
        rx_span = self.rx_last - self.rx_first
        rx_seconds = rx_span if rx_span > 0.001 else seconds
        tx_seconds = seconds if self.mode == "txonly" else rx_seconds
        an = self.an
        if self.mode == "txonly":
            lost = tx - an.total("unique") if an.ours else None
        else:
            lost = an.total("lost") if an.ours else None
        lat = an.latency

        def us(p: float) -> float | None:
            v = lat.percentile(p)
            return None if v is None else round(v / 1000, 3)

        out: dict[str, Any] = {
            "mode": self.mode,
            "role": self.iface.role.value,
            "queues": len(self.txq),
            "sizes": [int(s) for s in self.f.sizes] if self.mode == "txonly" else None,
            "burst": self.burst,
            "rate": self.rate or None,
            "seconds": round(seconds, 6),
            "tx_packets": tx,
            "tx_bytes": txb,
            "tx_drops": self.tx_drops,
            "tx_mpps": round(tx / tx_seconds / 1e6, 6),
            "tx_gbps": round(txb * 8 / tx_seconds / 1e9, 6),
            "rx_packets": rx,
            "rx_bytes": rxb,
            "rx_errors": self.rx_errors(),
            "rx_mpps": round(rx / rx_seconds / 1e6, 6),
            "rx_gbps": round(rxb * 8 / rx_seconds / 1e9, 6),
            "sequenced": an.ours,
            "foreign": an.foreign,
            "streams": len(an.streams),
            "lost": lost,
            "reordered": an.total("reordered"),
            "duplicates": an.total("duplicates"),
            "latency": None
            if not lat.count
            else ("round-trip" if self.mode == "txonly" else "one-way"),
            "latency_samples": lat.count,
            "min_us": round(lat.min / 1000, 3) if lat.count else None,
            "mean_us": round(lat.total / lat.count / 1000, 3) if lat.count else None,
            "p50_us": us(50),
            "p99_us": us(99),
            "p999_us": us(99.9),
            "max_us": round(lat.max / 1000, 3) if lat.count else None,
            "in_flight": self.undrained,
            "interrupted": self.interrupted,
            "disconnected": self.disconnected,
            "reconnects": self.reconnects,
        }
        main = "rx" if self.mode == "rxonly" else "tx"
        out["mpps"], out["gbps"] = out[f"{main}_mpps"], out[f"{main}_gbps"]
        return out


def _pps(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.3f} Mpps"
    if v >= 1e3:
        return f"{v / 1e3:.1f} kpps"
    return f"{v:.0f} pps"
