#!/usr/bin/env bash
# Sets everything up (idempotent) and runs the main job on a small default.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python scripts/rpc_example.py "$@"
