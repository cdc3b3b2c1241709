"""The CLI's command matcher and argument parsing, without a daemon.

* VPP abbreviations: every keyword, in the command path or among arguments, may be cut to
  a unique prefix; an exact word wins over longer ones it is a prefix of;
* ambiguity and unknown words give one line naming the word and what is accepted;
* :class:`Args` value parsers; memifctl's completer; the one error boundary
  (:func:`execute`) turns unexpected exceptions into ``internal error:`` replies;
* memifctl never imports the daemon or the switch.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ENV

from memif.ctl.main import Completer
from memif.daemon import REGISTRY, Context, Reply, execute
from memif.daemon.parse import Args, CliError, Registry, match_word, tokenize
from memif.vswitch.switch import Switch


def lookup(line: str) -> tuple[str, list[str]]:
    m = REGISTRY.lookup(line.split())
    return m.command.name, m.args


def error(line: str) -> str:
    with pytest.raises(CliError) as exc:
        REGISTRY.lookup(line.split())
    return str(exc.value)


# --------------------------------------------------------------------------- words
def test_match_word_exact_wins_then_unique_prefix() -> None:
    assert match_word("l2", ["l2", "l2fib"]) == ["l2"]
    assert match_word("l2f", ["l2", "l2fib"]) == ["l2fib"]
    assert match_word("s", ["set", "show", "clear"]) == ["set", "show"]
    assert match_word("x", ["set", "show"]) == []
    assert match_word("", ["set"]) == []


def test_tokenize_quotes_and_bad_quotes() -> None:
    assert tokenize('create interface memif secret "a b"') == [
        "create",
        "interface",
        "memif",
        "secret",
        "a b",
    ]
    with pytest.raises(CliError, match="cannot split command line"):
        tokenize('secret "open')


# --------------------------------------------------------------------------- commands
@pytest.mark.parametrize(
    ("line", "name", "args"),
    [
        ("sh int", "show interface", []),
        ("show interface memif1/0", "show interface", ["memif1/0"]),
        ("sh int addr", "show interface address", []),
        ("set int st memif0/0 up", "set interface state", ["memif0/0", "up"]),
        ("sh br 1 det", "show bridge-domain", ["1", "det"]),
        ("cre int memif id 1 master", "create interface memif", ["id", "1", "master"]),
        ("cre mem sock id 1 filename @x", "create memif socket", ["id", "1", "filename", "@x"]),
        ("sh memif memif1/0 desc", "show memif", ["memif1/0", "desc"]),
        ("sh memif s", "show memif socket", []),
        ("set int l2 br memif1/0 1", "set interface l2 bridge", ["memif1/0", "1"]),
        ("set int l3 memif1/0", "set interface l3", ["memif1/0"]),
        ("sh h", "show hardware-interfaces", []),
        ("sh l2", "show l2fib", []),
        ("cl run", "clear runtime", []),
        ("tr add memif-input 5", "trace add", ["memif-input", "5"]),
        ("ping 10.0.0.2 repeat 3", "ping", ["10.0.0.2", "repeat", "3"]),
    ],
)
def test_abbreviations(line: str, name: str, args: list[str]) -> None:
    assert lookup(line) == (name, args)


def test_ambiguous_unknown_incomplete_messages() -> None:
    assert error("s int") == "ambiguous command 's': could be set, show"
    assert error("set int s memif0/0") == (
        "ambiguous command 'set interface s': could be set interface span, set interface state"
    )
    assert error("set int l memif0/0") == (
        "ambiguous command 'set interface l': could be set interface l2, set interface l3"
    )
    msg = error("bogus")
    assert msg.startswith(
        "unknown command 'bogus': expected clear, create, delete, help, interface, ip, l2fib, no,"
    )
    msg = error("show nothing")
    assert msg.startswith(
        "unknown word 'nothing' in command 'show nothing': expected bridge-domain"
    )
    assert "memif" in msg and "version" in msg
    assert error("set interface") == (
        "incomplete command 'set interface': expected ip, l2, l3, mac, mtu, rx-mode, span, state"
    )
    with pytest.raises(CliError, match="empty command"):
        REGISTRY.lookup([])


def test_every_command_registered_once_with_help() -> None:
    names = {c.name for c in REGISTRY.commands.values()}
    for expected in (
        "create memif socket",
        "delete memif socket",
        "create interface memif",
        "delete interface memif",
        "set interface state",
        "set interface ip address",
        "set interface mac address",
        "create bridge-domain",
        "set interface l2 bridge",
        "set interface l3",
        "set interface l2 xconnect",
        "set interface span",
        "show memif",
        "show memif socket",
        "show interface",
        "show hardware-interfaces",
        "show bridge-domain",
        "show l2fib",
        "show errors",
        "show runtime",
        "show span",
        "show version",
        "clear interfaces",
        "clear errors",
        "clear runtime",
        "trace add",
        "show trace",
        "clear trace",
        "ping",
        "help",
    ):
        assert expected in names
    assert all(c.help for c in REGISTRY.commands.values())
    with pytest.raises(ValueError):
        REGISTRY.add("show version", lambda ctx, args: "")


def test_help_lists_commands_under_a_prefix() -> None:
    text = REGISTRY.help_text(["sh", "mem"])
    assert "show memif socket" in text and "show interface" not in text
    assert [c.name for c in REGISTRY.under(["cl"])] == [
        "clear errors",
        "clear interfaces",
        "clear runtime",
        "clear trace",
    ]


# --------------------------------------------------------------------------- arguments
def test_args_keywords_and_values() -> None:
    words = ["sl", "rx", "2", "ring-size", "512", "hw", "02:FE:00:00:00:01", "no"]
    args = Args(words, "create interface memif")
    opts = args.options(
        {
            "slave": None,
            "master": None,
            "rx-queues": lambda a, k: a.integer(k, 1, 255),
            "ring-size": lambda a, k: a.integer(k, 2, 32768),
            "hw-addr": lambda a, k: a.mac(),
            "no-zero-copy": None,
        }
    )
    assert opts == {
        "slave": True,
        "rx-queues": 2,
        "ring-size": 512,
        "hw-addr": "02:fe:00:00:00:01",
        "no-zero-copy": True,
    }


@pytest.mark.parametrize(
    ("words", "message"),
    [
        ("foo", "unknown argument 'foo' for 'cmd': expected id, socket-id, secret"),
        ("s 1", "ambiguous argument 's' for 'cmd': could be secret, socket-id"),
        ("id", "missing id for 'cmd'"),
        ("id x", "bad id 'x' for 'cmd': expected an integer 0..10"),
        ("id 11", "bad id '11' for 'cmd': expected an integer 0..10"),
    ],
)
def test_args_errors(words: str, message: str) -> None:
    args = Args(words.split(), "cmd")
    spec = {"id": lambda a, k: a.integer(k, 0, 10), "socket-id": None, "secret": None}
    with pytest.raises(CliError) as exc:
        args.options(spec)
    assert str(exc.value) == message


def test_args_typed_values() -> None:
    a = Args(["10.0.0.1/24", "10.0.0.2", "1", "off", "zz"], "c")
    assert a.ipv4_prefix() == (bytes([10, 0, 0, 1]), 24)
    assert a.ipv4() == bytes([10, 0, 0, 2])
    assert a.flag01("learn") is True and a.flag01("learn") is False
    with pytest.raises(CliError, match="bad MAC address 'zz' for 'c'"):
        a.mac()
    with pytest.raises(CliError, match="expected a.b.c.d/len"):
        Args(["10.0.0.1"], "c").ipv4_prefix()
    with pytest.raises(CliError, match="unknown argument 'extra' for 'c': expected nothing more"):
        Args(["extra"], "c").end()


# --------------------------------------------------------------------------- completion
def test_completer_follows_abbreviations() -> None:
    comp = Completer(REGISTRY.describe())
    assert comp.candidates("") == [
        "clear",
        "create",
        "delete",
        "help",
        "interface",
        "ip",
        "l2fib",
        "no",
        "ping",
        "set",
        "show",
        "trace",
    ]
    assert comp.candidates("sh") == ["show"]
    assert comp.candidates("sh ") == sorted(
        [
            "bridge-domain",
            "buffers",
            "errors",
            "hardware-interfaces",
            "interface",
            "ip",
            "l2fib",
            "logging",
            "memif",
            "node",
            "packet-sockets",
            "runtime",
            "span",
            "tap",
            "trace",
            "version",
            "vlib",
        ]
    )
    assert comp.candidates("sh vl") == ["vlib"] and comp.candidates("sh vlib ") == ["graph"]
    assert comp.candidates("set int s") == ["span", "state"]
    assert comp.candidates("s int") == []  # ambiguous so far: nothing to offer
    assert comp.candidates("show memif ") == ["socket"]


# --------------------------------------------------------------------------- the boundary
@pytest.fixture
def switch(tmp_path: Path):
    sw = Switch(runtime_dir=str(tmp_path), n_buffers=256, data_size=2048)
    yield sw
    sw.close()


def test_execute_turns_every_failure_into_a_reply(switch: Switch) -> None:
    toy = Registry()

    @toy.command("boom", help="raises")
    def _boom(ctx: Context, args: Args) -> str:
        raise KeyError("surprise\nwith newline")

    @toy.command("fine", help="works")
    def _fine(ctx: Context, args: Args) -> Reply:
        return Reply(output="yes", data={"n": 1})

    ctx = Context(switch, registry=toy)
    r = execute(ctx, "boom")
    assert not r.ok and r.output == "internal error: KeyError: 'surprise\\nwith newline'"
    assert execute(ctx, "fi") == Reply(True, "yes", {"n": 1})
    assert execute(ctx, "") == Reply()
    assert execute(ctx, "# a comment") == Reply()
    real = Context(switch)
    r = execute(real, "create interface memif socket-id 9 master")
    assert r == Reply(False, "socket id 9 does not exist: create memif socket first")
    r = execute(real, "set interface mac address memif0/0 02:00:00:00:00:01")
    assert not r.ok and r.output.startswith("unknown interface 'memif0/0'")
    assert execute(real, "show ?").ok and "show runtime" in execute(real, "show ?").output


def test_memifctl_imports_neither_daemon_nor_switch() -> None:
    code = (
        "import sys, memif.ctl.main; "
        "print([m for m in sys.modules if m.startswith(('memif.daemon', 'memif.vswitch'))])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "[]"


def test_show_vlib_graph_lists_each_nodes_next_and_previous(switch: Switch) -> None:
    ctx = Context(switch)
    switch.create_memif(id=1, role="master")
    r = execute(ctx, "show vlib graph")
    assert r.ok
    lines = r.output.splitlines()
    assert lines[0].split() == ["Name", "Next", "Previous"]
    # VPP's layout: 26-column Name, Next (with the next index), Previous
    assert "l2-fwd                    l2-output [0]             l2-learn" in lines
    assert "                          l2-flood [1]" in lines
    rows = {d["name"]: d for d in r.data}
    assert rows["l2-output"]["next"] == ["error-drop", "memif0/1-output"]
    assert rows["memif0/1-output"]["previous"] == ["l2-output"]
    assert rows["l2-learn"] == {
        "name": "l2-learn",
        "next": ["l2-fwd"],
        "previous": ["ethernet-input"],
    }
    one = execute(ctx, "show vlib graph l2-learn")
    assert one.data == [rows["l2-learn"]] and one.output.splitlines()[1].startswith("l2-learn ")
    bad = execute(ctx, "show vlib graph l2-lern")
    assert not bad.ok and bad.output.startswith("unknown node 'l2-lern'")
    assert "show vlib graph" in execute(ctx, "show ?").output


@pytest.mark.parametrize("minutes", ["nan", "inf", "-inf", "-1", "255.5", "1e999", "0x10", ""])
def test_mac_age_refuses_what_is_not_0_to_255_minutes(switch: Switch, minutes: str) -> None:
    """``mac-age`` takes fractions of a minute now: NaN, infinities and out-of-range
    values are refused with one line and leave the domain's ageing as it was."""
    ctx = Context(switch)
    assert execute(ctx, "create bridge-domain 1").ok
    assert execute(ctx, "set bridge-domain mac-age 1 0.5").ok
    r = execute(ctx, f"set bridge-domain mac-age 1 {minutes}")
    assert not r.ok and "\n" not in r.output and "mac-age" in r.output
    assert switch.tables.bds[1].mac_age == 0.5 and switch.tables.max_age == {1: 30.0}
