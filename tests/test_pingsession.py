"""memif.pingsession: the ping session with time as an input (no clock, no sockets).

Each test drives a session with the ``now`` it chooses and reads the frames it returns with
packet's parsers (and scapy for the checksums of the echo requests it builds).
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether

from memif import packet as pkt
from memif.pingsession import PingSession, State, rtt_summary

SRC, DST = pkt.ip4("10.0.0.2"), pkt.ip4("10.0.0.1")
MAC, PEER = bytes.fromhex("020000000001"), bytes.fromhex("0200000000aa")


def session(**kw: object) -> PingSession:
    options: dict = {"ident": 0x1234, "mac": MAC, "count": 3, "interval": 1.0, "linger": 2.0}
    return PingSession(SRC, DST, **{**options, **kw})


def test_arp_then_echo_schedule_and_statistics() -> None:
    s = session()
    (arp,) = s.poll(0.0)
    assert arp.seq is None and arp.frame == pkt.arp_request(MAC, SRC, DST)
    assert s.poll(0.5) == [] and s.next_deadline() == 1.0
    s.resolved(PEER, 0.7)
    assert s.state is State.PINGING and s.next_deadline() == 0.7
    (first,) = s.poll(0.7)
    p = Ether(first.frame)
    assert (p.dst, p[IP].src, p[IP].dst, p[IP].id) == ("02:00:00:00:00:aa", "10.0.0.2",
                                                       "10.0.0.1", 1)  # fmt: skip
    assert (p[ICMP].type, p[ICMP].id, p[ICMP].seq, len(p[ICMP].payload)) == (8, 0x1234, 1, 56)
    del p[IP].chksum
    del p[ICMP].chksum
    assert bytes(Ether(bytes(p))) == first.frame  # the checksums scapy computes
    assert s.poll(1.2) == [] and s.next_deadline() == 1.7
    assert s.echo_reply(0x1234, 1, DST, 0.9) is not None
    assert [x.seq for x in s.poll(1.7) + s.poll(2.7)] == [2, 3]
    assert s.state is State.DRAINING and s.next_deadline() == 2.7 + 2.0
    got = s.echo_reply(0x1234, 3, DST, 2.8, data=s.payload)
    assert got is not None and got.seq == 3 and got.rtt == pytest.approx(0.1)
    s.poll(4.0)
    assert s.state is State.DRAINING  # seq 2 is still out
    s.poll(4.7)
    assert s.done and not s.unresolved and s.next_deadline() is None
    st = s.stats
    assert (st.transmitted, st.received, st.loss) == (3, 2, pytest.approx(1 / 3))
    assert st.rtt_by_seq == {1: pytest.approx(0.2), 3: pytest.approx(0.1)}


def test_all_replies_end_the_wait() -> None:
    s = session(count=1, mac=None)  # ip mode: no ARP, a bare IPv4 packet
    (echo,) = s.poll(10.0)
    assert echo.frame[0] == 0x45 and pkt.parse_ip(echo.frame) is not None
    s.echo_reply(0x1234, 1, DST, 10.001)
    assert s.done and s.stats.received == 1


def test_arp_unanswered() -> None:
    s = session(arp_tries=2, arp_timeout=0.5)
    assert len(s.poll(0.0)) == 1 and s.poll(0.4) == [] and len(s.poll(0.5)) == 1
    assert s.poll(0.9) == [] and not s.done
    assert s.poll(1.0) == [] and s.done and s.unresolved and s.arp_sent == 2


def test_replies_matched_duplicates_corrupted_and_strangers() -> None:
    s = session(count=2, linger=5.0)
    s.resolved(PEER, 0.0)
    s.poll(0.0)
    assert s.echo_reply(0x9999, 1, DST, 0.1) is None  # another ping's
    assert s.echo_reply(0x1234, 1, pkt.ip4("10.0.0.9"), 0.1) is None  # from elsewhere
    assert s.echo_reply(0x1234, 2, DST, 0.1) is None  # not sent yet
    bad = s.echo_reply(0x1234, 1, DST, 0.1, data=b"other")
    assert bad is not None and bad.corrupted
    assert s.echo_reply(0x1234, 1, DST, 0.2, data=s.payload) is not None
    dup = s.echo_reply(0x1234, 1, DST, 0.3)
    assert dup is not None and dup.duplicate
    st = s.stats
    assert (st.received, st.duplicates, st.corrupted) == (1, 1, 1)
    s.stop()
    assert s.done and s.echo_reply(0x1234, 1, DST, 0.4) is None and s.poll(9.0) == []


def test_rtt_from_the_send_time_the_caller_tells() -> None:
    """``sent_at`` moves a request's send time (the RTT's start), not the schedule."""
    s = session(mac=None, count=2, interval=1.0)
    (first,) = s.poll(5.0)
    s.sent_at(1, 5.25)
    s.sent_at(7, 5.5)  # not in flight: nothing happens
    got = s.echo_reply(0x1234, 1, DST, 5.5)
    assert got is not None and got.rtt == pytest.approx(0.25)
    assert s.next_deadline() == 6.0 and [x.seq for x in s.poll(6.0)] == [2]
    s.sent_at(1, 9.0)  # answered already: its RTT stays
    assert s.stats.rtt_by_seq == {1: pytest.approx(0.25)}


def test_sequence_numbers_wrap_at_16_bits() -> None:
    s = session(count=None, interval=0.0, mac=None)
    seqs = [x.seq for t in range(65537) for x in s.poll(float(t))]
    assert seqs[65534:] == [65535, 0, 1] and s.stats.transmitted == 65537


@pytest.mark.parametrize("mac", [MAC, None], ids=["ethernet", "ip"])
@pytest.mark.parametrize("size", [0, 1, 56, 1471])
def test_echo_requests_are_the_packets_built_from_scratch(mac: bytes | None, size: int) -> None:
    """Every request (a patched copy of the first, checksums updated) is byte for byte the
    one memif.packet builds with both checksums computed whole, for sequence numbers
    across the 16 bits; scapy finds the same checksums."""
    s = session(mac=mac, size=size, ident=0xFFFF)
    if mac is not None:
        s.resolved(PEER, 0.0)
    for seq in (*range(0, 300), *range(0x7F00, 0x8100), *range(0xFF00, 0x10000)):
        icmp = pkt.icmp_echo(pkt.ICMP_ECHO_REQUEST, 0xFFFF, seq, s.payload)
        want = pkt.ipv4(SRC, DST, pkt.PROTO_ICMP, icmp, ident=seq)
        if mac is not None:
            want = pkt.ethernet(PEER, MAC, pkt.ETH_P_IP, want)
        assert s.echo_request(seq) == want, seq
    p = IP(s.echo_request(0xBEEF)[14 if mac else 0 :])
    del p.chksum
    del p[ICMP].chksum
    assert bytes(IP(bytes(p))) == s.echo_request(0xBEEF)[14 if mac else 0 :]


def test_rtt_summary_is_pings() -> None:
    assert rtt_summary([]) is None
    mn, avg, mx, mdev = rtt_summary([1.0, 2.0, 3.0])  # type: ignore[misc]
    assert (mn, avg, mx) == (1.0, 2.0, 3.0) and mdev == pytest.approx((2 / 3) ** 0.5)


@pytest.mark.parametrize(
    ("options", "match"),
    [({"count": 0}, "count 0"), ({"ident": 70000}, "ident 70000"), ({"arp_tries": 0}, "arp")],
)
def test_bad_options(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        session(**options)
