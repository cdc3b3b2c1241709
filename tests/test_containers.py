"""The seed's topology in real containers: memifd, testpmd A and C, and the monitor B, each tenant
its own uid (deploy/compose.yaml, docs/topology.md).

``scripts/containers.sh build`` sets the machine up (packages, podman settings, a base image from
Debian's mirror, the image with a wheel of this tree), then podman-compose runs compose.yaml with
compose.test.yaml on top: the same four containers, but A and C idle as their uids while the test
runs ``dpdk-testpmd`` in them with ``podman exec -i`` (:class:`memif.tools.testpmd.Testpmd` with a
wrapper as its binary), so it can send exact counts the way tests/test_topology.py does without
containers: C sends 4 bursts to A (flooded), then A sends 4 rounds of 16 bursts to C, reflected by
C; every ring holds a whole round, so nothing can drop whatever the machine's load.

Checked: no container is privileged or holds a capability, each runs as its uid and mounts only
what it must; from container A, the CLI socket does not exist and memifd's socket files cannot be
removed; A's connection to C's socket is refused, counted (``show memif``) and logged by memifd;
the exact counts at both testpmd ports and in ``show interface`` (memifctl inside the memifd
container); the monitor's pcap, written by uid 1002 to a bind directory, read by tshark on the
host; then memifd removes its socket files on SIGTERM and ``containers.sh down`` leaves no
container and no volume.  A second test runs ``containers.sh up`` as documented (the endless
bounce of compose.yaml alone) and checks that the counters keep moving.  A third runs a short
``containers.sh sweep`` (the rate sweep, source in A, sink in C, memifd configured through its
CLI as master-copy, slave-copy and slave-zc) and checks every point's figures and that memifd's
``show interface`` agrees exactly with the traffic's counts after each series.  Not root, or without
podman and no way to install it, the tests are skipped; under ``CI=true`` they fail instead.
They use the project name memif-topology: a running ``containers.sh up`` is taken down first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memif.tools.testpmd import MemifPort, PortStats, Testpmd

pytestmark = pytest.mark.slow  # see the slow marker in pyproject.toml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "containers.sh"
PROJECT = "memif-topology"
CLI = "/run/memifd/cli.sock"

MAC_A, MAC_C = "02:00:00:00:00:0a", "02:00:00:00:00:0c"
IF_A, IF_C, IF_B = "memif1/0", "memif2/0", "memif3/0"
UIDS = {"memifd": 0, "testpmd-a": 1001, "monitor-b": 1002, "testpmd-c": 1003}
MOUNTS = {
    "memifd": {"/run/memif", "/run/memifd", "/etc/memifd.conf"},
    "testpmd-a": {"/run/memif"},
    "testpmd-c": {"/run/memif"},
    "monitor-b": {"/run/memif", "/captures"},
}

BURST = 32
C_BURSTS = 4  # 128 frames C -> A, flooded (A's MAC not learned yet)
A_ROUNDS, A_BURSTS = 4, 16  # 512 frames A -> C per round, reflected by C
FRAME = 64
A_TO_C = A_ROUNDS * A_BURSTS * BURST  # 2048
C_TO_A = A_TO_C + C_BURSTS * BURST  # 2176
MIRRORED = 2 * (A_TO_C + C_TO_A)  # SPAN both on A and C: every frame twice
TIMEOUT = 90.0  # for each awaited condition: a loaded 2-core machine is slow, never wrong
BUILD_TIMEOUT = 1800.0


def container(service: str) -> str:
    return f"{PROJECT}_{service}_1"


def run(
    *argv: str,
    timeout: float = TIMEOUT,
    check: bool = True,
    env: dict[str, str] | None = None,
    stderr: int = subprocess.PIPE,
) -> str:
    """``argv``'s standard output (``stderr=subprocess.STDOUT``: both streams)."""
    r = subprocess.run(
        argv,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if check:
        assert r.returncode == 0, f"{' '.join(argv)}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def wait(cond: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs()}")
        time.sleep(0.1)


