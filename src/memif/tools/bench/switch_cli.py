"""``memif bench-switch``'s command line: its options, the plan of configurations and frame
sizes, the run with its progress lines and ``--json``, and the table (the measurements are
:mod:`memif.tools.bench.switch`'s; ``--rates`` hands over to :mod:`memif.tools.bench.sweep`)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from ...vswitch.memif_port import DEFAULT_VECTOR
from . import open_path, sweep
from .common import (
    add_cpus_arg,
    add_testpmd_json_args,
    add_window_args,
    check_ring_size,
    choice_list,
    set_ratio,
    testpmd_binary,
    two_cpus,
)
from .switch import (
    BUFFER_SIZE,
    CONFIGS,
    IMIX,
    MAX_FRAME,
    MAX_RING,
    MIN_FRAME,
    MIN_RING,
    REFERENCE,
    RING_SLOTS,
    ROUTED_TARGET,
    Config,
    Frame,
    Options,
    Result,
    measure,
)


def frame_list(text: str) -> list[Frame]:
    """``"64,9000,imix"`` -> ``[64, 9000, "imix"]``, each size checked (an argparse type)."""
    out: list[Frame] = []
    for item in (x.strip().lower() for x in text.split(",")):
        if item == IMIX:
            out.append(IMIX)
        elif item.isdigit() and MIN_FRAME <= int(item) <= MAX_FRAME:
            out.append(int(item))
        elif item:
            raise argparse.ArgumentTypeError(
                f"frame {item!r}: expected a size {MIN_FRAME}..{MAX_FRAME} or {IMIX}"
            )
    if not out:
        raise argparse.ArgumentTypeError("expected at least one frame size")
    return list(dict.fromkeys(out))


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``bench-switch`` subcommand on ``subparsers`` and return its parser."""
    p = subparsers.add_parser(
        "bench-switch",
        help="bridge throughput of the Python switch in a testpmd loop",
        description=(
            "Measure packets per second bridged by the Python switch between two memif ports "
            "of one testpmd in io forwarding with a primed loop, beside the same loop with a "
            "second testpmd in the middle (the reference). Configurations: "
            + "; ".join(f"{c.name}: {c.description}" for c in CONFIGS.values())
            + ". Frames above 2048 bytes are chained over 2048-byte buffers; imix is 64, 570 "
            "and 1518 bytes in 7:4:1. Gbit/s = frame bytes counted * 8 / seconds. With "
            "--rates: the rate sweep instead, the switch's throughput, CPU, drops and latency "
            "at percentages of its peak (no testpmd needed)."
        ),
    )
    p.add_argument(
        "--frames",
        type=frame_list,
        default=None,
        metavar="LIST",
        help=f"frame sizes in bytes ({MIN_FRAME}..{MAX_FRAME}, chained above {BUFFER_SIZE}) "
        f"or {IMIX} (64/570/1518 bytes in 7:4:1), default 64,1500 (with --rates: 64, and "
        f"at most {sweep.MAX_FRAME})",
    )
    p.add_argument(
        "--configs",
        type=choice_list(list(CONFIGS), "configuration"),
        default=None,
        metavar="LIST",
        help=f"configurations (default {','.join(CONFIGS)}; with --rates: "
        f"{','.join(sweep.DEFAULT_CONFIGS)}, among {','.join(sweep.CONFIGS)})",
    )
    p.add_argument(
        "--rates",
        type=sweep.percent_list,
        default=None,
        metavar="LIST",
        help="the rate sweep instead of the loop: offer these percentages of each "
        "configuration's measured peak (e.g. 10,25,50,75,100) from a rate-limited Python "
        "source through the switch to a Python sink; per point offered and delivered rate, "
        "drops by reason, the switch's CPU and latency p50/p99",
    )
    p.add_argument(
        "--modes",
        type=choice_list(list(sweep.MODES), "receive mode"),
        default=list(sweep.MODES),
        metavar="LIST",
        help=f"the switch's receive modes in the sweep (default {','.join(sweep.MODES)})",
    )
    p.add_argument(
        "--plot",
        default=None,
        metavar="FILE",
        help="with --rates: draw delivered rate, CPU and latency against the offered rate "
        "into FILE (.png, .svg or .pdf; needs matplotlib)",
    )
    add_window_args(p, warmup=1.0, before="forward")
    p.add_argument(
        "--prime",
        type=int,
        default=48,
        metavar="N",
        help="bursts (of 32) the loop driver sends on each port to prime the loop "
        "(start tx_first N, default 48)",
    )
    p.add_argument(
        "--flood",
        action="store_true",
        help="leave destination MACs unknown so the switch floods every packet "
        "(default: each port's packets go to the other port's MAC, learned unicast)",
    )
    p.add_argument(
        "--vector-size",
        type=int,
        default=DEFAULT_VECTOR,
        metavar="N",
        help=f"descriptors memif-input takes per queue and turn (default {DEFAULT_VECTOR}, "
        "as memifd; VPP's frames hold 256)",
    )
    p.add_argument(
        "--rx-mode",
        choices=sweep.MODES,
        default="adaptive",
        help="the switch's rx-mode in the loop (default adaptive, as memifd; a primed loop "
        "has a fixed number of frames in flight: adaptive's naps hold it back where the "
        "switch is not the bottleneck, polling measures the switch's own peak)",
    )
    p.add_argument(
        "--ring-size",
        type=int,
        default=RING_SLOTS,
        metavar="N",
        help=f"slots of every ring, testpmd's and the switch's (default {RING_SLOTS}): chained "
        "frames are primed with at most one ring's worth of bursts, so larger rings let the "
        "loop hold more jumbo frames",
    )
    add_cpus_arg(
        p,
        metavar="SWITCH,LOOP",
        help="CPU of the switch (or the middle testpmd's forwarding lcore) and of the loop "
        "driver's forwarding lcore (default: the first two allowed)",
    )
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="profile the switch over each window with cProfile and print the top N "
        "functions on stderr (slows the switch down)",
    )
    add_testpmd_json_args(p, json_help="print JSON Lines, one per measurement (or point)")
    p.set_defaults(func=run)
    return p


