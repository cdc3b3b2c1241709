"""The rate sweep against the containerised topology (``scripts/containers.sh sweep`` runs it,
with the four containers up from compose.yaml and compose.bench.yaml; docs/topology.md).

memifd is the one in its container, configured through its CLI socket, which this host reaches
in the ``control`` volume; the source runs in container A as uid 1001 on ``/run/memif/a.sock``
and the sink in container C as uid 1003 on ``/run/memif/c.sock`` (``podman exec ... python3 -m
memif.tools.bench.sweep_traffic``), each with its control block in its own directory of
``--bench-dir`` (mounted at /bench in its container only). memifd's CPU and run-queue wait are
read from /proc of its process as this host sees it, and memifd's threads are pinned to the
switch CPU, the source and the sink to the other one (``--cpus``). Unless ``--no-span``, every
port the sweep makes is mirrored to the monitor B as in memifd.conf (SPAN ``both``).

The sweep itself is ``memif bench-switch --rates``' (:mod:`memif.tools.bench.sweep`), through
:class:`memif.tools.bench.sweep_memifd.MemifdBench`: the same points, table, ``--json`` and chart.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from memif.tools.bench import sweep
from memif.tools.bench.common import choice_list, int_list, non_negative, positive
from memif.tools.bench.sweep_memifd import MemifdBench, MemifdTarget, Tenant

PROJECT = "memif-topology"
SPAN = "set interface span {port} destination memif3/0 both"  # as deploy/memifd.conf
TENANTS = {  # service: (socket, uid), as compose.yaml and memifd.conf have them
    "testpmd-a": ("/run/memif/a.sock", 1001),
    "testpmd-c": ("/run/memif/c.sock", 1003),
}
DEFAULT_CONFIGS = ("master-copy", "slave-copy", "slave-zc")


def podman(*argv: str) -> str:
    """``podman argv``'s output, stripped (CalledProcessError when it fails)."""
    out = subprocess.run(["podman", *argv], capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip()


def container(service: str) -> str:
    return f"{PROJECT}_{service}_1"


def memifd_pid() -> int:
    """memifd's pid on this host: the child of its container's init whose command is memifd."""
    init = int(podman("inspect", "-f", "{{.State.Pid}}", container("memifd")))
    todo = [init]
    while todo:
        pid = todo.pop()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if any(os.path.basename(a) == b"memifd" for a in cmdline[:2]):
            return pid
        todo += map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    raise RuntimeError(f"no memifd process under {container('memifd')}'s init (pid {init})")


def target(bench_dir: Path, span: bool) -> MemifdTarget:
    """memifd in its container, the source in A, the sink in C."""
    volume = podman("volume", "inspect", "-f", "{{.Mountpoint}}", f"{PROJECT}_control")

    def tenant(service: str, sub: str) -> Tenant:
        socket, uid = TENANTS[service]
        return Tenant(
            socket=socket,
            control=str(bench_dir / sub / "traffic.ctl"),
            launch=("podman", "exec", container(service), "python3"),
            remote_control="/bench/traffic.ctl",
            uid=uid,
        )

    return MemifdTarget(
        cli=os.path.join(volume, "cli.sock"),
        pid=memifd_pid(),
        source=tenant("testpmd-a", "a"),
        sink=tenant("testpmd-c", "c"),
        port_lines=(SPAN,) if span else (),
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/containers.sh sweep",
        description="The rate sweep (memif bench-switch --rates) through memifd in its "
        "container, the source in container A, the sink in container C.",
    )
    p.add_argument("--bench-dir", type=Path, required=True, help=argparse.SUPPRESS)
    p.add_argument(
        "--rates",
        type=sweep.percent_list,
        default=sweep.percent_list("10,25,50,75,90,100"),
        metavar="P,P,..",
        help="percentages of each series' peak to offer (default 10,25,50,75,90,100)",
    )
    p.add_argument(
        "--configs",
        type=choice_list(sweep.CONFIGS, "configuration"),
        default=list(DEFAULT_CONFIGS),
        help="memifd's ports: master-copy (as deployed: memifd listens), slave-copy and "
        "slave-zc (memifd connects to the tenants, without and with its zero-copy); "
        f"default {','.join(DEFAULT_CONFIGS)}",
    )
    p.add_argument(
        "--modes",
        type=choice_list(list(sweep.MODES), "receive mode"),
        default=["adaptive"],
        help=f"memifd's rx-mode on its two ports, among {','.join(sweep.MODES)} "
        "(default adaptive, memifd's own)",
    )
    p.add_argument("--frames", type=int_list, default=[64], help="frame sizes (default 64)")
    p.add_argument("--seconds", type=positive, default=2.0, help="each window (default 2)")
    p.add_argument("--warmup", type=non_negative, default=0.5, help="before each (default 0.5)")
    p.add_argument(
        "--cpus", type=int_list, default=None, help="memifd's CPU, the traffic's CPU (default 0,1)"
    )
    p.add_argument("--no-span", action="store_true", help="do not mirror the ports to B")
    p.add_argument("--json", action="store_true", help="one JSON object per point on stdout")
    p.add_argument("--plot", default=None, metavar="FILE", help="the chart (.png or .svg)")
    return p


def main() -> int:
    args = parser().parse_args()
    try:
        configs, frames, opts = sweep.options(args)
    except ValueError as exc:
        print(f"containers.sh sweep: {exc}", file=sys.stderr)
        return 2
    try:
        tgt = target(args.bench_dir, span=not args.no_span)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"containers.sh sweep: the topology is not up: {exc}", file=sys.stderr)
        return 1
    series = [(c, m, f) for f in frames for c in configs for m in args.modes]
    span = "no SPAN" if args.no_span else "SPAN to B"
    title = f"containers.sh sweep, {time.strftime('%Y-%m-%d %H:%M')}, memifd in a container, {span}"
    return sweep.run_sweeps(
        series,
        lambda c, m, f: MemifdBench(c, m, f, opts, tgt),
        args,
        "containers.sh sweep",
        title,
    )


if __name__ == "__main__":
    sys.exit(main())
