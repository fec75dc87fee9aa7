"""V-trace targets and IMPALA loss terms (agents.vtrace.losses).

V-trace is checked against an independent numpy reference that evaluates the
explicit sum of Espeholt et al. 2018 (arXiv:1802.01561, eq. 1), not the
backward recursion the implementation uses.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from agents.vtrace import losses as vt

# ---------------------------------------------------------------- reference ---


def reference_vtrace(log_rhos, discounts, rewards, values, bootstrap, *, clip_rho=1.0, clip_pg_rho=1.0, lambda_=1.0):
  """Plain loops over the paper's definition, in float64."""
  log_rhos, discounts, rewards, values, bootstrap = (
    np.asarray(a, np.float64) for a in (log_rhos, discounts, rewards, values, bootstrap)
  )
  T, B = values.shape
  rhos = np.exp(log_rhos)
  clipped = rhos if clip_rho is None else np.minimum(clip_rho, rhos)
  clipped_pg = rhos if clip_pg_rho is None else np.minimum(clip_pg_rho, rhos)
  cs = lambda_ * np.minimum(1.0, rhos)
  values_ext = np.concatenate([values, bootstrap[None]], axis=0)  # V(x_0..x_T)

  vs = np.zeros((T, B))
  for b in range(B):
    for s in range(T):
      total = values[s, b]
      for t in range(s, T):
        weight = 1.0
        for i in range(s, t):
          weight *= discounts[i, b] * cs[i, b]
        delta = clipped[t, b] * (rewards[t, b] + discounts[t, b] * values_ext[t + 1, b] - values[t, b])
        total += weight * delta
      vs[s, b] = total

  vs_ext = np.concatenate([vs, bootstrap[None]], axis=0)
  pg = np.zeros((T, B))
  for t in range(T):
    for b in range(B):
      pg[t, b] = clipped_pg[t, b] * (rewards[t, b] + discounts[t, b] * vs_ext[t + 1, b] - values[t, b])
  return vs, pg


def random_inputs(T, B, seed=0):
  rng = np.random.default_rng(seed)
  f32 = lambda x: np.asarray(x, np.float32)
  log_rhos = f32(rng.normal(0.0, 1.0, (T, B)))
  # Zeros mark episode ends (about one step in five).
  discounts = f32(0.95 * (rng.uniform(size=(T, B)) > 0.2))
  rewards = f32(rng.normal(size=(T, B)))
  values = f32(rng.normal(size=(T, B)))
  bootstrap = f32(rng.normal(size=(B,)))
  return log_rhos, discounts, rewards, values, bootstrap


def assert_close(actual, expected, tol=1e-4):
  np.testing.assert_allclose(np.asarray(actual), expected, rtol=tol, atol=tol)


# ------------------------------------------------------------------- vtrace ---


@pytest.mark.parametrize("T,B", [(1, 1), (1, 7), (5, 7), (20, 1), (20, 7)])
@pytest.mark.parametrize(
  "clip_rho,clip_pg_rho", [(1.0, 1.0), (0.5, 0.5), (3.0, 3.0), (None, None), (0.5, 3.0), (None, 1.0)]
)
@pytest.mark.parametrize("lambda_", [1.0, 0.9])
def test_matches_reference(T, B, clip_rho, clip_pg_rho, lambda_):
  inputs = random_inputs(T, B, seed=T * 100 + B)
  out = vt.vtrace(*inputs, clip_rho_threshold=clip_rho, clip_pg_rho_threshold=clip_pg_rho, lambda_=lambda_)
  vs, pg = reference_vtrace(*inputs, clip_rho=clip_rho, clip_pg_rho=clip_pg_rho, lambda_=lambda_)
  assert isinstance(out, vt.VTraceReturns)
  assert out.vs.shape == (T, B) and out.pg_advantages.shape == (T, B)
  assert out.vs.dtype == tf.float32
  assert_close(out.vs, vs)
  assert_close(out.pg_advantages, pg)


def test_default_thresholds_are_one():
  inputs = random_inputs(6, 3, seed=1)
  vs, pg = reference_vtrace(*inputs, clip_rho=1.0, clip_pg_rho=1.0, lambda_=1.0)
  out = vt.vtrace(*inputs)
  assert_close(out.vs, vs)
  assert_close(out.pg_advantages, pg)


