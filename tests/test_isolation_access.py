"""Who may connect and whose memory is mapped: attacks by local peers, as root and as nobody.

Each memifd test starts a real memifd with a target socket (``memif1/*``) and a
legitimate pair of ports (``memif2/1`` and ``memif2/2``, bridged) whose clients run
in this process.  A hostile peer (:mod:`hostile_peer`, forked and dropped to uid
65534 where the attack is an unprivileged one) then attacks the target socket; the
test asserts that memifd stays up and answers its CLI, that the legitimate pair
keeps exchanging frames, that memifd's fds and memory stay bounded, and that a
counter in ``show memif`` names what was refused.  Library-level tests do the same
against a :class:`memif.Socket` in this process.
"""

from __future__ import annotations

import os
import re
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from attack_rig import Legit, Peers
from helpers import Memifd, mac
from hostile_peer import NOBODY, RawSlave, region_fd, run_as, spawn_as
from memifd_probe import alive, fd_count, rss_kib, socket_counters

import memif
from memif import packet as pkt
from memif import transport, wire
from memif.access import AccessPolicy
from memif.admission import FdBudget
from memif.testing import drive, unique_name

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="attacks as uid 65534 need root")

UNSEALED = (
    "region 1: memory not sealed against shrinking (uid 65534 not trusted with unsealed memory)"
)
HOSTILE_MAC = mac(3)


def config(target: str, *target_lines: str, options: str = "") -> tuple[list[str], str]:
    """memifd startup: socket 1 (``target`` + ``options``) with ``target_lines``, and the
    legitimate pair on socket 2; returns (lines, legit socket name)."""
    legit = unique_name("iso-legit")
    lines = [
        f"create memif socket id 1 filename {target} {options}".strip(),
        f"create memif socket id 2 filename {legit}",
        "create bridge-domain 1",
        *target_lines,
    ]
    for i in (1, 2):
        lines += [
            f"create interface memif id {i} socket-id 2 master",
            f"set interface l2 bridge memif2/{i} 1",
            f"set interface state memif2/{i} up",
        ]
    return lines, legit


def masters(*ids: int, bridge: bool = True) -> list[str]:
    """Admin-up master ports memif1/<id> on socket 1 (bridged into domain 1)."""
    out = []
    for i in ids:
        out += [f"create interface memif id {i} socket-id 1 master", f"set int state memif1/{i} up"]
        if bridge:
            out.append(f"set interface l2 bridge memif1/{i} 1")
    return out


def healthy(d, legit: Legit, n: int = 32) -> None:
    """memifd is alive, answers its CLI, and the legitimate pair still forwards."""
    alive(d)
    got = legit.exchange(n)
    assert got >= 2 * n * 0.9, f"legit pair got {got} of {2 * n}: {d.log()[-2000:]}"


def keep_forwarding_until(d, legit: Legit, cond: Callable[[], bool], timeout: float = 10.0):
    """Exchange frames on the legitimate pair until ``cond()`` (an attack got that far)."""
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, d.log()[-2000:]
        legit.exchange(4, timeout=1)


@contextmanager
def root_client(
    d, legit: Legit, name: str, if_id: int, timeout: float, **options: object
) -> Iterator[float]:
    """A library client (this process, root) of memifd's port ``if_id`` on ``name``,
    driven (with the legitimate pair's traffic) until it is connected: the seconds that
    took.  Closed on exit."""
    with memif.Socket(name, app_name="root-client") as sock:
        iface = sock.create_interface(role="client", id=if_id, reconnect_interval=0.1, **options)
        t0 = time.monotonic()
        while not iface.connected:
            assert time.monotonic() - t0 < timeout, (iface.local_disc_reason, d.log()[-3000:])
            drive(sock, until=lambda: iface.connected, timeout=0.2)
            legit.exchange(4, timeout=1)
        yield time.monotonic() - t0


