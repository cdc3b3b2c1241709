"""The ``memif`` command: one entry point, and a table of its subcommands.

:data:`SUBCOMMANDS` maps each subcommand to the tool module that implements it. That module
defines ``add_parser(subparsers)``, which registers the subcommand's options and sets ``func``
to a callable taking the parsed arguments and returning the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Subcommand name -> the module registering it, in the order ``memif --help`` lists them.
SUBCOMMANDS: dict[str, str] = {
    "gen": "memif.tools.gen.cli",
    "pcap-replay": "memif.tools.gen.replay",
    "monitor": "memif.tools.monitor.cli",
    "ping": "memif.tools.ping.cli",
    "responder": "memif.tools.ping.responder",
    "bench": "memif.tools.bench.cli",
    "bench-switch": "memif.tools.bench.switch_cli",
    "bench-latency": "memif.tools.bench.latency",
    "demo": "memif.tools.demo.cli",
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand of :data:`SUBCOMMANDS` registered."""
    parser = argparse.ArgumentParser(
        prog="memif", description="memif for Python: shared-memory packet interfaces"
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def _version() -> str:
    from . import __version__

    return f"memif {__version__}"


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
