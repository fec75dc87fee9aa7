#!/usr/bin/env bash
# Sets everything up (idempotent) and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@" tests
