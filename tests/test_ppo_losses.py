"""GAE and PPO loss terms (agents.ppo.losses).

GAE is checked against a numpy reference that evaluates the explicit sum of
Schulman et al. 2016 (arXiv:1506.02438, eq. 16), not the backward recursion
the implementation uses; the losses against hand-computed fixtures.
"""

import numpy as np
import pytest
import tensorflow as tf

from agents.ppo import losses as ppo


def assert_close(actual, expected, tol=1e-5):
  np.testing.assert_allclose(np.asarray(actual), expected, rtol=tol, atol=tol)


# ---------------------------------------------------------------------- GAE ---


def reference_gae(rewards, discounts, values, bootstrap, lambda_):
  rewards, discounts, values, bootstrap = (np.asarray(a, np.float64) for a in (rewards, discounts, values, bootstrap))
  T, B = values.shape
  values_ext = np.concatenate([values, bootstrap[None]], axis=0)  # V(x_0..x_T)
  adv = np.zeros((T, B))
  for b in range(B):
    for t in range(T):
      total = 0.0
      for k in range(T - t):
        weight = 1.0
        for i in range(t, t + k):
          weight *= lambda_ * discounts[i, b]
        s = t + k
        delta = rewards[s, b] + discounts[s, b] * values_ext[s + 1, b] - values[s, b]
        total += weight * delta
      adv[t, b] = total
  return adv


def random_inputs(T, B, seed=0):
  rng = np.random.default_rng(seed)
  f32 = lambda x: np.asarray(x, np.float32)
  rewards = f32(rng.normal(size=(T, B)))
  discounts = f32(0.99 * (rng.uniform(size=(T, B)) > 0.2))
  values = f32(rng.normal(size=(T, B)))
  bootstrap = f32(rng.normal(size=(B,)))
  return rewards, discounts, values, bootstrap


@pytest.mark.parametrize("T,B", [(1, 1), (5, 3), (16, 4)])
@pytest.mark.parametrize("lambda_", [0.0, 0.5, 0.95, 1.0])
def test_gae_matches_reference(T, B, lambda_):
  inputs = random_inputs(T, B, seed=T * 10 + B)
  out = ppo.gae(*inputs, lambda_=lambda_)
  assert out.shape == (T, B) and out.dtype == tf.float32
  assert_close(out, reference_gae(*inputs, lambda_))


def test_gae_default_lambda_is_0_95():
  inputs = random_inputs(6, 2, seed=1)
  assert_close(ppo.gae(*inputs), reference_gae(*inputs, 0.95))


def test_gae_lambda_one_is_discounted_return_minus_value():
  T, B = 7, 3
  rewards, discounts, values, bootstrap = random_inputs(T, B, seed=2)
  expected = np.zeros((T, B))
  for b in range(B):
    for t in range(T):
      ret, gamma = 0.0, 1.0
      for s in range(t, T):
        ret += gamma * rewards[s, b]
        gamma *= discounts[s, b]
      expected[t, b] = ret + gamma * bootstrap[b] - values[t, b]
  assert_close(ppo.gae(rewards, discounts, values, bootstrap, lambda_=1.0), expected)


def test_gae_lambda_zero_is_td_error():
  rewards, discounts, values, bootstrap = random_inputs(5, 4, seed=3)
  next_values = np.concatenate([values[1:], bootstrap[None]], axis=0)
  assert_close(ppo.gae(rewards, discounts, values, bootstrap, lambda_=0.0), rewards + discounts * next_values - values)


def test_gae_hand_fixture():
  # T=2, B=1, discount 0.5, lambda 0.5, V = (1, 2), V(x_2) = 4, r = (1, 1).
  # delta_1 = 1 + 0.5*4 - 2 = 1; delta_0 = 1 + 0.5*2 - 1 = 1.
  # A_1 = 1; A_0 = 1 + 0.25 * 1 = 1.25.
  out = ppo.gae([[1.0], [1.0]], [[0.5], [0.5]], [[1.0], [2.0]], [4.0], lambda_=0.5)
  assert_close(out, [[1.25], [1.0]], tol=1e-6)


def test_gae_episode_end_cuts_bootstrapping():
  rewards, discounts, values, bootstrap = random_inputs(6, 2, seed=4)
  discounts[1] = 0.0
  out_a = ppo.gae(rewards, discounts, values, bootstrap)
  rewards2, values2 = rewards.copy(), values.copy()
  rewards2[2:] += 10.0
  values2[2:] -= 5.0
  out_b = ppo.gae(rewards2, discounts, values2, bootstrap + 3.0)
  assert_close(out_a[:2], np.asarray(out_b[:2]), tol=1e-6)


