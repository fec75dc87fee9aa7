"""MuJoCo locomotion with SAC (HalfCheetah-v5 by default), the paper's settings.

python -m seed.train --config configs/mujoco_sac.py [--config.env.id=Hopper-v5]

Haarnoja et al. 2018 (arXiv:1812.05905, appendix D): 256x256 networks, Adam
3e-4, batch 256, gamma 0.99, tau 0.005, target entropy -action_dim, one
gradient step per env step (samples_per_insert = batch_size), 1M-transition
replay, 10k uniformly random steps first. One gradient step per env step
makes the learner the bottleneck: a few more actors only help with slow envs.
"""

import envs
from agents.sac import config as sac_config
from seed.runtime import config as seed_config


def get_config():
  c = seed_config.runtime_config()
  c.agent_name = "sac"
  c.env = envs.env_config("HalfCheetah-v5")  # any gymnasium Box-action env id works
  c.agent = sac_config.get_config()  # defaults are the paper's MuJoCo settings
  c.num_actors = 2
  c.env_batch_size = 2
  c.inference_batch_size = 4
  c.unroll_length = 8
  # Unused by SAC (its training batch is agent.batch_size transitions); 1 because the
  # runtime checks unroll_queue_capacity >= batch_size.
  c.batch_size = 1
  # Actors run at most 16 unrolls (128 env steps) ahead of the replay ratio.
  c.unroll_queue_capacity = 16
  c.total_environment_frames = 1_000_000
  c.checkpoint_interval = 600.0
  return c
