"""Atari (Pong by default) with V-trace and the Nature DQN torso in bfloat16: learning per wall-clock second on a small CPU box.

python -m seed.train --config configs/atari_vtrace_fast.py --logdir runs/pong-fast

The DQN torso (3 conv layers + 512 dense) costs ~5x fewer multiply-adds per frame than the
IMPALA CNN, and bfloat16 convolutions (float32 variables) train ~2.5x faster again on CPUs
with AVX512-BF16/AMX. Frames count emulator frames: one env step = frame_skip (4) frames.
"""

import envs
from agents.vtrace import config as vtrace_config
from seed.runtime import config as seed_config


def get_config():
  c = seed_config.runtime_config()
  c.agent_name = "vtrace"
  c.env = envs.env_config("ALE/Pong-v5")
  c.agent = vtrace_config.get_config()
  c.agent.torso = "nature_cnn"
  c.agent.compute_dtype = "bfloat16"
  c.agent.reward_clip = 1.0
  c.agent.learning_rate = 1e-3
  c.agent.entropy_cost = 0.01
  c.agent.discount = 0.99
  c.num_actors = 4
  c.env_batch_size = 16
  c.inference_batch_size = 32
  c.unroll_length = 20
  c.batch_size = 16
  c.unroll_queue_capacity = 64
  c.total_environment_frames = 12_000_000
  return c
