"""What both benchmarks (``memif bench``, ``memif bench-switch``) share: option parsers
and turning a packet count into rates."""

from __future__ import annotations

import argparse
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
    """A number above zero (an argparse type)."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, not {text}")
    return value


def set_rates(result: Any, packets: int, seconds: float, frame: int, extra: dict) -> None:
    """Mpps and Gbit/s (frame bytes only) from a count, plus the other figures, rounded."""
    pps = packets / seconds
    result.mpps = round(pps / 1e6, 4)
    result.gbps = round(pps * frame * 8 / 1e9, 4)
    for key, value in extra.items():
        setattr(result, key, round(value, 4) if isinstance(value, float) else value)
