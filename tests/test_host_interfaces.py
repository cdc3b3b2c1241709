"""Host interfaces of memifd: tap devices and AF_PACKET host interfaces, with the real kernel.

Every test builds its own network namespaces (``ip netns``), tap devices and veth pairs,
names unique per run, and removes them in finalizers, on failure too.  The daemon is a
real ``memifd`` process configured by a startup file; traffic comes from real tools run
inside the namespaces with ``ip netns exec``: ``ping`` (iputils, or a raw-socket ICMP
pinger in Python when ping is not installed) and TCP over Python sockets.

Needs root, ``/dev/net/tun`` (created with mknod when missing) and network namespaces:
without root those tests are skipped; without kernel support they are skipped, or fail
when ``CI`` is ``true``.  The testpmd test needs DPDK's testpmd (scripts/setup.sh installs
it, as for the interop tests).  The offload helpers (finishing checksums, GSO segmentation) are
also checked in-process against scapy, without root.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator

import pytest
from helpers import ENV, Memifd

import memif
from memif import packet as pkt
from memif.testing import unique_name
from memif.tools.testpmd import MemifPort, Testpmd

pytestmark = pytest.mark.slow  # see the slow marker in pyproject.toml

CI = os.environ.get("CI") == "true"
RUN = os.urandom(3).hex()  # in every kernel object's name: no clash with other runs
MAC_R = "02:00:00:00:02:02"  # the memif responder's
MAC_T = "02:00:00:00:03:03"  # testpmd's


def _unavailable(reason: str) -> None:
    if CI:
        pytest.fail(f"host interface tests need {reason} under CI", pytrace=False)
    pytest.skip(f"host interface tests need {reason}")


def _run(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {res.returncode}: {res.stderr.strip()}")
    return res


def _apt_install(package: str) -> bool:
    """Install a Debian package when root with apt-get; True if it worked."""
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", package]):
        if subprocess.run(argv, env=env, capture_output=True, check=False).returncode:
            return False
    return True


@pytest.fixture(scope="module")
def kernel_support() -> None:
    """Root, iproute2, /dev/net/tun and network namespaces, or skip (fail under CI)."""
    if os.geteuid() != 0:
        pytest.skip("host interface tests need root (network namespaces, tap, veth)")
    if shutil.which("ip") is None and not _apt_install("iproute2"):
        _unavailable("the ip command (iproute2)")
    tun = "/dev/net/tun"
    if not os.path.exists(tun):
        try:
            os.makedirs("/dev/net", exist_ok=True)
            os.mknod(tun, 0o666 | stat.S_IFCHR, os.makedev(10, 200))
        except OSError as exc:
            _unavailable(f"{tun} (mknod failed: {exc.strerror})")
    try:
        fd = os.open(tun, os.O_RDWR)
        os.close(fd)
    except OSError as exc:
        _unavailable(f"a working {tun} ({exc.strerror}; modprobe tun)")
    probe = f"mhprobe{RUN}"
    res = _run("ip", "netns", "add", probe, check=False)
    if res.returncode != 0:
        _unavailable(f"network namespaces (ip netns add: {res.stderr.strip()})")
    _run("ip", "netns", "del", probe, check=False)


# --------------------------------------------------------------------------- kernel objects
class Host:
    """Network namespaces and veth pairs made by one test; :meth:`cleanup` removes them."""

    def __init__(self) -> None:
        self.namespaces: list[str] = []
        self.links: list[str] = []
        self._n = 0

    def name(self, prefix: str) -> str:
        """A Linux-safe unique name (at most 15 characters)."""
        self._n += 1
        return f"{prefix}{RUN}{self._n}"[:15]

    def netns(self) -> str:
        ns = self.name("mhns")
        _run("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def veth(self, ns: str, address: str) -> str:
        """A veth pair: one end in ``ns`` with ``address``, up; returns the root-side name."""
        outside, inside = self.name("mhv"), self.name("mhn")
        _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside, "netns", ns)
        self.links.append(outside)
        _run("ip", "-n", ns, "addr", "add", address, "dev", inside)
        _run("ip", "-n", ns, "link", "set", inside, "up")
        return outside

    def exists(self, ifname: str, ns: str | None = None) -> bool:
        where = ["-n", ns] if ns else []
        return _run("ip", *where, "link", "show", ifname, check=False).returncode == 0

    def cleanup(self) -> None:
        for link in self.links:
            _run("ip", "link", "del", link, check=False)
        for ns in self.namespaces:
            _run("ip", "netns", "del", ns, check=False)


@pytest.fixture
def host(kernel_support: None) -> Iterator[Host]:
    h = Host()
    try:
        yield h
    finally:
        h.cleanup()


# --------------------------------------------------------------------------- the daemon
@pytest.fixture
def start(start) -> Callable[[list[str]], Memifd]:
    """conftest's ``start`` with 4096 buffers, memifd's stdout discarded."""
    return functools.partial(start, buffers=4096, stdout=subprocess.DEVNULL)


@pytest.fixture
def background() -> Iterator[Callable[..., subprocess.Popen]]:
    """Start helper processes (responders, servers); every one is killed at the end."""
    procs: list[subprocess.Popen] = []

    def _start(*argv: str) -> subprocess.Popen:
        p = subprocess.Popen(
            argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        procs.append(p)
        return p

    yield _start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate()


# --------------------------------------------------------------------------- ping
PINGER = textwrap.dedent(
    """
    import os, socket, struct, sys, time
    dst, count = sys.argv[1], int(sys.argv[2])

    def csum(b):
        if len(b) % 2:
            b += b"\\0"
        s = sum(struct.unpack(f"!{len(b) // 2}H", b))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        return ~s & 0xFFFF

    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident, ok = os.getpid() & 0xFFFF, 0
    for seq in range(1, count + 1):
        data = struct.pack("!d", time.time()) + bytes(range(48))
        head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        msg = struct.pack("!BBHHH", 8, 0, csum(head + data), ident, seq) + data
        t0 = time.monotonic()
        s.sendto(msg, (dst, 0))
        while (left := t0 + 3 - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                got, addr = s.recvfrom(4096)
            except TimeoutError:
                break
            icmp = got[(got[0] & 15) * 4 :]
            if (addr[0], icmp[0], icmp[4:8], icmp[8:]) == (dst, 0, msg[4:8], data):
                assert csum(icmp) == 0, "bad ICMP checksum in the reply"
                ms = (time.monotonic() - t0) * 1000
                print(f"64 bytes from {dst}: icmp_seq={seq} ttl={got[8]} time={ms:.2f} ms")
                ok += 1
                break
        time.sleep(0.2)
    print(f"{count} packets transmitted, {ok} received")
    sys.exit(0 if ok == count else 1)
    """
)


@pytest.fixture(scope="module")
def ping_tool() -> str | None:
    """iputils ping (installed when missing, if possible); None: use the Python pinger."""
    if shutil.which("ping") is None:
        _apt_install("iputils-ping")
    return shutil.which("ping")


def ping(ns: str, address: str, count: int, ping_tool: str | None) -> str:
    """Ping ``address`` from namespace ``ns``; every echo must come back."""
    if ping_tool:
        argv = [ping_tool, "-c", str(count), "-i", "0.2", "-W", "3", address]
    else:
        argv = [sys.executable, "-c", PINGER, address, str(count)]
    res = _run("ip", "netns", "exec", ns, *argv, check=False, timeout=60)
    assert res.returncode == 0, f"ping {address} from {ns} failed:\n{res.stdout}{res.stderr}"
    assert f"{count} received" in res.stdout, res.stdout
    return res.stdout


def tap_bridge_config(sock: str, tap_if: str, ns: str, extra: list[str] = ()) -> list[str]:
    """memif1/0 (master on ``sock``) and tap0 (in ``ns``, 10.77.0.1/24) in bridge domain 1."""
    return [
        f"create memif socket id 1 filename {sock}",
        "create interface memif id 0 socket-id 1 master",
        f"create tap id 0 host-if-name {tap_if} host-ns {ns} host-ip4-addr 10.77.0.1/24",
        "create bridge-domain 1",
        "set interface l2 bridge memif1/0 1",
        "set interface l2 bridge tap0 1",
        "set interface state memif1/0 up",
        "set interface state tap0 up",
        *extra,
    ]


# --------------------------------------------------------------------------- tests
def test_ping_from_namespace_through_tap_to_memif_responder(
    start, host: Host, background, ping_tool
) -> None:
    ns = host.netns()
    tap_if = host.name("mht")
    sock = unique_name("memifd-tap")
    span_sock = unique_name("memifd-span")
    d = start(
        tap_bridge_config(
            sock,
            tap_if,
            ns,
            [
                f"create memif socket id 2 filename {span_sock}",
                "create interface memif id 0 socket-id 2 master",
                "set interface state memif2/0 up",
                "set interface span tap0 destination memif2/0 both",
                "trace add tap-input 4",
            ],
        )
    )
    assert host.exists(tap_if, ns) and not host.exists(tap_if)
    background(
        sys.executable,
        *("-m", "memif.cli", "responder", "--socket", sock, "--ip", "10.77.0.2"),
        *("--mac", MAC_R),
    )
    mirror = memif.Socket(span_sock, app_name="span-peer")
    try:
        peer = mirror.create_interface(role="client", id=0, reconnect_interval=0.1)
        end = time.monotonic() + 10
        while not peer.connected:
            assert time.monotonic() < end, "SPAN peer did not connect"
            mirror.poll(0.01)
        d.wait_up("memif1/0")
        d.wait_up("memif2/0")

        out = ping(ns, "10.77.0.2", 3, ping_tool)
        assert re.search(r"icmp_seq=3 .*time=", out), out

        ifs = d.interfaces()
        tap, mem = ifs["tap0"], ifs["memif1/0"]
        assert tap["state"] == "up" and tap["mode"] == "bridge"
        assert tap["rx_packets"] >= 4 and tap["tx_packets"] >= 4  # ARP + 3 echoes each way
        assert mem["tx_packets"] >= 4 and mem["rx_packets"] >= 4
        assert tap["tx_errors"] == 0 and mem["tx_errors"] == 0

        # SPAN: memif2/0 got copies of what tap0 received (requests) and sent (replies)
        kinds = set()
        end = time.monotonic() + 5
        while not {pkt.ICMP_ECHO_REQUEST, pkt.ICMP_ECHO_REPLY} <= kinds:
            assert time.monotonic() < end, f"SPAN copies missing: {kinds}"
            mirror.poll(0.01)
            for f in peer.recv():
                p = pkt.parse(f)
                if (
                    p is not None
                    and p.l4
                    and p.ip_dst in (pkt.ip4("10.77.0.1"), pkt.ip4("10.77.0.2"))
                ):
                    echo = pkt.parse_icmp_echo(p.l4)
                    if echo:
                        kinds.add(echo[0])
    finally:
        mirror.close()

    taps = d.ok("show tap")["data"]
    assert len(taps) == 1
    t = taps[0]
    assert (t["name"], t["host_if_name"], t["host_ns"], t["host_ip4"]) == (
        "tap0",
        tap_if,
        ns,
        "10.77.0.1/24",
    )
    assert t["host_carrier"] is True and t["kind"] == "tap"
    hw = {h["name"]: h for h in d.ok("show hardware-interfaces")["data"]}
    assert hw["tap0"]["hardware"] == "tap" and hw["tap0"]["host_if_name"] == tap_if
    assert hw["memif1/0"]["hardware"] == "memif" and hw["memif1/0"]["role"] == "master"
    assert f"tap: host-if-name {tap_if}" in d.ok("show hardware-interfaces tap0")["output"]
    trace = d.ok("show trace")["output"]
    assert "tap-input" in trace and "tap: tap0 sw_if_index" in trace, trace
    assert "l2-fwd" in trace or "l2-flood" in trace, trace
    runtime = {n["name"]: n for n in d.ok("show runtime")["data"]["nodes"]}
    assert runtime["tap-input"]["vectors"] >= 4 and runtime["tap0-output"]["vectors"] >= 4

    # admin-down: no carrier on the host side, and the ping fails
    d.ok("set interface state tap0 down")
    link = _run("ip", "-n", ns, "link", "show", tap_if).stdout
    assert "NO-CARRIER" in link, link
    assert not d.ok("show tap tap0")["data"][0]["host_carrier"]
    d.ok("set interface state tap0 up")

    # L3 on a tap: the switch answers ARP and ping from the namespace, and pings it
    d.ok("set interface l3 tap0")
    d.ok("set interface ip address tap0 10.77.0.254/24")
    ping(ns, "10.77.0.254", 2, ping_tool)
    got = d.ok("ping 10.77.0.1 repeat 2 interval 0.1")["data"]
    assert (got["sent"], got["received"], got["interface"]) == (2, 2, "tap0"), got

    # wrong kinds and names are one-line errors
    assert "is not a memif interface" in d.fails("delete interface memif tap0")
    assert "is not a tap interface" in d.fails("delete tap memif1/0")
    assert "already exists" in d.fails(f"create tap id 0 host-if-name {host.name('mht')}")
    assert "does not exist" in d.fails(f"create tap id 5 host-ns {host.name('nons')}")
    assert "no Linux interface named" in d.fails("create host-interface name mhnosuch0")

    d.ok("delete tap tap0")
    assert "tap0" not in d.interfaces()
    assert not host.exists(tap_if, ns)
    assert d.stop() == 0


def test_ping_from_namespace_through_tap_to_testpmd_icmpecho(
    start, host: Host, testpmd_binary: str, ping_tool
) -> None:
    ns = host.netns()
    tap_if = host.name("mht")
    sock = unique_name("memifd-tpmd")
    d = start(tap_bridge_config(sock, tap_if, ns))
    port = MemifPort(role="client", id=0, socket=sock, mac=MAC_T)
    with Testpmd([port], forward_mode="icmpecho", binary=testpmd_binary) as tp:
        try:
            tp.wait_link_up()
            d.wait_up("memif1/0")
            tp.start()
            ping(ns, "10.77.0.9", 3, ping_tool)  # testpmd answers ARP for any address
            stats = tp.port_stats()
            assert stats.rx_packets >= 4 and stats.tx_packets >= 4, stats
            neigh = _run("ip", "-n", ns, "neigh", "show", "10.77.0.9").stdout
            assert MAC_T in neigh, neigh
            tp.stop()  # before the memif goes away: testpmd may crash otherwise
        finally:
            with contextlib.suppress(Exception):
                if tp.forwarding:
                    tp.stop()
    ifs = d.interfaces()
    assert ifs["tap0"]["rx_packets"] >= 4 and ifs["tap0"]["tx_packets"] >= 4
    assert d.stop() == 0


TCP_SERVER = textwrap.dedent(
    """
    import hashlib, socket, sys
    srv = socket.create_server((sys.argv[1], int(sys.argv[2])))
    print("listening", flush=True)
    conn, _ = srv.accept()
    digest = hashlib.sha256()
    while data := conn.recv(1 << 16):
        digest.update(data)
        conn.sendall(data)  # echo: the bytes cross the switch both ways
    conn.close()
    print(digest.hexdigest(), flush=True)
    """
)

TCP_CLIENT = textwrap.dedent(
    """
    import hashlib, os, socket, sys, threading
    addr, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    blob = os.urandom(size)
    conn = socket.create_connection((addr, port), timeout=60)

    def send():
        conn.sendall(blob)
        conn.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=send)
    t.start()
    back = hashlib.sha256()
    n = 0
    while data := conn.recv(1 << 16):
        back.update(data)
        n += len(data)
    t.join()
    print(hashlib.sha256(blob).hexdigest(), back.hexdigest(), n, flush=True)
    """
)


@pytest.mark.parametrize("wiring", ["bridge", "xconnect"])
def test_tcp_between_namespaces_over_two_host_interfaces(
    start, host: Host, background, wiring: str
) -> None:
    ns1, ns2 = host.netns(), host.netns()
    v1 = host.veth(ns1, "10.79.0.1/24")
    v2 = host.veth(ns2, "10.79.0.2/24")
    if wiring == "bridge":
        l2 = [
            "create bridge-domain 7",
            f"set interface l2 bridge host-{v1} 7",
            f"set interface l2 bridge host-{v2} 7",
        ]
    else:
        l2 = [
            f"set interface l2 xconnect host-{v1} host-{v2}",
            f"set interface l2 xconnect host-{v2} host-{v1}",
        ]
    d = start(
        [
            f"create host-interface name {v1}",
            f"create host-interface name {v2} hw-addr 02:fe:00:00:07:02",
            *l2,
            f"set interface state host-{v1} up",
            f"set interface state host-{v2} up",
            "trace add host-input 3",
        ]
    )
    hosts = d.ok("show packet-sockets")["data"]
    assert [h["linux_if"] for h in hosts] == [v1, v2]
    assert hosts[1]["mac"] == "02:fe:00:00:07:02" and hosts[0]["vnet_hdr"]
    hw = d.ok("show hardware-interfaces")["data"]
    assert [(h["name"], h["hardware"]) for h in hw] == [
        (f"host-{v1}", "af_packet"),
        (f"host-{v2}", "af_packet"),
    ]
    assert f"af_packet: linux interface {v1}" in d.ok("show hardware-interfaces")["output"]

    size = 4 << 20
    server = background(
        "ip", "netns", "exec", ns2, sys.executable, "-c", TCP_SERVER, "10.79.0.2", "5001"
    )
    assert server.stdout.readline().strip() == "listening", server.stderr.read()
    client = _run(
        "ip", "netns", "exec", ns1, sys.executable, "-c", TCP_CLIENT, "10.79.0.2", "5001",
        str(size), timeout=120,
    )  # fmt: skip
    sent, echoed, n = client.stdout.split()
    out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert int(n) == size
    assert sent == echoed == out.strip(), (sent, echoed, out)
    assert sent != hashlib.sha256(b"").hexdigest()

    ifs = d.interfaces()
    for v in (v1, v2):
        c = ifs[f"host-{v}"]
        assert c["rx_bytes"] > size and c["tx_bytes"] > size, c
        assert c["tx_errors"] == 0, c
    trace = d.ok("show trace")["output"]
    assert "host-input" in trace and re.search(rf"host: host-({v1}|{v2}) sw_if_index", trace), trace
    stats = d.ok("show packet-sockets")["data"]
    finished = sum(h["checksums_finished"] + h["gso_segments"] for h in stats)
    assert finished > 0, stats  # veth leaves checksums (and TSO) to "hardware": us

    # idle: the daemon sleeps on the sockets instead of spinning
    d.ok("clear runtime")
    time.sleep(1.0)
    cpu = d.ok("show runtime")["data"]["since_clear"]["cpu_percent"]
    assert cpu < 50, f"memifd spins while idle: {cpu}% CPU"

    d.ok(f"delete host-interface name {v1}")
    assert f"host-{v1}" not in d.interfaces() and host.exists(v1)
    assert "no host interface" in d.fails(f"delete host-interface name {v1}")
    assert d.stop() == 0


def test_kernel_side_vanishing_takes_the_link_down_without_spinning(start, host: Host) -> None:
    ns_tap, ns_veth = host.netns(), host.netns()
    tap_if = host.name("mht")
    v = host.veth(ns_veth, "10.80.0.1/24")
    d = start(
        [
            f"create tap id 3 host-if-name {tap_if} host-ns {ns_tap} host-ip4-addr 10.80.0.2/24",
            f"create host-interface name {v}",
            "set interface l2 bridge tap3 1",
            f"set interface l2 bridge host-{v} 1",
            "set interface state tap3 up",
            f"set interface state host-{v} up",
        ]
    )
    assert {i["state"] for i in d.interfaces().values()} == {"up"}
    _run("ip", "netns", "del", ns_tap)  # takes the tap device with it
    _run("ip", "link", "del", v)
    end = time.monotonic() + 10
    while {i["state"] for i in d.interfaces().values()} != {"down"}:
        assert time.monotonic() < end, d.interfaces()
        time.sleep(0.05)
    assert "is gone" in d.ok("show tap")["data"][0]["last_error"]
    assert "is gone" in d.ok("show packet-sockets")["data"][0]["last_error"]
    d.ok("clear runtime")
    d.ok("clear errors")
    time.sleep(1.0)
    assert d.ok("show errors")["data"] == []
    cpu = d.ok("show runtime")["data"]["since_clear"]["cpu_percent"]
    assert cpu < 50, f"memifd spins on a dead port: {cpu}% CPU"
    assert "link down" in d.log()
    d.ok("delete tap tap3")
    d.ok(f"delete host-interface name {v}")
    assert d.interfaces() == {}
    assert d.stop() == 0


# --------------------------------------------------------------------------- offloads
def _tcp_checksums_ok(frame: bytes) -> bool:
    """IP and TCP checksums as scapy recomputes them."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    p = Ether(frame)
    want_tcp = p[TCP].chksum
    del p[TCP].chksum
    if IP in p:
        want_ip = p[IP].chksum
        del p[IP].chksum
    again = Ether(bytes(p))
    return again[TCP].chksum == want_tcp and (IP not in again or again[IP].chksum == want_ip)


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("payload_len", [1, 2896, 4000, 4001])
def test_gso_segment_matches_what_the_kernel_would_send(version: int, payload_len: int) -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    from memif.vswitch.host_port import GSO_TCPV4, GSO_TCPV6, gso_segment

    payload = os.urandom(payload_len)
    l3 = (
        IP(src="10.0.0.1", dst="10.0.0.2", id=100)
        if version == 4
        else IPv6(src="fd00::1", dst="fd00::2")
    )
    frame = bytes(
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / l3
        / TCP(sport=1234, dport=80, seq=0xFFFFF000, flags="FPAC", options=[("NOP", None)] * 4)
        / payload
    )
    csum_start = 14 + (20 if version == 4 else 40)
    mss = 1448
    segs = gso_segment(frame, GSO_TCPV4 if version == 4 else GSO_TCPV6, mss, csum_start)
    assert segs is not None and len(segs) == max(1, -(-payload_len // mss))
    got = b""
    for k, seg in enumerate(segs):
        p = Ether(seg)
        tcp = p[TCP]
        assert _tcp_checksums_ok(seg)
        assert tcp.seq == (0xFFFFF000 + k * mss) & 0xFFFFFFFF
        last = k == len(segs) - 1
        assert ("F" in tcp.flags, "P" in tcp.flags, "C" in tcp.flags) == (last, last, k == 0)
        assert "A" in tcp.flags and len(tcp.options) == 4
        if version == 4:
            assert p[IP].id == 100 + k and p[IP].len == len(seg) - 14
        else:
            assert p[IPv6].plen == len(seg) - 54
        got += bytes(tcp.payload)
    assert got == payload
    assert gso_segment(frame, 3, mss, csum_start) is None  # UDP GSO: not handled


def test_finish_checksum_completes_a_partial_tcp_checksum() -> None:
    import numpy as np
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    from memif.vswitch.host_port import finish_checksum

    for n in (0, 1, 7, 1000):
        frame = bytearray(
            bytes(
                Ether() / IP(src="10.1.0.1", dst="10.1.0.2") / TCP(sport=9, dport=7) / os.urandom(n)
            )
        )
        final = int.from_bytes(frame[50:52], "big")
        frame[50:52] = b"\0\0"
        # the kernel leaves the folded pseudo-header sum in the field: ~final - segment sum
        partial = (~final & 0xFFFF) + pkt.checksum(bytes(frame[34:]))
        partial = (partial & 0xFFFF) + (partial >> 16)
        frame[50:52] = partial.to_bytes(2, "big")
        row = np.zeros(2048, np.uint8)
        row[: len(frame)] = np.frombuffer(bytes(frame), np.uint8)
        assert finish_checksum(row, len(frame), 34, 16)
        assert int.from_bytes(bytes(row[50:52]), "big") == final
        assert _tcp_checksums_ok(bytes(row[: len(frame)]))
    assert not finish_checksum(np.zeros(64, np.uint8), 60, 34, 40)  # field past the end
