"""memifd's CLI socket server, served from the switch's main loop.

The CLI is a unix stream socket.  A client sends one request per line,
``{"command": "show interface", "json": false}``, and gets one reply line,
``{"ok": true, "output": "...", "data": null}`` (the schema, limits included, is
:mod:`memif.ctl.schema`, which memifctl shares).  The server lives inside the switch
loop: the listening socket and every client are watched with :meth:`Switch.add_fd`,
every read and write is non-blocking with per-client buffers, and a command that takes
time (``ping``) is a :class:`~.commands.Pending` polled each loop turn, so no client,
slow or hostile, holds up forwarding.

Nobody can lock the operator out or stop the daemon through it: a client's
credentials (``SO_PEERCRED``) are checked against an :class:`~memif.access.AccessPolicy`
(root, memifd's own uid, ``--cli-group``); one uid holds at most
``MAX_CLIENTS_PER_UID`` connections; a client idle for ``--cli-idle-timeout`` seconds
is closed, and when every slot (of all, or of that uid) is taken the client idle
longest (of all, or of that uid) makes room; a request
line longer than ``MAX_REQUEST`` bytes or nested deeper than ``MAX_DEPTH`` is refused
before it is parsed; and an exception serving one client closes that client only.
Refusals are logged with the peer's pid and uid and counted under ``cli`` in
``show errors``.

:mod:`.process` runs the whole daemon around it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..access import AccessPolicy, PeerCredentials, peer_credentials
from ..ctl import schema
from ..ctl.schema import MAX_REQUEST, SchemaError
from ..text import escape
from ..vswitch.graph import CounterNode
from .commands import Context, Pending, Reply, execute

log = logging.getLogger("memifd")

MAX_OUTPUT = 16 << 20  # replies a client does not read: beyond this it is dropped
OUTPUT_HIGH = 1 << 20  # unread replies past this: the client's next requests wait
MAX_CLIENTS = 64
MAX_CLIENTS_PER_UID = 16  # so one user cannot take every slot
IDLE_TIMEOUT = 60.0  # seconds without a request before a client is closed
READS_PER_TURN = 16  # recv calls per readable event, so one client cannot hog the loop
REQUESTS_PER_TURN = 64  # requests answered per client per loop turn

__all__ = ["CliServer", "poll_pending"]


# ---------------------------------------------------------------------- CLI server
@dataclass(eq=False)
class _Client:
    sock: socket.socket
    fd: int
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    pending: Pending | None = None
    pending_json: bool = False
    eof: bool = False
    closed: bool = False
    cred: PeerCredentials | None = None
    last_active: float = 0.0  # when it last sent a request or got its reply
    watched: bool = False  # its fd is in the loop's poll set

    @property
    def idle(self) -> bool:
        """Nothing in progress: no pending command, no unanswered request."""
        return self.pending is None and b"\n" not in self.inbuf


class CliCounters(CounterNode):
    """``show errors`` counters of the CLI server (a node that never gets vectors)."""

    name = "cli"
    errors = {
        "access-denied": "CLI client refused: its uid/gid is not allowed",
        "uid-limit": "CLI client refused: its uid's connections are all busy",
        "full": "CLI client refused: every slot busy",
        "evicted": "idle CLI client closed to admit a new one",
        "idle-timeout": "CLI client closed: idle too long",
        "bad-request": "CLI request refused: malformed, too long or nested too deep",
        "exception": "exception serving a CLI client: that client closed",
    }



class CliServer:
    """The CLI socket, served from the switch's main loop.

    ``policy`` says who may connect (default: root and memifd's own uid);
    ``idle_timeout`` closes silent clients; ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        ctx: Context,
        path: str,
        *,
        mode: int = 0o600,
        gid: int | None = None,
        policy: AccessPolicy | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
        max_clients: int = MAX_CLIENTS,
        max_per_uid: int = MAX_CLIENTS_PER_UID,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ctx = ctx
        self.switch = ctx.switch
        self.path = path
        self.mode = mode
        self.gid = gid
        self.policy = policy or AccessPolicy()
        self.idle_timeout = idle_timeout
        self.max_clients = max_clients
        self.max_per_uid = max_per_uid
        self.clock = clock
        self.clients: dict[int, _Client] = {}
        self._listener: socket.socket | None = None
        self.counters = self.switch.graph.error_counters(CliCounters)

    # ------------------------------------------------------------------ socket
    def start(self) -> None:
        """Bind (refusing if another memifd answers there) and start accepting."""
        parent = os.path.dirname(self.path) or "."
        if not os.path.isdir(parent):  # never a directory tree made from a typo
            raise OSError(errno.ENOENT, "no such directory", parent)
        _remove_stale(self.path)
        sock = socket.socket(
            socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
        )
        old = os.umask(0o777 & ~self.mode)  # never world-accessible, not even briefly
        try:
            sock.bind(self.path)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, exc.strerror, self.path) from None
        finally:
            os.umask(old)
        os.chmod(self.path, self.mode)
        if self.gid is not None:
            os.chown(self.path, -1, self.gid)
        sock.listen(socket.SOMAXCONN)  # connections wait there, not fail, in a burst
        self._listener = sock
        self.switch.add_fd(sock.fileno(), self._accept)
        log.info(
            "CLI listening on %s (mode %04o, admits %s)",
            self.path,
            self.mode,
            self.policy.describe(memory=False),
        )

    def close(self) -> None:
        """Close every client (cancelling what they wait for) and remove the socket file."""
        for c in list(self.clients.values()):
            self._close(c)
        if self._listener is not None:
            self.switch.remove_fd(self._listener.fileno())
            self._listener.close()
            self._listener = None
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("CLI accept failed: %s", exc.strerror or exc)
                return
            try:
                cred = peer_credentials(sock)
            except OSError as exc:
                log.warning("CLI: no peer credentials: %s", exc.strerror or exc)
                sock.close()
                continue
            why = self._admission(cred)
            if why is not None:
                self.counters[why[0]] += 1
                log_refusal = self.switch.ratelog.log
                log_refusal(("cli", why[0], cred.uid), "CLI: refused %s: %s", cred, why[1])
                with contextlib.suppress(OSError):
                    sock.send(_encode(Reply(False, why[1]), False))
                sock.close()
                continue
            sock.setblocking(False)
            c = _Client(sock, sock.fileno(), cred=cred, last_active=self.clock())
            self.clients[c.fd] = c
            self._watch(c)
            log.debug("CLI client %d connected (%s)", c.fd, cred)

    def _admission(self, cred: PeerCredentials) -> tuple[str, str] | None:
        """None when ``cred`` may have a client slot (evicting the idlest client if
        every slot is taken), else (counter, one-line reason)."""
        if not self.policy.admits(cred):
            return "access-denied", self.policy.refusal(cred, "this CLI socket")
        mine = [c for c in self.clients.values() if c.cred and c.cred.uid == cred.uid]
        if len(mine) >= self.max_per_uid:  # the uid competes with itself only
            if self._evict([c for c in mine if c.idle], cred):
                return None
            return "uid-limit", f"too many busy CLI clients of uid {cred.uid}"
        if len(self.clients) < self.max_clients or self._evict(
            [c for c in self.clients.values() if c.idle], cred
        ):
            return None
        return "full", f"too many CLI clients ({self.max_clients}), all busy"

    def _evict(self, idle: list[_Client], cred: PeerCredentials) -> bool:
        """Close the client of ``idle`` that was quiet longest, to admit ``cred``."""
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.last_active)
        self.counters["evicted"] += 1
        log.info("CLI: closing idle client %d (%s) to admit %s", oldest.fd, oldest.cred, cred)
        self._close(oldest)
        return True

    def _guarded(self, c: _Client, fn: Callable[[_Client], None]) -> None:
        """Serve one client; an exception closes that client only (logged, counted)."""
        try:
            fn(c)
        except Exception as exc:
            self.counters["exception"] += 1
            log.exception("CLI client %d (%s): internal error, closing it", c.fd, c.cred)
            with contextlib.suppress(Exception):
                c.sock.send(_encode(Reply(False, f"internal error: {type(exc).__name__}"), False))
            with contextlib.suppress(Exception):
                self._close(c)

    def _close(self, c: _Client) -> None:
        if c.closed:
            return
        c.closed = True
        if c.pending is not None:
            _safe(c.pending.cancel)
            c.pending = None
        self.switch.remove_fd(c.fd)
        self.clients.pop(c.fd, None)
        c.sock.close()
        log.debug("CLI client %d closed", c.fd)

    # ------------------------------------------------------------------ input
    def _watch(self, c: _Client) -> None:
        """Poll the client's fd only while we would read it: not after EOF, not while
        its queued requests or unread replies are at their limit (else a client that
        sends without reading would keep the loop from ever sleeping)."""
        want = not (c.closed or c.eof) and len(c.inbuf) <= MAX_REQUEST
        want = want and len(c.outbuf) < OUTPUT_HIGH
        if want and not c.watched:
            self.switch.add_fd(c.fd, functools.partial(self._guarded, c, self._readable))
        elif c.watched and not want and not c.closed:
            self.switch.remove_fd(c.fd)
        c.watched = want

    def _readable(self, c: _Client) -> None:
        for _ in range(READS_PER_TURN):
            if len(c.inbuf) > MAX_REQUEST:  # requests queued: read more once they are done
                break
            try:
                data = c.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(c)
                return
            if not data:
                c.eof = True  # nothing more to read: no longer watched
                break
            c.inbuf += data
            c.last_active = self.clock()
            if b"\n" not in c.inbuf and len(c.inbuf) > MAX_REQUEST:
                self.counters["bad-request"] += 1
                self._send(c, Reply(False, schema.TOO_LONG), False)
                c.inbuf.clear()
                c.eof = True
                break
        self._process(c)
        self._watch(c)

    def _process(self, c: _Client) -> None:
        """Answer complete request lines in order; a pending one holds the rest back.

        At most REQUESTS_PER_TURN per call: a client pipelining thousands of commands
        gets the rest answered on later loop turns, between packet vectors; and none
        while OUTPUT_HIGH bytes of replies wait for it to read them.
        """
        for _ in range(REQUESTS_PER_TURN):
            if c.closed or c.pending is not None or len(c.outbuf) >= OUTPUT_HIGH:
                break
            raw = schema.next_line(c.inbuf)
            if raw is None:
                break
            if not raw.strip():
                continue
            c.last_active = self.clock()
            want_json, result = self._request(raw, c)
            if isinstance(result, Pending):
                c.pending, c.pending_json = result, want_json
            else:
                self._send(c, result, want_json)
        self._maybe_close(c)

    def _request(self, raw: bytes, c: _Client) -> tuple[bool, Reply | Pending]:
        """Check, decode (:mod:`memif.ctl.schema`) and run one request line; a command
        that changes state is logged at INFO with the client's credentials."""
        try:
            req = schema.decode_request(raw)
        except SchemaError as exc:
            self.counters["bad-request"] += 1
            return False, Reply(False, str(exc))
        log.debug("CLI: %s", escape(req.command))
        return req.json, execute(self.ctx, req.command, origin=f"CLI ({c.cred})")

    # ------------------------------------------------------------------ output
    def _send(self, c: _Client, reply: Reply, want_json: bool) -> None:
        c.outbuf += _encode(reply, want_json)
        self._flush(c)

    def _flush(self, c: _Client) -> None:
        while c.outbuf and not c.closed:
            try:
                n = c.sock.send(c.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(c)
                return
            del c.outbuf[:n]
        if len(c.outbuf) > MAX_OUTPUT:
            log.warning("CLI client %d (%s) does not read its replies: closing it", c.fd, c.cred)
            self._close(c)

    def _maybe_close(self, c: _Client) -> None:
        if c.eof and c.pending is None and not c.outbuf and b"\n" not in c.inbuf:
            self._close(c)

    # ------------------------------------------------------------------ each loop turn
    def service(self) -> bool:
        """Poll pending operations and flush output; called after every loop turn.

        Returns True when requests are still queued (the loop should not sleep).
        """
        if not self.ctx.pings and self.switch.ping_replies:
            self.switch.ping_replies.clear()  # echo replies nobody waits for
        due = [c for c in self.clients.values() if not (c.closed or self._quiet(c))]
        if not due:  # quiet clients are never ready
            return False
        now = time.monotonic()
        for c in due:
            if not c.closed:
                self._guarded(c, functools.partial(self._service, now=now))
        return any(_ready(c) for c in due)

    def _quiet(self, c: _Client) -> bool:
        """Nothing for :meth:`_service` to do for ``c`` this turn (most turns of a
        connected client that says nothing): watched as :meth:`_watch` wants it, no
        command pending, no request line, no reply waiting, not at EOF, not idle past
        the timeout."""
        return (
            c.watched
            and c.pending is None
            and not c.outbuf
            and not c.eof
            and len(c.inbuf) <= MAX_REQUEST
            and b"\n" not in c.inbuf
            and self.clock() - c.last_active <= self.idle_timeout
        )

    def _service(self, c: _Client, now: float) -> None:
        if c.pending is not None:
            reply = poll_pending(c.pending, now)
            if reply is not None:
                c.pending = None
                c.last_active = self.clock()
                self._send(c, reply, c.pending_json)
                self._process(c)
        elif b"\n" in c.inbuf:
            self._process(c)
        if c.outbuf:
            self._flush(c)
        self._maybe_close(c)
        if not c.closed:
            self._watch(c)
        if not c.closed and c.pending is None and self.clock() - c.last_active > self.idle_timeout:
            self.counters["idle-timeout"] += 1
            log.info("CLI client %d (%s) idle %.0f s: closing it", c.fd, c.cred, self.idle_timeout)
            self._close(c)


def _ready(c: _Client) -> bool:
    """A request of ``c`` can be answered now (the loop should not sleep)."""
    return c.pending is None and len(c.outbuf) < OUTPUT_HIGH and b"\n" in c.inbuf


def _encode(reply: Reply, want_json: bool) -> bytes:
    """The wire line of ``reply`` (:mod:`memif.ctl.schema`); ``data`` only if asked for."""
    try:
        return schema.encode_reply(reply if want_json else replace(reply, data=None))
    except SchemaError as exc:  # a handler put something odd in data
        log.exception("reply not serialisable")
        return schema.encode_reply(Reply(False, f"internal error: {exc}"))


def _safe(fn: Any) -> None:
    try:
        fn()
    except Exception:
        log.exception("internal error")


def poll_pending(op: Pending, now: float) -> Reply | None:
    """``op.poll(now)``; an exception is logged and becomes an error reply (op cancelled)."""
    try:
        return op.poll(now)
    except Exception as exc:
        log.exception("internal error in a pending command")
        _safe(op.cancel)
        return Reply(False, f"internal error: {type(exc).__name__}: {exc}")


def _remove_stale(path: str) -> None:
    """Remove a socket file nobody answers on; refuse if a daemon does."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, "exists and is not a socket", path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # stale: the daemon that made it is gone
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, "another memifd is serving", path)
