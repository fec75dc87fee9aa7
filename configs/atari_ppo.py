"""Atari (Pong by default) with PPO and the Nature DQN torso: CleanRL's ppo_atari recipe.

python -m seed.train --config configs/atari_ppo.py --logdir ~/runs/pong-ppo

CleanRL's `ppo_atari.py` (Huang et al. 2022, "The 37 Implementation Details of PPO"):
the Nature CNN (orthogonal init, gain sqrt(2)) shared by a policy head (gain 0.01) and a
value head (gain 1); Adam 2.5e-4 (eps 1e-5) decayed linearly to 0; clip 0.1 for both the
surrogate and the value; 4 epochs of 4 minibatches; advantages normalised per minibatch
batch; entropy 0.01, value cost 0.5, gradient norm clipped to 0.5; rewards clipped to +-1.
Its batch of 8 envs x 128 steps becomes 16 envs x 64 steps here (the same 1,024
transitions: two actor processes of 8 envs, one inference call each per step).
Frames count emulator frames: one env step = frame_skip (4) frames.
On Pong (2026-12-05, 2 cores with AMX, bfloat16): last-50 mean +18 at 17.1M frames, 125 minutes
from process start; the export plays +20.3 greedy over 10 episodes (README, "Pong solved").
"""

import envs
from agents.ppo import config as ppo_config
from seed.runtime import config as seed_config


def get_config():
  c = seed_config.runtime_config()
  c.agent_name = "ppo"
  c.env = envs.env_config("ALE/Pong-v5")
  c.agent = ppo_config.get_config()
  a = c.agent
  a.torso = "nature_cnn"
  a.compute_dtype = "auto"  # bfloat16 where the hardware runs it natively, float32 elsewhere
  a.normalize_observations = False  # frames are scaled to [0, 1] by the torso
  a.reward_clip = 1.0
  a.discount = 0.99
  a.gae_lambda = 0.95
  a.learning_rate = 2.5e-4
  a.lr_decay = True
  a.adam_epsilon = 1e-5
  a.clip_epsilon = 0.1
  a.value_clip_epsilon = 0.1
  a.value_cost = 0.5
  a.entropy_cost = 0.01
  a.max_grad_norm = 0.5
  a.normalize_advantages = True
  a.num_epochs = 4
  a.minibatch_size = 4  # unrolls: 4 x 64 = 256 transitions, 4 minibatches per batch
  a.max_policy_lag = 2
  c.num_actors = 2
  c.env_batch_size = 8
  c.inference_batch_size = 16
  c.unroll_length = 64
  c.batch_size = 16
  c.unroll_queue_capacity = 32
  c.total_environment_frames = 40_000_000  # CleanRL's 10M agent steps
  return c
