"""Sans-I/O tests of the memif control channel (``memif.proto``).

The channels are driven with decoded messages (or raw bytes), fds that are plain
integers, and an explicit ``now``: no sockets, no memory, no clock.  The expected
texts are the ones in sections 4, 5 and 6 of the protocol notes.
"""

from __future__ import annotations

import struct

import pytest

from memif import proto, wire
from memif.errors import ProtocolError
from memif.proto import (
    ConnectRequested,
    Disconnected,
    HelloReceived,
    InitAccepted,
    MasterChannel,
    MasterPolicy,
    Phase,
    SlaveChannel,
)
from memif.wire import (
    Ack,
    AddRegion,
    AddRing,
    Connect,
    Connected,
    Disconnect,
    Hello,
    Init,
    Mode,
)

SLOT = object()  # what the host gets back in InitAccepted for the matched interface
REGION_FDS = [100, 101]
S2M_FDS = [200, 201]
M2S_FDS = [300, 301, 302]


def policy_lookup(
    ids: dict[int, MasterPolicy] | None = None, connected: frozenset[int] = frozenset()
):
    """A lookup like ``Socket._lookup``: known ids give their policy, others refuse."""
    table = {0: MasterPolicy(Mode.ETHERNET, "", SLOT)} if ids is None else ids

    def lookup(if_id: int) -> MasterPolicy:
        if if_id not in table:
            raise ProtocolError("unmatched interface id")
        if if_id in connected:
            raise ProtocolError("already connected")
        return table[if_id]

    return lookup


def master(lookup=None, *, now: float = 0.0, timeout: float | None = 5.0) -> MasterChannel:
    ch = MasterChannel(
        lookup or policy_lookup(), name="server-app", now=now, handshake_timeout=timeout
    )
    assert ch.messages_to_send() == [(Hello(name="server-app"), None)]
    return ch


def slave(init: Init | None = None, *, now: float = 0.0, timeout: float | None = 5.0):
    return SlaveChannel(init or Init(0, Mode.ETHERNET, "", "client-app"), now=now,
                        handshake_timeout=timeout)  # fmt: skip


def ring_msgs(n_s2m: int = 2, n_m2s: int = 3) -> list[tuple[AddRing, int]]:
    """ADD_RING messages with their eventfds, deliberately out of order (M2S first, reversed)."""
    m2s = [(AddRing(False, i, 0, 0x4000 * (n_s2m + i), 10), M2S_FDS[i]) for i in range(n_m2s)]
    s2m = [(AddRing(True, i, 0, 0x4000 * i, 10), S2M_FDS[i]) for i in range(n_s2m)]
    return m2s[::-1] + s2m[::-1]


def expect_failure(ch: proto.Channel, events: list, reason: str) -> None:
    """A local refusal: one Disconnected event, exactly one DISCONNECT queued, CLOSED."""
    assert events == [Disconnected(reason, by_peer=False)]
    assert ch.messages_to_send() == [(Disconnect(reason), None)]
    assert ch.phase is Phase.CLOSED and ch.closed
    assert ch.local_reason == reason and ch.remote_reason == ""
    assert ch.deadline is None
    # After CLOSED nothing more happens.
    assert ch.receive(Ack(), None, 1.0) == []
    assert ch.receive(Disconnect("late"), None, 1.0) == []
    assert ch.tick(1e9) == [] and ch.peer_closed() == [] and ch.fail("again") == []
    assert ch.messages_to_send() == []
    assert ch.remote_reason == "" and ch.local_reason == reason


def master_after_init(lookup=None, **kw) -> MasterChannel:
    ch = master(lookup, **kw)
    events = ch.receive(Init(0, Mode.ETHERNET, "", "client-app"), None, 0.0)
    assert events == [InitAccepted(Init(0, Mode.ETHERNET, "", "client-app"), SLOT)]
    assert ch.messages_to_send() == [(Ack(), None)]
    return ch


