"""Seeded weight initializers: a network's initial parameters are a function of `config.seed` alone.

tf_keras initializers without a seed draw from TensorFlow's global random state, so
two processes with the same config built different networks (and any earlier random
op in the process changed them). An `Initializers` hands every layer its own
initializer with an explicit seed drawn, in construction order, from one numpy
generator keyed by (seed, stream): stateless, so nothing the caller did to Python's,
numpy's or TensorFlow's global random state reaches the weights.
"""

from __future__ import annotations

import zlib

import numpy as np
import tf_keras as keras


class Initializers:
  """A factory of seeded Keras initializers; one per network (its `stream` names it)."""

  def __init__(self, seed: int = 0, stream: str = ""):
    # SeedSequence mixes all its words, so nearby seeds and streams give unrelated draws.
    self._rng = np.random.default_rng([int(seed) % 2**32, zlib.crc32(stream.encode())])

  def seed(self) -> int:
    """The next layer's seed."""
    return int(self._rng.integers(2**31 - 1))

  def child(self, stream: str) -> Initializers:
    """An independent factory for a sub-network (its draws do not shift this one's)."""
    return Initializers(self.seed(), stream)

  def orthogonal(self, gain: float = 1.0) -> keras.initializers.Initializer:
    return keras.initializers.Orthogonal(gain, seed=self.seed())

  def glorot_uniform(self) -> keras.initializers.Initializer:
    return keras.initializers.GlorotUniform(seed=self.seed())

  def variance_scaling(self, scale: float = 1.0) -> keras.initializers.Initializer:
    return keras.initializers.VarianceScaling(scale, seed=self.seed())

  def lstm_cell(self, units: int, **kwargs) -> keras.layers.LSTMCell:
    """Keras's LSTMCell with its defaults (Glorot kernel, orthogonal recurrent kernel), seeded."""
    return keras.layers.LSTMCell(
      units, kernel_initializer=self.glorot_uniform(), recurrent_initializer=self.orthogonal(), **kwargs
    )
