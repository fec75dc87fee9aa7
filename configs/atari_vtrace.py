"""Atari (Pong by default) with V-trace and the IMPALA CNN.

python -m seed.train --config configs/atari_vtrace.py --config.env.id=ALE/Breakout-v5
Frames count emulator frames: one env step = frame_skip (4) frames.
"""

import envs
from agents.vtrace import config as vtrace_config
from seed.runtime import config as seed_config


def get_config():
  c = seed_config.runtime_config()
  c.agent_name = "vtrace"
  c.env = envs.env_config("ALE/Pong-v5")
  c.agent = vtrace_config.get_config()
  c.agent.torso = "impala_cnn"
  # bfloat16 where the hardware runs it natively (AVX512-BF16/AMX, GPU, TPU), float32 elsewhere.
  c.agent.compute_dtype = "auto"
  c.agent.reward_clip = 1.0
  c.agent.learning_rate = 6e-4
  c.agent.entropy_cost = 0.01
  c.agent.discount = 0.99
  c.num_actors = 2
  c.env_batch_size = 8
  c.inference_batch_size = 16
  c.unroll_length = 20
  c.batch_size = 16
  c.unroll_queue_capacity = 32
  c.total_environment_frames = 50_000_000
  return c