def test_episode_end_cuts_bootstrapping():
  # discount 0 at t=1: v_0 and v_1 must not depend on anything after t=1.
  log_rhos, discounts, rewards, values, bootstrap = random_inputs(6, 2, seed=2)
  discounts[1] = 0.0
  out_a = vt.vtrace(log_rhos, discounts, rewards, values, bootstrap)
  rewards2, values2 = rewards.copy(), values.copy()
  rewards2[2:] += 10.0
  values2[2:] -= 5.0
  out_b = vt.vtrace(log_rhos, discounts, rewards2, values2, bootstrap + 3.0)
  assert_close(out_a.vs[:2], np.asarray(out_b.vs[:2]), tol=1e-6)
  assert_close(out_a.pg_advantages[:2], np.asarray(out_b.pg_advantages[:2]), tol=1e-6)


def test_on_policy_gives_n_step_return():
  # rho = 1 and lambda = 1: v_s = sum_{t>=s} (prod_{i=s}^{t-1} gamma_i) r_t
  #                              + (prod_{i=s}^{T-1} gamma_i) V(x_T), independent of V(x_t).
  T, B = 7, 3
  _, discounts, rewards, values, bootstrap = random_inputs(T, B, seed=3)
  out = vt.vtrace(np.zeros((T, B), np.float32), discounts, rewards, values, bootstrap, lambda_=1.0)
  expected = np.zeros((T, B))
  for b in range(B):
    for s in range(T):
      ret, gamma = 0.0, 1.0
      for t in range(s, T):
        ret += gamma * rewards[t, b]
        gamma *= discounts[t, b]
      expected[s, b] = ret + gamma * bootstrap[b]
  assert_close(out.vs, expected)
  next_vs = np.concatenate([expected[1:], bootstrap[None]], axis=0)
  assert_close(out.pg_advantages, rewards + discounts * next_vs - values)


def test_masked_step_is_finite_and_cuts_trace():
  T, B, masked = 6, 4, 2
  log_rhos, discounts, rewards, values, bootstrap = random_inputs(T, B, seed=4)
  log_rhos[masked] = -1e9
  out = vt.vtrace(log_rhos, discounts, rewards, values, bootstrap, clip_rho_threshold=None, clip_pg_rho_threshold=None)
  assert np.all(np.isfinite(out.vs)) and np.all(np.isfinite(out.pg_advantages))
  # rho = 0: delta = 0 and c = 0, so v_s = V(x_s) and the pg advantage is 0.
  assert_close(out.vs[masked], values[masked], tol=1e-6)
  assert_close(out.pg_advantages[masked], np.zeros(B), tol=1e-6)
  vs, pg = reference_vtrace(log_rhos, discounts, rewards, values, bootstrap, clip_rho=None, clip_pg_rho=None)
  assert_close(out.vs, vs)
  assert_close(out.pg_advantages, pg)


def test_works_in_tf_function_with_unknown_time():
  spec = tf.TensorSpec([None, None], tf.float32)

  @tf.function(input_signature=[spec] * 4 + [tf.TensorSpec([None], tf.float32)])
  def fn(log_rhos, discounts, rewards, values, bootstrap):
    return vt.vtrace(log_rhos, discounts, rewards, values, bootstrap, clip_rho_threshold=2.0, lambda_=0.9)

  for T, B in [(3, 2), (11, 5), (1, 1)]:
    inputs = random_inputs(T, B, seed=T)
    out = fn(*inputs)
    vs, pg = reference_vtrace(*inputs, clip_rho=2.0, clip_pg_rho=1.0, lambda_=0.9)
    assert_close(out.vs, vs)
    assert_close(out.pg_advantages, pg)
  assert fn.experimental_get_tracing_count() == 1


def test_outputs_carry_no_gradient():
  inputs = [tf.Variable(x) for x in random_inputs(4, 2, seed=5)]
  with tf.GradientTape() as tape:
    out = vt.vtrace(*inputs)
    total = tf.reduce_sum(out.vs) + tf.reduce_sum(out.pg_advantages)
  assert all(g is None for g in tape.gradient(total, inputs))


