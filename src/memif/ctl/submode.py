"""TNSR's ``config-memif`` sub-mode, kept by whoever reads the lines (memifctl's shell,
a script on its stdin, memifd's startup file).

``interface memif socket S interface I`` alone enters the mode (once the daemon accepted
it: the memif exists); each following line is a setting of that memif, sent as
``interface memif socket S interface I <line>`` (the one-shot form the daemon takes);
``exit`` leaves it.  The daemon itself keeps no per-client mode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ENTER = re.compile(r"^int(?:e(?:r(?:f(?:a(?:c(?:e)?)?)?)?)?)?\s+memif\s+socket\s+(\d+)\s+"
                    r"interface\s+(\d+)$")  # fmt: skip

BASE_PROMPT = "memifctl"


@dataclass
class Step:
    """What to do with one line: ``command`` to send (None: nothing), and the mode to
    enter if the daemon accepts it (``enters``)."""

    command: str | None
    enters: str | None = None


class ConfigMode:
    """The sub-mode of one reader of lines."""

    def __init__(self) -> None:
        self.prefix: str | None = None  # "interface memif socket S interface I" while in it

    @property
    def prompt(self) -> str:
        """``memifctl# `` or ``memifctl(config-memif)# ``."""
        return f"{BASE_PROMPT}(config-memif)# " if self.prefix else f"{BASE_PROMPT}# "

    def feed(self, line: str) -> Step:
        """The step for one line (stripped; blank lines and comments send nothing)."""
        text = " ".join(line.split())
        if not text or text.startswith("#"):
            return Step(None)
        if self.prefix is not None:
            if text == "exit":
                self.prefix = None
                return Step(None)
            return Step(f"{self.prefix} {text}")
        found = _ENTER.match(text)
        if found:
            sid, iid = found.groups()
            return Step(text, enters=f"interface memif socket {sid} interface {iid}")
        return Step(text)

    def accepted(self, step: Step) -> None:
        """The daemon accepted ``step``'s command: enter its mode, if it has one."""
        if step.enters is not None:
            self.prefix = step.enters
