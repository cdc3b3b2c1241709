"""A full L2 FIB refuses ``l2fib add`` with one line, and takes entries again once one goes:
a real memifd whose startup file fills the table (65536 entries, VPP's default size)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import Memifd

from memif.vswitch.l2fib import DEFAULT_LIMIT

pytestmark = pytest.mark.slow


def _mac(i: int) -> str:
    return "02:" + ":".join(f"{b:02x}" for b in i.to_bytes(5, "big"))


def test_full_l2fib_refuses_l2fib_add_with_one_line(tmp_path: Path) -> None:
    fill = [f"l2fib add {_mac(i)} 1 memif1/0 static" for i in range(DEFAULT_LIMIT)]
    d = Memifd(tmp_path, [f"create memif socket id 1 filename {tmp_path / 'a.sock'}",
                          "create interface memif id 0 socket-id 1 master",
                          "create bridge-domain 1", "set interface l2 bridge memif1/0 1",
                          *fill]).wait_ready(timeout=120)  # fmt: skip
    try:
        new = _mac(DEFAULT_LIMIT)
        full = f"the L2 FIB is full ({DEFAULT_LIMIT} entries)"
        assert d.fails(f"l2fib add {new} 1 memif1/0 static") == full
        assert d.fails(f"l2fib add {new} 1 memif1/0") == full  # a learned one neither
        r = d.ctl("l2fib", "add", new, "1", "memif1/0")
        assert (r.returncode, r.stdout, r.stderr) == (1, "", f"memifctl: {full}\n"), r
        d.ok(f"l2fib add {_mac(7)} 1 memif1/0 static")  # an entry it has: replaced, not new
        assert d.ok("show l2fib")["output"].strip() == f"{DEFAULT_LIMIT} l2fib entries"
        d.ok(f"l2fib del {_mac(7)} 1")
        d.ok(f"l2fib add {new} 1 memif1/0 static")  # room for one again
        assert d.ok("show l2fib")["output"].strip() == f"{DEFAULT_LIMIT} l2fib entries"
    finally:
        d.stop()
