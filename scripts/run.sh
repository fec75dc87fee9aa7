#!/usr/bin/env bash
# Sets everything up (idempotent) and runs the main job on a small default:
# CartPole with PPO, one learner + 1 actor process; it stops once the mean return of
# the last 50 episodes reaches 475 and says how long that took (~10 s on 2 cores).
# Extra arguments go to seed.train (e.g. --config.seed=1 --logdir runs/x).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
exec .venv/bin/python -m seed.train --config configs/cartpole_ppo.py "$@"
