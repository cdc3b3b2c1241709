"""memifd as a process: logging, the startup file, signals, the loop and a clean stop.

:func:`run` is the whole daemon: it opens the log, the runtime directory and the switch,
runs the startup file, opens the CLI socket (:class:`~.server.CliServer`), then turns the
switch's main loop until SIGINT or SIGTERM and shuts down cleanly (peers get
DISCONNECT, socket files are removed).  SIGHUP reopens the log file (what logrotate and
``systemctl reload`` send) and is never fatal.  Every way it cannot start is one line
naming what was wrong (the file, the path, the operation), never a traceback.

Logging goes to stderr or ``--log FILE``.  Under journald (``JOURNAL_STREAM`` names
stderr) lines carry no timestamp of their own and start with a syslog priority
(``<3>``), which journald reads as the entry's level.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import resource
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass

from ..access import AccessPolicy
from ..admission import raise_fd_limit
from ..ctl.main import default_runtime_dir
from ..ctl.submode import ConfigMode
from ..text import escape
from ..vswitch.memif_port import DEFAULT_VECTOR
from ..vswitch.switch import Switch
from .commands import LOG_LINES, Context, Pending, Reply, execute
from .metrics import INSTALL_HINT, MetricsServer, parse_listen
from .server import IDLE_TIMEOUT, CliServer, poll_pending
from .systemd import Notifier

log = logging.getLogger("memifd")

LOG_LEVELS = ("debug", "info", "warning", "error")
_SYSLOG_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}

__all__ = ["LOG_LEVELS", "Options", "StartupError", "run"]


@dataclass
class Options:
    """What ``memifd`` is started with (see :mod:`.main`)."""

    config: str | None = None
    cli_socket: str | None = None
    runtime_dir: str | None = None
    log: str | None = None
    log_level: str | None = None
    buffers: int = 32768
    vector_size: int = DEFAULT_VECTOR
    verbose: bool = False
    cli_group: str | None = None
    cli_idle_timeout: float = IDLE_TIMEOUT
    socket_mode: int = 0o660
    socket_group: str | None = None
    socket_allow_uid: frozenset[int] = frozenset()
    socket_allow_gid: frozenset[int] = frozenset()
    socket_unsealed_uid: frozenset[int] = frozenset()
    metrics: str | None = None  # HOST:PORT of the Prometheus endpoint

    @property
    def level(self) -> int:
        """The logging level: ``--log-level``, else DEBUG with ``-v``, else INFO."""
        if self.log_level:
            return int(getattr(logging, self.log_level.upper()))
        return logging.DEBUG if self.verbose else logging.INFO


class StartupError(Exception):
    """memifd cannot start; the text names the file, line or path and what was wrong."""


# ---------------------------------------------------------------------- logging
class _JournalFormatter(logging.Formatter):
    """``<priority>message``: journald stamps the time and reads the level itself."""

    def format(self, record: logging.LogRecord) -> str:
        prio = _SYSLOG_PRIORITY.get(record.levelname, 6)
        return f"<{prio}>{super().format(record)}"


def under_journald(stream: object = sys.stderr) -> bool:
    """True when ``stream`` is the journal stream systemd gave us (``JOURNAL_STREAM``)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    try:
        st = os.fstat(stream.fileno())  # type: ignore[attr-defined]
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (ValueError, OSError, AttributeError):
        return False


class Logging:
    """The daemon's log handler: stderr (journald-aware) or a file reopened on SIGHUP."""

    def __init__(self, options: Options) -> None:
        self.path = options.log
        self.handler = self._open()  # StartupError when the file cannot be opened
        self.recent: deque[str] = deque(maxlen=LOG_LINES)  # what show logging prints
        self._ring = _RingHandler(self.recent)
        root = logging.getLogger()
        root.handlers[:] = [self.handler, self._ring]
        root.setLevel(options.level)

    def _open(self) -> logging.Handler:
        handler: logging.Handler
        if self.path is None:
            handler = logging.StreamHandler(sys.stderr)
            if under_journald(sys.stderr):
                handler.setFormatter(_JournalFormatter("memifd: %(message)s"))
                return handler
        else:
            try:
                handler = logging.FileHandler(self.path)
            except OSError as exc:
                raise StartupError(f"cannot open log file {self.path}: {_err(exc)}") from None
        handler.setFormatter(
            logging.Formatter("%(asctime)s memifd[%(process)d] %(levelname)s: %(message)s")
        )
        return handler

    def reopen(self) -> None:
        """SIGHUP: open the log file anew (after logrotate moved it); on failure keep the
        old one and say so in it."""
        if self.path is None:
            log.info("SIGHUP: logging to stderr, nothing to reopen")
            return
        try:
            handler = self._open()
        except StartupError as exc:
            log.error("SIGHUP: %s; still logging to the old file", exc)
            return
        root = logging.getLogger()
        old, self.handler = self.handler, handler
        root.handlers[:] = [handler, self._ring]
        old.close()
        log.info("SIGHUP: log file %s reopened", self.path)


