"""Atari (Pong by default) with R2D2: DQN conv torso, LSTM 512, dueling heads.

python -m seed.train --config configs/atari_r2d2.py --config.env.id=ALE/Breakout-v5
Frames count emulator frames: one env step = frame_skip (4) frames.

R2D2's settings (Kapturowski et al. 2019, table 2) where this machine allows:
burn-in 40 + 80 trained steps per sequence (unroll_length 120), consecutive
sequences sharing 40 + 40 steps, n = 5, gamma = 0.997, value rescaling,
Adam 1e-4 (eps 1e-3), priority exponent 0.9, IS exponent 0.6, eta 0.9,
target network copied every 2500 gradient steps, Ape-X epsilons (0.4, 7).
Scaled down for 2 CPU cores and shared memory: 16 actor envs (R2D2: 256),
16 sequences per batch (R2D2: 64; a gradient step then takes ~2 s on 2
cores), and a replay of 2,000 sequences (R2D2: 100,000): with frame-stack
compression a sequence is 124 frames of 84x84, 0.88 MB, so ~1.75 GB
(replay/bytes in the logs; ~7 GB without compression). samples_per_insert = 1:
one sampled sequence per inserted one (the feeder holds it both ways, so
with a learner this slow the actors wait for it instead of taking its CPU).
"""

import envs
from agents.r2d2 import config as r2d2_config
from seed.runtime import config as seed_config


def get_config():
  c = seed_config.runtime_config()
  c.agent_name = "r2d2"
  c.env = envs.env_config("ALE/Pong-v5")
  c.agent = r2d2_config.get_config()
  a = c.agent
  a.torso = "nature_cnn"
  a.cnn_hidden = 512
  a.lstm_size = 512
  a.head_hidden = 512
  a.burn_in = 40
  c.unroll_length = 120  # burn_in + 80 trained transitions
  a.n_step = 5
  a.discount = 0.997
  a.value_rescaling = True
  a.learning_rate = 1e-4
  a.adam_epsilon = 1e-3
  a.max_grad_norm = 40.0
  a.target_update_period = 2500
  a.replay_capacity = 2_000
  a.min_replay_size = 200
  a.samples_per_insert = 1.0
  a.priority_exponent = 0.9
  a.importance_sampling_exponent = 0.6
  a.priority_eta = 0.9
  a.epsilon_base = 0.4
  a.epsilon_alpha = 7.0
  a.frame_stack = c.env.atari.frame_stack  # one stored copy of each frame (needs grayscale frames)
  c.num_actors = 2
  c.env_batch_size = 8
  c.inference_batch_size = 16
  c.batch_size = 16
  c.unroll_queue_capacity = 32
  c.total_environment_frames = 50_000_000
  return c
