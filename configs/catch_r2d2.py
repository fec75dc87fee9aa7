"""seed/Catch-v0 with R2D2 and the Nature CNN: a last-50 mean >= 0.9 (all 16 envs, epsilon-greedy) in ~11k frames.

python -m seed.train --config configs/catch_r2d2.py

Measured on 2 cores beside a Pong training and another session's CartPole runs (load average
6-9): seeds 0, 1, 2 reached 0.8 at 7,056 / 8,016 / 9,024 frames (278 / 317 / 357 updates),
73.2 / 66.3 / 57.1 s after the launcher started (~30 s of it imports, process start and
tracing); the test run of seed 0 at 8,256 frames, 40.7 s. R2D2 logs no dead-unit or V-spread
figures (its learn() returns none).

60x60 frames (cells of 6x12 pixels), not the env's default 40x40: at 40x40 the Nature CNN
never sees the paddle (see configs/catch_vtrace.py), and Q-learning cannot tell a caught
ball from a missed one at the last step (its Q-values were identical for every paddle
column); with Ape-X exploration moving the paddle at random it took 57-81k frames to a
lucky 0.8 window, or not at all. At 60x60 it needs ~200-400 updates.

The last-50 mean counts every env, exploring ones included: with Ape-X epsilons over 16 envs
(0.4 down to 0.4^8), a perfect greedy policy averages ~0.92 (simulated), so 0.8 is within reach.
"""

import envs
from agents.r2d2 import config as r2d2_config
from seed.runtime import config as seed_config


def get_config():
  c = seed_config.runtime_config()
  c.agent_name = "r2d2"
  c.env = envs.env_config(envs.CATCH_ID)
  # The whole 10x5 board visible to the Nature CNN: 60x60 frames.
  c.env.kwargs = {"cell": (6, 12)}
  c.agent = r2d2_config.get_config()
  a = c.agent
  a.torso = "nature_cnn"
  # This CPU has no native bfloat16 (emulated bfloat16 is slower than float32).
  a.compute_dtype = "float32"
  # Small dense, LSTM and dueling layers: the state is the ball's and the paddle's cells.
  a.cnn_hidden = 128
  a.lstm_size = 64
  a.head_hidden = 64
  # One actor process stepping all 16 envs: every inference call is a full batch, and only two
  # processes start TensorFlow (startup is most of the run on 2 cores).
  c.num_actors = 1
  c.env_batch_size = 16
  c.inference_batch_size = 16
  # Short sequences: 2 burn-in steps + 4 trained transitions (consecutive ones share 2 + 2 steps).
  # The learner is the bottleneck and a step costs about batch x (unroll_length + 1) conv passes:
  # 6-step sequences took 5.5-13.8k frames (seeds 0-2) where 10-step ones took 7.9-21.4k.
  c.unroll_length = 6
  a.burn_in = 2
  c.batch_size = 16  # sequences per gradient step: half the cost of 32 for about as many steps
  c.unroll_queue_capacity = 64
  a.n_step = 3
  a.discount = 0.99
  a.learning_rate = 1e-3
  # The gradients are small (global norm ~0.05), so Adam's epsilon sets the step size: 1e-4 took
  # 5.6-9.7k frames (seeds 0-2) where R2D2's 1e-3 took 7.7-13.8k.
  a.adam_epsilon = 1e-4
  # A few hundred updates in all: the target follows every 25 (R2D2: 2500; 50 did about as well).
  a.target_update_period = 25
  # 2,000 sequences of 7 frames of 60x60 (~50 MB); training starts after 100.
  a.replay_capacity = 2_000
  a.min_replay_size = 100
  # As configs/cartpole_r2d2.py: 1 took ~twice the frames for no fewer updates.
  a.samples_per_insert = 2.0
  # 0.9, not the other Catch configs' 0.8: an early 0.8 (or 0.85) window of the exploring envs
  # often comes before the greedy policy is sound. 2026-12-07, stopping at 0.8-0.85 (streams and
  # unary alike): exports scored -0.4 to +1.0 greedy (2 test runs in 7 failed the >= 0 bar);
  # stopping at 0.9, seeds 0 / 4 / 5 reached it at 11,664 / 11,664 / 9,936 frames (~23 s) and
  # their exports scored +1.0 / +0.7 / +0.7 over 20 episodes.
  c.stop_mean_return = 0.9
  # ~4x the frames the slowest seed needed, 2.4x the slowest of any variant tried (16.8k);
  # R2D2 runs at ~300 f/s here, so a run that fails ends within a few minutes.
  c.total_environment_frames = 40_000
  c.log_interval = 2.0  # a minute-long run: a progress line every 2 s
  return c
