"""memifd: the switch daemon and its CLI (VPP's ``vpp`` to ``memifctl``'s ``vppctl``).

Importing the package registers every command: configuration in :mod:`.commands`,
``show`` in :mod:`.show` and :mod:`.show_memif`, ``ping`` in :mod:`.ping`.
:mod:`.server` serves the CLI socket from the switch's main loop; :mod:`.main` is the
``memifd`` entry point.
"""

from . import commands, ping, show, show_memif
from .commands import REGISTRY, Context, Pending, Reply, execute

__all__ = [
    "REGISTRY",
    "Context",
    "Pending",
    "Reply",
    "commands",
    "execute",
    "ping",
    "show",
    "show_memif",
]
