"""Shared torsos: the DQN torso's published shapes, bfloat16 compute against float32, clear errors."""

import numpy as np
import pytest
import tensorflow as tf

from agents import torsos
from agents.vtrace import networks


def _frames(n=3, seed=0):
  return tf.constant(np.random.default_rng(seed).integers(0, 256, size=(n, 84, 84, 4)).astype(np.uint8))


def test_nature_cnn_has_the_dqn_papers_layers():
  torso = torsos.NatureCNN()
  features = torso(_frames())
  assert features.shape == (3, 512) and features.dtype == tf.float32
  kernels = [v.shape.as_list() for v in torso.trainable_variables if "kernel" in v.name]
  # Mnih et al. 2015: 32 8x8/4, 64 4x4/2, 64 3x3/1 -> 7x7x64, then 512 units.
  assert kernels == [[8, 8, 4, 32], [4, 4, 32, 64], [3, 3, 64, 64], [7 * 7 * 64, 512]]
  assert sum(int(np.prod(v.shape)) for v in torso.trainable_variables) == 1_684_128


@pytest.mark.parametrize("name", ["nature_cnn", "impala_cnn"])
def test_bfloat16_torso_keeps_float32_variables_and_matches_float32(name):
  tf.random.set_seed(0)
  full = torsos.make_torso(name)
  half = torsos.make_torso(name, compute_dtype="bfloat16")
  frames = _frames()
  full(frames), half(frames)
  for a, b in zip(full.trainable_variables, half.trainable_variables):
    assert b.dtype == tf.float32
    b.assign(a)
  x, y = full(frames).numpy(), half(frames).numpy()
  assert y.dtype == np.float32
  # bfloat16 keeps 8 bits of mantissa: agreement to a few percent of the features' scale.
  assert np.abs(x - y).max() < 0.05 * np.abs(x).max()
  assert not np.array_equal(x, y)  # it did compute in bfloat16


def test_actor_critic_on_the_nature_torso_unrolls_like_it_steps():
  net = networks.ActorCritic(6, "nature_cnn", compute_dtype="bfloat16")
  frames = tf.reshape(_frames(6), [2, 3, 84, 84, 4])  # [B, T, ...]
  first = tf.constant([[True, False], [False, True], [False, False]])
  logits, values = net.unroll(frames, first, ())
  assert logits.shape == (3, 2, 6) and values.shape == (3, 2)
  for t in range(3):
    (step_logits, step_value), _ = net(frames[:, t], first[t], ())
    np.testing.assert_allclose(logits[t], step_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(values[t], step_value, rtol=1e-5, atol=1e-5)


def test_unknown_torso_or_dtype_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown torso 'resnet'.*nature_cnn"):
    torsos.make_torso("resnet")
  with pytest.raises(ValueError, match="unknown compute_dtype 'float16'.*bfloat16"):
    torsos.make_torso("nature_cnn", compute_dtype="float16")
  with pytest.raises(ValueError, match="unknown MLP activation 'gelu'.*tanh"):
    torsos.make_torso("mlp", mlp_activation="gelu")


def test_mlp_activation_relu_reports_dead_units_and_tanh_does_not():
  x = tf.constant(np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32))
  relu = torsos.make_torso("mlp", (16, 8))
  tanh = torsos.make_torso("mlp", (16, 8), mlp_activation="tanh")
  (f_relu, acts_relu), (f_tanh, acts_tanh) = relu.forward(x), tanh.forward(x)
  assert relu.layer_names == ("dense1", "dense2") and set(acts_relu) == {"dense1", "dense2"}
  assert (f_relu.numpy() >= 0).all()
  # tanh units are never zero for every input: nothing to report; outputs take both signs.
  assert tanh.layer_names == () and acts_tanh == {}
  assert (np.abs(f_tanh.numpy()) < 1).all() and (f_tanh.numpy() < 0).any()