@pytest.fixture
def attacked(start):
    """``attacked(target_lines, options=...)``: (memifd, target name, legitimate pair)."""
    peers = Peers()

    def make(target_lines: list[str], options: str = "", extra: tuple[str, ...] = ()):
        target = unique_name("iso-target")
        lines, legit_name = config(target, *target_lines, options=options)
        d = start(lines, *extra)
        sock = peers.open(legit_name, "legit")
        a, b = (sock.create_interface(role="client", id=i, reconnect_interval=0.1) for i in (1, 2))
        legit = Legit.connect(peers, a, b)
        healthy(d, legit)
        return d, target, legit

    yield make
    peers.close()


# --------------------------------------------------------------------------- 1. memory
def unsealed_attack(target: str, kind: str) -> dict[str, str]:
    """A slave whose buffer region is ``kind``: handshake, then write, truncate, post."""
    s = RawSlave(target, 0, kind=kind)
    try:
        reason = s.handshake()
        s.write_buffer(pkt.ethernet(b"\xff" * 6, HOSTILE_MAC, 0x88B5, bytes(50)))
        truncated = s.truncate() if reason != "connected" or kind == "sealable" else "skipped"
        s.post(b"x" * 64)
        return {"reason": reason, "truncate": truncated}
    finally:
        s.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["no-sealing", "seal-sealed", "dev-shm"])
def test_unsealed_region_from_nobody_is_refused_by_memifd(attacked, kind: str) -> None:
    d, target, legit = attacked(masters(0), options=f"allow-uid {NOBODY}")
    rss0 = rss_kib(d.proc.pid)
    out = run_as(NOBODY, lambda: unsealed_attack(target, kind))
    assert out == {"reason": UNSEALED, "truncate": "truncated"}
    healthy(d, legit)
    assert socket_counters(d)["unsealed_refused"] == 1
    assert d.interfaces()["memif1/0"]["state"] != "up"
    log = d.log()
    assert f"uid {NOBODY}" in log and re.search(rf"{re.escape(UNSEALED)} \(pid \d+ uid 65534", log)
    assert "unsealed-refused 1" in d.ctl("show", "memif").stdout
    assert rss_kib(d.proc.pid) < rss0 + 50_000


def test_sealable_region_from_nobody_is_sealed_and_cannot_be_pulled_away(attacked) -> None:
    d, target, legit = attacked(masters(0), options=f"allow-uid {NOBODY}")
    out = run_as(NOBODY, lambda: unsealed_attack(target, "sealable"))
    assert out == {"reason": "connected", "truncate": "Operation not permitted"}
    healthy(d, legit)
    assert socket_counters(d)["unsealed_refused"] == 0


def test_unsealed_region_from_root_still_works(attacked) -> None:
    """VPP with hugepages and DPDK zero-copy hand out memory that cannot be sealed: as root
    (trusted by default) such a peer connects and its frames are switched."""
    d, target, legit = attacked(masters(0))
    s = RawSlave(target, 0, kind="no-sealing")
    try:
        assert s.handshake() == "connected"
        d.wait_up("memif1/0")
        frame = pkt.ethernet(b"\xff" * 6, HOSTILE_MAC, 0x88B5, b"from-root" + bytes(50))
        s.write_buffer(frame)
        s.post(frame)
        got: list[bytes] = []

        def arrived() -> bool:
            got.extend(legit.a.recv())
            return frame in got

        legit.peers.drive(arrived, 5)
        assert frame in got
        healthy(d, legit)
        assert socket_counters(d)["unsealed_refused"] == 0
    finally:
        s.close()


