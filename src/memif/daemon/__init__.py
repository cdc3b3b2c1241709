"""memifd: the switch daemon and its CLI (VPP's ``vpp`` to ``memifctl``'s ``vppctl``).

Importing the package registers every command: configuration in :mod:`.commands`
(tap and host interfaces in :mod:`.commands_host`, loopbacks in :mod:`.commands_l3if`,
IPv4 routes and neighbours in :mod:`.commands_ip`), ``show`` in :mod:`.show`,
:mod:`.show_ip` and :mod:`.show_memif`, ``ping`` in :mod:`.ping`.
:mod:`.server` serves the CLI socket from the switch's main loop; :mod:`.main` is the
``memifd`` entry point.
"""

from . import (
    commands,
    commands_host,
    commands_ip,
    commands_l3if,
    ping,
    show,
    show_ip,
    show_memif,
    show_system,
    tnsr,
)
from .commands import REGISTRY, Context, Pending, Reply, execute

__all__ = [
    "REGISTRY",
    "Context",
    "Pending",
    "Reply",
    "commands",
    "commands_host",
    "commands_ip",
    "commands_l3if",
    "execute",
    "ping",
    "show",
    "show_ip",
    "show_memif",
    "show_system",
    "tnsr",
]
