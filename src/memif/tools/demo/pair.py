"""``memif demo --pair``: two processes exchange checked traffic over memif, with live counters.

The command starts a second Python process (``memif demo --peer``, :mod:`.demo_echo`) that
listens on a fresh abstract socket as the **server** and echoes every frame back with its MAC
addresses swapped.  This process connects as the **client**, sends a stream of
sequence-numbered Ethernet frames of mixed sizes (a 9000-byte jumbo frame every 32nd, chained
over 2048-byte buffers) and checks every frame that comes back: length, addresses, sequence
order and every payload byte (:mod:`.demo_traffic`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from typing import Any

from ... import testing, transport
from ...config import InterfaceConfig
from ...errors import ConfigError
from ...interface import Interface
from ...loop import EventLoop
from ...sock import Socket
from ..common import LiveLine, StopRequest
from .proc import Child, DemoError, memif_argv
from .traffic import HOUSEKEEPING, SIZES, SPIN, Client, Counters, sleep_rx

__all__ = ["Peer", "run_demo"]


class Peer:
    """The server process: started, watched, stopped, its report read."""

    def __init__(self, args: argparse.Namespace, name: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="memif-demo-peer-")  # removed in stop()
        argv = memif_argv(
            "demo",
            "--peer",
            "--socket",
            name,
            "--ring-size",
            str(args.ring_size),
            "--buffer-size",
            str(args.buffer_size),
            "--connect-timeout",
            str(args.connect_timeout),
        )
        base = os.path.join(self.dir, "server")
        self.child = Child("the server process", argv, base, stdin=subprocess.PIPE)

    @property
    def pid(self) -> int:
        """The server process's pid."""
        return self.child.pid

    def check(self) -> None:
        """Raise DemoError if the server process has exited."""
        self.child.check()

    def stop(self) -> dict[str, Any]:
        """Close its stdin (its signal to stop), wait, kill if needed; its report or {}."""
        stdin = self.child.proc.stdin
        if stdin is not None:
            with contextlib.suppress(OSError):
                stdin.close()
        if self.child.wait(5) is None:
            self.child.stop(signal.SIGTERM, 2)
        report = self.child.report()
        shutil.rmtree(self.dir, ignore_errors=True)
        return report


def _rate_line(c: Counters, mpps: float, gbps: float, errors: int) -> str:
    return (
        f"tx {c.tx_packets:,}  rx {c.rx_packets:,}  "
        f"{mpps:.3f} Mpps  {gbps:.2f} Gbit/s  lost {c.gaps:,}  errors {errors:,}"
    )


def run_demo(args: argparse.Namespace) -> int:
    """The client process: start the server, send, check, report."""
    name = args.socket or testing.unique_name("memif-demo")
    _check_args(args, name)
    live = LiveLine(sys.stderr if args.json else sys.stdout)
    stop = StopRequest()
    error = ""
    client: Client | None = None
    started = ended = time.monotonic()
    sock: Socket | None = None
    with stop.installed():
        peer = Peer(args, name)
        try:
            sock = Socket(name, app_name="memif-demo-client")
            iface = sock.create_interface(
                role="client",
                id=0,
                ring_size=args.ring_size,
                buffer_size=args.buffer_size,
                reconnect_interval=0.05,
                polling=True,
            )
            end = time.monotonic() + args.connect_timeout
            while not iface.connected and not stop:
                peer.check()
                if time.monotonic() > end:
                    raise DemoError(f"no connection to the server after {args.connect_timeout:g} s")
                sock.poll(0.02)
            if not stop:
                if not args.json:
                    print(
                        f"memif demo: client pid {os.getpid()} <-> server pid {peer.pid} "
                        f"over {name}, {args.ring_size}-slot rings of "
                        f"{args.buffer_size}-byte buffers",
                        flush=True,
                    )
                client = Client(iface, args.buffer_size)
                started = time.monotonic()
                live.restart()
                ended = _traffic(args, sock, iface, client, peer, live, started, stop)
        except DemoError as exc:
            error = str(exc)
            ended = time.monotonic()
        except KeyboardInterrupt:  # a second Ctrl-C: no more waiting
            ended = time.monotonic()
        finally:
            live.close()
            if sock is not None:
                sock.close()
            peer_report = peer.stop()
    interrupted = bool(stop)
    summary = _summary(client, peer_report, ended - started, name, peer.pid, interrupted, error)
    if args.json:
        print(json.dumps(summary), flush=True)
    else:
        _print_summary(summary)
    if interrupted:
        return 130
    return 0 if summary["ok"] else 1


