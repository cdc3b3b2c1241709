"""The responder's packet logic, after libmemif's ``icmp_responder.c``: answer ARP and ICMP echo.

:class:`Responder` takes a received burst, has :class:`memif.arp_icmp.ArpIcmpAnswerer`
(the one ARP/ICMP answerer, memifd's too) decide which frames to answer and build the
replies' heads, and writes the replies straight into transmit buffers in shared memory,
published once per burst (the one copy is the request into the reply buffer; replies larger
than one buffer go out chained).  A full burst is read through its header rows
(:meth:`~memif.queue.RxBatch.headers`); a small one, a ping's, is answered frame by frame
(:meth:`~memif.arp_icmp.ArpIcmpAnswerer.answer_one`), which costs a few microseconds where
gathering rows and classifying them costs hundreds.  It opens nothing and never waits:
:mod:`memif.tools.ping.responder` runs the loop.
"""

from __future__ import annotations

import numpy as np

from ...arp_icmp import Answers, ArpIcmpAnswerer, Verdict
from ...classify import HEADER_BYTES
from ...queue import RxBatch, RxQueue, TxQueue
from ..burst import echo_burst

BURST = 256

# Reply kinds.
ARP, ICMP, REFLECT = 1, 2, 3
_KIND = {int(Verdict.ANSWER_ARP): ARP, int(Verdict.ANSWER_ECHO): ICMP}


class Responder:
    """The packet logic: classify a burst, write replies into transmit buffers.

    Counters: ``rx`` (frames received), ``arp_replies``, ``icmp_replies``, ``reflected``,
    ``ignored`` (frames not answered) and ``tx_dropped`` (replies the transmit ring had no
    room for).
    """

    def __init__(self, ip: bytes, mac: bytes, *, reflect: bool = False, l2: bool = True):
        self.ip = ip
        self.mac = mac
        self.reflect = reflect
        self.l2 = l2
        self.answerer = ArpIcmpAnswerer(mac, [ip], ethernet=l2)
        self.rx = self.arp_replies = self.icmp_replies = self.reflected = 0
        self.ignored = self.tx_dropped = 0

    def counters(self) -> dict[str, int]:
        """Every counter by name."""
        return {
            "rx": self.rx,
            "arp_replies": self.arp_replies,
            "icmp_replies": self.icmp_replies,
            "reflected": self.reflected,
            "ignored": self.ignored,
            "tx_dropped": self.tx_dropped,
        }

    def status(self) -> str:
        """The live counter line."""
        if self.reflect:
            text = f"rx {self.rx}  reflected {self.reflected}"
        else:
            text = (
                f"rx {self.rx}  arp replies {self.arp_replies}  "
                f"icmp replies {self.icmp_replies}  ignored {self.ignored}"
            )
        return text + (f"  tx dropped {self.tx_dropped}" if self.tx_dropped else "")

    # ------------------------------------------------------------------ per burst
    def process(self, rxq: RxQueue, txq: TxQueue, burst: int = BURST) -> int:
        """Receive one burst on ``rxq``, answer on ``txq``, refill; returns frames taken."""
        with rxq.receive(burst) as batch:  # refilled at the end, once every reply is written
            n = len(batch)
            if n == 0:
                return 0
            self.rx += n
            if self.reflect:
                self._reflect(batch, txq)
                return n
            if n <= self.answerer.small_burst:  # a ping's burst: frame by frame
                self._answer_each(batch, txq)
                return n
            seen: dict[int, np.ndarray] = {}  # frames read whole, kept for the replies

            def packet(i: int) -> np.ndarray:
                seen[i] = p = batch[i]
                return p

            rows = batch.headers(HEADER_BYTES)  # a view of the buffers when they allow it
            answers = self.answerer.answer(rows, batch.lengths, packet)
            self.ignored += n - len(answers.answered)
            if len(answers.answered):
                self._send(txq, self._jobs(batch, answers, seen))
        return n

    def _answer_each(self, batch: RxBatch, txq: TxQueue) -> None:
        """A small burst, frame by frame (:meth:`~memif.arp_icmp.ArpIcmpAnswerer.answer_one`):
        no header rows to gather, no arrays to build."""
        jobs = []
        answer = self.answerer.answer_one
        for i in range(len(batch)):
            p = batch[i]
            verdict, head, length = answer(p.tobytes())
            if head is None:
                self.ignored += 1
            else:
                jobs.append((p, _KIND[verdict], length, np.frombuffer(head, np.uint8)))
        if jobs:
            self._send(txq, jobs)

    def _jobs(
        self, batch: RxBatch, answers: Answers, seen: dict[int, np.ndarray]
    ) -> list[tuple[np.ndarray, int, int, np.ndarray]]:
        """``(request, kind, reply length, reply head)`` of every frame answered, in order."""
        kinds = answers.verdict[answers.answered].tolist()
        return [
            (seen[i] if i in seen else batch[i], _KIND[kind], length, answers.head[j, :head])
            for j, (i, kind, length, head) in enumerate(
                zip(
                    answers.answered.tolist(),
                    kinds,
                    answers.length.tolist(),
                    answers.head_length.tolist(),
                    strict=True,
                )
            )
        ]

    def _write(
        self, buf: np.ndarray, p: np.ndarray, kind: int, length: int, head: np.ndarray
    ) -> None:
        """Write the reply to ``p`` into ``buf`` (a transmit buffer of >= ``length`` bytes)."""
        if kind == REFLECT:
            buf[:length] = p[:length]
            if self.l2 and length >= 12:
                buf[0:6] = p[6:12]
                buf[6:12] = p[0:6]
            return
        n = len(head)
        buf[:n] = head
        if length > n:
            buf[n:length] = p[n:length]

    def _count(self, kind: int, n: int = 1) -> None:
        if kind == ICMP:
            self.icmp_replies += n
        elif kind == ARP:
            self.arp_replies += n
        else:
            self.reflected += n

    def _send(self, txq: TxQueue, jobs: list[tuple[np.ndarray, int, int, np.ndarray]]) -> None:
        """Write replies into allocated slots, publish once per contiguous run, in order."""
        k, total = 0, len(jobs)
        while k < total:
            tx = txq.alloc(total - k)
            if tx.count == 0:
                break
            lengths: list[int] = []
            while len(lengths) < tx.count and k < total:
                p, kind, length, head = jobs[k]
                if length > tx.capacity:
                    break
                self._write(tx.buffer(len(lengths)), p, kind, length, head)
                lengths.append(length)
                self._count(kind)
                k += 1
            if lengths:
                txq.tx_burst(tx, np.array(lengths, np.uint32), len(lengths))
            if k < total and jobs[k][2] > tx.capacity:  # larger than a buffer: chained
                p, kind, length, head = jobs[k]
                buf = np.empty(length, np.uint8)
                self._write(buf, p, kind, length, head)
                if not txq.send([buf]):
                    break
                self._count(kind)
                k += 1
        self.tx_dropped += total - k

    def _reflect(self, batch: RxBatch, txq: TxQueue) -> None:
        """Every frame back with its MACs swapped; whole-burst numpy copies when possible."""
        n = len(batch)
        done = echo_burst(batch, txq, swap=bool(self.l2))
        self.reflected += done
        if done == n:
            return
        if not txq.free_slots():  # the ring is full: no need to look at the rest
            self.tx_dropped += n - done
            return
        lengths = batch.lengths  # chained or larger than a buffer: one by one
        none = np.zeros(0, np.uint8)
        self._send(txq, [(batch[i], REFLECT, int(lengths[i]), none) for i in range(done, n)])
