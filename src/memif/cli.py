"""The ``memif`` command: one entry point, one module per subcommand.

Every module under ``memif.apps`` that defines ``add_parser(subparsers)`` is a
subcommand: it registers its options and sets ``func`` to a callable taking the
parsed arguments and returning the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import apps


def subcommand_modules() -> list[str]:
    """Names of the modules under ``memif.apps`` that provide a subcommand."""
    names = []
    for info in pkgutil.iter_modules(apps.__path__):
        module = importlib.import_module(f"memif.apps.{info.name}")
        if hasattr(module, "add_parser"):
            names.append(info.name)
    return sorted(names)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="memif", description="memif for Python: shared-memory packet interfaces"
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in subcommand_modules():
        importlib.import_module(f"memif.apps.{name}").add_parser(sub)
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
