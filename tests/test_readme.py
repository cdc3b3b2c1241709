"""The README's Python snippets run verbatim, in order, in one fresh interpreter (as a reader
following the page would run them), and print what their comments say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ENV

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"


def snippets() -> list[str]:
    """Every ```python block of the README, in order."""
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)


def test_readme_snippets_run_verbatim(tmp_path: Path) -> None:
    blocks = snippets()
    assert len(blocks) >= 8
    script = "\n".join(f"# --- snippet {i}\n{b}" for i, b in enumerate(blocks, 1))
    (tmp_path / "readme.py").write_text(script)
    r = subprocess.run([sys.executable, "readme.py"], cwd=tmp_path, env=ENV,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout.splitlines()
    assert out[0] == "[64, 9000]"  # the first snippet's comment
    assert any(line.startswith("tx queue 0 of ") and "disconnected" in line for line in out), out
    assert "8 frames echoed" in out
    assert out[-1] == "ANSWER_ARP", out