def test_gae_in_tf_function_with_unknown_time():
  spec = tf.TensorSpec([None, None], tf.float32)

  @tf.function(input_signature=[spec] * 3 + [tf.TensorSpec([None], tf.float32)])
  def fn(rewards, discounts, values, bootstrap):
    return ppo.gae(rewards, discounts, values, bootstrap, lambda_=0.9)

  for T, B in [(3, 2), (9, 5), (1, 1)]:
    inputs = random_inputs(T, B, seed=T)
    assert_close(fn(*inputs), reference_gae(*inputs, 0.9))
  assert fn.experimental_get_tracing_count() == 1


def test_gae_carries_no_gradient():
  inputs = [tf.Variable(x) for x in random_inputs(4, 2, seed=5)]
  with tf.GradientTape() as tape:
    total = tf.reduce_sum(ppo.gae(*inputs))
  assert all(g is None for g in tape.gradient(total, inputs))


@pytest.mark.parametrize(
  "which,shape,match",
  [
    (0, (5,), "rewards_t must have rank 2"),
    (1, (6, 3), "discounts_t has shape"),
    (2, (5, 3, 1), "values_t must have rank 2"),
    (3, (4,), "bootstrap_value has shape"),
    (3, (3, 1), "bootstrap_value must have rank 1"),
  ],
)
def test_gae_shape_errors(which, shape, match):
  inputs = list(random_inputs(5, 3, seed=6))
  inputs[which] = np.zeros(shape, np.float32)
  with pytest.raises(ValueError, match=match):
    ppo.gae(*inputs)


# ------------------------------------------------------ clipped surrogate ---

# T=2, B=3, epsilon=0.2, old log-probs 0 so ratio = exp(log_prob):
#   ratio 1.1, A= 2: inside the clip            -> -2.2
#   ratio 1.5, A= 1: clipped to 1.2             -> -1.2
#   ratio 1.5, A=-1: min(-1.5, -1.2) unclipped  -> +1.5
#   ratio 0.5, A=-1: clipped to 0.8             -> +0.8
#   ratio 0.5, A= 1: min(0.5, 0.8) unclipped    -> -0.5
#   ratio 0.9, A=-3: inside the clip            -> +2.7
RATIOS = np.array([[1.1, 1.5, 1.5], [0.5, 0.5, 0.9]])
SURR_LOG_PROB = np.log(RATIOS).astype(np.float32)
SURR_ADV = np.array([[2.0, 1.0, -1.0], [-1.0, 1.0, -3.0]], np.float32)
SURR_TERMS = np.array([[-2.2, -1.2, 1.5], [0.8, -0.5, 2.7]])


def test_clipped_surrogate_hand_fixture():
  loss = ppo.clipped_surrogate_loss(SURR_LOG_PROB, np.zeros((2, 3), np.float32), SURR_ADV, epsilon=0.2)
  assert loss.shape == ()
  assert float(loss) == pytest.approx(SURR_TERMS.mean(), abs=1e-6)
  assert float(loss) == pytest.approx(1.1 / 6, abs=1e-6)


def test_clipped_surrogate_only_ratio_matters():
  # Shifting both log-probs by the same constant leaves the ratio unchanged.
  loss = ppo.clipped_surrogate_loss(SURR_LOG_PROB - 3.0, np.full((2, 3), -3.0, np.float32), SURR_ADV)
  assert float(loss) == pytest.approx(1.1 / 6, abs=1e-5)


def test_clipped_surrogate_mask():
  mask = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], np.float32)
  log_prob = SURR_LOG_PROB.copy()
  log_prob[1, 0] = np.nan  # masked out, must not poison the loss
  loss = ppo.clipped_surrogate_loss(log_prob, np.zeros((2, 3), np.float32), SURR_ADV, mask_t=mask)
  assert float(loss) == pytest.approx((-2.2 + 1.5 + 2.7) / 3, abs=1e-6)
  loss = ppo.clipped_surrogate_loss(
    SURR_LOG_PROB, np.zeros((2, 3), np.float32), SURR_ADV, mask_t=np.zeros((2, 3), np.float32)
  )
  assert float(loss) == 0.0


def test_clipped_surrogate_gradients():
  log_prob = tf.Variable(SURR_LOG_PROB)
  old = tf.Variable(np.zeros((2, 3), np.float32))
  adv = tf.Variable(SURR_ADV)
  with tf.GradientTape() as tape:
    loss = ppo.clipped_surrogate_loss(log_prob, old, adv)
  g_log_prob, g_old, g_adv = tape.gradient(loss, [log_prob, old, adv])
  assert g_old is None and g_adv is None
  # Unclipped terms: d(-ratio A)/d log_prob = -ratio A, over N = 6; clipped: 0.
  expected = np.array([[-2.2, 0.0, 1.5], [0.0, -0.5, 2.7]]) / 6
  assert_close(g_log_prob, expected, tol=1e-6)


