"""Helpers every agent shares: nest type, time-major transposes, shape checks, masked means."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import tensorflow as tf
import tf_keras
from absl import logging as absl_logging

TensorLike = tf.types.experimental.TensorLike
# A tf.nest structure (tensor, spec or array leaves in dicts, tuples, lists, namedtuples).
Nest = Any


def time_major(x: tf.Tensor) -> tf.Tensor:
  """[B, T, ...] -> [T, B, ...] (also the inverse): unrolls are stored batch-major, losses run time-major."""
  return tf.transpose(x, [1, 0, *range(2, x.shape.rank)])


def check_rank(name: str, x: tf.Tensor, rank: int) -> None:
  if x.shape.rank is not None and x.shape.rank != rank:
    raise ValueError(f"{name} must have rank {rank}, got shape {x.shape}")


def check_same_shape(ref_name: str, ref_shape: tf.TensorShape, others: Sequence[tuple[str, tf.Tensor]]) -> None:
  for name, x in others:
    if not x.shape.is_compatible_with(ref_shape):
      raise ValueError(f"{name} has shape {x.shape}, incompatible with {ref_name} shape {ref_shape}")


def float_tensor(x: TensorLike, dtype: tf.DType | None = None) -> tf.Tensor:
  x = tf.convert_to_tensor(x, dtype_hint=tf.float32)
  if dtype is not None:
    return tf.cast(x, dtype)
  return x if x.dtype.is_floating else tf.cast(x, tf.float32)


def masked_mean(x_t: tf.Tensor, mask_t: TensorLike | None) -> tf.Tensor:
  """sum(x * mask) / max(sum(mask), 1); plain mean when mask_t is None."""
  if mask_t is None:
    return tf.reduce_mean(x_t)
  mask_t = float_tensor(mask_t, x_t.dtype)
  check_rank("mask_t", mask_t, 2)
  check_same_shape("[T, B] loss terms", x_t.shape, [("mask_t", mask_t)])
  # multiply_no_nan: a masked-out step contributes 0 even if its term is inf/NaN.
  total = tf.reduce_sum(tf.math.multiply_no_nan(x_t, mask_t))
  return total / tf.maximum(tf.reduce_sum(mask_t), tf.ones([], x_t.dtype))


def masked_std(x_t: tf.Tensor, mask_t: TensorLike) -> tf.Tensor:
  """Standard deviation of [T, B, ...] x_t over its real [T, B] steps (mask_t 1), one per trailing index."""
  mask_t = float_tensor(mask_t, x_t.dtype)
  check_rank("mask_t", mask_t, 2)
  w = mask_t / tf.maximum(tf.reduce_sum(mask_t), tf.ones([], x_t.dtype))
  w = tf.reshape(w, tf.concat([tf.shape(w), tf.ones([x_t.shape.rank - 2], tf.int32)], 0))
  mean = tf.reduce_sum(w * x_t, [0, 1])
  return tf.sqrt(tf.reduce_sum(w * tf.square(x_t - mean), [0, 1]))


def spreads(logits_t: tf.Tensor, values_t: tf.Tensor, mask_t: TensorLike) -> dict[str, tf.Tensor]:
  """How much V ([T, B]) and the logits ([T, B, A]; the mean over actions) vary across a batch's
  real states. A torso that stops telling states apart shows as both shrinking toward 0 long
  before the return says so."""
  return {
    "spread/value": masked_std(values_t, mask_t),
    "spread/logits": tf.reduce_mean(masked_std(logits_t, mask_t)),
  }


class _DropLibraryInfo(logging.Filter):
  """Drops INFO (and DEBUG) records logged from inside the given package directories."""

  def __init__(self, directories: Sequence[str]):
    super().__init__()
    self.directories = tuple(os.path.join(d, "") for d in directories)

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or not record.pathname.startswith(self.directories)


def quiet_tensorflow_logs() -> None:
  """Silences TensorFlow's and Keras's own INFO lines (saver, SavedModel builder, fingerprints).

  They log through absl's logger, which also carries ours, so a level on TF's
  logger alone does not stop them. Their warnings and errors stay. Idempotent.
  """
  tf.get_logger().setLevel("WARNING")
  absl = absl_logging.get_absl_logger()
  if not any(isinstance(f, _DropLibraryInfo) for f in absl.filters):
    absl.addFilter(_DropLibraryInfo([os.path.dirname(tf.__file__), os.path.dirname(tf_keras.__file__)]))
