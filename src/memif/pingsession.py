"""A ping session, sans I/O: ARP, the echo request schedule, matching replies, RTT statistics.

One implementation for ``memif ping`` and memifd's ``ping`` command.  The session opens
nothing, sends nothing and never reads a clock: the caller gives it ``now`` (any monotonic
clock, in seconds, the same one throughout) and sends the frames it returns.

* :meth:`PingSession.poll` returns the frames due at ``now``: ARP requests for the target
  (``arp_tries`` of them, ``arp_timeout`` apart) until :meth:`~PingSession.resolved` tells
  its MAC, then one echo request every ``interval`` seconds, ``count`` of them (None: until
  :meth:`~PingSession.stop`).  :meth:`~PingSession.next_deadline` says when to call again.
* :meth:`PingSession.echo_reply` matches a reply (identifier, sequence number, source)
  to a request and returns an :class:`EchoReply` event; :attr:`PingSession.stats` are the
  counts and round-trip times so far.
* The session is :attr:`~PingSession.done` when ARP went unanswered (``unresolved``), or
  after the last request once every reply came or ``linger`` seconds passed.

In ip mode (``mac=None``) there is no Ethernet header and no ARP.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from . import packet as pk

__all__ = ["EchoReply", "PingSession", "PingStats", "Sent", "State", "rtt_summary"]

SEQ_MOD = 0x10000  # sequence numbers are 16 bits on the wire: they wrap


class State(enum.Enum):
    """Where a session is."""

    RESOLVING = "resolving"  #: asking for the target's MAC with ARP
    PINGING = "pinging"  #: sending echo requests
    DRAINING = "draining"  #: every request sent; waiting for the last replies
    DONE = "done"


@dataclass(frozen=True)
class Sent:
    """A frame :meth:`PingSession.poll` wants sent: an ARP request or echo request ``seq``."""

    frame: bytes
    seq: int | None = None  #: None for an ARP request


@dataclass(frozen=True)
class EchoReply:
    """An echo reply matched to a request."""

    seq: int
    rtt: float  #: seconds
    duplicate: bool = False  #: a second reply to the same request
    corrupted: bool = False  #: its data is not what the request carried


@dataclass
class PingStats:
    """Counts and round-trip times of a session (RTTs in seconds, in arrival order)."""

    transmitted: int = 0
    received: int = 0
    duplicates: int = 0
    corrupted: int = 0
    rtts: list[float] = field(default_factory=list)
    rtt_by_seq: dict[int, float] = field(default_factory=dict)  #: of the replies received

    @property
    def loss(self) -> float:
        """Lost requests, 0..1 (1 when nothing was sent)."""
        if not self.transmitted:
            return 1.0
        return (self.transmitted - self.received) / self.transmitted


def rtt_summary(rtts: list[float]) -> tuple[float, float, float, float] | None:
    """``(min, avg, max, mdev)`` of round-trip times, mdev as ping(8) computes it."""
    if not rtts:
        return None
    n = len(rtts)
    avg = sum(rtts) / n
    mdev = math.sqrt(max(0.0, sum(t * t for t in rtts) / n - avg * avg))
    return min(rtts), avg, max(rtts), mdev


class PingSession:
    """One run of ping from ``source`` to ``target`` (4-byte IPv4 addresses)."""

    def __init__(
        self,
        source: bytes,
        target: bytes,
        *,
        ident: int,
        mac: bytes | None,
        count: int | None = None,
        interval: float = 1.0,
        linger: float = 1.0,
        size: int = 56,
        arp_tries: int = 3,
        arp_timeout: float = 1.0,
    ) -> None:
        if count is not None and count < 1:
            raise ValueError(f"count {count}: expected at least 1 (or None: until stopped)")
        if not 0 <= ident <= 0xFFFF:
            raise ValueError(f"ident {ident}: expected 0..65535")
        if arp_tries < 1 or interval < 0 or linger < 0 or arp_timeout <= 0:
            raise ValueError("arp_tries >= 1, interval >= 0, linger >= 0, arp_timeout > 0")
        self.source, self.target, self.mac = source, target, mac
        self.ident, self.count, self.interval, self.linger = ident, count, interval, linger
        self.arp_tries, self.arp_timeout = arp_tries, arp_timeout
        self.payload = bytes(i & 0xFF for i in range(size))
        self.target_mac: bytes | None = None
        self.state = State.RESOLVING if mac is not None else State.PINGING
        self.unresolved = False  #: ARP went unanswered
        self.stats = PingStats()
        self.arp_sent = 0  #: ARP requests sent
        self._sent: dict[int, float] = {}  # wire seq -> send time, of the requests in flight
        self._got: set[int] = set()
        self._next = -math.inf  # when the next frame is due
        self._last = 0.0  # when the last echo request went out
        self._template: tuple[bytes | None, bytes] | None = None  # (target MAC, request 0)

    # ------------------------------------------------------------------ state
    @property
    def done(self) -> bool:
        """True when the session ended (see :attr:`unresolved`)."""
        return self.state is State.DONE

    def next_deadline(self) -> float | None:
        """When :meth:`poll` has something to do next (None: done)."""
        if self.state is State.DONE:
            return None
        if self.state is State.DRAINING:
            return self._last + self.linger
        return self._next

    def resolved(self, mac: bytes, now: float) -> None:
        """The target is at ``mac``: pinging starts (at the next :meth:`poll`)."""
        if self.target_mac is None:
            self.target_mac = bytes(mac)
        if self.state is State.RESOLVING:
            self.state = State.PINGING
            self._next = now

    def stop(self) -> None:
        """End now (interrupted): nothing more is sent or matched."""
        self.state = State.DONE

    # ------------------------------------------------------------------ frames
    def poll(self, now: float) -> list[Sent]:
        """The frames due at ``now`` (an ARP request or one echo request); moves the state."""
        if self.state is State.RESOLVING:
            if now < self._next:
                return []
            if self.arp_sent >= self.arp_tries:
                self.unresolved = True
                self.state = State.DONE
                return []
            self.arp_sent += 1
            self._next = now + self.arp_timeout
            assert self.mac is not None
            return [Sent(pk.arp_request(self.mac, self.source, self.target))]
        if self.state is State.PINGING and now >= self._next:
            seq = (self.stats.transmitted + 1) % SEQ_MOD
            self.stats.transmitted += 1
            self._sent[seq] = self._last = now
            self._got.discard(seq)
            self._next = now + self.interval
            if self.count is not None and self.stats.transmitted >= self.count:
                self.state = State.DRAINING
            return [Sent(self.echo_request(seq), seq)]
        if self.state is State.DRAINING and (
            now >= self._last + self.linger or self.stats.received >= self.stats.transmitted
        ):
            self.state = State.DONE
        return []

    def sent_at(self, seq: int, when: float) -> None:
        """Echo request ``seq`` left at ``when``, not at the ``now`` of the :meth:`poll` that
        returned it: a caller that reads its clock again right before the send measures
        round trips from there, as ping(8) does (the schedule keeps the poll's time).
        Nothing happens for a request no longer in flight."""
        if seq in self._sent:
            self._sent[seq] = when

    def echo_request(self, seq: int) -> bytes:
        """The frame (or bare IPv4 packet) of echo request ``seq``, whose IP identification
        is ``seq`` too.

        The request of sequence number 0 is built once (:mod:`memif.packet`); each request
        is a copy with both fields set and both checksums updated for them (RFC 1624): a
        few microseconds, where computing the checksums again costs tens, between the send
        time the session records and the send.
        """
        template = self._template
        if template is None or template[0] != self.target_mac:
            icmp = pk.icmp_echo(pk.ICMP_ECHO_REQUEST, self.ident, 0, self.payload)
            ip = pk.ipv4(self.source, self.target, pk.PROTO_ICMP, icmp, ident=0)
            if self.mac is not None:
                assert self.target_mac is not None
                ip = pk.ethernet(self.target_mac, self.mac, pk.ETH_P_IP, ip)
            template = self._template = (self.target_mac, ip)
        frame = bytearray(template[1])
        l3 = 0 if self.mac is None else pk.ETH_HLEN
        l4 = l3 + pk.IP_HLEN
        for at, word in ((l3 + 10, l3 + 4), (l4 + 2, l4 + 6)):  # (checksum, field) offsets
            frame[word : word + 2] = seq.to_bytes(2, "big")
            old = int.from_bytes(frame[at : at + 2], "big")
            frame[at : at + 2] = pk.update_checksum(old, 0, seq).to_bytes(2, "big")
        return bytes(frame)

    # ------------------------------------------------------------------ replies
    def echo_reply(
        self, ident: int, seq: int, src: bytes, now: float, data: bytes | None = None
    ) -> EchoReply | None:
        """Match an echo reply; None when it answers none of this session's requests.

        ``data``: the reply's ICMP data, compared with the request's (None: not checked).
        """
        if self.state is State.DONE or ident != self.ident or src != self.target:
            return None
        sent = self._sent.get(seq)
        if sent is None:
            return None
        rtt = max(now - sent, 0.0)
        st = self.stats
        if seq in self._got:
            st.duplicates += 1
            return EchoReply(seq, rtt, duplicate=True)
        if data is not None and data != self.payload:
            st.corrupted += 1
            return EchoReply(seq, rtt, corrupted=True)
        self._got.add(seq)
        st.received += 1
        st.rtts.append(rtt)
        st.rtt_by_seq[seq] = rtt
        if self.state is State.DRAINING and st.received >= st.transmitted:
            self.state = State.DONE
        return EchoReply(seq, rtt)
