"""``memif demo``'s switch: memifd with three memif ports, the mirror monitor, the CLI.

::

    peer A ── a.sock ── memif1/0 ┐                 ┌ memif2/0 ── c.sock ── peer C
                                 └ bridge-domain 1 ┘
                                   │ SPAN rx of memif1/0 and memif2/0
                                 memif3/0 ── b.sock ── memif monitor B

memifd (``python -m memif.daemon.main``) runs the startup file :data:`CONFIG`, with its
sockets in one temporary directory, and is the master of every port; the peers connect as
clients.  SPAN is ``rx`` on both bridge ports: every frame is mirrored once, as it enters
the switch, so the monitor must see exactly A->C + C->A frames.  (``deploy/memifd.conf``
mirrors ``both`` ways instead, so every frame reaches its monitor twice.)

The demo reads the switch only through memifd's CLI socket, as ``memifctl`` does
(:class:`memif.ctl.main.Client`): it never imports ``memif.daemon``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

from ...ctl.main import Client, CommandFailed, CtlError
from .proc import Child, DemoError, memif_argv

IF_A, IF_C, IF_B = "memif1/0", "memif2/0", "memif3/0"
MAC_A = "02:00:00:00:00:0a"  # as in docs/topology.md
MAC_C = "02:00:00:00:00:0c"
MONITOR_RING = 8192  # the mirror carries both directions: twice the peers' rings
CLI_TIMEOUT = 10.0

CONFIG = """\
# memif demo: peers A and C bridged, B a mirror (SPAN) of both.
create memif socket id 1 filename {dir}/a.sock
create memif socket id 2 filename {dir}/c.sock
create memif socket id 3 filename {dir}/b.sock
create interface memif id 0 socket-id 1 master
create interface memif id 0 socket-id 2 master
create interface memif id 0 socket-id 3 master
create bridge-domain 1 learn 1
set interface l2 bridge memif1/0 1
set interface l2 bridge memif2/0 1
# One copy of every frame, as it enters the switch: B sees A->C + C->A frames.
set interface span memif1/0 destination memif3/0 rx
set interface span memif2/0 destination memif3/0 rx
set interface state memif1/0 up
set interface state memif2/0 up
set interface state memif3/0 up
"""

_MONITOR_LINE = re.compile(rb"monitor: (\d+) packets")  # after the elapsed time


class Topology:
    """memifd, the monitor, and the temporary directory that holds their sockets and logs."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="memif-demo-")
        self.sock = {role: os.path.join(self.dir, f"{role.lower()}.sock") for role in "ACB"}
        self.cli_path = os.path.join(self.dir, "cli.sock")
        self.conf = os.path.join(self.dir, "memifd.conf")
        self.log = os.path.join(self.dir, "memifd.log")
        self.memifd: Child | None = None
        self.monitor: Child | None = None
        self.children: list[Child] = []
        self._ctl: Client | None = None
        self.last: dict[str, dict[str, Any]] = {}  # the latest interface counters read
        self._mon_seen = (0, 0)  # (bytes of the monitor's stderr read, last count)

    # ------------------------------------------------------------------ memifd
    def start_memifd(self, timeout: float) -> None:
        """Start memifd and wait until its CLI answers (the memif sockets exist by then)."""
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(CONFIG.format(dir=self.dir))
        argv = [sys.executable, "-m", "memif.daemon.main", "-c", self.conf]
        argv += ["--cli-socket", self.cli_path, "--runtime-dir", self.dir, "--log", self.log]
        self.memifd = self._spawn("memifd", argv, "memifd")
        deadline = time.monotonic() + timeout
        while True:
            if not self.memifd.running:
                raise DemoError(
                    f"memifd exited with status {self.memifd.proc.returncode}: " + self.log_tail()
                )
            if os.path.exists(self.cli_path):
                try:
                    self._ctl = Client(self.cli_path, timeout=CLI_TIMEOUT)
                    break
                except CtlError:
                    pass
            if time.monotonic() > deadline:
                raise DemoError(f"memifd's CLI socket did not open in {timeout:g} s")
            time.sleep(0.02)

    def log_tail(self) -> str:
        """The last line memifd logged."""
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                lines = f.read().strip().splitlines()
        except OSError:
            lines = []
        return lines[-1] if lines else "(no log)"

    def cli(self, command: str) -> Any:
        """One command over the CLI socket; its JSON data (DemoError if it failed)."""
        if self._ctl is None:
            raise DemoError("memifd is not running")
        try:
            return self._ctl.run(command, want_json=True)
        except CommandFailed as exc:
            raise DemoError(str(exc)) from None
        except CtlError as exc:
            raise DemoError(f"{exc} ({self.log_tail()})") from None

    def interfaces(self) -> dict[str, dict[str, Any]]:
        """``show interface``: name -> facts and counters (also kept in :attr:`last`)."""
        self.last = {d["name"]: d for d in self.cli("show interface")}
        return self.last

    def posted(self, name: str) -> int:
        """Receive buffers the peer of ``name`` has posted (free master-to-slave slots)."""
        (iface,) = self.cli(f"show memif {name}")["interfaces"]
        rings = [r for r in iface["rings"] if r["direction"] == "master-to-slave"]
        return sum((r["head"] - r["tail"]) & 0xFFFF for r in rings)

    def wait_links(self, names: list[str], timeout: float, check: Any = None) -> None:
        """Wait until every interface of ``names`` is connected (``check()`` between polls)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            if check is not None:
                check()
            ifs = self.interfaces()
            down = [n for n in names if not ifs[n]["link_up"]]
            if not down:
                return
            if time.monotonic() > deadline:
                raise DemoError(f"{', '.join(down)} not connected after {timeout:g} s")
            time.sleep(0.05)

    def check(self) -> None:
        """Raise DemoError if memifd or the monitor has exited."""
        for child in (self.memifd, self.monitor):
            if child is not None:
                child.check()

    # ------------------------------------------------------------------ monitor
    def start_monitor(self, connect_timeout: float) -> None:
        """``memif monitor --json`` on B's socket; its live count goes to its stderr file."""
        args = ["monitor", "--socket", self.sock["B"], "--ring-size", str(MONITOR_RING)]
        args += ["--json", "--interval", "0.25", "--connect-timeout", f"{connect_timeout:g}"]
        self.monitor = self._spawn("memif monitor", memif_argv(*args), "monitor")

    def monitor_count(self) -> int:
        """Packets the monitor reports so far (its latest ``monitor: N packets`` line)."""
        if self.monitor is None:
            return 0
        offset, count = self._mon_seen
        try:
            with open(self.monitor.err_path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except OSError:
            return count
        end = data.rfind(b"\n") + 1  # whole lines only
        found = _MONITOR_LINE.findall(data[:end])
        if found:
            count = int(found[-1])
        self._mon_seen = (offset + end, count)
        return count

    def stop_monitor(self) -> dict[str, Any]:
        """Ctrl-C the monitor; its JSON summary ({} if it printed none)."""
        if self.monitor is None:
            return {}
        self.monitor.stop(signal.SIGINT)
        return self.monitor.report()

    # ------------------------------------------------------------------ the end
    def stop_memifd(self) -> int | None:
        """SIGTERM memifd (it disconnects its peers and removes its sockets); its status."""
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None
        return None if self.memifd is None else self.memifd.stop(signal.SIGTERM)

    def close(self, keep: bool = False) -> None:
        """Stop whatever still runs (memifd too unless ``keep``); remove the directory."""
        for child in reversed(self.children):
            if child is self.memifd and keep:
                continue
            sig = signal.SIGTERM if child is self.memifd else signal.SIGINT
            child.stop(sig)
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _spawn(self, name: str, argv: list[str], base: str) -> Child:
        child = Child(name, argv, os.path.join(self.dir, base))
        self.children.append(child)
        return child

    def spawn(self, name: str, argv: list[str], base: str) -> Child:
        """A peer process (output in ``<dir>/<base>.out|err``), stopped by :meth:`close`."""
        return self._spawn(name, argv, base)
