"""VPP-style command line parsing: keyword abbreviation, argument cursors, the command matcher.

Every keyword, in a command's path or among its arguments, may be shortened to any prefix
that only one candidate has (``sh int`` is ``show interface``; an exact word always wins).
Errors are :class:`CliError` with one line naming the word that was wrong and what is
accepted there.

Nothing here knows about the switch: a :class:`Registry` maps word paths to opaque
handlers, and :class:`Args` hands a handler its arguments one at a time, the way VPP's
``unformat`` loops do.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Args",
    "CliError",
    "Command",
    "Registry",
    "match_word",
    "tokenize",
]

#: A handler's return: whatever the caller of :meth:`Registry.lookup` makes of it.
Handler = Callable[..., Any]

_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


class CliError(Exception):
    """A command the user typed is wrong; the one-line text says how."""


def tokenize(line: str) -> list[str]:
    """Split a command line into words; double or single quotes group words with spaces."""
    try:
        return shlex.split(line, comments=False, posix=True)
    except ValueError as exc:  # unbalanced quotes
        raise CliError(f"cannot split command line: {exc}") from None


def match_word(word: str, choices: Iterable[str]) -> list[str]:
    """Choices ``word`` can mean: ``[word]`` on an exact match, else every prefix match."""
    choices = list(choices)
    if word in choices:
        return [word]
    return sorted(c for c in choices if c.startswith(word)) if word else []


def one_of(choices: Iterable[str]) -> str:
    """``a, b, c`` for messages."""
    return ", ".join(choices)


# ---------------------------------------------------------------------- arguments
@dataclass
class Args:
    """The remaining words of a command, consumed left to right by its handler.

    ``command`` is the full command name, used in error messages.
    """

    words: list[str]
    command: str
    pos: int = 0

    def __bool__(self) -> bool:
        return self.pos < len(self.words)

    def peek(self) -> str | None:
        """The next word without consuming it."""
        return self.words[self.pos] if self else None

    def rest(self) -> list[str]:
        """Every word not consumed yet (and consume them)."""
        out = self.words[self.pos :]
        self.pos = len(self.words)
        return out

    def take(self, what: str) -> str:
        """The next word, which must be there (``what`` names it in the error)."""
        if not self:
            raise CliError(f"missing {what} for '{self.command}'")
        word = self.words[self.pos]
        self.pos += 1
        return word

    def keyword(self, choices: Sequence[str], what: str = "argument") -> str:
        """The next word as one of ``choices`` (abbreviations allowed)."""
        if not self:
            raise CliError(f"missing {what} for '{self.command}': expected {one_of(choices)}")
        word = self.words[self.pos]
        found = match_word(word, choices)
        if len(found) > 1:
            raise CliError(
                f"ambiguous {what} '{word}' for '{self.command}': could be {one_of(found)}"
            )
        if not found:
            raise CliError(
                f"unknown {what} '{word}' for '{self.command}': expected {one_of(choices)}"
            )
        self.pos += 1
        return found[0]

    def try_keyword(self, choices: Sequence[str]) -> str | None:
        """Consume the next word if it is unambiguously one of ``choices``."""
        word = self.peek()
        if word is None:
            return None
        found = match_word(word, choices)
        if len(found) != 1:
            return None
        self.pos += 1
        return found[0]

    def end(self, expected: Sequence[str] = ()) -> None:
        """Fail if words are left over."""
        if self:
            word = self.words[self.pos]
            tail = f": expected {one_of(expected)}" if expected else ": expected nothing more"
            raise CliError(f"unknown argument '{word}' for '{self.command}'{tail}")

    # ------------------------------------------------------------------ typed values
    def _bad(self, word: str, what: str, expected: str) -> CliError:
        return CliError(f"bad {what} '{word}' for '{self.command}': expected {expected}")

    def integer(self, what: str, lo: int = 0, hi: int = 0xFFFFFFFF) -> int:
        """A decimal (or ``0x`` hex) integer in ``lo..hi``."""
        word = self.take(what)
        try:
            value = int(word, 0)
        except ValueError:
            raise self._bad(word, what, f"an integer {lo}..{hi}") from None
        if not lo <= value <= hi:
            raise self._bad(word, what, f"an integer {lo}..{hi}")
        return value

    def number(self, what: str, lo: float = 0.0, hi: float = 1e9) -> float:
        """A decimal number in ``lo..hi``."""
        word = self.take(what)
        try:
            value = float(word)
        except ValueError:
            raise self._bad(word, what, f"a number {lo:g}..{hi:g}") from None
        if not lo <= value <= hi:
            raise self._bad(word, what, f"a number {lo:g}..{hi:g}")
        return value

    def flag01(self, what: str) -> bool:
        """``0``/``1`` (also ``off``/``on``, ``disable``/``enable``) as VPP's bridge flags."""
        word = self.take(what)
        if word in ("1", "on", "enable"):
            return True
        if word in ("0", "off", "disable"):
            return False
        raise self._bad(word, what, "0 or 1")

    def ipv4(self, what: str = "IPv4 address") -> bytes:
        """``a.b.c.d`` as 4 bytes."""
        word = self.take(what)
        try:
            return ipaddress.IPv4Address(word).packed
        except ValueError:
            raise self._bad(word, what, "a.b.c.d") from None

    def ipv4_prefix(self, what: str = "address") -> tuple[bytes, int]:
        """``a.b.c.d/len`` as (4 bytes, prefix length); host bits are kept."""
        word = self.take(what)
        try:
            iface = ipaddress.IPv4Interface(word)
        except ValueError:
            raise self._bad(word, what, "a.b.c.d/len") from None
        if "/" not in word:
            raise self._bad(word, what, "a.b.c.d/len")
        return iface.ip.packed, iface.network.prefixlen

    def mac(self, what: str = "MAC address") -> str:
        """``aa:bb:cc:dd:ee:ff``."""
        word = self.take(what)
        if not _MAC.match(word):
            raise self._bad(word, what, "six hex pairs like 02:fe:00:00:00:01")
        return word.lower()

    def options(
        self,
        spec: Mapping[str, Callable[[Args, str], Any] | None],
        required: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Keyword options in any order: ``spec`` maps keyword -> value parser (None: a flag).

        Returns the keywords given with their values (True for flags); a keyword given twice
        keeps its last value, as VPP does.  A keyword of ``required`` left out is an error.
        """
        got: dict[str, Any] = {}
        while self:
            key = self.keyword(list(spec))
            parse = spec[key]
            got[key] = True if parse is None else parse(self, key)
        for key in required:
            if key not in got:
                raise CliError(f"missing {key} for '{self.command}'")
        return got


def integer(lo: int = 0, hi: int = 0xFFFFFFFF) -> Callable[[Args, str], int]:
    """An option value parser for :meth:`Args.options`: an integer in ``lo..hi``."""
    return lambda args, key: args.integer(key, lo, hi)


def word(args: Args, key: str) -> str:
    """An option value parser for :meth:`Args.options`: any one word."""
    return args.take(f"value of {key}")


# ---------------------------------------------------------------------- commands
@dataclass(frozen=True)
class Command:
    """One command: its path words, argument synopsis, help text and handler."""

    path: tuple[str, ...]
    usage: str
    help: str
    handler: Handler

    @property
    def name(self) -> str:
        """The path words joined: ``show interface``."""
        return " ".join(self.path)

    @property
    def synopsis(self) -> str:
        """Name and argument synopsis."""
        return f"{self.name} {self.usage}".rstrip()


@dataclass
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    command: Command | None = None


@dataclass(frozen=True)
class Match:
    """What :meth:`Registry.lookup` found: the command and its argument words."""

    command: Command
    args: list[str]


class Registry:
    """Commands by path; matching with VPP abbreviations."""

    def __init__(self) -> None:
        self._root = _Node()
        self.commands: dict[tuple[str, ...], Command] = {}

    def add(self, path: str, handler: Handler, usage: str = "", help: str = "") -> Command:
        """Register ``handler`` for the words of ``path``; each path exactly once."""
        words = tuple(path.split())
        if not words or words in self.commands:
            raise ValueError(f"command {path!r} is empty or registered twice")
        cmd = Command(words, usage, help, handler)
        node = self._root
        for w in words:
            node = node.children.setdefault(w, _Node())
        node.command = cmd
        self.commands[words] = cmd
        return cmd

    def command(self, path: str, usage: str = "", help: str = "") -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add`."""

        def register(fn: Handler) -> Handler:
            self.add(path, fn, usage, help)
            return fn

        return register

    def _walk(self, words: Sequence[str]) -> tuple[_Node, list[str], int]:
        """Follow path words as far as they match; returns (node, matched words, used)."""
        node, path = self._root, list[str]()
        for used, w in enumerate(words):
            if not node.children:
                return node, path, used
            found = match_word(w, node.children)
            if len(found) > 1:
                typed = " ".join([*path, w])
                options = one_of(" ".join([*path, c]) for c in found)
                raise CliError(f"ambiguous command '{typed}': could be {options}")
            if not found:
                if node.command is not None:
                    return node, path, used  # the rest are the command's arguments
                expected = one_of(sorted(node.children))
                if not path:
                    raise CliError(f"unknown command '{w}': expected {expected}")
                typed = " ".join([*path, w])
                raise CliError(f"unknown word '{w}' in command '{typed}': expected {expected}")
            path.append(found[0])
            node = node.children[found[0]]
        return node, path, len(words)

    def lookup(self, words: Sequence[str]) -> Match:
        """The command ``words`` name and its argument words, or a CliError."""
        if not words:
            raise CliError("empty command")
        node, path, used = self._walk(words)
        if node.command is None:
            expected = one_of(sorted(node.children))
            raise CliError(f"incomplete command '{' '.join(path)}': expected {expected}")
        return Match(node.command, list(words[used:]))

    def under(self, words: Sequence[str]) -> list[Command]:
        """Every command whose path starts with ``words`` (abbreviations allowed)."""
        node, _, used = self._walk(words)
        if used < len(words):  # words past a command: its own help
            return [node.command] if node.command else []
        out: list[Command] = []
        stack = [node]
        while stack:
            n = stack.pop()
            if n.command is not None:
                out.append(n.command)
            stack.extend(n.children.values())
        return sorted(out, key=lambda c: c.path)

    def help_text(self, words: Sequence[str] = ()) -> str:
        """One line per command under ``words``: synopsis, then help."""
        cmds = self.under(words)
        if not cmds:
            return "no such command"
        width = min(max(len(c.name) for c in cmds), 34)
        lines = []
        for c in cmds:
            lines.append(f"  {c.name:<{width}}  {c.help}".rstrip())
            if c.usage:
                lines.append(f"  {'':<{width}}    {c.synopsis}")
        return "\n".join(lines)

    def describe(self, words: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The commands under ``words`` (default: all) as ``help --json`` gives them."""
        return [{"path": list(c.path), "usage": c.usage, "help": c.help} for c in self.under(words)]