def test_clipped_surrogate_epsilon():
  # epsilon = 0.6 unclips step (0, 1): ratio 1.5 < 1.6 -> -1.5 instead of -1.2;
  # and step (1, 0): ratio 0.5 > 0.4 -> +0.5 instead of +0.8.
  loss = ppo.clipped_surrogate_loss(SURR_LOG_PROB, np.zeros((2, 3), np.float32), SURR_ADV, epsilon=0.6)
  assert float(loss) == pytest.approx((1.1 - 0.3 - 0.3) / 6, abs=1e-6)


def test_clipped_surrogate_shape_errors():
  zeros = np.zeros((2, 3), np.float32)
  with pytest.raises(ValueError, match="log_prob_t must have rank 2"):
    ppo.clipped_surrogate_loss(np.zeros(3, np.float32), zeros, zeros)
  with pytest.raises(ValueError, match="old_log_prob_t has shape"):
    ppo.clipped_surrogate_loss(zeros, np.zeros((3, 3), np.float32), zeros)
  with pytest.raises(ValueError, match="advantages_t has shape"):
    ppo.clipped_surrogate_loss(zeros, zeros, np.zeros((2, 2), np.float32))
  with pytest.raises(ValueError, match="mask_t has shape"):
    ppo.clipped_surrogate_loss(zeros, zeros, zeros, mask_t=np.ones((2, 1)))


# --------------------------------------------------------------- value loss ---

# T=2, B=2, clip 0.5.
#   v=1, old=0,   R=2:   (1-2)^2 = 1;  clipped v 0.5 -> 2.25 (wins)    -> 1.125
#   v=2, old=2,   R=0:   4;            inside the clip, same          -> 2.0
#   v=3, old=4,   R=3:   0;            clipped v 3.5 -> 0.25 (wins)    -> 0.125
#   v=1, old=0,   R=0.2: 0.64 (wins);  clipped v 0.5 -> 0.09          -> 0.32
V = np.array([[1.0, 2.0], [3.0, 1.0]], np.float32)
V_OLD = np.array([[0.0, 2.0], [4.0, 0.0]], np.float32)
V_RET = np.array([[2.0, 0.0], [3.0, 0.2]], np.float32)


def test_value_loss_unclipped():
  loss = ppo.value_loss(V, V_OLD, V_RET)
  assert float(loss) == pytest.approx((0.5 + 2.0 + 0.0 + 0.32) / 4, abs=1e-6)


def test_value_loss_clipped():
  loss = ppo.value_loss(V, V_OLD, V_RET, clip_epsilon=0.5)
  assert float(loss) == pytest.approx((1.125 + 2.0 + 0.125 + 0.32) / 4, abs=1e-6)
  mask = np.array([[1.0, 1.0], [0.0, 1.0]], np.float32)
  loss = ppo.value_loss(V, V_OLD, V_RET, clip_epsilon=0.5, mask_t=mask)
  assert float(loss) == pytest.approx((1.125 + 2.0 + 0.32) / 3, abs=1e-6)


def test_value_loss_clipped_matches_loop():
  rng = np.random.default_rng(7)
  v, old, ret = (rng.normal(size=(6, 4)).astype(np.float32) for _ in range(3))
  expected = np.zeros((6, 4))
  for t in range(6):
    for b in range(4):
      clipped = old[t, b] + min(max(v[t, b] - old[t, b], -0.3), 0.3)
      expected[t, b] = 0.5 * max((v[t, b] - ret[t, b]) ** 2, (clipped - ret[t, b]) ** 2)
  loss = ppo.value_loss(v, old, ret, clip_epsilon=0.3)
  assert float(loss) == pytest.approx(expected.mean(), abs=1e-5)


def test_value_loss_gradients():
  for clip, expected in [
    (None, [[-0.25, 0.5], [0.0, 0.2]]),
    # The clipped branch wins at (0,0) and (1,0): no gradient.
    (0.5, [[0.0, 0.5], [0.0, 0.2]]),
  ]:
    v, old, ret = tf.Variable(V), tf.Variable(V_OLD), tf.Variable(V_RET)
    with tf.GradientTape() as tape:
      loss = ppo.value_loss(v, old, ret, clip_epsilon=clip)
    g_v, g_old, g_ret = tape.gradient(loss, [v, old, ret])
    assert g_old is None and g_ret is None
    assert_close(g_v, np.array(expected), tol=1e-6)


def test_value_loss_shape_errors():
  with pytest.raises(ValueError, match="returns_t has shape"):
    ppo.value_loss(V, V_OLD, np.zeros((2, 3), np.float32))
  with pytest.raises(ValueError, match="values_t must have rank 2"):
    ppo.value_loss(np.zeros(2, np.float32), V_OLD, V_RET)
