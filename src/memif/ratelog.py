"""Log lines a peer can trigger at packet rate, at most one per key and period.

A refusal that repeats every packet, connection or loop turn (a full MAC table, a
port whose handling keeps failing, a uid knocking on a socket it may not use) must
be visible in the log without the log growing at that rate.  :class:`PerKeyLog`
writes the first occurrence of a key at once, then at most one line per ``period``
seconds with how many were suppressed.  Each key has its own budget, so a flood
from one peer cannot hide another peer's first line; the number of keys is
bounded, since a peer may vary what goes into them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable

__all__ = ["PerKeyLog"]


class PerKeyLog:
    """``log(key, msg, *args)``: at most one line per key and ``period`` seconds."""

    def __init__(
        self,
        logger: logging.Logger,
        period: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1024,
    ) -> None:
        self.logger = logger
        self.period = period
        self.clock = clock
        self.max_keys = max_keys
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}

    def log(
        self,
        key: Hashable,
        msg: str,
        *args: object,
        level: int = logging.WARNING,
        exc_info: bool = False,
    ) -> bool:
        """Log now unless ``key`` was logged less than ``period`` ago; True when logged."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        if last is None and len(self._last) >= self.max_keys:  # keys a peer can vary
            self._last.clear()
            self._suppressed.clear()
        self._last[key] = now
        skipped = self._suppressed.pop(key, 0)
        if skipped:
            msg += " (%d more like this in the last %.0f s)"
            args = (*args, skipped, self.period)
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True
