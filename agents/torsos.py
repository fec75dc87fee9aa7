"""Feature torsos shared by the agents: an MLP for vectors, the DQN and IMPALA conv nets for frames.

The conv torsos can compute in bfloat16 (`compute_dtype`): variables stay float32, the
convolutions and the dense layer run in bfloat16 (oneDNN uses AVX512-BF16/AMX where the
CPU has them, and TPUs natively), and the features come out as float32 so the heads,
losses and optimizer are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tf_keras as keras

COMPUTE_DTYPES = ("float32", "bfloat16")


def _layer_dtype(compute_dtype: str):
  if compute_dtype not in COMPUTE_DTYPES:
    raise ValueError(f"unknown compute_dtype {compute_dtype!r}; choose one of {COMPUTE_DTYPES}")
  return keras.mixed_precision.Policy("mixed_bfloat16") if compute_dtype == "bfloat16" else "float32"


def _scaled_frames(frames: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
  # A multiply, not a divide: a float divide per pixel costs ~4x more
  # wherever no grappler pass rewrites it.
  return tf.cast(frames, dtype) * tf.constant(1.0 / 255.0, dtype)


class NatureCNN(tf.Module):
  """The DQN torso (Mnih et al. 2015, "Human-level control through deep reinforcement
  learning", Methods): conv 32x8x8/4, 64x4x4/2, 64x3x3/1, then a dense layer, on uint8 frames."""

  def __init__(self, hidden: int = 512, compute_dtype: str = "float32"):
    super().__init__(name="nature_cnn")
    dtype = _layer_dtype(compute_dtype)
    self.compute_dtype = tf.as_dtype(compute_dtype)
    # Orthogonal weights with gain sqrt(2) (the ReLU gain), as OpenAI Baselines' and CleanRL's
    # Atari agents do. Keras's default Glorot init gives this stack's first layers 3-9x less
    # weight variance than a ReLU stack needs: on Pong frames its features came out 5x smaller
    # and 6x less varied across states. (Neither init has yet made V-trace learn Pong here.)
    init = lambda: keras.initializers.Orthogonal(2**0.5)  # noqa: E731  (one per layer: Keras warns on reuse)
    self.convs = [
      keras.layers.Conv2D(32, 8, 4, activation="relu", kernel_initializer=init(), dtype=dtype),
      keras.layers.Conv2D(64, 4, 2, activation="relu", kernel_initializer=init(), dtype=dtype),
      keras.layers.Conv2D(64, 3, 1, activation="relu", kernel_initializer=init(), dtype=dtype),
    ]
    self.flatten = keras.layers.Flatten(dtype=dtype)
    self.dense = keras.layers.Dense(hidden, activation="relu", kernel_initializer=init(), dtype=dtype)

  def __call__(self, frames: tf.Tensor) -> tf.Tensor:
    x = _scaled_frames(frames, self.compute_dtype)
    for conv in self.convs:
      x = conv(x)
    return tf.cast(self.dense(self.flatten(x)), tf.float32)


class ImpalaCNN(tf.Module):
  """The deep residual torso of Espeholt et al. 2018 (IMPALA), fig. 3 (right)."""

  def __init__(self, channels: Sequence[int] = (16, 32, 32), hidden: int = 256, compute_dtype: str = "float32"):
    super().__init__(name="impala_cnn")
    dtype = _layer_dtype(compute_dtype)
    self.compute_dtype = tf.as_dtype(compute_dtype)
    self.stacks = []
    for c in channels:
      conv = lambda: keras.layers.Conv2D(c, 3, padding="same", dtype=dtype)
      pool = keras.layers.MaxPool2D(3, 2, padding="same", dtype=dtype)
      self.stacks.append((conv(), pool, [(conv(), conv()), (conv(), conv())]))
    self.flatten = keras.layers.Flatten(dtype=dtype)
    self.dense = keras.layers.Dense(hidden, activation="relu", dtype=dtype)

  def __call__(self, frames: tf.Tensor) -> tf.Tensor:
    x = _scaled_frames(frames, self.compute_dtype)
    for conv, pool, blocks in self.stacks:
      x = pool(conv(x))
      for a, b in blocks:
        x = x + b(tf.nn.relu(a(tf.nn.relu(x))))
    return tf.cast(self.dense(self.flatten(tf.nn.relu(x))), tf.float32)


class MLP(tf.Module):
  """Dense ReLU layers on the flattened observation (uint8 observations are scaled to [0, 1])."""

  def __init__(self, sizes: Sequence[int]):
    super().__init__(name="mlp")
    self.layers = [keras.layers.Dense(n, activation="relu") for n in sizes]

  def __call__(self, x: tf.Tensor) -> tf.Tensor:
    x = _scaled_frames(x, tf.float32) if x.dtype == tf.uint8 else tf.cast(x, tf.float32)
    x = tf.reshape(x, [tf.shape(x)[0], -1])
    for layer in self.layers:
      x = layer(x)
    return x


TORSOS = ("mlp", "nature_cnn", "impala_cnn")


def make_torso(
  torso: str, mlp_sizes: Sequence[int] = (64, 64), cnn_hidden: int | None = None, compute_dtype: str = "float32"
) -> tf.Module:
  """`torso` by name; `cnn_hidden` (the conv torsos' dense width) defaults to the paper's (512 DQN, 256 IMPALA)."""
  if torso == "mlp":
    return MLP(mlp_sizes)
  if torso == "nature_cnn":
    return NatureCNN(cnn_hidden or 512, compute_dtype)
  if torso == "impala_cnn":
    return ImpalaCNN(hidden=cnn_hidden or 256, compute_dtype=compute_dtype)
  raise ValueError(f"unknown torso {torso!r}; choose one of {TORSOS}")
