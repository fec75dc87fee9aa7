"""MuJoCo continuous control with PPO (HalfCheetah-v5 by default; any gymnasium Box-action env works).

python -m seed.train --config configs/mujoco_ppo.py --config.env.id=Hopper-v5
"""

import envs
from agents.ppo import config as ppo_config
from seed.runtime import config as seed_config


def get_config():
  c = seed_config.runtime_config()
  c.agent_name = "ppo"
  c.env = envs.env_config("HalfCheetah-v5")
  c.agent = ppo_config.get_config()
  c.num_actors = 2
  c.env_batch_size = 8
  c.inference_batch_size = 16
  c.unroll_length = 64
  c.batch_size = 32  # 32 x 64 = 2048 transitions per batch, as in the PPO paper's MuJoCo setup
  c.unroll_queue_capacity = 32
  c.agent.minibatch_size = 4  # 256-transition minibatches
  c.agent.num_epochs = 10
  c.agent.learning_rate = 3e-4
  c.agent.value_clip_epsilon = 0.2
  c.total_environment_frames = 1_000_000
  return c
