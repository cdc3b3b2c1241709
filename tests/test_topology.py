"""The seed's topology end to end: two DPDK testpmd peers bridged by memifd, mirrored to a monitor.

::

    testpmd A ── a.sock ── memif1/0 ┐                 ┌ memif2/0 ── c.sock ── testpmd C
    (rxonly, tx_first to C)         └ bridge-domain 1 ┘          (macswap, tx_first to A)
                                      │ SPAN both, both
                                    memif3/0 ── b.sock ── memif monitor B (--json --write)

memifd runs ``deploy/memifd.conf`` (the recipe's own startup file, with ``/run/memif/`` replaced
by a temporary directory): one socket file per peer, memifd the master of all three.  Every
process is a real one: ``python -m memif.daemon.main``, ``python -m memif.cli monitor``, two
``dpdk-testpmd`` clients, and ``python -m memif.ctl.main`` for the final readings.

Traffic, and why every count can be exact:

* A is ``rxonly`` and C ``macswap``; each sends with ``start tx_first N`` from its own MAC
  (``mac=``) to the other's (``--eth-peer``).  C first sends 4 bursts to A, flooded since A's
  MAC is still unknown; then A sends 4 rounds of 16 bursts to C, unicast since C's MAC is now
  learned, and C reflects each frame back to A (unicast too).  So C -> A carries 128 frames more
  than A -> C, and a counter taken from the wrong direction shows.
* No ring anywhere can overflow, whatever the speeds: a round (512 frames) fits every 1024-slot
  ring on the A/C path and the next round starts only when the last one is back, and the
  monitor's receive ring (16384 slots) holds every mirrored copy of the whole run (8448) even if
  the monitor read nothing until the end.  A ``txonly`` A would never read its receive ring and
  a ``macswap`` loop runs as fast as the switch: both make the mirror port drop, and the counts
  would only agree within a tolerance.
* A starts forwarding before anything is sent to it: a DPDK memif client posts its receive
  buffers only when it first polls, and until then the switch finds A's ring full.

With SPAN ``both`` on A and C (memifd.conf as shipped), each frame is mirrored twice (rx of the
port it enters, tx of the port it leaves): B must see exactly ``rx(A) + tx(A) + rx(C) + tx(C)``
frames, that is ``2 * (A->C + C->A)``, and its pcap holds 2 * A->C frames from A to C and
2 * C->A from C to A.  The test runs again with the sessions changed to ``rx`` and to ``tx`` on
both ports (the docs' advice for one copy per frame): then B sees each frame exactly once.

Every counter is read after ``stop`` and before any peer leaves (testpmd's read 0 once
disconnected).  Teardown, on success or failure: testpmd stop+quit (before memifd goes, as
testpmd may crash when its peer leaves while it forwards), the monitor, memifd, then any socket
file left.  Without testpmd, conftest's ``testpmd_binary`` installs it if it can, else skips
(fails under CI=true).
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
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ENV, memif_argv

from memif.ctl.main import Client
from memif.pcap import read_pcap
from memif.tools.testpmd import MemifPort, PortStats, Testpmd

pytestmark = pytest.mark.slow  # see the slow marker in pyproject.toml

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "deploy" / "memifd.conf"
CONF_DIR = "/run/memif/"  # the socket directory memifd.conf names (a volume in compose.yaml)

MAC_A = "02:00:00:00:00:0a"
MAC_C = "02:00:00:00:00:0c"
IF_A, IF_C, IF_B = "memif1/0", "memif2/0", "memif3/0"

BURST = 32  # testpmd --burst: frames per tx_first burst
C_BURSTS = 4  # C's tx_first: 128 frames C -> A, flooded (A's MAC not learned yet)
A_ROUNDS = 4  # rounds of A's tx_first ...
A_BURSTS = 16  # ... 512 frames A -> C each, reflected by C
FRAME = 64  # testpmd's default --txpkts
A_TO_C = A_ROUNDS * A_BURSTS * BURST  # 2048
C_TO_A = A_TO_C + C_BURSTS * BURST  # 2176
MONITOR_RING = 16384  # room for every mirrored copy: at most 2 * (A_TO_C + C_TO_A) = 8448
TIMEOUT = 20.0


# ------------------------------------------------------------------------------ the processes


class Topology:
    """memifd, the monitor and the two testpmds of one test; :meth:`cleanup` ends them all."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        sockets = tmp / "sockets"
        if len(str(sockets / "a.sock")) > 100:  # sun_path holds 107 bytes
            sockets = Path(tempfile.mkdtemp(prefix="topo", dir="/tmp"))
            self._own_dir: Path | None = sockets
        else:
            sockets.mkdir()
            self._own_dir = None
        self.sockets = sockets
        self.sock = {name: str(sockets / f"{name}.sock") for name in "acb"}
        self.cli_path = str(sockets / "cli.sock")  # beside the peers' sockets, as in compose
        self.log_path = tmp / "memifd.log"
        self.pcap = tmp / "b.pcap"
        self.mon_out = tmp / "monitor.out"
        self.mon_err = tmp / "monitor.err"
        self.memifd: subprocess.Popen | None = None
        self.monitor: subprocess.Popen | None = None
        self.a: Testpmd | None = None
        self.c: Testpmd | None = None

    # -- memifd --------------------------------------------------------------------------
    def start_memifd(self) -> None:
        text = CONF.read_text()
        names = re.findall(r"^create memif socket id \d+ filename (\S+)", text, re.MULTILINE)
        assert names == [f"{CONF_DIR}{n}.sock" for n in "acb"], names
        conf = self.tmp / "memifd.conf"
        conf.write_text(text.replace(CONF_DIR, f"{self.sockets}/"))
        with (self.tmp / "memifd.err").open("w") as err:
            self.memifd = subprocess.Popen(
                [
                    *(sys.executable, "-m", "memif.daemon.main", "-c", str(conf)),
                    *("--cli-socket", self.cli_path, "--runtime-dir", str(self.tmp / "run")),
                    *("--log", str(self.log_path)),
                ],
                env=ENV,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        paths = [self.cli_path, *self.sock.values()]
        self.wait(lambda: all(os.path.exists(p) for p in paths), "memifd's sockets")

    def log(self) -> str:
        parts = []
        for path in (self.log_path, self.tmp / "memifd.err", self.mon_err):
            if path.exists():
                parts.append(f"--- {path.name}:\n{path.read_text()[-3000:]}")
        return "\n".join(parts)

    def wait(self, cond: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            for name, proc in (("memifd", self.memifd), ("monitor", self.monitor)):
                if proc is not None and proc.poll() is not None:
                    raise AssertionError(
                        f"{name} exited {proc.returncode} while waiting for {what}\n{self.log()}"
                    )
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}\n{self.log()}"
                )
            time.sleep(0.01)

    def cli(self, command: str) -> Any:
        """One command over the CLI socket, in-process; its JSON data."""
        with Client(self.cli_path, timeout=TIMEOUT) as c:
            reply = c.request(command, want_json=True)
        assert reply["ok"], f"{command!r}: {reply['output']}"
        return reply["data"]

    def memifctl(self, *words: str, json_out: bool = True) -> Any:
        """``memifctl -s CLI [--json] words...`` as a user runs it; the data (or the text)."""
        argv = [sys.executable, "-m", "memif.ctl.main", "-s", self.cli_path]
        argv += ["--json"] if json_out else []
        r = subprocess.run(
            [*argv, *words], env=ENV, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
        assert r.returncode == 0, f"memifctl {' '.join(words)}: {r.returncode} {r.stderr}"
        return json.loads(r.stdout) if json_out else r.stdout

    def interfaces(self) -> dict[str, dict]:
        return {d["name"]: d for d in self.cli("show interface")}

    def free_rx_slots(self, name: str) -> int:
        """Buffers the peer of ``name`` has posted on its receive (master-to-slave) ring."""
        (iface,) = self.cli(f"show memif {name}")["interfaces"]
        (ring,) = [r for r in iface["rings"] if r["direction"] == "master-to-slave"]
        return (ring["head"] - ring["tail"]) & 0xFFFF

    # -- the peers -----------------------------------------------------------------------
    def start_monitor(self) -> None:
        with self.mon_out.open("w") as out, self.mon_err.open("w") as err:
            self.monitor = subprocess.Popen(
                [
                    *memif_argv("monitor", "--socket", self.sock["b"]),
                    *("--json", "--write", str(self.pcap), "--interval", "0.2"),
                    *("--ring-size", str(MONITOR_RING), "--connect-timeout", str(TIMEOUT)),
                ],
                env=ENV,
                stdout=out,
                stderr=err,
            )

    def monitor_progress(self) -> int:
        """Packets the monitor reports so far (its ``monitor: N packets`` line on stderr)."""
        counts = re.findall(r"monitor: (\d+) packets", self.mon_err.read_text())
        return int(counts[-1]) if counts else 0

    def stop_monitor(self) -> dict[str, Any]:
        assert self.monitor is not None
        self.monitor.send_signal(signal.SIGINT)
        rc = self.monitor.wait(TIMEOUT)
        assert rc == 0, f"monitor exited {rc}\n{self.log()}"
        return json.loads(self.mon_out.read_text())

    def start_testpmd(self, name: str, mac: str, peer: str, mode: str, lcore: int) -> Testpmd:
        return Testpmd(
            [MemifPort("client", id=0, socket=self.sock[name], mac=mac)],
            forward_mode=mode,
            burst=BURST,
            main_lcore=lcore,
            extra_args=[f"--eth-peer=0,{peer}"],
        )

    # -- the end -------------------------------------------------------------------------
    def stop_memifd(self) -> int:
        assert self.memifd is not None
        self.memifd.send_signal(signal.SIGTERM)
        return self.memifd.wait(TIMEOUT)

    def cleanup(self) -> None:
        """Kill whatever still runs (testpmd first: stop, quit) and remove the socket files."""
        for tp in (self.a, self.c):
            if tp is not None:
                tp.close()
        for proc, sig in ((self.monitor, signal.SIGINT), (self.memifd, signal.SIGTERM)):
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(sig)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for path in (*self.sock.values(), self.cli_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)


@pytest.fixture
def topology(testpmd_binary: str, tmp_path: Path) -> Iterator[Topology]:
    topo = Topology(tmp_path)
    try:
        yield topo
    finally:
        topo.cleanup()


def wait_stats(
    topo: Topology, a: Testpmd, c: Testpmd, cond: Callable[[PortStats, PortStats], bool], what: str
) -> None:
    """Poll both testpmds' port counters until ``cond(a, c)``."""
    last: list[PortStats] = []

    def check() -> bool:
        last[:] = [a.port_stats(), c.port_stats()]
        return cond(*last)

    try:
        topo.wait(check, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nA: {last[0]}\nC: {last[1]}\n{topo.interfaces()}") from None


def member_rows(text: str) -> dict[str, list[int]]:
    """The member table of ``show bridge-domain N detail``: name -> the 6 counters."""
    rows = {}
    for line in text.splitlines():
        cols = line.split()
        if cols and cols[0].startswith("memif") and len(cols) == 10:  # name idx state BVI ...
            rows[cols[0]] = [int(x) for x in cols[4:]]
    return rows


# ------------------------------------------------------------------------------ the test


@pytest.mark.testpmd
@pytest.mark.parametrize("span", ["both", "rx", "tx"])
def test_bridge_with_span_monitor(topology: Topology, span: str) -> None:
    """memifd.conf as shipped (SPAN both), then with SPAN changed to rx or tx on A and C."""
    topo = topology
    copies = 2 if span == "both" else 1  # mirrored copies of each A <-> C frame
    mirrored_total = copies * (A_TO_C + C_TO_A)
    topo.start_memifd()
    topo.start_monitor()
    # Forwarding lcores on different CPUs: C busy-polls CPU 0, A CPU 1.
    topo.c = c = topo.start_testpmd("c", MAC_C, MAC_A, "macswap", lcore=1)
    topo.a = a = topo.start_testpmd("a", MAC_A, MAC_C, "rxonly", lcore=0)
    topo.wait(
        lambda: (
            all(d["link_up"] for d in topo.interfaces().values()) and a.link_up() and c.link_up()
        ),
        "memif1/0, memif2/0 and memif3/0 connected",
    )
    assert topo.free_rx_slots(IF_B) >= mirrored_total, "the monitor's ring cannot hold it all"
    if span != "both":
        for src in (IF_A, IF_C):
            topo.cli(f"set interface span {src} destination {IF_B} {span}")
    sessions = {(d["source"], d["destination"], d["rx"], d["tx"]) for d in topo.cli("show span")}
    rx, tx = span in ("both", "rx"), span in ("both", "tx")
    assert sessions == {(IF_A, IF_B, rx, tx), (IF_C, IF_B, rx, tx)}, sessions

    # C -> A first: A forwards (rxonly) so that its receive ring has buffers.
    a.start()
    topo.wait(lambda: topo.free_rx_slots(IF_A) >= C_BURSTS * BURST, "A's receive buffers")
    c.start_tx_first(C_BURSTS)  # then macswap: C reflects what A sends
    wait_stats(topo, a, c, lambda sa, sc: sa.rx_packets == sc.tx_packets > 0, "C's bursts at A")
    a.stop()
    for r in range(1, A_ROUNDS + 1):
        a.start_tx_first(A_BURSTS)
        wait_stats(
            topo,
            a,
            c,
            lambda sa, sc, r=r: (
                sa.tx_packets == sc.rx_packets == r * A_BURSTS * BURST
                and sa.rx_packets == sc.tx_packets
            ),
            f"round {r}: A's frames at C and back",
        )
        a.stop()
    c.stop()

    # Every reading, before anything disconnects.
    sa, sc = a.port_stats(), c.port_stats()
    ifs = {d["name"]: d for d in topo.memifctl("show", "interface")}
    (bd,) = topo.memifctl("show", "bridge-domain", "1", "detail")
    bd_text = topo.memifctl("show", "bridge-domain", "1", "detail", json_out=False)
    span_text = topo.memifctl("show", "span", json_out=False)
    errors = topo.cli("show errors")
    l2fib = {(e["mac"], e["interface"]) for e in topo.cli("show l2fib verbose")}
    runtime = {n["name"]: n for n in topo.cli("show runtime")["nodes"]}
    topo.wait(
        lambda: topo.monitor_progress() >= mirrored_total,
        f"{mirrored_total} packets at the monitor",
    )
    report = topo.stop_monitor()

    # testpmd and the switch agree, port by port and direction by direction.
    sw_a, sw_c, sw_b = ifs[IF_A], ifs[IF_C], ifs[IF_B]
    assert (sa.tx_packets, sc.rx_packets, sa.rx_packets, sc.tx_packets) == (
        A_TO_C,
        A_TO_C,
        C_TO_A,
        C_TO_A,
    ), (sa, sc)
    assert (sa.tx_errors, sc.tx_errors, sa.rx_missed, sc.rx_missed) == (0, 0, 0, 0), (sa, sc)
    assert sw_a["rx_packets"] == sa.tx_packets and sw_a["rx_bytes"] == sa.tx_bytes, sw_a
    assert sw_a["tx_packets"] == sa.rx_packets and sw_a["tx_bytes"] == sa.rx_bytes, sw_a
    assert sw_c["rx_packets"] == sc.tx_packets and sw_c["rx_bytes"] == sc.tx_bytes, sw_c
    assert sw_c["tx_packets"] == sc.rx_packets and sw_c["tx_bytes"] == sc.rx_bytes, sw_c
    assert sa.tx_bytes == A_TO_C * FRAME and sc.tx_bytes == C_TO_A * FRAME
    for d in (sw_a, sw_c, sw_b):
        assert (d["drops"], d["tx_errors"]) == (0, 0), d
    assert errors == [], errors

    # show bridge-domain 1 detail: the same counters, as data and as the table users read.
    assert (bd["bd_id"], bd["learned"]) == (1, 2), bd
    members = {m["name"]: m for m in bd["members"]}
    assert set(members) == {IF_A, IF_C}, bd
    keys = ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "drops", "tx_errors"]
    for name in (IF_A, IF_C):
        assert [members[name][k] for k in keys] == [ifs[name][k] for k in keys], members[name]
    assert member_rows(bd_text) == {n: [ifs[n][k] for k in keys] for n in (IF_A, IF_C)}, bd_text

    # Learning: A's and C's MACs on their ports; only C's first bursts (to a still unknown A)
    # were flooded, everything after went unicast.
    assert l2fib == {(MAC_A, IF_A), (MAC_C, IF_C)}, l2fib
    assert runtime["l2-flood"]["vectors"] == C_BURSTS * BURST, runtime["l2-flood"]

    # B saw every frame of both directions (twice with SPAN both: as it entered the switch and
    # as it left), and nothing else.
    mirrored = (sw_a["rx_packets"] + sw_c["rx_packets"]) * rx
    mirrored += (sw_a["tx_packets"] + sw_c["tx_packets"]) * tx
    assert mirrored == mirrored_total == copies * (sa.tx_packets + sc.tx_packets)
    assert sw_b["tx_packets"] == mirrored_total and sw_b["rx_packets"] == 0, sw_b
    assert f"mirrored packets: {mirrored_total}" in span_text, span_text
    assert report["packets"] == report["received"]["packets"] == mirrored_total, report
    assert report["bytes"] == mirrored_total * FRAME == sw_b["tx_bytes"], report
    assert report["written"] == mirrored_total and report["rx_drops"] == 0, report
    (pair,) = report["top_talkers"]["mac_pairs"]
    assert {pair["a"], pair["b"]} == {MAC_A, MAC_C}, pair
    assert pair["packets"] == mirrored_total, pair

    # The capture: both MAC directions, each frame once per copy.
    records = read_pcap(topo.pcap)
    directions = Counter((r.data[6:12].hex(":"), r.data[0:6].hex(":")) for r in records)
    expected = {(MAC_A, MAC_C): copies * A_TO_C, (MAC_C, MAC_A): copies * C_TO_A}
    assert directions == expected, directions
    assert {len(r.data) for r in records} == {FRAME}

    # An orderly end: testpmd first (stop, quit), then memifd, which removes its sockets.
    a.close()
    c.close()
    assert (a.returncode, c.returncode) == (0, 0), (a.output[-2000:], c.output[-2000:])
    assert topo.stop_memifd() == 0, topo.log()
    left = [p for p in topo.sock.values() if os.path.exists(p)]
    assert not left and not os.path.exists(topo.cli_path), left


# ------------------------------------------------------------------------------ the recipe


def test_compose_recipe_matches_the_config() -> None:
    """deploy/compose.yaml against deploy/memifd.conf (tests/test_containers.py runs it)."""
    import yaml  # a test dependency (pyyaml)

    doc = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = doc["services"]
    assert set(services) == {"memifd", "testpmd-a", "testpmd-c", "monitor-b"}
    assert set(doc["volumes"]) == {"sockets", "control"}
    for name, svc in services.items():
        assert "sockets:/run/memif" in svc["volumes"], name
        assert svc["init"] is True and svc["cap_drop"] == ["ALL"], name
        assert "privileged" not in svc, name
    assert "./memifd.conf:/etc/memifd.conf:ro" in services["memifd"]["volumes"]
    # The CLI socket lives in a volume only memifd mounts.
    assert [n for n, svc in services.items() if "control:/run/memifd" in svc["volumes"]] == [
        "memifd"
    ]

    def command(name: str) -> str:
        cmd = services[name]["command"]
        return " ".join(cmd) if isinstance(cmd, list) else cmd

    assert "-c /etc/memifd.conf --cli-socket /run/memifd/cli.sock" in command("memifd")
    for name in ("testpmd-a", "testpmd-c", "monitor-b"):
        assert services[name]["depends_on"]["memifd"]["condition"] == "service_healthy", name

    # Each tenant: its own uid, admitted by memifd on its own socket only.
    conf = CONF.read_text()
    for name, me, uid in (
        ("testpmd-a", "a", 1001),
        ("monitor-b", "b", 1002),
        ("testpmd-c", "c", 1003),
    ):
        assert services[name]["user"] == f"{uid}:{uid}", name
        assert f"filename /run/memif/{me}.sock allow-uid {uid}\n" in conf, name
        assert f"until [ -S /run/memif/{me}.sock ]" in command(name), name

    # Each testpmd: a client on its own socket with its MAC, addressing the other one's MAC.
    for me, mac, peer_mac in (("a", MAC_A, MAC_C), ("c", MAC_C, MAC_A)):
        cmd = command(f"testpmd-{me}")
        vdev = f"role=client,id=0,socket=/run/memif/{me}.sock,socket-abstract=no,mac={mac}"
        assert vdev in cmd and f"--eth-peer=0,{peer_mac}" in cmd, cmd
        assert "--forward-mode=macswap" in cmd and "--tx-first" in cmd, cmd
    assert "--socket /run/memif/b.sock" in command("monitor-b")
    assert "destination memif3/0" in conf
