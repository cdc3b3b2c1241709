"""memif.arp_icmp, the ARP/ICMP answerer, and packet's checksums, against scapy.

Checksums are checked with scapy (an implementation nobody here wrote), never with the
function that wrote them: scapy recomputes every checksum of a reply and must find the
bytes the answerer wrote; packet's builders must write the bytes scapy writes.  Then one
table of verdicts, every way a frame is not answered, and a fuzz run whose only invariant is
"a verdict per frame, replies whose checksums scapy accepts, never an exception".

The answerer has two paths, vectorized and (bursts of at most ``small_burst`` frames) frame by
frame: the table, the fuzz run and the reference run each path (``PATHS``), and both paths
must give identical answers, byte for byte, on the same bursts.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from memif import packet as pkt
from memif.arp_icmp import (
    REPLY_HEAD,
    SMALL_BURST,
    TTL,
    Answers,
    ArpIcmpAnswerer,
    Verdict,
    reference,
    verifies,
)
from memif.classify import HEADER_BYTES, Fields

MAC, IP4 = bytes.fromhex("0200000000aa"), pkt.ip4("10.0.0.1")
PEER_MAC, PEER_IP = bytes.fromhex("020000000001"), pkt.ip4("10.0.0.2")
S_MAC, S_PEER_MAC = "02:00:00:00:00:aa", "02:00:00:00:00:01"
#: ``small_burst`` of each path: always vectorized, always frame by frame (bursts here are short)
PATHS = {"vectorized": 0, "frame-by-frame": 1000}


def _rows(frames: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    hdr = np.full((len(frames), HEADER_BYTES), 0x5A, np.uint8)  # junk past each frame
    for i, f in enumerate(frames):
        n = min(len(f), HEADER_BYTES)
        hdr[i, :n] = np.frombuffer(f[:n], np.uint8)
    return hdr, np.array([len(f) for f in frames], np.int64)


def answer(frames: list[bytes], a: ArpIcmpAnswerer | None = None, whole: bool = True):
    a = a or ArpIcmpAnswerer(MAC, [IP4])
    hdr, lengths = _rows(frames)
    res = a.answer(hdr, lengths, (lambda i: frames[i]) if whole else None)
    replies = {int(i): res.reply(j, frames[i]) for j, i in enumerate(res.answered.tolist())}
    return res, replies


def scapy_echo(ttl: int = 64, ident: int = 1, seq: int = 1, data: bytes = b"x" * 56,
               options: bytes = b"", ip_id: int = 7, tos: int = 0) -> bytes:  # fmt: skip
    ip = IP(src="10.0.0.2", dst="10.0.0.1", ttl=ttl, id=ip_id, tos=tos, flags="DF")
    if options:
        ip.options = [Raw(options)]  # type: ignore[assignment]
    return bytes(Ether(dst=S_MAC, src=S_PEER_MAC) / ip / ICMP(type=8, id=ident, seq=seq) / data)


def rechecked(frame: bytes) -> bytes:
    """``frame`` with scapy's own IP and ICMP checksums."""
    p = Ether(frame)
    del p[IP].chksum
    del p[ICMP].chksum
    return bytes(Ether(bytes(p)))


# ----------------------------------------------------------------------------- checksums
@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=1500),
    st.sampled_from([b"", b"\x01\x01\x01\x00", b"\x94\x04\x00\x00" + b"\x01" * 4]),
    st.integers(0, 0xFFFF), st.integers(0, 255),
)  # fmt: skip
def test_echo_replies_carry_the_checksums_scapy_computes(
    ttl: int, ident: int, seq: int, data: bytes, options: bytes, ip_id: int, tos: int
) -> None:
    request = scapy_echo(ttl, ident, seq, data, options, ip_id, tos)
    res, replies = answer([request])
    assert res.verdict.tolist() == [Verdict.ANSWER_ECHO]
    reply = replies[0]
    assert reply == rechecked(reply)  # both checksums are the ones scapy computes
    p = Ether(reply)
    assert (p.dst, p.src, p[IP].src, p[IP].dst) == (S_PEER_MAC, S_MAC, "10.0.0.1", "10.0.0.2")
    assert (p[IP].ttl, p[IP].id, p[IP].tos, p[ICMP].type) == (TTL, ip_id, tos, 0)
    assert (p[ICMP].id, p[ICMP].seq, bytes(p[ICMP].payload)) == (ident, seq, data)
    assert reply[14 + 20 : 14 + 20 + len(options)] == options


