"""Drive DPDK ``dpdk-testpmd`` with its ``net_memif`` driver as an independent memif peer.

Used by the interop tests and the benchmark. testpmd runs in interactive mode (``-i``) behind a
pipe: :class:`Testpmd` writes one command line to its stdin and reads its output up to the next
``testpmd> `` prompt. A background thread drains testpmd's stdout (stderr is merged into it) into
a buffer at all times, so testpmd never blocks on a full pipe nor dies of SIGPIPE while this
object lives.

Behaviour of testpmd to keep in mind (DPDK 22.11, see also ``peers.md``):

* In interactive mode the memif ports are probed and started before the first prompt, but no
  packet moves until :meth:`Testpmd.start`. A *server* port's socket exists once the
  :class:`Testpmd` constructor has returned.
* A *client* port connects once, when the port starts (at testpmd startup, before the prompt), and
  never retries. So start a client-role testpmd only after the server socket exists. If it could
  not connect, the constructor raises (``check_startup=True``); :meth:`Testpmd.restart_port`
  tries again on a live instance.
* testpmd often crashes (SIGSEGV inside the memif driver) when its peer disconnects while it is
  forwarding. :meth:`Testpmd.close` therefore sends ``stop`` before ``quit``, and a test should
  ``stop`` both sides before either side disconnects.
* Port counters read 0 while disconnected: read :meth:`Testpmd.port_stats` while the peer is
  still connected.
* The ``Rx-pps``/``Tx-pps`` figures are computed by testpmd over the time since the previous
  ``show port stats`` of that port; the first show reports 0.
"""

from __future__ import annotations

import codecs
import contextlib
import itertools
import os
import re
import shutil
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "TESTPMD",
    "PROMPT",
    "MemifPort",
    "PortStats",
    "Testpmd",
    "TestpmdError",
    "TestpmdTimeout",
    "find_testpmd",
    "parse_link_up",
    "parse_port_stats",
]

TESTPMD = "/usr/bin/dpdk-testpmd"
"""Where Debian's ``dpdk-dev`` package installs testpmd."""

PROMPT = "testpmd> "
"""The interactive prompt that ends the output of every command."""

#: Debian packages providing testpmd with the memif driver (scripts/setup.sh installs them).
INSTALL_HINT = "apt-get install --no-install-recommends dpdk-dev librte-net-memif23"
"""Debian packages that provide testpmd and its memif driver."""

_SUN_PATH_MAX = 108
_prefix_counter = itertools.count()


class TestpmdError(RuntimeError):
    """testpmd failed to start, exited, or answered a command with an error."""

    __test__ = False  # not a pytest test class despite its name


class TestpmdTimeout(TestpmdError, TimeoutError):
    """testpmd did not answer (or did not reach the awaited state) in time."""

    __test__ = False


def find_testpmd() -> str | None:
    """Return the path of the testpmd binary, or None when it is not installed."""
    if os.access(TESTPMD, os.X_OK):
        return TESTPMD
    return shutil.which("dpdk-testpmd")


_ROLE_ALIASES = {"server": "server", "client": "client", "master": "server", "slave": "client"}


