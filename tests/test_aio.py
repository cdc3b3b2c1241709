"""memif.aio: a server and a client in one asyncio loop, over real sockets and memory."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from footprint import footprint

import memif
from memif import aio, testing


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), 30))


@asynccontextmanager
async def pair(**client_options: object) -> AsyncIterator[tuple[memif.Interface, memif.Interface]]:
    """A connected (server, client) pair, both sockets attached to the running loop."""
    name = testing.unique_name("aio")
    async with aio.AsyncSocket(name, app_name="aio-server") as ss:
        server = ss.create_interface(role="server", id=0)
        async with aio.AsyncSocket(name, app_name="aio-client") as cs:
            options = {"reconnect_interval": 0.05, **client_options}
            client = cs.create_interface(role="client", id=0, **options)
            await aio.wait_connected(server, timeout=5)
            await aio.wait_connected(client, timeout=5)
            yield server, client


async def blocked(task: asyncio.Task, seconds: float = 0.05) -> None:
    """Let ``task`` run until it sleeps, and check it did not finish."""
    await asyncio.sleep(seconds)
    assert not task.done(), task


def test_attach_connect_and_close() -> None:
    async def main() -> None:
        fds = footprint().fds
        async with pair() as (server, client):
            assert server.connected and client.connected
            owner = aio.AsyncSocket.of(server.socket)
            assert owner is not None and owner.socket is server.socket
            assert owner.attached and owner.loop is asyncio.get_running_loop()
            assert owner.events is not None and owner.events.sockets == (server.socket,)
            assert "attached" in repr(owner)
        assert not owner.attached and owner.events is None
        assert aio.AsyncSocket.of(server.socket) is None
        assert footprint().fds == fds

    run(main)


def test_recv_wakes_on_traffic_both_directions() -> None:
    async def main() -> None:
        async with pair() as (server, client):
            task = asyncio.create_task(aio.recv(server))
            await blocked(task)
            assert server.rx_queues[0].polling is False  # interrupt mode while awaiting
            client.send([b"\x01" * 64, bytes(range(256)) * 8, b"\x02" * 9000])
            got = await asyncio.wait_for(task, 2)
            assert [len(p) for p in got] == [64, 2048, 9000]
            assert got[1] == bytes(range(256)) * 8

            task = asyncio.create_task(aio.recv(client))
            await blocked(task)
            server.send([b"reply" * 20])
            assert await asyncio.wait_for(task, 2) == [b"reply" * 20]

    run(main)


def test_recv_batch_returns_pending_packets_at_once_and_caller_refills() -> None:
    async def main() -> None:
        async with pair() as (server, client):
            client.send([bytes([i]) * 100 for i in range(10)])
            rxq = server.rx_queues[0]
            batch = await aio.recv_batch(rxq, max_packets=4)
            assert batch.count == 4 and batch.tolist()[3] == b"\x03" * 100
            batch = await aio.recv_batch(rxq)
            assert batch.count == 6
            assert rxq.refill() == 10  # nothing was given back behind the caller's back
            assert client.tx_queues[0].in_flight == 0

    run(main)


def test_polling_queue_gets_interrupts_only_while_awaited() -> None:
    async def main() -> None:
        async with pair() as (server, client):
            server.set_rx_mode(0, polling=True)
            rxq = server.rx_queues[0]
            assert rxq.polling
            task = asyncio.create_task(aio.recv_batch(rxq))
            await blocked(task)
            assert not rxq.polling  # MASK_INT cleared so the client kicks
            client.send([b"x" * 60])
            batch = await asyncio.wait_for(task, 2)
            assert batch.tolist() == [b"x" * 60]
            assert rxq.polling  # back to polling mode
            rxq.refill()

    run(main)


def test_rx_batches_refills_each_batch_and_keeps_order() -> None:
    async def main() -> None:
        async with pair(ring_size=64) as (server, client):
            total = 1000
            received: list[bytes] = []

            async def consume() -> None:
                async with aio.rx_batches(server, max_packets=32) as batches:
                    async for batch in batches:
                        received.extend(batch.tolist())
                        if len(received) >= total:
                            break

            task = asyncio.create_task(consume())
            sent = 0
            while sent < total:  # more than the ring holds: needs the refills
                burst = [i.to_bytes(4, "big") * (1 + i % 40) for i in range(sent, sent + 16)]
                n = client.send(burst[: total - sent])
                sent += n
                await asyncio.sleep(0 if n else 0.001)
            await asyncio.wait_for(task, 5)
            assert len(received) == total
            assert [int.from_bytes(p[:4], "big") for p in received] == list(range(total))

    run(main)


@pytest.mark.slow
def test_awaiting_does_not_busy_poll() -> None:
    async def main() -> None:
        async with pair() as (server, _client):
            cpu, wall = time.process_time(), time.monotonic()
            with pytest.raises(TimeoutError):
                await aio.recv(server, timeout=0.5)
            cpu, wall = time.process_time() - cpu, time.monotonic() - wall
            assert wall >= 0.5
            assert cpu < 0.1, f"{cpu:.3f} s of CPU in {wall:.2f} s of awaiting"

            cpu = time.process_time()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    async for _ in aio.rx_batches(server):
                        pass
            assert time.process_time() - cpu < 0.1

    run(main)


def test_disconnect_while_awaiting_raises_not_connected() -> None:
    async def main() -> None:
        async with pair() as (server, client):
            fds = footprint().fds
            task = asyncio.create_task(aio.recv_batch(server.rx_queues[0]))
            await blocked(task)
            assert footprint().fds == fds  # an attached socket's waiter sleeps on the eventfd
            client.disconnect("bye")
            with pytest.raises(memif.NotConnectedError):
                await asyncio.wait_for(task, 1)
            assert footprint().fds <= fds

            with pytest.raises(memif.NotConnectedError):
                await aio.recv(server)  # not connected, no reconnect: at once

    run(main)


def test_recv_follows_a_reconnect() -> None:
    async def main() -> None:
        async with pair() as (server, client):
            old = server.rx_queues[0]
            task = asyncio.create_task(aio.recv(server, reconnect=True))
            await blocked(task)
            client.disconnect("again")
            await blocked(task, 0.01)
            await aio.wait_connected(client, timeout=5)
            assert server.connect_count == 2 and server.rx_queues[0] is not old
            await blocked(task, 0.01)
            client.send([b"after reconnect"])
            assert await asyncio.wait_for(task, 2) == [b"after reconnect"]

    run(main)


def test_rx_batches_follows_reconnects() -> None:
    async def main() -> None:
        async with pair() as (server, client):
            got: list[bytes] = []
            received = asyncio.Event()

            async def consume() -> None:
                async for batch in aio.rx_batches(server, reconnect=True):
                    got.extend(batch.tolist())
                    received.set()
                    if len(got) == 3:
                        return

            task = asyncio.create_task(consume())
            for i in range(3):
                await aio.wait_connected(client, timeout=5)
                received.clear()
                client.send([f"packet {i}".encode()])
                await asyncio.wait_for(received.wait(), 5)  # taken before the disconnect
                client.disconnect("cycle")
            await asyncio.wait_for(task, 5)
            assert got == [b"packet 0", b"packet 1", b"packet 2"]
            assert server.connect_count == 3

    run(main)


def test_rx_batches_on_a_queue_ends_with_its_connection() -> None:
    async def main() -> None:
        async with pair() as (server, client):
            batches = aio.rx_batches(server.rx_queues[0])

            async def consume() -> int:
                n = 0
                async for batch in batches:
                    n += batch.count
                return n

            task = asyncio.create_task(consume())
            client.send([b"one", b"two"])
            await blocked(task)
            client.disconnect()
            with pytest.raises(memif.NotConnectedError):
                await asyncio.wait_for(task, 1)
            with pytest.raises(ValueError):
                aio.rx_batches(server.rx_queues, reconnect=True)  # type: ignore[arg-type]

    run(main)


def test_wait_connected_timeout_and_hopeless_client() -> None:
    async def main() -> None:
        name = testing.unique_name("aio-nobody")
        async with aio.AsyncSocket(name) as cs:
            retrying = cs.create_interface(role="client", id=0, reconnect_interval=0.05)
            with pytest.raises(TimeoutError):
                await aio.wait_connected(retrying, timeout=0.2)
            assert retrying.local_disc_reason.startswith("connect failed")
            once = cs.create_interface(role="client", id=1, reconnect_interval=None)
            with pytest.raises(memif.NotConnectedError, match="will not reconnect"):
                await aio.wait_connected(once, timeout=2)
            waiter = asyncio.create_task(cs.wait_connected(retrying))
            await blocked(waiter)
            retrying.delete()
            cs.wake()
            with pytest.raises(memif.NotConnectedError, match="deleted"):
                await asyncio.wait_for(waiter, 2)

    run(main)


def test_late_server_is_found_by_the_reconnect_timer() -> None:
    async def main() -> None:
        name = testing.unique_name("aio-late")
        async with aio.AsyncSocket(name) as cs:
            client = cs.create_interface(role="client", id=0, reconnect_interval=0.1)
            await asyncio.sleep(0.15)
            assert not client.connected
            async with aio.AsyncSocket(name) as ss:
                server = ss.create_interface(role="server", id=0)
                await aio.wait_connected(client, timeout=2)
                await aio.wait_connected(server, timeout=2)

    run(main)


def test_unattached_socket_is_refused_for_wait_connected() -> None:
    async def main() -> None:
        with memif.Socket(testing.unique_name("aio-plain")) as sock:
            iface = sock.create_interface(role="server", id=0)
            with pytest.raises(RuntimeError, match="not attached"):
                await aio.wait_connected(iface, timeout=0.1)

    run(main)


def test_recv_batch_without_attached_socket() -> None:
    """The data path alone: sockets driven elsewhere, the waiter checks its queue itself."""
    with testing.pair() as (server, client):

        async def main() -> None:
            rxq = server.rx_queues[0]
            task = asyncio.create_task(aio.recv_batch(rxq))
            await blocked(task)
            client.send([b"no control plane needed"])
            batch = await asyncio.wait_for(task, 2)
            assert batch.tolist() == [b"no control plane needed"]
            rxq.refill()

            task = asyncio.create_task(aio.recv_batch(rxq))
            await blocked(task)
            client.disconnect()
            memif.testing.drive(server.socket, until=lambda: not server.connected)
            with pytest.raises(memif.NotConnectedError):
                await asyncio.wait_for(task, 2)  # found within the liveness period

        run(main)


def test_no_lost_wakeups_against_another_thread() -> None:
    """A producer thread races the waiter; every packet must wake it.

    An attached socket's waiter has no periodic look at its ring: only the eventfd wakes
    it, so a lost wakeup is not slow but never ends (the generous timeout fails the test).
    """

    async def main() -> None:
        async with pair() as (server, client):
            rxq, txq = server.rx_queues[0], client.tx_queues[0]
            rounds = 300
            go = threading.Event()
            stop = threading.Event()

            def produce() -> None:
                for i in range(rounds):
                    go.wait(5)
                    go.clear()
                    if stop.is_set():
                        return
                    if i % 3 == 0:
                        time.sleep(0.0002)
                    txq.send([i.to_bytes(4, "big")])

            thread = threading.Thread(target=produce)
            thread.start()
            try:
                for i in range(rounds):
                    go.set()
                    batch = await aio.recv_batch(rxq, timeout=10)
                    assert batch.tolist() == [i.to_bytes(4, "big")]
                    rxq.refill()
            finally:
                stop.set()
                go.set()
                thread.join(5)

    run(main)


def test_wait_tx_free_returns_when_the_peer_gives_slots_back() -> None:
    async def main() -> None:
        async with pair(ring_size=16) as (server, client):
            txq, rxq = client.tx_queues[0], server.rx_queues[0]
            assert await aio.wait_tx_free(txq, 16) == 16  # free already: at once
            assert txq.send([b"x" * 60] * 16) == 16
            assert txq.free_slots() == 0
            task = asyncio.create_task(aio.wait_tx_free(txq, 10))
            await blocked(task)
            assert len(rxq.rx_burst(16)) == 16
            rxq.refill()  # the peer gives the slots back: no kick, the backoff finds them
            assert await asyncio.wait_for(task, 5) == 16

            # the server's transmit slots are the client's posted buffers
            s_cs = aio.AsyncSocket.of(server.socket)
            assert s_cs is not None
            stxq = server.tx_queues[0]
            assert await s_cs.wait_tx_free(server, 1) == stxq.free_slots() > 0

    run(main)


def test_wait_tx_free_ends_with_the_connection_and_refuses_bad_counts() -> None:
    async def main() -> None:
        async with pair(ring_size=16) as (server, client):
            txq = client.tx_queues[0]
            with pytest.raises(ValueError, match="n is 1 to the ring size 16, got 17"):
                await aio.wait_tx_free(txq, 17)
            with pytest.raises(ValueError, match="got 0"):
                await aio.wait_tx_free(txq, 0)
            assert txq.send([b"y"] * 16) == 16
            task = asyncio.create_task(aio.wait_tx_free(txq))
            await blocked(task)
            server.disconnect("bye")
            with pytest.raises(memif.NotConnectedError):
                await asyncio.wait_for(task, 5)
            c_cs = aio.AsyncSocket.of(client.socket)
            assert c_cs is not None
            await aio.wait_connected(client, timeout=5)  # the client reconnects
            with pytest.raises(IndexError, match="has 1 tx queues, no queue 3"):
                await c_cs.wait_tx_free(client, 1, queue=3)
            with pytest.raises(ValueError, match="does not belong"):
                await c_cs.wait_tx_free(server)

    run(main)


def test_a_waiter_outlives_a_detach_of_its_socket() -> None:
    """Detached mid-wait, the waiter goes on by itself (its own fd, its own liveness look)."""

    async def main() -> None:
        async with pair() as (server, client):
            s_cs = aio.AsyncSocket.of(server.socket)
            assert s_cs is not None
            fds = footprint().fds
            task = asyncio.create_task(aio.recv_batch(server.rx_queues[0]))
            await blocked(task)
            s_cs.detach()
            await blocked(task)
            assert footprint().fds == fds + 1  # the dup of the eventfd
            client.send([b"still here"])
            batch = await asyncio.wait_for(task, 5)
            assert batch.tolist() == [b"still here"]
            server.rx_queues[0].refill()
            assert footprint().fds == fds
            s_cs.attach()

    run(main)


def test_an_interface_created_behind_the_socket_s_back_is_listened_to() -> None:
    async def main() -> None:
        name = testing.unique_name("aio-behind")
        async with aio.AsyncSocket(name) as ss, aio.AsyncSocket(name) as cs:
            server = ss.socket.create_interface(role="server", id=7)  # not through ss
            client = cs.create_interface(role="client", id=7)
            await aio.wait_connected(client, timeout=5)
            await aio.wait_connected(server, timeout=5)
            fds = footprint().fds
            task = asyncio.create_task(aio.recv_batch(server.rx_queues[0]))
            await blocked(task)
            assert footprint().fds == fds  # watched by ss's listener: no dup needed
            client.disconnect("bye")
            with pytest.raises(memif.NotConnectedError):
                await asyncio.wait_for(task, 5)

    run(main)