def test_packet_builders_write_what_scapy_writes() -> None:
    rng = np.random.default_rng(5)
    for _ in range(100):
        data = rng.integers(0, 256, int(rng.integers(0, 300)), np.uint8).tobytes()
        ident, seq, ip_id = (int(x) for x in rng.integers(0, 0x10000, 3))
        ttl = int(rng.integers(1, 256))
        icmp = pkt.icmp_echo(pkt.ICMP_ECHO_REQUEST, ident, seq, data)
        ours = pkt.ipv4(PEER_IP, IP4, pkt.PROTO_ICMP, icmp, ttl=ttl, ident=ip_id)
        theirs = (
            IP(src="10.0.0.2", dst="10.0.0.1", ttl=ttl, id=ip_id, flags="DF")
            / ICMP(type=8, id=ident, seq=seq)
            / data
        )
        assert ours == bytes(theirs)
        assert pkt.checksum(ours[:20]) == 0  # a header whose sum holds sums to zero
    arp = pkt.arp_reply(MAC, IP4, PEER_MAC, PEER_IP)
    assert arp == bytes(Ether(dst=S_PEER_MAC, src=S_MAC) / ARP(
        op=2, hwsrc=S_MAC, psrc="10.0.0.1", hwdst=S_PEER_MAC, pdst="10.0.0.2"))  # fmt: skip


#: An echo request Linux's ping(8) sent (``ping -c 1 -p a5 127.0.0.1`` in a network namespace,
#: captured from an AF_PACKET socket on lo): IPv4 header and ICMP, as on the wire.
LINUX_PING = bytes.fromhex(
    "4500005405fb4000400136ac7f0000017f000001080077577034000110b5146b00000000f661040000000000"
    + "a5" * 40
)


def test_golden_linux_ping() -> None:
    """Linux's sums hold for ``verifies`` (one flipped bit breaks them), and the answerer's
    reply to that request carries the sums scapy computes."""
    row = np.frombuffer(LINUX_PING, np.uint8)[None, :]
    assert verifies(row, np.array([0]), np.array([20])).tolist() == [True]
    assert verifies(row, np.array([20]), np.array([len(LINUX_PING)])).tolist() == [True]
    for at in (3, 25, len(LINUX_PING) - 1):
        bad = row.copy()
        bad[0, at] ^= 0x10
        assert not verifies(
            bad, np.array([0, 20][at > 20 :][:1]), np.array([20, 84][at > 20 :][:1])
        )[0]
    frame = pkt.ethernet(MAC, PEER_MAC, pkt.ETH_P_IP, LINUX_PING)
    res, replies = answer([frame], ArpIcmpAnswerer(MAC, [pkt.ip4("127.0.0.1")]))
    assert res.verdict.tolist() == [Verdict.ANSWER_ECHO]
    assert replies[0] == rechecked(replies[0])
    assert replies[0][14 + 20 :][4:] == LINUX_PING[24:]  # ident, seq, data: the request's


# ----------------------------------------------------------------------------- verdicts
def _echo(seq: int = 1, data: bytes = b"x" * 56, *, dst: bytes = IP4, mac: bytes = MAC,
          kind: int = pkt.ICMP_ECHO_REQUEST, code: int = 0, frag: int = 0) -> bytes:  # fmt: skip
    icmp = bytearray(pkt.icmp_echo(kind, 1, seq, data))
    if code:
        icmp[1] = code
        icmp[2:4] = b"\0\0"
        icmp[2:4] = pkt.checksum(bytes(icmp)).to_bytes(2, "big")
    ip = bytearray(pkt.ipv4(PEER_IP, dst, pkt.PROTO_ICMP, bytes(icmp)))
    if frag:
        ip[6:8], ip[10:12] = frag.to_bytes(2, "big"), b"\0\0"
        ip[10:12] = pkt.checksum(bytes(ip[:20])).to_bytes(2, "big")
    return pkt.ethernet(mac, PEER_MAC, pkt.ETH_P_IP, bytes(ip))


