"""Tests for the memif 2.0 wire codec (``memif.wire``).

Golden frames are written by hand from the field tables in
``memif-protocol.md`` sections 2, 3, 7 and 9 (never produced by calling
``encode``), so they check the codec against the spec rather than against itself.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memif.errors import ProtocolError
from memif.wire import (
    DESC_DTYPE,
    Ack,
    AddRegion,
    AddRing,
    Connect,
    Connected,
    Disconnect,
    Hello,
    Init,
    Mode,
    decode,
    encode,
    ring_bytes,
    ring_header_dtype,
)

MESSAGE_CLASSES = (Ack, Hello, Init, AddRegion, AddRing, Connect, Connected, Disconnect)


def frame(*hex_pieces: str) -> bytes:
    """Join hand-written hex pieces into one control message; it must be exactly 128 bytes."""
    data = bytes.fromhex("".join(hex_pieces))
    assert len(data) == 128, f"golden frame is {len(data)} bytes, expected 128"
    return data


# --------------------------------------------------------------------------- golden frames
# Offsets are absolute within the 128-byte message; all integers are little-endian.

GOLDEN_ACK = frame(
    "0100",  # @0    type = 1 (ACK), u16
    "00" * 126,  # @2..127 unused
)

GOLDEN_HELLO = frame(
    "0200",  # @0    type = 2 (HELLO), u16
    "6c69626d656d69662d617070",  # @2    name = "libmemif-app" (12 bytes of the 32-byte field)
    "00" * 20,  # @14   name NUL terminator + fill up to @34
    "0002",  # @34   min_version = 0x0200, u16
    "0002",  # @36   max_version = 0x0200, u16
    "ff00",  # @38   max_region = 255, u16
    "ff00",  # @40   max_m2s_ring = 255, u16
    "ff00",  # @42   max_s2m_ring = 255, u16
    "0e",  # @44   max_log2_ring_size = 14, u8
    "00" * 83,  # @45..127 unused
)
MSG_HELLO = Hello(
    name="libmemif-app",
    min_version=0x0200,
    max_version=0x0200,
    max_region=255,
    max_m2s_ring=255,
    max_s2m_ring=255,
    max_log2_ring_size=14,
)

GOLDEN_INIT = frame(
    "0300",  # @0    type = 3 (INIT), u16
    "0002",  # @2    version = 0x0200, u16
    "07000000",  # @4    interface id = 7, u32
    "01",  # @8    mode = 1 (ip), u8
    "733363726574",  # @9    secret = "s3cret" (6 bytes of the 24-byte field)
    "00" * 18,  # @15   secret NUL terminator + fill up to @33
    "617070",  # @33   name = "app" (3 bytes of the 32-byte field)
    "00" * 29,  # @36   name NUL terminator + fill up to @65
    "00" * 63,  # @65..127 unused
)
MSG_INIT = Init(id=7, mode=Mode.IP, secret="s3cret", name="app", version=0x0200)

GOLDEN_ADD_REGION = frame(
    "0400",  # @0    type = 4 (ADD_REGION), u16
    "0100",  # @2    region index = 1, u16
    "0000400000000000",  # @4    region size = 4194304 = 0x400000, u64 (unaligned)
    "00" * 116,  # @12..127 unused
)
MSG_ADD_REGION = AddRegion(index=1, size=4194304)

GOLDEN_ADD_RING_S2M = frame(
    "0500",  # @0    type = 5 (ADD_RING), u16
    "0100",  # @2    flags = 1 (MEMIF_MSG_ADD_RING_FLAG_S2M), u16
    "0000",  # @4    ring index = 0, u16
    "0000",  # @6    region index = 0, u16
    "80400000",  # @8    ring offset = 16512 = 0x4080, u32
    "0a",  # @12   log2 ring size = 10, u8
    "0000",  # @13   private_hdr_size = 0, u16
    "00" * 113,  # @15..127 unused
)
MSG_ADD_RING_S2M = AddRing(s2m=True, index=0, region=0, offset=16512, log2_size=10)

GOLDEN_ADD_RING_M2S = frame(
    "0500",  # @0    type = 5 (ADD_RING), u16
    "0000",  # @2    flags = 0 (M2S ring), u16
    "0300",  # @4    ring index = 3, u16
    "0200",  # @6    region index = 2, u16
    "78563412",  # @8    ring offset = 0x12345678, u32
    "0e",  # @12   log2 ring size = 14, u8
    "0000",  # @13   private_hdr_size = 0, u16
    "00" * 113,  # @15..127 unused
)
MSG_ADD_RING_M2S = AddRing(s2m=False, index=3, region=2, offset=0x12345678, log2_size=14)

GOLDEN_CONNECT = frame(
    "0600",  # @0    type = 6 (CONNECT), u16
    "6d656d696630",  # @2    if_name = "memif0" (6 bytes of the 32-byte field)
    "00" * 26,  # @8    if_name NUL terminator + fill up to @34
    "00" * 94,  # @34..127 unused
)
MSG_CONNECT = Connect(if_name="memif0")

GOLDEN_CONNECTED = frame(
    "0700",  # @0    type = 7 (CONNECTED), u16
    "6d656d6966302f30",  # @2    if_name = "memif0/0" (8 bytes of the 32-byte field)
    "00" * 24,  # @10   if_name NUL terminator + fill up to @34
    "00" * 94,  # @34..127 unused
)
MSG_CONNECTED = Connected(if_name="memif0/0")

GOLDEN_DISCONNECT = frame(
    "0800",  # @0    type = 8 (DISCONNECT), u16
    "00000000",  # @2    code = 0, u32
    "756e737570706f72746564",  # @6    reason = "unsupported" (11 bytes)
    "20",  # @17   " "
    "696e74657266616365",  # @18   "interface" (9 bytes)
    "20",  # @27   " "
    "6d6f6465",  # @28   "mode" (4 bytes): reason is 26 bytes of the 96-byte field
    "00" * 70,  # @32   reason NUL terminator + fill up to @102
    "00" * 26,  # @102..127 unused
)
MSG_DISCONNECT = Disconnect(reason="unsupported interface mode", code=0)

GOLDEN_DISCONNECT_CODE = frame(
    "0800",  # @0    type = 8 (DISCONNECT), u16
    "efbeadde",  # @2    code = 0xdeadbeef, u32
    "627965",  # @6    reason = "bye" (3 bytes of the 96-byte field)
    "00" * 93,  # @9    reason NUL terminator + fill up to @102
    "00" * 26,  # @102..127 unused
)
MSG_DISCONNECT_CODE = Disconnect(reason="bye", code=0xDEADBEEF)

# VPP's HELLO: same layout, but it advertises index limits of 256.
GOLDEN_VPP_HELLO = frame(
    "0200",  # @0    type = 2 (HELLO), u16
    "5650502032332e3130",  # @2    name = "VPP 23.10" (9 bytes of the 32-byte field)
    "00" * 23,  # @11   name NUL terminator + fill up to @34
    "0002",  # @34   min_version = 0x0200
    "0002",  # @36   max_version = 0x0200
    "0001",  # @38   max_region = 256
    "0001",  # @40   max_m2s_ring = 256
    "0001",  # @42   max_s2m_ring = 256
    "0e",  # @44   max_log2_ring_size = 14
    "00" * 83,  # @45..127 unused
)
MSG_VPP_HELLO = Hello("VPP 23.10", 0x0200, 0x0200, 256, 256, 256, 14)

# (message, golden bytes, end of the type's payload: first byte that is "don't care")
GOLDEN = [
    pytest.param(Ack(), GOLDEN_ACK, 2, id="ack"),
    pytest.param(MSG_HELLO, GOLDEN_HELLO, 45, id="hello"),
    pytest.param(MSG_INIT, GOLDEN_INIT, 65, id="init"),
    pytest.param(MSG_ADD_REGION, GOLDEN_ADD_REGION, 12, id="add_region"),
    pytest.param(MSG_ADD_RING_S2M, GOLDEN_ADD_RING_S2M, 15, id="add_ring_s2m"),
    pytest.param(MSG_ADD_RING_M2S, GOLDEN_ADD_RING_M2S, 15, id="add_ring_m2s"),
    pytest.param(MSG_CONNECT, GOLDEN_CONNECT, 34, id="connect"),
    pytest.param(MSG_CONNECTED, GOLDEN_CONNECTED, 34, id="connected"),
    pytest.param(MSG_DISCONNECT, GOLDEN_DISCONNECT, 102, id="disconnect"),
    pytest.param(MSG_DISCONNECT_CODE, GOLDEN_DISCONNECT_CODE, 102, id="disconnect_code"),
]

# End of each type's payload, from the spec (§3: payload sizes 0/43/63/10/13/32/32/100).
PAYLOAD_END = {
    Ack: 2,
    Hello: 45,
    Init: 65,
    AddRegion: 12,
    AddRing: 15,
    Connect: 34,
    Connected: 34,
    Disconnect: 102,
}


@pytest.mark.parametrize(("msg", "golden", "end"), GOLDEN)
def test_encode_matches_golden(msg, golden, end):
    assert encode(msg) == golden


@pytest.mark.parametrize(("msg", "golden", "end"), GOLDEN)
def test_decode_golden(msg, golden, end):
    assert decode(golden) == msg
    assert type(decode(golden)) is type(msg)


@pytest.mark.parametrize(("msg", "golden", "end"), GOLDEN)
def test_decode_accepts_bytearray_and_memoryview(msg, golden, end):
    assert decode(bytearray(golden)) == msg
    assert decode(memoryview(golden)) == msg


def test_message_type_numbers():
    assert [cls.TYPE for cls in MESSAGE_CLASSES] == [1, 2, 3, 4, 5, 6, 7, 8]


# --------------------------------------------------------------------------- padding is ignored


@pytest.mark.parametrize(("msg", "golden", "end"), GOLDEN)
def test_decode_ignores_junk_tail(msg, golden, end):
    """libmemif leaves heap garbage after the payload; only the type's fields are read."""
    junk = golden[:end] + b"\xaa" * (128 - end)
    assert len(junk) == 128
    assert decode(junk) == msg


