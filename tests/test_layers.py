"""The import contracts in pyproject.toml bite: each forbidden import, planted in a copy of the
source tree, breaks them (scripts/test.sh checks the real tree with ``lint-imports``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` in ``tree`` (its pyproject.toml holds the contracts) over the ``memif``
    package under ``tree/src``."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())",
            "--no-cache",
            "--no-logo",
        ],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree / "src")},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of pyproject.toml and src/memif that a test may add imports to."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(
        ROOT / "src" / "memif",
        tmp_path / "src" / "memif",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp_path


def plant(tree: Path, module: str, code: str) -> None:
    """Append ``code`` to ``module`` (a path under src/memif) in the copied tree."""
    path = tree / "src" / "memif" / module
    path.write_text(path.read_text() + "\n\n" + code + "\n")


def test_the_copied_tree_keeps_every_contract(tree: Path) -> None:
    """The control: the copy as it stands breaks nothing, so a failure below is the plant's."""
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "code", "broken"),
    [
        # the core imports nothing of the tools ...
        ("sock.py", "from .tools import common", "memif.sock -> memif.tools.common"),
        ("wire.py", "from . import cli", "memif.wire -> memif.cli"),
        ("packet.py", "from .tools.testpmd import Testpmd", "memif.packet -> memif.tools.testpmd"),
        # ... nor of the switch, not even inside a function
        ("queue/rx.py", "def f():\n    from ..vswitch import pool", "memif.queue.rx -> "),
        ("aio.py", "from .daemon import parse", "memif.aio -> memif.daemon.parse"),
        ("testing.py", "from .ctl.main import main", "memif.testing -> memif.ctl.main"),
        # the core imports nothing of the packet layer above it
        ("sock.py", "from . import classify", "memif.sock -> memif.classify"),
        ("queue/rx.py", "from .. import pcap", "memif.queue.rx -> memif.pcap"),
        # the package's own __init__.py is the core too
        ("__init__.py", "from .vswitch import tables", "memif -> memif.vswitch.tables"),
        # the switch imports nothing of the tools
        ("vswitch/switch.py", "from ..tools import gen", "memif.vswitch.switch -> memif.tools.gen"),
        ("daemon/show.py", "from .. import cli", "memif.daemon.show -> memif.cli"),
        # memifctl imports nothing of the daemon or the switch engine
        ("ctl/main.py", "from ..daemon import parse", "memif.ctl.main -> memif.daemon.parse"),
        ("ctl/main.py", "from ..vswitch import tables", "memif.ctl.main -> memif.vswitch.tables"),
        # the engine imports nothing of its control plane
        ("vswitch/tables.py", "from ..daemon import parse", "memif.vswitch.tables -> "),
        ("vswitch/tables.py", "from ..ctl import main", "memif.vswitch.tables -> memif.ctl.main"),
    ],
)
def test_a_forbidden_import_breaks_the_contracts(
    tree: Path, module: str, code: str, broken: str
) -> None:
    plant(tree, module, code)
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout
    assert broken in result.stdout


def test_a_module_in_no_layer_breaks_the_contracts(tree: Path) -> None:
    """Every child of ``memif`` must be placed in a layer, so a new one cannot slip by."""
    (tree / "src" / "memif" / "stray.py").write_text('"""Placed in no layer."""\n')
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "memif.stray" in result.stdout
