"""The Interface facade over real sockets and shared memory: listeners, admin state
and ``details()``."""

from __future__ import annotations

import errno
import logging
import os
import select
import subprocess

import pytest
from clocks import ManualClock
from footprint import footprint
from helpers import ENV, memif_argv

import memif
from memif import wire
from memif.testing import drive, pair, unique_name


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


@pytest.mark.slow
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


# --------------------------------------------------------------------------- admin state
def readable(fd: int) -> bool:
    """``fd`` polls readable right now."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def test_client_admin_down_disconnects_and_up_reconnects_at_once() -> None:
    clock = ManualClock()
    path = unique_name()
    with memif.Socket(path) as ss, memif.Socket(path, clock=clock) as cs:
        server = ss.create_interface(role="server")
        client = cs.create_interface(role="client", reconnect_interval=60.0)
        assert drive(ss, cs, until=lambda: server.connected and client.connected)
        assert client.admin_up and client.enabled and client.next_retry is None

        client.set_admin(False)
        assert drive(ss, cs, until=lambda: not server.connected)
        assert server.remote_disc_reason == "interface admin down"
        assert client.local_disc_reason == "interface admin down"
        assert not client.admin_up and not client.enabled and client.next_retry is None
        clock.advance(3600)  # however long: an admin-down client does not retry
        assert not drive(ss, cs, until=lambda: client.state != "disconnected", timeout=0.2)
        assert cs.next_timeout() is None

        while readable(cs.fileno()):
            cs.poll(0)
        client.set_admin(True)
        assert readable(cs.fileno())  # the socket was woken: a foreign loop polls it
        assert client.admin_up and client.next_retry == clock.now  # due now, not in 60 s
        assert drive(ss, cs, until=lambda: server.connected and client.connected)
        assert client.connect_count == server.connect_count == 2


def test_server_admin_down_refuses_until_up() -> None:
    clock = ManualClock()
    path = unique_name()
    with memif.Socket(path) as ss, memif.Socket(path, clock=clock) as cs:
        server = ss.create_interface(role="server")
        client = cs.create_interface(role="client", reconnect_interval=1.0)
        assert drive(ss, cs, until=lambda: server.connected and client.connected)
        server.set_admin(False)
        assert drive(ss, cs, until=lambda: not client.connected)
        assert client.remote_disc_reason == "interface admin down"
        clock.advance(1.0)  # the client's retry is refused while the server is down
        assert drive(ss, cs, until=lambda: client.remote_disc_reason == "interface is down")
        assert not server.connected and server.connect_count == 1
        server.set_admin(True)
        clock.advance(1.0)
        assert drive(ss, cs, until=lambda: server.connected and client.connected)
        assert server.connect_count == 2


def test_reconnect_state_is_read_only() -> None:
    with pair() as (server, client):
        for name, value in (
            ("enabled", False),
            ("admin_up", False),
            ("next_retry", 0.0),
            ("name", "other"),
            ("rx_queues", []),
            ("socket", None),
        ):
            with pytest.raises(AttributeError):
                setattr(client, name, value)
        with pytest.raises(AttributeError):
            client.local_disc_reason = "mine"  # type: ignore[misc]


def test_deleted_interface_refuses_set_admin() -> None:
    with memif.Socket(unique_name()) as ss:
        server = ss.create_interface(role="server")
        kept = ss.create_interface(role="server", id=1)
        assert not server.deleted
        server.delete()
        server.delete()  # twice: nothing more
        assert ss.interfaces == {1: kept} and server.deleted and not server.admin_up
        assert not kept.deleted
        with pytest.raises(memif.ConfigError, match="deleted"):
            server.set_admin(True)
        server.disconnect()  # nothing to end: does nothing
    assert kept.deleted  # the socket closed


# --------------------------------------------------------------------------- details
def test_details_before_and_after_connect() -> None:
    path = unique_name()
    with memif.Socket(path) as ss, memif.Socket(path) as cs:
        server = ss.create_interface(role="server", id=3, rx_queues=2, tx_queues=1)
        client = cs.create_interface(
            role="client", id=3, rx_queues=1, tx_queues=2, reconnect_interval=None
        )
        fds_before = footprint().fds
        for iface in (server, client):
            d = iface.details()
            assert d.state == "disconnected" and d.rings == [] and d.regions == []
            assert d.control_fd is None and d.connect_count == 0 and d.admin_up
        assert server.details().listener_fd == ss.listener_fd is not None
        assert client.details().listener_fd is None

        assert drive(ss, cs, until=lambda: server.connected and client.connected)
        sd, cd = server.details(), client.details()
        assert sd.state == cd.state == "connected" and sd.connect_count == cd.connect_count == 1
        [sconn], [cconn] = ss.connections(), cs.connections()
        assert (sd.control_fd, cd.control_fd) == (sconn.fd, cconn.fd)
        assert sconn.interface is server and cconn.interface is client
        assert sconn.phase == cconn.phase == "connected" and ss.pending_count == 0
        assert sconn.peer is not None and sconn.peer.pid == os.getpid()
        assert sconn.fds_held == len(sd.regions) + len(sd.rings)  # the fds the client sent
        for d in (sd, cd):
            assert (d.num_s2m_rings, d.num_m2s_rings) == (2, 1)
            for _, size, fd in d.regions:
                assert os.fstat(fd).st_size == size  # the memory fd of this process
            for ring in d.rings:
                os.fstat(ring.fd)  # a live eventfd of this process
                assert len(ring.descriptors) == 0  # not asked for
        assert sd.fault == cd.fault == "" and sd.listener_errors == 0

        client.disconnect("done")
        assert drive(ss, cs, until=lambda: not server.connected and not ss.connections())
        sd, cd = server.details(), client.details()
        assert sd.rings == cd.rings == [] and sd.control_fd is None
        assert sd.remote_disc_reason == cd.local_disc_reason == "done"
        assert footprint().fds == fds_before  # memory, eventfds and control sockets all closed


def test_details_descriptor_snapshot() -> None:
    with pair(ring_size=256) as (server, client):
        assert client.send([b"a" * 100, b"b" * 200]) == 2
        d = client.details(descriptors=4)
        [tx] = [r for r in d.rings if r.s2m]  # the client's transmit ring
        assert tx.descriptors.dtype == wire.DESC_DTYPE and len(tx.descriptors) == 4
        assert tx.descriptors["length"][:2].tolist() == [100, 200]
        every = client.details(descriptors=1 << 16)
        assert all(len(r.descriptors) == r.ring_size == 256 for r in every.rings)
        before = tx.descriptors.copy()
        server.recv()  # the ring moves on; the snapshot is a copy and does not
        assert (tx.descriptors == before).all()
        with pytest.raises(memif.ConfigError, match="0 or more"):
            client.details(descriptors=-1)


@pytest.mark.parametrize("side", ["server", "client"])
def test_a_listener_may_disconnect_from_on_connect(side: str) -> None:
    """The connection ends cleanly, the peer sees the reason, and the next connect works."""
    with pair(connect=False, client_reconnect_interval=0.05) as (server, client):
        iface = server if side == "server" else client
        peer = client if side == "server" else server
        first = iface.add_listener(on_connect=lambda i: i.disconnect("not now"))
        ss, cs = server.socket, client.socket
        assert drive(ss, cs, until=lambda: peer.remote_disc_reason == "not now")
        assert not iface.connected and iface.local_disc_reason == "not now"
        assert iface.rx_queues == [] and iface.listener_errors == 0
        first.remove()
        assert drive(ss, cs, until=lambda: server.connected and client.connected)
        assert client.send([b"y" * 64]) == 1
        got: list[bytes] = []
        assert drive(ss, cs, until=lambda: bool(got.extend(server.recv()) or got))


def test_server_socket_in_a_missing_directory_is_a_memif_error_naming_the_path(tmp_path) -> None:
    path = str(tmp_path / "missing" / "x.sock")
    with memif.Socket(path) as sock, pytest.raises(memif.SocketPathError) as info:
        sock.create_interface(role="server")
    err = info.value
    assert isinstance(err, memif.MemifError) and isinstance(err, OSError)
    assert err.errno == errno.ENOENT
    assert str(err) == f"bind {path}: No such file or directory"
    assert err.filename == path and err.code == "MEMIF_ERR_SYSCALL"


def test_tool_on_a_missing_directory_says_which_path(tmp_path) -> None:
    path = str(tmp_path / "missing" / "x.sock")
    r = subprocess.run(memif_argv("gen", "txonly", "--role", "server", "--socket", path,
                                  "--count", "1"),
                       env=ENV, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode != 0
    assert r.stderr.strip() == f"memif: bind {path}: No such file or directory", r.stderr
