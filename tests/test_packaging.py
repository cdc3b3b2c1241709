"""The package as pip users get it: an sdist holding what its tests need (they run from it),
a wheel installed into a fresh venv whose commands work, metadata with the licence and
classifiers, and the long description's example run by that venv's Python."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

import pytest

import memif

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
_SKIP = shutil.ignore_patterns(".venv", ".git", "*.egg-info", "__pycache__", ".*_cache",
                               ".hypothesis", "build", "dist")  # fmt: skip


_METADATA = """
from importlib.metadata import metadata
m = metadata("memif")
print(m["License-Expression"])
print(*m.get_all("Classifier"), *m.get_all("License-File"), sep="\\n")
print(m["Description"][:40])
"""


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 600) -> str:
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{argv}: {r.stdout[-2000:]}{r.stderr[-2000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist built from a copy of this checkout (the tree is left untouched)."""
    tmp = tmp_path_factory.mktemp("pkg")
    tree = tmp / "tree"
    shutil.copytree(ROOT, tree, ignore=_SKIP)
    out = tmp / "dist"
    _run([sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(tree)])
    (path,) = out.glob("memif-*.tar.gz")
    return path


def test_sdist_holds_what_the_tests_and_docs_need(sdist: Path) -> None:
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for want in ("LICENSE", "README.md", "SECURITY.md", "docs/pypi.md", "pyproject.toml",
                 "tests/conftest.py", "tests/helpers.py", "tests/footprint.py",
                 "tests/clocks.py", "scripts/setup.sh", "deploy/memifd.conf",
                 "src/memif/py.typed", "src/memif/__main__.py"):  # fmt: skip
        assert want in names, f"{want} missing from {sdist.name}"
    assert not any("__pycache__" in n for n in names)


def test_tests_run_from_the_sdist(sdist: Path, tmp_path: Path) -> None:
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    (top,) = tmp_path.iterdir()
    out = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "tests/test_wire.py", "tests/test_pair.py"], cwd=top)  # fmt: skip
    assert re.search(r"\d+ passed", out), out


def test_wheel_in_a_fresh_venv(sdist: Path, tmp_path: Path) -> None:
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "src", filter="data")
    (top,) = (tmp_path / "src").iterdir()
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(wheels), str(top)])
    (wheel,) = wheels.glob("memif-*.whl")
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    bin_ = env / "bin"
    _run([str(bin_ / "pip"), "install", "-q", str(wheel)])  # numpy from the registry
    version = memif.__version__
    for argv in (["memifd", "--version"], ["memifctl", "--version"], ["memif", "--version"]):
        assert _run([str(bin_ / argv[0]), *argv[1:]]).strip().endswith(version), argv
    assert "bench-latency" in _run([str(bin_ / "python"), "-m", "memif", "--help"])
    meta = _run([str(bin_ / "python"), "-c", _METADATA])
    assert meta.startswith("Apache-2.0\n"), meta
    assert "Operating System :: POSIX :: Linux" in meta and "Typing :: Typed" in meta
    assert "LICENSE" in meta.splitlines() and "# memif for Python" in meta
    # the long description's example, run by the fresh venv's Python
    pypi = (ROOT / "docs" / "pypi.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", pypi, re.S)
    out = _run([str(bin_ / "python"), "-c", example], cwd=tmp_path)
    assert out.splitlines() == ["[64, 9000]", "256 (256, 14)"], out
