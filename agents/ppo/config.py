"""PPO hyperparameters, every field documented."""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

# The batch a training step splits over the learner's training devices (the unrolls of a minibatch):
# it must be a multiple of config.training_devices.
REPLICA_BATCH = "agent.minibatch_size"


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Feature torso: "mlp" = separate policy and value MLPs (tanh, hidden_sizes) on the
  # (normalised) observation; "nature_cnn" or "impala_cnn" = one conv torso on frames
  # shared by linear policy and value heads (CleanRL's Atari PPO), hidden_sizes then unused.
  c.torso = "mlp"
  # The conv torso's arithmetic: "float32", "bfloat16", or "auto" (bfloat16 where native).
  c.compute_dtype = "float32"
  # Hidden sizes of the policy and value MLPs (separate networks, tanh activations).
  c.hidden_sizes = (64, 64)
  c.discount = 0.99
  # Rewards are clipped to [-reward_clip, reward_clip] (None: unclipped; Atari uses 1).
  c.reward_clip = config_dict.placeholder(float)
  # GAE lambda.
  c.gae_lambda = 0.95
  # Clipping epsilon of the surrogate objective.
  c.clip_epsilon = 0.2
  # Value clipping around the old value prediction; 0 disables it.
  c.value_clip_epsilon = 0.0
  c.value_cost = 0.5
  c.entropy_cost = 0.0
  # Passes over each batch of unrolls, and unrolls per minibatch (batch_size must be a multiple).
  c.num_epochs = 4
  c.minibatch_size = 8
  c.learning_rate = 3e-4
  # Linear learning-rate warm-up over this many gradient steps (agents/optimizers.py).
  c.warmup_steps = 0
  # Decay the learning rate and the clipping epsilon linearly to 0 over the run's
  # total_environment_frames (the RL Zoo's "lin_" schedules); off: both constant.
  c.lr_decay = False
  c.clip_decay = False
  c.adam_epsilon = 1e-5
  # Global gradient norm clip.
  c.max_grad_norm = 0.5
  # Normalise advantages per batch.
  c.normalize_advantages = True
  # Running mean/std normalisation of observations (updated from each training batch).
  c.normalize_observations = True
  # PopArt value normalisation (van Hasselt et al. 2016): values are learnt in a
  # normalised space whose statistics track the returns, preserving outputs.
  c.popart = False
  c.popart_step = 1e-3
  # Unrolls whose oldest step came from a policy more than this many updates
  # behind the current one are not trained on (they are counted as stale).
  c.max_policy_lag = 4
  # Continuous actions: initial log std of the Gaussian before the tanh.
  c.initial_log_std = -0.5
  return c


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks that need the runtime fields too (called before any process starts)."""
  if config.agent.torso not in ("mlp", "nature_cnn", "impala_cnn"):
    raise ValueError(f"config.agent.torso must be 'mlp', 'nature_cnn' or 'impala_cnn', got {config.agent.torso!r}")
  if config.agent.torso != "mlp" and config.agent.normalize_observations:
    raise ValueError("config.agent.normalize_observations is for vector observations: set it False with a conv torso")
  if config.batch_size % config.agent.minibatch_size:
    raise ValueError(
      f"config.batch_size ({config.batch_size}) must be a multiple of "
      f"config.agent.minibatch_size ({config.agent.minibatch_size})"
    )
  if config.unroll_queue_capacity > 2 * config.batch_size:
    raise ValueError(
      "PPO is on-policy: keep config.unroll_queue_capacity <= 2 * batch_size "
      f"(got {config.unroll_queue_capacity} vs batch_size {config.batch_size}) to bound policy lag"
    )
