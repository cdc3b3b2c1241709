"""The memif switch: a VPP-style vector packet graph with memif ports."""

from .switch import Switch, SwitchError

__all__ = ["Switch", "SwitchError"]