@pytest.mark.parametrize("kind", ["no-sealing", "seal-sealed", "dev-shm"])
def test_library_server_refuses_unsealed_region_from_nobody(kind: str) -> None:
    path = unique_name("iso-lib")
    with memif.Socket(path, access=AccessPolicy.of(uids=[NOBODY])) as ss:
        srv = ss.create_interface(role="server", id=0)
        child = spawn_as(NOBODY, lambda stopped: unsealed_attack(path, kind))
        assert drive(ss, until=lambda: child.done, timeout=20)
        assert child.finish() == {"reason": UNSEALED, "truncate": "truncated"}
        assert ss.counters.unsealed_refused == 1 and not srv.connected
        assert srv.local_disc_reason == UNSEALED


def test_library_server_trusts_unsealed_memory_of_listed_uid() -> None:
    path = unique_name("iso-lib")
    policy = AccessPolicy.of(uids=[NOBODY], unsealed_uids=[NOBODY])
    with memif.Socket(path, access=policy) as ss:
        srv = ss.create_interface(role="server", id=0)
        child = spawn_as(NOBODY, lambda stopped: RawSlave(path, kind="no-sealing").handshake())
        assert drive(ss, until=lambda: child.done, timeout=20)
        assert child.finish() == "connected"
        assert ss.counters.unsealed_refused == 0 and srv.connect_count == 1


# --------------------------------------------------------------------------- 2. who may connect
def test_abstract_socket_refuses_nobody_and_logs_pid_uid(attacked) -> None:
    d, target, legit = attacked(masters(0))
    out = run_as(NOBODY, lambda: RawSlave(target).handshake())
    assert out == f"access denied: uid {NOBODY} gid {NOBODY} not allowed on this socket"
    healthy(d, legit)
    assert socket_counters(d)["access_denied"] == 1
    assert re.search(rf"{target}: access denied: .* \(pid \d+ uid {NOBODY} gid {NOBODY}\)", d.log())
    sock = d.ok("show memif socket")["data"][1]
    assert (
        sock["access"] == "uid 0 unsealed-uid 0"
        and "access-denied 1" in d.ctl("show", "memif", "socket").stdout
    )


def test_refusal_flood_is_counted_in_full_and_logged_rate_limited(attacked) -> None:
    d, target, legit = attacked(masters(0))

    def knock() -> int:
        address = transport.parse_address(target)
        done = 0
        while done < 300:
            try:
                transport.connect(address).close()
                done += 1
            except BlockingIOError:  # the backlog is full: memifd has not accepted yet
                time.sleep(0.001)
        return done

    run_as(NOBODY, knock)
    keep_forwarding_until(d, legit, lambda: socket_counters(d)["access_denied"] == 300)
    assert d.log().count("access denied") <= 10
    healthy(d, legit)


def test_allow_uid_by_name_admits_nobody(attacked) -> None:
    d, target, legit = attacked(masters(0), options="allow-uid nobody")
    assert run_as(NOBODY, lambda: RawSlave(target).handshake()) == "connected"
    healthy(d, legit)
    assert socket_counters(d)["access_denied"] == 0
    assert d.ok("show memif socket")["data"][1]["access"] == "uid 0,65534 unsealed-uid 0"


def test_daemon_wide_allow_gid_admits_nobody(attacked) -> None:
    d, target, legit = attacked(masters(0), extra=("--socket-allow-gid", str(NOBODY)))
    assert run_as(NOBODY, lambda: RawSlave(target).handshake()) == "connected"
    healthy(d, legit)


def test_bad_allow_lists_are_refused_with_one_line(start) -> None:
    d = start([])
    out = d.fails("create memif socket id 3 filename @x allow-uid nosuchuser")
    assert out == "unknown uid name 'nosuchuser': expected a number or a known name"
    out = d.fails("create memif socket id 3 filename @x allow-gid 1,,2")
    assert out.startswith("empty gid in '1,,2'")
    help_text = d.ctl("help", "create", "memif", "socket").stdout
    assert "SIGBUS" in help_text and "allow-uid" in help_text