@pytest.mark.parametrize(
  "which,shape,match",
  [
    (0, (5,), "log_rhos_t must have rank 2"),
    (1, (5, 3, 1), "discounts_t must have rank 2"),
    (2, (6, 3), "rewards_t has shape"),
    (0, (5, 2), "log_rhos_t has shape"),
    (3, (5,), "values_t must have rank 2"),
    (4, (4,), "bootstrap_value has shape"),
    (4, (3, 1), "bootstrap_value must have rank 1"),
  ],
)
def test_shape_errors(which, shape, match):
  inputs = list(random_inputs(5, 3, seed=6))
  inputs[which] = np.zeros(shape, np.float32)
  with pytest.raises(ValueError, match=match):
    vt.vtrace(*inputs)


# --------------------------------------------------------------- loss terms ---

LOG2 = math.log(2.0)
LOG4_3 = math.log(4.0 / 3.0)

# T=1, B=2, A=2. Step (0,0): uniform, pi(0) = 1/2. Step (0,1): logits (log 3, 0),
# so pi(0) = 3/4.
PG_LOGITS = np.array([[[0.0, 0.0], [math.log(3.0), 0.0]]], np.float32)
PG_ACTIONS = np.array([[0, 0]], np.int32)
PG_ADVANTAGES = np.array([[1.0, 2.0]], np.float32)


def test_policy_gradient_loss_value():
  # -log pi * A: (log 2 * 1, log(4/3) * 2); mean = (0.693147 + 0.575364) / 2.
  loss = vt.policy_gradient_loss(PG_LOGITS, PG_ACTIONS, PG_ADVANTAGES)
  assert loss.shape == ()
  assert float(loss) == pytest.approx((LOG2 + 2 * LOG4_3) / 2, rel=1e-6)
  assert float(loss) == pytest.approx(0.634256, abs=1e-6)


def test_policy_gradient_loss_mask():
  # Only step (0,0) counts: log 2 / 1.
  loss = vt.policy_gradient_loss(PG_LOGITS, PG_ACTIONS, PG_ADVANTAGES, mask_t=np.array([[1.0, 0.0]], np.float32))
  assert float(loss) == pytest.approx(LOG2, rel=1e-6)
  # Nothing counts: 0 / max(0, 1) = 0.
  loss = vt.policy_gradient_loss(PG_LOGITS, PG_ACTIONS, PG_ADVANTAGES, mask_t=np.zeros((1, 2), np.float32))
  assert float(loss) == 0.0


def test_policy_gradient_loss_gradients():
  logits = tf.Variable(PG_LOGITS)
  advantages = tf.Variable(PG_ADVANTAGES)
  with tf.GradientTape() as tape:
    loss = vt.policy_gradient_loss(logits, PG_ACTIONS, advantages)
  g_logits, g_adv = tape.gradient(loss, [logits, advantages])
  assert g_adv is None
  # d(-log pi(a)) / d logits = pi - onehot(a); times A, over N = 2 steps.
  # Step (0,0): (1/2 - 1, 1/2) * 1 / 2 = (-0.25, 0.25).
  # Step (0,1): (3/4 - 1, 1/4) * 2 / 2 = (-0.25, 0.25).
  assert_close(g_logits, np.array([[[-0.25, 0.25], [-0.25, 0.25]]]), tol=1e-6)


def test_baseline_loss_value_and_mask():
  values = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
  targets = np.array([[2.0, 2.0], [0.0, 5.0]], np.float32)
  # 0.5 * (1, 0, 9, 1) = (0.5, 0, 4.5, 0.5); mean = 5.5 / 4.
  assert float(vt.baseline_loss(values, targets)) == pytest.approx(1.375)
  # Step (1,0) ignored: (0.5 + 0 + 0.5) / 3.
  mask = np.array([[1.0, 1.0], [0.0, 1.0]], np.float32)
  assert float(vt.baseline_loss(values, targets, mask)) == pytest.approx(1.0 / 3.0)
  # A masked-out NaN target does not poison the loss.
  nan_targets = targets.copy()
  nan_targets[1, 0] = np.nan
  assert float(vt.baseline_loss(values, nan_targets, mask)) == pytest.approx(1.0 / 3.0)


