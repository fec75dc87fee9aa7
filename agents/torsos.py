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

from agents.initializers import Initializers

COMPUTE_DTYPES = ("float32", "bfloat16", "auto")
# Activations by layer name, each [N, ..., units] after its ReLU (what `dead_fractions` reads).
Activations = dict[str, tf.Tensor]


def native_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
  """Whether this host runs bfloat16 math natively: a GPU or TPU, or a CPU with AVX512-BF16 or AMX.
  Elsewhere bfloat16 is emulated and slower than float32 (an AVX2-only EPYC: 0.6-0.9x)."""
  if tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"):
    return True
  try:
    with open(cpuinfo) as f:
      flags = set(next((line for line in f if line.startswith("flags")), "").split())
  except OSError:
    return False
  return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_compute_dtype(compute_dtype: str) -> str:
  """ "float32" or "bfloat16"; "auto" picks bfloat16 only where `native_bfloat16()`."""
  if compute_dtype not in COMPUTE_DTYPES:
    raise ValueError(f"unknown compute_dtype {compute_dtype!r}; choose one of {COMPUTE_DTYPES}")
  if compute_dtype == "auto":
    return "bfloat16" if native_bfloat16() else "float32"
  return compute_dtype


def _layer_dtype(compute_dtype: str):
  return keras.mixed_precision.Policy("mixed_bfloat16") if compute_dtype == "bfloat16" else "float32"