def master_after_regions(n: int = 1) -> MasterChannel:
    ch = master_after_init()
    for i in range(n):
        assert ch.receive(AddRegion(i, 4096), REGION_FDS[i], 0.0) == []
        assert ch.messages_to_send() == [(Ack(), None)]
    return ch


# --------------------------------------------------------------------------- handshake


def test_full_lock_step_handshake() -> None:
    init = Init(7, Mode.IP, "pw", "client-app")
    policy = MasterPolicy(Mode.IP, "pw", SLOT)
    m = master(policy_lookup({7: policy}), now=10.0)
    s = slave(init, now=10.0)
    assert m.phase is s.phase is Phase.HANDSHAKE
    assert m.deadline == s.deadline == 15.0

    # HELLO: the slave answers nothing until the host has built its memory.
    events = s.receive(Hello(name="server-app"), None, 10.1)
    assert events == [HelloReceived(Hello(name="server-app"))]
    assert s.remote_name == "server-app"
    assert s.messages_to_send() == []

    s.setup([(4096, REGION_FDS[0]), (8192, REGION_FDS[1])], ring_msgs(), "slave-if")
    with pytest.raises(RuntimeError):  # setup() only once
        s.setup([], [], "again")

    # Lock-step: exactly one message out per message in, in the protocol's order.
    sent: list[tuple[wire.Message, int | None]] = []
    out = s.messages_to_send()
    master_events: list[proto.Event] = []
    while out:
        assert len(out) == 1, out
        msg, fd = out[0]
        sent.append((msg, fd))
        master_events += m.receive(msg, fd, 10.2)
        answers = m.messages_to_send()
        if isinstance(msg, Connect):
            assert answers == []
            assert m.phase is Phase.CONNECTING
            assert m.deadline == 15.0  # still bounded while the host maps memory
            m.accept("master-if")
            answers = m.messages_to_send()
            assert answers == [(Connected("master-if"), None)]
        else:
            assert answers == [(Ack(), None)]
        assert len(answers) == 1
        slave_events = s.receive(answers[0][0], None, 10.3)
        out = s.messages_to_send()
        if isinstance(msg, Connect):
            assert slave_events == [proto.Connected("master-if")]
            assert out == []
        else:
            assert slave_events == []

    assert sent == [
        (init, None),
        (AddRegion(0, 4096), REGION_FDS[0]),
        (AddRegion(1, 8192), REGION_FDS[1]),
        (AddRing(True, 0, 0, 0, 10), S2M_FDS[0]),
        (AddRing(True, 1, 0, 0x4000, 10), S2M_FDS[1]),
        (AddRing(False, 0, 0, 0x8000, 10), M2S_FDS[0]),
        (AddRing(False, 1, 0, 0xC000, 10), M2S_FDS[1]),
        (AddRing(False, 2, 0, 0x10000, 10), M2S_FDS[2]),
        (Connect("slave-if"), None),
    ]
    assert master_events[0] == InitAccepted(init, SLOT)
    req = master_events[1]
    assert len(master_events) == 2 and isinstance(req, ConnectRequested)
    assert req.if_name == "slave-if"
    assert [(r.index, r.size, r.fd) for r in req.regions] == [
        (0, 4096, REGION_FDS[0]),
        (1, 8192, REGION_FDS[1]),
    ]
    assert [(r.s2m, r.index, r.offset, r.log2_size, r.fd) for r in req.rings] == [
        (True, 0, 0, 10, S2M_FDS[0]),
        (True, 1, 0x4000, 10, S2M_FDS[1]),
        (False, 0, 0x8000, 10, M2S_FDS[0]),
        (False, 1, 0xC000, 10, M2S_FDS[1]),
        (False, 2, 0x10000, 10, M2S_FDS[2]),
    ]
    assert m.phase is s.phase is Phase.CONNECTED
    assert m.deadline is None and s.deadline is None
    assert m.remote_name == "client-app" and m.remote_if_name == "slave-if"
    assert s.remote_name == "server-app" and s.remote_if_name == "master-if"
    assert m.init == init
    # The master keeps (owns) every fd it was handed; nothing else.
    assert sorted(m.offered_fds()) == sorted(REGION_FDS + S2M_FDS + M2S_FDS)
    assert all(m.owns_fd(fd) for fd in REGION_FDS + S2M_FDS + M2S_FDS)
    assert not m.owns_fd(999) and not s.owns_fd(REGION_FDS[0])
    # Once connected the handshake deadline no longer applies.
    assert m.tick(1e9) == [] and s.tick(1e9) == []
    assert m.phase is s.phase is Phase.CONNECTED
    with pytest.raises(RuntimeError):
        m.accept("twice")


