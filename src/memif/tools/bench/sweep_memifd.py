"""The rate sweep against a running memifd: its ports set through its CLI socket, the source
and the sink each a process of its own (``scripts/containers.sh sweep``: each in its tenant's
container).

The path is the one of :mod:`.sweep`, with memifd in the middle::

    source -> socket 1, memif1/0 -> bridge-domain 1 -> memif2/0, socket 2 -> sink

For each configuration and mode (:class:`MemifdBench`), memifd's ports ``memif1/0`` and
``memif2/0`` and their sockets (ids 1 and 2) are deleted and made again as the configuration
says, with memifd's own commands: ``master-copy`` makes memifd listen on both socket files
(each admitting only its tenant's uid) and the source and sink connect as clients;
``slave-zc`` and ``slave-copy`` make the source and sink listen on those files and memifd
connect to them (``slave`` with or without ``no-zero-copy``). Then ``set interface l2 bridge``,
``set interface rx-mode`` (the mode), the target's own lines per port (the topology's SPAN
sessions, say) and ``set interface state up``.

Per window: the drops from ``show errors``, the interface counters from ``show interface``
(:attr:`SweepPoint.counters`), memifd's CPU from /proc/PID/stat and its run-queue wait from
/proc/PID/schedstat (memifd's process as this host sees it: ``pid``). After the last point the
source pauses, and the bench waits until memifd's counters and the traffic's agree exactly:
memif1/0's rx = what the source sent, memif2/0's tx = what the sink received (``counters``
line on stderr; a series whose counters never agree ends with an error point).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...ctl.main import Client, CommandFailed, CtlError
from .common import thread_schedstat
from .sweep import SweepOptions, proc_cpu_seconds
from .sweep_traffic import Traffic, TrafficPair

SOURCE_PORT, SINK_PORT = "memif1/0", "memif2/0"
_WAIT = 30.0  # seconds for a link, a listener, counters to settle: a loaded machine is slow
_STEP = 0.05


@dataclass
class Tenant:
    """Where one traffic process runs and what it reaches."""

    socket: str  # memif socket file, the same path for memifd and for the process
    control: str  # its control block file, here
    launch: Sequence[str] = ()  # argv that runs a Python there (default: this one, here)
    remote_control: str | None = None  # the control block as the process sees it
    uid: int | None = None  # the process's uid: owns its control block, admitted by memifd
    cpu: int | None = None  # its CPU (default: SweepOptions.loop_cpu)


@dataclass
class MemifdTarget:
    """A running memifd: its CLI socket, its pid here, the two tenants of the sweep."""

    cli: str
    pid: int
    source: Tenant  # socket id 1, memif1/0
    sink: Tenant  # socket id 2, memif2/0
    #: commands run for each port once it is bridged, ``{port}`` its name
    port_lines: Sequence[str] = field(default_factory=tuple)


class MemifdError(RuntimeError):
    """memifd refused a command, or did not get where it should in time."""


class MemifdBench:
    """One configuration and mode of the sweep through a running memifd (:class:`Bench`)."""

    def __init__(
        self, config: str, mode: str, frame: int, opts: SweepOptions, target: MemifdTarget
    ) -> None:
        self.config, self.mode, self.frame, self.opts = config, mode, frame, opts
        self.target = target
        self.traffic: Traffic | TrafficPair | None = None
        self.cli: Client | None = None
        self._tasks: dict[int, set[int]] = {}  # memifd's threads and their CPUs, to restore

    # -- memifd's CLI
    def request(self, line: str, data: bool = False) -> Any:
        """One command; its JSON data (``data``) or output. MemifdError when it fails."""
        if self.cli is None:
            try:
                self.cli = Client(self.target.cli, timeout=_WAIT)
            except CtlError as exc:
                raise MemifdError(str(exc)) from None
        try:
            return self.cli.run(line, want_json=data)
        except CommandFailed as exc:
            raise MemifdError(str(exc)) from None
        except CtlError as exc:
            raise MemifdError(f"memifd's CLI: {exc}") from None

    def interfaces(self) -> dict[str, dict[str, Any]]:
        """``show interface``, by name."""
        return {d["name"]: d for d in self.request("show interface", data=True)}

    def _wait(self, done: Callable[[], bool], what: str, timeout: float = _WAIT) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if self.traffic is not None and self.traffic.failed():
                raise RuntimeError(f"a traffic process failed before {what} (see stderr)")
            if time.monotonic() > deadline:
                raise MemifdError(f"no {what} within {timeout:g} s")
            time.sleep(_STEP)

    # -- the ports
    def _delete_ports(self) -> None:
        have = self.interfaces()
        for port in (SOURCE_PORT, SINK_PORT):
            if port in have:
                self.request(f"delete interface memif {port}")
        sockets = {s["id"] for s in self.request("show memif", data=True)["sockets"]}
        for sid in (1, 2):
            if sid in sockets:
                self.request(f"delete memif socket id {sid}")

    def _create_ports(self, role: str, zero_copy: bool) -> None:
        for sid, (port, tenant) in enumerate(
            ((SOURCE_PORT, self.target.source), (SINK_PORT, self.target.sink)), 1
        ):
            allow = "" if tenant.uid is None else f" allow-uid {tenant.uid}"
            self.request(f"create memif socket id {sid} filename {tenant.socket}{allow}")
            copy = "" if zero_copy or role == "master" else " no-zero-copy"
            self.request(f"create interface memif id 0 socket-id {sid} {role}{copy}")
            self.request(f"set interface l2 bridge {port} 1")
            self.request(f"set interface rx-mode {port} {self.mode}")
            for line in self.target.port_lines:
                self.request(line.format(port=port))
            self.request(f"set interface state {port} up")

    def _traffic(self, part: str, role: str, tenant: Tenant) -> Traffic:
        if tenant.uid is not None:  # made here (root), used there as the tenant
            fd = os.open(tenant.control, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
            os.chown(tenant.control, tenant.uid, tenant.uid)
        cpu = self.opts.loop_cpu if tenant.cpu is None else tenant.cpu
        return Traffic(part, role, tenant.socket, self.frame, cpu, tenant.control,
                       tenant.launch, tenant.remote_control)  # fmt: skip

    def _pin(self) -> None:
        """memifd's threads onto the switch CPU (as the in-process sweep runs there)."""
        for tid in map(int, os.listdir(f"/proc/{self.target.pid}/task")):
            with contextlib.suppress(OSError):
                self._tasks[tid] = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, {self.opts.switch_cpu})

    def start(self) -> None:
        """memifd's two ports as the configuration says, the source and the sink connected."""
        role, copy = self.config.split("-")
        peer = "server" if role == "slave" else "client"
        self._delete_ports()
        t = self.target
        pair = self.traffic = TrafficPair(
            self._traffic("source", peer, t.source), self._traffic("sink", peer, t.sink)
        )
        if peer == "server":  # the tenants listen before memifd connects
            self._wait(pair.listening, "listening source and sink")
        self._create_ports(role, copy == "zc")
        self._wait(
            lambda: all(self.interfaces()[p]["link_up"] for p in (SOURCE_PORT, SINK_PORT)),
            "link up on memifd's memif1/0 and memif2/0",
        )
        self._wait(pair.ready, "traffic ready")
        hw = self.request(f"show hardware-interfaces {SOURCE_PORT} {SINK_PORT}", data=True)
        zc = [d["zero_copy"] for d in hw]
        if zc != [copy == "zc"] * 2:
            raise MemifdError(f"memifd's ports zero-copy {zc}, wanted {copy == 'zc'}")
        self._pin()

    # -- the Bench methods the windows use
    def run_for(self, seconds: float) -> None:
        """Wait ``seconds`` (memifd forwards by itself), watching the traffic."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.traffic is not None and self.traffic.failed():
                raise RuntimeError("a traffic process failed (see stderr)")
            time.sleep(min(left, _STEP))

    def errors(self) -> dict[str, int]:
        """``show errors``: ``node/error`` -> count."""
        return {f"{e['node']}/{e['error']}": e["count"] for e in self.request("show errors", True)}

    def cpu(self) -> tuple[float, tuple[int, int] | None]:
        """memifd's CPU seconds (all its threads) and its main thread's schedstat."""
        pid = self.target.pid
        return proc_cpu_seconds(pid), thread_schedstat(f"/proc/{pid}/schedstat")

    def counters(self) -> dict[str, int]:
        """The two ports' ``show interface`` counters: memif1/0's rx and drops, memif2/0's
        tx and tx-error."""
        ifs = self.interfaces()
        a, b = ifs[SOURCE_PORT], ifs[SINK_PORT]
        return {
            f"{SOURCE_PORT} rx": a["rx_packets"],
            f"{SOURCE_PORT} drops": a["drops"],
            f"{SINK_PORT} tx": b["tx_packets"],
            f"{SINK_PORT} tx-error": b["tx_errors"],
        }

    def settle(self) -> None:
        """Pause the source and wait until memifd's counters and the traffic's agree:
        the ``counters`` line (MemifdError when they never do)."""
        assert self.traffic is not None
        self.traffic.set_rate(-1)
        last: list[int] = []

        def agreed() -> bool:
            assert self.traffic is not None
            sent, _, received, _, _ = self.traffic.snapshot()
            c = self.counters()
            last[:] = [sent, c[f"{SOURCE_PORT} rx"], c[f"{SINK_PORT} tx"], received]
            return last[0] == last[1] and last[2] == last[3]

        try:
            self._wait(agreed, "agreement of memifd's counters with the traffic's")
        finally:
            if last:
                sent, rx, tx, received = last
                print(f"counters: {self.config} {self.mode}: source sent {sent}, "
                      f"{SOURCE_PORT} rx {rx}; {SINK_PORT} tx {tx}, sink received {received}",
                      file=sys.stderr, flush=True)  # fmt: skip

    def close(self) -> None:
        """Settle and compare the counters (when the series ran), stop the traffic, give
        memifd's threads their CPUs back."""
        try:
            if self.traffic is not None and self.traffic.ready() and not self.traffic.failed():
                self.settle()
        finally:
            for tid, cpus in self._tasks.items():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(tid, cpus)
            try:
                if self.traffic is not None:
                    self.traffic.stop()
            finally:
                if self.cli is not None:
                    self.cli.close()