@pytest.mark.slow
def test_squatter_of_an_abstract_name_gets_nothing_from_a_zero_copy_slave(attacked) -> None:
    """A fake master as nobody listens on the name a memifd slave port connects to:
    memifd checks the listener's credentials and never sends INIT or its buffer pool."""
    name = unique_name("iso-squat")

    def squat(stopped: Callable[[], bool]) -> dict[str, int]:
        lst = transport.listen(transport.parse_address(name))
        seen = {"accepted": 0, "messages": 0, "fds": 0}
        conns = []
        while not stopped():
            try:
                c, _ = lst.accept()
                seen["accepted"] += 1
                transport.send_message(c, wire.Hello(name="squatter"))
                conns.append(c)
            except (BlockingIOError, OSError):
                pass
            for c in conns:
                try:
                    got = transport.recv_message(c)
                except (BlockingIOError, OSError):
                    continue
                except transport.Malformed:
                    seen["messages"] += 1
                    continue
                if got:
                    seen["messages"] += 1
                    seen["fds"] += got[1] is not None
            time.sleep(0.01)
        return seen

    child = spawn_as(NOBODY, squat)
    try:
        d, _, legit = attacked(
            [
                f"create memif socket id 3 filename {name}",
                "create interface memif id 0 socket-id 3 slave",
                "set interface state memif3/0 up",
            ]
        )
        keep_forwarding_until(d, legit, lambda: socket_counters(d, 3)["access_denied"] >= 2, 15)
    finally:
        seen = child.finish()
    assert seen["accepted"] >= 1 and seen["messages"] == 0 and seen["fds"] == 0
    assert d.interfaces()["memif3/0"]["state"] != "up"
    assert re.search(rf"listener access denied: uid {NOBODY} .*\(pid \d+ uid {NOBODY}", d.log())
    healthy(d, legit)


def test_library_client_refuses_a_listener_it_does_not_trust() -> None:
    name = unique_name("iso-lib-squat")

    def squat(stopped: Callable[[], bool]) -> None:
        lst = transport.listen(transport.parse_address(name))
        while not stopped():
            time.sleep(0.01)
        lst.close()

    child = spawn_as(NOBODY, squat)
    try:
        with memif.Socket(name) as cs:
            client = cs.create_interface(role="client", id=0, reconnect_interval=0.05)
            assert drive(cs, until=lambda: cs.counters.access_denied >= 2, timeout=10)
            assert not client.connected and client.state == "disconnected"
            assert client.local_disc_reason.startswith(f"listener access denied: uid {NOBODY}")
    finally:
        child.finish()


def test_memifd_names_who_squats_its_abstract_name(tmp_path) -> None:
    """Any local user can bind an abstract name before memifd does; nothing can stop
    that, but memifd refuses to start on it and names the squatter (pid and uid)."""
    name = unique_name("iso-presquat")

    def squat(stopped: Callable[[], bool]) -> None:
        lst = transport.listen(transport.parse_address(name))
        while not stopped():
            time.sleep(0.01)
        lst.close()

    def bound() -> bool:
        try:
            transport.connect(transport.parse_address(name)).close()
            return True
        except OSError:
            return False

    child = spawn_as(NOBODY, squat)
    try:
        end = time.monotonic() + 10
        while not bound():
            assert time.monotonic() < end, "the squatter never bound its name"
            time.sleep(0.01)
        d = Memifd(tmp_path, [f"create memif socket id 1 filename {name}"] + masters(0))
        _, stderr = d.proc.communicate(timeout=30)
    finally:
        child.finish()
    assert d.proc.returncode == 1
    assert re.search(
        rf"Active listener on {name} \(held by pid \d+ uid {NOBODY} gid {NOBODY}\)", stderr
    ), stderr


