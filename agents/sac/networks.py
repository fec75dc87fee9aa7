"""SAC networks: a tanh-Gaussian actor and a Q critic, both MLPs on vector observations."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tf_keras as keras

from agents.initializers import Initializers


def flat_float(x: tf.Tensor) -> tf.Tensor:
  """[B, ...] observations as float32 [B, features] (uint8 scaled to [0, 1])."""
  x = tf.cast(x, tf.float32) * (1.0 / 255.0) if x.dtype == tf.uint8 else tf.cast(x, tf.float32)
  return tf.reshape(x, [tf.shape(x)[0], -1])


class MLP(tf.Module):
  """ReLU hidden layers followed by a linear output layer of `out` units."""

  def __init__(self, sizes: Sequence[int], out: int, name: str = "mlp", init: Initializers | None = None):
    super().__init__(name=name)
    init = init or Initializers(0, name)
    dense = lambda n, **kw: keras.layers.Dense(int(n), kernel_initializer=init.glorot_uniform(), **kw)
    self.hidden = [dense(n, activation="relu") for n in sizes]
    self.out = dense(out)

  def __call__(self, x: tf.Tensor) -> tf.Tensor:
    for layer in self.hidden:
      x = layer(x)
    return self.out(x)


class Actor(tf.Module):
  """observation -> (mean, log_std) of the Gaussian that tanh squashes into [-1, 1]^A."""

  def __init__(
    self,
    action_dim: int,
    sizes: Sequence[int],
    log_std_min: float,
    log_std_max: float,
    init: Initializers | None = None,
  ):
    super().__init__(name="actor")
    if not log_std_min < log_std_max:
      raise ValueError(f"log_std_min ({log_std_min}) must be < log_std_max ({log_std_max})")
    self.action_dim = action_dim
    self.log_std_min = float(log_std_min)
    self.log_std_max = float(log_std_max)
    self.mlp = MLP(sizes, 2 * action_dim, name="actor_mlp", init=init)

  def __call__(self, observation: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    mean, raw = tf.split(self.mlp(flat_float(observation)), 2, axis=-1)
    # Smooth bound (keeps gradients everywhere, unlike a hard clip).
    log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (tf.tanh(raw) + 1.0)
    return mean, log_std


class Critic(tf.Module):
  """Q(observation, action) -> [B], an MLP on their concatenation (action in [-1, 1]^A)."""

  def __init__(self, sizes: Sequence[int], name: str = "critic", init: Initializers | None = None):
    super().__init__(name=name)
    self.mlp = MLP(sizes, 1, name=f"{name}_mlp", init=init)

  def __call__(self, observation: tf.Tensor, action: tf.Tensor) -> tf.Tensor:
    x = tf.concat([flat_float(observation), tf.cast(action, tf.float32)], axis=-1)
    return tf.squeeze(self.mlp(x), -1)


def copy_variables(source: tf.Module, target: tf.Module) -> None:
  """target's variables <- source's (same architecture, both already built)."""
  src, dst = source.variables, target.variables
  if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src, dst)):
    raise ValueError("copy_variables needs two modules of the same architecture")
  for a, b in zip(src, dst):
    b.assign(a)