class _RingHandler(logging.Handler):
    """Keeps the newest formatted records in a deque (``show logging``)."""

    def __init__(self, ring: deque[str]) -> None:
        super().__init__()
        self.ring = ring
        self.setFormatter(
            logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s",
                              "%Y/%m/%d %H:%M:%S")  # fmt: skip
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.ring.append(self.format(record))
        except Exception:  # a record that cannot be formatted: not worth stopping for
            self.handleError(record)


# ---------------------------------------------------------------------- startup file
def wait_for(ctx: Context, op: Pending) -> Reply:
    """Run the switch until ``op`` has its reply (startup-file commands)."""
    while True:
        reply = poll_pending(op, time.monotonic())
        if reply is not None:
            return reply
        ctx.switch.run_once()


def read_startup(path: str) -> list[str]:
    """The startup file's lines; StartupError (one line) when unreadable or not UTF-8."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise StartupError(f"startup file {_err(exc)}") from None
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise StartupError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
            "a startup file holds CLI commands in UTF-8"
        ) from None


def run_startup(ctx: Context, path: str) -> None:
    """Execute a startup file: one command per line; ``#`` comments and blank lines."""
    mode = ConfigMode()  # TNSR's config-memif sub-mode works here too
    for lineno, line in enumerate(read_startup(path), 1):
        step = mode.feed(line)
        if step.command is None:  # a comment, a blank line, a sub-mode's exit
            continue
        result = execute(ctx, step.command)
        reply = wait_for(ctx, result) if isinstance(result, Pending) else result
        if not reply.ok:
            raise StartupError(f"{path}:{lineno}: {reply.output}")
        mode.accepted(step)
        said = reply.output.replace("\n", " | ") or "ok"
        log.info("%s:%d: %s: %s", path, lineno, escape(step.command), said)