# --------------------------------------------------------------------------- 3. fair admission
def test_pending_flood_from_one_uid_does_not_lock_out_another(attacked) -> None:
    d, target, legit = attacked(masters(0, 1), options=f"allow-uid {NOBODY}")
    fds0 = fd_count(d.proc.pid)

    def flood(stopped: Callable[[], bool]) -> dict[str, int]:
        conns: list = []
        seen = {"opened": 0, "refused": 0}
        address = transport.parse_address(target)
        while not stopped():
            while len(conns) < 100:
                try:
                    conns.append(transport.connect(address))
                    seen["opened"] += 1
                except OSError:
                    break
            for c in list(conns):
                try:
                    got = transport.recv_message(c)
                except BlockingIOError:
                    continue
                except OSError:
                    got = None
                if got is None or wire.is_disconnect(got[0]):
                    seen["refused"] += got is not None
                    conns.remove(c)
                    c.close()
            time.sleep(0.005)
        return seen

    child = spawn_as(NOBODY, flood)
    try:
        keep_forwarding_until(d, legit, lambda: socket_counters(d)["pending_refused"] >= 20)
        with root_client(d, legit, target, 1, 15) as took:
            print(
                f"\nroot client connected {took:.2f}s into a flood of silent connections "
                "from nobody"
            )
            healthy(d, legit)
            assert fd_count(d.proc.pid) < fds0 + 64  # 8 pending from nobody, plus our client
    finally:
        seen = child.finish()
    assert seen["refused"] >= 20
    assert re.search(r"too many pending connections from uid 65534 \(pid \d+ uid 65534", d.log())


@pytest.mark.slow
@pytest.mark.parametrize("drip", [False, True], ids=["silent", "dripping"])
def test_stalled_handshake_yields_its_interface_id(attacked, drip: bool) -> None:
    """A squatter sends INIT for the id a root client wants, then nothing (or one more
    region every 0.4 s, progress enough to dodge a silence rule); it reconnects at once
    whenever it is dropped."""
    d, target, legit = attacked(masters(0, 1), options=f"allow-uid {NOBODY}")

    def squat(stopped: Callable[[], bool]) -> dict[str, int]:
        seen = {"inits": 0, "accepted": 0}
        while not stopped():
            s = RawSlave(target, 1)
            try:
                s.connect()
                seen["inits"] += 1
                if s.init():  # holds id 1
                    seen["accepted"] += 1
                    s.sock.settimeout(0.05)  # type: ignore[union-attr]
                    regions, next_drip = 0, time.monotonic() + 0.4
                    while not stopped() and not s.reason:
                        if drip and time.monotonic() >= next_drip:
                            fd = region_fd("sealable", 4096)
                            s.send(wire.AddRegion(regions, 4096), fd)
                            os.close(fd)
                            regions, next_drip = regions + 1, next_drip + 0.4
                        try:
                            msg = s.receive()
                        except TimeoutError:
                            continue
                        if not isinstance(msg, wire.Ack):
                            s.reason = "closed" if msg is None else "refused"
            except OSError:
                pass
            finally:
                s.close()
            time.sleep(0.02)
        return seen

    child = spawn_as(NOBODY, squat)
    try:
        keep_forwarding_until(
            d, legit, lambda: "connecting" in d.ok("show memif memif1/1")["output"]
        )
        with root_client(d, legit, target, 1, 10) as took:
            print(f"\nroot client took interface id 1 from a stalled squatter in {took:.2f}s")
            healthy(d, legit)
            # not held until the handshake times out: the id was taken from the squatter
            assert socket_counters(d)["id_reclaimed"] >= 1
            assert "stalled handshake yields its interface id" in d.log()
    finally:
        seen = child.finish()
    assert seen["accepted"] >= 1