def _flip(frame: bytes, at: int) -> bytes:
    return frame[:at] + bytes([frame[at] ^ 0xFF]) + frame[at + 1 :]


@pytest.mark.parametrize("small_burst", PATHS.values(), ids=PATHS.keys())
def test_verdicts(small_burst: int) -> None:
    echo = _echo()
    cases = {
        "arp request": (pkt.arp_request(PEER_MAC, PEER_IP, IP4), Verdict.ANSWER_ARP),
        "arp request padded": (pkt.arp_request(PEER_MAC, PEER_IP, IP4) + bytes(18),
                               Verdict.ANSWER_ARP),
        "echo": (echo, Verdict.ANSWER_ECHO),
        "echo padded": (echo + bytes(30), Verdict.ANSWER_ECHO),
        "echo broadcast": (_echo(mac=pkt.BROADCAST), Verdict.ANSWER_ECHO),
        "arp for another": (pkt.arp_request(PEER_MAC, PEER_IP, pkt.ip4("10.0.0.3")),
                            Verdict.NOT_FOR_US),
        "arp reply": (pkt.arp_reply(PEER_MAC, PEER_IP, MAC, IP4), Verdict.ARP_REPLY),
        "arp op 3": (pkt.ethernet(MAC, PEER_MAC, pkt.ETH_P_ARP,
                                  pkt.arp(3, PEER_MAC, PEER_IP, MAC, IP4)), Verdict.NOT_FOR_US),
        "arp for ipv6": (pkt.ethernet(pkt.BROADCAST, PEER_MAC, pkt.ETH_P_ARP,
                                      pkt.ARP_HDR.pack(1, pkt.ETH_P_IPV6, 6, 4, 1, PEER_MAC,
                                                       PEER_IP, bytes(6), IP4)),
                         Verdict.MALFORMED),
        "arp cut short": (pkt.arp_request(PEER_MAC, PEER_IP, IP4)[:40], Verdict.MALFORMED),
        "echo to another": (_echo(dst=pkt.ip4("10.0.0.3")), Verdict.NOT_FOR_US),
        "echo to another mac": (_echo(mac=bytes.fromhex("0200000000bb")), Verdict.NOT_FOR_US),
        "vlan tagged": (echo[:12] + b"\x81\x00\x00\x05" + echo[12:], Verdict.NOT_FOR_US),
        "bad icmp sum": (_flip(echo, len(echo) - 1), Verdict.BAD_CHECKSUM),
        "bad ip sum": (_flip(echo, 14 + 8), Verdict.BAD_CHECKSUM),
        "echo reply": (_echo(kind=pkt.ICMP_ECHO_REPLY), Verdict.ECHO_REPLY),
        "echo code 1": (_echo(code=1), Verdict.UNSUPPORTED),
        "first fragment": (_echo(frag=0x2000), Verdict.UNSUPPORTED),
        "later fragment": (_echo(frag=0x0010), Verdict.UNSUPPORTED),
        "udp": (pkt.ethernet(MAC, PEER_MAC, pkt.ETH_P_IP,
                             pkt.ipv4(PEER_IP, IP4, pkt.PROTO_UDP, bytes(12))),
                Verdict.UNSUPPORTED),
        "icmp cut to 4": (pkt.ethernet(MAC, PEER_MAC, pkt.ETH_P_IP,
                                       pkt.ipv4(PEER_IP, IP4, pkt.PROTO_ICMP, bytes(4))),
                          Verdict.UNSUPPORTED),
        "ipv6": (pkt.ethernet(pkt.BROADCAST, PEER_MAC, pkt.ETH_P_IPV6, bytes(40)),
                 Verdict.UNSUPPORTED),
        "ihl 4": (echo[:14] + bytes([0x44]) + echo[15:], Verdict.MALFORMED),
        "version 6": (echo[:14] + bytes([0x65]) + echo[15:], Verdict.MALFORMED),
        "total past the frame": (echo[:-1], Verdict.MALFORMED),
        "ip cut short": (echo[:30], Verdict.MALFORMED),
        "runt": (b"\x01\x02\x03", Verdict.MALFORMED),
    }  # fmt: skip
    frames = [f for f, _ in cases.values()]
    res, replies = answer(frames, ArpIcmpAnswerer(MAC, [IP4], small_burst=small_burst))
    got = dict(zip(cases, (Verdict(v) for v in res.verdict.tolist()), strict=True))
    assert got == {name: want for name, (_, want) in cases.items()}
    assert res.count(Verdict.ANSWER_ECHO) == 3 and res.where(Verdict.ARP_REPLY).tolist() == [6]
    # the replies: ARP from our MAC to the asker; the padded echo's reply drops the padding
    assert replies[0] == replies[1] == pkt.arp_reply(MAC, IP4, PEER_MAC, PEER_IP)
    assert replies[2] == rechecked(replies[2]) and replies[3] == replies[2]


