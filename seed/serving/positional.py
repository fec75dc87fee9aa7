"""A signature function called with positional arguments: how the C++ servers bind a SavedModel signature."""

from __future__ import annotations

import re

import tensorflow as tf

from seed.serving.models import Signature


def _natural_key(name: str) -> list:
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def input_order(sig: Signature) -> list[str]:
  """The input names sorted with numbers compared as numbers: (observation, state_0, ..., state_10)."""
  return sorted(sig.inputs, key=_natural_key)


def positional_function(sig: Signature) -> tuple[tf.types.experimental.PolymorphicFunction, list[str]]:
  """A tf.function with a positional input_signature (in input_order) calling the signature; its output is
  the signature's dict (flattened in sorted key order)."""
  names = input_order(sig)
  specs = [tf.TensorSpec(sig.inputs[n].shape, sig.inputs[n].dtype, name=n) for n in names]
  fn = sig.fn

  def call(*args):
    return dict(fn(**dict(zip(names, args))))

  return tf.function(call, input_signature=specs), names
