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


def test_ip_route_add_past_a_full_fib_is_one_line_and_keeps_the_fib(ctx: Context) -> None:
    rt = ctx.switch.runtime
    rt.ip4_fib.max_routes = len(rt.ip4_fib) + 2
    for n in range(2):
        assert execute(ctx, f"ip route add 10.9.{n}.0/24 via 10.1.0.2").ok
    before = (rt.ip4_fib.routes(), len(rt.adjacencies))
    out = _fails(ctx, "ip route add 10.9.2.0/24 via 10.1.0.3")
    assert out == f"10.9.2.0/24: the FIB holds its maximum of {rt.ip4_fib.max_routes} routes"
    assert (rt.ip4_fib.routes(), len(rt.adjacencies)) == before  # no adjacency left behind
    assert execute(ctx, "ip route add 10.9.0.0/24 via loop0").ok  # replacing one still works
    assert execute(ctx, "ip route del 10.9.1.0/24").ok
    assert execute(ctx, "ip route add 10.9.2.0/24 via 10.1.0.3").ok  # room again


def test_set_ip_neighbor_past_a_full_table_is_one_line(ctx: Context) -> None:
    neighbors = ctx.switch.neighbors
    neighbors.limit = 3
    for n in range(3):
        assert execute(ctx, f"set ip neighbor loop0 10.1.0.{10 + n} 02:00:00:00:00:0{n}").ok
    assert _fails(ctx, "set ip neighbor loop0 10.1.0.99 02:00:00:00:00:99 static") == (
        "the neighbour table is full (3 entries)"
    )
    loop0 = ctx.switch.interface("loop0").sw_if_index
    assert len(neighbors) == 3 and (loop0, bytes([10, 1, 0, 99])) not in neighbors.entries
    assert execute(ctx, "set ip neighbor loop0 10.1.0.10 02:00:00:00:00:aa static").ok  # replace
    assert execute(ctx, "set ip neighbor del loop0 10.1.0.11").ok
    assert execute(ctx, "set ip neighbor loop0 10.1.0.99 02:00:00:00:00:99").ok  # room again


def test_set_ip_neighbor_on_a_mode_ip_interface_is_refused_by_the_switch(ctx: Context) -> None:
    line = "memif1/0 is a mode ip interface: it has no neighbours (no MACs)"
    assert _fails(ctx, "set ip neighbor memif1/0 10.1.0.2 02:00:00:00:00:02") == line
    with pytest.raises(SwitchError, match="mode ip interface"):  # the switch's API, not the CLI's
        ctx.switch.ip_neighbor("memif1/0", bytes([10, 1, 0, 2]), "02:00:00:00:00:02")
    assert len(ctx.switch.neighbors) == 0


def test_a_loopback_over_its_mtu_drops_under_the_described_error(ctx: Context) -> None:
    """loop0-output checks the MTU as every interface output does, and ``show errors``
    describes the drop (the loopback's errors carry the output's own)."""
    sw = ctx.switch
    assert execute(ctx, "set interface state loop0 up").ok
    assert execute(ctx, "set interface mtu 64 loop0").ok
    idx = sw.pool.alloc(2)
    sw.pool.length[idx] = [78, 79]  # the 64-byte MTU plus the Ethernet header; one over
    node = sw.graph.nodes[sw.interface("loop0").port.output_node]
    node.process(idx)
    assert node.error_counts["mtu-exceeded"] == 1
    errors = execute(ctx, "show errors").data
    row = next(e for e in errors if e["node"] == "loop0-output")
    assert row["reason"] == "frame longer than the interface's MTU (set interface mtu)"


def test_l2fib_add_refused_by_a_learn_limit_keeps_the_entry_it_had(ctx: Context) -> None:
    """``l2fib add`` (learned) of a MAC the domain has elsewhere, onto an interface at
    its learn limit: one line, and the MAC stays where it was (learned or static)."""
    for line in (
        "create loopback interface",
        "set interface l2 bridge loop1 1",
        "create loopback interface",
        "set interface l2 bridge loop2 1",
        "set interface l2 learn-limit loop2 1",
        "l2fib add 02:00:00:00:00:01 1 loop1",
        "l2fib add 02:00:00:00:00:02 1 loop1 static",
        "l2fib add 02:00:00:00:00:09 1 loop2",  # loop2's one learned MAC
    ):
        assert execute(ctx, line).ok, line
    fib, loop1 = ctx.switch.fib, ctx.switch.interface("loop1").sw_if_index
    for mac in ("02:00:00:00:00:01", "02:00:00:00:00:02"):
        out = _fails(ctx, f"l2fib add {mac} 1 loop2")
        assert out == f"{mac} refused: loop2's or bridge domain 1's learn limit"
        key = (1 << 48) | int(mac.replace(":", ""), 16)
        assert fib.known_at(key, loop1), mac
    assert [e.static for _, _, e in sorted(fib.items())] == [False, True, False]
    assert execute(ctx, "l2fib add 02:00:00:00:00:02 1 loop1").ok  # static -> learned, kept
    assert [e.static for _, _, e in sorted(fib.items())] == [False, False, False]
