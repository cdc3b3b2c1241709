"""An ip-mode memif peer routed to Ethernet peers by memifd, and docs/routing.md run verbatim.

memifd runs as a process.  memif1/0 is a ``mode ip`` interface (bare IPv4 packets, no
Ethernet header) on 10.30.0.0/24, memif2/0 an Ethernet one on 10.40.0.0/24:

* raw :class:`memif.Interface` peers send UDP both ways and every byte that arrives is
  checked against what was sent: the header rewritten as a router does (TTL one less, header
  checksum valid), the Ethernet header removed towards the ip-mode peer and written towards the
  Ethernet one, the payload untouched;
* the project's tools: ``memif ping --mode ip`` from the ip-mode side to a ``memif responder``
  on the Ethernet side (memifd resolves it with ARP), and ``memif gen`` in ip mode to ``memif
  gen rxonly`` (sequence numbers checked by the receiver);
* docs/routing.md's shell blocks, verbatim, in order: two namespaces and an ip-mode responder
  routed through memifd.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ENV, memif_argv
from test_daemon import Peer
from test_routing_bvi import memif_ports, routed, sequenced_stream, udp

import memif
from memif import packet
from memif.testing import unique_name

ROOT = Path(__file__).resolve().parents[1]
IP_SIDE, ETH_SIDE = "10.30.0.2", "10.40.0.2"  # the peers
ETH_MAC = "02:00:00:00:40:02"
CI = os.environ.get("CI") == "true"


def router(a: str, b: str) -> list[str]:
    """memif1/0 (mode ip) on 10.30.0.0/24 and memif2/0 (Ethernet) on 10.40.0.0/24."""
    return [
        *memif_ports(a, b, (" mode ip", "")),
        "set interface ip address memif1/0 10.30.0.1/24",
        "set interface ip address memif2/0 10.40.0.1/24",
    ]


class IpPeer(Peer):
    """A memif client in ``mode ip``: it sends and receives bare IPv4 packets."""

    def __init__(self, socket_name: str) -> None:
        self.sock = memif.Socket(socket_name, app_name="ip-peer")
        self.iface = self.sock.create_interface(
            role="client", id=0, mode="ip", reconnect_interval=0.1
        )


@pytest.mark.slow
def test_ip_mode_peer_and_ethernet_peer_exchange_exact_bytes(start) -> None:
    a, b = unique_name("ipm-a"), unique_name("ipm-b")
    d = start([*router(a, b), f"set ip neighbor memif2/0 {ETH_SIDE} {ETH_MAC} static"])
    ip_peer = IpPeer(a).connect()
    eth = Peer(b, name="eth-peer").connect()
    try:
        d.wait_up("memif1/0")
        d.wait_up("memif2/0")
        sw_mac = bytes.fromhex(d.interfaces()["memif2/0"]["mac"].replace(":", ""))
        peer_mac = bytes.fromhex(ETH_MAC.replace(":", ""))
        sizes = [0, 1, 18, 100, 1000, 1472]
        out = [udp(packet.ip4(IP_SIDE), packet.ip4(ETH_SIDE), os.urandom(n)) for n in sizes]
        ip_peer.send(*out)
        got = eth.recv(len(out))
        assert got == [packet.ethernet(peer_mac, sw_mac, packet.ETH_P_IP, routed(p)) for p in out]
        back = [udp(packet.ip4(ETH_SIDE), packet.ip4(IP_SIDE), os.urandom(n), ttl=9) for n in sizes]
        eth.send(*(packet.ethernet(sw_mac, peer_mac, packet.ETH_P_IP, p) for p in back))
        assert ip_peer.recv(len(back)) == [routed(p) for p in back]
        counters = d.interfaces()
        assert counters["memif1/0"]["tx_packets"] == counters["memif2/0"]["tx_packets"] == 6
    finally:
        ip_peer.close()
        eth.close()


def run_memif(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        memif_argv(*args), env=ENV, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.slow
def test_memif_tools_in_ip_mode_routed_to_an_ethernet_responder(start) -> None:
    a, b = unique_name("ipt-a"), unique_name("ipt-b")
    d = start(router(a, b))
    responder = subprocess.Popen(
        memif_argv("responder", "--socket", b, "--ip", ETH_SIDE, "--mac", ETH_MAC),
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        d.wait_up("memif2/0")
        # memifd resolves the responder itself first (its own ping), so no request of
        # memif ping waits on ARP and every one must come back
        assert d.ok(f"ping {ETH_SIDE} repeat 1")["data"]["received"] == 1
        (neighbor,) = d.ok("show ip neighbors")["data"]
        assert (neighbor["ip"], neighbor["mac"], neighbor["interface"]) == (
            ETH_SIDE, ETH_MAC, "memif2/0"
        )  # fmt: skip
        res = run_memif(
            "ping", "--socket", a, "--mode", "ip", "-I", IP_SIDE, ETH_SIDE,
            "-c", "5", "-i", "0.1", "--json",
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        summary = json.loads(res.stdout)
        assert (summary["transmitted"], summary["received"]) == (5, 5), summary
    finally:
        responder.kill()
        responder.communicate()


@pytest.mark.slow
def test_memif_gen_in_ip_mode_routed_to_memif_gen_rxonly(start) -> None:
    """``memif gen txonly --mode ip`` (bare IPv4 with sequence numbers) through memifd to
    ``memif gen rxonly`` on the Ethernet side: every packet arrives, none reordered."""
    a, b = unique_name("ipg-a"), unique_name("ipg-b")
    d = start([*router(a, b), f"set ip neighbor memif2/0 {ETH_SIDE} {ETH_MAC} static"])
    sequenced_stream(
        d, a, b, 2000, "--mode", "ip", "--src-ip", IP_SIDE, "--dst-ip", ETH_SIDE, "--size", "100"
    )


# ---------------------------------------------------------------------- docs/routing.md
WRAPPERS = {
    "memifd": "memif.daemon.main",
    "memifctl": "memif.ctl.main",
    "memif": "memif",
}


def doc_script() -> str:
    """docs/routing.md's ```sh blocks, in order."""
    text = (ROOT / "docs" / "routing.md").read_text()
    return "\n".join(re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M))


def _kernel_ready() -> str | None:
    """Why the page cannot run here (root, ip, ping, /dev/net/tun), or None."""
    if os.geteuid() != 0:
        return "root"
    for tool in ("ip", "ping"):
        if shutil.which(tool) is None:
            return f"the {tool} command"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun"
    return None


@pytest.mark.slow
def test_the_routing_page_runs_verbatim(tmp_path: Path) -> None:
    missing = _kernel_ready()
    if missing is not None:
        if CI:
            pytest.fail(f"docs/routing.md needs {missing} under CI", pytrace=False)
        pytest.skip(f"docs/routing.md needs {missing}")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, module in WRAPPERS.items():
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m {module} "$@"\n')
        wrapper.chmod(0o755)
    script = tmp_path / "routing.sh"
    script.write_text("set -ex\n" + doc_script())
    env = {**ENV, "PATH": f"{bin_dir}:{ENV['PATH']}"}
    for ns in ("red", "blue"):  # left by an earlier run that was killed
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    proc = subprocess.Popen(
        ["bash", str(script)], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # memifd and the responder, if left
        for ns in ("red", "blue"):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        shutil.rmtree("/run/routing", ignore_errors=True)  # the page's directory
    assert proc.returncode == 0, out[-4000:]
    assert out.count("3 received") == 2, out
    assert "10.20.0.2" in out and "10.30.0.0/24" in out and "10.10.0.1/32" in out, out
    assert "ttl=63" in out