# ---------------------------------------------------------------------- the loop
class Daemon:
    """The switch, its CLI server, and the flags signals set."""

    STOP = (signal.SIGINT, signal.SIGTERM)

    def __init__(
        self,
        ctx: Context,
        cli: CliServer,
        logs: Logging | None = None,
        metrics: MetricsServer | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.ctx = ctx
        self.cli = cli
        self.logs = logs
        self.metrics = metrics
        self.notifier = notifier or Notifier({})
        self.stop_signal: int | None = None
        self.hangups = 0  # SIGHUPs not yet handled
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def _on_signal(self, signum: int, frame: object) -> None:
        if signum == signal.SIGHUP:
            self.hangups += 1
        else:
            self.stop_signal = signum

    def _drain(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self._wake_r, 512):
                pass

    def _hangup(self) -> None:
        self.hangups = 0
        if self.logs is not None:
            self.logs.reopen()

    def serve(self) -> None:
        """The main loop, until SIGINT or SIGTERM; SIGHUP reopens the log."""
        switch = self.ctx.switch
        loop = switch.loop
        old = {s: signal.signal(s, self._on_signal) for s in (*self.STOP, signal.SIGHUP)}
        old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        switch.add_fd(self._wake_r, self._drain)
        try:
            while self.stop_signal is None:
                try:
                    if self.hangups:
                        self._hangup()
                    loop.turn()
                    self.notifier.tick()
                    if self.metrics is not None:
                        self.metrics.service()
                    if self.cli.service():  # CLI backlog: make the next sleep return at once
                        with contextlib.suppress(OSError):
                            os.write(self._wake_w, b"\0")
                except Exception as exc:  # nothing but a signal ends memifd
                    loop.failed("loop-exception", "main loop", exc)
        finally:
            switch.remove_fd(self._wake_r)
            signal.set_wakeup_fd(old_wakeup)
            for s, h in old.items():
                signal.signal(s, h)
            os.close(self._wake_r)
            os.close(self._wake_w)


def shutdown(
    ctx: Context,
    cli: CliServer | None,
    reason: str = "memifd shutting down",
    metrics: MetricsServer | None = None,
) -> None:
    """Close the CLI and metrics, tell every memif peer why it goes, close the switch."""
    if cli is not None:
        cli.close()
    if metrics is not None:
        metrics.close()
    for port in ctx.switch.memif_ports():
        if port.iface.connected:
            try:
                port.iface.disconnect(reason)
            except Exception:
                log.exception("disconnecting %s", port.iface.name)
    ctx.switch.close()


def run(options: Options) -> int:
    """The whole ``memifd`` process; returns its exit status."""
    try:
        logs = Logging(options)
    except StartupError as exc:
        print(f"memifd: {exc}", file=sys.stderr)
        return 1
    soft = raise_fd_limit()  # before any socket opens: peers' fds count against it
    log.info("open files limit %d (hard %d)", soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    runtime = options.runtime_dir or default_runtime_dir()
    cli_path = options.cli_socket or os.path.join(runtime, "cli.sock")
    gid, mode = None, 0o600
    try:
        if options.cli_group:
            gid, mode = grp.getgrnam(options.cli_group).gr_gid, 0o660
        os.makedirs(runtime, mode=0o755 if os.geteuid() == 0 else 0o700, exist_ok=True)
        socket_gid = grp.getgrnam(options.socket_group).gr_gid if options.socket_group else None
        switch = Switch(
            runtime_dir=runtime,
            n_buffers=options.buffers,
            vector_size=options.vector_size,
            socket_mode=options.socket_mode,
            socket_group=socket_gid,
            socket_access=AccessPolicy.of(
                options.socket_allow_uid,
                options.socket_allow_gid | ({socket_gid} if socket_gid is not None else set()),
                options.socket_unsealed_uid,
            ),
        )
    except (OSError, KeyError, ValueError) as exc:
        return _fatal(options, f"cannot start: {_err(exc)}")
    ctx = Context(switch)
    ctx.recent_logs = logs.recent
    cli = CliServer(
        ctx,
        cli_path,
        mode=mode,
        gid=gid,
        policy=AccessPolicy.of(gids=() if gid is None else (gid,)),
        idle_timeout=options.cli_idle_timeout,
    )
    metrics: MetricsServer | None = None
    try:
        if options.config:
            run_startup(ctx, options.config)
        cli.start()
        if options.metrics:
            metrics = _metrics(ctx, options.metrics)
    except StartupError as exc:
        shutdown(ctx, cli)
        return _fatal(options, str(exc))
    except OSError as exc:
        shutdown(ctx, cli)
        return _fatal(options, f"CLI socket {_err(exc)}")
    log.info("memifd ready (runtime dir %s, %d buffers)", runtime, options.buffers)
    notifier = Notifier()
    notifier.notify("READY=1", f"STATUS=memifd ready, CLI on {cli_path}", f"MAINPID={os.getpid()}")
    daemon = Daemon(ctx, cli, logs, metrics, notifier)
    try:
        daemon.serve()
    except Exception:
        log.exception("main loop failed")
        notifier.notify("STOPPING=1", "STATUS=main loop failed")
        shutdown(ctx, cli, "memifd failed", metrics)
        return 1
    name = signal.Signals(daemon.stop_signal).name if daemon.stop_signal else "?"
    log.info("%s: shutting down", name)
    notifier.notify("STOPPING=1", f"STATUS={name}: shutting down")
    shutdown(ctx, cli, metrics=metrics)
    log.info("stopped")
    return 0


def _metrics(ctx: Context, listen: str) -> MetricsServer:
    """The Prometheus endpoint; StartupError (one line) when it cannot run."""
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise StartupError(f"--metrics {exc}") from None
    try:
        import prometheus_client  # noqa: F401  (the 'metrics' extra)
    except ImportError:
        raise StartupError(INSTALL_HINT) from None
    try:
        return MetricsServer(ctx, host, port)
    except OSError as exc:
        raise StartupError(f"--metrics {_err(exc)}") from None


def _fatal(options: Options, message: str) -> int:
    """Log why memifd cannot run (also on stderr when logging goes to a file)."""
    log.error("%s", message)
    if options.log:
        print(f"memifd: {message}", file=sys.stderr)
    return 1


def _err(exc: BaseException) -> str:
    """``PATH: reason`` of an OSError (the path when it has one), else the text."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    if isinstance(exc, KeyError):
        return f"unknown group {exc.args[0]}"
    return str(exc)
