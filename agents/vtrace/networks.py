"""Actor-critic networks: MLP or IMPALA CNN torso, optional LSTM core, policy and value heads."""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf
import tf_keras as keras


class ImpalaCNN(tf.Module):
  """The deep residual torso of Espeholt et al. 2018 (IMPALA), fig. 3 (right)."""

  def __init__(self, channels: Sequence[int] = (16, 32, 32), hidden: int = 256):
    super().__init__(name="impala_cnn")
    self.stacks = []
    for c in channels:
      conv = lambda: keras.layers.Conv2D(c, 3, padding="same")
      self.stacks.append((conv(), keras.layers.MaxPool2D(3, 2, padding="same"), [(conv(), conv()), (conv(), conv())]))
    self.flatten = keras.layers.Flatten()
    self.dense = keras.layers.Dense(hidden, activation="relu")

  def __call__(self, frames: tf.Tensor) -> tf.Tensor:
    x = tf.cast(frames, tf.float32) / 255.0
    for conv, pool, blocks in self.stacks:
      x = pool(conv(x))
      for a, b in blocks:
        x = x + b(tf.nn.relu(a(tf.nn.relu(x))))
    return self.dense(self.flatten(tf.nn.relu(x)))


class MLP(tf.Module):
  def __init__(self, sizes: Sequence[int]):
    super().__init__(name="mlp")
    self.layers = [keras.layers.Dense(n, activation="relu") for n in sizes]

  def __call__(self, x: tf.Tensor) -> tf.Tensor:
    x = tf.cast(x, tf.float32) / 255.0 if x.dtype == tf.uint8 else tf.cast(x, tf.float32)
    x = tf.reshape(x, [tf.shape(x)[0], -1])
    for layer in self.layers:
      x = layer(x)
    return x


class ActorCritic(tf.Module):
  """Torso -> (LSTM) -> policy logits and value. The LSTM state resets where `first` is set."""

  def __init__(self, num_actions: int, torso: str, mlp_sizes: Sequence[int] = (64, 64), lstm_size: int = 0):
    super().__init__(name="actor_critic")
    if torso == "mlp":
      self.torso = MLP(mlp_sizes)
    elif torso == "linear":  # no hidden layer: benchmarks the runtime, not the model
      self.torso = MLP(())
    elif torso == "impala_cnn":
      self.torso = ImpalaCNN()
    else:
      raise ValueError(f"unknown torso {torso!r}; choose 'mlp', 'linear' or 'impala_cnn'")
    self.lstm_size = lstm_size
    self.core = keras.layers.LSTMCell(lstm_size) if lstm_size else None
    self.policy_head = keras.layers.Dense(num_actions, kernel_initializer=keras.initializers.VarianceScaling(0.01))
    self.value_head = keras.layers.Dense(1)

  @property
  def state_spec(self):
    if not self.core:
      return ()
    return (tf.TensorSpec([self.lstm_size], tf.float32), tf.TensorSpec([self.lstm_size], tf.float32))

  def initial_state(self, batch_size):
    return tf.nest.map_structure(lambda s: tf.zeros([batch_size, *s.shape], s.dtype), self.state_spec)

  def _heads(self, x):
    return self.policy_head(x), tf.squeeze(self.value_head(x), -1)

  def __call__(self, observation, first, state):
    """One step for a batch: returns (logits [B, A], value [B]), new state."""
    x = self.torso(observation)
    if self.core:
      state = self._reset(first, state)
      x, state = self.core(x, list(state))
      state = tuple(state)
    return self._heads(x), state

  def _reset(self, first, state):
    keep = tf.cast(tf.logical_not(first), tf.float32)[:, None]
    return tuple(s * keep for s in state)

  def unroll(self, observation, first, state):
    """Time-major sequence [T, B, ...]: returns (logits [T, B, A], values [T, B])."""
    t, b = tf.shape(first)[0], tf.shape(first)[1]
    flat = tf.nest.map_structure(lambda o: tf.reshape(o, tf.concat([[t * b], tf.shape(o)[2:]], 0)), observation)
    x = self.torso(flat)
    x = tf.reshape(x, [t, b, x.shape[-1]])
    if self.core:
      def cell(carry, inputs):
        _, state = carry
        xt, ft = inputs
        out, new = self.core(xt, list(self._reset(ft, state)))
        return out, tuple(new)
      x, _ = tf.scan(cell, (x, first), initializer=(tf.zeros([b, self.lstm_size]), tuple(state)))
    return self._heads(x)
