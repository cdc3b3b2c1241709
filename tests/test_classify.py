"""memif.classify, the vectorized header classifier, against packet.parse, its scalar reference.

Random frames (ARP, IPv4 with options, fragments, ICMP/TCP/UDP, IPv6, other ethertypes,
behind zero to two VLAN tags), then truncated, with a random IHL or with random header bytes:
for every frame the classifier's arrays say what ``packet.parse`` (or ``parse_ip`` in ip mode)
says, whatever bytes follow the frame in its row.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memif import classify as cl
from memif import packet as pkt


def _ip4(draw: st.DrawFn) -> bytes:
    proto = draw(st.sampled_from([pkt.PROTO_ICMP, pkt.PROTO_TCP, pkt.PROTO_UDP, 47]))
    options = draw(st.binary(max_size=40))
    options += bytes(-len(options) % 4)
    ihl = draw(st.sampled_from([5 + len(options) // 4, *range(16)]))
    frag = draw(st.sampled_from([0, 0x4000, 0x2000, 0x2001, 0x0001, 0x1FFF]))
    if proto == pkt.PROTO_ICMP:
        kind = draw(st.sampled_from([pkt.ICMP_ECHO_REQUEST, pkt.ICMP_ECHO_REPLY, 3]))
        payload = pkt.icmp_echo(kind, draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFF)),
                                draw(st.binary(max_size=64)))  # fmt: skip
    else:
        payload = draw(st.binary(max_size=64))
    total = 20 + len(options) + len(payload)
    total = draw(st.sampled_from([total, total, draw(st.integers(0, 0xFFFF))]))
    ttl, src = draw(st.integers(0, 255)), draw(st.binary(min_size=4, max_size=4))
    hdr = pkt.IPV4_HDR.pack(0x40 | ihl, 0, total, 7, frag, ttl, proto, 0, src, pkt.ip4("10.0.0.1"))
    return hdr + options + payload


@st.composite
def frames(draw: st.DrawFn, ethernet: bool = True) -> bytes:
    """An Ethernet frame (or a bare IP packet), possibly malformed."""
    kind = draw(st.sampled_from(["arp", "ip4", "ip4", "ip6", "other"] if ethernet else ["ip4"]))
    if kind == "arp":
        body = pkt.arp(draw(st.integers(0, 3)), bytes(6), draw(st.binary(min_size=4, max_size=4)),
                       bytes(6), draw(st.binary(min_size=4, max_size=4)))  # fmt: skip
        if draw(st.booleans()):  # another hardware or protocol type or size
            at = draw(st.integers(0, 5))
            body = body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1 :]
        et = pkt.ETH_P_ARP
    elif kind == "ip4":
        body, et = _ip4(draw), pkt.ETH_P_IP
    elif kind == "ip6":
        body, et = draw(st.binary(min_size=0, max_size=80)), pkt.ETH_P_IPV6
    else:
        body, et = draw(st.binary(max_size=40)), draw(st.integers(0x600, 0xFFFF))
    if not ethernet:
        frame = body
    else:
        tags = b"".join(
            struct.pack("!HH", draw(st.sampled_from(pkt.VLAN_TPIDS)), draw(st.integers(0, 0xFFFF)))
            for _ in range(draw(st.integers(0, 2)))
        )
        frame = bytes(range(12)) + tags + struct.pack("!H", et) + body
    if draw(st.integers(0, 3)) == 0:  # random bytes somewhere in the first 64
        at = draw(st.integers(0, 63))
        frame = frame[:at] + draw(st.binary(min_size=1, max_size=4)) + frame[at + 4 :]
    if draw(st.integers(0, 2)) == 0:  # truncated
        frame = frame[: draw(st.integers(0, len(frame)))]
    return frame


def _rows(batch: list[bytes], seed: int) -> np.ndarray:
    """Header rows, garbage after each frame (the classifier must not read it)."""
    rng = np.random.default_rng(seed)
    hdr = rng.integers(0, 256, (len(batch), cl.HEADER_BYTES), np.uint8)
    for i, f in enumerate(batch):
        n = min(len(f), cl.HEADER_BYTES)
        hdr[i, :n] = np.frombuffer(f[:n], np.uint8)
    return hdr


def _expected(frame: bytes, ethernet: bool) -> dict[str, object]:
    """What the classifier must say of ``frame``, from the scalar reference."""
    if ethernet:
        p = pkt.parse(frame)
        l3 = pkt.ETH_HLEN + 4 * len(p.vlans) if p else pkt.ETH_HLEN
        et = p.ethertype if p else cl.RUNT
    else:
        p = pkt.parse_ip(frame)
        l3 = 0
        version = frame[0] >> 4 if frame else -1
        et = {4: pkt.ETH_P_IP, 6: pkt.ETH_P_IPV6, -1: cl.RUNT}.get(version, cl.NOT_IP)
    out: dict[str, object] = {"ethertype": et, "vlan": bool(p and p.vlans)}
    if ethernet and len(frame) >= 12:
        out["mac"] = frame[:12]
    arp = p.arp if p else None
    out["is_arp_ip"] = arp is not None
    if arp is not None:
        out["arp_op"], out["arp_ip"] = arp[0], arp[2] + arp[4]
    ip = p is not None and p.ip_src is not None
    out["is_ip4"] = ip
    if p is not None and p.ip_src is not None and p.ip_dst is not None:
        assert p.ihl is not None
        out |= {
            "ip4": p.ip_src + p.ip_dst, "ihl": p.ihl, "ip4_total": p.total, "ip4_frag": p.frag,
            "ttl": p.ttl, "l4proto": p.proto, "l4": l3 + p.ihl,
            "sport": -1 if p.sport is None else p.sport,
            "dport": -1 if p.dport is None else p.dport,
        }  # fmt: skip
        icmp = p.proto == pkt.PROTO_ICMP and not (p.frag or 0) & 0x1FFF
        at = l3 + p.ihl
        head = frame[at : at + 2] if icmp else b""
        echo = pkt.parse_icmp_echo(frame[at:]) if icmp else None
        out["icmp_type"] = head[0] if len(head) == 2 else -1
        out["icmp_code"] = head[1] if len(head) == 2 else -1
        out["icmp_ident"] = echo[2] if echo else -1
        out["icmp_seq"] = echo[3] if echo else -1
    else:
        out |= {"ihl": 0, "ip4_total": -1, "ip4_frag": -1, "ttl": -1, "icmp_type": -1}
        out |= {"icmp_code": -1, "icmp_ident": -1, "icmp_seq": -1}
        if et != pkt.ETH_P_IPV6:  # (IPv6 has no scalar reference here)
            out |= {"l4proto": -1, "sport": -1, "dport": -1}
    return out


def _check(batch: list[bytes], ethernet: bool, seed: int = 0) -> None:
    f = cl.classify(_rows(batch, seed), np.array([len(x) for x in batch]), ethernet)
    for i, frame in enumerate(batch):
        for name, want in _expected(frame, ethernet).items():
            got = getattr(f, name)[i]
            got = got.tobytes() if isinstance(got, np.ndarray) else got.item()
            assert got == want, (name, i, frame.hex())


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames(), min_size=1, max_size=40), st.integers(0, 2**32))
def test_classify_matches_parse(batch: list[bytes], seed: int) -> None:
    _check(batch, ethernet=True, seed=seed)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames(ethernet=False), min_size=1, max_size=40), st.integers(0, 2**32))
def test_classify_ip_mode_matches_parse_ip(batch: list[bytes], seed: int) -> None:
    _check(batch, ethernet=False, seed=seed)


def test_classify_known_frames() -> None:
    """Hand-built cases, each named: the property test's corners, explicitly."""
    me, you = pkt.ip4("10.0.0.1"), pkt.ip4("10.0.0.2")
    echo = pkt.ipv4(you, me, pkt.PROTO_ICMP, pkt.icmp_echo(8, 0x1234, 9, b"abc"))
    udp = pkt.ipv4(you, me, pkt.PROTO_UDP, struct.pack("!HHHH", 53, 1053, 8, 0))
    cases = {
        "echo": pkt.ethernet(pkt.BROADCAST, bytes(6), pkt.ETH_P_IP, echo),
        "qinq udp": bytes(12) + struct.pack("!HHHH", pkt.ETH_P_8021AD, 5, pkt.ETH_P_8021Q, 6)
        + struct.pack("!H", pkt.ETH_P_IP) + udp,
        "ihl 4": pkt.ethernet(bytes(6), bytes(6), pkt.ETH_P_IP, bytes([0x44]) + echo[1:]),
        "later fragment": pkt.ethernet(bytes(6), bytes(6), pkt.ETH_P_IP,
                                       udp[:6] + b"\x00\x10" + udp[8:]),
        "runt": b"\x01\x02\x03",
        "arp": pkt.arp_request(bytes(6), you, me),
    }  # fmt: skip
    batch = list(cases.values())
    f = cl.classify(_rows(batch, 1), np.array([len(x) for x in batch]))
    assert f.category.tolist() == [cl.ICMP, cl.UDP4, cl.IP4_OTHER, cl.UDP4, cl.OTHER, cl.ARP]
    assert (f.icmp_type[0], f.icmp_ident[0], f.icmp_seq[0]) == (8, 0x1234, 9)
    assert f.vlan[1] and f.l3[1] == 22 and (f.sport[1], f.dport[1]) == (53, 1053)
    assert not f.is_ip4[2] and f.l4proto[2] == -1
    assert f.is_ip4[3] and f.sport[3] == -1 and f.ip4_frag[3] == 0x10
    assert f.ethertype[4] == cl.RUNT and not f.has_mac[4]
    assert f.is_arp_ip[5] and f.arp_op[5] == pkt.ARP_REQUEST and f.arp_ip[5].tobytes() == you + me
    _check(batch, ethernet=True)


def test_classify_refuses_narrow_rows() -> None:
    with pytest.raises(ValueError, match="at least 42"):
        cl.classify(np.zeros((1, 20), np.uint8), np.array([20]))
