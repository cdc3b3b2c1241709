#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main demo: memifd bridging two peers, a SPAN monitor,
# live counters and a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/memif demo "$@"
