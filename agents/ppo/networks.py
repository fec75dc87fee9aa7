"""PPO networks: observation normaliser, policy (categorical or tanh-Gaussian) and value (optionally PopArt)."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as keras

from agents.initializers import Initializers
from agents.sac.losses import tanh_gaussian


class RunningNormalizer(tf.Module):
  """Running mean/variance (Chan et al. parallel update); normalises and clips to [-clip, clip]."""

  def __init__(self, shape, clip: float = 10.0, name: str = "normalizer"):
    super().__init__(name=name)
    self.count = tf.Variable(1e-4, trainable=False)
    self.mean = tf.Variable(tf.zeros(shape), trainable=False)
    self.var = tf.Variable(tf.ones(shape), trainable=False)
    self.clip = clip

  def update(self, x: tf.Tensor) -> None:
    x = tf.reshape(tf.cast(x, tf.float32), [-1, *self.mean.shape])
    n = tf.cast(tf.shape(x)[0], tf.float32)
    mean, var = tf.nn.moments(x, axes=[0])
    total = self.count + n
    delta = mean - self.mean
    self.var.assign((self.var * self.count + var * n + tf.square(delta) * self.count * n / total) / total)
    self.mean.assign(self.mean + delta * n / total)
    self.count.assign(total)

  def __call__(self, x: tf.Tensor) -> tf.Tensor:
    z = (tf.cast(x, tf.float32) - self.mean) / tf.sqrt(self.var + 1e-8)
    return tf.clip_by_value(z, -self.clip, self.clip)


def _mlp(sizes: Sequence[int], out: int, out_scale: float, init: Initializers) -> keras.Sequential:
  """tanh hidden layers (orthogonal, gain sqrt(2)) and a linear output (orthogonal, gain out_scale);
  no hidden layer: a linear head on features (the conv torso's)."""
  layers = [keras.layers.Dense(n, activation="tanh", kernel_initializer=init.orthogonal(2**0.5)) for n in sizes]
  layers.append(keras.layers.Dense(out, kernel_initializer=init.orthogonal(out_scale)))
  return keras.Sequential(layers)


class Policy(tf.Module):
  """pi(a|s): categorical over logits, or a tanh-squashed Gaussian rescaled to the action bounds."""

  def __init__(
    self,
    action_space: gymnasium.Space,
    hidden: Sequence[int],
    initial_log_std: float,
    init: Initializers | None = None,
  ):
    super().__init__(name="policy")
    init = init or Initializers(0, "policy")
    self.discrete = isinstance(action_space, gymnasium.spaces.Discrete)
    if self.discrete:
      self.net = _mlp(hidden, int(action_space.n), 0.01, init)
    elif isinstance(action_space, gymnasium.spaces.Box) and len(action_space.shape) == 1:
      dim = action_space.shape[0]
      self.net = _mlp(hidden, dim, 0.01, init)
      self.log_std = tf.Variable(tf.fill([dim], float(initial_log_std)), name="log_std")
      self.low = tf.constant(action_space.low, tf.float32)
      self.high = tf.constant(action_space.high, tf.float32)
    else:
      raise ValueError(f"PPO supports Discrete and 1-D Box action spaces, got {action_space}")

  def distribution(self, x: tf.Tensor) -> tfp.distributions.Distribution:
    out = self.net(x)
    if self.discrete:
      return tfp.distributions.Categorical(logits=out)
    return tanh_gaussian(out, tf.broadcast_to(self.log_std, tf.shape(out)))

  def entropy(self, dist) -> tf.Tensor:
    # A tanh-Gaussian has no closed-form entropy: use the Gaussian's (a standard proxy).
    return dist.entropy() if self.discrete else dist.distribution.entropy()

  def to_env(self, raw: tf.Tensor) -> tf.Tensor:
    """Policy sample -> env action (tanh output in [-1, 1] rescaled to the bounds)."""
    if self.discrete:
      return tf.cast(raw, tf.int32)
    return self.low + (raw + 1.0) * 0.5 * (self.high - self.low)

  def mode(self, x: tf.Tensor) -> tf.Tensor:
    out = self.net(x)
    return tf.argmax(out, -1, output_type=tf.int32) if self.discrete else tf.tanh(out)


class Value(tf.Module):
  """V(s). With PopArt the head predicts a normalised value; `__call__` returns it unnormalised."""

  def __init__(self, hidden: Sequence[int], popart: bool, popart_step: float, init: Initializers | None = None):
    super().__init__(name="value")
    init = init or Initializers(0, "value")
    self.torso = keras.Sequential(
      [keras.layers.Dense(n, activation="tanh", kernel_initializer=init.orthogonal(2**0.5)) for n in hidden]
    )
    self.head = keras.layers.Dense(1, kernel_initializer=init.orthogonal(1.0))
    self.popart = popart
    self.step_size = popart_step
    self.mu = tf.Variable(0.0, trainable=False)
    self.nu = tf.Variable(1.0, trainable=False)  # second moment

  @property
  def sigma(self) -> tf.Tensor:
    return tf.sqrt(tf.maximum(self.nu - tf.square(self.mu), 1e-4))

  def normalized(self, x: tf.Tensor) -> tf.Tensor:
    return tf.squeeze(self.head(self.torso(x)), -1)

  def __call__(self, x: tf.Tensor) -> tf.Tensor:
    v = self.normalized(x)
    return v * self.sigma + self.mu if self.popart else v

  def update_stats(self, targets: tf.Tensor, mask: tf.Tensor) -> None:
    """PopArt: move mu/sigma toward the targets' moments and rescale the head so outputs are preserved."""
    if not self.popart:
      return
    n = tf.maximum(tf.reduce_sum(mask), 1.0)
    mean = tf.reduce_sum(targets * mask) / n
    second = tf.reduce_sum(tf.square(targets) * mask) / n
    old_mu, old_sigma = tf.identity(self.mu), self.sigma
    self.mu.assign((1 - self.step_size) * self.mu + self.step_size * mean)
    self.nu.assign((1 - self.step_size) * self.nu + self.step_size * second)
    kernel, bias = self.head.kernel, self.head.bias
    kernel.assign(kernel * old_sigma / self.sigma)
    bias.assign((old_sigma * bias + old_mu - self.mu) / self.sigma)

  def normalize_targets(self, targets: tf.Tensor) -> tf.Tensor:
    return (targets - self.mu) / self.sigma if self.popart else targets
