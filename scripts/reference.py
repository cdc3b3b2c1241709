"""Generate what is derived from the code's own tables, so it cannot drift:

* ``src/memif/ctl/commands.json``: memifd's command reference (every command's words, usage
  and help, from the daemon's registry), which memifctl prints offline (``--commands``);
* ``docs/man/memifd.8``, ``docs/man/memifctl.8``, ``docs/man/memif.1``: man pages from the
  argparse parsers (argparse-manpage, in the ``test`` extra), memifctl's with the command
  reference.

Run ``python scripts/reference.py`` after changing a command or an option;
tests/test_reference.py fails while the files differ from what this writes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS_JSON = ROOT / "src" / "memif" / "ctl" / "commands.json"
MAN_DIR = ROOT / "docs" / "man"


def command_reference() -> str:
    """The command reference as JSON text (sorted, one command per line)."""
    from memif.daemon import REGISTRY

    rows = sorted(REGISTRY.describe(), key=lambda c: c["path"])
    return "[\n" + ",\n".join(json.dumps(c, sort_keys=True) for c in rows) + "\n]\n"


def _page(parser: argparse.ArgumentParser, section: int, extra: str = "") -> str:
    from argparse_manpage.manpage import Manpage

    from memif import __version__

    text = str(Manpage(parser, format="single-commands-section",
                       _data={"version": __version__, "project_name": "memif for Python"}))
    text = re.sub(r'^\.TH (\S+) "1" "[^"]*"', rf'.TH \1 "{section}" ""', text, flags=re.M)
    # the epilogs are laid out by hand: keep their lines
    text = re.sub(r"^\.SH COMMENTS\n(.*?)(?=^\.SH |\Z)",
                  lambda m: ".SH NOTES\n.nf\n" + m.group(1).rstrip() + "\n.fi\n",
                  text, flags=re.M | re.S)  # fmt: skip
    return text.rstrip() + "\n" + extra


def _commands_section() -> str:
    from memif.daemon import REGISTRY

    out = [".SH COMMANDS", "What memifd accepts (also offline: memifctl --commands)."]
    for c in sorted(REGISTRY.describe(), key=lambda c: c["path"]):
        words = " ".join(c["path"]).replace("-", "\\-")
        usage = c["usage"].replace("\\", "\\\\").replace("-", "\\-")
        out += [".TP", f"\\fB{words}\\fR {usage}", c["help"].replace("-", "\\-")]
    return "\n".join(out) + "\n"


def man_pages() -> dict[str, str]:
    """File name -> roff text of each man page."""
    from memif.cli import build_parser as memif_parser
    from memif.ctl.main import build_parser as ctl_parser
    from memif.daemon.main import build_parser as daemon_parser

    return {
        "memifd.8": _page(daemon_parser(), 8),
        "memifctl.8": _page(ctl_parser(), 8, _commands_section()),
        "memif.1": _page(memif_parser(), 1),
    }


def main() -> int:
    sys.path.insert(0, str(ROOT / "src"))
    COMMANDS_JSON.write_text(command_reference())
    MAN_DIR.mkdir(exist_ok=True)
    for name, text in man_pages().items():
        (MAN_DIR / name).write_text(text)
    print(f"wrote {COMMANDS_JSON.relative_to(ROOT)} and {len(man_pages())} pages in docs/man/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
