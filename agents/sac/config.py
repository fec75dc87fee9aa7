"""Soft actor-critic (SAC) hyperparameters, every field documented.

Defaults are the usual MuJoCo settings of Haarnoja et al. 2018
(arXiv:1812.05905, appendix D): 256x256 networks, Adam 3e-4, batch 256,
gamma 0.99, tau 0.005, automatic temperature toward -action_dim, one gradient
step per environment step.

Unlike the on-policy agents, SAC ignores the runtime's `config.batch_size`
(unrolls per training batch): its training batch is `agent.batch_size`
single-step transitions sampled from the replay.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

# The batch a training step splits over the learner's training devices (the transitions of a gradient step):
# it must be a multiple of config.training_devices.
REPLICA_BATCH = "agent.batch_size"


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Hidden layer sizes (ReLU) of the actor's MLP and of each of the twin Q critics.
  c.actor_sizes = (256, 256)
  c.critic_sizes = (256, 256)
  # The actor's log standard deviation (of the Gaussian before tanh) is squashed
  # smoothly into [log_std_min, log_std_max].
  c.log_std_min = -5.0
  c.log_std_max = 2.0
  # Discount factor.
  c.discount = 0.99
  # Polyak averaging rate of the target critics, after every gradient step:
  # target <- (1 - tau) * target + tau * online.
  c.tau = 0.005
  # Adam learning rates of the critics, the actor and the temperature (log alpha).
  c.critic_learning_rate = 3e-4
  c.actor_learning_rate = 3e-4
  c.alpha_learning_rate = 3e-4
  # Initial entropy temperature alpha (learned as log alpha).
  c.initial_alpha = 1.0
  # Entropy the temperature steers the policy toward; None = -action_dim
  # (Haarnoja et al. 2018, arXiv:1812.05905, section 5).
  c.target_entropy = config_dict.placeholder(float)
  # Rewards are multiplied by this before they enter the critic targets.
  c.reward_scale = 1.0
  # Transitions per gradient step, sampled uniformly from the replay (this is
  # NOT the runtime's config.batch_size, which SAC does not use).
  c.batch_size = 256
  # Replay capacity in transitions (a numpy ring; not checkpointed, so a
  # resumed run refills it from scratch).
  c.replay_capacity = 1_000_000
  # Training starts once the replay holds this many transitions (and at least
  # batch_size).
  c.min_replay_size = 10_000
  # Replay ratio: transitions sampled per transition inserted, counting inserts
  # after the first min_replay_size (so training does not start with a burst of
  # steps on the warm-up data). Training waits for new data above it, and actors
  # wait for training through the full unroll queue, so batch_size /
  # samples_per_insert new transitions arrive per gradient step:
  # samples_per_insert = batch_size is one gradient step per environment step.
  c.samples_per_insert = 256.0
  # Uniform random actions (over the action space bounds) for this many
  # environment steps at the start of a run, counted by the agent's inference
  # step (`SACAgent.acted_steps`, one per env step that asked for an action,
  # all actors together; frame skip not included). Checkpointed, so a resumed
  # run does not explore randomly again. 0 = always the policy.
  c.random_steps = 10_000
  return c