def logs() -> str:
    out = []
    for service in UIDS:
        r = subprocess.run(
            ["podman", "logs", "--tail", "30", container(service)],
            capture_output=True,
            text=True,
            check=False,
        )
        out.append(f"--- {service}:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return "\n".join(out)


def exec_in(service: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        ["podman", "exec", container(service), *argv],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if check:
        assert r.returncode == 0, f"{service}: {' '.join(argv)}: {r.returncode}\n{r.stderr}"
    return r


def memifctl(*words: str) -> Any:
    """``memifctl --json`` inside the memifd container (the only one that sees the CLI)."""
    return json.loads(exec_in("memifd", "memifctl", "-s", CLI, "--json", *words).stdout)


def state(service: str) -> tuple[str, int]:
    out = run(
        "podman", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", container(service)
    )
    status, code = out.split()
    return status, int(code)


def project_leftovers() -> tuple[str, str]:
    label = f"label=io.podman.compose.project={PROJECT}"
    ps = run("podman", "ps", "-a", "-q", "--filter", label)
    volumes = run("podman", "volume", "ls", "-q", "--filter", label)
    return ps.strip(), volumes.strip()


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def image() -> None:
    """``containers.sh build``: installs what is missing (as root), builds the image."""
    why = None
    if os.geteuid() != 0:  # rootful podman: the tenants' uids are the host's, as memifd sees them
        why = "the containers test runs as root (rootful podman)"
    elif shutil.which("podman") is None and shutil.which("apt-get") is None:
        why = "podman is not installed and cannot be (no apt-get)"
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"required under CI: {why}")
        pytest.skip(why)
    started = time.monotonic()
    r = subprocess.run(
        [str(SCRIPT), "build"], capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
    )
    assert r.returncode == 0, f"containers.sh build: {r.returncode}\n{r.stdout}\n{r.stderr}"
    print(f"containers.sh build: {time.monotonic() - started:.0f} s\n{r.stdout}")


class Peers:
    """testpmd run in containers A and C (``podman exec -i``); closed in order at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.a: Testpmd | None = None
        self.c: Testpmd | None = None

    def start(self, service: str, sock: str, mac: str, peer: str, mode: str, lcore: int) -> Testpmd:
        wrapper = self.tmp / f"{service}.sh"
        # stdbuf inside: testpmd's answers must reach the pipe before its next prompt.
        wrapper.write_text(
            "#!/bin/sh\n"
            f'exec podman exec -i {container(service)} stdbuf -oL -eL dpdk-testpmd "$@"\n'
        )
        wrapper.chmod(0o755)
        return Testpmd(
            [MemifPort("client", id=0, socket=sock, mac=mac)],
            forward_mode=mode,
            burst=BURST,
            main_lcore=lcore,
            extra_args=[f"--eth-peer=0,{peer}"],
            binary=str(wrapper),
            startup_timeout=TIMEOUT,
        )

    def close(self) -> None:
        for tp in (self.a, self.c):
            if tp is not None:
                tp.close()


@pytest.fixture
def topology(image: None, tmp_path: Path) -> Iterator[tuple[Peers, Path]]:
    """The four containers up (compose.yaml + compose.test.yaml); always ``down`` at the end."""
    down = [str(SCRIPT), "down"]
    run(*down, timeout=300)  # what an interrupted run may have left
    captures = tmp_path / "captures"
    captures.mkdir()
    os.chown(captures, UIDS["monitor-b"], UIDS["monitor-b"])
    env = {
        **os.environ,
        "CAPTURES": str(captures),
        "MONITOR_ARGS": f"--ring-size 16384 --json --write /captures/b.pcap --count {MIRRORED}",
    }
    peers = Peers(tmp_path)
    try:
        run(
            str(SCRIPT),
            *("compose", "-f", "compose.yaml", "-f", "compose.test.yaml", "up", "-d"),
            env=env,
            timeout=300,
        )
        yield peers, captures
    finally:
        peers.close()
        run(*down, timeout=300, check=False)


# ------------------------------------------------------------------------------ the test


def test_topology_in_containers(topology: tuple[Peers, Path]) -> None:
    peers, captures = topology

    def up(names: tuple[str, ...]) -> Callable[[], bool]:
        def check() -> bool:
            r = exec_in("memifd", "memifctl", "-s", CLI, "--json", "show", "interface", check=False)
            if r.returncode != 0:
                return False
            ifs = {d["name"]: d for d in json.loads(r.stdout)}
            return all(ifs[n]["link_up"] for n in names)

        return check

    wait(up((IF_B,)), "memifd's CLI, and the monitor connected")

    # -- tenants: uids, no privilege, no capability, only their own mounts ------------------
    for service, uid in UIDS.items():
        info = json.loads(run("podman", "inspect", container(service)))[0]
        assert info["HostConfig"]["Privileged"] is False, service
        assert {m["Destination"] for m in info["Mounts"]} == MOUNTS[service], info["Mounts"]
        status = exec_in(service, "cat", "/proc/self/status").stdout
        assert re.search(r"^CapEff:\s+0+$", status, re.MULTILINE), (service, status)
        assert re.search(rf"^Uid:\s+{uid}\s", status, re.MULTILINE), (service, status)
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.MULTILINE), (service, status)

    # -- from A: no CLI socket to reach, memifd's socket files stay memifd's ------------------
    assert exec_in("testpmd-a", "ls", "/run/memif").stdout.split() == ["a.sock", "b.sock", "c.sock"]
    cli = exec_in("testpmd-a", "memifctl", "-s", CLI, "show", "version", check=False)
    assert cli.returncode != 0 and "No such file" in cli.stderr, cli
    rm = exec_in("testpmd-a", "rm", "-f", "/run/memif/c.sock", check=False)
    assert rm.returncode != 0 and "not permitted" in rm.stderr, rm
    mode = exec_in("testpmd-a", "stat", "-c", "%a %u", "/run/memif", "/run/memif/c.sock").stdout
    assert mode.split() == ["1777", "0", "666", "0"], mode  # sticky: only memifd removes them

    # -- A knocks on C's socket: memifd refuses uid 1001 there, counts and logs it ----------
    knock = (
        "import socket\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
        "s.connect('/run/memif/c.sock')\n"
        "s.settimeout(30)\n"
        "while s.recv(4096): pass\n"  # memifd says why (a DISCONNECT), then closes
        "print('closed')\n"
    )
    assert exec_in("testpmd-a", "python3", "-c", knock).stdout.strip() == "closed"
    refused = {s["filename"]: s["counters"] for s in memifctl("show", "memif")["sockets"]}
    assert refused["/run/memif/c.sock"]["access_denied"] == 1, refused
    assert refused["/run/memif/a.sock"]["access_denied"] == 0, refused
    log = run("podman", "logs", container("memifd"), stderr=subprocess.STDOUT)
    (line,) = [x for x in log.splitlines() if "/run/memif/c.sock" in x and "uid 1001" in x]
    assert "memif socket /run/memif/c.sock: access denied: uid 1001" in line, line

    # -- traffic, as in tests/test_topology.py -----------------------------------------------
    peers.c = c = peers.start("testpmd-c", "/run/memif/c.sock", MAC_C, MAC_A, "macswap", lcore=1)
    peers.a = a = peers.start("testpmd-a", "/run/memif/a.sock", MAC_A, MAC_C, "rxonly", lcore=0)
    wait(lambda: up((IF_A, IF_C, IF_B))() and a.link_up() and c.link_up(), "A and C connected")

    def free_rx_slots(name: str) -> int:
        (iface,) = memifctl("show", "memif", name)["interfaces"]
        (ring,) = [r for r in iface["rings"] if r["direction"] == "master-to-slave"]
        return int((ring["head"] - ring["tail"]) & 0xFFFF)

    def wait_stats(cond: Callable[[PortStats, PortStats], bool], what: str) -> None:
        last: list[PortStats] = []

        def check() -> bool:
            last[:] = [a.port_stats(), c.port_stats()]
            return cond(*last)

        try:
            wait(check, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nA: {last[0]}\nC: {last[1]}") from None

    a.start()  # rxonly: A posts its receive buffers
    wait(lambda: free_rx_slots(IF_A) >= C_BURSTS * BURST, "A's receive buffers")
    c.start_tx_first(C_BURSTS)
    wait_stats(lambda sa, sc: sa.rx_packets == sc.tx_packets > 0, "C's bursts at A")
    a.stop()
    for r in range(1, A_ROUNDS + 1):
        a.start_tx_first(A_BURSTS)
        wait_stats(
            lambda sa, sc, r=r: (
                sa.tx_packets == sc.rx_packets == r * A_BURSTS * BURST
                and sa.rx_packets == sc.tx_packets
            ),
            f"round {r}: A's frames at C and back",
        )
        a.stop()
    c.stop()

    # -- exact counts: testpmd's ports, memifd's interfaces ------------------------------------
    sa, sc = a.port_stats(), c.port_stats()
    ifs = {d["name"]: d for d in memifctl("show", "interface")}
    assert (sa.tx_packets, sc.rx_packets, sa.rx_packets, sc.tx_packets) == (
        A_TO_C,
        A_TO_C,
        C_TO_A,
        C_TO_A,
    ), (sa, sc)
    assert (sa.tx_bytes, sc.tx_bytes) == (A_TO_C * FRAME, C_TO_A * FRAME), (sa, sc)
    assert (sa.tx_errors, sc.tx_errors, sa.rx_missed, sc.rx_missed) == (0, 0, 0, 0), (sa, sc)
    sw_a, sw_c, sw_b = ifs[IF_A], ifs[IF_C], ifs[IF_B]
    assert (sw_a["rx_packets"], sw_a["rx_bytes"]) == (sa.tx_packets, sa.tx_bytes), sw_a
    assert (sw_a["tx_packets"], sw_a["tx_bytes"]) == (sa.rx_packets, sa.rx_bytes), sw_a
    assert (sw_c["rx_packets"], sw_c["rx_bytes"]) == (sc.tx_packets, sc.tx_bytes), sw_c
    assert (sw_c["tx_packets"], sw_c["tx_bytes"]) == (sc.rx_packets, sc.rx_bytes), sw_c
    assert (sw_b["tx_packets"], sw_b["tx_bytes"]) == (MIRRORED, MIRRORED * FRAME), sw_b
    for d in (sw_a, sw_c, sw_b):
        assert (d["drops"], d["tx_errors"]) == (0, 0), d

    # -- B: its pcap (uid 1002 wrote it to the bind directory), read by tshark on the host ------
    def monitor_done() -> bool:
        return state("monitor-b")[0] == "exited"

    wait(monitor_done, f"the monitor's {MIRRORED} packets (--count)")
    assert state("monitor-b")[1] == 0, logs()
    out = run("podman", "logs", container("monitor-b"), stderr=subprocess.DEVNULL)
    report = json.loads(out[out.index("{") :])
    assert report["packets"] == report["written"] == MIRRORED and report["rx_drops"] == 0, report
    pcap = captures / "b.pcap"
    assert pcap.stat().st_uid == UIDS["monitor-b"]
    fields = run("tshark", "-r", str(pcap), "-T", "fields", "-e", "eth.src", "-e", "eth.dst")
    directions = Counter(tuple(line.split("\t")) for line in fields.splitlines())
    assert directions == {(MAC_A, MAC_C): 2 * A_TO_C, (MAC_C, MAC_A): 2 * C_TO_A}, directions

    # -- the end: testpmd quits, memifd removes its socket files, down leaves nothing ---------
    peers.close()
    assert (a.returncode, c.returncode) == (0, 0), (a.output[-2000:], c.output[-2000:])
    volume = run("podman", "volume", "inspect", "-f", "{{.Mountpoint}}", f"{PROJECT}_sockets")
    sockets = Path(volume.strip())
    run("podman", "stop", "-t", "30", container("memifd"))
    assert state("memifd") == ("exited", 0), logs()
    assert sorted(p.name for p in sockets.iterdir()) == [], "stale socket files"
    run(str(SCRIPT), "down", timeout=300)
    assert project_leftovers() == ("", ""), project_leftovers()


def test_up_forwards_with_live_counters(image: None) -> None:
    """The one documented command: ``containers.sh up`` (compose.yaml alone: A and C bounce
    their --tx-first bursts for as long as they run), counters that keep moving, then down."""
    try:
        out = run(str(SCRIPT), "up", timeout=600)
        assert "containers: up: waiting for A and C to exchange frames" in out, out

        def counts() -> dict[str, tuple[int, int]]:
            ifs = {d["name"]: d for d in memifctl("show", "interface")}
            return {n: (ifs[n]["rx_packets"], ifs[n]["tx_packets"]) for n in (IF_A, IF_C, IF_B)}

        first = counts()
        assert all(rx > 0 and tx > 0 for rx, tx in (first[IF_A], first[IF_C])), first

        def moved() -> bool:
            now = counts()
            return all(now[n][i] > first[n][i] for n in (IF_A, IF_C) for i in (0, 1))

        wait(moved, "A's and C's counters to move on")
        assert counts()[IF_B][1] > 0, "nothing mirrored to B"
    finally:
        run(str(SCRIPT), "down", timeout=300)
    assert project_leftovers() == ("", ""), project_leftovers()


SWEEP_CONFIGS = ("master-copy", "slave-copy", "slave-zc")
IN_FLIGHT = 4 * 1024  # frames between source and sink: its ring, memifd's two, the sink's
COUNTERS = re.compile(
    r"^counters: (\S+) adaptive: source sent (\d+), memif1/0 rx (\d+); "
    r"memif2/0 tx (\d+), sink received (\d+)$",
    re.MULTILINE,
)


def test_rate_sweep_in_containers(image: None, tmp_path: Path) -> None:
    """``containers.sh sweep``, short: memifd in its container in each configuration, the
    source in A (uid 1001), the sink in C (uid 1003); every point delivers, memifd's CPU and
    interface counters are read, and after each series memifd's ``show interface`` agrees
    exactly with what the source sent and the sink received. Then nothing is left."""
    chart = tmp_path / "sweep.png"
    argv = [str(SCRIPT), "sweep", "--rates", "50", "--seconds", "0.5", "--warmup", "0.2"]
    env = {**os.environ, "PYTHON": sys.executable}
    r = subprocess.run(
        [*argv, "--json", "--plot", str(chart)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr[-6000:]}"
    points = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(p["config"], p["mode"], p["percent"]) for p in points] == [
        (c, "adaptive", pct) for c in SWEEP_CONFIGS for pct in (None, 50)
    ], points
    assert r.stderr.count(" offered ") == len(points)  # a progress line per point
    for p in points:
        assert p["error"] is None, p
        assert p["delivered_pps"] > 0, p
        # no more delivered than offered, but what was in flight when the window opened
        assert (p["delivered_pps"] - p["offered_pps"]) * p["seconds"] <= IN_FLIGHT, p
        assert 0 < p["cpu"] <= 1.05 and p["runq"] is not None, p
        assert p["latency_p99_us"] >= p["latency_p50_us"] > 0, p
        c = p["counters"]
        assert c["memif1/0 rx"] > 0 and c["memif2/0 tx"] > 0, p
        assert all(re.fullmatch(r"[a-z0-9/-]+/[a-z-]+", k) and v > 0 for k, v in p["drops"].items())
    checks = {m[0]: tuple(map(int, m[1:])) for m in COUNTERS.findall(r.stderr)}
    assert set(checks) == set(SWEEP_CONFIGS), r.stderr[-3000:]
    for config, (sent, rx, tx, received) in checks.items():
        assert sent == rx > 0 and tx == received > 0, (config, checks[config])
        assert received <= sent, (config, checks[config])
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert project_leftovers() == ("", ""), project_leftovers()
