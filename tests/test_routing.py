"""memifd as a router between network namespaces, with the real kernel on both sides.

Two namespaces on different subnets, one behind a tap port of memifd and the other behind
a tap or an AF_PACKET host interface on a veth pair, each with its default route via
memifd: ``ping`` both ways and a TCP transfer (bytes checked both ways) cross it routed;
a packet whose TTL runs out is answered with ICMP time exceeded (``ping -t 1`` and a raw
socket probe); a route withdrawn while a ping runs makes the next packets unreachable
(``show errors``).  The kernel objects and fixtures are test_host_interfaces'.
Needs root and network namespaces (skipped without root; under ``CI=true`` a missing
kernel feature fails).
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time

import pytest
import test_host_interfaces as hi
from memifd_probe import error_count
from test_host_interfaces import TCP_CLIENT, TCP_SERVER, Host, _run, _unavailable, ping

# test_host_interfaces' fixtures, here by name (root, netns, taps and veths cleaned up)
kernel_support, host, background = hi.kernel_support, hi.host, hi.background
ping_tool, start = hi.ping_tool, hi.start

pytestmark = pytest.mark.slow

NET1, NET2, FAR = "10.81.1", "10.81.2", "10.81.3"
HOST_MAC = "02:fe:00:00:81:02"

#: send one UDP datagram with TTL 1 and print the ICMP message that comes back
TTL_PROBE = textwrap.dedent(
    """
    import socket, sys
    dst = sys.argv[1]
    icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    icmp.settimeout(5)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
    udp.sendto(b"ttl probe", (dst, 33434))
    while True:
        got, (src, _) = icmp.recvfrom(2048)
        msg = got[(got[0] & 15) * 4 :]
        quoted = msg[8:]
        if quoted[16:20] == socket.inet_aton(dst):
            print(src, msg[0], msg[1])
            break
    """
)


@pytest.fixture
def iputils(ping_tool: str | None) -> str:
    """iputils ping (the routed tests need its -t and its ICMP error lines)."""
    if ping_tool is None:
        _unavailable("iputils ping")
    assert ping_tool is not None
    return ping_tool


def routed_config(host: Host, side: str) -> tuple[list[str], str, str, str]:
    """(startup lines, ns1, ns2, the second interface's name): ns1 behind tap0 on NET1,
    ns2 behind ``side`` (tap1 or an AF_PACKET veth) on NET2; memifd is .1 on both."""
    ns1, ns2 = host.netns(), host.netns()
    lines = [
        f"create tap id 0 host-if-name {host.name('mrt')} host-ns {ns1} host-ip4-addr {NET1}.2/24",
        f"set interface ip address tap0 {NET1}.1/24",
        "set interface state tap0 up",
    ]
    if side == "tap":
        second = "tap1"
        lines.append(
            f"create tap id 1 host-if-name {host.name('mrt')} host-ns {ns2} "
            f"host-ip4-addr {NET2}.2/24 host-mac-addr {HOST_MAC}"
        )
    else:
        veth = host.veth(ns2, f"{NET2}.2/24")
        second = f"host-{veth}"
        lines.append(f"create host-interface name {veth}")
    lines += [f"set interface ip address {second} {NET2}.1/24", f"set interface state {second} up"]
    return lines, ns1, ns2, second


def default_routes(ns1: str, ns2: str) -> None:
    """Each namespace's default route via memifd (once memifd made the taps)."""
    for ns, net in ((ns1, NET1), (ns2, NET2)):
        _run("ip", "-n", ns, "route", "add", "default", "via", f"{net}.1")


@pytest.mark.parametrize("side", ["tap", "af_packet"])
def test_namespaces_on_two_subnets_ping_and_tcp_through_memifd(
    start, host: Host, background, iputils: str, side: str
) -> None:

    lines, ns1, ns2, second = routed_config(host, side)
    d = start(lines)
    default_routes(ns1, ns2)
    d.wait_up("tap0")
    d.wait_up(second)

    # the first packets to each host find its address unresolved: ip4-glean asks, and
    # the reply (to a request the switch sent) completes the route
    deadline = time.monotonic() + 20
    while {n["ip"] for n in d.ok("show ip neighbors")["data"]} != {f"{NET1}.2", f"{NET2}.2"}:
        assert time.monotonic() < deadline, d.ok("show ip neighbors")["output"]
        _run("ip", "netns", "exec", ns1, iputils, "-c", "1", "-W", "1", f"{NET2}.2", check=False)
    out = ping(ns1, f"{NET2}.2", 3, iputils)
    assert re.search(r"ttl=63", out), out  # one hop: the switch decremented the TTL
    ping(ns2, f"{NET1}.2", 3, iputils)
    ping(ns1, f"{NET2}.1", 2, iputils)  # the switch's far address: ip4-local

    fib = {r["prefix"]: r for r in d.ok("show ip fib")["data"]}
    assert fib[f"{NET1}.0/24"]["type"] == "glean" and fib[f"{NET1}.0/24"]["source"] == "connected"
    assert fib[f"{NET1}.1/32"]["type"] == "receive"
    host2 = fib[f"{NET2}.2/32"]
    assert (host2["type"], host2["source"], host2["interface"]) == ("neighbor", "adj", second)
    if side == "tap":
        assert host2["mac"] == HOST_MAC
    neighbors = d.ok("show ip neighbors")
    assert re.search(rf"\s{re.escape(NET2)}\.2\s+D\s", neighbors["output"]), neighbors["output"]

    size = 2 << 20
    server = background(
        "ip", "netns", "exec", ns2, sys.executable, "-c", TCP_SERVER, f"{NET2}.2", "5002"
    )
    assert server.stdout.readline().strip() == "listening", server.stderr.read()
    client = _run(
        "ip", "netns", "exec", ns1, sys.executable, "-c", TCP_CLIENT, f"{NET2}.2", "5002",
        str(size), timeout=120,
    )  # fmt: skip
    sent, echoed, n = client.stdout.split()
    out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert int(n) == size and sent == echoed == out.strip(), (sent, echoed, out)
    runtime = {r["name"]: r for r in d.ok("show runtime")["data"]["nodes"]}
    assert runtime["ip4-rewrite"]["vectors"] > 2 * size // 1500, runtime["ip4-rewrite"]

    # TTL 1: the switch answers time exceeded from its address on the receiving side
    probe = _run("ip", "netns", "exec", ns1, sys.executable, "-c", TTL_PROBE, f"{NET2}.2")
    assert probe.stdout.split() == [f"{NET1}.1", "11", "0"], probe.stdout
    res = _run("ip", "netns", "exec", ns1, iputils, "-c", "1", "-t", "1", "-W", "3",
               f"{NET2}.2", check=False)  # fmt: skip
    assert re.search(rf"From {re.escape(NET1)}\.1 .*Time to live exceeded", res.stdout), res
    assert error_count(d, "ip4-icmp-error", "ttl-expire-sent") >= 1
    assert d.stop() == 0


def test_a_route_withdrawn_mid_traffic_drops_with_unreachable(
    start, host: Host, iputils: str
) -> None:

    lines, ns1, ns2, second = routed_config(host, "tap")
    d = start([*lines, f"ip route add {FAR}.0/24 via {NET2}.2 {second}"])
    default_routes(ns1, ns2)
    _run("ip", "-n", ns2, "addr", "add", f"{FAR}.2/32", "dev", "lo")
    d.wait_up("tap0")
    d.wait_up(second)
    assert d.ok(f"show ip fib {FAR}.9")["data"][0]["next_hop"] == f"{NET2}.2"
    deadline = time.monotonic() + 20
    probe = ["ip", "netns", "exec", ns1, iputils, "-c", "1", "-W", "1", f"{FAR}.2"]
    while _run(*probe, check=False).returncode != 0:
        assert time.monotonic() < deadline, d.ok("show ip fib")["output"]
    before = error_count(d, "ip4-icmp-error", "dest-unreach-sent")
    pinger = subprocess.Popen(
        ["ip", "netns", "exec", ns1, iputils, "-i", "0.05", "-c", "200", "-W", "1", f"{FAR}.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while d.interfaces()[second]["tx_packets"] < 20:
            assert time.monotonic() < deadline, "no traffic through the route"
            time.sleep(0.05)
        d.ok(f"ip route del {FAR}.0/24")
        deadline = time.monotonic() + 10
        while error_count(d, "ip4-icmp-error", "dest-unreach-sent") < before + 5:
            assert time.monotonic() < deadline, d.ok("show errors")["output"]
            time.sleep(0.05)
    finally:
        pinger.kill()
        out, _ = pinger.communicate()
    assert "Destination Net Unreachable" in out or "Unreachable" in out, out
    assert re.search(r"bytes from", out), out  # it went through before the withdrawal
    assert d.ok(f"show ip fib {FAR}.9")["output"] == "no route"
    assert d.stop() == 0
