"""CartPole-v1 with R2D2: a small LSTM Q-network from prioritized sequence replay.

python -m seed.train --config configs/cartpole_r2d2.py
Sized for a 2-core machine: reaches a mean return of 300+ (last 50 episodes,
all 32 envs including the high-epsilon ones) in a few minutes.
"""

import envs
from agents.r2d2 import config as r2d2_config
from seed.runtime import config as seed_config


def get_config():
  c = seed_config.runtime_config()
  c.agent_name = "r2d2"
  c.env = envs.env_config("CartPole-v1")
  c.agent = r2d2_config.get_config()
  c.num_actors = 2
  c.env_batch_size = 16
  c.inference_batch_size = 32
  # Sequences: 4 burn-in steps + 16 trained transitions; consecutive ones share 4 + 8 steps.
  c.unroll_length = 20
  c.agent.burn_in = 4
  c.batch_size = 32  # sequences per gradient step
  c.unroll_queue_capacity = 64
  c.total_environment_frames = 3_000_000
  c.agent.torso = "mlp"
  c.agent.mlp_sizes = (64,)
  c.agent.lstm_size = 64
  c.agent.head_hidden = 64
  c.agent.n_step = 3
  c.agent.discount = 0.99
  c.agent.learning_rate = 1e-3
  c.agent.adam_epsilon = 1e-3
  c.agent.target_update_period = 100
  c.agent.replay_capacity = 5_000
  c.agent.min_replay_size = 100
  # Sampled per inserted sequence (held both ways by the feeder). Each stored step is in the trained
  # part of ~16/9 sequences, so 2 means ~3.5 gradient samples per env step. On 2 cores, higher ratios
  # train more per frame but reach a given return later in wall clock (CartPole data is cheap).
  c.agent.samples_per_insert = 2.0
  return c