def test_handshake_over_encoded_bytes() -> None:
    """The same handshake through ``receive_bytes``: what travels is 128-byte frames."""
    m, s = master(), slave()
    hello = wire.encode(Hello(name="server-app"))
    assert s.receive_bytes(hello, None, 0.0) == [HelloReceived(Hello(name="server-app"))]
    s.setup([(4096, 5)], [(AddRing(True, 0, 0, 0, 4), 6), (AddRing(False, 0, 0, 320, 4), 7)], "c")
    while not s.closed and s.phase is not Phase.CONNECTED:
        [(msg, fd)] = s.messages_to_send()
        events = m.receive_bytes(wire.encode(msg), fd, 0.0)
        if any(isinstance(e, ConnectRequested) for e in events):
            m.accept("srv")
        [(answer, _)] = m.messages_to_send()
        s.receive_bytes(wire.encode(answer), None, 0.0)
    assert m.phase is s.phase is Phase.CONNECTED


def test_hello_version_range_accepted() -> None:
    s = slave()
    events = s.receive(Hello(min_version=0x0100, max_version=0x0300), None, 0.0)
    assert events == [HelloReceived(Hello(min_version=0x0100, max_version=0x0300))]
    assert s.phase is Phase.HANDSHAKE


def test_master_ignores_slave_secret_when_it_has_none() -> None:
    m = master()
    init = Init(0, Mode.ETHERNET, "whatever", "c")
    assert m.receive(init, None, 0.0) == [InitAccepted(init, SLOT)]
    assert m.messages_to_send() == [(Ack(), None)]


def test_master_accepts_matching_secret_and_mode() -> None:
    m = master(policy_lookup({3: MasterPolicy(Mode.PUNT_INJECT, "s3cret", "slot3")}))
    init = Init(3, Mode.PUNT_INJECT, "s3cret", "c")
    assert m.receive(init, None, 0.0) == [InitAccepted(init, "slot3")]


# --------------------------------------------------------------------------- rejections: INIT


@pytest.mark.parametrize("version", [0x0100, 0x0201, 0x0300, 0])
def test_init_incompatible_version(version: int) -> None:
    m = master()
    events = m.receive(Init(0, Mode.ETHERNET, "", "c", version=version), None, 0.0)
    expect_failure(m, events, "incompatible protocol version")


@pytest.mark.parametrize(
    ("vmin", "vmax"), [(0x0201, 0x0300), (0x0300, 0x0300), (0x0100, 0x01FF), (0, 0)]
)
def test_hello_incompatible_version(vmin: int, vmax: int) -> None:
    s = slave()
    events = s.receive(Hello(min_version=vmin, max_version=vmax), None, 0.0)
    expect_failure(s, events, "incompatible protocol version")
    assert s.hello is None


