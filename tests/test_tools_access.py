"""Who a ``memif`` tool's socket admits: ``--allow-uid``, ``--allow-gid``, ``--unsealed-uid``.

Real processes on both sides, one of them dropped to uid 65534 (nobody) with
:func:`hostile_peer.spawn_as`/:func:`hostile_peer.run_as`:

* a ``memif responder --role server`` run by root answers a ``memif ping`` run as
  nobody only when ``--allow-uid`` (by number or name) or ``--allow-gid`` lists it;
  otherwise ping fails with the responder's "access denied" reason and the responder
  logs the refusal;
* a ``memif ping`` run by root connects to a responder listening as nobody only with
  ``--allow-uid`` (a client checks the listener too);
* ``--unsealed-uid`` lets a peer's unsealable memory (a memfd without
  ``MFD_ALLOW_SEALING``) be used, and nothing else does;
* every tool that opens a memif socket takes the three options; bad values are one
  line and exit status 2.

The tools run as nobody are run in a forked child (:func:`memif.cli.main`): the
interpreter lives under /root, which nobody may not execute.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
from helpers import memif_popen
from hostile_peer import NOBODY, RawSlave, run_as, spawn_as

from memif.cli import build_parser
from memif.cli import main as memif_main
from memif.testing import unique_name

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="peers as uid 65534 need root")

IP = "10.0.0.1"
TOOLS = ("gen", "monitor", "ping", "pcap-replay", "responder")
DENIED = f"access denied: uid {NOBODY} gid {NOBODY} not allowed on this socket"

build_parser()  # import every tool now: a child dropped to nobody cannot read the stdlib later


def listening(name: str, timeout: float = 15.0) -> bool:
    """Wait until something listens on the abstract socket ``@name``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open("/proc/net/unix") as f:
            if any(line.split()[7:] == [name] for line in f):  # the Path column
                return True
        time.sleep(0.02)
    return False


