"""Actor-critic networks: a torso (agents.torsos), optional LSTM core, policy and value heads."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tf_keras as keras

from agents.initializers import Initializers
from agents.torsos import MLP, dead_fractions, make_torso


def _heads_initializer(num_actions: int, init: Initializers):
  """Policy columns near zero (an almost uniform first policy), the value column Glorot."""
  policy = init.variance_scaling(0.01)
  value = init.glorot_uniform()

  def init(shape, dtype=None):
    return tf.concat([policy([shape[0], num_actions], dtype), value([shape[0], 1], dtype)], axis=-1)

  return init


class ActorCritic(tf.Module):
  """Torso -> (LSTM) -> policy logits and value. The LSTM state resets where `first` is set.

  The policy and value heads are one matmul (one pass over the features, which
  for the linear torso are the raw frames). With the linear torso and no LSTM,
  the 1/255 frame scaling is applied after that matmul instead of to every
  pixel: the same function, two passes over the frames fewer.
  """

  def __init__(
    self,
    num_actions: int,
    torso: str,
    mlp_sizes: Sequence[int] = (64, 64),
    lstm_size: int = 0,
    compute_dtype: str = "float32",
    init: Initializers | None = None,
    mlp_activation: str = "relu",
  ):
    super().__init__(name="actor_critic")
    init = init or Initializers()
    if torso == "linear":  # no hidden layer: benchmarks the runtime, not the model
      self.torso = MLP(())
    else:
      self.torso = make_torso(
        torso, mlp_sizes, compute_dtype=compute_dtype, init=init.child("torso"), mlp_activation=mlp_activation
      )
    self.num_actions = num_actions
    self._fold_frame_scale = torso == "linear" and not lstm_size
    self.lstm_size = lstm_size
    self.core = init.lstm_cell(lstm_size) if lstm_size else None
    self.heads = keras.layers.Dense(num_actions + 1, kernel_initializer=_heads_initializer(num_actions, init))

  @property
  def state_spec(self):
    if not self.core:
      return ()
    return (tf.TensorSpec([self.lstm_size], tf.float32), tf.TensorSpec([self.lstm_size], tf.float32))

  def initial_state(self, batch_size):
    return tf.nest.map_structure(lambda s: tf.zeros([batch_size, *s.shape], s.dtype), self.state_spec)

  def _torso(self, observation, stats: dict | None = None):
    """[N, ...] observations -> ([N, F] features, factor the heads apply after their matmul).
    A `stats` dict gets the torso's dead-unit fractions (torsos.dead_fractions)."""
    if self._fold_frame_scale and observation.dtype == tf.uint8:
      return tf.reshape(tf.cast(observation, tf.float32), [tf.shape(observation)[0], -1]), 1.0 / 255.0
    features, activations = self.torso.forward(observation)
    if stats is not None:
      stats.update(dead_fractions(activations))
    return features, 1.0

  def _heads(self, x, scale=1.0):
    """[N, F] features -> (logits [N, A], value [N])."""
    if not self.heads.built:
      self.heads.build(x.shape)
    out = tf.matmul(x, self.heads.kernel)
    if scale != 1.0:
      out = out * scale
    out = tf.nn.bias_add(out, self.heads.bias)
    return out[:, : self.num_actions], out[:, self.num_actions]

  def __call__(self, observation, first, state):
    """One step for a batch: returns (logits [B, A], value [B]), new state."""
    x, scale = self._torso(observation)
    if self.core:
      state = self._reset(first, state)
      x, state = self.core(x, list(state))
      state = tuple(state)
    return self._heads(x, scale), state

  def _reset(self, first, state):
    keep = tf.cast(tf.logical_not(first), tf.float32)[:, None]
    return tuple(s * keep for s in state)

  def unroll(self, observation, first, state, stats: dict | None = None):
    """Sequences: `observation` batch-major [B, T, ...], `first` time-major [T, B].

    Returns time-major (logits [T, B, A], values [T, B]). The torso runs on the
    frames as they come out of the queue; only its small outputs are transposed.
    A `stats` dict passed in gets the torso's dead-unit fractions over the batch.
    """
    b, t = tf.shape(first)[1], tf.shape(first)[0]
    flat = tf.nest.map_structure(lambda o: tf.reshape(o, tf.concat([[b * t], tf.shape(o)[2:]], 0)), observation)
    x, scale = self._torso(flat, stats)
    if not self.core:  # heads batch-major too (the linear torso's features are the frames)
      logits, values = self._heads(x, scale)
      to_time_major = lambda y, *inner: tf.transpose(tf.reshape(y, [b, t, *inner]), [1, 0, *range(2, 2 + len(inner))])
      return to_time_major(logits, self.num_actions), to_time_major(values)
    x = tf.transpose(tf.reshape(x, [b, t, x.shape[-1]]), [1, 0, 2])

    def cell(carry, inputs):
      _, state = carry
      xt, ft = inputs
      out, new = self.core(xt, list(self._reset(ft, state)))
      return out, tuple(new)

    x, _ = tf.scan(cell, (x, first), initializer=(tf.zeros([b, self.lstm_size]), tuple(state)))
    logits, values = self._heads(tf.reshape(x, [t * b, x.shape[-1]]), scale)
    return tf.reshape(logits, [t, b, self.num_actions]), tf.reshape(values, [t, b])