def _check_args(args: argparse.Namespace, name: str) -> None:
    """Refuse bad options before starting the server process (ConfigError)."""
    transport.parse_address(name)
    InterfaceConfig(ring_size=args.ring_size, buffer_size=args.buffer_size).check()
    longest = -(-max(SIZES) // args.buffer_size)
    if args.ring_size < 2 * longest:
        raise ConfigError(
            f"a {max(SIZES)}-byte frame takes {longest} buffers of {args.buffer_size} bytes: "
            f"use a ring of at least {2 * longest} slots"
        )


def _traffic(
    args: argparse.Namespace,
    sock: Socket,
    iface: Interface,
    client: Client,
    peer: Peer,
    live: LiveLine,
    started: float,
    stop: StopRequest,
) -> float:
    """Send and check for ``args.duration`` seconds (or until ``stop``), then drain.

    Returns the time the traffic ended.
    """
    stop_at = started + args.duration
    next_house = started + HOUSEKEEPING
    last_t, last_rx, last_bytes = started, 0, 0
    busy_at = started
    c = client.c
    wake = EventLoop()  # what an idle turn sleeps on: the rx eventfd (sleep_rx), the control
    wake.add_socket(sock)  # socket
    while True:
        now = time.monotonic()
        sending = now < stop_at and not stop
        if client.receive() + (client.send() if sending else 0):
            busy_at = now
        idle = now - busy_at > SPIN
        if now >= next_house or idle:
            next_house = now + HOUSEKEEPING
            sock.poll(0)
            peer.check()
            if not iface.connected:
                raise DemoError("the server disconnected: " + (iface.remote_disc_reason or "?"))
            dt = now - last_t
            if dt >= live.interval:
                mpps = (c.rx_packets - last_rx) / dt / 1e6
                gbps = (c.rx_bytes - last_bytes) * 8 / dt / 1e9
                errors = c.mismatches + sum(client.errors().values())
                live.update(_rate_line(c, mpps, gbps, errors))
                last_t, last_rx, last_bytes = now, c.rx_packets, c.rx_bytes
            if not sending:
                _drain(sock, client, 2.0, wake)
                end = time.monotonic()
                errors = c.mismatches + sum(client.errors().values())
                mpps = c.rx_packets / (end - started) / 1e6
                gbps = c.rx_bytes * 8 / (end - started) / 1e9
                if live.tty:  # the final figures, in place
                    live.finish(_rate_line(c, mpps, gbps, errors), end - started)
                return end
            if idle:
                sleep_rx(wake, client.rxq, 0.01)


def _drain(sock: Socket, client: Client, patience: float, wake: EventLoop) -> None:
    """Receive what is still in flight; give up ``patience`` s after the last frame.

    Between frames it sleeps on ``wake`` (the receive eventfd and the control socket).
    """
    c = client.c
    last = time.monotonic()
    while c.rx_packets + c.gaps < c.tx_packets and client.iface.connected:
        if client.receive():
            last = time.monotonic()
        elif time.monotonic() - last > patience:
            break
        else:
            sleep_rx(wake, client.rxq, 0.01)
            sock.poll(0)


def _summary(
    client: Client | None,
    peer: dict[str, Any],
    elapsed: float,
    name: str,
    peer_pid: int,
    interrupted: bool,
    error: str,
) -> dict[str, Any]:
    c = client.c if client is not None else Counters()
    errors = dict(client.errors()) if client is not None else {}
    for k, v in peer.get("errors", {}).items():
        errors["server_" + k] = v
    lost = c.tx_packets - c.rx_packets
    elapsed = max(elapsed, 1e-9)
    ok = (
        not error
        and c.rx_packets > 0
        and lost == 0
        and c.mismatches == 0
        and not errors
        and peer.get("echoed_packets", -1) == c.tx_packets
    )
    out = asdict(c)
    for k in ("next_seq", "gaps", "first_bad"):
        out.pop(k)
    out.update(
        packets=c.rx_packets,
        lost=lost,
        errors=errors,
        error_count=sum(errors.values()),
        duration=round(elapsed, 3),
        mpps=round(c.rx_packets / elapsed / 1e6, 4),
        gbps=round(c.rx_bytes * 8 / elapsed / 1e9, 3),
        server_echoed=peer.get("echoed_packets"),
        socket=name,
        client_pid=os.getpid(),
        server_pid=peer_pid,
        interrupted=interrupted,
        ok=ok,
    )
    if c.first_bad:
        out["first_mismatch"] = c.first_bad
    if error:
        out["error"] = error
    return out


def _print_summary(s: dict[str, Any]) -> None:
    if s.get("error") and not s["tx_packets"]:
        print(f"memif demo: {s['error']}", file=sys.stderr)
        return
    print(
        f"sent {s['tx_packets']:,} frames ({s['tx_bytes'] / 1e6:,.1f} MB), "
        f"echoed back {s['rx_packets']:,} ({s['jumbo']:,} of them 9000-byte jumbo frames "
        f"chained over buffers) in {s['duration']:.2f} s"
    )
    print(
        f"{s['mpps']:.3f} Mpps, {s['gbps']:.2f} Gbit/s each way; lost {s['lost']:,}, "
        f"mismatches {s['mismatches']:,}, errors {s['error_count']:,}"
    )
    for k, v in s["errors"].items():
        print(f"  {k}: {v:,}")
    if s.get("first_mismatch"):
        print(f"first mismatch: {s['first_mismatch']}")
    if s.get("error"):
        print(f"memif demo: {s['error']}", file=sys.stderr)
    if s["interrupted"]:
        print(f"interrupted after {s['duration']:.2f} s")
    if s["ok"]:
        print("OK: every frame came back intact and in order")
    elif not s.get("error"):
        print("FAILED: " + ("no traffic" if not s["rx_packets"] else "frames lost or damaged"))
