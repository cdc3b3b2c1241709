"""``python -m memif``: the ``memif`` command (:mod:`memif.cli`)."""

import sys

from .cli import main

sys.exit(main())