@dataclass
class MemifPort:
    """One ``net_memif`` virtual device of a testpmd instance.

    Attributes:
        role: ``"server"`` or ``"client"`` (VPP's ``"master"``/``"slave"`` are accepted too).
        id: memif interface id.
        socket: control socket path. ``"@name"`` means the abstract socket ``name`` (this
            project's spelling); DPDK then gets ``socket=name,socket-abstract=yes``.
        abstract: treat ``socket`` as an abstract name even without a leading ``@``.
        bsize: buffer size in bytes (DPDK default 2048).
        rsize: log2 of the ring size (DPDK default 10).
        mac: MAC address of the port, ``"aa:bb:cc:dd:ee:ff"``.
        secret: shared secret.
        zero_copy: zero-copy client (DPDK allows it only for the client role).
    """

    role: str
    id: int = 0
    socket: str = "/run/memif.sock"
    abstract: bool = False
    bsize: int | None = None
    rsize: int | None = None
    mac: str | None = None
    secret: str | None = None
    zero_copy: bool = False

    def __post_init__(self) -> None:
        role = _ROLE_ALIASES.get(self.role)
        if role is None:
            raise ValueError(f"memif role must be 'server' or 'client', not {self.role!r}")
        self.role = role
        if self.zero_copy and role != "client":
            raise ValueError("DPDK's memif supports zero-copy only for the client role")
        name = self.socket_name
        if not name:
            raise ValueError("empty memif socket name")
        if len(name) + (1 if self.is_abstract else 0) >= _SUN_PATH_MAX:
            raise ValueError(f"memif socket name too long for sun_path: {self.socket!r}")
        for key in ("socket", "mac", "secret"):
            value = getattr(self, key)
            if value is not None and ("," in value or "=" in value):
                raise ValueError(f"{key} may not contain ',' or '=' in a DPDK devarg: {value!r}")

    @property
    def is_abstract(self) -> bool:
        """True when the control socket lives in the abstract namespace."""
        return self.abstract or self.socket.startswith("@")

    @property
    def socket_name(self) -> str:
        """The socket name as DPDK wants it: the path, or the abstract name without ``@``."""
        if self.socket.startswith("@"):
            return self.socket[1:]
        return self.socket

    def vdev(self, index: int) -> str:
        """Return the ``--vdev`` value for this port as device ``net_memif<index>``."""
        parts = [
            f"net_memif{index}",
            f"role={self.role}",
            f"id={self.id}",
            f"socket={self.socket_name}",
            f"socket-abstract={'yes' if self.is_abstract else 'no'}",
        ]
        if self.bsize is not None:
            parts.append(f"bsize={self.bsize}")
        if self.rsize is not None:
            parts.append(f"rsize={self.rsize}")
        if self.mac is not None:
            parts.append(f"mac={self.mac}")
        if self.secret is not None:
            parts.append(f"secret={self.secret}")
        if self.zero_copy:
            parts.append("zero-copy=yes")
        return ",".join(parts)


@dataclass(frozen=True)
class PortStats:
    """Counters printed by ``show port stats N``.

    The ``*_pps``/``*_bps`` fields come from testpmd's "Throughput (since last show)" block: rates
    over the interval since the previous show of that port (0 on the first show), or None when
    the block is absent. ``*_bps`` counts frame bytes * 8, without any wire overhead.
    """

    rx_packets: int = 0
    rx_missed: int = 0
    rx_errors: int = 0
    rx_nombuf: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_errors: int = 0
    tx_bytes: int = 0
    rx_pps: int | None = None
    tx_pps: int | None = None
    rx_bps: int | None = None
    tx_bps: int | None = None


_STAT_KEYS = {
    "RX-packets": "rx_packets",
    "RX-missed": "rx_missed",
    "RX-errors": "rx_errors",
    "RX-nombuf": "rx_nombuf",
    "RX-bytes": "rx_bytes",
    "TX-packets": "tx_packets",
    "TX-errors": "tx_errors",
    "TX-bytes": "tx_bytes",
    "Rx-pps": "rx_pps",
    "Tx-pps": "tx_pps",
    "Rx-bps": "rx_bps",
    "Tx-bps": "tx_bps",
}
_STAT_RE = re.compile(r"\b(" + "|".join(map(re.escape, _STAT_KEYS)) + r"):\s*(\d+)")
_LINK_RE = re.compile(r"^Link status:\s*(\w+)", re.MULTILINE)


def parse_port_stats(text: str) -> PortStats:
    """Parse the output of ``show port stats N`` (one port) into :class:`PortStats`.

    Raises:
        TestpmdError: the text holds no NIC statistics block (for example ``Invalid port``).
    """
    if "NIC statistics for port" not in text:
        raise TestpmdError(f"no port statistics in testpmd output:\n{text.strip()}")
    values: dict[str, int] = {}
    for key, num in _STAT_RE.findall(text):
        values.setdefault(_STAT_KEYS[key], int(num))
    return PortStats(**values)


def parse_link_up(text: str) -> bool:
    """Return True when ``show port info N`` output says ``Link status: up``.

    Raises:
        TestpmdError: the text holds no link status (for example ``Invalid port``).
    """
    m = _LINK_RE.search(text)
    if m is None:
        raise TestpmdError(f"no link status in testpmd output:\n{text.strip()}")
    return m.group(1).lower() == "up"


def _runtime_dir(prefix: str) -> str:
    """Directory where DPDK's EAL keeps the shared config of ``--file-prefix=prefix``."""
    base = "/var/run" if os.geteuid() == 0 else (os.environ.get("XDG_RUNTIME_DIR") or "/tmp")
    return os.path.join(base, "dpdk", prefix)


