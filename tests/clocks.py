"""Clocks to inject where the code takes ``clock=`` (``memif.Socket``): time that a test moves,
so a deadline is checked exactly, not against a wall clock a loaded machine can stall."""

from __future__ import annotations

import time


class ManualClock:
    """Time that stands still until the test moves it (starts at ``start`` seconds)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the time forward by ``seconds``."""
        self.now += seconds


class StoppableClock:
    """``time.monotonic``, held still from :meth:`stop` to :meth:`run`."""

    def __init__(self) -> None:
        self.stopped_at: float | None = None

    def __call__(self) -> float:
        return time.monotonic() if self.stopped_at is None else self.stopped_at

    def stop(self) -> None:
        """Hold the time still: no deadline passes meanwhile."""
        self.stopped_at = time.monotonic()

    def run(self) -> None:
        """Let the time run again (forward only: monotonic time went on)."""
        self.stopped_at = None
