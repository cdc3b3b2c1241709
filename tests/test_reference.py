"""What is generated from the code's own tables matches them: memifctl's offline command
reference equals the daemon's registry, the man pages equal what the parsers generate and
render without troff warnings (scripts/reference.py writes both)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ENV

from memif.ctl.main import command_reference
from memif.daemon import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
FIX = "run: python scripts/reference.py"


def _generator():
    spec = importlib.util.spec_from_file_location("reference", ROOT / "scripts" / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_offline_reference_is_the_registry() -> None:
    shipped = sorted(command_reference(), key=lambda c: c["path"])
    assert shipped == sorted(REGISTRY.describe(), key=lambda c: c["path"]), FIX
    assert (ROOT / "src/memif/ctl/commands.json").read_text() == _generator().command_reference()


def test_memifctl_lists_commands_without_a_daemon(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "memif.ctl.main", "-s", str(tmp_path / "none.sock")]
    r = subprocess.run([*argv, "--commands"], env=ENV, capture_output=True, text=True,
                       timeout=30)  # fmt: skip
    assert r.returncode == 0, r.stderr
    for c in REGISTRY.describe():
        assert " ".join([*c["path"], c["usage"]]).rstrip() in r.stdout.splitlines()
    r = subprocess.run([*argv, "--json", "--commands"], env=ENV, capture_output=True,
                       text=True, timeout=30)  # fmt: skip
    assert len(json.loads(r.stdout)) == len(REGISTRY.describe())


@pytest.mark.slow
def test_man_pages_are_generated_and_render() -> None:
    pages = _generator().man_pages()
    assert set(pages) == {"memifd.8", "memifctl.8", "memif.1"}
    for name, text in pages.items():
        assert (ROOT / "docs" / "man" / name).read_text() == text, f"{name} is stale: {FIX}"
    assert shutil.which("man"), "man (Debian's man-db) renders the pages"
    for name in pages:
        r = subprocess.run(["man", "--warnings", "-l", str(ROOT / "docs" / "man" / name)],
                           capture_output=True, text=True, timeout=60,
                           env={**ENV, "MANWIDTH": "200", "MAN_KEEP_STDERR": "1"})  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "warning" not in r.stderr, f"{name}: {r.stderr}"
    page = str(ROOT / "docs/man/memifd.8")
    memifd = subprocess.run(["man", "-l", page], capture_output=True, text=True, timeout=60,
                            env={**ENV, "MANWIDTH": "200"}).stdout  # fmt: skip
    assert "--metrics" in memifd and "SIGHUP reopens" in memifd
    memifctl = (ROOT / "docs/man/memifctl.8").read_text()
    assert "set interface state" in memifctl and "show logging" in memifctl