def test_decode_ignores_junk_after_string_terminators():
    # HELLO name "libmemif-app" ends at @14 with a NUL; @15..33 are junk.
    data = bytearray(GOLDEN_HELLO)
    data[15:34] = b"\xaa" * 19
    data[45:] = b"\xaa" * 83
    assert decode(bytes(data)) == MSG_HELLO
    # INIT secret NUL at @15 (junk @16..32), name NUL at @36 (junk @37..64).
    data = bytearray(GOLDEN_INIT)
    data[16:33] = b"\xaa" * 17
    data[37:65] = b"\xaa" * 28
    assert decode(bytes(data)) == MSG_INIT
    # DISCONNECT reason NUL at @32; junk @33..127.
    data = bytearray(GOLDEN_DISCONNECT)
    data[33:] = b"\xaa" * 95
    assert decode(bytes(data)) == MSG_DISCONNECT


def test_decode_libmemif_capture_style_hello_leftovers_in_ack():
    """The capture shows HELLO leftovers inside ACK and CONNECTED (spec §14.8)."""
    ack = GOLDEN_ACK[:2] + GOLDEN_HELLO[2:]
    assert decode(ack) == Ack()
    connected = GOLDEN_CONNECTED[:34] + GOLDEN_HELLO[34:]
    assert decode(connected) == MSG_CONNECTED


