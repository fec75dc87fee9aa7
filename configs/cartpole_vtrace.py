"""CartPole-v1 with V-trace: stops once the last-50 mean return reaches 475 (~1M frames, ~45 s on 2 cores).

python -m seed.train --config configs/cartpole_vtrace.py
"""

import envs
from agents.vtrace import config as vtrace_config
from seed.runtime import config as seed_config


def get_config():
  c = seed_config.runtime_config()
  c.agent_name = "vtrace"
  c.env = envs.env_config("CartPole-v1")
  c.agent = vtrace_config.get_config()
  c.num_actors = 2
  c.env_batch_size = 16
  c.inference_batch_size = 32
  c.unroll_length = 20
  c.batch_size = 16
  c.unroll_queue_capacity = 32
  c.total_environment_frames = 2_000_000  # the learning rate decays to 0 over it
  c.stop_mean_return = 475.0
  c.agent.learning_rate = 1e-3
  c.agent.entropy_cost = 0.01
  return c
