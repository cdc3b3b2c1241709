"""memif.loop.EventLoop with a fake clock and real queues, eventfds and sockets: deadlines
per rx mode, sleeps that end on a kick, timers, extra fds, sockets, disconnects, bad input."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest
from clocks import ManualClock

from memif import Interface, NotConnectedError, RxQueue, Socket, testing
from memif.loop import MIN_NAP, EventLoop, RxMode, arm_rx
from memif.poller import Poller
from memif.tools.common import control_loop, wait_rx

FAR = 3600.0  # a deadline no test waits for: a sleep that reaches it would hang the test


@pytest.fixture
def link() -> Iterator[tuple[Interface, Interface]]:
    with testing.pair() as (server, client):
        yield server, client


@pytest.fixture
def efd() -> Iterator[int]:
    fd = os.eventfd(0, os.EFD_NONBLOCK)
    yield fd
    with contextlib.suppress(OSError):
        os.close(fd)


class Drain:
    """An rx handler that takes everything, refills, and counts what it took."""

    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def __call__(self, rxq: RxQueue) -> int:
        batch = rxq.rx_burst(256)
        n = batch.count
        if n:
            self.packets += batch.tolist()
            rxq.refill()
        return n


def test_adaptive_polls_while_busy_then_sleeps_after_idle_after(link: tuple) -> None:
    server, client = link
    clock = ManualClock()
    loop = EventLoop(clock=clock, idle_after=0.002, max_sleep=0.5, max_coalesce=0.0)
    rxq, drain = server.rx_queues[0], Drain()
    loop.add_rx(rxq, drain, RxMode.ADAPTIVE)
    assert rxq.polling  # MASK_INT set while busy: the peer saves its kicks

    client.send([b"x" * 60])
    assert loop.run_once(1000.0) == 1000.0  # work: run again at once
    assert drain.packets == [b"x" * 60]
    assert loop.run_once(1000.001) == 1000.001  # idle, but not for idle_after yet
    assert loop.run_once(1000.0025) == pytest.approx(1000.5025)  # idle: sleep, max_sleep


def test_a_trickle_below_busy_vector_does_not_keep_the_loop_polling(link: tuple) -> None:
    server, client = link
    loop = EventLoop(clock=ManualClock(), idle_after=0.0, max_sleep=0.5, busy_vector=8)
    drain = Drain()
    loop.add_rx(server.rx_queues[0], drain, RxMode.ADAPTIVE)
    client.send([b"a"] * 3)
    assert loop.run_once(10.0) == 10.5  # 3 packets: light, the loop may sleep
    assert len(drain.packets) == 3
    client.send([b"b"] * 8)
    assert loop.run_once(11.0) == 11.0 + loop.max_coalesce  # busy: coalescing, not idle
    assert len(drain.packets) == 11


def test_adaptive_coalescing_naps_until_the_ring_should_hold_a_vector(link: tuple) -> None:
    """A busy turn far below the vector: nap for the time a vector takes to come in at
    the rate just measured, the queue left in polling mode (the peer writes no eventfd);
    light turns soon after nap too; a full vector turns again at once (NAPI's budget)."""
    server, client = link
    clock = ManualClock(10.0)
    loop = EventLoop(clock=clock, busy_vector=8, vector=64, max_coalesce=0.5, idle_after=0.1)
    rxq, drain = server.rx_queues[0], Drain()
    loop.add_rx(rxq, drain, RxMode.ADAPTIVE)
    assert loop.run_once(10.0) > 10.0  # nothing yet: idle

    client.send([b"c"] * 16)  # 16 packets in 1 ms: 16 kpps, 64 in 4 ms
    clock.advance(0.001)
    assert loop.run_once(clock()) == pytest.approx(10.005)  # from the turn's start
    clock.advance(0.001)  # (the turn took 1 ms: 3 ms of nap left)
    client.send([b"d"] * 16)  # no kick: the nap is not cut short by packets ...
    assert loop.sleep(10.005) is False  # ... it runs to its end
    assert (loop.naps, loop.sleeps, loop.wakeups) == (1, 1, 0)
    assert loop.woken_by_kicks  # a nap's end: no control work in the next turn
    assert rxq.polling and rxq.clear_interrupt() == 0  # polling mode throughout

    clock.now = 10.005
    client.send([b"e"] * 16)  # 32 packets in the 4 ms: half the vector
    assert loop.run_once(clock()) == pytest.approx(10.013)  # twice the interval
    client.send([b"f"] * 3)  # a light turn: not busy, but busy lately: at its own rate
    assert loop.run_once(10.013) == pytest.approx(10.013 + 0.008 * 64 / 3)
    client.send([b"g"] * 64)  # a full vector: behind, or just keeping up
    assert loop.run_once(10.021) == 10.021
    assert loop.sleep(10.5) is False and loop.naps == 1  # no nap: at once
    assert len(drain.packets) == 115


def test_coalescing_never_lets_more_than_half_the_ring_fill(link: tuple) -> None:
    server, client = link
    clock = ManualClock(10.0)
    loop = EventLoop(clock=clock, busy_vector=1, vector=1 << 16, max_coalesce=10.0)
    rxq = server.rx_queues[0]
    loop.add_rx(rxq, Drain(), RxMode.ADAPTIVE)
    quarter = rxq.ring.size // 4
    loop.run_once(10.0)
    client.send([b"f"] * quarter)  # a quarter of the ring in 10 ms
    assert loop.run_once(10.01) == pytest.approx(10.03)  # a half in the 20 ms after


def test_coalescing_is_capped_by_max_coalesce_and_timers(link: tuple) -> None:
    server, client = link
    clock = ManualClock(10.0)
    loop = EventLoop(clock=clock, busy_vector=1, max_coalesce=0.002)
    loop.add_rx(server.rx_queues[0], Drain(), RxMode.ADAPTIVE)
    loop.run_once(10.0)
    client.send([b"g"])  # 1 packet in a second: a vector would take minutes
    assert loop.run_once(11.0) == pytest.approx(11.002)  # the latency budget
    loop.call_at(11.0015, lambda: None)
    client.send([b"g"])
    assert loop.run_once(11.001) == pytest.approx(11.0015)  # the timer is due first


def test_a_nap_shorter_than_min_nap_is_not_taken(link: tuple) -> None:
    server, client = link
    clock = ManualClock(10.0)
    loop = EventLoop(clock=clock, busy_vector=1, vector=64, max_coalesce=0.5)
    loop.add_rx(server.rx_queues[0], Drain(), RxMode.ADAPTIVE)
    loop.run_once(10.0)
    client.send([b"h"] * 32)  # half a vector in 1 ms: the next one in 2 ms
    deadline = loop.run_once(10.001)
    assert deadline == pytest.approx(10.003)
    clock.now = deadline - MIN_NAP / 2  # the turn took nearly all of it
    assert loop.sleep(deadline) is False
    assert loop.sleeps == 0  # turn again at once


def test_a_nap_ends_early_for_an_extra_fd_or_an_interrupt_queue(link: tuple, efd: int) -> None:
    server, client = link
    clock = ManualClock(10.0)
    loop = EventLoop(clock=clock, busy_vector=1, control_period=FAR)
    seen: list[int] = []
    loop.add_reader(efd, seen.append)
    rxq = server.rx_queues[0]
    loop.add_rx(rxq, Drain(), RxMode.ADAPTIVE)
    loop.run_once(10.0)
    client.send([b"i"])
    deadline = loop.run_once(10.5)
    assert deadline > clock() + MIN_NAP
    os.eventfd_write(efd, 1)
    assert loop.sleep(deadline) is True and loop.naps == 1
    assert not loop.woken_by_kicks  # the next turn serves the fd
    loop.run_once(clock())
    assert seen == [efd]


@pytest.mark.parametrize("mode", [RxMode.INTERRUPT, RxMode.POLLING])
def test_only_adaptive_queues_coalesce(link: tuple, mode: RxMode) -> None:
    server, client = link
    loop = EventLoop(clock=ManualClock(10.0), busy_vector=1)
    loop.add_rx(server.rx_queues[0], Drain(), mode)
    loop.run_once(10.0)
    client.send([b"j"] * 4)
    assert loop.run_once(10.001) == 10.001  # busy: at once, as ever


def test_polling_queue_never_lets_the_loop_sleep(link: tuple) -> None:
    server, _ = link
    clock = ManualClock()
    loop = EventLoop(clock=clock, idle_after=0.0)
    rxq = server.rx_queues[0]
    loop.add_rx(rxq, Drain(), "polling")
    assert rxq.polling and loop.rx_mode(rxq) is RxMode.POLLING
    assert loop.run_once(5.0) == 5.0
    assert loop.sleep(clock() + FAR) is False
    assert loop.sleeps == 0


def test_interrupt_queue_sleeps_at_once_and_a_kick_ends_the_sleep(link: tuple) -> None:
    server, client = link
    clock = ManualClock()
    loop = EventLoop(clock=clock, idle_after=1.0, max_sleep=0.25)
    rxq, drain = server.rx_queues[0], Drain()
    loop.add_rx(rxq, drain, RxMode.INTERRUPT)
    assert not rxq.polling  # the peer kicks after every burst
    deadline = loop.run_once(clock())
    assert deadline == clock() + 0.25  # no idle_after spin in interrupt mode

    client.send([b"ping"])  # kicks the eventfd
    assert loop.sleep(clock() + FAR) is True
    assert (loop.sleeps, loop.wakeups) == (1, 1)
    assert rxq.clear_interrupt() == 0  # the kick was read by the sleep
    assert loop.run_once(clock()) == clock()
    assert drain.packets == [b"ping"]


def test_a_wake_up_by_kicks_alone_leaves_the_control_plane_to_its_period(
    link: tuple, efd: int
) -> None:
    """A packet's wake-up does no control work; a control fd or the deadline ending the
    sleep has the next turn serve the control plane at once."""
    server, client = link
    clock = ManualClock()
    loop = EventLoop(clock=clock, idle_after=0.0, control_period=0.5, max_sleep=0.001)
    calls: list[float] = []
    loop.add_reader(efd, lambda fd: calls.append(loop.now))  # never read: stays readable
    rxq, drain = server.rx_queues[0], Drain()
    loop.add_rx(rxq, drain, RxMode.INTERRUPT)
    loop.run_once(clock())  # control served once: not due again for 0.5 s
    clock.advance(0.01)
    loop.run_once(clock())
    client.send([b"ping"])  # kicks
    assert loop.sleep(clock() + FAR) is True and loop.woken_by_kicks
    os.eventfd_write(efd, 1)  # readable after the sleep: left to the period
    assert loop.run_once(clock()) == clock() and drain.packets == [b"ping"]
    assert calls == [] and loop.control_fds == (efd,)
    assert loop.sleep(clock() + FAR) is True and not loop.woken_by_kicks  # the extra fd
    loop.run_once(clock())
    assert calls == [clock()]
    os.eventfd_read(efd)
    clock.advance(0.01)
    loop.run_once(clock())
    assert loop.sleep(clock() + 0.001) is False and not loop.woken_by_kicks  # the deadline
    os.eventfd_write(efd, 1)
    loop.run_once(clock())
    assert calls == [calls[0], clock()]  # served at once after the deadline's end


def test_adaptive_sleep_sees_a_burst_published_while_polling(link: tuple) -> None:
    # MASK_INT was set (no kick): arming must look at the ring after clearing the flag
    server, client = link
    clock = ManualClock()
    loop = EventLoop(clock=clock)
    rxq = server.rx_queues[0]
    loop.add_rx(rxq, mode=RxMode.ADAPTIVE)  # no handler: the caller receives
    client.send([b"quiet"])
    assert rxq.clear_interrupt() == 0  # really no kick
    assert loop.sleep(clock() + FAR) is False  # returns at once: packets are ready
    assert loop.sleeps == 0
    assert rxq.polling  # back to polling after the (skipped) sleep
    assert rxq.recv() == [b"quiet"]


def test_adaptive_sleep_arms_interrupts_so_a_burst_during_the_sleep_kicks(link: tuple) -> None:
    server, client = link
    rxq = server.rx_queues[0]
    seen: list[bool] = []

    class PeerSendsWhileWeSleep(Poller):
        """The injected waiter: the peer publishes just as the loop goes to sleep."""

        def wait(self, timeout: float | None = None) -> set[int]:
            seen.append(rxq.polling)
            client.send([b"late"])  # MASK_INT must be clear now, or this would not kick
            return super().wait(timeout)

    clock = ManualClock()
    loop = EventLoop(clock=clock, poller=PeerSendsWhileWeSleep())
    loop.add_rx(rxq, mode=RxMode.ADAPTIVE)
    assert loop.sleep(clock() + FAR) is True  # ended by the kick, not the (far) deadline
    assert seen == [False]  # interrupt mode during the sleep ...
    assert rxq.polling  # ... polling again after it
    assert rxq.clear_interrupt() == 0  # the kick was cleared
    assert rxq.recv() == [b"late"]


def test_the_loop_is_deterministic_under_a_fake_clock_timers_run_in_order() -> None:
    clock = ManualClock(100.0)
    loop = EventLoop(clock=clock, max_sleep=10.0)
    ran: list[str] = []
    loop.call_at(100.3, lambda: ran.append("c"))
    loop.call_at(100.1, lambda: ran.append("a"))
    loop.call_at(100.2, lambda: ran.append("b"))
    loop.call_at(100.15, lambda: ran.append("never")).cancel()
    assert loop.run_once(100.0) == 100.1  # the earliest timer bounds the idle deadline
    assert loop.run_once(100.2) == 100.3
    assert ran == ["a", "b"]
    clock.advance(0.5)
    assert loop.run_once() == 110.5  # now read from the injected clock; max_sleep
    assert ran == ["a", "b", "c"]
    assert loop.now == 100.5 and loop.turns == 3


def test_a_timer_added_for_now_by_a_timer_runs_in_the_next_turn() -> None:
    loop = EventLoop(clock=ManualClock(5.0))
    ran: list[float] = []

    def again() -> None:
        ran.append(loop.now)
        loop.call_later(0, again)  # due at once: must not keep this turn going

    loop.call_at(5.0, again)
    assert loop.run_once(5.0) == 5.0  # the new timer is due: run again at once
    assert loop.run_once(5.0) == 5.0
    assert ran == [5.0, 5.0]


def test_call_later_counts_from_the_turn() -> None:
    loop = EventLoop(clock=ManualClock(7.0))
    loop.run_once(8.0)
    assert loop.call_later(0.5, lambda: None).when == 8.5


def test_extra_fd_wakes_the_sleep_and_its_callback_runs_in_the_next_turn(efd: int) -> None:
    clock = ManualClock()
    loop = EventLoop(clock=clock)
    got: list[int] = []
    loop.add_reader(efd, lambda fd: got.append(os.eventfd_read(fd)))
    loop.run_once()
    os.eventfd_write(efd, 3)
    assert loop.sleep(clock() + FAR) is True
    assert got == []  # callbacks run in turns, not in sleeps
    loop.run_once()
    assert got == [3]
    loop.remove_reader(efd)
    os.eventfd_write(efd, 1)
    assert loop.sleep(clock() + 0.001) is False  # forgotten: only the timeout ends it


def test_extra_fds_are_looked_at_once_per_control_period_while_busy(efd: int) -> None:
    clock = ManualClock()
    loop = EventLoop(clock=clock, control_period=0.05)
    calls: list[float] = []
    loop.add_reader(efd, lambda fd: calls.append(loop.now))  # never read: stays readable
    os.eventfd_write(efd, 1)
    for t in (0.0, 0.01, 0.04, 0.05, 0.06, 0.11):
        loop.run_once(1000.0 + t, work=1)
    assert calls == [1000.0, 1000.05, 1000.11]


def test_sleep_with_a_passed_deadline_returns_at_once(efd: int) -> None:
    clock = ManualClock()
    loop = EventLoop(clock=clock)
    loop.add_reader(efd, lambda fd: None)
    assert loop.sleep(clock() - 1) is False
    assert loop.sleeps == 0


def test_sockets_are_driven_and_their_timers_bound_the_sleep() -> None:
    name = testing.unique_name()
    with (
        Socket(name, app_name="s") as ssock,
        Socket(name, app_name="c") as csock,
    ):
        server = ssock.create_interface(role="server", id=0)
        client = csock.create_interface(role="client", id=0)
        loop = EventLoop(max_sleep=30.0)
        loop.add_socket(ssock)
        loop.add_socket(csock)
        assert loop.sockets == (ssock, csock)
        loop.run(until=lambda: server.connected and client.connected, duration=10.0)
        assert server.connected and client.connected
        # connected sockets check data-path faults twice a second: that bounds an idle sleep
        assert loop.run_once() <= loop.now + 0.5
        loop.remove_socket(csock)
        assert loop.sockets == (ssock,)


def test_a_closed_socket_is_dropped() -> None:
    sock = Socket(testing.unique_name())
    loop = EventLoop(clock=ManualClock())
    loop.add_socket(sock)
    sock.close()
    loop.run_once()
    assert loop.sockets == ()
    with pytest.raises(ValueError, match="is closed"):
        loop.add_socket(sock)


def test_queues_of_an_ended_connection_are_dropped() -> None:
    with testing.pair() as (server, client):
        loop = EventLoop(clock=ManualClock())
        watched, handled = server.rx_queues[0], client.rx_queues[0]
        loop.add_rx(watched)  # no handler: dropped when a sleep arms it
        loop.add_rx(handled, Drain())  # a handler: dropped when it raises
        assert loop.rx_queues == (watched, handled)
        server.disconnect()
        testing.drive(server.socket, client.socket, until=lambda: not client.connected)
        loop.run_once()
        assert loop.rx_queues == (watched,)
        loop.sleep(loop.clock() + 0.001)
        assert loop.rx_queues == ()
        with pytest.raises(NotConnectedError):
            loop.add_rx(watched)


def test_update_rx_follows_the_interface_s_queues_of_the_moment() -> None:
    with testing.pair(rx_queues=2, tx_queues=2) as (server, _):
        loop = EventLoop(clock=ManualClock())
        loop.update_rx(server.rx_queues, mode="interrupt")
        assert loop.rx_queues == tuple(server.rx_queues)
        assert all(loop.rx_mode(q) is RxMode.INTERRUPT for q in server.rx_queues)
        loop.set_rx_mode(server.rx_queues[1], RxMode.POLLING)
        loop.update_rx(server.rx_queues)  # unchanged: modes kept
        assert loop.rx_mode(server.rx_queues[1]) is RxMode.POLLING
        loop.update_rx(server.rx_queues[:1])
        assert loop.rx_queues == (server.rx_queues[0],)
        loop.update_rx([])
        assert loop.rx_queues == ()


def test_default_mode_follows_the_queue_s_flag() -> None:
    with testing.pair(server_polling=True) as (server, client):
        loop = EventLoop()
        loop.add_rx(server.rx_queues[0])
        loop.add_rx(client.rx_queues[0])
        assert loop.rx_mode(server.rx_queues[0]) is RxMode.POLLING
        assert loop.rx_mode(client.rx_queues[0]) is RxMode.INTERRUPT


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"idle_after": -1.0}, "idle_after is seconds >= 0, got -1.0"),
        ({"max_sleep": float("nan")}, "max_sleep is seconds >= 0, got nan"),
        ({"busy_vector": 0}, "busy_vector is packets >= 1, got 0"),
    ],
)
def test_bad_options_say_what_is_accepted(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EventLoop(**options)


def test_bad_rx_mode_says_what_is_accepted() -> None:
    with pytest.raises(
        ValueError, match="bad rx mode 'fast': expected polling, interrupt or adaptive"
    ):
        RxMode.parse("fast")
    assert RxMode.parse(" Adaptive ") is RxMode.ADAPTIVE


def test_bad_reader_fd_is_refused() -> None:
    with pytest.raises(ValueError, match="an fd is a non-negative int"):
        EventLoop().add_reader(-1, lambda fd: None)


def test_a_foreign_loop_drives_it_through_control_fds_and_ready(efd: int) -> None:
    # what memif.aio does: the foreign loop waits on control_fds, then says which were ready
    clock = ManualClock()
    loop = EventLoop(clock=clock, control_period=60.0)
    got: list[int] = []
    loop.add_reader(efd, got.append)
    with Socket(testing.unique_name()) as sock:
        loop.add_socket(sock)
        assert loop.control_fds == (sock.fileno(), efd)
        os.eventfd_write(efd, 1)  # readable from now on: the callback does not read it
        loop.run_once()  # the first turn serves control: asks the readers
        assert got == [efd]
        got.clear()
        loop.run_once()  # control not due: nothing asked
        assert got == []
        loop.ready([efd])
        loop.run_once()
        assert got == [efd]


def test_arm_rx_clears_old_kicks_and_says_when_packets_wait(link: tuple) -> None:
    server, client = link
    rxq = server.rx_queues[0]
    rxq.polling = False
    client.send([b"one"])  # kicks
    assert arm_rx(rxq) is True  # packets: do not sleep
    assert rxq.clear_interrupt() == 0  # the old kick is gone
    assert not rxq.polling
    rxq.recv()
    assert arm_rx(rxq) is False


# ---------------------------------------------------------------------- the tools' turn


def test_tools_wait_rx_sleeps_only_when_idle_and_serves_control_after(link: tuple) -> None:
    server, client = link
    loop = control_loop(server.socket)
    rxq = server.rx_queues[0]
    wait_rx(loop, [rxq], FAR, work=1)  # busy: no sleep
    assert (loop.sleeps, loop.rx_queues) == (0, (rxq,))
    client.send([b"kick"])
    wait_rx(loop, [rxq], FAR)  # idle: sleeps, the kick ends it, control is served after
    assert (loop.sleeps, loop.wakeups, loop.turns) == (1, 1, 3)
    assert rxq.clear_interrupt() == 0
    assert rxq.recv() == [b"kick"]
    wait_rx(loop, [], 0.0)  # the queues of the moment: none (disconnected)
    assert loop.rx_queues == ()


def test_tools_wait_rx_never_sleeps_on_a_polling_queue() -> None:
    with testing.pair(server_polling=True) as (server, _):
        loop = control_loop(server.socket)
        wait_rx(loop, server.rx_queues, FAR)
        assert loop.sleeps == 0 and loop.turns == 1


def test_a_nap_never_outlasts_its_end_whatever_the_deadline_asked(link: tuple) -> None:
    """The queue is in polling mode during a nap (no kick can end it): a caller asking
    for a later deadline still turns again at the nap's end."""
    server, client = link
    clock = ManualClock(10.0)
    loop = EventLoop(clock=clock, busy_vector=1, max_coalesce=0.001)
    loop.add_rx(server.rx_queues[0], Drain(), RxMode.ADAPTIVE)
    loop.run_once(10.0)
    client.send([b"l"])
    assert loop.run_once(11.0) == pytest.approx(11.001)
    clock.now = 11.0005
    assert loop.sleep(11.0 + FAR) is False  # half a millisecond, not an hour
    assert loop.naps == 1
    clock.now = 11.002
    assert loop.sleep(11.0 + FAR) is False and loop.naps == 1  # its end passed: at once


def test_after_catching_up_the_nap_follows_the_rate_of_the_turns_spun(link: tuple) -> None:
    """A full vector spins; the empty turn after it naps for what the packets taken
    since the loop last waited say (a vector in 2 ms here), not the longest nap."""
    server, client = link
    loop = EventLoop(clock=ManualClock(10.0), busy_vector=8, vector=64, max_coalesce=0.5)
    loop.add_rx(server.rx_queues[0], Drain(), RxMode.ADAPTIVE)
    assert loop.run_once(10.0) > 10.0  # idle: the loop waits, the window starts
    client.send([b"m"] * 64)
    assert loop.run_once(10.001) == 10.001  # a full vector: at once
    assert loop.run_once(10.002) == pytest.approx(10.004)  # 64 in 2 ms: 2 ms more


def test_a_nap_ends_when_a_slice_brings_nothing_new(link: tuple) -> None:
    """A closed loop (a peer that has sent all it had and waits for answers) is not held
    for the whole nap: the nap wakes NAP_SLICES times and ends at the first slice that
    brought no packet.  The clock here never moves, so only that can end it."""
    server, client = link
    clock = ManualClock(10.0)
    loop = EventLoop(clock=clock, busy_vector=8, vector=1024, max_coalesce=0.4)
    rxq, drain = server.rx_queues[0], Drain()
    loop.add_rx(rxq, drain, RxMode.ADAPTIVE)
    loop.run_once(10.0)
    client.send([b"h"] * 16)
    clock.now = 10.001
    deadline = loop.run_once(clock())
    assert deadline > 10.03  # a nap asked for (half the ring at 16 kpps) ...
    client.send([b"i"] * 4)  # (arrived before it: seen at its start)
    assert loop.sleep(deadline) is False  # ... ended by the first quiet slice
    assert loop.naps == 1 and rxq.ready() == 4 and rxq.polling