def test_decode_add_ring_ignores_undefined_flag_bits():
    data = bytearray(GOLDEN_ADD_RING_M2S)
    data[2:4] = b"\xfe\xff"  # every bit except S2M
    assert decode(bytes(data)) == MSG_ADD_RING_M2S
    data[2:4] = b"\xff\xff"
    assert decode(bytes(data)) == dataclasses.replace(MSG_ADD_RING_M2S, s2m=True)


def test_decode_vpp_hello_with_256_limits():
    msg = decode(GOLDEN_VPP_HELLO)
    assert msg == MSG_VPP_HELLO
    assert (msg.max_region, msg.max_m2s_ring, msg.max_s2m_ring) == (256, 256, 256)
    assert encode(MSG_VPP_HELLO) == GOLDEN_VPP_HELLO
    junk = GOLDEN_VPP_HELLO[:45] + b"\xaa" * 83
    assert decode(junk) == MSG_VPP_HELLO


def test_decode_name_filling_whole_field_without_nul():
    data = bytearray(GOLDEN_CONNECT)
    data[2:34] = b"x" * 32
    # read like libmemif's strlcpy: at most 31 characters, so it always encodes again
    msg = decode(bytes(data))
    assert msg == Connect(if_name="x" * 31)
    assert decode(encode(msg)) == msg


