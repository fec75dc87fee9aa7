"""R2D2's recurrent Q-network: torso -> LSTM (reset where `first`) -> dueling heads.

Kapturowski et al. 2019 (R2D2), section 2 and appendix: a convolutional torso
(the DQN one for Atari), an LSTM core and a dueling head (Wang et al. 2016,
"Dueling Network Architectures for Deep Reinforcement Learning",
arXiv:1511.06581, eq. 9: Q = V + A - mean_a A).

The LSTM state is zeroed before any step whose observation starts an episode,
both in single steps (inference) and in unrolls (training), so a stored
sequence crossing an episode boundary replays exactly what the actor computed.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tf_keras as keras

from agents.initializers import Initializers
from agents.torsos import make_torso


class DuelingHead(tf.Module):
  """Q(s, a) = V(s) + A(s, a) - mean_a A(s, a), each stream an MLP (hidden: 0 = linear)."""

  def __init__(self, num_actions: int, hidden: int, dueling: bool = True, init: Initializers | None = None):
    super().__init__(name="dueling_head")
    init = init or Initializers(0, "dueling_head")
    dense = lambda n, **kw: keras.layers.Dense(n, kernel_initializer=init.glorot_uniform(), **kw)
    hidden_layers = lambda: [dense(hidden, activation="relu")] if hidden else []
    self.dueling = dueling
    self.advantage = hidden_layers() + [dense(num_actions)]
    self.value = (hidden_layers() + [dense(1)]) if dueling else []

  def __call__(self, x: tf.Tensor) -> tf.Tensor:
    a = x
    for layer in self.advantage:
      a = layer(a)
    if not self.dueling:
      return a
    v = x
    for layer in self.value:
      v = layer(v)
    return v + a - tf.reduce_mean(a, axis=-1, keepdims=True)


class RecurrentQNetwork(tf.Module):
  """Torso -> LSTM -> dueling Q head. State: the LSTM's (h, c), each [B, lstm_size]."""

  def __init__(
    self,
    num_actions: int,
    torso: str = "mlp",
    mlp_sizes: Sequence[int] = (64,),
    cnn_hidden: int = 512,
    lstm_size: int = 64,
    head_hidden: int = 64,
    dueling: bool = True,
    compute_dtype: str = "float32",
    init: Initializers | None = None,
  ):
    super().__init__(name="recurrent_q_network")
    init = init or Initializers(0, "recurrent_q_network")
    if lstm_size < 1:
      raise ValueError(f"R2D2 needs an LSTM: lstm_size must be >= 1, got {lstm_size}")
    self.num_actions = num_actions
    self.lstm_size = lstm_size
    self.torso = make_torso(torso, mlp_sizes, cnn_hidden, compute_dtype, init.child("torso"))
    self.core = init.lstm_cell(lstm_size)
    self.head = DuelingHead(num_actions, head_hidden, dueling, init.child("head"))

  @property
  def state_spec(self):
    return (tf.TensorSpec([self.lstm_size], tf.float32), tf.TensorSpec([self.lstm_size], tf.float32))

  def initial_state(self, batch_size):
    return tuple(tf.zeros([batch_size, self.lstm_size]) for _ in range(2))

  @staticmethod
  def _reset(first: tf.Tensor, state):
    keep = tf.cast(tf.logical_not(first), tf.float32)[:, None]
    return tuple(s * keep for s in state)

  def __call__(self, observation, first, state):
    """One step for a batch: Q-values [B, A] and the new state."""
    x = self.torso(observation)
    x, new_state = self.core(x, list(self._reset(first, state)))
    return self.head(x), tuple(new_state)

  def unroll(self, observation, first, state):
    """Time-major sequence [T, B, ...] from `state` (the state before step 0).

    Returns (Q-values [T, B, A], the state after the last step).
    """
    t, b = tf.shape(first)[0], tf.shape(first)[1]
    flat = tf.reshape(observation, tf.concat([[t * b], tf.shape(observation)[2:]], 0))
    x = self.torso(flat)
    x = tf.reshape(x, [t, b, x.shape[-1]])

    def cell(carry, inputs):
      _, state = carry
      xt, ft = inputs
      out, new = self.core(xt, list(self._reset(ft, state)))
      return out, tuple(new)

    outputs, states = tf.scan(cell, (x, first), initializer=(tf.zeros([b, self.lstm_size]), tuple(state)))
    final_state = tuple(s[-1] for s in states)
    return self.head(outputs), final_state
