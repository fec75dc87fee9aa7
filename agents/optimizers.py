"""Optimizers and learning-rate schedules the agents share, built from their config fields.

Why each piece exists (measured on a Nature CNN with Pong frames, README "Learning from pixels"):
- Warm-up: Adam's first steps move every weight by about lr x sign(g) whatever the
  gradient's size. A dense unit's thousands of non-negative inputs then move together, so
  one step at lr 6e-4 shifted its pre-activation ~9x more than it varies across states
  and killed 10% of the dense units. A linear warm-up keeps those first steps small while
  Adam's second-moment estimates settle.
- RMSProp with TF1's start: tf.compat.v1.train.RMSPropOptimizer (IMPALA's) starts the
  mean-square slots at 1.0, a built-in warm-up; tf_keras starts them at 0, so its first
  step is ~10 x lr x sign(g). `RMSpropTF1` restores the published behaviour.
"""

from __future__ import annotations

import ml_collections
import tensorflow as tf
import tf_keras as keras

OPTIMIZERS = ("adam", "rmsprop")


class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
  """lr x min(1, (step + 1) / warmup_steps), times (1 - step / decay_steps) when decay_steps > 0."""

  def __init__(self, learning_rate: float, warmup_steps: int = 0, decay_steps: int = 0):
    self.learning_rate = float(learning_rate)
    self.warmup_steps = int(warmup_steps)
    self.decay_steps = int(decay_steps)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    lr = tf.constant(self.learning_rate, tf.float32)
    if self.warmup_steps > 0:
      lr *= tf.minimum(1.0, (step + 1.0) / self.warmup_steps)
    if self.decay_steps > 0:
      lr *= tf.maximum(0.0, 1.0 - step / self.decay_steps)
    return lr

  def get_config(self):
    return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps, "decay_steps": self.decay_steps}


class RMSpropTF1(keras.optimizers.RMSprop):
  """tf_keras RMSprop whose mean-square slots start at `initial_mean_square` (TF1: 1.0), not 0."""

  def __init__(self, *args, initial_mean_square: float = 1.0, **kwargs):
    super().__init__(*args, **kwargs)
    self.initial_mean_square = float(initial_mean_square)

  def build(self, var_list):
    fresh = not getattr(self, "_built", False)
    super().build(var_list)
    if fresh and self.initial_mean_square:
      for v in self._velocities:
        v.assign(tf.fill(v.shape, tf.constant(self.initial_mean_square, v.dtype)))


def learning_rate(config: ml_collections.ConfigDict, total_steps: int) -> WarmupLinearDecay:
  """config.learning_rate with config.warmup_steps of linear warm-up and, if config.lr_decay,
  a linear decay to 0 over the run's `total_steps` gradient steps."""
  return WarmupLinearDecay(
    config.learning_rate, config.get("warmup_steps", 0), max(int(total_steps), 1) if config.lr_decay else 0
  )


def make(config: ml_collections.ConfigDict, total_steps: int) -> keras.optimizers.Optimizer:
  """The optimizer config.optimizer names ("adam" when the agent has no such field), clipping the
  global gradient norm to config.max_grad_norm (0/None: no clip)."""
  lr = learning_rate(config, total_steps)
  clip = config.get("max_grad_norm") or None
  name = config.get("optimizer", "adam")
  if name == "rmsprop":
    return RMSpropTF1(
      lr,
      rho=config.rmsprop_decay,
      epsilon=config.rmsprop_epsilon,
      initial_mean_square=config.get("rmsprop_initial_mean_square", 0.0),
      global_clipnorm=clip,
    )
  if name == "adam":
    return keras.optimizers.Adam(
      lr, beta_1=config.get("adam_beta1", 0.9), epsilon=config.adam_epsilon, global_clipnorm=clip
    )
  raise ValueError(f"config.agent.optimizer must be one of {OPTIMIZERS}, got {name!r}")


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> tf.Tensor:
  """The learning rate the optimizer's last step used (tf_keras evaluates a schedule as it applies a step)."""
  lr = optimizer.learning_rate
  return tf.convert_to_tensor(lr(optimizer.iterations) if callable(lr) else lr)