def _options(args: argparse.Namespace) -> Options:
    if not 1 <= args.prime <= 1024:
        raise ValueError(f"--prime {args.prime} must be 1..1024")
    if args.profile < 0:
        raise ValueError("--profile must be >= 0")
    if not 1 <= args.vector_size <= 1 << 16:
        raise ValueError(f"--vector-size {args.vector_size} must be 1..{1 << 16}")
    check_ring_size(args.ring_size, MIN_RING, MAX_RING)
    switch_cpu, loop_cpu = two_cpus(args.cpus, "the switch and the loop")
    testpmd = testpmd_binary(args.testpmd)
    return Options(
        seconds=args.seconds,
        warmup=args.warmup,
        prime=args.prime,
        flood=args.flood,
        vector_size=args.vector_size,
        ring_size=args.ring_size,
        rx_mode=args.rx_mode,
        switch_cpu=switch_cpu,
        loop_cpu=loop_cpu,
        profile=args.profile,
        testpmd=testpmd,
    )


def plan(frames: Sequence[Frame], configs: Sequence[str]) -> list[tuple[Config, Frame]]:
    """Every measurement, the reference first at each frame size (bridged before routed;
    the open paths send one frame size, not imix)."""
    order = [CONFIGS[c] for c in CONFIGS if c in configs]
    return [(c, f) for f in frames for c in order if not (c.path and f == IMIX)]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def format_table(results: Sequence[Result]) -> str:
    """The human-readable summary, one ``show runtime``-like block per switch measurement."""
    head = (
        f"{'config':<12} {'frame':>5} {'Mpps':>8} {'Gbit/s':>8} {'ratio':>6} "
        f"{'cpu':>5} {'busy':>5} {'runq':>5} {'load':>5}"
    )
    lines = [head]
    for r in results:
        if r.error is not None:
            lines.append(f"{r.config:<12} {r.frame:>5}   failed: {r.error.splitlines()[0]}")
            continue
        ratio = next((f"{x:.3f}" for x in (r.ratio, r.vs_bridged) if x is not None), "-")
        lines.append(
            f"{r.config:<12} {r.frame:>5} {r.mpps:>8.3f} {r.gbps:>8.2f} {ratio:>6} "
            f"{_pct(r.cpu):>5} {_pct(r.busy):>5} {_pct(r.runq):>5} {r.loadavg[0]:>5.2f}"
        )
    for r in results:
        if r.error is not None or not r.nodes:
            continue
        lines += ["", f"{r.config} frame {r.frame} ({r.description}):"]
        lines.append(
            f"  {'Name':<20} {'Calls':>8} {'Vectors':>10} {'Vectors/Call':>12} "
            f"{'ns/packet':>10} {'Clocks/packet':>13}"
        )
        for name, n in r.nodes.items():
            lines.append(
                f"  {name:<20} {n['calls']:>8} {n['vectors']:>10} {n['vectors_per_call']:>12.2f} "
                f"{n['ns_per_packet']:>10.1f} {n['clocks_per_packet']:>13.1f}"
            )
        if r.errors:
            lines.append("  errors: " + ", ".join(f"{k} {v}" for k, v in r.errors.items()))
    lines += [
        "",
        "Mpps = packets forwarded in both directions per second (switch: rx of both its ports; "
        "reference: rx of both ports of the middle testpmd).",
        "bridged, routed: the open path, packets the switch sent out of memif1/1 per second "
        "(one direction).",
        "Gbit/s = frame bytes * 8 * packets/s; ratio = Mpps / reference Mpps at the same frame "
        "(routed: / bridged Mpps).",
        "cpu = process CPU time / wall; busy = switch busy_ns / wall; runq = time the switch "
        "waited for its CPU / wall;",
        "load = 1-minute load average after the measurement.",
    ]
    lines += [
        f"routed/bridged at {r.frame} B: {r.vs_bridged:.3f} (target >= {ROUTED_TARGET}: "
        f"{'met' if r.vs_bridged >= ROUTED_TARGET else 'not met'})"
        for r in results
        if r.vs_bridged is not None
    ]
    lines += open_path_notes(results)
    return "\n".join(lines)