def test_fd_budget_bounds_a_peer_holding_many_rings_on_several_ids(attacked) -> None:
    limit = 1400
    d, target, legit = attacked(
        [*masters(0, 1, 2, 3, 4, bridge=False), "create interface memif id 3 socket-id 2 master"]
        + ["set interface state memif2/3 up"],
        options=f"allow-uid {NOBODY}",
    )
    resource.prlimit(d.proc.pid, resource.RLIMIT_NOFILE, (limit, limit))
    budget = limit - limit // 4  # what memifd's peers may hold together
    rss0, fds0 = rss_kib(d.proc.pid), fd_count(d.proc.pid)

    def hog(stopped: Callable[[], bool]) -> list[str]:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, resource.getrlimit(7)[1]))
        held = [RawSlave(target, i, s2m=150, m2s=150) for i in (0, 2, 3, 4)]
        reasons = [s.handshake() for s in held]
        while not stopped():
            time.sleep(0.01)
        for s in held:
            s.close()
        return reasons

    child = spawn_as(NOBODY, hog)
    try:
        keep_forwarding_until(
            d, legit, lambda: socket_counters(d)["fd_refused"] >= 3 or child.done, 60
        )
        held = fd_count(d.proc.pid)
        healthy(d, legit)
        root = RawSlave(target, 1, s2m=150, m2s=150)  # another uid still gets its share
        try:
            assert root.handshake() == "connected"
            peak = fd_count(d.proc.pid)
        finally:
            root.close()
        with root_client(d, legit, legit_name(d), 3, 10):
            pass
    finally:
        reasons = child.finish()
    print(f"\nnobody: {reasons}; memifd fds {fds0} -> {held} -> {peak} (+root), limit {limit}")
    # one uid holds at most half the budget: one id of 302 fds, not two
    assert reasons == ["connected"] + ["too many file descriptors"] * 3
    assert held <= fds0 + budget // 2 + 8 and peak < limit - 100
    assert socket_counters(d)["fd_refused"] == 3
    assert re.search(r"too many file descriptors \(this uid holds \d+, .*uid 65534", d.log())
    healthy(d, legit)
    assert rss_kib(d.proc.pid) < rss0 + 100_000


def legit_name(d) -> str:
    return d.ok("show memif socket")["data"][2]["filename"]


# --------------------------------------------------------------------------- 4. secrets, big rings
def test_secret_brute_force_is_throttled_and_logged(attacked) -> None:
    d, target, legit = attacked(
        [
            "create interface memif id 0 socket-id 1 master secret right",
            "set int state memif1/0 up",
        ],
        options=f"allow-uid {NOBODY}",
    )

    def guess() -> list[str]:
        return [RawSlave(target, 0, secret=f"guess{i}").handshake() for i in range(40)]

    reasons = run_as(NOBODY, guess)
    assert reasons[:8] == ["incorrect secret"] * 8
    assert set(reasons[8:]) == {"too many failed secrets"}
    c = socket_counters(d)
    assert (c["secret_failures"], c["secret_throttled"]) == (8, 32)
    log = d.log()
    assert re.search(r"uid 65534 backs off 10 s after 8 failed secrets \(pid \d+ uid 65534", log)
    # one line per reason and uid per period: the flood shows without filling the log
    assert log.count("incorrect secret") == 1 and log.count("too many failed secrets") <= 2
    healthy(d, legit)
    with root_client(d, legit, target, 0, 10, secret="right"):
        pass  # another uid is not throttled


def test_512_ring_handshake_completes_while_the_switch_forwards(attacked) -> None:
    d, target, legit = attacked(masters(0))

    def big() -> tuple[str, float]:
        s = RawSlave(target, 0, s2m=256, m2s=256)
        t0 = time.monotonic()
        try:
            return s.handshake(), time.monotonic() - t0
        finally:
            s.close()

    child = spawn_as(0, lambda stopped: big())
    while not child.done:
        legit.exchange(32, timeout=1)
    reason, took = child.finish()
    print(f"\n512-ring handshake took {took:.3f}s while the switch forwarded")
    assert reason == "connected"  # within memifd's own handshake deadline (5 s, its clock)
    healthy(d, legit)


