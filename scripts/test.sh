#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite, testpmd interop included.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check src tests
exec .venv/bin/python -m pytest -q "$@"