class Testpmd:
    """A running interactive ``dpdk-testpmd`` with one or more memif ports.

    The process starts in the constructor, which returns once testpmd shows its first prompt (its
    ports are probed and started, a server socket exists, a client has tried its one connection).
    Use it as a context manager, or call :meth:`close`.

    Command line::

        stdbuf -oL -eL dpdk-testpmd -l <lcores> --main-lcore <main_lcore> --no-huge -m <mem_mb>
          --no-pci --file-prefix=<unique> [--single-file-segments] [eal_args] --vdev=... --
          -i --total-num-mbufs=N --forward-mode=<mode> [--txpkts=S] [--burst=B]
          [--rxq=Q --txq=Q] [extra_args]

    Args:
        ports: memif ports; port ``i`` of testpmd is ``ports[i]`` (device ``net_memif<i>``).
        forward_mode: ``io``, ``rxonly``, ``txonly``, ``macswap``, ``5tswap``, ...
        txpkts: frame length for ``txonly`` (``--txpkts``).
        burst: packets per burst (``--burst``, testpmd default 32).
        queues: queue pairs per port (``--rxq``/``--txq``, given when not 1).
        main_lcore: the EAL main lcore; the other lcores of ``lcores`` forward packets. On a
            2-core machine, ``main_lcore=0`` pins the busy-polling forwarding lcore to CPU 1 and
            ``main_lcore=1`` pins it to CPU 0.
        lcores: lcores (CPUs) given to ``-l``; must include ``main_lcore``.
        mem_mb: EAL memory (``-m``) in MB.
        total_num_mbufs: size of the mbuf pool (the default pool does not fit in ``-m 128``).
        extra_args: more testpmd application arguments (after ``--``).
        eal_args: more EAL arguments (before ``--``).
        binary: testpmd path; default :func:`find_testpmd`.
        startup_timeout: seconds to wait for the first prompt.
        check_startup: raise when a port failed to probe or to start (a client that found no
            server), instead of returning a testpmd with missing or stopped ports.
    """

    __test__ = False  # not a pytest test class despite its name

    def __init__(
        self,
        ports: Sequence[MemifPort],
        forward_mode: str = "io",
        txpkts: int | None = None,
        burst: int | None = None,
        queues: int = 1,
        main_lcore: int = 0,
        lcores: Sequence[int] = (0, 1),
        mem_mb: int = 128,
        total_num_mbufs: int = 16384,
        extra_args: Sequence[str] = (),
        eal_args: Sequence[str] = (),
        binary: str | None = None,
        startup_timeout: float = 30.0,
        check_startup: bool = True,
    ) -> None:
        self.ports: list[MemifPort] = list(ports)
        if not self.ports:
            raise ValueError("testpmd needs at least one memif port")
        lcore_list = list(dict.fromkeys(lcores))
        if main_lcore not in lcore_list:
            raise ValueError(f"main_lcore {main_lcore} is not among lcores {lcore_list}")
        if len(lcore_list) < 2:
            raise ValueError("testpmd needs two lcores: one main and one forwarding")
        if queues < 1:
            raise ValueError("queues must be >= 1")
        self.main_lcore = main_lcore
        self.forwarding_lcores: list[int] = [c for c in lcore_list if c != main_lcore]
        """The lcores (CPUs) that busy-poll while forwarding is started."""
        self.file_prefix = f"memif-py-{os.getpid()}-{next(_prefix_counter)}-{uuid.uuid4().hex[:8]}"
        binary = binary or find_testpmd()
        if binary is None:
            raise TestpmdError(f"{TESTPMD} not found (install it: {INSTALL_HINT})")

        argv: list[str] = []
        stdbuf = shutil.which("stdbuf")
        if stdbuf:
            argv += [stdbuf, "-oL", "-eL"]
        argv += [
            binary,
            "-l",
            ",".join(map(str, lcore_list)),
            "--main-lcore",
            str(main_lcore),
            "--no-huge",
            "-m",
            str(mem_mb),
            "--no-pci",
            f"--file-prefix={self.file_prefix}",
        ]
        if any(p.zero_copy for p in self.ports):
            argv.append("--single-file-segments")
        argv += list(eal_args)
        argv += [f"--vdev={p.vdev(i)}" for i, p in enumerate(self.ports)]
        argv += ["--", "-i", f"--total-num-mbufs={total_num_mbufs}"]
        argv.append(f"--forward-mode={forward_mode}")
        if txpkts is not None:
            argv.append(f"--txpkts={txpkts}")
        if burst is not None:
            argv.append(f"--burst={burst}")
        if queues != 1:
            argv += [f"--rxq={queues}", f"--txq={queues}"]
        argv += list(extra_args)
        self.argv: list[str] = argv
        """The full command line that was run."""

        self._cond = threading.Condition()
        self._out = ""  # everything printed so far, '\r' removed
        self._consumed = 0  # offset just past the last prompt already matched
        self._owed = 0  # prompts of timed-out commands still to come
        self._eof = False
        self._forwarding = False
        self._closed = False
        self._cmd_lock = threading.Lock()

        for p in self.ports:
            if p.role == "server" and not p.is_abstract:
                _remove_stale_socket(p.socket_name)

        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C reaches us, and we close testpmd in order
        )
        self._reader = threading.Thread(
            target=self._read_loop, name=f"testpmd-{self._proc.pid}", daemon=True
        )
        self._reader.start()
        try:
            self._wait_prompt(startup_timeout, "startup")
            if check_startup:
                self._check_startup()
        except BaseException:
            self.close()
            raise

    # -- process plumbing -------------------------------------------------------------------

    def _read_loop(self) -> None:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            text = decoder.decode(chunk, final=not chunk).replace("\r", "")
            with self._cond:
                if text:
                    self._out += text
                if not chunk:
                    self._eof = True
                self._cond.notify_all()
            if not chunk:
                return

    def _tail(self, chars: int = 3000) -> str:
        with self._cond:
            return self._out[-chars:]

    def _fail(self, what: str, timeout: bool = False) -> TestpmdError:
        rc = self._proc.poll()
        if rc is None and self._eof:  # output closed: it is exiting, let it finish
            with contextlib.suppress(subprocess.TimeoutExpired):
                rc = self._proc.wait(1.0)
        state = "running" if rc is None else f"exited with status {rc}"
        cls = TestpmdTimeout if timeout else TestpmdError
        return cls(f"testpmd (pid {self.pid}, {state}): {what}; output tail:\n{self._tail()}")

    def _wait_prompt(self, timeout: float, what: str) -> str:
        """Wait for the next prompt after ``_consumed``; return the text before it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                idx = self._out.find(PROMPT, self._consumed)
                if idx >= 0:
                    text = self._out[self._consumed : idx]
                    self._consumed = idx + len(PROMPT)
                    return text
                if self._eof:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._fail(f"no prompt after {what} within {timeout} s", timeout=True)
                self._cond.wait(left)
        raise self._fail(f"exited during {what}")

    def _check_startup(self) -> None:
        out = self.output
        bad = [
            line
            for line in out.splitlines()
            if "No probed ethernet devices" in line
            or "failed to initialize" in line
            or line.startswith("Fail to start port")
            or "Failed to connect socket" in line
            or (line.startswith("Invalid ") and line.endswith("packet forwarding mode"))
        ]
        if bad:
            hint = ""
            if any(p.role == "client" for p in self.ports):
                hint = " (a memif client connects once at startup: is the server running?)"
            raise self._fail("memif port failed at startup: " + "; ".join(bad) + hint)

    @property
    def pid(self) -> int:
        """Process id of testpmd (``stdbuf`` execs it, so this is testpmd itself)."""
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """Exit status of testpmd, or None while it runs (negative: killed by that signal)."""
        return self._proc.poll()

    @property
    def output(self) -> str:
        """Everything testpmd printed so far (stdout and stderr, without carriage returns)."""
        with self._cond:
            return self._out

    @property
    def forwarding(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._forwarding

    # -- commands ---------------------------------------------------------------------------

    def cmd(self, line: str, timeout: float = 10.0) -> str:
        """Run one interactive command and return its output up to the next prompt.

        The echo of the command is removed from the returned text.

        Raises:
            TestpmdError: testpmd has exited (or exits meanwhile), or this object is closed.
            TestpmdTimeout: no prompt within ``timeout`` seconds.
        """
        if self._closed:
            raise TestpmdError(f"testpmd (pid {self.pid}) is closed")
        return self._run(line, timeout)

    def _run(self, line: str, timeout: float) -> str:
        line = line.strip()
        if "\n" in line or "\r" in line:
            raise ValueError("one command line at a time")
        with self._cmd_lock:
            while self._owed:  # resynchronise after an earlier timeout
                self._wait_prompt(timeout, "an earlier timed-out command")
                self._owed -= 1
            if self._proc.poll() is not None or self._eof:
                raise self._fail(f"cannot run {line!r}")
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write((line + "\n").encode())
                self._proc.stdin.flush()
            except (BrokenPipeError, ValueError) as exc:
                raise self._fail(f"cannot write {line!r}: {exc}") from exc
            try:
                text = self._wait_prompt(timeout, repr(line))
            except TestpmdTimeout:
                self._owed += 1
                raise
        echo = text.find(line + "\n")
        if echo >= 0:
            text = text[:echo] + text[echo + len(line) + 1 :]
        return text

    def link_up(self, port: int = 0) -> bool:
        """Return True when testpmd reports the link of ``port`` up (the memif is connected)."""
        return parse_link_up(self.cmd(f"show port info {port}"))

    def wait_link_up(self, port: int = 0, timeout: float = 10.0) -> None:
        """Poll ``show port info`` until ``Link status: up``.

        Raises:
            TestpmdTimeout: the link is still down after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while not self.link_up(port):
            if time.monotonic() >= deadline:
                raise self._fail(f"link of port {port} still down after {timeout} s", timeout=True)
            time.sleep(0.05)

    def start(self) -> str:
        """Start packet forwarding (``start``); return testpmd's output."""
        out = self.cmd("start")
        self._forwarding = True
        return out

    def start_tx_first(self, n: int = 1) -> str:
        """Send ``n`` bursts on every port first, then forward (``start tx_first n``)."""
        out = self.cmd(f"start tx_first {n}")
        self._forwarding = True
        return out

    def stop(self) -> str:
        """Stop packet forwarding (``stop``); return the forward statistics it prints."""
        out = self.cmd("stop")
        self._forwarding = False
        return out

    def port_stats(self, port: int = 0) -> PortStats:
        """Read ``show port stats <port>``. Counters read 0 while the memif is disconnected."""
        return parse_port_stats(self.cmd(f"show port stats {port}"))

    def clear_stats(self, port: int = 0) -> None:
        """Reset the counters of ``port`` (``clear port stats <port>``)."""
        out = self.cmd(f"clear port stats {port}")
        if "cleared" not in out:
            raise TestpmdError(f"clear port stats {port} failed:\n{out.strip()}")

    def restart_port(self, port: int = 0, timeout: float = 10.0) -> str:
        """``port stop`` then ``port start``: makes a client port try to connect again.

        Stops forwarding first if it is running (``port stop`` refuses otherwise).
        """
        if self._forwarding:
            self.stop()
        return self.cmd(f"port stop {port}", timeout) + self.cmd(f"port start {port}", timeout)

    # -- shutdown ---------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Stop forwarding, quit testpmd, and clean up. Idempotent.

        Sends ``stop`` if forwarding (testpmd may crash if its peer leaves while it forwards),
        then ``quit``; kills testpmd if it has not exited after ``timeout`` seconds. Removes the
        socket files of its server ports and its EAL runtime directory.
        """
        with self._cmd_lock:
            if self._closed:
                return
            self._closed = True
        try:
            if self._proc.poll() is None and not self._eof:
                if self._forwarding:
                    with contextlib.suppress(TestpmdError):
                        self._run("stop", timeout)
                with contextlib.suppress(BrokenPipeError, ValueError, OSError):
                    assert self._proc.stdin is not None
                    self._proc.stdin.write(b"quit\n")
                    self._proc.stdin.flush()
            with contextlib.suppress(OSError):
                if self._proc.stdin is not None:
                    self._proc.stdin.close()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.terminate()
                try:
                    self._proc.wait(2.0)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
        finally:
            self._forwarding = False
            self._reader.join(2.0)
            if self._proc.stdout is not None:
                with contextlib.suppress(OSError):
                    self._proc.stdout.close()
            for p in self.ports:
                if p.role == "server" and not p.is_abstract:
                    _remove_stale_socket(p.socket_name)
            if self._proc.poll() is not None:
                shutil.rmtree(_runtime_dir(self.file_prefix), ignore_errors=True)

    def __enter__(self) -> Testpmd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        rc = self._proc.poll()
        state = "running" if rc is None else f"exited {rc}"
        return f"<Testpmd pid={self.pid} {state} ports={len(self.ports)}>"


def _remove_stale_socket(path: str) -> None:
    """Remove ``path`` if it is a socket file (a testpmd server cannot bind over it)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(st.st_mode):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
