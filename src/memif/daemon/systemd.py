"""systemd's notification protocol (``Type=notify``), without libsystemd.

When systemd starts memifd it sets ``NOTIFY_SOCKET`` (a unix datagram socket, ``@`` for an
abstract name): memifd sends ``READY=1`` once the startup file ran and the CLI socket
listens, ``STOPPING=1`` when it shuts down, and, when ``WATCHDOG_USEC`` is set (``WatchdogSec=``
in the unit) for this pid, ``WATCHDOG=1`` at half that period from its main loop, so a
stalled loop gets restarted.  Without ``NOTIFY_SOCKET`` every call does nothing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping


class Notifier:
    """Sends ``sd_notify`` messages to the socket named in the environment, if any."""

    def __init__(
        self,
        environ: Mapping[str, str] = os.environ,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        path = environ.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if path.startswith("@"):
            self.address = b"\0" + path[1:].encode()
        elif path.startswith("/"):
            self.address = path
        self.clock = clock
        self.watchdog: float | None = None  # seconds between WATCHDOG=1
        usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog = int(usec) / 2e6
        self._next_ping = -1.0

    @property
    def enabled(self) -> bool:
        """True under systemd (``NOTIFY_SOCKET`` names a socket)."""
        return self.address is not None

    def notify(self, *fields: str) -> None:
        """Send ``fields`` (``READY=1``, ``STATUS=...``) as one message; errors are ignored
        (systemd may be gone; forwarding must not stop for it)."""
        if self.address is None:
            return
        with (
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock,
            contextlib.suppress(OSError),
        ):
            sock.sendto("\n".join(fields).encode(), self.address)

    def tick(self) -> None:
        """From each main loop turn: ``WATCHDOG=1`` when half the watchdog period passed."""
        if self.watchdog is None:
            return
        now = self.clock()
        if now >= self._next_ping:
            self._next_ping = now + self.watchdog
            self.notify("WATCHDOG=1")