@pytest.mark.parametrize(
    ("init", "reason"),
    [
        (Init(5, Mode.ETHERNET, "", "c"), "unmatched interface id"),
        (Init(1, Mode.ETHERNET, "", "c"), "already connected"),
        (Init(0, Mode.IP, "", "c"), "mode mismatch"),
        (Init(0, Mode.PUNT_INJECT, "", "c"), "mode mismatch"),
        (Init(2, Mode.ETHERNET, "", "c"), "secret required"),
        (Init(2, Mode.ETHERNET, "wrong", "c"), "incorrect secret"),
        (Init(2, Mode.ETHERNET, "secret", "c"), "incorrect secret"),  # prefix is not enough
        (Init(2, Mode.ETHERNET, "secrets", "c"), "incorrect secret"),
    ],
)
def test_init_rejections(init: Init, reason: str) -> None:
    lookup = policy_lookup(
        {
            0: MasterPolicy(Mode.ETHERNET, "", SLOT),
            1: MasterPolicy(Mode.ETHERNET, "", "busy"),
            2: MasterPolicy(Mode.ETHERNET, "secret!", "guarded"),
        },
        connected=frozenset({1}),
    )
    m = master(lookup)
    expect_failure(m, m.receive(init, None, 0.0), reason)
    assert m.init is None


def test_init_rejection_reaches_the_slave_as_remote_reason() -> None:
    """Master refuses, its DISCONNECT goes to the slave, which stores it as the peer's."""
    m = master(policy_lookup({0: MasterPolicy(Mode.ETHERNET, "pw", SLOT)}))
    s = slave(Init(0, Mode.ETHERNET, "nope", "c"))
    s.receive(Hello(name="server-app"), None, 0.0)
    s.setup([(4096, 5)], [(AddRing(True, 0, 0, 0, 4), 6), (AddRing(False, 0, 0, 320, 4), 7)], "c")
    [(init, fd)] = s.messages_to_send()
    m.receive(init, fd, 0.0)
    [(disc, _)] = m.messages_to_send()
    assert disc == Disconnect("incorrect secret")
    assert s.receive(disc, None, 0.0) == [Disconnected("incorrect secret", by_peer=True)]
    assert s.remote_reason == "incorrect secret" and s.local_reason == ""
    assert s.phase is Phase.CLOSED and s.messages_to_send() == []  # no DISCONNECT back


@pytest.mark.parametrize(
    "msg",
    [
        AddRegion(0, 4096),
        AddRing(True, 0, 0, 0, 10),
        Connect("x"),
        Ack(),
        Hello(),
        Connected("x"),
    ],
)
def test_master_first_message_must_be_init(msg: wire.Message) -> None:
    m = master()
    fd = 9 if isinstance(msg, AddRegion | AddRing) else None
    events = m.receive(msg, fd, 0.0)
    expect_failure(m, events, f"unexpected message received ({msg.TYPE.name})")
    assert not m.owns_fd(9)


def test_master_refuses_second_init() -> None:
    m = master_after_init()
    init = Init(0, Mode.ETHERNET, "", "c")
    expect_failure(m, m.receive(init, None, 0.0), "unexpected message received (INIT)")


# --------------------------------------------------------------------------- rejections: setup


def test_missing_memory_region_fd() -> None:
    m = master_after_init()
    expect_failure(m, m.receive(AddRegion(0, 4096), None, 0.0), "missing memory region fd")


def test_missing_ring_interrupt_fd() -> None:
    m = master_after_regions()
    events = m.receive(AddRing(True, 0, 0, 0, 10), None, 0.0)
    expect_failure(m, events, "missing ring interrupt fd")


def test_too_many_regions() -> None:
    m = master_after_init()
    events = m.receive(AddRegion(wire.MAX_REGION_INDEX + 1, 4096), 10, 0.0)
    expect_failure(m, events, "too many regions")
    assert not m.owns_fd(10)


def test_region_index_at_the_limit_is_only_unexpected() -> None:
    m = master_after_init()
    events = m.receive(AddRegion(wire.MAX_REGION_INDEX, 4096), 10, 0.0)
    expect_failure(m, events, "unexpected region index")


@pytest.mark.parametrize("s2m", [True, False])
def test_too_many_rings(s2m: bool) -> None:
    m = master_after_regions()
    events = m.receive(AddRing(s2m, wire.MAX_RING_INDEX + 1, 0, 0, 10), 11, 0.0)
    expect_failure(m, events, "too many rings")
    assert not m.owns_fd(11)


