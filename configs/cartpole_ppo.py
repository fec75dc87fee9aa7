"""CartPole-v1 with PPO.

python -m seed.train --config configs/cartpole_ppo.py
"""

import envs
from agents.ppo import config as ppo_config
from seed.runtime import config as seed_config


def get_config():
  c = seed_config.runtime_config()
  c.agent_name = "ppo"
  c.env = envs.env_config("CartPole-v1")
  c.agent = ppo_config.get_config()
  c.num_actors = 2
  c.env_batch_size = 8
  c.inference_batch_size = 16
  c.unroll_length = 32
  c.batch_size = 16  # unrolls per PPO batch: 16 x 32 = 512 transitions
  c.unroll_queue_capacity = 16  # small queue: little policy lag
  c.agent.minibatch_size = 4
  c.agent.num_epochs = 4
  c.agent.learning_rate = 1e-3
  c.agent.entropy_cost = 0.0
  c.total_environment_frames = 1_000_000
  return c