def test_decoded_invalid_utf8_always_encodes_again():
    data = bytearray(GOLDEN_CONNECT)
    data[2:34] = b"\xff" * 32  # each bad byte becomes U+FFFD (3 bytes)
    msg = decode(bytes(data))
    assert len(msg.if_name.encode()) <= 31
    assert decode(encode(msg)) == msg


def test_decode_invalid_utf8_does_not_raise():
    data = bytearray(GOLDEN_CONNECT)
    data[2:5] = b"\xff\xfe\xc3"
    msg = decode(bytes(data))
    assert isinstance(msg, Connect)


# --------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize("length", [0, 1, 2, 127, 129, 256])
def test_wrong_length_raises_protocol_error(length):
    data = (GOLDEN_ACK * 3)[:length]
    with pytest.raises(ProtocolError):
        decode(data)


@pytest.mark.parametrize("mtype", [0, 9, 0x100, 0x0101, 0xFFFF])
def test_unknown_type_raises_protocol_error(mtype):
    data = mtype.to_bytes(2, "little") + bytes(126)
    with pytest.raises(ProtocolError, match="unknown message type"):
        decode(data)


def test_protocol_error_is_memif_proto():
    with pytest.raises(ProtocolError) as info:
        decode(b"\x09\x00" + bytes(126))
    assert info.value.code == "MEMIF_ERR_PROTO"
    assert "unknown message type" in info.value.message


@pytest.mark.parametrize("mode", [3, 4, 0x7F, 0xFF])
def test_init_with_bad_mode_raises_protocol_error(mode):
    data = bytearray(GOLDEN_INIT)
    data[8] = mode  # @8 mode, u8
    with pytest.raises(ProtocolError):
        decode(bytes(data))


@pytest.mark.parametrize(
    ("byte", "mode"), [(0, Mode.ETHERNET), (1, Mode.IP), (2, Mode.PUNT_INJECT)]
)
def test_init_modes_decode(byte, mode):
    data = bytearray(GOLDEN_INIT)
    data[8] = byte
    msg = decode(bytes(data))
    assert msg.mode is mode
    assert msg == dataclasses.replace(MSG_INIT, mode=mode)


def _decode_or_protocol_error(data: bytes) -> None:
    try:
        msg = decode(data)
    except ProtocolError:
        return
    except Exception as exc:  # anything but ProtocolError is a bug
        pytest.fail(f"decode raised {type(exc).__name__}: {exc!r} for {data!r}")
    assert isinstance(msg, MESSAGE_CLASSES)
    assert len(data) == 128
    assert int.from_bytes(data[:2], "little") == msg.TYPE