@pytest.mark.parametrize("indices", [[1], [0, 0], [0, 2]])
def test_unexpected_region_index(indices: list[int]) -> None:
    m = master_after_init()
    for k, idx in enumerate(indices[:-1]):
        assert m.receive(AddRegion(idx, 4096), 20 + k, 0.0) == []
        assert m.messages_to_send() == [(Ack(), None)]
    events = m.receive(AddRegion(indices[-1], 4096), 29, 0.0)
    expect_failure(m, events, "unexpected region index")


@pytest.mark.parametrize(
    "rings",
    [
        [(True, 1)],
        [(False, 1)],
        [(True, 0), (True, 0)],
        [(True, 0), (False, 0), (True, 2)],
        [(False, 0), (False, 0)],
    ],
)
def test_unexpected_ring_index(rings: list[tuple[bool, int]]) -> None:
    m = master_after_regions()
    for k, (s2m, idx) in enumerate(rings[:-1]):
        assert m.receive(AddRing(s2m, idx, 0, 0, 10), 30 + k, 0.0) == []
        assert m.messages_to_send() == [(Ack(), None)]
    s2m, idx = rings[-1]
    expect_failure(m, m.receive(AddRing(s2m, idx, 0, 0, 10), 39, 0.0), "unexpected ring index")


def test_ring_indices_count_per_direction() -> None:
    """S2M and M2S indices are counted separately: S2M 0, M2S 0, S2M 1 is fine."""
    m = master_after_regions()
    for k, (s2m, idx) in enumerate([(True, 0), (False, 0), (True, 1), (False, 1)]):
        assert m.receive(AddRing(s2m, idx, 0, 0, 10), 40 + k, 0.0) == []
        assert m.messages_to_send() == [(Ack(), None)]


@pytest.mark.parametrize("size", [1, 64, 0xFFFF])
def test_private_headers_not_supported(size: int) -> None:
    m = master_after_regions()
    events = m.receive(AddRing(True, 0, 0, 0, 10, private_hdr_size=size), 12, 0.0)
    expect_failure(m, events, "private headers not supported")


def test_ring_in_unknown_region() -> None:
    m = master_after_regions(1)
    events = m.receive(AddRing(True, 0, 1, 0, 10), 12, 0.0)
    expect_failure(m, events, "ring refers to unknown region 1")


@pytest.mark.parametrize("log2", [0, wire.MAX_LOG2_RING_SIZE + 1])
def test_ring_size_out_of_range(log2: int) -> None:
    m = master_after_regions(1)
    events = m.receive(AddRing(True, 0, 0, 0, log2), 12, 0.0)
    expect_failure(m, events, f"invalid ring size 2^{log2}")


def test_region_of_size_zero() -> None:
    m = master_after_init()
    expect_failure(m, m.receive(AddRegion(0, 0), 13, 0.0), "region 0 has size 0")


@pytest.mark.parametrize(
    "rings", [[], [(True, 0)], [(False, 0)], [(True, 0), (True, 1)], [(False, 0), (False, 1)]]
)
def test_connect_without_rings_in_both_directions(rings: list[tuple[bool, int]]) -> None:
    m = master_after_regions()
    for k, (s2m, idx) in enumerate(rings):
        assert m.receive(AddRing(s2m, idx, 0, 0, 10), 50 + k, 0.0) == []
        assert m.messages_to_send() == [(Ack(), None)]
    events = m.receive(Connect("c"), None, 0.0)
    expect_failure(m, events, "connect without rings in both directions")


@pytest.mark.parametrize("msg", [Hello(), Ack(), Connected("x"), Init()])
def test_master_refuses_slave_only_messages(msg: wire.Message) -> None:
    m = master_after_regions()
    expect_failure(m, m.receive(msg, None, 0.0), f"unexpected message received ({msg.TYPE.name})")


