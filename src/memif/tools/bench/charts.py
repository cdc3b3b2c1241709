"""Charts of benchmark results (``--plot FILE``), drawn with matplotlib, an optional extra.

memif's data path needs numpy alone; the charts need ``pip install 'memif[plot]'``.
:func:`pyplot` loads matplotlib without a display (the Agg backend) and says in one line what
to install when it is missing; :func:`save` writes a figure in the format its file name ends
with (``.png``, ``.svg``, ``.pdf``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FORMATS = (".png", ".svg", ".pdf")


class ChartError(ValueError):
    """A chart cannot be drawn: matplotlib is missing or the file name is not accepted."""


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    try:
        import matplotlib
    except ImportError:
        raise ChartError(
            "--plot needs matplotlib: pip install 'memif[plot]' (or matplotlib)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def check_path(path: str) -> Path:
    """The chart's path, refused unless it ends with one of :data:`FORMATS` and its
    directory exists (checked before a benchmark runs, not after)."""
    p = Path(path)
    if p.suffix.lower() not in FORMATS:
        raise ChartError(f"--plot {path}: the file name must end with {', '.join(FORMATS)}")
    if not p.parent.is_dir():
        raise ChartError(f"--plot {path}: directory {p.parent} does not exist")
    return p


def save(fig: Any, path: str) -> Path:
    """Write ``fig`` to ``path`` and close it; returns the path."""
    p = check_path(path)
    fig.savefig(p, dpi=120, bbox_inches="tight")
    pyplot().close(fig)
    return p
