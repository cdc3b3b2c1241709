"""``set interface mtu [packet|ip4] <value> <interface>`` on a real memifd with real memif
peers: VPP's syntax and ``show interface`` MTU column, range checks in one line, and frames
longer than the output interface's MTU dropped there under a named error and counted in
the receiving interface's drops."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import bridge_memifd, bridge_peers
from helpers import wait_until as _wait

pytestmark = pytest.mark.slow

BCAST = bytes.fromhex("ffffffffffff02000000000a")


def _frame(ethertype: str, length: int) -> bytes:
    return BCAST + bytes.fromhex(ethertype) + bytes(length - 14)


def test_set_interface_mtu_shown_and_checked(tmp_path: Path) -> None:
    d = bridge_memifd(tmp_path)
    try:
        text = d.ok("show interface memif1/0")["output"].splitlines()
        assert "MTU (L3/IP4/IP6/MPLS)" in text[0]
        assert text[1].split()[:4] == ["memif1/0", "1", "up", "9000/0/0/0"]  # VPP's default
        d.ok("set interface mtu 1500 memif1/0")  # VPP's hardware MTU: the packet MTU here
        d.ok("set interface mtu ip4 1400 memif1/0")
        assert d.ok("show interface memif1/0")["output"].splitlines()[1].split()[3] == (
            "1500/1400/0/0"
        )
        data = d.interfaces()["memif1/0"]
        assert (data["mtu"], data["mtu_ip4"]) == (1500, 1400)
        d.ok("set interface mtu packet 9000 memif1/0")
        assert d.interfaces()["memif1/0"]["mtu"] == 9000
        # the range is what the switch's buffers carry (--buffers' data size, 10240 bytes)
        for bad in ("63", "10227", "99999999999"):
            err = d.fails(f"set interface mtu {bad} memif1/0")
            assert err.count("\n") == 0 and "Traceback" not in err, err
        assert d.fails("set interface mtu 63 memif1/0") == (
            "mtu 63 out of range for memif1/0: expected 64..10226"
        )
        d.ok("set interface mtu 10226 memif1/0")
        assert d.fails("set interface mtu 1500 memif9/9").startswith("unknown interface")
        assert d.fails("set interface mtu ip6 1500 memif1/0") == (
            "bad mtu 'ip6' for 'set interface mtu': expected packet, ip4 or <value>"
        )
        assert d.fails("set interface mtu 1500") == "missing interface name for 'set interface mtu'"
    finally:
        d.stop()


def test_frames_over_the_output_mtu_are_dropped_and_counted(tmp_path: Path) -> None:
    d = bridge_memifd(tmp_path)
    try:
        d.ok("set interface mtu packet 1500 memif2/0")
        with bridge_peers(d, tmp_path) as (sa, sb, a, b):
            got: list[bytes] = []

            def receive(n: int) -> bool:
                sa.poll(0)
                sb.poll(0)
                got.extend(b.recv())
                return len(got) >= n

            # 1514 bytes: exactly the 1500-byte MTU plus the Ethernet header; 1515 is over
            assert a.send([_frame("88b5", 1514), _frame("88b5", 1515)]) == 2
            _wait(lambda: receive(1), "the frame within the MTU")
            _wait(lambda: d.interfaces()["memif1/0"]["drops"] == 1, "the drop counted")
            assert [len(f) for f in got] == [1514]
            errors = {(e["node"], e["error"]): e["count"] for e in d.ok("show errors")["data"]}
            assert errors[("memif2/0-output", "mtu-exceeded")] == 1
            assert "MTU" in d.ok("show errors")["output"]
            assert d.interfaces()["memif2/0"]["tx_packets"] == 1

            # IPv4's own MTU: an IPv4 frame over it goes, another ethertype of that size passes
            d.ok("set interface mtu ip4 1000 memif2/0")
            got.clear()
            assert a.send([_frame("0800", 1015), _frame("88b5", 1015), _frame("0800", 1014)]) == 3
            _wait(lambda: receive(2), "the two frames within their MTU")
            assert [(len(f), f[12:14].hex()) for f in got] == [(1015, "88b5"), (1014, "0800")]
            _wait(lambda: d.interfaces()["memif1/0"]["drops"] == 2, "the IPv4 drop")
            errors = {(e["node"], e["error"]): e["count"] for e in d.ok("show errors")["data"]}
            assert errors[("memif2/0-output", "mtu-exceeded")] == 2
            # the other direction is not limited: memif1/0 keeps its 9000
            got_a: list[bytes] = []
            assert b.send([_frame("88b5", 9014)]) == 1
            _wait(lambda: sb.poll(0) or sa.poll(0) or got_a.extend(a.recv()) or got_a, "9000")
            assert len(got_a[0]) == 9014
    finally:
        d.stop()