def test_master_refuses_messages_while_connecting_and_connected() -> None:
    m = master_after_regions()
    m.receive(AddRing(True, 0, 0, 0, 10), 60, 0.0)
    m.receive(AddRing(False, 0, 0, 0, 10), 61, 0.0)
    m.messages_to_send()
    [req] = m.receive(Connect("c"), None, 0.0)
    assert isinstance(req, ConnectRequested) and m.phase is Phase.CONNECTING
    events = m.receive(AddRegion(1, 4096), 62, 0.0)
    expect_failure(m, events, "unexpected message received (ADD_REGION)")
    assert not m.owns_fd(62)
    with pytest.raises(RuntimeError):
        m.accept("late")

    m = master_after_regions()
    m.receive(AddRing(True, 0, 0, 0, 10), 60, 0.0)
    m.receive(AddRing(False, 0, 0, 0, 10), 61, 0.0)
    m.receive(Connect("c"), None, 0.0)
    m.accept("srv")
    m.messages_to_send()
    expect_failure(m, m.receive(Connect("c"), None, 0.0), "unexpected message received (CONNECT)")


def test_host_can_refuse_connect() -> None:
    """The host failed to map memory: ``fail`` sends its reason instead of CONNECTED."""
    m = master_after_regions()
    m.receive(AddRing(True, 0, 0, 0, 10), 60, 0.0)
    m.receive(AddRing(False, 0, 0, 0, 10), 61, 0.0)
    m.messages_to_send()
    m.receive(Connect("c"), None, 0.0)
    expect_failure(m, m.fail("wrong cookie on tx ring 0"), "wrong cookie on tx ring 0")
    # The fds stay listed so the host can close them.
    assert sorted(m.offered_fds()) == [60, 61, REGION_FDS[0]]


# --------------------------------------------------------------------------- rejections: slave


@pytest.mark.parametrize("msg", [Ack(), Connected("x"), Init(), AddRegion(0, 1), Connect("x")])
def test_slave_first_message_must_be_hello(msg: wire.Message) -> None:
    s = slave()
    expect_failure(s, s.receive(msg, None, 0.0), f"unexpected message received ({msg.TYPE.name})")


def test_slave_refuses_second_hello_and_early_connected() -> None:
    s = slave()
    s.receive(Hello(), None, 0.0)
    s.setup([(4096, 5)], [(AddRing(True, 0, 0, 0, 4), 6), (AddRing(False, 0, 0, 320, 4), 7)], "c")
    s.messages_to_send()
    expect_failure(s, s.receive(Hello(), None, 0.0), "unexpected message received (HELLO)")

    s = slave()
    s.receive(Hello(), None, 0.0)
    s.setup([(4096, 5)], [(AddRing(True, 0, 0, 0, 4), 6), (AddRing(False, 0, 0, 320, 4), 7)], "c")
    [(init, _)] = s.messages_to_send()
    assert isinstance(init, Init)
    # CONNECTED while INIT is still unanswered.
    expect_failure(
        s, s.receive(Connected("m"), None, 0.0), "unexpected message received (CONNECTED)"
    )


def test_slave_refuses_ack_before_setup_and_after_connect() -> None:
    s = slave()
    s.receive(Hello(), None, 0.0)
    expect_failure(s, s.receive(Ack(), None, 0.0), "unexpected message received (ACK)")

    s = slave()
    s.receive(Hello(), None, 0.0)
    s.setup([(4096, 5)], [(AddRing(True, 0, 0, 0, 4), 6), (AddRing(False, 0, 0, 320, 4), 7)], "c")
    kinds = []
    for _ in range(4):  # INIT, ADD_REGION, ADD_RING s2m, ADD_RING m2s
        [(msg, _)] = s.messages_to_send()
        kinds.append(msg.TYPE)
        assert s.receive(Ack(), None, 0.0) == []
    [(msg, _)] = s.messages_to_send()
    assert isinstance(msg, Connect)
    # CONNECT is answered by CONNECTED, never by ACK: nothing is left to send.
    expect_failure(s, s.receive(Ack(), None, 0.0), "unexpected message received (ACK)")


