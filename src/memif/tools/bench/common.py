"""What both benchmarks (``memif bench``, ``memif bench-switch``) share: option parsers and
declarations, checking them, and turning a packet count into rates and ratios."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Sequence
from typing import Any


def int_list(text: str) -> list[int]:
    """``"64,1500"`` -> ``[64, 1500]`` (an argparse type)."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, not {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one value")
    return values


def choice_list(choices: Sequence[str], what: str) -> Callable[[str], list[str]]:
    """An argparse type for a comma-separated selection among ``choices`` (no repeats)."""

    def parse(text: str) -> list[str]:
        values = [x.strip() for x in text.split(",") if x.strip()]
        bad = [v for v in values if v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(bad) or text!r}: choose from {', '.join(choices)}"
            )
        return list(dict.fromkeys(values))

    return parse


def positive(text: str) -> float:
    """A finite number above zero (an argparse type): ``inf`` would never end a window."""
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a finite positive number, not {text}")
    return value


def non_negative(text: str) -> float:
    """A finite number, zero or above (an argparse type)."""
    value = float(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, not {text}")
    return value


# ------------------------------------------------------------------------------------ options


def add_frames_arg(p: argparse.ArgumentParser) -> None:
    """``--frames LIST``: the frame sizes to measure."""
    p.add_argument(
        "--frames",
        type=int_list,
        default=[64, 1500],
        metavar="LIST",
        help="frame sizes in bytes (default 64,1500)",
    )


def add_window_args(p: argparse.ArgumentParser, *, warmup: float, before: str) -> None:
    """``--seconds`` (the measurement window) and ``--warmup`` (``before``: what it does)."""
    p.add_argument(
        "--seconds",
        type=positive,
        default=3.0,
        metavar="S",
        help="measurement time per point (default 3)",
    )
    p.add_argument(
        "--warmup",
        type=non_negative,
        default=warmup,
        metavar="S",
        help=f"time to {before} before measuring (default {warmup:g})",
    )


def add_cpus_arg(p: argparse.ArgumentParser, *, metavar: str, help: str) -> None:
    """``--cpus A,B``: the two CPUs of a run."""
    p.add_argument("--cpus", type=int_list, default=None, metavar=metavar, help=help)


def add_testpmd_json_args(p: argparse.ArgumentParser, *, json_help: str) -> None:
    """``--testpmd PATH`` and ``--json``."""
    p.add_argument("--testpmd", default=None, metavar="PATH", help="dpdk-testpmd binary")
    p.add_argument("--json", action="store_true", help=json_help)


def check_frames(frames: Sequence[int], low: int, high: int) -> None:
    """ValueError unless every frame size is ``low..high``."""
    for f in frames:
        if not low <= f <= high:
            raise ValueError(f"frame size {f} must be {low}..{high} (one buffer)")


def check_ring_size(ring: int, low: int, high: int) -> None:
    """ValueError unless ``--ring-size`` is a power of two ``low..high``."""
    if not low <= ring <= high or ring & (ring - 1):
        raise ValueError(f"--ring-size {ring} must be a power of two {low}..{high}")


def two_cpus(cpus: Sequence[int] | None, roles: str) -> tuple[int, int]:
    """``--cpus`` (default: the first two this process may use), checked: two different
    allowed CPUs, for ``roles`` (``"sender and receiver"``), else ValueError."""
    allowed = sorted(os.sched_getaffinity(0))
    cpus = list(cpus or allowed[:2])
    if len(cpus) != 2 or cpus[0] == cpus[1]:
        raise ValueError(f"need two different CPUs for {roles}, have {cpus}")
    if not set(cpus) <= set(allowed):
        raise ValueError(f"--cpus {cpus}: this process may only use CPUs {allowed}")
    return cpus[0], cpus[1]


def testpmd_binary(given: str | None, hint: str = "") -> str:
    """``--testpmd`` or the installed testpmd; ValueError (ending in ``hint``) if none."""
    from ..testpmd import INSTALL_HINT, find_testpmd

    found = given or find_testpmd()
    if found is None:
        raise ValueError(f"dpdk-testpmd not found ({INSTALL_HINT})" + hint)
    return found


def thread_schedstat(path: str = "/proc/thread-self/schedstat") -> tuple[int, int] | None:
    """(ns on a CPU, ns runnable but waiting for one) of the calling thread (or of the one
    whose schedstat file is ``path``: /proc/PID/schedstat), if available: the wait is other
    load taking the thread's CPU."""
    try:
        with open(path) as f:
            run, wait, _ = f.read().split()
        return int(run), int(wait)
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------------------------ results


def set_rates(
    result: Any,
    packets: int,
    seconds: float,
    frame: float,
    extra: dict,
    nbytes: int | None = None,
) -> None:
    """Mpps and Gbit/s (frame bytes only) from a count, plus the other figures, rounded.

    Gbit/s counts ``nbytes`` when the bytes were counted, else ``frame`` bytes per packet.
    """
    pps = packets / seconds
    result.mpps = round(pps / 1e6, 4)
    bits = (packets * frame if nbytes is None else nbytes) * 8
    result.gbps = round(bits / seconds / 1e9, 4)
    for key, value in extra.items():
        setattr(result, key, round(value, 4) if isinstance(value, float) else value)


def set_ratio(result: Any, key: Any, reference: dict, is_reference: bool) -> None:
    """Keep a reference result's Mpps under ``key``; give ``result`` its ratio to it."""
    if is_reference and result.mpps:
        reference[key] = result.mpps
    if result.mpps is not None and key in reference:
        result.ratio = round(result.mpps / reference[key], 4)