def tool(*argv: str) -> dict[str, object]:
    """``memif ARGV`` in this process: its exit status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = memif_main(list(argv))
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
    return {"rc": rc, "out": out.getvalue(), "err": err.getvalue()}


def ping(name: str, *opts: str, timeout: str = "10") -> list[str]:
    """The argv of two quick pings of the responder on ``name``."""
    wait = ["--connect-timeout", timeout]
    return ["ping", "--socket", name, IP, "-c", "2", "-i", "0.05", *wait, "--json", *opts]


@contextlib.contextmanager
def root_responder(name: str, *opts: str) -> Iterator[subprocess.Popen[str]]:
    """``memif responder --role server`` run by root (this test's uid) on ``name``."""
    proc = memif_popen("responder", "--role", "server", "--socket", name, "--ip", IP, *opts)
    try:
        assert listening(name), proc.stderr.read() if proc.poll() is not None else "no listener"
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def stopped_stderr(proc: subprocess.Popen[str]) -> str:
    """Stop a responder; what it wrote on stderr."""
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    return err


# --------------------------------------------------------------------------- server run by root
@pytest.mark.slow
@pytest.mark.parametrize(
    "allow",
    [("--allow-uid", str(NOBODY)), ("--allow-uid", "0,nobody"), ("--allow-gid", str(NOBODY))],
    ids=["uid", "uid-name", "gid"],
)
def test_root_responder_answers_nobody_it_allows(allow: tuple[str, str]) -> None:
    name = unique_name("tools-access")
    with root_responder(name, *allow) as proc:
        res = run_as(NOBODY, lambda: tool(*ping(name)))
        assert res["rc"] == 0, res["err"]
        summary = json.loads(str(res["out"]))
        assert summary["transmitted"] == summary["received"] == 2
        err = stopped_stderr(proc)
    assert "access denied" not in err


@pytest.mark.slow
def test_root_responder_refuses_nobody_by_default() -> None:
    name = unique_name("tools-access")
    with root_responder(name, "--allow-uid", "1,2", "--allow-gid", "3") as proc:
        res = run_as(NOBODY, lambda: tool(*ping(name, timeout="1")))
        assert res["rc"] != 0
        assert DENIED in str(res["err"]), res["err"]
        assert str(res["err"]).count("\n") == 1, res["err"]
        err = stopped_stderr(proc)
    assert f"memif socket {name}: {DENIED} (pid " in err, err


# --------------------------------------------------------------------------- listener run by nobody
def nobody_responder(name: str) -> Callable[[Callable[[], bool]], dict[str, object]]:
    """A responder listening on ``name``, for :func:`spawn_as`; stopped with SIGINT."""
    argv = ("responder", "--role", "server", "--socket", name, "--ip", IP, "--json")
    return lambda stopped: tool(*argv)


@pytest.mark.slow
def test_root_ping_trusts_listener_of_nobody_only_when_allowed() -> None:
    name = unique_name("tools-access")
    child = spawn_as(NOBODY, nobody_responder(name))
    try:
        assert listening(name)
        refused = tool(*ping(name, timeout="1"))
        assert refused["rc"] != 0
        assert f"listener {DENIED}" in str(refused["err"]), refused["err"]
        res = tool(*ping(name, "--allow-uid", "nobody"))
        assert res["rc"] == 0, res["err"]
        assert json.loads(str(res["out"]))["received"] == 2
    finally:
        os.kill(child.pid, signal.SIGINT)
        out = child.finish()
    assert out["rc"] == 0, out["err"]
    summary = json.loads(str(out["out"]).splitlines()[-1])
    assert summary["icmp_replies"] == 2 and summary["connects"] == 1


# --------------------------------------------------------------------------- unsealed memory
@pytest.mark.parametrize("trusted", [False, True], ids=["sealed-only", "unsealed-uid"])
def test_unsealed_uid_decides_whose_unsealable_memory_is_used(trusted: bool) -> None:
    name = unique_name("tools-access")
    opts = ["--allow-uid", str(NOBODY)] + (["--unsealed-uid", "nobody"] if trusted else [])
    with root_responder(name, *opts) as proc:
        outcome = run_as(NOBODY, lambda: RawSlave(name, kind="no-sealing").handshake())
        err = stopped_stderr(proc)
    if trusted:
        assert outcome == "connected"
    else:
        assert outcome == (
            f"region 1: memory not sealed against shrinking (uid {NOBODY} not trusted with "
            "unsealed memory)"
        )
    assert ("not sealed" in err) is not trusted, err


# --------------------------------------------------------------------------- options
@pytest.mark.parametrize("command", TOOLS)
def test_every_tool_takes_the_access_options(command: str) -> None:
    positional = {"ping": [IP], "pcap-replay": ["x.pcap"]}.get(command, [])
    args = build_parser().parse_args(
        [command, *positional, "--allow-uid", "nobody,7", "--allow-gid", "8"]
        + ["--unsealed-uid", "9"]
    )
    assert (args.allow_uid, args.allow_gid, args.unsealed_uid) == (
        {NOBODY, 7},
        {8},
        {9},
    )
    help_text = str(tool(command, "--help")["out"])
    assert "--allow-uid U[,U..]" in help_text and "SIGBUS" in help_text


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--allow-uid", "no-such-user-x", "unknown uid name 'no-such-user-x'"),
        ("--allow-gid", "1,,2", "empty gid in '1,,2'"),
        ("--unsealed-uid", "4294967296", "uids and gids must be 0..4294967295"),
    ],
)
@pytest.mark.parametrize("command", ["gen", "responder"])
def test_bad_access_values_are_one_line(
    command: str, option: str, value: str, message: str
) -> None:
    res = tool(command, option, value)
    assert res["rc"] == 2
    err = str(res["err"])
    assert err.startswith(f"memif: {command}: argument {option}: {message}"), err
    assert err.count("\n") == 1 and err.endswith(f"(see memif {command} --help)\n"), err
