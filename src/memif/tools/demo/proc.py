"""``memif demo``'s child processes: their environment, starting, watching and stopping them.

Every child runs in its own session (``start_new_session``), so a Ctrl-C typed in the
terminal reaches the demo only, and the demo stops the children in the order it chooses.
A child's stdout and stderr go to files, never to pipes: nobody has to drain them, and a
child can never block on a full pipe or die of SIGPIPE.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from typing import Any

from ..common import child_env

__all__ = ["Child", "DemoError", "child_env", "memif_argv"]


class DemoError(Exception):
    """The demo could not run (a process did not start, or left); the text is one line."""


def memif_argv(*args: str) -> list[str]:
    """The command line of ``memif ARGS`` run by this interpreter."""
    return [sys.executable, "-m", "memif.cli", *args]


class Child:
    """One child process, its output in ``<base>.out`` and ``<base>.err``.

    ``stdin`` is ``subprocess.DEVNULL`` or ``subprocess.PIPE`` (then closing ``proc.stdin``
    can be the child's signal to stop).
    """

    def __init__(
        self, name: str, argv: list[str], base: str, stdin: int = subprocess.DEVNULL
    ) -> None:
        self.name = name
        self.argv = argv
        self.out_path, self.err_path = base + ".out", base + ".err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                argv,
                stdin=stdin,
                stdout=out,
                stderr=err,
                env=child_env(),
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        """The child's pid."""
        return self.proc.pid

    @property
    def running(self) -> bool:
        """True while the child has not exited."""
        return self.proc.poll() is None

    def check(self) -> None:
        """Raise DemoError if the child has exited."""
        rc = self.proc.poll()
        if rc is not None:
            raise DemoError(f"{self.name} exited with status {rc}{self.stderr_tail()}")

    def stderr_tail(self) -> str:
        """``": <last line of stderr>"``, or nothing."""
        lines = _read(self.err_path).strip().splitlines()
        return (": " + lines[-1].strip()) if lines else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int:
        """Send ``sig`` if it still runs, wait ``timeout`` s, then kill; the exit status."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` s for the child to exit; its status, or None."""
        try:
            return self.proc.wait(max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            return None

    def report(self) -> dict[str, Any]:
        """The last JSON object the child printed on stdout ({} if none)."""
        found: dict[str, Any] = {}
        for line in _read(self.out_path).splitlines():
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    found = obj
        return found

    def stderr_text(self) -> str:
        """Everything the child wrote on stderr so far."""
        return _read(self.err_path)


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def ignore_signals() -> None:
    """Ignore SIGINT and SIGTERM (the final clean-up must not be cut short)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