def test_addresses_mac_check_and_ip_mode() -> None:
    second = pkt.ip4("10.9.0.1")
    a = ArpIcmpAnswerer(MAC, [IP4, second], check_mac=False)
    frames = [_echo(dst=second), _echo(mac=bytes.fromhex("0200000000bb")),
              pkt.arp_request(PEER_MAC, PEER_IP, second)]  # fmt: skip
    res, replies = answer(frames, a)
    assert res.verdict.tolist() == [Verdict.ANSWER_ECHO] * 2 + [Verdict.ANSWER_ARP]
    assert pkt.parse(replies[0]).ip_src == second  # type: ignore[union-attr]
    assert replies[2] == pkt.arp_reply(MAC, second, PEER_MAC, PEER_IP)

    ip_mode = ArpIcmpAnswerer(MAC, [IP4], ethernet=False)
    bare = [_echo()[14:], _echo(dst=pkt.ip4("10.0.0.3"))[14:], b"\x44" + _echo()[15:],
            b"\x60" + bytes(39)]  # fmt: skip
    res, replies = answer(bare, ip_mode)
    assert res.verdict.tolist() == [
        Verdict.ANSWER_ECHO, Verdict.NOT_FOR_US, Verdict.MALFORMED, Verdict.UNSUPPORTED
    ]  # fmt: skip
    assert replies[0] == _rechecked_ip(replies[0])


def _rechecked_ip(packet: bytes) -> bytes:
    p = IP(packet)
    del p.chksum
    del p[ICMP].chksum
    return bytes(IP(bytes(p)))


@pytest.mark.parametrize("small_burst", PATHS.values(), ids=PATHS.keys())
def test_long_requests_are_verified_whole(small_burst: int) -> None:
    """A request longer than the header rows is checked through ``packet(i)``."""
    a = ArpIcmpAnswerer(MAC, [IP4], small_burst=small_burst)
    big = _echo(data=bytes(range(256)) * 8)
    bad = _flip(big, len(big) - 1)
    icmp = pkt.icmp_echo(pkt.ICMP_ECHO_REQUEST, 0, 0, bytes(1000))  # all zero past the type
    zeros = pkt.ethernet(MAC, PEER_MAC, pkt.ETH_P_IP, pkt.ipv4(PEER_IP, IP4, pkt.PROTO_ICMP, icmp))
    res, replies = answer([big, bad, zeros], a)
    assert res.verdict.tolist() == [Verdict.ANSWER_ECHO, Verdict.BAD_CHECKSUM, Verdict.ANSWER_ECHO]
    assert replies[0] == rechecked(replies[0]) and len(replies[0]) == len(big)
    assert replies[2] == rechecked(replies[2])  # a reply of zeros: its checksum is ~0, not 0
    assert replies[2][14 + 20 + 2 : 14 + 24] == b"\xff\xff"
    res, _ = answer([big], a, whole=False)  # without the whole packet it cannot be checked
    assert res.verdict.tolist() == [Verdict.UNSUPPORTED]


