"""Helpers shared by the test modules that run the ``memif`` command in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SRC = str(Path(__file__).resolve().parents[1] / "src")
"""This checkout's package directory: child processes import ``memif`` from here."""
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])),
}
"""The environment of a child process: ours, with :data:`SRC` first on ``PYTHONPATH``."""


def memif_argv(*args: str) -> list[str]:
    """The command line of ``memif ARGS`` run by this interpreter."""
    return [sys.executable, "-m", "memif.cli", *args]


def memif_popen(*args: str, **popen: Any) -> subprocess.Popen:
    """``memif ARGS`` as a child process, stdout and stderr piped as text (``popen`` overrides)."""
    opts = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "env": ENV}
    return subprocess.Popen(memif_argv(*args), **(opts | popen))
