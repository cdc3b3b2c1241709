"""memifd with one injected fault, for the containment tests.

Every peer input that used to make a port raise has been fixed, so the tests that
check the main loop's containment need an exception no real input can cause any
more.  This launcher runs the real memifd (``memif.daemon.main``) in its own
process, after wrapping ``MemifPort.receive`` so that it raises ``RuntimeError``
once the port named by ``MEMIFD_FAULT_PORT`` has taken packets from its peer.
Nothing in the package knows about it.

Run as ``python tests/faulty_memifd.py MEMIFD-ARGS...``.
"""

from __future__ import annotations

import os
import sys

from memif.daemon.main import main
from memif.vswitch.memif_port import MemifInput, MemifPort

FAULT_PORT = os.environ.get("MEMIFD_FAULT_PORT", "")
_receive = MemifPort.receive


def faulty_receive(self: MemifPort, node: MemifInput) -> int:
    """The real receive; then an injected failure when this is the faulty port."""
    n = _receive(self, node)
    if n and self.sw.name == FAULT_PORT:
        raise RuntimeError(f"injected fault on {FAULT_PORT} ({n} packets taken)")
    return n


MemifPort.receive = faulty_receive  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
