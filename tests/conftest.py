"""Fixtures shared by the test modules (helpers to import are in ``helpers.py``)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def testpmd_binary() -> str:
    """Path of DPDK testpmd, installed on demand; skip without it (fail when ``CI=true``)."""
    from memif.testpmd import ensure_testpmd

    try:
        return ensure_testpmd()
    except RuntimeError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"DPDK testpmd is required under CI and is unavailable: {exc}")
        pytest.skip(f"DPDK testpmd unavailable: {exc}")
