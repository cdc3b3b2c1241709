"""The tools layer: the ``memif`` command's subcommands and the DPDK testpmd driver.

Each tool is a subpackage (``gen``, ``monitor``, ``ping``, ``bench``, ``demo``) whose ``cli``
module registers its subcommand; :data:`memif.cli.SUBCOMMANDS` lists them. Tools use the core
library (``memif``) and, for the switch benchmark and demo, memifd as a process, never the
switch's modules.
"""
