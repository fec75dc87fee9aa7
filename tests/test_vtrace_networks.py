"""V-trace actor-critic networks: a sequence unroll equals stepping, and the fused heads compute the textbook heads."""

import numpy as np
import pytest
import tensorflow as tf

from agents.vtrace import networks

T, B, A = 5, 3, 4


def _inputs(torso, rng):
  if torso == "mlp":
    obs = rng.normal(size=(B, T, 6)).astype(np.float32)
  else:  # frames
    obs = rng.integers(0, 256, size=(B, T, 8, 8, 2)).astype(np.uint8)
  first = rng.random((T, B)) < 0.3
  return tf.constant(obs), tf.constant(first)


@pytest.mark.parametrize("torso,lstm", [("mlp", 0), ("mlp", 8), ("linear", 0), ("linear", 8), ("impala_cnn", 0)])
def test_unroll_matches_stepping(torso, lstm):
  tf.random.set_seed(1)
  net = networks.ActorCritic(A, torso, (16,), lstm)
  obs, first = _inputs(torso, np.random.default_rng(0))
  state = tuple(tf.random.normal([B, *s.shape]) for s in tf.nest.flatten(net.state_spec))
  logits, values = net.unroll(obs, first, state)  # batch-major frames, time-major flags
  assert logits.shape == (T, B, A) and values.shape == (T, B)
  step_state = state
  for t in range(T):
    (step_logits, step_value), step_state = net(obs[:, t], first[t], step_state)
    np.testing.assert_allclose(logits[t].numpy(), step_logits.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(values[t].numpy(), step_value.numpy(), rtol=1e-4, atol=1e-5)


def test_linear_torso_on_frames_is_a_linear_function_of_scaled_pixels():
  """The 1/255 folded behind the matmul: logits = (x / 255) W + b exactly as written in the paper's torso-free form."""
  net = networks.ActorCritic(A, "linear")
  frames = tf.constant(np.random.default_rng(2).integers(0, 256, size=(B, 8, 8, 2)).astype(np.uint8))
  (logits, value), _ = net(frames, tf.zeros([B], tf.bool), ())
  x = tf.reshape(tf.cast(frames, tf.float32) / 255.0, [B, -1]).numpy().astype(np.float64)
  w, b = net.heads.kernel.numpy().astype(np.float64), net.heads.bias.numpy().astype(np.float64)
  want = x @ w + b
  np.testing.assert_allclose(logits.numpy(), want[:, :A], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(value.numpy(), want[:, A], rtol=1e-4, atol=1e-5)


def test_heads_start_with_a_near_uniform_policy():
  net = networks.ActorCritic(A, "mlp", (16,))
  (logits, _), _ = net(tf.random.normal([64, 6]), tf.zeros([64], tf.bool), ())
  assert np.abs(logits.numpy()).max() < 0.3  # policy columns initialised at scale 0.01
  kernel = net.heads.kernel.numpy()
  assert kernel.shape == (16, A + 1)
  assert np.abs(kernel[:, A]).max() > 5 * np.abs(kernel[:, :A]).max()  # value column: Glorot, not 0.01
