"""Fixtures shared by the test modules (helpers to import are in ``helpers.py``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from helpers import Memifd


@pytest.fixture(scope="session")
def testpmd_binary() -> str:
    """Path of DPDK testpmd (scripts/setup.sh installs it); skip without, fail under ``CI=true``."""
    from memif.tools.testpmd import INSTALL_HINT, find_testpmd

    found = find_testpmd()
    if found is None:
        why = f"DPDK testpmd is not installed (scripts/setup.sh or {INSTALL_HINT})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"required under CI: {why}")
        pytest.skip(why)
    return found


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Memifd]]:
    """``start(startup, *extra, **options)``: a ready :class:`helpers.Memifd` in ``tmp_path``;
    every daemon is killed at the end of the test."""
    from helpers import Memifd

    daemons: list[Memifd] = []

    def _start(startup: list[str], *extra: str, **options: Any) -> Memifd:
        daemons.append(Memifd(tmp_path, startup, *extra, **options))
        return daemons[-1].wait_ready()

    yield _start
    for d in daemons:
        d.kill()


@pytest.fixture
def switch_rig(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``switch_rig(cls, *args, **options)``: ``cls(folder, *args, **options)`` in a fresh
    folder under ``tmp_path`` (a :class:`helpers.SwitchRig`), closed at the end of the test."""
    rigs: list[Any] = []

    def make(cls: Callable[..., Any], *args: Any, **options: Any) -> Any:
        rigs.append(cls(tmp_path / str(len(rigs)), *args, **options))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test against DPDK testpmd is slow too: ``-m "not slow"`` leaves every one out."""
    for item in items:
        if item.get_closest_marker("testpmd") is not None:
            item.add_marker(pytest.mark.slow)
