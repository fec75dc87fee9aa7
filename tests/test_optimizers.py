"""agents/optimizers.py: the warm-up/decay schedule, RMSProp with TF1's initial mean square, clip and choice."""

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from agents import optimizers


def _config(**fields):
  c = ml_collections.ConfigDict(
    {
      "optimizer": "adam",
      "learning_rate": 1e-3,
      "warmup_steps": 0,
      "lr_decay": False,
      "adam_epsilon": 1e-7,
      "max_grad_norm": 0.0,
      "rmsprop_decay": 0.99,
      "rmsprop_epsilon": 1e-7,
      "rmsprop_initial_mean_square": 1.0,
    }
  )
  c.update(fields)
  return c


def test_warmup_then_linear_decay():
  schedule = optimizers.WarmupLinearDecay(1e-3, warmup_steps=4, decay_steps=10)
  got = [float(schedule(s)) for s in range(12)]
  expected = [1e-3 * min(1.0, (s + 1) / 4) * max(0.0, 1.0 - s / 10) for s in range(12)]
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  assert got[-1] == 0.0  # decayed to 0 by the end of the run
  assert float(optimizers.WarmupLinearDecay(1e-3)(1000)) == pytest.approx(1e-3)  # neither: constant


def test_rmsprop_starts_its_mean_square_at_one_as_tf1_did():
  var = tf.Variable([1.0, 1.0])
  grad = tf.constant([1e-3, -2e-3])
  for start, expected in ((1.0, 0.99 * 1.0 + 0.01 * grad**2), (0.0, 0.01 * grad**2)):
    opt = optimizers.make(_config(optimizer="rmsprop", rmsprop_initial_mean_square=start), 100)
    var.assign([1.0, 1.0])
    opt.build([var])
    opt.apply_gradients([(grad, var)])
    ms = expected.numpy()
    np.testing.assert_allclose(var.numpy(), 1.0 - 1e-3 * grad.numpy() / np.sqrt(ms + 1e-7), rtol=1e-5)
  # TF1's start: a first step ~lr x g (SGD-sized); tf_keras's zero start: ~10 x lr x sign(g).
  assert isinstance(opt, keras.optimizers.RMSprop)


def test_adam_beta1_clip_and_unknown_optimizer():
  opt = optimizers.make(_config(adam_beta1=0.0, max_grad_norm=0.5), 100)
  assert isinstance(opt, keras.optimizers.Adam) and opt.beta_1 == 0.0 and opt.global_clipnorm == 0.5
  assert optimizers.make(_config(), 100).global_clipnorm is None  # 0: no clip
  with pytest.raises(ValueError, match="must be one of .*'sgd'"):
    optimizers.make(_config(optimizer="sgd"), 100)


def test_logged_learning_rate_is_the_one_the_last_step_used():
  opt = optimizers.make(_config(warmup_steps=10), 100)
  var = tf.Variable(1.0)
  opt.build([var])
  for step in range(3):
    opt.apply_gradients([(tf.constant(1.0), var)])
    # The rate the step just taken used: warm-up step k runs at (k + 1) / 10 of the rate.
    assert float(optimizers.current_learning_rate(opt)) == pytest.approx(1e-4 * (step + 1))
