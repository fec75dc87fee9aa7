#!/usr/bin/env bash
# Sets everything up (idempotent), checks style, and runs the test suite.
#   ./scripts/test.sh            the full suite (under ~20 minutes on 2 cores)
#   ./scripts/test.sh --quick    all but the learning runs, multi-host and soak tests (under ~5 minutes)
# Other arguments go to pytest (e.g. -k cartpole, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
args=()
for arg in "$@"; do
  if [[ "$arg" == "--quick" ]]; then
    args+=(-m "not learning and not multihost and not soak")
  else
    args+=("$arg")
  fi
done
# --durations: the slowest tests in every CI log (the suite should stay under ~20 minutes on 2 cores).
exec .venv/bin/python -m pytest -q --durations=25 "${args[@]}" tests