# The type field is biased towards the interesting values: a uniformly random u16 would
# almost never be one of the eight known types.
_type_field = st.one_of(st.integers(0, 10), st.integers(0, 0xFFFF)).map(
    lambda t: t.to_bytes(2, "little")
)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None)
@given(head=_type_field, body=st.binary(min_size=126, max_size=126))
def test_random_128_bytes_decode_or_protocol_error(head, body):
    _decode_or_protocol_error(head + body)


@settings(max_examples=2000, deadline=None)
@given(data=st.binary(min_size=128, max_size=128))
def test_random_128_raw_bytes_decode_or_protocol_error(data):
    _decode_or_protocol_error(data)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None)
@given(data=st.binary(min_size=0, max_size=300))
def test_random_length_bytes_decode_or_protocol_error(data):
    _decode_or_protocol_error(data)
    if len(data) != 128:
        with pytest.raises(ProtocolError):
            decode(data)


# --------------------------------------------------------------------------- round trip


def _fit(text: str, size: int) -> str:
    """Trim ``text`` (by whole characters) so its UTF-8 form fits in ``size - 1`` bytes."""
    while len(text.encode()) > size - 1:
        text = text[:-1]
    return text


_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")


def _field_text(size: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=0x7F), max_size=size - 1),
        st.text(alphabet=_chars, max_size=size - 1).map(lambda s: _fit(s, size)),
    )


def _uint(bits: int) -> st.SearchStrategy[int]:
    return st.integers(0, (1 << bits) - 1)


MESSAGES = st.one_of(
    st.just(Ack()),
    st.builds(
        Hello,
        name=_field_text(32),
        min_version=_uint(16),
        max_version=_uint(16),
        max_region=_uint(16),
        max_m2s_ring=_uint(16),
        max_s2m_ring=_uint(16),
        max_log2_ring_size=_uint(8),
    ),
    st.builds(
        Init,
        id=_uint(32),
        mode=st.sampled_from(Mode),
        secret=_field_text(24),
        name=_field_text(32),
        version=_uint(16),
    ),
    st.builds(AddRegion, index=_uint(16), size=_uint(64)),
    st.builds(
        AddRing,
        s2m=st.booleans(),
        index=_uint(16),
        region=_uint(16),
        offset=_uint(32),
        log2_size=_uint(8),
        private_hdr_size=_uint(16),
    ),
    st.builds(Connect, if_name=_field_text(32)),
    st.builds(Connected, if_name=_field_text(32)),
    st.builds(Disconnect, reason=_field_text(96), code=_uint(32)),
)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msg=MESSAGES)
def test_round_trip(msg):
    data = encode(msg)
    assert isinstance(data, bytes)
    assert len(data) == 128
    assert int.from_bytes(data[:2], "little") == msg.TYPE
    assert data[PAYLOAD_END[type(msg)] :] == bytes(128 - PAYLOAD_END[type(msg)])
    assert decode(data) == msg


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msg=MESSAGES, junk=st.binary(min_size=128, max_size=128))
def test_round_trip_with_junk_tail(msg, junk):
    end = PAYLOAD_END[type(msg)]
    data = encode(msg)[:end] + junk[end:]
    assert decode(data) == msg


@pytest.mark.parametrize("cls", MESSAGE_CLASSES)
def test_all_types_covered_by_round_trip_strategy(cls):
    assert cls in PAYLOAD_END


