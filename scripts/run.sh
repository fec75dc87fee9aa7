#!/usr/bin/env bash
# Sets everything up (idempotent) and runs the main job on a small default:
# CartPole with V-trace, one learner + 2 actor processes, ~1 minute on 2 cores.
# Extra arguments go to seed.train (e.g. --config.num_actors=4 --logdir runs/x).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
exec .venv/bin/python -m seed.train --config configs/cartpole_vtrace.py "$@"
