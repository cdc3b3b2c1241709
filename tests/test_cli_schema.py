"""memif.ctl.schema: the CLI's wire schema that memifd and memifctl share.

Round trips and the exact bytes on the wire, every malformed line refused with one
line naming what is accepted, and a real memifd (the ``start`` fixture) answering
requests encoded here, its replies decoded here.  memifctl's :class:`Client` is checked
against a peer that breaks the protocol: a real unix socket served by a thread.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

import memif
from memif.ctl.main import Client, CtlError
from memif.ctl.schema import (
    MAX_DEPTH,
    MAX_REQUEST,
    Reply,
    Request,
    SchemaError,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
    next_line,
)


def read_reply(sock: socket.socket, buf: bytearray) -> Reply:
    """The next reply line from ``sock`` (buffered in ``buf``), decoded."""
    line = next_line(buf)
    while line is None:
        chunk = sock.recv(65536)
        assert chunk, "memifd closed the CLI connection"
        buf += chunk
        line = next_line(buf)
    return decode_reply(line)


def refusal(line: bytes) -> str:
    """The one-line message the schema refuses ``line`` with."""
    with pytest.raises(SchemaError) as info:
        decode_request(line)
    message = str(info.value)
    assert "\n" not in message and message.startswith("bad request: "), message
    return message


# --------------------------------------------------------------------------- bytes
def test_request_and_reply_bytes_are_the_wire_format() -> None:
    assert encode_request(Request("show version", True)) == (
        b'{"command": "show version", "json": true}\n'
    )
    assert encode_request(Request("sh int")) == b'{"command": "sh int", "json": false}\n'
    assert encode_reply(Reply(True, "up", {"n": [1, 2]})) == (
        b'{"ok": true, "output": "up", "data": {"n": [1, 2]}}\n'
    )
    assert encode_reply(Reply(False, "no such interface")) == (
        b'{"ok": false, "output": "no such interface", "data": null}\n'
    )


@pytest.mark.parametrize(
    "request_",
    [
        Request("show interface"),
        Request("show memif", json=True),
        Request('set int tag memif1/0 "a \\"quoted\\" [tag] {x}"'),
        Request("ping 10.0.0.1 repeat 3 \u00e9\u4e2d"),
        Request(""),
    ],
)
def test_requests_round_trip(request_: Request) -> None:
    line = encode_request(request_)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_request(line[:-1]) == request_


@pytest.mark.parametrize(
    "reply",
    [
        Reply(),
        Reply(False, "unknown command 'bogus'"),
        Reply(True, "line 1\nline 2", [{"name": "memif1/0", "rx": 12, "up": True}]),
        Reply(True, "\u00e9", {"nested": {"deep": [None, 1.5, "x"]}}),
    ],
)
def test_replies_round_trip(reply: Reply) -> None:
    line = encode_reply(reply)
    assert line.count(b"\n") == 1  # a newline in output is escaped: one line per reply
    assert decode_reply(line[:-1]) == reply


def test_next_line_frames_one_line_at_a_time() -> None:
    buf = bytearray(b'{"a": 1}\n{"b": 2}\n{"c"')
    assert next_line(buf) == b'{"a": 1}'
    assert next_line(buf) == b'{"b": 2}'
    assert next_line(buf) is None and buf == bytearray(b'{"c"')  # incomplete: kept
    buf += b": 3}\n"
    assert next_line(buf) == b'{"c": 3}' and buf == bytearray()


# --------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "junk", [b"\xff\xfe not json at all", b'{"command": 5}', b"[1, 2]", b"{", b"", b"null"]
)
def test_malformed_requests_are_refused_in_one_line(junk: bytes) -> None:
    assert refusal(junk) == (
        'bad request: expected one JSON object per line, {"command": "<cli command>", '
        '"json": false}'
    )


def test_limits_are_checked_before_parsing() -> None:
    inner = MAX_DEPTH - 1  # the object itself is depth 1
    at_limit = b'{"command": "x", "json": ' + b"[" * inner + b"1" + b"]" * inner + b"}"
    assert decode_request(at_limit) == Request("x", True)
    deep = b'{"command": "x", "json": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}"
    assert refusal(deep) == f"bad request: JSON nested {MAX_DEPTH + 1} deep (at most {MAX_DEPTH})"
    # brackets inside strings are not nesting
    assert decode_request(b'{"command": "[[[[[[[[[[[[[[[[", "json": false}').command == "[" * 16
    long = b'{"command": "' + b"x" * MAX_REQUEST + b'"}'
    assert refusal(long) == (
        f"bad request: longer than {MAX_REQUEST} bytes (a request is one line of JSON)"
    )


def test_json_flag_defaults_to_false_and_is_read_for_its_truth() -> None:
    assert decode_request(b'{"command": "sh ver"}') == Request("sh ver", False)
    assert decode_request(b'{"command": "sh ver", "json": 1}') == Request("sh ver", True)


@pytest.mark.parametrize(
    ("line", "got"),
    [
        (b"not json", "got a line that is not JSON"),
        (b"[true]", "got no boolean ok"),
        (b'{"output": "x"}', "got no boolean ok"),
        (b'{"ok": "yes"}', "got no boolean ok"),
        (b'{"ok": true, "output": 5}', "got output of type int"),
    ],
)
def test_malformed_replies_are_refused_in_one_line(line: bytes, got: str) -> None:
    with pytest.raises(SchemaError) as info:
        decode_reply(line)
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        f'bad reply: expected one JSON object per line, {{"ok": <bool>, "output": "<text>", '
        f"...}}; {got}"
    )


def test_a_reply_whose_data_is_not_json_is_refused() -> None:
    with pytest.raises(SchemaError, match=r"^reply not serialisable: .*set"):
        encode_reply(Reply(True, "", {1, 2}))


# --------------------------------------------------------------------------- a real memifd
def test_memifd_answers_requests_encoded_by_the_schema(start) -> None:
    d = start([])
    buf = bytearray()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(20)
        s.connect(d.cli_path)
        # pipelined: answered in order, data only where it was asked for
        s.sendall(
            encode_request(Request("show version", json=True))
            + encode_request(Request("show version"))
            + encode_request(Request("show bogus", json=True))
        )
        with_data = read_reply(s, buf)
        assert with_data.ok and with_data.data["version"] == memif.__version__
        assert with_data.output  # the text is there too
        without = read_reply(s, buf)
        assert without == Reply(True, with_data.output, None)
        failed = read_reply(s, buf)
        assert not failed.ok and "bogus" in failed.output and "\n" not in failed.output
        # memifd refuses what the schema refuses, with the schema's very words
        for bad in (b"[" * (MAX_DEPTH + 1), b'{"command": 5}'):
            s.sendall(bad + b"\n")
            assert read_reply(s, buf) == Reply(False, refusal(bad), None)
        s.sendall(encode_request(Request("show version")))
        assert read_reply(s, buf).ok  # the same connection goes on
        assert buf == bytearray()


# --------------------------------------------------------------------------- memifctl's Client
def serve_once(path: Path, answer: bytes) -> tuple[threading.Thread, list[bytes]]:
    """A peer on ``path`` that reads one request line and answers ``answer``."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    got: list[bytes] = []

    def serve() -> None:
        with listener, listener.accept()[0] as conn:
            buf = bytearray()
            while (line := next_line(buf)) is None:
                buf += conn.recv(65536)
            got.append(line)
            conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread, got


def test_client_sends_schema_requests_and_returns_the_reply_object(tmp_path: Path) -> None:
    thread, got = serve_once(tmp_path / "cli.sock", encode_reply(Reply(True, "hi", [1])))
    with Client(str(tmp_path / "cli.sock"), timeout=20) as c:
        assert c.request("show version", want_json=True) == {
            "ok": True,
            "output": "hi",
            "data": [1],
        }
    thread.join(20)
    assert got == [encode_request(Request("show version", True))[:-1]]


@pytest.mark.parametrize(
    ("answer", "why"),
    [(b"<html>\n", "got a line that is not JSON"), (b'{"ok": 1}\n', "got no boolean ok")],
)
def test_client_names_a_malformed_reply_in_one_line(
    tmp_path: Path, answer: bytes, why: str
) -> None:
    path = tmp_path / "cli.sock"
    thread, _ = serve_once(path, answer)
    with Client(str(path), timeout=20) as c, pytest.raises(CtlError) as info:
        c.request("show version")
    thread.join(20)
    message = str(info.value)
    assert message.startswith(f"memifd at {path}: bad reply: ") and message.endswith(why)
    assert "\n" not in message
