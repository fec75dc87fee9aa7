#!/usr/bin/env bash
# Sets everything up (idempotent) and runs the main job on a small default:
# CartPole with PPO, one learner + 1 actor process; it stops once the mean return of
# the last 50 episodes reaches 475 and says how long that took, counted from the start of the
# Python process (~20 s on 2 cores); the setup's own time is printed before it.
# Extra arguments go to seed.train (e.g. --config.seed=1 --logdir runs/x).
set -euo pipefail
setup_start=$(date +%s%N)
cd "$(dirname "$0")/.."
./scripts/setup.sh
setup_ms=$((($(date +%s%N) - setup_start) / 1000000))
printf '[run] setup took %d.%d s\n' $((setup_ms / 1000)) $((setup_ms % 1000 / 100))
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
exec .venv/bin/python -m seed.train --config configs/cartpole_ppo.py "$@"
