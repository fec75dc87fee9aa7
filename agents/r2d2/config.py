"""R2D2 hyperparameters (Kapturowski et al. 2019, table 2), every field documented.

Sequences: the runtime's unrolls are R2D2's replay sequences. An unroll holds
`unroll_length + 1` steps (runtime field), of which the first `burn_in` only
warm up the LSTM from the stored state and the remaining
`unroll_length - burn_in` transitions are trained on (the last step is only
bootstrapped from). So set

    unroll_length = burn_in + trained transitions per sequence.

Consecutive sequences of an env share `sequence_overlap` steps (default
burn_in + half the trained length), so every transition is trained in about
two sequences and each one has a warmed-up state; it must be at least
burn_in + 1 so that no transition falls between two sequences' trained parts.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

# The batch a training step splits over the learner's training devices (the sequences of a training batch):
# it must be a multiple of config.training_devices.
REPLICA_BATCH = "batch_size"


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # --- network ---
  # Torso: "mlp" for vector observations, "nature_cnn" (the DQN/R2D2 conv torso) or
  # "impala_cnn" (IMPALA's ResNet, reused from agents.vtrace) for frames.
  c.torso = "mlp"
  # Hidden layer sizes of the MLP torso.
  c.mlp_sizes = (64,)
  # The conv torsos' arithmetic: "float32", "bfloat16", or "auto" (bfloat16 where native).
  c.compute_dtype = "float32"
  # Width of the dense layer closing the conv torsos.
  c.cnn_hidden = 512
  # LSTM core size (R2D2: 512). Must be >= 1: the agent is recurrent.
  c.lstm_size = 64
  # Hidden width of each dueling stream (value and advantage); 0 = linear streams.
  c.head_hidden = 64
  # Dueling heads (Wang et al. 2016); False = a plain Q head.
  c.dueling = True

  # --- sequences ---
  # Steps at the start of each sequence that only warm up the LSTM (no loss, no gradient).
  c.burn_in = 4
  # Steps consecutive sequences share; None = burn_in + (unroll_length - burn_in) // 2.
  c.sequence_overlap = config_dict.placeholder(int)

  # --- targets and loss ---
  # n of the n-step double-Q targets (the window is truncated at the sequence end).
  c.n_step = 3
  # Discount factor gamma.
  c.discount = 0.99
  # Value rescaling h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x on the targets (Pohlen et al. 2018).
  c.value_rescaling = True
  # The eps of h.
  c.rescaling_epsilon = 1e-3
  # Rewards are clipped to [-reward_clip, reward_clip] (None: unclipped; R2D2 rescales values instead).
  c.reward_clip = config_dict.placeholder(float)

  # --- optimisation ---
  # Adam learning rate and epsilon (R2D2: 1e-4 and 1e-3).
  c.learning_rate = 1e-4
  c.adam_epsilon = 1e-3
  # Gradients are clipped to this global norm.
  c.max_grad_norm = 40.0
  # Gradient steps between copies of the online network into the target network (R2D2: 2500).
  c.target_update_period = 2500

  # --- replay ---
  # Replay capacity in sequences (the oldest are overwritten). Memory use is reported as
  # replay/bytes; it is about capacity * (unroll_length + 1) * observation bytes.
  c.replay_capacity = 10_000
  # Sequences in the replay before training starts.
  c.min_replay_size = 500
  # Replay ratio: sampled sequences per inserted sequence beyond min_replay_size, held both
  # ways by seed.replay.feeder.ReplayFeeder (training waits for the actors when it is ahead;
  # the actors wait, on a full unroll queue, when it is behind).
  c.samples_per_insert = 4.0
  # Priority exponent alpha of P(i) = p_i^alpha / sum_k p_k^alpha (R2D2: 0.9).
  c.priority_exponent = 0.9
  # Importance-sampling exponent beta of the loss weights (R2D2: 0.6).
  c.importance_sampling_exponent = 0.6
  # Sequence priority eta * max_t |td| + (1 - eta) * mean_t |td| (R2D2: 0.9).
  c.priority_eta = 0.9
  # Frames stacked in each observation ([H, W, frame_stack * C], e.g. 4 for Atari): the replay
  # then stores each frame once per sequence instead of frame_stack times (4x less memory).
  # None: observations are stored as they are.
  c.frame_stack = config_dict.placeholder(int)

  # --- exploration ---
  # Per-env epsilon-greedy (Ape-X): env i of N gets epsilon_base ** (1 + epsilon_alpha * i / (N - 1)).
  c.epsilon_base = 0.4
  c.epsilon_alpha = 7.0
  # Epsilon of the exported policy's `logits` (log-probabilities of epsilon-greedy; what
  # seed.evaluate samples from without --greedy). Its `action` is always greedy.
  c.eval_epsilon = 0.001
  return c