# --------------------------------------------------------------------------- library sockets
def test_library_pending_cap_is_per_uid() -> None:
    path = unique_name("iso-lib-pending")
    policy = AccessPolicy.of(uids=[NOBODY])
    with memif.Socket(path, access=policy, max_pending_per_uid=2) as ss:
        srv = ss.create_interface(role="server", id=0)

        def silent(stopped: Callable[[], bool]) -> list[str]:
            conns = [transport.connect(transport.parse_address(path)) for _ in range(5)]
            for c in conns:
                c.setblocking(True)
            out = [wire.decode(transport.recv_message(c)[0]) for c in conns]  # type: ignore[index]
            while not stopped():
                time.sleep(0.01)
            return [type(m).__name__ + ":" + getattr(m, "reason", "") for m in out]

        child = spawn_as(NOBODY, silent)
        assert drive(ss, until=lambda: ss.counters.pending_refused == 3, timeout=10)
        with memif.Socket(path) as cs:  # root: its own quota
            client = cs.create_interface(role="client", id=0)
            assert drive(ss, cs, until=lambda: client.connected and srv.connected, timeout=10)
        replies = child.finish()
    assert (
        sorted(replies)
        == ["Disconnect:too many pending connections from uid 65534"] * 3 + ["Hello:"] * 2
    )


def test_library_fd_budget_is_charged_and_given_back() -> None:
    path = unique_name("iso-lib-fds")
    budget = FdBudget(limit=10, share=1.0)
    with memif.Socket(path, fd_budget=budget) as ss:
        srv = ss.create_interface(role="server", id=0)

        def hold(rings: int) -> Callable[[Callable[[], bool]], str]:
            def run(stopped: Callable[[], bool]) -> str:
                s = RawSlave(path, s2m=rings, m2s=rings)
                reason = s.handshake()
                while not stopped():
                    time.sleep(0.01)
                s.close()
                return reason

            return run

        child = spawn_as(0, hold(5))
        assert drive(ss, until=lambda: ss.counters.fd_refused == 1, timeout=10)
        assert child.finish() == "too many file descriptors"  # 2 regions + 10 rings > 10
        assert budget.used == 0
        child = spawn_as(0, hold(4))
        assert drive(ss, until=lambda: srv.connected, timeout=10)
        assert budget.used == 10  # 2 regions + 8 rings, held while connected
        assert child.finish() == "connected"
        assert drive(ss, until=lambda: not srv.connected, timeout=5)
        assert budget.used == 0 and srv.connect_count == 1


def test_fd_budget_refusals_log_one_line_whatever_their_counts(caplog) -> None:
    """The refusal text carries the budget's counts; a peer that makes them differ
    (here: another uid's connection raises "all peers") still gets one log line a period."""
    path = unique_name("iso-lib-fdlog")
    budget = FdBudget(limit=20, share=0.5)  # at most 10 fds per uid
    with memif.Socket(path, access=AccessPolicy.of(uids=[NOBODY]), fd_budget=budget) as ss:
        srv = ss.create_interface(role="server", id=0)
        ss.create_interface(role="server", id=1)

        def too_many(stopped: Callable[[], bool]) -> str:
            return RawSlave(path, 1, s2m=5, m2s=5).handshake()  # 2 regions + 10 rings > 10

        def refused(n: int, *socks: memif.Socket) -> None:
            child = spawn_as(NOBODY, too_many)
            assert drive(ss, *socks, until=lambda: ss.counters.fd_refused == n, timeout=10)
            assert child.finish() == "too many file descriptors"

        with caplog.at_level("WARNING", logger="memif"):
            refused(1)
            with memif.Socket(path) as cs:  # root holds fds now: the next refusal's counts differ
                client = cs.create_interface(role="client", id=0)
                assert drive(ss, cs, until=lambda: client.connected and srv.connected, timeout=10)
                used = budget.used
                refused(2, cs)
                assert budget.used == used > 0
    lines = [m for r in caplog.records if "too many file descriptors" in (m := r.getMessage())]
    assert len(lines) == 1 and f"uid {NOBODY}" in lines[0], lines
