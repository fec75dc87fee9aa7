"""CartPole-v1 with PPO: solved (last-50 mean >= 475) in ~40k frames, ~26 s from launch on 2 cores.

python -m seed.train --config configs/cartpole_ppo.py

The RL Zoo's tuned PPO (rl-baselines3-zoo, hyperparams/ppo.yml, CartPole-v1: one 256-transition
minibatch trained for 20 epochs, GAE lambda 0.8, discount 0.98, learning rate 1e-3 and clip
range decayed linearly to 0), but 16 environments x 16-step unrolls instead of 8 x 32: half
the inference calls per frame. On 2026-12-03 it took 35-47k frames (median 39k, 6 runs) and
22.5-28.5 s, against 41-45k frames and 27.0-28.4 s for 8 x 32 (3 runs), in the same hour.
One actor steps all 16 envs, so every inference call is a full batch. Actors import no TensorFlow
(issue 28): 2 actors x 8 envs took 1.04x the time of 1 x 16 on 2026-12-07 (1.16x when they did).
Seeds 0-9 on 2026-12-05 (Intel Xeon with AMX, 2 cores, a Pong run training beside them): all solved,
at 32-58k frames (median 43k) and 17-40 s. Seeds 10-25 on 2026-12-07 (AMD EPYC, 2 cores): 15 solved at
31-57k frames, seed 25 did not: its mean fell from 255 to 90 at 50k frames and was back at 326 when
the decays reached 0 at 100k. tests/test_ppo.py runs seeds 0-2 and asks two of them to solve.
"""

import envs
from agents.ppo import config as ppo_config
from seed.runtime import config as seed_config


def get_config():
  c = seed_config.runtime_config()
  c.agent_name = "ppo"
  c.env = envs.env_config("CartPole-v1")
  c.agent = ppo_config.get_config()
  c.num_actors = 1
  c.env_batch_size = 16
  c.inference_batch_size = 16
  c.unroll_length = 16
  c.batch_size = 16  # unrolls per PPO batch: 16 x 16 = 256 transitions
  c.unroll_queue_capacity = 32  # small queue (two batches): little policy lag
  c.agent.minibatch_size = 16  # the whole batch: one gradient step per epoch
  c.agent.num_epochs = 20
  c.agent.discount = 0.98
  c.agent.gae_lambda = 0.8
  c.agent.learning_rate = 1e-3
  c.agent.lr_decay = True
  c.agent.clip_decay = True
  c.agent.entropy_cost = 0.0
  c.agent.normalize_observations = False
  c.log_interval = 2.0
  c.stop_mean_return = 475.0
  c.total_environment_frames = 100_000
  return c