def test_bad_construction() -> None:
    with pytest.raises(ValueError, match="expected 6"):
        ArpIcmpAnswerer(b"\x02", [IP4])
    with pytest.raises(ValueError, match="4 bytes"):
        ArpIcmpAnswerer(MAC, [b"\x0a\x00"])
    with pytest.raises(ValueError, match="128 are needed"):
        ArpIcmpAnswerer(MAC, [IP4]).answer(np.zeros((1, 64), np.uint8), np.array([64]))
    with pytest.raises(ValueError, match="small_burst is frames >= 0"):
        ArpIcmpAnswerer(MAC, [IP4], small_burst=-1)


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    bases = [_echo(), pkt.arp_request(PEER_MAC, PEER_IP, IP4), _echo(kind=pkt.ICMP_ECHO_REPLY),
             _echo(data=bytes(3000)), _echo(0, b"")]  # fmt: skip
    base = draw(st.sampled_from(bases))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(base) - 1))
        base = base[:at] + bytes([draw(st.integers(0, 255))]) + base[at + 1 :]
    return base[: draw(st.integers(0, len(base)))] if draw(st.booleans()) else base


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mangled(), min_size=1, max_size=20), st.sampled_from(list(PATHS.values())))
def test_fuzz_verdicts_and_replies(frames: list[bytes], small_burst: int) -> None:
    res, replies = answer(frames, ArpIcmpAnswerer(MAC, [IP4], small_burst=small_burst))
    assert len(res.verdict) == len(frames)
    assert set(res.verdict.tolist()) <= set(Verdict)
    assert res.head.shape == (len(res.answered), REPLY_HEAD)
    for i, reply in replies.items():
        if res.verdict[i] == Verdict.ANSWER_ECHO:
            assert reply == rechecked(reply)
        else:
            assert reply == pkt.arp_reply(MAC, IP4, reply[:6], reply[38:42])


# ----------------------------------------------------------------------------- the reference
def _with_options(frame: bytes, options: bytes) -> bytes:
    """An echo request frame with IPv4 options (both checksums made whole again)."""
    p = Ether(frame)
    p[IP].options = [Raw(options)]  # type: ignore[assignment]
    del p[IP].chksum, p[IP].ihl, p[IP].len
    return bytes(Ether(bytes(p)))


BASES = [
    _echo(), _echo(7, b""), _echo(9, bytes(200)), _echo(0, b""),
    _echo(kind=pkt.ICMP_ECHO_REPLY), _echo(frag=0x2000), _echo(dst=pkt.ip4("10.9.0.1")),
    _echo(mac=pkt.BROADCAST), _echo(mac=bytes.fromhex("0200000000bb")),
    _with_options(_echo(), b"\x94\x04\x00\x00"),
    pkt.arp_request(PEER_MAC, PEER_IP, IP4), pkt.arp_reply(PEER_MAC, PEER_IP, MAC, IP4),
    pkt.arp_request(PEER_MAC, PEER_IP, pkt.ip4("10.0.0.3")),
    pkt.ethernet(pkt.BROADCAST, PEER_MAC, pkt.ETH_P_IPV6, bytes(40)),
]  # fmt: skip


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """A frame answered or not, then perhaps tagged, padded, mangled or cut short."""
    f = draw(st.sampled_from(BASES))
    if draw(st.integers(0, 5)) == 0:
        f = f[:12] + b"\x81\x00\x00\x07" + f[12:]
    if draw(st.booleans()):
        f += bytes(draw(st.integers(0, 30)))  # Ethernet padding
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, min(len(f), 60) - 1))
        f = f[:at] + bytes([draw(st.integers(0, 255))]) + f[at + 1 :]
    if draw(st.integers(0, 4)) == 0:
        f = f[: draw(st.integers(0, len(f)))]
    return f


