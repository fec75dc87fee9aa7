"""V-trace actor-critic (IMPALA) hyperparameters, every field documented."""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

# The batch a training step splits over the learner's training devices (the unrolls of a training batch):
# it must be a multiple of config.training_devices.
REPLICA_BATCH = "batch_size"


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Network torso: "mlp" for vector observations; for frames "nature_cnn" (the DQN's 3 conv
  # layers + 512 dense, ~5x fewer multiply-adds per frame) or "impala_cnn" (IMPALA's deep
  # ResNet); "linear" (no hidden layer; for benchmarking the runtime).
  c.torso = "mlp"
  # Hidden layer sizes of the MLP torso.
  c.mlp_sizes = (64, 64)
  # The MLP torso's activation: "relu" or "tanh" (agents.torsos.MLP_ACTIVATIONS).
  c.mlp_activation = "relu"
  # The conv torsos' arithmetic: "float32", or "bfloat16" (float32 variables, bfloat16
  # convolutions; 1.6-2.8x faster training on CPUs with AVX512-BF16/AMX, and native on TPUs).
  c.compute_dtype = "float32"
  # LSTM core size after the torso; 0 = feed-forward.
  c.lstm_size = 0
  # Discount factor.
  c.discount = 0.99
  # V-trace clipping thresholds (rho-bar for the value targets, rho-bar for the
  # policy gradient) and the trace lambda (1.0 = the paper's V-trace).
  c.clip_rho_threshold = 1.0
  c.clip_pg_rho_threshold = 1.0
  c.lambda_ = 1.0
  # Loss weights: baseline (value) loss and entropy bonus.
  c.baseline_cost = 0.5
  c.entropy_cost = 0.01
  # Rewards are clipped to [-reward_clip, reward_clip] (None: unclipped; Atari uses 1).
  c.reward_clip = config_dict.placeholder(float)
  # Policy-gradient advantages divided by their standard deviation over the batch's real
  # steps (not re-centred: V-trace's advantages are already centred by the baseline). Off
  # keeps IMPALA's loss; on makes the policy term's scale independent of the reward scale.
  c.normalize_advantages = False
  # Optimizer (agents/optimizers.py): "adam", or "rmsprop" (IMPALA's and A2C's on Atari). Its
  # learning rate warms up linearly over warmup_steps gradient steps, then decays linearly to
  # 0 over total_environment_frames when lr_decay.
  c.optimizer = "adam"
  c.learning_rate = 1e-3
  c.warmup_steps = 0
  c.lr_decay = True
  c.adam_beta1 = 0.9
  c.adam_epsilon = 1e-7
  # RMSProp: moving-average decay of the squared gradients, and epsilon, added to that average
  # under the square root (tf_keras, like TF1's RMSPropOptimizer). Epsilon and max_grad_norm
  # scale with the loss: ours are means over a batch's transitions, IMPALA's were sums, so its
  # Atari epsilon 0.01 and clip 40 become 0.01 / N**2 and 40 / N for N transitions (N = 320:
  # ~1e-7 and 0.125). At 0.01 on a mean loss RMSProp is plain SGD at 10x the learning rate
  # (a Pong run's policy stayed uniform for 2M frames).
  c.rmsprop_decay = 0.99
  c.rmsprop_epsilon = 1e-7
  # Where the mean-square slots start: TF1's RMSPropOptimizer (IMPALA's) used 1.0, which makes
  # the first steps SGD-sized; tf_keras uses 0, a first step of ~10 x lr x sign(g).
  c.rmsprop_initial_mean_square = 1.0
  # Gradients are clipped to this global norm (0: no clip). Our losses are means, so this is
  # on the scale of a mean loss's gradient (0.06-10 measured on Pong), not IMPALA's sum-loss 40.
  c.max_grad_norm = 40.0
  return c


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks made before any process starts."""
  if config.agent.optimizer not in ("adam", "rmsprop"):
    raise ValueError(f"config.agent.optimizer must be 'adam' or 'rmsprop', got {config.agent.optimizer!r}")
  if config.agent.mlp_activation not in ("relu", "tanh"):
    raise ValueError(f"config.agent.mlp_activation must be 'relu' or 'tanh', got {config.agent.mlp_activation!r}")
  if not isinstance(config.agent.warmup_steps, int) or config.agent.warmup_steps < 0:
    raise ValueError(f"config.agent.warmup_steps must be an integer >= 0, got {config.agent.warmup_steps!r}")
