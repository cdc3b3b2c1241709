"""The routing commands against their tables' bounds: a CLI client adding routes or
neighbours past the limit gets one line naming it, and the switch keeps what it had.

A real switch in-process with a loopback (no peer needed) and a mode ip memif; the
limits are the real tables' own, set small so a test reaches them in a few commands.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memif.daemon import Context, execute
from memif.vswitch.switch import Switch, SwitchError


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    sw = Switch(str(tmp_path / "run"), n_buffers=256, data_size=2048)
    try:
        sw.create_socket(1, str(tmp_path / "memif.sock"))
        sw.create_memif(id=0, socket_id=1, role="master", mode="ip")
        loop = sw.create_loopback()
        sw.set_ip(loop.name, bytes([10, 1, 0, 1]), 24)
        yield Context(sw)
    finally:
        sw.close()


def _fails(ctx: Context, line: str) -> str:
    reply = execute(ctx, line)
    assert not reply.ok and "\n" not in reply.output and "Traceback" not in reply.output
    return reply.output


def test_set_ip_neighbor_on_a_mode_ip_interface_is_refused_by_the_switch(ctx: Context) -> None:
    line = "memif1/0 is a mode ip interface: it has no neighbours (no MACs)"
    assert _fails(ctx, "set ip neighbor memif1/0 10.1.0.2 02:00:00:00:00:02") == line
    with pytest.raises(SwitchError, match="mode ip interface"):  # the switch's API, not the CLI's
        ctx.switch.ip_neighbor("memif1/0", bytes([10, 1, 0, 2]), "02:00:00:00:00:02")
    assert len(ctx.switch.neighbors) == 0
