"""seed/Catch-v0 with V-trace and the Nature CNN: a last-50 mean return >= 0.8 in ~15k frames, under a minute.

python -m seed.train --config configs/catch_vtrace.py

Measured on 2 cores beside a Pong training and another session's CartPole runs (load average
6-9): seeds 0, 1, 2 reached 0.8 at 12,800 / 14,480 / 21,920 frames, 36.5 / 34.9 / 56.3 s after
the launcher started (~25-30 s of it imports, process start and tracing); the test run of seed 0
at 14,080 frames, 51.9 s. Dead units at the goal: conv1 0-9%, conv2-3 0%, dense 1-3%.

Why 60x60 frames (cells of 6x12 pixels) rather than the env's default 40x40: the Nature CNN
(valid padding) reads 40 -> 9 -> 3 -> 1, and its 4x4/2 second conv covers only rows and
columns 0-7 of the first conv's 9x9 output, so the bottom 4 pixel rows are never seen: at
40x40 the paddle is invisible (moving it changes no feature: 0.0 exactly). A policy can then
only play open loop from the ball's position. At 60x60 (60 -> 14 -> 6 -> 4) every pixel
reaches the features; the board, the actions and the 9-step episodes are bsuite's.
"""

import envs
from agents.vtrace import config as vtrace_config
from seed.runtime import config as seed_config


def get_config():
  c = seed_config.runtime_config()
  c.agent_name = "vtrace"
  c.env = envs.env_config(envs.CATCH_ID)
  # The whole 10x5 board visible to the Nature CNN (see the docstring): 60x60 frames.
  c.env.kwargs = {"cell": (6, 12)}
  c.agent = vtrace_config.get_config()
  c.agent.torso = "nature_cnn"
  # This CPU has no native bfloat16 (emulated bfloat16 is slower than float32).
  c.agent.compute_dtype = "float32"
  # As atari_vtrace_fast: normalised advantages (scale only) bring the policy's gradient to the
  # baseline's order, a short warm-up keeps Adam's first steps small, and the clip acts on a
  # mean loss. 1e-3 reached 0.8 in 12.6-18k frames (seeds 0-2), 6e-4 in 20-21k.
  c.agent.learning_rate = 1e-3
  c.agent.warmup_steps = 50
  c.agent.normalize_advantages = True
  c.agent.max_grad_norm = 0.5
  # At the default 1e-7 Adam takes full-size steps on near-zero gradients.
  c.agent.adam_epsilon = 1e-5
  # One actor process stepping all 16 envs: every inference call is a full batch, and only two
  # processes start TensorFlow (startup is most of the run on 2 cores).
  c.num_actors = 1
  c.env_batch_size = 16
  c.inference_batch_size = 16
  # One episode (9 steps + the final observation) per unroll; 8 unrolls = 80 transitions a step.
  # Shorter unrolls (5) took fewer frames but no less time, and left 11-22% of the dense units dead.
  c.unroll_length = 10
  c.batch_size = 8
  c.unroll_queue_capacity = 16  # two batches: little policy lag
  c.stop_mean_return = 0.8
  # ~2.7x the frames the slowest seed needed; the learning rate decays to 0 over it.
  c.total_environment_frames = 60_000
  c.log_interval = 2.0  # a minute-long run: a progress line every 2 s
  return c