@pytest.mark.slow
@pytest.mark.parametrize("small_burst", PATHS.values(), ids=PATHS.keys())
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames(), min_size=1, max_size=24), st.booleans(), st.booleans(), st.booleans())
def test_answer_matches_the_scalar_reference(
    small_burst: int, batch: list[bytes], check_mac: bool, second: bool, ip_mode: bool
) -> None:
    """Verdict and whole reply of every frame are the plain-Python reference's, whose
    checksums are computed from scratch; on either path."""
    addresses = [IP4, pkt.ip4("10.9.0.1")] if second else [IP4]
    if ip_mode:
        batch = [f[14:] for f in batch]
    a = ArpIcmpAnswerer(
        MAC, addresses, ethernet=not ip_mode, check_mac=check_mac, small_burst=small_burst
    )
    res, replies = answer(batch, a)
    whole = a.answer_frames([np.frombuffer(f, np.uint8) for f in batch])  # no header rows
    whole_replies = {i: whole.reply(j, batch[i]) for j, i in enumerate(whole.answered.tolist())}
    for i, f in enumerate(batch):
        want = reference(f, MAC, addresses, ethernet=not ip_mode, check_mac=check_mac)
        assert (Verdict(res.verdict[i]), replies.get(i)) == want, (i, f.hex())
        assert (Verdict(whole.verdict[i]), whole_replies.get(i)) == want, (i, f.hex())
        verdict, head, length = a.answer_one(f)
        reply = None if head is None else head + f[len(head) : length]
        assert (verdict, reply) == want, (i, f.hex())


def _same(one: Answers, other: Answers) -> None:
    for name in ("verdict", "answered", "head", "head_length", "length"):
        mine, theirs = getattr(one, name), getattr(other, name)
        assert (mine.dtype, mine.shape) == (theirs.dtype, theirs.shape), name
        assert np.array_equal(mine, theirs), name


def _copied(f: Fields) -> dict[str, np.ndarray]:
    return {name: np.array(getattr(f, name)) for name in Fields.__dataclass_fields__}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(frames(), mangled()), max_size=SMALL_BURST + 4),
    st.booleans(), st.booleans(), st.booleans(),
)  # fmt: skip
@pytest.mark.slow
def test_both_paths_give_the_same_answers(
    batch: list[bytes], check_mac: bool, ip_mode: bool, whole: bool
) -> None:
    """Frame by frame and vectorized, the answers are the same arrays, byte for byte: heads
    whole (an echo head's bytes past its length are the request's, junk past a short frame
    included), and the classification read from ``fields``."""
    if ip_mode:
        batch = [f[14:] for f in batch]
    hdr, lengths = _rows(batch)
    packet = (lambda i: batch[i]) if whole else None
    vectorized, each = (
        ArpIcmpAnswerer(
            MAC, [IP4], ethernet=not ip_mode, check_mac=check_mac, small_burst=small_burst
        ).answer(hdr, lengths, packet)
        for small_burst in PATHS.values()
    )
    _same(vectorized, each)
    want = _copied(vectorized.fields)  # (views of the rows, some of them)
    hdr[:] = 0  # the rows are the caller's again: a small burst is classified from a copy
    got = _copied(each.fields)
    for name, value in want.items():
        assert (value.dtype, value.tolist()) == (got[name].dtype, got[name].tolist()), name


def test_answer_frames_copies_what_it_keeps() -> None:
    """Answers of frames given as views stay right after the buffers are reused."""
    frames = [_echo(1), pkt.arp_request(PEER_MAC, PEER_IP, IP4), b"\x01"]
    buffers = [np.frombuffer(bytearray(f), np.uint8) for f in frames]
    res = ArpIcmpAnswerer(MAC, [IP4]).answer_frames(buffers)
    for b in buffers:
        b[:] = 0
    assert res.verdict.tolist() == [Verdict.ANSWER_ECHO, Verdict.ANSWER_ARP, Verdict.MALFORMED]
    assert res.reply(1, frames[1]) == pkt.arp_reply(MAC, IP4, PEER_MAC, PEER_IP)
    assert res.fields.length.tolist() == [len(f) for f in frames]
    assert res.fields.icmp_seq.tolist()[0] == 1 and res.fields.arp_op.tolist()[1] == 1


def test_small_bursts_take_the_small_path_by_default() -> None:
    """The default ``small_burst`` and its edge: bursts up to it and past it agree."""
    a = ArpIcmpAnswerer(MAC, [IP4])
    assert a.small_burst == SMALL_BURST > 0
    burst = [_echo(seq) for seq in range(SMALL_BURST + 1)]
    for n in (1, SMALL_BURST, SMALL_BURST + 1):
        res, replies = answer(burst[:n], a)
        assert res.verdict.tolist() == [Verdict.ANSWER_ECHO] * n
        assert all(reply == rechecked(reply) for reply in replies.values())
