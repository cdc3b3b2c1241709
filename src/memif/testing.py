"""Test helpers that any memif user can use: connected endpoint pairs.

``pair()`` builds a server socket and a client socket on a fresh abstract name,
creates one interface on each and drives both control planes until connected::

    with memif.testing.pair(rx_queues=2, tx_queues=2) as (server, client):
        client.send([b"..."])
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from .interface import Interface
from .sock import Socket


def unique_name(prefix: str = "memif-test") -> str:
    """A fresh abstract socket name, ``@prefix-<pid>-<random>``."""
    return f"@{prefix}-{os.getpid()}-{os.urandom(4).hex()}"


def drive(*sockets: Socket, until: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll every socket until ``until()`` holds or ``timeout`` passes; returns ``until()``."""
    end = time.monotonic() + timeout
    while not until():
        if time.monotonic() >= end:
            return until()
        for s in sockets:
            s.poll(0.002)
    return True


@contextlib.contextmanager
def pair(
    path: str | None = None, *, if_id: int = 0, connect: bool = True, **options: Any
) -> Iterator[tuple[Interface, Interface]]:
    """A connected (server, client) interface pair over real sockets and memory.

    ``options`` go to both interfaces (InterfaceConfig fields); keys prefixed
    ``server_``/``client_`` go to one side only.
    """
    path = path or unique_name()
    common = {k: v for k, v in options.items() if not k.startswith(("server_", "client_"))}
    only = {
        side: {k[len(side) + 1 :]: v for k, v in options.items() if k.startswith(side + "_")}
        for side in ("server", "client")
    }
    with (
        Socket(path, app_name="test-server") as ssock,
        Socket(path, app_name="test-client") as csock,
    ):
        server = ssock.create_interface(role="server", id=if_id, **{**common, **only["server"]})
        client = csock.create_interface(role="client", id=if_id, **{**common, **only["client"]})
        if connect and not drive(ssock, csock, until=lambda: server.connected and client.connected):
            raise TimeoutError(
                f"pair did not connect: server {server.state} ({server.local_disc_reason!r}), "
                f"client {client.state} ({client.local_disc_reason or client.remote_disc_reason!r})"
            )
        yield server, client