def test_slave_refuses_messages_once_connected() -> None:
    s = slave()
    s.receive(Hello(), None, 0.0)
    s.setup([(4096, 5)], [(AddRing(True, 0, 0, 0, 4), 6), (AddRing(False, 0, 0, 320, 4), 7)], "c")
    for _ in range(4):
        s.messages_to_send()
        s.receive(Ack(), None, 0.0)
    s.messages_to_send()
    assert s.receive(Connected("m"), None, 0.0) == [proto.Connected("m")]
    expect_failure(
        s, s.receive(Connected("m"), None, 0.0), "unexpected message received (CONNECTED)"
    )


# --------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "malformed message: 0 bytes, expected 128"),
        (b"\x03\x00" + b"\x00" * 10, "malformed message: 12 bytes, expected 128"),
        (wire.encode(Ack()) + b"\x00", "malformed message: 129 bytes, expected 128"),
        (struct.pack("<H", 9).ljust(128, b"\0"), "unknown message type (0x9)"),
        (struct.pack("<H", 0).ljust(128, b"\0"), "unknown message type (0x0)"),
        (struct.pack("<H", 0xABCD).ljust(128, b"\0"), "unknown message type (0xabcd)"),
        (struct.pack("<HHIB", 3, 0x0200, 0, 7).ljust(128, b"\0"), "unsupported interface mode 7"),
    ],
)
@pytest.mark.parametrize("side", ["master", "slave"])
def test_malformed_bytes(side: str, data: bytes, reason: str) -> None:
    ch = master() if side == "master" else slave()
    expect_failure(ch, ch.receive_bytes(data, None, 0.0), reason)


def test_malformed_bytes_mid_handshake() -> None:
    m = master_after_regions()
    expect_failure(
        m, m.receive_bytes(b"\x05\x00", 70, 0.0), "malformed message: 2 bytes, expected 128"
    )
    assert not m.owns_fd(70)


# --------------------------------------------------------------------------- DISCONNECT, EOF


@pytest.mark.parametrize("stage", ["start", "after_init", "connected"])
@pytest.mark.parametrize("side", ["master", "slave"])
def test_disconnect_from_peer_stores_remote_reason(side: str, stage: str) -> None:
    if side == "master":
        ch: proto.Channel = master()
        if stage != "start":
            ch.receive(Init(0, Mode.ETHERNET, "", "c"), None, 0.0)
        if stage == "connected":
            ch.receive(AddRegion(0, 4096), 1, 0.0)
            ch.receive(AddRing(True, 0, 0, 0, 4), 2, 0.0)
            ch.receive(AddRing(False, 0, 0, 320, 4), 3, 0.0)
            ch.receive(Connect("c"), None, 0.0)
            ch.accept("m")
    else:
        ch = slave()
        if stage != "start":
            ch.receive(Hello(), None, 0.0)
            ch.setup(
                [(4096, 5)],
                [(AddRing(True, 0, 0, 0, 4), 6), (AddRing(False, 0, 0, 320, 4), 7)],
                "c",
            )
        if stage == "connected":
            for _ in range(4):
                ch.receive(Ack(), None, 0.0)
            ch.receive(Connected("m"), None, 0.0)
    if stage == "connected":
        assert ch.phase is Phase.CONNECTED
    ch.messages_to_send()
    events = ch.receive(Disconnect("peer is going away", code=3), None, 1.0)
    assert events == [Disconnected("peer is going away", by_peer=True)]
    assert ch.remote_reason == "peer is going away" and ch.local_reason == ""
    assert ch.phase is Phase.CLOSED and ch.closed
    assert ch.messages_to_send() == []  # no DISCONNECT in answer
    assert ch.receive(Disconnect("second"), None, 1.0) == []
    assert ch.tick(1e9) == [] and ch.peer_closed() == [] and ch.fail("x") == []
    assert ch.messages_to_send() == [] and ch.remote_reason == "peer is going away"


def test_disconnect_bytes_from_peer() -> None:
    s = slave()
    frame = wire.encode(Disconnect("interface deleted"))
    assert s.receive_bytes(frame, None, 0.0) == [Disconnected("interface deleted", by_peer=True)]
    assert s.remote_reason == "interface deleted"