def _scaled_frames(frames: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
  # A multiply, not a divide: a float divide per pixel costs ~4x more
  # wherever no grappler pass rewrites it.
  return tf.cast(frames, dtype) * tf.constant(1.0 / 255.0, dtype)


def dead_fractions(activations: Activations) -> dict[str, tf.Tensor]:
  """{"dead/<layer>": fraction of the layer's units (channels for a conv) that are zero
  for every input of the batch and every position}: a unit no input moves gets no gradient."""
  out = {}
  for name, x in activations.items():
    peak = tf.reduce_max(tf.reshape(tf.cast(x, tf.float32), [-1, x.shape[-1]]), axis=0)
    out[f"dead/{name}"] = tf.reduce_mean(tf.cast(peak <= 0.0, tf.float32))
  return out


class Torso(tf.Module):
  """Observations [N, ...] -> features [N, F] float32; `forward` also returns each layer's activations
  (keyed by `layer_names`)."""

  layer_names: tuple[str, ...] = ()

  def forward(self, x: tf.Tensor) -> tuple[tf.Tensor, Activations]:
    raise NotImplementedError

  def __call__(self, x: tf.Tensor) -> tf.Tensor:
    return self.forward(x)[0]


class NatureCNN(Torso):
  """The DQN torso (Mnih et al. 2015, "Human-level control through deep reinforcement
  learning", Methods): conv 32x8x8/4, 64x4x4/2, 64x3x3/1, then a dense layer, on uint8 frames."""

  def __init__(self, hidden: int = 512, compute_dtype: str = "float32", init: Initializers | None = None):
    super().__init__(name="nature_cnn")
    compute_dtype = resolve_compute_dtype(compute_dtype)
    dtype = _layer_dtype(compute_dtype)
    self.compute_dtype = tf.as_dtype(compute_dtype)
    init = init or Initializers()
    # Orthogonal weights with gain sqrt(2) (the ReLU gain), as OpenAI Baselines' and CleanRL's
    # Atari agents do. Keras's default Glorot init gives this stack's first layers 3-9x less
    # weight variance than a ReLU stack needs: on Pong frames its features came out 5x smaller
    # and 6x less varied across states.
    relu = lambda: init.orthogonal(2**0.5)  # noqa: E731
    self.convs = [
      keras.layers.Conv2D(32, 8, 4, activation="relu", kernel_initializer=relu(), dtype=dtype),
      keras.layers.Conv2D(64, 4, 2, activation="relu", kernel_initializer=relu(), dtype=dtype),
      keras.layers.Conv2D(64, 3, 1, activation="relu", kernel_initializer=relu(), dtype=dtype),
    ]
    self.flatten = keras.layers.Flatten(dtype=dtype)
    self.dense = keras.layers.Dense(hidden, activation="relu", kernel_initializer=relu(), dtype=dtype)
    self.layer_names = ("conv1", "conv2", "conv3", "dense")

  def forward(self, frames: tf.Tensor) -> tuple[tf.Tensor, Activations]:
    x = _scaled_frames(frames, self.compute_dtype)
    acts = {}
    for i, conv in enumerate(self.convs):
      x = acts[f"conv{i + 1}"] = conv(x)
    x = acts["dense"] = self.dense(self.flatten(x))
    return tf.cast(x, tf.float32), acts


class ImpalaCNN(Torso):
  """The deep residual torso of Espeholt et al. 2018 (IMPALA), fig. 3 (right)."""

  def __init__(
    self,
    channels: Sequence[int] = (16, 32, 32),
    hidden: int = 256,
    compute_dtype: str = "float32",
    init: Initializers | None = None,
  ):
    super().__init__(name="impala_cnn")
    compute_dtype = resolve_compute_dtype(compute_dtype)
    dtype = _layer_dtype(compute_dtype)
    self.compute_dtype = tf.as_dtype(compute_dtype)
    init = init or Initializers()
    self.stacks = []
    for c in channels:
      conv = lambda: keras.layers.Conv2D(c, 3, padding="same", kernel_initializer=init.glorot_uniform(), dtype=dtype)
      pool = keras.layers.MaxPool2D(3, 2, padding="same", dtype=dtype)
      self.stacks.append((conv(), pool, [(conv(), conv()), (conv(), conv())]))
    self.flatten = keras.layers.Flatten(dtype=dtype)
    self.dense = keras.layers.Dense(hidden, activation="relu", kernel_initializer=init.glorot_uniform(), dtype=dtype)
    self.layer_names = (*(f"stack{i + 1}" for i in range(len(channels))), "dense")

  def forward(self, frames: tf.Tensor) -> tuple[tf.Tensor, Activations]:
    x = _scaled_frames(frames, self.compute_dtype)
    acts = {}
    for i, (conv, pool, blocks) in enumerate(self.stacks):
      x = pool(conv(x))
      for a, b in blocks:
        x = x + b(tf.nn.relu(a(tf.nn.relu(x))))
      acts[f"stack{i + 1}"] = tf.nn.relu(x)
    x = acts["dense"] = self.dense(self.flatten(acts[f"stack{len(self.stacks)}"]))
    return tf.cast(x, tf.float32), acts


MLP_ACTIVATIONS = ("relu", "tanh")


class MLP(Torso):
  """Dense layers (ReLU or tanh) on the flattened observation (uint8 observations are scaled to [0, 1]).

  A tanh unit never dies, so a tanh MLP reports no dead-unit fractions (no `layer_names`)."""

  def __init__(self, sizes: Sequence[int], init: Initializers | None = None, activation: str = "relu"):
    super().__init__(name="mlp")
    if activation not in MLP_ACTIVATIONS:
      raise ValueError(f"unknown MLP activation {activation!r}; choose one of {MLP_ACTIVATIONS}")
    init = init or Initializers()
    self.layers = [
      keras.layers.Dense(n, activation=activation, kernel_initializer=init.glorot_uniform()) for n in sizes
    ]
    self._report = activation == "relu"
    self.layer_names = tuple(f"dense{i + 1}" for i in range(len(sizes))) if self._report else ()

  def forward(self, x: tf.Tensor) -> tuple[tf.Tensor, Activations]:
    x = _scaled_frames(x, tf.float32) if x.dtype == tf.uint8 else tf.cast(x, tf.float32)
    x = tf.reshape(x, [tf.shape(x)[0], -1])
    acts = {}
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if self._report:
        acts[f"dense{i + 1}"] = x
    return x, acts


TORSOS = ("mlp", "nature_cnn", "impala_cnn")


def make_torso(
  torso: str,
  mlp_sizes: Sequence[int] = (64, 64),
  cnn_hidden: int | None = None,
  compute_dtype: str = "float32",
  init: Initializers | None = None,
  mlp_activation: str = "relu",
) -> Torso:
  """`torso` by name; `cnn_hidden` (the conv torsos' dense width) defaults to the paper's (512 DQN, 256 IMPALA)."""
  if torso == "mlp":
    return MLP(mlp_sizes, init, mlp_activation)
  if torso == "nature_cnn":
    return NatureCNN(cnn_hidden or 512, compute_dtype, init)
  if torso == "impala_cnn":
    return ImpalaCNN(hidden=cnn_hidden or 256, compute_dtype=compute_dtype, init=init)
  raise ValueError(f"unknown torso {torso!r}; choose one of {TORSOS}")
