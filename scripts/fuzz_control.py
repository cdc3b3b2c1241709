#!/usr/bin/env python3
"""Coverage-guided fuzzing of the memif control channel (``wire.decode`` + ``memif.proto``).

Each input is a script for one control connection: a role (master or slave), then
operations: a frame of bytes from the peer (a whole 128-byte message, or any length)
with or without an fd, time passing, the peer closing, the host failing the
connection.  The host's part is played as ``memif.sock`` plays it: on HELLO a slave
sets up regions and rings (counts taken from the input), on CONNECT a master accepts
or refuses.  The invariant, after every operation: events or ProtocolError, never
anything else, and never an inconsistent state:

* ``wire.decode`` returns a message of the type in the first two bytes, or raises
  ProtocolError; what it returns encodes again to the same message (a decoded string
  too long for its field is a known issue, counted; ``--strict-strings`` fails on it);
* a channel's ``receive_bytes``/``tick``/``peer_closed``/``fail`` never raise;
* lock-step: at most one message out per message in, of a type the role may send,
  fds only on ADD_REGION/ADD_RING and only the slave's own;
* a Disconnected event exactly once, then CLOSED for good: nothing more goes out
  except the one DISCONNECT of a local refusal, which carries ``local_reason``;
* the deadline exists exactly while the handshake runs;
* a master keeps only fds it was given, each once, regions indexed 0..n-1, rings
  0..k-1 per direction, each in a known region with 1 <= log2 <= 14, and owns
  nothing else; a slave is connected only after CONNECT went out and CONNECTED came.

Engines: atheris (libFuzzer, coverage-guided) when installed, otherwise hypothesis's
``fuzz_one_input`` fed with random buffers (no coverage guidance).  atheris is not a
project dependency; install it with ``pip install atheris`` (wheels for CPython 3.11 on
x86-64 Linux; elsewhere it builds from source and needs clang with libFuzzer).

    PYTHONPATH=src python scripts/fuzz_control.py --seconds 300
    PYTHONPATH=src python scripts/fuzz_control.py --replay crash-1234...   # reproduce

Prints progress every 10 s and a summary at the end.  Exit status: 0 when nothing was
found, 1 on a finding (the input is written to ``crash-<sha1>`` in --artifacts, by
default ``$TMPDIR/memif-fuzz-control``, and printed in hex), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import os
import random
import re
import struct
import sys
import tempfile
import time
import traceback

try:
    import atheris
except ImportError:  # the fallback engine needs only hypothesis
    atheris = None

# memif's modules, imported by load() (under atheris's instrumentation when it runs)
proto = wire = ProtocolError = None


def load(instrument: bool) -> None:
    global proto, wire, ProtocolError
    if instrument:
        with atheris.instrument_imports(include=["memif"]):  # for memif.wire and memif.proto
            from memif import errors, proto, wire
    else:
        from memif import errors, proto, wire
    ProtocolError = errors.ProtocolError


FIRST_FD = 10
STRING_CAPS = {"name": 31, "if_name": 31, "secret": 23, "reason": 95}  # bytes, NUL excluded
STRICT_STRINGS = False  # --strict-strings: a decoded string too long to encode is a finding
REFUSALS = ("wrong cookie on tx ring 0", "interface deleted", "cannot allocate memory: x")


class Finding(AssertionError):
    """An invariant broke."""


def check(cond: object, what: str) -> None:
    if not cond:
        raise Finding(what)


# --------------------------------------------------------------------------- input format


class Reader:
    """Consumes the fuzzer's bytes; reads past the end give zeros (and end the script)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def left(self) -> int:
        return len(self.data) - self.pos

    def u8(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


# Operation codes (the first byte of each operation, modulo 8).
OP_FRAME, OP_FRAME_FD, OP_FRAME_ANY, OP_TICK, OP_CLOSED, OP_FAIL = 0, 1, 2, 3, 4, 5


class Writer:
    """Builds inputs in the Reader's format (for the seed corpus)."""

    def __init__(self, role: str) -> None:
        self.out = bytearray([0 if role == "master" else 1])

    def frame(self, msg: wire.Message, fd: bool = False, host: int | None = None) -> Writer:
        """A whole message; ``host`` is the host's decision it triggers (CONNECT, HELLO)."""
        self.out += bytes([OP_FRAME_FD if fd else OP_FRAME]) + wire.encode(msg) + bytes([1])
        if host is not None:
            self.out.append(host)
        return self

    def raw(self, data: bytes, fd: bool = False) -> Writer:
        self.out += bytes([OP_FRAME_ANY, len(data)]) + data + bytes([int(fd), 1])
        return self

    def op(self, *codes: int) -> Writer:
        self.out += bytes(codes)
        return self


# --------------------------------------------------------------------------- statistics


class Stats:
    def __init__(self) -> None:
        self.runs = 0
        self.ops = 0
        self.events: collections.Counter[str] = collections.Counter()
        self.phases: collections.Counter[str] = collections.Counter()
        self.reasons: collections.Counter[str] = collections.Counter()
        self.decoded: collections.Counter[str] = collections.Counter()
        self.not_reencodable = 0  # decoded names too long for their field (see check_decode)
        self.example = ""
        self.start = time.monotonic()

    def line(self) -> str:
        up = self.phases["master connected"] + self.phases["slave connected"]
        return (
            f"{time.monotonic() - self.start:6.0f} s  {self.runs} runs  {self.ops} ops  "
            f"{len(self.reasons)} distinct reasons  {up} runs ended connected"
        )

    def summary(self) -> str:
        lines = ["", "== fuzz_control summary ==", self.line()]
        lines.append("final phases: " + ", ".join(f"{k} {v}" for k, v in self.phases.most_common()))
        lines.append("events: " + ", ".join(f"{k} {v}" for k, v in self.events.most_common()))
        decoded = ", ".join(f"{k} {v}" for k, v in self.decoded.most_common())
        lines.append(f"decoded frames: {decoded}")
        lines.append(f"known issue, decoded strings too long to encode: {self.not_reencodable}")
        if self.example:
            lines.append(f"  for example {self.example}")
        lines.append(f"refusal reasons ({len(self.reasons)}):")
        lines += [f"  {v:8d}  {k}" for k, v in sorted(self.reasons.items())]
        return "\n".join(lines)


STATS = Stats()


# --------------------------------------------------------------------------- the harness


def check_decode(frame: bytes) -> None:
    """wire.decode: a message of the frame's type or ProtocolError; it encodes back."""
    try:
        msg = wire.decode(frame)
    except ProtocolError:
        STATS.decoded["refused"] += 1
        return
    STATS.decoded[msg.TYPE.name] += 1
    check(len(frame) == wire.MSG_SIZE, f"decoded a {len(frame)}-byte frame")
    check(struct.unpack_from("<H", frame)[0] == msg.TYPE, f"type of {msg!r}")
    # Known: decode keeps a name of 32 bytes with no NUL, and turns each invalid UTF-8 byte
    # into U+FFFD (3 bytes), so a received string may not fit its field again (encode
    # refuses a name, truncates a reason).  Harmless while received strings are never sent
    # back; a finding with --strict-strings.
    long = [f for f, cap in STRING_CAPS.items() if len(getattr(msg, f, "").encode()) > cap]
    if long:
        check(not STRICT_STRINGS, f"decoded {msg!r} has strings too long for their fields")
        STATS.not_reencodable += 1
        STATS.example = STATS.example or repr(msg)
        return
    again = wire.encode(msg)
    check(wire.decode(again) == msg, f"{msg!r} does not survive encode/decode")


class Harness:
    """One channel under test plus the model of what it may do."""

    def __init__(self, r: Reader) -> None:
        self.r = r
        flags = r.u8()
        self.role = "slave" if flags & 1 else "master"
        self.now = 0.0
        self.timeout = None if flags & 2 else 5.0
        self.held: set[int] = set()  # fds the channel keeps (master) or its own (slave)
        self.disconnected = 0
        self.connected = 0
        self.local_fail = False
        self.connect_sent = False
        self.slave_fds: set[int] = set()
        if self.role == "master":
            self.ch: proto.Channel = proto.MasterChannel(
                self.lookup, name="fuzz", now=0.0, handshake_timeout=self.timeout
            )
        else:
            init = wire.Init(0, wire.Mode.ETHERNET, "", "fuzz")
            self.ch = proto.SlaveChannel(init, now=0.0, handshake_timeout=self.timeout)
        self.collect(first=True)

    # -- the host's side
    @staticmethod
    def lookup(if_id: int) -> proto.MasterPolicy:
        if if_id == 0:
            return proto.MasterPolicy(wire.Mode.ETHERNET, "", "slot0")
        if if_id == 1:
            return proto.MasterPolicy(wire.Mode.IP, "pw", "slot1")
        if if_id == 2:
            raise ProtocolError("already connected")
        raise ProtocolError("unmatched interface id")

    def new_fd(self) -> int:
        """The lowest number not in use: fds the channel did not keep were closed."""
        fd = FIRST_FD
        while fd in self.held or fd in self.slave_fds:
            fd += 1
        return fd

    def host(self, events: list[proto.Event]) -> list[proto.Event]:
        """React to events as memif.sock does; returns every event, the host's included."""
        out = list(events)
        for ev in events:
            if isinstance(ev, proto.ConnectRequested):
                check(self.ch.phase is proto.Phase.CONNECTING, "CONNECT without CONNECTING")
                if self.r.u8() & 1:
                    out += self.ch.fail(REFUSALS[0])
                else:
                    self.ch.accept("fuzz-if")
                    out.append(proto.Connected("peer"))  # what the host reports
            elif isinstance(ev, proto.HelloReceived):
                out += self.setup()
        return out

    def setup(self) -> list[proto.Event]:
        pick = self.r.u8()
        if pick == 255:  # the host cannot allocate the memory
            return self.ch.fail(REFUSALS[2])
        n_regions, n_s2m, n_m2s = 1 + pick % 3, (pick >> 2) % 3, (pick >> 4) % 3
        regions = []
        for i in range(n_regions):
            fd = FIRST_FD + 100 + i
            self.slave_fds.add(fd)
            regions.append((4096 * (i + 1), fd))
        rings = []
        for s2m, count in ((True, n_s2m), (False, n_m2s)):
            for i in range(count):
                fd = FIRST_FD + 200 + len(rings)
                self.slave_fds.add(fd)
                rings.append((wire.AddRing(s2m, i, 0, 384 * len(rings), 4), fd))
        assert isinstance(self.ch, proto.SlaveChannel)
        self.ch.setup(regions, rings, "fuzz-if")
        return []

    # -- one step
    def step(self) -> bool:
        if self.r.left <= 0:
            return False
        op = self.r.u8() % 8
        STATS.ops += 1
        before = self.ch.phase
        fd = None
        if op in (OP_FRAME, OP_FRAME_FD, OP_FRAME_ANY):
            frame = self.r.take(wire.MSG_SIZE if op != OP_FRAME_ANY else self.r.u8())
            if op == OP_FRAME_ANY:
                op = OP_FRAME_FD if self.r.u8() & 1 else OP_FRAME
            fd = self.new_fd() if op == OP_FRAME_FD else None
            self.now += self.r.u8() / 50
            check_decode(frame)
            events = self.ch.receive_bytes(frame, fd, self.now)
            if fd is not None and self.ch.owns_fd(fd):
                check(self.role == "master", "a slave kept an fd")
                check(fd not in self.held, "fd kept twice")
                self.held.add(fd)
            events = self.host(events)
            self.collect(events=events, received=True, before=before)
        elif op == OP_TICK:
            self.now += self.r.u8() / 10
            self.collect(events=self.host(self.ch.tick(self.now)), before=before)
        elif op == OP_CLOSED:
            self.collect(events=self.ch.peer_closed(), before=before)
        elif op == OP_FAIL:
            reason = REFUSALS[self.r.u8() % len(REFUSALS)]
            self.collect(events=self.ch.fail(reason), before=before)
        else:  # a frame the host drops before the channel sees it (bad length, two fds)
            self.collect(events=self.ch.fail("truncated message or control data"), before=before)
        return True

    # -- the invariants
    def collect(
        self,
        events: list[proto.Event] = (),  # type: ignore[assignment]
        *,
        first: bool = False,
        received: bool = False,
        before: proto.Phase | None = None,
    ) -> None:
        ch = self.ch
        out = ch.messages_to_send()
        for ev in events:
            check(isinstance(ev, proto.Event), f"not an event: {ev!r}")
            STATS.events[type(ev).__name__] += 1
            if isinstance(ev, proto.Disconnected):
                self.disconnected += 1
                check(self.disconnected == 1, "two Disconnected events")
                check(ch.phase is proto.Phase.CLOSED, "Disconnected but not CLOSED")
                check(ev.reason or ev.by_peer, "a local refusal without a reason")
                key = (
                    "(the peer's own reason)"
                    if ev.by_peer and ev.reason not in ("connection closed by peer",)
                    else re.sub(r"0x[0-9a-f]+|\d+", "N", ev.reason)
                )
                STATS.reasons[key] += 1
                if not ev.by_peer:
                    self.local_fail = True
                    check(ev.reason == ch.local_reason, "event reason is not local_reason")
            if isinstance(ev, proto.Connected):
                self.connected += 1
                check(self.connected == 1, "connected twice")
        check(before is not proto.Phase.CLOSED or (not events and not out), "activity after CLOSED")
        # lock-step
        limit = 1 if (received or first or events) else 0
        if self.role == "slave" and first:
            limit = 0  # a slave waits for HELLO
        check(len(out) <= limit, f"{len(out)} messages out at once: {out}")
        for msg, fd in out:
            allowed = (
                (wire.Hello, wire.Ack, wire.Connected, wire.Disconnect)
                if self.role == "master"
                else (wire.Init, wire.AddRegion, wire.AddRing, wire.Connect, wire.Disconnect)
            )
            check(isinstance(msg, allowed), f"{self.role} sends {msg!r}")
            check(wire.decode(wire.encode(msg)) == msg, f"cannot send {msg!r}")
            if fd is not None:
                check(isinstance(msg, wire.AddRegion | wire.AddRing), f"fd on {msg!r}")
                check(fd in self.slave_fds, f"sends an fd it does not own: {fd}")
            if isinstance(msg, wire.Disconnect):
                check(ch.closed and self.local_fail, "DISCONNECT without a local refusal")
                check(msg.reason == ch.local_reason, "DISCONNECT reason is not local_reason")
            if isinstance(msg, wire.Connect):
                self.connect_sent = True
        # phase and deadline
        check(isinstance(ch.phase, proto.Phase), "phase")
        check(ch.closed == (ch.phase is proto.Phase.CLOSED), "closed vs phase")
        check(ch.phase is not proto.Phase.CONNECTING, "left CONNECTING after the host acted")
        check((self.disconnected == 1) == ch.closed, "CLOSED without a Disconnected event")
        running = ch.phase is proto.Phase.HANDSHAKE
        check((ch.deadline is not None) == (running and self.timeout is not None), "deadline")
        if ch.phase is proto.Phase.CONNECTED:
            check(self.connected == 1, "CONNECTED without a Connected event")
        if isinstance(ch, proto.MasterChannel):
            self.check_master(ch)
        else:
            check(ch.phase is not proto.Phase.CONNECTED or self.connect_sent, "early CONNECTED")
            check(not ch.owns_fd(FIRST_FD), "a slave owns an fd")

    def check_master(self, ch: proto.MasterChannel) -> None:
        offered = ch.offered_fds()
        check(len(offered) == len(set(offered)), "an fd kept twice")
        check(set(offered) == self.held, f"kept fds {offered} vs given {sorted(self.held)}")
        check([r.index for r in ch.regions] == list(range(len(ch.regions))), "region indices")
        for s2m in (True, False):
            idx = [r.index for r in ch.rings if r.s2m == s2m]
            check(idx == list(range(len(idx))), f"ring indices {idx}")
        for ring in ch.rings:
            check(ring.region < len(ch.regions), "ring in an unknown region")
            check(1 <= ring.log2_size <= wire.MAX_LOG2_RING_SIZE, "ring size")
        check(all(r.size > 0 for r in ch.regions), "empty region")
        check(ch.regions == [] and ch.rings == [] or ch.init is not None, "offers before INIT")
        check(not ch.owns_fd(FIRST_FD - 1), "owns an fd never given")
        if ch.phase is proto.Phase.CONNECTED:
            check(any(r.s2m for r in ch.rings) and any(not r.s2m for r in ch.rings), "rings")


def one_input(data: bytes) -> None:
    STATS.runs += 1
    h = Harness(Reader(data))
    while h.step():
        pass
    STATS.phases[f"{h.role} {h.ch.phase.value}"] += 1


# --------------------------------------------------------------------------- seeds


def seeds() -> list[bytes]:
    """Valid handshakes of both roles and their usual refusals, as inputs."""
    r4 = wire.ring_bytes(4)
    init = wire.Init(0, wire.Mode.ETHERNET, "", "seed")
    full = (
        Writer("master")
        .frame(init)
        .frame(wire.AddRegion(0, 2 * r4), fd=True)
        .frame(wire.AddRing(True, 0, 0, 0, 4), fd=True)
        .frame(wire.AddRing(False, 0, 0, r4, 4), fd=True)
        .frame(wire.Connect("seed-if"), host=0)
    )
    out = [bytes(full.out)]
    out.append(bytes(full.frame(wire.Ack()).out))
    refused = Writer("master").frame(init).frame(wire.AddRegion(0, 4096), fd=True)
    out.append(bytes(refused.frame(wire.Connect("x"), host=1).out))
    out.append(bytes(Writer("master").frame(wire.Init(1, wire.Mode.IP, "pw", "s")).out))
    out.append(bytes(Writer("master").raw(b"\x03\x00junk").out))
    out.append(bytes(Writer("master").frame(init).op(OP_TICK, 200).out))
    for pick in (0b010101, 0b011010, 0, 255):  # the slave's regions and rings (see setup)
        slave = Writer("slave").frame(wire.Hello(name="seed"), host=pick)
        for _ in range(1 + (1 + pick % 3) + (pick >> 2) % 3 + (pick >> 4) % 3):
            slave.frame(wire.Ack())
        out.append(bytes(slave.frame(wire.Connected("m")).out))
    out.append(bytes(Writer("slave").frame(wire.Hello(min_version=0x0300, max_version=0x300)).out))
    out.append(bytes(Writer("slave").frame(wire.Disconnect("bye")).out))
    return out


# --------------------------------------------------------------------------- engines


def report(data: bytes, exc: BaseException, artifacts: str) -> None:
    path = os.path.join(artifacts, "crash-" + hashlib.sha1(data).hexdigest())
    with open(path, "wb") as f:
        f.write(data)
    print(STATS.summary(), file=sys.stderr)
    print(f"\n== FINDING: {type(exc).__name__}: {exc}", file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)
    print(f"input ({len(data)} bytes) written to {path}:\n{data.hex()}", file=sys.stderr)


class Clock:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.next_progress = time.monotonic() + 10

    def tick(self) -> bool:
        """Print progress now and then; False once the time is up."""
        now = time.monotonic()
        if now >= self.next_progress:
            print("progress:", STATS.line(), file=sys.stderr, flush=True)
            self.next_progress = now + 10
        return now < self.end


def run_atheris(args: argparse.Namespace) -> int:
    clock = Clock(args.seconds)
    corpus = args.corpus or tempfile.mkdtemp(prefix="fuzz-control-corpus-")
    os.makedirs(corpus, exist_ok=True)
    for i, seed in enumerate(seeds()):
        with open(os.path.join(corpus, f"seed-{i}"), "wb") as f:
            f.write(seed)

    def target(data: bytes) -> None:
        if not clock.tick():
            print(STATS.summary(), file=sys.stderr, flush=True)
            print("no finding", file=sys.stderr, flush=True)
            os._exit(0)  # libFuzzer exits without running Python's atexit
        try:
            one_input(data)
        except BaseException as exc:
            report(data, exc, args.artifacts)
            sys.stderr.flush()
            os._exit(1)

    argv = [sys.argv[0], corpus, f"-max_total_time={int(args.seconds) + 30}", "-max_len=4096"]
    argv += [f"-artifact_prefix={args.artifacts}/", "-print_final_stats=1"]
    print(f"atheris {atheris.__name__}: corpus {corpus}, {args.seconds:g} s", file=sys.stderr)
    atheris.Setup(argv, target)
    atheris.Fuzz()
    return 0


def run_hypothesis(args: argparse.Namespace) -> int:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    pool = seeds()

    @settings(database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.sampled_from(pool),
        st.lists(st.tuples(st.integers(0, 4095), st.binary(max_size=8), st.integers(0, 8))),
    )
    def target(seed: bytes, edits: list[tuple[int, bytes, int]]) -> None:
        data = bytearray(seed)
        for pos, insert, cut in edits:  # splice: cut some bytes, insert others
            pos %= len(data) + 1
            data[pos : pos + cut] = insert
        current[0] = bytes(data)
        one_input(bytes(data))

    current = [b""]
    clock = Clock(args.seconds)
    rng = random.Random(args.seed)
    print(f"hypothesis fuzz_one_input (no coverage guidance), {args.seconds:g} s", file=sys.stderr)
    while clock.tick():
        try:
            target.hypothesis.fuzz_one_input(rng.randbytes(rng.randrange(1, 512)))
        except Exception as exc:
            report(current[0], exc, args.artifacts)
            return 1
    print(STATS.summary(), file=sys.stderr)
    print("no finding", file=sys.stderr)
    return 0


def replay(paths: list[str]) -> int:
    status = 0
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        try:
            one_input(data)
            print(f"{path}: ok")
        except Exception:
            print(f"{path}: FINDING")
            traceback.print_exc()
            status = 1
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long (default 60)")
    parser.add_argument("--engine", choices=["auto", "atheris", "hypothesis"], default="auto")
    parser.add_argument("--corpus", help="atheris corpus directory (kept; default: a temp dir)")
    parser.add_argument(
        "--artifacts",
        default=os.path.join(tempfile.gettempdir(), "memif-fuzz-control"),
        help="where crash-* inputs go (default: memif-fuzz-control in the temp dir)",
    )
    parser.add_argument("--seed", type=int, default=None, help="hypothesis engine: RNG seed")
    parser.add_argument("--replay", nargs="+", metavar="FILE", help="run saved inputs and stop")
    parser.add_argument(
        "--strict-strings",
        action="store_true",
        help="treat the known issue (decoded names too long to encode again) as a finding",
    )
    args = parser.parse_args(argv)
    global STRICT_STRINGS
    STRICT_STRINGS = args.strict_strings
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if atheris is not None else "hypothesis"
    if engine == "atheris" and atheris is None and not args.replay:
        parser.error("atheris is not installed: pip install atheris (or use --engine hypothesis)")
    load(instrument=engine == "atheris" and not args.replay)
    if args.replay:
        return replay(args.replay)
    os.makedirs(args.artifacts, exist_ok=True)
    with contextlib.suppress(KeyboardInterrupt):
        return run_atheris(args) if engine == "atheris" else run_hypothesis(args)
    print(STATS.summary(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
