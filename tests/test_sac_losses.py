"""SAC losses and the tanh-squashed Gaussian policy (agents.sac.losses).

Losses are checked on hand-computed fixtures and through their gradients; the
policy log-density against the change-of-variables formula of Haarnoja et al.
2018 (arXiv:1801.01290, appendix C, eq. 21) written out in numpy.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from agents.sac import losses as sac


def assert_close(actual, expected, tol=1e-6):
  np.testing.assert_allclose(np.asarray(actual), expected, rtol=tol, atol=tol)


f32 = lambda x: np.asarray(x, np.float32)

# ------------------------------------------------------------------ critic ---

# B=2, alpha=0.5.
#   y_0 = 1 + 0.5 * (min(4, 2) - 0.5 * -1) = 2.25;  y_1 = 0 + 0 * (...) = 0.
#   terms: 0.5 (1 - 2.25)^2 + 0.5 (3 - 2.25)^2 = 1.0625;  0.5 * 2^2 + 0 = 2.
CRITIC = dict(
  q1=f32([1.0, 2.0]),
  q2=f32([3.0, 0.0]),
  rewards=f32([1.0, 0.0]),
  discounts=f32([0.5, 0.0]),
  next_q1_target=f32([4.0, 5.0]),
  next_q2_target=f32([2.0, 6.0]),
  next_log_prob=f32([-1.0, 3.0]),
  alpha=np.float32(0.5),
)


def test_critic_loss_hand_fixture():
  loss = sac.critic_loss(**CRITIC)
  assert loss.shape == ()
  assert float(loss) == pytest.approx((1.0625 + 2.0) / 2, abs=1e-6)


def test_critic_loss_matches_loop():
  rng = np.random.default_rng(0)
  B = 16
  args = {
    k: f32(rng.normal(size=B)) for k in ("q1", "q2", "rewards", "next_q1_target", "next_q2_target", "next_log_prob")
  }
  args["discounts"] = f32(0.99 * (rng.uniform(size=B) > 0.3))
  alpha = 0.3
  total = 0.0
  for i in range(B):
    soft_v = min(args["next_q1_target"][i], args["next_q2_target"][i]) - alpha * args["next_log_prob"][i]
    y = args["rewards"][i] + args["discounts"][i] * soft_v
    total += 0.5 * (args["q1"][i] - y) ** 2 + 0.5 * (args["q2"][i] - y) ** 2
  assert float(sac.critic_loss(alpha=alpha, **args)) == pytest.approx(total / B, abs=1e-5)


def test_critic_loss_gradients_only_reach_q1_q2():
  variables = {k: tf.Variable(v) for k, v in CRITIC.items()}
  with tf.GradientTape() as tape:
    loss = sac.critic_loss(**variables)
  grads = dict(zip(variables, tape.gradient(loss, list(variables.values()))))
  # d/dq = (q - y) / B.
  assert_close(grads["q1"], [-0.625, 1.0])
  assert_close(grads["q2"], [0.375, 0.0])
  for name in ("rewards", "discounts", "next_q1_target", "next_q2_target", "next_log_prob", "alpha"):
    assert grads[name] is None, name


def test_critic_loss_shape_errors():
  bad = dict(CRITIC, next_q2_target=f32([1.0, 2.0, 3.0]))
  with pytest.raises(ValueError, match="next_q2_target has shape"):
    sac.critic_loss(**bad)
  with pytest.raises(ValueError, match="rewards must have rank 1"):
    sac.critic_loss(**dict(CRITIC, rewards=f32([[1.0, 0.0]])))
  with pytest.raises(ValueError, match="alpha must have rank 0"):
    sac.critic_loss(**dict(CRITIC, alpha=f32([0.5, 0.5])))


# ------------------------------------------------------------------- actor ---

# B=2, alpha=0.2: 0.2 * -1 - min(1, 2) = -1.2;  0.2 * 0.5 - min(5, 3) = -2.9.
ACTOR = dict(q1_pi=f32([1.0, 5.0]), q2_pi=f32([2.0, 3.0]), log_prob_pi=f32([-1.0, 0.5]), alpha=np.float32(0.2))


def test_actor_loss_hand_fixture():
  loss = sac.actor_loss(**ACTOR)
  assert loss.shape == ()
  assert float(loss) == pytest.approx(-2.05, abs=1e-6)


def test_actor_loss_gradients_skip_alpha():
  variables = {k: tf.Variable(v) for k, v in ACTOR.items()}
  with tf.GradientTape() as tape:
    loss = sac.actor_loss(**variables)
  grads = dict(zip(variables, tape.gradient(loss, list(variables.values()))))
  assert grads["alpha"] is None
  assert_close(grads["log_prob_pi"], [0.1, 0.1])  # alpha / B
  assert_close(grads["q1_pi"], [-0.5, 0.0])  # only the smaller critic, -1 / B
  assert_close(grads["q2_pi"], [0.0, -0.5])


def test_actor_loss_alpha_from_log_alpha_variable():
  # Typical use: alpha = exp(log_alpha); the actor loss must not move log_alpha.
  log_alpha = tf.Variable(math.log(0.2))
  with tf.GradientTape() as tape:
    loss = sac.actor_loss(ACTOR["q1_pi"], ACTOR["q2_pi"], ACTOR["log_prob_pi"], tf.exp(log_alpha))
  assert tape.gradient(loss, log_alpha) is None
  assert float(loss) == pytest.approx(-2.05, abs=1e-6)


def test_actor_loss_shape_errors():
  with pytest.raises(ValueError, match="log_prob_pi has shape"):
    sac.actor_loss(f32([1.0, 2.0]), f32([1.0, 2.0]), f32([1.0]), 0.1)


# ------------------------------------------------------------- temperature ---


def test_temperature_loss_hand_fixture_and_gradient():
  log_alpha = tf.Variable(math.log(0.5))
  log_prob = tf.Variable([-1.0, -3.0])
  with tf.GradientTape() as tape:
    loss = sac.temperature_loss(log_alpha, log_prob, target_entropy=-2.0)
  # mean(-log_alpha * (log_prob + H)) = -log_alpha * mean(-3, -5) = 4 log_alpha.
  assert float(loss) == pytest.approx(4 * math.log(0.5), abs=1e-6)
  g_log_alpha, g_log_prob = tape.gradient(loss, [log_alpha, log_prob])
  assert g_log_prob is None
  assert float(g_log_alpha) == pytest.approx(4.0, abs=1e-6)


@pytest.mark.parametrize(
  "log_prob,direction",
  [
    ([-1.0, -3.0], -1),  # entropy 2 above the target -2: alpha shrinks
    ([3.0, 3.0], +1),  # entropy -3 below the target -2: alpha grows
  ],
)
def test_temperature_step_direction(log_prob, direction):
  log_alpha = tf.Variable(0.0)
  with tf.GradientTape() as tape:
    loss = sac.temperature_loss(log_alpha, f32(log_prob), -2.0)
  log_alpha.assign_sub(0.1 * tape.gradient(loss, log_alpha))
  assert np.sign(float(log_alpha)) == direction


def test_temperature_loss_moves_only_log_alpha_in_a_policy_graph():
  # log_prob computed from policy parameters: they get no gradient.
  log_alpha = tf.Variable(0.3)
  mean = tf.Variable([[0.1, -0.2], [0.4, 0.0]])
  log_std = tf.Variable(tf.zeros([2, 2]))
  with tf.GradientTape() as tape:
    dist = sac.tanh_gaussian(mean, log_std)
    log_prob = dist.log_prob(dist.sample(seed=1))
    loss = sac.temperature_loss(log_alpha, log_prob, target_entropy=-2.0)
  g_alpha, g_mean, g_std = tape.gradient(loss, [log_alpha, mean, log_std])
  assert g_alpha is not None and g_mean is None and g_std is None


def test_temperature_loss_shape_errors():
  with pytest.raises(ValueError, match="log_alpha must have rank 0"):
    sac.temperature_loss(f32([0.0]), f32([1.0, 2.0]), -1.0)
  with pytest.raises(ValueError, match="log_prob must have rank 1"):
    sac.temperature_loss(0.0, f32([[1.0, 2.0]]), -1.0)


# ------------------------------------------------------------ tanh Gaussian ---


def manual_log_prob(u, mean, log_std):
  """log N(u; mean, diag std^2) - sum log(1 - tanh(u)^2), summed over the last axis."""
  u, mean, log_std = (np.asarray(a, np.float64) for a in (u, mean, log_std))
  std = np.exp(log_std)
  gauss = -0.5 * ((u - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
  return np.sum(gauss - np.log(1.0 - np.tanh(u) ** 2), axis=-1)


MEAN = np.array([[0.1, -0.5, 0.0], [1.0, 2.0, -1.5]])
LOG_STD = np.array([[0.0, -1.0, 0.3], [0.5, -0.2, -2.0]])
U = np.array([[0.3, -0.9, 1.7], [-0.2, 2.5, -1.4]])


@pytest.mark.parametrize("dtype,tol", [(tf.float32, 1e-4), (tf.float64, 1e-10)])
def test_tanh_gaussian_log_prob_matches_manual(dtype, tol):
  dist = sac.tanh_gaussian(tf.constant(MEAN, dtype), tf.constant(LOG_STD, dtype))
  assert dist.batch_shape == (2,) and dist.event_shape == (3,)
  # A fresh tensor (not the output of dist.sample) goes through the inverse.
  log_prob = dist.log_prob(tf.constant(np.tanh(U), dtype))
  assert log_prob.shape == (2,) and log_prob.dtype == dtype
  np.testing.assert_allclose(log_prob, manual_log_prob(U, MEAN, LOG_STD), rtol=tol, atol=tol)


def test_tanh_gaussian_samples_and_their_log_prob():
  dist = sac.tanh_gaussian(f32(MEAN), f32(LOG_STD))
  samples = dist.sample(1000, seed=3)
  assert samples.shape == (1000, 2, 3)
  assert np.all(np.abs(samples) <= 1.0)
  log_prob = dist.log_prob(samples)
  assert log_prob.shape == (1000, 2) and np.all(np.isfinite(log_prob))
  # Same density through the inverse (samples copied out of the bijector cache).
  # Saturated samples (|u| > ~8) aren't invertible in float32, so compare the rest.
  fresh = dist.log_prob(tf.constant(np.asarray(samples)))
  ok = np.all(np.abs(np.asarray(samples)) < 0.999, axis=-1)
  assert ok.mean() > 0.5
  np.testing.assert_allclose(np.asarray(fresh)[ok], np.asarray(log_prob)[ok], rtol=1e-3, atol=1e-3)
  # The squashed mean is close to tanh(mean) for the narrow dimension.
  assert float(np.mean(samples[:, 1, 2])) == pytest.approx(np.tanh(-1.5), abs=0.02)


def test_tanh_gaussian_log_prob_finite_at_bounds():
  dist = sac.tanh_gaussian(f32([[0.0, 0.0]]), f32([[0.0, 0.0]]))
  edge = f32([[1.0, -1.0], [1.0 - 1e-7, -(1.0 - 1e-7)], [0.9999999, 0.5]])
  log_prob = dist.log_prob(edge)
  assert np.all(np.isfinite(log_prob))
  # Far in the tails the density is tiny but finite.
  assert np.all(np.asarray(log_prob) < -10.0)

  # Saturated policy: every float32 sample is exactly +-1.
  saturated = sac.tanh_gaussian(f32([[15.0, -15.0]]), f32([[-3.0, -3.0]]))
  samples = saturated.sample(8, seed=4)
  assert np.all(np.abs(samples) == 1.0)
  assert np.all(np.isfinite(saturated.log_prob(samples)))
  assert np.all(np.isfinite(saturated.log_prob(tf.constant(np.asarray(samples)))))


def test_tanh_gaussian_log_prob_gradients_are_finite():
  mean = tf.Variable(f32([[0.5, -9.5]]))
  log_std = tf.Variable(f32([[0.0, -1.0]]))
  with tf.GradientTape() as tape:
    dist = sac.tanh_gaussian(mean, log_std)
    actions = dist.sample(16, seed=5)  # reparameterised
    loss = tf.reduce_mean(dist.log_prob(actions)) + tf.reduce_mean(actions)
  g_mean, g_log_std = tape.gradient(loss, [mean, log_std])
  assert g_mean is not None and g_log_std is not None
  assert np.all(np.isfinite(g_mean)) and np.all(np.isfinite(g_log_std))


def test_tanh_gaussian_shape_errors():
  with pytest.raises(ValueError, match="log_std has shape"):
    sac.tanh_gaussian(f32([[0.0, 0.0]]), f32([[0.0, 0.0, 0.0]]))
  with pytest.raises(ValueError, match="mean must have rank >= 1"):
    sac.tanh_gaussian(np.float32(0.0), np.float32(0.0))
