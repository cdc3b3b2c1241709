"""memif.poller.Poller with real eventfds and sockets: readiness, timeouts, fds past
FD_SETSIZE, fds closed while registered, signals, bad input."""

from __future__ import annotations

import contextlib
import os
import resource
import select
import signal
import socket
import threading
from collections.abc import Iterator

import pytest

from memif import Socket, testing
from memif.poller import Poller
from memif.tools.common import control_loop, wait_rx

HIGH_FD = 1500


@pytest.fixture
def efds() -> Iterator[list[int]]:
    fds = [os.eventfd(0, os.EFD_NONBLOCK) for _ in range(3)]
    yield fds
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


@contextlib.contextmanager
def fds_up_to(n: int) -> Iterator[None]:
    """RLIMIT_NOFILE raised past ``n`` for the block (skips when the hard limit is lower)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= n:
        if hard != resource.RLIM_INFINITY and hard <= n:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} does not reach fd {n}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (n + 1, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def high_fd() -> Iterator[int]:
    """An eventfd numbered 1500, past select's FD_SETSIZE (1024)."""
    with fds_up_to(HIGH_FD):
        efd = os.eventfd(0, os.EFD_NONBLOCK)
        try:
            fd = os.dup2(efd, HIGH_FD)
        finally:
            os.close(efd)
        yield fd
        os.close(fd)


def test_ready_fds_are_returned_and_only_them(efds: list[int]) -> None:
    a, b, c = efds
    p = Poller(efds)
    assert p.wait(0) == set()
    os.eventfd_write(b, 1)
    assert p.wait(0) == {b}
    assert p.wait(None) == {b}  # level-triggered: still ready until read
    os.eventfd_write(c, 1)
    assert p.wait(5) == {b, c}
    os.eventfd_read(b)
    os.eventfd_read(c)
    assert p.wait(0) == set()


def test_a_timeout_returns_with_nothing_ready(efds: list[int]) -> None:
    p = Poller(efds)
    assert p.wait(0.0003) == set()  # below a millisecond
    assert p.wait(0.02) == set()
    assert p.wait(-1) == set()  # a deadline already past only looks
    assert Poller().wait(0.001) == set()  # an empty poller just sleeps


@pytest.mark.parametrize("forever", [None, float("inf"), 1e300])
def test_a_write_from_another_thread_wakes_a_wait_without_timeout(
    efds: list[int], forever: float | None
) -> None:
    p = Poller([efds[0]])
    writer = threading.Thread(target=os.eventfd_write, args=(efds[0], 1))
    writer.start()
    assert p.wait(forever) == {efds[0]}
    writer.join()


def test_an_fd_past_fd_setsize_works(high_fd: int) -> None:
    with pytest.raises(ValueError):
        select.select([high_fd], [], [], 0)  # what the poller replaces refuses it
    p = Poller([high_fd])
    assert p.wait(0) == set()
    os.eventfd_write(high_fd, 1)
    assert p.wait(1) == {high_fd}
    os.eventfd_read(high_fd)
    assert p.wait(0.001) == set()


def test_the_tools_wait_on_a_connection_whose_fds_are_all_past_fd_setsize() -> None:
    """The tools' wait (memif.loop.EventLoop) with the socket's and the queues' fds numbered
    over 1024."""
    with fds_up_to(1200):
        filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
        try:
            path = testing.unique_name()
            with Socket(path) as ssock, Socket(path) as csock:
                server = ssock.create_interface(role="server", id=0)
                client = csock.create_interface(role="client", id=0)
                assert testing.drive(
                    ssock, csock, until=lambda: server.connected and client.connected
                )
                rxq = client.rx_queues[0]
                assert min(csock.fileno(), rxq.fd) > 1024
                assert server.tx_queues[0].send([bytes(64)]) == 1
                wait_rx(control_loop(csock), [rxq], 5)
                assert rxq.clear_interrupt() == 0  # the kick that woke us was cleared
                assert len(rxq.rx_burst(8)) == 1
        finally:
            for fd in filler:
                os.close(fd)


def test_sockets_are_readable_on_data_and_on_hangup() -> None:
    a, b = socket.socketpair()
    with a, b:
        p = Poller([b.fileno()])
        assert p.wait(0) == set()
        a.send(b"x")
        assert p.wait(1) == {b.fileno()}
        assert b.recv(1) == b"x"
        assert p.wait(0) == set()
        a.close()
        assert p.wait(1) == {b.fileno()}  # EOF is readable
        assert b.recv(1) == b""


def test_a_closed_fd_is_reported_and_its_number_can_be_registered_again(efds: list[int]) -> None:
    a, b, _ = efds
    p = Poller([a, b])
    os.close(a)
    assert p.wait(1) == {a}  # POLLNVAL: its owner notices
    p.unregister(a)
    assert p.fds == (b,)
    assert p.wait(0) == set()
    fresh = os.eventfd(0, os.EFD_NONBLOCK)  # a new eventfd under the old number
    if fresh != a:
        os.dup2(fresh, a)
        os.close(fresh)
    p.register(a)
    assert p.fds == (b, a)
    assert p.wait(0) == set()
    os.eventfd_write(a, 1)
    assert p.wait(1) == {a}


def test_registration_is_a_set_kept_across_waits(efds: list[int]) -> None:
    a, b, c = efds
    p = Poller()
    p.register(a)
    p.register(a)
    p.update([b, c, b])
    assert p.fds == (b, c)
    assert len(p) == 2 and b in p and a not in p
    p.update([b, c])
    p.unregister(a)  # not registered: ignored
    p.unregister(b)
    assert p.fds == (c,)
    os.eventfd_write(b, 1)
    assert p.wait(0) == set()
    os.eventfd_write(c, 1)
    assert p.wait(0) == {c}
    assert p.wait(0) == {c}


def test_a_signal_ends_the_wait_early_with_nothing_ready(efds: list[int]) -> None:
    caught: list[int] = []
    old = signal.signal(signal.SIGALRM, lambda signum, frame: caught.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)  # until one lands inside the wait
        try:
            assert Poller(efds).wait(None) == set()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, old)
    assert caught


@pytest.mark.parametrize("fd", [-1, 1 << 31, "3", 2.0, True])
def test_a_bad_fd_is_refused_in_one_line(fd: object) -> None:
    with pytest.raises(ValueError, match=r"^poller: an fd is a non-negative int, got "):
        Poller().register(fd)  # type: ignore[arg-type]


def test_a_bad_timeout_is_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"^poller: timeout must be seconds .* got nan$"):
        Poller().wait(float("nan"))
