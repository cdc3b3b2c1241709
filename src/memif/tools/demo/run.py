"""``memif demo``'s run: start the switch and its peers, move traffic, count, stop, judge.

The order matters and is the same on success, failure and Ctrl-C:

1. memifd (its CLI socket answers once the startup file made every port), the monitor on B,
   then the peers: C, then A (a testpmd client connects once, when it starts).
2. Traffic for ``--duration`` seconds, the live counters read through the CLI socket.
3. The end: the counters settle (nothing left in flight, the monitor caught up), testpmd is
   stopped and its counters read, then the peers quit, then the monitor (its JSON report),
   then memifd (SIGTERM; unless ``--keep``).  The temporary directory goes too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from typing import Any

from ..common import StopRequest, package_root
from ..testpmd import INSTALL_HINT, TestpmdError, find_testpmd
from .peers import Interrupted, PythonPeers, TestpmdPeers
from .proc import DemoError, ignore_signals
from .topo import IF_A, IF_B, IF_C, Topology
from .view import LiveView, print_summary, summarize

SETTLE = 5.0  # longest wait for the counters to stop moving at the end

Peers = PythonPeers | TestpmdPeers


def choose_peers(args: argparse.Namespace, topo: Topology) -> Peers:
    """``--peers``: testpmd when asked for (or installed, with ``auto``), else Python."""
    if args.peers == "python":
        return PythonPeers(topo, args)
    binary = find_testpmd()
    if binary is None:
        if args.peers == "testpmd":
            raise DemoError(f"dpdk-testpmd not found ({INSTALL_HINT}), or use --peers python")
        return PythonPeers(topo, args)
    return TestpmdPeers(topo, args, binary)


def run_topology(args: argparse.Namespace) -> int:
    """``memif demo``: the whole run; returns the exit status."""
    out = sys.stderr if args.json else sys.stdout
    stop = StopRequest()
    topo = Topology()
    old_handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    error = note = ""
    ifs: dict[str, dict[str, Any]] = {}
    monitor: dict[str, Any] = {}
    kept: dict[str, Any] | None = None
    peers: Peers | None = None
    pids: dict[str, int] = {}
    memifd_status: int | None = None
    try:
        with stop.installed():
            try:
                peers = choose_peers(args, topo)
                topo.start_memifd(args.connect_timeout)
                assert topo.memifd is not None  # started
                pids["memifd"] = topo.memifd.pid
                topo.start_monitor(args.connect_timeout)
                assert topo.monitor is not None  # started
                pids["monitor"] = topo.monitor.pid
                try:
                    peers.connect(stop)
                except TestpmdError as exc:
                    if args.peers != "auto":
                        raise
                    note = "testpmd did not start (" + str(exc).splitlines()[0] + ")"
                    peers.close()
                    peers = PythonPeers(topo, args)
                    peers.connect(stop)
                if not stop:
                    peers.start()
                    pids.update(peers.pids())
                    if not args.json:
                        _header(args, topo, peers, pids, note)
                    ifs = _traffic(topo, peers, stop, out, args.duration)
            except Interrupted:
                pass
            except (DemoError, TestpmdError, OSError) as exc:
                error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            except KeyboardInterrupt:  # a second Ctrl-C: no more waiting
                error = "interrupted again: stopped at once"
    finally:
        ignore_signals()  # the clean-up runs to its end
        try:
            if peers is not None:
                pids.update(peers.pids())
                peers.close()  # testpmd first: stop, quit
            monitor = topo.stop_monitor()
            if args.keep and not error and topo.memifd is not None and topo.memifd.running:
                kept = {
                    "memifd_pid": topo.memifd.pid,
                    "cli_socket": topo.cli_path,
                    "dir": topo.dir,
                    "sockets": dict(topo.sock),
                }
            else:
                memifd_status = topo.stop_memifd()
            topo.close(keep=kept is not None)
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
    ifs = ifs or topo.last  # after an error: the last counters read
    reports = peers.reports() if peers is not None else {}
    summary = summarize(ifs, monitor, reports, peers.duration if peers is not None else 0.0)
    summary = {
        "peers": peers.kind if peers is not None else None,
        "peer_programs": dict(peers.labels) if peers is not None else {},
        "peer_description": peers.describe() if peers is not None else "",
        "rate": args.rate,
        **summary,
        "interrupted": bool(stop),
        "pids": pids,
        "dir": topo.dir,
        "memifd_status": memifd_status,
    }
    if memifd_status:  # SIGTERM is a clean stop: memifd exits 0
        summary["problems"].append(f"memifd exited with status {memifd_status}")
        summary["ok"] = False
    if note:
        summary["note"] = note
    if error:  # the counters may be stale: the error is the verdict
        summary.update(error=error, problems=[error], ok=False)
    if kept is not None:
        summary["kept"] = kept
    if args.json:
        print(json.dumps(summary), flush=True)
    else:
        print_summary(summary)
        if kept is not None:
            _print_kept(kept)
    if stop:
        return 130
    return 0 if summary["ok"] else 1


def _traffic(
    topo: Topology, peers: Peers, stop: StopRequest, out: Any, duration: float
) -> dict[str, dict[str, Any]]:
    """Run the (started) traffic with live counters; the final, settled interface counters."""
    view = LiveView(out, "memif demo", peers.program, duration)
    t0 = time.monotonic()
    running = True
    while running and not stop:
        running = peers.pump(time.monotonic() + view.interval, stop)
        topo.check()
        view.update(time.monotonic() - t0, topo.interfaces(), topo.monitor_count())
    if stop:
        peers.interrupt()
    peers.finish()
    ifs = _settle(topo)
    view.update(time.monotonic() - t0, ifs, topo.monitor_count(), average_over=peers.duration)
    return ifs


def _settle(topo: Topology) -> dict[str, dict[str, Any]]:
    """The counters once they stop moving and the monitor has counted what B was sent."""
    deadline = time.monotonic() + SETTLE
    prev = None
    while True:
        ifs = topo.interfaces()
        snap = [ifs[n][k] for n in (IF_A, IF_C, IF_B) for k in ("rx_packets", "tx_packets")]
        caught_up = topo.monitor_count() >= ifs[IF_B]["tx_packets"]
        if (snap == prev and caught_up) or time.monotonic() > deadline:
            return ifs
        prev = snap
        time.sleep(0.3)


def _header(
    args: argparse.Namespace, topo: Topology, peers: Peers, pids: dict[str, int], note: str
) -> None:
    if note:
        print(f"memif demo: {note}; using Python peers")
    print(f"memif demo: memifd (pid {pids['memifd']}) bridges A and C, and mirrors both to B")
    print(f"  A {IF_A}  {topo.sock['A']}  {peers.labels['A']} (pid {pids.get('A', '?')})")
    print(f"  C {IF_C}  {topo.sock['C']}  {peers.labels['C']} (pid {pids.get('C', '?')})")
    print(f"  B {IF_B}  {topo.sock['B']}  memif monitor (pid {pids['monitor']})")
    print(f"  {peers.describe()}, for {args.duration:g} s", flush=True)


def _command(script: str, module: str) -> str:
    """How to run one of the package's commands here: its script, or this interpreter."""
    if shutil.which(script):
        return script
    return f"PYTHONPATH={package_root()} {sys.executable} -m {module}"


def _print_kept(kept: dict[str, Any]) -> None:
    ctl = f"{_command('memifctl', 'memif.ctl.main')} -s {kept['cli_socket']}"
    sock = kept["sockets"]
    print(f"\nmemifd is still running (pid {kept['memifd_pid']}); talk to it with:")
    print(f"  {ctl} show interface")
    print(f"  {ctl}        (an interactive shell)")
    print(f"Connect peers to {sock['A']} and {sock['C']} (bridged) or {sock['B']} (the mirror):")
    print(f"  {_command('memif', 'memif.cli')} gen txonly --socket {sock['A']} --duration 5")
    print(f"Stop it with: kill {kept['memifd_pid']}; rm -r {kept['dir']}")