def test_peer_closed_without_reason() -> None:
    m = master_after_init()
    assert m.peer_closed() == [Disconnected("connection closed by peer", by_peer=True)]
    assert m.remote_reason == "connection closed by peer" and m.closed
    assert m.messages_to_send() == []
    assert m.peer_closed() == []


def test_local_fail_then_peer_close_keeps_local_reason() -> None:
    s = slave()
    s.fail("disconnected by user")
    assert s.messages_to_send() == [(Disconnect("disconnected by user"), None)]
    assert s.peer_closed() == [] and s.remote_reason == ""
    assert s.local_reason == "disconnected by user"


def test_fail_drops_queued_messages() -> None:
    """A refusal replaces whatever was queued: only DISCONNECT goes out."""
    m = master()  # HELLO was taken by master(); queue something again
    m.receive(Init(0, Mode.ETHERNET, "", "c"), None, 0.0)  # ACK queued
    expect_failure(m, m.fail("shutting down"), "shutting down")


# --------------------------------------------------------------------------- timeout


@pytest.mark.parametrize("side", ["master", "slave"])
def test_handshake_timeout(side: str) -> None:
    ch = master(now=100.0, timeout=2.5) if side == "master" else slave(now=100.0, timeout=2.5)
    assert ch.deadline == 102.5
    assert ch.tick(100.0) == [] and ch.tick(102.49) == []
    assert ch.phase is Phase.HANDSHAKE and ch.messages_to_send() == []
    expect_failure(ch, ch.tick(102.5), "handshake timeout")


def test_handshake_timeout_mid_handshake() -> None:
    m = master_after_regions()  # created at now=0 with the default 5 s
    assert m.tick(4.9) == []
    assert m.messages_to_send() == []
    expect_failure(m, m.tick(7.0), "handshake timeout")


def test_handshake_timeout_while_connecting() -> None:
    """A master waiting on its host to map memory is still bounded by the deadline."""
    m = master_after_regions()
    m.receive(AddRing(True, 0, 0, 0, 10), 60, 0.0)
    m.receive(AddRing(False, 0, 0, 0, 10), 61, 0.0)
    m.receive(Connect("c"), None, 1.0)
    m.messages_to_send()
    expect_failure(m, m.tick(5.0), "handshake timeout")


def test_no_handshake_timeout() -> None:
    for ch in (master(timeout=None), slave(timeout=None)):
        assert ch.deadline is None
        assert ch.tick(1e12) == [] and ch.phase is Phase.HANDSHAKE


def test_setup_before_hello_is_refused() -> None:
    s = slave()
    with pytest.raises(RuntimeError):
        s.setup([(4096, 5)], [], "c")
    assert s.messages_to_send() == [] and s.phase is Phase.HANDSHAKE


# --------------------------------------------------------------------------- refused_slot


@pytest.mark.parametrize(
    ("init", "refused"),
    [
        (Init(2, Mode.IP, "secret!", "c"), "guarded"),  # mode mismatch
        (Init(2, Mode.ETHERNET, "", "c"), "guarded"),  # secret required
        (Init(2, Mode.ETHERNET, "nope", "c"), "guarded"),  # incorrect secret
        (Init(9, Mode.ETHERNET, "", "c"), None),  # unmatched: no interface to blame
        (Init(0, Mode.ETHERNET, "", "c", version=0x0100), None),  # refused before the lookup
    ],
)
def test_refused_slot_names_the_interface_init_asked_for(init: Init, refused: object) -> None:
    """The host records a refusal's reason on the interface INIT named (if one matched)."""
    m = master(policy_lookup({2: MasterPolicy(Mode.ETHERNET, "secret!", "guarded")}))
    m.receive(init, None, 0.0)
    assert m.closed and m.refused_slot == refused


def test_refused_slot_stays_empty_when_accepted() -> None:
    m = master_after_init()
    assert m.refused_slot is None
