"""The memif switch: a VPP-style vector packet graph with memif, tap and AF_PACKET ports.

:mod:`.switch` is the configuration facade, :mod:`.runtime` what the nodes work on,
:mod:`.graph` the nodes' framework (declared next nodes, dispatch, runtime figures,
trace), :mod:`.nodes_l2` and :mod:`.nodes_ip4` the nodes, :mod:`.port` the port
protocol with the generic device-input and interface-output nodes (device classes:
:mod:`.memif_port`, :mod:`.tap_port`, :mod:`.host_port`), :mod:`.mainloop` the loop.
"""

from .switch import Switch, SwitchError

__all__ = ["Switch", "SwitchError"]
