"""CartPole-v1 with PPO, the RL Zoo's tuned hyperparameters: solved (last-50 mean >= 475) in ~10 s.

python -m seed.train --config configs/cartpole_ppo.py

8 environments, 32-step unrolls, one 256-transition minibatch trained for 20 epochs,
GAE lambda 0.8, discount 0.98, learning rate and clip range decayed linearly to 0
(rl-baselines3-zoo, hyperparams/ppo.yml, CartPole-v1). One actor steps all 8 envs, so
every inference call is a full batch and only two processes start TensorFlow.
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
  c.env_batch_size = 8
  c.inference_batch_size = 8
  c.unroll_length = 32
  c.batch_size = 8  # unrolls per PPO batch: 8 x 32 = 256 transitions
  c.unroll_queue_capacity = 16  # small queue: little policy lag
  c.agent.minibatch_size = 8  # the whole batch: one gradient step per epoch
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