@pytest.mark.parametrize(
    ("make", "size"),
    [
        (lambda s: Hello(name=s), 32),
        (lambda s: Init(secret=s), 24),
        (lambda s: Init(name=s), 32),
        (lambda s: Connect(if_name=s), 32),
        (lambda s: Connected(if_name=s), 32),
    ],
    ids=["hello.name", "init.secret", "init.name", "connect.if_name", "connected.if_name"],
)
def test_string_field_limits(make, size):
    # size - 1 bytes (strlcpy: room for the NUL) fits and round-trips ...
    longest = "a" * (size - 1)
    assert decode(encode(make(longest))) == make(longest)
    # ... one more byte does not.
    with pytest.raises(ValueError):
        encode(make("a" * size))
    # The limit is in UTF-8 bytes, not characters: "é" is 2 bytes.
    fits = "é" * ((size - 1) // 2)
    assert decode(encode(make(fits))) == make(fits)
    with pytest.raises(ValueError):
        encode(make("é" * (size // 2 + 1)))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_too_long_strings_raise_value_error(data):
    make, size = data.draw(
        st.sampled_from(
            [
                (lambda s: Hello(name=s), 32),
                (lambda s: Init(secret=s), 24),
                (lambda s: Init(name=s), 32),
                (lambda s: Connect(if_name=s), 32),
                (lambda s: Connected(if_name=s), 32),
            ]
        )
    )
    text = data.draw(st.text(alphabet=_chars, min_size=size, max_size=size * 3))
    assert len(text.encode()) >= size
    with pytest.raises(ValueError):
        encode(make(text))


def test_disconnect_reason_is_truncated_like_strlcpy():
    """DISCONNECT reasons are not refused: they are cut to 95 bytes + NUL."""
    reason = "r" * 200
    data = encode(Disconnect(reason=reason))
    assert len(data) == 128
    assert data[6:101] == b"r" * 95
    assert data[101] == 0  # @101: NUL terminator, last byte of the 96-byte field
    assert decode(data) == Disconnect(reason="r" * 95)


def test_disconnect_reason_truncation_keeps_valid_utf8():
    reason = "é" * 60  # 120 UTF-8 bytes; byte 95 falls inside the 48th "é"
    data = encode(Disconnect(reason=reason))
    data[6:102].split(b"\0", 1)[0].decode("utf-8")  # strict: must be valid UTF-8
    assert decode(data) == Disconnect(reason="é" * 47)


_BASE = {
    Hello: Hello(),
    Init: Init(),
    AddRegion: AddRegion(index=0, size=0),
    AddRing: AddRing(s2m=False, index=0, region=0, offset=0, log2_size=0),
    Disconnect: Disconnect(),
}

INT_FIELDS = [
    (Hello, "min_version", 16),
    (Hello, "max_version", 16),
    (Hello, "max_region", 16),
    (Hello, "max_m2s_ring", 16),
    (Hello, "max_s2m_ring", 16),
    (Hello, "max_log2_ring_size", 8),
    (Init, "id", 32),
    (Init, "version", 16),
    (AddRegion, "index", 16),
    (AddRegion, "size", 64),
    (AddRing, "index", 16),
    (AddRing, "region", 16),
    (AddRing, "offset", 32),
    (AddRing, "log2_size", 8),
    (AddRing, "private_hdr_size", 16),
    (Disconnect, "code", 32),
]


@pytest.mark.parametrize(
    ("cls", "field", "bits"), INT_FIELDS, ids=[f"{c.__name__}.{f}" for c, f, _ in INT_FIELDS]
)
def test_integer_field_range(cls, field, bits):
    base = _BASE[cls]
    top = dataclasses.replace(base, **{field: (1 << bits) - 1})
    assert decode(encode(top)) == top
    for bad in (-1, 1 << bits, (1 << bits) + 12345, -(1 << 70)):
        with pytest.raises(ValueError):
            encode(dataclasses.replace(base, **{field: bad}))


def test_encode_rejects_non_messages():
    with pytest.raises(TypeError):
        encode("not a message")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- shared-memory layout


def _offset(dtype: np.dtype, name: str) -> int:
    return dtype.fields[name][1]


def test_ring_header_dtype_64():
    dt = ring_header_dtype(64)
    assert dt.itemsize == 128
    assert _offset(dt, "cookie") == 0
    assert _offset(dt, "flags") == 4
    assert _offset(dt, "head") == 6
    assert _offset(dt, "tail") == 64
    assert dt.fields["cookie"][0] == np.dtype("<u4")
    for name in ("flags", "head", "tail"):
        assert dt.fields[name][0] == np.dtype("<u2")
    assert ring_header_dtype() == dt  # 64 is the default


def test_ring_header_dtype_128():
    dt = ring_header_dtype(128)
    assert dt.itemsize == 256
    assert _offset(dt, "cookie") == 0
    assert _offset(dt, "flags") == 4
    assert _offset(dt, "head") == 6
    assert _offset(dt, "tail") == 128


def test_ring_header_bytes_in_memory():
    """Write a header through the dtype and check the raw bytes against §9."""
    buf = np.zeros(1, dtype=ring_header_dtype(64))
    buf["cookie"] = 0x3E31F20
    buf["flags"] = 1
    buf["head"] = 0x1234
    buf["tail"] = 0xABCD
    raw = buf.tobytes()
    assert raw[0:4] == bytes.fromhex("201fe303")  # @0 cookie 0x3E31F20, u32 LE
    assert raw[4:6] == bytes.fromhex("0100")  # @4 flags = MASK_INT
    assert raw[6:8] == bytes.fromhex("3412")  # @6 head
    assert raw[8:64] == bytes(56)  # padding
    assert raw[64:66] == bytes.fromhex("cdab")  # @64 tail
    assert raw[66:128] == bytes(62)  # padding


def test_desc_dtype():
    assert DESC_DTYPE.itemsize == 16
    assert _offset(DESC_DTYPE, "flags") == 0
    assert _offset(DESC_DTYPE, "region") == 2
    assert _offset(DESC_DTYPE, "length") == 4
    assert _offset(DESC_DTYPE, "offset") == 8
    assert _offset(DESC_DTYPE, "metadata") == 12
    desc = np.zeros(1, dtype=DESC_DTYPE)
    desc["flags"], desc["region"], desc["length"] = 1, 2, 0x800
    desc["offset"], desc["metadata"] = 0x00100000, 0
    assert desc.tobytes() == bytes.fromhex(
        "0100"  # @0  flags = NEXT
        "0200"  # @2  region = 2
        "00080000"  # @4  length = 2048
        "00001000"  # @8  offset = 0x100000
        "00000000"  # @12 metadata
    )


def test_ring_bytes_worked_example():
    assert ring_bytes(10) == 16512  # §9 worked example: 128 + 16 * 1024
    assert ring_bytes(10, 64) == 16512
    assert ring_bytes(10, 128) == 256 + 16 * 1024
    assert ring_bytes(0) == 128 + 16
    assert ring_bytes(14) == 128 + 16 * (1 << 14)
    assert ring_bytes(10) % 64 == 0


@pytest.mark.parametrize("cacheline", [0, 8, 48, 65, 96, 100, -64])
def test_bad_cacheline_raises(cacheline):
    with pytest.raises(ValueError):
        ring_header_dtype(cacheline)
    with pytest.raises(ValueError):
        ring_bytes(10, cacheline)


# --------------------------------------------------------------------------- Mode.parse


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ethernet", Mode.ETHERNET),
        ("eth", Mode.ETHERNET),
        ("Ethernet", Mode.ETHERNET),
        ("ip", Mode.IP),
        (" IP ", Mode.IP),
        ("punt-inject", Mode.PUNT_INJECT),
        ("punt_inject", Mode.PUNT_INJECT),
        ("punt/inject", Mode.PUNT_INJECT),
        (0, Mode.ETHERNET),
        (1, Mode.IP),
        (2, Mode.PUNT_INJECT),
        (Mode.IP, Mode.IP),
    ],
)
def test_mode_parse_accepts(value, expected):
    assert Mode.parse(value) is expected


def test_mode_parse_rejects_unknown_name():
    with pytest.raises(ValueError) as info:
        Mode.parse("foo")
    text = str(info.value)
    assert "foo" in text
    for accepted in ("ethernet", "ip", "punt-inject"):
        assert accepted in text


@pytest.mark.parametrize("value", [3, -1, 255])
def test_mode_parse_rejects_unknown_number(value):
    with pytest.raises(ValueError):
        Mode.parse(value)