def open_path_notes(results: Sequence[Result]) -> list[str]:
    """The open path's caveats: a sink-limited row, and routed/bridged per busy second."""
    lines = []
    busy: dict[tuple[str, Frame], float] = {}
    for r in results:
        if r.error is not None or r.sink_refused is None or not r.packets:
            continue
        if r.busy_mpps:
            busy[(r.config, r.frame)] = r.busy_mpps
        share = r.sink_refused / r.packets
        if share > open_path.SINK_LIMITED:
            lines.append(
                f"{r.config} at {r.frame} B is sink-limited: the sink refused {share:.0%} of "
                "what the switch forwarded (counted in Mpps)"
                + (f", the switch busy {_pct(r.busy)}" if r.busy is not None else "")
                + ("; routed/bridged overstates routing" if r.config == open_path.BRIDGED else "")
            )
    for (config, frame), mpps in busy.items():
        base = busy.get((open_path.BRIDGED, frame))
        if config == open_path.ROUTED and base:
            lines.append(
                f"per second the switch was busy at {frame} B: bridged {base:.3f} Mpps, "
                f"routed {mpps:.3f} Mpps, routed/bridged {mpps / base:.3f}"
            )
    return lines


def run(args: argparse.Namespace) -> int:
    """Run ``memif bench-switch``; returns 0, 1 if a measurement failed, 2 on bad options."""
    if args.rates is not None:
        return sweep.run(args)
    try:
        if args.plot is not None:
            raise ValueError("--plot draws the rate sweep: give --rates too")
        opts = _options(args)
    except ValueError as exc:
        print(f"memif bench-switch: {exc}", file=sys.stderr)
        return 2
    points = plan(args.frames or [64, 1500], args.configs or list(CONFIGS))
    results: list[Result] = []
    reference: dict[Frame, float] = {}
    bridged: dict[Frame, float] = {}  # the open path's bridged Mpps, for routed's ratio
    opts.workdir = tempfile.mkdtemp(prefix="memif-bench-switch-")
    try:
        for i, (config, frame) in enumerate(points, 1):
            label = f"[{i}/{len(points)}] {config.name} frame={frame}"

            def log(text: str, label: str = label) -> None:
                print(f"{label}: {text}", file=sys.stderr, flush=True)

            log(f"{config.description}; measuring {opts.seconds:g} s ...")
            r = measure(config, frame, opts, log)
            if config.path is None:
                set_ratio(r, frame, reference, config.name == REFERENCE)
            else:
                set_ratio(r, frame, bridged, config.path == open_path.BRIDGED)
                r.vs_bridged, r.ratio = r.ratio if config.path == open_path.ROUTED else None, None
            if r.error is None:
                ratio = "" if r.ratio is None else f", ratio {r.ratio:.3f}"
                if r.vs_bridged is not None:
                    ratio = f", routed/bridged {r.vs_bridged:.3f}"
                cpu = "" if r.cpu is None else f", cpu {_pct(r.cpu)}, busy {_pct(r.busy)}"
                log(f"{r.mpps:.3f} Mpps, {r.gbps:.2f} Gbit/s{ratio}{cpu}, load {r.loadavg[0]}")
                if r.sink_refused:
                    log(f"the sink refused {r.sink_refused} (counted), busy Mpps {r.busy_mpps}")
                if r.runq is not None and r.runq > 0.1:
                    log(
                        f"warning: the switch waited {_pct(r.runq)} of the window for its CPU "
                        "(other load on the machine): this figure is unreliable"
                    )
            else:
                log(f"failed: {r.error}")
            results.append(r)
            if args.json:
                print(json.dumps(asdict(r)), flush=True)
    finally:
        shutil.rmtree(opts.workdir, ignore_errors=True)
    if not args.json:
        print(format_table(results))
    return 1 if any(r.error for r in results) else 0
