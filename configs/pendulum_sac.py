"""Pendulum-v1 with SAC: mean return near -150 in about a minute on 2 cores.

python -m seed.train --config configs/pendulum_sac.py

Smaller networks and batch than the MuJoCo defaults, higher learning rates and
a short warm-up: Pendulum is solved after ~10k gradient steps, and on a small
machine the learner's gradient steps (one per env step) set the pace.
"""

import envs
from agents.sac import config as sac_config
from seed.runtime import config as seed_config


def get_config():
  c = seed_config.runtime_config()
  c.agent_name = "sac"
  c.env = envs.env_config("Pendulum-v1")  # 200-step episodes (truncated), returns in about [-1700, 0]
  c.agent = sac_config.get_config()
  c.num_actors = 2
  c.env_batch_size = 4
  c.inference_batch_size = 8
  c.unroll_length = 8
  # Unused by SAC (its training batch is agent.batch_size transitions); 1 because the
  # runtime checks unroll_queue_capacity >= batch_size.
  c.batch_size = 1
  # Actors run at most 16 unrolls (128 env steps) ahead of the replay ratio.
  c.unroll_queue_capacity = 16
  c.total_environment_frames = 15_000
  # Stop early once the last 50 episodes (10k frames) average this; a good policy averages
  # about -150, and last-20 means pass -400 after ~8k frames.
  c.stop_mean_return = -200.0
  c.agent.actor_sizes = (128, 128)
  c.agent.critic_sizes = (128, 128)
  c.agent.batch_size = 128
  c.agent.samples_per_insert = 128.0  # one gradient step per env step
  c.agent.actor_learning_rate = 1e-3
  c.agent.critic_learning_rate = 1e-3
  c.agent.alpha_learning_rate = 1e-3
  c.agent.replay_capacity = 100_000
  c.agent.min_replay_size = 1_000
  c.agent.random_steps = 1_000
  return c
