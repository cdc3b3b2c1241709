#!/usr/bin/env bash
# Set up (scripts/setup.sh), lint, check the import contracts between the layers (core <- switch
# <- tools, in pyproject.toml), then run the whole test suite, testpmd interop included.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check src tests
.venv/bin/lint-imports --no-logo --no-cache
.venv/bin/mypy  # the core, strict (pyproject.toml [tool.mypy])
exec .venv/bin/python -m pytest -q "$@"
