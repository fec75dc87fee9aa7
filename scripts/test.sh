#!/usr/bin/env bash
# Sets everything up (idempotent), checks style, and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# --durations: the slowest tests in every CI log (the suite should stay under ~20 minutes on 2 cores).
exec .venv/bin/python -m pytest -q --durations=25 "$@" tests