def test_baseline_loss_gradients():
  values = tf.Variable([[1.0, 2.0], [3.0, 4.0]])
  targets = tf.Variable([[2.0, 2.0], [0.0, 5.0]])
  with tf.GradientTape() as tape:
    loss = vt.baseline_loss(values, targets)
  g_values, g_targets = tape.gradient(loss, [values, targets])
  assert g_targets is None
  # d/dV of mean 0.5 (y - V)^2 = (V - y) / 4.
  assert_close(g_values, np.array([[-0.25, 0.0], [0.75, -0.25]]), tol=1e-6)


def test_entropy_loss_value_and_mask():
  # T=1, B=2, A=4. Step (0,0): uniform over 4, entropy log 4.
  # Step (0,1): two impossible actions (-inf), uniform over 2, entropy log 2.
  logits = np.array([[[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, -np.inf, -np.inf]]], np.float32)
  loss = vt.entropy_loss(logits)
  # Negative entropy, mean = -(2 log 2 + log 2) / 2 = -1.5 log 2 = -1.039721.
  assert float(loss) == pytest.approx(-1.5 * LOG2, rel=1e-6)
  loss = vt.entropy_loss(logits, mask_t=np.array([[0.0, 1.0]], np.float32))
  assert float(loss) == pytest.approx(-LOG2, rel=1e-6)


def test_entropy_loss_uniform_two_actions():
  logits = np.zeros((3, 2, 2), np.float32)
  assert float(vt.entropy_loss(logits)) == pytest.approx(-LOG2, rel=1e-6)


def test_minimising_entropy_loss_raises_entropy():
  logits = tf.Variable([[[2.0, 0.0, -1.0]]])
  with tf.GradientTape() as tape:
    before = vt.entropy_loss(logits)
  logits.assign_sub(0.1 * tape.gradient(before, logits))
  after = vt.entropy_loss(logits)
  assert float(after) < float(before)  # lower negative entropy = higher entropy


def test_loss_shape_errors():
  with pytest.raises(ValueError, match="logits_t must have rank 3"):
    vt.entropy_loss(np.zeros((2, 3), np.float32))
  with pytest.raises(ValueError, match="actions_t has shape"):
    vt.policy_gradient_loss(PG_LOGITS, np.zeros((1, 3), np.int32), PG_ADVANTAGES)
  with pytest.raises(ValueError, match="advantages_t must have rank 2"):
    vt.policy_gradient_loss(PG_LOGITS, PG_ACTIONS, np.zeros((2,), np.float32))
  with pytest.raises(ValueError, match="actions_t must be integer"):
    vt.policy_gradient_loss(PG_LOGITS, PG_ADVANTAGES, PG_ADVANTAGES)
  with pytest.raises(ValueError, match="targets_t has shape"):
    vt.baseline_loss(np.zeros((2, 2), np.float32), np.zeros((2, 3), np.float32))
  with pytest.raises(ValueError, match="mask_t has shape"):
    vt.baseline_loss(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32), np.ones((2, 1), np.float32))
  with pytest.raises(ValueError, match="mask_t must have rank 2"):
    vt.entropy_loss(PG_LOGITS, np.ones((2,), np.float32))


def test_scale_by_std_matches_numpy_over_the_counted_steps():
  rng = np.random.default_rng(3)
  adv = rng.normal(0.2, 0.05, size=(5, 4)).astype(np.float32)
  mask = (rng.random((5, 4)) > 0.3).astype(np.float32)
  counted = adv[mask > 0]
  expected = adv / (counted.std() + 1e-8)  # scale only: the mean is kept
  np.testing.assert_allclose(vt.scale_by_std(adv, mask).numpy(), expected, rtol=1e-5)
  np.testing.assert_allclose(vt.scale_by_std(adv).numpy(), adv / (adv.std() + 1e-8), rtol=1e-5)
  # Equal advantages stay finite; the result carries no gradient.
  assert np.all(np.isfinite(vt.scale_by_std(np.ones((3, 2), np.float32)).numpy()))
  x = tf.Variable(adv)
  with tf.GradientTape() as tape:
    y = tf.reduce_sum(vt.scale_by_std(x, mask))
  assert tape.gradient(y, x) is None
  with pytest.raises(ValueError, match="advantages_t"):
    vt.scale_by_std(np.ones(3, np.float32))
