"""The Interface facade over real sockets and shared memory: listeners, admin state
and ``details()``."""

from __future__ import annotations

import logging

import pytest

import memif
from memif.testing import drive, pair


def test_two_listeners_both_called_in_order() -> None:
    calls: list[tuple[str, str, str]] = []
    with pair(connect=False) as (server, client):
        for tag in ("first", "second"):
            server.add_listener(
                on_connect=lambda i, tag=tag: calls.append((tag, "up", i.name)),
                on_disconnect=lambda i, r, tag=tag: calls.append((tag, "down", r)),
            )
        ss, cs = server.socket, client.socket
        assert drive(ss, cs, until=lambda: server.connected and client.connected)
        assert calls == [("first", "up", server.name), ("second", "up", server.name)]
        client.disconnect("bye")
        assert drive(ss, cs, until=lambda: not server.connected)
        assert calls[2:] == [("first", "down", "bye"), ("second", "down", "bye")]


def test_constructor_callbacks_are_the_first_listener() -> None:
    calls: list[str] = []
    with memif.Socket(memif.testing.unique_name()) as ss, memif.Socket(ss.path) as cs:
        server = ss.create_interface(
            role="server",
            on_connect=lambda i: calls.append("option up"),
            on_disconnect=lambda i, r: calls.append(f"option down {r}"),
        )
        server.add_listener(on_connect=lambda i: calls.append("added up"))
        client = cs.create_interface(role="client", reconnect_interval=None)
        assert drive(ss, cs, until=lambda: server.connected and client.connected)
        client.disconnect("gone")
        assert drive(ss, cs, until=lambda: not server.connected)
    assert calls == ["option up", "added up", "option down gone"]


def test_removed_listener_is_not_called() -> None:
    calls: list[str] = []
    with pair(connect=False) as (server, client):
        kept = server.add_listener(on_connect=lambda i: calls.append("kept"))
        gone = server.add_listener(on_connect=lambda i: calls.append("gone"))
        gone.remove()
        gone.remove()  # twice: nothing more
        assert kept.active and not gone.active
        assert drive(server.socket, client.socket, until=lambda: server.connected)
    assert calls == ["kept"]


def test_a_raising_listener_stops_neither_the_others_nor_the_socket(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    def broken(iface: memif.Interface, reason: str = "") -> None:
        raise RuntimeError("listener bug")

    with caplog.at_level(logging.ERROR, logger="memif"), pair(connect=False) as (server, client):
        server.add_listener(on_connect=broken, on_disconnect=broken)
        server.add_listener(
            on_connect=lambda i: calls.append("up"),
            on_disconnect=lambda i, r: calls.append(f"down {r}"),
        )
        ss, cs = server.socket, client.socket
        assert drive(ss, cs, until=lambda: server.connected and client.connected)
        assert calls == ["up"] and server.listener_errors == 1
        assert client.send([b"x" * 60]) == 1  # the data path works
        got: list[bytes] = []
        assert drive(ss, cs, until=lambda: bool(got.extend(server.recv()) or got))
        assert got == [b"x" * 60]
        client.disconnect("bye")
        assert drive(ss, cs, until=lambda: not server.connected)
        assert calls == ["up", "down bye"] and server.listener_errors == 2
        # The disconnect completed: memory released, and the client comes back.
        assert server.rx_queues == [] and server.regions == []
        assert drive(ss, cs, until=lambda: server.connected and client.connected, timeout=5)
        assert server.connect_count == 2 and server.listener_errors == 3
    assert any("listener raised" in r.getMessage() and r.exc_info for r in caplog.records)
