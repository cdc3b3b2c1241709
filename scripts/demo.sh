#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main demo: peers exchanging traffic with live counters.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/memif demo "$@"
